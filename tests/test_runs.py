"""What a new user meets: the README's two commands, runs that are never lost or overwritten, one-line errors,
values refused at parse time, detect.py's outputs. Runs are the synthetic default cut to seconds (64 x 64)."""
import json
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from PIL import Image

from tools import checkpoints
import detect
from tools import drawing
import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--img-size", "64", "--train-images", "32", "--val-images", "8", "--batch-size", "8", "--workers", "0",
        "--epochs", "1", "--log-interval", "1", "--no-plots"]


def run_script(*argv, cwd=REPO, timeout=300):
    return subprocess.run([sys.executable, *argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO))


def parse(*argv):
    args = train.get_args_parser().parse_args(list(argv))
    train.resolve(args)
    return args


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


# -----------------------------------------------------------------------------
# Two commands

def test_ci_runs_the_readme_test_command():
    readme = open(os.path.join(REPO, "README.md")).read()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    test_command = [b.strip() for b in blocks if "pytest" in b]
    assert len(test_command) == 1, "one test command in the README"
    ci = open(os.path.join(REPO, ".ci", "run")).read().splitlines()
    assert test_command[0] in ci                                        # the same line, exactly
    required = open(os.path.join(REPO, "requirements-test.txt")).read().split()
    assert {"-r", "requirements.txt", "pytest", "pycocotools"} <= set(required)
    train_command = [b for b in blocks if "python train.py" in b][0]
    assert "python -m pip install -r requirements.txt && python train.py" in train_command           # GPU
    assert "--index-url https://download.pytorch.org/whl/cpu" in train_command                        # CPU-only


# -----------------------------------------------------------------------------
# Stopping and resuming: Ctrl-C / SIGTERM save last.pt at that step; --resume continues from exactly there

SIGNAL_AT_STEP = """
import os, signal, sys, yolov1, train
calls, real_loss = [], yolov1.yolov1_loss
def loss(*a, **k):
    calls.append(1)
    if len(calls) == 3:             # during step 3 of 4: the handler asks the loop to stop after this step
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    return real_loss(*a, **k)
yolov1.yolov1_loss = loss
train.main(train.get_args_parser().parse_args(sys.argv[2:]))
"""


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_saves_last_pt_mid_epoch_and_resume_is_exact(tmp_path, name):
    stopped = run_script("-c", SIGNAL_AT_STEP, name, *TINY, "--out", str(tmp_path / "stopped"))
    assert stopped.returncode == (130 if name == "SIGINT" else 1), stopped.stderr[-2000:]
    resume = f"python train.py --resume {tmp_path / 'stopped' / 'last.pt'}"
    assert f"stopped ({name}) at epoch 1 step 3" in stopped.stdout and resume in stopped.stdout
    checkpoint = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["epoch_step"], checkpoint["seen"]) == (0, 3, 24)   # 3 steps of 8
    if name == "SIGTERM":
        return
    resumed = run_script("train.py", "--resume", str(tmp_path / "stopped"))
    assert resumed.returncode == 0 and "resumed" in resumed.stdout and "step     4/4" in resumed.stdout
    assert "step     1/4" not in resumed.stdout                       # steps 1-3 are not trained again
    straight = run_script("train.py", *TINY, "--out", str(tmp_path / "straight"))
    a, b = weights(tmp_path / "straight" / "last.pt"), weights(tmp_path / "stopped" / "last.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_last_pt_is_also_written_every_few_minutes(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(checkpoints, "save_run", lambda state, folder, improved: saved.append(
        (state["epoch"], state["epoch_step"])))
    # --save-minutes 1e-9: the time is up after every step; the last save is the epoch's end
    train.main(train.get_args_parser().parse_args([*TINY, "--out", str(tmp_path), "--save-minutes", "1e-9"]))
    assert saved == [(0, 1), (0, 2), (0, 3), (1, 0)]


# -----------------------------------------------------------------------------
# No run overwrites another; the folder is checked before training

def test_a_new_run_never_overwrites_another(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse().out == os.path.join("runs", "synthetic")
    os.makedirs("runs/synthetic")
    assert parse().out == os.path.join("runs", "synthetic")               # empty (killed before a checkpoint)
    open("runs/synthetic/last.pt", "wb").close()
    assert parse().out == os.path.join("runs", "synthetic2")
    with pytest.raises(ValueError, match="runs/synthetic: holds another run.*--resume.*--exist-ok"):
        parse("--out", "runs/synthetic")
    assert parse("--out", "runs/synthetic", "--exist-ok").out == "runs/synthetic"


def test_an_unwritable_output_folder_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ValueError, match="file/run: cannot write the run's files here"):
        train.main(train.get_args_parser().parse_args([*TINY, "--out", str(tmp_path / "file" / "run")]))


def test_last_pt_never_records_a_best_that_best_pt_does_not_hold(tmp_path, monkeypatch):
    checkpoints.save_run({"best": 0.5}, str(tmp_path), improved=True)
    real = checkpoints.save_checkpoint

    def killed_writing_last(state, path):
        if path.endswith("last.pt"):
            open(path + ".tmp", "wb").write(b"half")       # killed half-way: the temporary file stays behind
            raise KeyboardInterrupt
        real(state, path)

    monkeypatch.setattr(checkpoints, "save_checkpoint", killed_writing_last)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_run({"best": 0.7}, str(tmp_path), improved=True)
    best, last = (torch.load(tmp_path / n, weights_only=True)["best"] for n in ("best.pt", "last.pt"))
    assert (best, last) == (0.7, 0.5)         # last.pt's best (0.5) is at most best.pt's; resuming replays to 0.7
    checkpoints.prepare_folder(str(tmp_path))                 # the next start removes the half-written file
    assert sorted(os.listdir(tmp_path)) == ["best.pt", "last.pt"]


