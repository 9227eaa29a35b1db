"""Fixtures shared by the staging-pipeline tests."""
from __future__ import annotations

import pytest

from fastckpt import _native


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
