"""Every official darknet weight file of both papers: its size by arithmetic from its cfg (each cfg's layers written
out below from ../shared/reference/darknet-cfg and its history/ folder; nothing is read from there), the preset that
builds exactly that network, and detect.preset_of_file / load_model telling the network from a file's exact size
(on small files the tests write, and on sparse files of the official sizes, which cost no disk)."""
import os
from types import SimpleNamespace

import pytest
import torch

import darknet
import detect
from tools import presets
import yolov1
import yolov2


def conv(c_in, n, size, batch_norm):
    """Floats of a [convolutional] layer: biases n, with batch norm γ, mean, variance (3n), weights n·c·size²."""
    return n + (3 * n if batch_norm else 0) + n * c_in * size * size


def connected(inputs, outputs):
    """Floats of a [connected] layer: biases, then the outputs x inputs weights."""
    return outputs + outputs * inputs


def local(c_in, n, size, out_h, out_w):
    """Floats of a [local] layer (local_layer.c): biases out_h·out_w·n, then one n x (c·size²) matrix per position."""
    return out_h * out_w * n + out_h * out_w * n * c_in * size * size


def convs(spec, batch_norm):
    """spec: (c_in, n, size) of each [convolutional], in cfg order."""
    return sum(conv(c, n, k, batch_norm) for c, n, k in spec)


# Darknet-19 without its classifier (yolo-voc.2.0.cfg, yolov2-voc.cfg layers 0..22: 18 convs, 5 max-pools)
DARKNET19 = [(3, 32, 3), (32, 64, 3), (64, 128, 3), (128, 64, 1), (64, 128, 3), (128, 256, 3), (256, 128, 1),
             (128, 256, 3), (256, 512, 3), (512, 256, 1), (256, 512, 3), (512, 256, 1), (256, 512, 3),
             (512, 1024, 3), (1024, 512, 1), (512, 1024, 3), (1024, 512, 1), (512, 1024, 3)]
# YOLOv1's 24 convs (history/yolo.2015-11.cfg, yolov1.cfg): 448 -> 7x2 conv s2, 4 max-pools, one s2 conv -> 7x7
YOLOV1 = [(3, 64, 7), (64, 192, 3), (192, 128, 1), (128, 256, 3), (256, 256, 1), (256, 512, 3),
          *[(512, 256, 1), (256, 512, 3)] * 4, (512, 512, 1), (512, 1024, 3), *[(1024, 512, 1), (512, 1024, 3)] * 2,
          (1024, 1024, 3), (1024, 1024, 3), (1024, 1024, 3), (1024, 1024, 3)]
# history/yolo-small.2015-11.cfg: 24 convs, stride-2 convs instead of max-pools (448 -> 224, 112, 56, 28, 14, 7)
SMALL_2015 = [(3, 64, 7), (64, 192, 3), (192, 128, 1), (128, 256, 3), (256, 128, 1), (128, 256, 3), (256, 128, 1),
              (128, 512, 3), *[(512, 256, 1), (256, 512, 3)] * 4, (512, 256, 1), (256, 1024, 3), (1024, 512, 1),
              (512, 1024, 3), (1024, 1024, 3), (1024, 1024, 3), (1024, 1024, 3), (1024, 512, 3)]
TINY_YOLOV1 = [(3, 16, 3), (16, 32, 3), (32, 64, 3), (64, 128, 3), (128, 256, 3), (256, 512, 3), (512, 1024, 3),
               (1024, 256, 3)]                                                              # yolov1-tiny.cfg
FAST_2015 = [(3, 16, 3), (16, 32, 3), (32, 64, 3), (64, 128, 3), (128, 256, 3), (256, 512, 3), (512, 1024, 3),
             (1024, 1024, 3), (1024, 1024, 3)]                                              # history/yolo-tiny.2015-11.cfg
TINY_YOLOV2 = [(3, 16, 3), (16, 32, 3), (32, 64, 3), (64, 128, 3), (128, 256, 3), (256, 512, 3), (512, 1024, 3)]

