"""
YOLOv2's Table 2, "The path from YOLO to YOLOv2" (Redmon & Farhadi, arXiv:1612.08242, §2 "Better"), re-run on the
synthetic shapes (data.ShapesDataset) at a size two CPU cores afford: each column trains one after another with the
same budget (images seen), and the table prints its VOC07 mAP@0.5 on held-out shapes beside the paper's VOC 2007 mAP.

The columns, as the paper ticks them (§2; the printed table has 10 rows but 9 columns: "convolutional" and "anchor
boxes" arrive together, and "anchor boxes" is ticked only until "dimension priors" and "location prediction"
replace it, "almost 5% over the version with anchor boxes"):
  YOLO ................ yolov1.py "yolov1": 24 convs, two connected layers, S = 7, B = 2; no batch norm; trunk
                        pre-trained as a classifier at low resolution
  batch norm .......... the same with batch norm in every conv (yolov1.build batch_norm=True)
  hi-res classifier ... the trunk fine-tuned as a classifier at the detector's resolution first (§2 "High Resolution
                        Classifier"; tools/classify.py RECIPES["darknet19_448"] at full scale)
  convolutional, anchor boxes .. yolov2.py with trunk="yolov1" (YOLO's convs, one stride removed), a 1x1 conv head,
                        9 hand-picked priors (anchors="hand-picked"), the RPN's offsets (location="offsets")
  new network ......... trunk="darknet19" (Darknet-19 + three 3x3 convs), pre-trained the same way
  dimension priors, location prediction .. k-means anchors (k = 5, yolov2.kmeans_anchors on the training boxes) and
                        location="direct"
  passthrough ......... passthrough="reorg" (the paper's 26x26x512 -> 13x13x2048, scaled)
  multi-scale ......... a new input size every 10 batches from {320, ..., 608} · size / 416
  hi-res detector ..... the multi-scale network evaluated at 544 · size / 416 (the paper's 544 row: the same weights)

OUR CHOICES, to fit the CPU (none is the paper's): every network narrower by --width-divisor (16: Darknet-19's 32 ...
1024 filters become 2 ... 64); the paper's sizes scaled by --size / 416, rounded to the nearest multiple of 32 (of
64 for YOLO's 448; the hi-res classifier at the detector's size, sizes()); Adam (lr 2e-3, 5%
warm-up, /10 for the last 10%) for every run instead of the papers' SGD recipes; the classifier's images are crops of
one shape each, with darknet's augmentation (tools/classify.py: "darknet19" for Darknet-19, "extraction.2015", with
its 2x - 1 input, for YOLO's trunk); one torch thread. One seed; no repeat, so a difference of a point or two may be
noise. At the default budget the whole table takes about 4 minutes of CPU time (README: measured).

Run:  python bench/table2.py                      # the default budget
      python bench/table2.py --epochs 15 --classifier-images 9600               # 3x the training
      python bench/table2.py --images 48 --epochs 1 --val-images 16 --classifier-images 64   # a smoke run, seconds
"""
import argparse
import itertools
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import data  # noqa: E402
import detect  # noqa: E402
import metrics  # noqa: E402
import yolov1  # noqa: E402
import yolov2  # noqa: E402
from tools import classify  # noqa: E402

# The paper's Table 2: each column's name (the rows it adds) and its VOC 2007 mAP.
PAPER = [("YOLO", 63.4), ("batch norm", 65.8), ("hi-res classifier", 69.5), ("convolutional, anchor boxes", 69.2),
         ("new network", 69.6), ("dimension priors, location prediction", 74.4), ("passthrough", 75.4),
         ("multi-scale", 76.8), ("hi-res detector", 78.6)]
# Each column as a model: its family and build() switches, the classifier its trunk starts from (trunk, batch norm,
# hi-res), and how it trains and is evaluated. "kmeans" is replaced by the anchors k-means finds.
YOLO = dict(family="yolov1", build=dict(preset="yolov1", batch_norm=False), classifier=("extraction", False, False))
COLUMNS = [
    YOLO,
    dict(YOLO, build=dict(preset="yolov1", batch_norm=True), classifier=("extraction", True, False)),
    dict(YOLO, build=dict(preset="yolov1", batch_norm=True), classifier=("extraction", True, True)),
    dict(family="yolov2", classifier=("extraction", True, True),
         build=dict(preset="yolo-voc.2.0", trunk="yolov1", passthrough="none", anchors="hand-picked", location="offsets")),
    dict(family="yolov2", classifier=("darknet19", True, True),
         build=dict(preset="yolo-voc.2.0", passthrough="none", anchors="hand-picked", location="offsets")),
    dict(family="yolov2", classifier=("darknet19", True, True),
         build=dict(preset="yolo-voc.2.0", passthrough="none", anchors="kmeans", location="direct")),
    dict(family="yolov2", classifier=("darknet19", True, True),
         build=dict(preset="yolo-voc.2.0", passthrough="reorg", anchors="kmeans", location="direct")),
    dict(family="yolov2", classifier=("darknet19", True, True), multiscale=True,
         build=dict(preset="yolo-voc.2.0", passthrough="reorg", anchors="kmeans", location="direct")),
    "hi-res detector",      # the previous column's weights at the larger size: no training
]
FAMILIES = {"yolov1": yolov1, "yolov2": yolov2}


