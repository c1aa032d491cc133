"""
Train YOLOv1 / YOLOv2 / YOLO9000 the way the papers did, or the synthetic default that runs in minutes on a laptop.

Paper -> code
  YOLOv1 §2.2  135 epochs, batch 64, momentum .9, decay 5e-4, dropout .5 ............ yolov1.RECIPE
  YOLOv1 §2.2  lr: warm-up 1e-3 -> 1e-2, 1e-2 to epoch 75, 1e-3 for 30, 1e-4 for 30 .. yolov1_lr()
  YOLOv2 §3    "Training for detection": 160 epochs, 1e-3, /10 at 60 and 90 ........ yolov2.RECIPE, yolov2_lr()
  darknet      burn-in: lr·(batch/1000)^4 for the first 1000 batches ................. yolov2_lr()
  YOLOv2 §3    "Training for classification": polynomial decay, power 4 .............. poly_lr()
  YOLOv2 §3    the classification recipes (224, the 448 fine-tune), extraction.cfg 2015 . tools/classify.py RECIPES
  YOLOv2 §2    "Multi-Scale Training": a new size every 10 batches ................... multiscale_size(), train_one_epoch()
  YOLOv2 §2    "Dimension Clusters": k-means on the training boxes ................... --kmeans (yolov2.dimension_clusters)
  YOLOv2 §4    joint training on detection and classification images ................ yolo9000.joint_datasets()
  darknet      weight decay on conv / connected / local weights only ................. param_groups()
  ours         `python train.py` without --data: the synthetic default ................ SYNTHETIC

The loop (main -> train_one_epoch): set lr -> for each micro-batch: forward, the family's loss terms,
(total / accumulate).backward() -> optimizer step, zero_grad -> log -> at the epoch's end: evaluate (VOC07
mAP@0.5 with detect.evaluate), checkpoint. The detector families are the modules of FAMILIES, with the same names
(build, loss, detections, RECIPE, DATA), so nothing here branches on which one it is.
A recipe is a plain dict of flag values: resolve() fills every flag the command line leaves unset, from the
checkpoint being resumed, else from DEFAULTS and the recipe; `python train.py --help` shows each recipe's values.

Beside the papers (tools/): the run's folder, checkpoints, exact resume and stop signals (tools/checkpoints.py),
one process per device, DDP and AMP (tools/devices.py), the backbones' pre-training (tools/classify.py, --task
classify), progress lines and plots (tools/progress.py, tools/plots.py).

Run:
  python train.py                                            # synthetic shapes, small YOLOv1, CPU or GPU
  python train.py --model yolov1 --data VOCdevkit --weights extraction.conv.weights    # YOLOv1 §2.2
  python train.py --model yolov2-voc --data VOCdevkit --weights darknet19_448.conv.23  # YOLOv2 §3
  python train.py --task classify --recipe darknet19 --data imagenet_folder           # backbone, YOLOv2 §3
  python train.py --task classify --recipe darknet19_448 --data imagenet_folder --weights runs/darknet19/best.pt
  python train.py --model yolo9000 --data coco/annotations/instances_train2014.json --val-data \\
      coco/annotations/instances_minival2014.json --imagenet imagenet9k --tree 9k.tree --coco-map coco9k.map \\
      --weights darknet19_448.conv.23                                                  # YOLOv2 §4, YOLO9000
  python train.py --task classify --model darknet19 --tree wordtree1k.tree --data imagenet  # §4 WordTree1k
  torchrun --nproc_per_node=4 train.py --model yolov2-voc --data VOCdevkit             # several GPUs
  python train.py --resume runs/synthetic/last.pt                                      # continue exactly
"""
import argparse
import contextlib
import dataclasses
import functools
import math
import os
import random
import sys
import time
import zipfile

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import darknet
import data
import detect
import metrics
import yolo9000
import yolov1
import yolov2
from tools import checkpoints, devices

# The detector families: one file each, with the same names. With --task classify the family is
# tools/classify.py (the backbones' pre-training), imported where it is chosen (family_for).
FAMILIES = {"yolov1": yolov1, "yolov2": yolov2, "yolo9000": yolo9000}

# -----------------------------------------------------------------------------
# The recipes: the papers' in the family files (yolov1.RECIPE, yolov2.RECIPE, ...), the synthetic default here

DEFAULTS = dict(task="detect", accumulate=1, cuda_defaults=True, sync_bn=False, log_interval=10, seed=0, plots=True,
                save_minutes=5.0)   # OUR CHOICE: last.pt every 5 minutes of training as well as at each epoch's end

SYNTHETIC = dict(  # OUR CHOICE: `python train.py`, data.ShapesDataset, minutes on 2 CPU cores (README, Results)
    # one epoch of 51,200 fresh images (1,600 steps of 32; drawing a batch at once costs a small part of a step,
    # bench/bench_synthetic.py) rather than many epochs of a few: no image is seen twice. Adam (not the papers'
    # SGD) at 3e-3, /10 at 90% and 97% of the steps (with --epochs E the drops move to 0.9·E and 0.97·E: resolve()
    # scales every recipe's lr_steps with --epochs). 3e-3 rather than the 2e-3 of before: seed 1 reached 0.8974 at
    # 2e-3 and 0.9027 at 3e-3; a linear decay (--schedule poly --power 1) 0.8926. 51,200 images rather than the
    # 57,600 of before: seeds 0, 1, 2 ended at 0.9027, 0.9030, 0.9037 (57,600: 0.9026, 0.9027, 0.9023), and float32
    # on 2 cores then trains within 240 s with room to spare (README, Results).
    model="yolov1-shapes", optimizer="adam", epochs=1, batch_size=32, momentum=0.9, weight_decay=0.0,
    dropout=0.0, schedule="yolov1", lr=3e-3, warmup_lr=3e-4, warmup_epochs=0.05, lr_steps=[0.9, 0.97],
    img_size=112, augment="none", multiscale=False, eval_every=1, train_images=51_200, val_images=500)

RECIPES = {**{name: family.RECIPE for name, family in detect.FAMILIES.items()}, "synthetic": SYNTHETIC,
           # a preset whose cfg trains otherwise than its family's recipe has its own (yolov2.PRESET_RECIPES)
           **{preset: recipe for family in detect.FAMILIES.values()
              for preset, recipe in family.PRESET_RECIPES.items()}}


def family_for(args):
    """The family file of --model: yolov1.py, yolov2.py, or with --task classify tools/classify.py."""
    if args.task == "classify":
        from tools import classify          # the backbones' pre-training, beside the detector path
        return classify
    try:
        return detect.family_of(args.model)
    except ValueError as error:
        raise SystemExit(f"error: --model: {error} (or darknet19 / extraction with --task classify)") from None


# -----------------------------------------------------------------------------
# Learning-rate schedules: pure functions of the step

