"""
YOLOv2 detector (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", arXiv:1612.08242), read as a
commentary on §2 "Better": each row of the paper's Table 2 is a named piece of this file (or of the file
named next to it). The network is built exactly as darknet's cfg files build it, so the official
.weights files load with darknet.load_darknet_weights.

Two revisions of darknet, both presets (PRESETS names each one's cfg and revision; darknet.REVISIONS gives what
that revision did: batch norm, test resizing and thresholds, smallest box, region-layer coordinate scale):
  c6afc7ff (2016-11-17, the release the paper describes; darknet keeps its cfgs as yolo-voc.2.0.cfg and
    yolo.2.0.cfg): presets yolo-voc.2.0, yolo.2.0. The passthrough is the paper's prose: 26x26x512 ->
    reorg -> 13x13x2048.
  60e952ba (2017-03-26; yolov2-voc.cfg, yolov2.cfg, what darknet's site serves today): presets yolov2-voc,
    yolov2. That commit added a 1x1 conv to 64 channels before the reorg, new k-means anchors, jitter .3
    (was .2), burn_in=1000, random=1 and 80,200 batches (VOC cfg), and the coordinate scale 2 - w·h in
    region_layer.c (loss.REGION_2017). The tiny presets are that revision's cfgs, renamed in 2018 (yolov2-tiny's
    cfg is 897c346c's, 2018-03-28, whose test path is YOLOv3's darknet).

Table 2 ("The path from YOLO to YOLOv2") -> code. Each row is a switch of build() (SWITCH_DEFAULTS: YOLOv2's), or of
training; bench/table2.py trains the columns one after another (the columns before "convolutional" are yolov1.py's).
  batch norm (§2 "Batch Normalization") ........ build(batch_norm=): darknet.ConvBlock in every conv but the last
  hi-res classifier (§2 "High Resolution Classifier")  the trunk train.py --weights starts from: darknet19_448.conv.23,
                                                  or tools/classify.py RECIPES["darknet19_448"]
  convolutional (§2 "Convolutional With Anchor Boxes": no fully connected layers) .. YOLOv2.detect, a 1x1
                                                  conv on the 13x13 map of a 416 input (STRIDE 32)
  anchor boxes (same paragraph) ................. A predictors per cell, each with its own objectness and class
                                                  probabilities (decode); the row's own box parametrisation,
                                                  x = x_a + tx·w_a, unconstrained, and its hand-picked priors:
                                                  build(location="offsets", anchors="hand-picked")
  new network (§3 "Faster", Table 6) ............ build(trunk=): "darknet19" (darknet.darknet19_trunk), or "yolov1",
                                                  YOLO's 24 convs before it; darknet.tiny_yolov2_trunk
  dimension priors (§2 "Dimension Clusters") .... kmeans_anchors(), dimension_clusters() (Figure 2); ANCHORS_*;
                                                  build(anchors=[[w, h], ...]) (vs "hand-picked")
  location prediction (§2 "Direct location prediction") .. decode(location="direct"), loss.centre_in_cell
  passthrough (§2 "Fine-Grained Features") ...... YOLOv2.forward: 26x26x512 -> reorg -> concat (c6afc7ff);
                                                  60e952ba puts a 1x1 conv to 64 before the reorg; build(passthrough=)
  multi-scale (§2 "Multi-Scale Training") ....... MULTI_SCALE_SIZES; the schedule is train.py's (--multiscale)
  hi-res detector ............................... build(name, img_size=544): the 544 x 544 row of Table 2
  not in the paper: darknet's inference ......... postprocess(): thresholds, letterbox, NMS
  §3 "Training for detection" ................... RECIPE; the family interface: build(), loss(), detections()

Output of forward: raw (N, A*(5+C), H, W), H = input height / 32; channel a*(5+C) + k, k = tx, ty, tw,
th, to, then C class logits (darknet's order). Legend: N images, A anchors, C classes, H x W grid,
P = A*H*W predictions per image, listed anchor-major (index a*H*W + row*W + col, darknet's order).
Run: python detect.py --weights yolov2-voc.weights photo.jpg   (no --model: detect.preset_of_file tells the preset
     from the file's exact size)
"""
import torch
from torch import nn

