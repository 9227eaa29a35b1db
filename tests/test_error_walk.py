"""Every public function, given bad arguments or a bad checkpoint, raises a
FastCkptError (also the built-in class a caller would catch) whose message
names the file, and the tensor where one applies. Nothing escapes as a plain
ValueError/TypeError/KeyError/OSError from numpy, the bindings or the OS."""

from __future__ import annotations

import os
import re
from typing import Any, Callable, List, Sequence, Tuple, Type

import numpy as np
import pytest

import fastckpt
from fastckpt import checkpoint_management as cm


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    d = tmp_path_factory.mktemp("walk")
    prefix = str(d / "model")
    fastckpt.save(
        {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "s": np.array([b"x"], dtype=object)}, prefix, durable=False
    )
    return d, prefix


class Frozen:
    """An object of no supported kind."""


def cases(d, prefix) -> List[Tuple[str, Callable[[], Any], Type[BaseException], Sequence[str]]]:
    missing = str(d / "missing")
    data = prefix + ".data-00000-of-00001"
    read_only = np.zeros((3, 4), np.float32)
    read_only.setflags(write=False)

    def reader_call(fn):
        def run():
            with fastckpt.load_checkpoint(prefix) as r:
                return fn(r)

        return run

    def closed_reader():
        r = fastckpt.load_checkpoint(prefix)
        r.close()
        return r.get_tensor("w")

    return [
        # save
        (
            "save: a single value",
            lambda: fastckpt.save(np.ones(2), str(d / "a")),
            fastckpt.InvalidArgumentError,
            ["mapping, list or tuple"],
        ),
        (
            "save: two leaves of one name",
            lambda: fastckpt.save({"a/b": 1, "a": {"b": 2}}, str(d / "a")),
            fastckpt.InvalidArgumentError,
            ["'a/b'"],
        ),
        (
            "save: a set",
            lambda: fastckpt.save({"opt": {"s": {1}}}, str(d / "a")),
            fastckpt.UnsupportedDtypeError,
            ["opt/s", "set"],
        ),
        ("load: pickled leaf", lambda: _pickled(d), fastckpt.UnsupportedDtypeError, ["'p'", "allow_pickle"]),
        ("save: empty name", lambda: fastckpt.save({"": np.ones(1)}, str(d / "a")), fastckpt.InvalidArgumentError, []),
        (
            "save: object of no kind",
            lambda: fastckpt.save({"opt": {"x": Frozen()}}, str(d / "a")),
            fastckpt.UnsupportedDtypeError,
            ["opt/x", "Frozen"],
        ),
        (
            "save: structured dtype",
            lambda: fastckpt.save({"st": np.zeros(2, "i4,f4")}, str(d / "a")),
            fastckpt.UnsupportedDtypeError,
            ["'st'"],
        ),
        (
            "save: directory prefix",
            lambda: fastckpt.save({"w": np.ones(1)}, str(d) + "/"),
            fastckpt.InvalidArgumentError,
            [str(d)],
        ),
        (
            "save: num_shards",
            lambda: fastckpt.save({"w": np.ones(1)}, str(d / "a"), num_shards=0),
            fastckpt.InvalidArgumentError,
            ["num_shards"],
        ),
        (
            "save: threads",
            lambda: fastckpt.save({"w": np.ones(1)}, str(d / "a"), threads="2"),
            fastckpt.InvalidArgumentError,
            ["threads"],
        ),
        (
            "save: budget",
            lambda: fastckpt.save({"w": np.ones(1)}, str(d / "a"), blocking=False, host_memory_budget=-1),
            fastckpt.InvalidArgumentError,
            ["host_memory_budget"],
        ),
        (
            "save: parent is a file",
            lambda: fastckpt.save({"w": np.ones(1)}, data + "/x"),
            fastckpt.CheckpointNotADirectoryError,
            [data],
        ),
        (
            "save: grandparent is a file",
            lambda: fastckpt.save({"w": np.ones(1)}, data + "/x/y"),
            fastckpt.CheckpointNotADirectoryError,
            [data],
        ),
        # load
        ("load: missing", lambda: fastckpt.load(missing), fastckpt.CheckpointNotFoundError, [missing]),
        ("load: device", lambda: fastckpt.load(prefix, device="tpu:0"), fastckpt.InvalidArgumentError, ["tpu"]),
        ("load: array_type", lambda: fastckpt.load(prefix, array_type="jax"), fastckpt.InvalidArgumentError, ["jax"]),
        ("load: threads", lambda: fastckpt.load(prefix, threads=-1), fastckpt.InvalidArgumentError, ["threads"]),
        # load_into
        (
            "load_into: a target path the checkpoint lacks",
            lambda: fastckpt.load_into(prefix, [np.zeros(3)]),
            fastckpt.TensorNotFoundError,
            ["'0'", prefix],
        ),
        (
            "load_into: a checkpoint tensor the target lacks",
            lambda: fastckpt.load_into(prefix, {"w": {}}),
            fastckpt.TensorNotFoundError,
            ["'w'", prefix, "strict=False"],
        ),
        (
            "load_into: unknown tensor",
            lambda: fastckpt.load_into(prefix, {"nope": np.zeros(3)}),
            fastckpt.TensorNotFoundError,
            ["'nope'", prefix],
        ),
        (
            "load_into: shape",
            lambda: fastckpt.load_into(prefix, {"w": np.zeros((4, 3), np.float32)}),
            fastckpt.InvalidArgumentError,
            ["'w'", prefix, "[3, 4]", "[4, 3]"],
        ),
        (
            "load_into: dtype",
            lambda: fastckpt.load_into(prefix, {"w": np.zeros((3, 4), np.int32)}),
            fastckpt.InvalidArgumentError,
            ["'w'", prefix, "float32", "int32"],
        ),
        (
            "load_into: read-only",
            lambda: fastckpt.load_into(prefix, {"w": read_only}),
            fastckpt.InvalidArgumentError,
            ["'w'", prefix, "read-only"],
        ),
        (
            "load_into: not an array",
            lambda: fastckpt.load_into(prefix, {"w": Frozen()}),
            fastckpt.InvalidArgumentError,
            ["'w'", prefix],
        ),
        # the reader
        ("reader: missing", lambda: fastckpt.load_checkpoint(missing), fastckpt.CheckpointNotFoundError, [missing]),
        (
            "reader: unknown tensor",
            reader_call(lambda r: r.get_tensor("nope")),
            fastckpt.TensorNotFoundError,
            ["'nope'", prefix],
        ),
        (
            "reader: name of the wrong type",
            reader_call(lambda r: r.get_tensor(3)),
            fastckpt.InvalidArgumentError,
            ["int"],
        ),
        ("reader[missing]", reader_call(lambda r: r["nope"]), fastckpt.TensorNotFoundError, ["'nope'"]),
        (
            "reader: slice spec",
            reader_call(lambda r: r.get_slice("w", "0,9:-")),
            fastckpt.InvalidArgumentError,
            ["'w'", "[3, 4]"],
        ),
        (
            "reader: slice rank",
            reader_call(lambda r: r.get_slice("w", [(0, 1)])),
            fastckpt.InvalidArgumentError,
            ["'w'"],
        ),
        (
            "reader: slice step",
            reader_call(lambda r: r.get_slice("w", np.s_[::2])),
            fastckpt.InvalidArgumentError,
            ["'w'"],
        ),
        ("reader: closed", closed_reader, fastckpt.FailedPreconditionError, ["closed"]),
        (
            "list_variables: missing",
            lambda: fastckpt.list_variables(missing),
            fastckpt.CheckpointNotFoundError,
            [missing],
        ),
        (
            "load_variable: missing tensor",
            lambda: fastckpt.load_variable(prefix, "nope"),
            fastckpt.TensorNotFoundError,
            ["'nope'", prefix],
        ),
        # verify
        ("verify: missing", lambda: fastckpt.verify(missing), fastckpt.CheckpointNotFoundError, [missing]),
        ("verify: threads", lambda: fastckpt.verify(prefix, threads=0), fastckpt.InvalidArgumentError, ["threads"]),
        (
            "verify: chunk_bytes",
            lambda: fastckpt.verify(prefix, chunk_bytes=-5),
            fastckpt.InvalidArgumentError,
            ["chunk_bytes"],
        ),
        # Saver (also the built-in class TensorFlow's Saver raises)
        ("Saver: empty", lambda: fastckpt.Saver({}), fastckpt.InvalidArgumentError, ["No variables to save"]),
        ("Saver: bad names", lambda: fastckpt.Saver({"": np.ones(1)}), fastckpt.InvalidArgumentError, []),
        (
            "Saver.restore: None",
            lambda: fastckpt.Saver({"w": np.ones(1)}).restore(None, None),
            fastckpt.InvalidArgumentError,
            ["None"],
        ),
        (
            "Saver.restore: not a checkpoint",
            lambda: fastckpt.Saver({"w": np.ones(1)}).restore(None, missing),
            fastckpt.InvalidArgumentError,
            [missing],
        ),
        (
            "Saver.restore: unknown tensor",
            lambda: fastckpt.Saver({"nope": np.ones(1)}).restore(None, prefix),
            fastckpt.TensorNotFoundError,
            ["'nope'", prefix],
        ),
        (
            "Saver.save: no parent",
            lambda: fastckpt.Saver({"w": np.ones(1)}).save(None, str(d / "x" / "y" / "m")),
            fastckpt.InvalidArgumentError,
            [str(d / "x" / "y" / "m")],
        ),
        (
            "Saver.set_last_checkpoints",
            lambda: fastckpt.Saver({"w": np.ones(1)}).set_last_checkpoints("x"),
            fastckpt.ArgumentTypeError,
            ["list"],
        ),
        (
            "Saver: global_step",
            lambda: fastckpt.Saver({"w": np.ones(1)}).save(None, str(d / "g"), global_step="x"),
            fastckpt.ArgumentTypeError,
            ["global_step"],
        ),
        (
            "AsyncSave.result: timeout",
            lambda: fastckpt.save({"w": np.ones(1)}, str(d / "t"), blocking=False).result(timeout=-1),
            fastckpt.InvalidArgumentError,
            ["timeout"],
        ),
        # checkpoint management
        (
            "update_checkpoint_state: state file in a missing directory",
            lambda: fastckpt.update_checkpoint_state(str(d), prefix, latest_filename="a/b"),
            fastckpt.CheckpointNotFoundError,
            [str(d / "a" / "b")],
        ),
        (
            "get_checkpoint_state: no model_checkpoint_path",
            lambda: _empty_state(d),
            fastckpt.InvalidArgumentError,
            [str(d / "empty" / "checkpoint")],
        ),
        ("get_checkpoint_mtimes: nothing", lambda: cm.get_checkpoint_mtimes([missing]), None, []),
        (
            "import_meta_graph: missing",
            lambda: fastckpt.import_meta_graph(missing + ".meta", use_tensorflow=False),
            fastckpt.CheckpointNotFoundError,
            [missing + ".meta"],
        ),
        (
            "wait_for_pending_saves: timeout",
            lambda: fastckpt.wait_for_pending_saves(timeout="x"),
            fastckpt.InvalidArgumentError,
            ["timeout"],
        ),
    ]


