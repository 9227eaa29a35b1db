"""The reliability campaign: damaged checkpoints against every reader, with an oracle.

Each input is a base checkpoint with one kind of damage:

* ``index``: a mutated ``PREFIX.index`` -- structure-aware edits of entries,
  slice lists, keys, blocks, block handles and the footer, rebuilt with
  fresh block CRCs so the damage reaches the parsers behind them, and plain
  bit flips with and without the CRCs recomputed;
* ``data``: a damaged data file -- bit flips, a truncation, a zero-filled
  range, appended bytes, or a missing file.

Bases: fastckpt checkpoints (two and four shards, partitioned tensors in rows
and in a 2-D grid, strings, every width of dtype) and, when TensorFlow is
installed, a ``tf.compat.v1.train.Saver`` checkpoint with a partitioned
variable and strings, written by TensorFlow itself in a child process.

For each input everything a user can do is done -- ``list_variables``,
``load_checkpoint`` (maps, ``debug_string``, ``get_tensor`` and a
``get_slice`` of every tensor), ``load`` and ``verify`` -- and judged:

* every call succeeds or raises a ``fastckpt.FastCkptError``; anything else
  is a finding (``exception``), as are a crash and a hang (these stop the
  worker process; the driver records the input and starts a new worker);
* every value read is right: equal to the base's value when the tensor's
  bytes and description are untouched, and for any other fixed-size tensor
  equal to the bytes its index entry points at (``wrong-value``);
* what ``verify`` accepts, ``load`` and every ``get_tensor``/``get_slice``
  read (``verify-accepted-unreadable``); ``load`` succeeds exactly when
  ``get_tensor`` reads every tensor (``readers-disagree``); with the index
  intact, ``verify`` reports exactly the tensors ``get_tensor`` refuses
  (``disagree``).

Usage::

    python fuzz/campaign.py --indexes 200000 --corruptions 20000 --jobs 2 \\
        --workdir /tmp/campaign [--seed 1] [--timeout 60] [--no-tf]

prints the figures (inputs, outcomes by class, findings, slowest input) and
writes them as JSON to ``WORKDIR/summary.json``; each finding's input is
kept under ``WORKDIR/findings/``. ``tests/test_fuzz.py`` runs a bounded
version of the same campaign in the test suite.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from table_codec import (  # noqa: E402
    Table,
    encode_fields,
    fix_crcs,
    parse_fields,
    put_varint,
)

import fastckpt  # noqa: E402
from fastckpt import _native  # noqa: E402
from fastckpt.format import dtypes  # noqa: E402

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
    2**59,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
]

# ---------------------------------------------------------------------------------
# Bases


@dataclass
class Base:
    """An intact checkpoint and what reading it must give."""

    name: str
    prefix: str
    values: Dict[str, np.ndarray] = field(default_factory=dict)
    index: bytes = b""
    entries: List[Tuple[bytes, bytes]] = field(default_factory=list)
    data_files: List[str] = field(default_factory=list)
    # raw key -> (dtype, shape, data file, offset, size) of every data entry
    layout: Dict[bytes, Tuple[int, Tuple[int, ...], str, int, int]] = field(default_factory=dict)


def _distinct(rng: np.random.Generator, dtype: Any, shape: Tuple[int, ...]) -> np.ndarray:
    """Values unlike any other tensor's, so that reading the wrong bytes cannot pass."""
    n = int(np.prod(shape, dtype=np.int64))
    raw = rng.integers(0, 256, size=n * np.dtype(dtype).itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape).copy()


