"""Partitioned tensors: one validation of their stored slices, shared by every reader.

The native core checks a partitioned tensor's slices once per reader (in
bounds, pairwise disjoint, covering the tensor; ``csrc/fastckpt/format/slice_set.h``)
and ``get_tensor``, ``get_slice``, ``load`` and ``verify`` all go through it:
what ``verify`` accepts, every reader loads, and what one reader refuses,
``verify`` reports. ``fastckpt._native.check_slice_set`` exposes the check
itself, which is compared here with a brute-force oracle on random layouts,
grids and hostile ones.
"""

from __future__ import annotations

import contextlib
import faulthandler
import itertools

import numpy as np
import pytest
from checkpoint_builders import rewrite_index_entry, write_partitioned  # fuzz/, on sys.path (conftest)
from hypothesis import given, settings
from hypothesis import strategies as st

import fastckpt
from fastckpt import _native
from fastckpt.format import dtypes
from fastckpt.format import slices as slicing
from fastckpt.writer import partitioned_item, prepare_item, write_items

# The work bounds of csrc/fastckpt/format/slice_set.h.
MAX_GRID_CELLS = 1 << 26
MAX_SWEEP_CHECKS = 1 << 26


@contextlib.contextmanager
def hang_guard(seconds: float = 120.0):
    """A liveness guard, not a timing assertion: a hang in native code cannot be
    interrupted, so dump every stack and exit instead of blocking the suite."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


# ---------------------------------------------------------------------------
# The campaign's finding: a slice listed twice, another of the same size omitted.


def _listed_twice(tmp_path):
    """`part` [8, 5] stored as rows 0-3 and 4-7; its entry then lists rows 0-3
    twice and rows 4-7 not at all (one bit of the index, CRCs recomputed):
    the element counts still agree, but the slices overlap."""
    prefix = str(tmp_path / "twice")
    full = np.arange(40, dtype=np.float32).reshape(8, 5)
    write_partitioned(
        prefix, "part", full, [[(0, 4), (0, -1)], [(4, 4), (0, -1)]], extra={"other": np.arange(3, dtype=np.int64)}
    )

    def list_first_twice(e):
        e.slices[1].CopyFrom(e.slices[0])

    rewrite_index_entry(prefix, b"part", list_first_twice)
    return prefix


OVERLAP = "stored slices '0,4:-' and '0,4:-' overlap"


def test_slice_listed_twice_fails_verify(tmp_path):
    prefix = _listed_twice(tmp_path)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    (bad,) = e.value.report.bad
    assert bad == ("part", prefix + ".index", OVERLAP, True)
    assert str(e.value) == (
        f"checkpoint '{prefix}' is damaged: 1 problem(s) in 1 of 2 tensors:\n"
        f"  tensor 'part' in '{prefix}.index': {OVERLAP}"
    )
    assert fastckpt.latest_valid_checkpoint(tmp_path) is None


def test_slice_listed_twice_fails_every_reader(tmp_path):
    prefix = _listed_twice(tmp_path)
    message = f"corrupt index file '{prefix}.index': tensor 'part': {OVERLAP}"
    with fastckpt.load_checkpoint(prefix) as reader:
        assert reader.get_variable_to_shape_map() == {"part": [8, 5], "other": [3]}
        assert reader.get_tensor("other").tolist() == [0, 1, 2]
        for call in (lambda: reader.get_tensor("part"), lambda: reader.get_slice("part", "5,2:-")):
            with pytest.raises(fastckpt.DataLossError) as e:
                call()
            assert str(e.value) == message
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.load(prefix)
    assert str(e.value) == message


def test_verify_accepts_only_what_loads(tmp_path):
    """The same slice layouts through verify and load: both accept or both refuse."""
    full = np.arange(40, dtype=np.int32).reshape(8, 5)
    layouts = {
        "rows": [[(0, 4), (0, -1)], [(4, 4), (0, -1)]],
        "grid": [[(r, 4), (c, n)] for r in (0, 4) for c, n in ((0, 2), (2, 3))],
        "overlap": [[(0, 5), (0, -1)], [(4, 4), (0, -1)]],
        "hole": [[(0, 4), (0, -1)], [(5, 3), (0, -1)]],
        "overlap_and_hole": [[(0, 4), (0, 3)], [(0, 4), (2, 3)], [(4, 4), (0, -1)]],
        # The overlap (rows 0-3, columns 1-2) is as large as the hole (columns
        # 3-4): the element counts agree, which is all verify used to check.
        "overlap_as_large_as_hole": [[(0, 4), (0, 3)], [(0, 4), (1, 2)], [(4, 4), (0, -1)]],
    }
    for label, parts in layouts.items():
        prefix = str(tmp_path / label)
        write_partitioned(prefix, "t", full, parts)
        try:
            fastckpt.verify(prefix)
            verified = True
        except fastckpt.DataLossError:
            verified = False
        try:
            loaded = fastckpt.load(prefix)["t"]
        except fastckpt.DataLossError:
            loaded = None
        assert verified == (loaded is not None), label
        if loaded is not None:
            np.testing.assert_array_equal(loaded, full)


# ---------------------------------------------------------------------------
# Many slices: values, regions, and the validation bound.


def test_two_thousand_row_slices_load_exactly(tmp_path):
    """A valid tensor in 2,000 slices (it took 15.7 s with the quadratic Python check)."""
    prefix = str(tmp_path / "rows")
    n = 2000
    full = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    write_partitioned(prefix, "big", full, [[(i, 1), (0, -1)] for i in range(n)])
    with hang_guard():
        with fastckpt.load_checkpoint(prefix) as reader:
            np.testing.assert_array_equal(reader.get_tensor("big"), full)
            np.testing.assert_array_equal(reader.get_slice("big", "1500,7:1,2"), full[1500:1507, 1:3])
        assert fastckpt.verify(prefix).tensors == 1


def test_grid_of_slices_regions(tmp_path):
    """A 2-D grid with uneven cuts: every region read equals numpy's slicing."""
    prefix = str(tmp_path / "grid")
    full = np.arange(13 * 11, dtype=np.int64).reshape(13, 11)
    rows = [(0, 4), (4, 1), (5, 8)]
    cols = [(0, 3), (3, 5), (8, 3)]
    write_partitioned(prefix, "g", full, [[r, c] for r in rows for c in cols])
    with fastckpt.load_checkpoint(prefix) as reader:
        np.testing.assert_array_equal(reader.get_tensor("g"), full)
        for r0, r1, c0, c1 in [(0, 13, 0, 11), (3, 6, 2, 9), (12, 13, 10, 11), (4, 5, 0, 11)]:
            got = reader.get_slice("g", [(r0, r1 - r0), (c0, c1 - c0)])
            np.testing.assert_array_equal(got, full[r0:r1, c0:c1])


