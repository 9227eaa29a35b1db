"""A save removes temporary files left by crashed saves in its directory, but
never those of a save that is still running (they are flock()ed)."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import textwrap
import time

import numpy as np

import fastckpt


def _make_temp(path, age_seconds):
    with open(path, "wb") as f:
        f.write(b"partial")
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))


def test_stale_temp_files_are_removed(tmp_path):
    stale = tmp_path / "old.data-00000-of-00001.tempstate123456"
    stale_index = tmp_path / "old.index.tempstate42"
    young = tmp_path / "young.index.tempstate7"
    unrelated = tmp_path / "notes.tempstate.txt"
    _make_temp(stale, 60)
    _make_temp(stale_index, 60)
    _make_temp(young, 0)
    _make_temp(unrelated, 60)
    fastckpt.save({"a": np.ones(3)}, str(tmp_path / "new"), durable=False)
    left = sorted(os.listdir(tmp_path))
    assert left == ["new.data-00000-of-00001", "new.index", "notes.tempstate.txt",
                    "young.index.tempstate7"]


def test_locked_temp_file_of_a_live_save_is_kept(tmp_path):
    live = tmp_path / "busy.data-00000-of-00001.tempstate99"
    _make_temp(live, 60)
    code = textwrap.dedent(f"""
        import fcntl, sys, time
        f = open({str(live)!r}, "rb")
        fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
        """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        fastckpt.save({"a": np.ones(3)}, str(tmp_path / "new"), durable=False)
        assert live.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    fastckpt.save({"a": np.ones(3)}, str(tmp_path / "again"), durable=False)
    assert not live.exists()  # the holder is gone: now it is debris


def test_writer_holds_lock_on_its_temp_files(tmp_path):
    # While a save runs its temporary files are locked: check from a second save
    # started on another thread against a large first save.
    import threading

    big = {f"t{i}": np.ones(8 << 20, np.uint8) for i in range(16)}
    seen = []

    def probe():
        deadline = time.time() + 20
        while time.time() < deadline and not seen:
            for name in os.listdir(tmp_path):
                if ".tempstate" in name:
                    try:
                        fd = os.open(tmp_path / name, os.O_RDONLY)
                    except FileNotFoundError:
                        continue
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        seen.append(("unlocked", name))
                    except BlockingIOError:
                        seen.append(("locked", name))
                    finally:
                        os.close(fd)
                    break

    t = threading.Thread(target=probe)
    t.start()
    fastckpt.save(big, str(tmp_path / "big"), durable=True, threads=1)
    t.join()
    assert seen and all(state == "locked" for state, _ in seen), seen
