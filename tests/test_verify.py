"""``fastckpt.verify`` and ``fastckpt.latest_valid_checkpoint``.

verify() must report every bad tensor (not only the first), name each one
with its data file, keep memory bounded whatever the tensor sizes, and agree
with the reader about what is intact (TensorFlow's own checkpoints
included).
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from checkpoint_builders import rewrite_index_entry  # fuzz/, on sys.path (conftest)
from helpers import data_entries, flip_in

import fastckpt
from fastckpt.format import dtypes
from fastckpt.format import slices as slicing
from fastckpt.verification import BadTensor, VerifyReport
from fastckpt.writer import partitioned_item, prepare_item, write_items

DATA1 = ".data-00000-of-00001"


# ---------------------------------------------------------------------------
# helpers


def _string_size(values):
    """Bytes a string tensor takes in a data file: varint lengths, checksum, bytes."""

    def varint_len(n):
        return max(1, (n.bit_length() + 6) // 7)

    return sum(varint_len(len(v)) for v in values) + 4 + sum(len(v) for v in values)


def _save_partitioned(prefix, name, full, parts, *, drop=(), reshape=None, extra=None):
    """Writes `full` as a partitioned tensor stored in slices `parts` ((start, length) lists).

    `drop`: indices of parts whose slice entry is left out; `reshape`: {index:
    shape} stores that slice's data with a wrong shape; `extra`: more plain tensors.
    """
    items, keep = [], []
    for i, extents in enumerate(parts):
        if i in drop:
            continue
        index = tuple(slice(s, s + n) if n >= 0 else slice(None) for s, n in extents)
        value = np.ascontiguousarray(full[index])
        if reshape and i in reshape:
            value = value.reshape(reshape[i])
        item, owner = prepare_item(slicing.encode_slice_key(name, extents), value, slice_key=True)
        items.append(item)
        keep.append(owner)
    items.append(partitioned_item(name, dtypes.from_numpy_dtype(full.dtype), full.shape, parts))
    for key, value in (extra or {}).items():
        item, owner = prepare_item(key, value)
        items.append(item)
        keep.append(owner)
    write_items(items, prefix, num_shards=1, threads=None, durable=False)


@pytest.fixture
def ckpt(tmp_path):
    prefix = str(tmp_path / "model")
    rng = np.random.default_rng(0)
    tensors = {
        "dense/kernel": rng.standard_normal((64, 32)).astype(np.float32),
        "dense/bias": np.arange(32, dtype=np.float64),
        "embedding": rng.integers(0, 1000, size=(100, 16)).astype(np.int32),
        "global_step": np.int64(1000),
        "empty": np.zeros((0, 3), np.float32),
        "vocab": np.array([b"hello", b"world", b"", b"x" * 300], dtype=object),
    }
    fastckpt.save(tensors, prefix, durable=False, num_shards=1)
    return prefix, tensors


# ---------------------------------------------------------------------------
# intact checkpoints


def test_good_checkpoint_report(ckpt):
    prefix, tensors = ckpt
    report = fastckpt.verify(prefix)
    assert isinstance(report, VerifyReport)
    assert report.ok and report.bad == []
    assert report.prefix == prefix
    assert report.tensors == len(tensors) == 6
    expected_bytes = sum(np.asarray(v).nbytes for k, v in tensors.items() if k != "vocab")
    expected_bytes += _string_size(list(tensors["vocab"]))
    assert report.bytes == expected_bytes
    assert report.bytes == os.path.getsize(prefix + DATA1)  # no padding between tensors
    assert report.files == 1
    assert report.largest_whole_read == _string_size(list(tensors["vocab"]))
    assert report.seconds > 0
    assert report.gbps == pytest.approx(report.bytes / report.seconds / 1e9)


def test_good_sharded_checkpoint(tmp_path):
    prefix = str(tmp_path / "sharded")
    tensors = {f"t{i}": np.full((1000 + i,), i, np.float32) for i in range(12)}
    result = fastckpt.save(tensors, prefix, num_shards=3, durable=False)
    report = fastckpt.verify(prefix, threads=3)
    assert report.tensors == 12
    assert report.files == 3 == len(result.files) - 1  # data files, not the index
    assert report.bytes == sum(v.nbytes for v in tensors.values())


def test_empty_checkpoint(tmp_path):
    prefix = str(tmp_path / "empty")
    fastckpt.save({}, prefix, durable=False)
    report = fastckpt.verify(prefix)
    assert (report.tensors, report.bytes, report.bad) == (0, 0, [])


def test_directory_resolves_through_state_file(tmp_path):
    saver = fastckpt.Saver({"a": np.arange(3.0)})
    saver.save(None, str(tmp_path / "m"), global_step=1)
    saver.save(None, str(tmp_path / "m"), global_step=2)
    assert fastckpt.verify(tmp_path).prefix == str(tmp_path / "m-2")


@pytest.mark.parametrize("threads", [1, 2, 8])
@pytest.mark.parametrize("chunk_bytes", [4096, 1 << 20, None])
def test_threads_and_chunks_agree(ckpt, threads, chunk_bytes):
    prefix, tensors = ckpt
    report = fastckpt.verify(prefix, threads=threads, chunk_bytes=chunk_bytes)
    assert report.ok and report.tensors == len(tensors)


@pytest.mark.parametrize("option", [{"threads": 0}, {"threads": -2}, {"chunk_bytes": 0}, {"chunk_bytes": 1.5}])
def test_bad_options(ckpt, option):
    with pytest.raises(fastckpt.InvalidArgumentError, match=next(iter(option))):
        fastckpt.verify(ckpt[0], **option)


# ---------------------------------------------------------------------------
# damage


def test_two_damaged_tensors_are_both_reported(ckpt):
    prefix, _ = ckpt
    data = flip_in(prefix, b"dense/kernel")
    flip_in(prefix, b"embedding", where=0.9)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    message = str(e.value)
    assert "'dense/kernel'" in message and "'embedding'" in message
    assert data in message
    assert "data checksum mismatch" in message
    report = e.value.report
    assert not report.ok
    assert [b.name for b in report.bad] == ["dense/kernel", "embedding"]
    assert all(isinstance(b, BadTensor) and b.file == data for b in report.bad)
    assert report.tensors == 6  # the good ones were still checked
    # The reader agrees: these are exactly the tensors load() refuses.
    with fastckpt.load_checkpoint(prefix) as reader:
        for name in reader:
            if name in ("dense/kernel", "embedding"):
                with pytest.raises(fastckpt.DataLossError):
                    reader.get_tensor(name)
            else:
                reader.get_tensor(name)


def test_truncated_data_file_reports_every_tensor_past_the_end(ckpt):
    prefix, _ = ckpt
    layout = sorted(data_entries(prefix).items(), key=lambda kv: kv[1][1])
    layout = [(k, v) for k, v in layout if v[2] > 0]
    (second_last, (path, off, _)), (last, _) = layout[-2], layout[-1]
    with open(path, "r+b") as f:
        f.truncate(off + 1)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    bad = {b.name: b for b in e.value.report.bad}
    assert set(bad) == {second_last.decode(), last.decode()}
    for b in bad.values():
        assert b.file == path
        assert "past the end of the file" in b.reason
    assert f"'{second_last.decode()}'" in str(e.value) and f"'{last.decode()}'" in str(e.value)


@pytest.mark.parametrize(
    "where, reason",
    [
        (0.0, "checksum mismatch in string lengths"),  # a varint length
        (1.0, "data checksum mismatch"),  # the last string byte
    ],
)
def test_damaged_string_tensor(ckpt, where, reason):
    prefix, _ = ckpt
    flip_in(prefix, b"vocab", where)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    (bad,) = e.value.report.bad
    assert bad.name == "vocab" and bad.file == prefix + DATA1
    assert reason in bad.reason


def test_large_tensor_chunked_crc(tmp_path):
    """A 64 MiB tensor checked in 1 MiB chunks on several threads (crc32c::Combine path)."""
    prefix = str(tmp_path / "big")
    big = np.random.default_rng(1).integers(0, 255, size=64 << 20, dtype=np.uint8)
    fastckpt.save({"big": big, "small": np.arange(5.0)}, prefix, durable=False)
    report = fastckpt.verify(prefix, chunk_bytes=1 << 20, threads=4)
    assert report.ok and report.bytes == big.nbytes + 40
    # Damage in the middle and in the last chunk: one bad tensor, reported once.
    flip_in(prefix, b"big", 0.5)
    flip_in(prefix, b"big", 1.0)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix, chunk_bytes=1 << 20, threads=4)
    assert [b.name for b in e.value.report.bad] == ["big"]


def test_chunk_size_does_not_change_the_verdict(tmp_path):
    """Small tensors batched into shared reads and large ones split: same answer."""
    prefix = str(tmp_path / "mixed")
    rng = np.random.default_rng(2)
    tensors = {f"s{i:03d}": rng.standard_normal(rng.integers(1, 3000)) for i in range(200)}
    tensors["huge"] = rng.standard_normal(300_000)
    fastckpt.save(tensors, prefix, durable=False, num_shards=2)
    for name in ("s007", "s150", "huge"):
        flip_in(prefix, name.encode(), 0.3)
    for chunk in (4096, 65536, 1 << 20, 64 << 20):
        with pytest.raises(fastckpt.DataLossError) as e:
            fastckpt.verify(prefix, chunk_bytes=chunk)
        assert [b.name for b in e.value.report.bad] == ["huge", "s007", "s150"], chunk


def test_missing_data_file(ckpt):
    prefix, _ = ckpt
    os.remove(prefix + DATA1)
    with pytest.raises(fastckpt.CheckpointNotFoundError, match="data file not found"):
        fastckpt.verify(prefix)


def test_missing_index(tmp_path):
    with pytest.raises(fastckpt.CheckpointNotFoundError, match="index not found"):
        fastckpt.verify(str(tmp_path / "nothing"))


def test_garbled_index(ckpt):
    prefix, _ = ckpt
    with open(prefix + ".index", "r+b") as f:
        f.seek(10)
        f.write(b"\xde\xad\xbe\xef")
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    assert not hasattr(e.value, "report")


def test_memory_does_not_grow_with_tensor_size(tmp_path):
    """Verifying a 256 MiB tensor needs a few MiB, not 256 (nothing is kept)."""
    prefix = str(tmp_path / "mem")
    n = 256 << 20
    fastckpt.save({"t": np.ones(n, np.uint8)}, prefix, durable=False)
    code = textwrap.dedent(f"""
        import fastckpt
        verify = fastckpt.verify  # its modules load on first use: before the measurement
        def peak():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) * 1024
        before = peak()
        report = verify({prefix!r}, threads=4)
        assert report.ok and report.bytes == {n}
        print(peak() - before)
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) < 32 << 20


