"""Tests of the switches of YOLOv2's Table 2 ("The path from YOLO to YOLOv2"): each changes what its row changes and
nothing else. The path itself runs in bench/table2.py."""
import math
import os
import sys

import pytest
import torch
import torch.nn as nn

import yolov2
from loss import centre_in_cell, yolov2_loss

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import table2  # noqa: E402  (bench/table2.py, the path itself)


def xyxy(x, y, w, h):
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


# -----------------------------------------------------------------------------
# Rows "anchor boxes" (offsets) and "location prediction" (direct): loss.py

def test_offsets_shift_by_the_anchor_width_direct_stays_in_the_cell():
    # §2 "Direct location prediction": "a prediction of tx = 1 would shift the box to the right by the width of the
    # anchor box". Anchor 2 cells wide, centred in its cell (.5): tx = 1 -> .5 + 1·2 = 2.5 cells from the corner.
    assert centre_in_cell(torch.tensor(1.0), 2.0, "offsets").item() == pytest.approx(0.5 + 1 * 2)
    assert centre_in_cell(torch.tensor(-1.0), 2.0, "offsets").item() == pytest.approx(0.5 - 1 * 2)
    # direct: σ(1) = 1 / (1 + e^-1), inside (0, 1) whatever the anchor
    assert centre_in_cell(torch.tensor(1.0), 2.0, "direct").item() == pytest.approx(1 / (1 + math.exp(-1)))


def test_offsets_loss_one_object_by_hand_only_xy_changes():
    # 2 x 2 grid, anchors (2, 2) and (4, 4) cells, C = 2, raw all 0. Object centre (.4, .3), size .6 x .4, class 1:
    # cell (0, 0); shape IoU with anchor 0 (1 x 1 of the image) .24, with anchor 1 (2 x 2) .24 / 4 -> anchor 0.
    anchors = torch.tensor([[2.0, 2.0], [4.0, 4.0]])
    raw = torch.zeros(1, 2 * 7, 2, 2)
    targets = [{"boxes": torch.tensor([xyxy(0.4, 0.3, 0.6, 0.4)]), "labels": torch.tensor([1])}]
    direct = yolov2_loss(raw, targets, anchors, seen=12800, location="direct")
    offsets = yolov2_loss(raw, targets, anchors, seen=12800, location="offsets")
    scale = 2 - 0.6 * 0.4                                                  # coord_scale (2 - w h)
    # offsets: targets ((.4·2 - 0) - .5) / 2 = .15 and ((.3·2 - 0) - .5) / 2 = .05 for tx = ty = 0, linear
    assert offsets["xy"].item() == pytest.approx(0.5 * scale * ((0.15 - 0) ** 2 + (0.05 - 0) ** 2))
    # direct: targets .8 and .6 for σ(0) = .5
    assert direct["xy"].item() == pytest.approx(0.5 * scale * ((0.8 - 0.5) ** 2 + (0.6 - 0.5) ** 2))
    # t = 0 puts both centres at the cell's centre, so the boxes, IoUs and every other term are the same:
    # box [-.25, -.25, .75, .75] holds the object [.1, .1, .7, .5]: IoU .24 / 1
    assert offsets["obj"].item() == pytest.approx(0.5 * 5 * (0.24 - 0.5) ** 2, rel=1e-4)
    for term in ("wh", "obj", "noobj", "cls", "prior"):
        assert offsets[term].item() == pytest.approx(direct[term].item())
    with pytest.raises(ValueError, match="location must be one of"):
        yolov2_loss(raw, targets, anchors, seen=12800, location="absolute")


def test_offsets_warmup_pulls_t_to_zero_not_sigmoid_to_half():
    # No objects, tx = .5 in all 2·2·2 predictions: "direct" pulls σ(.5) toward .5, "offsets" pulls .5 toward 0.
    raw = torch.zeros(1, 2 * 6, 2, 2)
    raw[0, 0], raw[0, 6] = 0.5, 0.5
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    anchors = torch.ones(2, 2)
    sigma = 1 / (1 + math.exp(-0.5))
    direct = yolov2_loss(raw, empty, anchors, seen=0, location="direct")["prior"].item()
    offsets = yolov2_loss(raw, empty, anchors, seen=0, location="offsets")["prior"].item()
    assert direct == pytest.approx(8 * 0.5 * 0.01 * (sigma - 0.5) ** 2)
    assert offsets == pytest.approx(8 * 0.5 * 0.01 * 0.5 ** 2)


