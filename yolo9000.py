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
     "we oversampled COCO so that ImageNet is only larger by a factor of 4:1" ......... IMAGENET_SHARE, JointDataset
  darknet data.c: a classification image is a label line with x = y = 0 (correct_boxes sets 999999, which
     region_layer.c reads as "class only"); here its target is {"image_label": node} with no box ... JointDataset
  §4 the paper's data: COCO through coco9k.map, ImageNet WordNet-id folders, 4:1 .. coco_imagenet(), joint_datasets()
  §4 the ImageNet detection task: 19.7 mAP, 16.0 on 156 classes, Table 7 ....... ImageNetDetection, imagenet_report()
     (metrics.evaluate(protocol="ilsvrc"), wordtree.disjoint(); detect.py --inet-map runs it)
  ours: the synthetic demonstration (shapes, some leaves without boxes) ........ PRESETS["yolo9000-shapes"],
     score(): "mAP@0.5 on classes without boxes"; detect_images() for each process's part

Output of forward: raw (N, A*(5+C), H, W) as YOLOv2's (yolov2.py): channel a*(5+C) + k, k = tx, ty, tw, th, to,
then C logits, C = the tree's nodes in file order (9418 for 9k.tree). Legend: N images, A anchors, H x W grid,
P = A*H*W predictions listed anchor-major, n tree nodes (= C).
Run: python detect.py --model yolo9000 --weights yolo9000.weights --tree 9k.tree --names 9k.names photo.jpg
     python train.py --model yolo9000-shapes
     python train.py --model yolo9000 --data COCO --imagenet IMAGENET --tree 9k.tree --coco-map coco9k.map
     python detect.py --weights yolo9000.weights --tree 9k.tree --data IMAGENET_DET --split val --inet-map inet9k.map \\
         --coco-map coco9k.map
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
from data import AUGMENTATIONS, IMAGE_EXTENSIONS, boxes_to_original, image_to_tensor, load_image, resize_darknet
from loss import CLASS_SCALE, MIN_BOX_SIZE, NOOBJECT_SCALE, OBJECT_SCALE, REGION_MAX_OBJECTS, yolov2_loss
from metrics import batch_targets

# -----------------------------------------------------------------------------
# §4 YOLO9000: "We use the base YOLOv2 architecture but only 3 priors instead of 5 to limit the output size."

ANCHORS_9000 = ((0.77871, 1.14074), (3.00525, 4.31277), (9.22725, 9.61974))    # yolo9000.cfg, grid cells
# OUR CHOICE: the synthetic demo's 3 priors, k-means (§2 "Dimension Clusters") on 2,000 synthetic images, 7x7 grid
ANCHORS_SHAPES = ((0.94, 0.89), (1.70, 1.62), (2.64, 2.54))
# OUR CHOICE, the demo's trunk: yolov1-shapes's as it was when the demo was measured (6 convs, 4 max-pools: 112 px
# -> a 7 x 7 grid; yolov1-shapes's first conv has since taken stride 2 in place of the first max-pool), batch norm
# momentum .1
SHAPES_CONVS = [(16, 3), "M", (32, 3), "M", (64, 3), "M", (128, 3), "M", (256, 3), (256, 3)]

# §4 "Joint classification and detection"
CLASSIFICATION_MIN_IOU = 0.3    # "we also assume that the predicted box overlaps what would be the ground truth
                                # label by at least .3 IOU": objectness pulled up to .3 (region_layer.c: < .3 -> .3)
HIER_THRESH = 0.5               # DARKNET detector.c -hier default: the threshold of the descent

