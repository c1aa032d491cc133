"""
Detection metrics: box geometry, non-maximum suppression, average precision, and the Pascal VOC and
MS COCO evaluation protocols, computing what the official tools compute. Needs torch and numpy only.
Boxes are xyxy float pixels, 0-based continuous coordinates: [0, 0, 10, 10] is 10 pixels wide.

Paper / official tool -> code
  Boxes: centre-size (YOLO's output) <-> corners (everything else) ...... xywh_to_xyxy, xyxy_to_xywh
  YOLOv1 §2.2/§2.3, YOLOv2 §2: IoU of boxes ................................ box_iou, box_iou_aligned
  YOLOv1 §2.3 "Non-maximal suppression" (semantics of torchvision.ops.nms) . nms, batched_nms
  VOC devkit AP (py-faster-rcnn voc_eval.py: voc_ap) ...................... average_precision("voc07"/"voc12")
  COCO AP, 101 recall points (pycocotools cocoeval.py COCOeval.accumulate) average_precision("coco")
  VOC2007 test protocol, the one in both papers' VOC tables ............... evaluate(protocol="voc07")
  VOC2010+ protocol ........................................................ evaluate(protocol="voc12")
  ImageNet (ILSVRC) DET protocol, the ILSVRC2015 devkit (YOLO9000 §4) ........ evaluate(protocol="ilsvrc")
  COCO bbox protocol (pycocotools 2.0: evaluateImg, accumulate, summarize) . evaluate(protocol="coco")
  Per-class AP table, as text (PR-curve plots: tools/plots.py) ............ format_ap_table
  YOLOv1 §4.2 "VOC 2007 Error Analysis", Figure 4 (Hoiem et al. 2012's tools):
    each class's top N detections as correct / localization / similar / other / background . error_analysis
    the VOC "similar" groups of Hoiem's code; a data set's own groups by name ... VOC_SIMILAR_CLASSES, similar_groups
    the five shares per class and overall, beside the paper's (pie charts: tools/plots.py) ... format_error_table

"The official tools": for VOC, voc_eval.py from py-faster-rcnn (the devkit's Python port, also what
darknet's scripts/reval_voc.py runs); for COCO, pycocotools 2.0's COCOeval with iouType "bbox".
evaluate() equals them to 1e-6 (tests/test_metrics.py and bench/bench_metrics.py check it).

Why evaluate() must get ALL detections (above EVAL_CONF), not those above a demo's threshold (0.25, 0.5):
AP is the area under the precision-recall curve traced as the confidence threshold sweeps from the highest
score to the lowest. A cut ends that curve at the recall it reaches; the devkits count the recall beyond
as precision 0, so the AP drops, by an amount that depends on the cut, below the number the papers report.
NMS belongs to the detector and comes before; the only cut that belongs to a protocol is COCO's 100
detections per image and class.
"""
import numpy as np
import torch

EVAL_CONF = 0.005   # darknet detector.c validate_detector: thresh .005; the official evaluations keep every detection above it

# -----------------------------------------------------------------------------
# Box formats and IoU

def xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre x, centre y, width, height -> (..., 4) x1, y1, x2, y2."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) x1, y1, x2, y2 -> (..., 4) centre x, centre y, width, height."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def batch_targets(targets, max_objects=None, min_size=0.0) -> dict:
    """A batch's targets, one dict per image {"boxes": (M, 4) normalized xyxy, "labels": (M,), ...}, as tensors of
    fixed shape, so that a loss masks instead of filtering (a filter's size is data: the host would wait for the
    device to learn it). In each image the boxes with w and h >= min_size are kept, in list order, the first
    max_objects of them (None: all); T = max_objects, or the most any image keeps (at least 1). ->
      "boxes" (N, T, 4) normalized xyxy, zeros where padded;  "labels" (N, T) int64, 0 where padded;
      "valid" (N, T) bool, the kept boxes;
      "image_label" (N,) int64, -1 for images without one, and "classification" (M,) int64, the images with one
        (YOLO9000's classification images), when any image has one;
      every other key: 0-dim tensors stacked (N,), anything else listed (paths, sizes: for messages).
    data.collate calls it in the loader's workers; the losses call it on a list of dicts."""
    if not all("boxes" in t for t in targets):                       # a classifier's targets: no boxes to pad
        return {k: _stacked([t.get(k) for t in targets]) for k in dict.fromkeys(k for t in targets for k in t)}
    kept = []
    for t in targets:
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(t["labels"]).reshape(-1).long()
        large = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
        kept.append((boxes[large][:max_objects], labels[large][:max_objects]))
    N = len(kept)
    T = max_objects if max_objects is not None else max([1] + [len(b) for b, _ in kept])
    batch = {"boxes": torch.zeros(N, T, 4), "labels": torch.zeros(N, T, dtype=torch.long),
             "valid": torch.zeros(N, T, dtype=torch.bool)}
    for n, (boxes, labels) in enumerate(kept):
        batch["boxes"][n, :len(boxes)], batch["labels"][n, :len(boxes)], batch["valid"][n, :len(boxes)] = boxes, labels, True
    if any("image_label" in t for t in targets):
        image_label = [int(t["image_label"]) if "image_label" in t else -1 for t in targets]
        batch["image_label"] = torch.tensor(image_label, dtype=torch.long)
        batch["classification"] = torch.tensor([n for n, label in enumerate(image_label) if label >= 0],
                                               dtype=torch.long)
    for key in dict.fromkeys(k for t in targets for k in t if k not in ("boxes", "labels", "image_label")):
        batch[key] = _stacked([t.get(key) for t in targets])
    return batch


def _stacked(values):
    """One value per image -> (N,) if each is a 0-dim tensor, else the list."""
    return torch.stack(values) if all(torch.is_tensor(v) and v.dim() == 0 for v in values) else list(values)


