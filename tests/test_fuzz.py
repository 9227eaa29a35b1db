"""Fuzzing the index parser past its checksums.

``tests/test_properties.py`` flips random bytes of an index; almost all of
those die at the block CRC. Here the mutations are structure-aware and every
block trailer CRC is recomputed afterwards (``fuzz/table_codec.py``, TF's mask
of CRC32C), so the damage reaches what lies behind the CRC check: the table's
block handles, entry varints and restart arrays, the ``BundleEntryProto`` /
``BundleHeaderProto`` / ``TensorShapeProto`` / ``TensorSliceProto`` decoders,
entry validation, bounds checks and allocation. The only acceptable outcomes
of opening and reading a mutated checkpoint are success or a
:class:`fastckpt.FastCkptError` subclass: never another exception, a crash,
a hang or a huge allocation.

A bounded run of the reliability campaign (``fuzz/campaign.py``) follows:
damaged indexes and damaged data files of fastckpt- and TensorFlow-written
bases, judged by an oracle (right values or a FastCkptError; what verify
accepts loads; the readers agree). The last test runs the coverage-guided
atheris harness ``fuzz/fuzz_index.py`` for a bounded number of inputs when
atheris is installed (see ``fuzz/README.md`` for long runs).
"""

from __future__ import annotations

import contextlib
import faulthandler
import json
import os
import platform
import struct
import subprocess
import sys
import textwrap
from typing import List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastckpt
from fastckpt.format import dtypes
from fastckpt.proto import tensor_bundle_pb2

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "fuzz"))
from checkpoint_builders import write_reference  # noqa: E402
from table_codec import Table, block_entries, build_block, encode_fields, get_varint, parse_fields, put_varint  # noqa: E402

