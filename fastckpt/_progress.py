"""Progress callbacks (``progress=`` on save, load, verify and convert) and
the ``fastckpt`` logger.

A long native call (a write, a parallel read, a verify) runs on a worker
thread while the calling thread waits on it in short steps and calls the
user's callback between them with what the core's counters say: the
callback always runs on the thread that called fastckpt, at most once per
``interval`` seconds plus once at the end, so it may touch thread-bound
state (a UI, a tqdm bar) and its cost is bounded whatever it does. Without
a callback the native call runs directly on the calling thread, exactly as
before: no thread, no polling.

The counters are the core's own (``SaveJob.progress()``, and
``Reader.bytes_processed()``, which every read, box read and verify adds
to as each step of bytes completes), read with relaxed atomics: a display,
not a synchronisation.

Thread-safety: a Tracker belongs to one call on one thread.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, TypeVar

from .errors import InvalidArgumentError

#: The library's logger: INFO for each save and restore (prefix, bytes,
#: seconds, GB/s), DEBUG for the steps of a commit. Silent unless the
#: application configures logging (a NullHandler is attached).
logger = logging.getLogger("fastckpt")
logger.addHandler(logging.NullHandler())

T = TypeVar("T")

#: Shortest time between two calls of a progress callback, in seconds.
DEFAULT_INTERVAL = 0.1


class Progress(NamedTuple):
    """What a ``progress=`` callback receives.

    Attributes:
        bytes_done: tensor bytes written, read or checked so far.
        bytes_total: tensor bytes the call handles in all.
        tensors_done: tensors whose bytes are all done, counted in the order
            the call lays them out (files and offsets; a parallel call works
            on several at once, so mid-call this is the tensors covered by
            ``bytes_done``); equal to ``tensors_total`` in the last call.
        tensors_total: tensors the call handles in all.
    """

    bytes_done: int
    bytes_total: int
    tensors_done: int
    tensors_total: int

    @property
    def fraction(self) -> float:
        """Bytes done over bytes total (1.0 for a call with no bytes)."""
        return self.bytes_done / self.bytes_total if self.bytes_total else 1.0


ProgressCallback = Callable[[Progress], None]


def check_callback(progress: Any) -> Optional[ProgressCallback]:
    """`progress` itself if it is None or callable; else InvalidArgumentError."""
    if progress is not None and not callable(progress):
        raise InvalidArgumentError(
            f"progress must be a callable taking a fastckpt.Progress, not {type(progress).__name__}"
        )
    return progress


def tracker_for(progress: Any, sizes: List[int]) -> Optional["Tracker"]:
    """A Tracker of `sizes` for the callback `progress` (checked), or None without one."""
    callback = check_callback(progress)
    return None if callback is None else Tracker(callback, sizes)


class Tracker:
    """Reports one call's progress to a callback (see the module docstring).

    `sizes` are the byte sizes of the call's tensors in the order the call
    lays them out; `offset` is subtracted from the polled counter (a
    reader's counter runs over its lifetime)."""

    def __init__(self, callback: ProgressCallback, sizes: List[int], *, interval: float = DEFAULT_INTERVAL) -> None:
        self.callback = callback
        self.interval = interval
        self.ends: List[int] = []
        total = 0
        for n in sizes:
            total += n
            self.ends.append(total)
        self.total = total
        self.count = len(sizes)
        self.last_report = 0.0

    def report(self, done: int, *, final: bool = False) -> None:
        """Calls the callback with `done` bytes (capped to the total)."""
        done = max(0, min(done, self.total))
        tensors = self.count if final else bisect.bisect_right(self.ends, done)
        self.last_report = time.monotonic()
        self.callback(Progress(self.total if final else done, self.total, tensors, self.count))

    def tick(self, done: int) -> None:
        """For work done on the calling thread in steps (convert, diff):
        reports `done` bytes if an interval has passed since the last call."""
        if time.monotonic() - self.last_report >= self.interval:
            self.report(done)

    def run(
        self, call: Callable[[], T], poll: Callable[[], int], abort: Optional[Callable[[BaseException], None]] = None
    ) -> T:
        """Runs `call` on a worker thread; until it returns, reports
        ``poll()`` bytes at most once per interval from this thread.
        Returns its result or raises its exception (after it has ended: a
        native call cannot be abandoned half way). If the callback raises
        (KeyboardInterrupt from a progress bar, say), `abort` is called with
        the exception (a save aborts its job, so nothing is committed), the
        call is waited for, and the callback's exception is raised."""
        outcome: Dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["value"] = call()
            except BaseException as e:  # noqa: BLE001 - re-raised on the calling thread
                outcome["error"] = e

        worker = threading.Thread(target=work, name="fastckpt-progress-call", daemon=True)
        worker.start()
        callback_error: Optional[BaseException] = None
        while True:
            worker.join(self.interval)
            if not worker.is_alive():
                break
            if callback_error is None and time.monotonic() - self.last_report >= self.interval:
                try:
                    self.report(poll())
                except BaseException as e:  # noqa: BLE001 - raised once the call has ended
                    callback_error = e
                    if abort is not None:
                        abort(e)
        if callback_error is not None:
            raise callback_error
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


def log_done(what: str, prefix: str, nbytes: int, seconds: float) -> None:
    """INFO: one line per save or restore."""
    if logger.isEnabledFor(logging.INFO):
        rate = nbytes / seconds / 1e9 if seconds > 0 else 0.0
        logger.info("%s %s: %d bytes in %.3f s (%.2f GB/s)", what, prefix, nbytes, seconds, rate)