# "tree": the tree's file for the official network (detect.py --tree), built in for the demo (py).
# weights_bytes: yolo9000.weights, 16-byte header (checked in tests/test_yolo9000.py). The cfg is pjreddie/darknet
# cfg/yolo9000.cfg as of 6731a355 (2017-04-17): 544 input, Darknet-19's 18 convs, a 1x1 conv to 3·(9418 + 5).
# "revision": the darknet revision whose behaviour the preset follows (darknet.REVISIONS: batch norm, letterbox,
# thresholds): 60e952ba, which set the cfg's 544 input and letterboxed its test and validation images.
PRESETS = {
    "yolo9000":        dict(convs=None, num_classes=9418, img_size=544, anchors=ANCHORS_9000,
                            weights_bytes=195_230_020, revision="60e952ba"),
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

# The classification image's objectness, by source (joint_loss(classification_rule=...), train.py --classification-loss)
#   "paper": only the chosen box, pulled up to .3 (§4).
#   "darknet-2017-01": region_layer.c from d2dece3 (2017-01-04, the release of yolo9000.weights) to 616e6305: the
#     no-object error on every box of the image, then at the chosen box the .3 pull instead (0 when already >= .3).
#   "darknet": region_layer.c from 2f212a47 (2017-07-27) to today (777b0982): the no-object error on every other box;
#     the chosen box's .3 pull is computed and overwritten with 0 on the next line, so it gets no objectness error.
#     (616e6305 itself, 2017-07-11, had commented out both lines: no objectness error at all for two weeks.)
CLASSIFICATION_RULES = ("paper", "darknet", "darknet-2017-01")


def joint_loss(raw, targets, anchors, seen, tree, object_scale=OBJECT_SCALE, class_scale=CLASS_SCALE,
               noobject_scale=NOOBJECT_SCALE, classification_rule="paper"):
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
    DARKNET differs (classification_rule, see CLASSIFICATION_RULES):
        noobj_image = ½·noobject_scale·σ(to)² summed over every other prediction of the image (both darknet rules);
        obj_image as above with "darknet-2017-01", 0 with "darknet".
    The ½ makes the gradients darknet's deltas, as in loss.yolov2_loss."""
    if classification_rule not in CLASSIFICATION_RULES:
        raise ValueError(f"classification_rule must be one of {CLASSIFICATION_RULES}, got {classification_rule!r}")
    targets = batch_targets(targets) if isinstance(targets, (list, tuple)) else targets
    N = raw.shape[0]
    zero = raw.new_zeros(())
    terms = dict(xy=zero, wh=zero, obj=zero, noobj=zero, prior=zero, cls=zero, cls_image=zero, obj_image=zero,
                 noobj_image=zero)
    tree = wordtree.tree_on(tree, raw.device)

    def class_loss(logits, labels):                 # (K, n) logits at the responsible slots -> (K,)
        return wordtree.path_nll(wordtree.tree_log_softmax(logits, tree), labels, tree)

    # The batch as data.collate pads it: "image_label" (N,) is -1 on detection images; "classification" (M,)
    # lists the others (made in the loader's workers: its length is known without asking the device).
    image_label = targets.get("image_label")
    detection = None if image_label is None else image_label.to(raw.device) < 0           # (N,) bool
    found = yolov2_loss(raw, targets, anchors, seen, rescore=True, class_loss=class_loss, detection=detection)
    terms.update({k: v for k, v in found.items() if k != "total"})
    if image_label is not None and len(targets["classification"]):
        A = anchors.shape[0]
        index = targets["classification"].to(raw.device)
        x = raw[index]
        M, _, H, W = x.shape
        x = x.view(M, A, -1, H, W)                                         # (M, A, 5+n, H, W)
        objectness = torch.sigmoid(x[:, :, 4]).reshape(M, -1)              # (M, P)
        logits = x[:, :, 5:].permute(0, 1, 3, 4, 2).reshape(M, A * H * W, -1)   # (M, P, n)
        labels = image_label.to(raw.device)[index]                         # (M,)
        log_cond = wordtree.tree_log_softmax(logits, tree)                 # (M, P, n) log Pr(node | parent)
        P = logits.shape[1]
        nll = wordtree.path_nll(log_cond.reshape(M * P, -1), labels.repeat_interleave(P), tree).view(M, P)
        with torch.no_grad():                       # the prediction "that predicts the highest probability"
            best = (objectness * torch.exp(-nll)).argmax(1)               # (M,) first of equal maxima
        m = torch.arange(M, device=raw.device)
        terms["cls_image"] = class_scale * nll[m, best].sum() / N
        if classification_rule != "darknet":
            below = (CLASSIFICATION_MIN_IOU - objectness[m, best]).clamp(min=0)
            terms["obj_image"] = 0.5 * object_scale * (below ** 2).sum() / N
        if classification_rule != "paper":              # every prediction but the chosen one: target 0
            others = torch.ones_like(objectness)                           # (M, P) 1, 0 at the chosen one
            others[m, best] = 0.0                      # a weight, not a boolean filter: no wait for the device
            terms["noobj_image"] = 0.5 * noobject_scale * (objectness ** 2 * others).sum() / N
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
    writes NaN here from 60e952ba on: forward_region_layer calls softmax_cpu with l.temperature, which parse_region
    never sets (0, so x/0), so darknet -nogpu cannot run YOLO9000 since then. At d2dece3d, where YOLO9000 came, the
    CPU path was softmax_tree(..., temperature 1) per prediction, and gives this function's numbers."""
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
              augment="yolo9000", multiscale=True, eval_every=1)     # data.AUGMENTATIONS: yolo9000.cfg's values
