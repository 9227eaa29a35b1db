"""What a rank holds of each tensor of a multi-rank state.

A leaf is one of:

* **sharded**: pieces ("boxes": offsets and lengths per dimension) of a
  global tensor: a torch ``DTensor`` with ``Shard``/``Replicate`` placements,
  a :class:`Shard` (an explicit piece, for tensor-parallel code that keeps
  plain local tensors), or a JAX array sharded over devices. Stored as
  TensorFlow slices of the global tensor (a partitioned variable).
* **replicated**: a value every rank holds whole (a plain tensor or array,
  a ``DTensor`` replicated everywhere, a scalar): stored once.
* **per-rank**: a value that differs by rank (:class:`PerRank`): stored once
  per rank and given back to the same rank.

No framework is imported here unless the caller handed us one of its objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InvalidArgumentError, UnsupportedDtypeError

__all__ = ["Shard", "PerRank", "Box", "LocalTensor", "describe", "box_nbytes"]

#: (offsets, lengths) of a piece of a global tensor, one entry per dimension.
Box = Tuple[Tuple[int, ...], Tuple[int, ...]]


class Shard:
    """A piece of a global tensor held by this rank.

    Args:
        array: the piece (numpy, torch, JAX, CuPy...), of shape ``lengths``.
        global_shape: the shape of the whole tensor.
        offsets: where the piece starts in it, one offset per dimension.

    Raises:
        InvalidArgumentError: ranks differ, or the piece lies outside the tensor.
    """

    def __init__(self, array: Any, global_shape: Sequence[int], offsets: Sequence[int]) -> None:
        shape = tuple(int(d) for d in getattr(array, "shape", np.shape(array)))
        self.array = array
        self.global_shape = tuple(int(d) for d in global_shape)
        self.offsets = tuple(int(o) for o in offsets)
        if not (len(shape) == len(self.global_shape) == len(self.offsets)):
            raise InvalidArgumentError(
                f"Shard: the piece has rank {len(shape)}, global_shape {len(self.global_shape)} and "
                f"offsets {len(self.offsets)}; they must agree"
            )
        for d, (o, n, g) in enumerate(zip(self.offsets, shape, self.global_shape)):
            if o < 0 or n < 0 or o + n > g:
                raise InvalidArgumentError(f"Shard: dimension {d} covers [{o}, {o + n}) of a global dimension of {g}")

    @property
    def box(self) -> Box:
        return self.offsets, tuple(int(d) for d in getattr(self.array, "shape", np.shape(self.array)))

    def __repr__(self) -> str:
        return f"Shard(global_shape={self.global_shape}, offsets={self.offsets}, shape={self.box[1]})"


class PerRank:
    """A value that differs by rank (an RNG state, a data-loader position):
    stored once per rank, under ``PATH/__rank_R``, and given back to the same
    rank on load. Restoring on another number of ranks is an explicit choice
    of :func:`fastckpt.distributed.load` (``per_rank=``)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"PerRank({self.value!r})"


@dataclass
class LocalTensor:
    """One tensor as this rank holds it."""

    name: str
    kind: str  # "sharded" or "replicated"
    dtype: str  # numpy dtype name; "string" for string tensors
    shape: Tuple[int, ...]  # the global shape
    boxes: List[Box] = field(default_factory=list)  # sharded: the pieces held here
    pieces: List[Any] = field(default_factory=list)  # the arrays of those pieces (not sent)
    value: Any = None  # replicated: the value

    def meta(self) -> Tuple[Any, ...]:
        """What the other ranks learn of it (no data)."""
        return (self.name, self.kind, self.dtype, self.shape, tuple(self.boxes))


def box_nbytes(box: Box, itemsize: int) -> int:
    return int(math.prod(box[1])) * itemsize


def _dtype_name(value: Any) -> str:
    from ..structure import is_array

    module = type(value).__module__ or ""
    if module.startswith("torch"):
        from .._arrays import torch_numpy_dtype

        return torch_numpy_dtype(value.dtype).name
    raw = getattr(value, "dtype", None)
    if raw is not None:
        try:
            dt = np.dtype(raw)
        except TypeError:
            dt = None
        if dt is not None:
            return "string" if dt.kind in "OSU" else dt.name
    if is_array(value):
        from .._arrays import to_host_array

        dt = to_host_array(value).dtype
        return "string" if dt.kind in "OSU" else dt.name
    return ""


def _full(shape: Tuple[int, ...]) -> Box:
    return tuple(0 for _ in shape), shape


