"""``save(..., compression="zstd")``: byte-plane zstd frames (fastckpt.compression).

Round trips of every fixed-size dtype, what is stored raw (strings, small,
empty and scalar tensors), slice reads that decompress only the frames they
need, verify without decompressing, damaged stored bytes and hostile frame
tables refused with DataLossError naming the tensor and the file, and the
zstandard-missing error.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
import torch
from checkpoint_builders import rewrite_index_header  # fuzz/, on sys.path (conftest)
from helpers import flip_byte

import fastckpt
from fastckpt import _native, compression
from fastckpt.format import dtypes, frames
from fastckpt.format.frames import FRAMES_KEY
from fastckpt.writer import prepare_items, start_job

MiB = 1 << 20


def _values(dtype: np.dtype, count: int, seed: int = 0) -> np.ndarray:
    """Weight-like values of `dtype`: small normal floats, small ints, sparse bools."""
    rng = np.random.default_rng(seed)
    if dtype == np.bool_:
        return rng.random(count) < 0.1
    if dtype.kind == "c":
        return ((rng.standard_normal(count) + 1j * rng.standard_normal(count)) * 0.02).astype(dtype)
    if dtype.kind in "iu" or dtype.name in ("int4", "uint4", "int2", "uint2"):
        return rng.integers(0, 2, count).astype(dtype)
    return (rng.standard_normal(count) * 0.02).astype(dtype)


def _same_bytes(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
    assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def _tables(prefix) -> dict:
    """{name: FrameTable} of the compressed tensors of checkpoint `prefix`."""
    with fastckpt.load_checkpoint(prefix) as r:
        by_index = {i: n for n, i in r._native.names().items()}
        return {by_index[i]: t for i, t in r._compressed.tables.items()} if r._compressed else {}


def _data_file(prefix) -> str:
    return f"{prefix}.data-00000-of-00001"


def _entry(prefix, name: str):
    """(shard, offset, size) of entry `name`."""
    r = _native.Reader(str(prefix))
    try:
        for key, _, _, shard, offset, size, _, _ in r.entries():
            if key == name.encode():
                return shard, offset, size
    finally:
        r.close()
    raise KeyError(name)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


DTYPES = sorted(dtypes.FIXED_SIZE_DTYPES, key=lambda d: d.name)


@pytest.mark.parametrize("dtype", DTYPES, ids=[d.name for d in DTYPES])
def test_every_fixed_size_dtype_round_trips_compressed(tmp_path, dtype):
    """Each dtype is stored compressed (one frame, and three frames) and reads back bit-exact."""
    one = _values(dtype, (300 << 10) // dtype.itemsize).reshape(-1, 4)
    many = _values(dtype, (2 * MiB + 12345 * dtype.itemsize) // dtype.itemsize, seed=1)
    prefix = str(tmp_path / "c")
    fastckpt.save({"one": one, "many": many}, prefix, compression="zstd")
    tables = _tables(prefix)
    assert sorted(tables) == ["many", "one"]
    assert tables["one"].frames == 1 and tables["many"].frames == 3
    assert tables["many"].planes == dtype.itemsize
    back = fastckpt.load(prefix)
    _same_bytes(back["one"], one)
    _same_bytes(back["many"], many)
    assert fastckpt.list_variables(prefix) == [("many", [many.shape[0]]), ("one", list(one.shape))]
    with fastckpt.load_checkpoint(prefix) as r:
        assert r.get_variable_to_dtype_map() == {"many": dtype, "one": dtype}
        _same_bytes(r.get_tensor("many"), many)


def test_small_empty_scalar_and_string_tensors_are_stored_raw(tmp_path):
    """Strings, scalars, empty tensors and tensors under 16 KiB keep TensorFlow's
    encoding; the checkpoint still reads back exactly."""
    w = _values(np.dtype(np.float32), 100_000).reshape(250, 400)
    tensors = {
        "w": w,
        "small": np.arange(4095, dtype=np.float32),
        "empty": np.zeros((0, 7), np.float16),
        "scalar": np.float64(2.5),
        "step": np.int64(7),
        "vocab": np.array([b"alpha", b"", "\u00e9t\u00e9".encode()] * 10_000, dtype=object),
    }
    prefix = str(tmp_path / "c")
    fastckpt.save(tensors, prefix, compression="zstd")
    assert list(_tables(prefix)) == ["w"]
    for name in ("small", "empty", "scalar", "step"):  # stored as is: raw size
        value = np.asarray(tensors[name])
        assert _entry(prefix, name)[2] == value.nbytes
    back = fastckpt.load(prefix)
    assert sorted(back) == sorted(tensors)
    for name, value in tensors.items():
        if name == "vocab":
            assert back[name].dtype == object and back[name].tolist() == value.tolist()
        else:
            _same_bytes(back[name], np.asarray(value))
    assert fastckpt.load_variable(prefix, "scalar") == np.float64(2.5)


def test_frame_table_is_hidden_and_reserved(tmp_path):
    prefix = str(tmp_path / "c")
    w = _values(np.dtype(ml_dtypes.bfloat16), 64 << 10)
    fastckpt.save({"w": w}, prefix, compression="zstd")
    assert fastckpt.list_variables(prefix) == [("w", [64 << 10])]
    assert list(fastckpt.load(prefix)) == ["w"]
    with fastckpt.load_checkpoint(prefix) as r:
        assert r.keys() == ["w"] and FRAMES_KEY not in r and len(r) == 1
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.save({"w": w, FRAMES_KEY: np.zeros(3, np.uint8)}, str(tmp_path / "d"), compression="zstd")
    assert str(e.value) == f"'{FRAMES_KEY}' is reserved for the frame table of a compressed checkpoint"


def test_nested_state_and_torch_round_trip(tmp_path):
    model = torch.nn.Linear(256, 128)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(4, 256)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optim": opt.state_dict(), "step": 3}
    prefix = str(tmp_path / "s")
    fastckpt.save(state, prefix, compression="zstd")
    assert "model/weight" in _tables(prefix)
    back = fastckpt.load(prefix, array_type="torch")
    assert back["step"] == 3
    assert torch.equal(back["model"]["weight"], model.weight.detach())
    assert torch.equal(back["optim"]["state"][0]["exp_avg_sq"], opt.state_dict()["state"][0]["exp_avg_sq"])
    fresh = torch.nn.Linear(256, 128)
    report = fastckpt.load_into(prefix, {"model": fresh.state_dict()})
    assert report.restored == ["model/bias", "model/weight"]
    assert torch.equal(fresh.weight, model.weight)


def test_get_slice_decompresses_only_the_frames_it_needs(tmp_path):
    """A (2048, 1024) bfloat16 tensor is 4 MiB: four frames of 512 rows."""
    w = _values(np.dtype(ml_dtypes.bfloat16), 2048 * 1024).reshape(2048, 1024)
    prefix = str(tmp_path / "c")
    fastckpt.save({"w": w}, prefix, compression="zstd")
    t = _tables(prefix)["w"]
    assert t.frames == 4
    frame_size = [int(t.offsets[f + 1] - t.offsets[f]) for f in range(4)]
    cases = [
        (np.s_[600:700], [1]),
        (np.s_[500:600, 3:9], [0, 1]),
        ("1536,512:-", [3]),
        (np.s_[2047, 1023], [3]),
        (np.s_[:, 0:2], [0, 1, 2, 3]),
        (np.s_[0:0], []),
    ]
    for spec, needed in cases:
        with fastckpt.load_checkpoint(prefix) as r:
            part = r.get_slice("w", spec)
            assert r._compressed.frames_read == len(needed), spec
            assert r._compressed.stored_bytes_read == sum(frame_size[f] for f in needed), spec
        want = w[tuple(slice(s, s + n) for s, n in [(1536, 512), (0, 1024)])] if isinstance(spec, str) else w[spec]
        _same_bytes(part, np.array(want))
    with fastckpt.load_checkpoint(prefix) as r:
        _same_bytes(r.get_tensor("w"), w)
        assert r._compressed.frames_read == 4 and r._compressed.stored_bytes_read == sum(frame_size)


def test_read_into_decompresses_into_the_targets(tmp_path):
    w = _values(np.dtype(np.float32), 3 * MiB // 4).reshape(768, 1024)
    h = _values(np.dtype(np.float16), 40_000, seed=2)
    prefix = str(tmp_path / "c")
    fastckpt.save({"w": w, "h": h}, prefix, compression="zstd")
    target_w = np.zeros_like(w)
    target_h = torch.zeros(40_000, dtype=torch.float16)
    strided = np.zeros((1024, 768), np.float32).T  # not contiguous: read, then assigned
    with fastckpt.load_checkpoint(prefix) as r:
        r.read_into({"w": target_w, "h": target_h})
        assert r._compressed.frames_read == 3 + 1
        r.read_into({"w": strided})
    _same_bytes(target_w, w)
    _same_bytes(target_h.numpy(), h)
    _same_bytes(np.ascontiguousarray(strided), w)
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.load_into(prefix, {"w": np.zeros((768, 1024), np.float64)}, strict=False)
    assert str(e.value) == (
        f"tensor 'w' in '{prefix}': the checkpoint holds float32 [768, 1024], "
        "the target is float64 [768, 1024]; restoring converts nothing"
    )


def test_async_save_compressed(tmp_path):
    w = _values(np.dtype(np.float32), 200_000)
    original = w.copy()
    prefix = str(tmp_path / "c")
    handle = fastckpt.save({"w": w}, prefix, compression="zstd", blocking=False)
    w[:] = 1.0  # after the call returns, the caller may change its arrays
    result = handle.result(timeout=60)
    assert result.files == [_data_file(prefix), prefix + ".index"]
    _same_bytes(fastckpt.load(prefix)["w"], original)


def test_compression_levels(tmp_path):
    w = _values(np.dtype(ml_dtypes.bfloat16), 500_000)
    sizes = {}
    for level in (None, -5, 1, 9):
        prefix = str(tmp_path / f"c{level}")
        fastckpt.save({"w": w}, prefix, compression="zstd", compression_level=level)
        _same_bytes(fastckpt.load(prefix)["w"], w)
        sizes[level] = _entry(prefix, "w")[2]
    # Normal weights in bfloat16: the tuned default beats zstd's levels (and
    # negative levels, without Huffman coding, gain least).
    assert sizes[None] < w.nbytes / 1.45 and sizes[None] == min(sizes.values()), sizes
    assert sizes[-5] == max(sizes.values()) and sizes[-5] < w.nbytes, sizes
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.save({"w": w}, str(tmp_path / "x"), compression="zstd", compression_level=23)
    assert str(e.value) == "compression_level must be between -131072 and 22, not 23"
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.save({"w": w}, str(tmp_path / "x"), compression="lz4")
    assert str(e.value) == "compression must be one of 'none', 'zstd' or None, not 'lz4'"
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.save({"w": w}, str(tmp_path / "x"), compression_level=3)
    assert str(e.value) == "compression_level=3 needs compression='zstd' (compression is None)"
    assert not os.path.exists(str(tmp_path / "x.index"))


def test_uncompressed_saves_are_unchanged(tmp_path):
    """compression=None and "none" write the same bytes as before; a compressed
    save with nothing worth compressing is an ordinary TensorFlow checkpoint."""
    tensors = {
        "a": np.arange(1000, dtype=np.float32),
        "s": np.array([b"x", b"yz"], dtype=object),
        "big": np.random.default_rng(0).integers(0, 256, 100_000).astype(np.uint8),
    }  # incompressible
    outputs = {}
    for kind in (None, "none", "zstd"):
        prefix = str(tmp_path / f"{kind}" / "m")
        fastckpt.save(tensors, prefix, compression=kind)
        outputs[kind] = [_read(p) for p in (prefix + ".index", _data_file(prefix))]
    assert outputs[None] == outputs["none"] == outputs["zstd"]


def test_verify_checks_stored_bytes_without_decompressing(tmp_path, monkeypatch):
    w = _values(np.dtype(ml_dtypes.bfloat16), 3 * MiB // 2).reshape(-1, 512)
    prefix = str(tmp_path / "c")
    fastckpt.save({"w": w, "b": np.arange(10.0)}, prefix, compression="zstd")

    def no_decompression(*args):
        raise AssertionError("verify decompressed a frame")

    monkeypatch.setattr(compression.CompressedEntries, "_frame", no_decompression)
    report = fastckpt.verify(prefix)
    assert report.ok and report.tensors == 2
    assert report.bytes == _entry(prefix, "w")[2] + 80 + _entry(prefix, FRAMES_KEY)[2]
    _, offset, size = _entry(prefix, "w")
    flip_byte(_data_file(prefix), offset + size // 2)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    ((name, file, reason),) = [(b.name, b.file, b.reason) for b in e.value.report.bad]
    assert (name, file) == ("w", _data_file(prefix))
    assert re.fullmatch(r"data checksum mismatch \(stored CRC32C [0-9a-f]{8}, computed [0-9a-f]{8}\)", reason)


@pytest.mark.parametrize("where", ["compressed plane", "raw plane"])
def test_flipped_stored_byte_is_data_loss_naming_the_tensor(tmp_path, where):
    """Frame 1 of 'w' has a compressed exponent plane and a raw mantissa plane;
    a flipped byte in either fails every read of frame 1, never garbage."""
    w = _values(np.dtype(ml_dtypes.bfloat16), 3 * MiB // 2).reshape(-1, 512)  # 3 frames
    prefix = str(tmp_path / "c")
    fastckpt.save({"w": w}, prefix, compression="zstd")
    t = _tables(prefix)["w"]
    layout = frames.plane_layout(t, 1)
    assert [raw for _, _, raw in layout] == [True, False]  # low byte raw, exponent byte compressed
    pos, size, _ = layout[0] if where == "raw plane" else layout[1]
    _, offset, _ = _entry(prefix, "w")
    flip_byte(_data_file(prefix), offset + int(t.offsets[1]) + pos + size // 2)
    data_file = _data_file(prefix)
    pattern = (
        rf"tensor 'w' in '{re.escape(data_file)}': frame 1 \(raw bytes \[1048576, 2097152\)\): "
        r"(data checksum mismatch after decompression \(stored CRC32C [0-9a-f]{8}, computed [0-9a-f]{8}\)"
        r"|zstd cannot decompress a plane \(.*\))"
    )
    for call in (
        lambda: fastckpt.load(prefix),
        lambda: fastckpt.load_variable(prefix, "w"),
        lambda: fastckpt.load_into(prefix, {"w": np.empty_like(w)}),
        lambda: _slice(prefix, np.s_[1100:1200]),
    ):
        with pytest.raises(fastckpt.DataLossError) as e:
            call()
        assert re.fullmatch(pattern, str(e.value)), str(e.value)
    with fastckpt.load_checkpoint(prefix) as r:  # frames 0 and 2 are intact
        _same_bytes(r.get_slice("w", np.s_[0:1000]), w[0:1000])
        _same_bytes(r.get_slice("w", np.s_[2048:]), w[2048:])


def _slice(prefix: str, spec) -> np.ndarray:
    with fastckpt.load_checkpoint(prefix) as r:
        return r.get_slice("w", spec)


# -- hostile frame tables ------------------------------------------------------------


def _write(
    prefix: str,
    tensors: dict,
    *,
    tables=None,
    table_bytes=None,
    blobs=None,
    drop_table: bool = False,
    min_consumer: int = _native.COMPRESSED_MIN_CONSUMER,
) -> None:
    """A compressed checkpoint whose frame table (FrameTable objects, then the
    encoded bytes) or stored bytes are changed by the given functions; the
    index CRCs are those of what is written."""
    items, keep = prepare_items(tensors)
    items, found, logical = compression.compress_items(items, tensors, level=None, threads=1)
    if tables:
        found = tables(found)
    table = frames.encode(found)
    if table_bytes:
        table = np.frombuffer(table_bytes(table.tobytes()), dtype=np.uint8)
    if blobs:
        items = [blobs(it) if it[0] in logical else it for it in items]
    if not drop_table:
        items.append((FRAMES_KEY.encode(), dtypes.DT_UINT8, (table.size,), table, None, None))
    job = start_job(items, prefix, num_shards=1, threads=1, durable=False, commit=False)
    info = job.finish()
    _native.commit_bundle(
        prefix,
        compression.rewrite_entries(info["entries"], logical),
        info["data_files"],
        info["num_shards"],
        durable=False,
        min_consumer=min_consumer,
    )
    job.release(True)


def _replace(**changes):
    return lambda found: {k: dataclasses.replace(t, **changes) for k, t in found.items()}


def _patch_word(frame: int, column: int, value: int):
    def change(found):
        out = {}
        for k, t in found.items():
            words = t.words.copy()
            words[frame, column] = value
            out[k] = dataclasses.replace(t, words=words)
        return out

    return change


def _patch_head(offset: int, fmt: str, value: int):
    """Patches the first entry's header field at `offset` bytes after its key."""
    import struct

    def change(data: bytes) -> bytes:
        klen = struct.unpack_from("<I", data, 8)[0]
        pos = 12 + klen + offset
        return data[:pos] + struct.pack(fmt, value) + data[pos + struct.calcsize(fmt) :]

    return change


