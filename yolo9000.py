"""
YOLO9000 (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", arXiv:1612.08242), read as a commentary on §4
"Stronger": a detector trained jointly on detection and classification data, whose classes are the nodes of a
WordTree, so that it detects classes for which it never saw a box.

Paper -> code
  §4 "Hierarchical classification": WordTree, a softmax per group of siblings .. wordtree.py; decode()
  §4 YOLO9000: Darknet-19 with 3 priors instead of 5, 544 input (yolo9000.cfg) .. YOLO9000, PRESETS["yolo9000"]
  §4 "Joint classification and detection": the loss of both kinds of image ..... joint_loss()
  §4 Detection with WordTree: "traverse the tree down, taking the highest confidence path at every split until we
     reach some threshold": the node reached, scored by objectness (darknet's GPU path) .. postprocess(), descend()
  §4 "Dataset combination with WordTree": COCO's classes and ImageNet's synsets become nodes of one tree;
     darknet's coco9k.map (COCO class k -> tree index), ImageNet folders named by WordNet id .. JointDataset,
                                                              ClassificationFolder, wordtree.read_map / node_of
  §4 "Joint classification and detection": "we mix images from both detection and classification datasets";
     "we oversampled COCO so that ImageNet is only larger by a factor of 4:1" ......... JointDataset(share=0.8)
  darknet data.c: a classification image is a label line with x = y = 0 (correct_boxes sets 999999, which
     region_layer.c reads as "class only"); here its target is {"image_label": node} with no box ... JointDataset
  ours: the synthetic demonstration (shapes, some leaves without boxes) ........ PRESETS["yolo9000-shapes"],
     evaluate(): "mAP@0.5 on classes without boxes"

Output of forward: raw (N, A*(5+C), H, W) as YOLOv2's (yolov2.py): channel a*(5+C) + k, k = tx, ty, tw, th, to,
then C logits, C = the tree's nodes in file order (9418 for 9k.tree). Legend: N images, A anchors, H x W grid,
P = A*H*W predictions listed anchor-major, n tree nodes (= C).
Run: python detect.py --model yolo9000 --weights yolo9000.weights --tree 9k.tree --names 9k.names photo.jpg
     python train.py --model yolo9000-shapes
"""
import os
from collections import Counter

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

import darknet
import data
import metrics
import wordtree
import yolov2                      # §4 "We use the base YOLOv2 architecture": its boxes and objectness (decode)
from data import IMAGE_EXTENSIONS, boxes_to_original, image_to_tensor, load_image, resize_darknet
from loss import CLASS_SCALE, OBJECT_SCALE, yolov2_loss

# -----------------------------------------------------------------------------
# §4 YOLO9000: "We use the base YOLOv2 architecture but only 3 priors instead of 5 to limit the output size."

ANCHORS_9000 = ((0.77871, 1.14074), (3.00525, 4.31277), (9.22725, 9.61974))    # yolo9000.cfg, grid cells
# OUR CHOICE: the synthetic demo's 3 priors, k-means (§2 "Dimension Clusters") on 2,000 synthetic images, 7x7 grid
ANCHORS_SHAPES = ((0.94, 0.89), (1.70, 1.62), (2.64, 2.54))
# OUR CHOICE, the demo's trunk: yolov1-shapes's (6 convs, 4 max-pools: 112 px -> a 7 x 7 grid), batch norm momentum .1
SHAPES_CONVS = [(16, 3), "M", (32, 3), "M", (64, 3), "M", (128, 3), "M", (256, 3), (256, 3)]

# §4 "Joint classification and detection"
CLASSIFICATION_MIN_IOU = 0.3    # "we also assume that the predicted box overlaps what would be the ground truth
                                # label by at least .3 IOU": objectness pulled up to .3 (region_layer.c: < .3 -> .3)
HIER_THRESH = 0.5               # DARKNET detector.c -hier default: the threshold of the descent

