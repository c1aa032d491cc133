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
from data import augment_yolov2, image_to_tensor


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
    shapes = ShapesDataset(3, img_size=32)
    objects = sum(len(shapes.record(i)["labels"]) for i in range(3))
    assert check_annotations(shapes) == f"3 images, {objects} objects"        # no problem: no kind listed
    write_voc(root / "ghosts", {"a": ((40, 30), [("dog", 1, 1, 20, 20, 0)])},
              list_ids=["a"] + [f"g{k}" for k in range(25)])            # 25 problems: the first 20 listed
    with pytest.raises(ValueError, match=r"25 annotations missing\n(  .*\n){20}  \.\.\. and 5 more \(python -m tools"):
        check_annotations(VOCDataset(root / "ghosts", splits=[("2007", "trainval")]))
    write_voc(root / "empty", {"a": ((40, 30), [])})
    with pytest.raises(ValueError, match="dataset unusable: 1 images, 0 objects"):
        check_annotations(VOCDataset(root / "empty", splits=[("2007", "trainval")]), strict=False)
