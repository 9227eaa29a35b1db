"""Micro-benchmarks: CRC32C throughput, and fastckpt's scaling with threads and shards.

CRC32C: every fastckpt implementation this CPU can run (``crc32c_impls()``, timed through the
default call path ``crc32c(buf)`` after ``crc32c_set_impl``) and the ``google-crc32c`` package,
checksumming one random buffer per block size from Python on one thread (so small blocks
include the per-call cost a Python caller pays). Rounds alternate the implementations (rotated
start); a point of a round is the best of timed batches over at least ``min_time`` seconds.
Every implementation must agree on every buffer before anything is timed.

Scaling: ``fastckpt.save(durable=False, threads=t, num_shards=s)`` and
``fastckpt.load(threads=t)`` of a float32 transformer, for t and s from 1 to the number of
cores (all values up to 8 cores, then powers of two and the core count), next to a raw write of
the same bytes with t threads; alternating rounds, page cache, ``os.sync()`` before each.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import _common as C
from . import workloads as W
from .measure import measure

KiB = 1024
MiB = 1024 * 1024
CRC_SIZES = (4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 64 * MiB)
CRC_QUICK_SIZES = (4 * KiB, 64 * KiB, 1 * MiB)


def size_label(n: int) -> str:
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n >= KiB and n % KiB == 0:
        return f"{n // KiB} KiB"
    return f"{n} B"


# ---------------------------------------------------------------------------------------------
# CRC32C
# ---------------------------------------------------------------------------------------------


def crc_hashers() -> List[Tuple[str, Callable[[], None], Callable[[bytes], int]]]:
    """(name, setup, fn) for every implementation to compare."""
    from fastckpt import _native

    out = []
    for impl in _native.crc32c_impls():
        out.append((f"fastckpt {impl}", lambda _i=impl: _native.crc32c_set_impl(_i), _native.crc32c))
    try:
        import google_crc32c
    except ImportError:
        google_crc32c = None
    if google_crc32c is not None:
        out.append(("google-crc32c", lambda: None, google_crc32c.value))
    return out


def time_call(fn: Callable[[bytes], int], buf: bytes, min_time: float, min_iters: int = 3) -> Tuple[float, float]:
    """Seconds per call: (best, median) over timed batches, each long enough (>= ~1 ms) for
    the timer's resolution not to matter."""
    fn(buf)  # warm caches, page in the buffer
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            fn(buf)
        elapsed = time.perf_counter() - start
        if elapsed >= 1e-3 or batch >= 1 << 20:
            break
        batch *= 4
    samples = [elapsed / batch]
    total = elapsed
    while len(samples) < min_iters or total < min_time:
        start = time.perf_counter()
        for _ in range(batch):
            fn(buf)
        elapsed = time.perf_counter() - start
        samples.append(elapsed / batch)
        total += elapsed
    return min(samples), statistics.median(samples)


