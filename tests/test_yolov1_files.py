"""Every official darknet YOLOv1 file: sizes by arithmetic from the cfgs, the 2015 header with transposed connected
weights, darknet's locally connected layer, the detection layer's layout (B = 1, 2, 3; sqrt = 0 or 1), the 2015
input range, and the training step against darknet's deltas. Files are written here, small, by the tests."""
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import darknet
import detect
import yolov1
from loss import yolov1_loss


def conv(k, c_in, c_out, bn=False):
    """Floats of a darknet [convolutional]: biases, (scales, mean, variance with BN), then the filters."""
    return c_out * (4 if bn else 1) + c_out * c_in * k * k


def fc(n_in, n_out):
    return n_out + n_in * n_out


# the 24 convs of YOLOv1 (Fig. 3 = the 20 of extraction + 4), by (k, c_in, c_out)
EXTRACTION = ([(7, 3, 64), (3, 64, 192), (1, 192, 128), (3, 128, 256), (1, 256, 256), (3, 256, 512)]
              + [(1, 512, 256), (3, 256, 512)] * 4 + [(1, 512, 512), (3, 512, 1024)]
              + [(1, 1024, 512), (3, 512, 1024)] * 2)
FOUR = [(3, 1024, 1024)] * 4

# each official file: 16-byte header + 4 bytes a float, every float of the cfg's layers written out
OFFICIAL = {
    # history/yolo.2015-11.cfg: 24 convs, connected 7*7*1024 -> 4096 (leaky), dropout, connected 4096 -> 1470
    "yolov1": 16 + 4 * (sum(conv(*c) for c in EXTRACTION + FOUR) + fc(7 * 7 * 1024, 4096) + fc(4096, 1470)),
    # yolov1-tiny.cfg: 8 BN convs (16 ... 1024, then 256), connected 7*7*256 -> 1470
    "yolov1-tiny": 16 + 4 * (conv(3, 3, 16, True) + conv(3, 16, 32, True) + conv(3, 32, 64, True)
                             + conv(3, 64, 128, True) + conv(3, 128, 256, True) + conv(3, 256, 512, True)
                             + conv(3, 512, 1024, True) + conv(3, 1024, 256, True) + fc(7 * 7 * 256, 1470)),
    # history/yolo-tiny.2015-11.cfg: 9 convs, connected 7*7*1024 -> 256 -> 4096 -> 1470
    "yolo-tiny.2015-11": 16 + 4 * (conv(3, 3, 16) + conv(3, 16, 32) + conv(3, 32, 64) + conv(3, 64, 128)
                                   + conv(3, 128, 256) + conv(3, 256, 512) + conv(3, 512, 1024)
                                   + 2 * conv(3, 1024, 1024) + fc(7 * 7 * 1024, 256) + fc(256, 4096)
                                   + fc(4096, 1470)),
    # history/yolo-small.2015-11.cfg: 24 convs (stride-2 convs, no max-pool), connected 7*7*512 -> 2048 -> 1225
    "yolo-small.2015-11": 16 + 4 * (conv(7, 3, 64) + conv(3, 64, 192) + conv(1, 192, 128) + conv(3, 128, 256)
                                    + conv(1, 256, 128) + conv(3, 128, 256) + conv(1, 256, 128) + conv(3, 128, 512)
                                    + 4 * (conv(1, 512, 256) + conv(3, 256, 512)) + conv(1, 512, 256)
                                    + conv(3, 256, 1024) + conv(1, 1024, 512) + conv(3, 512, 1024)
                                    + 3 * conv(3, 1024, 1024) + conv(3, 1024, 512)
                                    + fc(7 * 7 * 512, 2048) + fc(2048, 7 * 7 * (1 * 5 + 20))),
    # yolov1.cfg: 24 BN convs, [local] 3x3 1024 -> 256 on 7x7 (biases 7*7*256, 49 matrices 256 x 1024*9),
    # connected 7*7*256 -> 7*7*(3*5 + 20) = 1715
    "yolov1-local": 16 + 4 * (sum(conv(*c, bn=True) for c in EXTRACTION + FOUR)
                              + 7 * 7 * 256 + 7 * 7 * 256 * 1024 * 9 + fc(7 * 7 * 256, 1715)),
    # the 2017 file: the same with connected -> 1470 (B = 2)
    "yolov1-local.2017": 16 + 4 * (sum(conv(*c, bn=True) for c in EXTRACTION + FOUR)
                                   + 7 * 7 * 256 + 7 * 7 * 256 * 1024 * 9 + fc(7 * 7 * 256, 1470)),
}


