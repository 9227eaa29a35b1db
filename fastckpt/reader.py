"""Reading checkpoints: ``load_checkpoint``, ``load``, ``list_variables``, ``load_variable``.

Reads what TensorFlow writes (``tf.compat.v1.train.Saver``, sharded or not,
partitioned variables, ``tf.train.Checkpoint``) and what fastckpt writes.
Every tensor's CRC32C is verified as its bytes are read, in parallel in the
native core, straight into the returned arrays.
"""

from __future__ import annotations

import errno
import math
import operator
import os
import re
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)

import numpy as np

from . import _native, config
from ._arrays import aligned_empty
from ._gc import gc_paused
from ._progress import ProgressCallback, Tracker, check_callback, log_done
from .errors import InvalidArgumentError, TensorNotFoundError, UnsupportedDtypeError, os_error
from .format import dtypes
from .format import slices as slicing

__all__ = ["CheckpointReader", "load_checkpoint", "load", "load_into", "list_variables", "load_variable"]

if TYPE_CHECKING:
    from types import EllipsisType

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")
Extents = List[Tuple[int, int]]
# A get_slice spec: TensorFlow's slice string, (start, length) pairs, or a
# numpy-style index (an int, a slice, ..., or a tuple of them).
SliceSpec = Union[str, int, slice, "EllipsisType", Tuple[Any, ...], Sequence[Sequence[int]]]


class _Entry(NamedTuple):
    index: int  # type: ignore[assignment]  # position in the native reader's entry list (shadows tuple.index)
    dtype: int  # TensorFlow DataType number
    shape: Tuple[int, ...]
    size: int
    slices: Optional[List[Extents]]  # partitioned: the stored slices


def _decode_key(key: bytes) -> str:
    return key.decode("utf-8", "surrogateescape")


# The files of checkpoint PREFIX that tab completion offers for it.
_CHECKPOINT_FILE = re.compile(r"^(?P<prefix>.+)\.(?:index|meta|data-[0-9]{5}-of-[0-9]{5})$", re.DOTALL)


