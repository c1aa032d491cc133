"""
The data of YOLOv1 and YOLOv2: images as darknet reads, resizes and augments them, and the datasets (synthetic
shapes, Pascal VOC, COCO, one record per image); train.py's start-up check.

Paper / darknet -> code
  Images
  darknet image.c load_image_color (stb_image, 3 channels: alpha dropped), / 255 .... load_image(), image_to_tensor()
  ours: EXIF orientation, 16-bit and CMYK files, errors that name the file ........... decode_image(), to_rgb()
  darknet image.c resize_image: two-pass bilinear, corners aligned, float32 ......... resize_darknet()
  darknet image.c letterbox_image; region_layer.c correct_region_boxes ... letterbox_darknet(), boxes_to_original()
  YOLOv1 §2.2 "random scaling and translations of up to 20% of the original image size"
    and "exposure and saturation of the image by up to a factor of 1.5 in the HSV" ... augment_yolov1()
  darknet 6103ecc4 data.c load_data_region (YOLOv1's 2015 files): each side jittered on its own, zeros outside,
    flip; [crop]'s saturation and exposure ............................................ augment_darknet_2015()
  darknet data.c load_data_detection as released with YOLOv2 (Dec. 2016; = load_data_region):
    jitter crop, flip, image.c random_distort_image ................................ augment_yolov2()
  darknet 60e952ba data.c load_data_detection: aspect jitter, scale, image.c place_image .. augment_darknet_2017()
  darknet data.c fill_truth_*: the smallest box kept, by revision (darknet.REVISIONS) ... AUGMENTATION_REVISIONS
  darknet image.c rgb_to_hsv / distort_image / hsv_to_rgb ............................ distort_hsv()
  Datasets
  darknet scripts/voc_label.py: 1-based XML, difficult objects left out of training .. VOCDataset
  darknet data/voc.names, data/coco.names ................................ VOC_CLASSES, COCO_CLASSES, read_names()
  darknet data.c load_data_detection: the image resized or augmented, boxes with it .. dataset[i]

Shapes: image (3, H, W) float32 in [0, 1], RGB; sizes (w, h) as darknet writes them; boxes (M, 4) xyxy, in pixels
going into an augmentation and normalized to [0, 1] of the output coming out.

dataset[i] -> (image (3, img_size, img_size) float in [0, 1], target), or with dataset.finish_on_device (train.py)
the uint8 crop and the rest of its augmentation for finish_batch; dataset.annotation(i) -> ground truth in
pixels of the original image, without decoding it. open_dataset(path) guesses VOC or COCO; shapes_split() gives a
run's synthetic sets. Beside the paper path: darknet txt labels, dataset checks, the VOC download (tools/).
"""
import functools
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

import darknet
from metrics import batch_targets

VOC_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]  # voc.names
# darknet data/coco.names: COCO's 80 categories in category-id order, with darknet's spellings (motorbike,
# aeroplane, sofa, pottedplant, diningtable, tvmonitor where COCO's json says motorcycle, airplane, couch, ...)
COCO_CLASSES = ["person", "bicycle", "car", "motorbike", "aeroplane", "bus", "train", "truck", "boat", "traffic light",
                "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
                "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase",
                "frisbee", "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
                "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl",
                "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
                "chair", "sofa", "pottedplant", "bed", "diningtable", "toilet", "tvmonitor", "laptop", "mouse",
                "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
                "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush"]
SHAPE_CLASSES = ["circle", "rectangle", "triangle"]


def read_names(path):
    """A darknet .names file (data/voc.names, data/coco.names): one class name per line (detect.py --names,
    tools/darknet_txt.py)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


# -----------------------------------------------------------------------------
# Images as darknet reads them (src/image.c, src/data.c); tests/test_images.py checks resize_image and
# distort_image against their C loops

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# OUR CHOICE for the paper's augmentation (augment_yolov1): boxes with w or h < .005 of the output are dropped, as
# darknet's data.c did from d2dece3d to 60e952ba; darknet's own augmentations take their revision's floor
# (darknet.REVISIONS min_box: .01, .005, .001; AUGMENTATIONS).
MIN_BOX_SIDE = 0.005


class ImageError(ValueError):
    """An image file that cannot be used. The message starts with the file's path."""


# -----------------------------------------------------------------------------
# Images as people have them: decoding, modes, EXIF

def to_rgb(img):
    """Any Pillow mode -> 8-bit RGB. Alpha is dropped, as darknet's stb loader does (3 channels requested). CMYK:
    Pillow >= 10 (requirements.txt) gives (255 - c)(255 - k) / 255; before 10 it gave 255 - min(255, c + k)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit PNGs: convert("RGB") clips at 255 (nearly all white); scale instead, 65535 / 257 = 255
        img = Image.fromarray(np.clip(np.rint(np.asarray(img, np.float64) / 257), 0, 255).astype(np.uint8))
    return img if img.mode == "RGB" else img.convert("RGB")


def decode_image(path):
    """-> (PIL image as stored: its mode, not rotated; EXIF orientation 1..8). Errors as load_image's."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image file")
    if os.path.getsize(path) == 0:
        raise ImageError(f"{path}: file is empty (0 bytes)")
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()                                       # decode now: truncation shows up here
    except Image.DecompressionBombError as e:
        raise ImageError(f"{path}: {e} Pillow's limit stays on; if you trust this file, raise "
                         f"PIL.Image.MAX_IMAGE_PIXELS before loading it") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (Pillow cannot identify its format)") from None
    except Exception as e:                                   # Pillow raises many types on corrupt data
        raise ImageError(f"{path}: cannot decode, truncated or corrupt ({type(e).__name__}: {e})") from None
    try:
        return img, int(img.getexif().get(0x0112, 1))        # EXIF Orientation; 5..8 swap width and height
    except Exception:                                        # broken EXIF blocks are common: ignore them
        return img, 1


def load_image(path, exif=True, expected_size=None):
    """Decode a file to a PIL RGB image. exif=True applies the EXIF orientation (photos, detect.py). Given
    expected_size=(w, h) (the size a dataset's annotation records), the EXIF rotation is applied only when it
    turns the stored size into expected_size (a photo whose annotation was made on the rotated view). Raises ImageError / FileNotFoundError naming the file."""
    img, orientation = decode_image(path)
    if orientation != 1 and (exif or expected_size is not None):
        rotated = img.size[::-1] if orientation >= 5 else img.size
        if expected_size is None or (img.size != tuple(expected_size) and rotated == tuple(expected_size)):
            img = ImageOps.exif_transpose(img)
    return to_rgb(img)


def image_to_uint8(img):
    """PIL RGB image -> (3, H, W) uint8, the pixels as decoded (the loader's workers send these)."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


def image_to_tensor(img):
    """PIL RGB image -> (3, H, W) float32 in [0, 1]: darknet divides by 255, no mean or std."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous().float().div_(255)


# -----------------------------------------------------------------------------
# Darknet's preprocessing: resize_image, letterbox_image, and boxes back to the original image

def _taps(n_in, n_out):
    """Source positions of one resize_image pass, float32 as in C: s = i·(float)(n_in-1)/(n_out-1),
    index (int) s, weight s - index. For n_out == 1 darknet divides by zero; we sample position 0."""
    scale = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
    s = np.arange(n_out, dtype=np.float32) * scale
    index = s.astype(np.int64)
    return index, s - index.astype(np.float32)


def resize_darknet(image, size):
    """darknet image.c resize_image: (C, H0, W0) float -> (C, h, w) for size=(w, h). Bilinear with aligned corners
    (output column c samples source x = c·(W0-1)/(w-1)), first horizontally, then vertically, in float32 as the C
    code, edges included: the last column copies the source's last column; on the last row the second tap is
    skipped, so that row is (1 - dy)·part[iy]. Equal to the C loops bit for bit (tests/test_images.py)."""
    (C, H0, W0), (w, h) = image.shape, size
    if (w, h) == (W0, H0):
        return image                                         # scale 1, dx = dy = 0: exactly the identity
    # pass 1, columns: part[k, r, c] = (1 - dx)·im[k, r, ix] + dx·im[k, r, ix+1]
    ix, dx = _taps(W0, w)
    ix[-1], dx[-1] = W0 - 1, 0                               # "if(c == w-1 || im.w == 1)": last column copied
    dx = torch.from_numpy(dx).to(image.dtype)
    cols = [torch.from_numpy(i).expand(C, H0, w) for i in (ix, np.minimum(ix + 1, W0 - 1))]
    part = image.gather(2, cols[0]).mul_(1 - dx).add_(image.gather(2, cols[1]).mul_(dx))      # (C, H0, w)
    # pass 2, rows: out[k, r, c] = (1 - dy)·part[k, iy, c] + dy·part[k, iy+1, c]
    iy, dy = _taps(H0, h)
    dy_next = np.append(dy[:-1], np.float32(0))             # "if(r == h-1 || im.h == 1) continue;"
    dy, dy_next = (torch.from_numpy(d).to(image.dtype).view(h, 1) for d in (dy, dy_next))
    rows = [torch.from_numpy(i) for i in (iy, np.minimum(iy + 1, H0 - 1))]
    # in-place arithmetic: on CPU, allocating large tensors costs more than the arithmetic here
    return part.index_select(1, rows[0]).mul_(1 - dy).add_(part.index_select(1, rows[1]).mul_(dy_next))


