"""
Forward throughput of every preset (yolov1.PRESETS, yolov2.PRESETS) at its native input size, eval mode,
batch 1 and 16: images/s, peak memory, FLOPs per image counted from the layers (darknet.count_operations:
convolutions, connected and locally connected layers), and the fraction of this
machine's measured fp32 matmul peak that the forward reaches. Three ways to run each model:
  eager      the model as built
  fused      darknet.fuse(model): every batch norm folded into the conv before it (inference only)
  fused+cl   fused, weights and input in channels-last memory format
Each (preset, batch, mode) runs in its own process so that its peak resident memory (VmHWM) is its own.
The outputs of the fused model are checked against the eager ones (batch 1, batch-norm statistics
calibrated on one random image so that activations have realistic scales): max |diff| <= 1e-4 * max |out|
(float32 sums in another order: the absolute difference grows with the output's scale, so it is relative).

--device cuda times the forward on the GPU, synchronised, in float32 (TF32 convolutions, cuDNN's default) or, with
--dtype bfloat16, under autocast in bfloat16; peak memory is then torch.cuda.max_memory_allocated and the peak is the
GPU's matmul measured in the same dtype (float32: TF32 allowed). --one-process runs every case in this process (a
GPU's start-up paid once; peak memory per case from torch.cuda.reset_peak_memory_stats, while on the CPU VmHWM
then only grows). The exit code is 1 when any case failed.

Run:  python bench/bench_model.py                       (all presets; several minutes on 2 cores)
      python bench/bench_model.py --presets yolov2-voc --batch-sizes 1 16 --min-time 3
      python bench/bench_model.py --device cuda --dtype bfloat16 --one-process --presets yolov1 yolov2-voc yolov2
                                                              (bench/gpu_check.sh)
"""
import argparse
import copy
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import darknet  # noqa: E402
import yolov1  # noqa: E402
import yolov2  # noqa: E402

MODES = ("eager", "fused", "fused+cl")


def build(name):
    return (yolov1 if name in yolov1.PRESETS else yolov2).build(name).eval()


def matmul_peak(n=2048, repeats=5, device="cpu", dtype=torch.float32):
    """GFLOP/s of the best of a few n x n matmuls in dtype (2 n³ FLOPs each); on CUDA 8192², TF32 allowed."""
    if device != "cpu":
        n, torch.backends.cuda.matmul.allow_tf32 = 8192, True
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def sync(device):
    if device != "cpu":
        torch.cuda.synchronize()


