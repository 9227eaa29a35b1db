"""Tests of fastckpt.format.dtypes: DataType numbers <-> numpy dtypes."""

from __future__ import annotations

import importlib.util
import sys
import time
import types

import ml_dtypes
import numpy as np
import pytest

from fastckpt.errors import UnsupportedDtypeError
from fastckpt.format import dtypes as D

# (constant name, enum, TensorFlow name, bytes per element, numpy dtype for reading)
TABLE = [
    ("DT_FLOAT", 1, "float32", 4, np.dtype(np.float32)),
    ("DT_DOUBLE", 2, "float64", 8, np.dtype(np.float64)),
    ("DT_INT32", 3, "int32", 4, np.dtype(np.int32)),
    ("DT_UINT8", 4, "uint8", 1, np.dtype(np.uint8)),
    ("DT_INT16", 5, "int16", 2, np.dtype(np.int16)),
    ("DT_INT8", 6, "int8", 1, np.dtype(np.int8)),
    ("DT_STRING", 7, "string", 0, np.dtype(object)),
    ("DT_COMPLEX64", 8, "complex64", 8, np.dtype(np.complex64)),
    ("DT_INT64", 9, "int64", 8, np.dtype(np.int64)),
    ("DT_BOOL", 10, "bool", 1, np.dtype(np.bool_)),
    ("DT_QINT8", 11, "qint8", 1, np.dtype(np.int8)),
    ("DT_QUINT8", 12, "quint8", 1, np.dtype(np.uint8)),
    ("DT_QINT32", 13, "qint32", 4, np.dtype(np.int32)),
    ("DT_BFLOAT16", 14, "bfloat16", 2, np.dtype(ml_dtypes.bfloat16)),
    ("DT_QINT16", 15, "qint16", 2, np.dtype(np.int16)),
    ("DT_QUINT16", 16, "quint16", 2, np.dtype(np.uint16)),
    ("DT_UINT16", 17, "uint16", 2, np.dtype(np.uint16)),
    ("DT_COMPLEX128", 18, "complex128", 16, np.dtype(np.complex128)),
    ("DT_HALF", 19, "float16", 2, np.dtype(np.float16)),
    ("DT_UINT32", 22, "uint32", 4, np.dtype(np.uint32)),
    ("DT_UINT64", 23, "uint64", 8, np.dtype(np.uint64)),
    ("DT_FLOAT8_E5M2", 24, "float8_e5m2", 1, np.dtype(ml_dtypes.float8_e5m2)),
    ("DT_FLOAT8_E4M3FN", 25, "float8_e4m3fn", 1, np.dtype(ml_dtypes.float8_e4m3fn)),
    ("DT_FLOAT8_E4M3FNUZ", 26, "float8_e4m3fnuz", 1, np.dtype(ml_dtypes.float8_e4m3fnuz)),
    ("DT_FLOAT8_E4M3B11FNUZ", 27, "float8_e4m3b11fnuz", 1, np.dtype(ml_dtypes.float8_e4m3b11fnuz)),
    ("DT_FLOAT8_E5M2FNUZ", 28, "float8_e5m2fnuz", 1, np.dtype(ml_dtypes.float8_e5m2fnuz)),
    ("DT_INT4", 29, "int4", 1, np.dtype(ml_dtypes.int4)),
    ("DT_UINT4", 30, "uint4", 1, np.dtype(ml_dtypes.uint4)),
    ("DT_INT2", 31, "int2", 1, np.dtype(ml_dtypes.int2)),
    ("DT_UINT2", 32, "uint2", 1, np.dtype(ml_dtypes.uint2)),
    ("DT_FLOAT4_E2M1FN", 33, "float4_e2m1fn", 1, np.dtype(ml_dtypes.float4_e2m1fn)),
]
QUANTIZED = {11, 12, 13, 15, 16}
IDS = [row[0] for row in TABLE]

