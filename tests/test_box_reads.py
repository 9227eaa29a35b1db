"""Box reads: any box of a stored tensor, read from only the stored bytes that
overlap it, every byte verified (``Reader.read_box``), and the chunk CRCs that
let part of an entry be verified (``Reader.set_chunk_crcs``).

Every value is compared with numpy slicing of the full tensor, byte for byte,
and every byte count with a brute-force computation: per stored piece, the
bytes from the first to the last element the box needs (found by enumerating
the box's elements), widened to whole chunks when the piece has chunk CRCs,
or the whole piece when it has none. Chunk CRCs are computed here with
``google_crc32c`` over the entry's bytes in its data file.
"""

from __future__ import annotations

import itertools
import math
import struct
import tempfile
import threading
from typing import List, Optional, Sequence, Tuple

import google_crc32c
import ml_dtypes
import numpy as np
import pytest
from checkpoint_builders import write_partitioned  # fuzz/, on sys.path (conftest)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastckpt
from fastckpt import _native
from fastckpt.format import slices as slicing

Extents = List[Tuple[int, int]]
DATA = ".data-00000-of-00001"


# -- helpers -------------------------------------------------------------------------


def entry_info(reader: _native.Reader, index: int) -> Tuple[int, int, int]:
    """(shard, offset, size) of data entry `index`."""
    _key, _dt, _shape, shard, offset, size, _crc, _slices = reader.entries()[index]
    return shard, offset, size


def entry_bytes(prefix: str, reader: _native.Reader, index: int) -> bytes:
    shard, offset, size = entry_info(reader, index)
    with open(f"{prefix}.data-{shard:05d}-of-{reader.num_shards:05d}", "rb") as f:
        f.seek(offset)
        return f.read(size)


def chunk_table(data: bytes, chunk: int) -> bytes:
    return b"".join(struct.pack("<I", google_crc32c.value(data[i : i + chunk])) for i in range(0, len(data), chunk))


def register_chunks(prefix: str, reader: _native.Reader, chunk: int) -> None:
    """Registers chunk CRCs for every fixed-size data entry of the checkpoint."""
    for index, (_key, dt, _shape, _shard, _off, _size, _crc, slices) in enumerate(reader.entries()):
        if slices is None and dt != 7:
            reader.set_chunk_crcs(index, chunk, chunk_table(entry_bytes(prefix, reader, index), chunk))


def stored_pieces(reader: _native.Reader, name: str) -> List[Tuple[int, Tuple[int, ...], Tuple[int, ...]]]:
    """[(data entry, origin, shape)] of tensor `name`: itself, or its stored slices."""
    index = reader.names()[name]
    _dt, shape, _size, slices = reader.entry(index)
    if slices is None:
        return [(index, (0,) * len(shape), tuple(shape))]
    out = []
    for extents in slices:
        origin = tuple(0 if n < 0 else s for s, n in extents)
        pshape = tuple(shape[d] if n < 0 else n for d, (s, n) in enumerate(extents))
        out.append((reader.find(slicing.encode_slice_key(name, extents)), origin, pshape))
    return out


