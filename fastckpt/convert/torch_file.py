"""torch state-dict files (``.pt``, ``.pth``, ``.bin``): what ``torch.save``
writes, usually ``model.state_dict()``.

Read with ``torch.load(path, weights_only=True, mmap=True)``: only tensors,
numbers, strings and plain containers are unpickled (no code from the file
runs), and tensor storage is mapped from the file rather than read, so
tensors are copied out piece by piece. Files in torch's legacy (pre-zip)
format cannot be mapped and are loaded whole.

A nested file (``{"model": {...}, "optim": {...}, "step": 3}``) is flattened
as :func:`fastckpt.save` flattens a nested state (:mod:`fastckpt.structure`):
keys joined with ``/``, numbers as 0-d tensors, strings as string tensors,
None dropped.

Written with ``torch.save`` of one flat ``{name: tensor}`` dict. torch.save
takes every tensor at once, so the tensors are first assembled in anonymous
scratch space on disk (:class:`~._base.Spool`) and handed to torch.save as
tensors mapping it: memory stays bounded, at the cost of a second write.
"""

from __future__ import annotations

import os
import pickle
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

from .. import structure
from ..errors import (
    CheckpointNotFoundError,
    DataLossError,
    InvalidArgumentError,
    UnsupportedDtypeError,
    from_os_error,
)
from ._base import AtomicFile, Index, Spool, TensorInfo, make_parent, refusal, require, unsupported

FORMAT = "torch"


def load_file(path: str) -> Any:
    """``torch.load(path, weights_only=True, mmap=True)`` (without mmap for a
    legacy-format file), with fastckpt's errors."""
    torch = require("torch", "torch", "reading torch files")
    if not os.path.exists(path):
        raise CheckpointNotFoundError(2, "No such file or directory", path, message=f"torch file '{path}' not found")
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsupportedDtypeError(
            f"'{path}' holds objects other than tensors, numbers, strings and plain containers, which "
            f"torch.load(weights_only=True) refuses to unpickle: {str(e).splitlines()[0]}"
        ) from None
    except OSError as e:
        raise from_os_error(e, f"cannot read torch file '{path}'", path) from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise DataLossError(f"'{path}' is not a readable torch file: {e}") from None


def flatten_state(obj: Any, path: str) -> Dict[str, Any]:
    """name -> tensor or 0-d array of a loaded torch file (see the module docstring)."""
    if not isinstance(obj, Mapping):
        raise InvalidArgumentError(f"'{path}' holds a {type(obj).__name__}, not a state dict (a mapping)")
    try:
        return structure.flatten(obj).tensors
    except (InvalidArgumentError, UnsupportedDtypeError) as e:
        raise type(e)(f"'{path}': {e}") from None


def tensor_info(name: str, value: Any) -> TensorInfo:
    """The TensorInfo of a torch tensor or numpy array."""
    if isinstance(value, np.ndarray):
        dtype = value.dtype if value.dtype.kind not in "SUO" else np.dtype(object)
        return TensorInfo(name, dtype, tuple(value.shape))
    from .._arrays import torch_numpy_dtype

    return TensorInfo(name, torch_numpy_dtype(value.dtype), tuple(int(d) for d in value.shape))


def host_piece(value: Any, info: TensorInfo, index: Optional[Index]) -> np.ndarray:
    """Piece `index` of a torch tensor or numpy array as a C-contiguous numpy array."""
    from .._arrays import to_host_array

    if isinstance(value, np.ndarray):
        part = value if index is None else value[index]
        if part.dtype.kind in "SU":
            part = part.astype(object)
        return np.ascontiguousarray(part).reshape(part.shape)
    part = value if index is None else value[index]
    return np.ascontiguousarray(to_host_array(part.contiguous())).reshape(tuple(part.shape))


class TorchSource:
    """A torch state-dict file."""

    format = FORMAT

    def __init__(self, path: str) -> None:
        self.path = path
        self._values = flatten_state(load_file(path), path)
        self._infos = [tensor_info(n, v) for n, v in self._values.items()]

    def tensors(self) -> List[TensorInfo]:
        return list(self._infos)

    def read(self, info: TensorInfo, index: Optional[Index] = None) -> np.ndarray:
        return host_piece(self._values[info.name], info, index)

    def close(self) -> None:
        self._values = {}


def check_torch_dtype(info: TensorInfo, fmt: str) -> None:
    """Raises UnsupportedDtypeError unless torch has a dtype for `info`."""
    if info.dtype == object:
        raise unsupported(info, fmt, "torch tensors hold numbers only")
    from .._arrays import torch_can_hold

    if not torch_can_hold(info.dtype):
        raise unsupported(info, fmt, f"torch has no {info.dtype.name} dtype")


def can_hold(info: TensorInfo) -> Optional[str]:
    """None if a torch file can hold `info`, else why not."""
    return refusal(lambda i: check_torch_dtype(i, FORMAT), info)


class SpooledTensors:
    """Tensors assembled in scratch space, handed out as torch tensors that
    map it (see the module docstring). Owned by one sink."""

    def __init__(self, directory: str) -> None:
        self._spool = Spool(directory)
        self._placed: List[Tuple[TensorInfo, int]] = []

    def add(self, info: TensorInfo, pieces: Iterable[np.ndarray]) -> None:
        offset, _ = self._spool.append(pieces)
        self._placed.append((info, offset))

    def state_dict(self) -> Dict[str, Any]:
        from .._arrays import torch_from_numpy

        return {info.name: torch_from_numpy(self._spool.array(offset, info)) for info, offset in self._placed}

    def close(self) -> None:
        self._spool.close()


class TorchSink:
    """Writes a torch file (``torch.save`` of ``{name: tensor}``) at `dst`,
    through a temporary file renamed at :meth:`commit`."""

    format = FORMAT

    def __init__(self, dst: str, tensors: List[TensorInfo], *, durable: bool) -> None:
        require("torch", "torch", "writing torch files")
        for t in tensors:
            check_torch_dtype(t, FORMAT)
        make_parent(dst)
        self.dst = dst
        self.durable = durable
        self._tensors = SpooledTensors(os.path.dirname(dst))

    def add(self, info: TensorInfo, pieces: Iterable[np.ndarray]) -> None:
        self._tensors.add(info, pieces)

    def commit(self) -> List[str]:
        import torch

        out = AtomicFile(self.dst, durable=self.durable)
        try:
            state = self._tensors.state_dict()
            torch.save(state, out.file)
            del state
            out.finish()
            out.publish()
        except BaseException:
            out.discard()
            raise
        finally:
            self._tensors.close()
        return [self.dst]

    def abort(self) -> None:
        self._tensors.close()


def exists(dst: str) -> bool:
    return os.path.exists(dst)
