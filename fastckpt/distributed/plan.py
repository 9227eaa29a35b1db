"""Who writes what in a multi-rank save: a pure function of what every rank
holds, so that every rank computes the same plan from the one exchange of
metadata and nothing has to be sent back (Megatron-core's approach).

* A tensor held whole by every rank (replicated) is written once.
* A sharded tensor is stored as the distinct pieces the ranks hold, each
  written once (a piece several ranks hold, a DTensor replicated along one
  mesh dimension, goes to one of them), as TensorFlow's partitioned
  variables are: slice entries plus a data-less entry listing them. The
  pieces must cover the tensor without overlapping.
* A per-rank value is written by its rank.

Pieces held by several ranks go to the holder with the fewest bytes so far,
largest pieces first (DCP's and Megatron's greedy rule), so no rank writes
everything that is replicated. Rank r writes its pieces into shards
``[base_r, base_r + k_r)`` of ``N`` data files, k_r from its bytes and
threads as a single-process save chooses; rank 0 also writes the last
shard, ``N - 1``, with the checkpoint's structure and chunk-CRC table once
every rank has written.
"""

from __future__ import annotations

import hashlib
import math
import pickle
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import FastCkptError, InvalidArgumentError
from ..format import slices as slicing

__all__ = ["RankMeta", "Piece", "Plan", "make_plan", "digest"]

# A shard per this many bytes, at most one per writer thread: the rule of a
# single-process save (csrc/fastckpt/pipeline/bundle_plan.cc, kAutoShardBytes).
_AUTO_SHARD_BYTES = 32 << 20


@dataclass
class RankMeta:
    """What one rank tells the others before a save: every tensor it holds,
    as ``(name, kind, dtype, global shape, pieces, bytes per piece)`` (kind
    "replicated", "sharded" or "own" for a per-rank value), a digest of its
    state's structure (per-rank values' contents left out), the structure of
    its per-rank values (``{path: node}``), its machine's cores (its default
    writer threads) and the machine's name."""

    rank: int
    tensors: List[Tuple[Any, ...]]
    structure_key: bytes
    per_rank: Dict[str, Any]
    threads: int
    host: str = ""

    def key(self) -> bytes:
        """A digest of everything the plan depends on."""
        return digest((self.tensors, self.structure_key, self.per_rank, self.threads, self.host))


def digest(obj: Any) -> bytes:
    return hashlib.sha256(pickle.dumps(obj, protocol=4)).digest()


@dataclass(frozen=True)
class Piece:
    """One stored entry: tensor `name`'s `box` (None: the whole tensor),
    under `key` (the name, or an encoded slice key)."""

    key: bytes
    name: str
    box: Optional[Tuple[Tuple[int, ...], Tuple[int, ...]]]
    nbytes: int


@dataclass
class Plan:
    """The same on every rank."""

    world: int
    total_shards: int
    shard_base: List[int]
    num_shards: List[int]
    writes: Dict[int, List[Piece]] = field(default_factory=dict)  # rank -> what it writes
    # Data-less entries of partitioned tensors: (name, dtype name, shape, slice extents).
    partitioned: List[Tuple[str, str, Tuple[int, ...], List[List[Tuple[int, int]]]]] = field(default_factory=list)
    # Per-rank values: path -> the structure node of each rank's value.
    per_rank: Dict[str, List[Any]] = field(default_factory=dict)
    key: bytes = b""
    # Each rank's default writer threads: its machine's cores shared among the
    # ranks on that machine (8 ranks on 96 cores: 12 each, not 96 each).
    threads: List[int] = field(default_factory=list)

    @property
    def meta_shard(self) -> int:
        """The shard rank 0 writes last (structure, chunk table)."""
        return self.total_shards - 1


def _extents(box: Tuple[Tuple[int, ...], Tuple[int, ...]], shape: Sequence[int]) -> List[Tuple[int, int]]:
    """A box as TensorFlow slice extents: a whole dimension is (0, -1)."""
    return [(0, -1) if (o == 0 and n == d) else (o, n) for o, n, d in zip(box[0], box[1], shape)]


