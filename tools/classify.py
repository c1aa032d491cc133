"""
The backbones' ImageNet-style pre-training, as one more model family for train.py (--task classify).

The papers pre-train their convolutional layers as classifiers before detection (YOLOv1 §2.2: the first 20
layers of Fig. 3 + average pool + connected, "on the ImageNet 1000-class competition dataset"; YOLOv2 §3
"Training for classification": Darknet-19, then "Training for detection" starts from it). The networks are
darknet.Extraction and darknet.Darknet19; this file holds what the detector path does not need: the folder
reader, the recipe, top-1 / top-5 evaluation, and copying a classifier's trunk into a detector.

Paper / darknet -> code
  YOLOv2 §3 "Training for classification": Darknet-19 at 224, 160 epochs, SGD 0.1, poly power 4 ... RECIPES["darknet19"]
  YOLOv2 §3, §2 "High Resolution Classifier": the fine-tune at 448, 10 epochs at 1e-3 ...... RECIPES["darknet19_448"]
  YOLOv2 §3 "random crops, rotations, and hue, saturation, and exposure shifts" (darknet
    image.c random_augment_image, random_distort_image) ......................... augment_darknet(), rotate_crop()
  YOLOv1 §2.2 ImageNet pre-training, as darknet's extraction.cfg of 2015 trained it ...... RECIPES["extraction.2015"],
                                                                                          augment_extraction_2015()
  single-crop evaluation (darknet classifier.c validate_classifier_single; the 2015 [crop]) .. test_transform()

With a WordTree (--tree, YOLOv2 §4 "Hierarchical classification"): the classes are the nodes of a tree file in
darknet's format (9k.tree, or a WordTree1k file) cut to the folders' synsets and their ancestors (wordtree.subtree);
the network predicts every node, a softmax per group of siblings, the loss is -log Pr(label) over the label's path
(darknet's softmax layer with tree=: fill_hierarchy marks the label and its ancestors, groups off the path get no
error), and the evaluation gives top-1 / top-5 among the folders' synsets by Pr(node) (darknet classifier.c
validate with hierarchy_predictions(only_leaves)) and where the descent down the tree stops (§4: "Performance
degrades gracefully": an unsure network still names the parent). §4 reports 71.9% top-1, 90.4% top-5 for
Darknet-19 on WordTree1k (1369 labels). WordTree1k itself is built from WordNet, which no package this project may
depend on ships: give the tree as a file.

It has the names of a family file (PRESETS, RECIPE, build, loss) plus datasets() and evaluate(), which a
detector family gets from data.py and detect.py.
Run:  python train.py --task classify --recipe darknet19 --data imagenet_folder
      python train.py --task classify --recipe darknet19_448 --data imagenet_folder --weights runs/darknet19/best.pt
      python train.py --task classify --recipe extraction.2015 --data imagenet_folder
      python train.py --task classify --model darknet19 --data imagenet_folder --tree wordtree1k.tree   # §4
"""
import functools
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

import darknet
import data
import metrics
import wordtree

PRESETS = {"darknet19": darknet.Darknet19, "extraction": darknet.Extraction}

# -----------------------------------------------------------------------------
# The recipes: train.py --task classify --recipe NAME (a recipe is a dict of train.py's flags)

# YOLOv2 §3 "Training for classification": "160 epochs using stochastic gradient descent with a starting learning
# rate of 0.1, polynomial rate decay with a power of 4, weight decay of 0.0005 and momentum of 0.9"; "random crops,
# rotations, and hue, saturation, and exposure shifts". DARKNET darknet19.cfg of 3bf2f342 (2016-11-26, the cfg of the
# paper's time): batch=128, 224 x 224, max_batches=1,600,000 (x 128 = 160 epochs of ImageNet's 1.28 M images), no
# burn-in (the 2018 cfg, e3931c75, adds burn_in=1000), max_crop=448 and min_crop the input size (parser.c defaults:
# 2w and w), but no rotation and no colour shifts: those, which the paper names, come from darknet19_448.cfg of the
# same commit (angle=7, aspect=.75, hue=.1, saturation=.75, exposure=.75; the 2018 darknet19.cfg has them too).
RECIPE = dict(
    model="darknet19", optimizer="sgd", epochs=160, momentum=0.9, weight_decay=5e-4, dropout=0.0,  # no dropout
    schedule="poly", lr=0.1, power=4, burn_in=0, batch_size=128,
    img_size=224, multiscale=False, eval_every=1, augment="darknet19")
