"""Turning caller arrays (numpy, torch, JAX, CuPy, buffer-protocol objects)
into host numpy arrays without copying where possible.

No framework is imported here: objects are recognised by the protocols they
implement (``__array_interface__``, DLPack, the buffer protocol) or, where a
framework needs special handling (torch's bfloat16), by the name of their
type's module, so a framework is only touched if the caller passed its array.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UnsupportedDtypeError

__all__ = [
    "to_host_array",
    "torch_numpy_dtype",
    "torch_dtype_of",
    "torch_from_numpy",
    "torch_can_hold",
    "aligned_empty",
    "raw_bytes",
]

#: Alignment of the arrays fastckpt allocates for loaded tensors: TensorFlow
#: takes a fed numpy array without copying only at its SIMD alignment (64
#: bytes with AVX-512), and vector loads gain from it as well.
ALIGN = 64


def aligned_empty(shape: Any, dtype: Any) -> np.ndarray:
    """A new C-contiguous array starting on an :data:`ALIGN`-byte boundary (a
    view of a slightly larger byte buffer, its base)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    count = 1
    for n in shape:
        count *= n
    nbytes = count * dtype.itemsize
    if dtype.hasobject or nbytes == 0:
        return np.empty(shape, dtype)
    raw = np.empty(nbytes + ALIGN, np.uint8)
    shift = -raw.ctypes.data % ALIGN
    return raw[shift : shift + nbytes].view(dtype).reshape(shape)


def raw_bytes(arr: np.ndarray) -> np.ndarray:
    """The bytes of `arr` in C order as a flat uint8 array (a view of `arr`
    where it is C-contiguous, else of a contiguous copy)."""
    return np.ascontiguousarray(arr).reshape(-1).view(np.uint8)


_DLPACK_CPU = 1


def _from_torch(t: Any) -> np.ndarray:
    """A numpy view of a torch tensor (a device tensor is copied to the host once)."""
    t = t.detach()
    if t.device.type != "cpu":
        # Device tensors normally go through the native staging path
        # (_device.py); this is the fallback with no device path.
        t = t.cpu()
    if str(t.dtype).replace("torch.", "") not in _TORCH_ML_DTYPES:
        return t.numpy()
    # numpy has no bfloat16/float8: reinterpret the bits (torch's .numpy()
    # refuses these dtypes).
    np_dtype = torch_numpy_dtype(t.dtype)
    return t.contiguous().view(_torch_dtype(_BIT_CARRIERS[np_dtype.itemsize])).numpy().view(np_dtype)


# numpy and torch dtypes share these names. bfloat16 and float8 cross between
# numpy (ml_dtypes) and torch as an integer of the same width holding the same
# bits, as neither library converts them: one table for both directions.
_BIT_CARRIERS = {1: "uint8", 2: "int16"}


def torch_from_numpy(arr: np.ndarray) -> Any:
    """A CPU torch tensor sharing `arr`'s memory (bfloat16 and float8, which
    torch.from_numpy refuses, through an integer view of the same bits).

    Raises:
        UnsupportedDtypeError: a dtype torch has no equivalent for.
    """
    import torch

    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # not np.ascontiguousarray, which makes 0-d arrays 1-d
    if arr.dtype.name in _TORCH_ML_DTYPES.values():
        return torch.from_numpy(arr.view(_BIT_CARRIERS[arr.dtype.itemsize])).view(torch_dtype_of(arr.dtype))
    torch_dtype_of(arr.dtype)  # a clear error for dtypes torch lacks (uint16 in old torch, int4...)
    return torch.from_numpy(arr)


_TORCH_ML_DTYPES = {
    "bfloat16": "bfloat16",
    "float8_e4m3fn": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "float8_e4m3fnuz": "float8_e4m3fnuz",
    "float8_e5m2fnuz": "float8_e5m2fnuz",
}


def torch_numpy_dtype(torch_dtype: Any) -> np.dtype:
    """The numpy dtype (ml_dtypes for bfloat16/float8) of a torch dtype."""
    name = str(torch_dtype).replace("torch.", "")
    target = _TORCH_ML_DTYPES.get(name)
    if target is not None:
        import ml_dtypes

        return np.dtype(getattr(ml_dtypes, target))
    try:
        return np.dtype(name)
    except TypeError:
        raise UnsupportedDtypeError(f"torch dtype {name} has no checkpoint equivalent") from None


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def torch_dtype_of(dtype: np.dtype) -> Any:
    """The torch dtype for a numpy (or ml_dtypes) dtype."""
    name = {v: k for k, v in _TORCH_ML_DTYPES.items()}.get(np.dtype(dtype).name, np.dtype(dtype).name)
    try:
        return _torch_dtype(name)
    except AttributeError:
        raise UnsupportedDtypeError(f"torch has no dtype for {np.dtype(dtype).name}") from None


def torch_can_hold(dtype: np.dtype) -> bool:
    """Whether a tensor of numpy dtype `dtype` can become a torch tensor: a
    number torch has a dtype for (bfloat16 and float8 included). torch's
    int4/uint4 and the like are placeholders without arithmetic: refused."""
    dtype = np.dtype(dtype)
    if not (dtype.kind in "biufc" or dtype.name in _TORCH_ML_DTYPES.values()):
        return False
    try:
        torch_dtype_of(dtype)
    except UnsupportedDtypeError:
        return False
    return True


def to_host_array(value: Any) -> np.ndarray:
    """Returns a numpy view of `value` in host memory (a copy only when needed).

    Accepts numpy arrays and scalars, Python scalars and nested lists, torch
    tensors, JAX and CuPy arrays, and any object exporting
    ``__array_interface__``, ``__array__``, DLPack or the buffer protocol.
    """
    if isinstance(value, np.ndarray):
        return value
    module = type(value).__module__ or ""
    if module.startswith("torch"):
        return _from_torch(value)
    if hasattr(value, "__cuda_array_interface__") and hasattr(value, "get"):
        return value.get()  # CuPy: one device-to-host copy
    if hasattr(value, "__array_interface__") or hasattr(value, "__array__"):
        return np.asarray(value)
    if hasattr(value, "__dlpack__"):
        device = value.__dlpack_device__()[0] if hasattr(value, "__dlpack_device__") else _DLPACK_CPU
        if device == _DLPACK_CPU:
            return np.from_dlpack(value)
    return np.asarray(value)
