"""Arrays in "device memory" of the simulated copy engine, for CPU-only tests
of the staging pipeline.

The simulated engine treats a device pointer as a host address, so a
SimDeviceArray is a numpy array that presents itself as a CUDA array
(``__cuda_array_interface__`` v3 and a DLPack device of kDLCUDA). Nothing
reads it as host memory except the copy engine.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


class SimDeviceArray:
    def __init__(self, host: np.ndarray, *, stream: Optional[int] = None, device: int = 0) -> None:
        self._host = np.array(host, order="C")  # a private copy (ascontiguousarray would make 0-d arrays 1-d)
        self.dtype = self._host.dtype
        self.shape: Tuple[int, ...] = self._host.shape
        self.stream = stream
        self.device = device

    @property
    def __cuda_array_interface__(self) -> dict:
        d = {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3, "strides": None}
        if self.stream is not None:
            d["stream"] = self.stream
        return d

    def __dlpack_device__(self) -> Tuple[int, int]:
        return (2, self.device)

    @property
    def ptr(self) -> int:
        return self._host.ctypes.data

    def get(self) -> np.ndarray:
        """A host copy (as CuPy's .get()): the fallback when no device path exists."""
        return self._host.copy()

    def set(self, value: np.ndarray) -> None:
        """A host-to-device copy (as CuPy's .set()): the fallback when no device path exists."""
        np.copyto(self._host, value)

    def peek(self) -> np.ndarray:
        """The bytes in "device memory", for assertions."""
        return self._host


def new_sim_array(shape: Tuple[int, ...], dtype: np.dtype, device: int) -> SimDeviceArray:
    """An allocator for fastckpt.load(..., array_type=new_sim_array)."""
    return SimDeviceArray(
        np.full(shape, 0xAB, dtype=np.uint8).view(dtype)
        if np.dtype(dtype).itemsize == 1
        else np.zeros(shape, dtype=dtype),
        device=device,
    )
