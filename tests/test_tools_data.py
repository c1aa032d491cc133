"""Tests of tools/: darknet txt labels (tools/darknet_txt.py), the dataset check and its command line, the VOC
download without network (tools/datasets.py). Small files, seconds."""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import urllib.request

import pytest
import torch

import data
from conftest import save_jpeg, write_voc
from data import COCODataset, VOCDataset, check_annotations
from tools import datasets
from tools.darknet_txt import YoloTxtDataset, label_path, open_txt_dataset
from tools.datasets import check_dataset, download_voc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -----------------------------------------------------------------------------
# darknet txt labels

def test_yolo_txt_read_back_and_label_path(tmp_path):
    save_jpeg(str(tmp_path / "set" / "images" / "x.jpg"), (40, 20))
    os.makedirs(tmp_path / "set" / "labels")
    (tmp_path / "set" / "labels" / "x.txt").write_text("1 0.5 0.5 0.5 0.5\n\n0 0.25 0.25 0.1 0.2\n")
    (tmp_path / "set" / "obj.names").write_text("a\nb\n")
    (tmp_path / "set" / "train.txt").write_text("images/x.jpg\n")
    (tmp_path / "n").write_text("c\n")
    for source in (tmp_path / "set" / "train.txt", tmp_path / "set" / "images"):
        ds = YoloTxtDataset(source, tmp_path / "set" / "obj.names", img_size=8)
        assert ds.class_names == ["a", "b"] and ds.problems == []
        ann = ds.annotation(0)
        # cx cy w h normalized times (40, 20): (20 - 10, 10 - 5, 20 + 10, 10 + 5); (10 - 2, 5 - 2, 10 + 2, 5 + 2)
        assert torch.allclose(ann["boxes"], torch.tensor([[10., 5, 30, 15], [8, 3, 12, 7]]))
        assert ann["labels"].tolist() == [1, 0]
    guessed = open_txt_dataset(tmp_path / "set", img_size=8, augment="yolov1", seed=4)
    assert isinstance(guessed, YoloTxtDataset) and (guessed.img_size, guessed.augment, guessed.seed) == (8, "yolov1", 4)
    with pytest.raises(FileNotFoundError, match="open_txt_dataset"):        # data.py knows VOC and COCO only
        data.open_dataset(tmp_path / "set")
    (tmp_path / "set" / "obj.names").unlink()
    with pytest.raises(FileNotFoundError, match=r"set: darknet txt labels need a names file"):
        open_txt_dataset(tmp_path / "set")
    assert open_txt_dataset(tmp_path / "set" / "train.txt", tmp_path / "n").class_names == ["c"]   # names given
    assert label_path("/d/VOC2007/JPEGImages/1.jpg") == "/d/VOC2007/labels/1.txt"
    assert label_path("/d/myimages/images/a.b.png") == "/d/myimages/labels/a.b.txt"
    assert label_path("/d/flat/c.JPEG") == "/d/flat/c.txt"


# -----------------------------------------------------------------------------
# --check: each problem with its file and line

def test_check_reports_every_voc_problem(broken_voc):
    root, base = broken_voc
    report = check_dataset(root)
    text = "\n".join(report["problems"])
    ann, lst = os.path.join(base, "Annotations"), os.path.join(base, "ImageSets", "Main", "trainval.txt")
    # voc_xml puts <size> on line 2 and the k-th <object> on line 3 + 5k
    assert f"{ann}/outside.xml:8: box [9, 9, 59, 19] outside the 40x30 image, clipped" in text
    assert f"{ann}/inverted.xml:3: inverted or zero-area box [19, 4, 9, 14], dropped" in text
    assert f"{ann}/inverted.xml:8: inverted or zero-area box [4, 4, 4, 14], dropped" in text
    assert f"{ann}/unknown.xml:3: unknown class name 'unicorn', object dropped" in text
    assert f"{lst}:5: duplicate image id good, skipped" in text
    assert f"{lst}:6: annotation {ann}/ghost.xml listed but missing" in text
    assert f"{base}/JPEGImages/empty.jpg: file is empty (0 bytes)" in text
    assert f"{base}/JPEGImages/cut.jpg: cannot decode, truncated or corrupt" in text
    assert f"{base}/JPEGImages/text.jpg: not an image" in text
    assert f"{ann}/nobox.xml:3: missing or invalid <bndbox>" in text
    assert f"{ann}/malformed.xml:3: malformed XML" in text
    assert f"{ann}/wrongsize.xml: image {base}/JPEGImages/wrongsize.jpg is 50x30 (EXIF orientation 1), " \
           f"the annotation says 40x30" in text
    assert "rotated" not in text
    c = report["counts"]
    assert (c["boxes clipped"], c["boxes dropped (inverted or zero-area)"], c["unreadable images"]) == (1, 2, 3)


