"""``fastckpt.saver.Saver`` side by side with ``tf.compat.v1.train.Saver``.

Every scenario runs twice, in two separate directories: once with TensorFlow's Saver and once
with fastckpt's (``num_shards=1`` where TF's single-file layout is compared), each in its own
``tf.Graph`` + ``tf.compat.v1.Session`` (graph mode) unless marked eager. Then it compares:

* the returned prefixes (relative to the directory),
* the sorted directory listings,
* the text of the ``checkpoint`` state file (the directory substituted by ``<DIR>``),
* the restored values,
* the exception type and message for error cases,

and, where the layout is the same, that each library restores the other's files.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import shutil  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from helpers import TF_CPUS, tf_session  # noqa: E402

import fastckpt  # noqa: E402
import fastckpt.saver as fsaver  # noqa: E402
from fastckpt import checkpoint_management as fcm  # noqa: E402

pytestmark = pytest.mark.tf

tf.get_logger().setLevel("ERROR")

KINDS = ("tf", "fc")
N_CPUS = TF_CPUS
DIR = "<DIR>"

# Values of the standard test model: name -> value (dtypes chosen to cover float, int, string).
VALUES = {
    "a": np.arange(6, dtype=np.float32).reshape(2, 3),
    "b": np.array(7, dtype=np.int64),
    "scope/c": np.array([1.5, -2.25, 1e300], dtype=np.float64),
    "s": np.array([b"hello", b"\x00x\xff", b""], dtype=object),
}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

_LOCAL_SERVER = []


def _remote_session(graph, fresh=False):
    """A session whose target is a gRPC server (in this process, as a distributed job's chief
    reaches its tasks): the Saver cannot read the variables in place through it and fetches
    them, a large save in groups. The server keeps variable values across sessions; `fresh`
    starts a new one."""
    if fresh or not _LOCAL_SERVER:
        _LOCAL_SERVER[:] = [tf.distribute.Server.create_local_server()]
    return tf.compat.v1.Session(_LOCAL_SERVER[0].target, graph=graph)


def make_saver(kind, *args, **kwargs):
    """A TF Saver (kind "tf") or a fastckpt Saver (kind "fc") with the same arguments.

    fastckpt gets ``num_shards=1`` (TF's single data file) unless the saver is sharded (then it
    keeps its default, one data file per device as TF) or the caller passes ``num_shards``.
    """
    if kind == "tf":
        kwargs.pop("num_shards", None)
        return tf.compat.v1.train.Saver(*args, **kwargs)
    assert kind == "fc"
    if "num_shards" not in kwargs and not kwargs.get("sharded", False):
        kwargs["num_shards"] = 1
    return fsaver.Saver(*args, **kwargs)


def _make_vars(use_resource=True):
    """The standard model's variables (constant initial values), name -> variable."""
    out = {}
    for name, value in VALUES.items():
        out[name] = tf.compat.v1.get_variable(name, initializer=tf.constant(value), use_resource=use_resource)
    return out


def _norm(obj, d):
    """Replaces directory `d` by <DIR> in every string of `obj` (recursively)."""
    d = os.fspath(d)
    if isinstance(obj, str):
        return obj.replace(d, DIR)
    if isinstance(obj, bytes):
        return obj.replace(d.encode(), DIR.encode())
    if isinstance(obj, dict):
        return {k: _norm(v, d) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_norm(v, d) for v in obj)
    return obj


def _comparable(value):
    """A numpy value as (dtype, shape, list) so that == compares it exactly."""
    a = np.asarray(value)
    if a.dtype == object:
        return ("object", a.shape, [bytes(x) for x in a.reshape(-1)])
    return (a.dtype.str, a.shape, a.reshape(-1).tolist())


def _values(sess, variables):
    """name -> comparable value of each variable (dict name -> variable)."""
    names = sorted(variables)
    got = sess.run([variables[n] for n in names])
    return {n: _comparable(v) for n, v in zip(names, got)}


def _expected(names=None):
    return {n: _comparable(v) for n, v in VALUES.items() if names is None or n in names}


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _snapshot(d, latest_filename="checkpoint"):
    """The sorted listing of `d` and the text of its state file (None if absent)."""
    state = os.path.join(d, latest_filename)
    return {
        "files": sorted(os.listdir(d)),
        "state": _read(state) if os.path.exists(state) else None,
    }


def _side_by_side(tmp_path, scenario, **kwargs):
    """Runs scenario(kind, dir, **kwargs) for "tf" and "fc"; asserts the normalized results
    agree (fastckpt's on the left of the assertion, TF's on the right)."""
    results = {}
    for kind in KINDS:
        d = tmp_path / kind
        d.mkdir()
        results[kind] = _norm(scenario(kind, str(d), **kwargs), str(d))
    assert results["fc"] == results["tf"]
    return results["tf"]


def _restore_fresh(graph, saver, prefix, variables):
    """Restores `prefix` into a fresh session of `graph` (nothing initialized) and reads back."""
    with tf_session(graph) as sess:
        saver.restore(sess, prefix)
        return _values(sess, variables)


