"""
Detect objects with YOLOv1 / YOLOv2, draw them, and evaluate a dataset split. All of it is in this file.

Paper / darknet -> code
  darknet's test path: RGB, /255, resize_image (or letterbox_image) to the net size ...... preprocess()
  YOLOv1 §2.3 Inference: eq. 1 class-specific scores, then non-maximum suppression ..... detect() -> yolov1.postprocess
  YOLOv2 §2 "Direct location prediction": boxes from the anchors, then NMS ............. detect() -> yolov2.postprocess
  darknet image.c draw_detections: boxes and labels in per-class colours ............... draw(), class_colour()
  YOLOv1 §2: the grid cell holding an object's centre "is responsible for detecting" it  draw(show_grid=True)
  Evaluation (VOC07, VOC12, COCO protocols; comp4 and COCO results files, PR curves) .... evaluate_split()

Weights: a checkpoint written by train.py (preset and class names come from it), or an official darknet
.weights file; such a file holds only numbers, so --model names its cfg (yolov2-voc, yolov2, yolov2-tiny-voc,
yolov2-tiny, ...), and --names its class names file unless they are VOC's 20 or COCO's 80 (darknet's names).

Run:
  python detect.py --weights runs/synthetic/best.pt photo.jpg photos/ --save-json detections.json
  python detect.py --model yolov2-voc --weights yolov2-voc.weights --show-grid photo.jpg
  python detect.py --model yolov2 --weights yolov2.weights photo.jpg            # COCO's 80 classes
  python detect.py --model yolov2-voc --weights yolov2-voc.weights --data VOCdevkit --split 2007/test
  python detect.py --weights runs/synthetic/best.pt --data shapes       # the run's held-out synthetic images
"""
import argparse
import json
import math
import os
import sys
import time
import zipfile
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

import darknet
import data
import metrics
import yolov1
import yolov2

# -----------------------------------------------------------------------------
# Darknet's thresholds. conf applies to the class-specific score (YOLOv1 eq. 1; YOLOv2 objectness x class
# probability); NMS suppresses a box whose IoU with a higher-scored box of its class is > nms.
#   YOLOv1, yolo.c test_yolo: -thresh .2, nms .4 (pjreddie/darknet, unchanged from 2016 to 2018).
#   YOLOv2, detector.c test_detector of the YOLOv2 release (d2dece3, Jan 2017, plain resize_image): -thresh .24,
#     nms .4. Darknet's later, letterboxed test_detector (2018) uses -thresh .5 and nms .45: pass them with
#     --letterbox to reproduce it.
# Evaluation: detector.c validate_detector writes results at thresh .005, nms .45; yolo.c validate_yolo at
#   .001, nms .5 for YOLOv1. We keep .005 for both families (issue 4) and each family's NMS (train.py too).
TEST_DEFAULTS = {"yolov1": dict(conf=0.2, nms=0.4), "yolov2": dict(conf=0.24, nms=0.4)}
EVAL_DEFAULTS = {"yolov1": dict(conf=0.005, nms=0.5), "yolov2": dict(conf=0.005, nms=0.45)}
# The class names of a darknet .weights file without --names, by class count (darknet's data/*.names)
DARKNET_NAMES = {len(data.VOC_CLASSES): data.VOC_CLASSES, len(data.COCO_CLASSES): data.COCO_CLASSES}


def family(preset: str) -> str:
    if preset in yolov1.PRESETS or preset.startswith("yolov1+"):     # "yolov1+resnet18": train.py --backbone
        return "yolov1"
    if preset in yolov2.PRESETS:
        return "yolov2"
    raise ValueError(f"unknown model {preset!r}; expected one of {sorted(yolov1.PRESETS) + sorted(yolov2.PRESETS)}")


# -----------------------------------------------------------------------------
# Loading: a project checkpoint or an official darknet .weights file

