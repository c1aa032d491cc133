"""Tests of yolov2.py and loss.yolov2_loss. Big models are built once per module, run at batch 1 under
no_grad; the loss is checked term by term by hand and against a loop re-statement of darknet's deltas."""
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import darknet
import data
import yolov2
from tools.darknet_order import darknet_order
from loss import yolov2_loss


@pytest.fixture(scope="module")
def voc_model():
    torch.manual_seed(0)
    model = yolov2.build("yolov2-voc").eval()
    for m in model.modules():                        # non-trivial batch-norm statistics for the round trip
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


# -----------------------------------------------------------------------------
# The networks

def test_output_shapes_320_416_608(voc_model):
    # (N, A*(5+C), size/32, size/32), A = 5. One real forward at 320; the others on the "meta" device,
    # which computes shapes only (seconds saved on 2 cores).
    with torch.no_grad():
        assert voc_model(torch.rand(1, 3, 320, 320)).shape == (1, 5 * (5 + 20), 10, 10)
        for name in yolov2.PRESETS:
            C = yolov2.PRESETS[name]["num_classes"]
            with torch.device("meta"):
                model = yolov2.build(name).eval()
                for size in (320, 416, 608):
                    out = model(torch.empty(2, 3, size, size))
                    assert out.shape == (2, 5 * (5 + C), size // 32, size // 32)
    with pytest.raises(ValueError, match="multiples of 32"):
        voc_model(torch.rand(1, 3, 100, 100))


def test_passthrough_is_concatenated_before_the_main_branch(voc_model):
    # [route] layers=-1,-4: channels 0..255 of the merge conv's input are reorg(passthrough(26x26 map)).
    seen = {}
    hook = voc_model.merge.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        voc_model(x)
        expected = darknet.reorg(voc_model.passthrough(voc_model.stage_a(x)))
    hook.remove()
    assert seen["x"].shape == (1, 256 + 1024, 2, 2)
    assert torch.equal(seen["x"][:, :256], expected)


def test_release_passthrough_is_the_reorg_of_the_26x26x512_map():
    # yolo-voc.2.0.cfg (c6afc7ff): [route] -9, [reorg] stride=2, [route] -1,-3: no conv on the way, so the
    # merge conv's input is [reorg(stage_a(x)) (4 * 512 = 2048 channels), main branch (1024)].
    torch.manual_seed(0)
    model = yolov2.build("yolo-voc.2.0").eval()
    assert isinstance(model.passthrough, torch.nn.Identity) and model.region == "c6afc7ff"
    assert model.anchors[0].tolist() == pytest.approx([1.08, 1.19]) and model.img_size == 416
    seen = {}
    hook = model.merge.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        expected = darknet.reorg(model.stage_a(x))                 # (1, 512, 4, 4) -> (1, 2048, 2, 2)
    hook.remove()
    assert seen["x"].shape == (1, 2048 + 1024, 2, 2) and out.shape == (1, 5 * (5 + 20), 2, 2)
    assert torch.equal(seen["x"][:, :2048], expected)


def cfg_convs(name):
    """(c_in, c_out, size, batch_norm) of every [convolutional] in the cfg, in cfg order (read from
    ../shared/reference/darknet-cfg/<name>.cfg once and written out here)."""
    if name.startswith("yolov2-tiny"):
        last = 1024 if name == "yolov2-tiny-voc" else 512
        chans = [3, 16, 32, 64, 128, 256, 512, 1024, last]
        convs = [(a, b, 3, True) for a, b in zip(chans, chans[1:])]
        return convs + [(last, 125 if name == "yolov2-tiny-voc" else 425, 1, False)]
    darknet19 = [(3, 32, 3), (32, 64, 3), (64, 128, 3), (128, 64, 1), (64, 128, 3), (128, 256, 3),
                 (256, 128, 1), (128, 256, 3), (256, 512, 3), (512, 256, 1), (256, 512, 3), (512, 256, 1),
                 (256, 512, 3), (512, 1024, 3), (1024, 512, 1), (512, 1024, 3), (1024, 512, 1), (512, 1024, 3)]
    if name.endswith(".2.0"):           # c6afc7ff: route -9, reorg (26x26x512 -> 13x13x2048), route -1,-3
        head = [(1024, 1024, 3), (1024, 1024, 3), (4 * 512 + 1024, 1024, 3)]
    else:                               # 60e952ba: route -9, 1x1 conv to 64, reorg, route -1,-4
        head = [(1024, 1024, 3), (1024, 1024, 3), (512, 64, 1), (4 * 64 + 1024, 1024, 3)]
    out = 125 if "voc" in name else 425                           # 5 * (5 + 20), 5 * (5 + 80)
    return [(a, b, k, True) for a, b, k in darknet19 + head] + [(1024, out, 1, False)]


@pytest.mark.parametrize("name", list(yolov2.PRESETS))
def test_preset_layers_parameters_and_weight_file_size(name, tmp_path):
    # the release presets (270 MB files) on the meta device: shapes and sizes only, no file written (their
    # files are read and written in tests/test_official_files.py's way and in the README's darknet parity)
    release = name.endswith(".2.0")
    with torch.device("meta" if release else "cpu"):
        model = yolov2.build(name)
    convs = cfg_convs(name)
    layers = darknet.darknet_layers(model)
    assert [(l.conv.in_channels, l.conv.out_channels, l.conv.kernel_size[0], l.bn is not None)
            for l in layers] == convs
    # learnable: weights + (γ, β) with batch norm, + bias without; the file adds running mean and variance
    assert sum(p.numel() for p in model.parameters()) == sum(a * b * k * k + (2 * b if bn else b)
                                                             for a, b, k, bn in convs)
    floats = sum(a * b * k * k + (4 * b if bn else b) for a, b, k, bn in convs)
    expected = {"yolov2-voc": 202_704_260, "yolov2": 203_934_260,            # the official files
                "yolov2-tiny-voc": 63_471_556, "yolov2-tiny": 44_948_596,
                "yolo-voc.2.0": 268_632_452, "yolo.2.0": 269_862_452}[name]
    assert 16 + 4 * floats == expected == yolov2.PRESETS[name]["weights_bytes"]
    assert darknet.darknet_file_bytes(model, version=(0, 1, 0)) == expected
    if release:
        return
    path = tmp_path / f"{name}.weights"
    darknet.save_darknet_weights(model, path, version=(0, 1, 0))              # 16-byte header (int32 seen)
    assert os.path.getsize(path) == expected
    assert darknet.darknet_file_bytes(model, version=(0, 2, 0)) == expected + 4   # 20-byte header


def test_weight_file_round_trip_gives_identical_outputs(voc_model, tmp_path):
    path = tmp_path / "w.weights"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before = voc_model(x)
        darknet.save_darknet_weights(voc_model, path, seen=12345)
        state = {k: v.clone() for k, v in voc_model.state_dict().items()}
        for p in voc_model.parameters():                 # forget every value the file holds
            p.zero_()
        for m in voc_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.zero_()
                m.running_var.fill_(1)
        info = darknet.load_darknet_weights(voc_model, path)
        after = voc_model(x)
    assert info["seen"] == 12345 and info["layers_loaded"] == info["layers_total"] == 23
    assert torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in voc_model.state_dict().items())


