"""
Train YOLOv1 / YOLOv2 the way the papers did, or the synthetic default that runs in minutes on a laptop.

Paper -> code
  YOLOv1 §2.2, YOLOv2 §3: the recipes and their lr schedules ....... recipes.py (yolov1.RECIPE, yolov2.RECIPE)
  YOLOv2 §2    "Multi-Scale Training": a new size every 10 batches ..... train_one_epoch, recipes.multiscale_size
  YOLOv2 §2    "Dimension Clusters": k-means on the training boxes ..... --kmeans (yolov2.dimension_clusters)
  darknet      weight decay on conv / connected weights only ........... param_groups()
  ours         checkpoints and exact resume, DDP, AMP, accumulation .... start_run(), end_epoch(), main()

The loop (main, train_one_epoch): set lr -> for each micro-batch: forward, the family's loss terms,
(total / accumulate).backward() -> optimizer step, zero_grad -> log -> at the epoch's end: evaluate
(VOC07 mAP@0.5 with detect.evaluate), checkpoint. Each detector family (yolov1.py, yolov2.py) gives the same
names: build, loss, detections, RECIPE, so nothing here branches on the family. --task classify pre-trains a
backbone with tools/classify.py; --plots draws with tools/plots.py (imported at those options' use only).

Run:
  python train.py                                            # synthetic shapes, small YOLOv1, CPU or GPU
  python train.py --model yolov1 --data VOCdevkit --weights extraction.conv.weights    # YOLOv1 §2.2
  python train.py --model yolov2-voc --data VOCdevkit --weights darknet19_448.conv.23  # YOLOv2 §3
  python train.py --task classify --model darknet19 --data imagenet_folder            # backbone
  torchrun --nproc_per_node=4 train.py --model yolov2-voc --data VOCdevkit             # several GPUs
  python train.py --resume runs/synthetic/last.pt                                      # continue exactly
"""
import contextlib
import csv
import os
import random
import time
import zipfile

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import data
import detect
import models
import metrics
import recipes
import yolov2
from recipes import family_for, learning_rate, multiscale_size, resolve

# -----------------------------------------------------------------------------
# Model, optimizer, weights

def build_model(args, num_classes):
    """The network of args.model through its family's build(); its .config goes into every checkpoint."""
    options = dict(batch_norm=args.batch_norm, backbone=args.backbone, pretrained=bool(args.backbone) or None)
    try:
        model = family_for(args).build(args.model, num_classes=num_classes, img_size=args.img_size,
                                      **{k: v for k, v in options.items() if v is not None})
    except ImportError as error:        # yolov1.ResNetYOLOv1 needs torchvision
        raise SystemExit(f"--backbone {args.backbone} needs torchvision ({error}); leave --backbone out for the "
                         "paper's network") from None
    except (TypeError, ValueError) as error:
        raise SystemExit(f"--model {args.model}: {error}") from None
    for module in model.modules():       # YOLOv1 §2.2: dropout .5 after the first connected layer
        if isinstance(module, nn.Dropout):
            module.p = args.dropout
    return model


