"""
A training run's folder and its files: nothing here is in the papers. What a user expects of a training tool
(OUR CHOICE throughout): no work is ever lost, and no run overwrites another.

  a fresh run never writes into another run's folder: runs/synthetic, runs/synthetic2, ... ... run_folder()
  the folder is writable before anything trains; half-written files of a killed run go ...... prepare_folder()
  checkpoints are written whole or not at all (write, fsync, rename) ......................... save_checkpoint()
  best.pt before last.pt, so that last.pt never records a best score best.pt does not hold .... save_run()
  a checkpoint is read without running code (weights_only), with one-line errors ............. load_checkpoint()
  the random generators' states, so that a resumed run draws what the uninterrupted one draws  rng_states()
  Ctrl-C (SIGINT) and SIGTERM ask the loop to stop at the next step and save there ........... catch_stop_signals()
  every process stops at the same step when any asks (a signal, the time limit, a NaN loss) ... agree_stop()
  a loss that explodes is reported when it happens, not only once it is inf or NaN ........... warn_if_diverging()

Imported by train.py and detect.py (load_state); imports torch and numpy only.
"""
import contextlib
import csv
import os
import random
import signal
import zipfile

import numpy as np
import torch
import torch.distributed as dist

RUN_FILES = ("last.pt", "best.pt")      # a folder holding either is a run's folder


# -----------------------------------------------------------------------------
# The run's folder

def holds_run(folder: str) -> bool:
    return any(os.path.exists(os.path.join(folder, name)) for name in RUN_FILES)


def run_folder(out: str) -> str:
    """out, or out2, out3, ... : the first that does not hold another run's checkpoints (a folder left by a run
    killed before its first checkpoint holds none, and is used again)."""
    k, folder = 1, out
    while holds_run(folder):
        k += 1
        folder = f"{out}{k}"
    return folder


def prepare_folder(folder: str) -> None:
    """Create folder, prove that a file can be written there (before an epoch is spent, not after), and remove
    the temporary files (*.tmp) of a write that was killed half-way: the files they were replacing are intact."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"{folder}: cannot write the run's files here ({error.strerror or error})") from None
    for name in os.listdir(folder):
        if name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))


# -----------------------------------------------------------------------------
# Writing and reading checkpoints

def save_checkpoint(state, path):
    """Write to path.tmp, flush it to disk, then rename: killing the process at any moment leaves either the
    previous file or the new one under path, never half a file (os.replace is atomic on POSIX and Windows)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):      # make the rename itself durable (POSIX; not possible on Windows)
        fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


def write_csv(history, path):
    columns = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(history)


def save_run(state, folder: str, improved: bool) -> None:
    """best.pt (when the score improved) and then last.pt. In this order a kill between the two leaves a last.pt
    that records the previous best, which the previous (or the new) best.pt holds; resuming from it replays the
    epoch and writes the same best.pt again."""
    if improved:
        save_checkpoint(state, os.path.join(folder, "best.pt"))
    save_checkpoint(state, os.path.join(folder, "last.pt"))


def load_checkpoint(path: str) -> dict:
    """A train.py checkpoint (or its folder) -> its dict. Refused with one line: no such file, not a checkpoint
    (a darknet .weights file, a truncated or random file), or one whose unpickling would run code."""
    if os.path.isdir(path):
        path = os.path.join(path, "last.pt")
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):        # torch.save writes zip archives
        raise ValueError(f"{path}: not a train.py checkpoint (not a torch.save zip archive: a darknet .weights "
                         "file goes to --weights; a truncated file cannot be resumed)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:              # torch raises UnpicklingError, RuntimeError, ... for bad archives
        raise ValueError(f"{path}: not a loadable checkpoint ({str(error).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or "model_config" not in checkpoint:
        raise ValueError(f"{path}: not a train.py checkpoint (no model_config)")
    return checkpoint


# -----------------------------------------------------------------------------
# Random generators

def rng_states():
    numpy_state = np.random.get_state()     # ('MT19937', keys, pos, has_gauss, gauss): no arrays in the file
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64))] + list(numpy_state[2:]),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in states["python"]))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    for device, state in enumerate(states["cuda"][:torch.cuda.device_count()]):   # a machine with fewer GPUs
        torch.cuda.set_rng_state(state, device)                                    # restores those it has


