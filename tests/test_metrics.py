"""Tests of metrics.py: hand-computed cases (the arithmetic in the expected value, derived in a comment),
then cross-checks on random inputs against a loop port of py-faster-rcnn's voc_eval.py written here,
against pycocotools (a test dependency), and NMS against a loop port of torchvision's CPU kernel."""
import contextlib
import io

import numpy as np
import pytest
import torch

from metrics import (VOC_SIMILAR_CLASSES, average_precision, batched_nms, box_iou, box_iou_aligned, error_analysis,
                     evaluate, format_ap_table, format_error_table, nms, similar_groups, xywh_to_xyxy, xyxy_to_xywh)


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def image(boxes, labels, scores=None, **extra):
    """One image's detections (with scores) or ground truths (without)."""
    d = {"boxes": np.array(boxes, dtype=np.float64).reshape(-1, 4),
         "labels": np.array(labels, dtype=np.int64)}
    if scores is not None:
        d["scores"] = np.array(scores, dtype=np.float64)
    d.update({k: np.array(v) for k, v in extra.items()})
    return d

# -----------------------------------------------------------------------------
# Boxes and IoU

def test_box_conversions():
    # centre (5, 6), size 4 x 2 -> corners (5 - 2, 6 - 1, 5 + 2, 6 + 1)
    assert xywh_to_xyxy(t([[5, 6, 4, 2]])).tolist() == [[3, 5, 7, 7]]
    assert xyxy_to_xywh(t([[3, 5, 7, 7]])).tolist() == [[5, 6, 4, 2]]
    boxes = torch.rand(2, 3, 4)
    assert torch.allclose(xyxy_to_xywh(xywh_to_xyxy(boxes)), boxes, atol=1e-6)


def test_box_iou_offset_squares():
    # [0,0,2,2] vs [1,1,3,3]: intersection 1 x 1 = 1, union 4 + 4 - 1 = 7
    iou = box_iou(t([[0, 0, 2, 2]]), t([[1, 1, 3, 3], [5, 5, 6, 6]]))
    assert iou.shape == (1, 2)
    assert torch.allclose(iou, t([[1 / 7, 0]]))


def test_box_iou_zero_area_is_zero_not_nan():
    # a point box [1,1,1,1] and a line [0,1,2,1]: union 0 (or only one area) -> IoU 0 by definition
    a = t([[1, 1, 1, 1], [0, 1, 2, 1]]).requires_grad_()
    iou = box_iou(a, t([[1, 1, 1, 1], [0, 0, 2, 2]]))
    assert iou.tolist() == [[0, 0], [0, 0]]
    iou.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_box_iou_aligned_broadcasts():
    # [0,0,2,2] vs [0,0,2,1]: inter 2, union 4 -> 2/4; vs itself -> 1
    a = t([[0, 0, 2, 2]])                     # (1, 4) broadcasts against (2, 4)
    iou = box_iou_aligned(a, t([[0, 0, 2, 1], [0, 0, 2, 2]]))
    assert torch.allclose(iou, t([2 / 4, 1]))

# -----------------------------------------------------------------------------
# NMS

