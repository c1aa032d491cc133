"""
The data of YOLO9000's joint training (YOLOv2 paper, arXiv:1612.08242, §4): detection images and classification
images in one stream, their labels mapped into the WordTree; and the synthetic WordTree of shapes of the demo.

Paper / darknet -> code
  §4 "Dataset combination with WordTree": COCO's classes and ImageNet's synsets become nodes of one tree;
     darknet's coco9k.map (COCO class k -> tree index), ImageNet folders named by WordNet id ...... JointDataset,
                                                                  ClassificationFolder, wordtree.read_map / node_of
  §4 "Joint classification and detection": "we mix images from both detection and classification datasets";
     "we oversampled COCO so that ImageNet is only larger by a factor of 4:1" ......... JointDataset(share=0.8)
  darknet data.c: a classification image is a label line with x = y = 0 (correct_boxes sets 999999, which
     region_layer.c reads as "class only"); here its target is {"image_label": node} with no box ... JointDataset
  ours: shape -> round (circle, ellipse), polygon (triangle, rectangle, pentagon); ellipse and pentagon are
     never given a box in training ............................. SHAPE_TREE, ShapeTreeDataset, shapes_datasets()

A detection target is data.py's ({"boxes" (M, 4) normalized xyxy, "labels" (M,)}), labels now tree nodes; a
classification target is {"boxes" (0, 4), "labels" (0,), "image_label": node}: yolo9000.joint_loss tells them apart.
"""
import os
from collections import Counter

import numpy as np
import torch
from PIL import Image, ImageDraw

import data
import wordtree
from images import IMAGE_EXTENSIONS, image_to_tensor, load_image, resize_darknet

# -----------------------------------------------------------------------------
# The synthetic WordTree (ours): in darknet's tree-file order, parents first, siblings together

SHAPE_TREE = dict(ids=["round", "polygon", "circle", "ellipse", "triangle", "rectangle", "pentagon"],
                  parents=[-1, -1, 0, 0, 1, 1, 1])
WITH_BOXES = ["circle", "triangle", "rectangle"]       # detection images: these, with boxes
WITHOUT_BOXES = ["ellipse", "pentagon"]                # only in classification images (one object, no box)
CLASSIFICATION_SHARE = 0.5      # OUR CHOICE for the demo (the paper's 4:1 ImageNet:COCO would be 0.8)
STREAM_TREE_SHAPES = 4          # a random stream of its own (data.py uses 1..3)


