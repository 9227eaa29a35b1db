"""The extension users import (fastckpt._native) carries no test-only code:
the test hooks are the separate extension fastckpt._native_testing, and both
link the one core library, so the hooks act on the state the package uses."""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

import fastckpt
from fastckpt import _native, _native_testing

PACKAGE_DIR = os.path.dirname(fastckpt.__file__)
PACKAGE_PARENT = os.path.dirname(PACKAGE_DIR)


def _module_file(module):
    return module.__file__


def test_native_has_no_test_hooks():
    names = set(vars(_native))
    for hook in (
        "arm_fault",
        "disarm_faults",
        "install_simulated_device",
        "SimulatedDevice",
        "cuda_engine_roundtrip",
        "plan_tasks",
        "staging_borrow",
        "dtype_table",
    ):
        assert hook not in names, hook
        assert hasattr(_native_testing, hook), hook


@pytest.mark.parametrize("path", ["_native", "core"])
def test_test_only_code_is_not_in_the_shipped_libraries(path):
    if path == "_native":
        name = _module_file(_native)
    else:
        name = os.path.join(PACKAGE_DIR, "libfastckpt_core.so")
    with open(name, "rb") as f:
        data = f.read()
    assert b"SimulatedCopyEngine" not in data
    assert b"arm_fill_delay" not in data
    with open(_module_file(_native_testing), "rb") as f:
        assert b"SimulatedCopyEngine" in f.read()


def test_a_save_and_load_never_load_the_test_module(tmp_path):
    code = (
        "import sys, numpy as np, fastckpt\n"
        f"fastckpt.save({{'w': np.arange(6, dtype=np.float32)}}, {str(tmp_path / 'ck')!r})\n"
        f"print(fastckpt.load({str(tmp_path / 'ck')!r})['w'].sum(), "
        "'fastckpt._native_testing' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["15.0", "False"]


def test_native_testing_attribute_is_the_test_module():
    assert _native.testing is _native_testing
    with pytest.raises(AttributeError, match="^module 'fastckpt._native' has no attribute 'nope'$"):
        _native.nope  # noqa: B018


def test_hooks_reach_the_state_the_package_uses(tmp_path):
    # A fault armed through the test module fails the package's next save:
    # one fault-injection state in the process, not one per extension.
    _native_testing.arm_fault("create", 0, errno.ENOSPC)
    try:
        with pytest.raises(fastckpt.errors.CheckpointIOError) as info:
            fastckpt.save({"w": np.zeros(4, np.float32)}, str(tmp_path / "ck"))
        assert info.value.errno == errno.ENOSPC
        assert _native_testing.fault_hits() == 1
    finally:
        _native_testing.disarm_faults()
    assert os.listdir(tmp_path) == []
