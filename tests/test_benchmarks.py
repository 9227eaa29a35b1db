"""The benchmark suite runs end to end, measures what it claims, and checks what it restores."""

from __future__ import annotations

import argparse
import importlib.util
import json
import mmap
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(ROOT))

from benchmarks import _common as C  # noqa: E402
from benchmarks import measure, targets  # noqa: E402
from benchmarks import workloads as W  # noqa: E402
from benchmarks.__main__ import parse_size  # noqa: E402
from benchmarks.markdown import markdown  # noqa: E402
from benchmarks.systems import _mapped, expand  # noqa: E402

WORKLOADS = list(W.ALL)
OPTIONAL_PEERS = {
    "tf-saver": "tensorflow",
    "tf-checkpoint": "tensorflow",
    "torch": "torch",
    "safetensors": "safetensors",
}


def _env(extra_path=()):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    paths = [str(p) for p in extra_path] + [str(ROOT)]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _run(cmd, env, timeout=600):
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout
    )
    proc.seconds = time.perf_counter() - t0
    return proc


def _detail(proc):
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-4000:]}"


def _suite(tmp_path, *args, extra_path=()):
    scratch_parent = tmp_path / "scratch"
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks",
        "--quick",
        "--size",
        "1MiB",
        "--small-count",
        "100",
        "--dir",
        str(scratch_parent),
        "--out",
        str(out),
        *args,
    ]
    proc = _run(cmd, _env(extra_path))
    assert proc.returncode == 0, _detail(proc)
    data = json.loads((out / "summary.json").read_text())
    # The scratch directory is removed at the end.
    assert list(scratch_parent.iterdir()) == [], _detail(proc)
    return proc, data


def _check_system(w, name):
    """`name` ran on workload `w`: every phase has a positive throughput, values verified."""
    summ = w["summary"]["systems"][name]
    for phase in ("save:page-cache", "save:durable", "restore"):
        assert summ[phase]["gbps"] > 0, (w["workload"]["name"], name, phase)
        assert summ[phase]["n"] == len(w["rounds"])
        assert summ[phase]["cpu_s"] >= 0
        assert summ[phase]["rss_extra_max"] >= 0
    assert summ["verified"], (w["workload"]["name"], name, summ["checks"])
    assert all(rec["check"][name] == "ok" for rec in w["rounds"])


def _hide(tmp_path, modules):
    """A directory that makes ``import MODULE`` fail for each of ``modules``."""
    stubs = tmp_path / "hidden"
    for m in modules:
        (stubs / m).mkdir(parents=True)
        (stubs / m / "__init__.py").write_text(f"raise ImportError('{m} is hidden by the benchmark smoke test')\n")
    return stubs


