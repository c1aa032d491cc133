"""
Where each training process runs, and how it feeds its device. Nothing here is in the papers. DARKNET (f6afaab,
examples/detector.c train_detector, src/network.c train_networks / sync_nets) trains in float32 in one process:
with `-gpus 0,1,2,3` one copy of the network per GPU, each on its own batch, the weights averaged every 4
batches and the learning rate multiplied by the number of GPUs. We keep one process per device with DDP, which
averages the gradients at every step: the run equals one process on the whole batch (tests/test_train.py).
Each choice below is OURS and says why.

  one process per device: torchrun's LOCAL_RANK picks the GPU, NCCL on CUDA, gloo on CPU ....... choose_device()
  torch.cuda.set_device and the process group .................................................. setup_distributed()
  mixed precision: bfloat16 where the GPU computes in it, else float16 with loss scaling ........ amp_dtype()
  a checkpoint written with or without float16 AMP resumes with either ......................... restore_scaler()
  channels-last memory format ................................................................. channels_last()
  data-loading processes: the cores shared by the processes on the machine, at most 8 .......... default_workers()
  page-locked batches for asynchronous copies; why the workers are not kept between epochs ..... loader_options(),
                                                                                                to_device()
  torch.compile as an option ................................................................... compile_model()
  evaluation spread over the processes: every world-th image, gathered to rank 0 ............... shard(),
                                                                                gather_to_first(), sync_buffers()

Every decision is a plain function of its inputs (the environment, what torch reports), so that tests check it
without the hardware; setup_distributed() and the others apply them. Imports torch only; train.py and
bench/bench_train.py import it.
"""
import os

import torch
import torch.distributed as dist

MOST_WORKERS = 8    # more loader processes per training process rarely pay: each holds its prefetched batches


# -----------------------------------------------------------------------------
# One process per device

def choose_device(env, requested=None, cuda_available=False, cuda_count=0):
    """-> (backend, device) of this process. env: torchrun's variables (WORLD_SIZE, LOCAL_RANK: the process's
    index on its machine); requested: --device or None (CUDA when there is one).
    Each process takes cuda:LOCAL_RANK: with a bare "cuda" every process would land on GPU 0, where NCCL refuses
    two ranks on one device. NCCL for CUDA tensors, gloo for CPU ones (NCCL has no CPU path)."""
    world, local_rank = int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))
    try:
        wanted = torch.device(requested or ("cuda" if cuda_available else "cpu"))
    except RuntimeError:
        raise ValueError(f"--device {requested}: not a device (cpu, cuda, cuda:1, ...)") from None
    if wanted.type != "cuda":
        return "gloo", wanted
    if not cuda_available:
        raise ValueError(f"--device {requested}: torch finds no CUDA device (torch.cuda.is_available() is False)")
    if wanted.index is not None and world > 1:
        raise ValueError(f"--device {requested} with {world} processes (torchrun): each process takes "
                         "cuda:LOCAL_RANK; give --device cuda (CUDA_VISIBLE_DEVICES chooses the GPUs)")
    index = local_rank if wanted.index is None else wanted.index
    if index >= cuda_count:
        raise ValueError(f"this process needs cuda:{index} (LOCAL_RANK {local_rank}, --device {requested}) but "
                         f"{cuda_count} CUDA device(s) are visible: at most --nproc_per_node={cuda_count}")
    return "nccl", torch.device("cuda", index)


def setup_distributed(requested=None):
    """torchrun sets WORLD_SIZE, RANK (over all machines) and LOCAL_RANK: choose_device, make the device current
    (autocast, torch.cuda.* and NCCL's object collectives use the current one), join the process group bound to
    it (NCCL then knows each rank's GPU at once; a barrier no longer guesses it). -> (processes, rank, device)"""
    backend, device = choose_device(os.environ, requested, torch.cuda.is_available(), torch.cuda.device_count())
    if device.type == "cuda":
        torch.cuda.set_device(device)
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    if world > 1:
        dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    return world, rank, device


# -----------------------------------------------------------------------------
# Mixed precision and memory format

def amp_dtype(device_type, bf16_supported=None):
    """--amp's autocast dtype. bfloat16 keeps float32's exponent range, so no loss scaling is needed and nothing
    overflows at 65504; GPUs of compute capability 8 and later (A100, H100, RTX 30xx...) run it at float16's
    tensor-core rate. Older ones (V100, T4) have no bfloat16 units (torch emulates it, slowly: hence
    including_emulation=False): float16 with the GradScaler there. On CPU autocast's bfloat16 path is the one
    torch supports best. bf16_supported: None asks the current CUDA device."""
    if device_type != "cuda":
        return torch.bfloat16
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.bfloat16 if bf16_supported else torch.float16


