"""Errors about files written under a temporary name name the final file.

A save writes each data shard and the index under a temporary name; the
``checkpoint`` state file and the ``.meta`` go through the same mechanism.
When an OS call on such a file fails, the error names the file the user
knows (``PREFIX.data-00000-of-00001``, ``PREFIX.index``, ``checkpoint``,
``PREFIX.meta``) in its message and in ``filename``, never the temporary
name; ``errno`` is the OS error, ``strerror`` the OS text alone, and the
class the ``CheckpointIOError`` subclass for the errno. Failures are
injected with the native fault hook (fastckpt._native_testing).

Also here: files are created with mode 0666 less the umask, as TensorFlow
creates them.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import fastckpt
from fastckpt import _native_testing, metagraph
from fastckpt import checkpoint_management as cm
from fastckpt.proto import DataType

testing = _native_testing
ENOSPC_TEXT = os.strerror(errno.ENOSPC)


@pytest.fixture(autouse=True)
def _disarm(monkeypatch):
    monkeypatch.setenv("FASTCKPT_THREADS", "2")
    testing.disarm_faults()
    yield
    testing.disarm_faults()


def _tensors():
    return {"a": np.arange(1000, dtype=np.float32), "b": np.int64(7)}


def _assert_os_error(e, cls, err, filename, message):
    assert type(e) is cls
    assert isinstance(e, OSError)
    assert e.errno == err
    assert e.strerror == os.strerror(err)
    assert e.filename == filename
    assert str(e) == message
    assert ".tempstate" not in str(e) and not str(e).endswith(": None")


# (point, skip) -> (file, message step) for a one-shard save: the data file
# is created, written, fsynced, then the index; renames go data then index;
# closes go index then data.
ONE_SHARD = [
    ("create", 0, "data", "cannot create"),
    ("create", 1, "index", "cannot create"),
    ("write", 0, "data", "write failed on"),
    ("write", 1, "index", "write failed on"),
    ("sync", 0, "data", "fsync failed on"),
    ("sync", 1, "index", "fsync failed on"),
    ("rename", 0, "data", "cannot rename the temporary file into place as"),
    ("rename", 1, "index", "cannot rename the temporary file into place as"),
    ("close", 0, "index", "close failed on"),
    ("close", 1, "data", "close failed on"),
]


@pytest.mark.parametrize("point,skip,which,step", ONE_SHARD, ids=[f"{p}{s}-{w}" for p, s, w, _ in ONE_SHARD])
def test_bundle_file_errors_name_the_final_file(tmp_path, point, skip, which, step):
    prefix = str(tmp_path / "model")
    final = {"data": prefix + ".data-00000-of-00001", "index": prefix + ".index"}[which]
    testing.arm_fault(point, skip, errno.ENOSPC)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        fastckpt.save(_tensors(), prefix, num_shards=1, durable=True)
    assert testing.fault_hits() >= skip + 1  # the failure paths may make more calls
    _assert_os_error(info.value, fastckpt.CheckpointIOError, errno.ENOSPC, final, f"{step} '{final}': {ENOSPC_TEXT}")
    assert os.listdir(tmp_path) == []


def test_create_error_class_follows_errno(tmp_path):
    prefix = str(tmp_path / "model")
    testing.arm_fault("create", 0, errno.EACCES)
    with pytest.raises(fastckpt.CheckpointPermissionError) as info:
        fastckpt.save(_tensors(), prefix, num_shards=1)
    final = prefix + ".data-00000-of-00001"
    _assert_os_error(
        info.value,
        fastckpt.CheckpointPermissionError,
        errno.EACCES,
        final,
        f"cannot create '{final}': {os.strerror(errno.EACCES)}",
    )


def test_second_shard_error_names_that_shard(tmp_path):
    prefix = str(tmp_path / "model")
    testing.arm_fault("rename", 1, errno.EIO)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        fastckpt.save(_tensors(), prefix, num_shards=3)
    final = prefix + ".data-00001-of-00003"
    _assert_os_error(
        info.value,
        fastckpt.CheckpointIOError,
        errno.EIO,
        final,
        f"cannot rename the temporary file into place as '{final}': {os.strerror(errno.EIO)}",
    )
    assert os.listdir(tmp_path) == []


def test_background_save_error_names_the_final_file(tmp_path):
    prefix = str(tmp_path / "model")
    testing.arm_fault("sync", 0, errno.ENOSPC)
    handle = fastckpt.save(_tensors(), prefix, num_shards=1, blocking=False)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        handle.result()
    final = prefix + ".data-00000-of-00001"
    _assert_os_error(
        info.value, fastckpt.CheckpointIOError, errno.ENOSPC, final, f"fsync failed on '{final}': {ENOSPC_TEXT}"
    )


@pytest.mark.parametrize(
    "point,step",
    [
        ("create", "cannot create"),
        ("write", "write failed on"),
        ("sync", "fsync failed on"),
        ("rename", "cannot rename the temporary file into place as"),
        ("close", "close failed on"),
    ],
)
def test_state_file_errors_name_the_state_file(tmp_path, point, step):
    testing.arm_fault(point, 0, errno.ENOSPC)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        cm.update_checkpoint_state(str(tmp_path), "m-1")
    state = str(tmp_path / "checkpoint")
    _assert_os_error(
        info.value,
        fastckpt.CheckpointIOError,
        errno.ENOSPC,
        state,
        f"cannot write checkpoint state file: {step} '{state}': {ENOSPC_TEXT}",
    )


@pytest.mark.parametrize(
    "point,step", [("write", "write failed on"), ("rename", "cannot rename the temporary file into place as")]
)
def test_meta_graph_errors_name_the_meta_file(tmp_path, point, step):
    meta = metagraph.build_meta_graph([metagraph.VariableSpec("w", DataType.DT_FLOAT, (2,))])
    path = str(tmp_path / "model.meta")
    testing.arm_fault(point, 0, errno.ENOSPC)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        metagraph.write_meta_graph(meta, path, fsync=True)
    _assert_os_error(
        info.value,
        fastckpt.CheckpointIOError,
        errno.ENOSPC,
        path,
        f"cannot write meta graph: {step} '{path}': {ENOSPC_TEXT}",
    )
    assert os.listdir(tmp_path) == []


def test_saver_meta_error_names_the_meta_file(tmp_path):
    saver = fastckpt.Saver({"w": np.arange(4.0)}, num_shards=1)
    # The Saver's save makes its data file and index first, then the .meta.
    testing.arm_fault("create", 2, errno.ENOSPC)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        saver.save(None, str(tmp_path / "model"), global_step=3)
    path = str(tmp_path / "model-3.meta")
    _assert_os_error(
        info.value,
        fastckpt.CheckpointIOError,
        errno.ENOSPC,
        path,
        f"cannot write meta graph: cannot create '{path}': {ENOSPC_TEXT}",
    )
    assert os.listdir(tmp_path) == []


def test_directory_fsync_error_names_the_directory(tmp_path):
    testing.arm_fault("sync_dir", 0, errno.EIO)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        cm.update_checkpoint_state(str(tmp_path), "m-1")
    _assert_os_error(
        info.value,
        fastckpt.CheckpointIOError,
        errno.EIO,
        str(tmp_path),
        f"cannot write checkpoint state file: fsync failed on directory '{tmp_path}': {os.strerror(errno.EIO)}",
    )


def test_missing_directory_is_not_found(tmp_path):
    path = str(tmp_path / "missing" / "checkpoint")
    with pytest.raises(fastckpt.CheckpointNotFoundError) as info:
        cm.update_checkpoint_state(str(tmp_path / "missing"), "m-1")
    _assert_os_error(
        info.value,
        fastckpt.CheckpointNotFoundError,
        errno.ENOENT,
        path,
        f"cannot write checkpoint state file: cannot create '{path}': {os.strerror(errno.ENOENT)}",
    )


def test_injected_eexist_on_create_is_retried_under_a_new_name(tmp_path):
    testing.arm_fault("create", 0, errno.EEXIST)
    cm.update_checkpoint_state(str(tmp_path), "m-1")
    assert testing.fault_hits() == 2
    testing.arm_fault("create", 1, errno.EEXIST)
    fastckpt.save(_tensors(), str(tmp_path / "model"), num_shards=1)
    assert testing.fault_hits() == 3
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.data-00000-of-00001", "model.index"]
    np.testing.assert_array_equal(fastckpt.load(str(tmp_path / "model"))["a"], _tensors()["a"])


def test_files_are_created_0666_less_umask_like_tensorflow(tmp_path):
    old = os.umask(0o002)
    try:
        saver = fastckpt.Saver({"w": np.arange(4.0)}, num_shards=2)
        saver.save(None, str(tmp_path / "model"), global_step=1)
    finally:
        os.umask(old)
    modes = {n: os.stat(tmp_path / n).st_mode & 0o777 for n in os.listdir(tmp_path)}
    assert modes == {
        "checkpoint": 0o664,
        "model-1.index": 0o664,
        "model-1.meta": 0o664,
        "model-1.data-00000-of-00002": 0o664,
        "model-1.data-00001-of-00002": 0o664,
    }
