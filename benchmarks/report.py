"""Tables on stdout, the JSON file and the PNG plots of a run."""

from __future__ import annotations

import os
from typing import List, Optional, TextIO

from . import _common as C
from .micro import size_label
from .systems import ORDER
from .targets import format_value

MiB = 1 << 20
PHASE_TITLES = {"save:page-cache": "save, page cache", "save:durable": "save, durable (fsync)", "restore": "restore"}


def human(n: Optional[int]) -> str:
    if not n:
        return "?"
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def fmt(v: Optional[float], spec: str = "{:.2f}", none: str = "-") -> str:
    """`v` formatted by `spec`, or `none` when missing (text and markdown tables)."""
    return none if v is None else spec.format(v)


def workload_phases(w: dict) -> List[str]:
    """A workload's timed phases: one save per mode, then the restore."""
    return [f"save:{m}" for m in w.get("modes", [])] + ["restore"]


def print_workload(w: dict, out: TextIO) -> None:
    info = w["workload"]
    phases = workload_phases(w)
    summ = w["summary"]
    short = {"save:page-cache": "cache", "save:durable": "durable", "restore": "restore"}
    print(
        f"\n== {info['title']}: {info['nbytes'] / C.GB:.3f} GB in {info['tensors']:,} tensors "
        f"({', '.join(info['dtypes'])})"
        + (f", {info['shards']} files per system" if info["shards"] > 1 else "")
        + f"; {len(w['rounds'])} rounds; checksum {w['checksum']} ==",
        file=out,
    )
    nsave = sum(p.startswith("save") for p in phases)
    g1 = 9 * nsave
    g2 = 9 * len(phases)
    print(
        f"{'':14s}{'save GB/s':^{g1}s}{'restore':>9s} | {'fastckpt / system':^{g2}s} | "
        f"{'CPU s':^14s} | {'extra RSS MiB':^14s} | files  check",
        file=out,
    )
    print(
        f"{'system':14s}"
        + "".join(f"{short[p]:>9s}" for p in phases if p != "restore")
        + f"{'GB/s':>9s} | "
        + "".join(f"{short[p]:>9s}" for p in phases)
        + f" | {'save':>6s}{'restore':>8s} | {'save':>6s}{'restore':>8s} |",
        file=out,
    )
    for s in [x for x in ORDER if x in summ["systems"]]:
        per = summ["systems"][s]
        line = f"{s:14s}"
        for p in phases:
            line += f"{fmt(per.get(p, {}).get('gbps')):>9s}"
        line += " | "
        for p in phases:
            r = None if s == "fastckpt" else summ["ratios"].get(p, {}).get(s)
            line += f"{fmt(r, '{:.2f}x', '' if s == 'fastckpt' else '-'):>9s}"
        first_save = next((per[p] for p in phases if p.startswith("save") and p in per), {})
        rss_save = max((per[p]["rss_extra_max"] for p in phases if p.startswith("save") and p in per), default=None)
        rst = per.get("restore", {})
        line += f" | {fmt(first_save.get('cpu_s')):>6s}{fmt(rst.get('cpu_s')):>8s}"
        line += f" | {fmt(None if rss_save is None else rss_save / MiB, '{:.0f}'):>6s}"
        line += f"{fmt(None if not rst else rst['rss_extra_max'] / MiB, '{:.0f}'):>8s}"
        line += f" | {fmt(first_save.get('files'), '{:d}'):>5s}  "
        line += "ok" if per["verified"] else "FAILED " + "; ".join(per["checks"])
        print(line, file=out)
    print(
        "(GB = 1e9 B; medians over rounds; fastckpt / system: median of per-round ratios of "
        "throughput, > 1 means fastckpt is faster; CPU s: user + sys of the first save mode "
        "and of the restore; extra RSS: peak above the level before, worst round)",
        file=out,
    )
    for s, why in w["skipped"].items():
        print(f"  skipped {s}: {why}", file=out)
    for s, why in w["failed"].items():
        print(f"  FAILED {s}: {why}", file=out)


