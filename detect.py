"""
Detect objects with YOLOv1 / YOLOv2 as darknet does, draw them, and evaluate a dataset split.

Paper / darknet -> code
  darknet's test path: RGB, /255, resize_image (or letterbox_image) to the net size ...... preprocess()
  YOLOv1 §2.3 Inference: eq. 1 class-specific scores, then NMS ............ predict() -> yolov1.detections
  YOLOv2 §2 "Direct location prediction": boxes from the anchors, then NMS . predict() -> yolov2.detections
  darknet image.c draw_detections: boxes and labels in per-class colours ........ drawing.draw(), class_colour()
  YOLOv1 §2: the grid cell holding an object's centre "is responsible for detecting" it  drawing.draw(show_grid=True)
  Evaluation: every detection above metrics.EVAL_CONF, then VOC07, VOC12 and COCO AP .... evaluate(), main()
  YOLOv1 §4.2, Figure 4: the error analysis of the top detections (--error-analysis) ..... error_analysis_report()
  YOLOv2 Table 3, Figure 4: one network at several sizes, mAP and speed (--img-size S S ...) evaluate_sizes()
  YOLO9000 §4: ImageNet's 200 detection classes through inet9k.map, the ILSVRC protocol .. evaluate_imagenet()
  which network, from which file: a train.py checkpoint or a darknet .weights file ........ load_model(), load_weights()
  not the papers: the command line's detections as a library call ......................... detect_objects()
  not the papers: bfloat16 where the CPU computes in it, else float32 (--precision) ..... predict(), tools/devices.py

FAMILIES names each detector family's file (yolov1.py, yolov2.py, yolo9000.py); every family file has the same
names (PRESETS, build, detections, TEST_THRESHOLDS, EVAL_NMS), so nothing below branches on the family. Weights: a
train.py checkpoint (it stores the model's configuration and class names), or an official darknet .weights file,
which holds only numbers: its exact size names the preset of an official file (tools/presets.py), else --model
names its cfg; --names gives its class names unless they are VOC's 20 or COCO's 80.
Beside it (not the papers, tools/): drawing.py, checkpoints.py (reading one), presets.py; imported at their
options' use: results.py, plots.py, darknet_order.py, export.py, progress.py.

Run:
  python detect.py --weights runs/synthetic/best.pt photo.jpg photos/ --save-json detections.json
  python detect.py --model yolov2-voc --weights yolov2-voc.weights --show-grid photo.jpg
  python detect.py --model yolov2 --weights yolov2.weights photo.jpg            # COCO's 80 classes
  python detect.py --model yolov2-voc --weights yolov2-voc.weights --data VOCdevkit --split 2007/test
  python detect.py --weights runs/synthetic/best.pt --data shapes       # the run's held-out synthetic images
  python detect.py --weights runs/synthetic/best.pt --data shapes --error-analysis      # YOLOv1 Figure 4
  python detect.py --weights yolo-voc.weights --data VOCdevkit --img-size 288 352 416 480 544   # YOLOv2 Table 3
  python detect.py --weights yolo9000.weights --tree 9k.tree --names 9k.names --data ILSVRC2015 \\
      --inet-map inet9k.map --coco-map coco9k.map                      # YOLO9000 §4: 19.7 mAP, 16.0 on 156
"""
import argparse
import functools
import json
import os
import re
import statistics
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import darknet
import data
import metrics
import yolo9000
import yolov1
import yolov2
from tools import checkpoints, devices, drawing, presets

# -----------------------------------------------------------------------------
# Which network, from which file: the detector families, a train.py checkpoint or an official darknet file

# One file per detector family, with the same names (PRESETS, build, loss, detections, TEST_THRESHOLDS, EVAL_NMS,
# RECIPE), so that nothing below branches on the family; a new family is one more file and one more entry.
FAMILIES = {"yolov1": yolov1, "yolov2": yolov2, "yolo9000": yolo9000}

# The class names of a darknet .weights file without --names, by class count (darknet's data/*.names)
DARKNET_NAMES = {len(data.VOC_CLASSES): data.VOC_CLASSES, len(data.COCO_CLASSES): data.COCO_CLASSES}


def family_of(preset: str):
    """The family file (yolov1, yolov2, ...) whose PRESETS hold preset."""
    for family in FAMILIES.values():
        if preset in family.PRESETS:
            return family
    raise ValueError(f"unknown model {preset!r}; expected one of {preset_names()}")


def preset_names() -> list[str]:
    return sorted(name for family in FAMILIES.values() for name in family.PRESETS)


def load_model(weights: str, model_name: str | None = None, img_size: int | None = None,
               names_file: str | None = None, tree_file: str | None = None, partial: bool = False):
    """-> (model in eval mode, class names, the training configuration or {}). A checkpoint says which network
    it holds (its "model_config"); a darknet .weights file does not: model_name names its cfg, or else the file's
    exact size names the preset (preset_of_file), which is printed. partial: see load_weights (detect.py --partial)."""
    weights = checkpoints.weights_in(weights)                   # a run's folder: its best.pt
    if zipfile.is_zipfile(weights):     # torch.save writes zip archives; weights_only: unpickling runs no code
        checkpoint = checkpoints.load_checkpoint(weights)
        config = dict(checkpoint["model_config"])               # what the family's build() takes, and "family"
        if config["family"] not in FAMILIES:
            raise ValueError(f"{weights}: a checkpoint of a {config['family']} model ({config['preset']}), "
                             "not a detector")
        if model_name is not None and model_name != config["preset"]:
            raise ValueError(f"{weights}: --model does not match the checkpoint: expected {config['preset']!r} "
                             f"(stored in the checkpoint), found --model {model_name!r}")
        try:                            # train.py --backbone: yolov1.ResNetYOLOv1 needs torchvision
            model = FAMILIES[config.pop("family")].build(**dict(config, img_size=img_size or config["img_size"]))
        except ImportError as error:
            raise ValueError(f"{weights}: {error}") from None
        except ValueError as error:     # an input size the network refuses (not a multiple of its stride, ...)
            raise ValueError(f"--img-size {img_size}: {error}" if img_size and "img_size" in str(error)
                             else str(error)) from None
        class_names, train_config = list(checkpoint["class_names"]), checkpoint.get("config") or {}
    else:
        check_darknet_file(weights)
        if model_name is None:          # a darknet file does not say which network it holds; its size does
            model_name, header = presets.preset_of_file(weights, FAMILIES.values())
            print(f"{weights}: {os.path.getsize(weights):,} bytes, the size of the official {model_name} file "
                  f"({header}-byte header): using --model {model_name}")
        # YOLO9000's classes are the nodes of a WordTree: darknet's tree file (9k.tree) gives it (detect.py --tree)
        family = family_of(model_name)
        try:
            model = family.build(model_name, img_size=img_size, **({"tree": tree_file} if tree_file else {}))
        except ValueError as error:     # an input size the network refuses (not a multiple of its stride, ...)
            raise ValueError(f"--img-size {img_size}: {error}" if img_size and "img_size" in str(error)
                             else str(error)) from None
        # a WordTree's nodes are named by their WordNet ids (9k.names gives words: --names)
        class_names = list(model.tree["ids"]) if hasattr(model, "tree") else DARKNET_NAMES.get(model.num_classes)
        train_config = {}
    print(load_weights(model, weights, partial))
    if names_file:
        class_names = data.read_names(names_file)
    if class_names is None or len(class_names) != model.num_classes:
        found = "none" if class_names is None else len(class_names)
        raise ValueError(f"{model.preset} has {model.num_classes} classes; class names: expected "
                         f"{model.num_classes}, found {found} (give a names file, one name per line, with --names)")
    model.class_names = list(class_names)     # detect_objects' default names, as torch.hub's models have them
    return model.eval(), list(class_names), train_config


