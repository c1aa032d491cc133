"""
The backbones' ImageNet-style pre-training, as one more model family for train.py (--task classify).

The papers pre-train their convolutional layers as classifiers before detection (YOLOv1 §2.2: the first 20
layers of Fig. 3 + average pool + connected, "on the ImageNet 1000-class competition dataset"; YOLOv2 §3
"Training for classification": Darknet-19, then "Training for detection" starts from it). The networks are
darknet.Extraction and darknet.Darknet19; this file holds what the detector path does not need: the folder
reader, the recipe, top-1 / top-5 evaluation, and copying a classifier's trunk into a detector.

It has the names of a family file (PRESETS, RECIPE, build, loss) plus datasets() and evaluate(), which a
detector family gets from data.py and detect.py.
Run:  python train.py --task classify --model darknet19 --data imagenet_folder
"""
import os

import torch
import torch.nn.functional as F
from PIL import Image

import darknet
import data
PRESETS = {"darknet19": darknet.Darknet19, "extraction": darknet.Extraction}
RECIPE = dict(  # YOLOv2 §3 "Training for classification" (Darknet-19; YOLOv1 §2.2 gives no recipe)
    model="darknet19", optimizer="sgd", epochs=160, momentum=0.9, weight_decay=5e-4, dropout=0.0,  # no dropout
    schedule="poly", lr=0.1,            # "polynomial rate decay with a power of 4"
    batch_size=128, burn_in=1000,       # DARKNET darknet19.cfg
    img_size=224, multiscale=False, eval_every=1,
    augment="flip")                     # OURS, simpler than darknet's crops, rotation and colour shifts

DATA = "classification"    # train.py: trains on images with one class each (datasets(), evaluate())


def build(preset, num_classes=1000, img_size=None, batch_norm=None):
    """Darknet19 (batch norm unless batch_norm is False, as darknet19.cfg) or Extraction (no batch norm unless
    batch_norm, as extraction.conv.cfg). img_size is only recorded: both end in a global average pool."""
    if preset not in PRESETS:
        raise ValueError(f"unknown classifier {preset!r}; choose from {sorted(PRESETS)}")
    batch_norm = (batch_norm is not False) if preset == "darknet19" else bool(batch_norm)
    model = PRESETS[preset](num_classes, batch_norm=batch_norm)
    model.preset, model.num_classes, model.img_size = preset, num_classes, img_size
    model.config = dict(family="classify", preset=preset, num_classes=num_classes, img_size=img_size,
                        batch_norm=batch_norm)
    return model


def loss(model, out, targets, seen):
    """Softmax cross-entropy of the logits out (N, C) with each image's class."""
    return {"total": F.cross_entropy(out, torch.stack([t["label"] for t in targets]).to(out.device))}


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
        x = data.image_to_tensor(image)                                 # (3, s, s)
        if self.augment == "flip" and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, {"label": torch.tensor(label), "path": path}


def datasets(data_dir, img_size, augment):
    """-> (train set, validation set): data_dir/train and data_dir/val, or data_dir for both."""
    if data_dir is None:
        raise ValueError("--task classify needs --data: a folder of class sub-folders (or train/ and val/)")
    train_dir, val_dir = (os.path.join(data_dir, s) for s in ("train", "val"))
    if not os.path.isdir(train_dir):           # no train/ and val/: validate on the training folder itself
        train_dir = val_dir = data_dir
    return FolderDataset(train_dir, img_size, augment), FolderDataset(val_dir, img_size)


@torch.no_grad()
def evaluate(model, dataset, batch_size, workers=0, progress=None):
    """Top-1 and top-5 accuracy -> {"map": top-1 (train.py's metric), "top1", "top5"}. progress: None (silent) or
    train.py's tools.progress.Progress."""
    device, was_training = next(model.parameters()).device, model.training
    loader = torch.utils.data.DataLoader(dataset, batch_size, num_workers=workers, collate_fn=data.collate)
    correct, total = torch.zeros(2), 0
    model.eval()
    if progress:
        loader = progress(loader, total=len(dataset), desc="evaluating", unit="images", count=lambda b: len(b[1]))
    for x, targets in loader:
        out = model(x.to(device))                                          # (N, C) logits
        labels = torch.stack([t["label"] for t in targets]).to(device)
        hits = out.topk(min(5, out.shape[1]), dim=1).indices == labels[:, None]   # (N, 5)
        correct += torch.stack([hits[:, 0].sum(), hits.any(1).sum()]).cpu()
        total += len(labels)
    model.train(was_training)
    top1, top5 = (correct / max(total, 1)).tolist()
    return {"map": top1, "top1": top1, "top5": top5}


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
