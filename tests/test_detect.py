"""detect.py end to end on files the tests write: a hand-set YOLOv1 whose boxes are known by arithmetic,
a mixed folder, darknet .weights, and the evaluation of a tiny VOC tree (AP by hand, comp4 and COCO files)."""
import json
import math
import re

import pytest
import torch
from PIL import Image

import data
import detect
import yolov1
import yolov2
from darknet import save_darknet_weights
from tools import devices

CLASS_NAMES = ["circle", "square", "triangle"]
# A small YOLOv1 with the paper's FC head, whose last layer can be set by hand per cell ("yolov1-shapes" itself
# has a 1x1 conv head in the working tree, where one bias is every cell's)
FC_PRESET = "yolov1-shapes-fc" if "yolov1-shapes-fc" in yolov1.PRESETS else "yolov1-shapes"


def hand_set_yolov1(num_classes=3, label=1):
    """FC_PRESET (S=7, B=2) whose last layer outputs its bias alone (weights 0), whatever the image.

    Cell (row 3, column 2), class probabilities one-hot on `label`:
      predictor 0: x = y = .625, sqrt(w) = sqrt(h) = .5, confidence .9
      predictor 1: x = .5, y = .625, sqrt(w) = sqrt(h) = .5, confidence .8
    Every other confidence and class probability is 0, so only these two (box, class) pairs score > 0.
    """
    model = yolov1.build(FC_PRESET, num_classes=num_classes).eval()
    S, B = model.S, model.B
    out = torch.zeros(S, S, B * 5 + num_classes)                         # (S, S, B*5+C), the model's layout
    out[3, 2, 0:5] = torch.tensor([0.625, 0.625, 0.5, 0.5, 0.9])
    out[3, 2, 5:10] = torch.tensor([0.5, 0.625, 0.5, 0.5, 0.8])
    out[3, 2, B * 5 + label] = 1.0
    with torch.no_grad():
        model.fc2.weight.zero_()
        model.fc2.bias.copy_(out.view(-1))
    return model


def save_checkpoint(model, class_names, path):
    """The keys of train.py's checkpoints that detect.py reads (train.py also stores optimizer, rng, ...)."""
    torch.save({"model_config": model.config, "class_names": list(class_names), "model": model.state_dict()}, path)
    return str(path)


def run(tmp_path, *argv):
    """detect.py in float32: these tests pin scores and boxes to the arithmetic (a CPU with native bfloat16 would
    choose bf16, whose 8-bit mantissa moves them; tests/test_precision.py checks that path)."""
    args = detect.get_args_parser().parse_args(["--out", str(tmp_path / "out"), "--precision", "fp32", *argv])
    return detect.main(args)


def grey(width, height):
    return Image.new("RGB", (width, height), (128, 128, 128))


# -----------------------------------------------------------------------------
# Boxes by arithmetic

# For a 70 x 140 (width x height) image, S = 7:
#   predictor 0: centre x = (2 + .625) / 7 * 70 = 26.25, w = .5² * 70 = 17.5  -> x1 = 17.5, x2 = 35
#                centre y = (3 + .625) / 7 * 140 = 72.5, h = .5² * 140 = 35   -> y1 = 55,   y2 = 90
#                score = Pr(class) * confidence = 1 * .9
#   predictor 1: centre x = (2 + .5) / 7 * 70 = 25 -> x1 = 16.25, x2 = 33.75; same y; score .8
#   IoU(0, 1) = (33.75 - 17.5) / (17.5 + 17.5 - 16.25) = 16.25 / 18.75 ≈ .87 > .4: NMS keeps predictor 0 only.
BOX_0 = [17.5, 55.0, 17.5, 35.0]          # [x, y, w, h]
BOX_1 = [16.25, 55.0, 17.5, 35.0]


