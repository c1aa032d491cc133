"""Tests of tools/plots.py: both drawings (matplotlib where installed, the Pillow fallback) write the PNG with the
curves (or pie slices) on it; the fallback's tick values are round numbers covering the range."""
import importlib.util

import numpy as np
import pytest
from PIL import Image

from metrics import evaluate
from tools.plots import nice_ticks, save_curves_png, save_error_pies_png, save_pr_curves_png, save_speed_accuracy_png

# One epoch of 30 logged steps (train.py's run["steps"]) and one evaluation: readable with a single epoch.
STEPS = [{"step": 10 * k, "epoch": k / 30, "loss": 10.0 / k, "lr": 1e-3} for k in range(1, 31)]
HISTORY = [{"epoch": 1, "loss": 1.0, "val": 0.4}]
MATPLOTLIB = [False] + ([True] if importlib.util.find_spec("matplotlib") else [])   # the fallback always


def blue_pixels(path):
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return ((image[..., 2] > 150) & (image[..., 0] < 120) & (image[..., 1] < 160)).sum()


def test_nice_ticks():
    assert nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]           # step (1 - 0) / 5 = 0.2
    assert nice_ticks(0.0333, 1.0) == [0.2, 0.4, 0.6, 0.8, 1.0]        # raw step .19 -> .2, from ceil(.0333/.2)·.2
    assert nice_ticks(3, 1000) == [200, 400, 600, 800, 1000]           # raw 199.4 -> 200
    assert nice_ticks(5, 5) == [5]


@pytest.mark.parametrize("use_matplotlib", MATPLOTLIB)
def test_curves_png_from_logged_steps(tmp_path, use_matplotlib):
    save_curves_png(STEPS, HISTORY, tmp_path / "curves.png", "mAP@0.5", use_matplotlib=use_matplotlib)
    image = Image.open(tmp_path / "curves.png")
    assert image.size == ((1000, 360) if use_matplotlib else (960, 320))   # figsize 10 x 3.6 at 100 dpi
    assert blue_pixels(tmp_path / "curves.png") > 200      # the loss line over 30 points, and the mAP point


def test_curves_png_fallback_without_any_validation(tmp_path):
    save_curves_png([], [{"epoch": 1, "loss": 1.0, "val": None}], tmp_path / "c.png", "top-1", use_matplotlib=False)
    assert Image.open(tmp_path / "c.png").size == (960, 320)


@pytest.mark.parametrize("use_matplotlib", MATPLOTLIB)
def test_pr_curves_png(tmp_path, use_matplotlib):
    gts = [{"boxes": np.array([[0, 0, 10, 10]]), "labels": np.array([0])}]
    dets = [{"boxes": np.array([[0, 0, 10, 10]]), "scores": np.array([0.9]), "labels": np.array([0])}]
    result = evaluate(dets, gts, "voc07", num_classes=2)        # class 1 has no ground truth: an empty panel
    save_pr_curves_png(result, ["cat", "dog"], tmp_path / "pr.png", use_matplotlib=use_matplotlib)
    assert Image.open(tmp_path / "pr.png").size == ((520, 240) if use_matplotlib else (2 * 260, 220))


def loc_pixels(array):
    """Pixels of the Loc slice's colour (79, 129, 189), within antialiasing."""
    return (np.abs(array.astype(int) - [79, 129, 189]).max(axis=-1) <= 12).sum()


@pytest.mark.parametrize("use_matplotlib", MATPLOTLIB)
def test_error_pies_slices_follow_the_shares(tmp_path, use_matplotlib):
    # two pies: Loc 3/4 of the left one, 1/4 of the right one -> its colour covers about 3 times more on the left
    save_error_pies_png({"ours": [0.25, 0.75, 0, 0, 0], "other": [0.75, 0.25, 0, 0, 0]}, tmp_path / "pies.png",
                        use_matplotlib=use_matplotlib)
    image = np.asarray(Image.open(tmp_path / "pies.png").convert("RGB"))
    assert image.shape[:2] == ((440, 800) if use_matplotlib else (320, 600))   # 4 x 4.4 in per pie; 300 x 320 px
    left, right = loc_pixels(image[:, : image.shape[1] // 2]), loc_pixels(image[:, image.shape[1] // 2:])
    assert 2.5 < left / right < 3.5


@pytest.mark.parametrize("use_matplotlib", MATPLOTLIB)
def test_speed_accuracy_png(tmp_path, use_matplotlib):
    ours = {"batch 1": [(288, 30.0, 0.70), (416, 15.0, 0.75)], "batch 8": [(288, 60.0, 0.70), (416, 30.0, 0.75)]}
    paper = {"paper": [(288, 91, 0.69), (416, 67, 0.768)]}
    save_speed_accuracy_png({"this run": ours, "the paper": paper}, tmp_path / "speed.png", "mAP",
                            use_matplotlib=use_matplotlib)
    image = Image.open(tmp_path / "speed.png")
    assert image.size == (1100, 420)       # two panels: matplotlib 5.5 x 4.2 in each at 100 dpi, Pillow 550 x 420 px
    assert blue_pixels(tmp_path / "speed.png") > 50                           # the batch-1 line
