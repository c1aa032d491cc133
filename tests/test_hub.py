"""The reuse paths on files the tests write: hubconf.py through torch.hub (entries, docstrings, a darknet .weights
file, a checkpoint), and detect.detect_objects, the library call (boxes by arithmetic, every kind of input, the
command line's detections)."""
import json
import math
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

import data
import detect
import yolov1
import yolov2
from darknet import save_darknet_weights
from conftest import randomized

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # the folder holding hubconf.py
SHAPE_NAMES = ["circle", "rectangle", "triangle"]


def save_checkpoint(model, class_names, path):
    """The keys of train.py's checkpoints that detect.load_model reads."""
    torch.save({"model_config": model.config, "class_names": list(class_names), "model": model.state_dict()}, path)
    return str(path)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to download fails the test: hubconf.py must need none."""
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr("urllib.request.urlopen", refuse)


# -----------------------------------------------------------------------------
# torch.hub

def test_hub_lists_one_entry_per_preset_with_its_docstring(monkeypatch, no_network):
    # torch.hub.list / help read only GitHub repositories; pointed at this folder, they run as for a GitHub clone
    monkeypatch.setattr(torch.hub, "_get_cache_or_reload", lambda *args, **kwargs: REPO)
    entries = torch.hub.list("owner/repository")
    assert entries == sorted(re.sub(r"\W", "_", name) for name in detect.preset_names())    # yolo.2.0 -> yolo_2_0
    assert {"yolov1", "yolov2_voc", "yolov2_tiny_voc"} <= set(entries)
    doc = torch.hub.help("owner/repository", "yolov2_voc")
    assert doc.startswith("yolov2-voc: YOLOv2 detector") and "20 classes, 416 x 416 input" in doc
    assert "weights:" in doc and "eval mode" in doc


def test_hub_loads_darknet_weights_in_eval_mode(tmp_path, no_network):
    source = randomized(yolov2.build("yolov2-tiny-voc", img_size=64))
    save_darknet_weights(source, tmp_path / "tiny.weights")
    model = torch.hub.load(REPO, "yolov2_tiny_voc", source="local", weights=str(tmp_path / "tiny.weights"),
                           img_size=64)
    assert not model.training and model.class_names == data.VOC_CLASSES      # 20 classes: VOC's names
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))                              # (2, 5*(5+20), 2, 2), same numbers


def test_hub_loads_a_checkpoint_with_its_class_names(tmp_path, no_network):
    source = randomized(yolov1.build("yolov1-shapes"))
    checkpoint = save_checkpoint(source, SHAPE_NAMES, tmp_path / "shapes.pt")
    model = torch.hub.load(REPO, "yolov1_shapes", source="local", weights=checkpoint)
    assert not model.training and model.class_names == SHAPE_NAMES
    x = torch.rand(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    with pytest.raises(ValueError, match="yolov1-shapes"):                   # the entry must match the checkpoint
        torch.hub.load(REPO, "yolov2_voc", source="local", weights=checkpoint)


def test_hub_without_weights_builds_the_preset(no_network):
    model = torch.hub.load(REPO, "yolov2_voc", source="local", img_size=64)
    assert not model.training and model.class_names == data.VOC_CLASSES
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 5 * (5 + 20), 2, 2)    # (N, A*(5+C), 64/32, 64/32)


# -----------------------------------------------------------------------------
# detect.detect_objects

CAT = data.VOC_CLASSES.index("cat")        # 7


def hand_set_tiny_yolov2():
    """yolov2-tiny-voc at 64 x 64 (a 2 x 2 grid) whose 1x1 head outputs its bias alone: in every cell anchor 0 has
    tx = ty = 0, tw = th = ln .5, to = 20 and the cat's logit 20; the other anchors to = -20."""
    model = yolov2.build("yolov2-tiny-voc", img_size=64).eval()
    A, C = model.anchors.shape[0], model.num_classes
    raw = torch.zeros(A, 5 + C)                         # channel a*(5+C) + [tx, ty, tw, th, to, classes]
    raw[:, 4] = -20.0
    raw[0, 2:5] = torch.tensor([math.log(0.5), math.log(0.5), 20.0])
    raw[0, 5 + CAT] = 20.0
    with torch.no_grad():
        model.detect.conv.weight.zero_()
        model.detect.conv.bias.copy_(raw.view(-1))
    return model


