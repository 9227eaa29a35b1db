"""The native write side of a multi-rank save: partial save jobs, chunk
CRCs, and the commit of every rank's files under one index.

Each rank writes its own data files (``SaveJob(..., shard_base, total_shards,
commit=False)``): shards ``[base, base + k)`` of ``total_shards``, under
fastckpt's locked temporary names, fsynced when durable; ``finish()`` reports
the entries (``Reader.entries()``'s tuple format, global shard ids) and the
``(temp, final)`` names. One process merges every rank's entries and files
(``commit_bundle``), writing the one index and committing exactly as a
single-process save commits. Then each rank releases its files: closed
(committed) or removed (failed). Here ranks are jobs in one process.

Chunk CRCs (``chunk_bytes``) are the unmasked CRC32C of each consecutive
chunk of an entry's stored bytes, packed little-endian; they are checked
against ``google_crc32c`` over the file bytes.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import random
import re
import struct

import google_crc32c
import ml_dtypes
import numpy as np
import pytest
from sim_device import SimDeviceArray

import fastckpt
from fastckpt import _native, config
from fastckpt.format import dtypes
from fastckpt.format.slices import encode_slice_key
from fastckpt.writer import partitioned_items, prepare_items

testing = _native.testing
COUNT_ONLY = 10**9
KiB = 1024
MiB = 1024 * KiB


@pytest.fixture(autouse=True)
def _disarm():
    testing.disarm_faults()
    yield
    testing.disarm_faults()


# -- helpers -------------------------------------------------------------------


class Rank:
    """One rank's part of a checkpoint: a SaveJob that does not commit."""

    def __init__(self, prefix, tensors, base, total, num_shards=1, items=None, **kw):
        if items is None:
            items, self.keep = prepare_items(tensors)
        else:
            self.keep = tensors
        self.job = _native.SaveJob(
            str(prefix), items, num_shards=num_shards, shard_base=base, total_shards=total, commit=False, **kw
        )
        self.result = None

    def finish(self):
        self.job.snapshot()
        self.result = self.job.finish()
        return self.result


def merge(ranks, extra_entries=()):
    entries = [e for r in ranks for e in r.result["entries"]] + list(extra_entries)
    files = [f for r in ranks for f in r.result["data_files"]]
    return entries, files


def listing(directory) -> dict:
    """name -> SHA-256 of every file in `directory`."""
    return {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in sorted(os.listdir(directory))}


def temp_names(directory) -> list:
    return sorted(n for n in os.listdir(directory) if ".tempstate" in n)


