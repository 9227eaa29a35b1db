"""Hostile and unusual inputs: odd array layouts, bad dtypes and names, extreme
sizes and counts, missing directories, and two processes sharing a directory.

Every failure must be the documented exception, name the tensor, and leave no
file behind; every accepted input must round-trip exactly.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import ml_dtypes
import numpy as np
import pytest
from checkpoint_builders import rewrite_index_entry  # fuzz/, on sys.path (conftest)
from google.protobuf import text_format

import fastckpt
from fastckpt.checkpoint_management import CheckpointState


def _verify(prefix: str) -> None:
    if hasattr(fastckpt, "verify"):
        fastckpt.verify(prefix)
    else:
        fastckpt.load(prefix)


def _native_le(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype


def _assert_round_trip(prefix: str, tensors: dict) -> dict:
    """Loads `prefix` and checks every tensor against `tensors` exactly."""
    loaded = fastckpt.load(prefix)
    expected_keys = sorted(k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k for k in tensors)
    assert sorted(loaded) == expected_keys
    for name, value in tensors.items():
        key = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
        got = loaded[key]
        value = np.asarray(value)
        assert got.shape == value.shape, key
        assert got.flags.c_contiguous, key
        if value.dtype == object or value.dtype.kind in "SU":
            assert got.dtype == object
            want = [x.encode() if isinstance(x, str) else bytes(x) for x in value.reshape(-1).tolist()]
            assert got.reshape(-1).tolist() == want, key
        else:
            assert got.dtype == _native_le(value.dtype), (key, got.dtype, value.dtype)
            assert got.dtype.byteorder in "=<|"
            assert got.tobytes() == np.ascontiguousarray(value.astype(got.dtype)).tobytes(), key
    _verify(prefix)
    return loaded


def _files(directory) -> list:
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


# ---------------------------------------------------------------------------------
# Array layouts.


def test_non_contiguous_arrays_round_trip(tmp_path):
    base = np.arange(60, dtype=np.float64).reshape(3, 4, 5)
    strings = np.array([[b"a", b"bb", b""], [b"ccc", b"d", b"\x00e"]], dtype=object)
    tensors = {
        "transposed": np.arange(12, dtype=np.float32).reshape(3, 4).T,
        "strided": np.arange(40, dtype=np.int64)[::3],
        "reversed": np.arange(10, dtype=np.int16)[::-1],
        "fortran": np.asfortranarray(base),
        "axes_swapped": base.swapaxes(0, 2)[:, 1:3],
        "real_of_complex": (np.arange(6) + 2j * np.arange(6)).real,
        "bf16_strided": np.arange(16, dtype=np.float32).astype(ml_dtypes.bfloat16)[1::2],
        "bool_view": (np.arange(20) % 3 == 0)[::2],
        "strings_T": strings.T,
        "bytes_S_T": np.array([[b"ab", b"c"], [b"d", b"efg"]]).T,
    }
    for name, value in tensors.items():
        assert not value.flags.c_contiguous, name
    snapshot = {k: (v.copy(), v.strides) for k, v in tensors.items()}
    prefix = str(tmp_path / "nc")
    fastckpt.save(tensors, prefix, num_shards=2, durable=False)
    _assert_round_trip(prefix, tensors)
    for k, (copy, strides) in snapshot.items():  # the caller's arrays are untouched
        assert tensors[k].strides == strides
        assert np.array_equal(tensors[k], copy)


def test_read_only_arrays_round_trip(tmp_path):
    frozen = np.arange(1000, dtype=np.int32)
    frozen.setflags(write=False)
    raw = np.frombuffer(bytes(range(256)) * 4, dtype=np.uint16)  # read-only buffer
    path = tmp_path / "mm.bin"
    np.arange(512, dtype=np.float32).tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=(16, 32))
    broadcast = np.broadcast_to(np.arange(7, dtype=np.int8), (5, 7))  # read-only, stride 0
    tensors = {"frozen": frozen, "frombuffer": raw, "memmap": mm, "memmap_T": mm.T, "broadcast": broadcast}
    for v in tensors.values():
        assert not v.flags.writeable
    prefix = str(tmp_path / "ro")
    fastckpt.save(tensors, prefix, durable=False)
    _assert_round_trip(prefix, tensors)
    # Saver.restore cannot fill a read-only array in place: it returns a new one.
    saver = fastckpt.Saver({"frozen": frozen})
    saver.save(None, str(tmp_path / "s" / "model"))
    replaced = saver.restore(None, str(tmp_path / "s" / "model"))
    assert list(replaced) == ["frozen"]
    assert replaced["frozen"] is not frozen and np.array_equal(replaced["frozen"], frozen)
    del mm


@pytest.mark.parametrize("dtype", [">f2", ">f4", ">f8", ">i2", ">i4", ">i8", ">u2", ">u4", ">u8", ">c8", ">c16"])
def test_big_endian_arrays_round_trip(tmp_path, dtype):
    native = (np.arange(24) * 3 - 20).astype(np.dtype(dtype).newbyteorder("<")).reshape(4, 6)
    if native.dtype.kind == "c":
        native = native + 1j * native[::-1]
    big = native.astype(dtype)
    assert big.dtype.byteorder == ">"
    tensors = {"big": big, "big_T": big.T, "big_scalar": big[1, 2].reshape(())}
    prefix = str(tmp_path / "be")
    fastckpt.save(tensors, prefix, durable=False)
    loaded = _assert_round_trip(prefix, tensors)
    assert loaded["big"].dtype == np.dtype(dtype).newbyteorder("<")
    assert np.array_equal(loaded["big"], native)
    assert np.array_equal(loaded["big_T"], native.T)
    assert big.dtype.byteorder == ">" and np.array_equal(big, native)  # input untouched


# ---------------------------------------------------------------------------------
# Rejected dtypes and names: the documented exception, naming the tensor, no files.


def _object_array(*items):
    a = np.empty(len(items), dtype=object)
    for i, x in enumerate(items):
        a[i] = x
    return a


@pytest.mark.parametrize(
    "values, index, type_name",
    [
        ((b"ok", 3), 1, "int"),
        ((None,), 0, "NoneType"),
        (("text", b"bytes", 1.5), 2, "float"),
        ((b"a", [b"nested"]), 1, "list"),
        ((np.float32(1.0),), 0, "float32"),
        ((b"a", b"b", {"k": 1}), 2, "dict"),
    ],
)
def test_object_array_of_non_strings_is_rejected(tmp_path, values, index, type_name):
    d = tmp_path / "out"
    tensors = {"good": np.ones(3), "bad/obj array": _object_array(*values)}
    with pytest.raises(fastckpt.UnsupportedDtypeError) as e:
        fastckpt.save(tensors, str(d / "p"), durable=False)
    assert str(e.value).startswith(f"tensor 'bad/obj array': element {index} of an object array is a {type_name}; ")
    assert isinstance(e.value, TypeError)
    assert _files(d) == []


@pytest.mark.parametrize(
    "name, array, what",
    [
        ("rec", np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]), "structured dtypes"),
        ("nested/rec", np.zeros((2, 2), dtype=[("p", [("x", "<f4"), ("y", "<f4")])]), "structured dtypes"),
        ("when", np.zeros(3, dtype="datetime64[s]"), "datetime64 dtypes"),
        ("delta", np.zeros(3, dtype="timedelta64[ms]"), "timedelta64 dtypes"),
        ("void", np.zeros(3, dtype="V8"), "void dtypes"),
    ],
)
def test_unsupported_dtypes_are_rejected(tmp_path, name, array, what):
    d = tmp_path / "out"
    with pytest.raises(fastckpt.UnsupportedDtypeError) as e:
        fastckpt.save({"ok": np.ones(2), name: array}, str(d / "p"), durable=False)
    msg = str(e.value)
    assert msg.startswith(f"tensor '{name}': numpy dtype "), msg
    assert msg.endswith(f"is not supported: {what} have no TensorFlow DataType"), msg
    assert _files(d) == []


@pytest.mark.parametrize(
    "tensors, message",
    [
        ({"a": np.ones(1), b"a": np.zeros(1)}, "duplicate tensor name 'a'"),
        ({"\udcff": np.ones(1), b"\xff": np.zeros(1)}, "duplicate tensor name "),
        ({"x/y": np.ones(1), b"x/y": np.array([b"s"], dtype=object)}, "duplicate tensor name 'x/y'"),
        ({"": np.ones(1)}, "tensor names must not be empty"),
        ({b"": np.ones(1)}, "tensor names must not be empty"),
        ({"ok": np.ones(1), "": np.array([b""], dtype=object)}, "tensor names must not be empty"),
    ],
)
def test_duplicate_and_empty_names_are_rejected(tmp_path, tensors, message):
    d = tmp_path / "out"
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.save(tensors, str(d / "p"), durable=False)
    assert str(e.value).startswith(message), str(e.value)
    assert isinstance(e.value, ValueError)
    assert [f for f in _files(d) if not f.startswith(".")] == []
    assert not any(".tempstate" in f for f in _files(d))


def test_saver_rejects_empty_variable_name():
    with pytest.raises(fastckpt.InvalidArgumentError, match="variable names must be non-empty strings"):
        fastckpt.Saver({"": np.ones(1)})


def test_unusual_names_round_trip(tmp_path):
    long_ascii = "x" * 10240
    long_unicode = "\u00e9\u4e2d" * 2048  # 2 + 3 bytes each: 10 KiB of UTF-8
    tensors = {
        "/": np.array(1, np.int8),
        "a/b/c/d": np.arange(3, dtype=np.int8),
        "/leading/slash": np.arange(4, dtype=np.int8),
        "trailing/slash/": np.arange(5, dtype=np.int8),
        " leading and trailing spaces ": np.arange(6, dtype=np.int8),
        "tab\tnew\nline": np.arange(7, dtype=np.int8),
        "caf\u00e9/\u4e2d\u6587/\U0001f600": np.arange(8, dtype=np.int8),
        "a\x00b": np.arange(9, dtype=np.int8),  # NUL allowed after the first byte
        long_ascii: np.arange(10, dtype=np.int8),
        long_ascii + "y": np.arange(11, dtype=np.int8),  # shares a 10 KiB prefix
        long_ascii[:-1] + "z": np.arange(12, dtype=np.int8),
        long_unicode: np.arange(13, dtype=np.int8),
        b"raw\xff\xfebytes": np.arange(14, dtype=np.int8),
        b"\xff": np.arange(15, dtype=np.int8),
        "\udcfe\udcfd": np.arange(16, dtype=np.int8),  # str spelling of b"\xfe\xfd"
        "\x7f\x01ctrl": np.array([b"string value"], dtype=object),
    }
    prefix = str(tmp_path / "names")
    fastckpt.save(tensors, prefix, num_shards=3, durable=False)
    _assert_round_trip(prefix, tensors)
    keys = {k.decode("utf-8", "surrogateescape") if isinstance(k, bytes) else k: v for k, v in tensors.items()}
    assert [n for n, _ in fastckpt.list_variables(prefix)] == sorted(keys)
    with fastckpt.load_checkpoint(prefix) as reader:
        for key, value in keys.items():
            assert reader.has_tensor(key)
            got = reader.get_tensor(key)
            assert got.tolist() == value.tolist(), key[:40]
    assert np.array_equal(fastckpt.load_variable(prefix, long_ascii), np.arange(10, dtype=np.int8))
    assert np.array_equal(fastckpt.load_variable(prefix, "raw\udcff\udcfebytes"), np.arange(14, dtype=np.int8))


def test_100k_small_tensors_round_trip(tmp_path):
    n = 100_000
    tensors = {}
    for i in range(n):
        kind = i % 4
        name = f"block_{i // 1000:03d}/layer_{i % 1000:03d}/v{i}"
        if kind == 0:
            tensors[name] = np.array(i, dtype=np.int64)
        elif kind == 1:
            tensors[name] = np.full(3, i, dtype=np.float32)
        elif kind == 2:
            tensors[name] = np.arange(i % 7, dtype=np.int16)
        else:
            tensors[name] = np.array([str(i).encode()], dtype=object)
    prefix = str(tmp_path / "many")
    t0 = time.perf_counter()
    result = fastckpt.save(tensors, prefix, num_shards=4, durable=False)
    t1 = time.perf_counter()
    loaded = fastckpt.load(prefix)
    t2 = time.perf_counter()
    print(
        f"\n100,000 small tensors: save {t1 - t0:.2f} s, load {t2 - t1:.2f} s "
        f"({result.nbytes} data bytes, index {os.path.getsize(prefix + '.index')} bytes)"
    )
    assert len(loaded) == n
    for name, value in tensors.items():
        got = loaded[name]
        assert got.shape == value.shape and got.dtype == value.dtype, name
        assert got.tolist() == value.tolist(), name
    with fastckpt.load_checkpoint(prefix) as reader:
        assert len(reader) == n
        assert reader.get_tensor("block_099/layer_999/v99999").tolist() == [b"99999"]


# ---------------------------------------------------------------------------------
# Sizes.


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_tensor_over_4gib(tmp_path):
    size = 4 * 2**30 + 3
    if shutil.disk_usage(tmp_path).free < 10 * 10**9:
        pytest.skip("needs 10 GB of free disk")
    if _mem_available() < 12 * 10**9:
        pytest.skip("needs 12 GB of available memory")
    big = np.zeros(size, np.uint8)
    marks = {2**32 - 1: 11, 2**32: 22, 2**32 + 1: 33, size - 2: 44, size - 1: 55, 7: 66}
    for pos, val in marks.items():
        big[pos] = val
    tensors = {
        "a_before": np.arange(5, dtype=np.uint8),
        "big": big,
        "z_after": np.arange(10, dtype=np.float64),
    }  # stored at offset > 2^32
    prefix = str(tmp_path / "huge")
    try:
        t0 = time.perf_counter()
        fastckpt.save(tensors, prefix, num_shards=1, durable=False)
        t1 = time.perf_counter()
        data = prefix + ".data-00000-of-00001"
        assert os.path.getsize(data) == 5 + size + 80
        assert fastckpt.list_variables(prefix) == [("a_before", [5]), ("big", [size]), ("z_after", [10])]
        _verify(prefix)
        with fastckpt.load_checkpoint(prefix) as reader:
            assert np.array_equal(reader.get_tensor("z_after"), tensors["z_after"])
            assert np.array_equal(reader.get_tensor("a_before"), tensors["a_before"])
            got = reader.get_tensor("big")
        t2 = time.perf_counter()
        assert got.shape == (size,) and got.dtype == np.uint8
        for pos, val in marks.items():
            assert got[pos] == val, pos
        assert got[-10:].tolist() == [marks.get(size - 10 + i, 0) for i in range(10)]
        assert np.count_nonzero(got) == len(marks)
        print(f"\n4 GiB + 3 tensor: save {t1 - t0:.1f} s, verify + read {t2 - t1:.1f} s")
        del got
    finally:
        for name in os.listdir(tmp_path):
            os.remove(tmp_path / name)


ZERO_SHAPES = [(0,), (0, 0), (0, 3), (3, 0), (2, 0, 4), (0, 0, 0, 0, 0), (1, 1, 0), (5, 0, 1 << 20)]


def test_zero_size_tensors_of_every_shape(tmp_path):
    tensors = {}
    for i, shape in enumerate(ZERO_SHAPES):
        tensors[f"f32/{i}"] = np.zeros(shape, np.float32)
        tensors[f"c128/{i}"] = np.zeros(shape, np.complex128)
        tensors[f"bool/{i}"] = np.zeros(shape, np.bool_)
        tensors[f"bf16/{i}"] = np.zeros(shape, ml_dtypes.bfloat16)
        tensors[f"str/{i}"] = np.empty(shape, dtype=object)
        tensors[f"S/{i}"] = np.zeros(shape, dtype="S4")
    tensors["f32/T"] = np.zeros((0, 4), np.float32).T
    tensors["scalar"] = np.array(3.5, np.float64)  # rank 0, one element, among the empties
    tensors["one"] = np.array([7], np.int32)
    prefix = str(tmp_path / "z")
    fastckpt.save(tensors, prefix, num_shards=4, durable=False)
    _assert_round_trip(prefix, tensors)
    shapes = dict(fastckpt.list_variables(prefix))
    for name, value in tensors.items():
        assert shapes[name] == list(value.shape), name

    only_empty = {f"e{i}": np.zeros(s, np.int64) for i, s in enumerate(ZERO_SHAPES)}
    prefix2 = str(tmp_path / "only_empty")
    result = fastckpt.save(only_empty, prefix2, num_shards=2, durable=False)
    assert result.nbytes == 0
    _assert_round_trip(prefix2, only_empty)
    assert sum(os.path.getsize(f) for f in result.files if ".data-" in f) == 0


# ---------------------------------------------------------------------------------
# Directories.


def test_save_creates_missing_directories(tmp_path):
    prefix = tmp_path / "a" / "b" / "c" / "model"
    fastckpt.save({"w": np.arange(4.0)}, str(prefix), durable=True)
    assert _files(prefix.parent) == ["model.data-00000-of-00001", "model.index"]
    assert np.array_equal(fastckpt.load(str(prefix))["w"], np.arange(4.0))


def test_saver_creates_one_missing_level_like_tensorflow(tmp_path):
    saver = fastckpt.Saver({"w": np.arange(4.0)})
    path = str(tmp_path / "new_dir" / "model")
    assert saver.save(None, path, global_step=3) == path + "-3"
    assert fastckpt.latest_checkpoint(str(tmp_path / "new_dir")) == path + "-3"


def test_saver_raises_value_error_when_two_levels_are_missing(tmp_path):
    saver = fastckpt.Saver({"w": np.arange(4.0)})
    path = str(tmp_path / "x" / "y" / "model")
    with pytest.raises(ValueError) as e:
        saver.save(None, path, global_step=1)
    assert str(e.value) == f"Parent directory of {path} doesn't exist, can't save."
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------------
# Two processes, one directory.

_CONCURRENT_WORKER = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import fastckpt
    d, name, steps, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    arrays = {"w": np.zeros(1 << 19, np.float32), "owner": np.array([name.encode()], dtype=object),
              "step": np.zeros((), np.int64)}
    saver = fastckpt.Saver(arrays, max_to_keep=2, num_shards=2, durable=True)
    while not os.path.exists(go):
        time.sleep(0.001)
    for step in range(steps):
        arrays["w"].fill(step)
        arrays["step"].fill(step)
        saver.save(None, os.path.join(d, name), global_step=step)
    print(os.path.join(d, f"{name}-{steps - 1}"))
""")


