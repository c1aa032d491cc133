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
    # log.csv has its header from the start, before any epoch ends
    assert (tmp_path / "stopped" / "log.csv").read_text().splitlines()[0].startswith("epoch,seen,lr,loss,")
    resumed = run_script("train.py", "--resume", str(tmp_path / "stopped"))
    assert resumed.returncode == 0 and "step     4/4" in resumed.stdout
    # one way to count: the epoch the progress line showed (1 of 1), its steps done (3 of 4)
    assert f"resumed {tmp_path / 'stopped' / 'last.pt'}: epoch 1 step 3 of 4, 24 images seen" in resumed.stdout
    assert "step     1/4" not in resumed.stdout                       # steps 1-3 are not trained again
    # the epoch's seconds include the time trained before the stop; the run's total goes on from there
    after = torch.load(tmp_path / "stopped" / "last.pt", weights_only=True)     # the resumed run's, now
    assert after["seconds"] > checkpoint["seconds"] >= checkpoint["epoch_seconds"] > 0
    row = (tmp_path / "stopped" / "log.csv").read_text().splitlines()
    assert row[0].split(",")[-2:] == ["seconds", "total_seconds"] and len(row) == 2
    epoch_seconds, run_seconds = map(float, row[1].split(",")[-2:])       # written to 0.1 s
    assert epoch_seconds >= round(checkpoint["epoch_seconds"], 1) and run_seconds >= round(checkpoint["seconds"], 1)
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
    assert parse().out == os.path.join("runs", "synthetic")               # claimed: made, held by this process
    checkpoints.release_folder(os.path.join("runs", "synthetic"))         # until it ends; unused, it goes
    assert not os.path.exists("runs")
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


# -----------------------------------------------------------------------------
# A new user's second round: two runs at once, detect.py's outputs and Ctrl-C, messages that say what is wrong

CLAIM = """
import sys, train
args = train.get_args_parser().parse_args(sys.argv[1:])
train.resolve(args)
print(args.out, flush=True)
sys.stdin.readline()                # hold the folder, as a run does while it trains, until the test says
"""


