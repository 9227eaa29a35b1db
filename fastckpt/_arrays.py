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

__all__ = ["to_host_array"]

_DLPACK_CPU = 1


def _from_torch(t: Any) -> np.ndarray:
    t = t.detach()
    if t.device.type != "cpu":
        # The GPU staging path lives in the native core; until a caller's
        # device arrays go through it, copy them to the host once.
        t = t.cpu()
    name = str(t.dtype).replace("torch.", "")
    if name == "bfloat16":
        import ml_dtypes

        return t.contiguous().view(_torch_int16(t)).numpy().view(ml_dtypes.bfloat16)
    if name.startswith("float8"):
        import ml_dtypes

        target = {"float8_e4m3fn": ml_dtypes.float8_e4m3fn, "float8_e5m2": ml_dtypes.float8_e5m2,
                  "float8_e4m3fnuz": ml_dtypes.float8_e4m3fnuz,
                  "float8_e5m2fnuz": ml_dtypes.float8_e5m2fnuz}.get(name)
        if target is None:
            raise UnsupportedDtypeError(f"torch dtype {t.dtype} has no checkpoint equivalent")
        return t.contiguous().view(_torch_uint8(t)).numpy().view(target)
    return t.numpy()


def _torch_int16(t: Any) -> Any:
    import torch

    return torch.int16


def _torch_uint8(t: Any) -> Any:
    import torch

    return torch.uint8


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
