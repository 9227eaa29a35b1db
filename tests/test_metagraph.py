"""``.meta`` files (MetaGraphDef) built without TensorFlow: fastckpt.metagraph + fastckpt.proto.

a. Structure, without TensorFlow: node names, ops, inputs, devices, SaverDef, collections,
   OpDefs, validation, file writing/reading; reference (``VariableV2``, the default) and
   resource (``VarHandleOp``) variables.
b. With TensorFlow (``-m tf``): ``import_meta_graph`` + ``Saver.restore`` of a fastckpt
   checkpoint restores exact values (``sess.run("w1:0")`` is the value for reference
   variables); the imported and a new ``Saver`` save again; the graph matches, node for
   node, what TF's own ``Saver`` builds for the same variables of either kind.
c. fastckpt.proto and TensorFlow's protos coexist in one process, have the same field
   numbers and types, and TF's ``.meta`` bytes survive a parse/serialize with our classes.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from google.protobuf import text_format

import fastckpt
from fastckpt import metagraph as mg
from fastckpt.errors import DataLossError, InvalidArgumentError, UnsupportedDtypeError
from fastckpt.format import dtypes as fdt
from fastckpt.metagraph import VariableSpec, build_meta_graph, read_meta_graph, write_meta_graph
from fastckpt.metagraph import nodes as mg_nodes
from fastckpt.metagraph import ops as mg_ops
from fastckpt.metagraph import variables as mg_variables
from fastckpt.proto import (
    BundleEntryProto,
    BundleHeaderProto,
    CheckpointState,
    DataType,
    MetaGraphDef,
    SaverDef,
    VariableDef,
)

DT = DataType

SPECS = [
    VariableSpec("w1", DT.DT_FLOAT, (2, 3)),
    VariableSpec("w2", DT.DT_INT64, ()),
    VariableSpec("scope/w3", DT.DT_DOUBLE, (4,)),
    VariableSpec("bias", DT.DT_BFLOAT16, (3,), trainable=False),
]
VALUES = {
    "w1": np.array([[1.5, -2.0, 3.25], [0.0, -0.0, 1e30]], np.float32),
    "w2": np.array(-1234567890123, np.int64),
    "scope/w3": np.array([1.0, np.pi, -np.e, 5e-300], np.float64),
    "bias": np.array([1.0, -2.5, 0.125], ml_dtypes.bfloat16),
}


KINDS = ["ref", "resource"]
RES = {"variable_kind": "resource"}


def _var_nodes(name, kind="resource"):
    if kind == "ref":
        return [
            (f"{name}/Initializer/zeros", "Const"),
            (name, "VariableV2"),
            (f"{name}/Assign", "Assign"),
            (f"{name}/read", "Identity"),
        ]
    return [
        (f"{name}/Initializer/zeros", "Const"),
        (name, "VarHandleOp"),
        (f"{name}/IsInitialized/VarIsInitializedOp", "VarIsInitializedOp"),
        (f"{name}/Assign", "AssignVariableOp"),
        (f"{name}/Read/ReadVariableOp", "ReadVariableOp"),
    ]


def _restore_nodes(kind, n):
    """Per-variable restore nodes of the saver subgraph (the first k of each name)."""
    out = []
    for i in range(n):
        k = "" if i == 0 else f"_{i}"
        if kind == "ref":
            out.append((f"save/Assign{k}", "Assign"))
        else:
            out += [(f"save/Identity{k}", "Identity"), (f"save/AssignVariableOp{k}", "AssignVariableOp")]
    return out


def _snapshot(name, kind):
    """The tensor holding a variable's value."""
    return f"{name}/read:0" if kind == "ref" else f"{name}/Read/ReadVariableOp:0"


def _nodes(meta):
    return {n.name: n for n in meta.graph_def.node}


# ---------------------------------------------------------------------------------------
# a. structure, no TensorFlow


@pytest.mark.parametrize("kind", KINDS)
def test_node_names_and_ops(kind):
    meta = build_meta_graph(SPECS, variable_kind=kind)
    expected = []
    for s in SPECS:
        expected += _var_nodes(s.name, kind)
    expected += (
        [
            ("save/filename/input", "Const"),
            ("save/filename", "PlaceholderWithDefault"),
            ("save/Const", "PlaceholderWithDefault"),
            ("save/SaveV2/tensor_names", "Const"),
            ("save/SaveV2/shape_and_slices", "Const"),
            ("save/SaveV2", "SaveV2"),
            ("save/control_dependency", "Identity"),
            ("save/RestoreV2/tensor_names", "Const"),
            ("save/RestoreV2/shape_and_slices", "Const"),
            ("save/RestoreV2", "RestoreV2"),
        ]
        + _restore_nodes(kind, 4)
        + [("save/restore_all", "NoOp")]
    )
    assert [(n.name, n.op) for n in meta.graph_def.node] == expected


def test_default_kind_is_ref():
    assert build_meta_graph(SPECS) == build_meta_graph(SPECS, variable_kind="ref")
    assert _nodes(build_meta_graph(SPECS))["w1"].op == "VariableV2"
    assert mg.VARIABLE_KINDS == ("ref", "resource")


def test_variable_nodes():
    n = _nodes(build_meta_graph(SPECS, **RES))
    h = n["scope/w3"]
    assert h.attr["shared_name"].s == b"scope/w3"
    assert h.attr["dtype"].type == DT.DT_DOUBLE
    assert [d.size for d in h.attr["shape"].shape.dim] == [4]
    assert list(h.attr["_class"].list.s) == [b"loc:@scope/w3"]
    assert "debug_name" not in h.attr and "container" not in h.attr
    z = n["scope/w3/Initializer/zeros"].attr["value"].tensor
    assert z.dtype == DT.DT_DOUBLE and [d.size for d in z.tensor_shape.dim] == [4]
    assert list(z.double_val) == [0.0]
    assert list(n["scope/w3/Assign"].input) == ["scope/w3", "scope/w3/Initializer/zeros"]
    assert list(n["scope/w3/Read/ReadVariableOp"].input) == ["scope/w3"]
    assert n["scope/w3/Read/ReadVariableOp"].attr["dtype"].type == DT.DT_DOUBLE
    assert list(n["scope/w3/IsInitialized/VarIsInitializedOp"].input) == ["scope/w3"]
    scalar = n["w2/Initializer/zeros"].attr["value"].tensor
    assert not scalar.tensor_shape.dim and list(scalar.int64_val) == [0]


