"""The distributed part (``--parts distributed``): multi-rank saves and resharded loads.

fastckpt.distributed against torch.distributed.checkpoint (DCP) on the same DTensors, the same
ranks, in the same run, alternating: torch.distributed over gloo on CPU, one process per rank on
localhost, for each rank count of ``--dist-ranks`` (default 1, 2 and 4). What each rank runs and
the state it holds are described in :mod:`benchmarks.dist_worker`.

For each rank count N, two launches of N processes (a free port each, bounded in time, every
process stopped if anything fails, times out or is interrupted):

1. **save**: blocking saves (fastckpt.distributed.save, dcp.save, and fastckpt.save of the whole
   tensors in one process), per save mode; asynchronous saves (``blocking=False`` and
   ``dcp.async_save``) next to plain copies of the same local bytes. The last round's checkpoints
   stay for the loads.
2. **load** (after every save launch): the N-rank checkpoints, and for the two largest rank counts
   A < B also the B-rank checkpoint on A ranks and the A-rank one on B ranks (4 -> 2 and 2 -> 4 by
   default), by both systems into fresh DTensors of N ranks' sharding, every value checked.

Wall times are the maximum over ranks of barrier-to-barrier times; throughputs credit every
system with the state's tensor bytes; ratios are medians of per-round ratios, as elsewhere.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import _common as C

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RANKS = (1, 2, 4)
QUICK_SIZE = 4 << 20

SYSTEM_TITLES = {"fastckpt": "fastckpt.distributed", "dcp": "DCP", "single": "fastckpt.save, 1 process"}


# ---------------------------------------------------------------------------------------------
# Launching ranks
# ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def unavailable() -> Optional[str]:
    """Why the ranks could not run (torch, its DTensor and DCP not importable), or None.

    Checked in a child process with the ranks' environment: the launcher itself never imports
    torch.
    """
    code = (
        "import torch.distributed as d, torch.distributed.checkpoint, "
        "torch.distributed.tensor, fastckpt.distributed; assert d.is_available()"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return "importing torch.distributed took more than 120 s"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"torch.distributed (DTensor, DCP) not importable: {last[:200]}"
    return None


class LaunchError(RuntimeError):
    pass


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGTERM to every rank's process group, SIGKILL to those still there 3 s later."""
    alive = [p for p in procs if p.poll() is None]
    for p in alive:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + 3
    for p in alive:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait()


def _tail(path: str, n: int = 3000) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


def launch(
    world: int, config: Dict[str, Any], workdir: str, timeout: float, progress: Callable[[str], None]
) -> List[Dict[str, Any]]:
    """Runs ``benchmarks.dist_worker`` on ``world`` ranks; returns each rank's result.

    Rank 0's ``PROGRESS`` lines are forwarded to ``progress`` as they come. Any rank that exits
    with an error, a job that outlives ``timeout`` seconds, or an exception here (Ctrl-C) stops
    every rank (their process groups: a rank's own children too) and raises.
    """
    os.makedirs(workdir, exist_ok=True)
    cfg_path = os.path.join(workdir, "config.json")
    C.write_json(cfg_path, dict(config, out=workdir))
    port = free_port()
    procs: List[subprocess.Popen] = []
    logs: List[Tuple[str, str]] = []
    files = []
    try:
        for rank in range(world):
            env = _env()
            env.update(
                RANK=str(rank),
                WORLD_SIZE=str(world),
                LOCAL_RANK=str(rank),
                LOCAL_WORLD_SIZE=str(world),
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=str(port),
                FASTCKPT_BENCH_PARENT=str(os.getpid()),
            )
            if world > 1:
                # What torchrun does for several processes per node: one intra-op thread each.
                env.setdefault("OMP_NUM_THREADS", "1")
            out = os.path.join(workdir, f"rank{rank}.out")
            err = os.path.join(workdir, f"rank{rank}.err")
            # Closed with the others once every rank has exited.
            fo, fe = open(out, "w"), open(err, "w")  # noqa: SIM115
            files += [fo, fe]
            logs.append((out, err))
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.dist_worker", cfg_path],
                    cwd=ROOT,
                    env=env,
                    stdout=fo,
                    stderr=fe,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            seen = _forward(logs[0][0], seen, progress)
            codes = [p.poll() for p in procs]
            bad = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                time.sleep(0.5)  # let the failing rank's traceback reach its log
                raise LaunchError(
                    f"{world}-rank {config['phase']}: rank {bad[0]} exited with status "
                    f"{codes[bad[0]]}:\n" + _tail(logs[bad[0]][1])
                )
            if all(c == 0 for c in codes):
                break
            if time.monotonic() > deadline:
                raise LaunchError(
                    f"{world}-rank {config['phase']}: not finished after {timeout:.0f} s "
                    "(--dist-timeout); stopped. Rank 0's last output:\n" + _tail(logs[0][1])
                )
            time.sleep(0.1)
        _forward(logs[0][0], seen, progress)
    finally:
        _stop(procs)
        for f in files:
            f.close()
    results = []
    for rank in range(world):
        with open(os.path.join(workdir, f"rank{rank}.json"), encoding="utf-8") as f:
            results.append(json.load(f))
    return results