def assert_values(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        value = np.asarray(value)
        assert got[name].dtype == value.dtype, name
        assert got[name].shape == value.shape, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def file_bytes(prefix: str, entry, total: int) -> bytes:
    key, _dt, _shape, shard, offset, size, _crc, _slices = entry
    with open(f"{prefix}.data-{shard:05d}-of-{total:05d}", "rb") as f:
        f.seek(offset)
        data = f.read(size)
    assert len(data) == size, key
    return data


def expected_chunks(data: bytes, chunk: int) -> bytes:
    return b"".join(struct.pack("<I", google_crc32c.value(data[i : i + chunk])) for i in range(0, len(data), chunk))


def masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# -- several ranks, one checkpoint ---------------------------------------------

FULL = np.arange(6 * 4, dtype=np.float32).reshape(6, 4) / 3
PART_SLICES = [[(0, 2), (0, -1)], [(2, 4), (0, -1)]]


def rank_tensors():
    rng = np.random.default_rng(7)
    return [
        {
            "dense/kernel": rng.standard_normal((64, 33)).astype(np.float32),
            "global_step": np.int64(1000),
            encode_slice_key("part", PART_SLICES[0]): FULL[0:2],
        },
        {
            "vocab": np.array([b"hello", b"", b"w\x00rld" * 50], dtype=object),
            "empty": np.zeros((0, 5), np.float64),
            "bf16": rng.standard_normal(1000).astype(ml_dtypes.bfloat16),
        },
        {
            "dense/bias": rng.standard_normal(33).astype(np.float64),
            "flags": np.array([True, False, True]),
            encode_slice_key("part", PART_SLICES[1]): FULL[2:6],
        },
    ]


def rank_items(tensors):
    """prepare_items, allowing the encoded slice keys of the partitioned tensor."""
    from fastckpt.writer import prepare_item

    items, keep = [], []
    for name, value in tensors.items():
        item, owner = prepare_item(name, value, slice_key=isinstance(name, bytes))
        items.append(item)
        keep.append(owner)
    return items, keep


def part_entry():
    """The data-less entry of the partitioned tensor, as rank 0 adds it."""
    return (b"part", dtypes.DT_FLOAT, (6, 4), 0, 0, 0, 0, [list(s) for s in PART_SLICES])


def write_ranks(prefix, layout, total, **kw):
    """layout: (shard_base, num_shards) per rank. Returns the finished ranks."""
    ranks = []
    for tensors, (base, count) in zip(rank_tensors(), layout):
        items, keep = rank_items(tensors)
        ranks.append(Rank(prefix, keep, base, total, num_shards=count, items=items, **kw))
    for r in ranks:
        r.finish()
    return ranks


def want_values():
    want = {}
    for t in rank_tensors():
        want.update({k: v for k, v in t.items() if isinstance(k, str)})
    want["part"] = FULL
    want["vocab"] = np.array([b"hello", b"", b"w\x00rld" * 50], dtype=object)
    return want


def test_three_ranks_commit_one_checkpoint_that_fastckpt_and_tensorflow_read(tmp_path):
    prefix = str(tmp_path / "model")
    ranks = write_ranks(prefix, [(0, 2), (2, 1), (3, 2)], total=5, threads=2)
    # Nothing is visible yet: only locked temporary files, named after their final names.
    names = [f for r in ranks for f in r.result["data_files"]]
    assert [final for _t, final in names] == [f"{prefix}.data-{s:05d}-of-00005" for s in range(5)]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(t) for t, _f in names)
    for temp, final in names:
        assert re.fullmatch(re.escape(final) + r"\.tempstate-fastckpt-[0-9a-f]{16}", temp)
    assert _native.remove_stale_temp_files(str(tmp_path), 0) == 0  # locked by their ranks
    assert [r.result["num_shards"] for r in ranks] == [2, 1, 2]
    for r, (base, count) in zip(ranks, [(0, 2), (2, 1), (3, 2)]):
        assert {e[3] for e in r.result["entries"] if e[7] is None} <= set(range(base, base + count))
        assert r.result["data_bytes"] == sum(e[5] for e in r.result["entries"])
        assert sorted(r.result) == ["chunk_crcs", "data_bytes", "data_files", "entries", "num_shards"]
        assert r.result["chunk_crcs"] == {}

    entries, files = merge(ranks, [part_entry()])
    random.Random(3).shuffle(entries)  # any order
    random.Random(4).shuffle(files)
    out = _native.commit_bundle(prefix, entries, files, 5)
    assert out == [f"{prefix}.data-{s:05d}-of-00005" for s in range(5)] + [prefix + ".index"]
    for r in ranks:
        r.job.release(True)
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in out)

    # The index holds exactly the merged entries, sorted, as the ranks reported them.
    native = _native.Reader(prefix)
    assert native.entries() == sorted(entries)
    assert native.num_shards == 5
    native.close()

    want = want_values()
    assert_values(fastckpt.load(prefix), want)
    report = fastckpt.verify(prefix)
    assert (report.ok, report.tensors, report.files) == (True, len(want), 5)
    assert report.bytes == sum(e[5] for e in entries)
    import tensorflow as tf

    tf_reader = tf.train.load_checkpoint(prefix)
    assert sorted(tf_reader.get_variable_to_shape_map()) == sorted(want)
    for name, value in want.items():
        got = tf_reader.get_tensor(name)
        value = np.asarray(value)
        if value.dtype == object:
            assert list(got.ravel()) == list(value.ravel()), name
        else:
            assert got.dtype == value.dtype, name
            np.testing.assert_array_equal(got, value, err_msg=name)


def test_merged_entries_equal_the_committed_index(tmp_path):
    prefix = str(tmp_path / "m")
    ranks = write_ranks(prefix, [(0, 1), (1, 1), (2, 1)], total=3, durable=False)
    entries, files = merge(ranks, [part_entry()])
    _native.commit_bundle(prefix, entries, files, 3, durable=False)
    for r in ranks:
        r.job.release(True)
    reader = _native.Reader(prefix)
    assert reader.entries() == sorted(entries)
    reader.close()
    fastckpt.verify(prefix)


# -- byte identity with a single-process save ------------------------------------


def identity_items():
    """Items of many kinds, enough of them for an index of several 256 KiB blocks."""
    rng = np.random.default_rng(11)
    tensors = {f"layer_{i:05d}/w": rng.standard_normal(3 + i % 5).astype(np.float32) for i in range(12000)}
    tensors.update(
        {
            "big": rng.standard_normal(700_000).astype(np.float32),
            "names": np.array([b"a", b"bc" * 100, b""], dtype=object),
            "zero": np.zeros((0,), np.int32),
            "step": np.int64(5),
        }
    )
    items, keep = prepare_items(tensors)
    part_items, part_keep = partitioned_items(
        "part", (6, 4), [(PART_SLICES[0], FULL[0:2]), (PART_SLICES[1], FULL[2:6])]
    )
    return items + part_items, keep + part_keep + [tensors]


def dir_bytes(directory) -> dict:
    return {n: (directory / n).read_bytes() for n in sorted(os.listdir(directory))}


