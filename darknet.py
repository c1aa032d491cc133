"""
Darknet building blocks and the YOLOv1 / YOLOv2 backbones.

Papers: YOLOv1 (Redmon et al., arXiv:1506.02640), YOLOv2 (Redmon & Farhadi, "YOLO9000", arXiv:1612.08242).
Darknet: github.com/pjreddie/darknet, src/*.c, and the cfg files named below.

Paper -> code
  YOLOv1 §2.2  leaky ReLU, slope 0.1 (eq. 2) ............................... LEAKY_SLOPE, ConvBlock
  YOLOv1 §2.1  Fig. 3, the first 20 conv layers (+ 4 max-pools) ............. extraction_trunk()
  YOLOv1 §2.2  ImageNet pre-training: 20 convs + average pool + connected .... Extraction
  YOLOv2 §2    "Batch Normalization" on every conv ............................ ConvBlock(batch_norm=True)
  YOLOv2 §3    "Faster": Darknet-19, Table 6 (224 and 448 inputs) ............ darknet19_trunk(), Darknet19
  YOLOv2 §2    "Fine-Grained Features": the passthrough's reorg .............. reorg()
  darknet only tiny-YOLOv2 trunk (yolov2-tiny-voc.cfg, yolov2-tiny.cfg) ....... tiny_yolov2_trunk()
  darknet only max-pool padding (maxpool_layer.c) ............................ maxpool()
  darknet only the locally connected layer of yolov1.cfg (local_layer.c) ..... LocalLayer
  inference    conv + batch-norm folding ...................................... fuse()
  YOLOv2 §3    "Faster": operations of one forward pass (5.58 / 8.52 billion) . count_operations()

Darknet's .weights files (src/parser.c), the last section:
  load_weights_upto: header, then each layer's floats in cfg order ............ load_darknet_weights()
  save_weights_upto: the inverse ................................................ save_darknet_weights()
  the layers that own floats, in cfg order ...................................... darknet_layers()
  load_convolutional_weights / load_connected_weights / the [local] branch ...... _tensors_in_file_order()
  the file size a network implies (checked exactly before anything is loaded) ... darknet_file_bytes()
  the header: 16 or 20 bytes, and the 2015 header (connected weights transposed) . read_header()

Shapes: N images, C channels, H x W feature map. Every module takes (N, C, H, W) float tensors.
Nothing here reads a cfg file: the cfgs were read once and their layer lists are written out below.
"""
import copy
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# Building blocks: convolution + batch norm + leaky ReLU, max-pool, reorg

# YOLOv1 §2.2, eq. 2: φ(x) = x if x > 0, else 0.1·x (darknet activations.h: leaky_activate).
LEAKY_SLOPE = 0.1
ACTIVATIONS = ("leaky", "linear")


def act(x, activation):
    """Darknet's activations of the YOLO cfgs (activations.h, unchanged from 2015 to f6afaab) by cfg name:
    leaky: x if x > 0 else .1x (eq. 2); linear: x."""
    if activation == "leaky":
        return F.leaky_relu(x, LEAKY_SLOPE)
    return x

# -----------------------------------------------------------------------------
# What darknet changed under the same names, one row per revision (`git show COMMIT:src/FILE`)

# Batch norm at test time (x: a conv output, μ, σ²: the running mean and variance of the file), by revision:
BN_2016 = "(x - μ) / (sqrt(σ²) + 1e-6)"    # blas.c normalize_cpu, blas_kernels.cu normalize_kernel: aebe9377 .. d2dece3d
BN_2017 = "(x - μ) / sqrt(σ² + 1e-5)"      # normalize_kernel and cuDNN (epsilon .00001) from 60e952ba (blas.c's
                                           # normalize_cpu keeps BN_2016 to f6afaab: darknet's CPU build differs)
BN_FORMULAS = {BN_2016: dict(eps=1e-6, in_sqrt=False), BN_2017: dict(eps=1e-5, in_sqrt=True)}