def _error(fn):
    """(built-in class, message): fastckpt's errors are FastCkptErrors that are
    also the built-in class TensorFlow raises."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the exception itself is what is compared
        if type(e).__module__.startswith("fastckpt"):
            assert isinstance(e, fastckpt.FastCkptError), e
            return (next(c for c in type(e).__mro__ if c.__module__ == "builtins").__name__, str(e))
        return (type(e).__name__, str(e))
    return None


class FakeClock:
    """A controllable ``time.time``."""

    def __init__(self, t0=1_000_000.0):
        self.t = t0

    def __call__(self):
        return self.t


# --------------------------------------------------------------------------------------------
# Plain saves
# --------------------------------------------------------------------------------------------


def _plain_scenario(kind, d, use_resource=True, global_step=None):
    g = tf.Graph()
    with g.as_default():
        variables = _make_vars(use_resource=use_resource)
        saver = make_saver(kind)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, os.path.join(d, "model"), global_step=global_step)
        snap = _snapshot(d)
        restored = _restore_fresh(g, saver, prefix, variables)
        return {
            "prefix": prefix,
            "last": saver.last_checkpoints,
            **snap,
            "restored": restored,
            "latest": tf.train.latest_checkpoint(d),
            "fc_latest": fcm.latest_checkpoint(d),
        }


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
def test_plain_save_matches_tf(tmp_path, use_resource):
    r = _side_by_side(tmp_path, _plain_scenario, use_resource=use_resource)
    assert r["prefix"] == f"{DIR}/model"
    assert r["files"] == ["checkpoint", "model.data-00000-of-00001", "model.index", "model.meta"]
    assert r["state"] == (f'model_checkpoint_path: "{DIR}/model"\nall_model_checkpoint_paths: "{DIR}/model"\n')
    assert r["restored"] == _expected()
    assert r["latest"] == r["fc_latest"] == f"{DIR}/model"


def test_plain_save_files_are_byte_identical(tmp_path):
    """With num_shards=1, .index, .data and .meta are the bytes TF writes."""
    _side_by_side(tmp_path, _plain_scenario)
    for name in ("model.index", "model.data-00000-of-00001"):
        with open(tmp_path / "tf" / name, "rb") as f1, open(tmp_path / "fc" / name, "rb") as f2:
            assert f1.read() == f2.read(), name
    metas = []
    for kind in KINDS:
        m = tf.compat.v1.MetaGraphDef()
        with open(tmp_path / kind / "model.meta", "rb") as f:
            m.ParseFromString(f.read())
        metas.append(m)
    assert metas[0] == metas[1]


def test_saver_def_matches_tf():
    defs = []
    for kind in KINDS:
        with tf.Graph().as_default():
            _make_vars()
            saver = make_saver(kind, max_to_keep=3, keep_checkpoint_every_n_hours=2.5)
            assert saver.as_saver_def() == saver.saver_def
            defs.append(saver.as_saver_def())
    assert defs[0] == defs[1]
    assert defs[0].max_to_keep == 3 and defs[0].keep_checkpoint_every_n_hours == 2.5


def test_fastckpt_exports_saver():
    assert fastckpt.Saver is fsaver.Saver


# --------------------------------------------------------------------------------------------
# global_step, pad_step_number
# --------------------------------------------------------------------------------------------


def _global_step_scenario(kind, d, how, pad=False, step=1000):
    g = tf.Graph()
    with g.as_default():
        variables = _make_vars()
        gs = tf.compat.v1.train.get_or_create_global_step()
        saver = make_saver(kind, pad_step_number=pad)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(gs.assign(step))
            arg = {
                "int": step,
                "np_int": np.int64(step),
                "variable": gs,
                "tensor": tf.identity(gs),
                "name": tf.identity(gs, name="gs_value").name,
            }[how]
            prefix = saver.save(sess, os.path.join(d, "model"), global_step=arg)
        snap = _snapshot(d)
        variables["global_step"] = gs
        restored = _restore_fresh(g, saver, prefix, variables)
        return {"prefix": prefix, **snap, "restored": restored}


@pytest.mark.parametrize("how", ["int", "np_int", "variable", "tensor", "name"])
def test_global_step_matches_tf(tmp_path, how):
    r = _side_by_side(tmp_path, _global_step_scenario, how=how)
    assert r["prefix"] == f"{DIR}/model-1000"
    assert r["files"] == ["checkpoint", "model-1000.data-00000-of-00001", "model-1000.index", "model-1000.meta"]
    assert r["restored"]["global_step"] == _comparable(np.int64(1000))


@pytest.mark.parametrize("how", ["int", "variable"])
def test_pad_step_number_matches_tf(tmp_path, how):
    r = _side_by_side(tmp_path, _global_step_scenario, how=how, pad=True, step=3)
    assert r["prefix"] == f"{DIR}/model-00000003"
    assert "model-00000003.index" in r["files"]
    assert r["state"] == (
        f'model_checkpoint_path: "{DIR}/model-00000003"\nall_model_checkpoint_paths: "{DIR}/model-00000003"\n'
    )


# --------------------------------------------------------------------------------------------
# Retention: max_to_keep, keep_checkpoint_every_n_hours
# --------------------------------------------------------------------------------------------


def _max_to_keep_scenario(kind, d, max_to_keep, steps=(1, 2, 3, 4, 5)):
    g = tf.Graph()
    with g.as_default():
        _make_vars()
        saver = make_saver(kind, max_to_keep=max_to_keep)
        history = []
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for step in steps:
                prefix = saver.save(sess, os.path.join(d, "model"), global_step=step)
                history.append({"prefix": prefix, "last": list(saver.last_checkpoints), **_snapshot(d)})
        return history


def test_max_to_keep_2_deletes_like_tf(tmp_path):
    history = _side_by_side(tmp_path, _max_to_keep_scenario, max_to_keep=2)
    final = history[-1]
    assert final["last"] == [f"{DIR}/model-4", f"{DIR}/model-5"]
    assert final["files"] == sorted(
        ["checkpoint"] + [f"model-{s}.{ext}" for s in (4, 5) for ext in ("data-00000-of-00001", "index", "meta")]
    )
    assert final["state"] == (
        f'model_checkpoint_path: "{DIR}/model-5"\n'
        f'all_model_checkpoint_paths: "{DIR}/model-4"\n'
        f'all_model_checkpoint_paths: "{DIR}/model-5"\n'
    )


def _distinct_prefixes_scenario(kind, d, names):
    g = tf.Graph()
    with g.as_default():
        _make_vars()
        saver = make_saver(kind, max_to_keep=2)
        history = []
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for name in names:
                prefix = saver.save(sess, os.path.join(d, name))
                history.append(
                    {
                        "prefix": prefix,
                        "last": list(saver.last_checkpoints),
                        **_snapshot(d),
                        "states": list(tf.train.get_checkpoint_state(d).all_model_checkpoint_paths),
                    }
                )
        return history


def test_max_to_keep_with_distinct_prefixes_lists_only_what_exists_like_tf(tmp_path):
    """One saver, prefixes without a step: the state file never names a checkpoint
    the saver has just deleted."""
    history = _side_by_side(tmp_path, _distinct_prefixes_scenario, names=("s1", "s2", "s3", "s4"))
    assert history[2]["states"] == [f"{DIR}/s2", f"{DIR}/s3"]
    assert history[3]["states"] == [f"{DIR}/s3", f"{DIR}/s4"]
    assert history[3]["files"] == sorted(
        ["checkpoint"] + [f"{n}.{ext}" for n in ("s3", "s4") for ext in ("data-00000-of-00001", "index", "meta")]
    )


def test_resaving_same_prefix_moves_it_last_like_tf(tmp_path):
    history = _side_by_side(tmp_path, _max_to_keep_scenario, max_to_keep=2, steps=(1, 2, 1, 3))
    assert history[2]["last"] == [f"{DIR}/model-2", f"{DIR}/model-1"]
    assert history[-1]["last"] == [f"{DIR}/model-1", f"{DIR}/model-3"]
    assert not any(f.startswith("model-2.") for f in history[-1]["files"])


@pytest.mark.parametrize("max_to_keep", [0, None])
def test_max_to_keep_0_or_none_keeps_everything_like_tf(tmp_path, max_to_keep):
    history = _side_by_side(tmp_path, _max_to_keep_scenario, max_to_keep=max_to_keep)
    final = history[-1]
    assert final["last"] == []
    assert len([f for f in final["files"] if f.endswith(".index")]) == 5
    assert final["state"] == (f'model_checkpoint_path: "{DIR}/model-5"\nall_model_checkpoint_paths: "{DIR}/model-5"\n')


def _keep_hours_scenario(kind, d, clock, defer_build=False, build_delay=0.0):
    """max_to_keep=2, keep one checkpoint per hour; a save every 20 (fake) minutes."""
    clock.t = 1_000_000.0
    g = tf.Graph()
    with g.as_default():
        _make_vars()
        saver = make_saver(kind, max_to_keep=2, keep_checkpoint_every_n_hours=1.0, defer_build=defer_build)
        if defer_build:
            clock.t += build_delay
            saver.build()
        start = clock.t
        history = []
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for step in range(1, 11):
                clock.t = start + step * 1200.0
                saver.save(sess, os.path.join(d, "model"), global_step=step)
                history.append({"last": list(saver.last_checkpoints), **_snapshot(d)})
        return history


def _steps_on_disk(files):
    return sorted(int(f[len("model-") : -len(".index")]) for f in files if f.endswith(".index"))


def test_keep_checkpoint_every_n_hours_like_tf(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(time, "time", clock)
    history = _side_by_side(tmp_path, _keep_hours_scenario, clock=clock)
    # Saves at 20-minute intervals, next keep time = build + 1 h: steps 4 (80 min) and 7 (140 min)
    # are the first checkpoints older than each hour boundary when they leave the window.
    assert _steps_on_disk(history[-1]["files"]) == [4, 7, 9, 10]
    assert history[-1]["last"] == [f"{DIR}/model-9", f"{DIR}/model-10"]


def test_keep_checkpoint_every_n_hours_counts_from_build_with_defer_build(tmp_path, monkeypatch):
    """TF starts the N-hour clock when the saver is *built* (build(), not __init__)."""
    clock = FakeClock()
    monkeypatch.setattr(time, "time", clock)
    history = _side_by_side(tmp_path, _keep_hours_scenario, clock=clock, defer_build=True, build_delay=3000.0)
    assert _steps_on_disk(history[-1]["files"]) == [4, 7, 9, 10]


# --------------------------------------------------------------------------------------------
# save() options: write_meta_graph, write_state, latest_filename, meta_graph_suffix
# --------------------------------------------------------------------------------------------


def _options_scenario(kind, d, state_name="checkpoint", **save_kwargs):
    g = tf.Graph()
    with g.as_default():
        variables = _make_vars()
        saver = make_saver(kind)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefixes = [saver.save(sess, os.path.join(d, "model"), global_step=step, **save_kwargs) for step in (1, 2)]
        snap = _snapshot(d, state_name)
        restored = _restore_fresh(g, saver, prefixes[-1], variables)
        return {"prefixes": prefixes, "last": saver.last_checkpoints, **snap, "restored": restored}


def test_write_meta_graph_false_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _options_scenario, write_meta_graph=False)
    assert not any(f.endswith(".meta") for f in r["files"])
    assert r["restored"] == _expected()


def test_write_state_false_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _options_scenario, write_state=False)
    assert r["state"] is None and "checkpoint" not in r["files"]
    assert r["last"] == []
    assert r["prefixes"] == [f"{DIR}/model-1", f"{DIR}/model-2"]


def _latest_filename_scenario(kind, d):
    r = _options_scenario(kind, d, state_name="mystate", latest_filename="mystate")
    r["latest"] = tf.train.latest_checkpoint(d, latest_filename="mystate")
    r["fc_latest"] = fcm.latest_checkpoint(d, latest_filename="mystate")
    return r


def test_latest_filename_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _latest_filename_scenario)
    assert "mystate" in r["files"] and "checkpoint" not in r["files"]
    assert r["state"] == (
        f'model_checkpoint_path: "{DIR}/model-2"\n'
        f'all_model_checkpoint_paths: "{DIR}/model-1"\n'
        f'all_model_checkpoint_paths: "{DIR}/model-2"\n'
    )
    assert r["latest"] == r["fc_latest"] == f"{DIR}/model-2"


def test_meta_graph_suffix_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _options_scenario, meta_graph_suffix="mg")
    assert "model-2.mg" in r["files"] and not any(f.endswith(".meta") for f in r["files"])


# --------------------------------------------------------------------------------------------
# Relative / absolute save paths, save_relative_paths
# --------------------------------------------------------------------------------------------


def _paths_scenario(kind, d, relative, save_relative_paths, monkeypatch):
    monkeypatch.chdir(d)
    os.mkdir("ckdir")
    save_path = "ckdir/model" if relative else os.path.join(d, "ckdir", "model")
    g = tf.Graph()
    with g.as_default():
        variables = _make_vars()
        saver = make_saver(kind, save_relative_paths=save_relative_paths, max_to_keep=2)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefixes = [saver.save(sess, save_path, global_step=step) for step in (1, 2, 3)]
        snap = _snapshot(os.path.join(d, "ckdir"))
        restored = _restore_fresh(g, saver, prefixes[-1], variables)
        latest_tf = tf.train.latest_checkpoint("ckdir")
        latest_fc = fcm.latest_checkpoint("ckdir")
        state = fcm.get_checkpoint_state("ckdir")
        tf_state = tf.train.get_checkpoint_state("ckdir")
        assert list(state.all_model_checkpoint_paths) == list(tf_state.all_model_checkpoint_paths)
        return {
            "prefixes": prefixes,
            "last": saver.last_checkpoints,
            **snap,
            "restored": restored,
            "latest": latest_tf,
            "fc_latest": latest_fc,
        }


@pytest.mark.parametrize(
    "relative,save_relative_paths",
    [
        (True, False),
        (False, False),
        (False, True),
        (True, True),
    ],
    ids=["relative", "absolute", "absolute-save_relative_paths", "relative-save_relative_paths"],
)
def test_relative_and_absolute_save_paths_like_tf(tmp_path, monkeypatch, relative, save_relative_paths):
    r = _side_by_side(
        tmp_path, _paths_scenario, relative=relative, save_relative_paths=save_relative_paths, monkeypatch=monkeypatch
    )
    if relative:
        assert r["prefixes"] == ["ckdir/model-1", "ckdir/model-2", "ckdir/model-3"]
    else:
        assert r["prefixes"] == [f"{DIR}/ckdir/model-{s}" for s in (1, 2, 3)]
    if relative or save_relative_paths:
        assert r["state"] == (
            'model_checkpoint_path: "model-3"\n'
            'all_model_checkpoint_paths: "model-2"\n'
            'all_model_checkpoint_paths: "model-3"\n'
        )
    else:
        assert r["state"] == (
            f'model_checkpoint_path: "{DIR}/ckdir/model-3"\n'
            f'all_model_checkpoint_paths: "{DIR}/ckdir/model-2"\n'
            f'all_model_checkpoint_paths: "{DIR}/ckdir/model-3"\n'
        )
    assert r["restored"] == _expected()
    assert r["latest"] == r["fc_latest"]


# --------------------------------------------------------------------------------------------
# Errors: same exception type and message as TF
# --------------------------------------------------------------------------------------------


def _save_error_scenario(kind, d, case):
    if case == "parent_is_a_file":
        with open(os.path.join(d, "afile"), "w") as f:
            f.write("x")
    g = tf.Graph()
    with g.as_default():
        _make_vars()
        saver = make_saver(kind)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            calls = {
                "latest_filename_path": lambda: saver.save(sess, os.path.join(d, "model"), latest_filename="sub/state"),
                "latest_filename_collides": lambda: saver.save(sess, os.path.join(d, "checkpoint")),
                "latest_filename_collides_custom": lambda: saver.save(
                    sess, os.path.join(d, "mystate"), latest_filename="mystate"
                ),
                "missing_parent_dirs": lambda: saver.save(sess, os.path.join(d, "no", "such", "model")),
                "missing_parent_dirs_global_step": lambda: saver.save(
                    sess, os.path.join(d, "no", "such", "model"), global_step=3
                ),
                "sess_none": lambda: saver.save(None, os.path.join(d, "model")),
                "restore_none": lambda: saver.restore(sess, None),
                "restore_missing": lambda: saver.restore(sess, os.path.join(d, "nothing-1")),
                "restore_missing_dir": lambda: saver.restore(sess, os.path.join(d, "nodir", "m")),
                "parent_is_a_file": lambda: saver.save(sess, os.path.join(d, "afile", "model")),
            }
            err = _error(calls[case])
        return {"error": err, **_snapshot(d)}


@pytest.mark.parametrize(
    "case",
    [
        "latest_filename_path",
        "latest_filename_collides",
        "latest_filename_collides_custom",
        "missing_parent_dirs",
        "missing_parent_dirs_global_step",
        "sess_none",
        "restore_none",
        "restore_missing",
        "restore_missing_dir",
        "parent_is_a_file",
    ],
)
def test_errors_like_tf(tmp_path, case):
    r = _side_by_side(tmp_path, _save_error_scenario, case=case)
    assert r["error"] is not None
    expected_type = "TypeError" if case == "sess_none" else "ValueError"
    assert r["error"][0] == expected_type
    # nothing was written by a failed call
    assert r["files"] == (["afile"] if case == "parent_is_a_file" else [])


def _missing_parent_scenario(kind, d):
    """The parent of save_path is missing but ITS parent exists (one level missing)."""
    g = tf.Graph()
    with g.as_default():
        variables = _make_vars()
        saver = make_saver(kind)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            result = {"error": _error(lambda: saver.save(sess, os.path.join(d, "sub", "model")))}
        sub = os.path.join(d, "sub")
        result["sub_files"] = sorted(os.listdir(sub)) if os.path.isdir(sub) else None
        if result["error"] is None:
            result["restored"] = _restore_fresh(g, saver, os.path.join(sub, "model"), variables)
        return result


def test_missing_parent_one_level_like_tf(tmp_path):
    """TF 2.21's non-sharded save creates a missing *last* directory level (BundleWriter does a
    non-recursive CreateDir of the prefix's dirname) and succeeds; only when more than one level
    is missing does it raise ValueError("Parent directory of ... doesn't exist, can't save.")."""
    _side_by_side(tmp_path, _missing_parent_scenario)


@pytest.mark.parametrize("how", ["empty_list", "no_variables_in_graph", "empty_dict"])
def test_empty_var_list_raises_like_tf(how):
    errors = []
    for kind in KINDS:
        with tf.Graph().as_default():
            if how == "empty_list":
                errors.append(_error(lambda: make_saver(kind, var_list=[])))
            elif how == "empty_dict":
                errors.append(_error(lambda: make_saver(kind, var_list={})))
            else:
                errors.append(_error(lambda: make_saver(kind)))
    assert errors[1] == errors[0]
    assert errors[0] == ("ValueError", "No variables to save")


def _allow_empty_scenario(kind, d):
    g = tf.Graph()
    with g.as_default():
        saver = make_saver(kind, allow_empty=True)
        with tf_session(g) as sess:
            prefix = saver.save(sess, os.path.join(d, "model"), global_step=1)
            restored = saver.restore(sess, os.path.join(d, "model-1"))
        return {"prefix": prefix, "restored": restored, "last": saver.last_checkpoints, **_snapshot(d)}


def test_allow_empty_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _allow_empty_scenario)
    assert r["prefix"] is None and r["restored"] is None


def test_defer_build_errors_like_tf(tmp_path):
    results = []
    for kind in KINDS:
        g = tf.Graph()
        with g.as_default():
            variables = _make_vars()
            with_var_list = _error(lambda: make_saver(kind, var_list=list(variables.values()), defer_build=True))
            saver = make_saver(kind, defer_build=True)
            with tf_session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                before = _error(lambda: saver.save(sess, str(tmp_path / kind)))
                saver.build()
                d = tmp_path / kind
                d.mkdir()
                prefix = _norm(saver.save(sess, str(d / "model")), str(d))
            restored = _restore_fresh(g, saver, str(d / "model"), variables)
        results.append((with_var_list, before, prefix, restored))
    assert results[0] == results[1]
    assert results[0][0][0] == "ValueError"
    assert results[0][1] == ("RuntimeError", "`build()` should be called before save if defer_build==True")
    assert results[0][3] == _expected()


# --------------------------------------------------------------------------------------------
# var_list: list, dict with custom names, subset
# --------------------------------------------------------------------------------------------


def _var_list_scenario(kind, d, form):
    g = tf.Graph()
    with g.as_default():
        variables = _make_vars()
        if form == "list":
            var_list = [variables[n] for n in sorted(variables)]
        elif form == "dict":
            var_list = {f"custom/{n.replace('/', '_')}": v for n, v in variables.items()}
        else:  # subset
            var_list = [variables["a"], variables["scope/c"]]
        saver = make_saver(kind, var_list=var_list)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, os.path.join(d, "model"))
        keys = sorted(name for name, _ in tf.train.list_variables(prefix))
        # Restore into a fresh session in which the other variables are initialized to zeros.
        with tf_session(g) as sess:
            for v in variables.values():
                sess.run(v.initializer)
                if v.dtype.base_dtype != tf.string:
                    sess.run(v.assign(tf.zeros_like(v)))
            saver.restore(sess, prefix)
            restored = _values(sess, variables)
        return {"prefix": prefix, "keys": keys, **_snapshot(d), "restored": restored}


@pytest.mark.parametrize("form", ["list", "dict", "subset"])
def test_var_list_forms_like_tf(tmp_path, form):
    r = _side_by_side(tmp_path, _var_list_scenario, form=form)
    if form == "list":
        assert r["keys"] == sorted(VALUES)
        assert r["restored"] == _expected()
    elif form == "dict":
        assert r["keys"] == ["custom/a", "custom/b", "custom/s", "custom/scope_c"]
        assert r["restored"] == _expected()
    else:
        assert r["keys"] == ["a", "scope/c"]
        assert r["restored"]["a"] == _expected()["a"]
        assert r["restored"]["scope/c"] == _expected()["scope/c"]
        assert r["restored"]["b"] == _comparable(np.int64(0))  # not in the saver: untouched


def test_var_list_dict_cross_restore(tmp_path):
    """A dict-keyed checkpoint from each library is restored by the other."""
    prefixes = {}
    for kind in KINDS:
        with tf.Graph().as_default() as g:
            variables = _make_vars()
            saver = make_saver(
                kind, var_list={f"k_{i}": v for i, v in enumerate(variables[n] for n in sorted(variables))}
            )
            with tf_session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                (tmp_path / kind).mkdir()
                prefixes[kind] = saver.save(sess, str(tmp_path / kind / "model"))
    for writer in KINDS:
        for reader in KINDS:
            with tf.Graph().as_default() as g:
                variables = _make_vars()
                saver = make_saver(
                    reader, var_list={f"k_{i}": v for i, v in enumerate(variables[n] for n in sorted(variables))}
                )
                assert _restore_fresh(g, saver, prefixes[writer], variables) == _expected(), (writer, reader)


# --------------------------------------------------------------------------------------------
# Sharded saves over 3 CPU devices; partitioned variables
# --------------------------------------------------------------------------------------------


def _sharded_vars():
    variables = {}
    for i, name in enumerate(sorted(VALUES)):
        with tf.device(f"/cpu:{i % N_CPUS}"):
            variables[name] = tf.compat.v1.get_variable(name, initializer=tf.constant(VALUES[name]))
    return variables


def _sharded_scenario(kind, d):
    g = tf.Graph()
    with g.as_default():
        variables = _sharded_vars()
        saver = make_saver(kind, sharded=True, max_to_keep=1)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefixes = [saver.save(sess, os.path.join(d, "model"), global_step=s) for s in (1, 2)]
            collide = saver.save(sess, os.path.join(d, "checkpoint"), write_state=False)
        snap = _snapshot(d)
        restored = _restore_fresh(g, saver, prefixes[-1], variables)
        return {"prefixes": prefixes, "collide": collide, **snap, "restored": restored}


def test_sharded_over_three_devices_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _sharded_scenario)
    assert r["prefixes"] == [f"{DIR}/model-1", f"{DIR}/model-2"]
    data = [f for f in r["files"] if f.startswith("model-2.data-")]
    assert data == [f"model-2.data-0000{i}-of-00003" for i in range(3)]
    assert not any(f.startswith("model-1.") for f in r["files"])
    assert r["restored"] == _expected()


def test_sharded_cross_restore(tmp_path):
    prefixes = {}
    for kind in KINDS:
        with tf.Graph().as_default() as g:
            _sharded_vars()
            saver = make_saver(kind, sharded=True)
            with tf_session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                (tmp_path / kind).mkdir()
                prefixes[kind] = saver.save(sess, str(tmp_path / kind / "model"))
    for writer in KINDS:
        for reader in KINDS:
            for sharded in (True, False):
                with tf.Graph().as_default() as g:
                    variables = _sharded_vars()
                    saver = make_saver(reader, sharded=sharded)
                    got = _restore_fresh(g, saver, prefixes[writer], variables)
                assert got == _expected(), (writer, reader, sharded)


FULL_P = np.arange(40, dtype=np.float32).reshape(10, 4) / 4.0


def _partition_init(shape, dtype=None, partition_info=None):
    off = partition_info.var_offset if partition_info is not None else [0, 0]
    return tf.constant(FULL_P[off[0] : off[0] + shape[0], off[1] : off[1] + shape[1]])


def _partitioned_vars(use_resource=True):
    p = tf.compat.v1.get_variable(
        "p",
        shape=[10, 4],
        initializer=_partition_init,
        partitioner=tf.compat.v1.fixed_size_partitioner(3),
        use_resource=use_resource,
    )
    plain = tf.compat.v1.get_variable("a", initializer=tf.constant(VALUES["a"]), use_resource=use_resource)
    return {"p": p.as_tensor(), "a": plain}


def _partitioned_scenario(kind, d, use_resource):
    g = tf.Graph()
    with g.as_default():
        variables = _partitioned_vars(use_resource)
        saver = make_saver(kind)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, os.path.join(d, "model"))
        listed = tf.train.list_variables(prefix)
        p_value = _comparable(tf.train.load_variable(prefix, "p"))
        restored = _restore_fresh(g, saver, prefix, variables)
        return {"prefix": prefix, **_snapshot(d), "listed": listed, "p": p_value, "restored": restored}


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
def test_partitioned_variables_like_tf(tmp_path, use_resource):
    r = _side_by_side(tmp_path, _partitioned_scenario, use_resource=use_resource)
    assert r["listed"] == [("a", [2, 3]), ("p", [10, 4])]
    assert r["p"] == _comparable(FULL_P)
    assert r["restored"] == {"a": _expected()["a"], "p": _comparable(FULL_P)}


def test_partitioned_files_byte_identical(tmp_path):
    """A partitioned variable next to a plain one: TF lays the data out in SaveV2 order
    (variables sorted by name, each one's slices in partition order); same bytes expected."""
    _side_by_side(tmp_path, _partitioned_scenario, use_resource=True)
    for name in ("model.index", "model.data-00000-of-00001"):
        with open(tmp_path / "tf" / name, "rb") as f1, open(tmp_path / "fc" / name, "rb") as f2:
            assert f2.read() == f1.read(), name


def test_partitioned_cross_restore(tmp_path):
    prefixes = {}
    for kind in KINDS:
        with tf.Graph().as_default() as g:
            _partitioned_vars()
            saver = make_saver(kind)
            with tf_session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                (tmp_path / kind).mkdir()
                prefixes[kind] = saver.save(sess, str(tmp_path / kind / "model"))
    for writer in KINDS:
        for reader in KINDS:
            with tf.Graph().as_default() as g:
                variables = _partitioned_vars()
                saver = make_saver(reader)
                got = _restore_fresh(g, saver, prefixes[writer], variables)
            assert got == {"a": _expected()["a"], "p": _comparable(FULL_P)}, (writer, reader)


@pytest.mark.parametrize("use_resource", [True, False], ids=["resource", "ref"])
def test_cross_restore_plain(tmp_path, use_resource):
    """TF restores fastckpt's files and fastckpt restores TF's (resource and ref variables)."""
    prefixes = {}
    for kind in KINDS:
        with tf.Graph().as_default() as g:
            _make_vars(use_resource)
            saver = make_saver(kind)
            with tf_session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                (tmp_path / kind).mkdir()
                prefixes[kind] = saver.save(sess, str(tmp_path / kind / "model"), global_step=7)
    for writer in KINDS:
        for reader in KINDS:
            with tf.Graph().as_default() as g:
                variables = _make_vars(use_resource)
                saver = make_saver(reader)
                assert _restore_fresh(g, saver, prefixes[writer], variables) == _expected(), (writer, reader)


# --------------------------------------------------------------------------------------------
# .meta files and import_meta_graph
# --------------------------------------------------------------------------------------------


def _global_values(sess):
    return {v.op.name: _comparable(sess.run(v)) for v in tf.compat.v1.global_variables()}


def _save_model(kind, d, **saver_kwargs):
    with tf.Graph().as_default() as g:
        _make_vars()
        saver = make_saver(kind, **saver_kwargs)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            os.makedirs(d, exist_ok=True)
            return saver.save(sess, os.path.join(d, "model"), global_step=5)


def test_fastckpt_meta_importable_by_tf(tmp_path):
    prefix = _save_model("fc", str(tmp_path), max_to_keep=3)
    with tf.Graph().as_default() as g:
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        assert saver.saver_def.max_to_keep == 3
        with tf_session(g) as sess:
            saver.restore(sess, prefix)
            assert _global_values(sess) == _expected()


@pytest.mark.parametrize("writer", KINDS)
def test_fastckpt_import_meta_graph(tmp_path, writer):
    prefix = _save_model(writer, str(tmp_path), max_to_keep=3, keep_checkpoint_every_n_hours=2.0)
    with tf.Graph().as_default() as g:
        saver = fsaver.import_meta_graph(prefix + ".meta")
        assert isinstance(saver, fsaver.Saver)
        assert saver.as_saver_def().max_to_keep == 3
        with tf_session(g) as sess:
            saver.restore(sess, fcm.latest_checkpoint(str(tmp_path)))
            assert _global_values(sess) == _expected()
            # The imported saver saves too; TF reads the result.
            new_prefix = saver.save(sess, str(tmp_path / "again"), global_step=6)
    assert new_prefix == str(tmp_path / "again-6")
    reader = tf.train.load_checkpoint(new_prefix)
    for name, value in VALUES.items():
        assert _comparable(reader.get_tensor(name)) == _comparable(value)


def test_import_meta_graph_saver_keeps_max_to_keep_like_tf(tmp_path):
    """Savers from import_meta_graph apply the .meta's max_to_keep, as TF's do."""
    histories = {}
    for kind in KINDS:
        d = tmp_path / kind
        prefix = _save_model("tf", str(d), max_to_keep=2)
        with tf.Graph().as_default() as g:
            if kind == "tf":
                saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
            else:
                saver = fsaver.import_meta_graph(prefix + ".meta")
            with tf_session(g) as sess:
                saver.restore(sess, prefix)
                for step in (10, 11, 12):
                    saver.save(sess, str(d / "model"), global_step=step)
        histories[kind] = _norm({"last": saver.last_checkpoints, **_snapshot(str(d))}, str(d))
    assert histories["fc"] == histories["tf"]


def test_saver_from_saver_def_like_tf(tmp_path):
    """Saver(saver_def=...) takes max_to_keep from the SaverDef, as TF's does."""
    results = {}
    for kind in KINDS:
        d = tmp_path / kind
        d.mkdir()
        with tf.Graph().as_default() as g:
            _make_vars()
            base = tf.compat.v1.train.Saver(max_to_keep=2)
            saver = make_saver(kind, saver_def=base.as_saver_def())
            with tf_session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                for step in (1, 2, 3, 4):
                    saver.save(sess, str(d / "model"), global_step=step)
            results[kind] = _norm({"last": saver.last_checkpoints, **_snapshot(str(d))}, str(d))
    assert results["fc"] == results["tf"]
    assert len(results["tf"]["last"]) == 2


def test_export_meta_graph_matches_tf(tmp_path):
    metas = []
    for kind in KINDS:
        with tf.Graph().as_default():
            _make_vars()
            saver = make_saver(kind)
            path = str(tmp_path / f"{kind}.meta")
            m = saver.export_meta_graph(path)
            assert os.path.exists(path)
            metas.append(m)
    assert metas[0] == metas[1]


# --------------------------------------------------------------------------------------------
# recover_last_checkpoints / set_last_checkpoints_with_time / set_last_checkpoints
# --------------------------------------------------------------------------------------------


def _recover_scenario(kind, d):
    # Three checkpoints written by TF, then a restarted job resumes managing them.
    with tf.Graph().as_default() as g:
        _make_vars()
        writer = tf.compat.v1.train.Saver(max_to_keep=10)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for step in (1, 2, 3):
                writer.save(sess, os.path.join(d, "model"), global_step=step)
    state = tf.train.get_checkpoint_state(d)
    paths = list(state.all_model_checkpoint_paths) + [os.path.join(d, "model-99")]
    with tf.Graph().as_default() as g:
        _make_vars()
        saver = make_saver(kind, max_to_keep=2)
        saver.recover_last_checkpoints(paths)
        recovered = list(saver.last_checkpoints)
        history = []
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for step in (4, 5):
                saver.save(sess, os.path.join(d, "model"), global_step=step)
                history.append({"last": list(saver.last_checkpoints), **_snapshot(d)})
    return {"recovered": recovered, "history": history}


def test_recover_last_checkpoints_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _recover_scenario)
    assert r["recovered"] == [f"{DIR}/model-{s}" for s in (1, 2, 3)]
    # One overflowing checkpoint is deleted per save, as in TF.
    assert _steps_on_disk(r["history"][0]["files"]) == [2, 3, 4]
    assert _steps_on_disk(r["history"][1]["files"]) == [3, 4, 5]


