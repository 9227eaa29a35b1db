"""Real-GPU tests: saves from and restores to CUDA memory through the CUDA
driver copy engine. Skipped where no GPU (or neither CuPy nor a CUDA build of
torch) is present; the pipeline they exercise is covered on the CPU by
test_staging.py and test_async_save.py with the simulated engine."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import same_files

import fastckpt
from fastckpt import _native

pytestmark = pytest.mark.gpu


def _have_cuda_path() -> bool:
    return _native.device_path() == "cuda"


def _cupy():
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        return cupy
    except Exception:
        return None


def _torch_cuda():
    try:
        import torch

        return torch if torch.cuda.is_available() else None
    except Exception:
        return None


needs_gpu = pytest.mark.skipif(not _have_cuda_path(), reason="no CUDA device path (no GPU or no driver)")


@needs_gpu
def test_build_info_reports_the_cuda_path():
    info = fastckpt.build_info()
    assert info["device_path"] == "cuda" and info["cuda_device_count"] >= 1


@needs_gpu
@pytest.mark.skipif(_cupy() is None, reason="CuPy is not installed")
def test_cupy_save_is_byte_identical_and_restores_to_the_device(tmp_path):
    cp = _cupy()
    rng = np.random.default_rng(0)
    host = {
        "w": rng.standard_normal((4096, 1024)).astype(np.float32),
        "b": rng.standard_normal(1024).astype(np.float16),
        "small": np.arange(10, dtype=np.int64),
    }
    dev = {k: cp.asarray(v) for k, v in host.items()}
    fastckpt.save(host, tmp_path / "host")
    fastckpt.save(dev, tmp_path / "dev")
    same_files(str(tmp_path / "host"), str(tmp_path / "dev"))
    out = fastckpt.load(tmp_path / "dev", device="cuda:0", array_type="cupy")
    for k, v in host.items():
        assert isinstance(out[k], cp.ndarray) and np.array_equal(cp.asnumpy(out[k]), v)
    target = cp.zeros_like(dev["w"])
    fastckpt.load_into(tmp_path / "dev", {"w": target})
    assert bool((target == dev["w"]).all())


@needs_gpu
@pytest.mark.skipif(_torch_cuda() is None, reason="torch has no CUDA")
def test_torch_cuda_state_dict_async_save(tmp_path):
    torch = _torch_cuda()
    sd = {"emb": torch.randn(30000, 512, device="cuda"), "ln": torch.ones(512, device="cuda", dtype=torch.bfloat16)}
    expected = {k: v.cpu() for k, v in sd.items()}
    handle = fastckpt.save(sd, tmp_path / "ck", blocking=False)
    for v in sd.values():
        v.zero_()  # after the snapshot the tensors are free
    handle.result(timeout=120)
    out = fastckpt.load(tmp_path / "ck", device="cuda:0", array_type="torch")
    for k, v in expected.items():
        assert out[k].device.type == "cuda" and torch.equal(out[k].cpu(), v)


@needs_gpu
@pytest.mark.skipif(_torch_cuda() is None, reason="torch has no CUDA")
def test_copy_is_ordered_after_the_current_stream(tmp_path):
    torch = _torch_cuda()
    x = torch.zeros(64 << 20, device="cuda")
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        torch.cuda._sleep(100_000_000)  # a long kernel still running when save() is called
        x.fill_(3.0)
        fastckpt.save({"x": x}, tmp_path / "ck")
    assert float(fastckpt.load(tmp_path / "ck")["x"].min()) == 3.0