def test_weight_file_one_float_short_is_refused(tmp_path):
    model = yolov2.build("yolov2-tiny")
    path = tmp_path / "short.weights"
    darknet.save_darknet_weights(model, path, version=(0, 1, 0))
    with open(path, "r+b") as f:
        f.truncate(44_948_596 - 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="44,948,592 bytes.*44,948,596"):
        darknet.load_darknet_weights(model, path)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -----------------------------------------------------------------------------
# Decoding and darknet's detections

def test_decode_hand_computed_boxes():
    # A = 2 anchors (1, 1), (2, 1) cells; C = 2; 2 x 2 grid. All raw values 0 except at anchor 1, row 0,
    # column 1: tx = ln 3 (σ = 3/4), th = ln 2, class logits (0, ln 3).
    anchors = torch.tensor([[1.0, 1.0], [2.0, 1.0]])
    raw = torch.zeros(1, 2 * (5 + 2), 2, 2)
    raw[0, 7 + 0, 0, 1] = math.log(3)
    raw[0, 7 + 3, 0, 1] = math.log(2)
    raw[0, 7 + 6, 0, 1] = math.log(3)
    boxes, objectness, class_prob, scores = yolov2.decode(raw, anchors)
    assert boxes.shape == (1, 8, 4) and scores.shape == (1, 8, 2)          # P = A*H*W = 8
    p = 1 * 4 + 0 * 2 + 1                                                  # index a*H*W + row*W + col
    # bx = (1 + 3/4) / 2, by = (0 + 1/2) / 2, bw = 2 * 1 / 2, bh = 1 * 2 / 2
    bx, by, bw, bh = 1.75 / 2, 0.5 / 2, 1.0, 1.0
    assert torch.allclose(boxes[0, p], torch.tensor([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2]))
    # anchor 0, row 1, column 0: bx = (0 + .5) / 2, by = (1 + .5) / 2, bw = bh = 1 / 2
    assert torch.allclose(boxes[0, 0 * 4 + 1 * 2 + 0], torch.tensor([0.0, 0.5, 0.5, 1.0]))
    assert torch.allclose(objectness[0], torch.full((8,), 0.5))            # σ(0)
    assert torch.allclose(class_prob[0, p], torch.tensor([0.25, 0.75]))    # softmax(0, ln 3) = (1/4, 3/4)
    assert torch.allclose(scores[0, p], torch.tensor([0.5 * 0.25, 0.5 * 0.75]))