def test_json_boxes_in_pixels_of_the_original_image(tmp_path):
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    grey(70, 140).save(tmp_path / "photo.png")
    out = run(tmp_path, "--weights", weights, "--save-json", str(tmp_path / "d.json"), str(tmp_path / "photo.png"))
    assert out["exit_code"] == 0
    records = json.loads((tmp_path / "d.json").read_text())
    assert len(records) == 1                                          # predictor 1 suppressed (IoU .87 > .4)
    r = records[0]
    assert set(r) == {"image", "label", "class", "bbox", "score"}
    assert r["image"].endswith("photo.png") and r["label"] == 1 and r["class"] == "square"
    assert r["bbox"] == pytest.approx(BOX_0, abs=1e-3)
    assert r["score"] == pytest.approx(1 * 0.9)
    assert (tmp_path / "out" / "photo.png").is_file()


def test_nms_1_keeps_every_box(tmp_path):
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    grey(70, 140).save(tmp_path / "photo.png")
    out = run(tmp_path, "--weights", weights, "--nms", "1.0", str(tmp_path / "photo.png"))
    assert [d["score"] for d in out["detections"]] == pytest.approx([0.9, 0.8])      # decreasing score
    assert [d["bbox"] for d in out["detections"]] == [pytest.approx(b, abs=1e-3) for b in (BOX_0, BOX_1)]


def test_bf16_rounds_the_hand_set_scores_to_8_bits():
    # hand_set_yolov1's last layer outputs its bias: confidences .9 and .8, class probability 1, boxes of
    # quarters and halves (exact in bfloat16). bfloat16 keeps 8 significant bits: .9 = 1.8 · 2^-1 -> 1.8 · 128 =
    # 230.4 -> 230/256; .8 = 1.6 · 2^-1 -> 204.8 -> 205/256. float32 keeps .9 and .8 to 24 bits.
    model, image = hand_set_yolov1(), data.image_to_tensor(grey(70, 140))
    exact = detect.detect(model, [image], conf=0.2, nms=1.0, precision="fp32")[0]
    rounded = detect.detect(model, [image], conf=0.2, nms=1.0, precision="bf16")[0]
    assert exact["scores"].tolist() == [torch.tensor(0.9).item(), torch.tensor(0.8).item()]
    assert rounded["scores"].tolist() == [230 / 256, 205 / 256]
    xywh = lambda b: [b[0], b[1], b[2] - b[0], b[3] - b[1]]     # noqa: E731
    for found in (exact, rounded):                              # the boxes are exact in both
        assert [xywh(b) for b in found["boxes"].tolist()] == [pytest.approx(b, abs=1e-3) for b in (BOX_0, BOX_1)]


def test_detect_says_which_precision_ran(tmp_path, capsys):
    assert "--precision {fp32,bf16}" in detect.get_args_parser().format_help()
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    grey(70, 140).save(tmp_path / "photo.png")
    for precision in ("fp32", "bf16"):
        args = detect.get_args_parser().parse_args(["--weights", weights, "--out", str(tmp_path / precision),
                                                    "--precision", precision, "--nms", "1.0",
                                                    str(tmp_path / "photo.png")])
        found = detect.main(args)["detections"]
        assert capsys.readouterr().out.splitlines()[0] == f"precision {precision} on cpu: as --precision asks"
        assert [d["score"] for d in found] == ([pytest.approx(0.9), pytest.approx(0.8)] if precision == "fp32"
                                               else [float(f"{v:.4g}") for v in (230 / 256, 205 / 256)])   # printed to 4 digits
    args = detect.get_args_parser().parse_args(["--weights", weights, str(tmp_path / "photo.png")])
    detect.main(args)                                           # no --precision: the CPU's choice, and why
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(f"precision {devices.choose_precision('cpu')} on cpu: this CPU ")


def test_conf_threshold_applies_to_the_class_score(tmp_path):
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    grey(70, 140).save(tmp_path / "photo.png")
    # .85 lies between the two scores .8 and .9: one box left even without NMS
    out = run(tmp_path, "--weights", weights, "--nms", "1.0", "--conf", "0.85", str(tmp_path / "photo.png"))
    assert [d["score"] for d in out["detections"]] == pytest.approx([0.9])


