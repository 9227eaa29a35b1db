"""Paths a user types: every reader entry point resolves them the same way.

``fastckpt.reader._resolve_prefix`` is the one resolution behind ``load``,
``load_checkpoint``, ``list_variables``, ``load_variable``, ``load_into``,
``verify`` and the CLI: a checkpoint's own files (``PREFIX.index``,
``PREFIX.data-NNNNN-of-MMMMM``, ``PREFIX.meta``) name it, a directory names the
checkpoint its state file points at or its only checkpoint, and ``P`` with a
``P.index`` is that checkpoint even when ``P`` is also a directory.
"""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

import fastckpt

DATA1 = ".data-00000-of-00001"


def _save(prefix, value):
    fastckpt.save(
        {"w": np.full(3, value, np.float32), "step": np.int64(value)}, str(prefix), durable=False, num_shards=1
    )
    return str(prefix)


def _entry_points(path):
    """What each reader entry point makes of `path`: the value of "step" it reads."""
    into = {"step": np.zeros((), np.int64)}
    fastckpt.load_into(path, into)
    with fastckpt.load_checkpoint(path) as reader:
        from_reader = int(reader.get_tensor("step"))
    return {
        "load": int(fastckpt.load(path)["step"]),
        "load_checkpoint": from_reader,
        "list_variables": dict(fastckpt.list_variables(path))["w"],
        "load_variable": int(fastckpt.load_variable(path, "step:0")),
        "load_into": int(into["step"]),
        "verify": fastckpt.verify(path).prefix,
    }


def _expected(prefix, step):
    return {
        "load": step,
        "load_checkpoint": step,
        "list_variables": [3],
        "load_variable": step,
        "load_into": step,
        "verify": prefix,
    }


@pytest.mark.parametrize("suffix", [".index", DATA1, ".meta"])
def test_checkpoint_file_names_its_checkpoint(tmp_path, suffix):
    prefix = _save(tmp_path / "model.ckpt-7", 7)
    assert _entry_points(prefix + suffix) == _expected(prefix, 7)


def test_data_file_of_a_sharded_checkpoint(tmp_path):
    prefix = str(tmp_path / "sharded")
    fastckpt.save(
        {f"t{i}": np.arange(5) + i for i in range(4)} | {"step": np.int64(3), "w": np.zeros(3)},
        prefix,
        durable=False,
        num_shards=3,
    )
    assert _entry_points(prefix + ".data-00002-of-00003") == _expected(prefix, 3)


def test_directory_without_state_file_holding_one_checkpoint(tmp_path):
    prefix = _save(tmp_path / "only", 5)
    assert _entry_points(tmp_path) == _expected(prefix, 5)


def test_directory_without_state_file_holding_several(tmp_path):
    a = _save(tmp_path / "a", 1)
    b = _save(tmp_path / "b", 2)
    message = (
        f"directory '{tmp_path}' holds 2 checkpoints and no 'checkpoint' state file to "
        f"choose one: '{a}', '{b}'; pass one of these prefixes"
    )
    for call in (
        fastckpt.load,
        fastckpt.load_checkpoint,
        fastckpt.list_variables,
        fastckpt.verify,
        lambda p: fastckpt.load_variable(p, "step"),
    ):
        with pytest.raises(fastckpt.InvalidArgumentError) as e:
            call(tmp_path)
        assert str(e.value) == message


def test_directory_without_any_checkpoint(tmp_path):
    with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
        fastckpt.load(tmp_path)
    assert str(e.value) == (
        f"no checkpoint in directory '{tmp_path}' (no 'checkpoint' state file and no PREFIX.index file)"
    )
    assert (e.value.errno, e.value.filename) == (errno.ENOENT, str(tmp_path))


def test_directory_with_state_file_keeps_its_meaning(tmp_path):
    """The state file decides, however many checkpoints lie beside it."""
    saver = fastckpt.Saver({"step": np.zeros((), np.int64), "w": np.zeros(3, np.float32)}, max_to_keep=5)
    for step in (1, 2):
        saver.var_list["step"][...] = step
        saver.save(None, str(tmp_path / "m"), global_step=step)
    _save(tmp_path / "unrelated", 9)
    assert _entry_points(tmp_path) == _expected(str(tmp_path / "m-2"), 2)


def test_state_file_naming_a_removed_checkpoint(tmp_path):
    saver = fastckpt.Saver({"step": np.zeros((), np.int64)})
    path = saver.save(None, str(tmp_path / "m"), global_step=1)
    other = _save(tmp_path / "other", 4)
    os.remove(path + ".index")
    with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
        fastckpt.load(tmp_path)
    assert str(e.value) == (
        f"no checkpoint in directory '{tmp_path}': its 'checkpoint' state file "
        f"names none that exists (checkpoints present: '{other}')"
    )


def test_prefix_that_is_also_a_directory(tmp_path):
    """P.index exists: P is that checkpoint, not the directory P (as TF's Saver.restore)."""
    prefix = _save(tmp_path / "run", 11)
    os.mkdir(prefix)
    _save(os.path.join(prefix, "inner"), 12)  # the directory holds a checkpoint of its own
    assert _entry_points(prefix) == _expected(prefix, 11)


def test_saver_restore_of_a_prefix_that_is_also_a_directory(tmp_path):
    saver = fastckpt.Saver({"step": np.zeros((), np.int64)})
    path = saver.save(None, str(tmp_path / "m"))
    os.mkdir(path)
    saver.var_list["step"][...] = 99
    saver.restore(None, path)
    assert int(saver.var_list["step"]) == 0


def test_a_plain_missing_prefix_is_reported_as_such(tmp_path):
    for path in (tmp_path / "nothing", tmp_path / "nothing.index"):
        with pytest.raises(fastckpt.CheckpointNotFoundError) as e:
            fastckpt.load(path)
        assert str(e.value) == f"checkpoint index not found: '{tmp_path / 'nothing.index'}'"
