"""Tests for darknet.py (blocks, backbones, reorg, max-pool padding, the locally connected layer) and its .weights files
(.weights I/O and file sizes)."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from darknet import (fuse, BN_2016, BN_2017, BN_EPS, BN_MOMENTUM, REVISIONS, ConvBlock, Darknet19, Extraction,
                     LocalLayer, count_operations, darknet19_trunk, extraction_trunk, maxpool, reorg, revision,
                     tiny_yolov2_trunk, use_revision)
from darknet import darknet_file_bytes, darknet_layers, load_darknet_weights, save_darknet_weights


# -----------------------------------------------------------------------------
# Blocks

def test_conv_block_has_bias_only_without_batch_norm():
    with_bn = ConvBlock(3, 8, 3)
    assert with_bn.conv.bias is None and with_bn.bn.eps == BN_EPS == 1e-5 and with_bn.bn.momentum == BN_MOMENTUM == 0.01
    without = ConvBlock(3, 8, 3, batch_norm=False)
    assert without.conv.bias is not None and without.bn is None
    with pytest.raises(ValueError, match="activation"):
        ConvBlock(3, 8, 3, activation="relu")


def test_conv_block_padding_and_leaky_slope():
    block = ConvBlock(1, 1, 1, batch_norm=False)
    with torch.no_grad():
        block.conv.weight.fill_(1.0)
        block.conv.bias.zero_()
    x = torch.tensor([-2.0, 3.0]).view(1, 1, 1, 2)
    assert torch.allclose(block(x), torch.tensor([-2.0 * 0.1, 3.0]).view(1, 1, 1, 2))   # eq. 2
    # padding size // 2: 3x3 stride 1 keeps 5x5; 7x7 stride 2 gives ceil(5 / 2) = 3
    assert ConvBlock(1, 2, 3)(torch.zeros(1, 1, 5, 5)).shape == (1, 2, 5, 5)
    assert ConvBlock(1, 2, 7, 2)(torch.zeros(1, 1, 5, 5)).shape == (1, 2, 3, 3)


def test_maxpool_2_stride_1_pads_bottom_right_with_minus_infinity():
    x = -torch.arange(9.0).view(1, 1, 3, 3)        # [[0, -1, -2], [-3, -4, -5], [-6, -7, -8]]
    # out[i, j] = max over rows i..i+1, cols j..j+1 that exist (darknet's padding 1 after, none before);
    # the last column/row sees only itself: -2 in the corner where zero padding would give 0
    expected = torch.tensor([[0.0, -1.0, -2.0],
                             [-3.0, -4.0, -5.0],
                             [-6.0, -7.0, -8.0]])
    assert torch.equal(maxpool(2, 1)(x)[0, 0], expected)
    y = torch.arange(9.0).view(1, 1, 3, 3)          # [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert torch.equal(maxpool(2, 1)(y)[0, 0], torch.tensor([[4.0, 5.0, 5.0], [7.0, 8.0, 8.0], [7.0, 8.0, 8.0]]))


def test_maxpool_2_stride_2_rounds_up_on_odd_sizes():
    y = torch.arange(9.0).view(1, 1, 3, 3)
    # darknet: (3 + 1 - 2) // 2 + 1 = 2; windows {0,1,3,4}, {2,5}, {6,7}, {8}
    assert torch.equal(maxpool(2, 2)(y)[0, 0], torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
    assert maxpool(2, 2)(torch.zeros(1, 1, 13, 13)).shape == (1, 1, 7, 7)   # torch's MaxPool2d(2): 6


# -----------------------------------------------------------------------------
# reorg

def test_reorg_hand_written():
    x = torch.arange(32.0).view(1, 8, 2, 2)
    # darknet views the buffer as X' (C/4 = 2, 4, 4): X'[0] = [[0..3], [4..7], [8..11], [12..15]], X'[1] = 16 + X'[0]
    # out[k, j, i] = X'[k mod 2, 2j + (k div 2) div 2, 2i + (k div 2) mod 2], read back as (32, 1, 1)
    expected = torch.tensor([0, 2, 8, 10,        # k=0: X'[0], rows 0, 2, cols 0, 2
                             16, 18, 24, 26,     # k=1: X'[1], same offsets
                             1, 3, 9, 11,        # k=2: X'[0], column offset 1
                             17, 19, 25, 27,     # k=3
                             4, 6, 12, 14,       # k=4: X'[0], row offset 1
                             20, 22, 28, 30,     # k=5
                             5, 7, 13, 15,       # k=6: row and column offset 1
                             21, 23, 29, 31],    # k=7
                            dtype=torch.float32).view(1, 32, 1, 1)
    out = reorg(x)
    assert out.shape == (1, 32, 1, 1)            # (N, 4C, H/2, W/2)
    assert torch.equal(out, expected)
    # pixel_unshuffle keeps each channel's 2x2 block together: channels 0..3 come from x[0] = 0, 1, 2, 3
    assert F.pixel_unshuffle(x, 2).flatten()[:4].tolist() == [0, 1, 2, 3]
    assert not torch.equal(F.pixel_unshuffle(x, 2), out)


def _reorg_cpu(x, stride):
    """Line-by-line port of darknet's blas.c reorg_cpu(x, w, h, c, batch, stride, forward=0, out)."""
    N, C, H, W = x.shape
    flat, out = x.flatten().tolist(), [0.0] * x.numel()
    out_c = C // (stride * stride)
    for b in range(N):
        for k in range(C):
            for j in range(H):
                for i in range(W):
                    in_index = i + W * (j + H * (k + C * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out[in_index] = flat[w2 + W * stride * (h2 + H * stride * (c2 + out_c * b))]
    return torch.tensor(out).view(N, C * stride * stride, H // stride, W // stride)


def test_reorg_equals_darknet_loop_with_batch():
    x = torch.randn(2, 8, 4, 6)
    assert torch.equal(reorg(x), _reorg_cpu(x, 2))


# -----------------------------------------------------------------------------
# Backbones: shapes (small inputs; every trunk has stride 32)

@torch.no_grad()
def test_backbone_shapes():
    x = torch.zeros(1, 3, 64, 64)
    assert extraction_trunk()(x).shape == (1, 1024, 2, 2)           # 64 / 32
    stage_a, stage_b = darknet19_trunk()
    a = stage_a(x)
    assert a.shape == (1, 512, 4, 4)                                # 64 / 16
    assert stage_b(a).shape == (1, 1024, 2, 2)                      # 64 / 32
    assert Extraction(num_classes=5)(x).shape == (1, 5)
    assert Darknet19(num_classes=5)(x).shape == (1, 5)
    x96 = torch.zeros(1, 3, 96, 96)                                 # 96 / 32 = 3; the 2x2/1 pool keeps 3
    assert tiny_yolov2_trunk("voc")(x96).shape == (1, 1024, 3, 3)
    assert tiny_yolov2_trunk("coco")(x96).shape == (1, 512, 3, 3)


def test_extraction_trunk_matches_extraction_conv_cfg():
    # extraction.conv.cfg, its 20 [convolutional] sections: filters, size (stride 2 only for the first)
    filters = [64, 192, 128, 256, 256, 512, 256, 512, 256, 512, 256, 512, 256, 512, 512, 1024, 512, 1024, 512, 1024]
    sizes = [7, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1, 3]
    convs = [layer.conv for layer in darknet_layers(extraction_trunk())]
    assert [c.out_channels for c in convs] == filters
    assert [c.kernel_size[0] for c in convs] == sizes
    assert [c.stride[0] for c in convs] == [2] + [1] * 19
    assert [c.in_channels for c in convs] == [3] + filters[:-1]
    assert all(c.bias is not None for c in convs)                   # no batch_normalize in that cfg
    # each conv: c_out biases + c_in·c_out·k² weights
    floats = sum(o + i * o * k * k for i, o, k in zip([3] + filters[:-1], filters, sizes))
    assert floats == 22_403_136
    assert darknet_file_bytes(extraction_trunk(), version=(0, 1, 0)) == 16 + 4 * 22_403_136 == 89_612_560


def test_darknet19_448_conv_23_size():
    # darknet19_448.conv.23 = the 18 convs of Darknet-19 with batch norm: 79,327,120 bytes.
    # 18 convs: Σ (4·c_out + c_in·c_out·k²) = 19,831,776 floats = 79,327,104 bytes, so the header is
    # 16 bytes: version 0.1.x (major*10 + minor < 2), `seen` as int32.
    stage_a, stage_b = darknet19_trunk()
    model = nn.Sequential(stage_a, stage_b)
    assert len(darknet_layers(model)) == 18
    assert darknet_file_bytes(model, version=(0, 1, 0)) == 16 + 4 * 19_831_776 == 79_327_120
    assert darknet_file_bytes(model, version=(0, 2, 0)) == 20 + 4 * 19_831_776
    # the whole classifier adds the 1x1 conv to 1000: 1000 biases + 1024·1000 weights
    assert darknet_file_bytes(Darknet19(), (0, 1, 0)) == 79_327_120 + 4 * (1000 + 1024 * 1000)


def test_tiny_yolov2_sizes_match_the_official_files():
    # trunk + the detector's 1x1 prediction conv (A = 5 anchors): the official files' sizes (16-byte header)
    for variant, c, num_classes, size in [("voc", 1024, 20, 63_471_556), ("coco", 512, 80, 44_948_596)]:
        model = nn.Sequential(tiny_yolov2_trunk(variant),
                              ConvBlock(c, 5 * (5 + num_classes), 1, batch_norm=False, activation="linear"))
        assert darknet_file_bytes(model, version=(0, 1, 0)) == size


# -----------------------------------------------------------------------------
# .weights I/O

class Small(nn.Module):
    """A tiny model with every kind of darknet layer we support, registered in file order."""

    def __init__(self):
        super().__init__()
        self.conv_bn = ConvBlock(3, 4, 3)
        self.conv_plain = ConvBlock(4, 6, 1, stride=2, batch_norm=False, activation="linear")
        self.fc = nn.Linear(6 * 2 * 2, 5)
        self.fc.darknet_permutation = [3, 0, 4, 1, 2]

    def forward(self, x):
        return self.fc(self.conv_plain(self.conv_bn(x)).flatten(1))


def _randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)   # positive, so running_var is valid


@torch.no_grad()
def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    a, b = Small().eval(), Small().eval()
    _randomize(a, 0)
    _randomize(b, 1)
    x = torch.rand(2, 3, 4, 4)
    for version, header in [((0, 2, 0), 20), ((0, 1, 0), 16)]:
        path = tmp_path / "small.weights"
        save_darknet_weights(a, path, seen=12345, version=version)
        # floats: conv_bn 4 + 3·4·9 = 124; conv_plain 6 + 4·6 = 30; fc 5 + 24·5 = 125
        assert path.stat().st_size == header + 4 * (4 * 4 + 3 * 4 * 9 + 6 + 4 * 6 + 5 + 24 * 5)
        info = load_darknet_weights(b, path)
        assert info == dict(version=version, floats=None, seen=12345, bytes=header, transposed=False,
                            layers_loaded=3, layers_total=3)
        assert torch.equal(a(x), b(x))
        assert torch.equal(a.conv_bn.bn.running_var, b.conv_bn.bn.running_var)


def test_permutation_hook_writes_darknet_order(tmp_path):
    model = nn.Sequential(nn.Linear(1, 3))
    model[0].darknet_permutation = [2, 0, 1]        # our output o = darknet output p[o]
    with torch.no_grad():
        model[0].bias.copy_(torch.tensor([10.0, 11.0, 12.0]))
        model[0].weight.copy_(torch.tensor([[20.0], [21.0], [22.0]]))
    path = tmp_path / "fc.weights"
    save_darknet_weights(model, path)
    values = np.fromfile(path, dtype="<f4", offset=20)
    # darknet[p[o]] = ours[o]: darknet[2] = 10, darknet[0] = 11, darknet[1] = 12
    assert values.tolist() == [11.0, 12.0, 10.0, 21.0, 22.0, 20.0]
    fresh = nn.Sequential(nn.Linear(1, 3))
    fresh[0].darknet_permutation = [2, 0, 1]
    load_darknet_weights(fresh, path)
    assert fresh[0].bias.tolist() == [10.0, 11.0, 12.0]
    fresh[0].darknet_permutation = [0, 0, 1]
    with pytest.raises(ValueError, match="not a permutation"):
        load_darknet_weights(fresh, path)


def test_file_one_float_short_is_refused_and_nothing_loaded(tmp_path):
    a, b = Small(), Small()
    _randomize(a, 0)
    path = tmp_path / "short.weights"
    save_darknet_weights(a, path)
    full = path.stat().st_size
    path.write_bytes(path.read_bytes()[:-4])
    before = {k: v.clone() for k, v in b.state_dict().items()}
    with pytest.raises(ValueError) as error:
        load_darknet_weights(b, path)
    message = str(error.value)
    assert str(path) in message and f"{full:,} bytes" in message and f"{full - 4:,} bytes" in message
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())


def test_header_that_is_not_darknet_is_refused(tmp_path):
    model = Small()
    checkpoint = tmp_path / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    with pytest.raises(ValueError, match="zip archive"):
        load_darknet_weights(model, checkpoint)
    garbage = tmp_path / "garbage.weights"
    garbage.write_bytes(b"this is plain text, not weights\n" * 10)
    with pytest.raises(ValueError, match="darknet header"):
        load_darknet_weights(model, garbage)
    tiny = tmp_path / "tiny.weights"
    tiny.write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match="shorter than a darknet header"):
        load_darknet_weights(model, tiny)


