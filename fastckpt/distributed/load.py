"""``fastckpt.distributed.load``: restore a checkpoint onto any number of
ranks, each receiving exactly its pieces.

Each rank passes the structure it wants: torch ``DTensor``s (any placements
on any mesh), :class:`fastckpt.Shard`s (any offsets), JAX arrays (any
sharding), plain tensors (whole), :class:`fastckpt.PerRank` values. For
every tensor it reads only the byte ranges that overlap its pieces, through
the native reader (``Reader.read_box``), in parallel; every byte it hands
back is checksum-verified: with the chunk-CRC table of a multi-rank
checkpoint, chunk by chunk (a rank reads little beyond what it needs);
without it (TensorFlow-written or single-process checkpoints), each stored
piece it touches is read whole and checked against its entry CRC.

Tensors are filled in place (DTensor locals, Shard arrays, numpy and torch
arrays); JAX arrays, scalars and other immutable leaves are replaced in the
returned structure. The only collective is one allgather at the end, so that
every rank raises when any rank failed: no rank goes on training from a
partial restore.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, Union

import numpy as np

from .. import structure
from .._arrays import aligned_empty
from ..errors import (
    DistributedLoadError,
    FastCkptError,
    InvalidArgumentError,
    TensorNotFoundError,
    UnsupportedDtypeError,
)
from ..format import chunks, dtypes
from ..reader import CheckpointReader, assign_in_place, check_restore_target, target_shape_and_dtype, writable_host_view
from .comm import DEFAULT_TIMEOUT, CollectiveError, communicator
from .leaves import Box, PerRank, Shard, dtensor_box, dtensor_local, is_dtensor, is_sharded_jax

__all__ = ["load", "LoadReport", "PER_RANK_POLICIES"]

#: What a rank gets of a per-rank value saved on another number of ranks.
PER_RANK_POLICIES = ("error", "first", "modulo")


@dataclass
class LoadReport:
    """What this rank restored: tensors filled or replaced, bytes read from
    the data files, and the seconds it took (before the final exchange)."""

    rank: int
    world_size: int
    tensors: int
    bytes_read: int
    seconds: float
    missing: List[str]
    unexpected: List[str]


def _spec_nodes(spec: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """path -> node of a structure description."""
    out: Dict[str, Any] = {}
    if spec is None:
        return out

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        out[path] = node
        t = node.get("t")
        if t in ("dict", "odict"):
            for k, c in zip(node.get("k", []), node.get("c", [])):
                walk(c, f"{path}/{k}" if path else str(k))
        elif t in ("list", "tuple"):
            for i, c in enumerate(node.get("c", [])):
                walk(c, f"{path}/{i}" if path else str(i))

    walk(spec.get("root"), "")
    return out


class _Restorer:
    """One rank's restore from one open checkpoint."""

    def __init__(
        self, reader: CheckpointReader, rank: int, world: int, per_rank: str, strict: bool, allow_pickle: bool
    ) -> None:
        self.reader = reader
        self.rank = rank
        self.world = world
        self.per_rank = per_rank
        self.strict = strict
        self.allow_pickle = allow_pickle
        self.bytes_read = 0
        self.tensors = 0
        self.missing: List[str] = []
        self.used: Set[str] = set()
        native = reader._native
        self.spec = None
        if structure.STRUCTURE_KEY in reader:
            self.spec = structure.decode_structure(reader.get_tensor(structure.STRUCTURE_KEY), reader.prefix)
        self.nodes = _spec_nodes(self.spec)
        if chunks.CHUNKS_KEY in reader:
            chunk_bytes, table = chunks.decode(reader.get_tensor(chunks.CHUNKS_KEY), reader.prefix)
            for key, crcs in table.items():
                index = native.find(key)
                if index < 0:
                    from ..errors import DataLossError

                    raise DataLossError(
                        f"checkpoint '{reader.prefix}': its chunk table lists {key!r}, which the index lacks"
                    )
                if native.entry(index)[0] != dtypes.DT_STRING:  # strings are read whole
                    native.set_chunk_crcs(index, chunk_bytes, crcs)

    # -- reading pieces ------------------------------------------------------------
    def _entry(self, name: str) -> Any:
        if name not in self.reader:
            raise TensorNotFoundError(f"tensor '{name}' not found in checkpoint '{self.reader.prefix}'")
        self.used.add(name)
        return self.reader._entry(name)

    def read_box(self, name: str, box: Box, dtype: Optional[np.dtype], into: Optional[np.ndarray] = None) -> np.ndarray:
        """The elements of `box` of tensor `name`: read into `into` (a
        writable, C-contiguous host array of the box's shape) when given and
        the tensor is fixed-size, else into a new host array."""
        entry = self._entry(name)
        saved = dtypes.to_numpy_dtype(entry.dtype)
        shape = tuple(entry.shape)
        check_restore_target(
            name, self.reader.prefix, saved, shape, dtype, shape
        )  # the dtype rule; shapes are checked against the box below
        offsets, lengths = box
        if len(offsets) != len(shape) or any(o < 0 or n < 0 or o + n > d for o, n, d in zip(offsets, lengths, shape)):
            raise InvalidArgumentError(
                f"tensor '{name}' in '{self.reader.prefix}': the target's piece at offsets {list(offsets)} "
                f"of shape {list(lengths)} lies outside the checkpoint's shape {list(shape)}"
            )
        if entry.dtype == dtypes.DT_STRING:
            whole = self.reader.get_tensor(name)
            self.bytes_read += sum(len(x) for x in whole.reshape(-1))
            index = tuple(slice(o, o + n) for o, n in zip(offsets, lengths))
            return np.ascontiguousarray(whole[index])
        out = into if into is not None and into.dtype == saved else aligned_empty(tuple(lengths), saved)
        if out.size and self.reader._compressed is not None:  # a compressed checkpoint (fastckpt.compression)
            box_extents = [(int(o), int(n)) for o, n in zip(offsets, lengths)]
            self.bytes_read += self.reader._read_compressed_box(entry, box_extents, box_extents, saved, out)[1]
        elif out.size:
            self.bytes_read += int(
                self.reader._native.read_box(
                    entry.index, [(int(o), int(n)) for o, n in zip(offsets, lengths)], out, self.reader._threads
                )
            )
        self.tensors += 1
        return out

    def fill(self, name: str, target: Any, box: Box) -> None:
        """Reads `box` of `name` into `target` (in place)."""
        shape, dtype = target_shape_and_dtype(target)
        if tuple(shape) != tuple(box[1]):
            raise InvalidArgumentError(
                f"tensor '{name}' in '{self.reader.prefix}': the target piece has shape {list(shape)}, "
                f"its box {list(box[1])}"
            )
        # A host target with contiguous memory is read into directly (no
        # temporary, no copy); others (device tensors, strided views) get
        # the value assigned.
        view = writable_host_view(name, self.reader.prefix, target)
        value = self.read_box(name, box, dtype, into=view)
        if value is not view:
            assign_in_place(name, self.reader.prefix, target, value)

    # -- the walk over the target ----------------------------------------------------
    def restore(self, value: Any, path: str) -> Any:
        node = self.nodes.get(path)
        if node is not None and node.get("t") == "per_rank":
            return self.restore_per_rank(value, path, node)
        if isinstance(value, PerRank):
            raise InvalidArgumentError(f"'{path}' in '{self.reader.prefix}' was not saved per rank")
        if isinstance(value, Shard):
            self.fill(path, value.array, value.box)
            return value
        if is_dtensor(value):
            self.restore_dtensor(value, path)
            return value
        if is_sharded_jax(value):
            return self.restore_jax(value, path)
        if isinstance(value, Mapping):
            out = {k: self.restore(v, _join(path, k)) for k, v in value.items()}
            cls: Any = type(value)  # an OrderedDict or other Mapping built from a dict
            return cls(out) if cls is not dict else out
        if type(value) in (list, tuple):
            items = [self.restore(v, _join(path, i)) for i, v in enumerate(value)]
            return items if type(value) is list else tuple(items)
        if structure.is_array(value):
            if (type(value).__module__ or "").startswith(("jax", "jaxlib")):
                import jax

                if path not in self.reader:
                    return self.skip(path, value)
                whole = self.read_box(path, _full_box(self._entry(path).shape), np.dtype(value.dtype))
                return jax.device_put(whole, getattr(value, "sharding", None))
            if path not in self.reader:
                return self.skip(path, value)
            self.fill(path, value, _full_box(self._entry(path).shape))
            return value
        # A scalar, None, str, bytes: the saved value replaces it.
        if node is None and path not in self.reader:
            return self.skip(path, value)
        return self.saved_value(path, node)

    def skip(self, path: str, value: Any) -> Any:
        self.missing.append(path)
        return value

    def saved_value(self, path: str, node: Optional[Dict[str, Any]]) -> Any:
        if node is None:  # a checkpoint without structure: the tensor as read
            self.used.add(path)
            return self.reader.get_tensor(path)
        for name in _names_under(self.nodes, path):
            self.used.add(name)
        sub = {"format": 1, "root": node}
        tensors = {
            path_in: self.reader.get_tensor(_join(path, path_in) if path_in else path)
            for path_in in _tensor_paths(node)
        }
        return structure.unflatten(sub, tensors, prefix=self.reader.prefix, allow_pickle=self.allow_pickle)

    def restore_per_rank(self, value: Any, path: str, node: Dict[str, Any]) -> Any:
        saved_on = int(node.get("n", 0))
        children = node.get("c") or []
        if saved_on == self.world:
            source = self.rank
        elif self.per_rank == "first":
            source = 0
        elif self.per_rank == "modulo":
            source = self.rank % saved_on
        else:
            raise InvalidArgumentError(
                f"'{path}' in '{self.reader.prefix}' was saved per rank on {saved_on} ranks; loading on "
                f"{self.world}, pass per_rank='first' (every rank gets rank 0's) or 'modulo' (rank r "
                f"gets rank r % {saved_on}'s)"
            )
        if source >= len(children):
            from ..errors import DataLossError

            raise DataLossError(f"checkpoint '{self.reader.prefix}': '{path}' lacks rank {source}'s value")
        inner = value.value if isinstance(value, PerRank) else value
        base = f"{path}/__rank_{source}"
        sub_node = children[source]
        names = {p: _join(base, p) if p else base for p in _tensor_paths(sub_node)}
        for n in names.values():
            self.used.add(n)
        if structure.is_array(inner) and names:
            self.fill(names[""], inner, _full_box(self._entry(names[""]).shape))
            result: Any = inner
        else:
            tensors = {p: self.reader.get_tensor(n) for p, n in names.items()}
            result = structure.unflatten(
                {"format": 1, "root": sub_node}, tensors, prefix=self.reader.prefix, allow_pickle=self.allow_pickle
            )
        for n in names.values():
            self.used.add(n)
        return PerRank(result) if isinstance(value, PerRank) else result

    def restore_dtensor(self, t: Any, path: str) -> None:
        box = dtensor_box(t, f"'{path}': cannot restore into a DTensor with a Partial placement")
        self.fill(path, dtensor_local(t), box if box is not None else _full_box(tuple(int(d) for d in t.shape)))

    def restore_jax(self, arr: Any, path: str) -> Any:
        import jax

        shape = tuple(int(d) for d in arr.shape)
        pieces = []
        cache: Dict[Box, np.ndarray] = {}
        for s in arr.addressable_shards:
            box = _box_of_index(s.index, shape)
            if box not in cache:
                cache[box] = self.read_box(path, box, np.dtype(arr.dtype))
            pieces.append(jax.device_put(cache[box], s.device))
        return jax.make_array_from_single_device_arrays(shape, arr.sharding, pieces)

    def unexpected(self, target: Any) -> List[str]:
        """Checkpoint tensors under the target's top-level keys that nothing read."""
        tops = [str(k) for k in target] if isinstance(target, Mapping) else [str(i) for i in range(len(target))]
        reserved = {structure.STRUCTURE_KEY, chunks.CHUNKS_KEY}  # the frame table is no listed tensor
        # Other ranks' per-rank values are not this rank's to restore.
        others = tuple(f"{p}/__rank_" for p, node in self.nodes.items() if node.get("t") == "per_rank")
        return sorted(
            n
            for n in self.reader._index
            if n not in self.used
            and n not in reserved
            and not n.startswith(others)
            and any(n == t or n.startswith(t + "/") for t in tops)
        )