import darknet
from darknet import ConvBlock, darknet19_trunk, extraction_trunk, reorg, tiny_yolov2_trunk
from data import boxes_to_original
from loss import LOCATIONS, MIN_BOX_SIZE, REGION_MAX_OBJECTS, centre_in_cell, yolov2_loss
from metrics import batched_nms, shape_iou

# -----------------------------------------------------------------------------
# §2 "Dimension Clusters": anchor (prior) sizes, in grid cells (1 cell = 32 input pixels).
# Darknet calls them "biases" ([region] anchors=... in the cfg); we call them anchors everywhere.

ANCHORS_VOC_RELEASE = ((1.08, 1.19), (3.42, 4.41), (6.63, 11.38), (9.42, 5.11), (16.62, 10.52))  # c6afc7ff
ANCHORS_COCO_RELEASE = ((0.738768, 0.874946), (2.42204, 2.65704), (4.30971, 7.04493),     # c6afc7ff yolo.cfg
                        (10.246, 4.59428), (12.6868, 11.8741))
ANCHORS_VOC = ((1.3221, 1.73145), (3.19275, 4.00944), (5.05587, 8.09892),         # 60e952ba yolov2-voc.cfg
               (9.47112, 4.84053), (11.2364, 10.0071))
ANCHORS_COCO = ((0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434),      # 60e952ba yolov2.cfg, yolov2-tiny.cfg
                (7.88282, 3.52778), (9.77052, 9.16828))
ANCHORS_TINY_VOC = ANCHORS_VOC_RELEASE           # yolov2-tiny-voc.cfg kept the release's VOC anchors
# Table 2 "anchor boxes": "hand-picked priors" (§2 "Convolutional With Anchor Boxes", "Dimension Clusters"), as
# Faster R-CNN picked them (§3.1.1 of its paper; the 9 "Anchor Boxes [15]" of YOLOv2's Table 1): areas 128², 256²,
# 512² pixels at aspect ratios h/w = 1/2, 1, 2, on images whose shorter side is 600 pixels. Here as fractions of
# the image side, (w, h) = (s/√r, s·√r) for s in 128/600, 256/600, 512/600; hand_picked_anchors() puts them in cells.
HAND_PICKED_PRIORS = tuple((s / 600 / r ** 0.5, s / 600 * r ** 0.5) for s in (128, 256, 512) for r in (0.5, 1, 2))


def hand_picked_anchors(img_size):
    """HAND_PICKED_PRIORS in grid cells of an img_size input (img_size / STRIDE cells a side)."""
    return tuple((w * img_size / STRIDE, h * img_size / STRIDE) for w, h in HAND_PICKED_PRIORS)


STRIDE = 32                                      # input pixels per grid cell (five 2x2 max-pools)
PASSTHROUGHS = ("reorg", "conv64", "none")       # YOLOv2.__init__; "none": Table 2's columns before "passthrough"
TRUNKS = ("darknet19", "yolov1")                 # Table 2 "new network": Darknet-19, or YOLO's network before it
# §2 "Multi-Scale Training": every 10 batches the network is given a new input size drawn from
# {320, 352, ..., 608}; it is fully convolutional, so one set of weights serves every size.
MULTI_SCALE_SIZES = tuple(range(320, 608 + 1, STRIDE))