def yolov1_lr(epoch, lr=1e-2, warmup_lr=1e-3, warmup_epochs=yolov1.WARMUP_EPOCHS, steps=(75, 105)):
    """YOLOv1 §2.2: raise warmup_lr -> lr over the first epochs, keep lr until epoch 75, then 1e-3 for 30
    epochs and 1e-4 for the last 30. epoch is fractional (step / steps per epoch)."""
    if epoch < warmup_epochs:       # 1) warm-up, linear (its length and shape are our choice)
        return warmup_lr + (lr - warmup_lr) * epoch / warmup_epochs
    return lr * 0.1 ** sum(epoch >= s for s in steps)   # 2) lr, /10 at each step


def yolov2_lr(batch_index, batches_per_epoch, lr=1e-3, burn_in=1000, steps=(60, 90), power=4, warmup_lr=None):
    """YOLOv2 §3: lr 1e-3, divided by 10 at epochs 60 and 90.
    DARKNET (network.c get_current_rate, since 60e952ba's cfgs): for the first burn_in batches,
    lr·(batch / burn_in)^power; with warmup_lr, warmup_lr instead (the release's cfgs, c6afc7ff: policy=steps
    from learning_rate=.0001, times 10 at batch 100)."""
    if batch_index < burn_in:
        return lr * (batch_index / burn_in) ** power if warmup_lr is None else warmup_lr
    return lr * 0.1 ** sum(batch_index / batches_per_epoch >= s for s in steps)


def poly_lr(batch_index, total_batches, lr=0.1, burn_in=0, power=4):
    """YOLOv2 §3 classification: "polynomial rate decay with a power of 4" (darknet policy=poly):
    lr·(1 - batch / max_batches)^4, after darknet's burn-in (darknet19.cfg: 1000 batches) as in yolov2_lr."""
    if batch_index < burn_in:
        return lr * (batch_index / burn_in) ** power
    return lr * (1 - batch_index / total_batches) ** power


def learning_rate(args, step, steps_per_epoch):
    if args.schedule == "yolov1":
        return yolov1_lr(step / steps_per_epoch, args.lr, args.warmup_lr, args.warmup_epochs, args.lr_steps)
    if args.schedule == "yolov2":
        return yolov2_lr(step, steps_per_epoch, args.lr, args.burn_in, args.lr_steps, warmup_lr=args.warmup_lr)
    return poly_lr(step, args.epochs * steps_per_epoch, args.lr, args.burn_in, args.power)