@pytest.mark.parametrize("preset, size", [
    ("yolov1", 1_086_814_216), ("yolov1-tiny", 108_399_816), ("yolo-tiny.2015-11", 180_357_512),
    ("yolo-small.2015-11", 405_197_876), ("yolov1-local", 789_312_988), ("yolov1-local.2017", 777_018_888)])
def test_official_sizes_by_arithmetic(preset, size):
    assert OFFICIAL[preset] == size == yolov1.PRESETS[preset]["weights_bytes"]
    with torch.device("meta"):                              # shapes only: no memory for the 1 GB networks
        model = yolov1.build(preset)
    assert darknet.darknet_file_bytes(model, version=(0, 1, 0)) == size


def test_extraction_conv_weights_end_at_the_20th_conv_of_the_2015_range_network():
    # extraction.conv.weights = 16 + 4 * the 20 convs of history/extraction.2015-11.cfg
    size = 16 + 4 * sum(conv(*c) for c in EXTRACTION)
    assert size == 89_612_560 == yolov1.BACKBONE_FILES["extraction.conv.weights"]
    assert 16 + 4 * (sum(conv(*c) for c in EXTRACTION) + fc(1024, 1000)) == yolov1.BACKBONE_FILES["extraction.weights"]
    with torch.device("meta"):
        model = yolov1.build("yolov1")
    assert darknet.darknet_file_bytes(model, version=(0, 1, 0), num_layers=20) == size   # a prefix of yolov1
    # those weights were trained behind a [crop] (2x - 1): `--model yolov1 --weights extraction.conv.weights`
    # starts from features that see the same range, because the network itself maps its input
    assert model.input_range == yolov1.RANGE_CROP_2015 == (-1.0, 1.0)


def test_input_range_per_preset_and_the_crop_mapping():
    ranges = {name: p["input_range"] for name, p in yolov1.PRESETS.items()}
    assert {n for n, r in ranges.items() if r == yolov1.RANGE_CROP_2015} == {"yolov1", "yolo-tiny.2015-11",
                                                                           "yolo-small.2015-11"}
    model = yolov1.build("yolov1-shapes-fc").eval()               # small; its range set as a 2015 preset's
    model.input_range = yolov1.RANGE_CROP_2015
    seen = []
    model.features.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
    x = torch.tensor([0.0, 0.25, 1.0]).view(1, 3, 1, 1).expand(1, 3, 128, 128)
    with torch.no_grad():
        model(x)
        model.input_range = yolov1.RANGE_01
        model(x)
    assert seen[0][0, :, 0, 0].tolist() == [2 * 0.0 - 1, 2 * 0.25 - 1, 2 * 1.0 - 1]   # crop_layer.c: input*2 - 1
    assert seen[1][0, :, 0, 0].tolist() == [0.0, 0.25, 1.0]


def test_yolov1_bn_is_mapped_clearly():
    with pytest.raises(ValueError, match="--batch-norm.*yolov1-local"):
        yolov1.build("yolov1-bn")
    assert yolov1.build("yolov1-shapes-fc", batch_norm=True).batch_norm


# -----------------------------------------------------------------------------
# darknet's [local] layer

