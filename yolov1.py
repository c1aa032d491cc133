"""
YOLOv1 network and inference (Redmon et al., "You Only Look Once: Unified, Real-Time Object Detection",
arXiv:1506.02640), and every official darknet YOLOv1 network. The loss, eq. (3), is loss.yolov1_loss.

Paper -> code
  §2    Unified detection: S x S grid, B boxes and C class probabilities per cell ..... S, B, C; YOLOv1.forward
  §2.1  Network design, Fig. 3: 24 conv (the first 20 = darknet.extraction_trunk) + 2 FC ... PRESETS["yolov1"]
  §2.1  Fast YOLO: 9 conv layers instead of 24, fewer filters ............... PRESETS["yolo-tiny.2015-11"]
  §2.2  Leaky ReLU (eq. 2) everywhere but the last layer; dropout .5 after the 1st FC .. YOLOv1.forward
  §2.2  x, y: offsets in the cell; w, h: relative to the image, predicted as square roots .. split_output()
  §2.3  Inference: class-specific scores (§2, eq. 1), then non-maximum suppression ... decode(), postprocess()
  darknet: the 2015 cfgs' [crop] input range 2x - 1; the later cfgs' [0, 1] ......... RANGE_CROP_2015, RANGE_01
  darknet's later networks, after the paper's: yolov1.cfg ([local], B = 3), yolov1-tiny.cfg, 2015's yolo-small
     .................................................................. PRESETS.update (one line of provenance each)
  darknet: its detection layer's output order <-> ours (.weights files) ............ darknet_output_permutation()
  ours: the synthetic demo preset with a conv head; YOLOv1 on a torchvision ResNet .. "yolov1-shapes", ResNetYOLOv1
  §2.2  the training recipe; the family interface train.py and detect.py call ........ RECIPE, build(), loss(),
                                                                                         detections()

Output of the network: (N, S, S, B*5 + C), indexed [image, row i (y cell), column j (x cell)]; per cell
B x [x, y, sqrt(w), sqrt(h), confidence], then C class probabilities (every official file has [detection]
sqrt=1). split_output() reads this layout for every function here, which use its named tensors; loss.yolov1_loss
reads it once more, with the same names, because loss.py may not import this file (this file imports loss.py).

Legend: N images, S grid side, B boxes per cell, C classes.
Run:    python train.py --model yolov1-shapes        python detect.py --weights CKPT photo.jpg
"""
import functools

import torch
import torch.nn as nn

import darknet
import metrics
from loss import yolov1_loss

# -----------------------------------------------------------------------------
# §2, §2.1 constants (PASCAL VOC setting)

S, B, C = 7, 2, 20      # grid side, boxes per cell, classes: a 7 x 7 x 30 output
IMG_SIZE = 448          # §2.2: "increase the input resolution of the network from 224 x 224 to 448 x 448"
DROPOUT = 0.5           # §2.2: "A dropout layer with rate = .5 after the first connected layer"

# Input range, the image's [0, 1] mapped to [lo, hi] by the network itself (YOLOv1.forward).
# DARKNET, not in the paper: the 2015 cfgs (history/*.2015-11.cfg) start with a [crop] layer, whose
# forward_crop_layer (crop_layer.c, 6103ecc4 and still f6afaab) writes input·2 - 1 at train and test time unless
# noadjust=1 (none of them sets it): their weights, extraction.conv.weights included, expect [-1, 1].
# Darknet's cfgs from 2016 on (yolov1.cfg, yolov1-tiny.cfg) have no [crop]: [0, 1] as loaded.
RANGE_01 = (0.0, 1.0)
RANGE_CROP_2015 = (-1.0, 1.0)

# -----------------------------------------------------------------------------
# §2.1 The paper's networks, as layer lists for one builder (YOLOv1 below)

# Convolutional layers as (filters, size, stride), "M" = 2x2/2 max-pool, "extraction" = the 20 conv layers
# darknet.extraction_trunk builds (stride 32, 1024 channels: 448 -> 14 x 14).
EXTRACTION_STRIDE, EXTRACTION_CHANNELS = 32, 1024

# Fig. 3, §2.2: on the 20 pretrained layers "we add four convolutional layers and two fully connected layers":
# 3x3x1024, 3x3x1024 stride 2, 3x3x1024, 3x3x1024 (darknet's 2015 cfg/yolo.cfg the same).
YOLOV1_CONVS = ["extraction", (1024, 3, 1), (1024, 3, 2), (1024, 3, 1), (1024, 3, 1)]

