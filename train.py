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
import os
import random
import time
import zipfile

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import checkpoints
import darknet
import data
import detect
import devices
import models
import metrics
import recipes
import yolov2
from checkpoints import rng_states, set_rng_states
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
        raise SystemExit(f"error: --backbone {args.backbone} needs torchvision ({error}); leave --backbone out for the "
                         "paper's network") from None
    except (TypeError, ValueError) as error:
        raise SystemExit(f"error: --model {args.model}: {error}") from None
    for module in model.modules():       # YOLOv1 §2.2: dropout .5 after the first connected layer
        if isinstance(module, nn.Dropout):
            module.p = args.dropout
    return model


def param_groups(model, weight_decay):
    """DARKNET: weight decay on the weights of convolutions, connected and locally connected layers only, not on
    biases or batch norm (update_convolutional_layer / update_connected_layer / update_local_layer decay
    `weights`, never `biases` or `scales`)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(module, (nn.Conv2d, nn.Linear, darknet.LocalLayer))
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
        raise SystemExit(f"error: {error}") from None


# -----------------------------------------------------------------------------
# Data

def build_datasets(args, family):
    """-> (train set, validation set). Every set has .class_names; detection sets have .annotation(i)."""
    augment = None if args.augment == "none" else args.augment
    if hasattr(family, "joint_datasets"):   # YOLO9000 §4: detection and classification images in one stream
        return family.joint_datasets(args)
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
            raise SystemExit(f"error: {args.data}: {error}") from None
        if rank == 0:
            print(f"training set: {summaries[0]}; validation set: {summaries[1]}")
    if len(train_set) < args.batch_size:
        raise SystemExit(f"error: the training set has {len(train_set)} images, fewer than one batch of --batch-size "
                         f"{args.batch_size} ({args.data or 'synthetic'}): nothing to train on")


# -----------------------------------------------------------------------------
# Training: one epoch, evaluation, progress lines

def train_one_epoch(run, loss, loader, epoch, args):
    """From step run["epoch_step"] of epoch to its end: optimizer steps of --batch-size images, each the mean of
    the family's loss over them. run: start_run's state, whose counters (step, epoch_step, seen, sums) move on.
    Every process stops at the same step when any asks to (agree_stop): -> (lr, why it stopped early or None)"""
    model, optimizer, scaler, stop = run["model"], run["optimizer"], run["scaler"], None
    batches, sums, t_log, images_since_log, interval = iter(loader), run["sums"], time.time(), 0, 0.0
    device, world, micro = run["device"], run["world"], run["micro"]
    model.train()
    for i in range(run["epoch_step"], run["steps_per_epoch"]):
        lr = learning_rate(args, run["step"], run["steps_per_epoch"])
        for group in optimizer.param_groups:
            group["lr"] = lr
        size = multiscale_size(args.seed, run["step"], args.img_size) if args.multiscale else args.img_size
        # The papers use 64 images per step. With --accumulate k we step once every k micro-batches and
        # divide each micro-batch loss by k: gradients add up, and we want their mean over the 64 images.
        step_terms = {}
        for k in range(args.accumulate):
            images, targets = next(batches)
            images, targets = images.to(device, non_blocking=True), devices.to_device(targets, device)
            if size != images.shape[-1]:
                # DEPARTURE from darknet, which reloads the data at the new size: we resize the batch.
                # Boxes are normalized, so they stay valid.
                images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
            # DDP averages gradients over the processes at every backward; skip it but for the last micro-batch
            sync = model.no_sync() if world > 1 and k < args.accumulate - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast(device.type, dtype=run["amp_dtype"], enabled=args.amp):
                    out = model(images)
                terms = loss(run["raw_model"], out.float(), targets, run["seen"] + (k + 1) * micro * world)
                # agreed before backward: a process that skipped it would leave the others waiting in DDP's
                bad = None if torch.isfinite(terms["total"]) else report_nonfinite(run, terms, targets, epoch, i, k, lr)
                stop = checkpoints.agree_stop(bad, world, device)
                if stop:
                    break
                scaler.scale(terms["total"] / args.accumulate).backward()
            for name, value in terms.items():
                step_terms[name] = step_terms.get(name, 0.0) + value.item() / args.accumulate
        if stop:                                # the step is not taken: last.pt holds the weights before it
            optimizer.zero_grad(set_to_none=True)
            break
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)   # free the gradients' memory until the next backward
        run["seen"] += args.batch_size          # darknet counts a batch as seen before its loss: seen + micro·world
        for name, value in step_terms.items():
            sums[name] = sums.get(name, 0.0) + value
        run["step"], run["epoch_step"], run["steps_done"] = run["step"] + 1, i + 1, run["steps_done"] + 1
        images_since_log, interval = images_since_log + args.batch_size, interval + step_terms["total"]
        checkpoints.warn_if_diverging(run, step_terms["total"], epoch, i)

        stop = checkpoints.agree_stop(run["stop"].get("signal") or ("time limit" if args.time_limit is not None
                                      and time.time() - run["t_start"] > args.time_limit else None), world, device)
        if (i + 1) % args.log_interval == 0 or i + 1 == run["steps_per_epoch"] or stop:
            elapsed = time.time() - run["t_start"]
            eta = duration(elapsed / run["steps_done"] * (run["steps_total"] - run["steps_done"]))
            run["log"](f"epoch {epoch + 1:3d}/{args.epochs} step {i + 1:5d}/{run['steps_per_epoch']} | "
                       f"{loss_text({k: v / (i + 1) for k, v in sums.items()})} | lr {lr:.2e} | "
                       f"{images_since_log / (time.time() - t_log):.1f} img/s | {size} px | seen {run['seen']:,} | "
                       f"ETA {eta}")
            run["steps"].append({"step": run["step"], "epoch": round(epoch + (i + 1) / run["steps_per_epoch"], 4),
                                 "loss": interval / (images_since_log / args.batch_size), "lr": lr})
            t_log, images_since_log, interval = time.time(), 0, 0.0
        if stop:
            break
        if run["rank"] == 0 and i + 1 < run["steps_per_epoch"] and time.time() - run["t_saved"] > args.save_minutes * 60:
            save_position(run, args)            # the default run is one long epoch: save every few minutes too
    return lr, stop


def report_nonfinite(run, terms, targets, epoch, i, k, lr):
    """The process whose loss is not finite says where and on which images; all stop (checkpoints.agree_stop)."""
    who = f"process {run['rank']}: " if run["world"] > 1 else ""
    print(f"error: {who}non-finite loss {terms['total'].item()} at epoch {epoch + 1} step {i + 1} (step "
          f"{run['step']} of the run, micro-batch {k + 1}, lr {lr:.3g}); images: "
          f"{[t.get('path') for t in targets]}", flush=True)
    return "non-finite loss"


def evaluate(model, family, dataset, args, batch_size, world=1, rank=0):
    """Detector: VOC07 mAP@0.5 of every detection above metrics.EVAL_CONF after the family's evaluation NMS
    (detect.evaluate). A classifier: its family's top-1 / top-5. Every process evaluates its part of the images
    (devices.shard) with rank 0's weights and statistics; rank 0 gathers them and scores once, so no process waits
    long for another. -> dict with "map" in rank 0, None in the others."""
    devices.sync_buffers(model, world)
    part = devices.shard(len(dataset), world, rank)
    from tools.progress import Progress     # not the papers: a progress line (rank 0's) while it evaluates
    progress = None if args.quiet or rank else Progress
    if hasattr(family, "joint_datasets"):   # YOLO9000: mAP of the classes with and without boxes, in rank 0 alone
        return family.evaluate(model, dataset, batch_size, args.workers) if rank == 0 else None
    if args.task == "classify":         # each part's top-1 / top-5, weighted by its number of images
        result = family.evaluate(model, torch.utils.data.Subset(dataset, part), batch_size, args.workers, progress)
        return devices.gather_mean(result, len(part), world)
    detections, truths, _ = detect.evaluate(model, dataset, metrics.EVAL_CONF, family.EVAL_NMS, batch_size,
                                            args.workers, indices=part, progress=progress)
    found = devices.gather_to_first({i: detections[i] for i in part}, world)
    return None if found is None else metrics.evaluate([found[i] for i in range(len(dataset))], truths,
                                                       protocol="voc07", num_classes=model.num_classes)


def duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def loss_text(terms):
    """'loss 12.345 (xy 1.234 wh ...)': the total, then each term of the loss under its own name."""
    parts = " ".join(f"{k} {v:.3f}" for k, v in terms.items() if k != "total")
    return f"loss {terms['total']:.3f}" + (f" ({parts})" if parts else "")


# -----------------------------------------------------------------------------

def start_run(args, family, class_names, checkpoint, device, world, rank):
    """The state of a run, all that a checkpoint holds: the model (built, --weights loaded; DDP-wrapped as
    "model", bare as "raw_model"), optimizer, AMP scaler, counters, best score and history; or all of it from
    the checkpoint being resumed. -> run (a dict; train_one_epoch and end_epoch update it)"""
    seed_everything(args.seed)
    raw_model = build_model(args, len(class_names)).to(device)
    if devices.channels_last(device.type):      # ours: NHWC convolutions (bench/bench_model.py, gpu_check.sh)
        raw_model = raw_model.to(memory_format=torch.channels_last)
    log = print if rank == 0 else (lambda *a, **k: None)
    if hasattr(raw_model, "weights_note"):
        log(raw_model.weights_note)
    if args.weights and not checkpoint:
        log(load_weights(raw_model, args.weights))
    amp_dtype = devices.amp_dtype(device.type)  # bfloat16, or float16 + GradScaler on GPUs without it
    run = dict(raw_model=raw_model, optimizer=make_optimizer(args, raw_model), amp_dtype=amp_dtype,
               scaler=torch.amp.GradScaler(device.type, enabled=args.amp and amp_dtype == torch.float16),
               epoch=0, epoch_step=0, step=0, seen=0, best=-1.0, history=[], steps=[], sums={}, device=device,
               world=world, rank=rank, log=log, class_names=list(class_names), stop={},
               last_path=os.path.join(args.out, "last.pt"))
    if checkpoint:
        try:
            models.load_state(raw_model, checkpoint, args.resume)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        run["optimizer"].load_state_dict(checkpoint["optimizer"])
        if note := devices.restore_scaler(run["scaler"], checkpoint.get("scaler")):   # resumed across --amp
            log(note)
        run.update({k: checkpoint[k] for k in ("epoch", "seen", "best", "history")}, step=checkpoint["schedule"]["step"])
        run.update({k: checkpoint.get(k, run[k]) for k in ("epoch_step", "steps", "sums")}, rng=checkpoint["rng"])
        set_rng_states(checkpoint["rng"])
        log(f"resumed {args.resume}: epoch {run['epoch']}" + (f" step {run['epoch_step']}" if run["epoch_step"]
            else "") + f", step {run['step']} of the run, {run['seen']:,} images seen")
    run["model"] = raw_model if world == 1 else nn.parallel.DistributedDataParallel(
        raw_model, device_ids=[device.index] if device.type == "cuda" else None)
    run["model"] = devices.compile_model(run["model"], args.compile)
    return run


def save_position(run, args, improved=False):
    """Rank 0: last.pt (after best.pt when the score improved) at the run's position, epoch and step within it,
    so that --resume continues from exactly there; log.csv and the curves (--plots) with it."""
    state = {"model_config": run["raw_model"].config, "class_names": run["class_names"], "config": vars(args),
             "model": run["raw_model"].state_dict(), "optimizer": run["optimizer"].state_dict(),
             "scaler": run["scaler"].state_dict(), "rng": rng_states(),
             "schedule": {"name": args.schedule, "step": run["step"], "steps_per_epoch": run["steps_per_epoch"]},
             **{k: run[k] for k in ("epoch", "epoch_step", "seen", "best", "history", "steps", "sums")}}
    checkpoints.save_run(state, args.out, improved)
    run["t_saved"] = time.time()
    checkpoints.write_csv(run["history"], os.path.join(args.out, "log.csv"))
    if args.plots:                          # not the paper: tools/plots.py, redrawn as the run goes
        from tools import plots
        plots.save_curves_png(run["steps"], run["history"], os.path.join(args.out, "curves.png"),
                              run["metric_name"])


def end_epoch(run, row, args):
    """Rank 0: the epoch's row into the history, last.pt (and best.pt when the score improved), log.csv, a line."""
    run["history"].append(row)
    improved = row["val"] is not None and row["val"] > run["best"]
    run["best"] = row["val"] if improved else run["best"]
    save_position(run, args, improved)
    val = "" if row["val"] is None else f" | {run['metric_name']} {row['val']:.4f} (best {run['best']:.4f})"
    mean = {k[5:]: v for k, v in row.items() if k.startswith("loss_")}
    run["log"](f"epoch {row['epoch']:3g}/{args.epochs} {'done' if run['epoch_step'] == 0 else 'stopped'} | "
               f"{loss_text(dict(total=row['loss'], **mean))} | lr {row['lr']:.2e} | {row['seconds']:.1f} s{val} | "
               f"ETA {duration(run['eta'])} | saved {run['last_path']}{' and best.pt' if improved else ''}")


