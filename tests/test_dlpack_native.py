"""Tests for the native DLPack consumer (fastckpt._native.dlpack_export).

Real producers (numpy, torch, JAX on the CPU) check that pointers, shapes,
strides and dtypes arrive exactly as the framework sees them; a producer
written here with ctypes builds managed tensors field by field, which lets the
tests count deleter calls exactly and hand the consumer malformed tensors.
"""

import ctypes
import os
import re
import subprocess
import sys
import threading
import weakref

import ml_dtypes
import numpy as np
import pytest

import fastckpt
from fastckpt import _native

# Where the fastckpt under test was imported from, for the JAX subprocess.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastckpt.__file__)))

CPU = 1

# ---------------------------------------------------------------------------
# The DLPack ABI, for the ctypes producer.


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [
        ("major", ctypes.c_uint32),
        ("minor", ctypes.c_uint32),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", DLTensor),
    ]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


# Private prototypes (setting argtypes on ctypes.pythonapi would be global).
_CAPSULE_NEW = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(
    ("PyCapsule_New", ctypes.pythonapi)
)
_CAPSULE_NAME = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
# The destructor gets the dying capsule as a raw pointer: a py_object argument
# would take a new reference to an object whose refcount is already zero.
_CAPSULE_NAME_RAW = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.c_void_p)(("PyCapsule_GetName", ctypes.pythonapi))
_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

# Capsules point at their producer's callbacks, so producers are never freed
# during the test session (capsules may outlive the test that made them).
_KEEP_ALIVE = []

# Capsule names must outlive the capsules: module constants do.
_VERSIONED = b"dltensor_versioned"
_LEGACY = b"dltensor"


def capsule_name(capsule):
    return _CAPSULE_NAME(capsule)


class FakeProducer:
    """A DLPack producer built field by field; counts its deleter calls.

    Its capsule destructor behaves like a real producer's: it calls the
    deleter only while the capsule still has its unconsumed name.
    """

    def __init__(
        self,
        shape=(2, 3),
        strides=None,
        code=2,
        bits=32,
        lanes=1,
        *,
        versioned=True,
        major=1,
        minor=0,
        flags=0,
        ndim=None,
        data=0x10000,
        byte_offset=0,
        device=(CPU, 0),
        shape_null=False,
        deleter=True,
        capsule_name=None,
        accepts_max_version=True,
    ):
        _KEEP_ALIVE.append(self)
        self.deleter_calls = []
        self.calls = []
        self.versioned = versioned
        self.accepts_max_version = accepts_max_version
        self._shape = (ctypes.c_int64 * max(len(shape), 1))(*shape)
        self._strides = None
        if strides is not None:
            self._strides = (ctypes.c_int64 * max(len(strides), 1))(*strides)
        self.managed = DLManagedTensorVersioned() if versioned else DLManagedTensor()
        t = self.managed.dl_tensor
        t.data = data
        t.device = DLDevice(*device)
        t.ndim = len(shape) if ndim is None else ndim
        t.dtype = DLDataType(code, bits, lanes)
        if not shape_null:
            t.shape = ctypes.cast(self._shape, ctypes.POINTER(ctypes.c_int64))
        if self._strides is not None:
            t.strides = ctypes.cast(self._strides, ctypes.POINTER(ctypes.c_int64))
        t.byte_offset = byte_offset
        self._deleter = _DELETER(self._on_delete)
        if deleter:
            self.managed.deleter = ctypes.cast(self._deleter, ctypes.c_void_p).value
        if versioned:
            self.managed.major = major
            self.managed.minor = minor
            self.managed.flags = flags
        self.name = capsule_name
        if capsule_name is None:
            self.name = _VERSIONED if versioned else _LEGACY
        self._destructor = _CAPSULE_DESTRUCTOR(self._on_capsule_death)
        self.capsule_deaths = 0

    @property
    def address(self):
        return ctypes.addressof(self.managed)

    def _on_delete(self, address):
        self.deleter_calls.append(address)

    def _on_capsule_death(self, capsule):
        self.capsule_deaths += 1
        if _CAPSULE_NAME_RAW(capsule) == self.name and self.managed.deleter:
            self._on_delete(self.address)

    def new_capsule(self):
        return _CAPSULE_NEW(self.address, self.name, ctypes.cast(self._destructor, ctypes.c_void_p))

    def __dlpack__(self, **kwargs):
        if "max_version" in kwargs and not self.accepts_max_version:
            raise TypeError("__dlpack__() got an unexpected keyword argument 'max_version'")
        self.calls.append(kwargs)
        return self.new_capsule()


