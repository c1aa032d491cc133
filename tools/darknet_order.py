"""
Darknet's listing order of YOLOv2 detections, for comparing this project's output with darknet's line by line.
Not in the papers: the detections are the same in any order; darknet prints them in the order its do_nms_sort
leaves them, and a parity check is easiest when both lists come in that order.

Use:  yolov2.postprocess(raw, anchors, sizes, conf, nms, order=darknet_order)
      python detect.py --model yolov2-voc --weights yolov2-voc.weights --darknet-order photo.png
"""
import numpy as np
import torch


def darknet_order(keep, prob):
    """The order in which darknet lists detections after do_nms_sort, as indices of the kept predictions.
    1) Compaction (box.c): scanning from the front, each det with objectness 0 is swapped with the last
       unscanned one. The result: kept dets in the front part stay in place; the holes there are filled
       by the kept dets from the back part, last first.
    2) One qsort per class k = 0..C-1 by prob[k], descending. C leaves qsort's tie order open; glibc's
       qsort is, in most releases, a merge sort and so stable, and we assume that: the final order sorts
       by prob[C-1], ties by prob[C-2], ..., then by step 1's order.
       (NMS of class k only zeroes prob[k] after sort k, so every sort sees the thresholded probs.)"""
    P = keep.numel()
    total = int(keep.sum())
    idx = torch.arange(P, device=keep.device)
    front, back = idx[:total], idx[total:]
    compact = front.clone()
    holes = front[~keep[:total]]                                          # ascending
    compact[holes] = back[keep[total:]].flip(0)                           # descending from the end
    p = prob[compact].cpu().numpy()
    # np.lexsort: last key is the primary one; it is stable, so step 1's order breaks full ties.
    rank = np.lexsort([np.arange(total)] + [-p[:, k] for k in range(p.shape[1])])
    return compact[torch.from_numpy(rank).to(keep.device)]


