"""A training loop that checkpoints in the background.

Every few steps the loop starts ``Saver.save(..., blocking=False)``: the call
returns once the weights are snapshotted, the loop keeps updating them, and
the checkpoint is written, committed and recorded in the ``checkpoint`` state
file behind it. At the end the loop waits for the last save and resumes from
the latest checkpoint to show that it holds the weights of its step.

    python examples/async_training.py [--dir DIR] [--steps 40] [--every 10] [--size-mb 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import fastckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=None)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--size-mb", type=float, default=64)
    args = ap.parse_args()
    ckpt_dir = args.dir or tempfile.mkdtemp(prefix="fastckpt-async-")
    n = max(1, int(args.size_mb * (1 << 20)) // 4 // 4)
    weights = {f"layer{i}/w": np.zeros(n, np.float32) for i in range(4)}
    saver = fastckpt.Saver(weights, max_to_keep=2)
    pending = []
    blocked = 0.0
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        for w in weights.values():
            w += 1.0  # "training": after step s every weight equals s
        if step % args.every == 0:
            handle = saver.save(None, os.path.join(ckpt_dir, "model"), global_step=step, blocking=False)
            blocked += handle.snapshot_seconds
            pending.append(handle)
    for handle in pending:
        handle.result()  # re-raises a background failure
    total = time.perf_counter() - start
    latest = fastckpt.latest_checkpoint(ckpt_dir)
    values = fastckpt.load(latest)
    step = int(latest.rsplit("-", 1)[1])
    assert all(float(v[0]) == step for v in values.values()), "checkpoint does not hold its step's weights"
    print(f"{len(pending)} background saves in {total:.2f} s, the loop blocked {blocked:.3f} s in all")
    print(f"resumed from {latest}: every weight = {step}.0")
    print("kept:", sorted(f for f in os.listdir(ckpt_dir) if f.endswith(".index")))


if __name__ == "__main__":
    main()
