"""TensorFlow ``DataType`` enum numbers <-> numpy dtypes.

A checkpoint records each tensor's dtype as a ``DataType`` enum number
(``tensorflow/core/framework/types.proto``). This module maps those numbers
to numpy dtypes for reading (:func:`to_numpy_dtype`) and numpy dtypes back to
numbers for writing (:func:`from_numpy_dtype`), and knows each type's name
and its per-element size in a ``.data`` file.

The low-precision types (bfloat16, float8_*, float4_e2m1fn, int4, uint4,
int2, uint2) come from ``ml_dtypes``. An older ``ml_dtypes`` that lacks some
of them is tolerated: those types are simply not registered, and using them
raises :class:`~fastckpt.errors.UnsupportedDtypeError`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import ml_dtypes
import numpy as np

from ..errors import UnsupportedDtypeError

__all__ = [
    "DT_INVALID",
    "DT_FLOAT",
    "DT_DOUBLE",
    "DT_INT32",
    "DT_UINT8",
    "DT_INT16",
    "DT_INT8",
    "DT_STRING",
    "DT_COMPLEX64",
    "DT_INT64",
    "DT_BOOL",
    "DT_QINT8",
    "DT_QUINT8",
    "DT_QINT32",
    "DT_BFLOAT16",
    "DT_QINT16",
    "DT_QUINT16",
    "DT_UINT16",
    "DT_COMPLEX128",
    "DT_HALF",
    "DT_RESOURCE",
    "DT_VARIANT",
    "DT_UINT32",
    "DT_UINT64",
    "DT_FLOAT8_E5M2",
    "DT_FLOAT8_E4M3FN",
    "DT_FLOAT8_E4M3FNUZ",
    "DT_FLOAT8_E4M3B11FNUZ",
    "DT_FLOAT8_E5M2FNUZ",
    "DT_INT4",
    "DT_UINT4",
    "DT_INT2",
    "DT_UINT2",
    "DT_FLOAT4_E2M1FN",
    "REF_OFFSET",
    "to_numpy_dtype",
    "from_numpy_dtype",
    "dtype_name",
    "element_size",
    "FIXED_SIZE_DTYPES",
]

DT_INVALID = 0
DT_FLOAT = 1
DT_DOUBLE = 2
DT_INT32 = 3
DT_UINT8 = 4
DT_INT16 = 5
DT_INT8 = 6
DT_STRING = 7
DT_COMPLEX64 = 8
DT_INT64 = 9
DT_BOOL = 10
DT_QINT8 = 11
DT_QUINT8 = 12
DT_QINT32 = 13
DT_BFLOAT16 = 14
DT_QINT16 = 15
DT_QUINT16 = 16
DT_UINT16 = 17
DT_COMPLEX128 = 18
DT_HALF = 19
DT_RESOURCE = 20
DT_VARIANT = 21
DT_UINT32 = 22
DT_UINT64 = 23
DT_FLOAT8_E5M2 = 24
DT_FLOAT8_E4M3FN = 25
DT_FLOAT8_E4M3FNUZ = 26
DT_FLOAT8_E4M3B11FNUZ = 27
DT_FLOAT8_E5M2FNUZ = 28
DT_INT4 = 29
DT_UINT4 = 30
DT_INT2 = 31
DT_UINT2 = 32
DT_FLOAT4_E2M1FN = 33

#: ``DT_X_REF`` is ``DT_X + REF_OFFSET``; reference types never appear in checkpoints.
REF_OFFSET = 100

# One row per storable type: (enum, TensorFlow's name, bytes per element in a
# .data file, numpy type used when reading). A str in the last column names an
# ml_dtypes attribute, resolved below so a missing one is merely skipped.
# Sub-byte types occupy one byte per element (TF 2.21 stores them unpacked).
_TABLE: Tuple[Tuple[int, str, int, Any], ...] = (
    (DT_FLOAT, "float32", 4, np.float32),
    (DT_DOUBLE, "float64", 8, np.float64),
    (DT_INT32, "int32", 4, np.int32),
    (DT_UINT8, "uint8", 1, np.uint8),
    (DT_INT16, "int16", 2, np.int16),
    (DT_INT8, "int8", 1, np.int8),
    (DT_STRING, "string", 0, np.object_),
    (DT_COMPLEX64, "complex64", 8, np.complex64),
    (DT_INT64, "int64", 8, np.int64),
    (DT_BOOL, "bool", 1, np.bool_),
    # Quantized types carry no scale in the checkpoint; they read as plain ints.
    (DT_QINT8, "qint8", 1, np.int8),
    (DT_QUINT8, "quint8", 1, np.uint8),
    (DT_QINT32, "qint32", 4, np.int32),
    (DT_BFLOAT16, "bfloat16", 2, "bfloat16"),
    (DT_QINT16, "qint16", 2, np.int16),
    (DT_QUINT16, "quint16", 2, np.uint16),
    (DT_UINT16, "uint16", 2, np.uint16),
    (DT_COMPLEX128, "complex128", 16, np.complex128),
    (DT_HALF, "float16", 2, np.float16),
    (DT_UINT32, "uint32", 4, np.uint32),
    (DT_UINT64, "uint64", 8, np.uint64),
    (DT_FLOAT8_E5M2, "float8_e5m2", 1, "float8_e5m2"),
    (DT_FLOAT8_E4M3FN, "float8_e4m3fn", 1, "float8_e4m3fn"),
    (DT_FLOAT8_E4M3FNUZ, "float8_e4m3fnuz", 1, "float8_e4m3fnuz"),
    (DT_FLOAT8_E4M3B11FNUZ, "float8_e4m3b11fnuz", 1, "float8_e4m3b11fnuz"),
    (DT_FLOAT8_E5M2FNUZ, "float8_e5m2fnuz", 1, "float8_e5m2fnuz"),
    (DT_INT4, "int4", 1, "int4"),
    (DT_UINT4, "uint4", 1, "uint4"),
    (DT_INT2, "int2", 1, "int2"),
    (DT_UINT2, "uint2", 1, "uint2"),
    (DT_FLOAT4_E2M1FN, "float4_e2m1fn", 1, "float4_e2m1fn"),
)

# Known but never storable: named for messages, absent from the lookup tables.
_UNSTORABLE_NAMES = {DT_INVALID: "invalid", DT_RESOURCE: "resource", DT_VARIANT: "variant"}

_NAMES: Dict[int, str] = {dt: name for dt, name, _, _ in _TABLE}
_SIZES: Dict[int, int] = {dt: size for dt, _, size, _ in _TABLE}
_DT_TO_NP: Dict[int, np.dtype] = {}
_MISSING_ML_DTYPES: Dict[int, str] = {}  # enum -> ml_dtypes attribute this install lacks

# Writing: keys are numpy dtypes (the hot path: ``arr.dtype``) and numpy scalar
# types. Byte order is ignored, so only native-order dtypes need be listed; the
# slow path normalises anything else and caches the result here.
_NP_TO_DT: Dict[Any, int] = {}

for _dt, _name, _size, _src in _TABLE:
    if isinstance(_src, str):
        _src = getattr(ml_dtypes, _src, None)
        if _src is None:
            _MISSING_ML_DTYPES[_dt] = _name
            continue
    _np_dtype = np.dtype(_src)
    _DT_TO_NP[_dt] = _np_dtype
    if _dt in (DT_QINT8, DT_QUINT8, DT_QINT16, DT_QUINT16, DT_QINT32):
        # Writing plain ints must give plain int types, not the quantized ones.
        # TensorFlow's own numpy stand-ins for quantized types are one-field
        # structured dtypes (``tf.qint8.as_numpy_dtype``); accept those.
        _NP_TO_DT[np.dtype([(_name, _np_dtype)])] = _dt
        continue
    _NP_TO_DT[_np_dtype] = _dt
    _NP_TO_DT[_np_dtype.type] = _dt

# bytes and str arrays of any width are strings too (resolved in the slow path).
for _t in (np.bytes_, np.str_):
    _NP_TO_DT[_t] = DT_STRING
# numpy >= 2 variable-width strings; TensorFlow maps these to tf.string as well.
_StringDType = getattr(getattr(np, "dtypes", None), "StringDType", None)
if _StringDType is not None:
    _NP_TO_DT[np.dtype(_StringDType())] = DT_STRING

# Slow path: numeric kinds by (kind, itemsize), which covers platform aliases
# (np.intc, np.longlong...) that are distinct dtypes of the same layout.
_BY_KIND_SIZE: Dict[Tuple[str, int], int] = {
    (d.kind, d.itemsize): dt
    for dt, d in _DT_TO_NP.items()
    if d.kind in "biufc" and dt not in (DT_QINT8, DT_QUINT8, DT_QINT16, DT_QUINT16, DT_QINT32)
}
_CACHE_LIMIT = 4096  # bound on slow-path results cached in _NP_TO_DT

#: numpy dtype -> DataType of every native-order, fixed-size type a write takes
#: as it is (what :func:`from_numpy_dtype` gives; no strings, no quantized
#: stand-ins): the writer's fast path looks ``arr.dtype`` up here. Read-only
#: (a plain dict, typed as a Mapping: the lookup is on the hot path).
FIXED_SIZE_DTYPES: Mapping[np.dtype, int] = {
    d: dt for d, dt in _NP_TO_DT.items() if isinstance(d, np.dtype) and d.names is None and _SIZES[dt] > 0
}

del _dt, _name, _size, _src, _np_dtype, _t


def _unsupported_reason(dt: int) -> str:
    """Why enum `dt` cannot be mapped (for an error message)."""
    if dt == DT_RESOURCE:
        return "DataType 20 (resource) cannot be stored in a checkpoint: resource handles are not savable"
    if dt == DT_VARIANT:
        return "DataType 21 (variant) tensors are not supported by fastckpt"
    if dt == DT_INVALID:
        return "DataType 0 (DT_INVALID) is not a valid tensor dtype"
    if dt in _MISSING_ML_DTYPES:
        name = _MISSING_ML_DTYPES[dt]
        return (
            f"DataType {dt} ({name}) needs ml_dtypes.{name}, which the installed "
            f"ml_dtypes {getattr(ml_dtypes, '__version__', '?')} lacks; upgrade ml_dtypes"
        )
    if REF_OFFSET < dt <= REF_OFFSET + DT_FLOAT4_E2M1FN:
        return f"DataType {dt} ({dtype_name(dt)}) is a reference type; reference types never appear in checkpoints"
    return f"unknown DataType {dt!r}"


def to_numpy_dtype(dt: int) -> np.dtype:
    """The numpy dtype in which to hold a tensor of DataType `dt` (for reading).

    Quantized types map to the plain integer of the same width (qint8 ->
    int8, quint16 -> uint16, ...); DT_STRING maps to ``object`` (elements are
    ``bytes``). Numbers are native byte order.

    Raises:
        UnsupportedDtypeError: `dt` is DT_INVALID, DT_RESOURCE, DT_VARIANT, a
            ``*_REF`` type, unknown, or needs an ml_dtypes type this install lacks.
    """
    np_dtype = _DT_TO_NP.get(dt)
    if np_dtype is None:
        raise UnsupportedDtypeError(_unsupported_reason(dt))
    return np_dtype


def from_numpy_dtype(dtype: Any) -> int:
    """The DataType enum number under which to store arrays of `dtype` (for writing).

    `dtype` is anything ``numpy.dtype()`` accepts except ``None``. Byte order is
    ignored ('>f4' gives DT_FLOAT; the caller byte-swaps the data). Object,
    bytes ('S') and str ('U') dtypes, and numpy's StringDType, give DT_STRING.
    TensorFlow's structured stand-ins for quantized types
    (``tf.qint8.as_numpy_dtype``...) give the quantized enum.

    Raises:
        UnsupportedDtypeError: structured or void, datetime64, timedelta64,
            longdouble (float128) or clongdouble (complex256) dtypes, ml_dtypes
            types TensorFlow lacks, and anything that is not a dtype.
    """
    try:
        dt = _NP_TO_DT.get(dtype)
    except TypeError:  # unhashable, e.g. a list describing a structured dtype
        dt = None
    if dt is not None:
        return dt
    return _from_numpy_dtype_slow(dtype)


def _from_numpy_dtype_slow(dtype: Any) -> int:
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise UnsupportedDtypeError("None is not a dtype")
    try:
        d = np.dtype(dtype)
    except (TypeError, ValueError) as e:
        raise UnsupportedDtypeError(f"{dtype!r} is not a numpy dtype ({e})") from None
    norm = d if d.isnative else d.newbyteorder("=")
    dt = _NP_TO_DT.get(norm)
    if dt is None:
        dt = _classify(norm, d)
    if isinstance(dtype, np.dtype) and len(_NP_TO_DT) < _CACHE_LIMIT:
        _NP_TO_DT[dtype] = dt  # a dict store is atomic; racing writers store the same value
    return dt


def _classify(d: np.dtype, original: np.dtype) -> int:
    """Maps a native-order dtype outside the fast table, or raises."""
    kind = d.kind
    if kind in "SUOT":
        return DT_STRING
    if d.type is np.longdouble or d.type is np.clongdouble:
        # Rejected even where longdouble is 8 bytes, so code behaves the same on every platform.
        raise UnsupportedDtypeError(f"numpy dtype {original} ({d.type.__name__}) has no TensorFlow DataType")
    dt = _BY_KIND_SIZE.get((kind, d.itemsize))
    if dt is not None:
        return dt
    if d.fields is not None:
        what = "structured"
    elif d.subdtype is not None:
        what = "subarray"
    elif kind == "M":
        what = "datetime64"
    elif kind == "m":
        what = "timedelta64"
    elif d.type is np.void:
        what = "void"
    else:
        raise UnsupportedDtypeError(f"numpy dtype {original} has no TensorFlow DataType")
    raise UnsupportedDtypeError(f"numpy dtype {original} is not supported: {what} dtypes have no TensorFlow DataType")


def dtype_name(dt: int) -> str:
    """TensorFlow's name for DataType `dt`: 'float32', 'bfloat16', 'string', 'qint8'...

    Reference types get a '_ref' suffix ('float32_ref'), DT_INVALID is
    'invalid'. An unknown number gives 'DataType(<n>)' rather than raising, so
    that listing a checkpoint from a newer TensorFlow still works.
    """
    name = _NAMES.get(dt)
    if name is not None:
        return name
    name = _UNSTORABLE_NAMES.get(dt)
    if name is not None:
        return name
    if isinstance(dt, int) and REF_OFFSET < dt <= REF_OFFSET + DT_FLOAT4_E2M1FN:
        base = _NAMES.get(dt - REF_OFFSET) or _UNSTORABLE_NAMES.get(dt - REF_OFFSET)
        if base is not None:
            return base + "_ref"
    return f"DataType({dt!r})"


def element_size(dt: int) -> int:
    """Bytes per element of DataType `dt` in a ``.data`` file; 0 for DT_STRING.

    Sub-byte types (int4, uint4, int2, uint2, float4_e2m1fn) are 1: TensorFlow
    stores one element per byte. Sizes do not depend on ml_dtypes.

    Raises:
        UnsupportedDtypeError: DT_INVALID, DT_RESOURCE, DT_VARIANT, ``*_REF``
            and unknown numbers.
    """
    size = _SIZES.get(dt)
    if size is None:
        raise UnsupportedDtypeError(_unsupported_reason(dt))
    return size