# ---------------------------------------------------------------------------
# partitioned tensors (written through the writer's slice items, as the Saver does)


PARTS = [[(0, 3), (0, -1)], [(3, 2), (0, -1)], [(5, 2), (0, -1)]]
PARTS2 = [[(0, 4), (0, -1)], [(4, 4), (0, -1)]]


def test_partitioned_tensor_good(tmp_path):
    prefix = str(tmp_path / "part")
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    # The slice-key encoding escapes 0x00 and 0xff bytes in the name (0xff is
    # a non-UTF-8 name byte, carried as a surrogate).
    name = "p\x00art/\udcff/ÿ"
    _save_partitioned(prefix, name, full, PARTS, extra={"plain": np.arange(3)})
    report = fastckpt.verify(prefix)
    assert report.tensors == 2  # the partitioned tensor counts once
    assert report.bytes == full.nbytes + 3 * 8
    np.testing.assert_array_equal(fastckpt.load(prefix)[name], full)
    # Damage is reported under the same (decoded) name.
    flip_in(prefix, slicing.encode_slice_key(name, PARTS[0]))
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    assert [b.name for b in e.value.report.bad] == [name]


def test_partitioned_large_extents(tmp_path):
    """Starts and lengths of several SNum bytes must encode as TensorFlow's slice keys do."""
    prefix = str(tmp_path / "wide")
    full = np.arange(3 * 70000, dtype=np.int8).reshape(3, 70000)
    parts = [[(0, -1), (0, 200)], [(0, -1), (200, 69000)], [(0, -1), (69200, 800)]]
    _save_partitioned(prefix, "w", full, parts)
    assert fastckpt.verify(prefix).ok