def _pickled(d):
    fastckpt.save({"p": Frozen(), "n": 1}, str(d / "pickled"), allow_pickle=True)
    return fastckpt.load(str(d / "pickled"))


def _empty_state(d):
    os.makedirs(d / "empty", exist_ok=True)
    (d / "empty" / "checkpoint").write_text("")
    return cm.get_checkpoint_state(str(d / "empty"))


def test_every_public_error_is_a_fastckpt_error_naming_what_it_is_about(ck):
    d, prefix = ck
    problems = []
    for what, call, cls, names in cases(d, prefix):
        try:
            result = call()
        except BaseException as e:  # noqa: BLE001 - classifying is the point
            if cls is None:
                problems.append(f"{what}: raised {type(e).__name__}: {e}")
            elif not isinstance(e, fastckpt.FastCkptError):
                problems.append(f"{what}: {type(e).__module__}.{type(e).__name__} is no FastCkptError: {e}")
            elif not isinstance(e, cls):
                problems.append(f"{what}: {type(e).__name__}, expected {cls.__name__}: {e}")
            else:
                missing = [n for n in names if n not in str(e)]
                if missing:
                    problems.append(f"{what}: message does not name {missing}: {e}")
                if re.search(r": None$|'None'", str(e)) and "None" not in " ".join(names):
                    problems.append(f"{what}: message ends in None: {e}")
            continue
        if cls is not None:
            problems.append(f"{what}: raised nothing (returned {result!r})")
    assert not problems, "\n".join(problems)