# (global shape, mesh, placements) -> this rank's box, or None for a replicated
# DTensor. Every save describes every DTensor; torch's computation of the
# local box costs tens of microseconds per tensor, the same answer each time.
_dtensor_boxes: Dict[Tuple[Any, ...], Optional[Box]] = {}
_DTENSOR_BOXES_MAX = 1 << 16


def dtensor_box(t: Any, partial_message: str) -> Optional[Box]:
    """This rank's box of DTensor `t` (offsets, lengths), or None when every
    rank holds it whole (only Replicate placements).

    Raises:
        InvalidArgumentError: a Partial placement, with `partial_message`.
    """
    shape = tuple(int(d) for d in t.shape)
    mesh, placements = t.device_mesh, tuple(t.placements)
    key = (shape, mesh, placements)
    try:
        return _dtensor_boxes[key]
    except KeyError:
        pass
    from torch.distributed.tensor import Partial, Replicate
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    if any(isinstance(p, Partial) for p in placements):
        raise InvalidArgumentError(partial_message)
    box: Optional[Box] = None
    if not all(isinstance(p, Replicate) for p in placements):
        local_shape, offsets = compute_local_shape_and_global_offset(shape, mesh, placements)
        box = (tuple(int(o) for o in offsets), tuple(int(d) for d in local_shape))
    if len(_dtensor_boxes) >= _DTENSOR_BOXES_MAX:
        _dtensor_boxes.clear()
    _dtensor_boxes[key] = box
    return box


def dtensor_local(t: Any) -> Any:
    """The local torch tensor of DTensor `t` (without the autograd wrapper of
    ``to_local()``, which a checkpoint does not need)."""
    local = getattr(t, "_local_tensor", None)
    return local if local is not None else t.to_local()


def _describe_dtensor(name: str, t: Any) -> LocalTensor:
    box = dtensor_box(t, f"{name}: a DTensor with a Partial placement must be reduced before saving")
    shape = tuple(int(d) for d in t.shape)
    local = dtensor_local(t)
    if box is None:
        return LocalTensor(name, "replicated", _dtype_name(local), shape, value=local)
    return LocalTensor(name, "sharded", _dtype_name(local), shape, boxes=[box], pieces=[local])


def _describe_jax(name: str, arr: Any) -> LocalTensor:
    shape = tuple(int(d) for d in arr.shape)
    boxes: List[Box] = []
    pieces: List[Any] = []
    seen = set()
    for s in arr.addressable_shards:
        offsets, lengths = [], []
        for d, sl in enumerate(s.index):
            start, stop, _ = sl.indices(shape[d])
            offsets.append(start)
            lengths.append(stop - start)
        box: Box = (tuple(offsets), tuple(lengths))
        if box in seen:
            continue  # the same piece on several local devices: one copy is stored
        seen.add(box)
        boxes.append(box)
        pieces.append(s.data)
    if boxes == [_full(shape)]:
        return LocalTensor(name, "replicated", _dtype_name(arr), shape, value=arr)
    return LocalTensor(name, "sharded", _dtype_name(arr), shape, boxes=boxes, pieces=pieces)


def is_dtensor(value: Any) -> bool:
    return (type(value).__module__ or "").startswith("torch.distributed") and hasattr(value, "placements")


def is_sharded_jax(value: Any) -> bool:
    module = type(value).__module__ or ""
    if not module.startswith(("jax", "jaxlib")) or not hasattr(value, "addressable_shards"):
        return False
    sharding = getattr(value, "sharding", None)
    return sharding is not None and not getattr(sharding, "is_fully_replicated", True)


def describe(name: str, value: Any) -> Optional[LocalTensor]:
    """The LocalTensor for a sharded leaf (DTensor, Shard, sharded JAX
    array), or None for anything else (replicated arrays and scalars are
    named by the ordinary flattening).

    Raises:
        InvalidArgumentError: a DTensor with a Partial placement.
        UnsupportedDtypeError: a dtype a checkpoint cannot hold.
    """
    if isinstance(value, Shard):
        dt = _dtype_name(value.array)
        if not dt:
            raise UnsupportedDtypeError(f"{name}: a Shard of {type(value.array).__name__}, which is no array")
        return LocalTensor(name, "sharded", dt, value.global_shape, boxes=[value.box], pieces=[value.array])
    if is_dtensor(value):
        return _describe_dtensor(name, value)
    if is_sharded_jax(value):
        return _describe_jax(name, value)
    return None
