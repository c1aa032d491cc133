"""
Training losses of YOLOv1 and YOLOv2, one plain function each.

Paper -> code
  YOLOv1 §2.2, eq. (3): the sum-squared loss, row by row ................. yolov1_loss()
  YOLOv2 (paper silent; darknet region_layer.c, two revisions) ........... yolov2_loss(), REGION_*
  YOLOv2 §2 "Direct location prediction" vs the RPN's offsets (Table 2) .. LOCATIONS, centre_in_cell()

Both take the targets as data.py yields them: a list with one dict per image,
{"boxes": (M, 4) normalized xyxy, "labels": (M,) int64}, and do the assignment of objects to
predictors inside, as darknet does. Both return a dict with each term under its own name and "total".
"""
import torch

import darknet
from metrics import box_iou_aligned, shape_iou, xywh_to_xyxy, xyxy_to_xywh

# -----------------------------------------------------------------------------
# YOLOv1 §2.2, eq. (3)

LAMBDA_COORD = 5.0    # §2.2 λcoord: weight of the box coordinate terms
LAMBDA_NOOBJ = 0.5    # §2.2 λnoobj: weight of the confidence error of predictors with no object


def yolov1_loss(pred, targets, B=2, C=20, lambda_coord=LAMBDA_COORD, lambda_noobj=LAMBDA_NOOBJ):
    """YOLOv1 §2.2, eq. (3): summed over cells and predictors, mean over the N images, no factor 1/2
    (darknet's deltas are the gradient of half of it: yolov1.loss applies the ½, DARKNET_DELTA_SCALE).

    pred: (N, S, S, B*5+C) as yolov1.py lays it out (S is read from the tensor); targets: N dicts
    {"boxes": (M, 4) normalized xyxy, "labels": (M,) int64}. Returns xy, wh, obj, noobj, cls and total.

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
    N, S = pred.shape[0], pred.shape[1]
    if pred.shape[-1] != B * 5 + C or len(targets) != N:
        raise ValueError(f"pred {tuple(pred.shape)} does not fit B={B}, C={C} and {len(targets)} targets")
    device, dtype = pred.device, pred.dtype
    # the layout of yolov1.split_output (loss.py may not import yolov1.py): per cell B x [x, y, √w, √h, C], p(c)
    cells = pred.reshape(N * S * S, B * 5 + C)                       # (N*S*S, B*5+C), cell = (n*S + i)*S + j
    boxes = cells[:, : B * 5].reshape(N * S * S, B, 5)               # (N*S*S, B, 5)
    class_prob = cells[:, B * 5:]                                    # (N*S*S, C)

    # 1. every object of the batch -> its centre's cell; the first listed object of a cell wins
    truth = torch.cat([t["boxes"] for t in targets]).to(device, dtype)               # (M, 4) normalized xyxy
    labels = torch.cat([t["labels"] for t in targets]).to(device)                    # (M,)
    image = torch.cat([torch.full((len(t["labels"]),), n) for n, t in enumerate(targets)]).to(device)
    cx, cy, w, h = xyxy_to_xywh(truth).unbind(-1)                                    # each (M,)
    col = (cx * S).floor().long().clamp(0, S - 1)                                    # j, the x cell
    row = (cy * S).floor().long().clamp(0, S - 1)                                    # i, the y cell
    cell = (image * S + row) * S + col                                               # (M,)
    order = torch.arange(len(cell), device=device)
    first = torch.full((N * S * S,), len(cell), device=device).scatter_reduce(0, cell, order, "amin")
    win = first[cell] == order                                                       # (M,) bool
    cell, row, col, labels = cell[win], row[win], col[win], labels[win]              # K objects, K cells
    truth_xy = torch.stack([cx[win] * S - col, cy[win] * S - row], dim=-1)          # (K, 2) offsets in the cell
    truth_wh = torch.stack([w[win], h[win]], dim=-1)                                 # (K, 2) relative to image
    obj_boxes = boxes[cell]                                                          # (K, B, 5)

    # 2. responsible predictor: highest IoU, or lowest RMSE while every IoU is 0; boxes as
    #    (x/S, y/S, w, h) from the cell's corner, the same shift for both, so the IoU is the image's IoU
    with torch.no_grad():
        pred_wh = obj_boxes[..., 2:4] ** 2
        pred_xywh = torch.cat([obj_boxes[..., 0:2] / S, pred_wh], dim=-1)                     # (K, B, 4)
        truth_xywh = torch.cat([truth_xy / S, truth_wh], dim=-1).unsqueeze(1)                 # (K, 1, 4)
        iou = box_iou_aligned(xywh_to_xyxy(pred_xywh), xywh_to_xyxy(truth_xywh))               # (K, B)
        rmse = (pred_xywh - truth_xywh).pow(2).sum(-1).sqrt()                                  # (K, B)
        responsible = torch.where((iou > 0).any(1), iou.argmax(1), rmse.argmin(1))            # (K,)
    k = torch.arange(len(cell), device=device)
    resp = obj_boxes[k, responsible]                                                 # (K, 5)
    no_object = torch.ones(N * S * S, B, dtype=torch.bool, device=device)            # 1noobj_ij
    no_object[cell, responsible] = False

    # 3. eq. 3, row by row; each entry already carries its λ, so total == sum of the rest
    terms = {
        # row 1: λcoord Σ 1obj_ij [(x - x̂)² + (y - ŷ)²]
        "xy": lambda_coord * (resp[:, 0:2] - truth_xy).pow(2).sum(),
        # row 2: λcoord Σ 1obj_ij [(√w - √ŵ)² + (√h - √ĥ)²]   (the net outputs √w, √h)
        "wh": lambda_coord * (resp[:, 2:4] - truth_wh.sqrt()).pow(2).sum(),
        # row 3: Σ 1obj_ij (C - Ĉ)², target Ĉ = IoU(predicted box, truth), no gradient through it
        "obj": (resp[:, 4] - iou[k, responsible]).pow(2).sum(),
        # row 4: λnoobj Σ 1noobj_ij (C - 0)²
        "noobj": lambda_noobj * boxes[..., 4][no_object].pow(2).sum(),
        # row 5: Σ 1obj_i Σ_c (p(c) - p̂(c))², p̂ one-hot, object cells only
        "cls": (class_prob[cell] - torch.nn.functional.one_hot(labels, C).to(dtype)).pow(2).sum(),
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
                region=REGION_2017, location="direct"):
    """Darknet's region layer as a loss. raw: (N, A*(5+C), H, W) (channel a*(5+C) + tx, ty, tw, th, to,
    class logits); targets: per image {"boxes": (M, 4) normalized xyxy, "labels": (M,)}; anchors: (A, 2) in
    grid cells; seen: images seen including this batch (darknet's net.seen); region: a darknet revision with a
    region layer (REGION_REVISIONS; its row of darknet.REVISIONS gives the coordinate scale); location: "direct" or
    "offsets" (LOCATIONS). Returns the mean over images of xy, wh, obj, noobj, prior (anchor warm-up) and cls, and
    their sum "total"."""
    if region not in REGION_REVISIONS:
        raise ValueError(f"yolov2_loss: region must be one of {REGION_REVISIONS}, got {region!r}")
    if location not in LOCATIONS:
        raise ValueError(f"yolov2_loss: location must be one of {LOCATIONS}, got {location!r}")
    N, _, H, W = raw.shape
    A = anchors.shape[0]
    if len(targets) != N:
        raise ValueError(f"yolov2_loss: {N} images in raw but {len(targets)} target dicts")
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

    # Objects: per image the first 30 of size >= .001, in list order; padded to (N, T, 4) for the IoUs.
    truth_xywh, labels = [], []
    for t in targets:
        xywh = xyxy_to_xywh(t["boxes"].to(raw).view(-1, 4))
        ok = (xywh[:, 2] >= MIN_BOX_SIZE) & (xywh[:, 3] >= MIN_BOX_SIZE)
        truth_xywh.append(xywh[ok][:REGION_MAX_OBJECTS])
        labels.append(t["labels"].to(raw.device)[ok][:REGION_MAX_OBJECTS])
    counts = torch.tensor([len(b) for b in truth_xywh], device=raw.device)
    T = max(int(counts.max()), 1) if N else 1
    padded = raw.new_zeros(N, T, 4)
    for b, xywh in enumerate(truth_xywh):
        padded[b, : len(xywh)] = xywh_to_xyxy(xywh)
    valid = torch.arange(T, device=raw.device) < counts[:, None]     # (N, T)

    # No-object error: every prediction whose best IoU with any object of its image is not above .6.
    # (An object's own slot takes the object's targets instead; see `responsible` below.)
    iou = box_iou_aligned(pred.view(N, -1, 1, 4), padded.view(N, 1, T, 4))     # (N, A*H*W, T)
    best_iou = torch.where(valid[:, None, :], iou, 0.0).amax(-1).view(N, A, H, W)

    # Each object -> its centre's cell (i, j) and the anchor of best shape IoU (bias_match=1).
    image = torch.repeat_interleave(torch.arange(N, device=raw.device), counts)  # (K,) objects in order
    truth = torch.cat(truth_xywh) if N else raw.new_zeros(0, 4)                  # (K, 4) normalized xywh
    label = torch.cat(labels).long() if N else counts.new_zeros(0)
    i = (truth[:, 0] * W).long().clamp(max=W - 1)                    # darknet: i = (truth.x * l.w)
    j = (truth[:, 1] * H).long().clamp(max=H - 1)
    anchor_w, anchor_h = anchors[:, 0] / W, anchors[:, 1] / H        # (A,) fractions of the image
    n = shape_iou(truth[:, 2:4], torch.stack([anchor_w, anchor_h], 1)).argmax(1)   # (K,); first best = strict >
    # A later object in the same slot overwrites an earlier one entirely (every delta of the slot is set
    # again), so only the last object of each slot counts.
    slot = ((image * A + n) * H + j) * W + i                         # (K,) flat index into (N, A, H, W)
    order = torch.arange(len(slot), device=raw.device)
    last = torch.full((N * A * H * W,), -1, device=raw.device).scatter_reduce(0, slot, order, "amax")
    kept = last[slot] == order
    image, truth, label, i, j, n = image[kept], truth[kept], label[kept], i[kept], j[kept], n[kept]
    responsible = torch.zeros(N, A, H, W, dtype=torch.bool, device=raw.device)
    responsible[image, n, j, i] = True

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
    xy = 0.5 * scale * ((target_x - x[image, n, j, i]) ** 2 + (target_y - y[image, n, j, i]) ** 2)
    wh = 0.5 * scale * ((target_w - tw[image, n, j, i]) ** 2 + (target_h - th[image, n, j, i]) ** 2)
    # Objectness: rescore=1 -> target IoU(predicted box, object), detached; rescore=0 -> 1.
    target_obj = box_iou_aligned(pred[image, n, j, i], xywh_to_xyxy(truth)) if rescore else torch.ones_like(scale)
    obj = 0.5 * object_scale * (target_obj - objectness[image, n, j, i]) ** 2
    noobj = 0.5 * noobject_scale * objectness ** 2 * ((best_iou <= ignore_thresh) & ~responsible)
    # Classes: softmax over the C logits of the slot, cross-entropy with the object's class.
    # class_loss(logits (K, C), labels (K,)) -> (K,) replaces it: YOLO9000's WordTree (yolo9000.py) passes its own.
    cls = class_scale * (class_loss or cross_entropy)(logits[image, n, :, j, i], label)
    # Anchor warm-up: σ(tx), σ(ty) -> .5 ("offsets": tx, ty -> 0) and tw, th -> 0 (the anchor itself, centred in
    # its cell) for all other predictions.
    if seen < PRIOR_WARMUP_IMAGES:
        centre = 0.5 if location == "direct" else 0.0
        prior = 0.5 * PRIOR_WARMUP_SCALE * ((centre - x) ** 2 + (centre - y) ** 2 + tw ** 2 + th ** 2) * ~responsible
    else:
        prior = raw.new_zeros(())

    terms = {"xy": xy.sum() / N, "wh": wh.sum() / N, "obj": obj.sum() / N, "noobj": noobj.sum() / N,
             "prior": prior.sum() / N, "cls": cls.sum() / N}
    terms["total"] = sum(terms.values())
    return terms


def cross_entropy(logits, labels):
    """(K, C) logits, (K,) labels -> (K,) softmax cross-entropy (darknet's softmax=1 class delta)."""
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")
