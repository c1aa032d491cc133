"""
torch.hub entry points (not in the papers: packaging): one per preset of every detector family in detect.FAMILIES,
named as the preset with "_" for "-" and "." (yolov2-voc -> yolov2_voc), so a new preset gets its entry by itself.

  model = torch.hub.load("path/to/this/repository", "yolov2_voc", source="local", weights="yolov2-voc.weights")
  model = torch.hub.load("OWNER/REPOSITORY", "yolov2_voc", weights="yolov2-voc.weights")     # from GitHub
  detections = detect.detect_objects(model, [Image.open("photo.jpg")])      # boxes in pixels, scores, names
  (in bfloat16 on a CPU that computes in it, tools/devices.choose_precision; precision="fp32" for float32)

Nothing is downloaded, at import or at load: weights is a file you have (darknet's official .weights, or a train.py
checkpoint); without it the network has fresh random weights. torch.hub.list shows the entries, torch.hub.help
one entry's docstring. Imports detect.py (FAMILIES, load_model), which imports the family files; nothing imports
this file.
"""
import inspect
import re

import data
import detect

dependencies = ["torch", "numpy", "PIL"]     # torch.hub checks that these import before it loads an entry


def _entry(preset: str):
    """The torch.hub entry of one preset: a function with its own name and docstring."""
    family = detect.family_of(preset)
    cfg = family.PRESETS[preset]
    classes, size = cfg.get("num_classes", cfg.get("C")), cfg.get("img_size")     # yolov2.py's keys, yolov1.py's
    shape = f" ({classes} classes, {size} x {size} input)" if classes and size else ""
    takes_tree = "tree" in inspect.signature(family.build).parameters
    wordtree = "    tree: the WordTree file of a darknet .weights file (darknet's 9k.tree).\n" if takes_tree else ""

    def entry(weights: str | None = None, img_size: int | None = None, names: str | None = None,
              tree: str | None = None):
        if weights is not None:          # the checks and messages of detect.py --weights
            model, class_names, _ = detect.load_model(str(weights), preset, img_size, names, tree)
        else:
            model = family.build(preset, img_size=img_size, **({"tree": tree} if tree else {})).eval()
            class_names = data.read_names(names) if names else detect.DARKNET_NAMES.get(model.num_classes)
        model.class_names = None if class_names is None else list(class_names)
        return model

    entry.__name__ = entry.__qualname__ = _entry_name(preset)
    entry.__doc__ = (
        f"{preset}: {family.__doc__.strip().split(' (')[0]}, preset {preset!r} of {family.__name__}.py{shape}.\n"
        f"    weights: a darknet .weights file of this cfg, or a train.py checkpoint of this preset; None: random\n"
        f"        weights (nothing is downloaded).\n"
        f"    img_size: the input size (default the checkpoint's or the cfg's). names: a class-names file, one per\n"
        f"        line (default the checkpoint's, or VOC's / COCO's by class count).\n"
        f"{wordtree}"
        f"    -> the network in eval mode, with model.class_names; detect.detect_objects(model, images) runs it.")
    return entry


def _entry_name(preset: str) -> str:
    """yolov2-voc -> yolov2_voc, yolo.2.0 -> yolo_2_0: a Python name."""
    return re.sub(r"\W", "_", preset)


for _preset in detect.preset_names():
    globals()[_entry_name(_preset)] = _entry(_preset)