# Exact messages for numbers that have no numpy dtype and no element size.
UNSUPPORTED = [
    (0, "DataType 0 (DT_INVALID) is not a valid tensor dtype"),
    (20, "DataType 20 (resource) cannot be stored in a checkpoint: resource handles are not savable"),
    (21, "DataType 21 (variant) tensors are not supported by fastckpt"),
    (34, "unknown DataType 34"),
    (-1, "unknown DataType -1"),
    (100, "unknown DataType 100"),
    (101, "DataType 101 (float32_ref) is a reference type; reference types never appear in checkpoints"),
    (107, "DataType 107 (string_ref) is a reference type; reference types never appear in checkpoints"),
    (120, "DataType 120 (resource_ref) is a reference type; reference types never appear in checkpoints"),
    (133, "DataType 133 (float4_e2m1fn_ref) is a reference type; reference types never appear in checkpoints"),
    (134, "unknown DataType 134"),
    (1 << 40, f"unknown DataType {1 << 40}"),
]


def test_special_constants():
    assert (D.DT_INVALID, D.DT_RESOURCE, D.DT_VARIANT, D.REF_OFFSET) == (0, 20, 21, 100)


@pytest.mark.parametrize("const, dt, name, size, np_dtype", TABLE, ids=IDS)
def test_constant_values(const, dt, name, size, np_dtype):
    assert getattr(D, const) == dt
    assert const in D.__all__


@pytest.mark.parametrize("const, dt, name, size, np_dtype", TABLE, ids=IDS)
def test_to_numpy_dtype(const, dt, name, size, np_dtype):
    got = D.to_numpy_dtype(dt)
    assert isinstance(got, np.dtype)
    assert got == np_dtype
    assert got.isnative


@pytest.mark.parametrize("const, dt, name, size, np_dtype", TABLE, ids=IDS)
def test_dtype_name_and_element_size(const, dt, name, size, np_dtype):
    assert D.dtype_name(dt) == name
    assert D.dtype_name(dt + 100) == name + "_ref"
    assert D.element_size(dt) == size
    if dt != D.DT_STRING:
        assert D.element_size(dt) == np_dtype.itemsize


def test_quantized_types_read_as_plain_ints():
    assert D.to_numpy_dtype(D.DT_QINT8) == np.dtype("int8")
    assert D.to_numpy_dtype(D.DT_QUINT8) == np.dtype("uint8")
    assert D.to_numpy_dtype(D.DT_QINT16) == np.dtype("int16")
    assert D.to_numpy_dtype(D.DT_QUINT16) == np.dtype("uint16")
    assert D.to_numpy_dtype(D.DT_QINT32) == np.dtype("int32")
    assert D.to_numpy_dtype(D.DT_QINT8).fields is None


@pytest.mark.parametrize("const, dt, name, size, np_dtype", TABLE, ids=IDS)
def test_read_write_round_trip(const, dt, name, size, np_dtype):
    expected = {11: 6, 12: 4, 13: 3, 15: 5, 16: 17}.get(dt, dt)  # quantized -> plain int
    assert D.from_numpy_dtype(D.to_numpy_dtype(dt)) == expected


@pytest.mark.parametrize("dt, message", UNSUPPORTED)
def test_to_numpy_dtype_rejects(dt, message):
    with pytest.raises(UnsupportedDtypeError) as info:
        D.to_numpy_dtype(dt)
    assert str(info.value) == message
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize("dt, message", UNSUPPORTED)
def test_element_size_rejects(dt, message):
    with pytest.raises(UnsupportedDtypeError) as info:
        D.element_size(dt)
    assert str(info.value) == message


def test_dtype_name_of_unstorable_and_unknown_numbers():
    assert D.dtype_name(0) == "invalid"
    assert D.dtype_name(20) == "resource"
    assert D.dtype_name(21) == "variant"
    assert D.dtype_name(119) == "float16_ref"
    assert D.dtype_name(121) == "variant_ref"
    assert D.dtype_name(34) == "DataType(34)"
    assert D.dtype_name(100) == "DataType(100)"
    assert D.dtype_name(134) == "DataType(134)"
    assert D.dtype_name(-3) == "DataType(-3)"