# DARKNET detector.c test_detector from 60e952ba to 6731a355: -thresh .24, -hier .5, nms .4 (do_nms_obj: one NMS over
# all classes by objectness; since 2018 do_nms_sort, per class, which we use), a letterboxed input: the preset's
# revision row (darknet.REVISIONS) gives them. TEST_THRESHOLDS below are the demo's, which has no darknet revision.
# OUR CHOICE: the demo, `python train.py --model yolo9000-shapes` (README, Results): train.SYNTHETIC's values as they
# were then (Adam 2e-3 on fresh images, /10 at 90% and 97% of the steps), but 9,600 images (300 steps of 32; 9 min
# of CPU time) and 300 held-out ones: box-less mAP 0.327. Twice as long gave 0.208: ellipses up, pentagons lost to
# their siblings.
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
        raise ValueError(f"{preset} needs its WordTree: give darknet's tree file (--tree 9k.tree)")
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
    if "revision" in p:                             # batch-norm formula and momentum of the file's darknet
        darknet.use_revision(model, p["revision"])
    return model


def loss(model, out, targets, seen):
    """joint_loss() with the model's anchors and tree, and model.classification_rule (train.py
    --classification-loss; default the paper's)."""
    return joint_loss(out, targets, model.anchors, seen, model.tree,
                      classification_rule=getattr(model, "classification_rule", "paper"))


def detections(model, out, image_sizes, conf, nms, letterbox=False, net_size=None, order=None):
    """postprocess() with the model's tree and model.hier (detect.py --hier); with model.nodes (detect.py --inet-map)
    darknet's map path: class k scored objectness·Pr(nodes[k]). order (tools/darknet_order.py) lists
    them in darknet's order. With model.show_tree (detect.py --show-tree), "tree_path": the path of probabilities
    from the root to the node of the detection with the highest objectness."""
    found = postprocess(out, model.anchors, model.tree, image_sizes, conf, nms, model.hier, letterbox, net_size,
                        nodes=getattr(model, "nodes", None), stride=model.stride)
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
# evaluates with detect_images() (each process its part) and score() below
DATA = "joint"
TARGETS = dict(max_objects=REGION_MAX_OBJECTS, min_size=MIN_BOX_SIZE)      # data.collate: as yolov2.TARGETS