def test_prefix_loading_counts_layers(tmp_path):
    full, prefix = Small(), Small()
    _randomize(prefix, 0)
    _randomize(full, 1)
    path = tmp_path / "backbone.weights"
    save_darknet_weights(nn.Sequential(prefix.conv_bn, prefix.conv_plain), path, version=(0, 1, 0))
    with pytest.raises(ValueError, match="prefix_ok=True"):
        load_darknet_weights(full, path)
    fc_before = full.fc.weight.clone()
    info = load_darknet_weights(full, path, prefix_ok=True)
    assert (info["layers_loaded"], info["layers_total"]) == (2, 3)
    assert torch.equal(full.conv_plain.conv.weight, prefix.conv_plain.conv.weight)
    assert torch.equal(full.fc.weight, fc_before)
    # a file ending inside a layer is refused even with prefix_ok
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="No layer of the model ends there"):
        load_darknet_weights(full, path, prefix_ok=True)


def test_bare_conv2d_is_refused():
    with pytest.raises(ValueError, match="bare nn.Conv2d"):
        darknet_layers(nn.Sequential(ConvBlock(3, 4, 3), nn.Conv2d(4, 4, 1)))


def _forward_maxpool_layer(x, size, stride):
    """Line-by-line port of darknet's maxpool_layer.c forward (padding = size - 1, parser.c default)."""
    N, C, H, W = x.shape
    pad = size - 1
    offset = -(pad // 2)                            # C's -l.pad/2 truncates toward zero
    out_h, out_w = (H + pad - size) // stride + 1, (W + pad - size) // stride + 1
    out = torch.empty(N, C, out_h, out_w)
    for b in range(N):
        for k in range(C):
            for i in range(out_h):
                for j in range(out_w):
                    best = -3.4028234663852886e38   # -FLT_MAX
                    for n in range(size):
                        for m in range(size):
                            h, w = offset + i * stride + n, offset + j * stride + m
                            if 0 <= h < H and 0 <= w < W:
                                best = max(best, x[b, k, h, w].item())
                    out[b, k, i, j] = best
    return out


@pytest.mark.parametrize("size, stride", [(2, 2), (2, 1), (3, 2), (3, 1)])
def test_maxpool_equals_darknet_loop(size, stride):
    x = torch.randn(1, 2, 5, 6)
    assert torch.equal(maxpool(size, stride)(x), _forward_maxpool_layer(x, size, stride))


def test_fuse_folds_batch_norm_into_the_conv():
    # One 1x1 conv, weight 2, then BN with γ = 3, β = 1, μ = 0.5, σ² + eps = 4:
    #   y = 3 (2x - 0.5) / sqrt(4) + 1 = 3x + 0.25   ->  fused weight 3, bias 0.25
    block = ConvBlock(1, 1, 1, batch_norm=True, activation="linear")
    with torch.no_grad():
        block.conv.weight.fill_(2.0)
        block.bn.weight.fill_(3.0)
        block.bn.bias.fill_(1.0)
        block.bn.running_mean.fill_(0.5)
        block.bn.running_var.fill_(4.0 - block.bn.eps)
    fused = fuse(nn.Sequential(block))
    assert fused[0].bn is None and block.bn is not None          # a copy: the original keeps its BN
    assert fused[0].conv.weight.item() == pytest.approx(3.0)
    assert fused[0].conv.bias.item() == pytest.approx(0.25)
    x = torch.tensor([[[[1.0, -2.0]]]])
    assert torch.allclose(fused(x), torch.tensor([[[[3.25, -5.75]]]]))      # 3·1 + .25, 3·(-2) + .25
    assert torch.allclose(fused(x), block.eval()(x))


def test_fuse_keeps_a_darknet19_output():
    torch.manual_seed(0)
    model = Darknet19(num_classes=10).eval()
    for m in model.modules():                  # non-trivial statistics, so that folding is exercised
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), fuse(model)(x)
    assert torch.allclose(a, b, atol=1e-4 * a.abs().max().item())


