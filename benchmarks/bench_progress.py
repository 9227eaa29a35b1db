"""What a ``progress=`` callback costs: save, load and verify of the same
state with and without a callback, alternating in every round (the order
flips between rounds), in the page cache. The callback does what a progress
bar does (formats a line) and counts its calls.

Without a callback the native call runs on the calling thread; with one, it
runs on a worker thread while the calling thread polls the core's counters
ten times a second, so the cost to measure is a thread start per call and
the polls.

    python benchmarks/bench_progress.py [--size-gb 1] [--rounds 7] [--json FILE] [--quick]
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

try:  # run as a script (benchmarks/ on sys.path) or as benchmarks.bench_progress
    from bench_async import model
except ImportError:
    from .bench_async import model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    args = ap.parse_args()
    import fastckpt

    if args.quick:
        args.size_gb, args.rounds = 0.02, 1
    tensors = model(int(args.size_gb * 1e9), tensor_bytes=16 << 20)
    nbytes = sum(t.nbytes for t in tensors.values())
    calls = []

    def bar(p) -> None:  # what a progress bar does per call
        calls.append(f"{100 * p.fraction:5.1f}% {p.bytes_done}/{p.bytes_total} {p.tensors_done}/{p.tensors_total}")

    root = tempfile.mkdtemp(prefix="fastckpt-progress-", dir=args.dir)
    prefix = os.path.join(root, "ckpt")
    # Each save goes to a new prefix (overwriting one costs the file system
    # time of its own), and every timed call starts after os.sync(), so that
    # writeback of the previous call's dirty pages is not charged to it.
    fresh = iter(range(10**9))
    ops = {
        "save": lambda cb: fastckpt.save(tensors, f"{prefix}-{next(fresh)}", durable=False, progress=cb),
        "load": lambda cb: fastckpt.load(prefix, progress=cb),
        "verify": lambda cb: fastckpt.verify(prefix, progress=cb),
    }
    times = {op: {"plain": [], "progress": []} for op in ops}
    counts = {op: [] for op in ops}
    try:
        fastckpt.save(tensors, prefix, durable=False)  # warm: files exist, pages cached
        for r in range(args.rounds):
            for op, run in ops.items():
                order = ("plain", "progress") if r % 2 == 0 else ("progress", "plain")
                for mode in order:
                    calls.clear()
                    for f in os.listdir(root):
                        if f.startswith("ckpt-"):
                            os.unlink(os.path.join(root, f))
                    os.sync()
                    t0 = time.perf_counter()
                    run(bar if mode == "progress" else None)
                    times[op][mode].append(time.perf_counter() - t0)
                    if mode == "progress":
                        counts[op].append(len(calls))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {"bytes": nbytes, "rounds": args.rounds, "ops": {}}
    for op in ops:
        plain, prog = statistics.median(times[op]["plain"]), statistics.median(times[op]["progress"])
        ratios = [p / q for p, q in zip(times[op]["progress"], times[op]["plain"])]
        summary["ops"][op] = {
            "plain_s": plain,
            "progress_s": prog,
            "median_paired_ratio": statistics.median(ratios),
            "plain_gbps": nbytes / plain / 1e9,
            "progress_gbps": nbytes / prog / 1e9,
            "callbacks_median": statistics.median(counts[op]),
            "plain_all_s": times[op]["plain"],
            "progress_all_s": times[op]["progress"],
        }
        print(
            f"{op:6s} without {nbytes / plain / 1e9:5.2f} GB/s, with progress= "
            f"{nbytes / prog / 1e9:5.2f} GB/s: paired time ratio {statistics.median(ratios):.3f} "
            f"({statistics.median(counts[op]):.0f} callbacks per call)"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
