"""Fixtures shared by the tests, and the path to the helpers in fuzz/
(``table_codec``: the index table codec; ``checkpoint_builders``: writers of
partitioned and damaged checkpoints), which the fuzz scripts share."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fastckpt import _native

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz"))


def _mount_tmpfs(mnt, size: str):
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (which CI has)")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    return mnt


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs: a disk that fills up for real (ENOSPC)."""
    mnt = _mount_tmpfs(tmp_path / "small", "1m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 4 MiB tmpfs: a disk that fills up for real (ENOSPC)."""
    mnt = _mount_tmpfs(tmp_path / "tiny", "4m")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def sim_device(monkeypatch):
    """Routes device copies through the simulated copy engine, with 1 MiB
    staging buffers; yields a factory taking engine options."""
    monkeypatch.setenv("FASTCKPT_STAGING_MB", "1")
    installed = []

    def install(**options):
        dev = _native.testing.install_simulated_device(**options)
        installed.append(dev)
        return dev

    install()
    yield install
    _native.testing.uninstall_device()
    _native.trim_staging()
    assert _native.staging_stats()["lent"] == 0, "a staging buffer was never returned"