def test_ref_variable_nodes():
    n = _nodes(build_meta_graph(SPECS))
    v = n["scope/w3"]
    assert v.op == "VariableV2" and not v.input and v.device == ""
    assert v.attr["dtype"].type == DT.DT_DOUBLE
    assert [d.size for d in v.attr["shape"].shape.dim] == [4]
    # container and shared_name written as TF writes them: "" (VarHandleOp's shared name
    # is the variable name; a ref variable's is empty).
    assert v.attr["container"].WhichOneof("value") == "s" and v.attr["container"].s == b""
    assert v.attr["shared_name"].WhichOneof("value") == "s" and v.attr["shared_name"].s == b""
    assert sorted(v.attr) == ["_class", "_output_shapes", "container", "dtype", "shape", "shared_name"]
    assert list(v.attr["_class"].list.s) == [b"loc:@scope/w3"]
    assert [d.size for d in v.attr["_output_shapes"].list.shape[0].dim] == [4]
    z = n["scope/w3/Initializer/zeros"]
    assert list(z.attr["value"].tensor.double_val) == [0.0]
    assert list(z.attr["_class"].list.s) == [b"loc:@scope/w3"]
    a = n["scope/w3/Assign"]
    assert a.op == "Assign"
    assert list(a.input) == ["scope/w3", "scope/w3/Initializer/zeros"]
    assert sorted(a.attr) == ["T", "_class", "_output_shapes", "use_locking", "validate_shape"]
    assert a.attr["T"].type == DT.DT_DOUBLE
    assert a.attr["validate_shape"].WhichOneof("value") == "b" and a.attr["validate_shape"].b
    assert a.attr["use_locking"].WhichOneof("value") == "b" and a.attr["use_locking"].b
    assert list(a.attr["_class"].list.s) == [b"loc:@scope/w3"]
    assert [d.size for d in a.attr["_output_shapes"].list.shape[0].dim] == [4]
    r = n["scope/w3/read"]
    assert r.op == "Identity" and list(r.input) == ["scope/w3"]
    assert sorted(r.attr) == ["T", "_class", "_output_shapes"]
    assert r.attr["T"].type == DT.DT_DOUBLE
    assert list(r.attr["_class"].list.s) == [b"loc:@scope/w3"]
    assert not any(
        op in {x.op for x in n.values()}
        for op in ("VarHandleOp", "AssignVariableOp", "ReadVariableOp", "VarIsInitializedOp")
    )
    scalar = n["w2"]
    assert not scalar.attr["shape"].shape.dim and not scalar.attr["shape"].shape.unknown_rank


def test_ref_saver_subgraph_wiring():
    n = _nodes(build_meta_graph(SPECS, filename="my/model"))
    keys = ["bias", "scope/w3", "w1", "w2"]
    # SaveV2 reads the variable tensors themselves (no snapshot in between)
    assert (
        list(n["save/SaveV2"].input)
        == ["save/Const", "save/SaveV2/tensor_names", "save/SaveV2/shape_and_slices"] + keys
    )
    assert list(n["save/SaveV2"].attr["dtypes"].list.type) == [DT.DT_BFLOAT16, DT.DT_DOUBLE, DT.DT_FLOAT, DT.DT_INT64]
    assigns = ["save/Assign", "save/Assign_1", "save/Assign_2", "save/Assign_3"]
    shapes = {"bias": [3], "scope/w3": [4], "w1": [2, 3], "w2": []}
    for i, (assign, key) in enumerate(zip(assigns, keys)):
        a = n[assign]
        assert a.op == "Assign" and a.device == ""
        assert list(a.input) == [key, "save/RestoreV2" if i == 0 else f"save/RestoreV2:{i}"]
        assert a.attr["T"].type == n[key].attr["dtype"].type
        assert a.attr["validate_shape"].b and a.attr["use_locking"].b
        assert list(a.attr["_class"].list.s) == [b"loc:@" + key.encode()]
        assert [d.size for d in a.attr["_output_shapes"].list.shape[0].dim] == shapes[key]
    assert list(n["save/restore_all"].input) == ["^" + a for a in assigns]
    assert not any(name.startswith("save/Identity") for name in n)


def test_saver_subgraph_wiring():
    n = _nodes(build_meta_graph(SPECS, filename="my/model", **RES))
    keys = sorted(s.name for s in SPECS)  # TF sorts the saveables by checkpoint key
    assert keys == ["bias", "scope/w3", "w1", "w2"]
    fn = n["save/filename/input"].attr["value"].tensor
    assert fn.dtype == DT.DT_STRING and list(fn.string_val) == [b"my/model"]
    assert list(n["save/filename"].input) == ["save/filename/input"]
    assert list(n["save/Const"].input) == ["save/filename"]
    for name in ("save/filename", "save/Const"):
        assert n[name].attr["dtype"].type == DT.DT_STRING
        assert n[name].attr["shape"].shape == mg_nodes.shape_proto(())
    for op in ("SaveV2", "RestoreV2"):
        names = n[f"save/{op}/tensor_names"].attr["value"].tensor
        assert [s.decode() for s in names.string_val] == keys
        assert [d.size for d in names.tensor_shape.dim] == [4]
        assert list(n[f"save/{op}/shape_and_slices"].attr["value"].tensor.string_val) == [b""] * 4
        assert list(n[f"save/{op}"].attr["dtypes"].list.type) == [
            DT.DT_BFLOAT16,
            DT.DT_DOUBLE,
            DT.DT_FLOAT,
            DT.DT_INT64,
        ]
    assert list(n["save/SaveV2"].input) == [
        "save/Const",
        "save/SaveV2/tensor_names",
        "save/SaveV2/shape_and_slices",
        "bias/Read/ReadVariableOp",
        "scope/w3/Read/ReadVariableOp",
        "w1/Read/ReadVariableOp",
        "w2/Read/ReadVariableOp",
    ]
    assert n["save/SaveV2"].device == ""
    assert list(n["save/control_dependency"].input) == ["save/Const", "^save/SaveV2"]
    assert n["save/control_dependency"].attr["T"].type == DT.DT_STRING
    assert list(n["save/RestoreV2"].input) == [
        "save/Const",
        "save/RestoreV2/tensor_names",
        "save/RestoreV2/shape_and_slices",
    ]
    for name in ("save/RestoreV2", "save/RestoreV2/tensor_names", "save/RestoreV2/shape_and_slices"):
        assert n[name].device == "/device:CPU:0"
    idents = ["save/Identity", "save/Identity_1", "save/Identity_2", "save/Identity_3"]
    assigns = ["save/AssignVariableOp", "save/AssignVariableOp_1", "save/AssignVariableOp_2", "save/AssignVariableOp_3"]
    for i, (ident, assign, key) in enumerate(zip(idents, assigns, keys)):
        assert list(n[ident].input) == ["save/RestoreV2" if i == 0 else f"save/RestoreV2:{i}"]
        assert list(n[assign].input) == [key, ident]
        assert n[assign].attr["dtype"].type == n[ident].attr["T"].type == n[key].attr["dtype"].type
    assert list(n["save/restore_all"].input) == ["^" + a for a in assigns]


def test_saver_def():
    meta = build_meta_graph(SPECS)
    assert meta.saver_def == SaverDef(
        filename_tensor_name="save/Const:0",
        save_tensor_name="save/control_dependency:0",
        restore_op_name="save/restore_all",
        max_to_keep=5,
        keep_checkpoint_every_n_hours=10000.0,
        sharded=False,
        version=SaverDef.V2,
    )
    meta = build_meta_graph(SPECS, max_to_keep=None, keep_checkpoint_every_n_hours=0.5)
    assert meta.saver_def.max_to_keep == 0
    assert meta.saver_def.keep_checkpoint_every_n_hours == 0.5


