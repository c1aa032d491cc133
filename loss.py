"""
Training losses of YOLOv1 and YOLOv2, one plain function each.

Paper -> code
  YOLOv1 §2.2, eq. (3): the sum-squared loss, row by row ................. yolov1_loss()
  YOLOv2 (paper silent; darknet region_layer.c, two revisions) ........... yolov2_loss(), REGION_*
  YOLOv2 §2 "Direct location prediction" vs the RPN's offsets (Table 2) .. LOCATIONS, centre_in_cell()

Both take the targets as data.collate yields them, batch tensors padded in the loader's workers
(metrics.batch_targets: "boxes" (N, T, 4) normalized xyxy, "labels" (N, T), "valid" (N, T)), or a list with one
dict per image {"boxes": (M, 4), "labels": (M,)}, and do the assignment of objects to predictors inside, as darknet
does, on every object slot weighted 0 or 1: no shape depends on the data and nothing is read back, so on a GPU the
host never waits for the device here (tests/test_loss.py). Both return a dict with each term under its own name and
"total".
"""
import torch

import darknet
from metrics import batch_targets, box_iou_aligned, shape_iou, xywh_to_xyxy, xyxy_to_xywh

# -----------------------------------------------------------------------------
# YOLOv1 §2.2, eq. (3)

LAMBDA_COORD = 5.0    # §2.2 λcoord: weight of the box coordinate terms
LAMBDA_NOOBJ = 0.5    # §2.2 λnoobj: weight of the confidence error of predictors with no object


