"""
A training run's folder and its files: nothing here is in the papers. What a user expects of a training tool
(OUR CHOICE throughout): no work is ever lost, and no run overwrites another.

  a fresh run never writes into another run's folder: runs/synthetic, runs/synthetic2, ... ... run_folder()
  a run holds its folder from its start (two runs started together take two), a dead one not . claim_folder()
  a command that fails or stops before its first checkpoint leaves no folder behind ............ release_folder()
  the folder is writable before anything trains; half-written files of a killed run go ...... prepare_folder()
  checkpoints are written whole or not at all (write, fsync, rename) ......................... save_checkpoint()
  best.pt before last.pt, so that last.pt never records a best score best.pt does not hold .... save_run()
  a checkpoint is read without running code (weights_only), with one-line errors ............. load_checkpoint()
  --weights RUN_FOLDER means its best.pt, in both programs .................................... weights_in()
  one way to say where a run is: epoch E (from 1) and its steps done, as the progress line .... position()
  the random generators' states, so that a resumed run draws what the uninterrupted one draws  rng_states()
  Ctrl-C (SIGINT) and SIGTERM ask the loop to stop at the next step and save there ........... catch_stop_signals()
  every process stops at the same step when any asks (a signal, the time limit, a NaN loss) ... step_flag(),
    one all_reduce and one read a step                                                          agree_stop()
  each process's generators saved and restored, under DDP too ................... gather_rng_states(), rank_rng_states()
  a loss that explodes is reported when it happens, not only once it is inf or NaN ........... warn_if_diverging()

Imported by train.py and detect.py (load_state); imports torch and numpy only.
"""
import atexit
import contextlib
import csv
import os
import random
import signal
import time
import zipfile

import numpy as np
import torch
import torch.distributed as dist

RUN_FILES = ("last.pt", "best.pt")      # a folder holding either is a run's folder


# -----------------------------------------------------------------------------
# The run's folder

def holds_run(folder: str) -> bool:
    return any(os.path.exists(os.path.join(folder, name)) for name in RUN_FILES)


# A run holds its folder from its start to its end by a lock on this file, not only once its first checkpoint is
# there: two runs started together take two folders. The lock is the operating system's (flock, or msvcrt on
# Windows): it ends with the process, however it ends, so a killed run leaves no claim behind.
CLAIM_FILE = ".claimed-by-a-run"
RUN_LOGS = ("log.csv", "curves.png", "pr_curves.png")    # a run's other files, worthless without a checkpoint
_claims = {}                                # absolute folder -> (its locked file, the folders made for it)


def _lock(f) -> bool:
    """Lock the open file f for this process without waiting -> False when another process holds it."""
    try:
        import fcntl
    except ImportError:                                 # Windows
        import msvcrt
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def claim_folder(folder: str) -> bool:
    """Create folder if needed and hold it for this process -> False when a live process holds it already.
    Refused with one line when it cannot be created or written."""
    key = os.path.abspath(folder)
    if key in _claims:
        return True
    made, parent = [], key                      # the folder and the parents it needs, innermost first
    while not os.path.isdir(parent) and parent != os.path.dirname(parent):
        made.append(parent)
        parent = os.path.dirname(parent)
    path = os.path.join(folder, CLAIM_FILE)
    try:
        os.makedirs(folder, exist_ok=True)
        f = open(path, "a+b")
    except OSError as error:
        raise ValueError(f"{folder}: cannot write the run's files here ({error.strerror or error})") from None
    if not _lock(f):
        f.close()
        return False
    try:    # a run releasing the folder removes the file: the one locked must still be the one there
        same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:
        f.close()
        return claim_folder(folder)
    if not _claims:                             # a process that ends without release_folder (resolve() alone,
        atexit.register(_release_all)           # an error) still leaves no empty folder; a killed one leaves its
    _claims[key] = (f, made)                    # folder, which holds no claim and is used again
    return True


def _release_all():
    for key in list(_claims):
        release_folder(key)


def release_folder(folder: str) -> None:
    """The end of this process's hold on folder. A folder that holds no checkpoint (the command failed, or was
    stopped, before the first) and that claim_folder made keeps nothing of the run: its log files go, and the
    folder itself (and runs/ when made too) unless something else is in it."""
    f, made = _claims.pop(os.path.abspath(folder), (None, []))
    if f is None:
        return
    unused = not holds_run(folder)
    for name in (CLAIM_FILE,) + (RUN_LOGS if unused and made else ()):    # a folder we did not make: its files stay
        with contextlib.suppress(OSError):
            os.remove(os.path.join(folder, name))
    f.close()
    for made_folder in made if unused else ():
        try:
            os.rmdir(made_folder)
        except OSError:                                 # not empty: something else is in it, and stays
            break