class ShapeTreeDataset(data.ShapesDataset):
    """Synthetic images of the leaves `classes` (names in SHAPE_TREE) on data.ShapesDataset's backgrounds: a circle
    has equal sides, an ellipse an aspect of 1.7-2.5, triangles, rectangles and pentagons 0.6-1.6. Labels index
    `classes`. single=True: one object of longer side 30-80% of the image (a classification image, ImageNet-like);
    else 1-4 objects of 15-50%, each covering at most 30% of an earlier one's box (data.ShapesDataset's rule)."""

    def __init__(self, num_images, img_size, seed, classes, single=False):
        super().__init__(num_images, img_size, seed)
        self.class_names, self.single = list(classes), single

    def _layout(self, i):
        background = super()._layout(i)[0]                # data.ShapesDataset's background of image i
        rng, S, shapes = self.rng(STREAM_TREE_SHAPES, i), self.img_size, []
        mean = np.clip(background[1] + background[2] / 2, 0, 1)
        for _ in range(1 if self.single else int(rng.integers(1, 5))):
            label = int(rng.integers(len(self.class_names)))
            name = self.class_names[label]
            for _ in range(20):
                side = rng.uniform(*((0.3, 0.8) if self.single else (0.15, 0.5))) * S
                aspect = 1.0 if name == "circle" else rng.uniform(1.7, 2.5) if name == "ellipse" else \
                    rng.uniform(0.6, 1.6)
                if name == "ellipse" and rng.random() < 0.5:
                    aspect = 1 / aspect                   # standing up
                w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
                w, h = max(int(w), 4), max(int(h), 4)
                x0, y0 = int(rng.integers(0, S - w + 1)), int(rng.integers(0, S - h + 1))
                box = [x0, y0, x0 + w, y0 + h]
                if all(data._covered(earlier, box) <= self.max_cover for earlier, *_ in shapes):
                    break
            else:
                continue
            colour = rng.uniform(0, 1, 3)
            while np.linalg.norm(colour - mean) < 0.5:
                colour = rng.uniform(0, 1, 3)
            shapes.append((box, label, colour, int(rng.integers(4))))
        return background, shapes

    def load(self, i):
        background, shapes = self._layout(i)
        img = self._background(i, background)
        draw = ImageDraw.Draw(img)
        for (x0, y0, x1, y1), label, colour, orientation in shapes:
            fill, x1, y1 = tuple(int(c * 255) for c in colour), x1 - 1, y1 - 1     # PIL draws the last pixel too
            name, xm, ym = self.class_names[label], (x0 + x1) / 2, (y0 + y1) / 2
            if name in ("circle", "ellipse"):
                draw.ellipse([x0, y0, x1, y1], fill=fill)
            elif name == "rectangle":
                draw.rectangle([x0, y0, x1, y1], fill=fill)
            elif name == "triangle":                      # apex up, right, down or left
                draw.polygon([[(x0, y1), (x1, y1), (xm, y0)], [(x0, y0), (x0, y1), (x1, ym)],
                              [(x0, y0), (x1, y0), (xm, y1)], [(x1, y0), (x1, y1), (x0, ym)]][orientation], fill=fill)
            else:                                         # pentagon, point up or down, filling its box
                t = np.pi / 2 + 2 * np.pi * np.arange(5) / 5
                px, py = np.cos(t), -np.sin(t) * (1 if orientation % 2 else -1)
                px = x0 + (px - px.min()) / np.ptp(px) * (x1 - x0)
                py = y0 + (py - py.min()) / np.ptp(py) * (y1 - y0)
                draw.polygon(list(zip(px.tolist(), py.tolist())), fill=fill)
        return img

    def _background(self, i, background):
        """data.ShapesDataset.load's background (gradient, stripes or blotches, and grain), drawn the same way."""
        (kind, c1, dc, p), S, rng = background, self.img_size, self.rng(data.STREAM_RENDER, i)
        x, y = np.arange(S, dtype=np.float32) / S, np.arange(S, dtype=np.float32)[:, None] / S
        along = np.cos(p[0] * np.pi) * x + np.sin(p[0] * np.pi) * y
        if kind == 0:
            weight = along / 2 + 0.5
        elif kind == 1:
            weight = (np.sin(along * 2 * np.pi / (0.04 + 0.16 * p[1])) > 0).astype(np.float32)
        else:
            weight = resize_darknet(torch.from_numpy(rng.random((1, 8, 8), np.float32)), (S, S))[0].numpy()
        weight = weight + 0.15 * rng.random((S, S), np.float32)
        pixels = c1.astype(np.float32) + weight[..., None] * dc.astype(np.float32)
        return Image.fromarray(np.clip(pixels * 255, 0, 255).astype(np.uint8))


# -----------------------------------------------------------------------------
# ImageNet-style classification data: a folder per WordNet id

