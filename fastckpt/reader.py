"""Reading checkpoints: ``load_checkpoint``, ``load``, ``list_variables``, ``load_variable``.

Reads what TensorFlow writes (``tf.compat.v1.train.Saver``, sharded or not,
partitioned variables, ``tf.train.Checkpoint``) and what fastckpt writes.
Every tensor's CRC32C is verified as its bytes are read, in parallel in the
native core, straight into the returned arrays.
"""
from __future__ import annotations

import errno
import math
import os
import re
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native, config
from ._gc import gc_paused
from .errors import (os_error, InvalidArgumentError,
                     TensorNotFoundError, UnsupportedDtypeError)
from .format import dtypes, slices as slicing

__all__ = ["CheckpointReader", "load_checkpoint", "load", "load_into", "list_variables", "load_variable"]

PathLike = Union[str, "os.PathLike[str]"]
Extents = List[Tuple[int, int]]


class _Entry(NamedTuple):
    index: int          # position in the native reader's entry list
    dtype: int          # TensorFlow DataType number
    shape: Tuple[int, ...]
    size: int
    slices: Optional[List[Extents]]  # partitioned: the stored slices


def _decode_key(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


# The files of checkpoint PREFIX that tab completion offers for it.
_CHECKPOINT_FILE = re.compile(r"^(?P<prefix>.+)\.(?:index|meta|data-[0-9]{5}-of-[0-9]{5})$",
                              re.DOTALL)


def _checkpoints_in(directory: str) -> List[str]:
    """Prefixes of the checkpoints (``PREFIX.index`` files) directly in `directory`, sorted."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(os.path.join(directory, n[:-len(".index")]) for n in names
                  if n.endswith(".index") and len(n) > len(".index"))


def _resolve_prefix(path: PathLike) -> str:
    """The checkpoint prefix that `path` names; every reader entry point
    (``load``, ``load_checkpoint``, ``list_variables``, ``load_variable``,
    ``load_into``, ``verify``, the CLI) resolves its argument here.

    In order:

    1. ``P`` such that ``P.index`` exists is that checkpoint, even when ``P``
       is also a directory (as TensorFlow's ``Saver.restore`` has it).
    2. A checkpoint's own file, ``PREFIX.index``, ``PREFIX.meta`` or
       ``PREFIX.data-NNNNN-of-MMMMM`` (what tab completion gives), names
       ``PREFIX``.
    3. A directory with a ``checkpoint`` state file resolves to the newest
       checkpoint it names, as ``tf.train.load_checkpoint`` does; without a
       state file, to the one checkpoint in it.
    4. Any other path is returned as given (the reader then reports its
       missing index).

    Raises:
        CheckpointNotFoundError: a directory holding no checkpoint, or whose
            state file names none that exists.
        InvalidArgumentError: a directory without a state file holding
            several checkpoints (the message lists them).
        ValueError: a directory's state file cannot be parsed.
    """
    path = os.fspath(path)
    if os.path.exists(path + ".index"):
        return path
    match = _CHECKPOINT_FILE.match(path)
    if match is not None and not os.path.isdir(path):
        return match.group("prefix")
    if not os.path.isdir(path):
        return path
    from .checkpoint_management import latest_checkpoint

    present = _checkpoints_in(path)
    listing = ", ".join(f"'{p}'" for p in present)
    if os.path.exists(os.path.join(path, "checkpoint")):
        prefix = latest_checkpoint(path)
        if prefix is not None:
            return prefix
        also = f" (checkpoints present: {listing})" if present else ""
        raise os_error(errno.ENOENT, f"no checkpoint in directory '{path}': its 'checkpoint' "
                       f"state file names none that exists{also}", path)
    if len(present) == 1:
        return present[0]
    if not present:
        raise os_error(errno.ENOENT, f"no checkpoint in directory '{path}' (no 'checkpoint' "
                       "state file and no PREFIX.index file)", path)
    raise InvalidArgumentError(
        f"directory '{path}' holds {len(present)} checkpoints and no 'checkpoint' state file "
        f"to choose one: {listing}; pass one of these prefixes")


class CheckpointReader:
    """An open checkpoint. Mirrors TensorFlow's ``CheckpointReader``.

    Use as a context manager, or call :meth:`close`. Safe to use from several
    threads; reads release the GIL.

    Args:
        prefix: the checkpoint prefix (``PREFIX.index`` must exist), one of
            its files (``PREFIX.index``, ``PREFIX.data-*``), or a directory
            (see :func:`_resolve_prefix`).
        threads: I/O threads for reads (default: ``FASTCKPT_THREADS`` or cores).

    Raises:
        CheckpointNotFoundError: the index is missing (a missing data file is
            reported when a tensor stored in it is read).
        DataLossError: the index is damaged.
    """

    def __init__(self, prefix: PathLike, *, threads: Optional[int] = None) -> None:
        self.prefix = _resolve_prefix(prefix)
        self._threads = threads or config.default_threads()
        self._native = _native.Reader(self.prefix)
        # name -> entry index; entries are decoded on first use (_entry), so
        # opening a checkpoint of 100,000 tensors builds no per-tensor objects.
        self._index: Dict[str, int] = self._native.names()
        self._decoded: Dict[str, _Entry] = {}

    # -- context management -------------------------------------------------
    def close(self) -> None:
        """Closes the data files. Further reads raise."""
        self._native.close()

    def __enter__(self) -> "CheckpointReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- queries ------------------------------------------------------------
    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._index))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def keys(self) -> List[str]:
        """Tensor names, sorted."""
        return sorted(self._index)

    def has_tensor(self, name: str) -> bool:
        return name in self._index

    def _all_entries(self) -> Iterator[Tuple[str, _Entry]]:
        for name in self._index:
            yield name, self._entry(name)

    def get_variable_to_shape_map(self) -> Dict[str, List[int]]:
        """name -> shape (a list of ints), as TensorFlow's reader returns it."""
        return {name: list(e.shape) for name, e in self._all_entries()}

    def get_variable_to_dtype_map(self) -> Dict[str, Any]:
        """name -> numpy dtype (object for string tensors). A dtype numpy cannot
        represent (e.g. DT_VARIANT) maps to its TensorFlow name as a string."""
        out: Dict[str, Any] = {}
        for name, e in self._all_entries():
            try:
                out[name] = dtypes.to_numpy_dtype(e.dtype)
            except UnsupportedDtypeError:
                out[name] = dtypes.dtype_name(e.dtype)
        return out

    def _entry(self, name: str) -> _Entry:
        entry = self._decoded.get(name) if isinstance(name, str) else None
        if entry is not None:
            return entry
        try:
            index = self._index[name]
        except KeyError:
            raise TensorNotFoundError(
                f"tensor '{name}' not found in checkpoint '{self.prefix}'") from None
        except TypeError:
            raise InvalidArgumentError(f"tensor names are str, not {type(name).__name__}") from None
        dt, shape, size, slices = self._native.entry(index)
        entry = self._decoded[name] = _Entry(index, dt, shape, size, slices)
        return entry

    # -- reads --------------------------------------------------------------
    def get_tensor(self, name: str) -> np.ndarray:
        """The full value of tensor `name` (partitioned tensors reassembled).

        Raises:
            TensorNotFoundError: no such tensor.
            DataLossError: its bytes fail their CRC, or the data file is truncated.
        """
        entry = self._entry(name)
        if entry.slices is not None:
            return self._read_region(name, entry, [(0, -1)] * len(entry.shape))
        return self._read_entry(name, entry.index, entry.dtype, entry.shape)

    def get_slice(self, name: str, spec: Union[str, Sequence[Tuple[int, int]]]) -> np.ndarray:
        """A slice of tensor `name`, e.g. ``"0,3:-"`` (rows 0..2, all columns).

        `spec` is TensorFlow's slice syntax (``start,length`` or ``-`` per
        dimension, joined by ``:``) or a list of ``(start, length)`` pairs,
        length -1 meaning the whole dimension. For a partitioned tensor only
        the stored slices that intersect the request are read.
        """
        entry = self._entry(name)
        extents = slicing.parse_slice_spec(spec, len(entry.shape)) if isinstance(spec, str) else \
            [(int(s), int(n)) for s, n in spec]
        if len(extents) != len(entry.shape):
            raise InvalidArgumentError(
                f"slice {spec!r} has rank {len(extents)}, tensor '{name}' has rank {len(entry.shape)}")
        for d, (start, length) in enumerate(extents):
            dim = entry.shape[d]
            if start < 0 or (length >= 0 and start + length > dim) or (length < 0 and start != 0):
                raise InvalidArgumentError(
                    f"slice {spec!r} lies outside tensor '{name}' of shape {list(entry.shape)}")
        if entry.slices is not None:
            return self._read_region(name, entry, extents)
        full = self._read_entry(name, entry.index, entry.dtype, entry.shape)
        return np.ascontiguousarray(full[slicing.slice_to_index(entry.shape, extents)])

    def _read_entry(self, name: str, index: int, dt: int, shape: Tuple[int, ...]) -> np.ndarray:
        """Entry `index` (an unpartitioned tensor or a stored slice) as a new array."""
        np_dtype = _numpy_dtype(dt)
        if dt == dtypes.DT_STRING:
            count = math.prod(shape)
            values = self._native.read_strings(index, count)  # decoded and verified before allocating
            out = np.empty(count, dtype=object)
            out[:] = values
            return out.reshape(shape)
        self._native.check_bounds([index])  # before allocating what the index claims
        out = np.empty(shape, dtype=np_dtype)
        self._native.read([(index, out)], self._threads, config.task_bytes())
        return out

    def _read_region(self, name: str, entry: _Entry, extents: Extents) -> np.ndarray:
        """Assembles `extents` of a partitioned tensor from its stored slices.

        The native core plans the read (``plan_region``): it validates the
        tensor's slices once per reader (in bounds, pairwise disjoint), checks
        that those intersecting the request cover it and that each has an
        entry of the right dtype and shape whose bytes lie in its data file,
        all before anything is allocated here, and raises DataLossError
        otherwise. Stored slices that land contiguously in the output (the
        usual partitioning along the first axis) are read straight into it
        in one parallel call; the others through a temporary array each.
        """
        np_dtype = _numpy_dtype(entry.dtype)
        full_shape = entry.shape
        plan = self._native.plan_region(entry.index, [(int(s), int(n)) for s, n in extents])
        out = np.empty(slicing.slice_shape(full_shape, extents), dtype=np_dtype)
        direct, staged = [], []
        for index, stored, overlap in plan:
            target = out[_relative_index(overlap, extents, full_shape)]
            if (entry.dtype != dtypes.DT_STRING and target.flags.c_contiguous
                    and _resolved(stored, full_shape) == list(overlap)):
                direct.append((index, target))
            else:
                staged.append((index, stored, overlap))
        if direct:
            self._native.read(direct, self._threads, config.task_bytes())
        for index, stored, overlap in staged:
            shape = tuple(slicing.slice_shape(full_shape, stored))
            part = self._read_entry(name, index, entry.dtype, shape)
            out[_relative_index(overlap, extents, full_shape)] = \
                part[_relative_index(overlap, stored, full_shape)]
        return out

    def read_into(self, targets: Mapping[str, Any]) -> None:
        """Restores tensors in place into existing arrays: ``{name: array}``.

        Host targets (numpy arrays, torch CPU tensors) are read into directly;
        device targets (CuPy arrays, torch CUDA tensors) are filled through
        pinned staging buffers and host-to-device copies that overlap the
        reads. Shapes and dtypes must match the checkpoint exactly.

        Raises:
            TensorNotFoundError: a name the checkpoint lacks.
            InvalidArgumentError: a shape or dtype mismatch, or a target that
                is read-only or (on a device) not contiguous.
        """
        from ._device import describe_device_array, is_device_array

        device_reqs, host_reqs, device_fill = [], [], []
        keep = []
        for name, target in targets.items():
            entry = self._entry(name)
            want = _numpy_dtype(entry.dtype)
            on_device = is_device_array(target) and _native.device_path() != "cpu"
            if on_device:
                try:
                    dev = describe_device_array(target, for_write=True)
                except (InvalidArgumentError, UnsupportedDtypeError) as e:
                    raise type(e)(f"tensor '{name}': {e}") from None
                shape, dtype = dev.shape, dev.dtype
            else:
                arr = _writable_host_view(target)
                shape, dtype = (tuple(arr.shape), arr.dtype) if arr is not None else (
                    tuple(np.shape(target)), None)
            if tuple(shape) != tuple(entry.shape):
                raise InvalidArgumentError(
                    f"tensor '{name}': checkpoint shape {list(entry.shape)} does not match the "
                    f"target's {list(shape)} (in '{self.prefix}')")
            if dtype is not None and dtype != want:
                raise InvalidArgumentError(
                    f"tensor '{name}': checkpoint dtype {want.name} does not match the target's "
                    f"{dtype.name} (in '{self.prefix}')")
            if entry.slices is not None or entry.dtype == dtypes.DT_STRING:
                value = self.get_tensor(name)
                if on_device:
                    if entry.dtype == dtypes.DT_STRING:
                        raise InvalidArgumentError(f"tensor '{name}': string tensors cannot live on a device")
                    _native.copy_to_device(np.ascontiguousarray(value), dev.ptr, dev.device)
                else:
                    _assign_host(name, target, value)
                continue
            if on_device:
                keep.append(dev)
                if entry.size:
                    device_reqs.append((entry.index, dev.ptr, dev.device))
            elif arr is not None:
                if entry.size:
                    host_reqs.append((entry.index, arr))
            else:
                device_fill.append((name, target))  # no writable view: read, then assign
        self._native.check_bounds([r[0] for r in host_reqs + device_reqs])
        if host_reqs:
            self._native.read(host_reqs, self._threads, config.task_bytes())
        if device_reqs:
            config.apply_staging_settings()
            self._native.read_to_device(device_reqs, self._threads, 2 * self._threads)
        for name, target in device_fill:
            _assign_host(name, target, self.get_tensor(name))
        del keep

    def read_all(self, *, device: Any = None, array_type: Any = None,
                 pack_small: bool = True) -> Dict[str, Any]:
        """Every tensor, read in parallel with one native call for fixed-size ones.

        On the host, tensors under 1 MiB are views into shared 64 MiB slabs
        when `pack_small` is true (the default): one allocation instead of
        thousands, backed by huge pages where the OS allows (100,000 tensors
        of 10 KB load about three times faster). A small array kept
        alive keeps its slab alive; ``pack_small=False`` gives every tensor
        its own allocation.

        With `device` ("cuda", "cuda:N"), fixed-size tensors are restored into
        new device arrays made by `array_type` ("cupy", "torch", or a callable
        ``(shape, dtype, device) -> array``; default CuPy if installed, else
        torch); string tensors stay numpy object arrays.
        """
        with gc_paused():
            return self._read_all(device, array_type, pack_small)

    def _read_all(self, device: Any, array_type: Any, pack_small: bool) -> Dict[str, Any]:
        from ._device import allocator, parse_device

        ordinal = parse_device(device)
        if ordinal is not None:
            new = allocator(array_type)
            result: Dict[str, Any] = {}
            targets = {}
            for name, e in self._all_entries():
                if e.dtype == dtypes.DT_STRING:
                    result[name] = self.get_tensor(name)
                    continue
                if e.slices is None:
                    self._native.check_bounds([e.index])  # before allocating what the index claims
                result[name] = targets[name] = new(tuple(e.shape), _numpy_dtype(e.dtype), ordinal)
            self.read_into(targets)
            return {name: result[name] for name in sorted(result)}
        result, left = self._native.read_all(
            _numpy_dtype, self._threads, config.task_bytes(),
            _PACK_BELOW if pack_small else 0, _SLAB_BYTES)
        for name in left:  # string and partitioned tensors
            result[name] = self.get_tensor(name)
        return {name: result[name] for name in sorted(result)}

    def debug_string(self) -> str:
        """One line per tensor: name (dtype) [shape]."""
        dmap = self.get_variable_to_dtype_map()
        return "".join(f"{n} ({dmap[n]}) {list(self._entry(n).shape)}\n" for n in self.keys())


# Host loads pack tensors under _PACK_BELOW bytes into slabs of _SLAB_BYTES
# (see read_all). A slab of 64 MiB is 32 huge pages, and the most a single
# kept small array can hold on to.
_PACK_BELOW = 1 << 20
_SLAB_BYTES = 64 << 20

_NUMPY_DTYPES: Dict[int, np.dtype] = {}


def _numpy_dtype(dt: int) -> np.dtype:
    """dtypes.to_numpy_dtype, memoised (it runs once per tensor on loads)."""
    np_dtype = _NUMPY_DTYPES.get(dt)
    if np_dtype is None:
        np_dtype = _NUMPY_DTYPES[dt] = dtypes.to_numpy_dtype(dt)
    return np_dtype


def _resolved(extents: Extents, full_shape: Sequence[int]) -> Extents:
    """`extents` with whole dimensions, ``(0, -1)``, written out as ``(0, dim)``."""
    return [(0, full_shape[d]) if n < 0 else (s, n) for d, (s, n) in enumerate(extents)]


def _relative_index(region: Extents, frame: Extents, full_shape: Sequence[int]) -> tuple:
    """numpy index of `region` inside an array that holds `frame` of the full tensor."""
    idx = []
    for d, ((rs, rl), (fs, _fl)) in enumerate(zip(region, frame)):
        if rl < 0:
            rs, rl = 0, full_shape[d]
        if _fl < 0:
            fs = 0
        idx.append(slice(rs - fs, rs - fs + rl))
    return tuple(idx)


def load_checkpoint(prefix: PathLike, *, threads: Optional[int] = None) -> CheckpointReader:
    """Opens a checkpoint for reading (like ``tf.train.load_checkpoint``)."""
    return CheckpointReader(prefix, threads=threads)


def load(prefix: PathLike, *, threads: Optional[int] = None, device: Any = None,
         array_type: Any = None, pack_small: bool = True) -> Dict[str, Any]:
    """Reads every tensor of a checkpoint into a dict of numpy arrays.

    Loading N bytes needs N bytes of memory: tensors are read straight into
    the returned arrays and verified as they arrive. Tensors under 1 MiB
    share 64 MiB slabs unless ``pack_small=False`` (see
    :meth:`CheckpointReader.read_all`).

    With ``device="cuda:N"`` the tensors are restored into new device arrays
    (CuPy by default, or ``array_type="torch"``) through pinned staging
    buffers, the host-to-device copies overlapping reads and CRC checks.
    """
    with CheckpointReader(prefix, threads=threads) as reader:
        return reader.read_all(device=device, array_type=array_type, pack_small=pack_small)


def load_into(prefix: PathLike, targets: Mapping[str, Any], *, threads: Optional[int] = None) -> None:
    """Restores tensors in place into existing host or device arrays
    (``{name: array}``); see :meth:`CheckpointReader.read_into`."""
    with CheckpointReader(prefix, threads=threads) as reader:
        reader.read_into(targets)



def _writable_host_view(target: Any) -> Optional[np.ndarray]:
    """A writable, C-contiguous numpy view of a host target's memory, or None."""
    if isinstance(target, np.ndarray):
        arr = target
    elif (type(target).__module__ or "").startswith("torch") and getattr(target.device, "type", "") == "cpu":
        from ._arrays import to_host_array

        if not target.is_contiguous():
            return None
        arr = to_host_array(target)  # shares the tensor's memory
    else:
        return None
    if not (arr.flags.c_contiguous and arr.flags.writeable):
        if not arr.flags.writeable:
            raise InvalidArgumentError("restore target is read-only")
        return None
    return arr


def _assign_host(name: str, target: Any, value: np.ndarray) -> None:
    if isinstance(target, np.ndarray):
        np.copyto(target, value)
        return
    if (type(target).__module__ or "").startswith("torch"):
        import torch

        with torch.no_grad():
            if value.dtype.name == "bfloat16":
                target.copy_(torch.from_numpy(value.view(np.int16)).view(torch.bfloat16))
            else:
                target.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        return
    try:
        target[...] = value
    except TypeError:
        raise InvalidArgumentError(f"tensor '{name}': cannot restore into a {type(target).__name__}") from None


def list_variables(prefix: PathLike) -> List[Tuple[str, List[int]]]:
    """Sorted ``[(name, shape)]``, as ``tf.train.list_variables`` returns."""
    with CheckpointReader(prefix) as reader:
        shapes = reader.get_variable_to_shape_map()
        return [(name, shapes[name]) for name in sorted(shapes)]


def load_variable(prefix: PathLike, name: str) -> np.ndarray:
    """One tensor's value (a trailing ``:0`` is ignored, as in TensorFlow)."""
    if name.endswith(":0"):
        name = name[:-2]
    with CheckpointReader(prefix) as reader:
        return reader.get_tensor(name)