EXAMPLES = int(os.environ.get("FASTCKPT_FUZZ_EXAMPLES", "250"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=5000,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

# ---------------------------------------------------------------------------------
# A tiny LevelDB-table / protobuf-wire codec (what the index file is made of).

INTERESTING = [
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    15,
    16,
    0x7F,
    0x80,
    0xFF,
    0x3FFF,
    0x4000,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**40,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
]


# ---------------------------------------------------------------------------------
# The reference checkpoint and the "open and read everything" exercise.


class Outcome:
    def __init__(self) -> None:
        self.errors: List[BaseException] = []
        self.ok_calls = 0


def exercise(prefix: str) -> Outcome:
    """Everything a user can do with a checkpoint. Only FastCkptError may escape (and is recorded)."""
    out = Outcome()

    def attempt(fn):
        try:
            result = fn()
            out.ok_calls += 1
            return result
        except fastckpt.FastCkptError as e:
            out.errors.append(e)
            return None

    def read_each():
        with fastckpt.load_checkpoint(prefix) as reader:
            reader.get_variable_to_shape_map()
            reader.get_variable_to_dtype_map()
            reader.debug_string()
            for name in reader.keys():
                value = attempt(lambda: reader.get_tensor(name))
                shape = reader.get_variable_to_shape_map()[name]
                if value is not None and shape and shape[0] > 0:
                    spec = ":".join(["0,1"] + ["-"] * (len(shape) - 1))
                    attempt(lambda: reader.get_slice(name, spec))

    attempt(read_each)
    attempt(lambda: fastckpt.load(prefix))
    attempt(lambda: fastckpt.list_variables(prefix))
    if hasattr(fastckpt, "verify"):
        attempt(lambda: fastckpt.verify(prefix))
    return out


@contextlib.contextmanager
def hang_guard(seconds: float = 60.0):
    """A hang inside native code cannot be interrupted: dump every stack and exit instead."""
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


class _Reference(dict):
    """The reference checkpoint's facts (a dict with a short repr for Hypothesis reports)."""

    def __repr__(self) -> str:
        return f"<reference checkpoint {self['prefix']!r}>"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz_ref")
    prefix = str(d / "ref")
    values = write_reference(prefix)
    with open(prefix + ".index", "rb") as f:
        original = f.read()
    work = d / "work"
    work.mkdir()
    target = str(work / "ref")
    for name in os.listdir(d):
        if ".data-" in name:
            os.symlink(d / name, work / name)
    return _Reference(
        prefix=prefix, values=values, index=original, target=target, entries=Table.parse(original).entries()
    )


def _load_with(reference, index: bytes) -> Outcome:
    with open(reference["target"] + ".index", "wb") as f:
        f.write(index)
    with hang_guard():
        return exercise(reference["target"])


def _assert_same_values(loaded: dict, values: dict) -> None:
    assert sorted(loaded) == sorted(values)
    for name, v in values.items():
        assert loaded[name].shape == v.shape and loaded[name].tolist() == v.tolist(), name


def test_codec_rebuilds_a_valid_index(reference):
    """The helper is faithful: a re-blocked table with fresh CRCs loads identically."""
    entries = reference["entries"]
    assert entries[0][0] == b"" and len(entries) == len(reference["values"]) + 3  # header + 2 slices
    assert Table.parse(reference["index"]).serialize() == reference["index"]  # byte-exact
    for per_block, restart in ((1, 1), (3, 2), (7, 16), (1000, 3)):
        index = Table.from_entries(entries, per_block, restart).serialize()
        with open(reference["target"] + ".index", "wb") as f:
            f.write(index)
        _assert_same_values(fastckpt.load(reference["target"]), reference["values"])


# ---------------------------------------------------------------------------------
# Targeted mutations: each must reach its parser (proving the CRC fix-up works) and
# fail with the exact error that parser gives.


def _entry_index(entries, key: bytes) -> int:
    return next(i for i, (k, _) in enumerate(entries) if k == key)


def _with_entry(entries, key: bytes, new_value: bytes):
    out = list(entries)
    i = _entry_index(out, key)
    out[i] = (key, new_value)
    return out


def _proto(key_entries, key: bytes) -> tensor_bundle_pb2.BundleEntryProto:
    return tensor_bundle_pb2.BundleEntryProto.FromString(key_entries[_entry_index(key_entries, key)][1])


def _first_block_with_positions(reference):
    table = Table.from_entries(reference["entries"], per_block=4, restart_interval=2)
    return table, block_entries(table.data_blocks[1], with_positions=True)[1]


def _targeted_cases(reference):
    entries = reference["entries"]
    cases = []

    def entry_case(name, key, mutate, error, match):
        e = _proto(entries, key)
        mutate(e)
        cases.append(
            (name, Table.from_entries(_with_entry(entries, key, e.SerializeToString())).serialize(), error, match)
        )

    def raw_entry_case(name, key, raw, error, match):
        cases.append((name, Table.from_entries(_with_entry(entries, key, raw)).serialize(), error, match))

    def set_dims(e, dims):
        del e.shape.dim[:]
        for d in dims:
            e.shape.dim.add().size = d

    w = b"layer_03/w"
    entry_case(
        "size/shape mismatch",
        w,
        lambda e: setattr(e, "size", e.size + 4),
        fastckpt.DataLossError,
        "does not match its shape and dtype",
    )
    entry_case(
        "shard out of range", w, lambda e: setattr(e, "shard_id", 5), fastckpt.DataLossError, "names shard 5 of 2"
    )
    entry_case("65 dimensions", w, lambda e: set_dims(e, [1] * 65), fastckpt.DataLossError, "more than 64 dimensions")
    entry_case(
        "unknown rank", w, lambda e: setattr(e.shape, "unknown_rank", True), fastckpt.DataLossError, "unknown rank"
    )
    entry_case("impossible shape", w, lambda e: set_dims(e, [2**40, 2**40]), fastckpt.DataLossError, "impossible shape")
    entry_case(
        "slice outside shape",
        b"part",
        lambda e: setattr(e.slices[0].extent[0], "length", 9),
        fastckpt.DataLossError,
        "slice outside its shape",
    )
    entry_case(
        "slice rank", b"part", lambda e: e.slices[0].extent.add(), fastckpt.DataLossError, "slice whose rank differs"
    )
    raw_entry_case(
        "negative dim",
        w,
        encode_fields([(1, 0, 1), (2, 2, encode_fields([(2, 2, encode_fields([(1, 0, 2**64 - 1)]))]))]),
        fastckpt.DataLossError,
        "negative dimension",
    )
    raw_entry_case(
        "truncated proto",
        w,
        _proto(entries, w).SerializeToString()[:-2],
        fastckpt.DataLossError,
        "malformed BundleEntryProto",
    )
    raw_entry_case("group wire type", w, b"\x0b\x0c", fastckpt.DataLossError, "malformed BundleEntryProto")
    raw_entry_case("field number 0", w, b"\x00\x01", fastckpt.DataLossError, "malformed BundleEntryProto")
    raw_entry_case("header num_shards 0", b"", encode_fields([(3, 2, b"")]), fastckpt.DataLossError, "num_shards=0")
    raw_entry_case(
        "header min_consumer",
        b"",
        encode_fields([(1, 0, 2), (3, 2, encode_fields([(1, 0, 1), (2, 0, 2)]))]),
        fastckpt.DataLossError,
        "which this reader cannot read",
    )
    raw_entry_case(
        "header bad consumer",
        b"",
        encode_fields([(1, 0, 2), (3, 2, encode_fields([(1, 0, 1), (3, 2, put_varint(1))]))]),
        fastckpt.DataLossError,
        "which this reader cannot read",
    )
    raw_entry_case(
        "big endian",
        b"",
        encode_fields([(1, 0, 2), (2, 0, 1), (3, 2, encode_fields([(1, 0, 1)]))]),
        fastckpt.UnimplementedError,
        "big-endian",
    )

    swapped = list(entries)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    cases.append(
        ("unsorted keys", Table.from_entries(swapped).serialize(), fastckpt.DataLossError, "keys are not sorted")
    )
    cases.append(
        (
            "duplicate key",
            Table.from_entries(entries[:5] + entries[4:]).serialize(),
            fastckpt.DataLossError,
            "keys are not sorted",
        )
    )
    cases.append(("no header", Table.from_entries(entries[1:]).serialize(), fastckpt.DataLossError, "no header entry"))

    table, positions = _first_block_with_positions(reference)

    def block_case(name, mutate, error, match):
        t = Table(list(table.data_blocks), table.index_keys, table.meta)
        t.data_blocks[1] = mutate(bytearray(t.data_blocks[1]))
        cases.append((name, t.serialize(), error, match))

    def set_varint(pos, value):
        def mutate(b):
            _, end = get_varint(bytes(b), pos)
            return bytes(b[:pos]) + put_varint(value) + bytes(b[end:])

        return mutate

    s, ns, vl = positions[1]  # a non-restart entry: its key may share a prefix with the previous
    block_case("shared too long", set_varint(s, 100), fastckpt.DataLossError, "shares more bytes")
    block_case("key length past block", set_varint(ns, 2**31), fastckpt.DataLossError, "runs past the end")
    block_case("value length past block", set_varint(vl, 5000), fastckpt.DataLossError, "runs past the end")
    block_case("value length 2^32", set_varint(vl, 2**32), fastckpt.DataLossError, "truncated block entry")
    restarts = 4 * 2 + 4  # 4 entries with restart interval 2: two restart offsets and their count
    block_case(
        "truncated entry varint",
        lambda b: bytes(b[: positions[-1][0]]) + b"\xff" * 3 + bytes(b[-restarts:]),
        fastckpt.DataLossError,
        "truncated block entry",
    )
    block_case(
        "zero restarts", lambda b: bytes(b[:-4]) + struct.pack("<I", 0), fastckpt.DataLossError, "bad restart count"
    )
    block_case(
        "too many restarts",
        lambda b: bytes(b[:-4]) + struct.pack("<I", 2**30),
        fastckpt.DataLossError,
        "bad restart count",
    )
    block_case("tiny block", lambda b: b"\x01\x00", fastckpt.DataLossError, "block too small")

    cases.append(
        (
            "handle past end",
            table.serialize(handle_override=lambda i, h: (h[0], 10**9) if i == 2 else h),
            fastckpt.DataLossError,
            "points past the end",
        )
    )
    cases.append(
        (
            "handle 2^64-1",
            table.serialize(handle_override=lambda i, h: (2**64 - 1, 2**64 - 1) if i == 0 else h),
            fastckpt.DataLossError,
            "points past the end",
        )
    )
    cases.append(
        (
            "handle into a block",
            table.serialize(handle_override=lambda i, h: (h[0] + 1, h[1] - 1) if i == 1 else h),
            fastckpt.DataLossError,
            "block checksum mismatch",
        )
    )
    cases.append(
        (
            "blocks out of order",
            table.serialize(handle_override=lambda i, h, hs=table.layout()[1]: hs[{1: 2, 2: 1}.get(i, i)]),  # noqa: B008
            fastckpt.DataLossError,
            "keys are not sorted",
        )
    )
    cases.append(
        ("compressed block", table.serialize(block_types={0: 1}), fastckpt.UnimplementedError, "compressed blocks")
    )
    cases.append(
        ("bad block type", table.serialize(block_types={0: 200}), fastckpt.DataLossError, "bad block type 200")
    )
    cases.append(
        (
            "bad index handle",
            table.serialize(index_mutator=lambda ix: build_block([(b"k", b"\xff\xff")], 1)),
            fastckpt.DataLossError,
            "bad block handle",
        )
    )
    cases.append(
        (
            "bad footer",
            table.serialize(footer_mutator=lambda f: b"\xff" * 40 + f[40:]),
            fastckpt.DataLossError,
            "bad footer",
        )
    )
    cases.append(
        (
            "bad magic",
            table.serialize(footer_mutator=lambda f: f[:-1] + b"\x00"),
            fastckpt.DataLossError,
            "bad table magic",
        )
    )
    return cases


def test_targeted_mutations_reach_their_parsers(reference):
    failures = []
    for name, index, error, match in _targeted_cases(reference):
        with open(reference["target"] + ".index", "wb") as f:
            f.write(index)
        try:
            with hang_guard():
                fastckpt.load(reference["target"])
        except error as e:
            if match not in str(e):
                failures.append(f"{name}: {type(e).__name__} without {match!r}: {e}")
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(f"{name}: expected {error.__name__}, got {type(e).__name__}: {e}")
        else:
            failures.append(f"{name}: loaded without error")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------------------
# Hypothesis: random structure-aware mutations; only success or FastCkptError.


def _ints():
    return st.one_of(st.sampled_from(INTERESTING), st.integers(0, 2**64 - 1), st.integers(0, 300))


def _mutate_message(data, buf: bytes, depth: int = 0) -> bytes:
    """Random field-level edits of a serialized message (recursing into sub-messages)."""
    try:
        fields = parse_fields(buf)
    except ValueError:
        fields = None
    if fields is None or data.draw(st.integers(0, 9), label="raw") == 0:
        b = bytearray(buf)
        op = data.draw(st.sampled_from(["truncate", "flip", "append"]))
        if op == "truncate" or not b:
            return bytes(b[: data.draw(st.integers(0, len(b)))])
        if op == "flip":
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << data.draw(st.integers(0, 7))
            return bytes(b)
        return bytes(b) + data.draw(st.binary(min_size=1, max_size=6))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["set", "delete", "duplicate", "add", "wiretype", "nested", "consistent_dims"]))
        if op == "add" or not fields:
            field = data.draw(st.one_of(st.integers(1, 8), st.sampled_from([15, 16, 2**29 - 1])))
            wt = data.draw(st.sampled_from([0, 1, 2, 5]))
            value = data.draw(_ints()) if wt != 2 else data.draw(st.binary(max_size=12))
            fields.insert(data.draw(st.integers(0, len(fields))), (field, wt, value))
            continue
        i = data.draw(st.integers(0, len(fields) - 1))
        field, wt, value = fields[i]
        if op == "set":
            fields[i] = (field, wt, data.draw(_ints()) if wt != 2 else data.draw(st.binary(max_size=16)))
        elif op == "delete":
            del fields[i]
        elif op == "duplicate":
            fields.insert(i, fields[i])
        elif op == "wiretype":
            new_wt = data.draw(st.sampled_from([0, 1, 2, 5]))
            value = (
                (value if isinstance(value, int) else len(value))
                if new_wt != 2
                else (value if isinstance(value, bytes) else put_varint(value))
            )
            fields[i] = (field, new_wt, value)
        elif op == "nested" and wt == 2 and depth < 3:
            fields[i] = (field, wt, _mutate_message(data, value, depth + 1))
        elif op == "consistent_dims" and field == 2 and wt == 2:
            dims = data.draw(st.lists(_ints(), max_size=5))
            fields[i] = (2, 2, encode_fields([(2, 2, encode_fields([(1, 0, d)])) for d in dims]))
    return encode_fields(fields)


