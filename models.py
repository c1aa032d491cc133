"""
Which network, from which file: the detector families, their presets, and loading a train.py checkpoint or an
official darknet .weights file into the right network.

Paper / darknet -> code
  YOLOv1 (yolov1.py), YOLOv2 (yolov2.py): one file per family, with the same names (PRESETS, build, loss,
    detections, TEST_THRESHOLDS, EVAL_NMS, RECIPE), so that train.py and detect.py never branch on it ... FAMILIES
  darknet's cfg names -> presets ........................................................ family_of(), preset_names()
  darknet parser.c load_weights: the numbers of a .weights file into the layers ...... load_weights() (darknet.py)
  a train.py checkpoint: its model_config rebuilds the network, then its state ...... load_model(), load_state()
  darknet's data/voc.names, data/coco.names ................................ DARKNET_NAMES, read_names() (--names)

Imported by train.py, detect.py and tools/; imports the family files (and through them darknet.py).
"""
import zipfile

import torch

import darknet
import data
import yolov1
import yolov2

FAMILIES = {"yolov1": yolov1, "yolov2": yolov2}     # a new detector family is one more file, and one more entry
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
               names_file: str | None = None):
    """-> (model in eval mode, class names, the training configuration or {}). A checkpoint says which network
    it holds (its "model_config"); a darknet .weights file does not: model_name names its cfg."""
    if zipfile.is_zipfile(weights):     # torch.save writes zip archives; weights_only: unpickling runs no code
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
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
    elif model_name is None:
        raise ValueError(f"{weights}: a darknet .weights file does not say which network it is; name its "
                         f"cfg with --model (one of {preset_names()})")
    else:
        model = family_of(model_name).build(model_name, img_size=img_size)
        class_names, train_config = DARKNET_NAMES.get(model.num_classes), {}
    print(load_weights(model, weights))
    if names_file:
        class_names = read_names(names_file)
    if class_names is None or len(class_names) != model.num_classes:
        found = "none" if class_names is None else len(class_names)
        raise ValueError(f"{model.preset} has {model.num_classes} classes; class names: expected "
                         f"{model.num_classes}, found {found} (give a names file, one name per line, with --names)")
    return model.eval(), list(class_names), train_config


def read_names(path):
    """A darknet .names file: one class name per line (--names, tools/darknet_txt.py)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def load_weights(model, path: str, partial: bool = False) -> str:
    """A train.py checkpoint or a darknet .weights file into model -> a one-line message. A darknet file must hold
    exactly the model's values (its size is checked before anything is loaded), or with partial=True its first
    layers (extraction.conv.weights, darknet19_448.conv.23). YOLOv1's detection-layer order is converted by
    darknet.py through the permutation yolov1.py sets on its last connected layer."""
    if zipfile.is_zipfile(path):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        load_state(model, checkpoint, path)
        return f"loaded {path}: {model.preset} after {checkpoint.get('epoch', '?')} epochs"
    info = darknet.load_darknet_weights(model, path, prefix_ok=partial)
    part = "all" if info["layers_loaded"] == info["layers_total"] else "the first"
    return (f"loaded {path}: {part} {info['layers_loaded']} of {info['layers_total']} darknet layers "
            f"(version {'.'.join(map(str, info['version']))}, {info['seen']:,} images seen)")


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
    model.load_state_dict(state)
