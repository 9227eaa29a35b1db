#!/usr/bin/env python
"""CRC-32C throughput of each fastckpt implementation, and of google_crc32c.

The CRC32C part of the suite (``python -m benchmarks --parts crc32c``), on its own: for every
implementation usable on this CPU (crc32c_impls()) and, if installed, the google_crc32c
package, GB/s (10^9 bytes per second) of checksumming one buffer of each block size from
Python on one thread, so small sizes include the per-call cost a Python caller pays.
Implementations alternate over rounds; each point is the median over rounds of the best
batch of a round.

    python benchmarks/bench_crc32c.py             # about a minute
    python benchmarks/bench_crc32c.py --quick     # about a second
    python benchmarks/bench_crc32c.py --json out.json
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _common as C  # noqa: E402
from benchmarks.__main__ import parse_size  # noqa: E402
from benchmarks.micro import CRC_QUICK_SIZES, CRC_SIZES, crc32c_bench  # noqa: E402
from benchmarks.report import print_crc  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="about a second: a smoke run")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",")],
        help="comma-separated block sizes (default: 4KiB,64KiB,1MiB,16MiB,64MiB)",
    )
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3)")
    p.add_argument("--min-time", type=float, default=None, help="seconds per point and round (default 0.3)")
    args = p.parse_args(argv)
    sizes = args.sizes or list(CRC_QUICK_SIZES if args.quick else CRC_SIZES)
    rounds = args.rounds or (1 if args.quick else 3)
    min_time = args.min_time if args.min_time is not None else (0.02 if args.quick else 0.3)
    res = crc32c_bench(sizes, rounds=rounds, min_time=min_time)
    print_crc(res, sys.stdout)
    print(f"({C.cpu_model()}, Python {sys.version.split()[0]})")
    if args.json:
        C.write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
