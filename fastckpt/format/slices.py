"""Slices of partitioned tensors: TensorFlow's slice specs and slice keys.

A slice is a list of ``(start, length)`` extents, one per dimension; the
extent ``(0, -1)`` (:data:`FULL`) means "the whole dimension", which
TensorFlow spells ``-`` in text and stores as an empty ``Extent`` proto.

Text forms (``TensorSlice::Parse`` / ``checkpoint::ParseShapeAndSlice``):

* slice spec: ``"0,3:-"`` -- ``start,length`` or ``-`` per dimension, joined by ``:``;
* shape-and-slice (``SaveV2``'s ``shape_and_slices``): ``"5 4 0,3:-"`` --
  the full shape's dimensions, then the slice spec, separated by single spaces.

The parsers accept exactly what TensorFlow accepts, quirks included: empty
``:``- and ``,``-separated items are skipped (``"0,3::-"`` is two dimensions),
numbers may carry a sign, leading zeros and surrounding ASCII whitespace.

Each stored slice of a partitioned tensor lives under a *slice key*
(``EncodeTensorNameSlice``), built with TensorFlow's order-preserving
"OrderedCode" encoding::

    NumInc(0) + Str(name) + NumInc(rank) + SNum(start_0) + SNum(length_0) + ...

Tensor names are ``str``; bytes that are not UTF-8 round-trip through
``surrogateescape``, as everywhere else in fastckpt.
"""

from __future__ import annotations

import operator
import re
from typing import Any, List, Optional, Sequence, Tuple, Union

from ..errors import DataLossError, InvalidArgumentError

__all__ = [
    "FULL",
    "encode_slice_key",
    "decode_slice_key",
    "parse_slice_spec",
    "format_slice_spec",
    "parse_shape_and_slice",
    "format_shape_and_slice",
    "slice_shape",
    "slice_to_index",
    "is_full_slice",
    "intersect",
]

Extent = Tuple[int, int]

#: The extent of a whole dimension.
FULL: Extent = (0, -1)

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_INT32_MAX = (1 << 31) - 1

# ---------------------------------------------------------------------------
# OrderedCode primitives


def _encode_numinc(value: int) -> bytes:
    """NumInc: a byte counting the big-endian bytes of `value`, then those bytes."""
    n = (value.bit_length() + 7) // 8
    return bytes((n,)) + value.to_bytes(n, "big")


def _snum_length(value: int) -> int:
    """Bytes SNum needs: n bytes hold n header bits plus a (7n)-bit two's complement."""
    magnitude = ~value if value < 0 else value
    return magnitude.bit_length() // 7 + 1


def _encode_snum(value: int) -> bytes:
    """SNum: `value` (an int64) in 1..10 bytes whose byte order sorts like the integers.

    The n-byte two's complement of `value` has its top n+1 bits all equal to
    the sign; flipping the top n of them makes a header of n ones (positive)
    or n zeros (negative), so longer encodings sort further from zero.
    """
    n = _snum_length(value)
    bits = 8 * n
    header = ((1 << n) - 1) << (bits - n)
    return ((value & ((1 << bits) - 1)) ^ header).to_bytes(n, "big")


def _decode_snum(buf: bytes, pos: int) -> Tuple[int, int]:
    """Reads one SNum at `pos`; returns (value, position after it).

    Raises:
        DataLossError: truncated, over-long, out of int64 range, or not the
            shortest encoding (TensorFlow never writes those).
    """
    if pos >= len(buf):
        raise DataLossError("truncated signed number")
    # Negative numbers are stored with their header bits inverted; un-invert
    # so the length is always the count of leading one bits.
    flip = 0x00 if buf[pos] & 0x80 else 0xFF
    top = ((buf[pos] ^ flip) << 8) | ((buf[pos + 1] ^ flip) if pos + 1 < len(buf) else 0)
    n = 16 - ((~top) & 0xFFFF).bit_length()
    if n > 10:
        raise DataLossError("signed number longer than 10 bytes")
    if pos + n > len(buf):
        raise DataLossError("truncated signed number")
    bits = 8 * n
    raw = int.from_bytes(buf[pos : pos + n], "big") ^ (((1 << n) - 1) << (bits - n))
    value = raw - (1 << bits) if raw >> (bits - 1) else raw
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise DataLossError(f"signed number {value} is out of int64 range")
    if _snum_length(value) != n:
        raise DataLossError(f"non-canonical encoding of signed number {value}")
    return value, pos + n