# Each preset is one darknet cfg file; "cfg" names it with the darknet commit it comes from. "passthrough":
# "reorg" (c6afc7ff: route -9, reorg, route -1,-3) or "conv64" (60e952ba: route -9, 1x1 conv to 64, reorg,
# route -1,-4). "rescore" is the cfg's [region] rescore flag (yolov2-tiny.cfg has rescore=0: its objectness
# target is 1, not the IoU); "revision" the darknet revision that made the file: its row of darknet.REVISIONS
# gives the batch norm at test time, the test path (letterbox, thresholds), the smallest training box and the
# region layer's coordinate scale (loss.yolov2_loss). "weights_bytes" is the size of the official .weights file with darknet's 16-byte
# header (version 0.1; 4 more with the 20-byte header of 0.2, see darknet.read_header), checked from the cfgs in
# tests/test_official_files.py; detect.load_model recognises a file by it.
PRESETS = {
    "yolo-voc.2.0":    dict(tiny=None,   num_classes=20, img_size=416, anchors=ANCHORS_VOC_RELEASE,
                            passthrough="reorg", rescore=True, revision="c6afc7ff", weights_bytes=268_632_452,
                            cfg="c6afc7ff yolo_voc.cfg (2016-11-17), kept as yolo-voc.2.0.cfg"),
    "yolo.2.0":        dict(tiny=None,   num_classes=80, img_size=416, anchors=ANCHORS_COCO_RELEASE,
                            passthrough="reorg", rescore=True, revision="c6afc7ff", weights_bytes=269_862_452,
                            cfg="c6afc7ff yolo.cfg (2016-11-17), kept as yolo.2.0.cfg"),
    "yolov2-voc":      dict(tiny=None,   num_classes=20, img_size=416, anchors=ANCHORS_VOC,
                            passthrough="conv64", rescore=True, revision="60e952ba", weights_bytes=202_704_260,
                            cfg="60e952ba yolo-voc.cfg (2017-03-26), renamed yolov2-voc.cfg in e84933bf"),
    "yolov2":          dict(tiny=None,   num_classes=80, img_size=608, anchors=ANCHORS_COCO,
                            passthrough="conv64", rescore=True, revision="60e952ba", weights_bytes=203_934_260,
                            cfg="60e952ba yolo.cfg (2017-03-26), renamed yolov2.cfg in e84933bf"),
    "yolov2-tiny-voc": dict(tiny="voc",  num_classes=20, img_size=416, anchors=ANCHORS_TINY_VOC,
                            rescore=True,  revision="60e952ba", weights_bytes=63_471_556,
                            cfg="60e952ba tiny-yolo-voc.cfg, renamed yolov2-tiny-voc.cfg in e84933bf"),
    "yolov2-tiny":     dict(tiny="coco", num_classes=80, img_size=416, anchors=ANCHORS_COCO,
                            rescore=False, revision="897c346c", weights_bytes=44_948_596,
                            cfg="yolov2-tiny.cfg of 897c346c (2018-03-28)"),
}


# -----------------------------------------------------------------------------
# The networks, module by module in cfg order (darknet.darknet_layers reads the weight file in
# model.modules() order, so the order of the assignments in __init__ IS the file format).