# §2.1 Fast YOLO: "fewer convolutional layers (9 instead of 24) and fewer filters in those layers": nine 3x3
# convs, six max-pools, no batch norm (darknet's 2015 yolo-tiny.cfg), then connected 256 (linear) -> 4096 (leaky)
# -> dropout -> output. DARKNET, not in the paper: the linear 256-unit connected layer before the 4096 one (the
# paper says Fast YOLO differs from YOLO only in its conv layers).
FAST_YOLO_CONVS = [(16, 3, 1), "M", (32, 3, 1), "M", (64, 3, 1), "M", (128, 3, 1), "M",
                   (256, 3, 1), "M", (512, 3, 1), "M", (1024, 3, 1), (1024, 3, 1), (1024, 3, 1)]

# A preset, in darknet cfg order after the convs:
#   head "fc": [bottleneck: connected, bottleneck_act] -> [local: 3x3 locally connected, leaky] -> [hidden:
#     connected, leaky] -> [dropout .5 if dropout] -> connected to S*S*(B*5+C), linear;
#   head "conv": a 1x1 convolution on the S x S map (below). batch_norm: in every conv; input_range: RANGE_01 or
#   RANGE_CROP_2015; bn_momentum: ours (the demos).
# A preset with an official darknet file also has: cfg (the darknet cfg and commit it follows), revision (the
# darknet revision that made the file: darknet.REVISIONS gives its batch norm, test thresholds, resizing, data path),
# weights_bytes (the file's exact size with a 16-byte header), header_2015 (2015's header: connected weights stored
# transposed).
FC = dict(head="fc", bottleneck=None, bottleneck_act="linear", local=None, hidden=4096, dropout=True,
          input_range=RANGE_01, img_size=IMG_SIZE, S=S, B=B, C=C)
PRESETS = {
    # the paper's network, Fig. 3
    "yolov1": dict(FC, convs=YOLOV1_CONVS, batch_norm=False, input_range=RANGE_CROP_2015,
                   cfg="yolo.cfg, 6103ecc4 (2015-11-09)", revision="6103ecc4", weights_bytes=1_086_814_216,
                   header_2015=True),
    # Fast YOLO, §2.1
    "yolo-tiny.2015-11": dict(FC, convs=FAST_YOLO_CONVS, batch_norm=False, bottleneck=256,
                              input_range=RANGE_CROP_2015, cfg="yolo-tiny.cfg, eaf033c0 (2015-11-09)",
                              revision="eaf033c0", weights_bytes=180_357_512, header_2015=True),
}

def conv_stride(spec):
    """Total stride of a spec list (see YOLOV1_CONVS): 64 for the paper's net and Fast YOLO, 16 for yolov1-shapes."""
    stride = 1
    for item in spec:
        stride *= EXTRACTION_STRIDE if item == "extraction" else 2 if item == "M" else item[2]
    return stride


def make_conv_layers(spec, batch_norm, width_divisor=1):
    """Layers of a spec list (see YOLOV1_CONVS) -> (nn.Sequential, output channels, total stride).
    width_divisor: filters // width_divisor in every conv (darknet._layers; OUR CHOICE, for CPU-sized runs)."""
    layers, channels, stride = [], 3, 1
    for item in spec:
        if item == "extraction":
            layers.append(darknet.extraction_trunk(batch_norm, width_divisor))
            channels, stride = EXTRACTION_CHANNELS // width_divisor, stride * EXTRACTION_STRIDE
        elif item == "M":
            layers.append(darknet.maxpool(2, 2))
            stride *= 2
        else:
            filters, size, conv_stride = item
            filters //= width_divisor
            layers.append(darknet.ConvBlock(channels, filters, size, conv_stride, batch_norm=batch_norm))
            channels, stride = filters, stride * conv_stride
    return nn.Sequential(*layers), channels, stride


# -----------------------------------------------------------------------------
# §2.1 Network design

