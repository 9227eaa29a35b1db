"""Smoke tests: the benchmark scripts run end to end and report throughput."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _run(script: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )


def _check(proc: subprocess.CompletedProcess) -> None:
    detail = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{detail}"
    assert "fastckpt" in proc.stdout, detail
    assert "GB/s" in proc.stdout, detail


def test_bench_save_quick(tmp_path):
    json_path = tmp_path / "timings.json"
    proc = _run(
        BENCH / "bench_save.py",
        "--quick", "--rounds", "1", "--size-gb", "0.01",
        "--dir", str(tmp_path), "--json", str(json_path),
    )
    _check(proc)
    data = json.loads(json_path.read_text())
    assert len(data["rounds"]) == 1
    save = data["rounds"][0]["save"]
    assert {"fastckpt", "raw-N", "raw-1"} <= set(save)
    assert all(s > 0 for s in save.values())
    assert data["rounds"][0]["restore"]["fastckpt"] > 0
    assert 0.005e9 < data["model"]["nbytes"] < 0.02e9
    # The scratch directory under --dir is removed at the end.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timings.json"]


def test_bench_crc32c_quick():
    script = BENCH / "bench_crc32c.py"
    if not script.exists():
        pytest.skip("benchmarks/bench_crc32c.py does not exist")
    _check(_run(script, "--quick"))