class NumpyLegacyProducer:
    """An older producer: its __dlpack__ has no max_version and returns numpy's
    legacy "dltensor" capsule."""

    def __init__(self, array):
        self.array = array
        self.calls = 0

    def __dlpack__(self, stream=None):
        self.calls += 1
        return self.array.__dlpack__()


# ---------------------------------------------------------------------------
# numpy


def numpy_dtype_code(dtype):
    return {"i": 0, "u": 1, "f": 2, "c": 5, "b": 6}[dtype.kind]


@pytest.mark.parametrize(
    "name",
    [
        "bool",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    ],
)
def test_numpy_dtypes(name):
    arr = np.zeros((2, 3), dtype=name)
    t = _native.dlpack_export(arr)
    assert (t.dtype_code, t.dtype_bits, t.dtype_lanes) == (numpy_dtype_code(arr.dtype), arr.dtype.itemsize * 8, 1)
    assert _native.dlpack_numpy_dtype(t.dtype_code, t.dtype_bits, t.dtype_lanes) == name
    assert t.nbytes == arr.nbytes
    assert t.data == arr.ctypes.data


def test_numpy_2d():
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = _native.dlpack_export(arr)
    assert t.data == arr.ctypes.data == arr.__array_interface__["data"][0]
    assert t.device_type == CPU
    assert t.device_id == 0
    assert t.shape == (2, 3)
    assert t.strides == (3, 1)
    assert (t.dtype_code, t.dtype_bits, t.dtype_lanes) == (2, 32, 1)
    assert t.nbytes == 24
    assert t.c_contiguous is True
    assert t.readonly is False
    assert t.versioned is True
    assert t.flags == 0
    assert t.released is False
    assert repr(t) == "<DLPackTensor device=(1, 0) shape=(2, 3) dtype=(2, 32, 1)>"
    # The memory described is the array's own.
    view = np.ctypeslib.as_array(ctypes.cast(t.data, ctypes.POINTER(ctypes.c_float)), shape=(6,))
    assert view.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


def test_numpy_readonly():
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)
    arr.flags.writeable = False
    t = _native.dlpack_export(arr)
    assert t.versioned is True
    assert t.readonly is True
    assert t.flags == 1
    assert t.data == arr.ctypes.data
    assert repr(t) == "<DLPackTensor device=(1, 0) shape=(3, 4) dtype=(2, 64, 1) readonly>"


@pytest.mark.parametrize(
    "make, shape, strides, contiguous, nbytes",
    [
        (lambda: np.arange(12.0).reshape(3, 4).T, (4, 3), (1, 4), False, 96),
        (lambda: np.arange(12.0).reshape(3, 4)[:, ::2], (3, 2), (4, 2), False, 48),
        (lambda: np.arange(12.0).reshape(3, 4)[::-1], (3, 4), (-4, 1), False, 96),
        (lambda: np.arange(12.0).reshape(3, 4)[1:], (2, 4), (4, 1), True, 64),
        (lambda: np.arange(12.0).reshape(3, 1, 4), (3, 1, 4), (4, 4, 1), True, 96),
        (lambda: np.zeros((0, 3)), (0, 3), (0, 0), True, 0),
        (lambda: np.array(3.0), (), None, True, 8),
    ],
    ids=["transposed", "step", "reversed", "offset", "size1", "zero_size", "0d"],
)
def test_numpy_layouts(make, shape, strides, contiguous, nbytes):
    arr = make()
    t = _native.dlpack_export(arr)
    assert t.data == arr.ctypes.data
    assert t.shape == shape == arr.shape
    assert t.strides == strides
    assert t.c_contiguous is contiguous
    assert t.nbytes == nbytes


