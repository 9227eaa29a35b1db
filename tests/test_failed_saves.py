"""A save that fails, asynchronous or not, stops every thread before it lets
go of anything, and then lets go of everything at once.

* A failure racing the snapshot (a write fails while the snapshot is still
  copying into a staging buffer) must not release that buffer, nor return
  from ``finish()``, before the copy has stopped. The test hook
  ``arm_fill_delay`` holds one fill, buffer in hand, until the save has
  failed and then a little longer: without the fix the job releases the
  buffer under the copy (a crash), so these scenarios run in a child process.
* Once ``finish()`` has returned with an error, the job holds no temporary
  file (visible or unlinked), no descriptor, no staging buffer and no
  reference to the caller's arrays, even while the job object (or the
  failed save's handle and traceback) is still alive.
* A snapshot short of staging memory makes progress by itself: a budget of
  one buffer, or buffers held by a save whose writer has not started, never
  deadlocks a save or a restore (child processes with a timeout, since the
  failure mode is a hang).
"""

from __future__ import annotations

import errno
import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import weakref

import numpy as np
import pytest

import fastckpt
from fastckpt import _background, _native
from fastckpt.writer import prepare_items

testing = _native.testing
MiB = 1 << 20
TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


@pytest.fixture(autouse=True)
def _disarm():
    testing.disarm_faults()
    yield
    testing.disarm_faults()


def run_child(script: str, *args: str, timeout: float = 120) -> dict:
    """Runs `script` in a fresh interpreter (this checkout's fastckpt and the
    test helpers importable); returns the JSON object it prints last."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    try:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"the child did not finish within {timeout} s (a deadlock?); stdout: {e.stdout!r}, stderr: {e.stderr!r}"
        )
    assert proc.returncode == 0, (
        f"the child exited with {proc.returncode} (negative: killed by that signal); stderr:\n{proc.stderr}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def open_files_under(directory) -> list:
    """Paths of this process's descriptors that point into `directory`
    (unlinked files included: readlink says '... (deleted)')."""
    out = []
    prefix = str(directory) + "/"
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the descriptor listdir itself used
        if target.startswith(prefix):
            out.append(target)
    return out


# -- a failure racing the snapshot ---------------------------------------------

RACE_NATIVE = """
import errno, json, sys, threading, time
import numpy as np
from fastckpt import _native
from fastckpt.writer import prepare_items
from sim_device import SimDeviceArray
MiB = 1 << 20
prefix, device = sys.argv[1], sys.argv[2] == "device"
_native.configure_staging(MiB, 64 * MiB, 64 * MiB)
if device:
    _native.testing.install_simulated_device()
x = np.arange(8 * MiB // 4, dtype=np.float32)
items, keep = prepare_items({"x": SimDeviceArray(x) if device else x})
job = _native.SaveJob(prefix, items, threads=2, durable=False, snapshot_host=True, max_buffers=4,
                      trace=True, fill_threads=2)
# The first write fails; the first fill holds its buffer until then, and 0.5 s more.
_native.testing.arm_fault("write", 0, errno.ENOSPC)
_native.testing.arm_fill_delay(0, 20.0, 0.5)
out = {}

def finish():
    try:
        job.finish()
        out["finish"] = None
    except Exception as e:
        out["finish"] = [type(e).__name__, getattr(e, "errno", None)]
    out["finish_returned_ns"] = time.monotonic_ns()
    out["fill_at_finish"] = _native.testing.fill_delay_state()
    out["lent_at_finish"] = _native.staging_stats()["lent"]
    out["held_at_finish"] = job.held_buffers()

t = threading.Thread(target=finish)
t.start()
try:
    job.snapshot()
    out["snapshot"] = None
except Exception as e:
    out["snapshot"] = [type(e).__name__, getattr(e, "errno", None)]
t.join()
out["trace"] = job.trace()
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["host", "device"])
def test_finish_waits_for_a_fill_still_running_when_a_write_fails(tmp_path, kind):
    """Asynchronous (snapshotting) job: the first write fails while the first
    fill still holds its staging buffer. finish() may only return once that
    fill has stopped, and only then release the buffers."""
    out = run_child(RACE_NATIVE, str(tmp_path / "ck"), kind)
    assert out["finish"] == ["CheckpointIOError", errno.ENOSPC]
    assert out["snapshot"] == ["CheckpointIOError", errno.ENOSPC]  # the job's first error
    # The held fill saw the failure, and was over before finish() returned.
    assert out["fill_at_finish"] == {
        "fills": out["fill_at_finish"]["fills"],
        "started": True,
        "saw_failure": True,
        "finished": True,
    }
    assert all(end <= out["finish_returned_ns"] for _kind, _t, _begin, end in out["trace"]), out["trace"]
    assert out["lent_at_finish"] == 0
    assert out["held_at_finish"] == 0
    assert os.listdir(tmp_path) == []


