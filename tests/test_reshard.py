"""Re-saving a prefix with another shard count.

Data file names carry the shard count (``PREFIX.data-00002-of-00004``), so
a re-save of PREFIX with 2 shards over a 4-shard checkpoint does not replace
the old data files. TensorFlow (tf.compat.v1 Saver with ``sharded=True`` on
4 then 2 devices, checked with tensorflow 2.21) leaves the old ones behind
for good. fastckpt removes the data files of that exact prefix whose shard
count differs from the new one, once the new index has committed, and only
then: a re-save that fails leaves the old checkpoint as it was. Files of
other prefixes (``PREFIX-1``, ``PREFIX_x``, ``PREFIX.x``) are never touched.
"""

from __future__ import annotations

import errno
import hashlib
import os

import numpy as np
import pytest

import fastckpt
from fastckpt import _native

testing = _native.testing


@pytest.fixture(autouse=True)
def _disarm(monkeypatch):
    monkeypatch.setenv("FASTCKPT_THREADS", "4")  # one data file per shard, written in parallel
    testing.disarm_faults()
    yield
    testing.disarm_faults()


def tensors(step: int) -> dict:
    return {f"t{i}": np.full(1000 + i, step * 10 + i, dtype=np.float32) for i in range(6)}


def assert_holds(prefix: str, step: int) -> None:
    got = fastckpt.load(prefix)
    want = tensors(step)
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    fastckpt.verify(prefix)


def data_files(prefix: str, count: int) -> list:
    return [f"{os.path.basename(prefix)}.data-{s:05d}-of-{count:05d}" for s in range(count)]


def snapshot(directory) -> dict:
    return {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in os.listdir(directory)}


@pytest.mark.parametrize("old,new", [(4, 2), (2, 4), (4, 1), (1, 3)])
def test_resave_with_another_shard_count_removes_the_old_data_files(tmp_path, old, new):
    prefix = str(tmp_path / "model")
    fastckpt.save(tensors(1), prefix, num_shards=old)
    assert sorted(os.listdir(tmp_path)) == sorted(data_files(prefix, old) + ["model.index"])
    result = fastckpt.save(tensors(2), prefix, num_shards=new)
    assert result.num_shards == new
    assert sorted(os.listdir(tmp_path)) == sorted(data_files(prefix, new) + ["model.index"])
    assert_holds(prefix, 2)


def test_other_prefixes_and_other_names_are_untouched(tmp_path):
    prefix = str(tmp_path / "model")
    neighbours = [str(tmp_path / n) for n in ("model-1", "model_x", "model.x", "mode", "model.data")]
    for step, p in enumerate(neighbours, start=3):
        fastckpt.save(tensors(step), p, num_shards=4)
    fastckpt.save(tensors(1), prefix, num_shards=4)
    lookalikes = [
        "model.data-0000-of-00004",  # 4 digits: not a data file name
        "model.data-00000-of-00004.tempstate123",  # TensorFlow's temporary file
        "model.data-00000-of-00004.bak",
        "model.data-00000-of-0004x",
        "model.data-00000-of-00004-old",
        "xmodel.data-00000-of-00004",
    ]
    for name in lookalikes:
        (tmp_path / name).write_bytes(b"keep")
    own = set(data_files(prefix, 4) + ["model.index"])
    before = {n: h for n, h in snapshot(tmp_path).items() if n not in own}
    assert len(before) == 5 * 5 + len(lookalikes)

    fastckpt.save(tensors(2), prefix, num_shards=2)

    after = snapshot(tmp_path)
    assert {n: after.get(n) for n in before} == before
    assert sorted(set(after) - set(before)) == sorted(data_files(prefix, 2) + ["model.index"])
    assert_holds(prefix, 2)
    for step, p in enumerate(neighbours, start=3):
        assert_holds(p, step)


def test_failed_resave_before_the_commit_leaves_the_old_checkpoint(tmp_path):
    prefix = str(tmp_path / "model")
    fastckpt.save(tensors(1), prefix, num_shards=4)
    before = snapshot(tmp_path)
    testing.arm_fault("write", 1, errno.ENOSPC)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        fastckpt.save(tensors(2), prefix, num_shards=2)
    assert info.value.errno == errno.ENOSPC
    assert snapshot(tmp_path) == before
    assert_holds(prefix, 1)


@pytest.mark.parametrize("skip", [0, 1, 2], ids=["first-data-rename", "second-data-rename", "index-rename"])
def test_failed_resave_during_the_commit_leaves_the_old_checkpoint(tmp_path, skip):
    # The new data files have other names than the old ones, so the old
    # checkpoint stays whole until the new index replaces the old one.
    prefix = str(tmp_path / "model")
    fastckpt.save(tensors(1), prefix, num_shards=4)
    before = snapshot(tmp_path)
    testing.arm_fault("rename", skip, errno.EIO)
    with pytest.raises(fastckpt.CheckpointIOError):
        fastckpt.save(tensors(2), prefix, num_shards=2)
    assert snapshot(tmp_path) == before
    assert_holds(prefix, 1)


def test_same_shard_count_replaces_in_place(tmp_path):
    prefix = str(tmp_path / "model")
    fastckpt.save(tensors(1), prefix, num_shards=3)
    fastckpt.save(tensors(2), prefix, num_shards=3)
    assert sorted(os.listdir(tmp_path)) == sorted(data_files(prefix, 3) + ["model.index"])
    assert_holds(prefix, 2)


def test_stale_orphans_of_several_counts_go_at_the_next_commit(tmp_path):
    # A killed re-save can leave renamed data files without their index; the
    # next committed save of the prefix removes every other count.
    prefix = str(tmp_path / "model")
    fastckpt.save(tensors(1), prefix, num_shards=4)
    for name in data_files(prefix, 3) + data_files(prefix, 5)[:2]:
        (tmp_path / name).write_bytes(b"debris")
    fastckpt.save(tensors(2), prefix, num_shards=2)
    assert sorted(os.listdir(tmp_path)) == sorted(data_files(prefix, 2) + ["model.index"])
    assert_holds(prefix, 2)


def test_background_save_removes_the_old_count_after_its_commit(tmp_path):
    prefix = str(tmp_path / "model")
    fastckpt.save(tensors(1), prefix, num_shards=4)
    fastckpt.save(tensors(2), prefix, num_shards=2, blocking=False).result()
    assert sorted(os.listdir(tmp_path)) == sorted(data_files(prefix, 2) + ["model.index"])
    assert_holds(prefix, 2)


def test_saver_resave_with_another_shard_count(tmp_path):
    values = tensors(1)
    path = str(tmp_path / "model")
    assert fastckpt.Saver(values, num_shards=4).save(None, path) == path
    for name, value in tensors(2).items():
        values[name][...] = value
    assert fastckpt.Saver(values, num_shards=2).save(None, path) == path
    assert sorted(os.listdir(tmp_path)) == sorted(data_files(path, 2) + ["model.index", "model.meta", "checkpoint"])
    assert fastckpt.latest_checkpoint(str(tmp_path)) == path
    assert_holds(path, 2)


def test_prefix_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fastckpt.save(tensors(1), "model", num_shards=4)
    fastckpt.save(tensors(1), "model-1", num_shards=4)
    fastckpt.save(tensors(2), "model", num_shards=2)
    assert sorted(os.listdir(tmp_path)) == sorted(
        data_files("model", 2) + ["model.index"] + data_files("model-1", 4) + ["model-1.index"]
    )
    assert_holds("model", 2)
    assert_holds("model-1", 1)
