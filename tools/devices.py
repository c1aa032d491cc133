"""
Where each training process runs, and how it feeds its device. Nothing here is in the papers. Each choice below is
OURS and says why.

DARKNET's several GPUs (examples/detector.c train_detector, src/network_kernels.cu sync_nets from the YOLOv2
release c6afc7ff, src/network.c from cd5d393b to f6afaab): `-gpus 0,1,2,3` keeps one network per GPU, each trained
on a batch of its own (64 images: the step's batch is 64 x GPUs) with learning_rate x GPUs, and every 4 batches
averages their weights, biases and batch-norm scales (sync_layer); their batch-norm running statistics are never
averaged (each GPU keeps its own; GPU 0's are saved). Batch norm in training normalizes over the images of one
forward: batch / subdivisions of them (8 in yolov2-voc.cfg: batch=64, subdivisions=8).
We keep one process per device with DDP, which averages the gradients at every step of one batch of 64 split over
the processes: the weights equal one process on the whole batch up to batch norm (tests/test_train.py runs it
without). Batch norm normalizes over each process's forward, 64 / (processes x --accumulate) images, as darknet's
per-GPU statistics (8 images with 8 processes, or 1 process and --accumulate 8); --sync-bn (nn.SyncBatchNorm)
normalizes over the forwards of all processes together, which neither darknet nor the paper does. Each process's
running statistics follow its own images; rank 0's are evaluated and saved (sync_buffers).

  one process per device: torchrun's LOCAL_RANK picks the GPU, NCCL on CUDA, gloo on CPU ....... choose_device()
  torch.cuda.set_device and the process group .................................................. setup_distributed()
  mixed precision: bfloat16 where the GPU computes in it, else float16 with loss scaling ........ amp_dtype()
  a checkpoint written with or without float16 AMP resumes with either ......................... restore_scaler()
  channels-last memory format ................................................................. channels_last()
  CUDA's defaults: cudnn.benchmark, TF32 matmuls, bfloat16 AMP where native; none on the CPU ... cuda_defaults(),
                                                                                                describe()
  batch norm per process (darknet's per-GPU statistics) or synchronized (--sync-bn) ........... batch_norm_sync()
  float32 or bfloat16: bfloat16 on a CPU that computes in it (avx512_bf16, amx_bf16), --precision  choose_precision(),
    native_bf16(), describe_precision(), autocast(); training's autocast on such a CPU ......... default_amp()
  data-loading processes: the cores shared by the processes on the machine; none for the CPU's    default_workers()
    synthetic default, drawn on torch's threads
  the training process's own threads: few on CUDA, where the workers need the cores ........... training_threads()
  the CPU's memory: freed blocks kept by glibc's malloc instead of mapped again each step ....... keep_freed_memory()
  page-locked batches for asynchronous copies; why the workers are not kept between epochs ..... loader_options(),
                                                                                                to_device()
  torch.compile as an option ................................................................... compile_model()
  evaluation spread over the processes: every world-th image, gathered to rank 0 ............... shard(),
                                                                                gather_to_first(), sync_buffers()

Every decision is a plain function of its inputs (the environment, what torch reports), so that tests check it
without the hardware; setup_distributed() and the others apply them. Imports torch only; train.py, detect.py and
bench/bench_train.py import it.
"""
import ctypes
import os
import platform

import torch
import torch.distributed as dist

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
# Arithmetic: float32, or bfloat16 where the CPU computes in it

PRECISIONS = ("fp32", "bf16")
# x86 flags of the instructions that compute in bfloat16: AVX512_BF16's dot products (Intel Cooper Lake, Sapphire
# Rapids and later; AMD Zen 4 and later) and AMX's bfloat16 tiles (Intel Sapphire Rapids and later). oneDNN runs
# bfloat16 convolutions and matmuls on them; without them torch converts to float32 and back around each
# operation, which is slower than float32 (README, Performance: 4-10x on such a CPU).
NATIVE_BF16 = ("avx512_bf16", "amx_bf16")


def cpu_capabilities():
    """The CPU's instruction-set flags as torch reads them (torch.cpu.get_capabilities: cpuinfo, public in recent
    torch, 2.13 here), {} on a torch without it (then no flag is known, and float32 is chosen)."""
    get = getattr(torch.cpu, "get_capabilities", None)
    return dict(get()) if get is not None else {}