def test_postprocess_thresholds_are_strict_and_boxes_scale_to_the_image():
    anchors = torch.tensor([[1.0, 1.0]])
    raw = torch.zeros(1, 5 + 2, 1, 1)          # one prediction: box = whole image, objectness .5, probs .5, .5
    raw[0, 6] = 1.0                            # class 1 logit 1: p = (1/(1+e), e/(1+e))
    p0, p1 = yolov2.decode(raw, anchors)[3][0, 0].tolist()                # .5/(1+e), .5e/(1+e) in float32
    assert (p0, p1) == pytest.approx((0.5 / (1 + math.e), 0.5 * math.e / (1 + math.e)))
    out = yolov2.postprocess(raw, anchors, [(200, 100)], conf_threshold=p0, nms_threshold=1.0)[0]
    assert out["labels"].tolist() == [1]       # class 0's score equals the threshold: not > thresh, dropped
    assert out["scores"].tolist() == [p1]
    assert torch.allclose(out["boxes"], torch.tensor([[0.0, 0.0, 200.0, 100.0]]))   # [0, 1] x image size
    # objectness .5 is not > .5: nothing at all, as darknet's `scale > thresh ? scale : 0`
    assert len(yolov2.postprocess(raw, anchors, [(200, 100)], conf_threshold=0.5)[0]["scores"]) == 0


def test_postprocess_letterbox_maps_back_to_the_original_image():
    # 200 x 100 image into 64 x 64: 64/200 < 64/100, so new_w = 64, new_h = 100*64 // 200 = 32, placed
    # at y offset (64 - 32)/2 = 16 px = 1/4. A 2 x 2 grid with anchor (1, 1) and zero raw values gives
    # the box of cell (0, 0): x, y in [0, 1/2] of the input -> x in [0, 100] px, y in [(0 - 1/4)/(1/2),
    # (1/2 - 1/4)/(1/2)] = [-1/2, 1/2] of the image -> [-50, 50] px, clipped to [0, 50].
    raw = torch.zeros(1, 5 + 1, 2, 2)
    out = yolov2.postprocess(raw, torch.tensor([[1.0, 1.0]]), [(200, 100)], conf_threshold=0.1,
                             nms_threshold=1.0, letterbox=True, net_size=(64, 64))[0]
    assert len(out["boxes"]) == 4                                          # 4 cells, 1 class
    assert torch.allclose(out["boxes"][0], torch.tensor([0.0, 0.0, 100.0, 50.0]))
    boxes = data.boxes_to_original(torch.tensor([[0.25, 0.375, 0.75, 0.625]]), (200, 100), (64, 64), letterbox=True)
    assert torch.allclose(boxes, torch.tensor([[50.0, 25.0, 150.0, 75.0]]))  # (.375-.25)/.5 = .25 -> 25 px


