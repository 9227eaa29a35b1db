"""``fastckpt.save``: write a mapping of arrays as a TensorFlow V2 checkpoint."""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Literal, Mapping, Optional, Sequence, Tuple, TypeVar, Union, overload

import numpy as np

from . import _background, _native, config, structure
from . import compression as _compression
from ._arrays import to_host_array
from ._device import describe_device_array, is_device_array, native_staging
from ._gc import gc_paused
from ._progress import ProgressCallback, Tracker, check_callback, log_done, logger
from .errors import FastCkptError, InvalidArgumentError, UnsupportedDtypeError, from_os_error, os_error
from .format import dtypes

__all__ = [
    "save",
    "SaveResult",
    "prepare_items",
    "prepare_item",
    "partitioned_item",
    "partitioned_items",
    "write_items",
    "start_job",
    "has_device_items",
]

PathLike = Union[str, "os.PathLike[str]"]
T = TypeVar("T")
# A native writer item: (key, DataType, shape, data, crc32c, stored slices); see _native.pyi.
Item = Tuple[Any, ...]


@dataclass(frozen=True)
class SaveResult:
    """What a save wrote."""

    prefix: str
    files: List[str] = field(default_factory=list)
    num_shards: int = 1
    nbytes: int = 0  # tensor bytes written to the data files
    seconds: float = 0.0  # wall time of the save

    @property
    def gbps(self) -> float:
        """Throughput in GB/s (10**9 bytes per second)."""
        return self.nbytes / self.seconds / 1e9 if self.seconds > 0 else float("inf")


def _encode_name(name: Any) -> bytes:
    if isinstance(name, str):
        return name.encode("utf-8", "surrogateescape")
    if isinstance(name, bytes):
        return name
    raise InvalidArgumentError(f"tensor names must be str, not {type(name).__name__} ({name!r})")


def _string_elements(arr: np.ndarray, name: str) -> List[bytes]:
    """The elements of a string tensor, in C order, as bytes objects."""
    flat = arr.reshape(-1, order="C")
    out = []
    for i, x in enumerate(flat.tolist()):
        if isinstance(x, bytes):
            out.append(x)
        elif isinstance(x, str):
            out.append(x.encode("utf-8"))
        elif isinstance(x, (bytearray, memoryview, np.bytes_)):
            out.append(bytes(x))
        else:
            raise UnsupportedDtypeError(
                f"tensor '{name}': element {i} of an object array is a {type(x).__name__}; "
                "object arrays must hold only bytes or str (they are saved as string tensors)"
            )
    return out


_SAVABLE = (
    "numpy arrays and scalars, Python numbers, bytes and str, nested lists of equal-length "
    "rows, torch, JAX and CuPy arrays, and objects exporting the buffer protocol, "
    "__array_interface__, __cuda_array_interface__ or DLPack"
)


def _type_name(value: Any) -> str:
    cls = type(value)
    module = cls.__module__
    return cls.__qualname__ if module in ("builtins", None) else f"{module}.{cls.__qualname__}"


def _host_array(value: Any) -> np.ndarray:
    """`value` as a host numpy array (see to_host_array).

    Raises:
        InvalidArgumentError: numpy cannot make an array of it (a ragged
            nested list, a list mixing numbers and sequences...).
        UnsupportedDtypeError: it is no kind of array or scalar at all.
    """
    try:
        arr = to_host_array(value)
    except FastCkptError:
        raise
    except (ValueError, TypeError, OverflowError) as e:
        if isinstance(value, (list, tuple)) and "inhomogeneous" in str(e):
            what = "a ragged nested list (its rows differ in length)"
        else:
            what = f"this {_type_name(value)}"
        raise InvalidArgumentError(f"cannot make an array of {what}: {e}") from None
    if arr.dtype == object and not isinstance(value, np.ndarray):
        # numpy makes object arrays of integers beyond 64 bits and wraps
        # anything it does not know in a 0-d object array.
        ints = [x for x in arr.flat if isinstance(x, int) and not isinstance(x, bool)]
        if ints:
            low, high = min(ints), max(ints)
            raise InvalidArgumentError(
                f"the integer {low} does not fit in 64 bits (int64 or uint64)"
                if low == high
                else f"integers from {low} to {high} do not fit one 64-bit integer type (int64 or uint64)"
            )
        if arr.ndim == 0 and not isinstance(arr[()], (bytes, str, bytearray, memoryview, np.bytes_)):
            raise UnsupportedDtypeError(
                f"a value of type {_type_name(value)} cannot be saved as a tensor; fastckpt saves {_SAVABLE}"
            )
    return arr