def sizes(size):
    """The paper's sizes scaled by size / 416: YOLO's 448 (a multiple of its stride 64), the classifiers' 224 and 448,
    the multi-scale set {320, ..., 608} and the hi-res detector's 544 (multiples of 32)."""
    to32 = lambda s: max(32, 32 * round(s * size / 416 / 32))
    return dict(yolo=max(64, 64 * round(448 * size / 416 / 64)), classifier=to32(224), hires_classifier=size,
                multiscale=sorted({to32(s) for s in yolov2.MULTI_SCALE_SIZES}), hires_detector=to32(544))


# -----------------------------------------------------------------------------
# Classifier pre-training on crops of single shapes (the synthetic ImageNet)

class ShapeCrops(torch.utils.data.Dataset):
    """Image i: the first shape of ShapesDataset image i (drawn at twice size) with half its size again of context on
    each side, labelled with its class; then a recipe's augmentation (tools/classify.py) or test crop. The crops are
    drawn once per (seed, size, i) for all the classifiers (CROPS, as uint8)."""
    CROPS = {}

    def __init__(self, num_images, size, augment, seed, train=True):
        self.shapes = data.ShapesDataset(num_images, 2 * size, seed)
        self.size, self.augment, self.train, self.seed = size, augment, train, seed

    def __len__(self):
        return len(self.shapes)

    def crop(self, i):
        key = (self.seed, self.size, i)
        if key not in self.CROPS:
            image, target = self.shapes[i]                              # (3, 2s, 2s), boxes normalized xyxy
            S = image.shape[-1]
            x0, y0, x1, y1 = (target["boxes"][0] * S).tolist()
            mx, my = (x1 - x0) / 2, (y1 - y0) / 2
            crop = image[:, max(0, int(y0 - my)):min(S, int(y1 + my)), max(0, int(x0 - mx)):min(S, int(x1 + mx))]
            self.CROPS[key] = ((crop * 255).round().to(torch.uint8), int(target["labels"][0]))
        crop, label = self.CROPS[key]
        return crop.float() / 255, label

    def __getitem__(self, i):
        crop, label = self.crop(i)
        if self.train:
            crop = classify.AUGMENTATIONS[self.augment](crop, np.random.default_rng((self.seed, i)), self.size)
        else:
            crop = classify.test_transform(crop, self.size, self.augment)
        return crop, label


class Cached(torch.utils.data.Dataset):
    """dataset's items kept after their first use, images as uint8 (the shapes are drawn as 8-bit pixels: lossless),
    so that the columns, and the epochs, share one rendering of the training images."""

    def __init__(self, dataset):
        self.dataset, self.items = dataset, {}

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        if i not in self.items:
            image, target = self.dataset[i]
            self.items[i] = ((image * 255).round().to(torch.uint8), target)
        image, target = self.items[i]
        return image.float() / 255, target


def epochs(dataset, batch, epochs, seed, collate_fn=None):
    """Batches of `epochs` passes over dataset, each in a new order (drawn from seed): -> (iterator, steps)."""
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(dataset, batch, shuffle=True, generator=g, drop_last=True,
                                         collate_fn=collate_fn)
    return itertools.chain.from_iterable(loader for _ in range(epochs)), epochs * len(loader)


def adam_steps(model, batches, loss_fn, steps, lr, seen=0, on_batch=None):
    """Adam over `steps` batches: lr warms up linearly over the first 5% of the steps, drops /10 for the last 10%
    (OUR CHOICE for every run of this table). on_batch(step, images) may resize the images. -> mean loss of the last
    10% of the steps."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for step, (images, targets) in zip(range(steps), batches):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / max(1, 0.05 * steps)) * (0.1 if step >= 0.9 * steps else 1.0)
        if on_batch:
            images = on_batch(step, images)
        seen += len(images)
        total = loss_fn(model(images), targets, seen)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        losses.append(total.item())
    return float(np.mean(losses[-max(1, steps // 10):]))


def train_classifier(trunk, batch_norm, size, images, batch, args, start=None):
    """A width-divided Extraction or Darknet-19 classifier on ShapeCrops at size (from start's weights if given)."""
    augment = "extraction.2015" if trunk == "extraction" else "darknet19"
    model = classify.build(trunk, num_classes=3, img_size=size, batch_norm=batch_norm, width_divisor=args.width_divisor)
    if start is not None:
        model.load_state_dict(start.state_dict())
    crops = ShapeCrops(images, size, augment, seed=args.seed + 1)
    batches, steps = epochs(crops, batch, 1, args.seed)
    ce = lambda out, labels, seen: F.cross_entropy(out, labels)
    adam_steps(model, batches, ce, steps, args.lr)
    val = ShapeCrops(args.val_images, size, augment, seed=args.seed + 2, train=False)
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item()
                      for x, y in torch.utils.data.DataLoader(val, 2 * batch))
    return model, correct / len(val)


