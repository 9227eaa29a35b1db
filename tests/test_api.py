"""The Python API a new user meets: prefixes, values that are no arrays,
load_variable's scalars, ``reader[name]``, numpy-style ``get_slice`` and the
``array_type`` of a load."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

import fastckpt
from fastckpt.writer import partitioned_items, write_items

# -- the package's import ------------------------------------------------------------

_FORMAT_ONLY = r"""
import json, sys
sys.path.insert(0, sys.argv[2])
import fastckpt.format.dtypes as dtypes
import fastckpt.format.slices as slices
from fastckpt.proto import BundleEntryProto
from table_codec import Table

entries = {}
with open(sys.argv[1] + ".index", "rb") as f:
    for key, value in Table.parse(f.read()).entries():
        if key == b"":
            continue  # the header entry
        entry = BundleEntryProto.FromString(value)
        if key[:1] == b"\x00":  # a slice key
            name, extents = slices.decode_slice_key(key)
            key = f"{name}[{slices.format_slice_spec(extents)}]".encode()
        entries[key.decode()] = [dtypes.dtype_name(entry.dtype), [d.size for d in entry.shape.dim],
                                 [slices.format_slice_spec([(e.start, e.length if e.HasField("length") else -1)
                                                            for e in s.extent]) for s in entry.slices]]
print(json.dumps({"entries": entries, "native": "fastckpt._native" in sys.modules,
                  "loaded": sorted(m for m in sys.modules if m.startswith("fastckpt."))}))
"""


def test_the_format_layer_imports_without_the_native_extension(tmp_path):
    """``import fastckpt.format`` (and the proto classes) parses a checkpoint's
    index without loading ``fastckpt._native``."""
    from checkpoint_builders import write_partitioned

    prefix = str(tmp_path / "ck")
    write_partitioned(
        prefix,
        "part",
        np.arange(12, dtype=np.int32).reshape(4, 3),
        [[(0, 2), (0, -1)], [(2, 2), (0, -1)]],
        extra={"h": np.ones(5, dtype=ml_dtypes.bfloat16)},
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FASTCKPT_MAX_THREADS", "FASTCKPT_CRC32C")}
    fuzz = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz")
    out = subprocess.run(
        [sys.executable, "-c", _FORMAT_ONLY, prefix, fuzz], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["entries"] == {
        "h": ["bfloat16", [5], []],
        "part": ["int32", [4, 3], ["0,2:-", "2,2:-"]],
        "part[0,2:-]": ["int32", [2, 3], []],
        "part[2,2:-]": ["int32", [2, 3], []],
    }
    assert got["native"] is False
    assert "fastckpt.reader" not in got["loaded"] and "fastckpt.writer" not in got["loaded"]


def test_every_public_name_resolves_from_a_fresh_import():
    """The names are bound on first use: ``from fastckpt import *``, attribute
    access and dir() agree with __all__, and each is the object its module
    defines (``fastckpt.convert`` and ``fastckpt.diff`` are the functions,
    even once their modules are imported)."""
    code = r"""