def test_quick_suite(tmp_path):
    """The CI smoke test: ``python -m benchmarks --quick`` with tiny sizes, as if TensorFlow,
    torch and safetensors were not installed (they are skipped with a note)."""
    stubs = _hide(tmp_path, ["tensorflow", "torch", "safetensors"])
    proc, data = _suite(tmp_path, extra_path=[stubs])

    names = [w["workload"]["name"] for w in data["workloads"]]
    assert names == WORKLOADS
    raw_threads = C.num_cores()
    for w in data["workloads"]:
        for s in ("fastckpt", "raw-N", "raw-N1", "raw-1", "numpy"):
            _check_system(w, s)
        # raw-N1: the raw-N threads into one file, restored and verified every round.
        assert w["labels"]["raw-N1"] == (
            f"os.pwrite / os.preadv of the same bytes, {raw_threads} threads into one file"
        )
        rn1 = w["summary"]["systems"]["raw-N1"]
        assert rn1["verified"] is True and rn1["checks"] == ["ok"]
        assert rn1["save:page-cache"]["files"] == 1
        assert rn1["save:durable"]["files"] == 1
        assert w["summary"]["systems"]["raw-N"]["save:page-cache"]["files"] == raw_threads
        for phase in ("save:page-cache", "save:durable", "restore"):
            assert w["summary"]["ratios"][phase]["raw-N1"] > 0
        for s in OPTIONAL_PEERS:
            assert "not importable" in w["skipped"][s], w["skipped"]
        assert len(w["rounds"]) == 2
        # Rounds rotate the order of the systems.
        assert w["rounds"][0]["order"][0] != w["rounds"][1]["order"][0]
        assert w["rounds"][0]["order"][0] == "fastckpt"
        assert 0.9e6 < w["workload"]["nbytes"] < 1.2e6
        # Durable saves fsync what they wrote; every system wrote files.
        for mode in ("page-cache", "durable"):
            for s, smp in w["rounds"][0]["save"][mode].items():
                assert smp["files"] >= 1 and smp["file_bytes"] >= w["workload"]["nbytes"], s
    wl = {w["workload"]["name"]: w for w in data["workloads"]}
    assert wl["small"]["workload"]["tensors"] == 100
    assert wl["large"]["workload"]["tensors"] == 1
    assert wl["transformer-bf16"]["workload"]["dtypes"] == ["bfloat16"]
    # The sharded workload is written as 4 files (+ the index) by fastckpt, 4 by numpy.
    sh = wl["sharded"]["summary"]["systems"]
    assert sh["fastckpt"]["save:page-cache"]["files"] == 5
    assert sh["numpy"]["save:page-cache"]["files"] == 4

    assert "skipped tf-saver: tensorflow not importable" in proc.stdout
    assert any("torch skipped" in n for n in data["notes"])

    crc = data["crc32c"]
    assert crc["default"] in crc["impls"]
    assert all(v > 0 for v in crc["median_gbps"][crc["default"]].values())
    sc = data["scaling"]["summary"]
    assert all(v > 0 for v in sc["save_gbps"].values())
    assert all(v > 0 for v in sc["load_gbps"].values())

    rows = data["targets"]["rows"]
    keys = {r["key"] for r in rows}
    assert {
        "save/raw-N page-cache",
        "save/raw-N durable",
        "restore/raw-N",
        "save/numpy durable",
        "small/large save:page-cache",
        "crc32c GB/s",
        "save RSS",
    } <= keys
    assert all(r["status"] in ("PASS", "MISS") for r in rows)
    # fastckpt / raw-N1 is reported next to every raw-N cell, as information.
    for r in rows:
        if r["key"].startswith(("save/raw-N ", "restore/raw-N")):
            assert set(r["info_ratios"]) == {"raw-N1"}, r
            assert r["info_ratios"]["raw-N1"] > 0
        else:
            assert r["info_ratios"] == {}, r
    assert set(data["targets"]["info_notes"]) == {"raw-N1"}
    assert "(vs raw-N1 " in proc.stdout and "information, not part of PASS/MISS" in proc.stdout
    assert "== targets" in proc.stdout
    assert "PASS" in proc.stdout or "MISS" in proc.stdout
    # results.md beside summary.json: the same tables as markdown.
    md = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert md == markdown(data)
    assert "#### one large tensor: " in md and ", 1 tensor (float32)" in md
    assert sum(line.startswith("| **fastckpt** | ") for line in md.splitlines()) == len(WORKLOADS)
    assert any(line.startswith("| raw-N1 | ") for line in md.splitlines())
    assert "(vs raw-N1 " in md and "results.md" in proc.stdout
    # Progress goes to stderr.
    assert "round 2/2" in proc.stderr
    print(f"quick suite: {proc.seconds:.1f} s")


def test_quick_suite_peers(tmp_path):
    """Every installed peer saves, restores and verifies the bfloat16 and sharded workloads."""
    have = [s for s, mod in OPTIONAL_PEERS.items() if importlib.util.find_spec(mod) is not None]
    # The test extra installs TensorFlow and torch, so at least those two peers run.
    assert {"tf-saver", "tf-checkpoint", "torch"} <= set(have), have
    _proc, data = _suite(
        tmp_path,
        "--parts",
        "workloads",
        "--workloads",
        "transformer-bf16,sharded",
        "--systems",
        ",".join(have + ["numpy"]),
    )
    for w in data["workloads"]:
        assert not w["failed"], w["failed"]
        for s in ["fastckpt", "numpy"] + have:
            _check_system(w, s)
    sh = {w["workload"]["name"]: w for w in data["workloads"]}["sharded"]
    for s in have:
        # Each peer wrote more than one data file for the sharded workload.
        assert sh["summary"]["systems"][s]["save:page-cache"]["files"] >= 4, s


