"""
Training losses of YOLOv1 and YOLOv2, one plain function each.

Paper -> code
  YOLOv1 §2.2, eq. (3): the sum-squared loss, row by row ................. yolov1_loss()
  YOLOv2 (paper silent; darknet region_layer.c is the reference) .......... yolov2_loss()

Both take the targets as data.py yields them: a list with one dict per image,
{"boxes": (M, 4) normalized xyxy, "labels": (M,) int64}, and do the assignment of objects to
predictors inside, as darknet does. Both return a dict with each term under its own name and "total".
"""
import torch

from metrics import box_iou, box_iou_aligned, xywh_to_xyxy, xyxy_to_xywh

# -----------------------------------------------------------------------------
# YOLOv1 §2.2, eq. (3)

# (yolov1 helper: write the YOLOv1 section here)

# -----------------------------------------------------------------------------
# YOLOv2: darknet's region layer

# (yolov2 helper: write the YOLOv2 section here)