def _checkpoints_in(directory: str) -> List[str]:
    """Prefixes of the checkpoints (``PREFIX.index`` files) directly in `directory`, sorted."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return sorted(
        os.path.join(directory, n[: -len(".index")]) for n in names if n.endswith(".index") and len(n) > len(".index")
    )


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
        raise os_error(
            errno.ENOENT,
            f"no checkpoint in directory '{path}': its 'checkpoint' state file names none that exists{also}",
            path,
        )
    if len(present) == 1:
        return present[0]
    if not present:
        raise os_error(
            errno.ENOENT,
            f"no checkpoint in directory '{path}' (no 'checkpoint' state file and no PREFIX.index file)",
            path,
        )
    raise InvalidArgumentError(
        f"directory '{path}' holds {len(present)} checkpoints and no 'checkpoint' state file "
        f"to choose one: {listing}; pass one of these prefixes"
    )


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
        config.check_positive(threads=threads)
        self.prefix = _resolve_prefix(prefix)
        self._threads = threads or config.default_threads()
        self._native = _native.Reader(self.prefix)
        # name -> entry index; entries are decoded on first use (_entry), so
        # opening a checkpoint of 100,000 tensors builds no per-tensor objects.
        self._index: Dict[str, int] = self._native.names()
        self._decoded: Dict[str, _Entry] = {}
        self._tracker: Optional[Tracker] = None  # set by track(): progress of the bulk reads
        self._origin = 0
        # A compressed checkpoint (fastckpt.compression): its frame table,
        # checked against the index; None for every other checkpoint.
        self._compressed: Optional[Any] = None
        if self._native.compressed:
            from .compression import CompressedEntries
            from .format.frames import FRAMES_KEY

            try:
                self._compressed = CompressedEntries(self._native, self.prefix)
            except BaseException:
                self._native.close()
                raise
            self._index.pop(FRAMES_KEY, None)

    # -- progress ---------------------------------------------------------------
    def track(self, progress: Optional[ProgressCallback], names: Optional[Iterable[str]] = None) -> Optional[Tracker]:
        """Reports the bulk reads that follow (load, read_into) to `progress`
        (see :class:`fastckpt.Progress`), counting the tensors `names` (default:
        every tensor). Returns the tracker (None for no callback)."""
        if check_callback(progress) is None:
            self._tracker = None
            return None
        assert progress is not None
        wanted = set(self._index) if names is None else set(names)
        from .structure import STRUCTURE_KEY

        wanted.discard(STRUCTURE_KEY)  # read as part of the call, not a tensor of it
        # Each tensor's bytes, placed where its data starts in the files; a
        # partitioned tensor's are its slices', placed at its first slice.
        placed: Dict[str, Tuple[int, int, int]] = {}
        compressed = self._compressed
        for index, (key, _dt, _shape, shard, offset, size, _crc, _slices) in enumerate(self._native.entries()):
            name = slicing.decode_slice_key(key)[0] if key[:1] == b"\0" else _decode_key(key)
            if name in wanted:
                if compressed is not None and index in compressed:
                    size = compressed.tables[index].raw_bytes  # progress counts raw bytes
                first = placed.get(name)
                placed[name] = (
                    (size, shard, offset) if first is None else (first[0] + size, *min(first[1:], (shard, offset)))
                )
        order = sorted(placed.values(), key=lambda p: p[1:])
        self._tracker = Tracker(progress, [size for size, _, _ in order])
        self._origin = self._bytes_processed()
        return self._tracker

    def _bulk(self, call: Callable[[], T]) -> T:
        """Runs a native read, reporting progress if track() asked for it."""
        tracker = self._tracker
        if tracker is None:
            return call()
        return tracker.run(call, lambda: self._bytes_processed() - self._origin)

    def _bytes_processed(self) -> int:
        """Bytes read and checked by this reader so far (compressed tensors: their raw bytes)."""
        done = self._native.bytes_processed()
        return done + self._compressed.raw_bytes_read if self._compressed is not None else done

    # -- context management -------------------------------------------------
    def close(self) -> None:
        """Closes the data files. Further reads raise."""
        self._native.close()
        if self._compressed is not None:
            self._compressed.close()

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
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"tensor names are str, not {type(name).__name__} ({name!r}), in checkpoint '{self.prefix}'"
            )
        entry = self._decoded.get(name)
        if entry is not None:
            return entry
        try:
            index = self._index[name]
        except KeyError:
            raise TensorNotFoundError(f"tensor '{name}' not found in checkpoint '{self.prefix}'") from None
        dt, shape, size, slices = self._native.entry(index)
        entry = self._decoded[name] = _Entry(index, dt, shape, size, slices)
        return entry

    def _new_whole_array(self, name: str) -> Optional[np.ndarray]:
        """An uninitialised, aligned array of tensor `name`'s dtype and shape
        for :meth:`read_into`, or None when the tensor is partitioned or a
        string tensor (read those with :meth:`get_tensor`).

        Raises:
            TensorNotFoundError: the checkpoint has no tensor `name`.
            DataLossError: its bytes would lie outside its data file (checked
                before allocating what the index claims).
        """
        entry = self._entry(name)
        if entry.slices is not None or entry.dtype == dtypes.DT_STRING:
            return None
        self._native.check_bounds([entry.index])
        return aligned_empty(entry.shape, _numpy_dtype(entry.dtype))

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

    def __getitem__(self, name: str) -> np.ndarray:
        """``reader[name]``: the same as :meth:`get_tensor`.

        Raises:
            TensorNotFoundError: no such tensor (a ``KeyError``).
            DataLossError: its bytes fail their CRC, or the data file is truncated.
        """
        return self.get_tensor(name)

    def get_slice(self, name: str, spec: SliceSpec) -> np.ndarray:
        """A slice of tensor `name`: only the part asked for is returned (for a
        partitioned tensor, only the stored slices that intersect it are read).

        `spec` is one of:

        * TensorFlow's slice syntax, ``start,length`` or ``-`` (the whole
          dimension) per dimension, joined by ``:``: ``"0,16:-"`` is rows 0..15;
        * a list of ``(start, length)`` pairs, length -1 meaning the whole
          dimension: ``[(0, 16), (0, -1)]``;
        * a numpy-style index: an int, a ``slice``, ``...``, or a tuple of
          them: ``(slice(0, 16), ...)`` or ``np.s_[0:16, ...]``. As in numpy, an
          int selects one position and drops that dimension, negative ints and
          bounds count from the end, an empty range gives an empty dimension,
          missing trailing dimensions are whole, and ``...`` stands for as
          many whole dimensions as needed. Unlike numpy, slice bounds beyond the
          dimension are an error (numpy clips them), the step must be 1, and
          ``None``, bools, lists and arrays (advanced indexing) are refused.
          An index of ints only gives a 0-d array.

        Returns:
            A new C-contiguous array.

        Raises:
            TensorNotFoundError: no such tensor.
            InvalidArgumentError: a malformed spec, the wrong number of
                dimensions, too many indices, a bound or index outside the
                tensor, or a step other than 1 (the message names the tensor
                and its shape).
            DataLossError: the bytes fail their CRC, or a partitioned tensor's
                stored slices do not cover the request.
        """
        entry = self._entry(name)
        extents, dropped = self._slice_extents(name, entry.shape, spec)
        if entry.slices is not None:
            out = self._read_region(name, entry, extents)
        elif entry.dtype != dtypes.DT_STRING:
            out = self._read_box(entry, extents)
        else:
            # String tensors are read whole (their checksum covers the whole encoding).
            full = self._read_entry(name, entry.index, entry.dtype, entry.shape)
            part = full[slicing.slice_to_index(entry.shape, extents) + (Ellipsis,)]  # 0-d stays an array
            # A copy, so that a small slice does not keep the whole tensor alive.
            out = full if part.shape == full.shape else np.array(part, order="C")
        if dropped:
            out = out.reshape([n for d, n in enumerate(out.shape) if d not in dropped])
        return out

    def _slice_extents(self, name: str, shape: Tuple[int, ...], spec: Any) -> Tuple[Extents, Tuple[int, ...]]:
        """(start, length) per dimension for `spec`, and the dimensions an int index drops."""
        rank = len(shape)

        def bad(problem: str) -> InvalidArgumentError:
            return InvalidArgumentError(
                f"bad slice {spec!r} of tensor '{name}' of shape {list(shape)} in '{self.prefix}': {problem}"
            )

        if isinstance(spec, str):
            try:
                extents = slicing.parse_slice_spec(spec, rank)
            except InvalidArgumentError as e:
                raise bad(str(e)) from None
        elif isinstance(spec, list) or (
            isinstance(spec, tuple) and spec and all(isinstance(e, (list, tuple)) for e in spec)
        ):
            extents = []
            for d, pair in enumerate(spec):
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    hint = (
                        "; a list is read as (start, length) pairs, a numpy-style index is a tuple"
                        if isinstance(spec, list)
                        else ""
                    )
                    raise bad(f"item {d} is {pair!r}, not a (start, length) pair{hint}")
                try:
                    extents.append((operator.index(pair[0]), operator.index(pair[1])))
                except TypeError:
                    raise bad(f"item {d} is {pair!r}, not a pair of ints") from None
            if len(extents) != rank:
                raise bad(f"{len(extents)} (start, length) pairs for a tensor of rank {rank}")
        else:
            return self._numpy_extents(shape, spec, bad)
        for d, (start, length) in enumerate(extents):
            dim = shape[d]
            if start < 0 or length < -1 or (length >= 0 and start + length > dim) or (length == -1 and start != 0):
                raise bad(f"(start, length) ({start}, {length}) does not fit dimension {d} of size {dim}")
        return extents, ()

    @staticmethod
    def _numpy_extents(
        shape: Tuple[int, ...], spec: Any, bad: Callable[[str], InvalidArgumentError]
    ) -> Tuple[Extents, Tuple[int, ...]]:
        rank = len(shape)
        items = list(spec) if isinstance(spec, tuple) else [spec]
        ellipses = sum(1 for it in items if it is Ellipsis)
        if ellipses > 1:
            raise bad("an index can only have a single ellipsis ('...')")
        explicit = len(items) - ellipses
        if explicit > rank:
            raise bad(f"too many indices: {explicit} for a tensor of rank {rank}")
        fill: List[Any] = [slice(None)] * (rank - explicit)
        if ellipses:
            at = items.index(Ellipsis)
            items[at : at + 1] = fill
        else:
            items += fill
        extents: Extents = []
        dropped = []
        for d, (it, dim) in enumerate(zip(items, shape)):
            if isinstance(it, slice):
                if it.step is not None and _as_index(it.step) != 1:
                    raise bad(f"step {it.step!r} in dimension {d}: only step 1 is supported")
                start = _slice_bound(it.start, 0, dim, d, bad)
                stop = _slice_bound(it.stop, dim, dim, d, bad)
                extents.append((start, max(stop - start, 0)))
                continue
            if it is None or isinstance(it, (bool, np.bool_)):
                raise bad(f"{it!r} in dimension {d}: only ints, slices and '...' are supported")
            i = _as_index(it)
            if i is None:
                raise bad(f"{it!r} in dimension {d} is not an int, a slice or '...'")
            if not -dim <= i < dim:
                raise bad(f"index {i} is out of range for dimension {d} of size {dim}")
            extents.append((i + dim if i < 0 else i, 1))
            dropped.append(d)
        return extents, tuple(dropped)

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
        out = aligned_empty(shape, np_dtype)
        if self._compressed is not None and index in self._compressed:
            self._compressed.read_whole([(index, out)], self._threads)
            return out
        self._native.read([(index, out)], self._threads, config.task_bytes())
        return out

    def _read_box(self, entry: _Entry, extents: Extents) -> np.ndarray:
        """`extents` of a fixed-size tensor (unpartitioned or partitioned) as a
        new array, through the native box read (``read_box``): only the
        stored bytes overlapping the box are read (whole stored pieces, or
        with chunk CRCs registered the chunks covering what is needed), every
        byte verified, in parallel, straight into the array.

        Before anything is allocated, the native core checks that the bytes
        exist (``check_bounds``; for a partitioned tensor ``plan_region``:
        valid slices that cover the box, each with an entry whose bytes lie in
        its data file), so a lying index cannot cause a huge allocation.
        """
        np_dtype = _numpy_dtype(entry.dtype)
        box = [(int(s), int(n)) for s, n in _resolved(extents, entry.shape)]
        if self._compressed is not None:
            return self._read_compressed_box(entry, extents, box, np_dtype)[0]
        if entry.slices is None:
            self._native.check_bounds([entry.index])
        else:
            self._native.plan_region(entry.index, [(int(s), int(n)) for s, n in extents])
        out = aligned_empty([n for _, n in box], np_dtype)
        self._native.read_box(entry.index, box, out, self._threads, config.task_bytes())
        return out

    def _read_compressed_box(
        self, entry: _Entry, extents: Extents, box: Extents, np_dtype: np.dtype, out: Optional[np.ndarray] = None
    ) -> Tuple[np.ndarray, int]:
        """:meth:`_read_box` in a compressed checkpoint: compressed pieces
        decompress only the frames holding the box, the others go through
        the native box read. Reads into `out` (C-contiguous, the box's shape
        and dtype) when given. Returns (the array, bytes read from the data
        files)."""
        comp = self._compressed
        assert comp is not None
        nbytes = 0
        if entry.slices is None:
            self._native.check_bounds([entry.index])
            if out is None:
                out = aligned_empty([n for _, n in box], np_dtype)
            if entry.index in comp:
                nbytes = comp.read_box(entry.index, entry.shape, box, out, self._threads)
            elif out.size:
                nbytes = self._native.read_box(entry.index, box, out, self._threads, config.task_bytes())
            return out, nbytes
        plan = self._native.plan_region(entry.index, [(int(s), int(n)) for s, n in extents])
        if out is None:
            out = aligned_empty([n for _, n in box], np_dtype)
        for index, stored, overlap in plan:
            stored = _resolved(stored, entry.shape)
            sub = [(o - s, n) for (o, n), (s, _) in zip(overlap, stored)]
            part = aligned_empty([n for _, n in sub], np_dtype)
            if index in comp:
                nbytes += comp.read_box(index, [n for _, n in stored], sub, part, self._threads)
            elif part.size:
                nbytes += self._native.read_box(index, sub, part, self._threads, config.task_bytes())
            out[_relative_index(overlap, box, entry.shape)] = part
        return out, nbytes

    def _read_region(self, name: str, entry: _Entry, extents: Extents) -> np.ndarray:
        """Assembles `extents` of a partitioned tensor from its stored slices.

        Fixed-size tensors go through the native box read (:meth:`_read_box`).
        For string tensors the native core plans the read (``plan_region``):
        it validates the tensor's slices once per reader (in bounds, pairwise
        disjoint), checks that those intersecting the request cover it and
        that each has an entry of the right dtype and shape whose bytes lie in
        its data file, all before anything is allocated here, and raises
        DataLossError otherwise; each stored slice needed is then read whole
        and its part copied into the output.
        """
        if entry.dtype != dtypes.DT_STRING:
            return self._read_box(entry, extents)
        np_dtype = _numpy_dtype(entry.dtype)
        full_shape = entry.shape
        plan = self._native.plan_region(entry.index, [(int(s), int(n)) for s, n in extents])
        out = np.empty(slicing.slice_shape(full_shape, extents), dtype=np_dtype)
        for index, stored, overlap in plan:
            shape = tuple(slicing.slice_shape(full_shape, stored))
            part = self._read_entry(name, index, entry.dtype, shape)
            out[_relative_index(overlap, extents, full_shape)] = part[_relative_index(overlap, stored, full_shape)]
        return out

    def read_into(self, targets: Mapping[str, Any]) -> None:
        """Restores tensors in place into existing arrays: ``{name: array}``.

        Host targets (numpy arrays, torch CPU tensors) are read into directly;
        device targets (CuPy arrays, torch CUDA tensors) are filled through
        pinned staging buffers and host-to-device copies that overlap the
        reads (or, with no native device path, copied by their framework).
        Partitioned and string tensors, and targets with no contiguous
        writable memory, are read and then assigned. Nothing is converted:
        each target's dtype and shape must be the checkpoint's.

        Raises:
            TensorNotFoundError: a name the checkpoint lacks.
            InvalidArgumentError: a dtype or shape mismatch (the message names
                the tensor and gives the checkpoint's dtype and shape and the
                target's), or a target that is read-only or (on a device) not
                contiguous.
            CudaError: a device copy failed.
        """
        from ._device import describe_device_array, is_device_array, native_staging

        if not isinstance(targets, Mapping):
            raise InvalidArgumentError(
                f"restore targets must be a mapping of name -> array, not {type(targets).__name__}"
            )
        host_reqs: List[Tuple[int, np.ndarray]] = []
        device_reqs: List[Tuple[int, int, int]] = []
        assign: List[Tuple[str, Any, bool]] = []  # (name, target, through the native device path)
        empty: List[int] = []  # zero-size tensors: nothing to read, a CRC to check
        compressed_reqs: List[Tuple[int, np.ndarray]] = []  # decompressed straight into the target
        keep = []  # device descriptions (they own contiguous copies) until the reads are done
        staging: Optional[bool] = None  # decided at the first device target: only then is CUDA touched
        for name, target in targets.items():
            entry = self._entry(name)
            whole = entry.slices is None and entry.dtype != dtypes.DT_STRING
            if is_device_array(target):
                if staging is None:
                    staging = native_staging()
                if staging:
                    try:
                        dev = describe_device_array(target, for_write=True)
                    except (InvalidArgumentError, UnsupportedDtypeError) as e:
                        raise type(e)(f"tensor '{name}' in '{self.prefix}': {e}") from None
                    self._check_target(name, entry, dev.shape, dev.dtype)
                    if entry.dtype == dtypes.DT_STRING:
                        raise InvalidArgumentError(
                            f"tensor '{name}' in '{self.prefix}' is a string tensor; it cannot be "
                            "restored into device memory"
                        )
                    keep.append(dev)
                    if not whole or (self._compressed is not None and entry.index in self._compressed):
                        # decompressed on the host, then copied to the device
                        assign.append((name, dev, True))
                    elif entry.size:
                        device_reqs.append((entry.index, dev.ptr, dev.device))
                    else:
                        empty.append(entry.index)
                    continue
            shape, dtype = target_shape_and_dtype(target)
            self._check_target(name, entry, shape, dtype)
            view = writable_host_view(name, self.prefix, target) if whole else None
            if view is None:
                assign.append((name, target, False))
            elif self._compressed is not None and entry.index in self._compressed:
                compressed_reqs.append((entry.index, view))
            elif entry.size:
                host_reqs.append((entry.index, view))
            else:
                empty.append(entry.index)
        # Bounds, and the stored CRC of a zero-size tensor (which no read checks).
        self._native.check_bounds([r[0] for r in host_reqs] + [r[0] for r in device_reqs] + empty)
        if host_reqs:
            self._bulk(lambda: self._native.read(host_reqs, self._threads, config.task_bytes()))
        if compressed_reqs:
            assert self._compressed is not None
            compressed = self._compressed
            self._bulk(lambda: compressed.read_whole(compressed_reqs, self._threads))
        if device_reqs:
            config.apply_staging_settings()
            self._native.read_to_device(device_reqs, self._threads, 2 * self._threads)
        for name, target, native in assign:
            value = self.get_tensor(name)
            if native:
                _native.copy_to_device(np.ascontiguousarray(value), target.ptr, target.device)
            else:
                assign_in_place(name, self.prefix, target, value)
        del keep

    def _check_target(self, name: str, entry: _Entry, shape: Sequence[int], dtype: Optional[np.dtype]) -> None:
        """The one rule for restoring into an existing array: same shape, same dtype."""
        check_restore_target(name, self.prefix, _numpy_dtype(entry.dtype), entry.shape, dtype, shape)

    def read_all(self, *, device: Any = None, array_type: Any = None, pack_small: bool = True) -> Dict[str, Any]:
        """Every tensor, read in parallel with one native call for fixed-size ones.

        On the host, tensors under 1 MiB are views into shared 64 MiB slabs
        when `pack_small` is true (the default): one allocation instead of
        thousands, backed by huge pages where the OS allows (100,000 tensors
        of 10 KB load about three times faster). A small array kept
        alive keeps its slab alive; ``pack_small=False`` gives every tensor
        its own allocation.

        Args:
            device: None or "cpu" for host memory; "cuda" or "cuda:N" to
                restore fixed-size tensors into new device arrays.
            array_type: what the arrays are. On the host: None or "numpy"
                (numpy arrays), or "torch" (CPU torch tensors sharing the
                loaded memory, bfloat16 and float8 included). With a device:
                "cupy", "torch", or a callable ``(shape, dtype, device) ->
                array``; None is CuPy if installed, else torch. String tensors
                stay numpy object arrays of bytes either way.
            pack_small: share slabs among small host tensors (see above).

        Returns:
            name -> array, sorted by name.

        Raises:
            InvalidArgumentError: an unknown `array_type`, or one that needs a
                device ("cupy", a callable) without one.
            MissingDependencyError: the package `array_type` names (torch,
                CuPy) is not installed.
            UnsupportedDtypeError: with ``array_type="torch"``, a tensor whose
                dtype torch lacks (e.g. float8_e4m3b11fnuz).
            DataLossError: bytes that fail their CRC, a truncated file.
        """
        with gc_paused():
            return self._read_all(device, array_type, pack_small)

    def read_state(
        self, *, device: Any = None, array_type: Any = None, pack_small: bool = True, allow_pickle: bool = False
    ) -> Any:
        """What was saved: the nested state a checkpoint's structure entry
        describes (:mod:`fastckpt.structure`), or, without one, every tensor
        by name (:meth:`read_all`). `device`, `array_type` and `pack_small`
        apply to the array leaves, as in :meth:`read_all`; scalars, str,
        bytes and None come back as the Python (or numpy) values saved.

        Raises:
            UnsupportedDtypeError: a pickled leaf without ``allow_pickle=True``.
            DataLossError: a damaged structure entry, or bytes failing their CRC.
        """
        from . import structure
        from ._device import check_array_type, parse_device

        if structure.STRUCTURE_KEY not in self._index:
            return self.read_all(device=device, array_type=array_type, pack_small=pack_small)
        spec = structure.decode_structure(self.get_tensor(structure.STRUCTURE_KEY), self.prefix)
        ordinal = parse_device(device)
        kind = check_array_type(array_type, on_device=ordinal is not None, where=f"loading '{self.prefix}'")
        with gc_paused():
            if ordinal is None:
                values = self._read_all(None, None, pack_small)
                convert = self._torch_converter() if kind == "torch" else None
            else:
                arrays = set(structure.array_leaves(spec))
                values = {n: self.get_tensor(n) for n in self._index if n not in arrays}
                values.update(self._read_all(device, array_type, pack_small, names=arrays))
                convert = None
            return structure.unflatten(spec, values, prefix=self.prefix, allow_pickle=allow_pickle, convert=convert)

    def _read_all(self, device: Any, array_type: Any, pack_small: bool, names: Optional[Any] = None) -> Dict[str, Any]:
        from ._device import allocator, check_array_type, parse_device

        ordinal = parse_device(device)
        kind = check_array_type(array_type, on_device=ordinal is not None, where=f"loading '{self.prefix}'")
        if ordinal is not None:
            new = allocator(kind)
            result: Dict[str, Any] = {}
            targets = {}
            for name, e in self._all_entries():
                if names is not None and name not in names:
                    continue
                if e.dtype == dtypes.DT_STRING:
                    result[name] = self.get_tensor(name)
                    continue
                if e.slices is None:
                    self._native.check_bounds([e.index])  # before allocating what the index claims
                result[name] = targets[name] = new(tuple(e.shape), _numpy_dtype(e.dtype), ordinal)
            self.read_into(targets)
            return {name: result[name] for name in sorted(result)}
        to_torch = self._torch_converter() if kind == "torch" else None  # checked before reading
        result, left = self._bulk(
            lambda: self._native.read_all(
                _numpy_dtype, self._threads, config.task_bytes(), _PACK_BELOW if pack_small else 0, _SLAB_BYTES
            )
        )
        if self._compressed is not None:
            from .format.frames import FRAMES_KEY

            result.pop(FRAMES_KEY, None)  # the frame table is no tensor of the checkpoint's
        if self._compressed is not None:  # compressed tensors, all frames in one parallel read
            batch = []
            for name in left:
                e = self._entry(name)
                if e.index in self._compressed:
                    result[name] = aligned_empty(e.shape, _numpy_dtype(e.dtype))
                    batch.append((e.index, result[name]))
            compressed = self._compressed
            self._bulk(lambda: compressed.read_whole(batch, self._threads))
        for name in left:  # string and partitioned tensors
            if name not in result:
                result[name] = self.get_tensor(name)
        if to_torch is not None:
            return {name: to_torch(result[name]) for name in sorted(result)}
        return {name: result[name] for name in sorted(result)}

    def _torch_converter(self) -> Callable[[np.ndarray], Any]:
        """A function turning a loaded host array into a CPU torch tensor that
        shares its memory (string tensors stay numpy object arrays).

        Raises:
            UnsupportedDtypeError: a tensor of this checkpoint has a dtype torch
                lacks (checked for every tensor before anything is read).
        """
        from ._arrays import torch_can_hold, torch_from_numpy

        checked: Set[np.dtype] = set()
        for name, e in self._all_entries():
            if e.dtype == dtypes.DT_STRING:
                continue
            np_dtype = _numpy_dtype(e.dtype)
            if np_dtype in checked:
                continue
            checked.add(np_dtype)
            if not torch_can_hold(np_dtype):
                raise UnsupportedDtypeError(
                    f"tensor '{name}' in '{self.prefix}' has dtype {np_dtype.name}, which torch "
                    "cannot hold; load it with array_type='numpy'"
                )

        def convert(arr: np.ndarray) -> Any:
            # Shares the loaded memory; string tensors stay numpy object arrays.
            return arr if arr.dtype == object else torch_from_numpy(arr)

        return convert

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


def _relative_index(region: Extents, frame: Extents, full_shape: Sequence[int]) -> Tuple[slice, ...]:
    """numpy index of `region` inside an array that holds `frame` of the full tensor."""
    idx = []
    for d, ((rs, rl), (fs, _fl)) in enumerate(zip(region, frame)):
        if rl < 0:
            rs, rl = 0, full_shape[d]
        if _fl < 0:
            fs = 0
        idx.append(slice(rs - fs, rs - fs + rl))
    return tuple(idx)


def _as_index(value: Any) -> Optional[int]:
    """`value` as an int (ints and numpy integers; not bools), or None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _slice_bound(value: Any, default: int, dim: int, d: int, bad: Callable[[str], InvalidArgumentError]) -> int:
    """A slice's start or stop resolved against a dimension of size `dim`."""
    if value is None:
        return default
    bound = _as_index(value)
    if bound is None:
        raise bad(f"slice bound {value!r} in dimension {d} is not an int")
    if not -dim <= bound <= dim:
        raise bad(f"slice bound {bound} is out of range for dimension {d} of size {dim}")
    return bound + dim if bound < 0 else bound


def load_checkpoint(prefix: PathLike, *, threads: Optional[int] = None) -> CheckpointReader:
    """Opens a checkpoint for reading (like ``tf.train.load_checkpoint``)."""
    return CheckpointReader(prefix, threads=threads)


def load(
    prefix: PathLike,
    *,
    threads: Optional[int] = None,
    device: Any = None,
    array_type: Any = None,
    pack_small: bool = True,
    allow_pickle: bool = False,
    progress: Optional[ProgressCallback] = None,
) -> Any:
    """Reads a checkpoint: the nested state that was saved (dicts with their
    int and str keys, lists, tuples, Python scalars, None, arrays), or, for a
    checkpoint of named tensors (a flat dict saved, or one TensorFlow wrote),
    every tensor in a dict of numpy arrays.

    Loading N bytes needs N bytes of memory: tensors are read straight into
    the returned arrays and verified as they arrive. Tensors under 1 MiB
    share 64 MiB slabs unless ``pack_small=False`` (see
    :meth:`CheckpointReader.read_all`).

    With ``device="cuda:N"`` the tensors are restored into new device arrays
    (CuPy by default, or ``array_type="torch"``) through pinned staging
    buffers, the host-to-device copies overlapping reads and CRC checks.

    Args:
        prefix: the checkpoint prefix, or a directory whose ``checkpoint``
            state file names one.
        threads: I/O threads (default: ``FASTCKPT_THREADS`` or the core count).
        device: None or "cpu" (host memory), "cuda" or "cuda:N".
        array_type: on the host None or "numpy" (numpy arrays) or "torch"
            (CPU torch tensors sharing the loaded memory); with a device
            "cupy", "torch" or a callable ``(shape, dtype, device) -> array``
            (None: CuPy if installed, else torch). String tensors stay numpy
            object arrays.
        pack_small: share slabs among tensors under 1 MiB.
        progress: a callable taking a :class:`fastckpt.Progress` (bytes read
            and verified, bytes total, tensors done, tensors total), called
            on this thread at most ten times a second during the read, and
            once at the end.

    Returns:
        name -> array, sorted by name.

    Raises:
        CheckpointNotFoundError: the index or a data file is missing.
        DataLossError: bytes that fail their CRC, a truncated or garbled file.
        InvalidArgumentError: an unknown `device` or `array_type`, or
            "cupy" or a callable without a device.
        MissingDependencyError: `array_type` names a package that is not
            installed.
        UnsupportedDtypeError: a dtype the chosen array type cannot hold.
    """
    start = time.perf_counter()
    with CheckpointReader(prefix, threads=threads) as reader:
        tracker = reader.track(progress)
        state = reader.read_state(
            device=device, array_type=array_type, pack_small=pack_small, allow_pickle=allow_pickle
        )
        _finish_tracking(reader, tracker, start)
        return state


def _finish_tracking(reader: CheckpointReader, tracker: Optional[Tracker], start: float) -> None:
    """The last progress call and the INFO log line of a restore."""
    if tracker is not None:
        tracker.report(tracker.total, final=True)
    log_done("restored", reader.prefix, reader._bytes_processed(), time.perf_counter() - start)


class RestoreReport(NamedTuple):
    """What :func:`load_into` restored: the tensors filled (by name), the
    target's arrays the checkpoint lacks (``missing``) and the checkpoint's
    tensors under the target's top-level keys that the target has no array
    for (``unexpected``); the last two are empty unless ``strict=False``."""

    restored: List[str]
    missing: List[str]
    unexpected: List[str]


def _some(names: List[str], most: int = 10) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:most])
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return f"{'tensor' if len(names) == 1 else 'tensors'} {shown}{more}"