def _set_last_scenario(kind, d, method):
    with tf.Graph().as_default() as g:
        _make_vars()
        saver = make_saver(kind, max_to_keep=1)
        history = []
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for step in (1, 2):  # not recorded (write_state=False): nothing deleted yet
                saver.save(sess, os.path.join(d, "model"), global_step=step, write_state=False)
            p1, p2 = os.path.join(d, "model-1"), os.path.join(d, "model-2")
            if method == "with_time":
                # model-1 very old (deletable), model-2 far in the future (kept for good).
                saver.set_last_checkpoints_with_time([(p1, 0.0), (p2, 1e18)])
            else:
                saver.set_last_checkpoints([p1, p2])  # timestamps +inf: never deleted
            history.append(list(saver.last_checkpoints))
            for step in (3, 4, 5):
                saver.save(sess, os.path.join(d, "model"), global_step=step)
                history.append({"last": list(saver.last_checkpoints), **_snapshot(d)})
    return history


@pytest.mark.parametrize("method", ["with_time", "deprecated"])
def test_set_last_checkpoints_like_tf(tmp_path, method):
    history = _side_by_side(tmp_path, _set_last_scenario, method=method)
    assert history[0] == [f"{DIR}/model-1", f"{DIR}/model-2"]
    on_disk = _steps_on_disk(history[-1]["files"])
    if method == "with_time":
        assert on_disk == [2, 4, 5]
    else:
        assert on_disk == [1, 2, 4, 5]


