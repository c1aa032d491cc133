"""train.py: schedules, weight-decay groups, exact resume, accumulation, guard rails, checkpoints, DDP, pre-training.

Every run is tiny (the synthetic shapes at 64 x 64, 8 or 16 images, CPU): the file takes about a minute on two cores,
most of it in the subprocess tests (DDP, kill-and-resume) and the Darknet-19 pre-training.
"""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image

from tools import checkpoints
import darknet
import train
import yolov1
import yolov2
from darknet import save_darknet_weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_args(out, *extra):
    """A run of the synthetic default cut to seconds: 16 images of 64 x 64, batch 8, 1 epoch."""
    return train.get_args_parser().parse_args(
        ["--out", str(out), "--img-size", "64", "--train-images", "16", "--val-images", "8", "--batch-size", "8",
         "--epochs", "1", "--workers", "0", "--eval-every", "1", "--log-interval", "1", *extra])


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def run_script(*argv, timeout=240):
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))


# -----------------------------------------------------------------------------
# Learning-rate schedules against the papers' numbers

def test_yolov1_lr_follows_section_2_2():
    # warm-up 1e-3 -> 1e-2 over WARMUP_EPOCHS (our choice), then 1e-2 to epoch 75, 1e-3 for 30, 1e-4 for 30
    assert train.yolov1_lr(0) == pytest.approx(1e-3)
    assert train.yolov1_lr(yolov1.WARMUP_EPOCHS / 2) == pytest.approx(1e-3 + (1e-2 - 1e-3) / 2)
    assert train.yolov1_lr(yolov1.WARMUP_EPOCHS) == pytest.approx(1e-2)
    assert train.yolov1_lr(74.99) == pytest.approx(1e-2)
    assert train.yolov1_lr(75) == pytest.approx(1e-3)
    assert train.yolov1_lr(104.99) == pytest.approx(1e-3)
    assert train.yolov1_lr(105) == pytest.approx(1e-4)
    assert train.yolov1_lr(134.99) == pytest.approx(1e-4)


def test_yolov2_lr_burn_in_then_steps_at_60_and_90():
    per_epoch = 100                                  # batches per epoch
    assert train.yolov2_lr(0, per_epoch) == 0.0      # darknet: (0 / 1000)^4
    assert train.yolov2_lr(500, per_epoch) == pytest.approx(1e-3 * 0.5 ** 4)
    assert train.yolov2_lr(1000, per_epoch) == pytest.approx(1e-3)
    assert train.yolov2_lr(60 * per_epoch - 1, per_epoch) == pytest.approx(1e-3)
    assert train.yolov2_lr(60 * per_epoch, per_epoch) == pytest.approx(1e-4)
    assert train.yolov2_lr(90 * per_epoch, per_epoch) == pytest.approx(1e-5)
    assert train.yolov2_lr(160 * per_epoch - 1, per_epoch) == pytest.approx(1e-5)


def test_poly_lr_power_4():
    assert train.poly_lr(0, 100, lr=0.1) == pytest.approx(0.1)
    assert train.poly_lr(50, 100, lr=0.1) == pytest.approx(0.1 * 0.5 ** 4)


def test_recipes_hold_the_papers_values():
    v1, v2 = train.RECIPES["yolov1"], train.RECIPES["yolov2"]
    # YOLOv1 §2.2: 135 epochs, batch 64, momentum .9, decay 5e-4, dropout .5, lr 1e-3 -> 1e-2, /10 at 75 and 105
    assert [v1[k] for k in ("epochs", "batch_size", "momentum", "weight_decay", "dropout")] == [135, 64, .9, 5e-4, .5]
    assert [v1[k] for k in ("lr", "warmup_lr", "lr_steps")] == [1e-2, 1e-3, [75, 105]]
    # YOLOv2 §3: 160 epochs, 1e-3, /10 at 60 and 90, momentum .9, decay 5e-4, multi-scale; darknet burn-in 1000
    assert [v2[k] for k in ("epochs", "lr", "lr_steps", "momentum", "weight_decay")] == [160, 1e-3, [60, 90], .9, 5e-4]
    assert v2["burn_in"] == 1000 and v2["multiscale"]


