"""Opt-in zstandard compression of checkpoints: ``save(..., compression="zstd")``.

Design (numbers measured on a 2-core shared VM on the weights of a trained
sentence-embedding model; ``python -m benchmarks --only compression``
reproduces them, benchmarks/README.md "Compression" has the table):

* Byte planes. A frame's elements are split into ``itemsize`` byte planes
  (plane j = byte j of every little-endian element) before entropy coding.
  The planes that carry the exponent (the high byte of bfloat16/float16,
  the top byte of float32) hold about 2.7 bits of information per byte and
  compress about 3x; the low mantissa planes are close to random. Grouping
  gives bfloat16 weights 1.49x where zstd on the raw bytes gives 1.28x
  (float32: 1.22x against 1.09x).
* Raw planes. A plane is stored as it is unless zstd makes it at most
  95% of its size; a 64 KiB probe decides first, so a random-looking plane
  costs one small compression instead of a full one, and reading it back
  is a copy.
* Tuned parameters. By default (``compression_level=None``) planes are
  compressed with zstd's "fast" strategy, a 64-entry hash table and
  7-byte minimum matches: nearly literals-only Huffman coding. On exponent
  planes that is both smaller and 2-4x faster to compress (and faster to
  decompress) than zstd's level 1 or its default level 3, whose match
  finders spend their time on the short repeats of exponent bytes. An int
  ``compression_level`` uses that zstd level instead.
* Independent frames of 1 MiB raw bytes (:data:`FRAME_BYTES`): every core
  compresses and decompresses frames in parallel (zstandard's compress and
  decompress and numpy's plane split/merge all release the GIL; measured
  by the benchmark), a slice read decompresses only the frames holding the
  slice, and memory per frame in flight stays bounded. 256 KiB, 1 MiB and
  4 MiB frames give the same ratio; 256 KiB decompresses 8% slower, 4 MiB
  no faster than 1 MiB and makes slice reads 4x coarser.
* Integrity. Each compressed tensor's index entry keeps the CRC32C of its
  stored (compressed) bytes, so :func:`fastckpt.verify` checks a compressed
  checkpoint without decompressing. The frame table stores the CRC32C of
  every frame's raw bytes, checked after decompression; a whole-tensor read
  also checks the stored bytes against the entry CRC. Any flipped byte is a
  :class:`~fastckpt.DataLossError` naming the tensor and its file.
* Layout. Compressed tensors keep their dtype and shape in the index, with
  the offset, size and CRC of the stored bytes; the frame table is the
  reserved uint8 tensor ``_FASTCKPT_FRAMES`` (:mod:`fastckpt.format.frames`,
  hidden from the tensor list), and the header's ``min_consumer`` is 1001,
  so TensorFlow refuses the checkpoint with its own version error instead
  of reading compressed bytes as values. Tensors under
  :data:`MIN_COMPRESS_BYTES`, string tensors, and tensors that do not get
  smaller are stored exactly as TensorFlow stores them.

Thread-safety: compressors and decompressors are per thread; a
:class:`CompressedEntries` may be read from several threads at once.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _native, config
from ._progress import ProgressCallback, Tracker, tracker_for
from .errors import DataLossError, InvalidArgumentError, MissingDependencyError
from .format import dtypes
from .format import frames as frame_format
from .format.frames import FRAMES_KEY, RAW_PLANE, FrameTable

__all__ = [
    "COMPRESSIONS",
    "FRAME_BYTES",
    "MIN_COMPRESS_BYTES",
    "CONVERT_HINT",
    "check_options",
    "compress_items",
    "CompressedEntries",
    "rewrite_entries",
]

#: The values of ``compression=``.
COMPRESSIONS = ("none", "zstd")
#: Raw bytes per frame.
FRAME_BYTES = 1 << 20
#: Tensors smaller than this are stored uncompressed (a frame table entry
#: and a task per tensor cost more than the few bytes saved).
MIN_COMPRESS_BYTES = 16 << 10
#: A plane is kept compressed only if zstd makes it at most this fraction of its size.
KEEP_RATIO = 0.95
#: Planes larger than twice this are probed with their first PROBE_BYTES.
PROBE_BYTES = 64 << 10
#: How to get a checkpoint that TensorFlow reads.
CONVERT_HINT = "fastckpt convert SRC DST --compression none"


def _zstd(why: str) -> Any:
    """The zstandard module, imported on first use only."""
    try:
        import zstandard
    except ImportError:
        raise MissingDependencyError(
            f"{why} needs the zstandard package: pip install 'fastckpt[zstd]' (or pip install zstandard). "
            f"To give TensorFlow (or a machine without zstandard) a copy it can read, convert it where "
            f"zstandard is installed: {CONVERT_HINT}",
            name="zstandard",
        ) from None
    return zstandard


def check_options(compression: Optional[str], level: Optional[int]) -> Optional[Tuple[str, Optional[int]]]:
    """Validates ``compression=`` and ``compression_level=``.

    Returns None for no compression, else ``("zstd", level)``.

    Raises:
        InvalidArgumentError: an unknown compression, a level without
            compression, or a level outside zstd's range.
        MissingDependencyError: zstandard is not installed.
    """
    if compression is None or compression == "none":
        if level is not None:
            raise InvalidArgumentError(
                f"compression_level={level!r} needs compression='zstd' (compression is {compression!r})"
            )
        return None
    if compression != "zstd":
        raise InvalidArgumentError(
            f"compression must be one of {', '.join(map(repr, COMPRESSIONS))} or None, not {compression!r}"
        )
    zstd = _zstd("compression='zstd'")
    if level is not None:
        if isinstance(level, bool) or not isinstance(level, int):
            raise InvalidArgumentError(f"compression_level must be an int or None, not {level!r}")
        low, high = -(1 << 17), zstd.MAX_COMPRESSION_LEVEL
        if not low <= level <= high:
            raise InvalidArgumentError(f"compression_level must be between {low} and {high}, not {level}")
    return ("zstd", level)


def tuned_parameters() -> Any:
    """The zstd parameters of the default level (``compression_level=None``):
    a fast strategy with a 128 KiB window, tuned on trained weights' byte
    planes (benchmarks/bench_compression.py measures them against zstd's own
    defaults)."""
    z = _zstd("compression='zstd'")
    return z.ZstdCompressionParameters(
        strategy=z.STRATEGY_FAST,
        window_log=17,
        hash_log=6,
        search_log=1,
        min_match=7,
        write_content_size=1,
        write_checksum=0,
        write_dict_id=0,
    )


class _Codec:
    """Per-thread zstd compressors for one level (None: the tuned parameters)."""

    def __init__(self, level: Optional[int]) -> None:
        self.zstd = _zstd("compression='zstd'")
        self.level = level
        self.local = threading.local()

    def compressor(self) -> Any:
        c = getattr(self.local, "c", None)
        if c is None:
            z = self.zstd
            if self.level is None:
                c = z.ZstdCompressor(compression_params=tuned_parameters())
            else:
                c = z.ZstdCompressor(
                    level=self.level, write_content_size=True, write_checksum=False, write_dict_id=False
                )
            self.local.c = c
        return c


_scratch_local = threading.local()


def _scratch(tag: str, n: int, dtype: Any) -> np.ndarray:
    """A per-thread reusable array of at least `n` elements (its first `n`):
    the plane split and merge reuse one, instead of paging in a new one per
    frame. Valid until this thread asks for `tag` again."""
    bufs = getattr(_scratch_local, "bufs", None)
    if bufs is None:
        bufs = _scratch_local.bufs = {}
    buf = bufs.get(tag)
    if buf is None or buf.size < n or buf.dtype != dtype:
        buf = bufs[tag] = np.empty(max(n, FRAME_BYTES // np.dtype(dtype).itemsize), dtype=dtype)
    return buf[:n]


def _memmove(buf: np.ndarray, dst: int, src: int, n: int) -> None:
    """Moves n bytes within `buf` (uint8, contiguous) from `src` to `dst`;
    the ranges may overlap (memmove). ctypes releases the GIL for the call."""
    if n and dst != src:
        base = buf.ctypes.data
        ctypes.memmove(base + dst, base + src, n)


def _compress_frame(codec: _Codec, raw: np.ndarray, k: int, slot: np.ndarray) -> Tuple[List[int], int]:
    """Compresses one frame into `slot` (uint8, as many bytes as `raw`):
    returns (words, stored): the raw CRC32C then one word per plane (see
    frames.py), and how many bytes of `slot` hold the stored planes, back to
    back. The planes are split straight into `slot` (natively: 12-18 GB/s
    on the benchmark machine, where numpy's strided copies managed 0.9-2.9,
    GIL released), then each is either left raw (moved down to its place)
    or replaced by its compressed bytes, which are smaller: a plane is only
    ever written at or below where it was split to, after it was read, so
    one buffer holds the frame throughout and no copy of the planes is made
    to join them (that join cost a third of the compression time)."""
    words = [_native.crc32c(raw)]
    n = raw.size // k
    if k == 1:
        np.copyto(slot, raw)
    else:
        _native.split_byte_planes(raw, k, slot)
    cctx = codec.compressor()
    pos = 0
    for j in range(k):
        plane = slot[j * n : (j + 1) * n]
        z = None
        if n < 2 * PROBE_BYTES or len(cctx.compress(plane[:PROBE_BYTES])) <= KEEP_RATIO * PROBE_BYTES:
            z = cctx.compress(plane)
        if z is not None and len(z) <= KEEP_RATIO * n:
            slot[pos : pos + len(z)] = np.frombuffer(z, dtype=np.uint8)  # pos + len(z) < (j + 1) * n
            words.append(len(z))
            pos += len(z)
        else:
            _memmove(slot, pos, j * n, n)
            words.append(n | RAW_PLANE)
            pos += n
    return words, pos


def _pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="fastckpt-zstd")


def _run_all(
    threads: int,
    fn: Any,
    tasks: Sequence[Any],
    tracker: Optional[Tracker] = None,
    sizes: Optional[Sequence[int]] = None,
) -> List[Any]:
    """fn(*task) for every task, on `threads` threads, results in order; the
    first error is raised once the running tasks have stopped. With a
    `tracker`, the bytes of the finished tasks (`sizes`) are reported from
    this thread as they complete (at the tracker's rate)."""
    if tracker is None and (threads <= 1 or len(tasks) <= 1):
        return [fn(*t) for t in tasks]
    ex = _pool(min(threads, len(tasks)))
    try:
        if tracker is None:
            return list(ex.map(lambda t: fn(*t), tasks))
        assert sizes is not None
        futures = {ex.submit(fn, *t): n for t, n in zip(tasks, sizes)}
        pending, done = set(futures), 0
        while pending:
            finished, pending = concurrent.futures.wait(
                pending, timeout=tracker.interval, return_when=concurrent.futures.FIRST_EXCEPTION
            )
            done += sum(futures[f] for f in finished)
            if any(f.exception() is not None for f in finished):
                break
            tracker.tick(done)
        return [f.result() for f in futures]
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _host_bytes(item: Tuple[Any, ...], named: Mapping[str, Any]) -> Optional[np.ndarray]:
    """The item's bytes as a flat uint8 array, or None when it is stored as is
    (strings, partitioned entries, empty and small tensors)."""
    key, dt, data = item[0], item[1], item[3]
    if dt == dtypes.DT_STRING or item[5] is not None or data is None:
        return None
    if isinstance(data, tuple):  # device memory: copied to the host first
        from ._arrays import to_host_array

        value = named.get(key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else key)
        if value is None:
            return None  # no host copy to be had here: staged and stored as it is
        data = np.ascontiguousarray(to_host_array(value))
    arr = np.asarray(data)
    if arr.nbytes < MIN_COMPRESS_BYTES:
        return None
    return arr.reshape(-1).view(np.uint8)


def compress_items(
    items: List[Tuple[Any, ...]],
    named: Mapping[str, Any],
    *,
    level: Optional[int],
    threads: Optional[int],
    tracker: Optional[Tracker] = None,
) -> Tuple[List[Tuple[Any, ...]], Dict[bytes, FrameTable], Dict[bytes, Tuple[int, Tuple[int, ...]]]]:
    """Compresses the writer items worth compressing (see the module doc).

    Args:
        items: native writer items (key, dtype, shape, data, crc, slices), as
            :func:`fastckpt.writer.prepare_items` makes them.
        named: name -> value the items were made from (device arrays are
            copied to the host through it).
        tracker: reports the raw bytes compressed so far (a save's progress=).

    Returns:
        (items, tables, logical): the items with each compressed one replaced
        by a uint8 item of its stored bytes, the frame table of each, and
        each compressed key's (dtype, shape) for the index.
    """
    codec = _Codec(level)
    threads = threads or config.default_threads()
    chosen: List[Tuple[int, np.ndarray, int]] = []  # (item position, bytes, itemsize)
    for pos, item in enumerate(items):
        raw = _host_bytes(item, named)
        if raw is not None:
            chosen.append((pos, raw, dtypes.element_size(item[1])))
    # Each compressed tensor's stored bytes are built in one buffer of its raw
    # size: frame f in [f * FRAME_BYTES, ...) first, then the frames moved
    # down to be back to back. The buffer stays that size until written (a
    # raw-size buffer per compressed tensor, where a joined copy would be
    # its compressed size, but would cost a copy of every stored byte).
    buffers = [np.empty(raw.size, dtype=np.uint8) for _, raw, _ in chosen]
    tasks, owners = [], []
    for c, (_, raw, k) in enumerate(chosen):
        for start in range(0, raw.size, FRAME_BYTES):
            tasks.append((codec, raw[start : start + FRAME_BYTES], k, buffers[c][start : start + FRAME_BYTES]))
            owners.append(c)
    results = _run_all(threads, _compress_frame, tasks, tracker, [t[1].size for t in tasks])
    per_item: List[List[Tuple[List[int], int]]] = [[] for _ in chosen]
    for c, r in zip(owners, results):
        per_item[c].append(r)
    out = list(items)
    tables: Dict[bytes, FrameTable] = {}
    logical: Dict[bytes, Tuple[int, Tuple[int, ...]]] = {}
    for (pos, raw, k), frames, buf in zip(chosen, per_item, buffers):
        stored = sum(size for _, size in frames)
        if stored >= raw.size:
            continue  # no gain: stored as is (never in exactly its raw size, see bundle_reader.h)
        key, dt, shape = items[pos][0], items[pos][1], items[pos][2]
        key = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
        words = np.array([w for w, _ in frames], dtype=np.uint32)
        offsets = np.zeros(len(frames) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([size for _, size in frames])
        for f, (_, size) in enumerate(frames):
            _memmove(buf, int(offsets[f]), f * FRAME_BYTES, size)
        tables[key] = FrameTable(k, FRAME_BYTES, int(raw.size), words, offsets)
        blob = buf[:stored]
        out[pos] = (key, dtypes.DT_UINT8, (blob.size,), blob, None, None)
        logical[key] = (dt, tuple(int(d) for d in shape))
    return out, tables, logical


def frames_item(tables: Mapping[bytes, FrameTable]) -> Tuple[Any, ...]:
    """The writer item of the frame table tensor."""
    table = frame_format.encode(tables)
    return (FRAMES_KEY.encode(), dtypes.DT_UINT8, (table.size,), table, None, None)


def rewrite_entries(
    entries: Sequence[Sequence[Any]], logical: Mapping[bytes, Tuple[int, Tuple[int, ...]]]
) -> List[Tuple[Any, ...]]:
    """Index entries (key, dtype, shape, shard, offset, size, crc, slices) with
    each compressed key's dtype and shape put back."""
    out = []
    for e in entries:
        key = bytes(e[0])
        if key in logical:
            dt, shape = logical[key]
            out.append((key, dt, tuple(shape)) + tuple(e[3:]))
        else:
            out.append(tuple(e))
    return out


class CompressedJob:
    """A save of prepared writer items with compression, shaped like the native
    SaveJob (``start_writing``, ``snapshot``, ``abort``, ``finish``) so that
    the blocking and background paths of every saver drive it alike.

    The items are compressed when the job is made (on the caller's thread),
    then written as a partial job; ``finish()`` writes, commits the index
    with the compressed entries' dtypes and shapes, the frame table and the
    compressed header version, and returns ``{"num_shards", "data_bytes",
    "files"}`` (data_bytes: the bytes written, compressed). With
    ``snapshot_host`` the job's snapshot copies what it writes (the
    compressed bytes and the tensors stored as they are), as an asynchronous
    save needs.
    """

    def __init__(
        self,
        items: List[Tuple[Any, ...]],
        named: Mapping[str, Any],
        prefix: str,
        *,
        level: Optional[int],
        num_shards: Optional[int],
        threads: Optional[int],
        durable: bool,
        sort_data: bool = True,
        snapshot_host: bool = False,
        host_memory_budget: Optional[int] = None,
        tracker: Optional[Tracker] = None,
    ) -> None:
        from .writer import start_job

        keys = {it[0] if isinstance(it[0], bytes) else str(it[0]).encode() for it in items}
        if FRAMES_KEY.encode() in keys:
            raise InvalidArgumentError(f"'{FRAMES_KEY}' is reserved for the frame table of a compressed checkpoint")
        self.prefix = prefix
        self.durable = durable
        self.items, tables, self.logical = compress_items(items, named, level=level, threads=threads, tracker=tracker)
        if tables:
            self.items.append(frames_item(tables))
        self.min_consumer = _native.COMPRESSED_MIN_CONSUMER if tables else 0
        self.job = start_job(
            self.items,
            prefix,
            num_shards=num_shards,
            threads=threads,
            durable=durable,
            sort_data=sort_data,
            snapshot_host=snapshot_host,
            host_memory_budget=host_memory_budget,
            commit=False,
        )

    def start_writing(self) -> None:
        self.job.start_writing()

    def snapshot(self) -> None:
        self.job.snapshot()

    def abort(self, reason: str) -> None:
        self.job.abort(reason)

    def finish(self) -> Dict[str, Any]:
        committed = False
        try:
            info = self.job.finish()
            files = _native.commit_bundle(
                self.prefix,
                rewrite_entries(info["entries"], self.logical),
                info["data_files"],
                info["num_shards"],
                durable=self.durable,
                min_consumer=self.min_consumer,
            )
            committed = True
        finally:
            self.job.release(committed)
            self.items = []  # the compressed bytes are written (or dropped)
        return {"num_shards": info["num_shards"], "data_bytes": info["data_bytes"], "files": files}


def run_blocking(job: CompressedJob) -> Dict[str, Any]:
    """Writes and commits `job` on this thread (device tensors stored as they
    are are staged first, as :func:`fastckpt.writer.write_items` does)."""
    from .writer import snapshot_or_abort

    snapshot_or_abort(job)
    return job.finish()


def save(
    named: Mapping[str, Any],
    prefix: str,
    *,
    level: Optional[int],
    num_shards: Optional[int],
    threads: Optional[int],
    durable: bool,
    blocking: bool,
    host_memory_budget: Optional[int],
    start: float,
    progress: Optional[ProgressCallback] = None,
) -> Any:
    """The compressed path of :func:`fastckpt.save` for `named` (name ->
    value, the structure entry included). Returns a SaveResult, or an
    AsyncSave of one (returned once the tensors are compressed and
    snapshotted). `progress` (blocking saves) counts raw bytes: those of
    compressed tensors as their frames are compressed, the rest at the end."""
    import time

    from .writer import SaveResult, item_nbytes, prepare_items, start_background

    items, keep = prepare_items(named)
    tracker = tracker_for(progress, [item_nbytes(it) for it in sorted(items, key=lambda it: it[0])])
    job = CompressedJob(
        items,
        named,
        prefix,
        level=level,
        num_shards=num_shards,
        threads=threads,
        durable=durable,
        snapshot_host=not blocking,
        host_memory_budget=host_memory_budget,
        tracker=tracker,
    )
    del items

    def result(info: Dict[str, Any]) -> Any:
        return SaveResult(
            prefix=prefix,
            files=list(info["files"]),
            num_shards=info["num_shards"],
            nbytes=info["data_bytes"],
            seconds=time.perf_counter() - start,
        )

    if blocking:
        out = result(run_blocking(job))
        if tracker is not None:
            tracker.report(tracker.total, final=True)
        del keep  # owned the buffers the job wrote
        return out
    handle = start_background(job, prefix, lambda: result(job.finish()))
    del keep  # the snapshot holds the bytes now
    return handle


# -- reading ------------------------------------------------------------------------------


def _merge_planes(dest: np.ndarray, planes: List[np.ndarray], k: int) -> None:
    """Interleaves byte planes into `dest` (uint8, contiguous, k * n bytes),
    natively (see _split_planes)."""
    _native.merge_byte_planes(planes, dest)


class CompressedEntries:
    """The compressed entries of one open checkpoint: the frame table, checked
    against the index, and reads that decompress.

    Raises (constructor):
        DataLossError: the table is damaged or disagrees with the index (an
            entry it lists is missing, partitioned, of another itemsize or
            size, or a compressed entry is not in it).
        MissingDependencyError: zstandard is not installed.
    """

    def __init__(self, native: Any, prefix: str) -> None:
        self.prefix = prefix
        self.native = native
        self.zstd = _zstd(f"reading the compressed checkpoint '{prefix}'")
        self.local = threading.local()
        self.lock = threading.Lock()
        self.fds: Dict[int, int] = {}
        self.frames_read = 0  # frames decompressed so far (all reads)
        self.stored_bytes_read = 0  # compressed bytes read from the data files so far
        self.raw_bytes_read = 0  # their raw (decompressed) bytes: a load's progress
        entries = native.entries()
        self.entries = {i: e for i, e in enumerate(entries)}
        table_index = native.find(FRAMES_KEY.encode())

        def bad(why: str) -> DataLossError:
            return DataLossError(f"checkpoint '{prefix}': {why}")

        if table_index < 0:
            raise bad(f"its header marks it compressed but it has no frame table '{FRAMES_KEY}'")
        dt, shape, size, slices = native.entry(table_index)
        if dt != dtypes.DT_UINT8 or len(shape) != 1 or slices is not None or not native.stored_as_is(table_index):
            raise bad(f"its frame table '{FRAMES_KEY}' is not a plain uint8 vector")
        native.check_bounds([table_index])
        buf = np.empty(size, dtype=np.uint8)
        native.read([(table_index, buf)], 1)
        decoded = frame_format.decode(buf, prefix)
        self.tables: Dict[int, FrameTable] = {}
        for key, t in decoded.items():
            index = native.find(key)
            what = f"frame table entry '{key.decode('utf-8', 'backslashreplace')}'"
            if index < 0:
                raise bad(f"its {what} names no entry of the index")
            edt, eshape, esize, eslices = native.entry(index)
            if eslices is not None or edt == dtypes.DT_STRING:
                raise bad(f"its {what} names a partitioned or string tensor")
            try:
                itemsize = dtypes.element_size(edt)
            except Exception:  # noqa: BLE001 - an unknown dtype is a damaged entry here
                itemsize = -1
            if itemsize != t.planes:
                raise bad(f"its {what} has {t.planes} byte planes for a dtype of {itemsize}-byte elements")
            raw = itemsize * int(np.prod(eshape, dtype=object))
            if raw != t.raw_bytes:
                raise bad(f"its {what} holds {t.raw_bytes} raw bytes, the tensor {raw}")
            if esize != t.stored_bytes:
                raise bad(f"its {what} holds {t.stored_bytes} stored bytes, the index entry {esize}")
            if native.stored_as_is(index):
                raise bad(f"its {what} describes an entry stored in exactly its raw size")
            self.tables[index] = t
        for index in range(len(entries)):
            if index not in self.tables and not native.stored_as_is(index):
                raise bad(f"{native.describe(index)} is stored compressed but the frame table lacks it")

    def __contains__(self, index: object) -> bool:
        return index in self.tables

    def close(self) -> None:
        with self.lock:
            fds, self.fds = self.fds, {}
        for fd in fds.values():
            os.close(fd)

    # -- plumbing -------------------------------------------------------------------------
    def _fd(self, shard: int) -> int:
        with self.lock:
            fd = self.fds.get(shard)
            if fd is None:
                path = f"{self.prefix}.data-{shard:05d}-of-{self.native.num_shards:05d}"
                fd = self.fds[shard] = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            return fd

    def _decompressor(self) -> Any:
        d = getattr(self.local, "d", None)
        if d is None:
            d = self.local.d = self.zstd.ZstdDecompressor()
        return d

    def _frame(self, index: int, frame: int, dest: np.ndarray) -> int:
        """Decompresses `frame` of entry `index` into `dest` (uint8, its raw
        bytes) and checks it; returns the CRC32C of its stored bytes."""
        t = self.tables[index]
        _, _, _, shard, offset, _, _, _ = self.entries[index]
        start, stop = int(t.offsets[frame]), int(t.offsets[frame + 1])
        raw = t.raw_range(frame)

        def bad(why: str) -> DataLossError:
            return DataLossError(
                f"{self.native.describe(index)}: frame {frame} (raw bytes [{raw.start}, {raw.stop})): {why}"
            )

        # Per-thread scratch buffers, not new bytes objects: paging in a
        # fresh buffer per frame cost as much as decompressing it.
        data = _scratch("stored", stop - start, np.uint8)
        fd, done = self._fd(shard), 0
        while done < data.size:
            got = os.preadv(fd, [data[done:].data], offset + start + done)
            if got <= 0:
                raise bad("the data file ends early (truncated file?)")
            done += got
        n = len(raw) // t.planes
        planes: List[np.ndarray] = []
        decoded = dest if t.planes == 1 else _scratch("decoded", t.planes * n, np.uint8).reshape(t.planes, n)
        dctx = self._decompressor()
        for j, (pos, size, is_raw) in enumerate(frame_format.plane_layout(t, frame)):
            chunk = data[pos : pos + size]
            if is_raw:
                planes.append(chunk)
                continue
            target = decoded if t.planes == 1 else decoded[j]
            try:
                if self.zstd.frame_content_size(chunk) != n:  # before anything is decompressed
                    raise bad("a compressed plane does not hold its raw size")
                with dctx.stream_reader(chunk) as reader:
                    filled, view = 0, target.data
                    while filled < n:
                        got = reader.readinto(view[filled:])
                        if got <= 0:
                            break
                        filled += got
            except self.zstd.ZstdError as e:
                raise bad(f"zstd cannot decompress a plane ({e})") from None
            if filled != n:
                raise bad("a compressed plane does not hold its raw size")
            planes.append(target)
        if t.planes > 1 or planes[0] is not dest:
            _merge_planes(dest, planes, t.planes)
        want = int(t.words[frame, 0])
        got = _native.crc32c(dest)
        if got != want:
            raise bad(f"data checksum mismatch after decompression (stored CRC32C {want:08x}, computed {got:08x})")
        with self.lock:
            self.frames_read += 1
            self.stored_bytes_read += data.size
            self.raw_bytes_read += dest.size
        return _native.crc32c(data)

    # -- reads ---------------------------------------------------------------------------
    def read_whole(self, requests: Sequence[Tuple[int, np.ndarray]], threads: int) -> None:
        """Reads whole compressed entries into arrays of their dtype and shape
        (C-contiguous, writable), all frames in parallel; also checks each
        entry's stored bytes against its index CRC."""
        self.native.check_bounds([i for i, _ in requests])
        tasks = []
        for index, out in requests:
            t = self.tables[index]
            flat = out.reshape(-1).view(np.uint8)
            if flat.size != t.raw_bytes:
                raise InvalidArgumentError(
                    f"{self.native.describe(index)}: destination of {flat.size} bytes for {t.raw_bytes}"
                )
            for f in range(t.frames):
                rr = t.raw_range(f)
                tasks.append((index, f, flat[rr.start : rr.stop]))
        crcs = _run_all(threads, self._frame, tasks)
        pos = 0
        for index, _ in requests:
            t = self.tables[index]
            crc = 0
            for f in range(t.frames):
                crc = _native.crc32c_combine(crc, crcs[pos + f], int(t.offsets[f + 1] - t.offsets[f]))
            pos += t.frames
            stored = _native.crc32c_unmask(self.entries[index][6])
            if crc != stored:
                raise DataLossError(
                    f"{self.native.describe(index)}: data checksum mismatch (stored CRC32C "
                    f"{stored:08x}, computed {crc:08x} over its compressed bytes)"
                )

    def read_box(
        self, index: int, shape: Sequence[int], box: Sequence[Tuple[int, int]], out: np.ndarray, threads: int
    ) -> int:
        """Reads `box` (explicit (start, length) per dimension) of compressed
        entry `index` (of `shape`) into `out` (C-contiguous, the box's shape
        and the tensor's dtype). Only the frames holding the box's first to
        last element (row-major) are read and decompressed. Returns the
        stored bytes read."""
        t = self.tables[index]
        k = t.planes
        if out.size == 0:
            return 0
        strides = [1] * len(shape)
        for d in range(len(shape) - 2, -1, -1):
            strides[d] = strides[d + 1] * int(shape[d + 1])
        first = sum(s * st for (s, _), st in zip(box, strides))
        last = sum((s + n - 1) * st for (s, n), st in zip(box, strides))
        f0, f1 = first * k // t.frame_bytes, last * k // t.frame_bytes
        begin = f0 * t.frame_bytes
        end = min((f1 + 1) * t.frame_bytes, t.raw_bytes)
        temp = np.empty(end - begin, dtype=np.uint8)
        tasks = [
            (index, f, temp[t.raw_range(f).start - begin : t.raw_range(f).stop - begin]) for f in range(f0, f1 + 1)
        ]
        self.native.check_bounds([index])
        _run_all(threads, self._frame, tasks)
        elems = temp.view(out.dtype)
        base = first - begin // k
        view = np.lib.stride_tricks.as_strided(
            elems[base:], shape=tuple(n for _, n in box), strides=tuple(st * k for st in strides), writeable=False
        )
        np.copyto(out, view)
        return int(t.offsets[f1 + 1] - t.offsets[f0])
