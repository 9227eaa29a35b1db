"""The device staging pipeline (save_job.cc, bundle_reader_device.cc) on the
simulated copy engine: the same pipeline code as with CUDA, with only the
copy calls replaced. Checks byte identity with host saves, chunking and
batching, buffer reuse and bounds, ordering after the caller's stream,
overlap of copies with writes, and errors in a copy or a write mid-stream."""

from __future__ import annotations

import errno
import filecmp
import glob
import os

import ml_dtypes
import numpy as np
import pytest
from sim_device import SimDeviceArray, new_sim_array

import fastckpt
from fastckpt import _native, _native_testing
from fastckpt.writer import prepare_items

MiB = 1 << 20


def _values(rng):
    return {
        "big": rng.standard_normal(9 * MiB // 4 + 123).astype(np.float32),  # ~9 MiB: 10 chunks
        "bf16": rng.standard_normal((64, 33)).astype(ml_dtypes.bfloat16),
        "i8": rng.integers(-128, 127, size=(7, 5), dtype=np.int8),
        "flags": rng.integers(0, 2, size=100).astype(bool),
        "c64": (rng.standard_normal(10) + 1j * rng.standard_normal(10)).astype(np.complex64),
        "scalar": np.array(3.5, dtype=np.float64),
        "empty": np.zeros((0, 4), dtype=np.float32),
        "layer/0/w": rng.standard_normal((300, 200)).astype(np.float16),
    }


def _same_files(a: str, b: str) -> None:
    fa = sorted(os.path.basename(p)[len(os.path.basename(a)) :] for p in glob.glob(a + ".*"))
    fb = sorted(os.path.basename(p)[len(os.path.basename(b)) :] for p in glob.glob(b + ".*"))
    assert fa == fb and fa
    for suffix in fa:
        assert filecmp.cmp(a + suffix, b + suffix, shallow=False), suffix


def _contents(prefix) -> dict:
    """Every file whose name starts with the prefix (temp files included)."""
    out = {}
    for p in glob.glob(str(prefix) + "*"):
        with open(p, "rb") as f:
            out[p] = f.read()
    return out


@pytest.mark.parametrize("num_shards", [None, 1, 3])
def test_device_save_is_byte_identical_to_host_save(tmp_path, sim_device, num_shards):
    values = _values(np.random.default_rng(1))
    host = fastckpt.save(values, tmp_path / "host", num_shards=num_shards)
    dev = fastckpt.save({k: SimDeviceArray(v) for k, v in values.items()}, tmp_path / "dev", num_shards=num_shards)
    assert dev.nbytes == host.nbytes and dev.num_shards == host.num_shards
    _same_files(str(tmp_path / "host"), str(tmp_path / "dev"))
    back = fastckpt.load(tmp_path / "dev")
    for k, v in values.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k


def test_mixed_host_and_device_items(tmp_path, sim_device):
    values = _values(np.random.default_rng(2))
    mixed = {k: (SimDeviceArray(v) if i % 2 else v) for i, (k, v) in enumerate(values.items())}
    fastckpt.save(values, tmp_path / "host")
    fastckpt.save(mixed, tmp_path / "mixed")
    _same_files(str(tmp_path / "host"), str(tmp_path / "mixed"))


def test_large_tensor_is_chunked_and_checksums_combined(tmp_path, sim_device):
    dev = sim_device()
    x = np.arange(5 * MiB // 8 * 3 + 17, dtype=np.float64)  # 15 MiB + 136 bytes: 16 chunks of 1 MiB
    fastckpt.save({"x": SimDeviceArray(x)}, tmp_path / "ck")
    stats = dev.stats()
    assert stats["copies_to_host"] == 16
    assert stats["bytes_to_host"] == x.nbytes
    assert np.array_equal(fastckpt.load(tmp_path / "ck")["x"], x)  # CRC verified on read
    assert fastckpt.verify(tmp_path / "ck").ok


def test_many_small_tensors_share_synchronisations(tmp_path, sim_device):
    dev = sim_device()
    values = {f"t{i:05d}": np.full(16, i, dtype=np.int32) for i in range(10_000)}
    fastckpt.save({k: SimDeviceArray(v) for k, v in values.items()}, tmp_path / "ck", threads=2)
    stats = dev.stats()
    assert stats["copies_to_host"] == 10_000
    # 640 KB in 1 MiB buffers of at most 4096 tensors: a handful of waits, not 10,000.
    assert 1 <= stats["marks_waited"] <= 4
    back = fastckpt.load(tmp_path / "ck")
    assert len(back) == 10_000 and back["t09999"][0] == 9999 and back["t00000"][15] == 0


def test_staging_buffers_are_reused_and_bounded(tmp_path, sim_device):
    sim_device(latency_us=200)
    _native.trim_staging()
    before = _native.staging_stats()
    x = np.random.default_rng(3).standard_normal(40 * MiB // 4).astype(np.float32)
    fastckpt.save({"x": SimDeviceArray(x)}, tmp_path / "ck", threads=2)
    after = _native.staging_stats()
    assert after["acquisitions"] - before["acquisitions"] == 40  # one per 1 MiB chunk
    # A synchronous device save holds at most 3 buffers per writer thread.
    assert after["allocations"] - before["allocations"] <= 6
    assert after["allocated_bytes"] <= 6 * MiB
    assert after["lent"] == 0
    assert np.array_equal(fastckpt.load(tmp_path / "ck")["x"], x)


def test_copies_overlap_writes_and_each_write_follows_its_copy(tmp_path, sim_device):
    dev = sim_device(latency_us=3000)
    x = np.random.default_rng(4).standard_normal(12 * MiB // 4).astype(np.float32)
    items, _keep = prepare_items({"x": SimDeviceArray(x)})
    job = _native.SaveJob(str(tmp_path / "ck"), items, threads=2, durable=False, trace=True)
    job.start_writing()
    job.snapshot()
    job.finish()
    trace = job.trace()
    fills = {t: (b, e) for kind, t, b, e in trace if kind == "f"}
    writes = {t: (b, e) for kind, t, b, e in trace if kind == "w"}
    assert sorted(fills) == sorted(writes) == list(range(12))
    for t, (wb, _we) in writes.items():
        assert wb >= fills[t][1], f"task {t} was written before its copy completed"
    copies = dev.copies()
    assert len(copies) == 12
    overlapped = sum(1 for (_s, _h, _n, cb, ce) in copies for (wb, we) in writes.values() if cb < we and wb < ce)
    assert overlapped >= 1, "no device copy ran while a write was in progress"
    assert np.array_equal(fastckpt.load(tmp_path / "ck")["x"], x)


def test_copies_are_ordered_after_the_callers_stream(tmp_path, sim_device):
    dev = sim_device()
    final = np.full(3 * MiB // 4, 42, dtype=np.int32)
    arr = SimDeviceArray(np.zeros_like(final), stream=7)
    # A "kernel" still running on the caller's stream 7 when save() is called.
    dev.caller_work(7, 100_000, arr.ptr, final.ctypes.data, final.nbytes)
    fastckpt.save({"x": arr}, tmp_path / "ck")
    assert dev.stats()["order_after_calls"] == 1
    assert np.array_equal(fastckpt.load(tmp_path / "ck")["x"], final)


def test_no_stream_means_no_ordering(tmp_path, sim_device):
    dev = sim_device()
    fastckpt.save({"x": SimDeviceArray(np.ones(10))}, tmp_path / "ck")
    assert dev.stats()["order_after_calls"] == 0


@pytest.mark.parametrize("at_enqueue", [False, True])
def test_copy_error_mid_stream_fails_cleanly(tmp_path, sim_device, at_enqueue):
    x = np.random.default_rng(5).standard_normal(8 * MiB // 4).astype(np.float32)
    fastckpt.save({"weights": x}, tmp_path / "ck")  # an earlier checkpoint at the same prefix
    before = _contents(tmp_path / "ck")
    sim_device(fail_copy=3, fail_at_enqueue=at_enqueue)
    with pytest.raises(fastckpt.CudaError, match=r"copying tensor 'weights'.*device.*copy #3") as e:
        fastckpt.save({"weights": SimDeviceArray(x * 2)}, tmp_path / "ck")
    # The class and code a real GPU raises: not "unavailable", which means "no GPU".
    assert not isinstance(e.value, fastckpt.CudaUnavailableError)
    want = ("CUDA_ERROR_INVALID_VALUE", 1) if at_enqueue else ("CUDA_ERROR_ILLEGAL_ADDRESS", 700)
    assert (e.value.error_name, e.value.code) == want
    after = _contents(tmp_path / "ck")
    assert after == before  # no temp files, the old checkpoint untouched
    assert _native.staging_stats()["lent"] == 0


def test_write_error_mid_stream_fails_cleanly(tmp_path, sim_device):
    x = np.random.default_rng(6).standard_normal(8 * MiB // 4).astype(np.float32)
    _native_testing.arm_fault("write", 3, errno.ENOSPC)
    try:
        with pytest.raises(fastckpt.CheckpointIOError) as info:
            fastckpt.save({"w": SimDeviceArray(x)}, tmp_path / "ck")
    finally:
        _native_testing.disarm_faults()
    assert info.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []
    assert _native.staging_stats()["lent"] == 0


def test_without_a_device_path_arrays_are_copied_to_the_host(tmp_path):
    assert _native.device_path() == "cpu"
    x = np.arange(100, dtype=np.int16)
    fastckpt.save({"x": SimDeviceArray(x)}, tmp_path / "dev")
    fastckpt.save({"x": x}, tmp_path / "host")
    _same_files(str(tmp_path / "host"), str(tmp_path / "dev"))


def test_build_info_names_the_device_path(sim_device):
    assert fastckpt.build_info()["device_path"] == "simulated"
    _native_testing.uninstall_device()
    assert fastckpt.build_info()["device_path"] == "cpu"


def test_empty_and_zero_size_device_arrays(tmp_path, sim_device):
    fastckpt.save({"e": SimDeviceArray(np.zeros((3, 0), np.float32))}, tmp_path / "ck")
    assert fastckpt.load(tmp_path / "ck")["e"].shape == (3, 0)


def test_string_tensors_cannot_come_from_a_device(tmp_path, sim_device):
    from fastckpt.writer import write_items

    item = (b"s", 7, (1,), (12345, 8, 0, 0), 0, None)
    with pytest.raises(fastckpt.InvalidArgumentError, match="string tensor 's' cannot live in device memory"):
        write_items([item], tmp_path / "ck", num_shards=None, threads=None, durable=False)


# -- restore to the device ---------------------------------------------------


def test_load_to_device_returns_device_arrays_with_the_values(tmp_path, sim_device):
    dev = sim_device()
    values = _values(np.random.default_rng(7))
    values["words"] = np.array([b"a", b"bc"], dtype=object)
    fastckpt.save(values, tmp_path / "ck")
    out = fastckpt.load(tmp_path / "ck", device="cuda:0", array_type=new_sim_array)
    assert sorted(out) == sorted(values)
    for k, v in values.items():
        if k == "words":
            assert isinstance(out[k], np.ndarray) and out[k].tolist() == [b"a", b"bc"]
            continue
        assert isinstance(out[k], SimDeviceArray), k
        assert out[k].dtype == v.dtype and np.array_equal(out[k].peek(), v), k
    assert dev.stats()["bytes_to_device"] == sum(v.nbytes for k, v in values.items() if k != "words")


def test_load_into_existing_device_arrays(tmp_path, sim_device):
    x = np.random.default_rng(8).standard_normal((1500, 700)).astype(np.float32)  # 4 MiB: 5 chunks
    fastckpt.save({"x": x, "y": np.arange(5)}, tmp_path / "ck")
    target = SimDeviceArray(np.zeros_like(x))
    host_target = np.zeros(5, dtype=np.int64)
    fastckpt.load_into(tmp_path / "ck", {"x": target, "y": host_target})
    assert np.array_equal(target.peek(), x) and host_target.tolist() == [0, 1, 2, 3, 4]


def test_load_into_checks_shape_and_dtype(tmp_path, sim_device):
    fastckpt.save({"x": np.zeros((4, 4), np.float32)}, tmp_path / "ck")
    with pytest.raises(
        fastckpt.InvalidArgumentError,
        match=r"tensor 'x' in .*: the checkpoint holds float32 \[4, 4\], the target is float32 \[4, 5\]",
    ):
        fastckpt.load_into(tmp_path / "ck", {"x": SimDeviceArray(np.zeros((4, 5), np.float32))})
    with pytest.raises(
        fastckpt.InvalidArgumentError, match=r"the checkpoint holds float32 \[4, 4\], the target is float64 \[4, 4\]"
    ):
        fastckpt.load_into(tmp_path / "ck", {"x": SimDeviceArray(np.zeros((4, 4), np.float64))})
    with pytest.raises(fastckpt.TensorNotFoundError, match="'nope'"):
        fastckpt.load_into(tmp_path / "ck", {"nope": SimDeviceArray(np.zeros(1))})


def test_load_to_device_detects_corruption(tmp_path, sim_device):
    x = np.arange(3 * MiB // 8, dtype=np.float64)
    fastckpt.save({"x": x}, tmp_path / "ck")
    data = tmp_path / "ck.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[2 * MiB + 5] ^= 0x40
    data.write_bytes(bytes(raw))
    with pytest.raises(fastckpt.DataLossError, match=r"tensor 'x' in '.*ck.data-00000-of-00001'.*checksum mismatch"):
        fastckpt.load(tmp_path / "ck", device="cuda", array_type=new_sim_array)
    assert _native.staging_stats()["lent"] == 0


def test_load_to_device_copy_error(tmp_path, sim_device):
    fastckpt.save({"x": np.arange(3 * MiB // 8, dtype=np.float64)}, tmp_path / "ck")
    sim_device(fail_copy=1)
    with pytest.raises(fastckpt.CudaError, match=r"copying tensor 'x' in .* to device 0 failed") as e:
        fastckpt.load(tmp_path / "ck", device="cuda:0", array_type=new_sim_array)
    assert (e.value.error_name, e.value.code) == ("CUDA_ERROR_ILLEGAL_ADDRESS", 700)


def test_partitioned_tensor_to_device(tmp_path, sim_device):
    from fastckpt.writer import partitioned_items, write_items

    full = np.arange(24, dtype=np.float32).reshape(6, 4)
    items, keep = partitioned_items("p", full.shape, [([(0, 2), (0, -1)], full[:2]), ([(2, 4), (0, -1)], full[2:])])
    write_items(items, tmp_path / "ck", num_shards=None, threads=None, durable=False)
    out = fastckpt.load(tmp_path / "ck", device="cuda:0", array_type=new_sim_array)
    assert np.array_equal(out["p"].peek(), full)


def test_device_argument_is_validated(tmp_path):
    fastckpt.save({"x": np.zeros(1)}, tmp_path / "ck")
    with pytest.raises(fastckpt.InvalidArgumentError, match="device must be 'cpu', 'cuda' or 'cuda:N', not 'tpu'"):
        fastckpt.load(tmp_path / "ck", device="tpu")
    assert fastckpt.load(tmp_path / "ck", device="cpu")["x"].tolist() == [0.0]


def test_dlpack_only_device_array_must_export_device_memory(tmp_path, sim_device):
    class Liar:
        """Claims a CUDA device but exports host memory."""

        def __init__(self):
            self._a = np.arange(4.0)

        def __dlpack_device__(self):
            return (2, 0)

        def __dlpack__(self, stream=None, max_version=None):
            return self._a.__dlpack__()

    with pytest.raises(
        fastckpt.InvalidArgumentError,
        match=r"tensor 'x': .*names a CUDA device but its DLPack export is on device type 1",
    ):
        fastckpt.save({"x": Liar()}, tmp_path / "ck")
    assert os.listdir(tmp_path) == []