def _make_size_consistent(value: bytes) -> bytes:
    """Sets `size` to what dtype x shape implies, so the entry passes validation."""
    try:
        e = tensor_bundle_pb2.BundleEntryProto.FromString(value)
        elem = dtypes.element_size(e.dtype) if e.dtype != dtypes.DT_STRING else None
    except Exception:  # noqa: BLE001 - unparseable or unknown dtype: leave as is
        return value
    if elem is None:
        return value
    n = 1
    for d in e.shape.dim:
        n *= max(d.size, 0)
    if n * elem >= 2**63:
        return value
    e.size = n * elem
    return e.SerializeToString()


@SETTINGS
@given(data=st.data())
def test_structured_index_mutations(reference, data):
    entries = list(reference["entries"])
    per_block = data.draw(st.sampled_from([1, 3, 4, 1000]), label="per_block")
    restart = data.draw(st.sampled_from([1, 2, 16]), label="restart_interval")
    level = data.draw(
        st.sampled_from(["entry", "entry", "entry", "keys", "block", "index", "handles", "footer"]), label="level"
    )
    table = Table.from_entries(entries, per_block, restart)
    index: bytes
    if level == "entry":
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(0, len(entries) - 1), label="entry")
            key, value = entries[i]
            value = _mutate_message(data, value)
            if data.draw(st.booleans(), label="size consistent"):
                value = _make_size_consistent(value)
            entries[i] = (key, value)
        index = Table.from_entries(entries, per_block, restart).serialize()
    elif level == "keys":
        op = data.draw(st.sampled_from(["swap", "duplicate", "delete", "edit", "insert"]))
        i = data.draw(st.integers(0, len(entries) - 1))
        j = data.draw(st.integers(0, len(entries) - 1))
        if op == "swap":
            entries[i], entries[j] = entries[j], entries[i]
        elif op == "duplicate":
            entries.insert(i, entries[i])
        elif op == "delete":
            del entries[i]
        elif op == "edit":
            entries[i] = (data.draw(st.binary(max_size=12)), entries[i][1])
        else:
            entries.insert(i, (data.draw(st.binary(max_size=12)), entries[j][1]))
        index = Table.from_entries(entries, per_block, restart).serialize()
    elif level == "block":
        b = data.draw(st.integers(0, len(table.data_blocks) - 1), label="block")
        block = bytearray(table.data_blocks[b])
        _, positions = block_entries(bytes(block), with_positions=True)
        for _ in range(data.draw(st.integers(1, 3))):
            op = data.draw(st.sampled_from(["varint", "restart", "num_restarts", "flip", "insert", "delete"]))
            if op == "varint" and positions:
                pos = data.draw(st.sampled_from([p for trio in positions for p in trio]))
                _, end = get_varint(bytes(block), pos)
                block[pos:end] = put_varint(data.draw(_ints()))
                positions = []  # offsets are stale now
            elif op in ("restart", "num_restarts") and len(block) >= 4:
                n = struct.unpack_from("<I", block, len(block) - 4)[0]
                at = (
                    len(block) - 4
                    if op == "num_restarts"
                    else max(0, len(block) - 4 - 4 * data.draw(st.integers(1, max(1, min(n, 64)))))
                )
                v = data.draw(
                    st.one_of(
                        st.sampled_from([0, 1, n + 1, len(block), len(block) - 4, 2**32 - 1]), st.integers(0, 2**32 - 1)
                    )
                )
                block[at : at + 4] = struct.pack("<I", v)
            elif op == "flip" and block:
                i = data.draw(st.integers(0, len(block) - 1))
                block[i] ^= 1 << data.draw(st.integers(0, 7))
            elif op == "insert":
                i = data.draw(st.integers(0, len(block)))
                block[i:i] = data.draw(st.binary(min_size=1, max_size=8))
            elif block:
                i = data.draw(st.integers(0, len(block) - 1))
                del block[i : i + data.draw(st.integers(1, 8))]
        table.data_blocks[b] = bytes(block)
        index = table.serialize()
    elif level == "index":

        def mutate_index(ix: bytes) -> bytes:
            b = bytearray(ix)
            for _ in range(data.draw(st.integers(1, 3))):
                i = data.draw(st.integers(0, len(b) - 1))
                b[i] = data.draw(st.integers(0, 255))
            return bytes(b)

        index = table.serialize(index_mutator=mutate_index)
    elif level == "handles":
        _, handles, meta = table.layout()
        targets = handles + [meta]

        def override(i, h):
            if data.draw(st.booleans(), label=f"mutate handle {i}"):
                return data.draw(
                    st.one_of(
                        st.sampled_from(targets),
                        st.tuples(_ints(), _ints()),
                        st.tuples(st.just(h[0]), _ints()),
                        st.tuples(_ints(), st.just(h[1])),
                    )
                )
            return h

        index = table.serialize(handle_override=override)
    else:

        def mutate_footer(f: bytes) -> bytes:
            b = bytearray(f)
            i = data.draw(st.integers(0, 39))
            b[i] = data.draw(st.integers(0, 255))
            return bytes(b)

        index = table.serialize(footer_mutator=mutate_footer)
    # Only FastCkptError may escape exercise(); anything else fails the test here.
    _load_with(reference, index)


