"""Tests of yolov1.py (network, decoding, darknet order) and of loss.yolov1_loss (eq. 3, row by row).

Loss cases use S = 2, B = 2, C = 3, so pred is (1, 2, 2, 13): per cell [x y √w √h conf] x 2, then 3 probs.
In the cell-corner frame used for the assignment, a box is (x/S, y/S, w, h)."""
import numpy as np
import pytest
import torch

import darknet
import yolov1
from loss import yolov1_loss


def set_box(pred, i, j, b, x, y, sqrt_w, sqrt_h, conf, n=0):
    """Sets predictor b of cell (row i, column j) of image n to [x, y, √w, √h, confidence]."""
    pred[n, i, j, b * 5: b * 5 + 5] = torch.tensor([x, y, sqrt_w, sqrt_h, conf])


def target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).view(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.long)}


def conv(k, c_in, c_out):           # a conv layer without batch norm: weights + biases
    return k * k * c_in * c_out + c_out


# -----------------------------------------------------------------------------
# Network shapes

@pytest.fixture(scope="module")
def paper_model():
    # ~270 M parameters (~1 GB): built once, used with batch 1 under no_grad
    return yolov1.build("yolov1").eval()


def test_paper_network_output_and_size(paper_model):
    with torch.no_grad():
        out = paper_model(torch.zeros(1, 3, 448, 448))
    assert out.shape == (1, 7, 7, 30)                      # (N, S, S, B*5+C) = 7 x 7 x (2*5 + 20)
    # Fig. 3: 20 conv layers of the trunk, 4 more, FC 7*7*1024 -> 4096, FC 4096 -> 7*7*30
    trunk = (conv(7, 3, 64) + conv(3, 64, 192) + conv(1, 192, 128) + conv(3, 128, 256) + conv(1, 256, 256)
             + conv(3, 256, 512) + 4 * (conv(1, 512, 256) + conv(3, 256, 512)) + conv(1, 512, 512)
             + conv(3, 512, 1024) + 2 * (conv(1, 1024, 512) + conv(3, 512, 1024)))
    head = 4 * conv(3, 1024, 1024) + (7 * 7 * 1024 * 4096 + 4096) + (4096 * 1470 + 1470)
    assert sum(p.numel() for p in paper_model.parameters()) == trunk + head
    # darknet file order: the 20 trunk convs come first, so extraction.conv.weights loads with prefix_ok
    layers = darknet.darknet_layers(paper_model)
    assert len(layers) == 24 + 2
    assert layers[:20] == [m for m in paper_model.features[0].modules() if isinstance(m, darknet.ConvBlock)]


@pytest.mark.parametrize("img_size, side", [(448, 7), (320, 5)])   # stride 64: 448 / 64, 320 / 64
def test_fast_yolo_shapes(img_size, side):
    model = yolov1.build("yolo-tiny.2015-11", img_size=img_size).eval()
    assert model.feature_side == side
    assert model.bottleneck.in_features == 1024 * side * side
    # darknet yolo-tiny.cfg (2015): 9 convs, then connected 256, 4096, 1470
    assert len(darknet.darknet_layers(model)) == 9 + 3
    with torch.no_grad():
        assert model(torch.zeros(1, 3, img_size, img_size)).shape == (1, 7, 7, 30)


def test_shapes_preset_conv_head_and_overrides():
    model = yolov1.build("yolov1-shapes").eval()
    assert (model.num_classes, model.img_size, model.S, model.B, model.head_type) == (3, 112, 7, 2, "conv")
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}   # not darknet's
    assert not hasattr(model, "fc1")                           # no connected layer: 6 convs + the 1x1 head
    assert len(darknet.darknet_layers(model)) == 6 + 1
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 112, 112)).shape == (2, 7, 7, 2 * 5 + 3)   # (N, S, S, B*5+C), 112 / 16 = 7
    # the conv head's grid follows the input: S = 80 / 16 = 5
    small = yolov1.build("yolov1-shapes", num_classes=4, img_size=80, B=3).eval()
    assert (small.num_classes, small.img_size, small.S, small.B, small.batch_norm) == (4, 80, 5, 3, True)
    with torch.no_grad():
        assert small(torch.zeros(2, 3, 80, 80)).shape == (2, 5, 5, 3 * 5 + 4)
    assert not yolov1.build("yolov1-shapes", batch_norm=False).batch_norm
    with pytest.raises(ValueError, match="built for 80"):
        small(torch.zeros(1, 3, 112, 112))
    with pytest.raises(ValueError, match="multiple"):
        yolov1.build("yolov1-shapes", img_size=100)            # stride 16
    with pytest.raises(ValueError, match="conv head needs"):
        yolov1.build("yolov1-shapes", img_size=112, S=5)       # 112 / 16 = 7, not 5
    with pytest.raises(ValueError, match="unknown"):
        yolov1.build("yolov3")


