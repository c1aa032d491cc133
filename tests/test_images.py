"""Tests of images.py: darknet's resize_image, letterbox_image and distort_image against their C loops, the
augmentations, image modes, EXIF, decoding errors. Small tensors and files, seconds."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import data
from conftest import pixel_box, save_jpeg
from data import (ImageError, augment_yolov1, augment_yolov2, boxes_to_original, decode_image, distort_hsv,
                    letterbox_darknet, load_image, resize_darknet)


# -----------------------------------------------------------------------------
# Darknet preprocessing

def resize_reference(im, w, h):
    """darknet image.c resize_image, loop for loop, in float32."""
    C, H0, W0 = im.shape
    f = np.float32
    part = np.zeros((C, H0, w), np.float32)
    out = np.zeros((C, h, w), np.float32)
    w_scale = f(W0 - 1) / f(w - 1)
    h_scale = f(H0 - 1) / f(h - 1)
    for k in range(C):
        for r in range(H0):
            for c in range(w):
                if c == w - 1 or W0 == 1:
                    part[k, r, c] = im[k, r, W0 - 1]
                else:
                    sx = f(c) * w_scale
                    ix = int(sx)
                    dx = f(sx - f(ix))
                    part[k, r, c] = f(f(1) - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
    for k in range(C):
        for r in range(h):
            sy = f(r) * h_scale
            iy = int(sy)
            dy = f(sy - f(iy))
            for c in range(w):
                out[k, r, c] = f(f(1) - dy) * part[k, iy, c]
            if r == h - 1 or H0 == 1:
                continue
            for c in range(w):
                out[k, r, c] += dy * part[k, iy + 1, c]
    return out


@pytest.mark.parametrize("src, dst", [((5, 7), (9, 4)), ((6, 4), (3, 11)), ((1, 5), (4, 3)), ((7, 3), (7, 8))])
def test_resize_darknet_matches_loop(src, dst):
    im = torch.rand(3, *src, generator=torch.Generator().manual_seed(0))
    ours = resize_darknet(im, dst)
    assert ours.shape == (3, dst[1], dst[0])
    assert torch.equal(ours, torch.from_numpy(resize_reference(im.numpy(), *dst)))


def test_letterbox_placement_and_round_trip():
    im = torch.zeros(3, 40, 60)
    im[:, 10:30, 15:45] = 1.0                                   # box [15, 10, 45, 30] in pixels
    boxed = letterbox_darknet(im, (32, 32))
    # 32/60 < 32/40: new_w = 32, new_h = 40·32 // 60 = 21, placed at top (32 - 21) // 2 = 5
    assert (boxed[:, :5] == 0.5).all() and (boxed[:, 26:] == 0.5).all()
    assert (boxed[:, 5:26, :] != 0.5).all()
    net_box = pixel_box(boxed.mean(0) > 0.5) / 32                        # normalized in the network input
    back = boxes_to_original(net_box[None], (60, 40), (32, 32), letterbox=True)[0]
    assert torch.allclose(back, torch.tensor([15., 10, 45, 30]), atol=60 / 32 * 1.5)
    plain = boxes_to_original(torch.tensor([[0.25, 0.5, 0.75, 1.0]]), (60, 40))
    assert plain.tolist() == [[15, 20, 45, 40]]


def distort_reference(pixel, hue, sat, val):
    """darknet rgb_to_hsv, scale, hue shift, hsv_to_rgb, constrain; one pixel, as in image.c."""
    r, g, b = pixel
    mx, mn = max(r, g, b), min(r, g, b)
    delta, v = mx - mn, mx
    if mx == 0:
        s = h = 0.0
    else:
        s = delta / mx
        if delta == 0:
            h = 0.0                                              # darknet computes 0/0 here; s = 0 makes h unused
        elif r == mx:
            h = (g - b) / delta
        elif g == mx:
            h = 2 + (b - r) / delta
        else:
            h = 4 + (r - g) / delta
        if h < 0:
            h += 6
        h /= 6
    s, v, h = s * sat, v * val, h + hue
    h = h - 1 if h > 1 else (h + 1 if h < 0 else h)
    h *= 6
    if s == 0:
        out = (v, v, v)
    else:
        i = int(np.floor(h))
        f = h - i
        p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
        out = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v)][i] if i < 5 else (v, p, q)
    return [min(max(c, 0), 1) for c in out]


def test_distort_hsv_matches_darknet_loop():
    rng = np.random.default_rng(0)
    pixels = np.concatenate([rng.random((40, 3)), [[0, 0, 0], [0.5, 0.5, 0.5], [1, 0, 0], [0.2, 0.9, 0.2]]])
    image = torch.tensor(pixels.T, dtype=torch.float64).view(3, 1, -1)
    for hue, sat, val in [(0.1, 1.5, 1.5), (-0.1, 1 / 1.5, 0.8), (0.0, 1.3, 1.0), (0.05, 1.0, 1 / 1.5)]:
        ours = distort_hsv(image, hue, sat, val).view(3, -1).T
        expected = torch.tensor([distort_reference(p, hue, sat, val) for p in pixels], dtype=torch.float64)
        assert torch.allclose(ours, expected, atol=1e-9)
    tall = torch.rand(3, 300, 2, dtype=torch.float64)                 # > 128 rows: worked on in bands of rows
    assert torch.equal(distort_hsv(tall, 0.1, 1.5, 1.5), distort_hsv(tall.reshape(3, 1, 600), 0.1, 1.5, 1.5)
                       .reshape(3, 300, 2))


@pytest.mark.parametrize("augment", [augment_yolov1, augment_yolov2])
def test_augmentation_moves_boxes_with_pixels(augment):
    im = torch.zeros(3, 60, 80)
    im[0, 12:40, 20:50] = 1.0                                   # red box [20, 12, 50, 40] on black
    boxes = torch.tensor([[20., 12, 50, 40]])
    for seed in range(12):
        out, new, keep = augment(im, boxes, np.random.default_rng(seed), (48, 48))
        assert out.shape == (3, 48, 48)
        # chroma v·s of the red box stays >= (1/1.5)·(1/1.5) = .44 under exposure and saturation; black and the
        # gray fill have none. Bilinear edges: a pixel at least half red counts.
        red = out.amax(0) - out.amin(0) > 0.3
        if len(keep) == 0:                                      # cropped away: almost no red may remain
            assert red.sum() <= 48
            continue
        assert torch.allclose(new[0] * 48, pixel_box(red), atol=1.0), seed


def test_augmentation_drops_boxes_cropped_away():
    im = torch.zeros(3, 100, 100)
    # the crop window keeps x in [pleft, ...); a 0.2-pixel sliver at x = 0 leaves < .005 of the output
    boxes = torch.tensor([[0.0, 0.0, 0.2, 50.0], [10.0, 10.0, 90.0, 90.0]])
    _, new, keep = data._crop_resize(im, boxes, (0, 0, 100, 100), (50, 50))
    assert keep.tolist() == [1]                                # 0.2 / 100 = .002 < MIN_BOX_SIDE = .005
    _, new, keep = data._crop_resize(im, boxes, (0, 0, 100, 100), (50, 50), flip=True)
    assert torch.allclose(new, torch.tensor([[1 - 0.9, 0.1, 1 - 0.1, 0.9]]))


# -----------------------------------------------------------------------------
# Images as people have them

def save_bytes(path, img, fmt, **kw):
    img.save(path, fmt, **kw)
    return str(path)


def test_image_modes_become_rgb(tmp_path):
    gray = save_bytes(tmp_path / "g.png", Image.new("L", (2, 1), 77), "PNG")
    assert np.array(load_image(gray)).tolist() == [[[77, 77, 77]] * 2]
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 0), 1)
    assert np.array(load_image(save_bytes(tmp_path / "p.png", pal, "PNG"))).tolist() == [[[10, 20, 30],
                                                                                         [200, 100, 50]]]
    rgba = save_bytes(tmp_path / "a.png", Image.new("RGBA", (1, 1), (1, 2, 3, 0)), "PNG")
    assert np.array(load_image(rgba)).tolist() == [[[1, 2, 3]]]           # alpha dropped, as darknet
    cmyk = save_bytes(tmp_path / "c.tif", Image.new("CMYK", (1, 1), (10, 20, 30, 40)), "TIFF")
    # (255 - c)(255 - k) / 255: 245·215/255 = 206.6, 235·215/255 = 198.1, 225·215/255 = 189.7
    assert np.array(load_image(cmyk)).tolist() == [[[207, 198, 190]]]
    i16 = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16))
    assert np.array(load_image(save_bytes(tmp_path / "i16.png", i16, "PNG")))[..., 0].tolist() == [[0, 100, 255]]


def test_exif_orientation_rule(tmp_path):
    path = str(tmp_path / "r.jpg")
    save_jpeg(path, (40, 20), exif_orientation=6)               # stored 40x20, displayed rotated: 20x40
    assert load_image(path).size == (20, 40)                    # photos: EXIF applied
    assert load_image(path, exif=False).size == (40, 20)
    assert load_image(path, expected_size=(40, 20)).size == (40, 20)   # annotation says stored size: kept
    assert load_image(path, expected_size=(20, 40)).size == (20, 40)   # rotation makes it match: applied
    stored, orientation = decode_image(path)                    # as stored, with its EXIF orientation
    assert (stored.size, orientation) == ((40, 20), 6)


def test_load_image_errors_name_the_file(tmp_path, monkeypatch):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.jpg: file is empty \(0 bytes\)"):
        load_image(empty)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: cannot decode, truncated"):
        load_image(tmp_path / "cut.jpg")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(ImageError, match=r"text\.jpg: not an image"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg"):
        load_image(tmp_path / "nope.jpg")
    (tmp_path / "big.jpg").write_bytes(buf.getvalue())
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 // 4)        # bomb error above twice the limit
    with pytest.raises(ImageError, match=r"big\.jpg: .*MAX_IMAGE_PIXELS"):
        load_image(tmp_path / "big.jpg")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about corrupt EXIF blocks
def test_fuzz_random_bytes_give_clean_errors(tmp_path):
    rng = np.random.default_rng(0)
    heads = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00"]
    path = tmp_path / "f.img"
    for k in range(120):
        path.write_bytes(heads[k % len(heads)] + rng.bytes(int(rng.integers(1, 300))))
        try:
            load_image(path)
        except ImageError as e:
            assert str(e).startswith(str(path))
