"""One rank of the distributed benchmark (``--parts distributed``): what each process runs.

Launched by :mod:`benchmarks.distributed`, one process per rank, as
``python -m benchmarks.dist_worker CONFIG.json`` with ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
and ``MASTER_PORT`` set (torch.distributed's ``env://`` rendezvous over gloo, CPU). Each rank
writes its measurements to ``rank{R}.json`` in the launch directory; the launcher merges the ranks
(wall times: the maximum over ranks).

The state: a GPT-style model's parameters (the shapes of the suite's transformer workload,
fitted to a third of the size) and AdamW's two moments of the same shapes, every tensor a DTensor
sharded along dim 0 (``Shard(0)``) over a 1-D ``DeviceMesh("cpu")`` of the ranks, plus two
replicated Python values (``step``, ``lr``). Values come from a deterministic generator keyed by
the tensor's name and the element's global index, so any rank can compute any piece of any tensor:
every load is checked, exactly, against the values its target's sharding must hold.

Two phases, one launch each:

* ``save``: per round (rotated order, as in the rest of the suite) and save mode, a blocking save
  by fastckpt.distributed, by torch.distributed.checkpoint (DCP) and by ``fastckpt.save`` of the
  whole global tensors in rank 0 alone (the single-process baseline); then the asynchronous saves
  (fastckpt and DCP) next to plain copies of the same local bytes. The last round's blocking saves
  of the last mode stay on disk for the load phase.
* ``load``: every source checkpoint the launcher names (this world size's own, and one written by
  another number of ranks) is loaded by both systems into freshly allocated DTensors of this
  world's sharding, and every value is compared with the generator's.

Every timed operation runs between two barriers after an untimed settle (``gc.collect()``,
``malloc_trim(0)``, ``os.sync()``, see :mod:`benchmarks.measure`), so its time is the wall time of
the whole job, not of one rank.
"""

from __future__ import annotations

import datetime
import gc
import json
import os
import shutil
import sys
import threading
import time
import traceback
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from . import _common as C
from .measure import PeakRss, fsync_tree, settle

STEP = 1234
LR = 3e-4
MOMENTS = ("exp_avg", "exp_avg_sq")
BLOCK = 1 << 20  # elements per generator block (the generator's unit; any piece can be made)

Path = Tuple[str, ...]  # where a tensor sits in the nested state dict


# ---------------------------------------------------------------------------------------------
# The state and its values
# ---------------------------------------------------------------------------------------------


