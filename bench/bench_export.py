"""
ONNX export (tools/export.py) measured against PyTorch, on CPU:
  1. for every preset of every family (detect.preset_names), at its native size, with seeded random weights and
     batch-norm statistics far from (0, 1): the largest |onnxruntime - PyTorch| over a batch of 2 random images,
     and that difference as a fraction of the output's largest |value| (tests/test_export.py requires < 1e-4);
  2. yolov2-voc at 416, batch 1 and 8: images/s of PyTorch eager (detect.py's forward), PyTorch with batch norm
     folded (darknet.fuse; the exported graph folds it too), and onnxruntime, all with the same number of threads.
Needs onnx and onnxruntime (pip install onnx onnxruntime). The ONNX files go to a temporary folder.

Run:  python bench/bench_export.py                              (every preset, then the speed; minutes on 2 cores)
      python bench/bench_export.py --presets yolov2-voc yolov1-tiny --no-speed
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "tests")]
import darknet  # noqa: E402
import detect  # noqa: E402
from conftest import randomized  # noqa: E402  (tests/conftest.py: batch-norm statistics far from (0, 1))
from tools.export import export_onnx  # noqa: E402


# yolo9000 needs darknet's 9k.tree, which we do not have here: a tree of as many nodes (9418) stands in for it, 18
# roots and groups of 20 siblings (the network and its ONNX graph depend only on the node count)
TREE_9418 = dict(ids=[str(k) for k in range(9418)], parents=[-1] * 18 + [(k - 18) // 20 for k in range(18, 9418)])


def build(preset, img_size=None):
    options = {"tree": TREE_9418} if preset == "yolo9000" else {}
    torch.manual_seed(0)
    return randomized(detect.family_of(preset).build(preset, img_size=img_size, **options))


def session(path, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def difference(preset, folder):
    model = build(preset)
    path = os.path.join(folder, preset + ".onnx")
    start = time.perf_counter()
    export_onnx(model, path)
    seconds = time.perf_counter() - start
    x = torch.rand(2, 3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)
    raw = torch.from_numpy(session(path, torch.get_num_threads()).run(["raw"], {"images": x.numpy()})[0])
    diff, scale = (raw - expected).abs().max().item(), expected.abs().max().item()
    megabytes = os.path.getsize(path) / 2 ** 20
    os.remove(path)
    print(f"| {preset} | {model.img_size} | {diff:.2e} | {scale:.3g} | {diff / scale:.1e} | {megabytes:.0f} MB "
          f"| {seconds:.1f} s |", flush=True)


def images_per_second(runs, x, min_time):
    """{name: run} -> {name: images/s}, the median over rounds in which each run goes once, in turn, so that a
    change in the machine's load falls on all of them alike."""
    for run in runs.values():
        run(x)                                                   # warm-up: allocations, oneDNN / ORT kernels
    times = {name: [] for name in runs}
    while sum(map(sum, times.values())) < min_time * len(runs) or len(times[next(iter(runs))]) < 3:
        for name, run in runs.items():
            start = time.perf_counter()
            run(x)
            times[name].append(time.perf_counter() - start)
    return {name: x.shape[0] / statistics.median(t) for name, t in times.items()}


def speed(preset, img_size, batch_sizes, min_time, folder):
    model = build(preset, img_size)
    path = os.path.join(folder, "speed.onnx")
    export_onnx(model, path)
    threads = torch.get_num_threads()
    onnx_session, fused = session(path, threads), darknet.fuse(model)
    runs = {"PyTorch eager": lambda x: model(x), "PyTorch fused": lambda x: fused(x),
            "onnxruntime": lambda x: onnx_session.run(["raw"], {"images": x.numpy()})}
    print(f"\n{preset} at {img_size}, {threads} threads (torch {torch.__version__}, onnxruntime "
          f"{__import__('onnxruntime').__version__}), images/s, median of >= 3 interleaved runs; load average "
          f"{os.getloadavg()[0]:.1f}:")
    print("| batch | " + " | ".join(runs) + " | onnxruntime / eager |")
    print("|---|" + "---|" * (len(runs) + 1))
    with torch.no_grad():
        for batch in batch_sizes:
            rates = images_per_second(runs, torch.rand(batch, 3, img_size, img_size), min_time)
            print(f"| {batch} | " + " | ".join(f"{r:.2f}" for r in rates.values()) +
                  f" | {rates['onnxruntime'] / rates['PyTorch eager']:.2f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


def speed_parser(description, no_speed_help):
    """The flags this script and bench_bf16.py share: which presets, and the speed part's preset, size, batches."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="*", default=detect.preset_names(), help="default: every preset")
    p.add_argument("--no-speed", action="store_true", help=no_speed_help)
    p.add_argument("--speed-preset", default="yolov2-voc")
    p.add_argument("--img-size", type=int, default=416)
    p.add_argument("--batch-sizes", type=int, nargs="*", default=[1, 8])
    p.add_argument("--min-time", type=float, default=5.0, help="seconds of timed runs per runner and batch size")
    return p


def main():
    args = speed_parser(__doc__, "only the differences").parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print("| preset | size | max abs diff | max abs output | diff / output | ONNX file | export time |")
        print("|---|---|---|---|---|---|---|")
        for preset in args.presets:
            difference(preset, folder)
        if not args.no_speed:
            speed(args.speed_preset, args.img_size, args.batch_sizes, args.min_time, folder)


if __name__ == "__main__":
    main()
