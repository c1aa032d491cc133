"""
Plots of a training run and of an evaluation. Not in the papers: pictures of what train.py logs and of what
metrics.evaluate() returns, drawn with matplotlib where it is installed (the usual choice), else with a small
Pillow fallback that draws the same axes, ticks and labels.

  training loss at every logged step, validation metric per evaluation, against epochs (curves.png) . save_curves_png()
  precision (y) against recall (x), one panel per class, titled with its AP (pr_curves.png) ......... save_pr_curves_png()
  the two losses under the names train.py prints them: N-step mean, epoch mean ..................... loss_names()
  YOLOv1 §4.2 Figure 4: pies of the top detections' error types (metrics.error_analysis) ........ save_error_pies_png()
  YOLOv2 Table 3 / Figure 4: accuracy (y) against speed (x), one point per input size ....... save_speed_accuracy_png()

train.py redraws curves.png at every checkpoint, so it shows the run as it goes, one epoch included; both panels
span epoch 0 to the last one logged, so that a single evaluation still has an axis with distinct ticks.
"""
import math

import numpy as np
from PIL import Image, ImageDraw


def _matplotlib():
    """pyplot on the file-only Agg backend, or None when matplotlib is not installed (optional)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(plt, figure, path):
    """A matplotlib figure laid out, written to path, and closed (pyplot keeps every open figure otherwise)."""
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of ten (as matplotlib picks)."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / count
    step = min((m * 10 ** math.floor(math.log10(raw)) for m in (1, 2, 5, 10)), key=lambda s: abs(s - raw))
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def loss_names(log_interval) -> tuple[str, str]:
    """The names train.py prints its two losses under, and the plot's legend uses: the mean of the steps since the
    previous progress line (every --log-interval steps), and the mean of the epoch's steps (its end-of-epoch line
    and log.csv's "loss")."""
    return f"loss ({log_interval}-step mean)", "loss (epoch mean)"


def curve_panels(steps, history, metric_name) -> list[dict]:
    """-> the two panels of curves.png: {"title", "ylabel", "series": [(name, [(epoch, y)])], "ylimits",
    "xlimits"}. Both share the x range 0 .. the last epoch logged, so that a single evaluation has an axis (not
    the width-0 range of one point). The logging interval is read from the steps (their most common gap)."""
    gaps = [b["step"] - a["step"] for a, b in zip(steps, steps[1:]) if b["step"] > a["step"]]
    window, epoch_name = loss_names(max(set(gaps), key=gaps.count) if gaps else steps[0]["step"] if steps else 1)
    logged = [(s["epoch"], s["loss"]) for s in steps if math.isfinite(s["loss"])]
    means = [(row["epoch"], row["loss"]) for row in history if math.isfinite(row["loss"])]
    val = [(row["epoch"], row["val"]) for row in history if row.get("val") not in (None, "")]
    last = max([x for x, _ in logged + means + val] or [1.0])
    xlimits = (0.0, last if last > 0 else 1.0)
    return [dict(title="training loss", ylabel="loss", series=[(window, logged), (epoch_name, means)],
                 ylimits=None, xlimits=xlimits),
            dict(title="validation", ylabel=metric_name, series=[(metric_name, val)], ylimits=(0.0, 1.0),
                 xlimits=xlimits)]


def save_curves_png(steps, history, path, metric_name, use_matplotlib=True):
    """Two panels against epochs: the training loss at every logged step (train.py's run["steps"]: "epoch"
    fractional, "loss" the mean over the interval) with each epoch's mean (history's "loss"), and the validation
    metric at each evaluation (history's "val", None where not evaluated)."""
    panels = curve_panels(steps, history, metric_name)
    plt = _matplotlib() if use_matplotlib else None
    if plt is not None:
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=100, sharex=True)   # the same epochs
        for ax, panel in zip(axes, panels):
            for k, (name, points) in enumerate(panel["series"]):
                if points:
                    ax.plot(*zip(*points), marker="o" if len(points) < 30 or k else None, markersize=3 + 2 * k,
                            linestyle="-" if k == 0 else "none", label=name)
            ax.set(title=panel["title"], xlabel="epoch", ylabel=panel["ylabel"])
            ax.set_xlim(left=0)      # the right end: matplotlib's margin past the last point
            if panel["ylimits"]:
                ax.set_ylim(*panel["ylimits"])
            if len(panel["series"]) > 1 and ax.get_legend_handles_labels()[0]:   # a series may have no point yet
                ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        save_figure(plt, figure, path)
        return
    width, height = 480, 320
    image = Image.new("RGB", (2 * width, height), "white")
    for k, panel in enumerate(panels):
        _pillow_panel(ImageDraw.Draw(image), (k * width, 0, width, height), panel["title"], "epoch",
                      panel["ylabel"], panel["series"][0][1], panel["ylimits"], panel["xlimits"],
                      [(name, points) for name, points in panel["series"][1:]],
                      legend=[name for name, _ in panel["series"]] if len(panel["series"]) > 1 else None)
    image.save(path)