def prepare_item(name: Any, value: Any, *, slice_key: bool = False) -> Tuple[Item, Any]:
    """Converts one (name, array) into the native writer's item tuple.

    Returns (item, keep_alive): keep_alive must outlive the write (it owns the
    buffer the item points to). `slice_key=True` allows an encoded
    partitioned-variable slice key (which starts with NUL) as the name.
    """
    key = _encode_name(name)
    label = key.decode("utf-8", "backslashreplace")
    if not key:
        raise InvalidArgumentError("tensor names must not be empty")
    if key[0] == 0 and not slice_key:
        # Keys starting with NUL are partitioned-variable slice keys in the index.
        raise InvalidArgumentError(f"tensor name {label!r} must not start with a NUL character")
    try:
        if is_device_array(value) and native_staging():
            # Staged natively: device -> pinned host buffer -> CRC -> file.
            dev = describe_device_array(value)
            dt = dtypes.from_numpy_dtype(dev.dtype)
            return (key, dt, dev.shape, dev.native() if dev.nbytes else None, None, None), dev.owner
        arr = _host_array(value)
        dt = dtypes.from_numpy_dtype(arr.dtype)
    except (UnsupportedDtypeError, InvalidArgumentError) as e:
        raise type(e)(f"tensor '{label}': {e}") from None
    shape = tuple(int(d) for d in arr.shape)
    if dt == dtypes.DT_STRING:
        encoded, crc = _native.encode_strings(_string_elements(arr, label))
        return (key, dt, shape, encoded, crc, None), encoded
    if not arr.dtype.isnative:
        # Checkpoints hold the host's (little-endian) byte order; convert once.
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)  # the one deliberate copy
    return (key, dt, shape, arr if arr.nbytes else None, None, None), arr


def partitioned_item(name: str, dtype: int, full_shape: Tuple[int, ...], slices: List[List[Tuple[int, int]]]) -> Item:
    """The data-less index entry of a partitioned tensor: its full shape and the
    list of stored slices (each slice's data is a separate slice-key item)."""
    return (_encode_name(name), dtype, tuple(full_shape), None, None, [list(s) for s in slices])


def partitioned_items(
    name: str, full_shape: Sequence[int], parts: Sequence[Tuple[Sequence[Tuple[int, int]], Any]]
) -> Tuple[List[Item], List[Any]]:
    """Items that store tensor `name` as slices, as TensorFlow's Saver stores a
    partitioned variable: one data item per ``(extents, array)`` part, keyed by
    the encoded slice key, and the data-less full entry listing the slices.

    `extents` holds one ``(start, length)`` per dimension, length -1 meaning the
    whole dimension. Returns (items, keep_alive) for :func:`write_items`.
    """
    from .format import slices as slicing

    items, keep, slice_list, dt = [], [], [], None
    for extents, value in parts:
        extents = [(int(s), int(n)) for s, n in extents]
        item, owner = prepare_item(slicing.encode_slice_key(name, extents), value, slice_key=True)
        if dt is not None and item[1] != dt:
            raise InvalidArgumentError(f"partitioned tensor '{name}': parts have different dtypes")
        dt = item[1]
        items.append(item)
        keep.append(owner)
        slice_list.append(extents)
    if dt is None:
        raise InvalidArgumentError(f"partitioned tensor '{name}' has no parts")
    items.append(partitioned_item(name, dt, tuple(full_shape), slice_list))
    return items, keep


def prepare_items(tensors: Mapping[Any, Any]) -> Tuple[List[Item], List[Any]]:
    """Converts a name -> array mapping into native items plus keep-alives.

    Contiguous, native-order numpy arrays with ordinary names take a fast path
    (a checkpoint of 100,000 small tensors spends its time here); everything
    else goes through prepare_item.
    """
    if not isinstance(tensors, Mapping):
        raise InvalidArgumentError(f"tensors must be a mapping of name -> array, not {type(tensors).__name__}")
    with gc_paused():
        return _prepare_items(tensors)