def crc32c_bench(
    sizes: Sequence[int] = CRC_SIZES,
    rounds: int = 3,
    min_time: float = 0.3,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    from fastckpt import _native

    hashers = crc_hashers()
    data = {n: os.urandom(n) for n in sizes}
    active = _native.crc32c_impl()
    for n, buf in data.items():
        values = {impl: _native.crc32c(buf, 0, impl) for impl in _native.crc32c_impls()}
        if any(h[0] == "google-crc32c" for h in hashers):
            import google_crc32c

            values["google-crc32c"] = google_crc32c.value(buf)
        if len(set(values.values())) != 1:
            raise RuntimeError(f"CRC32C implementations disagree at {n} bytes: {values}")

    names = [h[0] for h in hashers]
    per_round: List[Dict[str, Dict[str, float]]] = []
    try:
        for r in range(rounds):
            k = r % len(hashers)
            rec: Dict[str, Dict[str, float]] = {}
            for name, setup, fn in hashers[k:] + hashers[:k]:
                setup()
                rec[name] = {}
                for n in sizes:
                    best, _median = time_call(fn, data[n], min_time)
                    rec[name][str(n)] = n / best / C.GB
            per_round.append(rec)
            if progress:
                progress(
                    f"crc32c round {r + 1}/{rounds}: "
                    + ", ".join(f"{name} {max(rec[name].values()):.1f}" for name in names)
                    + " GB/s (best size)"
                )
    finally:
        _native.crc32c_set_impl(active)

    default = f"fastckpt {active}"
    summary = {name: {str(n): C.median([rec[name][str(n)] for rec in per_round]) for n in sizes} for name in names}
    ratios = {}
    if "google-crc32c" in names:
        for n in sizes:
            ratios[str(n)] = C.median([rec[default][str(n)] / rec["google-crc32c"][str(n)] for rec in per_round])
    return {
        "sizes": list(sizes),
        "impls": names,
        "default": default,
        "rounds": per_round,
        "median_gbps": summary,
        "ratio_vs_google": ratios,
        "min_time_s": min_time,
        "threads": 1,
    }


# ---------------------------------------------------------------------------------------------
# Thread and shard scaling
# ---------------------------------------------------------------------------------------------


def levels(cores: int) -> List[int]:
    if cores <= 8:
        return list(range(1, cores + 1))
    out = []
    p = 1
    while p < cores:
        out.append(p)
        p *= 2
    return out + [cores]


def scaling_bench(
    size: int,
    scratch: str,
    rounds: int = 3,
    cores: Optional[int] = None,
    seed: int = 0,
    progress: Optional[Callable[[str], None]] = None,
    sync: bool = True,
) -> dict:
    import gc

    import fastckpt

    cores = cores or C.num_cores()
    w = W.build("transformer-fp32", size, seed=seed + 10)
    arrays = list(w.tensors.values())
    specs = [(a.shape, a.dtype) for a in arrays]
    names = list(w.tensors)
    lv = levels(cores)
    points = [(t, s) for t in lv for s in lv]
    per_round = []
    gc.collect()
    gc.freeze()  # keeps the collection before each measurement short
    for r in range(rounds):
        rec = {"save": {}, "load": {}, "raw": {}}
        k = r % len(points)
        for t, s in points[k:] + points[:k]:
            d = os.path.join(scratch, f"scaling-r{r}-t{t}-s{s}")
            os.makedirs(d)
            prefix = os.path.join(d, "ckpt")
            _, smp = measure(
                lambda p=prefix, t=t, s=s: fastckpt.save(w.tensors, p, threads=t, num_shards=s, durable=False),
                sync=sync,
            )
            rec["save"][f"{t},{s}"] = smp.to_json()
            out, lmp = measure(lambda p=prefix, t=t: fastckpt.load(p, threads=t), sync=sync, prefault_bytes=w.nbytes)
            bad = W.check(w, out)
            del out
            if bad:
                raise RuntimeError(f"scaling: fastckpt.load(threads={t}) of {s} shards: {bad}")
            rec["load"][f"{t},{s}"] = lmp.to_json()
            shutil.rmtree(d)
        for t in lv[k % len(lv) :] + lv[: k % len(lv)]:
            d = os.path.join(scratch, f"scaling-raw-r{r}-t{t}")
            os.makedirs(d)
            _, smp = measure(lambda d=d, t=t: C.raw_write(arrays, os.path.join(d, "raw"), t, False), sync=sync)
            rec["raw"][str(t)] = smp.to_json()
            got = C.raw_read(specs, os.path.join(d, "raw"), t)
            bad = W.check(w, dict(zip(names, got)))
            del got
            if bad:
                raise RuntimeError(f"scaling: raw read with {t} threads: {bad}")
            shutil.rmtree(d)
        per_round.append(rec)
        if progress:
            best = max(points, key=lambda p: 1 / rec["save"][f"{p[0]},{p[1]}"]["seconds"])
            progress(
                f"scaling round {r + 1}/{rounds}: best save at threads={best[0]} "
                f"shards={best[1]}: "
                f"{C.gbps(w.nbytes, rec['save'][f'{best[0]},{best[1]}']['seconds']):.2f} GB/s"
            )

    gc.unfreeze()

    def med(kind: str, key: str, field: str = "seconds") -> float:
        return C.median([rec[kind][key][field] for rec in per_round])

    summary = {
        "save_gbps": {f"{t},{s}": C.gbps(w.nbytes, med("save", f"{t},{s}")) for t, s in points},
        "load_gbps": {f"{t},{s}": C.gbps(w.nbytes, med("load", f"{t},{s}")) for t, s in points},
        "raw_save_gbps": {str(t): C.gbps(w.nbytes, med("raw", str(t))) for t in lv},
        "save_rss_extra_max": max(rec["save"][p]["rss_extra"] for rec in per_round for p in rec["save"]),
    }
    return {"workload": w.describe(), "levels": lv, "rounds": per_round, "summary": summary}