# What a file given as --weights is when it is neither a checkpoint nor darknet's: its first bytes say
FILE_KINDS = [(b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
              (b"RIFF", "a RIFF file (WebP image, WAV, AVI)")]


def check_darknet_file(path: str) -> None:
    """Refuse with one line a file that is neither a train.py checkpoint (a zip archive, checked before) nor a
    darknet .weights file: an image, an ONNX model, a text file (log.csv), anything without darknet's header."""
    with open(path, "rb") as f:
        head = f.read(512)
    kind = next((name for magic, name in FILE_KINDS if head.startswith(magic)), None)
    if kind is None and path.endswith(".onnx"):
        kind = "an ONNX model: run it with onnxruntime, or give the checkpoint it was exported from"
    if kind is None and head:
        try:                            # a darknet header holds zero bytes: never printable text
            text = head.decode("utf-8")
            kind = "a text file" if all(c.isprintable() or c in "\r\n\t" for c in text) else None
        except UnicodeDecodeError:      # binary (or cut inside a character): not text
            pass
    if kind is None:
        try:
            darknet.read_header(path)
        except ValueError as error:     # its message starts with the path
            kind = str(error).removeprefix(path).lstrip(": ")
    if kind:
        raise ValueError(f"{path}: neither a train.py checkpoint nor a darknet .weights file ({kind})")


def load_weights(model, path: str, partial: bool = False) -> str:
    """A train.py checkpoint or a darknet .weights file into model -> a one-line message. A darknet file must hold
    exactly the model's values (its size is checked before anything is loaded), or with partial=True its first
    layers (extraction.conv.weights, darknet19_448.conv.23). YOLOv1's detection-layer order is converted by
    darknet.load_darknet_weights through the permutation yolov1.py sets on its last connected layer."""
    path = checkpoints.weights_in(path)                         # a run's folder: its best.pt
    if zipfile.is_zipfile(path):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        checkpoints.load_state(model, checkpoint, path)
        where = ("" if "schedule" not in checkpoint else " at " + checkpoints.position(   # counted as train.py counts
            checkpoint["epoch"], checkpoint.get("epoch_step", 0), checkpoint["schedule"]["steps_per_epoch"])
            + f", {checkpoint['seen']:,} images seen")
        return f"loaded {path}: {model.preset}{where}"
    check_darknet_file(path)
    info = darknet.load_darknet_weights(model, path, prefix_ok=partial)
    part = "all" if info["layers_loaded"] == info["layers_total"] else "the first"
    return (f"loaded {path}: {part} {info['layers_loaded']} of {info['layers_total']} darknet layers "
            f"({darknet.header_text(info)}, {info['seen']:,} images seen)")


def test_thresholds(model) -> dict:
    """darknet's test thresholds for model: those of the darknet revision that made its preset's file
    (darknet.REVISIONS: -thresh and NMS of that revision's yolo.c or detector.c); for a network without one (the
    synthetic demos) its family's TEST_THRESHOLDS."""
    if getattr(model, "revision", None):
        row = darknet.revision(model.revision)
        return dict(conf=row["test_conf"], nms=row["test_nms"])
    return dict(FAMILIES[model.config["family"]].TEST_THRESHOLDS)


def test_letterbox(model) -> bool:
    """darknet's test-time resizing for model: letterbox_image for the files of 60e952ba and later, resize_image
    before (darknet.REVISIONS); a plain resize for a network without a revision."""
    return bool(getattr(model, "revision", None)) and darknet.revision(model.revision)["letterbox"]


# -----------------------------------------------------------------------------
# Darknet's test path: preprocess, forward, the family's post-processing

def preprocess(image: torch.Tensor, net_size: int, letterbox: bool) -> torch.Tensor:
    """(3, h, w) RGB in [0, 1] (darknet: /255, no mean or std) -> (3, net_size, net_size) by darknet's resize_image
    (bilinear, corners aligned: not PIL's resize) or letterbox_image. Note: darknet built without OpenCV decodes
    with stb_image, which ignores EXIF orientation (we apply it to photos) and has its own JPEG IDCT, so a few
    pixel values may differ from Pillow's; PNGs decode the same."""
    resize = data.letterbox_darknet if letterbox else data.resize_darknet
    return resize(image, (net_size, net_size))


@torch.no_grad()
def predict(model, x: torch.Tensor, sizes: list[tuple[int, int]], conf: float, nms: float, letterbox: bool = False,
            order=None, precision: str | None = None) -> list[dict]:
    """x (N, 3, H, W) preprocessed images -> one dict per image: "boxes" (K, 4) pixel xyxy of an image of
    sizes[n] = (width, height), "scores" (K,), "labels" (K,), "grid" (rows, cols). order: see yolov2.postprocess.
    precision: "fp32", "bf16" (bfloat16 autocast), or None: the device's choice (devices.choose_precision: bf16 on a
    CPU that computes in bfloat16 natively). Decoding and NMS run in float32 either way."""
    device = next(model.parameters()).device
    precision, x = devices.choose_precision(device.type, precision), x.to(device)
    if precision == "bf16":     # oneDNN's bfloat16 convolutions work in NHWC: an NCHW input costs ~2x (bench_bf16.py)
        x = x.contiguous(memory_format=torch.channels_last)
    with devices.autocast(device.type, precision):
        out = model(x)
    out = out.float()
    if not torch.isfinite(out).all():       # never print NaN scores as detections
        raise ValueError(f"{model.preset}: the network's output holds NaN or inf: its weights are broken")
    found = FAMILIES[model.config["family"]].detections(model, out, sizes, conf, nms, letterbox,
                                                        (x.shape[3], x.shape[2]), order)
    return [{k: v.cpu() if torch.is_tensor(v) else v for k, v in d.items()} for d in found]


def detect(model, image_list: list[torch.Tensor], conf: float, nms: float, letterbox: bool = False,
           order=None, precision: str | None = None) -> list[dict]:
    """(3, h, w) RGB tensors in [0, 1] of any sizes -> predict()'s dicts, boxes in pixels of each image."""
    x = torch.stack([preprocess(image, model.img_size, letterbox) for image in image_list])   # (N, 3, H, W)
    return predict(model, x, [(image.shape[2], image.shape[1]) for image in image_list], conf, nms, letterbox, order,
                   precision)


def any_to_tensor(x, name="input"):
    """A file path (decoded as detect.py does: EXIF orientation applied), a PIL image of any mode, a numpy array
    (H, W, 3) uint8 RGB, or a tensor (3, H, W) RGB, uint8 or float in [0, 1] -> (3, H, W) float32 in [0, 1]
    (detect.detect_objects' inputs). name starts the error message."""
    if isinstance(x, (str, os.PathLike)):
        return data.image_to_tensor(data.load_image(x, exif=True))
    if isinstance(x, Image.Image):
        return data.image_to_tensor(data.to_rgb(x))
    if isinstance(x, np.ndarray):
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"{name}: a numpy array must be (H, W, 3) uint8 RGB, got {x.shape} {x.dtype}")
        x = torch.from_numpy(x.copy()).permute(2, 0, 1)      # (3, H, W); a copy: the array may be read-only
    if not torch.is_tensor(x) or x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"{name}: expected a path, PIL image, numpy array or (3, H, W) tensor, got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
    return x.float().div(255) if x.dtype == torch.uint8 else x.float()