def _table_of(w: np.ndarray) -> dict:
    """The frame table {b"w": FrameTable} of a compressed tensor `w`."""
    items, _ = prepare_items({"w": w})
    return compression.compress_items(items, {"w": w}, level=None, threads=1)[1]


W = _values(np.dtype(np.float32), 300_000)  # 1.2 MB: 2 frames of 4 planes
TABLE = "'_FASTCKPT_FRAMES' is damaged"
HOSTILE = [
    ("magic", dict(table_bytes=lambda d: b"XXXX" + d[4:]), f"its frame table {TABLE} (no header)"),
    ("truncated", dict(table_bytes=lambda d: d[:-3]), f"its frame table {TABLE} (truncated)"),
    ("trailing", dict(table_bytes=lambda d: d + b"\0"), f"its frame table {TABLE} (trailing bytes)"),
    ("entry count", dict(table_bytes=lambda d: d[:4] + b"\x07\0\0\0" + d[8:]), f"its frame table {TABLE} (truncated)"),
    ("codec", dict(table_bytes=_patch_head(0, "<B", 9)), f"its frame table {TABLE} (entry 'w' has unknown codec 9)"),
    ("planes 0", dict(table_bytes=_patch_head(1, "<B", 0)), f"its frame table {TABLE} (entry 'w' has 0 byte planes)"),
    (
        "planes 17",
        dict(table_bytes=_patch_head(1, "<B", 17)),
        f"its frame table {TABLE} (entry 'w' has 17 byte planes)",
    ),
    (
        "frame bytes 0",
        dict(table_bytes=_patch_head(4, "<I", 0)),
        f"its frame table {TABLE} (entry 'w' has frames of 0 bytes)",
    ),
    (
        "frame bytes huge",
        dict(table_bytes=_patch_head(4, "<I", 1 << 30)),
        f"its frame table {TABLE} (entry 'w' has frames of 1073741824 bytes)",
    ),
    (
        "frame bytes odd",
        dict(table_bytes=_patch_head(4, "<I", MiB + 2)),
        f"its frame table {TABLE} (entry 'w' has frames of 1048578 bytes)",
    ),
    (
        "raw bytes",
        dict(table_bytes=_patch_head(8, "<Q", 1 << 60)),
        f"its frame table {TABLE} (entry 'w' lists 2 frames for 1152921504606846976 bytes in frames of 1048576)",
    ),
    (
        "frame count",
        dict(table_bytes=_patch_head(16, "<I", 1 << 30)),
        f"its frame table {TABLE} (entry 'w' lists 1073741824 frames for 1200000 bytes in frames of 1048576)",
    ),
    (
        "raw plane size",
        dict(tables=_patch_word(0, 1, frames.RAW_PLANE | 5)),
        f"its frame table {TABLE} (entry 'w' has a raw plane whose size is not its raw size)",
    ),
    (
        "compressed plane size",
        dict(tables=_patch_word(0, 4, 0x7FFFFFFF)),
        f"its frame table {TABLE} (entry 'w' has a compressed plane of an impossible size)",
    ),
    (
        "compressed plane empty",
        dict(tables=_patch_word(0, 4, 0)),
        f"its frame table {TABLE} (entry 'w' has a compressed plane of an impossible size)",
    ),
    (
        "raw bytes vs shape",
        dict(tables=lambda f: _table_of(_values(np.dtype(np.float32), 275_000))),
        "its frame table entry 'w' holds 1100000 raw bytes, the tensor 1200000",
    ),
    (
        "planes vs dtype",
        dict(tables=lambda f: _table_of(_values(np.dtype(ml_dtypes.bfloat16), 600_000))),
        "its frame table entry 'w' has 2 byte planes for a dtype of 4-byte elements",
    ),
    (
        "unknown key",
        dict(tables=lambda f: {b"nope": next(iter(f.values()))}),
        "its frame table entry 'nope' names no entry of the index",
    ),
    ("missing entry", dict(tables=lambda f: {}), None),
    ("no table", dict(drop_table=True), "its header marks it compressed but it has no frame table '_FASTCKPT_FRAMES'"),
]