# -----------------------------------------------------------------------------
# Detectors

def build_column(column, img_size, anchors, width_divisor):
    options = dict(column["build"], num_classes=3, img_size=img_size, width_divisor=width_divisor)
    if options.get("anchors") == "kmeans":
        options["anchors"] = anchors
    return FAMILIES[column["family"]].build(**options)


def train_detector(model, family, train_set, args, multiscale_sizes=None):
    batches, steps = epochs(train_set, args.batch, args.epochs, args.seed, data.collate)
    rng = np.random.default_rng(args.seed)
    size = [None]

    def resize(step, images):           # §2 "Multi-Scale Training": a new size every 10 batches
        if multiscale_sizes is None:
            return images
        if step % 10 == 0:
            size[0] = int(rng.choice(multiscale_sizes))
        return F.interpolate(images, size=(size[0],) * 2, mode="bilinear", align_corners=False)

    loss_fn = lambda out, targets, seen: family.loss(model, out, targets, seen)["total"]
    return adam_steps(model, batches, loss_fn, steps, args.lr, on_batch=resize)


def evaluate(model, family, img_size, args):
    """VOC07 mAP@0.5 (%) on the held-out shapes at img_size, as train.py evaluates (metrics.EVAL_CONF, EVAL_NMS)."""
    val = data.shapes_split("val", args.val_images, img_size, args.seed)
    found, truths, _ = detect.evaluate(model, val, metrics.EVAL_CONF, family.EVAL_NMS, batch_size=16)
    return 100 * metrics.evaluate(found, truths, protocol="voc07", num_classes=3)["map"]


def at_size(model, family, img_size):
    """The same weights in a network built for img_size (YOLOv2 is fully convolutional; the "hi-res detector")."""
    bigger = family.build(**dict({k: v for k, v in model.config.items() if k != "family"}, img_size=img_size))
    bigger.load_state_dict(model.state_dict())
    return bigger


# -----------------------------------------------------------------------------

def pretrained(key, cache, s, args):
    """The classifier (model, held-out top-1) of key = (trunk, batch norm, hi-res), trained once: at the classifier
    size, or (hi-res) that one fine-tuned at the detector's size on a quarter as many crops."""
    if key not in cache:
        t, (trunk, bn, hires) = time.time(), key
        if hires:
            low = pretrained((trunk, bn, False), cache, s, args)[0]
            cache[key] = train_classifier(trunk, bn, s["hires_classifier"], args.classifier_images // 4, args.batch,
                                          args, start=low)
        else:
            cache[key] = train_classifier(trunk, bn, s["classifier"], args.classifier_images, 2 * args.batch, args)
        print(f"classifier {trunk}{' + batch norm' if bn else ''} at "
              f"{s['hires_classifier'] if hires else s['classifier']} px: top-1 {100 * cache[key][1]:.1f}% on "
              f"{args.val_images} held-out crops, {time.time() - t:.0f} s", flush=True)
    return cache[key]