# --------------------------------------------------------------------------------------------
# Eager mode
# --------------------------------------------------------------------------------------------


def _eager_scenario(kind, d):
    v1 = tf.Variable(VALUES["a"], name="ev1")
    v2 = tf.Variable(VALUES["b"], name="ev2")
    saver = make_saver(kind, var_list=[v1, v2], max_to_keep=2)
    prefixes = [saver.save(None, os.path.join(d, "model"), global_step=s) for s in (1, 2, 3)]
    snap = _snapshot(d)
    v1.assign(tf.zeros_like(v1))
    v2.assign(0)
    saver.restore(None, prefixes[-1])
    restored = {"a": _comparable(v1.numpy()), "b": _comparable(v2.numpy())}
    return {"prefixes": prefixes, "last": saver.last_checkpoints, **snap, "restored": restored}


def test_eager_save_restore_like_tf(tmp_path):
    if not tf.executing_eagerly():
        pytest.skip("eager execution is disabled in this process")
    r = _side_by_side(tmp_path, _eager_scenario)
    assert r["prefixes"] == [f"{DIR}/model-{s}" for s in (1, 2, 3)]
    assert _steps_on_disk(r["files"]) == [2, 3]
    assert not any(f.endswith(".meta") for f in r["files"])
    assert r["restored"] == {"a": _expected()["a"], "b": _expected()["b"]}


