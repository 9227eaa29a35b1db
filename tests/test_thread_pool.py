"""The process-wide I/O thread pool (csrc/fastckpt/pipeline/helper_threads.h).

* Many saves, loads and verifies running at once from Python threads give
  the right bytes, whatever the cap (down to no pool threads at all: the
  calling thread always does its own work).
* The threads the process starts for I/O are bounded by the cap, however
  many calls run at once and however many threads each asks for, and they
  are reused across calls; idle ones exit.
* A failure to create a thread is never a crash: the work completes on
  fewer threads (or a FastCkptError says why).
* A child made by fork() starts with an empty pool and can save and load.

Scenarios that change process-wide settings, count the process's threads
(/proc/self/status) or fork run in a child interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import fastckpt
from fastckpt import _native

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
MiB = 1 << 20

# Shared by the child scripts: a workload of concurrent saves (blocking and
# asynchronous), loads and verifies whose bytes are checked, and a sampler
# of the process's thread count.
PRELUDE = '''
import json, os, sys, threading, time
import numpy as np
import fastckpt
from fastckpt import _native, _native_testing
MiB = 1 << 20

def os_threads():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])

class Sampler:
    """Samples the process's thread count until stopped; .peak is the most seen."""
    def __init__(self):
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run)
    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, os_threads())
            time.sleep(0.0005)
    def __enter__(self):
        self._t.start()
        return self
    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