def layout(size: int) -> Tuple[List[Tuple[Path, Tuple[int, ...]]], Dict[str, Any]]:
    """(path, global shape) of every tensor of the state, and a description.

    A third of ``size`` goes to the parameters, a third to each AdamW moment (same shapes).
    """
    shapes, info = C.transformer_shapes(max(size // 3, 4096))
    # The model's names without their "model/" head: the state nests them under "model".
    params = [(name.split("/", 1)[1], shape) for name, shape in shapes.items()]
    entries: List[Tuple[Path, Tuple[int, ...]]] = [(("model", p), s) for p, s in params]
    for m in MOMENTS:
        entries += [(("optim", "state", p, m), s) for p, s in params]
    nbytes = sum(4 * int(np.prod(s)) for _, s in entries)
    return entries, dict(
        info, tensors=len(entries), params=len(params), nbytes=nbytes, dtype="float32", scalars=["step", "lr"]
    )


def name_of(path: Path) -> str:
    return "/".join(path)


def fill(out: np.ndarray, name: str, first: int, seed: int) -> None:
    """Writes the values of elements ``first ..`` (global row-major index) of tensor ``name``
    into the float32 array ``out`` (flat, contiguous): floats in [1, 2) with 23 random mantissa
    bits, from a PCG64 stream per block of BLOCK elements (so any piece can be made alone)."""
    bits = out.reshape(-1).view(np.uint32)
    n = bits.size
    key = zlib.crc32(name.encode("utf-8"))
    pos = 0
    for b in range(first // BLOCK, (first + n + BLOCK - 1) // BLOCK):
        lo, hi = max(first, b * BLOCK), min(first + n, (b + 1) * BLOCK)
        gen = np.random.PCG64([seed, key, b])
        raw = gen.random_raw((hi - b * BLOCK + 1) // 2).view(np.uint32)
        raw = raw[lo - b * BLOCK : hi - b * BLOCK]
        dst = bits[pos : pos + hi - lo]
        np.right_shift(raw, 9, out=dst)
        dst |= np.uint32(0x3F800000)
        pos += hi - lo


def rows_of(rows: int, rank: int, world: int) -> Tuple[int, int]:
    """The rows [start, stop) of ``Shard(0)`` on ``rank``: torch.chunk's split (ceil-sized
    pieces, the last ones shorter or empty), which is how DTensor shards a dimension."""
    per = -(-rows // world)
    return min(rows, rank * per), min(rows, (rank + 1) * per)


def _set(tree: Dict[str, Any], path: Path, value: Any) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _get(tree: Dict[str, Any], path: Path) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def build_state(entries, mesh, rank: int, world: int, seed: int, *, zeros: bool = False):
    """This rank's state: every tensor a DTensor, Shard(0) over ``mesh``; values from the
    generator, or zeros (a fresh load target). Returns (state, local tensors)."""
    import torch
    from torch.distributed.tensor import DTensor, Shard

    state: Dict[str, Any] = {}
    locals_: List[Any] = []
    for path, shape in entries:
        r0, r1 = rows_of(shape[0], rank, world)
        row = int(np.prod(shape[1:]))
        if zeros:
            local = torch.zeros((r1 - r0,) + tuple(shape[1:]), dtype=torch.float32)
        else:
            local = torch.empty((r1 - r0,) + tuple(shape[1:]), dtype=torch.float32)
            fill(local.numpy(), name_of(path), r0 * row, seed)
        stride = tuple(int(np.prod(shape[d + 1 :])) for d in range(len(shape)))
        dt = DTensor.from_local(local, mesh, [Shard(0)], run_check=False, shape=torch.Size(shape), stride=stride)
        _set(state, path, dt)
        locals_.append(local)
    state["step"] = 0 if zeros else STEP
    state["lr"] = 0.0 if zeros else LR
    return state, locals_


def build_global(entries, seed: int) -> Dict[str, Any]:
    """The whole state as plain torch tensors (the single-process baseline's input)."""
    import torch

    state: Dict[str, Any] = {}
    for path, shape in entries:
        t = torch.empty(tuple(shape), dtype=torch.float32)
        fill(t.numpy(), name_of(path), 0, seed)
        _set(state, path, t)
    state["step"] = STEP
    state["lr"] = LR
    return state


def verify(got: Dict[str, Any], want: Dict[str, Any], entries) -> Optional[str]:
    """None if every local piece of ``got`` equals ``want``'s exactly (every element) and the
    scalars came back; else what differs (the first few)."""
    import torch

    bad = []
    for path, _shape in entries:
        g, w = _get(got, path).to_local(), _get(want, path).to_local()
        if g.shape != w.shape:
            bad.append(f"{name_of(path)}: local shape {tuple(g.shape)}, expected {tuple(w.shape)}")
        elif not torch.equal(g, w):
            n = int((g != w).sum())
            bad.append(f"{name_of(path)}: {n:,} of {w.numel():,} values differ")
        if len(bad) >= 3:
            break
    if got.get("step") != STEP or got.get("lr") != LR:
        bad.append(f"scalars: step {got.get('step')!r}, lr {got.get('lr')!r}")
    return "; ".join(bad) or None


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def rchar() -> int:
    """Bytes this process read through read/pread syscalls (``rchar`` of /proc/self/io), page
    cache hits included: the same count for both systems, whatever they report themselves."""
    try:
        with open("/proc/self/io", encoding="ascii") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return -1


class Rank:
    """This process's place in the job and its timed operations."""

    def __init__(self, cfg: Dict[str, Any]) -> None:
        import torch.distributed as dist

        self.cfg = cfg
        self.dist = dist
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.sync = bool(cfg.get("sync_between", True))
        self.start = float(cfg.get("start", time.time()))

    def progress(self, msg: str) -> None:
        """A progress line (rank 0 only), forwarded by the launcher to its stderr."""
        if self.rank == 0:
            print("PROGRESS " + msg, flush=True)

    def barrier(self) -> None:
        self.dist.barrier()

    def timed(self, fn: Callable[[], Any], *, prefault: int = 0) -> Tuple[Any, Dict[str, Any]]:
        """Runs ``fn`` on every rank between two barriers, after an untimed settle.

        ``seconds``: barrier to barrier (the job's wall time as this rank saw it; the launcher
        takes the maximum over ranks); ``own_s``: until ``fn`` returned on this rank.
        """
        settle(self.sync, prefault)
        self.barrier()
        rss = PeakRss()
        rss.start()
        io0 = rchar()
        c0 = os.times()
        t0 = time.perf_counter()
        out = fn()
        t1 = time.perf_counter()
        c1 = os.times()
        io1 = rchar()
        extra = rss.stop()
        self.barrier()
        t2 = time.perf_counter()
        return out, {
            "seconds": t2 - t0,
            "own_s": t1 - t0,
            "cpu_s": (c1.user - c0.user) + (c1.system - c0.system),
            "rss_extra": extra,
            "rchar": io1 - io0 if io0 >= 0 and io1 >= 0 else None,
        }

    def remove(self, path: str) -> None:
        """Deletes ``path`` once every rank is done with it (untimed)."""
        self.barrier()
        if self.rank == 0:
            shutil.rmtree(path, ignore_errors=True)
        self.barrier()


def _rotate(items: List[str], r: int) -> List[str]:
    k = r % len(items)
    return items[k:] + items[:k]


# ---------------------------------------------------------------------------------------------
# The save phase
# ---------------------------------------------------------------------------------------------

SAVE_SYSTEMS = ["fastckpt", "dcp", "single"]
ASYNC_SYSTEMS = ["fastckpt", "dcp", "copy", "clone"]


def save_phase(me: Rank, mesh) -> Dict[str, Any]:
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemWriter

    import fastckpt
    import fastckpt.distributed as fd

    cfg = me.cfg
    seed = int(cfg.get("seed", 0))
    timeout = float(cfg["timeout"])
    entries, info = layout(int(cfg["size"]))
    t = time.perf_counter()
    state, locals_ = build_state(entries, mesh, me.rank, me.world, seed)
    # The single-process baseline: rank 0 alone saves the whole tensors (with one rank, the
    # local pieces are the whole tensors).
    whole: Optional[Dict[str, Any]] = None
    if me.rank == 0:
        if me.world == 1:
            whole = _plain(state, entries)
        else:
            whole = build_global(entries, seed)
    local_bytes = sum(int(x.numel()) * 4 for x in locals_)
    # The copy baseline of the asynchronous saves: buffers allocated and touched once, reused.
    copies = [torch.empty_like(x) for x in locals_]
    for c in copies:
        c.fill_(0)
    has_async = hasattr(dcp, "async_save")
    gc.collect()
    gc.freeze()  # the state lives until the end: keep settle()'s collections short
    me.barrier()
    me.progress(
        f"{me.world} rank(s): state of {info['nbytes'] / C.GB:.3f} GB generated in "
        f"{time.perf_counter() - t:.1f} s ({local_bytes / C.GB:.3f} GB on rank 0)"
    )

    root = cfg["dir"]
    modes = list(cfg["modes"])
    rounds = int(cfg["rounds"])

    def blocking(system: str, d: str, durable: bool) -> Dict[str, Any]:
        os.makedirs(d, exist_ok=True)

        def op() -> Dict[str, Any]:
            extra: Dict[str, Any] = {}
            if system == "fastckpt":
                res = fd.save(state, os.path.join(d, "ckpt"), durable=durable, timeout=timeout)
                extra = {
                    "collectives": res.collectives,
                    "plan_cached": res.plan_cached,
                    "nbytes": res.nbytes,
                    "files": len(res.files),
                }
            elif system == "dcp":
                # DCP fsyncs its files by default (sync_files=True): in page-cache mode that
                # switch is off, so neither side pays for durability it was not asked for.
                dcp.save(state, storage_writer=FileSystemWriter(d, sync_files=durable))
            elif me.rank == 0:  # single: one process, the whole tensors, the others wait
                res = fastckpt.save(whole, os.path.join(d, "ckpt"), durable=durable)
                extra = {"nbytes": res.nbytes, "files": len(res.files)}
            if durable and (system != "single" or me.rank == 0):
                fsync_tree(d)  # every file and the directory, for every system alike
            return extra

        extra, sample = me.timed(op)
        sample.update(extra)
        return sample

    def asynchronous(system: str, d: str, durable: bool) -> Dict[str, Any]:
        os.makedirs(d, exist_ok=True)
        marks: Dict[str, Any] = {}

        def op() -> None:
            t0 = time.perf_counter()
            if system == "fastckpt":
                h = fd.save(state, os.path.join(d, "ckpt"), blocking=False, durable=durable, timeout=timeout)
                marks["blocking_s"] = time.perf_counter() - t0
                marks["snapshot_s"] = getattr(h, "snapshot_seconds", None)
                res = h.result()
                marks.update(collectives=res.collectives, plan_cached=res.plan_cached)
            elif system == "dcp":
                fut = dcp.async_save(state, storage_writer=FileSystemWriter(d, sync_files=durable))
                marks["blocking_s"] = time.perf_counter() - t0
                fut.result()
            elif system == "copy":  # the local bytes into buffers allocated beforehand
                for dst, src in zip(copies, locals_):
                    dst.copy_(src)
                marks["blocking_s"] = time.perf_counter() - t0
            else:  # clone: the local bytes into fresh memory
                snap = [x.clone() for x in locals_]
                marks["blocking_s"] = time.perf_counter() - t0
                del snap
            if durable and system in ("fastckpt", "dcp"):
                fsync_tree(d)

        _, sample = me.timed(op)
        sample.update(marks)
        return sample

    first: Optional[Dict[str, Any]] = None  # the launch's first fastckpt save, if untimed
    if cfg.get("warmup", 0):
        # One untimed page-cache save per system and one asynchronous save each: first calls pay
        # for imports, thread pools, fastckpt's derived gloo group and its first plan exchange.
        t = time.perf_counter()
        for s in SAVE_SYSTEMS:
            d = os.path.join(root, "warmup", s)
            sample = blocking(s, d, False)
            if s == "fastckpt":
                first = {k: sample[k] for k in ("collectives", "plan_cached")}
            me.remove(d)
        for s in ("fastckpt", "dcp"):
            if s == "dcp" and not has_async:
                continue
            d = os.path.join(root, "warmup", "async-" + s)
            asynchronous(s, d, False)
            me.remove(d)
        me.progress(f"{me.world} rank(s): warm-up (one untimed save of each kind) took {time.perf_counter() - t:.0f} s")

    out_rounds: List[Dict[str, Any]] = []
    kept: Dict[str, str] = {}
    nbytes = info["nbytes"]
    for r in range(rounds):
        rec: Dict[str, Any] = {
            "round": r,
            "order": _rotate(SAVE_SYSTEMS, r),
            "save": {m: {} for m in modes},
            "async": {m: {} for m in modes},
        }
        for mode in modes:
            durable = mode == "durable"
            keep = r == rounds - 1 and mode == modes[-1]
            for s in _rotate(SAVE_SYSTEMS, r):
                d = os.path.join(root, f"round{r}", mode, s)
                sample = blocking(s, d, durable)
                rec["save"][mode][s] = sample
                me.progress(
                    f"{me.world} rank(s) round {r + 1}/{rounds} {mode:10s} save  "
                    f"{s:9s}{C.gbps(nbytes, sample['seconds']):7.2f} GB/s"
                )
                if keep and s != "single":
                    kept[s] = os.path.join(d, "ckpt") if s == "fastckpt" else d
                else:
                    me.remove(d)
            for s in _rotate(ASYNC_SYSTEMS, r):
                if s == "dcp" and not has_async:
                    continue
                d = os.path.join(root, f"round{r}", mode, "async-" + s)
                sample = asynchronous(s, d, durable)
                rec["async"][mode][s] = sample
                me.progress(
                    f"{me.world} rank(s) round {r + 1}/{rounds} {mode:10s} async "
                    f"{s:9s} blocked {sample['blocking_s']:.3f} s, done in "
                    f"{sample['seconds']:.3f} s"
                )
                me.remove(d)
        out_rounds.append(rec)
    gc.unfreeze()
    return {
        "rounds": out_rounds,
        "kept": kept,
        "state": info,
        "local_bytes": local_bytes,
        "dcp_async": has_async,
        "first_fastckpt": first,
    }


def _plain(state: Dict[str, Any], entries) -> Dict[str, Any]:
    """A one-rank state with its DTensors replaced by their (whole) local tensors."""
    out: Dict[str, Any] = {}
    for path, _shape in entries:
        _set(out, path, _get(state, path).to_local())
    out["step"] = state["step"]
    out["lr"] = state["lr"]
    return out


# ---------------------------------------------------------------------------------------------
# The load phase
# ---------------------------------------------------------------------------------------------

LOAD_SYSTEMS = ["fastckpt", "dcp"]


def load_phase(me: Rank, mesh) -> Dict[str, Any]:
    import torch.distributed.checkpoint as dcp

    import fastckpt.distributed as fd

    cfg = me.cfg
    seed = int(cfg.get("seed", 0))
    timeout = float(cfg["timeout"])
    entries, info = layout(int(cfg["size"]))
    t = time.perf_counter()
    expected, locals_ = build_state(entries, mesh, me.rank, me.world, seed)
    local_bytes = sum(int(x.numel()) * 4 for x in locals_)
    del locals_
    gc.collect()
    gc.freeze()
    me.barrier()
    me.progress(f"{me.world} rank(s): expected values generated in {time.perf_counter() - t:.1f} s")
    sources = cfg["sources"]  # [{"from": N, "fastckpt": prefix, "dcp": dir}]
    rounds = int(cfg["rounds"])

    def one(system: str, src: Dict[str, Any]) -> Dict[str, Any]:
        # A fresh target of this world's sharding, zero-filled (untimed): a value a load failed
        # to write stays 0, which the generator never produces.
        target, _ = build_state(entries, mesh, me.rank, me.world, seed, zeros=True)
        marks: Dict[str, Any] = {}

        def op() -> Any:
            if system == "fastckpt":
                got, report = fd.load(src["fastckpt"], target, with_report=True, timeout=timeout)
                marks.update(bytes_read=report.bytes_read, tensors=report.tensors)
                return got
            dcp.load(target, checkpoint_id=src["dcp"])
            return target

        got, sample = me.timed(op, prefault=local_bytes)
        sample.update(marks)
        sample["check"] = verify(got, expected, entries) or "ok"
        return sample

    if cfg.get("warmup", 0):
        t = time.perf_counter()
        for s in LOAD_SYSTEMS:
            one(s, sources[0])
        me.progress(f"{me.world} rank(s): warm-up (one untimed load per system) took {time.perf_counter() - t:.0f} s")
    out_rounds: List[Dict[str, Any]] = []
    for r in range(rounds):
        rec: Dict[str, Any] = {"round": r, "order": _rotate(LOAD_SYSTEMS, r), "load": {}}
        for src in sources:
            key = f"{src['from']}->{me.world}"
            rec["load"][key] = {}
            for s in _rotate(LOAD_SYSTEMS, r):
                sample = one(s, src)
                rec["load"][key][s] = sample
                me.progress(
                    f"{me.world} rank(s) round {r + 1}/{rounds} load {key:6s} {s:9s}"
                    f"{C.gbps(info['nbytes'], sample['seconds']):7.2f} GB/s"
                    + ("" if sample["check"] == "ok" else f"  WRONG VALUES: {sample['check']}")
                )
        out_rounds.append(rec)
    gc.unfreeze()
    return {"rounds": out_rounds, "state": info, "local_bytes": local_bytes}


# ---------------------------------------------------------------------------------------------
# The process
# ---------------------------------------------------------------------------------------------


def _watch_parent(ppid: int) -> None:
    """Exits this rank if the launcher dies: an orphaned rank would wait in a barrier."""

    def loop() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != ppid:
                os._exit(3)

    threading.Thread(target=loop, daemon=True, name="watch-parent").start()


def main(argv: List[str]) -> int:
    (cfg_path,) = argv
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    parent = os.environ.get("FASTCKPT_BENCH_PARENT")
    if parent:
        _watch_parent(int(parent))
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=float(cfg["timeout"])))
    me = Rank(cfg)
    try:
        mesh = init_device_mesh("cpu", (me.world,))
        if cfg["phase"] == "save":
            result = save_phase(me, mesh)
        else:
            result = load_phase(me, mesh)
        result.update(rank=me.rank, world=me.world, phase=cfg["phase"])
        C.write_json(os.path.join(cfg["out"], f"rank{me.rank}.json"), result)
        me.barrier()
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)  # the other ranks wait in a collective: the launcher stops them
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