def test_partial_jobs_with_the_single_process_layout_write_identical_files(tmp_path):
    items, _keep = identity_items()
    (tmp_path / "single").mkdir()
    (tmp_path / "one_job").mkdir()
    (tmp_path / "per_shard").mkdir()
    single = _native.SaveJob(str(tmp_path / "single" / "ck"), items, num_shards=3, threads=3, durable=False)
    single.snapshot()
    assert single.finish()["num_shards"] == 3
    reader = _native.Reader(str(tmp_path / "single" / "ck"))
    stored = reader.entries()
    reader.close()
    data_less = [e for e in stored if e[7] is not None]
    assert [e[0] for e in data_less] == [b"part"]

    # One job writing every shard, committed through commit_bundle.
    job = _native.SaveJob(
        str(tmp_path / "one_job" / "ck"),
        items,
        num_shards=3,
        threads=3,
        durable=False,
        shard_base=0,
        total_shards=3,
        commit=False,
    )
    job.snapshot()
    r = job.finish()
    assert sorted(r["entries"]) == sorted(stored)
    _native.commit_bundle(str(tmp_path / "one_job" / "ck"), r["entries"], r["data_files"], 3, durable=False)
    job.release(True)

    # One job per shard with the items the single-process plan put there; the
    # partitioned tensor's data-less entry added to the merged entries.
    shard_of = {e[0]: e[3] for e in stored}
    jobs, results = [], []
    for s in range(3):
        mine = [it for it in items if it[5] is None and shard_of[it[0]] == s]
        j = _native.SaveJob(
            str(tmp_path / "per_shard" / "ck"),
            mine,
            num_shards=1,
            threads=2,
            durable=False,
            shard_base=s,
            total_shards=3,
            commit=False,
        )
        j.snapshot()
        results.append(j.finish())
        jobs.append(j)
    entries = [e for res in reversed(results) for e in res["entries"]] + data_less
    files = [f for res in results for f in res["data_files"]]
    _native.commit_bundle(str(tmp_path / "per_shard" / "ck"), entries, files, 3, durable=False)
    for j in jobs:
        j.release(True)

    want = dir_bytes(tmp_path / "single")
    assert sorted(want) == ["ck.data-00000-of-00003", "ck.data-00001-of-00003", "ck.data-00002-of-00003", "ck.index"]
    assert len(want["ck.index"]) > 256 * KiB  # more than one table block
    assert dir_bytes(tmp_path / "one_job") == want
    assert dir_bytes(tmp_path / "per_shard") == want


def test_a_committed_job_with_total_shards_equal_to_its_count_is_a_plain_save(tmp_path):
    items, _keep = identity_items()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _native.write_bundle(str(tmp_path / "a" / "ck"), items, num_shards=2, durable=False)
    out = _native.write_bundle(str(tmp_path / "b" / "ck"), items, durable=False, shard_base=0, total_shards=2)
    assert out["num_shards"] == 2
    assert sorted(out) == ["data_bytes", "files", "num_shards"]
    assert dir_bytes(tmp_path / "b") == dir_bytes(tmp_path / "a")


# -- chunk CRCs ------------------------------------------------------------------


