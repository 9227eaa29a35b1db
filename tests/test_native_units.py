"""Core pieces the package reaches only end to end, driven directly through
the test module (csrc/testing/bind_units.cc): the task planner
(pipeline/task_plan.h), the load plan's slab layout (pipeline/load_plan.h),
the staging pool (pipeline/staging_pool.h) and the index table builder and
reader (format/table_builder.h, format/table_reader.h)."""

import re

import pytest

import fastckpt
from fastckpt import _native, config
from fastckpt import _native_testing as t

# ---------------------------------------------------------------------------
# The task planner: extents are (item, shard, file_offset, size); pieces
# (item, offset, length, file_offset); tasks (shard, first, end, bytes,
# file_begin, file_end).


def test_back_to_back_ranges_batch_up_to_the_task_size():
    pieces, tasks, first, num = t.plan_tasks([(0, 0, 0, 100), (1, 0, 100, 200), (2, 0, 300, 50)], 3, 300)
    assert pieces == [(0, 0, 100, 0), (1, 0, 200, 100), (2, 0, 50, 300)]
    assert tasks == [(0, 0, 2, 300, 0, 300), (0, 2, 3, 50, 300, 350)]
    assert (first, num) == ([0, 1, 2], [1, 1, 1])


def test_a_large_range_is_cut_into_pieces_of_their_own_tasks():
    pieces, tasks, first, num = t.plan_tasks([(0, 1, 1000, 25)], 1, 10)
    assert pieces == [(0, 0, 10, 1000), (0, 10, 10, 1010), (0, 20, 5, 1020)]
    assert tasks == [(1, 0, 1, 10, 1000, 1010), (1, 1, 2, 10, 1010, 1020), (1, 2, 3, 5, 1020, 1025)]
    assert (first, num) == ([0], [3])
    # The writer cuts at chunk boundaries: pieces shorter than a task.
    pieces, tasks, _, _ = t.plan_tasks([(0, 0, 0, 25)], 1, 10, piece_bytes=8)
    assert [p[1:3] for p in pieces] == [(0, 8), (8, 8), (16, 8), (24, 1)]
    assert [task[3] for task in tasks] == [8, 8, 8, 1]


def test_a_large_range_closes_the_open_batch():
    pieces, tasks, _, _ = t.plan_tasks([(0, 0, 0, 4), (1, 0, 4, 20), (2, 0, 24, 4)], 3, 10)
    assert [p[:3] for p in pieces] == [(0, 0, 4), (1, 0, 10), (1, 10, 10), (2, 0, 4)]
    assert [(task[1], task[2]) for task in tasks] == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_gaps_and_shards():
    extents = [(0, 0, 0, 10), (1, 0, 20, 10)]
    # Back-to-back only (readers' scatter reads, the writer's gather writes).
    assert len(t.plan_tasks(extents, 2, 100)[1]) == 2
    # Verify reads across small gaps: one task spanning them.
    assert t.plan_tasks(extents, 2, 100, max_gap=10)[1] == [(0, 0, 2, 20, 0, 30)]
    assert len(t.plan_tasks(extents, 2, 100, max_gap=9)[1]) == 2
    # The span, gaps included, is what the task size bounds.
    assert len(t.plan_tasks(extents, 2, 29, max_gap=10)[1]) == 2
    # Overlapping ranges (a corrupt index) join only when gaps are allowed.
    overlapping = [(0, 0, 0, 10), (1, 0, 5, 10)]
    assert t.plan_tasks(overlapping, 2, 100, max_gap=0)[1] == [(0, 0, 2, 20, 0, 15)]
    assert len(t.plan_tasks(overlapping, 2, 100)[1]) == 2
    # Another data file never joins.
    assert len(t.plan_tasks([(0, 0, 0, 10), (1, 1, 10, 10)], 2, 100)[1]) == 2


def test_piece_count_limit():
    extents = [(i, 0, i, 1) for i in range(5)]
    tasks = t.plan_tasks(extents, 5, 100, max_pieces=2)[1]
    assert [(task[1], task[2], task[3]) for task in tasks] == [(0, 2, 2), (2, 4, 2), (4, 5, 1)]


def test_empty_and_unplanned_items():
    pieces, tasks, first, num = t.plan_tasks([(0, 0, 0, 10), (1, 0, 10, 0), (3, 0, 10, 10)], 4, 100)
    assert pieces == [(0, 0, 10, 0), (3, 0, 10, 10)]
    assert tasks == [(0, 0, 2, 20, 0, 20)]
    assert (first, num) == ([0, 1, 0, 1], [1, 0, 0, 1])
    assert t.plan_tasks([], 2, 100) == ([], [], [0, 0], [0, 0])


def test_planner_argument_errors():
    with pytest.raises(fastckpt.InvalidArgumentError, match="^plan_tasks: item 2 >= num_items$"):
        t.plan_tasks([(2, 0, 0, 1)], 2, 100)
    with pytest.raises(fastckpt.InvalidArgumentError, match="^plan_tasks: piece_bytes > task_bytes$"):
        t.plan_tasks([(0, 0, 0, 1)], 1, 100, piece_bytes=101)


def test_default_task_size_is_the_configured_default(monkeypatch):
    monkeypatch.delenv("FASTCKPT_TASK_BYTES", raising=False)
    assert _native.DEFAULT_TASK_BYTES == 16 << 20 == config.task_bytes()