def yolov1_loss(pred, targets, B=2, C=20, lambda_coord=LAMBDA_COORD, lambda_noobj=LAMBDA_NOOBJ):
    """YOLOv1 §2.2, eq. (3): summed over cells and predictors, mean over the N images, no factor 1/2
    (darknet's deltas are the gradient of half of it: yolov1.loss applies the ½, DARKNET_DELTA_SCALE).

    pred: (N, S, S, B*5+C) as yolov1.py lays it out (S is read from the tensor); targets: the batch as
    data.collate pads it (metrics.batch_targets: "boxes" (N, T, 4) normalized xyxy, "labels" (N, T), "valid"
    (N, T)), or a list of N dicts {"boxes": (M, 4), "labels": (M,)} padded here. Returns xy, wh, obj, noobj, cls
    and total. Every object slot of the batch is computed and weighted 0 or 1 (no filtering: nothing waits for
    the device to count objects).

    Assignment (darknet: detection_layer.c, and data.c fill_truth_region for step 1):
    1. An object belongs to the cell (row i, column j) holding its centre. When objects share a cell, the
       first listed wins and the others are ignored (darknet shuffles the list first, so its winner is
       random; here the dataset's order decides). §2.4: a cell holds one object. (data.c also drops boxes
       with w or h < .005 before this: data.MIN_BOX_SIDE; the datasets decide what boxes reach the loss.)
    2. The responsible predictor of that cell is the one whose current box has the highest IoU with the
       object; while all its IoUs are 0, the one nearest by root-mean-square distance over (x/S, y/S, w, h),
       x, y measured from the cell's corner (darknet's box_rmse fallback).
    3. Its confidence target is that IoU, detached (darknet rescore=1); every other predictor, including the
       other predictors of an object cell, gets the no-object error.
    """
    targets = batch_targets(targets) if isinstance(targets, (list, tuple)) else targets
    N, S = pred.shape[0], pred.shape[1]
    if pred.shape[-1] != B * 5 + C or targets["boxes"].shape[0] != N:
        raise ValueError(f"pred {tuple(pred.shape)} does not fit B={B}, C={C} and {targets['boxes'].shape[0]} targets")
    device, dtype = pred.device, pred.dtype
    # the layout of yolov1.split_output (loss.py may not import yolov1.py): per cell B x [x, y, √w, √h, C], p(c)
    cells = pred.reshape(N * S * S, B * 5 + C)                       # (N*S*S, B*5+C), cell = (n*S + i)*S + j
    boxes = cells[:, : B * 5].reshape(N * S * S, B, 5)               # (N*S*S, B, 5)
    class_prob = cells[:, B * 5:]                                    # (N*S*S, C)

    # 1. every object slot of the batch (M = N*T, padded ones included) -> its centre's cell; the first listed
    #    object of a cell wins. Padded slots hold a stand-in box (.5, .5, .5, .5): finite everywhere, weight 0.
    T = targets["boxes"].shape[1]
    valid = targets["valid"].to(device).reshape(N * T)                              # (M,) bool
    labels = targets["labels"].to(device).reshape(N * T).long()                     # (M,)
    xywh = xyxy_to_xywh(targets["boxes"].to(device, dtype).reshape(N * T, 4))      # (M, 4) normalized xywh
    cx, cy, w, h = torch.where(valid[:, None], xywh, 0.5).unbind(-1)                # each (M,)
    image = torch.arange(N, device=device).repeat_interleave(T)                     # (M,), T a Python int
    col = (cx * S).floor().long().clamp(0, S - 1)                                    # j, the x cell
    row = (cy * S).floor().long().clamp(0, S - 1)                                    # i, the y cell
    cell = (image * S + row) * S + col                                               # (M,)
    order = torch.arange(N * T, device=device)
    first = torch.full((N * S * S,), N * T, device=device).scatter_reduce(0, cell, torch.where(valid, order, N * T),
                                                                          "amin")
    win = valid & (first[cell] == order)                                             # (M,) bool: 1obj_i
    weight = win.to(dtype)
    truth_xy = torch.stack([cx * S - col, cy * S - row], dim=-1)                    # (M, 2) offsets in the cell
    truth_wh = torch.stack([w, h], dim=-1)                                           # (M, 2) relative to image
    obj_boxes = boxes[cell]                                                          # (M, B, 5)

    # 2. responsible predictor: highest IoU, or lowest RMSE while every IoU is 0; boxes as
    #    (x/S, y/S, w, h) from the cell's corner, the same shift for both, so the IoU is the image's IoU
    with torch.no_grad():
        pred_wh = obj_boxes[..., 2:4] ** 2
        pred_xywh = torch.cat([obj_boxes[..., 0:2] / S, pred_wh], dim=-1)                     # (M, B, 4)
        truth_xywh = torch.cat([truth_xy / S, truth_wh], dim=-1).unsqueeze(1)                 # (M, 1, 4)
        iou = box_iou_aligned(xywh_to_xyxy(pred_xywh), xywh_to_xyxy(truth_xywh))               # (M, B)
        rmse = (pred_xywh - truth_xywh).pow(2).sum(-1).sqrt()                                  # (M, B)
        responsible = torch.where((iou > 0).any(1), iou.argmax(1), rmse.argmin(1))            # (M,)
    k = torch.arange(N * T, device=device)
    resp = obj_boxes[k, responsible]                                                 # (M, 5)
    # 1noobj_ij: 1 but at the responsible predictor of each winning object (one per cell at most)
    taken = boxes.new_zeros(N * S * S * B).scatter_reduce(0, cell * B + responsible, weight, "amax")
    no_object = 1 - taken.view(N * S * S, B)                                         # (N*S*S, B) 0 or 1

    # p̂(c): labels (M,) -> (M, C) one-hot by comparison (F.one_hot reads the labels' range back to the host)
    one_hot = (labels[:, None] == torch.arange(C, device=device)).to(dtype)
    # 3. eq. 3, row by row; each entry already carries its λ, so total == sum of the rest
    terms = {
        # row 1: λcoord Σ 1obj_ij [(x - x̂)² + (y - ŷ)²]
        "xy": lambda_coord * ((resp[:, 0:2] - truth_xy).pow(2).sum(-1) * weight).sum(),
        # row 2: λcoord Σ 1obj_ij [(√w - √ŵ)² + (√h - √ĥ)²]   (the net outputs √w, √h)
        "wh": lambda_coord * ((resp[:, 2:4] - truth_wh.sqrt()).pow(2).sum(-1) * weight).sum(),
        # row 3: Σ 1obj_ij (C - Ĉ)², target Ĉ = IoU(predicted box, truth), no gradient through it
        "obj": ((resp[:, 4] - iou[k, responsible]).pow(2) * weight).sum(),
        # row 4: λnoobj Σ 1noobj_ij (C - 0)²
        "noobj": lambda_noobj * (boxes[..., 4].pow(2) * no_object).sum(),
        # row 5: Σ 1obj_i Σ_c (p(c) - p̂(c))², p̂ one-hot, object cells only
        "cls": ((class_prob[cell] - one_hot).pow(2).sum(-1) * weight).sum(),
    }
    terms = {name: value / N for name, value in terms.items()}      # mean over the images of the batch
    terms["total"] = sum(terms.values())
    return terms