def print_crc(crc: dict, out: TextIO) -> None:
    sizes = crc["sizes"]
    print(
        f"\n== CRC32C, GB/s on one thread (median of {len(crc['rounds'])} alternating rounds, "
        f"each the best batch of >= {crc['min_time_s']} s) ==",
        file=out,
    )
    width = max(len(n) for n in crc["impls"]) + 2
    print("impl".ljust(width) + "".join(f"{size_label(n):>10s}" for n in sizes), file=out)
    for name in crc["impls"]:
        print(name.ljust(width) + "".join(f"{crc['median_gbps'][name][str(n)]:10.2f}" for n in sizes), file=out)
    if crc["ratio_vs_google"]:
        print(
            f"{crc['default']} / google-crc32c (paired)".ljust(width)
            + "".join(f"{crc['ratio_vs_google'][str(n)]:9.2f}x" for n in sizes),
            file=out,
        )


def print_scaling(sc: dict, out: TextIO) -> None:
    lv = sc["levels"]
    s = sc["summary"]
    info = sc["workload"]
    print(
        f"\n== fastckpt scaling, {info['nbytes'] / C.GB:.3f} GB float32 transformer, page "
        f"cache, median of {len(sc['rounds'])} rounds (GB/s) ==",
        file=out,
    )
    print(
        f"{'threads':>8s}"
        + "".join(f"{'save s=' + str(k):>12s}" for k in lv)
        + "".join(f"{'load s=' + str(k):>12s}" for k in lv)
        + f"{'raw write':>12s}",
        file=out,
    )
    for t in lv:
        print(
            f"{t:8d}"
            + "".join(f"{s['save_gbps'][f'{t},{k}']:12.2f}" for k in lv)
            + "".join(f"{s['load_gbps'][f'{t},{k}']:12.2f}" for k in lv)
            + f"{s['raw_save_gbps'][str(t)]:12.2f}",
            file=out,
        )
    print(f"(s = num_shards; largest extra RSS of these saves: {s['save_rss_extra_max'] / MiB:.0f} MiB)", file=out)


def _mib(v: Optional[float]) -> str:
    return fmt(None if v is None else v / MiB, "{:.0f}")