def test_twenty_thousand_slices_load(tmp_path):
    """10x more slices than the campaign's valid case: the old quadratic check
    needed ~100x its 15.7 s; the hang guard catches a regression to it."""
    prefix = str(tmp_path / "grid20k")
    full = np.arange(200 * 100, dtype=np.int32).reshape(200, 100)
    write_partitioned(prefix, "g", full, [[(r, 1), (c, 1)] for r in range(200) for c in range(100)])
    with hang_guard():
        np.testing.assert_array_equal(fastckpt.load(prefix)["g"], full)


def test_string_partitioned_tensor(tmp_path):
    prefix = str(tmp_path / "s")
    full = np.array([[b"a", b"bb"], [b"", b"c\x00"], [b"dd", b"e"]], dtype=object)
    write_partitioned(prefix, "s", full, [[(0, 2), (0, -1)], [(2, 1), (0, -1)]])
    with fastckpt.load_checkpoint(prefix) as reader:
        assert reader.get_tensor("s").tolist() == full.tolist()
        assert reader.get_slice("s", "1,2:1,1").tolist() == [[b"c\x00"], [b"e"]]


def test_string_slice_too_small_for_its_shape(tmp_path):
    """A string slice claiming 2^40 elements in 6 bytes is refused before the
    output (8 bytes per element) is allocated."""
    prefix = str(tmp_path / "s")
    huge = [(2, 2**40)]
    items, keep = [], []
    for extents, value in (([(0, 2)], [b"a", b"bb"]), (huge, [b"c"])):
        item, owner = prepare_item(
            slicing.encode_slice_key("s", extents), np.array(value, dtype=object), slice_key=True
        )
        items.append(item)
        keep.append(owner)
    items.append(partitioned_item("s", dtypes.DT_STRING, (2 + 2**40,), [[(0, 2)], huge]))
    write_items(items, prefix, num_shards=1, threads=None, durable=False)

    def grow(e):
        e.shape.dim[0].size = 2**40

    rewrite_index_entry(prefix, slicing.encode_slice_key("s", huge), grow)
    with fastckpt.load_checkpoint(prefix) as reader:
        with pytest.raises(fastckpt.DataLossError) as e:
            reader.get_tensor("s")
        assert reader.get_slice("s", "0,2").tolist() == [b"a", b"bb"]
    assert str(e.value) == (
        f"slice '2,1099511627776' of tensor 's' in '{prefix}.data-00000-of-00001': "
        "a string tensor of 1099511627776 elements cannot fit in 6 bytes"
    )


