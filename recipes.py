"""
The papers' training recipes: their values, their learning-rate schedules, and train.py's command line, whose
defaults are the recipe's. The loop that uses them is train.py.

Paper -> code
  YOLOv1 §2.2  135 epochs, batch 64, momentum .9, decay 5e-4, dropout .5 .................. yolov1.RECIPE
  YOLOv1 §2.2  lr: warm-up 1e-3 -> 1e-2, 1e-2 to epoch 75, 1e-3 for 30, 1e-4 for 30 ....... yolov1_lr()
  YOLOv2 §3    "Training for detection": 160 epochs, 1e-3, /10 at 60 and 90 ............. yolov2.RECIPE, yolov2_lr()
  darknet      burn-in: lr·(batch/1000)^4 for the first 1000 batches ...................... yolov2_lr()
  YOLOv2 §3    "Training for classification": polynomial decay, power 4 ................... poly_lr()
  YOLOv2 §2    "Multi-Scale Training": a new size from {320, ..., 608} every 10 batches ..... multiscale_size()
  ours         `python train.py` without --data: the synthetic default ..................... SYNTHETIC

A recipe is a plain dict of flag values. resolve() fills every flag the command line leaves unset: from the
checkpoint being resumed, else from DEFAULTS and the recipe; `python train.py --help` shows each recipe's values.
"""
import argparse
import os
import random

import torch

import checkpoints
import models
import yolov1
import yolov2

DEFAULTS = dict(task="detect", accumulate=1, amp=False, log_interval=10, seed=0, plots=True,
                save_minutes=5.0)   # OUR CHOICE: last.pt every 5 minutes of training as well as at each epoch's end
SYNTHETIC = dict(  # OUR CHOICE: `python train.py`, data.ShapesDataset, ~8 minutes on 2 CPU cores (README, Results)
    # one epoch of 57,600 fresh images (1,800 steps of 32; rendering one costs ~1 ms) rather than many epochs of
    # a few: no image is seen twice. Adam (not the papers' SGD) at 2e-3, /10 at 90% and 97% of the steps (with
    # --epochs E the drops move to 0.9·E and 0.97·E: resolve() scales every recipe's lr_steps with --epochs).
    model="yolov1-shapes", optimizer="adam", epochs=1, batch_size=32, momentum=0.9, weight_decay=0.0,
    dropout=0.0, schedule="yolov1", lr=2e-3, warmup_lr=2e-4, warmup_epochs=0.05, lr_steps=[0.9, 0.97],
    img_size=112, augment="none", multiscale=False, eval_every=1, train_images=57_600, val_images=500)
RECIPES = {**{name: family.RECIPE for name, family in models.FAMILIES.items()}, "synthetic": SYNTHETIC,
           # a preset whose cfg trains otherwise than its family's recipe has its own (yolov2.PRESET_RECIPES)
           **{preset: recipe for family in models.FAMILIES.values()
              for preset, recipe in getattr(family, "PRESET_RECIPES", {}).items()}}


def family_for(args):
    """The family file of --model: yolov1.py, yolov2.py, or with --task classify tools/classify.py."""
    if args.task == "classify":
        from tools import classify          # the backbones' pre-training, beside the detector path
        return classify
    try:
        return models.family_of(args.model)
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
    return poly_lr(step, args.epochs * steps_per_epoch, args.lr, args.burn_in)