# -----------------------------------------------------------------------------
# YOLOv2: darknet's region layer
#
# The YOLOv2 paper does not state its loss; darknet's region_layer.c is the reference: forward_region_layer
# for the targets, backward_region_layer_gpu for the derivatives (the CPU backward is commented out).
# Darknet writes gradients ("deltas"), not a loss: each term sets delta = scale·(target - output). We write
# the loss whose gradient that is: ½·scale·(target - output)² for the squared terms and
# class_scale·cross-entropy for the softmax classes, so that batch size × ∂loss/∂raw == -delta.
# Outputs x, y (in-cell offsets) and objectness are σ(raw): the GPU backward multiplies their deltas by
# σ'; tw, th are raw (linear); the class delta (onehot - softmax) is the cross-entropy gradient as it is.

# DARKNET region_layer.c, not in the paper:
REGION_MAX_OBJECTS = 30        # l.truths = 30*(coords + 1): the objects of an image the layer reads
PRIOR_WARMUP_IMAGES = 12800    # `if (*(net.seen) < 12800)`: early on, every prediction is also pulled
PRIOR_WARMUP_SCALE = 0.01      #   toward its own anchor centred in its cell, with scale .01
MIN_BOX_SIZE = 0.001           # data.c fill_truth_detection drops boxes with w or h < .001 before the layer
                               # (so no box in [0, 1] has centre x = 0, which would end the layer's list)
# DARKNET [region] section, the same in yolo-voc.2.0.cfg, yolo.2.0.cfg, yolov2-voc.cfg, yolov2.cfg, both tiny cfgs:
IGNORE_THRESH = 0.6            # thresh=.6: no no-object error for a box whose best IoU with an object is > .6
OBJECT_SCALE = 5.0             # object_scale=5
NOOBJECT_SCALE = 1.0           # noobject_scale=1
CLASS_SCALE = 1.0              # class_scale=1
COORD_SCALE = 1.0              # coord_scale=1 (times 2 - w·h per object since 60e952ba, see below)
# rescore=1 (objectness target = IoU of the predicted box with its object) in all but yolov2-tiny.cfg (0:
# target 1); yolov2.PRESETS[name]["rescore"] / model.rescore carries the cfg's value.
#
# DARKNET: region_layer.c changed under the same name; each preset names the revision it trains with
# (yolov2.PRESETS[name]["region"], model.region), and darknet.REVISIONS[revision]["region"] says which coordinate
# scale it had. Read side by side, c6afc7ff and 60e952ba differ in the loss in one place only, that scale:
REGION_RELEASE = "c6afc7ff"    # 2016-11-17, the release (yolo-voc.2.0.cfg): delta = coord_scale·(t - o)
REGION_2017 = "60e952ba"       # 2017-03-26 (yolov2-voc.cfg): delta = coord_scale·(2 - w·h)·(t - o)
# The same in both: rescore, bias_match (anchor by shape IoU, strict >), thresh .6 (strict >), the scales
# object 5 / noobject 1 / class 1 / coord 1, 30 boxes, the prior warm-up (12800 images, .01, toward σ = .5,
# t = 0), the softmax class delta, the last object of a slot wins. The release lays the output out cell
# by cell (flatten) and multiplies the x, y and objectness deltas by σ' in forward_region_layer itself;
# 60e952ba keeps the conv's layout (entry_index) and applies σ' in backward_region_layer_gpu: the same
# gradient. (Between them, b3c4fc9f and d2dece3d changed only the YOLO9000 tree path.)
REGION_REVISIONS = tuple(name for name, row in darknet.REVISIONS.items() if row["region"])

