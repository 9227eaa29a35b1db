"""fastckpt.distributed in a world of one process (no engine needed): the
checkpoint format of multi-rank saves, resharded reads through Shard boxes,
per-rank values, and the chunk-CRC table that verifies partial reads."""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastckpt
import fastckpt.distributed as fd
from fastckpt import _native
from fastckpt.format import chunks


def _pieces(w, rows):
    out, start = [], 0
    for n in rows:
        out.append(fd.Shard(w[start : start + n].copy(), w.shape, (start, 0)))
        start += n
    return out


def test_one_rank_saves_pieces_as_tensorflow_slices(tmp_path):
    w = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    # One process may hold several pieces of a tensor (a list of Shards is a list: use one per leaf).
    state = {"w": fd.Shard(w, w.shape, (0, 0)), "step": 5, "rng": fd.PerRank(np.arange(4, dtype=np.uint8))}
    res = fd.save(state, tmp_path / "ck")
    assert res.world_size == 1 and res.collectives == 0 and not res.plan_cached
    names = dict(fastckpt.list_variables(tmp_path / "ck"))
    assert names == {
        "_FASTCKPT_CHUNKS": names["_FASTCKPT_CHUNKS"],
        "_FASTCKPT_STRUCTURE": [],
        "rng/__rank_0": [4],
        "step": [],
        "w": [20, 3],
    }
    back = fastckpt.load(tmp_path / "ck")
    np.testing.assert_array_equal(back["w"], w)
    assert back["step"] == 5 and back["rng"][0].tolist() == [0, 1, 2, 3]  # per-rank: one value per rank
    fastckpt.verify(tmp_path / "ck")
    res2 = fd.save(state, tmp_path / "ck2")
    assert res2.plan_cached  # the same structure: the plan is reused


def test_partial_reads_read_only_the_chunks_they_need(tmp_path):
    w = np.arange(1024 * 1024, dtype=np.float32).reshape(1024, 1024)  # 4 MiB, rows of 4 KiB
    fd.save({"w": fd.Shard(w, w.shape, (0, 0))}, tmp_path / "ck")
    piece = np.zeros((100, 1024), np.float32)
    back, report = fd.load(tmp_path / "ck", {"w": fd.Shard(piece, w.shape, (300, 0))}, with_report=True)
    np.testing.assert_array_equal(piece, w[300:400])
    # Rows 300..399 are bytes 300 x 4 KiB .. 400 x 4 KiB: the whole chunks around them, no more.
    size = chunks.CHUNK_BYTES
    first, end = 300 * 4096 // size, -(-400 * 4096 // size)
    assert report.bytes_read == (end - first) * size < 2 * piece.nbytes
    # A flipped byte in a chunk the read does not touch does not matter; in one it does.
    data = str(tmp_path / "ck.data-00000-of-00002")
    offset = [e for e in _native.Reader(str(tmp_path / "ck")).entries() if e[0] == b"w"][0][4]
    with open(data, "r+b") as f:
        f.seek(offset + 1005 * 4096 + 10)  # row 1005
        byte = f.read(1)
        f.seek(offset + 1005 * 4096 + 10)
        f.write(bytes([byte[0] ^ 1]))
    fd.load(tmp_path / "ck", {"w": fd.Shard(piece, w.shape, (300, 0))})
    with pytest.raises(fastckpt.DataLossError, match=r"tensor 'w' in '.*ck.data-00000-of-00002'"):
        fd.load(tmp_path / "ck", {"w": fd.Shard(np.zeros((10, 1024), np.float32), w.shape, (1000, 0))})
    with pytest.raises(fastckpt.DataLossError, match="tensor 'w'"):
        fastckpt.verify(tmp_path / "ck")


def test_verify_checks_the_chunk_table_against_the_entries(tmp_path):
    w = np.arange(300 * 1024, dtype=np.float32)  # 1.2 MiB: 2 chunks
    import google_crc32c

    raw = w.tobytes()
    good = b"".join(
        google_crc32c.value(raw[i : i + (1 << 20)]).to_bytes(4, "little") for i in range(0, len(raw), 1 << 20)
    )
    fastckpt.save({"w": w, chunks.CHUNKS_KEY: chunks.encode(1 << 20, {b"w": good})}, tmp_path / "good")
    fastckpt.verify(tmp_path / "good")
    bad = bytes([good[0] ^ 1]) + good[1:]
    fastckpt.save({"w": w, chunks.CHUNKS_KEY: chunks.encode(1 << 20, {b"w": bad})}, tmp_path / "bad")
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(tmp_path / "bad")
    ((name, reason),) = [(b.name, b.reason) for b in e.value.report.bad]
    assert name == "w" and reason.startswith("chunk table: ")
    # A loader refuses the table before trusting it for any read.
    with pytest.raises(fastckpt.DataLossError, match="tensor 'w'"):
        fd.load(tmp_path / "bad", {"w": fd.Shard(np.zeros(10, np.float32), w.shape, (0,))})


def test_inconsistent_pieces_are_refused(tmp_path):
    w = np.ones((4, 4), np.float32)
    with pytest.raises(fd.DistributedSaveError) as e:
        fd.save({"w": fd.Shard(w[:2], (4, 4), (0, 0))}, tmp_path / "ck")  # half of it: a hole
    assert e.value.failures == {
        0: "InvalidArgumentError: sharded tensor 'w' of shape [4, 4]: the pieces the ranks hold do not cover it"
    }
    assert not os.path.exists(tmp_path / "ck.index")
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"Shard: dimension 0 covers \[3, 5\) of a global"):
        fd.Shard(w[:2], (4, 4), (3, 0))


def test_mpi_and_torch_are_not_imported_for_a_world_of_one(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, fastckpt.distributed as fd\n"
        f"fd.save({{'w': np.ones(3)}}, {str(tmp_path / 'ck')!r})\n"
        f"fd.load({str(tmp_path / 'ck')!r}, {{'w': np.zeros(3)}})\n"
        "print(sorted(m for m in ('torch', 'mpi4py', 'jax', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastckpt.__file__))),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_ranks_on_one_machine_share_its_cores():
    """The default writer threads and data files of each rank: the machine's cores
    divided among the save's ranks on that machine."""
    from fastckpt.distributed.plan import RankMeta, make_plan

    def metas(hosts, cores=8):
        nbytes = 256 << 20  # enough bytes for a file per thread
        return [
            RankMeta(
                rank=r,
                tensors=[(f"t{r}", "own", "float32", (nbytes // 4,), (), (nbytes,))],
                structure_key=b"s",
                per_rank={},
                threads=cores,
                host=h,
            )
            for r, h in enumerate(hosts)
        ]

    plan = make_plan(metas(["a", "a", "a", "a"]))
    assert plan.threads == [2, 2, 2, 2] and plan.num_shards == [2, 2, 2, 2]
    plan = make_plan(metas(["a", "b"]))
    assert plan.threads == [8, 8] and plan.num_shards == [8, 8]
    plan = make_plan(metas(["a", "a", "a", "b"], cores=2))
    assert plan.threads == [1, 1, 1, 2] and plan.total_shards == 1 + 1 + 1 + 2 + 1
