"""Multi-rank saves and resharded loads over torch.distributed (gloo, CPU),
with real processes on localhost: every pair of 1-4 saving ranks and 1-4
loading ranks, 1-D and 2-D meshes, DTensor placements that differ between
save and load, replicated and per-rank values, failures on one rank, and a
2-rank FSDP training run that resumes bit-identically."""

from __future__ import annotations

import os
import signal
import textwrap

import ml_dtypes
import numpy as np
import pytest
import torch  # noqa: E402,F401  (the test extra installs it; the ranks import it)
from dist_util import run_torch

import fastckpt

R, C = 13, 7  # uneven over 2, 3 and 4 ranks

# The global values every save writes (rank-independent, so each rank can check its piece).
VALUES = textwrap.dedent(f"""
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor, init_device_mesh
    R, C = {R}, {C}
    W = torch.arange(R * C, dtype=torch.float32).reshape(R, C) / 7
    B = (torch.arange(11, dtype=torch.float32) - 5).to(torch.bfloat16)
    TINY = torch.arange(5, dtype=torch.int64).reshape(1, 5)
    EMB = torch.arange(10, dtype=torch.int64) * 3

    def mesh_for(world):
        if world == 4:
            return init_device_mesh("cpu", (2, 2))
        return init_device_mesh("cpu", (world,))

    def place(mesh, kind):
        nd = mesh.ndim
        if kind == "rows":
            return [Shard(0)] + [Replicate()] * (nd - 1)
        if kind == "cols":
            return [Shard(1)] + [Replicate()] * (nd - 1)
        if kind == "grid":
            return [Shard(0), Shard(1)] if nd == 2 else [Shard(0)]
        if kind == "grid_t":
            return [Shard(1), Shard(0)] if nd == 2 else [Shard(1)]
        return [Replicate()] * nd
""")