# YOLOv2 Table 2, rows "anchor boxes" and "location prediction" (§2 "Direct location prediction"): what tx, ty mean.
#   "direct" (YOLOv2, darknet): bx = σ(tx) + cx, the centre bound to its cell; the loss compares σ(tx) with the
#     centre's offset in the cell.
#   "offsets" (the region proposal network's, the row "anchor boxes"): x = x_a + tx·w_a, unconstrained, x_a the
#     anchor's centre (OUR CHOICE: the cell's centre, cx + .5; the paper does not say where its intermediate model
#     centred its anchors) and w_a its width; the loss compares tx itself, linear like tw, with (x - x_a) / w_a.
#     The paper prints x = (tx * wa) - xa; its own example (tx = 1 shifts the box right by the anchor's width) and
#     Faster R-CNN's eq. 2 (x = tx·wa + xa) give the plus sign, which we use.
LOCATIONS = ("direct", "offsets")


def centre_in_cell(t, anchor_side, location):
    """tx (or ty) -> the box centre measured from its cell's top-left corner, in cells. anchor_side: the anchor's
    width (or height) in cells, broadcastable to t. "direct": σ(t), in (0, 1); "offsets": .5 + t·anchor_side."""
    return torch.sigmoid(t) if location == "direct" else 0.5 + t * anchor_side


