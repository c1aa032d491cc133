"""Tests of tools/classify.py: the classification recipes' augmentation (darknet's random_augment_image, the 2015
[crop] layer) and evaluation crops, with values worked out by hand."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import data
from tools import classify


def ramp(H, W):
    """(3, H, W) image whose value is its column index x: bilinear sampling at x returns x itself."""
    return torch.arange(W, dtype=torch.float32).expand(3, H, W).clone()


def test_rotate_crop_identity_and_magnification():
    image = torch.rand(3, 4, 4)
    # scale 1, no rotation, no shift, size = the image: rx = (x - 2) + 2 = x
    assert torch.allclose(classify.rotate_crop(image, 0.0, 1.0, 4, 0.0, 0.0, 1.0), image)
    # scale 2: rx = (x - 2)/2 + 2 = x/2 + 1 -> 1, 1.5, 2, 2.5 on the ramp
    out = classify.rotate_crop(ramp(4, 4), 0.0, 2.0, 4, 0.0, 0.0, 1.0)
    assert torch.allclose(out[0], torch.tensor([1.0, 1.5, 2.0, 2.5]).expand(4, 4))
    # aspect 2: rx = 2(x - 2) + 2 = 2x - 2 -> -2, 0, 2, 4, clamped to the edges 0 and 3
    out = classify.rotate_crop(ramp(4, 4), 0.0, 1.0, 4, 0.0, 0.0, 2.0)
    assert torch.allclose(out[0], torch.tensor([0.0, 0.0, 2.0, 3.0]).expand(4, 4))
    # a shift of dx = 1 output pixel: rx = x - 2 + 1 + 2 = x + 1 -> 1, 2, 3, 4 -> 3
    out = classify.rotate_crop(ramp(4, 4), 0.0, 1.0, 4, 1.0, 0.0, 1.0)
    assert torch.allclose(out[0], torch.tensor([1.0, 2.0, 3.0, 3.0]).expand(4, 4))


def test_rotate_crop_quarter_turn_about_darknets_centre():
    # rad = π/2: rx = -(y - 2) + 2 = 4 - y, ry = x. Image value 10·row + column -> out[y, x] = 10·x + min(4 - y, 3)
    image = (10 * torch.arange(4.0).view(4, 1) + torch.arange(4.0).view(1, 4)).expand(3, 4, 4)
    out = classify.rotate_crop(image, math.pi / 2, 1.0, 4, 0.0, 0.0, 1.0)
    expected = torch.tensor([[10.0 * x + min(4 - y, 3) for x in range(4)] for y in range(4)])
    assert torch.allclose(out[0], expected, atol=1e-5)


def test_augment_darknet_without_shifts_is_the_image_or_its_mirror():
    # crop (1, 1): r = size = the shorter side, scale 1, margins 0; no rotation, hue, saturation or exposure
    image = torch.rand(3, 6, 6)
    for seed in range(4):
        out = classify.augment_darknet(image, np.random.default_rng(seed), 6, crop=(1, 1), angle=0, aspect=1,
                                       hue=0, saturation=1, exposure=1)
        assert torch.allclose(out, image, atol=1e-6) or torch.allclose(out, image.flip(-1), atol=1e-6)


def test_augment_darknet_crop_range_scales_the_shorter_side():
    # 4 x 8 image (H x W), size 4, crop (2, 2): r = 8, scale = 8 / 4 = 2; margins dx = (8·2 - 4)/2 = 6, dy = (4·2 - 4)/2
    # = 2. Whatever the offsets, neighbouring output columns read the ramp x / 7 (colours stay in [0, 1]) 1/scale = .5
    # columns apart (before a mirror), where neither lies on a clamped edge (0 or 1).
    for seed in range(4):
        out = classify.augment_darknet(ramp(4, 8) / 7, np.random.default_rng(seed), 4, crop=(2, 2), angle=0,
                                       aspect=1, hue=0, saturation=1, exposure=1)[0, 0]
        inside = (out[1:] > 1e-3) & (out[1:] < 1 - 1e-3) & (out[:-1] > 1e-3) & (out[:-1] < 1 - 1e-3)
        steps = (out[1:] - out[:-1]).abs()[inside]
        assert len(steps) and torch.allclose(steps, torch.full_like(steps, 0.5 / 7), atol=1e-5)


def test_extraction_2015_crop_and_range():
    # size 7 -> loaded at round(7·256/224) = 8; 8 x 8 needs no resize. Training: a 7 x 7 window at offset 0 or 1,
    # maybe mirrored, as 2x - 1. Evaluation: the centre window, offset (8 - 7) // 2 = 0.
    image = torch.rand(3, 8, 8)
    windows = [image[:, t:t + 7, l:l + 7] * 2 - 1 for t in (0, 1) for l in (0, 1)]
    windows += [w.flip(-1) for w in windows]
    for seed in range(4):
        out = classify.augment_extraction_2015(image, np.random.default_rng(seed), 7)
        assert any(torch.equal(out, w) for w in windows)
    assert torch.equal(classify.test_transform(image, 7, "extraction.2015"), image[:, 0:7, 0:7] * 2 - 1)


def test_darknet19_evaluation_resizes_the_shorter_side_then_crops_the_centre():
    # 4 x 8 ramp, size 2: resize_min -> w = 8·2 // 4 = 4, h = 2; darknet's resize samples column c at c·7/3;
    # the centre crop starts at (4 - 2) // 2 = 1: columns 7/3 and 14/3.
    out = classify.test_transform(ramp(4, 8), 2, "darknet19")
    assert torch.allclose(out[0], torch.tensor([[7 / 3, 14 / 3], [7 / 3, 14 / 3]]))


def test_recipes_are_the_papers_and_darknets_numbers():
    d19, d448, ext = (classify.RECIPES[k] for k in ("darknet19", "darknet19_448", "extraction.2015"))
    # YOLOv2 §3: 160 epochs, 0.1, power 4, decay .0005, momentum .9; darknet19.cfg: 1,600,000 batches of 128
    assert (d19["epochs"], d19["lr"], d19["power"], d19["weight_decay"], d19["momentum"]) == (160, 0.1, 4, 5e-4, 0.9)
    assert d19["epochs"] * 10_000 == 1_600_000               # 10,000 batches of 128 per epoch of 1.28 M images
    # the fine-tune: 10 epochs at 1e-3 at 448 (darknet19_448.cfg: 100,000 batches of 128)
    assert (d448["epochs"], d448["lr"], d448["img_size"], d448["power"]) == (10, 1e-3, 448, 4)
    # extraction.cfg 2015: .5, power 6, 500,000 batches of 128 = 64,000,000 images = 49.95 epochs of 1,281,167
    assert (ext["lr"], ext["power"], ext["epochs"]) == (0.5, 6, round(500_000 * 128 / 1_281_167))


def test_rand_scale_below_one_as_darknet_swaps_the_bounds():
    # saturation=.75: rand_uniform(1, .75) draws from [.75, 1]; inverted half the time: [1, 4/3]
    draws = [data.rand_scale(np.random.default_rng(seed), 0.75) for seed in range(40)]
    assert all(0.75 <= d <= 1 or 1 <= d <= 1 / 0.75 for d in draws)
    assert any(d < 1 for d in draws) and any(d > 1 for d in draws)
    # the cfgs' values run through the whole augmentation: a (3, 6, 6) image in, (3, 4, 4) in [0, 1] out
    out = classify.AUGMENTATIONS["darknet19"](torch.rand(3, 6, 6), np.random.default_rng(0), 4)
    assert out.shape == (3, 4, 4) and 0 <= out.min() and out.max() <= 1


def test_recipes_schedules_by_hand():
    # poly: lr·(1 - batch / batches)^power, no burn-in (darknet19.cfg of 3bf2f342, extraction.cfg 2015). Halfway:
    import train
    for name, lr_halfway in (("darknet19", 0.1 * 0.5 ** 4), ("darknet19_448", 1e-3 * 0.5 ** 4),
                             ("extraction.2015", 0.5 * 0.5 ** 6)):
        args = SimpleNamespace(**classify.RECIPES[name])
        steps_per_epoch = 10
        total = args.epochs * steps_per_epoch
        assert train.learning_rate(args, 0, steps_per_epoch) == pytest.approx(args.lr)
        assert train.learning_rate(args, total // 2, steps_per_epoch) == pytest.approx(lr_halfway)
        # three quarters of the way: (1/4)^power
        assert train.learning_rate(args, 3 * total // 4, steps_per_epoch) == pytest.approx(args.lr * 0.25 ** args.power)


def test_train_resolves_the_classification_recipes(tmp_path):
    import train
    parse = lambda *flags: train.get_args_parser().parse_args(["--task", "classify", "--out", str(tmp_path / "r"),
                                                              *flags])
    args = parse("--model", "extraction")                # the model's own recipe by default
    train.resolve(args)
    assert (args.recipe, args.lr, args.power, args.epochs, args.augment) == ("extraction.2015", 0.5, 6, 50,
                                                                               "extraction.2015")
    args = parse("--recipe", "darknet19_448", "--lr", "0.01")     # a flag given wins over the recipe
    train.resolve(args)
    assert (args.model, args.img_size, args.epochs, args.lr, args.power) == ("darknet19", 448, 10, 0.01, 4)
    with pytest.raises(ValueError, match="add --task classify"):
        train.resolve(train.get_args_parser().parse_args(["--recipe", "darknet19"]))


def test_hi_res_classifier_recipe_changes_only_size_length_rate_and_crops():
    # YOLOv2 §3: the 448 fine-tune trains "with the above parameters but for only 10 epochs and starting at a learning
    # rate of 10^-3"; darknet19_448.cfg's max_crop 512 is the augmentation's only change
    d19, d448 = classify.RECIPES["darknet19"], classify.RECIPES["darknet19_448"]
    assert {k for k in d19 if d19[k] != d448[k]} == {"epochs", "lr", "img_size", "augment"}
    assert classify.AUGMENTATIONS["darknet19_448"].keywords == {"crop": (1.0, 512 / 448)}