@pytest.mark.parametrize("case,changes,message", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_frame_table_is_refused(tmp_path, case, changes, message):
    prefix = str(tmp_path / "h")
    _write(prefix, {"w": W, "x": np.arange(5.0)}, **changes)
    if case == "missing entry":
        message = f"tensor 'w' in '{_data_file(prefix)}' is stored compressed but the frame table lacks it"
    full = f"checkpoint '{prefix}': {message}"
    for call in (
        lambda: fastckpt.load(prefix),
        lambda: fastckpt.load_checkpoint(prefix),
        lambda: fastckpt.list_variables(prefix),
    ):
        with pytest.raises(fastckpt.DataLossError) as e:
            call()
        assert str(e.value) == full
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    ((name, reason),) = [(b.name, b.reason) for b in e.value.report.bad]
    assert (name, reason) == (FRAMES_KEY, full)


def test_stored_size_mismatch_is_refused(tmp_path):
    """The table's stored sizes must add up to the index entry's size."""
    prefix = str(tmp_path / "h")
    _write(
        prefix,
        {"w": W},
        blobs=lambda it: (it[0], it[1], (it[3].size + 4,), np.concatenate([it[3], np.zeros(4, np.uint8)]), None, None),
    )
    t = _table_of(W)[b"w"]
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.load(prefix)
    assert str(e.value) == (
        f"checkpoint '{prefix}': its frame table entry 'w' holds {t.stored_bytes} stored "
        f"bytes, the index entry {t.stored_bytes + 4}"
    )


def test_garbage_compressed_plane_with_matching_crc_is_refused(tmp_path):
    """Stored bytes replaced by garbage of the same size (the index CRC being
    that of the garbage): zstd refuses, or the raw CRC does; never garbage out."""
    prefix = str(tmp_path / "h")
    rng = np.random.default_rng(5)
    _write(prefix, {"w": W}, blobs=lambda it: it[:3] + (rng.integers(0, 256, it[3].size).astype(np.uint8),) + it[4:])
    assert fastckpt.verify(prefix).ok  # the stored bytes match their CRC
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.load(prefix)
    assert re.fullmatch(
        rf"tensor 'w' in '{re.escape(_data_file(prefix))}': frame [01] \(raw bytes \[\d+, \d+\)\): "
        r"(zstd cannot decompress a plane \(.*\)|a compressed plane does not hold its raw size)",
        str(e.value),
    ), str(e.value)


def _set_min_consumer(prefix: str, value: int) -> None:
    rewrite_index_header(prefix, lambda h: setattr(h.version, "min_consumer", value))


@pytest.mark.parametrize("version", [2, 1000, 1002])
def test_native_reader_refuses_other_unknown_versions(tmp_path, version):
    prefix = str(tmp_path / "v")
    fastckpt.save({"w": W}, prefix, compression="zstd")
    _set_min_consumer(prefix, version)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.load(prefix)
    assert str(e.value) == (
        f"checkpoint '{prefix}.index' has version producer=1 min_consumer={version}, "
        "which this reader cannot read (written by a newer version?)"
    )


def test_compressed_marker_removed_is_refused(tmp_path):
    """Without the header marker a compressed entry's size no longer matches its shape."""
    prefix = str(tmp_path / "v")
    fastckpt.save({"w": W}, prefix, compression="zstd")
    size = _entry(prefix, "w")[2]
    _set_min_consumer(prefix, 0)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.load(prefix)
    assert str(e.value) == (
        f"corrupt index file '{prefix}.index': entry 'w' has size {size}, which does not match its shape and dtype"
    )


def test_native_reads_refuse_compressed_entries(tmp_path):
    prefix = str(tmp_path / "n")
    fastckpt.save({"w": W}, prefix, compression="zstd")
    r = _native.Reader(prefix)
    try:
        index = r.find(b"w")
        assert r.compressed and not r.stored_as_is(index)
        for call in (
            lambda: r.read([(index, np.empty(_entry(prefix, "w")[2], np.uint8))]),
            lambda: r.read_box(index, [(0, 10)], np.empty(10, np.float32)),
        ):
            with pytest.raises(fastckpt.InvalidArgumentError) as e:
                call()
            assert str(e.value) == (
                f"tensor 'w' in '{_data_file(prefix)}' is stored compressed "
                f"({_entry(prefix, 'w')[2]} bytes); read it through fastckpt's Python "
                "reader, which decompresses it"
            )
        assert r.read_all(lambda dt: dtypes.to_numpy_dtype(dt))[1] == ["w"]
    finally:
        r.close()


def test_missing_zstandard_is_a_clear_error(tmp_path):
    """Without zstandard: a compressed save and a compressed checkpoint's
    reads fail naming the extra and the conversion; the rest works."""
    prefix = str(tmp_path / "c")
    fastckpt.save({"w": W}, prefix, compression="zstd")
    fastckpt.save({"w": W}, str(tmp_path / "plain"))
    script = textwrap.dedent(f"""
        import sys
        sys.modules["zstandard"] = None  # blocks the import
        import numpy as np
        import fastckpt
        assert list(fastckpt.load({str(tmp_path / "plain")!r})) == ["w"]
        for call in (lambda: fastckpt.load({prefix!r}),
                     lambda: fastckpt.save({{"w": np.zeros(3)}}, {str(tmp_path / "d")!r}, compression="zstd")):
            try:
                call()
            except fastckpt.MissingDependencyError as e:
                assert e.name == "zstandard"
                print(e)
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(fastckpt.__file__))),
    )
    assert out.returncode == 0, out.stderr
    hint = (
        "needs the zstandard package: pip install 'fastckpt[zstd]' (or pip install zstandard). To give "
        "TensorFlow (or a machine without zstandard) a copy it can read, convert it where zstandard is "
        "installed: fastckpt convert SRC DST --compression none"
    )
    assert out.stdout.splitlines() == [
        f"reading the compressed checkpoint '{prefix}' {hint}",
        f"compression='zstd' {hint}",
    ]
    assert not os.path.exists(str(tmp_path / "d.index"))


def test_saver_of_arrays_with_compression(tmp_path):
    """Saver(compression="zstd"): every checkpoint it writes is compressed,
    with TensorFlow's file names, retention and state file; any fastckpt
    Saver restores it."""
    w = _values(np.dtype(np.float32), 128 * 1024).reshape(128, 1024)
    b = np.arange(8, dtype=np.float32)
    saver = fastckpt.Saver({"w": w, "b": b}, compression="zstd", max_to_keep=2)
    paths = [saver.save(None, str(tmp_path / "model"), global_step=s) for s in (1, 2, 3)]
    assert paths == [str(tmp_path / f"model-{s}") for s in (1, 2, 3)]
    assert saver.last_checkpoints == paths[1:]
    assert fastckpt.latest_checkpoint(str(tmp_path)) == paths[-1]
    assert list(_tables(paths[-1])) == ["w"]
    handle = saver.save(None, str(tmp_path / "model"), global_step=4, blocking=False)
    w[:] = 0  # after the snapshot
    assert handle.result(timeout=60) == str(tmp_path / "model-4")
    tw, tb = np.zeros_like(w), np.zeros_like(b)
    fastckpt.Saver({"w": tw, "b": tb}).restore(None, paths[-1])
    _same_bytes(tw, _values(np.dtype(np.float32), 128 * 1024).reshape(128, 1024))
    _same_bytes(tb, b)
    fastckpt.Saver({"w": tw, "b": tb}).restore(None, str(tmp_path / "model-4"))
    _same_bytes(tw, _values(np.dtype(np.float32), 128 * 1024).reshape(128, 1024))
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.Saver({"w": w}, compression="zstd", compression_level=99)
    assert str(e.value) == "compression_level must be between -131072 and 22, not 99"


def test_device_arrays_save_and_load_compressed(tmp_path, sim_device):
    """Device arrays (the simulated copy engine) are copied to the host to be
    compressed; a load to the device decompresses on the host, then copies."""
    from sim_device import SimDeviceArray, new_sim_array

    w = _values(np.dtype(ml_dtypes.bfloat16), 300_000).reshape(600, 500)
    small = np.arange(6, dtype=np.float32)
    prefix = str(tmp_path / "d")
    fastckpt.save({"w": SimDeviceArray(w), "small": SimDeviceArray(small)}, prefix, compression="zstd")
    assert list(_tables(prefix)) == ["w"]
    out = fastckpt.load(prefix, device="cuda:0", array_type=new_sim_array)
    _same_bytes(out["w"].peek(), w)
    _same_bytes(out["small"].peek(), small)
    target = SimDeviceArray(np.zeros_like(w))
    fastckpt.load_into(prefix, {"w": target}, strict=False)
    _same_bytes(target.peek(), w)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("n", [0, 1, 7, 2048, 2049, 100_003])
def test_native_byte_planes_are_the_transposition(k, n):
    from fastckpt import _native

    rng = np.random.default_rng(k * 1000 + n)
    elements = rng.integers(0, 256, n * k, dtype=np.uint8)
    planes = np.empty(n * k, dtype=np.uint8)
    _native.split_byte_planes(elements, k, planes)
    assert planes.tobytes() == elements.reshape(n, k).T.tobytes()
    back = np.empty_like(elements)
    _native.merge_byte_planes([planes[j * n : (j + 1) * n] for j in range(k)], back)
    assert back.tobytes() == elements.tobytes()


def test_native_byte_planes_refuse_mismatched_buffers():
    from fastckpt import _native

    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.split_byte_planes(np.zeros(10, np.uint8), 4, np.zeros(10, np.uint8))
    assert str(info.value) == "split_byte_planes: 10 bytes of elements of 4 bytes into 10 bytes of planes"
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.split_byte_planes(np.zeros(8, np.uint8), 4, np.zeros(8, np.uint8)[::2].copy()[:3])
    assert "split_byte_planes: 8 bytes of elements" in str(info.value)
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.split_byte_planes(np.zeros(8, np.uint8), 4, b"\0" * 8)
    assert str(info.value) == "planes must be a C-contiguous, writable buffer"
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.merge_byte_planes([np.zeros(4, np.uint8), np.zeros(3, np.uint8)], np.zeros(8, np.uint8))
    assert str(info.value) == "merge_byte_planes: plane 1 holds 3 bytes; 2 planes of 4 make 8"
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.split_byte_planes(np.zeros(8, np.uint8), 0, np.zeros(8, np.uint8))
    assert str(info.value) == "element size must be 1..16 bytes, not 0"