def joint_datasets(args):
    """train.py's datasets for this family -> (training stream, validation set with .nodes: the tree node of each of
    its classes). The demo (--model yolo9000-shapes, no --data): shapes_datasets. The paper's (§4):
    --data COCO (a json or a COCO folder; its classes into the tree by --coco-map coco9k.map), --imagenet a folder
    of WordNet-id folders (each a node of --tree 9k.tree), ImageNet 4:1 to COCO; validation on --val-data (default
    --data) COCO through the tree, scored objectness·Pr(node) as darknet scores a map's classes (evaluate())."""
    if args.model == "yolo9000-shapes" and args.data is None:
        return shapes_datasets(args.train_images, args.val_images, args.img_size, args.seed)
    needed = dict(data="COCO json or folder", imagenet="folder of WordNet-id folders", tree="9k.tree",
                  coco_map="coco9k.map")
    missing = [f"--{k.replace('_', '-')} ({v})" for k, v in needed.items() if getattr(args, k, None) is None]
    if missing:
        raise SystemExit(f"error: --model {args.model} trains on COCO and ImageNet together (§4); missing: "
                         + ", ".join(missing) + " (or --model yolo9000-shapes without --data: the demo)")
    augment = None if args.augment == "none" else args.augment
    return coco_imagenet(args.data, args.imagenet, args.tree, args.coco_map, args.img_size, augment, args.seed,
                         args.val_data)


@torch.no_grad()
def detect_images(model, dataset, batch_size, workers=0, indices=None):
    """The detections of dataset's images `indices` (default: all) -> {index: detections on the CPU}. Under DDP each
    process takes its part (train.py: devices.shard) and rank 0 gathers them for score()."""
    was_training, device = model.training, next(model.parameters()).device
    indices = range(len(dataset)) if indices is None else indices
    model.eval()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size, num_workers=workers,
                                         collate_fn=data.collate)
    found = []
    for images, targets in loader:
        found += [{k: v.cpu() for k, v in d.items()} for d in
                  postprocess(model(images.to(device)).float(), model.anchors, model.tree, targets["size"],
                              metrics.EVAL_CONF, EVAL_NMS, nodes=dataset.nodes, stride=model.stride)]
    model.train(was_training)
    return dict(zip(indices, found))


def score(found, dataset):
    """VOC07 mAP@0.5 on held-out detection images of every leaf (shapes_datasets' val set) or on COCO's
    validation images (coco_imagenet: its 80 classes through coco9k.map), each class scored as darknet's map path
    scores ImageNet's 200 classes: objectness·Pr(node). found: detect_images() of every image. Prints the mean over the classes that had boxes in training and over those that never had one (§4:
    "YOLO9000 gets 19.7 mAP overall with 16.0 mAP on the disjoint 156 object classes that it has never seen any
    labelled detection data for"). -> metrics.evaluate's dict, its "ap" and "curves" keyed by tree node (train.py's
    plots name them)."""
    truths = [dataset.annotation(i) for i in range(len(dataset))]
    result = metrics.evaluate([found[i] for i in range(len(dataset))], truths, protocol="voc07",
                              num_classes=len(dataset.nodes))
    ap = [result["ap"].get(k, float("nan")) for k in range(len(dataset.nodes))]
    without = getattr(dataset, "without_boxes", None)       # the demo's; COCO's validation: every class had boxes
    groups = [("classes with boxes", True), ("classes without boxes", False)] if without else [("all classes", True)]
    for title, with_boxes in groups:
        chosen = [k for k, name in enumerate(dataset.class_names) if (name in (without or ())) != with_boxes]
        scored = [ap[k] for k in chosen if ap[k] == ap[k]]                  # nan: no box of that class
        mean = sum(scored) / len(scored) if scored else float("nan")
        listed = ", ".join(f"{dataset.class_names[k]} {ap[k]:.3f}" for k in chosen[:20])
        print(f"mAP@0.5 on {title}: {mean:.4f} ({listed}{', ...' * (len(chosen) > 20)})")
    for key in ("ap", "curves"):
        result[key] = {dataset.nodes[k]: v for k, v in result[key].items()}
    return result