def write_fastckpt_base(prefix: str, *, seed: int, num_shards: int, grid: bool) -> None:
    """A fastckpt checkpoint: many dtypes and shapes, strings, zero-size
    tensors, a row-partitioned tensor and (with `grid`) a 2-D grid of slices."""
    import ml_dtypes

    from fastckpt.writer import partitioned_items, prepare_items, write_items

    rng = np.random.default_rng(seed)
    values: Dict[str, Any] = {}
    kinds = [
        np.float32,
        np.int64,
        np.int8,
        np.float16,
        np.uint32,
        np.bool_,
        np.complex64,
        ml_dtypes.bfloat16,
    ]
    for i, dt in enumerate(kinds):
        shape = [(7,), (3, 4), (2, 2, 3), (11,), (5, 1), (9,), (2, 3), (6,)][i]
        values[f"layer_{i:02d}/w"] = _distinct(rng, np.dtype(dt), shape)
    values["scalar"] = _distinct(rng, np.float64, ())
    values["empty"] = np.zeros((0, 4), np.int32)
    values["empty_strings"] = np.empty((0,), dtype=object)
    values["strings"] = np.array([b"alpha", b"", b"gamma\x00", bytes(range(200, 256))], dtype=object)
    values["string_scalar"] = np.array(b"one", dtype=object)
    items, keep = prepare_items(values)
    rows = _distinct(rng, np.float32, (7, 5))
    part_items, part_keep = partitioned_items(
        "part/rows", rows.shape, [([(0, 3), (0, -1)], rows[0:3]), ([(3, 4), (0, -1)], rows[3:7])]
    )
    items += part_items
    keep += part_keep
    if grid:
        g = _distinct(rng, np.int16, (6, 8))
        parts = [([(r, 3), (c, n)], g[r : r + 3, c : c + n]) for r in (0, 3) for c, n in ((0, 2), (2, 3), (5, 3))]
        grid_items, grid_keep = partitioned_items("part/grid", g.shape, parts)
        items += grid_items
        keep += grid_keep
        s = np.array([b"x", b"yy", b"", b"zzz\xff"], dtype=object)
        str_items, str_keep = partitioned_items("part/strings", s.shape, [([(0, 1)], s[0:1]), ([(1, 3)], s[1:4])])
        items += str_items
        keep += str_keep
    write_items(items, prefix, num_shards=num_shards, threads=2, durable=False)


_TF_WRITER = textwrap.dedent("""
    import os, pickle, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    prefix, out = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(11)
    full = rng.standard_normal((9, 4)).astype(np.float32)
    cols = rng.integers(-2**40, 2**40, size=(3, 10)).astype(np.int64)
    def slice_init(value):
        def init(shape, dtype=None, partition_info=None):
            off = partition_info.var_offset if partition_info is not None else [0] * len(shape)
            return tf.constant(value[tuple(slice(o, o + s) for o, s in zip(off, shape))])
        return init
    graph = tf.Graph()
    with graph.as_default():
        values = {
            "dense/kernel": rng.standard_normal((5, 3)).astype(np.float32),
            "dense/bias": rng.standard_normal((3,)).astype(np.float64),
            "vocab": np.array([b"<pad>", b"a\\x00b", "\\u00fc".encode(), b""], dtype=object),
            "global_step": np.array(42, np.int64),
        }
        for name, value in values.items():
            dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
            tf.compat.v1.get_variable(name, initializer=tf.constant(value, dtype=dtype),
                                      use_resource=True)
        split = tf.compat.v1.fixed_size_partitioner
        tf.compat.v1.get_variable("emb/rows", shape=full.shape, dtype=tf.float32,
                                  initializer=slice_init(full), partitioner=split(3),
                                  use_resource=True)
        tf.compat.v1.get_variable("emb/cols", shape=cols.shape, dtype=tf.int64,
                                  initializer=slice_init(cols), partitioner=split(3, axis=1),
                                  use_resource=True)
        values["emb/rows"], values["emb/cols"] = full, cols
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)
    reader = tf.train.load_checkpoint(prefix)
    for name, value in values.items():
        got = reader.get_tensor(name)
        assert got.tolist() == value.tolist(), name
    with open(out, "wb") as f:
        pickle.dump(values, f)
""")


def write_tf_base(prefix: str) -> Dict[str, np.ndarray]:
    """A checkpoint written by TensorFlow's own Saver (partitioned variables in
    rows and in columns, strings), in a child process; returns the values
    TensorFlow wrote (and read back)."""
    import pickle

    out = prefix + ".values.pkl"
    proc = subprocess.run([sys.executable, "-c", _TF_WRITER, prefix, out], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"TensorFlow could not write the base checkpoint:\n{proc.stderr[-3000:]}")
    with open(out, "rb") as f:
        values = pickle.load(f)
    os.remove(out)
    return values