def test_two_processes_saving_into_one_directory(tmp_path):
    """Two Savers in two processes, one directory, the default state file.

    TensorFlow semantics: the ``checkpoint`` state file belongs to the
    directory, and each ``Saver.save`` rewrites it whole from that Saver's own
    in-memory list. Two Savers sharing a directory and ``latest_filename``
    overwrite each other's state: the last writer wins, ``latest_checkpoint``
    names the last writer's newest checkpoint, and (in TensorFlow) the
    ``all_model_checkpoint_paths`` of the file then lists only that writer's
    checkpoints. Retention is per Saver: each deletes only its own old
    checkpoints. (TensorFlow's advice is a directory or ``latest_filename`` per
    Saver.)

    fastckpt keeps "last writer wins" for ``model_checkpoint_path`` but, as its
    README documents, deliberately differs on the list: the update is a
    read-modify-write under an ``flock`` on the directory that keeps the other
    prefixes' entries whose checkpoints still exist. So at every moment the
    state file must be a complete, valid ``CheckpointState`` whose
    ``model_checkpoint_path`` is its last entry and exists, with at most
    ``max_to_keep`` entries per prefix, all existing; at the end it lists both
    processes' kept checkpoints; neither process removed the other's
    in-flight temporary files (they are locked); no temporary file remains;
    both processes' last checkpoints load.
    """
    d = str(tmp_path / "shared")
    os.makedirs(d)
    go = str(tmp_path / "go")
    steps = 15
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_WORKER, d, name, str(steps), go],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("alpha", "beta")
    }
    state_file = os.path.join(d, "checkpoint")
    polls = valid = 0
    writers, both_listed = set(), 0
    entry_re = re.compile(re.escape(d) + r"/(alpha|beta)-(\d+)")
    open(go, "w").close()
    deadline = time.monotonic() + 120
    try:
        while any(p.poll() is None for p in procs.values()):
            assert time.monotonic() < deadline, "workers did not finish"
            polls += 1
            try:
                with open(state_file, "rb") as f:
                    raw = f.read()
            except FileNotFoundError:
                assert not writers, "the state file disappeared"
                continue
            state = CheckpointState()
            text_format.Parse(raw.decode("utf-8"), state)  # strict: a partial file fails here
            paths = list(state.all_model_checkpoint_paths)
            assert state.model_checkpoint_path and paths and paths[-1] == state.model_checkpoint_path, raw
            matches = [entry_re.fullmatch(p) for p in paths]
            assert all(matches), raw
            assert len(set(paths)) == len(paths), raw
            for name in ("alpha", "beta"):
                assert sum(m.group(1) == name for m in matches) <= 2, raw  # max_to_keep per saver
            writers.add(matches[-1].group(1))
            both_listed += len({m.group(1) for m in matches}) == 2
            missing = [p for p in paths if not os.path.exists(p + ".index")]
            if missing:
                # Only possible if the state moved on between the two reads.
                with open(state_file, "rb") as f:
                    assert f.read() != raw, f"state lists missing checkpoints {missing}: {raw!r}"
            valid += 1
        outs = {}
        for name, p in procs.items():
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, f"{name} failed: {err.decode()[-3000:]}"
            outs[name] = out.decode().strip()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    print(
        f"\nstate file polled {polls} times ({valid} valid reads, {both_listed} listing both "
        f"prefixes), last writers seen: {sorted(writers)}"
    )

    final = fastckpt.get_checkpoint_state(d)
    assert final.model_checkpoint_path in outs.values()  # the last writer wins
    assert fastckpt.latest_checkpoint(d) == final.model_checkpoint_path
    kept = {name: [os.path.join(d, f"{name}-{s}") for s in (steps - 2, steps - 1)] for name in outs}
    last_writer = os.path.basename(final.model_checkpoint_path).split("-")[0]
    # Both prefixes' kept checkpoints are listed, the last writer's at the end.
    assert sorted(final.all_model_checkpoint_paths) == sorted(kept["alpha"] + kept["beta"])
    assert list(final.all_model_checkpoint_paths)[-2:] == kept[last_writer]
    for name, last_path in outs.items():
        assert last_path == os.path.join(d, f"{name}-{steps - 1}")
        values = fastckpt.load(last_path)
        assert values["owner"].tolist() == [name.encode()]
        assert int(values["step"]) == steps - 1 and bool(np.all(values["w"] == steps - 1))
        _verify(last_path)
    names = os.listdir(d)
    assert not [n for n in names if ".tempstate" in n or ".tmp" in n], names
    for name in ("alpha", "beta"):  # each kept exactly its own max_to_keep newest
        kept_files = sorted(n for n in names if n.startswith(name + "-") and n.endswith(".index"))
        assert kept_files == [f"{name}-{steps - 2}.index", f"{name}-{steps - 1}.index"], kept_files