# file (what darknet's site served): preset, float32 values by its cfg, bytes with the 16-byte header
OFFICIAL = {
    # YOLOv2, the release (c6afc7ff): route -9 -> reorg 26x26x512 -> 13x13x2048, route -1,-3 -> 3x3 conv on 3072
    "yolo-voc.weights (2016-11, yolo-voc.2.0.cfg)": (
        "yolo-voc.2.0", convs(DARKNET19 + [(1024, 1024, 3), (1024, 1024, 3), (2048 + 1024, 1024, 3)], True)
        + conv(1024, 5 * (5 + 20), 1, False), 268_632_452),
    "yolo.weights (2016-11, yolo.2.0.cfg)": (
        "yolo.2.0", convs(DARKNET19 + [(1024, 1024, 3), (1024, 1024, 3), (2048 + 1024, 1024, 3)], True)
        + conv(1024, 5 * (5 + 80), 1, False), 269_862_452),
    # YOLOv2 of 60e952ba: a 1x1 conv to 64 before the reorg, route -1,-4 -> 3x3 conv on 256 + 1024
    "yolov2-voc.weights (yolov2-voc.cfg)": (
        "yolov2-voc", convs(DARKNET19 + [(1024, 1024, 3), (1024, 1024, 3), (512, 64, 1), (256 + 1024, 1024, 3)], True)
        + conv(1024, 125, 1, False), 202_704_260),
    "yolov2.weights (yolov2.cfg)": (
        "yolov2", convs(DARKNET19 + [(1024, 1024, 3), (1024, 1024, 3), (512, 64, 1), (256 + 1024, 1024, 3)], True)
        + conv(1024, 425, 1, False), 203_934_260),
    "yolov2-tiny-voc.weights (yolov2-tiny-voc.cfg)": (
        "yolov2-tiny-voc", convs(TINY_YOLOV2 + [(1024, 1024, 3)], True) + conv(1024, 125, 1, False), 63_471_556),
    "yolov2-tiny.weights (yolov2-tiny.cfg)": (
        "yolov2-tiny", convs(TINY_YOLOV2 + [(1024, 512, 3)], True) + conv(512, 425, 1, False), 44_948_596),
    # YOLOv1: the paper's network (2015): 24 convs, connected 4096, dropout, connected 7·7·30 = 1470
    "the paper's network (2015-11, history/yolo.2015-11.cfg)": (
        "yolov1", convs(YOLOV1, False) + connected(7 * 7 * 1024, 4096) + connected(4096, 1470), 1_086_814_216),
    # yolov1.cfg: batch norm, [local] 3x3 256 on the 7x7x1024 map (7x7 out), dropout, connected 7·7·(3·5 + 20)
    "yolov1.weights (yolov1.cfg, served today)": (
        "yolov1-local", convs(YOLOV1, True) + local(1024, 256, 3, 7, 7) + connected(7 * 7 * 256, 1715), 789_312_988),
    "yolov1.weights (2017, connected 1470, B = 2)": (
        "yolov1-local.2017", convs(YOLOV1, True) + local(1024, 256, 3, 7, 7) + connected(7 * 7 * 256, 1470),
        777_018_888),
    "tiny-yolov1.weights (yolov1-tiny.cfg)": (
        "yolov1-tiny", convs(TINY_YOLOV1, True) + connected(7 * 7 * 256, 1470), 108_399_816),
    "yolo-small.weights (2015-11, history/yolo-small.2015-11.cfg)": (
        "yolo-small.2015-11", convs(SMALL_2015, False) + connected(7 * 7 * 512, 2048) + connected(2048, 7 * 7 * 25),
        405_197_876),
    "yolo-tiny.weights (2015-11, history/yolo-tiny.2015-11.cfg)": (
        "yolo-tiny.2015-11", convs(FAST_2015, False) + connected(7 * 7 * 1024, 256) + connected(256, 4096)
        + connected(4096, 1470), 180_357_512),
}


@pytest.mark.parametrize("file", list(OFFICIAL))
def test_official_file_size_from_its_cfg(file):
    preset, floats, size = OFFICIAL[file]
    family = detect.family_of(preset)
    assert 16 + 4 * floats == size == family.PRESETS[preset]["weights_bytes"]
    with torch.device("meta"):                      # shapes only: the network the preset builds has those floats
        model = family.build(preset)
    assert darknet.darknet_file_bytes(model, version=(0, 1, 0)) == size
    assert presets.official_sizes(detect.FAMILIES.values())[size] == (preset, 16)
    assert presets.official_sizes(detect.FAMILIES.values())[size + 4] == (preset, 20)       # darknet 0.2's header: uint64 seen


def test_extraction_files_are_the_first_convs_of_the_paper_network():
    # history/extraction.2015-11.cfg: YOLOv1's first 20 convs, avgpool, connected 1024 -> 1000;
    # extraction.conv.weights holds the 20 convs only (what train.py --weights starts YOLOv1 from)
    conv_floats = convs(YOLOV1[:20], False)
    assert 16 + 4 * conv_floats == 89_612_560
    assert 16 + 4 * (conv_floats + connected(1024, 1000)) == 93_712_560
    with torch.device("meta"):
        assert darknet.darknet_file_bytes(yolov1.build("yolov1"), version=(0, 1, 0), num_layers=20) == 89_612_560


