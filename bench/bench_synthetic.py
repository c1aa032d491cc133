"""
The synthetic default (`python train.py`) split into its parts: images/s of the data (drawing batches of shapes,
data.ShapesDataset, collated and finished as train.py does: data.collate, train.network_input) and of the compute
(yolov1-shapes at 112, batch 32: forward, loss, backward, Adam), float32
and bfloat16 autocast, then the two together through train.py's DataLoader with 0, 1 and 2 loader processes.
Everything is measured in this one process, in alternating rounds (best of them), so that the ratios hold on a
shared machine even where the absolute figures move; the load average is printed with them. The CPU time of this
process (time.process_time; the loader processes' own is not in it) is printed beside the wall time.

Goal (README, Performance): drawing a batch costs a small fraction of the step it feeds.

Run: python bench/bench_synthetic.py [--rounds 3] [--steps 10]
"""
import argparse
import os
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import data  # noqa: E402
import train  # noqa: E402
from tools import devices  # noqa: E402


def synthetic_args():
    """train.py's resolved flags for `python train.py` (its folder claimed in a temporary directory, then removed)."""
    with tempfile.TemporaryDirectory() as folder:
        args = train.get_args_parser().parse_args(["--out", os.path.join(folder, "run"), "--exist-ok"])
        train.resolve(args)
    return args


def timed(fn, n):
    """(wall s, CPU s of this process) per call, over n calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def step_fn(args, model, optimizer, loss, bf16):
    """One optimizer step of train.py's loop on (images, targets)."""
    def step(images, targets):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(images)
        terms = loss(model, out.float(), targets, 10**6)
        terms["total"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (batches) per measurement")
    parser.add_argument("--workers", type=int, nargs="*", default=[0, 1, 2], help="loader processes to try")
    parser.add_argument("--threads", type=int, help="torch threads (default torch's: the cores). On a shared "
                        "machine --threads 1 gives the steadiest CPU times: no thread waits for a descheduled one")
    parser.add_argument("--malloc-defaults", action="store_true", help="leave glibc's malloc as it is (train.py "
                        "sets devices.keep_freed_memory on the CPU): run both ways to see what it changes")
    args_cli = parser.parse_args()
    kept = not args_cli.malloc_defaults and devices.keep_freed_memory("cpu")
    if args_cli.threads:
        torch.set_num_threads(args_cli.threads)
    args = synthetic_args()
    family = train.family_for(args)
    B, S, n = args.batch_size, args.img_size, args_cli.steps
    dataset = data.shapes_split("train", args.train_images, S, args.seed)
    dataset.finish_on_device = True                     # as train.py: uint8 batches, finished by network_input
    finished = data.shapes_split("train", args.train_images, S, args.seed)     # dataset[i] finished image by image
    torch.manual_seed(0)
    model = train.build_model(args, 3).to(memory_format=torch.channels_last).train()
    optimizer = train.make_optimizer(args, model)
    def fetch(indices):
        """train.py's data path for a batch: drawn at once, collated, finished (data.finish_batch)."""
        images, targets = data.collate(dataset.__getitems__(indices))
        return train.network_input(images, targets, S), targets

    fixed = fetch(list(range(B)))
    steps = {name: step_fn(args, model, optimizer, family.loss, bf16) for name, bf16 in (("fp32", False),
                                                                                         ("bf16", True))}
    for step in steps.values():                         # warm up both paths (oneDNN primitives, allocations)
        step(*fixed)
    best = {}

    def keep(key, value):
        best[key] = min(best.get(key, (float("inf"),) * 2), value)

    for r in range(args_cli.rounds):
        # data alone, as the loader fetches it in-process: one batch drawn at once, then collated
        keep("data: a batch drawn at once, collated, finished", timed(
            lambda i: fetch(list(range((r * n + i) * B, (r * n + i + 1) * B))), n))
        keep("data: image by image (dataset[i])", timed(
            lambda i: data.collate([finished[j] for j in range((r * n + i) * B, (r * n + i + 1) * B)]), n))
        for name, step in steps.items():                # compute alone, on one fixed batch
            keep(f"compute {name}", timed(lambda i: step(*fixed), n))
        for workers in args_cli.workers:                # together, through train.py's DataLoader
            for name, step in steps.items():
                loader = torch.utils.data.DataLoader(dataset, B, sampler=range(r * 10**4, 10**6), drop_last=True,
                                                     collate_fn=data.collate,
                                                     **devices.loader_options(torch.device("cpu"), workers))
                batches = iter(loader)
                def loop_step(i):
                    images, targets = next(batches)
                    step(train.network_input(images, targets, S), targets)
                loop_step(0)                            # workers started, pipeline full
                keep(f"train.py's loop, {workers} loader processes, {name}", timed(loop_step, n))
                del batches

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"synthetic default: {args.model} {S}x{S}, batch {B}; torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads, {cores} cores; best of {args_cli.rounds} rounds of {n} batches; "
          f"load average {os.getloadavg()[0]:.2f} at the end ({time.strftime('%Y-%m-%d %H:%M')}); freed memory "
          f"{'kept by malloc (devices.keep_freed_memory)' if kept else 'returned: glibc defaults'}")
    print(f"{'':58s} {'images/s':>9s} {'ms/batch':>9s} {'CPU ms':>7s}")
    for key, (wall, cpu) in best.items():
        print(f"{key:58s} {B / wall:9.1f} {1000 * wall:9.1f} {1000 * cpu:7.1f}")
    data_ms = 1000 * best["data: a batch drawn at once, collated, finished"][0]
    for name in steps:
        compute_ms = 1000 * best[f"compute {name}"][0]
        print(f"{name}: drawing a batch costs {data_ms / compute_ms:.0%} of the step it feeds ({data_ms:.1f} ms of "
              f"{compute_ms:.1f} ms)")


if __name__ == "__main__":
    main()
