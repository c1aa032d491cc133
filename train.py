"""
Train YOLOv1 / YOLOv2 (or their ImageNet-style backbones) the way the papers did. All of it is in this file.

Paper -> code
  YOLOv1 §2.2  Training: 135 epochs, batch 64, momentum .9, decay 5e-4, dropout .5 ....... RECIPES["yolov1"]
  YOLOv1 §2.2  lr: warm-up 1e-3 -> 1e-2, 1e-2 to epoch 75, 1e-3 for 30, 1e-4 for 30 ...... yolov1_lr()
  YOLOv2 §3    "Training for detection": 160 epochs, 1e-3, /10 at 60 and 90 ............ RECIPES["yolov2"]
  darknet      burn-in: lr·(batch/1000)^4 for the first 1000 batches ..................... yolov2_lr()
  YOLOv2 §2    "Multi-Scale Training": a new size from {320, ..., 608} every 10 batches .... multiscale_size()
  YOLOv1 §2.2 / YOLOv2 §3  ImageNet pre-training of the backbone (--task classify) ....... RECIPES["classify"]
  darknet      weight decay on conv / connected weights only ............................ param_groups()
  ours         synthetic default, checkpoints + exact resume, DDP, progress, guard rails .... main()

The loop (main): set lr -> for each micro-batch: forward, loss terms, (total / accumulate).backward() ->
optimizer step, zero_grad -> log -> at the epoch's end: evaluate (VOC07 mAP), checkpoint.

Run:
  python train.py                                            # synthetic shapes, small YOLOv1, CPU or GPU
  python train.py --model yolov1 --data VOCdevkit --weights extraction.conv.weights    # YOLOv1 §2.2
  python train.py --model yolov2-voc --data VOCdevkit --weights darknet19_448.conv.23  # YOLOv2 §3
  python train.py --task classify --model darknet19 --data imagenet_folder            # backbone
  torchrun --nproc_per_node=4 train.py --model yolov2-voc --data VOCdevkit             # several GPUs
  torchrun --nnodes=2 --node_rank=R --master_addr=HOST --nproc_per_node=4 train.py ...  # node R of 2 (0, 1)
  python train.py --resume runs/synthetic/last.pt                                      # continue exactly
"""
import argparse
import contextlib
import csv
import math
import os
import random
import time
import zipfile

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageDraw

import darknet
import data
import loss
import metrics
import yolov1
import yolov2

# -----------------------------------------------------------------------------
# Recipes: every value from the paper unless marked

# OUR CHOICE, not in the paper: YOLOv1 §2.2 raises the rate from 1e-3 to 1e-2 over "the first epochs" without
# saying how many. We ramp linearly over 2 epochs (~ darknet's yolov1.cfg, whose steps 200/400/600 raise its
# rate over 600 batches = 2.3 epochs of VOC 07+12 at 64 images a batch).
WARMUP_EPOCHS = 2
EVAL_CONF = 0.005           # the official evaluations keep every detection above .005 (darknet validate_detector)
EVAL_NMS = {"yolov1": 0.5, "yolov2": 0.45}   # darknet: `yolo valid` .5, `detector valid` .45
SHAPES_VAL_SEED = 10_000    # held-out synthetic images: ShapesDataset seed + this (our choice)

DEFAULTS = dict(task="detect", accumulate=1, amp=False, workers=2, log_interval=10, seed=0)   # not recipe values
RECIPES = {
    "yolov1": dict(  # YOLOv1 §2.2 "Training", PASCAL VOC 2007+2012
        model="yolov1", optimizer="sgd", epochs=135, batch_size=64, momentum=0.9, weight_decay=5e-4, dropout=0.5,
        schedule="yolov1", lr=1e-2, warmup_lr=1e-3, warmup_epochs=WARMUP_EPOCHS,   # warm-up length: ours
        lr_steps=[75, 105],             # 1e-2 until 75, 1e-3 for 30 epochs, 1e-4 for the last 30
        img_size=448, augment="yolov1", multiscale=False, eval_every=5),          # eval_every: ours
    "yolov2": dict(  # YOLOv2 §3 "Training for detection"
        model="yolov2-voc", optimizer="sgd", epochs=160, momentum=0.9, weight_decay=5e-4,
        dropout=0.0,                    # (no dropout layer)
        batch_size=64,                  # DARKNET yolov2-voc.cfg (batch=64); the paper does not say
        schedule="yolov2", lr=1e-3, lr_steps=[60, 90],
        burn_in=1000,                   # DARKNET yolov2-voc.cfg burn_in=1000 (power 4, parser.c default)
        img_size=416, augment="yolov2", multiscale=True, eval_every=5),
    "classify": dict(  # YOLOv2 §3 "Training for classification" (Darknet-19; YOLOv1 §2.2 gives no recipe)
        model="darknet19", optimizer="sgd", epochs=160, momentum=0.9, weight_decay=5e-4,
        dropout=0.0,                    # (no dropout layer)
        schedule="poly", lr=0.1,        # "polynomial rate decay with a power of 4"
        batch_size=128, burn_in=1000,   # DARKNET darknet19.cfg
        img_size=224, multiscale=False, eval_every=1,
        augment="flip"),                # OURS, simpler than darknet's crops, rotation and colour shifts
    "synthetic": dict(  # OUR CHOICE: `python train.py`, data.ShapesDataset, ~10 minutes on 2 CPU cores
        # one epoch of 57,600 fresh images (1,800 steps of 32; rendering one costs ~1 ms) rather than many epochs
        # of a few: no image is seen twice. Adam (not the papers' SGD) at 2e-3, /10 at 90% and 97% of the steps.
        # Measured (2 cores, load ~2.3), mAP@.5 on 500 held-out images: lr 2e-3: 0.904 (seed 0, 7 min 58 s), 0.903
        # (seed 1, 8 min 7 s); lr 1e-3: 0.900 (seed 0, 7 min 16 s), 0.899 (seed 1, 8 min 7 s).
        model="yolov1-shapes", optimizer="adam", epochs=1, batch_size=32, momentum=0.9, weight_decay=0.0,
        dropout=0.0, schedule="yolov1", lr=2e-3, warmup_lr=2e-4, warmup_epochs=0.05, lr_steps=[0.9, 0.97],
        img_size=112, augment="none", multiscale=False, eval_every=1,
        train_images=57_600, val_images=500),
}