def calibrate(model, size):
    """Set batch-norm running statistics to those of one random image, so that activations keep a
    realistic scale through the layers (a fresh model's mean 0 / var 1 lets them blow up or vanish)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                                  # cumulative average: one batch = its stats
        m.weight.data.uniform_(0.5, 1.5)
        m.bias.data.uniform_(-0.1, 0.1)
    model.train()
    with torch.no_grad():
        model(torch.rand(1, 3, size, size))
    model.eval()


def check_fuse(name):
    torch.manual_seed(0)
    model = build(name)
    calibrate(model, model.img_size)
    x = torch.rand(1, 3, model.img_size, model.img_size)
    with torch.no_grad():
        ref = model(x)
        out = darknet.fuse(model)(x)
        out_cl = darknet.fuse(model).to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    diff = max((out - ref).abs().max().item(), (out_cl - ref).abs().max().item())
    return diff, diff / ref.abs().max().item()


def run_one(name, batch, mode, min_time, device="cpu", dtype="float32"):
    """Time one (preset, batch, mode) -> dict (a child process prints it as a JSON line)."""
    torch.manual_seed(0)
    model = build(name)
    if mode != "eager":
        model = darknet.fuse(model)
    model, x = model.to(device), torch.rand(batch, 3, model.img_size, model.img_size, device=device)
    if mode == "fused+cl":
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    flops = darknet.count_operations(model, model.img_size)     # conv, connected and [local] layers
    rss_model = peak_rss_mb()
    if device != "cpu":
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=getattr(torch, dtype),
                                         enabled=dtype != "float32"):
        model(x)                                           # warm-up
        while sum(times) < min_time or len(times) < 2:
            sync(device)
            t = time.perf_counter()
            model(x)
            sync(device)
            times.append(time.perf_counter() - t)
    best = min(times)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device != "cpu" else peak_rss_mb()
    return dict(images_per_s=batch / best, ms=1000 * best, gflops=flops / 1e9, gflops_per_s=flops * batch / best / 1e9,
                peak_mb=peak, model_mb=rss_model)


def peak_rss_mb():
    """Peak resident memory of this process in MB: Linux VmHWM (ru_maxrss survives exec, so a child
    would report its parent's peak), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(args):
    torch.set_num_threads(args.threads)
    peak, results, failed = matmul_peak(device=args.device, dtype=getattr(torch, args.dtype)), [], []
    where = torch.cuda.get_device_name() if args.device != "cpu" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {args.device} ({where}), {args.dtype}; {args.dtype} matmul peak (best of 5): "
          f"{peak:.0f} GFLOP/s")
    print(f"{'preset':16s} {'size':>4s} {'batch':>5s} {'mode':9s} {'img/s':>7s} {'ms/batch':>9s} "
          f"{'GFLOP/img':>9s} {'GFLOP/s':>8s} {'%peak':>6s} {'peak MB':>8s}")
    for name in args.presets:
        diff, rel = check_fuse(name)
        for batch in args.batch_sizes:
            for mode in args.modes:
                try:
                    r = time_case(args, name, batch, mode)
                except RuntimeError as error:
                    print(f"{name} {batch} {mode}: failed\n{error}")
                    failed.append(f"{name} {batch} {mode}")
                    continue
                size = build_size(name)
                print(f"{name:16s} {size:4d} {batch:5d} {mode:9s} {r['images_per_s']:7.2f} {r['ms']:9.0f} "
                      f"{r['gflops']:9.2f} {r['gflops_per_s']:8.1f} {100 * r['gflops_per_s'] / peak:5.0f}% "
                      f"{r['peak_mb']:8.0f}")
                results.append(dict(preset=name, size=size, batch=batch, mode=mode, dtype=args.dtype,
                                    fraction_of_peak=r["gflops_per_s"] / peak, **r))
        print(f"{name:16s} fuse(): max |fused - eager| = {diff:.1e}, / max |eager| = {rel:.1e} "
              f"({'ok' if rel <= 1e-4 else 'ABOVE 1e-4'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=args.device, device_name=where, dtype=args.dtype, matmul_gflops=peak,
                           results=results, failed=failed), f, indent=1)
    if failed:
        print(f"{len(failed)} case(s) failed: {', '.join(failed)}")
        sys.exit(1)


def time_case(args, name, batch, mode):
    """One case, in this process (--one-process) or in a child of its own. Raises RuntimeError when it fails."""
    if args.one_process:
        return run_one(name, batch, mode, args.min_time, args.device, args.dtype)
    cmd = [sys.executable, __file__, "--one", name, str(batch), mode, "--min-time", str(args.min_time),
           "--threads", str(args.threads), "--device", args.device, "--dtype", args.dtype]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_size(name):
    return (yolov1.PRESETS[name] if name in yolov1.PRESETS else yolov2.PRESETS[name])["img_size"]


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=list(yolov1.PRESETS) + list(yolov2.PRESETS))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 16])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--min-time", type=float, default=2.0, help="seconds of timed forwards per case (min 2 runs)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                   help="bfloat16: the forward under autocast (train.py's --amp on GPUs with bfloat16 units)")
    p.add_argument("--one-process", action="store_true", help="every case in this process, none in a child")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--one", nargs=3, metavar=("PRESET", "BATCH", "MODE"), help=argparse.SUPPRESS)
    return p


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    if args.one:
        torch.set_num_threads(args.threads)
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.one[2], args.min_time, args.device,
                                 args.dtype)))
    else:
        main(args)