# Anchor 0 of yolov2-tiny-voc is 1.08 x 1.19 cells. In cell (row r, column c) of the 2 x 2 grid, as fractions of
# the image: centre ((c + σ(0)) / 2, (r + σ(0)) / 2) = ((c + .5) / 2, (r + .5) / 2),
#   w = 1.08 · e^ln.5 / 2 = .27,   h = 1.19 · e^ln.5 / 2 = .2975
# For a 100 x 60 image (plain resize: fractions times the size), cell (0, 0):
#   x1 = (.25 - .135) · 100 = 11.5, x2 = (.25 + .135) · 100 = 38.5
#   y1 = (.25 - .14875) · 60 = 6.075, y2 = (.25 + .14875) · 60 = 23.925
# and each next column adds .5 · 100 = 50 to x, each next row .5 · 60 = 30 to y. Boxes .27 wide, .5 apart: no
# overlap, NMS keeps all four, listed anchor, row, column. Score σ(20) · e^20 / (e^20 + 19 e^0) ≈ 1 - 4e-8.
HAND_BOXES = [[11.5 + 50 * c, 6.075 + 30 * r, 38.5 + 50 * c, 23.925 + 30 * r] for r in (0, 1) for c in (0, 1)]
HAND_SCORE = 1 / (1 + math.exp(-20)) * math.exp(20) / (math.exp(20) + 19)


def test_library_call_gives_the_boxes_for_every_kind_of_input(tmp_path):
    model = hand_set_tiny_yolov2()
    picture = Image.new("RGB", (100, 60), (90, 120, 150))
    picture.save(tmp_path / "photo.png")
    array = np.asarray(picture)                                          # (60, 100, 3) uint8
    as_uint8 = torch.from_numpy(array.copy()).permute(2, 0, 1)           # (3, 60, 100)
    inputs = [picture, array, as_uint8, as_uint8.float() / 255, str(tmp_path / "photo.png"), picture.convert("L")]
    # a plain resize (the hand arithmetic above); the preset's own default, 60e952ba's letterbox, is checked in
    # tests/test_detect.py
    found = detect.detect_objects(model, inputs, letterbox=False, precision="fp32")   # float32: the arithmetic
    assert len(found) == len(inputs)
    for d in found:
        assert d["names"] == ["cat"] * 4 and d["labels"].tolist() == [CAT] * 4
        assert d["boxes"].tolist() == [pytest.approx(box, abs=1e-4) for box in HAND_BOXES]
        assert d["scores"].tolist() == pytest.approx([HAND_SCORE] * 4)
        assert d["grid"] == (2, 2)
    one = detect.detect_objects(model, picture, letterbox=False)        # one image alone: a list of one
    assert len(one) == 1 and one[0]["boxes"].shape == (4, 4)
    assert len(detect.detect_objects(model, torch.stack([as_uint8] * 3))) == 3     # (N, 3, H, W): N images


def test_library_call_refuses_what_it_cannot_read():
    model = hand_set_tiny_yolov2()
    with pytest.raises(ValueError, match="input 1: a numpy array must be"):
        detect.detect_objects(model, [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="input 0: expected a path, PIL image, numpy array or \\(3, H, W\\) tensor"):
        detect.detect_objects(model, [torch.zeros(8, 8, 3)])
    model.num_classes, model.class_names = 3, None                       # no names known for 3 classes
    with pytest.raises(ValueError, match="class_names"):
        detect.detect_objects(model, [np.zeros((8, 8, 3), np.uint8)])


def test_library_call_equals_the_command_line(tmp_path):
    # random weights, low threshold: many detections of every kind, on images of several sizes, batched together
    torch.manual_seed(0)
    model = randomized(yolov2.build("yolov2-tiny-voc", img_size=64), seed=1)
    checkpoint = save_checkpoint(model, data.VOC_CLASSES, tmp_path / "tiny.pt")
    g = np.random.default_rng(0)
    paths = []
    for k, (w, h) in enumerate([(100, 60), (64, 64), (31, 97)]):
        paths.append(str(tmp_path / f"image{k}.png"))
        Image.fromarray(g.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    args = detect.get_args_parser().parse_args(["--weights", checkpoint, "--conf", "0.03", "--out",
                                                str(tmp_path / "out"), "--save-json", str(tmp_path / "d.json"),
                                                *paths])
    assert detect.main(args)["exit_code"] == 0
    records = json.loads((tmp_path / "d.json").read_text())
    loaded, names, _ = detect.load_model(checkpoint)
    found = detect.detect_objects(loaded, [Image.open(p) for p in paths], names, conf=0.03)
    mine = [(path, name, box, score) for path, d in zip(paths, found)
            for name, box, score in zip(d["names"], d["boxes"].tolist(), d["scores"].tolist())]
    assert len(records) == len(mine) > 10
    for r, (path, name, (x1, y1, x2, y2), score) in zip(records, mine):
        assert (r["image"], r["class"]) == (path, name)
        # the command line writes pixels to 2 decimals (error <= .005) and scores to 4 significant digits
        assert r["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.005 + 1e-4)
        assert r["score"] == pytest.approx(score, rel=5e-4 + 1e-6)
