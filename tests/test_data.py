"""Tests of data.py: VOC, COCO and synthetic datasets, open_dataset, the start-up check. Small files, seconds."""
import json
import os

import numpy as np
import pytest
import torch

import data
from conftest import pixel_box, save_jpeg, voc_xml, write_voc
from data import (COCO_CLASSES, VOC_CLASSES, COCODataset, ShapesDataset, VOCDataset, check_annotations, collate,
                  parse_voc_xml)
from data import augment_yolov2, image_to_tensor, resize_darknet
from PIL import Image


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
    assert data.voc_splits(tmp_path, "trainval") == [("2007", "trainval")] == data.voc_splits(tmp_path / "VOCdevkit",
                                                                                             "trainval", ["2007"])
    assert data.voc_splits(tmp_path, "test") == data.voc_splits(tmp_path, "trainval", years=["2012"]) == []
    assert data.voc_splits(tmp_path / "nowhere", "trainval") == []


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


def test_open_dataset_guesses_coco_and_voc_only(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or directory"):
        data.open_dataset(tmp_path / "nowhere")
    (tmp_path / "obj.names").write_text("a\n")                 # darknet txt labels: tools.darknet_txt
    with pytest.raises(data.UnknownFormat, match="not a VOCdevkit tree or a COCO json"):
        data.open_dataset(tmp_path)
    assert issubclass(data.UnknownFormat, FileNotFoundError)
    save_jpeg(str(tmp_path / "coco" / "val2017" / "a.jpg"))
    os.makedirs(tmp_path / "coco" / "annotations")
    (tmp_path / "coco" / "annotations" / "instances_val2017.json").write_text(json.dumps(
        {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}], "annotations": [],
         "categories": [{"id": 1, "name": "x"}]}))
    coco = data.open_dataset(tmp_path / "coco", img_size=16)    # images in <base>/<split>
    assert isinstance(coco, COCODataset) and coco.problems == [] and coco[0][0].shape == (3, 16, 16)


def test_collate_and_shapes_determinism():
    ds = ShapesDataset(4, img_size=64, seed=3, augment="yolov2")
    images, targets = collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 64, 64) and targets["boxes"].shape[0] == 2  # (N, 3, H, W), (N, T, 4)
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


def test_shapes_batch_draws_what_single_images_draw():
    # the loader's batched fetch (__getitems__) and dataset[i] give the same image and target, in any batch
    ds = ShapesDataset(12, img_size=48, seed=4)
    batch = ds.__getitems__([7, 0, 11, 3])
    for i, (image, target) in zip([7, 0, 11, 3], batch):
        single, expected = ds[i]
        assert torch.equal(image, single) and torch.equal(target["boxes"], expected["boxes"])
        assert torch.equal(target["labels"], expected["labels"]) and target["image_id"] == f"{i:06d}"
        assert torch.equal(image, image_to_tensor(ds.load(i)))           # = the PIL image detect.py reads
    assert torch.equal(ds.render([3, 11])[1], ds.render([11])[0])        # image 11 alone or second: the same
    with pytest.raises(IndexError):
        ds.__getitems__([1, 12])


def test_shape_spans_by_hand():
    # one 5x5 box [0, 0, 5, 5) per shape in an 8-pixel image: pixels 0..4, centre 2, half-extent 2.5
    colour = np.array([1.0, 0.5, 0.0])
    layouts = [(None, [([0, 0, 5, 5], label, colour, orientation)]) for label, orientation in
               [(1, 0), (0, 0), (2, 0), (2, 1)]]
    first, last, colours = data._shape_spans(layouts, 8)
    assert first.shape == last.shape == (4, 1, 8) and colours.shape == (4, 1, 3)        # (N, K, S), (N, K, 3)
    assert colours[0, 0].tolist() == [255, 127, 0]                                     # int(c · 255)
    rows = lambda n: [(int(a), int(b)) for a, b in zip(first[n, 0], last[n, 0])][:5]    # noqa: E731
    assert rows(0) == [(0, 4)] * 5                                                     # rectangle: its box
    assert (first[:, 0, 5:] == 8).all() and (last[:, 0, 5:] == -1).all()               # rows 5..7: nothing
    # circle: half-width of row y = 2.5·sqrt(1 - ((y - 2) / 2.5)²): row 0: 2.5·0.6 = 1.5 -> columns 2 ± 1.5
    # -> 1..3; row 1: 2.5·sqrt(0.84) = 2.29 -> 0..4; row 2: 2.5 -> 0..4 (the box)
    assert rows(1) == [(1, 3), (0, 4), (0, 4), (0, 4), (1, 3)]
    # triangle apex up: half-width of row y = (y / 4)·(4 / 2) + 0.5 = y/2 + 0.5 around column 2
    assert rows(2) == [(2, 2), (1, 3), (1, 3), (0, 4), (0, 4)]
    # apex right: base on column 0, length of row y = (1 - |y - 2| / 2)·4 + 0.5
    assert rows(3) == [(0, 0), (0, 2), (0, 4), (0, 2), (0, 0)]