def test_exif_orientation_is_applied(tmp_path):
    # stored 140 wide x 70 high, EXIF orientation 6 ("rotate 90° clockwise to display"): shown 70 x 140,
    # so the boxes are those of the 70 x 140 image above.
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    exif = Image.Exif()
    exif[0x0112] = 6
    grey(140, 70).save(tmp_path / "phone.jpg", exif=exif)
    out = run(tmp_path, "--weights", weights, str(tmp_path / "phone.jpg"))
    assert [d["bbox"] for d in out["detections"]] == [pytest.approx(BOX_0, abs=1e-3)]
    assert Image.open(out["outputs"][0]).size == (70, 140)


def test_show_grid_marks_the_responsible_cell(tmp_path):
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    grey(70, 140).save(tmp_path / "photo.png")
    plain = run(tmp_path / "plain", "--weights", weights, str(tmp_path / "photo.png"))["outputs"][0]
    grid = run(tmp_path / "grid", "--weights", weights, "--show-grid", str(tmp_path / "photo.png"))["outputs"][0]
    # cell (row 3, column 2) spans x 20..30, y 60..80 (cells of 70/7 = 10 by 140/7 = 20 pixels); it holds the
    # centre (26.25, 72.5). (27, 78) is inside the box, away from its outline and label: tinted only with the grid.
    assert Image.open(plain).getpixel((27, 78)) == (128, 128, 128)
    assert Image.open(grid).getpixel((27, 78)) != (128, 128, 128)
    # a grid line at x = 4 * 10 = 40, outside every box: white-ish with the grid only
    assert Image.open(plain).getpixel((40, 10)) == (128, 128, 128)
    assert Image.open(grid).getpixel((40, 10))[0] > 128


# -----------------------------------------------------------------------------
# A mixed folder

def test_mixed_folder_names_never_collide_and_bad_files_are_listed(tmp_path, capsys):
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    photos = tmp_path / "photos"
    for sub in ("a", "b"):
        (photos / sub).mkdir(parents=True)
        grey(70, 140).save(photos / sub / "same.png")              # the same file name in two folders
    (photos / "broken.jpg").write_bytes(b"not a jpeg at all")
    (photos / "notes.txt").write_text("not an image: skipped, not an error")
    out = run(tmp_path, "--weights", weights, str(photos))
    assert out["exit_code"] != 0
    assert [path for path, _ in out["failed"]] == [str(photos / "broken.jpg")]
    assert len(out["outputs"]) == len(set(out["outputs"])) == 2
    assert all(Image.open(p).size == (70, 140) for p in out["outputs"])
    printed = capsys.readouterr().out
    assert "could not be read" in printed and str(photos / "broken.jpg") in printed.split("could not be read")[1]


# -----------------------------------------------------------------------------
# Weights

def test_model_that_contradicts_the_checkpoint_is_refused(tmp_path):
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=f"expected '{FC_PRESET}'.*found --model 'yolov1'"):
        run(tmp_path, "--weights", weights, "--model", "yolov1", str(tmp_path))
    grey(64, 48).save(tmp_path / "photo.png")
    with pytest.raises(ValueError, match="letterbox"):             # darknet's YOLOv1 never letterboxes
        run(tmp_path, "--weights", weights, "--letterbox", str(tmp_path / "photo.png"))


