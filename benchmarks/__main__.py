"""``python -m benchmarks``: fastckpt against its peers, every workload, one command.

    python -m benchmarks             # full run: 1 GiB per workload, 3 rounds, table, JSON, PNG
    python -m benchmarks --quick     # seconds: tiny sizes, 2 rounds (the CI smoke test; no
                                     # distributed part unless --parts names it)
    python -m benchmarks --size 4GiB --rounds 3 --workloads transformer-fp32,large
    python -m benchmarks --parts distributed   # 1, 2, 4 gloo ranks: fastckpt.distributed vs DCP
    python -m benchmarks --parts compression   # zstd on real weights (needs the bench extra)
    python -m benchmarks --markdown-from benchmarks/latest/summary.json   # tables, no run

See benchmarks/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, Optional

from . import _common as C
from . import report, suite, targets
from . import workloads as W
from .markdown import markdown
from .measure import PeakRss
from .systems import ORDER, expand

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("workloads", "crc32c", "scaling", "distributed", "compression")
# --quick leaves out the distributed part unless --parts names it: its launches of 1, 2 and 4
# torch processes take half a minute even at 4 MiB, and the quick run is meant to take seconds.
QUICK_PARTS = ("workloads", "crc32c", "scaling")

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "m": 1e6,
    "mb": 1e6,
    "g": 1e9,
    "gb": 1e9,
    "t": 1e12,
    "tb": 1e12,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 512MiB, 0.5GB, 1000000)")
    n = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if n <= 0:
        raise argparse.ArgumentTypeError("size must be positive")
    return n


def _list(text: str) -> List[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run in seconds: 4 MiB, 300 small tensors, 2 rounds, short micro-benchmarks, no plot",
    )
    p.add_argument("--size", type=parse_size, default=None, help="bytes per workload, e.g. 1GiB (default), 256MiB, 2GB")
    p.add_argument("--workloads", type=_list, default=None, help=f"comma list from {', '.join(W.ALL)} (default: all)")
    p.add_argument(
        "--systems",
        type=_list,
        default=None,
        help=f"comma list from {', '.join(ORDER)}, or the aliases raw, tf (default: all; fastckpt is always included)",
    )
    p.add_argument(
        "--parts",
        type=_list,
        default=None,
        help=f"what to run: {', '.join(PARTS)} (default: all; with --quick all but distributed and compression)",
    )
    p.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds per workload (default 3; 2 with --quick)"
    )
    p.add_argument(
        "--modes",
        type=_list,
        default=["page-cache", "durable"],
        help="save modes: page-cache, durable (default: both; restores read the files of the last one)",
    )
    p.add_argument(
        "--small-count",
        type=int,
        default=None,
        help="tensors in the small-tensor workload (default 100000; 300 with --quick)",
    )
    p.add_argument(
        "--shards", type=int, default=None, help="files per system in the sharded workload (default 8; 4 with --quick)"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads of raw-N and raw-N1, and fastckpt's threads= (default: cores "
        "for raw-N and raw-N1, fastckpt's own default)",
    )
    p.add_argument(
        "--tf-max-tensors",
        type=int,
        default=10_000,
        help="skip the TensorFlow systems on workloads with more tensors (default 10000)",
    )
    p.add_argument(
        "--crc-sizes", type=_list, default=None, help="CRC32C block sizes (default 4KiB,64KiB,1MiB,16MiB,64MiB)"
    )
    p.add_argument(
        "--scaling-size",
        type=parse_size,
        default=None,
        help="checkpoint size of the scaling grid (default: min(--size, 256MiB))",
    )
    p.add_argument(
        "--dist-size",
        type=parse_size,
        default=None,
        help="distributed part: bytes of the whole state, parameters and both AdamW "
        "moments (default: min(--size, 1GiB))",
    )
    p.add_argument(
        "--dist-ranks",
        type=_list,
        default=None,
        help="distributed part: rank counts (default 1,2,4); loads are resharded both ways between the two largest",
    )
    p.add_argument(
        "--dist-timeout",
        type=float,
        default=None,
        help="distributed part: seconds one launch of the ranks may take before it "
        "is stopped (default: 300 + 600 x rounds x GiB of --dist-size)",
    )
    p.add_argument(
        "--dir",
        default=None,
        help="parent of the scratch directory (default: the temp dir); the scratch "
        "directory is created fresh and removed at the end",
    )
    p.add_argument(
        "--out",
        default=None,
        help="where summary.json, results.md and the plots go (default: benchmarks/results/YYYYmmdd-HHMMSS)",
    )
    p.add_argument(
        "--plot", dest="plot", action="store_true", default=None, help="write the PNG plots (default in full mode)"
    )
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument(
        "--isolate",
        dest="isolate",
        action="store_true",
        default=None,
        help="run each workload in a fresh Python process (default in full mode)",
    )
    p.add_argument("--no-isolate", dest="isolate", action="store_false")
    p.add_argument(
        "--warmup",
        type=int,
        choices=(0, 1),
        default=None,
        help="1: one untimed save and restore per system before the rounds "
        "(default in full mode), 0: none (default with --quick)",
    )
    p.add_argument(
        "--no-sync",
        dest="sync_between",
        action="store_false",
        default=None,
        help="skip the untimed os.sync() before each measurement (default with "
        "--quick, where the numbers only show that everything runs)",
    )
    p.add_argument("--force", action="store_true", help="run even if memory looks too small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="print tracebacks of failures")
    p.add_argument(
        "--markdown-from",
        metavar="SUMMARY_JSON",
        default=None,
        help="print the markdown tables of an existing summary.json and exit (runs nothing)",
    )
    args = p.parse_args(argv)

    q = args.quick
    args.size = args.size or (4 << 20 if q else 1 << 30)
    args.rounds = args.rounds or (2 if q else 3)
    args.small_count = args.small_count or (300 if q else 100_000)
    args.shards = args.shards or (4 if q else 8)
    args.workloads = args.workloads or list(W.ALL)
    args.parts = args.parts or list(QUICK_PARTS if q else PARTS)
    if args.plot is None:
        args.plot = not q
    if args.warmup is None:
        args.warmup = 0 if q else 1
    if args.sync_between is None:
        args.sync_between = not q
    if args.isolate is None:
        args.isolate = not q
    for w in args.workloads:
        if w not in W.ALL:
            p.error(f"unknown workload {w!r} (known: {', '.join(W.ALL)})")
    try:
        args.systems = expand(["fastckpt"] + (args.systems or list(ORDER)))
    except ValueError as e:
        p.error(str(e))
    for part in args.parts:
        if part not in PARTS:
            p.error(f"unknown part {part!r} (known: {', '.join(PARTS)})")
    for m in args.modes:
        if m not in suite.MODES:
            p.error(f"unknown mode {m!r} (known: {', '.join(suite.MODES)})")
    if not args.modes:
        p.error("--modes needs at least one mode")
    if args.rounds < 1 or args.small_count < 1 or args.shards < 1:
        p.error("--rounds, --small-count and --shards must be >= 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    if args.crc_sizes:
        args.crc_sizes = [parse_size(s) for s in args.crc_sizes]
    else:
        from .micro import CRC_QUICK_SIZES, CRC_SIZES

        args.crc_sizes = list(CRC_QUICK_SIZES if q else CRC_SIZES)
    args.scaling_size = args.scaling_size or min(args.size, 256 << 20)
    args.dist_size = args.dist_size or min(args.size, 1 << 30)
    try:
        args.dist_ranks = [int(r) for r in (args.dist_ranks or ["1", "2", "4"])]
    except ValueError:
        p.error("--dist-ranks takes rank counts, e.g. 1,2,4")
    if not args.dist_ranks or min(args.dist_ranks) < 1:
        p.error("--dist-ranks needs rank counts >= 1")
    if args.dist_timeout is not None and args.dist_timeout <= 0:
        p.error("--dist-timeout must be > 0")
    return args


def package_versions(systems: List[str]) -> dict:
    """Versions of what the run imports (without importing what is not needed)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in (
        "numpy",
        "ml_dtypes",
        "tensorflow-cpu",
        "tensorflow",
        "torch",
        "safetensors",
        "google-crc32c",
        "matplotlib",
    ):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    try:
        import fastckpt

        out["fastckpt"] = fastckpt.__version__
        info = fastckpt.build_info()
        out["fastckpt_crc32c_impl"] = info.get("crc32c_impl")
        out["fastckpt_io_threads"] = info.get("io_threads")
    except Exception as e:  # noqa: BLE001
        out["fastckpt"] = f"not importable: {e}"
    return out


