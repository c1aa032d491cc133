"""
How often a training step makes the host wait for the device, counted on the CPU.

On a GPU, Python queues kernels and moves on; it stops and waits for the GPU to catch up whenever it needs a value
the GPU computes: .item(), bool(t), int(t), float(t) (aten._local_scalar_dense), nonzero and boolean-mask indexing
(the output's size is data), masked_select, repeat_interleave with a tensor of counts, unique; and a tensor made from
Python data inside the step (torch.tensor([...], device=cuda): a blocking copy, aten.lift_fresh). Each wait leaves
the GPU idle while the host catches up and queues the next kernels. This script runs train.py's per-step loop
(train.train_one_epoch) on the CPU under a dispatch mode that counts those operations, and prints them per step
and where each was issued. Not counted: the optimizer's step (its step counters live on the host on a GPU too),
the data loader's workers (other processes, before the batch exists on the device), evaluation. .tolist() is
counted by wrapping it (on a CPU tensor it dispatches nothing). The DataLoader's iterator, made once an epoch, draws
its workers' base seed with .item() from a CPU generator: counted, but no wait for a GPU.

Run:  python bench/host_waits.py                       # yolov2-tiny-voc at 96 px, batch 64, 3 steps
      python bench/host_waits.py --model yolov1-shapes --img-size 112
"""
import argparse
import collections
import os
import sys
import tempfile
import traceback

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import train  # noqa: E402

aten = torch.ops.aten
WAITS = {aten._local_scalar_dense.default: ".item() / bool() / int() / float()",
         aten.nonzero.default: "nonzero", aten.masked_select.default: "masked_select",
         aten.repeat_interleave.Tensor: "repeat_interleave(counts)", aten._unique2.default: "unique",
         aten.unique_dim.default: "unique", aten.unique_consecutive.default: "unique",
         aten.lift_fresh.default: "tensor from Python data", aten.lift_fresh_copy.default: "tensor from Python data"}


def where_issued():
    """file:line of the innermost frame of this repository (outside torch) that issued the operation."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for frame in reversed(traceback.extract_stack()[:-3]):
        if frame.filename.startswith(root) and not frame.filename.endswith("host_waits.py"):
            return f"{os.path.relpath(frame.filename, root)}:{frame.lineno}"
    return "?"


class CountWaits(TorchDispatchMode):
    """Counts the operations of WAITS (and index / index_put with a boolean mask) while not paused."""

    def __init__(self):
        super().__init__()
        self.counts, self.paused, self.active = collections.Counter(), False, False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = WAITS.get(func)
        if func in (aten.index.Tensor, aten.index_put.default, aten.index_put_.default):
            if any(torch.is_tensor(i) and i.dtype == torch.bool for i in args[1] if i is not None):
                name = "boolean-mask indexing"
        if name and not self.paused:
            self.counts[(name, where_issued())] += 1
        return func(*args, **kwargs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="yolov2-tiny-voc")
    p.add_argument("--img-size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    out = tempfile.mkdtemp(prefix="host_waits_")
    args = train.get_args_parser().parse_args([
        "--model", a.model, "--img-size", str(a.img_size), "--batch-size", str(a.batch_size), "--epochs", "1",
        "--train-images", str(a.batch_size * a.steps), "--val-images", "4", "--workers", "1", "--augment", "none",
        "--log-interval", str(a.steps), "--out", os.path.join(out, "run"), "--device", "cpu", "--quiet"])
    mode = CountWaits()
    tolist = torch.Tensor.tolist

    def counted_tolist(tensor):     # a copy to the host: on a CPU tensor no dispatched operation shows it
        if mode.active and not mode.paused:
            mode.counts[(".tolist()", where_issued())] += 1
        return tolist(tensor)
    torch.Tensor.tolist = counted_tolist
    register_optimizer_step_pre_hook(lambda *_: setattr(mode, "paused", True))
    register_optimizer_step_post_hook(lambda *_: setattr(mode, "paused", False))
    one_epoch = train.train_one_epoch

    def counted(*arguments, **keywords):
        mode.active = True
        try:
            with mode:
                return one_epoch(*arguments, **keywords)
        finally:
            mode.active = False
    train.train_one_epoch = counted
    train.main(args)
    total = sum(mode.counts.values())
    print(f"\n{a.model} at {a.img_size} px, batch {a.batch_size}, {a.steps} steps (the last with a log line): "
          f"{total} host waits, {total / a.steps:.1f} per step")
    for (name, where), n in sorted(mode.counts.items(), key=lambda kv: -kv[1]):
        print(f"  {n:5d}  {n / a.steps:7.1f}/step  {name:32s} {where}")


if __name__ == "__main__":
    main()
