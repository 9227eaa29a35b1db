"""The CUDA copy engine, run for real against a fake driver.

tests/fake_cuda/fake_libcuda.c is a small libcuda.so.1 whose "device memory"
is host memory and whose streams are worker threads that run copies
asynchronously (so a missing synchronisation reads stale bytes). Each test
runs a Python subprocess with LD_LIBRARY_PATH pointing at the fake, so the
engine's dlopen("libcuda.so.1") finds it; the subprocess drives the engine
through fastckpt._native_testing.cuda_engine_* and inspects the fake's
counters (fake_cuda_*) through ctypes.

What this cannot check is the real driver's behaviour; see
csrc/fastckpt/device/cuda_copy_engine.cc for the assumptions made about it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import textwrap

import pytest

import fastckpt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE_SOURCE = os.path.join(ROOT, "tests", "fake_cuda", "fake_libcuda.c")

MIB = 1 << 20


def _c_compiler():
    candidates = []
    if os.environ.get("CC"):
        candidates.append(shlex.split(os.environ["CC"]))
    candidates += [["cc"], ["gcc"], ["clang"]]
    for argv in candidates:
        if argv and shutil.which(argv[0]):
            return argv
    return None


@pytest.fixture(scope="session")
def fake_dir(tmp_path_factory):
    cc = _c_compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) to build the fake CUDA driver")
    d = tmp_path_factory.mktemp("fake_cuda")
    out = d / "libcuda.so.1"
    proc = subprocess.run(
        [*cc, "-shared", "-fPIC", "-O1", "-pthread", "-o", str(out), FAKE_SOURCE],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"building the fake driver failed:\n{proc.stderr}"
    return str(d)


# Runs first in every subprocess: checks that the fake (not a real driver) is
# the libcuda.so.1 loaded, and gives scripts `cu` (the fake through ctypes)
# and a few small utilities.
PRELUDE = textwrap.dedent("""
    import ctypes, json, os, sys, threading
    import fastckpt
    from fastckpt import _native, _native_testing
    T = _native_testing
    cu = ctypes.CDLL("libcuda.so.1")
    with open("/proc/self/maps") as _f:
        assert os.environ["FAKE_DIR"] in _f.read(), "the fake libcuda.so.1 is not the one loaded"
    vp, sz, ull = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_ulonglong
    cu.cuMemcpyHtoDAsync_v2.argtypes = [ull, vp, sz, vp]
    cu.cuMemAlloc_v2.argtypes = [ctypes.POINTER(ull), sz]
    cu.cuCtxSetCurrent.argtypes = [vp]
    cu.cuEventRecord.argtypes = [vp, vp]
    cu.cuEventSynchronize.argtypes = [vp]
    cu.fake_cuda_stream_sleep.argtypes = [vp, ctypes.c_long]
    for _n in ("live_events", "max_live_events", "live_streams", "live_host_allocs",
               "pageable_copies", "copies", "host_freed_in_use"):
        getattr(cu, "fake_cuda_" + _n).restype = ctypes.c_long

    def check(rc):
        assert rc == 0, f"CUresult {rc}"

    def retain(dev):
        ctx = vp()
        check(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev))
        return ctx

    def current():
        ctx = vp()
        check(cu.cuCtxGetCurrent(ctypes.byref(ctx)))
        return ctx.value

    def dalloc(n):
        d = ull()
        check(cu.cuMemAlloc_v2(ctypes.byref(d), n))
        return d.value

    def sync_stream(handle):
        # Waits for everything queued on `handle` (an event recorded there).
        ev = vp()
        check(cu.cuEventCreate(ctypes.byref(ev), 2))
        check(cu.cuEventRecord(ev, handle))
        check(cu.cuEventSynchronize(ev))
        check(cu.cuEventDestroy_v2(ev))

    def counters():
        return {n: getattr(cu, "fake_cuda_" + n)() for n in
                ("live_events", "max_live_events", "live_streams", "live_host_allocs",
                 "pageable_copies", "copies", "host_freed_in_use")}

    check(cu.cuInit(0))
