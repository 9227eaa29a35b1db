"""Interoperability with real TensorFlow, in both directions, value- and byte-exact.

a. fastckpt writes  -> ``tf.train.load_checkpoint`` reads every dtype TF reads.
b. fastckpt writes  -> TF1 graph-mode ``Saver.restore`` restores into variables.
c. TF1 ``Saver`` (plain, sharded over 3 devices, partitioned variables) writes -> fastckpt reads.
d. TF2 ``tf.train.Checkpoint.write`` / ``.save`` writes -> fastckpt reads.
e. ``tf.raw_ops.SaveV2`` and ``fastckpt.save(num_shards=1)`` produce byte-identical files.

Every comparison is bit-exact (arrays are compared as raw bytes, so NaN payloads, -0.0 and
float8 bit patterns count) and checks dtype and shape.
"""

from __future__ import annotations

import glob
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf
from helpers import FIXED_SIZE_DTYPES, TF_CPUS, tf_session  # noqa: E402

import fastckpt  # noqa: E402

pytestmark = pytest.mark.tf

tf.get_logger().setLevel("ERROR")

N_LOGICAL_CPUS = TF_CPUS  # the devices tf_session gives a graph


def _setup_logical_cpus(n: int = N_LOGICAL_CPUS) -> None:
    """Split the CPU into ``n`` logical devices, once, before the TF runtime starts.

    If another test module already initialised the runtime, this is no longer possible; the
    graph-mode sessions below also pass ``device_count={"CPU": n}``, which gives them ``n`` CPU
    devices either way.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        current = tf.config.get_logical_device_configuration(cpus[0]) or []
        if len(current) < n:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
            )
    except RuntimeError:
        pass  # runtime already initialised


_setup_logical_cpus()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

NUMERIC_DTYPES = FIXED_SIZE_DTYPES

# Shapes of rank 0..5, including zero-size ones.
SHAPES = [(), (0,), (7,), (3, 4), (3, 0, 2), (2, 3, 4), (2, 1, 3, 2), (1, 2, 3, 1, 2)]

STRING_VALUES = [
    b"",
    b"\x00",
    b"a\x00b\x00\x00",
    b"\xff\xfe\x00\x01",
    "héllo wörld",
    "日本語テキスト",
    "emoji \U0001f600",
    b"x" * 300,  # length needs a 2-byte varint
    "ü" * 100,
]


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _as_bytes(s) -> bytes:
    return s.encode("utf-8") if isinstance(s, str) else bytes(s)


def _expected_strings(a: np.ndarray) -> np.ndarray:
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        out[idx] = _as_bytes(a[idx])
    return out


def assert_tensor_equal(actual, expected, name: str = "") -> None:
    """Bit-exact comparison: same dtype, same shape, same bytes (or same byte strings)."""
    if isinstance(expected, (bytes, str)):
        expected = np.array(expected, dtype=object)
    expected = np.asarray(expected)
    if expected.dtype == object:
        if isinstance(actual, bytes):  # TF returns a bare ``bytes`` for a string scalar
            actual = np.array(actual, dtype=object)
        assert isinstance(actual, np.ndarray), f"{name}: got {type(actual)}"
        assert actual.dtype == object, f"{name}: dtype {actual.dtype} != object"
        assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
        exp = _expected_strings(expected)
        for idx in np.ndindex(exp.shape):
            kind = type(actual[idx])
            assert kind is bytes, f"{name}{list(idx)}: {kind} is not bytes"
        np.testing.assert_array_equal(actual, exp, err_msg=name)
        return
    # TF returns numpy scalars for rank-0 tensors; accept both forms.
    assert isinstance(actual, (np.ndarray, np.generic)), f"{name}: got {type(actual)}"
    actual = np.asarray(actual)
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_array_equal(_bits(actual), _bits(expected), err_msg=f"{name}: bytes differ")


def random_array(rng: np.random.Generator, dtype, shape) -> np.ndarray:
    """Every bit pattern is fair game (NaNs with payloads, -0, subnormals, float8 specials)."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    n = int(np.prod(shape, dtype=np.int64))
    raw = rng.integers(0, 256, size=n * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).reshape(shape)


def string_array(rng: np.random.Generator, shape) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for idx in np.ndindex(shape):
        out[idx] = STRING_VALUES[int(rng.integers(len(STRING_VALUES)))]
    return out


