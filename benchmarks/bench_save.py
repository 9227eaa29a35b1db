#!/usr/bin/env python
"""Save/restore of one float32 transformer: fastckpt vs TensorFlow's Saver vs raw parallel I/O.

Kept for its command line; it runs the suite (``python -m benchmarks``) on the
transformer-fp32 workload with the systems fastckpt, tf-saver, raw-N, raw-N1 and raw-1:

    python benchmarks/bench_save.py --size-gb 1 --rounds 5 [--durable] [--json out.json]
    python benchmarks/bench_save.py --quick

is ``python -m benchmarks --parts workloads --workloads transformer-fp32
--systems fastckpt,tf-saver,raw --size 1GB --rounds 5 --modes page-cache`` (``--modes durable``
with --durable). Other options go to the suite unchanged (see ``python -m benchmarks --help``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.__main__ import main as suite_main  # noqa: E402


def translate(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=True)
    p.add_argument("--size-gb", type=float, default=None)
    p.add_argument("--durable", action="store_true")
    p.add_argument("--no-tf", action="store_true")
    p.add_argument("--no-sync-between", action="store_true")
    p.add_argument("--json", default=None, metavar="PATH")
    args, rest = p.parse_known_args(argv)
    out = [
        "--parts",
        "workloads",
        "--workloads",
        "transformer-fp32",
        "--systems",
        "fastckpt,raw" + ("" if args.no_tf else ",tf-saver"),
        "--modes",
        "durable" if args.durable else "page-cache",
    ]
    if args.size_gb is not None:
        out += ["--size", f"{args.size_gb}GB"]
    if args.no_sync_between:
        out.append("--no-sync")
    return out + rest, args.json


def main(argv=None) -> int:
    suite_args, json_path = translate(sys.argv[1:] if argv is None else argv)
    if json_path is None:
        return suite_main(suite_args)
    tmp = tempfile.mkdtemp(prefix="bench-save-")
    try:
        rc = suite_main(suite_args + ["--out", tmp])
        shutil.copyfile(os.path.join(tmp, "summary.json"), json_path)
        return rc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