def memory_check(args) -> Optional[str]:
    """A reason to stop if the run would not fit in memory, else None."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    if not avail:
        return None
    if "workloads" in args.parts:
        # The source arrays, a copy in TF's graph-mode variables and one in its eager
        # variables, one restored copy, and slack.
        copies = 1 + (1 if "tf-saver" in args.systems else 0) + (1 if "tf-checkpoint" in args.systems else 0) + 1.5
        need = int(args.size * 1.1 * copies)
        if need > avail:
            return (
                f"a {args.size / 2**30:.2f} GiB workload needs about {need / 2**30:.1f} GiB "
                f"of memory (source, TensorFlow's copies, a restored copy); "
                f"{avail / 2**30:.1f} GiB available. Use a smaller --size, drop systems, or "
                "--force."
            )
    if "distributed" in args.parts:
        # Across the ranks of a save launch: the state, the copy baseline's buffers, fastckpt's
        # and DCP's asynchronous snapshots, rank 0's whole tensors; plus ~0.5 GiB per process.
        need = int(args.dist_size * 5.5 + max(args.dist_ranks) * (512 << 20))
        if need > avail:
            return (
                f"the distributed part at --dist-size {args.dist_size / 2**30:.2f} GiB on "
                f"up to {max(args.dist_ranks)} ranks needs about {need / 2**30:.1f} GiB of "
                f"memory; {avail / 2**30:.1f} GiB available. Use a smaller --dist-size, or "
                "--force."
            )
    return None


def run_isolated(cfg: dict, name: str, scratch: str) -> dict:
    cfg_path = os.path.join(scratch, f"config-{name}.json")
    out_path = os.path.join(scratch, f"result-{name}.json")
    C.write_json(cfg_path, cfg)
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.suite", cfg_path, name, out_path], cwd=ROOT, env=env)
    if proc.returncode != 0 or not os.path.exists(out_path):
        raise RuntimeError(f"workload {name}: worker exited with status {proc.returncode}")
    with open(out_path, encoding="utf-8") as f:
        return json.load(f)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.command = "python -m benchmarks " + " ".join(argv)
    if args.markdown_from:
        try:
            with open(args.markdown_from, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as e:
            print(f"error: cannot read {args.markdown_from}: {e}", file=sys.stderr)
            return 2
        text = markdown(data)
        if hasattr(sys.stdout, "buffer"):  # UTF-8 whatever the locale
            sys.stdout.flush()
            sys.stdout.buffer.write(text.encode("utf-8"))
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(text)
        return 0
    why = suite.unavailable("fastckpt")
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    why = memory_check(args)
    if why and not args.force:
        print(f"error: {why}", file=sys.stderr)
        return 2
    if args.plot:
        why = report.have_matplotlib()
        if why:
            print(f"note: {why}", file=sys.stderr)
            args.plot = False

    start = time.time()
    progress = suite.Progress(start)
    parent = args.dir or tempfile.gettempdir()
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="fastckpt-bench-", dir=parent)
    out_dir = args.out or os.path.join(ROOT, "benchmarks", "results", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    try:
        return _run(args, scratch, out_dir, progress, start)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(args, scratch: str, out_dir: str, progress, start: float) -> int:
    machine = C.machine_info(scratch)
    versions = package_versions(args.systems)
    cfg = {k: v for k, v in vars(args).items()}
    cfg.update(scratch=scratch, start=start)
    results = {
        "command": args.command,
        "config": {k: v for k, v in cfg.items() if k not in ("scratch", "start", "command")},
        "machine": machine,
        "versions": versions,
        "rss_method": PeakRss.method,
        "workloads": [],
        "notes": [],
    }

    mode = "quick" if args.quick else "full"
    sizes = []
    if "workloads" in args.parts:
        sizes.append(f"{args.size / C.GB:.3f} GB per workload")
    if "distributed" in args.parts:
        sizes.append(
            f"distributed: {args.dist_size / C.GB:.3f} GB state on {', '.join(map(str, args.dist_ranks))} gloo rank(s)"
        )
    print(
        f"fastckpt benchmarks ({mode}): {', '.join(args.parts)}; "
        + "; ".join(sizes)
        + ("; " if sizes else "")
        + f"{args.rounds} rounds, modes {', '.join(args.modes)}"
    )
    C.print_machine(machine)
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"peak extra RSS by {PeakRss.method}; restores read files just written (page cache, not dropped)")
    sys.stdout.flush()

    failed = False
    if "workloads" in args.parts:
        for i, name in enumerate(args.workloads):
            progress(f"workload {i + 1}/{len(args.workloads)}: {name}")
            try:
                if args.isolate:
                    res = run_isolated(cfg, name, scratch)
                else:
                    res = suite.run_workload(cfg, name, progress)
            except Exception as e:  # noqa: BLE001 - report, go on with the others
                results["notes"].append(f"workload {name} failed: {type(e).__name__}: {e}")
                progress(f"workload {name} failed: {e}")
                failed = True
                continue
            results["workloads"].append(res)
            if res["failed"] or any(not s["verified"] for s in res["summary"]["systems"].values()):
                failed = True
        skipped = {}
        for res in results["workloads"]:
            for s, why in res["skipped"].items():
                skipped.setdefault(s, []).append(f"{res['workload']['name']}: {why}")
        for s, whys in skipped.items():
            results["notes"].append(f"{s} skipped on " + "; ".join(whys))

    if "crc32c" in args.parts:
        from .micro import crc32c_bench

        progress("micro-benchmark: CRC32C")
        results["crc32c"] = crc32c_bench(
            args.crc_sizes,
            rounds=args.rounds if not args.quick else 1,
            min_time=0.02 if args.quick else 0.3,
            progress=progress,
        )
        if "google-crc32c" not in results["crc32c"]["impls"]:
            results["notes"].append("google-crc32c not installed: no CRC32C comparison")
    if "scaling" in args.parts:
        from .micro import scaling_bench

        progress("micro-benchmark: thread and shard scaling")
        results["scaling"] = scaling_bench(
            args.scaling_size,
            scratch,
            rounds=1 if args.quick else min(args.rounds, 3),
            seed=args.seed,
            progress=progress,
            sync=args.sync_between,
        )

    if "distributed" in args.parts:
        from . import distributed

        progress(f"distributed: {', '.join(map(str, args.dist_ranks))} rank(s), {args.dist_size / C.GB:.3f} GB state")
        dres = distributed.run(cfg, scratch, progress)
        results["distributed"] = dres
        if dres.get("skipped"):
            results["notes"].append(f"distributed part skipped: {dres['skipped']}")
        results["notes"] += [f"distributed: {n}" for n in dres["notes"]]
        results["notes"] += [f"distributed launch failed: {f}" for f in dres["failed"]]
        if distributed.is_failure(dres):
            failed = True

    if "compression" in args.parts:
        from . import bench_compression

        progress("compression: zstd on all-MiniLM-L6-v2 weights, bfloat16 and AdamW moments")
        try:
            results["compression"] = bench_compression.run(cfg, scratch, progress)
        except Exception as e:  # noqa: BLE001 - report, keep the other parts' results
            results["notes"].append(f"compression part failed: {type(e).__name__}: {e}")
            failed = True

    results["targets"] = targets.evaluate(results)
    results["elapsed_s"] = time.time() - start
    report.print_all(results, sys.stdout)

    json_path = os.path.join(out_dir, "summary.json")
    C.write_json(json_path, results)
    md_path = os.path.join(out_dir, "results.md")
    with open(json_path, encoding="utf-8") as f:  # render what was written
        text = markdown(json.load(f))
    with open(md_path, "w", encoding="utf-8") as f:
        f.write(text)
    written = [json_path, md_path]
    if args.plot:
        written += report.plot(results, out_dir)
    print(f"\nwritten: {', '.join(written)} ({results['elapsed_s']:.0f} s)")
    if failed:
        print("error: a system failed or restored wrong values (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
