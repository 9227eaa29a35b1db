"""The whole device pipeline (save, asynchronous save, restore to the device)
through the real CUDA copy engine, against the fake libcuda.so.1 of
test_cuda_fake_driver.py: device memory allocated with cuMemAlloc, arrays
presented through __cuda_array_interface__, streams that run copies
asynchronously on worker threads."""

from __future__ import annotations

import glob
import os

from test_cuda_fake_driver import fake_dir, run_fake  # noqa: F401  (fixture)

SCRIPT = """
    import numpy as np
    check(cu.cuCtxSetCurrent(retain(0)))  # the "framework" made device 0's primary context current
    class DevArray:
        def __init__(self, host, stream=None):
            self.dtype, self.shape = host.dtype, host.shape
            self.ptr = dalloc(max(host.nbytes, 1))
            ctypes.memmove(self.ptr, host.ctypes.data, host.nbytes)   # the fake's device memory is host memory
            self.stream = stream
        @property
        def __cuda_array_interface__(self):
            d = {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3}
            if self.stream is not None:
                d["stream"] = self.stream
            return d
        def __dlpack_device__(self):
            return (2, 0)
        def host(self):
            return np.frombuffer(ctypes.string_at(self.ptr, self.dtype.itemsize * int(np.prod(self.shape))),
                                 self.dtype).reshape(self.shape)
    def new_dev(shape, dtype, device):
        return DevArray(np.zeros(shape, dtype))
    os.environ["FASTCKPT_STAGING_MB"] = "1"
    rng = np.random.default_rng(0)
    values = {"big": rng.standard_normal(5 << 18).astype(np.float32),     # 5 MiB: 5 chunks
              "half": rng.standard_normal((33, 17)).astype(np.float16),
              "ids": np.arange(1000, dtype=np.int64),
              "scalar": np.array(2.5)}
    for i in range(300):
        values[f"small/{i:03d}"] = np.full(7, i, np.int32)
"""


def _same(tmp, a, b):
    names = sorted(os.path.basename(p)[len(a) :] for p in glob.glob(os.path.join(tmp, a + ".*")))
    assert names
    for suffix in names:
        with open(os.path.join(tmp, a + suffix), "rb") as f1, open(os.path.join(tmp, b + suffix), "rb") as f2:
            assert f1.read() == f2.read(), suffix


def test_save_through_the_cuda_engine_is_byte_identical(fake_dir, tmp_path):  # noqa: F811
    out = run_fake(
        fake_dir,
        SCRIPT
        + f"""
    tmp = {str(tmp_path)!r}
    assert _native.device_path() == "cuda"
    fastckpt.save(values, tmp + "/host", num_shards=2)
    dev = {{k: DevArray(v) for k, v in values.items()}}
    fastckpt.save(dev, tmp + "/dev", num_shards=2)
    h = fastckpt.save(dev, tmp + "/async", num_shards=2, blocking=False)
    for a in dev.values():
        ctypes.memset(a.ptr, 0, a.dtype.itemsize * int(np.prod(a.shape)))  # free after the snapshot
    h.result()
    print(json.dumps(counters()))
    """,
        delay_us=200,
    )
    _same(str(tmp_path), "host", "dev")
    _same(str(tmp_path), "host", "async")
    assert out["pageable_copies"] == 0  # every device-to-host copy went into pinned staging
    assert out["host_freed_in_use"] == 0


def test_copies_wait_for_the_callers_stream(fake_dir, tmp_path):  # noqa: F811
    out = run_fake(
        fake_dir,
        SCRIPT
        + f"""
    tmp = {str(tmp_path)!r}
    stream = vp()
    check(cu.cuStreamCreate(ctypes.byref(stream), 1))
    final = np.full(1 << 18, 9, np.float32)
    arr = DevArray(np.zeros_like(final), stream=stream.value)
    cu.fake_cuda_stream_sleep(stream, 200000)                     # a long "kernel" on the caller's stream,
    check(cu.cuMemcpyHtoDAsync_v2(arr.ptr, final.ctypes.data, final.nbytes, stream))  # then its result
    fastckpt.save({{"x": arr}}, tmp + "/ck")
    print(json.dumps({{"min": float(fastckpt.load(tmp + "/ck")["x"].min())}}))
    """,
    )
    assert out["min"] == 9.0