def test_multiscale_size_changes_every_10_batches_within_320_608():
    sizes = [train.multiscale_size(0, step) for step in range(200)]
    assert set(sizes) <= set(range(320, 608 + 1, 32))
    assert all(len(set(sizes[s:s + 10])) == 1 for s in range(0, 200, 10))   # constant over each 10 batches
    assert len(set(sizes)) > 3
    # another input size keeps the paper's offsets: 128 - 3*32 = 32 ... 128 + 6*32 = 320
    assert {train.multiscale_size(0, step, img_size=128) for step in range(0, 2000, 10)} == set(range(32, 321, 32))


def test_help_names_the_paper_values(capsys):
    with pytest.raises(SystemExit):
        train.get_args_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "§2.2: 135" in text and "yolov1 135" in text and "yolov2 160" in text and "5e-4" in text


# -----------------------------------------------------------------------------
# Weight decay only on conv / connected weights

def test_param_groups_decay_only_conv_linear_and_local_weights():
    model = nn.Sequential(darknet.ConvBlock(3, 4, 3, batch_norm=True), darknet.ConvBlock(4, 4, 1, batch_norm=False),
                          darknet.LocalLayer(4, 2, 3, 5, 5), nn.Flatten(), nn.Linear(50, 2))
    decay, no_decay = train.param_groups(model, 5e-4)
    ids = lambda ps: {id(p) for p in ps}
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert ids(decay["params"]) == ids([model[0].conv.weight, model[1].conv.weight, model[2].weight, model[4].weight])
    assert ids(no_decay["params"]) == ids([model[0].bn.weight, model[0].bn.bias, model[1].conv.bias, model[2].bias,
                                           model[4].bias])


# -----------------------------------------------------------------------------
# Training runs

def test_a_few_steps_lower_the_loss(tmp_path):
    # Adam, the synthetic recipe's optimizer, at 1e-4: at the recipe's 1e-3 without its warm-up, 8 steps of 8 images
    # overshoot (measured: loss 26 -> 86)
    result = train.main(tiny_args(tmp_path, "--epochs", "4", "--augment", "none", "--lr", "1e-4",
                                  "--warmup-epochs", "0", "--eval-every", "4"))
    losses = [row["loss"] for row in result["history"]]
    assert losses[-1] < 0.8 * losses[0], losses
    assert 0.0 <= result["best"] <= 1.0                               # a VOC07 mAP was computed
    for name in ("last.pt", "best.pt", "log.csv", "curves.png", "pr_curves.png"):
        assert (tmp_path / name).exists(), name
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "lr", "loss", "loss_xy", "loss_wh", "loss_obj", "loss_noobj", "loss_cls", "val"} <= set(header)


def test_resume_continues_exactly(tmp_path):
    # augmentation (yolov1) and dropout on: both must replay from (seed, epoch) after the resume, which takes the
    # seed from the checkpoint
    extra = ["--dropout", "0.5", "--augment", "yolov1", "--seed", "3"]
    train.main(tiny_args(tmp_path / "straight", "--epochs", "2", *extra))
    train.main(tiny_args(tmp_path / "split", "--epochs", "1", *extra))
    resumed = train.get_args_parser().parse_args(["--resume", str(tmp_path / "split" / "last.pt"), "--epochs", "2"])
    train.main(resumed)
    a, b = weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "split" / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ckpt = torch.load(tmp_path / "split" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["seen"] == 2 * 16 and ckpt["model_config"]["preset"] == "yolov1-shapes"
    assert ckpt["class_names"] == ["circle", "rectangle", "triangle"] and ckpt["config"]["epochs"] == 2
    assert set(ckpt["rng"]) == {"torch", "numpy", "python", "cuda"} and ckpt["config"]["seed"] == 3


def test_accumulation_equals_the_full_batch(tmp_path):
    # batch 8 in one piece vs 2 micro-batches of 4: no batch norm, no dropout, so the gradients must agree. SGD: Adam's
    # first step is lr·g/(|g| + eps), ~lr·sign(g), which turns float rounding in near-zero gradients into full steps
    common = ["--optimizer", "sgd", "--no-batch-norm", "--dropout", "0", "--augment", "none", "--train-images", "8",
              "--lr", "0.1", "--warmup-epochs", "0", "--eval-every", "100", "--precision", "fp32"]   # float32 sums
    train.main(tiny_args(tmp_path / "full", *common))
    train.main(tiny_args(tmp_path / "acc", *common, "--accumulate", "2"))
    args = tiny_args(tmp_path, *common)
    train.resolve(args)
    torch.manual_seed(args.seed)
    start = train.build_model(args, 3).state_dict()          # main() seeds the same way: the same initial weights
    full, acc = weights(tmp_path / "full" / "last.pt"), weights(tmp_path / "acc" / "last.pt")
    for k in full:
        step_full, step_acc = full[k] - start[k], acc[k] - start[k]
        assert step_full.abs().sum() > 0, k
        assert torch.allclose(step_full, step_acc, rtol=1e-4, atol=1e-7), k


def test_non_finite_loss_stops_with_step_files_and_checkpoint(tmp_path, monkeypatch, capsys):
    calls = []
    original = yolov1.yolov1_loss

    def nan_on_second_step(*a, **k):
        terms = original(*a, **k)
        calls.append(1)
        if len(calls) == 2:
            terms["total"] = terms["total"] * float("nan")
        return terms

    monkeypatch.setattr(yolov1, "yolov1_loss", nan_on_second_step)
    with pytest.raises(SystemExit) as error:
        train.main(tiny_args(tmp_path, "--train-images", "8", "--epochs", "2"))
    assert error.value.code == 1
    message = capsys.readouterr().out
    assert "error: non-finite loss nan at epoch 2 step 1" in message
    assert "shapes://0/" in message                                     # the batch's image files
    assert f"--resume {tmp_path / 'last.pt'} --lr LOWER" in message       # how to go on
    # last.pt holds the weights before the step that was not taken: epoch 1 done, nothing of epoch 2
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["epoch_step"], checkpoint["seen"]) == (1, 0, 8)
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values())