def multiscale_size(seed, step, img_size=416):
    """YOLOv2 §2 "Multi-Scale Training": every 10 batches a random size from {320, 352, ..., 608}, i.e. 416 - 3·32
    to 416 + 6·32; for another input size we keep the same offsets (our choice). A function of (seed, step // 10),
    so that a resumed run draws the same sizes. DARKNET also trains its last 200 batches at 608 (detector.c); we
    do not, so that the size does not depend on the length of the run."""
    sizes = [s - 416 + img_size for s in yolov2.MULTI_SCALE_SIZES if s - 416 + img_size >= yolov2.STRIDE]
    return random.Random(seed * 1_000_003 + step // 10).choice(sizes)


# -----------------------------------------------------------------------------
# Model, optimizer, weights

def build_model(args, num_classes, tree=None):
    """The network of args.model through its family's build(); its .config goes into every checkpoint. tree: the
    training set's WordTree ({"ids", "parents"}: YOLO9000, --task classify --tree), whose nodes are the classes."""
    options = dict(batch_norm=args.batch_norm, backbone=args.backbone, pretrained=bool(args.backbone) or None,
                   tree=tree)
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
    if args.classification_loss:         # YOLO9000 §4: the paper's rule or darknet's (yolo9000.CLASSIFICATION_RULES)
        model.classification_rule = args.classification_loss
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
    """--weights into model: a classifier checkpoint's trunk (tools/classify.py), else detect.load_weights (a
    train.py checkpoint, or a darknet file, whole or its first layers: extraction.conv.weights, ...)."""
    try:
        if zipfile.is_zipfile(path):                 # torch.save writes zip archives
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
            if checkpoint["model_config"]["family"] == "classify" != model.config["family"]:
                from tools import classify
                return classify.copy_trunk(checkpoint, model, path)
        return detect.load_weights(model, path, partial=True)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None


# -----------------------------------------------------------------------------
# Data

def build_datasets(args, family):
    """-> (train set, validation set) of the kind the family trains on (its DATA): "detection" images with boxes,
    "joint" detection and classification images in one stream (YOLO9000 §4), or "classification" images (the
    backbones). Every set has .class_names; detection sets have .annotation(i)."""
    augment = None if args.augment == "none" else args.augment
    if family.DATA == "joint":
        return family.joint_datasets(args)
    if family.DATA == "classification":
        return family.datasets(args.data, args.img_size, augment, args.tree)
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


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -----------------------------------------------------------------------------
# The run: where it is (saved in every checkpoint) and what it trains with

@dataclasses.dataclass
class Position:
    """Where a run is: every field goes into each checkpoint under its own name (save_position) and comes back
    with --resume (start_run), so that the resumed run continues exactly where the saved one stopped."""
    epoch: int = 0              # epochs completed
    epoch_step: int = 0         # optimizer steps done in the current epoch (0 at an epoch's end)
    step: int = 0               # optimizer steps done in the run: the clock of the lr schedule
    seen: int = 0               # images trained on (darknet's `seen`; YOLOv2's prior warm-up reads it)
    best: float = -1.0          # best validation score so far (best.pt holds its weights)
    history: list = dataclasses.field(default_factory=list)     # a row per evaluated epoch (log.csv)
    steps: list = dataclasses.field(default_factory=list)       # a row per progress line (curves.png)
    sums: dict = dataclasses.field(default_factory=dict)        # the epoch's loss terms summed over its steps
    seconds: float = 0.0        # the run's time (training and evaluation) up to the last save, over every resume
    epoch_seconds: float = 0.0  # the current epoch's training time before this position (a mid-epoch save)


@dataclasses.dataclass
class Run:
    """What a run trains with, built by start_run; train_one_epoch and end_epoch move pos on."""
    model: nn.Module            # what trains: raw_model, or its DDP wrapper (and torch.compile's)
    raw_model: nn.Module        # the network itself: what checkpoints hold and evaluation runs
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler    # float16 AMP's loss scaling (disabled otherwise)
    amp_dtype: torch.dtype
    pos: Position
    device: torch.device
    world: int                  # processes
    rank: int
    micro: int                  # images per forward pass of one process
    steps_per_epoch: int
    class_names: list
    last_path: str
    metric_name: str
    log: object = print         # rank 0 prints, the others are silent
    stop: dict = dataclasses.field(default_factory=dict)        # set by Ctrl-C / SIGTERM (checkpoints.catch_stop_signals)
    rng: dict | None = None     # the generators' states of a resumed checkpoint, for the epoch it resumes
    t_start: float = dataclasses.field(default_factory=time.time)
    t_saved: float = dataclasses.field(default_factory=time.time)
    t_counted: float = dataclasses.field(default_factory=time.time)  # pos.seconds counts the time up to this
    t_epoch: float = dataclasses.field(default_factory=time.time)    # pos.epoch_seconds counts the time up to this
    steps_done: int = 0         # optimizer steps done by this process since it started (for the ETA)
    steps_total: int = 0        # those it has to do
    divergence: dict = dataclasses.field(default_factory=dict)  # checkpoints.warn_if_diverging's running average


def start_run(args, family, class_names, checkpoint, device, world, rank, micro, steps_per_epoch, tree=None):
    """The model (built, --weights loaded; DDP-wrapped), optimizer, AMP scaler and position of a new run, or all of
    it from the checkpoint being resumed. tree: the training set's WordTree, if its classes are one's nodes."""
    seed_everything(args.seed)
    raw_model = build_model(args, len(class_names), tree).to(device)
    if devices.channels_last(device.type):      # ours: NHWC convolutions (bench/bench_model.py, gpu_check.sh)
        raw_model = raw_model.to(memory_format=torch.channels_last)
    log = print if rank == 0 else (lambda *a, **k: None)
    if hasattr(raw_model, "weights_note"):
        log(raw_model.weights_note)
    if args.weights and not checkpoint:
        log(load_weights(raw_model, args.weights))
    amp_dtype = devices.amp_dtype(device.type)  # bfloat16, or float16 + GradScaler on GPUs without it
    run = Run(model=raw_model, raw_model=raw_model, optimizer=make_optimizer(args, raw_model), amp_dtype=amp_dtype,
              scaler=torch.amp.GradScaler(device.type, enabled=args.amp and amp_dtype == torch.float16),
              pos=Position(), device=device, world=world, rank=rank, micro=micro, steps_per_epoch=steps_per_epoch,
              class_names=list(class_names), last_path=os.path.join(args.out, "last.pt"), log=log,
              metric_name="val top-1" if args.task == "classify" else "val mAP@0.5 (VOC07)")
    if checkpoint:
        try:
            checkpoints.load_state(raw_model, checkpoint, args.resume)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        run.optimizer.load_state_dict(checkpoint["optimizer"])
        if note := devices.restore_scaler(run.scaler, checkpoint.get("scaler")):   # resumed across --amp
            log(note)
        saved = dict(checkpoint, step=checkpoint.get("step", checkpoint["schedule"].get("step")))  # before: in schedule
        run.pos = Position(**{f.name: saved[f.name] for f in dataclasses.fields(Position) if f.name in saved})
        run.rng = checkpoints.rank_rng_states(checkpoint, rank)      # this process's own
        checkpoints.set_rng_states(run.rng)
        log(f"resumed {args.resume}: {checkpoints.position(run.pos.epoch, run.pos.epoch_step, steps_per_epoch)}, "
            f"{run.pos.seen:,} images seen")
    if devices.batch_norm_sync(args.sync_bn, world, device.type):    # statistics over all processes' images
        run.model = raw_model = run.raw_model = nn.SyncBatchNorm.convert_sync_batchnorm(raw_model)
    if world > 1:
        run.model = nn.parallel.DistributedDataParallel(raw_model, device_ids=[device.index] if device.type == "cuda"
                                                        else None)
    run.model = devices.compile_model(run.model, args.compile)
    run.steps_total = (args.epochs - run.pos.epoch) * steps_per_epoch - run.pos.epoch_step
    return run


def run_seconds(run):
    """The run's time so far, over every resume: what the last save counted, and the time since."""
    return run.pos.seconds + time.time() - run.t_counted


def save_position(run, args, improved=False, rng=None):
    """Rank 0: last.pt (after best.pt when the score improved) at the run's position, epoch and step within it,
    so that --resume continues from exactly there; log.csv and the curves (--plots) with it. rng: every process's
    generators' states (checkpoints.gather_rng_states, which every process calls)."""
    rng = rng or [checkpoints.rng_states()]
    run.pos.seconds, run.t_counted = run_seconds(run), time.time()     # the times so far go into the checkpoint
    if run.pos.epoch_step:              # mid-epoch: the epoch's time so far, which a resumed run continues
        run.pos.epoch_seconds, run.t_epoch = run.pos.epoch_seconds + time.time() - run.t_epoch, time.time()
    state = {"model_config": run.raw_model.config, "class_names": run.class_names, "config": vars(args),
             "model": run.raw_model.state_dict(), "optimizer": run.optimizer.state_dict(),
             "scaler": run.scaler.state_dict(), "rng": rng[0], "rng_ranks": rng,
             "schedule": {"name": args.schedule, "steps_per_epoch": run.steps_per_epoch},
             **dataclasses.asdict(run.pos)}
    checkpoints.save_run(state, args.out, improved)
    run.t_saved = time.time()
    checkpoints.write_csv(run.pos.history, os.path.join(args.out, "log.csv"))
    if args.plots:                          # not the paper: tools/plots.py, redrawn as the run goes
        from tools import plots
        plots.save_curves_png(run.pos.steps, run.pos.history, os.path.join(args.out, "curves.png"), run.metric_name)


# -----------------------------------------------------------------------------
# Training: one epoch, evaluation, progress lines

def train_one_epoch(run, loss, loader, epoch, args):
    """From step run.pos.epoch_step of epoch to its end: optimizer steps of --batch-size images, each the mean of
    the family's loss over them; run.pos moves on. Every process stops at the same step when any asks to
    (checkpoints.agree_stop): -> (lr, why it stopped early or None)
    The host reads the device once a step (the agreed flag, before the optimizer step) and at the progress lines
    (the loss terms, kept on the device until then): bench/host_waits.py counts it."""
    model, optimizer, scaler, pos, stop = run.model, run.optimizer, run.scaler, run.pos, None
    batches, t_log, images_since_log, interval = iter(loader), time.time(), 0, {}
    recent = []                 # (i, the step's loss terms on the device) since the last read
    lr = learning_rate(args, max(pos.step - 1, 0), run.steps_per_epoch)     # an epoch resumed at its very end
    model.train()
    for i in range(pos.epoch_step, run.steps_per_epoch):
        lr = learning_rate(args, pos.step, run.steps_per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        size = multiscale_size(args.seed, pos.step, args.img_size) if args.multiscale else args.img_size
        # The papers use 64 images per step. With --accumulate k we step once every k micro-batches and
        # divide each micro-batch loss by k: gradients add up, and we want their mean over the 64 images.
        step_terms, micro = {}, []
        for k in range(args.accumulate):
            images, targets = next(batches)
            images, targets = images.to(run.device, non_blocking=True), devices.to_device(targets, run.device)
            images = network_input(images, targets, size)
            # DDP averages gradients over the processes at every backward; skip it but for the last micro-batch
            sync = model.no_sync() if run.world > 1 and k < args.accumulate - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=args.amp):
                    out = model(images)
                terms = loss(run.raw_model, out.float(), targets, pos.seen + (k + 1) * run.micro * run.world)
                scaler.scale(terms["total"] / args.accumulate).backward()
            micro.append((terms["total"].detach(), targets.get("path")))
            for name, value in terms.items():   # float64: the sums a step at a time as Python's floats were
                step_terms[name] = step_terms.get(name, 0.0) + value.detach().double() / args.accumulate
        # One flag for the step, one all_reduce of it after the backward passes (every process ran them, so none
        # waits in DDP's) and before the optimizer step: a non-finite loss anywhere, a signal, the time limit, and
        # rank 0's wish to write last.pt (every few minutes: the default run is one long epoch).
        reason = run.stop.get("signal") or ("time limit" if args.time_limit is not None
                                            and time.time() - run.t_start > args.time_limit else None)
        save = run.rank == 0 and i + 1 < run.steps_per_epoch and time.time() - run.t_saved > args.save_minutes * 60
        stop, save = checkpoints.agree_stop(checkpoints.step_flag(step_terms["total"], reason, save), run.world)
        if stop == "non-finite loss":           # the step is not taken: last.pt holds the weights before it
            report_nonfinite(run, micro, epoch, i, lr)
            read_terms(run, recent, epoch, interval)
            optimizer.zero_grad(set_to_none=True)
            break
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)   # free the gradients' memory until the next backward
        pos.seen += args.batch_size             # darknet counts a batch as seen before its loss: seen + micro·world
        recent.append((i, step_terms))
        pos.step, pos.epoch_step, run.steps_done = pos.step + 1, i + 1, run.steps_done + 1
        images_since_log += args.batch_size
        if (i + 1) % args.log_interval == 0 or i + 1 == run.steps_per_epoch or stop or save:
            read_terms(run, recent, epoch, interval)
            recent = []
        if (i + 1) % args.log_interval == 0 or i + 1 == run.steps_per_epoch or stop:
            elapsed = time.time() - run.t_start
            eta = duration(elapsed / run.steps_done * (run.steps_total - run.steps_done))
            n = images_since_log // args.batch_size     # the steps since the previous line: their mean is shown
            run.log(f"epoch {epoch + 1:3d}/{args.epochs} step {i + 1:5d}/{run.steps_per_epoch} | "
                    f"{loss_text({k: v / n for k, v in interval.items()}, loss_names(n)[0])} | "
                    f"lr {lr:.2e} | {images_since_log / (time.time() - t_log):.1f} img/s | {size} px | "
                    f"seen {pos.seen:,} | ETA {eta}")
            pos.steps.append({"step": pos.step, "epoch": round(epoch + (i + 1) / run.steps_per_epoch, 4),
                              "loss": interval["total"] / n, "lr": lr})
            t_log, images_since_log, interval = time.time(), 0, {}
        if stop:
            break
        if save:                                # every process gives its generators' states; rank 0 writes
            rng = checkpoints.gather_rng_states(run.world)
            if run.rank == 0:
                save_position(run, args, rng=rng)
    return lr, stop