def test_an_eager_save_writes_the_variables_buffers_without_a_copy(tmp_path, monkeypatch):
    if not tf.executing_eagerly():
        pytest.skip("eager execution is disabled in this process")
    from fastckpt import _tf_backend

    handed = []
    items_from_values = _tf_backend._items_from_values

    def record(specs, values, *args, **kwargs):
        handed.extend(values)
        return items_from_values(specs, values, *args, **kwargs)

    monkeypatch.setattr(_tf_backend, "_items_from_values", record)
    v = tf.Variable(np.arange(6, dtype=np.float32), name="buf")
    prefix = fsaver.Saver(var_list=[v]).save(None, str(tmp_path / "model"))
    assert len(handed) == 1 and not handed[0].flags.owndata
    v.assign_add(tf.ones(6))  # a new buffer for the variable: the handed array keeps its value
    assert handed[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert tf.train.load_checkpoint(prefix).get_tensor("buf").tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("form", ["list", "dict"])
def test_eager_cross_restore(tmp_path, form):
    if not tf.executing_eagerly():
        pytest.skip("eager execution is disabled in this process")

    def var_list(v):
        return [v] if form == "list" else {"x": v}

    prefixes = {}
    for kind in KINDS:
        v1 = tf.Variable(VALUES["a"], name="ev1")
        (tmp_path / kind).mkdir()
        prefixes[kind] = make_saver(kind, var_list=var_list(v1)).save(None, str(tmp_path / kind / "model"))
        assert tf.train.list_variables(prefixes[kind]) == [("ev1" if form == "list" else "x", [2, 3])]
    for writer in KINDS:
        for reader in KINDS:
            v = tf.Variable(np.zeros((2, 3), np.float32), name="ev1")
            make_saver(reader, var_list=var_list(v)).restore(None, prefixes[writer])
            assert _comparable(v.numpy()) == _expected()["a"], (writer, reader)


def test_eager_requires_var_list_like_tf():
    if not tf.executing_eagerly():
        pytest.skip("eager execution is disabled in this process")
    errors = [_error(lambda: make_saver(kind)) for kind in KINDS]
    assert errors[0] == errors[1]
    assert errors[0][0] == "RuntimeError"


def test_copy_of_tf_dir_restores_with_fastckpt(tmp_path):
    """A directory written by TF, copied elsewhere with relative paths, is found and restored by
    fastckpt's latest_checkpoint + Saver (and TF's)."""
    src = tmp_path / "src"
    with tf.Graph().as_default() as g:
        _make_vars()
        saver = tf.compat.v1.train.Saver(save_relative_paths=True)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            src.mkdir()
            saver.save(sess, str(src / "model"), global_step=9)
    dst = tmp_path / "dst"
    shutil.copytree(src, dst)
    assert fcm.latest_checkpoint(str(dst)) == tf.train.latest_checkpoint(str(dst)) == str(dst / "model-9")
    with tf.Graph().as_default() as g:
        variables = _make_vars()
        got = _restore_fresh(g, make_saver("fc"), fcm.latest_checkpoint(str(dst)), variables)
    assert got == _expected()


def test_async_save_writes_the_graph_of_its_call(tmp_path):
    """Saver.save(blocking=False) captures the MetaGraphDef on the calling thread:
    ops added while the save completes in the background are not in its .meta."""
    import threading

    from fastckpt import _background

    with tf.Graph().as_default() as graph, tf_session(graph) as sess:
        _make_vars()
        saver = make_saver("fc")
        sess.run(tf.compat.v1.global_variables_initializer())
        release = threading.Event()
        blocker = _background.AsyncSave("blocker")
        _background.submit(blocker, lambda: release.wait(60))  # holds the background thread
        try:
            handle = saver.save(sess, str(tmp_path / "model"), blocking=False)
            tf.compat.v1.get_variable("added_later", initializer=np.float32(1.0))
            assert not handle.done()
        finally:
            release.set()
        assert handle.result(timeout=60) == str(tmp_path / "model")
        blocker.result(timeout=60)
        after = saver.export_meta_graph()
    meta = tf.compat.v1.MetaGraphDef()
    with open(tmp_path / "model.meta", "rb") as f:
        meta.ParseFromString(f.read())
    names = {n.name for n in meta.graph_def.node}
    assert "a" in names and "added_later" not in names
    assert "added_later" in {n.name for n in after.graph_def.node}


# --------------------------------------------------------------------------------------------
# Restore errors: the class a TensorFlow program catches (and fastckpt's)
# --------------------------------------------------------------------------------------------

RESTORE_ERROR_CASES = {
    # case: (fastckpt class also raised, words the message must hold)
    "missing": (fastckpt.TensorNotFoundError, ["Key w not found in checkpoint"]),
    "dtype": (fastckpt.InvalidArgumentError, ["'v'", "float32 [4]", "int32 [4]"]),
    "corrupt": (fastckpt.DataLossError, ["'v'", "checksum"]),
}


def _restore_error_case(kind, d, case, eager):
    """Saves v=float32[4] with `kind`'s saver, then restores into a variable the
    checkpoint lacks, one of another dtype, or from damaged data; returns the exception."""

    def variable(name, value):
        if eager:
            return tf.Variable(value, name=name)
        return tf.compat.v1.get_variable(name, initializer=tf.constant(value))

    def saver_for(v):
        return make_saver(kind, var_list=[v]) if eager else make_saver(kind)

    def run(graph, fn):
        if eager:
            return fn(None)
        with graph.as_default(), tf_session(graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            return fn(sess)

    g = tf.Graph()
    with g.as_default() if not eager else _nullcontext():
        v = variable("v", np.arange(4, dtype=np.float32))
        prefix = run(g, lambda sess: saver_for(v).save(sess, os.path.join(d, "model")))
    if case == "corrupt":
        data = prefix + ".data-00000-of-00001"
        with open(data, "rb") as f:
            raw = bytearray(f.read())
        raw[0] ^= 0xFF
        with open(data, "wb") as f:
            f.write(bytes(raw))
    g = tf.Graph()
    with g.as_default() if not eager else _nullcontext():
        if case == "missing":
            w = variable("w", np.zeros(4, np.float32))
        elif case == "dtype":
            w = variable("v", np.zeros(4, np.int32))
        else:
            w = variable("v", np.zeros(4, np.float32))
        saver = saver_for(w)
        try:
            run(g, lambda sess: saver.restore(sess, prefix))
        except Exception as e:  # noqa: BLE001 - the exception is the result
            return e
    return None


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("eager", [False, True], ids=["graph", "eager"])
@pytest.mark.parametrize("case", list(RESTORE_ERROR_CASES))
def test_restore_errors_are_tensorflows_classes(tmp_path, case, eager):
    if eager and not tf.executing_eagerly():
        pytest.skip("eager execution is disabled in this process")
    got = {}
    for kind in KINDS:
        (tmp_path / kind).mkdir()
        got[kind] = _restore_error_case(kind, str(tmp_path / kind), case, eager)
    tf_class = type(got["tf"])
    assert issubclass(tf_class, tf.errors.OpError), got["tf"]
    ours, words = RESTORE_ERROR_CASES[case]
    assert isinstance(got["fc"], tf_class), (type(got["fc"]).__mro__, tf_class)
    assert isinstance(got["fc"], ours)
    for word in words:
        assert word in str(got["fc"]), (word, str(got["fc"]))
    # What `except tf.errors.X` code reads of the error.
    assert got["fc"].message == str(got["fc"]) and got["fc"].error_code == got["tf"].error_code


def test_restore_errors_without_tensorflow_variables_stay_fastckpt_classes(tmp_path):
    """A Saver of numpy arrays raises fastckpt's classes alone, TensorFlow loaded or not."""
    saver = fsaver.Saver({"v": np.arange(4, dtype=np.float32)})
    prefix = saver.save(None, str(tmp_path / "model"))
    with pytest.raises(fastckpt.TensorNotFoundError) as info:
        fsaver.Saver({"w": np.zeros(4, np.float32)}).restore(None, prefix)
    assert not isinstance(info.value, tf.errors.OpError)
    assert type(info.value) is fastckpt.TensorNotFoundError


# --------------------------------------------------------------------------------------------
# write_version=V1 (deprecated in TensorFlow, still accepted)
# --------------------------------------------------------------------------------------------


class _TFLogRecords:
    """Collects what TensorFlow logs at WARNING and above while in use."""

    def __enter__(self):
        import logging

        self.logger = tf.get_logger()
        self.level = self.logger.level
        self.records = []
        self.handler = logging.Handler()
        self.handler.emit = self.records.append
        self.logger.addHandler(self.handler)
        self.logger.setLevel("WARNING")
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.level)
        return False

    def messages(self):
        return [r.getMessage() for r in self.records]


def _v1_scenario(kind, d):
    from tensorflow.core.protobuf import saver_pb2

    g = tf.Graph()
    with g.as_default():
        variables = _make_vars()
        saver = make_saver(kind, write_version=saver_pb2.SaverDef.V1, max_to_keep=2)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            with _TFLogRecords() as log:  # TensorFlow warns at each V1 save
                prefixes = [saver.save(sess, os.path.join(d, "model"), global_step=s) for s in (1, 2, 3)]
        deprecated = sum("V1 checkpoint format has been deprecated" in m for m in log.messages())
        snap = _snapshot(d)
        restored = _restore_fresh(g, saver, prefixes[-1], variables)
        return {
            "prefixes": prefixes,
            "last": saver.last_checkpoints,
            **snap,
            "restored": restored,
            "deprecated": deprecated,
            "version": saver.saver_def.version,
        }


def test_write_version_v1_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _v1_scenario)
    assert r["deprecated"] == 3 and r["version"] == 1
    assert r["prefixes"] == [f"{DIR}/model-{s}" for s in (1, 2, 3)]
    assert r["last"] == [f"{DIR}/model-2", f"{DIR}/model-3"]
    assert r["files"] == ["checkpoint", "model-2", "model-2.meta", "model-3", "model-3.meta"]
    assert r["restored"] == _expected()