# -----------------------------------------------------------------------------
# Learning-rate schedules: pure functions of the step

def yolov1_lr(epoch, lr=1e-2, warmup_lr=1e-3, warmup_epochs=WARMUP_EPOCHS, steps=(75, 105)):
    """YOLOv1 §2.2: raise warmup_lr -> lr over the first epochs, keep lr until epoch 75, then 1e-3 for 30
    epochs and 1e-4 for the last 30. epoch is fractional (step / steps per epoch)."""
    if epoch < warmup_epochs:       # 1) warm-up, linear (its length and shape are our choice)
        return warmup_lr + (lr - warmup_lr) * epoch / warmup_epochs
    return lr * 0.1 ** sum(epoch >= s for s in steps)   # 2) lr, /10 at each step


def yolov2_lr(batch_index, batches_per_epoch, lr=1e-3, burn_in=1000, steps=(60, 90), power=4):
    """YOLOv2 §3: lr 1e-3, divided by 10 at epochs 60 and 90.
    DARKNET (network.c get_current_rate): for the first burn_in batches, lr·(batch / burn_in)^power."""
    if batch_index < burn_in:
        return lr * (batch_index / burn_in) ** power
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
        return yolov2_lr(step, steps_per_epoch, args.lr, args.burn_in, args.lr_steps)
    return poly_lr(step, args.epochs * steps_per_epoch, args.lr, args.burn_in)


