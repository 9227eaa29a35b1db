"""Temporary files and the cleanup of crashed writers' leftovers.

Every file fastckpt publishes (data shards, index, the ``checkpoint`` state
file, ``.meta``) is written under ``<final>.tempstate-fastckpt-<16 hex>``
while its writer holds an exclusive ``flock`` on it. A save removes, in its
directory, the temporary files of that form that no live writer holds and
that are at least 2 s old; it never touches a live writer's, and never a
file it did not name: TensorFlow writes ``<final>.tempstate<decimal>`` (its
bundle writer) and ``<final>.tmp<32 hex>`` (its Python atomic writes) into
the same directories, unlocked.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
from helpers import flock_held

import fastckpt
from fastckpt import _native
from fastckpt import checkpoint_management as cm

TEMP_RE = re.compile(r"^(?P<final>.+)\.tempstate-fastckpt-[0-9a-f]{16}$")
HEX = "0123456789abcdef"


def _child_env() -> dict:
    """The environment of a child Python: it imports the fastckpt under test."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastckpt.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _make_temp(path, age_seconds, content=b"partial"):
    with open(path, "wb") as f:
        f.write(content)
    stamp = time.time() - age_seconds
    os.utime(path, (stamp, stamp))


def test_only_fastckpt_temp_files_are_removed(tmp_path):
    stale = [
        "old.data-00000-of-00002.tempstate-fastckpt-0123456789abcdef",
        "old.index.tempstate-fastckpt-fedcba9876543210",
        "checkpoint.tempstate-fastckpt-00000000deadbeef",
        "old.meta.tempstate-fastckpt-ffffffffffffffff",
    ]
    kept = [
        "young.index.tempstate-fastckpt-1111111111111111",  # ours, but 0 s old
        # TensorFlow's temporary names, stale and unlocked:
        "tf.data-00000-of-00001.tempstate123456",
        "tf.index.tempstate18446744073709551615",
        "checkpoint.tmp0123456789abcdef0123456789abcdef",
        "tf.meta.tmpfedcba9876543210fedcba9876543210",
        # near misses of fastckpt's form:
        "a.index.tempstate-fastckpt-0123456789abcde",  # 15 hex digits
        "a.index.tempstate-fastckpt-0123456789abcdef0",  # 17
        "a.index.tempstate-fastckpt-0123456789ABCDEF",  # upper case
        "a.index.tempstate-fastckpt-0123456789abcdeg",
        "a.index.tempstate-fastckpt-0123456789abcdef.txt",
        ".tempstate-fastckpt-0123456789abcdef",  # no final name
        "a.index.tempstatefastckpt-0123456789abcdef",
        "notes.tempstate.txt",
    ]
    for name in stale + kept[1:]:
        _make_temp(tmp_path / name, 60)
    _make_temp(tmp_path / kept[0], 0)
    fastckpt.save({"a": np.ones(3)}, str(tmp_path / "new"), durable=False)
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["new.data-00000-of-00001", "new.index"])
    for name in kept:
        assert (tmp_path / name).read_bytes() == b"partial", name


def test_directories_symlinks_and_fifos_with_temp_names_are_kept(tmp_path):
    target = tmp_path / "target"
    _make_temp(target, 60)
    link = tmp_path / "l.index.tempstate-fastckpt-0123456789abcdef"
    link.symlink_to(target)
    os.utime(link, (time.time() - 60,) * 2, follow_symlinks=False)
    directory = tmp_path / "d.index.tempstate-fastckpt-0123456789abcdef"
    directory.mkdir()
    os.utime(directory, (time.time() - 60,) * 2)
    fifo = tmp_path / "f.index.tempstate-fastckpt-0123456789abcdef"
    os.mkfifo(fifo)  # opening it must not block the save
    os.utime(fifo, (time.time() - 60,) * 2)
    fastckpt.save({"a": np.ones(3)}, str(tmp_path / "new"), durable=False)
    assert link.is_symlink() and directory.is_dir() and target.read_bytes() == b"partial"
    assert fifo.exists()


def test_remove_stale_temp_files_binding(tmp_path):
    _make_temp(tmp_path / "m.index.tempstate-fastckpt-0123456789abcdef", 10)
    _make_temp(tmp_path / "m.index.tempstate12345", 10)
    assert _native.remove_stale_temp_files(str(tmp_path), 20.0) == 0  # not old enough
    assert _native.remove_stale_temp_files(os.fsencode(str(tmp_path)), 5.0) == 1
    assert os.listdir(tmp_path) == ["m.index.tempstate12345"]
    assert _native.remove_stale_temp_files(str(tmp_path / "missing")) == 0