def detect_objects(model, inputs, class_names=None, conf=None, nms=None, letterbox=None, batch_size=8,
                   precision=None) -> list[dict]:
    """The library call: the command line's detections from a script. model: load_model's or torch.hub's
    (hubconf.py). inputs: a list of (or one) paths, PIL images, numpy arrays, tensors (any_to_tensor).
    class_names: default model.class_names (hubconf.py), else VOC's or COCO's by count; conf, nms, letterbox: default
    the preset's revision's (test_thresholds, test_letterbox), as the command line's, which runs one image at a time
    (batches equal it to rounding).
    precision: "fp32", "bf16", or None: bf16 on a CPU that computes in bfloat16 natively, else fp32 (predict).
    -> per input {"boxes": (K, 4) xyxy pixels of that image, "scores", "labels", "names": [K], "grid"}."""
    thresholds = test_thresholds(model)
    conf = thresholds["conf"] if conf is None else conf
    nms = thresholds["nms"] if nms is None else nms
    letterbox = test_letterbox(model) if letterbox is None else letterbox
    names = class_names or getattr(model, "class_names", None) or DARKNET_NAMES.get(model.num_classes)
    if names is None:
        raise ValueError(f"{model.preset} has {model.num_classes} classes: give their names with class_names=")
    if not isinstance(inputs, (list, tuple)):               # one image, or a batch (N, 3, H, W) / (N, H, W, 3)
        inputs = list(inputs) if getattr(inputs, "ndim", 0) == 4 else [inputs]
    found, was_training = [], model.training
    model.eval()
    for start in range(0, len(inputs), batch_size):         # converted batch by batch: photos are large
        chunk = inputs[start:start + batch_size]
        batch = [any_to_tensor(x, f"input {start + k}") for k, x in enumerate(chunk)]
        found += detect(model, batch, conf, nms, letterbox, precision=precision)
    model.train(was_training)
    return [dict(d, names=[names[label] for label in d["labels"].tolist()]) for d in found]


def _load_batch(indices, dataset, net_size, letterbox):
    """evaluate()'s collate_fn, run in the loader's workers: -> ({index: preprocessed image}, [(path, error)])."""
    loaded, failed = {}, []
    for i in indices:
        try:        # the dataset's loader: EXIF rotation only when it makes the annotation's size
            loaded[i] = preprocess(data.image_to_tensor(dataset.load(i)), net_size, letterbox)
        except (OSError, ValueError) as error:                # data.ImageError is a ValueError naming the file
            failed.append((dataset.record(i)["path"], str(error)))
    return loaded, failed


def evaluate(model, dataset, conf: float, nms: float, batch_size: int = 8, workers: int = 0,
             letterbox: bool = False, progress=None, indices=None, precision=None):
    """Detections on every image of dataset -> (detections, ground truths, [(path, error)] of unreadable images),
    the first two in dataset order, as metrics.evaluate takes them; an unreadable image has no detections (its
    objects count as missed). Boxes in pixels of the annotation's image size (a file resized since is mapped
    back to it). train.py evaluates with this too. progress: None (silent) or the scripts' tools.progress.Progress.
    indices: only these images (train.py: each process its part, devices.shard); the others get no detections.
    precision: as predict's."""
    truths = [dataset.annotation(i) for i in range(len(dataset))]
    nothing = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    detections, failed, was_training = [nothing] * len(dataset), [], model.training
    loader = torch.utils.data.DataLoader(range(len(dataset)) if indices is None else indices, batch_size,
                                         num_workers=workers, collate_fn=
                                         functools.partial(_load_batch, dataset=dataset, net_size=model.img_size,
                                                           letterbox=letterbox))
    model.eval()
    if progress:                            # each batch: its loaded and its unreadable images
        loader = progress(loader, total=len(loader.dataset), desc="evaluating", unit="images",
                          count=lambda batch: len(batch[0]) + len(batch[1]))
    for loaded, bad in loader:
        failed += bad
        if loaded:
            found = predict(model, torch.stack(list(loaded.values())), [truths[i]["size"] for i in loaded],
                            conf, nms, letterbox, precision=precision)
            for i, d in zip(loaded, found):
                detections[i] = d
    model.train(was_training)
    return detections, truths, failed


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
    """photo.jpg -> photo.jpg (JPEG stays JPEG, anything else becomes PNG); another photo.jpg (from another
    folder) -> photo_2.jpg: names never collide."""
    suffix = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg") else ".png"
    name, k = path.stem + suffix, 1
    while name.lower() in used:                               # lower(): case-insensitive file systems
        k += 1
        name = f"{path.stem}_{k}{suffix}"
    used.add(name.lower())
    return name