def _forward(path: str, offset: int, progress: Callable[[str], None]) -> int:
    """Passes the complete ``PROGRESS`` lines of ``path`` after ``offset`` to ``progress``."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset
    end = data.rfind(b"\n") + 1
    for line in data[:end].decode("utf-8", "replace").splitlines():
        if line.startswith("PROGRESS "):
            progress("distributed: " + line[len("PROGRESS ") :])
    return offset + end


# ---------------------------------------------------------------------------------------------
# Merging ranks
# ---------------------------------------------------------------------------------------------


def merge(samples: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One operation as the job saw it, from every rank's sample of it.

    Wall times: the maximum over ranks (``seconds`` runs barrier to barrier, so ranks agree to a
    barrier's latency); CPU seconds, bytes and ``rchar``: summed; extra RSS: the largest rank's,
    and the list.
    """
    out: Dict[str, Any] = {
        "seconds": max(s["seconds"] for s in samples),
        "own_s": [s["own_s"] for s in samples],
        "cpu_s": sum(s["cpu_s"] for s in samples),
        "rss_extra": max(s["rss_extra"] for s in samples),
        "rss_extra_per_rank": [s["rss_extra"] for s in samples],
    }
    if all(s.get("rchar") is not None for s in samples):
        out["rchar"] = sum(s["rchar"] for s in samples)
    for k in ("blocking_s", "snapshot_s"):
        vals = [s[k] for s in samples if s.get(k) is not None]
        if vals:
            out[k] = max(vals)
            out[k + "_per_rank"] = vals
    for k in ("collectives", "plan_cached", "files"):
        if k in samples[0]:
            out[k] = samples[0][k]
    if any("nbytes" in s for s in samples):
        out["nbytes_per_rank"] = [s.get("nbytes", 0) for s in samples]
    if "bytes_read" in samples[0]:
        out["bytes_read_per_rank"] = [s["bytes_read"] for s in samples]
        out["bytes_read"] = sum(out["bytes_read_per_rank"])
    if "check" in samples[0]:
        bad = [f"rank {r}: {s['check']}" for r, s in enumerate(samples) if s["check"] != "ok"]
        out["check"] = "; ".join(bad) or "ok"
    return out


def _merge_rounds(per_rank: List[Dict[str, Any]], section: str) -> List[Dict[str, Any]]:
    """Rank-merged rounds of one launch: rec[section][group][system]."""
    out = []
    for i, rec in enumerate(per_rank[0]["rounds"]):
        merged: Dict[str, Any] = {"round": rec["round"], "order": rec["order"]}
        for sec in section.split(","):
            merged[sec] = {}
            for group, systems in rec[sec].items():
                merged[sec][group] = {s: merge([pr["rounds"][i][sec][group][s] for pr in per_rank]) for s in systems}
        out.append(merged)
    return out


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def _stats(samples: List[Dict[str, Any]], nbytes: int) -> Dict[str, Any]:
    secs = [x["seconds"] for x in samples]
    med = C.median(secs)
    return {
        "median_s": med,
        "gbps": C.gbps(nbytes, med),
        "min_s": min(secs),
        "max_s": max(secs),
        "cpu_s": C.median([x["cpu_s"] for x in samples]),
        "rss_extra_max": max(x["rss_extra"] for x in samples),
        "n": len(samples),
    }


def _paired(
    rounds: List[Dict[str, Any]], get: Callable[[Dict[str, Any]], Dict[str, Any]], a: str, b: str, key: str = "seconds"
) -> Optional[float]:
    """Median over rounds of b's time / a's time (a's throughput over b's)."""
    pairs = [(get(rec)[a][key], get(rec)[b][key]) for rec in rounds if a in get(rec) and b in get(rec)]
    return C.paired_ratio([x for x, _ in pairs], [y for _, y in pairs]) if pairs else None