def test_check_summary_is_check_annotations_summary(broken_voc):
    root, _ = broken_voc
    dataset = VOCDataset(root, splits=[("2007", "trainval")])
    report = check_dataset(dataset, decode=False)             # the annotations only: what train.py checks
    assert report["summary"] == check_annotations(dataset, strict=False)
    assert report["summary"].startswith(f"{len(dataset)} images, {report['objects']} objects, ")


def test_check_cli(broken_voc):
    root, base = broken_voc
    run = subprocess.run([sys.executable, "-m", "tools.datasets", "--check", str(root)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert f"{base}/Annotations/unknown.xml:3: unknown class name 'unicorn'" in run.stdout
    assert "1 boxes clipped" in run.stdout.splitlines()[-1]
    clean = write_voc(root / "clean", {"a": ((40, 30), [("dog", 1, 1, 20, 20, 0)])})
    run = subprocess.run([sys.executable, "-m", "tools.datasets", "--check", clean, "--no-decode"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout) == (0, f"{clean}: 1 images, 1 objects, no problems\n")


def test_check_coco_and_yolo_problems(tmp_path):
    (tmp_path / "bad.json").write_text('{"images": [\n  {"id": 1,}\n]}')
    report = check_dataset(COCODataset(tmp_path / "bad.json", tmp_path))
    assert report["problems"][0].startswith(f"{tmp_path / 'bad.json'}:2: malformed json")
    save_jpeg(str(tmp_path / "a.jpg"))
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                       {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
                       {"id": 2, "file_name": "gone.jpg", "width": 40, "height": 30}, {"id": 3}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5]},
                            {"id": 11, "image_id": 1, "category_id": 1}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    text = "\n".join(check_dataset(COCODataset(tmp_path / "c.json", tmp_path))["problems"])
    j = tmp_path / "c.json"
    assert f"{j}: images[1]: duplicate image id 1, skipped" in text
    assert f"{j}: images[3]: missing or invalid field 'file_name'" in text
    assert f"{j}: image id 2: image {tmp_path / 'gone.jpg'} listed but missing" in text
    assert f"{j}: annotations[0] (id 10): unknown category id 4, dropped" in text
    assert f"{j}: annotations[1] (id 11): missing or invalid field ('bbox')" in text
    os.makedirs(tmp_path / "y" / "labels")
    save_jpeg(str(tmp_path / "y" / "images" / "p.jpg"))
    save_jpeg(str(tmp_path / "y" / "images" / "q.jpg"))
    (tmp_path / "y" / "labels" / "p.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n0 0.5 oops\n")
    (tmp_path / "y" / "n.names").write_text("x\n")
    text = "\n".join(check_dataset(tmp_path / "y")["problems"])
    labels = tmp_path / "y" / "labels"
    assert f"{labels / 'p.txt'}:2: unknown class id 7 (1 names)" in text
    assert f"{labels / 'p.txt'}:3: expected 'class cx cy w h', got '0 0.5 oops'" in text
    assert f"{labels / 'q.txt'}: label file missing" in text


# -----------------------------------------------------------------------------
# VOC download, no network: urlopen serves a small tar built here

def test_download_voc_resumes_checks_md5_and_skips_unpacked(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        payload = b"000001\n" * 200
        info = tarfile.TarInfo("VOCdevkit/VOC2007/ImageSets/Main/test.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    blob = buf.getvalue()
    monkeypatch.setattr(datasets, "VOC_URL", "http://voc.invalid/")
    monkeypatch.setattr(datasets, "VOC_TARS", [("voc2007/small.tar", hashlib.md5(blob).hexdigest())])
    requests, honour_range = [], [True]

    class Response(io.BytesIO):
        status = 200

    def urlopen(request):
        requests.append((request.full_url, request.get_header("Range")))
        start = int(request.get_header("Range", "bytes=0-")[6:-1])
        if not honour_range[0]:
            return Response(blob)
        response = Response(blob[start:])
        response.status = 206 if start else 200
        return response

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    dest = tmp_path / "a"
    os.makedirs(dest)
    (dest / "small.tar.part").write_bytes(blob[:1000])              # an interrupted download
    devkit = download_voc(str(dest))
    assert requests == [("http://voc.invalid/voc2007/small.tar", "bytes=1000-")]      # resumed where it stopped
    assert devkit == str(dest / "VOCdevkit") and not (dest / "small.tar.part").exists()
    assert (dest / "small.tar").read_bytes() == blob and (dest / "small.tar.unpacked").exists()
    assert (dest / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "test.txt").read_bytes() == payload
    download_voc(str(dest))                                         # .unpacked marker: nothing fetched again
    assert len(requests) == 1
    # a server that ignores Range sends the whole file: the partial one is started again
    honour_range[0] = False
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "small.tar.part").write_bytes(b"junk" * 50)
    download_voc(str(tmp_path / "b"))
    assert requests[-1][1] == "bytes=200-" and (tmp_path / "b" / "small.tar").read_bytes() == blob
    # wrong md5: the partial file is removed and the error names the url
    monkeypatch.setattr(datasets, "VOC_TARS", [("voc2007/small.tar", "0" * 32)])
    with pytest.raises(OSError, match=r"http://voc.invalid/voc2007/small.tar: md5 [0-9a-f]{32} != 0{32}"):
        download_voc(str(tmp_path / "c"))
    assert os.listdir(tmp_path / "c") == []


# -----------------------------------------------------------------------------
# What a newcomer meets: a folder holding no data set, labels put beside the images, a read-only --download folder

def test_a_folder_without_any_data_set_says_so_and_lists_the_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    for call in (lambda: check_dataset(tmp_path / "empty"), lambda: open_txt_dataset(tmp_path / "empty")):
        with pytest.raises(FileNotFoundError) as error:
            call()
        message = str(error.value)
        assert message.startswith(f"{tmp_path / 'empty'}: no data set found there; looked for")
        assert "VOCdevkit" in message and "COCO" in message and "darknet txt" in message
        assert "need a names file" not in message and "\n" not in message
    run = subprocess.run([sys.executable, "-m", "tools.datasets", "--check", str(tmp_path / "empty")], cwd=REPO,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [f"error: {message}"]


def test_label_files_beside_the_images_are_named_with_darknets_rule(tmp_path):
    save_jpeg(str(tmp_path / "set" / "images" / "p.jpg"))
    (tmp_path / "set" / "images" / "p.txt").write_text("0 0.5 0.5 0.2 0.2\n")     # beside the image, not in labels/
    (tmp_path / "set" / "n.names").write_text("x\n")
    problems = check_dataset(tmp_path / "set", decode=False)["problems"]
    expected = tmp_path / "set" / "labels" / "p.txt"
    assert problems == [f"{expected}: label file missing, image taken as having no objects (darknet's rule: the "
                        f"image's path with images/ or JPEGImages/ -> labels/, the extension -> .txt); "
                        f"{tmp_path / 'set' / 'images' / 'p.txt'} is beside the image: move the label files to "
                        f"{tmp_path / 'set' / 'labels'}"]


def test_download_into_an_unwritable_folder_is_one_line(tmp_path):
    # a folder under a regular file cannot be made, whoever runs the tests (a chmod 500 folder is writable for
    # root, so a read-only folder would test nothing under CI): the same path as "Permission denied"
    where, reason = "file/voc", "Not a directory"
    (tmp_path / "file").write_text("a file, not a folder")
    run = subprocess.run([sys.executable, "-m", "tools.datasets", "--download", str(tmp_path / where)],
                         cwd=REPO, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [f"error: {tmp_path / where}: cannot write the download here "
                                               f"({reason}); choose another --download folder"]
