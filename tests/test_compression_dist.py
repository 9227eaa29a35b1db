"""Compressed multi-rank saves (torch gloo, real processes): every rank
compresses its pieces, rank 0 commits the merged frame table; resharded
loads decompress only the frames their boxes need."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
import torch  # noqa: E402,F401  (the ranks import it)
from dist_util import run_torch

import fastckpt
from fastckpt import _native

VALUES = textwrap.dedent("""
    import ml_dtypes
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor, init_device_mesh
    g = torch.Generator().manual_seed(0)
    W = (torch.randn(2048, 512, generator=g) * 0.02).to(torch.bfloat16)   # 2 MiB
    V = torch.randn(640, 1024, generator=g) * 0.02                       # 2.5 MiB float32
    SMALL = torch.arange(10, dtype=torch.float32)
""")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("zdist") / "ckpt")
    res = run_torch(
        2,
        VALUES,
        f"""
        mesh = init_device_mesh("cpu", (WORLD,))
        state = {{"w": distribute_tensor(W, mesh, [Shard(0)]), "v": distribute_tensor(V, mesh, [Shard(1)]),
                  "small": SMALL.clone(), "step": 5}}
        res = fd.save(state, {prefix!r}, timeout=60, compression="zstd")
        emit({{"files": res.files, "nbytes": res.nbytes}})
    """,
    )
    assert res[0]["files"] == res[1]["files"]
    return prefix


def _torch_values():
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(2048, 512, generator=g) * 0.02).to(torch.bfloat16)
    v = torch.randn(640, 1024, generator=g) * 0.02
    return w, v


def test_compressed_multi_rank_checkpoint_reads_back(saved):
    w, v = _torch_values()
    r = _native.Reader(saved)
    try:
        assert r.compressed
        compressed = [k for k, *_ in r.entries() if not r.stored_as_is(r.find(k))]
    finally:
        r.close()
    assert len(compressed) == 4  # the two stored slices of w and of v
    back = fastckpt.load(saved, array_type="torch")
    assert back["step"] == 5 and torch.equal(back["small"], torch.arange(10, dtype=torch.float32))
    assert torch.equal(back["w"], w) and torch.equal(back["v"], v)
    assert fastckpt.verify(saved).ok
    with fastckpt.load_checkpoint(saved) as reader:
        rows = reader.get_slice("w", np.s_[900:1000])  # in the first stored slice (rows 0-1023)
        assert torch.equal(
            torch.from_numpy(rows.view(np.uint16).astype(np.int32)),
            w[900:1000].view(torch.int16).to(torch.int32) & 0xFFFF,
        )
        assert reader._compressed.frames_read == 1


def test_resharded_load_decompresses_only_its_frames(saved):
    w, v = _torch_values()
    res = run_torch(
        2,
        VALUES,
        f"""
        mesh = init_device_mesh("cpu", (WORLD,))
        tw = distribute_tensor(torch.zeros_like(W), mesh, [Shard(1)])   # saved by rows, loaded by columns
        tv = distribute_tensor(torch.zeros_like(V), mesh, [Shard(0)])
        target = {{"w": tw, "v": tv, "small": torch.zeros(10), "step": 0}}
        back, report = fd.load({saved!r}, target, timeout=60, with_report=True)
        emit({{"w": bool(torch.equal(back["w"].full_tensor(), W)), "v": bool(torch.equal(back["v"].full_tensor(), V)),
               "step": back["step"], "bytes": report.bytes_read}})
    """,
    )
    for r in res:
        assert r["w"] and r["v"] and r["step"] == 5
    with fastckpt.load_checkpoint(saved) as reader:
        tables = reader._compressed.tables
        stored = sum(t.stored_bytes for t in tables.values())
        # v's two stored slices (640 x 512 float32 columns) have 2 frames each.
        v_tail = sum(int(t.offsets[2] - t.offsets[1]) for t in tables.values() if t.raw_bytes == 640 * 512 * 4)
    assert len(tables) == 4 and v_tail > 0
    # Rank 0 restores v's rows 0-319: the first frame of each slice of v (rows
    # 0-511); rank 1, rows 320-639, needs both. Both need every frame of w
    # (a column half of its row slices). 'small' adds its 40 bytes, read as is.
    assert [r["bytes"] for r in res] == [stored - v_tail + 40, stored + 40]


def test_distributed_save_refuses_bad_options(tmp_path):
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        import fastckpt.distributed as fd

        fd.save({"w": np.zeros(3)}, str(tmp_path / "x"), compression="gzip")
    assert str(e.value) == "compression must be one of 'none', 'zstd' or None, not 'gzip'"
