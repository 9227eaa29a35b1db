"""``fastckpt.distributed.save``: every rank writes, one checkpoint commits.

The protocol (every collective runs on fastckpt's own group, see
:mod:`.comm`; the count is reported in the result):

1. Each rank describes what it holds (no data: names, shapes, dtypes, the
   pieces of sharded tensors) and the ranks exchange it in one allgather;
   every rank then computes the same plan (:mod:`.plan`). When a rank's
   description is the same as at its previous save, it reuses its cached
   plan and skips this step.
2. Each rank writes its share with the native pipeline into data files of
   the job-wide numbering, under locked temporary names (fsynced when
   durable), and sends rank 0 the entries and file names (a gather; with a
   cached plan this is the first collective, an allgather, so that a rank
   whose state changed meanwhile is noticed by everyone alike).
3. Rank 0 writes the structure and the chunk-CRC table into the last data
   file, then the one index, and commits (renames every rank's files, the
   index last). It tells every rank the outcome (a broadcast): no rank
   returns before the index is in place, and on any failure every rank
   removes its temporary files and raises one DistributedSaveError naming
   each failed rank.

So a save takes 3 collectives, 2 with a cached plan.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from .. import _background, config, structure
from ..errors import DistributedSaveError, FastCkptError, from_os_error
from ..format import chunks, dtypes
from ..writer import SaveResult, prepare_item, start_job
from .comm import DEFAULT_TIMEOUT, CollectiveError, Communicator, communicator
from .leaves import LocalTensor, PerRank, describe
from .plan import Plan, RankMeta, digest, make_plan

__all__ = ["save", "DistributedSaveResult"]


@dataclass(frozen=True)
class DistributedSaveResult(SaveResult):
    """What a multi-rank save wrote. ``files`` and ``num_shards`` are the whole
    checkpoint's; ``nbytes`` is what this rank wrote; ``collectives`` counts
    the collectives this save ran; ``plan_cached`` says whether the plan of
    the previous save was reused."""

    rank: int = 0
    world_size: int = 1
    collectives: int = 0
    plan_cached: bool = False


# -- this rank's state -------------------------------------------------------------


class _Local:
    """What this rank holds, flattened: sharded tensors (their pieces),
    replicated values (arrays and scalars), per-rank values."""

    def __init__(self, state: Any, rank: int, world: int, allow_pickle: bool) -> None:
        self.sharded: Dict[str, LocalTensor] = {}
        self.own: Dict[str, Any] = {}
        self.per_rank_nodes: Dict[str, Any] = {}

        def special(value: Any, path: str) -> Optional[Dict[str, Any]]:
            if isinstance(value, PerRank):
                sub = structure.flatten({"v": value.value}, allow_pickle=allow_pickle)
                mine = sub.structure["root"]["c"][0] if sub.structure else {"t": "tensor"}
                for name, v in sub.tensors.items():
                    self.own[f"{path}/__rank_{rank}" + name[1:]] = v
                self.per_rank_nodes[path] = mine
                return {"t": "per_rank", "n": world}
            t = describe(path, value)
            if t is not None:
                self.sharded[path] = t
                return {"t": "tensor"}
            return None

        flat = structure.flatten(state, allow_pickle=allow_pickle, special=special)
        self.replicated: Dict[str, Any] = flat.tensors
        self.structure: Dict[str, Any] = flat.structure or {"format": 1, "root": {"t": "dict", "k": [], "c": []}}
        self.threads = config.default_threads()
        self.meta = RankMeta(
            rank=rank,
            tensors=self._tensor_meta(),
            structure_key=digest(self.structure),
            per_rank=self.per_rank_nodes,
            threads=self.threads,
            host=socket.gethostname(),
        )

    def _tensor_meta(self) -> List[Tuple[Any, ...]]:
        out = []
        for t in self.sharded.values():
            itemsize = _itemsize(t.dtype)
            boxes = t.boxes if t.kind == "sharded" else [(tuple(0 for _ in t.shape), t.shape)]
            out.append(t.meta() + (tuple(int(np.prod(b[1])) * itemsize for b in boxes),))
        for name, v in self.replicated.items():
            dtype, shape, nbytes = _describe_value(name, v)
            out.append((name, "replicated", dtype, shape, (), (nbytes,)))
        for name, v in self.own.items():
            dtype, shape, nbytes = _describe_value(name, v)
            out.append((name, "own", dtype, shape, (), (nbytes,)))
        return out

    def value(self, piece: Any) -> Any:
        """The array to write for a piece of the plan."""
        if piece.name in self.own:
            return self.own[piece.name]
        if piece.box is None and piece.name in self.replicated:
            return self.replicated[piece.name]
        t = self.sharded[piece.name]
        if t.kind == "replicated":  # a DTensor or JAX array every rank holds whole
            return t.value
        if piece.box is None:  # a sharded tensor that one piece covers whole
            return t.pieces[0]
        return t.pieces[t.boxes.index(piece.box)]


def _itemsize(dtype: str) -> int:
    return (
        0 if dtype == "string" else np.dtype(dtypes.to_numpy_dtype(dtypes.from_numpy_dtype(np.dtype(dtype)))).itemsize
    )


def _describe_value(name: str, value: Any) -> Tuple[str, Tuple[int, ...], int]:
    """(dtype name, shape, bytes) of a replicated or per-rank value."""
    from ..writer import prepare_item as _prepare

    item, _ = _prepare(name, value)
    dt, shape, data = item[1], tuple(int(d) for d in item[2]), item[3]
    dtype = "string" if dt == dtypes.DT_STRING else dtypes.to_numpy_dtype(dt).name
    if data is None:
        nbytes = 0
    elif isinstance(data, tuple):  # device memory: (ptr, nbytes, device, stream)
        nbytes = int(data[1])
    else:
        nbytes = memoryview(data).nbytes
    return dtype, shape, nbytes


# -- the plan cache ----------------------------------------------------------------

# (engine, rank, size, group identity) -> (this rank's meta key, the plan)
_plans: Dict[Tuple[Any, ...], Tuple[bytes, Plan]] = {}
_plans_lock = threading.Lock()


def _cache_key(comm: Communicator, group: Any) -> Tuple[Any, ...]:
    return (comm.engine, comm.rank, comm.size, id(group))


# -- the save ----------------------------------------------------------------------


class _Save:
    """One rank's part of one multi-rank save."""

    def __init__(
        self,
        state: Any,
        prefix: str,
        comm: Communicator,
        group: Any,
        *,
        durable: bool,
        threads: Optional[int],
        allow_pickle: bool,
        blocking: bool,
        compression: Optional[Tuple[str, Optional[int]]] = None,
    ) -> None:
        self.prefix = prefix
        # ("zstd", level) or None (fastckpt.compression); this rank's frame
        # tables and the dtypes and shapes of its compressed entries.
        self.compression = compression
        self.frame_tables: Dict[bytes, Any] = {}
        self.logical: Dict[bytes, Any] = {}
        self.comm = comm
        self.durable = durable
        self.threads = threads
        self.blocking = blocking
        self.start = time.perf_counter()
        self.collectives_before = comm.collectives
        self.cache_key = _cache_key(comm, group)
        self.job: Any = None
        self.keep: List[Any] = []  # owners of the arrays the job reads, until it has read them
        self.error: Optional[str] = None  # this rank's failure, told to the others
        self.plan: Optional[Plan] = None
        self.cached = False
        self.local: Optional[_Local] = None
        try:
            self.local = _Local(state, comm.rank, comm.size, allow_pickle)
        except Exception as e:  # noqa: BLE001 - told to every rank, raised everywhere
            self.error = _describe_error(e)

    @property
    def the_plan(self) -> Plan:
        """The plan; only used once one was made or taken from the cache."""
        assert self.plan is not None
        return self.plan

    @property
    def the_local(self) -> _Local:
        """This rank's state; only used once it was described without error."""
        assert self.local is not None
        return self.local

    # Phase 1 (the caller's thread): the plan, and the job with its snapshot.
    def prepare(self) -> None:
        cached = None
        if self.local is not None:
            with _plans_lock:
                cached = _plans.get(self.cache_key)
            if cached is not None and cached[0] == self.local.meta.key():
                self.plan, self.cached = cached[1], True
        if not self.cached:
            self.exchange_metadata()
        if self.error is None and self.plan is not None:
            try:
                self.job = self.make_job()
            except Exception as e:  # noqa: BLE001
                self.error = _describe_error(e)

    def exchange_metadata(self) -> None:
        payload = ("meta", self.local.meta if self.local is not None and self.error is None else None, self.error)
        gathered = self.allgather(payload)
        errors = {r: p[2] for r, p in enumerate(gathered) if p[2]}
        stale = [r for r, p in enumerate(gathered) if p[0] != "meta"]
        if stale:
            self.fail_everywhere(_stale_plan_message(stale))
        if errors:
            self.fail_everywhere(None, errors)
        try:
            self.plan = make_plan([p[1] for p in gathered])
        except Exception as e:  # noqa: BLE001 - deterministic: every rank fails alike
            self.fail_everywhere(_describe_error(e))
        with _plans_lock:
            _plans[self.cache_key] = (self.the_local.meta.key(), self.the_plan)

    def make_job(self) -> Any:
        plan, rank = self.the_plan, self.comm.rank
        pieces = plan.writes[rank]
        if not pieces:
            return None
        items, self.keep = [], []
        for piece in pieces:
            item, owner = prepare_item(piece.key, self.the_local.value(piece), slice_key=piece.box is not None)
            items.append(item)
            self.keep.append(owner)
        if self.compression is not None:
            from ..compression import compress_items

            # By name (str), through which device pieces are copied to the host.
            named = {
                (
                    piece.key.decode("utf-8", "surrogateescape") if isinstance(piece.key, bytes) else piece.key
                ): self.the_local.value(piece)
                for piece in pieces
            }
            items, self.frame_tables, self.logical = compress_items(
                items, named, level=self.compression[1], threads=self.threads or plan.threads[rank]
            )
            self.keep.append(items)  # the compressed bytes, until the job has written them
        os.makedirs(os.path.dirname(self.prefix) or ".", exist_ok=True)
        return start_job(
            items,
            self.prefix,
            num_shards=plan.num_shards[rank],
            threads=self.threads or plan.threads[rank],
            durable=self.durable,
            snapshot_host=not self.blocking,
            shard_base=plan.shard_base[rank],
            total_shards=plan.total_shards,
            commit=False,
            chunk_bytes=chunks.CHUNK_BYTES,
        )

    def snapshot(self) -> None:
        """Copies what this rank writes (asynchronous saves: on the caller's
        thread, so the caller may change its arrays once this returns)."""
        if self.job is not None and self.error is None:
            try:
                self.job.start_writing()
                self.job.snapshot()
            except Exception as e:  # noqa: BLE001
                self.error = _describe_error(e)
        if not self.blocking:
            self.keep = []  # the snapshot holds the bytes now

    # Phase 2 (the caller's thread, or the background one): write, gather, commit.
    def finish(self) -> DistributedSaveResult:
        result: Dict[str, Any] = {"entries": [], "data_files": [], "chunk_crcs": {}, "data_bytes": 0}
        if self.job is not None:
            if self.error is not None:
                self.job.abort(f"the save failed on this rank: {self.error}")
            try:
                result = self.job.finish()
            except Exception as e:  # noqa: BLE001
                if self.error is None:
                    self.error = _describe_error(e)
        self.keep = []
        committed = False
        try:
            outcome = self.exchange_results(result)
            committed = outcome[0] == "ok"
        finally:
            if self.job is not None:
                try:
                    self.job.release(committed)
                except FastCkptError:
                    pass  # a failed cleanup must not hide the outcome
        if not committed:
            raise DistributedSaveError(_failure_message(self.prefix, outcome[1], self.comm.size), outcome[1])
        return DistributedSaveResult(
            prefix=self.prefix,
            files=list(outcome[1]),
            num_shards=self.the_plan.total_shards,
            nbytes=int(result.get("data_bytes", 0)),
            seconds=time.perf_counter() - self.start,
            rank=self.comm.rank,
            world_size=self.comm.size,
            collectives=self.comm.collectives - self.collectives_before,
            plan_cached=self.cached,
        )

    def exchange_results(self, result: Dict[str, Any]) -> Tuple[str, Any]:
        sent = {k: result.get(k) for k in ("entries", "data_files", "chunk_crcs")}
        if self.frame_tables:
            from ..format import frames

            sent["frames"] = frames.encode(self.frame_tables).tobytes()
            sent["logical"] = self.logical
        mine = ("results", self.plan.key if self.plan is not None else b"", sent, self.error)
        try:
            if self.cached:
                gathered: Optional[List[Any]] = self.allgather(mine)
                assert gathered is not None
                stale = [r for r, p in enumerate(gathered) if p[0] != "results" or p[1] != self.the_plan.key]
                if stale:
                    with _plans_lock:
                        _plans.pop(self.cache_key, None)
                    failures = {r: _stale_plan_message([r]) for r in stale}
                    return ("failed", failures)
                if self.comm.rank != 0:
                    gathered = None
            else:
                gathered = self.comm.gather(mine, 0)
            outcome = self.commit(gathered) if self.comm.rank == 0 else None
            return self.comm.broadcast(outcome, 0)
        except CollectiveError as e:
            return ("failed", {r: f"no answer: {e}" for r in (e.ranks or [])} or {self.comm.rank: str(e)})

    def commit(self, gathered: Optional[List[Any]]) -> Tuple[str, Any]:
        """Rank 0: writes the structure and the chunk table, then the index,
        and commits; or says why not."""
        assert gathered is not None
        failures = {r: p[3] for r, p in enumerate(gathered) if p[3]}
        if failures:
            return ("failed", failures)
        entries: List[Any] = []
        data_files: List[Any] = []
        crcs: Dict[bytes, bytes] = {}
        tables: Dict[bytes, Any] = {}
        logical: Dict[bytes, Any] = {}
        meta = None
        try:
            for _, _, result, _ in gathered:
                entries.extend(result["entries"])
                data_files.extend(result["data_files"])
                crcs.update(result["chunk_crcs"] or {})
                if result.get("frames"):
                    from ..format import frames

                    tables.update(frames.decode(np.frombuffer(result["frames"], np.uint8), self.prefix))
                    logical.update(result["logical"])
            if logical:
                from ..compression import rewrite_entries

                entries = rewrite_entries(entries, logical)
            for name, dtype, shape, extents in self.the_plan.partitioned:
                dt = dtypes.DT_STRING if dtype == "string" else dtypes.from_numpy_dtype(np.dtype(dtype))
                entries.append(
                    (name.encode("utf-8", "surrogateescape"), dt, tuple(shape), 0, 0, 0, 0, [list(e) for e in extents])
                )
            meta = self.meta_job(crcs, tables)
            info = meta.finish()
            entries.extend(info["entries"])
            data_files.extend(info["data_files"])
            from .. import _native

            files = _native.commit_bundle(
                self.prefix,
                entries,
                data_files,
                self.the_plan.total_shards,
                durable=self.durable,
                min_consumer=_native.COMPRESSED_MIN_CONSUMER if tables else 0,
            )
            meta.release(True)
            meta = None
            return ("ok", files)
        except Exception as e:  # noqa: BLE001 - reported to every rank
            return ("failed", {0: _describe_error(e)})
        finally:
            if meta is not None:
                meta.release(False)

    def meta_job(self, crcs: Dict[bytes, bytes], tables: Dict[bytes, Any]) -> Any:
        """Rank 0's last data file: the merged structure, the chunk table and,
        with compression, the merged frame table."""
        description = dict(self.the_local.structure)
        description["root"] = _with_per_rank(description["root"], self.the_plan.per_rank)
        items, keep = [], []
        for name, value in (
            (structure.STRUCTURE_KEY, np.array(structure.Flattened({}, description).encoded_structure(), dtype=object)),
            (chunks.CHUNKS_KEY, chunks.encode(chunks.CHUNK_BYTES, crcs)),
        ):
            item, owner = prepare_item(name, value)
            items.append(item)
            keep.append(owner)
        if tables:
            from ..compression import frames_item

            items.append(frames_item(tables))
            keep.append(items[-1][3])
        job = start_job(
            items,
            self.prefix,
            num_shards=1,
            threads=1,
            durable=self.durable,
            shard_base=self.the_plan.meta_shard,
            total_shards=self.the_plan.total_shards,
            commit=False,
        )
        self.keep = keep  # the encoded tensors, until the job has written them
        return job

    # Collectives, with failures turned into one error for everyone.
    def allgather(self, payload: Any) -> List[Any]:
        try:
            return self.comm.allgather(payload)
        except CollectiveError as e:
            raise DistributedSaveError(
                _failure_message(self.prefix, {self.comm.rank: str(e)}, self.comm.size),
                {r: "no answer" for r in e.ranks} or {self.comm.rank: str(e)},
            ) from None

    def fail_everywhere(self, message: Optional[str], failures: Optional[Dict[int, str]] = None) -> None:
        failures = failures or {r: message or "" for r in range(self.comm.size)}
        with _plans_lock:
            _plans.pop(self.cache_key, None)
        raise DistributedSaveError(_failure_message(self.prefix, failures, self.comm.size), failures)


