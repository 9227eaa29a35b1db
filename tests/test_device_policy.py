"""FASTCKPT_DEVICE (auto | on | off) and "no hidden CUDA start-up".

The CUDA driver is loaded (and cuInit run) only when a device array or a
``device=`` argument reaches fastckpt, or build_info() is called: a numpy-only
process must never initialise CUDA. Where the driver was loaded is read from
/proc/self/maps of a subprocess whose LD_LIBRARY_PATH offers the fake
libcuda.so.1 of test_cuda_fake_driver.py (a real driver would be found the
same way by dlopen)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sim_device import SimDeviceArray
from test_cuda_fake_driver import ROOT, fake_dir  # noqa: F401  (fixture)

import fastckpt
from fastckpt import _native

PRELUDE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import fastckpt
    sys.path.insert(0, os.path.join({root!r}, "tests"))
    from sim_device import SimDeviceArray
    def driver_loaded():
        with open("/proc/self/maps") as f:
            return "libcuda.so.1" in f.read()
""")


def run(fake_dir, script, **env_extra):  # noqa: F811
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = fake_dir + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FASTCKPT_DEVICE", None)
    env.update({k: str(v) for k, v in env_extra.items()})
    code = PRELUDE.format(root=ROOT) + textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_numpy_only_work_never_loads_the_cuda_driver(fake_dir, tmp_path):  # noqa: F811
    out = run(
        fake_dir,
        f"""
        tmp = {str(tmp_path)!r}
        values = {{"w": np.arange(12, dtype=np.float32).reshape(3, 4), "s": np.array([b"a", b"b"], dtype=object)}}
        fastckpt.save(values, tmp + "/a")
        fastckpt.save(values, tmp + "/b", blocking=False).result()
        got = fastckpt.load(tmp + "/a")
        fastckpt.verify(tmp + "/a")
        fastckpt.list_variables(tmp + "/a")
        with fastckpt.load_checkpoint(tmp + "/a") as r:
            r.get_tensor("w")
        into = {{"w": np.zeros((3, 4), np.float32)}}
        fastckpt.load_into(tmp + "/a", into)
        saver = fastckpt.Saver({{"w": into["w"]}}, max_to_keep=1)
        p = saver.save(None, tmp + "/s", global_step=1)
        saver.restore(None, p)
        fastckpt.latest_valid_checkpoint(tmp)
        before = driver_loaded()
        info = fastckpt.build_info()  # an explicit request: this one may load it
        print(json.dumps({{"before": before, "after": driver_loaded(), "path": info["device_path"],
                          "policy": info["device_policy"], "same": bool(np.array_equal(got["w"], values["w"]))}}))
    """,
    )
    assert out == {"before": False, "after": True, "path": "cuda", "policy": "auto", "same": True}


def test_off_never_loads_the_driver_and_frameworks_copy(fake_dir, tmp_path):  # noqa: F811
    out = run(
        fake_dir,
        f"""
        tmp = {str(tmp_path)!r}
        x = np.arange(1000, dtype=np.float32)
        fastckpt.save({{"x": SimDeviceArray(x)}}, tmp + "/ck")   # copied to the host by its .get()
        info = fastckpt.build_info()
        print(json.dumps({{"loaded": driver_loaded(), "policy": info["device_policy"],
                          "path": info["device_path"], "error": info["cuda_error"],
                          "same": bool(np.array_equal(fastckpt.load(tmp + "/ck")["x"], x))}}))
    """,
        FASTCKPT_DEVICE="off",
    )
    assert out == {
        "loaded": False,
        "policy": "off",
        "path": "cpu",
        "error": "not probed: FASTCKPT_DEVICE=off",
        "same": True,
    }


def test_a_device_array_loads_the_driver_under_auto(fake_dir, tmp_path):  # noqa: F811
    # The positive control of the test above: auto does use the driver for a
    # device array (the fake driver's cuInit succeeds).
    out = run(
        fake_dir,
        f"""
        tmp = {str(tmp_path)!r}
        before = driver_loaded()
        try:
            fastckpt.save({{"x": SimDeviceArray(np.arange(10.0))}}, tmp + "/ck")
        except fastckpt.CudaError:
            pass  # the fake cannot copy from a host address it did not allocate; the driver was used
        print(json.dumps({{"before": before, "after": driver_loaded()}}))
    """,
    )
    assert out == {"before": False, "after": True}


def test_on_without_a_device_fails_loudly(fake_dir, tmp_path):  # noqa: F811
    # The fake driver's cuInit fails with CUDA_ERROR_NO_DEVICE, as a real one
    # does on a machine without a GPU.
    out = run(
        fake_dir,
        f"""
        tmp = {str(tmp_path)!r}
        res = {{}}
        for policy in ("on", "auto"):
            os.environ["FASTCKPT_DEVICE"] = policy
            try:
                fastckpt.save({{"x": SimDeviceArray(np.arange(10.0))}}, tmp + "/" + policy)
                res[policy] = sorted(os.listdir(tmp))
            except fastckpt.FastCkptError as e:
                res[policy] = [type(e).__name__, str(e)]
        print(json.dumps(res))
    """,
        FAKE_CUDA_DEVICES=0,
    )
    cls, message = out["on"]
    assert cls == "CudaUnavailableError"
    assert "CUDA_ERROR_NO_DEVICE" in message
    # auto falls back to the framework's copy, and the checkpoint is written.
    assert out["auto"] == ["auto.data-00000-of-00001", "auto.index"]


@pytest.mark.parametrize("policy,native_copies", [("auto", True), ("on", True), ("off", False)])
def test_policy_chooses_the_copy_path(tmp_path, sim_device, monkeypatch, policy, native_copies):
    monkeypatch.setenv("FASTCKPT_DEVICE", policy)
    dev = sim_device()
    x = np.arange(4096, dtype=np.float64)
    fastckpt.save({"x": SimDeviceArray(x)}, tmp_path / "ck")
    target = SimDeviceArray(np.zeros_like(x))
    fastckpt.load_into(tmp_path / "ck", {"x": target})
    np.testing.assert_array_equal(target.peek(), x)
    stats = dev.stats()
    assert (stats["copies_to_host"] > 0, stats["copies_to_device"] > 0) == (native_copies, native_copies)
    assert fastckpt.build_info()["device_policy"] == policy


def test_invalid_policy_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCKPT_DEVICE", "gpu")
    with pytest.raises(fastckpt.InvalidArgumentError, match="FASTCKPT_DEVICE='gpu' must be one of auto, on, off"):
        fastckpt.save({"x": SimDeviceArray(np.arange(3.0))}, tmp_path / "ck")
    with pytest.raises(fastckpt.InvalidArgumentError, match="FASTCKPT_DEVICE='gpu'"):
        fastckpt.build_info()
    fastckpt.save({"x": np.arange(3.0)}, tmp_path / "host")  # host arrays never consult it
    assert sorted(os.listdir(tmp_path)) == ["host.data-00000-of-00001", "host.index"]
    assert _native.staging_stats()["lent"] == 0
