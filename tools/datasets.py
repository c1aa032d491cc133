"""
Dataset tooling: every problem of a dataset at once (annotations, then each image decoded), and the Pascal VOC
download. Not in the papers: what a user runs before training. train.py's own start-up check is
data.check_annotations, which decodes no image.

Run:  python -m tools.datasets --check DIR [--names F] [--no-decode]   every problem of a VOCdevkit tree, COCO json
                                                   or darknet txt dataset, each with its file and line; exit 1 on errors
      python -m tools.datasets --download DEST      VOC2007 trainval + test and VOC2012 trainval (about 2.9 GB)
Both show a progress line (tools/progress.py) on stderr unless --quiet: stdout holds the report alone.
"""
import argparse
import functools
import hashlib
import os
import sys
import tarfile
import urllib.request
from collections import Counter

from data import ERRORS, DetectionDataset, UnknownFormat, dataset_summary, open_dataset
from data import ImageError, decode_image
from tools.darknet_txt import open_txt_dataset
from tools.progress import Progress


def check_dataset(source, decode=True, names_file=None, progress=None):
    """Every problem of a dataset (a path or a dataset) at once: those met reading the annotations, then, with
    decode=True, each image decoded (empty, truncated, not an image) and its size compared with the annotation's,
    stored or after its EXIF rotation. A path is opened by data.open_dataset (VOC, COCO), else (UnknownFormat) as
    darknet txt labels (names_file or a *.names found). Returns {"problems": [str], "counts": Counter, "images",
    "objects", "errors": number of problems of the ERRORS kinds, "summary": one line}. progress: None (silent) or
    Progress, as the command line passes it."""
    if isinstance(source, DetectionDataset):
        dataset = source
    else:
        try:
            dataset = open_dataset(source)
        except UnknownFormat:
            dataset = open_txt_dataset(source, names_file)
    problems, counts, objects = list(dataset.problems), Counter(dataset.counts), 0
    records = map(dataset.record, range(len(dataset)))
    for rec in records if progress is None else progress(records, total=len(dataset), desc="checking",
                                                          unit="images"):
        objects += len(rec["labels"])
        if not decode or rec["path"].startswith("shapes://"):
            continue
        try:
            img, orientation = decode_image(rec["path"])
        except (ImageError, OSError) as e:
            problems.append(str(e))
            counts["unreadable images"] += 1
            continue
        (w, h), (aw, ah) = img.size, rec["size"]
        if (aw, ah) not in ((w, h), (h, w) if orientation >= 5 else (w, h)):
            problems.append(f"{rec.get('annotation_file', rec['path'])}: image {rec['path']} is {w}x{h} (EXIF "
                            f"orientation {orientation}), the annotation says {aw}x{ah}")
            counts["image sizes that match neither way"] += 1
    return {"problems": problems, "counts": counts, "images": len(dataset), "objects": objects,
            "errors": sum(counts[k] for k in ERRORS), "summary": dataset_summary(len(dataset), objects, counts)}


# -----------------------------------------------------------------------------
# VOC download: the official Oxford mirror, md5 sums as torchvision lists them

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/"
VOC_TARS = [("voc2007/VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64"),
            ("voc2007/VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f"),
            ("voc2012/VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd")]


def download_voc(dest, progress=None):
    """Download and unpack VOC2007 trainval + test and VOC2012 trainval into dest/VOCdevkit. Resumable: a partial
    download continues from its .part file (HTTP Range); the tar is renamed into place only when complete with
    the right md5; a tar already unpacked (its .unpacked marker exists) is skipped. progress: None (silent) or
    Progress, as the command line passes it: bytes downloaded, then files unpacked."""
    os.makedirs(dest, exist_ok=True)
    for name, md5 in VOC_TARS:
        url, tar_path = VOC_URL + name, os.path.join(dest, os.path.basename(name))
        part = tar_path + ".part"
        if os.path.exists(tar_path + ".unpacked"):
            continue
        if not os.path.exists(tar_path):
            start = os.path.getsize(part) if os.path.exists(part) else 0
            request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
            print(f"downloading {url} -> {part}", file=sys.stderr)
            with urllib.request.urlopen(request) as response, open(part, "ab") as f:
                if start and response.status != 206:         # the server ignored Range: start again
                    f.truncate(0)
                    start = 0
                chunks, length = iter(lambda: response.read(1 << 20), b""), getattr(response, "length", None)
                if progress:                                 # length: http.client's Content-Length, still to come
                    chunks = progress(chunks, total=length and start + length, desc=os.path.basename(name),
                                      unit="B", count=len, initial=start)
                for chunk in chunks:
                    f.write(chunk)
            with open(part, "rb") as f:
                digest = hashlib.file_digest(f, "md5").hexdigest()
            if digest != md5:
                os.remove(part)
                raise OSError(f"{url}: md5 {digest} != {md5}; partial file removed, run again")
            os.replace(part, tar_path)
        with tarfile.open(tar_path) as tar:
            members = tar.getmembers()
            tar.extractall(dest, members if progress is None else progress(members, desc="unpacking", unit="files"),
                           filter="data")
        open(tar_path + ".unpacked", "w").close()
    return os.path.join(dest, "VOCdevkit")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Check a dataset (VOCdevkit, COCO json, darknet txt labels) "
                                                 "or download Pascal VOC.")
    parser.add_argument("--check", metavar="DIR", help="report every problem of the dataset at DIR")
    parser.add_argument("--names", help="class names file for darknet txt labels (default: a *.names found)")
    parser.add_argument("--no-decode", action="store_true", help="annotations only, do not decode the images")
    parser.add_argument("--download", metavar="DEST", help="download VOC2007 and VOC2012 into DEST")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args()
    progress = None if args.quiet else functools.partial(Progress, stream=sys.stderr)
    if not (args.check or args.download):
        parser.print_help()
    if args.download:
        print(download_voc(args.download, progress))
    if args.check:
        try:
            result = check_dataset(args.check, decode=not args.no_decode, names_file=args.names, progress=progress)
        except OSError as e:
            sys.exit(f"error: {e}")
        print("\n".join(result["problems"] + [f"{args.check}: {result['summary']}"
                                              + ("" if result["counts"] else ", no problems")]))
        sys.exit(1 if result["errors"] else 0)
