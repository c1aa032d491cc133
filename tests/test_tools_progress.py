"""tools/progress.py on fake streams and a fake clock (no test sleeps): the terminal line rewritten with carriage
returns, the plain lines of a log, quiet, rank != 0, bytes; and detect.py's evaluation printing progress before
its AP table when its output is a file."""
import functools
import hashlib
import io
import os
import tarfile
import urllib.request

import pytest
import torch

import detect
import yolov1
import yolov2
from tools import datasets
from tools.progress import Progress, format_bytes, format_duration


class Stream(io.StringIO):
    """A StringIO that says whether it is a terminal."""

    def __init__(self, terminal):
        super().__init__()
        self.terminal = terminal

    def isatty(self):
        return self.terminal


class Clock:
    """Seconds set by the test: clock.t = 12.0."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def run(items, seconds_per_item, terminal, **options):
    """Iterate over Progress(items), each item taking seconds_per_item on the fake clock -> what was written."""
    stream, clock = Stream(terminal), Clock()
    for _ in Progress(items, stream=stream, clock=clock, **options):
        clock.t += seconds_per_item
    return stream.getvalue()


# -----------------------------------------------------------------------------
# Formatting

def test_bytes_durations_and_rates_are_formatted():
    assert format_bytes(0) == "0 B" and format_bytes(999) == "999 B"
    assert format_bytes(1000) == "1.00 kB"                        # decimal units: 1 kB = 1000 B
    assert format_bytes(1_234_567) == "1.23 MB"
    assert format_bytes(2_910_000_000) == "2.91 GB"               # the three VOC tars together
    assert format_bytes(5e12) == "5000.00 GB"                     # GB is the largest unit
    assert format_duration(83.6) == "0:01:23" and format_duration(3 * 3600 + 5) == "3:00:05"


def test_bytes_mode_counts_the_chunks_sizes_from_where_a_download_resumed():
    # 2,000,000 bytes already on disk, 4 chunks of 1,000,000 bytes, 2 s each; total 6,000,000.
    #   after chunk 1: 3,000,000 of 6,000,000 (50%), rate 1,000,000 / 2 s = 500 kB/s, ETA 3,000,000 / 500,000 = 6 s
    #   the last line: 4,000,000 bytes in 8 s = 500 kB/s
    stream, clock = Stream(False), Clock()
    bar = Progress([b"x" * 1_000_000] * 4, total=6_000_000, desc="VOCtest.tar", unit="B", count=len,
                   initial=2_000_000, stream=stream, clock=clock)
    for _ in bar:
        clock.t += 2
        if clock.t == 2:
            assert bar.text() == "VOCtest.tar: 2.00 MB/6.00 MB (33%)"       # nothing counted yet: no rate
    assert bar.text() == "VOCtest.tar: 6.00 MB/6.00 MB (100%), 500.00 kB/s, ETA 0:00:00"
    assert stream.getvalue().splitlines() == [
        "VOCtest.tar: 2.00 MB/6.00 MB (33%)",
        # 2 s after the first line: less than PLAIN_MIN_GAP (5 s) -> no line; at 4 s neither; at 6 s:
        # 5,000,000 of 6,000,000 (83%), 3,000,000 / 6 s = 500 kB/s, ETA 1,000,000 / 500,000 = 2 s
        "VOCtest.tar: 5.00 MB/6.00 MB (83%), 500.00 kB/s, ETA 0:00:02",
        "VOCtest.tar: 6.00 MB/6.00 MB in 0:00:08, 500.00 kB/s"]


# -----------------------------------------------------------------------------
# The two modes

def test_terminal_mode_rewrites_one_line_with_carriage_returns():
    # 3 images, 1 s each: each step redraws (1 s > TERMINAL_INTERVAL); after image 1: 1 image/s, ETA 2 s
    out = run(range(3), 1.0, terminal=True, desc="evaluating", unit="images")
    assert out.startswith("\r") and out.endswith("\n") and out.count("\n") == 1
    assert [part.rstrip() for part in out[1:-1].split("\r")] == [
        "evaluating: 0/3 images (0%)",
        "evaluating: 1/3 images (33%), 1.00 images/s, ETA 0:00:02",
        "evaluating: 2/3 images (66%), 1.00 images/s, ETA 0:00:01",
        "evaluating: 3/3 images in 0:00:03, 1.00 images/s"]
    # a shorter line is padded with spaces over the longer one before it
    assert "evaluating: 3/3 images in 0:00:03, 1.00 images/s".ljust(56) in out


def test_terminal_mode_redraws_at_most_ten_times_a_second():
    # 100 items of 0.01 s: a redraw each 0.1 s = every 10 items, 9 of them before the end, plus the first and last
    out = run(range(100), 0.01, terminal=True)
    assert out.count("\r") == 1 + 9 + 1


def test_plain_mode_writes_whole_lines_per_tenth_and_never_within_five_seconds():
    # 100 items of 1 s: a line every 10 items (10 s apart >= PLAIN_MIN_GAP), no carriage return
    out = run(range(100), 1.0, terminal=False, desc="checking", unit="images")
    assert "\r" not in out
    lines = out.splitlines()
    assert lines[0] == "checking: 0/100 images (0%)"
    assert lines[1] == "checking: 10/100 images (10%), 1.00 images/s, ETA 0:01:30"     # 90 left at 1 per s
    assert [line.split()[1] for line in lines] == [f"{n}/100" for n in range(0, 100, 10)] + ["100/100"]
    assert lines[-1] == "checking: 100/100 images in 0:01:40, 1.00 images/s"
    # 100 items of 0.1 s: a tenth takes 1 s, but lines are 5 s apart: after 50 items (5.0 s), then the end
    out = run(range(100), 0.125, terminal=False)    # 0.125: exact in binary, 40 items = 5 s
    assert [line.split()[1] for line in out.splitlines()] == ["0/100", "40/100", "80/100", "100/100"]


def test_plain_mode_without_a_total_writes_a_line_a_minute():
    # a generator has no len: lines at 60 s, 120 s, 180 s (PLAIN_MAX_GAP) and the last one at 200 s
    out = run((i for i in range(200)), 1.0, terminal=False, desc="reading")
    assert out.splitlines() == ["reading: 0 it", "reading: 60 it, 1.00 it/s", "reading: 120 it, 1.00 it/s",
                                "reading: 180 it, 1.00 it/s", "reading: 200 it in 0:03:20, 1.00 it/s"]


def test_quiet_and_other_ranks_write_nothing(monkeypatch):
    assert run(range(10), 1.0, terminal=True, quiet=True) == ""
    assert run(range(10), 1.0, terminal=False, quiet=True) == ""
    monkeypatch.setenv("RANK", "1")                 # torchrun's second process
    assert run(range(10), 1.0, terminal=True) == ""
    monkeypatch.setenv("RANK", "0")
    assert run(range(10), 0.25, terminal=False).count("\n") == 2        # 2.5 s in all: the first line, the last


def test_write_puts_the_callers_lines_above_the_terminal_line():
    stream, clock = Stream(True), Clock()
    bar = Progress(["a.jpg", "b.jpg"], desc="detecting", unit="images", stream=stream, clock=clock)
    for name in bar:
        clock.t += 1
        bar.write(f"{name}: 1 object")
    lines = stream.getvalue().split("\n")
    # each caller's line replaces the progress line (\r, padded over it), then the progress line is drawn again
    assert [line.split("\r")[-1].rstrip() for line in lines] == [
        "a.jpg: 1 object", "b.jpg: 1 object", "detecting: 2/2 images in 0:00:02, 1.00 images/s", ""]
    assert Progress([], quiet=True, stream=stream).write("x") is None and stream.getvalue().endswith("\nx\n")


def test_a_loop_left_early_still_ends_with_its_last_line():
    stream, clock = Stream(False), Clock()
    for i in Progress(range(300), desc="k-means k=3", unit="iterations", stream=stream, clock=clock):
        clock.t += 0.5
        if i == 56:                                 # converged on its 57th pass, at 57 * 0.5 = 28.5 s
            break
    # as tqdm, the item the loop stopped on is not counted: 56 done, 56 / 28.5 s = 1.96 per s
    assert stream.getvalue().splitlines()[-1] == "k-means k=3: 56/300 iterations in 0:00:28, 1.96 iterations/s"


# -----------------------------------------------------------------------------
# The loops that take it: a download, the k-means, detect.py --data with its output in a file

def test_download_counts_bytes_from_where_the_part_file_stopped(tmp_path, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("VOCdevkit/VOC2007/ImageSets/Main/test.txt")
        info.size = 1400
        tar.addfile(info, io.BytesIO(b"000001\n" * 200))
    blob = buf.getvalue()                   # 10,240 bytes: 512 header + 1400 padded to 1536, 2 x 512 end, to 10240
    assert len(blob) == 10_240
    monkeypatch.setattr(datasets, "VOC_URL", "http://voc.invalid/")
    monkeypatch.setattr(datasets, "VOC_TARS", [("voc2007/small.tar", hashlib.md5(blob).hexdigest())])

    def urlopen(request):                   # honours Range; .length: what http.client reads from Content-Length
        response = io.BytesIO(blob[int(request.get_header("Range")[6:-1]):])
        response.status, response.length = 206, len(blob) - 4_000
        return response

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    (tmp_path / "small.tar.part").write_bytes(blob[:4_000])
    stream = io.StringIO()                  # not a terminal
    datasets.download_voc(str(tmp_path), functools.partial(Progress, stream=stream))
    lines = stream.getvalue().splitlines()
    # 4,000 of 10,240 bytes on disk: the first line starts there (39%); one chunk brings the rest
    assert lines[0] == "small.tar: 4.00 kB/10.24 kB (39%)"
    assert lines[1].startswith("small.tar: 10.24 kB/10.24 kB in 0:00:00, ")
    # then the tar's one member, unpacked
    assert lines[2:4] == ["unpacking: 0/1 files (0%)", lines[3]] and lines[3].startswith("unpacking: 1/1 files in ")
    assert os.path.getsize(tmp_path / "small.tar") == 10_240


def test_kmeans_progress_comes_before_the_figure_2_lines(capsys):
    class Boxes:                            # two images of 20 x 10 pixels, 9 box shapes: enough for k = 9
        def __len__(self):
            return 2

        def annotation(self, i):
            return {"boxes": [[0, 0, w, 10 - w] for w in range(1 + 5 * i, 6 + 4 * i)], "size": (20, 10)}

    yolov2.dimension_clusters(Boxes(), 416, progress=Progress)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "reading the boxes: 0/2 images (0%)" and lines[1].startswith("reading the boxes: 2/2 images in")
    assert lines[2] == "9 boxes of 2 training images; anchors for a 416 input (13 x 13 grid)"
    assert lines[3] == "k-means, k = 1..9: 0/9 runs (0%)"
    assert lines[4].startswith("k-means, k = 1..9: 9/9 runs in ")
    assert [line.split()[0] for line in lines[5:]] == [f"k={k}" for k in range(1, 10)]
    assert lines[-1].startswith("k=9  avg IoU 100.0%")                  # 9 shapes, 9 centroids

def test_detect_evaluation_prints_progress_lines_before_the_ap_table(tmp_path, capsys):
    model = yolov1.build("yolov1-shapes", num_classes=3).eval()
    weights = tmp_path / "model.pt"
    torch.save({"model_config": model.config, "class_names": ["circle", "rectangle", "triangle"],
                "model": model.state_dict(), "config": {"val_images": 4, "seed": 0}}, weights)
    args = detect.get_args_parser().parse_args(["--weights", str(weights), "--data", "shapes", "--batch-size", "2"])
    detect.main(args)
    out = capsys.readouterr().out                   # pytest's captured stdout is not a terminal
    assert "\r" not in out
    lines = out.splitlines()
    first = lines.index("evaluating: 0/4 images (0%)")
    last = next(i for i, line in enumerate(lines) if line.startswith("evaluating: 4/4 images in "))
    table = next(i for i, line in enumerate(lines) if line.startswith("class ") and "voc07" in line)
    assert first < last < table
    # --quiet: the same output without the progress lines
    detect.main(detect.get_args_parser().parse_args(["--weights", str(weights), "--data", "shapes", "--batch-size",
                                                     "4", "--quiet"]))
    assert "evaluating:" not in capsys.readouterr().out


@pytest.mark.parametrize("terminal", [True, False])
def test_items_pass_through_unchanged(terminal):
    stream = Stream(terminal)
    assert list(Progress(iter("abc"), total=3, stream=stream, clock=Clock())) == ["a", "b", "c"]