class YOLOv2(nn.Module):
    """yolo-voc.2.0.cfg / yolo.2.0.cfg (passthrough="reorg") and yolov2-voc.cfg / yolov2.cfg ("conv64"):
    Darknet-19 trunk, three 3x3x1024 convs, the passthrough, a 1x1 head. The other arguments are Table 2's
    switches (build(), SWITCH_DEFAULTS); their defaults are YOLOv2. width_divisor: every conv narrower (darknet._layers; OUR CHOICE,
    for CPU-sized runs)."""

    def __init__(self, num_classes, anchors, img_size, passthrough="conv64", batch_norm=True, trunk="darknet19",
                 width_divisor=1):
        super().__init__()
        A, C, d, bn = len(anchors), num_classes, width_divisor, batch_norm
        if passthrough not in PASSTHROUGHS or trunk not in TRUNKS or (trunk == "yolov1" and passthrough != "none"):
            raise ValueError(f"passthrough must be one of {PASSTHROUGHS} ('none' with trunk 'yolov1') and trunk one "
                             f"of {TRUNKS}, got {passthrough!r}, {trunk!r}")
        # Table 2 "batch norm" (§2 "Batch Normalization"): in every conv but the last (bn); the paper's YOLOv2 has it.
        # Table 2 "new network": Darknet-19 (§3, Table 6) without its classifier, cfg layers 0..22
        # (trunk "darknet19"), or YOLO's own 24 convs (trunk "yolov1", the columns before it): the 20 of
        # darknet.extraction_trunk and YOLOv1's four 3x3x1024, the second at stride 1, not 2 ("First we eliminate
        # one pooling layer", §2 "Convolutional With Anchor Boxes"), so that the output is at stride 32 as here.
        self.trunk, self.input_2015 = trunk, trunk == "yolov1"
        if trunk == "yolov1":
            self.stage_a = extraction_trunk(bn, d)                       # 20 convs, 1024/d channels, stride 32
            self.stage_b = nn.Sequential(*[ConvBlock(1024 // d, 1024 // d, 3, batch_norm=bn) for _ in range(4)])
            self.extra, self.passthrough, self.merge = nn.Identity(), None, nn.Identity()   # no passthrough
        else:
            self.stage_a, self.stage_b = darknet19_trunk(bn, d)          # 512/d ch at stride 16; 1024/d at 32
            # "adding on three 3 x 3 convolutional layers with 1024 filters each" (§3 "Training for
            # detection"): the first two here (cfg layers 23, 24), the third after the passthrough joins.
            self.extra = nn.Sequential(ConvBlock(1024 // d, 1024 // d, 3, batch_norm=bn),
                                       ConvBlock(1024 // d, 1024 // d, 3, batch_norm=bn))
            # Table 2 "passthrough" (§2 "Fine-Grained Features"): layer 25, [route] layers=-9, takes the
            # 26x26x512 map (layer 16). The release (c6afc7ff) reorganises it as the paper says, 26x26x512 ->
            # 13x13x2048 (layer 26), then [route] -1,-3 (27). 60e952ba shrinks it first with a 1x1 conv to 64
            # channels (layer 26), then reorg (27) to 13x13x256 and [route] -1,-4 (28). "none": the column before
            # the row "passthrough", whose third 3x3 conv takes the 13x13 map alone.
            self.passthrough = (ConvBlock(512 // d, 64 // d, 1, batch_norm=bn) if passthrough == "conv64"
                                else nn.Identity() if passthrough == "reorg" else None)
            fine_channels = {"conv64": 4 * 64 // d, "reorg": 4 * 512 // d, "none": 0}[passthrough]  # after the reorg
            self.merge = ConvBlock(fine_channels + 1024 // d, 1024 // d, 3, batch_norm=bn)   # layer 28 (c6afc7ff) or 29
        # Table 2 "convolutional" + "anchor boxes": a 1x1 conv (layer 30; 29 in c6afc7ff) predicts A x (5 + C)
        # numbers per cell, every cell of the map (YOLOv1 predicts from connected layers, yolov1.py); the next is
        # the [region] layer: decode() here, loss.yolov2_loss in training.
        self.detect = ConvBlock(1024 // d, A * (5 + C), 1, batch_norm=False, activation="linear")
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))  # (A, 2) grid cells
        self.num_classes, self.img_size = C, img_size

    def forward(self, images):                        # (N, 3, 32H, 32W), RGB in [0, 1]
        check_input_size(images)
        if self.input_2015:                           # DARKNET 2015 [crop] of YOLO's network: 2x - 1
            images = images * 2 - 1
        fine = self.stage_a(images)                   # (N, 512, 2H, 2W)  stride 16 (26x26 at 416); "yolov1": stride 32
        x = self.extra(self.stage_b(fine))            # (N, 1024, H, W)   stride 32 (13x13 at 416)
        if self.passthrough is not None:
            # darknet's reorg (stride 2) is not pixel_unshuffle: see darknet.reorg for the index order.
            p = reorg(self.passthrough(fine))         # (N, 512, 2H, 2W) -> (N, 2048, H, W) (c6afc7ff), or
                                                      # (N, 64, 2H, 2W) -> (N, 256, H, W) (60e952ba)
            x = torch.cat([p, x], dim=1)              # (N, 3072 or 1280, H, W): [route] = [reorg, main]
        x = self.merge(x)                             # (N, 1024, H, W)
        # raw: (N, A*(5+C), H, W); channel a*(5+C) + k, k = tx, ty, tw, th, to, class logits (darknet order)
        return self.detect(x)


class TinyYOLOv2(nn.Module):
    """yolov2-tiny-voc.cfg / yolov2-tiny.cfg: 9 convs, no passthrough (Tiny YOLO, not in the paper)."""

    def __init__(self, num_classes, anchors, img_size, variant):
        super().__init__()
        A, C = len(anchors), num_classes
        self.trunk = tiny_yolov2_trunk(variant)       # cfg layers 0..13: 8 convs, 6 max-pools
        self.detect = ConvBlock(self.trunk.out_channels, A * (5 + C), 1, batch_norm=False,
                                activation="linear")          # layer 14; 15 is the [region] layer
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))  # (A, 2) grid cells
        self.num_classes, self.img_size = C, img_size

    def forward(self, images):                        # (N, 3, 32H, 32W)
        check_input_size(images)
        return self.detect(self.trunk(images))        # raw (N, A*(5+C), H, W), same layout as YOLOv2


def check_input_size(images):
    if images.dim() != 4 or images.shape[1] != 3 or images.shape[2] % STRIDE or images.shape[3] % STRIDE:
        raise ValueError(f"YOLOv2 takes (N, 3, H, W) images with H and W multiples of {STRIDE}, "
                         f"got {tuple(images.shape)}")


# -----------------------------------------------------------------------------
# §2 "Direct location prediction": from the raw map to boxes, objectness and class probabilities

def decode(raw, anchors, location="direct"):
    """raw (N, A*(5+C), H, W), anchors (A, 2) in grid cells ->
    boxes (N, P, 4) normalized xyxy, objectness (N, P), class_prob (N, P, C), scores (N, P, C),
    P = A*H*W in darknet's order (anchor, row, column). As region_layer.c get_region_box.
    location "offsets" (Table 2 "anchor boxes"): bx = cx + .5 + tx·pw instead of σ(tx) + cx (loss.centre_in_cell)."""
    N, _, H, W = raw.shape
    A = anchors.shape[0]
    raw = raw.view(N, A, -1, H, W)                    # (N, A, 5+C, H, W)
    tx, ty, tw, th, to = raw[:, :, :5].unbind(2)      # each (N, A, H, W)
    cx = torch.arange(W, device=raw.device, dtype=raw.dtype).view(1, 1, 1, W)
    cy = torch.arange(H, device=raw.device, dtype=raw.dtype).view(1, 1, H, 1)
    pw = anchors[:, 0].to(raw).view(1, A, 1, 1)
    ph = anchors[:, 1].to(raw).view(1, A, 1, 1)
    # bx = (cx + σ(tx)) / W   by = (cy + σ(ty)) / H   bw = pw·exp(tw) / W   bh = ph·exp(th) / H
    # (the paper's eq. in grid cells, divided by the grid size to get fractions of the image)
    bx = (cx + centre_in_cell(tx, pw, location)) / W
    by = (cy + centre_in_cell(ty, ph, location)) / H
    bw = pw * torch.exp(tw) / W
    bh = ph * torch.exp(th) / H
    boxes = torch.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], dim=-1)  # (N, A, H, W, 4)
    # Pr(object) · IOU(b, object) = σ(to); Pr(class | object) = softmax over the C logits (softmax=1)
    objectness = torch.sigmoid(to)                                        # (N, A, H, W)
    class_prob = torch.softmax(raw[:, :, 5:], dim=2).permute(0, 1, 3, 4, 2)  # (N, A, H, W, C)
    scores = objectness.unsqueeze(-1) * class_prob    # Pr(class) · IOU, darknet's "prob"
    C = class_prob.shape[-1]
    return (boxes.reshape(N, -1, 4), objectness.reshape(N, -1),
            class_prob.reshape(N, -1, C), scores.reshape(N, -1, C))


# -----------------------------------------------------------------------------
# Inference as darknet does it (region_layer.c get_region_detections + correct_region_boxes,
# box.c do_nms_sort, image.c draw_detections / detector.c print_cocos)

def postprocess(raw, anchors, image_sizes, conf_threshold=0.24, nms_threshold=0.45, letterbox=False,
                net_size=None, order=None, location="direct"):
    """raw (N, A*(5+C), H, W) -> one dict per image {"boxes": (K, 4) xyxy pixels of the original image,
    "scores": (K,), "labels": (K,) int64}: one entry per (box, class) darknet would print.

    DARKNET (detector.c, darknet.REVISIONS): test_detector's defaults are -thresh .25 at the release (c6afc7ff),
    .24 from 2710d632 (2016-11-26), .5 with YOLOv3 (2018-03), and NMS .4 (.45 from 2018); validate_detector (the
    mAP runs) uses .005 and .45.
    image_sizes: (width, height) of each original image. letterbox=True maps boxes back from pjreddie's
    letterboxed input (correct_region_boxes); False from a plain resize to the network size (the 2016
    release, AlexeyAB's fork). net_size: the network input (width, height), default (32 W, 32 H).
    nms_threshold >= 1.0 suppresses nothing (darknet's test `IoU > thresh` cannot pass at 1).
    Detections are listed prediction by prediction (anchor, row, column), each with its classes in order, and
    NMS breaks ties in score in that order. order(keep (P,), prob (P, C)) -> indices of the kept predictions
    lists them in another order instead: tools/darknet_order.py gives darknet's, for line-by-line comparisons.
    location: decode()'s."""
    boxes, objectness, _, scores = decode(raw, anchors, location)
    H, W = raw.shape[-2:]
    net_w, net_h = net_size or (STRIDE * W, STRIDE * H)
    results = []
    for b, (img_w, img_h) in enumerate(image_sizes):
        # DARKNET get_region_detections: objectness = σ(to) if > thresh else 0, and prob[j] =
        # objectness·p(j) if > thresh else 0 — both strict, both at the same threshold.
        keep = objectness[b] > conf_threshold                              # (P,)
        prob = torch.where(keep[:, None] & (scores[b] > conf_threshold), scores[b], 0.0)  # (P, C)
        # (P, 4) pixels: plain resize, x·w and y·h; letterbox: region_layer.c correct_region_boxes
        xyxy = boxes_to_original(boxes[b], (img_w, img_h), (net_w, net_h), letterbox)
        listed = keep.nonzero().flatten() if order is None else order(keep, prob)   # (P',) indices into P
        prob, xyxy = prob[listed], xyxy[listed]
        if nms_threshold < 1.0:
            det, label = prob.nonzero(as_tuple=True)
            kept = batched_nms(xyxy[det], prob[det, label], label, nms_threshold)
            survivors = torch.zeros_like(prob, dtype=torch.bool)
            survivors[det[kept], label[kept]] = True
            prob = torch.where(survivors, prob, 0.0)
        # DARKNET draw_detections / print_*: for each det in list order, each class j with prob[j] > 0,
        # the box clipped to the image (print_cocos: [0, w] x [0, h]; NMS ran on the unclipped boxes).
        det, label = prob.nonzero(as_tuple=True)                           # row-major = the listing
        out = xyxy[det].clone()
        out[:, 0::2] = out[:, 0::2].clamp(0, img_w)
        out[:, 1::2] = out[:, 1::2].clamp(0, img_h)
        results.append({"boxes": out, "scores": prob[det, label], "labels": label.long()})
    return results


# -----------------------------------------------------------------------------
# §2 "Dimension Clusters": k-means on box shapes with d(box, centroid) = 1 - IOU(box, centroid)

def kmeans_anchors(boxes_wh, k, iterations=300, seed=0):
    """boxes_wh (M, 2) box widths and heights (any unit, e.g. fractions of the image) -> (anchors (k, 2)
    sorted by area, average IoU of each box with its closest anchor). Paper: "Euclidean distance" would let
    large boxes dominate, so the distance is 1 - IOU. Initialization (k distinct box shapes at random,
    seeded) and the stopping rule (assignments unchanged) are our choices; the paper does not give them."""
    boxes_wh = torch.as_tensor(boxes_wh, dtype=torch.float64)
    boxes_wh = boxes_wh[(boxes_wh > 0).all(1)]
    shapes = torch.unique(boxes_wh, dim=0)
    if len(shapes) < k:
        raise ValueError(f"k-means needs at least k={k} distinct box shapes of positive size, got {len(shapes)}")
    g = torch.Generator().manual_seed(seed)
    centroids = shapes[torch.randperm(len(shapes), generator=g)[:k]]
    assign = None
    for _ in range(iterations):
        new_assign = shape_iou(boxes_wh, centroids).argmax(1)            # nearest = highest IoU
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        count = torch.bincount(assign, minlength=k).to(boxes_wh)         # (k,)
        total = torch.zeros_like(centroids).index_add_(0, assign, boxes_wh)
        centroids = torch.where(count[:, None] > 0, total / count.clamp(min=1)[:, None], centroids)
    mean_iou = shape_iou(boxes_wh, centroids).max(1).values.mean().item()
    return centroids[(centroids[:, 0] * centroids[:, 1]).argsort()], mean_iou


def dimension_clusters(dataset, img_size, seed=0, progress=None):
    """print_dimension_clusters() on the boxes of a dataset (train.py --kmeans): every dataset.annotation(i), boxes
    as fractions of their image, anchors in cells of an img_size input. progress: None (silent) or train.py's
    tools.progress.Progress, for both loops."""
    wh, indices = [], range(len(dataset))
    for i in indices if progress is None else progress(indices, desc="reading the boxes", unit="images"):
        a = dataset.annotation(i)
        boxes, (width, height) = torch.as_tensor(a["boxes"], dtype=torch.float64).view(-1, 4), a["size"]
        wh.append(torch.stack([(boxes[:, 2] - boxes[:, 0]) / width, (boxes[:, 3] - boxes[:, 1]) / height], 1))
    wh, grid = torch.cat(wh), img_size // STRIDE                        # (M, 2) fractions of the image
    print(f"{len(wh)} boxes of {len(dataset)} training images; anchors for a {img_size} input ({grid} x {grid} grid)")
    print_dimension_clusters(wh, grid=grid, seed=seed, progress=progress)


def print_dimension_clusters(boxes_wh, ks=range(1, 10), grid=13, seed=0, progress=None):
    """Figure 2, as text: for each k, the average IoU with the closest centroid and the anchors in grid
    cells (boxes_wh as fractions of the image; grid = 13 for 416 inputs). The paper picks k = 5. The lines come
    at the end, after any progress line."""
    lines = []
    for k in ks if progress is None else progress(ks, desc=f"k-means, k = {ks[0]}..{ks[-1]}", unit="runs"):
        anchors, mean_iou = kmeans_anchors(boxes_wh, k, seed=seed)
        cells = ", ".join(f"{w * grid:.3f},{h * grid:.3f}" for w, h in anchors.tolist())
        lines.append(f"k={k}  avg IoU {100 * mean_iou:5.1f}%  anchors {cells}")
    print("\n".join(lines))


# -----------------------------------------------------------------------------
# The family interface: yolov1.py has the same names, so train.py and detect.py never branch on the family

RECIPE = dict(  # YOLOv2 §3 "Training for detection"; train.py turns the names into an optimizer and a schedule
    model="yolov2-voc", optimizer="sgd", epochs=160, momentum=0.9, weight_decay=5e-4, dropout=0.0,  # no dropout
    batch_size=64,                      # DARKNET yolov2-voc.cfg (batch=64); the paper does not say
    schedule="yolov2", lr=1e-3, lr_steps=[60, 90],
    burn_in=1000,                       # DARKNET yolov2-voc.cfg burn_in=1000 (power 4, parser.c default)
    img_size=416, augment=darknet.REVISIONS[PRESETS["yolov2-voc"]["revision"]]["augment"],   # its data.c
    multiscale=True,                    # ("yolov2": the release's crop at 60e952ba's jitter .3)
    eval_every=5)                       # ours: evaluate every 5 epochs
# The release's presets train with their own cfgs' values where RECIPE takes 60e952ba's (train.RECIPES holds
# them by preset name, so `train.py --model yolo-voc.2.0` picks its own): DARKNET yolo-voc.2.0.cfg (c6afc7ff) has
# no burn_in (60e952ba added it) but policy=steps from learning_rate=.0001, times 10 at batch 100: 1e-4 for the
# first 100 batches; jitter=.2 (60e952ba: .3). The paper's 160 epochs, 1e-3, /10 at 60 and 90 stay: the cfg's
# steps 25000, 35000 and max_batches 45000 (batches of 64) are ~97, ~135 and ~174 epochs of VOC 07+12 (16,551
# images). Its random=0 would train at 416 only; multi-scale stays on, as §2 "Multi-Scale Training" describes.
RELEASE_RECIPE = dict(RECIPE, model="yolo-voc.2.0", burn_in=100, warmup_lr=1e-4,
                      augment=darknet.REVISIONS[PRESETS["yolo-voc.2.0"]["revision"]]["augment"])
PRESET_RECIPES = {"yolo-voc.2.0": RELEASE_RECIPE, "yolo.2.0": dict(RELEASE_RECIPE, model="yolo.2.0")}
# DARKNET detector.c: each preset's test thresholds and resizing are its revision's (darknet.REVISIONS, read by
# detect.test_thresholds: the release c6afc7ff -thresh .25, nms .4, resize_image; 60e952ba .24, .4, letterbox_image;
# 897c346c .5, .45, letterbox_image). TEST_THRESHOLDS serve a network without a revision. validate_detector writes
# its results after NMS .45 (metrics.EVAL_CONF: at .005).
TEST_THRESHOLDS = dict(conf=0.24, nms=0.4)
DATA = "detection"             # train.py: trains on images with boxes (VOC, COCO, the synthetic shapes)
EVAL_NMS = 0.45
# train.py's data.collate: the boxes darknet's region layer reads (loss.py), kept in the loader's workers
TARGETS = dict(max_objects=REGION_MAX_OBJECTS, min_size=MIN_BOX_SIZE)


# Table 2's switches, the arguments of build() beyond the preset's, each acting where its row is named: batch_norm
# (YOLOv2.__init__), trunk ("new network", YOLOv2.__init__), anchors ("hand-picked" = the row "anchor boxes",
# hand_picked_anchors(); a k-means result = "dimension priors", kmeans_anchors()), location ("direct" = "location
# prediction", or "offsets", loss.centre_in_cell), passthrough ("none" before the row "passthrough"). The rows
# "multi-scale" (train.py --multiscale, MULTI_SCALE_SIZES) and "hi-res detector" (evaluating at 544, img_size) are
# not the network's; "hi-res classifier" is the trunk it starts from (tools/classify.py, RECIPES["darknet19_448"]).
SWITCH_DEFAULTS = dict(batch_norm=True, trunk="darknet19", width_divisor=1, anchors=None, location="direct")


def build(preset, num_classes=None, img_size=None, batch_norm=None, trunk=None, width_divisor=None, anchors=None,
          location=None, passthrough=None):
    """The preset (a darknet cfg name, see PRESETS); num_classes / img_size override the cfg's, and so does each of
    Table 2's switches given (SWITCH_DEFAULTS): anchors "hand-picked" or ((w, h), ...) in grid cells. model.config
    holds the arguments that rebuild it (checkpoints store it: detect.py needs nothing else)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown YOLOv2 preset {preset!r}; choose one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    config = dict(family="yolov2", preset=preset, num_classes=num_classes or p["num_classes"],
                  img_size=img_size or p["img_size"])
    if config["img_size"] % STRIDE:
        raise ValueError(f"img_size must be a multiple of {STRIDE}, got {config['img_size']}")
    switches = {k: v for k, v in dict(batch_norm=batch_norm, trunk=trunk, width_divisor=width_divisor,
                                      anchors=anchors, location=location, passthrough=passthrough).items()
                if v is not None}
    if p["tiny"] and switches:
        raise ValueError(f"{preset} takes none of Table 2's switches, got {sorted(switches)}")
    if anchors == "hand-picked":      # in cells of this input size; stored resolved, so that a rebuild keeps them
        switches["anchors"] = hand_picked_anchors(config["img_size"])
    if switches.get("location", "direct") not in LOCATIONS:
        raise ValueError(f"location must be one of {LOCATIONS}, got {location!r}")
    config.update({k: [list(a) for a in v] if k == "anchors" else v for k, v in switches.items()})
    options = {**SWITCH_DEFAULTS, "passthrough": p.get("passthrough"), **switches}
    if p["tiny"]:
        model = TinyYOLOv2(config["num_classes"], p["anchors"], config["img_size"], p["tiny"])
    else:
        model = YOLOv2(config["num_classes"], options.pop("anchors") or p["anchors"], config["img_size"],
                       **{k: v for k, v in options.items() if k != "location"})
    model.preset, model.rescore, model.config = preset, p["rescore"], config
    model.region = model.revision = p["revision"]    # the region layer's revision is the file's
    darknet.use_revision(model, p["revision"])       # batch norm at test time and its running averages
    model.location = options["location"]
    return model


def loss(model, out, targets, seen):
    """Darknet's region layer (loss.yolov2_loss) for the raw map out, with the model's anchors, rescore,
    region-layer revision (the preset's) and location parametrisation (Table 2's switch)."""
    return yolov2_loss(out, targets, model.anchors, seen, rescore=model.rescore, region=model.region,
                       location=model.location)


def detections(model, out, image_sizes, conf, nms, letterbox=False, net_size=None, order=None):
    """postprocess() with the model's anchors and location parametrisation, each dict with its "grid" (H, W)."""
    found = postprocess(out, model.anchors, image_sizes, conf, nms, letterbox, net_size, order, model.location)
    return [dict(d, grid=tuple(out.shape[2:])) for d in found]