def load_into(
    prefix: PathLike,
    target: Any,
    *,
    threads: Optional[int] = None,
    strict: bool = True,
    progress: Optional[ProgressCallback] = None,
) -> RestoreReport:
    """Restores tensors in place into the arrays of `target`: ``{name:
    array}``, or a nested state (``{"model": model.state_dict(), "optim":
    optimizer.state_dict()}``) whose arrays are matched by path, named as
    :func:`fastckpt.save` names them (see :mod:`fastckpt.structure`).
    Scalars and None in `target` are left as they are (:func:`load` returns
    the saved ones). See :meth:`CheckpointReader.read_into` for the arrays.

    Args:
        strict: with True (the default), every array of `target` must have a
            tensor in the checkpoint, and every tensor of the checkpoint under
            `target`'s top-level keys an array in `target` (a subtree, such as
            only ``{"model": ...}``, can be restored on its own). With False,
            those on either side are skipped and listed in the report.
        progress: as for :func:`load`, over the tensors restored.

    Returns:
        A :class:`RestoreReport`.

    Raises:
        TensorNotFoundError: `strict` and the two sides differ (the message
            lists the paths).
        InvalidArgumentError: a dtype or shape mismatch (nothing is converted).
    """
    from . import structure

    with CheckpointReader(prefix, threads=threads) as reader:
        leaves = dict(structure.leaf_paths(target))
        arrays = {n: v for n, v in leaves.items() if structure.is_array(v)}
        for n, v in leaves.items():
            if n not in arrays and not structure.is_scalar(v):
                raise InvalidArgumentError(
                    f"tensor '{n}' in '{reader.prefix}': cannot restore into {type(v).__name__} "
                    "(restore targets are arrays; scalars and None are left as they are)"
                )
        present = {n: a for n, a in arrays.items() if n in reader}
        missing = sorted(n for n in arrays if n not in reader)
        # The checkpoint's tensors under the target's top-level keys (as
        # given: a flat key "dense/kernel" covers only itself) that the
        # target has no leaf for.
        tops = [str(k) for k in target] if isinstance(target, Mapping) else [str(i) for i in range(len(target))]
        unexpected = sorted(
            n
            for n in reader._index
            if n not in leaves and n != structure.STRUCTURE_KEY and any(n == t or n.startswith(t + "/") for t in tops)
        )
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"the target's {_some(missing)} not in the checkpoint")
            if unexpected:
                parts.append(f"the checkpoint's {_some(unexpected)} not in the target")
            raise TensorNotFoundError(
                f"restoring from '{reader.prefix}': " + "; ".join(parts) + " (strict=False skips them)"
            )
        start = time.perf_counter()
        tracker = reader.track(progress, present)
        reader.read_into(present)
        _finish_tracking(reader, tracker, start)
        return RestoreReport(sorted(present), missing, unexpected)


