"""examples/tutorial.py (the TF1 save/restore tutorial on fastckpt.Saver) runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tf

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "tutorial.py"


def test_tutorial_runs(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, str(TUTORIAL), "--dir", str(tmp_path / "tutorial")],
        cwd=str(ROOT),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=600,
    )
    detail = f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, detail
    assert "60.0" in proc.stdout, detail
    assert "120.0" in proc.stdout, detail
    assert "all checks passed" in proc.stdout, detail
    # --dir keeps the files: the tutorial's checkpoint is there, readable by TensorFlow's reader.
    assert (tmp_path / "tutorial" / "my_test_model-1000.index").exists()
    assert (tmp_path / "tutorial" / "my_test_model-1000.meta").exists()
