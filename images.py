"""
Images as darknet reads them: decoding, darknet's resize and letterbox, boxes back to the original image, and the
papers' augmentation. It imports only numpy, torch and Pillow.

Paper / darknet -> code
  darknet image.c load_image_color (stb_image, 3 channels: alpha dropped), / 255 .... load_image(), image_to_tensor()
  ours: EXIF orientation, 16-bit and CMYK files, errors that name the file .... decode_image(), load_image()
  ours: a path, PIL image, numpy array or tensor as one (3, H, W) tensor (the library call) ... any_to_tensor()
  darknet image.c resize_image: two-pass bilinear, corners aligned, float32 ......... resize_darknet()
  darknet image.c letterbox_image; region_layer.c correct_region_boxes ... letterbox_darknet(), boxes_to_original()
  YOLOv1 §2.2 "random scaling and translations of up to 20% of the original image size"
    and "exposure and saturation of the image by up to a factor of 1.5 in the HSV" ... augment_yolov1()
  darknet data.c load_data_detection as released with YOLOv2 (Dec. 2016; = load_data_region):
    jitter crop, flip, image.c random_distort_image ................................ augment_yolov2()
  darknet image.c rgb_to_hsv / distort_image / hsv_to_rgb ............................ distort_hsv()

Shapes: image (3, H, W) float32 in [0, 1], RGB; sizes (w, h) as darknet writes them; boxes (M, 4) xyxy, in pixels
going into an augmentation and normalized to [0, 1] of the output coming out.

Run:  python -m pytest -q tests/test_images.py     resize_image and distort_image against their C loops
"""
import functools
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MIN_BOX_SIDE = 0.005       # data.c fill_truth_detection (2016): boxes with w or h < .005 dropped after augmenting


class ImageError(ValueError):
    """An image file that cannot be used. The message starts with the file's path."""


# -----------------------------------------------------------------------------
# Images as people have them: decoding, modes, EXIF

def _to_rgb(img):
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
    return _to_rgb(img)


def image_to_tensor(img):
    """PIL RGB image -> (3, H, W) float32 in [0, 1]: darknet divides by 255, no mean or std."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous().float().div_(255)


def any_to_tensor(x, name="input"):
    """A file path (decoded as detect.py does: EXIF orientation applied), a PIL image of any mode, a numpy array
    (H, W, 3) uint8 RGB, or a tensor (3, H, W) RGB, uint8 or float in [0, 1] -> (3, H, W) float32 in [0, 1]
    (detect.detect_objects' inputs). name starts the error message."""
    if isinstance(x, (str, os.PathLike)):
        return image_to_tensor(load_image(x, exif=True))
    if isinstance(x, Image.Image):
        return image_to_tensor(_to_rgb(x))
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"{name}: a numpy array must be (H, W, 3) uint8 RGB, got {x.shape} {x.dtype}")
        x = torch.from_numpy(x.copy()).permute(2, 0, 1)      # (3, H, W); a copy: the array may be read-only
    if not torch.is_tensor(x) or x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"{name}: expected a path, PIL image, numpy array or (3, H, W) tensor, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


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
    """darknet utils.c rand_scale: a factor in [1, s], inverted with probability 1/2."""
    scale = rng.uniform(1, s)
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