# ---------------------------------------------------------------------------------
# Damaged index entries that every reader must refuse alike (load, get_tensor, verify).


def _set_shape(*dims):
    def mutate(e):
        del e.shape.dim[:]
        for d in dims:
            e.shape.dim.add().size = d

    return mutate


def _every_reader_raises(prefix: str, name: str, cls, message: str) -> None:
    """load, get_tensor and verify all raise `cls` with exactly `message`."""
    calls = {
        "load": lambda: fastckpt.load(prefix),
        "get_tensor": lambda: fastckpt.load_variable(prefix, name),
        "verify": lambda: fastckpt.verify(prefix),
    }
    for what, call in calls.items():
        with pytest.raises(cls) as e:
            call()
        assert type(e.value) is cls, what
        assert str(e.value) == message, what


def test_zero_size_tensor_with_a_damaged_crc(tmp_path):
    """A zero-byte tensor's CRC is that of no bytes: load() used to skip it and
    return the damaged entry's shape (2^62, 0)."""
    prefix = str(tmp_path / "z")
    fastckpt.save({"e": np.zeros((0, 4), np.uint8), "w": np.arange(3.0)}, prefix, durable=False)

    def damage(e):
        _set_shape(2**62, 0)(e)
        e.crc32c ^= 0x10

    rewrite_index_entry(prefix, b"e", damage)
    with fastckpt.load_checkpoint(prefix) as reader:
        assert reader.get_variable_to_shape_map()["e"] == [2**62, 0]
        with pytest.raises(fastckpt.DataLossError) as e:
            reader.get_tensor("e")
    message = str(e.value)
    assert re.fullmatch(
        rf"tensor 'e' in '{re.escape(prefix)}\.data-00000-of-00001': data checksum mismatch "
        r"\(stored CRC32C [0-9a-f]{8}, a tensor of no bytes has 00000000\)",
        message,
    ), message
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.load(prefix)
    assert str(e.value) == message
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.load_into(prefix, {"e": np.zeros((2**62, 0), np.uint8)})
    assert str(e.value) == message
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    ((name, reason),) = [(b.name, b.reason) for b in e.value.report.bad]
    assert name == "e" and reason.startswith("data checksum mismatch (stored CRC32C ")