def multiscale_size(seed, step, img_size=416):
    """YOLOv2 §2 "Multi-Scale Training": every 10 batches a random size from {320, 352, ..., 608}, i.e. 416 - 3·32
    to 416 + 6·32; for another input size we keep the same offsets (our choice). A function of (seed, step // 10),
    so that a resumed run draws the same sizes. DARKNET also trains its last 200 batches at 608 (detector.c); we
    do not, so that the size does not depend on the length of the run."""
    sizes = [s - 416 + img_size for s in yolov2.MULTI_SCALE_SIZES if s - 416 + img_size >= yolov2.STRIDE]
    return random.Random(seed * 1_000_003 + step // 10).choice(sizes)


# -----------------------------------------------------------------------------
# Command line: every default comes from a recipe, and --help shows it

def recipe_help(text, key):
    """A flag's help followed by its value in each recipe, so that --help shows the defaults."""
    return f"{text} [recipe defaults: " + ", ".join(f"{n} {r[key]}" for n, r in RECIPES.items() if key in r) + "]"


def positive(kind):
    """An argparse type: a number of kind above 0 (0 images, 0 epochs, size 0 are refused at parse time)."""
    def parse(text):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a number above 0, found {text}")
        return value
    parse.__name__ = kind.__name__       # argparse names the type in its message
    return parse


def get_args_parser(description=None):
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    d, add = recipe_help, p.add_argument
    add("--recipe", choices=sorted(RECIPES) + ["classify"], help="default: synthetic without --data, else the "
        "model's family (yolov1 = YOLOv1 §2.2, yolov2 = YOLOv2 §3), classify with --task classify")
    add("--task", choices=["detect", "classify"], help="detect (default) or classify: ImageNet-style pre-training "
        "of the backbone (YOLOv1 §2.2, YOLOv2 §3 'Training for classification'; tools/classify.py)")
    add("--model", help=d("a yolov1 / yolov2 preset, or darknet19 / extraction with --task classify", "model"))
    add("--data", help="VOCdevkit folder (train: 2007+2012 trainval, val: 2007 test), COCO json, darknet txt "
        "labels; with --task classify a folder of class sub-folders (or train/ and val/). Default: synthetic shapes")
    add("--val-data", help="validation set for a COCO json / darknet txt --data (default: --data itself)")
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
    add("--optimizer", choices=["sgd", "adam"], help=d("sgd with momentum (YOLOv1 §2.2, YOLOv2 §3) or adam (our "
                                                       "choice for the synthetic recipe)", "optimizer"))
    add("--momentum", type=float, help=d("SGD momentum, Adam's beta1 (§2.2 / §3: 0.9)", "momentum"))
    add("--weight-decay", type=float, help=d("on conv / connected weights (§2.2 / §3: 5e-4)", "weight_decay"))
    add("--dropout", type=float, help=d("after the first connected layer (YOLOv1 §2.2: .5)", "dropout"))
    add("--augment", help=d("images.py augmentation: yolov1 (§2.2), yolov2 (darknet), none", "augment"))
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
        "on CPU), else float16 + GradScaler (devices.amp_dtype; default: off)")
    add("--compile", nargs="?", const="inductor", metavar="BACKEND", help="torch.compile the model (default "
        "backend inductor; aot_eager checks the graph capture without generating code)")
    add("--device", help="cuda, cpu, ... (default: cuda if available)")
    add("--workers", type=int, help="data-loading processes per training process (default: the cores this "
        "process may use / processes on the machine, at most 8: devices.default_workers)")
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
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.recipe is None:
        args.recipe = ("classify" if args.task == "classify"
                       else args.model if "train_images" in RECIPES.get(args.model, {})   # a preset's synthetic demo
                       else "synthetic" if args.data is None
                       else args.model if args.model in RECIPES
                       else models.family_of(args.model).__name__ if args.model else "yolov1")
    recipe = family_for(args).RECIPE if args.recipe == "classify" else RECIPES[args.recipe]
    if args.lr_steps is None and args.epochs is not None and "lr_steps" in recipe and args.epochs != recipe["epochs"]:
        args.lr_steps = [step * args.epochs / recipe["epochs"] for step in recipe["lr_steps"]]
    for key, value in recipe.items():
        if getattr(args, key) is None and key != "img_size":
            setattr(args, key, value)
    if args.img_size is None:                   # the preset's own size (its cfg's), else the recipe's
        preset = family_for(args).PRESETS.get(args.model)
        args.img_size = preset["img_size"] if isinstance(preset, dict) and "img_size" in preset else recipe.get("img_size")
    check_model(args)
    if args.weights and not os.path.isfile(args.weights):
        raise ValueError(f"{args.weights}: no such file")
    if checkpoint is None and not args.kmeans:
        given = args.out
        args.out = args.out or os.path.join("runs", args.recipe)
        if checkpoints.holds_run(args.out) and not args.exist_ok:
            if given:
                raise ValueError(f"{args.out}: holds another run (last.pt / best.pt); continue it with --resume "
                                 f"{args.out}, replace it with --exist-ok, or choose another --out")
            args.out = checkpoints.run_folder(args.out)
    return checkpoint


def check_model(args):
    """The preset at this input size, built on the meta device (no memory, no time): an input size that is not
    a multiple of the network's stride, or a conv head at another size, is refused before anything runs."""
    if args.backbone:
        return
    try:
        with torch.device("meta"):
            family_for(args).build(args.model, img_size=args.img_size)
    except (TypeError, ValueError) as error:
        raise ValueError(f"--model {args.model} --img-size {args.img_size}: {error}") from None
