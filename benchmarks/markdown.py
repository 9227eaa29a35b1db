"""Markdown tables of a run, in the format of the results in benchmarks/README.md.

``markdown(results)`` renders the dict of a ``summary.json``; keys missing from older files
(``info_ratios``, the ``raw-N1`` system, whole parts) are left out or shown as ``-``.
"""

from __future__ import annotations

import re
from typing import Dict, List, Optional

from ._common import GB
from .micro import size_label
from .report import MiB, fmt, workload_phases
from .systems import ORDER
from .targets import format_value

MODE_TITLES = {"page-cache": "page cache", "durable": "durable"}
MODE_SHORT = {"page-cache": "cache", "durable": "durable"}
RSS_METHODS = {"clear_refs": "VmHWM reset (`clear_refs`)", "sampling": "sampling VmRSS"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _row(cells: List[str]) -> str:
    return "|" + "".join(f" {c} |" if c else " |" for c in cells)


def _table(header: List[str], rows: List[List[str]]) -> str:
    return "\n".join([_row(header), "|" + "---|" * len(header)] + [_row(r) for r in rows])


def _and(names: List[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", ")")) else text + "."


def _ordered(names) -> List[str]:
    names = list(names)
    return [s for s in ORDER if s in names] + sorted(s for s in names if s not in ORDER)


def _gb(nbytes: Optional[float]) -> str:
    return "?" if nbytes is None else f"{nbytes / GB:.3f}"


def workload_heading(info: dict) -> str:
    n = info.get("tensors")
    text = f"#### {info.get('title', info.get('name', '?'))}: {_gb(info.get('nbytes'))} GB"
    if n is not None:
        text += f", {n:,} tensor{'' if n == 1 else 's'}"
    if info.get("dtypes"):
        text += f" ({', '.join(info['dtypes'])})"
    if info.get("shards", 1) > 1:
        text += f", {info['shards']} files per system"
    return text


def workload_table(w: dict) -> str:
    modes = list(w.get("modes", []))
    phases = workload_phases(w)
    saves = phases[:-1]
    summ = w.get("summary", {})
    systems = summ.get("systems", {})
    ratios = summ.get("ratios", {})
    header = (
        ["system"]
        + [f"save, {MODE_TITLES.get(m, m)} GB/s" for m in modes]
        + [
            "restore GB/s",
            "fastckpt ÷ system: " + " / ".join([MODE_SHORT.get(m, m) for m in modes] + ["restore"]),
            "CPU s save / restore",
            "extra RSS MiB save / restore",
        ]
    )
    rows = []
    failed_checks = []
    for s in _ordered(systems):
        per = systems[s]
        name = "**fastckpt**" if s == "fastckpt" else s
        if per.get("verified") is False:
            name += " (check FAILED)"
            failed_checks.append(f"{s} check FAILED: {'; '.join(per.get('checks', []))}")
        cells = [name] + [fmt(per.get(p, {}).get("gbps")) for p in phases]
        if s == "fastckpt":
            cells.append("–")
        else:
            cells.append(" / ".join(fmt(ratios.get(p, {}).get(s), "{:.2f}×") for p in phases))
        first_save = next((per[p] for p in saves if p in per), {})
        rst = per.get("restore", {})
        cells.append(f"{fmt(first_save.get('cpu_s'))} / {fmt(rst.get('cpu_s'))}")
        rss = [per[p]["rss_extra_max"] for p in saves if p in per and per[p].get("rss_extra_max") is not None]
        rss_save = max(rss) / MiB if rss else None
        rss_rst = rst.get("rss_extra_max")
        cells.append(f"{fmt(rss_save, '{:.0f}')} / {fmt(None if rss_rst is None else rss_rst / MiB, '{:.0f}')}")
        rows.append([_cell(c) for c in cells])
    parts = [workload_heading(w.get("workload", {})), _table(header, rows)]
    after = []
    for kind, entries in (("skipped", w.get("skipped", {})), ("failed", w.get("failed", {}))):
        by_reason: Dict[str, List[str]] = {}
        for s in _ordered(entries):
            by_reason.setdefault(entries[s], []).append(s)
        after += [f"{_and(names)} {kind}: {_sentence(why)}" for why, names in by_reason.items()]
    after += failed_checks
    if after:
        parts.append("\n".join(after))
    return "\n\n".join(parts)


def crc_table(crc: dict) -> str:
    sizes = crc.get("sizes", [])
    gbps = crc.get("median_gbps", {})
    rows = [[name] + [fmt(gbps.get(name, {}).get(str(n))) for n in sizes] for name in crc.get("impls", [])]
    vs = crc.get("ratio_vs_google") or {}
    if vs:
        rows.append(
            [f"{crc.get('default', 'fastckpt')} ÷ google-crc32c"] + [fmt(vs.get(str(n)), "{:.2f}×") for n in sizes]
        )
    return "#### CRC32C, GB/s on one thread\n\n" + _table(["implementation"] + [size_label(n) for n in sizes], rows)


def scaling_table(sc: dict) -> str:
    lv = sc.get("levels", [])
    s = sc.get("summary", {})

    def shards(k: int) -> str:
        return f"{k} shard{'' if k == 1 else 's'}"

    header = ["threads"] + [f"save, {shards(k)}" for k in lv] + [f"load, {shards(k)}" for k in lv] + ["raw write"]
    rows = [
        [str(t)]
        + [fmt(s.get("save_gbps", {}).get(f"{t},{k}")) for k in lv]
        + [fmt(s.get("load_gbps", {}).get(f"{t},{k}")) for k in lv]
        + [fmt(s.get("raw_save_gbps", {}).get(str(t)))]
        for t in lv
    ]
    return (
        f"#### Scaling: fastckpt, {_gb(sc.get('workload', {}).get('nbytes'))} GB float32 "
        "transformer, page cache, GB/s\n\n" + _table(header, rows)
    )


def _ranks(n: str) -> str:
    return f"{n} rank" + ("" if str(n) == "1" else "s")


def _mib(v: Optional[float]) -> str:
    return fmt(None if v is None else v / MiB, "{:.0f}")


def distributed_tables(d: dict) -> str:
    """The distributed part: saves, asynchronous saves, loads."""
    from .distributed import load_order, state_title

    if d.get("skipped"):
        return f"#### Distributed\n\nSkipped: {_sentence(d['skipped'])}"
    summ = d.get("summary", {})
    saves = summ.get("saves", {})
    ranks = sorted(saves, key=int)
    modes = list(d.get("modes", []))
    parts = [f"#### Distributed, {', '.join(map(str, d.get('ranks', [])))} gloo ranks on localhost: {state_title(d)}"]
    if saves:
        rows = []
        for n in ranks:
            s = saves[n]
            coll = s.get("collectives", {})
            cached = ", ".join(str(c) for c in coll.get("cached", [])) or "-"
            for mode in modes:
                per = s["save"].get(mode, {})
                rat = s["ratios"].get(mode, {})
                rows.append(
                    [_ranks(n), MODE_TITLES.get(mode, mode)]
                    + [fmt(per.get(x, {}).get("gbps")) for x in ("fastckpt", "dcp", "single")]
                    + [
                        fmt(rat.get("dcp"), "{:.2f}×"),
                        fmt(rat.get("single"), "{:.2f}×"),
                        f"{fmt(coll.get('first'), '{:d}')} / {cached}",
                        f"{_mib(per.get('fastckpt', {}).get('rss_extra_max'))} / "
                        f"{_mib(per.get('dcp', {}).get('rss_extra_max'))}",
                    ]
                )
        parts.append(
            "Saves, GB/s: state bytes over the wall time from a barrier before the "
            "save to one after it (the slowest rank's).\n\n"
            + _table(
                [
                    "ranks",
                    "mode",
                    "fastckpt.distributed",
                    "DCP",
                    "fastckpt.save, 1 process",
                    "fastckpt ÷ DCP",
                    "fastckpt ÷ 1 process",
                    "collectives, first / cached plan",
                    "extra RSS MiB per rank, fastckpt / DCP",
                ],
                rows,
            )
        )
        rows = []
        for n in ranks:
            for mode in modes:
                a = saves[n].get("async", {}).get(mode, {})
                fa, da = a.get("fastckpt", {}), a.get("dcp", {})
                rows.append(
                    [
                        _ranks(n),
                        MODE_TITLES.get(mode, mode),
                        fmt(fa.get("blocking_s"), "{:.3f}"),
                        fmt(a.get("copy", {}).get("blocking_s"), "{:.3f}"),
                        fmt(a.get("blocking_vs_copy"), "{:.2f}×"),
                        fmt(a.get("clone", {}).get("blocking_s"), "{:.3f}"),
                        fmt(fa.get("total_s"), "{:.2f}"),
                        fmt(da.get("blocking_s"), "{:.3f}"),
                        fmt(da.get("total_s"), "{:.2f}"),
                    ]
                )
        parts.append(
            "Asynchronous saves, seconds: *blocked* until the call returned (the "
            "slowest rank); *copy* / *clone*: the rank's local bytes copied into "
            "tensors allocated beforehand / into fresh ones; *done*: barrier to barrier, "
            "the save complete.\n\n"
            + _table(
                [
                    "ranks",
                    "mode",
                    "fastckpt blocked",
                    "copy",
                    "blocked ÷ copy",
                    "clone",
                    "fastckpt done",
                    "DCP async_save blocked",
                    "DCP done",
                ],
                rows,
            )
        )
    loads = summ.get("loads", {})
    if loads:
        rows = []
        failed = []
        for key in load_order(loads):
            v = loads[key]
            f, g = v["systems"].get("fastckpt", {}), v["systems"].get("dcp", {})
            saved, loaded = key.split("->")
            if not v.get("verified"):
                failed += [f"{key}: {c}" for x in (f, g) for c in x.get("checks", []) if c != "ok"]
            rows.append(
                [
                    f"{_ranks(saved)} → {_ranks(loaded)}",
                    fmt(f.get("gbps")),
                    fmt(g.get("gbps")),
                    fmt(v.get("ratio"), "{:.2f}×"),
                    f"{fmt(f.get('bytes_read_ratio'))} / {fmt(f.get('rchar_ratio'))} / {fmt(g.get('rchar_ratio'))}",
                    _mib(max(f["bytes_read_per_rank"]) if f.get("bytes_read_per_rank") else None),
                    f"{_mib(f.get('rss_extra_max'))} / {_mib(g.get('rss_extra_max'))}",
                    "ok" if v.get("verified") else "FAILED",
                ]
            )
        parts.append(
            "Loads, GB/s, into fresh DTensors of the loading ranks' sharding, every "
            "value checked; *read*: bytes read by all ranks over the state's bytes "
            "(fastckpt's `LoadReport.bytes_read`, then each system's `rchar`).\n\n"
            + _table(
                [
                    "saved on → loaded on",
                    "fastckpt",
                    "DCP",
                    "fastckpt ÷ DCP",
                    "read: fastckpt / fastckpt rchar / DCP rchar",
                    "fastckpt read MiB, largest rank",
                    "extra RSS MiB per rank, fastckpt / DCP",
                    "check",
                ],
                [[_cell(c) for c in r] for r in rows],
            )
        )
        if failed:
            parts.append("\n".join(_cell(x) for x in failed))
    return "\n\n".join(parts)


def _times(text: str) -> str:
    """Ratios written 0.80x in plain text, as 0.80× (the tables' sign)."""
    return re.sub(r"(\d)x\b", "\\1×", text)


def _target_text(text: str) -> str:
    return text.replace(" >= ", " ≥ ").replace(" <= ", " ≤ ").replace(" x ", " × ")


def targets_table(targets: dict) -> str:
    rows = targets.get("rows", [])
    keys: List[str] = []
    for r in rows:
        if r["key"] not in keys:
            keys.append(r["key"])
    out = []
    for k in keys:
        mine = [r for r in rows if r["key"] == k]
        cells = []
        for r in mine:
            val = format_value(r, "×")
            if r.get("status") == "MISS":
                val = f"**{val}**"
            info = "".join(f" (vs {p} {v:.2f}×)" for p, v in r.get("info_ratios", {}).items())
            note = f" ({_times(r['note'])})" if r.get("note") else ""
            cells.append(f"{r['scope'].replace('->', '→')} {val}{info}{note}")
        status = targets.get("overall", {}).get(k, "n/a")
        out.append(
            [
                _cell(f"**{status}**" if status == "MISS" else status),
                _cell(_target_text(mine[0]["text"])),
                _cell(", ".join(cells)),
            ]
        )
    parts = [
        "### Against the targets",
        ("Medians of paired per-round ratios; **MISS** marks a missed target and the cells that miss it."),
        _table(["", "target", "this run"], out),
    ]
    notes = [f"(vs {p}: {n})" for p, n in targets.get("info_notes", {}).items()]
    if notes:
        parts.append("\n".join(notes))
    return "\n\n".join(parts)


def markdown(results: dict) -> str:
    """The results of a run (the dict of summary.json) as markdown tables."""
    parts = []
    method = RSS_METHODS.get(results.get("rss_method"), results.get("rss_method"))
    wls = results.get("workloads", [])
    if wls:
        parts.append(
            (f"RSS was measured by {method}; " if method else "")
            + 'GB = 10⁹ B; medians over rounds; "fastckpt ÷ system" > 1 means '
            "fastckpt is faster; CPU s: user + sys of the first save mode and of the "
            "restore."
        )
    parts += [workload_table(w) for w in wls]
    if results.get("crc32c"):
        parts.append(crc_table(results["crc32c"]))
    if results.get("scaling"):
        parts.append(scaling_table(results["scaling"]))
    if results.get("distributed"):
        parts.append(distributed_tables(results["distributed"]))
    if results.get("compression"):
        from .bench_compression import markdown as compression_tables

        parts.append(compression_tables(results["compression"]))
    if results.get("targets", {}).get("rows"):
        parts.append(targets_table(results["targets"]))
    skipped = {s for w in wls for s in w.get("skipped", {})}
    notes = [n for n in results.get("notes", []) if not any(n.startswith(f"{s} skipped on ") for s in skipped)]
    if notes:
        parts.append("\n".join(f"Note: {n}" for n in notes))
    return "\n\n".join(parts) + "\n"