def test_partitioned_damaged_slice_named_by_its_tensor(tmp_path):
    prefix = str(tmp_path / "part")
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    _save_partitioned(prefix, "p", full, PARTS)
    flip_in(prefix, slicing.encode_slice_key("p", PARTS[1]))
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    (bad,) = e.value.report.bad
    assert bad.name == "p" and bad.file == prefix + DATA1
    assert bad.reason.startswith("slice '3,2:-': data checksum mismatch")


def test_partitioned_missing_slice(tmp_path):
    prefix = str(tmp_path / "part")
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    _save_partitioned(prefix, "p", full, PARTS, drop={2})
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    (bad,) = e.value.report.bad
    assert bad.name == "p" and bad.file == prefix + ".index"
    assert bad.reason == "slice '5,2:-' has no entry in the index"


def test_partitioned_slice_of_wrong_shape(tmp_path):
    prefix = str(tmp_path / "part")
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    _save_partitioned(prefix, "p", full, PARTS, reshape={0: (5, 3)})
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    (bad,) = e.value.report.bad
    assert bad.reason == "slice '0,3:-' has shape [5, 3], expected [3, 5]"


def test_partitioned_slices_not_covering_the_tensor(tmp_path):
    prefix = str(tmp_path / "part")
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    _save_partitioned(prefix, "p", full, PARTS[:2])
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    (bad,) = e.value.report.bad
    assert bad.reason == "its 2 slices hold 25 elements, the tensor has 35"


