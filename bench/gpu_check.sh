#!/usr/bin/env bash
# What only a GPU shows, in one command (under 8 minutes on one modern GPU); writes one JSON summary.
#
#   1. the tests marked cuda (tests/conftest.py; they skip without CUDA), with the GPU; then the rest of the suite
#      with the GPU hidden (CUDA_VISIBLE_DEVICES=""): those tests assert CPU results bit for bit (exact resume,
#      accumulation), which cuDNN's non-deterministic kernels and TF32 do not promise on a GPU
#   2. bench/bench_train.py: yolov2-voc 416, batch 64, AMP off and on, channels-last on and off (the CUDA default
#      of devices.channels_last is decided by this), the FLOPs and the fraction of the GPU's peak, the data
#      pipeline per worker; with 2 GPUs or more, torchrun on 2 of them for the scaling
#   3. bench/bench_model.py --device cuda: the forward of every preset at batch 16, eager and fused + channels-last
#   4. python train.py (the synthetic default): wall time and mAP@0.5 (goal: >= 0.9 in under 2 minutes)
#
# Usage: bash bench/gpu_check.sh [--quick] [--out FILE]     (default FILE: gpu_check.json)
#   --quick shrinks every step to seconds (tests: the cuda-marked ones only; tiny benchmarks and run): it checks
#   the script's plumbing, also on a machine without a GPU (tests/test_distributed.py runs it so).
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0
OUT=gpu_check.json
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: bash bench/gpu_check.sh [--quick] [--out FILE]" >&2; exit 2 ;;
  esac
  shift
done
# The interpreter: $PYTHON (the tests pass the one that runs them), else the first python3 / python on PATH
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
DEVICE=$([ "$GPUS" -gt 0 ] && echo cuda || echo cpu)
echo "gpu_check: $GPUS CUDA device(s), quick=$QUICK, summary -> $OUT"

now() { "$PYTHON" -c "import time; print(time.time())"; }
step() {   # step NAME COMMAND...: run it, keep its output, exit code and seconds under $WORK/NAME.*
  local name=$1; shift
  echo "== $name: $*"
  local start; start=$(now)
  "$@" 2>&1 | tee "$WORK/$name.log"
  echo "${PIPESTATUS[0]}" > "$WORK/$name.rc"
  "$PYTHON" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$start" > "$WORK/$name.seconds"
}

# 1. Tests
if [ "$QUICK" = 0 ]; then TESTS=tests; else TESTS=tests/test_distributed.py; fi
step tests_cuda "$PYTHON" -m pytest -q -m cuda "$TESTS"
if [ "$QUICK" = 0 ]; then
  CUDA_VISIBLE_DEVICES="" step tests_cpu "$PYTHON" -m pytest -q -m "not cuda" tests
fi

# 2. Training throughput
if [ "$QUICK" = 0 ]; then
  step bench_train "$PYTHON" bench/bench_train.py --model yolov2-voc --batch 64 --amp both --channels-last both \
    --steps 20 --json "$WORK/bench_train.json"
  if [ "$GPUS" -ge 2 ]; then
    step bench_train_ddp "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=2 bench/bench_train.py \
      --model yolov2-voc --batch 64 --amp on --data tensors --steps 20 --data-images 0 --json "$WORK/bench_train_ddp.json"
  fi
else
  step bench_train "$PYTHON" bench/bench_train.py --model yolov2-tiny-voc --img-size 96 --batch 2 --steps 1 --warmup 1 \
    --amp off --images 4 --workers 0 --data-images 0 --json "$WORK/bench_train.json"
fi

# 3. Forward of every preset
if [ "$QUICK" = 0 ]; then
  # 14 presets x 2 modes, one process each (~5 s apiece with CUDA's start-up): batch 16 only, to stay in time
  step bench_model "$PYTHON" bench/bench_model.py --device "$DEVICE" --batch-sizes 16 --modes eager fused+cl \
    --min-time 0.3 --json "$WORK/bench_model.json"
else
  step bench_model "$PYTHON" bench/bench_model.py --device "$DEVICE" --presets yolov2-tiny-voc --batch-sizes 1 \
    --modes eager --min-time 0.05 --json "$WORK/bench_model.json"
fi

# 4. The synthetic default, timed
if [ "$QUICK" = 0 ]; then
  step train "$PYTHON" train.py --out "$WORK/run" --no-plots
else
  step train "$PYTHON" train.py --out "$WORK/run" --no-plots --img-size 64 --train-images 16 --val-images 8 \
    --batch-size 8 --workers 0
fi

"$PYTHON" - "$WORK" "$OUT" "$QUICK" "$GPUS" <<'EOF'
import datetime, json, os, sys
import torch
work, out, quick, gpus = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])

def read(name, ext, default=None):
    path = os.path.join(work, f"{name}.{ext}")
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f) if ext == "json" else f.read().strip()

def step(name):
    if read(name, "rc") is None:
        return None
    log = read(name, "log", "").splitlines()
    return {"exit_code": int(read(name, "rc")), "seconds": float(read(name, "seconds")), "last_lines": log[-5:]}

tests = {k: step(f"tests_{k}") for k in ("cuda", "cpu")}
best = os.path.join(work, "run", "best.pt")
ckpt = torch.load(best, map_location="cpu", weights_only=True) if os.path.exists(best) else None
train = {**(step("train") or {}), "map": ckpt["best"] if ckpt else None}
if not quick:
    train["goal_map_0.9_in_120_s"] = bool(ckpt and ckpt["best"] >= 0.9 and train["seconds"] < 120)
bench_train = {**(step("bench_train") or {}), **(read("bench_train", "json") or {})}
if read("bench_train_ddp", "json"):
    bench_train["ddp"] = read("bench_train_ddp", "json")
summary = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "quick": quick,
    "device": torch.cuda.get_device_name(0) if gpus else "cpu (no CUDA device)", "cuda_devices": gpus,
    "torch": torch.__version__,
    "tests": {**tests, "exit_code": max(t["exit_code"] for t in tests.values() if t)},
    "bench_train": bench_train,
    "bench_model": {**(step("bench_model") or {}), **(read("bench_model", "json") or {})},
    "train": train,
}
with open(out, "w") as f:
    json.dump(summary, f, indent=1)
print(f"gpu_check: wrote {out}: tests exit {summary['tests']['exit_code']}, train mAP {train['map']} in "
      f"{train.get('seconds')} s")
sys.exit(max(s["exit_code"] for s in (summary["tests"], step("bench_train"), step("bench_model"), step("train")) if s))
EOF