# "tree": the tree's file for the official network (detect.py --tree), built in for the demo (py).
# weights_bytes: yolo9000.weights, 16-byte header (checked in tests/test_yolo9000.py). The cfg is pjreddie/darknet
# cfg/yolo9000.cfg as of 6731a355 (2017-04-17): 544 input, Darknet-19's 18 convs, a 1x1 conv to 3·(9418 + 5).
PRESETS = {
    "yolo9000":        dict(convs=None, num_classes=9418, img_size=544, anchors=ANCHORS_9000,
                            weights_bytes=195_230_020),
    "yolo9000-shapes": dict(convs=SHAPES_CONVS, num_classes=7, img_size=112, anchors=ANCHORS_SHAPES),
}


class YOLO9000(nn.Module):
    """yolo9000.cfg: Darknet-19 (Table 6) without its classifier, then one 1x1 conv to A·(5 + n): no passthrough,
    no extra 3x3 convs (unlike yolov2.cfg). convs: another trunk spec (the demo's), stride 16 or 32."""

    def __init__(self, num_classes, anchors, img_size, convs=None, bn_momentum=None):
        super().__init__()
        A, C = len(anchors), num_classes
        if convs is None:                           # cfg layers 0..22: darknet19_448.conv.23 loads into them
            self.stage_a, self.stage_b = darknet.darknet19_trunk(batch_norm=True)
            channels, self.stride = 1024, 32
        else:
            self.stage_a, self.stage_b = darknet._layers(convs, 3, batch_norm=True), nn.Identity()
            channels, self.stride = self.stage_a.out_channels, 2 ** sum(item == "M" for item in convs)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and bn_momentum is not None:
                module.momentum = bn_momentum
        # layer 23: 1024 -> 3·(9418 + 5) = 28,269 channels; layer 24 is the [region] layer: decode() / joint_loss()
        self.detect = darknet.ConvBlock(channels, A * (5 + C), 1, batch_norm=False, activation="linear")
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))  # (A, 2) grid cells
        self.num_classes, self.img_size = C, img_size

    def forward(self, images):                      # (N, 3, H, W), H and W multiples of the stride
        if images.shape[2] % self.stride or images.shape[3] % self.stride:
            raise ValueError(f"YOLO9000 takes images whose sides are multiples of {self.stride}, "
                             f"got {tuple(images.shape)}")
        return self.detect(self.stage_b(self.stage_a(images)))   # raw (N, A*(5+C), H/stride, W/stride)


# -----------------------------------------------------------------------------
# §4 "Joint classification and detection"