def brute_force_bytes(pieces, box: Extents, elem: int, chunk: Optional[int]) -> int:
    """Bytes a box read takes, from the box's elements enumerated one by one."""
    total = 0
    for _entry, origin, pshape in pieces:
        lo = [max(o, s) for o, (s, _n) in zip(origin, box)]
        hi = [min(o + p, s + n) for o, p, (s, n) in zip(origin, pshape, box)]
        if any(a >= b for a, b in zip(lo, hi)):
            continue
        linear = [
            int(np.ravel_multi_index(tuple(c - o for c, o in zip(coords, origin)), pshape)) if pshape else 0
            for coords in itertools.product(*(range(a, b) for a, b in zip(lo, hi)))
        ]
        size = math.prod(pshape) * elem
        begin, end = min(linear) * elem, (max(linear) + 1) * elem
        if chunk is None:
            total += size
        else:
            total += min(size, -(-end // chunk) * chunk) - begin // chunk * chunk
    return total


def box_index(box: Extents) -> Tuple[slice, ...]:
    return tuple(slice(s, s + n) for s, n in box)


def flip_byte(path: str, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))


DTYPES = [
    np.dtype(np.float32),
    np.dtype(ml_dtypes.bfloat16),
    np.dtype(np.bool_),
    np.dtype(np.int8),
    np.dtype(np.complex128),
    np.dtype(np.float16),
    np.dtype(np.int64),
    np.dtype(np.uint16),
]


def random_values(rng: np.random.Generator, shape: Sequence[int], dtype: np.dtype) -> np.ndarray:
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    n = math.prod(shape)
    return np.frombuffer(rng.bytes(n * dtype.itemsize), dtype=dtype).reshape(shape).copy()


# -- the strided copy (box_copy.h) -------------------------------------------------


@st.composite
def copy_cases(draw):
    rank = draw(st.integers(0, 4))
    extent = [draw(st.integers(1, 5)) for _ in range(rank)]
    src_start = [draw(st.integers(0, 3)) for _ in range(rank)]
    dst_start = [draw(st.integers(0, 3)) for _ in range(rank)]
    src_shape = [s + e + draw(st.integers(0, 3)) for s, e in zip(src_start, extent)]
    dst_shape = [s + e + draw(st.integers(0, 3)) for s, e in zip(dst_start, extent)]
    elem = draw(st.sampled_from([1, 2, 4, 8, 16]))
    total = math.prod(src_shape)
    begin = draw(st.integers(0, total))
    end = draw(st.integers(begin, total))
    return src_shape, src_start, dst_shape, dst_start, extent, elem, begin, end


def expected_copy(src, src_shape, src_start, dst, dst_shape, dst_start, extent, begin, end):
    """The copy computed element by element."""
    out = dst.copy()
    for rel in itertools.product(*(range(e) for e in extent)):
        s = tuple(a + r for a, r in zip(src_start, rel))
        t = tuple(a + r for a, r in zip(dst_start, rel))
        lin = int(np.ravel_multi_index(s, src_shape)) if src_shape else 0
        if begin <= lin < end:
            out[t] = src[s]
    return out


@given(copy_cases(), st.integers(0, 2**32 - 1))
@settings(max_examples=400, deadline=None)
def test_copy_box_matches_element_by_element(case, seed):
    src_shape, src_start, dst_shape, dst_start, extent, elem, begin, end = case
    rng = np.random.default_rng(seed)
    dtype = np.dtype(f"V{elem}")
    src = np.frombuffer(rng.bytes(math.prod(src_shape) * elem), dtype=dtype).reshape(src_shape)
    dst = np.frombuffer(rng.bytes(math.prod(dst_shape) * elem), dtype=dtype).reshape(dst_shape).copy()
    want = expected_copy(src, src_shape, src_start, dst, dst_shape, dst_start, extent, begin, end)
    _native.copy_box(
        src.reshape(-1).view(np.uint8),
        src_shape,
        src_start,
        dst.reshape(-1).view(np.uint8),
        dst_shape,
        dst_start,
        extent,
        elem,
        begin,
        end,
    )
    assert dst.tobytes() == want.tobytes()


def test_copy_box_in_windows_equals_one_copy():
    """Windows of any size, one after the other, copy exactly what one copy does
    (the way read_box streams a piece through its scratch buffer)."""
    rng = np.random.default_rng(7)
    src = rng.integers(0, 2**31, size=(7, 9, 11), dtype=np.int32)
    extent, src_start, dst_start, dst_shape = [3, 5, 4], [2, 3, 6], [1, 0, 2], [5, 6, 8]
    whole = np.zeros(dst_shape, np.int32)
    _native.copy_box(src, src.shape, src_start, whole, dst_shape, dst_start, extent, 4, 0, src.size)
    assert np.array_equal(whole[1:4, 0:5, 2:6], src[2:5, 3:8, 6:10])
    for window in (1, 2, 5, 11, 13, 99, 100, 693):
        pieces = np.zeros(dst_shape, np.int32)
        for begin in range(0, src.size, window):
            _native.copy_box(
                src, src.shape, src_start, pieces, dst_shape, dst_start, extent, 4, begin, min(src.size, begin + window)
            )
        assert np.array_equal(pieces, whole), window


@pytest.mark.parametrize(
    "args, problem",
    [
        (dict(extent=[0, 2]), "the box must be non-empty and lie in both arrays"),
        (dict(src_start=[3, 0]), "the box must be non-empty and lie in both arrays"),
        (dict(dst_shape=[4]), "ranks differ, or elem is 0"),
        (dict(end=13), "buffer sizes do not match the shapes, or [begin, end) is outside the source"),
        (dict(src_start=[-1, 0]), "src_start has a negative value"),
    ],
)
def test_copy_box_checks_its_arguments(args, problem):
    src, dst = np.zeros(12, np.uint8), np.zeros(12, np.uint8)
    kw = dict(
        src=src,
        src_shape=[4, 3],
        src_start=[0, 0],
        dst=dst,
        dst_shape=[4, 3],
        dst_start=[0, 0],
        extent=[2, 2],
        elem=1,
        begin=0,
        end=12,
    )
    kw.update(args)
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        _native.copy_box(**kw)
    assert str(e.value) == f"copy_box: {problem}"


# -- read_box against numpy: unpartitioned, grids, irregular slices ---------------------


def grid_parts(draw, shape):
    """A grid: per dimension, random cut points (a whole dimension sometimes written as (0, -1))."""
    per_dim = []
    for n in shape:
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=3))) if n > 1 else []
        bounds = [0] + cuts + [n]
        if len(bounds) == 2 and draw(st.booleans()):
            per_dim.append([(0, -1)])
        else:
            per_dim.append([(a, b - a) for a, b in zip(bounds, bounds[1:])])
    return [list(p) for p in itertools.product(*per_dim)]


