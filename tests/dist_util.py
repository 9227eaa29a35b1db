"""Launching real multi-process jobs from the tests: torch.distributed over
gloo on localhost (one process per rank, a free port each time) and MPI
through the ``mpiexec`` of the venv's MPI wheel. Every launch is bounded in
time: a hung collective fails its test, it never hangs the run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TORCH_PRELUDE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import torch
    import torch.distributed as dist
    import fastckpt
    import fastckpt.distributed as fd
    dist.init_process_group("gloo")
    RANK, WORLD = dist.get_rank(), dist.get_world_size()

    def emit(obj):
        print("RESULT " + json.dumps(obj), flush=True)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("FASTCKPT_THREADS", "2")
    env.update(extra or {})
    return env


class RankFailure(AssertionError):
    pass


def _results(outputs: List[str]) -> List[Any]:
    out = []
    for text in outputs:
        lines = [ln[len("RESULT ") :] for ln in text.splitlines() if ln.startswith("RESULT ")]
        out.append(json.loads(lines[-1]) if lines else None)
    return out


def run_torch(
    world: int,
    *scripts: str,
    timeout: float = 180,
    env: Optional[Dict[str, str]] = None,
    expect_exit: Optional[Dict[int, int]] = None,
) -> List[Any]:
    """Runs `scripts` (each dedented, one after another, after TORCH_PRELUDE)
    on `world` gloo ranks; returns each rank's last ``emit()``ed object. Every
    rank must exit 0 unless `expect_exit` says otherwise for it (e.g. a rank
    that kills itself)."""
    port = free_port()
    # Every group is destroyed before exit, as torch.distributed asks: a
    # process that exits with live gloo groups can abort in their destructors
    # ("terminate called without an active exception"). Where every rank
    # lives to the end, a barrier first, so that no rank tears its groups
    # down while a peer's collective (FSDP's asynchronous ones) is in flight.
    ending = "\ndist.destroy_process_group()\n" if expect_exit else "\ndist.barrier()\ndist.destroy_process_group()\n"
    code = TORCH_PRELUDE + "\n".join(textwrap.dedent(s) for s in scripts) + ending
    procs = []
    for rank in range(world):
        e = _env(env)
        e.update(
            RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                env=e,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        )
    return _collect(procs, timeout, expect_exit)


def _collect(procs: List[subprocess.Popen], timeout: float, expect_exit: Optional[Dict[int, int]]) -> List[Any]:
    deadline = time.monotonic() + timeout
    outputs, errors = [""] * len(procs), [""] * len(procs)
    try:
        for i, p in enumerate(procs):
            left = max(0.1, deadline - time.monotonic())
            outputs[i], errors[i] = p.communicate(timeout=left)
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for i, p in enumerate(procs):
            out, err = p.communicate()
            outputs[i] += out or ""
            errors[i] += err or ""
        raise RankFailure(
            f"the job did not finish within {timeout} s:\n"
            + "\n".join(f"--- rank {i}\n{errors[i][-3000:]}" for i in range(len(procs)))
        ) from None
    expect_exit = expect_exit or {}
    for i, p in enumerate(procs):
        if p.returncode != expect_exit.get(i, 0):
            raise RankFailure(f"rank {i} exited {p.returncode}:\n{errors[i][-4000:]}\n{outputs[i][-2000:]}")
    return _results(outputs)


def mpiexec() -> str:
    """The mpiexec of the MPI wheel installed with the test extra."""
    path = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert path is not None, "mpiexec not found: the test extra installs mpich (pip install -e '.[test]')"
    return path


MPI_PRELUDE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from mpi4py import MPI
    import fastckpt
    import fastckpt.distributed as fd
    COMM = MPI.COMM_WORLD
    RANK, WORLD = COMM.Get_rank(), COMM.Get_size()

    def emit(obj):
        # A file per rank: mpiexec merges the ranks' output streams.
        with open(os.path.join(os.environ["FASTCKPT_TEST_RESULTS"], "rank%d.json" % RANK), "w") as f:
            json.dump(obj, f)
""")


def run_mpi(world: int, script: str, *, timeout: float = 180, values: Optional[Dict[str, Any]] = None) -> List[Any]:
    """Runs `script` (after MPI_PRELUDE, and `values` as global variables)
    with ``mpiexec -n world``; returns each rank's last ``emit()``ed object."""
    assigns = "".join(f"{k} = {v!r}\n" for k, v in (values or {}).items())
    code = MPI_PRELUDE + assigns + textwrap.dedent(script)
    results_dir = tempfile.mkdtemp(prefix="fastckpt-mpi-")
    proc = subprocess.Popen(
        [mpiexec(), "-n", str(world), sys.executable, "-c", code],
        env=_env({"FASTCKPT_TEST_RESULTS": results_dir}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise RankFailure(f"mpiexec did not finish within {timeout} s:\n{err[-4000:]}") from None
    if proc.returncode != 0:
        raise RankFailure(f"mpiexec exited {proc.returncode}:\n{err[-4000:]}\n{out[-2000:]}")
    results: List[Any] = [None] * world
    for rank in range(world):
        path = os.path.join(results_dir, f"rank{rank}.json")
        if os.path.exists(path):
            with open(path) as f:
                results[rank] = json.load(f)
    shutil.rmtree(results_dir, ignore_errors=True)
    return results
