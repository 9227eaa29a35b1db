"""Device arrays that speak only DLPack: the capsule is read natively
(``_native.dlpack_export``), with no framework imported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from . import _native
from .errors import InvalidArgumentError, UnsupportedDtypeError

if TYPE_CHECKING:
    from ._device import DeviceArray

__all__ = ["describe_dlpack_device_array"]

_LEGACY_STREAM = 1
_DEVICE_TYPES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def describe_dlpack_device_array(value: Any) -> "DeviceArray":
    """Exports `value` through DLPack, asking the producer to make its data
    ready on the legacy default stream, which the staging pipeline then orders
    its copies after."""
    from ._device import DeviceArray

    tensor = _native.dlpack_export(value, stream=_LEGACY_STREAM)
    if tensor.device_type not in _DEVICE_TYPES:
        kind = tensor.device_type
        tensor.release()
        raise InvalidArgumentError(
            f"the array's __dlpack_device__ names a CUDA device but its DLPack export is on device type {kind}"
        )
    try:
        dtype = np.dtype(_native.dlpack_numpy_dtype(tensor.dtype_code, tensor.dtype_bits, tensor.dtype_lanes))
    except InvalidArgumentError as e:
        tensor.release()
        raise UnsupportedDtypeError(str(e)) from None
    if not tensor.c_contiguous:
        tensor.release()
        raise InvalidArgumentError("non-contiguous device arrays are not supported; make the array contiguous first")
    return DeviceArray(
        ptr=int(tensor.data),
        nbytes=int(tensor.nbytes),
        device=int(tensor.device_id),
        stream=_LEGACY_STREAM,
        dtype=dtype,
        shape=tuple(int(d) for d in tensor.shape),
        owner=tensor,
    )
