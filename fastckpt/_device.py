"""Recognising arrays in device (GPU) memory and describing them for the
native staging pipeline: pointer, size, device ordinal, and the stream their
data is ready on.

Arrays are recognised by protocol (``__cuda_array_interface__``, DLPack
device) or, for torch, by the name of their type's module, so no framework
is imported unless the caller passed one of its arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple

import numpy as np

from .errors import InvalidArgumentError, UnsupportedDtypeError

__all__ = [
    "DeviceArray",
    "describe_device_array",
    "is_device_array",
    "parse_device",
    "allocator",
    "native_staging",
    "check_array_type",
    "import_array_module",
    "ARRAY_TYPES",
    "NO_STREAM",
    "LEGACY_STREAM",
]

# Stream handles as __cuda_array_interface__ v3 and DLPack name them.
NO_STREAM = 0  # no ordering needed: the data is ready
LEGACY_STREAM = 1  # the legacy default stream
_DLPACK_CUDA = 2
_DLPACK_CUDA_MANAGED = 13
_DEVICE_TYPES = (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED)


@dataclass(frozen=True)
class DeviceArray:
    """A C-contiguous array in device memory, as the staging pipeline needs it."""

    ptr: int
    nbytes: int
    device: int
    stream: int
    dtype: np.dtype
    shape: Tuple[int, ...]
    owner: Any  # keeps the memory alive (the array itself, or a contiguous copy)

    def native(self) -> Tuple[int, int, int, int]:
        """The writer's device data tuple: (device_ptr, nbytes, device, stream)."""
        return (self.ptr, self.nbytes, self.device, self.stream)


def native_staging() -> bool:
    """Whether device arrays go through the native staging path (pinned
    buffers, the core's own streams) rather than a host copy made by their
    framework, under ``FASTCKPT_DEVICE`` (see :mod:`fastckpt.config`).

    Call only once a device array (or ``device=``) is involved: the first
    call loads and initialises the CUDA driver, except under ``off``.

    Raises:
        CudaUnavailableError: ``FASTCKPT_DEVICE=on`` and there is no usable
            driver or device (the message says why).
    """
    from . import _native, config

    policy = config.device_policy()
    if policy == "off":
        return False
    if policy == "on":
        _native.require_device_path()
        return True
    return _native.device_path() != "cpu"


def _is_torch_cuda(value: Any) -> bool:
    return (type(value).__module__ or "").startswith("torch") and getattr(
        getattr(value, "device", None), "type", None
    ) == "cuda"


def is_device_array(value: Any) -> bool:
    """True when `value` lives in CUDA device memory."""
    if isinstance(value, np.ndarray):
        return False
    if _is_torch_cuda(value):
        return True
    if hasattr(value, "__cuda_array_interface__"):
        return True
    dev = getattr(value, "__dlpack_device__", None)
    if dev is not None:
        try:
            return int(dev()[0]) in _DEVICE_TYPES
        except Exception:  # a producer that cannot say is not a device array we can use
            return False
    return False


def _torch_dtype(t: Any) -> np.dtype:
    from ._arrays import torch_numpy_dtype

    return torch_numpy_dtype(t.dtype)


_NOT_CONTIGUOUS = "non-contiguous device arrays are not supported; make the array contiguous first"


def _describe_torch(t: Any, for_write: bool) -> DeviceArray:
    import torch  # the caller passed a torch tensor

    t = t.detach()
    if not t.is_contiguous():
        if for_write:
            raise InvalidArgumentError(_NOT_CONTIGUOUS)
        t = t.contiguous()  # one device copy; documented
    device = t.device.index if t.device.index is not None else torch.cuda.current_device()
    stream = torch.cuda.current_stream(t.device).cuda_stream
    return DeviceArray(
        ptr=int(t.data_ptr()),
        nbytes=t.numel() * t.element_size(),
        device=int(device),
        stream=int(stream) or LEGACY_STREAM,
        dtype=_torch_dtype(t),
        shape=tuple(int(d) for d in t.shape),
        owner=t,
    )