def load_base(name: str, prefix: str, expected: Optional[Dict[str, np.ndarray]] = None) -> Base:
    """The facts of an intact base; checks that it loads (with `expected`'s values) and verifies."""
    base = Base(name=name, prefix=prefix)
    with open(prefix + ".index", "rb") as f:
        base.index = f.read()
    base.entries = Table.parse(base.index).entries()
    base.values = fastckpt.load(prefix)
    fastckpt.verify(prefix)
    if expected is not None:
        assert sorted(expected) == sorted(base.values), (sorted(expected), sorted(base.values))
        for key, value in expected.items():
            assert same_value(base.values[key], np.asarray(value)), key
    reader = _native.Reader(prefix)
    try:
        n = reader.num_shards
        for key, dt, shape, shard, offset, size, _crc, slices in reader.entries():
            if slices is None:
                base.layout[key] = (
                    dt,
                    tuple(shape),
                    f"{prefix}.data-{shard:05d}-of-{n:05d}",
                    offset,
                    size,
                )
    finally:
        reader.close()
    base.data_files = sorted({v[2] for v in base.layout.values()})
    return base


def make_bases(workdir: str, *, tf: bool = True) -> List[Base]:
    """Writes (once) and loads every base under `workdir`/bases."""
    root = os.path.join(workdir, "bases")
    os.makedirs(root, exist_ok=True)
    specs = [
        ("fastckpt_2shards", dict(seed=1, num_shards=2, grid=False)),
        ("fastckpt_4shards_grid", dict(seed=2, num_shards=4, grid=True)),
    ]
    bases = []
    for name, kwargs in specs:
        prefix = os.path.join(root, name, "ckpt")
        if not os.path.exists(prefix + ".index"):
            os.makedirs(os.path.dirname(prefix), exist_ok=True)
            write_fastckpt_base(prefix, **kwargs)
        bases.append(load_base(name, prefix))
    if tf:
        prefix = os.path.join(root, "tf_saver", "model.ckpt")
        marker = prefix + ".values.json"
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        if not os.path.exists(marker):
            values = write_tf_base(prefix)
            with open(marker, "w") as f:
                json.dump(sorted(values), f)
            bases.append(load_base("tf_saver", prefix, values))
        else:
            bases.append(load_base("tf_saver", prefix))
    return bases


# ---------------------------------------------------------------------------------
# Mutations (all deterministic given the random.Random they draw from)


def _interesting(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.5:
        return rng.choice(INTERESTING)
    if r < 0.8:
        return rng.randrange(0, 300)
    return rng.randrange(0, 2**64)


def _mutate_message(rng: random.Random, buf: bytes, depth: int = 0) -> bytes:
    """Field-level edits of a serialized protobuf message (into sub-messages too)."""
    try:
        fields = parse_fields(buf)
    except ValueError:
        fields = None
    if fields is None or rng.random() < 0.1:
        b = bytearray(buf)
        op = rng.choice(["truncate", "flip", "append"])
        if op == "truncate" or not b:
            return bytes(b[: rng.randrange(0, len(b) + 1)])
        if op == "flip":
            b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            return bytes(b)
        return bytes(b) + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 7)))
    for _ in range(rng.randrange(1, 4)):
        op = rng.choice(["set", "delete", "duplicate", "add", "wiretype", "nested", "nested", "dims"])
        if op == "add" or not fields:
            wt = rng.choice([0, 1, 2, 5])
            value = _interesting(rng) if wt != 2 else bytes(rng.randrange(256) for _ in range(rng.randrange(13)))
            fields.insert(
                rng.randrange(len(fields) + 1),
                (rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 16]), wt, value),
            )
            continue
        i = rng.randrange(len(fields))
        f, wt, value = fields[i]
        if op == "set":
            fields[i] = (
                f,
                wt,
                _interesting(rng) if wt != 2 else bytes(rng.randrange(256) for _ in range(rng.randrange(17))),
            )
        elif op == "delete":
            del fields[i]
        elif op == "duplicate":
            fields.insert(i, fields[i])
        elif op == "wiretype":
            new = rng.choice([0, 1, 2, 5])
            if new == 2:
                value = value if isinstance(value, bytes) else put_varint(value)
            else:
                value = value if isinstance(value, int) else len(value)
            fields[i] = (f, new, value)
        elif op == "nested" and wt == 2 and depth < 3:
            fields[i] = (f, wt, _mutate_message(rng, value, depth + 1))
        elif op == "dims" and f == 2 and wt == 2:
            dims = [_interesting(rng) for _ in range(rng.randrange(6))]
            fields[i] = (2, 2, encode_fields([(2, 2, encode_fields([(1, 0, d)])) for d in dims]))
    return encode_fields(fields)


