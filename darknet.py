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
  darknet only activation "ramp" of the 2015 yolo-small.cfg (activations.h) ... ConvBlock(activation="ramp"), act()
  darknet only the locally connected layer of yolov1.cfg (local_layer.c) ..... LocalLayer
  inference    conv + batch-norm folding ...................................... fuse()
The .weights file format (parser.c) is weights.py's.

Shapes: N images, C channels, H x W feature map. Every module takes (N, C, H, W) float tensors.
Nothing here reads a cfg file: the cfgs were read once and their layer lists are written out below.
"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

# -----------------------------------------------------------------------------
# Building blocks: convolution + batch norm + leaky ReLU, max-pool, reorg

# YOLOv1 §2.2, eq. 2: φ(x) = x if x > 0, else 0.1·x (darknet activations.h: leaky_activate).
LEAKY_SLOPE = 0.1
ACTIVATIONS = ("leaky", "linear", "ramp", "logistic")


def act(x, activation):
    """Darknet's activations (activations.h, unchanged from 2015 to f6afaab) by cfg name:
    leaky: x if x > 0 else .1x (eq. 2); linear: x; logistic: 1 / (1 + e^-x);
    ramp (only the 2015 yolo-small.cfg): x·(x > 0) + .1x, i.e. 1.1x for x > 0 and .1x below."""
    if activation == "leaky":
        return F.leaky_relu(x, LEAKY_SLOPE)
    if activation == "ramp":
        return torch.where(x > 0, x, torch.zeros_like(x)) + 0.1 * x
    if activation == "logistic":
        return torch.sigmoid(x)
    return x

# Darknet batch norm (batchnorm_layer.c), as nn.BatchNorm2d(eps=BN_EPS, momentum=BN_MOMENTUM):
#   running = 0.99·running + 0.01·batch  (scal .99, axpy .01; cuDNN exponentialAverageFactor .01)
#   -> torch momentum 0.01 (torch's momentum is the weight of the new batch).
# The normalisation itself differs between darknet's code paths:
#   GPU with cuDNN, and the GPU kernel normalize_kernel:  (x - mean) / sqrt(var + 1e-5)   <- what we use
#   CPU normalize_cpu (blas.c):                           (x - mean) / (sqrt(var) + 1e-6)
# and when training, the CPU and non-cuDNN GPU paths normalise with the unbiased batch variance (1/(n-1),
# variance_cpu / fast_variance_kernel), while cuDNN, like torch, normalises with the biased one and
# keeps the unbiased one in the running average. We follow the cuDNN path, darknet's usual build.
BN_EPS = 1e-5
BN_MOMENTUM = 0.01


class ConvBlock(nn.Module):
    """Darknet's [convolutional] layer: conv -> batch norm (optional) -> leaky ReLU, linear (or ramp, act()).

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
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM) if batch_norm else None
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
    Batch norm in eval mode is an affine map per channel, so conv then BN is one conv:
      y = γ (W x + b - μ) / sqrt(σ² + eps) + β  =  (s W) x + (β + s (b - μ)),   s = γ / sqrt(σ² + eps)
    The outputs equal the unfused model's in eval mode up to float rounding (tests/test_darknet.py)."""
    model = copy.deepcopy(model).eval()
    for block in model.modules():
        if isinstance(block, ConvBlock) and block.bn is not None:
            conv, bn = block.conv, block.bn
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)                          # (c_out,)
            fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                              conv.padding, bias=True).to(conv.weight.device, conv.weight.dtype)
            with torch.no_grad():
                fused.weight.copy_(conv.weight * s.view(-1, 1, 1, 1))                   # (c_out, c_in, k, k)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                fused.bias.copy_(bn.bias + s * (bias - bn.running_mean))
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
