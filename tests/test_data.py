"""Tests of data.py: readers, darknet preprocessing and augmentation, image modes, checks. Small files, seconds."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import data
from data import (COCO_CLASSES, VOC_CLASSES, COCODataset, ImageError, ShapesDataset, VOCDataset, YoloTxtDataset,
                  augment_yolov1, augment_yolov2, boxes_to_original, check_annotations, check_dataset, collate,
                  distort_hsv, image_to_tensor, label_path, letterbox_darknet, load_image, parse_voc_xml,
                  resize_darknet)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def save_jpeg(path, size=(40, 30), colour=(90, 120, 150), exif_orientation=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = Image.new("RGB", size, colour)
    exif = img.getexif()
    if exif_orientation:
        exif[0x0112] = exif_orientation
    img.save(path, "JPEG", exif=exif)


def voc_xml(size, objects):
    """objects: (name, xmin, ymin, xmax, ymax, difficult) in VOC's 1-based pixels."""
    body = "".join(f"""
  <object>
    <name>{n}</name>
    <difficult>{d}</difficult>
    <bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{e}</ymax></bndbox>
  </object>""" for n, a, b, c, e, d in objects)
    return f"<annotation>\n  <size><width>{size[0]}</width><height>{size[1]}</height></size>{body}\n</annotation>\n"