def _size_consistent(value: bytes) -> bytes:
    """Sets `size` to what dtype x shape implies, so the entry passes validation."""
    from fastckpt.proto import tensor_bundle_pb2

    try:
        e = tensor_bundle_pb2.BundleEntryProto.FromString(value)
        elem = dtypes.element_size(e.dtype)
    except Exception:  # noqa: BLE001 - unparseable, or no fixed size: leave it
        return value
    n = 1
    for d in e.shape.dim:
        n *= max(d.size, 0)
    if not elem or n * elem >= 2**63:
        return value
    e.size = n * elem
    return e.SerializeToString()


def _mutate_slices(rng: random.Random, value: bytes) -> bytes:
    """Edits a partitioned entry's slice list: the campaign's finding (a slice
    listed twice, another omitted), drops, swaps, and shifted extents."""
    from fastckpt.proto import tensor_bundle_pb2

    e = tensor_bundle_pb2.BundleEntryProto.FromString(value)
    n = len(e.slices)
    op = rng.choice(["twice", "drop", "swap", "extent", "extent", "add", "full"])
    if op == "twice" and n >= 2:
        i, j = rng.sample(range(n), 2)
        e.slices[j].CopyFrom(e.slices[i])
    elif op == "drop" and n >= 1:
        del e.slices[rng.randrange(n)]
    elif op == "swap" and n >= 2:
        i, j = rng.sample(range(n), 2)
        a, b = e.slices[i].SerializeToString(), e.slices[j].SerializeToString()
        e.slices[i].ParseFromString(b)
        e.slices[j].ParseFromString(a)
    elif op == "extent" and n >= 1:
        s = e.slices[rng.randrange(n)]
        if len(s.extent):
            x = s.extent[rng.randrange(len(s.extent))]
            which = rng.choice(["start", "length"])
            delta = rng.choice([-1, 1, 2, -2])
            if which == "start":
                x.start = max(0, x.start + delta)
            else:
                x.length = max(0, (x.length if x.HasField("length") else 0) + delta)
    elif op == "add" and n >= 1:
        e.slices.add().CopyFrom(e.slices[rng.randrange(n)])
    elif op == "full" and n >= 1:
        s = e.slices[rng.randrange(n)]
        for x in s.extent:
            x.Clear()
    return e.SerializeToString()