def test_numpy_reference_released_exactly_once():
    arr = np.arange(10, dtype=np.int32)
    base = sys.getrefcount(arr)
    t = _native.dlpack_export(arr)
    assert sys.getrefcount(arr) == base + 1  # held by numpy's manager context
    t.release()
    assert sys.getrefcount(arr) == base
    assert t.released is True
    t.release()  # idempotent
    assert sys.getrefcount(arr) == base
    del t
    assert sys.getrefcount(arr) == base


def test_numpy_reference_released_by_garbage_collection():
    arr = np.arange(10, dtype=np.int32)
    base = sys.getrefcount(arr)
    t = _native.dlpack_export(arr)
    assert sys.getrefcount(arr) == base + 1
    del t
    assert sys.getrefcount(arr) == base


def test_owner_keeps_source_alive():
    arr = np.arange(4, dtype=np.int64)
    ref = weakref.ref(arr)
    t = _native.dlpack_export(arr)
    address = arr.ctypes.data
    del arr
    assert ref() is not None
    view = np.ctypeslib.as_array(ctypes.cast(t.data, ctypes.POINTER(ctypes.c_int64)), shape=(4,))
    assert t.data == address
    assert view.tolist() == [0, 1, 2, 3]
    del view
    t.release()
    assert ref() is None


def test_context_manager_releases():
    arr = np.ones(3)
    base = sys.getrefcount(arr)
    with _native.dlpack_export(arr) as t:
        assert sys.getrefcount(arr) == base + 1
        assert t.shape == (3,)
    assert t.released is True
    assert sys.getrefcount(arr) == base


def test_legacy_numpy_producer():
    arr = np.arange(6, dtype=np.uint16).reshape(3, 2)
    producer = NumpyLegacyProducer(arr)
    base = sys.getrefcount(arr)
    t = _native.dlpack_export(producer)
    assert producer.calls == 1  # the call with max_version never entered the body
    assert t.versioned is False
    assert t.readonly is False
    assert t.flags == 0
    assert t.data == arr.ctypes.data
    assert t.shape == (3, 2)
    assert t.strides == (2, 1)
    assert (t.dtype_code, t.dtype_bits, t.dtype_lanes) == (1, 16, 1)
    assert sys.getrefcount(arr) == base + 1
    t.release()
    assert sys.getrefcount(arr) == base
    t.release()
    assert sys.getrefcount(arr) == base


def test_legacy_numpy_producer_readonly_error_propagates():
    # The legacy capsule cannot flag read-only memory, so numpy refuses.
    arr = np.arange(3.0)
    arr.flags.writeable = False
    producer = NumpyLegacyProducer(arr)
    with pytest.raises(BufferError, match="Cannot export readonly array"):
        _native.dlpack_export(producer)
    assert producer.calls == 1


def test_properties_after_release_raise():
    t = _native.dlpack_export(np.zeros(2))
    t.release()
    assert repr(t) == "<DLPackTensor (released)>"
    for name in (
        "data",
        "device_type",
        "device_id",
        "shape",
        "strides",
        "dtype_code",
        "dtype_bits",
        "dtype_lanes",
        "readonly",
        "flags",
        "versioned",
        "nbytes",
        "c_contiguous",
    ):
        with pytest.raises(fastckpt.InvalidArgumentError, match="released DLPackTensor"):
            getattr(t, name)


def test_not_constructible():
    with pytest.raises(TypeError):
        _native.DLPackTensor()


# ---------------------------------------------------------------------------
# torch


@pytest.fixture(scope="module")
def torch():
    # Imported by the tests that need it, not when this file is collected.
    import torch

    return torch


