"""
bfloat16 on the CPU against float32: speed beside onnxruntime and OpenCV, and how far the outputs move.

  1. speed: yolov2-voc at 416, batch 1 and 8, images/s, all in this one process and interleaved (a change in the
     machine's load falls on every runner alike), random weights:
       PyTorch float32 (detect.py's forward with --precision fp32), the same with darknet.fuse + channels-last,
       PyTorch bfloat16 autocast on a channels-last input (detect.py's forward with --precision bf16), the same on
       an NCHW input (what the input's layout costs), and fused + channels-last,
       onnxruntime on this project's ONNX export (tools/export.py), OpenCV DNN on that export (when cv2 is
       installed; skipped otherwise), and the ratios to PyTorch float32 and to onnxruntime;
  2. closeness: per preset, the largest |bfloat16 - float32| of the network's raw output on two random images
     (seeded weights, batch-norm statistics far from (0, 1)) and that as a fraction of the output's largest |value|;
  3. with --weights CHECKPOINT of the synthetic default (default runs/synthetic/best.pt when it exists): the held-out
     synthetic images' VOC07 mAP@0.5 in both precisions and the detections that differ (at the evaluation's
     threshold, metrics.EVAL_CONF, and at the preset's test threshold: a detection differs when the other precision
     has none of its class at IoU >= 0.5 on that image).
The CPU's flags (torch.cpu.get_capabilities) and the precision detect.py chooses by itself are printed first.

Run:  python bench/bench_bf16.py                                  (minutes on 2 cores)
      python bench/bench_bf16.py --presets yolov2-voc yolov1-tiny --no-speed --weights runs/synthetic/best.pt
      python bench/bench_bf16.py --presets --threads 1          (the speed alone, one thread: a shared machine)
"""
import os
import sys
import tempfile

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.join(REPO, "bench"), os.path.join(REPO, "tests")]
import darknet  # noqa: E402
import detect  # noqa: E402
import metrics  # noqa: E402
from bench_export import build, images_per_second, session, speed_parser  # noqa: E402
from tools import devices  # noqa: E402
from tools.export import export_onnx  # noqa: E402


def cpu_flags():
    """The bfloat16-related flags torch reports for this CPU, as one string."""
    caps = devices.cpu_capabilities()
    names = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_f", "avx2", "bf16", "sve_bf16")
    return ", ".join(f"{n} {'yes' if caps.get(n) else 'no'}" for n in names if n in caps) or "none reported"