def mutate_index(rng: random.Random, base: Base) -> Tuple[str, bytes]:
    """One damaged index for `base`: (what was done, the bytes)."""
    entries = list(base.entries)
    per_block = rng.choice([1, 3, 4, 16, 1000])
    restart = rng.choice([1, 2, 16])
    mode = rng.choice(
        ["entry"] * 4 + ["slices"] * 2 + ["keys", "block", "flip_fixed", "flip_fixed", "flip_raw", "handles", "footer"]
    )
    table = Table.from_entries(entries, per_block, restart)
    if mode == "entry":
        for _ in range(rng.randrange(1, 3)):
            i = rng.randrange(len(entries))
            key, value = entries[i]
            value = _mutate_message(rng, value)
            if rng.random() < 0.5:
                value = _size_consistent(value)
            entries[i] = (key, value)
        return mode, Table.from_entries(entries, per_block, restart).serialize()
    if mode == "slices":
        partitioned = [i for i, (k, v) in enumerate(entries) if k and _has_slices(v)]
        if not partitioned:
            return mutate_index(rng, base)
        i = rng.choice(partitioned)
        entries[i] = (entries[i][0], _mutate_slices(rng, entries[i][1]))
        return mode, Table.from_entries(entries, per_block, restart).serialize()
    if mode == "keys":
        op = rng.choice(["swap", "duplicate", "delete", "flip", "insert"])
        i, j = rng.randrange(len(entries)), rng.randrange(len(entries))
        if op == "swap":
            entries[i], entries[j] = entries[j], entries[i]
        elif op == "duplicate":
            entries.insert(i, entries[i])
        elif op == "delete":
            del entries[i]
        elif op == "flip" and entries[i][0]:
            k = bytearray(entries[i][0])
            k[rng.randrange(len(k))] ^= 1 << rng.randrange(8)
            entries[i] = (bytes(k), entries[i][1])
            entries.sort(key=lambda kv: kv[0])  # keep the table sorted: reach the entry checks
        else:
            entries.insert(i, (bytes(rng.randrange(256) for _ in range(rng.randrange(13))), entries[j][1]))
        return f"{mode}/{op}", Table.from_entries(entries, per_block, restart).serialize()
    if mode == "block":
        b = rng.randrange(len(table.data_blocks))
        block = bytearray(table.data_blocks[b])
        for _ in range(rng.randrange(1, 4)):
            op = rng.choice(["flip", "insert", "delete", "restart"])
            if op == "flip" and block:
                block[rng.randrange(len(block))] ^= 1 << rng.randrange(8)
            elif op == "insert":
                i = rng.randrange(len(block) + 1)
                block[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
            elif op == "delete" and block:
                i = rng.randrange(len(block))
                del block[i : i + rng.randrange(1, 9)]
            elif op == "restart" and len(block) >= 4:
                at = len(block) - 4 * rng.randrange(1, 3)
                block[max(0, at) : max(0, at) + 4] = struct.pack("<I", _interesting(rng) & 0xFFFFFFFF)
        table.data_blocks[b] = bytes(block)
        return mode, table.serialize()
    if mode in ("flip_fixed", "flip_raw"):
        data = bytearray(table.serialize() if rng.random() < 0.5 else base.index)
        for _ in range(rng.choice([1, 1, 1, 2, 3])):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return mode, fix_crcs(bytes(data)) if mode == "flip_fixed" else bytes(data)
    if mode == "handles":
        _, handles, meta = table.layout()
        targets = handles + [meta]

        def override(i: int, h: Tuple[int, int]) -> Tuple[int, int]:
            if rng.random() < 0.3:
                return rng.choice(
                    [
                        rng.choice(targets),
                        (_interesting(rng), _interesting(rng)),
                        (h[0], _interesting(rng)),
                        (_interesting(rng), h[1]),
                    ]
                )
            return h

        return mode, table.serialize(handle_override=override)

    def footer(f: bytes) -> bytes:
        b = bytearray(f)
        b[rng.randrange(40)] = rng.randrange(256)
        return bytes(b)

    return mode, table.serialize(footer_mutator=footer)


def _has_slices(value: bytes) -> bool:
    try:
        return any(f == 7 for f, _wt, _v in parse_fields(value))
    except ValueError:
        return False


def corrupt_data(rng: random.Random, base: Base, target_prefix: str) -> str:
    """Damages one data file of the target (a private copy); returns what was done."""
    path = rng.choice(base.data_files)
    target = target_prefix + path[len(base.prefix) :]
    size = os.path.getsize(target)
    op = rng.choice(["flip", "flip", "flip", "truncate", "zero", "zero", "append", "remove"])
    if size == 0 and op in ("flip", "truncate", "zero"):
        op = "append"
    if op == "remove":
        os.remove(target)
        return f"remove {os.path.basename(target)}"
    with open(target, "r+b") as f:
        if op == "flip":
            done = []
            for _ in range(rng.choice([1, 1, 2, 4])):
                at = rng.randrange(size)
                f.seek(at)
                byte = f.read(1)[0]
                f.seek(at)
                f.write(bytes([byte ^ (1 << rng.randrange(8))]))
                done.append(at)
            return f"flip {os.path.basename(target)} at {done}"
        if op == "truncate":
            keep = rng.randrange(size)
            f.truncate(keep)
            return f"truncate {os.path.basename(target)} to {keep}"
        if op == "zero":
            at = rng.randrange(size)
            n = min(size - at, rng.choice([1, 4, 16, 64, size]))
            f.seek(at)
            f.write(b"\0" * n)
            return f"zero {os.path.basename(target)} [{at}, {at + n})"
        f.seek(0, 2)
        f.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
        return f"append to {os.path.basename(target)}"


# ---------------------------------------------------------------------------------
# The oracle


def same_value(got: Any, want: np.ndarray) -> bool:
    """Exact equality: dtype, shape and bytes (NaN payloads and -0.0 count)."""
    got = np.asarray(got)
    if got.shape != want.shape:
        return False
    if want.dtype == object or got.dtype == object:
        return got.dtype == want.dtype and got.reshape(-1).tolist() == want.reshape(-1).tolist()
    return got.dtype == want.dtype and got.tobytes() == np.ascontiguousarray(want).tobytes()


@dataclass
class Outcome:
    """What one input did."""

    load: str = ""  # "ok" or the exception class of load()
    verify: str = ""  # "ok" or the exception class of verify()
    findings: List[str] = field(default_factory=list)
    seconds: float = 0.0


def _prepare_target(base: Base, target_prefix: str, *, copy_data: bool) -> None:
    """target_prefix's files: the base's, symlinked, or copied (when they will be damaged)."""
    directory = os.path.dirname(target_prefix)
    if os.path.isdir(directory):
        shutil.rmtree(directory)
    os.makedirs(directory)
    for path in base.data_files:
        dest = target_prefix + path[len(base.prefix) :]
        if copy_data:
            shutil.copyfile(path, dest)
        else:
            os.symlink(path, dest)
    shutil.copyfile(base.prefix + ".index", target_prefix + ".index")


def judge(base: Base, prefix: str, *, index_intact: bool) -> Outcome:
    """Does everything a user can with `prefix` and checks it against `base`."""
    out = Outcome()
    start = time.perf_counter()
    fixed_bytes: Dict[str, bytes] = {}

    def call(what: str, fn: Callable[[], Any]) -> Tuple[bool, Any]:
        try:
            return True, fn()
        except fastckpt.FastCkptError as e:
            return False, e
        except Exception as e:  # noqa: BLE001 - the finding
            out.findings.append(f"exception: {what}: {type(e).__name__}: {e}"[:500])
            return False, e

    def expect(name: str, value: Any, entry: Optional[tuple], what: str) -> None:
        """`value` of tensor `name` read by `what` must be right."""
        want = base.values.get(name)
        if (
            want is not None
            and entry is not None
            and entry[1] == tuple(want.shape)
            and _np_dtype(entry[0]) == want.dtype
        ):
            if not same_value(value, want):
                out.findings.append(f"wrong-value: {what} of '{name}' differs from the base")
            return
        raw = fixed_bytes.get(name)
        if raw is not None and np.asarray(value).dtype != object:
            if np.ascontiguousarray(value).tobytes() != raw:
                out.findings.append(f"wrong-value: {what} of '{name}' is not the bytes its entry points at")

    ok_open, reader = call("load_checkpoint", lambda: fastckpt.load_checkpoint(prefix))
    refused: Dict[str, str] = {}
    described: Dict[str, tuple] = {}
    if ok_open:
        with reader:
            call("get_variable_to_shape_map", reader.get_variable_to_shape_map)
            call("get_variable_to_dtype_map", reader.get_variable_to_dtype_map)
            call("debug_string", reader.debug_string)
            call("list_variables", lambda: fastckpt.list_variables(prefix))
            native = reader._native
            for key, dt, shape, shard, offset, size, _crc, slices in native.entries():
                name = key.decode("utf-8", "surrogateescape")
                described[name] = (dt, tuple(shape), slices)
                if slices is None and _fixed_size(dt) and 0 <= size <= 1 << 20:
                    data = f"{prefix}.data-{shard:05d}-of-{native.num_shards:05d}"
                    raw = _file_bytes(data, offset, size)
                    if raw is not None and len(raw) == size:
                        fixed_bytes[name] = raw
            for name in reader.keys():
                ok, value = call(f"get_tensor('{name}')", lambda: reader.get_tensor(name))
                if not ok:
                    refused[name] = type(value).__name__
                    continue
                expect(name, value, described.get(name), "get_tensor")
                shape = np.shape(value)
                if shape and shape[0] > 0:
                    spec = ":".join(["0,1"] + ["-"] * (len(shape) - 1))
                    ok, part = call(f"get_slice('{name}')", lambda: reader.get_slice(name, spec))
                    if ok and not same_value(part, np.asarray(value)[0:1]):
                        out.findings.append(f"wrong-value: get_slice of '{name}' is not get_tensor's first row")
    ok, loaded = call("load", lambda: fastckpt.load(prefix))
    out.load = "ok" if ok else type(loaded).__name__
    if ok:
        for name, value in loaded.items():
            expect(name, value, described.get(name), "load")
        if refused:
            out.findings.append(f"readers-disagree: load read what get_tensor refused: {sorted(refused)}")
    elif ok_open and not refused:
        out.findings.append(f"readers-disagree: load raised {out.load}, get_tensor read every tensor")
    ok, report = call("verify", lambda: fastckpt.verify(prefix))
    out.verify = "ok" if ok else type(report).__name__
    if ok:
        unreadable = sorted(
            n
            for n, cls in refused.items()
            if not (cls == "UnsupportedDtypeError" and described.get(n, (0,))[0] == dtypes.DT_VARIANT)
        )
        if out.load not in ("ok",) and not (out.load == "UnsupportedDtypeError" and _has_variant(described)):
            out.findings.append(f"verify-accepted-unreadable: load raised {out.load}")
        if unreadable:
            out.findings.append(f"verify-accepted-unreadable: get_tensor refused {unreadable}")
        if not ok_open:
            out.findings.append("verify-accepted-unreadable: load_checkpoint failed")
    elif index_intact and ok_open and isinstance(report, fastckpt.DataLossError) and hasattr(report, "report"):
        flagged = {b.name for b in report.report.bad if getattr(b, "listed", True)}
        if flagged != set(refused):
            out.findings.append(f"disagree: verify flagged {sorted(flagged)}, get_tensor refused {sorted(refused)}")
    out.seconds = time.perf_counter() - start
    return out


def _fixed_size(dt: int) -> bool:
    """A DataType whose tensors are their raw bytes (not string, variant or unknown)."""
    try:
        return dtypes.element_size(dt) > 0
    except Exception:  # noqa: BLE001 - an unknown DataType number
        return False


def _has_variant(described: Dict[str, tuple]) -> bool:
    return any(d[0] == dtypes.DT_VARIANT for d in described.values())


def _np_dtype(dt: int) -> Optional[np.dtype]:
    try:
        return dtypes.to_numpy_dtype(dt)
    except Exception:  # noqa: BLE001 - unknown or unsupported
        return None


def _file_bytes(path: str, offset: int, size: int) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)
    except (OSError, ValueError, OverflowError):
        return None