def _join(path: str, key: Any) -> str:
    return f"{path}/{key}" if path else str(key)


def _full_box(shape: Tuple[int, ...]) -> Box:
    return tuple(0 for _ in shape), tuple(int(d) for d in shape)


def _box_of_index(index: Tuple[slice, ...], shape: Tuple[int, ...]) -> Box:
    offsets, lengths = [], []
    for d, sl in enumerate(index):
        start, stop, _ = sl.indices(shape[d])
        offsets.append(start)
        lengths.append(stop - start)
    return tuple(offsets), tuple(lengths)


def _tensor_paths(node: Any, path: str = "") -> List[str]:
    """Paths (relative to `node`) of every leaf of `node` that has a tensor."""
    if not isinstance(node, dict):
        return []
    t = node.get("t")
    if t in ("dict", "odict"):
        return [p for k, c in zip(node.get("k", []), node.get("c", [])) for p in _tensor_paths(c, _join(path, k))]
    if t in ("list", "tuple"):
        return [p for i, c in enumerate(node.get("c", [])) for p in _tensor_paths(c, _join(path, i))]
    if t in ("none", "per_rank"):
        return []
    return [path]


def _names_under(nodes: Dict[str, Any], path: str) -> List[str]:
    node = nodes.get(path)
    return [_join(path, p) if p else path for p in _tensor_paths(node)] if node is not None else []


