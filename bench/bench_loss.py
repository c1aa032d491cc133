"""
Time of loss.yolov1_loss and loss.yolov2_loss, forward + backward, for one batch (16 by default) with
VOC-like targets, next to the forward + backward of the model that produces their input (yolov1 at 448,
yolov2-voc at 416). Goal: the loss costs under 1% of the model's training step on this CPU.

Targets: VOC 2007 trainval has 12,608 objects in 5,011 images (2.5 per image, up to 42); we draw each
image's count from a Poisson of mean 2.5, at least 1, at most 42, with random centres and sizes from 5% to
90% of the image.

Run:  python bench/bench_loss.py                 (includes the two model steps: about a minute on 2 cores)
      python bench/bench_loss.py --no-model      (the losses only)
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import loss  # noqa: E402
import metrics  # noqa: E402
import yolov1  # noqa: E402
import yolov2  # noqa: E402


def voc_like_targets(batch, num_classes=20, mean_objects=2.5, max_objects=42, seed=0):
    g = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(batch):
        m = int(torch.poisson(torch.tensor([mean_objects]), generator=g).clamp(1, max_objects))
        centre = torch.rand(m, 2, generator=g)
        size = 0.05 + 0.85 * torch.rand(m, 2, generator=g)
        boxes = torch.cat([centre - size / 2, centre + size / 2], 1).clamp(0, 1)
        targets.append({"boxes": boxes, "labels": torch.randint(0, num_classes, (m,), generator=g)})
    return targets


def best_time(fn, min_time, min_runs=3):
    fn()                                                   # warm-up
    times = []
    while sum(times) < min_time or len(times) < min_runs:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    targets = voc_like_targets(args.batch)
    n_obj = sum(len(t["labels"]) for t in targets)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch}, {n_obj} objects")

    # padded as data.collate pads them in the loader's workers (not timed: the training process never does it)
    cells, region = metrics.batch_targets(targets, **yolov1.TARGETS), metrics.batch_targets(targets, **yolov2.TARGETS)
    cases = {
        "yolov1": (lambda p: loss.yolov1_loss(p, cells), (args.batch, 7, 7, 30), "yolov1"),
        "yolov2": (lambda r: loss.yolov2_loss(r, region, torch.tensor(yolov2.ANCHORS_VOC), seen=6400),
                   (args.batch, 125, 13, 13), "yolov2-voc"),
    }
    for name, (loss_fn, shape, preset) in cases.items():
        pred = torch.randn(shape).mul_(0.5).requires_grad_()

        def loss_step():
            pred.grad = None
            loss_fn(pred)["total"].backward()

        t_loss = best_time(loss_step, args.min_time)
        line = f"{name}_loss fwd+bwd: {1000 * t_loss:8.2f} ms"
        if args.model:
            model = (yolov1 if preset in yolov1.PRESETS else yolov2).build(preset).train()
            images = torch.rand(args.batch, 3, model.img_size, model.img_size)

            def model_step():
                model.zero_grad(set_to_none=True)
                model(images).sum().backward()

            t = time.perf_counter()
            model_step()                                   # one step: tens of seconds at batch 16 on 2 cores
            t_model = time.perf_counter() - t
            line += (f" | {preset} fwd+bwd at {model.img_size}: {1000 * t_model:9.0f} ms"
                     f" | loss / model = {100 * t_loss / t_model:.3f}% (goal < 1%)")
            del model
        print(line)


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of timed loss steps (min 3 runs)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="intra-op threads; on a busy machine 2 threads can make these small tensors 100x "
                        "slower (threads waiting for each other), so compare with --threads 1")
    p.add_argument("--no-model", dest="model", action="store_false", help="skip the model fwd+bwd")
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
