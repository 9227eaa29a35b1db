"""The handle of an asynchronous save is a ``concurrent.futures.Future``, and a
finished save (committed, failed or cancelled) leaves nothing of the caller's
alive: not its arrays, not the native job, not a traceback."""

from __future__ import annotations

import concurrent.futures
import errno
import gc
import os
import threading
import weakref

import numpy as np
import pytest

import fastckpt
from fastckpt import _background, _native, writer

MiB = 1 << 20


@pytest.fixture
def hold_background():
    """Occupies the background thread until the returned event is set, so that
    saves started meanwhile stay queued. Yields (started, release)."""
    started, release = threading.Event(), threading.Event()

    def block() -> str:
        started.set()
        release.wait(60)
        return "blocker"

    blocker: _background.AsyncSave[str] = _background.AsyncSave("blocker")
    _background.submit(blocker, block)
    assert started.wait(60)
    try:
        yield blocker, release
    finally:
        release.set()
        assert blocker.result(timeout=60) == "blocker"


@pytest.fixture
def job_refs(monkeypatch):
    """Weak references to every native SaveJob that writer.save creates."""
    refs = []
    real = writer.start_job

    def spy(*args, **kwargs):
        job = real(*args, **kwargs)
        refs.append(weakref.ref(job))
        return job

    monkeypatch.setattr(writer, "start_job", spy)
    return refs


@pytest.fixture(autouse=True)
def _no_faults():
    _native.testing.disarm_faults()
    yield
    _native.testing.disarm_faults()


# -- the Future protocol --------------------------------------------------------


def test_handle_is_a_future_and_callbacks_see_it_finished(tmp_path):
    seen = []

    def callback(f):
        seen.append((f, f.done(), f.running(), f.result(0).prefix))

    x = np.arange(1000, dtype=np.float32)
    handle = fastckpt.save({"x": x}, tmp_path / "ck", blocking=False)
    assert isinstance(handle, concurrent.futures.Future)
    assert isinstance(handle, fastckpt.AsyncSave)
    handle.add_done_callback(callback)
    result = handle.result(timeout=60)
    assert isinstance(result, fastckpt.SaveResult) and result.nbytes == x.nbytes
    assert fastckpt.wait_for_pending_saves(timeout=60)  # callbacks have run by now
    assert seen == [(handle, True, False, str(tmp_path / "ck"))]
    late = []
    handle.add_done_callback(late.append)  # already finished: called at once, on this thread
    assert late == [handle]
    assert handle.done() and not handle.running() and not handle.cancelled()
    assert handle.wait(0) and handle.exception() is None
    assert repr(handle) == f"<fastckpt.AsyncSave '{tmp_path / 'ck'}' done>"


def test_wait_and_as_completed_take_the_handles(tmp_path):
    handles = [fastckpt.save({"v": np.full(100, i)}, tmp_path / f"ck{i}", blocking=False) for i in range(3)]
    done, not_done = concurrent.futures.wait(handles, timeout=60)
    assert done == set(handles) and not not_done
    finished = list(concurrent.futures.as_completed(handles, timeout=60))
    assert sorted(map(id, finished)) == sorted(map(id, handles))
    assert [fastckpt.load(tmp_path / f"ck{i}")["v"][0] for i in range(3)] == [0, 1, 2]


def test_running_reports_the_background_thread_and_a_running_save_cannot_be_cancelled(tmp_path, hold_background):
    blocker, release = hold_background
    assert blocker.running() and not blocker.done()
    assert blocker.cancel() is False
    assert repr(blocker) == "<fastckpt.AsyncSave 'blocker' running>"
    queued = fastckpt.save({"w": np.ones(10)}, tmp_path / "ck", blocking=False)
    assert not queued.running() and not queued.done()
    assert repr(queued) == f"<fastckpt.AsyncSave '{tmp_path / 'ck'}' pending>"
    release.set()
    assert queued.result(timeout=60).prefix == str(tmp_path / "ck")
    assert queued.cancel() is False and not queued.cancelled()