def darknet_listing(objectness, prob, thresh):
    """Loop re-statement of get_region_detections + do_nms_sort (no suppression) + draw_detections:
    [(det index, class)] in the order darknet prints them (stable sorts = glibc's merge sort)."""
    P, C = len(prob), len(prob[0])
    dets = [(p, objectness[p] if objectness[p] > thresh else 0.0,
             [s if objectness[p] > thresh and s > thresh else 0.0 for s in prob[p]]) for p in range(P)]
    k, i = P - 1, 0
    while i <= k:                                                          # box.c compaction
        if dets[i][1] == 0:
            dets[i], dets[k] = dets[k], dets[i]
            k -= 1
            continue
        i += 1
    dets = dets[:k + 1]
    for c in range(C):                                                     # one qsort per class
        dets = sorted(dets, key=lambda d: -d[2][c])
    return [(d[0], c) for d in dets for c in range(C) if d[2][c] > 0]


def test_postprocess_lists_detections_in_darknets_order_with_tools_darknet_order():
    torch.manual_seed(1)
    A, C, H, W = 3, 4, 3, 3
    raw = torch.randn(1, A * (5 + C), H, W) * 2
    raw[0, 5:9] = 0.0                          # ties: anchor 0's class probs all equal
    _, objectness, _, scores = yolov2.decode(raw, torch.ones(A, 2))
    listing = darknet_listing(objectness[0].tolist(), scores[0].tolist(), 0.05)
    out = yolov2.postprocess(raw, torch.ones(A, 2), [(W, H)], conf_threshold=0.05, nms_threshold=1.0,
                             order=darknet_order)[0]
    assert out["labels"].tolist() == [c for _, c in listing]
    assert out["scores"].tolist() == [scores[0, p, c].item() for p, c in listing]
    # without the order: the same detections, listed prediction by prediction, classes in order
    plain = yolov2.postprocess(raw, torch.ones(A, 2), [(W, H)], conf_threshold=0.05, nms_threshold=1.0)[0]
    assert sorted(zip(plain["labels"].tolist(), plain["scores"].tolist())) == \
        sorted(zip(out["labels"].tolist(), out["scores"].tolist()))
    kept = (objectness[0] > 0.05).nonzero().flatten().tolist()
    expected = [(p, c) for p in kept for c in range(C) if scores[0, p, c] > 0.05]
    assert plain["scores"].tolist() == [scores[0, p, c].item() for p, c in expected]


def test_postprocess_nms_suppresses_within_a_class_only():
    # Two anchors of the same size on a 1 x 1 grid: identical boxes. Class 0 wins in anchor 0, class 1 in
    # anchor 1 (logits ±2). With nms .45 each class keeps only its best box; with 1.0 all four stay.
    raw = torch.zeros(1, 2 * 7, 1, 1)
    raw[0, 5], raw[0, 6] = 2.0, -2.0
    raw[0, 12], raw[0, 13] = -2.0, 2.0
    anchors = torch.ones(2, 2)
    out = yolov2.postprocess(raw, anchors, [(10, 10)], conf_threshold=0.005, nms_threshold=0.45)[0]
    p = 0.5 / (1 + math.exp(-4))                                           # .5 * softmax(2, -2)[0]
    assert sorted(out["scores"].tolist()) == pytest.approx([p, p])
    assert sorted(out["labels"].tolist()) == [0, 1]
    assert len(yolov2.postprocess(raw, anchors, [(10, 10)], conf_threshold=0.005, nms_threshold=1.0)[0]["scores"]) == 4


# -----------------------------------------------------------------------------
# §2 "Dimension Clusters"

def test_kmeans_recovers_three_box_shapes(capsys):
    shapes = torch.tensor([[0.1, 0.2], [0.5, 0.3], [0.8, 0.9]])
    boxes = shapes.repeat_interleave(torch.tensor([5, 3, 4]), dim=0)
    anchors, mean_iou = yolov2.kmeans_anchors(boxes, 3)
    assert torch.allclose(anchors.float(), shapes) and mean_iou == pytest.approx(1.0)
    # k = 1: the mean box (weighted by count) is the centroid after one step
    _, iou1 = yolov2.kmeans_anchors(boxes, 1)
    assert iou1 < 1
    yolov2.print_dimension_clusters(boxes, ks=range(1, 4), grid=13)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].startswith("k=3  avg IoU 100.0%")


# -----------------------------------------------------------------------------
# loss.yolov2_loss

def xyxy(x, y, w, h):
    return [x - w / 2, y - h / 2, x + w / 2, y + h / 2]