def test_conv_head_cell_i_j_is_the_1x1_conv_of_map_row_i_column_j():
    # the permute puts map position (row i, column j) at out[:, i, j]: the layout decode() reads
    torch.manual_seed(0)
    model = yolov1.build("yolov1-shapes", img_size=48).eval()  # S = 48 / 16 = 3
    images = torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        out, feature_map = model(images), model.features(images)      # (2, 3, 3, 13), (2, 256, 3, 3)
        weight, bias = model.head.conv.weight[:, :, 0, 0], model.head.conv.bias   # (13, 256), (13,)
        n, i, j = 1, 2, 0
        assert torch.allclose(out[n, i, j], weight @ feature_map[n, :, i, j] + bias, atol=1e-5)


# -----------------------------------------------------------------------------
# §2.3 decode and postprocess on a hand-built output

def hand_output():
    pred = torch.zeros(1, 2, 2, 2 * 5 + 3)                 # S=2, B=2, C=3
    # cell row 1, column 0, box 1: centre ((0 + .5)/2, (1 + .25)/2) = (.25, .625), w = .5² = .25, h = .4² = .16
    set_box(pred, 1, 0, 1, 0.5, 0.25, 0.5, 0.4, 0.8)
    pred[0, 1, 0, 10:] = torch.tensor([0.1, 0.75, 0.15])
    return pred


def test_decode_box_and_class_specific_scores():
    boxes, scores = yolov1.decode(hand_output(), B=2)
    assert boxes.shape == (1, 2 * 2 * 2, 4) and scores.shape == (1, 8, 3)    # (N, S*S*B, 4), (N, S*S*B, C)
    k = (1 * 2 + 0) * 2 + 1                                # (row * S + column) * B + box = 5
    expected = [0.25 - 0.25 / 2, 0.625 - 0.16 / 2, 0.25 + 0.25 / 2, 0.625 + 0.16 / 2]
    assert boxes[0, k].tolist() == pytest.approx(expected)
    assert scores[0, k].tolist() == pytest.approx([0.8 * 0.1, 0.8 * 0.75, 0.8 * 0.15])   # eq. 1
    assert scores[0, :k].abs().sum() == 0                  # every other confidence is 0


def test_postprocess_pixels_threshold_and_classwise_nms():
    pred = hand_output()
    # a second, slightly weaker copy of the same box in cell (1, 0) box 0: IoU 1 with box 1, same classes
    set_box(pred, 1, 0, 0, 0.5, 0.25, 0.5, 0.4, 0.7)
    (det,) = yolov1.postprocess(pred, [(200, 100)], conf_threshold=0.1, nms_threshold=0.5, B=2)
    # (.125, .545, .375, .705) x (200, 100, 200, 100); scores .8*.75 (class 1), .8*.15 (class 2); .08 < .1
    # The copy (.7*.75, .7*.15) is suppressed within each class; different classes do not suppress.
    assert det["boxes"].tolist() == [pytest.approx([25.0, 54.5, 75.0, 70.5])] * 2
    assert det["scores"].tolist() == pytest.approx([0.8 * 0.75, 0.8 * 0.15])
    assert det["labels"].tolist() == [1, 2] and det["labels"].dtype == torch.int64
    (kept_all,) = yolov1.postprocess(pred, [(200, 100)], conf_threshold=0.1, nms_threshold=1.0, B=2)
    assert kept_all["scores"].tolist() == pytest.approx([0.8 * 0.75, 0.7 * 0.75, 0.8 * 0.15, 0.7 * 0.15])


def test_postprocess_clips_to_the_image():
    pred = torch.zeros(1, 2, 2, 13)
    set_box(pred, 0, 0, 0, 0.0, 0.0, 0.5, 0.5, 1.0)        # centre (0, 0), w = h = .25: half outside
    pred[0, 0, 0, 10] = 1.0
    (det,) = yolov1.postprocess(pred, [(100, 50)], B=2)
    assert det["boxes"].tolist() == [pytest.approx([0.0, 0.0, 12.5, 6.25])]   # .125 x (100, 50)


# -----------------------------------------------------------------------------
# Darknet's detection-layer order

def test_darknet_output_permutation_by_hand():
    perm = yolov1.darknet_output_permutation(S=2, B=2, C=3)
    assert sorted(perm.tolist()) == list(range(2 * 2 * 13))
    # ours: cell*13 + box*5 + k (k = x, y, √w, √h, conf), then cell*13 + 10 + class
    # darknet: classes i*C + c | confidences S*S*C + i*B + j | coords S*S*(C+B) + (i*B + j)*4 + k
    assert perm[1 * 13 + 0 * 5 + 4] == 2 * 2 * 3 + 1 * 2 + 0           # confidence, cell 1, box 0 = 14
    assert perm[3 * 13 + 10 + 2] == 3 * 3 + 2                           # class 2 of cell 3 = 11
    assert perm[0 * 13 + 1 * 5 + 1] == 2 * 2 * (3 + 2) + (0 * 2 + 1) * 4 + 1   # y of cell 0, box 1 = 25