RECIPES = {
    "darknet19": RECIPE,
    # YOLOv2 §3: "we fine tune our network at a larger size, 448 ... with the above parameters but for only 10 epochs
    # and starting at a learning rate of 10^-3" (§2 "High Resolution Classifier"). DARKNET darknet19_448.cfg
    # (3bf2f342): max_batches=100,000 x 128 = 10 epochs, max_crop=512, the same angle and colour shifts.
    # Start it from the 224 run: --weights runs/darknet19/best.pt.
    "darknet19_448": dict(RECIPE, epochs=10, lr=1e-3, img_size=448, augment="darknet19_448"),
    # YOLOv1 §2.2 pre-trains its first 20 convs "for approximately a week" and gives no recipe. DARKNET extraction.cfg
    # of 42ba5d45 (2015-11-09, = history/extraction.2015-11.cfg): images resized to 256 x 256, a [crop] layer (224
    # crop, flip, input mapped to 2x - 1), learning_rate=.5, policy=poly, power=6, max_batches=500,000 x batch 128 =
    # 64 M images = 50 epochs of ImageNet 2012's 1,281,167; momentum .9, decay .0005; no batch norm.
    "extraction.2015": dict(RECIPE, model="extraction", epochs=50, lr=0.5, power=6, img_size=224,
                            augment="extraction.2015"),
}

DATA = "classification"    # train.py: trains on images with one class each (datasets(), evaluate())
TARGETS = {}                 # data.collate: one class per image, no boxes


