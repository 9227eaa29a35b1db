"""TensorFlow refuses a compressed checkpoint with its own version error (never
garbage), reads an uncompressed one, and the uncompressed layout stays
byte-identical to TensorFlow's own SaveV2."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf

import fastckpt  # noqa: E402

pytestmark = pytest.mark.tf

W = (np.random.default_rng(0).standard_normal((256, 512)) * 0.02).astype(np.float32)
REFUSAL = "Checkpoint min consumer version 1001 above current version 1 for TensorFlow"


def test_tf_load_checkpoint_refuses_a_compressed_checkpoint(tmp_path):
    prefix = str(tmp_path / "c")
    fastckpt.save({"w": W, "step": np.int64(3)}, prefix, compression="zstd")
    with pytest.raises(ValueError) as e:
        tf.train.load_checkpoint(prefix)
    assert str(e.value).startswith(REFUSAL), str(e.value)
    with pytest.raises(ValueError) as e:
        tf.train.list_variables(prefix)
    assert str(e.value).startswith(REFUSAL), str(e.value)
    # fastckpt reads it; an uncompressed copy is what TensorFlow reads.
    back = fastckpt.load(prefix)
    plain = str(tmp_path / "plain")
    fastckpt.save(back, plain)
    reader = tf.train.load_checkpoint(plain)
    assert reader.get_tensor("w").tobytes() == W.tobytes() and reader.get_tensor("step") == 3


def test_tf1_saver_restore_refuses_a_compressed_checkpoint(tmp_path):
    prefix = str(tmp_path / "c")
    fastckpt.save({"w": W}, prefix, compression="zstd")
    graph = tf.Graph()
    with graph.as_default():
        v = tf.compat.v1.Variable(tf.zeros_like(W), name="w")
        saver = tf.compat.v1.train.Saver([v])
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            with pytest.raises(tf.errors.InvalidArgumentError) as e:
                saver.restore(sess, prefix)
            assert REFUSAL in e.value.message, e.value.message
            assert not sess.run(v).any()  # nothing was restored


def test_uncompressed_save_matches_tf_savev2_bytes(tmp_path):
    tensors = {"a": W, "b": np.arange(7, dtype=np.int64)}
    ours = str(tmp_path / "ours" / "m")
    theirs = str(tmp_path / "theirs" / "m")
    fastckpt.save(tensors, ours, num_shards=1, compression="none")
    os.makedirs(os.path.dirname(theirs))
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=theirs,
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    for suffix in (".index", ".data-00000-of-00001"):
        with open(ours + suffix, "rb") as f, open(theirs + suffix, "rb") as g:
            assert f.read() == g.read(), suffix


def test_fastckpt_saver_of_tf_variables_with_compression(tmp_path):
    """fastckpt.Saver(compression="zstd") of TF1 variables: fastckpt restores
    them; TensorFlow's own Saver refuses the checkpoint with its version error."""
    graph = tf.Graph()
    with graph.as_default():
        v = tf.compat.v1.Variable(W, name="w")
        saver = fastckpt.Saver([v], compression="zstd")
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "model"), global_step=1)
            sess.run(v.assign(tf.zeros_like(W)))
            saver.restore(sess, path)
            assert sess.run(v).tobytes() == W.tobytes()
            with pytest.raises(tf.errors.InvalidArgumentError) as e:
                tf.compat.v1.train.Saver([v]).restore(sess, path)
            assert REFUSAL in e.value.message, e.value.message
    with fastckpt.load_checkpoint(path) as reader:
        assert reader._compressed is not None and reader.get_tensor("w").tobytes() == W.tobytes()