# One row per darknet revision whose behaviour a preset follows. The presets (yolov1.PRESETS, yolov2.PRESETS,
# yolo9000.PRESETS) name their revision; everything below is looked up here, never decided per preset.
#   bn, bn_momentum: the test-time formula above and the running averages' weight of the new batch
#     (batchnorm_layer.c: scal .95 / axpy .05 at aebe9377 and 6b38dcdc, .99 / .01 from 0d6b107e, 2016-11-15);
#     None: no cfg of that revision has batch norm.
#   test: darknet's test program; letterbox: its input is image.c letterbox_image (True) or resize_image (False);
#     test_conf, test_nms: its -thresh default and NMS; eval_conf, eval_nms: the valid program's (results files).
#   min_box: data.c drops a training box whose w or h (fractions of the image, after the crop) is below it, in the
#     fill function that revision's trainer calls (yolo.c: fill_truth_region; detector.c: fill_truth_detection).
#   augment: the data.AUGMENTATIONS name of data.c's training crop at that revision: "darknet-2015" load_data_region,
#     each side moved by up to jitter·side, zeros outside the image (image.c crop_image), flip 1/2, plus [crop]'s
#     saturation / exposure (crop_layer_kernels.cu); "darknet-2016" the same with the edge pixels repeated outside
#     (crop_image clamps from aebe9377; random_distort_image from 6b38dcdc); "yolov2-jitter.2" the release's
#     load_data_detection, the same crop at its cfgs' jitter .2 with hue; "darknet-2017" 60e952ba's
#     load_data_detection (aspect jitter, scale .25..2, place_image on gray).
#   region: region_layer.c's coordinate delta (loss.yolov2_loss): COORD_FLAT or COORD_SMALL_BOXES; None: no [region].
COORD_FLAT = "coord_scale·(t - o)"                    # delta_region_box(..., l.coord_scale), c6afc7ff
COORD_SMALL_BOXES = "coord_scale·(2 - w·h)·(t - o)"   # l.coord_scale * (2 - truth.w*truth.h), from 60e952ba
REVISIONS = {
    "6103ecc4": dict(date="2015-11-09", note="yolo.cfg", bn=None, bn_momentum=None,
                     test="yolo.c test_yolo", letterbox=False, test_conf=0.2, test_nms=0.5, eval_conf=0.001,
                     eval_nms=0.5, min_box=0.01, augment="darknet-2015", region=None),
    "aebe9377": dict(date="2016-08-11", note="yolo.cfg with batch norm, [local], num=3 (yolov1.cfg today)",
                     bn=BN_2016, bn_momentum=0.05, test="yolo.c test_yolo", letterbox=False, test_conf=0.2,
                     test_nms=0.5, eval_conf=0.001, eval_nms=0.5, min_box=0.01, augment="darknet-2016", region=None),
    "6b38dcdc": dict(date="2016-09-07", note="tiny-yolo.cfg (yolov1-tiny.cfg today)",
                     bn=BN_2016, bn_momentum=0.05, test="yolo.c test_yolo", letterbox=False, test_conf=0.2,
                     test_nms=0.5, eval_conf=0.001, eval_nms=0.5, min_box=0.01, augment="darknet-2016", region=None),
    "c6afc7ff": dict(date="2016-11-17", note="the YOLOv2 release: yolo-voc.cfg, yolo.cfg (kept as *.2.0.cfg)",
                     bn=BN_2016, bn_momentum=0.01, test="detector.c test_detector", letterbox=False,
                     test_conf=0.25, test_nms=0.4, eval_conf=0.005, eval_nms=0.45, min_box=0.01,
                     augment="yolov2-jitter.2", region=COORD_FLAT),
    "60e952ba": dict(date="2017-03-26", note="yolo-voc.cfg, yolo.cfg, tiny-yolo-voc.cfg (yolov2-*.cfg today), "
                     "yolo9000.cfg at 544", bn=BN_2017, bn_momentum=0.01, test="detector.c test_detector",
                     letterbox=True, test_conf=0.24, test_nms=0.4, eval_conf=0.005, eval_nms=0.45, min_box=0.001,
                     augment="darknet-2017", region=COORD_SMALL_BOXES),
    "897c346c": dict(date="2018-03-28", note="yolov2-tiny.cfg (YOLOv3's darknet: examples/detector.c)", bn=BN_2017,
                     bn_momentum=0.01, test="detector.c test_detector", letterbox=True, test_conf=0.5,
                     test_nms=0.45, eval_conf=0.005, eval_nms=0.45, min_box=0.001, augment="darknet-2017",
                     region=COORD_SMALL_BOXES),
}
# ea451100 ("changed yolo-small", 2015-11-09 13:12) and eaf033c0 ("Added tiny yolo model", 13:26) change cfg/ only
# (`git diff 6103ecc4 eaf033c0 -- src` is empty): 6103ecc4's behaviour, under the commits of the cfgs they made.
REVISIONS["ea451100"] = dict(REVISIONS["6103ecc4"], note="yolo-small.cfg (src/ as 6103ecc4)")
REVISIONS["eaf033c0"] = dict(REVISIONS["6103ecc4"], note="yolo-tiny.cfg (src/ as 6103ecc4)")
# Where each value was read: bn, bn_momentum: src/blas.c, src/blas_kernels.cu, src/batchnorm_layer.c;
# test, letterbox, test_conf, test_nms, eval_*: src/yolo.c (test_yolo, validate_yolo), src/detector.c
# (test_detector, validate_detector: LETTERBOX_DATA from 60e952ba); min_box, augment: src/data.c, src/image.c
# (crop_image), src/crop_layer_kernels.cu; region: src/region_layer.c delta_region_box. c6afc7ff's -thresh .25
# became .24 in 2710d632 (2016-11-26); the smallest box .005 came with d2dece3d (2017-01-04) for both fill functions.


def revision(name):
    """REVISIONS[name], with a one-line error for an unknown name."""
    if name not in REVISIONS:
        raise ValueError(f"unknown darknet revision {name!r}; known: {sorted(REVISIONS)}")
    return REVISIONS[name]


# Batch norm (batchnorm_layer.c) as nn.BatchNorm2d(momentum=bn_momentum); darknet's running averages are
#   running = (1 - m)·running + m·batch  (scal, axpy; cuDNN's exponentialAverageFactor .01 from 60e952ba),
# and torch's momentum is that m, the weight of the new batch.
# OUR CHOICE: training normalises as torch does, (x - mean) / sqrt(var + eps) with the biased batch variance (as
# cuDNN); darknet's non-cuDNN paths divide by sqrt(var) + eps with the unbiased one. The test-time formula is the
# revision's (BatchNorm.forward in eval mode, and fuse()).
BN_EPS = BN_FORMULAS[BN_2017]["eps"]
BN_MOMENTUM = 0.01