def param_groups(model, weight_decay):
    """DARKNET: weight decay on the weights of convolutions and connected layers only, not on biases or batch
    norm (update_convolutional_layer / update_connected_layer decay `weights`, never `biases` or `scales`)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear))
            (decay if is_weight else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(args, model):
    """The papers: SGD with momentum (YOLOv1 §2.2, YOLOv2 §3). OUR CHOICE for the synthetic recipe: Adam
    (beta1 = --momentum), which trains the small net from scratch in minutes where SGD at the papers' rates needs
    far more steps. Weight decay goes to the same parameters either way (param_groups)."""
    groups = param_groups(model, args.weight_decay)
    if args.optimizer == "adam":
        return torch.optim.Adam(groups, lr=args.lr, betas=(args.momentum, 0.999))
    return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum)


def load_weights(model, path):
    """--weights into model: a classifier checkpoint's trunk (tools/classify.py), else models.load_weights (a
    train.py checkpoint, or a darknet file, whole or its first layers: extraction.conv.weights, ...)."""
    try:
        if zipfile.is_zipfile(path):                 # torch.save writes zip archives
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            if checkpoint["model_config"]["family"] == "classify" != model.config["family"]:
                from tools import classify
                return classify.copy_trunk(checkpoint, model, path)
        return models.load_weights(model, path, partial=True)
    except ValueError as error:
        raise SystemExit(str(error)) from None


# -----------------------------------------------------------------------------
# Data

def build_datasets(args, family):
    """-> (train set, validation set). Every set has .class_names; detection sets have .annotation(i)."""
    augment = None if args.augment == "none" else args.augment
    if args.task == "classify":
        return family.datasets(args.data, args.img_size, augment)
    if args.data is None:
        return (data.shapes_split("train", args.train_images, args.img_size, args.seed, augment),
                data.shapes_split("val", args.val_images, args.img_size, args.seed))
    # A VOCdevkit tree: train on 2007+2012 trainval, validate on 2007 test (YOLOv1 §2.2, YOLOv2 §3)
    trainval, test = data.voc_splits(args.data, "trainval"), data.voc_splits(args.data, "test", years=["2007"])
    if trainval:
        if not test:
            print(f"warning: no VOC2007 test split under {args.data}: validating on the training images")
        return (data.VOCDataset(args.data, trainval, args.img_size, augment, seed=args.seed),
                data.VOCDataset(args.data, test or trainval, args.img_size))
    # COCO json or darknet txt labels; validation on --val-data
    return (detect.open_any(args.data, img_size=args.img_size, augment=augment, seed=args.seed),
            detect.open_any(args.val_data or args.data, img_size=args.img_size))


def to_device(targets, device):
    return [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def check_datasets(args, train_set, val_set, rank):
    """Refuse an unusable training set before anything trains (data.check_annotations: unknown classes, missing
    files, no object, ...; no image decoded), and one smaller than a batch."""
    if args.task == "detect":
        try:
            summaries = [data.check_annotations(s) for s in (train_set, val_set)]
        except ValueError as error:
            raise SystemExit(f"{args.data}: {error}") from None
        if rank == 0:
            print(f"training set: {summaries[0]}; validation set: {summaries[1]}")
    if len(train_set) < args.batch_size:
        raise SystemExit(f"the training set has {len(train_set)} images, fewer than one batch of --batch-size "
                         f"{args.batch_size} ({args.data or 'synthetic'}): nothing to train on")


# -----------------------------------------------------------------------------
# Checkpoints: atomic, complete, loaded with weights_only=True

def rng_states():
    numpy_state = np.random.get_state()     # ('MT19937', keys, pos, has_gauss, gauss): no arrays in the file
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64))] + list(numpy_state[2:]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in states["python"]))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(state, path):
    """Write to path.tmp, flush it to disk, then rename: killing the process at any moment leaves either the
    previous file or the new one under path, never half a file (os.replace is atomic on POSIX and Windows)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):      # make the rename itself durable (POSIX; not possible on Windows)
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


# -----------------------------------------------------------------------------
# Training: one epoch, evaluation, progress lines