@pytest.mark.parametrize("reader_version", ["V1", "V2"])
def test_v1_files_written_by_tensorflow_restore_with_fastckpt(tmp_path, reader_version):
    """A V1 checkpoint (one file, no index) restores with a fastckpt Saver of either version."""
    from tensorflow.core.protobuf import saver_pb2

    g = tf.Graph()
    with g.as_default():
        variables = _make_vars()
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = tf.compat.v1.train.Saver(write_version=saver_pb2.SaverDef.V1).save(sess, str(tmp_path / "model"))
        assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model", "model.meta"]
        saver = fsaver.Saver(write_version=getattr(saver_pb2.SaverDef, reader_version))
        assert _norm(_restore_fresh(g, saver, prefix, variables), str(tmp_path)) == _expected()


def test_v1_with_arrays_is_refused():
    """Without TensorFlow variables there is no V1 writer to delegate to."""
    with pytest.raises(fastckpt.InvalidArgumentError, match="V1 .* TensorFlow variables"):
        fsaver.Saver({"x": np.zeros(3)}, write_version=1)


# --------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------


def _prefix_and_directory_scenario(kind, d):
    """`d/model` is a checkpoint (v=1) and also a directory whose state file names
    another checkpoint (v=2): restoring `d/model` restores the prefix."""
    values = {}
    for where, value in ((os.path.join(d, "model"), 1.0), (os.path.join(d, "model", "other"), 2.0)):
        g = tf.Graph()
        with g.as_default():
            v = tf.compat.v1.get_variable("v", initializer=tf.constant(value))
            saver = make_saver(kind)
            with tf_session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                if not os.path.isdir(os.path.dirname(where)):
                    os.makedirs(os.path.dirname(where))
                saver.save(sess, where)
    g = tf.Graph()
    with g.as_default():
        v = tf.compat.v1.get_variable("v", initializer=tf.constant(0.0))
        saver = make_saver(kind)
        with tf_session(g) as sess:
            saver.restore(sess, os.path.join(d, "model"))
            values["restored"] = float(sess.run(v))
    return values


def test_save_path_that_is_also_a_directory_restores_the_prefix_like_tf(tmp_path):
    assert _side_by_side(tmp_path, _prefix_and_directory_scenario) == {"restored": 1.0}


def _url_scenario(kind, d, scheme):
    base = f"file://{d}" if scheme == "file" else f"ram://{kind}-{os.path.basename(d)}-{time.time_ns()}"
    g = tf.Graph()
    with g.as_default():
        variables = _make_vars()
        saver = make_saver(kind, max_to_keep=2)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefixes = [saver.save(sess, base + "/model", global_step=s) for s in (1, 2, 3)]
        listing = sorted(tf.io.gfile.listdir(base))
        state = tf.io.gfile.GFile(base + "/checkpoint").read()
        restored = _restore_fresh(g, saver, prefixes[-1], variables)
        latest = tf.train.latest_checkpoint(base)
    out = {
        "prefixes": prefixes,
        "last": saver.last_checkpoints,
        "files": listing,
        "state": state,
        "restored": restored,
        "latest": latest,
    }
    return _norm(out, base) if scheme == "ram" else out


@pytest.mark.parametrize("scheme", ["file", "ram"])
def test_tensorflow_filesystem_paths_like_tf(tmp_path, scheme):
    r = _side_by_side(tmp_path, _url_scenario, scheme=scheme)
    assert r["restored"] == _expected()
    assert _steps_on_disk(r["files"]) == [2, 3]


# --------------------------------------------------------------------------------------------
# Saveables that are not plain variables
# --------------------------------------------------------------------------------------------


def _graph_saveables_scenario(kind, d, what):
    """Saves a MutableHashTable, a tf.data iterator's state (a variant tensor) or a
    user-defined SaveableObject, changes it, restores, and reads it back."""
    g = tf.Graph()
    with g.as_default():
        if what == "table":
            table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, -1, name="tbl")
            setup = [table.insert(tf.constant(["a", "b"]), tf.constant([1, 2], tf.int64))]
            change = table.remove(tf.constant(["a"]))
            probe = table.lookup(tf.constant(["a", "b", "c"]))
            var_list = {"tbl": table}
        elif what == "iterator":
            it = tf.compat.v1.data.make_initializable_iterator(tf.data.Dataset.range(10))
            probe = change = it.get_next()
            setup = [it.initializer, probe, probe]
            var_list = [tf.compat.v1.data.experimental.make_saveable_from_iterator(it)]
        else:
            v = tf.compat.v1.get_variable("held", initializer=tf.constant([1.0, 2.0]))
            setup = [tf.compat.v1.global_variables_initializer()]
            change = v.assign([0.0, 0.0])
            probe = v.read_value()
            var_list = [_PairSaveable(v, "pair")]
        with tf_session(g) as sess:
            for op in setup:  # in order: the iterator is initialized, then advanced twice
                sess.run(op)
            prefix = make_saver(kind, var_list).save(sess, os.path.join(d, "model"))
            sess.run(change)
            make_saver(kind, var_list).restore(sess, prefix)
            value = sess.run(probe)
    names = sorted(n for n, _ in tf.train.list_variables(prefix))
    return {"value": _comparable(np.asarray(value)), "names": names, "files": sorted(os.listdir(d))}


def _make_pair_saveable():
    from tensorflow.python.training.saving import saveable_object

    class PairSaveable(saveable_object.SaveableObject):
        """Saves a variable as two tensors (its value and its value doubled)."""

        def __init__(self, var, name):
            value = var.read_value()
            specs = [
                saveable_object.SaveSpec(value, "", name + "/value"),
                saveable_object.SaveSpec(value * 2, "", name + "/double"),
            ]
            super().__init__(var, specs, name)
            self.var = var

        def restore(self, restored_tensors, restored_shapes):
            value, double = restored_tensors
            return self.var.assign(value + 0 * double)

    return PairSaveable


_PairSaveable = _make_pair_saveable()  # a class of this (user) module, as users define them


@pytest.mark.parametrize("what", ["table", "iterator", "user-saveable"])
def test_graph_saveables_like_tf(tmp_path, what):
    r = _side_by_side(tmp_path, _graph_saveables_scenario, what=what)
    expected = {"table": [1, 2, -1], "iterator": 2, "user-saveable": np.float32([1.0, 2.0])}[what]
    assert r["value"] == _comparable(np.asarray(expected))
    if what == "user-saveable":
        assert r["names"] == ["pair/double", "pair/value"]