def _workers_of(path) -> list:
    """Pids of the distributed benchmark's rank processes whose command line names ``path``."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path("/proc", pid, "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "benchmarks.dist_worker" in cmd and str(path) in cmd:
            out.append(int(pid))
    return out


def test_quick_distributed(tmp_path):
    """``--parts distributed`` alone, quick, on 1 and 2 gloo ranks, one round: every save, async
    save and load ran for fastckpt and DCP, every load restored the generator's values, the
    targets are evaluated, and no rank process is left."""
    proc, data = _suite(
        tmp_path, "--parts", "distributed", "--dist-ranks", "1,2", "--dist-size", "3MiB", "--rounds", "1"
    )
    d = data["distributed"]
    assert "skipped" not in d and d["failed"] == [], d.get("skipped") or d["failed"]
    assert d["ranks"] == [1, 2] and d["modes"] == ["page-cache", "durable"]
    st = d["state"]
    # Parameters and two AdamW moments of the same shapes: three tensors per parameter.
    assert st["tensors"] == 3 * st["params"] and 0.8 * 3 * 2**20 < st["nbytes"] < 1.2 * 3 * 2**20
    assert [(x["phase"], x["ranks"]) for x in d["launches"]] == [("save", 1), ("save", 2), ("load", 1), ("load", 2)]

    saves = d["summary"]["saves"]
    assert set(saves) == {"1", "2"}
    for n, s in saves.items():
        for mode in d["modes"]:
            for system in ("fastckpt", "dcp", "single"):
                per = s["save"][mode][system]
                assert per["gbps"] > 0 and per["n"] == 1 and per["rss_extra_max"] >= 0, (n, mode)
            assert s["ratios"][mode]["dcp"] > 0 and s["ratios"][mode]["single"] > 0
            a = s["async"][mode]
            for system in ("fastckpt", "dcp", "copy", "clone"):
                assert a[system]["blocking_s"] > 0 and a[system]["total_s"] > 0, (n, mode, system)
            assert a["blocking_vs_copy"] > 0
        rec = d["saves"][n]["rounds"][0]
        assert len(rec["save"]["durable"]["fastckpt"]["rss_extra_per_rank"]) == int(n)
        assert len(rec["async"]["page-cache"]["fastckpt"]["blocking_s_per_rank"]) == int(n)
    # 3 collectives for a save that exchanges the plan, 2 with the plan cached; none on 1 rank.
    assert saves["2"]["collectives"]["first"] == 3 and saves["2"]["collectives"]["cached"] == [2]
    assert saves["1"]["collectives"]["first"] == 0

    loads = d["summary"]["loads"]
    assert set(loads) == {"1->1", "2->2", "2->1", "1->2"}
    assert d["verified"] is True
    for key, v in loads.items():
        assert v["verified"] and v["ratio"] > 0, (key, v)
        for system in ("fastckpt", "dcp"):
            assert v["systems"][system]["checks"] == ["ok"] and v["systems"][system]["gbps"] > 0
        f = v["systems"]["fastckpt"]
        saved, loaded = (int(x) for x in key.split("->"))
        assert len(f["bytes_read_per_rank"]) == loaded
        # Every byte of the sharded tensors is read at least once over the ranks...
        assert f["bytes_read_ratio"] >= 1.0, (key, f)
        if loaded <= saved:
            # ... and, when each loading rank needs whole saved pieces, not much more.
            assert f["bytes_read_ratio"] <= 1.1, (key, f)
        else:
            # Splitting a saved piece: a rank reads the 1 MiB checksum chunks its part touches,
            # so with pieces under a chunk each of the 2 ranks reads all of them.
            assert f["bytes_read_ratio"] <= loaded, (key, f)

    rows = [r for r in data["targets"]["rows"] if r["key"].startswith("dist ")]
    keys = {r["key"] for r in rows}
    assert keys == {
        "dist save/dcp page-cache",
        "dist save/dcp durable",
        "dist load/dcp",
        "dist save/one process page-cache",
        "dist save/one process durable",
        "dist async page-cache",
        "dist async durable",
    }
    assert all(r["status"] in ("PASS", "MISS") for r in rows)
    assert [r["scope"] for r in rows if r["key"] == "dist load/dcp"] == ["1->1", "2->2", "2->1", "1->2"]
    assert [r["scope"] for r in rows if r["key"] == "dist save/dcp durable"] == ["1 rank", "2 ranks"]
    assert [r["scope"] for r in rows if r["key"].startswith("dist save/one")] == ["2 ranks"] * 2

    assert "== distributed, 1, 2 gloo rank(s)" in proc.stdout
    md = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert md == markdown(data)
    lines = md.splitlines()
    assert "| 2 ranks → 1 rank | " in md and "| 1 rank → 2 ranks | " in md
    assert sum(ln.startswith("| 2 ranks | durable | ") for ln in lines) == 2  # saves, async
    assert "distributed save ≥ 1.5 × DCP (durable)" in md
    assert "round 1/1 load 1->2" in proc.stderr
    assert _workers_of(tmp_path) == []


def test_distributed_launch_stops_every_rank(tmp_path):
    """A rank that fails, and a job that outlives its time limit, stop the whole launch."""
    from benchmarks import distributed

    base = {"size": 1 << 20, "rounds": 1, "modes": ["page-cache"], "warmup": 0, "sync_between": False, "timeout": 60}
    # A load phase without sources: every rank fails after the rendezvous.
    with pytest.raises(distributed.LaunchError, match="KeyError: 'sources'"):
        distributed.launch(2, dict(base, phase="load"), str(tmp_path / "bad"), 120, print)
    with pytest.raises(distributed.LaunchError, match="not finished after 1 s"):
        distributed.launch(2, dict(base, phase="save", dir=str(tmp_path / "d")), str(tmp_path / "slow"), 1.0, print)
    assert _workers_of(tmp_path) == []


def test_distributed_options():
    from benchmarks.__main__ import parse_args

    full = parse_args([])
    assert "distributed" in full.parts
    assert full.dist_size == 1 << 30 and full.dist_ranks == [1, 2, 4]
    # --quick stays seconds long: the distributed part only when named.
    quick = parse_args(["--quick"])
    assert "distributed" not in quick.parts and quick.dist_size == 4 << 20
    assert parse_args(["--quick", "--parts", "distributed"]).parts == ["distributed"]
    assert parse_args(["--size", "256MiB"]).dist_size == 256 << 20
    assert parse_args(["--size", "4GiB", "--dist-size", "2GiB"]).dist_size == 2 << 30
    assert parse_args(["--size", "4GiB"]).dist_size == 1 << 30
    for bad in (["--dist-ranks", "0"], ["--dist-ranks", "two"], ["--parts", "gpu"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_distributed_targets():
    def save(ratio_dcp, ratio_single, blocking, copy):
        modes = ("page-cache",)
        return {
            "ratios": {m: {"dcp": ratio_dcp, "single": ratio_single} for m in modes},
            "async": {m: {"blocking_vs_copy": blocking / copy} for m in modes},
        }

    d = {
        "modes": ["page-cache"],
        "summary": {
            "saves": {"1": save(2.0, 1.0, 0.1, 0.1), "2": save(1.4, 0.85, 0.2, 0.1), "4": save(1.6, 0.5, 0.1, 0.1)},
            "loads": {"2->4": {"ratio": 1.6}, "4->4": {"ratio": 1.7}, "4->2": {"ratio": 1.2}},
        },
    }
    t = targets.evaluate({"distributed": d})
    cells = {(r["key"], r["scope"]): r for r in t["rows"]}
    assert cells[("dist save/dcp page-cache", "2 ranks")]["status"] == "MISS"
    assert cells[("dist save/dcp page-cache", "4 ranks")]["status"] == "PASS"
    assert t["overall"]["dist save/dcp page-cache"] == "MISS"
    # Only the 2-rank save is held to 0.8 x one process; the others are noted.
    one = cells[("dist save/one process page-cache", "2 ranks")]
    assert one["status"] == "PASS" and "4 ranks 0.50x" in one["note"]
    assert [k for k in cells if k[0] == "dist save/one process page-cache"] == [
        ("dist save/one process page-cache", "2 ranks")
    ]
    # Asynchronous blocking time is a ceiling: 2.0 x the copy misses, 1.0 x passes.
    assert cells[("dist async page-cache", "2 ranks")]["status"] == "MISS"
    assert cells[("dist async page-cache", "1 rank")]["status"] == "PASS"
    assert cells[("dist load/dcp", "4->2")]["status"] == "MISS"
    assert [r["scope"] for r in t["rows"] if r["key"] == "dist load/dcp"] == ["4->4", "4->2", "2->4"]


def test_bench_crc32c_quick():
    proc = _run([sys.executable, str(BENCH / "bench_crc32c.py"), "--quick"], _env())
    assert proc.returncode == 0, _detail(proc)
    assert "fastckpt" in proc.stdout and "GB/s" in proc.stdout


def test_bench_save_alias(tmp_path):
    out = tmp_path / "t.json"
    proc = _run(
        [
            sys.executable,
            str(BENCH / "bench_save.py"),
            "--quick",
            "--no-tf",
            "--size-gb",
            "0.002",
            "--rounds",
            "1",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        _env(),
    )
    assert proc.returncode == 0, _detail(proc)
    data = json.loads(out.read_text())
    (w,) = data["workloads"]
    assert w["workload"]["name"] == "transformer-fp32"
    assert set(w["systems"]) == {"fastckpt", "raw-N", "raw-N1", "raw-1"}
    assert w["modes"] == ["page-cache"]


# ---------------------------------------------------------------------------------------------
# Markdown tables
# ---------------------------------------------------------------------------------------------

STORED = ROOT / "benchmarks" / "latest" / "summary.json"

# Lines of the tables in benchmarks/README.md ("Latest results"), rendered from STORED.
STORED_LINES = [
    "#### transformer, float32: 1.093 GB, 308 tensors (float32)",
    "| system | save, page cache GB/s | save, durable GB/s | restore GB/s | fastckpt ÷ system: cache / durable / restore | CPU s save / restore | extra RSS MiB save / restore |",
    "|---|---|---|---|---|---|---|",
    "| **fastckpt** | 4.10 | 0.38 | 4.36 | – | 0.52 / 0.49 | 6 / 1043 |",
    "| raw-N | 4.98 | 0.43 | 3.93 | 0.80× / 0.97× / 1.16× | 0.43 / 0.47 | 2 / 1042 |",
    "| raw-N1 | 1.98 | 0.42 | 3.98 | 2.16× / 0.92× / 1.04× | 0.83 / 0.50 | 0 / 1042 |",
    "| tf-checkpoint | 1.01 | 0.26 | 0.97 | 3.97× / 1.50× / 4.06× | 1.08 / 1.27 | 13 / 1106 |",
    "| numpy | 0.97 | 0.24 | 0.83 | 4.12× / 1.72× / 5.48× | 1.12 / 1.28 | 40 / 1044 |",
    "#### transformer, bfloat16: 1.087 GB, 372 tensors (bfloat16)",
    "#### 100,000 small tensors: 1.074 GB, 100,000 tensors (float32)",
    "| torch | 0.12 | 0.08 | 0.05 | 14.73× / 4.51× / 36.05× | 8.82 / 20.11 | 144 / 1190 |",
    "#### one large tensor: 1.074 GB, 1 tensor (float32)",
    "| safetensors | 3.06 | 0.29 | 1.04 | 0.97× / 1.44× / 2.48× | 0.35 / 1.03 | 0 / 2048 |",
    "#### transformer float32 in 8 files: 1.093 GB, 308 tensors (float32), 8 files per system",
    "| tf-saver | 2.03 | 0.38 | 1.87 | 2.19× / 1.22× / 1.92× | 0.99 / 1.09 | 16 / 558 |",
    "#### CRC32C, GB/s on one thread",
    "| implementation | 4 KiB | 64 KiB | 1 MiB | 16 MiB | 64 MiB |",
    "| fastckpt portable | 1.56 | 1.66 | 1.60 | 1.67 | 1.68 |",
    "| fastckpt sse42 | 11.80 | 19.48 | 21.50 | 12.64 | 10.54 |",
    "| fastckpt avx2_vpclmul | 16.89 | 27.84 | 34.77 | 29.70 | 12.87 |",
    "| google-crc32c | 10.82 | 20.17 | 20.97 | 9.56 | 8.57 |",
    "| fastckpt avx2_vpclmul ÷ google-crc32c | 1.44× | 1.40× | 1.68× | 3.11× | 1.50× |",
    "#### Scaling: fastckpt, 0.268 GB float32 transformer, page cache, GB/s",
    "| threads | save, 1 shard | save, 2 shards | load, 1 shard | load, 2 shards | raw write |",
    "| 1 | 2.22 | 2.21 | 1.24 | 1.53 | 2.31 |",
    "| 2 | 2.57 | 3.88 | 1.82 | 2.32 | 3.94 |",
    "| | target | this run |",
    "| **MISS** | save ≥ 0.9 × raw parallel write (page-cache) | transformer-fp32 **0.80×** (vs raw-N1 2.16×), transformer-bf16 1.23× (vs raw-N1 1.74×), small 2.49× (vs raw-N1 2.60×), large **0.87×** (vs raw-N1 1.71×), sharded **0.8996×** (vs raw-N1 1.94×) |",
    "| PASS | restore ≥ 0.9 × raw parallel read into fresh arrays | transformer-fp32 1.16× (vs raw-N1 1.04×), transformer-bf16 0.95× (vs raw-N1 0.89×), small 3.17× (vs raw-N1 2.30×), large 1.01× (vs raw-N1 1.06×), sharded 1.01× (vs raw-N1 0.92×) |",
    "| PASS | 100,000 small tensors ≥ 0.5 × one large tensor (restore) | small vs large 0.74× |",
    "| PASS | CRC32C ≥ 1.0 × google-crc32c (one thread) | 4 KiB 1.44×, 64 KiB 1.40×, 1 MiB 1.68×, 16 MiB 3.11×, 64 MiB 1.50× |",
    "| PASS | CRC32C ≥ 20 GB/s per core (fastckpt avx2_vpclmul, best block size) | 1 MiB 34.8 GB/s |",
    "| PASS | extra RSS during a synchronous fastckpt.save ≤ 256 MiB | max of all saves 65 MiB (worst: small (1.07 GB); 42 saves) |",
]


def test_markdown_of_stored_summary():
    md = markdown(json.loads(STORED.read_text(encoding="utf-8")))
    lines = md.splitlines()
    for want in STORED_LINES:
        assert want in lines, want
    # Systems in the suite's order; the small-tensor workload names its skipped systems.
    i = lines.index("#### 100,000 small tensors: 1.074 GB, 100,000 tensors (float32)")
    rows = [ln.split(" | ")[0] for ln in lines[i + 4 : i + 10]]
    assert rows == ["| **fastckpt**", "| raw-N", "| raw-N1", "| raw-1", "| torch", "| safetensors"]
    assert lines[i + 12].startswith("tf-saver and tf-checkpoint skipped: 100,000 tensors > --tf-max-tensors 10,000")
    assert md.count("#### ") == 7 and md.count("| **fastckpt** |") == 5
    # Skip notes are not repeated at the end.
    assert "Note:" not in md
    assert md.endswith("information, not part of PASS/MISS)\n")


def test_markdown_tolerates_missing_values():
    per = {
        "save:page-cache": {"gbps": 2.0, "cpu_s": 0.5, "rss_extra_max": 3 * 2**20},
        "restore": {"gbps": 1.0, "cpu_s": 0.25, "rss_extra_max": 2**20},
        "verified": True,
    }
    w = {
        "workload": {
            "name": "large",
            "title": "one large tensor",
            "nbytes": 2 * 10**9,
            "tensors": 1,
            "dtypes": ["float32"],
            "shards": 1,
        },
        "modes": ["page-cache"],
        "skipped": {},
        "failed": {"torch": "boom"},
        "summary": {
            "systems": {"raw-N1": {"save:page-cache": {"gbps": 1.0}, "verified": True}, "fastckpt": per},
            "ratios": {"save:page-cache": {"raw-N1": 2.0}},
        },
    }
    res = {
        "workloads": [w],
        "notes": ["workload small failed: RuntimeError: x"],
        "targets": {
            "rows": [
                {
                    "key": "save/raw-N page-cache",
                    "scope": "large",
                    "value": 0.5,
                    "status": "MISS",
                    "note": "",
                    "text": "save >= 0.9 x raw parallel write (page-cache)",
                    "info_ratios": {"raw-N1": 2.0},
                }
            ],
            "overall": {"save/raw-N page-cache": "MISS"},
            "info_notes": {"raw-N1": "one file"},
        },
    }
    lines = markdown(res).splitlines()
    assert "#### one large tensor: 2.000 GB, 1 tensor (float32)" in lines
    assert (
        "| system | save, page cache GB/s | restore GB/s | fastckpt ÷ system: cache / restore"
        " | CPU s save / restore | extra RSS MiB save / restore |"
    ) in lines
    assert "| **fastckpt** | 2.00 | 1.00 | – | 0.50 / 0.25 | 3 / 1 |" in lines
    assert "| raw-N1 | 1.00 | - | 2.00× / - | - / - | - / - |" in lines
    assert "torch failed: boom." in lines
    assert ("| **MISS** | save ≥ 0.9 × raw parallel write (page-cache) | large **0.50×** (vs raw-N1 2.00×) |") in lines
    assert "(vs raw-N1: one file)" in lines
    assert "Note: workload small failed: RuntimeError: x" in lines
    assert markdown({}) == "\n"


def test_markdown_from_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--markdown-from", str(STORED.relative_to(ROOT))],
        cwd=str(ROOT),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = proc.stdout.decode("utf-8")
    assert out == markdown(json.loads(STORED.read_text(encoding="utf-8")))
    for want in STORED_LINES:
        assert want in out.splitlines(), want
    bad = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--markdown-from", "no/such.json"],
        cwd=str(ROOT),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    assert bad.returncode == 2 and b"cannot read" in bad.stderr


# ---------------------------------------------------------------------------------------------
# The parts, in process
# ---------------------------------------------------------------------------------------------


def test_parse_size():
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("256MiB") == 256 << 20
    assert parse_size("0.5GB") == 500_000_000
    assert parse_size("4096") == 4096
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size("lots")


def test_expand_systems():
    assert expand(["numpy", "raw", "fastckpt"]) == ["fastckpt", "raw-N", "raw-N1", "raw-1", "numpy"]
    assert expand(["raw-N1"]) == ["raw-N1"]
    assert expand(["tf"]) == ["tf-saver", "tf-checkpoint"]
    with pytest.raises(ValueError):
        expand(["pickle"])


@pytest.mark.parametrize("count,n", [(10, 3), (5, 5), (3, 8), (100, 8), (1, 1)])
def test_split_groups(count, n):
    tensors = {f"t{i:03d}": np.zeros(1 + (i * 37) % 11, np.float32) for i in range(count)}
    groups = W.split_groups(tensors, n)
    assert len(groups) == min(count, n)
    assert all(groups)
    # Consecutive names, each exactly once, in order.
    assert [k for g in groups for k in g] == list(tensors)


def test_workloads_have_their_shapes():
    size = 2 << 20
    small = W.build("small", size, small_count=1000)
    assert small.count == 1000 and abs(small.nbytes - size) < 4000
    assert all(a.flags.owndata for a in small.tensors.values())
    large = W.build("large", size)
    assert large.count == 1 and abs(large.nbytes - size) <= 4 * 4096
    bf = W.build("transformer-bf16", size)
    assert bf.dtypes == ["bfloat16"] and 0.8 * size < bf.nbytes < 1.2 * size
    names = list(W.build("transformer-fp32", size).tensors)
    assert any("attention" in n for n in names) and any("mlp" in n for n in names)
    assert any("ln_1" in n for n in names) and any(n.endswith("bias") for n in names)
    assert W.build("sharded", size, shards=3).shards == 3


def test_check_catches_any_difference():
    w = W.build("transformer-fp32", 1 << 20)
    same = {k: v.copy() for k, v in w.tensors.items()}
    assert W.check(w, same) is None
    name = list(same)[3]
    bad = dict(same)
    bad[name] = same[name].copy()
    bad[name].view(np.uint8)[5] ^= 1
    assert name in W.check(w, bad)
    del bad[name]
    assert "names differ" in W.check(w, bad)
    wrong_dtype = dict(same)
    wrong_dtype[name] = same[name].view(np.int32)
    assert "int32" in W.check(w, wrong_dtype)


def test_peak_rss_sees_an_allocation():
    measure.settle(sync=False)
    _, smp = measure.measure(lambda: np.ones(64 << 20, np.uint8).sum(), sync=False)
    assert smp.rss_extra >= 60 << 20, smp
    _, smp = measure.measure(lambda: None, sync=False)
    assert smp.rss_extra < 16 << 20, smp


def test_mapped_arrays_are_detected(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"\0" * 4096)
    with open(p, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        a = np.frombuffer(m, np.uint8)[16:32]
        assert _mapped(a)
        del a
        m.close()
    assert not _mapped(np.zeros(4))
    assert not _mapped(np.frombuffer(bytearray(8), np.uint8))
    mm = np.memmap(p, dtype=np.uint8, mode="r")
    assert _mapped(mm[4:8])


@pytest.mark.parametrize("one_file", [False, True])
@pytest.mark.parametrize("durable", [False, True])
def test_raw_write_read(tmp_path, one_file, durable):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 255, n, dtype=np.uint8) for n in (1, 1000, 7, 4096, 33)]
    prefix = str(tmp_path / "ckpt")
    paths = C.raw_write(arrays, prefix, 3, durable, one_file=one_file)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)
    assert len(paths) == (1 if one_file else 3)
    if one_file:
        # The threads' ranges laid end to end: the file is the concatenation of the arrays.
        assert Path(paths[0]).read_bytes() == b"".join(a.tobytes() for a in arrays)
    got = C.raw_read([(a.shape, a.dtype) for a in arrays], prefix, 3, one_file=one_file)
    for a, b in zip(arrays, got):
        assert np.array_equal(a, b)


def test_fsync_tree_counts_files(tmp_path):
    (tmp_path / "a").write_bytes(b"x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y")
    assert measure.fsync_tree(str(tmp_path)) == 2


def test_targets_pass_and_miss():
    def wl(name, fc, raw, modes=("page-cache",)):
        rounds = [
            {
                "save": {
                    m: {"fastckpt": {"seconds": f, "rss_extra": 1 << 20}, "raw-N": {"seconds": r, "rss_extra": 0}}
                    for m in modes
                },
                "restore": {"fastckpt": {"seconds": f}, "raw-N": {"seconds": r}},
            }
            for f, r in zip(fc, raw)
        ]
        ratios = {"restore": {"raw-N": 1.0, "raw-N1": 0.5}}
        for m in modes:
            ratios[f"save:{m}"] = {"raw-N": sorted(r / f for f, r in zip(fc, raw))[len(fc) // 2], "raw-N1": 0.5}
        return {
            "workload": {"name": name, "nbytes": 10**9, "tensors": 1},
            "modes": list(modes),
            "systems": ["fastckpt", "raw-N"],
            "rounds": rounds,
            "summary": {"ratios": ratios},
        }

    res = {"workloads": [wl("large", [1.0, 1.0, 1.0], [1.0, 0.95, 1.2]), wl("small", [4.0, 3.0, 5.0], [1.0, 1.0, 1.0])]}
    t = targets.evaluate(res)
    cells = {(r["key"], r["scope"]): r for r in t["rows"]}
    assert cells[("save/raw-N page-cache", "large")]["status"] == "PASS"
    assert cells[("save/raw-N page-cache", "small")]["status"] == "MISS"
    assert t["overall"]["save/raw-N page-cache"] == "MISS"
    # small/large pairs round r with round r: 1/4, 1/3 and 1/5 -> median 0.25.
    sl = cells[("small/large save:page-cache", "small vs large")]
    assert sl["value"] == pytest.approx(0.25) and sl["status"] == "MISS"
    assert cells[("save RSS", "max of all saves")]["status"] == "PASS"
    # fastckpt / raw-N1 is reported beside the raw-N cells and never changes a status.
    assert cells[("save/raw-N page-cache", "large")]["info_ratios"] == {"raw-N1": 0.5}
    assert cells[("restore/raw-N", "large")]["info_ratios"] == {"raw-N1": 0.5}
    assert cells[("restore/raw-N", "large")]["status"] == "PASS"
    assert t["overall"]["restore/raw-N"] == "PASS"
    assert not any(k.startswith("raw-N1") or "/raw-N1" in k for k in t["overall"])
    assert set(t["info_notes"]) == {"raw-N1"}


def test_target_values_never_round_onto_the_other_side_of_their_threshold():
    from benchmarks.targets import format_value

    row = {"key": "save/raw-N page-cache", "threshold": 0.9, "op": ">="}
    assert format_value({**row, "value": 0.8996, "status": "MISS"}, "×") == "0.8996×"
    assert format_value({**row, "value": 0.897, "status": "MISS"}) == "0.897x"
    assert format_value({**row, "value": 0.87, "status": "MISS"}) == "0.87x"
    assert format_value({**row, "value": 0.9, "status": "PASS"}) == "0.90x"
    assert (
        format_value({"key": "save RSS", "value": 65 * 2**20, "status": "PASS", "threshold": 256, "op": "<="})
        == "65 MiB"
    )
    assert format_value({"key": "crc32c GB/s", "value": 34.77, "status": "PASS"}) == "34.8 GB/s"
    assert format_value({"key": "x", "value": None}) == "n/a"