def test_darknet_weights_give_the_checkpoint_detections(tmp_path):
    torch.manual_seed(0)
    model = yolov2.build("yolov2-tiny-voc", img_size=64).eval()        # 2 x 2 grid, 5 anchors, VOC's 20 classes
    save_darknet_weights(model, tmp_path / "tiny.weights")
    checkpoint = save_checkpoint(model, data.VOC_CLASSES, tmp_path / "tiny.pt")
    grey(100, 60).save(tmp_path / "photo.png")
    common = ["--img-size", "64", "--conf", "0.01", "--nms", "1.0", str(tmp_path / "photo.png")]
    from_darknet = run(tmp_path, "--model", "yolov2-tiny-voc", "--weights", str(tmp_path / "tiny.weights"),
                       *common)
    from_checkpoint = run(tmp_path, "--weights", checkpoint, *common)
    assert len(from_darknet["detections"]) > 0
    assert from_darknet["detections"] == from_checkpoint["detections"]
    assert {d["class"] for d in from_darknet["detections"]} <= set(data.VOC_CLASSES)
    # without --model, the size of an official file (yolov2-tiny-voc's, 20-byte header) names the preset
    assert run(tmp_path, "--weights", str(tmp_path / "tiny.weights"), *common)["detections"] == \
        from_darknet["detections"]
    short = tmp_path / "short.weights"                              # one float short: refused, with sizes
    short.write_bytes((tmp_path / "tiny.weights").read_bytes()[:-4])
    with pytest.raises(ValueError, match="size of no official darknet file.*--model"):
        run(tmp_path, "--weights", str(short), str(tmp_path / "photo.png"))
    with pytest.raises(ValueError, match="bytes"):
        run(tmp_path, "--model", "yolov2-tiny-voc", "--weights", str(short), *common)


def test_darknet_weights_of_a_yolov1_with_a_names_file(tmp_path):
    # darknet's YOLOv1 detection layer has its own output order; the round trip through a .weights file must
    # give back the hand-set boxes. 3 classes are not VOC's 20: the names come from --names.
    save_darknet_weights(hand_set_yolov1(), tmp_path / "v1.weights")
    (tmp_path / "shapes.names").write_text("".join(name + "\n" for name in CLASS_NAMES))
    grey(70, 140).save(tmp_path / "photo.png")
    weights = ["--model", FC_PRESET, "--weights", str(tmp_path / "v1.weights")]
    out = run(tmp_path, *weights, "--names", str(tmp_path / "shapes.names"), str(tmp_path / "photo.png"))
    assert [d["class"] for d in out["detections"]] == ["square"]
    assert out["detections"][0]["bbox"] == pytest.approx(BOX_0, abs=1e-3)
    with pytest.raises(ValueError, match="--names"):
        run(tmp_path, *weights, str(tmp_path / "photo.png"))


def test_darknet_weights_of_80_classes_take_cocos_names(tmp_path):
    # yolov2-tiny.cfg is darknet's COCO model: its 80 classes are named by data.COCO_CLASSES, no --names needed
    model = yolov2.build("yolov2-tiny", img_size=64)
    save_darknet_weights(model, tmp_path / "tiny-coco.weights")
    _, names, _ = detect.load_model(str(tmp_path / "tiny-coco.weights"), "yolov2-tiny", 64)
    assert names == data.COCO_CLASSES and len(names) == 80
    (tmp_path / "mine.names").write_text("".join(f"thing{k}\n" for k in range(80)))      # --names still overrides
    _, names, _ = detect.load_model(str(tmp_path / "tiny-coco.weights"), "yolov2-tiny", 64,
                                    str(tmp_path / "mine.names"))
    assert names[0] == "thing0" and names[79] == "thing79"


def hand_set_tiny_yolov2():
    """yolov2-tiny-voc at 64 x 64 (a 2 x 2 grid) whose 1x1 head outputs its bias alone: in every cell anchor 0
    has tx = ty = tw = th = 0, to = 20 and class 3's logit 20; the other anchors to = -20. So each cell has one
    box centred in it, of the anchor's size, score σ(20) · e^20 / (e^20 + 19) ≈ 1."""
    model = yolov2.build("yolov2-tiny-voc", img_size=64).eval()
    A, C = model.anchors.shape[0], model.num_classes
    raw = torch.zeros(A, 5 + C)                         # channel a*(5+C) + [tx, ty, tw, th, to, classes]
    raw[:, 4] = -20.0
    raw[0, 4], raw[0, 5 + 3] = 20.0, 20.0
    with torch.no_grad():
        model.detect.conv.weight.zero_()
        model.detect.conv.bias.copy_(raw.view(-1))
    return model