def _with_per_rank(node: Any, per_rank: Dict[str, List[Any]], path: str = "") -> Any:
    """`node` with every per-rank node's children (one per rank) filled in."""
    if not isinstance(node, dict):
        return node
    t = node.get("t")
    if t == "per_rank":
        return dict(node, c=per_rank.get(path, []))
    if t in ("dict", "odict"):
        return dict(
            node,
            c=[_with_per_rank(c, per_rank, f"{path}/{k}" if path else str(k)) for k, c in zip(node["k"], node["c"])],
        )
    if t in ("list", "tuple"):
        return dict(
            node, c=[_with_per_rank(c, per_rank, f"{path}/{i}" if path else str(i)) for i, c in enumerate(node["c"])]
        )
    return node


def _describe_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _stale_plan_message(ranks: List[int]) -> str:
    return (
        f"rank(s) {', '.join(map(str, ranks))} changed the shapes, dtypes or structure of their state "
        "since the previous save while the others did not (or the other way round); the plans "
        "disagree, so this save was dropped: save again"
    )


def _failure_message(prefix: str, failures: Dict[int, str], world: int) -> str:
    lines = [f"distributed save of '{prefix}' failed on {len(failures)} of {world} ranks; no checkpoint was committed:"]
    lines += [f"  rank {r}: {why}" for r, why in sorted(failures.items())]
    return "\n".join(lines)


