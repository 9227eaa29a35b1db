"""The README's demo runs and reports a verified round trip."""
from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "examples", "demo.py"), "--size-gb", "0.01",
                           "--dir", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "round trip: all tensors equal" in proc.stdout
    assert "model.ckpt.index" in proc.stdout
    files = sorted(os.listdir(tmp_path))
    shards = [f for f in files if f.startswith("model.ckpt.data-")]
    assert files == shards + ["model.ckpt.index"]
    assert shards == [f"model.ckpt.data-{i:05d}-of-{len(shards):05d}" for i in range(len(shards))]
