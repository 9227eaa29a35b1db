"""OS errors during a save surface as CheckpointIOError (an OSError) with errno,
leave no partial files behind, and never harm an earlier checkpoint."""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import fastckpt

IS_ROOT = os.geteuid() == 0


def test_enospc(small_tmpfs):
    prefix = str(small_tmpfs / "ckpt")
    fastckpt.save({"small": np.arange(1000, dtype=np.int64)}, prefix)
    before = sorted(os.listdir(small_tmpfs))
    with pytest.raises(fastckpt.CheckpointIOError) as e:
        fastckpt.save({"huge": np.ones(4 << 20, np.uint8)}, str(small_tmpfs / "next"))
    assert e.value.errno == errno.ENOSPC
    assert "next.data-00000-of-00001" in str(e.value)
    assert isinstance(e.value, OSError)
    assert sorted(os.listdir(small_tmpfs)) == before  # temporary files removed
    np.testing.assert_array_equal(fastckpt.load(prefix)["small"], np.arange(1000))


def test_enospc_overwriting_same_prefix_keeps_old_checkpoint(small_tmpfs):
    prefix = str(small_tmpfs / "ckpt")
    fastckpt.save({"a": np.arange(10.0)}, prefix)
    with pytest.raises(fastckpt.CheckpointIOError):
        fastckpt.save({"a": np.ones(4 << 20, np.uint8)}, prefix)
    np.testing.assert_array_equal(fastckpt.load(prefix)["a"], np.arange(10.0))


def _run_child(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, **kwargs
    )


@pytest.fixture
def world_visible_dir():
    """A directory other users can reach (pytest's tmp_path sits under a 0700 directory)."""
    path = tempfile.mkdtemp(prefix="fastckpt-eacces-")
    os.chmod(path, 0o755)
    try:
        yield pathlib.Path(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("missing_parent", [False, True])
def test_eacces(world_visible_dir, missing_parent):
    target = world_visible_dir / "locked"
    target.mkdir()
    target.chmod(0o555)
    prefix = target / "sub" / "x" if missing_parent else target / "x"
    code = f"""
        import errno, os, numpy as np, fastckpt
        save = fastckpt.save  # imported while root: the interpreter's modules may be root-only here
        if os.geteuid() == 0:
            os.setgid(65534); os.setuid(65534)  # drop root: permissions apply again
        try:
            save({{"a": np.ones(3)}}, {str(prefix)!r})
        except fastckpt.CheckpointIOError as e:
            assert isinstance(e, OSError)
            print("errno", errno.errorcode[e.errno], "|", e)
        """
    try:
        proc = _run_child(code)
    finally:
        target.chmod(0o755)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("errno EACCES | ")
    expected = str(target / "sub") if missing_parent else str(target / "x.data-00000-of-00001")
    assert expected in proc.stdout
    assert os.listdir(target) == []


def test_file_size_limit_gives_efbig_and_cleans_up(tmp_path):
    code = f"""
        import errno, os, resource, signal, numpy as np, fastckpt
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            fastckpt.save({{"a": np.ones(1 << 20, np.uint8)}}, {str(tmp_path / "big")!r}, num_shards=2)
        except fastckpt.CheckpointIOError as e:
            print(errno.errorcode[e.errno])
        """
    proc = _run_child(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "EFBIG"
    assert os.listdir(tmp_path) == []