def bf16(fn):
    def run(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fn(x)
    return run


def opencv_runner(path, threads, size):
    """OpenCV DNN on the ONNX file, or None when cv2 is not installed (it is optional) or cannot run the file (one
    forward of a one-image batch is tried first; the reason is printed in the table's header)."""
    try:
        import cv2
    except ImportError:
        return None, "OpenCV DNN: skipped, cv2 is not installed (pip install opencv-python-headless)"
    cv2.setNumThreads(threads)

    def run(x):
        net.setInput(x.numpy())
        return net.forward()
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
        run(torch.rand(1, 3, *size))
    except cv2.error as error:
        reason = str(error).strip().splitlines()[-1]
        return None, f"OpenCV {cv2.__version__} DNN: cannot run this export ({reason})"
    return run, f"OpenCV {cv2.__version__}"


def speed(preset, img_size, batch_sizes, min_time, folder):
    model = build(preset, img_size).eval()
    path = os.path.join(folder, "speed.onnx")
    export_onnx(model, path)
    threads = torch.get_num_threads()
    fused = darknet.fuse(model).to(memory_format=torch.channels_last)
    ort = session(path, threads)
    nhwc = lambda x: x.contiguous(memory_format=torch.channels_last)     # noqa: E731
    runs = {"fp32": model, "fp32 fused+cl": lambda x: fused(nhwc(x)),
            "bf16": bf16(lambda x: model(nhwc(x))),               # detect.predict's bf16 path: NHWC input
            "bf16 NCHW": bf16(model), "bf16 fused+cl": bf16(lambda x: fused(nhwc(x))),
            "onnxruntime": lambda x: ort.run(["raw"], {"images": x.numpy()})}
    cv_run, cv_note = opencv_runner(path, threads, (img_size, img_size))
    if cv_run is not None:
        runs["OpenCV DNN"] = cv_run
    print(f"\n{preset} at {img_size}, random weights, {threads} threads, torch {torch.__version__}, onnxruntime "
          f"{__import__('onnxruntime').__version__}, {cv_note}; images/s, median of >= 3 interleaved rounds; load "
          f"average {os.getloadavg()[0]:.2f} before")
    print("| batch | " + " | ".join(runs) + " | bf16 / fp32 | bf16 / onnxruntime |" +
          (" bf16 / OpenCV |" if cv_run else ""))
    print("|---|" + "---|" * (len(runs) + 2 + bool(cv_run)))
    with torch.no_grad():
        for batch in batch_sizes:
            x, here = torch.rand(batch, 3, img_size, img_size), dict(runs)
            if cv_run is not None:
                try:
                    cv_run(x)
                except Exception as error:          # cv2.error: OpenCV refuses this batch size, printed beside it
                    del here["OpenCV DNN"]
                    print(f"(OpenCV DNN at batch {batch}: {str(error).strip().splitlines()[-1]})")
            r = images_per_second(here, x, min_time)
            cv = r.get("OpenCV DNN")
            print(f"| {batch} | " + " | ".join(f"{r[n]:.2f}" if n in r else "—" for n in runs) +
                  f" | {r['bf16'] / r['fp32']:.2f} | {r['bf16'] / r['onnxruntime']:.2f} |" +
                  (f" {r['bf16'] / cv:.2f} |" if cv else " — |" if cv_run else ""), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def closeness(preset):
    """-> (input size, largest |bf16 - fp32|, largest |fp32|) of the raw output on two random images."""
    model = build(preset).eval()
    x = torch.rand(2, 3, model.img_size, model.img_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        exact = model(x).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):           # detect.predict's bf16 path
            rounded = model(x.contiguous(memory_format=torch.channels_last)).float()
    return model.img_size, (rounded - exact).abs().max().item(), exact.abs().max().item()


def differing(a, b, iou=0.5):
    """Detections of a (one image's dict) with no detection of b of the same class at IoU >= iou."""
    if len(a["scores"]) == 0:
        return 0
    if len(b["scores"]) == 0:
        return len(a["scores"])
    same_class = a["labels"][:, None] == b["labels"][None, :]
    return int((~((metrics.box_iou(a["boxes"], b["boxes"]) >= iou) & same_class).any(1)).sum())


def synthetic_map(weights, val_images):
    model, class_names, config = detect.load_model(weights)
    dataset, _ = detect.open_split("shapes", "val", model.img_size, dict(config, val_images=val_images or
                                                                           config.get("val_images")))
    family = detect.FAMILIES[model.config["family"]]
    found = {p: detect.evaluate(model, dataset, metrics.EVAL_CONF, family.EVAL_NMS, 8, precision=p)
             for p in ("fp32", "bf16")}
    truths = found["fp32"][1]
    maps = {p: metrics.evaluate(f[0], truths, protocol="voc07", num_classes=len(class_names))["map"]
            for p, f in found.items()}
    conf = detect.test_thresholds(model)["conf"]
    print(f"\n{weights} ({model.preset} at {model.img_size}), {len(dataset)} held-out synthetic images:")
    print(f"| | fp32 | bf16 |\n|---|---|---|\n| VOC07 mAP@0.5 | {maps['fp32']:.4f} | {maps['bf16']:.4f} |")
    for threshold in (metrics.EVAL_CONF, conf):
        kept = {p: [{k: v[d["scores"] >= threshold] if torch.is_tensor(v) and v.dim() else v for k, v in d.items()}
                    for d in f[0]] for p, f in found.items()}
        counts = {p: sum(len(d["scores"]) for d in dets) for p, dets in kept.items()}
        only = {p: sum(differing(a, b) for a, b in zip(kept[p], kept[q])) for p, q in (("fp32", "bf16"),
                                                                                    ("bf16", "fp32"))}
        print(f"| detections with score >= {threshold:g} | {counts['fp32']} | {counts['bf16']} |")
        print(f"| ... of them without a match in the other precision (same class, IoU >= 0.5) | {only['fp32']} | "
              f"{only['bf16']} |")


def main():
    p = speed_parser(__doc__, "skip part 1")
    p.add_argument("--weights", default=os.path.join("runs", "synthetic", "best.pt"),
                   help="a synthetic-default checkpoint for part 3 (skipped when the file is missing)")
    p.add_argument("--val-images", type=int, help="held-out images for part 3 (default: the run's)")
    p.add_argument("--threads", type=int, help="torch, onnxruntime and OpenCV threads (default torch's: the "
                   "cores); on a shared machine --threads 1 keeps one thread from waiting for a descheduled other")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU flags (torch.cpu.get_capabilities): {cpu_flags()}; detect.py's precision on this CPU: "
          f"{devices.choose_precision('cpu')}")
    if not args.no_speed:
        with tempfile.TemporaryDirectory() as folder:
            speed(args.speed_preset, args.img_size, args.batch_sizes, args.min_time, folder)
    if args.presets:
        print("\n| preset | size | max abs bf16 - fp32 | max abs fp32 output | difference / output |")
        print("|---|---|---|---|---|")
        for preset in args.presets:
            size, diff, scale = closeness(preset)
            print(f"| {preset} | {size} | {diff:.3g} | {scale:.3g} | {diff / scale:.1e} |", flush=True)
    if os.path.isfile(args.weights):
        synthetic_map(args.weights, args.val_images)
    else:
        print(f"\n{args.weights}: no such checkpoint, the synthetic mAP in both precisions is skipped (python "
              "train.py writes runs/synthetic/best.pt)")


if __name__ == "__main__":
    main()
