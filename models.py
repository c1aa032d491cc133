"""
Which network, from which file: the detector families, their presets, and loading a train.py checkpoint or an
official darknet .weights file into the right network.

Paper / darknet -> code
  YOLOv1 (yolov1.py), YOLOv2 (yolov2.py): one file per family, with the same names (PRESETS, build, loss,
    detections, TEST_THRESHOLDS, EVAL_NMS, RECIPE), so that train.py and detect.py never branch on it ... FAMILIES
  darknet's cfg names -> presets ........................................................ family_of(), preset_names()
  darknet parser.c load_weights: the numbers of a .weights file into the layers ...... load_weights() (weights.py)
  a train.py checkpoint: its model_config rebuilds the network, then its state ...... load_model(), load_state()
  an official darknet file without --model: its exact size names its network ....... official_sizes(), preset_of_file()
  darknet's data/voc.names, data/coco.names ................................ DARKNET_NAMES, read_names() (--names)

Imported by train.py, detect.py and tools/; imports the family files (and through them darknet.py), weights.py.
"""
import os
import zipfile

import torch

import checkpoints
import data
import weights
import yolov1
import yolo9000
import yolov2

# a new detector family is one more file, and one more entry
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
    if not os.path.isfile(weights):
        raise ValueError(f"{weights}: no such file")
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
        class_names, train_config = list(checkpoint["class_names"]), checkpoint.get("config") or {}
    else:
        if model_name is None:          # a darknet file does not say which network it holds; its size does
            model_name, header = preset_of_file(weights)
            print(f"{weights}: {os.path.getsize(weights):,} bytes, the size of the official {model_name} file "
                  f"({header}-byte header): using --model {model_name}")
        # YOLO9000's classes are the nodes of a WordTree: darknet's tree file (9k.tree) gives it (detect.py --tree)
        model = family_of(model_name).build(model_name, img_size=img_size, **({"tree": tree_file} if tree_file else {}))
        class_names, train_config = DARKNET_NAMES.get(model.num_classes), {}
    print(load_weights(model, weights, partial))
    if names_file:
        class_names = read_names(names_file)
    if class_names is None or len(class_names) != model.num_classes:
        found = "none" if class_names is None else len(class_names)
        raise ValueError(f"{model.preset} has {model.num_classes} classes; class names: expected "
                         f"{model.num_classes}, found {found} (give a names file, one name per line, with --names)")
    return model.eval(), list(class_names), train_config


def test_thresholds(model) -> dict:
    """darknet's test thresholds for model: its family's TEST_THRESHOLDS, with the NMS of the darknet revision its
    preset's file belongs to where PRESETS names one ("test_nms": YOLOv1's 2015 files were tested at .5)."""
    family = FAMILIES[model.config["family"]]
    preset = family.PRESETS.get(model.preset, {})
    return dict(family.TEST_THRESHOLDS, **({"nms": preset["test_nms"]} if "test_nms" in preset else {}))


def official_sizes() -> dict[int, tuple[str, int]]:
    """{file size: (preset, header bytes)} for every preset of FAMILIES with an official darknet file, from its
    PRESETS entry's "weights_bytes" (the size with darknet's 16-byte header: version 0.1 with an int32 `seen`, or
    2015's three floats and an int32). Darknet since 14676214 (2017-06-12) writes version 0.2 with a uint64 `seen`,
    a 20-byte header: the same network's file is then 4 bytes longer, and is recognised too."""
    sizes = {}
    for family in FAMILIES.values():
        for preset, p in family.PRESETS.items():
            for header in (16, 20) if "weights_bytes" in p else ():
                size = p["weights_bytes"] - 16 + header
                if size in sizes:       # every official file of both papers has a size of its own
                    raise ValueError(f"{preset} and {sizes[size][0]} both have {size:,}-byte files")
                sizes[size] = (preset, header)
    return sizes


def preset_of_file(path: str) -> tuple[str, int]:
    """-> (preset, header bytes) of the official darknet file whose size path has exactly, with the header length
    its own header gives (weights.read_header); any other size is refused with the list of known ones."""
    size, header, sizes = os.path.getsize(path), weights.read_header(path)["bytes"], official_sizes()
    if size not in sizes or sizes[size][1] != header:
        known = ", ".join(f"{preset} {n:,}" for n, (preset, h) in sorted(sizes.items()) if h == 16)
        raise ValueError(f"{path}: {size:,} bytes with a {header}-byte header is the size of no official darknet "
                         f"file; name its network with --model. Known sizes with a 16-byte header (4 more with a "
                         f"20-byte one): {known}")
    return sizes[size]


def read_names(path):
    """A darknet .names file: one class name per line (--names, tools/darknet_txt.py)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_weights(model, path: str, partial: bool = False) -> str:
    """A train.py checkpoint or a darknet .weights file into model -> a one-line message. A darknet file must hold
    exactly the model's values (its size is checked before anything is loaded), or with partial=True its first
    layers (extraction.conv.weights, darknet19_448.conv.23). YOLOv1's detection-layer order is converted by
    weights.py through the permutation yolov1.py sets on its last connected layer."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        load_state(model, checkpoint, path)
        return f"loaded {path}: {model.preset} after {checkpoint.get('epoch', '?')} epochs"
    info = weights.load_darknet_weights(model, path, prefix_ok=partial)
    part = "all" if info["layers_loaded"] == info["layers_total"] else "the first"
    return (f"loaded {path}: {part} {info['layers_loaded']} of {info['layers_total']} darknet layers "
            f"({weights.header_text(info)}, {info['seen']:,} images seen)")


def load_state(model, checkpoint: dict, path: str):
    """A checkpoint's weights into model, refused with what differs (never loaded in part)."""
    found, expected = checkpoint["model_config"], model.config
    if (found["preset"], found["num_classes"]) != (expected["preset"], expected["num_classes"]):
        raise ValueError(f"{path}: checkpoint for preset {found['preset']!r} with {found['num_classes']} classes; "
                         f"this run expects {expected['preset']!r} with {expected['num_classes']} classes")
    state, mine = checkpoint["model"], model.state_dict()
    problems = [f"missing {k}" for k in mine if k not in state] + [f"unexpected {k}" for k in state if k not in mine]
    problems += [f"{k}: expected {tuple(v.shape)}, found {tuple(state[k].shape)}"
                 for k, v in mine.items() if k in state and v.shape != state[k].shape]
    if problems:
        raise ValueError(f"{path} does not fit {model.preset}: " + "; ".join(problems[:8]))
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:                  # a run that diverged: its scores would be NaN, not probabilities
        raise ValueError(f"{path}: non-finite weights (NaN or inf) in {', '.join(broken[:3])}"
                         f"{' and more' if len(broken) > 3 else ''}: the run diverged; use an earlier checkpoint")
    model.load_state_dict(state)