def letterbox_size(image_size, net_size):
    """(new_w, new_h) of the image inside the letterbox: image.c letterbox_image's integer arithmetic."""
    (iw, ih), (w, h) = image_size, net_size
    if np.float32(w) / np.float32(iw) < np.float32(h) / np.float32(ih):
        return w, (ih * w) // iw
    return (iw * h) // ih, h


def letterbox_darknet(image, size):
    """darknet image.c letterbox_image: (C, H, W) -> (C, h, w) for size=(w, h), the aspect ratio kept: resize_image
    to fit, embed_image at integer offsets, centred on gray 0.5."""
    C, H, W = image.shape
    (w, h), (new_w, new_h) = size, letterbox_size((W, H), size)
    boxed = torch.full((C, h, w), 0.5, dtype=image.dtype)
    top, left = (h - new_h) // 2, (w - new_w) // 2
    boxed[:, top:top + new_h, left:left + new_w] = resize_darknet(image, (new_w, new_h))
    return boxed


def boxes_to_original(boxes, image_size, net_size=None, letterbox=False):
    """(..., 4) normalized xyxy in the network input -> pixel xyxy in the original image of image_size=(w, h).
    Plain resize: x·w, y·h. Letterbox: region_layer.c correct_region_boxes, x' = (x - (netw-new_w)/2/netw) /
    (new_w/netw), a float half-pixel offset where the image was embedded at an integer one (darknet's, kept)."""
    W, H = image_size
    if letterbox:
        (netw, neth), (new_w, new_h) = net_size, letterbox_size(image_size, net_size)
        offset = boxes.new_tensor([(netw - new_w) / 2 / netw, (neth - new_h) / 2 / neth] * 2)
        boxes = (boxes - offset) / boxes.new_tensor([new_w / netw, new_h / neth] * 2)
    return boxes * boxes.new_tensor([W, H, W, H])


# -----------------------------------------------------------------------------
# Augmentation: YOLOv1 §2.2 and darknet data.c, boxes moving with the pixels

def rand_scale(rng, s):
    """darknet utils.c rand_scale: a factor between 1 and s (rand_uniform swaps its bounds when s < 1, as
    yolo9000.cfg's .75 needs), inverted with probability 1/2."""
    scale = rng.uniform(min(1, s), max(1, s))
    return scale if rng.integers(2) else 1 / scale


def distort_hsv(image, hue, saturation, exposure):
    """darknet image.c distort_image on (3, H, W) RGB in [0, 1]: to HSV, s *= saturation, v *= exposure,
    h += hue (in turns, |hue| <= 1/6) wrapped into [0, 1], back to RGB, clamp to [0, 1]. Vectorized; equal to
    darknet's per-pixel rgb_to_hsv / hsv_to_rgb up to float rounding (the test has the loop)."""
    if abs(hue) > 1 / 6:
        raise ValueError(f"hue shift {hue} outside [-1/6, 1/6]")
    if hue != 0 and image.shape[1] > 128:    # bands of 128 rows: each band's temporaries stay in cache
        return torch.cat([distort_hsv(band, hue, saturation, exposure) for band in image.split(128, 1)], 1)
    r, g, b = image
    v = torch.maximum(torch.maximum(r, g), b)                                   # (H, W)
    if hue == 0:
        # Each channel is v·(1 - s·φ), φ depending on h only. Scaling s by a and v by e with h kept gives
        #   c' = e·v·(1 - a·s·φ) = e·(v + a·(c - v)):  no HSV round trip needed.
        return (image - v).mul_(saturation).add_(v).mul_(exposure).clamp_(0, 1)
    delta = v - torch.minimum(torch.minimum(r, g), b)                           # = v·s
    # rgb_to_hsv: 6h from the channel holding the maximum, tested in darknet's order r, g, b (6h in [-1, 5])
    safe = torch.where(delta > 0, delta, 1.0)
    h6 = torch.where(r == v, (g - b).div_(safe),
                     torch.where(g == v, (b - r).div_(safe).add_(2), (r - g).div_(safe).add_(4)))
    # hsv_to_rgb: channel n (5, 3, 1 for r, g, b) = v - v·s·T(n + 6h), T the trapezoid of period 6 (0 -> 1 on
    # [0, 1], 1 on [1, 3], 1 -> 0 on [3, 4], 0 on [4, 6]): darknet's six-case table as one formula.
    # n + 6h + 6·hue lies in [-1, 11], where the copies of T at 2 and 8 suffice: no wrap of h needed.
    k = h6.add_(6 * hue) + torch.tensor([5.0, 3.0, 1.0], dtype=image.dtype).view(3, 1, 1)    # (3, H, W)
    T = (k - 2).abs_().neg_().add_(2).clamp_(0, 1).add_(k.sub_(8).abs_().neg_().add_(2).clamp_(0, 1))
    # v' - v'·s'·T with v' = exposure·v and v'·s' = saturation·exposure·delta
    return T.mul_(delta.mul_(saturation * exposure)).neg_().add_(v.mul_(exposure)).clamp_(0, 1)


def plan_yolov1(size, rng, scale=0.2, translate=0.2, saturation=1.5, exposure=1.5, min_box=MIN_BOX_SIDE):
    """augment_yolov1's draws for an image of size (w, h): -> {"window": (left, top, right, bottom) integer
    pixels, "fill": 0.5 (gray outside the image), "flip", "hue", "saturation", "exposure", "distort": "sv" (no
    hue shift), "min_box": the smallest box side kept (fractions of the output)}."""
    (W, H), s = size, rng.uniform(1 - scale, 1 + scale)
    tx, ty = rng.uniform(-translate, translate, size=2) * (W, H)
    sw, sh = max(1, round(W / s)), max(1, round(H / s))
    left, top = round((W - sw) / 2 - tx), round((H - sh) / 2 - ty)
    return dict(window=(left, top, left + sw, top + sh), fill=0.5, flip=False, hue=0.0,
                saturation=rand_scale(rng, saturation), exposure=rand_scale(rng, exposure), distort="sv",
                min_box=min_box)


def _jittered_window(size, rng, jitter):
    """data.c load_data_region / load_data_detection (6103ecc4 to d2dece3d): each side of the crop moves on its
    own by int(rand_uniform(-d, d)), d = int(side·jitter) (C truncates toward zero, as int() does), so the aspect
    ratio changes. size: the image's (w, h) -> (left, top, right, bottom) in pixels, possibly beyond it."""
    ow, oh = size
    pleft, pright, ptop, pbot = (int(rng.uniform(-d, d)) for d in (int(ow * jitter),) * 2 + (int(oh * jitter),) * 2)
    return pleft, ptop, ow - pright, oh - pbot


def plan_darknet_2015(size, rng, jitter=0.2, saturation=1.5, exposure=1.5, min_box=MIN_BOX_SIDE):
    """augment_darknet_2015's draws, in darknet's order, for an image of size (w, h): the jittered window, zeros
    outside the image (fill 0), the mirror, then the [crop] layer's saturation and exposure ("distort" "sv": no
    hue). As plan_yolov1's."""
    window, flip = _jittered_window(size, rng, jitter), bool(rng.integers(2))
    return dict(window=window, fill=0.0, flip=flip, hue=0.0, saturation=rand_scale(rng, saturation),
                exposure=rand_scale(rng, exposure), distort="sv", min_box=min_box)


def plan_yolov2(size, rng, jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, min_box=MIN_BOX_SIDE):
    """augment_yolov2's draws, in darknet's order, for an image of size (w, h): as plan_yolov1's, "fill" None
    (edges repeated), "distort" "hsv" (a hue shift: one drawn exactly 0, odds 2^-53, would take distort_hsv's
    shortcut on the CPU and the round trip in distort_batch, equal up to float rounding); with hue=0 (no hue
    range: "darknet-2016") "sv", the shortcut on both."""
    window, flip = _jittered_window(size, rng, jitter), bool(rng.integers(2))
    return dict(window=window, fill=None, flip=flip, hue=rng.uniform(-hue, hue),
                saturation=rand_scale(rng, saturation), exposure=rand_scale(rng, exposure),
                distort="hsv" if hue else "sv", min_box=min_box)