def test_every_official_size_is_recognised_and_no_two_collide(tmp_path):
    sizes = presets.official_sizes(detect.FAMILIES.values())
    with_file = [(name, p["weights_bytes"]) for family in detect.FAMILIES.values()
                 for name, p in family.PRESETS.items() if "weights_bytes" in p]
    assert len(sizes) == 2 * len(with_file)         # a 16- and a 20-byte form each, all different
    for name, size in with_file:
        path = tmp_path / f"{name}.weights"
        with open(path, "wb") as f:
            f.truncate(size)                        # sparse: the size without the bytes
        assert presets.preset_of_file(str(path), detect.FAMILIES.values()) == (name, 16)


# -----------------------------------------------------------------------------
# load_model without --model, on a toy family whose one preset has a 2,016-byte file

class Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.detect = darknet.ConvBlock(3, 125, 1, batch_norm=False, activation="linear")   # 125 + 125·3 floats
        self.num_classes, self.img_size, self.preset = 20, 32, "toy"


@pytest.fixture
def toy_family(monkeypatch):
    family = SimpleNamespace(PRESETS={"toy": dict(weights_bytes=16 + 4 * (125 + 125 * 3))},   # 2,016 bytes
                             build=lambda preset, img_size=None, **kw: Toy())
    monkeypatch.setitem(detect.FAMILIES, "toy", family)
    return family


@pytest.mark.parametrize("version, header", [((0, 1, 0), 16), ((0, 2, 0), 20)])
def test_load_model_tells_the_network_by_the_file_size(toy_family, tmp_path, capsys, version, header):
    torch.manual_seed(0)
    saved = Toy()
    path = tmp_path / "toy.weights"
    darknet.save_darknet_weights(saved, path, seen=640, version=version)
    assert os.path.getsize(path) == 2_016 - 16 + header
    model, names, _ = detect.load_model(str(path))
    assert model.preset == "toy" and len(names) == 20
    assert torch.equal(model.detect.conv.weight, saved.detect.conv.weight)
    out = capsys.readouterr().out
    assert f"{2_016 - 16 + header:,} bytes, the size of the official toy file ({header}-byte header)" in out


def test_unknown_size_is_refused_with_the_known_sizes(toy_family, tmp_path):
    path = tmp_path / "odd.weights"
    darknet.save_darknet_weights(Toy(), path, version=(0, 1, 0))
    with open(path, "ab") as f:
        f.write(b"\0" * 8)                          # 2,024 bytes: no official file has that size
    with pytest.raises(ValueError, match=r"2,024 bytes with a 16-byte header is the size of no official darknet "
                                         r"file.*--model.*"
                                         r"toy 2,016, yolov2-tiny 44,948,596, .*yolo-voc.2.0 268,632,452"):
        detect.load_model(str(path))
    # the header decides too: toy's 16-byte size, but with version 0.2's 20-byte header (4 bytes of values short)
    darknet.save_darknet_weights(Toy(), path, version=(0, 2, 0))
    with open(path, "r+b") as f:
        f.truncate(2_016)
    with pytest.raises(ValueError, match=r"2,016 bytes with a 20-byte header is the size of no official"):
        detect.load_model(str(path))


def test_size_is_checked_exactly_when_model_is_given(tmp_path):
    # yolov2-tiny's file one float short: both sizes in the message, nothing loaded
    path = tmp_path / "short.weights"
    darknet.save_darknet_weights(yolov2.build("yolov2-tiny"), path, version=(0, 1, 0))
    with open(path, "r+b") as f:
        f.truncate(44_948_596 - 4)
    with pytest.raises(ValueError, match="44,948,592 bytes.*needs 44,948,596 bytes"):
        detect.load_model(str(path), "yolov2-tiny")


def test_detect_without_model_refuses_an_unknown_size(tmp_path):
    # detect.py's __main__ prints a ValueError as one line "error: ..."
    import detect
    path = tmp_path / "odd.weights"
    path.write_bytes(b"\0" * 1000)
    with pytest.raises(ValueError, match=f"^{path}: 1,000 bytes with a 16-byte header is the size of no official"):
        detect.main(detect.get_args_parser().parse_args(["--weights", str(path), "x.png"]))
