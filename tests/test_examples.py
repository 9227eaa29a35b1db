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


def test_async_training_example(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "examples", "async_training.py"), "--dir",
                           str(tmp_path), "--size-mb", "4", "--steps", "30", "--every", "10"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "3 background saves" in proc.stdout
    assert f"resumed from {tmp_path / 'model-30'}: every weight = 30.0" in proc.stdout
    assert "kept: ['model-20.index', 'model-30.index']" in proc.stdout