class ClassificationFolder(torch.utils.data.Dataset):
    """root/<WordNet id>/<image>: one class per sub-folder, its name the synset's WordNet id (n02094114), as
    ImageNet's train folders are. Images are resized to img_size (darknet's resize_image); class_names are the ids."""

    def __init__(self, root, img_size):
        self.img_size, self.class_names = img_size, sorted(d for d in os.listdir(root)
                                                           if os.path.isdir(os.path.join(root, d)))
        self.items = [(os.path.join(root, name, f), label) for label, name in enumerate(self.class_names)
                      for f in sorted(os.listdir(os.path.join(root, name)))
                      if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
        if not self.items:
            raise ValueError(f"{root}: no images in sub-folders named by class")
        self.problems, self.counts = [], Counter()

    def __len__(self):
        return len(self.items)

    def record(self, i):
        return {"path": self.items[i][0], "boxes": np.zeros((0, 4), np.float32),
                "labels": np.array([self.items[i][1]])}

    def __getitem__(self, i):
        path, label = self.items[i]
        image = resize_darknet(image_to_tensor(load_image(path, exif=True)), (self.img_size, self.img_size))
        return image, {"boxes": torch.zeros(0, 4), "labels": torch.tensor([label]), "path": path}


# -----------------------------------------------------------------------------
# §4 Joint training: one stream of both kinds of image

class JointDataset(torch.utils.data.Dataset):
    """Detection and classification images interleaved so that a share `share` of every stretch of the stream is
    classification images (item i is one when floor((i + 1)·share) > floor(i·share)); each source is read in
    order and wraps around. detection_nodes[k] / classification_nodes[k]: the tree node of each source's class k
    (wordtree.read_map for coco9k.map; wordtree.node_of for WordNet-id folders). class_names: the tree's names."""

    def __init__(self, detection, classification, detection_nodes, classification_nodes, class_names, share,
                 length=None):
        self.detection, self.classification, self.share = detection, classification, share
        self.detection_nodes = torch.as_tensor(detection_nodes, dtype=torch.long)
        self.classification_nodes = torch.as_tensor(classification_nodes, dtype=torch.long)
        self.class_names, self.length = list(class_names), length or len(detection) + len(classification)
        self.problems = detection.problems + classification.problems
        self.counts = detection.counts + classification.counts

    def __len__(self):
        return self.length

    def _source(self, i):
        """-> (is a classification image, index in its source)."""
        before = int(i * self.share)
        if int((i + 1) * self.share) > before:
            return True, before % len(self.classification)
        return False, (i - before) % len(self.detection)

    def record(self, i):
        classification, j = self._source(i)
        source = self.classification if classification else self.detection
        nodes = self.classification_nodes if classification else self.detection_nodes
        rec = source.record(j)
        return dict(rec, labels=nodes[torch.as_tensor(rec["labels"], dtype=torch.long)].numpy())

    def set_epoch(self, epoch):
        for source in (self.detection, self.classification):
            if hasattr(source, "set_epoch"):
                source.set_epoch(epoch)

    def __getitem__(self, i):
        classification, j = self._source(i)
        if not classification:
            image, target = self.detection[j]
            return image, dict(target, labels=self.detection_nodes[target["labels"]])
        image, target = self.classification[j]
        return image, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long),
                       "path": target.get("path"), "image_label": self.classification_nodes[target["labels"][0]]}


def coco_imagenet(coco_json, imagenet_dir, tree_file, map_file, img_size=544, augment="yolov2", seed=0, share=0.8):
    """The paper's combination: COCO detection (classes into the tree by coco9k.map) and an ImageNet folder of
    WordNet ids, 4 classification images to 1 detection image (§4). -> (JointDataset, tree)."""
    tree = wordtree.read_tree(tree_file)
    coco = data.open_dataset(coco_json, img_size=img_size, augment=augment, seed=seed)
    imagenet = ClassificationFolder(imagenet_dir, img_size)
    return JointDataset(coco, imagenet, wordtree.read_map(map_file, tree), wordtree.node_of(tree, imagenet.class_names),
                        tree["ids"], share), tree


def shapes_datasets(train_images, val_images, img_size, seed=0, share=CLASSIFICATION_SHARE):
    """The demo: (JointDataset of detection images of WITH_BOXES and classification images of WITHOUT_BOXES,
    held-out detection images of all five leaves with their boxes, for the evaluation)."""
    node = {name: k for k, name in enumerate(SHAPE_TREE["ids"])}
    detection = ShapeTreeDataset(train_images, img_size, seed, WITH_BOXES)
    classification = ShapeTreeDataset(train_images, img_size, seed + 1, WITHOUT_BOXES, single=True)
    train = JointDataset(detection, classification, [node[c] for c in WITH_BOXES],
                         [node[c] for c in WITHOUT_BOXES], SHAPE_TREE["ids"], share, length=train_images)
    val = ShapeTreeDataset(val_images, img_size, seed + data.SHAPES_VAL_SEED, WITH_BOXES + WITHOUT_BOXES)
    val.nodes, val.without_boxes = [node[c] for c in val.class_names], WITHOUT_BOXES
    return train, val