# -----------------------------------------------------------------------------
# What darknet changed under the same names (REVISIONS)

def _one_channel_bn(variance):
    # a 1x1 conv of weight 1 (no bias), then batch norm with γ = 1, β = 0, μ = 0 and the given running variance
    block = ConvBlock(1, 1, 1, batch_norm=True, activation="linear")
    with torch.no_grad():
        block.conv.weight.fill_(1.0)
        block.bn.running_mean.zero_()
        block.bn.running_var.fill_(variance)
    return block.eval()


def test_batch_norm_formulas_differ_on_a_near_zero_variance():
    # σ² = 1e-6, x = 1e-3 (so x - μ = 1e-3):
    #   BN_2016 (c6afc7ff): 1e-3 / (sqrt(1e-6) + 1e-6) = 1e-3 / 1.001e-3
    #   BN_2017 (60e952ba): 1e-3 / sqrt(1e-6 + 1e-5)   = 1e-3 / sqrt(1.1e-5) ≈ 0.3015
    x = torch.full((1, 1, 1, 1), 1e-3, dtype=torch.float64)
    block = _one_channel_bn(1e-6).double()
    assert block.bn.formula == BN_2017 and block(x).item() == pytest.approx(1e-3 / (1.1e-5) ** 0.5, rel=1e-6)
    block.bn.set_formula(BN_2016)
    assert block(x).item() == pytest.approx(1e-3 / 1.001e-3, rel=1e-6)
    assert fuse(block)(x).item() == pytest.approx(1e-3 / 1.001e-3, rel=1e-6)      # fuse follows the formula
    # σ² = 0: BN_2016 divides by 1e-6 alone, BN_2017 by sqrt(1e-5)
    zero = _one_channel_bn(0.0).double()
    assert zero(x).item() == pytest.approx(1e-3 / 1e-5 ** 0.5, rel=1e-6)
    zero.bn.set_formula(BN_2016)
    assert zero(x).item() == pytest.approx(1e-3 / 1e-6, rel=1e-6)
    assert fuse(zero)(x).item() == pytest.approx(1e-3 / 1e-6, rel=1e-6)