def test_letterbox_maps_boxes_back_to_the_image(tmp_path):
    weights = save_checkpoint(hand_set_tiny_yolov2(), data.VOC_CLASSES, tmp_path / "tiny.pt")
    grey(100, 60).save(tmp_path / "wide.png")
    pw, ph = yolov2.ANCHORS_TINY_VOC[0]                 # 1.08 x 1.19 cells = .54 x .595 of the 64 x 64 input
    w, h = pw / 2, ph / 2

    def boxes(out):                                     # sorted xyxy, whatever the listing order
        return sorted([x, y, x + bw, y + bh] for x, y, bw, bh in (d["bbox"] for d in out["detections"]))

    def expected(ys):                                   # the 2 x 2 cells, clipped to the 100 x 60 image
        xs = [(c * 100 - w / 2 * 100, c * 100 + w / 2 * 100) for c in (0.25, 0.75)]
        return sorted([max(x1, 0), max(y1, 0), min(x2, 100), min(y2, 60)] for x1, x2 in xs for y1, y2 in ys)

    # Resize: fractions of the input are fractions of the image. Centre .25 -> 15 px, height .595 * 60.
    resized = run(tmp_path, "--weights", weights, "--nms", "1.0", "--no-letterbox", str(tmp_path / "wide.png"))
    ys = [(c * 60 - h / 2 * 60, c * 60 + h / 2 * 60) for c in (0.25, 0.75)]
    assert boxes(resized) == [pytest.approx(b, abs=1e-3) for b in expected(ys)]
    # Letterbox: 100 x 60 fits 64 wide, new_h = 60 * 64 // 100 = 38, centred at (64 - 38) / 2 = 13 rows down.
    # x as above; y_image = (v - 13/64) / (38/64) * 60 for v in fractions of the input, heights / (38/64).
    letterboxed = run(tmp_path, "--weights", weights, "--nms", "1.0", "--letterbox", str(tmp_path / "wide.png"))
    centres, half = [(c - 13 / 64) / (38 / 64) * 60 for c in (0.25, 0.75)], h / 2 / (38 / 64) * 60
    ys = [(c - half, c + half) for c in centres]
    assert boxes(letterboxed) == [pytest.approx(b, abs=1e-3) for b in expected(ys)]
    assert all(d["score"] == pytest.approx(1.0) and d["class"] == data.VOC_CLASSES[3]
               for d in letterboxed["detections"])
    # without either flag, darknet's test path of the preset's revision: yolov2-tiny-voc is 60e952ba's, letterboxed
    default = run(tmp_path, "--weights", weights, "--nms", "1.0", str(tmp_path / "wide.png"))
    assert boxes(default) == boxes(letterboxed)


# -----------------------------------------------------------------------------
# Evaluation of a dataset split

def write_voc_tree(root, objects_by_image, size=(140, 140)):
    """VOCdevkit/VOC2007 with JPEGImages, Annotations and ImageSets/Main/test.txt; boxes 1-based as in VOC."""
    voc = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
    for image_id, objects in objects_by_image.items():
        grey(*size).save(voc / "JPEGImages" / f"{image_id}.jpg")
        xml_objects = "".join(
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for name, (x1, y1, x2, y2) in objects)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{xml_objects}</annotation>")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in objects_by_image))
    return root / "VOCdevkit"