def window_boxes(boxes, window, flip, min_box=MIN_BOX_SIDE):
    """boxes (M, 4) pixel xyxy -> normalized xyxy in the output of the crop window=(left, top, right, bottom),
    mirrored if flip, clipped to [0, 1], a box under min_box wide or high dropped (data.c correct_boxes,
    fill_truth_*: `if (w < min_box || h < min_box) continue`). -> (boxes (K, 4), kept indices (K,))"""
    left, top, right, bottom = window
    # correct_boxes: left·sx - dx = (left - pleft) / swidth, likewise for the other sides
    boxes = (boxes - boxes.new_tensor([left, top] * 2)) / boxes.new_tensor([right - left, bottom - top] * 2)
    if flip:
        boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
    boxes = boxes.clamp(0, 1)
    keep = torch.nonzero((boxes[:, 2:] - boxes[:, :2] >= min_box).all(1)).flatten()
    return boxes[keep], keep


def augment(image, boxes, plan, out_size):
    """A plan (plan_yolov1, plan_darknet_2015, plan_yolov2) carried out on one image (3, H, W) float: crop
    plan["window"] in integer pixels, reaching outside the image with the edge repeated (fill None: image.c
    crop_image's clamped coordinates) or the fill; resize_darknet to out_size; mirror if plan["flip"]; distort_hsv
    (none when plan["distort"] is None); boxes under plan["min_box"] dropped. boxes (M, 4) pixel xyxy.
    -> (image (3, h, w), boxes (K, 4) normalized xyxy, kept indices (K,))"""
    (_, H, W), (left, top, right, bottom) = image.shape, plan["window"]
    pad = (max(-left, 0), max(right - W, 0), max(-top, 0), max(bottom - H, 0))      # left, right, top, bottom
    if any(pad):
        mode = dict(mode="replicate") if plan["fill"] is None else dict(mode="constant", value=plan["fill"])
        image = F.pad(image[None], pad, **mode)[0]
    out = resize_darknet(image[:, top + pad[2]:bottom + pad[2], left + pad[0]:right + pad[0]], out_size)
    out = out.flip(-1) if plan["flip"] else out
    boxes, keep = window_boxes(boxes, plan["window"], plan["flip"], plan.get("min_box", MIN_BOX_SIDE))
    if plan["distort"] is None:
        return out, boxes, keep
    return distort_hsv(out, plan["hue"], plan["saturation"], plan["exposure"]), boxes, keep


def augment_yolov1(image, boxes, rng, out_size, **options):
    """YOLOv1 §2.2: random scaling and translation of up to 20% of the image size, exposure and saturation by up
    to a factor 1.5 in HSV (darknet's rand_scale). image: PIL or (3, H, W) float; boxes (M, 4) pixel xyxy;
    out_size (w, h). Returns (image (3, h, w), boxes (K, 4) normalized xyxy, kept indices (K,)).
    Our reading: the output shows a window of size/s, s in [0.8, 1.2], moved by up to 20% of the size; outside
    the image is gray 0.5. (The paper says no more. Darknet trained the 2015 files with augment_darknet_2015, the
    2016 ones with augment_yolov2's crop: yolov1.RECIPE's default; this is `--augment yolov1`.)"""
    image = image_to_tensor(image) if isinstance(image, Image.Image) else image
    return augment(image, boxes, plan_yolov1(image.shape[:0:-1], rng, **options), out_size)


def augment_darknet_2015(image, boxes, rng, out_size, **options):
    """darknet 6103ecc4, as YOLOv1's 2015 files were trained (yolo.cfg, yolo-small.cfg, yolo-tiny.cfg: jitter .2,
    [crop] saturation and exposure 1.5): data.c load_data_region crops a window whose sides move on their own
    (_jittered_window), zeros outside the image (image.c crop_image of 2015), resize_image to out_size, mirror with
    probability 1/2; then the [crop] layer's saturation and exposure, each rand_scale(1.5), no hue
    (crop_layer_kernels.cu levels_image_kernel, at training). Arguments and returns as augment_yolov1."""
    image = image_to_tensor(image) if isinstance(image, Image.Image) else image
    return augment(image, boxes, plan_darknet_2015(image.shape[:0:-1], rng, **options), out_size)


def augment_yolov2(image, boxes, rng, out_size, **options):
    """darknet data.c load_data_detection as released with YOLOv2 (and load_data_region from aebe9377): the crop of
    _jittered_window with the edges repeated outside the image (crop_image clamps), resize_image to out_size, mirror
    with probability 1/2, random_distort_image (hue shift in (-hue, hue) turns, rand_scale saturation and
    exposure). jitter is .3 in yolov2-voc.cfg and yolov2.cfg, .2 in yolo-voc.2.0.cfg, yolo.2.0.cfg, yolov1.cfg and
    the tiny cfgs. Arguments and returns as augment_yolov1."""
    image = image_to_tensor(image) if isinstance(image, Image.Image) else image
    return augment(image, boxes, plan_yolov2(image.shape[:0:-1], rng, **options), out_size)


def _crop_resize(image, boxes, window, out_size, flip=False, fill=None, min_box=MIN_BOX_SIDE):
    """augment() with a given window and no distortion: -> (image, boxes, kept)."""
    plan = dict(window=window, fill=fill, flip=flip, hue=0.0, saturation=1.0, exposure=1.0, distort=None,
                min_box=min_box)
    return augment(image, boxes, plan, out_size)


def place_image(image, size, offset, canvas):
    """darknet image.c place_image (60e952ba): image (C, H, W) resampled to size = (w, h) pixels by nearest
    neighbour (int rx = (x / w)·W, truncated, so bilinear_interpolate reads one pixel), written into canvas
    (C, h', w') at the integer offset (dx, dy); what falls outside the canvas is dropped (set_pixel)."""
    _, H, W = image.shape
    (w, h), (dx, dy) = size, offset
    rx = (torch.arange(w, dtype=torch.float32) / w * W).long()                        # (w,) int(), x >= 0
    ry = (torch.arange(h, dtype=torch.float32) / h * H).long()                        # (h,)
    out = image[:, ry.clamp(max=H - 1)][:, :, rx.clamp(max=W - 1)]                    # (C, h, w)
    _, ch, cw = canvas.shape
    left, top, right, bottom = max(dx, 0), max(dy, 0), min(dx + w, cw), min(dy + h, ch)
    if right > left and bottom > top:
        canvas[:, top:bottom, left:right] = out[:, top - dy:bottom - dy, left - dx:right - dx]
    return canvas


def augment_darknet_2017(image, boxes, rng, out_size, jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5,
                         min_box=MIN_BOX_SIDE):
    """darknet 60e952ba data.c load_data_detection (yolov2-voc.cfg, yolov2.cfg: jitter .3, hue .1, saturation and
    exposure 1.5): the aspect ratio jittered, new_ar = (W + U(-jitter·W, jitter·W)) / (H + U(-jitter·H, jitter·H));
    the image scaled to scale·(output side) on its long side, scale in U(.25, 2); placed at an offset in
    U(0, w - nw) x U(0, h - nh) (beyond the canvas when larger) on gray .5 (place_image); random_distort_image;
    mirror with probability 1/2; boxes as fill_truth_detection(flip, -dx/w, -dy/h, nw/w, nh/h).
    Arguments and returns as augment_yolov1."""
    image = image_to_tensor(image) if isinstance(image, Image.Image) else image
    (_, oh, ow), (w, h) = image.shape, out_size
    dw, dh = jitter * ow, jitter * oh
    new_ar = (ow + rng.uniform(-dw, dw)) / (oh + rng.uniform(-dh, dh))
    scale = rng.uniform(0.25, 2)
    nw, nh = (scale * h * new_ar, scale * h) if new_ar < 1 else (scale * w, scale * w / new_ar)
    # utils.c rand_uniform(min, max) swaps its bounds when max < min
    dx, dy = rng.uniform(min(0, w - nw), max(0, w - nw)), rng.uniform(min(0, h - nh), max(0, h - nh))
    canvas = torch.full((3, h, w), 0.5, dtype=image.dtype)
    out = place_image(image, (int(nw), int(nh)), (int(dx), int(dy)), canvas)        # the C call truncates to int
    out = distort_hsv(out, rng.uniform(-hue, hue), rand_scale(rng, saturation), rand_scale(rng, exposure))
    # correct_boxes: left·sx - dx, sx = nw / w and dx = -dx / w, on boxes normalized by the original image
    boxes = (boxes / boxes.new_tensor([ow, oh] * 2)) * boxes.new_tensor([nw / w, nh / h] * 2) \
        + boxes.new_tensor([dx / w, dy / h] * 2)
    if rng.integers(2):
        out = out.flip(-1)
        boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
    boxes = boxes.clamp(0, 1)
    keep = torch.nonzero((boxes[:, 2:] - boxes[:, :2] >= min_box).all(1)).flatten()
    return out, boxes[keep], keep