def restore_scaler(scaler, state):
    """A checkpoint's GradScaler state into scaler. A run without float16 AMP (no --amp, or bfloat16) saves {},
    which GradScaler.load_state_dict refuses: the scaler then starts afresh (scale 2^16; it finds its level again
    by halving on the first overflowing steps, which it skips). A disabled scaler ignores any state.
    -> a line to print, or None"""
    if scaler.is_enabled() and not state:
        return f"--amp: the checkpoint holds no float16 loss scale; starting at {scaler.get_scale():g}"
    scaler.load_state_dict(state or {})
    return None


def channels_last(device_type):
    """Whether the model (and so every convolution's output) is kept channels-last (NHWC).
    CPU: chosen from the forward (bench/bench_model.py, fused + channels-last the fastest); the training step is
    timed both ways by bench/bench_train.py --channels-last both (README, Performance).
    CUDA: cuDNN's tensor-core convolutions (float16, bfloat16, TF32) work in NHWC and transpose NCHW tensors around
    each call otherwise; not yet measured here: bench/gpu_check.sh times both (bench_train.py --channels-last)."""
    return device_type in ("cpu", "cuda")


def compile_model(model, backend=None):
    """--compile BACKEND: torch.compile(model), model being the DDP-wrapped one when there are several processes
    (TorchDynamo then cuts the graph at DDP's gradient buckets, so that their all-reduce still overlaps the
    backward pass). The wrapper shares the parameters: checkpoints keep saving the bare model's state_dict.
    Multi-scale training compiles once per new size until torch marks the size dynamic (its second size)."""
    return torch.compile(model, backend=backend) if backend else model


# -----------------------------------------------------------------------------
# Feeding the device

def default_workers(cpu_count=None, processes=None, most=MOST_WORKERS):
    """--workers when not given: the cores this process may run on (os.sched_getaffinity: a container's or
    taskset's share, not the machine's) divided among the training processes on this machine (torchrun's
    LOCAL_WORLD_SIZE), at most `most`; 0 means loading in the training process. Every core helps on a GPU: one
    worker decodes and augments (darknet's YOLOv2 augmentation) about 120 images/s (README, Performance), half a
    second for a batch of 64, while a modern GPU computes yolov2-voc's step on it in tens of milliseconds."""
    if cpu_count is None:
        cpu_count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(0, min(most, cpu_count // max(processes, 1)))


def loader_options(device, workers):
    """The DataLoader's keywords for the training set.
    pin_memory on CUDA: batches land in page-locked memory, so .to(device, non_blocking=True) copies them while
    the GPU computes; pinning on CPU would only cost a copy.
    persistent_workers stays False, against the usual advice: a kept worker holds the copy of the dataset it
    got at the first epoch, so the epoch set afterwards (data.py's set_epoch: augmentation from (seed, epoch,
    image)) and the loader's seeds would not reach it: every epoch would repeat epoch 0's augmentation, and a
    resumed run would differ from an uninterrupted one. On Linux a new epoch's workers are forked in
    milliseconds; the pipeline has to fill again either way."""
    return dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False)


def to_device(targets, device):
    """A batch's targets (a list of dicts) onto the device; from pinned memory the copies do not wait."""
    return [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in t.items()} for t in targets]


# -----------------------------------------------------------------------------
# Evaluation spread over the processes

def shard(n, world, rank):
    """The images this process evaluates: rank, rank + world, ... (n // world or one more each), spread over the
    whole set rather than a block each, since sizes and object counts drift along a dataset's order."""
    return range(rank, n, world)


def gather_to_first(part, world):
    """Each process's dict {image index: result} -> their union in rank 0, None in the others (pickled over the
    process group; NCCL sends it from the current CUDA device, set by setup_distributed)."""
    if world == 1:
        return part
    parts = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(part, parts, dst=0)
    return None if parts is None else {k: v for p in parts for k, v in p.items()}


def gather_mean(values, count, world):
    """Each process's {name: mean over its `count` images} (a classifier's top-1, top-5) -> the means over all
    the images, in rank 0 (None in the others)."""
    if world == 1:
        return values
    parts = gather_to_first({dist.get_rank(): (count, values)}, world)
    if parts is None:
        return None
    total = sum(n for n, _ in parts.values())
    return {k: sum(n * v[k] for n, v in parts.values()) / max(total, 1) for k in values}


def sync_buffers(model, world):
    """Rank 0's buffers (batch-norm running statistics) into every process, before they evaluate. DDP broadcasts
    rank 0's buffers at the start of each forward, so after the last step every process holds the update from its
    own last batch; the checkpoint is rank 0's model, and so must the evaluated one be."""
    if world > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)