def write_voc(root, items, year="2007", split="trainval", list_ids=None):
    """items: {image_id: (size, objects)}; writes JPEGs of that size and the XMLs."""
    base = os.path.join(root, "VOCdevkit", f"VOC{year}")
    os.makedirs(os.path.join(base, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(base, "ImageSets", "Main"), exist_ok=True)
    for image_id, (size, objects) in items.items():
        save_jpeg(os.path.join(base, "JPEGImages", image_id + ".jpg"), size)
        with open(os.path.join(base, "Annotations", image_id + ".xml"), "w") as f:
            f.write(voc_xml(size, objects))
    with open(os.path.join(base, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(i + "\n" for i in (list_ids or items)))
    return base


# -----------------------------------------------------------------------------
# Readers

def test_voc_tree_read_back(tmp_path):
    write_voc(tmp_path, {"000001": ((40, 30), [("dog", 1, 2, 20, 30, 0), ("person", 5, 6, 15, 16, 1)])})
    ds = VOCDataset(tmp_path, splits=[("2007", "trainval")], img_size=16)
    assert len(ds) == 1 and ds.problems == []
    ann = ds.annotation(0)
    # 1-based XML -> 0-based: subtract 1 from all four coordinates
    assert ann["boxes"].tolist() == [[0, 1, 19, 29], [4, 5, 14, 15]]
    assert ann["labels"].tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")] == [11, 14]
    assert ann["difficult"].tolist() == [False, True] and ann["size"] == (40, 30)
    assert ann["image_id"] == "000001" and ann["path"].endswith("JPEGImages/000001.jpg")
    image, target = ds[0]
    assert image.shape == (3, 16, 16)
    # training target: the difficult person is left out (darknet voc_label.py); boxes normalized by (40, 30)
    assert target["labels"].tolist() == [11]
    assert set(target) == {"boxes", "labels", "difficult", "iscrowd", "image_id", "path", "size"}
    assert (target["boxes"].dtype, target["labels"].dtype, target["difficult"].dtype) == (torch.float32,
                                                                                         torch.int64, torch.bool)
    assert torch.allclose(target["boxes"], torch.tensor([[0 / 40, 1 / 30, 19 / 40, 29 / 30]]))
    keep = VOCDataset(tmp_path, splits=[("2007", "trainval")], img_size=16, keep_difficult=True)[0][1]
    assert keep["difficult"].tolist() == [False, True]
    guessed = data.open_dataset(tmp_path, img_size=24, augment="yolov2", seed=5)   # options reach the dataset
    assert isinstance(guessed, VOCDataset) and (guessed.img_size, guessed.augment, guessed.seed) == (24, "yolov2", 5)
    assert guessed[0][0].shape == (3, 24, 24)


def test_coco_read_back(tmp_path):
    for name, size in (("a.jpg", (40, 30)), ("b.jpg", (20, 20))):
        save_jpeg(str(tmp_path / "img" / name), size)
    coco = {"images": [{"id": 5, "file_name": "a.jpg", "width": 40, "height": 30},
                       {"id": 9, "file_name": "b.jpg", "width": 20, "height": 20}],      # b: no objects
            "categories": [{"id": 7, "name": "zebra"}, {"id": 1, "name": "ant"}, {"id": 3, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 5, "category_id": 7, "bbox": [2, 3, 10, 5], "area": 40.0,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 5, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 9.0,
                             "iscrowd": 1}]}
    (tmp_path / "inst.json").write_text(json.dumps(coco))
    ds = COCODataset(tmp_path / "inst.json", tmp_path / "img", img_size=8)
    assert ds.class_names == ["ant", "cat", "zebra"]          # sorted by id 1, 3, 7 -> labels 0, 1, 2
    assert len(ds) == 2 and ds.problems == []
    ann = ds.annotation(0)
    assert ann["boxes"].tolist() == [[2, 3, 12, 8], [0, 0, 4, 4]]   # xywh -> xyxy
    assert ann["labels"].tolist() == [2, 0] and ann["iscrowd"].tolist() == [False, True]
    assert ann["area"].tolist() == [40.0, 9.0] and ann["image_id"] == "5"
    assert ds[0][1]["labels"].tolist() == [2]                  # crowd left out of training targets
    assert ds.annotation(1)["boxes"].shape == (0, 4) and ds[1][1]["boxes"].shape == (0, 4)
    assert ds.category_ids == [1, 3, 7]                        # label -> COCO category id, for results files


def test_coco_classes_are_darknets_coco_names():
    # values checked against darknet's data/coco.names: 80 names in COCO category-id order, darknet's spellings
    assert len(COCO_CLASSES) == len(set(COCO_CLASSES)) == 80
    assert (COCO_CLASSES[0], COCO_CLASSES[3], COCO_CLASSES[57], COCO_CLASSES[62], COCO_CLASSES[79]) == \
        ("person", "motorbike", "sofa", "tvmonitor", "toothbrush")
    assert COCO_CLASSES[9:12] == ["traffic light", "fire hydrant", "stop sign"]


def test_yolo_txt_read_back_and_label_path(tmp_path):
    save_jpeg(str(tmp_path / "set" / "images" / "x.jpg"), (40, 20))
    os.makedirs(tmp_path / "set" / "labels")
    (tmp_path / "set" / "labels" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n\n0 0.25 0.25 0.1 0.2\n")
    (tmp_path / "set" / "obj.names").write_text("a\nb\n")
    (tmp_path / "set" / "train.txt").write_text("images/x.jpg\n")
    for source in (tmp_path / "set" / "train.txt", tmp_path / "set" / "images"):
        ds = YoloTxtDataset(source, tmp_path / "set" / "obj.names", img_size=8)
        assert ds.class_names == ["a", "b"] and ds.problems == []
        ann = ds.annotation(0)
        # cx cy w h normalized times (40, 20): (20 - 10, 10 - 5, 20 + 10, 10 + 5); (10 - 2, 5 - 2, 10 + 2, 5 + 2)
        assert torch.allclose(ann["boxes"], torch.tensor([[10., 5, 30, 15], [8, 3, 12, 7]]))
        assert ann["labels"].tolist() == [1, 0]
    guessed = data.open_dataset(tmp_path / "set", img_size=8, augment="yolov1", seed=4)
    assert isinstance(guessed, YoloTxtDataset) and (guessed.img_size, guessed.augment, guessed.seed) == (8, "yolov1", 4)
    assert label_path("/d/VOC2007/JPEGImages/1.jpg") == "/d/VOC2007/labels/1.txt"
    assert label_path("/d/myimages/images/a.b.png") == "/d/myimages/labels/a.b.txt"
    assert label_path("/d/flat/c.JPEG") == "/d/flat/c.txt"


def test_collate_and_shapes_determinism():
    ds = ShapesDataset(4, img_size=64, seed=3, augment="yolov2")
    images, targets = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 64, 64) and len(targets) == 2            # (N, 3, H, W)
    assert torch.equal(ds[0][0], images[0])                                # same (seed, epoch, index)
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], images[0])                            # new epoch, new augmentation
    again = ShapesDataset(4, img_size=64, seed=3).load(2)                  # a fresh object draws the same image
    assert torch.equal(image_to_tensor(ds.load(2)), image_to_tensor(again))