def evaluate(model, dataset, batch_size, workers=0):
    """score(detect_images()) in one process: every image of dataset."""
    return score(detect_images(model, dataset, batch_size, workers), dataset)


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
STREAM_CLASSIFICATION = 5       # ClassificationFolder's augmentation


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
    ImageNet's train folders are; class_names are the ids. Images are resized to img_size (darknet's resize_image),
    or with augment (a data.AUGMENTATIONS name) cropped, flipped and coloured as detection images are: DARKNET
    (data.c, d2dece3) loads the classification images of joint training with load_data_detection, like COCO's, their
    label a box of 999999s. Image i of epoch e is augmented from (seed, e, i), as data.DetectionDataset's."""

    def __init__(self, root, img_size, augment=None, seed=0):
        if augment not in (None, *AUGMENTATIONS):
            raise ValueError(f"augment must be None or one of {sorted(AUGMENTATIONS)}, got {augment!r}")
        self.augment, self.seed, self.epoch = augment, seed, 0
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

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, i):
        path, label = self.items[i]
        image, size = image_to_tensor(load_image(path, exif=True)), (self.img_size, self.img_size)
        if self.augment is None:
            image = resize_darknet(image, size)
        else:                               # no box to move: the image alone (STREAM_CLASSIFICATION: its own stream)
            rng = np.random.default_rng((self.seed, STREAM_CLASSIFICATION, self.epoch, i))
            image = AUGMENTATIONS[self.augment](image, torch.zeros(0, 4), rng, size)[0]
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


# §4 "we oversampled COCO so that ImageNet is only larger by a factor of 4:1": 4 classification images in 5
IMAGENET_SHARE = 0.8