@pytest.mark.parametrize(
    "dtype, expected",
    [
        (np.float32, 1),
        (np.dtype("float32"), 1),
        ("f4", 1),
        ("<f4", 1),
        (">f4", 1),
        (float, 2),
        (np.float64, 2),
        (">f8", 2),
        (np.float16, 19),
        (">f2", 19),
        ("half", 19),
        (np.int8, 6),
        (np.int16, 5),
        (">i2", 5),
        (np.int32, 3),
        (np.int64, 9),
        (">i8", 9),
        (int, 9),
        (np.uint8, 4),
        (np.uint16, 17),
        (np.uint32, 22),
        (np.uint64, 23),
        (">u8", 23),
        (np.intc, 3),
        (np.uintc, 22),
        (np.longlong, 9),
        (np.ulonglong, 23),
        (np.dtype("l"), 9),
        (np.dtype("q"), 9),
        (np.dtype("L"), 23),
        (np.dtype("Q"), 23),
        (np.intp, 9),
        (np.short, 5),
        (np.complex64, 8),
        (">c8", 8),
        (np.complex128, 18),
        (complex, 18),
        (">c16", 18),
        (np.bool_, 10),
        (bool, 10),
        ("?", 10),
        (object, 7),
        (np.object_, 7),
        ("O", 7),
        (np.bytes_, 7),
        ("S", 7),
        ("S1", 7),
        ("S1000", 7),
        (np.str_, 7),
        ("U", 7),
        ("U3", 7),
        (">U3", 7),
        (str, 7),
        (bytes, 7),
        (ml_dtypes.bfloat16, 14),
        (np.dtype(ml_dtypes.bfloat16), 14),
        ("bfloat16", 14),
        (ml_dtypes.float8_e5m2, 24),
        (ml_dtypes.float8_e4m3fn, 25),
        (ml_dtypes.float8_e4m3fnuz, 26),
        (ml_dtypes.float8_e4m3b11fnuz, 27),
        (ml_dtypes.float8_e5m2fnuz, 28),
        (ml_dtypes.int4, 29),
        (ml_dtypes.uint4, 30),
        (ml_dtypes.int2, 31),
        (ml_dtypes.uint2, 32),
        (ml_dtypes.float4_e2m1fn, 33),
        # TensorFlow's numpy stand-ins for quantized types (tf.qint8.as_numpy_dtype...).
        (np.dtype([("qint8", np.int8)]), 11),
        (np.dtype([("quint8", np.uint8)]), 12),
        (np.dtype([("qint16", np.int16)]), 15),
        (np.dtype([("quint16", np.uint16)]), 16),
        (np.dtype([("qint32", np.int32)]), 13),
        (np.dtype([("qint32", ">i4")]), 13),
    ],
)
def test_from_numpy_dtype(dtype, expected):
    assert D.from_numpy_dtype(dtype) == expected
    assert D.from_numpy_dtype(dtype) == expected  # again, now possibly from the cache


def test_from_numpy_dtype_of_array_dtypes():
    assert D.from_numpy_dtype(np.zeros(2, ">i4").dtype) == D.DT_INT32
    assert D.from_numpy_dtype(np.array([b"ab"]).dtype) == D.DT_STRING
    assert D.from_numpy_dtype(np.array(["ab"]).dtype) == D.DT_STRING
    assert D.from_numpy_dtype(np.array([b"x", None], dtype=object).dtype) == D.DT_STRING


@pytest.mark.skipif(
    not hasattr(np, "dtypes") or not hasattr(np.dtypes, "StringDType"), reason="numpy < 2 has no StringDType"
)
def test_from_numpy_dtype_string_dtype():
    assert D.from_numpy_dtype(np.dtypes.StringDType()) == D.DT_STRING
    assert D.from_numpy_dtype(np.array(["a", "bc"], dtype=np.dtypes.StringDType()).dtype) == 7


@pytest.mark.parametrize(
    "dtype, message",
    [
        ("M8[s]", "numpy dtype datetime64[s] is not supported: datetime64 dtypes have no TensorFlow DataType"),
        (np.datetime64, "numpy dtype datetime64 is not supported: datetime64 dtypes have no TensorFlow DataType"),
        (">M8[ns]", "numpy dtype >M8[ns] is not supported: datetime64 dtypes have no TensorFlow DataType"),
        ("m8[ms]", "numpy dtype timedelta64[ms] is not supported: timedelta64 dtypes have no TensorFlow DataType"),
        ("V4", "numpy dtype |V4 is not supported: void dtypes have no TensorFlow DataType"),
        (
            [("a", "<i4"), ("b", "<f4")],
            "numpy dtype [('a', '<i4'), ('b', '<f4')] is not supported: structured dtypes have no TensorFlow DataType",
        ),
        (
            np.dtype([("x", "i1")]),
            "numpy dtype [('x', 'i1')] is not supported: structured dtypes have no TensorFlow DataType",
        ),
        # The right quantized name with the wrong width is not TensorFlow's stand-in.
        (
            np.dtype([("qint8", "<i2")]),
            "numpy dtype [('qint8', '<i2')] is not supported: structured dtypes have no TensorFlow DataType",
        ),
        (
            np.dtype(("<f4", (2,))),
            "numpy dtype ('<f4', (2,)) is not supported: subarray dtypes have no TensorFlow DataType",
        ),
        (None, "None is not a dtype"),
        ("nonsense", "'nonsense' is not a numpy dtype (data type 'nonsense' not understood)"),
    ],
)
def test_from_numpy_dtype_rejects(dtype, message):
    with pytest.raises(UnsupportedDtypeError) as info:
        D.from_numpy_dtype(dtype)
    assert str(info.value) == message
    with pytest.raises(UnsupportedDtypeError) as again:  # errors are never cached
        D.from_numpy_dtype(dtype)
    assert str(again.value) == message