def test_loss_one_object_each_term_by_hand():
    # 2 x 2 grid, anchors (1, 1), (2, 2) cells, C = 2, all raw values 0: σ = .5, exp = 1, p = (.5, .5).
    # Object centre (.4, .3), size .6 x .4, class 1 -> cell i = int(.4*2) = 0, j = int(.3*2) = 0.
    # Shape IoU with anchor 0 (.5 x .5 of the image): .5*.4 / (.24 + .25 - .2) = .2/.29; anchor 1 (1 x 1):
    # .24 / 1 -> anchor 0. Its predicted box: centre (.25, .25), .5 x .5 = [0, 0, .5, .5].
    anchors = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    raw = torch.zeros(1, 2 * 7, 2, 2)
    targets = [{"boxes": torch.tensor([xyxy(0.4, 0.3, 0.6, 0.4)]), "labels": torch.tensor([1])}]
    t = yolov2_loss(raw, targets, anchors, seen=12800)
    scale = 2 - 0.6 * 0.4                                                  # coord_scale (2 - w h)
    # targets: x .4*2 - 0 = .8, y .3*2 = .6; w log(.6*2/1), h log(.4*2/1)
    assert t["xy"].item() == pytest.approx(0.5 * scale * ((0.8 - 0.5) ** 2 + (0.6 - 0.5) ** 2))
    assert t["wh"].item() == pytest.approx(0.5 * scale * (math.log(1.2) ** 2 + math.log(0.8) ** 2))
    # rescore: IoU([0, 0, .5, .5], [.1, .1, .7, .5]) = (.4 * .4) / (.25 + .24 - .16)
    iou = 0.16 / 0.33
    assert t["obj"].item() == pytest.approx(0.5 * 5 * (iou - 0.5) ** 2, rel=1e-4)   # float32 σ, IoU
    # the other 7 predictions: best IoU <= .6 (at most .24), each ½ · 1 · (0 - .5)²
    assert t["noobj"].item() == pytest.approx(7 * 0.5 * 0.25)
    assert t["cls"].item() == pytest.approx(math.log(2))                  # cross-entropy of (.5, .5)
    assert t["prior"].item() == 0
    assert t["total"].item() == pytest.approx(sum(t[k].item() for k in ("xy", "wh", "obj", "noobj", "prior", "cls")))
    # rescore=0 (yolov2-tiny.cfg): objectness target 1
    assert yolov2_loss(raw, targets, anchors, 12800, rescore=False)["obj"].item() == pytest.approx(0.5 * 5 * 0.5 ** 2)


def test_loss_release_coordinate_scale_has_no_small_box_factor():
    # The one-object case above with the release's region layer (c6afc7ff): delta = coord_scale·(t - o),
    # coord_scale 1, where 60e952ba multiplies by 2 - .6·.4 = 1.76. Every other term is the same.
    anchors = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    raw = torch.zeros(1, 2 * 7, 2, 2)
    targets = [{"boxes": torch.tensor([xyxy(0.4, 0.3, 0.6, 0.4)]), "labels": torch.tensor([1])}]
    release = yolov2_loss(raw, targets, anchors, seen=12800, region="c6afc7ff")
    later = yolov2_loss(raw, targets, anchors, seen=12800, region="60e952ba")
    assert release["xy"].item() == pytest.approx(0.5 * 1 * ((0.8 - 0.5) ** 2 + (0.6 - 0.5) ** 2))   # = .05
    assert release["wh"].item() == pytest.approx(0.5 * 1 * (math.log(1.2) ** 2 + math.log(0.8) ** 2))
    assert later["xy"].item() == pytest.approx(1.76 * 0.05)
    assert all(release[k].item() == later[k].item() for k in ("obj", "noobj", "prior", "cls"))
    # the family's loss() takes the revision from the model (yolov2.build sets it from the preset)
    model = SimpleNamespace(anchors=anchors, rescore=True, region=yolov2.PRESETS["yolo-voc.2.0"]["revision"],
                            location="direct")
    assert yolov2.loss(model, raw, targets, 12800)["xy"].item() == pytest.approx(0.05)
    assert yolov2.PRESETS["yolov2-voc"]["revision"] == "60e952ba"
    # 897c346c (yolov2-tiny's) keeps 60e952ba's scale: darknet.REVISIONS says so, the loss reads it
    assert yolov2_loss(raw, targets, anchors, seen=12800, region="897c346c")["xy"].item() == later["xy"].item()
    with pytest.raises(ValueError, match="region must be one of"):
        yolov2_loss(raw, targets, anchors, seen=12800, region="2016")


