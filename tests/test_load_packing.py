"""load() packs small tensors into shared slabs: values, layout and ownership."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import fastckpt
from fastckpt import reader as reader_mod


def _tensors():
    rng = np.random.default_rng(7)
    out = {f"small/{i:03d}": rng.standard_normal(rng.integers(1, 300)).astype(np.float32) for i in range(200)}
    out["big"] = rng.standard_normal((512, 1024)).astype(np.float32)  # 2 MiB: its own allocation
    out["edge/just_below"] = np.arange((1 << 20) - 1, dtype=np.uint8)
    out["edge/at_limit"] = np.arange(1 << 20, dtype=np.uint8)
    out["bf16"] = np.arange(33, dtype=np.float32).astype(ml_dtypes.bfloat16).reshape(3, 11)
    out["empty"] = np.zeros((4, 0), np.int64)
    out["scalar"] = np.array(3.5, np.float64)
    out["bools"] = np.array([True, False, True])
    out["text"] = np.array([b"a", b"", b"\x00\xff"], dtype=object)
    return out


def _base_of(a: np.ndarray) -> np.ndarray:
    return a if a.base is None else a.base


def _own_allocation(a: np.ndarray) -> bool:
    """`a` has a byte buffer of its own (64 bytes longer, for alignment) and starts
    on a 64-byte boundary."""
    return (
        isinstance(a.base, np.ndarray)
        and a.base.base is None
        and a.base.dtype == np.uint8
        and a.base.nbytes == a.nbytes + 64
        and a.ctypes.data % 64 == 0
    )


def test_values_are_exact_with_and_without_packing(tmp_path):
    tensors = _tensors()
    prefix = str(tmp_path / "ckpt")
    fastckpt.save(tensors, prefix)
    for pack in (True, False):
        got = fastckpt.load(prefix, pack_small=pack)
        assert list(got) == sorted(tensors)
        for name, want in tensors.items():
            assert got[name].dtype == want.dtype, name
            assert got[name].shape == want.shape, name
            if want.dtype == object:
                assert got[name].tolist() == want.tolist()
            else:
                assert got[name].tobytes() == want.tobytes(), name


def test_small_tensors_share_aligned_slabs_and_large_ones_do_not(tmp_path):
    tensors = _tensors()
    prefix = str(tmp_path / "ckpt")
    fastckpt.save(tensors, prefix)
    got = fastckpt.load(prefix)
    small = [got[f"small/{i:03d}"] for i in range(200)] + [got["edge/just_below"], got["bf16"], got["bools"]]
    slab = small[0].base
    assert isinstance(slab, np.ndarray) and slab.dtype == np.uint8
    # 200 small float32 tensors + ~1 MiB + a few bytes: one 64 MiB slab holds them all.
    assert all(a.base is slab for a in small)
    assert slab.nbytes <= (64 << 20) + 64
    for a in small:
        assert a.ctypes.data % 64 == 0
        assert a.flags.c_contiguous and a.flags.writeable and not a.flags.owndata
    # At or above 1 MiB a tensor gets its own allocation, aligned too.
    for name in ("big", "edge/at_limit"):
        assert _own_allocation(got[name]), name
    # Views do not overlap: writing one leaves its neighbours intact.
    small[0][...] = 0
    for i in range(1, 200):
        np.testing.assert_array_equal(got[f"small/{i:03d}"], tensors[f"small/{i:03d}"])


def test_unpacked_tensors_own_their_memory(tmp_path):
    tensors = _tensors()
    prefix = str(tmp_path / "ckpt")
    fastckpt.save(tensors, prefix)
    got = fastckpt.load(prefix, pack_small=False)
    for name, a in got.items():
        if name != "text" and a.size:
            assert _own_allocation(a), name


def test_tensors_spill_into_further_slabs(tmp_path, monkeypatch):
    monkeypatch.setattr(reader_mod, "_SLAB_BYTES", 4096)
    tensors = {f"t{i:02d}": np.full(300, i, np.float32) for i in range(20)}  # 1200 B each, 1216 aligned
    prefix = str(tmp_path / "ckpt")
    fastckpt.save(tensors, prefix)
    got = fastckpt.load(prefix)
    bases = [_base_of(got[f"t{i:02d}"]) for i in range(20)]
    # Three 1216-byte slots fit in 4096 bytes: slabs of 3, in name order.
    assert [len({id(b) for b in bases[k : k + 3]}) for k in range(0, 18, 3)] == [1] * 6
    assert len({id(b) for b in bases}) == 7
    for i in range(20):
        np.testing.assert_array_equal(got[f"t{i:02d}"], np.full(300, i, np.float32))


def test_reader_read_all_matches_get_tensor(tmp_path):
    tensors = _tensors()
    prefix = str(tmp_path / "ckpt")
    fastckpt.save(tensors, prefix)
    with fastckpt.load_checkpoint(prefix) as r:
        everything = r.read_all()
        for name in tensors:
            one = r.get_tensor(name)
            if one.dtype == object:
                assert one.tolist() == everything[name].tolist()
            else:
                assert one.tobytes() == everything[name].tobytes()
        assert r.get_variable_to_shape_map() == {n: list(t.shape) for n, t in tensors.items()}


def test_a_lying_size_fails_before_any_allocation(tmp_path):
    prefix = str(tmp_path / "ckpt")
    fastckpt.save({"a": np.ones(8, np.float32), "b": np.ones(1 << 18, np.float32)}, prefix)
    data = tmp_path / "ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])  # truncated: b's bytes lie past the end
    with pytest.raises(fastckpt.DataLossError, match=r"'b' in '.*ckpt\.data-00000-of-00001'.*past the end"):
        fastckpt.load(prefix)