def _make_counter():
    """A user-defined Trackable with its own save spec."""
    from tensorflow.python.trackable.base import Trackable

    class Counter(Trackable):
        def __init__(self):
            self.count = tf.Variable(0, dtype=tf.int64)

        def _serialize_to_tensors(self):
            return {"count": self.count.read_value(), "label": tf.constant("counter")}

        def _restore_from_tensors(self, restored_tensors):
            return self.count.assign(restored_tensors["count"])

    return Counter


_Counter = _make_counter()


def _eager_saveables_scenario(kind, d, what):
    if what == "trackable":
        obj = _Counter()
        obj.count.assign(5)
        var_list = {"counter": obj}

        def change():
            obj.count.assign(0)

        def probe():
            return int(obj.count.numpy())
    elif what == "table":
        obj = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, -1)
        obj.insert(tf.constant(["a", "b"]), tf.constant([1, 2], tf.int64))
        var_list = {"tbl": obj}

        def change():
            obj.remove(tf.constant(["a"]))

        def probe():
            return obj.lookup(tf.constant(["a", "b", "c"])).numpy().tolist()
    else:
        obj = iter(tf.data.Dataset.range(10))
        next(obj), next(obj)
        var_list = {"it": obj}

        def change():
            next(obj)

        def probe():
            return int(next(obj).numpy())

    prefix = make_saver(kind, var_list=var_list).save(None, os.path.join(d, "model"))
    change()
    make_saver(kind, var_list=var_list).restore(None, prefix)
    return {
        "value": probe(),
        "names": sorted(n for n, _ in tf.train.list_variables(prefix)),
        "files": sorted(os.listdir(d)),
    }


@pytest.mark.parametrize("what", ["trackable", "table", "iterator"])
def test_eager_saveables_like_tf(tmp_path, what):
    if not tf.executing_eagerly():
        pytest.skip("eager execution is disabled in this process")
    r = _side_by_side(tmp_path, _eager_saveables_scenario, what=what)
    assert r["value"] == {"trackable": 5, "table": [1, 2, -1], "iterator": 2}[what]


# --------------------------------------------------------------------------------------------
# Training loops that drive a Saver: MonitoredTrainingSession, Scaffold, CheckpointSaverHook
# --------------------------------------------------------------------------------------------


def _checkpoint_files(d):
    return sorted(f for f in os.listdir(d) if not f.startswith("events.") and f != "graph.pbtxt")


def _monitored_scenario(kind, d):
    """Two runs of a MonitoredTrainingSession whose Scaffold holds the Saver: the
    second resumes from the first's last checkpoint."""
    runs = []
    for steps in (5, 3):
        g = tf.Graph()
        with g.as_default():
            step = tf.compat.v1.train.get_or_create_global_step()
            v = tf.compat.v1.get_variable("v", initializer=tf.constant(0.0))
            train = tf.group(v.assign_add(1.0), step.assign_add(1))
            scaffold = tf.compat.v1.train.Scaffold(saver=make_saver(kind, max_to_keep=3))
            with tf.compat.v1.train.MonitoredTrainingSession(
                checkpoint_dir=d,
                scaffold=scaffold,
                save_checkpoint_steps=2,
                save_summaries_steps=None,
                save_summaries_secs=None,
                log_step_count_steps=None,
            ) as sess:
                for _ in range(steps):
                    sess.run(train)
                value, at = sess.run([v, step])
        runs.append(
            {
                "v": float(value),
                "step": int(at),
                "files": _checkpoint_files(d),
                "state": _read(os.path.join(d, "checkpoint")),
            }
        )
    return runs


def test_monitored_training_session_with_scaffold_saver_like_tf(tmp_path):
    runs = _side_by_side(tmp_path, _monitored_scenario)
    assert [(r["v"], r["step"]) for r in runs] == [(5.0, 5), (8.0, 8)]
    assert [f for f in runs[1]["files"] if f.endswith(".index")] == [
        "model.ckpt-5.index",
        "model.ckpt-7.index",
        "model.ckpt-8.index",
    ]


def _hook_scenario(kind, d):
    g = tf.Graph()
    with g.as_default():
        step = tf.compat.v1.train.get_or_create_global_step()
        v = tf.compat.v1.get_variable("v", initializer=tf.constant(0.0))
        train = tf.group(v.assign_add(1.0), step.assign_add(1))
        hook = tf.compat.v1.train.CheckpointSaverHook(d, save_steps=3, saver=make_saver(kind))
        with tf.compat.v1.train.SingularMonitoredSession(hooks=[hook]) as sess:
            for _ in range(7):
                sess.run(train)
    return {
        "files": _checkpoint_files(d),
        "state": _read(os.path.join(d, "checkpoint")),
        "v": float(tf.train.load_checkpoint(tf.train.latest_checkpoint(d)).get_tensor("v")),
    }


def test_checkpoint_saver_hook_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _hook_scenario)
    assert r["v"] == 7.0
    assert r["state"].splitlines()[0] == f'model_checkpoint_path: "{DIR}/model.ckpt-7"'


def _collections_scenario(kind, d):
    """export_meta_graph with collections, then import_meta_graph in a fresh graph:
    the collections, the saver and the values come back."""
    g = tf.Graph()
    with g.as_default():
        _make_vars()
        tf.compat.v1.add_to_collection("my_ints", 7)
        tf.compat.v1.add_to_collection("my_tensors", tf.constant(3.0, name="three"))
        saver = make_saver(kind)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, os.path.join(d, "model"))
        saver.export_meta_graph(
            os.path.join(d, "exported.meta"), collection_list=["my_ints", "my_tensors", "variables"]
        )
    g2 = tf.Graph()
    with g2.as_default():
        importer = tf.compat.v1.train.import_meta_graph if kind == "tf" else fastckpt.import_meta_graph
        restorer = importer(os.path.join(d, "exported.meta"))
        with tf_session(g2) as sess:
            restorer.restore(sess, prefix)
            values = {
                v.op.name: _comparable(sess.run(v)) for v in tf.compat.v1.global_variables() if v.op.name in ("a", "b")
            }
            collections = {
                "my_ints": g2.get_collection("my_ints"),
                "my_tensors": [t.name for t in g2.get_collection("my_tensors")],
            }
    return {"values": values, "collections": collections, "keys": sorted(g2.get_all_collection_keys())}


def test_export_import_meta_graph_with_collections_like_tf(tmp_path):
    r = _side_by_side(tmp_path, _collections_scenario)
    assert r["collections"] == {"my_ints": [7], "my_tensors": ["three:0"]}
    assert r["keys"] == ["my_ints", "my_tensors", "variables"]
    assert r["values"] == {"a": _expected()["a"], "b": _expected()["b"]}


def test_save_inside_a_tf_function_raises_like_tf(tmp_path):
    """TensorFlow's Saver refuses to save while a tf.function is traced (RuntimeError); so does fastckpt's."""
    if not tf.executing_eagerly():
        pytest.skip("eager execution is disabled in this process")
    classes = []
    for kind in KINDS:
        v = tf.Variable(np.arange(3, dtype=np.float32), name="v")
        saver = make_saver(kind, var_list=[v])

        @tf.function
        def step(saver=saver, v=v, kind=kind):
            v.assign_add(tf.ones(3))
            return saver.save(None, str(tmp_path / kind))

        with pytest.raises((RuntimeError, tf.errors.FailedPreconditionError)) as info:
            step()
        classes.append(info.type)
    assert classes[0] is RuntimeError
    # fastckpt's is a RuntimeError too, and also TensorFlow's FailedPreconditionError.
    for cls in (fastckpt.FailedPreconditionError, RuntimeError, tf.errors.FailedPreconditionError):
        assert issubclass(classes[1], cls), (classes[1].__mro__, cls)
    assert "tf.function" in str(info.value)
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------
# Large graph-mode saves through a remote session: fetched and written in groups, one data
# file per group
# --------------------------------------------------------------------------------------------


def _grouped_model():
    """Variables of 256 KiB each plus a partitioned one whose slices fall into different groups."""
    rng = np.random.default_rng(5)
    values = {f"w{i}": rng.standard_normal(1 << 16).astype(np.float32) for i in range(6)}
    for n, v in values.items():
        tf.compat.v1.get_variable(n, initializer=tf.constant(v))
    full = rng.standard_normal((3 << 14, 4)).astype(np.float32)

    def init(shape, dtype=None, partition_info=None):
        off = partition_info.var_offset if partition_info is not None else [0, 0]
        return tf.constant(full[off[0] : off[0] + shape[0], off[1] : off[1] + shape[1]])

    p = tf.compat.v1.get_variable(
        "p", shape=full.shape, initializer=init, partitioner=tf.compat.v1.fixed_size_partitioner(3)
    )
    return values, full, p


def test_a_large_save_is_fetched_and_written_in_groups(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCKPT_SAVE_GROUP_MB", "1")  # 2.25 MiB of variables: 3 groups
    with tf.Graph().as_default() as g:
        values, full, _ = _grouped_model()
        saver = fsaver.Saver()
        with _remote_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "model"), global_step=3)
    assert sorted(os.listdir(tmp_path)) == [
        "checkpoint",
        "model-3.data-00000-of-00003",
        "model-3.data-00001-of-00003",
        "model-3.data-00002-of-00003",
        "model-3.index",
        "model-3.meta",
    ]
    # TensorFlow reads it as any bundle with several data files, partitioned variable included.
    reader = tf.train.load_checkpoint(prefix)
    for name, value in values.items():
        assert reader.get_tensor(name).tobytes() == value.tobytes()
    assert reader.get_tensor("p").tobytes() == full.tobytes()
    with tf.Graph().as_default() as g2:
        _grouped_model()
        restorer = tf.compat.v1.train.Saver()
        with tf_session(g2) as sess:
            restorer.restore(sess, prefix)
            got = {v.op.name: sess.run(v) for v in tf.compat.v1.global_variables()}
    for name, value in values.items():
        assert got[name].tobytes() == value.tobytes()
    assert fastckpt.verify(prefix).ok