def test_loss_anchor_warmup_stops_at_12800_images():
    # No objects; tw = .5 everywhere: each of the 2*2*2 predictions adds ½ · .01 · (0 - .5)² while seen < 12800.
    raw = torch.zeros(1, 2 * 7, 2, 2)
    raw[0, 2], raw[0, 9] = 0.5, 0.5
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    anchors = torch.ones(2, 2)
    assert yolov2_loss(raw, empty, anchors, seen=12799)["prior"].item() == pytest.approx(8 * 0.5 * 0.01 * 0.25)
    assert yolov2_loss(raw, empty, anchors, seen=12800)["prior"].item() == 0
    assert yolov2_loss(raw, empty, anchors, seen=12800)["total"].item() == pytest.approx(8 * 0.5 * 0.25)  # noobj


@pytest.mark.parametrize("ratio, ignored", [(0.7, True), (0.5, False)])
def test_loss_no_object_error_ignored_above_iou_06(ratio, ignored):
    # Two anchors of the same shape (1, 1) on a 2 x 2 grid; the object is exactly anchor 0's box in cell
    # (0, 0), [0, 0, .5, .5]. Anchor 1 in that cell predicts width .5·exp(tw) = .5·ratio, same centre and
    # height: IoU = ratio. IoU .7 > .6: no no-object error; .5: counted. Other 6 cells: IoU 0, counted.
    anchors = torch.ones(2, 2)
    raw = torch.zeros(1, 2 * 6, 2, 2)
    raw[0, 6 + 2, 0, 0] = math.log(ratio)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 0.5, 0.5]]), "labels": torch.tensor([0])}]
    t = yolov2_loss(raw, targets, anchors, seen=12800)
    assert t["noobj"].item() == pytest.approx((6 + (0 if ignored else 1)) * 0.5 * 0.25)


def darknet_deltas(raw, truths, anchors, seen, thresh=0.6, rescore=True, region="60e952ba"):
    """Loop re-statement of region_layer.c forward_region_layer (delta) + backward_region_layer_gpu
    (logistic derivatives), float64. raw (N, A*(5+C), H, W) numpy; truths: per image [(x, y, w, h, class)].
    region "c6afc7ff" (the release) scales the object's box deltas by coord_scale alone, not (2 - w·h)."""
    N, _, H, W = raw.shape
    A = len(anchors)
    out = raw.reshape(N, A, -1, H, W).astype(np.float64).copy()
    C = out.shape[2] - 5
    sig = lambda v: 1 / (1 + np.exp(-v))
    out[:, :, [0, 1, 4]] = sig(out[:, :, [0, 1, 4]])
    e = np.exp(out[:, :, 5:] - out[:, :, 5:].max(2, keepdims=True))
    out[:, :, 5:] = e / e.sum(2, keepdims=True)
    delta = np.zeros_like(out)

    def box_iou(a, b):
        def overlap(x1, w1, x2, w2):
            return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
        w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
        inter = 0 if w < 0 or h < 0 else w * h
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    def pred_box(b, n, j, i):
        o = out[b, n, :, j, i]
        return ((i + o[0]) / W, (j + o[1]) / H, np.exp(o[2]) * anchors[n][0] / W, np.exp(o[3]) * anchors[n][1] / H)

    def delta_box(truth, b, n, j, i, scale):
        o = out[b, n, :, j, i]
        target = (truth[0] * W - i, truth[1] * H - j, np.log(truth[2] * W / anchors[n][0]),
                  np.log(truth[3] * H / anchors[n][1]))
        for k in range(4):
            delta[b, n, k, j, i] = scale * (target[k] - o[k])
        return box_iou(pred_box(b, n, j, i), truth)

    for b in range(N):
        for j in range(H):
            for i in range(W):
                for n in range(A):
                    pred = pred_box(b, n, j, i)
                    best = max([box_iou(pred, t) for t in truths[b][:30]], default=0)
                    delta[b, n, 4, j, i] = 1 * (0 - out[b, n, 4, j, i])
                    if best > thresh:
                        delta[b, n, 4, j, i] = 0
                    if seen < 12800:
                        anchor_box = ((i + .5) / W, (j + .5) / H, anchors[n][0] / W, anchors[n][1] / H)
                        delta_box(anchor_box, b, n, j, i, .01)
        for t in truths[b][:30]:
            i, j = int(t[0] * W), int(t[1] * H)
            best, best_n = 0, 0
            for n in range(A):
                iou = box_iou((0, 0, anchors[n][0] / W, anchors[n][1] / H), (0, 0, t[2], t[3]))
                if iou > best:
                    best, best_n = iou, n
            iou = delta_box(t, b, best_n, j, i, 1 * (2 - t[2] * t[3]) if region == "60e952ba" else 1)
            delta[b, best_n, 4, j, i] = 5 * ((iou if rescore else 1) - out[b, best_n, 4, j, i])
            for c in range(C):
                delta[b, best_n, 5 + c, j, i] = 1 * ((c == t[4]) - out[b, best_n, 5 + c, j, i])
    # backward_region_layer_gpu: x, y and objectness deltas times σ' = σ(1 - σ); tw, th, classes as they are
    for k in (0, 1, 4):
        delta[:, :, k] *= out[:, :, k] * (1 - out[:, :, k])
    return delta.reshape(raw.shape)


