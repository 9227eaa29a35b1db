"""The chunk-CRC table of a multi-rank checkpoint.

A stored tensor read in part (a rank restoring rows 1000..1999 of a weight
that was saved in other pieces) cannot be checked against the CRC32C of the
whole entry, so multi-rank saves also store, for every data entry, the
CRC32C of each consecutive ``chunk_bytes``-sized chunk of its bytes (the last
one may be shorter): a partial read reads whole chunks and verifies each.
The table is one uint8 tensor, :data:`CHUNKS_KEY`, so TensorFlow reads the
checkpoint as usual (and ignores it). Layout, little-endian::

    b"FCK1"  u32 chunk_bytes  u32 entries
    per entry:  u32 key_length  key bytes  u32 count  count x u32 CRC32C (unmasked)

Each CRC combines (CRC32C combine) to the entry's own stored CRC, which the
reader checks before trusting a table.
"""

from __future__ import annotations

import struct
from typing import Dict, Mapping, Tuple

import numpy as np

from ..errors import DataLossError

__all__ = ["CHUNKS_KEY", "CHUNK_BYTES", "encode", "decode"]

#: The reserved tensor name of the table.
CHUNKS_KEY = "_FASTCKPT_CHUNKS"
#: The chunk size multi-rank saves use: small enough that a partial read
#: reads little beyond what it needs (a rank restoring a quarter of a 0.5 MiB
#: tensor reads 1.1 x its bytes at 64 KiB, 1.8 x at 1 MiB), large enough that
#: the table stays 64 MB per TB of checkpoint (4 bytes per chunk).
CHUNK_BYTES = 64 << 10

_MAGIC = b"FCK1"


def encode(chunk_bytes: int, crcs: Mapping[bytes, bytes]) -> np.ndarray:
    """The table tensor for `crcs` (entry key -> packed little-endian u32 CRCs)."""
    parts = [_MAGIC, struct.pack("<II", chunk_bytes, len(crcs))]
    for key in sorted(crcs):
        table = crcs[key]
        parts.append(struct.pack("<I", len(key)))
        parts.append(key)
        parts.append(struct.pack("<I", len(table) // 4))
        parts.append(table)
    return np.frombuffer(b"".join(parts), dtype=np.uint8)


def decode(table: np.ndarray, prefix: str) -> Tuple[int, Dict[bytes, bytes]]:
    """(chunk_bytes, {entry key: packed CRCs}) of a table read from `prefix`.

    Raises:
        DataLossError: the table is malformed.
    """
    data = np.asarray(table, dtype=np.uint8).tobytes()

    def bad(why: str) -> DataLossError:
        return DataLossError(f"checkpoint '{prefix}': its chunk table '{CHUNKS_KEY}' is damaged ({why})")

    if len(data) < 12 or data[:4] != _MAGIC:
        raise bad("no header")
    chunk_bytes, count = struct.unpack_from("<II", data, 4)
    pos, out = 12, {}
    for _ in range(count):
        if pos + 4 > len(data):
            raise bad("truncated")
        (klen,) = struct.unpack_from("<I", data, pos)
        pos += 4
        key = data[pos : pos + klen]
        pos += klen
        if pos + 4 > len(data) or len(key) != klen:
            raise bad("truncated")
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + 4 * n > len(data):
            raise bad("truncated")
        out[key] = data[pos : pos + 4 * n]
        pos += 4 * n
    if pos != len(data):
        raise bad("trailing bytes")
    return chunk_bytes, out