# ---------------------------------------------------------------------------
# The slab layout of a load: (slab sizes, [(slab or -1, offset)]).


def test_small_tensors_pack_into_aligned_slabs():
    slabs, slots = t.layout_slabs([10, 100, 0, 64, 5000, 1], 1000, 200, 64)
    assert slabs == [192, 128]
    assert slots == [(0, 0), (0, 64), (-1, 0), (1, 0), (-1, 0), (1, 64)]


def test_slab_layout_edges():
    # Larger than a slab but below pack_below: a slab of its own.
    assert t.layout_slabs([300, 10], 1000, 200, 1) == ([300, 10], [(0, 0), (1, 0)])
    # pack_below 0: nothing is packed.
    assert t.layout_slabs([1, 2], 0, 200, 64) == ([], [(-1, 0), (-1, 0)])
    with pytest.raises(fastckpt.InvalidArgumentError, match="align must be >= 1"):
        t.layout_slabs([1], 10, 10, 0)


# ---------------------------------------------------------------------------
# The staging pool (process-wide): borrow without waiting, then release.


@pytest.fixture
def staging():
    _native.trim_staging()
    yield
    _native.trim_staging()
    config.apply_staging_settings()


def _delta(before, after):
    return {k: after[k] - before[k] for k in ("allocations", "acquisitions")}


def test_pool_capacity_bounds_buffers_and_retain_keeps_some(staging):
    _native.configure_staging(4096, 3 * 4096, 4096)
    base = _native.staging_stats()
    sizes, held, after = t.staging_borrow(4, 4)
    assert sizes == [4096, 4096, 4096, 0]  # the fourth would wait: the pool is full
    assert (held["lent"], held["allocated_bytes"], held["capacity_bytes"]) == (3, 12288, 12288)
    assert (after["lent"], after["allocated_bytes"]) == (0, 4096)  # one buffer retained
    assert _delta(base, after) == {"allocations": 3, "acquisitions": 3}

    # The quota bounds one borrower; the retained buffer is reused.
    sizes, held, after = t.staging_borrow(3, 2)
    assert sizes == [4096, 4096, 0]
    assert (held["lent"], held["allocated_bytes"]) == (2, 8192)
    assert _delta(base, after) == {"allocations": 4, "acquisitions": 5}


def test_pool_always_lends_one_buffer(staging):
    _native.configure_staging(8192, 4096, 0)  # capacity below one buffer
    sizes, held, after = t.staging_borrow(2, 2)
    assert sizes == [8192, 0]
    assert (held["lent"], held["allocated_bytes"]) == (1, 8192)
    assert (after["lent"], after["allocated_bytes"]) == (0, 0)  # nothing retained


# ---------------------------------------------------------------------------
# The index table (LevelDB format).


def test_one_entry_table_byte_for_byte():
    data = t.build_table([(b"k", b"v")])
    # Data block: shared 0, non-shared 1, value length 1, "k", "v"; restart
    # offsets [0]; restart count 1.
    block = b"\x00\x01\x01kv" + b"\x00\x00\x00\x00" + b"\x01\x00\x00\x00"
    assert data[:13] == block
    # Trailer: no compression, masked CRC32C of block and type byte.
    assert data[13] == 0
    assert int.from_bytes(data[14:18], "little") == _native.crc32c_mask(_native.crc32c(block + b"\x00"))
    # Empty metaindex block at 18 (8 bytes); index block at 31: the key
    # shortened to its successor "l", the handle (offset 0, size 13).
    assert data[18:26] == b"\x00\x00\x00\x00\x01\x00\x00\x00"
    assert data[31:45] == b"\x00\x01\x02l\x00\x0d" + b"\x00\x00\x00\x00\x01\x00\x00\x00"
    # Footer: both handles as varints, zero-padded to 40 bytes, then the magic.
    assert data[50:] == b"\x12\x08\x1f\x0e" + bytes(36) + bytes.fromhex("57fb808b247547db")
    assert len(data) == 98
    assert t.read_table(data) == [(b"k", b"v")]


def test_tables_round_trip_across_blocks():
    # 300 entries of ~1 KiB: more than one 256 KiB data block.
    entries = [(b"key/%05d" % i, bytes([i % 251]) * (1000 + i)) for i in range(300)]
    data = t.build_table(entries)
    assert len(data) > 256 * 1024
    assert t.read_table(data) == entries
    assert t.read_table(t.build_table([])) == []


def test_table_builder_refuses_unordered_keys():
    with pytest.raises(fastckpt.InvalidArgumentError, match="^index keys added out of order$"):
        t.build_table([(b"b", b""), (b"a", b"")])
    with pytest.raises(fastckpt.InvalidArgumentError, match="^duplicate key in index: 'a'$"):
        t.build_table([(b"a", b""), (b"a", b"")])


def test_table_reader_reports_damage_naming_the_file():
    data = bytearray(t.build_table([(b"k", b"v")]))
    data[4] ^= 0xFF  # the value byte: the block CRC no longer matches
    message = "corrupt index file 'x.index': block checksum mismatch at offset 0"
    with pytest.raises(fastckpt.DataLossError, match=f"^{re.escape(message)}$"):
        t.read_table(bytes(data), "x.index")
    message = "corrupt index file 'x.index': 40 bytes is too short to be a table (truncated?)"
    with pytest.raises(fastckpt.DataLossError, match=f"^{re.escape(message)}$"):
        t.read_table(bytes(data[:40]), "x.index")