def load(
    prefix: Union[str, "Any"],
    state: Any,
    *,
    group: Any = None,
    strict: bool = True,
    per_rank: str = "error",
    threads: Optional[int] = None,
    timeout: float = DEFAULT_TIMEOUT,
    allow_pickle: bool = False,
    with_report: bool = False,
) -> Any:
    """Restores a checkpoint into this rank's `state` (a collective: every rank
    of `group` calls it, each with the structure and sharding it wants).

    Args:
        prefix: the checkpoint, written by any number of ranks (or by one
            process, or by TensorFlow).
        state: this rank's target: nested as for :func:`fastckpt.save`, with
            DTensors, :class:`fastckpt.Shard`s, JAX arrays, plain arrays,
            :class:`fastckpt.PerRank` values and scalars as leaves.
        group: as for :func:`fastckpt.distributed.save`.
        strict: every array of `state` must be in the checkpoint and every
            tensor of the checkpoint under `state`'s top-level keys in
            `state`; with False, those are skipped (and listed in the report).
        per_rank: what a rank gets of a value saved per rank on another
            number of ranks: "error" (the default: restoring it is an
            explicit choice), "first" (rank 0's) or "modulo" (rank r % N's).
        threads: this rank's reader threads.
        timeout: seconds the final exchange waits for the slowest rank.
        with_report: return ``(state, LoadReport)`` instead of `state`.

    Returns:
        `state` with every tensor filled in place, and JAX arrays, scalars and
        other immutable leaves replaced by the saved values.

    Raises:
        The rank's own error (TensorNotFoundError, InvalidArgumentError,
        DataLossError...) on a rank that failed in a world of one;
        DistributedLoadError on every rank when any rank failed.
    """
    if per_rank not in PER_RANK_POLICIES:
        raise InvalidArgumentError(f"per_rank must be one of {', '.join(PER_RANK_POLICIES)}, not {per_rank!r}")
    comm = communicator(group, timeout=timeout)
    start = time.perf_counter()
    error: Optional[BaseException] = None
    out: Any = state
    report: Optional[LoadReport] = None
    try:
        with CheckpointReader(prefix, threads=threads) as reader:
            r = _Restorer(reader, comm.rank, comm.size, per_rank, strict, allow_pickle)
            out = r.restore(state, "")
            unexpected = r.unexpected(state)
            if strict and (r.missing or unexpected):
                parts = []
                if r.missing:
                    parts.append(f"the target's {', '.join(repr(m) for m in r.missing[:10])} not in the checkpoint")
                if unexpected:
                    parts.append(f"the checkpoint's {', '.join(repr(u) for u in unexpected[:10])} not in the target")
                raise TensorNotFoundError(
                    f"restoring from '{reader.prefix}' on rank {comm.rank}: "
                    + "; ".join(parts)
                    + " (strict=False skips them)"
                )
            report = LoadReport(
                comm.rank, comm.size, r.tensors, r.bytes_read, time.perf_counter() - start, r.missing, unexpected
            )
    except FastCkptError as e:
        error = e
    except (TypeError, ValueError) as e:  # from a framework's copy: named by the walk's tensor
        error = UnsupportedDtypeError(f"restoring from '{prefix}' on rank {comm.rank}: {e}")
    if comm.size > 1:
        try:
            statuses = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
        except CollectiveError as e:
            raise DistributedLoadError(str(e), {comm.rank: str(e)}) from error
        failures = {rank: s for rank, s in enumerate(statuses) if s}
        if failures:
            lines = [f"distributed load of '{prefix}' failed on {len(failures)} of {comm.size} ranks:"]
            lines += [f"  rank {rank}: {why}" for rank, why in sorted(failures.items())]
            raise DistributedLoadError("\n".join(lines), failures) from error
    elif error is not None:
        raise error
    assert report is not None
    return (out, report) if with_report else out