def native_bf16(capabilities=None):
    """Whether the CPU computes in bfloat16 natively (NATIVE_BF16). capabilities: None asks torch."""
    capabilities = cpu_capabilities() if capabilities is None else capabilities
    return any(bool(capabilities.get(flag)) for flag in NATIVE_BF16)


def choose_precision(device_type, requested=None, capabilities=None):
    """--precision of inference (detect.py, train.py's evaluation, detect.detect_objects): requested ("fp32" or
    "bf16") when given; else "bf16" on a CPU with native bfloat16 (README, Performance: yolov2-voc's forward
    about 2x float32 there, outputs within the tolerance that bench/bench_bf16.py measures), "fp32" on every other
    CPU and on CUDA (not measured here; --precision bf16 asks for it). capabilities: None asks torch."""
    if requested is not None:
        if requested not in PRECISIONS:
            raise ValueError(f"--precision {requested}: expected one of {', '.join(PRECISIONS)}")
        return requested
    return "bf16" if device_type == "cpu" and native_bf16(capabilities) else "fp32"


def describe_precision(device, precision, requested=None, capabilities=None):
    """One line for the programs' output: the precision, the device, and why it was chosen."""
    if requested is not None:
        why = "as --precision asks"
    elif device.type != "cpu":
        why = "the default off the CPU; --precision bf16 for bfloat16"
    elif precision == "bf16":
        flags = [f for f in NATIVE_BF16 if (cpu_capabilities() if capabilities is None else capabilities).get(f)]
        why = f"this CPU computes in bfloat16 ({', '.join(flags)}); --precision fp32 for float32"
    else:
        why = "this CPU has no native bfloat16 (avx512_bf16, amx_bf16); --precision bf16 emulates it, slowly"
    return f"precision {precision} on {device}: {why}"


def autocast(device_type, precision):
    """The context in which a forward runs at `precision`: bfloat16 autocast (convolutions and matmuls in
    bfloat16, float32 weights kept; the caller converts the output back to float32), or nothing for fp32."""
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=precision == "bf16")


def default_amp(device_type, precision):
    """--amp when not given: on where the CPU runs bfloat16 natively (precision "bf16" on a CPU: there the synthetic
    default's step runs about twice as fast, and runs of it shortened to 100 and 300 steps reached float32's mAP,
    README, Results), off elsewhere (a GPU trains in float32 unless --amp; a CPU without native bfloat16 would only
    get slower)."""
    return device_type == "cpu" and precision == "bf16"


# -----------------------------------------------------------------------------
# Feeding the device

def cuda_defaults(device_type, bf16_native=None):
    """The speed settings train.py takes on CUDA unless --no-cuda-defaults; on the CPU none, so that CPU runs stay
    bit for bit what they were. -> dict(cudnn_benchmark, tf32, amp), each a bool:
      cudnn_benchmark: cuDNN times its algorithms at each new input shape and keeps the fastest; multi-scale
        training has 10 sizes (train.multiscale_size), so the timing is paid 10 times in a run of thousands of steps;
      tf32: float32 matmuls on tensor cores with a 10-bit mantissa (the connected layers, the [local] layer's
        einsum); cuDNN's convolutions already default to it (torch.backends.cudnn.allow_tf32);
      amp: --amp's default, bfloat16 where the GPU has its units (amp_dtype); float16 needs loss scaling and stays
        a choice (--amp). bf16_native: None asks the current CUDA device."""
    if device_type != "cuda":
        return dict(cudnn_benchmark=False, tf32=False, amp=False)
    if bf16_native is None:
        bf16_native = torch.cuda.is_bf16_supported(including_emulation=False)
    return dict(cudnn_benchmark=True, tf32=True, amp=bool(bf16_native))


def describe(device, settings, amp, amp_dtype):
    """train.py's first line: the device and the speed settings it trains with, CUDA's defaults or not."""
    chosen = [name for key, name in (("cudnn_benchmark", "cudnn.benchmark"), ("tf32", "TF32 matmuls"))
              if settings[key]] + [f"AMP {str(amp_dtype).replace('torch.', '')}" if amp else "float32 (no AMP)"]
    why = " (CUDA's defaults; --no-cuda-defaults: none of them)" if device.type == "cuda" and any(settings.values()) \
        else ""
    return f"device {device}: " + ", ".join(chosen) + why