def test_slice_entry_that_is_itself_partitioned(tmp_path):
    """A corrupt file (DataLossError), not a bad argument."""
    prefix = str(tmp_path / "nested")
    full = np.arange(8, dtype=np.float32)
    parts = [[(0, 4)], [(4, 4)]]
    write_partitioned(prefix, "p", full, parts)

    def add_slices(e):
        e.slices.add().extent.add().length = 4

    rewrite_index_entry(prefix, slicing.encode_slice_key("p", parts[1]), add_slices)
    message = f"corrupt index file '{prefix}.index': tensor 'p': slice '4,4': its entry is itself partitioned"
    with fastckpt.load_checkpoint(prefix) as reader:
        with pytest.raises(fastckpt.DataLossError) as e:
            reader.get_tensor("p")
        assert str(e.value) == message
        # A region that needs only the intact slice is still readable.
        assert reader.get_slice("p", "0,3").tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    assert [(b.name, b.reason) for b in e.value.report.bad] == [("p", "slice '4,4': its entry is itself partitioned")]


def test_region_needs_only_the_slices_it_intersects(tmp_path):
    """As in TensorFlow: a missing slice outside the request does not matter."""
    prefix = str(tmp_path / "partial")
    full = np.arange(20, dtype=np.int16).reshape(4, 5)
    parts = [[(0, 2), (0, -1)], [(2, 2), (0, -1)]]
    write_partitioned(prefix, "p", full, parts[:1], listed=parts)
    with fastckpt.load_checkpoint(prefix) as reader:
        np.testing.assert_array_equal(reader.get_slice("p", "0,2:-"), full[:2])
        with pytest.raises(fastckpt.DataLossError) as e:
            reader.get_slice("p", "1,2:-")
        assert str(e.value) == (
            f"corrupt index file '{prefix}.index': tensor 'p': slice '2,2:-' has no entry in the index"
        )


def test_insufficient_slices_for_region(tmp_path):
    prefix = str(tmp_path / "short")
    full = np.arange(20, dtype=np.int16).reshape(4, 5)
    write_partitioned(prefix, "p", full, [[(0, 2), (0, -1)], [(3, 1), (0, -1)]])
    with fastckpt.load_checkpoint(prefix) as reader:
        np.testing.assert_array_equal(reader.get_slice("p", "3,1:1,2"), full[3:4, 1:3])
        with pytest.raises(fastckpt.DataLossError) as e:
            reader.get_slice("p", "1,2:-")
    assert str(e.value) == (
        f"checkpoint '{prefix}.index' does not have sufficient slices for "
        "tensor 'p' region '1,2:-' (its 2 stored slices hold 5 of its 10 elements)"
    )