def test_sharded_subgraph():
    meta = build_meta_graph(SPECS[:2], sharded=True, **RES)
    assert meta.saver_def == SaverDef(
        filename_tensor_name="save/Const:0",
        save_tensor_name="save/Identity:0",
        restore_op_name="save/restore_all",
        max_to_keep=5,
        keep_checkpoint_every_n_hours=10000.0,
        sharded=True,
        version=SaverDef.V2,
    )
    save_nodes = [(n.name, n.op) for n in meta.graph_def.node if n.name.startswith("save/")]
    assert save_nodes == [
        ("save/filename/input", "Const"),
        ("save/filename", "PlaceholderWithDefault"),
        ("save/Const", "PlaceholderWithDefault"),
        ("save/StaticRegexFullMatch", "StaticRegexFullMatch"),
        ("save/Const_1", "Const"),
        ("save/Const_2", "Const"),
        ("save/Select", "Select"),
        ("save/StringJoin", "StringJoin"),
        ("save/num_shards", "Const"),
        ("save/ShardedFilename/shard", "Const"),
        ("save/ShardedFilename", "ShardedFilename"),
        ("save/SaveV2/tensor_names", "Const"),
        ("save/SaveV2/shape_and_slices", "Const"),
        ("save/SaveV2", "SaveV2"),
        ("save/control_dependency", "Identity"),
        ("save/MergeV2Checkpoints/checkpoint_prefixes", "Pack"),
        ("save/MergeV2Checkpoints", "MergeV2Checkpoints"),
        ("save/Identity", "Identity"),
        ("save/RestoreV2/tensor_names", "Const"),
        ("save/RestoreV2/shape_and_slices", "Const"),
        ("save/RestoreV2", "RestoreV2"),
        ("save/Identity_1", "Identity"),
        ("save/AssignVariableOp", "AssignVariableOp"),
        ("save/Identity_2", "Identity"),
        ("save/AssignVariableOp_1", "AssignVariableOp"),
        ("save/restore_shard", "NoOp"),
        ("save/restore_all", "NoOp"),
    ]
    n = _nodes(meta)
    assert list(n["save/Const_2"].attr["value"].tensor.string_val) == [b"_temp/part"]
    assert list(n["save/SaveV2"].input)[0] == "save/ShardedFilename"
    assert list(n["save/Identity"].input) == ["save/Const", "^save/MergeV2Checkpoints", "^save/control_dependency"]
    assert list(n["save/restore_all"].input) == ["^save/restore_shard"]


def test_ref_sharded_subgraph():
    meta = build_meta_graph(SPECS[:2], sharded=True)
    assert meta.saver_def.save_tensor_name == "save/Identity:0"
    n = _nodes(meta)
    assert list(n["save/SaveV2"].input) == [
        "save/ShardedFilename",
        "save/SaveV2/tensor_names",
        "save/SaveV2/shape_and_slices",
        "w1",
        "w2",
    ]
    restore = [(x.name, x.op) for x in meta.graph_def.node][-4:]
    assert restore == [
        ("save/Assign", "Assign"),
        ("save/Assign_1", "Assign"),
        ("save/restore_shard", "NoOp"),
        ("save/restore_all", "NoOp"),
    ]
    assert list(n["save/restore_shard"].input) == ["^save/Assign", "^save/Assign_1"]


def test_collections_hold_variable_defs():
    meta = build_meta_graph(SPECS, **RES)
    assert sorted(meta.collection_def) == ["trainable_variables", "variables"]

    def defs(key):
        return [VariableDef.FromString(b) for b in meta.collection_def[key].bytes_list.value]

    glob_defs, train_defs = defs("variables"), defs("trainable_variables")
    assert [d.variable_name for d in glob_defs] == ["w1:0", "w2:0", "scope/w3:0", "bias:0"]
    assert [d.variable_name for d in train_defs] == ["w1:0", "w2:0", "scope/w3:0"]
    d = glob_defs[2]
    assert d == VariableDef(
        variable_name="scope/w3:0",
        initial_value_name="scope/w3/Initializer/zeros:0",
        initializer_name="scope/w3/Assign",
        snapshot_name="scope/w3/Read/ReadVariableOp:0",
        is_resource=True,
        trainable=True,
    )
    assert not glob_defs[3].trainable
    # Byte-exact with what TF 2.21's Saver wrote for get_variable("w1", ..., zeros).
    assert meta.collection_def["variables"].bytes_list.value[0] == (
        b"\n\x04w1:0\x12\tw1/Assign\x1a\x18w1/Read/ReadVariableOp:0(\x012\x16w1/Initializer/zeros:08\x01"
    )


def test_ref_collections_hold_variable_defs():
    meta = build_meta_graph(SPECS)
    assert sorted(meta.collection_def) == ["trainable_variables", "variables"]
    defs = [VariableDef.FromString(b) for b in meta.collection_def["variables"].bytes_list.value]
    assert defs[2] == VariableDef(
        variable_name="scope/w3:0",
        initial_value_name="scope/w3/Initializer/zeros:0",
        initializer_name="scope/w3/Assign",
        snapshot_name="scope/w3/read:0",
        trainable=True,
    )
    assert not defs[2].is_resource and not defs[3].trainable
    # Byte-exact with what TF 2.21's Saver wrote for get_variable("w1", ..., zeros,
    # use_resource=False) and for the non-trainable bias.
    values = meta.collection_def["variables"].bytes_list.value
    assert values[0] == (b"\n\x04w1:0\x12\tw1/Assign\x1a\tw1/read:02\x16w1/Initializer/zeros:08\x01")
    assert values[3] == (b"\n\x06bias:0\x12\x0bbias/Assign\x1a\x0bbias/read:02\x18bias/Initializer/zeros:0")
    assert list(meta.collection_def["trainable_variables"].bytes_list.value) == values[:3]


def test_custom_collections_and_keys():
    specs = [
        VariableSpec("step", DT.DT_INT64, (), trainable=False, collections=("variables", "global_step")),
        VariableSpec("loc", DT.DT_FLOAT, (2,), trainable=False, collections=("local_variables",)),
        VariableSpec("a/b", DT.DT_FLOAT, (1,), checkpoint_key="renamed"),
    ]
    meta = build_meta_graph(specs)
    assert sorted(meta.collection_def) == ["global_step", "local_variables", "trainable_variables", "variables"]
    assert len(meta.collection_def["variables"].bytes_list.value) == 2
    n = _nodes(meta)
    assert list(n["save/SaveV2/tensor_names"].attr["value"].tensor.string_val) == [b"loc", b"renamed", b"step"]
    assert list(n["save/Assign_1"].input) == ["a/b", "save/RestoreV2:1"]
    n = _nodes(build_meta_graph(specs, **RES))
    assert list(n["save/AssignVariableOp_1"].input) == ["a/b", "save/Identity_1"]


def test_save_scope_is_uniquified():
    meta = build_meta_graph([VariableSpec("save/w", DT.DT_FLOAT, ()), VariableSpec("save_1", DT.DT_FLOAT, ())])
    assert meta.saver_def.restore_op_name == "save_2/restore_all"
    assert meta.saver_def.filename_tensor_name == "save_2/Const:0"
    assert "save_2/SaveV2" in _nodes(meta)
    meta = build_meta_graph([VariableSpec("w", DT.DT_FLOAT, ())], name="saver")
    assert meta.saver_def.save_tensor_name == "saver/control_dependency:0"


