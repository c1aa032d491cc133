"""
A progress line for the long loops of the scripts: evaluation, detection over a folder, downloads, dataset checks,
k-means, classification evaluation. Not in the papers; standard library only.

  On a terminal:     one line rewritten in place (carriage return), count / total, rate, ETA, at most 10 a second.
  Not on a terminal (a file, a CI log, nohup): no carriage returns; a first line, then a plain line when another
                     tenth of the total is done or a minute has passed, but never two within PLAIN_MIN_GAP seconds;
                     then a last line.
  quiet=True, or a process of rank != 0 under torchrun (RANK): nothing. Bytes (unit="B"): kB, MB, GB, and MB/s.

    evaluating: 1200/4952 images (24%), 58.3 images/s, ETA 0:01:04
    evaluating: 4952/4952 images in 0:01:25, 58.1 images/s

The library functions never print: the loops that the scripts run (detect.evaluate, detect.run_images,
yolov2.dimension_clusters, tools/classify.evaluate, tools/datasets.py) take `progress=None` (silent), and the
scripts pass this class (functools.partial(Progress, quiet=args.quiet)). The loops call it as
Progress(iterable, total=None, desc="", unit="it", count=None, initial=0), an iterable of the same items;
count(item) is how many units an item is (a batch of images, a chunk of bytes); total is len(iterable) unless given.

OUR CHOICE: tqdm is not used even when installed, so that the lines are the same on every machine; tqdm writes
carriage returns into files too (github.com/tqdm/tqdm/issues/750), which the plain mode exists to avoid.
Run:  python -m pytest -q tests/test_tools_progress.py
"""
import os
import shutil
import sys
import time

TERMINAL_INTERVAL = 0.1   # seconds between redraws of the terminal line
PLAIN_MIN_GAP = 5.0       # seconds: never two plain lines closer than this (but the last)
PLAIN_MAX_GAP = 60.0      # seconds: a plain line at least this often, whatever the count
PLAIN_STEP = 0.1          # a plain line when another tenth of the total is done


def format_bytes(n: float) -> str:
    """Decimal units, as the download sizes are quoted (2.9 GB): 999 -> '999 B', 1234567 -> '1.23 MB'."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000


def format_duration(seconds: float) -> str:
    """H:MM:SS, as train.py's progress lines: 83.6 -> '0:01:23'."""
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def format_rate(rate: float) -> str:
    """Two decimals under 10, one under 100, none above: 0.4234 -> '0.42', 58.31 -> '58.3', 1234.5 -> '1234'."""
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.1f}" if rate >= 10 else f"{rate:.2f}"


class Progress:
    """One progress line. A class, against the functions-first style: the line's state (count, clock, what was
    last written) lives between the steps of a loop it does not own, and run_images writes its own lines through
    write() so that they do not break a terminal's line. Iterate over it (items pass through unchanged), or call
    update(n) and close() by hand."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", count=None, initial=0, quiet=False,
                 stream=None, clock=time.monotonic):
        if total is None and count is None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit, self.count = iterable, total, desc, unit, count
        self.stream, self.clock = stream or sys.stdout, clock
        self.shown = not quiet and int(os.environ.get("RANK", "0")) == 0      # torchrun: rank 0 only
        self.terminal = self.shown and getattr(self.stream, "isatty", lambda: False)()
        self.n = self.initial = self.last_n = initial
        self.start = self.last_time = clock()
        self.width, self.closed = 0, False            # width: length of the terminal line now shown
        if self.shown:
            self._show(self.text())

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(self.count(item) if self.count else 1)
        finally:                                      # also when the loop stops early (break, an exception)
            self.close()

    def text(self, done=False) -> str:
        """'desc: n/total unit (p%), rate unit/s, ETA h:mm:ss'; done: 'desc: n/total unit in h:mm:ss, rate unit/s'."""
        size = format_bytes if self.unit == "B" else str
        unit = "" if self.unit == "B" else f" {self.unit}"
        elapsed = self.clock() - self.start
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        rate_text = f"{format_bytes(rate)}/s" if self.unit == "B" else f"{format_rate(rate)} {self.unit}/s"
        line = f"{self.desc}: {size(self.n)}" + (f"/{size(self.total)}" if self.total is not None else "") + unit
        if done:
            return f"{line} in {format_duration(elapsed)}, {rate_text}"
        if self.total:
            line += f" ({int(100 * self.n / self.total)}%)"
        if self.n > self.initial:
            line += f", {rate_text}"
            if self.total is not None and rate > 0:
                line += f", ETA {format_duration((self.total - self.n) / rate)}"
        return line

    def update(self, n=1):
        """n more units done; redraw (terminal) or write a line (plain) when it is time."""
        self.n += n
        if not self.shown or (self.total is not None and self.n >= self.total):
            return                                    # the last line is close()'s
        now = self.clock()
        gap = now - self.last_time
        if self.terminal:
            due = gap >= TERMINAL_INTERVAL
        else:
            step = self.total is not None and self.n - self.last_n >= PLAIN_STEP * self.total
            due = gap >= PLAIN_MIN_GAP and (step or gap >= PLAIN_MAX_GAP)
        if due:
            self.last_time, self.last_n = now, self.n
            self._show(self.text())

    def write(self, line: str):
        """Print a line of the caller's (shown even when the progress line is not), above the progress line."""
        if self.terminal and not self.closed:
            self.stream.write("\r" + line.ljust(self.width) + "\n")
            self.width = 0
            self._show(self.text())
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self):
        """The last line: count, time taken, mean rate; on a terminal it ends the rewritten line."""
        if self.shown and not self.closed:
            self._show(self.text(done=True))
            if self.terminal:
                self.stream.write("\n")
                self.stream.flush()
        self.closed = True

    def _show(self, line):
        if self.terminal:       # rewrite in place; spaces cover a longer previous line; never wrap the terminal
            line = line[: shutil.get_terminal_size().columns - 1]
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()   # the lines reach a file as they happen, in order with the script's prints

