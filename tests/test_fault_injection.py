"""A save that fails at any OS call, for any reason, leaves no trace.

The native hook (fastckpt._native_testing, csrc/fastckpt/io/fault_injection.h)
fails the N-th create/write/fsync/rename/close/directory-fsync of a save with
a chosen errno. A Saver's .meta and state file go through the same native
calls (fastckpt._native.write_file_atomically), after the bundle's. Every
failed save must:

* raise CheckpointIOError (an OSError) carrying the injected errno, with a
  message naming the file (or directory) whose call failed by its final
  name, never a temporary one;
* leave the directory byte-for-byte as it was: no temporary files
  (``*.tempstate*``, ``*.tmp*``), no new index/data/.meta, earlier files and
  the state file untouched (compared by SHA-256);
* leave ``latest_checkpoint`` unchanged and earlier checkpoints loadable with
  their exact values (and a Saver's ``last_checkpoints`` unchanged).

The number of calls a save makes at each point is measured first (the hook
armed with a huge skip and errno 0 only counts), so that the first, a middle
and the last call are failed whatever the layout.

Every mode goes through the same matrix: blocking saves of host arrays
(1 and 3 shards, and a Saver), asynchronous saves (``blocking=False``: the
snapshot, then the write and commit on the background thread; the error is
raised by the call or by ``result()``), and saves of device arrays on the
simulated device (staged through pinned buffers), blocking and asynchronous.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re

import numpy as np
import pytest
from sim_device import SimDeviceArray

import fastckpt
from fastckpt import _native, _native_testing
from fastckpt import checkpoint_management as cm

testing = _native_testing

POINTS = ["create", "write", "sync", "rename", "close", "sync_dir"]
ERRNOS = [errno.ENOSPC, errno.EACCES, errno.EIO]
WHICH = ["first", "middle", "last"]
# fastckpt.save with 1 and 3 data shards; Saver.save (2 shards, max_to_keep=2)
# after two good saves; the same saves with blocking=False; of device arrays
# (the string tensor stays on the host); of device arrays with blocking=False.
MODES = ["save1", "save3", "saver", "async1", "async3", "device1", "device3", "async_device3"]
STAGED_MODES = ("async", "device")
SAVER_SHARDS = 2
# "big" (3 MiB) is cut into two 1.5 MiB pieces, each its own task and each
# written by PwriteAll in 1 MiB + 0.5 MiB steps; the small tensors of a shard
# go out in one pwritev. Both write paths are thus exercised.
TASK_BYTES = 1536 * 1024
COUNT_ONLY = 10**9
# Write calls of the staged modes, pinned by test_counts_pin_the_commit_protocol.
WRITES = {"async1": 5, "async3": 6, "device1": 5, "device3": 6, "async_device3": 6}


@pytest.fixture(autouse=True)
def _setup(monkeypatch):
    monkeypatch.setenv("FASTCKPT_TASK_BYTES", str(TASK_BYTES))
    monkeypatch.setenv("FASTCKPT_THREADS", "3")  # parallel shard writes even on 2 cores
    testing.disarm_faults()
    yield
    testing.disarm_faults()


@contextlib.contextmanager
def mode_context(mode: str):
    """What a mode needs around its saves: 1 MiB staging buffers for staged
    saves, the simulated device for device arrays."""
    saved = os.environ.get("FASTCKPT_STAGING_MB")
    if mode.startswith(STAGED_MODES):
        os.environ["FASTCKPT_STAGING_MB"] = "1"
    device = "device" in mode
    if device:
        testing.install_simulated_device()
    try:
        yield
    finally:
        if device:
            testing.uninstall_device()
            _native.trim_staging()
        if saved is None:
            os.environ.pop("FASTCKPT_STAGING_MB", None)
        else:
            os.environ["FASTCKPT_STAGING_MB"] = saved
        assert _native.staging_stats()["lent"] == 0, "a staging buffer was never returned"


def make_tensors(step: int) -> dict:
    return {
        "big": np.arange(768 * 1024, dtype=np.float32) + np.float32(step),
        "names": np.array([b"step", str(step).encode()], dtype=object),
        "small_a": np.arange(100, dtype=np.int64) * step,
        "small_b": np.full((3, 4), step / 8, dtype=np.float64),
        "step": np.array(step, dtype=np.int64),
    }


def assert_loads(prefix: str, step: int) -> None:
    got = fastckpt.load(prefix)
    want = make_tensors(step)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def snapshot(directory) -> dict:
    """name -> SHA-256 of every file in `directory`."""
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in sorted(os.listdir(directory))}


def temp_names(names) -> list:
    return [n for n in names if ".tempstate" in n or ".tmp" in n]


class Scenario:
    """Earlier good checkpoint(s) in `root`/ckpt, then the save under test (step 3)."""

    def __init__(self, mode: str, root) -> None:
        self.mode = mode
        self.dir = root / "ckpt"
        self.dir.mkdir()
        self.shards = SAVER_SHARDS if mode == "saver" else int(mode[-1])
        self.prefix = str(self.dir / "model-3")
        if mode == "saver":
            self.vars = make_tensors(1)
            self.saver = fastckpt.Saver(self.vars, max_to_keep=2, num_shards=SAVER_SHARDS)

    def earlier(self) -> None:
        if self.mode == "saver":
            for step in (1, 2):
                self._set_vars(step)
                assert self.saver.save(None, str(self.dir / "model"), global_step=step) == str(
                    self.dir / f"model-{step}"
                )
            self.earlier_steps = [1, 2]
        else:
            fastckpt.save(make_tensors(1), str(self.dir / "model-1"), num_shards=self.shards, durable=False)
            cm.update_checkpoint_state(str(self.dir), str(self.dir / "model-1"))
            self.earlier_steps = [1]
        self.latest = str(self.dir / f"model-{self.earlier_steps[-1]}")
        assert fastckpt.latest_checkpoint(str(self.dir)) == self.latest

    def new_save(self) -> None:
        if self.mode == "saver":
            self._set_vars(3)
            self.saver.save(None, str(self.dir / "model"), global_step=3)
            return
        tensors = make_tensors(3)
        if "device" in self.mode:  # string tensors cannot live on a device
            tensors = {k: v if v.dtype == object else SimDeviceArray(v) for k, v in tensors.items()}
        if self.mode.startswith("async"):
            # The error comes from the call (creating the files, or a write
            # that failed during the snapshot) or from result(). When the call
            # raises, the dropped save still finishes (and cleans up) in the
            # background: wait for that before looking at the directory.
            try:
                handle = fastckpt.save(tensors, self.prefix, num_shards=self.shards, blocking=False)
            except fastckpt.FastCkptError:
                assert fastckpt.wait_for_pending_saves(timeout=60)
                raise
            handle.result(60)
        else:
            fastckpt.save(tensors, self.prefix, num_shards=self.shards)

    def check_intact(self, before: dict) -> None:
        after = snapshot(self.dir)
        assert temp_names(after) == []
        assert after == before
        assert fastckpt.latest_checkpoint(str(self.dir)) == self.latest
        for step in self.earlier_steps:
            assert_loads(str(self.dir / f"model-{step}"), step)
        if self.mode == "saver":
            assert self.saver.last_checkpoints == [str(self.dir / f"model-{s}") for s in (1, 2)]

    def _set_vars(self, step: int) -> None:
        for name, value in make_tensors(step).items():
            self.vars[name][...] = value


_CALLS: dict = {}


def calls_at(mode: str, point: str, tmp_path_factory) -> int:
    """How many calls the save under test makes at `point` (measured once)."""
    key = (mode, point)
    if key not in _CALLS:
        sc = Scenario(mode, tmp_path_factory.mktemp("count"))
        with mode_context(mode):
            testing.arm_fault(point, COUNT_ONLY, 0)
            try:
                sc.new_save()
            finally:
                testing.disarm_faults()
        _CALLS[key] = testing.fault_hits()
        assert_loads(sc.prefix, 3)  # counting injects nothing
    return _CALLS[key]


def expected_file(point: str, skip: int, n_calls: int, prefix: str, shards: int, saver: bool = False) -> str:
    """A regex for the file the failed call was working on, as the message quotes it
    (its final name: never a temporary one)."""
    if point == "sync_dir":
        return re.escape(f"'{os.path.dirname(prefix)}'")
    data = [f"{prefix}.data-{s:05d}-of-{shards:05d}" for s in range(shards)]
    index = prefix + ".index"
    # A Saver then writes the .meta and the state file, one call of each kind each.
    extra = [prefix + ".meta", os.path.join(os.path.dirname(prefix), "checkpoint")] if saver else []
    if point in ("create", "rename"):  # data shards in order, then the index
        names = [(data + [index] + extra)[skip]]
    elif point == "close":  # the index first, then the data shards
        names = [([index] + data + extra)[skip]]
    else:  # write, sync: data shards in parallel (any order), then the index
        tail = [index] + extra
        k = skip - (n_calls - len(tail))
        names = [tail[k]] if k >= 0 else data
    return "|".join(re.escape(f"'{n}'") for n in names)


# -- the hook itself ---------------------------------------------------------


def test_counts_pin_the_commit_protocol(tmp_path_factory):
    # One create, fsync, rename and close per data shard plus the index; one
    # directory fsync; writes: 4 PwriteAll steps for "big", one pwritev per
    # other shard holding small tensors, one for the index. A Saver adds one
    # call of every kind for the .meta and one for the state file.
    # Staged saves (asynchronous, device) write whole 1 MiB staging buffers:
    # "big" fills 3, the small tensors of a shard (the string tensor of a
    # device save included, copied from the host) are packed into one; then
    # the index.
    for mode, shards, writes in (
        ("save1", 1, 6),
        ("save3", 3, 7),
        ("saver", 2, 6),
        ("async1", 1, WRITES["async1"]),
        ("async3", 3, WRITES["async3"]),
        ("device1", 1, WRITES["device1"]),
        ("device3", 3, WRITES["device3"]),
        ("async_device3", 3, WRITES["async_device3"]),
    ):
        extra = 2 if mode == "saver" else 0
        counts = {p: calls_at(mode, p, tmp_path_factory) for p in POINTS}
        assert counts == {
            "create": shards + 1 + extra,
            "write": writes + extra,
            "sync": shards + 1 + extra,
            "rename": shards + 1 + extra,
            "close": shards + 1 + extra,
            "sync_dir": 1 + extra,
        }, mode


def test_binding_arguments_and_one_shot(tmp_path):
    with pytest.raises(
        fastckpt.InvalidArgumentError,
        match=re.escape(
            "arm_fault: unknown fault point 'unlink' (expected create, write, sync, rename, close or sync_dir)"
        ),
    ):
        testing.arm_fault("unlink", 0, errno.EIO)
    with pytest.raises(fastckpt.InvalidArgumentError, match="^arm_fault: skip must be >= 0, not -1$"):
        testing.arm_fault("write", -1, errno.EIO)
    with pytest.raises(fastckpt.InvalidArgumentError, match="^arm_fault: errno must be >= 0, not -5$"):
        testing.arm_fault("write", 0, -5)
    with pytest.raises(
        fastckpt.InvalidArgumentError, match="^arm_fault: short_write applies only to the 'write' point, not 'sync'$"
    ):
        testing.arm_fault("sync", 0, errno.EIO, short_write=True)
    with pytest.raises(fastckpt.InvalidArgumentError, match="^arm_fill_delay: skip must be >= 0, not -2$"):
        testing.arm_fill_delay(-2, 1.0, 1.0)
    with pytest.raises(
        fastckpt.InvalidArgumentError, match="^arm_fill_delay: wait_s and delay_s must be between 0 and 3600 seconds$"
    ):
        testing.arm_fill_delay(0, float("nan"), 1.0)
    with pytest.raises(fastckpt.InvalidArgumentError, match="^arm_thread_failures: count must be >= -1, not -3$"):
        testing.arm_thread_failures(0, -3)
    with pytest.raises(fastckpt.InvalidArgumentError, match="^arm_thread_failures: skip must be >= 0, not -1$"):
        testing.arm_thread_failures(-1, 1)

    # One-shot: the second save, still armed, succeeds; the count goes on.
    testing.arm_fault("create", 0, errno.EIO)
    with pytest.raises(fastckpt.CheckpointIOError) as e:
        fastckpt.save(make_tensors(1), str(tmp_path / "a"), num_shards=1)
    assert e.value.errno == errno.EIO
    assert testing.fault_hits() == 1
    fastckpt.save(make_tensors(1), str(tmp_path / "b"), num_shards=1)
    assert testing.fault_hits() == 3
    assert_loads(str(tmp_path / "b"), 1)

    # Disarmed: nothing is injected or counted; the last count stays readable.
    testing.disarm_faults()
    fastckpt.save(make_tensors(2), str(tmp_path / "c"), num_shards=1)
    assert testing.fault_hits() == 3
    assert_loads(str(tmp_path / "c"), 2)
    # Re-arming resets the count.
    testing.arm_fault("rename", COUNT_ONLY, 0)
    assert testing.fault_hits() == 0
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["b.data-00000-of-00001", "b.index", "c.data-00000-of-00001", "c.index"]
    )


# -- native faults: every point, errno and position --------------------------


@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("err", ERRNOS, ids=lambda e: errno.errorcode[e])
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("mode", MODES)
def test_native_fault_leaves_no_trace(mode, point, err, which, tmp_path, tmp_path_factory):
    n_calls = calls_at(mode, point, tmp_path_factory)
    skip = {"first": 0, "middle": n_calls // 2, "last": n_calls - 1}[which]
    sc = Scenario(mode, tmp_path)
    sc.earlier()
    before = snapshot(sc.dir)

    with mode_context(mode):
        testing.arm_fault(point, skip, err)
        with pytest.raises(fastckpt.CheckpointIOError) as info:
            sc.new_save()
        hits = testing.fault_hits()
        testing.disarm_faults()

    e = info.value
    assert hits >= skip + 1
    assert isinstance(e, OSError)
    assert e.errno == err
    assert os.strerror(err) in str(e)
    assert re.search(expected_file(point, skip, n_calls, sc.prefix, sc.shards, mode == "saver"), str(e)), str(e)
    sc.check_intact(before)


# -- short writes --------------------------------------------------------------


@pytest.mark.parametrize("mode", ["save1", "save3"])
def test_short_write_then_success_writes_identical_files(mode, tmp_path, tmp_path_factory):
    """PwriteAll/PwritevAll loop over short transfers: any write call cut short
    (and its retry succeeding) still yields the same bytes as a clean save."""
    shards = {"save1": 1, "save3": 3}[mode]
    n_calls = calls_at(mode, "write", tmp_path_factory)
    reference = tmp_path / "reference"
    reference.mkdir()
    clean = fastckpt.save(make_tensors(3), str(reference / "m"), num_shards=shards)
    want = snapshot(reference)
    assert len(want) == shards + 1
    # 3 MiB + 800 + 96 + 8 bytes, and the string tensor's 11: a length byte per
    # element, the CRC32C of the lengths, "step" and "3".
    assert clean.nbytes == 3 * 2**20 + 800 + 96 + 8 + 11
    for skip in range(n_calls):
        out = tmp_path / f"short{skip}"
        out.mkdir()
        testing.arm_fault("write", skip, 0, short_write=True)
        result = fastckpt.save(make_tensors(3), str(out / "m"), num_shards=shards)
        # The short call and its retry both count; nothing else was dropped.
        assert testing.fault_hits() == n_calls + 1, skip
        testing.disarm_faults()
        assert result.num_shards == shards
        assert result.nbytes == clean.nbytes
        assert snapshot(out) == want, skip
        assert_loads(str(out / "m"), 3)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO], ids=lambda e: errno.errorcode[e])
@pytest.mark.parametrize("which", WHICH)
@pytest.mark.parametrize("mode", MODES)
def test_short_write_then_error_leaves_no_trace(mode, which, err, tmp_path, tmp_path_factory):
    n_calls = calls_at(mode, "write", tmp_path_factory)
    skip = {"first": 0, "middle": n_calls // 2, "last": n_calls - 1}[which]
    sc = Scenario(mode, tmp_path)
    sc.earlier()
    before = snapshot(sc.dir)
    with mode_context(mode):
        testing.arm_fault("write", skip, err, short_write=True)
        with pytest.raises(fastckpt.CheckpointIOError) as info:
            sc.new_save()
        assert testing.fault_hits() >= skip + 2  # the short write and its failed retry
        testing.disarm_faults()
    assert info.value.errno == err
    assert re.search(expected_file("write", skip, n_calls, sc.prefix, sc.shards, mode == "saver"), str(info.value))
    sc.check_intact(before)


def test_injected_eintr_is_retried(tmp_path, tmp_path_factory):
    """EINTR takes the same path as a real interrupted write: retried, not reported."""
    n_calls = calls_at("save3", "write", tmp_path_factory)
    reference = tmp_path / "reference"
    reference.mkdir()
    fastckpt.save(make_tensors(3), str(reference / "m"), num_shards=3)
    for skip, short in ((0, False), (n_calls // 2, True), (n_calls - 1, False)):
        out = tmp_path / f"eintr{skip}"
        out.mkdir()
        testing.arm_fault("write", skip, errno.EINTR, short_write=short)
        fastckpt.save(make_tensors(3), str(out / "m"), num_shards=3)
        assert testing.fault_hits() == n_calls + 1 + short
        testing.disarm_faults()
        assert snapshot(out) == snapshot(reference)
        assert_loads(str(out / "m"), 3)


# -- faults in Saver.save's .meta and state file -------------------------------

# name -> (point, which call of the save at that point fails, file the message
# must name). A Saver's save with SAVER_SHARDS data files makes, at each point:
# the bundle's calls, then the .meta's, then the state file's (see
# test_counts_pin_the_commit_protocol).
_META = SAVER_SHARDS + 1  # after the data files and the index
_STATE = SAVER_SHARDS + 2
_BUNDLE_WRITES = 6  # the Saver's bundle: write calls (see the count test)
SAVER_FILE_FAULTS = {
    "meta-create": ("create", _META, "meta"),
    "meta-write": ("write", _BUNDLE_WRITES, "meta"),
    "meta-fsync": ("sync", _META, "meta"),
    "meta-rename": ("rename", _META, "meta"),
    "meta-close": ("close", _META, "meta"),
    "meta-dir-fsync": ("sync_dir", 1, "dir"),
    "state-create": ("create", _STATE, "state"),
    "state-write": ("write", _BUNDLE_WRITES + 1, "state"),
    "state-fsync": ("sync", _STATE, "state"),
    "state-rename": ("rename", _STATE, "state"),
    "state-close": ("close", _STATE, "state"),
    # After the new state file was renamed into place: the old bytes go back.
    "state-dir-fsync": ("sync_dir", 2, "dir"),
}


@pytest.mark.parametrize("fault", sorted(SAVER_FILE_FAULTS))
def test_meta_and_state_fault_in_saver_rolls_back(fault, tmp_path):
    point, skip, names = SAVER_FILE_FAULTS[fault]
    sc = Scenario("saver", tmp_path)
    sc.earlier()
    before = snapshot(sc.dir)
    testing.arm_fault(point, skip, errno.ENOSPC)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        sc.new_save()
    assert testing.fault_hits() >= skip + 1
    testing.disarm_faults()
    e = info.value
    assert e.errno == errno.ENOSPC
    expected = {"meta": sc.prefix + ".meta", "state": str(sc.dir / "checkpoint"), "dir": str(sc.dir)}[names]
    assert e.filename == expected
    assert f"'{expected}'" in str(e), str(e)
    assert os.strerror(errno.ENOSPC) in str(e)
    sc.check_intact(before)


def test_saver_goes_on_after_a_failed_save(tmp_path):
    """The failed save left the Saver's bookkeeping as it was: retrying succeeds
    and retention then deletes exactly the oldest checkpoint."""
    sc = Scenario("saver", tmp_path)
    sc.earlier()
    testing.arm_fault("rename", _STATE, errno.EIO)  # the state file's rename
    with pytest.raises(fastckpt.CheckpointIOError):
        sc.new_save()
    testing.disarm_faults()
    assert sc.saver.last_checkpoints == [str(sc.dir / "model-1"), str(sc.dir / "model-2")]
    sc.new_save()
    assert sc.saver.last_checkpoints == [str(sc.dir / "model-2"), str(sc.dir / "model-3")]
    assert sorted(os.listdir(sc.dir)) == sorted(
        ["checkpoint"]
        + [
            f"model-{s}{ext}"
            for s in (2, 3)
            for ext in (".index", ".meta", ".data-00000-of-00002", ".data-00001-of-00002")
        ]
    )
    assert fastckpt.latest_checkpoint(str(sc.dir)) == str(sc.dir / "model-3")
    state = cm.get_checkpoint_state(str(sc.dir))
    assert list(state.all_model_checkpoint_paths) == [str(sc.dir / "model-2"), str(sc.dir / "model-3")]
    assert_loads(str(sc.dir / "model-2"), 2)
    assert_loads(str(sc.dir / "model-3"), 3)


def test_saver_resave_same_prefix_state_failure_keeps_new_checkpoint(tmp_path):
    """Documented behaviour: re-saving a prefix replaces it before the state file
    is written, so when the state file then fails the new, complete checkpoint
    is kept (deleting it would leave nothing under a name the state file holds);
    the state file and the Saver's list are as before, and the error is raised."""
    sc = Scenario("saver", tmp_path)
    sc.earlier()
    state_before = (sc.dir / "checkpoint").read_bytes()
    sc._set_vars(7)
    testing.arm_fault("rename", _STATE, errno.ENOSPC)  # the state file's rename
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        sc.saver.save(None, str(sc.dir / "model"), global_step=2)
    testing.disarm_faults()
    assert info.value.errno == errno.ENOSPC
    assert (sc.dir / "checkpoint").read_bytes() == state_before
    assert sc.saver.last_checkpoints == [str(sc.dir / "model-1"), str(sc.dir / "model-2")]
    assert temp_names(os.listdir(sc.dir)) == []
    assert fastckpt.latest_checkpoint(str(sc.dir)) == str(sc.dir / "model-2")
    assert_loads(str(sc.dir / "model-2"), 7)
    assert_loads(str(sc.dir / "model-1"), 1)


def test_saver_resave_same_prefix_write_failure_keeps_old_checkpoint(tmp_path):
    """A re-save that fails before its commit leaves the old checkpoint whole."""
    sc = Scenario("saver", tmp_path)
    sc.earlier()
    before = snapshot(sc.dir)
    sc._set_vars(7)
    testing.arm_fault("write", 1, errno.ENOSPC)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        sc.saver.save(None, str(sc.dir / "model"), global_step=2)
    testing.disarm_faults()
    assert info.value.errno == errno.ENOSPC
    assert snapshot(sc.dir) == before
    assert sc.saver.last_checkpoints == [str(sc.dir / "model-1"), str(sc.dir / "model-2")]
    assert_loads(str(sc.dir / "model-2"), 2)