def test_dataset_smaller_than_a_batch_fails_before_training(tmp_path):
    with pytest.raises(SystemExit, match="fewer than one batch"):
        train.main(tiny_args(tmp_path, "--train-images", "4"))
    assert not (tmp_path / "last.pt").exists()


def test_checkpoint_for_another_class_count_is_refused(tmp_path):
    train.main(tiny_args(tmp_path, "--train-images", "8", "--eval-every", "100"))
    args = tiny_args(tmp_path / "other")
    train.resolve(args)
    other = train.build_model(args, num_classes=5)
    with pytest.raises(SystemExit, match="3 classes.*expects 'yolov1-shapes' with 5 classes"):
        train.load_weights(other, str(tmp_path / "last.pt"))


def test_weights_takes_a_partial_darknet_backbone(tmp_path):
    # a darknet file holding the 8 trunk convs of tiny-YOLOv2 (as darknet `partial` writes one) into the 9-layer net
    source = yolov2.build("yolov2-tiny-voc", num_classes=3, img_size=64)
    save_darknet_weights(source.trunk, str(tmp_path / "tiny.conv.weights"), seen=640)
    model = yolov2.build("yolov2-tiny-voc", num_classes=3, img_size=64)
    message = train.load_weights(model, str(tmp_path / "tiny.conv.weights"))
    assert message.endswith("the first 8 of 9 darknet layers (version 0.2.0, 640 images seen)")
    assert torch.equal(model.trunk[0].conv.weight, source.trunk[0].conv.weight)
    assert not torch.equal(model.detect.conv.weight, source.detect.conv.weight)    # the head keeps its own


def test_backbone_without_torchvision_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)              # import torchvision -> ImportError
    with pytest.raises(SystemExit, match="--backbone resnet18 needs torchvision"):
        train.main(tiny_args(tmp_path, "--backbone", "resnet18"))


def write_voc(root, class_name="dog", images=8, size=64):
    """A VOCdevkit with VOC2007 trainval and test: one box per image, a bright square on a dark background."""
    base = root / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(base / sub)
    ids = [f"{i:06d}" for i in range(images)]
    for i, image_id in enumerate(ids):
        x0 = 4 + 3 * i                                                   # box [x0, 10] - [x0 + 30, 40], 1-based
        pixels = np.zeros((size, size, 3), np.uint8)
        pixels[9:40, x0 - 1:x0 + 30] = 220
        Image.fromarray(pixels).save(base / "JPEGImages" / f"{image_id}.jpg")
        (base / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>{size}</width><height>{size}</height><depth>3</depth></size>"
            f"<object><name>{class_name}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>10</ymin>"
            f"<xmax>{x0 + 30}</xmax><ymax>40</ymax></bndbox></object></annotation>")
    for split in ("trainval", "test"):
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")