def joint_loss(raw, targets, anchors, seen, tree, object_scale=OBJECT_SCALE, class_scale=CLASS_SCALE):
    """A batch of detection and classification images -> the loss terms, each a mean over the N images.

    Paper: "When our network sees an image labelled for detection we can backpropagate based on the full YOLOv2
    loss function. When it sees a classification image we only backpropagate loss from the classification-
    specific parts of the architecture."
    Detection image ({"boxes", "labels": tree nodes}): yolov2_loss (darknet's region layer: xy, wh, obj, noobj,
      prior, cls) with the class term over the label's path: -log Pr(label) = Σ over the groups from the label up
      to the root of a softmax cross-entropy (wordtree.path_nll); "we do not assign any error to predictions
      further down the tree" (a "dog" label leaves the dog breeds alone).
    Classification image ({"image_label": tree node}, no box): "we simply find the bounding box that predicts the
      highest probability for that class and we compute the loss on just its predicted tree":
        cls_image = -log Pr(label) at the prediction with the highest σ(to)·Pr(label) (darknet's choice of "highest
                    probability": objectness times the path probability, region_layer.c);
        obj_image = ½·object_scale·(.3 - σ(to))² at that prediction when σ(to) < .3, else 0 (the .3 IOU rule).
    DARKNET differs: region_layer.c (d2dece3, Jan 2017, as in 6731a355) also gives every other prediction of a
      classification image the no-object error ½·noobject_scale·σ(to)²; from 616e6305 (Jul 2017) the .3 pull is
      set to 0 right after it is computed, so later darknet pushes no objectness up on classification images.
    The ½ makes the gradients darknet's deltas, as in loss.yolov2_loss."""
    N = raw.shape[0]
    classification = [k for k, t in enumerate(targets) if "image_label" in t]
    detection = [k for k in range(N) if k not in classification]
    zero = raw.new_zeros(())
    terms = dict(xy=zero, wh=zero, obj=zero, noobj=zero, prior=zero, cls=zero, cls_image=zero, obj_image=zero)

    def class_loss(logits, labels):                 # (K, n) logits at the responsible slots -> (K,)
        return wordtree.path_nll(wordtree.tree_log_softmax(logits, tree), labels, tree)

    if detection:
        found = yolov2_loss(raw[detection], [targets[k] for k in detection], anchors, seen, rescore=True,
                            class_loss=class_loss)
        terms.update({k: v * len(detection) / N for k, v in found.items() if k != "total"})
    if classification:
        A = anchors.shape[0]
        x = raw[classification]
        M, _, H, W = x.shape
        x = x.view(M, A, -1, H, W)                                         # (M, A, 5+n, H, W)
        objectness = torch.sigmoid(x[:, :, 4]).reshape(M, -1)              # (M, P)
        logits = x[:, :, 5:].permute(0, 1, 3, 4, 2).reshape(M, A * H * W, -1)   # (M, P, n)
        labels = torch.stack([torch.as_tensor(targets[k]["image_label"]) for k in classification]).to(raw.device)
        log_cond = wordtree.tree_log_softmax(logits, tree)                 # (M, P, n) log Pr(node | parent)
        P = logits.shape[1]
        nll = wordtree.path_nll(log_cond.reshape(M * P, -1), labels.repeat_interleave(P), tree).view(M, P)
        with torch.no_grad():                       # the prediction "that predicts the highest probability"
            best = (objectness * torch.exp(-nll)).argmax(1)               # (M,) first of equal maxima
        m = torch.arange(M, device=raw.device)
        terms["cls_image"] = class_scale * nll[m, best].sum() / N
        below = (CLASSIFICATION_MIN_IOU - objectness[m, best]).clamp(min=0)
        terms["obj_image"] = 0.5 * object_scale * (below ** 2).sum() / N
    terms["total"] = sum(terms.values())
    return terms


# -----------------------------------------------------------------------------
# §4 Detection with the tree: objectness, a box, and the node the descent stops at

def decode(raw, anchors, tree):
    """raw (N, A*(5+n), H, W) -> boxes (N, P, 4) normalized xyxy, objectness (N, P), conditional (N, P, n)
    Pr(node | parent) and absolute (N, P, n) Pr(node).
    Boxes and objectness are YOLOv2's (yolov2.decode, given the five box channels and a stand-in class channel);
    the classes are the tree's: a softmax per group of siblings, then the products down the paths.
    DARKNET: this is its GPU path (blas_kernels.cu softmax_tree, then tree.c hierarchy_predictions). Its CPU build
    writes NaN here: forward_region_layer calls softmax_cpu with temperature 0 (x/0) and the offsets of the
    non-tree layout (pjreddie/darknet, every commit since d2dece3), so darknet -nogpu cannot run YOLO9000."""
    N, _, H, W = raw.shape
    A = anchors.shape[0]
    x = raw.view(N, A, -1, H, W)                                           # (N, A, 5+n, H, W)
    boxes, objectness, _, _ = yolov2.decode(x[:, :, :6].reshape(N, A * 6, H, W), anchors)
    logits = x[:, :, 5:].permute(0, 1, 3, 4, 2).reshape(N, A * H * W, -1)  # (N, P, n)
    conditional = wordtree.tree_softmax(logits, tree)
    return boxes, objectness, conditional, wordtree.absolute_probabilities(conditional, tree)