def run_folder(out: str, claim: bool = True) -> str:
    """out, or out2, out3, ... : the first that neither holds another run's checkpoints nor is held by a live run
    (claim_folder), claimed for this process. A folder left by a run killed before its first checkpoint holds
    neither, and is used again. claim=False: the first without checkpoints (the other processes of a torchrun,
    which take rank 0's)."""
    k, folder = 1, out
    while holds_run(folder) or (claim and not claim_folder(folder)):
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


LOG_COLUMNS = ["epoch", "seen", "lr", "loss", "val", "seconds", "total_seconds"]   # log.csv before the first row


def write_csv(history, path):
    """log.csv: one row per epoch (train.py's history), with its header from the run's start (LOG_COLUMNS until
    the first row gives the loss terms' columns too)."""
    columns = list(dict.fromkeys(k for row in history for k in row)) or LOG_COLUMNS
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


def weights_in(path: str) -> str:
    """--weights: a file as given; a run's folder -> its best.pt, else its last.pt. Refused with one line when
    neither is there."""
    if os.path.isdir(path):
        found = [os.path.join(path, name) for name in ("best.pt", "last.pt")
                 if os.path.isfile(os.path.join(path, name))]
        if not found:
            raise ValueError(f"{path}: a folder without best.pt or last.pt; give a checkpoint or a .weights file")
        return found[0]
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    return path


def position(epoch: int, epoch_step: int, steps_per_epoch: int) -> str:
    """A checkpoint's place, counted as the progress line counts: epoch E (from 1) and the steps of it done.
    (epoch, epoch_step) as checkpoints store them: epochs finished, steps into the next."""
    if epoch_step == 0 and epoch > 0:
        return f"epoch {epoch} step {steps_per_epoch} of {steps_per_epoch}"
    return f"epoch {epoch + 1} step {epoch_step} of {steps_per_epoch}"


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


def gather_rng_states(world: int):
    """Every process's rng_states(), in rank order, in rank 0 (None in the others); every process calls it. A run
    resumed mid-epoch restores each process's own (rank_rng_states): a process's dropout and augmentation draws
    are its own."""
    if world == 1:
        return [rng_states()]
    gathered = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(rng_states(), gathered, dst=0)
    return gathered


def rank_rng_states(checkpoint: dict, rank: int):
    """The states rank saved (checkpoint["rng_ranks"]); rank 0's for a rank the checkpoint has none of (fewer
    processes then, or a checkpoint from before every rank's were saved)."""
    ranks = checkpoint.get("rng_ranks") or [checkpoint["rng"]]
    return ranks[rank] if rank < len(ranks) else checkpoint["rng"]


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
    previous, owner = {}, os.getpid()

    def handler(signum, frame):
        # Ctrl-C reaches every process of the terminal's group: the data loader's workers, forked with this
        # handler, leave it to this process, which stops them (one line, no worker tracebacks)
        if os.getpid() != owner:
            return
        if stop.get("signal"):                                  # asked twice: stop now
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop["signal"] = signal.Signals(signum).name
        evaluating = stop.get("evaluating")                     # train.py's evaluation: how far it is
        if evaluating:
            done, total, elapsed = evaluating["done"], evaluating["total"], time.time() - evaluating["start"]
            left = f"about {elapsed / done * (total - done):.0f} s more" if done else f"{total} images"
            print(f"\n{stop['signal']}: the evaluation finishes first ({left}), then last.pt is saved (Ctrl-C "
                  "again to quit at once, without saving)", flush=True)
        else:
            print(f"\n{stop['signal']}: saving last.pt at the end of this step (Ctrl-C again to quit at once, "
                  "without saving)", flush=True)

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):                   # not the main thread: signals stay as they were
            previous[signum] = signal.signal(signum, handler)
    return lambda: [signal.signal(s, h) for s, h in previous.items()]


STOPS = [None, "time limit", "SIGTERM", "SIGINT", "non-finite loss"]     # by precedence


NONFINITE = STOPS.index("non-finite loss")


def step_flag(total, reason, save: bool):
    """One tensor per step, made without reading the device: (2,) int64 [the STOPS code of the gravest stop this
    process asks for: a non-finite loss total (the device's) or reason (the host's: a signal, the time limit),
    whether it asks for last.pt to be written now]."""
    asked = torch.full((), STOPS.index(reason), dtype=torch.long, device=total.device)
    stop = torch.where(torch.isfinite(total), asked, torch.full_like(asked, NONFINITE))
    return torch.stack([stop, torch.full_like(asked, int(save))])


def agree_stop(flag, world: int):
    """-> (the stop every process takes at this step: the gravest any of them asks for, or None; whether last.pt
    is written now). One all_reduce of the step's flag (step_flag), then one read of it: the only moment of a
    step at which the host waits for the device, after the backward pass and before the optimizer step."""
    if world > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    stop, save = flag.tolist()
    return STOPS[stop], bool(save)


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