def test_grouped_save_writes_the_same_tensors_as_one_fetch(tmp_path, monkeypatch):
    prefixes = {}
    for mb in ("1", "0"):  # 0: one fetch, one data file
        monkeypatch.setenv("FASTCKPT_SAVE_GROUP_MB", mb)
        with tf.Graph().as_default() as g:
            _grouped_model()
            saver = fsaver.Saver()
            with _remote_session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                prefixes[mb] = saver.save(sess, str(tmp_path / f"g{mb}" / "model"))
    assert len([f for f in os.listdir(tmp_path / "g0") if ".data-" in f]) == 1
    grouped, whole = fastckpt.load_checkpoint(prefixes["1"]), fastckpt.load_checkpoint(prefixes["0"])
    assert grouped.keys() == whole.keys()
    for name in whole.keys():
        assert grouped.get_tensor(name).tobytes() == whole.get_tensor(name).tobytes(), name


def test_a_failed_grouped_fetch_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """An uninitialized variable fails the second group's fetch: the error is TensorFlow's, as
    with TensorFlow's Saver, and the checkpoint already saved under the prefix stays whole."""
    monkeypatch.setenv("FASTCKPT_SAVE_GROUP_MB", "1")
    with tf.Graph().as_default() as g:
        values, _, _ = _grouped_model()
        tf.compat.v1.get_variable("z_late", initializer=tf.zeros([1 << 18]))
        saver = fsaver.Saver()
        with _remote_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "model"))
            before = {f: (tmp_path / f).read_bytes() for f in sorted(os.listdir(tmp_path))}
        with _remote_session(g, fresh=True) as sess:  # nothing initialized but the early variables
            sess.run([v.initializer for v in tf.compat.v1.global_variables() if v.op.name != "z_late"])
            with pytest.raises(tf.errors.FailedPreconditionError) as info:
                saver.save(sess, str(tmp_path / "model"))
    assert "z_late" in str(info.value)
    assert {f: (tmp_path / f).read_bytes() for f in sorted(os.listdir(tmp_path))} == before
    assert fastckpt.load(prefix)["w0"].tobytes() == values["w0"].tobytes()


def test_a_grouped_save_with_compression_is_compressed(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCKPT_SAVE_GROUP_MB", "1")
    with tf.Graph().as_default() as g:
        values, full, _ = _grouped_model()
        saver = fsaver.Saver(compression="zstd")
        with _remote_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "model"))
        with _remote_session(g) as sess:
            saver.restore(sess, prefix)
            got = {v.op.name: sess.run(v) for v in tf.compat.v1.global_variables() if v.op.name in values}
    assert {n: v.tobytes() for n, v in got.items()} == {n: v.tobytes() for n, v in values.items()}
    assert len([f for f in os.listdir(tmp_path) if ".data-" in f]) == 3
    reader = fastckpt.load_checkpoint(prefix)
    assert reader._compressed is not None and reader.get_tensor("p").tobytes() == full.tobytes()
    reader.close()
    with pytest.raises(ValueError, match="min consumer version 1001"):
        tf.train.load_checkpoint(prefix)


# --------------------------------------------------------------------------------------------
# Graph-mode saves read the variables in place (no fetch copy)
# --------------------------------------------------------------------------------------------


def test_a_graph_save_reads_the_variables_in_place_and_writes_tensorflows_bytes(tmp_path, monkeypatch):
    from fastckpt import _tf_backend

    handed = []
    items_from_values = _tf_backend._items_from_values

    def record(specs, values, *args, **kwargs):
        handed.extend(values)
        return items_from_values(specs, values, *args, **kwargs)

    def no_fetch(self, sess):
        raise AssertionError("a local session's save must not fetch the values")

    monkeypatch.setattr(_tf_backend, "_items_from_values", record)
    monkeypatch.setattr(_tf_backend.TFBackend, "collect", no_fetch)
    with tf.Graph().as_default() as g:
        values, full, _ = _grouped_model()
        saver = fsaver.Saver()
        assert sorted(op.name for op in g.get_operations() if "fastckpt" in op.name) == [
            "save/fastckpt_values",
            "save/fastckpt_values_token",
        ]
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "fc" / "model"))
    # The values the writer got were TensorFlow's buffers, not copies owned by numpy.
    assert len(handed) == 9 and not any(v.flags.owndata for v in handed)
    reader = tf.train.load_checkpoint(prefix)
    for name, value in values.items():
        assert reader.get_tensor(name).tobytes() == value.tobytes(), name
    assert reader.get_tensor("p").tobytes() == full.tobytes()
    # The .meta leaves the read op out (test_plain_save_files_are_byte_identical compares it
    # with TensorFlow's).
    meta = (tmp_path / "fc" / "model.meta").read_bytes()
    assert b"fastckpt" not in meta and b"PyFunc" not in meta and b"save/SaveV2" in meta


def test_the_in_place_read_op_runs_only_inside_a_save():
    with tf.Graph().as_default() as g:
        tf.compat.v1.get_variable("v", initializer=tf.ones([3]))
        fsaver.Saver()
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            with pytest.raises(tf.errors.OpError) as info:
                sess.run("save/fastckpt_values:0", feed_dict={"save/fastckpt_values_token:0": 7})
    assert "the in-place read op runs only inside Saver.save" in str(info.value)


def test_an_in_place_save_of_an_uninitialized_variable_raises_tensorflows_error(tmp_path):
    with tf.Graph().as_default() as g:
        tf.compat.v1.get_variable("a", initializer=tf.ones([4]))
        tf.compat.v1.get_variable("z_late", initializer=tf.zeros([4]))
        saver = fsaver.Saver()
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "model"))
            before = {f: (tmp_path / f).read_bytes() for f in sorted(os.listdir(tmp_path))}
        with tf_session(g) as sess:
            sess.run(g.get_operation_by_name("a/Assign"))
            with pytest.raises(tf.errors.FailedPreconditionError) as info:
                saver.save(sess, str(tmp_path / "model"))
    assert "z_late" in str(info.value)
    assert {f: (tmp_path / f).read_bytes() for f in sorted(os.listdir(tmp_path))} == before
    assert fastckpt.load(prefix)["a"].tolist() == [1.0] * 4


def test_concurrent_in_place_saves_each_write_their_own_values(tmp_path):
    """Two threads save while a third keeps assigning: every variable in every checkpoint holds
    the value of one moment (the buffer a save reads is never written under it: TensorFlow
    copies a resource variable on write while a read holds it), and the values are those of
    the same step or of adjacent ones (the step's two assignments are separate ops, so a save
    can fall between them, with TensorFlow's own Saver too)."""
    import threading

    with tf.Graph().as_default() as g:
        a = tf.compat.v1.get_variable("a", initializer=tf.zeros([1 << 16]))
        b = tf.compat.v1.get_variable("b", initializer=tf.zeros([1 << 16]))
        step = tf.group(a.assign_add(tf.ones_like(a)), b.assign_add(tf.ones_like(b)))
        saver = fsaver.Saver(max_to_keep=None)
        with tf_session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            stop = threading.Event()

            def train():
                while not stop.is_set():
                    sess.run(step)

            def save(k):
                for i in range(4):
                    saver.save(sess, str(tmp_path / f"t{k}" / f"model{i}"), write_state=False)

            trainer = threading.Thread(target=train)
            savers = [threading.Thread(target=save, args=(k,)) for k in range(2)]
            trainer.start()
            for t in savers:
                t.start()
            for t in savers:
                t.join()
            stop.set()
            trainer.join()
    for k in range(2):
        for i in range(4):
            got = fastckpt.load(str(tmp_path / f"t{k}" / f"model{i}"))
            assert np.unique(got["a"]).size == 1 and np.unique(got["b"]).size == 1, (k, i)
            assert abs(float(got["a"][0]) - float(got["b"][0])) <= 1, (k, i)


def test_a_saver_from_a_saver_def_on_a_finalized_graph_fetches(tmp_path):
    with tf.Graph().as_default() as g:
        tf.compat.v1.get_variable("v", initializer=tf.constant([1.0, 2.0]))
        first = tf.compat.v1.train.Saver()
        g.finalize()
        saver = fsaver.Saver(saver_def=first.as_saver_def())
        assert not [op for op in g.get_operations() if "fastckpt" in op.name]
        with tf_session(g) as sess:
            sess.run("v/Assign")
            prefix = saver.save(sess, str(tmp_path / "model"))
    assert fastckpt.load(prefix)["v"].tolist() == [1.0, 2.0]


def test_export_meta_graph_leaves_the_in_place_read_op_out(tmp_path):
    outputs = {}
    for kind in ("tf", "fc"):
        with tf.Graph().as_default():
            tf.compat.v1.get_variable("v", initializer=tf.constant([1.0, 2.0]))
            saver = tf.compat.v1.train.Saver() if kind == "tf" else fsaver.Saver()
            path = str(tmp_path / f"{kind}.pbtxt")
            meta = saver.export_meta_graph(path, as_text=True)
            outputs[kind] = (meta, (tmp_path / f"{kind}.pbtxt").read_text())
    assert outputs["fc"][0] == outputs["tf"][0]
    assert outputs["fc"][1] == outputs["tf"][1]
    assert "fastckpt" not in outputs["fc"][1] and "PyFunc" not in outputs["fc"][1]
