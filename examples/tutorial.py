"""The classic TensorFlow 1 "save and restore a model" tutorial, with
``tf.train.Saver`` replaced by ``fastckpt.Saver``.

Every step of the tutorial runs unchanged except that the Saver (and
``import_meta_graph`` / ``latest_checkpoint``) come from fastckpt: the files on
disk are the ones TensorFlow writes (``.index``, ``.data-*``, ``.meta``,
``checkpoint``), written and read by fastckpt's native core.

    python examples/tutorial.py [--dir DIR]

Steps:
  1. save w1, w2 to DIR/my_test_model
  2. save with global_step=1000 and list the files
  3. Saver(max_to_keep=4, keep_checkpoint_every_n_hours=2)
  4. save a subset of the variables: Saver([w1])
  5. save a small graph (placeholders w1, w2, variable bias, op_to_restore), then
     in a new graph import the .meta, restore the latest checkpoint and run
     op_to_restore with {w1: 13.0, w2: 17.0} -> 60.0
  6. add an op to the restored graph: op_to_restore * 2 -> 120.0
  7. fine-tune: restore a trained hidden layer, tf.stop_gradient it, train a
     new layer on top; the restored weights do not change
  8. mixed: saved by fastckpt and restored by TensorFlow's Saver, and the reverse

Checks every value and exits with status 1 on any mismatch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fastckpt  # noqa: E402
import fastckpt.saver  # noqa: E402
from fastckpt import checkpoint_management  # noqa: E402

tf.compat.v1.disable_eager_execution()
tf.get_logger().setLevel("ERROR")

# fastckpt.Saver once it is exported at top level; fastckpt.saver.Saver until then.
Saver = getattr(fastckpt, "Saver", None) or fastckpt.saver.Saver
import_meta_graph = getattr(fastckpt, "import_meta_graph", None) or fastckpt.saver.import_meta_graph
latest_checkpoint = checkpoint_management.latest_checkpoint


class Mismatch(Exception):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Mismatch(message)


def check_close(actual, expected, what: str) -> None:
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    check(
        actual.shape == expected.shape and np.allclose(actual, expected),
        f"{what}: expected {expected!r}, got {actual!r}",
    )


def list_files(directory: str) -> list:
    return sorted(f for f in os.listdir(directory) if os.path.isfile(os.path.join(directory, f)))


def step1_2_save(d: str) -> dict:
    print("== 1. save w1, w2")
    with tf.Graph().as_default():
        w1 = tf.Variable(tf.random.normal(shape=[2]), name="w1")
        w2 = tf.Variable(tf.random.normal(shape=[5]), name="w2")
        saver = Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            values = {"w1": sess.run(w1), "w2": sess.run(w2)}
            prefix = saver.save(sess, os.path.join(d, "my_test_model"))
            print("saved to", prefix)
            check(prefix == os.path.join(d, "my_test_model"), f"unexpected prefix {prefix}")
            check(
                os.path.exists(prefix + ".index") and os.path.exists(prefix + ".meta"),
                "my_test_model.index/.meta missing",
            )

            print("== 2. save with global_step=1000")
            prefix = saver.save(sess, os.path.join(d, "my_test_model"), global_step=1000)
            files = list_files(d)
            print("files:", files)
            for name in ("my_test_model-1000.index", "my_test_model-1000.meta", "checkpoint"):
                check(name in files, f"{name} missing from {files}")
            check(any(f.startswith("my_test_model-1000.data-") for f in files), "my_test_model-1000.data-* missing")
            check(latest_checkpoint(d) == prefix, f"latest_checkpoint is {latest_checkpoint(d)}")
    reader = tf.train.load_checkpoint(prefix)  # TensorFlow reads fastckpt's files
    check_close(reader.get_tensor("w1"), values["w1"], "w1 read by TensorFlow")
    check_close(reader.get_tensor("w2"), values["w2"], "w2 read by TensorFlow")
    return values


def step3_max_to_keep(d: str) -> None:
    print("== 3. Saver(max_to_keep=4, keep_checkpoint_every_n_hours=2)")
    sub = os.path.join(d, "keep4")
    os.makedirs(sub, exist_ok=True)
    with tf.Graph().as_default():
        tf.Variable(tf.random.normal(shape=[2]), name="w1")
        tf.Variable(tf.random.normal(shape=[5]), name="w2")
        saver = Saver(max_to_keep=4, keep_checkpoint_every_n_hours=2)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for step in range(1, 7):
                saver.save(sess, os.path.join(sub, "my_test_model"), global_step=step)
    kept = sorted(f[: -len(".index")] for f in os.listdir(sub) if f.endswith(".index"))
    print("kept:", kept)
    check(kept == [f"my_test_model-{s}" for s in (3, 4, 5, 6)], f"max_to_keep=4 kept {kept}")
    check(
        saver.last_checkpoints == [os.path.join(sub, f"my_test_model-{s}") for s in (3, 4, 5, 6)],
        f"last_checkpoints {saver.last_checkpoints}",
    )


def step4_subset(d: str) -> None:
    print("== 4. save a subset: Saver([w1])")
    sub = os.path.join(d, "subset")
    os.makedirs(sub, exist_ok=True)
    with tf.Graph().as_default():
        w1 = tf.Variable(tf.random.normal(shape=[2]), name="w1")
        tf.Variable(tf.random.normal(shape=[5]), name="w2")
        saver = Saver([w1])
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            w1_value = sess.run(w1)
            prefix = saver.save(sess, os.path.join(sub, "my_test_model"))
        # Restore into a fresh session: only w1 comes from the checkpoint.
        with tf.compat.v1.Session() as sess:
            saver.restore(sess, prefix)
            check_close(sess.run(w1), w1_value, "restored w1")
    names = [name for name, _ in tf.train.list_variables(prefix)]
    print("variables in the checkpoint:", names)
    check(names == ["w1"], f"subset checkpoint holds {names}")


def step5_6_restore_and_run(d: str) -> None:
    print("== 5. save a graph with placeholders and restore it in a new graph")
    with tf.Graph().as_default():
        w1 = tf.compat.v1.placeholder("float", name="w1")
        w2 = tf.compat.v1.placeholder("float", name="w2")
        b1 = tf.Variable(2.0, name="bias")
        feed_dict = {w1: 4, w2: 8}
        w3 = tf.add(w1, w2)
        w4 = tf.multiply(w3, b1, name="op_to_restore")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver = Saver()
            print("before saving, op_to_restore =", sess.run(w4, feed_dict))
            saver.save(sess, os.path.join(d, "my_test_model"), global_step=1000)

    with tf.Graph().as_default() as graph:
        with tf.compat.v1.Session() as sess:
            saver = import_meta_graph(os.path.join(d, "my_test_model-1000.meta"))
            check(isinstance(saver, fastckpt.saver.Saver), f"import_meta_graph returned {type(saver).__name__}")
            saver.restore(sess, latest_checkpoint(d))
            w1 = graph.get_tensor_by_name("w1:0")
            w2 = graph.get_tensor_by_name("w2:0")
            feed_dict = {w1: 13.0, w2: 17.0}
            op_to_restore = graph.get_tensor_by_name("op_to_restore:0")
            result = float(sess.run(op_to_restore, feed_dict))
            print("op_to_restore =", result)
            check(result == 60.0, f"op_to_restore: expected 60.0, got {result}")

            print("== 6. add an op to the restored graph")
            add_on_op = tf.multiply(op_to_restore, 2)
            result = float(sess.run(add_on_op, feed_dict))
            print("add_on_op =", result)
            check(result == 120.0, f"add_on_op: expected 120.0, got {result}")


def step7_fine_tune(d: str) -> None:
    print("== 7. fine-tune on top of a restored layer with tf.stop_gradient")
    sub = os.path.join(d, "finetune")
    os.makedirs(sub, exist_ok=True)
    rng = np.random.default_rng(0)
    x_data = rng.standard_normal((8, 3)).astype(np.float32)
    y_data = rng.standard_normal((8, 1)).astype(np.float32)
    # The "pretrained" model: one hidden layer.
    with tf.Graph().as_default():
        x = tf.compat.v1.placeholder(tf.float32, shape=[None, 3], name="x")
        w_hidden = tf.Variable(tf.random.normal([3, 4], seed=1), name="w_hidden")
        b_hidden = tf.Variable(tf.zeros([4]), name="b_hidden")
        tf.nn.relu(tf.matmul(x, w_hidden) + b_hidden, name="hidden")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            pretrained = sess.run(w_hidden)
            Saver().save(sess, os.path.join(sub, "pretrained"), global_step=1)

    with tf.Graph().as_default() as graph:
        saver = import_meta_graph(os.path.join(sub, "pretrained-1.meta"))
        x = graph.get_tensor_by_name("x:0")
        hidden = graph.get_tensor_by_name("hidden:0")
        hidden = tf.stop_gradient(hidden)  # the restored layer is frozen
        w_new = tf.Variable(tf.zeros([4, 1]), name="w_new")
        b_new = tf.Variable(tf.zeros([1]), name="b_new")
        output = tf.matmul(hidden, w_new) + b_new
        y = tf.compat.v1.placeholder(tf.float32, shape=[None, 1], name="y")
        loss = tf.reduce_mean(tf.square(output - y))
        w_hidden = [v for v in tf.compat.v1.global_variables() if v.op.name == "w_hidden"][0]
        check(tf.gradients(loss, [w_hidden]) == [None], "gradient flows into the frozen layer")
        train_op = tf.compat.v1.train.GradientDescentOptimizer(0.05).minimize(loss, var_list=[w_new, b_new])
        with tf.compat.v1.Session() as sess:
            saver.restore(sess, latest_checkpoint(sub))
            sess.run(tf.compat.v1.variables_initializer([w_new, b_new]))
            check_close(sess.run(w_hidden), pretrained, "restored w_hidden")
            loss_before = float(sess.run(loss, {x: x_data, y: y_data}))
            sess.run(train_op, {x: x_data, y: y_data})
            loss_after = float(sess.run(loss, {x: x_data, y: y_data}))
            print(f"loss {loss_before:.6f} -> {loss_after:.6f} after one step")
            check_close(sess.run(w_hidden), pretrained, "w_hidden after training (frozen)")
            check(np.any(sess.run(b_new) != 0.0), "the new layer was not updated")
            check(loss_after < loss_before, "one training step did not reduce the loss")
            print("restored layer unchanged, new layer trained")


def _two_vars():
    w1 = tf.Variable(tf.random.normal(shape=[2]), name="w1")
    w2 = tf.Variable(tf.random.normal(shape=[5]), name="w2")
    return w1, w2


def step8_mixed(d: str) -> None:
    print("== 8. mixed: fastckpt <-> TensorFlow")
    for writer_name, writer_cls, reader_name, reader_cls in (
        ("fastckpt", Saver, "TensorFlow", tf.compat.v1.train.Saver),
        ("TensorFlow", tf.compat.v1.train.Saver, "fastckpt", Saver),
    ):
        sub = os.path.join(d, f"mixed_{writer_name}")
        os.makedirs(sub, exist_ok=True)
        with tf.Graph().as_default():
            w1, w2 = _two_vars()
            with tf.compat.v1.Session() as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                saved = sess.run([w1, w2])
                writer_cls().save(sess, os.path.join(sub, "my_test_model"), global_step=1000)
        with tf.Graph().as_default():
            w1, w2 = _two_vars()
            reader = reader_cls()
            with tf.compat.v1.Session() as sess:
                reader.restore(sess, tf.train.latest_checkpoint(sub))
                restored = sess.run([w1, w2])
        check_close(restored[0], saved[0], f"w1 saved by {writer_name}, restored by {reader_name}")
        check_close(restored[1], saved[1], f"w2 saved by {writer_name}, restored by {reader_name}")
        print(f"saved by {writer_name}, restored by {reader_name}: w1 = {restored[0]}")
        # And through the .meta: TensorFlow's import_meta_graph on fastckpt's .meta and back.
        with tf.Graph().as_default():
            meta = os.path.join(sub, "my_test_model-1000.meta")
            saver = tf.compat.v1.train.import_meta_graph(meta) if reader_cls is not Saver else import_meta_graph(meta)
            with tf.compat.v1.Session() as sess:
                saver.restore(sess, os.path.join(sub, "my_test_model-1000"))
                by_name = {v.op.name: sess.run(v) for v in tf.compat.v1.global_variables()}
        check_close(by_name["w1"], saved[0], f"w1 via the .meta ({writer_name} -> {reader_name})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="where to save (default: a new temporary directory, removed)")
    args = ap.parse_args(argv)
    d = args.dir or tempfile.mkdtemp(prefix="fastckpt-tutorial-")
    d = os.path.abspath(d)
    os.makedirs(d, exist_ok=True)
    print("using", Saver.__module__ + "." + Saver.__qualname__, "in", d)
    try:
        step1_2_save(d)
        step3_max_to_keep(d)
        step4_subset(d)
        step5_6_restore_and_run(d)
        step7_fine_tune(d)
        step8_mixed(d)
    except Mismatch as e:
        print("MISMATCH:", e, file=sys.stderr)
        return 1
    finally:
        if not args.dir:
            shutil.rmtree(d, ignore_errors=True)
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