def save(
    state: Any,
    prefix: Union[str, "os.PathLike[str]"],
    *,
    group: Any = None,
    blocking: bool = True,
    durable: bool = True,
    threads: Optional[int] = None,
    timeout: float = DEFAULT_TIMEOUT,
    allow_pickle: bool = False,
    compression: Optional[str] = None,
    compression_level: Optional[int] = None,
) -> Union[DistributedSaveResult, "_background.AsyncSave[DistributedSaveResult]"]:
    """Saves one checkpoint from every rank of `group` (a collective: every
    rank calls it, with its own part of the state).

    Args:
        state: this rank's state, nested as for :func:`fastckpt.save`.
            Sharded tensors (torch ``DTensor``, :class:`fastckpt.Shard`, JAX
            arrays sharded over devices) are stored as TensorFlow slices of
            the global tensor; values every rank holds whole (plain tensors,
            scalars) are written once, by one rank, spread by bytes;
            :class:`fastckpt.PerRank` values are stored per rank.
        prefix: the checkpoint prefix, the same on every rank, on a
            filesystem every rank sees.
        group: a torch.distributed ProcessGroup, an mpi4py communicator, or
            None (torch.distributed's default group if initialised, else
            MPI.COMM_WORLD if mpi4py is imported, else a world of one).
        blocking: False returns once this rank's snapshot is taken; writing,
            the collectives and the commit run in the background, in order
            with later saves (the first save of a state structure exchanges
            the plan before it returns).
        durable: fsync every file and the directory before the commit.
        threads: this rank's writer threads (default: its machine's cores
            divided among the ranks of this save on that machine).
        timeout: seconds a collective waits for the slowest rank.
        allow_pickle: as for :func:`fastckpt.save`.
        compression, compression_level: as for :func:`fastckpt.save`, the same
            on every rank: each rank compresses what it writes (its pieces, in
            independent frames, so that a resharded load decompresses only the
            frames its boxes need) and rank 0 commits the merged frame table.

    Returns:
        A :class:`DistributedSaveResult` (the same files on every rank), or
        with ``blocking=False`` an :class:`~fastckpt.AsyncSave` of it.

    Raises:
        DistributedSaveError: on every rank, when any rank failed (its error,
            a dead rank, a timeout); nothing was committed.
    """
    prefix = os.fspath(prefix)
    from ..compression import check_options

    codec = check_options(compression, compression_level)
    comm = communicator(group, timeout=timeout)
    parent = os.path.dirname(prefix)
    if parent and not os.path.isdir(parent):
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise from_os_error(e, f"cannot create directory '{parent}'", parent) from None
    job = _Save(
        state,
        prefix,
        comm,
        group,
        durable=durable,
        threads=threads,
        allow_pickle=allow_pickle,
        blocking=blocking,
        compression=codec,
    )
    job.prepare()
    if blocking:
        job.snapshot()
        return job.finish()
    handle: _background.AsyncSave[DistributedSaveResult] = _background.AsyncSave(prefix)
    _background.submit(handle, job.finish, cancellable=False)
    job.snapshot()
    handle.snapshot_seconds = time.perf_counter() - job.start
    return handle
