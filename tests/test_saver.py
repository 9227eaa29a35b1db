"""fastckpt.Saver over plain arrays: no TensorFlow imported or needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastckpt


def _vars():
    return {
        "w1": np.arange(6, dtype=np.float32).reshape(2, 3),
        "w2": np.array(7, dtype=np.int64),
        "scope/b": np.zeros(4, dtype=np.float64),
    }


def test_save_restore_in_place(tmp_path):
    v = _vars()
    saver = fastckpt.Saver(v)
    prefix = saver.save(None, str(tmp_path / "model"))
    assert prefix == str(tmp_path / "model")
    assert sorted(os.listdir(tmp_path)) == ["checkpoint", "model.data-00000-of-00001", "model.index", "model.meta"]
    original = {k: a.copy() for k, a in v.items()}
    for a in v.values():
        a[...] = 0
    assert saver.restore(None, prefix) is None
    for k in v:
        np.testing.assert_array_equal(v[k], original[k])


def test_global_step_and_padding(tmp_path):
    saver = fastckpt.Saver(_vars(), pad_step_number=True)
    assert saver.save(None, str(tmp_path / "m"), global_step=np.int64(3)) == str(tmp_path / "m-00000003")
    saver = fastckpt.Saver(_vars())
    assert saver.save(None, str(tmp_path / "m"), global_step=1000) == str(tmp_path / "m-1000")
    assert os.path.exists(str(tmp_path / "m-1000.index"))


def test_max_to_keep_and_state_file(tmp_path):
    saver = fastckpt.Saver(_vars(), max_to_keep=2)
    for step in range(4):
        saver.save(None, str(tmp_path / "m"), global_step=step)
    assert saver.last_checkpoints == [str(tmp_path / "m-2"), str(tmp_path / "m-3")]
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".index")) == ["m-2.index", "m-3.index"]
    assert (tmp_path / "checkpoint").read_text() == (
        f'model_checkpoint_path: "{tmp_path}/m-3"\n'
        f'all_model_checkpoint_paths: "{tmp_path}/m-2"\n'
        f'all_model_checkpoint_paths: "{tmp_path}/m-3"\n'
    )
    assert fastckpt.latest_checkpoint(str(tmp_path)) == str(tmp_path / "m-3")


def test_keep_every_n_hours(tmp_path, monkeypatch):
    import fastckpt.saver as saver_module

    clock = [1000.0]
    monkeypatch.setattr(saver_module.time, "time", lambda: clock[0])
    saver = fastckpt.Saver(_vars(), max_to_keep=1, keep_checkpoint_every_n_hours=1)
    for step in range(5):
        clock[0] += 1800  # half an hour per save
        saver.save(None, str(tmp_path / "m"), global_step=step, write_meta_graph=False)
    kept = sorted(f[:-6] for f in os.listdir(tmp_path) if f.endswith(".index"))
    # Saves at t=2800, 4600, 6400, 8200, 10000; the first keep mark is 1000 + 3600.
    # m-2 (6400) is the first dropped checkpoint newer than the mark: kept forever,
    # and the mark moves to 8200, which m-3 does not pass (strictly).
    assert kept == ["m-2", "m-4"]


def test_write_flags_and_latest_filename(tmp_path):
    saver = fastckpt.Saver(_vars())
    saver.save(None, str(tmp_path / "m"), write_meta_graph=False, write_state=False)
    assert sorted(os.listdir(tmp_path)) == ["m.data-00000-of-00001", "m.index"]
    saver.save(None, str(tmp_path / "n"), latest_filename="mystate", meta_graph_suffix="graph")
    assert (tmp_path / "mystate").exists() and (tmp_path / "n.graph").exists()


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="No variables to save"):
        fastckpt.Saver({})
    empty = fastckpt.Saver({}, allow_empty=True)
    assert empty.save(None, str(tmp_path / "e")) is None
    saver = fastckpt.Saver(_vars())
    with pytest.raises(ValueError, match="'latest_filename' must not contain path components"):
        saver.save(None, str(tmp_path / "m"), latest_filename="a/b")
    with pytest.raises(ValueError, match="'latest_filename' collides with 'save_path'"):
        saver.save(None, str(tmp_path / "checkpoint"))
    with pytest.raises(ValueError, match="Parent directory of .* doesn't exist, can't save."):
        saver.save(None, str(tmp_path / "missing" / "deeper" / "m"))
    # As TensorFlow's writer, one missing directory level is created.
    assert saver.save(None, str(tmp_path / "sub" / "m")) == str(tmp_path / "sub" / "m")
    assert (tmp_path / "sub" / "checkpoint").exists()
    with pytest.raises(ValueError, match="Can't load save_path when it is None."):
        saver.restore(None, None)
    with pytest.raises(ValueError, match="The passed save_path is not a valid checkpoint"):
        saver.restore(None, str(tmp_path / "nothing"))
    with pytest.raises(fastckpt.InvalidArgumentError, match="write_version=V1 .* needs TensorFlow variables"):
        fastckpt.Saver(_vars(), write_version=1)
    with pytest.raises(fastckpt.InvalidArgumentError, match="var_list is required without TensorFlow"):
        if "tensorflow" in sys.modules:
            raise fastckpt.InvalidArgumentError("var_list is required without TensorFlow")
        fastckpt.Saver()


def test_restore_shape_mismatch(tmp_path):
    saver = fastckpt.Saver(_vars())
    prefix = saver.save(None, str(tmp_path / "m"))
    other = fastckpt.Saver({"w1": np.zeros((3, 2), np.float32)})
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        other.restore(None, prefix)
    assert str(e.value) == (
        f"tensor 'w1' in '{prefix}': the checkpoint holds float32 [2, 3], the target "
        "is float32 [3, 2]; restoring converts nothing"
    )


def _mismatched_targets():
    import torch

    return {"numpy": np.zeros((2, 3), np.float64), "torch": torch.zeros((2, 3), dtype=torch.float64)}


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_restore_dtype_mismatch_converts_nothing(tmp_path, kind):
    # One rule for Saver.restore and load_into: a float64 target of a float32
    # checkpoint is an error naming both, never a silent astype.
    prefix = fastckpt.Saver(_vars()).save(None, str(tmp_path / "m"))
    want = (
        f"tensor 'w1' in '{prefix}': the checkpoint holds float32 [2, 3], the target is "
        "float64 [2, 3]; restoring converts nothing"
    )
    target = _mismatched_targets()[kind]
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.Saver({"w1": target}).restore(None, prefix)
    assert str(e.value) == want
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.load_into(prefix, {"w1": target})
    assert str(e.value) == want
    assert float(target.sum()) == 0.0  # nothing was written


def test_restore_reads_in_place_without_temporaries(tmp_path, monkeypatch):
    # Arrays that can be written are read straight into (the load_into path),
    # never read into a temporary and copied.
    v = _vars()
    prefix = fastckpt.Saver(v).save(None, str(tmp_path / "m"))
    targets = {k: np.zeros_like(a) for k, a in v.items()}

    def no_temporaries(self, name):
        raise AssertionError(f"get_tensor({name!r}) made a temporary")

    monkeypatch.setattr(fastckpt.CheckpointReader, "get_tensor", no_temporaries)
    assert fastckpt.Saver(targets).restore(None, prefix) is None
    for k in v:
        np.testing.assert_array_equal(targets[k], v[k])


def test_immutable_arrays_are_returned(tmp_path):
    frozen = np.arange(3.0)
    frozen.setflags(write=False)
    saver = fastckpt.Saver({"x": frozen})
    prefix = saver.save(None, str(tmp_path / "m"))
    replaced = saver.restore(None, prefix)
    assert list(replaced) == ["x"]
    np.testing.assert_array_equal(replaced["x"], [0.0, 1.0, 2.0])
    assert saver.var_list["x"] is replaced["x"]


def test_recover_last_checkpoints(tmp_path):
    saver = fastckpt.Saver(_vars(), max_to_keep=3)
    paths = [saver.save(None, str(tmp_path / "m"), global_step=i) for i in range(3)]
    fresh = fastckpt.Saver(_vars(), max_to_keep=3)
    fresh.recover_last_checkpoints(paths + [str(tmp_path / "gone")])
    assert fresh.last_checkpoints == paths
    fresh.set_last_checkpoints_with_time([(paths[0], 1.0)])
    assert fresh.last_checkpoints == [paths[0]]


def test_meta_graph_round_trip_without_tensorflow(tmp_path):
    v = _vars()
    prefix = fastckpt.Saver(v).save(None, str(tmp_path / "m"))
    restored = fastckpt.import_meta_graph(prefix + ".meta")
    assert sorted(restored.var_list) == sorted(v)
    restored.restore(None, prefix)
    for k in v:
        np.testing.assert_array_equal(restored.var_list[k], v[k])
    meta = fastckpt.Saver(v).export_meta_graph()
    assert meta.saver_def.restore_op_name == "save/restore_all"
    assert meta.saver_def.filename_tensor_name == "save/Const:0"


def test_tensorflow_is_never_imported(tmp_path):
    code = textwrap.dedent(f"""
        import sys, numpy as np, fastckpt
        v = {{"w": np.ones(3, np.float32)}}
        s = fastckpt.Saver(v, max_to_keep=1)
        p = s.save(None, {str(tmp_path / "m")!r}, global_step=1)
        s.restore(None, fastckpt.latest_checkpoint({str(tmp_path)!r}))
        fastckpt.import_meta_graph(p + ".meta").restore(None, p)
        assert "tensorflow" not in sys.modules, "tensorflow was imported"
        print("ok")
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_torch_tensors_restored_in_place(tmp_path):
    import torch

    v = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.tensor([1.5, -2.0], dtype=torch.bfloat16)}
    saver = fastckpt.Saver(v)
    prefix = saver.save(None, str(tmp_path / "m"))
    w_before, b_before = v["w"], v["b"]
    for t in v.values():
        t.zero_()
    assert saver.restore(None, prefix) is None
    assert v["w"] is w_before and v["b"] is b_before  # filled in place
    assert v["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert v["b"].float().tolist() == [1.5, -2.0]


def test_jax_arrays_are_replaced(tmp_path):
    import jax.numpy as jnp
    import ml_dtypes

    v = {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "b": jnp.array([1.5, -2.0], dtype=jnp.bfloat16)}
    prefix = fastckpt.Saver(v).save(None, str(tmp_path / "m"))
    loaded = fastckpt.load(prefix)
    assert loaded["b"].dtype == ml_dtypes.bfloat16
    target = fastckpt.Saver({"w": jnp.zeros((2, 3), jnp.float32), "b": jnp.zeros(2, jnp.bfloat16)})
    replaced = target.restore(None, prefix)
    assert sorted(replaced) == ["b", "w"]
    assert type(replaced["w"]).__module__.startswith(("jax", "jaxlib"))
    assert replaced["w"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert target.var_list["b"] is replaced["b"]
    assert [float(x) for x in replaced["b"]] == [1.5, -2.0]


def test_two_processes_sharing_a_directory_lose_no_state_entry(tmp_path):
    """Savers of different prefixes in two processes update one state file under a
    directory lock and keep each other's entries (TensorFlow's Saver would drop
    them: each rewrites the file from its own list)."""
    code = textwrap.dedent("""
        import sys, numpy as np, fastckpt
        directory, name = sys.argv[1], sys.argv[2]
        saver = fastckpt.Saver({"w": np.zeros(1000, np.float32)}, max_to_keep=2)
        for step in range(12):
            saver.var_list["w"][:] = step
            saver.save(None, f"{directory}/{name}", global_step=step)
        """)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), name]) for name in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    state = fastckpt.get_checkpoint_state(str(tmp_path))
    listed = sorted(os.path.basename(p) for p in state.all_model_checkpoint_paths)
    assert listed == ["a-10", "a-11", "b-10", "b-11"]
    assert os.path.basename(state.model_checkpoint_path) in ("a-11", "b-11")
    for path in state.all_model_checkpoint_paths:
        step = int(path.rsplit("-", 1)[1])
        assert fastckpt.load(path)["w"][0] == step
    assert not [f for f in os.listdir(tmp_path) if "tmp" in f or "tempstate" in f]


def test_url_paths_need_tensorflow_variables(tmp_path):
    """ram://, gs://... are TensorFlow filesystems: a Saver of arrays says so."""
    saver = fastckpt.Saver({"x": np.zeros(3, np.float32)})
    with pytest.raises(
        fastckpt.InvalidArgumentError, match=r"'ram://bucket/model': ram:// paths are TensorFlow filesystems"
    ):
        saver.save(None, "ram://bucket/model")
    assert os.listdir(tmp_path) == []
