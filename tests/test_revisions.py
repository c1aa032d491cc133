"""What darknet changed under the same names (darknet.REVISIONS), as each preset's data path and test path use it:
the 2015 crop of YOLOv1's files (each side jittered on its own, zeros outside, flip), the smallest box kept by each
revision, the letterbox and thresholds looked up from the preset's revision. Hand-computed values throughout.
(The two batch-norm formulas are tested in tests/test_darknet.py.)"""
import pytest
import torch

import darknet
import data


class FixedRNG:
    """A numpy Generator stand-in: uniform(lo, hi) = lo + f·(hi - lo) for the next listed f; integers() the next int."""

    def __init__(self, fractions, ints):
        self.fractions, self.ints = list(fractions), list(ints)

    def uniform(self, lo, hi):
        return lo + self.fractions.pop(0) * (hi - lo)

    def integers(self, n):
        return self.ints.pop(0)


def test_2015_crop_moves_each_side_on_its_own_fills_zeros_and_flips():
    # 6103ecc4 data.c load_data_region on a 100 x 50 image of ones, jitter .2: dw = 20, dh = 10;
    #   pleft = int(-20 + .77·40) = int(10.8) = 10      pright = int(-20 + .3625·40) = int(-5.5) = -5
    #   ptop  = int(-10 + .695·20) = int(3.9) = 3       pbot   = int(-10 + .0005·20) = int(-9.99) = -9
    # crop (left, top, right, bottom) = (10, 3, 100 + 5, 50 + 9) = 95 x 56 pixels: the aspect goes from 2 to 1.70
    # flip = 1; [crop]'s saturation and exposure rand_scale(1.5) = uniform(1, 1.5) at f = 0 -> 1, kept (ints 1, 1)
    rng = FixedRNG([0.77, 0.3625, 0.695, 0.0005, 0.0, 0.0], [1, 1, 1])
    image = torch.ones(3, 50, 100)
    boxes = torch.tensor([[20.0, 13.0, 60.0, 33.0]])                 # pixels xyxy
    out, kept_boxes, keep = data.augment_darknet_2015(image, boxes, rng, (95, 56))
    assert out.shape == (3, 56, 95)
    # columns 100..104 of the source are outside: zeros, which the flip puts in the first 5 columns;
    # rows 50..58 are outside: zeros in the last 56 - 47 = 9 rows
    assert out[:, :, :5].abs().max() == 0 and out[:, 47:, :].abs().max() == 0
    assert torch.allclose(out[:, :47, 5:], torch.ones(3, 47, 90))
    # box: x (20 - 10) / 95, (60 - 10) / 95 -> flipped 1 - 50/95 = 45/95, 1 - 10/95 = 85/95; y (13 - 3) / 56, (33 - 3) / 56
    assert keep.tolist() == [0]
    assert torch.allclose(kept_boxes, torch.tensor([[45 / 95, 10 / 56, 85 / 95, 30 / 56]]))


def test_smallest_box_kept_follows_the_revision():
    # 1000 x 1000 image, the whole of it kept: box widths 20, 9 and 4 pixels = .02, .009 and .004 of the image
    boxes = torch.tensor([[0.0, 0.0, 20.0, 500.0], [100.0, 0.0, 109.0, 500.0], [200.0, 0.0, 204.0, 500.0]])
    image = torch.zeros(3, 1000, 1000)
    kept = {}
    for floor in (0.01, 0.005, 0.001):                               # darknet: `if (w < floor) continue`
        kept[floor] = data._crop_resize(image, boxes, (0, 0, 1000, 1000), (10, 10), min_box=floor)[2].tolist()
    assert kept == {0.01: [0], 0.005: [0, 1], 0.001: [0, 1, 2]}
    # the floors by revision: .01 in 2015 and 2016 (fill_truth_region, and fill_truth_detection of c6afc7ff),
    # .001 in fill_truth_detection from 60e952ba (.005 between, from d2dece3d)
    assert [darknet.REVISIONS[r]["min_box"] for r in ("6103ecc4", "aebe9377", "c6afc7ff", "60e952ba")] == \
        [0.01, 0.01, 0.01, 0.001]


def test_augmentations_take_their_floor_from_their_revision():
    for name, (revision, _) in data.AUGMENTATION_REVISIONS.items():
        assert data.AUGMENTATIONS[name].keywords["min_box"] == darknet.REVISIONS[revision]["min_box"]
    assert data.AUGMENTATION_REVISIONS["darknet-2015"][0] == "6103ecc4"


def test_place_image_is_nearest_neighbour_at_an_integer_offset():
    # image.c place_image (60e952ba): canvas[y + dy][x + dx] = im[int(y/h·H)][int(x/w·W)], dropped outside
    image = torch.arange(8.0).view(1, 2, 4)                           # rows [0, 1, 2, 3], [4, 5, 6, 7]
    canvas = data.place_image(image, (2, 3), (1, -1), torch.full((1, 2, 3), -1.0))
    # w = 2: x = 0 -> int(0) = 0, x = 1 -> int(1/2·4) = 2; h = 3: y = 0 -> 0, 1 -> int(2/3) = 0, 2 -> int(4/3) = 1
    # at dx = 1, dy = -1: row y = 0 falls off the top; y = 1, 2 land on canvas rows 0, 1, columns 1, 2
    assert canvas.tolist() == [[[-1.0, 0.0, 2.0], [-1.0, 4.0, 6.0]]]


def test_every_preset_with_a_file_trains_as_its_revision():
    import train
    for family in train.FAMILIES.values():
        for preset, p in family.PRESETS.items():
            if "revision" not in p:
                continue
            row = darknet.REVISIONS[p["revision"]]
            recipe = train.RECIPES[preset] if preset in train.RECIPES else family.RECIPE
            augment = recipe["augment"]
            # the revision's data path, or (yolo9000) that data path with its own cfg's values, at the same revision
            assert augment == row["augment"] or data.AUGMENTATION_REVISIONS[augment][0] == p["revision"], preset
            # the floor the augmentation keeps is the revision's
            assert data.AUGMENTATIONS[augment].keywords["min_box"] == row["min_box"], preset
    # the 2015 YOLOv1 files: the 2015 crop; the release: its crop at .2; 60e952ba: place_image
    assert train.RECIPES["yolov1"]["augment"] == "darknet-2015"
    assert train.RECIPES["yolo-voc.2.0"]["augment"] == "yolov2-jitter.2"
    assert train.RECIPES["yolov2"]["augment"] == "darknet-2017"
