"""
Benchmark of metrics.py: evaluation time of each protocol on a VOC2007-test-sized case,
next to the official tools' logic (a loop port of py-faster-rcnn's voc_eval.py, and pycocotools when
installed), with a check that the results are equal; peak memory of the evaluation; NMS time on 1000
and 10000 boxes, random and clustered, checked against a loop port of torchvision's CPU kernel.
Why metrics.NMS_CHUNK: a Python loop per box costs ~30 µs per kept box; a head of 16 rows amortizes that.

Run: python bench/bench_metrics.py [--quick]     (--quick: skip the slow reference implementations)
"""
import argparse
import contextlib
import io
import os
import platform
import resource
import sys
import time
import tracemalloc

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from metrics import evaluate, nms  # noqa: E402

NUM_IMAGES, NUM_OBJECTS, NUM_DETECTIONS, NUM_CLASSES = 4952, 12000, 150000, 20   # VOC2007 test


def make_case(seed=0):
    """Images of ~500 x 375 pixels; objects from 10 to 400 pixels wide (small, medium and large in
    COCO's terms), 10% difficult; each object gets ~6 jittered detections (90% with its label),
    the rest of the 150000 are random boxes with random labels; scores rounded to 3 decimals (ties)."""
    g = np.random.default_rng(seed)
    objects_per_image = np.bincount(g.integers(0, NUM_IMAGES, NUM_OBJECTS), minlength=NUM_IMAGES)
    n_copies = np.bincount(g.integers(0, NUM_OBJECTS, NUM_DETECTIONS * 6 // 10), minlength=NUM_OBJECTS)
    n_random = NUM_DETECTIONS - n_copies.sum()
    random_per_image = np.bincount(g.integers(0, NUM_IMAGES, n_random), minlength=NUM_IMAGES)
    dets, gts, o = [], [], 0
    for i in range(NUM_IMAGES):
        m = objects_per_image[i]
        wh = np.exp(g.uniform(np.log(10), np.log(400), (m, 2)))
        xy = g.uniform(0, 1, (m, 2)) * np.maximum([500, 375] - wh, 0)
        boxes = np.round(np.concatenate([xy, xy + wh], 1))
        labels = g.integers(0, NUM_CLASSES, m)
        gts.append({"boxes": boxes, "labels": labels, "difficult": g.random(m) < 0.1})
        src = np.repeat(np.arange(m), n_copies[o:o + m])
        o += m
        jitter = g.normal(0, 0.12, (len(src), 4)) * np.tile(wh[src], 2)
        r = random_per_image[i]
        rxy, rwh = g.uniform(0, 450, (r, 2)), np.exp(g.uniform(np.log(10), np.log(300), (r, 2)))
        dets.append({
            "boxes": np.concatenate([boxes[src] + jitter, np.concatenate([rxy, rxy + rwh], 1)]),
            "labels": np.concatenate([np.where(g.random(len(src)) < 0.9, labels[src],
                                               g.integers(0, NUM_CLASSES, len(src))),
                                      g.integers(0, NUM_CLASSES, r)]),
            "scores": np.round(np.concatenate([g.beta(4, 2, len(src)), g.beta(1, 4, r)]), 3)})
    return dets, gts


def voc_eval_loop(dets, gts, c, use_07_metric):
    """py-faster-rcnn lib/datasets/voc_eval.py, its per-detection loop as written (stable sort and
    eps in the precision, as in tests/test_metrics.py), on in-memory data."""
    recs, npos = {}, 0
    for i, g in enumerate(gts):
        k = g["labels"] == c
        recs[i] = {"bbox": g["boxes"][k], "difficult": g["difficult"][k], "det": [False] * int(k.sum())}
        npos += int((~g["difficult"][k]).sum())
    image_ids = np.concatenate([np.full(int((d["labels"] == c).sum()), i) for i, d in enumerate(dets)])
    confidence = np.concatenate([d["scores"][d["labels"] == c] for d in dets])
    BB = np.concatenate([d["boxes"][d["labels"] == c] for d in dets])
    sorted_ind = np.argsort(-confidence, kind="stable")
    BB, image_ids = BB[sorted_ind], image_ids[sorted_ind]
    tp, fp = np.zeros(len(image_ids)), np.zeros(len(image_ids))
    for d in range(len(image_ids)):
        R, bb, ovmax = recs[image_ids[d]], BB[d], -np.inf
        BBGT = R["bbox"]
        if BBGT.size > 0:
            iw = np.maximum(np.minimum(BBGT[:, 2], bb[2]) - np.maximum(BBGT[:, 0], bb[0]) + 1., 0.)
            ih = np.maximum(np.minimum(BBGT[:, 3], bb[3]) - np.maximum(BBGT[:, 1], bb[1]) + 1., 0.)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) +
                   (BBGT[:, 2] - BBGT[:, 0] + 1.) * (BBGT[:, 3] - BBGT[:, 1] + 1.) - inters)
            overlaps = inters / uni
            ovmax, jmax = np.max(overlaps), np.argmax(overlaps)
        if ovmax > 0.5:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d], R["det"][jmax] = 1., 1
                else:
                    fp[d] = 1.
        else:
            fp[d] = 1.
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / float(npos), tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        return sum((np.max(prec[rec >= t]) if np.sum(rec >= t) else 0) / 11. for t in np.arange(0., 1.1, 0.1))
    mrec, mpre = np.concatenate(([0.], rec, [1.])), np.concatenate(([0.], prec, [0.]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def pycocotools_map(dets, gts):
    """pycocotools COCOeval (bbox) on the same data; difficult boxes sent as crowd. -> stats[:6]."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    annotations, results = [], []
    for i, (d, g) in enumerate(zip(dets, gts)):
        for b, lab, diff in zip(g["boxes"], g["labels"], g["difficult"]):
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(lab) + 1,
                                "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": int(diff)})
        for b, s, lab in zip(d["boxes"], d["scores"], d["labels"]):
            results.append({"image_id": i + 1, "category_id": int(lab) + 1, "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": [{"id": i + 1} for i in range(len(gts))], "annotations": annotations,
                        "categories": [{"id": k + 1} for k in range(NUM_CLASSES)]}
        coco.createIndex()
        E = COCOeval(coco, coco.loadRes(results), "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    return E.stats[:6]


def best_of(fn, repeat):
    """-> (best wall time, median wall time, best CPU time of this process, result). The machine is
    shared: CPU time is the steadier figure (numpy runs these on one thread)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), float(np.median(wall)), min(cpu), out


def reference_nms(boxes, scores, thr):
    """torchvision csrc/ops/cpu/nms_kernel.cpp as a Python loop (float32 scalars)."""
    b, s = boxes.numpy(), scores.numpy()
    order = np.argsort(-s, kind="stable")
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed, keep = np.zeros(len(b), bool), []
    for _i, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        j = order[_i + 1:]
        w = np.maximum(np.minimum(b[i, 2], b[j, 2]) - np.maximum(b[i, 0], b[j, 0]), np.float32(0))
        h = np.maximum(np.minimum(b[i, 3], b[j, 3]) - np.maximum(b[i, 1], b[j, 1]), np.float32(0))
        inter = w * h
        with np.errstate(invalid="ignore"):
            suppressed[j[(inter / (areas[i] + areas[j] - inter)).astype(np.float64) > thr]] = True
    return keep


def nms_case(g, n, clustered):
    if clustered:   # 20 objects, every box a jittered copy of one of them (a detector's raw output)
        centres = g.uniform(50, 950, (20, 2))[g.integers(0, 20, n)]
        xy, wh = centres + g.normal(0, 8, (n, 2)), g.uniform(60, 120, (n, 2))
    else:
        xy, wh = g.uniform(0, 1000, (n, 2)), g.uniform(10, 150, (n, 2))
    boxes = torch.tensor(np.concatenate([xy - wh / 2, xy + wh / 2], 1), dtype=torch.float32)
    return boxes, torch.tensor(g.random(n), dtype=torch.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--quick", action="store_true", help="skip the slow reference implementations")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"numpy {np.__version__}, torch threads {torch.get_num_threads()}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.1f}")
    dets, gts = make_case()
    n_obj, n_det = sum(len(g["labels"]) for g in gts), sum(len(d["scores"]) for d in dets)
    print(f"case: {len(gts)} images, {n_obj} objects, {n_det} detections, {NUM_CLASSES} classes")

    print("\n## evaluate()  (wall time best / median of 3 runs, CPU time best)")
    results = {}
    for protocol, goal in (("voc07", 0.5), ("voc12", 0.5), ("coco", 1.5)):
        best, median, cpu, results[protocol] = best_of(lambda: evaluate(dets, gts, protocol, NUM_CLASSES), 3)
        print(f"{protocol:6s} wall {best:6.3f} s / {median:6.3f} s, CPU {cpu:6.3f} s   (goal <= {goal} s)   "
              f"mAP {results[protocol]['map']:.6f}")
    tracemalloc.start()
    evaluate(dets, gts, "coco", NUM_CLASSES)
    coco_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    evaluate(dets, gts, "voc07", NUM_CLASSES)
    voc_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"peak memory allocated during evaluate (tracemalloc): voc07 {voc_peak / 2**20:.0f} MiB, "
          f"coco {coco_peak / 2**20:.0f} MiB (goal < 1024 MiB); "
          f"process max RSS so far {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")

    if not args.quick:
        print("\n## reference implementations (one run each)")
        for protocol in ("voc07", "voc12"):
            dt, _, cpu, ref = best_of(lambda: [voc_eval_loop(dets, gts, c, protocol == "voc07")
                                               for c in range(NUM_CLASSES)], 1)
            diff = max(abs(results[protocol]["ap"][c] - ref[c]) for c in range(NUM_CLASSES))
            print(f"voc_eval.py loop port, {protocol}: wall {dt:6.2f} s, CPU {cpu:6.2f} s   "
                  f"max |AP difference| {diff:.1e}  "
                  f"{'EQUAL' if diff <= 1e-6 else 'DIFFERENT'}")
        try:
            import pycocotools  # noqa: F401
        except ImportError:
            print("pycocotools not installed: skipped")
        else:
            dt, _, cpu, stats = best_of(lambda: pycocotools_map(dets, gts), 1)
            r = results["coco"]
            ours = [r["map"], r["map50"], r["map75"], r["map_small"], r["map_medium"], r["map_large"]]
            diff = max(abs(a - b) for a, b in zip(ours, stats))
            print(f"pycocotools COCOeval (incl. building its index): wall {dt:6.2f} s, CPU {cpu:6.2f} s   "
                  f"max |stat difference| {diff:.1e}  {'EQUAL' if diff <= 1e-6 else 'DIFFERENT'}")
            print(f"   AP {ours[0]:.4f}  AP50 {ours[1]:.4f}  AP75 {ours[2]:.4f}  "
                  f"small {ours[3]:.4f}  medium {ours[4]:.4f}  large {ours[5]:.4f}")

    print("\n## nms(iou_threshold=0.5)  (wall best / median, CPU best). Reference: torchvision's C++\n"
          "   nms takes ~1.1 ms for 1000 clustered boxes here (torchvision is not installable beside this torch)")
    g = np.random.default_rng(0)
    for n in (1000, 10000):
        for clustered in (False, True):
            boxes, scores = nms_case(g, n, clustered)
            best, median, cpu, keep = best_of(lambda: nms(boxes, scores, 0.5), 20 if n == 1000 else 3)
            same = keep.tolist() == reference_nms(boxes, scores, 0.5)
            print(f"{n:6d} boxes {'clustered' if clustered else 'random   '}: {best * 1e3:8.2f} ms / "
                  f"{median * 1e3:8.2f} ms, CPU {cpu * 1e3:8.2f} ms  kept {len(keep):5d}  "
                  f"{'identical to the torchvision loop port' if same else 'DIFFERENT from the loop port'}")


if __name__ == "__main__":
    main()