def test_batch_norm_formulas_agree_where_the_variance_is_large():
    # σ² = 4: 1 / (2 + 1e-6) against 1 / sqrt(4 + 1e-5): both 0.5 to 5 digits
    x = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    block = _one_channel_bn(4.0).double()
    new = block(x).item()
    block.bn.set_formula(BN_2016)
    assert new == pytest.approx(1 / (4 + 1e-5) ** 0.5) and block(x).item() == pytest.approx(1 / (2 + 1e-6))
    assert abs(new - block(x).item()) < 1e-5


def test_use_revision_sets_formula_and_momentum_from_the_table():
    model = Darknet19(num_classes=2)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    use_revision(model, "aebe9377")                 # batchnorm_layer.c: scal .95, axpy .05; blas.c sqrt(σ²) + 1e-6
    assert model.revision == "aebe9377"
    assert {(m.formula, m.momentum, m.eps) for m in bns} == {(BN_2016, 0.05, 1e-6)}
    use_revision(model, "c6afc7ff")                 # 0d6b107e (2016-11-15) made it .99 / .01
    assert {(m.formula, m.momentum) for m in bns} == {(BN_2016, 0.01)}
    use_revision(model, "60e952ba")                 # cuDNN, epsilon .00001
    assert {(m.formula, m.momentum, m.eps) for m in bns} == {(BN_2017, 0.01, 1e-5)}
    use_revision(model, "60e952ba", bn_momentum=0.1)
    assert {m.momentum for m in bns} == {0.1}
    with pytest.raises(ValueError, match="unknown darknet revision"):
        revision("deadbeef")