def _iou_from_corners(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a, b broadcastable (..., 4) xyxy -> (...); inverted boxes count as empty. IoU = area(a ∩ b) /
    (area(a) + area(b) - area(a ∩ b)); 0 where the union is 0, and neither value nor gradient is NaN."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    w = (torch.min(a[..., 2], b[..., 2]) - torch.max(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.min(a[..., 3], b[..., 3]) - torch.max(a[..., 1], b[..., 1])).clamp(min=0)
    inter = w * h
    union = area_a + area_b - inter
    # union == 0 implies inter == 0: divide by 1 there (a where() after the division would send NaN backward)
    return inter / torch.where(union > 0, union, torch.ones_like(union))


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of each box in a (N, 4) with each box in b (M, 4) -> (N, M). xyxy, continuous coordinates
    (the VOC devkit's "+1 pixel" rule belongs to the VOC protocol in evaluate(), not here)."""
    return _iou_from_corners(a[:, None, :], b[None, :, :])


def box_iou_aligned(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise IoU of a (..., 4) and b (..., 4), broadcasting -> (...). Used by the losses."""
    return _iou_from_corners(a, b)


def shape_iou(wh_a: torch.Tensor, wh_b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes (M, 2) and (K, 2) given by width and height only, both centred at the origin -> (M, K).
    YOLOv2's shape distance: k-means "Dimension Clusters" (yolov2.kmeans_anchors) and darknet's bias_match."""
    inter = torch.minimum(wh_a[:, None, 0], wh_b[None, :, 0]) * torch.minimum(wh_a[:, None, 1], wh_b[None, :, 1])
    union = (wh_a[:, 0] * wh_a[:, 1])[:, None] + (wh_b[:, 0] * wh_b[:, 1])[None, :] - inter
    return inter / union.clamp(min=torch.finfo(wh_a.dtype).tiny)


# -----------------------------------------------------------------------------
# YOLOv1 §2.3: non-maximal suppression, with torchvision.ops.nms semantics
# torchvision csrc/ops/cpu/nms_kernel.cpp: order = scores.sort(stable=True, descending=True); areas = (x2 - x1) *
# (y2 - y1); walking the order, each box not yet suppressed is kept and suppresses every later box j with
# inter / (area_i + area_j - inter) > iou_threshold, in the boxes' dtype, compared in double. Same arithmetic here,
# NMS_CHUNK alive boxes (the "head") at a time: IoU with every alive box at once, the greedy rule inside the head,
# then drop every alive box a kept head box suppresses (amortizes Python's cost; little waste on clustered boxes).
NMS_CHUNK = 16


def _greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")                  # decreasing score, ties in input order
    x1, y1, x2, y2 = (np.ascontiguousarray(c) for c in boxes[order].T)
    area = (x2 - x1) * (y2 - y1)
    keep = []
    alive = np.arange(len(order))                               # positions in `order` not yet suppressed
    with np.errstate(invalid="ignore", divide="ignore"):       # 0/0 -> NaN, and NaN > t is False: kept
        while alive.size:
            head = alive[:NMS_CHUNK, None]                       # (h, 1) against alive (m,)
            w = np.maximum(np.minimum(x2[head], x2[alive]) - np.maximum(x1[head], x1[alive]), 0)
            h = np.maximum(np.minimum(y2[head], y2[alive]) - np.maximum(y1[head], y1[alive]), 0)
            inter = w * h
            over = (inter / (area[head] + area[alive] - inter)).astype(np.float64) > iou_threshold  # (h, m)
            suppressed = np.zeros(alive.size, bool)
            for r in range(len(head)):                           # greedy inside the head, in score order
                if not suppressed[r]:
                    keep.append(alive[r])
                    suppressed |= over[r]
            alive = alive[len(head):][~suppressed[len(head):]]
    return order[np.array(keep, dtype=np.int64)]


def _nms_arrays(boxes: torch.Tensor, scores: torch.Tensor):
    dtype = np.float64 if boxes.dtype == torch.float64 else np.float32
    return (boxes.detach().cpu().numpy().astype(dtype, copy=False).reshape(-1, 4),
            scores.detach().cpu().numpy().astype(dtype, copy=False).reshape(-1))


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """boxes (N, 4) xyxy, scores (N,) -> int64 indices of the kept boxes, in decreasing score
    (ties: input order). A box is suppressed by a kept, higher-ranked box when IoU > iou_threshold
    (strictly), so iou_threshold >= 1 keeps everything. Same indices, same order as torchvision."""
    b, s = _nms_arrays(boxes, scores)
    return torch.from_numpy(_greedy_nms(b, s, iou_threshold)).to(boxes.device)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS inside each class separately -> kept indices in decreasing score, ties in input order.
    torchvision.ops.batched_nms gives the same set; it shifts each class's boxes apart (its "coordinate
    trick": an IoU can change in the last bit) or, for large inputs, sorts unstably. Here: exact, stable."""
    b, s = _nms_arrays(boxes, scores)
    lab = labels.detach().cpu().numpy().reshape(-1)
    kept = [np.flatnonzero(lab == c)[_greedy_nms(b[lab == c], s[lab == c], iou_threshold)] for c in np.unique(lab)]
    kept = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    kept = kept[np.lexsort((kept, -s[kept]))]                   # = sorted(kept, key=lambda i: (-s[i], i))
    return torch.from_numpy(kept.astype(np.int64)).to(boxes.device)

# -----------------------------------------------------------------------------
# Average precision from one precision/recall curve

# pycocotools cocoeval.py Params.setDetParams (linspace, because "np.arange causes trouble")
COCO_IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
COCO_RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
COCO_AREA_RANGES = {"all": (0 ** 2, 1e5 ** 2), "small": (0 ** 2, 32 ** 2),
                    "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, 1e5 ** 2)}
COCO_MAX_DETECTIONS = 100                                       # maxDets[-1], per image and class
VOC_IOU_THRESHOLD = 0.5


def _coco_interpolate(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """COCOeval.accumulate, rows = IoU thresholds: recall, precision (T, n) -> (T, 101).
    Precision envelope from the right ("pr[i-1] = pr[i] if pr[i] > pr[i-1]"), read at the first point
    whose recall is >= each threshold (np.searchsorted side='left'); 0 past the last point."""
    T, n = recall.shape
    q = np.zeros((T, len(COCO_RECALL_THRESHOLDS)))
    if n == 0:
        return q
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]   # = [max(pr[i:]) for i in range(n)]
    for t in range(T):
        i = np.searchsorted(recall[t], COCO_RECALL_THRESHOLDS, side="left")
        q[t] = np.where(i < n, envelope[t, np.minimum(i, n - 1)], 0.0)
    return q


def average_precision(recall, precision, method: str = "voc07") -> float:
    """AP of one curve (points in decreasing score order).
    'voc07': 11-point interpolation, the VOC2007 devkit's metric (voc_ap(use_07_metric=True));
    'voc12': area under the precision envelope, VOC2010+ (voc_ap(use_07_metric=False));
    'coco':  mean precision envelope at recall 0, .01, ..., 1 (COCOeval.accumulate)."""
    rec, prec = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (recall, precision))
    if method == "voc07":
        # voc_eval.py voc_ap: the thresholds are np.arange(0., 1.1, 0.1) exactly (0.30000000000000004...),
        # p = max precision at recall >= t (0 if none), summed as ap = ap + p / 11.
        ap = 0.0
        for t in np.arange(0., 1.1, 0.1):
            ap = ap + (prec[rec >= t].max() if np.any(rec >= t) else 0.0) / 11.
        return float(ap)
    if method == "voc12":
        # voc_eval.py voc_ap: sentinels (0, 0) and (1, 0), envelope from the right (its loop
        # "mpre[i - 1] = max(mpre[i - 1], mpre[i])"), then sum of (Δ recall) * precision where recall changes.
        mrec = np.concatenate(([0.], rec, [1.]))
        mpre = np.maximum.accumulate(np.concatenate(([0.], prec, [0.]))[::-1])[::-1]
        i = np.where(mrec[1:] != mrec[:-1])[0]
        return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))
    if method == "coco":
        return float(np.mean(_coco_interpolate(rec[None], prec[None])))
    raise ValueError(f"unknown AP method {method!r}: use 'voc07', 'voc12' or 'coco'")

# -----------------------------------------------------------------------------
# Gathering per-image inputs into flat arrays

def _flat(dicts, key, dtype, fill=None, cols=None) -> np.ndarray:
    """Concatenate d[key] (numpy array or torch tensor) over the images; `fill` where the key is absent."""
    parts = []
    for d in dicts:
        x = d[key] if key in d else np.full(len(d["labels"]), fill)
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        parts.append(np.asarray(x, dtype=dtype).reshape((-1, cols) if cols else -1))
    return np.concatenate(parts) if parts else np.zeros((0, cols) if cols else 0, dtype)


def _gather(dets, gts):
    """Lists of per-image dicts -> one dict of flat arrays each for detections and ground truths, with
    "image" = the index of the image in the list (the image order breaks ties, as in pycocotools)."""
    if len(dets) != len(gts):
        raise ValueError(f"{len(dets)} detection entries for {len(gts)} images")
    det = {"boxes": _flat(dets, "boxes", np.float64, cols=4), "scores": _flat(dets, "scores", np.float64),
           "labels": _flat(dets, "labels", np.int64)}
    gt = {"boxes": _flat(gts, "boxes", np.float64, cols=4), "labels": _flat(gts, "labels", np.int64),
          "difficult": _flat(gts, "difficult", bool, False), "iscrowd": _flat(gts, "iscrowd", bool, False),
          "area": _flat(gts, "area", np.float64, np.nan)}                  # nan: use the box area
    for flat, dicts in ((det, dets), (gt, gts)):
        flat["image"] = np.repeat(np.arange(len(dicts)), [len(d["labels"]) for d in dicts])
    return det, gt


def _pairs(det_key: np.ndarray, gt_key: np.ndarray):
    """Every (detection, ground truth) with the same key (image, class) -> two index arrays: the pairs of
    = [(d, g) for d in range(len(det_key)) for g in range(len(gt_key)) if det_key[d] == gt_key[g]]."""
    gt_order = np.argsort(gt_key, kind="stable")
    start = np.searchsorted(gt_key[gt_order], det_key, side="left")
    count = np.searchsorted(gt_key[gt_order], det_key, side="right") - start
    pair_det = np.repeat(np.arange(len(det_key)), count)
    within = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    return pair_det, gt_order[np.repeat(start, count) + within]


def _group_starts(ids: np.ndarray) -> np.ndarray:
    """Start of each run of equal values in grouped ids, for ufunc.reduceat.
    = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]"""
    return np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)