def test_zero_size_tensor_with_its_crc_intact_loads(tmp_path):
    """The same shape with the right CRC (that of no bytes) is a valid tensor."""
    prefix = str(tmp_path / "z")
    fastckpt.save({"e": np.zeros((0, 4), np.uint8)}, prefix, durable=False)
    rewrite_index_entry(prefix, b"e", _set_shape(2**62, 0))
    assert fastckpt.load(prefix)["e"].shape == (2**62, 0)
    assert fastckpt.verify(prefix).ok


def test_string_tensor_of_impossible_zero_size_shape(tmp_path):
    """Strings are held as 8-byte references: [2^62, 0] cannot be an array.
    get_tensor and load raised a plain ValueError and verify passed it."""
    prefix = str(tmp_path / "s")
    fastckpt.save({"s": np.empty((0,), dtype=object), "w": np.arange(3.0)}, prefix, durable=False)
    rewrite_index_entry(prefix, b"s", _set_shape(2**62, 0))
    _every_reader_raises(
        prefix, "s", fastckpt.DataLossError, f"corrupt index file '{prefix}.index': entry 's' has an impossible shape"
    )


def test_string_tensor_of_largest_zero_size_shape_loads(tmp_path):
    """[2^59, 0] strings: 2^62 bytes of references, the bound, still an array."""
    prefix = str(tmp_path / "s")
    fastckpt.save({"s": np.empty((0,), dtype=object)}, prefix, durable=False)
    rewrite_index_entry(prefix, b"s", _set_shape(2**59, 0))
    assert fastckpt.load(prefix)["s"].shape == (2**59, 0)
    assert fastckpt.verify(prefix).ok