# darknet's augmentations by name, each with the darknet revision whose data.c it follows: that revision's smallest
# box kept (darknet.REVISIONS min_box) is bound to it below. train.py --augment picks one; each family's RECIPE names
# its presets' own.
AUGMENTATION_REVISIONS = {
    "darknet-2015": ("6103ecc4", augment_darknet_2015),        # YOLOv1's 2015 files; .01
    # yolov1.cfg and tiny-yolo.cfg of 2016: the clamped crop at jitter .2. aebe9377 has no random_distort_image
    # but [crop]'s saturation and exposure 1.5: hue 0. (6b38dcdc's tiny-yolo.cfg asks hue .1, saturation and
    # exposure .75: not reproduced, OUR CHOICE one recipe for the 2016 files); .01
    "darknet-2016": ("aebe9377", functools.partial(augment_yolov2, jitter=0.2, hue=0.0)),
    "yolov2-jitter.2": ("c6afc7ff", functools.partial(augment_yolov2, jitter=0.2)),   # the release's cfgs; .01
    # DEPARTURE: the release's crop with 60e952ba's cfg (jitter .3) and floor (.001); 60e952ba's own data path is
    # "darknet-2017"
    "yolov2": ("60e952ba", augment_yolov2),
    "darknet-2017": ("60e952ba", augment_darknet_2017),          # .001
    # darknet's yolo9000.cfg (d2dece3, 6731a355): jitter .2, hue .1, saturation and exposure .75 (rand_scale of .75
    # draws from [.75, 1] and inverts half the time: factors in [.75, 1.33]), on 6731a355's data path (place_image,
    # as 60e952ba); the file itself was trained at d2dece3, whose data.c still cropped as the release
    "yolo9000": ("60e952ba", functools.partial(augment_darknet_2017, jitter=0.2, saturation=0.75, exposure=0.75)),
}
AUGMENTATIONS = {"yolov1": augment_yolov1,
                 **{name: functools.partial(function, min_box=darknet.REVISIONS[revision]["min_box"])
                    for name, (revision, function) in AUGMENTATION_REVISIONS.items()}}
# The crop-window augmentations in two halves (DetectionDataset.finish_on_device: crop_on_worker, finish_batch),
# with the same draws and floors as AUGMENTATIONS. "darknet-2017" and "yolo9000" (place_image on a canvas of the
# output size) have no plan: the workers finish them per image (augment_darknet_2017) at the dataset's img_size.
PLANS = {"yolov1": plan_yolov1,
         **{name: functools.partial(plan, **AUGMENTATIONS[name].keywords)
            for name, plan in (("darknet-2015", plan_darknet_2015), ("darknet-2016", plan_yolov2),
                               ("yolov2-jitter.2", plan_yolov2), ("yolov2", plan_yolov2))}}


# -----------------------------------------------------------------------------
# Datasets: one record per image {path, image_id, size, boxes (M, 4) pixel xyxy, labels, difficult, iscrowd}

STREAM_LAYOUT, STREAM_RENDER, STREAM_AUGMENT = 1, 2, 3       # random stream tags, see DetectionDataset.rng
_reported_unreadable = set()


def _record(path, image_id, size, objects, with_area=False, **extra):
    """objects: [(box, (label, difficult, iscrowd[, area]))] -> one record, numpy arrays."""
    names = ("labels", "difficult", "iscrowd", "area")[:3 + with_area]
    columns = list(zip(*[f for _, f in objects])) or [()] * len(names)
    return {"path": str(path), "image_id": str(image_id), "size": tuple(int(s) for s in size),
            "boxes": np.array([b for b, _ in objects], dtype=np.float32).reshape(-1, 4), **extra,
            **{n: np.array(v, dtype=t) for n, v, t in zip(names, columns, (np.int64, bool, bool, np.float32))}}


class DetectionDataset(torch.utils.data.Dataset):
    """What the datasets share. Readers set class_names, call listed() and add() for each image and problem(kind,
    "file:line: message") for each problem in the annotations (kept in .problems, counted by kind in .counts).
    keep_difficult / keep_crowd: whether difficult / crowd objects appear in training targets; annotation()
    always has them, flagged, for evaluation."""

    annotated = True    # records read from annotation files, which check_annotations checks (ShapesDataset: False)

    def __init__(self, img_size=448, augment=None, seed=0, keep_difficult=False, keep_crowd=False):
        if augment not in (None, *AUGMENTATIONS):
            raise ValueError(f"augment must be None or one of {sorted(AUGMENTATIONS)}, got {augment!r}")
        self.img_size, self.augment, self.seed, self.epoch = img_size, augment, seed, 0
        # True (train.py's training set): dataset[i] is the uint8 image cropped as the augmentation draws it, its
        # target with the rest of the plan under "augment"; data.collate pads, finish_batch ends it on the device.
        self.finish_on_device = False
        self.keep_difficult, self.keep_crowd = keep_difficult, keep_crowd
        self.records, self.class_names, self.problems, self.counts, self.seen = [], [], [], Counter(), set()

    def rng(self, stream, *index):
        """Generator((seed, stream, *index)): STREAM_LAYOUT, _RENDER with (image,), STREAM_AUGMENT with (epoch, image).
        The tag keeps streams apart (without it, augmenting image 1 in epoch e drew what laying out image e drew)."""
        return np.random.default_rng((self.seed, stream, *index))

    def problem(self, kind, message):
        self.problems.append(message)
        self.counts[kind] += 1

    def listed(self, where, key=None, files=()):
        """Whether the image listed at `where` can be read: key (its id) not listed before, files [(kind, path)]
        present. Else the problem is reported and the image is to be skipped."""
        if key is not None and key in self.seen:
            self.problem("duplicate image ids", f"{where}: duplicate image id {key}, skipped")
            return False
        self.seen.add(key)
        for kind, file in [(kind, file) for kind, file in files if not os.path.isfile(file)][:1]:
            self.problem(f"{kind}s missing", f"{where}: {kind} {file} listed but missing")
            return False
        return True

    def add(self, path, image_id, size, objects, with_area=False, **extra):
        """Keep an image. objects: [(where, [x1, y1, x2, y2] pixels, (label, difficult, iscrowd[, area]))]. Inverted
        or zero-area boxes are dropped, boxes reaching outside the image clipped (or dropped), each reported."""
        (W, H), kept = size, []
        for where, (x1, y1, x2, y2), fields in objects:
            c = (min(max(x1, 0), W), min(max(y1, 0), H), min(max(x2, 0), W), min(max(y2, 0), H))
            box = f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
            if not (x2 > x1 and y2 > y1):                    # also catches NaN
                self.problem("boxes dropped (inverted or zero-area)", f"{where}: inverted or zero-area {box}, dropped")
            elif not (c[2] > c[0] and c[3] > c[1]):
                self.problem("boxes dropped (outside the image)", f"{where}: {box} outside the {W}x{H} image, dropped")
            else:
                if c != (x1, y1, x2, y2):
                    self.problem("boxes clipped", f"{where}: {box} outside the {W}x{H} image, clipped")
                kept.append((c, fields))
        self.records.append(_record(path, image_id, size, kept, with_area, **extra))

    def set_epoch(self, epoch):
        """The augmentation of image i in epoch e depends on (seed, e, i) only: call before each epoch (a run
        resumed at an epoch then sees the images it would have seen)."""
        self.epoch = epoch

    def __len__(self):
        return len(self.records)

    def record(self, i):
        return self.records[i]

    def annotation(self, i):
        """Ground truth of image i: all objects, boxes in pixels of the original image (0-based xyxy)."""
        rec = self.record(i)
        return {**{k: torch.from_numpy(rec[k]) for k in ("boxes", "labels", "difficult", "iscrowd", "area")
                   if k in rec}, "size": rec["size"], "path": rec["path"], "image_id": rec["image_id"]}

    def load(self, i):                      # EXIF rotation only when it makes the annotation's size
        return load_image(self.record(i)["path"], exif=False, expected_size=self.record(i)["size"])

    def __getitem__(self, i):
        # An image that fails to decode is reported once (per process) and replaced by the next readable one.
        for j in map(int, (np.arange(len(self)) + i) % len(self)):
            try:
                return self._sample(image_to_uint8(self.load(j)), j)
            except (ImageError, OSError) as e:
                if self.record(j)["path"] not in _reported_unreadable:
                    _reported_unreadable.add(self.record(j)["path"])
                    print(f"warning: skipping unreadable image: {e}", file=sys.stderr)
        raise ImageError(f"no readable image in this dataset of {len(self)}")

    def _sample(self, image, i, rec=None):
        """image (3, H, W) uint8 RGB of record i (rec: record(i), when the caller has it) -> dataset[i]."""
        rec = self.record(i) if rec is None else rec
        keep = (self.keep_difficult | ~rec["difficult"]) & (self.keep_crowd | ~rec["iscrowd"])
        (H, W), (aw, ah) = image.shape[1:], rec["size"]
        # normalize by the annotation's size: a file resized since then keeps its boxes right
        boxes = torch.from_numpy(rec["boxes"][keep]) / torch.tensor([aw, ah, aw, ah], dtype=torch.float32)
        out_size, plan = (self.img_size, self.img_size), {}
        # the worker's half (uint8); finish_batch does the rest on the device. An augmentation without a plan
        # (place_image's) is finished here, per image, as without finish_on_device.
        if self.finish_on_device and (self.augment is None or self.augment in PLANS):
            if self.augment is None:
                boxes, index, plan = boxes.clamp(0, 1), torch.arange(len(boxes)), {"augment": unchanged((W, H))}
            else:
                image, boxes, index, device_plan = crop_on_worker(image, boxes * torch.tensor([W, H, W, H]), PLANS[
                    self.augment]((W, H), self.rng(STREAM_AUGMENT, self.epoch, i)))
                plan = {"augment": device_plan}
        else:
            image = image.float().div_(255)                 # = image_to_tensor, bit for bit
            if self.augment is None:
                image, boxes, index = resize_darknet(image, out_size), boxes.clamp(0, 1), torch.arange(len(boxes))
            else:
                image, boxes, index = AUGMENTATIONS[self.augment](image, boxes * torch.tensor([W, H, W, H]),
                                                                  self.rng(STREAM_AUGMENT, self.epoch, i), out_size)
        target = {k: torch.from_numpy(rec[k][keep])[index] for k in ("labels", "difficult", "iscrowd")}
        return image, {"boxes": boxes, **target, **{k: rec[k] for k in ("image_id", "path", "size")}, **plan}