# -----------------------------------------------------------------------------
# Pascal VOC protocols (py-faster-rcnn lib/datasets/voc_eval.py, rule by rule)

def _evaluate_voc(det, gt, K, method):
    difficult = gt["difficult"] | gt["iscrowd"]                 # no crowd in VOC: our convention, difficult
    pair_det, pair_gt = _pairs(det["image"] * K + det["labels"], gt["image"] * K + gt["labels"])
    # voc_eval.py overlaps, with the devkit's inclusive pixels (+1 on widths and heights), float64,
    # in the same order of operations so that the IoUs are bit for bit the same.
    bb, g = det["boxes"][pair_det], gt["boxes"][pair_gt]
    iw = np.maximum(np.minimum(g[:, 2], bb[:, 2]) - np.maximum(g[:, 0], bb[:, 0]) + 1., 0.)
    ih = np.maximum(np.minimum(g[:, 3], bb[:, 3]) - np.maximum(g[:, 1], bb[:, 1]) + 1., 0.)
    inters = iw * ih
    uni = ((bb[:, 2] - bb[:, 0] + 1.) * (bb[:, 3] - bb[:, 1] + 1.) +
           (g[:, 2] - g[:, 0] + 1.) * (g[:, 3] - g[:, 1] + 1.) - inters)
    iou = inters / uni
    # voc_eval.py: each detection goes to the ground truth of its class in its image with the highest IoU
    # (np.argmax: first on ties), matched or not. = for each d: ovmax[d], jmax[d] = max, argmax over pairs of d
    ovmax, jmax = np.full(len(det["scores"]), -np.inf), np.full(len(det["scores"]), -1)
    if len(iou):
        starts = _group_starts(pair_det)
        best = np.maximum.reduceat(iou, starts)
        at_best = np.flatnonzero(iou == np.repeat(best, np.diff(np.r_[starts, len(iou)])))
        _, first = np.unique(pair_det[at_best], return_index=True)
        chosen = at_best[first]
        ovmax[pair_det[chosen]], jmax[pair_det[chosen]] = iou[chosen], pair_gt[chosen]
    # voc_eval.py: `if ovmax > ovthresh`, strictly. The MATLAB devkit (VOCevaldet.m) tests ov >= 0.5;
    # the two differ only for an IoU of exactly 0.5. We follow voc_eval.py, what darknet's reval_voc.py runs.
    hit = ovmax > VOC_IOU_THRESHOLD
    hit_difficult = np.zeros_like(hit)                           # neither TP nor FP
    hit_difficult[hit] = difficult[jmax[hit]]
    # Detections ranked by score over the whole class. voc_eval.py's np.argsort(-confidence) is a quicksort:
    # ties in no promised order; we keep ties in input order (a stable sort), as pycocotools (mergesort).
    order = np.lexsort((-det["scores"], det["labels"]))         # class, then decreasing score
    # The first detection (in that order) of a non-difficult object is a TP, any later one a FP ("R['det'][jmax]"
    # already set), as is one with no IoU > 0.5. = for i in order: tp[i] = hit, not difficult, jmax[i] unclaimed
    tp = np.zeros(len(order))
    claims = np.flatnonzero((hit & ~hit_difficult)[order])
    _, first = np.unique(jmax[order][claims], return_index=True)
    tp[claims[first]] = 1.
    fp = 1. - tp - hit_difficult[order]
    class_bounds = np.searchsorted(det["labels"][order], np.arange(K + 1))  # = [first i of class c in order]
    npos = np.bincount(gt["labels"][~difficult], minlength=K)
    ap, curves = {}, {}
    for c in range(K):
        lo, hi = class_bounds[c], class_bounds[c + 1]
        if npos[c] == 0:                                         # voc_eval.py would divide by 0
            ap[c], curves[c] = float("nan"), (np.zeros(0), np.zeros(0))
            continue
        tp_c, fp_c = np.cumsum(tp[lo:hi]), np.cumsum(fp[lo:hi])  # = TPs, FPs among the first i + 1, as voc_eval.py
        rec = tp_c / float(npos[c])
        # voc_eval.py (current): "avoid divide by zero in case the first detection matches a difficult ground truth"
        prec = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
        ap[c], curves[c] = average_precision(rec, prec, method), (rec, prec)
    valid = [v for v in ap.values() if not np.isnan(v)]
    return {"protocol": method, "map": float(np.mean(valid)) if valid else float("nan"), "ap": ap,
            "curves": curves, "num_gt": {c: int(npos[c]) for c in range(K)}}