def _is_c_contiguous(shape: Tuple[int, ...], strides: Optional[Tuple[int, ...]], itemsize: int) -> bool:
    """The native rule (the one DLPack exports are checked with), on byte strides."""
    from . import _native

    return _native.is_c_contiguous(shape, strides, itemsize)


def _device_of(value: Any) -> int:
    dev = getattr(value, "device", None)
    ident = getattr(dev, "id", None)  # CuPy
    if isinstance(ident, int):
        return ident
    dl = getattr(value, "__dlpack_device__", None)
    if dl is not None:
        return int(dl()[1])
    return 0


def _describe_cai(value: Any, for_write: bool) -> DeviceArray:
    cai = value.__cuda_array_interface__
    shape = tuple(int(d) for d in cai["shape"])
    dtype = None
    try:  # CuPy and JAX give numpy dtypes (ml_dtypes for bfloat16), better than typestr's "V2"
        dtype = np.dtype(value.dtype)
    except (AttributeError, TypeError):
        dtype = np.dtype(cai["typestr"])
    if dtype.byteorder == ">":
        raise UnsupportedDtypeError(f"big-endian device arrays ({cai['typestr']}) are not supported")
    strides = cai.get("strides")
    strides = tuple(int(s) for s in strides) if strides is not None else None
    owner = value
    if not _is_c_contiguous(shape, strides, dtype.itemsize):
        if (type(value).__module__ or "").startswith("cupy") and not for_write:
            import cupy  # the caller passed a CuPy array

            owner = cupy.ascontiguousarray(value)  # one device copy; documented
            return _describe_cai(owner, for_write)
        raise InvalidArgumentError(_NOT_CONTIGUOUS)
    if for_write and cai.get("data", (0, False))[1]:
        raise InvalidArgumentError("the device array is read-only")
    stream = cai.get("stream")
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
    return DeviceArray(
        ptr=int(cai["data"][0]),
        nbytes=nbytes,
        device=_device_of(value),
        stream=NO_STREAM if stream is None else int(stream),
        dtype=dtype,
        shape=shape,
        owner=owner,
    )


def describe_device_array(value: Any, *, for_write: bool = False) -> DeviceArray:
    """Describes a device array for the staging pipeline. With `for_write`
    (a restore target) the array itself must be contiguous and writable; for
    a save, a non-contiguous torch or CuPy array is copied once on its device.

    Raises:
        InvalidArgumentError: a non-contiguous array of a framework we cannot
            ask for a contiguous copy.
        UnsupportedDtypeError: a dtype a checkpoint cannot hold.
    """
    if _is_torch_cuda(value):
        return _describe_torch(value, for_write)
    if hasattr(value, "__cuda_array_interface__"):
        return _describe_cai(value, for_write)
    if for_write:
        raise InvalidArgumentError(
            "restoring into a DLPack-only device array is not supported; pass a CuPy array or a torch tensor"
        )
    from ._dlpack import describe_dlpack_device_array

    return describe_dlpack_device_array(value)


def parse_device(device: Any) -> Optional[int]:
    """The CUDA ordinal `device` names ("cuda", "cuda:1", 1, a torch.device),
    or None for the host ("cpu" or None)."""
    if device is None:
        return None
    if isinstance(device, int) and not isinstance(device, bool) and device >= 0:
        return device
    text = str(device).strip().lower()
    if text == "cpu":
        return None
    if text in ("cuda", "gpu"):
        return 0
    for head in ("cuda:", "gpu:"):
        if text.startswith(head) and text[len(head) :].isdigit():
            return int(text[len(head) :])
    raise InvalidArgumentError(f"device must be 'cpu', 'cuda' or 'cuda:N', not {device!r}")


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module hidden by None in sys.modules, or broken
        return False


# array_type values: what each makes, and the package that makes it.
ARRAY_TYPES = ("numpy", "torch", "cupy")
_PACKAGES = {
    "torch": ("PyTorch", "pip install torch"),
    "cupy": ("CuPy", "pip install cupy-cuda12x (the CuPy build for your CUDA version)"),
}