# ---------------------------------------------------------------------------------
# Lying offsets and sizes; huge shapes with consistent sizes.


def _lying_cases(reference):
    entries = reference["entries"]
    data0 = reference["prefix"] + ".data-00000-of-00002"
    data1 = reference["prefix"] + ".data-00001-of-00002"
    sizes = {0: os.path.getsize(data0), 1: os.path.getsize(data1)}
    cases = []
    for key in (b"layer_05/w", b"strings", b"matrix"):
        e = _proto(entries, key)
        fsize = sizes[e.shard_id]
        for label, offset, size in [
            ("offset = file size", fsize, e.size),
            ("offset one short of fitting", fsize - e.size + 1, e.size),
            ("offset 2^63-1", 2**63 - 1, e.size),
            ("offset 2^40", 2**40, e.size),
        ]:
            m = tensor_bundle_pb2.BundleEntryProto.FromString(e.SerializeToString())
            m.offset, m.size = offset, size
            cases.append((f"{key.decode()}: {label}", key, _with_entry(entries, key, m.SerializeToString())))
        m = tensor_bundle_pb2.BundleEntryProto.FromString(e.SerializeToString())
        m.shard_id = 1 - e.shard_id  # the other, smaller or larger, shard
        m.offset = sizes[m.shard_id] - 1
        cases.append(
            (f"{key.decode()}: other shard, past its end", key, _with_entry(entries, key, m.SerializeToString()))
        )
    # A size that fits the shape and dtype but not the file.
    m = _proto(entries, b"layer_05/w")
    del m.shape.dim[:]
    m.shape.dim.add().size = 2**20
    m.size = 4 * 2**20
    cases.append(
        (
            "layer_05/w: 4 MiB tensor in a small file",
            b"layer_05/w",
            _with_entry(entries, b"layer_05/w", m.SerializeToString()),
        )
    )
    return cases


