"""Save/load round trips for every dtype and shape class, shard counts and threads."""

from __future__ import annotations

import os

import ml_dtypes
import numpy as np
import pytest
from helpers import FIXED_SIZE_DTYPES

import fastckpt

FIXED_DTYPES = FIXED_SIZE_DTYPES

SHAPES = [(), (0,), (1,), (7,), (3, 0, 2), (2, 3), (2, 3, 4, 1, 2)]


def _sample(dtype, shape, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if dtype.kind == "c":
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
    return (rng.standard_normal(shape) * 4).astype(dtype)


def _assert_same(a, b):
    assert a.dtype == b.dtype
    assert a.shape == b.shape
    if a.dtype == object:
        assert a.tolist() == b.tolist()
    else:
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", FIXED_DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_every_shape(tmp_path, dtype):
    tensors = {f"t{i}": _sample(dtype, shape, i) for i, shape in enumerate(SHAPES)}
    prefix = str(tmp_path / "ckpt")
    result = fastckpt.save(tensors, prefix, durable=False)
    assert result.prefix == prefix
    assert result.nbytes == sum(t.nbytes for t in tensors.values())
    loaded = fastckpt.load(prefix)
    assert sorted(loaded) == sorted(tensors)
    for name, value in tensors.items():
        _assert_same(value, loaded[name])


def test_string_tensors(tmp_path):
    tensors = {
        "bytes_with_nul": np.array([b"a\x00b", b"", b"\xff" * 300], dtype=object),
        "unicode": np.array([["h\u00e9llo", "\u4e16\u754c"], ["", "x"]], dtype=object),
        "scalar": np.array(b"just one", dtype=object),
        "empty": np.array([], dtype=object).reshape(0, 3),
        "fixed_width": np.array([b"ab", b"c"]),
        "numpy_unicode": np.array(["\u00fcber", "z"]),
    }
    prefix = str(tmp_path / "s")
    fastckpt.save(tensors, prefix, durable=False)
    with fastckpt.load_checkpoint(prefix) as r:
        assert r.get_tensor("bytes_with_nul").tolist() == [b"a\x00b", b"", b"\xff" * 300]
        assert r.get_tensor("unicode").tolist() == [["h\u00e9llo".encode(), "\u4e16\u754c".encode()], [b"", b"x"]]
        scalar = r.get_tensor("scalar")
        assert scalar.shape == () and scalar.dtype == object and scalar.item() == b"just one"
        assert r.get_tensor("empty").shape == (0, 3)
        assert r.get_tensor("fixed_width").tolist() == [b"ab", b"c"]
        assert r.get_tensor("numpy_unicode").tolist() == ["\u00fcber".encode(), b"z"]
        assert r.get_variable_to_dtype_map()["unicode"] == np.dtype(object)


@pytest.mark.parametrize("num_shards", [1, 2, 5])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_shards_and_threads(tmp_path, num_shards, threads, monkeypatch):
    # Small work units force large tensors to be split into many CRC-combined pieces.
    monkeypatch.setenv("FASTCKPT_TASK_BYTES", "4096")
    rng = np.random.default_rng(1)
    tensors = {f"layer{i}/w": rng.standard_normal((64, 37 + i)).astype(np.float32) for i in range(9)}
    tensors["big"] = rng.integers(0, 255, size=100_003, dtype=np.uint8)
    tensors["scalar"] = np.float64(3.5)
    prefix = str(tmp_path / "m")
    result = fastckpt.save(tensors, prefix, num_shards=num_shards, threads=threads, durable=False)
    assert result.num_shards == num_shards
    expected_files = [f"{prefix}.data-{s:05d}-of-{num_shards:05d}" for s in range(num_shards)]
    assert result.files == expected_files + [prefix + ".index"]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(f) for f in result.files)
    loaded = fastckpt.load(prefix, threads=threads)
    for name, value in tensors.items():
        _assert_same(np.asarray(value), loaded[name])


def test_automatic_shard_count_is_one_for_small_checkpoints(tmp_path):
    result = fastckpt.save({"a": np.ones(10)}, tmp_path / "p", durable=False)
    assert result.num_shards == 1
    assert os.path.exists(str(tmp_path / "p") + ".data-00000-of-00001")


