"""Tests of tools/plots.py: the PNGs are written, have the size the functions draw, and show the curves."""
import numpy as np
from PIL import Image

from metrics import evaluate
from tools.plots import save_curves_png, save_pr_curves_png


def test_pr_curves_png(tmp_path):
    gts = [{"boxes": np.array([[0, 0, 10, 10]]), "labels": np.array([0])}]
    dets = [{"boxes": np.array([[0, 0, 10, 10]]), "scores": np.array([0.9]), "labels": np.array([0])}]
    result = evaluate(dets, gts, "voc07", num_classes=2)        # class 1 has no ground truth: an empty panel
    save_pr_curves_png(result, ["cat", "dog"], tmp_path / "pr.png")
    assert (tmp_path / "pr.png").stat().st_size > 0
    assert Image.open(tmp_path / "pr.png").size == (2 * 220, 180)       # 2 columns of (220, 180) panels


def test_curves_png(tmp_path):
    history = [{"epoch": 1, "loss": 3.0, "val": None},          # not evaluated this epoch: no point
               {"epoch": 2, "loss": 2.0, "val": 0.2},
               {"epoch": 3, "loss": 1.5, "val": 0.4}]
    save_curves_png(history, tmp_path / "curves.png", "mAP@0.5")
    image = np.asarray(Image.open(tmp_path / "curves.png").convert("RGB"))
    assert image.shape == (320, 960, 3)                         # two 480 x 320 panels side by side
    # inside the first panel's frame (pad 40): the blue loss line and its points
    inside = image[41:279, 41:439]
    assert (inside != 255).any(axis=2).sum() > 100
    assert ((inside[..., 2] > 200) & (inside[..., 0] < 100)).any()   # blue
    # second panel: the two evaluated epochs are drawn too
    assert ((image[41:279, 521:919, 2] > 200) & (image[41:279, 521:919, 0] < 100)).any()


def test_curves_png_without_any_validation(tmp_path):
    save_curves_png([{"epoch": 1, "loss": 1.0, "val": None}], tmp_path / "curves.png", "top-1")
    assert Image.open(tmp_path / "curves.png").size == (960, 320)