def collate(batch, max_objects=None, min_size=0.0):
    """The loader's collate_fn, run in its workers: [(image, target)] -> (images, targets), every tensor batch-level.
    image: (3, H, W) float, finished (stacked to (N, 3, H, W)), or (3, h, w) uint8 with "augment" in its target
    (DetectionDataset.finish_on_device: padded to the batch's largest, (N, 3, h_max, w_max), the rest of the work
    left to finish_batch on the device). targets: one dict; with boxes, metrics.batch_targets' (N, T) tensors
    (max_objects, min_size: the family's, yolov2.TARGETS: darknet's first 30 boxes of size >= .001), and
    "augment" (N,) tensors; without, 0-dim tensors stacked and the rest listed (a classifier's "label", "path")."""
    images, targets = zip(*batch)
    if images[0].dtype == torch.uint8:
        h, w = max(i.shape[1] for i in images), max(i.shape[2] for i in images)
        padded = torch.zeros(len(images), 3, h, w, dtype=torch.uint8)
        for n, image in enumerate(images):
            padded[n, :, :image.shape[1], :image.shape[2]] = image
        images = padded
    else:
        images = torch.stack(images)
    plans = [t["augment"] for t in targets if "augment" in t]
    targets = [{k: v for k, v in t.items() if k != "augment"} for t in targets]
    batched = batch_targets(targets, max_objects, min_size)
    if plans:                       # (N, ...) float64 / int64 / bool tensors; "distort", one mode per batch
        batched["augment"] = {k: torch.stack([torch.as_tensor(p[k], dtype=torch.float64 if isinstance(p[k], float)
                                                               else None) for p in plans])
                              for k in plans[0] if k != "distort"}
        distort = {p["distort"] for p in plans}
        if len(distort) > 1:
            raise ValueError(f"collate: one batch mixes the distortions {sorted(map(str, distort))}")
        batched["augment"]["distort"] = distort.pop()
        # one Python bool for the batch, read here on the host: every image taken whole at the padded size,
        # unflipped (finish_batch then has nothing to place, resize or mirror: the synthetic shapes at their size)
        w, h = images.shape[-1], images.shape[-2]
        batched["augment"]["whole"] = all(p["size"].tolist() == [w, h] and p["inside"].tolist() == [0, 0, w, h]
                                          and not p["flip"] for p in plans)
    return images, batched


# -----------------------------------------------------------------------------
# Darknet's augmentation in two halves: the worker draws and crops (uint8); the device resizes, mirrors and
# distorts the whole batch. Equal to augment_yolov1 / augment_yolov2 on one image (tests/test_data.py).

def unchanged(size):
    """The device's plan for an image of size (w, h) taken whole: resize_darknet alone (no augmentation)."""
    return dict(size=torch.tensor(size), inside=torch.tensor([0, 0, *size]), fill=float("nan"), flip=False, hue=0.0,
                saturation=1.0, exposure=1.0, distort=None)


def crop_on_worker(image, boxes, plan):
    """The worker's half: image (3, H, W) uint8, boxes (M, 4) pixel xyxy, a plan (plan_yolov2, plan_yolov1).
    -> (crop (3, h, w) uint8: the window, edges repeated as image.c crop_image's clamped coordinates; boxes and
    kept indices as window_boxes(); the device's half of the plan, values that collate stacks)."""
    _, H, W = image.shape
    left, top, right, bottom = plan["window"]
    rows = torch.arange(top, bottom).clamp(0, H - 1)
    cols = torch.arange(left, right).clamp(0, W - 1)
    crop = image.index_select(1, rows).index_select(2, cols)                    # (3, bottom - top, right - left)
    boxes, keep = window_boxes(boxes, plan["window"], plan["flip"], plan.get("min_box", MIN_BOX_SIDE))
    # the pixels of the crop that lie inside the image (the rest takes plan["fill"], when there is one)
    inside = torch.tensor([max(-left, 0), max(-top, 0), min(W, right) - left, min(H, bottom) - top])
    return crop, boxes, keep, dict(size=torch.tensor([right - left, bottom - top]), inside=inside,
                                   fill=float("nan") if plan["fill"] is None else plan["fill"], flip=plan["flip"],
                                   hue=plan["hue"], saturation=plan["saturation"], exposure=plan["exposure"],
                                   distort=plan["distort"])


def _taps_batch(n_in, n_out):
    """_taps for each image of a batch: n_in (N,) source sizes -> index (N, n_out), weight (N, n_out), in
    float32 as C computes s = i·(float)(n_in-1)/(n_out-1)."""
    scale = (n_in - 1).float() / (n_out - 1) if n_out > 1 else torch.zeros(len(n_in), device=n_in.device)
    s = torch.arange(n_out, dtype=torch.float32, device=n_in.device) * scale[:, None]      # (N, n_out)
    index = s.long()
    return index, s - index.float()


def resize_batch(images, sizes, size):
    """resize_darknet on each image of a padded batch: images (N, C, H, W) float, image n in its top-left
    sizes[n] = (w_n, h_n) pixels; size (w, h) -> (N, C, h, w). The same float32 arithmetic, tap by tap."""
    (N, C, H, W), (w, h) = images.shape, size
    widths, heights = sizes[:, 0], sizes[:, 1]
    # pass 1, columns: part = (1 - dx)·im[.., ix] + dx·im[.., ix+1]; the last column copied
    ix, dx = _taps_batch(widths, w)
    ix = torch.cat([ix[:, :-1], (widths - 1)[:, None]], 1)
    dx = torch.cat([dx[:, :-1], torch.zeros_like(dx[:, :1])], 1)
    second = torch.minimum(ix + 1, (widths - 1)[:, None])
    cols = [i.view(N, 1, 1, w).expand(N, C, H, w) for i in (ix, second)]
    dx = dx.view(N, 1, 1, w).to(images.dtype)
    part = images.gather(3, cols[0]).mul_(1 - dx).add_(images.gather(3, cols[1]).mul_(dx))   # (N, C, H, w)
    # pass 2, rows: out = (1 - dy)·part[iy] + dy·part[iy+1]; on the last row the second tap is skipped
    iy, dy = _taps_batch(heights, h)
    dy_next = torch.cat([dy[:, :-1], torch.zeros_like(dy[:, :1])], 1)
    second = torch.minimum(iy + 1, (heights - 1)[:, None])
    rows = [i.view(N, 1, h, 1).expand(N, C, h, w) for i in (iy, second)]
    dy, dy_next = (d.view(N, 1, h, 1).to(images.dtype) for d in (dy, dy_next))
    return part.gather(2, rows[0]).mul_(1 - dy).add_(part.gather(2, rows[1]).mul_(dy_next))