@pytest.mark.parametrize("kind", KINDS)
def test_meta_info_and_versions(kind):
    meta = build_meta_graph(SPECS, sharded=True, variable_kind=kind)
    info = meta.meta_info_def
    used = sorted({n.op for n in meta.graph_def.node})
    assert [op.name for op in info.stripped_op_list.op] == used
    assert info.tensorflow_version == "" and info.tensorflow_git_version == ""
    assert info.stripped_default_attrs
    assert meta.graph_def.versions.producer == mg.DEFAULT_PRODUCER == 1606
    assert build_meta_graph(SPECS, producer=2474).graph_def.versions.producer == 2474
    for op in info.stripped_op_list.op:
        assert op.description == "" and op.summary == ""
        for arg in list(op.input_arg) + list(op.output_arg):
            assert (arg.type != 0) + bool(arg.type_attr) + bool(arg.type_list_attr) == 1
    # every attr set on a node (except TF-internal "_" attrs) is declared by its op
    ops = {op.name: op for op in info.stripped_op_list.op}
    for node in meta.graph_def.node:
        declared = {a.name for a in ops[node.op].attr}
        for key in node.attr:
            assert key.startswith("_") or key in declared, (node.name, key)
        for a in ops[node.op].attr:  # attrs without default must be set
            if not a.HasField("default_value"):
                assert a.name in node.attr, (node.name, a.name)


@pytest.mark.parametrize("kind", KINDS)
def test_add_shapes_false(kind):
    meta = build_meta_graph(SPECS, add_shapes=False, variable_kind=kind)
    assert not any("_output_shapes" in n.attr for n in meta.graph_def.node)
    n = _nodes(build_meta_graph(SPECS, variable_kind=kind))
    assert n["save/RestoreV2"].attr["_output_shapes"].list.shape[0].unknown_rank
    read_shape = n[_snapshot("w1", kind)[:-2]].attr["_output_shapes"].list.shape[0]
    assert [d.size for d in read_shape.dim] == [2, 3]


@pytest.mark.parametrize("kind", KINDS)
def test_control_inputs_sorted_by_name(kind):
    specs = [VariableSpec(f"v{i:02d}", DT.DT_FLOAT, ()) for i in range(12)]
    n = _nodes(build_meta_graph(specs, variable_kind=kind))
    op = "Assign" if kind == "ref" else "AssignVariableOp"
    got = list(n["save/restore_all"].input)
    assert got == sorted(f"^save/{op}" + ("" if i == 0 else f"_{i}") for i in range(12))
    assert got[:3] == [f"^save/{op}", f"^save/{op}_1", f"^save/{op}_10"]
    # restore op k restores the k-th key
    assert list(n[f"save/{op}_10"].input)[0] == "v10"


def test_deterministic():
    a = build_meta_graph(SPECS).SerializeToString(deterministic=True)
    assert a == build_meta_graph(SPECS).SerializeToString(deterministic=True)


def test_ref_kind_falls_back_to_resource_without_ref_kernels():
    """dtypes TF has no Assign kernel for become resource variables in a "ref" graph."""
    specs = [
        VariableSpec("a", DT.DT_FLOAT, (2,)),
        VariableSpec("f8", DT.DT_FLOAT8_E5M2, (2,)),
        VariableSpec("i4", DT.DT_INT4, ()),
        VariableSpec("c", DT.DT_INT32, ()),
    ]
    meta = build_meta_graph(specs)
    expected = (
        _var_nodes("a", "ref") + _var_nodes("f8", "resource") + _var_nodes("i4", "resource") + _var_nodes("c", "ref")
    )
    assert [(n.name, n.op) for n in meta.graph_def.node][: len(expected)] == expected
    n = _nodes(meta)
    assert list(n["save/SaveV2"].input)[3:] == ["a", "c", "f8/Read/ReadVariableOp", "i4/Read/ReadVariableOp"]
    restore = [
        (x.name, x.op, list(x.input))
        for x in meta.graph_def.node
        if x.name.startswith(("save/Assign", "save/Identity"))
    ]
    assert restore == [
        ("save/Assign", "Assign", ["a", "save/RestoreV2"]),
        ("save/Assign_1", "Assign", ["c", "save/RestoreV2:1"]),
        ("save/Identity", "Identity", ["save/RestoreV2:2"]),
        ("save/AssignVariableOp", "AssignVariableOp", ["f8", "save/Identity"]),
        ("save/Identity_1", "Identity", ["save/RestoreV2:3"]),
        ("save/AssignVariableOp_1", "AssignVariableOp", ["i4", "save/Identity_1"]),
    ]
    defs = {
        VariableDef.FromString(b).variable_name: VariableDef.FromString(b)
        for b in meta.collection_def["variables"].bytes_list.value
    }
    assert [d.is_resource for d in defs.values()] == [False, True, True, False]
    assert [op.name for op in meta.meta_info_def.stripped_op_list.op] == sorted({x.op for x in meta.graph_def.node})
    # every dtype a variable may have is either ref-capable or falls back
    assert mg_variables.REF_VARIABLE_DTYPES <= mg_variables.VARIABLE_DTYPES
    assert {DT.DT_FLOAT8_E5M2, DT.DT_INT4, DT.DT_UINT2, DT.DT_FLOAT4_E2M1FN, DT.DT_QINT16}.isdisjoint(
        mg_variables.REF_VARIABLE_DTYPES
    )


@pytest.mark.parametrize(
    "dtype,field,value",
    [
        (DT.DT_FLOAT, "float_val", [0.0]),
        (DT.DT_DOUBLE, "double_val", [0.0]),
        (DT.DT_INT32, "int_val", [0]),
        (DT.DT_UINT8, "int_val", [0]),
        (DT.DT_INT16, "int_val", [0]),
        (DT.DT_INT8, "int_val", [0]),
        (DT.DT_UINT16, "int_val", [0]),
        (DT.DT_INT4, "int_val", [0]),
        (DT.DT_QINT8, "int_val", [0]),
        (DT.DT_STRING, "string_val", [b""]),
        (DT.DT_COMPLEX64, "scomplex_val", [0.0, 0.0]),
        (DT.DT_COMPLEX128, "dcomplex_val", [0.0, 0.0]),
        (DT.DT_INT64, "int64_val", [0]),
        (DT.DT_BOOL, "bool_val", [False]),
        (DT.DT_BFLOAT16, "half_val", [0]),
        (DT.DT_HALF, "half_val", [0]),
        (DT.DT_UINT32, "uint32_val", [0]),
        (DT.DT_UINT64, "uint64_val", [0]),
        (DT.DT_FLOAT8_E4M3FN, "float8_val", b"\x00"),
        (DT.DT_FLOAT4_E2M1FN, None, None),
    ],
)
def test_zero_initial_values(dtype, field, value):
    t = mg_nodes.zeros_tensor(dtype, (2, 5))
    assert t.dtype == dtype and [d.size for d in t.tensor_shape.dim] == [2, 5]
    set_fields = [f.name for f, _ in t.ListFields() if f.name not in ("dtype", "tensor_shape")]
    assert set_fields == ([field] if field else [])
    if field:
        got = getattr(t, field)
        assert (got if isinstance(got, bytes) else list(got)) == value
    empty = mg_nodes.zeros_tensor(dtype, (0, 3))  # no value for a tensor without elements
    assert [f.name for f, _ in empty.ListFields()] == ["dtype", "tensor_shape"]


