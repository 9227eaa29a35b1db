"""Property tests: random tensor sets round-trip exactly; damaged indexes give
DataLossError (or still-correct data), never another exception or a crash."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pytest
from helpers import FIXED_SIZE_DTYPES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastckpt

DTYPES = FIXED_SIZE_DTYPES

# A leading NUL is reserved for slice keys (tested in test_errors.py).
names = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda s: not s.startswith("\x00")
)


@st.composite
def tensors(draw):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    if dtype.type.__module__.startswith("ml_dtypes"):  # bfloat16, float8: every bit pattern
        raw = draw(hnp.arrays(np.dtype(f"u{dtype.itemsize}"), shape))
        return raw.view(dtype)
    return draw(hnp.arrays(dtype, shape))


string_tensors = hnp.arrays(
    object, hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=4), elements=st.binary(max_size=20)
)

tensor_sets = st.dictionaries(names, st.one_of(tensors(), string_tensors), min_size=0, max_size=12)

SETTINGS = settings(
    max_examples=int(os.environ.get("FASTCKPT_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@SETTINGS
@given(tensor_sets, st.integers(min_value=1, max_value=4), st.integers(min_value=1, max_value=3))
def test_round_trip(values, num_shards, threads):
    with tempfile.TemporaryDirectory() as d:
        prefix = os.path.join(d, "p")
        result = fastckpt.save(values, prefix, num_shards=num_shards, threads=threads, durable=False)
        assert result.num_shards == num_shards
        with fastckpt.load_checkpoint(prefix, threads=threads) as reader:
            assert reader.keys() == sorted(values)
            for name, value in values.items():
                got = reader.get_tensor(name)
                assert got.shape == value.shape
                if value.dtype == object:
                    assert got.dtype == object and got.tolist() == value.tolist()
                else:
                    assert got.dtype == value.dtype and got.tobytes() == value.tobytes()
        assert sorted(fastckpt.load(prefix)) == sorted(values)


@pytest.fixture(scope="module")
def reference_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    prefix = str(d / "ref")
    values = {f"v{i}": np.arange(i * 3, dtype=np.float32) for i in range(40)}
    values["s"] = np.array([b"x", b"yz"], dtype=object)
    fastckpt.save(values, prefix, num_shards=2, durable=False)
    with open(prefix + ".index", "rb") as f:
        return prefix, f.read(), values


@SETTINGS
@given(data=st.data())
def test_mutated_index_is_rejected_or_harmless(reference_checkpoint, data):
    prefix, index, values = reference_checkpoint
    mutated = bytearray(index)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "truncate"]))
        if kind == "truncate":
            del mutated[data.draw(st.integers(0, len(mutated))) :]
        elif mutated:
            pos = data.draw(st.integers(0, len(mutated) - 1))
            mutated[pos] = (
                (mutated[pos] ^ (1 << data.draw(st.integers(0, 7))))
                if kind == "flip"
                else data.draw(st.integers(0, 255))
            )
    with tempfile.TemporaryDirectory() as d:
        copy = os.path.join(d, "ref")
        for suffix in (".data-00000-of-00002", ".data-00001-of-00002"):
            os.symlink(prefix + suffix, copy + suffix)
        with open(copy + ".index", "wb") as f:
            f.write(mutated)
        try:
            loaded = fastckpt.load(copy)
        except fastckpt.DataLossError:
            return
        # Every block carries a CRC, so an index that still loads differs at most
        # in unchecked footer padding: the values must be exactly the original ones.
        assert sorted(loaded) == sorted(values)
        for name, value in values.items():
            assert loaded[name].tolist() == value.tolist()