@pytest.mark.parametrize(
    "dtype, code, bits, name",
    [
        ("bool", 6, 8, "bool"),
        ("uint8", 1, 8, "uint8"),
        ("int8", 0, 8, "int8"),
        ("int16", 0, 16, "int16"),
        ("int32", 0, 32, "int32"),
        ("int64", 0, 64, "int64"),
        ("float16", 2, 16, "float16"),
        ("bfloat16", 4, 16, "bfloat16"),
        ("float32", 2, 32, "float32"),
        ("float64", 2, 64, "float64"),
        ("complex64", 5, 64, "complex64"),
        ("complex128", 5, 128, "complex128"),
        ("float8_e4m3fn", 10, 8, "float8_e4m3fn"),
        ("float8_e5m2", 12, 8, "float8_e5m2"),
        ("float8_e4m3fnuz", 11, 8, "float8_e4m3fnuz"),
        ("float8_e5m2fnuz", 13, 8, "float8_e5m2fnuz"),
    ],
)
def test_torch_dtypes(torch, dtype, code, bits, name):
    t = torch.zeros(4, 5, dtype=getattr(torch, dtype))
    d = _native.dlpack_export(t)
    assert (d.dtype_code, d.dtype_bits, d.dtype_lanes) == (code, bits, 1)
    assert _native.dlpack_numpy_dtype(d.dtype_code, d.dtype_bits, d.dtype_lanes) == name
    assert d.data == t.data_ptr()
    assert d.nbytes == 20 * bits // 8


def test_torch_bfloat16(torch):
    t = torch.arange(6, dtype=torch.bfloat16).reshape(2, 3)
    d = _native.dlpack_export(t)
    assert d.data == t.data_ptr()
    assert d.shape == (2, 3)
    assert d.strides == (3, 1)
    assert (d.dtype_code, d.dtype_bits, d.dtype_lanes) == (4, 16, 1)
    assert d.nbytes == 12
    assert d.device_type == CPU
    assert d.device_id == 0
    assert d.readonly is False
    assert d.versioned is True
    # The bits are the tensor's: read them back through ml_dtypes.
    host = np.ctypeslib.as_array(ctypes.cast(d.data, ctypes.POINTER(ctypes.c_uint16)), shape=(6,))
    assert host.view(ml_dtypes.bfloat16).astype(np.float32).tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    "make, shape, strides, contiguous, nbytes",
    [
        (lambda torch: torch.arange(12.0).reshape(3, 4).T, (4, 3), (1, 4), False, 48),
        (lambda torch: torch.arange(24.0).reshape(2, 3, 4).permute(2, 0, 1), (4, 2, 3), (1, 12, 4), False, 96),
        (lambda torch: torch.arange(12.0).reshape(3, 4)[1:, 1:], (2, 3), (4, 1), False, 24),
        (lambda torch: torch.ones(4, 1).expand(4, 3), (4, 3), (1, 0), False, 48),
        (lambda torch: torch.ones(2, 1, 3), (2, 1, 3), (3, 3, 1), True, 24),
        (lambda torch: torch.zeros(0, 3), (0, 3), (3, 1), True, 0),
        (lambda torch: torch.zeros(5, 0, 2)[:, :, ::2], (5, 0, 1), (2, 2, 2), True, 0),
        (lambda torch: torch.tensor(2.5), (), (), True, 4),
    ],
    ids=["transposed", "permuted", "offset_view", "broadcast", "size1", "zero_size", "zero_size_strided", "0d"],
)
def test_torch_layouts(torch, make, shape, strides, contiguous, nbytes):
    t = make(torch)
    d = _native.dlpack_export(t)
    assert d.data == t.data_ptr()
    assert d.shape == shape
    assert d.strides == strides
    assert d.c_contiguous is contiguous
    assert d.nbytes == nbytes
    assert d.device_type == CPU
    assert d.strides == t.stride()  # torch's own element strides


def test_torch_reference_released_exactly_once(torch):
    t = torch.arange(8, dtype=torch.float32)
    base = t._use_count()  # references to the C++ tensor
    d = _native.dlpack_export(t)
    assert t._use_count() == base + 1
    d.release()
    assert t._use_count() == base
    d.release()
    del d
    assert t._use_count() == base