def chunk_tensors(chunk: int) -> dict:
    rng = np.random.default_rng(chunk % 1000)
    return {
        "small": rng.integers(0, 255, 100, dtype=np.uint8),  # smaller than a chunk
        "exact": rng.integers(0, 255, 2 * chunk, dtype=np.uint8),  # exactly two chunks
        "ragged": rng.integers(0, 255, 3 * chunk + 5, dtype=np.uint8),  # a short last chunk
        "large": rng.standard_normal((5 * MiB + 12) // 4).astype(np.float32),  # many pieces
        "zero": np.zeros((0, 3), np.float32),
        "strings": np.array([b"x" * 5000, b"", b"yz" * 3000, b"q"], dtype=object),
    }


def check_chunk_crcs(prefix: str, result: dict, entries, total: int, chunk: int) -> None:
    data_entries = [e for e in entries if e[7] is None]
    assert sorted(result["chunk_crcs"]) == sorted(e[0] for e in data_entries)
    for e in data_entries:
        data = file_bytes(prefix, e, total)
        got = result["chunk_crcs"][e[0]]
        assert got == expected_chunks(data, chunk), e[0]
        assert len(got) == 4 * (-(-len(data) // chunk))
        if e[1] != dtypes.DT_STRING:  # the entry's CRC stays TensorFlow's: of its bytes
            assert e[6] == masked(google_crc32c.value(data)), e[0]


CHUNKS = [4096, 12288, 64 * KiB, 1 * MiB, 4 * MiB]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_chunk_crcs_of_a_committed_host_save(tmp_path, chunk):
    items, _keep = prepare_items(chunk_tensors(chunk))
    prefix = str(tmp_path / "ck")
    # Small tasks: "large" is cut into 256 KiB pieces, so a chunk larger than
    # that spans pieces, and a 12 KiB chunk does not divide a piece.
    out = _native.write_bundle(
        prefix, items, num_shards=2, threads=3, durable=False, task_bytes=256 * KiB, chunk_bytes=chunk
    )
    assert sorted(out) == ["chunk_crcs", "data_bytes", "files", "num_shards"]
    reader = _native.Reader(prefix)
    entries = reader.entries()
    reader.close()
    check_chunk_crcs(prefix, out, entries, 2, chunk)
    assert out["chunk_crcs"][b"zero"] == b""
    # The index (entry CRCs included) is the one a save without chunk CRCs writes.
    plain = str(tmp_path / "plain")
    _native.write_bundle(plain, items, num_shards=2, threads=3, durable=False, task_bytes=256 * KiB)
    assert (tmp_path / "plain.index").read_bytes() == (tmp_path / "ck.index").read_bytes()


@pytest.mark.parametrize("chunk", [4096, 12288, 1 * MiB, 4 * MiB])
@pytest.mark.parametrize("mode", ["direct", "snapshot", "device"])
def test_chunk_crcs_of_partial_jobs(tmp_path, monkeypatch, chunk, mode):
    """Host arrays written in place, asynchronous snapshots (staged host
    arrays) and device arrays on the simulated device, all through 1 MiB
    staging buffers: chunks of 4 MiB span buffers."""
    monkeypatch.setenv("FASTCKPT_STAGING_MB", "1")
    config.apply_staging_settings()
    if mode == "device":
        testing.install_simulated_device()
    try:
        tensors = chunk_tensors(chunk)
        if mode == "device":
            tensors = {k: v if v.dtype == object else SimDeviceArray(v) for k, v in tensors.items()}
        names = sorted(tensors)
        halves = [{k: tensors[k] for k in names[:3]}, {k: tensors[k] for k in names[3:]}]
        prefix = str(tmp_path / "ck")
        ranks = [
            Rank(prefix, t, base, 3, num_shards=count, threads=2, chunk_bytes=chunk, snapshot_host=mode == "snapshot")
            for t, (base, count) in zip(halves, [(0, 2), (2, 1)])
        ]
        for r in ranks:
            r.job.start_writing()
            r.finish()
        entries, files = merge(ranks)
        _native.commit_bundle(prefix, entries, files, 3)
        for r in ranks:
            r.job.release(True)
            check_chunk_crcs(prefix, r.result, r.result["entries"], 3, chunk)
        assert_values(fastckpt.load(prefix), chunk_tensors(chunk))
        fastckpt.verify(prefix)
    finally:
        if mode == "device":
            testing.uninstall_device()
        _native.trim_staging()
    assert _native.staging_stats()["lent"] == 0


def test_chunk_crcs_of_a_staged_committed_save(tmp_path, sim_device):
    config.apply_staging_settings()
    chunk = 12288
    tensors = {k: v if v.dtype == object else SimDeviceArray(v) for k, v in chunk_tensors(chunk).items()}
    items, _keep = prepare_items(tensors)
    job = _native.SaveJob(str(tmp_path / "ck"), items, num_shards=2, threads=2, chunk_bytes=chunk)
    job.start_writing()
    job.snapshot()
    out = job.finish()
    reader = _native.Reader(str(tmp_path / "ck"))
    entries = reader.entries()
    reader.close()
    check_chunk_crcs(str(tmp_path / "ck"), out, entries, 2, chunk)


@pytest.mark.parametrize("bad", [1, 4095, 5000, (1 << 30) + 4096, -4096])
def test_chunk_bytes_must_be_a_multiple_of_4096_up_to_1_gib(tmp_path, bad):
    items, _keep = prepare_items({"x": np.ones(3)})
    message = f"chunk_bytes must be 0 or a multiple of 4096 of at most 1 GiB (1073741824), not {bad}"
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.write_bundle(str(tmp_path / "ck"), items, chunk_bytes=bad)
    assert str(info.value) == message
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.SaveJob(str(tmp_path / "ck"), items, chunk_bytes=bad, commit=False, total_shards=1)
    assert str(info.value) == message
    assert os.listdir(tmp_path) == []


def test_the_largest_chunk_size_is_accepted(tmp_path):
    items, _keep = prepare_items({"x": np.arange(10, dtype=np.int64)})
    out = _native.write_bundle(str(tmp_path / "ck"), items, chunk_bytes=1 << 30, durable=False)
    assert out["chunk_crcs"] == {b"x": struct.pack("<I", google_crc32c.value(np.arange(10).tobytes()))}


# -- shard numbering arguments ------------------------------------------------------


@pytest.mark.parametrize(
    "kw,message",
    [
        (
            dict(shard_base=2, total_shards=4, num_shards=3),
            "shard_base (2) + num_shards (3) must be at most total_shards (4)",
        ),
        (dict(shard_base=4, total_shards=4), "shard_base 4 is not below total_shards 4"),
        (dict(shard_base=1), "shard_base 1 needs total_shards (the number of data files of the whole checkpoint)"),
        (dict(shard_base=-1, total_shards=4), "shard_base must be >= 0, not -1"),
        (dict(total_shards=-2), "total_shards must be between 0 and 99999, not -2"),
        (dict(total_shards=100000), "total_shards must be between 0 and 99999, not 100000"),
    ],
)
def test_bad_shard_numbering_is_refused(tmp_path, kw, message):
    items, _keep = prepare_items({"x": np.ones(3)})
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.SaveJob(str(tmp_path / "ck"), items, commit=False, **kw)
    assert str(info.value) == message
    assert os.listdir(tmp_path) == []


def test_a_committing_save_must_write_every_shard(tmp_path):
    items, _keep = prepare_items({"x": np.ones(3)})
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.write_bundle(str(tmp_path / "ck"), items, shard_base=1, total_shards=4, num_shards=2)
    assert str(info.value) == (
        "a save that commits must write all 4 shards of its checkpoint, not shards 1 to 2 (a part of a "
        "checkpoint is written without committing, then committed with the other parts)"
    )
    with pytest.raises(fastckpt.InvalidArgumentError) as info:
        _native.SaveJob(str(tmp_path / "ck"), items, shard_base=0, total_shards=3, num_shards=1)
    assert "not shards 0 to 0" in str(info.value)
    assert os.listdir(tmp_path) == []
    # Without a shard count, a committing save writes them all.
    out = _native.write_bundle(str(tmp_path / "ck"), items, total_shards=3, durable=False)
    assert out["num_shards"] == 3
    assert sorted(os.listdir(tmp_path)) == [
        "ck.data-00000-of-00003",
        "ck.data-00001-of-00003",
        "ck.data-00002-of-00003",
        "ck.index",
    ]


def test_an_automatic_shard_count_fits_the_remaining_shards(tmp_path):
    items, _keep = prepare_items({f"t{i}": np.ones(10) for i in range(8)})
    job = _native.SaveJob(
        str(tmp_path / "ck"),
        items,
        threads=4,
        num_shards=0,
        shard_base=3,
        total_shards=4,
        commit=False,
        task_bytes=4096,
    )
    out = job.finish()
    assert out["num_shards"] == 1
    assert [f for _t, f in out["data_files"]] == [str(tmp_path / "ck.data-00003-of-00004")]
    assert {e[3] for e in out["entries"]} == {3}
    job.release(False)
    assert os.listdir(tmp_path) == []


# -- release --------------------------------------------------------------------------


def one_rank(tmp_path, **kw) -> Rank:
    r = Rank(tmp_path / "ck", {"a": np.arange(100.0), "b": np.ones((3, 3), np.int32)}, 1, 3, num_shards=2, **kw)
    r.finish()
    return r


def test_release_false_removes_every_file(tmp_path):
    r = one_rank(tmp_path)
    assert len(temp_names(tmp_path)) == 2
    r.job.release(False)
    assert os.listdir(tmp_path) == []


def test_a_job_dropped_without_release_removes_its_files(tmp_path):
    r = one_rank(tmp_path)
    assert len(temp_names(tmp_path)) == 2
    del r
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_release_true_without_a_commit_leaves_unlocked_files_for_cleanup(tmp_path):
    r = one_rank(tmp_path)
    temps = sorted(os.path.basename(t) for t, _f in r.result["data_files"])
    assert _native.remove_stale_temp_files(str(tmp_path), 0) == 0  # locked
    r.job.release(True)
    assert temp_names(tmp_path) == temps == sorted(os.listdir(tmp_path))
    assert _native.remove_stale_temp_files(str(tmp_path), 0) == 2  # unlocked now
    assert os.listdir(tmp_path) == []


def test_release_runs_once_and_only_after_an_uncommitted_finish(tmp_path):
    items, _keep = prepare_items({"a": np.ones(4)})
    job = _native.SaveJob(str(tmp_path / "p"), items, shard_base=0, total_shards=1, commit=False)
    with pytest.raises(fastckpt.FailedPreconditionError) as info:
        job.release(False)
    assert str(info.value) == "release() comes after finish() has returned"
    job.finish()
    job.release(True)
    with pytest.raises(fastckpt.FailedPreconditionError) as info:
        job.release(False)
    assert str(info.value) == "the save was already released"
    assert len(temp_names(tmp_path)) == 1  # the first release stands

    committing = _native.SaveJob(str(tmp_path / "q"), items)
    committing.finish()
    with pytest.raises(fastckpt.FailedPreconditionError) as info:
        committing.release(True)
    assert str(info.value) == "release() applies only to a save that does not commit (commit=False)"


def test_release_after_a_failed_finish_has_nothing_left_to_do(tmp_path):
    items, _keep = prepare_items({"a": np.ones(4)})
    job = _native.SaveJob(str(tmp_path / "p"), items, shard_base=0, total_shards=2, commit=False)
    testing.arm_fault("write", 0, errno.ENOSPC)
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        job.finish()
    testing.disarm_faults()
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == str(tmp_path / "p.data-00000-of-00002")
    assert os.listdir(tmp_path) == []
    job.release(False)
    assert os.listdir(tmp_path) == []


def test_uncommitted_durable_finish_fsyncs_data_and_renames_nothing(tmp_path):
    items, _keep = prepare_items({"a": np.ones(4), "b": np.zeros(8)})
    job = _native.SaveJob(
        str(tmp_path / "p"), items, num_shards=2, shard_base=1, total_shards=3, commit=False, durable=True
    )
    testing.arm_fault("sync", COUNT_ONLY, 0)
    job.finish()
    assert testing.fault_hits() == 2  # both data files, nothing else
    testing.arm_fault("rename", COUNT_ONLY, 0)
    job.release(True)
    assert testing.fault_hits() == 0
    assert len(temp_names(tmp_path)) == 2


# -- commit_bundle failures -----------------------------------------------------------

POINTS = ["create", "write", "sync", "rename", "close", "sync_dir"]


def new_tensors():
    return {f"t{i}": np.full(2000 + i, i + 0.5) for i in range(6)}


def old_tensors():
    return {f"t{i}": np.full(1000 + i, -i, np.int32) for i in range(6)}


def partial_save(prefix):
    """Two ranks writing the three shards of `prefix`."""
    t = new_tensors()
    ranks = [
        Rank(prefix, {k: t[k] for k in ("t0", "t1", "t2", "t3")}, 0, 3, num_shards=2),
        Rank(prefix, {k: t[k] for k in ("t4", "t5")}, 2, 3, num_shards=1),
    ]
    for r in ranks:
        r.finish()
    return ranks


def commit(prefix, ranks):
    entries, files = merge(ranks)
    return _native.commit_bundle(prefix, entries, files, 3)


def single_save(prefix):
    items, _keep = prepare_items(new_tensors())
    job = _native.SaveJob(prefix, items, num_shards=3, threads=2)
    job.finish()


def count_calls(tmp_path_factory, point):
    """Calls at `point` of a commit_bundle and of a single-process save."""
    d = tmp_path_factory.mktemp("count")
    ranks = partial_save(str(d / "p"))
    testing.arm_fault(point, COUNT_ONLY, 0)
    commit(str(d / "p"), ranks)
    n_commit = testing.fault_hits()
    for r in ranks:
        r.job.release(True)
    testing.arm_fault(point, COUNT_ONLY, 0)
    single_save(str(d / "s"))
    n_single = testing.fault_hits()
    testing.disarm_faults()
    return n_commit, n_single


def test_commit_bundle_makes_only_the_commits_calls(tmp_path_factory):
    counts = {p: count_calls(tmp_path_factory, p) for p in POINTS}
    # The index's create, write, fsync and close; every data file's rename,
    # then the index's; one directory fsync. The data files are the ranks'.
    assert {p: c for p, (c, _s) in counts.items()} == {
        "create": 1,
        "write": 1,
        "sync": 1,
        "rename": 4,
        "close": 1,
        "sync_dir": 1,
    }
    assert {p: s for p, (_c, s) in counts.items()}["rename"] == 4


def describe(exc, directory) -> tuple:
    return (
        type(exc),
        exc.errno,
        exc.strerror,
        str(exc).replace(str(directory), "DIR"),
        (exc.filename or "").replace(str(directory), "DIR"),
    )


@pytest.mark.parametrize("old_shards", [3, 2], ids=["same-count", "other-count"])
@pytest.mark.parametrize(
    "point,which",
    [
        (p, w)
        for p in POINTS
        for w in ("first", "last")
        if not (w == "last" and p in ("create", "write", "sync", "close", "sync_dir"))
    ]
    + [("rename", "middle")],
)
def test_commit_bundle_failure_leaves_what_a_single_process_save_leaves(
    tmp_path, tmp_path_factory, point, which, old_shards
):
    n_commit, n_single = count_calls(tmp_path_factory, point)
    skip = {"first": 0, "middle": n_commit // 2, "last": n_commit - 1}[which]
    # The commit's calls are the single-process save's last ones at create,
    # write and sync (its data files come first); the same ones at rename,
    # close (the index closes first) and sync_dir.
    single_skip = skip + (n_single - n_commit if point in ("create", "write", "sync") else 0)
    outcomes = {}
    for kind in ("partial", "single"):
        d = tmp_path / kind
        d.mkdir()
        prefix = str(d / "model")
        fastckpt.save(old_tensors(), prefix, num_shards=old_shards, durable=False)
        before = listing(d)
        ranks = partial_save(prefix) if kind == "partial" else None
        testing.arm_fault(point, skip if kind == "partial" else single_skip, errno.EIO)
        with pytest.raises(fastckpt.CheckpointIOError) as info:
            if kind == "partial":
                commit(prefix, ranks)
            else:
                single_save(prefix)
        testing.disarm_faults()
        if kind == "partial":
            # No temporary index; the ranks' own temporary files are theirs to remove.
            assert not [n for n in temp_names(d) if ".index" in n]
            for r in ranks:
                r.job.release(False)
        assert temp_names(d) == []
        after = listing(d)
        # No new checkpoint is visible: an index, if any, is the old one.
        assert after.get("model.index") in (None, before["model.index"])
        if after == before:
            assert_values(fastckpt.load(prefix), old_tensors())
        outcomes[kind] = (describe(info.value, d), after)
    assert outcomes["partial"] == outcomes["single"]
    exc_desc = outcomes["partial"][0]
    assert exc_desc[1] == errno.EIO and exc_desc[2] == os.strerror(errno.EIO)
    # Before the old index is touched (same count) or replaced (another count),
    # the old checkpoint is whole.
    untouched = point in ("create", "write", "sync") or (old_shards == 2 and point == "rename")
    assert (outcomes["partial"][1] == listing_of_old(tmp_path, old_shards)) == untouched


def listing_of_old(tmp_path, old_shards):
    d = tmp_path / f"old{old_shards}"
    if not d.exists():
        d.mkdir()
        fastckpt.save(old_tensors(), str(d / "model"), num_shards=old_shards, durable=False)
    return listing(d)


def test_failed_commit_names_the_final_file_and_keeps_the_earlier_checkpoint(tmp_path):
    prefix = str(tmp_path / "model")
    fastckpt.save(old_tensors(), prefix, num_shards=2)
    before = listing(tmp_path)
    ranks = partial_save(prefix)
    testing.arm_fault("rename", 1, errno.ENOSPC)  # the second data file
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        commit(prefix, ranks)
    testing.disarm_faults()
    assert info.value.errno == errno.ENOSPC
    assert info.value.filename == prefix + ".data-00001-of-00003"
    assert str(info.value) == (
        f"cannot rename the temporary file into place as '{prefix}.data-00001-of-00003': {os.strerror(errno.ENOSPC)}"
    )
    for r in ranks:
        r.job.release(False)
    assert listing(tmp_path) == before
    assert_values(fastckpt.load(prefix), old_tensors())


def test_commit_replaces_an_earlier_checkpoint_of_another_count(tmp_path):
    prefix = str(tmp_path / "model")
    fastckpt.save(old_tensors(), prefix, num_shards=4)
    (tmp_path / "model-1.index").write_bytes(b"another prefix")
    ranks = partial_save(prefix)
    commit(prefix, ranks)
    for r in ranks:
        r.job.release(True)
    assert sorted(os.listdir(tmp_path)) == [
        "model-1.index",
        "model.data-00000-of-00003",
        "model.data-00001-of-00003",
        "model.data-00002-of-00003",
        "model.index",
    ]
    assert_values(fastckpt.load(prefix), new_tensors())


# -- commit_bundle arguments ----------------------------------------------------------


def bad_commit_cases(prefix):
    ranks = partial_save(prefix)
    entries, files = merge(ranks)
    other_prefix = prefix + "-1"
    where = f"commit_bundle: checkpoint '{prefix}': "
    t0 = next(e for e in entries if e[0] == b"t0")
    cases = {
        "duplicate key": (entries + [t0], files, 3, where + "duplicate tensor name 't0'"),
        "missing shard": (
            entries,
            files[:2],
            3,
            where + f"no data file was listed for shard 2 ('{prefix}.data-00002-of-00003')",
        ),
        "shard listed twice": (
            entries,
            files + [files[0]],
            3,
            where + f"data file '{prefix}.data-00000-of-00003' is listed twice",
        ),
        "another prefix": (
            entries,
            files[:2] + [(files[2][0], other_prefix + ".data-00002-of-00003")],
            3,
            where + f"'{other_prefix}.data-00002-of-00003' is not the name of a data file of "
            f"this checkpoint ({prefix}.data-00000-of-00003 to {prefix}.data-00002-of-00003)",
        ),
        "another count": (
            entries,
            files[:2] + [(files[2][0], prefix + ".data-00002-of-00004")],
            3,
            where + f"'{prefix}.data-00002-of-00004' is not the name of a data file of this "
            f"checkpoint ({prefix}.data-00000-of-00003 to {prefix}.data-00002-of-00003)",
        ),
        "six digits": (
            entries,
            files[:2] + [(files[2][0], prefix + ".data-000002-of-00003")],
            3,
            where + f"'{prefix}.data-000002-of-00003' is not the name of a data file of this "
            f"checkpoint ({prefix}.data-00000-of-00003 to {prefix}.data-00002-of-00003)",
        ),
        "unwritten shard": (
            entries + [(b"extra", 1, (2,), 3, 0, 8, 0, None)],
            files,
            3,
            where + "tensor 'extra' is in shard 3, which none of its 3 data files holds",
        ),
        "negative shard": (
            entries + [(b"extra", 1, (2,), -1, 0, 8, 0, None)],
            files,
            3,
            where + "tensor 'extra' is in shard -1, which none of its 3 data files holds",
        ),
        "negative offset": (
            entries + [(b"extra", 1, (2,), 0, -8, 8, 0, None)],
            files,
            3,
            where + "tensor 'extra' has a negative offset (-8)",
        ),
        "not a temporary file": (
            entries,
            files[:2] + [(files[1][0], files[2][1])],
            3,
            where + f"'{files[1][0]}' is not a temporary file of '{files[2][1]}'",
        ),
        "empty key": (entries + [(b"", 1, (2,), 0, 0, 8, 0, None)], files, 3, where + "tensor names must not be empty"),
        "no shards": (entries, files, 0, where + "total_shards must be between 1 and 99999, not 0"),
        "short tuple": (
            entries + [(b"x", 1, (2,), 0, 0, 8, 0)],
            files,
            3,
            "commit_bundle: entry 6: expected a tuple (key, dtype, shape, shard, offset, size, masked_crc32c, slices)",
        ),
        "str key": (
            entries + [("x", 1, (2,), 0, 0, 8, 0, None)],
            files,
            3,
            "commit_bundle: entry 6: the key must be bytes, not str",
        ),
        "bad crc": (
            entries + [(b"x", 1, (2,), 0, 0, 8, 1 << 32, None)],
            files,
            3,
            "commit_bundle: entry 6: masked_crc32c is out of range (0 to 4294967295)",
        ),
        "bad slices": (
            entries + [(b"x", 1, (2,), 0, 0, 0, 0, [[(0, -2)]])],
            files,
            3,
            "commit_bundle: entry 6: a slice length is out of range (-1 to 9223372036854775807)",
        ),
        "bad data file": (
            entries,
            files + [(files[0][0],)],
            3,
            "commit_bundle: data file 3: expected a (temp_path, final_path) pair of str",
        ),
    }
    return ranks, cases


def test_bad_commit_arguments_are_invalid_argument_errors_that_change_nothing(tmp_path):
    prefix = str(tmp_path / "model")
    ranks, cases = bad_commit_cases(prefix)
    before = listing(tmp_path)
    for name, (entries, files, total, message) in cases.items():
        with pytest.raises(fastckpt.InvalidArgumentError) as info:
            _native.commit_bundle(prefix, entries, files, total)
        assert str(info.value) == message, name
        assert listing(tmp_path) == before, name
    # The ranks' files are untouched: the good arguments still commit.
    assert commit(prefix, ranks)[-1] == prefix + ".index"
    for r in ranks:
        r.job.release(True)
    assert_values(fastckpt.load(prefix), new_tensors())


def test_release_true_reports_a_deferred_close_error_and_still_closes(tmp_path):
    r = one_rank(tmp_path)
    final = str(tmp_path / "ck.data-00002-of-00003")
    assert [f for _t, f in r.result["data_files"]] == [str(tmp_path / "ck.data-00001-of-00003"), final]
    testing.arm_fault("close", 1, errno.EIO)  # the second data file's close()
    with pytest.raises(fastckpt.CheckpointIOError) as info:
        r.job.release(True)
    testing.disarm_faults()
    assert (info.value.errno, info.value.filename) == (errno.EIO, final)
    assert str(info.value) == f"close failed on '{final}': {os.strerror(errno.EIO)}"
    # Both descriptors are closed (unlocked): cleanup may remove the files.
    assert _native.remove_stale_temp_files(str(tmp_path), 0) == 2
    with pytest.raises(fastckpt.FailedPreconditionError):
        r.job.release(True)


def test_commit_bundle_takes_lists_as_a_transport_may_turn_tuples_into_them(tmp_path):
    prefix = str(tmp_path / "m")
    ranks = write_ranks(prefix, [(0, 1), (1, 1), (2, 1)], total=3, durable=False)
    entries, files = merge(ranks, [part_entry()])
    as_lists = [
        [e[0], e[1], list(e[2]), *e[3:7], None if e[7] is None else [[list(x) for x in s] for s in e[7]]]
        for e in entries
    ]
    _native.commit_bundle(prefix, as_lists, [list(f) for f in files], 3, durable=False)
    for r in ranks:
        r.job.release(True)
    reader = _native.Reader(prefix)
    assert reader.entries() == sorted(entries)
    reader.close()
    assert_values(fastckpt.load(prefix), want_values())
