"""
darknet / YOLO txt labels: one "class cx cy w h" line per object (centre and size normalized to [0, 1]), one label
file per image, found by darknet's images -> labels rule, and a .names file with the class names. Not in the papers:
the format of darknet's own scripts (scripts/voc_label.py writes it) and of many exported datasets; the papers'
VOC and COCO are read by data.py.

darknet -> code
  data.c fill_truth_detection: images, JPEGImages -> labels; extension -> .txt ....... label_path()
  data.c read_boxes: "%d %f %f %f %f" per line, class id then normalized x y w h ....... YoloTxtDataset
  ours: a list file (one image path per line, relative to it) or a folder of images ... open_txt_dataset()

Use:  dataset = tools.darknet_txt.open_txt_dataset("DIR/train.txt")   (names: the first *.names beside it)
      python -m tools.datasets --check DIR                           every problem of such a dataset
"""
import os

from PIL import Image

from data import IMAGE_EXTENSIONS, DetectionDataset, _listdir, read_names


def label_path(image_path):
    """darknet data.c fill_truth_detection: images -> labels, JPEGImages -> labels, extension -> .txt. We
    replace a whole directory name (the last one so called), not the first matching substring as darknet does
    (which changes ".../myimages/..."). No such directory: the .txt next to the image."""
    parts = os.path.normpath(image_path).split(os.sep)
    for k in range(len(parts) - 2, -1, -1):
        if parts[k] in ("images", "JPEGImages"):
            parts[k] = "labels"
            break
    return os.path.splitext(os.sep.join(parts))[0] + ".txt"


class YoloTxtDataset(DetectionDataset):
    """darknet-style labels. list_or_dir: a text file with one image path per line (relative to the list file's
    folder) or a folder searched for images; names_file: one class name per line. A missing label file means an
    image without objects (reported)."""

    def __init__(self, list_or_dir, names_file, img_size=448, augment=None, seed=0):
        super().__init__(img_size, augment, seed)
        self.class_names, src = read_names(names_file), str(list_or_dir)
        if os.path.isdir(src):
            entries = [(os.path.join(d, n), src) for d, _, files in sorted(os.walk(src)) for n in sorted(files)
                       if n.lower().endswith(IMAGE_EXTENSIONS)]
        else:
            with open(src, encoding="utf-8") as f:
                entries = [(os.path.join(os.path.dirname(src), line.strip()), f"{src}:{k}")
                           for k, line in enumerate(f, 1) if line.strip()]
        for image, where in entries:
            if not self.listed(where, os.path.abspath(image), [("image", image)]):
                continue
            try:
                with Image.open(image) as im:                # the header only: no decoding
                    size = im.size
            except Exception as e:
                self.problem("unreadable images", f"{image}: unreadable image ({type(e).__name__}: {e})")
                continue
            image_id = os.path.splitext(os.path.basename(image))[0]
            self.add(image, image_id, size, self._read_labels(label_path(image), size))

    def _read_labels(self, path, size):
        if not os.path.isfile(path):
            self.problem("label files missing", f"{path}: label file missing, image taken as having no objects")
            return []
        (W, H), objects = size, []
        with open(path, encoding="utf-8", errors="replace") as f:
            for where, line in ((f"{path}:{n}", line.strip()) for n, line in enumerate(f, 1) if line.strip()):
                try:
                    label, cx, cy, w, h = line.split()
                    label, (cx, cy, w, h) = int(label), map(float, (cx, cy, w, h))
                except ValueError:
                    self.problem("malformed label lines", f"{where}: expected 'class cx cy w h', got {line[:60]!r}")
                    continue
                if 0 <= label < len(self.class_names):
                    box = ((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H)
                    objects.append((where, box, (label, False, False)))
                else:
                    self.problem("objects with unknown class", f"{where}: unknown class id {label} "
                                 f"({len(self.class_names)} names)")
        return objects


def open_txt_dataset(path, names_file=None, img_size=448, augment=None, seed=0):
    """Darknet txt labels at path: a list file or a folder (its images/ subfolder if it has one); names_file, or
    the first *.names in the folder or its parent. img_size, augment and seed go to the dataset."""
    path, options = str(path), dict(img_size=img_size, augment=augment, seed=seed)
    folder = path if os.path.isdir(path) else os.path.dirname(path)
    names = names_file or next((os.path.join(d, n) for d in (folder, os.path.dirname(folder))
                                for n in _listdir(d) if n.endswith(".names")), None)
    if names is None:
        raise FileNotFoundError(f"{path}: darknet txt labels need a names file: none given, no *.names in {folder} "
                                f"or its parent")
    images = os.path.join(path, "images")
    return YoloTxtDataset(images if os.path.isdir(images) else path, names, **options)