@pytest.mark.gpu
def test_torch_cuda_tensor(torch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    t = torch.arange(12, dtype=torch.float32, device="cuda").reshape(3, 4).T
    base = t._use_count()
    # Stream 1 is CUDA's legacy default stream in the DLPack protocol.
    d = _native.dlpack_export(t, stream=1)
    assert (d.device_type, d.device_id) == (2, t.device.index)
    assert d.data == t.data_ptr()
    assert d.shape == (4, 3)
    assert d.strides == (1, 4)
    assert d.c_contiguous is False
    assert d.nbytes == 48
    assert (d.dtype_code, d.dtype_bits, d.dtype_lanes) == (2, 32, 1)
    assert t._use_count() == base + 1
    d.release()
    assert t._use_count() == base


# ---------------------------------------------------------------------------
# JAX


# JAX starts threads when its CPU backend comes up and warns at every later
# os.fork() in the process (other tests fork), so its arrays are checked in a
# child interpreter.
_JAX_SCRIPT = r"""
import ctypes
import jax.numpy as jnp
import numpy as np
from fastckpt import _native

x = jnp.arange(6, dtype=jnp.float32).reshape(2, 3)
d = _native.dlpack_export(x)
assert d.data == x.unsafe_buffer_pointer(), (d.data, x.unsafe_buffer_pointer())
assert (d.device_type, d.device_id) == (1, 0), (d.device_type, d.device_id)
assert d.shape == (2, 3), d.shape
assert d.strides == (3, 1), d.strides
assert (d.dtype_code, d.dtype_bits, d.dtype_lanes) == (2, 32, 1)
assert d.nbytes == 24, d.nbytes
assert d.c_contiguous is True
host = np.ctypeslib.as_array(ctypes.cast(d.data, ctypes.POINTER(ctypes.c_float)), shape=(6,))
assert host.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0], host.tolist()
del host
d.release()
assert d.released is True

for dtype, code, bits in [("bfloat16", 4, 16), ("int8", 0, 8), ("bool", 6, 8),
                          ("float8_e4m3fn", 10, 8), ("complex64", 5, 64), ("uint32", 1, 32)]:
    x = jnp.zeros((3,), dtype=getattr(jnp, dtype))
    d = _native.dlpack_export(x)
    got = (d.dtype_code, d.dtype_bits, d.dtype_lanes)
    assert got == (code, bits, 1), (dtype, got)
    assert _native.dlpack_numpy_dtype(*got) == dtype, dtype
    assert d.data == x.unsafe_buffer_pointer(), dtype
    assert d.shape == (3,), (dtype, d.shape)
    assert d.nbytes == 3 * bits // 8, (dtype, d.nbytes)
print("jax ok")
"""


def test_jax_cpu_arrays():
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", _JAX_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "jax ok\n"


# ---------------------------------------------------------------------------
# The protocol, with the ctypes producer.


def test_fake_producer_versioned():
    p = FakeProducer(shape=(2, 3), strides=(3, 1), data=0x10000, byte_offset=64, flags=3, minor=3)
    d = _native.dlpack_export(p)
    assert p.calls == [{"max_version": (1, 0)}]
    assert d.data == 0x10000 + 64
    assert d.shape == (2, 3)
    assert d.strides == (3, 1)
    assert d.readonly is True
    assert d.flags == 3
    assert d.versioned is True
    assert p.deleter_calls == []
    d.release()
    assert p.deleter_calls == [p.address]
    d.release()
    del d
    assert p.deleter_calls == [p.address]


def test_fake_producer_capsule_is_renamed_and_not_freed_twice():
    p = FakeProducer()
    held = [p.new_capsule()]
    d = _native.dlpack_export(ReturnsProducer(held[0]))
    assert capsule_name(held[0]) == b"used_dltensor_versioned"
    assert p.capsule_deaths == 0
    held.clear()
    assert p.capsule_deaths == 1
    assert p.deleter_calls == []  # the renamed capsule left the tensor alone
    del d
    assert p.deleter_calls == [p.address]


def test_fake_producer_legacy_capsule():
    p = FakeProducer(versioned=False, accepts_max_version=False, shape=(4,), strides=(1,), device=(2, 3))
    d = _native.dlpack_export(p)
    assert p.calls == [{}]
    assert d.versioned is False
    assert d.readonly is False
    assert d.flags == 0
    assert (d.device_type, d.device_id) == (2, 3)
    assert d.shape == (4,)
    d.release()
    assert p.deleter_calls == [p.address]
    assert p.deleter_calls == [p.address]
    assert p.capsule_deaths == 1


def test_versioned_capsule_from_a_producer_without_max_version():
    p = FakeProducer(accepts_max_version=False)
    d = _native.dlpack_export(p)
    assert p.calls == [{}]
    assert d.versioned is True
    d.release()
    assert p.deleter_calls == [p.address]


@pytest.mark.parametrize("stream", [None, 0, 1, 7])
def test_stream_is_passed_through(stream):
    p = FakeProducer(device=(2, 0))
    _native.dlpack_export(p, stream=stream).release()
    expected = {"max_version": (1, 0)}
    if stream is not None:
        expected["stream"] = stream
    assert p.calls == [expected]
    assert p.deleter_calls == [p.address]


def test_stream_in_legacy_fallback():
    p = FakeProducer(accepts_max_version=False)
    _native.dlpack_export(p, stream=5).release()
    assert p.calls == [{"stream": 5}]


def test_numpy_rejects_stream():
    with pytest.raises(RuntimeError, match="NumPy only supports stream=None"):
        _native.dlpack_export(np.zeros(2), stream=1)


@pytest.mark.parametrize(
    "shape, strides, contiguous",
    [
        ((2, 3), None, True),
        ((2, 3), (3, 1), True),
        ((2, 3), (1, 2), False),
        ((2, 3), (4, 1), False),
        ((2, 1, 3), (3, 99, 1), True),
        ((1, 1), (5, 9), True),
        ((1, 4), (-7, 1), True),
        ((3,), (2,), False),
        ((3,), (-1,), False),
        ((0, 3), (7, 7), True),
        ((4, 0), (-1, 5), True),
        ((), (), True),
    ],
)
def test_c_contiguous(shape, strides, contiguous):
    p = FakeProducer(shape=shape, strides=strides)
    with _native.dlpack_export(p) as d:
        assert d.c_contiguous is contiguous
        assert d.shape == shape
        assert d.strides == (None if strides is None else strides)
    assert p.deleter_calls == [p.address]


def test_zero_dim_with_null_shape_and_strides():
    p = FakeProducer(shape=(), shape_null=True, bits=64)
    with _native.dlpack_export(p) as d:
        assert d.shape == ()
        assert d.strides is None
        assert d.nbytes == 8
        assert d.c_contiguous is True


@pytest.mark.parametrize(
    "code, bits, lanes, shape, flags, nbytes",
    [
        (2, 32, 1, (2, 3), 0, 24),
        (2, 32, 4, (2,), 0, 32),  # vector type: 16 bytes per element
        (17, 4, 1, (3,), 0, 2),  # packed float4: 12 bits
        (17, 4, 1, (3,), 4, 3),  # padded float4: one byte each
        (17, 4, 2, (3,), 0, 3),  # torch's float4_e2m1fn_x2
        (15, 6, 1, (5,), 0, 4),  # packed float6: 30 bits
        (6, 1, 1, (10,), 0, 2),  # packed 1-bit
        (2, 32, 1, (0, 2**62, 2**62), 0, 0),  # empty however large the other dims
        (0, 64, 1, (2**59,), 0, 2**62),
    ],
)
def test_nbytes(code, bits, lanes, shape, flags, nbytes):
    p = FakeProducer(shape=shape, strides=None, code=code, bits=bits, lanes=lanes, flags=flags)
    with _native.dlpack_export(p) as d:
        assert d.nbytes == nbytes
    assert p.deleter_calls == [p.address]


_MALFORMED = [
    ({"ndim": -1}, r"malformed DLPack tensor: ndim is -1"),
    ({"shape": (2, 3), "shape_null": True}, r"malformed DLPack tensor: shape is NULL with ndim 2"),
    ({"shape": (2, -3)}, r"malformed DLPack tensor: shape\[1\] is -3"),
    ({"bits": 0}, r"malformed DLPack tensor: DLPack dtype float \(code=2, bits=0, lanes=1\)"),
    ({"lanes": 0}, r"malformed DLPack tensor: DLPack dtype float \(code=2, bits=32, lanes=0\)"),
    ({"shape": (2**62, 4)}, r"its size in bytes overflows 64 bits"),
    ({"shape": (2**31, 2**31, 2**2)}, r"its size in bytes overflows 64 bits"),
    ({"shape": (2**61,), "bits": 64}, r"its size in bytes overflows 64 bits"),
    ({"shape": (2**61,)}, r"its size in bytes overflows 64 bits"),  # 2**63 bytes
    ({"shape": (2**63 - 1,), "bits": 16}, r"its size in bytes overflows 64 bits"),
    ({"data": 2**64 - 8, "byte_offset": 16}, r"data pointer \+ byte_offset overflows"),
]
_BAD_VERSIONS = [
    ({"major": 2, "minor": 0}, r"^unsupported DLPack version 2\.0 \(fastckpt reads major version 1\)$"),
    ({"major": 0, "minor": 8}, r"^unsupported DLPack version 0\.8 \(fastckpt reads major version 1\)$"),
]


@pytest.mark.parametrize(
    "versioned, kwargs, message",
    [(True, k, m) for k, m in _MALFORMED + _BAD_VERSIONS] + [(False, k, m) for k, m in _MALFORMED],
)
def test_malformed_tensor_is_rejected_and_deleted_once(versioned, kwargs, message):
    p = FakeProducer(versioned=versioned, **kwargs)
    with pytest.raises(fastckpt.InvalidArgumentError, match=message):
        _native.dlpack_export(p)
    assert p.deleter_calls == [p.address]
    assert p.deleter_calls == [p.address]
    assert p.capsule_deaths == 1


def test_null_deleter():
    p = FakeProducer(deleter=False)
    d = _native.dlpack_export(p)
    d.release()
    assert p.deleter_calls == []
    assert d.released is True


def test_release_from_another_thread():
    p = FakeProducer()
    d = _native.dlpack_export(p)
    threads = [threading.Thread(target=d.release) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert p.deleter_calls == [p.address]


def test_many_exports_each_deleted_once():
    producers = [FakeProducer(shape=(i,)) for i in range(1, 50)]
    owners = [_native.dlpack_export(p) for p in producers]
    assert [o.shape for o in owners] == [(i,) for i in range(1, 50)]
    del owners
    assert all(p.deleter_calls == [p.address] for p in producers)


# ---------------------------------------------------------------------------
# Errors


class RaisingProducer:
    def __init__(self, exc):
        self.exc = exc
        self.calls = 0

    def __dlpack__(self, **kwargs):
        self.calls += 1
        raise self.exc


@pytest.mark.parametrize("obj", [42, object(), [1.0, 2.0], b"bytes"])
def test_object_without_dlpack(obj):
    with pytest.raises(
        fastckpt.InvalidArgumentError,
        match=r"expects an object implementing the DLPack protocol "
        r"\(__dlpack__\), got " + type(obj).__qualname__,
    ):
        _native.dlpack_export(obj)


def test_producer_exception_propagates():
    exc = BufferError("cannot export this array")
    p = RaisingProducer(exc)
    with pytest.raises(BufferError) as info:
        _native.dlpack_export(p)
    assert info.value is exc
    assert p.calls == 1


def test_producer_type_error_propagates_after_fallback():
    exc = TypeError("unsupported dtype")
    p = RaisingProducer(exc)
    with pytest.raises(TypeError, match="unsupported dtype") as info:
        _native.dlpack_export(p)
    assert info.value is exc
    assert p.calls == 2  # with max_version, then without


def test_failing_dlpack_attribute_propagates():
    class Broken:
        @property
        def __dlpack__(self):
            raise RuntimeError("property failed")

    with pytest.raises(RuntimeError, match="property failed"):
        _native.dlpack_export(Broken())


class ReturnsProducer:
    def __init__(self, value):
        self.value = value

    def __dlpack__(self, **kwargs):
        return self.value


def test_non_capsule_result():
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"__dlpack__\(\) returned int, not a DLPack capsule"):
        _native.dlpack_export(ReturnsProducer(7))


def test_wrong_capsule_name_is_not_consumed():
    p = FakeProducer(capsule_name=b"not_a_tensor")
    capsule = p.new_capsule()
    with pytest.raises(
        fastckpt.InvalidArgumentError,
        match=r"__dlpack__\(\) returned a capsule named 'not_a_tensor', "
        r"expected 'dltensor_versioned' or 'dltensor'",
    ):
        _native.dlpack_export(ReturnsProducer(capsule))
    assert capsule_name(capsule) == b"not_a_tensor"
    assert p.deleter_calls == []


def test_consumed_capsule_is_rejected():
    arr = np.zeros(3)
    base = sys.getrefcount(arr)
    capsule = arr.__dlpack__(max_version=(1, 0))
    producer = ReturnsProducer(capsule)
    d = _native.dlpack_export(producer)
    assert capsule_name(capsule) == b"used_dltensor_versioned"
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"already consumed \('used_dltensor_versioned'\)"):
        _native.dlpack_export(producer)
    d.release()
    del producer, capsule
    assert sys.getrefcount(arr) == base