# -----------------------------------------------------------------------------
# ImageNet DET protocol, YOLO9000 §4: the ILSVRC2015 devkit (readme §2.3; evaluation/eval_vid_detection.m, whose
# header says it follows the DET routine eval_detection.m), rule by rule

ILSVRC_PIXEL_TOLERANCE = 10     # devkit pixelTolerance: small objects get a lower IoU threshold


def _evaluate_ilsvrc(det, gt, K, blacklist):
    """As VOC's but (devkit readme §2.3, the evaluation's loops):
    - the IoU threshold of a ground truth of m x n pixels is min(.5, m·n / ((m + 10)·(n + 10))), and a hit needs
      IoU >= it (VOC: > .5); widths and heights are inclusive (+1), as VOC's;
    - within an image, detections in decreasing score take, each, the unmatched ground truth of their class with
      the highest IoU above its threshold (VOC gives a detection its best ground truth, matched or not);
    - no difficult flag; a class blacklisted for an image (devkit data/ILSVRC2015_det_validation_blacklist.txt):
      its detections in that image are ignored, its objects there are not counted;
    - AP: VOCap, the area under the precision envelope (our "voc12")."""
    key_det, key_gt = det["image"] * K + det["labels"], gt["image"] * K + gt["labels"]
    blacklisted = np.array([i * K + c for i, labels in enumerate(blacklist) for c in labels], np.int64)
    ignored, not_counted = np.isin(key_det, blacklisted), np.isin(key_gt, blacklisted)
    pair_det, pair_gt = _pairs(key_det, key_gt)
    bb, g = det["boxes"][pair_det], gt["boxes"][pair_gt]
    iw = np.minimum(bb[:, 2], g[:, 2]) - np.maximum(bb[:, 0], g[:, 0]) + 1.
    ih = np.minimum(bb[:, 3], g[:, 3]) - np.maximum(bb[:, 1], g[:, 1]) + 1.
    union = ((bb[:, 2] - bb[:, 0] + 1.) * (bb[:, 3] - bb[:, 1] + 1.) +
             (g[:, 2] - g[:, 0] + 1.) * (g[:, 3] - g[:, 1] + 1.))
    iou = np.where((iw > 0) & (ih > 0), iw * ih / (union - iw * ih), -np.inf)
    gw, gh = gt["boxes"][:, 2] - gt["boxes"][:, 0] + 1., gt["boxes"][:, 3] - gt["boxes"][:, 1] + 1.
    threshold = np.minimum(VOC_IOU_THRESHOLD, gw * gh / ((gw + ILSVRC_PIXEL_TOLERANCE) * (gh + ILSVRC_PIXEL_TOLERANCE)))
    can_hit = iou >= threshold[pair_gt]                       # (pairs,) before any matching
    # Greedy matching, needed only for the pairs above the threshold (a detection without one is a FP). In each
    # (image, class), detections in decreasing score (ties in list order, as the devkit sorts each image's) each take
    # the unmatched ground truth of highest IoU (`ov >= thr(k) && ov > ovmax` over k in order: first on ties).
    # Done in rounds: in each round, every (image, class) group's first detection that still has an unmatched
    # candidate takes one; the detections of the group before it had none left, and never will again.
    order = np.lexsort((np.arange(len(key_det)), -det["scores"], det["image"]))
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    tp, matched = np.zeros(len(key_det)), np.zeros(len(key_gt), bool)
    live = np.flatnonzero(can_hit & ~ignored[pair_det])
    p_det, p_gt, p_iou = pair_det[live], pair_gt[live], iou[live]
    _, p_group = np.unique(key_det[p_det], return_inverse=True)
    last = np.full(p_group.max(initial=-1) + 1, -1)           # rank of each group's latest matching detection
    while True:
        available = np.flatnonzero(~matched[p_gt] & (rank[p_det] > last[p_group]))
        if not len(available):
            break
        # per group: the earliest detection, its highest IoU, the first ground truth
        ranked = available[np.lexsort((p_gt[available], -p_iou[available], rank[p_det[available]], p_group[available]))]
        _, first = np.unique(p_group[ranked], return_index=True)
        taken = ranked[first]
        matched[p_gt[taken]], tp[p_det[taken]], last[p_group[taken]] = True, 1., rank[p_det[taken]]
    # Precision and recall per class over all images: decreasing score, ties in image then list order
    keep = ~ignored
    order = np.lexsort((np.arange(len(key_det))[keep], det["image"][keep], -det["scores"][keep], det["labels"][keep]))
    labels, tp_sorted = det["labels"][keep][order], tp[keep][order]
    bounds = np.searchsorted(labels, np.arange(K + 1))
    npos = np.bincount(gt["labels"][~not_counted], minlength=K)
    ap, curves = {}, {}
    for c in range(K):
        if npos[c] == 0:
            ap[c], curves[c] = float("nan"), (np.zeros(0), np.zeros(0))
            continue
        tp_c = np.cumsum(tp_sorted[bounds[c]:bounds[c + 1]])
        fp_c = np.cumsum(1. - tp_sorted[bounds[c]:bounds[c + 1]])
        rec, prec = tp_c / float(npos[c]), tp_c / (tp_c + fp_c)
        ap[c], curves[c] = average_precision(rec, prec, "voc12"), (rec, prec)
    valid = [v for v in ap.values() if not np.isnan(v)]
    return {"protocol": "ilsvrc", "map": float(np.mean(valid)) if valid else float("nan"), "ap": ap,
            "curves": curves, "num_gt": {c: int(npos[c]) for c in range(K)}}

