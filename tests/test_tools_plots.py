"""Tests of tools/plots.py: both drawings (matplotlib where installed, the Pillow fallback) write the PNG with the
curves (or pie slices) on it; the fallback's tick values are round numbers covering the range."""
import importlib.util

import numpy as np
import pytest
from PIL import Image

from metrics import evaluate
from tools.plots import (_pillow_panel, curve_panels, loss_names, nice_ticks, save_curves_png, save_error_pies_png,
                         save_pr_curves_png, save_speed_accuracy_png)

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


# -----------------------------------------------------------------------------
# Readable in both renderers: whole labels that overlap nothing, distinct ticks with one evaluation, and the loss
# named as train.py's lines name it

def overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_fallback_panel_writes_whole_labels_that_overlap_nothing():
    from PIL import ImageDraw
    image = Image.new("RGB", (480, 320), "white")
    ylabel = "val mAP@0.5 (VOC07)"                           # the fallback cut it to "val mAP@0." over the title
    texts = _pillow_panel(ImageDraw.Draw(image), (0, 0, 480, 320), "validation", "epoch", ylabel,
                          [(1.0, 0.4)], (0.0, 1.0), (0.0, 1.0))
    assert [t for t, _ in texts][:3] == ["validation", "epoch", ylabel]         # title, x label, y label: whole
    for k, (_, a) in enumerate(texts):
        assert 0 <= a[0] and a[2] <= 480 and 0 <= a[1] and a[3] <= 320          # inside the panel
        assert not any(overlap(a, b) for _, b in texts[k + 1:])


def test_one_evaluation_gives_distinct_epoch_ticks():
    # a run stopped by --time-limit at epoch 0.202: one evaluation, 4 logged steps. The fallback used to span
    # [0.202, 0.202 + 1e-9] and print "0.202" under every tick; both panels now share the x range 0 .. 0.202
    steps = [{"step": 10 * k, "epoch": 0.202 * k / 4, "loss": 5.0 / k, "lr": 1e-3} for k in range(1, 5)]
    history = [{"epoch": 0.202, "loss": 2.0, "val": 0.3}]
    panels = curve_panels(steps, history, "val mAP@0.5 (VOC07)")
    assert [p["xlimits"] for p in panels] == [(0.0, 0.202), (0.0, 0.202)]
    from PIL import ImageDraw
    image = Image.new("RGB", (480, 320), "white")
    p = panels[1]
    texts = _pillow_panel(ImageDraw.Draw(image), (0, 0, 480, 320), p["title"], "epoch", p["ylabel"],
                          p["series"][0][1], p["ylimits"], p["xlimits"])
    x_ticks = [t for t, box in texts[3:] if box[1] >= 320 - 44 + 6]   # under the x axis (bottom + 6)
    assert x_ticks == ["0", "0.05", "0.1", "0.15", "0.2"]                       # nice_ticks(0, 0.202): step .05


def test_the_loss_is_named_as_train_py_prints_it():
    # 30 steps logged every 10 (--log-interval 10): the line is the mean of each 10 steps, the epoch's own point
    # the epoch mean, the two quantities train.py's progress line and end-of-epoch line print
    steps = [{"step": 10 * k, "epoch": k / 3, "loss": 3.0 / k, "lr": 1e-3} for k in range(1, 4)]
    loss_panel = curve_panels(steps, [{"epoch": 1, "loss": 1.8, "val": 0.4}], "val mAP@0.5 (VOC07)")[0]
    assert [name for name, _ in loss_panel["series"]] == ["loss (10-step mean)", "loss (epoch mean)"]
    assert loss_panel["series"][1][1] == [(1, 1.8)]


def test_train_py_prints_the_losses_under_the_plots_names():
    import train
    assert train.loss_names(10) == loss_names(10) == ("loss (10-step mean)", "loss (epoch mean)")


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