def all_dtypes_tensors(seed: int = 0) -> dict:
    """Every TF-readable dtype at every rank 0..5, plus string tensors and numpy scalars."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for dt in NUMERIC_DTYPES:
        for shape in SHAPES:
            tensors[f"{dt.name}/rank{len(shape)}_{'x'.join(map(str, shape)) or 'scalar'}"] = random_array(
                rng, dt, shape
            )
    for shape in SHAPES:
        tensors[f"string/rank{len(shape)}_{'x'.join(map(str, shape)) or 'scalar'}"] = string_array(rng, shape)
    tensors["string/all_values"] = np.array(STRING_VALUES, dtype=object)
    tensors["string/scalar_nul"] = np.array(b"\x00nul\x00", dtype=object)
    tensors["string/scalar_unicode"] = np.array("naïve ☃", dtype=object)
    # numpy scalar objects (not 0-d arrays)
    tensors["scalars/np_float32"] = np.float32(-1.5)
    tensors["scalars/np_int64"] = np.int64(-(2**62) - 3)
    tensors["scalars/np_bool"] = np.bool_(True)
    # Non-contiguous input must be written in logical (C) order.
    base = np.arange(60, dtype=np.float32).reshape(6, 10)
    tensors["layout/fortran"] = np.asfortranarray(base)
    tensors["layout/strided"] = base[::2, 1::3]
    tensors["layout/transposed"] = base.T
    return tensors


def _shape_list(a) -> list:
    return list(np.shape(a))


def _tf_np_dtype(tf_dtype) -> np.dtype:
    return np.dtype(object) if tf_dtype == tf.string else np.dtype(tf_dtype.as_numpy_dtype)


def _checkpoint_files(prefix) -> list:
    prefix = os.fspath(prefix)
    return sorted(glob.glob(glob.escape(prefix) + ".data-*")) + sorted(glob.glob(glob.escape(prefix) + ".index"))


# --------------------------------------------------------------------------------------------
# a. fastckpt writes -> tf.train.load_checkpoint reads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_shards", [None, 1, 3])
def test_tf_reader_reads_every_dtype(tmp_path, num_shards):
    tensors = all_dtypes_tensors(seed=1)
    prefix = tmp_path / "ckpt"
    res = fastckpt.save(tensors, prefix, num_shards=num_shards, durable=False)

    expected_shards = num_shards or 1
    data_files = sorted(glob.glob(str(prefix) + ".data-*"))
    if num_shards is not None:
        assert data_files == [f"{prefix}.data-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]
    else:
        expected_shards = len(data_files)
        assert expected_shards >= 1
    assert os.path.isfile(f"{prefix}.index")
    assert res.num_shards == expected_shards
    assert os.fspath(res.prefix) == os.fspath(prefix)
    assert sorted(os.path.abspath(os.fspath(f)) for f in res.files) == sorted(
        os.path.abspath(f) for f in data_files + [f"{prefix}.index"]
    )
    assert res.nbytes >= sum(np.asarray(a).nbytes for a in tensors.values() if np.asarray(a).dtype != object)
    assert res.seconds >= 0
    # No temp files left behind.
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(f) for f in res.files)

    reader = tf.train.load_checkpoint(str(prefix))
    assert reader.get_variable_to_shape_map() == {k: _shape_list(v) for k, v in tensors.items()}
    dtypes = reader.get_variable_to_dtype_map()
    assert {k: _tf_np_dtype(v) for k, v in dtypes.items()} == {k: np.asarray(v).dtype for k, v in tensors.items()}
    for name, value in tensors.items():
        assert_tensor_equal(reader.get_tensor(name), value, name)
    assert tf.train.list_variables(str(prefix)) == sorted((k, _shape_list(v)) for k, v in tensors.items())

    # And fastckpt reads its own output the same way TF does.
    loaded = fastckpt.load(prefix)
    assert set(loaded) == set(tensors)
    for name, value in tensors.items():
        assert_tensor_equal(loaded[name], value, name)


def test_tf_restore_v2_op_reads_fastckpt_shards(tmp_path):
    """The RestoreV2 kernel (what every TF restore path uses) reads a 3-shard fastckpt file."""
    rng = np.random.default_rng(2)
    tensors = {f"t{i}": random_array(rng, np.float32, (i + 1, 5)) for i in range(7)}
    tensors["s"] = np.array([b"a\x00", "ö"], dtype=object)
    prefix = str(tmp_path / "ck")
    fastckpt.save(tensors, prefix, num_shards=3, durable=True)
    names = sorted(tensors)
    out = tf.raw_ops.RestoreV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        dtypes=[tf.string if tensors[n].dtype == object else tf.float32 for n in names],
    )
    for name, t in zip(names, out):
        assert_tensor_equal(t.numpy(), tensors[name], name)


EXOTIC_DTYPES = [
    "int4",
    "uint4",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e4m3b11fnuz",
]


@pytest.mark.parametrize("dtype_name", EXOTIC_DTYPES)
def test_tf_reader_reads_exotic_dtypes(tmp_path, dtype_name):
    """TF 2.21 reads these too; fastckpt writes them so that it does."""
    dt = np.dtype(getattr(ml_dtypes, dtype_name))
    if dtype_name in ("int4", "uint4"):
        info = ml_dtypes.iinfo(dt)
        value = np.arange(int(info.min), int(info.max) + 1).astype(dt).reshape(2, -1)
    else:
        value = random_array(np.random.default_rng(3), dt, (4, 8))
    prefix = str(tmp_path / "ck")
    fastckpt.save({"x": value}, prefix, durable=False)
    got = tf.train.load_checkpoint(prefix).get_tensor("x")
    assert np.asarray(got).dtype == dt
    np.testing.assert_array_equal(np.asarray(got).astype(np.float32), value.astype(np.float32))


# --------------------------------------------------------------------------------------------
# b. fastckpt writes -> TF1 graph-mode Saver.restore
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_shards", [1, 3])
def test_tf1_saver_restores_fastckpt_checkpoint(tmp_path, num_shards):
    rng = np.random.default_rng(4)
    tensors = {}
    for dt in NUMERIC_DTYPES:
        tensors[f"model/{dt.name}/kernel"] = random_array(rng, dt, (3, 5))
        tensors[f"model/{dt.name}/scalar"] = random_array(rng, dt, ())
    tensors["model/zero_size"] = np.zeros((0, 4), np.float32)
    tensors["model/rank5"] = random_array(rng, np.float64, (2, 1, 2, 3, 2))
    tensors["model/strings"] = np.array([[b"a\x00b", "日本"], [b"", b"\xff" * 200]], dtype=object)
    tensors["global_step"] = np.array(123456789012, dtype=np.int64)
    prefix = str(tmp_path / "model.ckpt")
    fastckpt.save(tensors, prefix, num_shards=num_shards, durable=True)

    graph = tf.Graph()
    with graph.as_default():
        variables = {}
        for name, value in tensors.items():
            if value.dtype == object:
                init = tf.compat.v1.constant_initializer("")
                dtype = tf.string
            else:
                init = tf.compat.v1.zeros_initializer()
                dtype = tf.as_dtype(value.dtype)
            variables[name] = tf.compat.v1.get_variable(
                name, shape=value.shape, dtype=dtype, initializer=init, use_resource=True
            )
        for name, var in variables.items():
            assert var.op.name == name  # the variable name is the checkpoint key
        saver = tf.compat.v1.train.Saver(list(variables.values()))
        with tf_session(graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.restore(sess, prefix)
            restored = sess.run(variables)
    for name, value in tensors.items():
        assert_tensor_equal(restored[name], value, name)


# --------------------------------------------------------------------------------------------
# c. TF1 Saver writes -> fastckpt reads
# --------------------------------------------------------------------------------------------


def _slice_init(full: np.ndarray):
    """Initializer for a partitioned variable: each part gets its slice of ``full``."""

    def init(shape, dtype=None, partition_info=None):
        offset = partition_info.var_offset if partition_info is not None else [0] * len(shape)
        index = tuple(slice(o, o + s) for o, s in zip(offset, shape))
        return tf.constant(full[index])

    return init


def _build_tf1_model(rng, devices):
    """Variables for a TF1 checkpoint; returns ({name: var}, {name: expected full value})."""
    dev = lambda i: devices[i % len(devices)]  # noqa: E731
    values = {
        "embedding/weights": random_array(rng, np.float32, (50, 8)),
        "dense/kernel": random_array(rng, np.float64, (8, 4)),
        "dense/bias": random_array(rng, ml_dtypes.bfloat16, (4,)),
        "counts": rng.integers(-(2**40), 2**40, size=(2, 3, 2)).astype(np.int64),
        "flags": rng.integers(0, 2, size=(5,)).astype(np.bool_),
        "half": random_array(rng, np.float16, (3, 3)),
        "vocab": np.array([b"<pad>", b"a\x00b", "ü".encode(), b""], dtype=object),
        "global_step": np.array(42, dtype=np.int64),
        "empty": np.zeros((0, 3), np.float32),
    }
    partitioned = {
        # name: (full value, partitioner)
        "part/rows": (
            random_array(rng, np.float32, (7, 5)),
            tf.compat.v1.fixed_size_partitioner(3),
        ),
        "part/cols": (
            rng.integers(-1000, 1000, size=(4, 7)).astype(np.int64),
            tf.compat.v1.fixed_size_partitioner(3, axis=1),
        ),
        # TF's own reader cannot reassemble partitioned half tensors; fastckpt should.
        "part/half": (
            random_array(rng, np.float16, (6, 2)),
            tf.compat.v1.fixed_size_partitioner(3),
        ),
    }
    variables = {}
    for i, (name, value) in enumerate(values.items()):
        with tf.device(dev(i)):
            dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
            variables[name] = tf.compat.v1.get_variable(
                name, initializer=tf.constant(value, dtype=dtype), use_resource=True
            )
    for i, (name, (full, partitioner)) in enumerate(partitioned.items()):
        with tf.device(dev(i)):
            variables[name] = tf.compat.v1.get_variable(
                name,
                shape=full.shape,
                dtype=tf.as_dtype(full.dtype),
                initializer=_slice_init(full),
                partitioner=partitioner,
                use_resource=True,
            )
            assert len(list(variables[name])) == 3
        values[name] = full
    return variables, values


def _tf1_save(tmp_path, sharded: bool):
    rng = np.random.default_rng(5 + sharded)
    devices = [f"/cpu:{i}" for i in range(N_LOGICAL_CPUS)] if sharded else ["/cpu:0"]
    graph = tf.Graph()
    with graph.as_default():
        variables, values = _build_tf1_model(rng, devices)
        saver = tf.compat.v1.train.Saver(sharded=sharded)
        with tf_session(graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=7)
    assert prefix == str(tmp_path / "model.ckpt-7")
    data_files = sorted(glob.glob(prefix + ".data-*"))
    n = N_LOGICAL_CPUS if sharded else 1
    assert data_files == [f"{prefix}.data-{i:05d}-of-{n:05d}" for i in range(n)]
    return prefix, values


@pytest.mark.parametrize("sharded", [False, True], ids=["plain", "sharded3"])
def test_fastckpt_reads_tf1_saver_checkpoint(tmp_path, sharded):
    prefix, values = _tf1_save(tmp_path, sharded)
    tf_reader = tf.train.load_checkpoint(prefix)
    tf_shapes = tf_reader.get_variable_to_shape_map()
    tf_dtypes = tf_reader.get_variable_to_dtype_map()
    assert set(tf_shapes) == set(values)

    assert fastckpt.list_variables(prefix) == tf.train.list_variables(prefix)

    with fastckpt.load_checkpoint(prefix) as reader:
        assert reader.get_variable_to_shape_map() == tf_shapes
        assert reader.get_variable_to_dtype_map() == {k: _tf_np_dtype(v) for k, v in tf_dtypes.items()}
        assert sorted(reader) == sorted(values)
        assert len(reader) == len(values)
        for name, value in values.items():
            assert name in reader
            assert reader.has_tensor(name)
            got = reader.get_tensor(name)
            assert_tensor_equal(got, value, name)
            if name != "part/half":  # TF: "Dtype half not supported" for partitioned half
                assert_tensor_equal(got, tf_reader.get_tensor(name), f"{name} (vs TF)")
        # Slice keys of partitioned variables are hidden, as in TF.
        assert "part/rows/part_0" not in reader
        assert not reader.has_tensor("part/rows/part_0")

        # Slices crossing partition boundaries.
        rows, cols = values["part/rows"], values["part/cols"]
        assert_tensor_equal(reader.get_slice("part/rows", "2,3:-"), rows[2:5, :], "rows 2,3:-")
        assert_tensor_equal(reader.get_slice("part/rows", "1,5:1,3"), rows[1:6, 1:4], "rows 1,5:1,3")
        assert_tensor_equal(reader.get_slice("part/cols", "-:1,5"), cols[:, 1:6], "cols -:1,5")
        assert_tensor_equal(
            reader.get_slice("dense/kernel", "0,3:2,2"), values["dense/kernel"][0:3, 2:4], "dense 0,3:2,2"
        )
        with pytest.raises(KeyError):
            reader.get_tensor("no/such/variable")

    loaded = fastckpt.load(prefix)
    assert set(loaded) == set(values)
    for name, value in values.items():
        assert_tensor_equal(loaded[name], value, name)
    assert_tensor_equal(fastckpt.load_variable(prefix, "part/cols"), values["part/cols"], "lv")


def test_fastckpt_reassembles_raw_save_v2_slices(tmp_path):
    """Slices TF's Saver never produces but the format allows: 2-D partitions, mixed ``-`` and
    explicit extents, slices of one tensor spread over merged shards, string and half slices."""
    rng = np.random.default_rng(11)
    full = random_array(rng, np.float32, (6, 8))
    strings = string_array(rng, (3, 2))
    half = random_array(rng, np.float16, (4,))
    shards = [
        # (names, shape_and_slices, values)
        (["w", "s"], ["6 8 0,3:0,4", "3 2 0,1:-"], [full[0:3, 0:4], strings[0:1]]),
        (["w", "h"], ["6 8 0,3:4,4", "4 0,2"], [full[0:3, 4:8], half[0:2]]),
        (["w", "s", "h"], ["6 8 3,3:-", "3 2 1,2:0,2", "4 2,2"], [full[3:6, :], strings[1:3], half[2:4]]),
    ]
    parts = []
    for i, (names, specs, values) in enumerate(shards):
        part = str(tmp_path / f"ck_temp/part-{i:05d}-of-{len(shards):05d}")
        tf.raw_ops.SaveV2(
            prefix=part,
            tensor_names=names,
            shape_and_slices=specs,
            tensors=[tf.constant(_expected_strings(v) if v.dtype == object else v) for v in values],
        )
        parts.append(part)
    prefix = str(tmp_path / "ck")
    tf.raw_ops.MergeV2Checkpoints(checkpoint_prefixes=parts, destination_prefix=prefix)
    assert len(glob.glob(prefix + ".data-*")) == 3

    assert fastckpt.list_variables(prefix) == tf.train.list_variables(prefix)
    with fastckpt.load_checkpoint(prefix) as reader:
        assert sorted(reader) == ["h", "s", "w"]
        assert_tensor_equal(reader.get_tensor("w"), full, "w")
        tf_w = tf.train.load_checkpoint(prefix).get_tensor("w")
        assert_tensor_equal(reader.get_tensor("w"), tf_w, "w (vs TF)")
        assert_tensor_equal(reader.get_tensor("s"), strings, "s")
        assert_tensor_equal(reader.get_tensor("h"), half, "h")
        assert_tensor_equal(reader.get_slice("w", "1,4:2,5"), full[1:5, 2:7], "w 1,4:2,5")
        assert_tensor_equal(reader.get_slice("s", "1,1:-"), strings[1:2], "s 1,1:-")
        assert_tensor_equal(reader.get_slice("h", "1,2"), half[1:3], "h 1,2")


def test_insufficient_slices_is_an_error(tmp_path):
    """A partitioned tensor whose stored slices do not cover it: TF refuses, so must fastckpt;
    the covered part stays readable with get_slice."""
    prefix = str(tmp_path / "ck")
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=["w"],
        shape_and_slices=["4 0,2"],
        tensors=[tf.constant(np.array([1.0, 2.0], np.float32))],
    )
    with pytest.raises(ValueError, match="sufficient slices"):
        tf.train.load_checkpoint(prefix).get_tensor("w")
    with fastckpt.load_checkpoint(prefix) as reader:
        assert reader.get_variable_to_shape_map() == {"w": [4]}
        with pytest.raises(fastckpt.FastCkptError, match="sufficient slices"):
            reader.get_tensor("w")
        assert_tensor_equal(reader.get_slice("w", "0,2"), np.array([1.0, 2.0], np.float32), "w")


# --------------------------------------------------------------------------------------------
# d. TF2 tf.train.Checkpoint writes -> fastckpt reads
# --------------------------------------------------------------------------------------------


def _tf2_checkpoint(rng):
    model = tf.Module()
    model.layers = [
        tf.Variable(random_array(rng, np.float32, (4, 3)), name="kernel"),
        tf.Variable(random_array(rng, ml_dtypes.bfloat16, (3,)), name="bias"),
    ]
    model.named = {
        "a/b.c": tf.Variable(rng.integers(0, 100, size=(2, 2)).astype(np.int32)),
        "strings": tf.Variable(np.array([b"x\x00y", "ñ".encode()], dtype=object)),
    }
    ckpt = tf.train.Checkpoint(
        v=tf.Variable(random_array(rng, np.float64, (5,))),
        step=tf.Variable(np.int64(99)),
        model=model,
    )
    expected = {
        "v/.ATTRIBUTES/VARIABLE_VALUE": ckpt.v.numpy(),
        "step/.ATTRIBUTES/VARIABLE_VALUE": ckpt.step.numpy(),
        "model/layers/0/.ATTRIBUTES/VARIABLE_VALUE": model.layers[0].numpy(),
        "model/layers/1/.ATTRIBUTES/VARIABLE_VALUE": model.layers[1].numpy(),
        "model/named/a.Sb..c/.ATTRIBUTES/VARIABLE_VALUE": model.named["a/b.c"].numpy(),
        "model/named/strings/.ATTRIBUTES/VARIABLE_VALUE": model.named["strings"].numpy(),
    }
    return ckpt, expected


@pytest.mark.parametrize("method", ["write", "save"])
def test_fastckpt_reads_tf2_checkpoint(tmp_path, method):
    ckpt, expected = _tf2_checkpoint(np.random.default_rng(6))
    if method == "write":
        prefix = ckpt.write(str(tmp_path / "w"))
    else:
        prefix = ckpt.save(str(tmp_path / "ckpt"))
        assert prefix.endswith("ckpt-1")
        expected["save_counter/.ATTRIBUTES/VARIABLE_VALUE"] = np.array(1, dtype=np.int64)

    tf_reader = tf.train.load_checkpoint(prefix)
    tf_names = set(tf_reader.get_variable_to_shape_map())
    assert tf_names == set(expected) | {"_CHECKPOINTABLE_OBJECT_GRAPH"}
    assert fastckpt.list_variables(prefix) == tf.train.list_variables(prefix)

    with fastckpt.load_checkpoint(prefix) as reader:
        assert set(reader) == tf_names
        for name in tf_names:
            got = reader.get_tensor(name)
            assert_tensor_equal(got, tf_reader.get_tensor(name), name)
            if name in expected:
                assert_tensor_equal(got, expected[name], name)
        graph_bytes = reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    tf_graph_bytes = tf_reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert isinstance(tf_graph_bytes, bytes) and len(tf_graph_bytes) > 50
    assert_tensor_equal(graph_bytes, np.array(tf_graph_bytes, dtype=object), "object graph")

    loaded = fastckpt.load(prefix)
    assert set(loaded) == tf_names
    for name, value in expected.items():
        assert_tensor_equal(loaded[name], value, name)


# --------------------------------------------------------------------------------------------
# e. byte identity with tf.raw_ops.SaveV2
# --------------------------------------------------------------------------------------------


def _case_mixed():
    rng = np.random.default_rng(7)
    t = {}
    for dt in NUMERIC_DTYPES:
        for shape in [(), (0,), (5, 3), (2, 0, 3), (2, 3, 1, 2, 2)]:
            t[f"{dt.name}_{len(shape)}_{'x'.join(map(str, shape))}"] = random_array(rng, dt, shape)
    t["big/float32_12MB"] = random_array(rng, np.float32, (3_000_000,))  # > TF's 8 MB buffer
    t["global_step"] = np.array(1234, dtype=np.int64)
    t["names/ünïcödé/κλειδί"] = random_array(rng, np.int32, (3,))
    return t


def _case_strings():
    rng = np.random.default_rng(8)
    return {
        "s/vector": np.array(STRING_VALUES, dtype=object),
        "s/matrix": string_array(rng, (6, 7)),
        "s/scalar": np.array(b"scalar\x00with nul", dtype=object),
        "s/scalar_empty": np.array(b"", dtype=object),
        "s/zero_size": np.empty((0,), dtype=object),
        "s/zero_size_2d": np.empty((3, 0), dtype=object),
        "s/long": np.array([b"L" * 70_000, b"\x00" * 20_000], dtype=object),
        "s/rank3": string_array(rng, (2, 2, 2)),
        "x/float": np.float32(1.0) * np.ones((2,), np.float32),
    }


def _case_many_long_names():
    """3500 tensors with ~180-byte names: a multi-block index with separator keys."""
    rng = np.random.default_rng(9)
    cycle = [np.float32, np.int64, ml_dtypes.bfloat16, np.uint8, np.bool_]
    t = {}
    for i in range(3500):
        name = (
            f"scope_{i % 11:02d}/block_{i:05d}/"
            + "very_long_variable_name_component_" * 4
            + ("kernel" if i % 2 else "bias")
        )
        t[name] = random_array(rng, cycle[i % len(cycle)], (i % 4,))
    return t


def _case_huge_key():
    """A key+value >= 2*block_size forces a block flush before it (TF-specific rule)."""
    return {
        "a": np.float32(1.0),
        "b" * 600_000: np.array([1, 2, 3], np.int16),
        "c": np.array(["z"], dtype=object),
        "d" * 200_000: np.float64(2.0),
        "e": np.int8(3),
    }


def _case_restarts():
    """40+ keys sharing prefixes: restart points every 16 entries within one block."""
    return {f"layer/{i:03d}/w": np.full((2,), i, np.int32) for i in range(45)}


BYTE_CASES = {
    "mixed": _case_mixed,
    "strings": _case_strings,
    "many_long_names": _case_many_long_names,
    "huge_key": _case_huge_key,
    "restarts": _case_restarts,
}


def _first_diff(a: bytes, b: bytes) -> str:
    n = min(len(a), len(b))
    i = next((k for k in range(n) if a[k] != b[k]), n)
    return (
        f"sizes {len(a)} vs {len(b)}; first difference at offset {i}: "
        f"tf={a[max(0, i - 8) : i + 24].hex(' ')} fastckpt={b[max(0, i - 8) : i + 24].hex(' ')}"
    )


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _tf_save_v2(prefix: str, tensors: dict) -> None:
    names = sorted(tensors)
    tf_tensors = []
    for n in names:
        v = np.asarray(tensors[n])
        if v.dtype == object:
            tf_tensors.append(tf.constant(_expected_strings(v), dtype=tf.string))
        else:
            tf_tensors.append(tf.constant(v))
    tf.raw_ops.SaveV2(
        prefix=prefix,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=tf_tensors,
    )


@pytest.mark.parametrize("case", list(BYTE_CASES))
def test_byte_identical_to_tf_save_v2(tmp_path, case):
    tensors = BYTE_CASES[case]()
    tensors = {k: tensors[k] for k in sorted(tensors)}
    tf_dir, fc_dir = tmp_path / "tf", tmp_path / "fc"
    tf_dir.mkdir()
    fc_dir.mkdir()
    tf_prefix, fc_prefix = str(tf_dir / "ckpt"), str(fc_dir / "ckpt")
    _tf_save_v2(tf_prefix, tensors)
    fastckpt.save(tensors, fc_prefix, num_shards=1, durable=False)

    assert (
        sorted(os.listdir(fc_dir))
        == sorted(os.listdir(tf_dir))
        == [
            "ckpt.data-00000-of-00001",
            "ckpt.index",
        ]
    )
    tf_index = _read(tf_prefix + ".index")
    fc_index = _read(fc_prefix + ".index")
    if case == "many_long_names":
        assert len(tf_index) > 2 * 262144  # precondition: several 256 KiB data blocks
    assert tf_index == fc_index, "index differs: " + _first_diff(tf_index, fc_index)
    for suffix in [".data-00000-of-00001"]:
        tf_data = _read(tf_prefix + suffix)
        fc_data = _read(fc_prefix + suffix)
        assert tf_data == fc_data, "data differs: " + _first_diff(tf_data, fc_data)
