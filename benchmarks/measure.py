"""How one save or restore is measured: wall time, CPU time, peak extra RSS, durability.

Before every timed operation, untimed: ``gc.collect()``, ``malloc_trim(0)`` (glibc: hand freed
heap back to the kernel, so that memory the operation allocates shows up as RSS growth instead
of reusing pages an earlier operation left behind) and ``os.sync()`` (no system pays for the
writeback of the files another system wrote just before). Before a restore, also untimed, as
many bytes as the checkpoint holds are allocated, touched and freed: otherwise the first restore
after a phase of writes pays alone for the kernel compacting memory into the huge pages numpy
asks for (measured here: the first of four identical raw reads of 1 GiB ran at 0.76 GB/s, the
next three at 2.4 GB/s; with this step all four ran at 2.2-2.9 GB/s).

Wall time: ``time.perf_counter`` around the operation; for a durable save that includes an
fsync of every file in the system's output directory and of the directory itself, done by the
harness for every system alike (fastckpt with ``durable=True`` and the raw writer with per-file
fsyncs already made them durable, so for them the harness's fsyncs find nothing left to write).

CPU time: user + system seconds of the whole process (``os.times()``, which on Linux covers
every thread, including the native thread pools of fastckpt, TensorFlow and torch).

Peak extra RSS: the process's resident-memory high-water mark during the operation minus its
RSS just before. On Linux, writing "5" to /proc/self/clear_refs resets the high-water mark
(VmHWM in /proc/self/status) to the current RSS, so VmHWM read afterwards is the exact peak of
the operation, whatever thread allocated. Where that is not possible, a thread samples VmRSS
every millisecond instead (which can miss short peaks). Page cache is not RSS; pages of a
memory-mapped file that the process touches are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional, Tuple

# ---------------------------------------------------------------------------------------------
# Resident memory
# ---------------------------------------------------------------------------------------------


def _status_kib(*fields: str) -> Dict[str, int]:
    out = {}
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in fields:
                    out[key] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return out


def rss_bytes() -> int:
    return _status_kib("VmRSS").get("VmRSS", 0) * 1024


def hwm_bytes() -> int:
    return _status_kib("VmHWM").get("VmHWM", 0) * 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _probe_reset() -> bool:
    if not _reset_hwm():
        return False
    # The reset must bring VmHWM down to VmRSS (older kernels accept the write but ignore "5").
    v = _status_kib("VmHWM", "VmRSS")
    return "VmHWM" in v and v["VmHWM"] <= v.get("VmRSS", 0) + 64


class PeakRss:
    """Peak RSS above the level at ``start()``, by VmHWM reset or by sampling."""

    method = "clear_refs" if _probe_reset() else "sampling"

    def __init__(self):
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._max = 0
        self.before = 0

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._max = max(self._max, rss_bytes())

    def start(self) -> None:
        if self.method == "clear_refs":
            _reset_hwm()
            self.before = rss_bytes()
        else:
            self.before = rss_bytes()
            self._max = self.before
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def stop(self) -> int:
        if self.method == "clear_refs":
            peak = hwm_bytes()
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            peak = max(self._max, rss_bytes())
        return max(0, peak - self.before)


# ---------------------------------------------------------------------------------------------
# Settling between measurements
# ---------------------------------------------------------------------------------------------

_libc = None


def malloc_trim() -> None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)


def prefault(nbytes: int) -> None:
    """Allocate, touch and free ``nbytes``: the kernel reclaims and compacts memory now, not
    inside the next timed allocation of that size."""
    if nbytes > 0:
        import numpy as np

        a = np.ones(nbytes, np.uint8)
        del a


def settle(sync: bool = True, prefault_bytes: int = 0) -> None:
    gc.collect()
    # Prefault first, trim after: glibc may serve the prefault from free heap chunks that
    # earlier small arrays left, and only the trim hands those pages back.
    prefault(prefault_bytes)
    malloc_trim()
    if sync:
        os.sync()


# ---------------------------------------------------------------------------------------------
# Durability
# ---------------------------------------------------------------------------------------------


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(directory: str) -> int:
    """fsync every file under ``directory``, then every directory (deepest first).

    Returns the number of files. This is what "durable" means for every system here.
    """
    nfiles = 0
    dirs = []
    for root, _subdirs, files in os.walk(directory):
        dirs.append(root)
        for name in files:
            _fsync(os.path.join(root, name), os.O_RDONLY)
            nfiles += 1
    for d in reversed(dirs):
        _fsync(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    return nfiles


def count_files(directory: str) -> Tuple[int, int]:
    """(files, bytes) under ``directory``."""
    n = size = 0
    for root, _subdirs, files in os.walk(directory):
        for name in files:
            n += 1
            size += os.path.getsize(os.path.join(root, name))
    return n, size


# ---------------------------------------------------------------------------------------------
# One measurement
# ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    cpu_s: float  # user + system, all threads of the process
    rss_extra: int  # peak RSS above the level before, bytes
    rss_before: int

    def to_json(self) -> Dict[str, float]:
        return asdict(self)


def measure(fn: Callable[[], object], *, sync: bool = True, prefault_bytes: int = 0) -> Tuple[object, Sample]:
    """Runs ``fn`` once after settling; returns its result and the measurement."""
    settle(sync, prefault_bytes)
    rss = PeakRss()
    rss.start()
    c0 = os.times()
    t0 = time.perf_counter()
    result = fn()
    t1 = time.perf_counter()
    c1 = os.times()
    extra = rss.stop()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return result, Sample(seconds=t1 - t0, cpu_s=cpu, rss_extra=extra, rss_before=rss.before)
