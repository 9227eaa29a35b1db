"""progress= callbacks (save, load, load_into, verify), the fastckpt logger, and
the command line's progress bars and ``ls --tree``."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import threading
import time

import numpy as np
import pytest

import fastckpt
from fastckpt import Progress
from fastckpt._progress import Tracker

MiB = 1 << 20


def _state():
    return {f"t{i:02d}": np.full(MiB // 8 * (1 + i % 3), i, dtype=np.float64) for i in range(24)}


def _check_calls(calls, total_bytes, total_tensors):
    assert calls, "the callback was never called"
    for p, thread in calls:
        assert thread == threading.get_ident()  # always on the calling thread
        assert p.bytes_total == total_bytes and p.tensors_total == total_tensors
        assert 0 <= p.bytes_done <= total_bytes and 0 <= p.tensors_done <= total_tensors
    done = [p.bytes_done for p, _ in calls]
    assert done == sorted(done)  # never goes back
    assert calls[-1][0] == Progress(total_bytes, total_bytes, total_tensors, total_tensors)
    assert calls[-1][0].fraction == 1.0


def _recorder():
    calls = []
    return calls, lambda p: calls.append((p, threading.get_ident()))


def test_save_load_load_into_and_verify_report_progress(tmp_path):
    state = _state()
    total = sum(a.nbytes for a in state.values())
    prefix = str(tmp_path / "ckpt")
    calls, cb = _recorder()
    result = fastckpt.save(state, prefix, progress=cb)
    assert result.nbytes == total
    _check_calls(calls, total, len(state))

    calls, cb = _recorder()
    got = fastckpt.load(prefix, progress=cb)
    assert all(got[n].tobytes() == a.tobytes() for n, a in state.items())
    _check_calls(calls, total, len(state))

    target = {n: np.zeros_like(a) for n, a in state.items() if n < "t10"}
    calls, cb = _recorder()
    fastckpt.load_into(prefix, target, strict=False, progress=cb)
    assert all(target[n].tobytes() == state[n].tobytes() for n in target)
    _check_calls(calls, sum(a.nbytes for a in target.values()), len(target))

    calls, cb = _recorder()
    assert fastckpt.verify(prefix, progress=cb).ok
    _check_calls(calls, total, len(state))


def test_a_nested_state_counts_its_tensors_not_the_structure_entry(tmp_path):
    state = {"model": {"w": np.ones((4, 4), np.float32)}, "optim": {"m": np.ones(8), "step": 3}}
    prefix = str(tmp_path / "ckpt")
    fastckpt.save(state, prefix)
    calls, cb = _recorder()
    fastckpt.load(prefix, progress=cb)
    _check_calls(calls, 64 + 64 + 8, 3)


def test_verify_reports_the_last_call_before_raising_on_damage(tmp_path):
    prefix = str(tmp_path / "ckpt")
    fastckpt.save({"a": np.arange(1000.0)}, prefix)
    data = prefix + ".data-00000-of-00001"
    with open(data, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    calls, cb = _recorder()
    with pytest.raises(fastckpt.DataLossError) as info:
        fastckpt.verify(prefix, progress=cb)
    assert "tensor 'a'" in str(info.value)
    _check_calls(calls, 8000, 1)


def test_the_callback_runs_at_a_bounded_rate_on_the_calling_thread():
    calls = []
    tracker = Tracker(lambda p: calls.append((p, threading.get_ident())), [100, 100, 100], interval=0.05)
    ticks = iter(range(0, 10**6, 10))
    start = time.monotonic()
    assert tracker.run(lambda: time.sleep(0.5) or "done", lambda: next(ticks)) == "done"
    elapsed = time.monotonic() - start
    assert 4 <= len(calls) <= elapsed / 0.05 + 1
    assert all(t == threading.get_ident() for _, t in calls)
    times = [p.bytes_done for p, _ in calls]
    assert times == sorted(times)
    # tensors_done counts the tensors covered by bytes_done, in layout order
    tracker.report(150)
    assert calls[-1][0] == Progress(150, 300, 1, 3)
    tracker.report(300)
    assert calls[-1][0] == Progress(300, 300, 3, 3)


def test_a_raising_callback_aborts_the_save_and_leaves_nothing(tmp_path):
    prefix = str(tmp_path / "ckpt")
    fastckpt.save({"old": np.arange(3)}, prefix)
    before = sorted(os.listdir(tmp_path))

    def stop(p):
        raise KeyboardInterrupt

    big = {f"t{i}": np.ones(8 * MiB // 8) for i in range(64)}  # 512 MiB: long enough to be polled
    with pytest.raises(KeyboardInterrupt):
        fastckpt.save(big, prefix, durable=False, progress=stop)
    assert sorted(os.listdir(tmp_path)) == before
    assert fastckpt.load(prefix)["old"].tolist() == [0, 1, 2]


def test_progress_must_be_callable_and_blocking(tmp_path):
    for call in (
        lambda: fastckpt.save({"a": np.ones(2)}, str(tmp_path / "x"), progress=5),
        lambda: fastckpt.verify(str(tmp_path / "x"), progress="no"),
    ):
        with pytest.raises(fastckpt.InvalidArgumentError) as info:
            call()
        assert str(info.value).startswith("progress must be a callable taking a fastckpt.Progress, not ")
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        fastckpt.save({"a": np.ones(2)}, str(tmp_path / "x"), blocking=False, progress=print)
    assert str(info.value) == (
        "progress= reports a blocking save; an asynchronous save reports through its handle (done(), result())"
    )
    assert os.listdir(tmp_path) == []


def test_the_logger_reports_saves_and_restores(tmp_path, caplog):
    prefix = str(tmp_path / "ckpt")
    with caplog.at_level(logging.DEBUG, logger="fastckpt"):
        fastckpt.save({"a": np.ones(1000)}, prefix)
        fastckpt.load(prefix)
        saver = fastckpt.Saver({"a": np.ones(4)}, max_to_keep=1)
        saver.save(None, str(tmp_path / "s"), global_step=1)
        saver.save(None, str(tmp_path / "s"), global_step=2)
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "fastckpt"]
    info = [m for level, m in messages if level == "INFO"]
    assert info[0].startswith(f"saved {prefix}: 8000 bytes in ") and info[0].endswith(" GB/s)")
    assert info[1].startswith(f"restored {prefix}: 8000 bytes in ")
    assert info[2].startswith(f"saved {tmp_path / 's-1'}: 32 bytes in ")
    debug = [m for level, m in messages if level == "DEBUG"]
    assert f"saving 1 tensors to {prefix} (durable=True)" in debug
    assert f"removed old checkpoint {tmp_path / 's-1'} (max_to_keep)" in debug
    assert f"committed: the state file {tmp_path / 'checkpoint'} names {tmp_path / 's-2'}" in debug


def test_the_logger_is_silent_by_default():
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("fastckpt").handlers)


# -- the command line -----------------------------------------------------------------------


def _run_in_terminal(args, env=None):
    """Runs `python -m fastckpt ARGS` with stderr on a pseudo-terminal; returns (rc, stdout, tty text)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal's size
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=slave, env=dict(os.environ, **(env or {}))
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break  # the child closed its end
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    out = proc.stdout.read().decode()
    proc.stdout.close()
    rc = proc.wait(timeout=60)
    os.close(master)
    return rc, out, b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("big") / "ckpt")
    fastckpt.save({f"t{i}": np.ones(32 * MiB // 8) for i in range(24)}, prefix, durable=False)
    return prefix


def test_verify_draws_a_tqdm_bar_on_a_terminal(big_checkpoint):
    rc, out, tty = _run_in_terminal(["-m", "fastckpt", "verify", "--threads", "1", big_checkpoint])
    assert rc == 0, tty
    assert out.endswith("OK: every tensor verified\n")
    assert "verify: 100%" in tty and "768M/768M" in tty and "24/24 tensors" in tty, tty


def test_verify_draws_a_plain_bar_without_tqdm(big_checkpoint):
    script = (
        "import sys; sys.modules['tqdm'] = None; from fastckpt.cli import main; "
        f"sys.exit(main(['verify', '--threads', '1', {big_checkpoint!r}]))"
    )
    rc, out, tty = _run_in_terminal(["-c", script])
    assert rc == 0, tty
    assert out.endswith("OK: every tensor verified\n")
    assert "verify: 100.0% 768.0 MiB/768.0 MiB " in tty and "(24/24 tensors)" in tty, tty


def test_verify_is_quiet_when_stderr_is_not_a_terminal(big_checkpoint):
    proc = subprocess.run(
        [sys.executable, "-m", "fastckpt", "verify", big_checkpoint], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0
    assert proc.stderr == ""
    assert proc.stdout.endswith("OK: every tensor verified\n")


def test_ls_tree_shows_bytes_per_subtree(tmp_path):
    prefix = str(tmp_path / "ckpt")
    fastckpt.save(
        {
            "model": {
                "enc": {"w": np.ones((4, 4), np.float32), "b": np.ones(4, np.float32)},
                "dec": {"w": np.ones(100)},
            },
            "optim": {"m": np.ones(1000, np.float32), "step": 3},
        },
        prefix,
    )
    proc = subprocess.run(
        [sys.executable, "-m", "fastckpt", "ls", "--tree", prefix], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    structure_line = lines.pop(0)
    assert structure_line.startswith("_FASTCKPT_STRUCTURE  ")
    assert lines == [
        "model/  880 B  3 tensors",
        "  dec/  800 B  1 tensor",
        "    w  800 B  float64 [100]",
        "  enc/  80 B  2 tensors",
        "    b  16 B  float32 [4]",
        "    w  64 B  float32 [4, 4]",
        "optim/  4.01 KB  2 tensors",
        "  m  4.00 KB  float32 [1000]",
        "  step  8 B  int64 []",
        lines[-1],
    ]
    assert lines[-1].startswith("6 tensors, ")
    proc = subprocess.run(
        [sys.executable, "-m", "fastckpt", "ls", "--tree", "--depth", "1", prefix],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.splitlines()[1:3] == ["model/  880 B  3 tensors", "optim/  4.01 KB  2 tensors"]
    proc = subprocess.run(
        [sys.executable, "-m", "fastckpt", "ls", "--tree", "--json", prefix],
        capture_output=True,
        text=True,
        timeout=120,
    )
    tree = json.loads(proc.stdout)["tree"]
    assert (tree["bytes"], tree["tensors"]) == (sum(c["bytes"] for c in tree["children"]), 6)
    model = next(c for c in tree["children"] if c["name"] == "model")
    assert model == {
        "name": "model",
        "bytes": 880,
        "tensors": 3,
        "children": [
            {
                "name": "dec",
                "bytes": 800,
                "tensors": 1,
                "children": [{"name": "w", "bytes": 800, "tensors": 1, "dtype": "float64", "shape": [100]}],
            },
            {
                "name": "enc",
                "bytes": 80,
                "tensors": 2,
                "children": [
                    {"name": "b", "bytes": 16, "tensors": 1, "dtype": "float32", "shape": [4]},
                    {"name": "w", "bytes": 64, "tensors": 1, "dtype": "float32", "shape": [4, 4]},
                ],
            },
        ],
    }


def test_ls_tree_keeps_a_tensor_and_a_scope_of_one_name_apart(tmp_path):
    prefix = str(tmp_path / "ckpt")
    fastckpt.save({"a": np.ones(2), "a/b": np.ones(3)}, prefix)
    proc = subprocess.run(
        [sys.executable, "-m", "fastckpt", "ls", "--tree", prefix], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.splitlines() == [
        "a/  24 B  1 tensor",
        "  b  24 B  float64 [3]",
        "a  16 B  float64 [2]",
        "2 tensors, 40 bytes (40 B)",
    ]


def test_convert_and_diff_report_progress(tmp_path):
    state = _state()
    total = sum(a.nbytes for a in state.values())
    src = str(tmp_path / "ckpt")
    fastckpt.save(state, src)
    calls, cb = _recorder()
    fastckpt.convert(src, str(tmp_path / "out.safetensors"), max_piece_bytes=MiB, progress=cb)
    _check_calls(calls, total, len(state))
    calls, cb = _recorder()
    result = fastckpt.diff(src, str(tmp_path / "out.safetensors"), values=True, progress=cb)
    assert result.same
    _check_calls(calls, total, len(state))


def test_convert_draws_a_bar_on_a_terminal(big_checkpoint, tmp_path):
    rc, out, tty = _run_in_terminal(["-m", "fastckpt", "convert", big_checkpoint, str(tmp_path / "o.npz")])
    assert rc == 0, tty
    assert "convert: 100%" in tty and "768M/768M" in tty and "24/24 tensors" in tty, tty
    proc = subprocess.run(
        [sys.executable, "-m", "fastckpt", "diff", big_checkpoint, str(tmp_path / "o.npz")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stderr == ""