# ---------------------------------------------------------------------------
# latest_valid_checkpoint


def _three_checkpoints(tmp_path):
    saver = fastckpt.Saver({"w": np.arange(1000.0), "s": np.array([b"a", b"b"], dtype=object)}, max_to_keep=5)
    paths = []
    for step in (1, 2, 3):
        saver.var_list["w"][:] = step
        paths.append(saver.save(None, str(tmp_path / "model"), global_step=step))
        time.sleep(0.01)  # distinct mtimes
    return paths


def test_latest_valid_checkpoint_all_good(tmp_path):
    paths = _three_checkpoints(tmp_path)
    assert fastckpt.latest_valid_checkpoint(tmp_path) == paths[-1]


def test_latest_valid_checkpoint_skips_damaged_newest(tmp_path, caplog):
    paths = _three_checkpoints(tmp_path)
    flip_in(paths[2], b"w")
    assert fastckpt.latest_valid_checkpoint(str(tmp_path)) == paths[1]
    assert any(paths[2] in r.getMessage() for r in caplog.records)
    # Missing data files are skipped too.
    os.remove(paths[1] + DATA1)
    assert fastckpt.latest_valid_checkpoint(str(tmp_path)) == paths[0]


def test_latest_valid_checkpoint_none_when_all_damaged(tmp_path):
    for path in _three_checkpoints(tmp_path):
        flip_in(path, b"w")
    assert fastckpt.latest_valid_checkpoint(tmp_path) is None


def test_latest_valid_checkpoint_empty_directory(tmp_path):
    assert fastckpt.latest_valid_checkpoint(tmp_path) is None


def test_latest_valid_checkpoint_without_state_file(tmp_path):
    """Checkpoints the state file does not list are found by their .index, newest first."""
    older = str(tmp_path / "a")
    newer = str(tmp_path / "b")
    fastckpt.save({"x": np.arange(4)}, newer, durable=False)
    fastckpt.save({"x": np.arange(4)}, older, durable=False)
    os.utime(older + ".index", ns=(1_000_000_000, 1_000_000_000))
    assert fastckpt.latest_valid_checkpoint(tmp_path) == newer
    flip_in(newer, b"x")
    assert fastckpt.latest_valid_checkpoint(tmp_path) == older


def test_latest_valid_checkpoint_state_file_first(tmp_path):
    """The state file's order wins over modification times."""
    paths = _three_checkpoints(tmp_path)
    stray = str(tmp_path / "stray")
    fastckpt.save({"x": np.arange(4)}, stray, durable=False)  # newest on disk, not in the state
    assert fastckpt.latest_valid_checkpoint(tmp_path) == paths[-1]
    for p in paths:
        flip_in(p, b"w")
    assert fastckpt.latest_valid_checkpoint(tmp_path) == stray