def target_shape_and_dtype(target: Any) -> Tuple[Tuple[int, ...], Optional[np.dtype]]:
    """The shape and numpy dtype of a restore target (numpy, torch, CuPy, JAX,
    anything with ``shape``/``dtype``); the dtype is None when the object does
    not say."""
    if isinstance(target, np.ndarray):
        return tuple(target.shape), target.dtype
    dtype: Optional[np.dtype] = None
    raw = getattr(target, "dtype", None)
    if raw is not None:
        if (type(target).__module__ or "").startswith("torch"):
            from ._arrays import torch_numpy_dtype

            dtype = torch_numpy_dtype(raw)
        else:
            try:
                dtype = np.dtype(raw)
            except TypeError:
                dtype = None
    shape = getattr(target, "shape", None)
    return (tuple(int(d) for d in shape) if shape is not None else tuple(np.shape(target))), dtype


def check_restore_target(
    name: str,
    prefix: str,
    ckpt_dtype: np.dtype,
    ckpt_shape: Sequence[int],
    target_dtype: Optional[np.dtype],
    target_shape: Sequence[int],
) -> None:
    """Raises InvalidArgumentError unless a restore target has the checkpoint's
    shape and dtype (a target that does not say its dtype is checked by shape).
    Every in-place restore (``load_into``, ``Saver.restore``) applies this one
    rule; nothing is converted silently."""
    same_dtype = target_dtype is None or np.dtype(target_dtype) == np.dtype(ckpt_dtype)
    if tuple(target_shape) == tuple(ckpt_shape) and same_dtype:
        return
    theirs = np.dtype(target_dtype).name if target_dtype is not None else "unknown dtype"
    raise InvalidArgumentError(
        f"tensor '{name}' in '{prefix}': the checkpoint holds {np.dtype(ckpt_dtype).name} "
        f"{list(ckpt_shape)}, the target is {theirs} {list(target_shape)}; restoring converts nothing"
    )