def print_distributed(d: dict, out: TextIO) -> None:
    from .distributed import load_order, state_title

    if d.get("skipped"):
        print(f"\n== distributed: skipped: {d['skipped']} ==", file=out)
        return
    summ = d.get("summary", {})
    saves = summ.get("saves", {})
    print(
        f"\n== distributed, {', '.join(map(str, d.get('ranks', [])))} gloo rank(s), "
        f"{d.get('rounds')} rounds: {state_title(d)} ==",
        file=out,
    )
    if saves:
        print("saves, GB/s (state bytes / wall time from a barrier before to one after, the slowest rank's)", file=out)
        print(
            f"{'ranks':>5s}  {'mode':10s}{'fastckpt':>9s}{'DCP':>7s}{'1 proc':>8s} | "
            f"{'/DCP':>6s}{'/1 proc':>8s} | {'collectives':>11s} | {'extra RSS MiB/rank':>18s}",
            file=out,
        )
        print(f"{'':5s}  {'':10s}{'':24s} | {'':14s} | {'1st/cached':>11s} | {'fastckpt':>9s}{'DCP':>9s}", file=out)
        for n in sorted(saves, key=int):
            s = saves[n]
            coll = s.get("collectives", {})
            ctext = f"{fmt(coll.get('first'), '{:d}')}/" + ",".join(str(c) for c in coll.get("cached", [])) or "-"
            for mode in d.get("modes", []):
                per = s["save"].get(mode, {})
                rat = s["ratios"].get(mode, {})
                rss = [per.get(x, {}).get("rss_extra_max") for x in ("fastckpt", "dcp")]
                print(
                    f"{n:>5s}  {mode:10s}"
                    + "".join(
                        f"{fmt(per.get(x, {}).get('gbps')):>{w}s}"
                        for x, w in (("fastckpt", 9), ("dcp", 7), ("single", 8))
                    )
                    + f" | {fmt(rat.get('dcp'), '{:.2f}x'):>6s}"
                    f"{fmt(rat.get('single'), '{:.2f}x'):>8s} | {ctext:>11s} | "
                    + "".join(f"{_mib(v):>9s}" for v in rss),
                    file=out,
                )
        print(
            "asynchronous saves, seconds (blocked: until the call returned, slowest rank; "
            "copy/clone: the rank's bytes into preallocated/fresh tensors; done: barrier to "
            "barrier)",
            file=out,
        )
        print(
            f"{'ranks':>5s}  {'mode':10s}{'blocked':>9s}{'copy':>7s}{'/copy':>7s}"
            f"{'clone':>7s}{'done':>7s} | {'DCP blocked':>11s}{'done':>7s}",
            file=out,
        )
        for n in sorted(saves, key=int):
            for mode in d.get("modes", []):
                a = saves[n].get("async", {}).get(mode, {})
                fa, da = a.get("fastckpt", {}), a.get("dcp", {})
                print(
                    f"{n:>5s}  {mode:10s}{fmt(fa.get('blocking_s'), '{:.3f}'):>9s}"
                    f"{fmt(a.get('copy', {}).get('blocking_s'), '{:.3f}'):>7s}"
                    f"{fmt(a.get('blocking_vs_copy'), '{:.2f}x'):>7s}"
                    f"{fmt(a.get('clone', {}).get('blocking_s'), '{:.3f}'):>7s}"
                    f"{fmt(fa.get('total_s'), '{:.2f}'):>7s} | "
                    f"{fmt(da.get('blocking_s'), '{:.3f}'):>11s}"
                    f"{fmt(da.get('total_s'), '{:.2f}'):>7s}",
                    file=out,
                )
    loads = summ.get("loads", {})
    if loads:
        print(
            "loads, GB/s (into fresh DTensors of the loading ranks' sharding; every value "
            "checked; read: bytes read over all ranks / state bytes, fastckpt's LoadReport and "
            "each system's rchar)",
            file=out,
        )
        print(
            f"{'saved->loaded':>13s}{'fastckpt':>9s}{'DCP':>7s}{'/DCP':>7s} | "
            f"{'read':>5s}{'rchar':>7s}{'DCP rchar':>10s} | {'extra RSS MiB/rank':>18s} | check",
            file=out,
        )
        for key in load_order(loads):
            v = loads[key]
            f, g = v["systems"].get("fastckpt", {}), v["systems"].get("dcp", {})
            checks = (
                "ok"
                if v.get("verified")
                else "FAILED " + "; ".join(c for x in (f, g) for c in x.get("checks", []) if c != "ok")
            )
            print(
                f"{key:>13s}{fmt(f.get('gbps')):>9s}{fmt(g.get('gbps')):>7s}"
                f"{fmt(v.get('ratio'), '{:.2f}x'):>7s} | "
                f"{fmt(f.get('bytes_read_ratio')):>5s}{fmt(f.get('rchar_ratio')):>7s}"
                f"{fmt(g.get('rchar_ratio')):>10s} | "
                + "".join(f"{_mib(x.get('rss_extra_max')):>9s}" for x in (f, g))
                + f" | {checks}",
                file=out,
            )
    for f in d.get("failed", []):
        print(f"  FAILED: {f.splitlines()[0]}", file=out)


def print_targets(targets: dict, out: TextIO) -> None:
    rows = targets["rows"]
    if not rows:
        return
    print("\n== targets (medians of paired per-round ratios) ==", file=out)
    keys: List[str] = []
    for r in rows:
        if r["key"] not in keys:
            keys.append(r["key"])
    width = max(len(r["text"]) for r in rows) + 2
    for k in keys:
        mine = [r for r in rows if r["key"] == k]
        cells = []
        for r in mine:
            val = format_value(r)
            info = "".join(f" (vs {p} {v:.2f}x)" for p, v in r.get("info_ratios", {}).items())
            cells.append(f"{r['scope']} {val} {r['status']}{info}")
        print(f"{targets['overall'][k]:5s} {mine[0]['text'].ljust(width)}" + "; ".join(cells), file=out)
        notes = [r["note"] for r in mine if r["note"]]
        if notes:
            print(f"{'':6s}{'':{width}s}({'; '.join(notes)})", file=out)
    for p, note in targets.get("info_notes", {}).items():
        print(f"(vs {p}: {note})", file=out)


def print_all(results: dict, out: TextIO) -> None:
    for w in results.get("workloads", []):
        print_workload(w, out)
    if results.get("crc32c"):
        print_crc(results["crc32c"], out)
    if results.get("scaling"):
        print_scaling(results["scaling"], out)
    if results.get("distributed"):
        print_distributed(results["distributed"], out)
    if results.get("compression"):
        from .bench_compression import print_report as print_compression

        print_compression(results["compression"], out)
    print_targets(results.get("targets", {"rows": []}), out)
    for n in results.get("notes", []):
        print(f"note: {n}", file=out)