def test_unconsumed_numpy_capsule_still_frees():
    # Sanity check of the counting above: a capsule dropped unconsumed frees
    # its tensor through its own destructor.
    arr = np.zeros(3)
    base = sys.getrefcount(arr)
    capsule = arr.__dlpack__(max_version=(1, 0))
    assert sys.getrefcount(arr) == base + 1
    del capsule
    assert sys.getrefcount(arr) == base


# ---------------------------------------------------------------------------
# dlpack_numpy_dtype


@pytest.mark.parametrize(
    "code, bits, name",
    [
        (0, 8, "int8"),
        (0, 16, "int16"),
        (0, 32, "int32"),
        (0, 64, "int64"),
        (1, 8, "uint8"),
        (1, 16, "uint16"),
        (1, 32, "uint32"),
        (1, 64, "uint64"),
        (2, 16, "float16"),
        (2, 32, "float32"),
        (2, 64, "float64"),
        (4, 16, "bfloat16"),
        (5, 64, "complex64"),
        (5, 128, "complex128"),
        (6, 8, "bool"),
        (7, 8, "float8_e3m4"),
        (8, 8, "float8_e4m3"),
        (9, 8, "float8_e4m3b11fnuz"),
        (10, 8, "float8_e4m3fn"),
        (11, 8, "float8_e4m3fnuz"),
        (12, 8, "float8_e5m2"),
        (13, 8, "float8_e5m2fnuz"),
        (14, 8, "float8_e8m0fnu"),
    ],
)
def test_numpy_dtype_names(code, bits, name):
    assert _native.dlpack_numpy_dtype(code, bits, 1) == name
    # Every name is a real numpy or ml_dtypes type of that width.
    dtype = np.dtype(getattr(ml_dtypes, name)) if hasattr(ml_dtypes, name) else np.dtype(name)
    assert dtype.itemsize * 8 == bits