def import_array_module(array_type: str, where: str) -> Any:
    """Imports the package behind `array_type` ("torch" or "cupy").

    Raises:
        MissingDependencyError: it is not installed (or cannot be imported).
    """
    import importlib

    from .errors import MissingDependencyError

    package, install = _PACKAGES[array_type]
    try:
        return importlib.import_module(array_type)
    except ImportError as e:
        reason = (
            "is not installed"
            if isinstance(e, ModuleNotFoundError) and e.name == array_type
            else f"cannot be imported ({e})"
        )
        raise MissingDependencyError(
            f"array_type={array_type!r} needs {package}, which {reason}: {install} ({where})", name=array_type
        ) from None


def check_array_type(array_type: Any, *, on_device: bool, where: str) -> Any:
    """Validates a load's `array_type` and resolves None.

    On the host, None and "numpy" give numpy arrays and "torch" CPU torch
    tensors; "cupy" and a callable make device arrays and need a device. On
    a device, None is CuPy if installed, else torch; "numpy" is refused.
    The package named is imported here, so that a missing one fails before
    anything is read. `where` ends every message (it names the checkpoint).

    Returns:
        "numpy", "torch", "cupy", or the callable.

    Raises:
        InvalidArgumentError: an unknown value, or one that does not fit
            `on_device`.
        MissingDependencyError: the package it needs is not installed.
    """
    valid = "None, 'numpy', 'torch', 'cupy' or a callable (shape, dtype, device) -> array"
    if callable(array_type):
        if not on_device:
            raise InvalidArgumentError(
                f"a callable array_type makes device arrays and needs a device: "
                f"pass device='cuda' or 'cuda:N' ({where})"
            )
        return array_type
    if array_type is not None and (not isinstance(array_type, str) or array_type not in ARRAY_TYPES):
        raise InvalidArgumentError(f"array_type must be {valid}, not {array_type!r} ({where})")
    if not on_device:
        if array_type == "cupy":
            raise InvalidArgumentError(
                f"array_type='cupy' makes device arrays and needs a device: pass "
                f"device='cuda' or 'cuda:N', or use array_type='numpy' or 'torch' "
                f"for host arrays ({where})"
            )
        if array_type == "torch":
            import_array_module("torch", where)
            return "torch"
        return "numpy"
    if array_type == "numpy":
        raise InvalidArgumentError(
            f"numpy arrays live in host memory: with a device, array_type must be "
            f"'cupy', 'torch' or a callable ({where})"
        )
    if array_type is None:
        array_type = "cupy" if _installed("cupy") else "torch" if _installed("torch") else None
        if array_type is None:
            from .errors import MissingDependencyError

            raise MissingDependencyError(
                f"loading to a device needs CuPy or PyTorch to make the arrays, and neither is "
                f"installed: {_PACKAGES['cupy'][1]}, or {_PACKAGES['torch'][1]} ({where})",
                name="cupy",
            )
    import_array_module(array_type, where)
    return array_type


def allocator(array_type: Any) -> Callable[[Tuple[int, ...], np.dtype, int], Any]:
    """A function (shape, numpy dtype, device ordinal) -> new device array.

    `array_type` is "cupy", "torch" or a callable with that signature, as
    :func:`check_array_type` returns it for a device.

    Raises:
        InvalidArgumentError: any other value.
    """
    if callable(array_type):
        return array_type
    if array_type == "cupy":

        def new_cupy(shape: Tuple[int, ...], dtype: np.dtype, device: int) -> Any:
            import cupy

            with cupy.cuda.Device(device):
                return cupy.empty(shape, dtype=dtype)

        return new_cupy
    if array_type == "torch":

        def new_torch(shape: Tuple[int, ...], dtype: np.dtype, device: int) -> Any:
            import torch

            from ._arrays import torch_dtype_of

            return torch.empty(shape, dtype=torch_dtype_of(dtype), device=f"cuda:{device}")

        return new_torch
    raise InvalidArgumentError(f"array_type must be 'cupy', 'torch' or a callable, not {array_type!r}")