# -----------------------------------------------------------------------------
# The network's switches: yolov2.build (narrowed 16x, small inputs, so that each test is cheap)

def small(**switches):
    torch.manual_seed(0)
    return yolov2.build("yolo-voc.2.0", num_classes=3, img_size=64, width_divisor=16, **switches)


def shapes(model):
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_batch_norm_row_removes_batch_norm_and_nothing_else():
    # §2 "Batch Normalization": with it, every conv but the 1x1 detection conv has batch norm and no bias of its own
    with_bn, without = small(), small(batch_norm=False)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == len(convs(with_bn)) - 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    assert all(c.bias is not None for c in convs(without))
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs(with_bn)] == \
           [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs(without)]


def test_new_network_row_swaps_yolos_24_convs_for_darknet19():
    # trunk "yolov1": 20 Extraction convs + YOLOv1's four 3x3 (none at stride 2) + the 1x1 head = 25 convs, 4 max-pools
    # and the 7x7/2 first conv: stride 2·2⁴ = 32. "darknet19": 18 convs + 3 of the detector + the head = 22 (no
    # passthrough), 5 max-pools: stride 32. Same output layout: (N, A·(5 + C), 64/32, 64/32), A = 5.
    yolo, darknet19 = small(trunk="yolov1", passthrough="none"), small(passthrough="none")
    assert len(convs(yolo)) == 20 + 4 + 1 and len(convs(darknet19)) == 18 + 3 + 1
    assert [c.stride for c in convs(yolo)[20:24]] == [(1, 1)] * 4
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert yolo.eval()(x).shape == darknet19.eval()(x).shape == (1, 5 * (5 + 3), 2, 2)
    with pytest.raises(ValueError, match="passthrough"):
        small(trunk="yolov1", passthrough="reorg")      # YOLO's network has no 26 x 26 map to pass through


def test_passthrough_row_widens_the_merge_conv_only():
    # §2 "Fine-Grained Features": the reorg of the stride-16 map (512/16 = 32 channels -> 4·32 = 128) joins the
    # 1024/16 = 64 of the main branch before the third 3x3 conv; without it that conv takes the 64 alone.
    with_it, without = shapes(small(passthrough="reorg")), shapes(small(passthrough="none"))
    assert with_it["merge.conv.weight"] == (64, 4 * 32 + 64, 3, 3) and without["merge.conv.weight"] == (64, 64, 3, 3)
    assert {k: v for k, v in with_it.items() if not k.startswith("merge.conv")} == \
           {k: v for k, v in without.items() if not k.startswith("merge.conv")}


def test_anchor_rows_hand_picked_priors_or_given_clusters():
    # Faster R-CNN's 9 priors, first (128/600 with h/w = 1/2): w = 128/600/√.5, h = 128/600·√.5 of the image; at 416
    # inputs a grid of 13 cells: (3.922, 1.961) cells
    hand = yolov2.hand_picked_anchors(416)
    assert len(hand) == 9
    assert hand[0] == pytest.approx((128 / 600 / 0.5 ** 0.5 * 13, 128 / 600 * 0.5 ** 0.5 * 13))
    picked = small(anchors="hand-picked")          # 64 px: 2 cells; 9 anchors -> 9·(5 + 3) output channels
    assert picked.anchors.shape == (9, 2) and picked.detect.conv.out_channels == 9 * 8
    assert torch.allclose(picked.anchors, torch.tensor(yolov2.hand_picked_anchors(64)))
    # "dimension priors": the k-means clusters given as they are (cells); only the anchors and the head change
    clusters = [[0.5, 0.75], [1.0, 1.25]]                # exact in float32
    given = small(anchors=clusters)
    assert given.anchors.tolist() == clusters and given.detect.conv.out_channels == 2 * 8
    # a rebuild from the config (a checkpoint) at another input size keeps the anchors in cells
    again = yolov2.build(**dict({k: v for k, v in picked.config.items() if k != "family"}, img_size=128))
    assert torch.equal(again.anchors, picked.anchors)