def _decode_numinc(buf: bytes, pos: int, what: str) -> Tuple[int, int]:
    """Reads one NumInc at `pos`; returns (value, position after it)."""
    if pos >= len(buf):
        raise DataLossError(f"truncated {what}")
    n = buf[pos]
    if n > 8:
        raise DataLossError(f"{what} is {n} bytes long; at most 8 allowed")
    if pos + 1 + n > len(buf):
        raise DataLossError(f"truncated {what}")
    if n and buf[pos + 1] == 0:
        raise DataLossError(f"non-canonical encoding of {what}")
    return int.from_bytes(buf[pos + 1 : pos + 1 + n], "big"), pos + 1 + n


def _encode_str(data: bytes) -> bytes:
    """Str: 0x00 -> 00 ff, 0xff -> ff 00, then the terminator 00 01."""
    # Escape 0xff inside each 0x00-free piece; joining the pieces with the
    # escaped 0x00 must come last so its 0xff is not escaped again.
    pieces = (p.replace(b"\xff", b"\xff\x00") for p in data.split(b"\x00"))
    return b"\x00\xff".join(pieces) + b"\x00\x01"


def _decode_str(buf: bytes, pos: int) -> Tuple[bytes, int]:
    """Reads one Str at `pos`; returns (bytes, position after the terminator)."""
    out = bytearray()
    while True:
        # Copy the run of ordinary bytes up to the next 0x00 or 0xff.
        end = pos
        while end < len(buf) and buf[end] not in (0x00, 0xFF):
            end += 1
        out += buf[pos:end]
        if end + 1 >= len(buf):
            raise DataLossError("unterminated tensor name")
        pair = buf[end : end + 2]
        pos = end + 2
        if pair == b"\x00\x01":
            return bytes(out), pos
        if pair == b"\x00\xff":
            out.append(0x00)
        elif pair == b"\xff\x00":
            out.append(0xFF)
        else:
            raise DataLossError(f"bad escape {pair.hex(' ')} in tensor name")


# ---------------------------------------------------------------------------
# Slice keys


