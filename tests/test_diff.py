"""fastckpt.diff and ``fastckpt diff``: every category, values and tolerance,
exit codes, the JSON schema, comparisons across formats, and the index-CRC
shortcut that reads no data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import safetensors.numpy

import fastckpt
from fastckpt import cli
from fastckpt.convert.tf_bundle import BundleSource


def _pair(tmp_path, a, b, **save):
    fastckpt.save(a, str(tmp_path / "a"), **save)
    fastckpt.save(b, str(tmp_path / "b"), **save)
    return tmp_path / "a", tmp_path / "b"


def _base():
    return {
        "same": np.arange(10, dtype=np.float32),
        "w": np.array([1.0, 2.0, 4.0, -8.0], np.float32),
        "dt": np.arange(3, dtype=np.int32),
        "sh": np.zeros((2, 3), np.float32),
        "gone": np.ones(1, np.int8),
        "s": np.array([b"x", b"yz"], dtype=object),
    }


def _other():
    return {
        "same": np.arange(10, dtype=np.float32),
        "w": np.array([1.0, 2.5, 4.0, -8.0], np.float32),
        "dt": np.arange(3, dtype=np.int64),
        "sh": np.zeros((3, 2), np.float32),
        "new": np.ones(1, np.int8),
        "s": np.array([b"x", b"yZ"], dtype=object),
    }


def test_each_category(tmp_path):
    a, b = _pair(tmp_path, _base(), _other())
    r = fastckpt.diff(a, b)
    assert r.only_in_a == ["gone"] and r.only_in_b == ["new"]
    assert r.changed == [
        fastckpt.TensorChange("dt", "int32", "int64", [3], [3]),
        fastckpt.TensorChange("sh", "float32", "float32", [2, 3], [3, 2]),
    ]
    assert r.identical == ["same"]
    assert r.differing == [fastckpt.TensorDiff("s"), fastckpt.TensorDiff("w")]
    assert not r.same and not r.within_tolerance
    assert (r.a_format, r.b_format) == ("tf", "tf")


def test_values_report_max_abs_and_rel_and_tolerance(tmp_path):
    a, b = _pair(tmp_path, _base(), _other())
    r = fastckpt.diff(a, b, values=True)
    w = [d for d in r.differing if d.name == "w"][0]
    assert w == fastckpt.TensorDiff("w", 0.5, 0.2, False)  # |2 - 2.5| = 0.5, / 2.5 = 0.2
    s = [d for d in r.differing if d.name == "s"][0]
    assert s == fastckpt.TensorDiff("s")  # strings: bytes only
    # within a tolerance of 0.2 relative to B: differing, but within tolerance
    only_w = {"w": _base()["w"]}, {"w": _other()["w"]}
    a, b = _pair(tmp_path, *only_w)
    r = fastckpt.diff(a, b, values=True, rtol=0.2, atol=0.0)
    assert r.differing == [fastckpt.TensorDiff("w", 0.5, 0.2, True)] and r.within_tolerance and r.same
    r = fastckpt.diff(a, b, values=True, rtol=0.19, atol=0.0)
    assert r.differing == [fastckpt.TensorDiff("w", 0.5, 0.2, False)] and not r.same
    r = fastckpt.diff(a, b, values=True, rtol=0.0, atol=0.5)
    assert r.differing[0].within_tolerance is True
    # without values a difference is a difference
    assert not fastckpt.diff(a, b).same


def test_nan_and_infinity(tmp_path):
    nan, inf = float("nan"), float("inf")
    a, b = _pair(
        tmp_path,
        {"x": np.array([nan, 1.0, inf], np.float64), "y": np.array([nan, 0.0])},
        {
            "x": np.array([nan, 1.0, inf], np.float64) * np.array([1, 1, 1]) + np.array([0, 1e-12, 0]),
            "y": np.array([1.0, 0.0]),
        },
    )
    r = fastckpt.diff(a, b, values=True)
    x, y = r.differing
    assert x.name == "x" and x.within_tolerance is True and x.max_abs_diff == pytest.approx(1e-12, rel=1e-3)
    assert y == fastckpt.TensorDiff("y", float("inf"), float("inf"), False)  # NaN against 1.0
    assert r.to_json()["differing"][1] == {
        "name": "y",
        "max_abs_diff": "inf",
        "max_rel_diff": "inf",
        "within_tolerance": False,
    }


def test_bfloat16_values_compare(tmp_path):
    import ml_dtypes

    a, b = _pair(
        tmp_path, {"h": np.array([1, 2, 3], ml_dtypes.bfloat16)}, {"h": np.array([1, 2, 3.015625], ml_dtypes.bfloat16)}
    )
    r = fastckpt.diff(a, b, values=True, rtol=0.01)
    assert r.differing == [fastckpt.TensorDiff("h", 0.015625, 0.015625 / 3.015625, True)]


def test_across_formats_and_in_pieces(tmp_path):
    big = np.random.default_rng(1).standard_normal((300, 100)).astype(np.float32)
    fastckpt.save({"big": big, "b": np.arange(5)}, str(tmp_path / "ck"))
    changed = big.copy()
    changed[299, 99] += 1.0  # in the last piece
    safetensors.numpy.save_file({"big": changed, "b": np.arange(5)}, str(tmp_path / "m.safetensors"))
    r = fastckpt.diff(tmp_path / "ck", tmp_path / "m.safetensors", values=True, max_piece_bytes=4096)
    assert (r.a_format, r.b_format) == ("tf", "safetensors")
    assert r.identical == ["b"] and [d.name for d in r.differing] == ["big"]
    assert r.differing[0].max_abs_diff == pytest.approx(1.0, abs=1e-6) and r.by_index == []
    np.savez(tmp_path / "same.npz", big=big, b=np.arange(5))
    assert fastckpt.diff(tmp_path / "same.npz", tmp_path / "ck", max_piece_bytes=4096).same


def test_identical_bundles_are_decided_from_the_indexes_without_reading(tmp_path, monkeypatch):
    t = {"x": np.arange(1000, dtype=np.float32), "y": np.ones((4, 4), np.int64), "z": np.zeros(3)}
    u = dict(t, z=np.ones(3))
    fastckpt.save(t, str(tmp_path / "a"), num_shards=1)
    fastckpt.save(u, str(tmp_path / "b"), num_shards=1)
    reads = []
    real_read = BundleSource.read
    monkeypatch.setattr(BundleSource, "read", lambda self, *args: reads.append(args) or real_read(self, *args))
    r = fastckpt.diff(tmp_path / "a", tmp_path / "b")
    assert r.identical == ["x", "y"] and r.differing == [fastckpt.TensorDiff("z")]
    assert r.by_index == ["x", "y", "z"] and reads == []
    # with the data files gone, the index still decides
    for p in (tmp_path / "a", tmp_path / "b"):
        os.remove(f"{p}.data-00000-of-00001")
    r = fastckpt.diff(tmp_path / "a", tmp_path / "b")
    assert r.identical == ["x", "y"] and r.differing == [fastckpt.TensorDiff("z")] and reads == []
    # values must read the differing tensor: now it is missing
    with pytest.raises(fastckpt.CheckpointNotFoundError):
        fastckpt.diff(tmp_path / "a", tmp_path / "b", values=True)


def test_values_read_only_the_tensors_the_indexes_call_different(tmp_path, monkeypatch):
    a, b = _pair(tmp_path, {"x": np.arange(4.0), "y": np.zeros(2)}, {"x": np.arange(4.0), "y": np.ones(2)})
    reads = []
    real_read = BundleSource.read
    monkeypatch.setattr(
        BundleSource, "read", lambda self, info, index=None: reads.append(info.name) or real_read(self, info, index)
    )
    r = fastckpt.diff(a, b, values=True)
    assert r.differing == [fastckpt.TensorDiff("y", 1.0, 1.0, False)] and r.identical == ["x"]
    assert reads == ["y", "y"]


def test_cli_exit_codes_and_output(tmp_path, capsys):
    a, b = _pair(tmp_path, _base(), _other())
    assert cli.main(["diff", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "only in a:  gone\n" in out and "only in b:  new\n" in out
    assert "changed:    dt: int32 [3] -> int64 [3]\n" in out
    assert "differs:    w\n" in out
    assert out.endswith(
        "1 identical, 2 differing, 2 changed dtype/shape, 1 only in a, 1 only in b (7 names)\nDIFFERENT\n"
    )
    assert cli.main(["diff", str(a), str(a)]) == 0
    assert capsys.readouterr().out.endswith("SAME\n")
    fastckpt.save({"w": _base()["w"]}, str(tmp_path / "c"))
    fastckpt.save({"w": _other()["w"]}, str(tmp_path / "d"))
    assert cli.main(["diff", str(tmp_path / "c"), str(tmp_path / "d"), "--values", "--rtol", "0.25"]) == 0
    assert "differs:    w: max abs 0.5, max rel 0.2 (within tolerance)\n" in capsys.readouterr().out
    assert cli.main(["diff", str(tmp_path / "c"), str(tmp_path / "d"), "--values"]) == 1
    assert "(NOT within tolerance)" in capsys.readouterr().out
    assert cli.main(["diff", str(a), str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastckpt diff: error: no checkpoint at '") and "missing" in err
    # damaged input is unusable (2), not "different" (1)
    fastckpt.save({"x": np.arange(100.0)}, str(tmp_path / "e"), num_shards=1)
    fastckpt.save({"x": np.arange(100.0) + 1}, str(tmp_path / "f"), num_shards=1)
    data = tmp_path / "e.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[5] ^= 1
    data.write_bytes(bytes(raw))
    assert cli.main(["diff", str(tmp_path / "e"), str(tmp_path / "f"), "--values"]) == 2
    assert "fastckpt diff: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["diff", str(a), str(b), "--rtol", "-1"])
    assert e.value.code == 2


def test_json_schema(tmp_path, capsys):
    a, b = _pair(tmp_path, _base(), _other())
    assert cli.main(["diff", str(a), str(b), "--values", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert sorted(doc) == [
        "a",
        "a_format",
        "atol",
        "b",
        "b_format",
        "by_index",
        "changed",
        "differing",
        "identical",
        "only_in_a",
        "only_in_b",
        "rtol",
        "same",
        "values",
    ]
    assert doc["same"] is False and doc["values"] is True and doc["rtol"] == 1e-5 and doc["atol"] == 1e-8
    assert doc["a"] == str(a) and doc["a_format"] == "tf"
    assert doc["only_in_a"] == ["gone"] and doc["only_in_b"] == ["new"] and doc["identical"] == ["same"]
    assert doc["changed"] == [
        {"name": "dt", "a_dtype": "int32", "b_dtype": "int64", "a_shape": [3], "b_shape": [3]},
        {"name": "sh", "a_dtype": "float32", "b_dtype": "float32", "a_shape": [2, 3], "b_shape": [3, 2]},
    ]
    assert doc["differing"] == [
        {"name": "s", "max_abs_diff": None, "max_rel_diff": None, "within_tolerance": None},
        {"name": "w", "max_abs_diff": 0.5, "max_rel_diff": 0.2, "within_tolerance": False},
    ]
    assert cli.main(["diff", str(a), str(tmp_path / "nope"), "--json"]) == 2
    captured = capsys.readouterr()
    err_doc = json.loads(captured.out)
    assert err_doc["ok"] is False and err_doc["error_type"] == "CheckpointNotFoundError"


def test_bad_tolerance_is_refused():
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"rtol must be a number >= 0, not -1"):
        fastckpt.diff("a", "b", rtol=-1)


def test_compressed_bundles_are_compared_by_value_where_the_index_cannot_decide(tmp_path):
    import ml_dtypes

    rng = np.random.default_rng(4)
    w = rng.standard_normal((256, 512)).astype(ml_dtypes.bfloat16)
    fastckpt.save({"w": w}, str(tmp_path / "plain"))
    fastckpt.save({"w": w}, str(tmp_path / "z1"), compression="zstd")
    fastckpt.save({"w": w}, str(tmp_path / "z2"), compression="zstd")
    w2 = w.copy()
    w2[3, 7] = ml_dtypes.bfloat16(5.0)
    fastckpt.save({"w": w2}, str(tmp_path / "z3"), compression="zstd")
    # Same stored bytes under the same frame layout: decided from the index.
    r = fastckpt.diff(str(tmp_path / "z1"), str(tmp_path / "z2"))
    assert r.same and r.identical == ["w"] and r.by_index == ["w"]
    # Compressed against raw: different stored bytes decide nothing; the values are equal.
    r = fastckpt.diff(str(tmp_path / "plain"), str(tmp_path / "z1"))
    assert r.same and r.identical == ["w"] and r.by_index == []
    # Compressed against compressed with one value changed: read, and found different.
    r = fastckpt.diff(str(tmp_path / "z1"), str(tmp_path / "z3"), values=True)
    assert not r.same and [d.name for d in r.differing] == ["w"] and r.by_index == []
    assert r.differing[0].max_abs_diff == abs(5.0 - float(w[3, 7]))