def read_terms(run, recent, epoch, interval):
    """The loss terms of the steps in recent [(i, {name: (,) float64 on the device})], read in one copy from the
    device: added to run.pos.sums and to interval (the sums since the last progress line) a step at a time, each
    step's total checked (checkpoints.warn_if_diverging)."""
    if not recent:
        return
    names = list(recent[0][1])
    read = torch.stack([torch.stack([terms[n] for n in names]) for _, terms in recent]).tolist()  # (steps, terms)
    for (i, _), values in zip(recent, read):
        for name, value in zip(names, values):
            run.pos.sums[name] = run.pos.sums.get(name, 0.0) + value
            interval[name] = interval.get(name, 0.0) + value
        checkpoints.warn_if_diverging(run.divergence, run.log, values[names.index("total")], epoch, i)


def network_input(images, targets, size):
    """The batch as the network takes it, at this step's size. uint8 crops from the workers (data.py's
    DetectionDataset.finish_on_device): darknet's resize, mirror and HSV distortion on the device for the whole
    batch, straight to the step's size, as darknet reloads its images at a new size (data.finish_batch). Finished
    float images (YOLO9000's joint stream, classifiers): resized when the size changed."""
    if images.dtype == torch.uint8:
        return data.finish_batch(images, targets["augment"], (size, size))
    if size != images.shape[-1]:
        # DEPARTURE from darknet, which reloads the data at the new size: we resize the batch.
        # Boxes are normalized, so they stay valid.
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return images


def report_nonfinite(run, micro, epoch, i, lr):
    """The process whose loss is not finite says where and on which images; all stop (checkpoints.agree_stop).
    micro: the step's (total, image paths) per micro-batch, read here only."""
    who = f"process {run.rank}: " if run.world > 1 else ""
    for k, (total, paths) in enumerate(micro):
        if not math.isfinite(total := total.item()):
            print(f"error: {who}non-finite loss {total} at epoch {epoch + 1} step {i + 1} (step {run.pos.step} of the "
                  f"run, micro-batch {k + 1}, lr {lr:.3g}); images: {paths}", flush=True)
            return


def counted(progress, status):
    """A progress wrapper (tools.progress.Progress's arguments, or None) that also keeps status "done", "total"
    and "start" up to date: the Ctrl-C handler says from them how long the evaluation has left."""
    def wrap(iterable, total=None, count=None, **options):
        status.update(start=time.time(), done=0, total=total)
        for item in (progress(iterable, total=total, count=count, **options) if progress else iterable):
            yield item
            status["done"] += count(item) if count else 1
    return wrap


def evaluate(model, family, dataset, args, batch_size, world=1, rank=0, status=None):
    """Detector: VOC07 mAP@0.5 of every detection above metrics.EVAL_CONF after the family's evaluation NMS
    (detect.evaluate). A classifier: its family's top-1 / top-5. YOLO9000: its family's evaluation of the classes
    with and without boxes. Every process evaluates its part of the images (devices.shard) with rank 0's weights
    and statistics; rank 0 gathers them and scores once. -> dict with "map" in rank 0, None in the others."""
    devices.sync_buffers(model, world)
    part = devices.shard(len(dataset), world, rank)
    from tools.progress import Progress     # not the papers: a progress line (rank 0's) while it evaluates
    progress = None if args.quiet or rank else Progress
    if status is not None:              # how far it is, for a Ctrl-C during it (checkpoints.catch_stop_signals)
        progress = counted(progress, status)
    if family.DATA == "joint":              # each process its part; rank 0 scores the union
        found = devices.gather_to_first(family.detect_images(model, dataset, batch_size, args.workers, part), world)
        return None if found is None else family.score(found, dataset)
    if family.DATA == "classification":     # each part's top-1 / top-5, weighted by its number of images
        result = family.evaluate(model, torch.utils.data.Subset(dataset, part), batch_size, args.workers, progress)
        return devices.gather_mean(result, len(part), world)
    detections, truths, _ = detect.evaluate(model, dataset, metrics.EVAL_CONF, family.EVAL_NMS, batch_size,
                                            args.workers, indices=part, progress=progress, precision=args.precision)
    found = devices.gather_to_first({i: detections[i] for i in part}, world)
    return None if found is None else metrics.evaluate([found[i] for i in range(len(dataset))], truths,
                                                       protocol="voc07", num_classes=model.num_classes)