def work(root, wid, rounds, threads):
    rng = np.random.default_rng(wid)
    for r in range(rounds):
        vals = {f"t{i}": rng.standard_normal(1000 + 37 * i).astype(np.float32) for i in range(20)}
        vals["big"] = rng.standard_normal(3 * MiB // 8)
        p = os.path.join(root, f"w{wid}-r{r}")
        if r % 2:
            fastckpt.save(vals, p, threads=threads, num_shards=3, durable=False, blocking=False).result(120)
        else:
            fastckpt.save(vals, p, threads=threads, num_shards=3, durable=False)
        back = fastckpt.load(p, threads=threads)
        assert sorted(back) == sorted(vals), p
        for k, v in vals.items():
            assert np.array_equal(back[k], v), (p, k)
        assert fastckpt.verify(p, threads=threads).ok, p

def run_workers(root, n, rounds, threads):
    errors = []
    def one(w):
        try:
            work(root, w, rounds, threads)
        except BaseException as e:
            errors.append(repr(e))
    ts = [threading.Thread(target=one, args=(w,)) for w in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors
'''


def run_child(body: str, *args: str, timeout: float = 240) -> dict:
    """Runs PRELUDE + body in a fresh interpreter; returns the JSON object it
    prints last. A crash (abort, segfault) or a hang fails the test."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, TESTS]))
    script = PRELUDE + textwrap.dedent(body)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the child did not finish within {timeout} s (a deadlock?); stderr: {e.stderr!r}")
    assert proc.returncode == 0, (
        f"the child exited with {proc.returncode} (negative: killed by that signal); stderr:\n{proc.stderr}"
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_concurrent_saves_loads_and_verifies_are_correct(tmp_path):
    """In this process, with the default pool: 6 Python threads, each saving
    (blocking and asynchronously), loading and verifying with 4 threads."""
    ns: dict = {}
    exec(PRELUDE, ns)
    before = _native.thread_stats()
    errors = ns["run_workers"](str(tmp_path), 6, 4, 4)
    assert errors == []
    after = _native.thread_stats()
    assert after["exceptions"] == before["exceptions"] == 0
    assert after["threads"] <= after["limit"]


@pytest.mark.parametrize("cap", [0, 1, 3])
def test_thread_count_is_bounded_by_the_cap(tmp_path, cap):
    """8 Python threads, each asking for 8 I/O threads per call (64 wanted at
    once): the process never runs more than the cap in pool threads, and the
    work is right even with no pool thread at all."""
    out = run_child(
        f"""
        _native.configure_threads(max_threads={cap})
        fastckpt.save({{"warm": np.ones(10)}}, os.path.join(sys.argv[1], "warm"))  # background machinery
        base = os_threads()
        with Sampler() as s:
            errors = run_workers(sys.argv[1], 8, 4, 8)
        st = _native.thread_stats()
        print(json.dumps({{"errors": errors, "base": base, "peak": s.peak, "stats": st}}))
        """,
        str(tmp_path),
    )
    assert out["errors"] == []
    st = out["stats"]
    assert st["limit"] == cap
    assert st["peak_threads"] <= cap
    assert st["threads_started"] <= cap + st["threads_exited"]
    assert st["exceptions"] == 0
    if cap == 0:
        assert st["helpers_run"] == 0 and st["threads_started"] == 0
    else:
        assert st["helpers_run"] > 0
    # The 8 workers, the sampler, the background save thread and the pool.
    assert out["peak"] <= out["base"] + 8 + 1 + 1 + cap, out


def test_threads_are_reused_across_calls(tmp_path):
    """200 calls asking for 8 threads each start at most the cap's worth of
    threads, not 7 per call."""
    out = run_child(
        """
        _native.configure_threads(max_threads=4, idle_seconds=600)
        x = {"x": np.arange(1 << 18, dtype=np.float32), "y": np.ones(1000)}
        p = os.path.join(sys.argv[1], "ck")
        for i in range(100):
            fastckpt.save(x, p, threads=8, num_shards=4, durable=False)
            assert np.array_equal(fastckpt.load(p, threads=8)["x"], x["x"])
        print(json.dumps(_native.thread_stats()))
        """,
        str(tmp_path),
    )
    assert out["threads_started"] <= 4
    assert out["helpers_run"] >= 100
    assert out["threads"] <= 4


def test_idle_threads_exit(tmp_path):
    out = run_child(
        """
        base = os_threads()
        _native.configure_threads(idle_seconds=600)
        fastckpt.save({f"x{i}": np.arange(1 << 18, dtype=np.float32) for i in range(8)},
                      os.path.join(sys.argv[1], "ck"), threads=4, num_shards=4, durable=False)
        busy = _native.thread_stats()["threads"]
        _native.configure_threads(idle_seconds=0.2)  # idle threads see the new setting at once
        deadline = time.monotonic() + 30
        while _native.thread_stats()["threads"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.05)  # the last thread leaves the pool, then the kernel
        print(json.dumps({"busy": busy, "stats": _native.thread_stats(), "base": base, "now": os_threads()}))
        """,
        str(tmp_path),
    )
    assert out["busy"] >= 1
    assert out["stats"]["threads"] == 0
    assert out["stats"]["threads_exited"] == out["stats"]["threads_started"] >= 1
    assert out["now"] == out["base"]


@pytest.mark.parametrize("skip", [0, 1], ids=["every-creation-fails", "after-one-thread"])
def test_thread_creation_failure_is_never_a_crash(tmp_path, skip):
    """pthread_create failing (the test hook fails it with EAGAIN, as a process
    out of threads does): saves (blocking, asynchronous, device), loads,
    device loads and verifies complete on the threads there are."""
    out = run_child(
        f"""
        from sim_device import SimDeviceArray, new_sim_array
        _native_testing.arm_thread_failures({skip}, -1)
        errors = run_workers(sys.argv[1], 3, 2, 8)
        os.environ["FASTCKPT_STAGING_MB"] = "1"
        _native_testing.install_simulated_device()
        x = np.arange(3 * MiB // 4, dtype=np.float32)
        p = os.path.join(sys.argv[1], "dev")
        fastckpt.save({{"x": SimDeviceArray(x)}}, p, threads=4)
        fastckpt.save({{"x": SimDeviceArray(x)}}, p + "-async", threads=4, blocking=False).result(60)
        dev = fastckpt.load(p, device="cuda:0", array_type=new_sim_array, threads=4)["x"].peek()
        ok = (np.array_equal(dev, x) and np.array_equal(fastckpt.load(p + "-async")["x"], x))
        st = _native.thread_stats()
        print(json.dumps({{"errors": errors, "ok": bool(ok), "stats": st,
                          "refused": _native_testing.thread_failures()}}))
        """,
        str(tmp_path),
    )
    assert out["errors"] == []
    assert out["ok"] is True
    st = out["stats"]
    assert out["refused"] >= 1
    assert st["create_failures"] >= 1
    assert st["threads_started"] == skip
    assert st["exceptions"] == 0


def test_a_forked_child_can_save_and_load(tmp_path):
    """fork() while pool threads exist and a save is in flight on another
    thread (held inside its snapshot, its writer and filler helpers running):
    the child's pool is empty and works; the parent's save completes."""
    out = run_child(
        """
        from fastckpt.writer import prepare_items
        root = sys.argv[1]
        os.environ["FASTCKPT_STAGING_MB"] = "1"
        _native.configure_staging(MiB, 64 * MiB, 64 * MiB)
        fastckpt.save({f"w{i}": np.ones(1 << 17) for i in range(8)}, os.path.join(root, "warm"),
                      threads=4, num_shards=4)
        assert _native.thread_stats()["threads"] >= 1
        # A save held inside its snapshot (the hook waits for a failure that
        # does not come, for 2 s) while we fork.
        _native_testing.arm_fill_delay(0, 2.0, 0.0)
        x = np.arange(6 * MiB // 4, dtype=np.float32)
        items, keep = prepare_items({"x": x})
        job = _native.SaveJob(os.path.join(root, "inflight"), items, threads=4, snapshot_host=True,
                              max_buffers=4, fill_threads=3)
        def hold():
            job.start_writing()
            job.snapshot()
            job.finish()
        holder = threading.Thread(target=hold)
        holder.start()
        while not _native_testing.fill_delay_state()["started"]:
            time.sleep(0.001)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                st = _native.thread_stats()
                assert st["threads"] == 0 and st["queued"] == 0, st
                y = {f"y{i}": np.arange(1 << 18, dtype=np.float64) + i for i in range(6)}
                p = os.path.join(root, "child")
                fastckpt.save(y, p, threads=4, num_shards=3)
                fastckpt.save(y, p + "-async", threads=4, num_shards=3, blocking=False).result(60)
                for q in (p, p + "-async"):
                    back = fastckpt.load(q, threads=4)
                    assert sorted(back) == sorted(y)
                    assert all(np.array_equal(back[k], v) for k, v in y.items())
                    assert fastckpt.verify(q, threads=4).ok
                assert _native.thread_stats()["threads_started"] > st["threads_started"]
                code = 0
            except BaseException:
                import traceback
                with open(os.path.join(root, "child-error.txt"), "w") as f:
                    traceback.print_exc(file=f)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        holder.join()
        ok = np.array_equal(fastckpt.load(os.path.join(root, "inflight"))["x"], x)
        err = os.path.join(root, "child-error.txt")
        error = open(err).read() if os.path.exists(err) else None
        print(json.dumps({"child": os.waitstatus_to_exitcode(status), "parent_ok": bool(ok),
                          "child_error": error}))
        """,
        str(tmp_path),
        timeout=120,
    )
    assert out == {"child": 0, "parent_ok": True, "child_error": None}


def test_many_concurrent_calls_with_one_pool_thread_do_not_deadlock(tmp_path):
    """One pool thread shared by saves whose writers wait for their
    snapshots, device saves and loads with a small staging budget, and
    verifies: every call completes (helpers only speed work up)."""
    out = run_child(
        """
        from sim_device import SimDeviceArray, new_sim_array
        os.environ["FASTCKPT_STAGING_MB"] = "1"
        os.environ["FASTCKPT_HOST_BUDGET_MB"] = "3"
        _native.configure_threads(max_threads=1)
        _native_testing.install_simulated_device()
        root = sys.argv[1]
        errors = []
        def device_work(w):
            try:
                x = np.random.default_rng(w).standard_normal(5 * MiB // 8)
                p = os.path.join(root, f"d{w}")
                fastckpt.save({"x": SimDeviceArray(x)}, p, threads=4)
                fastckpt.save({"x": SimDeviceArray(x)}, p + "a", threads=4, blocking=False).result(120)
                out = fastckpt.load(p + "a", device="cuda:0", array_type=new_sim_array, threads=4)
                assert np.array_equal(out["x"].peek(), x)
            except BaseException as e:
                errors.append(repr(e))
        ts = [threading.Thread(target=device_work, args=(w,)) for w in range(3)]
        for t in ts:
            t.start()
        errors += run_workers(root, 3, 2, 4)
        for t in ts:
            t.join()
        print(json.dumps({"errors": errors, "lent": _native.staging_stats()["lent"]}))
        """,
        str(tmp_path),
        timeout=180,
    )
    assert out == {"errors": [], "lent": 0}


def test_configure_threads_validates_its_arguments():
    with pytest.raises(
        fastckpt.InvalidArgumentError, match="configure_threads: max_threads must be between 0 and 65536, not -1"
    ):
        _native.configure_threads(max_threads=-1)
    with pytest.raises(
        fastckpt.InvalidArgumentError, match="configure_threads: max_threads must be an int or None, not str"
    ):
        _native.configure_threads(max_threads="4")
    with pytest.raises(
        fastckpt.InvalidArgumentError, match="configure_threads: idle_seconds must be > 0 and at most 86400"
    ):
        _native.configure_threads(idle_seconds=0)
    with pytest.raises(
        fastckpt.InvalidArgumentError, match="configure_threads: idle_seconds must be a number or None, not list"
    ):
        _native.configure_threads(idle_seconds=[])
    st = _native.thread_stats()
    _native.configure_threads()  # None, None: nothing changes
    assert _native.thread_stats()["limit"] == st["limit"]
    assert st["limit"] >= max(64, os.cpu_count() or 1)


def test_max_threads_setting_caps_the_pool():
    code = "from fastckpt import _native; print(_native.thread_stats()['limit'])"
    env = dict(os.environ, FASTCKPT_MAX_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"
    env["FASTCKPT_MAX_THREADS"] = "many"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "ImportError: FASTCKPT_MAX_THREADS='many': FASTCKPT_MAX_THREADS='many' is not an integer" in out.stderr