# TensorFlow leaves these behind itself when a save fails: its bundle writer's
# data file when the rename into place fails (here: a directory stands at the
# final name), and atomic_write_string_to_file's file when an exception other
# than OpError interrupts its rename.
_TF_LEFTOVERS = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import tensorflow as tf
    from tensorflow.python.lib.io import file_io
    d = sys.argv[1]
    os.makedirs(os.path.join(d, "tf.data-00000-of-00001", "blocker"))
    try:
        tf.raw_ops.SaveV2(prefix=os.path.join(d, "tf"), tensor_names=["a"], shape_and_slices=[""],
                          tensors=[tf.constant([1.0, 2.0])])
    except tf.errors.OpError:
        pass
    class Interrupted(BaseException):
        pass
    def rename(*args, **kwargs):
        raise Interrupted()
    file_io.rename = rename
    for name in ("checkpoint", "tf.meta"):
        try:
            file_io.atomic_write_string_to_file(os.path.join(d, name), "tensorflow's bytes")
        except Interrupted:
            pass
    """)


def test_tensorflow_temp_files_survive_fastckpt_saves(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    subprocess.run([sys.executable, "-c", _TF_LEFTOVERS, str(d)], check=True, timeout=300, stderr=subprocess.DEVNULL)
    tf_temps = sorted(n for n in os.listdir(d) if n != "tf.data-00000-of-00001")
    assert len(tf_temps) == 3, tf_temps
    assert re.fullmatch(r"checkpoint\.tmp[0-9a-f]{32}", tf_temps[0]), tf_temps
    assert re.fullmatch(r"tf\.data-00000-of-00001\.tempstate\d+", tf_temps[1]), tf_temps
    assert re.fullmatch(r"tf\.meta\.tmp[0-9a-f]{32}", tf_temps[2]), tf_temps
    contents = {}
    for name in tf_temps:
        os.utime(d / name, (time.time() - 3600,) * 2)  # long stale, and TensorFlow never locks
        contents[name] = (d / name).read_bytes()
        assert not flock_held(d / name)
    ours = d / "old.data-00000-of-00001.tempstate-fastckpt-0123456789abcdef"
    _make_temp(ours, 60)

    fastckpt.save({"a": np.ones(3)}, str(d / "model"), durable=False)
    saver = fastckpt.Saver({"w": np.arange(4.0)})
    saver.save(None, str(d / "saver"), global_step=1)
    cm.update_checkpoint_state(str(d), str(d / "saver-1"))

    for name in tf_temps:
        assert (d / name).exists(), f"TensorFlow's {name} was removed"
        assert (d / name).read_bytes() == contents[name], name
    assert not ours.exists()
    assert sorted(n for n in os.listdir(d) if ".tempstate" in n or ".tmp" in n) == tf_temps


def test_locked_temp_file_of_a_live_writer_is_kept(tmp_path):
    live = [
        tmp_path / "busy.data-00000-of-00001.tempstate-fastckpt-0123456789abcdef",
        tmp_path / "checkpoint.tempstate-fastckpt-0123456789abcdef",
        tmp_path / "busy.meta.tempstate-fastckpt-0123456789abcdef",
    ]
    for path in live:
        _make_temp(path, 60)
    code = textwrap.dedent(f"""
        import fcntl, sys
        files = [open(p, "rb") for p in {[str(p) for p in live]!r}]
        for f in files:
            fcntl.flock(f, fcntl.LOCK_EX)
        print("locked", flush=True)
        sys.stdin.read()
        """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        fastckpt.save({"a": np.ones(3)}, str(tmp_path / "new"), durable=False)
        assert all(p.exists() for p in live)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()
    fastckpt.save({"a": np.ones(3)}, str(tmp_path / "again"), durable=False)
    assert not any(p.exists() for p in live)  # the holder is gone: now they are debris


def test_writer_holds_lock_on_its_temp_files(tmp_path):
    # While a save runs its temporary files are locked: check from a second save
    # started on another thread against a large first save.
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
                        # Free: fine only if the writer renamed the file into place
                        # (and then closed it) since it was opened here.
                        try:
                            renamed = os.stat(tmp_path / name).st_ino != os.fstat(fd).st_ino
                        except FileNotFoundError:
                            renamed = True
                        if not renamed:
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
    for _, name in seen:
        m = TEMP_RE.match(name)
        assert m is not None and m.group("final") in ("big.data-00000-of-00001", "big.index"), name


# A process that replaces a large file again and again through the atomic
# small-file writer (the state file's and the .meta's path), so that it can be
# stopped while its temporary file exists.
_REWRITER = textwrap.dedent("""
    import sys
    from fastckpt._atomic_io import atomic_write
    path = sys.argv[1]
    data = b"s" * (64 << 20)
    print("ready", flush=True)
    while True:
        atomic_write(path, data, durable=False, what="checkpoint state file")
    """)


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")


def _stop_while_writing(proc, directory, deadline):
    """SIGSTOPs `proc` at a moment its temporary file exists and is locked
    (the writer creates the file, then takes the lock); returns its name."""
    while time.monotonic() < deadline:
        if not [n for n in os.listdir(directory) if TEMP_RE.match(n)]:
            continue
        os.kill(proc.pid, signal.SIGSTOP)
        while not _stopped(proc.pid):
            time.sleep(0.001)
        temps = [n for n in os.listdir(directory) if TEMP_RE.match(n)]
        if temps and all(flock_held(os.path.join(directory, n)) for n in temps):
            return temps
        os.kill(proc.pid, signal.SIGCONT)  # it renamed, or had not locked yet, in between; try again
    raise AssertionError("never saw the writer's temporary file")


def test_live_atomic_writer_is_spared_and_its_leftover_removed_after_a_kill(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-c", _REWRITER, str(d / "checkpoint")], stdout=subprocess.PIPE, text=True, env=_child_env()
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        temps = _stop_while_writing(proc, d, time.monotonic() + 120)
        assert len(temps) == 1 and TEMP_RE.match(temps[0]).group("final") == "checkpoint", temps
        temp = d / temps[0]
        assert flock_held(temp)
        os.utime(temp, (time.time() - 60,) * 2)  # old enough to be removed, were it not locked
        fastckpt.save({"a": np.ones(3)}, str(d / "model"), durable=False)
        assert temp.exists()  # a live (here: stopped) writer's file is never touched
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        proc.stdout.close()
    assert not flock_held(temp)  # the kernel dropped the dead writer's lock
    fastckpt.save({"a": np.ones(3)}, str(d / "model2"), durable=False)
    assert not temp.exists()
    assert [n for n in os.listdir(d) if ".tempstate" in n] == []
    state = d / "checkpoint"
    assert not state.exists() or state.read_bytes() == b"s" * (64 << 20)  # whole or absent