# -----------------------------------------------------------------------------
# COCO protocol (pycocotools 2.0 PythonAPI/pycocotools/cocoeval.py, rule by rule)

def _coco_match(rank, pair_det, pair_gt, pair_iou, gt_ignore, gt_crowd, num_dets):
    """COCOeval.evaluateImg's greedy matching for all area ranges A and IoU thresholds T at once.
    Returns the matched ground truth of each detection, (A, T, D), -1 if none. In an image and class a
    detection's match depends on those of the higher-scored ones, so we loop over its rank r = 0..99 there
    (maxDets steps), each step vectorized over every image, class, area range and threshold."""
    A, T, G = gt_ignore.shape[0], len(COCO_IOU_THRESHOLDS), gt_ignore.shape[1]
    match = np.full((A, T, num_dets), -1)
    taken = np.zeros((A, T, G), bool)                            # gtm > 0
    thresholds = np.minimum(COCO_IOU_THRESHOLDS, 1 - 1e-10)[None, :, None]  # iou = min([t, 1-1e-10])
    pair_rank = rank[pair_det]
    by_rank = np.argsort(pair_rank, kind="stable")               # keeps pairs grouped by detection
    bounds = np.searchsorted(pair_rank[by_rank], np.arange(COCO_MAX_DETECTIONS + 1))
    for r in range(COCO_MAX_DETECTIONS):
        p = by_rank[bounds[r]:bounds[r + 1]]                     # = [q for q in pairs if pair_rank[q] == r]
        if len(p) == 0:
            continue
        det, g, iou = pair_det[p], pair_gt[p], pair_iou[p]
        starts = _group_starts(det)
        counts = np.diff(np.r_[starts, len(p)])
        # "if this gt already matched, and not a crowd, continue"; "if ious[d,g] < iou: continue"
        ok = (~taken[:, :, g] | gt_crowd[g]) & (iou >= thresholds)             # (A, T, n)
        regular = ok & ~gt_ignore[:, None, g]
        # ground truths are sorted "ignore last", and "if dt matched to reg gt, and on ignore gt, stop": a
        # detection takes a regular object when one qualifies, an ignored one (crowd, out of range) only otherwise.
        has_regular = np.logical_or.reduceat(regular, starts, axis=2)   # = for each d: any(regular[..., pairs of d])
        candidate = np.where(np.repeat(has_regular, counts, axis=2), regular, ok)
        # best IoU wins; on equal IoU the later ground truth (m is updated when ious[d,g] == iou)
        score = np.where(candidate, iou, -1.0)
        best = np.maximum.reduceat(score, starts, axis=2)         # = for each d: max(score[..., pairs of d])
        is_best = candidate & (score == np.repeat(best, counts, axis=2))
        last = np.maximum.reduceat(np.where(is_best, np.arange(len(p)), -1), starts, axis=2)  # last such pair
        a, t, j = np.nonzero(last >= 0)
        matched_gt = g[last[a, t, j]]
        match[a, t, det[starts[j]]] = matched_gt
        taken[a, t, matched_gt] = True
    return match


