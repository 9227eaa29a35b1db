"""The measurement loop of one workload: every system, alternating, round after round.

Round r runs the systems in the canonical order rotated by r (round 0 starts with the first
system, round 1 with the second, ...), first every page-cache save, then every durable save,
then every restore (reading the files of the last save mode). Each system writes into its own
fresh directory; files of a save that is not restored are deleted right after it (untimed).
After every restore the values are checked against the saved ones, untimed: names, dtypes,
shapes and a CRC32C of every tensor's bytes.

Run as ``python -m benchmarks.suite CONFIG.json WORKLOAD RESULT.json`` (what the command line
does for each workload unless --no-isolate), or call :func:`run_workload`.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import sys
import time
import traceback
from typing import Dict, List, Optional

from . import _common as C
from . import workloads as W
from .measure import PeakRss, count_files, fsync_tree, measure
from .systems import REGISTRY, Options, System

MODES = ("page-cache", "durable")
WARMUP_MAX_TENSORS = 1000


class Progress:
    """One line per measurement on stderr, with the time since the run started."""

    def __init__(self, start: Optional[float] = None, quiet: bool = False):
        self.start = start if start is not None else time.time()
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        if self.quiet:
            return
        el = int(time.time() - self.start)
        print(f"[{el // 60:3d}:{el % 60:02d}] {msg}", file=sys.stderr, flush=True)


_UNAVAILABLE: Dict[str, Optional[str]] = {}


def unavailable(name: str) -> Optional[str]:
    if name not in _UNAVAILABLE:
        _UNAVAILABLE[name] = REGISTRY[name].unavailable()
    return _UNAVAILABLE[name]


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()[:500]


def run_workload(cfg: dict, name: str, progress: Progress) -> dict:
    opts = Options(cfg.get("threads"), cfg.get("tf_max_tensors", 10_000))
    t0 = time.perf_counter()
    w = W.build(name, cfg["size"], small_count=cfg["small_count"], shards=cfg["shards"], seed=cfg.get("seed", 0))
    w.digest()
    gen_s = time.perf_counter() - t0
    progress(
        f"{name}: {w.nbytes / C.GB:.3f} GB in {w.count:,} tensors ({', '.join(w.dtypes)}) generated in {gen_s:.1f} s"
    )

    result = {
        "workload": w.describe(),
        "checksum": W.checksum(w),
        "systems": [],
        "skipped": {},
        "failed": {},
        "labels": {},
        "versions": {},
        "prepare_s": {},
        "rounds": [],
        "rss_method": PeakRss.method,
    }
    active: List[System] = []
    for sname in cfg["systems"]:
        why = unavailable(sname)
        if why:
            result["skipped"][sname] = why
            continue
        s = REGISTRY[sname](opts)
        why = s.skip_reason(w)
        if why:
            result["skipped"][sname] = why
            continue
        try:
            t = time.perf_counter()
            s.prepare(w)
            result["prepare_s"][sname] = time.perf_counter() - t
        except Exception as e:  # noqa: BLE001 - one broken peer must not stop the run
            result["failed"][sname] = f"prepare: {_error(e)}"
            progress(f"{name}: {sname} failed to prepare: {_error(e)}")
            continue
        result["labels"][sname] = s.label + (f" ({s.files_note})" if s.files_note else "")
        result["versions"][sname] = s.version()
        active.append(s)
    for sname, why in result["skipped"].items():
        progress(f"{name}: {sname} skipped: {why}")

    # Everything built so far (imports, TensorFlow graphs, the arrays) lives until the end of
    # the workload: freezing it keeps the full collection before each measurement short
    # (about a second per collection with TensorFlow and torch imported, otherwise).
    gc.collect()
    gc.freeze()
    sync = cfg.get("sync_between", True)
    modes = [m for m in MODES if m in cfg["modes"]]
    restore_from = modes[-1]
    rounds = cfg["rounds"]
    scratch = cfg["scratch"]
    if cfg.get("warmup", 0) and active:
        # One untimed page-cache save and restore per system: first calls pay for imports,
        # thread pools and code paths that later calls find ready. Workloads of many tensors
        # warm up on their first WARMUP_MAX_TENSORS tensors (fresh adapters): a full pass of
        # the slow peers there would cost minutes and warm nothing more.
        t = time.perf_counter()
        mini = None
        if w.count > WARMUP_MAX_TENSORS:
            names = list(w.tensors)[:WARMUP_MAX_TENSORS]
            mini = W.Workload(w.name, w.title, {n: w.tensors[n] for n in names}, shards=w.shards)
        for s in active:
            d = os.path.join(scratch, f"{name}-warmup", s.name)
            os.makedirs(d)
            try:
                target, ref = s, w
                if mini is not None:
                    target, ref = REGISTRY[s.name](opts), mini
                    target.prepare(mini)
                target.save(os.path.join(d, "ckpt"), False)
                bad = W.check(ref, target.values(target.restore(os.path.join(d, "ckpt"))))
                if mini is not None:
                    target.close()
                if bad:
                    raise RuntimeError(f"wrong values: {bad}")
            except Exception as e:  # noqa: BLE001
                result["failed"][s.name] = f"warm-up: {_error(e)}"
                progress(f"{name}: {s.name} failed in the warm-up: {_error(e)}")
            shutil.rmtree(d, ignore_errors=True)
        result["warmup_s"] = time.perf_counter() - t
        progress(f"{name}: warm-up (one untimed save and restore per system) took {result['warmup_s']:.0f} s")

    rounds_start = time.perf_counter()
    for r in range(rounds):
        if r:
            per_round = (time.perf_counter() - rounds_start) / r
            progress(f"{name}: {r}/{rounds} rounds done, about {per_round * (rounds - r):.0f} s left in this workload")
        live = [s for s in active if s.name not in result["failed"]]
        if not live:
            break
        k = r % len(live)
        order = live[k:] + live[:k]
        rec = {"round": r, "order": [s.name for s in order], "save": {m: {} for m in modes}, "restore": {}, "check": {}}
        rdir = os.path.join(scratch, f"{name}-round{r}")
        for mode in modes:
            durable = mode == "durable"
            for s in order:
                if s.name in result["failed"]:
                    continue
                d = os.path.join(rdir, mode, s.name)
                os.makedirs(d)
                prefix = os.path.join(d, "ckpt")

                def op(s=s, prefix=prefix, d=d, durable=durable):
                    s.save(prefix, durable)
                    if durable:
                        fsync_tree(d)

                try:
                    _, sample = measure(op, sync=sync)
                except Exception as e:  # noqa: BLE001
                    result["failed"][s.name] = f"{mode} save: {_error(e)}"
                    progress(f"{name}: {s.name} {mode} save failed: {_error(e)}")
                    if cfg.get("debug"):
                        traceback.print_exc()
                    continue
                files, size = count_files(d)
                rec["save"][mode][s.name] = dict(sample.to_json(), files=files, file_bytes=size)
                progress(
                    f"{name} round {r + 1}/{rounds} {mode:10s} save    {s.name:14s}"
                    f"{C.gbps(w.nbytes, sample.seconds):7.2f} GB/s"
                )
                if mode != restore_from:
                    shutil.rmtree(d, ignore_errors=True)
        for s in order:
            if s.name in result["failed"]:
                continue
            prefix = os.path.join(rdir, restore_from, s.name, "ckpt")
            try:
                out, sample = measure(lambda s=s, prefix=prefix: s.restore(prefix), sync=sync, prefault_bytes=w.nbytes)
                bad = W.check(w, s.values(out))
            except Exception as e:  # noqa: BLE001
                result["failed"][s.name] = f"restore: {_error(e)}"
                progress(f"{name}: {s.name} restore failed: {_error(e)}")
                if cfg.get("debug"):
                    traceback.print_exc()
                continue
            del out
            rec["restore"][s.name] = sample.to_json()
            rec["check"][s.name] = bad or "ok"
            progress(
                f"{name} round {r + 1}/{rounds} {'':10s} restore {s.name:14s}"
                f"{C.gbps(w.nbytes, sample.seconds):7.2f} GB/s" + ("" if bad is None else f"  WRONG VALUES: {bad}")
            )
        shutil.rmtree(rdir, ignore_errors=True)
        result["rounds"].append(rec)

    for s in active:
        try:
            s.close()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
    gc.unfreeze()
    result["systems"] = [s.name for s in active if s.name not in result["failed"]]
    result["modes"] = modes
    result["restore_from"] = restore_from
    result["summary"] = summarize(result, w.nbytes)
    return result


def summarize(result: dict, nbytes: int) -> dict:
    """Medians per system and phase, and fastckpt's paired ratios against every other system."""
    rounds = result["rounds"]
    systems = result["systems"]
    out = {"systems": {}, "ratios": {}}
    phases = [(f"save:{m}", lambda rec, m=m: rec["save"][m]) for m in result["modes"]]
    phases.append(("restore", lambda rec: rec["restore"]))
    for s in systems:
        per = {}
        for phase, get in phases:
            samples = [get(rec)[s] for rec in rounds if s in get(rec)]
            if not samples:
                continue
            secs = [x["seconds"] for x in samples]
            med = C.median(secs)
            per[phase] = {
                "median_s": med,
                "gbps": C.gbps(nbytes, med),
                "min_s": min(secs),
                "max_s": max(secs),
                "cpu_s": C.median([x["cpu_s"] for x in samples]),
                "rss_extra_max": max(x["rss_extra"] for x in samples),
                "rss_extra_median": C.median([x["rss_extra"] for x in samples]),
                "files": samples[-1].get("files"),
                "file_bytes": samples[-1].get("file_bytes"),
                "n": len(samples),
            }
        per["checks"] = sorted({rec["check"].get(s, "missing") for rec in rounds})
        per["verified"] = bool(rounds) and all(rec["check"].get(s) == "ok" for rec in rounds)
        out["systems"][s] = per
    if "fastckpt" in systems:
        for phase, get in phases:
            ratios = {}
            for s in systems:
                if s == "fastckpt":
                    continue
                pairs = [
                    (get(rec)["fastckpt"]["seconds"], get(rec)[s]["seconds"])
                    for rec in rounds
                    if "fastckpt" in get(rec) and s in get(rec)
                ]
                if pairs:
                    ratios[s] = C.paired_ratio([a for a, _ in pairs], [b for _, b in pairs])
            out["ratios"][phase] = ratios
    return out


def worker_main(argv: List[str]) -> int:
    cfg_path, name, out_path = argv
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    progress = Progress(cfg.get("start"), quiet=cfg.get("quiet", False))
    result = run_workload(cfg, name, progress)
    C.write_json(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