# ---------------------------------------------------------------------------
# The validation itself against a brute-force oracle.


def _boxes(shape, slices):
    return [[(0, shape[d]) if n < 0 else (s, s + n) for d, (s, n) in enumerate(sl)] for sl in slices]


def _oracle(shape, slices):
    """(held, covers) or the pair that overlaps first, by pairwise comparison."""
    boxes = _boxes(shape, slices)
    held = 0
    for b in boxes:
        held += int(np.prod([hi - lo for lo, hi in b], dtype=object))
    overlapping = [
        (i, j)
        for i, j in itertools.combinations(range(len(boxes)), 2)
        if all(max(a[0], b[0]) < min(a[1], b[1]) for a, b in zip(boxes[i], boxes[j]))
    ]
    total = int(np.prod(shape, dtype=object))
    return held, held == total, overlapping


def _check(shape, slices):
    try:
        return _native.check_slice_set(shape, slices)
    except fastckpt.DataLossError as e:
        return str(e)


def _assert_agrees(shape, slices):
    held, covers, overlapping = _oracle(shape, slices)
    got = _check(shape, slices)
    if not overlapping:
        assert got == (held, covers)
        return
    assert isinstance(got, str) and got.startswith("stored slices '"), got
    # The pair named overlaps (the check stops at the first it finds).
    named = [
        (i, j)
        for i, j in overlapping
        if got == f"stored slices '{slicing.format_slice_spec(slices[i])}' and "
        f"'{slicing.format_slice_spec(slices[j])}' overlap"
    ]
    assert named, (got, overlapping)


def _extent(dim):
    return st.one_of(
        st.just((0, -1)), st.integers(0, dim).flatmap(lambda s: st.tuples(st.just(s), st.integers(0, dim - s)))
    )


@st.composite
def _layouts(draw):
    shape = draw(st.lists(st.integers(0, 9), min_size=1, max_size=3))
    slices = draw(st.lists(st.tuples(*[_extent(d) for d in shape]).map(list), max_size=12))
    return shape, slices


@settings(max_examples=400, deadline=None)
@given(_layouts())
def test_check_agrees_with_brute_force(layout):
    _assert_agrees(*layout)


@st.composite
def _grids(draw):
    """A random grid partition (cuts per dimension), possibly with one cell
    dropped, duplicated or widened into its neighbour."""
    shape, cuts = [], []
    for _ in range(draw(st.integers(1, 3))):
        c = sorted(set(draw(st.lists(st.integers(1, 20), max_size=4))))
        shape.append((c[-1] if c else 0) + draw(st.integers(1, 5)))
        cuts.append([0] + [x for x in c if x < shape[-1]] + [shape[-1]])
    cells = [list(zip(cs, cs[1:])) for cs in cuts]
    slices = [[(lo, hi - lo) for lo, hi in cell] for cell in itertools.product(*cells)]
    op = draw(st.sampled_from(["none", "drop", "duplicate", "widen"]))
    i = draw(st.integers(0, len(slices) - 1))
    if op == "drop":
        del slices[i]
    elif op == "duplicate":
        slices.insert(draw(st.integers(0, len(slices))), slices[i])
    elif op == "widen":
        d = draw(st.integers(0, len(shape) - 1))
        s, n = slices[i][d]
        slices[i] = list(slices[i])
        slices[i][d] = (s, min(n + 1, shape[d] - s))
    return shape, slices


@settings(max_examples=300, deadline=None)
@given(_grids())
def test_grids_agree_with_brute_force(grid):
    _assert_agrees(*grid)