def _evaluate_coco(det, gt, K):
    A, T = len(COCO_AREA_RANGES), len(COCO_IOU_THRESHOLDS)
    # evaluateImg / computeIoU: per image and class, detections by score (mergesort: stable), first maxDets kept
    order = np.lexsort((-det["scores"], det["labels"], det["image"]))   # = sorted by (image, class, -score)
    key = (det["image"] * K + det["labels"])[order]
    rank_sorted = np.arange(len(order)) - np.searchsorted(key, key, side="left")  # = rank in its (image, class)
    sel = order[rank_sorted < COCO_MAX_DETECTIONS]
    image, label, score = det["image"][sel], det["labels"][sel], det["scores"][sel]
    rank = rank_sorted[rank_sorted < COCO_MAX_DETECTIONS]
    # COCO boxes are [x, y, w, h] in float64; the IoU (maskApi.c bbIou) and the areas are computed
    # from them, so we convert first (d: (D, 4), g: (G, 4)) and repeat that arithmetic, bit for bit.
    d, g = (np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1) for b in (det["boxes"][sel], gt["boxes"]))
    d_area = d[:, 2] * d[:, 3]                                   # loadRes: ann['area'] = bb[2]*bb[3]
    crowd = gt["iscrowd"] | gt["difficult"]     # _prepare: gt['ignore'] = iscrowd; our convention: difficult too
    # the "area" field (COCO json: annotation area, not box area; box area without one) decides the size class
    g_area = np.where(np.isnan(gt["area"]), g[:, 2] * g[:, 3], gt["area"])
    ranges = np.array(list(COCO_AREA_RANGES.values()))          # (A, 2)
    # evaluateImg: "if g['ignore'] or (g['area']<aRng[0] or g['area']>aRng[1])" -> ignored
    gt_ignore = crowd[None] | (g_area[None] < ranges[:, :1]) | (g_area[None] > ranges[:, 1:])   # (A, G)
    pair_det, pair_gt = _pairs(image * K + label, gt["image"] * K + gt["labels"])
    # maskApi.c bbIou: w = fmin(D[2]+D[0], G[2]+G[0]) - fmax(D[0], G[0]), IoU 0 unless w > 0 and h > 0;
    # u = da + ga - i, but for a crowd region u = da: a detection inside a crowd has IoU 1.
    D, G = d[pair_det], g[pair_gt]                               # (P, 4) each
    w = np.minimum(D[:, 2] + D[:, 0], G[:, 2] + G[:, 0]) - np.maximum(D[:, 0], G[:, 0])
    h = np.minimum(D[:, 3] + D[:, 1], G[:, 3] + G[:, 1]) - np.maximum(D[:, 1], G[:, 1])
    overlap = (w > 0) & (h > 0)
    i = w * h
    u = np.where(crowd[pair_gt], D[:, 2] * D[:, 3], D[:, 2] * D[:, 3] + G[:, 2] * G[:, 3] - i)
    iou = np.where(overlap, i / np.where(overlap, u, 1.0), 0.0)
    useful = iou >= COCO_IOU_THRESHOLDS[0]                       # a pair below .5 can never match
    match = _coco_match(rank, pair_det[useful], pair_gt[useful], iou[useful], gt_ignore, crowd, len(sel))
    matched = match >= 0
    # evaluateImg: a matched detection inherits its ground truth's ignore flag; an unmatched one is ignored
    # when its own area is outside the range ("set unmatched detections outside of area range to ignore").
    det_out = (d_area[None] < ranges[:, :1]) | (d_area[None] > ranges[:, 1:])    # (A, D)
    padded = np.c_[gt_ignore, np.zeros(A, bool)]                # match -1 reads the pad column, then unused
    dt_ignore = np.where(matched, padded[np.arange(A)[:, None, None], match], det_out[:, None, :])   # (A, T, D)
    # accumulate: per class and area range, the kept detections of all images concatenated in image order,
    # then sorted by score with mergesort; ours are in (image, rank) order, so a stable sort by (class, -score)
    # gives the same order, ties included.
    by_class = np.lexsort((-score, label))
    class_bounds = np.searchsorted(label[by_class], np.arange(K + 1))
    matched, dt_ignore = matched[:, :, by_class], dt_ignore[:, :, by_class]   # classes now contiguous
    npig = np.stack([np.bincount(gt["labels"][~gt_ignore[a]], minlength=K) for a in range(A)])  # (A, K)
    precision = -np.ones((T, len(COCO_RECALL_THRESHOLDS), K, A))  # -1: no ground truth (as accumulate)
    curves = {k: (np.zeros(0), np.zeros(0)) for k in range(K)}
    for k in range(K):
        a = np.flatnonzero(npig[:, k])                           # "if npig == 0: continue"
        if len(a) == 0:
            continue
        lo, hi = class_bounds[k], class_bounds[k + 1]
        m, ig = matched[a, :, lo:hi], dt_ignore[a, :, lo:hi]     # (len(a), T, n)
        # tps = dtm & ~dtIg, fps = ~dtm & ~dtIg; tp[..., i] = sum(tps[..., :i + 1]) (exact in float64)
        tp, fp = (np.cumsum(x, axis=2, dtype=np.float64) for x in (m & ~ig, ~m & ~ig))
        rc = tp / npig[a, k][:, None, None]
        pr = tp / (fp + tp + np.spacing(1))
        q = _coco_interpolate(rc.reshape(len(a) * T, hi - lo), pr.reshape(len(a) * T, hi - lo))
        precision[:, :, k, a] = q.reshape(len(a), T, -1).transpose(1, 2, 0)
        if npig[0, k]:
            curves[k] = (rc[0, 0], pr[0, 0])                     # IoU .50, all areas
    # summarize: mean over all entries > -1 of the selected slice (maxDets = 100 throughout)
    mean_valid = lambda s: float(np.mean(s[s > -1])) if np.any(s > -1) else float("nan")
    ap = {k: mean_valid(precision[:, :, k, 0]) for k in range(K)}
    return {"protocol": "coco", "map": mean_valid(precision[..., 0]), "ap": ap,
            "ap50": {k: mean_valid(precision[0, :, k, 0]) for k in range(K)},
            "map50": mean_valid(precision[0, :, :, 0]), "map75": mean_valid(precision[5, :, :, 0]),
            "map_small": mean_valid(precision[..., 1]), "map_medium": mean_valid(precision[..., 2]),
            "map_large": mean_valid(precision[..., 3]), "curves": curves,
            "num_gt": {k: int(npig[0, k]) for k in range(K)}}


def evaluate(detections, ground_truths, protocol: str = "voc07", num_classes: int | None = None) -> dict:
    """Mean average precision of a detector on a set of images, as the official tools compute it.

    detections[i]    = {"boxes": (N, 4) xyxy pixels, "scores": (N,), "labels": (N,)} for image i
    ground_truths[i] = {"boxes": (M, 4), "labels": (M,), optional "difficult", "iscrowd" (M,) bool,
                        optional "area" (M,) (COCO's annotation area; box area when absent)}
    numpy arrays or torch tensors. Give ALL detections (see the module docstring), after NMS.
    protocol: "voc07" (11-point, VOC2007 devkit), "voc12" (area, VOC2010+), "coco" (pycocotools), "ilsvrc" (the
    ImageNet DET devkit; ground_truths[i] may hold "blacklisted": the labels not scored in image i).
    Returns {"protocol", "map", "ap": {class: AP or nan}, "curves": {class: (recall, precision)},
    "num_gt": {class: count}} and for "coco" also "ap50" (per class), "map50", "map75", "map_small",
    "map_medium", "map_large". A class with no (non-difficult, non-crowd) ground truth gets AP nan
    and is left out of the mean. COCO "map" is AP@[.50:.05:.95]; its curves are at IoU .50.
    Ties in score keep input order: within an image the list order, across images the image order."""
    det, gt = _gather(detections, ground_truths)
    if num_classes is None:
        num_classes = int(max(det["labels"].max(initial=-1), gt["labels"].max(initial=-1))) + 1
    for name, labels in (("detection", det["labels"]), ("ground truth", gt["labels"])):
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    if protocol in ("voc07", "voc12"):
        return _evaluate_voc(det, gt, num_classes, protocol)
    if protocol == "coco":
        return _evaluate_coco(det, gt, num_classes)
    if protocol == "ilsvrc":
        return _evaluate_ilsvrc(det, gt, num_classes, [set(np.asarray(t.get("blacklisted", [])).tolist())
                                                       for t in ground_truths])
    raise ValueError(f"unknown protocol {protocol!r}: use 'voc07', 'voc12', 'coco' or 'ilsvrc'")