""")


def run_fake(fake_dir, script, *, devices=None, fail_copy=None, delay_us=None, init=True, timeout=120):
    """Runs `script` (after PRELUDE) against the fake driver; returns its last
    stdout line parsed as JSON."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = fake_dir + os.pathsep + env.get("LD_LIBRARY_PATH", "")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["FAKE_DIR"] = fake_dir
    for name, value in (
        ("FAKE_CUDA_DEVICES", devices),
        ("FAKE_CUDA_FAIL_COPY", fail_copy),
        ("FAKE_CUDA_COPY_DELAY_US", delay_us),
    ):
        env.pop(name, None)
        if value is not None:
            env[name] = str(value)
    prelude = PRELUDE if init else PRELUDE.replace("check(cu.cuInit(0))", "")
    proc = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- build_info --------------------------------------------------------------------------


def test_build_info_finds_the_fake_driver(fake_dir):
    info = run_fake(fake_dir, "print(json.dumps(fastckpt.build_info()))", init=False)
    assert info["cuda_driver_found"] is True
    assert info["cuda_initialized"] is True
    assert info["cuda_device_count"] == 1
    assert info["cuda_driver_version"] == 12040
    assert info["cuda_error"] == ""


def test_build_info_device_count(fake_dir):
    info = run_fake(fake_dir, "print(json.dumps(fastckpt.build_info()))", devices=3, init=False)
    assert info["cuda_device_count"] == 3


def test_no_device_is_unavailable(fake_dir):
    # The real driver's cuInit fails with CUDA_ERROR_NO_DEVICE when it sees no GPU.
    out = run_fake(
        fake_dir,
        """
        info = fastckpt.build_info()
        try:
            T.cuda_engine_roundtrip(1, 16, 16)
            err = None
        except fastckpt.CudaUnavailableError as e:
            err = str(e)
        print(json.dumps({"info": info, "err": err}))
    """,
        devices=0,
        init=False,
    )
    info = out["info"]
    assert info["cuda_driver_found"] is True
    assert info["cuda_initialized"] is False
    assert info["cuda_device_count"] == 0
    assert "CUDA_ERROR_NO_DEVICE" in info["cuda_error"]
    assert out["err"] is not None and "CUDA_ERROR_NO_DEVICE" in out["err"]