class YOLOv1(nn.Module):
    """Input range, conv layers, then the head, viewed as (N, S, S, B*5+C).

    head "fc" (the paper and darknet's cfgs): the layers of PRESETS' comment, the last a linear connected layer to
    S*S*(B*5+C). It is sized for one input size: the conv map is (img_size / stride)^2 cells
    (stride 64: 448 -> 7 x 7), and the first connected layer takes all of it. S does not depend on the input size.
    head "conv" (ours, yolov1-shapes): a linear 1x1 conv on the conv map, whose side must then be S.
    Layers are registered in darknet cfg order, so darknet.darknet_layers() lists them as a .weights file stores
    them: each official preset loads its darknet file (PRESETS' weights_bytes), and extraction.conv.weights loads
    with prefix_ok=True into the first 20 convs of "yolov1".
    """

    def __init__(self, preset, num_classes, batch_norm, img_size, S, B, width_divisor=1):
        super().__init__()
        cfg = PRESETS[preset]
        self.preset, self.num_classes, self.batch_norm = preset, num_classes, batch_norm
        self.img_size, self.S, self.B, self.head_type = img_size, S, B, cfg.get("head", "fc")
        self.input_range = cfg["input_range"]
        self.features, channels, stride = make_conv_layers(cfg["convs"], batch_norm, width_divisor)
        # batch norm at test time and its running averages as darknet had them at the file's revision
        self.revision = cfg.get("revision")
        if self.revision:
            darknet.use_revision(self, self.revision, cfg.get("bn_momentum"))
        for module in self.features.modules():
            if isinstance(module, nn.BatchNorm2d) and cfg.get("bn_momentum") is not None:
                module.momentum = cfg["bn_momentum"]
        if img_size % stride:
            raise ValueError(f"{preset}: img_size {img_size} is not a multiple of the network stride {stride}")
        side = self.feature_side = img_size // stride
        if self.head_type == "conv":
            if side != S:
                raise ValueError(f"{preset}: the conv head needs img_size = S x stride = {S} x {stride}; "
                                 f"got img_size {img_size}")
            # (N, channels, S, S) -> (N, B*5+C, S, S): darknet's [convolutional] size=1, linear, as YOLOv2's last
            self.head = darknet.ConvBlock(channels, B * 5 + num_classes, 1, batch_norm=False, activation="linear")
            return
        self.bottleneck = self.local = self.fc1 = None
        self.bottleneck_act = cfg["bottleneck_act"]
        in_features = channels * side * side                            # e.g. 1024 * 7 * 7 = 50176
        if cfg["bottleneck"]:                                           # 2015: Fast YOLO 256 linear, small 512 leaky
            self.bottleneck = nn.Linear(in_features, cfg["bottleneck"])
            in_features = cfg["bottleneck"]
        if cfg["local"]:                                                # yolov1.cfg: [local] 3x3, 256 filters
            self.local = darknet.LocalLayer(channels, cfg["local"], 3, side, side, activation="leaky")
            in_features = cfg["local"] * self.local.out_h * self.local.out_w
        if cfg["hidden"]:                                               # the paper: connected 4096, leaky
            self.fc1 = nn.Linear(in_features, cfg["hidden"] // width_divisor)
            in_features = cfg["hidden"] // width_divisor
        self.dropout = nn.Dropout(DROPOUT) if cfg["dropout"] else nn.Identity()
        self.fc2 = nn.Linear(in_features, S * S * (B * 5 + num_classes))
        self.fc2.darknet_permutation = darknet_output_permutation(S, B, num_classes)   # for .weights files

    def forward(self, images):
        lo, hi = self.input_range
        if (lo, hi) != RANGE_01:
            images = images * (hi - lo) + lo        # DARKNET 2015 [crop]: 2x - 1 (RANGE_CROP_2015)
        x = self.features(images)                   # (N, channels, side, side), side = img_size / stride
        if x.shape[-2:] != (self.feature_side, self.feature_side):
            raise ValueError(f"{self.preset} was built for {self.img_size} x {self.img_size} inputs "
                             f"(img_size); got {images.shape[-2]} x {images.shape[-1]}")
        if self.head_type == "conv":
            x = self.head(x)                        # (N, B*5+C, S, S), linear
            return x.permute(0, 2, 3, 1).contiguous()   # (N, S, S, B*5+C): the same layout as the FC head
        if self.local is not None:
            x = self.local(x)                       # (N, 256, side, side), leaky, unshared 3x3 filters
        x = x.flatten(1)                            # (N, channels*side*side), darknet's (C, H, W) order
        if self.bottleneck is not None:             # (N, 256) linear (2015 Fast YOLO), (N, 512) leaky (2015 small)
            x = darknet.act(self.bottleneck(x), self.bottleneck_act)
        if self.fc1 is not None:
            x = darknet.act(self.fc1(x), "leaky")   # (N, hidden), leaky (eq. 2)
        x = self.fc2(self.dropout(x))               # (N, S*S*(B*5+C)), linear (§2.2)
        # (N, S, S, B*5+C): per cell B x [x y sqrt(w) sqrt(h) conf], then C class probabilities
        return x.view(-1, self.S, self.S, self.B * 5 + self.num_classes)


# -----------------------------------------------------------------------------
# Not the paper: YOLOv1's head on a torchvision ResNet (train.py --backbone)

class ResNetYOLOv1(nn.Module):
    """YOLOv1 on a torchvision ResNet trunk, as several re-implementations do to skip ImageNet pre-training.
    NOT the paper: the head pools the stride-32 map to S x S, then a 1x1 conv to 256 channels and the paper's two
    connected layers. Output (N, S, S, B*5+C). pretrained: fetch torchvision's ImageNet weights if possible (train.py);
    False for a model about to load a checkpoint (detect.py). .weights_note says which weights it started from.
    torchvision is imported here only: the rest of the project does not need it."""

    def __init__(self, backbone, num_classes, img_size, S=S, B=B, pretrained=True):
        super().__init__()
        try:
            import torchvision
        except ImportError:
            raise ImportError(f"a YOLOv1 on {backbone} needs torchvision, which is not installed "
                              "(pip install torchvision)") from None
        trunk, self.weights_note = None, f"{backbone}: random weights"
        if pretrained:
            try:
                trunk = getattr(torchvision.models, backbone)(weights="DEFAULT")
                self.weights_note = f"{backbone}: ImageNet weights from torchvision"
            except Exception as error:  # no network and no cached file: the weights cannot be fetched
                self.weights_note = f"{backbone}: random weights (ImageNet weights unavailable: {error})"
        if trunk is None:
            trunk = getattr(torchvision.models, backbone)(weights=None)
        channels = trunk.fc.in_features                              # 512 (resnet18) or 2048 (resnet50)
        self.features = nn.Sequential(*list(trunk.children())[:-2])  # (N, channels, H/32, W/32)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(S), nn.Conv2d(channels, 256, 1), nn.LeakyReLU(darknet.LEAKY_SLOPE),  # (N, 256, S, S)
            nn.Flatten(), nn.Linear(256 * S * S, 4096), nn.LeakyReLU(darknet.LEAKY_SLOPE),
            nn.Dropout(DROPOUT), nn.Linear(4096, S * S * (B * 5 + num_classes)))   # (N, S*S*(B*5+C))
        self.preset, self.num_classes, self.img_size = f"yolov1+{backbone}", num_classes, img_size
        self.S, self.B, self.batch_norm, self.input_range = S, B, True, RANGE_01
        self.revision = None                                         # no darknet file

    def forward(self, images):
        x = self.head(self.features(images))
        return x.view(-1, self.S, self.S, self.B * 5 + self.num_classes)   # (N, S, S, B*5+C)