def forward_local_layer(x, bias, weight_file, n, size, pad):
    """Line-by-line port of local_layer.c forward_local_layer: im2col, then per output position j a gemm of its
    n x (c*size*size) matrix with column j; biases copied first ([n][y][x]). x: (c, h, w) one image."""
    c, h, w = x.shape
    out_h, out_w = (h - 1) + 1 if pad else h - size + 1, (w - 1) + 1 if pad else w - size + 1   # stride 1
    p = size // 2 if pad else 0
    cols = np.zeros((c * size * size, out_h * out_w))                     # im2col_cpu
    for ch in range(c * size * size):
        w_off, h_off, c_im = ch % size, (ch // size) % size, ch // size // size
        for y in range(out_h):
            for xx in range(out_w):
                r, col = h_off + y - p, w_off + xx - p
                cols[ch, y * out_w + xx] = x[c_im, r, col] if 0 <= r < h and 0 <= col < w else 0
    out = bias.reshape(n, out_h * out_w).copy()
    k = c * size * size
    for j in range(out_h * out_w):
        a = weight_file[j * k * n:(j + 1) * k * n].reshape(n, k)
        out[:, j] += a @ cols[:, j]
    return out.reshape(n, out_h, out_w)


def test_local_layer_reads_darknet_layout_and_equals_its_loop(tmp_path):
    c, n, h, w, size = 2, 3, 4, 5, 3
    rng = np.random.default_rng(0)
    bias = rng.standard_normal(n * h * w).astype(np.float32)                   # out_h*out_w*n, [c_out][y][x]
    matrices = rng.standard_normal(h * w * n * c * size * size).astype(np.float32)   # per position n x (c*k*k)
    path = tmp_path / "local.weights"
    path.write_bytes(np.array([0, 1, 0, 0], "<i4").tobytes() + bias.tobytes() + matrices.tobytes())
    layer = darknet.LocalLayer(c, n, size, h, w, activation="linear")
    assert darknet.darknet_file_bytes(layer, version=(0, 1, 0)) == 16 + 4 * (n * h * w + h * w * n * c * 9)
    darknet.load_darknet_weights(layer, path)
    x = rng.standard_normal((c, h, w)).astype(np.float32)
    with torch.no_grad():
        ours = layer(torch.from_numpy(x)[None])[0]                            # (n, h, w)
    assert torch.allclose(ours, torch.from_numpy(forward_local_layer(x, bias, matrices, n, size, True)).float(),
                          atol=1e-5)
    # unshared: the same 3x3 patch at two positions gives different outputs, unlike a convolution
    darknet.save_darknet_weights(layer, tmp_path / "again.weights", version=(0, 1, 0))
    assert (tmp_path / "again.weights").read_bytes() == path.read_bytes()


def test_local_layer_leaky_and_shapes():
    with torch.device("meta"):
        layer = darknet.LocalLayer(1024, 256, 3, 7, 7)                        # yolov1.cfg's
    assert layer.bias.shape == (256, 7, 7) and layer.weight.shape == (49, 256, 1024 * 9)
    small = darknet.LocalLayer(1, 1, 3, 2, 2)
    with torch.no_grad():
        small.weight.zero_()
        small.bias.copy_(torch.tensor([[[1.0, -2.0], [0.5, -1.0]]]))
        assert small(torch.zeros(1, 1, 2, 2)).flatten().tolist() == pytest.approx([1.0, -0.2, 0.5, -0.1])  # leaky
    with pytest.raises(ValueError, match="built for"):
        small(torch.zeros(1, 1, 3, 3))


# -----------------------------------------------------------------------------
# 2015 files: float header, connected weights stored inputs x outputs

def test_2015_header_transposed_connected_weights(tmp_path):
    # a hand-written 2015 file: header .001, .9, .0005, seen 7; a [connected] 2 -> 3 stored as a 2 x 3 matrix
    path = tmp_path / "old.weights"
    stored = np.array([[1, 2, 3], [4, 5, 6]], np.float32)                    # (inputs, outputs)
    path.write_bytes(np.array([0.001, 0.9, 0.0005], "<f4").tobytes() + np.array([7], "<i4").tobytes()
                     + np.array([10, 11, 12], "<f4").tobytes() + stored.tobytes())
    layer = nn.Linear(2, 3)
    info = darknet.load_darknet_weights(layer, path)
    assert (info["transposed"], info["seen"], info["bytes"]) == (True, 7, 16)
    assert info["floats"] == pytest.approx((0.001, 0.9, 0.0005))
    assert layer.weight.tolist() == [[1, 4], [2, 5], [3, 6]]                  # (outputs, inputs) = stored.T
    assert layer.bias.tolist() == [10, 11, 12]
    assert "2015 header" in detect.load_weights(layer, str(path)) and "transposed" in darknet.header_text(info)
    # written back by save_darknet_weights(header_2015=True): the same bytes
    darknet.save_darknet_weights(layer, tmp_path / "again.weights", seen=7, header_2015=True)
    assert (tmp_path / "again.weights").read_bytes() == path.read_bytes()


def test_2015_file_of_a_detector_round_trip(tmp_path):
    torch.manual_seed(0)
    model = yolov1.build("yolov1-shapes-fc", S=2).eval()       # 6 convs, connected 4*4*256 -> 512 -> 2*2*13
    path = tmp_path / "old-layout.weights"
    darknet.save_darknet_weights(model, path, header_2015=True)
    assert path.stat().st_size == darknet.darknet_file_bytes(model, version=(0, 1, 0))     # 16-byte header
    # the first connected layer is stored transposed: bias (512), then (in, out) = (4*4*256, 512)
    offset = darknet.darknet_file_bytes(model, version=(0, 1, 0), num_layers=6)
    stored = np.fromfile(path, "<f4", count=512 + 4096 * 512, offset=offset)
    assert np.array_equal(stored[512:].reshape(4096, 512), model.fc1.weight.detach().numpy().T)
    # the detection layer: transposed, and its columns in darknet's output order
    offset += 4 * (512 + 4096 * 512)
    stored = np.fromfile(path, "<f4", count=52 + 512 * 52, offset=offset)
    perm = yolov1.darknet_output_permutation(2, 2, 3)
    assert np.array_equal(stored[52:].reshape(512, 52)[:, perm.numpy()], model.fc2.weight.detach().numpy().T)
    again = yolov1.build("yolov1-shapes-fc", S=2).eval()
    darknet.load_darknet_weights(again, path)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_text_is_not_a_2015_header(tmp_path):
    garbage = tmp_path / "notes.weights"
    garbage.write_bytes(b"this is plain text, not weights\n" * 10)   # "this" as int32 is > 1000, as float 1.8e31
    with pytest.raises(ValueError, match="darknet header"):
        darknet.load_darknet_weights(nn.Linear(2, 3), garbage)


# -----------------------------------------------------------------------------
# The detection layer: darknet's layout and test path

def get_detection_detections(flat, side, n, classes, sqrt, thresh):
    """Port of detection_layer.c get_detection_detections (f6afaab) with w = h = 1: per (cell, box) index,
    the box (x, y, w, h) and the thresholded probabilities."""
    boxes, probs = [], []
    for i in range(side * side):
        row, col = divmod(i, side)
        for k in range(n):
            scale = flat[side * side * classes + i * n + k]
            b = side * side * (classes + n) + (i * n + k) * 4
            boxes.append([(flat[b] + col) / side, (flat[b + 1] + row) / side,
                          flat[b + 2] ** (2 if sqrt else 1), flat[b + 3] ** (2 if sqrt else 1)])
            p = [scale * flat[i * classes + j] for j in range(classes)]
            probs.append([v if v > thresh else 0 for v in p])
    return np.array(boxes), np.array(probs)


@pytest.mark.parametrize("preset", ["yolov1-local", "yolo-small.2015-11", "yolov1-tiny"])   # B = 3, 1, 2
def test_decode_equals_darknets_test_path(preset):
    cfg = yolov1.PRESETS[preset]
    S, B, C, sqrt = cfg["S"], cfg["B"], cfg["C"], cfg["sqrt"]
    flat = torch.rand(S * S * (B * 5 + C)) * 1.2 - 0.1                        # darknet's order
    ours = flat[yolov1.darknet_output_permutation(S, B, C)].view(1, S, S, B * 5 + C)
    boxes, scores = yolov1.decode(ours, B, sqrt)
    ref_boxes, ref_probs = get_detection_detections(flat.double().numpy(), S, B, C, sqrt, 0.2)
    x, y, w, h = (torch.from_numpy(ref_boxes[:, k]).float() for k in range(4))
    assert torch.allclose(boxes[0], torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], 1), atol=1e-6)
    assert torch.allclose(torch.where(scores[0] > 0.2, scores[0], 0), torch.from_numpy(ref_probs).float(), atol=1e-6)