def test_driver_without_entry_points_is_unavailable(tmp_path):
    cc = _c_compiler()
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) to build a stub libcuda.so.1")
    src = tmp_path / "stub.c"
    src.write_text("int cuInit(unsigned f) { return 0; }\n")
    subprocess.run([*cc, "-shared", "-fPIC", "-o", str(tmp_path / "libcuda.so.1"), str(src)], check=True, timeout=120)
    env = dict(
        os.environ, LD_LIBRARY_PATH=str(tmp_path), PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
    )
    script = textwrap.dedent("""
        import json, fastckpt
        from fastckpt import _native, _native_testing
        try:
            _native_testing.cuda_engine_roundtrip(1, 16, 16)
            err = None
        except fastckpt.CudaUnavailableError as e:
            err = str(e)
        print(json.dumps({"info": fastckpt.build_info(), "err": err}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["info"]["cuda_driver_found"] is True
    assert out["info"]["cuda_initialized"] is False
    assert "lacks the driver API entry points" in out["info"]["cuda_error"]
    assert out["err"] is not None and "lacks the driver API entry points" in out["err"]


@pytest.mark.skipif(fastckpt.build_info()["cuda_driver_found"], reason="a CUDA driver is installed here")
def test_missing_driver_is_unavailable():
    from fastckpt import _native_testing

    with pytest.raises(fastckpt.CudaUnavailableError, match="libcuda.so.1"):
        _native_testing.cuda_engine_roundtrip(1, 16, 16)


# ---- copies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nbytes,chunk,in_flight",
    [
        (10 * MIB, MIB, 4),  # the pipeline's shape
        (10 * MIB + 123, MIB, 1),  # a short last chunk; one copy in flight
        (3 * MIB, 3 * MIB, 4),  # one copy
        (1000, 7, 64),  # many tiny copies and marks
    ],
)
def test_roundtrip_is_byte_identical(fake_dir, nbytes, chunk, in_flight):
    out = run_fake(
        fake_dir,
        f"""
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        n = {nbytes}
        d = dalloc(n)
        data = os.urandom(n)
        T.cuda_engine_upload(d, data)
        got = T.cuda_engine_roundtrip(d, n, {chunk}, in_flight={in_flight})
        print(json.dumps({{"same": got == data, "len": len(got), **counters()}}))
    """,
        delay_us=500,
    )
    assert out["same"] and out["len"] == nbytes
    # Staging is page-locked memory from the engine, and nothing leaks.
    assert out["pageable_copies"] == 0
    assert out["live_host_allocs"] == 0
    assert out["live_streams"] == 0
    assert out["live_events"] == 0
    assert out["host_freed_in_use"] == 0
    assert out["max_live_events"] <= in_flight + 1


def test_dropped_stream_waits_for_its_copies(fake_dir):
    # An error path may drop a stream without waiting for its markers and
    # free the staging buffer right after: the stream's destructor must wait.
    out = run_fake(
        fake_dir,
        """
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        n = 4 << 20
        d = dalloc(n)
        T.cuda_engine_upload(d, bytes(n))
        got = T.cuda_engine_roundtrip(d, n, 1 << 20, abandon=True)
        print(json.dumps({"got": len(got), **counters()}))
    """,
        delay_us=20000,
    )
    assert out["got"] == 0
    assert out["copies"] == 5
    assert out["host_freed_in_use"] == 0
    assert out["live_host_allocs"] == 0 and out["live_streams"] == 0 and out["live_events"] == 0


def test_empty_roundtrip_and_bad_arguments(fake_dir):
    out = run_fake(
        fake_dir,
        """
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        d = dalloc(64)
        res = {"empty": T.cuda_engine_roundtrip(d, 0, 16) == b""}
        for name, call in (("chunk0", lambda: T.cuda_engine_roundtrip(d, 64, 0)),
                           ("device", lambda: T.cuda_engine_roundtrip(d, 64, 16, device=1)),
                           ("neg_device", lambda: T.cuda_engine_upload(d, b"x", device=-1))):
            try:
                call()
                res[name] = None
            except Exception as e:
                res[name] = [type(e).__name__, str(e)]
        print(json.dumps(res))
    """,
    )
    assert out["empty"]
    assert out["chunk0"][0] == "InvalidArgumentError"
    assert out["device"][0] == "InvalidArgumentError" and "device 1" in out["device"][1]
    assert out["neg_device"][0] == "InvalidArgumentError"


def test_copy_failure_surfaces_at_synchronisation(fake_dir):
    # Copy 1 is the upload; copy 11 is the roundtrip's last chunk, so the
    # failure can only be seen when its marker is waited for.
    out = run_fake(
        fake_dir,
        """
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        n = 10 << 20
        d = dalloc(n)
        T.cuda_engine_upload(d, bytes(n))
        try:
            T.cuda_engine_roundtrip(d, n, 1 << 20)
            err = None
        except fastckpt.CudaError as e:
            err = str(e)
            kind = [type(e).__name__, e.code, e.error_name]
        print(json.dumps({"err": err, "kind": kind, **counters()}))
    """,
        fail_copy=11,
        delay_us=1000,
    )
    assert out["err"] is not None
    # A GPU error, not "no GPU": the class, CUresult and name a caller can act on.
    assert out["kind"] == ["CudaError", 700, "CUDA_ERROR_ILLEGAL_ADDRESS"]
    assert "CUDA_ERROR_ILLEGAL_ADDRESS" in out["err"]
    assert "an illegal memory access was encountered" in out["err"]
    assert "cuEventSynchronize" in out["err"]
    # The error path frees what the success path frees.
    assert out["live_host_allocs"] == 0 and out["live_streams"] == 0 and out["live_events"] == 0


@pytest.mark.parametrize("fail_copy", [2, 5])
def test_copy_failure_raises(fake_dir, fail_copy):
    out = run_fake(
        fake_dir,
        """
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        n = 10 << 20
        d = dalloc(n)
        T.cuda_engine_upload(d, bytes(n))
        res = {}
        for i in range(2):   # CUDA errors of this kind are sticky: the retry fails too
            try:
                T.cuda_engine_roundtrip(d, n, 1 << 20)
                res[i] = None
            except fastckpt.CudaError as e:
                assert not isinstance(e, fastckpt.CudaUnavailableError)
                res[i] = str(e)
        print(json.dumps(res))
    """,
        fail_copy=fail_copy,
        delay_us=1000,
    )
    for i in ("0", "1"):
        assert out[i] is not None and "CUDA_ERROR_ILLEGAL_ADDRESS" in out[i], out


def test_enqueue_error_names_the_call(fake_dir):
    # A copy that runs past the allocation is refused at once by the driver.
    out = run_fake(
        fake_dir,
        """
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        d = dalloc(1 << 20)
        try:
            T.cuda_engine_roundtrip(d, 2 << 20, 1 << 20)
            err = None
        except fastckpt.CudaError as e:
            err = str(e)
            kind = [type(e).__name__, e.code, e.error_name]
        print(json.dumps({"err": err, "kind": kind}))
    """,
    )
    assert out["kind"] == ["CudaError", 1, "CUDA_ERROR_INVALID_VALUE"]
    assert out["err"].startswith("CUDA cuMemcpyDtoHAsync failed: CUDA_ERROR_INVALID_VALUE")
    assert "device 0" in out["err"]


# ---- ordering after the caller's stream --------------------------------------------------


@pytest.mark.parametrize("kind", ["legacy", "per_thread", "raw"])
def test_order_after_caller_stream(fake_dir, kind):
    # The caller queues a 300 ms stall and then a copy of new bytes on its
    # stream. Without OrderAfter the engine reads the old bytes (showing that
    # the test can tell); with it, the new ones.
    out = run_fake(
        fake_dir,
        f"""
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        n = 256 << 10
        d = dalloc(n)
        old, new = b"\\x01" * n, os.urandom(n)
        kind = "{kind}"
        if kind == "raw":
            s = vp()
            check(cu.cuStreamCreate(ctypes.byref(s), 1))
            handle, engine_handle = s, s.value
        else:
            handle = vp(1 if kind == "legacy" else 2)
            engine_handle = handle.value
        src = ctypes.create_string_buffer(new, n)
        res = {{}}
        for ordered in (False, True):
            T.cuda_engine_upload(d, old)
            check(cu.fake_cuda_stream_sleep(handle, 300000))
            check(cu.cuMemcpyHtoDAsync_v2(d, src, n, handle))
            got = T.cuda_engine_roundtrip(d, n, 64 << 10,
                                          stream=engine_handle if ordered else 0)
            res[str(ordered)] = "new" if got == new else "old" if got == old else "mixed"
            sync_stream(handle)
        print(json.dumps(res))
    """,
    )
    assert out == {"False": "old", "True": "new"}


def test_order_after_upload(fake_dir):
    # Uploads are ordered too: the caller's pending copy of old bytes must
    # land before the engine's upload of new ones.
    out = run_fake(
        fake_dir,
        """
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        n = 64 << 10
        d = dalloc(n)
        old, new = b"\\x02" * n, os.urandom(n)
        src = ctypes.create_string_buffer(old, n)
        check(cu.fake_cuda_stream_sleep(vp(1), 300000))
        check(cu.cuMemcpyHtoDAsync_v2(d, src, n, vp(1)))
        T.cuda_engine_upload(d, new, stream=1)
        sync_stream(vp(1))
        print(json.dumps({"new": T.cuda_engine_roundtrip(d, n, n) == new}))
    """,
    )
    assert out["new"]


# ---- contexts, threads, devices ----------------------------------------------------------


def test_contexts_are_made_current_and_restored(fake_dir):
    out = run_fake(
        fake_dir,
        """
        ctx = retain(0)                 # the caller's own retain
        check(cu.cuCtxSetCurrent(ctx))
        n = 1 << 20
        d = dalloc(n)
        data = os.urandom(n)
        T.cuda_engine_upload(d, data)
        res = {"same_main": T.cuda_engine_roundtrip(d, n, 1 << 16) == data,
               "restored_main": current() == ctx.value}
        check(cu.cuCtxSetCurrent(None))
        res["same_none"] = T.cuda_engine_roundtrip(d, n, 1 << 16) == data
        res["restored_none"] = current() is None

        def worker():   # a fresh thread has no current context
            res["thread_had_none"] = current() is None
            res["same_thread"] = T.cuda_engine_roundtrip(d, n, 1 << 16) == data
            res["thread_still_none"] = current() is None
        t = threading.Thread(target=worker)
        t.start(); t.join()
        for _ in range(5):
            T.cuda_engine_roundtrip(d, n, 1 << 18)
        res["retains"] = cu.fake_cuda_primary_retains(0)
        print(json.dumps(res))
    """,
    )
    assert out.pop("retains") == 2, "the engine retains the primary context once per process"
    assert all(out.values()), out


def test_two_devices_share_portable_staging(fake_dir):
    out = run_fake(
        fake_dir,
        """
        c0, c1 = retain(0), retain(1)
        n = 1 << 20
        check(cu.cuCtxSetCurrent(c0)); d0 = dalloc(n)
        check(cu.cuCtxSetCurrent(c1)); d1 = dalloc(n)
        a, b = os.urandom(n), os.urandom(n)
        T.cuda_engine_upload(d0, a, device=0)
        T.cuda_engine_upload(d1, b, device=1)
        res = {"dev0": T.cuda_engine_roundtrip(d0, n, 1 << 18, device=0) == a,
               "dev1": T.cuda_engine_roundtrip(d1, n, 1 << 18, device=1) == b,
               "still_c1": current() == c1.value}
        res.update(counters())
        res["retains"] = [cu.fake_cuda_primary_retains(0), cu.fake_cuda_primary_retains(1)]
        print(json.dumps(res))
    """,
        devices=2,
    )
    assert out["dev0"] and out["dev1"] and out["still_c1"]
    # Staging is allocated in one context; device 1's stream treats it as
    # page-locked only because it is PORTABLE.
    assert out["pageable_copies"] == 0
    assert out["retains"] == [2, 2]


def test_gil_is_released_during_copies(fake_dir):
    out = run_fake(
        fake_dir,
        """
        import time
        ctx = retain(0)
        check(cu.cuCtxSetCurrent(ctx))
        n = 8 << 20
        d = dalloc(n)
        T.cuda_engine_upload(d, bytes(n))
        done = threading.Event()
        def worker():
            T.cuda_engine_roundtrip(d, n, 1 << 20, in_flight=1)
            done.set()
        t = threading.Thread(target=worker)
        t0 = time.monotonic()
        t.start()
        ticks = 0
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)
        t.join()
        print(json.dumps({"ticks": ticks, "secs": time.monotonic() - t0}))
    """,
        delay_us=50000,
    )
    # 8 copies of 50 ms each: the main thread must run meanwhile.
    assert out["secs"] >= 0.35
    assert out["ticks"] >= 50


# ---- markers -----------------------------------------------------------------------------


def test_markers_do_not_leak_events(fake_dir):
    out = run_fake(
        fake_dir,
        """
        res = {"last_waited": T.cuda_engine_marks(100000, 1)}
        res["max_waited"] = cu.fake_cuda_max_live_events()
        res["last_unwaited"] = T.cuda_engine_marks(100000, 0)
        res.update(counters())
        print(json.dumps(res))
    """,
    )
    assert out["last_waited"] == 100000 and out["last_unwaited"] == 100000
    # Waited markers recycle their event...
    assert out["max_waited"] <= 2
    # ...and markers never waited for are bounded too (kMaxPendingMarks).
    assert out["max_live_events"] <= 1024
    assert out["live_events"] == 0 and out["live_streams"] == 0
