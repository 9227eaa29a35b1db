"""A bundle written group by group (fastckpt._bundle_stream): one data file
per group, one index, committed at once; failures leave the prefix as it was."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import fastckpt
from fastckpt import _native
from fastckpt._bundle_stream import MAX_GROUPS, BundleStreamWriter, plan_groups

testing = _native.testing


@pytest.fixture(autouse=True)
def _disarm():
    testing.disarm_faults()
    yield
    testing.disarm_faults()


def _tensors():
    rng = np.random.default_rng(3)
    return {
        "a/w": rng.standard_normal((64, 33)).astype(np.float32),
        "b": np.arange(1000, dtype=np.int64),
        "c": np.array(2.5, dtype=np.float64),
        "d/s": np.array([b"x", b"yz", b""], dtype=object),
        "e": np.zeros((0, 3), dtype=np.float16),
    }


def test_plan_groups_keeps_order_and_bounds_each_group():
    sizes = [("a", 40), ("b", 40), ("c", 40), ("d", 200), ("e", 10)]
    assert plan_groups(sizes, 100) == [["a", "b"], ["c"], ["d"], ["e"]]
    assert plan_groups([], 100) == [[]]
    assert plan_groups(sizes, 10**9) == [["a", "b", "c", "d", "e"]]


def test_plan_groups_never_exceeds_the_shard_count_tensorflow_can_name():
    sizes = [(f"t{i}", 1) for i in range(MAX_GROUPS + 5)]
    groups = plan_groups(sizes, 1)
    assert len(groups) <= MAX_GROUPS
    assert [n for g in groups for n in g] == [n for n, _ in sizes]


def test_plan_groups_refuses_a_non_positive_group_size():
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        plan_groups([("a", 1)], 0)
    assert str(info.value) == "group_bytes must be a positive number of bytes, not 0"


@pytest.mark.parametrize("durable", [False, True])
def test_groups_make_one_bundle_with_a_data_file_per_group(tmp_path, durable):
    tensors = _tensors()
    groups = [["a/w", "b"], ["c", "d/s"], ["e"]]
    prefix = str(tmp_path / "ckpt")
    with BundleStreamWriter(prefix, len(groups), durable=durable) as w:
        for g in groups:
            w.write_group({n: tensors[n] for n in g})
        files = w.commit()
    data = [f"{prefix}.data-0000{i}-of-00003" for i in range(3)]
    assert files == data + [prefix + ".index"]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(f) for f in files)
    got = fastckpt.load(prefix)
    assert sorted(got) == sorted(tensors)
    for name, value in tensors.items():
        assert got[name].dtype == value.dtype and got[name].shape == value.shape
        assert got[name].tobytes() == value.tobytes() if value.dtype != object else list(got[name]) == list(value)
    assert fastckpt.verify(prefix).ok
    # Each group's tensors are in its own data file.
    reader = _native.Reader(prefix)
    shard_of = {key.decode(): shard for key, _, _, shard, *_ in reader.entries()}
    assert {n: shard_of[n] for n in tensors} == {"a/w": 0, "b": 0, "c": 1, "d/s": 1, "e": 2}


def test_a_failed_group_leaves_the_previous_checkpoint_whole(tmp_path):
    prefix = str(tmp_path / "ckpt")
    fastckpt.save({"old": np.arange(5)}, prefix)
    before = sorted(os.listdir(tmp_path))
    w = BundleStreamWriter(prefix, 2)
    w.write_group({"a": np.ones(100)})
    w.wait()  # the first group is on disk before the fault is armed
    testing.arm_fault("write", 0, errno.ENOSPC)
    w.write_group({"b": np.ones(100)})
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        w.commit()
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == prefix + ".data-00001-of-00002"
    assert sorted(os.listdir(tmp_path)) == before
    assert fastckpt.load(prefix)["old"].tolist() == [0, 1, 2, 3, 4]


def test_abort_and_leaving_the_block_remove_every_temporary_file(tmp_path):
    prefix = str(tmp_path / "ckpt")
    w = BundleStreamWriter(prefix, 3)
    w.write_group({"a": np.ones(1 << 16)})
    w.write_group({"b": np.ones(1 << 16)})
    w.abort()
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="boom"):
        with BundleStreamWriter(prefix, 2) as w2:
            w2.write_group({"a": np.ones(10)})
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_the_group_count_is_checked(tmp_path):
    prefix = str(tmp_path / "ckpt")
    w = BundleStreamWriter(prefix, 2)
    w.write_group({"a": np.ones(3)})
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        w.commit()
    assert str(info.value) == f"the bundle '{prefix}' was planned with 2 groups but 1 were written"
    assert os.listdir(tmp_path) == []
    w = BundleStreamWriter(prefix, 1)
    w.write_group({"a": np.ones(3)})
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        w.write_group({"b": np.ones(3)})
    assert str(info.value) == (f"the bundle '{prefix}' was planned with 1 groups; write_group was called once more")
    w.commit()
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        w.commit()
    assert str(info.value) == f"the bundle '{prefix}' was already committed or aborted"
    for bad in (0, MAX_GROUPS + 1, 1.5):
        with pytest.raises(fastckpt.InvalidArgumentError) as info:
            BundleStreamWriter(prefix, bad)
        assert str(info.value) == f"a bundle written in groups has 1..{MAX_GROUPS} groups, not {bad!r}"


def test_a_duplicate_name_across_groups_is_refused_and_nothing_is_left(tmp_path):
    prefix = str(tmp_path / "ckpt")
    w = BundleStreamWriter(prefix, 2)
    w.write_group({"a": np.ones(3)})
    w.write_group({"a": np.zeros(3)})
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        w.commit()
    assert "commit_bundle: " in str(info.value) and "'a'" in str(info.value)
    assert os.listdir(tmp_path) == []


def test_groups_compressed_make_one_compressed_bundle(tmp_path):
    """Each group is compressed before its job starts; the frame table of every group is
    written with the last one, and the index gets the logical dtypes and shapes back."""
    import ml_dtypes

    rng = np.random.default_rng(9)
    tensors = {
        "w0": rng.standard_normal(1 << 18).astype(ml_dtypes.bfloat16),
        "w1": rng.standard_normal((256, 300)).astype(np.float32),
        "small": np.arange(10, dtype=np.int32),  # under the compression threshold: stored as is
        "s": np.array([b"a", b"bc"], dtype=object),
    }
    groups = [["w0"], ["small", "s"], ["w1"]]
    prefix = str(tmp_path / "ckpt")
    with BundleStreamWriter(prefix, 3, durable=False, compression="zstd") as w:
        for g in groups:
            w.write_group({n: tensors[n] for n in g})
        w.commit()
    got = fastckpt.load(prefix)
    assert sorted(got) == sorted(tensors)
    for name in ("w0", "w1", "small"):
        assert got[name].dtype == tensors[name].dtype and got[name].tobytes() == tensors[name].tobytes()
    assert list(got["s"]) == [b"a", b"bc"]
    assert fastckpt.verify(prefix).ok
    reader = fastckpt.load_checkpoint(prefix)
    assert reader.get_variable_to_shape_map() == {"w0": [1 << 18], "w1": [256, 300], "small": [10], "s": [2]}
    assert reader._compressed is not None and len(reader._compressed.tables) == 2
    data = sum(os.path.getsize(f"{prefix}.data-0000{i}-of-00003") for i in range(3))
    assert data < tensors["w0"].nbytes + tensors["w1"].nbytes  # compressed
    reader.close()


def test_compression_options_are_checked_before_anything_is_written(tmp_path):
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        BundleStreamWriter(str(tmp_path / "p"), 1, compression="lz4")
    assert str(info.value) == "compression must be one of 'none', 'zstd' or None, not 'lz4'"
    assert os.listdir(tmp_path) == []


def test_several_files_per_group_are_numbered_across_groups(tmp_path):
    prefix = str(tmp_path / "ckpt")
    with BundleStreamWriter(prefix, 2, files_per_group=2) as w:
        w.write_group({"a": np.ones(10)})  # one tensor, two files: the second is empty
        w.write_group({"b": np.arange(1000.0), "c": np.zeros(1000)})
        files = w.commit()
    assert files == [f"{prefix}.data-0000{i}-of-00004" for i in range(4)] + [prefix + ".index"]
    assert os.path.getsize(files[1]) == 0
    reader = _native.Reader(prefix)
    shard_of = {key.decode(): shard for key, _, _, shard, *_ in reader.entries()}
    reader.close()
    assert shard_of["a"] == 0 and sorted([shard_of["b"], shard_of["c"]]) == [2, 3]
    got = fastckpt.load(prefix)
    assert got["b"].tolist() == list(range(1000)) and got["a"].tolist() == [1.0] * 10
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        BundleStreamWriter(prefix, 50000, files_per_group=2)
    assert str(info.value) == "50000 groups of 2 data files are more than the 99999 data files a bundle can name"