# -----------------------------------------------------------------------------
# The output layout, read in one place

def split_output(pred, B=B):
    """(N, S, S, B*5+C) -> named tensors:
    xy (N, S, S, B, 2): box centre offset in its cell, [0, 1] from the cell's top-left corner (§2.2);
    sqrt_wh (N, S, S, B, 2): square roots of width and height, relative to the image (§2.2);
    conf (N, S, S, B): Pr(Object) * IOU(truth, pred) (§2); class_prob (N, S, S, C): Pr(Class_i | Object)."""
    N, S = pred.shape[:2]
    boxes = pred[..., : B * 5].reshape(N, S, S, B, 5)          # (N, S, S, B, 5)
    return {"xy": boxes[..., 0:2], "sqrt_wh": boxes[..., 2:4], "conf": boxes[..., 4],
            "class_prob": pred[..., B * 5:]}


def darknet_output_permutation(S=S, B=B, C=C):
    """Index tensor perm with ours = darknet[perm], for one image's flat output of S*S*(B*5+C) values.

    DARKNET (detection_layer.c): the flat output holds first all S*S*C class probabilities (cell by cell),
    then all S*S*B confidences, then all S*S*B*4 box coordinates x, y, sqrt(w), sqrt(h):
        class  c of cell i:       i*C + c
        confidence of box j:      S*S*C + i*B + j
        coordinate k of box j:    S*S*(C+B) + (i*B + j)*4 + k
    with cell i = row*S + column, as ours. YOLOv1 sets it as fc2.darknet_permutation, so that
    darknet.load_darknet_weights takes rows perm of the last connected layer's weights and biases, and
    save_darknet_weights writes them back in darknet's order.
    """
    arange = functools.partial(torch.arange, device="cpu")   # an index of the file layout, never on a device
    cell = arange(S * S).view(S * S, 1, 1)                                   # (S*S, 1, 1)
    box = arange(B).view(1, B, 1)                                             # (1, B, 1)
    coords = S * S * (C + B) + (cell * B + box) * 4 + arange(4)               # (S*S, B, 4)
    conf = S * S * C + cell * B + box                                         # (S*S, B, 1)
    boxes = torch.cat([coords, conf], dim=2).view(S * S, B * 5)               # (S*S, B*5) ours per cell
    classes = cell.view(S * S, 1) * C + arange(C)                             # (S*S, C)
    return torch.cat([boxes, classes], dim=1).view(-1)                        # (S*S*(B*5+C),)


