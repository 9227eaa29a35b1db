"""Nested training state: saved as named tensors plus a structure entry,
rebuilt exactly by load(), filled in place by load_into(), and readable by
TensorFlow tensor by tensor."""

from __future__ import annotations

import collections
import fractions
import json
import math
import os
import struct
import subprocess
import sys
import textwrap

import ml_dtypes
import numpy as np
import pytest
from sim_device import SimDeviceArray, new_sim_array

import fastckpt
from fastckpt import structure


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _state():
    model = collections.OrderedDict(
        [
            ("layer.weight", np.arange(6, dtype=np.float32).reshape(2, 3)),
            ("layer.bias", np.array([0.5, -0.5], dtype=ml_dtypes.bfloat16)),
        ]
    )
    model._metadata = collections.OrderedDict([("", {"version": 1}), ("layer", {"version": 2})])
    return {
        "model": model,
        "optim": {
            "state": {
                0: {"step": np.array(3.0, np.float32), "exp_avg": np.ones((2, 3), np.float32)},
                1: {"step": np.array(3.0, np.float32), "exp_avg": np.zeros(2, np.float32)},
            },
            "param_groups": [
                {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False, "foreach": None, "params": [0, 1]}
            ],
        },
        "step": 1000,
        "extremes": [-(2**63), 2**63 - 1, 2**64, -(2**80)],
        "floats": (math.nan, math.inf, -math.inf, -0.0, 1e-310),
        "complex": complex(1.5, -2.0),
        "text": "héllo/wörld",
        "blob": b"\x00\xff\x00",
        "np": {
            "f32": np.float32(1.25),
            "i8": np.int8(-3),
            "flag": np.bool_(True),
            "bf16": ml_dtypes.bfloat16(2.5),
            "zero_d": np.array(7, np.int16),
        },
        "empty": {"d": {}, "l": [], "t": ()},
        "none": None,
    }


def _assert_same(got, want, path="root"):
    if isinstance(want, dict):
        assert type(got) is type(want), (path, type(got), type(want))
        assert list(got.keys()) == list(want.keys()), path
        if hasattr(want, "_metadata"):
            assert got._metadata == want._metadata, path
        for k in want:
            _assert_same(got[k], want[k], f"{path}/{k}")
    elif isinstance(want, (list, tuple)):
        assert type(got) is type(want) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_same(g, w, f"{path}/{i}")
    elif isinstance(want, np.ndarray):
        assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape, path
        assert got.tobytes() == want.tobytes(), path
    elif isinstance(want, np.generic):
        assert type(got) is type(want) and got.tobytes() == want.tobytes(), path
    elif isinstance(want, float):
        assert type(got) is float and _bits(got) == _bits(want), path
    else:
        assert type(got) is type(want) and got == want, (path, got, want)


def test_nested_state_round_trips_exactly(tmp_path):
    state = _state()
    fastckpt.save(state, tmp_path / "ck")
    _assert_same(fastckpt.load(tmp_path / "ck"), state)


def test_leaves_are_named_by_their_paths_and_tensorflow_reads_them(tmp_path):
    import tensorflow as tf

    state = _state()
    fastckpt.save(state, tmp_path / "ck")
    names = dict(fastckpt.list_variables(tmp_path / "ck"))
    assert names["model/layer.weight"] == [2, 3]
    assert names["optim/state/0/exp_avg"] == [2, 3]
    assert names["optim/param_groups/0/betas/1"] == []
    assert "optim/param_groups/0/foreach" not in names  # None has no tensor
    assert names[structure.STRUCTURE_KEY] == []
    reader = tf.train.load_checkpoint(str(tmp_path / "ck"))
    np.testing.assert_array_equal(reader.get_tensor("optim/state/0/exp_avg"), np.ones((2, 3), np.float32))
    assert reader.get_tensor("step") == 1000 and reader.get_tensor("step").dtype == np.int64
    assert reader.get_tensor("optim/param_groups/0/lr") == 1e-3
    assert reader.get_tensor("text") == "héllo/wörld".encode()
    assert reader.get_tensor("extremes/2") == b"18446744073709551616"  # beyond 64 bits: its digits
    description = json.loads(reader.get_tensor(structure.STRUCTURE_KEY))
    assert description["format"] == 1 and description["root"]["t"] == "dict"