def _prepare_items(tensors: Mapping[Any, Any]) -> Tuple[List[Item], List[Any]]:
    items, keep = [], []
    fixed = dtypes.FIXED_SIZE_DTYPES
    ndarray = np.ndarray
    for name, value in tensors.items():
        if type(value) is ndarray and type(name) is str and name and name[0] != "\0":
            dt = fixed.get(value.dtype)
            if dt is not None and value.flags.c_contiguous:
                # The caller's mapping keeps `value` alive for the write.
                items.append(
                    (
                        name.encode("utf-8", "surrogateescape"),
                        dt,
                        value.shape,
                        value if value.size else None,
                        None,
                        None,
                    )
                )
                continue
        item, owner = prepare_item(name, value)
        items.append(item)
        keep.append(owner)
    return items, keep


def has_device_items(items: List[Item]) -> bool:
    """Whether any prepared item lives in device memory (it must be staged)."""
    return any(type(it[3]) is tuple for it in items)


def start_job(
    items: List[Item],
    prefix: PathLike,
    *,
    num_shards: Optional[int],
    threads: Optional[int],
    durable: bool,
    sort_data: bool = True,
    snapshot_host: bool = False,
    host_memory_budget: Optional[int] = None,
    shard_base: int = 0,
    total_shards: int = 0,
    commit: bool = True,
    chunk_bytes: int = 0,
) -> Any:
    """Creates a native SaveJob (files created, nothing written yet).

    Call ``snapshot()`` (after which the source arrays may change) and
    ``finish()``. Staging buffers are configured from the settings in
    :mod:`fastckpt.config`; `host_memory_budget` caps this save's share.

    A part of a multi-rank save passes ``total_shards`` (the job's data files
    are shards ``shard_base ..`` of that many), ``commit=False`` (``finish()``
    returns its entries and temporary files; ``release(committed)`` follows
    once rank 0 has committed or failed) and ``chunk_bytes`` (per-chunk CRCs
    of every entry).
    """
    config.check_positive(num_shards=num_shards, threads=threads)
    cores = config.default_threads()
    fill_threads = threads or cores
    if threads is None:
        # An asynchronous save writes while the caller trains: leave it a core.
        threads = max(1, cores - 1) if snapshot_host else cores
    config.apply_staging_settings()
    buffer_bytes = config.staging_buffer_bytes()
    budget = config.host_memory_budget()
    if host_memory_budget is not None:
        if not isinstance(host_memory_budget, int) or host_memory_budget < 1:
            raise InvalidArgumentError(
                f"host_memory_budget must be a positive number of bytes, not {host_memory_budget!r}"
            )
        budget = min(budget, host_memory_budget)
    if snapshot_host:
        max_buffers = max(1, budget // buffer_bytes)
    else:  # a synchronous device save: a few buffers per thread keep the pipeline full
        max_buffers = max(1, min(3 * threads, budget // buffer_bytes))
    return _native.SaveJob(
        os.fspath(prefix),
        items,
        num_shards or 0,
        threads,
        bool(durable),
        config.task_bytes(),
        bool(sort_data),
        bool(snapshot_host),
        int(max_buffers),
        False,
        fill_threads,
        **_partial_options(shard_base, total_shards, commit, chunk_bytes),
    )


def _partial_options(shard_base: int, total_shards: int, commit: bool, chunk_bytes: int) -> Dict[str, Any]:
    """The SaveJob arguments of a part of a multi-rank save (none for an ordinary save)."""
    if not total_shards and commit and not chunk_bytes:
        return {}
    return dict(shard_base=shard_base, total_shards=total_shards, commit=commit, chunk_bytes=chunk_bytes)


def write_items(
    items: List[Item],
    prefix: PathLike,
    *,
    num_shards: Optional[int],
    threads: Optional[int],
    durable: bool,
    sort_data: bool = True,
) -> Dict[str, Any]:
    """Runs the native writer on prepared items (see prepare_items).

    Tensors go to the data files sorted by name (TensorFlow's Saver order), or
    in the order given with ``sort_data=False``. Host arrays are written from
    their own memory; device arrays are staged through pinned buffers.
    """
    prefix = os.fspath(prefix)
    if has_device_items(items):
        job = start_job(items, prefix, num_shards=num_shards, threads=threads, durable=durable, sort_data=sort_data)
        snapshot_or_abort(job)
        return job.finish()
    config.check_positive(num_shards=num_shards, threads=threads)
    return _native.write_bundle(
        prefix,
        items,
        num_shards or 0,
        threads or config.default_threads(),
        bool(durable),
        config.task_bytes(),
        bool(sort_data),
    )


def snapshot_or_abort(job: Any) -> None:
    """Starts `job`'s writers and takes its snapshot on this thread (device
    copies are ordered after this thread's streams); if the snapshot fails,
    the job is aborted and finished (writers joined, temporary files removed,
    buffers returned) before the snapshot's error is raised."""
    job.start_writing()  # writers free staging buffers while the snapshot fills them
    try:
        job.snapshot()
    except BaseException as e:
        job.abort(f"the snapshot failed: {e}")
        try:
            job.finish()
        except Exception:
            pass  # the snapshot's error is the one to report
        raise


def start_background(job: Any, prefix: str, finish: Callable[[], T]) -> "_background.AsyncSave[T]":
    """Takes the snapshot of `job` on this thread and queues `finish` (which
    must call ``job.finish()``) on the background thread. Returns the handle;
    if the snapshot fails, its error is raised here and the save is dropped.
    Cancelling the handle while the save is queued aborts `job` instead (its
    temporary files are removed)."""
    handle: _background.AsyncSave[T] = _background.AsyncSave(prefix)
    start = time.perf_counter()

    def drop() -> None:
        job.abort("the save was cancelled")
        try:
            job.finish()  # joins the writers, removes the temporary files, returns the buffers
        except FastCkptError:
            pass  # the abort itself

    # Queued first: if the snapshot is larger than the staging budget, it can
    # only complete while the background thread writes (backpressure).
    _background.submit(handle, finish, on_cancel=drop, cancellable=False)
    try:
        job.snapshot()
    except BaseException as e:
        job.abort(f"the snapshot failed: {e}")
        _background.withdraw(handle, e)  # cleaned up now, unless the background already has it
        raise
    handle.snapshot_seconds = time.perf_counter() - start
    _background.ready(handle)
    return handle


def _check_prefix(prefix: str) -> None:
    """Refuses a prefix that names a directory: the files would be hidden ones
    named ``.index`` and ``.data-…`` inside it."""
    if not prefix:
        raise InvalidArgumentError(
            "the checkpoint prefix is empty; a prefix is a path and a file name stem, e.g. 'ckpt/model'"
        )
    base = os.path.basename(prefix)
    if base in ("", ".", "..") or os.path.isdir(prefix):
        suggestion = os.path.join(os.path.normpath(prefix), "model")
        raise InvalidArgumentError(
            f"checkpoint prefix '{prefix}' is a directory; a prefix is a path and a file name stem "
            f"(the files are PREFIX.index and PREFIX.data-*), e.g. '{suggestion}'"
        )


def _named_tensors(state: Any, allow_pickle: bool) -> Dict[str, Any]:
    """The tensors to write for `state`: its leaves by name, plus the
    structure entry when it is more than a flat mapping of arrays."""
    flat = structure.flatten(state, allow_pickle=allow_pickle)
    encoded = flat.encoded_structure()
    if encoded is None:
        return flat.tensors
    return {**flat.tensors, structure.STRUCTURE_KEY: np.array(encoded, dtype=object)}


@overload
def save(
    tensors: Any,
    prefix: PathLike,
    *,
    num_shards: Optional[int] = ...,
    threads: Optional[int] = ...,
    durable: bool = ...,
    blocking: Literal[True] = ...,
    host_memory_budget: Optional[int] = ...,
    allow_pickle: bool = ...,
    compression: Optional[str] = ...,
    compression_level: Optional[int] = ...,
    progress: Optional[ProgressCallback] = ...,
) -> SaveResult: ...


@overload
def save(
    tensors: Any,
    prefix: PathLike,
    *,
    num_shards: Optional[int] = ...,
    threads: Optional[int] = ...,
    durable: bool = ...,
    blocking: Literal[False],
    host_memory_budget: Optional[int] = ...,
    allow_pickle: bool = ...,
    compression: Optional[str] = ...,
    compression_level: Optional[int] = ...,
    progress: Optional[ProgressCallback] = ...,
) -> "_background.AsyncSave[SaveResult]": ...


@overload
def save(
    tensors: Any,
    prefix: PathLike,
    *,
    num_shards: Optional[int] = ...,
    threads: Optional[int] = ...,
    durable: bool = ...,
    blocking: bool = ...,
    host_memory_budget: Optional[int] = ...,
    allow_pickle: bool = ...,
    compression: Optional[str] = ...,
    compression_level: Optional[int] = ...,
    progress: Optional[ProgressCallback] = ...,
) -> Union[SaveResult, "_background.AsyncSave[SaveResult]"]: ...


def save(
    tensors: Any,
    prefix: PathLike,
    *,
    num_shards: Optional[int] = None,
    threads: Optional[int] = None,
    durable: bool = True,
    blocking: bool = True,
    host_memory_budget: Optional[int] = None,
    allow_pickle: bool = False,
    compression: Optional[str] = None,
    compression_level: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
) -> Union[SaveResult, "_background.AsyncSave[SaveResult]"]:
    """Saves arrays, or a nested training state, as a TensorFlow V2 checkpoint
    (``PREFIX.index`` + data shards).

    Args:
        tensors: name -> array, or a nested state (dicts with str or int
            keys, lists, tuples) whose leaves are arrays, Python or numpy
            scalars, bool, None, str or bytes: ``{"model":
            model.state_dict(), "optim": optimizer.state_dict(), "step":
            1000}``. Leaves are named by their paths joined with ``/`` and the
            structure is stored in the checkpoint (see
            :mod:`fastckpt.structure`); :func:`load` rebuilds it. Arrays:
            numpy arrays of any dtype a TensorFlow checkpoint holds (bfloat16
            and float8 through ml_dtypes), object or ``S``/``U`` arrays of
            bytes/str (string tensors), torch tensors, JAX and CuPy arrays, or
            anything exporting the buffer protocol, ``__array_interface__``,
            ``__cuda_array_interface__`` or DLPack. Contiguous host arrays are
            written straight from their memory, with no copy; GPU arrays are
            copied device-to-host through pinned staging buffers in the
            native core, ordered after the caller's stream.
        prefix: checkpoint prefix, a path and a file name stem; files are
            ``PREFIX.index`` and ``PREFIX.data-SSSSS-of-NNNNN``. Missing parent
            directories are created. A directory (or a path ending in ``/``)
            is refused.
        num_shards: number of data files; by default chosen from the total size
            and the number of threads.
        threads: I/O threads (default: ``FASTCKPT_THREADS`` or the core count;
            an asynchronous save snapshots with that many and writes with one
            fewer, leaving a core to the caller).
        durable: fsync every file and the directory before the checkpoint becomes
            visible. ``False`` is faster but a power loss can lose the checkpoint.
        blocking: ``False`` returns as soon as a consistent snapshot of the
            arrays is taken (device arrays copied to pinned host memory, host
            arrays copied in parallel); after that the caller may change them.
            The write and commit run in the background; the returned
            :class:`AsyncSave` is a :class:`concurrent.futures.Future` whose
            ``result()`` is the SaveResult, with ``wait(timeout)`` besides.
            Saves queue in call order, a queued one can be cancelled, and
            pending ones are waited for at interpreter exit.
        host_memory_budget: bytes of host memory this save's snapshot may hold
            (default and upper bound: ``FASTCKPT_HOST_BUDGET_MB``). A larger
            checkpoint makes the call block until enough has been written
            (backpressure).
        allow_pickle: pickle leaves of other kinds (loading them needs
            ``allow_pickle=True`` too). Off by default: an unknown object is an
            error naming its path.
        progress: a callable taking a :class:`fastckpt.Progress` (bytes
            written, bytes total, tensors done, tensors total), called on
            this thread at most ten times a second while the data is
            written, and once at the end. Blocking saves only.
        compression: None or ``"none"`` (the default: TensorFlow's layout,
            byte for byte) or ``"zstd"``: tensors of 16 KiB and more are
            stored as zstd-compressed byte planes in independent 1 MiB frames
            (see :mod:`fastckpt.compression`); every fastckpt reader reads
            them transparently, TensorFlow refuses the checkpoint with its
            version error (``fastckpt convert SRC DST --compression none``
            makes a copy it reads). Needs the ``zstd`` extra. With
            ``blocking=False`` the compression is the snapshot: the call
            returns once the tensors are compressed. ``SaveResult.nbytes`` is
            then the bytes written, compressed.
        compression_level: None (tuned fast parameters, the default) or a
            zstd level (-131072 to 22).

    Returns:
        A SaveResult with the files written, bytes and timing; with
        ``blocking=False`` an AsyncSave whose ``result()`` is that SaveResult.

    Raises:
        InvalidArgumentError: empty keys, two leaves of one name, a prefix
            that is a directory, bad options.
        UnsupportedDtypeError: a dtype a checkpoint cannot hold (e.g.
            structured), or an object of a kind that cannot be saved (its path
            named).
        CheckpointIOError: an OS error (ENOSPC, EACCES...), with ``errno`` set.
        MissingDependencyError: ``compression="zstd"`` without zstandard.
    """
    start = time.perf_counter()
    prefix = os.fspath(prefix)
    _check_prefix(prefix)
    if check_callback(progress) is not None and not blocking:
        raise InvalidArgumentError(
            "progress= reports a blocking save; an asynchronous save reports through its handle (done(), result())"
        )
    codec = _compression.check_options(compression, compression_level)
    named = _named_tensors(tensors, allow_pickle)
    items, keep = prepare_items(named)
    keep.append(named)  # owns the arrays made for scalars until the write (or snapshot) is done
    parent = os.path.dirname(prefix)
    if parent and os.path.exists(parent) and not os.path.isdir(parent):
        raise os_error(errno.ENOTDIR, f"cannot save '{prefix}': its parent '{parent}' is not a directory", parent)
    if parent and not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise from_os_error(e, f"cannot create directory '{parent}'", parent) from None
    if codec is not None:
        return _compression.save(
            named,
            prefix,
            level=codec[1],
            num_shards=num_shards,
            threads=threads,
            durable=durable,
            blocking=blocking,
            host_memory_budget=host_memory_budget,
            start=start,
            progress=progress,
        )
    if not blocking:
        job = start_job(
            items,
            prefix,
            num_shards=num_shards,
            threads=threads,
            durable=durable,
            snapshot_host=True,
            host_memory_budget=host_memory_budget,
        )
        del items

        def finish() -> SaveResult:
            info = job.finish()
            return SaveResult(
                prefix=prefix,
                files=list(info["files"]),
                num_shards=info["num_shards"],
                nbytes=info["data_bytes"],
                seconds=time.perf_counter() - start,
            )

        handle = start_background(job, prefix, finish)
        del keep  # the snapshot holds the bytes now
        return handle
    logger.debug("saving %d tensors to %s (durable=%s)", len(items), prefix, durable)
    if progress is None:
        info = write_items(items, prefix, num_shards=num_shards, threads=threads, durable=durable)
    else:
        info = _write_reporting(
            items, prefix, num_shards=num_shards, threads=threads, durable=durable, progress=progress
        )
    del keep
    result = SaveResult(
        prefix=prefix,
        files=list(info["files"]),
        num_shards=info["num_shards"],
        nbytes=info["data_bytes"],
        seconds=time.perf_counter() - start,
    )
    log_done("saved", prefix, result.nbytes, result.seconds)
    return result


def item_nbytes(item: Item) -> int:
    """Bytes of data a prepared item writes (0 for data-less entries)."""
    data = item[3]
    if data is None:
        return 0
    if isinstance(data, (bytes, bytearray)):
        return len(data)
    if isinstance(data, np.ndarray):
        return int(data.nbytes)
    return int(np.prod(item[2], dtype=np.int64)) * dtypes.element_size(item[1])  # a device buffer


def _write_reporting(
    items: List[Item],
    prefix: str,
    *,
    num_shards: Optional[int],
    threads: Optional[int],
    durable: bool,
    progress: ProgressCallback,
) -> Dict[str, Any]:
    """write_items through a SaveJob whose written-bytes counter is reported
    to `progress` from this thread (the job writes on a worker)."""
    ordered = sorted(items, key=lambda it: it[0])  # the order a sorted save lays the data out
    tracker = Tracker(progress, [item_nbytes(it) for it in ordered])
    job = start_job(items, prefix, num_shards=num_shards, threads=threads, durable=durable)
    snapshot_or_abort(job)
    info = tracker.run(
        job.finish,
        lambda: int(job.progress()["written_bytes"]),
        abort=lambda e: job.abort(f"the progress callback raised {type(e).__name__}: {e}"),
    )
    tracker.report(tracker.total, final=True)
    return info