RACE_PUBLIC = """
import errno, json, os, sys
import numpy as np
import fastckpt
from fastckpt import _native
from sim_device import SimDeviceArray
MiB = 1 << 20
prefix, device = sys.argv[1], sys.argv[2] == "device"
os.environ["FASTCKPT_STAGING_MB"] = "1"
if device:
    _native.testing.install_simulated_device()
fastckpt.save({"x": np.ones(10)}, prefix)  # an earlier checkpoint at the same prefix
x = np.arange(8 * MiB // 4, dtype=np.float32)
_native.testing.arm_fault("write", 0, errno.ENOSPC)
_native.testing.arm_fill_delay(0, 20.0, 0.5)
out = {}
try:
    fastckpt.save({"x": SimDeviceArray(x) if device else x}, prefix, blocking=False, threads=2)
    out["save"] = None
except Exception as e:
    out["save"] = [type(e).__name__, getattr(e, "errno", None), str(e)]
out["drained"] = fastckpt.wait_for_pending_saves(timeout=60)
out["fill"] = _native.testing.fill_delay_state()
out["lent"] = _native.staging_stats()["lent"]
out["files"] = sorted(os.listdir(os.path.dirname(prefix)))
out["old"] = fastckpt.load(prefix)["x"].tolist()
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["host", "device"])
def test_async_save_whose_write_fails_during_the_snapshot(tmp_path, kind):
    """fastckpt.save(blocking=False): the write fails while the snapshot is
    still copying; the call raises that error, nothing is left behind and the
    earlier checkpoint at the prefix is intact."""
    out = run_child(RACE_PUBLIC, str(tmp_path / "ck"), kind)
    name, err, message = out["save"]
    assert (name, err) == ("CheckpointIOError", errno.ENOSPC)
    assert "ck.data-00000-of-00001" in message and os.strerror(errno.ENOSPC) in message
    assert out["drained"] is True
    assert out["fill"]["started"] and out["fill"]["saw_failure"] and out["fill"]["finished"]
    assert out["lent"] == 0
    assert out["files"] == ["ck.data-00000-of-00001", "ck.index"]
    assert out["old"] == [1.0] * 10


def test_snapshot_claimed_by_a_failed_job_never_starts(tmp_path):
    """A job that fails before its snapshot started (here: finish() after an
    abort) claims the snapshot: a later snapshot() returns the failure and
    reads nothing, and finish() did not wait for it."""
    x = np.arange(3 * MiB // 4, dtype=np.float32)
    items, _keep = prepare_items({"x": x})
    job = _native.SaveJob(
        str(tmp_path / "ck"), items, threads=2, durable=False, snapshot_host=True, max_buffers=2, trace=True
    )
    job.abort("stopped by the caller")
    with pytest.raises(fastckpt.FailedPreconditionError, match="stopped by the caller"):
        job.finish()
    with pytest.raises(fastckpt.FailedPreconditionError, match="stopped by the caller"):
        job.snapshot()
    assert job.progress()["staged_bytes"] == 0
    assert job.trace() == []
    assert job.held_buffers() == 0
    with pytest.raises(fastckpt.FailedPreconditionError, match="the save was already finished"):
        job.finish()
    assert os.listdir(tmp_path) == []


# -- a failed save lets go of everything ---------------------------------------

# (point, which call): the first data write, the index write (the last
# write), the index's fsync, the index's create, the first rename, the first
# close, the directory fsync.
FAILURES = [
    ("write", "first"),
    ("write", "last"),
    ("sync", "last"),
    ("create", "last"),
    ("rename", "first"),
    ("close", "first"),
    ("sync_dir", "first"),
]
FAILURE_IDS = ["data-write", "index-write", "index-fsync", "index-create", "rename", "close", "sync-dir"]
COUNT_ONLY = 10**9


def _skip_for(point: str, which: str, counts: int) -> int:
    return 0 if which == "first" else counts - 1


def _native_job(prefix: str, x: np.ndarray, snapshot_host: bool):
    items, _keep = prepare_items({"x": x})
    return _native.SaveJob(
        prefix,
        items,
        num_shards=1,
        threads=2,
        durable=True,
        task_bytes=1536 * 1024,
        snapshot_host=snapshot_host,
        max_buffers=2,
    )


def _run_native(prefix: str, x: np.ndarray, snapshot_host: bool, point: str, skip: int, err: int):
    """Creates the job (its data files), then arms the fault and runs it.
    Returns (job, error raised by finish() or None)."""
    job = _native_job(prefix, x, snapshot_host)
    testing.arm_fault(point, skip, err)
    try:
        try:
            job.snapshot()
        except fastckpt.CheckpointIOError as e:
            assert e.errno == err  # a write failed while the snapshot ran: the job's error
        try:
            job.finish()
            return job, None
        except fastckpt.CheckpointIOError as e:
            return job, e
    finally:
        testing.disarm_faults()


@pytest.mark.parametrize("snapshot_host", [False, True], ids=["in-place", "snapshot"])
@pytest.mark.parametrize("point,which", FAILURES, ids=FAILURE_IDS)
def test_failed_native_job_releases_files_memory_and_arrays(tmp_path, monkeypatch, point, which, snapshot_host):
    monkeypatch.setenv("FASTCKPT_STAGING_MB", "1")
    _native.configure_staging(MiB, 64 * MiB, 64 * MiB)
    x = np.arange(3 * MiB // 4, dtype=np.float32)
    (tmp_path / "count").mkdir()
    _job, error = _run_native(str(tmp_path / "count" / "ck"), x, snapshot_host, point, COUNT_ONLY, 0)
    assert error is None
    skip = _skip_for(point, which, testing.fault_hits())
    (tmp_path / "ck").mkdir()
    ref = weakref.ref(x)
    job, error = _run_native(str(tmp_path / "ck" / "ck"), x, snapshot_host, point, skip, errno.EIO)
    assert testing.fault_hits() >= skip + 1  # writers run in parallel
    assert isinstance(error, fastckpt.CheckpointIOError) and error.errno == errno.EIO
    # The job object is alive, and holds nothing.
    assert job.held_buffers() == 0
    assert open_files_under(tmp_path / "ck") == []
    assert os.listdir(tmp_path / "ck") == []
    assert _native.staging_stats()["lent"] == 0
    del x, error
    gc.collect()
    assert ref() is None, "the failed job still references the caller's array"
    del job


def _run_async(prefix, x: np.ndarray, point: str, skip: int, err: int):
    """Starts an asynchronous save whose write waits behind a blocker, arms
    the fault, lets the write run. Returns the finished handle."""
    gate = threading.Event()
    blocker = _background.AsyncSave("blocker")
    _background.submit(blocker, gate.wait)
    handle = fastckpt.save({"x": x}, prefix, num_shards=1, threads=2, blocking=False)
    testing.arm_fault(point, skip, err)
    try:
        gate.set()
        assert handle.wait(60)
    finally:
        testing.disarm_faults()
    return handle


@pytest.mark.parametrize("point,which", FAILURES, ids=FAILURE_IDS)
def test_failed_async_save_releases_files_memory_and_arrays(tmp_path, monkeypatch, point, which):
    """Through the public API: the handle (and the exception and traceback it
    holds) stays alive, yet the files are gone and closed and the array is free."""
    monkeypatch.setenv("FASTCKPT_STAGING_MB", "1")
    x = np.arange(3 * MiB // 4, dtype=np.float32)
    (tmp_path / "count").mkdir()
    assert _run_async(tmp_path / "count" / "ck", x, point, COUNT_ONLY, 0).exception() is None
    skip = _skip_for(point, which, testing.fault_hits())
    (tmp_path / "ck").mkdir()
    ref = weakref.ref(x)
    handle = _run_async(tmp_path / "ck" / "ck", x, point, skip, errno.EIO)
    error = handle.exception()
    assert isinstance(error, fastckpt.CheckpointIOError) and error.errno == errno.EIO
    assert open_files_under(tmp_path / "ck") == []
    assert os.listdir(tmp_path / "ck") == []
    assert _native.staging_stats()["lent"] == 0
    del x
    gc.collect()
    assert ref() is None, "the failed save still references the caller's array"
    assert handle.exception() is error  # still alive, still failed


def test_disk_space_comes_back_when_an_async_save_fails_on_a_full_disk(tiny_tmpfs):
    """A real ENOSPC: the space the failed save took is free again as soon as
    it has failed, while its handle is still referenced."""
    free_before = os.statvfs(tiny_tmpfs).f_bfree
    x = np.random.default_rng(0).standard_normal(6 * MiB // 8)  # 6 MiB on a 4 MiB disk
    gate = threading.Event()
    blocker = _background.AsyncSave("blocker")
    _background.submit(blocker, gate.wait)  # the write starts after the snapshot
    handle = fastckpt.save({"x": x}, tiny_tmpfs / "ck", blocking=False, durable=False)
    gate.set()
    assert handle.wait(60)
    error = handle.exception()
    assert isinstance(error, fastckpt.CheckpointIOError) and error.errno == errno.ENOSPC
    assert os.listdir(tiny_tmpfs) == []
    assert open_files_under(tiny_tmpfs) == []
    assert os.statvfs(tiny_tmpfs).f_bfree == free_before
    # And the disk is usable at once.
    fastckpt.save({"y": np.ones(1000)}, tiny_tmpfs / "small")
    assert fastckpt.load(tiny_tmpfs / "small")["y"].tolist() == [1.0] * 1000


# -- short of staging memory: progress, not deadlock -------------------------

ONE_BUFFER = """
import json, os, sys
os.environ["FASTCKPT_STAGING_MB"] = "1"
os.environ["FASTCKPT_HOST_BUDGET_MB"] = "1"
import numpy as np
import fastckpt
from fastckpt import _native
from sim_device import SimDeviceArray, new_sim_array
what, prefix = sys.argv[1], sys.argv[2]
_native.testing.install_simulated_device()
x = np.arange(6 * (1 << 20) // 4, dtype=np.float32)
if what == "save":
    fastckpt.save({"x": SimDeviceArray(x)}, prefix, threads=3)
elif what == "async-save":
    fastckpt.save({"x": SimDeviceArray(x)}, prefix, threads=3, blocking=False).result(60)
else:
    fastckpt.save({"x": x}, prefix)
    out = fastckpt.load(prefix, device="cuda:0", array_type=new_sim_array, threads=3)
    assert np.array_equal(out["x"].peek(), x)
back = fastckpt.load(prefix)["x"]
print(json.dumps({"equal": bool(np.array_equal(back, x)), "lent": _native.staging_stats()["lent"]}))
"""


@pytest.mark.parametrize("what", ["save", "async-save", "load"])
def test_device_pipeline_with_a_one_buffer_budget(tmp_path, what):
    """A host budget of one staging buffer: the device save's snapshot must
    hand over its copy in flight before it waits for a buffer, and a restore's
    worker must retire its own buffer in flight; otherwise each waits for the
    buffer it holds."""
    out = run_child(ONE_BUFFER, what, str(tmp_path / "ck"), timeout=60)
    assert out == {"equal": True, "lent": 0}


STARVED_SNAPSHOT = """
import json, os, sys, threading
import numpy as np
import fastckpt
from fastckpt import _background, _native
MiB = 1 << 20
prefix = sys.argv[1]
os.environ["FASTCKPT_STAGING_MB"] = "1"
os.environ["FASTCKPT_HOST_BUDGET_MB"] = "4"
gate = threading.Event()
blocker = _background.AsyncSave("blocker")
_background.submit(blocker, gate.wait)  # no save's write can start before the gate opens
a = np.arange(4 * MiB // 4, dtype=np.float32)
b = np.arange(12 * MiB // 4, dtype=np.float32) * 2
# A's snapshot fills the whole budget (4 buffers) and returns; its buffers
# stay filled until its write runs, behind the blocker.
ha = fastckpt.save({"a": a}, prefix + "-a", blocking=False, threads=2)
# B needs buffers: none is free, and no writer of B runs. B's snapshot must
# write its own tasks to get through.
hb = fastckpt.save({"b": b}, prefix + "-b", blocking=False, threads=2)
gate.set()
ha.result(60)
hb.result(60)
ok = (np.array_equal(fastckpt.load(prefix + "-a")["a"], a) and
      np.array_equal(fastckpt.load(prefix + "-b")["b"], b))
print(json.dumps({"ok": bool(ok), "lent": _native.staging_stats()["lent"]}))
"""


def test_snapshot_completes_while_the_budget_is_held_by_a_queued_save(tmp_path):
    out = run_child(STARVED_SNAPSHOT, str(tmp_path / "ck"), timeout=60)
    assert out == {"ok": True, "lent": 0}


def test_snapshot_larger_than_the_budget_writes_itself_when_no_writer_runs(tmp_path, monkeypatch):
    """The backpressure of an asynchronous save does not depend on its writer:
    with the background thread busy, the snapshot writes all but a budget's
    worth itself and returns."""
    monkeypatch.setenv("FASTCKPT_STAGING_MB", "1")
    gate = threading.Event()
    blocker = _background.AsyncSave("blocker")
    _background.submit(blocker, gate.wait)
    x = np.random.default_rng(1).standard_normal(16 * MiB // 8)
    done = []
    saver = threading.Thread(
        target=lambda: done.append(
            fastckpt.save({"x": x}, tmp_path / "ck", blocking=False, threads=2, host_memory_budget=3 * MiB)
        )
    )
    saver.start()
    saver.join(60)
    alive = saver.is_alive()
    gate.set()
    saver.join(60)
    assert not alive, "the snapshot waited for a writer that could not run"
    handle = done[0]
    handle.result(60)
    assert np.array_equal(fastckpt.load(tmp_path / "ck")["x"], x)