# -----------------------------------------------------------------------------
# Divergence, and checkpoints that hold it

def test_an_exploding_loss_is_reported_when_it_happens(capsys):
    watch = {}
    for i, total in enumerate([50.0, 30.0] + [10.0] * 20 + [12.0, 150.0, 200.0]):
        checkpoints.warn_if_diverging(watch, print, total, 0, i)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning")]
    # the average of 50, 30 and twenty 10s is 12.5, then 12 moves it to (12.5·22 + 12) / 23 = 12.478...:
    # 150 is 12x that, above DIVERGENCE_FACTOR 10; reported once, at step 24
    assert len(lines) == 1 and "loss 150 at epoch 1 step 24 is 12x its average" in lines[0]


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path):
    train.main(train.get_args_parser().parse_args([*TINY, "--out", str(tmp_path)]))
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    name = next(iter(checkpoint["model"]))
    tensor = checkpoint["model"][name]
    tensor[(0,) * tensor.dim()] = float("nan")
    torch.save(checkpoint, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=f"nan.pt: non-finite weights \\(NaN or inf\\) in {re.escape(name)}"):
        detect.load_model(str(tmp_path / "nan.pt"))


# -----------------------------------------------------------------------------
# One-line errors, values refused at parse time

@pytest.mark.parametrize("argv, message", [
    (["train.py", "--weights", "missing.weights"], "error: missing.weights: no such file"),
    (["train.py", "--resume", "missing.pt"], "error: missing.pt: no such file"),
    (["train.py", "--resume", "junk.pt"], "error: junk.pt: not a train.py checkpoint"),
    (["detect.py", "--weights", "missing.pt", "x.png"], "error: missing.pt: no such file"),
    (["train.py", "--img-size", "100"], "error: --model yolov1-shapes --img-size 100: yolov1-shapes: img_size 100 "
                                        "is not a multiple of the network stride 16"),
    (["train.py", "--img-size", "0"], "argument --img-size: expected a number above 0, found 0"),
    (["train.py", "--epochs", "0"], "argument --epochs: expected a number above 0, found 0"),
    (["train.py", "--train-images", "0"], "argument --train-images: expected a number above 0, found 0"),
    (["detect.py", "--weights", "w", "--conf", "1.5"], "argument --conf: expected a number in [0, 1], found 1.5"),
    (["detect.py", "--weights", "w", "--nms", "-0.1"], "argument --nms: expected a number in [0, 1], found -0.1"),
])
def test_user_errors_are_one_line(tmp_path, argv, message):
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    result = run_script(os.path.join(REPO, argv[0]), *argv[1:], cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1], result.stderr[-500:]


def test_debug_shows_the_traceback(tmp_path):
    result = run_script(os.path.join(REPO, "train.py"), "--resume", "missing.pt", "--debug", cwd=tmp_path)
    assert "Traceback" in result.stderr and "missing.pt: no such file" in result.stderr


def test_the_presets_own_input_size_and_lr_steps_that_follow_epochs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse("--model", "yolov1-shapes-fc").img_size == 128           # its conv head needs 128 (7 x 7 cells)
    assert parse().lr_steps == [0.9, 0.97]                                # the synthetic recipe's, 1 epoch
    assert parse("--epochs", "3").lr_steps == pytest.approx([2.7, 2.91])  # 0.9·3, 0.97·3
    assert parse("--epochs", "3", "--lr-steps", "1", "2").lr_steps == [1, 2]


def test_resuming_a_finished_run_says_it_is_complete(tmp_path, capsys):
    train.main(train.get_args_parser().parse_args([*TINY, "--out", str(tmp_path)]))
    capsys.readouterr()
    train.main(train.get_args_parser().parse_args(["--resume", str(tmp_path)]))
    assert "the run is complete (1 of 1 epochs" in capsys.readouterr().out


# -----------------------------------------------------------------------------
# detect.py's outputs

def test_detect_writes_under_runs_detect_keeps_jpeg_and_prints_the_json(tmp_path, monkeypatch, capsys):
    train.main(train.get_args_parser().parse_args([*TINY, "--out", str(tmp_path / "run")]))
    Image.new("RGB", (80, 60), (120, 30, 200)).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    argv = ["--weights", "run/last.pt", "--conf", "0", "--nms", "1", "photo.jpg", "--save-json", "d.json"]
    capsys.readouterr()
    detect.main(detect.get_args_parser().parse_args(argv))
    assert os.listdir("runs/detect/exp") == ["photo.jpg"]                  # a JPEG stays a JPEG
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("  {")]
    written = json.load(open("d.json"))
    assert printed and printed == [{k: v for k, v in r.items() if k != "image"} for r in written]
    detect.main(detect.get_args_parser().parse_args(argv))
    assert os.path.isdir("runs/detect/exp2")                              # the next call does not mix its pictures in
    # no readable input: the earlier JSON stays
    (tmp_path / "broken.png").write_bytes(b"not a png")
    detect.main(detect.get_args_parser().parse_args([*argv[:-3], "broken.png", "--save-json", "d.json"]))
    assert json.load(open("d.json")) == written


def test_labels_do_not_cover_one_another():
    # two boxes with the same top-left corner: darknet puts both labels at (10, 40); the second moves below
    rects = drawing.place_labels([[10, 50, 100, 100], [10, 50, 90, 90], [200, 0, 300, 40]],
                                 [(40, 10), (40, 10), (30, 10)])
    assert rects == [[10, 40, 50, 50], [10, 50, 50, 60], [200, 0, 230, 10]]   # the third fits inside its box's top
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