def test_darknet_output_permutation_against_darknet_loops():
    S, B, C = 3, 2, 4
    ours = torch.randn(S, S, B * 5 + C)
    darknet_flat = torch.zeros(S * S * (B * 5 + C))        # written as detection_layer.c indexes it
    for i in range(S * S):
        row, col = divmod(i, S)
        for c in range(C):
            darknet_flat[i * C + c] = ours[row, col, B * 5 + c]
        for j in range(B):
            darknet_flat[S * S * C + i * B + j] = ours[row, col, j * 5 + 4]
            for k in range(4):
                darknet_flat[S * S * (C + B) + (i * B + j) * 4 + k] = ours[row, col, j * 5 + k]
    assert torch.equal(darknet_flat[yolov1.darknet_output_permutation(S, B, C)], ours.view(-1))


def test_weights_file_holds_darknet_order_and_reloads(tmp_path):
    model = yolov1.build("yolov1-shapes-fc", num_classes=3, S=2).eval()
    with torch.no_grad():
        model.fc2.bias.copy_(torch.arange(52.0))           # S*S*(B*5+C) = 4 * 13 outputs
    path = tmp_path / "shapes.weights"
    darknet.save_darknet_weights(model, path)
    offset = darknet.darknet_file_bytes(model, num_layers=len(darknet.darknet_layers(model)) - 1)
    file_bias = torch.from_numpy(np.fromfile(path, "<f4", count=52, offset=offset))
    assert torch.equal(file_bias[yolov1.darknet_output_permutation(2, 2, 3)], torch.arange(52.0))
    again = yolov1.build("yolov1-shapes-fc", num_classes=3, S=2).eval()
    darknet.load_darknet_weights(again, path)
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(again(x), model(x))


# -----------------------------------------------------------------------------
# eq. 3, row by row, on hand-made cases

ONE_OBJECT = target([[0.0, 0.0, 0.5, 0.5]], [1])   # centre (.25, .25) -> cell (0, 0), offsets (.5, .5), w = h = .5


def test_loss_one_object():
    pred = torch.zeros(1, 2, 2, 13)
    # box 0: centre (.4/2, .5/2) = (.2, .25), w = h = .5² = .25 -> [.075, .325] x [.125, .375], inside the
    # truth [0, .5]²: IoU = .25² / .5² = .25. Box 1 has zero size: IoU 0. So box 0 is responsible.
    set_box(pred, 0, 0, 0, 0.4, 0.5, 0.5, 0.5, 0.6)
    set_box(pred, 0, 0, 1, 0.0, 0.0, 0.0, 0.0, 0.2)
    set_box(pred, 1, 1, 0, 0.0, 0.0, 0.0, 0.0, 0.3)      # a predictor of an empty cell
    pred[0, 0, 0, 10:] = torch.tensor([0.1, 0.7, 0.2])
    pred[0, 1, 1, 10:] = 0.9                               # class probabilities of an empty cell: no error
    t = yolov1_loss(pred, [ONE_OBJECT], B=2, C=3)
    assert t["xy"].item() == pytest.approx(5 * ((0.4 - 0.5) ** 2 + (0.5 - 0.5) ** 2))
    assert t["wh"].item() == pytest.approx(5 * 2 * (0.5 - 0.5 ** 0.5) ** 2)
    assert t["obj"].item() == pytest.approx((0.6 - 0.25) ** 2)
    assert t["noobj"].item() == pytest.approx(0.5 * (0.2 ** 2 + 0.3 ** 2))
    assert t["cls"].item() == pytest.approx(0.1 ** 2 + (0.7 - 1) ** 2 + 0.2 ** 2)
    assert t["total"].item() == pytest.approx(sum(t[k].item() for k in ("xy", "wh", "obj", "noobj", "cls")))


def test_loss_second_predictor_responsible():
    pred = torch.zeros(1, 2, 2, 13)
    # both centred on the truth; box 0: w = h = .25, IoU .25² / .25 = .25; box 1: w = h = .6² = .36,
    # IoU .36² / .25 = .5184 -> box 1 is responsible, box 0 gets the no-object error
    set_box(pred, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0.6)
    set_box(pred, 0, 0, 1, 0.5, 0.5, 0.6, 0.6, 0.4)
    pred[0, 0, 0, 10:] = torch.tensor([0.0, 1.0, 0.0])
    t = yolov1_loss(pred, [ONE_OBJECT], B=2, C=3)
    assert t["xy"].item() == pytest.approx(0.0, abs=1e-12)
    assert t["wh"].item() == pytest.approx(5 * 2 * (0.6 - 0.5 ** 0.5) ** 2)
    assert t["obj"].item() == pytest.approx((0.4 - 0.36 ** 2 / 0.25) ** 2, rel=1e-5)
    assert t["noobj"].item() == pytest.approx(0.5 * 0.6 ** 2)
    assert t["cls"].item() == 0