def test_restore_to_the_device_through_the_cuda_engine(fake_dir, tmp_path):  # noqa: F811
    out = run_fake(
        fake_dir,
        SCRIPT
        + f"""
    tmp = {str(tmp_path)!r}
    fastckpt.save(values, tmp + "/ck")
    back = fastckpt.load(tmp + "/ck", device="cuda:0", array_type=new_dev)
    same = all(np.array_equal(back[k].host(), v) for k, v in values.items())
    target = DevArray(np.zeros_like(values["big"]))
    fastckpt.load_into(tmp + "/ck", {{"big": target}})
    print(json.dumps({{"same": same, "into": bool(np.array_equal(target.host(), values["big"])),
                      **counters()}}))
    """,
        delay_us=100,
    )
    assert out["same"] and out["into"]
    assert out["host_freed_in_use"] == 0


def test_failed_device_copy_names_the_tensor_and_commits_nothing(fake_dir, tmp_path):  # noqa: F811
    out = run_fake(
        fake_dir,
        SCRIPT
        + f"""
    tmp = {str(tmp_path)!r}
    dev = {{"big": DevArray(values["big"])}}
    try:
        fastckpt.save(dev, tmp + "/ck")
        err = None
    except fastckpt.FastCkptError as e:
        err = f"{{type(e).__name__}}: {{e}}"
    print(json.dumps({{"err": err, "files": sorted(os.listdir(tmp))}}))
    """,
        fail_copy=2,
    )
    assert out["err"] is not None and "CUDA_ERROR_ILLEGAL_ADDRESS" in out["err"]
    assert "tensor 'big'" in out["err"]
    assert out["files"] == []


# A process whose framework works on device 1 only (device 0 is never touched).
DEVICE1 = """
    import numpy as np
    cu.fake_cuda_host_allocs_in.restype = ctypes.c_long
    check(cu.cuCtxSetCurrent(retain(1)))
    class Dev1Array:
        def __init__(self, host):
            self.dtype, self.shape = host.dtype, host.shape
            self.ptr = dalloc(max(host.nbytes, 1))
            ctypes.memmove(self.ptr, host.ctypes.data, host.nbytes)
        @property
        def __cuda_array_interface__(self):
            return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False), "version": 3}
        def __dlpack_device__(self):
            return (2, 1)
        @property
        def device(self):
            class D:
                id = 1
            return D()
        def host(self):
            return np.frombuffer(ctypes.string_at(self.ptr, self.dtype.itemsize * int(np.prod(self.shape))),
                                 self.dtype).reshape(self.shape)
    def new_dev1(shape, dtype, device):
        assert device == 1
        return Dev1Array(np.zeros(shape, dtype))
    def contexts():
        return {"retains": [cu.fake_cuda_primary_retains(d) for d in (0, 1)],
                "host_allocs": [cu.fake_cuda_host_allocs_in(d) for d in (0, 1)]}
    os.environ["FASTCKPT_STAGING_MB"] = "1"
    values = {"w": np.arange(3 << 18, dtype=np.float32), "b": np.arange(10, dtype=np.int64)}
"""


def test_restore_to_device_n_creates_no_context_on_device_0(fake_dir, tmp_path):  # noqa: F811
    # Pinned staging memory is allocated in the target device's context; before
    # this was fixed, the first load to cuda:1 retained device 0's primary
    # context (costing device 0 memory in a process that never uses it).
    out = run_fake(
        fake_dir,
        DEVICE1
        + f"""
    tmp = {str(tmp_path)!r}
    fastckpt.save(values, tmp + "/ck")
    back = fastckpt.load(tmp + "/ck", device="cuda:1", array_type=new_dev1)
    same = all(np.array_equal(back[k].host(), v) for k, v in values.items())
    print(json.dumps({{"same": same, **contexts()}}))
    """,
        devices=2,
    )
    assert out["same"]
    assert out["retains"][0] == 0, out  # device 0 never got a context
    assert out["retains"][1] >= 2, out  # the test's own retain, and the engine's
    assert out["host_allocs"][0] == 0 and out["host_allocs"][1] > 0, out  # pinned staging: device 1 only


def test_save_from_device_n_creates_no_context_on_device_0(fake_dir, tmp_path):  # noqa: F811
    out = run_fake(
        fake_dir,
        DEVICE1
        + f"""
    tmp = {str(tmp_path)!r}
    dev = {{k: Dev1Array(v) for k, v in values.items()}}
    fastckpt.save(dev, tmp + "/ck")
    fastckpt.save(dev, tmp + "/ck2", blocking=False).result()
    got = fastckpt.load(tmp + "/ck")
    same = all(np.array_equal(got[k], v) for k, v in values.items())
    print(json.dumps({{"same": same, **contexts()}}))
    """,
        devices=2,
    )
    assert out["same"]
    assert out["retains"][0] == 0, out
    assert out["host_allocs"][0] == 0 and out["host_allocs"][1] > 0, out
