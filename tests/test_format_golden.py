"""Exact bytes of what fastckpt writes, for inputs whose TensorFlow output is known."""

from __future__ import annotations

import numpy as np

import fastckpt


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def test_single_float_scalar_matches_tensorflow_bytes(tmp_path):
    # TensorFlow 2.21's Saver output for one float32 scalar a = 1.0.
    prefix = str(tmp_path / "a")
    fastckpt.save({"a": np.float32(1.0)}, prefix, durable=False)
    assert _read(prefix + ".data-00000-of-00001") == bytes.fromhex("0000803f")
    expected_index = bytes.fromhex(
        "000006"
        "08011a020801"  # header entry
        "00010b"
        "61"
        "0801120028043581a5da2b"  # entry "a"
        "00000000"
        "01000000"  # restarts
        "00"
        "74ef79b2"  # block trailer
        "0000000001000000"
        "00c0f2a1b0"  # empty metaindex block
        "000102"
        "62"
        "0020"
        "0000000001000000"
        "0030d3691c"  # index block
        "2508320e" + "00" * 36 + "57fb808b247547db"  # footer
    )
    assert _read(prefix + ".index") == expected_index
    assert len(expected_index) == 117


def test_entry_encoding_of_int64_scalar_offset_and_zero_size(tmp_path):
    # Data order is key order; an int64 scalar after 26 bytes sits at offset 26,
    # and zero-size tensors store size 0 (omitted) with CRC Mask(0).
    prefix = str(tmp_path / "b")
    fastckpt.save(
        {"a": np.zeros(26, np.uint8), "global_step": np.int64(0), "z": np.zeros((0, 3), np.float32)},
        prefix,
        durable=False,
    )
    index = _read(prefix + ".index")
    # global_step entry: dtype 9, shape {}, offset 26, size 8, masked crc of 8 zero bytes.
    assert bytes.fromhex("08091200201a280835") in index
    # z: dtype 1, shape [0, 3], offset 34, no size, crc = Mask(0) = a282ead8.
    assert bytes.fromhex("08011206120012020803202235d8ea82a2") in index
    assert _read(prefix + ".data-00000-of-00001") == b"\0" * 34