def writable_host_view(name: str, prefix: str, target: Any) -> Optional[np.ndarray]:
    """A writable, C-contiguous numpy view of a host target's memory, or None
    when it has none (the value is then assigned).

    Raises:
        InvalidArgumentError: a read-only numpy array.
    """
    if isinstance(target, np.ndarray):
        arr = target
    elif (type(target).__module__ or "").startswith("torch") and getattr(target.device, "type", "") == "cpu":
        from ._arrays import to_host_array

        if not target.is_contiguous():
            return None
        arr = to_host_array(target)  # shares the tensor's memory
    else:
        return None
    if not arr.flags.writeable:
        raise InvalidArgumentError(f"tensor '{name}' in '{prefix}': the restore target is read-only")
    return arr if arr.flags.c_contiguous else None


def assign_in_place(name: str, prefix: str, target: Any, value: np.ndarray) -> None:
    """Copies `value` into `target` (numpy, torch on any device, CuPy, or
    anything supporting ``target[...] = value``), whose dtype and shape were
    checked to be `value`'s."""
    if isinstance(target, np.ndarray):
        np.copyto(target, value)
        return
    if (type(target).__module__ or "").startswith("torch"):
        import torch

        from ._arrays import torch_from_numpy

        with torch.no_grad():
            target.copy_(torch_from_numpy(value))
        return
    if hasattr(target, "__cuda_array_interface__") and hasattr(target, "set"):
        target.set(np.ascontiguousarray(value))  # CuPy: one host-to-device copy
        return
    try:
        target[...] = value
    except TypeError:
        raise InvalidArgumentError(
            f"tensor '{name}' in '{prefix}': cannot restore into a {type(target).__name__} (not writable in place)"
        ) from None


def list_variables(prefix: PathLike) -> List[Tuple[str, List[int]]]:
    """Sorted ``[(name, shape)]``, as ``tf.train.list_variables`` returns."""
    with CheckpointReader(prefix) as reader:
        shapes = reader.get_variable_to_shape_map()
        return [(name, shapes[name]) for name in sorted(shapes)]


def load_variable(prefix: PathLike, name: str) -> Any:
    """One tensor's value, as ``tf.train.load_variable`` returns it.

    Args:
        prefix: the checkpoint prefix, or a directory whose ``checkpoint``
            state file names one.
        name: the tensor's name; a trailing ``:0`` is ignored, as in TensorFlow.

    Returns:
        A numpy array; for a scalar (a 0-d tensor) a numpy scalar such as
        ``np.float32(1.5)``, or ``bytes`` for a string scalar, as TensorFlow
        returns them.

    Raises:
        TensorNotFoundError: no such tensor.
        CheckpointNotFoundError: no such checkpoint.
        DataLossError: the tensor's bytes fail their CRC.
    """
    if name.endswith(":0"):
        name = name[:-2]
    with CheckpointReader(prefix) as reader:
        value = reader.get_tensor(name)
    return value[()] if value.ndim == 0 else value
