"""tools/devices.py and what train.py does with it: each process on its device, AMP and its resume, the loader's
options, evaluation spread over processes, stops agreed by all processes; bench/gpu_check.sh's plumbing.

The device decisions are plain functions, checked here with the environment torchrun sets and what torch would
report on a GPU machine. Tests marked cuda run where CUDA exists and skip elsewhere (conftest.py; bench/gpu_check.sh
runs them with -m cuda). The multi-process tests use gloo on CPU: 2 processes, tiny synthetic runs.
"""
import inspect
import json
import os
import platform
import re
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tools import checkpoints, devices
import data
import train
import yolo9000
import yolov1

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny(out, *extra):
    """The synthetic default cut to seconds: 16 images of 64 x 64, batch 8 (train_test's tiny_args)."""
    return ["--out", str(out), "--img-size", "64", "--train-images", "16", "--val-images", "8", "--batch-size", "8",
            "--epochs", "1", "--workers", "0", "--log-interval", "1", "--no-plots", *extra]


def run_script(*argv, timeout=240, **env):
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, OMP_NUM_THREADS="1", **env))


def torchrun(*argv, timeout=240):
    return run_script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *argv, timeout=timeout)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# -----------------------------------------------------------------------------
# One process per device: the environment torchrun sets

def torchrun_env(world, rank, local_rank):
    return {"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(local_rank)}


def test_each_torchrun_process_takes_the_gpu_of_its_local_rank():
    # 2 machines x 4 GPUs: global rank 6 is the third process (LOCAL_RANK 2) of the second machine
    assert devices.choose_device(torchrun_env(8, 6, 2), None, True, 4) == ("nccl", torch.device("cuda", 2))
    assert devices.choose_device(torchrun_env(8, 6, 2), "cuda", True, 4) == ("nccl", torch.device("cuda", 2))
    assert devices.choose_device(torchrun_env(4, 0, 0), None, True, 4) == ("nccl", torch.device("cuda", 0))


def test_cpu_processes_use_gloo():
    assert devices.choose_device(torchrun_env(2, 1, 1), None, False, 0) == ("gloo", torch.device("cpu"))
    assert devices.choose_device(torchrun_env(2, 1, 1), "cpu", True, 4) == ("gloo", torch.device("cpu"))
    assert devices.choose_device({}, None, False, 0) == ("gloo", torch.device("cpu"))


def test_one_process_keeps_the_gpu_it_is_given():
    assert devices.choose_device({}, "cuda:1", True, 2) == ("nccl", torch.device("cuda", 1))
    assert devices.choose_device({}, None, True, 1) == ("nccl", torch.device("cuda", 0))


def test_impossible_devices_are_refused_in_one_line():
    with pytest.raises(ValueError, match="no CUDA device"):
        devices.choose_device({}, "cuda", False, 0)
    with pytest.raises(ValueError, match="each process takes cuda:LOCAL_RANK"):
        devices.choose_device(torchrun_env(2, 1, 1), "cuda:1", True, 2)   # both processes on GPU 1
    with pytest.raises(ValueError, match="2 CUDA device.*at most --nproc_per_node=2"):
        devices.choose_device(torchrun_env(4, 2, 2), None, True, 2)       # 4 processes, 2 GPUs
    with pytest.raises(ValueError, match="not a device"):
        devices.choose_device({}, "gpu", True, 1)


def test_train_refuses_a_missing_gpu_in_one_line(tmp_path):
    # CUDA_VISIBLE_DEVICES="": no GPU for the process, on any machine, so the test runs everywhere
    done = run_script("train.py", *tiny(tmp_path, "--device", "cuda"), CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: --device cuda: torch finds no CUDA device (torch.cuda.is_available() is False)"]


# -----------------------------------------------------------------------------
# Mixed precision, memory format, loader

def test_amp_dtype_bfloat16_where_the_gpu_has_it_else_float16():
    assert devices.amp_dtype("cuda", bf16_supported=True) == torch.bfloat16      # A100, H100: no loss scaling
    assert devices.amp_dtype("cuda", bf16_supported=False) == torch.float16      # V100, T4: float16 + GradScaler
    assert devices.amp_dtype("cpu") == torch.bfloat16


def test_scaler_resumes_across_amp_on_and_off():
    # a run saved without float16 AMP stores {}: GradScaler.load_state_dict refuses it ...
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16)
    with pytest.raises(RuntimeError, match="empty"):
        fresh.load_state_dict({})
    # ... restore_scaler starts the scaler afresh instead, and says so
    assert devices.restore_scaler(fresh, {}) == "--amp: the checkpoint holds no float16 loss scale; starting at 65536"
    assert devices.restore_scaler(fresh, None) is not None and fresh.get_scale() == 65536.0
    # a saved scale is restored; a disabled scaler (--no-amp, or bfloat16) ignores it
    saved = torch.amp.GradScaler("cpu", init_scale=1024.0).state_dict()
    assert devices.restore_scaler(fresh, saved) is None and fresh.get_scale() == 1024.0
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    assert devices.restore_scaler(disabled, saved) is None and disabled.state_dict() == {}


def test_default_workers_share_the_cores_among_the_processes():
    assert devices.default_workers(cpu_count=2, processes=1) == 2        # this machine: 2 // 1
    assert devices.default_workers(cpu_count=16, processes=1) == 16      # an H100 machine of 16 cores, no cap
    assert devices.default_workers(cpu_count=16, processes=4) == 4       # 16 // 4
    assert devices.default_workers(cpu_count=96, processes=8) == 12      # 96 // 8
    assert devices.default_workers(cpu_count=2, processes=4) == 0        # 2 // 4: load in the training process


def test_default_workers_none_for_batches_drawn_on_the_cpu():
    # the synthetic shapes drawn with tensor operations: on the CPU in the training process, whatever the cores
    assert devices.default_workers(cpu_count=2, processes=1, device_type="cpu", draws_batches=True) == 0
    assert devices.default_workers(cpu_count=16, processes=1, device_type="cpu", draws_batches=True) == 0
    # a GPU computes meanwhile: the CPU's cores draw ahead of it; images read from files keep their workers
    assert devices.default_workers(cpu_count=16, processes=1, device_type="cuda", draws_batches=True) == 16
    assert devices.default_workers(cpu_count=2, processes=1, device_type="cpu", draws_batches=False) == 2
    # which sets draw batches: the synthetic default's, not YOLO9000's WordTree shapes (Pillow, image by image)
    assert data.ShapesDataset(4, 32, 0).draws_batches
    assert not yolo9000.ShapeTreeDataset(4, 32, 0, ["circle"]).draws_batches


def test_keep_freed_memory_sets_glibc_thresholds_on_the_cpu_only():
    class Libc:                                         # records mallopt's calls, succeeds as glibc's (returns 1)
        def __init__(self):
            self.calls = []

        def mallopt(self, param, value):
            self.calls.append((param, value))
            return 1
    libc = Libc()
    assert devices.keep_freed_memory("cpu", libc) is True
    assert libc.calls == [(-3, 32 * 2**20), (-1, 2**30)]             # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD
    libc.calls.clear()
    assert devices.keep_freed_memory("cuda", libc) is False and libc.calls == []


KEEP_FREED = """
import resource, sys, torch
from tools import devices
import yolov1
print(devices.keep_freed_memory("cpu") if sys.argv[1] == "keep" else "default")
torch.manual_seed(0)
model = yolov1.build("yolov1-shapes").to(memory_format=torch.channels_last)
optimizer = torch.optim.Adam(model.parameters())
images = torch.rand(16, 3, 112, 112)
for i in range(4):                      # training steps of the synthetic default's network, in float32
    if i == 1:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model(images).square().mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_keep_freed_memory_stops_the_page_faults_of_each_step():
    # three training steps after the first: with glibc's defaults each faults its activations' pages in again
    # (about 40,000 faults here), with the thresholds set they come back from the heap (about 2,000)
    def faults(mode):
        out = subprocess.run([sys.executable, "-c", KEEP_FREED, mode], capture_output=True, text=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), check=True)
        first, count = out.stdout.split()
        return first, int(count)
    (applied, kept), (_, default) = faults("keep"), faults("default")
    assert applied == "True" and kept < 10_000 and default > 5 * kept, (kept, default)


def test_training_process_keeps_few_threads_on_cuda_only():
    assert devices.training_threads("cpu", 16, 16) is None               # torch's choice: CPU results unchanged
    assert devices.training_threads("cuda", 16, 16) == 1                 # the workers hold every core
    assert devices.training_threads("cuda", 16, 14) == 2                 # 16 - 14
    assert devices.training_threads("cuda", 64, 8) == 4                  # at most 4


def test_cuda_defaults_speed_settings_on_cuda_none_on_cpu():
    assert devices.cuda_defaults("cpu") == dict(cudnn_benchmark=False, tf32=False, amp=False)
    assert devices.cuda_defaults("cuda", bf16_native=True) == dict(cudnn_benchmark=True, tf32=True, amp=True)
    # a V100 or T4 (no bfloat16 units): float16 AMP stays a choice (--amp), the rest applies
    assert devices.cuda_defaults("cuda", bf16_native=False) == dict(cudnn_benchmark=True, tf32=True, amp=False)
    before = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32)
    devices.apply_cuda_defaults(devices.cuda_defaults("cpu"))            # the CPU's settings are left alone
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before


def test_default_workers_reads_torchrun_local_world_size(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert devices.default_workers(cpu_count=6) == 6 // 2


def test_loader_options_pin_memory_on_cuda_only_and_never_keep_workers():
    assert devices.loader_options(torch.device("cuda", 1), 4) == dict(num_workers=4, pin_memory=True,
                                                                        persistent_workers=False)
    assert devices.loader_options(torch.device("cpu"), 0)["pin_memory"] is False


def test_channels_last_on_cpu_and_cuda():
    assert devices.channels_last("cpu") and devices.channels_last("cuda") and not devices.channels_last("mps")


def test_shards_cover_the_set_once():
    # 5 images over 2 processes: 0, 2, 4 and 1, 3
    assert list(devices.shard(5, 2, 0)) == [0, 2, 4] and list(devices.shard(5, 2, 1)) == [1, 3]
    assert sorted(i for r in range(3) for i in devices.shard(7, 3, r)) == list(range(7))


def test_resume_with_amp_from_a_run_without_and_back(tmp_path, monkeypatch, capsys):
    # float16 + GradScaler, the path of GPUs without bfloat16, forced on CPU so that the scaler is enabled
    monkeypatch.setattr(devices, "amp_dtype", lambda device_type, bf16_supported=None: torch.float16)
    train.main(train.get_args_parser().parse_args(tiny(tmp_path / "a", "--no-amp")))        # no AMP: scaler {}
    assert load(tmp_path / "a" / "last.pt")["scaler"] == {}
    train.main(train.get_args_parser().parse_args(["--resume", str(tmp_path / "a"), "--epochs", "2", "--amp"]))
    assert "holds no float16 loss scale; starting at 65536" in capsys.readouterr().out
    ckpt = load(tmp_path / "a" / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["amp"] and ckpt["scaler"]["scale"] > 0
    train.main(train.get_args_parser().parse_args(["--resume", str(tmp_path / "a"), "--epochs", "3", "--no-amp"]))
    assert load(tmp_path / "a" / "last.pt")["epoch"] == 3


def test_compile_trains_and_saves_the_bare_model(tmp_path):
    # aot_eager: TorchDynamo's graph capture and AOTAutograd, without inductor's code generation (80 s on CPU)
    result = train.main(train.get_args_parser().parse_args(tiny(tmp_path, "--compile", "aot_eager")))
    assert result["history"][0]["loss"] > 0
    keys = load(tmp_path / "last.pt")["model"].keys()
    assert not any(k.startswith("_orig_mod") for k in keys)
    assert keys == yolov1.build("yolov1-shapes", num_classes=3, img_size=64).state_dict().keys()


# -----------------------------------------------------------------------------
# Evaluation spread over 2 gloo processes equals one process's

def eval_setup(out):
    """A fresh yolov1-shapes whose batch-norm statistics differ from the initial ones (the output depends on
    them), and 12 held-out synthetic images. -> (args, family, model, validation set)"""
    args = train.get_args_parser().parse_args(tiny(out, "--val-images", "12", "--precision", "fp32"))
    train.resolve(args)
    family = train.family_for(args)
    _, val_set = train.build_datasets(args, family)
    torch.manual_seed(0)
    model = train.build_model(args, 3).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.uniform_(-0.2, 0.2)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():               # every output near 0.5: confidences, class probabilities, boxes
        last.bias += 0.5
    return args, family, model, val_set


def evaluate_in_process(rank, world, store, out):
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    os.environ["RANK"] = str(rank)      # as torchrun sets it: rank 0 alone claims the output folder
    args, family, model, val_set = eval_setup(os.path.join(os.path.dirname(store), "unused"))
    for m in model.modules():           # each process's own statistics: sync_buffers must bring rank 0's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean += rank
    result = train.evaluate(model, family, val_set, args, 4, world, rank)
    mean = devices.gather_mean({"top1": [0.5, 1.0][rank]}, [2, 1][rank], world)
    if rank == 0:
        torch.save({"result": result, "mean": mean}, out)
    else:
        assert result is None and mean is None
    # every process's random generators into rank 0's checkpoint, and each its own back on resume
    torch.manual_seed(100 + rank)                       # each process's own draws (dropout, augmentation)
    saved = checkpoints.gather_rng_states(world)        # every process calls it; rank 0 gets all
    expected = torch.rand(3)                            # what this process draws next
    if rank == 0:
        assert len(saved) == 2 and not torch.equal(saved[0]["torch"], saved[1]["torch"])
        torch.save({"rng": saved[0], "rng_ranks": saved}, out + ".rng")
    dist.barrier()
    torch.manual_seed(0)                                # a resumed process starts elsewhere
    checkpoints.set_rng_states(checkpoints.rank_rng_states(torch.load(out + ".rng", weights_only=True), rank))
    assert torch.equal(torch.rand(3), expected)         # its own states back, not rank 0's
    dist.destroy_process_group()


def test_evaluation_spread_over_two_processes_equals_one_and_each_keeps_its_generators(tmp_path):
    mp.spawn(evaluate_in_process, args=(2, str(tmp_path / "store"), str(tmp_path / "out.pt")), nprocs=2)
    spread = torch.load(tmp_path / "out.pt", weights_only=False)
    args, family, model, val_set = eval_setup(tmp_path / "unused")
    alone = train.evaluate(model, family, val_set, args, 4)
    assert spread["result"]["map"] == alone["map"] and spread["result"]["num_gt"] == alone["num_gt"]
    assert all(len(recall) > 12 for recall, _ in alone["curves"].values())    # several detections per image
    for c, (recall, precision) in alone["curves"].items():       # every detection, in the same order
        spread_recall, spread_precision = spread["result"]["curves"][c]
        assert (spread_recall == recall).all() and (spread_precision == precision).all()
    assert spread["mean"] == {"top1": (2 * 0.5 + 1 * 1.0) / 3}    # 2 images at 0.5, 1 image at 1.0


def test_a_checkpoint_of_one_process_gives_its_generators_to_every_rank():
    # (every process's own: evaluate_in_process, which runs in 2 gloo processes anyway)
    only = {"rng": checkpoints.rng_states()}
    assert checkpoints.rank_rng_states(only, 1) is only["rng"]


def test_sync_bn_only_with_several_cuda_processes():
    assert devices.batch_norm_sync(True, 2, "cuda") and not devices.batch_norm_sync(False, 2, "cuda")
    assert not devices.batch_norm_sync(True, 1, "cuda")                  # one process: nothing to synchronize
    with pytest.raises(ValueError, match="--sync-bn needs CUDA"):        # torch's SyncBatchNorm: no CPU path
        devices.batch_norm_sync(True, 2, "cpu")


def test_first_line_says_the_settings():
    on = devices.cuda_defaults("cuda", bf16_native=True)
    assert devices.describe(torch.device("cuda", 0), on, True, torch.bfloat16) == (
        "device cuda:0: cudnn.benchmark, TF32 matmuls, AMP bfloat16 (CUDA's defaults; --no-cuda-defaults: none of them)")
    assert devices.describe(torch.device("cpu"), devices.cuda_defaults("cpu"), False, torch.bfloat16) == \
        "device cpu: float32 (no AMP)"


# -----------------------------------------------------------------------------
# Stops agreed by 2 gloo processes leave a last.pt that resumes

NAN_ON_RANK_1 = """
import os, sys
sys.path.insert(0, os.getcwd())
import train, yolov1
original, calls = yolov1.yolov1_loss, []
def loss(*a, **k):          # process 1's second step: NaN; process 0's is finite
    terms = original(*a, **k)
    calls.append(1)
    if os.environ["RANK"] == "1" and len(calls) == 2:
        terms["total"] = terms["total"] * float("nan")
    return terms
yolov1.yolov1_loss = loss
train.main(train.get_args_parser().parse_args())
"""


def test_nonfinite_loss_in_one_process_stops_both_with_a_loadable_checkpoint(tmp_path):
    (tmp_path / "nan_on_rank_1.py").write_text(NAN_ON_RANK_1)
    done = torchrun(str(tmp_path / "nan_on_rank_1.py"), *tiny(tmp_path, "--epochs", "3", "--train-images", "8"),
                    timeout=120)
    assert done.returncode != 0                        # exits, does not hang in all_reduce (timeout 120 s)
    assert "process 1: non-finite loss" in done.stdout + done.stderr
    ckpt = load(tmp_path / "last.pt")                  # saved at the step before: epoch 1 done, epoch 2 not begun
    assert ckpt["epoch"] == 1 and ckpt["seen"] == 8
    assert len(ckpt["rng_ranks"]) == 2                 # each process's generators (gather_rng_states)
    resumed = torchrun("train.py", "--resume", str(tmp_path), "--epochs", "2")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load(tmp_path / "last.pt")["epoch"] == 2


def test_time_limit_stops_both_processes_evaluates_and_saves(tmp_path):
    done = torchrun("train.py", *tiny(tmp_path, "--time-limit", "0.001", "--train-images", "32"))
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = load(tmp_path / "last.pt")                  # 32 images = 4 steps of 2 x 4; stopped after the first
    assert ckpt["epoch"] == 0 and ckpt["epoch_step"] == 1 and ckpt["seen"] == 8
    assert ckpt["history"][-1]["val"] is not None      # evaluated where the time ran out, by both processes


# -----------------------------------------------------------------------------
# CUDA: run wherever it exists (bench/gpu_check.sh: pytest -m cuda)

@pytest.mark.cuda
def test_cuda_setup_sets_the_current_device():
    world, rank, device = devices.setup_distributed("cuda")
    assert (world, rank) == (1, 0) and device == torch.device("cuda", 0) and torch.cuda.current_device() == 0


@pytest.mark.cuda
def test_cuda_training_with_amp_then_resume_without(tmp_path):
    result = train.main(train.get_args_parser().parse_args(tiny(tmp_path, "--device", "cuda", "--amp")))
    assert 0 <= result["best"] <= 1
    ckpt = load(tmp_path / "last.pt")                  # a CUDA run's checkpoint loads on CPU
    assert all(v.device.type == "cpu" for v in ckpt["model"].values())
    bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    assert (ckpt["scaler"] == {}) == bf16              # float16 saves its loss scale, bfloat16 has none
    train.main(train.get_args_parser().parse_args(["--resume", str(tmp_path), "--epochs", "2", "--no-amp"]))
    assert load(tmp_path / "last.pt")["epoch"] == 2


@pytest.mark.cuda
def test_cuda_float16_scaler_resumes_from_a_run_without_amp(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "amp_dtype", lambda device_type, bf16_supported=None: torch.float16)
    train.main(train.get_args_parser().parse_args(tiny(tmp_path, "--device", "cuda")))
    train.main(train.get_args_parser().parse_args(["--resume", str(tmp_path), "--epochs", "2", "--amp"]))
    assert load(tmp_path / "last.pt")["scaler"]["scale"] > 0


@pytest.mark.cuda
def test_cuda_multiscale_and_channels_last(tmp_path):
    # the batch is resized on the GPU after the copy (train_one_epoch); the model is channels-last there
    result = train.main(train.get_args_parser().parse_args(tiny(tmp_path, "--device", "cuda", "--multiscale",
                                                                "--epochs", "2", "--train-images", "24")))
    assert all(row["loss"] > 0 for row in result["history"])


@pytest.mark.cuda
def test_cuda_compile_inductor(tmp_path):
    result = train.main(train.get_args_parser().parse_args(tiny(tmp_path, "--device", "cuda", "--compile")))
    assert result["history"][0]["loss"] > 0


@pytest.mark.cuda
def test_cuda_pinned_loader_with_workers(tmp_path):
    args = tiny(tmp_path, "--device", "cuda")
    args[args.index("--workers") + 1] = "2"
    assert train.main(train.get_args_parser().parse_args(args))["history"][0]["loss"] > 0


@pytest.mark.cuda(devices=2)
def test_cuda_two_gpu_processes_with_nccl(tmp_path):
    common = tiny(tmp_path / "ddp", "--device", "cuda", "--no-batch-norm", "--dropout", "0", "--augment", "none")
    done = torchrun("train.py", *common)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(2 x 1 x 4), on cuda:0" in done.stdout
    assert load(tmp_path / "ddp" / "last.pt")["history"][-1]["val"] is not None


@pytest.mark.cuda(devices=2)
def test_cuda_sync_bn_trains_and_saves_plain_batch_norm(tmp_path):
    done = torchrun("train.py", *tiny(tmp_path, "--device", "cuda", "--sync-bn", "--augment", "none"))
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = load(tmp_path / "last.pt")                  # SyncBatchNorm keeps BatchNorm's names: any loader reads it
    assert any(k.endswith("running_mean") for k in ckpt["model"]) and ckpt["config"]["sync_bn"] is True
    assert len(ckpt["rng_ranks"]) == 2                 # each process's generators


@pytest.mark.cuda(devices=2)
def test_cuda_nonfinite_loss_stops_both_gpu_processes(tmp_path):
    (tmp_path / "nan_on_rank_1.py").write_text(NAN_ON_RANK_1)
    done = torchrun(str(tmp_path / "nan_on_rank_1.py"),
                    *tiny(tmp_path, "--device", "cuda", "--epochs", "3", "--train-images", "8"), timeout=180)
    assert done.returncode != 0 and load(tmp_path / "last.pt")["epoch"] == 1


def test_requirements_name_a_torch_with_the_apis_used():
    # devices.amp_dtype: is_bf16_supported(including_emulation=False), torch 2.4 (pytorch/pytorch#129288);
    # devices.setup_distributed: init_process_group(device_id=); train.py: torch.amp.GradScaler(device_type)
    with open(os.path.join(REPO, "requirements.txt")) as f:
        assert [line.split()[0] for line in f if line.startswith("torch")] == ["torch>=2.4"]
    assert "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters
    assert "device_id" in inspect.signature(dist.init_process_group).parameters
    assert not torch.amp.GradScaler("cuda", enabled=False).is_enabled()


# -----------------------------------------------------------------------------
# bench/gpu_check.sh: its plumbing, shrunk (--quick), on whatever this machine has

def test_gpu_check_quick_writes_its_summary(tmp_path):
    # PYTHON: the interpreter running the tests runs every step (a bare `python` on PATH may be another one)
    done = subprocess.run(["bash", "bench/gpu_check.sh", "--quick", "--out", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHON=sys.executable))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    s = json.loads((tmp_path / "gpu_check.json").read_text())
    assert s["quick"] is True and s["environment"]["torch"] == torch.__version__
    assert s["environment"]["python"].startswith(sys.executable)
    assert list(s["steps"]) == ["train", "bench_train", "bench_loader", "bench_model", "tests_cuda"]
    assert all(v["exit_code"] == 0 and not v["timed_out"] and v["seconds"] > 0 for v in s["steps"].values())
    run = s["steps"]["bench_train"]["runs"][0]
    assert run["images_per_s"] > 0 and run["forward_ms"] > 0 and run["optimizer_ms"] > 0
    assert [r["workers"] for r in s["steps"]["bench_loader"]["data_rates"]] == [0] * 4 + [1] * 4
    assert s["steps"]["train"]["map"] is not None
    assert "epoch" in (tmp_path / "logs" / "train.log").read_text()          # the full logs are kept
    # the summary's entry of each step is printed as the step ends
    assert re.findall(r"^gpu_check: (\w+): \{", done.stdout, re.M) == list(s["steps"])


def test_bench_model_exits_non_zero_when_a_case_fails(monkeypatch, capsys):
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import bench_model

    def child_failed(args, name, batch, mode):      # what time_case raises when the child process exits non-zero
        raise RuntimeError("CUDA out of memory")
    monkeypatch.setattr(bench_model, "time_case", child_failed)
    monkeypatch.setattr(bench_model, "check_fuse", lambda name: (0.0, 0.0))         # not what is checked here
    monkeypatch.setattr(bench_model, "matmul_peak", lambda **k: 1.0)
    args = bench_model.get_args_parser().parse_args(["--presets", "yolov2-tiny-voc", "--batch-sizes", "1",
                                                     "--modes", "eager", "--threads", "1"])
    with pytest.raises(SystemExit) as exit:
        bench_model.main(args)
    assert exit.value.code == 1 and "1 case(s) failed: yolov2-tiny-voc 1 eager" in capsys.readouterr().out