def test_keys_keep_their_slashes_and_collisions_are_refused(tmp_path):
    fastckpt.save({"dense": {"kernel": np.ones(2)}, "dense/bias": 1.0}, tmp_path / "ck")
    assert [n for n, _ in fastckpt.list_variables(tmp_path / "ck")] == [
        structure.STRUCTURE_KEY,
        "dense/bias",
        "dense/kernel",
    ]
    back = fastckpt.load(tmp_path / "ck")
    assert set(back) == {"dense", "dense/bias"} and back["dense/bias"] == 1.0
    with pytest.raises(fastckpt.InvalidArgumentError) as e:
        fastckpt.save({"a/b": 1, "a": {"b": 2}}, tmp_path / "x")
    assert str(e.value) == (
        "two leaves of the state would both be named 'a/b' (keys are joined with '/' as they are: rename one)"
    )
    with pytest.raises(fastckpt.InvalidArgumentError, match="both be named 'm/0'"):
        fastckpt.save({"m": {0: 1, "0": 2}}, tmp_path / "x")
    with pytest.raises(fastckpt.InvalidArgumentError, match=r"^tensor names must not be empty: a key under 'm' is ''$"):
        fastckpt.save({"m": {"": 1}}, tmp_path / "x")
    with pytest.raises(fastckpt.UnsupportedDtypeError, match=r"^m: dict keys must be str or int, not a float"):
        fastckpt.save({"m": {1.5: 1}}, tmp_path / "x")
    with pytest.raises(fastckpt.InvalidArgumentError, match="'_FASTCKPT_STRUCTURE' is reserved"):
        fastckpt.save({"_FASTCKPT_STRUCTURE": np.ones(1)}, tmp_path / "x")
    assert not os.path.exists(tmp_path / "x.index")


def test_a_flat_mapping_of_arrays_is_saved_as_before(tmp_path):
    # No structure entry: the names and files are those fastckpt always wrote,
    # and loading gives the flat dict (a numpy scalar as a 0-d array).
    flat = {"dense/kernel": np.ones((2, 2), np.float32), "global_step": np.int64(7)}
    fastckpt.save(flat, tmp_path / "ck")
    assert [n for n, _ in fastckpt.list_variables(tmp_path / "ck")] == ["dense/kernel", "global_step"]
    back = fastckpt.load(tmp_path / "ck")
    assert list(back) == ["dense/kernel", "global_step"]
    assert type(back["global_step"]) is np.ndarray and back["global_step"].shape == () and back["global_step"] == 7


def test_torch_array_type_gives_tensors_for_arrays_and_python_values_for_scalars(tmp_path):
    import torch

    state = {
        "w": torch.arange(4, dtype=torch.bfloat16),
        "rng": torch.get_rng_state(),
        "lr": 0.1,
        "betas": (0.9, 0.99),
        "step": np.int64(5),
    }
    fastckpt.save(state, tmp_path / "ck")
    back = fastckpt.load(tmp_path / "ck", array_type="torch")
    assert back["w"].dtype == torch.bfloat16 and back["w"].tolist() == [0, 1, 2, 3]
    assert torch.equal(back["rng"], state["rng"]) and back["rng"].dtype == torch.uint8
    assert back["lr"] == 0.1 and type(back["lr"]) is float and back["betas"] == (0.9, 0.99)
    assert type(back["step"]) is np.int64 and back["step"] == 5


def test_pickling_is_opt_in_on_both_sides(tmp_path):
    state = {"sched": {"fn": fractions.Fraction(1, 3)}, "x": 1}
    with pytest.raises(fastckpt.UnsupportedDtypeError, match="^sched/fn: a Fraction, which a checkpoint cannot"):
        fastckpt.save(state, tmp_path / "ck")
    fastckpt.save(state, tmp_path / "ck", allow_pickle=True)
    with pytest.raises(fastckpt.UnsupportedDtypeError) as e:
        fastckpt.load(tmp_path / "ck")
    assert str(e.value) == (
        f"checkpoint '{tmp_path / 'ck'}': 'sched/fn' holds a pickled object; unpickling "
        "runs code from the file, so it happens only with load(..., allow_pickle=True) "
        "from a checkpoint you trust"
    )
    back = fastckpt.load(tmp_path / "ck", allow_pickle=True)
    assert back == state and type(back["sched"]["fn"]) is fractions.Fraction


def test_load_into_fills_a_nested_target_by_path(tmp_path):
    state = _state()
    fastckpt.save(state, tmp_path / "ck")
    target = _state()
    target["model"]["layer.weight"][...] = 0
    target["optim"]["state"][0]["exp_avg"][...] = 0
    weight = target["model"]["layer.weight"]
    report = fastckpt.load_into(tmp_path / "ck", target)
    assert target["model"]["layer.weight"] is weight  # in place
    np.testing.assert_array_equal(weight, state["model"]["layer.weight"])
    np.testing.assert_array_equal(target["optim"]["state"][0]["exp_avg"], 1.0)
    assert "model/layer.weight" in report.restored and report.missing == [] and report.unexpected == []
    # A subtree on its own.
    model_only = {
        "model": collections.OrderedDict(
            [("layer.weight", np.zeros((2, 3), np.float32)), ("layer.bias", np.zeros(2, ml_dtypes.bfloat16))]
        )
    }
    report = fastckpt.load_into(tmp_path / "ck", model_only)
    assert report.restored == ["model/layer.bias", "model/layer.weight"]


def test_load_into_strict_lists_the_paths_and_strict_false_reports_them(tmp_path):
    fastckpt.save({"model": {"a": np.ones(2), "b": np.ones(3)}}, tmp_path / "ck")
    target = {"model": {"a": np.zeros(2), "c": np.zeros(4)}}
    with pytest.raises(fastckpt.TensorNotFoundError) as e:
        fastckpt.load_into(tmp_path / "ck", target)
    assert str(e.value) == (
        f"restoring from '{tmp_path / 'ck'}': the target's tensor 'model/c' not in the "
        "checkpoint; the checkpoint's tensor 'model/b' not in the target (strict=False "
        "skips them)"
    )
    assert target["model"]["a"].tolist() == [0.0, 0.0]  # nothing restored when strict fails
    report = fastckpt.load_into(tmp_path / "ck", target, strict=False)
    assert report == fastckpt.RestoreReport(restored=["model/a"], missing=["model/c"], unexpected=["model/b"])
    assert target["model"]["a"].tolist() == [1.0, 1.0]


