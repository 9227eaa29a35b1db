"""A small LevelDB-table and protobuf-wire codec for index files, written to
*mutate* them: blocks, handles, varints (also non-canonical ones) and proto
fields can be rebuilt with fresh CRCs, so damage reaches the parsers behind
the checksums. Shared by tests/test_fuzz.py and fuzz/fuzz_index.py; it is a
test tool, not part of fastckpt.
"""

from __future__ import annotations

import struct
from typing import Callable, List, Optional, Tuple

import google_crc32c

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48


def masked_crc(data: bytes) -> int:
    """TF's masked CRC32C: ((c >> 15) | (c << 17)) + 0xa282ead8 mod 2^32."""
    c = google_crc32c.value(bytes(data))
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def put_varint(v: int, min_len: int = 1) -> bytes:
    """LEB128; min_len pads with redundant continuation bytes (non-canonical, still valid)."""
    v &= 2**64 - 1
    out = bytearray()
    while v >= 0x80 or len(out) + 1 < min_len:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def get_varint(buf: bytes, pos: int, limit: Optional[int] = None) -> Tuple[int, int]:
    limit = len(buf) if limit is None else limit
    result = shift = 0
    while pos < limit and shift <= 63:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
    raise ValueError("bad varint")


def block_entries(block: bytes, with_positions: bool = False):
    """[(key, value)] of one block (and the offsets of each entry's three header varints)."""
    n = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * n
    pos, key, out, positions = 0, b"", [], []
    while pos < limit:
        start = pos
        shared, pos = get_varint(block, pos, limit)
        p1 = pos
        non_shared, pos = get_varint(block, pos, limit)
        p2 = pos
        vlen, pos = get_varint(block, pos, limit)
        positions.append((start, p1, p2))
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        out.append((key, block[pos : pos + vlen]))
        pos += vlen
    return (out, positions) if with_positions else out