def yolov2_loss(raw, targets, anchors, seen, rescore=True, coord_scale=COORD_SCALE, object_scale=OBJECT_SCALE,
                noobject_scale=NOOBJECT_SCALE, class_scale=CLASS_SCALE, ignore_thresh=IGNORE_THRESH, class_loss=None,
                region=REGION_2017, detection=None, location="direct"):
    """Darknet's region layer as a loss. raw: (N, A*(5+C), H, W) (channel a*(5+C) + tx, ty, tw, th, to,
    class logits); targets: the batch as data.collate pads it (metrics.batch_targets: "boxes" (N, T, 4)
    normalized xyxy, "labels" (N, T), "valid" (N, T)), or a list of N dicts {"boxes": (M, 4), "labels": (M,)}
    padded here; anchors: (A, 2) in grid cells; seen: images seen including this batch (darknet's net.seen);
    region: a darknet revision with a region layer (REGION_REVISIONS; its row of darknet.REVISIONS gives the
    coordinate scale); detection: None, or (N,) bool, the images that get the no-object and warm-up errors
    (YOLO9000's joint batches: not its classification images); location: "direct" or "offsets" (LOCATIONS,
    YOLOv2 Table 2's rows "location prediction" and "anchor boxes").
    Returns the mean over images of xy, wh, obj, noobj, prior (anchor warm-up) and cls, and their sum "total".
    Every object slot of the batch is computed and weighted 0 or 1, never filtered: no shape depends on the
    data, so the host never waits for the device (tests/test_loss.py runs it under FakeTensorMode)."""
    if region not in REGION_REVISIONS:
        raise ValueError(f"yolov2_loss: region must be one of {REGION_REVISIONS}, got {region!r}")
    if location not in LOCATIONS:
        raise ValueError(f"yolov2_loss: location must be one of {LOCATIONS}, got {location!r}")
    targets = batch_targets(targets) if isinstance(targets, (list, tuple)) else targets
    N, _, H, W = raw.shape
    A, T = anchors.shape[0], targets["boxes"].shape[1]
    if targets["boxes"].shape[0] != N:
        raise ValueError(f"yolov2_loss: {N} images in raw but {targets['boxes'].shape[0]} in the targets")
    anchors = anchors.to(raw)
    raw = raw.view(N, A, -1, H, W)                                   # (N, A, 5+C, H, W)
    # One split (not six slices): its backward writes the gradient of raw in one pass.
    tx, ty, tw, th, to, logits = raw.split([1, 1, 1, 1, 1, raw.shape[2] - 5], dim=2)
    tw, th = tw.squeeze(2), th.squeeze(2)                            # (N, A, H, W) log-space size
    # (N, A, H, W) what the coordinate loss compares: σ(tx), σ(ty) (offsets in the cell), or tx, ty ("offsets")
    x, y = (torch.sigmoid(t.squeeze(2)) if location == "direct" else t.squeeze(2) for t in (tx, ty))
    objectness = torch.sigmoid(to.squeeze(2))                        # (N, A, H, W)
    # logits: (N, A, C, H, W)

    # Predicted boxes (yolov2.decode), normalized: they choose targets, no gradient flows through them.
    with torch.no_grad():
        col = torch.arange(W, device=raw.device, dtype=raw.dtype).view(1, 1, 1, W)
        row = torch.arange(H, device=raw.device, dtype=raw.dtype).view(1, 1, H, 1)
        in_cell_x = x if location == "direct" else centre_in_cell(x, anchors[:, 0].view(1, A, 1, 1), location)
        in_cell_y = y if location == "direct" else centre_in_cell(y, anchors[:, 1].view(1, A, 1, 1), location)
        pred = xywh_to_xyxy(torch.stack([(col + in_cell_x) / W, (row + in_cell_y) / H,
                                         anchors[:, 0].view(1, A, 1, 1) * torch.exp(tw) / W,
                                         anchors[:, 1].view(1, A, 1, 1) * torch.exp(th) / H], -1))  # (N, A, H, W, 4)

    # Objects: per image the first REGION_MAX_OBJECTS of size >= MIN_BOX_SIZE, in list order (data.collate keeps
    # just these already; the mask makes any padding right). Slots out of it hold a stand-in box (.5, .5, .5, .5):
    # finite everywhere (a padded zero box would give log 0 and NaN gradients through the zero weights).
    truth = xyxy_to_xywh(targets["boxes"].to(raw))                   # (N, T, 4) normalized xywh
    large = targets["valid"].to(raw.device) & (truth[..., 2] >= MIN_BOX_SIZE) & (truth[..., 3] >= MIN_BOX_SIZE)
    used = large & (large.cumsum(1) <= REGION_MAX_OBJECTS)           # (N, T) the objects the layer reads
    truth = torch.where(used[..., None], truth, 0.5)

    # No-object error: every prediction whose best IoU with any object of its image is not above .6.
    # (An object's own slot takes the object's targets instead; see `responsible` below.)
    iou = box_iou_aligned(pred.view(N, -1, 1, 4), xywh_to_xyxy(truth).view(N, 1, T, 4))     # (N, A*H*W, T)
    best_iou = torch.where(used[:, None, :], iou, 0.0).amax(-1).view(N, A, H, W) if T else torch.zeros_like(x)

    # Each object slot (K = N*T) -> its centre's cell (i, j) and the anchor of best shape IoU (bias_match=1).
    image = torch.arange(N, device=raw.device).repeat_interleave(T)  # (K,), T a Python int
    truth, label, used = truth.view(N * T, 4), targets["labels"].to(raw.device).view(N * T).long(), used.view(N * T)
    i = (truth[:, 0] * W).long().clamp(max=W - 1)                    # darknet: i = (truth.x * l.w)
    j = (truth[:, 1] * H).long().clamp(max=H - 1)
    anchor_w, anchor_h = anchors[:, 0] / W, anchors[:, 1] / H        # (A,) fractions of the image
    n = shape_iou(truth[:, 2:4], torch.stack([anchor_w, anchor_h], 1)).argmax(1)   # (K,); first best = strict >
    # A later object in the same slot overwrites an earlier one entirely (every delta of the slot is set
    # again), so only the last object of each slot counts.
    slot = ((image * A + n) * H + j) * W + i                         # (K,) flat index into (N, A, H, W)
    order = torch.arange(N * T, device=raw.device)
    last = torch.full((N * A * H * W,), -1, device=raw.device).scatter_reduce(0, slot, torch.where(used, order, -1),
                                                                              "amax")
    kept = used & (last[slot] == order)                              # (K,) bool
    weight = kept.to(raw.dtype)
    responsible = raw.new_zeros(N * A * H * W).scatter_reduce(0, slot, weight, "amax").view(N, A, H, W)  # 0 or 1

    # Coordinates: σ(tx), σ(ty) toward the offset of the centre in its cell ("offsets": tx, ty toward that offset
    # less the anchor's centre .5, over the anchor's width and height); tw, th toward
    # log(w·W / anchor_w), log(h·H / anchor_h); 60e952ba's scale coord_scale·(2 - w·h) favours small boxes,
    # the release's is coord_scale for every box.
    small_boxes = darknet.REVISIONS[region]["region"] == darknet.COORD_SMALL_BOXES
    scale = coord_scale * ((2 - truth[:, 2] * truth[:, 3]) if small_boxes else torch.ones_like(truth[:, 2]))
    target_x, target_y = truth[:, 0] * W - i, truth[:, 1] * H - j
    if location == "offsets":
        target_x, target_y = (target_x - 0.5) / anchors[n, 0], (target_y - 0.5) / anchors[n, 1]
    target_w = torch.log(truth[:, 2] * W / anchors[n, 0])
    target_h = torch.log(truth[:, 3] * H / anchors[n, 1])
    xy = 0.5 * scale * ((target_x - x[image, n, j, i]) ** 2 + (target_y - y[image, n, j, i]) ** 2) * weight
    wh = 0.5 * scale * ((target_w - tw[image, n, j, i]) ** 2 + (target_h - th[image, n, j, i]) ** 2) * weight
    # Objectness: rescore=1 -> target IoU(predicted box, object), detached; rescore=0 -> 1.
    target_obj = box_iou_aligned(pred[image, n, j, i], xywh_to_xyxy(truth)) if rescore else torch.ones_like(scale)
    obj = 0.5 * object_scale * (target_obj - objectness[image, n, j, i]) ** 2 * weight
    elsewhere = (1 - responsible) if detection is None else (1 - responsible) * detection.to(raw).view(N, 1, 1, 1)
    noobj = 0.5 * noobject_scale * objectness ** 2 * (best_iou <= ignore_thresh) * elsewhere
    # Classes: softmax over the C logits of the slot, cross-entropy with the object's class.
    # class_loss(logits (K, C), labels (K,)) -> (K,) replaces it: YOLO9000's WordTree (yolo9000.py) passes its own.
    cls = class_scale * (class_loss or cross_entropy)(logits[image, n, :, j, i], label) * weight
    # Anchor warm-up: σ(tx), σ(ty) -> .5 ("offsets": tx, ty -> 0) and tw, th -> 0 (the anchor itself, centred in
    # its cell) for all other predictions.
    if seen < PRIOR_WARMUP_IMAGES:
        centre = 0.5 if location == "direct" else 0.0
        prior = 0.5 * PRIOR_WARMUP_SCALE * ((centre - x) ** 2 + (centre - y) ** 2 + tw ** 2 + th ** 2) * elsewhere
    else:
        prior = raw.new_zeros(())

    terms = {"xy": xy.sum() / N, "wh": wh.sum() / N, "obj": obj.sum() / N, "noobj": noobj.sum() / N,
             "prior": prior.sum() / N, "cls": cls.sum() / N}
    terms["total"] = sum(terms.values())
    return terms


def cross_entropy(logits, labels):
    """(K, C) logits, (K,) labels -> (K,) softmax cross-entropy (darknet's softmax=1 class delta)."""
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")