# -----------------------------------------------------------------------------
# §2.3 Inference: from the output grid to boxes in pixels

def decode(pred, B=B):
    """(N, S, S, B*5+C) -> boxes (N, S*S*B, 4) normalized xyxy, scores (N, S*S*B, C) class-specific (eq. 1).
    Predictions are listed cell by cell (row, then column), then box by box, as darknet lists them.
    This is darknet's get_detection_detections (detection_layer.c, f6afaab; convert_yolo_detections in 2015's
    yolo.c, 6103ecc4): the same arithmetic, pow(·, 2) for w and h (sqrt=1 in every official cfg)."""
    N, S = pred.shape[:2]
    out = split_output(pred, B)
    # §2.2: x, y are offsets in cell (row i, column j); w, h are predicted as square roots
    #   centre x = (j + x) / S    centre y = (i + y) / S    w = sqrt(w)^2    h = sqrt(h)^2
    j = torch.arange(S, device=pred.device, dtype=pred.dtype).view(1, 1, S, 1)      # (1, 1, S, 1) column
    i = torch.arange(S, device=pred.device, dtype=pred.dtype).view(1, S, 1, 1)      # (1, S, 1, 1) row
    cx = (j + out["xy"][..., 0]) / S                                                # (N, S, S, B)
    cy = (i + out["xy"][..., 1]) / S
    wh = out["sqrt_wh"] ** 2                                                        # (N, S, S, B, 2)
    boxes = metrics.xywh_to_xyxy(torch.stack([cx, cy, wh[..., 0], wh[..., 1]], dim=-1))  # (N, S, S, B, 4)
    # eq. 1: Pr(Class_i | Object) * Pr(Object) * IOU = Pr(Class_i) * IOU
    scores = out["class_prob"].unsqueeze(3) * out["conf"].unsqueeze(4)              # (N, S, S, B, C)
    return boxes.reshape(N, -1, 4), scores.reshape(N, -1, scores.shape[-1])   # (N, S*S*B, 4), (N, S*S*B, C)


def postprocess(pred, image_sizes, conf_threshold=0.2, nms_threshold=0.5, B=B):
    """(N, S, S, B*5+C) -> one dict per image: "boxes" (K, 4) pixels xyxy of the original image, "scores" (K,),
    "labels" (K,) int64, in decreasing score. image_sizes: (width, height) per image.

    Each (box, class) pair whose eq. 1 score is above conf_threshold is a candidate (darknet:
    `prob > thresh`); class-wise NMS suppresses IoU > nms_threshold; nms_threshold >= 1 keeps everything.
    Boxes are clipped to the image after NMS, as darknet's yolo.c does when it writes results.
    Darknet's defaults (darknet.REVISIONS, by the preset's revision): conf .2 and NMS .5 for `yolo test` up to
    6b38dcdc (.4 from c6afc7ff), conf .001 and NMS .5 for `yolo valid`."""
    boxes, scores = decode(pred.detach(), B)                # (N, S*S*B, 4), (N, S*S*B, C)
    results = []
    for n, (width, height) in enumerate(image_sizes):
        scale = boxes.new_tensor([width, height, width, height])
        box_index, labels = torch.nonzero(scores[n] > conf_threshold, as_tuple=True)    # (K,), (K,)
        det_boxes, det_scores = boxes[n, box_index] * scale, scores[n, box_index, labels]
        if nms_threshold < 1.0:
            keep = metrics.batched_nms(det_boxes, det_scores, labels, nms_threshold)
        else:
            keep = torch.sort(det_scores, descending=True, stable=True).indices
        det_boxes = det_boxes[keep]
        det_boxes[:, 0::2] = det_boxes[:, 0::2].clamp(0, width)
        det_boxes[:, 1::2] = det_boxes[:, 1::2].clamp(0, height)
        results.append({"boxes": det_boxes, "scores": det_scores[keep], "labels": labels[keep]})
    return results