def _crop_resize(image, boxes, window, out_size, flip=False, fill=None):
    """Crop window=(left, top, right, bottom) of image (3, H, W) in integer pixels, reaching outside the image
    with the edge repeated (fill=None, image.c crop_image's clamped coordinates) or a constant fill; resize_darknet
    to out_size; mirror if flip. boxes (M, 4) pixel xyxy -> normalized xyxy in the output clipped to [0, 1], a box
    under MIN_BOX_SIDE wide or high dropped (data.c correct_boxes, fill_truth_detection). -> (image, boxes, kept)"""
    (_, H, W), (left, top, right, bottom) = image.shape, window
    pad = (max(-left, 0), max(right - W, 0), max(-top, 0), max(bottom - H, 0))      # left, right, top, bottom
    if any(pad):
        mode = dict(mode="replicate") if fill is None else dict(mode="constant", value=fill)
        image = F.pad(image[None], pad, **mode)[0]
    out = resize_darknet(image[:, top + pad[2]:bottom + pad[2], left + pad[0]:right + pad[0]], out_size)
    # correct_boxes: left·sx - dx = (left - pleft) / swidth, likewise for the other sides
    boxes = (boxes - boxes.new_tensor([left, top] * 2)) / boxes.new_tensor([right - left, bottom - top] * 2)
    if flip:
        out = out.flip(-1)
        boxes = torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], 1)
    boxes = boxes.clamp(0, 1)
    keep = torch.nonzero((boxes[:, 2:] - boxes[:, :2] >= MIN_BOX_SIDE).all(1)).flatten()
    return out, boxes[keep], keep


def augment_yolov1(image, boxes, rng, out_size, scale=0.2, translate=0.2, saturation=1.5, exposure=1.5):
    """YOLOv1 §2.2: random scaling and translation of up to 20% of the image size, exposure and saturation by up
    to a factor 1.5 in HSV (darknet's rand_scale). image: PIL or (3, H, W) float; boxes (M, 4) pixel xyxy;
    out_size (w, h). Returns (image (3, h, w), boxes (K, 4) normalized xyxy, kept indices (K,)).
    Our reading: the output shows a window of size/s, s in [0.8, 1.2], moved by up to 20% of the size; outside
    the image is gray 0.5. (The paper says no more; darknet's yolov1.cfg trains with augment_yolov2's crop.)"""
    image = image_to_tensor(image) if isinstance(image, Image.Image) else image
    (_, H, W), s = image.shape, rng.uniform(1 - scale, 1 + scale)
    tx, ty = rng.uniform(-translate, translate, size=2) * (W, H)
    sw, sh = max(1, round(W / s)), max(1, round(H / s))
    left, top = round((W - sw) / 2 - tx), round((H - sh) / 2 - ty)
    out, boxes, keep = _crop_resize(image, boxes, (left, top, left + sw, top + sh), out_size, fill=0.5)
    return distort_hsv(out, 0.0, rand_scale(rng, saturation), rand_scale(rng, exposure)), boxes, keep


def augment_yolov2(image, boxes, rng, out_size, jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5):
    """darknet data.c load_data_detection as released with YOLOv2: each side of the crop moves by an integer in
    (-jitter·side, jitter·side) (edges repeated outside the image), resize_image to out_size, mirror with
    probability 1/2, random_distort_image (hue shift in (-hue, hue) turns, rand_scale saturation and exposure).
    jitter is .3 in yolov2-voc.cfg and yolov2.cfg, .2 in yolo-voc.2.0.cfg, yolo.2.0.cfg and the tiny cfgs. Arguments and returns as augment_yolov1."""
    image = image_to_tensor(image) if isinstance(image, Image.Image) else image
    _, oh, ow = image.shape
    # int pleft = rand_uniform(-dw, dw), dw = ow·jitter: C's conversion truncates toward zero, as int() does
    pleft, pright, ptop, pbot = (int(rng.uniform(-d, d)) for d in (int(ow * jitter),) * 2 + (int(oh * jitter),) * 2)
    out, boxes, keep = _crop_resize(image, boxes, (pleft, ptop, ow - pright, oh - pbot), out_size,
                                    flip=bool(rng.integers(2)))
    out = distort_hsv(out, rng.uniform(-hue, hue), rand_scale(rng, saturation), rand_scale(rng, exposure))
    return out, boxes, keep


# "yolov2-jitter.2": the YOLOv2 release's cfgs (yolo-voc.2.0.cfg, yolo.2.0.cfg at darknet c6afc7ff) crop with jitter=.2
AUGMENTATIONS = {"yolov1": augment_yolov1, "yolov2": augment_yolov2,
                 "yolov2-jitter.2": functools.partial(augment_yolov2, jitter=0.2)}