def main(args):
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t_start, s = time.time(), sizes(args.size)
    print(f"sizes: YOLO {s['yolo']}, YOLOv2 {args.size}, classifier {s['classifier']} -> {s['hires_classifier']}, "
          f"multi-scale {s['multiscale']}, hi-res detector {s['hires_detector']}; width / {args.width_divisor}; "
          f"{args.images} training images x {args.epochs} epochs per column, {args.classifier_images} crops per "
          f"classifier, "
          f"{args.val_images} held out; {torch.get_num_threads()} threads")

    classifiers = {}        # (trunk, batch norm, hi-res) -> (classifier, top-1), pretrained() fills it
    # k-means anchors on the training boxes (§2 "Dimension Clusters"), k = 5, in cells of the detector's grid
    train_boxes = data.shapes_split("train", args.images, args.size, args.seed)
    wh = torch.cat([torch.as_tensor(a["boxes"]).view(-1, 4)[:, 2:] - torch.as_tensor(a["boxes"]).view(-1, 4)[:, :2]
                    for a in map(train_boxes.annotation, range(len(train_boxes)))]) / args.size
    centroids, mean_iou = yolov2.kmeans_anchors(wh, 5, seed=args.seed)
    grid = args.size // yolov2.STRIDE
    kmeans = [[w * grid, h * grid] for w, h in centroids.tolist()]
    hand = yolov2.hand_picked_anchors(args.size)
    hand_iou = metrics.shape_iou(wh.double(), torch.tensor(hand, dtype=torch.float64) / grid).max(1).values.mean()
    print(f"anchors: k-means (k = 5) avg IoU {100 * mean_iou:.1f}% vs 9 hand-picked {100 * hand_iou:.1f}% "
          f"(YOLOv2 Table 1 on VOC 2007: 61.0 vs 60.9)", flush=True)

    rows, previous, train_sets = [], None, {}
    for (name, paper), column in zip(PAPER, COLUMNS):
        t = time.time()
        if column == "hi-res detector":
            model, family = previous
            model = at_size(model, family, s["hires_detector"])
            score, note = evaluate(model, family, s["hires_detector"], args), f"the multi-scale weights at {s['hires_detector']}"
        else:
            family = FAMILIES[column["family"]]
            img_size = s["yolo"] if column["family"] == "yolov1" else args.size
            torch.manual_seed(args.seed)
            model = build_column(column, img_size, kmeans, args.width_divisor)
            classifier, _ = pretrained(column["classifier"], classifiers, s, args)
            checkpoint = {"model_config": classifier.config, "model": classifier.state_dict()}
            classify.copy_trunk(checkpoint, model, "classifier")
            if img_size not in train_sets:
                train_sets[img_size] = Cached(data.shapes_split("train", args.images, img_size, args.seed))
            train_set = train_sets[img_size]
            final_loss = train_detector(model, family, train_set, args, s["multiscale"] if column.get("multiscale") else None)
            score = evaluate(model, family, img_size, args)
            note = f"{img_size} px, loss {final_loss:.3f}"
            previous = (model, family)
        rows.append((name, paper, score, time.time() - t, note))
        print(f"{name:40s} synthetic mAP {score:5.1f}  ({note}, {time.time() - t:.0f} s)", flush=True)
    print_table(rows, time.time() - t_start)


CLEAR = 1.0     # OUR CHOICE: a change of at most a point of mAP is called no clear change (one seed, no repeats)


def print_table(rows, seconds):
    print("\nYOLOv2 Table 2, the path from YOLO to YOLOv2: the paper (VOC 2007 mAP) and this run (SYNTHETIC shapes, "
          "VOC07 mAP@0.5, one seed, networks narrowed and shrunk to fit a CPU; see bench/table2.py)")
    print(f"{'column (rows added)':40s} {'paper':>6s} {'Δ':>5s} | {'synthetic':>9s} {'Δ':>6s}  helps on shapes? "
          f"(|Δ| <= {CLEAR:g}: no clear change)")
    for k, (name, paper, score, _, _) in enumerate(rows):
        d_paper = "" if k == 0 else f"{paper - rows[k - 1][1]:+5.1f}"
        d_ours = "" if k == 0 else f"{score - rows[k - 1][2]:+6.1f}"
        delta = score - rows[k - 1][2] if k else 0.0
        helps = "" if k == 0 else "yes" if delta > CLEAR else "no: worse" if delta < -CLEAR else "no clear change"
        print(f"{name:40s} {paper:6.1f} {d_paper:>5s} | {score:9.1f} {d_ours:>6s}  {helps}")
    print(f"whole table: {seconds / 60:.1f} minutes")


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=96, help="YOLOv2's input (the paper's 416), a multiple of 32")
    p.add_argument("--width-divisor", type=int, default=16, help="every network's filters divided by this")
    p.add_argument("--images", type=int, default=1000, help="training images, the same for every detector column")
    p.add_argument("--epochs", type=int, default=5, help="passes over them per detector column")
    p.add_argument("--classifier-images", type=int, default=3200, help="crops per classifier pre-training, one pass "
                   "(a quarter of them for the hi-res fine-tune)")
    p.add_argument("--val-images", type=int, default=200, help="held-out images (and crops) each column is scored on")
    p.add_argument("--batch", type=int, default=8, help="images per step (classifiers: twice as many at low res)")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's peak learning rate, every run")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: on a loaded 2-core machine, 2 threads ran "
                   "a forward pass of these small networks 40x slower than 1, measured: 1.9 s vs 0.046 s)")
    p.add_argument("--seed", type=int, default=0)
    return p


if __name__ == "__main__":
    main(get_args_parser().parse_args())