def fresh_folder(path: Path) -> Path:
    """runs/detect/exp, else exp2, exp3, ...: the first that does not exist or is empty, so that a new call
    never mixes its pictures with an earlier call's (--out chooses the folder instead)."""
    folder, k = path, 1
    while folder.exists() and any(folder.iterdir()):
        k += 1
        folder = path.with_name(f"{path.name}{k}")
    return folder


def write_json(path: Path, records) -> None:
    """The detections as a JSON list, one record a line, written whole or not at all (a .tmp, then a rename)."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    os.replace(tmp, path)


def check_outputs(args) -> list[Path]:
    """Every folder this call writes into, made and tried with a file before any work (as train.py does), so that
    an unwritable --out, --save-json, --results-dir or --export fails in one line at the start, not after the
    images. Sets args.out_dir (the drawings' folder). -> the folders made here, for main() to remove if unused."""
    folders = []
    pictures = (args.inputs and not args.data) or (args.data and (args.error_analysis or len(args.img_size or []) > 1))
    if pictures and not args.export:    # drawn images; with --data the error analysis' and Table 3's pictures
        args.out_dir = str(Path(args.out) if args.out else fresh_folder(Path("runs", "detect", "exp")))
        folders.append((Path(args.out_dir), Path(args.out_dir)))
    if args.save_json and args.inputs and not args.data and not args.export:
        folders.append((Path(args.save_json).parent, Path(args.save_json)))
    if args.results_dir and args.data and not args.export:
        folders.append((Path(args.results_dir), Path(args.results_dir)))
    if args.export:
        folders.append((Path(args.export).parent, Path(args.export)))
    made = []
    for folder, given in folders:
        missing = [p for p in [folder, *folder.parents] if not p.exists()][::-1]   # outermost first
        try:
            for p in missing:
                p.mkdir()
                made.append(p)
            probe = folder / f".write-test-{os.getpid()}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as error:
            remove_empty(made)
            raise ValueError(f"{given}: cannot write here ({error.strerror or error})") from None
    return made


def remove_empty(folders) -> None:
    """The folders made by check_outputs that stayed empty (a call that failed or found no image), innermost first."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:                 # not empty: it holds the call's files
            pass


def run_images(args, model, class_names: list[str]) -> dict:
    """Detect on every readable image, draw each into --out, list the unreadable ones at the end."""
    order = None
    if args.darknet_order:                  # not the paper: darknet's listing order, for parity checks
        from tools.darknet_order import darknet_order as order
    paths, used, records, outputs, failed = collect_images(args.inputs), set(), [], [], []
    if not paths:
        print(f"no images found in {' '.join(args.inputs)}")
        return dict(exit_code=1, detections=[], outputs=[], failed=[])
    out_dir = Path(args.out_dir)                                 # made and tried by check_outputs
    from tools.progress import Progress     # not the paper: a progress line under the per-image lines
    bar = Progress(paths, desc="detecting", unit="images", quiet=args.quiet or len(paths) == 1)
    interrupted = False
    try:
        for path in bar:
            try:
                image = data.load_image(path, exif=True)          # RGB, the photo's EXIF orientation applied
            except (OSError, ValueError) as error:                # data.ImageError is a ValueError naming the file
                failed.append((str(path), str(error)))
                continue
            start = time.perf_counter()
            det = detect(model, [data.image_to_tensor(image)], args.conf, args.nms, args.letterbox, order,
                         args.precision)[0]
            ms = (time.perf_counter() - start) * 1000
            out_path = out_dir / output_name(path, used)
            drawing.draw(image, det, class_names, args.show_grid, model.img_size, args.letterbox).save(out_path)
            outputs.append(str(out_path))
            bar.write(f"{path}: {len(det['scores'])} objects in {ms:.0f} ms -> {out_path}")
            for (x1, y1, x2, y2), score, label in zip(det["boxes"].tolist(), det["scores"].tolist(),
                                                      det["labels"].tolist()):
                # OUR CHOICE: pixels to 2 decimals, scores to 4 significant digits (float32 carries no more)
                record = {"label": label, "class": class_names[label],
                          "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)], "score": float(f"{score:.4g}")}
                bar.write(f"  {json.dumps(record)}")                # the console shows what --save-json writes
                records.append({"image": str(path), **record})
            for depth, (node, conditional, absolute) in enumerate(det.get("tree_path", [])):   # YOLO9000 --show-tree
                bar.write(f"    {'  ' * depth}{class_names[node]}: Pr(node | parent) {conditional:.4f}, Pr(node) "
                          f"{absolute:.4f}")
    except KeyboardInterrupt:           # Ctrl-C: the images finished so far are kept, and said to be partial
        interrupted = True
    if interrupted:
        done = len(outputs) + len(failed)
        partial = Path(args.save_json).with_suffix(".partial" + Path(args.save_json).suffix) if args.save_json else None
        if partial and outputs:         # beside --save-json, never under its name: that file is always a whole call
            write_json(partial, records)
        print(f"interrupted after {done} of {len(paths)} images: " + (
              f"wrote their {len(records)} detections to {partial} ({args.save_json} not written)"
              if partial and outputs
              else f"their pictures are in {out_dir}" if outputs else "nothing written"))
        return dict(exit_code=130, detections=records, outputs=outputs, failed=failed, interrupted=True)
    if args.save_json and outputs:      # no image read: an earlier file stays as it was, not replaced by []
        write_json(Path(args.save_json), records)
        print(f"wrote {len(records)} detections to {args.save_json}")
    elif args.save_json:
        print(f"no image could be read: {args.save_json} not written")
    if failed:
        print(f"{len(failed)} of {len(paths)} images could not be read:")
        for path, reason in failed:                          # data.py's messages start with the path
            print(f"  {reason}" if reason.startswith(path) else f"  {path}: {reason}")
    return dict(exit_code=1 if failed else 0, detections=records, outputs=outputs, failed=failed)


# -----------------------------------------------------------------------------
# Evaluation of a dataset split

def open_split(data_dir: str, split: str, img_size: int, train_config: dict):
    """-> (dataset, COCO category id of each label). data_dir: "shapes" (the held-out synthetic images of the
    checkpoint's run), a VOCdevkit folder (split YEAR/SPLIT, or SPLIT for 2007), a COCO folder with
    annotations/instances_<split>.json and images in <split>/ or images/, a COCO json, or darknet txt labels."""
    if data_dir == "shapes":
        dataset = data.shapes_split("val", train_config.get("val_images") or 200, img_size,
                                    train_config.get("seed", 0))
        return dataset, list(range(1, len(dataset.class_names) + 1))
    year, _, name = split.rpartition("/")
    coco_json = data_dir if data_dir.endswith(".json") else os.path.join(data_dir, "annotations",
                                                                           f"instances_{split}.json")
    if os.path.isfile(coco_json):           # images in <split>/, images/ or beside annotations/ (data.open_dataset)
        dataset = data.open_dataset(coco_json, img_size=img_size)
        # data.COCODataset numbers the categories 0..K-1 in sorted id order; results files need the ids back
        return dataset, dataset.category_ids
    if data.voc_splits(data_dir, name, years=[year or "2007"]):
        dataset = data.VOCDataset(data_dir, splits=[(year or "2007", name)], img_size=img_size)
    else:
        dataset = open_any(data_dir, img_size=img_size)
    return dataset, list(range(1, len(dataset.class_names) + 1))


def open_any(path: str, **options):
    """data.open_dataset (VOCdevkit, COCO), else darknet txt labels (tools/darknet_txt.py, not in the papers)."""
    try:
        return data.open_dataset(path, **options)
    except data.UnknownFormat:
        from tools.darknet_txt import open_txt_dataset
        return open_txt_dataset(path, **options)


def evaluate_timed(args, model, dataset):
    """evaluate() with the command line's options and a progress line, then one line of its time and counts.
    -> evaluate()'s (detections, truths, failed)"""
    from tools.progress import Progress     # not the paper: a progress line while the images are read
    start = time.perf_counter()
    detections, truths, failed = evaluate(model, dataset, args.conf, args.nms, args.batch_size, args.workers,
                                          args.letterbox, functools.partial(Progress, quiet=args.quiet),
                                          precision=args.precision)
    seconds = time.perf_counter() - start
    print(f"{len(dataset)} images in {seconds:.1f} s ({1000 * seconds / len(dataset):.0f} ms per image), "
          f"{sum(len(d['scores']) for d in detections)} detections")
    return detections, truths, failed


def evaluate_split(args, model, class_names: list[str], train_config: dict, split=None, tag: str = "") -> dict:
    """Detections on every image of the split at a low threshold, then AP under the three protocols; with
    --error-analysis, YOLOv1 §4.2's too. split: (dataset, category ids) already open (evaluate_sizes), tag: a
    name for this evaluation's files (its input size)."""
    similar = similar_classes(args, class_names) if args.error_analysis else None     # a bad name: before the work
    dataset, category_ids = split or open_split(args.data, args.split, model.img_size, train_config)
    if len(dataset.class_names) != len(class_names):
        raise ValueError(f"the model's classes do not match the dataset's: expected {len(dataset.class_names)} "
                         f"{list(dataset.class_names)} (dataset {args.data}), found {len(class_names)} "
                         f"{class_names} (weights {args.weights})")
    renamed = [(a, b) for a, b in zip(class_names, dataset.class_names) if a != b]
    if renamed:   # labels match by index; spellings may differ (darknet's coco.names "motorbike", COCO "motorcycle")
        print("note: class names differ, labels are matched by index: " + ", ".join(f"{a} = {b}" for a, b in renamed))
    if len(dataset) == 0:
        raise ValueError(f"{args.data} {args.split}: no images; " + "; ".join(dataset.problems[:5]))
    detections, truths, failed = evaluate_timed(args, model, dataset)
    results = {protocol: metrics.evaluate(detections, truths, protocol=protocol, num_classes=len(class_names))
               for protocol in ("voc07", "voc12", "coco")}
    print(metrics.format_ap_table(results, class_names))
    if args.results_dir:                    # not the paper: the official servers' files, and PR curves
        from tools import plots, results as results_files
        results_dir = Path(args.results_dir, tag)            # made and tried by check_outputs; a size's subfolder
        results_dir.mkdir(parents=True, exist_ok=True)
        plots.save_pr_curves_png(results["voc07"], class_names, results_dir / "pr_curves.png")
        results_files.write_voc_results(results_dir, truths, detections, class_names)
        results_files.write_coco_results(results_dir / "coco_results.json", truths, detections, category_ids,
                                         numeric_ids=isinstance(dataset, data.COCODataset))
        print(f"wrote {results_dir}: pr_curves.png (VOC07), comp4_det_test_<class>.txt, coco_results.json")
    analysis = (error_analysis_report(args, model, detections, truths, class_names, similar, tag)
                if args.error_analysis else None)
    if failed:
        print(f"{len(failed)} of {len(dataset)} images could not be read (their objects count as missed):")
        for path, reason in failed:
            print(f"  {reason}" if reason.startswith(path) else f"  {path}: {reason}")
    return dict(exit_code=1 if failed else 0, results=results, detections=detections, failed=failed,
                error_analysis=analysis)


def output_folder(args) -> Path:
    """The folder of this call's pictures: --out, else a fresh runs/detect/exp, exp2, ... (made and tried by
    check_outputs before any work)."""
    return Path(args.out_dir)


def similar_classes(args, class_names: list[str]) -> tuple[list[str], list[list[int]]]:
    """-> (the groups of similar classes by name, the same by index): --similar's groups, else Hoiem et al.'s for
    VOC's 20 classes (metrics.VOC_SIMILAR_CLASSES), else none. An unknown class name is an error."""
    if args.similar is not None:
        groups = [[name for name in group.split(",") if name] for group in args.similar]
    elif list(class_names) == list(data.VOC_CLASSES):
        groups = metrics.VOC_SIMILAR_CLASSES
    else:
        groups = []
    return groups, metrics.similar_groups(groups, class_names)


def error_analysis_report(args, model, detections, truths, class_names: list[str], similar, tag: str = "") -> dict:
    """YOLOv1 §4.2, Figure 4: metrics.error_analysis of the split's detections (the evaluation's, all above
    EVAL_CONF), printed beside the paper's shares and drawn as pies into --out (tools/plots.py).
    similar: similar_classes()'s groups by name and by index."""
    names, groups = similar
    result = metrics.error_analysis(detections, truths, len(class_names), groups)
    print(f"\nerror analysis (YOLOv1 §4.2, Hoiem et al.'s rules): each class's top N detections, N = its objects, "
          f"in %; similar: {'; '.join(','.join(g) for g in names) or 'none'}")
    print(metrics.format_error_table(result, class_names))
    from tools import plots                 # not the paper: the picture
    path = output_folder(args) / f"error_analysis{'_' + tag if tag else ''}.png"
    pies = {f"{model.preset} on {Path(args.data).name}": result["overall"],
            **{f"{name} (paper, VOC 2007)": np.array(shares) / 100 for name, shares in metrics.FIGURE_4.items()}}
    plots.save_error_pies_png(pies, path)
    print(f"wrote {path}")
    return result


def evaluate_imagenet(args, model, class_names: list[str]) -> dict:
    """YOLO9000 §4, the ImageNet detection task (the abstract: "YOLO9000 gets 19.7 mAP on the ImageNet detection
    validation set despite only having detection data for 44 of the 200 classes. On the 156 classes not in COCO,
    YOLO9000 gets 16.0 mAP").
    Class k of ImageNet's 200 is node inet9k.map[k] of the tree, scored objectness·Pr(node) (darknet's map path:
    region_layer.c get_region_boxes with a map, detector.c validate_detector with eval=imagenet: .005, NMS .45);
    its WordNet id, the tree's, names its objects in the XML. The classes that never saw a labelled box: neither
    a node of coco9k.map nor an ancestor of one (wordtree.disjoint). AP: the ILSVRC devkit's (metrics "ilsvrc")."""
    import wordtree
    if not hasattr(model, "tree"):
        raise ValueError(f"--inet-map: {model.preset} is not a YOLO9000 network (no WordTree)")
    if not args.coco_map:
        raise ValueError("--inet-map needs --coco-map too (coco9k.map): the classes shared with COCO are left out "
                         "of the second mean")
    nodes = wordtree.read_map(args.inet_map, model.tree)
    disjoint = wordtree.disjoint(nodes, wordtree.read_map(args.coco_map, model.tree), model.tree)
    print(f"{len(disjoint)} of {len(nodes)} classes share no node with COCO ({args.inet_map}, {args.coco_map}): "
          "neither a COCO class's node nor an ancestor of one")
    dataset = yolo9000.ImageNetDetection(args.data, [model.tree["ids"][k] for k in nodes], args.split,
                                         model.img_size, args.blacklist)
    if len(dataset) == 0:
        raise ValueError(f"{args.data} {args.split}: no images; " + "; ".join(dataset.problems[:5]))
    for problem in dataset.problems[:5]:
        print(f"warning: {problem}")
    model.nodes = nodes                     # yolo9000.detections: darknet's map path
    detections, truths, failed = evaluate_timed(args, model, dataset)
    result = metrics.evaluate(detections, truths, protocol="ilsvrc", num_classes=len(nodes))
    text, overall, unseen = yolo9000.imagenet_report(result, [class_names[k] for k in nodes], disjoint)
    print(text)
    if failed:
        print(f"{len(failed)} of {len(dataset)} images could not be read (their objects count as missed):")
        for path, reason in failed:
            print(f"  {reason}" if reason.startswith(path) else f"  {path}: {reason}")
    return dict(exit_code=1 if failed else 0, results={"ilsvrc": result}, map=overall, map_disjoint=unseen,
                disjoint=disjoint, detections=detections, failed=failed)


# -----------------------------------------------------------------------------
# YOLOv2 Table 3 / Figure 4: one network, several input sizes, accuracy against speed

# YOLOv2 Table 3, "Detection frameworks on PASCAL VOC 2007": YOLOv2 at each size -> (mAP, FPS on a Titan X)
TABLE_3 = {288: (69.0, 91), 352: (73.7, 81), 416: (76.8, 67), 480: (77.8, 59), 544: (78.6, 40)}
SPEED_BATCHES = (1, 8)
SPEED_SECONDS = 1.0         # of timed passes per size and batch, after the warm-up


def images_per_second(model, x: torch.Tensor, conf: float, nms: float, letterbox: bool = False,
                      min_seconds: float = SPEED_SECONDS, precision=None) -> float:
    """The detector's speed on its device: predict() (forward, decoding, NMS) on the batch x (N, 3, H, W) of
    preprocessed images, once to warm up (allocations, cuDNN's choice of kernels), then again until min_seconds
    have passed, at least 3 times -> N / the median time of one pass. Reading and resizing images is not counted."""
    device = next(model.parameters()).device
    x, sizes = x.to(device), [(x.shape[3], x.shape[2])] * len(x)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    predict(model, x, sizes, conf, nms, letterbox, precision=precision)
    times = []
    while len(times) < 3 or sum(times) < min_seconds:
        sync()
        start = time.perf_counter()
        predict(model, x, sizes, conf, nms, letterbox, precision=precision)
        sync()
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def evaluate_sizes(args, model, class_names: list[str], train_config: dict) -> dict:
    """YOLOv2 Table 3 / Figure 4: the same weights at each --img-size (YOLOv2 is fully convolutional: only the grid
    changes, 13 x 13 at 416), on the same images; VOC07 mAP and images/s at batch 1 and 8 on this device, printed
    beside the paper's and drawn into --out (tools/plots.py)."""
    if model.config["family"] == "yolov1":
        raise ValueError(f"{model.preset}: several --img-size values need a fully convolutional network (YOLOv2); "
                         f"YOLOv1's connected layers fix its input at {model.img_size}")
    odd = [size for size in args.img_size if size % yolov2.STRIDE]
    if odd:
        raise ValueError(f"--img-size: YOLOv2 takes multiples of {yolov2.STRIDE} (its stride), got "
                         f"{', '.join(map(str, odd))}")
    # the images of the split once, at the size the weights were trained at (shapes draws its images at a size)
    split = open_split(args.data, args.split, model.img_size, train_config)
    # OUR CHOICE: timed at the preset's test thresholds (darknet's demo: YOLOv2 .24, NMS .4), as a detector runs;
    # the evaluation's .005 keeps thousands of boxes for the AP, and NMS over them would dominate the time
    timing = test_thresholds(model)
    device = next(model.parameters()).device
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    rows, exit_code = [], 0
    for size in args.img_size:
        model.img_size = size
        print(f"\n--- {model.preset} at {size} x {size}")
        found = evaluate_split(args, model, class_names, train_config, split, tag=str(size))
        exit_code = max(exit_code, found["exit_code"])
        loaded, _ = _load_batch(range(min(max(SPEED_BATCHES), len(split[0]))), split[0], size, args.letterbox)
        if not loaded:
            raise ValueError(f"{args.data}: none of its first {max(SPEED_BATCHES)} images could be read to time the "
                             "model")
        x = torch.stack(list(loaded.values()))                                    # (n <= 8, 3, size, size)
        speed = {b: images_per_second(model, x[torch.arange(b) % len(x)], timing["conf"], timing["nms"],
                                      args.letterbox, SPEED_SECONDS, args.precision) for b in SPEED_BATCHES}   # the n images repeated
        rows.append(dict(size=size, map=found["results"]["voc07"]["map"], images_per_s=speed))
    print(f"\nYOLOv2 Table 3 / Figure 4: {model.preset} on {args.data}, {where}; images/s of predict() "
          f"(forward, decoding, NMS at conf {timing['conf']}, nms {timing['nms']})")
    print(f"{'size':>5} {'mAP (VOC07)':>12} " + " ".join(f"{'img/s b' + str(b):>10}" for b in SPEED_BATCHES)
          + f" | paper (VOC 2007 test, Titan X): {'mAP':>5} {'FPS':>4}")
    for row in rows:
        paper = TABLE_3.get(row["size"])
        print(f"{row['size']:>5} {row['map']:12.4f} "
              + " ".join(f"{row['images_per_s'][b]:10.1f}" for b in SPEED_BATCHES)
              + (f" | {'':>31} {paper[0]:5.1f} {paper[1]:4d}" if paper else " |"))
    from tools import plots                 # not the paper: the picture
    path = output_folder(args) / "speed_accuracy.png"
    ours = {f"batch {b}": [(r["size"], r["images_per_s"][b], r["map"]) for r in rows] for b in SPEED_BATCHES}
    paper = {"YOLOv2": [(size, fps, m / 100) for size, (m, fps) in TABLE_3.items()]}
    plots.save_speed_accuracy_png({f"{model.preset} on {Path(args.data).name} ({where})": ours,
                                   "the paper: VOC 2007 test, Titan X (Table 3)": paper}, path, "mAP (VOC07)")
    print(f"wrote {path}")
    return dict(exit_code=exit_code, sizes=rows)


# -----------------------------------------------------------------------------

def positive(kind):
    """An argparse type: a number of kind above 0 (0 images, 0 epochs, size 0 are refused at parse time)."""
    def parse(text):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"expected a number above 0, found {text}")
        return value
    parse.__name__ = kind.__name__       # argparse names the type in its message
    return parse


def size_or_path(text: str):
    """--img-size's type: a size above 0 (positive), or, as argparse hands --img-size the image paths written after
    it too, that path unchanged (main() gives it back to the inputs)."""
    return positive(int)(text) if re.fullmatch(r"[+-]?\d+", text) else text


def at_least_zero(text: str) -> int:
    """An argparse type: a count of 0 or more (--workers)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of 0 or more, found {text}")
    return value


def probability(text: str) -> float:
    """An argparse type: a number in [0, 1] (a threshold), refused at parse time otherwise."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], found {text}")
    return value


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", help="image files and folders (searched recursively)")
    p.add_argument("--model", help="preset (a darknet cfg name); for a darknet .weights file, default: the "
                   "preset whose official file has its exact size; checked against a checkpoint's")
    p.add_argument("--weights", required=True, help="a train.py checkpoint or a darknet .weights file")
    p.add_argument("--names", help="class names, one per line (darknet .names): for darknet weights of neither "
                   "VOC's 20 nor COCO's 80 classes (data.VOC_CLASSES, data.COCO_CLASSES); overrides any")
    p.add_argument("--conf", type=probability, help="score threshold (default: -thresh of darknet's test at the "
                   "preset's revision, darknet.REVISIONS: " + ", ".join(
                       f"{r} {row['test_conf']}" for r, row in darknet.REVISIONS.items()) + f"; with --data "
                   f"{metrics.EVAL_CONF})")
    p.add_argument("--nms", type=probability, help="NMS IoU threshold, 1.0 disables it (default: darknet's test "
                   "at the preset's revision: " + ", ".join(f"{r} {row['test_nms']}" for r, row in
                                                          darknet.REVISIONS.items()) + "; with --data " +
                   ", ".join(f"{name} {family.EVAL_NMS}" for name, family in FAMILIES.items()) + ")")
    p.add_argument("--img-size", nargs="+", type=size_or_path, metavar="SIZE", help="network input size (default: the checkpoint's or "
                   "the cfg's); with --data, several sizes evaluate the same YOLOv2 at each, with its speed (YOLOv2 "
                   "Table 3), e.g. 288 352 416 480 544")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error instead of its "
                   "one line")
    p.add_argument("--partial", action="store_true", help="a darknet file that holds only the first layers of "
                   "--model (the rest keep their initial values: for checking a backbone file, not for detection)")
    p.add_argument("--letterbox", action=argparse.BooleanOptionalAction, help="YOLOv2: keep the aspect ratio and "
                   "pad with grey (image.c letterbox_image), or --no-letterbox: resize_image (default: as darknet's "
                   "test at the preset's revision: letterbox from 60e952ba, darknet.REVISIONS)")
    p.add_argument("--darknet-order", action="store_true", help="YOLOv2: list the detections in darknet's order "
                   "(tools/darknet_order.py), to compare with darknet's output line by line")
    p.add_argument("--out", help="folder for the drawn images (default: runs/detect/exp, or exp2, ... when "
                   "that holds an earlier call's)")
    p.add_argument("--save-json", help="write the detections here: [{image (the path as given or found), "
                   "label, class, bbox [x, y, w, h] in pixels of the original image, score}]")
    p.add_argument("--show-grid", action="store_true", help="draw the grid and the cell responsible for each box")
    p.add_argument("--tree", help="YOLO9000: darknet's WordTree file (9k.tree) for a darknet .weights file (a "
                   "checkpoint holds its tree)")
    p.add_argument("--hier", type=float, help="YOLO9000: threshold of the descent down the tree (default darknet's "
                   ".5): the label is the deepest node reached")
    p.add_argument("--show-tree", action="store_true", help="YOLO9000: print, for the detection of highest "
                   "objectness, the probabilities on its path from the root")
    p.add_argument("--data", help="evaluate instead: a VOCdevkit folder, a COCO folder or json, darknet txt "
                   "labels, or 'shapes'")
    p.add_argument("--split", help="with --data: VOC YEAR/SPLIT or SPLIT (year 2007), COCO "
                   "instances_<SPLIT>.json, ImageNet DET <SPLIT> (default: test; with --inet-map val)")
    p.add_argument("--inet-map", help="YOLO9000 §4 with --data ILSVRC (the folder holding ILSVRC/Annotations/DET/val "
                   "and ILSVRC/Data/DET/val): darknet's inet9k.map, the tree node of each of ImageNet's 200 detection "
                   "classes; prints the mAP on all of them and on those that share no node with --coco-map's, and "
                   "the per-class table sorted as Table 7")
    p.add_argument("--coco-map", help="YOLO9000, with --inet-map: darknet's coco9k.map (which classes had boxes)")
    p.add_argument("--blacklist", help="with --inet-map: the ILSVRC devkit's "
                   "data/ILSVRC2015_det_validation_blacklist.txt (image/class pairs the devkit does not score)")
    p.add_argument("--results-dir", help="with --data: also write the comp4 files, the COCO results json and "
                   "pr_curves.png into this folder (tools/results.py, tools/plots.py)")
    p.add_argument("--error-analysis", action="store_true", help="with --data: YOLOv1 §4.2's error analysis of "
                   "each class's top detections (Figure 4): a table and error_analysis.png in --out")
    p.add_argument("--similar", nargs="*", metavar="CLASS,CLASS,...", help="with --error-analysis: groups of similar "
                   "classes, each comma-separated (default: Hoiem et al.'s for VOC's 20 classes, none otherwise; "
                   "--similar alone: none)")
    p.add_argument("--batch-size", type=positive(int), default=8, help="with --data: images per forward pass "
                   "(default: 8)")
    p.add_argument("--workers", type=at_least_zero, default=0, help="with --data: image-loading processes (default: 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--precision", choices=devices.PRECISIONS, help="the network's arithmetic: fp32, or bf16 "
                   "(bfloat16 autocast; decoding and NMS stay float32). Default: bf16 on a CPU that computes in "
                   "bfloat16 natively (avx512_bf16 or amx_bf16, as torch reports them), else fp32; on this machine's "
                   f"CPU: {devices.choose_precision('cpu')} (tools/devices.choose_precision)")
    p.add_argument("--quiet", action="store_true", help="no progress line (tools/progress.py)")
    p.add_argument("--export", metavar="FILE.onnx", help="write the network as ONNX instead, batch dimension "
                   "dynamic, at --img-size (tools/export.py)")
    return p