def _as_int(value: Any, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidArgumentError(f"{what} must be an integer, not {value!r}") from None


def _as_extents(extents: Sequence[Tuple[int, int]]) -> List[Extent]:
    """Validated ``(start, length)`` int pairs, independent of any shape."""
    out = []
    try:
        pairs = [tuple(e) for e in extents]
    except TypeError:
        raise InvalidArgumentError(f"extents must be (start, length) pairs, not {extents!r}") from None
    for d, pair in enumerate(pairs):
        if len(pair) != 2:
            raise InvalidArgumentError(f"extent {d} must be a (start, length) pair, not {pair!r}")
        start = _as_int(pair[0], f"start of extent {d}")
        length = _as_int(pair[1], f"length of extent {d}")
        if length == -1:
            if start != 0:
                raise InvalidArgumentError(f"extent {d} is ({start}, -1): a whole dimension is written (0, -1)")
        elif start < 0 or length < 0:
            raise InvalidArgumentError(
                f"extent {d} is ({start}, {length}): start and length must be >= 0 (or (0, -1) for the whole dimension)"
            )
        if start + max(length, 0) > _INT64_MAX:
            raise InvalidArgumentError(f"extent {d} is ({start}, {length}): end exceeds int64")
        out.append((start, length))
    return out


def encode_slice_key(name: Union[str, bytes], extents: Sequence[Tuple[int, int]]) -> bytes:
    """The index key under which slice `extents` of tensor `name` is stored.

    `extents` holds one ``(start, length)`` per dimension, ``(0, -1)`` for a
    whole dimension. A ``bytes`` name is used as is. Example:
    ``encode_slice_key("part", [(0, 3), (0, -1)])`` is
    ``00 70 61 72 74 00 01 01 02 80 83 80 7f``.

    Raises:
        InvalidArgumentError: no extents (TensorFlow cannot decode a rank-0
            key), a negative start or length other than the (0, -1) full
            extent, an end beyond int64, or a name that cannot be UTF-8 encoded.
    """
    if isinstance(name, str):
        try:
            raw_name = name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as e:
            raise InvalidArgumentError(f"tensor name {name!r} cannot be encoded: {e}") from None
    elif isinstance(name, bytes):
        raw_name = name
    else:
        raise InvalidArgumentError(f"tensor names must be str, not {type(name).__name__}")
    checked = _as_extents(extents)
    if not checked:
        raise InvalidArgumentError(f"slice of tensor {name!r} has rank 0; slices need rank >= 1")
    parts = [b"\x00", _encode_str(raw_name), _encode_numinc(len(checked))]
    for start, length in checked:
        parts.append(_encode_snum(start))
        parts.append(_encode_snum(length))
    return b"".join(parts)


def decode_slice_key(key: bytes) -> Tuple[str, List[Extent]]:
    """Splits a slice key into (tensor name, extents); the inverse of :func:`encode_slice_key`.

    As TensorFlow does, any negative length means the whole dimension and is
    returned as ``(0, -1)`` whatever the stored start. Stricter than
    TensorFlow, trailing bytes and non-shortest number encodings are rejected
    (TensorFlow never writes them).

    Raises:
        DataLossError: `key` is not a well-formed slice key.
        InvalidArgumentError: `key` is not bytes-like.
    """
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"slice keys are bytes, not {type(key).__name__}")
    key = bytes(key)
    try:
        return _decode_slice_key(key)
    except DataLossError as e:
        shown = key[:64].hex(" ") + (" ..." if len(key) > 64 else "")
        raise DataLossError(f"malformed slice key {shown}: {e}") from None


def _decode_slice_key(key: bytes) -> Tuple[str, List[Extent]]:
    lead, pos = _decode_numinc(key, 0, "leading number")
    if lead != 0:
        raise DataLossError(f"leading number is {lead}, expected 0")
    raw_name, pos = _decode_str(key, pos)
    rank, pos = _decode_numinc(key, pos, "rank")
    if rank == 0:
        raise DataLossError("rank is 0, expected a positive rank")
    # Each dimension takes at least two bytes; checking first keeps a corrupt
    # rank from driving a huge loop.
    if rank >= _INT32_MAX:
        raise DataLossError(f"rank {rank} is too large")
    if 2 * rank > len(key) - pos:
        raise DataLossError(f"rank {rank} needs at least {2 * rank} more bytes, {len(key) - pos} left")
    extents: List[Extent] = []
    for d in range(rank):
        start, pos = _decode_snum(key, pos)
        length, pos = _decode_snum(key, pos)
        if length < 0:
            extents.append(FULL)
            continue
        if start < 0 or start + length > _INT64_MAX:
            raise DataLossError(f"extent {d} ({start}, {length}) is invalid")
        extents.append((start, length))
    if pos != len(key):
        raise DataLossError(f"{len(key) - pos} trailing bytes")
    return raw_name.decode("utf-8", "surrogateescape"), extents


# ---------------------------------------------------------------------------
# Text forms

# TensorFlow's safe_strto64: optional ASCII whitespace, sign, decimal digits.
_INT_RE = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)[ \t\n\v\f\r]*")


def _parse_int64(text: str) -> Optional[int]:
    match = _INT_RE.fullmatch(text)
    if match is None:
        return None
    value = int(match.group(1))
    return value if _INT64_MIN <= value <= _INT64_MAX else None