# ---------------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------------

COLORS = {
    "fastckpt": "#d62728",
    "raw-N": "#7f7f7f",
    "raw-N1": "#a5a5a5",
    "raw-1": "#c7c7c7",
    "tf-saver": "#ff7f0e",
    "tf-checkpoint": "#ffbb78",
    "torch": "#1f77b4",
    "safetensors": "#2ca02c",
    "numpy": "#9467bd",
}


def plot(results: dict, out_dir: str) -> List[str]:
    """throughput.png (every system and workload) and, with micro-benchmarks, micro.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    wls = results.get("workloads", [])
    if wls:
        phases = []
        for w in wls:
            for p in workload_phases(w):
                if p not in phases:
                    phases.append(p)
        systems = [s for s in ORDER if any(s in w["summary"]["systems"] for w in wls)]
        fig, axes = plt.subplots(len(phases), 1, figsize=(11, 3.3 * len(phases)), squeeze=False)
        nsys = len(systems)
        barw = 0.8 / max(1, nsys)
        for ax, phase in zip(axes[:, 0], phases):
            for i, s in enumerate(systems):
                xs, ys = [], []
                for j, w in enumerate(wls):
                    v = w["summary"]["systems"].get(s, {}).get(phase, {}).get("gbps")
                    if v is not None:
                        xs.append(j - 0.4 + barw * (i + 0.5))
                        ys.append(v)
                ax.bar(
                    xs,
                    ys,
                    width=barw,
                    color=COLORS.get(s),
                    label=s,
                    edgecolor="black" if s == "fastckpt" else "none",
                    linewidth=0.6,
                )
            ax.set_xticks(range(len(wls)))
            ax.set_xticklabels([w["workload"]["title"] for w in wls], fontsize=8)
            ax.set_ylabel("GB/s")
            ax.set_title(PHASE_TITLES[phase], fontsize=10)
            ax.grid(axis="y", alpha=0.3)
        axes[0, 0].legend(ncol=min(nsys, 8), fontsize=7, loc="upper right")
        m = results.get("machine", {})
        size = results.get("config", {}).get("size")
        fig.suptitle(
            f"fastckpt benchmarks: throughput by system and workload "
            f"({human(size)} each; medians of "
            f"{results.get('config', {}).get('rounds')} rounds)\n"
            f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
            f"{m.get('ram_gib', '?')} GiB, "
            f"{m.get('filesystem', {}).get('fstype', '?')}",
            fontsize=10,
        )
        fig.tight_layout()
        path = os.path.join(out_dir, "throughput.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    crc, sc = results.get("crc32c"), results.get("scaling")
    if crc or sc:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), squeeze=False)
        ax = axes[0, 0]
        if crc:
            for name in crc["impls"]:
                ax.plot(crc["sizes"], [crc["median_gbps"][name][str(n)] for n in crc["sizes"]], marker="o", label=name)
            ax.set_xscale("log", base=2)
            ax.set_xticks(crc["sizes"])
            ax.set_xticklabels([size_label(n) for n in crc["sizes"]], fontsize=8)
            ax.set_ylabel("GB/s, one thread")
            ax.set_title("CRC32C", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax = axes[0, 1]
        if sc:
            lv = sc["levels"]
            s = sc["summary"]
            for k in lv:
                ax.plot(
                    lv,
                    [s["save_gbps"][f"{t},{k}"] for t in lv],
                    marker="o",
                    label=f"save, {k} shard{'s' if k > 1 else ''}",
                )
            ax.plot(
                lv,
                [s["load_gbps"][f"{t},{lv[-1]}"] for t in lv],
                marker="s",
                linestyle="--",
                label=f"load, {lv[-1]} shards",
            )
            ax.plot(lv, [s["raw_save_gbps"][str(t)] for t in lv], marker="x", color="gray", label="raw write")
            ax.set_xticks(lv)
            ax.set_xlabel("threads")
            ax.set_ylabel("GB/s")
            ax.set_title(f"fastckpt scaling ({sc['workload']['nbytes'] / C.GB:.2f} GB, page cache)", fontsize=10)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out_dir, "micro.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def have_matplotlib() -> Optional[str]:
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        return f"matplotlib not importable ({e}); no plot (pip install matplotlib)"
    return None