def test_trains_on_a_vocdevkit_tree(tmp_path, capsys):
    write_voc(tmp_path / "voc")
    result = train.main(tiny_args(tmp_path / "out", "--data", str(tmp_path / "voc"), "--model", "yolov1-shapes",
                                  "--recipe", "synthetic"))
    assert len(result["history"]) == 1 and 0.0 <= result["best"] <= 1.0
    assert "training set: 8 images, 8 objects; validation set: 8 images, 8 objects" in capsys.readouterr().out
    ckpt = torch.load(tmp_path / "out" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["num_classes"] == 20 and ckpt["class_names"][11] == "dog"


@pytest.mark.parametrize("name", [n for n in yolov2.PRESETS if n != "yolo.2.0"])  # = yolo-voc.2.0 with 80 classes
def test_each_yolov2_preset_trains_on_a_vocdevkit_tree_and_on_shapes(tmp_path, name):
    # --data selects the model family's recipe (YOLOv2 §3: SGD, burn-in, multi-scale, darknet's augmentation)
    write_voc(tmp_path / "voc")
    result = train.main(tiny_args(tmp_path / "voc_run", "--data", str(tmp_path / "voc"), "--model", name))
    assert len(result["history"]) == 1
    ckpt = torch.load(tmp_path / "voc_run" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["preset"] == name and ckpt["model_config"]["num_classes"] == 20
    # the release presets (yolo-voc.2.0, yolo.2.0) have recipes of their own (yolov2.PRESET_RECIPES)
    assert ckpt["config"]["recipe"] == (name if name in yolov2.PRESET_RECIPES else "yolov2")
    assert ckpt["config"]["multiscale"] is True
    assert ckpt["seen"] == 8                        # one epoch of the 8 training images (darknet's `seen`)
    # without --data: the synthetic default, 3 classes
    train.main(tiny_args(tmp_path / "shapes_run", "--model", name))
    ckpt = torch.load(tmp_path / "shapes_run" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["model_config"]["preset"] == name and ckpt["model_config"]["num_classes"] == 3 and ckpt["seen"] == 16


def test_misconfigured_dataset_fails_before_the_first_step(tmp_path):
    write_voc(tmp_path / "voc", class_name="wolf")                      # not a VOC class: every object dropped
    with pytest.raises(SystemExit, match="unknown class name 'wolf'"):
        train.main(tiny_args(tmp_path / "out", "--data", str(tmp_path / "voc"), "--recipe", "synthetic"))
    assert not (tmp_path / "out" / "last.pt").exists()


# -----------------------------------------------------------------------------
# Checkpoints survive faults

def test_failed_checkpoint_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = str(tmp_path / "last.pt")
    checkpoints.save_checkpoint({"epoch": 1, "x": torch.ones(3)}, path)

    def broken_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.save_checkpoint({"epoch": 2, "x": torch.zeros(3)}, path)
    kept = torch.load(path, weights_only=True)
    assert kept["epoch"] == 1 and torch.equal(kept["x"], torch.ones(3))


KILL_DURING_SECOND_SAVE = """
import os, signal, sys, torch, train
saves, real_save = [], torch.save
def save(obj, f):
    real_save(obj, f)                       # the temporary file is complete ...
    if f.name.endswith("last.pt.tmp"):
        saves.append(1)
        if len(saves) == 2:                 # ... but the process dies before the rename
            os.kill(os.getpid(), signal.SIGKILL)
torch.save = save
train.main(train.get_args_parser().parse_args(sys.argv[1:]))
"""


def test_killed_during_a_checkpoint_write_then_resumed(tmp_path):
    args = ["--img-size", "64", "--train-images", "16", "--val-images", "8", "--batch-size", "8", "--workers", "0",
            "--eval-every", "100", "--epochs", "3"]
    killed = run_script("-c", KILL_DURING_SECOND_SAVE, *args, "--out", str(tmp_path / "killed"))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    ckpt = torch.load(tmp_path / "killed" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1                                           # the previous checkpoint, intact
    resumed = run_script("train.py", "--resume", str(tmp_path / "killed"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed" in resumed.stdout and "epoch   3/3 done" in resumed.stdout
    straight = run_script("train.py", *args, "--out", str(tmp_path / "straight"))   # same threads as the others
    assert straight.returncode == 0, straight.stderr
    a, b = weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "killed" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


# -----------------------------------------------------------------------------
# Distributed: two CPU processes with gloo

def test_two_process_gloo_run_equals_one_process(tmp_path):
    # No batch norm, no dropout: 2 processes x 4 images average to the gradient of 1 process x 8 images. SGD, whose
    # step is linear in the gradient: Adam divides by sqrt(v) + 1e-8, so a weight whose gradient is near 1e-8 moves
    # by up to lr either way on a difference in the last bits of a sum (4e-6 at the synthetic recipe's 3e-3)
    args = ["train.py", "--img-size", "64", "--train-images", "16", "--val-images", "8", "--batch-size", "8",
            "--workers", "0", "--epochs", "1", "--no-batch-norm", "--dropout", "0", "--augment", "none",
            "--eval-every", "1", "--optimizer", "sgd", "--lr", "0.05", "--warmup-lr", "0.05",
            "--precision", "fp32"]          # float32: sums in another order agree to 1e-4
    ddp = run_script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args,
                     "--out", str(tmp_path / "ddp"))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert ddp.stdout.count("epoch   1/1 done") == 1                   # only rank 0 logs
    assert "(2 x 1 x 4)" in ddp.stdout
    train.main(train.get_args_parser().parse_args([*args[1:], "--out", str(tmp_path / "one")]))
    a, b = weights(tmp_path / "ddp" / "last.pt"), weights(tmp_path / "one" / "last.pt")
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k


# -----------------------------------------------------------------------------
# Backbone pre-training on an ImageNet-style folder, then its trunk in the detector

def write_folder(root, classes=("red", "blue"), per_class=4, size=32):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        os.makedirs(root / name)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pixels[..., 0 if c == 0 else 2] += 180                      # red images and blue images
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_classifier_pretraining_and_its_trunk_in_the_detector(tmp_path, capsys):
    write_folder(tmp_path / "folder")
    result = train.main(train.get_args_parser().parse_args(
        ["--task", "classify", "--model", "darknet19", "--data", str(tmp_path / "folder"), "--img-size", "32",
         "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--workers", "0", "--out", str(tmp_path / "cls")]))
    assert set(result["result"]) >= {"top1", "top5"}
    assert 0.0 <= result["result"]["top1"] <= result["result"]["top5"] == 1.0      # 2 classes: top-5 is all
    assert "top-1" in capsys.readouterr().out
    detector = yolov2.build("yolov2-voc", num_classes=3, img_size=64)
    message = train.load_weights(detector, str(tmp_path / "cls" / "last.pt"))
    assert "the darknet19 trunk, 18 of" in message
    classifier = weights(tmp_path / "cls" / "last.pt")
    assert torch.equal(detector.stage_a[0].conv.weight, classifier["stage_a.0.conv.weight"])
    last = len(detector.stage_b) - 1
    assert torch.equal(detector.stage_b[last].bn.running_var, classifier[f"stage_b.{last}.bn.running_var"])


def test_kmeans_prints_the_dimension_clusters_of_the_training_boxes(tmp_path, capsys):
    train.main(tiny_args(tmp_path / "out", "--kmeans"))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("k=")]
    assert [line.split()[0] for line in lines] == [f"k={k}" for k in range(1, 10)]
    iou = [float(line.split()[3].rstrip("%")) for line in lines]      # "k=1  avg IoU 55.0%  anchors ..."
    assert iou[-1] > iou[0]                                          # 9 centroids fit the shapes better than 1
    assert lines[4].count(",") == 2 * 5 - 1                          # k=5: five "w,h" anchors
    assert not (tmp_path / "out" / "last.pt").exists()               # nothing trained


def test_last_pt_every_few_minutes_mid_epoch(tmp_path, monkeypatch):
    # --save-minutes: the default run is one long epoch, so last.pt is also written mid-epoch; the wish to save
    # travels in the step's flag (every process gives its generators), and the terms read there go into the sums
    saved, original = [], train.save_position

    def recorded(run, args, improved=False, rng=None):
        saved.append((run.pos.epoch, run.pos.epoch_step, len(rng), sorted(run.pos.sums)))
        return original(run, args, improved, rng)
    monkeypatch.setattr(train, "save_position", recorded)
    train.main(tiny_args(tmp_path, "--save-minutes", "1e-9", "--log-interval", "5"))
    # 16 images, batch 8: step 1 of 2 saved on time (epoch 0, step 1), then the epoch's end (epoch 1, step 0)
    assert [s[:3] for s in saved] == [(0, 1, 1), (1, 0, 1)]
    assert saved[0][3] == ["cls", "noobj", "obj", "total", "wh", "xy"]