def test_from_numpy_dtype_rejects_longdouble():
    for t in (np.longdouble, np.dtype(np.longdouble), np.dtype(np.longdouble).newbyteorder()):
        with pytest.raises(UnsupportedDtypeError) as info:
            D.from_numpy_dtype(t)
        assert str(info.value) == (f"numpy dtype {np.dtype(t)} (longdouble) has no TensorFlow DataType")
    with pytest.raises(UnsupportedDtypeError) as info:
        D.from_numpy_dtype(np.clongdouble)
    assert str(info.value) == (f"numpy dtype {np.dtype(np.clongdouble)} (clongdouble) has no TensorFlow DataType")


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize != 16, reason="needs an 80/128-bit longdouble")
def test_from_numpy_dtype_rejects_float128_by_name():
    with pytest.raises(UnsupportedDtypeError) as info:
        D.from_numpy_dtype("float128")
    assert str(info.value) == "numpy dtype float128 (longdouble) has no TensorFlow DataType"
    with pytest.raises(UnsupportedDtypeError) as info:
        D.from_numpy_dtype("complex256")
    assert str(info.value) == "numpy dtype complex256 (clongdouble) has no TensorFlow DataType"


@pytest.mark.parametrize(
    "name",
    [
        "float8_e4m3",
        "float8_e3m4",
        "float8_e8m0fnu",
        "float6_e2m3fn",
        "float6_e3m2fn",
        "int1",
        "uint1",
        "complex32",
        "bcomplex32",
    ],
)
def test_from_numpy_dtype_rejects_ml_dtypes_tensorflow_lacks(name):
    t = getattr(ml_dtypes, name, None)
    if t is None:
        pytest.skip(f"ml_dtypes {ml_dtypes.__version__} has no {name}")
    with pytest.raises(UnsupportedDtypeError) as info:
        D.from_numpy_dtype(t)
    assert str(info.value) == f"numpy dtype {name} has no TensorFlow DataType"


def test_from_numpy_dtype_is_fast():
    # Called once per tensor; 100 000 tensors must not add noticeable time.
    hot = [np.dtype("float32"), np.dtype(">f4"), np.dtype("S17"), np.dtype(ml_dtypes.bfloat16)]
    start = time.perf_counter()
    for _ in range(25_000):
        for d in hot:
            D.from_numpy_dtype(d)
    assert time.perf_counter() - start < 1.0