def test_location_rows_decode_direct_or_offsets():
    # 1 anchor 2 x 2 cells, a 2 x 2 grid, C = 1; tx = 1 in cell (row 0, col 0), everything else 0
    raw = torch.zeros(1, 6, 2, 2)
    raw[0, 0, 0, 0] = 1.0
    anchors = torch.tensor([[2.0, 2.0]])
    direct = yolov2.decode(raw, anchors, "direct")[0][0, 0]
    offsets = yolov2.decode(raw, anchors, "offsets")[0][0, 0]
    # centre x: direct (0 + σ(1)) / 2; offsets (0 + .5 + 1·2) / 2 = 1.25; width 2·e⁰ / 2 = 1 either way
    assert ((direct[0] + direct[2]) / 2).item() == pytest.approx(1 / (1 + math.exp(-1)) / 2)
    assert ((offsets[0] + offsets[2]) / 2).item() == pytest.approx((0.5 + 1 * 2) / 2)
    assert (offsets[2] - offsets[0]).item() == pytest.approx((direct[2] - direct[0]).item()) == pytest.approx(1.0)
    # the model carries the switch to its loss and its detections
    model = small(location="offsets")
    targets = [{"boxes": torch.tensor([[0.1, 0.1, 0.6, 0.7]]), "labels": torch.tensor([2])}]
    out = torch.randn(1, 5 * 8, 2, 2)
    assert yolov2.loss(model, out, targets, 0)["xy"].item() == pytest.approx(
        yolov2_loss(out, targets, model.anchors, 0, region=model.region, location="offsets")["xy"].item())
    with pytest.raises(ValueError, match="location must be one of"):
        small(location="absolute")


def test_multi_scale_and_hi_res_detector_sizes_scale_the_papers():
    # At 416 bench/table2.sizes gives the paper's own numbers: YOLO 448, classifiers 224 -> 416 (the paper's 448
    # fine-tune is for a 448 detector), {320, ..., 608}, 544
    s = table2.sizes(416)
    assert (s["yolo"], s["classifier"], s["hires_classifier"], s["hires_detector"]) == (448, 224, 416, 544)
    assert s["multiscale"] == list(yolov2.MULTI_SCALE_SIZES)
    # at 160: 320·160/416 = 123 -> 128, ..., 608·160/416 = 234 -> 224; 544·160/416 = 209 -> 224; 448·160/416 -> 192
    s = table2.sizes(160)
    assert s["multiscale"] == [128, 160, 192, 224] and s["hires_detector"] == 224 and s["yolo"] == 192
    # the hi-res detector is the same weights in a network built for the larger input
    model = small(passthrough="reorg")
    bigger = table2.at_size(model, yolov2, 96)
    assert bigger.img_size == 96 and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                                           bigger.state_dict().values()))


def test_convolutional_row_replaces_yolos_connected_layers_keeps_its_convs():
    # §2 "Convolutional With Anchor Boxes": "We remove the fully connected layers from YOLO ... First we eliminate one
    # pooling layer". yolov1.py's network and yolov2.py's trunk="yolov1" share the 24 convs' shapes (the 22nd at
    # stride 1 instead of 2) and YOLO's 2x - 1 input; connected layers in the first only, a 1x1 conv head in the second.
    import yolov1
    yolo = yolov1.build("yolov1", num_classes=3, img_size=128, batch_norm=True, width_divisor=16)
    conv_head = small(trunk="yolov1", passthrough="none")
    a, b = convs(yolo), convs(conv_head)
    assert len(a) == 24 and len(b) == 24 + 1
    assert [c.weight.shape for c in a] == [c.weight.shape for c in b[:24]]
    assert [c.stride for c in a][21] == (2, 2) and [c.stride for c in b][21] == (1, 1)
    assert [c.stride for c in a[:21] + a[22:]] == [c.stride for c in b[:21] + b[22:24]]
    assert any(isinstance(m, nn.Linear) for m in yolo.modules())
    assert not any(isinstance(m, nn.Linear) for m in conv_head.modules()) and b[24].kernel_size == (1, 1)
    assert yolo.input_range == (-1.0, 1.0) and conv_head.input_2015