SAVE_PLACEMENT = {1: "rows", 2: "rows", 3: "cols", 4: "grid"}
LOAD_PLACEMENT = {1: None, 2: "cols", 3: "rows", 4: "grid_t"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One checkpoint per number of saving ranks (1-4)."""
    root = tmp_path_factory.mktemp("dist")
    out = {}
    for n in (1, 2, 3, 4):
        prefix = str(root / f"n{n}" / "ckpt")
        res = run_torch(
            n,
            VALUES,
            f"""
            mesh = mesh_for(WORLD)
            state = {{"model": {{"w": distribute_tensor(W, mesh, place(mesh, {SAVE_PLACEMENT[n]!r})),
                                 "b": distribute_tensor(B, mesh, [Shard(0)] + [Replicate()] * (mesh.ndim - 1)),
                                 "tiny": distribute_tensor(TINY, mesh, [Shard(0)] * mesh.ndim),
                                 "one": distribute_tensor(torch.tensor([2.5]), mesh, [Replicate()] * mesh.ndim)}},
                     "emb": EMB.clone(), "step": 100, "lr": 0.25, "name": "run-1", "betas": (0.9, 0.95),
                     "rng": fd.PerRank(np.full(3, RANK, np.int32))}}
            res = fd.save(state, {prefix!r}, timeout=60)
            emit({{"collectives": res.collectives, "files": res.files, "nbytes": res.nbytes,
                   "world": res.world_size, "cached": res.plan_cached}})
        """,
        )
        assert all(r["files"] == res[0]["files"] for r in res)
        assert res[0]["collectives"] == (3 if n > 1 else 0) and not res[0]["cached"]
        out[n] = prefix
    return out


def test_tensorflow_reads_the_global_tensors(saved):
    import tensorflow as tf

    w = np.arange(R * C, dtype=np.float32).reshape(R, C) / 7
    for n, prefix in saved.items():
        reader = tf.train.load_checkpoint(prefix)
        np.testing.assert_array_equal(reader.get_tensor("model/w"), w)
        assert reader.get_tensor("model/tiny").tolist() == [[0, 1, 2, 3, 4]]
        assert reader.get_tensor("emb").tolist() == list(range(0, 30, 3))
        assert reader.get_tensor("step") == 100
        for r in range(n):
            assert reader.get_tensor(f"rng/__rank_{r}").tolist() == [r] * 3
        # fastckpt in one process too, with the structure as saved (per-rank values keep each rank's).
        state = fastckpt.load(prefix)
        np.testing.assert_array_equal(state["model"]["w"], w)
        assert state["model"]["b"].dtype == ml_dtypes.bfloat16
        assert state["step"] == 100 and state["betas"] == (0.9, 0.95) and state["name"] == "run-1"


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_every_checkpoint_loads_onto_m_ranks(saved, m):
    placement = LOAD_PLACEMENT[m]
    results = run_torch(
        m,
        VALUES,
        f"""
        saved = {dict(saved)!r}
        mesh = mesh_for(WORLD)
        out = {{}}
        for n, prefix in sorted(saved.items()):
            if {placement!r} is None:
                model = {{"w": torch.zeros(R, C), "b": torch.zeros(11, dtype=torch.bfloat16),
                          "tiny": torch.zeros(1, 5, dtype=torch.int64), "one": torch.zeros(1)}}
            else:
                model = {{"w": distribute_tensor(torch.zeros(R, C), mesh, place(mesh, {placement!r})),
                          "b": distribute_tensor(torch.zeros(11, dtype=torch.bfloat16), mesh, place(mesh, "rows")),
                          "tiny": distribute_tensor(torch.zeros(1, 5, dtype=torch.int64), mesh, place(mesh, "grid_t")),
                          "one": distribute_tensor(torch.zeros(1), mesh, [Replicate()] * mesh.ndim)}}
            # emb was saved as a plain tensor every rank held: loaded sharded where the target is.
            emb = torch.zeros(10, dtype=torch.int64) if {placement!r} is None else \
                distribute_tensor(torch.zeros(10, dtype=torch.int64), mesh, place(mesh, "rows"))
            target = {{"model": model, "emb": emb, "step": 0, "lr": 0.0,
                       "name": "", "betas": (0.0, 0.0), "rng": fd.PerRank(np.zeros(3, np.int32))}}
            back, report = fd.load(prefix, target, per_rank="modulo", timeout=60, with_report=True)
            def local(t, full):
                if isinstance(t, DTensor):
                    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
                    shape, off = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
                    idx = tuple(slice(o, o + s) for o, s in zip(off, shape))
                    return bool(torch.equal(t.to_local(), full[idx]))
                return bool(torch.equal(t, full))
            out[n] = {{"w": local(back["model"]["w"], W), "b": local(back["model"]["b"], B),
                       "tiny": local(back["model"]["tiny"], TINY), "one": local(back["model"]["one"], torch.tensor([2.5])),
                       "emb": local(back["emb"], EMB), "scalars": [back["step"], back["lr"], back["name"], list(back["betas"])],
                       "rng": back["rng"].value.tolist(), "in_place": back["model"]["w"] is model["w"],
                       "bytes": report.bytes_read}}
        emit(out)
    """,
    )
    for rank, per_n in enumerate(results):
        for n, got in per_n.items():
            n = int(n)
            assert got["w"] and got["b"] and got["tiny"] and got["one"] and got["emb"], (n, rank, got)
            assert got["scalars"] == [100, 0.25, "run-1", [0.9, 0.95]]
            assert got["rng"] == [rank % n] * 3
            assert got["in_place"]


def test_per_rank_values_on_another_world_size_are_an_explicit_choice(saved):
    results = run_torch(
        3,
        f"""
        try:
            fd.load({saved[2]!r}, {{"rng": fd.PerRank(np.zeros(3, np.int32))}}, strict=False, timeout=60)
            emit(None)
        except fastckpt.DistributedLoadError as e:
            emit({{"type": type(e).__name__, "failures": sorted(e.failures), "text": str(e)}})
    """,
    )
    for r in results:
        assert r["type"] == "DistributedLoadError" and r["failures"] == [0, 1, 2]
        assert "was saved per rank on 2 ranks; loading on 3, pass per_rank='first'" in r["text"]


def test_plan_is_cached_while_the_structure_stays_the_same(tmp_path):
    results = run_torch(
        2,
        VALUES,
        f"""
        mesh = mesh_for(WORLD)
        counts = []
        for step, rows in ((1, R), (2, R), (3, R + 1), (4, R + 1)):
            w = distribute_tensor(torch.full((rows, C), float(step)), mesh, [Shard(0)])
            res = fd.save({{"w": w, "step": step}}, {str(tmp_path / "ck")!r} + f"-{{step}}", timeout=60)
            counts.append([res.collectives, res.plan_cached])
        emit(counts)
    """,
    )
    # First save 3 collectives; same structure 2; a changed shape replans (3), then 2 again.
    assert results[0] == results[1] == [[3, False], [2, True], [3, False], [2, True]]
    assert fastckpt.load(str(tmp_path / "ck-4"))["w"].tolist() == [[4.0] * C] * (R + 1)


def _listing(d):
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.mark.parametrize("failure", ["bad_leaf", "enospc"])
def test_a_failure_on_one_rank_fails_the_save_everywhere(tmp_path, failure):
    prefix = str(tmp_path / "ck")
    fastckpt.save({"w": np.ones(4)}, prefix + "-old")
    before = _listing(tmp_path)
    inject = {
        "bad_leaf": "state['opt'] = {'x': object()} if RANK == 1 else {'x': 1.0}",
        "enospc": "import errno\n        if RANK == 2: fastckpt._native.testing.arm_fault('write', 0, errno.ENOSPC)",
    }[failure]
    results = run_torch(
        3,
        VALUES,
        f"""
        mesh = mesh_for(WORLD)
        state = {{"w": distribute_tensor(W, mesh, [Shard(0)]), "emb": EMB.clone()}}
        {inject}
        try:
            fd.save(state, {prefix!r}, timeout=60)
            emit(None)
        except fastckpt.DistributedSaveError as e:
            emit({{"failures": {{str(k): v for k, v in e.failures.items()}}, "text": str(e)}})
    """,
    )
    bad = {"bad_leaf": "1", "enospc": "2"}[failure]
    why = {"bad_leaf": "UnsupportedDtypeError: opt/x: an object", "enospc": "No space left on device"}[failure]
    for r in results:
        assert r is not None and list(r["failures"]) == [bad], r
        assert why in r["failures"][bad]
        assert r["text"].startswith(f"distributed save of '{prefix}' failed on 1 of 3 ranks")
    assert _listing(tmp_path) == before  # nothing new, no temporary file
    assert fastckpt.load(prefix + "-old")["w"].tolist() == [1.0] * 4


def test_a_rank_killed_mid_save_fails_the_others_in_bounded_time(tmp_path):
    prefix = str(tmp_path / "ck")
    fastckpt.save({"w": np.ones(4)}, prefix)  # an earlier checkpoint of the same prefix
    results = run_torch(
        3,
        VALUES,
        f"""
        import signal, time
        mesh = mesh_for(WORLD)
        state = {{"w": distribute_tensor(W, mesh, [Shard(0)]), "emb": EMB.clone()}}
        start = time.monotonic()
        try:
            h = fd.save(state, {prefix!r}, timeout=60, blocking=False)
            if RANK == 1:
                os.kill(os.getpid(), signal.SIGKILL)  # after its snapshot, before the commit
            h.result(120)
            emit(None)
        except fastckpt.DistributedSaveError as e:
            emit({{"seconds": time.monotonic() - start, "text": str(e)}})
    """,
        expect_exit={1: -signal.SIGKILL},
        timeout=240,
    )
    for rank in (0, 2):
        assert results[rank] is not None and results[rank]["seconds"] < 90, results[rank]
        assert "a peer died or did not answer within 60 s" in results[rank]["text"], results[rank]
    # The survivors removed their files; the killed rank's unlocked leftovers
    # go with the next cleanup of the directory.
    fastckpt._native.remove_stale_temp_files(str(tmp_path), 0)
    assert _listing(tmp_path) == ["ck.data-00000-of-00001", "ck.index"]
    got = fastckpt.load(prefix)
    assert list(got) == ["w"] and got["w"].tolist() == [1.0] * 4  # the earlier checkpoint is intact


TRAIN = textwrap.dedent("""
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import init_device_mesh

    def build():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        fully_shard(model, mesh=init_device_mesh("cpu", (WORLD,)))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return model, optimizer, scheduler

    def train(model, optimizer, scheduler, first, steps):
        losses = []
        for step in range(first, first + steps):
            g = torch.Generator().manual_seed(step * 10 + RANK)
            x, y = torch.randn(16, 8, generator=g), torch.randn(16, 1, generator=g)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item().hex())
        return losses

    def params(model):
        return [p.to_local().detach().numpy().tobytes().hex() for p in model.parameters()]

    def optim_target(model, optimizer):
        sd = optimizer.state_dict()
        sd["state"] = {i: {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                       for i, p in enumerate(model.parameters())}
        return sd
""")


def test_fsdp_training_resumes_bit_identically_on_two_ranks(tmp_path):
    prefix = str(tmp_path / "ck")
    straight = run_torch(
        2,
        TRAIN,
        """
        m, o, s = build()
        emit({"losses": train(m, o, s, 0, 6), "params": params(m)})
    """,
    )
    first = run_torch(
        2,
        TRAIN,
        f"""
        m, o, s = build()
        losses = train(m, o, s, 0, 3)
        fd.save({{"model": m.state_dict(), "optim": o.state_dict(), "sched": s.state_dict(), "step": 3}},
                {prefix!r}, timeout=60)
        emit({{"losses": losses}})
    """,
    )
    resumed = run_torch(
        2,
        TRAIN,
        f"""
        m, o, s = build()
        target = {{"model": m.state_dict(), "optim": optim_target(m, o), "sched": s.state_dict(), "step": 0}}
        back = fd.load({prefix!r}, target, timeout=60)
        m.load_state_dict(back["model"])
        o.load_state_dict(back["optim"])
        s.load_state_dict(back["sched"])
        emit({{"losses": train(m, o, s, back["step"], 3), "params": params(m)}})
    """,
    )
    for rank in range(2):
        assert first[rank]["losses"] + resumed[rank]["losses"] == straight[rank]["losses"]
        assert resumed[rank]["params"] == straight[rank]["params"]


def test_resharded_load_reads_little_more_than_the_checkpoint(tmp_path):
    # 64 MiB saved in rows on 2 ranks, loaded in rows on 3: the chunk CRCs let
    # each rank read only (chunk-aligned) what it needs.
    prefix = str(tmp_path / "ck")
    run_torch(
        2,
        VALUES,
        f"""
        mesh = mesh_for(WORLD)
        big = torch.arange(4096 * 4096, dtype=torch.float32).reshape(4096, 4096)
        fd.save({{"big": distribute_tensor(big, mesh, [Shard(0)])}}, {prefix!r}, timeout=60)
        emit(True)
    """,
        timeout=300,
    )
    results = run_torch(
        3,
        VALUES,
        f"""
        mesh = mesh_for(WORLD)
        t = distribute_tensor(torch.zeros(4096, 4096), mesh, [Shard(0)])
        back, report = fd.load({prefix!r}, {{"big": t}}, timeout=60, with_report=True)
        local = back["big"].to_local()
        emit({{"bytes": report.bytes_read, "first": float(local[0, 0]), "last": float(local[-1, -1]),
               "rows": local.shape[0]}})
    """,
        timeout=300,
    )
    total = sum(r["bytes"] for r in results)
    assert 64 << 20 <= total <= int(1.1 * (64 << 20)), total
    rows = [r["rows"] for r in results]
    starts = np.cumsum([0] + rows[:-1])
    assert [r["first"] for r in results] == [float(s * 4096) for s in starts]
    assert [r["last"] for r in results] == [float((s + n) * 4096 - 1) for s, n in zip(starts, rows)]


def test_asynchronous_save_snapshots_then_commits_in_order(tmp_path):
    prefix = str(tmp_path / "ck")
    results = run_torch(
        2,
        VALUES,
        f"""
        import time
        mesh = mesh_for(WORLD)
        w = distribute_tensor(W.clone(), mesh, [Shard(0)])
        if RANK == 1:
            time.sleep(3)  # a slow but live rank is waited for, not taken for dead
        h1 = fd.save({{"w": w, "step": 1}}, {prefix!r} + "-1", blocking=False, timeout=60)
        w.to_local().fill_(-1.0)  # after the snapshot: not in checkpoint 1
        h2 = fd.save({{"w": w, "step": 2}}, {prefix!r} + "-2", blocking=False, timeout=60)
        r1, r2 = h1.result(120), h2.result(120)
        emit({{"done": [r1.collectives, r2.collectives], "cached": [r1.plan_cached, r2.plan_cached]}})
    """,
    )
    for r in results:
        assert r["done"] == [3, 2] and r["cached"] == [False, True]
    w = np.arange(R * C, dtype=np.float32).reshape(R, C) / 7
    first, second = fastckpt.load(prefix + "-1"), fastckpt.load(prefix + "-2")
    np.testing.assert_array_equal(first["w"], w)
    assert (second["w"] == -1.0).all() and (first["step"], second["step"]) == (1, 2)


def test_tensorflow_partitioned_checkpoint_loads_into_sharded_targets(tmp_path):
    import tensorflow as tf

    prefix = str(tmp_path / "tf")
    w = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)
    g = tf.Graph()
    with g.as_default():
        v = tf.compat.v1.get_variable(
            "w", initializer=tf.constant(w), partitioner=tf.compat.v1.fixed_size_partitioner(3)
        )
        saver = tf.compat.v1.train.Saver([v])
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix)
    results = run_torch(
        2,
        VALUES,
        f"""
        mesh = mesh_for(WORLD)
        t = distribute_tensor(torch.zeros(12, 5), mesh, [Shard(1)])  # columns: across TF's row partitions
        back, report = fd.load({prefix!r}, {{"w": t}}, timeout=60, with_report=True)
        from torch.distributed.tensor._utils import compute_local_shape_and_global_offset
        shape, off = compute_local_shape_and_global_offset(t.shape, t.device_mesh, t.placements)
        emit({{"local": back["w"].to_local().tolist(), "off": list(off), "bytes": report.bytes_read}})
    """,
    )
    for r in results:
        c0 = r["off"][1]
        assert r["local"] == w[:, c0 : c0 + len(r["local"][0])].tolist()
        assert r["bytes"] == w.nbytes  # no chunk table: every stored piece it touches, whole


def test_strict_load_names_what_differs_on_every_rank(saved):
    results = run_torch(
        2,
        f"""
        target = {{"emb": torch.zeros(10, dtype=torch.int64), "extra": torch.zeros(3)}}
        out = {{}}
        try:
            fd.load({saved[2]!r}, target, timeout=60)
        except fastckpt.DistributedLoadError as e:
            out["failures"], out["text"] = sorted(e.failures), str(e)
        back, report = fd.load({saved[2]!r}, target, strict=False, timeout=60, with_report=True)
        out.update(missing=report.missing, emb=back["emb"].tolist())
        emit(out)
    """,
    )
    for rank, r in enumerate(results):
        assert r["failures"] == [0, 1]
        assert (
            f"rank {rank}: TensorNotFoundError: restoring from '{saved[2]}' on rank {rank}: the target's "
            "'extra' not in the checkpoint (strict=False skips them)"
        ) in r["text"]
        assert r["missing"] == ["extra"] and r["emb"] == list(range(0, 30, 3))


def test_a_job_that_reinitialises_its_process_groups_saves_again(tmp_path):
    """fastckpt's cached gloo group belongs to the process group it was made for: after
    destroy_process_group() and a new init, the next save coordinates over a new one."""
    res = run_torch(
        2,
        f"""
        import torch
        state = {{"w": fd.Shard(torch.full((2, 3), float(RANK)), (4, 3), (2 * RANK, 0))}}
        first = fd.save(state, {str(tmp_path / "a")!r}, timeout=60)
        dist.destroy_process_group()
        dist.init_process_group("gloo", init_method="file://" + {str(tmp_path / "store")!r}, rank=RANK,
                                world_size=WORLD)
        second = fd.save(state, {str(tmp_path / "b")!r}, timeout=60)
        emit({{"first": first.collectives, "second": second.collectives, "cached": second.plan_cached}})
    """,
    )
    assert res == [{"first": 3, "second": 2, "cached": True}] * 2
    for name in ("a", "b"):
        np.testing.assert_array_equal(
            fastckpt.load(str(tmp_path / name))["w"],
            np.repeat([[0.0], [0.0], [1.0], [1.0]], 3, axis=1).astype(np.float32),
        )
