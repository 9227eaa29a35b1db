"""Asynchronous save: how much a Python training loop on the main thread slows
down while a checkpoint is written in the background, and how long the save
call itself blocks.

The "training step" is pure Python (it needs the GIL for every bytecode), so
any GIL held by the background write would show as a large slowdown. Rounds
alternate: a baseline window with no save, then a window during which
``fastckpt.save(..., blocking=False)`` writes the checkpoint. Reported per
round: steps/s in both windows, the slowdown, the call's blocking time (the
snapshot) against a plain ``np.copyto`` of the same bytes, and the write time.

On a machine with few cores the background threads also compete with the
loop for CPU time; ``--threads 1`` leaves a core to the loop so that what
remains is the cost of sharing the interpreter. Both are reported.

    python benchmarks/bench_async.py [--size-gb 1] [--rounds 5] [--threads N] [--durable] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

STEP_WORK = 2000


def train_step() -> int:
    # Pure-Python arithmetic: holds the GIL for its whole duration.
    acc = 0
    for i in range(STEP_WORK):
        acc += i * i % 7
    return acc


def steps_during(seconds: float, until=None) -> float:
    """Steps per second over `seconds`, or until `until()` is true (then at least 0.2 s)."""
    start = time.perf_counter()
    steps = 0
    while True:
        train_step()
        steps += 1
        elapsed = time.perf_counter() - start
        if until is None and elapsed >= seconds:
            break
        if until is not None and until() and elapsed >= 0.2:
            break
    return steps / elapsed


def model(size_bytes: int) -> dict:
    rng = np.random.default_rng(0)
    tensors, left, i = {}, size_bytes, 0
    while left > 0:
        n = min(left, 64 << 20) // 4
        tensors[f"layer{i:03d}/w"] = rng.standard_normal(max(n, 1), dtype=np.float32)
        left -= n * 4
        i += 1
    return tensors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="writer threads (default: fastckpt's, one fewer than the cores)")
    ap.add_argument("--durable", action="store_true", help="fsync before the checkpoint is visible")
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    args = ap.parse_args()
    try:
        import fastckpt
    except ImportError as e:
        print(f"fastckpt is not importable: {e}", file=sys.stderr)
        return 2
    if args.quick:
        args.size_gb, args.rounds = 0.02, 1
    size = int(args.size_gb * 1e9)
    tensors = model(size)
    nbytes = sum(t.nbytes for t in tensors.values())
    scratch = {k: np.empty_like(v) for k, v in tensors.items()}
    root = tempfile.mkdtemp(prefix="fastckpt-async-", dir=args.dir)
    rows = []
    try:
        # Warm up: staging buffers allocated, files created once.
        fastckpt.save(tensors, os.path.join(root, "warm"), blocking=False, threads=args.threads,
                      durable=args.durable).result()
        for r in range(args.rounds):
            os.sync()
            base = steps_during(1.0)
            t0 = time.perf_counter()
            for k, v in tensors.items():
                np.copyto(scratch[k], v)
            memcpy_s = time.perf_counter() - t0
            os.sync()
            t0 = time.perf_counter()
            handle = fastckpt.save(tensors, os.path.join(root, f"ck{r}"), blocking=False,
                                   threads=args.threads, durable=args.durable)
            blocked = time.perf_counter() - t0
            during = steps_during(0, until=handle.done)
            handle.result()
            total = time.perf_counter() - t0
            rows.append({"round": r, "baseline_steps_per_s": base, "during_steps_per_s": during,
                         "slowdown": 1 - during / base, "blocked_s": blocked, "memcpy_s": memcpy_s,
                         "blocked_vs_memcpy": blocked / memcpy_s, "write_s": total - blocked})
            print(f"round {r}: loop {base:8.1f} -> {during:8.1f} steps/s (slowdown {100 * (1 - during / base):5.1f}%), "
                  f"call blocked {blocked:.3f} s (memcpy of the same bytes {memcpy_s:.3f} s), "
                  f"background write {total - blocked:.3f} s", file=sys.stderr)
            for f in os.listdir(root):
                if f.startswith(f"ck{r}."):
                    os.unlink(os.path.join(root, f))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {
        # Without --threads, an asynchronous save writes with one thread fewer than the cores.
        "bytes": nbytes, "threads": args.threads or max(1, (os.cpu_count() or 1) - 1), "durable": args.durable,
        "median_slowdown": statistics.median(r["slowdown"] for r in rows),
        "median_blocked_s": statistics.median(r["blocked_s"] for r in rows),
        "median_blocked_vs_memcpy": statistics.median(r["blocked_vs_memcpy"] for r in rows),
        "median_write_s": statistics.median(r["write_s"] for r in rows),
        "rounds": rows,
    }
    print(f"{nbytes / 1e9:.2f} GB, threads={summary['threads']}, durable={args.durable}: "
          f"median slowdown {100 * summary['median_slowdown']:.1f}% (target <= 10%), "
          f"call blocked {summary['median_blocked_s']:.3f} s = {summary['median_blocked_vs_memcpy']:.2f}x a memcpy, "
          f"background write {summary['median_write_s']:.2f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