def test_evaluation_of_a_voc_split_and_its_results_files(tmp_path):
    # The hand-set model (class 1 = "bicycle") on 140 x 140 images, after NMS .5 (predictor 1 suppressed):
    #   one box per image, centre (2.625/7 * 140, 3.625/7 * 140) = (52.5, 72.5), 35 x 35 -> [35, 55, 70, 90]
    #   0-based, score .9. Image 000001 has a bicycle exactly there (XML, 1-based: 36 56 71 91): a true positive.
    #   Image 000002 has a bicycle at [0, 0, 30, 30] (XML 1 1 31 31), missed, and the detection there is a false
    #   positive; plus a car, never detected.
    # bicycle: 2 ground truths; detections by score (a tie, kept in image order): TP, FP
    #   recall [.5, .5], precision [1, .5]
    #   voc07: 11 points; t = 0, .1, ..., .5 -> 1 (6 points); t = .6 ... 1 -> 0   => 6/11
    #   voc12: envelope 1 up to recall .5, nothing beyond                          => .5
    #   coco:  the TP has IoU ≈ 1 at every threshold .5 ... .95; 101 recall points, r = 0, .01, ..., .5 -> 1
    #          (51 points), beyond -> 0                                            => 51/101
    # car: 1 ground truth, no detection: AP 0 under every protocol. The other 18 classes: no ground truth, nan.
    root = write_voc_tree(tmp_path, {"000001": [("bicycle", (36, 56, 71, 91))],
                                     "000002": [("bicycle", (1, 1, 31, 31)), ("car", (50, 50, 120, 120))]})
    weights = save_checkpoint(hand_set_yolov1(num_classes=20, label=1), data.VOC_CLASSES, tmp_path / "voc.pt")
    results_dir = tmp_path / "results"
    out = run(tmp_path, "--weights", weights, "--data", str(root), "--split", "2007/test",
              "--results-dir", str(results_dir))
    bicycle, car = 1, data.VOC_CLASSES.index("car")
    ap = {protocol: out["results"][protocol]["ap"] for protocol in ("voc07", "voc12", "coco")}
    assert ap["voc07"][bicycle] == pytest.approx(6 / 11)
    assert ap["voc12"][bicycle] == pytest.approx(0.5)
    assert ap["coco"][bicycle] == pytest.approx(51 / 101)
    assert ap["voc07"][car] == ap["voc12"][car] == ap["coco"][car] == 0
    assert math.isnan(ap["voc07"][0])
    assert out["results"]["voc07"]["map"] == pytest.approx((6 / 11 + 0) / 2)
    assert (results_dir / "pr_curves.png").is_file()

    # VOC comp4: "image_id score xmin ymin xmax ymax", 1-based as darknet writes it (+1 on 0-based boxes)
    lines = (results_dir / "comp4_det_test_bicycle.txt").read_text().splitlines()
    assert len(lines) == 2 and all(re.fullmatch(r"\d{6}( -?\d+\.\d{6}){5}", line) for line in lines)
    fields = [line.split() for line in lines]
    assert [f[0] for f in fields] == ["000001", "000002"]
    assert [float(v) for v in fields[0][1:]] == pytest.approx([0.9, 36, 56, 71, 91], abs=1e-4)
    assert (results_dir / "comp4_det_test_car.txt").read_text() == ""

    # COCO results: image_id, category_id, bbox [x, y, w, h] 0-based pixels, score
    coco = json.loads((results_dir / "coco_results.json").read_text())
    assert len(coco) == 2 and set(coco[0]) == {"image_id", "category_id", "bbox", "score"}
    assert coco[0]["bbox"] == pytest.approx([35, 55, 35, 35], abs=1e-4)
    assert coco[0]["score"] == pytest.approx(0.9)