def build(preset, num_classes=1000, img_size=None, batch_norm=None, tree=None, width_divisor=1):
    """Darknet19 (batch norm unless batch_norm is False, as darknet19.cfg) or Extraction (no batch norm unless
    batch_norm, as extraction.conv.cfg). img_size is only recorded: both end in a global average pool.
    tree: {"ids", "parents", "leaves"} (datasets(); a checkpoint stores it): one output per node of the tree;
    "leaves", the nodes the evaluation ranks (darknet's leaves= list), default the tree's leaves.
    width_divisor: narrower convs (darknet._layers; OUR CHOICE, for CPU-sized runs such as bench/table2.py)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown classifier {preset!r}; choose from {sorted(PRESETS)}")
    if tree is not None and len(tree["parents"]) != num_classes:
        raise ValueError(f"the tree has {len(tree['parents'])} nodes for {num_classes} classes")
    batch_norm = (batch_norm is not False) if preset == "darknet19" else bool(batch_norm)
    model = PRESETS[preset](num_classes, batch_norm=batch_norm, width_divisor=width_divisor)
    model.preset, model.num_classes, model.img_size = preset, num_classes, img_size
    model.config = dict(family="classify", preset=preset, num_classes=num_classes, img_size=img_size,
                        batch_norm=batch_norm, width_divisor=width_divisor)
    if tree is not None:
        model.tree = wordtree.make_tree(tree["parents"], tree["ids"])
        model.leaves = list(tree.get("leaves") or model.tree["leaf"].nonzero().flatten().tolist())
        model.config["tree"] = dict(ids=list(tree["ids"]), parents=list(tree["parents"]), leaves=model.leaves)
    return model


def loss(model, out, targets, seen):
    """Softmax cross-entropy of the logits out (N, C) with each image's class (targets: data.collate's batch,
    "label" (N,)); with a tree (§4), -log Pr(label) = a cross-entropy in every group of siblings on the label's path
    (wordtree.path_nll, a fixed number of levels: no wait for the device), the mean over the images. A list of
    per-image dicts {"label"} is batched here, as the detection losses do."""
    targets = metrics.batch_targets(targets) if isinstance(targets, (list, tuple)) else targets
    labels = targets["label"].to(out.device)
    if hasattr(model, "tree"):
        tree = wordtree.tree_on(model.tree, out.device)
        return {"total": wordtree.path_nll(wordtree.tree_log_softmax(out, tree), labels, tree).mean()}
    return {"total": F.cross_entropy(out, labels)}


# -----------------------------------------------------------------------------
# Data augmentation of the recipes, on (3, H, W) float images in [0, 1]; rng: a numpy Generator

def rotate_crop(image, rad, scale, size, dx, dy, aspect):
    """darknet image.c rotate_crop_image: a size x size view of image (3, H, W), rotated by rad about the image's
    centre (W/2, H/2), magnified by scale, its width by 1/aspect, moved by (dx, dy) output pixels. Output pixel
    (x, y) reads the image at
      u = (x - size/2)/scale·aspect + dx/scale·aspect,   v = (y - size/2)/scale + dy/scale
      rx = cos(rad)·u - sin(rad)·v + W/2,                ry = sin(rad)·u + cos(rad)·v + H/2
    bilinearly, coordinates outside the image clamped to its edge (get_pixel_extend): grid_sample with aligned
    corners and border padding computes exactly that. -> (3, size, size)"""
    _, H, W = image.shape
    x = torch.arange(size, dtype=image.dtype)
    u = ((x - size / 2) / scale * aspect + dx / scale * aspect).view(1, size)     # (1, size)  along x
    v = ((x - size / 2) / scale + dy / scale).view(size, 1)                       # (size, 1)  along y
    rx = math.cos(rad) * u - math.sin(rad) * v + W / 2                            # (size, size) source x
    ry = math.sin(rad) * u + math.cos(rad) * v + H / 2                            # (size, size) source y
    # grid_sample's normalized coordinates with align_corners: -1 is pixel 0's centre, +1 pixel W-1's
    grid = torch.stack([rx / max(W - 1, 1) * 2 - 1, ry / max(H - 1, 1) * 2 - 1], -1)   # (size, size, 2)
    return F.grid_sample(image[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0]


def augment_darknet(image, rng, size, crop=(1.0, 2.0), angle=7.0, aspect=0.75, hue=0.1, saturation=0.75,
                    exposure=0.75):
    """darknet data.c load_image_augment_paths (3bf2f342): random_augment_image, a flip with probability 1/2,
    random_distort_image. random_augment_image: aspect = rand_scale(aspect); the image's shorter side (its width
    counted times aspect) is scaled to r, an integer drawn from [min_crop, max_crop] = crop·size (the cfg's
    min_crop, max_crop); rotated by an angle in (-angle, angle) degrees; a size x size window at a random offset
    (at most the margin on each side, none where the image is smaller). random_distort_image: hue + U(-hue, hue),
    saturation and exposure times rand_scale(saturation), rand_scale(exposure) (data.distort_hsv)."""
    _, H, W = image.shape
    aspect = data.rand_scale(rng, aspect)
    r = int(rng.integers(round(crop[0] * size), round(crop[1] * size) + 1))     # rand_int(min, max), inclusive
    shorter = int(min(H, W * aspect))                                          # C: int min = ... (truncated)
    scale = r / shorter
    rad = rng.uniform(-angle, angle) * 2 * math.pi / 360
    dx, dy = max((W * scale / aspect - size) / 2, 0), max((H * scale - size) / 2, 0)
    dx, dy = rng.uniform(-dx, dx), rng.uniform(-dy, dy)
    out = rotate_crop(image, rad, scale, size, dx, dy, aspect)
    if rng.integers(2):
        out = out.flip(-1)
    return data.distort_hsv(out, rng.uniform(-hue, hue), data.rand_scale(rng, saturation), data.rand_scale(rng, exposure))


# DARKNET extraction.cfg of 2015: [net] 256 x 256 (load_image_paths resizes every image to it, aspect not kept),
# then [crop] crop_height=crop_width=224, flip=1, saturation=exposure=1, angle=0; crop_layer.c maps the input to
# 2x - 1 at train and test time (noadjust=0). So the image is resized to 256/224 of the input size.
EXTRACTION_2015_LOAD = 256 / 224


def augment_extraction_2015(image, rng, size):
    """The 2015 [crop] layer at training: resize to 256 x 256 (for a 224 input), a size x size crop at a random
    offset (dh = rand() % (256 - 224 + 1)), mirrored with probability 1/2, mapped to 2x - 1.
    DEPARTURE: crop_layer.c draws one offset and one flip per batch; we draw them per image."""
    load = round(size * EXTRACTION_2015_LOAD)
    image = data.resize_darknet(image, (load, load))
    top, left = (int(rng.integers(load - size + 1)) for _ in range(2))
    out = image[:, top:top + size, left:left + size]
    if rng.integers(2):
        out = out.flip(-1)
    return out * 2 - 1


def test_transform(image, size, augment):
    """Single-crop evaluation as each recipe's darknet revision does it. "darknet19*" (classifier.c
    validate_classifier_single): the shorter side resized to size (resize_min, integer arithmetic), the centre
    size x size crop. "extraction.2015": resize to 256 x 256, the centre 224 crop ((256 - 224) / 2), 2x - 1.
    Otherwise (ours, "flip" or none): a plain resize to size x size."""
    _, H, W = image.shape
    if augment in ("darknet19", "darknet19_448"):
        w, h = (size, H * size // W) if W < H else (W * size // H, size)       # resize_min
        image = data.resize_darknet(image, (w, h))
        left, top = (w - size) // 2, (h - size) // 2
        return image[:, top:top + size, left:left + size]
    if augment == "extraction.2015":
        load = round(size * EXTRACTION_2015_LOAD)
        image, offset = data.resize_darknet(image, (load, load)), (load - size) // 2
        return image[:, offset:offset + size, offset:offset + size] * 2 - 1
    return data.resize_darknet(image, (size, size))


def augment_flip(image, rng, size):
    """OURS, the simplest: a plain resize, mirrored with probability 1/2."""
    out = data.resize_darknet(image, (size, size))
    return out.flip(-1) if rng.integers(2) else out


AUGMENTATIONS = {"flip": augment_flip,
                 "darknet19": augment_darknet,                                        # darknet19.cfg
                 "darknet19_448": functools.partial(augment_darknet, crop=(1.0, 512 / 448)),   # max_crop=512
                 "extraction.2015": augment_extraction_2015}


class FolderDataset(torch.utils.data.Dataset):
    """ImageNet-style folder: root/<class name>/<image>. -> (image (3, s, s), {"label", "path"}), in [0, 1] (in
    [-1, 1] for "extraction.2015", as the 2015 [crop] layer). augment: a name in AUGMENTATIONS, or None;
    train=False: the recipe's single-crop evaluation (test_transform) instead."""

    def __init__(self, root, img_size, augment=None, train=True):
        if augment is not None and augment not in AUGMENTATIONS:
            raise ValueError(f"--augment for --task classify must be one of {sorted(AUGMENTATIONS)}, got {augment!r}")
        self.class_names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        self.items = [(os.path.join(root, name, f), label) for label, name in enumerate(self.class_names)
                      for f in sorted(os.listdir(os.path.join(root, name)))
                      if f.lower().endswith(data.IMAGE_EXTENSIONS)]             # [(path, class index)]
        self.img_size, self.augment, self.train = img_size, augment, train
        if not self.items:
            raise ValueError(f"{root}: no images in sub-folders named by class")

    def relabel(self, names):
        """Labels become indices into names (a tree's node ids): the folders are named by WordNet id."""
        index = {name: k for k, name in enumerate(names)}
        self.items = [(path, index[self.class_names[label]]) for path, label in self.items]
        self.folders, self.class_names = self.class_names, list(names)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        x = data.image_to_tensor(data.load_image(path))                # (3, H, W)
        if self.train and self.augment is not None:
            # the draws follow torch's generator, which train.py seeds per (seed, epoch) and DataLoader per worker
            rng = np.random.default_rng(int(torch.randint(2**62, ())))
            x = AUGMENTATIONS[self.augment](x, rng, self.img_size)
        else:
            x = test_transform(x, self.img_size, self.augment)
        return x, {"label": torch.tensor(label), "path": path}