def train_one_epoch(run, loss, loader, epoch, args):
    """One pass over loader: run["steps_per_epoch"] optimizer steps of --batch-size images, each the mean of the
    family's loss over them. run: start_run's state, whose counters (step, seen, steps_done) move on.
    -> (mean loss terms, last lr, stop: --time-limit reached)"""
    model, optimizer, scaler = run["model"], run["optimizer"], run["scaler"]
    batches, sums, t_log, images_since_log = iter(loader), {}, time.time(), 0
    device, world, micro = run["device"], run["world"], run["micro"]
    model.train()
    for i in range(run["steps_per_epoch"]):
        lr = learning_rate(args, run["step"], run["steps_per_epoch"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        size = multiscale_size(args.seed, run["step"], args.img_size) if args.multiscale else args.img_size
        # The papers use 64 images per step. With --accumulate k we step once every k micro-batches and
        # divide each micro-batch loss by k: gradients add up, and we want their mean over the 64 images.
        for k in range(args.accumulate):
            images, targets = next(batches)
            images, targets = images.to(device, non_blocking=True), to_device(targets, device)
            if size != images.shape[-1]:
                # DEPARTURE from darknet, which reloads the data at the new size: we resize the batch.
                # Boxes are normalized, so they stay valid.
                images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
            run["seen"] += micro * world          # darknet counts this batch as seen before its loss
            # DDP averages gradients over the processes at every backward; skip it but for the last micro-batch
            sync = model.no_sync() if world > 1 and k < args.accumulate - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast(device.type, dtype=run["amp_dtype"], enabled=args.amp):
                    out = model(images)
                terms = loss(run["raw_model"], out.float(), targets, run["seen"])
                if not torch.isfinite(terms["total"]):
                    raise SystemExit(
                        f"non-finite loss {terms['total'].item()} at epoch {epoch + 1} step {i + 1} (step "
                        f"{run['step']} of the run, micro-batch {k + 1}/{args.accumulate}, lr {lr:.3g}); images: "
                        f"{[t.get('path') for t in targets]}; last good checkpoint: "
                        f"{run['last_path'] if os.path.exists(run['last_path']) else 'none written yet'}")
                scaler.scale(terms["total"] / args.accumulate).backward()
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.item() / args.accumulate
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)   # free the gradients' memory until the next backward
        run["step"], run["steps_done"], images_since_log = run["step"] + 1, run["steps_done"] + 1, \
            images_since_log + args.batch_size

        stop = args.time_limit is not None and time.time() - run["t_start"] > args.time_limit
        if world > 1:                           # every process must stop at the same step
            flag = torch.tensor(float(stop), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if (i + 1) % args.log_interval == 0 or i + 1 == run["steps_per_epoch"] or stop:
            elapsed = time.time() - run["t_start"]
            eta = duration(elapsed / run["steps_done"] * (run["steps_total"] - run["steps_done"]))
            run["log"](f"epoch {epoch + 1:3d}/{args.epochs} step {i + 1:5d}/{run['steps_per_epoch']} | "
                       f"{loss_text({k: v / (i + 1) for k, v in sums.items()})} | lr {lr:.2e} | "
                       f"{images_since_log / (time.time() - t_log):.1f} img/s | {size} px | seen {run['seen']:,} | "
                       f"ETA {eta}")
            t_log, images_since_log = time.time(), 0
        if stop:
            run["log"](f"--time-limit {args.time_limit} s reached at epoch {epoch + 1} step {i + 1}")
            break
    return {k: v / (i + 1) for k, v in sums.items()}, lr, stop


def evaluate(model, family, dataset, args, batch_size):
    """Detector: VOC07 mAP@0.5 of every detection above metrics.EVAL_CONF after the family's evaluation NMS
    (detect.evaluate). A classifier: its family's top-1 / top-5. -> dict with "map"."""
    if args.task == "classify":
        return family.evaluate(model, dataset, batch_size, args.workers)
    detections, truths, _ = detect.evaluate(model, dataset, metrics.EVAL_CONF, family.EVAL_NMS, batch_size,
                                            args.workers)
    return metrics.evaluate(detections, truths, protocol="voc07", num_classes=model.num_classes)


def duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def loss_text(terms):
    """'loss 12.345 (xy 1.234 wh ...)': the total, then each term of the loss under its own name."""
    parts = " ".join(f"{k} {v:.3f}" for k, v in terms.items() if k != "total")
    return f"loss {terms['total']:.3f}" + (f" ({parts})" if parts else "")


def write_csv(history, path):
    columns = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(history)


def setup_distributed(args):
    """torchrun sets WORLD_SIZE, RANK and LOCAL_RANK: one process per GPU (NCCL) or per CPU slot (gloo).
    -> (processes, this process's rank, its device)"""
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if world > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    return world, rank, torch.device(args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))


# -----------------------------------------------------------------------------

def start_run(args, family, class_names, checkpoint, device, world, rank):
    """The state of a run, all that a checkpoint holds: the model (built, --weights loaded; DDP-wrapped as
    "model", bare as "raw_model"), optimizer, AMP scaler, counters, best score and history; or all of it from
    the checkpoint being resumed. -> run (a dict; train_one_epoch and end_epoch update it)"""
    seed_everything(args.seed)
    raw_model = build_model(args, len(class_names)).to(device)
    if device.type == "cpu":    # ours: NHWC convolutions are faster on CPU (bench/bench_model.py)
        raw_model = raw_model.to(memory_format=torch.channels_last)
    log = print if rank == 0 else (lambda *a, **k: None)
    if hasattr(raw_model, "weights_note"):
        log(raw_model.weights_note)
    if args.weights and not checkpoint:
        log(load_weights(raw_model, args.weights))
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    run = dict(raw_model=raw_model, optimizer=make_optimizer(args, raw_model), amp_dtype=amp_dtype,
               scaler=torch.amp.GradScaler(device.type, enabled=args.amp and amp_dtype == torch.float16),
               epoch=0, step=0, seen=0, best=-1.0, history=[], device=device, world=world, rank=rank, log=log,
               class_names=list(class_names), last_path=os.path.join(args.out, "last.pt"))
    if checkpoint:
        try:
            models.load_state(raw_model, checkpoint, args.resume)
        except ValueError as error:
            raise SystemExit(str(error)) from None
        run["optimizer"].load_state_dict(checkpoint["optimizer"])
        run["scaler"].load_state_dict(checkpoint["scaler"])
        run.update({k: checkpoint[k] for k in ("epoch", "seen", "best", "history")}, step=checkpoint["schedule"]["step"])
        set_rng_states(checkpoint["rng"])
        log(f"resumed {args.resume}: epoch {run['epoch']}, step {run['step']}, {run['seen']:,} images seen")
    run["model"] = raw_model if world == 1 else nn.parallel.DistributedDataParallel(
        raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    return run


def end_epoch(run, row, args, metric_name):
    """Rank 0: the epoch's row into the history, last.pt (and best.pt when the score improved), log.csv, a line."""
    run["history"].append(row)
    improved = row["val"] is not None and row["val"] > run["best"]
    run["best"] = row["val"] if improved else run["best"]
    state = {"model_config": run["raw_model"].config, "class_names": run["class_names"], "config": vars(args),
             "model": run["raw_model"].state_dict(), "optimizer": run["optimizer"].state_dict(),
             "scaler": run["scaler"].state_dict(), "rng": rng_states(),
             "schedule": {"name": args.schedule, "step": run["step"], "steps_per_epoch": run["steps_per_epoch"]},
             **{k: run[k] for k in ("epoch", "seen", "best", "history")}}
    save_checkpoint(state, run["last_path"])
    if improved:
        save_checkpoint(state, os.path.join(args.out, "best.pt"))
    write_csv(run["history"], os.path.join(args.out, "log.csv"))
    val = "" if row["val"] is None else f" | {metric_name} {row['val']:.4f} (best {run['best']:.4f})"
    mean = {k[5:]: v for k, v in row.items() if k.startswith("loss_")}
    run["log"](f"epoch {row['epoch']:3d}/{args.epochs} done | {loss_text(dict(total=row['loss'], **mean))} | "
               f"lr {row['lr']:.2e} | {row['seconds']:.1f} s{val} | ETA {duration(run['eta'])} | saved "
               f"{run['last_path']}{' and best.pt' if improved else ''}")


def main(args):
    checkpoint = resolve(args)
    family = family_for(args)
    world, rank, device = setup_distributed(args)
    micro = args.batch_size // (world * args.accumulate)
    if micro * world * args.accumulate != args.batch_size:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by {world} processes x --accumulate "
                         f"{args.accumulate}")

    # Data, checked before anything trains
    train_set, val_set = build_datasets(args, family)
    if args.kmeans:
        return yolov2.dimension_clusters(train_set, args.img_size, args.seed)
    check_datasets(args, train_set, val_set, rank)
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed, drop_last=True)
    loader_rng = torch.Generator()
    loader = torch.utils.data.DataLoader(train_set, micro, sampler=sampler, num_workers=args.workers,
                                         collate_fn=data.collate, drop_last=True, generator=loader_rng)

    # Model, weights, optimizer: new, or all of it from the checkpoint being resumed
    run = start_run(args, family, train_set.class_names, checkpoint, device, world, rank)
    start_epoch, metric_name = run["epoch"], "val top-1" if args.task == "classify" else "val mAP@0.5 (VOC07)"
    run.update(micro=micro, steps_per_epoch=len(loader) // args.accumulate, t_start=time.time(), steps_done=0)
    run["steps_total"] = (args.epochs - start_epoch) * run["steps_per_epoch"]
    os.makedirs(args.out, exist_ok=True)
    run["log"](f"{run['raw_model'].preset}: {sum(p.numel() for p in run['raw_model'].parameters()):,} parameters, "
               f"{len(train_set.class_names)} classes, {len(train_set)} training images, {run['steps_per_epoch']} "
               f"steps of {args.batch_size} per epoch ({world} x {args.accumulate} x {micro}), on {device}, recipe "
               f"{args.recipe}, output {args.out}")

    result = None
    for epoch in range(start_epoch, args.epochs):
        # Epoch e's data order, augmentation and dropout are a function of (seed, epoch, rank) alone, so a resumed
        # run replays exactly what an uninterrupted one does.
        seed_everything(args.seed * 1_000_000 + epoch * 1000 + rank)
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):                 # data.py: augmentation of image i from (seed, epoch, i)
            train_set.set_epoch(epoch)
        loader_rng.manual_seed(args.seed * 1_000_000 + epoch)   # the workers' seeds
        t_epoch = time.time()
        mean, lr, stop = train_one_epoch(run, family.loss, loader, epoch, args)
        run["epoch"] = epoch + 1
        row = {"epoch": epoch + 1, "seen": run["seen"], "lr": lr, "loss": mean["total"],
               **{f"loss_{k}": v for k, v in mean.items() if k != "total"}, "val": None,
               "seconds": round(time.time() - t_epoch, 1)}
        if rank == 0 and ((epoch + 1) % args.eval_every == 0 or stop or epoch + 1 == args.epochs):
            result = evaluate(run["raw_model"], family, val_set, args, micro)
            row["val"] = float(result["map"])       # a Python float: the checkpoint holds no numpy objects
            if args.task == "classify":
                run["log"](f"epoch {epoch + 1:3d} | val top-1 {result['top1']:.4f} top-5 {result['top5']:.4f}")
        if rank == 0:                               # the others wait at the barrier
            run["eta"] = (time.time() - run["t_start"]) / (epoch + 1 - start_epoch) * (args.epochs - epoch - 1)
            end_epoch(run, row, args, metric_name)
        if world > 1:
            dist.barrier()
        if stop:
            break

    if rank == 0 and args.plots:                    # not the paper: tools/plots.py draws them with Pillow
        from tools import plots
        plots.save_curves_png(run["history"], os.path.join(args.out, "curves.png"), metric_name)
        if result is not None and args.task == "detect":
            plots.save_pr_curves_png(result, train_set.class_names, os.path.join(args.out, "pr_curves.png"))
    run["log"](f"done in {duration(time.time() - run['t_start'])}: best {metric_name} {run['best']:.4f}; "
               f"{args.out}: last.pt, best.pt, log.csv" + (", curves.png, pr_curves.png" if args.plots else ""))
    if world > 1:
        dist.destroy_process_group()
    return {"history": run["history"], "best": run["best"], "result": result, "out": args.out}


def get_args_parser():
    return recipes.get_args_parser(__doc__)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