def _load_with_ml_dtypes(fake, monkeypatch):
    """A fresh copy of the dtypes module imported against a stand-in ml_dtypes."""
    monkeypatch.setitem(sys.modules, "ml_dtypes", fake)
    spec = importlib.util.spec_from_file_location("fastckpt.format._dtypes_old_ml", D.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_older_ml_dtypes_without_some_types(monkeypatch):
    # ml_dtypes 0.3/0.4 have no int2, uint2 nor float4_e2m1fn.
    fake = types.ModuleType("ml_dtypes")
    fake.__version__ = "0.3.2"
    for name in (
        "bfloat16",
        "float8_e5m2",
        "float8_e4m3fn",
        "float8_e4m3fnuz",
        "float8_e4m3b11fnuz",
        "float8_e5m2fnuz",
        "int4",
        "uint4",
    ):
        setattr(fake, name, getattr(ml_dtypes, name))
    old = _load_with_ml_dtypes(fake, monkeypatch)
    assert old.to_numpy_dtype(29) == np.dtype(ml_dtypes.int4)
    assert old.from_numpy_dtype(ml_dtypes.bfloat16) == 14
    for dt, name in ((31, "int2"), (32, "uint2"), (33, "float4_e2m1fn")):
        with pytest.raises(UnsupportedDtypeError) as info:
            old.to_numpy_dtype(dt)
        assert str(info.value) == (
            f"DataType {dt} ({name}) needs ml_dtypes.{name}, which the "
            f"installed ml_dtypes 0.3.2 lacks; upgrade ml_dtypes"
        )
        # Names and sizes are format facts and stay available.
        assert old.dtype_name(dt) == name
        assert old.element_size(dt) == 1
    with pytest.raises(UnsupportedDtypeError) as info:
        old.from_numpy_dtype(ml_dtypes.int2)
    assert str(info.value) == "numpy dtype int2 has no TensorFlow DataType"


# ---------------------------------------------------------------------------
# Against TensorFlow


@pytest.mark.tf
def test_enum_numbers_match_tensorflow():
    from tensorflow.core.framework import types_pb2

    tf_values = {types_pb2.DataType.Name(v): v for v in types_pb2.DataType.values() if v < 100}
    ours = {name: getattr(D, name) for name in D.__all__ if name.startswith("DT_")}
    assert ours == tf_values


@pytest.mark.tf
@pytest.mark.parametrize("const, dt, name, size, np_dtype", TABLE, ids=IDS)
def test_mapping_matches_tensorflow(const, dt, name, size, np_dtype):
    import tensorflow as tf

    tf_dtype = tf.dtypes.as_dtype(dt)
    assert D.dtype_name(dt) == tf_dtype.name
    assert D.dtype_name(dt + 100) == tf.dtypes.as_dtype(dt + 100).name
    # TensorFlow's numpy type for writing (structured for quantized types) maps back to dt.
    assert D.from_numpy_dtype(tf_dtype.as_numpy_dtype) == dt
    if dt not in QUANTIZED:
        assert D.to_numpy_dtype(dt) == np.dtype(tf_dtype.as_numpy_dtype)


@pytest.mark.tf
@pytest.mark.parametrize(
    "dtype",
    [
        np.float16,
        np.float32,
        np.float64,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.intc,
        np.longlong,
        np.complex64,
        np.complex128,
        np.bool_,
        np.object_,
        np.bytes_,
        np.str_,
        ml_dtypes.bfloat16,
        ml_dtypes.int4,
        ml_dtypes.float8_e5m2,
    ],
)
def test_from_numpy_dtype_matches_tensorflow(dtype):
    import tensorflow as tf

    assert D.from_numpy_dtype(dtype) == tf.dtypes.as_dtype(dtype).as_datatype_enum


def _tf_tensor_of(tf, dt):
    """A 3-element TensorFlow tensor of DataType dt."""
    tf_dtype = tf.dtypes.as_dtype(dt)
    if dt == D.DT_STRING:
        return tf.constant([b"a", b"bc", b""])
    if dt in QUANTIZED:
        return tf.constant(np.array([1, 2, 3]).astype(tf_dtype.as_numpy_dtype), dtype=tf_dtype)
    return tf.constant(np.array([1, 0, -1]).astype(D.to_numpy_dtype(dt)), dtype=tf_dtype)


@pytest.mark.tf
@pytest.mark.parametrize("dt", [pytest.param(row[1], id=row[0]) for row in TABLE if row[1] != 7])
def test_data_file_layout_matches_tensorflow(dt, tmp_path):
    # The bytes SaveV2 writes for a 3-element tensor are the array's bytes in
    # the dtype to_numpy_dtype gives, element_size bytes each. (Strings have
    # their own layout, tested with the string codec.)
    import tensorflow as tf

    tensor = _tf_tensor_of(tf, dt)
    prefix = str(tmp_path / "ckpt")
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=["x"], shape_and_slices=[""], tensors=[tensor])
    data = (tmp_path / "ckpt.data-00000-of-00001").read_bytes()
    assert len(data) == 3 * D.element_size(dt)
    got = np.frombuffer(data, dtype=D.to_numpy_dtype(dt))
    expected = tensor.numpy()
    if expected.dtype.fields is not None:  # a structured stand-in, in some TF versions
        expected = expected.view(D.to_numpy_dtype(dt))
    assert got.dtype == D.to_numpy_dtype(dt)
    assert got.tobytes() == expected.astype(D.to_numpy_dtype(dt)).tobytes()