# -----------------------------------------------------------------------------
# Reporting

def format_ap_table(results_by_protocol: dict, class_names) -> str:
    """{"voc07": evaluate(...), "coco": ...} -> text table, one row per class and a mean row.
    A class without ground truth shows "-" and is not in the mean."""
    protocols = list(results_by_protocol)
    width = max([len("class")] + [len(str(n)) for n in class_names])
    fmt = lambda v: f"{v:8.4f}" if not np.isnan(v) else f"{'-':>8}"
    lines = [f"{'class':<{width}} " + " ".join(f"{p:>8}" for p in protocols)]
    for c, name in enumerate(class_names):
        lines.append(f"{name:<{width}} " + " ".join(
            fmt(results_by_protocol[p]["ap"].get(c, float("nan"))) for p in protocols))
    lines.append(f"{'mAP':<{width}} " + " ".join(fmt(results_by_protocol[p]["map"]) for p in protocols))
    # COCO's sizes by area: an evaluation with no ground truth of a size has no AP for it (pycocotools prints
    # -1); we say why instead of printing nan
    no_object = {"map_small": "area under 32²", "map_medium": "area 32²..96²", "map_large": "area over 96²"}
    value = lambda k, v: f"{k} {v:.4f}" if not np.isnan(v) else f"{k} - (no object of {no_object[k]} pixels)"
    for p, r in results_by_protocol.items():
        extra = [value(k, r[k]) if k in no_object else f"{k} {r[k]:.4f}"
                 for k in ("map50", "map75", "map_small", "map_medium", "map_large") if k in r]
        if extra:
            lines.append(f"{p}: " + ", ".join(extra))
    return "\n".join(lines)


# -----------------------------------------------------------------------------
# YOLOv1 §4.2 "VOC 2007 Error Analysis" (Figure 4): what the top detections of each class are
# Paper: "We use the methodology and tools of Hoiem et al." — for each category the top N predictions, each
#   Correct: correct class and IOU > .5;   Localization: correct class, .1 < IOU < .5;
#   Similar: class is similar, IOU > .1;   Other: class is wrong, IOU > .1;   Background: IOU < .1 for any object.
# The tools are D. Hoiem's detectionAnalysis MATLAB code ("Diagnosing Error in Object Detectors", ECCV 2012), release
# of 2014-07-31 as mirrored in github.com/weiliu89/detectionAnalysis, commit 55cdf62d: src/analyzeFalsePositives.m
# (confuse_count, topN = the class's non-difficult objects), src/matchDetectionsWithGroundTruth.m (the matching),
# src/setDatasetParameters.m (similar_classes, iuthresh_strong .5, iuthresh_weak .1). We follow the code where the
# paper's one-line summary leaves things open:
#   - both thresholds are inclusive (IoU >= .5 correct, >= .1 the rest): the paper's strict ">" and "<" would leave
#     an IoU of exactly .5 or .1 in no category;
#   - matching is greedy in score order and takes each object once, as the VOC protocol: a second detection of an
#     object already found is a duplicate, counted as Localization even at IoU > .5 (the weak matching gives a
#     duplicate label 0, and analyzeFalsePositives.m's isloc is "weak label >= 0, not correct"); a detection that
#     matches a "difficult" object counts as Correct (strong label 0 >= 0);
#   - a wrong-class detection is Similar or Other by the class of the object it overlaps most (>= .1), among the
#     classes where it overlaps one; Background only when it overlaps no object of any class by .1;
#   - IoU with the VOC devkit's inclusive pixels (+1 on widths and heights), as Hoiem's code and evaluate("voc07");
#   - "averaged across all 20 classes" (Figure 4) is the pooled count: displayFalsePositiveImpactPlot.m sums each
#     category over the classes and divides by the summed N.
# Hoiem's readDetections.m clips each box to the image (1-based pixels); our detectors already clip to [0, w] x [0, h].
ERROR_TYPES = ("correct", "localization", "similar", "other", "background")
ERROR_IOU_CORRECT = 0.5        # iuthresh_strong
ERROR_IOU_OVERLAP = 0.1        # iuthresh_weak
# setDatasetParameters.m, similar_classes: "any pair of classes in an equivalence set is considered similar"
VOC_SIMILAR_CLASSES = (
    ("bird", "cat", "cow", "dog", "horse", "person", "sheep"),             # animals [3 8 10 12 13 15 17], person too
    ("aeroplane", "boat", "bus", "car", "train", "bicycle", "motorbike"),  # vehicles1 [1 4 6 7 19 2 14]
    ("bicycle", "motorbike"),                                              # vehicles2 [2 14]
    ("chair", "diningtable", "sofa"),                                      # furniture [9 11 18]
    ("aeroplane", "bird"),                                                 # airobjects [1 3]
)
# YOLOv1 Figure 4 (VOC 2007 test), % of the top detections, in ERROR_TYPES order
FIGURE_4 = {"YOLO": (65.5, 19.0, 6.75, 4.0, 4.75), "Fast R-CNN": (71.6, 8.6, 4.3, 1.9, 13.6)}


def similar_groups(groups, class_names) -> list[list[int]]:
    """Groups of class names (e.g. VOC_SIMILAR_CLASSES) -> the same groups as class indices; an unknown name is an
    error that names it."""
    index = {name: k for k, name in enumerate(class_names)}
    unknown = [name for group in groups for name in group if name not in index]
    if unknown:
        raise ValueError(f"similar classes: {', '.join(unknown)} not among the classes ({', '.join(class_names)})")
    return [[index[name] for name in group] for group in groups]