def load_model(weights: str, model_name: str | None = None, img_size: int | None = None,
               names_file: str | None = None):
    """-> (model in eval mode, class names, the training config or {}). torch.save writes zip archives; anything
    else is taken to be a darknet .weights file."""
    if zipfile.is_zipfile(weights):
        # weights_only=True: an untrusted checkpoint cannot run code while it is unpickled.
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        preset, config = checkpoint["preset"], checkpoint.get("config") or {}
        if model_name is not None and model_name != preset:
            raise ValueError(f"{weights}: --model does not match the checkpoint: expected {preset!r} "
                             f"(stored in the checkpoint), found --model {model_name!r}")
        if checkpoint.get("task", "detect") != "detect":
            raise ValueError(f"{weights}: a checkpoint of task {checkpoint['task']!r}, not a detector")
        class_names = list(checkpoint["class_names"])
        # the architecture values train.py stores in the config; img_size may be overridden (YOLOv2)
        keys = ("img_size", "batch_norm", "S", "B") if family(preset) == "yolov1" else ("img_size",)
        kwargs = {k: config[k] for k in keys if config.get(k) is not None}
        kwargs.update({"img_size": img_size} if img_size else {})
        if config.get("backbone"):       # train.py --backbone: YOLOv1 on a torchvision ResNet (not the paper)
            try:
                model = yolov1.ResNetYOLOv1(config["backbone"], len(class_names), kwargs.get("img_size", 448),
                                            S=kwargs.get("S", yolov1.S), B=kwargs.get("B", yolov1.B),
                                            pretrained=False)
            except ImportError as error:
                raise ValueError(f"{weights}: a YOLOv1 on {config['backbone']}: {error}") from None
        else:
            model = (yolov1 if family(preset) == "yolov1" else yolov2).build(preset, len(class_names), **kwargs)
        try:
            model.load_state_dict(checkpoint["model"])        # strict: every name and shape must match
        except RuntimeError as error:
            raise ValueError(f"{weights} does not fit {preset!r} with {len(class_names)} classes: {error}") from None
    else:
        if model_name is None:
            raise ValueError(f"{weights}: a darknet .weights file does not say which network it is; name its "
                             f"cfg with --model (one of {sorted(yolov1.PRESETS) + sorted(yolov2.PRESETS)})")
        model = (yolov1 if family(model_name) == "yolov1" else yolov2).build(model_name, img_size=img_size)
        # A file of the wrong size is refused before anything is loaded. YOLOv1's detection-layer order is
        # converted by darknet.py through fc2.darknet_permutation.
        info = darknet.load_darknet_weights(model, weights)
        print(f"loaded {weights}: {info['layers_loaded']} darknet layers, version "
              f"{'.'.join(map(str, info['version']))}, {info['seen']:,} images seen in training")
        class_names = list(DARKNET_NAMES[model.num_classes]) if model.num_classes in DARKNET_NAMES else None
        config = {}
    if names_file:
        class_names = data.read_names(names_file)
    if class_names is None or len(class_names) != model.num_classes:
        found = "none" if class_names is None else len(class_names)
        raise ValueError(f"{model.preset} has {model.num_classes} classes; class names: expected "
                         f"{model.num_classes}, found {found} (give a names file, one name per line, with --names)")
    return model.eval(), class_names, config


# -----------------------------------------------------------------------------
# Darknet's test path: preprocess, forward, postprocess

def preprocess(image: torch.Tensor, net_size: int, letterbox: bool) -> torch.Tensor:
    """(3, h, w) RGB in [0, 1] (darknet: /255, no mean or std) -> (3, net_size, net_size). Darknet's
    resize_image is bilinear with aligned corners, which PIL's resize is not: data.py reproduces it.
    Note: built without OpenCV, darknet decodes with stb_image, which ignores EXIF orientation (we apply it to
    photos, issue 6) and decodes JPEGs with its own IDCT, not libjpeg's as Pillow does, so a few pixel values
    may differ slightly; PNGs decode the same."""
    resize = data.letterbox_darknet if letterbox else data.resize_darknet
    return resize(image, (net_size, net_size))