def test_timeout_is_a_fastckpt_error_and_a_futures_timeout(tmp_path, hold_background):
    handle = fastckpt.save({"w": np.ones(10)}, tmp_path / "ck", blocking=False)
    for wait in (handle.result, handle.exception):
        with pytest.raises(fastckpt.DeadlineExceededError) as info:
            wait(0.01)
        assert str(info.value) == f"the save of '{tmp_path / 'ck'}' did not finish within 0.01 s"
        assert isinstance(info.value, fastckpt.FastCkptError)
        assert isinstance(info.value, concurrent.futures.TimeoutError)
        assert isinstance(info.value, TimeoutError)
    assert handle.wait(0.01) is False


def test_cancelling_a_queued_save_writes_nothing(tmp_path, hold_background, job_refs):
    blocker, release = hold_background
    seen = []
    x = np.arange(3 * MiB // 4, dtype=np.float32)
    x_ref = weakref.ref(x)
    handle = fastckpt.save({"x": x}, tmp_path / "ck", blocking=False)
    del x
    handle.add_done_callback(lambda f: seen.append((f, f.cancelled(), fastckpt.wait_for_pending_saves(0))))
    assert any(name.startswith("ck.") for name in os.listdir(tmp_path))  # temporary files exist
    assert handle in _background.pending_saves()
    assert handle.cancel() is True
    assert handle.cancel() is True  # idempotent
    assert handle.cancelled() and handle.done() and not handle.running()
    # The callback ran on this thread once the save was off the pending list
    # (the blocker is still pending: wait_for_pending_saves(0) is False).
    assert seen == [(handle, True, False)]
    assert handle not in _background.pending_saves()
    assert os.listdir(tmp_path) == []  # the temporary files are gone
    gc.collect()
    assert x_ref() is None and job_refs[0]() is None  # nothing of the save is kept
    for wait in (handle.result, handle.exception):
        with pytest.raises(fastckpt.CancelledError) as info:
            wait(0)
        assert str(info.value) == (
            f"the save of '{tmp_path / 'ck'}' was cancelled before it started; nothing of it was written"
        )
        assert isinstance(info.value, concurrent.futures.CancelledError)
    done, _ = concurrent.futures.wait([handle], timeout=0)
    assert done == {handle}
    assert repr(handle) == f"<fastckpt.AsyncSave '{tmp_path / 'ck'}' cancelled>"
    release.set()
    assert blocker.result(timeout=60) == "blocker"
    assert fastckpt.wait_for_pending_saves(timeout=60)
    assert os.listdir(tmp_path) == []
    # The queue goes on: a later save commits.
    fastckpt.save({"w": np.ones(4)}, tmp_path / "ck", blocking=False).result(timeout=60)
    assert fastckpt.load(tmp_path / "ck")["w"].tolist() == [1.0] * 4


def test_cancelled_saver_save_leaves_the_state_file_and_later_saves_go_on(tmp_path, hold_background):
    _blocker, release = hold_background
    v = {"w": np.zeros(10)}
    saver = fastckpt.Saver(v, max_to_keep=5)
    first = saver.save(None, str(tmp_path / "model"), global_step=1, blocking=False)
    v["w"][:] = 2
    second = saver.save(None, str(tmp_path / "model"), global_step=2, blocking=False)
    assert second.cancel() is True
    release.set()
    assert first.result(timeout=60) == str(tmp_path / "model-1")
    v["w"][:] = 3
    saver.save(None, str(tmp_path / "model"), global_step=3)  # waits for its pending saves
    state = fastckpt.get_checkpoint_state(str(tmp_path))
    assert list(state.all_model_checkpoint_paths) == [str(tmp_path / "model-1"), str(tmp_path / "model-3")]
    assert saver.last_checkpoints == [str(tmp_path / "model-1"), str(tmp_path / "model-3")]
    assert not any(name.startswith("model-2") for name in os.listdir(tmp_path))
    assert fastckpt.load(tmp_path / "model-3")["w"][0] == 3


def test_a_done_callback_cannot_wait_for_a_later_save(tmp_path, hold_background):
    _blocker, release = hold_background
    outcome = []
    first = fastckpt.save({"a": np.ones(3)}, tmp_path / "a", blocking=False)
    second = fastckpt.save({"b": np.ones(3)}, tmp_path / "b", blocking=False)

    def callback(f):
        for wait in (second.result, fastckpt.wait_for_pending_saves):
            try:
                wait()
            except fastckpt.FailedPreconditionError as e:
                outcome.append(str(e))
        outcome.append(second.wait(0))  # a poll is fine

    first.add_done_callback(callback)
    release.set()
    assert second.result(timeout=60).prefix == str(tmp_path / "b")
    assert outcome == [
        f"cannot wait for the save of '{tmp_path / 'b'}' on the background thread (in a done "
        "callback): saves run one at a time on that thread, so it would never finish",
        "cannot wait for pending saves on the background thread (in a done callback): saves run "
        "one at a time on that thread, so they would never finish",
        False,
    ]


# -- what a finished save keeps alive ---------------------------------------------


def _start(tmp_path, name: str, release: threading.Event) -> "tuple[fastckpt.AsyncSave, weakref.ref]":
    """Starts an asynchronous save of an array only this frame references, then
    lets the background thread go on (held until the snapshot is complete, so
    that an injected write failure reaches the background write, not the
    snapshot)."""
    x = np.arange(MiB, dtype=np.float32)
    handle = fastckpt.save({"x": x, "step": np.int64(3)}, tmp_path / name, blocking=False)
    release.set()
    return handle, weakref.ref(x)


def test_a_failed_save_frees_the_arrays_and_the_job_while_the_handle_is_held(tmp_path, job_refs, hold_background):
    _native.testing.arm_fault("write", 0, errno.ENOSPC)
    handle, x_ref = _start(tmp_path, "ck", hold_background[1])
    assert handle.wait(60)
    _native.testing.disarm_faults()
    gc.collect()
    assert x_ref() is None, "the failed save keeps the caller's array alive"
    assert job_refs[0]() is None, "the failed save keeps the native job alive"
    error = handle.exception()
    assert isinstance(error, fastckpt.CheckpointIOError) and error.errno == errno.ENOSPC
    assert f"{tmp_path / 'ck'}.data-00000-of-00001" in str(error)
    chained = [error, error.__cause__, error.__context__]
    assert all(e is None or e.__traceback__ is None for e in chained)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        handle.result()
    assert info.value is error
    del info
    assert os.listdir(tmp_path) == []
    # Once the caller drops the handle and the error, nothing keeps the error.
    error_ref = weakref.ref(error)
    del error, chained, handle
    gc.collect()
    assert error_ref() is None, "the background module keeps the failed save's exception"


def test_a_committed_save_frees_the_job_while_the_handle_is_held(tmp_path, job_refs, hold_background):
    handle, x_ref = _start(tmp_path, "ck", hold_background[1])
    assert handle.result(timeout=60).nbytes == 4 * MiB + 8
    gc.collect()
    assert x_ref() is None and job_refs[0]() is None
    assert fastckpt.load(tmp_path / "ck")["x"][-1] == MiB - 1


def test_an_unobserved_failure_is_kept_as_text_for_the_exit_report(tmp_path, hold_background):
    _native.testing.arm_fault("write", 0, errno.ENOSPC)
    handle, _ = _start(tmp_path, "ck", hold_background[1])
    assert handle.wait(60)
    _native.testing.disarm_faults()
    reports = [r for r in _background._failed if r.prefix == str(tmp_path / "ck")]
    assert len(reports) == 1 and not reports[0].observed
    assert reports[0].text.startswith("CheckpointIOError: ") and "No space left on device" in reports[0].text
    assert type(reports[0].text) is str
    handle.exception()
    assert reports[0].observed