def distort_batch(images, hue, saturation, exposure, with_hue=True):
    """distort_hsv on each image of a batch (N, 3, H, W), with (N,) float64 hue (turns), saturation,
    exposure: the HSV round trip (with_hue), or its shortcut for a hue shift of 0, e·(v + a·(c - v)) (yolov1's
    augmentation), as distort_hsv takes one or the other."""
    N = len(images)
    # float64 draws rounded to float32 once, as distort_hsv's Python floats are where they meet a float32 tensor
    a, e = (p.float().view(N, 1, 1, 1) for p in (saturation, exposure))
    r, g, b = images.unbind(1)                                                  # each (N, H, W)
    v = torch.maximum(torch.maximum(r, g), b).unsqueeze(1)                      # (N, 1, H, W)
    if not with_hue:
        return (images - v).mul_(a).add_(v).mul_(e).clamp_(0, 1)
    delta = v - torch.minimum(torch.minimum(r, g), b).unsqueeze(1)
    safe = torch.where(delta > 0, delta, 1.0)
    r, g, b, v1 = r.unsqueeze(1), g.unsqueeze(1), b.unsqueeze(1), v
    h6 = torch.where(r == v1, (g - b).div_(safe),
                     torch.where(g == v1, (b - r).div_(safe).add_(2), (r - g).div_(safe).add_(4)))
    channel = torch.arange(5.0, 0.0, -2.0, device=images.device).view(1, 3, 1, 1)      # 5, 3, 1 for r, g, b
    k = h6.add_((6 * hue).float().view(N, 1, 1, 1)) + channel                                # (N, 3, H, W)
    T = (k - 2).abs_().neg_().add_(2).clamp_(0, 1).add_(k.sub_(8).abs_().neg_().add_(2).clamp_(0, 1))
    both = (saturation * exposure).float().view(N, 1, 1, 1)
    return T.mul_(delta.mul_(both)).neg_().add_(v.mul(e)).clamp_(0, 1)


def finish_batch(images, plan, size):
    """The device's half of the augmentation, on the whole batch: images (N, 3, h_max, w_max) uint8 (collate's
    padding), plan: collate's "augment" ((N, ...) tensors on the same device, "distort" one string); size (w, h).
    -> (N, 3, h, w) float32 in [0, 1]: / 255 (image_to_tensor), gray outside the image where the plan
    fills, resize_darknet of each crop, mirrored where flip, distort_hsv ("hsv": with a hue shift, yolov2's; "sv":
    without, yolov1's; None: no augmentation). Equal to the per-image functions on the CPU, element for element.
    plan["whole"] (collate's): every image whole and unflipped; at the output size resize_darknet is then the
    identity, bit for bit (taps i·1.0 with weights 1 and 0), and is skipped: 12 ms of a 90 ms step of the
    synthetic default on 2 cores."""
    x = images.float().div_(255)
    N, _, H, W = x.shape
    if not (plan.get("whole") and (W, H) == tuple(size)):
        left, top, right, bottom = plan["inside"].unbind(1)                         # each (N,)
        cols, rows = torch.arange(W, device=x.device), torch.arange(H, device=x.device)
        inside = ((cols >= left[:, None]) & (cols < right[:, None]))[:, None, None, :] & \
                 ((rows >= top[:, None]) & (rows < bottom[:, None]))[:, None, :, None]   # (N, 1, H, W)
        fill = plan["fill"].to(x.dtype).view(N, 1, 1, 1)
        x = torch.where(inside | fill.isnan(), x, fill)
        x = resize_batch(x, plan["size"], size)
        x = torch.where(plan["flip"].view(N, 1, 1, 1), x.flip(-1), x)
    if plan["distort"] is None:
        return x
    return distort_batch(x, plan["hue"], plan["saturation"], plan["exposure"], with_hue=plan["distort"] == "hsv")


# -----------------------------------------------------------------------------
# The synthetic default: coloured shapes on textured backgrounds

class ShapesDataset(DetectionDataset):
    """Deterministic synthetic detection set: image i depends on (seed, i) only, drawn at img_size.
    1-4 objects of 3 classes (circle, rectangle, triangle), longer side 10%-50% of the image, aspect 0.6-1.6,
    colours at RGB distance >= 0.5 (of 1.73) from the background's mean, on a gradient, stripes or blotches.
    Occlusion rule: a new object, drawn on top, may cover at most max_cover = 30% of the box of each earlier object
    (else it is placed again, up to 20 tries, then left out), so every object stays mostly visible.
    A DataLoader fetches a batch with __getitems__, which draws all its images at once with tensor operations
    (render): the synthetic default's batch of 32 at 112 px, collated and finished, costs 12% of its float32
    training step and 23% of its bfloat16 one on 2 cores, 2.3-3x less than Pillow's drawing image by image did
    (bench/bench_synthetic.py; README, Performance)."""

    # Its records are drawn from (seed, i), not read from files: check_annotations has nothing to check, and counting
    # their objects would lay out every image first (4 s for the synthetic default's 51,200, 2 cores).
    annotated = False

    def __init__(self, num_images=1000, img_size=448, seed=0, augment=None, max_cover=0.3):
        super().__init__(img_size, augment, seed, keep_difficult=True, keep_crowd=True)
        self.num_images, self.max_cover, self.class_names = num_images, max_cover, list(SHAPE_CLASSES)

    def __len__(self):
        return self.num_images

    def _layout(self, i):
        rng, S = self.rng(STREAM_LAYOUT, i), self.img_size
        background = (int(rng.integers(3)), rng.uniform(0, 1, 3), rng.uniform(-0.35, 0.35, 3), rng.uniform(0, 1, 2))
        mean, shapes = np.clip(background[1] + background[2] / 2, 0, 1), []
        for _ in range(int(rng.integers(1, 5))):
            for _ in range(20):
                side, aspect = rng.uniform(0.1, 0.5) * S, rng.uniform(0.6, 1.6)      # aspect = width / height
                w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
                w, h = max(int(w), 4), max(int(h), 4)
                x0, y0 = int(rng.integers(0, S - w + 1)), int(rng.integers(0, S - h + 1))
                box = [x0, y0, x0 + w, y0 + h]
                if all(_covered(earlier, box) <= self.max_cover for earlier, *_ in shapes):
                    break
            else:
                continue
            colour = rng.uniform(0, 1, 3)
            while np.linalg.norm(colour - mean) < 0.5:
                colour = rng.uniform(0, 1, 3)
            shapes.append((box, int(rng.integers(3)), colour, int(rng.integers(4))))
        return background, shapes

    def record(self, i, layout=None):
        if not 0 <= i < self.num_images:
            raise IndexError(i)
        shapes = (self._layout(i) if layout is None else layout)[1]
        objects = [(box, (label, False, False)) for box, label, *_ in shapes]
        return _record(f"shapes://{self.seed}/{i}", f"{i:06d}", (self.img_size, self.img_size), objects)

    def render(self, indices, layouts=None):
        """Images `indices`, drawn together -> (N, 3, S, S) uint8 RGB. Image i depends on (seed, i) only, never on
        the batch it is drawn in: its random numbers come from its own streams (rng), in the order they always had."""
        layouts = [self._layout(i) for i in indices] if layouts is None else layouts
        N, S = len(layouts), self.img_size
        # Background: colour c1 + weight·dc, weight (N, S, S) = gradient, stripes or blotches along a random
        # direction, plus a fine grain everywhere
        kind = torch.tensor([b[0] for b, _ in layouts])                                        # (N,)
        c1, dc, p = (torch.from_numpy(np.array([b[k] for b, _ in layouts], np.float32)) for k in (1, 2, 3))
        rngs = [self.rng(STREAM_RENDER, i) for i in indices]
        noise = [rng.random((8, 8), np.float32) if k == 2 else None for rng, k in zip(rngs, kind.tolist())]
        grain = torch.from_numpy(np.stack([rng.random((S, S), np.float32) for rng in rngs]))  # (N, S, S)
        t = torch.arange(S, dtype=torch.float32) / S
        angle = (p[:, 0] * np.pi).view(N, 1, 1)
        along = torch.cos(angle) * t.view(1, 1, S) + torch.sin(angle) * t.view(1, S, 1)        # (N, S, S)
        weight = along / 2 + 0.5                                 # kind 0: linear gradient
        if (stripes := kind == 1).any():                         # kind 1: stripes, period 4%-20% of the image
            period = (0.04 + 0.16 * p[stripes, 1]).view(-1, 1, 1)
            weight[stripes] = (torch.sin(along[stripes] * (2 * np.pi) / period) > 0).float()
        if (blotches := kind == 2).any():                        # kind 2: an 8x8 noise grid upsampled
            grids = torch.from_numpy(np.stack([g for g in noise if g is not None]))            # (n, 8, 8)
            weight[blotches] = resize_darknet(grids, (S, S))
        weight = weight.add_(grain, alpha=0.15).unsqueeze(1)                                   # (N, 1, S, S)
        # 255·(c1 + weight·dc), truncated to 8 bits as the Pillow image it was drawn into
        image = torch.addcmul((c1 * 255).view(N, 3, 1, 1), weight, (dc * 255).view(N, 3, 1, 1))  # (N, 3, S, S)
        image = image.clamp_(0, 255).to(torch.uint8)
        # Shapes: each one's mask from its coordinates, per row the span of columns it covers; later over earlier
        first, last, colours = _shape_spans(layouts, S)          # (N, K, S) int16 each; (N, K, 3) uint8
        column = torch.arange(S, dtype=torch.int16)
        for k in range(first.shape[1]):
            mask = (column >= first[:, k, :, None]) & (column <= last[:, k, :, None])   # (N, S, S) bool
            # image + mask·(colour - image) in uint8 arithmetic (mod 256): the colour where mask, else the image.
            # (torch.where and masked writes take ~20x longer on CPU: they are not vectorized)
            mask = mask.view(torch.uint8).unsqueeze(1)                                   # (N, 1, S, S) 0 or 1
            image += mask * (colours[:, k].view(N, 3, 1, 1) - image)
        return image

    def load(self, i):
        if not 0 <= i < self.num_images:
            raise IndexError(i)
        return Image.fromarray(self.render([i])[0].permute(1, 2, 0).numpy())                 # (S, S, 3)

    @property
    def draws_batches(self):
        """Whether a batch is drawn at once by render's tensor operations, on torch's threads (train.py then loads
        it in the training process on the CPU: devices.default_workers); not for a subclass that draws otherwise
        (yolo9000.py's WordTree shapes, with Pillow, image by image)."""
        return type(self).load is ShapesDataset.load

    def __getitems__(self, indices):
        """The DataLoader's fetch of a batch: its images drawn at once (render), then each as dataset[i] is."""
        if not self.draws_batches:
            return [self[i] for i in indices]
        layouts = [self._layout(i) for i in indices]
        records = [self.record(i, layout) for i, layout in zip(indices, layouts)]     # IndexError before drawing
        images = self.render(indices, layouts)                          # (N, 3, S, S) uint8 = load(i)'s pixels
        return [self._sample(image, i, rec) for i, image, rec in zip(indices, images, records)]