import json, sys
import fastckpt.convert, fastckpt.diff  # the modules first: the names stay the functions
import fastckpt
names = {}
exec("from fastckpt import *", names)
print(json.dumps({
    "star": sorted(k for k in names if k != "__builtins__"),
    "dir_has_all": set(fastckpt.__all__) <= set(dir(fastckpt)),
    "convert": fastckpt.convert is sys.modules["fastckpt.convert"].convert,
    "diff": fastckpt.diff is sys.modules["fastckpt.diff"].diff,
    "same": all(getattr(fastckpt, n) is names[n] for n in fastckpt.__all__),
    "submodule": fastckpt.writer is sys.modules["fastckpt.writer"],
    "version": fastckpt.__version__ == fastckpt._native.__version__,
}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got.pop("star") == sorted(fastckpt.__all__)
    assert got == {"dir_has_all": True, "convert": True, "diff": True, "same": True, "submodule": True, "version": True}
    assert fastckpt.save is fastckpt.writer.save and fastckpt.Saver is fastckpt.saver.Saver
    with pytest.raises(AttributeError, match="^module 'fastckpt' has no attribute 'no_such_name'$"):
        fastckpt.no_such_name  # noqa: B018


# -- save: the prefix ------------------------------------------------------------


@pytest.mark.parametrize("blocking", [True, False])
@pytest.mark.parametrize("form", ["trailing slash", "existing directory", "new directory/", "dot"])
def test_a_directory_prefix_is_refused_and_nothing_is_written(tmp_path, form, blocking):
    (tmp_path / "run").mkdir()
    prefix = {
        "trailing slash": f"{tmp_path / 'run'}/",
        "existing directory": str(tmp_path / "run"),
        "new directory/": f"{tmp_path / 'new'}/",
        "dot": f"{tmp_path / 'run'}/.",
    }[form]
    suggestion = str(tmp_path / ("new" if form == "new directory/" else "run") / "model")
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        fastckpt.save({"w": np.ones(3)}, prefix, blocking=blocking)
    assert str(info.value) == (
        f"checkpoint prefix '{prefix}' is a directory; a prefix is a path and a file name stem "
        f"(the files are PREFIX.index and PREFIX.data-*), e.g. '{suggestion}'"
    )
    assert fastckpt.wait_for_pending_saves(timeout=60)
    assert sorted(os.listdir(tmp_path)) == ["run"] and os.listdir(tmp_path / "run") == []


def test_an_empty_prefix_is_refused(tmp_path):
    with pytest.raises(
        fastckpt.InvalidArgumentError, match="^the checkpoint prefix is empty; a prefix is a path and a file name stem"
    ):
        fastckpt.save({"w": np.ones(3)}, "")


def test_the_suggested_prefix_works(tmp_path):
    fastckpt.save({"w": np.ones(3)}, tmp_path / "run" / "model")
    assert sorted(os.listdir(tmp_path / "run")) == ["model.data-00000-of-00001", "model.index"]


# -- save: values that are no arrays ------------------------------------------------


def test_nested_lists_and_big_integers_are_a_state_that_round_trips(tmp_path):
    # Lists are containers: a ragged list is a valid nested state, and ints of
    # any size come back as Python ints (beyond 64 bits as their digits).
    state = {
        "ok": np.ones(2),
        "ragged": [[1, 2], [3]],
        "mixed": [1, [2, 3]],
        "big": 2**70,
        "bigs": [[-1], [2**70]],
        "neg": -(2**63),
        "dict": {"a": 1},
        "none": None,
    }
    fastckpt.save(state, tmp_path / "ck")
    back = fastckpt.load(tmp_path / "ck")
    assert set(back) == set(state)
    np.testing.assert_array_equal(back.pop("ok"), state["ok"])
    assert back == {k: v for k, v in state.items() if k != "ok"}
    assert type(back["big"]) is int and type(back["bigs"][1][0]) is int


class Opaque:
    pass


@pytest.mark.parametrize(
    "value, described",
    [(Opaque(), "an Opaque"), (object(), "an object"), ({1, 2}, "a set"), (print, "a builtin_function_or_method")],
)
def test_an_object_of_no_supported_kind_names_its_path_and_type(tmp_path, value, described):
    with pytest.raises(fastckpt.UnsupportedDtypeError) as info:
        fastckpt.save({"optim": {"state": {0: {"foo": value}}}, "w": np.ones(2)}, tmp_path / "ck")
    assert str(info.value) == (
        f"optim/state/0/foo: {described}, which a checkpoint cannot hold (leaves are arrays, numbers, "
        "bool, None, str and bytes; pass allow_pickle=True to pickle other objects)"
    )
    assert isinstance(info.value, TypeError)
    assert os.listdir(tmp_path) == []


# -- load_variable ---------------------------------------------------------------


@pytest.mark.tf
def test_load_variable_returns_what_tensorflow_returns(tmp_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    prefix = str(tmp_path / "ck")
    fastckpt.save(
        {
            "f": np.float32(1.5),
            "i": np.int64(-7),
            "s": np.array(b"hello", dtype=object),
            "v": np.arange(3, dtype=np.float32),
            "b": np.bool_(True),
        },
        prefix,
    )
    for name, want_type, want in [
        ("f", np.float32, 1.5),
        ("i", np.int64, -7),
        ("s", bytes, b"hello"),
        ("b", np.bool_, True),
    ]:
        ours, theirs = fastckpt.load_variable(prefix, name), tf.train.load_variable(prefix, name)
        assert type(theirs) is want_type and theirs == want, name  # what TensorFlow does
        assert type(ours) is type(theirs) and ours == theirs, name
    ours, theirs = fastckpt.load_variable(prefix, "v:0"), tf.train.load_variable(prefix, "v")
    assert type(ours) is type(theirs) is np.ndarray
    assert ours.dtype == theirs.dtype and ours.tolist() == theirs.tolist() == [0.0, 1.0, 2.0]


def test_load_variable_of_a_scalar_is_a_numpy_scalar(tmp_path):
    fastckpt.save(
        {
            "step": np.int64(1000),
            "lr": np.float32(0.5),
            "name": np.array("é", dtype=object),
            "h": ml_dtypes.bfloat16(2.5),
        },
        tmp_path / "ck",
    )
    step = fastckpt.load_variable(tmp_path / "ck", "step")
    assert type(step) is np.int64 and step == 1000
    lr = fastckpt.load_variable(tmp_path / "ck", "lr:0")
    assert type(lr) is np.float32 and lr == 0.5
    name = fastckpt.load_variable(tmp_path / "ck", "name")
    assert type(name) is bytes and name == "é".encode()
    h = fastckpt.load_variable(tmp_path / "ck", "h")
    assert type(h) is ml_dtypes.bfloat16 and float(h) == 2.5


# -- reader[name] ----------------------------------------------------------------


def test_reader_getitem(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    fastckpt.save({"w": w, "s": np.array([b"a", b"bc"], dtype=object)}, tmp_path / "ck")
    with fastckpt.load_checkpoint(tmp_path / "ck") as reader:
        assert np.array_equal(reader["w"], w) and reader["w"].dtype == np.float32
        assert reader["s"].tolist() == [b"a", b"bc"]
        with pytest.raises(fastckpt.TensorNotFoundError) as info:
            reader["missing"]
        assert isinstance(info.value, KeyError)
        assert str(info.value) == f"tensor 'missing' not found in checkpoint '{tmp_path / 'ck'}'"
        as_dict = dict(reader)  # keys() and [] make it a mapping
        assert sorted(as_dict) == ["s", "w"] and np.array_equal(as_dict["w"], w)


# -- get_slice ----------------------------------------------------------------------

FULL = np.arange(4 * 6 * 5, dtype=np.float32).reshape(4, 6, 5)

INDICES = [
    np.s_[1:3, ...],
    (slice(0, 2), Ellipsis),
    np.s_[1],
    np.s_[-1],
    np.s_[1, 2],
    np.s_[1, 2, 3],
    np.s_[..., 2],
    np.s_[..., -2:],
    np.s_[:, 1:4, ...],
    np.s_[2:2],
    np.s_[3:1, :, 0],
    np.s_[-3:-1, ::1, 4],
    np.s_[np.int64(2), np.int32(1) : np.int64(3)],
    np.s_[...],
    np.s_[1, ..., 2],
    slice(1, None),
    (),
]


@pytest.fixture(scope="module")
def sliced_ckpt(tmp_path_factory):
    """A plain tensor 'w' and the same values stored as a partitioned tensor 'p'."""
    prefix = str(tmp_path_factory.mktemp("slices") / "ck")
    items, keep = partitioned_items(
        "p", FULL.shape, [([(0, 1), (0, -1), (0, -1)], FULL[:1]), ([(1, 3), (0, -1), (0, -1)], FULL[1:])]
    )
    from fastckpt.writer import prepare_item

    item, owner = prepare_item("w", FULL)
    write_items(items + [item], prefix, num_shards=None, threads=None, durable=False)
    del keep, owner
    return prefix


@pytest.mark.parametrize("name", ["w", "p"])
@pytest.mark.parametrize("index", INDICES, ids=repr)
def test_get_slice_takes_numpy_indices(sliced_ckpt, name, index):
    with fastckpt.load_checkpoint(sliced_ckpt) as reader:
        got = reader.get_slice(name, index)
    want = FULL[index]
    assert isinstance(got, np.ndarray) and got.flags.c_contiguous
    assert got.shape == np.shape(want) and got.dtype == np.float32
    assert np.array_equal(got, want)


@pytest.mark.parametrize("name", ["w", "p"])
def test_get_slice_tensorflow_forms_still_work(sliced_ckpt, name):
    with fastckpt.load_checkpoint(sliced_ckpt) as reader:
        assert np.array_equal(reader.get_slice(name, "1,2:-:0,3"), FULL[1:3, :, 0:3])
        assert np.array_equal(reader.get_slice(name, [(1, 2), (0, -1), (0, 3)]), FULL[1:3, :, 0:3])
        assert np.array_equal(reader.get_slice(name, ((1, 2), (2, 1), (0, -1))), FULL[1:3, 2:3, :])


def test_get_slice_of_a_scalar(tmp_path):
    fastckpt.save({"s": np.float32(2.5)}, tmp_path / "ck")
    with fastckpt.load_checkpoint(tmp_path / "ck") as reader:
        for spec in ((), ..., "", []):
            got = reader.get_slice("s", spec)
            assert got.shape == () and got == 2.5


BAD = [
    (np.s_[::2], "step 2 in dimension 0: only step 1 is supported"),
    (np.s_[:, 0:6:3], "step 3 in dimension 1: only step 1 is supported"),
    (np.s_[0:5], "slice bound 5 is out of range for dimension 0 of size 4"),
    (np.s_[-5:], "slice bound -5 is out of range for dimension 0 of size 4"),
    (np.s_[4], "index 4 is out of range for dimension 0 of size 4"),
    (np.s_[0, -7], "index -7 is out of range for dimension 1 of size 6"),
    (np.s_[0, 0, 0, 0], "too many indices: 4 for a tensor of rank 3"),
    (np.s_[..., 0, 0, 0, 0], "too many indices: 4 for a tensor of rank 3"),
    (np.s_[..., 0, ...], "an index can only have a single ellipsis ('...')"),
    (np.s_[None], "None in dimension 0: only ints, slices and '...' are supported"),
    (np.s_[True], "True in dimension 0: only ints, slices and '...' are supported"),
    (np.s_[0, 1.5], "1.5 in dimension 1 is not an int, a slice or '...'"),
    (np.s_[0:"a"], "slice bound 'a' in dimension 0 is not an int"),
    (
        [0, 1],
        "item 0 is 0, not a (start, length) pair; a list is read as (start, length) pairs, "
        "a numpy-style index is a tuple",
    ),
    ([(0, 1)], "1 (start, length) pairs for a tensor of rank 3"),
    ([(0, 5), (0, -1), (0, -1)], "(start, length) (0, 5) does not fit dimension 0 of size 4"),
    ([(1, -1), (0, -1), (0, -1)], "(start, length) (1, -1) does not fit dimension 0 of size 4"),
    ("0,5:-:-", "(start, length) (0, 5) does not fit dimension 0 of size 4"),
    ("0,1:-", "slice spec '0,1:-' has 2 dimensions, expected 3"),
    ("x:-:-", "bad slice spec 'x:-:-': expected 'start,length' or '-', got 'x'"),
]


@pytest.mark.parametrize("name", ["w", "p"])
@pytest.mark.parametrize("spec, problem", BAD, ids=[repr(b[0]) for b in BAD])
def test_get_slice_errors_name_the_tensor_and_its_shape(sliced_ckpt, name, spec, problem):
    with fastckpt.load_checkpoint(sliced_ckpt) as reader:
        with pytest.raises(fastckpt.InvalidArgumentError) as info:
            reader.get_slice(name, spec)
    assert str(info.value) == f"bad slice {spec!r} of tensor '{name}' of shape [4, 6, 5] in '{sliced_ckpt}': {problem}"


# -- array_type ----------------------------------------------------------------------

VALID = "None, 'numpy', 'torch', 'cupy' or a callable (shape, dtype, device) -> array"


@pytest.fixture
def ckpt(tmp_path):
    prefix = str(tmp_path / "ck")
    fastckpt.save(
        {
            "w": np.arange(6, dtype=np.float32).reshape(2, 3),
            "bf": np.array([1.5, -2.0, 3.0], dtype=ml_dtypes.bfloat16),
            "f8": np.array([1.0, 2.0], dtype=ml_dtypes.float8_e4m3fn),
            "step": np.int64(3),
            "u16": np.arange(4, dtype=np.uint16),
            "big": np.arange(1 << 19, dtype=np.float64),  # over 1 MiB: not packed
            "s": np.array([b"a", b"bc"], dtype=object),
            "empty": np.zeros((0, 3), np.int8),
        },
        prefix,
    )
    return prefix


@pytest.mark.parametrize("device", [None, "cpu", "cuda:0"])
@pytest.mark.parametrize("value", ["jax", "Torch", 5, b"torch"])
def test_an_unknown_array_type_lists_the_valid_ones(ckpt, value, device):
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        fastckpt.load(ckpt, array_type=value, device=device)
    assert str(info.value) == f"array_type must be {VALID}, not {value!r} (loading '{ckpt}')"


@pytest.mark.parametrize("device", [None, "cpu"])
def test_cupy_and_callables_need_a_device(ckpt, device):
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        fastckpt.load(ckpt, array_type="cupy", device=device)
    assert str(info.value) == (
        "array_type='cupy' makes device arrays and needs a device: pass device='cuda' or 'cuda:N', "
        f"or use array_type='numpy' or 'torch' for host arrays (loading '{ckpt}')"
    )
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        fastckpt.load(ckpt, array_type=lambda shape, dtype, device: None, device=device)
    assert str(info.value) == (
        "a callable array_type makes device arrays and needs a device: pass "
        f"device='cuda' or 'cuda:N' (loading '{ckpt}')"
    )


def test_numpy_with_a_device_is_refused(ckpt):
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        fastckpt.load(ckpt, array_type="numpy", device="cuda:0")
    assert str(info.value) == (
        "numpy arrays live in host memory: with a device, array_type must be "
        f"'cupy', 'torch' or a callable (loading '{ckpt}')"
    )


def test_numpy_array_type_is_the_default(ckpt):
    a, b = fastckpt.load(ckpt), fastckpt.load(ckpt, array_type="numpy")
    assert sorted(a) == sorted(b)
    for name in a:
        assert type(b[name]) is np.ndarray and b[name].dtype == a[name].dtype
        assert np.array_equal(a[name], b[name])


def test_torch_without_a_device_gives_cpu_tensors_sharing_the_loaded_memory(ckpt):
    import torch

    loaded = {}
    with fastckpt.load_checkpoint(ckpt) as reader:
        native = reader._native

        class Spy:
            """Records the host arrays the native reader loads."""

            def __getattr__(self, attr):
                return getattr(native, attr)

            def read_all(self, *args):
                result, left = native.read_all(*args)
                loaded.update(result)
                return result, left

        reader._native = Spy()
        out = reader.read_all(array_type="torch")
        reader._native = native
    assert sorted(out) == ["bf", "big", "empty", "f8", "s", "step", "u16", "w"]
    want = {
        "w": torch.float32,
        "bf": torch.bfloat16,
        "f8": torch.float8_e4m3fn,
        "step": torch.int64,
        "u16": torch.uint16,
        "big": torch.float64,
        "empty": torch.int8,
    }
    for name, dtype in want.items():
        t = out[name]
        assert type(t) is torch.Tensor and t.device.type == "cpu" and t.dtype == dtype, name
        assert tuple(t.shape) == loaded[name].shape, name
        if t.numel():
            assert t.data_ptr() == loaded[name].ctypes.data, f"{name} was copied"
    assert out["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert out["bf"].float().tolist() == [1.5, -2.0, 3.0]
    assert out["f8"].float().tolist() == [1.0, 2.0]
    assert out["step"].shape == () and out["step"].item() == 3
    assert out["u16"].tolist() == [0, 1, 2, 3]
    assert out["big"][-1].item() == (1 << 19) - 1
    assert type(out["s"]) is np.ndarray and out["s"].tolist() == [b"a", b"bc"]  # strings stay numpy
    assert fastckpt.load(ckpt, array_type="torch", pack_small=False)["bf"].dtype == torch.bfloat16


@pytest.mark.parametrize("dtype", ["float8_e4m3b11fnuz", "int4"])
def test_torch_refuses_a_dtype_it_cannot_hold_before_reading(tmp_path, dtype):
    prefix = str(tmp_path / "ck")
    fastckpt.save({"a": np.ones(2, np.float32), "x": np.ones(2, getattr(ml_dtypes, dtype))}, prefix)
    with pytest.raises(fastckpt.UnsupportedDtypeError) as info:
        fastckpt.load(prefix, array_type="torch")
    assert str(info.value) == (
        f"tensor 'x' in '{prefix}' has dtype {dtype}, which torch cannot hold; load it with array_type='numpy'"
    )


@pytest.mark.parametrize("device", [None, "cuda:0"])
def test_torch_not_installed_says_what_to_install(ckpt, monkeypatch, device):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(fastckpt.MissingDependencyError) as info:
        fastckpt.load(ckpt, array_type="torch", device=device)
    assert isinstance(info.value, fastckpt.FastCkptError) and isinstance(info.value, ModuleNotFoundError)
    assert info.value.name == "torch"
    assert str(info.value) == (
        f"array_type='torch' needs PyTorch, which is not installed: pip install torch (loading '{ckpt}')"
    )


def test_cupy_not_installed_says_what_to_install(ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(fastckpt.MissingDependencyError) as info:
        fastckpt.load(ckpt, array_type="cupy", device="cuda:0")
    assert info.value.name == "cupy"
    assert str(info.value) == (
        "array_type='cupy' needs CuPy, which is not installed: pip install "
        f"cupy-cuda12x (the CuPy build for your CUDA version) (loading '{ckpt}')"
    )


def test_a_device_load_without_cupy_or_torch_says_what_to_install(ckpt, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(fastckpt.MissingDependencyError) as info:
        fastckpt.load(ckpt, device="cuda:0")
    assert str(info.value) == (
        "loading to a device needs CuPy or PyTorch to make the arrays, and neither is installed: pip "
        "install cupy-cuda12x (the CuPy build for your CUDA version), or pip install torch "
        f"(loading '{ckpt}')"
    )