def test_evaluation_of_a_coco_split_writes_results_the_official_tool_reads(tmp_path, capsys):
    # categories with COCO-style sparse ids, listed out of order: data.COCODataset numbers them by sorted id,
    # circle (2) -> 0, square (5) -> 1, "tri" (9) -> 2: CLASS_NAMES, the checkpoint's classes, but for the
    # spelling of the last one, which is matched by index with a note (as darknet's "motorbike" = "motorcycle").
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val").mkdir()
    for name in ("a.png", "b.png"):
        grey(70, 140).save(root / "val" / name)
    # image 42: a square exactly where the hand-set model puts its box (BOX_0): a true positive;
    # image 43: a circle, never detected, and the square detection there is a false positive.
    coco = {"images": [{"id": 42, "file_name": "a.png", "width": 70, "height": 140},
                       {"id": 43, "file_name": "b.png", "width": 70, "height": 140}],
            "categories": [{"id": 5, "name": "square"}, {"id": 2, "name": "circle"},
                           {"id": 9, "name": "tri"}],
            "annotations": [{"id": 1, "image_id": 42, "category_id": 5, "bbox": BOX_0, "area": 17.5 * 35,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 43, "category_id": 2, "bbox": [0, 0, 20, 20], "area": 400,
                             "iscrowd": 0}]}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(coco))
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    results_dir = tmp_path / "results"
    out = run(tmp_path, "--weights", weights, "--data", str(root), "--split", "val",
              "--results-dir", str(results_dir))
    # square: 1 ground truth; detections TP (image 42), FP (image 43), both .9: recall [1, 1], precision [1, .5];
    # the envelope is 1 at every recall -> AP 1 at every IoU threshold (the TP's IoU is ≈ 1). circle: 0.
    assert "triangle = tri" in capsys.readouterr().out
    assert out["results"]["coco"]["ap"][1] == pytest.approx(1.0)
    assert out["results"]["coco"]["ap"][0] == 0
    assert out["results"]["coco"]["map"] == pytest.approx((1 + 0) / 2)
    results = json.loads((results_dir / "coco_results.json").read_text())
    assert [(r["image_id"], r["category_id"]) for r in results] == [(42, 5), (43, 5)]    # COCO's own ids
    assert results[0]["bbox"] == pytest.approx(BOX_0, abs=1e-3)

    # pycocotools (a test-only cross-check) reads the file and agrees
    # (CI installs pycocotools; without it this test fails here with ModuleNotFoundError)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    truth = COCO(str(root / "annotations" / "instances_val.json"))
    evaluation = COCOeval(truth, truth.loadRes(str(results_dir / "coco_results.json")), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(out["results"]["coco"]["map"], abs=1e-6)


def test_checkpoint_of_a_resnet_backbone_needs_torchvision(tmp_path, monkeypatch):
    # train.py --backbone resnet18 stores backbone "resnet18" in the model's config; detect.py rebuilds it
    # with yolov1.ResNetYOLOv1, which needs torchvision: without it, a clear message instead of a traceback.
    import builtins
    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name == "torchvision" or name.startswith("torchvision."):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    path = tmp_path / "resnet.pt"
    config = dict(family="yolov1", preset="yolov1", num_classes=3, batch_norm=True, img_size=448, S=7, B=2,
                  backbone="resnet18")
    torch.save({"model_config": config, "class_names": CLASS_NAMES, "model": {}}, path)
    with pytest.raises(ValueError, match="resnet18 needs torchvision"):
        detect.load_model(str(path))


# -----------------------------------------------------------------------------
# The papers' experiments: YOLOv1 §4.2's error analysis, YOLOv2 Table 3's sizes

def test_error_analysis_of_a_voc_split(tmp_path, capsys):
    # The tree and model of the evaluation test above: the bicycle detection [35, 55, 70, 90] (0-based) .9 in both
    # images. bicycle: N = 2 objects, so both detections are looked at:
    #   image 000001: on its bicycle (IoU 1): correct
    #   image 000002: its bicycle [0, 0, 30, 30] is elsewhere; the car (XML 50 50 120 120 -> [49, 49, 119, 119])
    #     overlaps, inclusive pixels: (70 - 49 + 1) x (90 - 55 + 1) = 22 x 36 = 792, union 36² + 71² - 792 = 5545,
    #     IoU 792 / 5545 ≈ .14 >= .1; car and bicycle are in one of Hoiem's VOC groups (vehicles): similar
    # car: N = 1, no detection: no share. Pooled: 2 detections, 1 correct, 1 similar.
    root = write_voc_tree(tmp_path, {"000001": [("bicycle", (36, 56, 71, 91))],
                                     "000002": [("bicycle", (1, 1, 31, 31)), ("car", (50, 50, 120, 120))]})
    weights = save_checkpoint(hand_set_yolov1(num_classes=20, label=1), data.VOC_CLASSES, tmp_path / "voc.pt")
    out = run(tmp_path, "--weights", weights, "--data", str(root), "--split", "2007/test", "--error-analysis")
    bicycle = data.VOC_CLASSES.index("bicycle")
    assert out["error_analysis"]["counts"][bicycle].tolist() == [1, 0, 1, 0, 0]
    assert out["error_analysis"]["overall"].tolist() == [1 / 2, 0, 1 / 2, 0, 0]
    printed = capsys.readouterr().out
    assert re.search(r"bicycle +2 +50\.00 +0\.00 +50\.00 +0\.00 +0\.00", printed)
    assert re.search(r"YOLO \(paper\) +65\.50 +19\.00 +6\.75 +4\.00 +4\.75", printed)
    assert (tmp_path / "out" / "error_analysis.png").is_file()
    # the user's groups instead (bicycle is not with car): the car makes it "other"
    mine = run(tmp_path, "--weights", weights, "--data", str(root), "--split", "2007/test", "--error-analysis",
               "--similar", "car,bus", "cat,dog")
    assert mine["error_analysis"]["counts"][bicycle].tolist() == [1, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="bike not among"):
        run(tmp_path, "--weights", weights, "--data", str(root), "--split", "2007/test", "--error-analysis",
            "--similar", "bike,car")


def test_several_sizes_evaluate_the_same_weights_at_each(tmp_path, monkeypatch, capsys):
    # 3 timed passes each, at batch 1 and 2 (8 in use): the figures are not checked here, only that they are there
    monkeypatch.setattr(detect, "SPEED_SECONDS", 0.0)
    monkeypatch.setattr(detect, "SPEED_BATCHES", (1, 2))
    root = write_voc_tree(tmp_path, {"000001": [("boat", (20, 20, 80, 90))], "000002": [("boat", (70, 60, 130, 130))]})
    weights = save_checkpoint(hand_set_tiny_yolov2(), data.VOC_CLASSES, tmp_path / "tiny.pt")
    both = run(tmp_path, "--weights", weights, "--data", str(root), "--split", "2007/test", "--img-size", "32", "64")
    assert [row["size"] for row in both["sizes"]] == [32, 64]
    assert all(row["images_per_s"][1] > 0 and row["images_per_s"][2] > 0 for row in both["sizes"])
    # 1 x 1 grid, then 2 x 2: other boxes, another mAP; at 64 the same as the weights evaluated at 64 alone
    alone = run(tmp_path, "--weights", weights, "--data", str(root), "--split", "2007/test", "--img-size", "64")
    assert both["sizes"][1]["map"] == alone["results"]["voc07"]["map"] != both["sizes"][0]["map"]
    assert (tmp_path / "out" / "speed_accuracy.png").is_file()
    assert re.search(r"\n +32 +\d\.\d{4} +[\d.]+ +[\d.]+ \|", capsys.readouterr().out)


def test_several_sizes_need_a_fully_convolutional_network(tmp_path):
    weights = save_checkpoint(hand_set_yolov1(), CLASS_NAMES, tmp_path / "model.pt")
    root = write_voc_tree(tmp_path, {"000001": [("bicycle", (36, 56, 71, 91))]})
    with pytest.raises(ValueError, match="fully convolutional"):
        run(tmp_path, "--weights", weights, "--data", str(root), "--img-size", "64", "96")
    with pytest.raises(ValueError, match="are for --data"):
        run(tmp_path, "--weights", weights, "--img-size", "64", "96", "photo.png")
    # one size, then an image: argparse hands both to --img-size; the image goes back to the inputs
    grey(70, 140).save(tmp_path / "photo.png")
    assert len(run(tmp_path, "--weights", weights, "--img-size", "128", str(tmp_path / "photo.png"))["outputs"]) == 1