def end_epoch(run, family, val_set, epoch, lr, stop, args):
    """After the epoch's last step (or where the time limit stopped it): the epoch's row (mean loss terms, the
    validation score when it evaluates), then rank 0 writes last.pt (and best.pt when the score improved), log.csv
    and a line. -> the evaluation's result or None"""
    pos, result = run.pos, None
    done = pos.epoch_step == run.steps_per_epoch
    pos.epoch, pos.epoch_step = (epoch + 1, 0) if done else (epoch, pos.epoch_step)
    mean = {k: v / max(1, pos.epoch_step or run.steps_per_epoch) for k, v in pos.sums.items()}
    row = {"epoch": epoch + 1 if done else round(epoch + pos.epoch_step / run.steps_per_epoch, 3),
           "seen": pos.seen, "lr": lr, "loss": mean.get("total", float("nan")),
           **{f"loss_{k}": v for k, v in mean.items() if k != "total"}, "val": None,
           "seconds": round(pos.epoch_seconds + time.time() - run.t_epoch, 1)}   # the epoch's, before a resume too
    if done:
        pos.sums, pos.epoch_seconds, run.t_epoch = {}, 0.0, time.time()
    if (epoch + 1) % args.eval_every == 0 or stop or epoch + 1 == args.epochs:   # every process evaluates a part
        result = evaluate(run.raw_model, family, val_set, args, run.micro, run.world, run.rank,
                          run.stop.setdefault("evaluating", {}))
        run.stop.pop("evaluating")
        if run.rank == 0:
            row["val"] = float(result["map"])   # a Python float: the checkpoint holds no numpy objects
            if args.task == "classify":
                run.log(f"epoch {epoch + 1:3d} | val top-1 {result['top1']:.4f} top-5 {result['top5']:.4f}" + (
                    "" if "descent_exact" not in result else f" | the descent (§4, Pr(node) > .5) stops at the "
                    f"label {result['descent_exact']:.4f}, above it on its path {result['descent_ancestor']:.4f}, "
                    f"off its path {result['descent_wrong']:.4f}"))
    rng = checkpoints.gather_rng_states(run.world)
    if run.rank != 0:                           # the others wait at main's barrier
        return result
    row["total_seconds"] = round(run_seconds(run), 1)      # the run's, training and evaluation, over resumes
    pos.history.append(row)
    improved = row["val"] is not None and row["val"] > pos.best
    pos.best = row["val"] if improved else pos.best
    save_position(run, args, improved, rng)
    eta = (time.time() - run.t_start) / max(run.steps_done, 1) * (run.steps_total - run.steps_done)
    val = "" if row["val"] is None else f" | {run.metric_name} {row['val']:.4f} (best {pos.best:.4f})"
    mean = dict(total=row["loss"], **{k[5:]: v for k, v in row.items() if k.startswith("loss_")})
    run.log(f"epoch {row['epoch']:3g}/{args.epochs} {'done' if pos.epoch_step == 0 else 'stopped'} | "
            f"{loss_text(mean, loss_names(args.log_interval)[1])} | "
            f"lr {row['lr']:.2e} | {row['seconds']:.1f} s{val} | ETA {duration(eta)} | saved {run.last_path}"
            f"{' and best.pt' if improved else ''}")
    return result


def duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def loss_names(log_interval):
    """The two losses the lines print: the mean of the steps since the previous progress line, and the mean of the
    epoch's steps (the end-of-epoch line, log.csv's "loss"); curves.png names them the same (tools/plots.py)."""
    return f"loss ({log_interval}-step mean)", "loss (epoch mean)"


def loss_text(terms, name="loss"):
    """'loss (10-step mean) 12.345 (xy 1.234 wh ...)': the total, then each term of the loss under its own name."""
    parts = " ".join(f"{k} {v:.3f}" for k, v in terms.items() if k != "total")
    return f"{name} {terms['total']:.3f}" + (f" ({parts})" if parts else "")


# -----------------------------------------------------------------------------
# main: the run from its flags to its last checkpoint

def main(args):
    checkpoint = resolve(args)                  # every flag set: from the checkpoint, the recipe, DEFAULTS; the
    try:                                        # run's folder claimed (checkpoints.claim_folder)
        return train(args, checkpoint)
    finally:                                    # a run that failed or stopped before its first checkpoint
        if args.out:                            # leaves no folder behind
            checkpoints.release_folder(args.out)


def collate_targets(family, preset):
    """data.collate's keywords for the family's training batches (family.TARGETS). Where the preset names a darknet
    revision, the smallest box kept is that revision's (darknet.REVISIONS min_box, the floor its augmentation
    applies in data.AUGMENTATIONS too) rather than the region layer's .001 (loss.MIN_BOX_SIZE): the two floors
    meet here, and the revision's wins (.01 for the release's presets; .001, the same, from 60e952ba)."""
    targets, preset = dict(family.TARGETS), getattr(family, "PRESETS", {}).get(preset)
    revision = preset.get("revision") if isinstance(preset, dict) else None
    if "min_size" in targets and revision in darknet.REVISIONS:
        targets["min_size"] = darknet.REVISIONS[revision]["min_box"]
    return targets


