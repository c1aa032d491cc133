#!/usr/bin/env bash
# What only a GPU shows, in one command of at most 5 minutes; every step has a timeout, and the summary JSON is
# rewritten after each step, so a run cut off still leaves what it measured.
#
#   1. train:          python train.py, the synthetic default (the headline: wall time and mAP@0.5; goal >= 0.9 in
#                      under 2 minutes); --time-limit makes it evaluate and save before its timeout
#   2. bench_train:    yolov2-voc 416, batch 64 already on the device (--data tensors): AMP x channels-last x
#                      cudnn.benchmark, forward / loss / backward / optimizer timed apart with CUDA events
#   3. bench_loader:   the same step fed by the loader (uint8 crops finished on the device), and the loader alone at
#                      two worker counts (half the cores, all of them)
#   4. bench_model:    one process, bfloat16 forward of yolov1, yolov2-voc and yolov2 at batch 16, eager and fused
#   5. tests_cuda:     the tests marked cuda (tests/conftest.py); the CPU suite stays in CI (.ci/run)
#
# Usage: bash bench/gpu_check.sh [--quick] [--out DIR]       (default DIR: gpu_check)
#   DIR/gpu_check.json the summary (environment, then one entry per step: exit code, seconds, timed out, figures);
#   DIR/logs/STEP.log  each step's full output; DIR/STEP.json the benchmarks' own figures; DIR/run the train.py run.
#   --quick shrinks every step to seconds: the script's plumbing, also on a machine without a GPU.
#   Every step runs with one interpreter: $PYTHON, else the python3 (or python) first on PATH, recorded in the JSON.
set -uo pipefail
cd "$(dirname "$0")/.."
QUICK=0
OUT=gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: bash bench/gpu_check.sh [--quick] [--out DIR]" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-$(command -v python3 || command -v python)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
SUMMARY="$OUT/gpu_check.json"
rm -f "$OUT"/*.rc "$OUT"/*.seconds "$SUMMARY"
CORES=$("$PY" -c "import os; print(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count())")
echo "gpu_check: $PY, quick=$QUICK, $CORES cores, output $OUT"

# The environment: GPU, driver, torch, CUDA, cuDNN
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"; } \
  > "$OUT/logs/nvidia-smi.log"

summarize() {   # rewrite $SUMMARY from what is under $OUT; print the entry of step $1 (if given)
  "$PY" - "$OUT" "$QUICK" "$PY" "${1:-}" <<'EOF'
import datetime, json, os, platform, sys
import torch
out, quick, python, last = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4]

def read(path, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as f:
        return json.load(f) if path.endswith(".json") else f.read().strip()

def step(name):
    rc = read(os.path.join(out, f"{name}.rc"))
    if rc is None:
        return None
    log = read(os.path.join(out, "logs", f"{name}.log"), "").splitlines()
    return {"exit_code": int(rc), "timed_out": int(rc) in (124, 137), "seconds": float(read(os.path.join(out, f"{name}.seconds"))),
            "log": f"logs/{name}.log", "last_lines": log[-5:], **(read(os.path.join(out, f"{name}.json")) or {})}

cuda = torch.cuda.is_available()
summary = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "quick": quick,
    "environment": {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu (no CUDA device)",
        "cuda_devices": torch.cuda.device_count(), "nvidia_smi": read(os.path.join(out, "logs", "nvidia-smi.log")),
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": f"{python} ({platform.python_version()})", "cores": len(os.sched_getaffinity(0))},
    "steps": {}}
for name in ("train", "bench_train", "bench_loader", "bench_model", "tests_cuda"):
    s = step(name)
    if s is not None:
        summary["steps"][name] = s
train = summary["steps"].get("train")
if train:
    best = os.path.join(out, "run", "best.pt")
    train["map"] = torch.load(best, map_location="cpu", weights_only=True)["best"] if os.path.exists(best) else None
    if not quick:
        train["goal_map_0.9_in_120_s"] = bool(train["map"] is not None and train["map"] >= 0.9 and train["seconds"] < 120)
with open(os.path.join(out, "gpu_check.json"), "w") as f:
    json.dump(summary, f, indent=1)
if last:
    entry = summary["steps"].get(last, {})
    shown = {k: v for k, v in entry.items() if k not in ("runs", "data_rates", "results", "last_lines")}
    print(f"gpu_check: {last}: " + json.dumps(shown))
EOF
}

run_step() {   # run_step NAME SECONDS COMMAND...: under `timeout`, output to logs/NAME.log, then the summary
  local name=$1 limit=$2; shift 2
  echo "== $name (timeout ${limit} s): $*"
  local start; start=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
  echo $? > "$OUT/$name.rc"
  tail -n 3 "$OUT/logs/$name.log"
  "$PY" -c "import sys, time; print(round(time.time() - float(sys.argv[1]), 1))" "$start" > "$OUT/$name.seconds"
  summarize "$name"
}
summarize

if [ "$QUICK" = 0 ]; then
  # 100 + 50 + 40 + 40 + 60 = 290 s of timeouts
  run_step train 100 "$PY" train.py --out "$OUT/run" --exist-ok --no-plots --time-limit 75
  run_step bench_train 50 "$PY" bench/bench_train.py --model yolov2-voc --batch 64 --data tensors --amp both \
    --channels-last both --cudnn-benchmark both --steps 8 --warmup 3 --data-images 0 --json "$OUT/bench_train.json"
  run_step bench_loader 40 "$PY" bench/bench_train.py --model yolov2-voc --batch 64 --data loader --amp on \
    --steps 8 --warmup 2 --images 128 --data-images 256 --data-workers $((CORES / 2)) "$CORES" \
    --json "$OUT/bench_loader.json"
  run_step bench_model 40 "$PY" bench/bench_model.py --device cuda --dtype bfloat16 --one-process \
    --presets yolov1 yolov2-voc yolov2 --batch-sizes 16 --modes eager fused+cl --min-time 0.3 \
    --json "$OUT/bench_model.json"
  run_step tests_cuda 60 "$PY" -m pytest -q -m cuda tests
else
  DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
  run_step train 120 "$PY" train.py --out "$OUT/run" --exist-ok --no-plots --img-size 64 --train-images 16 \
    --val-images 8 --batch-size 8 --workers 0
  run_step bench_train 120 "$PY" bench/bench_train.py --model yolov2-tiny-voc --img-size 96 --batch 2 --data tensors \
    --steps 1 --warmup 1 --amp off --cudnn-benchmark off --data-images 0 --json "$OUT/bench_train.json"
  run_step bench_loader 120 "$PY" bench/bench_train.py --model yolov2-tiny-voc --img-size 96 --batch 2 --data loader \
    --steps 1 --warmup 1 --amp off --images 4 --workers 0 --data-images 8 --data-workers 0 1 \
    --json "$OUT/bench_loader.json"
  run_step bench_model 120 "$PY" bench/bench_model.py --device "$DEVICE" --one-process --presets yolov2-tiny-voc \
    --batch-sizes 1 --modes eager --min-time 0.05 --json "$OUT/bench_model.json"
  run_step tests_cuda 120 "$PY" -m pytest -q -m cuda tests/test_distributed.py
fi

"$PY" - "$SUMMARY" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
steps = s["steps"]
print(f"gpu_check: wrote {sys.argv[1]}: " + ", ".join(f"{k} exit {v['exit_code']} in {v['seconds']} s" for k, v in steps.items())
      + f"; train mAP {steps.get('train', {}).get('map')}")
sys.exit(max([v["exit_code"] for v in steps.values()] or [1]))
EOF