def multiscale_size(seed, step, img_size=416):
    """YOLOv2 §2 "Multi-Scale Training": every 10 batches a random size from {320, 352, ..., 608}, i.e. 416 - 3·32
    to 416 + 6·32; for another input size we keep the same offsets (our choice). A function of (seed, step // 10),
    so that a resumed run draws the same sizes. DARKNET also trains its last 200 batches at 608 (detector.c); we
    do not, so that the size does not depend on the length of the run."""
    sizes = [s - 416 + img_size for s in yolov2.MULTI_SCALE_SIZES if s - 416 + img_size >= yolov2.STRIDE]
    return random.Random(seed * 1_000_003 + step // 10).choice(sizes)


# -----------------------------------------------------------------------------
# Model and optimizer

def family(name):
    if name in yolov1.PRESETS:
        return "yolov1"
    if name in yolov2.PRESETS:
        return "yolov2"
    if name in ("darknet19", "extraction"):
        return "classify"
    raise SystemExit(f"unknown --model {name!r}; choose from {sorted(yolov1.PRESETS) + sorted(yolov2.PRESETS)} "
                     "or darknet19 / extraction with --task classify")


def build_model(args, num_classes):
    """The network of args.model for num_classes classes; architecture values go in the checkpoint."""
    kind = family(args.model)
    if (kind == "classify") != (args.task == "classify"):
        raise SystemExit(f"--model {args.model} does not go with --task {args.task}")
    if args.backbone:               # not the paper: yolov1.ResNetYOLOv1 (needs torchvision)
        try:
            model = yolov1.ResNetYOLOv1(args.backbone, num_classes, args.img_size)
        except ImportError:
            raise SystemExit(f"--backbone {args.backbone} needs torchvision, which is not installed "
                             "(pip install torchvision), or leave --backbone out for the paper's network") from None
        print(model.weights_note)
    elif kind == "yolov1":
        model = yolov1.build(args.model, num_classes=num_classes, batch_norm=args.batch_norm, img_size=args.img_size)
    elif kind == "yolov2":
        model = yolov2.build(args.model, num_classes=num_classes, img_size=args.img_size)
    elif args.model == "darknet19":
        model = darknet.Darknet19(num_classes, batch_norm=args.batch_norm is not False)
    else:
        model = darknet.Extraction(num_classes, batch_norm=bool(args.batch_norm))
    model.preset = getattr(model, "preset", args.model)
    model.num_classes = num_classes
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


def compute_loss(kind, model, out, targets, seen):
    """The loss terms as a dict with "total"; out is the network output (float32)."""
    if kind == "yolov1":
        return loss.yolov1_loss(out, targets, B=model.B, C=model.num_classes)
    if kind == "yolov2":
        return loss.yolov2_loss(out, targets, model.anchors, seen, rescore=model.rescore)
    labels = torch.stack([t["label"] for t in targets])
    return {"total": F.cross_entropy(out, labels)}


# -----------------------------------------------------------------------------
# Pre-trained weights: a project checkpoint, a darknet file, or a classifier's trunk

def load_weights(model, path, kind):
    """Load --weights into model and say what was loaded."""
    if zipfile.is_zipfile(path):                     # torch.save writes zip archives
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if checkpoint.get("task") == "classify" and kind != "classify":
            return copy_trunk(checkpoint, model, path)
        check_compatible(checkpoint, model, path)
        load_state(model, checkpoint["model"], path)
        return f"loaded {path}: {checkpoint['preset']} after {checkpoint['epoch']} epochs"
    # refuses a file that ends inside a layer and loads nothing then; YOLOv1's detection-layer order is handled by
    # darknet.py through the permutation yolov1.py sets on its last connected layer
    info = darknet.load_darknet_weights(model, path, prefix_ok=True)
    part = "all" if info["layers_loaded"] == info["layers_total"] else "the first"
    return (f"loaded {path}: {part} {info['layers_loaded']} of {info['layers_total']} darknet layers "
            f"(version {'.'.join(map(str, info['version']))}, {info['seen']:,} images seen)")


def copy_trunk(checkpoint, model, path):
    """A classifier checkpoint (--task classify) into a detector: its darknet layers but the last (the
    classifying layer) go into the detector's first layers, in darknet file order, as darknet's `partial`
    command does for extraction.conv.weights and darknet19_448.conv.23."""
    config = argparse.Namespace(**checkpoint["config"])
    classifier = build_model(config, checkpoint["num_classes"])
    classifier.load_state_dict(checkpoint["model"])
    source, target = darknet.darknet_layers(classifier)[:-1], darknet.darknet_layers(model)
    if len(target) < len(source):
        raise SystemExit(f"{path}: the {checkpoint['preset']} trunk has {len(source)} darknet layers, more than "
                         f"all of {model.preset} ({len(target)})")
    for i, (a, b) in enumerate(zip(source, target)):
        shapes_a = {k: tuple(v.shape) for k, v in a.state_dict().items()}
        shapes_b = {k: tuple(v.shape) for k, v in b.state_dict().items()}
        if shapes_a != shapes_b:
            raise SystemExit(f"{path}: the {checkpoint['preset']} trunk does not fit {model.preset}: darknet layer "
                             f"{i} is {shapes_a} in the classifier, {shapes_b} in the detector (batch norm on one "
                             "side only? use the same --batch-norm for both)")
    for a, b in zip(source, target):
        b.load_state_dict(a.state_dict())
    return f"loaded {path}: the {checkpoint['preset']} trunk, {len(source)} of {len(target)} darknet layers"


def check_compatible(checkpoint, model, path):
    found = (checkpoint.get("preset"), checkpoint.get("num_classes"))
    if found != (model.preset, model.num_classes):
        raise SystemExit(f"{path}: checkpoint for preset {found[0]!r} with {found[1]} classes; this run expects "
                         f"{model.preset!r} with {model.num_classes} classes")


def load_state(model, state, path):
    """load_state_dict, refusing with the mismatched names and shapes instead of loading in part."""
    mine = model.state_dict()
    problems = [f"missing {k}" for k in mine if k not in state] + [f"unexpected {k}" for k in state if k not in mine]
    problems += [f"{k}: expected {tuple(v.shape)}, found {tuple(state[k].shape)}"
                 for k, v in mine.items() if k in state and v.shape != state[k].shape]
    if problems:
        raise SystemExit(f"{path} does not fit {model.preset}: " + "; ".join(problems[:8]))
    model.load_state_dict(state)


# -----------------------------------------------------------------------------
# Data

class FolderDataset(torch.utils.data.Dataset):
    """ImageNet-style folder: root/<class name>/<image>. -> (image (3, s, s) in [0, 1], {"label", "path"}).
    Augmentation: a horizontal flip at random. NOT darknet's classifier augmentation (crops, rotation,
    hue / saturation / exposure): a simplification for the backbone tests."""

    def __init__(self, root, img_size, augment=None):
        self.class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.items = [(os.path.join(root, name, f), label) for label, name in enumerate(self.class_names)
                      for f in sorted(os.listdir(os.path.join(root, name)))
                      if f.lower().endswith(data.IMAGE_EXTENSIONS)]             # [(path, class index)]
        self.img_size, self.augment = img_size, augment

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        image = data.load_image(path).resize((self.img_size, self.img_size), Image.BILINEAR)
        x = data.image_to_tensor(image)                              # (3, s, s)
        if self.augment == "flip" and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, {"label": torch.tensor(label), "path": path}


def build_datasets(args):
    """-> (train set, validation set). Every set has .class_names; detection sets have .annotation(i)."""
    augment = None if args.augment == "none" else args.augment
    if args.task == "classify":
        if args.data is None:
            raise SystemExit("--task classify needs --data: a folder of class sub-folders (or train/ and val/)")
        train_dir, val_dir = (os.path.join(args.data, s) for s in ("train", "val"))
        if not os.path.isdir(train_dir):       # no train/ and val/: validate on the training folder itself
            train_dir = val_dir = args.data
        return FolderDataset(train_dir, args.img_size, augment), FolderDataset(val_dir, args.img_size)
    if args.data is None:
        return (data.ShapesDataset(args.train_images, args.img_size, seed=args.seed, augment=augment),
                data.ShapesDataset(args.val_images, args.img_size, seed=args.seed + SHAPES_VAL_SEED))
    # A VOCdevkit tree: train on 2007+2012 trainval, validate on 2007 test (YOLOv1 §2.2, YOLOv2 §3)
    trainval, test = voc_splits(args.data, "trainval"), [s for s in voc_splits(args.data, "test") if s[0] == "2007"]
    if trainval:
        if not test:
            print(f"warning: no VOC2007 test split under {args.data}: validating on the training images")
        return (data.VOCDataset(args.data, trainval, args.img_size, augment, seed=args.seed),
                data.VOCDataset(args.data, test or trainval, args.img_size))
    # COCO json or darknet txt labels (data.open_dataset guesses which); validation on --val-data
    sets = [data.open_dataset(path) for path in (args.data, args.val_data or args.data)]
    for dataset, aug in zip(sets, (augment, None)):   # open_dataset takes no size / augmentation: set them
        dataset.img_size, dataset.augment, dataset.seed = args.img_size, aug, args.seed
    return sets


def voc_splits(root, split):
    """[(year, split)] for each VOC year under root (a VOCdevkit folder or its parent) that has this split."""
    return [(year, split) for year in ("2007", "2012") if any(
        os.path.isfile(os.path.join(d, "VOC" + year, "ImageSets", "Main", split + ".txt"))
        for d in (root, os.path.join(root, "VOCdevkit")))]


def to_device(targets, device):
    return [{k: v.to(device) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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
# Evaluation

@torch.no_grad()
def evaluate(model, kind, dataset, batch_size, device, workers):
    """Detector: VOC07 mAP@0.5 of the detections (conf > EVAL_CONF) against dataset.annotation(i).
    Classifier: top-1 and top-5 accuracy. -> dict with "map" (top-1 for a classifier)."""
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size, num_workers=workers, collate_fn=data.collate)
    detections, correct, total = [], torch.zeros(2), 0
    for images, targets in loader:
        out = model(images.to(device)).float()
        sizes = [t.get("size") for t in targets]
        if kind == "yolov1":
            detections += yolov1.postprocess(out, sizes, EVAL_CONF, EVAL_NMS[kind], B=model.B)
        elif kind == "yolov2":
            detections += yolov2.postprocess(out, model.anchors, sizes, EVAL_CONF, EVAL_NMS[kind])
        else:
            labels = torch.stack([t["label"] for t in targets]).to(device)
            top5 = out.topk(min(5, out.shape[1]), dim=1).indices               # (N, 5)
            hits = top5 == labels[:, None]
            correct += torch.stack([hits[:, 0].sum(), hits.any(1).sum()]).cpu()
            total += len(labels)
    model.train()
    if kind == "classify":
        top1, top5 = (correct / max(total, 1)).tolist()
        return {"map": top1, "top1": top1, "top5": top5}
    detections = [{k: v.cpu() for k, v in d.items()} for d in detections]
    ground_truths = [dataset.annotation(i) for i in range(len(dataset))]
    return metrics.evaluate(detections, ground_truths, protocol="voc07", num_classes=model.num_classes)


# -----------------------------------------------------------------------------
# Progress: fixed-format lines, a CSV row per epoch, a PNG of the curves

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


def save_curves_png(history, path, metric_name):
    """Two panels drawn with Pillow: training loss (total) and the validation metric, per epoch."""
    width, height, pad = 480, 320, 40
    image = Image.new("RGB", (2 * width, height), "white")
    draw = ImageDraw.Draw(image)
    for panel, (key, title) in enumerate([("loss", "training loss (total)"), ("val", metric_name)]):
        x0 = panel * width
        draw.rectangle([x0 + pad, pad, x0 + width - pad, height - pad], outline="black")
        draw.text((x0 + pad, 12), title, fill="black")
        points = [(row["epoch"], row[key]) for row in history if row.get(key) not in (None, "")]
        points = [(e, v) for e, v in points if math.isfinite(v)]
        if not points:
            continue
        (e_lo, e_hi), (v_lo, v_hi) = ((min(c), max(c)) for c in zip(*points))
        e_hi, (v_lo, v_hi) = max(e_hi, e_lo + 1), (0.0, 1.0) if key == "val" else (v_lo, max(v_hi, v_lo + 1e-9))
        xy = [(x0 + pad + (e - e_lo) / (e_hi - e_lo) * (width - 2 * pad),
               height - pad - (v - v_lo) / (v_hi - v_lo) * (height - 2 * pad)) for e, v in points]
        if len(xy) > 1:
            draw.line(xy, fill="blue", width=2)
        for x, y in xy:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill="blue")
        draw.text((x0 + 4, pad), f"{v_hi:.3g}", fill="black")
        draw.text((x0 + 4, height - pad - 10), f"{v_lo:.3g}", fill="black")
        draw.text((x0 + pad, height - pad + 6), f"epoch {e_lo}", fill="black")
        draw.text((x0 + width - pad - 60, height - pad + 6), f"epoch {e_hi}", fill="black")
    image.save(path)


# -----------------------------------------------------------------------------
# Command line

def recipe_help(text, key):
    """A flag's help followed by its value in each recipe, so that --help shows the defaults."""
    return f"{text} [recipe defaults: " + ", ".join(f"{n} {r[key]}" for n, r in RECIPES.items() if key in r) + "]"


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = recipe_help
    p.add_argument("--recipe", choices=sorted(RECIPES), help="default: synthetic without --data, else the model's "
                   "family (yolov1 = YOLOv1 §2.2, yolov2 = YOLOv2 §3), classify with --task classify")
    p.add_argument("--task", choices=["detect", "classify"], help="detect (default) or classify: ImageNet-style "
                   "pre-training of the backbone (YOLOv1 §2.2, YOLOv2 §3 'Training for classification')")
    p.add_argument("--model", help=d("a yolov1 / yolov2 preset, or darknet19 / extraction with --task classify",
                                     "model"))
    p.add_argument("--data", help="VOCdevkit folder (train: 2007+2012 trainval, val: 2007 test); with --task "
                   "classify a folder of class sub-folders (or with train/ and val/). Default: synthetic shapes")
    p.add_argument("--val-data", help="validation set for a COCO json / darknet txt --data (default: --data itself; "
                   "a VOCdevkit validates on 2007 test)")
    p.add_argument("--train-images", type=int, help=d("synthetic training images", "train_images"))
    p.add_argument("--val-images", type=int, help=d("held-out synthetic images", "val_images"))
    p.add_argument("--img-size", type=int, help=d("network input size (YOLOv1 §2: 448; YOLOv2: 416)", "img_size"))
    p.add_argument("--epochs", type=int, help=d("epochs (YOLOv1 §2.2: 135; YOLOv2 §3: 160)", "epochs"))
    p.add_argument("--batch-size", type=int, help=d("images per optimizer step over all processes (YOLOv1 §2.2: "
                                                    "64)", "batch_size"))
    p.add_argument("--accumulate", type=int, help="micro-batches per step (darknet's subdivisions): "
                   "each process runs batch-size / (processes * accumulate) images at a time (default: 1)")
    p.add_argument("--lr", type=float, help=d("peak learning rate (YOLOv1 §2.2: 1e-2; YOLOv2 §3: 1e-3)", "lr"))
    p.add_argument("--schedule", choices=["yolov1", "yolov2", "poly"], help=d("lr schedule", "schedule"))
    p.add_argument("--warmup-lr", type=float, help=d("yolov1 schedule: starting rate (§2.2: 1e-3)", "warmup_lr"))
    p.add_argument("--warmup-epochs", type=float, help=d("yolov1 schedule: warm-up length (not in the paper)",
                                                         "warmup_epochs"))
    p.add_argument("--lr-steps", type=float, nargs="*", help=d("epochs where the rate drops 10x (YOLOv1 §2.2: "
                                                               "75 105; YOLOv2 §3: 60 90)", "lr_steps"))
    p.add_argument("--burn-in", type=int, help=d("yolov2 schedule: batches of burn-in (darknet)", "burn_in"))
    p.add_argument("--optimizer", choices=["sgd", "adam"], help=d("sgd with momentum (YOLOv1 §2.2, YOLOv2 §3) "
                   "or adam (our choice for the synthetic recipe: minutes on a CPU)", "optimizer"))
    p.add_argument("--momentum", type=float, help=d("SGD momentum, Adam's beta1 (§2.2 / §3: 0.9)", "momentum"))
    p.add_argument("--weight-decay", type=float, help=d("on conv / connected weights (§2.2 / §3: 5e-4)",
                                                        "weight_decay"))
    p.add_argument("--dropout", type=float, help=d("after the first connected layer (YOLOv1 §2.2: .5)", "dropout"))
    p.add_argument("--augment", help=d("data.py augmentation: yolov1 (§2.2), yolov2 (darknet), none", "augment"))
    p.add_argument("--multiscale", action=argparse.BooleanOptionalAction,
                   help=d("YOLOv2 §2: new input size every 10 batches", "multiscale"))
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction, help="batch norm in every conv "
                   "(default: the preset's; the YOLOv1 paper has none)")
    p.add_argument("--backbone", choices=["resnet18", "resnet50"], help="YOLOv1 on a torchvision ResNet (not the "
                   "paper; needs torchvision)")
    p.add_argument("--weights", help="start from: a train.py checkpoint (a classifier's gives its trunk), a full "
                   "darknet .weights file, or a partial one (extraction.conv.weights, darknet19_448.conv.23)")
    p.add_argument("--resume", help="checkpoint (or its folder) to continue exactly; flags given override its config")
    p.add_argument("--out", help="output folder (default: runs/<recipe>, or the --resume checkpoint's folder)")
    p.add_argument("--eval-every", type=int, help=d("evaluate every N epochs (and after the last)", "eval_every"))
    p.add_argument("--time-limit", type=float, help="stop after this many seconds of training, then evaluate and "
                   "save (the run is then no longer a function of the seed)")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, help="mixed precision: float16 + GradScaler on "
                   "CUDA, bfloat16 on CPU (default: off)")
    p.add_argument("--device", help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--workers", type=int, help="data-loading processes per training process (default: 2)")
    p.add_argument("--log-interval", type=int, help="optimizer steps between progress lines (default: 10)")
    p.add_argument("--kmeans", action="store_true", help="YOLOv2 §2 'Dimension Clusters': print the average IoU "
                   "and the k-means anchors (1 - IoU distance) for k = 1..9 on the training boxes, then exit")
    p.add_argument("--seed", type=int, help="model init, data order and augmentation follow "
                   "(seed, epoch) (default: 0)")
    return p


def resolve(args):
    """Fill every flag left unset: from the checkpoint being resumed, else from DEFAULTS and the recipe (a resumed
    run keeps its seed, accumulation, ... unless a flag says otherwise). -> the checkpoint or None"""
    checkpoint = None
    if args.resume:
        path = os.path.join(args.resume, "last.pt") if os.path.isdir(args.resume) else args.resume
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        args.resume, args.out = path, args.out or os.path.dirname(path)
        for key, value in checkpoint["config"].items():
            if getattr(args, key, None) is None and key not in ("resume", "weights"):
                setattr(args, key, value)
    for key, value in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.recipe is None:
        kind = family(args.model) if args.model else "yolov1"
        args.recipe = "classify" if args.task == "classify" else "synthetic" if args.data is None else kind
    for key, value in RECIPES[args.recipe].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.out = args.out or os.path.join("runs", args.recipe)
    return checkpoint


# -----------------------------------------------------------------------------
# Training

def dimension_clusters(args):
    """YOLOv2 §2 "Dimension Clusters" on the training set's boxes: print Figure 2 as text (k = 1..9, the average
    IoU with the closest centroid, the anchors in grid cells of a args.img_size input) and train nothing."""
    train_set, _ = build_datasets(args)
    wh = []
    for i in range(len(train_set)):
        a = train_set.annotation(i)
        boxes, (width, height) = torch.as_tensor(a["boxes"], dtype=torch.float64).view(-1, 4), a["size"]
        wh.append(torch.stack([(boxes[:, 2] - boxes[:, 0]) / width, (boxes[:, 3] - boxes[:, 1]) / height], 1))
    wh = torch.cat(wh)                                                  # (M, 2) fractions of the image
    print(f"{len(wh)} boxes of {len(train_set)} training images; anchors for a {args.img_size} input "
          f"({args.img_size // yolov2.STRIDE} x {args.img_size // yolov2.STRIDE} grid)")
    yolov2.print_dimension_clusters(wh, grid=args.img_size // yolov2.STRIDE, seed=args.seed)


def main(args):
    checkpoint = resolve(args)
    if args.kmeans:
        return dimension_clusters(args)
    # torchrun sets RANK / WORLD_SIZE: one process per GPU (NCCL) or per CPU slot (gloo)
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if world > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() and args.device != "cpu" else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(args.device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"))
    master = rank == 0
    log = print if master else (lambda *a, **k: None)
    kind = family(args.model)
    micro = args.batch_size // (world * args.accumulate)
    if micro * world * args.accumulate != args.batch_size:
        raise SystemExit(f"--batch-size {args.batch_size} is not divisible by {world} processes x --accumulate "
                         f"{args.accumulate}")

    # Data, checked before anything trains
    train_set, val_set = build_datasets(args)
    if kind != "classify":
        try:          # data.py's cheap check (no image decoded): unknown classes, missing files, no object ...
            log(f"training set: {data.check_annotations(train_set)}; validation set: "
                f"{data.check_annotations(val_set)}")
        except ValueError as error:
            raise SystemExit(f"{args.data}: {error}") from None
    if len(train_set) < args.batch_size:
        raise SystemExit(f"the training set has {len(train_set)} images, fewer than one batch of --batch-size "
                         f"{args.batch_size} ({args.data or 'synthetic'}): nothing to train on")
    class_names = list(train_set.class_names)
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, shuffle=True, seed=args.seed,
                                                  drop_last=True)
    loader_rng = torch.Generator()
    loader = torch.utils.data.DataLoader(train_set, micro, sampler=sampler, num_workers=args.workers,
                                         collate_fn=data.collate, drop_last=True, generator=loader_rng)
    steps_per_epoch = len(loader) // args.accumulate

    # Model, optimizer, scaler
    seed_everything(args.seed)
    model = build_model(args, len(class_names)).to(device)
    if device.type == "cpu":    # ours: NHWC convolutions are faster on CPU (yolov1-shapes: 0.19 -> 0.145 s a step)
        model = model.to(memory_format=torch.channels_last)
    if args.weights and not checkpoint:
        log(load_weights(model, args.weights, kind))
    optimizer = make_optimizer(args, model)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and amp_dtype == torch.float16)
    start_epoch, step, seen, best, history = 0, 0, 0, -1.0, []
    if checkpoint:
        check_compatible(checkpoint, model, args.resume)
        load_state(model, checkpoint["model"], args.resume)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, step, seen = checkpoint["epoch"], checkpoint["schedule"]["step"], checkpoint["seen"]
        best, history = checkpoint["best"], checkpoint["history"]
        set_rng_states(checkpoint["rng"])
        log(f"resumed {args.resume}: epoch {start_epoch}, step {step}, {seen:,} images seen")
    raw_model = model
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    config = dict(vars(args), **{k: getattr(raw_model, k) for k in ("img_size", "batch_norm", "S", "B")
                                 if hasattr(raw_model, k)})
    os.makedirs(args.out, exist_ok=True)
    last_path, best_path = os.path.join(args.out, "last.pt"), os.path.join(args.out, "best.pt")
    metric_name = "val top-1" if kind == "classify" else "val mAP@0.5 (VOC07)"
    log(f"{raw_model.preset}: {sum(p.numel() for p in raw_model.parameters()):,} parameters, {len(class_names)} "
        f"classes, {len(train_set)} training images, {steps_per_epoch} steps of {args.batch_size} per epoch "
        f"({world} x {args.accumulate} x {micro}), on {device}, recipe {args.recipe}, output {args.out}")

    t_start, result = time.time(), None
    steps_total, steps_done = (args.epochs - start_epoch) * steps_per_epoch, 0
    for epoch in range(start_epoch, args.epochs):
        # Epoch e's data order, augmentation and dropout are a function of (seed, epoch, rank) alone, so a resumed
        # run replays exactly what an uninterrupted one does.
        seed_everything(args.seed * 1_000_000 + epoch * 1000 + rank)
        sampler.set_epoch(epoch)
        if hasattr(train_set, "set_epoch"):                 # data.py: augmentation of image i from (seed, epoch, i)
            train_set.set_epoch(epoch)
        loader_rng.manual_seed(args.seed * 1_000_000 + epoch)   # the workers' seeds
        batches = iter(loader)
        model.train()
        sums, t_epoch, t_log, images_since_log = {}, time.time(), time.time(), 0
        for i in range(steps_per_epoch):
            lr = learning_rate(args, step, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            size = multiscale_size(args.seed, step, args.img_size) if args.multiscale else args.img_size
            # The papers use 64 images per step. With --accumulate k we step once every k micro-batches and
            # divide each micro-batch loss by k: gradients add up, and we want their mean over the 64 images.
            for k in range(args.accumulate):
                images, targets = next(batches)
                images, targets = images.to(device), to_device(targets, device)
                if size != images.shape[-1]:
                    # DEPARTURE from darknet, which reloads the data at the new size: we resize the batch.
                    # Boxes are normalized, so they stay valid.
                    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
                seen += micro * world             # darknet counts this batch as seen before its loss
                # DDP averages gradients over the processes at every backward; skip it but for the last micro-batch
                sync = model.no_sync() if world > 1 and k < args.accumulate - 1 else contextlib.nullcontext()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
                        out = model(images)
                    terms = compute_loss(kind, raw_model, out.float(), targets, seen)
                    if not torch.isfinite(terms["total"]):
                        raise SystemExit(
                            f"non-finite loss {terms['total'].item()} at epoch {epoch + 1} step {i + 1} (step {step} "
                            f"of the run, micro-batch {k + 1}/{args.accumulate}, lr {lr:.3g}); images: "
                            f"{[t.get('path') for t in targets]}; "
                            f"last good checkpoint: {last_path if os.path.exists(last_path) else 'none written yet'}")
                    scaler.scale(terms["total"] / args.accumulate).backward()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value.item() / args.accumulate
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)   # free the gradients' memory until the next backward
            step, steps_done, images_since_log = step + 1, steps_done + 1, images_since_log + args.batch_size

            stop = args.time_limit is not None and time.time() - t_start > args.time_limit
            if world > 1:                           # every process must stop at the same step
                flag = torch.tensor(float(stop), device=device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                stop = bool(flag.item())
            if (i + 1) % args.log_interval == 0 or i + 1 == steps_per_epoch or stop:
                mean = {k: v / (i + 1) for k, v in sums.items()}
                speed = images_since_log / (time.time() - t_log)
                eta = duration((time.time() - t_start) / steps_done * (steps_total - steps_done))
                log(f"epoch {epoch + 1:3d}/{args.epochs} step {i + 1:5d}/{steps_per_epoch} | {loss_text(mean)} | "
                    f"lr {lr:.2e} | {speed:.1f} img/s | {size} px | seen {seen:,} | ETA {eta}")
                t_log, images_since_log = time.time(), 0
            if stop:
                log(f"--time-limit {args.time_limit} s reached at epoch {epoch + 1} step {i + 1}")
                break

        # End of the epoch: evaluate, log, checkpoint (rank 0 only; the others wait)
        last_epoch = stop or epoch + 1 == args.epochs
        mean = {k: v / (i + 1) for k, v in sums.items()}
        row = {"epoch": epoch + 1, "seen": seen, "lr": lr, "loss": mean["total"]}
        row.update({f"loss_{k}": v for k, v in mean.items() if k != "total"})
        row["val"], row["seconds"] = None, round(time.time() - t_epoch, 1)
        speed = (i + 1) * args.batch_size / (time.time() - t_epoch)
        if master and ((epoch + 1) % args.eval_every == 0 or last_epoch):
            result = evaluate(raw_model, kind, val_set, micro, device, args.workers)
            row["val"] = float(result["map"])      # a Python float: the checkpoint holds no numpy objects
            if kind == "classify":
                log(f"epoch {epoch + 1:3d} | val top-1 {result['top1']:.4f} top-5 {result['top5']:.4f}")
        history.append(row)
        if master:
            improved = row["val"] is not None and row["val"] > best
            best = max(best, row["val"] if row["val"] is not None else best)
            state = {"task": args.task, "preset": raw_model.preset, "num_classes": raw_model.num_classes,
                     "class_names": class_names, "config": config, "model": raw_model.state_dict(),
                     "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                     "schedule": {"name": args.schedule, "step": step, "steps_per_epoch": steps_per_epoch},
                     "epoch": epoch + 1, "seen": seen, "best": best, "history": history, "rng": rng_states()}
            save_checkpoint(state, last_path)
            if improved:
                save_checkpoint(state, best_path)
            write_csv(history, os.path.join(args.out, "log.csv"))
            val = "" if row["val"] is None else f" | {metric_name} {row['val']:.4f} (best {best:.4f})"
            eta = duration((time.time() - t_start) / (epoch + 1 - start_epoch) * (args.epochs - epoch - 1))
            log(f"epoch {epoch + 1:3d}/{args.epochs} done | {loss_text(mean)} | lr {lr:.2e} | {speed:.1f} img/s | "
                f"{row['seconds']:.1f} s{val} | ETA {eta} | saved {last_path}{' and best.pt' if improved else ''}")
        if world > 1:
            dist.barrier()
        if stop:
            break

    if master:
        save_curves_png(history, os.path.join(args.out, "curves.png"), metric_name)
        if result is not None and kind != "classify":
            metrics.save_pr_curves_png(result, class_names, os.path.join(args.out, "pr_curves.png"))
        log(f"done in {duration(time.time() - t_start)}: best {metric_name} {best:.4f}; {args.out}: last.pt, "
            "best.pt, log.csv, curves.png" + (", pr_curves.png" if kind != "classify" else ""))
    if world > 1:
        dist.destroy_process_group()
    return {"history": history, "best": best, "result": result, "out": args.out}


if __name__ == "__main__":
    main(get_args_parser().parse_args())