def test_two_runs_started_together_take_two_folders_and_a_dead_run_leaves_no_claim(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    runs = [subprocess.Popen([sys.executable, "-c", CLAIM], cwd=tmp_path, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        folders = sorted(run.stdout.readline().strip() for run in runs)    # both chose while both are alive
    finally:
        for run in runs:
            run.kill()                                                   # SIGKILL: no clean-up runs
            run.wait()
    assert folders == [os.path.join("runs", "synthetic"), os.path.join("runs", "synthetic2")]
    # killed before a checkpoint: their folders hold none and nobody holds them, so the next run takes the first
    again = run_script("-c", CLAIM.replace("sys.stdin.readline()", ""), cwd=tmp_path)
    assert again.stdout.strip() == os.path.join("runs", "synthetic"), again.stderr[-1000:]


def test_a_failed_command_leaves_no_empty_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises((SystemExit, ValueError, OSError)):                 # the data set is refused
        train.main(train.get_args_parser().parse_args([*TINY, "--data", "empty"]))
    with pytest.raises(SystemExit, match="fewer than one batch"):          # 32 images, batch 64
        train.main(train.get_args_parser().parse_args([*TINY, "--batch-size", "64"]))
    assert not os.path.exists("runs")


def test_train_data_empty_folder_and_shapes(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    result = run_script(os.path.join(REPO, "train.py"), "--data", "empty", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: empty: no data set found there; looked for ")
    monkeypatch.chdir(tmp_path)
    shapes = parse("--data", "shapes")                                     # detect.py's meaning: the synthetic set
    assert (shapes.recipe, shapes.data, shapes.out) == ("synthetic", None, os.path.join("runs", "synthetic"))


def tiny_checkpoint(folder):
    """An untrained yolov1-shapes as train.py stores it (the keys detect.py reads), as best.pt in folder."""
    model = detect.family_of("yolov1-shapes").build("yolov1-shapes", num_classes=3, img_size=64)
    os.makedirs(folder, exist_ok=True)
    torch.save({"model_config": model.config, "class_names": ["circle", "rectangle", "triangle"],
                "model": model.state_dict(), "epoch": 0, "epoch_step": 3, "seen": 24,
                "schedule": {"name": "yolov1", "step": 3, "steps_per_epoch": 4}}, os.path.join(folder, "best.pt"))
    return os.path.join(folder, "best.pt")


def test_detect_checks_every_output_before_the_work(tmp_path, monkeypatch):
    weights_file = tiny_checkpoint(tmp_path / "run")
    Image.new("RGB", (80, 60), (120, 30, 200)).save(tmp_path / "photo.png")
    (tmp_path / "file").write_text("a file, not a folder")
    drawn = []
    monkeypatch.setattr(detect, "detect", lambda *a, **k: drawn.append(1))
    monkeypatch.setattr(detect, "evaluate", lambda *a, **k: drawn.append(1))
    for flags in (["--save-json", str(tmp_path / "file" / "d.json")], ["--out", str(tmp_path / "file" / "out")],
                  ["--data", "shapes", "--results-dir", str(tmp_path / "file" / "res")]):
        argv = ["--weights", weights_file, str(tmp_path / "photo.png"), *flags]
        if "--out" not in flags:
            argv += ["--out", str(tmp_path / "drawn")]
        with pytest.raises(ValueError, match=re.escape(str(tmp_path / "file")) + ".*: cannot write here"):
            detect.main(detect.get_args_parser().parse_args(argv))
    assert drawn == [] and not (tmp_path / "drawn").exists()              # refused before any image


INTERRUPT_DETECT = """
import os, signal, sys, detect
calls, real = [], detect.detect
def detect_then_ctrl_c(*a, **k):
    calls.append(1)
    if len(calls) == 2:             # Ctrl-C while the second of three images is being detected
        os.kill(os.getpid(), signal.SIGINT)
    return real(*a, **k)
detect.detect = detect_then_ctrl_c
sys.exit(detect.main(detect.get_args_parser().parse_args(sys.argv[1:]))["exit_code"])
"""


def test_ctrl_c_in_detect_keeps_what_was_done(tmp_path):
    weights_file = tiny_checkpoint(tmp_path / "run")
    for k in range(3):
        Image.new("RGB", (80, 60), (40 * k, 30, 200)).save(tmp_path / f"p{k}.png")
    json_file = tmp_path / "d.json"
    result = run_script("-c", INTERRUPT_DETECT, "--weights", weights_file, "--conf", "0", "--nms", "1",
                        str(tmp_path / "p0.png"), str(tmp_path / "p1.png"), str(tmp_path / "p2.png"),
                        "--save-json", str(json_file), "--out", str(tmp_path / "out"))
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-2000:]
    partial = tmp_path / "d.partial.json"
    assert f"interrupted after 1 of 3 images: wrote their " in result.stdout and str(partial) in result.stdout
    records = json.load(open(partial))
    assert records and {r["image"] for r in records} == {str(tmp_path / "p0.png")}
    assert not json_file.exists()                                            # d.json only ever holds a whole call
    assert os.listdir(tmp_path / "out") == ["p0.png"]


def test_detect_weights_messages_and_run_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                                             # parse() claims runs/synthetic here
    weights_file = tiny_checkpoint(tmp_path / "run")
    Image.new("RGB", (80, 60)).save(tmp_path / "photo.jpg")
    (tmp_path / "log.csv").write_text("epoch,seen,lr,loss\n1,32,0.002,3.5\n")
    for name, kind in (("photo.jpg", "a JPEG image"), ("log.csv", "a text file")):
        with pytest.raises(ValueError) as error:
            detect.load_model(str(tmp_path / name))
        assert str(error.value) == (f"{tmp_path / name}: neither a train.py checkpoint nor a darknet .weights file "
                                    f"({kind})")
    model, names, _ = detect.load_model(str(tmp_path / "run"))              # a run's folder: its best.pt
    assert names == model.class_names == ["circle", "rectangle", "triangle"]     # detect_objects' default names
    # what the checkpoint holds, counted as the progress line counts: epoch 1, 3 of its 4 steps done
    message = detect.load_weights(model, weights_file)
    assert message == f"loaded {weights_file}: yolov1-shapes at epoch 1 step 3 of 4, 24 images seen"
    assert parse("--weights", str(tmp_path / "run")).weights == weights_file     # train.py takes the folder too


@pytest.mark.parametrize("argv, message", [
    (["--img-size", "0"], "argument --img-size: expected a number above 0, found 0"),
    (["--batch-size", "0"], "argument --batch-size: expected a number above 0, found 0"),
    (["--workers", "-1"], "argument --workers: expected a number of 0 or more, found -1"),
    (["--img-size", "100"], "--img-size 100: yolov1-shapes: img_size 100 is not a multiple of the network stride 16"),
])
def test_detect_checks_its_values_as_train_does(tmp_path, argv, message):
    weights_file = tiny_checkpoint(tmp_path / "run")
    Image.new("RGB", (80, 60)).save(tmp_path / "photo.png")
    result = run_script(os.path.join(REPO, "detect.py"), "--weights", weights_file, "photo.png", *argv,
                        cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1], result.stderr[-500:]
    assert not (tmp_path / "runs").exists()


def test_detect_prints_boxes_with_sensible_digits(tmp_path, capsys):
    weights_file = tiny_checkpoint(tmp_path / "run")
    Image.new("RGB", (83, 61), (120, 30, 200)).save(tmp_path / "photo.png")   # odd sizes: fractions of pixels
    detect.main(detect.get_args_parser().parse_args(["--weights", weights_file, "--conf", "0", "--nms", "1",
                                                      str(tmp_path / "photo.png"), "--out", str(tmp_path / "o")]))
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("  {")]
    assert records
    for r in records:                                     # pixels to 2 decimals, scores to 4 significant digits
        assert all(v == round(v, 2) for v in r["bbox"]) and r["score"] == float(f"{r['score']:.4g}")


def test_export_without_onnx_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)                        # as if not installed
    weights_file = tiny_checkpoint(tmp_path / "run")
    with pytest.raises(ValueError, match="the ONNX export needs the onnx package beside torch: pip install onnx"):
        detect.main(detect.get_args_parser().parse_args(["--weights", weights_file, "--export",
                                                          str(tmp_path / "m.onnx")]))


CTRL_C_IN_A_TERMINAL = """
import os, runpy, signal, sys, time, detect, yolov1
where, times = sys.argv[1], int(sys.argv[2])
calls, real_loss, real_predict = [], yolov1.yolov1_loss, detect.predict
def ctrl_c():
    for _ in range(times):          # a terminal's Ctrl-C reaches every process of the group: the workers too
        os.killpg(0, signal.SIGINT)
        time.sleep(1.0)
def loss(*a, **k):
    calls.append("step")
    if where == "step" and len(calls) == 3:
        ctrl_c()
    return real_loss(*a, **k)
def predict(*a, **k):
    calls.append("eval")
    if where == "eval" and calls.count("eval") == 2:        # the second of the evaluation's two batches
        ctrl_c()
    return real_predict(*a, **k)
yolov1.yolov1_loss, detect.predict = loss, predict
sys.argv = ["train.py"] + sys.argv[3:]
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.parametrize("where, times", [("step", 1), ("step", 2), ("eval", 1)])
def test_ctrl_c_is_one_line_from_the_main_process(tmp_path, where, times):
    result = subprocess.run([sys.executable, "-c", CTRL_C_IN_A_TERMINAL, where, str(times), *TINY, "--workers", "2",
                             "--val-images", "16", "--epochs", "2", "--out", str(tmp_path / "run")], cwd=REPO,
                            capture_output=True, text=True, timeout=300, start_new_session=True,   # its own group
                            env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO))
    assert result.returncode == 130 and "Traceback" not in result.stderr, result.stderr[-3000:]
    if where == "step" and times == 1:              # once: one line (not one per process), last.pt at that step
        assert result.stdout.count("SIGINT: saving last.pt at the end of this step") == 1, result.stdout
        assert "stopped (SIGINT) at epoch 1 step 3 of 4" in result.stdout
    elif where == "step":                           # twice: at once, in one line
        assert result.stderr.strip().splitlines()[-1] == "interrupted at once: nothing saved since the last last.pt"
    else:                                           # during the evaluation: it says it finishes first, and for how long
        assert result.stdout.count("SIGINT: the evaluation finishes first (about ") == 1, result.stdout
        assert "stopped (SIGINT) at epoch 1 step 4 of 4" in result.stdout
        assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["history"][0]["val"] is not None