@torch.no_grad()
def detect(model, images: list[torch.Tensor], conf: float, nms: float, letterbox: bool = False,
           sizes: list[tuple[int, int]] | None = None) -> list[dict]:
    """images: (3, h, w) RGB tensors in [0, 1] of any sizes -> one dict per image: "boxes" (K, 4) pixel xyxy of
    that image (or of `sizes`, (width, height) each), "scores" (K,), "labels" (K,), "grid" (rows, cols)."""
    device = next(model.parameters()).device
    x = torch.stack([preprocess(image, model.img_size, letterbox) for image in images]).to(device)  # (N, 3, H, W)
    sizes = sizes or [(image.shape[2], image.shape[1]) for image in images]
    out = model(x)
    if family(model.preset) == "yolov1":
        grid = tuple(out.shape[1:3])                          # out: (N, S, S, B*5+C)
        detections = yolov1.postprocess(out, sizes, conf_threshold=conf, nms_threshold=nms, B=model.B)
    else:
        grid = tuple(out.shape[2:4])                          # out: (N, A*(5+C), H, W)
        detections = yolov2.postprocess(out, model.anchors, sizes, conf_threshold=conf, nms_threshold=nms,
                                        letterbox=letterbox, net_size=(x.shape[3], x.shape[2]))
    return [{**{k: v.cpu() for k, v in d.items()}, "grid": grid} for d in detections]


# -----------------------------------------------------------------------------
# Drawing, as darknet's draw_detections, with Pillow

# Darknet's colour ramp (image.c `colors`, stored there as b, g, r): magenta, red, yellow, green, cyan, blue.
RAMP = [(1, 0, 1), (1, 0, 0), (1, 1, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1)]


def class_colour(label: int, num_classes: int) -> tuple[int, int, int]:
    """Darknet's get_color: class c sits at c·123457 mod C along the ramp, so that neighbours differ."""
    ratio = (label * 123457 % num_classes) / num_classes * 5
    i, j = math.floor(ratio), math.ceil(ratio)
    t = ratio - i
    return tuple(round(255 * ((1 - t) * RAMP[i][k] + t * RAMP[j][k])) for k in range(3))


def draw(image: Image.Image, det: dict, class_names: list[str], show_grid: bool = False,
         net_size: int | None = None, letterbox: bool = False) -> Image.Image:
    """Boxes labelled "name score" on a copy of image. show_grid: the network's rows x cols grid laid over the
    image, and for each detection the cell holding its centre, tinted, with the centre as a dot (YOLOv1 §2 makes
    that cell responsible for the object; YOLOv2's region layer assigns objects to cells the same way)."""
    image = image.convert("RGBA")
    overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
    pen = ImageDraw.Draw(overlay)
    width = max(1, int(image.height * 0.006))                               # darknet: im.h * .006
    font = ImageFont.load_default(size=max(10, int(image.height * 0.03)))   # darknet: label height im.h * .03
    if show_grid:
        rows, cols = det["grid"]
        # where the network input's corners land in the image (beyond it, in the grey bands, with --letterbox)
        corners = torch.tensor([0.0, 0.0, 1.0, 1.0])
        x0, y0, x1, y1 = data.boxes_to_original(corners, image.size, (net_size, net_size), letterbox).tolist()
        cell_w, cell_h = (x1 - x0) / cols, (y1 - y0) / rows                  # one cell in image pixels
        for c in range(cols + 1):
            pen.line([(x0 + c * cell_w, y0), (x0 + c * cell_w, y1)], fill=(255, 255, 255, 160), width=1)
        for r in range(rows + 1):
            pen.line([(x0, y0 + r * cell_h), (x1, y0 + r * cell_h)], fill=(255, 255, 255, 160), width=1)
    for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
        colour = class_colour(label, len(class_names))
        left, top, right, bottom = box
        if show_grid:
            cx, cy = (left + right) / 2, (top + bottom) / 2
            col = min(cols - 1, max(0, math.floor((cx - x0) / cell_w)))      # the cell holding the centre
            row = min(rows - 1, max(0, math.floor((cy - y0) / cell_h)))
            cell = [x0 + col * cell_w, y0 + row * cell_h, x0 + (col + 1) * cell_w, y0 + (row + 1) * cell_h]
            pen.rectangle(cell, fill=colour + (80,), outline=colour + (255,), width=width)
            pen.ellipse([cx - 2 * width, cy - 2 * width, cx + 2 * width, cy + 2 * width], fill=colour + (255,))
        pen.rectangle([left, top, right, bottom], outline=colour + (255,), width=width)
        # darknet draw_label: the label sits above the box when it fits there, else just inside its top
        text = f"{class_names[label]} {score:.2f}"
        _, _, text_right, text_bottom = pen.textbbox((0, 0), text, font=font)
        height = text_bottom + width
        y = top - height if top - height >= 0 else top
        pen.rectangle([left, y, left + text_right + 2 * width, y + height], fill=colour + (255,))
        pen.text((left + width, y), text, fill=(0, 0, 0, 255), font=font)
    return Image.alpha_composite(image, overlay).convert("RGB")