def parse_slice_spec(spec: str, rank: Optional[int] = None) -> List[Extent]:
    """Parses a TensorSlice spec such as ``"0,3:-"`` into ``[(0, 3), (0, -1)]``.

    ``-`` is a whole dimension, ``(0, -1)``. An empty spec is rank 0. When
    `rank` is given the spec must have exactly that many dimensions.

    Raises:
        InvalidArgumentError: malformed (not ``start,length`` or ``-``; a
            negative start; a length <= 0; a number beyond int64), or the
            wrong rank. The message quotes the spec.
    """
    if not isinstance(spec, str):
        raise InvalidArgumentError(f"slice spec must be a str, not {type(spec).__name__}")
    extents: List[Extent] = []
    for item in spec.split(":"):
        if not item:
            continue  # TensorFlow skips empty items
        if item == "-":
            extents.append(FULL)
            continue
        numbers = [p for p in item.split(",") if p]
        values = [_parse_int64(p) for p in numbers]
        start, length = values if len(values) == 2 else (None, None)
        if start is None or length is None:
            raise InvalidArgumentError(f"bad slice spec {spec!r}: expected 'start,length' or '-', got {item!r}")
        if start < 0 or length <= 0:
            raise InvalidArgumentError(
                f"bad slice spec {spec!r}: start must be >= 0 and length > 0, got start {start}, length {length}"
            )
        extents.append((start, length))
    if rank is not None and len(extents) != rank:
        raise InvalidArgumentError(f"slice spec {spec!r} has {len(extents)} dimensions, expected {rank}")
    return extents


def format_slice_spec(extents: Sequence[Tuple[int, int]]) -> str:
    """Formats extents as a TensorSlice spec: ``[(0, 3), (0, -1)]`` -> ``"0,3:-"``.

    Meant for messages too, so it never validates: any ``(start, length)``
    prints as ``start,length`` except ``(0, -1)``, which prints as ``-``.
    Only valid extents (lengths > 0 or full) parse back.
    """
    return ":".join("-" if (s, n) == FULL else f"{s},{n}" for s, n in extents)


def parse_shape_and_slice(text: str) -> Tuple[List[int], List[Extent]]:
    """Parses SaveV2's ``"5 4 0,3:-"`` into (full shape, extents): ``([5, 4], [(0, 3), (0, -1)])``.

    Dimensions are separated by single spaces (as in TensorFlow, two spaces
    make an empty, invalid dimension). The slice must have the shape's rank
    and lie inside it.

    An empty string is rejected: for SaveV2 it means "not partitioned, the
    whole tensor", which has no shape to return; callers test for it first.

    Raises:
        InvalidArgumentError: empty, fewer than two fields, a non-numeric or
            negative dimension, a malformed slice, a rank mismatch, or a
            slice outside the shape. The message quotes `text`.
    """
    if not isinstance(text, str):
        raise InvalidArgumentError(f"shape_and_slice must be a str, not {type(text).__name__}")
    if not text:
        raise InvalidArgumentError("empty shape_and_slice: '' means the whole tensor and carries no shape")
    fields = text.split(" ")
    if len(fields) < 2:
        raise InvalidArgumentError(f"bad shape_and_slice {text!r}: need the dimensions followed by a slice spec")
    try:
        extents = parse_slice_spec(fields[-1])
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"bad shape_and_slice {text!r}: {e}") from None
    shape = []
    for field in fields[:-1]:
        dim = _parse_int64(field)
        if dim is None or dim < 0:
            raise InvalidArgumentError(f"bad shape_and_slice {text!r}: bad dimension {field!r}")
        shape.append(dim)
    try:
        _resolve(shape, extents)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"bad shape_and_slice {text!r}: {e}") from None
    return shape, extents