def datasets(data_dir, img_size, augment, tree_file=None):
    """-> (train set, validation set): data_dir/train and data_dir/val, or data_dir for both. With tree_file (§4):
    the tree cut to both folders' synsets and their ancestors (wordtree.subtree): the sets' class_names are its
    node ids, their labels its nodes, .tree its {"ids", "parents", "leaves": the folders' nodes}."""
    if data_dir is None:
        raise ValueError("--task classify needs --data: a folder of class sub-folders (or train/ and val/)")
    train_dir, val_dir = (os.path.join(data_dir, s) for s in ("train", "val"))
    if not os.path.isdir(train_dir):           # no train/ and val/: validate on the training folder itself
        train_dir = val_dir = data_dir
    train, val = FolderDataset(train_dir, img_size, augment), FolderDataset(val_dir, img_size, augment, train=False)
    if tree_file:
        full = wordtree.read_tree(tree_file)
        synsets = sorted(set(train.class_names) | set(val.class_names))
        try:
            tree, _ = wordtree.subtree(full, wordtree.node_of(full, synsets))
        except ValueError as error:
            raise ValueError(f"{data_dir}: {error} ({tree_file})") from None
        for dataset in (train, val):
            dataset.relabel(tree["ids"])
            dataset.tree = dict(wordtree.tree_config(tree), leaves=wordtree.node_of(tree, synsets))
    return train, val