def test_lying_offsets_and_sizes_raise_data_loss(reference):
    problems = []
    for label, key, entries in _lying_cases(reference):
        with open(reference["target"] + ".index", "wb") as f:
            f.write(Table.from_entries(entries).serialize())
        name = key.decode()
        with hang_guard():
            with fastckpt.load_checkpoint(reference["target"]) as reader:  # the index itself is sound
                for other in reader.keys():
                    if other != name:
                        assert reader.get_tensor(other).tolist() == reference["values"][other].tolist()
                calls = {"get_tensor": lambda: reader.get_tensor(name)}
                calls["load"] = lambda: fastckpt.load(reference["target"])
                if hasattr(fastckpt, "verify"):
                    calls["verify"] = lambda: fastckpt.verify(reference["target"])
                for what, call in calls.items():
                    try:
                        call()
                    except fastckpt.DataLossError as e:
                        if f"'{name}'" not in str(e):
                            problems.append(f"{label}: {what}: DataLossError does not name the tensor: {e}")
                    except Exception as e:  # noqa: BLE001 - reported below
                        problems.append(f"{label}: {what}: {type(e).__name__}: {e}")
                    else:
                        problems.append(f"{label}: {what}: no error")
    assert not problems, "\n".join(problems)


HUGE_SHAPES = [
    # (key, dtype or None to keep, dims, what to call)
    ("layer_05/w", dtypes.DT_FLOAT, [2**40]),
    ("layer_05/w", dtypes.DT_UINT8, [2**34]),
    ("layer_05/w", dtypes.DT_INT64, [2**20, 2**20]),
    ("layer_05/w", dtypes.DT_UINT8, [2**31, 2**31]),
    ("layer_05/w", dtypes.DT_COMPLEX128, [2**58]),
    ("matrix", dtypes.DT_INT8, [2**40, 1, 1]),
    ("strings", dtypes.DT_STRING, [2**40]),
    ("strings", dtypes.DT_STRING, [2**62]),
    ("part", dtypes.DT_FLOAT, [2**40, 5]),
    ("layer_05/w", dtypes.DT_FLOAT, [0, 2**62]),
    ("layer_05/w", dtypes.DT_FLOAT, [2**62, 0]),
]

