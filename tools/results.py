"""
Results files of the official evaluation servers, written from detect.py's detections (detect.py --data ...
--results-dir DIR). Not in the papers: the files the VOC and COCO servers (and darknet's `detector valid`) read.

  Pascal VOC comp4: comp4_det_test_<class>.txt ....................... write_voc_results()
  MS COCO results json ............................................... write_coco_results()
"""
import json
from pathlib import Path


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
