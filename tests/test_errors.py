"""Every failure is a typed exception naming the file and, where it applies, the tensor."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from helpers import flip_byte

import fastckpt


@pytest.fixture
def ckpt(tmp_path):
    prefix = str(tmp_path / "model")
    tensors = {
        "w": np.arange(1000, dtype=np.float32),
        "b": np.arange(10, dtype=np.int64),
        "s": np.array([b"abc", b"de"], dtype=object),
    }
    fastckpt.save(tensors, prefix, durable=False)
    return prefix, tensors


def _truncate(path, size):
    with open(path, "r+b") as f:
        f.truncate(size)


def test_hierarchy():
    assert issubclass(fastckpt.CheckpointNotFoundError, FileNotFoundError)
    assert issubclass(fastckpt.InvalidArgumentError, ValueError)
    assert issubclass(fastckpt.UnsupportedDtypeError, TypeError)
    assert issubclass(fastckpt.CheckpointIOError, OSError)
    assert issubclass(fastckpt.TensorNotFoundError, KeyError)
    for cls in (
        fastckpt.CheckpointNotFoundError,
        fastckpt.DataLossError,
        fastckpt.InvalidArgumentError,
        fastckpt.UnsupportedDtypeError,
        fastckpt.CheckpointIOError,
        fastckpt.TensorNotFoundError,
    ):
        assert issubclass(cls, fastckpt.FastCkptError)


def test_missing_index(tmp_path):
    prefix = str(tmp_path / "nothing")
    with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
        fastckpt.load(prefix)
    assert e.value.errno == errno.ENOENT
    assert f"checkpoint index not found: '{prefix}.index'" in str(e.value)


def test_missing_data_file(ckpt):
    """The checkpoint still opens and lists; reading a tensor of the missing
    file names that file."""
    prefix, tensors = ckpt
    data = prefix + ".data-00000-of-00001"
    os.remove(data)
    with fastckpt.load_checkpoint(prefix) as reader:
        assert reader.get_variable_to_shape_map() == {"w": [1000], "b": [10], "s": [2]}
        for name in tensors:
            with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
                reader.get_tensor(name)
            assert str(e.value) == f"checkpoint data file not found: '{data}'"
            assert (e.value.errno, e.value.filename) == (errno.ENOENT, data)
    with pytest.raises(fastckpt.CheckpointNotFoundError, match=f"data file not found: '{data}'"):
        fastckpt.load(prefix)


def test_flipped_data_byte_names_tensor_and_file(ckpt):
    prefix, tensors = ckpt
    data = prefix + ".data-00000-of-00001"
    # Data order is key order: b (80 bytes), s, then w. Damage w.
    flip_byte(data, os.path.getsize(data) - 100, mask=0x01)
    with fastckpt.load_checkpoint(prefix) as r:
        np.testing.assert_array_equal(r.get_tensor("b"), tensors["b"])
        with pytest.raises(fastckpt.DataLossError, match=f"tensor 'w' in '{data}': data checksum mismatch"):
            r.get_tensor("w")
    with pytest.raises(fastckpt.DataLossError, match="tensor 'w'"):
        fastckpt.load(prefix)


def test_flipped_string_byte(ckpt):
    prefix, _ = ckpt
    data = prefix + ".data-00000-of-00001"
    flip_byte(data, 80 + 2 + 4 + 1, mask=0x01)  # inside "abc"
    with pytest.raises(fastckpt.DataLossError, match="tensor 's' in .*checksum mismatch"):
        fastckpt.load_variable(prefix, "s")


def test_flipped_string_length(ckpt):
    prefix, _ = ckpt
    flip_byte(prefix + ".data-00000-of-00001", 80, mask=0x01)  # first varint length 3 -> 2
    with pytest.raises(fastckpt.DataLossError, match="tensor 's'"):
        fastckpt.load_variable(prefix, "s")


def test_truncated_data_file(ckpt):
    prefix, _ = ckpt
    data = prefix + ".data-00000-of-00001"
    _truncate(data, os.path.getsize(data) - 1)
    with pytest.raises(fastckpt.DataLossError, match=r"tensor 'w' in .*past the end of the file.*truncated"):
        fastckpt.load_variable(prefix, "w")


@pytest.mark.parametrize("where", ["footer", "block", "start"])
def test_flipped_index_byte(ckpt, where):
    prefix, _ = ckpt
    index = prefix + ".index"
    size = os.path.getsize(index)
    offset = {"footer": size - 3, "block": 12, "start": 0}[where]
    flip_byte(index, offset, mask=0x01)
    with pytest.raises(fastckpt.DataLossError, match=f"corrupt index file '{index}'"):
        fastckpt.load_checkpoint(prefix)


@pytest.mark.parametrize("keep", [0, 10, 47, -49, -1])
def test_truncated_index(ckpt, keep):
    prefix, _ = ckpt
    index = prefix + ".index"
    size = os.path.getsize(index)
    _truncate(index, keep if keep >= 0 else size + keep)
    with pytest.raises(fastckpt.DataLossError, match=f"corrupt index file '{index}'"):
        fastckpt.load_checkpoint(prefix)


def test_save_rejects_bad_names_and_dtypes(tmp_path):
    prefix = str(tmp_path / "bad")
    with pytest.raises(fastckpt.InvalidArgumentError, match="tensor names must not be empty"):
        fastckpt.save({"": np.ones(1)}, prefix)
    with pytest.raises(fastckpt.InvalidArgumentError, match="must not start with a NUL"):
        fastckpt.save({"\x00x": np.ones(1)}, prefix)
    with pytest.raises(fastckpt.UnsupportedDtypeError, match="dict keys must be str or int, not a float"):
        fastckpt.save({3.5: np.ones(1)}, prefix)
    with pytest.raises(fastckpt.InvalidArgumentError, match="duplicate tensor name 'x'"):
        fastckpt.save({"x": np.ones(1), b"x": np.ones(2)}, prefix)
    structured = np.zeros(2, dtype=[("a", "i4"), ("b", "f4")])
    with pytest.raises(fastckpt.UnsupportedDtypeError, match="tensor 'rec'"):
        fastckpt.save({"rec": structured}, prefix)
    with pytest.raises(fastckpt.UnsupportedDtypeError, match="tensor 'obj': element 1 .* int"):
        fastckpt.save({"obj": np.array([b"a", 3], dtype=object)}, prefix)
    with pytest.raises(fastckpt.InvalidArgumentError, match="num_shards must be a positive integer"):
        fastckpt.save({"a": np.ones(1)}, prefix, num_shards=0)
    with pytest.raises(fastckpt.InvalidArgumentError, match="must be a mapping, list or tuple"):
        fastckpt.save(np.ones(1), prefix)
    assert os.listdir(tmp_path) == []  # nothing written by any failed save


def test_unwritable_location_is_oserror_with_errno(tmp_path):
    # A regular file used as a directory: ENOTDIR, even for root.
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(OSError) as e:
        fastckpt.save({"a": np.ones(1)}, str(blocker / "x"))
    assert e.value.errno in (errno.ENOTDIR, errno.EEXIST)


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    prefix = str(tmp_path / "keep")
    fastckpt.save({"a": np.arange(3.0)}, prefix, durable=False)
    with pytest.raises(fastckpt.UnsupportedDtypeError):
        fastckpt.save({"a": np.ones(2), "bad": np.zeros(1, dtype="M8[s]")}, prefix)
    np.testing.assert_array_equal(fastckpt.load(prefix)["a"], np.arange(3.0))


def test_native_reader_argument_errors_are_typed(ckpt):
    """The binding raises through the one Status -> exception mapping: no bare
    IndexError / ValueError / TypeError."""
    from fastckpt import _native

    prefix, _ = ckpt
    reader = _native.Reader(prefix)
    n = len(reader.entries())
    bad_entry = f"no entry 99 in checkpoint '{prefix}' (it has {n})"
    calls = {
        "entry": (lambda: reader.entry(99), bad_entry),
        "describe": (lambda: reader.describe(99), bad_entry),
        "check_bounds": (lambda: reader.check_bounds([99]), bad_entry),
        "read_strings": (lambda: reader.read_strings(99, 1), bad_entry),
        "plan_region": (lambda: reader.plan_region(99, [(0, -1)]), bad_entry),
        "read": (
            lambda: reader.read([(0, np.zeros(1), "extra")]),
            "read: each request must be an (entry, buffer) tuple",
        ),
        "read_to_device": (
            lambda: reader.read_to_device([(0, 0, -1)]),
            "read_to_device: device ordinal must be >= 0, not -1",
        ),
    }
    try:
        for what, (call, message) in calls.items():
            with pytest.raises(fastckpt.InvalidArgumentError) as e:
                call()
            assert str(e.value) == message, what
    finally:
        reader.close()


def test_plan_region_of_an_unpartitioned_tensor_is_an_argument_error(ckpt):
    from fastckpt import _native

    prefix, _ = ckpt
    reader = _native.Reader(prefix)
    try:
        index = reader.names()["w"]
        with pytest.raises(fastckpt.InvalidArgumentError) as e:
            reader.plan_region(index, [(0, -1)])
        assert str(e.value) == f"PlanSliceRead: entry {index} is not a partitioned tensor"
    finally:
        reader.close()
