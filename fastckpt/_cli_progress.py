"""Progress bars for the command line.

A bar is shown only when the stream (stderr) is a terminal: piped or
redirected output, CI logs and ``--json`` consumers get nothing extra.
The bar is drawn by tqdm when it is installed (the ``progress`` extra):
a small, dependency-free, widely used library whose byte units, rate
smoothing and time-left estimate are exactly what is needed here (rich
draws fine bars too, but brings a rendering framework and two more
dependencies for one line of output). Without tqdm a plain one-line
fallback is drawn with carriage returns.

Both are fed by the library's ``progress=`` callbacks
(:class:`fastckpt.Progress`), which arrive on the calling thread at most
ten times a second.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional, TextIO

from ._progress import Progress


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class _PlainBar:
    """One line redrawn in place: percent, bytes, rate, time left."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self.start = time.monotonic()
        self.width = 0

    def update(self, p: Progress) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = p.bytes_done / elapsed
        left = (p.bytes_total - p.bytes_done) / rate if rate > 0 else float("inf")
        eta = f"{left:.0f}s left" if left != float("inf") else "--"
        line = (
            f"{self.label}: {100 * p.fraction:5.1f}% {_human(p.bytes_done)}/{_human(p.bytes_total)} "
            f"{_human(rate)}/s {eta} ({p.tensors_done}/{p.tensors_total} tensors)"
        )
        pad = max(0, self.width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self.width = len(line)

    def close(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")  # leave the terminal clean
            self.stream.flush()


class _TqdmBar:
    def __init__(self, tqdm: Any, label: str, stream: TextIO) -> None:
        self.tqdm = tqdm
        self.label = label
        self.stream = stream
        self.bar: Any = None

    def update(self, p: Progress) -> None:
        if self.bar is None:
            self.bar = self.tqdm(
                total=p.bytes_total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=self.label,
                file=self.stream,
                leave=False,
                mininterval=0,
            )  # the callbacks are rate-limited already
        self.bar.set_postfix_str(f"{p.tensors_done}/{p.tensors_total} tensors", refresh=False)
        self.bar.update(p.bytes_done - self.bar.n)
        if p.bytes_done == p.bytes_total:
            self.bar.refresh()  # tqdm may skip drawing the last update; the end must show

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TerminalProgress:
    """A ``progress=`` callback drawing a bar on `stream`; use as a context
    manager so the bar is removed when the command ends."""

    def __init__(self, label: str, stream: TextIO, *, use_tqdm: bool = True) -> None:
        self.bar: Any = _PlainBar(label, stream)
        if use_tqdm:
            try:
                import tqdm  # type: ignore[import-untyped,unused-ignore]
            except ImportError:
                pass  # the plain bar
            else:
                self.bar = _TqdmBar(tqdm.tqdm, label, stream)

    def __call__(self, p: Progress) -> None:
        self.bar.update(p)

    def __enter__(self) -> "TerminalProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


def terminal_progress(label: str, stream: Optional[TextIO] = None) -> Optional[TerminalProgress]:
    """A bar on `stream` (default stderr) if it is a terminal, else None."""
    stream = sys.stderr if stream is None else stream
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return TerminalProgress(label, stream) if tty else None
