"""
The backbones' ImageNet-style pre-training, as one more model family for train.py (--task classify).

The papers pre-train their convolutional layers as classifiers before detection (YOLOv1 §2.2: the first 20
layers of Fig. 3 + average pool + connected, "on the ImageNet 1000-class competition dataset"; YOLOv2 §3
"Training for classification": Darknet-19, then "Training for detection" starts from it). The networks are
darknet.Extraction and darknet.Darknet19; this file holds what the detector path does not need: the folder
reader, the recipe, top-1 / top-5 evaluation, and copying a classifier's trunk into a detector.

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
Run:  python train.py --task classify --model darknet19 --data imagenet_folder
      python train.py --task classify --model darknet19 --data imagenet_folder --tree wordtree1k.tree   # §4
"""
import os

import torch
import torch.nn.functional as F
from PIL import Image

import darknet
import data
import metrics
import wordtree

PRESETS = {"darknet19": darknet.Darknet19, "extraction": darknet.Extraction}
RECIPE = dict(  # YOLOv2 §3 "Training for classification" (Darknet-19; YOLOv1 §2.2 gives no recipe)
    model="darknet19", optimizer="sgd", epochs=160, momentum=0.9, weight_decay=5e-4, dropout=0.0,  # no dropout
    schedule="poly", lr=0.1,            # "polynomial rate decay with a power of 4"
    batch_size=128, burn_in=1000,       # DARKNET darknet19.cfg
    img_size=224, multiscale=False, eval_every=1,
    augment="flip")                     # OURS, simpler than darknet's crops, rotation and colour shifts

DATA = "classification"    # train.py: trains on images with one class each (datasets(), evaluate())
TARGETS = {}                 # data.collate: one class per image, no boxes


def build(preset, num_classes=1000, img_size=None, batch_norm=None, tree=None):
    """Darknet19 (batch norm unless batch_norm is False, as darknet19.cfg) or Extraction (no batch norm unless
    batch_norm, as extraction.conv.cfg). img_size is only recorded: both end in a global average pool.
    tree: {"ids", "parents", "leaves"} (datasets(); a checkpoint stores it): one output per node of the tree;
    "leaves", the nodes the evaluation ranks (darknet's leaves= list), default the tree's leaves."""
    if preset not in PRESETS:
        raise ValueError(f"unknown classifier {preset!r}; choose from {sorted(PRESETS)}")
    if tree is not None and len(tree["parents"]) != num_classes:
        raise ValueError(f"the tree has {len(tree['parents'])} nodes for {num_classes} classes")
    batch_norm = (batch_norm is not False) if preset == "darknet19" else bool(batch_norm)
    model = PRESETS[preset](num_classes, batch_norm=batch_norm)
    model.preset, model.num_classes, model.img_size = preset, num_classes, img_size
    model.config = dict(family="classify", preset=preset, num_classes=num_classes, img_size=img_size,
                        batch_norm=batch_norm)
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
        image = data.load_image(path).resize((self.img_size, self.img_size), Image.BILINEAR)
        x = data.image_to_tensor(image)                                 # (3, s, s)
        if self.augment == "flip" and torch.rand(()) < 0.5:
            x = x.flip(-1)
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
    train, val = FolderDataset(train_dir, img_size, augment), FolderDataset(val_dir, img_size)
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