def _distinct_cut_boxes(rng, n, rank, dim):
    """n disjoint boxes along dimension 0 whose other extents are random, so
    every dimension has ~2n distinct boundaries: far more grid cells than
    MAX_GRID_CELLS, which sends the check down its sweep path."""
    starts = np.sort(rng.choice(dim // 2, size=n, replace=False)) * 2
    slices = []
    for s in starts:
        ext = [(int(s), 1)]
        for _ in range(rank - 1):
            a, b = sorted(int(x) for x in rng.choice(dim, size=2, replace=False))
            ext.append((a, b - a))
        slices.append(ext)
    return slices


def test_irregular_layouts_take_the_sweep_path():
    rng = np.random.default_rng(7)
    shape = [1 << 20] * 4
    slices = _distinct_cut_boxes(rng, 150, 4, 1 << 20)
    cells = 1
    for d in range(4):
        cells *= len({x for sl in _boxes(shape, slices) for x in sl[d]}) - 1
    assert cells > MAX_GRID_CELLS
    _assert_agrees(shape, slices)  # disjoint along dimension 0
    # Overlapping variants: one box moved onto another, at random places.
    for _ in range(20):
        i, j = rng.choice(len(slices), size=2, replace=False)
        moved = list(slices)
        moved[i] = [slices[j][0]] + [(0, shape[d]) for d in range(1, 4)]
        _assert_agrees(shape, moved)


def test_identical_slices_overlap_whatever_their_number():
    shape = [1000, 1000]
    slices = [[(0, -1), (0, -1)]] * 5000
    assert _check(shape, slices) == "stored slices '-:-' and '-:-' overlap"


def test_empty_slices_overlap_nothing():
    """A slice with a zero-length extent holds no element (TensorFlow's Intersect agrees)."""
    assert _check([4, 4], [[(0, 4), (0, 4)], [(1, 0), (0, 4)], [(2, 2), (3, 0)]]) == (16, True)
    assert _check([0, 5], [[(0, -1), (0, 2)], [(0, -1), (1, 4)]]) == (0, True)


def test_out_of_bounds_and_rank():
    with pytest.raises(fastckpt.DataLossError) as e:
        _native.check_slice_set([4, 5], [[(0, 4), (3, 3)]])
    assert str(e.value) == "stored slice '0,4:3,3' lies outside the tensor's shape [4, 5]"
    with pytest.raises(fastckpt.DataLossError) as e:
        _native.check_slice_set([4, 5], [[(0, 4)]])
    assert str(e.value) == "stored slice '0,4' has rank 1, the tensor has rank 2"


def test_layout_beyond_both_bounds_is_refused_not_checked():
    """Disjoint strips (rows in the top half, columns in the bottom half) need
    ~(n/2)^2 grid cells and ~(n/2)^2 / 2 sweep comparisons whichever dimension
    is swept: past both bounds at n = 26,000, the layout is refused with
    UnimplementedError (no TensorFlow partitioner writes it)."""
    half = 13000
    shape = [2 * half, half]
    rows = [[(r, 1), (0, -1)] for r in range(half)]
    cols = [[(half, half), (c, 1)] for c in range(half)]
    assert (half + 1) ** 2 > MAX_GRID_CELLS and half * (half - 1) // 2 > MAX_SWEEP_CHECKS
    with hang_guard():
        with pytest.raises(fastckpt.UnimplementedError) as e:
            _native.check_slice_set(shape, rows + cols)
    assert str(e.value) == (
        f"its {2 * half} stored slices are laid out too irregularly to be checked for overlaps "
        f"(more than {MAX_GRID_CELLS} grid cells and more than {MAX_SWEEP_CHECKS} slice comparisons; "
        "TensorFlow's partitioners write grids)"
    )
    # The same number of slices as a grid is checked at once.
    grid = [[(r, 2), (c, half // 2)] for r in range(0, 2 * half, 2) for c in (0, half // 2)]
    assert len(grid) == 2 * half
    assert _native.check_slice_set(shape, grid) == (2 * half * half, True)
