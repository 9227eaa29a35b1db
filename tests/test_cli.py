"""The ``fastckpt`` command line, run as ``python -m fastckpt`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import flip_in

import fastckpt
from fastckpt import _native
from fastckpt.writer import partitioned_items, prepare_item, write_items

DATA1 = ".data-00000-of-00001"


def run(*args, cwd=None):
    proc = subprocess.run(
        [sys.executable, "-m", "fastckpt", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def ckpt(tmp_path):
    prefix = str(tmp_path / "model")
    tensors = {
        "dense/kernel": np.ones((64, 32), np.float32),
        "global_step": np.int64(7),
        "vocab": np.array([b"ab", b"c"], dtype=object),
    }
    fastckpt.save(tensors, prefix, durable=False, num_shards=1)
    return prefix


# ---------------------------------------------------------------------------
# verify


def test_verify_good(ckpt):
    code, out, err = run("verify", ckpt)
    assert code == 0, err
    assert "OK" in out
    assert "tensors:    3" in out
    assert f"bytes:      {64 * 32 * 4 + 8 + 2 + 4 + 3}" in out
    assert "GB/s" in out
    assert err == ""


def test_verify_good_json(ckpt):
    code, out, _ = run("verify", ckpt, "--json", "--threads", 2)
    assert code == 0
    report = json.loads(out)
    assert report["ok"] is True
    assert report["prefix"] == ckpt
    assert report["tensors"] == 3
    assert report["bytes"] == 64 * 32 * 4 + 8 + 2 + 4 + 3
    assert report["files"] == 1
    assert report["bad"] == []
    assert report["gbps"] >= 0 and report["seconds"] > 0


def test_verify_damaged(ckpt):
    data = flip_in(ckpt, b"dense/kernel", mask=0x01)
    flip_in(ckpt, b"vocab", mask=0x01)
    code, out, err = run("verify", ckpt)
    assert code == 1, err
    assert "DAMAGED: 2 of 3 tensors" in out
    assert "dense/kernel" in out and "vocab" in out and "global_step" not in out
    assert data in out
    assert "checksum mismatch" in out
    assert "Traceback" not in err


def test_verify_damaged_json(ckpt):
    data = flip_in(ckpt, b"dense/kernel", mask=0x01)
    code, out, _ = run("verify", "--json", ckpt)
    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["tensors"] == 3
    (bad,) = report["bad"]
    assert bad["name"] == "dense/kernel" and bad["file"] == data
    assert "data checksum mismatch" in bad["reason"]


def test_verify_missing_data_file(ckpt):
    os.remove(ckpt + DATA1)
    code, out, err = run("verify", ckpt)
    assert code == 2
    assert out == ""
    assert "data file not found" in err and ckpt + DATA1 in err
    assert "Traceback" not in err


def test_verify_missing_data_file_json(ckpt):
    os.remove(ckpt + DATA1)
    code, out, err = run("verify", ckpt, "--json")
    assert code == 2
    result = json.loads(out)
    assert result["ok"] is False and result["error_type"] == "CheckpointNotFoundError"
    assert "data file not found" in err


def test_verify_not_a_checkpoint(tmp_path):
    code, out, err = run("verify", tmp_path / "nothing")
    assert code == 2 and "index not found" in err and "Traceback" not in err
    code, out, err = run("verify", tmp_path)  # a directory without a state file
    assert code == 2 and "no checkpoint in directory" in err and "Traceback" not in err


def test_verify_garbled_index(ckpt):
    with open(ckpt + ".index", "r+b") as f:
        f.seek(10)
        f.write(b"\xde\xad\xbe\xef")
    code, _, err = run("verify", ckpt)
    assert code == 1
    assert "corrupt" in err or "checksum" in err
    assert "Traceback" not in err


def test_verify_directory(tmp_path):
    saver = fastckpt.Saver({"a": np.arange(3.0)})
    saver.save(None, str(tmp_path / "m"), global_step=1)
    saver.save(None, str(tmp_path / "m"), global_step=2)
    code, out, _ = run("verify", tmp_path, "--json")
    assert code == 0
    assert json.loads(out)["prefix"] == str(tmp_path / "m-2")


def test_verify_bad_threads(ckpt):
    code, _, err = run("verify", ckpt, "--threads", 0)
    assert code == 2 and "--threads" in err


# ---------------------------------------------------------------------------
# ls


def test_ls(ckpt):
    code, out, err = run("ls", ckpt)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["name", "dtype", "shape", "bytes", "shard"]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert list(rows) == ["dense/kernel", "global_step", "vocab"]
    assert rows["dense/kernel"].split() == ["dense/kernel", "float32", "[64,", "32]", "8192", "model" + DATA1]
    assert rows["global_step"].split()[1:3] == ["int64", "[]"]
    assert rows["vocab"].split()[1:4] == ["string", "[2]", "9"]
    assert lines[-1].startswith("3 tensors")


def test_ls_json(ckpt):
    code, out, _ = run("ls", ckpt, "--json")
    assert code == 0
    listing = json.loads(out)
    assert listing["prefix"] == ckpt
    rows = {r["name"]: r for r in listing["tensors"]}
    assert rows["dense/kernel"] == {
        "name": "dense/kernel",
        "dtype": "float32",
        "shape": [64, 32],
        "bytes": 8192,
        "stored_bytes": 8192,
        "shard": 0,
        "file": "model" + DATA1,
        "slices": None,
        "missing": False,
    }
    assert listing["missing_files"] == []
    assert rows["vocab"]["dtype"] == "string"
    assert rows["global_step"]["shape"] == []


def test_ls_partitioned_and_bfloat16(tmp_path):
    import ml_dtypes

    prefix = str(tmp_path / "part")
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    items, keep = partitioned_items("p", full.shape, [([(0, 3), (0, -1)], full[0:3]), ([(3, 4), (0, -1)], full[3:7])])
    item, owner = prepare_item("bf", np.ones(3, ml_dtypes.bfloat16))
    items.append(item)
    keep.append(owner)
    write_items(items, prefix, num_shards=1, threads=None, durable=False)

    code, out, err = run("ls", prefix)
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert list(rows) == ["bf", "p"]  # slice entries are folded into their tensor
    assert "partitioned (2 slices)" in rows["p"]
    assert rows["p"].split()[1:5] == ["float32", "[7,", "5]", str(full.nbytes)]
    assert rows["bf"].split()[1] == "bfloat16"
    code, out, _ = run("ls", prefix, "--json")
    p = {r["name"]: r for r in json.loads(out)["tensors"]}["p"]
    assert (p["slices"], p["bytes"], p["shard"], p["file"]) == (2, full.nbytes, None, None)


def test_ls_missing(tmp_path):
    code, out, err = run("ls", tmp_path / "nothing")
    assert code == 2 and out == "" and "index not found" in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# plumbing


def test_help_and_version():
    code, out, _ = run("--help")
    assert code == 0 and "verify" in out and "ls" in out
    code, out, _ = run("verify", "--help")
    assert code == 0 and "--json" in out and "--threads" in out
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"fastckpt {fastckpt.__version__}"
    code, _, err = run()
    assert code == 2 and "usage" in err


def test_main_in_process(ckpt, capsys):
    """main() (the console script's entry point) returns the exit status instead of exiting."""
    from fastckpt import cli

    assert cli.main(["verify", ckpt]) == 0
    assert "OK" in capsys.readouterr().out
    flip_in(ckpt, b"global_step", mask=0x01)
    assert cli.main(["verify", ckpt, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["bad"][0]["name"] == "global_step"
    with open(os.path.join(os.path.dirname(__file__), os.pardir, "pyproject.toml")) as f:
        assert 'fastckpt = "fastckpt.cli:main"' in f.read()


def test_there_is_no_bench_command(tmp_path):
    """The benchmark suite is run from a source checkout (``python -m benchmarks``);
    the command line does not import a ``benchmarks`` package from the current
    directory."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "__init__.py").write_text("")
    (tmp_path / "benchmarks" / "__main__.py").write_text("raise SystemExit('imported from the cwd')\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo)  # this checkout's fastckpt, run from another directory
    proc = subprocess.run(
        [sys.executable, "-m", "fastckpt", "bench", "--quick"],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "imported from the cwd" not in proc.stderr
    assert "fastckpt: error: argument COMMAND: invalid choice: 'bench'" in proc.stderr


# ---------------------------------------------------------------------------
# missing data shards, paths a user types


def _sharded(tmp_path):
    prefix = str(tmp_path / "sharded")
    tensors = {f"t{i}": np.full((10,), i, np.int16) for i in range(4)}
    fastckpt.save(tensors, prefix, num_shards=2, durable=False)
    reader = _native.Reader(prefix)
    shard_of = {e[0].decode(): e[3] for e in reader.entries()}
    reader.close()
    return prefix, shard_of


def test_ls_with_a_missing_shard(tmp_path):
    prefix, shard_of = _sharded(tmp_path)
    os.remove(prefix + ".data-00001-of-00002")
    code, out, err = run("ls", prefix)
    assert code == 0, err
    lines = out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:-2]}
    assert sorted(rows) == ["t0", "t1", "t2", "t3"]
    for name, shard in shard_of.items():
        assert rows[name].endswith(f"sharded.data-0000{shard}-of-00002" + (" (missing)" if shard else ""))
    assert lines[-1] == "missing data files: sharded.data-00001-of-00002 (their tensors cannot be read)"
    code, out, _ = run("ls", prefix, "--json")
    listing = json.loads(out)
    assert code == 0 and listing["missing_files"] == ["sharded.data-00001-of-00002"]
    assert {r["name"]: r["missing"] for r in listing["tensors"]} == {n: s == 1 for n, s in shard_of.items()}


def test_verify_with_missing_shards_exits_2_naming_them(tmp_path):
    prefix, _ = _sharded(tmp_path)
    gone = [prefix + ".data-00000-of-00002", prefix + ".data-00001-of-00002"]
    for path in gone:
        os.remove(path)
    code, out, err = run("verify", prefix)
    assert (code, out) == (2, "")
    assert err == f"fastckpt verify: error: 2 checkpoint data files not found: '{gone[0]}', '{gone[1]}'\n"


@pytest.mark.parametrize("suffix", [".index", DATA1, ".meta"])
def test_a_checkpoint_file_names_its_checkpoint(ckpt, suffix):
    """What tab completion gives for PREFIX works as PREFIX (.meta need not exist)."""
    code, out, err = run("ls", ckpt + suffix)
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["dense/kernel", "global_step", "vocab"]
    code, out, err = run("verify", ckpt + suffix, "--json")
    assert code == 0, err
    assert json.loads(out)["prefix"] == ckpt


def test_verify_damage_report_prints_slices_readably(tmp_path):
    prefix = str(tmp_path / "p")
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    parts = [[(0, 3), (0, -1)], [(3, 4), (0, -1)]]
    items, keep = partitioned_items("part", full.shape, [(parts[0], full[:3]), (parts[1], full[3:])])
    write_items(items, prefix, num_shards=1, threads=None, durable=False)
    from fastckpt.format import slices as slicing

    flip_in(prefix, slicing.encode_slice_key("part", parts[1]), mask=0x01)
    code, out, err = run("verify", prefix)
    assert code == 1, err
    assert "\x00" not in out
    assert "DAMAGED: 1 of 1 tensors failed verification (1 problem(s))" in out
    assert "  part\n    file:   " + prefix + DATA1 + "\n    reason: slice '3,4:-': data checksum mismatch" in out


def test_ls_of_a_compressed_checkpoint_shows_held_and_stored_bytes(tmp_path):
    rng = np.random.default_rng(0)
    prefix = str(tmp_path / "z")
    fastckpt.save(
        {"w": rng.standard_normal((512, 256)).astype(np.float32), "b": np.ones(4)}, prefix, compression="zstd"
    )
    stored = fastckpt.load_checkpoint(prefix)._native.entries()
    w_stored = next(e[5] for e in stored if e[0] == b"w")
    code, out, _ = run("ls", prefix, "--json")
    rows = {r["name"]: r for r in json.loads(out)["tensors"]}
    assert sorted(rows) == ["b", "w"]  # the frame table is no tensor
    assert (rows["w"]["bytes"], rows["w"]["stored_bytes"]) == (524288, w_stored)
    assert w_stored < 524288
    code, out, _ = run("ls", prefix)
    assert out.splitlines()[-1] == (
        f"2 tensors, 524320 bytes (524.32 KB); {w_stored + 32} bytes stored, "
        f"compressed ({524320 / (w_stored + 32):.2f}x)"
    )