def main(args) -> dict:
    """-> dict with "exit_code" (0, or 1 when an image could not be read) and what was found: "detections",
    "outputs", "failed"; with --data, "results" per protocol."""
    # --img-size takes one or several sizes; argparse also hands it the image paths written after it
    # (`--img-size 416 photo.jpg`): what is not a number goes back to the inputs.
    given = args.img_size or []
    sizes = [v for v in given if isinstance(v, int)]                # size_or_path: sizes are ints, paths strings
    args.inputs = list(args.inputs) + [v for v in given if not isinstance(v, int)]
    args.img_size = sizes or None
    if len(sizes) > 1 and not args.data:
        raise ValueError("several --img-size values are for --data: the same network evaluated at each size")
    if not args.inputs and not args.data and not args.export:
        raise ValueError("nothing to do: give images or folders, --data to evaluate a dataset, or --export")
    made = check_outputs(args)
    try:
        return run(args)
    finally:                            # a folder made for this call and left empty (it failed, or found nothing)
        remove_empty(made)


def run(args) -> dict:
    sizes = args.img_size or []
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if not args.export:                     # the first line: which arithmetic runs, and why
        given, args.precision = args.precision, devices.choose_precision(device.type, args.precision)
        print(devices.describe_precision(device, args.precision, given))
    model, class_names, train_config = load_model(args.weights, args.model, sizes[0] if len(sizes) == 1 else None,
                                                  args.names, getattr(args, "tree", None), args.partial)
    if hasattr(model, "tree"):              # YOLO9000 (yolo9000.py): the descent's threshold, the path to print
        model.hier = model.hier if getattr(args, "hier", None) is None else args.hier
        model.show_tree = getattr(args, "show_tree", False)
    if args.export:                         # not the paper: deployment
        from tools.export import export_onnx
        print(export_onnx(model, args.export))
        return dict(exit_code=0, exported=args.export)
    model.to(device)
    family = FAMILIES[model.config["family"]]
    defaults = dict(conf=metrics.EVAL_CONF, nms=family.EVAL_NMS) if args.data else test_thresholds(model)
    args.conf = defaults["conf"] if args.conf is None else args.conf
    args.nms = defaults["nms"] if args.nms is None else args.nms
    args.letterbox = test_letterbox(model) if args.letterbox is None else args.letterbox
    print(f"{model.preset} at {model.img_size}, {len(class_names)} classes, conf {args.conf}, nms {args.nms}"
          f"{', letterbox' if args.letterbox else ''}, precision {args.precision} on {device}")
    args.split = args.split or ("val" if getattr(args, "inet_map", None) else "test")
    if args.data and getattr(args, "inet_map", None):
        return evaluate_imagenet(args, model, class_names)
    if args.data:
        if len(sizes) > 1:
            return evaluate_sizes(args, model, class_names, train_config)
        return evaluate_split(args, model, class_names, train_config)
    return run_images(args, model, class_names)


if __name__ == "__main__":
    parsed = get_args_parser().parse_args()
    try:
        sys.exit(main(parsed)["exit_code"])
    except (ValueError, OSError) as error:      # user errors: one line (--debug shows the traceback)
        if parsed.debug:
            raise
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:                   # Ctrl-C outside the images' loop (which keeps what it did)
        print("interrupted", file=sys.stderr)
        sys.exit(130)