def test_shapes_later_shape_covers_earlier():
    # two rectangles: the later one's colour wherever they overlap (uint8 arithmetic mod 256 must not leak)
    ds = ShapesDataset(1, img_size=16, seed=0)
    background = ds._layout(0)[0]
    red, blue = np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    image = ds.render([0], [(background, [([2, 2, 10, 10], 1, red, 0), ([6, 6, 14, 14], 1, blue, 0)])])[0]
    assert image[:, 4, 4].tolist() == [255, 0, 0] and image[:, 8, 8].tolist() == [0, 0, 255]
    assert image[:, 13, 13].tolist() == [0, 0, 255] and image[:, 9, 5].tolist() == [255, 0, 0]


def test_fuzz_xml_gives_clean_errors(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "f.xml"
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
# train.py's start-up check: no image decoded

def test_check_annotations(broken_voc):
    root, _ = broken_voc
    with pytest.raises(ValueError, match="dataset unusable"):
        check_annotations(VOCDataset(root, splits=[("2007", "trainval")]))
    dataset = VOCDataset(root, splits=[("2007", "trainval")])
    summary = check_annotations(dataset, strict=False)           # problems counted, but there are objects
    assert summary.startswith(f"{len(dataset)} images, ") and ", 1 boxes clipped" in summary
    assert "unreadable images" not in summary                   # no image decoded
    assert check_annotations(ShapesDataset(3, img_size=32, seed=5)) == "3 images drawn from seed 5"   # no file read
    with pytest.raises(ValueError, match="dataset unusable: 0 images, 0 objects"):
        check_annotations(ShapesDataset(0, img_size=32))
    write_voc(root / "ghosts", {"a": ((40, 30), [("dog", 1, 1, 20, 20, 0)])},
              list_ids=["a"] + [f"g{k}" for k in range(25)])            # 25 problems: the first 20 listed
    with pytest.raises(ValueError, match=r"25 annotations missing\n(  .*\n){20}  \.\.\. and 5 more \(python -m tools"):
        check_annotations(VOCDataset(root / "ghosts", splits=[("2007", "trainval")]))
    write_voc(root / "empty", {"a": ((40, 30), [])})
    with pytest.raises(ValueError, match="dataset unusable: 1 images, 0 objects"):
        check_annotations(VOCDataset(root / "empty", splits=[("2007", "trainval")]), strict=False)


# -----------------------------------------------------------------------------
# The augmentation finished on the device: the worker crops uint8 pixels, finish_batch does the rest on the batch

@pytest.mark.parametrize("augment", [None, "yolov2", "yolov2-jitter.2", "yolov1", "darknet-2015", "darknet-2016"])
def test_batch_finished_on_the_device_equals_the_per_image_functions(tmp_path, augment):
    # three images of other sizes than the output (32 x 32) and of each other, in random colours (the HSV
    # distortion then meets every hue); the per-image path (images.py) is the reference, element for element
    sizes = {"000001": (40, 30), "000002": (50, 61), "000003": (33, 47)}
    write_voc(tmp_path, {k: (size, [("dog", 3, 4, size[0] - 5, size[1] - 2, 0), ("cat", 10, 8, 20, 20, 0)])
                         for k, size in sizes.items()})
    rng = np.random.default_rng(0)
    for k, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
            tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / f"{k}.jpg", quality=95)
    reference = VOCDataset(tmp_path, [("2007", "trainval")], img_size=32, augment=augment, seed=1)
    on_device = VOCDataset(tmp_path, [("2007", "trainval")], img_size=32, augment=augment, seed=1)
    on_device.finish_on_device = True
    for epoch in (0, 3):
        reference.set_epoch(epoch), on_device.set_epoch(epoch)
        crops, targets = collate([on_device[i] for i in range(3)])
        assert crops.dtype == torch.uint8 and targets["boxes"].shape == (3, 2, 4)          # (N, T, 4)
        images = data.finish_batch(crops, targets["augment"], (32, 32))
        for i in range(3):
            image, target = reference[i]
            assert torch.equal(images[i], image)
            assert torch.equal(targets["boxes"][i][targets["valid"][i]], target["boxes"])
            assert torch.equal(targets["labels"][i][targets["valid"][i]], target["labels"])