# ---------------------------------------------------------------------------------
# Special files where a checkpoint file should be: refused at once, named.
# Each scenario runs in a child process with a timeout, because opening a FIFO
# for reading blocks until a writer appears: a regression must fail the test,
# not hang the suite.

_SPECIAL_FILE_SCRIPT = textwrap.dedent("""
    import json, os, socket, sys
    import numpy as np
    import fastckpt
    root, kind, which = sys.argv[1:4]
    prefix = os.path.join(root, "m")
    fastckpt.save({"a": np.arange(4.0), "b": np.arange(3)}, prefix, num_shards=1, durable=False)
    target = prefix + (".index" if which == "index" else ".data-00000-of-00001")
    os.remove(target)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(target)
    elif kind == "device":
        os.symlink("/dev/zero", target)
    elif kind == "directory":
        os.mkdir(target)
    out = {}
    calls = {
        "load": lambda: fastckpt.load(prefix),
        "get_tensor": lambda: fastckpt.load_variable(prefix, "a"),
        "list_variables": lambda: fastckpt.list_variables(prefix),
        "verify": lambda: fastckpt.verify(prefix),
    }
    for what, call in calls.items():
        try:
            result = call()
            out[what] = ["ok", repr(result)]
        except Exception as e:
            out[what] = [type(e).__name__, str(e), getattr(e, "errno", None), getattr(e, "filename", None)]
    from fastckpt.cli import main
    out["cli_ls"] = main(["ls", prefix])
    out["cli_verify"] = main(["verify", prefix])
    print(json.dumps({"target": target, "results": out}))
""")