@pytest.mark.parametrize(
    "specs,err",
    [
        ([VariableSpec("w", DT.DT_FLOAT, ()), VariableSpec("w", DT.DT_FLOAT, ())], InvalidArgumentError),
        (
            [
                VariableSpec("a", DT.DT_FLOAT, (), checkpoint_key="k"),
                VariableSpec("b", DT.DT_FLOAT, (), checkpoint_key="k"),
            ],
            InvalidArgumentError,
        ),
        ([VariableSpec("w:0", DT.DT_FLOAT, ())], InvalidArgumentError),
        ([VariableSpec("_w", DT.DT_FLOAT, ())], InvalidArgumentError),
        ([VariableSpec("w/", DT.DT_FLOAT, ())], InvalidArgumentError),
        ([VariableSpec("", DT.DT_FLOAT, ())], InvalidArgumentError),
        ([VariableSpec("w", DT.DT_FLOAT, (2, -1))], InvalidArgumentError),
        ([VariableSpec("w", DT.DT_FLOAT, (2.0,))], InvalidArgumentError),
        ([VariableSpec("w", DT.DT_FLOAT, (), collections=("my_vars",))], InvalidArgumentError),
        ([VariableSpec("w", DT.DT_FLOAT, ()), VariableSpec("w/Assign", DT.DT_FLOAT, ())], InvalidArgumentError),
        ([VariableSpec("w", DT.DT_RESOURCE, ())], UnsupportedDtypeError),
        ([VariableSpec("w", DT.DT_VARIANT, ())], UnsupportedDtypeError),
        ([VariableSpec("w", DT.DT_INVALID, ())], UnsupportedDtypeError),
        ([VariableSpec("w", DT.DT_FLOAT_REF, ())], UnsupportedDtypeError),
        ([VariableSpec("w", 99, ())], UnsupportedDtypeError),
        ([], InvalidArgumentError),
    ],
)
def test_invalid_input(specs, err):
    for kind in KINDS:
        with pytest.raises(err):
            build_meta_graph(specs, variable_kind=kind)


@pytest.mark.parametrize("kind", ["Ref", "RESOURCE", "", None, "variable_v2", 1])
def test_invalid_variable_kind(kind):
    with pytest.raises(InvalidArgumentError, match="variable_kind"):
        build_meta_graph(SPECS, variable_kind=kind)


def test_ref_name_clash():
    specs = [VariableSpec("w", DT.DT_FLOAT, ()), VariableSpec("w/read", DT.DT_FLOAT, ())]
    with pytest.raises(InvalidArgumentError):
        build_meta_graph(specs)
    build_meta_graph(specs, **RES)  # a resource variable's snapshot is w/Read/ReadVariableOp


def test_allow_empty():
    meta = build_meta_graph([], allow_empty=True)
    assert not meta.HasField("saver_def") and not meta.graph_def.node
    assert not meta.collection_def


def test_write_read_binary_and_text(tmp_path):
    meta = build_meta_graph(SPECS)
    p = tmp_path / "model.meta"
    assert write_meta_graph(meta, str(p)) == str(p)
    assert p.read_bytes() == meta.SerializeToString(deterministic=True)
    assert read_meta_graph(p) == meta
    write_meta_graph(meta, p, as_text=True, fsync=True)  # overwrites, text format
    assert p.read_text().startswith("meta_info_def {")
    assert read_meta_graph(str(p)) == meta
    assert os.listdir(tmp_path) == ["model.meta"]  # no temp file left


def test_write_failure_leaves_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_meta_graph(build_meta_graph(SPECS), tmp_path / "missing" / "m.meta")
    (tmp_path / "d.meta").mkdir()  # os.replace onto a directory fails after the write
    with pytest.raises(OSError):
        write_meta_graph(build_meta_graph(SPECS), tmp_path / "d.meta")
    assert sorted(os.listdir(tmp_path)) == ["d.meta"]


def test_read_errors(tmp_path):
    p = tmp_path / "bad.meta"
    p.write_bytes(b"\xff\xff\xff\xff garbage")
    with pytest.raises(DataLossError):
        read_meta_graph(p)
    p.write_text("meta_info_def { no_such_field: 1 }")
    with pytest.raises(DataLossError):
        read_meta_graph(p)
    with pytest.raises(FileNotFoundError):
        read_meta_graph(tmp_path / "nope.meta")
    p.write_bytes(b"")
    assert read_meta_graph(p) == MetaGraphDef()


def test_proto_package_and_files():
    d = MetaGraphDef.DESCRIPTOR
    assert d.full_name == "fastckpt.tfproto.MetaGraphDef"
    assert d.file.name == "fastckpt/proto/meta_graph.proto"
    assert CheckpointState.DESCRIPTOR.file.name == "fastckpt/proto/checkpoint_state.proto"
    assert [f.number for f in CheckpointState.DESCRIPTOR.fields] == [1, 2, 3, 4]


def test_bundle_protos_decode_tf_bytes():
    # Bytes TF 2.21 writes (docs section 3): int64 scalar entry and a 1-shard header.
    e = BundleEntryProto.FromString(bytes.fromhex("0809120020 1a2808 35b099490e".replace(" ", "")))
    assert (e.dtype, e.offset, e.size, e.crc32c) == (DT.DT_INT64, 26, 8, 0x0E4999B0)
    assert e.HasField("shape") and not e.shape.dim
    h = BundleHeaderProto(num_shards=1)
    h.version.producer = 1
    assert h.SerializeToString() == bytes.fromhex("08011a020801")


def test_checkpoint_state_text():
    text = (
        'model_checkpoint_path: "ckpt-100"\nall_model_checkpoint_paths: "ckpt-5"\n'
        'all_model_checkpoint_paths: "ckpt-100"\n'
        "all_model_checkpoint_timestamps: 1795627837.834448\n"
        "last_preserved_timestamp: 1795627836.7992344\n"
    )
    st = text_format.Parse(text, CheckpointState())
    assert st.all_model_checkpoint_paths == ["ckpt-5", "ckpt-100"]
    assert text_format.MessageToString(st).startswith('model_checkpoint_path: "ckpt-100"\n')


