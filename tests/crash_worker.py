"""Worker for tests/test_crash.py: saves checkpoints in a loop until killed.

Usage: ``python tests/crash_worker.py DIR [--max-steps N] [--mb MB] [--shards S]``

Resumes from ``latest_checkpoint(DIR) + 1`` (step 0 when there is none), and
hands the checkpoints the state file still lists to the new Saver
(``recover_last_checkpoints``), as a training job restarted after a crash
does, so that ``max_to_keep`` retention carries on across restarts.

Every tensor of step N holds N in every element (plus an int64 scalar
``step`` = N), so a reader can tell exactly which step a checkpoint holds.

Protocol on stdout, one line per event, flushed at once (the test decides
when to SIGKILL from these lines):

    pid <pid> <time>              the worker's process id (first line)
    ready <step> <time>           imports done, arrays allocated, about to save
    begin <step> <time>           Saver.save of <step> starts
    written <step> <time>         data + index committed (write_items returned)
    state <step> <time>           the state file update starts
    unlink <path> <time>          retention (or meta/state code) deletes a file
    saved <step> <time>           Saver.save returned

``written``/``state``/``unlink`` come from thin wrappers around the functions
``Saver.save`` calls; they do not change what is written or in which order.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

import numpy as np

import fastckpt
from fastckpt import checkpoint_management as cm
from fastckpt import saver as saver_module

MAX_TO_KEEP = 3
BASENAME = "model"


def emit(*words: object) -> None:
    sys.stdout.write(" ".join(str(w) for w in words) + f" {time.time():.6f}\n")
    sys.stdout.flush()


def step_of(prefix: str) -> int:
    m = re.search(r"-(\d+)$", prefix)
    if m is None:
        raise ValueError(f"not a step checkpoint: {prefix!r}")
    return int(m.group(1))


def make_arrays(total_mb: int) -> dict:
    """Four tensors of different dtypes sharing ~total_mb MiB (every value exact up to 2^24)."""
    per = total_mb * 2**20 // 4
    return {
        "dense/kernel": np.zeros(per // 4, np.float32).reshape(-1, 256),
        "dense/bias": np.zeros(per // 8, np.float64),
        "embedding/table": np.zeros(per // 4, np.int32).reshape(-1, 128),
        "optimizer/momentum": np.zeros(per // 8, np.int64),
        "step": np.zeros((), np.int64),
    }


def instrument() -> dict:
    """Prints phase markers around the calls Saver.save makes (behaviour unchanged)."""
    current = {"step": -1}

    real_write_items = saver_module.write_items

    def write_items(items, prefix, **kwargs):
        result = real_write_items(items, prefix, **kwargs)
        emit("written", current["step"])
        return result

    saver_module.write_items = write_items

    real_update = cm.update_checkpoint_state_internal

    def update_checkpoint_state_internal(*args, **kwargs):
        emit("state", current["step"])
        return real_update(*args, **kwargs)

    cm.update_checkpoint_state_internal = update_checkpoint_state_internal

    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        emit("unlink", os.fspath(path).replace(" ", "%20"))
        return real_unlink(path, *args, **kwargs)

    os.unlink = unlink
    return current


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many saves (0: never)")
    parser.add_argument("--mb", type=int, default=128, help="MiB of tensor data per step")
    parser.add_argument("--shards", type=int, default=3)
    args = parser.parse_args()

    emit("pid", os.getpid())
    current = instrument()
    latest = fastckpt.latest_checkpoint(args.dir)
    step = 0 if latest is None else step_of(latest) + 1
    arrays = make_arrays(args.mb)
    saver = fastckpt.Saver(arrays, max_to_keep=MAX_TO_KEEP, num_shards=args.shards, durable=True)
    state = fastckpt.get_checkpoint_state(args.dir)
    if state is not None:
        saver.recover_last_checkpoints(list(state.all_model_checkpoint_paths))
    emit("ready", step)
    done = 0
    while args.max_steps <= 0 or done < args.max_steps:
        for value in arrays.values():
            value.fill(step)
        current["step"] = step
        emit("begin", step)
        path = saver.save(None, os.path.join(args.dir, BASENAME), global_step=step)
        assert path == os.path.join(args.dir, f"{BASENAME}-{step}"), path
        emit("saved", step)
        step += 1
        done += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
