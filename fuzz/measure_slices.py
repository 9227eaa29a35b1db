"""Times partitioned-tensor reads on valid and hostile slice layouts.

    python fuzz/measure_slices.py [--slices 2000] [--tf]

Cases (each written as a real checkpoint, then read with ``get_tensor`` in a
fresh reader, best of --repeat):

* ``valid_rows``: a valid [N, 3] float32 tensor stored as N one-row slices;
* ``valid_grid``: a valid tensor stored as a ~sqrt(N) x sqrt(N) grid of slices;
* ``hostile_empty``: an 8 KB index whose tensor lists 800 slices of no
  element (refused: the slices do not cover it);
* ``hostile_strips``: the slowest layout the check still accepts (11,000 rows in
  one half, 11,000 columns in the other: ~6e7 sweep comparisons), checked through
  ``fastckpt._native.check_slice_set`` when it exists.

With --tf, TensorFlow's reader (``tf.train.load_checkpoint(...).get_tensor``)
reads the valid cases too. Prints one line per case: seconds and outcome.
Which fastckpt is measured is whichever ``import fastckpt`` finds (set
PYTHONPATH to compare builds).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
from checkpoint_builders import write_partitioned  # beside this script

import fastckpt


def _time(fn, repeat: int):
    best, outcome = float("inf"), ""
    for _ in range(repeat):
        start = time.perf_counter()
        try:
            fn()
            outcome = "ok"
        except Exception as e:  # noqa: BLE001 - reported
            outcome = f"{type(e).__name__}: {str(e)[:100]}"
        best = min(best, time.perf_counter() - start)
    return best, outcome


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slices", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tf", action="store_true", help="time TensorFlow's reader on the valid cases")
    args = p.parse_args()
    n = args.slices
    d = tempfile.mkdtemp(prefix="measure_slices_")
    cases = {}

    rows = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    write_partitioned(os.path.join(d, "rows"), "t", rows, [[(i, 1), (0, -1)] for i in range(n)])
    cases["valid_rows"] = (os.path.join(d, "rows"), rows)

    side = int(round(n**0.5))
    grid = np.arange(side * side * 4, dtype=np.float32).reshape(side * 2, side * 2)
    write_partitioned(
        os.path.join(d, "grid"),
        "t",
        grid,
        [[(r, 2), (c, 2)] for r in range(0, 2 * side, 2) for c in range(0, 2 * side, 2)],
    )
    cases["valid_grid"] = (os.path.join(d, "grid"), grid)

    small = np.arange(40, dtype=np.float32).reshape(8, 5)
    write_partitioned(os.path.join(d, "empty"), "t", small, [], listed=[[(i % 8, 0), (0, -1)] for i in range(800)])
    cases["hostile_empty"] = (os.path.join(d, "empty"), None)
    index_bytes = os.path.getsize(os.path.join(d, "empty.index"))
    print(f"hostile_empty index: {index_bytes} bytes", flush=True)

    for label, (prefix, want) in cases.items():

        def read(prefix=prefix, want=want):
            with fastckpt.load_checkpoint(prefix) as reader:
                got = reader.get_tensor("t")
            if want is not None and not np.array_equal(got, want):
                raise AssertionError("wrong values")

        seconds, outcome = _time(read, args.repeat)
        count = 800 if label == "hostile_empty" else n
        print(f"fastckpt {label} ({count} slices): {seconds:.4f} s  {outcome}", flush=True)

    from fastckpt import _native

    if hasattr(_native, "check_slice_set"):
        half = 11000
        strips = [[(r, 1), (0, -1)] for r in range(half)] + [[(half, half), (c, 1)] for c in range(half)]
        seconds, outcome = _time(lambda: _native.check_slice_set([2 * half, half], strips), args.repeat)
        print(f"fastckpt hostile_strips ({2 * half} slices, check only): {seconds:.4f} s  {outcome}")

    if args.tf:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        for label in ("valid_rows", "valid_grid"):
            prefix, want = cases[label]

            def tf_read(prefix=prefix, want=want):
                got = tf.train.load_checkpoint(prefix).get_tensor("t")
                if not np.array_equal(got, want):
                    raise AssertionError("wrong values")

            seconds, outcome = _time(tf_read, args.repeat)
            print(f"tensorflow {label} ({n} slices): {seconds:.4f} s  {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