def test_nms_drops_the_overlap_keeps_the_far_box():
    boxes = t([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    scores = t([0.9, 0.8, 0.7])
    # IoU(box 0, box 1) = 9*9 / (100 + 100 - 81) = 81/119 ≈ 0.68 > 0.5, so box 1 goes
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == [0, 2]


def test_nms_order_and_strict_threshold():
    # [0,0,2,1] vs [0,0,1,1]: inter 1, union 2 -> IoU exactly 0.5; suppression needs IoU > threshold
    boxes = t([[0, 0, 1, 1], [0, 0, 2, 1], [5, 5, 6, 6]])
    scores = t([0.3, 0.9, 0.9])               # tie 0.9: input order (1 before 2), then 0
    assert nms(boxes, scores, 0.5).tolist() == [1, 2, 0]
    assert nms(boxes, scores, 0.49).tolist() == [1, 2]
    # identical boxes have IoU 1, and 1 > 1 is false: threshold 1.0 disables suppression
    same = t([[0, 0, 4, 4]] * 3)
    assert nms(same, t([0.1, 0.3, 0.2]), 1.0).tolist() == [1, 2, 0]
    assert nms(same, t([0.1, 0.3, 0.2]), 0.99).tolist() == [1]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_batched_nms_only_within_a_class():
    boxes = t([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11]])
    scores = t([0.5, 0.9, 0.7, 0.6])
    labels = torch.tensor([0, 1, 0, 1])
    # class 0: boxes 2 (0.7) and 0 (0.5) are identical -> keep 2; class 1: 1 (0.9) suppresses 3 (IoU 81/119)
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [1, 2]
    # threshold 0.7 > 81/119: box 3 survives; result in decreasing score over both classes
    assert batched_nms(boxes, scores, labels, 0.7).tolist() == [1, 2, 3]


def reference_nms(boxes, scores, iou_threshold):
    """torchvision csrc/ops/cpu/nms_kernel.cpp, line by line, in float32 scalars."""
    boxes, scores = boxes.numpy(), scores.numpy()
    order = np.argsort(-scores, kind="stable")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(len(boxes), bool)
    keep = []
    for _i in range(len(order)):
        i = order[_i]
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[_i + 1:]:
            if suppressed[j]:
                continue
            w = max(np.float32(0), min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            h = max(np.float32(0), min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            inter = w * h
            if float(inter / (areas[i] + areas[j] - inter)) > iou_threshold:
                suppressed[j] = True
    return keep


def random_boxes(g, n, clustered):
    if clustered:                              # 10 objects, n boxes jittered around them
        centres = g.uniform(50, 450, (10, 2))[g.integers(0, 10, n)]
        wh = g.uniform(40, 80, (n, 2))
        xy = centres + g.normal(0, 6, (n, 2))
    else:
        xy, wh = g.uniform(0, 500, (n, 2)), g.uniform(5, 120, (n, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    boxes = np.round(boxes) if g.random() < 0.5 else boxes          # integer boxes: exact IoU ties
    scores = np.round(g.random(n), 2)                                # 2 decimals: ties in score
    return torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores, dtype=torch.float32)


@pytest.mark.parametrize("clustered", [False, True])
def test_nms_equals_loop_reference(clustered):
    g = np.random.default_rng(0)
    for n in (1, 2, 50, 300):
        boxes, scores = random_boxes(g, n, clustered)
        for thr in (0.3, 0.5, 0.7):
            assert nms(boxes, scores, thr).tolist() == reference_nms(boxes, scores, thr)
            labels = torch.tensor(g.integers(0, 3, n))
            expected = []
            for c in range(3):                                           # per-class reference
                idx = torch.nonzero(labels == c).flatten()
                expected += [int(idx[k]) for k in reference_nms(boxes[idx], scores[idx], thr)]
            expected.sort(key=lambda i: (-scores[i].item(), i))
            assert batched_nms(boxes, scores, labels, thr).tolist() == expected

# -----------------------------------------------------------------------------
# Average precision of one curve

def test_average_precision_voc07_voc12_coco():
    # 2 ground truths; detections by score: TP, FP, TP
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    # voc07: t = 0.0 ... 0.5 -> max precision 1 (6 points); t = 0.6 ... 1.0 -> 2/3 (5 points)
    assert average_precision(recall, precision, "voc07") == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # voc12: envelope is 1 up to recall 0.5, then 2/3 up to recall 1
    assert average_precision(recall, precision, "voc12") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # coco: recall thresholds 0, .01, ..., .50 (51 points) -> 1; .51 ... 1.0 (50 points) -> 2/3
    assert average_precision(recall, precision, "coco") == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    # no detections: AP 0 under every method
    for method in ("voc07", "voc12", "coco"):
        assert average_precision([], [], method) == 0

# -----------------------------------------------------------------------------
# evaluate(): one rule per test, by hand

def test_voc_duplicate_is_a_false_positive():
    # objects A, B of class 0. Detections: A (0.9) TP, A again (0.8) FP, B (0.7) TP
    gts = [image([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0])]
    dets = [image([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], [0, 0, 0], [0.9, 0.8, 0.7])]
    # recall 1/2, 1/2, 2/2; precision 1, 1/2, 2/3 -> as test_average_precision_voc07_voc12_coco
    r = evaluate(dets, gts, "voc07")
    assert r["ap"][0] == pytest.approx((6 * 1 + 5 * 2 / 3) / 11) and r["map"] == r["ap"][0]
    assert np.allclose(r["curves"][0][0], [0.5, 0.5, 1.0]) and np.allclose(r["curves"][0][1], [1, 0.5, 2 / 3])
    assert evaluate(dets, gts, "voc12")["ap"][0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_voc_difficult_object_is_neither_tp_nor_fp():
    # object A (difficult), B. Detections: A (0.9) ignored, C far away (0.8) FP, B (0.7) TP; npos = 1
    gts = [image([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], difficult=[True, False])]
    dets = [image([[0, 0, 10, 10], [80, 80, 90, 90], [50, 50, 60, 60]], [0, 0, 0], [0.9, 0.8, 0.7])]
    # cumulative tp 0, 0, 1; fp 0, 1, 1 -> recall 0, 0, 1; precision 0/eps = 0, 0, 1/2
    r = evaluate(dets, gts, "voc12")
    assert np.allclose(r["curves"][0][1], [0, 0, 0.5])
    assert r["ap"][0] == pytest.approx(1 * 0.5)                 # envelope 1/2 over recall 0..1
    assert r["num_gt"][0] == 1


def test_voc_iou_uses_inclusive_pixels_and_strict_threshold():
    # ground truth [0,0,9,9] is 10 x 10 pixels with the devkit's +1. Detection [0,0,9,4]: 10 x 5 pixels,
    # IoU = 50 / 100 = 0.5 exactly -> not > 0.5 -> FP (the MATLAB devkit's >= would call it a TP).
    # Continuous IoU would be 9*4 / 81 = 0.44.
    gts = [image([[0, 0, 9, 9]], [0])]
    assert evaluate([image([[0, 0, 9, 4]], [0], [0.9])], gts, "voc07")["ap"][0] == 0
    # [0,0,9,5]: 60 / 100 = 0.6 > 0.5 -> TP, AP 1 (continuous IoU 45/81 = 0.56 would agree here)
    assert evaluate([image([[0, 0, 9, 5]], [0], [0.9])], gts, "voc07")["ap"][0] == pytest.approx(1)


def test_tie_in_score_keeps_input_order():
    # one object; two detections with the same score, a miss and a hit
    gts = [image([[0, 0, 10, 10]], [0])]
    hit_first = [image([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 0], [0.5, 0.5])]
    miss_first = [image([[50, 50, 60, 60], [0, 0, 10, 10]], [0, 0], [0.5, 0.5])]
    # hit first: precision 1 at recall 1 -> AP 1. Miss first: recall 0, 1; precision 0, 1/2 ->
    # voc12 0.5 (envelope 1/2); voc07 11 * (1/2) / 11; coco 101 * (1/2) / 101 at every IoU threshold
    for protocol in ("voc07", "voc12", "coco"):
        assert evaluate(hit_first, gts, protocol)["map"] == pytest.approx(1)
        assert evaluate(miss_first, gts, protocol)["map"] == pytest.approx(0.5)


def test_equal_iou_with_two_objects_voc_takes_the_first_coco_the_last():
    # G1 [0,0,10,10], G2 [2,0,12,10]. D1 [1,0,11,10] (0.9) overlaps both by 9 x 10: IoU 90/110 each.
    # D2 [-2,0,8,10] (0.8): IoU with G1 8*10/120 = 0.67, with G2 6*10/140 = 0.43.
    gts = [image([[0, 0, 10, 10], [2, 0, 12, 10]], [0, 0])]
    dets = [image([[1, 0, 11, 10], [-2, 0, 8, 10]], [0, 0], [0.9, 0.8])]
    # voc_eval.py: np.argmax -> D1 takes G1; D2's best is G1, taken -> FP. recall .5, .5; precision 1, .5
    assert evaluate(dets, gts, "voc07")["map"] == pytest.approx(6 / 11)         # t = 0 ... 0.5 -> 1
    assert evaluate(dets, gts, "voc12")["map"] == pytest.approx(0.5 * 1)
    # evaluateImg: on equal IoU the later object wins -> D1 takes G2, D2 takes G1 where 0.67 >= t:
    #   t = .50 .55 .60 .65: TP, TP -> AP 1;  t = .70 .75 .80: TP, FP -> precision 1 up to recall .5
    #   (recall points 0 ... .50: 51 of 101) -> 51/101;  t = .85 .90 .95: D1 (0.82) misses too -> 0
    assert evaluate(dets, gts, "coco")["map"] == pytest.approx((4 * 1 + 3 * 51 / 101) / 10)


def test_class_without_ground_truth_is_nan_and_left_out():
    # class 0: one object, found (AP 1). class 1: only a detection (no ground truth -> nan).
    # class 2: an object, never detected (AP 0). mAP = (1 + 0) / 2
    gts = [image([[0, 0, 10, 10]], [0]), image([[0, 0, 20, 20]], [2])]
    dets = [image([[0, 0, 10, 10], [30, 30, 40, 40]], [0, 1], [0.9, 0.8]), image([], [], [])]
    for protocol in ("voc07", "voc12", "coco"):
        r = evaluate(dets, gts, protocol, num_classes=4)
        assert r["ap"][0] == pytest.approx(1) and r["ap"][2] == 0
        assert np.isnan(r["ap"][1]) and np.isnan(r["ap"][3])     # class 3: nothing at all
        assert r["map"] == pytest.approx((1 + 0) / 2)
    # no images at all
    assert np.isnan(evaluate([], [], "voc07", num_classes=2)["map"])


def test_coco_iou_thresholds():
    # object [0,0,10,10]; detection [0,0,10,8.1]: IoU = 81/100 = 0.81 -> TP at .50 .55 ... .80
    # (7 of 10 thresholds, AP 1 each), FP at .85 .90 .95 (AP 0) -> AP = 7/10
    r = evaluate([image([[0, 0, 10, 8.1]], [0], [0.9])], [image([[0, 0, 10, 10]], [0])], "coco")
    assert r["map"] == pytest.approx(7 / 10)
    assert r["map50"] == pytest.approx(1) and r["map75"] == pytest.approx(1)
    # area 10 x 10 = 100 < 32² -> "small"; no medium or large objects
    assert r["map_small"] == pytest.approx(7 / 10)
    assert np.isnan(r["map_medium"]) and np.isnan(r["map_large"])


def test_coco_area_field_decides_the_size_class():
    # same boxes, but the annotation's area says 2000 (32² <= 2000 <= 96²): a "medium" object
    gts = [image([[0, 0, 10, 10]], [0], area=[2000.0])]
    r = evaluate([image([[0, 0, 10, 8.1]], [0], [0.9])], gts, "coco")
    assert r["map_medium"] == pytest.approx(7 / 10) and np.isnan(r["map_small"])


def test_coco_crowd_region_swallows_detections():
    # object [0,0,10,10] and a crowd region [20,20,40,40]. Detections: inside the crowd (0.95),
    # on the object (0.9). For a crowd, IoU = intersection / detection area = 64/64 = 1 -> the
    # detection is matched to the crowd and ignored; the object's TP then has precision 1: AP 1.
    gts = [image([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 0], iscrowd=[False, True])]
    dets = [image([[22, 22, 30, 30], [0, 0, 10, 10]], [0, 0], [0.95, 0.9])]
    assert evaluate(dets, gts, "coco")["map"] == pytest.approx(1)
    # without the crowd region the first detection is a FP: precision 0, 1/2 at recall 0, 1 -> AP 1/2
    no_crowd = [image([[0, 0, 10, 10]], [0])]
    assert evaluate(dets, no_crowd, "coco")["map"] == pytest.approx(1 / 2)
    # a difficult box counts as a crowd region under the COCO protocol
    gts[0]["iscrowd"], gts[0]["difficult"] = np.array([False, False]), np.array([False, True])
    assert evaluate(dets, gts, "coco")["map"] == pytest.approx(1)


def test_coco_keeps_100_detections_per_image_and_class():
    # 100 misses of class 0 scored above the one hit: the hit is the 101st, dropped -> AP 0
    misses = [[100 + i, 100, 105 + i, 105] for i in range(100)]
    gts = [image([[0, 0, 10, 10]], [0])]
    dets = [image(misses + [[0, 0, 10, 10]], [0] * 101, [0.9] * 100 + [0.1])]
    assert evaluate(dets, gts, "coco")["ap"][0] == 0
    # the same 100 misses in class 1 do not count against class 0: the hit is its first -> AP 1
    dets = [image(misses + [[0, 0, 10, 10]], [1] * 100 + [0], [0.9] * 100 + [0.1])]
    assert evaluate(dets, gts, "coco")["ap"][0] == pytest.approx(1)


def test_accepts_torch_tensors_and_reports():
    gts = [{"boxes": t([[0, 0, 10, 10]]), "labels": torch.tensor([0])}]
    dets = [{"boxes": t([[0, 0, 10, 10]]), "scores": t([0.9]), "labels": torch.tensor([0])}]
    results = {p: evaluate(dets, gts, p, num_classes=2) for p in ("voc07", "voc12", "coco")}
    table = format_ap_table(results, ["cat", "dog"])
    assert "cat" in table and "1.0000" in table and "dog" in table and "map50" in table

# -----------------------------------------------------------------------------
# error_analysis(): YOLOv1 §4.2 / Figure 4 with Hoiem et al.'s rules. Boxes in VOC's inclusive pixels:
# [0, 0, 9, 9] is 10 x 10 = 100 pixels. Classes: 0 cat, 1 dog, 2 car; cat and dog are similar.
CAT, DOG, CAR = 0, 1, 2
BOX = [0, 0, 9, 9]
FAR = [50, 50, 59, 59]


def test_error_analysis_one_detection_in_each_category():
    gts = [image([BOX], [CAT]),                                  # 0: a cat
           image([BOX], [CAT]),                                  # 1: a cat
           image([BOX, FAR], [DOG, CAT]),                        # 2: a dog, and a cat elsewhere
           image([BOX, FAR], [CAR, CAT]),                        # 3: a car, and a cat elsewhere
           image([FAR], [CAT])]                                  # 4: a cat elsewhere
    dets = [image([BOX], [CAT], [0.9]),                          # IoU 1 with its cat: correct
            image([[0, 0, 9, 3]], [CAT], [0.8]),                 # 10 x 4 inside the cat: IoU 40/100 = .4: localization
            image([BOX, BOX], [CAT, DOG], [0.7, 0.95]),          # cat on the dog (IoU 1): similar; the dog: correct
            image([BOX], [CAT], [0.6]),                          # cat on the car (IoU 1): other
            image([BOX, FAR], [CAT, CAT], [0.5, 0.4])]           # IoU 0 with everything: background; then the
    # 6th cat detection (.4, right on a cat) is past the top N = 5 cats and not counted
    r = error_analysis(dets, gts, 3, similar=[[CAT, DOG]])
    assert r["num_objects"].tolist() == [5, 1, 1]
    assert r["counts"].tolist() == [[1, 1, 1, 1, 1],             # cat: one of each
                                    [1, 0, 0, 0, 0],             # dog: its one detection, correct
                                    [0, 0, 0, 0, 0]]             # car: no detection
    assert r["shares"][CAT].tolist() == [1 / 5] * 5
    assert r["shares"][DOG].tolist() == [1, 0, 0, 0, 0]
    assert np.isnan(r["shares"][CAR]).all()
    # pooled over the classes (Hoiem's pie): 6 detections, 2 correct
    assert r["overall"].tolist() == pytest.approx([2 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 6])
    # without similar groups the cat on the dog is "other"
    assert error_analysis(dets, gts, 3)["counts"][CAT].tolist() == [1, 1, 0, 2, 1]
    table = format_error_table(r, ["cat", "dog", "car"])
    assert "cat" in table and f"{100 / 5:8.2f}" in table and "65.50" in table      # our shares, the paper's YOLO row


def test_error_analysis_thresholds_are_inclusive_as_hoiems_code():
    # [0, 0, 9, 4] in BOX: 50/100 = .5 -> correct (IoU >= .5); [0, 0, 9, 0]: 10/100 = .1 -> localization (>= .1)
    gts = [image([BOX], [CAT]), image([BOX], [CAT])]
    dets = [image([[0, 0, 9, 4]], [CAT], [0.9]), image([[0, 0, 9, 0]], [CAT], [0.8])]
    assert error_analysis(dets, gts, 1)["counts"].tolist() == [[1, 1, 0, 0, 0]]


def test_error_analysis_a_duplicate_is_a_localization_error():
    # two detections on one cat, and a second cat elsewhere: the first is correct, the second (IoU 1 with a cat
    # already found) a duplicate, which Hoiem's code counts as localization
    gts = [image([BOX, FAR], [CAT, CAT])]
    dets = [image([BOX, BOX], [CAT, CAT], [0.9, 0.8])]
    assert error_analysis(dets, gts, 1)["counts"].tolist() == [[1, 1, 0, 0, 0]]


def test_error_analysis_wrong_class_goes_to_the_object_it_overlaps_most():
    # a cat detection on BOX over a dog [0, 0, 9, 1] (IoU 20/100) and a car [0, 0, 9, 4] (IoU 50/100): the car
    # overlaps more, so "other" although a similar class is under it too; the image's cat is elsewhere
    gts = [image([[0, 0, 9, 1], [0, 0, 9, 4], FAR], [DOG, CAR, CAT])]
    dets = [image([BOX], [CAT], [0.9])]
    assert error_analysis(dets, gts, 3, similar=[[CAT, DOG]])["counts"][CAT].tolist() == [0, 0, 0, 1, 0]


def test_error_analysis_difficult_objects_are_not_counted_in_n_but_matching_one_is_correct():
    # VOC: N counts the non-difficult cats only (1), so only the best detection is looked at; it is on the difficult cat
    gts = [image([BOX, FAR], [CAT, CAT], difficult=[True, False])]
    dets = [image([BOX, FAR], [CAT, CAT], [0.9, 0.8])]
    r = error_analysis(dets, gts, 1)
    assert r["num_objects"].tolist() == [1]
    assert r["counts"].tolist() == [[1, 0, 0, 0, 0]]


def test_similar_groups_by_name():
    names = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
             "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]
    groups = similar_groups(VOC_SIMILAR_CLASSES, names)
    # Hoiem's setDatasetParameters.m, 1-based: animals [3 8 10 12 13 15 17], vehicles1 [1 4 6 7 19 2 14],
    # vehicles2 [2 14], furniture [9 11 18], airobjects [1 3]
    assert [sorted(k + 1 for k in g) for g in groups] == [[3, 8, 10, 12, 13, 15, 17], [1, 2, 4, 6, 7, 14, 19],
                                                        [2, 14], [9, 11, 18], [1, 3]]
    with pytest.raises(ValueError, match="cow not among"):
        similar_groups([["cat", "cow"]], ["cat", "dog"])


# -----------------------------------------------------------------------------
# Cross-checks on random inputs

def random_case(seed, num_images=40, num_classes=5):
    """Images with 0-6 objects (some difficult, some crowd), detections that are jittered or exact
    copies of objects (duplicates), random boxes, scores with ties; class 4 has no ground truth."""
    g = np.random.default_rng(seed)
    dets, gts = [], []
    for _ in range(num_images):
        m = g.integers(0, 7)
        xy, wh = g.uniform(0, 400, (m, 2)), g.uniform(4, 150, (m, 2))
        boxes = np.round(np.concatenate([xy, xy + wh], 1), g.integers(0, 2))
        labels = g.integers(0, num_classes - 1, m)
        gt = {"boxes": boxes, "labels": labels, "difficult": g.random(m) < 0.15, "iscrowd": g.random(m) < 0.1}
        if g.random() < 0.3:
            gt["area"] = wh.prod(1) * g.uniform(0.5, 1.5, m)
        copies = g.integers(0, m, g.integers(0, 3 * m + 1)) if m else np.zeros(0, int)
        jitter = g.normal(0, 4, (len(copies), 4)) * (g.random((len(copies), 1)) < 0.7)
        n_rand = g.integers(0, 8)
        xy, wh = g.uniform(0, 400, (n_rand, 2)), g.uniform(4, 150, (n_rand, 2))
        d_boxes = np.concatenate([boxes[copies] + np.round(jitter, 1), np.concatenate([xy, xy + wh], 1)])
        relabel = g.integers(0, num_classes, len(copies))              # 10% of copies: a wrong class
        d_labels = np.concatenate([np.where(g.random(len(copies)) < 0.9, labels[copies], relabel),
                                   g.integers(0, num_classes, n_rand)])
        dets.append({"boxes": d_boxes, "labels": d_labels, "scores": np.round(g.random(len(d_boxes)), 1)})
        gts.append(gt)
    return dets, gts


def reference_voc_eval(dets, gts, classname, use_07_metric):
    """py-faster-rcnn lib/datasets/voc_eval.py voc_eval() + voc_ap(), as loops, on in-memory data.
    Two conventions of ours: a stable sort (voc_eval.py's quicksort leaves ties unordered) and a crowd
    box counts as difficult. precision = tp / max(tp + fp, eps) as in the current voc_eval.py."""
    class_recs, npos = {}, 0
    for i, g in enumerate(gts):
        keep = g["labels"] == classname
        difficult = (g["difficult"] | g["iscrowd"])[keep]
        class_recs[i] = {"bbox": g["boxes"][keep], "difficult": difficult, "det": [False] * int(keep.sum())}
        npos += int((~difficult).sum())
    image_ids = [i for i, d in enumerate(dets) for lab in d["labels"] if lab == classname]
    confidence = np.array([s for d in dets for s, lab in zip(d["scores"], d["labels"]) if lab == classname])
    BB = np.array([b for d in dets for b, lab in zip(d["boxes"], d["labels"]) if lab == classname])
    BB = BB.reshape(-1, 4)
    sorted_ind = np.argsort(-confidence, kind="stable")
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            ixmin = np.maximum(BBGT[:, 0], bb[0])
            iymin = np.maximum(BBGT[:, 1], bb[1])
            ixmax = np.minimum(BBGT[:, 2], bb[2])
            iymax = np.minimum(BBGT[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + 1., 0.)
            ih = np.maximum(iymax - iymin + 1., 0.)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) +
                   (BBGT[:, 2] - BBGT[:, 0] + 1.) * (BBGT[:, 3] - BBGT[:, 1] + 1.) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > 0.5:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.
        else:
            fp[d] = 1.
    if npos == 0:
        return float("nan")
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.
        for t in np.arange(0., 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.
        return ap
    mrec = np.concatenate(([0.], rec, [1.]))
    mpre = np.concatenate(([0.], prec, [0.]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


def same(a, b):
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_voc_equals_voc_eval_loop_port(seed):
    dets, gts = random_case(seed)
    for protocol in ("voc07", "voc12"):
        r = evaluate(dets, gts, protocol, num_classes=5)
        expected = [reference_voc_eval(dets, gts, c, protocol == "voc07") for c in range(5)]
        assert all(same(r["ap"][c], expected[c]) for c in range(5)), (protocol, r["ap"], expected)
        assert same(r["map"], np.nanmean(expected))


def pycocotools_eval(dets, gts, num_classes):
    """Run pycocotools' COCOeval (bbox) on the same data: image ids 1..N in list order, category
    ids 1..K, boxes [x1, y1, x2 - x1, y2 - y1] in float64; difficult boxes are sent as crowd."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    annotations, results = [], []
    for i, (d, g) in enumerate(zip(dets, gts)):
        for j, (b, lab) in enumerate(zip(g["boxes"], g["labels"])):
            w, h = b[2] - b[0], b[3] - b[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(lab) + 1,
                                "bbox": [b[0], b[1], w, h],
                                "iscrowd": int(g["iscrowd"][j] | g["difficult"][j]),
                                "area": float(g["area"][j]) if "area" in g else w * h})
        for b, s, lab in zip(d["boxes"], d["scores"], d["labels"]):
            results.append({"image_id": i + 1, "category_id": int(lab) + 1, "score": float(s),
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": [{"id": i + 1} for i in range(len(gts))], "annotations": annotations,
                        "categories": [{"id": k + 1} for k in range(num_classes)]}
        coco.createIndex()
        E = COCOeval(coco, coco.loadRes(results), "bbox")
        E.evaluate()
        E.accumulate()
        E.summarize()
    s = E.eval["precision"][:, :, :, 0, 2]                       # (T, R, K) at area all, maxDets 100
    ap = [s[:, :, k][s[:, :, k] > -1].mean() if (s[:, :, k] > -1).any() else float("nan")
          for k in range(num_classes)]
    return E.stats, ap


@pytest.mark.parametrize("seed", range(4))
def test_coco_equals_pycocotools(seed):
    try:                                  # a test dependency: fail (never skip) when it is missing
        import pycocotools  # noqa: F401
    except ImportError:
        pytest.fail("pycocotools is not installed; the COCO cross-check needs it: pip install pycocotools")
    dets, gts = random_case(seed)
    if seed == 3:                                     # many detections per image: maxDets matters
        dets = [{k: np.concatenate([v] * 30) for k, v in d.items()} for d in dets]
        for d in dets:
            d["scores"] = np.round(np.random.default_rng(0).random(len(d["scores"])), 2)
    stats, ap = pycocotools_eval(dets, gts, 5)
    r = evaluate(dets, gts, "coco", num_classes=5)
    nan = lambda v: float("nan") if v == -1 else v
    ours = [r["map"], r["map50"], r["map75"], r["map_small"], r["map_medium"], r["map_large"]]
    assert all(same(a, nan(b)) for a, b in zip(ours, stats[:6])), (ours, stats[:6])
    assert all(same(r["ap"][k], ap[k]) for k in range(5)), (r["ap"], ap)


def test_a_size_without_ground_truth_is_named_not_printed_as_nan():
    # one 10 x 10 object (area 100 < 32²): COCO's medium (32²..96²) and large (> 96²) ranges hold none
    gts = [{"boxes": t([[0, 0, 10, 10]]), "labels": torch.tensor([0])}]
    dets = [{"boxes": t([[0, 0, 10, 10]]), "scores": t([0.9]), "labels": torch.tensor([0])}]
    line = format_ap_table({"coco": evaluate(dets, gts, "coco", num_classes=1)}, ["cat"]).splitlines()[-1]
    assert "nan" not in line
    assert line == ("coco: map50 1.0000, map75 1.0000, map_small 1.0000, map_medium - (no object of area "
                    "32²..96² pixels), map_large - (no object of area over 96² pixels)")