def test_test_path_thresholds_name_their_revision():
    # yolo.c test_yolo: nms .5 at 6103ecc4 (2015) and 6b38dcdc, .4 from c6afc7ff; -thresh .2 throughout
    assert {n: p["test_nms"] for n, p in yolov1.PRESETS.items() if "test_nms" in p} == {
        "yolov1": 0.5, "yolo-tiny.2015-11": 0.5, "yolo-small.2015-11": 0.5,
        "yolov1-tiny": 0.4, "yolov1-local": 0.4, "yolov1-local.2017": 0.4}
    assert yolov1.TEST_THRESHOLDS == dict(conf=0.2, nms=0.4)


# -----------------------------------------------------------------------------
# The training step is darknet's: ½ of eq. 3

def test_one_sgd_step_equals_darknets_update():
    # A connected layer 1 -> 52 = S*S*(B*5+C) with S = 2, B = 2, C = 3; weights 0, so both images output the bias P.
    P = torch.zeros(2, 2, 13)
    P[0, 0, 0:5] = torch.tensor([0.4, 0.5, 0.5, 0.5, 0.6])      # box 0 of cell (0, 0): IoU .25 with the object
    P[0, 0, 5:10] = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.2])     # box 1: no size, IoU 0
    P[1, 1, 4] = 0.3                                            # box 0 of cell (1, 1)
    P[0, 0, 10:] = torch.tensor([0.1, 0.7, 0.2])
    layer = nn.Linear(1, 52)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(P.view(-1))
    x = torch.tensor([[1.0], [2.0]])                            # image 0, image 1
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 0.5, 0.5]]), "labels": torch.tensor([1])},   # cell (0, 0)
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]

    # darknet's deltas (detection_layer.c), in our per-cell layout: scale·(target - output)
    d0, d1 = torch.zeros(2, 2, 13), torch.zeros(2, 2, 13)
    d0[0, 0, 9], d0[1, 1, 4] = 0.5 * (0 - 0.2), 0.5 * (0 - 0.3)                 # noobject_scale .5
    d0[0, 0, 4] = 1 * (0.25 - 0.6)                                            # rescore: object_scale·(IoU - C)
    d0[0, 0, 0:4] = 5 * torch.tensor([0.5 - 0.4, 0.5 - 0.5, 0.5 ** 0.5 - 0.5, 0.5 ** 0.5 - 0.5])   # coord_scale 5
    d0[0, 0, 10:] = 1 * (torch.tensor([0.0, 1.0, 0.0]) - torch.tensor([0.1, 0.7, 0.2]))     # class_scale 1
    d1[0, 0, 4], d1[0, 0, 9], d1[1, 1, 4] = 0.5 * (0 - 0.6), 0.5 * (0 - 0.2), 0.5 * (0 - 0.3)  # empty image
    lr, batch = 0.1, 2
    # update_connected_layer: weights += lr/batch · Σ_n δ_n x_n ; biases += lr/batch · Σ_n δ_n
    expected_weight = lr / batch * (d0.view(-1, 1) * 1.0 + d1.view(-1, 1) * 2.0)
    expected_bias = P.view(-1) + lr / batch * (d0 + d1).view(-1)

    model = types.SimpleNamespace(B=2, num_classes=3, sqrt=True)
    optimizer = torch.optim.SGD(layer.parameters(), lr=lr)
    out = layer(x).view(2, 2, 2, 13)
    terms, eq3 = yolov1.loss(model, out, targets, seen=0), yolov1_loss(out, targets, B=2, C=3)
    terms["total"].backward()
    optimizer.step()
    assert torch.allclose(layer.weight, expected_weight, atol=1e-7)
    assert torch.allclose(layer.bias, expected_bias, atol=1e-7)
    # the family's loss is half of eq. 3, term by term (DARKNET_DELTA_SCALE), and total is still their sum
    assert all(torch.allclose(terms[k], 0.5 * eq3[k]) for k in eq3)


def test_loss_without_sqrt_compares_w_h():
    # [detection] sqrt=0 (yolo-small 2015): the net's w, h are compared with the truth's w, h, not their roots
    pred = torch.zeros(1, 2, 2, 1 * 5 + 3)                      # S = 2, B = 1, C = 3
    pred[0, 0, 0, 0:5] = torch.tensor([0.5, 0.5, 0.3, 0.4, 0.0])
    truth = [{"boxes": torch.tensor([[0.0, 0.0, 0.5, 0.5]]), "labels": torch.tensor([0])}]   # w = h = .5
    wh = yolov1_loss(pred, truth, B=1, C=3, sqrt_wh=False)["wh"]
    assert wh.item() == pytest.approx(5 * ((0.3 - 0.5) ** 2 + (0.4 - 0.5) ** 2))
    wh_sqrt = yolov1_loss(pred, truth, B=1, C=3)["wh"]
    assert wh_sqrt.item() == pytest.approx(5 * ((0.3 - 0.5 ** 0.5) ** 2 + (0.4 - 0.5 ** 0.5) ** 2))