def test_loss_two_objects_in_one_cell_first_listed_wins():
    pred = torch.zeros(1, 2, 2, 13)
    pred[0, 0, 0, 10:] = torch.tensor([1.0, 0.0, 0.0])
    a = [0.0, 0.0, 0.5, 0.5]   # label 0, centre (.25, .25), cell (0, 0), offsets (.5, .5), w = h = .5
    b = [0.2, 0.1, 0.4, 0.3]   # label 2, centre (.3, .2), cell (0, 0), offsets (.6, .4), w = h = .2
    # pred is all zeros: every IoU is 0 and both predictors are at the same RMSE -> box 0 (the first)
    t = yolov1_loss(pred, [target([a, b], [0, 2])], B=2, C=3)
    assert t["xy"].item() == pytest.approx(5 * (0.5 ** 2 + 0.5 ** 2))          # a's offsets
    assert t["wh"].item() == pytest.approx(5 * (0.5 + 0.5))                    # (0 - √.5)² twice
    assert t["cls"].item() == 0                                                # a's label 0
    t = yolov1_loss(pred, [target([b, a], [2, 0])], B=2, C=3)
    assert t["xy"].item() == pytest.approx(5 * (0.6 ** 2 + 0.4 ** 2))          # b's offsets
    assert t["wh"].item() == pytest.approx(5 * (0.2 + 0.2))
    assert t["cls"].item() == pytest.approx(1 + 1)                             # [1,0,0] vs [0,0,1]
    assert t["obj"].item() == t["noobj"].item() == 0


def test_loss_empty_image_is_pure_noobj():
    pred = torch.zeros(1, 2, 2, 13)
    pred[0, 0, 0, 4] = 0.5                                 # one predictor claims an object, confidence .5
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    t = yolov1_loss(pred, empty, B=2, C=3)
    assert t["noobj"].item() == pytest.approx(0.5 * 0.5 ** 2)          # λnoobj · (0.5 - 0)²
    assert t["xy"].item() == t["wh"].item() == t["obj"].item() == t["cls"].item() == 0


def test_loss_rmse_fallback_when_no_predictor_overlaps():
    pred = torch.zeros(1, 2, 2, 13)
    # truth: centre (.375, .375), w = h = .1 -> cell (0, 0), offsets (.75, .75); frame box (.375, .375, .1, .1)
    # box 0: x = y = 0, √w = √h = .2 -> (0, 0, .04, .04), disjoint; RMSE √(2·.375² + 2·.06²)
    # box 1: x = y = .5 -> (.25, .25, .04, .04), disjoint;             RMSE √(2·.125² + 2·.06²), smaller
    set_box(pred, 0, 0, 0, 0.0, 0.0, 0.2, 0.2, 0.4)
    set_box(pred, 0, 0, 1, 0.5, 0.5, 0.2, 0.2, 0.3)
    t = yolov1_loss(pred, [target([[0.325, 0.325, 0.425, 0.425]], [0])], B=2, C=3)
    assert t["xy"].item() == pytest.approx(5 * 2 * (0.5 - 0.75) ** 2)          # box 1's offsets
    assert t["wh"].item() == pytest.approx(5 * 2 * (0.2 - 0.1 ** 0.5) ** 2)
    assert t["obj"].item() == pytest.approx(0.3 ** 2)                          # target IoU = 0
    assert t["noobj"].item() == pytest.approx(0.5 * 0.4 ** 2)                  # box 0


def test_loss_is_a_mean_over_images_and_iou_target_is_detached():
    pred = torch.zeros(2, 2, 2, 13)
    set_box(pred, 0, 0, 0, 0.4, 0.5, 0.5, 0.5, 0.6, n=0)   # image 0 as in test_loss_one_object (IoU .25)
    pred.requires_grad_(True)
    empty = target([], [])
    t = yolov1_loss(pred, [ONE_OBJECT, empty], B=2, C=3)
    assert t["obj"].item() == pytest.approx((0.6 - 0.25) ** 2 / 2)            # summed, then / N = 2
    t["obj"].backward()
    # d/dconf of (conf - IoU)² / 2 = conf - IoU; the IoU is a target: no gradient reaches the box
    assert pred.grad[0, 0, 0, 4].item() == pytest.approx(0.6 - 0.25)
    assert pred.grad[0, 0, 0, :4].abs().sum() == 0