# -----------------------------------------------------------------------------
# Darknet's later YOLOv1 networks: the same builder, other layer lists (one line of provenance each; the README's
# revision table has their history and file sizes)

# yolov1-tiny.cfg (tiny-yolo.cfg of 6b38dcdc, 2016-09-07): 8 convs with batch norm, six max-pools, one connected.
TINY_YOLOV1_CONVS = [(16, 3, 1), "M", (32, 3, 1), "M", (64, 3, 1), "M", (128, 3, 1), "M",
                     (256, 3, 1), "M", (512, 3, 1), "M", (1024, 3, 1), (256, 3, 1)]

# OUR CHOICE, for the synthetic default of train.py on 2 CPU cores: Fast YOLO's pattern (3x3 conv + 2x2
# max-pool, filters doubling) cut to 6 convs, max 256 filters, at 112 x 112 (stride 16 -> a 7 x 7 map = the S x S
# grid), with batch norm (to train from scratch, without ImageNet pre-training). The first conv has stride 2, as
# the paper's first layer does (Fig. 3: 7x7x64-s-2), instead of a conv at the full 112 x 112 then a max-pool:
# the same weights, a quarter of that layer's pixels, and no batch norm, leaky ReLU and max-pool over
# 32 x 16 x 112 x 112 values, which took a large part of the step. The training step is about 1.2x faster in
# float32 and in bfloat16 (2 cores), and the synthetic default reaches the same mAP (README, Results). Cutting
# further (a max-pool after it, the 32-filter conv at 28 x 28) fell short of 0.9 (0.8999) with a third more images.
# Its batch norm keeps running statistics with torch's momentum 0.1, not darknet's 0.01: after a few hundred
# steps darknet's average still holds 0.99^200 = 13% of its initial values, far from the data (README, departures).
SHAPES_CONVS = [(16, 3, 2), (32, 3, 1), "M", (64, 3, 1), "M", (128, 3, 1), "M", (256, 3, 1), (256, 3, 1)]

PRESETS.update({
    # darknet's tiny-yolov1.weights (yolov1-tiny.cfg)
    "yolov1-tiny": dict(FC, convs=TINY_YOLOV1_CONVS, batch_norm=True, hidden=None, dropout=False,
                        cfg="yolov1-tiny.cfg, 6b38dcdc (2016-09-07)", revision="6b38dcdc", weights_bytes=108_399_816,
                        header_2015=False),
    # yolo-small.weights of 2015: yolo-small.cfg of ea451100 ("changed yolo-small", 2015-11-09, an hour after
    # 6103ecc4; = history/yolo-small.2015-11.cfg): the paper's 24 convs, connected 512 leaky, 4096 leaky, dropout,
    # 1470 linear, num=2, sqrt=1, [crop]. (The ramp / stride-2 / 1225-logistic cfg before it matches no served file.)
    "yolo-small.2015-11": dict(FC, convs=YOLOV1_CONVS, batch_norm=False, bottleneck=512, bottleneck_act="leaky",
                               input_range=RANGE_CROP_2015, cfg="yolo-small.cfg, ea451100 (2015-11-09)",
                               revision="ea451100", weights_bytes=375_881_736, header_2015=True),
    # yolov1.weights as served today (yolov1.cfg): the 24 convs with batch norm, [local] 3x3x256, dropout,
    # connected 7·7·(3·5 + 20) = 1715: B = 3, no 4096-unit layer
    "yolov1-local": dict(FC, convs=YOLOV1_CONVS, batch_norm=True, local=256, hidden=None, B=3,
                         cfg="yolov1.cfg, aebe9377 (2016-08-11) to f6afaab", revision="aebe9377",
                         weights_bytes=789_312_988, header_2015=False),
    # yolov1.weights as served in 2017: the same with output=1470, num=2 (in no darknet commit; the cfg's arithmetic).
    # OUR CHOICE: its revision is taken as aebe9377's, the network's (no commit says when the file was trained; any
    # 2016 revision has the same batch norm at test, and only yolo.c's NMS, .4 from c6afc7ff, would differ)
    "yolov1-local.2017": dict(FC, convs=YOLOV1_CONVS, batch_norm=True, local=256, hidden=None,
                              cfg="yolov1.cfg with output=1470, num=2", revision="aebe9377", weights_bytes=777_018_888,
                              header_2015=False),
    # OUR CHOICE, not the paper (§2.1 uses two FC layers): "yolov1-shapes" has a convolutional head, a linear 1x1
    # conv from the 7 x 7 x 256 map to B*5+C values per cell, as YOLOv2 does (without anchors). The FC head must
    # learn each cell's predictors separately from the others: too sample-hungry for a 10-minute CPU run.
    "yolov1-shapes": dict(convs=SHAPES_CONVS, head="conv", input_range=RANGE_01,
                          batch_norm=True, bn_momentum=0.1, img_size=112, S=S, B=B, C=3),  # C: data.ShapesDataset
    # the same trunk with a 5th max-pool before the last conv (128 px -> 4 x 4 x 256) and the paper's FC head
    # (512 units, not 4096), to compare the two heads (README, Results)
    "yolov1-shapes-fc": dict(FC, convs=SHAPES_CONVS[:-1] + ["M", (256, 3, 1)], hidden=512, batch_norm=True,
                             bn_momentum=0.1, img_size=128, S=S, B=B, C=3),
})
# Names this file no longer builds, and what replaced them
RENAMED = {"yolov1-bn": "the paper's network with batch norm is `--model yolov1 --batch-norm` (it matches no "
                        "darknet file); darknet's yolov1.cfg, with batch norm, is yolov1-local"}