def irregular_parts(draw, shape):
    """Guillotine cuts: each box split along a random dimension at a random point,
    recursively, so that the slices do not form a grid."""
    out = []
    stack = [[(0, n) for n in shape]]
    while stack:
        box = stack.pop()
        splittable = [d for d, (_s, n) in enumerate(box) if n > 1]
        if not splittable or len(out) + len(stack) > 12 or not draw(st.booleans()):
            out.append(box)
            continue
        d = draw(st.sampled_from(splittable))
        s, n = box[d]
        cut = draw(st.integers(1, n - 1))
        stack.append(box[:d] + [(s, cut)] + box[d + 1 :])
        stack.append(box[:d] + [(s + cut, n - cut)] + box[d + 1 :])
    return out


@st.composite
def box_of(draw, shape):
    box = []
    for n in shape:
        start = draw(st.integers(0, n))
        box.append((start, draw(st.integers(0, n - start))))
    return box


@st.composite
def stored_tensors(draw):
    layout = draw(st.sampled_from(["whole", "grid", "irregular"]))
    rank = draw(st.integers(0 if layout == "whole" else 1, 4))
    top = {0: 1, 1: 3000, 2: 90, 3: 24, 4: 12}[rank]
    low = 0 if layout == "whole" else 1
    # Large dimensions half of the time, so that most tensors span several chunks.
    shape = [draw(st.one_of(st.integers(low, 4), st.integers(top // 2, top))) for _ in range(rank)]
    dtype = draw(st.sampled_from(DTYPES))
    parts = None
    if layout == "grid":
        parts = grid_parts(draw, shape)
    elif layout == "irregular":
        parts = irregular_parts(draw, shape)
    boxes = draw(st.lists(box_of(shape), min_size=1, max_size=6))
    # Single elements and the whole tensor, always.
    if all(shape):
        boxes.append([(draw(st.integers(0, n - 1)), 1) for n in shape])
    boxes.append([(0, n) for n in shape])
    chunk = draw(st.sampled_from([None, 4096, 8192]))
    task_bytes = draw(st.sampled_from([0, 4096, 12288]))
    threads = draw(st.sampled_from([1, 3]))
    return shape, dtype, parts, boxes, chunk, task_bytes, threads


@given(stored_tensors(), st.integers(0, 2**32 - 1))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_read_box_equals_numpy_slicing(case, seed):
    shape, dtype, parts, boxes, chunk, task_bytes, threads = case
    full = random_values(np.random.default_rng(seed), shape, dtype)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = f"{tmp}/ck"
        if parts is None:
            fastckpt.save({"t": full}, prefix, durable=False)
        else:
            write_partitioned(prefix, "t", full, parts)
        reader = _native.Reader(prefix)
        try:
            if chunk is not None:
                register_chunks(prefix, reader, chunk)
            index = reader.names()["t"]
            pieces = stored_pieces(reader, "t")
            for box in boxes:
                out = np.empty([n for _s, n in box], dtype)
                got = reader.read_box(index, box, out, threads=threads, task_bytes=task_bytes)
                assert out.tobytes() == full[box_index(box)].tobytes(), box
                want = (
                    0 if math.prod(n for _s, n in box) == 0 else brute_force_bytes(pieces, box, dtype.itemsize, chunk)
                )
                assert got == want, box
        finally:
            reader.close()


# -- bytes read: exact chunk-aligned ranges ------------------------------------------

W_SHAPE = (1024, 256)  # float32: rows of 1 KiB, 4 rows per 4 KiB chunk, 1 MiB in all


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """'w' [1024, 256] float32 (after a small 'a', so it does not start at file
    offset 0), 's' a string tensor, and 'p', the same values as 'w' stored in
    two row slices [0, 512) and [512, 1024)."""
    prefix = str(tmp_path_factory.mktemp("box") / "ck")
    full = np.arange(math.prod(W_SHAPE), dtype=np.float32).reshape(W_SHAPE)
    write_partitioned(
        prefix,
        "p",
        full,
        [[(0, 512), (0, -1)], [(512, 512), (0, -1)]],
        extra={"a": np.arange(3, dtype=np.int64), "w": full, "s": np.array([b"x", b"yy"], dtype=object)},
    )
    return prefix, full


def test_bytes_read_row_column_and_element_boxes(big):
    prefix, full = big
    reader = _native.Reader(prefix)
    index = reader.names()["w"]
    pieces = stored_pieces(reader, "w")
    boxes = {
        "rows 100..109": [(100, 10), (0, 256)],
        "rows 1000..1023": [(1000, 24), (0, 256)],
        "columns 10..19": [(0, 1024), (10, 10)],
        "columns 10..19 of rows 8..15": [(8, 8), (10, 10)],
        "one element": [(517, 1), (3, 1)],
        "the last element": [(1023, 1), (255, 1)],
    }
    without = {
        name: reader.read_box(index, box, np.empty([n for _s, n in box], np.float32)) for name, box in boxes.items()
    }
    assert set(without.values()) == {1 << 20}  # the whole tensor, to check its CRC
    register_chunks(prefix, reader, 4096)
    got = {}
    for name, box in boxes.items():
        out = np.empty([n for _s, n in box], np.float32)
        got[name] = reader.read_box(index, box, out)
        assert np.array_equal(out, full[box_index(box)])
    assert got == {name: brute_force_bytes(pieces, box, 4, 4096) for name, box in boxes.items()}
    assert got == {
        "rows 100..109": 12288,  # bytes [102400, 112640) widened to [102400, 114688)
        "rows 1000..1023": 24576,  # the last 6 chunks
        "columns 10..19": (1 << 20),  # the first to the last row: every chunk
        "columns 10..19 of rows 8..15": 8192,
        "one element": 4096,
        "the last element": 4096,
    }
    reader.close()


def test_bytes_read_of_a_partitioned_tensor(big):
    prefix, full = big
    reader = _native.Reader(prefix)
    index = reader.names()["p"]
    box = [(510, 4), (0, 256)]  # two rows in each slice
    out = np.empty((4, 256), np.float32)
    assert reader.read_box(index, box, out) == 2 * (512 << 10)  # both slices whole
    assert np.array_equal(out, full[510:514])
    register_chunks(prefix, reader, 4096)
    out[...] = 0
    assert reader.read_box(index, box, out) == 2 * 4096  # a chunk of each
    assert np.array_equal(out, full[510:514])
    out = np.empty((1, 1), np.float32)
    assert reader.read_box(index, [(700, 1), (9, 1)], out) == 4096
    assert out[0, 0] == full[700, 9]
    reader.close()


def test_empty_boxes_read_nothing(big):
    prefix, _full = big
    reader = _native.Reader(prefix)
    for name in ("w", "p"):
        for box in ([(5, 0), (0, 256)], [(0, 1024), (256, 0)], [(1024, 0), (0, 0)]):
            out = np.empty([n for _s, n in box], np.float32)
            assert reader.read_box(reader.names()[name], box, out) == 0
    reader.close()


def test_chunks_larger_than_a_task_and_larger_than_the_entry(big):
    """A chunk read by several tasks is checked from their joined CRCs; a chunk
    size beyond the entry's makes one chunk of all of it."""
    prefix, full = big
    reader = _native.Reader(prefix)
    index = reader.names()["w"]
    data = entry_bytes(prefix, reader, index)
    reader.set_chunk_crcs(index, 65536, chunk_table(data, 65536))
    out = np.empty((3, 256), np.float32)
    assert reader.read_box(index, [(70, 3), (0, 256)], out, task_bytes=4096) == 65536
    assert np.array_equal(out, full[70:73])
    reader.set_chunk_crcs(index, 4 << 20, chunk_table(data, 4 << 20))
    assert reader.read_box(index, [(70, 3), (0, 256)], out, task_bytes=4096) == 1 << 20
    assert np.array_equal(out, full[70:73])
    reader.close()


# -- damage ------------------------------------------------------------------------------


@pytest.fixture
def damaged(tmp_path):
    """A fresh copy of 'w' (after 'a') to damage: (prefix, full, reader, index, file offset of 'w')."""
    prefix = str(tmp_path / "ck")
    full = np.arange(math.prod(W_SHAPE), dtype=np.float32).reshape(W_SHAPE)
    fastckpt.save({"a": np.arange(3, dtype=np.int64), "w": full}, prefix, durable=False, num_shards=1)
    reader = _native.Reader(prefix)
    index = reader.names()["w"]
    _shard, offset, _size = entry_info(reader, index)
    assert offset > 0
    yield prefix, full, reader, index, offset
    reader.close()


def test_flip_in_a_needed_chunk_names_the_tensor_file_and_byte_range(damaged):
    prefix, _full, reader, index, offset = damaged
    register_chunks(prefix, reader, 4096)
    flip_byte(prefix + DATA, offset + 26 * 4096 + 77)  # chunk 26: rows 104..107
    out = np.empty((10, 256), np.float32)
    with pytest.raises(fastckpt.DataLossError) as e:
        reader.read_box(index, [(100, 10), (0, 256)], out)
    start = offset + 26 * 4096
    assert str(e.value) == (
        f"tensor 'w' in '{prefix}{DATA}': data checksum mismatch in chunk 26, "
        f"bytes [{start}, {start + 4096}) of the file (the file is corrupt)"
    )


def test_flip_in_a_chunk_the_box_does_not_touch_reads_fine(damaged):
    prefix, full, reader, index, offset = damaged
    register_chunks(prefix, reader, 4096)
    flip_byte(prefix + DATA, offset + 200 * 4096 + 5)  # rows 800..803
    out = np.empty((10, 256), np.float32)
    assert reader.read_box(index, [(100, 10), (0, 256)], out) == 12288
    assert np.array_equal(out, full[100:110])
    # The whole tensor does touch it.
    with pytest.raises(fastckpt.DataLossError, match="data checksum mismatch in chunk 200, "):
        reader.read_box(index, [(0, 1024), (0, 256)], np.empty(W_SHAPE, np.float32))


@pytest.mark.parametrize("task_bytes", [0, 4096])
def test_flip_without_chunk_crcs_fails_the_whole_piece_check(damaged, task_bytes):
    prefix, _full, reader, index, offset = damaged
    flip_byte(prefix + DATA, offset + 200 * 4096 + 5)
    out = np.empty((10, 256), np.float32)
    with pytest.raises(fastckpt.DataLossError) as e:
        reader.read_box(index, [(100, 10), (0, 256)], out, task_bytes=task_bytes)
    assert str(e.value) == f"tensor 'w' in '{prefix}{DATA}': data checksum mismatch (the file is corrupt)"


def test_flip_in_a_chunk_read_by_several_tasks(damaged):
    prefix, _full, reader, index, offset = damaged
    reader.set_chunk_crcs(index, 65536, chunk_table(entry_bytes(prefix, reader, index), 65536))
    flip_byte(prefix + DATA, offset + 65536 + 60000)  # chunk 1, in its last task of 4096 bytes
    out = np.empty((1, 256), np.float32)
    with pytest.raises(fastckpt.DataLossError) as e:
        reader.read_box(index, [(64, 1), (0, 256)], out, task_bytes=4096)
    assert str(e.value) == (
        f"tensor 'w' in '{prefix}{DATA}': data checksum mismatch in chunk 1, bytes "
        f"[{offset + 65536}, {offset + 131072}) of the file (the file is corrupt)"
    )


def test_flip_in_a_stored_slice_names_the_slice(tmp_path):
    prefix = str(tmp_path / "ck")
    full = np.arange(math.prod(W_SHAPE), dtype=np.float32).reshape(W_SHAPE)
    write_partitioned(prefix, "p", full, [[(0, 512), (0, -1)], [(512, 512), (0, -1)]])
    reader = _native.Reader(prefix)
    register_chunks(prefix, reader, 4096)
    second = reader.find(slicing.encode_slice_key("p", [(512, 512), (0, -1)]))
    _shard, offset, _size = entry_info(reader, second)
    flip_byte(prefix + DATA, offset + 3 * 4096)  # rows 524..527
    out = np.empty((4, 256), np.float32)
    assert reader.read_box(reader.names()["p"], [(510, 4), (0, 256)], out) == 8192
    with pytest.raises(fastckpt.DataLossError) as e:
        reader.read_box(reader.names()["p"], [(520, 8), (0, 256)], np.empty((8, 256), np.float32))
    assert str(e.value) == (
        f"slice '512,512:-' of tensor 'p' in '{prefix}{DATA}': data checksum mismatch "
        f"in chunk 3, bytes [{offset + 12288}, {offset + 16384}) of the file "
        "(the file is corrupt)"
    )
    reader.close()


# -- set_chunk_crcs: what a table must be --------------------------------------------


def test_a_table_that_does_not_combine_to_the_entry_crc_is_refused(damaged):
    prefix, _full, reader, index, _offset = damaged
    data = entry_bytes(prefix, reader, index)
    table = bytearray(chunk_table(data, 4096))
    table[4 * 7] ^= 1
    crcs = struct.unpack(f"<{len(table) // 4}I", table)
    combined = crcs[0]
    for c in crcs[1:]:
        combined = _native.crc32c_combine(combined, c, 4096)
    with pytest.raises(fastckpt.DataLossError) as e:
        reader.set_chunk_crcs(index, 4096, bytes(table))
    assert str(e.value) == (
        f"tensor 'w' in '{prefix}{DATA}': its chunk CRC table (256 chunks of 4096 bytes) "
        f"combines to CRC32C {combined:08x}, the index stores {google_crc32c.value(data):08x}"
    )


def test_a_table_of_damaged_data_cannot_vouch_for_it(damaged):
    """Chunk CRCs computed over damaged bytes do not combine to the index's CRC,
    so they are refused, and the damaged bytes still fail their check."""
    prefix, _full, reader, index, offset = damaged
    flip_byte(prefix + DATA, offset + 26 * 4096)
    with pytest.raises(fastckpt.DataLossError, match="its chunk CRC table .* combines to CRC32C"):
        reader.set_chunk_crcs(index, 4096, chunk_table(entry_bytes(prefix, reader, index), 4096))
    with pytest.raises(fastckpt.DataLossError, match="data checksum mismatch \\(the file is corrupt\\)"):
        reader.read_box(index, [(104, 1), (0, 256)], np.empty((1, 256), np.float32))


@pytest.mark.parametrize("nbytes", [0, 1020, 1023, 1028])
def test_a_table_of_the_wrong_length_is_data_loss(damaged, nbytes):
    prefix, _full, reader, index, _offset = damaged
    with pytest.raises(fastckpt.DataLossError) as e:
        reader.set_chunk_crcs(index, 4096, bytes(nbytes))
    assert str(e.value) == (
        f"tensor 'w' in '{prefix}{DATA}': its chunk CRC table has {nbytes} bytes; "
        "1048576 bytes in chunks of 4096 need 256 CRCs (1024 bytes)"
    )


@pytest.mark.parametrize("chunk", [0, -4096, 1000, 4097, 6144])
def test_chunk_sizes_must_be_positive_multiples_of_4096(damaged, chunk):
    prefix, _full, reader, index, _offset = damaged
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        reader.set_chunk_crcs(index, chunk, bytes(1024))
    assert str(e.value) == (
        f"tensor 'w' in '{prefix}{DATA}': chunk size {chunk} is not a positive multiple of 4096 bytes"
    )


def test_set_chunk_crcs_refuses_partitioned_string_and_missing_entries(big):
    prefix, _full = big
    reader = _native.Reader(prefix)
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        reader.set_chunk_crcs(reader.names()["p"], 4096, b"")
    assert str(e.value) == (
        f"tensor 'p' in '{prefix}.index' is partitioned: it holds no bytes; register "
        "the chunk CRCs of its slices' entries"
    )
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        reader.set_chunk_crcs(reader.names()["s"], 4096, b"\0\0\0\0")
    assert str(e.value) == (
        f"tensor 's' in '{prefix}{DATA}' has DataType 7, not a fixed-size dtype: chunk "
        "CRCs are for tensors read in part, and these are read whole"
    )
    n = len(reader.entries())
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        reader.set_chunk_crcs(n, 4096, b"")
    assert str(e.value) == f"no entry {n} in checkpoint '{prefix}' (it has {n})"
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        reader.set_chunk_crcs(reader.names()["w"], 4096, 5)
    assert str(e.value) == f"tensor 'w' in '{prefix}{DATA}': chunk CRCs must be a bytes-like object, not int"
    reader.close()


def test_a_zero_size_tensor_takes_an_empty_table(tmp_path):
    prefix = str(tmp_path / "ck")
    fastckpt.save({"z": np.zeros((0, 4), np.float32)}, prefix, durable=False)
    reader = _native.Reader(prefix)
    index = reader.names()["z"]
    reader.set_chunk_crcs(index, 4096, b"")
    assert reader.read_box(index, [(0, 0), (0, 4)], np.empty((0, 4), np.float32)) == 0
    reader.close()


# -- read_box: bad arguments -------------------------------------------------------------


def test_read_box_argument_errors_name_the_tensor(big):
    prefix, full = big
    reader = _native.Reader(prefix)
    w, s = reader.names()["w"], reader.names()["s"]
    what = f"tensor 'w' in '{prefix}{DATA}'"
    f32 = np.empty((2, 3), np.float32)
    cases = [
        (
            w,
            [(0, -1), (0, 256)],
            np.empty(W_SHAPE, np.float32),
            f"{what}: box '-:0,256' has length -1 in dimension 0; give a whole dimension as (0, 1024)",
        ),
        (
            w,
            [(1020, 5), (0, 3)],
            np.empty((5, 3), np.float32),
            f"{what}: box '1020,5:0,3' lies outside its shape [1024, 256]",
        ),
        (w, [(-1, 2), (0, 3)], f32, f"{what}: box '-1,2:0,3' lies outside its shape [1024, 256]"),
        (w, [(0, 2)], f32, f"{what}: box '0,2' has rank 1, the tensor [1024, 256] rank 2"),
        (
            w,
            [(0, 2), (0, 4)],
            f32,
            f"{what}: the destination has 24 bytes; box '0,2:0,4' holds 32 (8 elements of 4 bytes)",
        ),
        (
            w,
            [(0, 2), (0, 3)],
            np.empty((2, 3), np.float64),
            f"{what}: the destination's items are 8 bytes each, the tensor's elements 4",
        ),
        (
            w,
            [(0, 2), (0, 3)],
            bytes(24),
            f"{what}: the destination must be a writable C-contiguous buffer; a bytes is not",
        ),
        (
            w,
            [(0, 2), (0, 3)],
            np.empty((2, 6), np.float32)[:, ::2],
            f"{what}: the destination must be a writable C-contiguous buffer; a numpy.ndarray is not",
        ),
        (w, 7, f32, f"{what}: a box is a list of (start, length) pairs, not int"),
        (w, "0,2:0,3", f32, f"{what}: a box is a list of (start, length) pairs, not str"),
        (w, [(0, 2), (0, 3, 1)], f32, f"{what}: box item 1 is not a (start, length) pair of ints"),
        (w, [(0, 2), (True, 3)], f32, f"{what}: box item 1 is not a (start, length) pair of ints"),
        (w, [(0, 2), (0.0, 3)], f32, f"{what}: box item 1 is not a (start, length) pair of ints"),
        (w, [(0, 2), 3], f32, f"{what}: box item 1 is not a (start, length) pair of ints"),
        (w, [(0, 2), (2**63, 3)], f32, f"{what}: box item 1 is out of int64 range"),
        (
            s,
            [(0, 1)],
            np.empty(1, object),
            f"tensor 's' in '{prefix}{DATA}' has DataType 7, not a fixed-size dtype; box reads take "
            "fixed-size tensors (read string tensors whole)",
        ),
    ]
    for entry, box, dest, message in cases:
        with pytest.raises(fastckpt.InvalidArgumentError) as e:
            reader.read_box(entry, box, dest)
        assert str(e.value) == message
    out = np.empty((2, 3), np.float32)
    assert reader.read_box(w, ((np.int64(4), np.int32(2)), [np.uint8(5), 3]), out) == 1 << 20
    assert np.array_equal(out, full[4:6, 5:8])
    readonly = np.empty((2, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(fastckpt.InvalidArgumentError, match="writable C-contiguous buffer"):
        reader.read_box(w, [(0, 2), (0, 3)], readonly)
    reader.close()


def test_read_box_of_slices_that_do_not_cover_the_box(tmp_path):
    prefix = str(tmp_path / "ck")
    full = np.arange(40, dtype=np.float32).reshape(8, 5)
    write_partitioned(prefix, "p", full, [[(0, 4), (0, -1)], [(4, 4), (0, -1)]], listed=[[(0, 4), (0, -1)]])
    reader = _native.Reader(prefix)
    out = np.empty((2, 5), np.float32)
    assert reader.read_box(reader.names()["p"], [(1, 2), (0, 5)], out) == 80
    assert np.array_equal(out, full[1:3])
    with pytest.raises(fastckpt.DataLossError) as e:
        reader.read_box(reader.names()["p"], [(3, 2), (0, 5)], out)
    assert str(e.value) == (
        f"checkpoint '{prefix}.index' does not have sufficient slices for tensor 'p' "
        "region '3,2:0,5' (its 1 stored slices hold 5 of its 10 elements)"
    )
    reader.close()


def test_read_box_of_a_missing_data_file(tmp_path):
    prefix = str(tmp_path / "ck")
    fastckpt.save({"w": np.ones((4, 4), np.float32)}, prefix, durable=False)
    import os

    os.remove(prefix + DATA)
    reader = _native.Reader(prefix)
    with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
        reader.read_box(reader.names()["w"], [(0, 0), (0, 4)], np.empty((0, 4), np.float32))
    assert e.value.filename == prefix + DATA
    reader.close()


# -- get_slice reads only what it needs ----------------------------------------------------


class Recording:
    """A native reader whose read_box calls are counted."""

    def __init__(self, native: _native.Reader) -> None:
        self._native = native
        self.counts: List[int] = []

    def read_box(self, *args, **kwargs) -> int:
        n = self._native.read_box(*args, **kwargs)
        self.counts.append(n)
        return n

    def __getattr__(self, name):
        return getattr(self._native, name)


def test_get_slice_reads_only_the_chunks_it_needs(big):
    prefix, full = big
    with fastckpt.load_checkpoint(prefix) as reader:
        rec = reader._native = Recording(reader._native)
        assert np.array_equal(reader.get_slice("w", np.s_[100:110]), full[100:110])
        assert np.array_equal(reader.get_slice("p", "600,1:3,1"), full[600:601, 3:4])
        assert rec.counts == [1 << 20, 512 << 10]  # whole pieces, without chunk CRCs
        register_chunks(prefix, rec._native, 4096)
        rec.counts.clear()
        assert np.array_equal(reader.get_slice("w", np.s_[100:110]), full[100:110])
        assert np.array_equal(reader.get_slice("w", "100,10:-"), full[100:110])
        assert reader.get_slice("w", np.s_[517, 3]) == full[517, 3]
        assert np.array_equal(reader.get_slice("p", np.s_[510:514, ...]), full[510:514])
        assert np.array_equal(reader.get_slice("p", "600,1:3,1"), full[600:601, 3:4])
        assert np.array_equal(reader.get_tensor("p"), full)
        assert rec.counts == [12288, 12288, 4096, 8192, 4096, 1 << 20]


def test_get_slice_with_chunk_crcs_skips_damage_elsewhere(damaged):
    prefix, full, _native_reader, index, offset = damaged
    flip_byte(prefix + DATA, offset + 200 * 4096 + 5)
    with fastckpt.load_checkpoint(prefix) as reader:
        with pytest.raises(fastckpt.DataLossError, match="data checksum mismatch"):
            reader.get_slice("w", np.s_[100:110])  # the whole piece is checked
        with pytest.raises(fastckpt.DataLossError, match="combines to CRC32C"):
            register_chunks(prefix, reader._native, 4096)  # tables of the damaged bytes are refused
        # Tables of the bytes as written are not.
        reader._native.set_chunk_crcs(index, 4096, chunk_table(full.tobytes(), 4096))
        assert np.array_equal(reader.get_slice("w", np.s_[100:110]), full[100:110])
        with pytest.raises(fastckpt.DataLossError, match="data checksum mismatch in chunk 200, "):
            reader.get_slice("w", np.s_[800:801])


# -- threads -------------------------------------------------------------------------------


def test_read_box_from_many_threads_on_one_reader(big):
    prefix, full = big
    reader = _native.Reader(prefix)
    data = entry_bytes(prefix, reader, reader.names()["w"])
    register_chunks(prefix, reader, 8192)
    errors: List[BaseException] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        try:
            for i in range(25):
                name = "wp"[i % 2]
                r0 = int(rng.integers(0, 1024))
                c0 = int(rng.integers(0, 256))
                box = [(r0, int(rng.integers(0, 1024 - r0 + 1))), (c0, int(rng.integers(0, 256 - c0 + 1)))]
                out = np.empty([n for _s, n in box], np.float32)
                reader.read_box(reader.names()[name], box, out, threads=2, task_bytes=65536)
                assert np.array_equal(out, full[box_index(box)]), (name, box)
                if seed == 0:  # re-registering while others read: they use a table either way
                    reader.set_chunk_crcs(reader.names()["w"], 4096, chunk_table(data, 4096))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    reader.close()