# glibc's malloc.h: mallopt parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20     # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64 bits): blocks up to it from the heap
TRIM_THRESHOLD = 2**30          # free memory kept at the heap's top before it goes back to the system


def keep_freed_memory(device_type, libc=None):
    """train.py on the CPU, Linux with glibc: allocations up to 32 MB come from the heap, and freed memory stays with
    the process (up to 1 GB at the heap's top) instead of going back to the system. glibc's defaults map each large
    block fresh and unmap it when freed, so every step of a CPU training faults its activations' pages in again:
    about 30,000 page faults a step of the synthetic default in float32, and its step 1.3x slower (README,
    Performance; PyTorch's CPU tuning guides swap in jemalloc or tcmalloc for the same reason). The cost: the
    process keeps its peak memory. Elsewhere (CUDA, whose activations live on the GPU; macOS, musl, Windows)
    nothing is changed. libc: a ctypes library with mallopt (None: this process's C library).
    -> whether it was applied."""
    if device_type != "cpu" or (libc is None and platform.libc_ver()[0] != "glibc"):
        return False
    libc = libc or ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                     TRIM_THRESHOLD))


def batch_norm_sync(sync_bn, world, device_type):
    """--sync-bn: whether batch norm is nn.SyncBatchNorm (statistics over the forwards of all processes) rather
    than per process (darknet's per-GPU statistics; the module docstring). One process: nothing to sync. torch's
    SyncBatchNorm has no CPU path, so gloo runs refuse it."""
    if not sync_bn or world == 1:
        return False
    if device_type != "cuda":
        raise ValueError(f"--sync-bn needs CUDA devices: torch's SyncBatchNorm has no {device_type} path")
    return True


def apply_cuda_defaults(settings):
    """cuda_defaults()'s cudnn_benchmark and tf32 into torch (the CPU's settings are left as they are)."""
    if settings["cudnn_benchmark"]:
        torch.backends.cudnn.benchmark = True
    if settings["tf32"]:
        torch.backends.cuda.matmul.allow_tf32 = True


def usable_cores():
    """The cores this process may run on: os.sched_getaffinity (a container's or taskset's share, not the
    machine's) where there is one."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(cpu_count=None, processes=None, device_type="cuda", draws_batches=False):
    """--workers when not given: the cores this process may run on (usable_cores) divided among the training
    processes on this machine (torchrun's LOCAL_WORLD_SIZE); 0 means loading in the training process. No cap: a
    worker decodes and crops (data.py's crop_on_worker; the device resizes and distorts), and its prefetched batches
    are uint8, a quarter of float32's memory; one decodes darknet's VOC-sized JPEGs at a few hundred images/s, and a
    modern GPU trains yolov2-voc on thousands (README, GPU).
    0 on the CPU for a set that draws a batch at once with tensor operations (draws_batches: data.ShapesDataset,
    the synthetic default): that drawing already runs on torch's threads, so a loader process only takes cores
    from the training step it feeds (bench/bench_synthetic.py, 2 idle cores: 390 images/s in the training process
    against 272-292 with 1 or 2 loader processes in bfloat16, 264 against 197-204 in float32)."""
    if device_type == "cpu" and draws_batches:
        return 0
    cpu_count = cpu_count or usable_cores()
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(0, cpu_count // max(processes, 1))


def training_threads(device_type, cpu_count, workers):
    """torch's intra-op threads in the training process, or None to leave torch's choice (every core). CUDA: the
    process computes nothing large on the CPU (the batch is finished on the device, the loss has no host work),
    so it keeps the cores its workers do not take, at most 4 and at least 1, instead of a pool as large as the
    machine competing with them. CPU: it computes there; torch's choice stands (results unchanged)."""
    if device_type != "cuda":
        return None
    return max(1, min(4, cpu_count - workers))


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
    """A batch's targets (data.collate's dict: tensors, lists, and the "augment" dict of tensors) onto the device;
    from pinned memory the copies do not wait."""
    def move(value):
        return value.to(device, non_blocking=True) if torch.is_tensor(value) else value
    return {k: {a: move(b) for a, b in v.items()} if isinstance(v, dict) else move(v) for k, v in targets.items()}


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