def summarize_saves(
    rounds: List[Dict[str, Any]], modes: List[str], nbytes: int, first: Optional[Dict[str, Any]]
) -> Dict[str, Any]:
    out: Dict[str, Any] = {"save": {}, "ratios": {}, "async": {}}
    for mode in modes:

        def get(rec: Dict[str, Any], m: str = mode) -> Dict[str, Any]:
            return rec["save"][m]

        def aget(rec: Dict[str, Any], m: str = mode) -> Dict[str, Any]:
            return rec["async"][m]

        systems = [s for s in ("fastckpt", "dcp", "single") if any(s in get(r) for r in rounds)]
        out["save"][mode] = {s: _stats([get(r)[s] for r in rounds if s in get(r)], nbytes) for s in systems}
        out["ratios"][mode] = {s: _paired(rounds, get, "fastckpt", s) for s in systems if s != "fastckpt"}
        a: Dict[str, Any] = {}
        for s in ("fastckpt", "dcp", "copy", "clone"):
            xs = [aget(r)[s] for r in rounds if s in aget(r)]
            if xs:
                a[s] = {
                    "blocking_s": C.median([x["blocking_s"] for x in xs]),
                    "total_s": C.median([x["seconds"] for x in xs]),
                    "rss_extra_max": max(x["rss_extra"] for x in xs),
                    "n": len(xs),
                }
        # fastckpt's blocking time over the copy's (and the clone's, DCP's), per round.
        for s in ("copy", "clone", "dcp"):
            pairs = [
                (aget(r)["fastckpt"]["blocking_s"], aget(r)[s]["blocking_s"])
                for r in rounds
                if "fastckpt" in aget(r) and s in aget(r)
            ]
            if pairs:
                a[f"blocking_vs_{s}"] = C.median([x / y for x, y in pairs if y > 0])
        out["async"][mode] = a
    fc = [rec["save"][m]["fastckpt"] for rec in rounds for m in modes if "fastckpt" in rec["save"][m]]
    cached = sorted({x["collectives"] for x in fc if x.get("plan_cached")})
    uncached = sorted({x["collectives"] for x in fc if not x.get("plan_cached")})
    out["collectives"] = {
        "first": first.get("collectives") if first else (uncached[0] if uncached else None),
        "first_plan_cached": first.get("plan_cached") if first else None,
        "cached": cached,
        "uncached": uncached,
    }
    return out


def summarize_loads(rounds: List[Dict[str, Any]], key: str, nbytes: int) -> Dict[str, Any]:
    def get(rec: Dict[str, Any]) -> Dict[str, Any]:
        return rec["load"][key]

    out: Dict[str, Any] = {"systems": {}}
    for s in ("fastckpt", "dcp"):
        xs = [get(r)[s] for r in rounds if s in get(r)]
        if not xs:
            continue
        st = _stats(xs, nbytes)
        st["checks"] = sorted({x["check"] for x in xs})
        st["verified"] = all(x["check"] == "ok" for x in xs)
        if all("rchar" in x for x in xs):
            st["rchar_ratio"] = C.median([x["rchar"] for x in xs]) / nbytes
        if all("bytes_read" in x for x in xs):
            st["bytes_read"] = C.median([x["bytes_read"] for x in xs])
            st["bytes_read_ratio"] = st["bytes_read"] / nbytes
            st["bytes_read_per_rank"] = xs[-1]["bytes_read_per_rank"]
        out["systems"][s] = st
    out["ratio"] = _paired(rounds, get, "fastckpt", "dcp")
    out["verified"] = bool(out["systems"]) and all(v["verified"] for v in out["systems"].values())
    return out


# ---------------------------------------------------------------------------------------------
# The part
# ---------------------------------------------------------------------------------------------


def reshard_pairs(ranks: Sequence[int]) -> List[Tuple[int, int]]:
    """(saved on, loaded on) beyond N -> N: both ways between the two largest rank counts."""
    rs = sorted(set(ranks))
    if len(rs) < 2:
        return []
    a, b = rs[-2], rs[-1]
    return [(b, a), (a, b)]


def default_timeout(size: int, rounds: int) -> float:
    """Seconds one launch may take: generous for a slow disk (durable saves of the whole state
    by three systems, twice for the asynchronous ones, per round), bounded all the same."""
    return 300.0 + 600.0 * rounds * size / 2**30


