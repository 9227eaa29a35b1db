"""Multi-rank saves and resharded loads over MPI (``mpiexec -n K`` with
mpi4py and the MPICH wheel): explicit pieces (fastckpt.Shard of numpy
arrays) saved on K ranks and loaded on K' ranks with other offsets."""

from __future__ import annotations

import numpy as np
import pytest
from dist_util import run_mpi

import fastckpt

ROWS, COLS = 11, 5


SAVE = f"""
    W = np.arange({ROWS} * {COLS}, dtype=np.float64).reshape({ROWS}, {COLS})
    base, extra = divmod({ROWS}, WORLD)
    sizes = [base + (1 if r < extra else 0) for r in range(WORLD)]
    start = sum(sizes[:RANK])
    state = {{"w": fd.Shard(W[start:start + sizes[RANK]].copy(), W.shape, (start, 0)),
              "bias": np.arange(4, dtype=np.int32), "epoch": 3,
              "loader": fd.PerRank({{"offset": 100 + RANK, "seed": np.int64(RANK)}})}}
    res = fd.save(state, PREFIX, timeout=60)
    emit({{"collectives": res.collectives, "files": res.files}})
"""

LOAD = f"""
    W = np.arange({ROWS} * {COLS}, dtype=np.float64).reshape({ROWS}, {COLS})
    base, extra = divmod({COLS}, WORLD)
    sizes = [base + (1 if r < extra else 0) for r in range(WORLD)]
    start = sum(sizes[:RANK])
    piece = np.zeros(({ROWS}, sizes[RANK]))
    target = {{"w": fd.Shard(piece, W.shape, (0, start)), "bias": np.zeros(4, np.int32), "epoch": 0,
               "loader": fd.PerRank({{"offset": 0, "seed": np.int64(0)}})}}
    back = fd.load(PREFIX, target, per_rank="modulo", timeout=60)
    emit({{"ok": bool(np.array_equal(piece, W[:, start:start + sizes[RANK]])), "bias": back["bias"].tolist(),
           "epoch": back["epoch"], "loader": {{"offset": back["loader"].value["offset"],
                                              "seed": int(back["loader"].value["seed"])}}}})
"""


@pytest.mark.parametrize("k", [2, 3])
def test_mpi_save_and_resharded_load(tmp_path, k):
    prefix = str(tmp_path / "ck")
    saved = run_mpi(k, SAVE, values={"PREFIX": prefix})
    assert all(r["files"] == saved[0]["files"] for r in saved)
    assert saved[0]["collectives"] == 3
    np.testing.assert_array_equal(
        fastckpt.load_checkpoint(prefix).get_tensor("w"), np.arange(ROWS * COLS, dtype=np.float64).reshape(ROWS, COLS)
    )
    for m in (2, 3):
        loaded = run_mpi(m, LOAD, values={"PREFIX": prefix})
        for rank, got in enumerate(loaded):
            assert got["ok"] and got["bias"] == [0, 1, 2, 3] and got["epoch"] == 3
            assert got["loader"] == {"offset": 100 + rank % k, "seed": rank % k}