def _write_with_structure(prefix, description: bytes):
    """A checkpoint holding tensor 'a/b' and the given structure entry."""
    from fastckpt.writer import prepare_item, write_items

    items, keep = [], []
    for name, value in (("a/b", np.ones(2)), (structure.STRUCTURE_KEY, np.array(description, dtype=object))):
        item, owner = prepare_item(name, value)
        items.append(item)
        keep.append(owner)
    write_items(items, prefix, num_shards=1, threads=None, durable=False)


def test_damaged_structure_entry_is_data_loss(tmp_path):
    prefix = str(tmp_path / "ck")
    names_c = b'{"format":1,"root":{"t":"dict","k":["a"],"c":[{"t":"dict","k":["c"],"c":[{"t":"tensor"}]}]}}'
    _write_with_structure(prefix, names_c)
    with pytest.raises(fastckpt.DataLossError) as e:
        fastckpt.load(prefix)
    assert str(e.value) == f"checkpoint '{prefix}': its structure entry is damaged at 'a/c': no tensor of that name"
    _write_with_structure(prefix, b"{not json")
    with pytest.raises(fastckpt.DataLossError, match="its structure entry '_FASTCKPT_STRUCTURE' is damaged"):
        fastckpt.load(prefix)
    _write_with_structure(prefix, b'{"format":2,"root":{}}')
    with pytest.raises(fastckpt.UnimplementedError, match="in format 2; this version of fastckpt reads format 1"):
        fastckpt.load(prefix)


def test_nested_state_to_a_device(tmp_path, sim_device):
    state = {"w": np.arange(1000, dtype=np.float32), "lr": 0.5, "opt": [np.ones(3, np.int64), None]}
    fastckpt.save(state, tmp_path / "ck")
    back = fastckpt.load(tmp_path / "ck", device="cuda:0", array_type=new_sim_array)
    assert isinstance(back["w"], SimDeviceArray) and back["w"].peek().tolist() == list(range(1000))
    assert back["lr"] == 0.5 and back["opt"][1] is None
    assert isinstance(back["opt"][0], SimDeviceArray) and back["opt"][0].peek().tolist() == [1, 1, 1]


def test_asynchronous_save_of_a_nested_state(tmp_path):
    state = _state()
    handle = fastckpt.save(state, tmp_path / "ck", blocking=False)
    state["model"]["layer.weight"][...] = -1  # after the snapshot: not in the checkpoint
    handle.result(60)
    _assert_same(fastckpt.load(tmp_path / "ck"), _state())


TRAIN = textwrap.dedent("""
    import json, sys
    import torch
    import fastckpt

    def build():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Dropout(0.2),
                                    torch.nn.Linear(16, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.01)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        return model, optimizer, scheduler

    def train(model, optimizer, scheduler, steps, first):
        losses = []
        for step in range(first, first + steps):
            g = torch.Generator().manual_seed(step)
            x, y = torch.randn(32, 8, generator=g), torch.randn(32, 1, generator=g)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)  # dropout draws from the global RNG
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item().hex())
        return losses

    def params(model):
        return [p.detach().numpy().tobytes().hex() for p in model.parameters()]

    mode, prefix = sys.argv[1], sys.argv[2]
    if mode == "straight":
        m, o, s = build()
        losses = train(m, o, s, 6, 0)
    elif mode == "first":
        m, o, s = build()
        losses = train(m, o, s, 3, 0)
        fastckpt.save({"model": m.state_dict(), "optim": o.state_dict(), "sched": s.state_dict(),
                       "step": 3, "rng": torch.get_rng_state()}, prefix)
    else:
        m, o, s = build()
        torch.manual_seed(12345)  # a fresh process's RNG differs; the checkpoint must restore it
        state = fastckpt.load(prefix, array_type="torch")
        m.load_state_dict(state["model"])
        o.load_state_dict(state["optim"])
        s.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])
        losses = train(m, o, s, 3, state["step"])
    print(json.dumps({"losses": losses, "params": params(m)}))
""")


def test_torch_training_resumes_bit_identically_in_a_fresh_process(tmp_path):
    import torch  # noqa: F401  (the subprocess trains with it)

    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    prefix = str(tmp_path / "ck")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastckpt.__file__)))

    def run(mode):
        proc = subprocess.run(
            [sys.executable, str(script), mode, prefix], capture_output=True, text=True, timeout=300, env=env
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    straight = run("straight")
    first = run("first")
    resumed = run("resume")
    assert first["losses"] + resumed["losses"] == straight["losses"]
    assert resumed["params"] == straight["params"]
    assert len(set(straight["losses"])) == 6  # the run really moves