# ---------------------------------------------------------------------------------
# Running inputs


def run_input(base: Base, kind: str, seed: int, workdir: str) -> Tuple[str, Outcome]:
    """Builds input `seed` of `kind` ("index" or "data") for `base` and judges it."""
    rng = random.Random(f"{base.name}/{kind}/{seed}")
    target = os.path.join(workdir, "target", os.path.basename(base.prefix))
    _prepare_target(base, target, copy_data=(kind == "data"))
    if kind == "index":
        what, index = mutate_index(rng, base)
        with open(target + ".index", "wb") as f:
            f.write(index)
    else:
        what = corrupt_data(rng, base, target)
    return what, judge(base, target, index_intact=(kind == "data"))


def _worker(args: argparse.Namespace) -> int:
    """Runs seeds [start, start + count) of one base and kind; one JSON line per input."""
    faulthandler.enable()
    limit = args.memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    bases = {b.name: b for b in make_bases(args.workdir, tf=not args.no_tf)}
    base = bases[args.base]
    scratch = os.path.join(args.workdir, f"worker-{os.getpid()}")
    os.makedirs(scratch, exist_ok=True)
    out = sys.stdout
    for seed in range(args.start, args.start + args.count):
        out.write(json.dumps({"started": seed}) + "\n")
        out.flush()
        faulthandler.dump_traceback_later(args.timeout, exit=True)
        what, outcome = run_input(base, args.kind, seed, scratch)
        faulthandler.cancel_dump_traceback_later()
        out.write(
            json.dumps(
                {
                    "seed": seed,
                    "what": what,
                    "load": outcome.load,
                    "verify": outcome.verify,
                    "findings": outcome.findings,
                    "seconds": outcome.seconds,
                }
            )
            + "\n"
        )
        out.flush()
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


