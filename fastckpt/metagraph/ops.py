"""The OpDefs of every op the ``.meta`` builder uses, kept as data (protobuf text).

As in TensorFlow 2.21's op registry with the documentation stripped (what
TensorFlow itself puts into ``stripped_op_list``). TensorFlow's importer validates
each node against its *own* registry; this list is only what the producer (us)
knew, used by older consumers to drop unknown attrs that hold their default value.
"""

from __future__ import annotations

from typing import Dict

from google.protobuf import text_format

from ..proto import OpDef

__all__ = ["OP_DEFS_TEXT", "op_def"]


OP_DEFS_TEXT: Dict[str, str] = {
    "Assign": """
        name: "Assign"
        input_arg { name: "ref" type_attr: "T" is_ref: true }
        input_arg { name: "value" type_attr: "T" }
        output_arg { name: "output_ref" type_attr: "T" is_ref: true }
        attr { name: "T" type: "type" }
        attr { name: "validate_shape" type: "bool" default_value { b: true } }
        attr { name: "use_locking" type: "bool" default_value { b: true } }
        allows_uninitialized_input: true""",
    "AssignVariableOp": """
        name: "AssignVariableOp"
        input_arg { name: "resource" type: DT_RESOURCE }
        input_arg { name: "value" type_attr: "dtype" }
        attr { name: "dtype" type: "type" }
        attr { name: "validate_shape" type: "bool" default_value { b: false } }
        is_stateful: true""",
    "Const": """
        name: "Const"
        output_arg { name: "output" type_attr: "dtype" }
        attr { name: "value" type: "tensor" }
        attr { name: "dtype" type: "type" }""",
    "Identity": """
        name: "Identity"
        input_arg { name: "input" type_attr: "T" }
        output_arg { name: "output" type_attr: "T" }
        attr { name: "T" type: "type" }""",
    "MergeV2Checkpoints": """
        name: "MergeV2Checkpoints"
        input_arg { name: "checkpoint_prefixes" type: DT_STRING }
        input_arg { name: "destination_prefix" type: DT_STRING }
        attr { name: "delete_old_dirs" type: "bool" default_value { b: true } }
        attr { name: "allow_missing_files" type: "bool" default_value { b: false } }
        is_stateful: true""",
    "NoOp": """
        name: "NoOp\"""",
    "Pack": """
        name: "Pack"
        input_arg { name: "values" type_attr: "T" number_attr: "N" }
        output_arg { name: "output" type_attr: "T" }
        attr { name: "N" type: "int" has_minimum: true minimum: 1 }
        attr { name: "T" type: "type" }
        attr { name: "axis" type: "int" default_value { i: 0 } }""",
    "PlaceholderWithDefault": """
        name: "PlaceholderWithDefault"
        input_arg { name: "input" type_attr: "dtype" }
        output_arg { name: "output" type_attr: "dtype" }
        attr { name: "dtype" type: "type" }
        attr { name: "shape" type: "shape" }""",
    "ReadVariableOp": """
        name: "ReadVariableOp"
        input_arg { name: "resource" type: DT_RESOURCE }
        output_arg { name: "value" type_attr: "dtype" }
        attr { name: "dtype" type: "type" }
        is_stateful: true""",
    "RestoreV2": """
        name: "RestoreV2"
        input_arg { name: "prefix" type: DT_STRING }
        input_arg { name: "tensor_names" type: DT_STRING }
        input_arg { name: "shape_and_slices" type: DT_STRING }
        output_arg { name: "tensors" type_list_attr: "dtypes" }
        attr { name: "dtypes" type: "list(type)" has_minimum: true minimum: 1 }
        is_stateful: true""",
    "SaveV2": """
        name: "SaveV2"
        input_arg { name: "prefix" type: DT_STRING }
        input_arg { name: "tensor_names" type: DT_STRING }
        input_arg { name: "shape_and_slices" type: DT_STRING }
        input_arg { name: "tensors" type_list_attr: "dtypes" }
        attr { name: "dtypes" type: "list(type)" has_minimum: true minimum: 1 }
        is_stateful: true""",
    "Select": """
        name: "Select"
        input_arg { name: "condition" type: DT_BOOL }
        input_arg { name: "t" type_attr: "T" }
        input_arg { name: "e" type_attr: "T" }
        output_arg { name: "output" type_attr: "T" }
        attr { name: "T" type: "type" }""",
    "ShardedFilename": """
        name: "ShardedFilename"
        input_arg { name: "basename" type: DT_STRING }
        input_arg { name: "shard" type: DT_INT32 }
        input_arg { name: "num_shards" type: DT_INT32 }
        output_arg { name: "filename" type: DT_STRING }""",
    "StaticRegexFullMatch": """
        name: "StaticRegexFullMatch"
        input_arg { name: "input" type: DT_STRING }
        output_arg { name: "output" type: DT_BOOL }
        attr { name: "pattern" type: "string" }""",
    "StringJoin": """
        name: "StringJoin"
        input_arg { name: "inputs" type: DT_STRING number_attr: "N" }
        output_arg { name: "output" type: DT_STRING }
        attr { name: "N" type: "int" has_minimum: true }
        attr { name: "separator" type: "string" default_value { s: "" } }""",
    "VarHandleOp": """
        name: "VarHandleOp"
        output_arg { name: "resource" type: DT_RESOURCE }
        attr { name: "container" type: "string" default_value { s: "" } }
        attr { name: "shared_name" type: "string" default_value { s: "" } }
        attr { name: "debug_name" type: "string" default_value { s: "" } }
        attr { name: "dtype" type: "type" }
        attr { name: "shape" type: "shape" }
        attr { name: "allowed_devices" type: "list(string)" default_value { list { } } }
        is_stateful: true""",
    "VarIsInitializedOp": """
        name: "VarIsInitializedOp"
        input_arg { name: "resource" type: DT_RESOURCE }
        output_arg { name: "is_initialized" type: DT_BOOL }
        is_stateful: true""",
    "VariableV2": """
        name: "VariableV2"
        output_arg { name: "ref" type_attr: "dtype" is_ref: true }
        attr { name: "shape" type: "shape" }
        attr { name: "dtype" type: "type" }
        attr { name: "container" type: "string" default_value { s: "" } }
        attr { name: "shared_name" type: "string" default_value { s: "" } }
        is_stateful: true""",
}

_OP_DEFS_CACHE: Dict[str, bytes] = {}


def op_def(name: str) -> OpDef:
    """A fresh copy of the (documentation-stripped) OpDef fastckpt uses for op ``name``."""
    if name not in _OP_DEFS_CACHE:
        if name not in OP_DEFS_TEXT:
            raise KeyError(f"fastckpt has no OpDef for op {name!r}")
        _OP_DEFS_CACHE[name] = text_format.Parse(OP_DEFS_TEXT[name], OpDef()).SerializeToString()
    return OpDef.FromString(_OP_DEFS_CACHE[name])