def _voc_ious(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box (4,) with boxes (G, 4) in inclusive pixels (+1), 0 where they do not overlap -> (G,)."""
    iw = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]) + 1.
    ih = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]) + 1.
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.)
    union = (box[2] - box[0] + 1.) * (box[3] - box[1] + 1.) + (boxes[:, 2] - boxes[:, 0] + 1.) * (
        boxes[:, 3] - boxes[:, 1] + 1.) - inter
    return np.where(overlap, inter / np.where(overlap, union, 1.), 0.)


def _match_in_score_order(boxes, images, gt_boxes, gt_images, gt_difficult, threshold, weak):
    """matchDetectionsWithGroundTruth_VOC for detections (n, 4) already in decreasing score order, against the
    objects (G, 4) of one class. Each detection in turn takes the not yet taken object of its image with the
    highest IoU, if one has IoU >= threshold. -> label (n,): 1 took an object, 0 took a difficult one or (weak
    only) overlaps a taken object by >= threshold (a duplicate), -1 otherwise; iou (n,): with the object taken,
    else the best IoU with any object of its image."""
    label, iou = np.full(len(boxes), -1), np.zeros(len(boxes))
    taken = np.zeros(len(gt_boxes), bool)
    by_image = np.argsort(gt_images, kind="stable")
    bounds = np.searchsorted(gt_images[by_image], np.stack([images, images + 1]))      # (2, n): each image's slice
    for d in range(len(boxes)):
        g = by_image[bounds[0, d]:bounds[1, d]]                   # = the objects in the image of detection d
        if len(g) == 0:
            continue
        ious = _voc_ious(boxes[d], gt_boxes[g])
        free = ~taken[g]
        if np.any((ious >= threshold) & free):
            i = np.argmax(ious * free)                            # first on ties, as MATLAB's max
            iou[d], label[d], taken[g[i]] = ious[i], 0 if gt_difficult[g[i]] else 1, True
        else:
            iou[d] = ious.max()
            if weak and iou[d] >= threshold:
                label[d] = 0
    return label, iou


def error_analysis(detections, ground_truths, num_classes: int, similar=()) -> dict:
    """YOLOv1 §4.2, Figure 4: each class's N most confident detections (N = its objects, "difficult" and crowd ones
    not counted; all of them when it has fewer), each put in one of ERROR_TYPES as Hoiem et al.'s code does (see
    above). Inputs as evaluate()'s: ALL detections after NMS. similar: groups of class indices any two of which are
    "similar" (similar_groups(VOC_SIMILAR_CLASSES, names) for VOC; none: no detection is Similar).
    -> {"counts": (K, 5) int, "shares": (K, 5) fractions (nan for a class with no detection taken),
        "overall": (5,) the pooled shares, "num_objects": (K,) N per class}."""
    det, gt = _gather(detections, ground_truths)
    difficult = gt["difficult"] | gt["iscrowd"]
    K = num_classes
    for name, labels in (("detection", det["labels"]), ("ground truth", gt["labels"])):
        if len(labels) and (labels.min() < 0 or labels.max() >= K):
            raise ValueError(f"{name} labels must be in [0, {K}), got {labels.min()}..{labels.max()}")
    counts = np.zeros((K, len(ERROR_TYPES)), np.int64)
    num_objects = np.bincount(gt["labels"][~difficult], minlength=K)
    objects = [(gt["boxes"][m], gt["image"][m], difficult[m]) for m in (gt["labels"] == k for k in range(K))]
    for c in range(K):
        mine = np.flatnonzero(det["labels"] == c)
        top = mine[np.argsort(-det["scores"][mine], kind="stable")][:num_objects[c]]      # stable: MATLAB's sort
        boxes, images = det["boxes"][top], det["image"][top]
        strong, _ = _match_in_score_order(boxes, images, *objects[c], ERROR_IOU_CORRECT, weak=False)
        weak, _ = _match_in_score_order(boxes, images, *objects[c], ERROR_IOU_OVERLAP, weak=True)
        correct = strong >= 0
        localization = (weak >= 0) & ~correct
        # per other class k: the IoU with the class-k object the detection matched (weakly), if neither of the above
        overlap = np.zeros((len(top), K))                                                  # (n, K)
        for k in range(K):
            if k != c:
                label_k, iou_k = _match_in_score_order(boxes, images, *objects[k], ERROR_IOU_OVERLAP, weak=True)
                hit = (label_k >= 0) & ~correct & ~localization
                overlap[hit, k] = iou_k[hit]
        nearest = overlap.argmax(axis=1)                          # the class it overlaps most (first on ties)
        on_object = overlap.max(axis=1, initial=0) > 0
        is_similar = on_object & np.isin(nearest, [k for g in similar if c in g for k in g if k != c])
        counts[c] = [correct.sum(), localization.sum(), is_similar.sum(), (on_object & ~is_similar).sum(),
                     (~correct & ~localization & ~on_object).sum()]
    taken = counts.sum(axis=1, keepdims=True)                      # (K, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = counts / taken
    overall = counts.sum(axis=0) / max(taken.sum(), 1)
    return {"counts": counts, "shares": shares, "overall": overall, "num_objects": num_objects}


def format_error_table(result: dict, class_names, paper=FIGURE_4) -> str:
    """error_analysis()'s result -> text table: per class N (its objects) and the five shares in %, the pooled
    row, then the paper's Figure 4 rows. A class without objects shows "-"."""
    width = max([len("Fast R-CNN (paper)")] + [len(str(n)) for n in class_names])
    heads = ("correct", "loc", "similar", "other", "backgr.")
    lines = [f"{'class':<{width}} {'N':>6} " + " ".join(f"{h:>8}" for h in heads)]
    row = lambda name, n, shares: f"{name:<{width}} {n:>6} " + " ".join(          # noqa: E731
        f"{100 * v:8.2f}" if not np.isnan(v) else f"{'-':>8}" for v in shares)
    for c, name in enumerate(class_names):
        lines.append(row(name, int(result["num_objects"][c]), result["shares"][c]))
    lines.append(row("all (pooled)", int(result["num_objects"].sum()), result["overall"]))
    for name, percents in paper.items():
        lines.append(row(f"{name} (paper)", "", np.array(percents) / 100))
    return "\n".join(lines)