@pytest.mark.parametrize("seen, region", [(64, "60e952ba"), (12800, "60e952ba"), (64, "c6afc7ff")])
def test_loss_gradient_is_minus_darknet_delta_over_batch(seen, region):
    torch.manual_seed(0)
    N, A, C, H, W = 2, 3, 4, 3, 4
    anchors = [(0.8, 1.2), (2.0, 1.5), (3.1, 2.9)]
    truths = [[(0.30, 0.40, 0.20, 0.30, 1), (0.55, 0.70, 0.60, 0.45, 3),
               (0.33, 0.45, 0.25, 0.35, 2)],                 # same cell and anchor as the first: overwrites it
              [(0.90, 0.10, 0.15, 0.10, 0)]]
    raw = (torch.randn(N, A * (5 + C), H, W) * 0.5).requires_grad_()
    targets = [{"boxes": torch.tensor([xyxy(*t[:4]) for t in ts]), "labels": torch.tensor([t[4] for t in ts])}
               for ts in truths]
    terms = yolov2_loss(raw, targets, torch.tensor(anchors), seen, region=region)
    terms["total"].backward()
    delta = darknet_deltas(raw.detach().numpy(), truths, anchors, seen, region=region)
    np.testing.assert_allclose(N * raw.grad.numpy(), -delta, atol=1e-5)


# -----------------------------------------------------------------------------
# The release's recipe (train.RECIPES by preset name)

def test_release_preset_trains_with_its_cfg_recipe(tmp_path):
    import train
    args = train.get_args_parser().parse_args(["--model", "yolo-voc.2.0", "--data", str(tmp_path),
                                                 "--out", str(tmp_path / "run")])
    train.resolve(args)
    # yolo-voc.2.0.cfg: no burn_in, 1e-4 for the first 100 batches (steps=100, scales=10), jitter .2; the paper's
    # 160 epochs at 1e-3, /10 at 60 and 90
    assert (args.recipe, args.burn_in, args.warmup_lr, args.augment) == ("yolo-voc.2.0", 100, 1e-4, "yolov2-jitter.2")
    assert (args.epochs, args.lr, args.lr_steps, args.img_size) == (160, 1e-3, [60, 90], 416)
    assert [train.learning_rate(args, step, 100) for step in (0, 99, 100, 6000, 9000)] == \
        pytest.approx([1e-4, 1e-4, 1e-3, 1e-4, 1e-5])
    later = train.get_args_parser().parse_args(["--model", "yolov2-voc", "--data", str(tmp_path),
                                                  "--out", str(tmp_path / "run2")])
    train.resolve(later)
    # yolov2-voc.cfg (60e952ba): burn_in=1000, lr·(batch/1000)^4: at batch 500, 1e-3 · .5^4
    assert (later.recipe, later.burn_in, later.warmup_lr, later.augment) == ("yolov2", 1000, None, "darknet-2017")
    assert train.learning_rate(later, 500, 100) == pytest.approx(1e-3 * 0.5 ** 4)
    # the release crops at jitter .2 and keeps boxes of .01 and more (c6afc7ff data.c fill_truth_detection)
    assert data.AUGMENTATIONS["yolov2-jitter.2"].keywords == {"jitter": 0.2, "min_box": 0.01}