def test_revisions_table_rows():
    # every row holds every behaviour; the values darknet changed over time, in order
    keys = set(REVISIONS["6103ecc4"])
    assert all(set(row) == keys for row in REVISIONS.values())
    assert [REVISIONS[r]["min_box"] for r in ("6103ecc4", "aebe9377", "c6afc7ff", "60e952ba")] == [.01, .01, .01, .001]
    assert [REVISIONS[r]["letterbox"] for r in ("6103ecc4", "c6afc7ff", "60e952ba", "897c346c")] == [False, False,
                                                                                                      True, True]
    assert [REVISIONS[r]["test_nms"] for r in ("6103ecc4", "aebe9377", "c6afc7ff", "60e952ba")] == [.5, .5, .4, .4]
    assert REVISIONS["c6afc7ff"]["test_conf"] == .25 and REVISIONS["60e952ba"]["test_conf"] == .24


# -----------------------------------------------------------------------------
# YOLOv2 §3 "Faster": operations of a forward pass at 224 x 224, 2 per multiply-add of each conv (darknet's BFLOPs)

def test_darknet19_needs_5_58_billion_operations():
    # Table 6 at 224, layer by layer: out side² · (c_out · c_in · k² of each conv at that side)
    expected = 2 * (224**2 * 32 * 3 * 9                                       # 3x3 32; max-pool -> 112
                    + 112**2 * 64 * 32 * 9                                    # 3x3 64; max-pool -> 56
                    + 56**2 * (128 * 64 * 9 + 64 * 128 + 128 * 64 * 9)       # 3x3 128, 1x1 64, 3x3 128; -> 28
                    + 28**2 * (256 * 128 * 9 + 128 * 256 + 256 * 128 * 9)    # 3x3 256, 1x1 128, 3x3 256; -> 14
                    + 14**2 * (512 * 256 * 9 + 256 * 512 + 512 * 256 * 9 + 256 * 512 + 512 * 256 * 9)
                    + 7**2 * (1024 * 512 * 9 + 512 * 1024 + 1024 * 512 * 9 + 512 * 1024 + 1024 * 512 * 9
                              + 1000 * 1024))                                  # the 1x1 conv to 1000, then avgpool
    assert count_operations(Darknet19(), 224) == expected
    assert round(expected / 1e9, 2) == 5.58                                   # YOLOv2 §3: "5.58 billion operations"