def make_plan(metas: Sequence[RankMeta]) -> Plan:
    """The plan for a save whose ranks hold `metas` (one per rank, in rank order).

    Raises:
        InvalidArgumentError: the ranks disagree (a tensor some ranks lack,
            other shapes or dtypes, pieces that overlap or leave holes); the
            message names the tensor and the ranks.
    """
    world = len(metas)
    for m in metas[1:]:
        if m.structure_key != metas[0].structure_key:
            raise InvalidArgumentError(
                f"rank {m.rank}'s state has another structure than rank 0's (other keys, containers "
                "or kinds of leaves): every rank must pass the same structure"
            )
    seen: Dict[str, Tuple[str, str, Tuple[int, ...]]] = {}
    holders: Dict[str, Dict[Any, List[int]]] = {}  # name -> piece box -> ranks
    sizes: Dict[str, Dict[Any, int]] = {}
    own: Dict[str, Tuple[int, int]] = {}  # per-rank name -> (rank, bytes)
    for m in metas:
        for name, kind, dtype, shape, boxes, nbytes in m.tensors:
            shape = tuple(shape)
            if kind == "own":
                if name in own or name in seen:
                    raise InvalidArgumentError(
                        f"'{name}' is held by ranks {own.get(name, (m.rank,))[0]} and {m.rank} as a per-rank value"
                    )
                own[name] = (m.rank, int(nbytes[0]) if nbytes else 0)
                continue
            first = seen.setdefault(name, (kind, dtype, shape))
            if first != (kind, dtype, shape):
                raise InvalidArgumentError(
                    f"tensor '{name}': rank {m.rank} holds a {kind} {dtype} {list(shape)}, rank "
                    f"{_first_holder(metas, name)} a {first[0]} {first[1]} {list(first[2])}"
                )
            per_box = holders.setdefault(name, {})
            per_size = sizes.setdefault(name, {})
            if kind == "replicated":
                box = None
                per_box.setdefault(box, []).append(m.rank)
                per_size[box] = int(nbytes[0])
            else:
                for box, n in zip(boxes, nbytes):
                    box = (tuple(box[0]), tuple(box[1]))
                    per_box.setdefault(box, []).append(m.rank)
                    per_size[box] = int(n)
    for name, (kind, _, _) in seen.items():
        ranks_with = {r for rs in holders[name].values() for r in rs}
        if kind == "replicated" and len(holders[name][None]) != world:
            missing = sorted(set(range(world)) - ranks_with)
            raise InvalidArgumentError(
                f"tensor '{name}' is held whole by some ranks but not by rank(s) {', '.join(map(str, missing))}"
            )
        if kind == "sharded":
            missing = sorted(set(range(world)) - {m.rank for m in metas if any(t[0] == name for t in m.tensors)})
            if missing:
                raise InvalidArgumentError(
                    f"sharded tensor '{name}' is unknown to rank(s) "
                    f"{', '.join(map(str, missing))}; every rank must pass it "
                    "(a rank with no piece of it passes an empty one)"
                )

    pieces: List[Tuple[Piece, List[int]]] = []
    partitioned = []
    from .. import _native

    for name in sorted(seen):
        kind, dtype, shape = seen[name]
        if kind == "replicated":
            pieces.append(
                (Piece(name.encode("utf-8", "surrogateescape"), name, None, sizes[name][None]), holders[name][None])
            )
            continue
        boxes = [b for b in holders[name] if int(math.prod(b[1])) > 0 or int(math.prod(shape)) == 0]
        full = (tuple(0 for _ in shape), shape)
        if boxes == [full]:
            pieces.append(
                (Piece(name.encode("utf-8", "surrogateescape"), name, None, sizes[name][full]), holders[name][full])
            )
            continue
        extents = [_extents(b, shape) for b in sorted(boxes)]
        try:
            _, covers = _native.check_slice_set(list(shape), extents)
        except FastCkptError as e:  # DataLossError: overlapping or outside; both name the slices
            raise InvalidArgumentError(
                f"sharded tensor '{name}' of shape {list(shape)}: the pieces the ranks hold are inconsistent ({e})"
            ) from None
        if not covers:
            raise InvalidArgumentError(
                f"sharded tensor '{name}' of shape {list(shape)}: the pieces the ranks hold do not cover it"
            )
        for b, ext in zip(sorted(boxes), extents):
            key = slicing.encode_slice_key(name, ext)
            pieces.append((Piece(key, name, b, sizes[name][b]), holders[name][b]))
        partitioned.append((name, dtype, shape, extents))

    load = [0] * world
    writes: Dict[int, List[Piece]] = {r: [] for r in range(world)}
    for name in sorted(own):
        rank, nbytes = own[name]
        writes[rank].append(Piece(name.encode("utf-8", "surrogateescape"), name, None, nbytes))
        load[rank] += nbytes
    for piece, ranks in sorted(pieces, key=lambda p: (-p[0].nbytes, p[0].key)):
        r = min(sorted(set(ranks)), key=lambda q: (load[q], q))
        writes[r].append(piece)
        load[r] += piece.nbytes

    on_host = Counter(m.host for m in metas)
    threads = [max(1, m.threads // on_host[m.host]) for m in metas]
    num = [0 if not writes[r] else min(threads[r], max(1, -(-load[r] // _AUTO_SHARD_BYTES))) for r in range(world)]
    base = [int(np.sum(num[:r])) for r in range(world)]
    total = sum(num) + 1  # + the meta shard rank 0 writes last
    key = digest([m.key() for m in metas])
    per_rank = {path: [m.per_rank.get(path) for m in metas] for path in metas[0].per_rank}
    return Plan(
        world=world,
        total_shards=total,
        shard_base=base,
        num_shards=num,
        writes=writes,
        partitioned=partitioned,
        per_rank=per_rank,
        key=key,
        threads=threads,
    )


def _first_holder(metas: Sequence[RankMeta], name: str) -> int:
    for m in metas:
        if any(t[0] == name for t in m.tensors):
            return m.rank
    return -1