def main(args):
    checkpoint = resolve(args)
    family = family_for(args)
    world, rank, device = devices.setup_distributed(args.device)    # torchrun: one process per device
    args.workers = devices.default_workers() if args.workers is None else args.workers
    micro = args.batch_size // (world * args.accumulate)
    if micro * world * args.accumulate != args.batch_size:
        raise ValueError(f"--batch-size {args.batch_size} is not divisible by {world} processes x --accumulate "
                         f"{args.accumulate}")
    if checkpoint and checkpoint["epoch"] >= args.epochs and not checkpoint.get("epoch_step"):
        print(f"{args.resume}: the run is complete ({checkpoint['epoch']} of {args.epochs} epochs, best "
              f"{checkpoint['best']:.4f}); to train it longer: --resume {args.resume} --epochs N")
        return {"history": checkpoint["history"], "best": checkpoint["best"], "result": None, "out": args.out}
    if rank == 0 and not args.kmeans:   # before an epoch is spent: the folder must take the run's files
        checkpoints.prepare_folder(args.out)

    # Data, checked before anything trains
    train_set, val_set = build_datasets(args, family)
    if args.kmeans:                     # not the papers: tools/progress.py shows how far the k-means is
        from tools.progress import Progress
        return yolov2.dimension_clusters(train_set, args.img_size, args.seed, None if args.quiet else Progress)
    check_datasets(args, train_set, val_set, rank)
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed, drop_last=True)
    order, loader_rng = [], torch.Generator()   # order: this epoch's indices, from the step the epoch resumes at
    loader = torch.utils.data.DataLoader(train_set, micro, sampler=order, collate_fn=data.collate, drop_last=True,
                                         generator=loader_rng, **devices.loader_options(device, args.workers))

    # Model, weights, optimizer: new, or all of it from the checkpoint being resumed
    run = start_run(args, family, train_set.class_names, checkpoint, device, world, rank)
    start_epoch = run["epoch"]
    run.update(micro=micro, steps_per_epoch=len(sampler) // (micro * args.accumulate), t_start=time.time(),
               t_saved=time.time(), steps_done=0,
               metric_name="val top-1" if args.task == "classify" else "val mAP@0.5 (VOC07)")
    run["steps_total"] = (args.epochs - start_epoch) * run["steps_per_epoch"] - run["epoch_step"]
    run["log"](f"{run['raw_model'].preset}: {sum(p.numel() for p in run['raw_model'].parameters()):,} parameters, "
               f"{len(train_set.class_names)} classes, {len(train_set)} training images, {run['steps_per_epoch']} "
               f"steps of {args.batch_size} per epoch ({world} x {args.accumulate} x {micro}), on {device}, recipe "
               f"{args.recipe}, output {args.out}")

    result, stop, restore_signals = None, None, checkpoints.catch_stop_signals(run["stop"])
    try:
        for epoch in range(start_epoch, args.epochs):
            # Epoch e's data order, augmentation and dropout are a function of (seed, epoch, rank) alone, so a
            # resumed run replays exactly what an uninterrupted one does; mid-epoch, from the saved generators.
            seed_everything(args.seed * 1_000_000 + epoch * 1000 + rank)
            sampler.set_epoch(epoch)
            order[:] = list(sampler)[run["epoch_step"] * args.accumulate * micro:]
            if run["epoch_step"]:
                set_rng_states(run["rng"])
            if hasattr(train_set, "set_epoch"):             # data.py: augmentation of image i from (seed, epoch, i)
                train_set.set_epoch(epoch)
            loader_rng.manual_seed(args.seed * 1_000_000 + epoch)   # the workers' seeds
            t_epoch = time.time()
            lr, stop = train_one_epoch(run, family.loss, loader, epoch, args)
            if stop in ("time limit", None):    # evaluate: at the end of an epoch, or where the time ran out
                done = run["epoch_step"] == run["steps_per_epoch"]
                run["epoch"], run["epoch_step"] = (epoch + 1, 0) if done else (epoch, run["epoch_step"])
                mean = {k: v / max(1, run["epoch_step"] or run["steps_per_epoch"]) for k, v in run["sums"].items()}
                row = {"epoch": epoch + 1 if done else round(epoch + run["epoch_step"] / run["steps_per_epoch"], 3),
                       "seen": run["seen"], "lr": lr, "loss": mean.get("total", float("nan")),
                       **{f"loss_{k}": v for k, v in mean.items() if k != "total"}, "val": None,
                       "seconds": round(time.time() - t_epoch, 1)}
                if done:
                    run["sums"] = {}
                evaluated = (epoch + 1) % args.eval_every == 0 or stop or epoch + 1 == args.epochs
                if evaluated:                           # every process evaluates a part; rank 0 gets the result
                    result = evaluate(run["raw_model"], family, val_set, args, micro, world, rank)
                if rank == 0 and evaluated:
                    row["val"] = float(result["map"])   # a Python float: the checkpoint holds no numpy objects
                    if args.task == "classify":
                        run["log"](f"epoch {epoch + 1:3d} | val top-1 {result['top1']:.4f} top-5 {result['top5']:.4f}")
                if rank == 0:                           # the others wait at the barrier
                    run["eta"] = ((time.time() - run["t_start"]) / max(run["steps_done"], 1)
                                  * (run["steps_total"] - run["steps_done"]))
                    end_epoch(run, row, args)
            elif rank == 0:                             # Ctrl-C, SIGTERM, a non-finite loss: save where it is
                save_position(run, args)
            if world > 1:
                dist.barrier()
            if stop:
                break
    finally:
        restore_signals()
    if stop and stop != "time limit":
        run["log"](f"stopped ({stop}) at epoch {run['epoch'] + 1} step {run['epoch_step']}: saved "
                   f"{run['last_path']}; continue with: python train.py --resume {run['last_path']}" +
                   (" --lr LOWER" if stop == "non-finite loss" else ""))
        if world > 1:
            dist.destroy_process_group()
        raise SystemExit(130 if stop == "SIGINT" else 1)

    if rank == 0 and args.plots and result is not None and args.task == "detect":
        from tools import plots                     # not the paper: tools/plots.py
        plots.save_pr_curves_png(result, train_set.class_names, os.path.join(args.out, "pr_curves.png"))
    run["log"](f"done in {duration(time.time() - run['t_start'])}: best {run['metric_name']} {run['best']:.4f}; "
               f"{args.out}: last.pt, best.pt, log.csv" + (", curves.png, pr_curves.png" if args.plots else ""))
    if world > 1:
        dist.destroy_process_group()
    return {"history": run["history"], "best": run["best"], "result": result, "out": args.out}


def get_args_parser():
    return recipes.get_args_parser(__doc__)


if __name__ == "__main__":
    parsed = get_args_parser().parse_args()
    try:
        main(parsed)
    except (ValueError, OSError) as error:     # user errors: one line (--debug shows the traceback)
        if parsed.debug:
            raise
        raise SystemExit(error if str(error).startswith("error: ") else f"error: {error}") from None