def postprocess(raw, anchors, tree, image_sizes, conf_threshold=0.24, nms_threshold=0.4, hier_threshold=HIER_THRESH,
                letterbox=False, net_size=None, nodes=None, rule="darknet", stride=32):
    """raw -> one dict per image {"boxes" (K, 4) pixel xyxy clipped to the image, "scores" (K,), "labels" (K,)}.
    nodes None (darknet's test path, region_layer.c get_region_detections with a tree and no map): one entry per
      prediction whose objectness is > conf_threshold; its label is the node wordtree.descend() stops at, its score
      the objectness (not multiplied by the node's probability).
    nodes [node indices] (darknet's map path, used for ImageNet's 200 detection classes with inet9k.map): the
      score of class k is objectness·Pr(nodes[k]), kept when > conf_threshold; labels are k.
    Then class-wise NMS (darknet do_nms_sort; nms_threshold >= 1 suppresses nothing). Listed prediction by
    prediction (anchor, row, column), as yolov2.postprocess; "predictions" holds each entry's index in P.
    net_size: the network input (width, height), default (stride·W, stride·H)."""
    boxes, objectness, _, absolute = decode(raw, anchors, tree)
    H, W = raw.shape[-2:]
    net_w, net_h = net_size or (stride * W, stride * H)
    results = []
    for b, (img_w, img_h) in enumerate(image_sizes):
        if nodes is None:
            det = (objectness[b] > conf_threshold).nonzero().flatten()    # (K,) predictions, in order
            label = wordtree.descend(absolute[b, det], tree, hier_threshold, rule)
            score = objectness[b, det]
        else:
            prob = objectness[b, :, None] * absolute[b][:, torch.as_tensor(nodes, device=raw.device)]   # (P, k)
            det, label = (prob > conf_threshold).nonzero(as_tuple=True)
            score = prob[det, label]
        xyxy = boxes_to_original(boxes[b, det], (img_w, img_h), (net_w, net_h), letterbox)
        if nms_threshold < 1.0:
            keep = metrics.batched_nms(xyxy, score, label, nms_threshold).sort().values   # back in listing order
            det, xyxy, score, label = det[keep], xyxy[keep], score[keep], label[keep]
        xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, img_w)
        xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, img_h)
        results.append({"boxes": xyxy, "scores": score, "labels": label.long(), "predictions": det})
    return results


def tree_path(tree, conditional, node):
    """detect.py --show-tree: [(node, Pr(node | parent), Pr(node))] from the root down to node; conditional (n,)."""
    steps, p = [], 1.0
    for k in wordtree.path(tree, node):
        p *= float(conditional[k])
        steps.append((k, float(conditional[k]), p))
    return steps


# -----------------------------------------------------------------------------
# The family interface (as yolov1.py, yolov2.py): train.py and detect.py never branch on the family

# DARKNET yolo9000.cfg (6731a355): SGD lr .001 with burn-in 1000, momentum .9, decay .0005, batch 64, 544 input,
# random=1 (multi-scale), 500,200 batches with /10 at 400,000 and 450,000 (80% and 90%). The paper gives no
# schedule; the epoch count, which depends on the mix of COCO and ImageNet, is OUR CHOICE (steps at 80% and 90%).
RECIPE = dict(model="yolo9000", optimizer="sgd", epochs=10, momentum=0.9, weight_decay=5e-4, dropout=0.0,
              batch_size=64, schedule="yolov2", lr=1e-3, lr_steps=[8, 9], burn_in=1000, img_size=544,
              augment="yolov2", multiscale=True, eval_every=1)