def test_metagraph_does_not_import_tensorflow():
    code = (
        "import sys, fastckpt.metagraph as m; "
        "m.build_meta_graph([m.VariableSpec('w', 1, (2,))]); "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------
# b/c. against TensorFlow


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


def _tf_session(tf, graph):
    return tf.compat.v1.Session(
        graph=graph, config=tf.compat.v1.ConfigProto(intra_op_parallelism_threads=2, inter_op_parallelism_threads=2)
    )


def _assert_bit_equal(got, want):
    got = np.asarray(got)
    if want.dtype == object:
        assert got.tolist() == want.tolist()
        return
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


@pytest.mark.tf
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sharded", [False, True])
def test_tf_import_restore_and_save_again(tf, tmp_path, sharded, kind):
    prefix = str(tmp_path / "ckpt" / "model")
    os.makedirs(os.path.dirname(prefix))
    fastckpt.save(VALUES, prefix, durable=False)
    write_meta_graph(build_meta_graph(SPECS, sharded=sharded, variable_kind=kind), prefix + ".meta")

    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        assert saver is not None and saver.saver_def.sharded == sharded
        gvars = tf.compat.v1.global_variables()
        assert [v.name for v in gvars] == ["w1:0", "w2:0", "scope/w3:0", "bias:0"]
        assert [v.name for v in tf.compat.v1.trainable_variables()] == ["w1:0", "w2:0", "scope/w3:0"]
        with _tf_session(tf, graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())  # the zeros initializers run
            assert sess.run(_snapshot("w1", kind)).tolist() == [[0.0] * 3] * 2
            saver.restore(sess, prefix)
            for v in gvars:
                name = v.op.name
                _assert_bit_equal(sess.run(v), VALUES[name])
                _assert_bit_equal(sess.run(_snapshot(name, kind)), VALUES[name])
                if kind == "ref":  # the TF1 tutorial's sess.run("w1:0"): the value itself
                    _assert_bit_equal(sess.run(f"{name}:0"), VALUES[name])
                else:  # "w1:0" is the resource handle
                    assert graph.get_tensor_by_name(f"{name}:0").dtype == tf.resource
            # The imported saver (re-exporting the imported graph as .meta) and a fresh
            # Saver() both save again.
            os.makedirs(tmp_path / "again")
            p1 = saver.save(sess, str(tmp_path / "again" / "m"))
            p2 = tf.compat.v1.train.Saver().save(sess, str(tmp_path / "again" / "fresh"))
    assert (
        read_meta_graph(p1 + ".meta").saver_def
        == build_meta_graph(SPECS, sharded=sharded, variable_kind=kind).saver_def
    )
    for p in (p1, p2):
        got = fastckpt.load(p)
        assert sorted(got) == sorted(VALUES)
        for k, v in VALUES.items():
            _assert_bit_equal(got[k], v)


def _tf_restorable_dtypes():
    """Dtypes fastckpt.save can write from numpy and TF has resource-variable kernels for."""
    out = []
    for dt in sorted(mg_variables.VARIABLE_DTYPES):
        try:
            npdt = fdt.to_numpy_dtype(dt)
        except Exception:
            continue
        if fdt.from_numpy_dtype(npdt) != dt:
            continue  # quantized types: no numpy dtype of their own
        if dt in (DT.DT_FLOAT8_E4M3FNUZ, DT.DT_FLOAT8_E4M3B11FNUZ, DT.DT_FLOAT8_E5M2FNUZ):
            continue  # TF 2.21 has no AssignVariableOp kernel for these
        out.append(dt)
    return out


@pytest.mark.tf
@pytest.mark.parametrize("kind", KINDS)
def test_tf_restore_every_dtype(tf, tmp_path, kind):
    values, specs = {}, []
    for dt in _tf_restorable_dtypes():
        name = "v_" + DT.Name(dt)[3:].lower()
        if dt == DT.DT_STRING:
            val = np.array([b"", b"a\x00b", b"\xff" * 20], dtype=object)
        elif dt == DT.DT_BOOL:
            val = np.array([True, False, True])
        else:
            val = np.array([0, 1, -1 if np.dtype(fdt.to_numpy_dtype(dt)).kind != "u" else 2]).astype(
                fdt.to_numpy_dtype(dt)
            )
        values[name] = val
        specs.append(VariableSpec(name, dt, (3,)))
    values["empty"] = np.zeros((0, 4), np.float32)
    specs.append(VariableSpec("empty", DT.DT_FLOAT, (0, 4)))
    values["str_scalar"] = np.array(b"hello", dtype=object)
    specs.append(VariableSpec("str_scalar", DT.DT_STRING, ()))
    assert len(specs) >= 25
    prefix = str(tmp_path / "all")
    fastckpt.save(values, prefix, durable=False)
    write_meta_graph(build_meta_graph(specs, variable_kind=kind), prefix + ".meta")

    def value_tensor(s):  # dtypes without ref kernels are resource variables in "ref" graphs
        is_ref = kind == "ref" and s.dtype in mg_variables.REF_VARIABLE_DTYPES
        return f"{s.name}:0" if is_ref else _snapshot(s.name, "resource")

    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        with _tf_session(tf, graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for s in specs:  # zeros initial values of every dtype
                z = np.asarray(sess.run(value_tensor(s)))
                assert z.shape == s.shape
                if s.dtype == DT.DT_STRING:
                    assert all(x == b"" for x in z.ravel().tolist())
                else:
                    as_num = np.float64 if z.dtype.kind != "c" else np.complex128
                    assert not np.asarray(z, dtype=as_num).any(), s.name
            saver.restore(sess, prefix)
            for s in specs:
                _assert_bit_equal(sess.run(value_tensor(s)), values[s.name])


@pytest.mark.tf
def test_tf_reads_text_meta(tf, tmp_path):
    prefix = str(tmp_path / "model")
    fastckpt.save(VALUES, prefix, durable=False)
    write_meta_graph(build_meta_graph(SPECS), prefix + ".meta", as_text=True)
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        with _tf_session(tf, graph) as sess:
            saver.restore(sess, prefix)
            _assert_bit_equal(sess.run("w1:0"), VALUES["w1"])


def _tf_saver_meta(tf, tmp_path, sharded, kind="resource"):
    """What TF's own graph-mode Saver exports for the same variables as SPECS."""
    graph = tf.Graph()
    with graph.as_default():
        zeros = tf.compat.v1.zeros_initializer()
        res = kind == "resource"
        tf.compat.v1.get_variable("w1", [2, 3], tf.float32, zeros, use_resource=res)
        tf.compat.v1.get_variable("w2", [], tf.int64, zeros, use_resource=res)
        with tf.compat.v1.variable_scope("scope"):
            tf.compat.v1.get_variable("w3", [4], tf.float64, zeros, use_resource=res)
        tf.compat.v1.get_variable("bias", [3], tf.bfloat16, zeros, trainable=False, use_resource=res)
        path = str(tmp_path / "tf.meta")
        tf.compat.v1.train.Saver(sharded=sharded).export_meta_graph(path)
    with open(path, "rb") as f:
        return f.read()


# Attributes TF writes that we leave out: they hold the op's default (filled in on import)
# or are TF-internal markers.
_OMITTED_ATTRS = {
    "debug_name",
    "container",
    "allowed_devices",
    "validate_shape",
    "allow_missing_files",
    "separator",
    "axis",
    "_has_manual_control_dependencies",
}


@pytest.mark.tf
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sharded", [False, True])
def test_tf_graph_matches_tf_saver(tf, tmp_path, sharded, kind):
    theirs = MetaGraphDef.FromString(_tf_saver_meta(tf, tmp_path, sharded, kind))
    ours = build_meta_graph(SPECS, sharded=sharded, variable_kind=kind)
    _assert_graph_matches(ours, theirs)
    ops = {n.op for n in ours.graph_def.node}
    if kind == "ref":
        assert {"VariableV2", "Assign"} <= ops and "VarHandleOp" not in ops
    else:
        assert {"VarHandleOp", "AssignVariableOp"} <= ops and "VariableV2" not in ops


def _assert_graph_matches(ours, theirs):
    assert [n.name for n in ours.graph_def.node] == [n.name for n in theirs.graph_def.node]
    for o, t in zip(ours.graph_def.node, theirs.graph_def.node):
        assert (o.op, list(o.input), o.device) == (t.op, list(t.input), t.device), o.name
        for key, value in o.attr.items():
            assert t.attr[key] == value, (o.name, key)
        assert set(t.attr) - set(o.attr) <= _OMITTED_ATTRS, o.name
        if o.op in ("VariableV2", "Assign"):  # every attr TF writes, defaults included
            assert set(t.attr) - set(o.attr) <= {"_has_manual_control_dependencies"}, o.name
    assert ours.saver_def == theirs.saver_def
    assert ours.collection_def == theirs.collection_def
    # the same OpDefs, field for field (documentation stripped, as TF strips it)
    assert ours.meta_info_def.stripped_op_list == theirs.meta_info_def.stripped_op_list


@pytest.mark.tf
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sharded", [False, True])
def test_tf_graph_matches_tf_saver_many_variables(tf, sharded, kind):
    """More than 10 variables: TF writes control inputs sorted by name (..._10 before _2)."""
    graph = tf.Graph()
    with graph.as_default():
        for i in range(12):
            tf.compat.v1.get_variable(
                f"v{i}", [i % 3], tf.float32, tf.compat.v1.zeros_initializer(), use_resource=kind == "resource"
            )
        theirs = MetaGraphDef.FromString(
            tf.compat.v1.train.Saver(sharded=sharded).export_meta_graph().SerializeToString()
        )
    specs = [VariableSpec(f"v{i}", DT.DT_FLOAT, (i % 3,)) for i in range(12)]
    _assert_graph_matches(build_meta_graph(specs, sharded=sharded, variable_kind=kind), theirs)


@pytest.mark.tf
def test_tf_graph_matches_tf_saver_ref_fallback(tf):
    """A "ref" graph with a dtype lacking ref kernels is TF's graph with that one variable
    made with use_resource=True."""
    specs = [
        VariableSpec("a", DT.DT_FLOAT, (2,)),
        VariableSpec("f8", DT.DT_FLOAT8_E5M2, (2,)),
        VariableSpec("c", DT.DT_INT32, ()),
    ]
    graph = tf.Graph()
    with graph.as_default():
        zeros = tf.compat.v1.zeros_initializer()
        tf.compat.v1.get_variable("a", [2], tf.float32, zeros, use_resource=False)
        tf.compat.v1.get_variable("f8", [2], tf.dtypes.as_dtype(DT.DT_FLOAT8_E5M2), zeros, use_resource=True)
        tf.compat.v1.get_variable("c", [], tf.int32, zeros, use_resource=False)
        theirs = MetaGraphDef.FromString(tf.compat.v1.train.Saver().export_meta_graph().SerializeToString())
    _assert_graph_matches(build_meta_graph(specs), theirs)


@pytest.mark.tf
@pytest.mark.parametrize("sharded", [False, True])
def test_tf_ref_restore_sess_run_value(tf, tmp_path, sharded):
    """The TF1 tutorial flow on a fastckpt checkpoint + .meta: import_meta_graph, restore,
    sess.run("w1:0") is the saved value; a Saver built after the import saves again."""
    values = {
        "w1": np.array([[1.5, -2.0, 3.25], [0.0, -0.0, 1e30]], np.float32),
        "i64": np.array([-(2**62), 7, 2**63 - 1], np.int64),
        "f64": np.array([[np.pi, -np.e], [5e-300, np.inf]], np.float64),
        "s": np.array([b"", b"a\x00b", b"\xff" * 20], dtype=object),
        "bf16": np.array([1.0, -2.5, 0.125], ml_dtypes.bfloat16),
        "scalar": np.array(-0.5, np.float32),
        "s_scalar": np.array(b"hello", dtype=object),
    }
    specs = [
        VariableSpec(k, fdt.from_numpy_dtype(v.dtype) if v.dtype != object else DT.DT_STRING, v.shape)
        for k, v in values.items()
    ]
    prefix = str(tmp_path / "model")
    fastckpt.save(values, prefix, durable=False)
    write_meta_graph(build_meta_graph(specs, sharded=sharded), prefix + ".meta")
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        gvars = tf.compat.v1.global_variables()
        assert [v.name for v in gvars] == [f"{k}:0" for k in values]
        assert {v.op.type for v in gvars} == {"VariableV2"}
        with _tf_session(tf, graph) as sess:
            saver.restore(sess, prefix)  # no initializer run: restore initializes
            for k, v in values.items():
                _assert_bit_equal(sess.run(f"{k}:0"), v)
                _assert_bit_equal(sess.run(f"{k}/read:0"), v)
            assert np.asarray(sess.run("scalar:0")).shape == ()
            fresh = tf.compat.v1.train.Saver()  # built after the import, over the same vars
            p = fresh.save(sess, str(tmp_path / "again"))
            again = saver.save(sess, str(tmp_path / "again_imported"))
    for path in (p, again):
        got = fastckpt.load(path)
        assert sorted(got) == sorted(values)
        for k, v in values.items():
            _assert_bit_equal(got[k], v)


@pytest.mark.tf
def test_tf_restores_fastckpt_saver_meta(tf, tmp_path):
    """fastckpt.Saver over numpy arrays writes a .meta (default build_meta_graph, ref
    variables) that the TF1 flow restores, sess.run("w1:0") giving the value."""
    arrays = {"w1": np.ones(2, np.float32), "b": np.arange(3, dtype=np.int64)}
    prefix = fastckpt.Saver(arrays).save(None, str(tmp_path / "model"))
    assert os.path.exists(prefix + ".meta")
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(prefix + ".meta")
        with _tf_session(tf, graph) as sess:
            saver.restore(sess, prefix)
            _assert_bit_equal(sess.run("w1:0"), arrays["w1"])
            _assert_bit_equal(sess.run("b:0"), arrays["b"])


@pytest.mark.tf
def test_tf_op_defs_match_registry(tf):
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.framework import op_def_registry

    for name in sorted(mg_ops.OP_DEFS_TEXT):
        ours = op_def_pb2.OpDef.FromString(mg.op_def(name).SerializeToString())
        reg = op_def_registry.get(name)
        assert reg is not None, name
        assert list(ours.input_arg) == list(reg.input_arg), name
        assert list(ours.output_arg) == list(reg.output_arg), name
        assert ours.is_stateful == reg.is_stateful, name
        assert ours.allows_uninitialized_input == reg.allows_uninitialized_input, name
        reg_attrs = {a.name: a for a in reg.attr}
        for a in ours.attr:  # ours is a subset (a newer TF may add defaulted attrs)
            assert reg_attrs[a.name] == a, (name, a.name)


# Messages of fastckpt.proto whose field numbers/types must equal TensorFlow's.
_MIRRORED = [
    "MetaGraphDef",
    "MetaGraphDef.MetaInfoDef",
    "CollectionDef",
    "CollectionDef.NodeList",
    "CollectionDef.BytesList",
    "CollectionDef.Int64List",
    "CollectionDef.FloatList",
    "CollectionDef.AnyList",
    "SignatureDef",
    "TensorInfo",
    "TensorInfo.CooSparse",
    "TensorInfo.CompositeTensor",
    "AssetFileDef",
    "GraphDef",
    "NodeDef",
    "NodeDef.ExperimentalDebugInfo",
    "AttrValue",
    "AttrValue.ListValue",
    "NameAttrList",
    "TensorProto",
    "VariantTensorDataProto",
    "TensorShapeProto",
    "TensorShapeProto.Dim",
    "VersionDef",
    "OpDef",
    "OpDef.ArgDef",
    "OpDef.AttrDef",
    "OpDeprecation",
    "OpList",
    "SaverDef",
    "VariableDef",
    "SaveSliceInfoDef",
    "CheckpointState",
    "BundleHeaderProto",
    "BundleEntryProto",
    "TensorSliceProto",
    "TensorSliceProto.Extent",
    "ResourceHandleProto",
    "ResourceHandleProto.DtypeAndShape",
    "FullTypeDef",
]


def _wire_kind(field):
    from google.protobuf.descriptor import FieldDescriptor as F

    if field.type in (F.TYPE_MESSAGE, F.TYPE_BYTES, F.TYPE_STRING):
        return "len"  # opaque bytes stand in for sub-messages we do not decode
    if field.type in (F.TYPE_ENUM, F.TYPE_INT32):
        return "int32"  # FullTypeDef.type_id is an int32 here, an enum in TF
    return field.type


def _repeated(field):
    if hasattr(field, "is_repeated"):  # protobuf >= 5.x
        return field.is_repeated
    return field.label == field.LABEL_REPEATED


def _strip_package(full_name):
    for pkg in ("fastckpt.tfproto.", "tensorflow."):
        if full_name.startswith(pkg):
            return full_name[len(pkg) :]
    return full_name


@pytest.mark.tf
def test_tf_descriptors_match(tf):
    from google.protobuf import descriptor_pool
    from tensorflow.core.framework import full_type_pb2  # noqa: F401
    from tensorflow.core.protobuf import meta_graph_pb2, tensor_bundle_pb2  # noqa: F401
    from tensorflow.python.training import checkpoint_state_pb2  # noqa: F401

    import fastckpt.proto  # noqa: F401  (registers ours next to TF's)

    pool = descriptor_pool.Default()
    for name in _MIRRORED:
        ours = pool.FindMessageTypeByName("fastckpt.tfproto." + name)
        theirs = pool.FindMessageTypeByName("tensorflow." + name)
        assert {f.number for f in ours.fields} == {f.number for f in theirs.fields}, name
        for f in ours.fields:
            t = theirs.fields_by_number[f.number]
            assert f.name == t.name, (name, f.name)
            assert _repeated(f) == _repeated(t), (name, f.name)
            assert _wire_kind(f) == _wire_kind(t), (name, f.name)
            assert (f.containing_oneof is None) == (t.containing_oneof is None), (name, f.name)
            if f.message_type is not None:  # same message (ours mirrors it)
                assert _strip_package(f.message_type.full_name) == _strip_package(t.message_type.full_name), (
                    name,
                    f.name,
                )
    for enum in (
        "DataType",
        "SaverDef.CheckpointFormatVersion",
        "VariableSynchronization",
        "VariableAggregation",
        "BundleHeaderProto.Endianness",
    ):
        ours = pool.FindEnumTypeByName("fastckpt.tfproto." + enum)
        theirs = pool.FindEnumTypeByName("tensorflow." + enum)
        assert [(v.name, v.number) for v in ours.values] == [(v.name, v.number) for v in theirs.values], enum


@pytest.mark.tf
@pytest.mark.parametrize("sharded", [False, True])
def test_tf_meta_bytes_round_trip(tf, tmp_path, sharded):
    """TF's .meta (from Saver.save) parses with our classes and re-serializes to equal bytes;
    ours parses with TF's classes and re-serializes to equal bytes."""
    from tensorflow.core.protobuf import meta_graph_pb2

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.get_variable("w1", [2, 3], tf.float32)
        tf.compat.v1.get_variable("s", [], tf.string, initializer=tf.compat.v1.constant_initializer("x"))
        tf.compat.v1.Variable(tf.zeros([4], tf.int64), name="ref", use_resource=False)
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver(sharded=sharded)
        with _tf_session(tf, graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            prefix = saver.save(sess, str(tmp_path / "model"), global_step=3)
    with open(prefix + ".meta", "rb") as f:
        tf_bytes = f.read()
    ours = read_meta_graph(prefix + ".meta")
    assert ours.SerializeToString(deterministic=True) == tf_bytes
    assert ours.meta_info_def.tensorflow_version == tf.__version__
    assert "global_step" in ours.collection_def
    assert any(n.op == "VariableV2" for n in ours.graph_def.node)
    theirs = meta_graph_pb2.MetaGraphDef.FromString(tf_bytes)
    assert text_format.MessageToString(theirs) == text_format.MessageToString(ours)

    mine = build_meta_graph(SPECS, sharded=sharded).SerializeToString(deterministic=True)
    assert meta_graph_pb2.MetaGraphDef.FromString(mine).SerializeToString(deterministic=True) == mine
    # the checkpoint state file TF wrote parses with our CheckpointState
    with open(tmp_path / "checkpoint") as f:
        st = text_format.Parse(f.read(), CheckpointState())
    assert st.model_checkpoint_path.endswith("model-3")


@pytest.mark.tf
@pytest.mark.parametrize("tf_first", [False, True])
def test_tf_and_fastckpt_proto_in_one_process(tf_first):
    imports = ["import tensorflow as tf", "import fastckpt.proto as fp"]
    if not tf_first:
        imports.reverse()
    code = "\n".join(
        imports
        + [
            "from tensorflow.core.protobuf import meta_graph_pb2",
            "m = fp.MetaGraphDef(); m.saver_def.restore_op_name = 'save/restore_all'",
            "t = meta_graph_pb2.MetaGraphDef.FromString(m.SerializeToString())",
            "assert t.saver_def.restore_op_name == 'save/restore_all'",
            "assert fp.MetaGraphDef.DESCRIPTOR.full_name != t.DESCRIPTOR.full_name",
            "print('ok')",
        ]
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok")


def test_no_stray_files_in_proto_dir():
    here = os.path.dirname(fastckpt.proto.__file__)
    protos = sorted(os.path.basename(p)[:-6] for p in glob.glob(os.path.join(here, "*.proto")))
    gens = sorted(os.path.basename(p)[:-7] for p in glob.glob(os.path.join(here, "*_pb2.py")))
    assert protos == gens and "meta_graph" in protos