def _special_file_case(tmp_path, kind: str, which: str) -> dict:
    import json

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run(
        [sys.executable, "-c", _SPECIAL_FILE_SCRIPT, str(tmp_path), kind, which],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", "")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


SPECIAL_KINDS = {"fifo": "a FIFO (named pipe)", "socket": "a socket", "device": "a character device"}


@pytest.mark.parametrize("kind", sorted(SPECIAL_KINDS))
def test_special_file_as_index_is_refused(tmp_path, kind):
    case = _special_file_case(tmp_path, kind, "index")
    target = case["target"]
    message = f"cannot read '{target}': it is {SPECIAL_KINDS[kind]}, not a regular file"
    for what in ("load", "get_tensor", "list_variables", "verify"):
        assert case["results"][what] == ["CheckpointIOError", message, errno.EINVAL, target], what
    assert (case["results"]["cli_ls"], case["results"]["cli_verify"]) == (2, 2)


@pytest.mark.parametrize("kind", sorted(SPECIAL_KINDS))
def test_special_file_as_data_file_is_refused(tmp_path, kind):
    """The index is readable, so the checkpoint lists; reading refuses the data file."""
    case = _special_file_case(tmp_path, kind, "data")
    target, results = case["target"], case["results"]
    message = f"cannot read '{target}': it is {SPECIAL_KINDS[kind]}, not a regular file"
    assert results["list_variables"] == ["ok", "[('a', [4]), ('b', [3])]"]
    for what in ("load", "get_tensor", "verify"):
        assert results[what] == ["CheckpointIOError", message, errno.EINVAL, target], what
    assert (results["cli_ls"], results["cli_verify"]) == (0, 2)


def test_directory_as_data_file_is_a_directory_error(tmp_path):
    case = _special_file_case(tmp_path, "directory", "data")
    target, results = case["target"], case["results"]
    message = f"cannot read '{target}': it is a directory, not a regular file"
    for what in ("load", "get_tensor", "verify"):
        assert results[what] == ["CheckpointIsADirectoryError", message, errno.EISDIR, target], what
    assert results["list_variables"] == ["ok", "[('a', [4]), ('b', [3])]"]


def test_directory_as_index_is_a_directory_error(tmp_path):
    """`m.index` a directory: not a checkpoint file, so `m` is not resolved through it."""
    case = _special_file_case(tmp_path, "directory", "index")
    target, results = case["target"], case["results"]
    message = f"cannot read '{target}': it is a directory, not a regular file"
    for what in ("load", "get_tensor", "list_variables", "verify"):
        assert results[what] == ["CheckpointIsADirectoryError", message, errno.EISDIR, target], what