def test_non_contiguous_big_endian_and_readonly_inputs(tmp_path):
    base = np.arange(24, dtype=np.int32).reshape(4, 6)
    readonly = np.arange(5, dtype=np.float32)
    readonly.setflags(write=False)
    tensors = {
        "transposed": base.T,
        "strided": base[:, ::2],
        "big_endian": np.arange(6, dtype=">f8").reshape(2, 3),
        "readonly": readonly,
    }
    prefix = str(tmp_path / "odd")
    fastckpt.save(tensors, prefix, durable=False)
    loaded = fastckpt.load(prefix)
    np.testing.assert_array_equal(loaded["transposed"], base.T)
    np.testing.assert_array_equal(loaded["strided"], base[:, ::2])
    assert loaded["big_endian"].dtype == np.dtype("<f8")
    np.testing.assert_array_equal(loaded["big_endian"], np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(loaded["readonly"], readonly)


def test_python_scalars_lists_and_buffer_objects(tmp_path):
    # Python scalars and lists are a nested state: they come back as they went
    # in, and every number is a 0-d tensor TensorFlow reads by its path.
    tensors = {"i": 7, "f": 2.5, "b": True, "lst": [[1, 2], [3, 4]], "buf": memoryview(bytearray(b"\x01\x02\x03"))}
    prefix = str(tmp_path / "py")
    fastckpt.save(tensors, prefix, durable=False)
    loaded = fastckpt.load(prefix)
    assert type(loaded["i"]) is int and loaded["i"] == 7
    assert type(loaded["f"]) is float and loaded["f"] == 2.5
    assert loaded["b"] is True
    assert loaded["lst"] == [[1, 2], [3, 4]] and type(loaded["lst"][0][0]) is int
    assert loaded["buf"].tolist() == [1, 2, 3] and loaded["buf"].dtype == np.uint8
    with fastckpt.load_checkpoint(prefix) as r:
        assert r.get_tensor("i").dtype == np.int64 and r.get_tensor("lst/1/0") == 3
        assert r.get_tensor("f").dtype == np.float64 and r.get_tensor("b").dtype == np.bool_


def test_reader_api(tmp_path):
    tensors = {
        "b/w": np.zeros((2, 3), np.float32),
        "a": np.arange(4, dtype=np.int64),
        "name with spaces/\u00fc": np.float16(1.5),
    }
    prefix = str(tmp_path / "r")
    fastckpt.save(tensors, prefix, durable=False)
    with fastckpt.load_checkpoint(prefix) as r:
        assert list(r) == ["a", "b/w", "name with spaces/\u00fc"]
        assert len(r) == 3 and "a" in r and "zzz" not in r
        assert r.has_tensor("b/w") and not r.has_tensor("b")
        assert r.get_variable_to_shape_map() == {"b/w": [2, 3], "a": [4], "name with spaces/\u00fc": []}
        assert r.get_variable_to_dtype_map() == {
            "b/w": np.dtype(np.float32),
            "a": np.dtype(np.int64),
            "name with spaces/\u00fc": np.dtype(np.float16),
        }
        np.testing.assert_array_equal(r.get_tensor("a"), [0, 1, 2, 3])
        np.testing.assert_array_equal(r.get_slice("b/w", "0,1:-"), np.zeros((1, 3), np.float32))
        with pytest.raises(fastckpt.TensorNotFoundError, match="tensor 'nope' not found in checkpoint"):
            r.get_tensor("nope")
    with pytest.raises(fastckpt.FailedPreconditionError, match="closed"):
        r.get_tensor("a")
    assert fastckpt.list_variables(prefix) == [("a", [4]), ("b/w", [2, 3]), ("name with spaces/\u00fc", [])]
    np.testing.assert_array_equal(fastckpt.load_variable(prefix, "a:0"), [0, 1, 2, 3])


def test_overwrite_same_prefix(tmp_path):
    prefix = str(tmp_path / "same")
    fastckpt.save({"x": np.arange(1000.0)}, prefix, num_shards=3, durable=False)
    fastckpt.save({"x": np.arange(5.0)}, prefix, num_shards=1, durable=True)
    np.testing.assert_array_equal(fastckpt.load(prefix)["x"], np.arange(5.0))


def test_no_temporary_files_left_behind(tmp_path):
    fastckpt.save({"a": np.ones(3)}, tmp_path / "c", durable=True)
    assert not [f for f in os.listdir(tmp_path) if "tempstate" in f]


def test_build_info():
    info = fastckpt.build_info()
    assert info["version"] == fastckpt.__version__
    assert info["crc32c_impl"] in info["crc32c_impls"]
    assert info["io_threads"] >= 1
    assert isinstance(info["cuda_driver_found"], bool)


def test_version_matches_pyproject():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), encoding="utf-8") as f:
        assert f'version = "{fastckpt.__version__}"' in f.read()