@dataclass
class Tally:
    """The campaign's figures, added to from the driver's threads."""

    inputs: int = 0
    by_class: Dict[str, int] = field(default_factory=dict)
    findings: List[dict] = field(default_factory=list)
    slowest: Tuple[float, str] = (0.0, "")
    lock: Any = field(default_factory=threading.Lock)

    def add(self, kind: str, base: str, rec: dict) -> None:
        with self.lock:
            self._add(kind, base, rec)

    def abnormal(self, kind: str, base: str, seed: int, what: str, stderr: str) -> None:
        with self.lock:
            self.inputs += 1
            label = f"{kind} {what.split()[0]}"
            self.by_class[label] = self.by_class.get(label, 0) + 1
            self.findings.append(
                {
                    "kind": kind,
                    "base": base,
                    "seed": seed,
                    "what": what,
                    "findings": [stderr[-2000:]],
                }
            )

    def _add(self, kind: str, base: str, rec: dict) -> None:
        self.inputs += 1
        for key in (f"{kind} load={rec['load']}", f"{kind} verify={rec['verify']}"):
            self.by_class[key] = self.by_class.get(key, 0) + 1
        if rec["findings"]:
            self.findings.append({"kind": kind, "base": base, **rec})
        if rec["seconds"] > self.slowest[0]:
            self.slowest = (rec["seconds"], f"{kind} {base} seed {rec['seed']} ({rec['what']})")


