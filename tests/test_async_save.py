"""Asynchronous saves: ``save(..., blocking=False)`` and
``Saver.save(..., blocking=False)``: the snapshot, the handle, ordering,
backpressure, errors, and interpreter exit."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from sim_device import SimDeviceArray

import fastckpt
from fastckpt import _background, _native
from fastckpt.writer import prepare_items

MiB = 1 << 20


def test_returns_after_the_snapshot_and_later_changes_are_not_saved(tmp_path):
    x = np.random.default_rng(0).standard_normal(4 * MiB).astype(np.float32)
    expected = x.copy()
    handle = fastckpt.save({"x": x, "step": np.int64(7)}, tmp_path / "ck", blocking=False)
    assert isinstance(handle, fastckpt.AsyncSave)
    x[:] = -1.0  # the caller's arrays are free once save() returns
    result = handle.result(timeout=60)
    assert handle.done() and handle.wait(0) and handle.exception() is None
    assert isinstance(result, fastckpt.SaveResult) and result.nbytes == x.nbytes + 8
    assert result.files[-1] == str(tmp_path / "ck.index")
    assert handle.snapshot_seconds > 0
    back = fastckpt.load(tmp_path / "ck")
    assert np.array_equal(back["x"], expected) and back["step"] == 7


def test_async_files_are_byte_identical_to_a_blocking_save(tmp_path):
    values = {
        f"layer{i}": np.random.default_rng(i).standard_normal((257, 31 + i)).astype(np.float32) for i in range(20)
    }
    fastckpt.save(values, tmp_path / "sync", num_shards=2)
    fastckpt.save(values, tmp_path / "async", num_shards=2, blocking=False).result(timeout=60)
    for suffix in (".index", ".data-00000-of-00002", ".data-00001-of-00002"):
        assert (tmp_path / ("sync" + suffix)).read_bytes() == (tmp_path / ("async" + suffix)).read_bytes()


def test_saves_queue_in_call_order(tmp_path):
    gate = threading.Event()
    blocker = _background.AsyncSave("blocker")
    _background.submit(blocker, gate.wait)  # occupies the background thread
    handles = [fastckpt.save({"v": np.full(1000, i)}, tmp_path / f"ck{i}", blocking=False) for i in range(3)]
    assert not handles[0].wait(0.2) and not any(h.done() for h in handles)
    assert not (tmp_path / "ck0.index").exists()  # nothing is committed before its turn
    with pytest.raises(TimeoutError, match="did not finish within 0.01 s"):
        handles[0].result(timeout=0.01)
    assert len(fastckpt._background.pending_saves()) == 4
    gate.set()
    assert fastckpt.wait_for_pending_saves(timeout=60)
    finished = [os.stat(tmp_path / f"ck{i}.index").st_mtime_ns for i in range(3)]
    assert finished == sorted(finished)
    assert [fastckpt.load(tmp_path / f"ck{i}")["v"][0] for i in range(3)] == [0, 1, 2]


def test_background_error_is_reraised_by_result(tmp_path):
    fastckpt.save({"w": np.ones(10)}, tmp_path / "ck")  # an earlier checkpoint
    old_index = (tmp_path / "ck.index").read_bytes()
    gate = threading.Event()
    blocker = _background.AsyncSave("blocker")
    _background.submit(blocker, gate.wait)
    handle = fastckpt.save({"w": np.zeros(3 * MiB)}, tmp_path / "ck", blocking=False)
    _native.testing.arm_fault("write", 1, errno.EIO)
    try:
        gate.set()
        assert handle.wait(60)
    finally:
        _native.testing.disarm_faults()
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        handle.result()
    assert info.value.errno == errno.EIO and "ck.data-00000-of-00001" in str(info.value)
    assert isinstance(handle.exception(), fastckpt.CheckpointIOError)
    assert (tmp_path / "ck.index").read_bytes() == old_index
    assert sorted(os.listdir(tmp_path)) == ["ck.data-00000-of-00001", "ck.index"]
    assert fastckpt.load(tmp_path / "ck")["w"].tolist() == [1.0] * 10


def test_snapshot_error_is_raised_by_the_call(tmp_path, sim_device):
    sim_device(fail_copy=0)
    with pytest.raises(fastckpt.CudaError, match="copying tensor 'x'.*CUDA_ERROR_ILLEGAL_ADDRESS"):
        fastckpt.save({"x": SimDeviceArray(np.ones(100))}, tmp_path / "ck", blocking=False)
    assert fastckpt.wait_for_pending_saves(timeout=60)
    assert os.listdir(tmp_path) == []


def test_failed_snapshot_cleans_up_at_once_behind_a_busy_writer(tmp_path, sim_device):
    # The background thread is busy with an earlier save: the failed save's
    # temporary files and staging buffers must go when the call raises, not
    # when the background thread gets to it.
    release = threading.Event()
    busy = _background.AsyncSave(str(tmp_path / "earlier"))
    _background.submit(busy, lambda: release.wait(60))
    try:
        sim_device(fail_copy=3)
        with pytest.raises(fastckpt.CudaError, match="CUDA_ERROR_ILLEGAL_ADDRESS"):
            fastckpt.save({"x": SimDeviceArray(np.ones(4 << 20 >> 3))}, tmp_path / "ck", blocking=False)
        assert os.listdir(tmp_path) == []
        assert _native.staging_stats()["lent"] == 0
        assert _background.pending_saves() == [busy]
    finally:
        release.set()
    assert busy.result(timeout=60) is True


def test_device_arrays_are_snapshotted_before_return(tmp_path, sim_device):
    sim_device(latency_us=500)
    x = np.random.default_rng(1).standard_normal(3 * MiB).astype(np.float32)
    arr = SimDeviceArray(x)
    handle = fastckpt.save({"x": arr}, tmp_path / "ck", blocking=False)
    arr.peek()[:] = 0  # "the training step overwrites the weights"
    handle.result(timeout=60)
    assert np.array_equal(fastckpt.load(tmp_path / "ck")["x"], x)


def test_snapshot_larger_than_the_budget_blocks_in_proportion(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCKPT_STAGING_MB", "1")
    x = np.random.default_rng(2).standard_normal(32 * MiB // 4).astype(np.float32)
    items, _keep = prepare_items({"x": x})
    _native.configure_staging(MiB, 64 * MiB, 64 * MiB)
    job = _native.SaveJob(str(tmp_path / "ck"), items, threads=2, durable=False, snapshot_host=True, max_buffers=4)
    finisher = threading.Thread(target=job.finish)
    finisher.start()
    job.snapshot()
    progress = job.progress()
    # All but at most the 4 buffers of the budget were written before the snapshot completed.
    assert progress["staged_bytes"] == x.nbytes
    assert progress["written_bytes"] >= x.nbytes - 4 * MiB
    finisher.join()
    assert np.array_equal(fastckpt.load(tmp_path / "ck")["x"], x)


def test_public_budget_bounds_the_staging_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCKPT_STAGING_MB", "1")
    _native.trim_staging()
    before = _native.staging_stats()["allocations"]
    x = np.random.default_rng(3).standard_normal(24 * MiB // 4).astype(np.float32)
    fastckpt.save({"x": x}, tmp_path / "ck", blocking=False, host_memory_budget=3 * MiB).result(timeout=60)
    assert _native.staging_stats()["allocations"] - before <= 3
    assert np.array_equal(fastckpt.load(tmp_path / "ck")["x"], x)
    with pytest.raises(fastckpt.InvalidArgumentError, match="host_memory_budget must be a positive number of bytes"):
        fastckpt.save({"x": x}, tmp_path / "ck2", blocking=False, host_memory_budget=0)


def test_saver_async_commits_in_order_and_applies_retention(tmp_path):
    v = {"w": np.zeros((100, 100), np.float32), "b": np.zeros(10)}
    saver = fastckpt.Saver(v, max_to_keep=2)
    handles = []
    for step in range(4):
        v["w"][:] = step
        handles.append(saver.save(None, str(tmp_path / "model"), global_step=step, blocking=False))
    v["w"][:] = 99
    assert [h.result(timeout=60) for h in handles] == [str(tmp_path / f"model-{s}") for s in range(4)]
    state = fastckpt.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == str(tmp_path / "model-3")
    assert list(state.all_model_checkpoint_paths) == [str(tmp_path / "model-2"), str(tmp_path / "model-3")]
    assert not (tmp_path / "model-0.index").exists() and not (tmp_path / "model-1.meta").exists()
    for step in (2, 3):
        assert fastckpt.load(tmp_path / f"model-{step}")["w"][0, 0] == step
    assert saver.last_checkpoints == [str(tmp_path / "model-2"), str(tmp_path / "model-3")]


def test_saver_async_meta_graph_is_the_one_of_the_call(tmp_path):
    import threading

    from fastckpt import _background

    v = {"w": np.zeros((4, 5), np.float32), "b": np.zeros(10)}
    fastckpt.Saver(dict(v)).save(None, str(tmp_path / "blocking"))
    saver = fastckpt.Saver(dict(v))
    release = threading.Event()
    blocker = _background.AsyncSave("blocker")
    _background.submit(blocker, lambda: release.wait(60))  # holds the background thread
    try:
        handle = saver.save(None, str(tmp_path / "async"), blocking=False)
        saver.var_list["w"] = np.zeros(7, np.float64)  # changed before the save commits
        assert not handle.done()
    finally:
        release.set()
    handle.result(timeout=60)
    blocker.result(timeout=60)
    assert (tmp_path / "async.meta").read_bytes() == (tmp_path / "blocking.meta").read_bytes()


def test_saver_async_failure_leaves_the_state_file(tmp_path):
    v = {"w": np.ones(3 * MiB // 8)}
    saver = fastckpt.Saver(v)
    saver.save(None, str(tmp_path / "model"), global_step=1)
    state_before = (tmp_path / "checkpoint").read_bytes()
    _native.testing.arm_fault("rename", 0, errno.EACCES)
    try:
        handle = saver.save(None, str(tmp_path / "model"), global_step=2, blocking=False)
        assert handle.wait(60)
    finally:
        _native.testing.disarm_faults()
    with pytest.raises(fastckpt.CheckpointIOError):
        handle.result()
    assert (tmp_path / "checkpoint").read_bytes() == state_before
    assert not (tmp_path / "model-2.index").exists()
    assert saver.last_checkpoints == [str(tmp_path / "model-1")]


def _run(script: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=str(tmp_path), capture_output=True, text=True, timeout=120
    )


def test_pending_saves_complete_at_interpreter_exit(tmp_path):
    proc = _run(
        f"""
        import numpy as np, fastckpt
        x = np.arange(16 << 20, dtype=np.float32)
        fastckpt.save({{"x": x}}, {str(tmp_path / "ck")!r}, blocking=False)
        fastckpt.save({{"y": x[:10]}}, {str(tmp_path / "ck2")!r}, blocking=False)
        """,
        tmp_path,
    )  # exits right away, with both saves pending
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert fastckpt.verify(tmp_path / "ck").ok and fastckpt.verify(tmp_path / "ck2").ok
    assert fastckpt.load(tmp_path / "ck")["x"][-1] == (16 << 20) - 1


def test_unobserved_background_failure_is_reported_at_exit(tmp_path):
    (tmp_path / "ro").mkdir()
    proc = _run(
        f"""
        import errno, numpy as np, fastckpt
        from fastckpt import _native
        _native.testing.arm_fault("sync", 0, errno.EIO)
        fastckpt.save({{"x": np.ones(100)}}, {str(tmp_path / "ro" / "ck")!r}, blocking=False)
        """,
        tmp_path,
    )
    assert proc.returncode == 0
    assert "fastckpt: background save of" in proc.stderr and "failed: CheckpointIOError" in proc.stderr
    assert not (tmp_path / "ro" / "ck.index").exists()


def test_main_thread_keeps_running_python_during_the_background_write(tmp_path):
    """The background write holds no GIL: a pure-Python loop on the main thread
    advances while it runs (the speed of that loop is measured in
    benchmarks/bench_async.py, not here)."""
    x = np.random.default_rng(4).standard_normal(64 * MiB // 4).astype(np.float32)
    handle = fastckpt.save({"x": x}, tmp_path / "ck", blocking=False, durable=True)
    iterations = 0
    while not handle.done():
        iterations += 1
    handle.result()
    assert iterations > 1000


def test_blocking_saver_save_queues_behind_its_background_saves(tmp_path):
    gate = threading.Event()
    blocker = _background.AsyncSave("blocker")
    _background.submit(blocker, gate.wait)
    v = {"w": np.zeros(10)}
    saver = fastckpt.Saver(v, max_to_keep=5)
    first = saver.save(None, str(tmp_path / "model"), global_step=1, blocking=False)
    threading.Timer(0.3, gate.set).start()
    saver.save(None, str(tmp_path / "model"), global_step=2)  # waits for step 1 to commit
    assert first.done()
    state = fastckpt.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == str(tmp_path / "model-2")
    assert list(state.all_model_checkpoint_paths) == [str(tmp_path / "model-1"), str(tmp_path / "model-2")]


def test_forked_child_does_not_inherit_pending_saves(tmp_path):
    # A child forked while a save is pending (a data-loader worker, say) has
    # no background thread: it must not wait for the parent's saves at exit,
    # and its own saves must work.
    code = textwrap.dedent(f"""
        import os, sys, threading
        import numpy as np
        import fastckpt
        from fastckpt import _background
        release = threading.Event()
        busy = _background.AsyncSave("busy")
        _background.submit(busy, lambda: release.wait(60))
        h = fastckpt.save({{"w": np.arange(10.0)}}, {str(tmp_path)!r} + "/parent", blocking=False)
        pid = os.fork()
        if pid == 0:
            assert fastckpt.pending_saves() == [] if hasattr(fastckpt, "pending_saves") else True
            assert _background.pending_saves() == []
            c = fastckpt.save({{"w": np.arange(3.0)}}, {str(tmp_path)!r} + "/child", blocking=False)
            c.result(30)
            sys.exit(0)  # runs the exit hook: it must not wait for the parent's saves
        release.set()
        h.result(30)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastckpt.__file__))),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0", proc.stderr
    assert fastckpt.load(tmp_path / "child")["w"].tolist() == [0.0, 1.0, 2.0]
    assert fastckpt.load(tmp_path / "parent")["w"].tolist() == list(np.arange(10.0))
