"""The README's demo runs and reports a verified round trip."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "examples", "demo.py"), "--size-gb", "0.01", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "round trip: all tensors equal" in proc.stdout
    assert "model.ckpt.index" in proc.stdout
    files = sorted(os.listdir(tmp_path))
    shards = [f for f in files if f.startswith("model.ckpt.data-")]
    assert files == shards + ["model.ckpt.index"]
    assert shards == [f"model.ckpt.data-{i:05d}-of-{len(shards):05d}" for i in range(len(shards))]


def test_async_training_example(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(REPO, "examples", "async_training.py"),
            "--dir",
            str(tmp_path),
            "--size-mb",
            "4",
            "--steps",
            "30",
            "--every",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 background saves" in proc.stdout
    assert f"resumed from {tmp_path / 'model-30'}: every weight = 30.0" in proc.stdout
    assert "kept: ['model-20.index', 'model-30.index']" in proc.stdout


def test_distributed_torch_example(tmp_path):
    from dist_util import free_port

    # The README's torchrun command: save on 2 ranks, restore on 1 and on 4.
    prefix = str(tmp_path / "ckpt")
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            f"--master_port={free_port()}",
            os.path.join(REPO, "examples", "distributed_torch.py"),
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = proc.stdout
    assert out.count("committed with 3 collectives") == 2
    assert "restore on 1 rank(s), rank 0: 4 tensors match the checkpoint (step 3" in out
    for r in range(4):
        assert f"restore on 4 rank(s), rank {r}: 4 tensors match the checkpoint (step 3" in out
    assert os.path.exists(prefix + ".index")