def coco_imagenet(coco, imagenet_dir, tree_file, map_file, img_size=544, augment="yolo9000", seed=0, val_coco=None,
                  share=IMAGENET_SHARE):
    """The paper's combination -> (JointDataset, COCO validation set). COCO's class k is node map[k] of the tree
    (darknet's coco9k.map lists the 80 in COCO's category-id order, the order data.COCODataset gives its labels);
    ImageNet's folders are named by WordNet id, each a node of the tree (wordtree.node_of).
    OUR CHOICE: an epoch is one pass over the ImageNet folders; COCO, read 1 image in 5, wraps around as often as
    that takes (darknet has no epochs: 500,200 batches of 64 from one shuffled list, yolo9000.cfg)."""
    tree = wordtree.read_tree(tree_file)
    coco_nodes = wordtree.read_map(map_file, tree)
    detection = data.open_dataset(coco, img_size=img_size, augment=augment, seed=seed)
    validation = data.open_dataset(val_coco or coco, img_size=img_size)
    for name, dataset in ((coco, detection), (val_coco or coco, validation)):
        if len(dataset.class_names) != len(coco_nodes):
            raise ValueError(f"{map_file}: {len(coco_nodes)} nodes for the {len(dataset.class_names)} classes of "
                             f"{name}")
    imagenet = ClassificationFolder(imagenet_dir, img_size, augment, seed)
    try:
        imagenet_nodes = wordtree.node_of(tree, imagenet.class_names)
    except ValueError as error:
        raise ValueError(f"{imagenet_dir}: {error} ({tree_file})") from None
    length = max(len(detection), int(-(-len(imagenet) // share)))       # ceil(ImageNet images / share)
    train = JointDataset(detection, imagenet, coco_nodes, imagenet_nodes, tree["ids"], share, length)
    validation.nodes, train.tree = coco_nodes, wordtree.tree_config(tree)
    return train, validation


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


# -----------------------------------------------------------------------------
# §4 The ImageNet detection task: 200 classes, "detection data for 44 of the 200" (the abstract)

class ImageNetDetection(data.DetectionDataset):
    """ILSVRC DET validation (the ILSVRC2015 packaging): root/ILSVRC/ImageSets/DET/<split>.txt (lines
    "<image id> <index>"; without it every XML, sorted, index = position), root/ILSVRC/Annotations/DET/<split>/<id>.xml
    in VOC's format with WordNet ids as object names, images root/ILSVRC/Data/DET/<split>/<id>.JPEG. root may be
    the ILSVRC folder itself. wnids: the classes (label k = wnids[k]). blacklist: the devkit's
    data/ILSVRC2015_det_validation_blacklist.txt ("<image index> <WordNet id>" lines), optional.
    Coordinates stay as the XML has them (VOC's reader subtracts 1; undone here): darknet's
    print_imagenet_detections writes 0-based boxes, which the devkit compares with the XML's numbers as they are."""

    def __init__(self, root, wnids, split="val", img_size=544, blacklist=None):
        super().__init__(img_size)
        base = os.path.join(root, "ILSVRC") if os.path.isdir(os.path.join(root, "ILSVRC")) else root
        annotations, images = (os.path.join(base, kind, "DET", split) for kind in ("Annotations", "Data"))
        if not os.path.isdir(annotations):
            raise FileNotFoundError(f"{root}: no ILSVRC/Annotations/DET/{split} folder (ImageNet's detection "
                                    "annotations)")
        self.class_names = list(wnids)
        list_file = os.path.join(base, "ImageSets", "DET", f"{split}.txt")
        if os.path.isfile(list_file):
            with open(list_file) as f:
                listed = [(f"{list_file}:{n}", *line.split()[:2]) for n, line in enumerate(f, 1) if line.split()]
        else:
            names = sorted(n[:-4] for n in os.listdir(annotations) if n.endswith(".xml"))
            listed = [(f"{annotations}/{n}.xml", n, str(k)) for k, n in enumerate(names, 1)]
        by_index = {}
        for where, image_id, index in listed:
            xml, image = os.path.join(annotations, image_id + ".xml"), os.path.join(images, image_id + ".JPEG")
            if self.listed(where, image_id, [("annotation", xml), ("image", image)]):
                if parsed := data.parse_voc_xml(xml, self.class_names, self.problem):
                    size, objects = parsed
                    objects = [(w, [v + 1 for v in box], fields) for w, box, fields in objects]    # VOC's -1 undone
                    self.add(image, image_id, size, objects, devkit_index=int(index), blacklisted=np.zeros(0, np.int64))
                    by_index[int(index)] = self.records[-1]
        if blacklist:
            label = {wnid: k for k, wnid in enumerate(self.class_names)}
            with open(blacklist) as f:
                for n, line in enumerate(f, 1):
                    fields = line.split()
                    if len(fields) != 2 or not fields[0].isdigit() or fields[1] not in label:
                        raise ValueError(f"{blacklist}:{n}: expected '<image index> <WordNet id of a class>', found "
                                         f"{line.strip()!r}")
                    if int(fields[0]) in by_index:
                        rec = by_index[int(fields[0])]
                        rec["blacklisted"] = np.append(rec["blacklisted"], label[fields[1]])

    def annotation(self, i):
        return dict(super().annotation(i), blacklisted=torch.from_numpy(self.record(i)["blacklisted"]))


def imagenet_report(result, class_names, disjoint_classes, shown=10):
    """metrics.evaluate(protocol="ilsvrc")'s result -> (text, mAP over all classes, mAP over disjoint_classes): the
    two means (§4: "19.7 mAP overall with 16.0 mAP on the disjoint 156 object classes"), then, as Table 7 lists the
    best and worst classes, the `shown` lowest and highest AP among the disjoint ones, and all classes, best first."""
    ap = {k: v for k, v in result["ap"].items() if v == v}                  # nan: no object of that class
    mean = lambda ks: sum(ap[k] for k in ks) / len(ks) if ks else float("nan")   # noqa: E731
    scored_disjoint = [k for k in disjoint_classes if k in ap]
    ranked = sorted(ap, key=lambda k: (-ap[k], k))
    ranked_disjoint = [k for k in ranked if k in set(disjoint_classes)]
    row = lambda k: f"  {class_names[k]:<24} {100 * ap[k]:5.1f}"              # noqa: E731
    lines = [f"mAP on {len(ap)} classes: {100 * mean(list(ap)):.1f}",
             f"mAP on the {len(scored_disjoint)} classes that share no node with COCO (never a labelled box): "
             f"{100 * mean(scored_disjoint):.1f}",
             f"Table 7: the {shown} lowest of those", *[row(k) for k in ranked_disjoint[::-1][:shown]],
             f"Table 7: the {shown} highest of those", *[row(k) for k in ranked_disjoint[:shown]],
             "all classes, best first (* = shares no node with COCO)",
             *[row(k) + (" *" if k in set(disjoint_classes) else "") for k in ranked]]
    return "\n".join(lines), mean(list(ap)), mean(scored_disjoint)
