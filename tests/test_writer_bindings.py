"""Bad arguments to the writer's native bindings (write_bundle, SaveJob,
encode_strings) raise InvalidArgumentError naming the item or argument,
built from a Status like every other native error; nothing is created."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import fastckpt
from fastckpt import _native

GOOD = (b"x", 1, (2,), np.ones(2, np.float32), None, None)  # DT_FLOAT


def _item(**changes) -> tuple:
    fields = dict(zip(("key", "dtype", "shape", "data", "crc", "slices"), GOOD))
    fields.update(changes)
    return tuple(fields.values())


BAD_ITEMS = [
    ([GOOD, [b"x"]], r"write_bundle: item 1: expected a 6-tuple"),
    ([(b"x", 1, (2,))], r"write_bundle: item 0: expected a 6-tuple"),
    ([_item(key="x")], r"write_bundle: item 0: the key must be bytes \(TypeError: expected bytes, str found\)"),
    ([_item(dtype="float")], r"write_bundle: item 0: the dtype must be an int \(TypeError: .*\)"),
    ([_item(shape=[2])], r"write_bundle: item 0: shape must be a tuple"),
    ([_item(shape=(2, "a"))], r"write_bundle: item 0: dimension 1 of the shape must be an int \(TypeError: .*\)"),
    ([_item(data=(1, 2, 3))], r"write_bundle: item 0: device data must be \(ptr, nbytes, device, stream\)"),
    (
        [_item(data=(1, 8, "gpu", 0))],
        r"write_bundle: item 0: device data must be \(ptr, nbytes, device, stream\) of non-negative ints",
    ),
    ([_item(data=(1, 8, -1, 0))], r"write_bundle: item 0: device ordinal must be >= 0"),
    ([_item(data=12345)], r"write_bundle: item 0: data must export a C-contiguous buffer \(TypeError: .*\)"),
    (
        [_item(data=np.ones((4, 4), np.float32)[:, 1])],
        r"write_bundle: item 0: data must export a C-contiguous buffer \(.*\)",
    ),
    ([_item(crc="abc")], r"write_bundle: item 0: crc must be None or an unsigned 32-bit int \(TypeError: .*\)"),
    (
        [_item(data=None, slices=5)],
        r"write_bundle: item 0: slices must be a list of lists of \(start, length\) pairs \(.*\)",
    ),
    (
        [_item(data=None, slices=[[("a", 1)]])],
        r"write_bundle: item 0: slices must be a list of lists of \(start, length\) pairs \(.*\)",
    ),
]


@pytest.mark.parametrize("items,message", BAD_ITEMS, ids=[str(i) for i in range(len(BAD_ITEMS))])
def test_bad_items_raise_invalid_argument_naming_the_item(tmp_path, items, message):
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.write_bundle(str(tmp_path / "ck"), items)
    assert re.fullmatch(message, str(info.value)), str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.SaveJob(str(tmp_path / "ck"), items)
    assert re.fullmatch(message, str(info.value)), str(info.value)
    assert os.listdir(tmp_path) == []


def test_encode_strings_names_the_bad_element():
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"^encode_strings: element 2 is a str, not bytes$"):
        _native.encode_strings([b"a", b"b", "c"])
    encoded, crc = _native.encode_strings([b"a", b"bc"])
    assert encoded == b"\x01\x02" + encoded[2:6] + b"abc" and isinstance(crc, int)