def test_random_streams_are_distinct():
    # Generator((seed, tag, ...)): before the tags, augmenting image 1 in epoch 3 drew from (seed, 3, 1), which is
    # also what laying out image 3 drew from. Now layout, rendering and augmentation draw different numbers.
    ds = ShapesDataset(8, img_size=32, seed=0, augment="yolov2")
    streams = [(data.STREAM_LAYOUT, 3), (data.STREAM_RENDER, 3), (data.STREAM_AUGMENT, 3, 1),
               (data.STREAM_AUGMENT, 3, 2), (data.STREAM_AUGMENT, 1, 3)]
    assert len({ds.rng(*stream).integers(2 ** 62) for stream in streams}) == len(streams)
    assert ds.rng(data.STREAM_LAYOUT, 3).integers(2 ** 62) == np.random.default_rng((0, 1, 3)).integers(2 ** 62)
    ds.set_epoch(3)                                 # dataset[1] in epoch 3 is augmented from (seed, AUGMENT, 3, 1)
    expected, _, _ = augment_yolov2(image_to_tensor(ds.load(1)), torch.from_numpy(ds.record(1)["boxes"]),
                                    ds.rng(data.STREAM_AUGMENT, 3, 1), (32, 32))
    assert torch.equal(ds[1][0], expected)


def test_shapes_split_holds_out_the_validation_images():
    train, val = (data.shapes_split(s, 3, 32, seed=2, augment=None) for s in ("train", "val"))
    assert (train.seed, val.seed) == (2, 2 + 10_000) == (2, 2 + data.SHAPES_VAL_SEED)   # train.py's value
    assert not torch.equal(image_to_tensor(train.load(0)), image_to_tensor(val.load(0)))
    assert data.shapes_split("train", 3, 32, seed=2, augment="yolov1").augment == "yolov1"
    with pytest.raises(ValueError, match="'train' or 'val'"):
        data.shapes_split("test", 3, 32)


def test_shapes_layout_rules():
    ds = ShapesDataset(200, img_size=100, seed=0)
    counts = []
    for i in range(200):
        ann = ds.annotation(i)
        boxes = ann["boxes"]
        counts.append(len(boxes))
        side = (boxes[:, 2:] - boxes[:, :2]).amax(1)
        assert ((side >= 9) & (side <= 50)).all()            # longer side 10%..50% of 100 px (int() may drop 1)
        for k in range(len(boxes)):                          # a later box covers <= 30% of each earlier box
            for j in range(k):
                assert data._covered(boxes[j].tolist(), boxes[k].tolist()) <= 0.3 + 1e-6
    assert min(counts) >= 1 and max(counts) == 4 and set(ann["labels"].tolist()) <= {0, 1, 2}


def test_shapes_boxes_bound_their_pixels():
    ds = ShapesDataset(30, img_size=64, seed=1)
    for i in range(30):
        box, _, colour, _ = ds._layout(i)[1][-1]              # the object drawn last is fully visible
        pixels = (np.array(ds.load(i)) == [int(c * 255) for c in colour]).all(-1)
        assert torch.allclose(pixel_box(torch.from_numpy(pixels)), torch.tensor(box, dtype=torch.float32),
                              atol=1.0)


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