def _shape_spans(layouts, S):
    """The shapes of a batch as row spans: first[n, k, y], last[n, k, y] (int16, N x K x S): the columns of row y
    that shape k of image n covers (first > last where none), in pixel-centre coordinates (pixel x at x). Box
    [x0, y0, x1, y1) covers pixels x0..x1-1, y0..y1-1. colours (N, K, 3) uint8.
    A rectangle covers its box, a circle (an ellipse filling the box) the pixel centres inside it, a triangle
    (apex up, right, down or left, its base a side of the box) the centres within half a pixel of it across.
    OUR CHOICE, for speed: not Pillow's drawing (ImageDraw) that drew them before, whose ellipse and polygon
    rasterizers pick the edge pixels otherwise: over 300 random shapes at 112 px, 0.6% of a circle's pixels and
    1.5% of a triangle's differ from Pillow's (rectangles: none), the class, size and box rules being the same."""
    shapes = [(n, k, box, label, colour, o) for n, (_, s) in enumerate(layouts)
              for k, (box, label, colour, o) in enumerate(s)]
    N, K = len(layouts), max(len(s) for _, s in layouts)
    n, k = (np.array([s[j] for s in shapes]) for j in (0, 1))
    (x0, y0, x1, y1), label, o = np.array([s[2] for s in shapes], np.float64).T, np.array([s[3] for s in shapes]), \
        np.array([s[5] for s in shapes])
    xa, xb, ya, yb = (v[:, None] for v in (x0, x1 - 1, y0, y1 - 1))      # (M, 1): first and last pixel, inclusive
    xm, ym, W, H = (xa + xb) / 2, (ya + yb) / 2, xb - xa, yb - ya
    r = np.arange(S, dtype=np.float64)[None]                              # (1, S): row centres
    # circle: (x - xm)² / (w/2)² + (y - ym)² / (h/2)² <= 1 with w = x1 - x0, h = y1 - y0
    d = (r - ym) / ((yb - ya + 1) / 2)
    half = (xb - xa + 1) / 2 * np.sqrt(np.clip(1 - d ** 2, 0, None))
    lo, hi = np.where(label[:, None] == 0, xm - half, xa), np.where(label[:, None] == 0, xm + half, xb)
    inside = (r >= ya) & (r <= yb) & ((label[:, None] != 0) | (np.abs(d) <= 1))
    # triangle: apex up (o = 0) or down (2) at the box's middle column; right (1) or left (3) at its middle row
    tri, o = label[:, None] == 2, o[:, None]
    across = np.where(o == 0, (r - ya) / H, (yb - r) / H) * W / 2 + 0.5                  # half-width, o = 0 or 2
    along = (1 - np.abs(r - ym) / (H / 2)) * W + 0.5                                     # length, o = 1 or 3
    lo = np.where(tri, np.select([o % 2 == 0, o == 1], [xm - across, xa], xb - along), lo)
    hi = np.where(tri, np.select([o % 2 == 0, o == 1], [xm + across, xa + along], xb), hi)
    lo, hi = np.maximum(lo, xa), np.minimum(hi, xb)
    first, last = np.full((N, K, S), S, np.int16), np.full((N, K, S), -1, np.int16)
    first[n, k] = np.where(inside, np.ceil(lo - 1e-6), S)
    last[n, k] = np.where(inside, np.floor(hi + 1e-6), -1)
    colours = np.zeros((N, K, 3), np.uint8)
    colours[n, k] = (np.array([s[4] for s in shapes]) * 255).astype(np.uint8)         # int(c · 255), as before
    return torch.from_numpy(first), torch.from_numpy(last), torch.from_numpy(colours)


def _covered(earlier, new):
    """Fraction of box `earlier` covered by box `new` (both xyxy)."""
    iw = min(earlier[2], new[2]) - max(earlier[0], new[0])
    ih = min(earlier[3], new[3]) - max(earlier[1], new[1])
    return max(iw, 0) * max(ih, 0) / ((earlier[2] - earlier[0]) * (earlier[3] - earlier[1]))


SHAPES_VAL_SEED = 10_000    # our choice: a run's held-out synthetic images are drawn with its seed + this


def shapes_split(split, num_images, img_size, seed=0, augment=None):
    """A run's synthetic sets: "train" drawn with seed, "val" (held out) with seed + SHAPES_VAL_SEED. train.py
    validates on "val"; detect.py --data shapes evaluates it again from a checkpoint's config."""
    if split not in ("train", "val"):
        raise ValueError(f"shapes split must be 'train' or 'val', got {split!r}")
    return ShapesDataset(num_images, img_size, seed + SHAPES_VAL_SEED * (split == "val"), augment)


# -----------------------------------------------------------------------------
# Pascal VOC: VOCdevkit/VOC<year>/{Annotations, JPEGImages, ImageSets/Main/<split>.txt}