class _ArrayInterfaceOnly:
    """Exposes memory only through __array_interface__ (as many array libraries do)."""

    def __init__(self, arr):
        self._arr = arr
        self.__array_interface__ = arr.__array_interface__


class _DLPackOnly:
    """Exposes memory only through DLPack."""

    def __init__(self, arr):
        self._arr = arr

    def __dlpack__(self, **kwargs):
        return self._arr.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._arr.__dlpack_device__()


def test_array_protocols(tmp_path):
    a = np.arange(12, dtype=np.int16).reshape(3, 4)
    b = np.linspace(0, 1, 7, dtype=np.float64)
    prefix = str(tmp_path / "proto")
    fastckpt.save({"iface": _ArrayInterfaceOnly(a), "dlpack": _DLPackOnly(b)}, prefix, durable=False)
    loaded = fastckpt.load(prefix)
    _assert_same(a, loaded["iface"])
    _assert_same(b, loaded["dlpack"])


def test_torch_cpu_tensors(tmp_path):
    import torch

    tensors = {
        "f": torch.arange(6, dtype=torch.float32).reshape(2, 3),
        "bf": torch.tensor([1.5, -2.0], dtype=torch.bfloat16),
        "t": torch.arange(6, dtype=torch.int64).reshape(2, 3).t(),
    }
    prefix = str(tmp_path / "torch")
    fastckpt.save(tensors, prefix, durable=False)
    loaded = fastckpt.load(prefix)
    np.testing.assert_array_equal(loaded["f"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert loaded["bf"].dtype == ml_dtypes.bfloat16
    assert loaded["bf"].astype(np.float32).tolist() == [1.5, -2.0]
    np.testing.assert_array_equal(loaded["t"], np.arange(6).reshape(2, 3).T)


def test_load_needs_no_second_copy(tmp_path):
    """Loading N bytes raises peak RSS by about N, not 2N (reads land in the result arrays)."""
    import subprocess
    import sys
    import textwrap

    prefix = str(tmp_path / "mem")
    n = 256 << 20
    fastckpt.save({f"t{i}": np.full(n // 8, i, np.uint8) for i in range(8)}, prefix, durable=False)
    # VmHWM (peak RSS of this process image); ru_maxrss would be inherited across fork+exec.
    code = textwrap.dedent(f"""
        import fastckpt
        load = fastckpt.load  # its modules load on first use: before the measurement
        def peak():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024
        before = peak()
        values = load({prefix!r})
        after = peak()
        assert all(int(values[f"t{{i}}"][0]) == i and int(values[f"t{{i}}"][-1]) == i for i in range(8))
        print(after - before)
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    extra = int(proc.stdout.strip())
    assert n * 0.9 < extra < n + (48 << 20), extra


def test_directory_resolves_to_latest_checkpoint(tmp_path):
    saver = fastckpt.Saver({"a": np.arange(3.0)})
    saver.save(None, str(tmp_path / "m"), global_step=1)
    saver.var_list["a"][:] = 7
    saver.save(None, str(tmp_path / "m"), global_step=2)
    np.testing.assert_array_equal(fastckpt.load(str(tmp_path))["a"], [7.0, 7.0, 7.0])
    with fastckpt.load_checkpoint(tmp_path) as r:
        assert r.prefix == str(tmp_path / "m-2")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(fastckpt.CheckpointNotFoundError, match="no checkpoint in directory"):
        fastckpt.load(str(empty))