def _run_chunk(args: argparse.Namespace, kind: str, base: str, start: int, count: int, tally: Tally) -> None:
    """Runs a worker over seeds [start, start + count), restarting it after a crash or hang."""
    seed = start
    while seed < start + count:
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            "--workdir",
            args.workdir,
            "--base",
            base,
            "--kind",
            kind,
            "--start",
            str(seed),
            "--count",
            str(start + count - seed),
            "--timeout",
            str(args.timeout),
            "--memory-mb",
            str(args.memory_mb),
        ]
        if args.no_tf:
            cmd.append("--no-tf")
        # stderr goes to a file: a chatty worker must not block on a full pipe.
        with tempfile.TemporaryFile("w+") as errfile:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, text=True)
            last_started = None
            for line in proc.stdout:
                rec = json.loads(line)
                if "started" in rec:
                    last_started = rec["started"]
                    continue
                tally.add(kind, base, rec)
                seed = rec["seed"] + 1
            proc.wait()
            errfile.seek(0)
            err = errfile.read()
        if proc.returncode != 0:
            culprit = last_started if last_started is not None else seed
            what = "hang" if "Timeout" in err else f"crash (exit {proc.returncode})"
            tally.abnormal(kind, base, culprit, what, err)
            seed = culprit + 1


def _driver(args: argparse.Namespace) -> int:
    import concurrent.futures as cf

    os.makedirs(args.workdir, exist_ok=True)
    bases = make_bases(args.workdir, tf=not args.no_tf)
    tally = Tally()
    jobs = []
    first = args.seed * 10**7  # seeds of different --seed runs do not overlap
    for kind, total in (("index", args.indexes), ("data", args.corruptions)):
        for i, b in enumerate(bases):
            n = total // len(bases) + (1 if i < total % len(bases) else 0)
            for start in range(first, first + n, args.chunk):
                jobs.append((kind, b.name, start, min(args.chunk, first + n - start)))
    started = time.time()
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        for f in [pool.submit(_run_chunk, args, kind, base, start, count, tally) for kind, base, start, count in jobs]:
            f.result()
    summary = {
        "inputs": tally.inputs,
        "bases": [b.name for b in bases],
        "outcomes": dict(sorted(tally.by_class.items())),
        "findings": len(tally.findings),
        "slowest_input": {"seconds": round(tally.slowest[0], 4), "input": tally.slowest[1]},
        "wall_seconds": round(time.time() - started, 1),
    }
    with open(os.path.join(args.workdir, "summary.json"), "w") as f:
        json.dump({**summary, "finding_details": tally.findings}, f, indent=1)
    print(json.dumps(summary, indent=1))
    for finding in tally.findings[:20]:
        print(json.dumps(finding)[:1000])
    return 1 if tally.findings else 0


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--indexes", type=int, default=1000, help="damaged indexes to try")
    p.add_argument("--corruptions", type=int, default=200, help="damaged data files to try")
    p.add_argument("--jobs", type=int, default=2, help="worker processes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", default=os.path.join(os.getcwd(), "fuzz-campaign"))
    p.add_argument("--timeout", type=float, default=60.0, help="seconds before an input counts as a hang")
    p.add_argument("--memory-mb", type=int, default=4096, help="address-space limit of a worker")
    p.add_argument("--chunk", type=int, default=2000, help="inputs per worker process")
    p.add_argument("--no-tf", action="store_true", help="skip the TensorFlow-written base")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--base", help=argparse.SUPPRESS)
    p.add_argument("--kind", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, help=argparse.SUPPRESS)
    p.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.workdir = os.path.abspath(args.workdir)
    return _worker(args) if args.worker else _driver(args)


if __name__ == "__main__":
    sys.exit(main())
