"""Shared helpers of the benchmark suite: machine description, the transformer's shapes, the
raw I/O baseline, statistics.

Nothing here imports fastckpt or TensorFlow: the suite decides what it can import and reports
what it had to skip.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import threading
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

GB = 1e9  # throughputs are reported in GB/s with GB = 10^9 bytes
MiB = 1 << 20

# Largest single pwrite/pread we issue (Linux caps one call at 0x7ffff000 bytes anyway).
IO_CHUNK = 64 * MiB


# ---------------------------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def num_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ram_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def filesystem_of(path: str) -> Dict[str, str]:
    """Mount point, filesystem type and device of ``path`` (longest /proc/mounts match)."""
    real = os.path.realpath(path)
    best = {"mountpoint": "?", "fstype": "unknown", "device": "?"}
    best_len = -1
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                dev, mnt, fstype = parts[0], parts[1].replace("\\040", " "), parts[2]
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) > best_len:
                    best = {"mountpoint": mnt, "fstype": fstype, "device": dev}
                    best_len = len(mnt)
    except OSError:
        pass
    try:
        usage = shutil.disk_usage(real)
        best["free_gb"] = f"{usage.free / GB:.1f}"
    except OSError:
        pass
    return best


def cpu_flags(wanted=("sse4_2", "pclmulqdq", "vpclmulqdq", "avx2", "avx512f", "sha_ni", "crc32", "pmull")) -> List[str]:
    """The CPU features that matter for CRC32C and copies, as /proc/cpuinfo names them."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")):
                    have = set(line.split(":", 1)[1].split())
                    return [w for w in wanted if w in have]
    except OSError:
        pass
    return []


def machine_info(directory: str) -> Dict[str, object]:
    ram = ram_bytes()
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": num_cores(),
        "ram_gib": round(ram / 2**30, 1) if ram else None,
        "filesystem": filesystem_of(directory),
        "dir": directory,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "kernel": platform.release(),
    }


def print_machine(info: Mapping[str, object]) -> None:
    fs = info["filesystem"]
    print(
        f"machine : {info['cpu']} ({', '.join(info.get('cpu_flags', [])) or 'no listed flags'}), "
        f"{info['cores']} cores, {info['ram_gib']} GiB RAM, kernel {info['kernel']}"
    )
    print(
        f"storage : {info['dir']} on {fs.get('fstype')} ({fs.get('device')} mounted at "
        f"{fs.get('mountpoint')}, {fs.get('free_gb', '?')} GB free)"
    )


# ---------------------------------------------------------------------------------------------
# A transformer-shaped set of tensors
# ---------------------------------------------------------------------------------------------