def test_latest_valid_checkpoint_custom_state_filename(tmp_path):
    fastckpt.save({"x": np.arange(4)}, str(tmp_path / "one"), durable=False)
    fastckpt.save({"x": np.arange(4)}, str(tmp_path / "two"), durable=False)
    fastckpt.update_checkpoint_state(str(tmp_path), str(tmp_path / "one"), latest_filename="mystate")
    os.utime(str(tmp_path / "one.index"), ns=(1_000_000_000, 1_000_000_000))
    assert fastckpt.latest_valid_checkpoint(tmp_path, "mystate") == str(tmp_path / "one")
    assert fastckpt.latest_valid_checkpoint(tmp_path) == str(tmp_path / "two")


# ---------------------------------------------------------------------------
# TensorFlow-written checkpoints


@pytest.mark.tf
def test_tf_written_checkpoints_verify_clean(tmp_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    rng = np.random.default_rng(3)

    # TF1 Saver, partitioned variables and a string variable.
    graph = tf.Graph()
    with graph.as_default():
        v = {
            "dense/kernel": tf.compat.v1.get_variable(
                "dense/kernel", initializer=tf.constant(rng.standard_normal((8, 4)).astype(np.float32))
            ),
            "vocab": tf.compat.v1.get_variable(
                "vocab", initializer=tf.constant([b"a", b"b\x00c", b""]), use_resource=True
            ),
            "part/rows": tf.compat.v1.get_variable(
                "part/rows",
                shape=(7, 5),
                dtype=tf.float32,
                partitioner=tf.compat.v1.fixed_size_partitioner(3),
                use_resource=True,
            ),
            "part/cols": tf.compat.v1.get_variable(
                "part/cols",
                shape=(4, 70),
                dtype=tf.float64,
                partitioner=tf.compat.v1.fixed_size_partitioner(3, axis=1),
                use_resource=True,
            ),
        }
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf1_prefix = saver.save(sess, str(tmp_path / "tf1" / "model.ckpt"))
    report = fastckpt.verify(tf1_prefix)
    assert report.tensors == len(tf.train.list_variables(tf1_prefix)) == len(v)
    assert report.ok
    # A damaged slice of a TF partitioned variable is found and named.
    key = slicing.encode_slice_key("part/cols", [(0, 4), (24, 23)])
    flip_in(tf1_prefix, key)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(tf1_prefix)
    (bad,) = e.value.report.bad
    assert bad.name == "part/cols" and bad.reason.startswith("slice '0,4:24,23'")

    # TF2 Checkpoint, with a dataset iterator (a DT_VARIANT tensor).
    it = iter(tf.data.Dataset.range(100).shuffle(10, seed=1))
    next(it)
    ckpt = tf.train.Checkpoint(it=it, v=tf.Variable(rng.standard_normal(5)), s=tf.Variable([b"x", b"yz"]))
    tf2_prefix = ckpt.write(str(tmp_path / "tf2" / "ckpt"))
    variant = "it/.ATTRIBUTES/ITERATOR_STATE"
    with fastckpt.load_checkpoint(tf2_prefix) as reader:
        assert reader.get_variable_to_dtype_map()[variant] == "variant"
    report = fastckpt.verify(tf2_prefix)
    assert report.tensors == len(tf.train.list_variables(tf2_prefix))
    assert report.ok
    flip_in(tf2_prefix, variant.encode())
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(tf2_prefix)
    assert [b.name for b in e.value.report.bad] == [variant]


# ---------------------------------------------------------------------------
# missing data shards: listing and the present shards' tensors still work


def _three_shards(tmp_path):
    prefix = str(tmp_path / "sharded")
    tensors = {f"t{i}": np.full((100 + i,), i, np.int32) for i in range(9)}
    fastckpt.save(tensors, prefix, num_shards=3, durable=False)
    files = {name: path for name, (path, _off, _size) in ((k.decode(), v) for k, v in data_entries(prefix).items())}
    return prefix, tensors, files


def test_missing_shards_leave_the_rest_readable(tmp_path):
    prefix, tensors, files = _three_shards(tmp_path)
    gone = prefix + ".data-00001-of-00003"
    os.remove(gone)
    assert fastckpt.list_variables(prefix) == [(n, [v.size]) for n, v in sorted(tensors.items())]
    with fastckpt.load_checkpoint(prefix) as reader:
        assert reader.get_variable_to_shape_map() == {n: [v.size] for n, v in tensors.items()}
        for name, value in tensors.items():
            if files[name] == gone:
                with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
                    reader.get_tensor(name)
                assert str(e.value) == f"checkpoint data file not found: '{gone}'"
                assert (e.value.errno, e.value.filename) == (errno.ENOENT, gone)
            else:
                np.testing.assert_array_equal(reader.get_tensor(name), value)
    assert sorted(set(files.values())) == [prefix + f".data-0000{i}-of-00003" for i in range(3)]


def test_verify_names_every_missing_shard(tmp_path):
    prefix, _, _ = _three_shards(tmp_path)
    gone = [prefix + ".data-00000-of-00003", prefix + ".data-00002-of-00003"]
    for path in gone:
        os.remove(path)
    with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
        fastckpt.verify(prefix)
    assert str(e.value) == f"2 checkpoint data files not found: '{gone[0]}', '{gone[1]}'"
    assert (e.value.errno, e.value.filename) == (errno.ENOENT, gone[0])
    assert fastckpt.latest_valid_checkpoint(tmp_path) is None


# ---------------------------------------------------------------------------
# readable names and right counts in the damage report


def test_report_names_slices_readably_and_counts_tensors(tmp_path):
    """A listed slice without its entry, and a damaged slice entry no tensor
    lists (its key names 'parx'): the message used to print the raw key (NUL
    bytes) and count "2 problem(s) in 2 of 1 tensors"."""
    prefix = str(tmp_path / "p")
    full = np.arange(40, dtype=np.float32).reshape(8, 5)
    stray = slicing.encode_slice_key("parx", [(4, 4), (0, -1)])
    items, keep = [], []
    for key, value in ((slicing.encode_slice_key("part", PARTS2[0]), full[:4]), (stray, full[4:])):
        item, owner = prepare_item(key, value, slice_key=True)
        items.append(item)
        keep.append(owner)
    items.append(partitioned_item("part", dtypes.DT_FLOAT, full.shape, PARTS2))
    write_items(items, prefix, num_shards=1, threads=None, durable=False)
    flip_in(prefix, stray)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    message = str(e.value)
    assert "\x00" not in message
    lines = message.splitlines()
    assert lines[0] == (
        f"checkpoint '{prefix}' is damaged: 2 problem(s) in 1 of 1 tensors and 1 slice entry no tensor lists:"
    )
    assert lines[1] == f"  tensor 'part' in '{prefix}.index': slice '4,4:-' has no entry in the index"
    assert re.fullmatch(
        rf"  tensor 'parx' in '{re.escape(prefix + DATA1)}': slice '4,4:-' \(an entry the tensor "
        r"does not list\): data checksum mismatch \(stored CRC32C [0-9a-f]{8}, computed [0-9a-f]{8}\)",
        lines[2],
    ), lines[2]
    report = e.value.report
    assert [(b.name, b.listed) for b in report.bad] == [("part", True), ("parx", False)]
    assert (report.tensors, report.damaged_tensors, report.unlisted_entries) == (1, 1, 1)


def test_report_counts_a_tensor_with_several_problems_once(tmp_path):
    prefix = str(tmp_path / "part")
    full = np.arange(35, dtype=np.float32).reshape(7, 5)
    _save_partitioned(prefix, "p", full, PARTS, extra={"q": np.arange(3)})
    flip_in(prefix, slicing.encode_slice_key("p", PARTS[0]))
    flip_in(prefix, slicing.encode_slice_key("p", PARTS[2]))
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    assert str(e.value).splitlines()[0] == f"checkpoint '{prefix}' is damaged: 2 problem(s) in 1 of 2 tensors:"
    assert [b.reason.split(":")[0] for b in e.value.report.bad] == ["slice '0,3", "slice '5,2"]


def test_unknown_dtype_is_a_verify_problem(tmp_path):
    """No reader can load a tensor of DataType 99: verify must not pass it."""
    prefix = str(tmp_path / "d")
    fastckpt.save({"w": np.arange(4, dtype=np.float32), "ok": np.arange(2)}, prefix, durable=False)
    rewrite_index_entry(prefix, b"w", lambda e: setattr(e, "dtype", 99))
    with pytest.raises(fastckpt.UnsupportedDtypeError):
        fastckpt.load(prefix)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.verify(prefix)
    assert [(b.name, b.reason) for b in e.value.report.bad] == [
        ("w", "has DataType 99, which no checkpoint tensor can have")
    ]
