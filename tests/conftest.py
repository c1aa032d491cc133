"""Test set-up: put the repository root on sys.path so tests import the flat top-level modules; the small files
and fixtures that tests of several modules share (test_data.py, test_images.py, test_tools_data.py import the plain
functions with `from conftest import ...`)."""
import os
import sys

import pytest
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda(devices=1): needs that many CUDA devices, skipped without them "
                                       "(bench/gpu_check.sh runs them: pytest -m cuda)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        mark = item.get_closest_marker("cuda")
        if mark and torch.cuda.device_count() < mark.kwargs.get("devices", 1):
            item.add_marker(pytest.mark.skip(reason=f"needs {mark.kwargs.get('devices', 1)} CUDA device(s)"))


def save_jpeg(path, size=(40, 30), colour=(90, 120, 150), exif_orientation=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = Image.new("RGB", size, colour)
    exif = img.getexif()
    if exif_orientation:
        exif[0x0112] = exif_orientation
    img.save(path, "JPEG", exif=exif)


def voc_xml(size, objects):
    """objects: (name, xmin, ymin, xmax, ymax, difficult) in VOC's 1-based pixels."""
    body = "".join(f"""
  <object>
    <name>{n}</name>
    <difficult>{d}</difficult>
    <bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{e}</ymax></bndbox>
  </object>""" for n, a, b, c, e, d in objects)
    return f"<annotation>\n  <size><width>{size[0]}</width><height>{size[1]}</height></size>{body}\n</annotation>\n"


def write_voc(root, items, year="2007", split="trainval", list_ids=None):
    """items: {image_id: (size, objects)}; writes JPEGs of that size and the XMLs."""
    base = os.path.join(root, "VOCdevkit", f"VOC{year}")
    os.makedirs(os.path.join(base, "Annotations"), exist_ok=True)
    os.makedirs(os.path.join(base, "ImageSets", "Main"), exist_ok=True)
    for image_id, (size, objects) in items.items():
        save_jpeg(os.path.join(base, "JPEGImages", image_id + ".jpg"), size)
        with open(os.path.join(base, "Annotations", image_id + ".xml"), "w") as f:
            f.write(voc_xml(size, objects))
    with open(os.path.join(base, "ImageSets", "Main", f"{split}.txt"), "w") as f:
        f.write("".join(i + "\n" for i in (list_ids or items)))
    return base


def pixel_box(mask):
    """Bounding box [x1, y1, x2, y2) of the True pixels of an (H, W) mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


@pytest.fixture
def broken_voc(tmp_path):
    base = write_voc(tmp_path, {
        "good": ((40, 30), [("dog", 1, 1, 20, 20, 0)]),
        "outside": ((40, 30), [("dog", 1, 1, 20, 20, 0), ("cat", 10, 10, 60, 20, 0)]),   # x2 60 > 40
        "inverted": ((40, 30), [("cat", 20, 5, 10, 15, 0), ("cat", 5, 5, 5, 15, 0)]),
        "unknown": ((40, 30), [("unicorn", 1, 1, 10, 10, 0)]),
    }, list_ids=["good", "outside", "inverted", "unknown", "good", "ghost", "empty", "cut", "text",
                 "nobox", "malformed", "wrongsize", "rotated"])
    ann, jpg = os.path.join(base, "Annotations"), os.path.join(base, "JPEGImages")
    for name in ("empty", "cut", "text", "nobox", "malformed", "wrongsize", "rotated"):
        with open(os.path.join(ann, name + ".xml"), "w") as f:
            f.write(voc_xml((40, 30), [("dog", 1, 1, 20, 20, 0)]))
        save_jpeg(os.path.join(jpg, name + ".jpg"), (40, 30))
    open(os.path.join(jpg, "empty.jpg"), "wb").close()
    raw = open(os.path.join(jpg, "cut.jpg"), "rb").read()
    open(os.path.join(jpg, "cut.jpg"), "wb").write(raw[: len(raw) // 2])
    open(os.path.join(jpg, "text.jpg"), "w").write("not a picture")
    with open(os.path.join(ann, "nobox.xml"), "w") as f:
        f.write("<annotation>\n<size><width>40</width><height>30</height></size>\n"
                "<object>\n<name>dog</name>\n</object>\n</annotation>\n")
    with open(os.path.join(ann, "malformed.xml"), "w") as f:
        f.write("<annotation>\n<size>\n</annotation>\n")
    save_jpeg(os.path.join(jpg, "wrongsize.jpg"), (50, 30))
    save_jpeg(os.path.join(jpg, "rotated.jpg"), (30, 40), exif_orientation=6)   # matches after EXIF: fine
    return tmp_path, base


def randomized(model, seed=0):
    """model with seeded random batch-norm statistics and affine parameters, far from (0, 1), in eval mode: an
    exporter, a loader or a fold that dropped or mis-handled batch norm would show (test_export.py, test_hub.py)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.2 * torch.rand(m.num_features, generator=g) - 0.1)
    return model.eval()