_VECTOR = ": vector types (lanes != 1) are not supported"


@pytest.mark.parametrize(
    "code, bits, lanes, name, suffix",
    [
        (2, 32, 4, "float", _VECTOR),
        (17, 4, 2, "float4_e2m1fn", _VECTOR),
        (99, 32, 1, "<unknown code>", ""),
        (255, 8, 1, "<unknown code>", ""),
        (3, 64, 1, "opaque_handle", ""),
        (17, 4, 1, "float4_e2m1fn", ""),  # packed sub-byte types have no numpy dtype
        (15, 6, 1, "float6_e2m3fn", ""),
        (16, 6, 1, "float6_e3m2fn", ""),
        (0, 4, 1, "int", ""),
        (2, 8, 1, "float", ""),
        (2, 128, 1, "float", ""),
        (10, 16, 1, "float8_e4m3fn", ""),
        (6, 1, 1, "bool", ""),
        (5, 32, 1, "complex", ""),
        (4, 32, 1, "bfloat", ""),
    ],
)
def test_numpy_dtype_errors(code, bits, lanes, name, suffix):
    message = f"DLPack dtype {name} (code={code}, bits={bits}, lanes={lanes}) has no numpy dtype{suffix}"
    with pytest.raises(fastckpt.InvalidArgumentError, match=f"^{re.escape(message)}$"):
        _native.dlpack_numpy_dtype(code, bits, lanes)