_HUGE_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    import fastckpt
    from test_fuzz import Table, _with_entry, _proto, tensor_bundle_pb2
    ref = json.loads(sys.argv[1])
    entries = [(bytes.fromhex(k), bytes.fromhex(v)) for k, v in ref["entries"]]
    def status(field):
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    fastckpt.load, fastckpt.load_variable, fastckpt.verify  # their modules load before the baseline
    base_rss, base_vm = status("VmRSS"), status("VmPeak")
    results = []
    for key, dtype, dims in ref["cases"]:
        key = key.encode()
        e = _proto(entries, key)
        e.dtype = dtype
        del e.shape.dim[:]
        n = 1
        for d in dims:
            e.shape.dim.add().size = d
            n *= d
        if dtype != 7 and not e.slices:
            e.size = n * {{1: 4, 4: 1, 9: 8, 6: 1, 18: 16}}[dtype]  # consistent with the shape
        if e.slices:
            e.size = 0
        with open(ref["target"] + ".index", "wb") as f:
            f.write(Table.from_entries(_with_entry(entries, key, e.SerializeToString())).serialize())
        outcome = {{}}
        calls = {{"load": lambda: fastckpt.load(ref["target"])}}
        calls["get_tensor"] = lambda: fastckpt.load_variable(ref["target"], key.decode())
        if hasattr(fastckpt, "verify"):
            calls["verify"] = lambda: fastckpt.verify(ref["target"])
        for what, call in calls.items():
            try:
                call()
                outcome[what] = "ok"
            except BaseException as ex:
                outcome[what] = type(ex).__name__ + ("/FastCkptError" if isinstance(ex, fastckpt.FastCkptError)
                                                     else "") + ": " + str(ex)[:200]
        results.append([key.decode(), dims, outcome])
    print(json.dumps({{"results": results, "rss_growth": status("VmHWM") - base_rss,
                      "vm_growth": status("VmPeak") - base_vm}}))
