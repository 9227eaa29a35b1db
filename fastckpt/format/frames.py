"""The frame table of a compressed checkpoint (see :mod:`fastckpt.compression`).

A compressed tensor's stored bytes are a run of independent frames; each
frame holds ``frame_bytes`` raw bytes of the tensor (the last one fewer),
split into ``planes`` byte planes (plane j holds byte j of every element,
little-endian), each plane either zstd-compressed or stored as it is. The
table that locates the frames and checks them is one uint8 tensor,
:data:`FRAMES_KEY`, stored uncompressed in the same checkpoint. Layout,
little-endian::

    b"FCZ1"  u32 entries
    per entry (sorted by key):
        u32 key_length  key bytes
        u8 codec (1: zstd byte planes)  u8 planes  u16 zero
        u32 frame_bytes  u64 raw_bytes  u32 frames
        per frame: u32 CRC32C of the frame's raw bytes (unmasked),
                   planes x u32 plane word: bit 31 set = stored as it is,
                   bits 0-30 = the plane's stored size in bytes

The table is untrusted input: :func:`decode` checks every field against the
bounds below before anything is allocated from it, and
:func:`fastckpt.compression` checks each entry against the index (dtype,
sizes) before a byte is decompressed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple

import numpy as np

from ..errors import DataLossError

__all__ = [
    "FRAMES_KEY",
    "CODEC_ZSTD_PLANES",
    "MAX_FRAME_BYTES",
    "MAX_PLANES",
    "RAW_PLANE",
    "FrameTable",
    "encode",
    "decode",
    "zstd_bound",
]

#: The reserved tensor name of the table.
FRAMES_KEY = "_FASTCKPT_FRAMES"
#: Codec 1: byte planes, each zstd-compressed or raw.
CODEC_ZSTD_PLANES = 1
#: The largest raw frame a table may declare: bounds the memory one frame's
#: decompression takes, whatever the table says.
MAX_FRAME_BYTES = 64 << 20
#: complex128 has the widest elements (16 bytes).
MAX_PLANES = 16
#: Bit 31 of a plane word: the plane is stored as it is.
RAW_PLANE = 1 << 31

_MAGIC = b"FCZ1"
_ENTRY_HEAD = struct.Struct("<BBHIQI")  # codec, planes, zero, frame_bytes, raw_bytes, frames


@dataclass(frozen=True)
class FrameTable:
    """One compressed entry's frames.

    Attributes:
        planes: byte planes per element (the dtype's itemsize).
        frame_bytes: raw bytes per frame (a multiple of `planes`; the last
            frame holds the rest).
        raw_bytes: the tensor's bytes (``sum`` of the frames' raw sizes).
        words: uint32 array of shape (frames, 1 + planes): per frame the
            raw CRC32C, then one word per plane.
        offsets: int64 array of frames + 1 stored offsets (relative to the
            entry's first byte): frame f is ``[offsets[f], offsets[f+1])``.
    """

    planes: int
    frame_bytes: int
    raw_bytes: int
    words: np.ndarray
    offsets: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.words.shape[0])

    @property
    def stored_bytes(self) -> int:
        return int(self.offsets[-1])

    def raw_range(self, frame: int) -> range:
        """Raw bytes ``[start, stop)`` of the tensor that `frame` holds."""
        start = frame * self.frame_bytes
        return range(start, min(start + self.frame_bytes, self.raw_bytes))


def zstd_bound(n: np.ndarray) -> np.ndarray:
    """ZSTD_COMPRESSBOUND of each size in `n`: no zstd frame of n bytes of
    content is larger (a table claiming more is damaged)."""
    n = n.astype(np.int64)
    small = np.where(n < (128 << 10), ((128 << 10) - n) >> 11, 0)
    return n + (n >> 8) + small


def encode(entries: Mapping[bytes, FrameTable]) -> np.ndarray:
    """The table tensor for `entries` (entry key -> its frames)."""
    parts = [_MAGIC, struct.pack("<I", len(entries))]
    for key in sorted(entries):
        t = entries[key]
        parts.append(struct.pack("<I", len(key)))
        parts.append(key)
        parts.append(_ENTRY_HEAD.pack(CODEC_ZSTD_PLANES, t.planes, 0, t.frame_bytes, t.raw_bytes, t.frames))
        parts.append(np.ascontiguousarray(t.words, dtype="<u4").tobytes())
    return np.frombuffer(b"".join(parts), dtype=np.uint8)


def decode(table: np.ndarray, prefix: str) -> Dict[bytes, FrameTable]:
    """{entry key: FrameTable} of a table read from checkpoint `prefix`.

    Checks the table's own consistency: its layout, a known codec, 1 to
    :data:`MAX_PLANES` planes, ``frame_bytes`` a positive multiple of the
    planes up to :data:`MAX_FRAME_BYTES`, ``raw_bytes`` positive and a
    multiple of the planes, the frame count matching them, raw planes of
    exactly their raw size, compressed planes of 1 byte up to zstd's bound.
    Whether each entry fits the index is checked by the caller.

    Raises:
        DataLossError: naming the checkpoint and the table, on any violation.
    """
    data = np.asarray(table, dtype=np.uint8).tobytes()

    def bad(why: str) -> DataLossError:
        return DataLossError(f"checkpoint '{prefix}': its frame table '{FRAMES_KEY}' is damaged ({why})")

    if len(data) < 8 or data[:4] != _MAGIC:
        raise bad("no header")
    (count,) = struct.unpack_from("<I", data, 4)
    pos = 8
    out: Dict[bytes, FrameTable] = {}
    last_key = None
    for _ in range(count):
        if pos + 4 > len(data):
            raise bad("truncated")
        (klen,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if pos + klen + _ENTRY_HEAD.size > len(data):
            raise bad("truncated")
        key = data[pos : pos + klen]
        pos += klen
        name = key.decode("utf-8", "backslashreplace")
        if last_key is not None and key <= last_key:
            raise bad(f"entry '{name}' is out of order or repeated")
        last_key = key
        codec, planes, zero, frame_bytes, raw_bytes, frames = _ENTRY_HEAD.unpack_from(data, pos)
        pos += _ENTRY_HEAD.size
        where = f"entry '{name}'"
        if codec != CODEC_ZSTD_PLANES or zero != 0:
            raise bad(f"{where} has unknown codec {codec}")
        if not 1 <= planes <= MAX_PLANES:
            raise bad(f"{where} has {planes} byte planes")
        if not 0 < frame_bytes <= MAX_FRAME_BYTES or frame_bytes % planes:
            raise bad(f"{where} has frames of {frame_bytes} bytes")
        if raw_bytes <= 0 or raw_bytes % planes:
            raise bad(f"{where} holds {raw_bytes} raw bytes")
        if frames != -(-raw_bytes // frame_bytes):
            raise bad(f"{where} lists {frames} frames for {raw_bytes} bytes in frames of {frame_bytes}")
        nwords = frames * (1 + planes)
        if pos + 4 * nwords > len(data):
            raise bad("truncated")  # checked before the words are allocated
        words = np.frombuffer(data, dtype="<u4", count=nwords, offset=pos).reshape(frames, 1 + planes)
        pos += 4 * nwords
        plane_words = words[:, 1:]
        raw = (plane_words & RAW_PLANE) != 0
        sizes = (plane_words & (RAW_PLANE - 1)).astype(np.int64)
        plane_raw = np.full(frames, frame_bytes // planes, dtype=np.int64)
        plane_raw[-1] = (raw_bytes - (frames - 1) * frame_bytes) // planes
        plane_raw = plane_raw[:, None]
        if np.any(raw & (sizes != plane_raw)):
            raise bad(f"{where} has a raw plane whose size is not its raw size")
        if np.any(~raw & ((sizes < 1) | (sizes > zstd_bound(plane_raw)))):
            raise bad(f"{where} has a compressed plane of an impossible size")
        offsets = np.zeros(frames + 1, dtype=np.int64)
        np.cumsum(sizes.sum(axis=1), out=offsets[1:])
        out[key] = FrameTable(planes, frame_bytes, raw_bytes, words.astype(np.uint32), offsets)
    if pos != len(data):
        raise bad("trailing bytes")
    return out


def plane_layout(table: FrameTable, frame: int) -> List[Tuple[int, int, bool]]:
    """[(stored offset within the frame, stored size, raw?)] of each plane of `frame`."""
    words = table.words[frame, 1:]
    out, pos = [], 0
    for w in words.tolist():
        size = w & (RAW_PLANE - 1)
        out.append((pos, size, bool(w & RAW_PLANE)))
        pos += size
    return out
