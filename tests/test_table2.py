"""Tests of the switches of YOLOv2's Table 2 ("The path from YOLO to YOLOv2"): each changes what its row changes and
nothing else. The path itself runs in bench/table2.py."""
import math

import pytest
import torch

from loss import centre_in_cell, yolov2_loss


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