""")


def test_huge_shapes_raise_data_loss_without_allocating(reference):
    """Shapes of 2^40+ elements whose size field agrees (so validation passes) must
    fail with DataLossError before any allocation: neither RSS nor address space
    may grow by more than a little (run in a fresh process to measure)."""
    ref = {
        "target": reference["target"],
        "entries": [(k.hex(), v.hex()) for k, v in reference["entries"]],
        "cases": HUGE_SHAPES,
    }
    proc = subprocess.run(
        [sys.executable, "-c", _HUGE_SCRIPT.format(tests=os.path.dirname(__file__)), json.dumps(ref)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    problems = []
    for key, dims, outcome in report["results"]:
        for what, result in outcome.items():
            zero = 0 in dims
            ok = (
                result.startswith("DataLossError") or (zero and "/FastCkptError" in result) or (zero and result == "ok")
            )
            if not ok:
                problems.append(f"{key} dims={dims}: {what}: {result}")
    assert report["rss_growth"] < 256 * 2**20, f"peak RSS grew by {report['rss_growth'] / 2**20:.0f} MiB"
    assert report["vm_growth"] < 4 * 2**30, f"address space grew by {report['vm_growth'] / 2**30:.1f} GiB"
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------
# The reliability campaign, bounded (fuzz/campaign.py runs the large one).

import campaign  # noqa: E402  (fuzz/ is on sys.path)

# Inputs per base and kind: about a minute for the whole campaign on 2 cores.
CAMPAIGN_INDEXES = int(os.environ.get("FASTCKPT_CAMPAIGN_INDEXES", "1500"))
CAMPAIGN_CORRUPTIONS = int(os.environ.get("FASTCKPT_CAMPAIGN_CORRUPTIONS", "400"))
CAMPAIGN_BASES = ["fastckpt_2shards", "fastckpt_4shards_grid", "tf_saver"]


@pytest.fixture(scope="module")
def campaign_bases(tmp_path_factory):
    """The campaign's bases: two fastckpt checkpoints (2 and 4 shards, row and
    grid partitions, strings) and one written by TensorFlow's own
    ``tf.compat.v1.train.Saver`` (a partitioned variable in rows, one in
    columns, strings) in a child process; each is checked to load with the
    values its writer gave it and to verify."""
    workdir = str(tmp_path_factory.mktemp("campaign"))
    bases = {b.name: b for b in campaign.make_bases(workdir, tf=True)}
    assert sorted(bases) == sorted(CAMPAIGN_BASES)
    return workdir, bases


def _run_campaign(campaign_bases, base_name: str, kind: str, count: int):
    workdir, bases = campaign_bases
    base = bases[base_name]
    loads, verifies, findings = {}, {}, []
    for seed in range(count):
        with hang_guard(60):
            what, outcome = campaign.run_input(base, kind, seed, workdir)
        loads[outcome.load] = loads.get(outcome.load, 0) + 1
        verifies[outcome.verify] = verifies.get(outcome.verify, 0) + 1
        findings.extend(f"{kind} seed {seed} ({what}): {f}" for f in outcome.findings)
    return loads, verifies, findings


@pytest.mark.parametrize("base_name", CAMPAIGN_BASES)
def test_campaign_damaged_indexes(campaign_bases, base_name):
    loads, verifies, findings = _run_campaign(campaign_bases, base_name, "index", CAMPAIGN_INDEXES)
    assert not findings, "\n".join(findings[:30])
    # The mutations reach both outcomes: some indexes still load, most are refused.
    assert loads.get("ok", 0) >= CAMPAIGN_INDEXES // 20, loads
    assert loads.get("DataLossError", 0) >= CAMPAIGN_INDEXES // 3, loads
    assert verifies.get("ok", 0) <= loads.get("ok", 0), (verifies, loads)


@pytest.mark.parametrize("base_name", CAMPAIGN_BASES)
def test_campaign_damaged_data_files(campaign_bases, base_name):
    loads, verifies, findings = _run_campaign(campaign_bases, base_name, "data", CAMPAIGN_CORRUPTIONS)
    assert not findings, "\n".join(findings[:30])
    assert loads.get("DataLossError", 0) >= CAMPAIGN_CORRUPTIONS // 3, loads
    assert loads.get("CheckpointNotFoundError", 0) > 0, loads  # removed data files
    assert verifies == loads  # with the index intact, verify and load agree on every input


def test_campaign_oracle_catches_wrong_values(campaign_bases):
    """The oracle is not vacuous: values that differ from the base are findings."""
    _, bases = campaign_bases
    base = bases["fastckpt_2shards"]
    name = "layer_00/w"
    good = base.values[name]
    try:
        base.values[name] = good + 1
        outcome = campaign.judge(base, base.prefix, index_intact=True)
    finally:
        base.values[name] = good
    assert outcome.findings == [
        f"wrong-value: get_tensor of '{name}' differs from the base",
        f"wrong-value: load of '{name}' differs from the base",
    ]


# ---------------------------------------------------------------------------------
# The coverage-guided harness, bounded.


# atheris ships wheels for these platforms only; the test extra installs it there.
@pytest.mark.skipif(
    not (sys.platform == "linux" and platform.machine() == "x86_64" and sys.version_info < (3, 12)),
    reason="atheris has no wheel for this platform",
)
def test_atheris_harness_bounded_run(tmp_path):
    import atheris  # noqa: F401 - the harness's dependency, installed by the test extra

    runs = os.environ.get("FASTCKPT_ATHERIS_RUNS", "5000")
    cmd = [
        sys.executable,
        os.path.join(REPO, "fuzz", "fuzz_index.py"),
        f"-runs={runs}",
        "-max_total_time=20",
        "-timeout=20",
        "-rss_limit_mb=3072",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
        str(tmp_path / "corpus"),
    ]
    # preexec_fn forces fork() over vfork(): after a vfork the child's peak RSS, which
    # libFuzzer's -rss_limit_mb reads, would include this (pytest) process's peak.
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env={**os.environ, "FASTCKPT_FUZZ_WORKDIR": str(tmp_path / "work")},
        preexec_fn=os.getpid,
    )
    tail = (proc.stdout + proc.stderr)[-6000:]
    assert proc.returncode == 0, f"fuzzer found a problem (artifacts in {tmp_path}):\n{tail}"
    assert "Done" in tail or "stat::number_of_executed_units" in tail, tail
