"""
Training throughput of one preset at its size, on whatever device is there: images/s, each step's time split into
waiting for data and computing, peak memory, with and without AMP (devices.amp_dtype), and channels-last or not;
the FLOPs of one image's forward and backward (torch.utils.flop_counter) and the fraction of the device's peak
that the measured rate reaches. Under torchrun: rank 0 first alone, then all processes with DDP; it reports the
scaling from 1 to N processes (each process runs --batch images per step: the per-device load stays the same).
Then the data pipeline alone: images/s per loader worker for each augmentation, and for the synthetic default.

The step is train.py's: the family's loss, GradScaler for float16, SGD on devices' choices. The data: JPEGs of
500x375 with VOC's 20 classes written by bench_data.py, loaded with --augment (darknet's yolov2 by default) by
--workers processes (default devices.default_workers). --data tensors skips the loader: a fixed batch.
Each step ends with a device synchronisation so that its time splits cleanly (it forgoes a little overlap).

Run: python bench/bench_train.py                                   # yolov2-voc 416, batch 64, AMP off and on
     python bench/bench_train.py --model yolov2-tiny-voc --batch 4 --steps 3   # CPU-sized
     torchrun --nproc_per_node=2 bench/bench_train.py --amp on         # scaling 1 -> 2
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

import torch
import torch.distributed as dist
from torch.utils.flop_counter import FlopCounterMode

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))
import bench_data  # noqa: E402
import data  # noqa: E402
from tools import devices  # noqa: E402
import detect  # noqa: E402
import train  # noqa: E402

# Dense (no sparsity) tensor-core peaks from the vendor's data sheets, FLOP/s, for AMP's dtype (bfloat16, or
# float16 where there is no bfloat16). The measured matmul peak is printed beside it; the fraction uses the
# data sheet's when the GPU is listed here, else the measured one.
DATASHEET_PEAK = {"H200": 989e12, "H100 80GB HBM3": 989e12, "H100 SXM": 989e12, "H100 PCIe": 756e12,
                  "H100 NVL": 835e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
                  "V100": 125e12, "T4": 65e12}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device):
    """CUDA: the most memory torch allocated on the device; CPU: the process's peak resident memory (VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def matmul_peak(device, dtype, n=None, repeats=5):
    """FLOP/s of the best of a few n x n matmuls in dtype (2 n^3 FLOPs each). float32 on CUDA is timed with TF32
    allowed, as cuDNN's convolutions run float32 by default."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        a @ b
        synchronize(device)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / best


def count_flops(model, family, size, device):
    """FLOPs of one image's forward and backward (convolutions, matmuls: 2 per multiply-add), counted by
    torch.utils.flop_counter on batch 2. The backward of the first convolution has no input gradient."""
    x = torch.rand(2, 3, size, size, device=device)
    with FlopCounterMode(display=False) as forward:
        out = model(x)
    with FlopCounterMode(display=False) as backward:
        out.float().square().mean().backward()
    model.zero_grad(set_to_none=True)
    return forward.get_total_flops() / 2, backward.get_total_flops() / 2


def make_loader(args, device, root, size, rank):
    dataset = data.VOCDataset(root, splits=[("2007", "trainval")], img_size=size,
                              augment=None if args.augment == "none" else args.augment, seed=rank)
    sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=10**9,
                                             generator=torch.Generator().manual_seed(rank))
    return torch.utils.data.DataLoader(dataset, args.batch, sampler=sampler, collate_fn=data.collate, drop_last=True,
                                       **devices.loader_options(device, args.workers))


def time_training(args, model, raw_model, family, batches, device, amp, dtype):
    """args.warmup steps, then args.steps timed ones. -> dict of the means per step"""
    optimizer = torch.optim.SGD(train.param_groups(raw_model, 5e-4), lr=1e-5, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and dtype == torch.float16)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    wait = compute = 0.0
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        images, targets = next(batches)
        images, targets = images.to(device, non_blocking=True), devices.to_device(targets, device)
        synchronize(device)
        t1 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            out = model(images)
        terms = family.loss(raw_model, out.float(), targets, 10**6)      # past darknet's 12800-image warm-up
        scaler.scale(terms["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step >= args.warmup:
            wait, compute = wait + t1 - t0, compute + time.perf_counter() - t1
    step_s = (wait + compute) / args.steps
    return dict(images_per_s=args.batch / step_s, step_ms=1000 * step_s, data_wait_ms=1000 * wait / args.steps,
                compute_ms=1000 * compute / args.steps, peak_memory_mb=peak_memory_mb(device))


def fixed_batches(args, device, size, num_classes):
    """--data tensors: the same random batch every step, already on the device (no loader at all)."""
    images = torch.rand(args.batch, 3, size, size)
    targets = [{"boxes": torch.tensor([[0.2, 0.3, 0.6, 0.8], [0.5, 0.1, 0.9, 0.4]]),
                "labels": torch.tensor([i % num_classes, (i + 1) % num_classes])} for i in range(args.batch)]
    while True:
        yield images, targets


def measure(args, device, root, world, rank, processes):
    """All (AMP, memory format) cases with `processes` processes (1: rank 0 alone, no DDP). -> list of dicts"""
    family = detect.family_of(args.model)
    size = args.img_size or family.PRESETS[args.model]["img_size"]
    runs = []
    for amp in {"off": [False], "on": [True], "both": [False, True]}[args.amp]:
        for channels_last in {"on": [True], "off": [False], "both": [True, False]}[args.channels_last]:
            torch.manual_seed(0)
            raw_model = family.build(args.model, num_classes=20, img_size=size).to(device).train()
            if channels_last:
                raw_model = raw_model.to(memory_format=torch.channels_last)
            model = raw_model if processes == 1 else torch.nn.parallel.DistributedDataParallel(
                raw_model, device_ids=[device.index] if device.type == "cuda" else None)
            model = devices.compile_model(model, args.compile)
            dtype = devices.amp_dtype(device.type)
            if args.data == "tensors":
                batches = fixed_batches(args, device, size, 20)
            else:
                batches = iter(make_loader(args, device, root, size, rank))
            r = time_training(args, model, raw_model, family, batches, device, amp, dtype)
            del batches                                     # its workers go
            runs.append(dict(processes=processes, amp=str(dtype).replace("torch.", "") if amp else "float32",
                             channels_last=channels_last, batch_per_process=args.batch, **r,
                             images_per_s_all=r["images_per_s"] * processes))
    return runs


def data_rates(args, root, size):
    """Images/s per loader worker: the JPEG pipeline at `size` for each augmentation, and the synthetic default's
    shapes at 112 (data.ShapesDataset: rendered, not decoded)."""
    workers, rates = max(args.workers, 1), []
    sets = [(f"VOC-like JPEGs 500x375 -> {size}, augment {a}",
             data.VOCDataset(root, splits=[("2007", "trainval")], img_size=size, augment=a)) for a in
            (None, "yolov1", "yolov2")]
    sets.append(("synthetic shapes 112 (python train.py)", data.shapes_split("train", 10**6, 112)))
    for name, dataset in sets:
        n = args.data_images
        sampler = torch.utils.data.RandomSampler(dataset, replacement=True, num_samples=n + workers * 8,
                                                 generator=torch.Generator().manual_seed(0))
        loader = torch.utils.data.DataLoader(dataset, 8, sampler=sampler, collate_fn=data.collate, num_workers=workers)
        it = iter(loader)
        for _ in range(workers):                            # every worker started and warm
            next(it)
        t, seen = time.perf_counter(), 0
        for images, _ in it:
            seen += len(images)
        rate = seen / (time.perf_counter() - t)
        rates.append(dict(pipeline=name, workers=workers, images_per_s=rate, images_per_s_per_worker=rate / workers))
    return rates


def device_peak(device, amp_dtype):
    """-> (peak FLOP/s used for the fractions, where it comes from, measured matmul FLOP/s)."""
    measured = matmul_peak(device, amp_dtype if device.type == "cuda" else torch.float32)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in DATASHEET_PEAK.items():
            if key in name:
                return peak, f"{name} data sheet, dense {str(amp_dtype)[6:]}", measured
        return measured, f"{name}, measured {str(amp_dtype)[6:]} matmul", measured
    return measured, "measured float32 matmul (CPU)", measured


def main(args):
    world, rank, device = devices.setup_distributed(args.device)
    args.workers = devices.default_workers() if args.workers is None else args.workers
    family = detect.family_of(args.model)
    size = args.img_size or family.PRESETS[args.model]["img_size"]
    log = print if rank == 0 else (lambda *a, **k: None)
    amp_dtype = devices.amp_dtype(device.type)
    with tempfile.TemporaryDirectory() as root:
        if args.data == "loader" or args.data_images:
            bench_data.write_voc_folder(root, args.images, seed=rank)
        peak, peak_source, measured = device_peak(device, amp_dtype)
        torch.manual_seed(0)
        flops_fwd, flops_bwd = count_flops(family.build(args.model, num_classes=20, img_size=size).to(device),
                                           family, size, device)
        log(f"{args.model} {size}x{size}, batch {args.batch} per process, {world} process(es), {device} "
            f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}"
            f"), torch {torch.__version__}, data {args.data}, workers {args.workers}, {time.strftime('%Y-%m-%d')}")
        log(f"FLOPs per image: forward {flops_fwd / 1e9:.2f} G, backward {flops_bwd / 1e9:.2f} G, step "
            f"{(flops_fwd + flops_bwd) / 1e9:.2f} G; peak {peak / 1e9:.0f} GFLOP/s ({peak_source}); measured matmul "
            f"{measured / 1e9:.0f} GFLOP/s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        runs = []
        if world > 1:                                       # rank 0 alone first; the others wait
            if rank == 0:
                runs += measure(args, device, root, world, rank, 1)
            dist.barrier()
        runs += measure(args, device, root, world, rank, world)
        for r in runs:
            r["fraction_of_peak"] = r["images_per_s"] * (flops_fwd + flops_bwd) / peak
            r["compute_fraction_of_peak"] = args.batch / r["compute_ms"] * 1000 * (flops_fwd + flops_bwd) / peak
        log(f"{'procs':>5s} {'amp':>8s} {'NHWC':>4s} {'img/s':>8s} {'img/s all':>9s} {'step ms':>8s} "
            f"{'data ms':>8s} {'comp ms':>8s} {'peak MB':>8s} {'%peak':>6s} {'%peak comp':>10s}")
        for r in runs:
            log(f"{r['processes']:5d} {r['amp']:>8s} {'yes' if r['channels_last'] else 'no':>4s} "
                f"{r['images_per_s']:8.1f} {r['images_per_s_all']:9.1f} {r['step_ms']:8.1f} {r['data_wait_ms']:8.1f} "
                f"{r['compute_ms']:8.1f} {r['peak_memory_mb']:8.0f} {100 * r['fraction_of_peak']:5.1f}% "
                f"{100 * r['compute_fraction_of_peak']:9.1f}%")
        scaling = {}
        if world > 1 and rank == 0:                         # the 1-process figures are rank 0's
            for r in runs:
                if r["processes"] == world:
                    one = next(o for o in runs if o["processes"] == 1 and (o["amp"], o["channels_last"]) ==
                               (r["amp"], r["channels_last"]))
                    key = f"{r['amp']}, channels_last {r['channels_last']}"
                    scaling[key] = r["images_per_s_all"] / one["images_per_s_all"]
                    log(f"scaling 1 -> {world} processes ({key}): {scaling[key]:.2f}x (goal >= {0.9 * world:.1f}x)")
        rates = data_rates(args, root, size) if args.data_images and rank == 0 else []
        for r in rates:
            log(f"data: {r['pipeline']:52s} {r['images_per_s']:8.1f} img/s with {r['workers']} workers, "
                f"{r['images_per_s_per_worker']:7.1f} per worker")
    summary = dict(model=args.model, img_size=size, batch_per_process=args.batch, processes=world, device=str(device),
                   device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   torch=torch.__version__, workers=args.workers, data=args.data, load_average=os.getloadavg()[0],
                   flops_forward_per_image=flops_fwd, flops_backward_per_image=flops_bwd, peak_flops=peak,
                   peak_source=peak_source, matmul_flops=measured, runs=runs, scaling=scaling, data_rates=rates)
    if args.json and rank == 0:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    if world > 1:
        dist.destroy_process_group()
    return summary


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolov2-voc", help="a preset (detect.family_of)")
    p.add_argument("--img-size", type=int, help="default: the preset's")
    p.add_argument("--batch", type=int, default=64, help="images per step per process (default 64)")
    p.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--amp", choices=["off", "on", "both"], default="both")
    p.add_argument("--channels-last", choices=["on", "off", "both"], default="on")
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND", help="torch.compile the model")
    p.add_argument("--data", choices=["loader", "tensors"], default="loader",
                   help="loader: JPEGs through the DataLoader; tensors: one fixed batch (compute only)")
    p.add_argument("--augment", default="yolov2", choices=["none", "yolov1", "yolov2"])
    p.add_argument("--images", type=int, default=256, help="JPEGs written for the loader (default 256)")
    p.add_argument("--workers", type=int, help="loader processes (default: devices.default_workers)")
    p.add_argument("--data-images", type=int, default=400, help="images timed per data pipeline; 0 skips them")
    p.add_argument("--device", help="default: cuda if available")
    p.add_argument("--json", help="write the figures here")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