def test_extraction_needs_8_52_billion_operations_as_darknet_builds_it_since_2016():
    # YOLOv1 Fig. 3's first 20 convs at 224 (extraction.conv.cfg), out side² · c_out · c_in · k²
    convs = 2 * (112**2 * 64 * 3 * 49                                          # 7x7/2 64; max-pool -> 56
                 + 56**2 * 192 * 64 * 9                                        # 3x3 192; max-pool -> 28
                 + 28**2 * (128 * 192 + 256 * 128 * 9 + 256 * 256 + 512 * 256 * 9)      # 1x1 128 .. 3x3 512; -> 14
                 + 14**2 * (4 * (256 * 512 + 512 * 256 * 9) + 512 * 512 + 1024 * 512 * 9)  # -> 7
                 + 7**2 * 2 * (512 * 1024 + 1024 * 512 * 9))
    # darknet extraction.cfg since 845ab757 (2016-08-05): a 1x1 conv to 1000 (no batch norm) before the avgpool
    later = nn.Sequential(extraction_trunk(batch_norm=True), ConvBlock(1024, 1000, 1, batch_norm=False))
    assert count_operations(later, 224) == convs + 2 * 7**2 * 1024 * 1000
    assert round((convs + 2 * 7**2 * 1024 * 1000) / 1e9, 2) == 8.52          # YOLOv2 §3: "8.52 billion operations"
    # the 2015 cfg (42ba5d45) and the YOLOv1 paper: avgpool, then [connected] 1024 -> 1000
    assert count_operations(Extraction(), 224) == convs + 2 * 1024 * 1000
    assert round((convs + 2 * 1024 * 1000) / 1e9, 2) == 8.42


def test_count_operations_counts_the_locally_connected_layer_and_restores_the_mode():
    # 3x3 local layer, 3 -> 2 channels on 4 x 4 (padded: 4 x 4 out), then a connected layer 32 -> 5
    model = nn.Sequential(LocalLayer(3, 2, 3, 4, 4), nn.Flatten(), nn.Linear(2 * 4 * 4, 5)).train()
    assert count_operations(model, 4) == 2 * (4 * 4 * 2 * 3 * 3 * 3) + 2 * (32 * 5)
    assert model.training


def test_width_divisor_narrows_every_conv_and_nothing_else():
    # Darknet-19 with width_divisor 16: the same 19 convs, kernels and strides, each with filters // 16 (32 -> 2,
    # ..., 1024 -> 64); the classifying conv still ends in num_classes. Extraction's connected layer takes 1024 // 16.
    convs = lambda m: [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    full, narrow = Darknet19(10), Darknet19(10, width_divisor=16)
    assert [(c.kernel_size, c.stride) for c in convs(narrow)] == [(c.kernel_size, c.stride) for c in convs(full)]
    assert [c.out_channels for c in convs(narrow)] == [c.out_channels // 16 for c in convs(full)][:-1] + [10]
    assert convs(narrow)[0].out_channels == 32 // 16 and convs(narrow)[-2].out_channels == 1024 // 16
    assert Extraction(10, width_divisor=16).fc.in_features == 1024 // 16