def transformer_shapes(
    total_bytes: int, itemsize: int = 4, vocab: int = 32000
) -> Tuple[Dict[str, Tuple[int, ...]], Dict[str, int]]:
    """Shapes of a GPT-style model whose parameters take about ``total_bytes``.

    Hidden size d is a multiple of 64 chosen so that layers ~ d/64 (GPT-2/LLaMA proportions),
    then the layer count is fitted to the byte budget. Per layer: q/k/v/o kernels (d x d) and
    biases, an MLP (d x 4d, 4d x d) with biases, two layer norms. Plus token and position
    embeddings and a final layer norm.
    """
    params = max(1, total_bytes // itemsize)
    vocab = int(min(vocab, max(256, params // 256)))
    d = 64
    while True:
        nd = d + 64
        approx = 12 * nd * nd * (nd // 64) + vocab * nd
        if approx > params:
            break
        d = nd
    per_layer = 12 * d * d + 13 * d
    fixed = vocab * d + 1024 * d + 2 * d
    layers = max(1, int(round((params - fixed) / per_layer)))
    shapes: Dict[str, Tuple[int, ...]] = {
        "model/embed/tokens": (vocab, d),
        "model/embed/positions": (1024, d),
    }
    for i in range(layers):
        p = f"model/layer_{i:03d}"
        for n in ("q", "k", "v", "o"):
            shapes[f"{p}/attention/{n}/kernel"] = (d, d)
            shapes[f"{p}/attention/{n}/bias"] = (d,)
        shapes[f"{p}/mlp/fc_in/kernel"] = (d, 4 * d)
        shapes[f"{p}/mlp/fc_in/bias"] = (4 * d,)
        shapes[f"{p}/mlp/fc_out/kernel"] = (4 * d, d)
        shapes[f"{p}/mlp/fc_out/bias"] = (d,)
        for ln in ("ln_1", "ln_2"):
            shapes[f"{p}/{ln}/gamma"] = (d,)
            shapes[f"{p}/{ln}/beta"] = (d,)
    shapes["model/final_ln/gamma"] = (d,)
    shapes["model/final_ln/beta"] = (d,)
    return shapes, {"hidden": d, "layers": layers, "vocab": vocab}


def total_nbytes(tensors: Mapping[str, np.ndarray]) -> int:
    return sum(int(a.nbytes) for a in tensors.values())


# ---------------------------------------------------------------------------------------------
# Raw I/O baseline: the same bytes, no format, no CRC
# ---------------------------------------------------------------------------------------------

Segment = Tuple[int, int, int, int]  # (array index, byte start in array, length, file offset)


def split_bytes(sizes: Sequence[int], n: int, absolute: bool = False) -> List[List[Segment]]:
    """Cut the concatenation of buffers of ``sizes`` into ``n`` contiguous, equal byte ranges.

    Returns, for each of the n parts, the list of (array, start, length, file_offset) pieces;
    file_offset is relative to that part's own file, or with ``absolute`` to the start of the
    concatenation (all parts in one file).
    """
    total = sum(sizes)
    bounds = [total * i // n for i in range(n + 1)]
    parts: List[List[Segment]] = [[] for _ in range(n)]
    pos = 0
    for idx, size in enumerate(sizes):
        start, end = pos, pos + size
        for p in range(n):
            lo, hi = max(start, bounds[p]), min(end, bounds[p + 1])
            if hi > lo:
                parts[p].append((idx, lo - start, hi - lo, lo if absolute else lo - bounds[p]))
        pos = end
    return parts


def _byte_view(a: np.ndarray) -> memoryview:
    # Through a uint8 view: memoryview cannot cast dtypes without a buffer format (bfloat16).
    return memoryview(np.ascontiguousarray(a).reshape(-1).view(np.uint8))


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    n = len(view)
    while done < n:
        k = min(IO_CHUNK, n - done)
        w = os.pwrite(fd, view[done : done + k], offset + done)
        if w <= 0:
            raise OSError("short write")
        done += w


def _pread_all(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    n = len(view)
    while done < n:
        k = min(IO_CHUNK, n - done)
        r = os.preadv(fd, [view[done : done + k]], offset + done)
        if r <= 0:
            raise OSError(f"unexpected EOF at {offset + done}")
        done += r


def run_threads(fns: Iterable[Callable[[], None]]) -> None:
    errors: List[BaseException] = []

    def wrap(fn):
        try:
            fn()
        except BaseException as e:  # re-raised below, in the caller's thread
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def raw_paths(prefix: str, nthreads: int, one_file: bool = False) -> List[str]:
    if one_file:
        return [f"{prefix}.raw"]
    return [f"{prefix}.raw-{i:05d}-of-{nthreads:05d}" for i in range(nthreads)]


def _raw_io(
    views: Sequence[memoryview], prefix: str, nthreads: int, one_file: bool, write: bool, durable: bool = False
) -> List[str]:
    """os.pwrite (``write``) or os.preadv of ``views`` from ``nthreads`` threads, each thread
    its own contiguous share of the bytes: into one file per thread, or with ``one_file`` into
    disjoint ranges of one file that all threads share (opened once)."""
    parts = split_bytes([len(v) for v in views], nthreads, absolute=one_file)
    paths = raw_paths(prefix, nthreads, one_file)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC if write else os.O_RDONLY
    io = _pwrite_all if write else _pread_all
    sync = write and durable

    def transfer(fd: int, segs: List[Segment]) -> None:
        for idx, start, length, foff in segs:
            io(fd, views[idx][start : start + length], foff)

    def own_file(path: str, segs: List[Segment]) -> None:
        fd = os.open(path, flags, 0o644)
        try:
            transfer(fd, segs)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    if one_file:
        fd = os.open(paths[0], flags, 0o644)
        try:
            run_threads([lambda s=s: transfer(fd, s) for s in parts])
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
    else:
        run_threads([lambda p=p, s=s: own_file(p, s) for p, s in zip(paths, parts)])
    if sync:
        fsync_dir(os.path.dirname(os.path.abspath(prefix)))
    return paths


def raw_write(
    arrays: Sequence[np.ndarray], prefix: str, nthreads: int, durable: bool, one_file: bool = False
) -> List[str]:
    """Write the arrays' bytes with os.pwrite from ``nthreads`` threads, one file per thread
    (or, with ``one_file``, all threads into one file); ``durable`` fsyncs the files and the
    directory."""
    return _raw_io([_byte_view(a) for a in arrays], prefix, nthreads, one_file, True, durable)


def raw_read(
    shapes: Sequence[Tuple[Tuple[int, ...], np.dtype]], prefix: str, nthreads: int, one_file: bool = False
) -> List[np.ndarray]:
    """Read files written by :func:`raw_write` (same ``nthreads`` and ``one_file``) into
    freshly allocated arrays."""
    arrays = [np.empty(shape, dtype=dtype) for shape, dtype in shapes]
    _raw_io([_byte_view(a) for a in arrays], prefix, nthreads, one_file, False)
    return arrays


# ---------------------------------------------------------------------------------------------
# Statistics and reporting
# ---------------------------------------------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def paired_ratio(num_seconds: Sequence[float], den_seconds: Sequence[float]) -> float:
    """Median over rounds of throughput(num)/throughput(den) = den_time/num_time per round."""
    ratios = [d / n for n, d in zip(num_seconds, den_seconds) if n > 0 and d > 0]
    return median(ratios)


def gbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / GB if seconds > 0 else float("inf")


def write_json(path: str, payload: Mapping[str, object]) -> None:
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