class BatchNorm(nn.BatchNorm2d):
    """nn.BatchNorm2d whose eval-mode normalisation is one of darknet's (BN_FORMULAS): BN_2017 is torch's own
    formula with eps 1e-5; BN_2016 puts 1e-6 outside the square root. (N, C, H, W) -> (N, C, H, W)."""

    def __init__(self, channels, formula=BN_2017, momentum=BN_MOMENTUM):
        super().__init__(channels, eps=BN_FORMULAS[formula]["eps"], momentum=momentum)
        self.formula = formula

    def set_formula(self, formula):
        self.formula, self.eps = formula, BN_FORMULAS[formula]["eps"]

    def forward(self, x):
        if self.training or BN_FORMULAS[self.formula]["in_sqrt"]:
            return super().forward(x)
        scale, shift = bn_affine(self)                                   # (C,), (C,)
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def extra_repr(self):
        return f"{super().extra_repr()}, formula={self.formula!r}"


def bn_affine(bn):
    """Eval-mode batch norm as y = scale·x + shift per channel, with bn's formula (nn.BatchNorm2d: BN_2017's form):
      BN_2016: scale = γ / (sqrt(σ²) + eps)      BN_2017: scale = γ / sqrt(σ² + eps);    shift = β - scale·μ"""
    in_sqrt = BN_FORMULAS[getattr(bn, "formula", BN_2017)]["in_sqrt"]
    denominator = torch.sqrt(bn.running_var + bn.eps) if in_sqrt else torch.sqrt(bn.running_var) + bn.eps
    scale = bn.weight / denominator                                                      # (C,)
    return scale, bn.bias - scale * bn.running_mean


def use_revision(model, name, bn_momentum=None):
    """Give every BatchNorm of model the batch-norm formula and running-average momentum of darknet revision name
    (bn_momentum: a preset's own value instead, e.g. the synthetic demos'); sets model.revision. Returns model."""
    row = revision(name)
    for module in model.modules():
        if isinstance(module, BatchNorm):
            if row["bn"] is not None:
                module.set_formula(row["bn"])
            module.momentum = bn_momentum or row["bn_momentum"] or module.momentum
    model.revision = name
    return model


