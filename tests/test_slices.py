"""Tests of fastckpt.format.slices: slice specs, slice keys and slice geometry."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastckpt.errors import DataLossError, InvalidArgumentError
from fastckpt.format import slices as S

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
FULL = (0, -1)

int64s = st.integers(INT64_MIN, INT64_MAX)
extents_st = st.one_of(
    st.just(FULL),
    st.tuples(st.integers(0, 1 << 40), st.integers(0, 1 << 40)),
    st.tuples(st.integers(0, INT64_MAX // 2), st.integers(0, INT64_MAX // 2)),
)
# Any bytes may name a tensor; non-UTF-8 bytes travel as surrogate escapes.
names_st = st.one_of(st.text(max_size=20), st.binary(max_size=20).map(lambda b: b.decode("utf-8", "surrogateescape")))


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text)


# ---------------------------------------------------------------------------
# OrderedCode primitives (doc section 5.1 examples)


@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, "80"),
        (1, "81"),
        (3, "83"),
        (63, "bf"),
        (64, "c0 40"),
        (100, "c0 64"),
        (1000, "c3 e8"),
        (8191, "df ff"),
        (8192, "e0 20 00"),
        (10000, "e0 27 10"),
        (-1, "7f"),
        (-64, "40"),
        (-65, "3f bf"),
        (-100, "3f 9c"),
        (-8192, "20 00"),
        (-8193, "1f df ff"),
        (70_000_000_000, "fc 10 4c 53 3c 00"),
        ((1 << 55) - 1, "ff 7f ff ff ff ff ff ff"),
        (1 << 55, "ff 80 80 00 00 00 00 00 00"),
        (1 << 62, "ff c0 40 00 00 00 00 00 00 00"),
        (INT64_MAX, "ff c0 7f ff ff ff ff ff ff ff"),
        (INT64_MIN, "00 3f 80 00 00 00 00 00 00 00"),
    ],
)
def test_snum_examples(value, encoded):
    assert S._encode_snum(value) == hexbytes(encoded)
    assert S._decode_snum(hexbytes(encoded) + b"\x99", 0) == (value, len(hexbytes(encoded)))


@pytest.mark.parametrize(
    "value, encoded", [(0, "00"), (2, "01 02"), (300, "02 01 2c"), ((1 << 64) - 1, "08 ff ff ff ff ff ff ff ff")]
)
def test_numinc_examples(value, encoded):
    assert S._encode_numinc(value) == hexbytes(encoded)
    assert S._decode_numinc(hexbytes(encoded), 0, "n") == (value, len(hexbytes(encoded)))


@given(int64s)
def test_snum_round_trip_and_length(value):
    encoded = S._encode_snum(value)
    magnitude = ~value if value < 0 else value
    assert len(encoded) == magnitude.bit_length() // 7 + 1
    assert S._decode_snum(encoded, 0) == (value, len(encoded))
    assert S._decode_snum(b"\x42" + encoded, 1) == (value, len(encoded) + 1)


@given(int64s, int64s)
def test_snum_bytes_sort_like_the_integers(a, b):
    ea, eb = S._encode_snum(a), S._encode_snum(b)
    assert (ea < eb) == (a < b)
    assert (ea == eb) == (a == b)


@given(st.lists(int64s, min_size=2, max_size=30))
def test_snum_sorting_a_list(values):
    assert sorted(values, key=S._encode_snum) == sorted(values)


def test_snum_order_across_every_length_boundary():
    edges = sorted(
        {s * ((1 << (7 * n - 1)) + d) for n in range(1, 10) for d in (-1, 0) for s in (1, -1)}
        | {INT64_MIN, INT64_MAX, 0}
    )
    encodings = [S._encode_snum(v) for v in edges]
    assert encodings == sorted(encodings)
    assert [S._decode_snum(e, 0)[0] for e in encodings] == edges


# ---------------------------------------------------------------------------
# Slice keys


def test_slice_key_doc_example_with_full_dimension():
    key = S.encode_slice_key("part", [(0, 3), (0, -1)])
    assert key == hexbytes("00 70 61 72 74 00 01 01 02 80 83 80 7f")
    assert S.decode_slice_key(key) == ("part", [(0, 3), (0, -1)])


def test_slice_key_doc_example_with_explicit_extent():
    key = S.encode_slice_key("part", [(0, 3), (0, 4)])
    assert key == hexbytes("00 70 61 72 74 00 01 01 02 80 83 80 84")
    assert S.decode_slice_key(key) == ("part", [(0, 3), (0, 4)])


def test_slice_key_large_offset():
    key = S.encode_slice_key("w", [(70_000_000_000, 3), (0, -1)])
    assert key == hexbytes("00 77 00 01 01 02 fc 10 4c 53 3c 00 83 80 7f")
    assert S.decode_slice_key(key) == ("w", [(70_000_000_000, 3), (0, -1)])


def test_slice_key_escapes_zero_and_ff_bytes():
    name = b"a\x00b\xff\x00".decode("utf-8", "surrogateescape")
    key = S.encode_slice_key(name, [(1, 2)])
    assert key == hexbytes("00 61 00 ff 62 ff 00 00 ff 00 01 01 01 81 82")
    assert S.decode_slice_key(key) == (name, [(1, 2)])
    assert S.encode_slice_key(b"a\x00b\xff\x00", [(1, 2)]) == key


def test_slice_key_utf8_name_and_rank_300():
    key = S.encode_slice_key("é/x", [(0, -1)] * 300)
    assert key == hexbytes("00 c3 a9 2f 78 00 01 02 01 2c") + b"\x80\x7f" * 300
    assert S.decode_slice_key(key) == ("é/x", [(0, -1)] * 300)


def test_slice_key_empty_name_and_zero_length():
    key = S.encode_slice_key("", [(5, 0)])
    assert key == hexbytes("00 00 01 01 01 85 80")
    assert S.decode_slice_key(key) == ("", [(5, 0)])


def test_slice_key_accepts_numpy_integers():
    key = S.encode_slice_key("part", [(np.int64(0), np.int32(3)), (np.uint8(0), np.int64(-1))])
    assert key == hexbytes("00 70 61 72 74 00 01 01 02 80 83 80 7f")


def test_decode_normalises_negative_lengths_to_full():
    # TensorFlow reads any negative length as "whole dimension", ignoring start.
    key = hexbytes("00 70 00 01 01 02 85 7d 3f 9c 3f 9c")  # (5, -3), (-100, -100)
    assert S.decode_slice_key(key) == ("p", [(0, -1), (0, -1)])
    assert S.decode_slice_key(bytearray(key)) == ("p", [(0, -1), (0, -1)])
    assert S.decode_slice_key(memoryview(key)) == ("p", [(0, -1), (0, -1)])


@given(names_st, st.lists(extents_st, min_size=1, max_size=6))
def test_slice_key_round_trip(name, extents):
    key = S.encode_slice_key(name, extents)
    assert key[:1] == b"\x00"
    assert S.decode_slice_key(key) == (name, [tuple(e) for e in extents])


@given(
    names_st,
    st.integers(1, 4).flatmap(lambda rank: st.tuples(*[st.lists(extents_st, min_size=rank, max_size=rank)] * 2)),
)
def test_slice_keys_of_one_tensor_sort_like_their_extents(name, pair):
    a, b = pair
    ka, kb = S.encode_slice_key(name, a), S.encode_slice_key(name, b)
    flat_a = [v for e in a for v in e]
    flat_b = [v for e in b for v in e]
    assert (ka < kb) == (flat_a < flat_b)


@settings(max_examples=300)
@given(names_st, st.lists(extents_st, min_size=1, max_size=4), st.data())
def test_decode_of_damaged_keys_raises_only_data_loss(name, extents, data):
    key = bytearray(S.encode_slice_key(name, extents))
    action = data.draw(st.sampled_from(["flip", "truncate", "append", "insert"]))
    if action == "flip":
        i = data.draw(st.integers(0, len(key) - 1))
        key[i] = data.draw(st.integers(0, 255))
    elif action == "truncate":
        del key[data.draw(st.integers(0, len(key) - 1)) :]
    elif action == "append":
        key += data.draw(st.binary(min_size=1, max_size=4))
    else:
        i = data.draw(st.integers(0, len(key)))
        key[i:i] = data.draw(st.binary(min_size=1, max_size=3))
    try:
        got_name, got_extents = S.decode_slice_key(bytes(key))
    except DataLossError as e:
        assert str(e).startswith("malformed slice key ")
        return
    # Whatever decodes re-encodes to a key that decodes the same way.
    assert len(got_extents) >= 1
    assert S.decode_slice_key(S.encode_slice_key(got_name, got_extents)) == (got_name, got_extents)


@settings(max_examples=300)
@given(st.binary(max_size=40))
def test_decode_of_random_bytes_raises_only_data_loss(raw):
    try:
        name, extents = S.decode_slice_key(raw)
    except DataLossError:
        return
    assert S.encode_slice_key(name, extents) == raw or any(e == FULL for e in extents)


@pytest.mark.parametrize(
    "key, reason",
    [
        ("", "truncated leading number"),
        ("01", "truncated leading number"),
        ("01 00", "non-canonical encoding of leading number"),
        ("01 07 70 00 01 01 01 80 81", "leading number is 7, expected 0"),
        ("09 00 00 00 00 00 00 00 00 00", "leading number is 9 bytes long; at most 8 allowed"),
        ("00", "unterminated tensor name"),
        ("00 70 61", "unterminated tensor name"),
        ("00 70 61 00", "unterminated tensor name"),
        ("00 70 61 00 02", "bad escape 00 02 in tensor name"),
        ("00 70 61 ff 01 00 01", "bad escape ff 01 in tensor name"),
        ("00 70 00 01", "truncated rank"),
        ("00 70 00 01 00", "rank is 0, expected a positive rank"),
        ("00 70 00 01 02 00 01 80 81", "non-canonical encoding of rank"),
        ("00 70 00 01 04 7f ff ff ff 80 80", "rank 2147483647 is too large"),
        ("00 70 00 01 01 01 80", "rank 1 needs at least 2 more bytes, 1 left"),
        ("00 70 61 72 74 00 01 01 02 80 83 80", "rank 2 needs at least 4 more bytes, 3 left"),
        ("00 70 00 01 01 01 c0 40", "truncated signed number"),
        ("00 70 00 01 01 01 80 ff", "truncated signed number"),
        ("00 70 00 01 01 01 80 00", "truncated signed number"),
        ("00 70 00 01 01 01 c0 00 80", "non-canonical encoding of signed number 0"),
        ("00 70 00 01 01 01 3f ff 80", "non-canonical encoding of signed number -1"),
        ("00 70 00 01 01 01 ff e0 00 00 00 00 00 00 00 00 00", "signed number longer than 10 bytes"),
        (
            "00 70 00 01 01 01 ff c0 80 00 00 00 00 00 00 00 80",
            "signed number 9223372036854775808 is out of int64 range",
        ),
        ("00 70 00 01 01 01 7f 81", "extent 0 (-1, 1) is invalid"),
        ("00 70 00 01 01 01 ff c0 7f ff ff ff ff ff ff ff 81", "extent 0 (9223372036854775807, 1) is invalid"),
        ("00 70 00 01 01 01 80 80 80", "1 trailing bytes"),
        ("00 70 61 72 74 00 01 01 02 80 83 80 7f 00 00", "2 trailing bytes"),
    ],
)
def test_decode_slice_key_rejects(key, reason):
    with pytest.raises(DataLossError) as info:
        S.decode_slice_key(hexbytes(key))
    assert str(info.value) == f"malformed slice key {key}: {reason}"


def test_decode_slice_key_shortens_long_keys_in_messages():
    key = b"\x00" + b"n" * 100
    with pytest.raises(DataLossError) as info:
        S.decode_slice_key(key)
    assert str(info.value) == ("malformed slice key " + key[:64].hex(" ") + " ...: unterminated tensor name")


def test_decode_slice_key_rejects_non_bytes():
    with pytest.raises(InvalidArgumentError) as info:
        S.decode_slice_key(5)
    assert str(info.value) == "slice keys are bytes, not int"
    with pytest.raises(InvalidArgumentError) as info:
        S.decode_slice_key("\x00p")
    assert str(info.value) == "slice keys are bytes, not str"


@pytest.mark.parametrize(
    "name, extents, message",
    [
        ("w", [], "slice of tensor 'w' has rank 0; slices need rank >= 1"),
        ("w", [(3, -1)], "extent 0 is (3, -1): a whole dimension is written (0, -1)"),
        (
            "w",
            [(0, 1), (0, -2)],
            "extent 1 is (0, -2): start and length must be >= 0 (or (0, -1) for the whole dimension)",
        ),
        ("w", [(-1, 2)], "extent 0 is (-1, 2): start and length must be >= 0 (or (0, -1) for the whole dimension)"),
        ("w", [(INT64_MAX, 1)], f"extent 0 is ({INT64_MAX}, 1): end exceeds int64"),
        ("w", [(1 << 63, 0)], f"extent 0 is ({1 << 63}, 0): end exceeds int64"),
        ("w", [(0.0, 1)], "start of extent 0 must be an integer, not 0.0"),
        ("w", [(0, "3")], "length of extent 0 must be an integer, not '3'"),
        ("w", [(0, 1, 2)], "extent 0 must be a (start, length) pair, not (0, 1, 2)"),
        ("w", [5], "extents must be (start, length) pairs, not [5]"),
        ("w", None, "extents must be (start, length) pairs, not None"),
        (3, [(0, 1)], "tensor names must be str, not int"),
        (
            "\ud800",
            [(0, 1)],
            "tensor name '\\ud800' cannot be encoded: 'utf-8' codec can't encode "
            "character '\\ud800' in position 0: surrogates not allowed",
        ),
    ],
)
def test_encode_slice_key_rejects(name, extents, message):
    with pytest.raises(InvalidArgumentError) as info:
        S.encode_slice_key(name, extents)
    assert str(info.value) == message


# ---------------------------------------------------------------------------
# Text forms


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("0,3:-", [(0, 3), (0, -1)]),
        ("0,3:0,4", [(0, 3), (0, 4)]),
        ("-", [(0, -1)]),
        ("-:-:-", [(0, -1)] * 3),
        ("70000000000,3", [(70_000_000_000, 3)]),
        ("", []),
        (f"{INT64_MAX},{INT64_MAX}", [(INT64_MAX, INT64_MAX)]),
        # TensorFlow's quirks, all accepted by TF 2.21:
        ("0,3::-", [(0, 3), (0, -1)]),  # empty items are skipped
        (":0,3:-:", [(0, 3), (0, -1)]),
        ("0,,3:-", [(0, 3), (0, -1)]),
        (",0,3,:-", [(0, 3), (0, -1)]),
        ("+0,+3:-", [(0, 3), (0, -1)]),  # signs
        ("-0,3", [(0, 3)]),
        ("00,03", [(0, 3)]),  # leading zeros
        ("0\t,\n3 :-", [(0, 3), (0, -1)]),  # ASCII whitespace around numbers
    ],
)
def test_parse_slice_spec(spec, expected):
    assert S.parse_slice_spec(spec) == expected
    assert S.parse_slice_spec(spec, len(expected)) == expected


@pytest.mark.parametrize(
    "spec, detail",
    [
        ("0,3:a", "expected 'start,length' or '-', got 'a'"),
        ("0,3,1", "expected 'start,length' or '-', got '0,3,1'"),
        ("3", "expected 'start,length' or '-', got '3'"),
        ("--", "expected 'start,length' or '-', got '--'"),
        (" -", "expected 'start,length' or '-', got ' -'"),
        ("-,-", "expected 'start,length' or '-', got '-,-'"),
        ("0,3:,-", "expected 'start,length' or '-', got ',-'"),
        ("0x1,3", "expected 'start,length' or '-', got '0x1,3'"),
        ("1_0,3", "expected 'start,length' or '-', got '1_0,3'"),
        ("0,\u0663", "expected 'start,length' or '-', got '0,\u0663'"),  # Arabic-Indic three
        ("0,99999999999999999999", "expected 'start,length' or '-', got '0,99999999999999999999'"),
        ("0,0", "start must be >= 0 and length > 0, got start 0, length 0"),
        ("0,-0", "start must be >= 0 and length > 0, got start 0, length 0"),
        ("0,-1", "start must be >= 0 and length > 0, got start 0, length -1"),
        ("-1,4", "start must be >= 0 and length > 0, got start -1, length 4"),
    ],
)
def test_parse_slice_spec_rejects(spec, detail):
    with pytest.raises(InvalidArgumentError) as info:
        S.parse_slice_spec(spec)
    assert str(info.value) == f"bad slice spec {spec!r}: {detail}"


def test_parse_slice_spec_checks_rank():
    with pytest.raises(InvalidArgumentError) as info:
        S.parse_slice_spec("0,3:-", 3)
    assert str(info.value) == "slice spec '0,3:-' has 2 dimensions, expected 3"
    with pytest.raises(InvalidArgumentError) as info:
        S.parse_slice_spec("", 1)
    assert str(info.value) == "slice spec '' has 0 dimensions, expected 1"
    with pytest.raises(InvalidArgumentError) as info:
        S.parse_slice_spec(b"0,3")
    assert str(info.value) == "slice spec must be a str, not bytes"


@pytest.mark.parametrize(
    "extents, text",
    [
        ([(0, 3), (0, -1)], "0,3:-"),
        ([(0, -1)], "-"),
        ([], ""),
        ([(70_000_000_000, 3), (2, 1)], "70000000000,3:2,1"),
        # Never validates (used in error messages):
        ([(5, -1), (1, 0), (-2, 3)], "5,-1:1,0:-2,3"),
    ],
)
def test_format_slice_spec(extents, text):
    assert S.format_slice_spec(extents) == text


@given(st.lists(st.one_of(st.just(FULL), st.tuples(st.integers(0, INT64_MAX), st.integers(1, INT64_MAX))), max_size=6))
def test_slice_spec_round_trip(extents):
    assert S.parse_slice_spec(S.format_slice_spec(extents), len(extents)) == extents


@pytest.mark.parametrize(
    "text, shape, extents",
    [
        ("5 4 0,3:-", [5, 4], [(0, 3), (0, -1)]),
        ("10 4 4,3:0,4", [10, 4], [(4, 3), (0, 4)]),
        ("3 4 -:-", [3, 4], [(0, -1), (0, -1)]),
        ("7 -", [7], [(0, -1)]),
        ("0 -", [0], [(0, -1)]),
        ("70000000010 2 70000000000,3:-", [70_000_000_010, 2], [(70_000_000_000, 3), (0, -1)]),
        ("+5 4 0,3::-", [5, 4], [(0, 3), (0, -1)]),
        ("5\t 04 0,3:-", [5, 4], [(0, 3), (0, -1)]),
    ],
)
def test_parse_shape_and_slice(text, shape, extents):
    assert S.parse_shape_and_slice(text) == (shape, extents)


@pytest.mark.parametrize(
    "text, detail",
    [
        ("5", "need the dimensions followed by a slice spec"),
        ("5 4", "bad slice spec '4': expected 'start,length' or '-', got '4'"),
        ("5  4 0,3:-", "bad dimension ''"),
        (" 5 4 0,3:-", "bad dimension ''"),
        ("5 4 0,3:- ", "bad dimension '0,3:-'"),  # the slice is the empty last field
        ("5\t4 0,3:-", "bad dimension '5\\t4'"),
        ("5 4 0,3 :-", "bad dimension '0,3'"),
        ("-1 4 0,3:-", "bad dimension '-1'"),
        ("5 x 0,3:-", "bad dimension 'x'"),
        ("5 4 0,0:-", "bad slice spec '0,0:-': start must be >= 0 and length > 0, got start 0, length 0"),
        ("5 4 0,3", "slice '0,3' has rank 1, shape [5, 4] has rank 2"),
        ("5 4 0,3:-:-", "slice '0,3:-:-' has rank 3, shape [5, 4] has rank 2"),
        ("5 4 0,6:-", "slice '0,6:-' exceeds shape [5, 4] in dimension 0"),
        ("5 4 4,2:-", "slice '4,2:-' exceeds shape [5, 4] in dimension 0"),
        ("5 4 0,5:1,4", "slice '0,5:1,4' exceeds shape [5, 4] in dimension 1"),
        # TF 2.21's bounds check overflows here and accepts it; we do not.
        ("5 4 9223372036854775807,1:-", "extent 0 is (9223372036854775807, 1): end exceeds int64"),
    ],
)
def test_parse_shape_and_slice_rejects(text, detail):
    with pytest.raises(InvalidArgumentError) as info:
        S.parse_shape_and_slice(text)
    assert str(info.value) == f"bad shape_and_slice {text!r}: {detail}"


def test_parse_shape_and_slice_empty_and_non_str():
    with pytest.raises(InvalidArgumentError) as info:
        S.parse_shape_and_slice("")
    assert str(info.value) == ("empty shape_and_slice: '' means the whole tensor and carries no shape")
    with pytest.raises(InvalidArgumentError) as info:
        S.parse_shape_and_slice(None)
    assert str(info.value) == "shape_and_slice must be a str, not NoneType"


def test_format_shape_and_slice():
    assert S.format_shape_and_slice([5, 4], [(0, 3), (0, -1)]) == "5 4 0,3:-"
    assert S.format_shape_and_slice((10, 4), [(7, 3), (0, 4)]) == "10 4 7,3:0,4"
    with pytest.raises(InvalidArgumentError) as info:
        S.format_shape_and_slice([], [])
    assert str(info.value) == "a rank-0 tensor cannot be sliced"
    with pytest.raises(InvalidArgumentError) as info:
        S.format_shape_and_slice([5], [(1, 0)])
    assert str(info.value) == "slice '1,0' has a zero length, which the text form cannot hold"
    with pytest.raises(InvalidArgumentError) as info:
        S.format_shape_and_slice([5], [(1, 5)])
    assert str(info.value) == "slice '1,5' exceeds shape [5] in dimension 0"


@given(
    st.lists(st.integers(1, 1 << 40), min_size=1, max_size=5).flatmap(
        lambda shape: st.tuples(
            st.just(shape),
            st.tuples(
                *[
                    st.one_of(
                        st.just(FULL),
                        st.integers(0, d - 1).flatmap(lambda s, d=d: st.tuples(st.just(s), st.integers(1, d - s))),
                    )
                    for d in shape
                ]
            ),
        )
    )
)
def test_shape_and_slice_round_trip(shape_and_extents):
    shape, extents = shape_and_extents
    extents = list(extents)
    text = S.format_shape_and_slice(shape, extents)
    assert S.parse_shape_and_slice(text) == (shape, extents)


# ---------------------------------------------------------------------------
# Geometry


def test_slice_shape():
    assert S.slice_shape([5, 4], [(1, 3), (0, -1)]) == [3, 4]
    assert S.slice_shape((10, 4), [(7, 3), (0, 4)]) == [3, 4]
    assert S.slice_shape([5], [(5, 0)]) == [0]
    assert S.slice_shape([0, 2], [(0, -1), (1, 1)]) == [0, 1]
    assert S.slice_shape([], []) == []
    assert S.slice_shape(np.array([6, 2]), [(np.int64(2), np.int64(2)), FULL]) == [2, 2]


@pytest.mark.parametrize(
    "shape, extents, message",
    [
        ([5, 4], [(0, 3)], "slice '0,3' has rank 1, shape [5, 4] has rank 2"),
        ([5, 4], [(0, 6), (0, -1)], "slice '0,6:-' exceeds shape [5, 4] in dimension 0"),
        ([5, 4], [(0, 1), (4, 1)], "slice '0,1:4,1' exceeds shape [5, 4] in dimension 1"),
        ([5], [(-1, 1)], "extent 0 is (-1, 1): start and length must be >= 0 (or (0, -1) for the whole dimension)"),
        ([5], [(2, -1)], "extent 0 is (2, -1): a whole dimension is written (0, -1)"),
        ([-5], [(0, -1)], "shape [-5] has a negative dimension"),
        ([5.0], [(0, -1)], "dimension must be an integer, not 5.0"),
    ],
)
def test_geometry_rejects(shape, extents, message):
    for fn in (S.slice_shape, S.slice_to_index, S.is_full_slice):
        with pytest.raises(InvalidArgumentError) as info:
            fn(shape, extents)
        assert str(info.value) == message
    with pytest.raises(InvalidArgumentError) as info:
        S.intersect(extents, extents, shape)
    assert str(info.value) == message


def test_slice_to_index_selects_the_region():
    full = np.arange(40).reshape(10, 4)
    index = S.slice_to_index(full.shape, [(4, 3), (0, -1)])
    assert index == (slice(4, 7), slice(0, 4))
    np.testing.assert_array_equal(full[index], full[4:7])
    index = S.slice_to_index([10, 4], [(0, -1), (1, 2)])
    assert index == (slice(0, 10), slice(1, 3))
    assert full[index].shape == (10, 2)
    assert S.slice_to_index([], []) == ()


def test_is_full_slice():
    assert S.is_full_slice([5, 4], [(0, -1), (0, -1)])
    assert S.is_full_slice([5, 4], [(0, 5), (0, -1)])
    assert S.is_full_slice([5, 4], [(0, 5), (0, 4)])
    assert not S.is_full_slice([5, 4], [(0, 3), (0, -1)])
    assert not S.is_full_slice([5, 4], [(1, 4), (0, 4)])
    assert S.is_full_slice([0, 3], [(0, 0), (0, -1)])
    assert S.is_full_slice([], [])


def test_intersect():
    shape = [10, 4]
    assert S.intersect([(0, 4), FULL], [(2, 5), FULL], shape) == [(2, 2), FULL]
    assert S.intersect([(4, 3), FULL], [FULL, (1, 2)], shape) == [(4, 3), (1, 2)]
    assert S.intersect([FULL, FULL], [FULL, FULL], shape) == [FULL, FULL]
    assert S.intersect([(0, 10), FULL], [FULL, (0, 4)], shape) == [(0, 10), (0, 4)]
    assert S.intersect([(7, 3), FULL], [(2, 5), FULL], shape) is None  # touching, no overlap
    assert S.intersect([(0, 4), (0, 1)], [(0, 4), (2, 2)], shape) is None
    assert S.intersect([(3, 0), FULL], [FULL, FULL], shape) is None  # empty slice
    assert S.intersect([FULL], [FULL], [0]) is None  # nothing in a size-0 dimension
    assert S.intersect([], [], []) == []  # a scalar overlaps itself


def test_intersect_checks_ranks():
    with pytest.raises(InvalidArgumentError) as info:
        S.intersect([(0, 1)], [(0, 1), FULL], [5, 4])
    assert str(info.value) == "slice '0,1' has rank 1, shape [5, 4] has rank 2"


@given(
    st.lists(st.integers(0, 12), min_size=1, max_size=3).flatmap(
        lambda shape: st.tuples(
            st.just(shape),
            *[
                st.tuples(
                    *[
                        st.one_of(
                            st.just(FULL),
                            st.integers(0, d).flatmap(lambda s, d=d: st.tuples(st.just(s), st.integers(0, d - s))),
                        )
                        for d in shape
                    ]
                )
                for _ in range(2)
            ],
        )
    )
)
def test_intersect_matches_numpy_masks(case):
    shape, a, b = case
    mask_a = np.zeros(shape, bool)
    mask_b = np.zeros(shape, bool)
    mask_a[S.slice_to_index(shape, a)] = True
    mask_b[S.slice_to_index(shape, b)] = True
    both = mask_a & mask_b
    got = S.intersect(list(a), list(b), shape)
    if got is None:
        assert not both.any()
    else:
        expected = np.zeros(shape, bool)
        expected[S.slice_to_index(shape, got)] = True
        np.testing.assert_array_equal(expected, both)
        assert both.any()
        assert S.intersect(list(b), list(a), shape) == got


# ---------------------------------------------------------------------------
# Against TensorFlow


def _varint(buf, pos):
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _block_items(data, offset, size):
    """Entries of one uncompressed LevelDB table block (prefix-compressed keys)."""
    block = data[offset : offset + size]
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _index_items(path):
    """(key, value) pairs of a checkpoint .index file, in file order."""
    with open(path, "rb") as f:
        data = f.read()
    footer = data[-48:]
    _, pos = _varint(footer, 0)  # metaindex handle
    _, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    for _, handle in _block_items(data, index_offset, index_size):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        yield from _block_items(data, offset, size)


def _proto_extents(slice_proto):
    return [(e.start, e.length) if e.HasField("length") else FULL for e in slice_proto.extent]


@pytest.mark.tf
def test_keys_of_a_tf1_partitioned_variable(tmp_path):
    import tensorflow as tf
    from tensorflow.core.protobuf import tensor_bundle_pb2

    graph = tf.Graph()
    with graph.as_default():
        w = tf.compat.v1.get_variable(
            "w",
            shape=[10, 4],
            partitioner=tf.compat.v1.fixed_size_partitioner(3),
            initializer=tf.compat.v1.zeros_initializer(),
        )
        b = tf.compat.v1.get_variable(
            "scope/b",
            shape=[7, 3],
            partitioner=tf.compat.v1.fixed_size_partitioner(2, axis=1),
            initializer=tf.compat.v1.zeros_initializer(),
        )
        specs = {p._save_slice_info.spec for v in (w, b) for p in v}
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, str(tmp_path / "model"))
    assert specs == {"10 4 0,4:0,4", "10 4 4,3:0,4", "10 4 7,3:0,4", "7 3 0,7:0,2", "7 3 0,7:2,1"}

    items = dict(_index_items(str(tmp_path / "model.index")))
    slice_keys = {k for k in items if k[:1] == b"\x00"}
    assert slice_keys == {
        hexbytes("00 77 00 01 01 02 80 84 80 84"),
        hexbytes("00 77 00 01 01 02 84 83 80 84"),
        hexbytes("00 77 00 01 01 02 87 83 80 84"),
        hexbytes("00 73 63 6f 70 65 2f 62 00 01 01 02 80 87 80 82"),
        hexbytes("00 73 63 6f 70 65 2f 62 00 01 01 02 80 87 82 81"),
    }
    expected_keys = set()
    for spec in specs:
        name = "w" if spec.startswith("10 ") else "scope/b"
        shape, extents = S.parse_shape_and_slice(spec)
        key = S.encode_slice_key(name, extents)
        expected_keys.add(key)
        assert S.decode_slice_key(key) == (name, extents)
        entry = tensor_bundle_pb2.BundleEntryProto.FromString(items[key])
        assert [d.size for d in entry.shape.dim] == S.slice_shape(shape, extents)
    assert expected_keys == slice_keys
    # The full-tensor entries list their slices; each re-encodes to a stored key.
    for name in ("w", "scope/b"):
        full = tensor_bundle_pb2.BundleEntryProto.FromString(items[name.encode()])
        keys = [S.encode_slice_key(name, _proto_extents(sp)) for sp in full.slices]
        assert len(keys) == len(full.slices) >= 2
        assert set(keys) <= slice_keys


@pytest.mark.tf
def test_keys_written_by_savev2(tmp_path):
    import tensorflow as tf
    from tensorflow.core.protobuf import tensor_bundle_pb2

    raw_name = b"odd\x00name\xff/\xc3\xa9"
    name = raw_name.decode("utf-8", "surrogateescape")
    specs = [
        (b"part", "5 4 0,3:-", [3, 4]),
        (b"part", "5 4 3,2:0,4", [2, 4]),
        (raw_name, "6 1 2 -:0,1:1,1", [6, 1, 1]),
        (b"big", "70000000010 2 70000000000,3:-", [3, 2]),
        (b"big", "70000000010 2 9,70:1,1", [70, 1]),
    ]
    prefix = str(tmp_path / "ckpt")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=[n for n, _, _ in specs],
        shape_and_slices=[s for _, s, _ in specs],
        tensors=[tf.zeros(shape, tf.float32) for _, _, shape in specs],
    )
    items = dict(_index_items(prefix + ".index"))
    for tensor_name, spec, shape in specs:
        _, extents = S.parse_shape_and_slice(spec)
        key = S.encode_slice_key(tensor_name.decode("utf-8", "surrogateescape"), extents)
        assert key in items, (spec, key.hex(" "))
        entry = tensor_bundle_pb2.BundleEntryProto.FromString(items[key])
        assert [d.size for d in entry.shape.dim] == shape
    found = sorted(S.decode_slice_key(k) for k in items if k[:1] == b"\x00")
    assert found == sorted(
        [
            ("part", [(0, 3), FULL]),
            ("part", [(3, 2), (0, 4)]),
            (name, [FULL, (0, 1), (1, 1)]),
            ("big", [(70_000_000_000, 3), FULL]),
            ("big", [(9, 70), (1, 1)]),
        ]
    )
    assert S.encode_slice_key("part", [(0, 3), FULL]) == hexbytes("00 70 61 72 74 00 01 01 02 80 83 80 7f")
    assert S.encode_slice_key(name, [FULL, (0, 1), (1, 1)]) == hexbytes(
        "00 6f 64 64 00 ff 6e 61 6d 65 ff 00 2f c3 a9 00 01 01 03 80 7f 80 81 81 81"
    )


# shape_and_slices strings TensorFlow 2.21's SaveV2 accepts / rejects. Left
# out: negative dimensions (TF aborts the process) and "" (no slicing at all).
TF_ACCEPTS = [
    "5 4 0,3:-",
    "5 4 0,3:0,4",
    "5 4 0,3::-",
    "5 4 0,,3:-",
    "5 4 :0,3:-",
    "5 4 0,3:-:",
    "5 4 +0,3:-",
    "+5 4 0,+3:-",
    "5 4 00,03:-",
    "5 4 ,0,3,:-",
    "5 4 -0,3:-",
    "5 4 0\t,3:-",
    "5\t 4 0,3:-",
    "5 4 0,\n3:-",
    "3 4 -:-",
    "3 4 0,3:0,4",
    "70000000010 2 70000000000,3:-",
]
TF_REJECTS = [
    "5  4 0,3:-",
    " 5 4 0,3:-",
    "5 4 0,3:- ",
    "5 4 0,0:-",
    "5 4 0,-0:-",
    "5 4 0,6:-",
    "5 4 0,3",
    "5 4",
    "5",
    "5 4 -",
    "5 4 0,3:-,",
    "5 4 0,3:--",
    "5 4 0x1,3:-",
    "5 4 0,3:0,-1",
    "5 4 0,3,1:-",
    "5 4 0,3:-\t",
    "5\t4 0,3:-",
    "5 4 0,3 :-",
    "5 4 0,3:-1,4",
    "5 4 0,3:a",
    "5 4 0,99999999999999999999:-",
    "5 4 0,3:,-",
    "5 4 0,\u0663:-",
    "5 4 0,3:-:-",
    "5 4 0,9223372036854775807:-",
]


@pytest.mark.tf
@pytest.mark.parametrize("text", TF_ACCEPTS)
def test_shape_and_slice_accepted_like_tensorflow(text, tmp_path):
    import tensorflow as tf

    shape, extents = S.parse_shape_and_slice(text)
    tensor = tf.zeros(S.slice_shape(shape, extents), tf.float32)
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "c"), tensor_names=["t"], shape_and_slices=[text], tensors=[tensor])
    keys = [k for k, _ in _index_items(str(tmp_path / "c.index"))]
    if S.is_full_slice(shape, extents):
        assert keys == [b"", b"t"]  # a whole-tensor "slice" is an ordinary entry
    else:
        assert keys == [b"", S.encode_slice_key("t", extents), b"t"]


@pytest.mark.tf
@pytest.mark.parametrize("text", TF_REJECTS)
def test_shape_and_slice_rejected_like_tensorflow(text, tmp_path):
    import tensorflow as tf

    with pytest.raises(InvalidArgumentError):
        S.parse_shape_and_slice(text)
    with pytest.raises((tf.errors.InvalidArgumentError, tf.errors.InternalError)):
        tf.raw_ops.SaveV2(
            prefix=str(tmp_path / "c"),
            tensor_names=["t"],
            shape_and_slices=[text],
            tensors=[tf.zeros([3, 4], tf.float32)],
        )


def test_geometry_accepts_iterators():
    assert S.intersect(iter([(0, 4), FULL]), iter([(2, 5), FULL]), iter([10, 4])) == [(2, 2), FULL]
    assert S.slice_shape(iter([5, 4]), iter([(1, 3), FULL])) == [3, 4]
    assert S.encode_slice_key("p", ((0, 1) for _ in range(1))) == hexbytes("00 70 00 01 01 01 80 81")
