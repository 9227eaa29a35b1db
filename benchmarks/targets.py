"""The performance targets, evaluated on a run's results: PASS or MISS for each.

Ratios are medians over rounds of paired ratios (fastckpt's throughput divided by the other
system's, in the same round), so that a slow spell of a shared machine hits both sides of a
ratio alike. A target is evaluated on every workload where both systems ran; its overall
verdict is PASS only if every evaluated cell passes.

Small tensors against the large tensor pairs round r of one workload with round r of the other;
the two workloads run one after the other (minutes apart), so that pairing is looser than the
pairs inside a workload.

Next to the targets against raw-N, each cell also reports fastckpt / raw-N1 (``info_ratios``,
same method): N threads into one file, the limit for a format that stores a tensor in one file.
It is information only and never changes a status.

The distributed part's targets (``--parts distributed``) pair the systems of one round of one
launch of the ranks: fastckpt.distributed against DCP for saves (each rank count, each mode) and
loads (every saved -> loaded pair), the 2-rank save against fastckpt.save of the same bytes in one
process, and the time an asynchronous save blocks against a plain copy of the rank's local bytes
into buffers allocated beforehand (the copy the snapshot has to make; per round, the slowest
rank's of each, then the median over rounds).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Dict, List, Optional

from . import _common as C

MiB = 1 << 20
RSS_LIMIT = 256 * MiB

# The distributed part's thresholds. Async blocking <= 1.5 x a copy: the call's floor is one copy
# of the local bytes (the snapshot); the 0.5 on top leaves room for the per-call work around it
# (walking the state, the plan lookup, starting the job), which at a few hundred tensors is
# milliseconds, but not for a second copy or a collective.
DIST_SAVE_VS_DCP = 1.5
DIST_LOAD_VS_DCP = 1.5
DIST_VS_ONE_PROCESS = 0.8
ASYNC_VS_COPY = 1.5

# Peers whose ratios are reported next to a target's peer, for information (no status).
INFO_PEERS = {"raw-N": ("raw-N1",)}
INFO_NOTES = {
    "raw-N1": "fastckpt / raw-N1, where raw-N1 is N threads writing (reading) "
    "disjoint ranges of one file: the limit for a format that stores a "
    "tensor in one file; information, not part of PASS/MISS"
}


@dataclass(frozen=True)
class Target:
    key: str
    text: str
    threshold: float
    op: str = ">="  # value OP threshold passes

    def passes(self, value: float) -> bool:
        return {">=": operator.ge, ">": operator.gt, "<=": operator.le}[self.op](value, self.threshold)


def _peer_targets(mode_names: List[str]) -> List[tuple]:
    out = []
    for mode in mode_names:
        phase = f"save:{mode}"
        out += [
            (Target(f"save/raw-N {mode}", f"save >= 0.9 x raw parallel write ({mode})", 0.9), phase, "raw-N"),
            (Target(f"save/tf-saver {mode}", f"save >= 2.5 x TF Saver ({mode})", 2.5), phase, "tf-saver"),
        ]
        for peer in ("safetensors", "torch", "numpy"):
            out.append((Target(f"save/{peer} {mode}", f"save ahead of {peer} ({mode})", 1.0, ">"), phase, peer))
    out += [
        (Target("restore/raw-N", "restore >= 0.9 x raw parallel read into fresh arrays", 0.9), "restore", "raw-N"),
        (Target("restore/tf-saver", "restore >= 3 x TF Saver", 3.0), "restore", "tf-saver"),
    ]
    return out


def _row(
    t: Target, scope: str, value: Optional[float], note: str = "", info_ratios: Optional[Dict[str, float]] = None
) -> dict:
    status = "n/a" if value is None else ("PASS" if t.passes(value) else "MISS")
    return {
        "key": t.key,
        "text": t.text,
        "scope": scope,
        "value": value,
        "threshold": t.threshold,
        "op": t.op,
        "status": status,
        "note": note,
        "info_ratios": info_ratios or {},
    }


def format_value(row: dict, times: str = "x") -> str:
    """A target row's value for tables: MiB, GB/s or a ratio with `times`.

    Ratios get two decimals, or more where two would round a miss onto its
    threshold (0.8996 is shown as 0.8996, not as a failing 0.90).
    """
    v = row.get("value")
    if v is None:
        return "n/a"
    if row["key"] == "save RSS":
        return f"{v / 2**20:.0f} MiB"
    if row["key"] == "crc32c GB/s":
        return f"{v:.1f} GB/s"
    text = f"{v:.2f}"
    if row.get("status") in ("PASS", "MISS") and "threshold" in row:
        target = Target("", "", row["threshold"], row.get("op", ">="))
        for digits in (3, 4, 5):
            if target.passes(float(text)) == (row["status"] == "PASS"):
                break
            text = f"{v:.{digits}f}"
    return text + times


def evaluate(results: dict) -> dict:
    rows: List[dict] = []
    wls = {w["workload"]["name"]: w for w in results.get("workloads", [])}
    modes: List[str] = []
    for w in wls.values():
        for m in w.get("modes", []):
            if m not in modes:
                modes.append(m)

    for t, phase, peer in _peer_targets(modes):
        for name, w in wls.items():
            ratios = w["summary"]["ratios"].get(phase, {})
            ratio = ratios.get(peer)
            if ratio is not None:
                info = {p: ratios[p] for p in INFO_PEERS.get(peer, ()) if p in ratios}
                rows.append(_row(t, name, ratio, info_ratios=info))

    # The drop-in path: fastckpt.Saver against TensorFlow's Saver on the same graph-mode
    # variables, paired by round.
    for name, w in wls.items():
        for phase in [f"save:{m}" for m in modes] + ["restore"]:
            ratios = []
            for rec in w["rounds"]:
                got = _get(rec, phase)
                ours, theirs = got.get("fastckpt-saver"), got.get("tf-saver")
                if ours and theirs:
                    ratios.append(theirs["seconds"] / ours["seconds"])
            if ratios:
                what = phase.replace("save:", "save, ").replace("restore", "restore")
                t = Target(f"drop-in {phase}", f"fastckpt.Saver >= 2.5 x TF Saver, same variables ({what})", 2.5)
                rows.append(_row(t, name, C.median(ratios)))

    # 100,000 small tensors at >= 0.5 x the large tensor's throughput (fastckpt, both workloads).
    small, large = wls.get("small"), wls.get("large")
    if small and large and "fastckpt" in small["systems"] and "fastckpt" in large["systems"]:
        sb, lb = small["workload"]["nbytes"], large["workload"]["nbytes"]
        for phase in [f"save:{m}" for m in modes] + ["restore"]:
            ratios = []
            for rs, rl in zip(small["rounds"], large["rounds"]):
                a = _get(rs, phase).get("fastckpt")
                b = _get(rl, phase).get("fastckpt")
                if a and b:
                    ratios.append((sb / a["seconds"]) / (lb / b["seconds"]))
            if ratios:
                t = Target(
                    f"small/large {phase}",
                    f"{small['workload']['tensors']:,} small tensors >= 0.5 x one large "
                    f"tensor ({phase.replace(':', ', ')})",
                    0.5,
                )
                rows.append(_row(t, "small vs large", C.median(ratios)))

    crc = results.get("crc32c")
    if crc:
        t = Target("crc32c/google", "CRC32C >= 1.0 x google-crc32c (one thread)", 1.0)
        for n in crc["sizes"]:
            v = crc["ratio_vs_google"].get(str(n))
            if v is not None:
                rows.append(_row(t, _size(n), v))
        best_n = max(crc["sizes"], key=lambda n: crc["median_gbps"][crc["default"]][str(n)])
        t = Target("crc32c GB/s", f"CRC32C >= 20 GB/s per core ({crc['default']}, best block size)", 20.0)
        rows.append(_row(t, _size(best_n), crc["median_gbps"][crc["default"]][str(best_n)]))

    # Extra RSS of a synchronous fastckpt.save, whatever the size: every save measured.
    peaks = []
    for name, w in wls.items():
        for rec in w["rounds"]:
            for m in rec["save"]:
                s = rec["save"][m].get("fastckpt")
                if s:
                    peaks.append((s["rss_extra"], f"{name} ({w['workload']['nbytes'] / C.GB:.2f} GB)"))
    sc = results.get("scaling")
    if sc:
        for rec in sc["rounds"]:
            for s in rec["save"].values():
                peaks.append((s["rss_extra"], f"scaling ({sc['workload']['nbytes'] / C.GB:.2f} GB)"))
    if peaks:
        t = Target("save RSS", "extra RSS during a synchronous fastckpt.save <= 256 MiB", RSS_LIMIT, "<=")
        worst = max(peaks)
        rows.append(_row(t, "max of all saves", float(worst[0]), f"worst: {worst[1]}; {len(peaks)} saves"))

    if results.get("distributed"):
        rows += _distributed_rows(results["distributed"])

    overall: Dict[str, str] = {}
    for r in rows:
        prev = overall.get(r["key"])
        if r["status"] == "MISS" or prev == "MISS":
            overall[r["key"]] = "MISS"
        elif r["status"] == "PASS":
            overall[r["key"]] = "PASS"
        else:
            overall.setdefault(r["key"], "n/a")
    shown = {p for r in rows for p in r["info_ratios"]}
    return {"rows": rows, "overall": overall, "info_notes": {p: n for p, n in INFO_NOTES.items() if p in shown}}


def _get(rec: dict, phase: str) -> dict:
    if phase == "restore":
        return rec.get("restore", {})
    return rec.get("save", {}).get(phase.split(":", 1)[1], {})


def _size(n: int) -> str:
    from .micro import size_label

    return size_label(n)


def _ranks(n: str) -> str:
    return f"{n} rank" + ("" if n == "1" else "s")


def _distributed_rows(d: dict) -> List[dict]:
    from .distributed import load_order

    rows: List[dict] = []
    summ = d.get("summary", {})
    saves = summ.get("saves", {})
    ranks = sorted(saves, key=int)
    modes = d.get("modes", [])
    for mode in modes:
        t = Target(
            f"dist save/dcp {mode}", f"distributed save >= {DIST_SAVE_VS_DCP:g} x DCP ({mode})", DIST_SAVE_VS_DCP
        )
        for n in ranks:
            v = saves[n]["ratios"].get(mode, {}).get("dcp")
            if v is not None:
                rows.append(_row(t, _ranks(n), v))
    t = Target(
        "dist load/dcp",
        f"distributed load >= {DIST_LOAD_VS_DCP:g} x DCP (saved on N ranks -> loaded on M)",
        DIST_LOAD_VS_DCP,
    )
    loads = summ.get("loads", {})
    for key in load_order(loads):
        v = loads[key]
        if v.get("ratio") is not None:
            rows.append(_row(t, key, v["ratio"]))
    for mode in modes:
        t = Target(
            f"dist save/one process {mode}",
            f"2-rank save >= {DIST_VS_ONE_PROCESS:g} x fastckpt.save in one process ({mode})",
            DIST_VS_ONE_PROCESS,
        )
        if "2" in saves and saves["2"]["ratios"].get(mode, {}).get("single") is not None:
            others = [
                f"{_ranks(n)} {saves[n]['ratios'][mode]['single']:.2f}x"
                for n in ranks
                if n != "2" and saves[n]["ratios"].get(mode, {}).get("single") is not None
            ]
            rows.append(
                _row(
                    t,
                    "2 ranks",
                    saves["2"]["ratios"][mode]["single"],
                    ("information: " + ", ".join(others)) if others else "",
                )
            )
    for mode in modes:
        t = Target(
            f"dist async {mode}",
            f"asynchronous save blocks <= {ASYNC_VS_COPY:g} x a copy of the rank's bytes ({mode})",
            ASYNC_VS_COPY,
            "<=",
        )
        for n in ranks:
            v = saves[n].get("async", {}).get(mode, {}).get("blocking_vs_copy")
            if v is not None:
                rows.append(_row(t, _ranks(n), v))
    return rows