# DARKNET detector.c test_detector at 6731a355: -thresh .24, -hier .5, nms .4 (do_nms_obj: one NMS over all
# classes by objectness; since 2018 do_nms_sort, per class, which we use), and a letterboxed input (--letterbox).
# OUR CHOICE: the demo, `python train.py --model yolo9000-shapes` (README, Results): train.SYNTHETIC's values (Adam
# 2e-3 on fresh images, /10 at 90% and 97% of the steps), but 9,600 images (300 steps of 32; 9 min of CPU time) and
# 300 held-out ones: box-less mAP 0.327. Twice as long gave 0.208: ellipses up, pentagons lost to their siblings.
PRESET_RECIPES = {"yolo9000-shapes": dict(
    model="yolo9000-shapes", optimizer="adam", epochs=1, batch_size=32, momentum=0.9, weight_decay=0.0, dropout=0.0,
    schedule="yolov1", lr=2e-3, warmup_lr=2e-4, warmup_epochs=0.05, lr_steps=[0.9, 0.97], img_size=112,
    augment="none", multiscale=False, eval_every=1, train_images=9_600, val_images=300)}
TEST_THRESHOLDS = dict(conf=0.24, nms=0.4)
EVAL_NMS = 0.45


def build(preset, num_classes=None, img_size=None, tree=None):
    """The preset's network with its WordTree. tree: darknet's tree file (detect.py --tree 9k.tree), or the
    {"ids", "parents"} a checkpoint stores in model.config; the demo preset has its own (SHAPE_TREE).
    The tree's nodes are the classes: num_classes, if given, must equal their count."""
    if preset not in PRESETS:
        raise ValueError(f"unknown YOLO9000 preset {preset!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    if isinstance(tree, str):
        tree = wordtree.tree_config(wordtree.read_tree(tree))
    elif tree is None and preset == "yolo9000-shapes":
        tree = SHAPE_TREE
    elif tree is None:
        raise ValueError(f"{preset} needs its WordTree: give darknet's tree file (detect.py --tree 9k.tree)")
    n = len(tree["parents"])
    if (num_classes or n) != n or (preset == "yolo9000" and n != p["num_classes"]):
        raise ValueError(f"{preset}: the tree has {n} nodes; expected {num_classes or p['num_classes']} classes")
    config = dict(family="yolo9000", preset=preset, num_classes=n, img_size=img_size or p["img_size"],
                  tree=dict(ids=list(tree["ids"]), parents=list(tree["parents"])))
    model = YOLO9000(n, p["anchors"], config["img_size"], p["convs"], bn_momentum=0.1 if p["convs"] else None)
    if config["img_size"] % model.stride:
        raise ValueError(f"img_size must be a multiple of {model.stride}, got {config['img_size']}")
    model.tree = wordtree.make_tree(tree["parents"], tree["ids"])
    model.preset, model.config, model.hier, model.show_tree = preset, config, HIER_THRESH, False
    return model


def loss(model, out, targets, seen):
    """joint_loss() with the model's anchors and tree."""
    return joint_loss(out, targets, model.anchors, seen, model.tree)


def detections(model, out, image_sizes, conf, nms, letterbox=False, net_size=None, order=None):
    """postprocess() with the model's tree and model.hier (detect.py --hier). order (tools/darknet_order.py) lists
    them in darknet's order. With model.show_tree (detect.py --show-tree), "tree_path": the path of probabilities
    from the root to the node of the detection with the highest objectness."""
    found = postprocess(out, model.anchors, model.tree, image_sizes, conf, nms, model.hier, letterbox, net_size,
                        stride=model.stride)
    for b, d in enumerate(found):
        if order is not None:       # tools/darknet_order.py reads a (P, n) table of the scores: 0 but at the label
            P = out.shape[1] // (5 + model.num_classes) * out.shape[2] * out.shape[3]
            pred = d["predictions"].cpu()
            keep, prob = torch.zeros(P, dtype=torch.bool), torch.zeros(P, model.num_classes)
            keep[pred], prob[pred, d["labels"].cpu()] = True, d["scores"].float().cpu()
            listed = torch.searchsorted(pred, order(keep, prob).cpu())          # d's entries in darknet's order
            d.update({k: v[listed.to(v.device)] for k, v in d.items() if torch.is_tensor(v)})
        d["grid"] = tuple(out.shape[2:])
        if model.show_tree and len(d["scores"]):
            best = int(d["scores"].argmax())
            _, _, conditional, _ = decode(out[b:b + 1], model.anchors, model.tree)
            d["tree_path"] = tree_path(model.tree, conditional[0, d["predictions"][best]], int(d["labels"][best]))
    return found


# train.py: trains on detection and classification images in one stream (§4), from joint_datasets(), and
# evaluates with evaluate() below
DATA = "joint"


def joint_datasets(args):
    """train.py's datasets for this family: the synthetic demo (shapes_datasets). Training the full
    YOLO9000 needs COCO, ImageNet and the tree files together: coco_imagenet() builds that stream; its
    command line is not part of train.py."""
    if args.data is not None or args.model != "yolo9000-shapes":
        raise SystemExit(f"--model {args.model}: train.py trains YOLO9000 on the synthetic demo only (--model "
                         "yolo9000-shapes, no --data); COCO + ImageNet: coco_imagenet()")
    return shapes_datasets(args.train_images, args.val_images, args.img_size, args.seed)


@torch.no_grad()
def evaluate(model, dataset, batch_size, workers=0):
    """VOC07 mAP@0.5 on held-out detection images of every leaf (shapes_datasets' val set), each class
    scored as darknet's map path scores ImageNet's 200 classes: objectness·Pr(node). Prints the mean over the
    classes that had boxes in training and over those that never had one (§4: "YOLO9000 gets 19.7 mAP overall with
    16.0 mAP on the disjoint 156 object classes that it has never seen any labelled detection data for").
    -> metrics.evaluate's dict, its "ap" and "curves" keyed by tree node (train.py's plots name them)."""
    was_training, device = model.training, next(model.parameters()).device
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size, num_workers=workers, collate_fn=lambda b: b)
    detections = []
    for batch in loader:
        images = torch.stack([image for image, _ in batch]).to(device)
        sizes = [target["size"] for _, target in batch]
        detections += [{k: v.cpu() for k, v in d.items()} for d in
                       postprocess(model(images).float(), model.anchors, model.tree, sizes, metrics.EVAL_CONF, EVAL_NMS,
                                   nodes=dataset.nodes, stride=model.stride)]
    model.train(was_training)
    truths = [dataset.annotation(i) for i in range(len(dataset))]
    result = metrics.evaluate(detections, truths, protocol="voc07", num_classes=len(dataset.nodes))
    ap = [result["ap"].get(k, float("nan")) for k in range(len(dataset.nodes))]
    for title, with_boxes in (("classes with boxes", True), ("classes without boxes", False)):
        chosen = [k for k, name in enumerate(dataset.class_names) if (name in dataset.without_boxes) != with_boxes]
        mean = sum(ap[k] for k in chosen) / len(chosen)
        print(f"mAP@0.5 on {title}: {mean:.4f} (" + ", ".join(f"{dataset.class_names[k]} {ap[k]:.3f}"
                                                            for k in chosen) + ")")
    for key in ("ap", "curves"):
        result[key] = {dataset.nodes[k]: v for k, v in result[key].items()}
    return result


# -----------------------------------------------------------------------------
# §4 The data of joint training: detection images and classification images in one stream, their labels mapped
# into the WordTree; and the synthetic WordTree of shapes of the demo (ours: shape -> round (circle, ellipse),
# polygon (triangle, rectangle, pentagon); ellipse and pentagon are never given a box in training).
#
# A detection target is data.py's ({"boxes" (M, 4) normalized xyxy, "labels" (M,)}), labels now tree nodes; a
# classification target is {"boxes" (0, 4), "labels" (0,), "image_label": node}: joint_loss tells them apart.

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