# The backbone files of YOLOv1 training (not detectors): 16-byte 2015 header + the 20 convs of
# history/extraction.2015-11.cfg (extraction.conv.weights: `--model yolov1 --weights`, loaded as a prefix), or the
# whole classifier (20 convs, connected 1024 -> 1000).
BACKBONE_FILES = {"extraction.conv.weights": 89_612_560, "extraction.weights": 93_712_560}


# -----------------------------------------------------------------------------
# The family interface: yolov2.py has the same names, so train.py and detect.py never branch on the family

# YOLOv1 §2.2 "Training", PASCAL VOC 2007+2012; train.py turns the names into an optimizer and a schedule.
# OUR CHOICE, not in the paper: §2.2 raises the rate from 1e-3 to 1e-2 over "the first epochs" without saying how
# many. We ramp linearly over 2 epochs (~ darknet's 2015 yolo.cfg, 6103ecc4, whose steps 200/400/600 raise its rate
# over 600 batches = 2.3 epochs of VOC 07+12's 16,551 images at 64 a batch). That cfg's later steps differ from the
# paper's: /10 at 20,000 and 30,000 of 40,000 batches are epochs 77, 116 and 155 (20000·64/16551 = 77.3), against
# §2.2's 75, 105 and 135; RECIPE keeps the paper's.
WARMUP_EPOCHS = 2
RECIPE = dict(model="yolov1", optimizer="sgd", epochs=135, batch_size=64, momentum=0.9, weight_decay=5e-4,
              dropout=DROPOUT, schedule="yolov1", lr=1e-2, warmup_lr=1e-3, warmup_epochs=WARMUP_EPOCHS,
              lr_steps=[75, 105],          # 1e-2 until 75, 1e-3 for 30 epochs, 1e-4 for the last 30
              img_size=IMG_SIZE, augment=darknet.REVISIONS[PRESETS["yolov1"]["revision"]]["augment"],
              multiscale=False,
              eval_every=5)                # ours: evaluate every 5 epochs
# Augmentation: each preset with an official file trains as darknet did at its revision (data.AUGMENTATIONS):
# the paper's network and the 2015 files with 6103ecc4's crop ("darknet-2015": each side moved on its own, zeros
# outside, flip, [crop]'s saturation and exposure); the 2016 files with the same crop, edges repeated
# ("darknet-2016"). The paper's one sentence (§2.2, "random scaling and translations of up to 20%", exposure and
# saturation 1.5), read literally, is `--augment yolov1`.
PRESET_RECIPES = {preset: dict(RECIPE, model=preset, augment=darknet.REVISIONS[p["revision"]]["augment"])
                  for preset, p in PRESETS.items() if "revision" in p and preset != "yolov1"}
