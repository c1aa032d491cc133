"""
Detections drawn as darknet's draw_detections draws them, with Pillow, and the grid of YOLOv1 §2 for teaching.

Paper / darknet -> code
  darknet image.c get_color: a colour per class along a six-colour ramp ..................... class_colour()
  darknet image.c draw_detections / draw_label: boxes, "name score" labels ................... draw(), place_labels()
  YOLOv1 §2: the grid cell holding an object's centre "is responsible for detecting" it ...... draw(show_grid=True)

Imported by detect.py; imports data.py (where the network input's corners land in the image).
"""
import math

import torch
from PIL import Image, ImageDraw, ImageFont

import data
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
    # the labels after every box, so that no box line crosses a label, and placed so that none covers another
    texts = [f"{class_names[label]} {score:.2f}" for score, label in zip(det["scores"].tolist(), det["labels"].tolist())]
    sizes = [pen.textbbox((0, 0), text, font=font)[2:] for text in texts]
    rects = place_labels(det["boxes"].tolist(), [(w + 2 * width, h + width) for w, h in sizes])
    for rect, text, label in zip(rects, texts, det["labels"].tolist()):
        pen.rectangle(rect, fill=class_colour(label, len(class_names)) + (255,))
        pen.text((rect[0] + width, rect[1]), text, fill=(0, 0, 0, 255), font=font)
    return Image.alpha_composite(image, overlay).convert("RGB")


def place_labels(boxes: list, sizes: list) -> list[list[float]]:
    """Label rectangles [x0, y0, x1, y1], one per box (x1, y1, x2, y2) with its label's (width, height). Darknet's
    draw_label puts a label above its box when it fits there, else just inside its top; OUR CHOICE: a label that
    would cover one placed before it moves down below that one, until it covers none."""
    placed = []
    for (left, top, _, _), (w, h) in zip(boxes, sizes):
        y = top - h if top - h >= 0 else top
        moved = True
        while moved:
            moved = False
            for x0, y0, x1, y1 in placed:
                if left < x1 and x0 < left + w and y < y1 and y0 < y + h:     # the rectangles overlap
                    y, moved = y1, True
        placed.append([left, y, left + w, y + h])
    return placed