# OUR CHOICE: where the descent of the evaluation stops, §4's rule (Pr(node) > .5, wordtree.descend "paper"); darknet's
# classifier has no descent (its detector's -hier default is .5 too)
DESCENT_THRESHOLD = 0.5


@torch.no_grad()
def evaluate(model, dataset, batch_size, workers=0, progress=None):
    """Top-1 and top-5 accuracy -> {"map": top-1 (train.py's metric), "top1", "top5"}. progress: None (silent) or
    train.py's tools.progress.Progress. With a tree (model.tree, model.leaves): top-1 / top-5 rank the dataset's
    synsets by Pr(node); then the descent from the root (DESCENT_THRESHOLD) stops at the label ("descent_exact"), at
    one of its ancestors ("descent_ancestor": right but less specific), or off the label's path ("descent_wrong")."""
    device, was_training = next(model.parameters()).device, model.training
    loader = torch.utils.data.DataLoader(dataset, batch_size, num_workers=workers, collate_fn=data.collate)
    tree = getattr(model, "tree", None)
    tree = None if tree is None else wordtree.tree_on(tree, device)
    correct, total = torch.zeros(5), 0
    model.eval()
    if progress:
        loader = progress(loader, total=len(dataset), desc="evaluating", unit="images", count=lambda b: len(b[0]))
    for x, targets in loader:
        out = model(x.to(device))                                          # (N, C) logits
        labels = targets["label"].to(device)
        scores, candidates = out, None
        if tree is not None:                    # Pr(node), ranked among the dataset's synsets only
            absolute = wordtree.absolute_probabilities(wordtree.tree_softmax(out, tree), tree)    # (N, n)
            candidates = torch.as_tensor(model.leaves, device=device)
            scores = torch.full_like(absolute, -1.0).index_copy(1, candidates, absolute[:, candidates])
        hits = scores.topk(min(5, out.shape[1]), dim=1).indices == labels[:, None]   # (N, 5)
        counts = [hits[:, 0].sum(), hits.any(1).sum()]
        if tree is not None:
            stop = wordtree.descend(absolute, tree, DESCENT_THRESHOLD, rule="paper").tolist()
            on_path = [set(wordtree.path(tree, label)) for label in labels.tolist()]
            exact = sum(s == label for s, label in zip(stop, labels.tolist()))
            ancestor = sum(s in p for s, p in zip(stop, on_path)) - exact
            counts += [exact, ancestor, len(stop) - exact - ancestor]
        correct[:len(counts)] += torch.tensor([float(c) for c in counts])
        total += len(labels)
    model.train(was_training)
    rates = (correct / max(total, 1)).tolist()
    result = {"map": rates[0], "top1": rates[0], "top5": rates[1]}
    if tree is not None:
        result.update(descent_exact=rates[2], descent_ancestor=rates[3], descent_wrong=rates[4])
    return result


def copy_trunk(checkpoint, model, path):
    """A classifier checkpoint into a detector: its darknet layers but the last (the classifying layer) go into the
    detector's first layers, in darknet file order, as darknet's `partial` command does for
    extraction.conv.weights and darknet19_448.conv.23. -> a one-line message."""
    classifier = build(**{k: v for k, v in checkpoint["model_config"].items() if k != "family"})
    classifier.load_state_dict(checkpoint["model"])
    source, target = darknet.darknet_layers(classifier)[:-1], darknet.darknet_layers(model)
    name = classifier.preset
    if len(target) < len(source):
        raise ValueError(f"{path}: the {name} trunk has {len(source)} darknet layers, more than all of "
                         f"{model.preset} ({len(target)})")
    for i, (a, b) in enumerate(zip(source, target)):
        shapes_a = {k: tuple(v.shape) for k, v in a.state_dict().items()}
        shapes_b = {k: tuple(v.shape) for k, v in b.state_dict().items()}
        if shapes_a != shapes_b:
            raise ValueError(f"{path}: the {name} trunk does not fit {model.preset}: darknet layer {i} is "
                             f"{shapes_a} in the classifier, {shapes_b} in the detector (batch norm on one side "
                             "only? use the same --batch-norm for both)")
    for a, b in zip(source, target):
        b.load_state_dict(a.state_dict())
    return f"loaded {path}: the {name} trunk, {len(source)} of {len(target)} darknet layers"