def train(args, checkpoint):
    family = family_for(args)
    world, rank, device = devices.setup_distributed(args.device)    # torchrun: one process per device
    if world > 1 and checkpoint is None and not args.kmeans:       # rank 0 claimed the folder: the others
        shared = [args.out]                                        # write nothing there, but name it
        dist.broadcast_object_list(shared, src=0)
        args.out = shared[0]
    # bfloat16 where the CPU computes in it: the evaluation's arithmetic, and training's autocast unless --(no-)amp
    args.precision = devices.choose_precision(device.type, args.precision)
    speed = devices.cuda_defaults(device.type if args.cuda_defaults else "cpu")
    devices.apply_cuda_defaults(speed)
    if args.amp is None:                        # CUDA's default (bfloat16 where native), else the CPU's bfloat16
        args.amp = speed["amp"] or devices.default_amp(device.type, args.precision)
    kept = devices.keep_freed_memory(device.type)      # glibc: no page faults for every step's activations
    if rank == 0:
        print(devices.describe(device, speed, args.amp, devices.amp_dtype(device.type))
              + ", freed memory kept by malloc" * kept)
    micro = args.batch_size // (world * args.accumulate)
    if micro * world * args.accumulate != args.batch_size:
        raise ValueError(f"--batch-size {args.batch_size} is not divisible by {world} processes x --accumulate "
                         f"{args.accumulate}")
    if checkpoint and checkpoint["epoch"] >= args.epochs and not checkpoint.get("epoch_step"):
        print(f"{args.resume}: the run is complete ({checkpoint['epoch']} of {args.epochs} epochs, best "
              f"{checkpoint['best']:.4f}); to train it longer: --resume {args.resume} --epochs N")
        return {"history": checkpoint["history"], "best": checkpoint["best"], "result": None, "out": args.out}
    if rank == 0 and not args.kmeans:           # before an epoch is spent: the folder must take the run's files
        checkpoints.prepare_folder(args.out)

    train_set, val_set = build_datasets(args, family)
    if args.kmeans:                             # YOLOv2 §2 "Dimension Clusters", then exit
        from tools.progress import Progress     # not the papers: how far the k-means is
        return yolov2.dimension_clusters(train_set, args.img_size, args.seed, None if args.quiet else Progress)
    check_datasets(args, train_set, val_set, rank)
    if args.workers is None:                    # the synthetic shapes on the CPU: drawn in this process
        args.workers = devices.default_workers(device_type=device.type,
                                               draws_batches=getattr(train_set, "draws_batches", False))
    if threads := devices.training_threads(device.type, devices.usable_cores(), args.workers):
        torch.set_num_threads(threads)
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed, drop_last=True)
    order, loader_rng = [], torch.Generator()   # order: this epoch's indices, from the step the epoch resumes at
    if hasattr(train_set, "finish_on_device"):  # the workers crop uint8 pixels, the device finishes the batch
        train_set.finish_on_device = True
    collate = functools.partial(data.collate, **collate_targets(family, args.model))   # batch tensors, in the workers
    loader = torch.utils.data.DataLoader(train_set, micro, sampler=order, collate_fn=collate, drop_last=True,
                                         generator=loader_rng, **devices.loader_options(device, args.workers))
    run = start_run(args, family, train_set.class_names, checkpoint, device, world, rank, micro,
                    len(sampler) // (micro * args.accumulate), getattr(train_set, "tree", None))
    run.log(f"{run.raw_model.preset}: {sum(p.numel() for p in run.raw_model.parameters()):,} parameters, "
            f"{len(train_set.class_names)} classes, {len(train_set)} training images, {run.steps_per_epoch} steps "
            f"of {args.batch_size} per epoch ({world} x {args.accumulate} x {micro}), on {device}, training in "
            f"{str(run.amp_dtype)[6:] + ' autocast' if args.amp else 'float32'}, evaluating in {args.precision}, "
            f"recipe {args.recipe}, output {args.out}")

    if rank == 0:                               # log.csv with its header from the start (its rows on a resume)
        checkpoints.write_csv(run.pos.history, os.path.join(args.out, "log.csv"))
    result, stop, restore_signals = None, None, checkpoints.catch_stop_signals(run.stop)
    try:
        for epoch in range(run.pos.epoch, args.epochs):
            # Epoch e's data order, augmentation and dropout are a function of (seed, epoch, rank) alone, so a
            # resumed run replays exactly what an uninterrupted one does; mid-epoch, from the saved generators.
            seed_everything(args.seed * 1_000_000 + epoch * 1000 + rank)
            sampler.set_epoch(epoch)
            order[:] = list(sampler)[run.pos.epoch_step * args.accumulate * micro:]
            if run.pos.epoch_step:
                checkpoints.set_rng_states(run.rng)
            if hasattr(train_set, "set_epoch"):             # data.py: augmentation of image i from (seed, epoch, i)
                train_set.set_epoch(epoch)
            loader_rng.manual_seed(args.seed * 1_000_000 + epoch)   # the workers' seeds
            run.t_epoch = time.time()
            lr, stop = train_one_epoch(run, family.loss, loader, epoch, args)
            if stop in ("time limit", None):    # evaluate: at the end of an epoch, or where the time ran out
                result = end_epoch(run, family, val_set, epoch, lr, stop, args) or result
                if not stop and epoch + 1 < args.epochs:    # Ctrl-C during the evaluation: stop after it
                    flag = checkpoints.step_flag(torch.zeros((), device=run.device), run.stop.get("signal"), False)
                    stop, _ = checkpoints.agree_stop(flag, run.world)
            else:                               # Ctrl-C, SIGTERM, a non-finite loss: save where it is
                rng = checkpoints.gather_rng_states(world)
                if rank == 0:
                    save_position(run, args, rng=rng)
            if world > 1:
                dist.barrier()
            if stop:
                break
    finally:
        restore_signals()
    return finish(run, stop, result, train_set, args)


def finish(run, stop, result, train_set, args):
    """The last line (and pr_curves.png); a stopped run exits with the signal's code (130 for Ctrl-C) or 1."""
    if stop and stop != "time limit":
        where = checkpoints.position(run.pos.epoch, run.pos.epoch_step, run.steps_per_epoch)
        run.log(f"stopped ({stop}) at {where}: saved {run.last_path}; "
                f"continue with: python train.py --resume {run.last_path}" +
                (" --lr LOWER" if stop == "non-finite loss" else ""))
        if run.world > 1:
            dist.destroy_process_group()
        raise SystemExit(130 if stop == "SIGINT" else 1)
    if run.rank == 0 and args.plots and result is not None and args.task == "detect":
        from tools import plots                     # not the paper: tools/plots.py
        plots.save_pr_curves_png(result, train_set.class_names, os.path.join(args.out, "pr_curves.png"))
    run.log(f"done in {duration(run_seconds(run))}: best {run.metric_name} {run.pos.best:.4f}; "
            f"{args.out}: last.pt, best.pt, log.csv" + (", curves.png, pr_curves.png" if args.plots else ""))
    if run.world > 1:
        dist.destroy_process_group()
    return {"history": run.pos.history, "best": run.pos.best, "result": result, "out": args.out}


# -----------------------------------------------------------------------------
# Command line: every default comes from a recipe, and --help shows it

def recipe_help(text, key):
    """A flag's help followed by its value in each recipe, so that --help shows the defaults."""
    return f"{text} [recipe defaults: " + ", ".join(f"{n} {r[key]}" for n, r in RECIPES.items() if key in r) + "]"


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d, add = recipe_help, p.add_argument
    positive = detect.positive          # the value checks detect.py makes of the same flags
    from tools import classify      # the classification recipes' names, for --help (YOLOv2 §3, extraction.cfg 2015)
    add("--recipe", choices=sorted(RECIPES) + ["classify"] + sorted(classify.RECIPES), help="default: synthetic "
        "without --data, else the model's family (yolov1 = YOLOv1 §2.2, yolov2 = YOLOv2 §3); with --task classify "
        "one of " + ", ".join(sorted(classify.RECIPES)) + " (YOLOv2 §3 'Training for classification' at 224, its "
        "fine-tune at 448, YOLOv1's backbone as darknet's extraction.cfg of 2015 trained it), by default the "
        "model's (classify = that default)")
    add("--task", choices=["detect", "classify"], help="detect (default) or classify: ImageNet-style pre-training "
        "of the backbone (YOLOv1 §2.2, YOLOv2 §3 'Training for classification'; tools/classify.py)")
    add("--model", help=d("a yolov1 / yolov2 preset, or darknet19 / extraction with --task classify", "model"))
    add("--data", help="VOCdevkit folder (train: 2007+2012 trainval, val: 2007 test), COCO json, darknet txt "
        "labels; with --task classify a folder of class sub-folders (or train/ and val/). Default: synthetic shapes")
    add("--val-data", help="validation set for a COCO json / darknet txt --data (default: --data itself)")
    add("--imagenet", help="YOLO9000 (§4): the classification images, a folder of folders named by WordNet id "
        "(n02094114/...), each a node of --tree; 4 of every 5 training images come from it, COCO (--data) is "
        "oversampled to give the fifth")
    add("--tree", help="a WordTree in darknet's format (9k.tree: '<WordNet id> <parent index>' per line): YOLO9000's "
        "classes; with --task classify, the tree the classifier predicts (§4 'Hierarchical classification'), cut to "
        "the --data folders' synsets and their ancestors")
    add("--coco-map", help="YOLO9000: darknet's coco9k.map, the tree node of each of --data's COCO classes")
    add("--classification-loss", choices=yolo9000.CLASSIFICATION_RULES, help="YOLO9000: the objectness error of a "
        "classification image: paper (§4: the chosen box pulled up to .3 IOU), darknet (region_layer.c since "
        "2f212a47: the no-object error on every other box, no .3 pull), darknet-2017-01 (d2dece3, the release of "
        "yolo9000.weights: both) (default: paper)")
    add("--train-images", type=positive(int), help=d("synthetic training images", "train_images"))
    add("--val-images", type=positive(int), help=d("held-out synthetic images", "val_images"))
    add("--img-size", type=positive(int), help="network input size, a multiple of the network's stride (default: "
        "the preset's, as its cfg: yolov1 448, yolov2-voc 416, ...)")
    add("--epochs", type=positive(int), help=d("epochs (YOLOv1 §2.2: 135; YOLOv2 §3: 160)", "epochs"))
    add("--batch-size", type=positive(int), help=d("images per optimizer step over all processes (§2.2: 64)", "batch_size"))
    add("--accumulate", type=positive(int), help="micro-batches per step (darknet's subdivisions): each process runs "
        "batch-size / (processes * accumulate) images at a time (default: 1)")
    add("--lr", type=positive(float), help=d("peak learning rate (YOLOv1 §2.2: 1e-2; YOLOv2 §3: 1e-3)", "lr"))
    add("--schedule", choices=["yolov1", "yolov2", "poly"], help=d("lr schedule", "schedule"))
    add("--warmup-lr", type=float, help=d("yolov1 schedule: starting rate (§2.2: 1e-3); yolov2 schedule: the rate "
                                          "of the burn-in batches, instead of darknet's ramp", "warmup_lr"))
    add("--warmup-epochs", type=float, help=d("yolov1 schedule: warm-up length (not in the paper)", "warmup_epochs"))
    add("--lr-steps", type=float, nargs="*", help=d("epochs where the rate drops 10x (YOLOv1 §2.2: 75 105; "
        "YOLOv2 §3: 60 90); with another --epochs they move in proportion, e.g. 135 -> 27: 15 21", "lr_steps"))
    add("--burn-in", type=int, help=d("yolov2 schedule: batches of burn-in (darknet)", "burn_in"))
    add("--power", type=positive(float), help="poly schedule: lr·(1 - batch / batches)^power (YOLOv2 §3: 4; "
        "extraction.cfg 2015: 6; default: the classification recipe's, else 4)")
    add("--optimizer", choices=["sgd", "adam"], help=d("sgd with momentum (YOLOv1 §2.2, YOLOv2 §3) or adam (our "
                                                       "choice for the synthetic recipe)", "optimizer"))
    add("--momentum", type=float, help=d("SGD momentum, Adam's beta1 (§2.2 / §3: 0.9)", "momentum"))
    add("--weight-decay", type=float, help=d("on conv / connected weights (§2.2 / §3: 5e-4)", "weight_decay"))
    add("--dropout", type=float, help=d("after the first connected layer (YOLOv1 §2.2: .5)", "dropout"))
    add("--augment", help=d("data.py augmentation: yolov1 (§2.2 read literally), darknet's by revision ("
                            + ", ".join(f"{n} {r}" for n, (r, _) in data.AUGMENTATION_REVISIONS.items()) + "), none; "
                            "with --task classify tools/classify.py's: darknet19, darknet19_448, extraction.2015, flip",
                            "augment"))
    add("--multiscale", action=argparse.BooleanOptionalAction, help=d("YOLOv2 §2: new input size every 10 "
                                                                      "batches", "multiscale"))
    add("--batch-norm", action=argparse.BooleanOptionalAction, help="batch norm in every conv (default: the "
        "preset's; the YOLOv1 paper has none)")
    add("--backbone", choices=["resnet18", "resnet50"], help="YOLOv1 on a torchvision ResNet (not the paper)")
    add("--weights", help="start from: a train.py checkpoint (a classifier's gives its trunk), a full darknet "
        ".weights file, or a partial one (extraction.conv.weights, darknet19_448.conv.23)")
    add("--resume", help="checkpoint (or its folder) to continue exactly; flags given override its config")
    add("--out", help="output folder (default: runs/<recipe>, or runs/<recipe>2, ... when that holds another "
        "run; with --resume the checkpoint's folder)")
    add("--exist-ok", action="store_true", help="let a new run write into --out although it holds another run's "
        "checkpoints (they are replaced)")
    add("--save-minutes", type=positive(float), help="also write last.pt every this many minutes of training "
        "(default: 5); Ctrl-C or SIGTERM writes it at once")
    add("--eval-every", type=positive(int), help=d("evaluate every N epochs (and after the last)", "eval_every"))
    add("--time-limit", type=positive(float), help="stop after this many seconds of training, then evaluate and save (the "
        "run is then no longer a function of the seed)")
    add("--amp", action=argparse.BooleanOptionalAction, help="mixed precision: bfloat16 where the GPU has it (and "
        "on CPU), else float16 + GradScaler (devices.amp_dtype). Default: on with CUDA's defaults where the GPU has "
        "bfloat16 units, on where --precision is bf16 on a CPU (devices.default_amp), else off")
    add("--precision", choices=devices.PRECISIONS, help="the evaluation's arithmetic, fp32 or bf16 (bfloat16 "
        "autocast), and with it --amp's default. Default: bf16 on a CPU that computes in bfloat16 natively "
        f"(avx512_bf16 or amx_bf16; on this machine's CPU: {devices.choose_precision('cpu')}), else fp32 "
        "(devices.choose_precision)")
    add("--cuda-defaults", action=argparse.BooleanOptionalAction, help="on CUDA: cudnn.benchmark, TF32 matmuls, "
        "bfloat16 AMP where native (devices.cuda_defaults; default: on; the CPU has none)")
    add("--sync-bn", action=argparse.BooleanOptionalAction, help="with several CUDA processes: batch norm over all "
        "their images (nn.SyncBatchNorm), not over each process's as darknet's -gpus (default: off)")
    add("--compile", nargs="?", const="inductor", metavar="BACKEND", help="torch.compile the model (default "
        "backend inductor; aot_eager checks the graph capture without generating code)")
    add("--device", help="cuda, cpu, ... (default: cuda if available)")
    add("--workers", type=detect.at_least_zero, help="data-loading processes per training process (default: the "
        "cores this process may use / processes on the machine; 0 for the synthetic shapes on the CPU, drawn in the "
        "training process: devices.default_workers)")
    add("--log-interval", type=positive(int), help="optimizer steps between progress lines (default: 10)")
    add("--quiet", action="store_true", help="no progress line while evaluating or during --kmeans "
        "(tools/progress.py); the training lines stay")
    add("--plots", action=argparse.BooleanOptionalAction, help="draw curves.png and pr_curves.png at the end "
        "(tools/plots.py; default: on)")
    add("--kmeans", action="store_true", help="YOLOv2 §2 'Dimension Clusters': print the average IoU and the "
        "k-means anchors (1 - IoU distance) for k = 1..9 on the training boxes, then exit")
    add("--seed", type=int, help="model init, data order and augmentation follow (seed, epoch) (default: 0)")
    add("--debug", action="store_true", help="show the Python traceback of an error instead of its one line")
    return p


def resolve(args):
    """Fill every flag left unset: from the checkpoint being resumed, else from DEFAULTS, the preset (its input
    size) and the recipe (a resumed run keeps its seed, accumulation, ... unless a flag says otherwise); then
    check the model and the output folder before anything runs. -> the checkpoint or None"""
    checkpoint = None
    if args.resume:
        checkpoint = checkpoints.load_checkpoint(args.resume)
        path = os.path.join(args.resume, "last.pt") if os.path.isdir(args.resume) else args.resume
        args.resume, args.out = path, args.out or os.path.dirname(path)
        derived = () if checkpoint["config"].get("lr_steps_given", True) else ("lr_steps",)  # follow --epochs
        for key, value in checkpoint["config"].items():
            if getattr(args, key, None) is None and key not in ("resume", "weights", "exist_ok", "debug", *derived):
                setattr(args, key, value)
    args.lr_steps_given = bool(getattr(args, "lr_steps_given", None)) or args.lr_steps is not None
    if args.data == "shapes":           # detect.py's name for the synthetic images: one meaning in both programs
        args.data = None
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.task == "classify" and args.recipe in (None, "classify"):   # the model's own (tools/classify.py)
        args.recipe = "extraction.2015" if args.model == "extraction" else "darknet19"
    if args.recipe is None:
        args.recipe = (args.model if "train_images" in RECIPES.get(args.model, {})   # a preset's synthetic demo
                       else "synthetic" if args.data is None
                       else args.model if args.model in RECIPES
                       else detect.family_of(args.model).__name__ if args.model else "yolov1")
    if (args.task == "classify") != (args.recipe not in RECIPES):
        raise ValueError(f"--recipe {args.recipe} is a {'detection' if args.recipe in RECIPES else 'classification'} "
                         f"recipe: {'leave out' if args.recipe in RECIPES else 'add'} --task classify")
    recipe = family_for(args).RECIPES[args.recipe] if args.task == "classify" else RECIPES[args.recipe]
    if args.lr_steps is None and args.epochs is not None and "lr_steps" in recipe and args.epochs != recipe["epochs"]:
        args.lr_steps = [step * args.epochs / recipe["epochs"] for step in recipe["lr_steps"]]
    for key, value in recipe.items():
        if getattr(args, key) is None and key != "img_size":
            setattr(args, key, value)
    if args.power is None:                      # the poly schedule's power: YOLOv2 §3's 4 unless the recipe says
        args.power = 4
    if args.img_size is None:                   # the preset's own size (its cfg's), else the recipe's
        preset = family_for(args).PRESETS.get(args.model)
        args.img_size = preset["img_size"] if isinstance(preset, dict) and "img_size" in preset else recipe.get("img_size")
    check_model(args)
    if args.weights:                    # a run's folder: its best.pt, as detect.py takes it
        args.weights = checkpoints.weights_in(args.weights)
    # The folder is claimed now, before anything runs (checkpoints.claim_folder): a second run started meanwhile
    # takes the next one. Under torchrun the first process claims it; main() gives its choice to the others.
    lead = os.environ.get("RANK", "0") == "0"
    if checkpoint is None and not args.kmeans:
        given = args.out
        args.out = args.out or os.path.join("runs", args.recipe)
        if checkpoints.holds_run(args.out) and not args.exist_ok and given:
            raise ValueError(f"{args.out}: holds another run (last.pt / best.pt); continue it with --resume "
                             f"{args.out}, replace it with --exist-ok, or choose another --out")
        if given or args.exist_ok:
            if lead and not checkpoints.claim_folder(args.out):
                raise ValueError(f"{args.out}: another run is writing there now; choose another --out")
        else:
            args.out = checkpoints.run_folder(args.out, claim=lead)
    elif checkpoint is not None and lead and not checkpoints.claim_folder(args.out):
        raise ValueError(f"{args.out}: another process is training this run now; wait for it to end")
    return checkpoint


def check_model(args):
    """The preset at this input size, built on the meta device (no memory, no time): an input size that is not
    a multiple of the network's stride, or a conv head at another size, is refused before anything runs."""
    if args.backbone:
        return
    tree = {"tree": args.tree} if args.tree and family_for(args).DATA == "joint" else {}   # YOLO9000: its classes
    try:
        with torch.device("meta"):
            family_for(args).build(args.model, img_size=args.img_size, **tree)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--model {args.model} --img-size {args.img_size}: {error}") from None


if __name__ == "__main__":
    parsed = get_args_parser().parse_args()
    try:
        main(parsed)
    except (ValueError, OSError) as error:     # user errors: one line (--debug shows the traceback)
        if parsed.debug:
            raise
        raise SystemExit(error if str(error).startswith("error: ") else f"error: {error}") from None
    except KeyboardInterrupt:                  # Ctrl-C twice: at once, without saving, in one line
        if parsed.debug:
            raise
        print("interrupted at once: nothing saved since the last last.pt", file=sys.stderr)
        raise SystemExit(130) from None