def pixel_box(mask):
    """Bounding box [x1, y1, x2, y2) of the True pixels of an (H, W) mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


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
def test_fuzz_random_bytes_and_xml_give_clean_errors(tmp_path):
    rng = np.random.default_rng(0)
    heads = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00"]
    path = tmp_path / "f.img"
    for k in range(120):
        path.write_bytes(heads[k % len(heads)] + rng.bytes(int(rng.integers(1, 300))))
        try:
            load_image(path)
        except ImageError as e:
            assert str(e).startswith(str(path))
    xml = voc_xml((40, 30), [("dog", 1, 2, 20, 30, 0)]).encode()
    for k in range(120):
        text = bytearray(xml)
        for _ in range(int(rng.integers(1, 6))):                # flip a few bytes
            text[int(rng.integers(len(text)))] = int(rng.integers(256))
        path.write_bytes(bytes(text) if k % 4 else rng.bytes(200))
        problems = []
        result = parse_voc_xml(str(path), VOC_CLASSES, lambda kind, message: problems.append(message))
        assert result is not None or problems[-1].startswith(str(path))


def test_unreadable_image_is_skipped_and_reported_once(tmp_path, capsys):
    write_voc(tmp_path, {"a": ((40, 30), [("dog", 1, 1, 20, 20, 0)]), "b": ((40, 30), [("cat", 1, 1, 30, 20, 0)])})
    broken = tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "a.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    ds = VOCDataset(tmp_path, splits=[("2007", "trainval")], img_size=8)
    for _ in range(3):
        _, target = ds[0]
        assert target["image_id"] == "b"                         # the next readable image, deterministically
    err = capsys.readouterr().err
    assert err.count(str(broken)) == 1 and "skipping unreadable image" in err


# -----------------------------------------------------------------------------
# --check: each problem with its file and line

@pytest.fixture
def broken_voc(tmp_path):
    base = write_voc(tmp_path, {
        "good": ((40, 30), [("dog", 1, 1, 20, 20, 0)]),
        "outside": ((40, 30), [("dog", 1, 1, 20, 20, 0), ("cat", 10, 10, 60, 20, 0)]),   # x2 60 > 40
        "inverted": ((40, 30), [("cat", 20, 5, 10, 15, 0), ("cat", 5, 5, 5, 15, 0)]),
        "unknown": ((40, 30), [("unicorn", 1, 1, 10, 10, 0)]),
    }, list_ids=["good", "outside", "inverted", "unknown", "good", "ghost", "empty", "cut", "text",
                 "nobox", "malformed", "wrongsize", "rotated"])
    ann, jpg = os.path.join(base, "Annotations"), os.path.join(base, "JPEGImages")
    for name in ("empty", "cut", "text", "nobox", "malformed", "wrongsize", "rotated"):
        with open(os.path.join(ann, name + ".xml"), "w") as f:
            f.write(voc_xml((40, 30), [("dog", 1, 1, 20, 20, 0)]))
        save_jpeg(os.path.join(jpg, name + ".jpg"), (40, 30))
    open(os.path.join(jpg, "empty.jpg"), "wb").close()
    raw = open(os.path.join(jpg, "cut.jpg"), "rb").read()
    open(os.path.join(jpg, "cut.jpg"), "wb").write(raw[: len(raw) // 2])
    open(os.path.join(jpg, "text.jpg"), "w").write("not a picture")
    with open(os.path.join(ann, "nobox.xml"), "w") as f:
        f.write("<annotation>\n<size><width>40</width><height>30</height></size>\n"
                "<object>\n<name>dog</name>\n</object>\n</annotation>\n")
    with open(os.path.join(ann, "malformed.xml"), "w") as f:
        f.write("<annotation>\n<size>\n</annotation>\n")
    save_jpeg(os.path.join(jpg, "wrongsize.jpg"), (50, 30))
    save_jpeg(os.path.join(jpg, "rotated.jpg"), (30, 40), exif_orientation=6)   # matches after EXIF: fine
    return tmp_path, base


def test_check_reports_every_voc_problem(broken_voc):
    root, base = broken_voc
    report = check_dataset(root)
    text = "\n".join(report["problems"])
    ann, lst = os.path.join(base, "Annotations"), os.path.join(base, "ImageSets", "Main", "trainval.txt")
    # voc_xml puts <size> on line 2 and the k-th <object> on line 3 + 5k
    assert f"{ann}/outside.xml:8: box [9, 9, 59, 19] outside the 40x30 image, clipped" in text
    assert f"{ann}/inverted.xml:3: inverted or zero-area box [19, 4, 9, 14], dropped" in text
    assert f"{ann}/inverted.xml:8: inverted or zero-area box [4, 4, 4, 14], dropped" in text
    assert f"{ann}/unknown.xml:3: unknown class name 'unicorn', object dropped" in text
    assert f"{lst}:5: duplicate image id good, skipped" in text
    assert f"{lst}:6: annotation {ann}/ghost.xml listed but missing" in text
    assert f"{base}/JPEGImages/empty.jpg: file is empty (0 bytes)" in text
    assert f"{base}/JPEGImages/cut.jpg: cannot decode, truncated or corrupt" in text
    assert f"{base}/JPEGImages/text.jpg: not an image" in text
    assert f"{ann}/nobox.xml:3: missing or invalid <bndbox>" in text
    assert f"{ann}/malformed.xml:3: malformed XML" in text
    assert f"{ann}/wrongsize.xml: image {base}/JPEGImages/wrongsize.jpg is 50x30 (EXIF orientation 1), " \
           f"the annotation says 40x30" in text
    assert "rotated" not in text
    c = report["counts"]
    assert (c["boxes clipped"], c["boxes dropped (inverted or zero-area)"], c["unreadable images"]) == (1, 2, 3)
    with pytest.raises(ValueError, match="dataset unusable"):
        check_annotations(VOCDataset(root, splits=[("2007", "trainval")]))


def test_check_cli(broken_voc):
    root, base = broken_voc
    run = subprocess.run([sys.executable, os.path.join(REPO, "data.py"), "--check", str(root)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"{base}/Annotations/unknown.xml:3: unknown class name 'unicorn'" in run.stdout
    assert "1 boxes clipped" in run.stdout.splitlines()[-1]


def test_check_coco_and_yolo_problems(tmp_path):
    (tmp_path / "bad.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    report = check_dataset(COCODataset(tmp_path / "bad.json", tmp_path))
    assert report["problems"][0].startswith(f"{tmp_path / 'bad.json'}:2: malformed json")
    save_jpeg(str(tmp_path / "a.jpg"))
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                       {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                       {"id": 2, "file_name": "gone.jpg", "width": 40, "height": 30}, {"id": 3}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5]},
                            {"id": 11, "image_id": 1, "category_id": 1}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    text = "\n".join(check_dataset(COCODataset(tmp_path / "c.json", tmp_path))["problems"])
    j = tmp_path / "c.json"
    assert f"{j}: images[1]: duplicate image id 1, skipped" in text
    assert f"{j}: images[3]: missing or invalid field 'file_name'" in text
    assert f"{j}: image id 2: image {tmp_path / 'gone.jpg'} listed but missing" in text
    assert f"{j}: annotations[0] (id 10): unknown category id 4, dropped" in text
    assert f"{j}: annotations[1] (id 11): missing or invalid field ('bbox')" in text
    os.makedirs(tmp_path / "y" / "labels")
    save_jpeg(str(tmp_path / "y" / "images" / "p.jpg"))
    save_jpeg(str(tmp_path / "y" / "images" / "q.jpg"))
    (tmp_path / "y" / "labels" / "p.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n0 0.5 oops\n")
    (tmp_path / "y" / "n.names").write_text("x\n")
    text = "\n".join(check_dataset(tmp_path / "y")["problems"])
    labels = tmp_path / "y" / "labels"
    assert f"{labels / 'p.txt'}:2: unknown class id 7 (1 names)" in text
    assert f"{labels / 'p.txt'}:3: expected 'class cx cy w h', got '0 0.5 oops'" in text
    assert f"{labels / 'q.txt'}: label file missing" in text