def build_block(entries: List[Tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    buf, restarts, last = bytearray(), [], b""
    for i, (k, v) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(buf))
        else:
            while shared < min(len(k), len(last)) and k[shared] == last[shared]:
                shared += 1
        buf += put_varint(shared) + put_varint(len(k) - shared) + put_varint(len(v)) + k[shared:] + v
        last = k
    for r in restarts or [0]:
        buf += struct.pack("<I", r)
    buf += struct.pack("<I", len(restarts or [0]))
    return bytes(buf)


def _block_with_trailer(contents: bytes, block_type: int = 0) -> bytes:
    t = bytes([block_type])
    return contents + t + struct.pack("<I", masked_crc(contents + t))


def _footer(meta: Tuple[int, int], index: Tuple[int, int]) -> bytes:
    f = put_varint(meta[0]) + put_varint(meta[1]) + put_varint(index[0]) + put_varint(index[1])
    return f.ljust(FOOTER_SIZE - 8, b"\0") + struct.pack("<Q", TABLE_MAGIC)


class Table:
    """An index file as data blocks + index keys + meta block; serializes with fresh CRCs."""

    def __init__(self, data_blocks: List[bytes], index_keys: List[bytes], meta: bytes) -> None:
        self.data_blocks = list(data_blocks)
        self.index_keys = list(index_keys)
        self.meta = meta

    @classmethod
    def parse(cls, data: bytes) -> "Table":
        footer = data[-FOOTER_SIZE:]
        moff, p = get_varint(footer, 0)
        msz, p = get_varint(footer, p)
        ioff, p = get_varint(footer, p)
        isz, _ = get_varint(footer, p)
        blocks, keys = [], []
        for key, handle in block_entries(data[ioff : ioff + isz]):
            off, q = get_varint(handle, 0)
            sz, _ = get_varint(handle, q)
            blocks.append(data[off : off + sz])
            keys.append(key)
        return cls(blocks, keys, data[moff : moff + msz])

    @classmethod
    def from_entries(cls, entries: List[Tuple[bytes, bytes]], per_block: int = 4, restart_interval: int = 2) -> "Table":
        blocks, keys = [], []
        for i in range(0, len(entries), per_block):
            chunk = entries[i : i + per_block]
            blocks.append(build_block(chunk, restart_interval))
            keys.append(chunk[-1][0] + b"\xff")  # >= last key of the block, < next block's keys
        return cls(blocks, keys, build_block([]))

    def entries(self) -> List[Tuple[bytes, bytes]]:
        return [e for b in self.data_blocks for e in block_entries(b)]

    def layout(
        self,
        handle_override: Optional[Callable[[int, Tuple[int, int]], Tuple[int, int]]] = None,
        block_types: Optional[dict] = None,
    ):
        """(file bytes without index/footer, data handles, meta handle)."""
        out, handles = bytearray(), []
        for i, b in enumerate(self.data_blocks):
            handles.append((len(out), len(b)))
            out += _block_with_trailer(b, (block_types or {}).get(i, 0))
        meta = (len(out), len(self.meta))
        out += _block_with_trailer(self.meta)
        if handle_override:
            handles = [handle_override(i, h) for i, h in enumerate(handles)]
        return out, handles, meta

    def index_block(self, handles) -> bytes:
        return build_block([(k, put_varint(o) + put_varint(s)) for k, (o, s) in zip(self.index_keys, handles)], 1)

    def serialize(self, handle_override=None, index_mutator=None, footer_mutator=None, block_types=None) -> bytes:
        out, handles, meta = self.layout(handle_override, block_types)
        index = self.index_block(handles)
        if index_mutator is not None:
            index = index_mutator(index)
        ioff = len(out)
        out += _block_with_trailer(index)
        footer = _footer(meta, (ioff, len(index)))
        if footer_mutator is not None:
            footer = footer_mutator(footer)
        return bytes(out + footer)


def parse_fields(buf: bytes) -> List[Tuple[int, int, object]]:
    """Protobuf wire format -> [(field, wire type, int or bytes)]; ValueError if malformed."""
    pos, out = 0, []
    while pos < len(buf):
        tag, pos = get_varint(buf, pos)
        field, wt = tag >> 3, tag & 7
        if wt == 0:
            v, pos = get_varint(buf, pos)
        elif wt == 1:
            if pos + 8 > len(buf):
                raise ValueError("short fixed64")
            v, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wt == 2:
            n, pos = get_varint(buf, pos)
            if pos + n > len(buf):
                raise ValueError("short bytes")
            v, pos = buf[pos : pos + n], pos + n
        elif wt == 5:
            if pos + 4 > len(buf):
                raise ValueError("short fixed32")
            v, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((field, wt, v))
    return out


def encode_fields(fields) -> bytes:
    out = bytearray()
    for field, wt, v in fields:
        out += put_varint((field << 3) | wt)
        if wt == 0:
            out += put_varint(v)
        elif wt == 1:
            out += struct.pack("<Q", v & (2**64 - 1))
        elif wt == 2:
            out += put_varint(len(v)) + v
        elif wt == 5:
            out += struct.pack("<I", v & 0xFFFFFFFF)
        else:  # raw bytes for deliberately invalid wire types
            out += v
    return bytes(out)


def _fix_block(buf: bytearray, offset: int, size: int) -> bool:
    end = offset + size
    if offset < 0 or size < 0 or end + 5 > len(buf):
        return False
    buf[end + 1 : end + 5] = struct.pack("<I", masked_crc(buf[offset : end + 1]))
    return True


def fix_crcs(data: bytes) -> bytes:
    """Recomputes every reachable block trailer CRC; never raises."""
    buf = bytearray(data)
    if len(buf) < FOOTER_SIZE:
        return bytes(buf)
    footer_at = len(buf) - FOOTER_SIZE
    try:
        moff, p = get_varint(buf, footer_at, len(buf) - 8)
        msz, p = get_varint(buf, p, len(buf) - 8)
        ioff, p = get_varint(buf, p, len(buf) - 8)
        isz, p = get_varint(buf, p, len(buf) - 8)
    except ValueError:
        return bytes(buf)
    _fix_block(buf, moff, msz)
    if not _fix_block(buf, ioff, isz) or isz < 4:
        return bytes(buf)
    # Walk the index block's entries (shared, non_shared, value_len, key, handle).
    index = bytes(buf[ioff : ioff + isz])
    n = struct.unpack_from("<I", index, isz - 4)[0]
    limit = isz - 4 - 4 * n
    pos = 0
    handles = []
    try:
        while 0 <= pos < limit and len(handles) < 10000:
            _, pos = get_varint(index, pos, limit)
            non_shared, pos = get_varint(index, pos, limit)
            vlen, pos = get_varint(index, pos, limit)
            pos += non_shared
            value = index[pos : pos + vlen]
            pos += vlen
            off, q = get_varint(value, 0, len(value))
            sz, _ = get_varint(value, q, len(value))
            handles.append((off, sz))
    except ValueError:
        pass
    for off, sz in handles:
        _fix_block(buf, off, sz)
    _fix_block(buf, ioff, isz)  # data-block fixes may have overlapped the index block
    return bytes(buf)