def _text_box(draw, xy, text):
    """The pixel box (x0, y0, x1, y1) text covers when written at xy."""
    return tuple(int(v) for v in draw.textbbox(xy, text))


def _expand(lo, hi):
    """A range of width 0 (one point, or a flat line) -> that value's neighbourhood, so that the ticks differ."""
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.1 or 0.5
    return lo - pad, hi + pad


def _pillow_panel(draw, box, title, xlabel, ylabel, points, limits, xlimits=None, more=(), legend=None, series=()):
    """One framed plot: title, axis names (the y name written upwards along the axis, whole), tick values along
    both axes, the line and its points; more: [(name, points)] drawn as larger dots (epoch means); series: more
    lines, [(points, colour, name, point labels or None)], each named at the top left.
    -> [(text, its pixel box)] in the order written: title, x name, y name, legend, ticks."""
    x0, y0, width, height = box
    left, top, right, bottom = x0 + 74, y0 + 24, x0 + width - 16, y0 + height - 44
    draw.rectangle([left, top, right, bottom], outline="black")
    texts = [(title, (left, y0 + 6)), (xlabel, ((left + right) // 2 - 15, bottom + 24))]
    for text, xy in texts:
        draw.text(xy, text, fill="black")
    texts = [(text, _text_box(draw, xy, text)) for text, xy in texts]
    # the y name, rotated: drawn on its own image, turned 90 degrees, pasted along the left edge
    tx0, ty0, tx1, ty1 = draw.textbbox((0, 0), ylabel)
    label = Image.new("L", (tx1, ty1), 0)
    ImageDraw.Draw(label).text((0, 0), ylabel, fill=255)
    label = label.rotate(90, expand=True)
    lx, ly = x0 + 4, max(top, (top + bottom) // 2 - label.height // 2)
    draw.bitmap((lx, ly), label, fill="black")
    texts.append((ylabel, (lx, ly, lx + label.width, ly + label.height)))
    if legend:                              # beside the title, right-aligned, a dot of each series' colour
        x = right
        for name, colour in reversed(list(zip(legend, ("blue", "darkorange")))):
            x -= int(draw.textlength(name)) + 14
            draw.ellipse([x, y0 + 9, x + 6, y0 + 15], fill=colour)
            draw.text((x + 9, y0 + 6), name, fill="black")
            texts.append((name, (x, *_text_box(draw, (x + 9, y0 + 6), name)[1:])))
    all_points = list(points) + [p for _, dots in more for p in dots] + [p for line in series for p in line[0]]
    xs, ys = [p[0] for p in all_points] or [0.0, 1.0], [p[1] for p in all_points] or [0.0, 1.0]
    (x_lo, x_hi) = _expand(*(xlimits or (min(xs), max(xs))))
    (y_lo, y_hi) = _expand(*(limits or (min(ys), max(ys))))
    px = lambda x: left + (x - x_lo) / (x_hi - x_lo) * (right - left)        # noqa: E731 (data -> pixels)
    py = lambda y: bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)      # noqa: E731
    for x in nice_ticks(x_lo, x_hi):
        text = f"{x:g}"
        draw.line([(px(x), bottom), (px(x), bottom + 4)], fill="black")
        xy = (px(x) - draw.textlength(text) / 2, bottom + 6)
        draw.text(xy, text, fill="black")
        texts.append((text, _text_box(draw, xy, text)))
    for y in nice_ticks(y_lo, y_hi):
        text = f"{y:.4g}"
        draw.line([(left - 4, py(y)), (left, py(y))], fill="black")
        xy = (left - 6 - draw.textlength(text), py(y) - 6)
        draw.text(xy, text, fill="black")
        texts.append((text, _text_box(draw, xy, text)))
    xy = [(px(x), py(y)) for x, y in points]
    if len(xy) > 1:
        draw.line(xy, fill="blue", width=2)
    for x, y in xy:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill="blue")
    for _, dots in more:
        for x, y in dots:
            draw.ellipse([px(x) - 4, py(y) - 4, px(x) + 4, py(y) + 4], fill="darkorange")
    for k, (line, colour, name, labels) in enumerate(series):
        xy = [(px(x), py(y)) for x, y in line]
        if len(xy) > 1:
            draw.line(xy, fill=colour, width=2)
        for j, (x, y) in enumerate(xy):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
            if labels:
                draw.text((x + 4, y - 12), str(labels[j]), fill=colour)
        if name:
            draw.text((left + 6, top + 4 + 12 * k), name, fill=colour)
    return texts


def save_pr_curves_png(result: dict, class_names, path, columns: int = 5, use_matplotlib=True) -> None:
    """One recall (x) / precision (y) plot per class, titled with its AP, in a grid.
    result: metrics.evaluate()'s dict ("ap" and "curves" are read)."""
    n = len(class_names)
    cols, rows = max(1, min(columns, n)), max(1, -(-n // columns))
    panels = []
    for c, name in enumerate(class_names):
        ap = result["ap"].get(c, float("nan"))
        rec, prec = result["curves"].get(c, (np.zeros(0), np.zeros(0)))
        panels.append((f"{name}: AP {ap:.3f}" if not np.isnan(ap) else f"{name}: no ground truth",
                       list(zip(np.asarray(rec).tolist(), np.asarray(prec).tolist()))))
    plt = _matplotlib() if use_matplotlib else None
    if plt is not None:
        figure, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), dpi=100, squeeze=False)
        for ax, (title, points) in zip(axes.flat, panels):
            if points:
                ax.plot(*zip(*points), color="tab:red")
            ax.set(title=title, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
            ax.title.set_fontsize(9)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        save_figure(plt, figure, path)
        return
    pw, ph = 260, 220
    image = Image.new("RGB", (cols * pw, rows * ph), "white")
    draw = ImageDraw.Draw(image)
    for c, (title, points) in enumerate(panels):
        _pillow_panel(draw, ((c % cols) * pw, (c // cols) * ph, pw, ph), title, "recall", "precision",
                      points, (0.0, 1.0), (0.0, 1.0))
    image.save(path)


# -----------------------------------------------------------------------------
# YOLOv1 §4.2, Figure 4: "Error Analysis: Fast R-CNN vs. YOLO", one pie per detector

ERROR_LABELS = ("Correct", "Loc", "Sim", "Other", "Background")   # Figure 4's names, in metrics.ERROR_TYPES order
# Hoiem et al.'s pie colours (detectionAnalysis displayFalsePositiveImpactPlot.m's colormap): white, blue, red,
# green, purple
ERROR_COLOURS = ((255, 255, 255), (79, 129, 189), (192, 80, 77), (92, 230, 96), (128, 100, 162))


def save_error_pies_png(pies: dict, path, use_matplotlib=True) -> None:
    """One pie per entry, side by side: {title: the five shares (fractions, metrics.ERROR_TYPES order)}, e.g. this
    model's metrics.error_analysis(...)["overall"] beside the paper's metrics.FIGURE_4 / 100. Slices start at the
    top and go clockwise, each labelled with its name and percentage."""
    panels = [(title, [float(v) for v in shares]) for title, shares in pies.items()]
    percent = lambda v: f"{100 * v:.2f}".rstrip("0").rstrip(".")                   # noqa: E731 (6.75, 19, 0.6)
    labelled = [[f"{name}: {percent(v)}%" for name, v in zip(ERROR_LABELS, shares)] for _, shares in panels]
    plt = _matplotlib() if use_matplotlib else None
    if plt is not None:                     # the names in a legend under each pie: thin slices' labels would collide
        figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4), dpi=100, squeeze=False)
        for ax, (title, shares), labels in zip(axes.flat, panels, labelled):
            wedges, _ = ax.pie(shares, colors=[tuple(c / 255 for c in rgb) for rgb in ERROR_COLOURS], startangle=90,
                               counterclock=False, wedgeprops=dict(edgecolor="black", linewidth=0.6))
            ax.legend(wedges, labels, loc="upper center", bbox_to_anchor=(0.5, 0.02), fontsize=8, frameon=False)
            ax.set_title(title, fontsize=10)
        figure.subplots_adjust(left=0.02, right=0.98, top=0.92, bottom=0.3)    # room for the legends
        figure.savefig(path)
        plt.close(figure)
        return
    pw, ph, radius = 300, 320, 90
    image = Image.new("RGB", (pw * len(panels), ph), "white")
    draw = ImageDraw.Draw(image)
    for k, ((title, shares), labels) in enumerate(zip(panels, labelled)):
        cx, cy = k * pw + pw // 2, 30 + radius
        draw.text((k * pw + 10, 6), title, fill="black")
        start = -90.0                                       # PIL: degrees clockwise from 3 o'clock; -90 is the top
        for share, colour in zip(shares, ERROR_COLOURS):
            if share > 0:
                draw.pieslice([cx - radius, cy - radius, cx + radius, cy + radius], start, start + 360 * share,
                              fill=colour, outline="black")
            start += 360 * share
        for j, (label, colour) in enumerate(zip(labels, ERROR_COLOURS)):   # the legend under the pie
            y = cy + radius + 12 + 14 * j
            draw.rectangle([k * pw + 60, y, k * pw + 70, y + 10], fill=colour, outline="black")
            draw.text((k * pw + 76, y), label, fill="black")
    image.save(path)

# -----------------------------------------------------------------------------
# YOLOv2 Table 3 / Figure 4: accuracy and speed of one network at several input sizes


def save_speed_accuracy_png(panels: dict, path, metric_name="mAP", use_matplotlib=True) -> None:
    """mAP (y) against images/s (x), one panel per entry of panels: {title: {line name: [(size, images/s, mAP)]}},
    each point labelled with its input size; e.g. this device's batch-1 and batch-8 lines in one panel, the paper's
    Titan X line in another (each panel its own scales: a model trained for minutes and the paper's share none)."""
    colours = ("tab:blue", "tab:orange", "tab:gray", "tab:green", "tab:red")
    pil_colours = ("blue", "orange", "gray", "green", "red")
    drawn = [(title, [(name, [(float(ips), float(value)) for _, ips, value in points], [size for size, *_ in points])
                      for name, points in series.items()]) for title, series in panels.items()]
    plt = _matplotlib() if use_matplotlib else None
    if plt is not None:
        figure, axes = plt.subplots(1, len(drawn), figsize=(5.5 * len(drawn), 4.2), dpi=100, squeeze=False)
        for ax, (title, lines) in zip(axes.flat, drawn):
            for (name, points, sizes), colour in zip(lines, colours):
                ax.plot(*zip(*points), marker="o", color=colour, label=name)
                for (x, y), size in zip(points, sizes):
                    ax.annotate(str(size), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color=colour)
            ax.set(xlabel="images/s", ylabel=metric_name, title=title)
            ax.title.set_fontsize(10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        save_figure(plt, figure, path)
        return
    width, height = 550, 420
    image = Image.new("RGB", (width * len(drawn), height), "white")
    draw = ImageDraw.Draw(image)
    for k, (title, lines) in enumerate(drawn):
        xs, ys = [x for _, points, _ in lines for x, _ in points], [y for _, points, _ in lines for _, y in points]
        margin = 0.08 * (max(ys) - min(ys) or 1.0)           # room for the labels at the extremes
        _pillow_panel(draw, (k * width, 0, width, height), title, "images/s", metric_name, [],
                      (min(ys) - margin, max(ys) + margin), (0.0, 1.1 * max(xs)),
                      series=[(points, colour, name, sizes)
                              for (name, points, sizes), colour in zip(lines, pil_colours)])
    image.save(path)