# -----------------------------------------------------------------------------
# Stopping: Ctrl-C and SIGTERM become a request the loop answers at its next step; divergence is reported

def catch_stop_signals(stop: dict):
    """While the run trains, SIGINT (Ctrl-C) and SIGTERM (kill, a scheduler's time-out) set stop["signal"]
    instead of killing the process; the loop checks it after each optimizer step, saves last.pt there and ends.
    A second Ctrl-C interrupts at once. -> a function that puts the previous handlers back."""
    previous = {}

    def handler(signum, frame):
        if stop.get("signal"):                                  # asked twice: stop now
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop["signal"] = signal.Signals(signum).name
        print(f"\n{stop['signal']}: saving last.pt at the end of this step (Ctrl-C again to quit at once)",
              flush=True)

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):                   # not the main thread: signals stay as they were
            previous[signum] = signal.signal(signum, handler)
    return lambda: [signal.signal(s, h) for s, h in previous.items()]


STOPS = [None, "time limit", "SIGTERM", "SIGINT", "non-finite loss"]     # by precedence


def agree_stop(reason, world: int, device):
    """-> the stop every process takes at this step: the gravest any of them asks for (STOPS), or None. One
    all_reduce, so that every process leaves the loop at the same step and for the same reason."""
    if world == 1:
        return reason
    code = torch.tensor(float(STOPS.index(reason)), device=device)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    return STOPS[int(code.item())]


# OUR CHOICE: a step's loss this many times the running average of the steps before it is reported as the
# start of a divergence (the YOLO losses fall by 10-100x from the first step; a jump of 10x over the recent
# average is not noise). The run goes on: a NaN or inf stops it.
DIVERGENCE_FACTOR = 10.0
DIVERGENCE_WARMUP = 20          # steps before the average is trusted


def warn_if_diverging(watch: dict, log, total, epoch, i):
    """Report a loss that explodes, when it happens (the first time in a run), and keep a running average in
    watch (a dict the run keeps; empty at its start). log: the run's print."""
    average, n = watch.setdefault("loss_average", [0.0, 0])
    if n >= DIVERGENCE_WARMUP and total > DIVERGENCE_FACTOR * average and not watch.get("warned"):
        watch["warned"] = True
        log(f"warning: loss {total:.4g} at epoch {epoch + 1} step {i + 1} is {total / average:.0f}x its "
                   f"average over the previous steps ({average:.4g}): the run may be diverging (lower --lr?)")
    watch["loss_average"] = [average + (total - average) / min(n + 1, 100), n + 1]   # mean, then a 100-step EMA


def load_state(model, checkpoint: dict, path: str):
    """A checkpoint's weights into model, refused with what differs (never loaded in part)."""
    found, expected = checkpoint["model_config"], model.config
    if (found["preset"], found["num_classes"]) != (expected["preset"], expected["num_classes"]):
        raise ValueError(f"{path}: checkpoint for preset {found['preset']!r} with {found['num_classes']} classes; "
                         f"this run expects {expected['preset']!r} with {expected['num_classes']} classes")
    state, mine = checkpoint["model"], model.state_dict()
    problems = [f"missing {k}" for k in mine if k not in state] + [f"unexpected {k}" for k in state if k not in mine]
    problems += [f"{k}: expected {tuple(v.shape)}, found {tuple(state[k].shape)}"
                 for k, v in mine.items() if k in state and v.shape != state[k].shape]
    if problems:
        raise ValueError(f"{path} does not fit {model.preset}: " + "; ".join(problems[:8]))
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:                  # a run that diverged: its scores would be NaN, not probabilities
        raise ValueError(f"{path}: non-finite weights (NaN or inf) in {', '.join(broken[:3])}"
                         f"{' and more' if len(broken) > 3 else ''}: the run diverged; use an earlier checkpoint")
    model.load_state_dict(state)