# Darknet's thresholds for a preset with a revision come from darknet.REVISIONS (yolo.c: `yolo test` -thresh .2,
# nms .5 to 6b38dcdc, .4 from c6afc7ff; `yolo valid` NMS .5 at .001, metrics.EVAL_CONF says why we keep .005).
# TEST_THRESHOLDS: the presets without a darknet file (yolov1-shapes, a checkpoint's own network): today's yolo.c.
TEST_THRESHOLDS = dict(conf=0.2, nms=0.4)
DATA = "detection"             # train.py: trains on images with boxes (VOC, COCO, the synthetic shapes)
EVAL_NMS = 0.5
TARGETS = {}                   # train.py's data.collate: every box (the cell's first wins in loss.yolov1_loss)


def build(preset, num_classes=None, batch_norm=None, img_size=None, S=None, B=None, backbone=None,
          pretrained=False, width_divisor=None):
    """The network of PRESETS[preset]; every other argument left None takes the preset's value, but for a conv head
    given only img_size: its grid then follows the input, S = img_size / stride (as in YOLOv2).
    backbone ("resnet18", "resnet50"): ResNetYOLOv1 instead (not the paper; pretrained: torchvision's weights).
    width_divisor: every conv and the hidden connected layer narrower (OUR CHOICE, for CPU-sized runs such as
    bench/table2.py's YOLO columns).
    model.config holds the arguments that rebuild it (checkpoints store it: detect.py needs nothing else)."""
    if preset in RENAMED:
        raise ValueError(f"YOLOv1 preset {preset!r} is gone: {RENAMED[preset]}")
    if preset not in PRESETS:
        raise ValueError(f"unknown YOLOv1 preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    if S is None and img_size is not None and cfg.get("head") == "conv" and backbone is None:
        S = img_size // conv_stride(cfg["convs"])
    config = dict(family="yolov1", preset=preset, num_classes=cfg["C"] if num_classes is None else num_classes,
                  batch_norm=cfg["batch_norm"] if batch_norm is None else batch_norm,
                  img_size=cfg["img_size"] if img_size is None else img_size,
                  S=cfg["S"] if S is None else S, B=cfg["B"] if B is None else B, backbone=backbone)
    if width_divisor is not None:
        config["width_divisor"] = width_divisor
    if backbone:
        model = ResNetYOLOv1(backbone, config["num_classes"], config["img_size"], config["S"], config["B"],
                             pretrained=pretrained)
    else:
        model = YOLOv1(**{k: v for k, v in config.items() if k not in ("family", "backbone")})
    model.config = config
    return model


# DARKNET: the training step is darknet's. Its detection layer writes deltas scale·(target - output), the
# gradient of ½·scale·(target - output)², not of eq. 3's scale·(target - output)²; the papers' learning rates
# (§2.2: 1e-2) were tuned with those deltas, and darknet steps by learning_rate/batch times their sum
# (update_connected_layer: a mean over the images, as yolov1_loss). Eq. 3 as printed has twice that gradient:
# the family's loss is ½·eq. 3, here and nowhere else (loss.yolov1_loss stays eq. 3; tests/test_yolov1.py
# checks one SGD step against darknet's deltas). Every term is halved, so "total" is still their sum.
DARKNET_DELTA_SCALE = 0.5


def loss(model, out, targets, seen):
    """½·eq. 3 (DARKNET_DELTA_SCALE) for out (N, S, S, B*5+C); seen (images trained on) is YOLOv2's, unused."""
    terms = yolov1_loss(out, targets, B=model.B, C=model.num_classes)
    return {name: DARKNET_DELTA_SCALE * value for name, value in terms.items()}


def detections(model, out, image_sizes, conf, nms, letterbox=False, net_size=None, order=None):
    """postprocess() with the model's B, each dict with its "grid" (S, S). Darknet's YOLOv1 (yolo.c) always
    resizes (no letterbox) and lists its detections in decreasing score (no other order)."""
    if letterbox or order is not None:
        raise ValueError("--letterbox and --darknet-order are YOLOv2's (detector.c); darknet's YOLOv1 (yolo.c) "
                         "resizes and lists by score")
    return [dict(d, grid=(model.S, model.S))
            for d in postprocess(out, image_sizes, conf, nms, B=model.B)]