def run(cfg: Dict[str, Any], scratch: str, progress: Callable[[str], None]) -> Dict[str, Any]:
    """The distributed part: every launch, merged and summarized (``results["distributed"]``)."""
    from .dist_worker import layout

    ranks = sorted(set(int(r) for r in cfg["dist_ranks"]))
    size = int(cfg["dist_size"])
    rounds = int(cfg["rounds"])
    modes = [m for m in ("page-cache", "durable") if m in cfg["modes"]]
    timeout = float(cfg.get("dist_timeout") or default_timeout(size, rounds))
    _entries, info = layout(size)
    nbytes = info["nbytes"]
    out: Dict[str, Any] = {
        "state": info,
        "ranks": ranks,
        "modes": modes,
        "rounds": rounds,
        "size": size,
        "timeout_s": timeout,
        "launches": [],
        "saves": {},
        "loads": {},
        "summary": {"saves": {}, "loads": {}},
        "failed": [],
        "notes": [],
    }
    why = unavailable()
    if why:
        out["skipped"] = why
        return out
    base = {
        "size": size,
        "rounds": rounds,
        "modes": modes,
        "seed": cfg.get("seed", 0),
        "warmup": cfg.get("warmup", 0),
        "sync_between": cfg.get("sync_between", True),
        "timeout": min(timeout, 600.0),
        "start": cfg.get("start", time.time()),
    }
    root = os.path.join(scratch, "distributed")
    kept: Dict[int, Dict[str, str]] = {}
    for n in ranks:
        progress(f"distributed: save, {n} rank(s)")
        t = time.perf_counter()
        try:
            res = launch(
                n,
                dict(base, phase="save", dir=os.path.join(root, f"save-{n}")),
                os.path.join(root, f"launch-save-{n}"),
                timeout,
                progress,
            )
        except LaunchError as e:
            out["failed"].append(str(e))
            progress(f"distributed: {n}-rank save launch failed: {e}")
            continue
        out["launches"].append({"phase": "save", "ranks": n, "seconds": time.perf_counter() - t})
        kept[n] = res[0]["kept"]
        merged = _merge_rounds(res, "save,async")
        out["saves"][str(n)] = {
            "rounds": merged,
            "local_bytes": [r["local_bytes"] for r in res],
            "dcp_async": res[0]["dcp_async"],
        }
        first = None
        if res[0].get("first_fastckpt"):
            first = res[0]["first_fastckpt"]
        out["summary"]["saves"][str(n)] = summarize_saves(merged, modes, nbytes, first)
        if not res[0]["dcp_async"]:
            out["notes"].append("torch.distributed.checkpoint has no async_save: no DCP asynchronous saves")
    pairs = reshard_pairs(ranks)
    for m in ranks:
        sources = [n for n in [m] + [a for a, b in pairs if b == m] if n in kept]
        if not sources:
            continue
        progress(f"distributed: load on {m} rank(s) from " + ", ".join(f"{n}-rank" for n in sources) + " checkpoints")
        t = time.perf_counter()
        try:
            res = launch(
                m,
                dict(base, phase="load", sources=[dict(kept[n], **{"from": n}) for n in sources]),
                os.path.join(root, f"launch-load-{m}"),
                timeout,
                progress,
            )
        except LaunchError as e:
            out["failed"].append(str(e))
            progress(f"distributed: {m}-rank load launch failed: {e}")
            continue
        out["launches"].append({"phase": "load", "ranks": m, "seconds": time.perf_counter() - t})
        merged = _merge_rounds(res, "load")
        for n in sources:
            key = f"{n}->{m}"
            out["loads"][key] = {
                "from": n,
                "to": m,
                "rounds": [{"round": r["round"], "order": r["order"], "load": {key: r["load"][key]}} for r in merged],
            }
            out["summary"]["loads"][key] = summarize_loads(out["loads"][key]["rounds"], key, nbytes)
    out["verified"] = all(v["verified"] for v in out["summary"]["loads"].values())
    return out


def load_order(keys) -> List[str]:
    """Load keys ("N->M") for tables: N -> N by N, then the resharded ones by loading ranks."""

    def key(k: str) -> Tuple[int, int, int]:
        a, b = (int(x) for x in k.split("->"))
        return (0, a, 0) if a == b else (1, b, a)

    return sorted(keys, key=key)


def state_title(d: Dict[str, Any]) -> str:
    """What was saved, in words (the tables' headings)."""
    st = d.get("state", {})

    def num(key: str) -> str:
        v = st.get(key)
        return f"{v:,}" if isinstance(v, int) else "?"

    return (
        f"{st.get('nbytes', 0) / C.GB:.3f} GB: a transformer's parameters (hidden "
        f"{num('hidden')}, {num('layers')} layers, vocabulary {num('vocab')}) and AdamW's "
        f"exp_avg and exp_avg_sq, {num('tensors')} float32 DTensors sharded on dim 0 over a "
        "1-D CPU mesh, plus step and lr"
    )


def is_failure(d: Dict[str, Any]) -> bool:
    """A launch failed or a load restored a wrong value."""
    return bool(d.get("failed")) or any(not v["verified"] for v in d.get("summary", {}).get("loads", {}).values())
