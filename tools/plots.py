"""
Plots of a training run, drawn with Pillow only (no matplotlib). Not in the papers: a picture of what train.py
logs and of what metrics.evaluate() returns.

  training loss and validation metric per epoch, two panels (train.py's curves.png) ..... save_curves_png()
  precision (y) against recall (x), one panel per class, titled with its AP (pr_curves.png) save_pr_curves_png()
"""
import math

import numpy as np
from PIL import Image, ImageDraw


def save_curves_png(history, path, metric_name):
    """Two panels drawn with Pillow: training loss (total) and the validation metric, per epoch.
    history: train.py's rows; reads "epoch", "loss" and "val" (None or "" where not evaluated)."""
    width, height, pad = 480, 320, 40
    image = Image.new("RGB", (2 * width, height), "white")
    draw = ImageDraw.Draw(image)
    for panel, (key, title) in enumerate([("loss", "training loss (total)"), ("val", metric_name)]):
        x0 = panel * width
        draw.rectangle([x0 + pad, pad, x0 + width - pad, height - pad], outline="black")
        draw.text((x0 + pad, 12), title, fill="black")
        points = [(row["epoch"], row[key]) for row in history if row.get(key) not in (None, "")]
        points = [(e, v) for e, v in points if math.isfinite(v)]
        if not points:
            continue
        (e_lo, e_hi), (v_lo, v_hi) = ((min(c), max(c)) for c in zip(*points))
        e_hi, (v_lo, v_hi) = max(e_hi, e_lo + 1), (0.0, 1.0) if key == "val" else (v_lo, max(v_hi, v_lo + 1e-9))
        xy = [(x0 + pad + (e - e_lo) / (e_hi - e_lo) * (width - 2 * pad),
               height - pad - (v - v_lo) / (v_hi - v_lo) * (height - 2 * pad)) for e, v in points]
        if len(xy) > 1:
            draw.line(xy, fill="blue", width=2)
        for x, y in xy:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill="blue")
        draw.text((x0 + 4, pad), f"{v_hi:.3g}", fill="black")
        draw.text((x0 + 4, height - pad - 10), f"{v_lo:.3g}", fill="black")
        draw.text((x0 + pad, height - pad + 6), f"epoch {e_lo}", fill="black")
        draw.text((x0 + width - pad - 60, height - pad + 6), f"epoch {e_hi}", fill="black")
    image.save(path)


def save_pr_curves_png(result: dict, class_names, path, columns: int = 5, panel=(220, 180)) -> None:
    """One small recall (x) / precision (y) plot per class, titled with its AP, in a grid.
    result: metrics.evaluate()'s dict ("ap" and "curves" are read)."""
    n = len(class_names)
    cols, (pw, ph), m = max(1, min(columns, n)), panel, 28      # m: margin around each plot area
    rows = max(1, -(-n // cols))
    image = Image.new("RGB", (cols * pw, rows * ph), "white")
    draw = ImageDraw.Draw(image)
    for c, name in enumerate(class_names):
        x0, y0 = (c % cols) * pw, (c // cols) * ph
        left, top, right, bottom = x0 + m, y0 + 20, x0 + pw - 10, y0 + ph - m
        draw.rectangle([left, top, right, bottom], outline="black")
        for v in (0.5, 1.0):                                      # axis ticks at 0.5 and 1
            draw.text((left + v * (right - left) - 8, bottom + 2), f"{v:.1f}", fill="gray")
            draw.text((x0 + 2, bottom - v * (bottom - top) - 5), f"{v:.1f}", fill="gray")
        ap = result["ap"].get(c, float("nan"))
        title = f"{name}: AP {ap:.3f}" if not np.isnan(ap) else f"{name}: no ground truth"
        draw.text((left, y0 + 4), title, fill="black")
        rec, prec = result["curves"].get(c, (np.zeros(0), np.zeros(0)))
        if len(rec):
            xy = [(left + r * (right - left), bottom - p * (bottom - top)) for r, p in zip(rec, prec)]
            draw.line(xy if len(xy) > 1 else xy * 2, fill=(200, 30, 30), width=2)
    image.save(path)