def _listdir(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _find_devkit(root):
    for d in (root, os.path.join(root, "VOCdevkit")):
        if any(n.startswith("VOC") and os.path.isdir(os.path.join(d, n, "Annotations")) for n in _listdir(d)):
            return d
    if os.path.isdir(os.path.join(root, "Annotations")):     # root is VOCdevkit/VOC2007 itself
        return os.path.dirname(os.path.abspath(root))
    raise FileNotFoundError(f"{root}: no VOCdevkit/VOC<year>/Annotations under it")


def voc_splits(root, split, years=None):
    """[(year, split)] for each VOC<year> (of years, if given) under root that has ImageSets/Main/<split>.txt;
    [] when root is not a VOCdevkit tree."""
    try:
        devkit = _find_devkit(str(root))
    except FileNotFoundError:
        return []
    return [(n[3:], split) for n in _listdir(devkit) if n.startswith("VOC") and (years is None or n[3:] in years)
            and os.path.isfile(os.path.join(devkit, n, "ImageSets", "Main", split + ".txt"))]


def parse_voc_xml(path, class_names, problem):
    """One VOC XML -> (size, [(where, box, fields)]), or None when unusable; problem(kind, message) hears of
    every problem as "path:line: ...". XML coordinates are 1-based: we subtract 1 from all four (= darknet
    voc_label.py: centre (xmin + xmax)/2 - 1, width xmax - xmin)."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        root = ET.fromstring(text)
    except ET.ParseError as e:
        return problem("malformed annotation files", f"{path}:{e.position[0]}: malformed XML ({e})")
    lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"<object\b", text)]
    try:
        size = tuple(int(float(root.find("size").find(k).text)) for k in ("width", "height"))
    except (AttributeError, TypeError, ValueError):
        size = (0, 0)
    if min(size) <= 0:
        line = text.count("\n", 0, max(text.find("<size"), 0)) + 1
        return problem("missing fields", f"{path}:{line}: missing or invalid <size><width>/<height>")
    objects = []
    for k, obj in enumerate(root.findall("object")):
        where, name = f"{path}:{lines[k] if k < len(lines) else '?'}", (obj.findtext("name") or "").strip()
        try:
            box = [float(obj.find("bndbox").find(k).text) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError):
            box = None
        if name not in class_names:
            problem("objects with unknown class", f"{where}: unknown class name {name!r}, object dropped")
        elif box is None:
            problem("missing fields", f"{where}: missing or invalid <bndbox> (xmin, ymin, xmax, ymax), dropped")
        else:
            difficult = (obj.findtext("difficult") or "0").strip() == "1"
            objects.append((where, box, (class_names.index(name), difficult, False)))
    return size, objects


class VOCDataset(DetectionDataset):
    """Pascal VOC. root: VOCdevkit (or its parent, or VOCdevkit/VOC2007). Default splits: the 07+12 trainval
    union the papers train on; splits=[("2007", "test")] for evaluation. Difficult flags kept; training targets
    leave difficult objects out (keep_difficult=False) as darknet's voc_label.py does; annotation() keeps them."""

    def __init__(self, root, splits=(("2007", "trainval"), ("2012", "trainval")), img_size=448, augment=None,
                 seed=0, keep_difficult=False, class_names=VOC_CLASSES):
        super().__init__(img_size, augment, seed, keep_difficult)
        self.class_names, devkit = list(class_names), _find_devkit(str(root))
        for year, split in splits:
            base = os.path.join(devkit, f"VOC{year}")
            list_file = os.path.join(base, "ImageSets", "Main", f"{split}.txt")
            if not os.path.isfile(list_file):
                self.problem("split lists missing", f"{list_file}: split list missing")
                continue
            with open(list_file) as f:
                listed = [(f"{list_file}:{n}", line.split()[0]) for n, line in enumerate(f, 1) if line.split()]
            for where, image_id in listed:
                xml = os.path.join(base, "Annotations", image_id + ".xml")
                image = os.path.join(base, "JPEGImages", image_id + ".jpg")
                if self.listed(where, image_id, [("annotation", xml), ("image", image)]):
                    if parsed := parse_voc_xml(xml, self.class_names, self.problem):
                        self.add(image, image_id, *parsed, annotation_file=xml)


# -----------------------------------------------------------------------------
# COCO instances json


class COCODataset(DetectionDataset):
    """COCO instances json: category ids -> labels 0..K-1 in sorted id order (class_names from "categories";
    category_ids[label] is the id back, for results files), bbox [x, y, w, h] -> xyxy, crowd flags kept (out of
    training targets unless keep_crowd), images without objects kept, "area" in annotation(). Problems name the
    json and the entry's index and id (COCO files are one line long: line numbers would say nothing)."""

    def __init__(self, annotation_json, image_dir, img_size=448, augment=None, seed=0, keep_crowd=False):
        super().__init__(img_size, augment, seed, keep_difficult=True, keep_crowd=keep_crowd)
        path, self.category_ids, by_image = str(annotation_json), [], {}
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            images, annotations = data["images"], data["annotations"]
            categories = sorted(data["categories"], key=lambda c: c["id"])
        except json.JSONDecodeError as e:
            return self.problem("malformed annotation files", f"{path}:{e.lineno}: malformed json ({e.msg}, "
                                f"column {e.colno})")
        except (KeyError, TypeError) as e:
            return self.problem("missing fields", f"{path}:1: not a COCO instances file (missing {e})")
        self.class_names, self.category_ids = [c["name"] for c in categories], [c["id"] for c in categories]
        label_of = {category: k for k, category in enumerate(self.category_ids)}
        for k, img in enumerate(images):
            try:
                image_id, file_name, size = img["id"], img["file_name"], (int(img["width"]), int(img["height"]))
            except (KeyError, TypeError, ValueError) as e:
                self.problem("missing fields", f"{path}: images[{k}]: missing or invalid field {e}, skipped")
                continue
            if self.listed(f"{path}: images[{k}]", image_id):
                by_image[image_id] = (os.path.join(str(image_dir), file_name), size, [])
        for k, ann in enumerate(annotations):
            where = f"{path}: annotations[{k}] (id {ann.get('id') if isinstance(ann, dict) else '?'})"
            try:
                image_id, (x, y, w, h), category = ann["image_id"], map(float, ann["bbox"]), ann["category_id"]
            except (KeyError, TypeError, ValueError) as e:
                self.problem("missing fields", f"{where}: missing or invalid field ({e}), dropped")
                continue
            if image_id not in by_image:
                self.problem("missing fields", f"{where}: unknown image id {image_id}, dropped")
            elif category not in label_of:
                self.problem("objects with unknown class", f"{where}: unknown category id {category}, dropped")
            else:
                fields = (label_of[category], False, bool(ann.get("iscrowd", 0)), float(ann.get("area", w * h)))
                by_image[image_id][2].append((where, (x, y, x + w, y + h), fields))
        for image_id, (file, size, objects) in by_image.items():
            if self.listed(f"{path}: image id {image_id}", None, [("image", file)]):
                self.add(file, image_id, size, objects, with_area=True)


# -----------------------------------------------------------------------------
# Which format is at a path, and train.py's start-up check (python -m tools.datasets --check decodes images too)

class UnknownFormat(FileNotFoundError):
    """open_dataset's path exists but is neither a VOCdevkit tree nor a COCO json."""


# What --data may point at, for the message of a folder that holds none of them (tools/darknet_txt.py says it)
LAYOUTS = ("a VOCdevkit tree (VOC<year>/Annotations/*.xml, VOC<year>/ImageSets/Main/<split>.txt), a COCO json (a "
           ".json file, or annotations/instances_<split>.json), darknet txt labels (images, a labels/*.txt beside "
           "each images/ folder, a *.names file)")


def open_dataset(path, img_size=448, augment=None, seed=0):
    """Guess the format at path: a COCO json (or a folder with annotations/instances_<split>.json; images in
    <base>/<split>, <base>/images or <base>) or a VOCdevkit tree (every VOC<year> trainval and test list).
    img_size, augment and seed go to the dataset. Darknet txt labels: tools.darknet_txt.open_txt_dataset."""
    path, options = str(path), dict(img_size=img_size, augment=augment, seed=seed)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    jsons = [path] if path.endswith(".json") else [os.path.join(path, "annotations", n) for n in
                                                   _listdir(os.path.join(path, "annotations"))
                                                   if n.startswith("instances") and n.endswith(".json")]
    if jsons:
        base = os.path.dirname(os.path.dirname(os.path.abspath(jsons[0])))
        split = os.path.basename(jsons[0]).removeprefix("instances_").removesuffix(".json")
        image_dir = next((d for d in (os.path.join(base, split), os.path.join(base, "images"))
                          if os.path.isdir(d)), base)
        return COCODataset(jsons[0], image_dir, **options)
    try:
        devkit = _find_devkit(path)
    except FileNotFoundError:
        raise UnknownFormat(f"{path}: not a VOCdevkit tree or a COCO json (darknet txt labels: "
                            f"tools.darknet_txt.open_txt_dataset)") from None
    splits = sorted(voc_splits(devkit, "trainval") + voc_splits(devkit, "test"), key=lambda s: (s[0], s[1] == "test"))
    if not splits:
        raise OSError(f"{devkit}: no VOC<year>/ImageSets/Main/trainval.txt or test.txt")
    return VOCDataset(devkit, splits=splits, **options)


ERRORS = ("malformed annotation files", "missing fields", "objects with unknown class", "images missing",
          "annotations missing", "duplicate image ids", "split lists missing", "malformed label lines",
          "unreadable images", "image sizes that match neither way")   # the other kinds are fixed and counted


def dataset_summary(images, objects, counts):
    """The one-line summary of a dataset check: "N images, M objects, k <kind>, ..." (kinds sorted)."""
    return f"{images} images, {objects} objects" + "".join(f", {n} {k}" for k, n in sorted(counts.items()))


def check_annotations(dataset, strict=True):
    """train.py's start-up check, no image decoded: raise ValueError listing the problems when the dataset is
    unusable (no image, no object, or, if strict, any problem of the ERRORS kinds). Else a one-line summary.
    A set drawn from a seed (not dataset.annotated) has no annotations to check: its images are counted only."""
    if not getattr(dataset, "annotated", True) and len(dataset):     # yolo9000.py's sets: checked
        return f"{len(dataset)} images drawn from seed {dataset.seed}"
    objects = sum(len(dataset.record(i)["labels"]) for i in range(len(dataset)))
    summary, problems = dataset_summary(len(dataset), objects, dataset.counts), dataset.problems
    if len(dataset) == 0 or objects == 0 or (strict and sum(dataset.counts[k] for k in ERRORS)):
        more = f"\n  ... and {len(problems) - 20} more (python -m tools.datasets --check DIR lists all)"
        raise ValueError(f"dataset unusable: {summary}\n  " + "\n  ".join(problems[:20]) + more * (len(problems) > 20))
    return summary