class ConvBlock(nn.Module):
    """Darknet's [convolutional] layer: conv -> batch norm (optional) -> leaky ReLU or linear (act()).

    Padding is size // 2 (cfg pad=1, parser.c), so a stride-1 conv keeps H x W. With batch norm the
    conv has no bias: darknet's `biases` are then the batch norm's shift β (convolutional_layer.c
    calls forward_batchnorm_layer instead of add_bias).
    (N, c_in, H, W) -> (N, c_out, ceil(H / stride), ceil(W / stride)) for odd sizes.
    """

    def __init__(self, c_in, c_out, size, stride=1, batch_norm=True, activation="leaky"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.conv = nn.Conv2d(c_in, c_out, size, stride, padding=size // 2, bias=not batch_norm)
        self.bn = BatchNorm(c_out) if batch_norm else None
        self.activation = activation

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return act(x, self.activation)

    def extra_repr(self):
        return f"activation={self.activation!r}"


def maxpool(size=2, stride=2):
    """Darknet's [maxpool] (maxpool_layer.c) as an nn.Module.

    Darknet pads by `padding = size - 1` in all (parser.c default), placed as size_before = padding / 2
    (C integer division), the rest after: for size 2 that is 0 rows/columns before and 1 after.
    Out-of-image positions read as -FLT_MAX, so they never win the max; padding with -inf here
    gives the same numbers, because every window holds at least one real pixel. Hence
      out = (H + padding - size) // stride + 1:
      size 2, stride 2: ceil(H / 2), e.g. 13 -> 7 (torch's default MaxPool2d gives floor, 6);
      size 2, stride 1 (tiny-YOLOv2): H -> H; the last row/column pools over itself alone.
    """
    padding = size - 1
    before, after = padding // 2, padding - padding // 2
    if before == 0 and size == stride:
        # Windows do not overlap and only the last, partial one reaches the padding: that is torch's
        # ceil_mode, without a padded copy of the input (a few % of the Darknet-19 forward on CPU).
        return nn.MaxPool2d(size, stride, ceil_mode=True)
    return nn.Sequential(
        nn.ConstantPad2d((before, after, before, after), float("-inf")),   # (left, right, top, bottom)
        nn.MaxPool2d(size, stride),
    )


def reorg(x, stride=2):
    """Darknet's [reorg] layer (reorg_layer.c, blas.c reorg_cpu): (N, C, H, W) -> (N, C·s², H/s, W/s).

    YOLOv2 §2 "Fine-Grained Features": the passthrough concatenates features "by stacking adjacent
    features into different channels". Darknet's order of those channels is not pixel_unshuffle's.
    forward_reorg_layer (reverse=0) calls reorg_cpu(input, w, h, c, batch, stride, forward=0, output),
    and with forward=0 reorg_cpu does out[in_index] = x[out_index]:
      1. view the (C, H, W) input buffer as X' of shape (C/s², s·H, s·W);
      2. fill a (C, H, W) buffer: out[k, j, i] = X'[k mod C', s·j + (k div C') div s, s·i + (k div C') mod s],
         C' = C/s²;
      3. read that buffer back as the layer's output shape (C·s², H/s, W/s).
    The official yolov2 weights were trained with this order, so the conv after the concat expects it.
    (pixel_unshuffle instead gives out[c·s² + dy·s + dx, j, i] = x[c, s·j + dy, s·i + dx].)
    """
    N, C, H, W = x.shape
    s = stride
    if C % (s * s) or H % s or W % s:
        raise ValueError(f"reorg stride {s} needs C divisible by {s * s} and H, W by {s}; got {tuple(x.shape)}")
    x = x.reshape(N, C // (s * s), H, s, W, s)     # X'[c', s·j + dy, s·i + dx] as (N, C', H, dy, W, dx)
    x = x.permute(0, 3, 5, 1, 2, 4)                # (N, dy, dx, C', H, W): channel k = (dy·s + dx)·C' + c'
    return x.reshape(N, C * s * s, H // s, W // s)  # same buffer, read as (N, C·s², H/s, W/s)


def _layers(spec, c_in, batch_norm, width_divisor=1):
    """Build an nn.Sequential from a cfg-like list: (filters, size[, stride]) is a leaky ConvBlock,
    "M" a 2x2/2 max-pool, "M1" darknet's 2x2/1 max-pool. The result has .out_channels.
    width_divisor: every conv gets filters // width_divisor (OUR CHOICE, not darknet's: the same network, narrower,
    for runs that must fit a CPU, bench/table2.py); 1 is the cfg."""
    layers = []
    for item in spec:
        if item == "M":
            layers.append(maxpool(2, 2))
        elif item == "M1":
            layers.append(maxpool(2, 1))
        else:
            c_out, size, *stride = item
            c_out //= width_divisor
            layers.append(ConvBlock(c_in, c_out, size, *stride, batch_norm=batch_norm))
            c_in = c_out
    seq = nn.Sequential(*layers)
    seq.out_channels = c_in
    return seq


def _global_avgpool(x):
    return x.mean(dim=(2, 3))                       # darknet [avgpool]: (N, C, H, W) -> (N, C)


def fuse(model):
    """A copy of model for inference with each ConvBlock's batch norm folded into its conv.
    Batch norm in eval mode is an affine map per channel (bn_affine: scale s, shift t, with the revision's formula),
    so conv then BN is one conv:   y = s·(W x + b) + t  =  (s W) x + (s b + t)
    The outputs equal the unfused model's in eval mode up to float rounding (tests/test_darknet.py)."""
    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if isinstance(block, ConvBlock) and block.bn is not None:
            conv = block.conv
            s, t = bn_affine(block.bn)                                                   # (c_out,), (c_out,)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                              conv.padding, bias=True).to(conv.weight.device, conv.weight.dtype)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))                   # (c_out, c_in, k, k)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(t)
                fused.bias.copy_(s * bias + t)
            block.conv, block.bn = fused, None
    return model


# -----------------------------------------------------------------------------
# YOLOv1 §2.1 / §2.2: the first 20 conv layers of Fig. 3 and the ImageNet classifier built on them

# Fig. 3, layer by layer (= darknet extraction.conv.cfg); stride 32 in all: 448 -> 14, 224 -> 7.
EXTRACTION_LAYERS = [
    (64, 7, 2), "M",
    (192, 3), "M",
    (128, 1), (256, 3), (256, 1), (512, 3), "M",
    *[(256, 1), (512, 3)] * 4, (512, 1), (1024, 3), "M",
    *[(512, 1), (1024, 3)] * 2,
]


def extraction_trunk(batch_norm=False, width_divisor=1):
    """YOLOv1's first 20 conv layers and 4 max-pools: (N, 3, 448, 448) -> (N, 1024, 14, 14).

    batch_norm=False is the paper (and extraction.conv.cfg); True is darknet's later extraction.cfg
    and yolov1.cfg, which put batch norm in every conv. width_divisor: see _layers (1024 / d channels out)."""
    return _layers(EXTRACTION_LAYERS, 3, batch_norm, width_divisor)


class Extraction(nn.Module):
    """YOLOv1 §2.2 ImageNet pre-training: "the first 20 convolutional layers ... followed by a
    average-pooling layer and a fully connected layer", at 224 x 224. forward -> (N, num_classes) logits.

    Darknet's cfgs differ from this, and from each other:
      extraction.conv.cfg: as here, but its [connected] output=1000 has activation=leaky before the
        softmax; ours is linear (logits). The file that goes with it, extraction.conv.weights, holds
        the 20 convs only: load it into .trunk, or into this model with prefix_ok=True.
      extraction.cfg (the full extraction.weights): batch norm in every conv, and no connected layer:
        a 1x1 conv to 1000 (leaky), then the average pool.
    """

    def __init__(self, num_classes=1000, batch_norm=False, width_divisor=1):
        super().__init__()
        self.trunk = extraction_trunk(batch_norm, width_divisor)
        self.fc = nn.Linear(self.trunk.out_channels, num_classes)

    def forward(self, x):
        x = self.trunk(x)                           # (N, 1024 / width_divisor, H/32, W/32)
        return self.fc(_global_avgpool(x))          # (N, num_classes)


# -----------------------------------------------------------------------------
# YOLOv2 §3 "Faster": Darknet-19 (Table 6), and the tiny-YOLOv2 trunk

# Table 6 = darknet19.cfg = darknet19_448.cfg (same layers; the 448 file is the same net fine-tuned at
# 448, §3 "Training for classification") = the first 23 layers of yolov2-voc.cfg / yolov2.cfg.
DARKNET19_STAGE_A = [                               # convs 1..13, stride 16: 416 -> 26
    (32, 3), "M",
    (64, 3), "M",
    (128, 3), (64, 1), (128, 3), "M",
    (256, 3), (128, 1), (256, 3), "M",
    (512, 3), (256, 1), (512, 3), (256, 1), (512, 3),
]
DARKNET19_STAGE_B = [                               # max-pool + convs 14..18, stride 32: 416 -> 13
    "M", (1024, 3), (512, 1), (1024, 3), (512, 1), (1024, 3),
]


def darknet19_trunk(batch_norm=True, width_divisor=1):
    """Darknet-19 without its classifier, split where YOLOv2's passthrough branches off.

    stage_a: (N, 3, H, W) -> (N, 512, H/16, W/16)   convs 1..13 (yolov2-voc.cfg layer 16, `route -9`)
    stage_b: (N, 512, H/16, W/16) -> (N, 1024, H/32, W/32)   max-pool + convs 14..18
    The 18 convs are what darknet19_448.conv.23 holds (darknet `partial` cut-off 23 = cfg layers 0..22).
    width_divisor: see _layers (512 / d and 1024 / d channels out).
    """
    stage_a = _layers(DARKNET19_STAGE_A, 3, batch_norm, width_divisor)
    return stage_a, _layers(DARKNET19_STAGE_B, stage_a.out_channels, batch_norm, width_divisor)


class Darknet19(nn.Module):
    """Darknet-19 classifier (YOLOv2 Table 6): 18 convs, a 1x1 conv to num_classes (linear, no batch
    norm, as darknet19.cfg), global average pool. 224 or 448 input -> (N, num_classes) logits."""

    def __init__(self, num_classes=1000, batch_norm=True, width_divisor=1):
        super().__init__()
        self.stage_a, self.stage_b = darknet19_trunk(batch_norm, width_divisor)
        self.classifier = ConvBlock(self.stage_b.out_channels, num_classes, 1, batch_norm=False, activation="linear")

    def forward(self, x):
        x = self.stage_b(self.stage_a(x))           # (N, 1024 / width_divisor, H/32, W/32)
        return _global_avgpool(self.classifier(x))  # (N, num_classes)


# yolov2-tiny-voc.cfg and yolov2-tiny.cfg (darknet only; the YOLOv2 paper gives no layer list).
# The 6th max-pool is 2x2 with stride 1, so the output stays at stride 32: 416 -> 13.
TINY_YOLOV2_LAYERS = [
    (16, 3), "M", (32, 3), "M", (64, 3), "M", (128, 3), "M", (256, 3), "M", (512, 3), "M1", (1024, 3),
]
TINY_YOLOV2_LAST_CONV = {"voc": 1024, "coco": 512}   # the conv before the 1x1 prediction conv


def tiny_yolov2_trunk(variant="voc"):
    """tiny-YOLOv2 up to, not including, the final 1x1 prediction conv; batch norm in all 8 convs.

    (N, 3, H, W) -> (N, c, H/32, W/32), c = .out_channels = 1024 ("voc", yolov2-tiny-voc.cfg) or 512
    ("coco", yolov2-tiny.cfg). The detector appends ConvBlock(c, A*(5+C), 1, batch_norm=False,
    activation="linear") to reach darknet's layer list; that conv and its [region] are yolov2.py's.
    """
    if variant not in TINY_YOLOV2_LAST_CONV:
        raise ValueError(f"variant must be one of {sorted(TINY_YOLOV2_LAST_CONV)}, got {variant!r}")
    return _layers(TINY_YOLOV2_LAYERS + [(TINY_YOLOV2_LAST_CONV[variant], 3)], 3, batch_norm=True)


# -----------------------------------------------------------------------------
# Darknet's locally connected layer (local_layer.c), in darknet's yolov1.cfg after the last conv

class LocalLayer(nn.Module):
    """Darknet's [local] layer: a convolution whose filters are not shared, one set per output position.

    (N, c, h, w) -> (N, n, out_h, out_w). With pad (cfg pad=1) the input is padded by size // 2 on every side and
    out = (h - 1) // stride + 1 (local_out_height), which for odd sizes is what the padded im2col gives.
    Parameters, exactly as the .weights file stores them (parser.c, the LOCAL branch of load_weights_upto):
      bias   (n, out_h, out_w): darknet's biases, one per output value, ordered [c_out][y][x] (l.outputs of them);
      weight (out_h*out_w, n, c*size*size): for output position j = y*out_w + x, an n x (c*size*size) matrix whose
             columns are im2col's rows, channel-major then kernel row then column (im2col_cpu), which is
             F.unfold's order too.
    forward_local_layer: out[:, j] = bias[:, j] + weight[j] @ im2col(input)[:, j], then the activation.
    No batch norm (darknet's local layer has none). Activation leaky in yolov1.cfg.
    """

    def __init__(self, c_in, c_out, size, in_h, in_w, stride=1, pad=True, activation="leaky"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.size, self.stride, self.padding, self.activation = size, stride, size // 2 if pad else 0, activation
        self.in_hw = (in_h, in_w)
        self.out_h = (in_h + 2 * self.padding - size) // stride + 1         # = (h - 1) // stride + 1 for odd size
        self.out_w = (in_w + 2 * self.padding - size) // stride + 1
        L, K = self.out_h * self.out_w, c_in * size * size
        # OUR CHOICE: every position initialised as darknet initialises its first one (make_local_layer fills only
        # the first c*n*size*size weights with scale·U(-1, 1), scale = sqrt(2 / (size·size·c)); the rest stay 0)
        scale = (2.0 / K) ** 0.5
        self.weight = nn.Parameter(torch.empty(L, c_out, K).uniform_(-scale, scale))   # (L, n, c*size*size)
        self.bias = nn.Parameter(torch.zeros(c_out, self.out_h, self.out_w))            # (n, out_h, out_w)

    def forward(self, x):
        if tuple(x.shape[-2:]) != self.in_hw:
            raise ValueError(f"a locally connected layer built for {self.in_hw} inputs got {tuple(x.shape[-2:])}")
        cols = F.unfold(x, self.size, padding=self.padding, stride=self.stride)   # (N, c*size*size, L) im2col
        out = torch.einsum("lnk,bkl->bnl", self.weight, cols)                     # (N, n, L), one matrix per l
        out = out.view(x.shape[0], -1, self.out_h, self.out_w) + self.bias        # (N, n, out_h, out_w)
        return act(out, self.activation)

    def extra_repr(self):
        return (f"{self.weight.shape[2] // self.size ** 2}, {self.weight.shape[1]}, size={self.size}, "
                f"stride={self.stride}, in={self.in_hw}, activation={self.activation!r}")


# -----------------------------------------------------------------------------
# YOLOv2 §3 "Faster": how many operations one forward pass takes

def count_operations(model, img_size=224):
    """Floating point operations of one forward pass of a (1, 3, img_size, img_size) image: 2 per multiply-add
    (a multiplication and an addition) of every convolution, connected and locally connected layer.

    Paper (YOLOv2 §3), at 224 x 224: VGG-16's convolutions "30.69 billion floating point operations", the YOLO
    framework's GoogLeNet-based network "8.52 billion operations", Darknet-19 "5.58 billion operations". Darknet
    prints the same count for each conv (convolutional_layer.c, f6afaab: 2.0·n·size·size·c/groups·out_h·out_w
    "BFLOPs"); batch norm, activations, pooling, the softmax and the biases' additions are left out (under 1% of
    the total here). The 8.52 is Extraction as darknet's extraction.cfg builds it from 845ab757 (2016-08): a 1x1
    conv to 1000 before the average pool; the 2015 cfg's [connected] 1000 after the pool gives 8.42.
    Counted from the layers' shapes during one forward pass (forward hooks), at batch 1, in eval mode; the model's
    mode is restored afterwards.
      Conv2d:     2 · out_h·out_w·c_out · (c_in/groups)·k_h·k_w
      Linear:     2 · in_features · out_features
      LocalLayer: 2 · out_h·out_w·n · c·size·size  (one filter bank per output position, the same count as a conv)
    """
    total = 0

    def hook(module, args, out):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += 2 * out[0].numel() * k                                      # out: (1, c_out, out_h, out_w)
        elif isinstance(module, nn.Linear):
            total += 2 * out[0].numel() * module.in_features                     # out: (1, out_features)
        else:
            total += 2 * out[0].numel() * module.weight.shape[2]                 # weight (L, n, c*size*size)

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, LocalLayer))]
    handles = [m.register_forward_hook(hook) for m in layers]
    was_training = model.training
    parameter = next(model.parameters())
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, img_size, img_size, device=parameter.device, dtype=parameter.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


# -----------------------------------------------------------------------------
# Darknet's .weights files (src/parser.c): reading them into the networks of this file, yolov1.py, yolov2.py and
# yolo9000.py, and writing them.
#
# File = header, then the float32 values of each layer with weights, in cfg order, nothing between them:
#   header (parser.c at f6afaab, the layout of every file since 2016): int32 major, minor, revision; then `seen`
#       (images trained on) as uint64 when major*10 + minor >= 2 and major < 1000 and minor < 1000 (20 bytes),
#       else int32 (16 bytes).
#   2015 header (parser.c at 6103ecc4, 2015-11-09, save_weights_upto): float32 learning rate, momentum, decay, then
#       int32 seen (16 bytes). Today's darknet reads the first two floats as `major`, `minor`: their bits as int32 are
#       far above 1000 (0.001 -> 981668463), and `transpose = (major > 1000) || (minor > 1000)` then reads every
#       [connected] layer's weights as stored inputs x outputs (2015's forward_connected_layer: gemm(0,0,...)) and
#       transposes them. We recognise these files by the same test and do the same.
#   [convolutional]: biases (n), then if batch_normalize: scales γ (n), rolling mean (n), rolling variance (n);
#       then weights (n, c, size, size) row-major = torch's Conv2d.weight layout.
#   [connected]: biases (out), weights (out, in) row-major = torch's Linear.weight layout (forward_connected_layer:
#       gemm(0, 1, ...) = input · Wᵀ), transposed (in, out) in 2015 files; then the batch norm values if any
#       (connected layers with batch norm have no counterpart here; no cfg of ours uses one).
#   [local] (local_layer.c): biases (out_h·out_w·n, ordered [n][y][x]), then for each output position an
#       n x (c·size·size) matrix in im2col order: darknet.LocalLayer holds exactly these two tensors.
# All little-endian, as darknet writes them on x86.
#
# Output permutation hook. A connected layer whose output order differs between darknet and this project sets
# `linear.darknet_permutation`: a sequence p of length out_features meaning our_output[o] = darknet_output[p[o]].
# Loading then takes rows p of darknet's weights and biases; saving writes them back in darknet's order. YOLOv1's
# detection layer needs it: darknet lays its output out as all S·S·C class probabilities, then all S·S·B
# confidences, then all S·S·B·4 coordinates (detection_layer.c), while our layout is per cell (S, S, B*5+C).
# yolov1.darknet_output_permutation builds p and sets it on its last nn.Linear.

# DARKNET parser.c (f6afaab): `transpose = (major > 1000) || (minor > 1000)`: a 2015 file's float header
OLD_FORMAT_ABOVE = 1000
# the header darknet wrote in 2015 (parser.c at 6103ecc4): the [net] section's learning_rate, momentum, decay,
# e.g. history/yolo.2015-11.cfg: 0.001, 0.9, 0.0005 (what save_darknet_weights writes with header_2015=True)
HEADER_2015 = (0.001, 0.9, 0.0005)


def darknet_layers(model):
    """Layers in darknet file order: every ConvBlock, LocalLayer and nn.Linear in model.modules() order, so a
    model must register its layers in cfg order. A bare nn.Conv2d would have no place in the file: refused."""
    layers, in_blocks = [], set()
    for module in model.modules():
        if isinstance(module, ConvBlock):
            layers.append(module)
            in_blocks.add(id(module.conv))
        elif isinstance(module, (nn.Linear, LocalLayer)):
            layers.append(module)
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and id(module) not in in_blocks:
            raise ValueError(f"{name} is a bare nn.Conv2d; wrap it in darknet.ConvBlock so that its "
                             "place and layout in a darknet .weights file are defined")
    return layers


def _tensors_in_file_order(layer):
    """The tensors of one layer in the order darknet stores them."""
    if isinstance(layer, ConvBlock):
        if layer.bn is not None:
            bn = layer.bn
            return [bn.bias, bn.weight, bn.running_mean, bn.running_var, layer.conv.weight]
        return [layer.conv.bias, layer.conv.weight]
    if isinstance(layer, LocalLayer):
        return [layer.bias, layer.weight]           # (n, out_h, out_w), (out_h*out_w, n, c*size*size)
    if layer.bias is None:
        raise ValueError("a darknet [connected] layer always has biases; this nn.Linear has bias=False")
    return [layer.bias, layer.weight]


def _permutation(layer):
    """The layer's darknet_permutation as a LongTensor, checked, or None."""
    p = getattr(layer, "darknet_permutation", None)
    if p is None:
        return None
    p = torch.as_tensor(p, dtype=torch.long)
    if not torch.equal(torch.sort(p).values, torch.arange(layer.out_features)):
        raise ValueError(f"darknet_permutation of {layer} is not a permutation of 0..{layer.out_features - 1}")
    return p


def _layer_floats(layer):
    return sum(t.numel() for t in _tensors_in_file_order(layer))


def _header_bytes(major, minor):
    seen_is_uint64 = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    return 12 + (8 if seen_is_uint64 else 4)


def darknet_file_bytes(model, version=(0, 2, 0), num_layers=None):
    """Size in bytes of the darknet file for the first num_layers (default all) darknet_layers(model).
    version (0, 1, 0) and the 2015 header give 16-byte headers, (0, 2, 0) a 20-byte one."""
    layers = darknet_layers(model)[:num_layers]
    return _header_bytes(version[0], version[1]) + 4 * sum(_layer_floats(layer) for layer in layers)


def _read_header(f, path):
    """-> header dict (version or the 2015 floats, seen, bytes, transposed), checked: refuses anything not darknet's."""
    head = f.read(20)
    if head.startswith(b"PK\x03\x04"):
        raise ValueError(f"{path} is a zip archive (what torch.save writes), not a darknet .weights file; "
                         "load a project checkpoint with torch.load(path, weights_only=True)")
    if head[:1] == b"\x80":
        raise ValueError(f"{path} looks like a Python pickle (an old-style torch.save file), "
                         "not a darknet .weights file")
    if len(head) < 16:
        raise ValueError(f"{path} has {len(head)} bytes, shorter than a darknet header (16 or 20 bytes)")
    major, minor, revision = (int(v) for v in np.frombuffer(head[:12], "<i4"))
    if major > OLD_FORMAT_ABOVE or minor > OLD_FORMAT_ABOVE:       # 2015: learning rate, momentum, decay, seen
        floats = tuple(float(v) for v in np.frombuffer(head[:12], "<f4"))
        if not all(0 <= v <= 10 for v in floats):   # ours: text or other data also has large "versions"
            raise ValueError(f"{path} does not start with a darknet header: neither a version (0.1.0, 0.2.0) nor "
                             f"2015's learning rate, momentum and decay (read as floats: {floats})")
        seen = int(np.frombuffer(head[12:16], "<i4")[0])
        return dict(version=None, floats=floats, seen=seen, bytes=16, transposed=True)
    if not (0 <= major < 1000 and 0 <= minor < 1000 and 0 <= revision < 1000):
        raise ValueError(f"{path} does not start with a darknet header: version {major}.{minor}.{revision} "
                         "(darknet's files say 0.1.0 or 0.2.0, or hold 2015's learning rate, momentum and decay)")
    header_bytes = _header_bytes(major, minor)
    if len(head) < header_bytes:
        raise ValueError(f"{path} ends inside its {header_bytes}-byte darknet header")
    seen = int(np.frombuffer(head[12:header_bytes], "<u8" if header_bytes == 20 else "<i4")[0])
    return dict(version=(major, minor, revision), floats=None, seen=seen, bytes=header_bytes, transposed=False)


def read_header(path):
    """The checked header of the darknet file at path (_read_header's dict; detect.preset_of_file needs its length)."""
    with open(path, "rb") as f:
        return _read_header(f, path)


def header_text(info):
    """The header of load_darknet_weights' result, in words: 'version 0.1.0' or the 2015 header's values."""
    if info["version"] is not None:
        return "version " + ".".join(map(str, info["version"]))
    lr, momentum, decay = info["floats"]
    return (f"2015 header: learning rate {lr:g}, momentum {momentum:g}, decay {decay:g}; "
            "connected weights stored transposed, read as darknet does")


def load_darknet_weights(model, path, prefix_ok=False):
    """Load a darknet .weights file into model (layers as darknet_layers(model) lists them).

    The file must hold exactly the model's values. With prefix_ok=True it may instead stop exactly at
    the end of a layer (a partial backbone such as extraction.conv.weights or darknet19_448.conv.23):
    those first layers are loaded, the rest keep their values. Anything else raises ValueError naming
    the file, the expected and the actual byte counts; sizes are checked before any value is copied,
    so the model is never loaded in part by mistake. A 2015 file (header_text) has its connected weights
    transposed back, as darknet's parser.c does.
    Returns dict(version=(major, minor, revision) or None, floats=the 2015 header's or None, seen=int,
    bytes=header length, transposed=bool, layers_loaded=int, layers_total=int).
    """
    layers = darknet_layers(model)
    permutations = [_permutation(layer) if isinstance(layer, nn.Linear) else None for layer in layers]
    actual = os.path.getsize(path)
    with open(path, "rb") as f:
        info = _read_header(f, path)
    header_bytes = info["bytes"]
    ends = np.cumsum([0] + [_layer_floats(layer) for layer in layers])       # float offsets of layer ends
    expected = header_bytes + 4 * int(ends[-1])
    num_loaded = len(layers) if actual == expected else None
    if num_loaded is None and prefix_ok:
        matches = np.flatnonzero(header_bytes + 4 * ends[1:] == actual)
        num_loaded = int(matches[0]) + 1 if len(matches) else None
    if num_loaded is None:
        hint = ("No layer of the model ends there either." if prefix_ok
                else "A partial backbone (only the first layers) needs prefix_ok=True: detect.py --partial; "
                     "train.py --weights takes one as it is.")
        raise ValueError(
            f"{path}: {actual:,} bytes, but {type(model).__name__} needs {expected:,} bytes "
            f"({header_bytes}-byte header, {header_text(info)}, + "
            f"{int(ends[-1]):,} float32 values in {len(layers)} layers); "
            f"difference {actual - expected:+,} bytes. {hint} Nothing was loaded.")

    values = torch.from_numpy(np.fromfile(path, dtype="<f4", count=int(ends[num_loaded]), offset=header_bytes))
    with torch.no_grad():
        for layer, p, start in zip(layers[:num_loaded], permutations, ends):
            offset = int(start)
            for t in _tensors_in_file_order(layer):
                chunk = values[offset: offset + t.numel()]
                offset += t.numel()
                if info["transposed"] and isinstance(layer, nn.Linear) and t is layer.weight:
                    chunk = chunk.view(layer.in_features, layer.out_features).t()   # stored (in, out) in 2015
                chunk = chunk.reshape(t.shape)
                t.copy_(chunk if p is None else chunk[p])   # bias (out,) or weight (out, in): rows p
    return dict(info, layers_loaded=num_loaded, layers_total=len(layers))


def save_darknet_weights(model, path, seen=0, version=(0, 2, 0), header_2015=False):
    """Write model in darknet's .weights format (the inverse of load_darknet_weights).

    version (major, minor, revision) decides the header: `seen` is written as uint64 for 0.2.x and
    later (darknet's save_weights_upto always writes 0.2.0), as int32 for 0.1.x. header_2015=True writes
    2015's header instead (HEADER_2015's learning rate, momentum, decay, then int32 seen) and every connected
    layer's weights transposed, as darknet's 2015 files hold them. The file is written to path + ".tmp" and
    renamed, so an interrupted save leaves no half file under path."""
    major, minor, revision = version
    if not (0 <= major < 1000 and 0 <= minor < 1000):
        raise ValueError(f"version {version}: darknet reads major or minor > 1000 as the 2015 format "
                         "(header_2015=True writes that one)")
    if header_2015:
        header = np.array(HEADER_2015, "<f4").tobytes() + np.array([seen], "<i4").tobytes()
    else:
        seen_dtype = "<u8" if _header_bytes(major, minor) == 20 else "<i4"
        header = np.array([major, minor, revision], "<i4").tobytes() + np.array([seen], seen_dtype).tobytes()
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header)
        for layer in darknet_layers(model):
            p = _permutation(layer) if isinstance(layer, nn.Linear) else None
            for t in _tensors_in_file_order(layer):
                is_weight = isinstance(layer, nn.Linear) and t is layer.weight
                t = t.detach().to("cpu", torch.float32)
                if p is not None:
                    t = t[torch.argsort(p)]         # darknet row q holds our row o where p[o] = q
                if header_2015 and is_weight:
                    t = t.t().contiguous()          # (in, out), 2015's layout
                f.write(t.numpy().astype("<f4").tobytes())
    os.replace(tmp, path)