def test_whole_batch_at_its_size_is_only_scaled():
    # the synthetic shapes without augmentation: every image whole at the output size, so collate marks the batch
    # "whole" and finish_batch skips the placing, resizing and mirroring, which would leave it bit for bit as it is
    shapes = ShapesDataset(4, img_size=32, seed=3)
    shapes.finish_on_device = True
    crops, targets = collate(shapes.__getitems__([0, 1, 2, 3]))
    assert crops.dtype == torch.uint8 and targets["augment"]["whole"] is True
    fast = data.finish_batch(crops, targets["augment"], (32, 32))
    slow = data.finish_batch(crops, {**targets["augment"], "whole": False}, (32, 32))
    assert torch.equal(fast, slow) and torch.equal(fast, crops.float() / 255)
    reference = ShapesDataset(4, img_size=32, seed=3)                        # dataset[i] finished per image
    assert all(torch.equal(fast[i], reference[i][0]) for i in range(4))
    # at another size (multi-scale) the resize runs: the same as for a batch not marked whole
    assert torch.equal(data.finish_batch(crops, targets["augment"], (24, 24)),
                       data.finish_batch(crops, {**targets["augment"], "whole": False}, (24, 24)))
    # a flipped, cropped or smaller image leaves the batch unmarked
    for change in ({"flip": True}, {"inside": torch.tensor([1, 0, 32, 32])}, {"size": torch.tensor([31, 32])}):
        samples = shapes.__getitems__([0, 1])
        samples[1][1]["augment"] = {**samples[1][1]["augment"], **change}
        assert collate(samples)[1]["augment"]["whole"] is False


def test_place_image_augmentation_is_finished_in_the_workers(tmp_path):
    # "darknet-2017" (place_image on a canvas of the output size) has no plan for the device: with
    # finish_on_device the workers finish it as without, and the batch arrives as float images, no "augment"
    write_voc(tmp_path, {"000001": ((40, 30), [("dog", 3, 4, 35, 28, 0)]), "000002": ((50, 61), [("cat", 10, 8, 40, 50, 0)])})
    reference = VOCDataset(tmp_path, [("2007", "trainval")], img_size=32, augment="darknet-2017", seed=1)
    on_device = VOCDataset(tmp_path, [("2007", "trainval")], img_size=32, augment="darknet-2017", seed=1)
    on_device.finish_on_device = True
    assert "darknet-2017" not in data.PLANS
    images, targets = collate([on_device[i] for i in range(2)])
    assert images.dtype == torch.float32 and "augment" not in targets
    for i in range(2):
        image, target = reference[i]
        assert torch.equal(images[i], image)
        assert torch.equal(targets["boxes"][i][targets["valid"][i]], target["boxes"])


def test_plans_take_their_augmentations_floors():
    # the device's half drops the boxes its revision's data.c drops (darknet.REVISIONS min_box)
    for name, plan in data.PLANS.items():
        if name != "yolov1":
            assert plan.keywords["min_box"] == data.AUGMENTATIONS[name].keywords["min_box"], name
    assert data.PLANS["darknet-2015"].keywords["min_box"] == 0.01 and data.PLANS["yolov2"].keywords["min_box"] == 0.001


def test_device_resize_is_resize_darknet_for_each_size():
    # the batch's images padded to the largest; each one resized from its own size, up and down, and kept as is
    torch.manual_seed(0)
    sources = [torch.rand(3, 7, 9), torch.rand(3, 20, 5), torch.rand(3, 12, 12), torch.rand(3, 1, 1)]
    padded = torch.zeros(4, 3, 20, 12)
    for n, s in enumerate(sources):
        padded[n, :, :s.shape[1], :s.shape[2]] = s
    sizes = torch.tensor([[s.shape[2], s.shape[1]] for s in sources])
    out = data.resize_batch(padded, sizes, (12, 12))
    for n, s in enumerate(sources):
        assert torch.equal(out[n], resize_darknet(s, (12, 12)))


@pytest.mark.cuda
def test_batch_finished_on_cuda_equals_the_cpu_and_never_synchronizes():
    # one kernel per operation on either device, in the same float32 order: equal up to the last bit where the GPU
    # library rounds a division or a multiply-add differently (atol 1e-6 of [0, 1])
    torch.manual_seed(0)
    crops = torch.randint(0, 256, (3, 3, 40, 50), dtype=torch.uint8)
    plan = {"size": torch.tensor([[50, 40], [31, 22], [17, 40]]), "inside": torch.tensor([[0, 0, 50, 40]] * 3),
            "fill": torch.full((3,), float("nan"), dtype=torch.float64), "flip": torch.tensor([True, False, True]),
            "hue": torch.tensor([0.05, -0.1, 0.02], dtype=torch.float64),
            "saturation": torch.tensor([1.2, 0.7, 1.0], dtype=torch.float64),
            "exposure": torch.tensor([0.9, 1.4, 1.0], dtype=torch.float64), "distort": "hsv"}
    cpu = data.finish_batch(crops, plan, (32, 32))
    plan_cuda = {k: v.cuda() if torch.is_tensor(v) else v for k, v in plan.items()}
    crops_cuda = crops.cuda()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu = data.finish_batch(crops_cuda, plan_cuda, (32, 32))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-6)