def format_shape_and_slice(full_shape: Sequence[int], extents: Sequence[Tuple[int, int]]) -> str:
    """The SaveV2 ``shape_and_slices`` string, e.g. ``([5, 4], [(0, 3), FULL])`` -> ``"5 4 0,3:-"``.

    Raises:
        InvalidArgumentError: rank 0 (not expressible), or extents that do
            not fit `full_shape` or have a zero length.
    """
    shape = _as_shape(full_shape)
    checked = _as_extents(extents)
    _resolve(shape, checked)
    if not shape:
        raise InvalidArgumentError("a rank-0 tensor cannot be sliced")
    if any(n == 0 for _, n in checked):
        raise InvalidArgumentError(
            f"slice {format_slice_spec(checked)!r} has a zero length, which the text form cannot hold"
        )
    return " ".join(str(d) for d in shape) + " " + format_slice_spec(checked)


# ---------------------------------------------------------------------------
# Geometry


def _as_shape(full_shape: Sequence[int]) -> List[int]:
    shape = [_as_int(d, "dimension") for d in full_shape]
    if any(d < 0 for d in shape):
        raise InvalidArgumentError(f"shape {shape} has a negative dimension")
    return shape


def _resolve(full_shape: Sequence[int], extents: Sequence[Tuple[int, int]]) -> List[Extent]:
    """``(start, length)`` per dimension (full ones filled in), checked against a shape."""
    shape = _as_shape(full_shape)
    checked = _as_extents(extents)
    if len(checked) != len(shape):
        raise InvalidArgumentError(
            f"slice {format_slice_spec(checked)!r} has rank {len(checked)}, shape {shape} has rank {len(shape)}"
        )
    out = []
    for d, ((start, length), dim) in enumerate(zip(checked, shape)):
        if length == -1:
            out.append((0, dim))
        elif start + length > dim:
            raise InvalidArgumentError(f"slice {format_slice_spec(checked)!r} exceeds shape {shape} in dimension {d}")
        else:
            out.append((start, length))
    return out


def slice_shape(full_shape: Sequence[int], extents: Sequence[Tuple[int, int]]) -> List[int]:
    """The shape of slice `extents` of a `full_shape` tensor.

    Example: ``slice_shape([5, 4], [(1, 3), FULL])`` is ``[3, 4]``.

    Raises:
        InvalidArgumentError: rank mismatch, or the slice exceeds the shape.
    """
    return [length for _, length in _resolve(full_shape, extents)]


def slice_to_index(full_shape: Sequence[int], extents: Sequence[Tuple[int, int]]) -> Tuple[slice, ...]:
    """A numpy index selecting slice `extents`: ``full[slice_to_index(full.shape, extents)]``.

    Raises:
        InvalidArgumentError: rank mismatch, or the slice exceeds the shape.
    """
    return tuple(slice(start, start + length) for start, length in _resolve(full_shape, extents))


def is_full_slice(full_shape: Sequence[int], extents: Sequence[Tuple[int, int]]) -> bool:
    """Whether `extents` cover the whole tensor (every extent full or ``(0, dim)``).

    Raises:
        InvalidArgumentError: rank mismatch, or the slice exceeds the shape.
    """
    shape = _as_shape(full_shape)
    return _resolve(shape, extents) == [(0, d) for d in shape]


def intersect(
    a: Sequence[Tuple[int, int]], b: Sequence[Tuple[int, int]], full_shape: Sequence[int]
) -> Optional[List[Extent]]:
    """The overlap of slices `a` and `b` of a `full_shape` tensor; None if it holds no element.

    A dimension full in both stays ``(0, -1)``; others are explicit
    ``(start, length)``. A dimension of size 0 means no element, so None.

    Raises:
        InvalidArgumentError: either slice has the wrong rank or exceeds the shape.
    """
    a, b, shape = _as_extents(a), _as_extents(b), _as_shape(full_shape)
    out: List[Extent] = []
    for ea, eb, (sa, na), (sb, nb) in zip(a, b, _resolve(shape, a), _resolve(shape, b)):
        start, end = max(sa, sb), min(sa + na, sb + nb)
        if end <= start:
            return None
        out.append(FULL if ea == FULL and eb == FULL else (start, end - start))
    return out
