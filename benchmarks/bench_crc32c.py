"""CRC-32C throughput of each fastckpt implementation, and of google_crc32c.

For every implementation usable on this CPU (crc32c_impls()) and, if it is
installed, the google_crc32c package, measures GB/s (10^9 bytes per second) of
checksumming one buffer of each block size from Python, so small sizes include
the per-call overhead a Python caller pays. Each point repeats until it has at
least --min-iters timed samples and --min-time seconds; the table shows the
best sample and the JSON output also has the median.

    python benchmarks/bench_crc32c.py             # full run, ~1 minute
    python benchmarks/bench_crc32c.py --quick     # ~1 s smoke run
    python benchmarks/bench_crc32c.py --json out.json
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

from fastckpt import _native

try:
    import google_crc32c
except ImportError:  # optional comparison
    google_crc32c = None

KIB = 1024
MIB = 1024 * 1024
DEFAULT_SIZES = [4 * KIB, 64 * KIB, 1 * MIB, 16 * MIB, 64 * MIB]
QUICK_SIZES = [4 * KIB, 1 * MIB]


def _size_label(n):
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"


def _hashers():
    """(name, setup, callable(buffer) -> int) for every implementation to compare.

    fastckpt's implementations are timed through the default call path
    (crc32c(buf) after crc32c_set_impl), which is what library code uses.
    """
    out = []
    for name in _native.crc32c_impls():
        out.append((name, lambda _name=name: _native.crc32c_set_impl(_name), _native.crc32c))
    if google_crc32c is not None:
        out.append(
            (f"google_crc32c ({google_crc32c.implementation})", lambda: None, google_crc32c.value)
        )
    return out


def _measure(fn, buf, min_iters, min_time):
    """Seconds per call: (best, median) over timed samples.

    A sample times a batch of calls long enough (>= ~1 ms) for the timer's
    resolution not to matter at small block sizes.
    """
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~1 second smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        help="comma-separated block sizes in bytes (default: 4K,64K,1M,16M,64M)",
    )
    parser.add_argument("--min-iters", type=int, default=None, help="samples per point (default 5)")
    parser.add_argument(
        "--min-time", type=float, default=None, help="seconds per point (default 0.3)"
    )
    args = parser.parse_args(argv)

    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    min_iters = args.min_iters or (2 if args.quick else 5)
    min_time = args.min_time if args.min_time is not None else (0.02 if args.quick else 0.3)

    hashers = _hashers()
    # Random data: some implementations could shortcut on zeros in principle.
    data = {n: os.urandom(n) for n in sizes}
    # Every implementation must agree before any number is worth printing.
    active = _native.crc32c_impl()
    for n, buf in data.items():
        values = {name: _native.crc32c(buf, 0, name) for name in _native.crc32c_impls()}
        if google_crc32c is not None:
            values["google_crc32c"] = google_crc32c.value(buf)
        if len(set(values.values())) != 1:
            sys.exit(f"implementations disagree at {n} bytes: {values}")

    results = []
    for name, setup, fn in hashers:
        setup()
        for n in sizes:
            best, median = _measure(fn, data[n], min_iters, min_time)
            results.append(
                {
                    "impl": name,
                    "bytes": n,
                    "best_gbps": n / best / 1e9,
                    "median_gbps": n / median / 1e9,
                }
            )

    _native.crc32c_set_impl(active)

    names = [name for name, _, _ in hashers]
    width = max(len(s) for s in names + ["impl"]) + 2
    print(f"fastckpt CRC-32C throughput, GB/s (best of >= {min_iters} samples, >= {min_time} s per point)")
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print("impl".ljust(width) + "".join(_size_label(n).rjust(10) for n in sizes))
    for name in names:
        row = [r for r in results if r["impl"] == name]
        print(name.ljust(width) + "".join(f"{r['best_gbps']:10.2f}" for r in row))

    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "machine": platform.machine(),
                    "python": platform.python_version(),
                    "default_impl": active,
                    "min_iters": min_iters,
                    "min_time_s": min_time,
                    "results": results,
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
