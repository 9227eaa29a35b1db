"""Writers of the checkpoints the tests and the fuzz scripts damage or time:
the reference checkpoint whose index the fuzzers mutate, a partitioned tensor
stored in given slices (its index entry may list other slices than those
stored), and an index entry rewritten in place with the table's block CRCs
recomputed (so that the damage reaches what lies behind the CRC check)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
from table_codec import Table

Extents = Sequence[Tuple[int, int]]


def write_reference(prefix: str, *, layers: int = 12, all_kinds: bool = True) -> Dict[str, np.ndarray]:
    """Writes the reference checkpoint the index fuzzers damage, in two data
    files: `layers` pairs of small tensors (``layer_NN/w`` float32,
    ``layer_NN/b`` int64), a scalar, an empty tensor, a matrix, a string
    tensor, with `all_kinds` also a bfloat16 tensor and a string scalar, and
    ``part``, stored as two slices. Returns name -> value (``part`` whole)."""
    import ml_dtypes

    from fastckpt.writer import partitioned_items, prepare_items, write_items

    values: Dict[str, np.ndarray] = {
        f"layer_{i:02d}/{kind}": np.arange(i * 5 % 23 + 1, dtype=dt)
        for i in range(layers)
        for kind, dt in (("w", np.float32), ("b", np.int64))
    }
    values["scalar"] = np.array(3.25, np.float64)
    values["empty"] = np.zeros((0, 4), np.int32)
    values["matrix"] = np.arange(12, dtype=np.int16).reshape(3, 4)
    if all_kinds:
        values["bf16"] = np.arange(6, dtype=np.float32).astype(ml_dtypes.bfloat16)
    values["strings"] = np.array([b"alpha", b"", b"gamma\x00"], dtype=object)
    if all_kinds:
        values["string_scalar"] = np.array(b"one", dtype=object)
    items, keep = prepare_items(values)
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    part_items, part_keep = partitioned_items(
        "part", full.shape, [([(0, 3), (0, -1)], full[0:3]), ([(3, 4), (0, -1)], full[3:7])]
    )
    items += part_items
    keep += part_keep
    write_items(items, prefix, num_shards=2, threads=2, durable=False)
    values["part"] = full
    return values


def write_partitioned(
    prefix: str,
    name: str,
    full: np.ndarray,
    parts: Sequence[Extents],
    *,
    listed: Optional[Sequence[Extents]] = None,
    extra: Optional[Dict[Union[str, bytes], Any]] = None,
) -> None:
    """Writes `full` as partitioned tensor `name` stored in slices `parts`
    ((start, length) per dimension, length -1 for the whole dimension).

    `listed`: the slice list the tensor's entry records (default `parts`);
    `extra`: {key (str or bytes): array} more entries (slice keys allowed).
    """
    from fastckpt.format import dtypes
    from fastckpt.format import slices as slicing
    from fastckpt.writer import partitioned_item, prepare_item, write_items

    items, keep = [], []
    for extents in parts:
        index = tuple(slice(s, s + n) if n >= 0 else slice(None) for s, n in extents)
        item, owner = prepare_item(
            slicing.encode_slice_key(name, extents), np.ascontiguousarray(full[index]), slice_key=True
        )
        items.append(item)
        keep.append(owner)
    items.append(
        partitioned_item(name, dtypes.from_numpy_dtype(full.dtype), full.shape, listed if listed is not None else parts)
    )
    for key, value in (extra or {}).items():
        item, owner = prepare_item(key, value, slice_key=True)
        items.append(item)
        keep.append(owner)
    write_items(items, prefix, num_shards=1, threads=None, durable=False)


def rewrite_index_entry(prefix: str, key: bytes, mutate: Callable[[Any], None]) -> None:
    """Rewrites the index entry `key` with `mutate(BundleEntryProto)`, block CRCs recomputed."""
    from fastckpt.proto import tensor_bundle_pb2

    _rewrite_index(prefix, key, tensor_bundle_pb2.BundleEntryProto, mutate)


def rewrite_index_header(prefix: str, mutate: Callable[[Any], None]) -> None:
    """Rewrites the index's header entry with `mutate(BundleHeaderProto)`, block CRCs recomputed."""
    from fastckpt.proto import tensor_bundle_pb2

    _rewrite_index(prefix, b"", tensor_bundle_pb2.BundleHeaderProto, mutate)


def _rewrite_index(prefix: str, key: bytes, message: Any, mutate: Callable[[Any], None]) -> None:
    with open(prefix + ".index", "rb") as f:
        entries = Table.parse(f.read()).entries()
    out = []
    for k, v in entries:
        if k == key:
            e = message.FromString(v)
            mutate(e)
            v = e.SerializeToString()
        out.append((k, v))
    with open(prefix + ".index", "wb") as f:
        f.write(Table.from_entries(out).serialize())