# -----------------------------------------------------------------------------
# Images and folders

def collect_images(inputs: list[str]) -> list[Path]:
    """Files as given (any extension: an unreadable one is reported); folders searched recursively, in sorted
    order, for files with an image extension (anything else there is not an image, and is passed over)."""
    paths = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in data.IMAGE_EXTENSIONS)
        else:
            paths.append(path)
    return paths


def output_name(path: Path, used: set[str]) -> str:
    """photo.jpg -> photo.png; another photo.jpg (from another folder) -> photo_2.png: names never collide."""
    name, k = path.stem + ".png", 1
    while name.lower() in used:                               # lower(): case-insensitive file systems
        k += 1
        name = f"{path.stem}_{k}.png"
    used.add(name.lower())
    return name


def run_images(args, model, class_names: list[str]) -> dict:
    """Detect on every readable image, draw each into --out, list the unreadable ones at the end."""
    paths, used, records, outputs, failed = collect_images(args.inputs), set(), [], [], []
    if not paths:
        print(f"no images found in {' '.join(args.inputs)}")
        return dict(exit_code=1, detections=[], outputs=[], failed=[])
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        try:
            image = data.load_image(path, exif=True)          # RGB, the photo's EXIF orientation applied
        except (OSError, ValueError) as error:                # data.ImageError is a ValueError naming the file
            failed.append((str(path), str(error)))
            continue
        start = time.perf_counter()
        det = detect(model, [data.image_to_tensor(image)], args.conf, args.nms, args.letterbox)[0]
        ms = (time.perf_counter() - start) * 1000
        out_path = out_dir / output_name(path, used)
        draw(image, det, class_names, args.show_grid, model.img_size, args.letterbox).save(out_path)
        outputs.append(str(out_path))
        print(f"{path}: {len(det['scores'])} objects in {ms:.0f} ms -> {out_path}")
        for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                  det["labels"].tolist()):
            print(f"  {class_names[label]}: {score * 100:.0f}%  [{x1:.0f} {y1:.0f} {x2:.0f} {y2:.0f}]")
            records.append({"image": str(path), "label": label, "class": class_names[label],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    if args.save_json:
        Path(args.save_json).write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
        print(f"wrote {len(records)} detections to {args.save_json}")
    if failed:
        print(f"{len(failed)} of {len(paths)} images could not be read:")
        for path, reason in failed:                          # data.py's messages start with the path
            print(f"  {reason}" if reason.startswith(path) else f"  {path}: {reason}")
    return dict(exit_code=1 if failed else 0, detections=records, outputs=outputs, failed=failed)


# -----------------------------------------------------------------------------
# Evaluation of a dataset split (issue 4)

def open_split(data_dir: str, split: str, img_size: int, config: dict):
    """-> (dataset, COCO category id of each label). data_dir: "shapes" (the held-out synthetic images of the
    checkpoint's run), a VOCdevkit folder (split YEAR/SPLIT, or SPLIT for 2007), a COCO folder with
    annotations/instances_<split>.json and images in <split>/ or images/, a COCO json, or darknet txt labels."""
    if data_dir == "shapes":
        dataset = data.shapes_split("val", config.get("val_images") or 200, img_size, config.get("seed", 0))
        return dataset, list(range(1, len(dataset.class_names) + 1))
    year, _, name = split.rpartition("/")
    coco_json = data_dir if data_dir.endswith(".json") else os.path.join(data_dir, "annotations",
                                                                           f"instances_{split}.json")
    voc_list = os.path.join("VOC" + (year or "2007"), "ImageSets", "Main", name + ".txt")
    if os.path.isfile(coco_json):           # images in <split>/, images/ or beside annotations/ (data.open_dataset)
        dataset = data.open_dataset(coco_json, img_size=img_size)
        # data.COCODataset numbers the categories 0..K-1 in sorted id order; results files need the ids back
        return dataset, dataset.category_ids
    if any(os.path.isfile(os.path.join(d, voc_list)) for d in (data_dir, os.path.join(data_dir, "VOCdevkit"))):
        dataset = data.VOCDataset(data_dir, splits=[(year or "2007", name)], img_size=img_size)
    else:
        dataset = data.open_dataset(data_dir, img_size=img_size)   # darknet txt labels (or a VOC tree without it)
    return dataset, list(range(1, len(dataset.class_names) + 1))


def write_voc_results(results_dir: Path, truths: list[dict], detections: list[dict], class_names: list[str]):
    """comp4_det_test_<class>.txt, one line "image_id score xmin ymin xmax ymax" per detection, as darknet's
    detector.c print_detector_detections writes them: 1-based pixels (+1 on our 0-based boxes), clipped to
    [1, w] x [1, h], %f."""
    files = [open(results_dir / f"comp4_det_test_{name}.txt", "w") for name in class_names]
    for truth, det in zip(truths, detections):
        w, h = truth["size"]
        for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                  det["labels"].tolist()):
            x1, y1, x2, y2 = max(x1 + 1, 1), max(y1 + 1, 1), min(x2 + 1, w), min(y2 + 1, h)
            files[label].write(f"{truth['image_id']} {score:f} {x1:f} {y1:f} {x2:f} {y2:f}\n")
    for f in files:
        f.close()


def write_coco_results(path: Path, truths: list[dict], detections: list[dict], category_ids: list[int],
                       numeric_ids: bool):
    """COCO results json, as darknet's print_cocos: {"image_id", "category_id" (the dataset's own ids),
    "bbox": [x, y, w, h] 0-based pixels clipped to the image, "score"}. Numeric image ids are written as
    numbers (COCO's); others (VOC's "000001") as strings."""
    results = []
    for truth, det in zip(truths, detections):
        w, h = truth["size"]
        image_id = int(truth["image_id"]) if numeric_ids else truth["image_id"]
        for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                  det["labels"].tolist()):
            x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            results.append({"image_id": image_id, "category_id": category_ids[label],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    path.write_text(json.dumps(results))


def evaluate_split(args, model, class_names: list[str], config: dict) -> dict:
    """Detections on every image of the split at a low threshold, then AP under the three protocols."""
    dataset, category_ids = open_split(args.data, args.split, model.img_size, config)
    if len(dataset.class_names) != len(class_names):
        raise ValueError(f"the model's classes do not match the dataset's: expected {len(dataset.class_names)} "
                         f"{list(dataset.class_names)} (dataset {args.data}), found {len(class_names)} "
                         f"{class_names} (weights {args.weights})")
    renamed = [(a, b) for a, b in zip(class_names, dataset.class_names) if a != b]
    if renamed:   # labels match by index; spellings may differ (darknet's coco.names "motorbike", COCO "motorcycle")
        print(f"note: class names differ, labels are matched by index: "
              + ", ".join(f"{a} = {b}" for a, b in renamed))
    if len(dataset) == 0:
        raise ValueError(f"{args.data} {args.split}: no images; " + "; ".join(dataset.problems[:5]))
    truths = [dataset.annotation(i) for i in range(len(dataset))]
    detections, failed, start = [], [], time.perf_counter()
    nothing = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    for first in range(0, len(dataset), args.batch_size):
        batch, loaded = range(first, min(first + args.batch_size, len(dataset))), {}
        for i in batch:
            try:        # the dataset's loader: EXIF rotation only when it makes the annotation's size (issue 6)
                loaded[i] = data.image_to_tensor(dataset.load(i))
            except (OSError, ValueError) as error:            # its objects count as missed; listed at the end
                failed.append((truths[i]["path"], str(error)))
        # boxes in pixels of the annotation's image size (a file resized since is mapped back to it)
        found = detect(model, list(loaded.values()), args.conf, args.nms, args.letterbox,
                       [truths[i]["size"] for i in loaded]) if loaded else []
        found = dict(zip(loaded, found))
        detections += [found.get(i, nothing) for i in batch]
    seconds = time.perf_counter() - start
    print(f"{len(dataset)} images in {seconds:.1f} s ({1000 * seconds / len(dataset):.0f} ms per image), "
          f"{sum(len(d['scores']) for d in detections)} detections")
    results = {protocol: metrics.evaluate(detections, truths, protocol=protocol, num_classes=len(class_names))
               for protocol in ("voc07", "voc12", "coco")}
    print(metrics.format_ap_table(results, class_names))

    results_dir = Path(args.results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    metrics.save_pr_curves_png(results["voc07"], class_names, results_dir / "pr_curves.png")
    write_voc_results(results_dir, truths, detections, class_names)
    write_coco_results(results_dir / "coco_results.json", truths, detections, category_ids,
                       numeric_ids=isinstance(dataset, data.COCODataset))
    print(f"wrote {results_dir}: pr_curves.png (VOC07), comp4_det_test_<class>.txt, coco_results.json")
    if failed:
        print(f"{len(failed)} of {len(dataset)} images could not be read (their objects count as missed):")
        for path, reason in failed:
            print(f"  {reason}" if reason.startswith(path) else f"  {path}: {reason}")
    return dict(exit_code=1 if failed else 0, results=results, detections=detections, failed=failed)


# -----------------------------------------------------------------------------

def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="image files and folders (searched recursively)")
    p.add_argument("--model", help="preset (a darknet cfg name); required with a darknet .weights file, "
                   "checked against a checkpoint's")
    p.add_argument("--weights", required=True, help="a train.py checkpoint or a darknet .weights file")
    p.add_argument("--names", help="class names, one per line (darknet .names): for darknet weights of neither "
                   "VOC's 20 nor COCO's 80 classes (data.VOC_CLASSES, data.COCO_CLASSES); overrides any")
    p.add_argument("--conf", type=float, help="score threshold (default darknet's: YOLOv1 .2, YOLOv2 .24; "
                   "with --data .005)")
    p.add_argument("--nms", type=float, help="NMS IoU threshold, 1.0 disables it (default darknet's: .4; with "
                   "--data YOLOv1 .5, YOLOv2 .45)")
    p.add_argument("--img-size", type=int, help="network input size (default: the checkpoint's or the cfg's)")
    p.add_argument("--letterbox", action="store_true", help="YOLOv2: keep the aspect ratio and pad with grey, as "
                   "darknet's 2018 test path, instead of resizing as the 2016 release")
    p.add_argument("--out", default="predictions", help="folder for the drawn images (default: predictions)")
    p.add_argument("--save-json", help="write the detections here: [{image (the path as given or found), "
                   "label, class, bbox [x, y, w, h] in pixels of the original image, score}]")
    p.add_argument("--show-grid", action="store_true", help="draw the grid and the cell responsible for each box")
    p.add_argument("--data", help="evaluate instead: a VOCdevkit folder, a COCO folder or json, darknet txt "
                   "labels, or 'shapes'")
    p.add_argument("--split", default="test", help="with --data: VOC YEAR/SPLIT or SPLIT (year 2007), COCO "
                   "instances_<SPLIT>.json (default: test)")
    p.add_argument("--results-dir", default="results", help="with --data: where the comp4 files, the COCO "
                   "results json and pr_curves.png go (default: results)")
    p.add_argument("--batch-size", type=int, default=8, help="with --data: images per forward pass (default: 8)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    return p


def main(args) -> dict:
    """-> dict with "exit_code" (0, or 1 when an image could not be read) and what was found: "detections",
    "outputs", "failed"; with --data, "results" per protocol."""
    if not args.inputs and not args.data:
        raise ValueError("nothing to do: give images or folders, or --data to evaluate a dataset")
    model, class_names, config = load_model(args.weights, args.model, args.img_size, args.names)
    if args.letterbox and family(model.preset) == "yolov1":
        raise ValueError("--letterbox: darknet's YOLOv1 (yolo.c) always resizes; letterboxing is YOLOv2's test path")
    model.to(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    defaults = (EVAL_DEFAULTS if args.data else TEST_DEFAULTS)[family(model.preset)]
    args.conf = defaults["conf"] if args.conf is None else args.conf
    args.nms = defaults["nms"] if args.nms is None else args.nms
    print(f"{model.preset} at {model.img_size}, {len(class_names)} classes, conf {args.conf}, nms {args.nms}"
          f"{', letterbox' if args.letterbox else ''}")
    if args.data:
        return evaluate_split(args, model, class_names, config)
    return run_images(args, model, class_names)


if __name__ == "__main__":
    parsed = get_args_parser().parse_args()
    try:
        sys.exit(main(parsed)["exit_code"])
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
