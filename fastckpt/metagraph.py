"""Build, write and read TF1 ``.meta`` files (``MetaGraphDef``) without TensorFlow.

``tf.compat.v1.train.Saver.save`` writes, next to the checkpoint, a ``PREFIX.meta``
file: a binary ``MetaGraphDef`` holding the graph (the variables and the saver's
own save/restore subgraph), the ``SaverDef`` naming that subgraph's entry points,
and the variable collections. ``tf.compat.v1.train.import_meta_graph`` rebuilds
the variables and a ``Saver`` from it, so a restore needs no Python model code.

:func:`build_meta_graph` produces the ``MetaGraphDef`` that TensorFlow's graph mode
would write for a set of variables made by ``tf.compat.v1.get_variable`` with a
zeros initializer followed by ``tf.compat.v1.train.Saver()``: the same node names,
ops, inputs, devices and collections, built from fastckpt's own protobuf classes
(:mod:`fastckpt.proto`), so TensorFlow is not needed. Two kinds of variables
(``variable_kind``):

* ``"ref"`` (the default): TF1 reference variables (``use_resource=False``), a
  ``VariableV2`` node whose output ``NAME:0`` *is* the variable's value, so the
  classic TF1 ``sess.run("NAME:0")`` after ``import_meta_graph`` + ``restore``
  gives the restored value.
* ``"resource"``: resource variables (``VarHandleOp``, TensorFlow 2's default);
  ``NAME:0`` is the resource handle and the value is ``NAME/Read/ReadVariableOp:0``.

The file it makes is accepted by TensorFlow 2.15 and newer (checked against 2.21):
``import_meta_graph`` + ``Saver.restore`` restore the variables, the imported
``Saver`` can save again, and ``global_variables()`` lists them.

Differences from TensorFlow's own output, all deliberate:

* Attributes whose value is the op's default and that newer TensorFlow versions
  added (``VarHandleOp.container/debug_name/allowed_devices``,
  ``AssignVariableOp.validate_shape``, ``MergeV2Checkpoints.allow_missing_files``,
  ``StringJoin.separator``, ``Pack.axis``) are left out; TensorFlow fills them in
  on import (``meta_info_def.stripped_default_attrs`` is set, as
  ``strip_default_attrs=True`` does). The attributes of the reference-variable
  ops, all part of those ops since TensorFlow 1.0, are written as TensorFlow
  writes them, defaults included (``VariableV2.container/shared_name`` as
  ``""``, ``Assign.validate_shape/use_locking`` as ``true``). TensorFlow's
  internal marker attribute ``_has_manual_control_dependencies`` and the
  ``init`` op of ``global_variables_initializer()`` are not written.
* ``meta_info_def.tensorflow_version`` and ``tensorflow_git_version`` are empty
  (TensorFlow parses a non-empty ``tensorflow_version`` with ``packaging`` and
  would reject a non-version string; empty means "current").
* ``graph_def.versions.producer`` is :data:`DEFAULT_PRODUCER` (see there).
* Reference variables of a dtype TensorFlow has no reference-variable kernels
  for (the float8, 4-bit and 2-bit types and qint16: no CPU ``Assign`` kernel in
  TF 2.21, so TensorFlow's own ``VariableV2`` of that dtype can be neither
  initialized nor restored) are built as resource variables, so the file still
  restores.

Partitioned variables are not built.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from google.protobuf import message as _message
from google.protobuf import text_format

from ._atomic_io import atomic_write
from .errors import DataLossError, InvalidArgumentError, UnsupportedDtypeError, from_os_error
from .proto import (AttrValue, CollectionDef, DataType, MetaGraphDef, OpDef,
                    SaverDef, TensorProto, TensorShapeProto, VariableDef)

__all__ = [
    "VariableSpec",
    "build_meta_graph",
    "write_meta_graph",
    "read_meta_graph",
    "op_def",
    "DEFAULT_PRODUCER",
    "VARIABLE_COLLECTIONS",
    "VARIABLE_KINDS",
    "GLOBAL_VARIABLES",
    "TRAINABLE_VARIABLES",
]

#: ``graph_def.versions.producer`` written by :func:`build_meta_graph`.
#:
#: A GraphDef's producer version says which TensorFlow graph semantics it was
#: written for; TensorFlow accepts any producer >= 0 (``TF_GRAPH_DEF_VERSION_MIN_PRODUCER``)
#: and only rejects a graph whose ``min_consumer`` is above its own version, but it
#: refuses ops deprecated at a version <= the producer. Since 2019-05-09 (version
#: 30) the number grows by one a day, so ``30 + days since 2019-05-09``. 1606 is
#: 2023-09-01: older than any TensorFlow 2.15+ build (so no consumer sees a graph
#: "from the future"), newer than every semantic change of the numbered history
#: (<= 30), and none of the ops used here is deprecated. TF 2.21 itself writes 2474.
DEFAULT_PRODUCER = 1606

#: Collection of all global variables (``tf.compat.v1.GraphKeys.GLOBAL_VARIABLES``).
GLOBAL_VARIABLES = "variables"
#: Collection of trainable variables (``tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES``).
TRAINABLE_VARIABLES = "trainable_variables"

#: Collections whose members TensorFlow stores as serialized ``VariableDef`` protos
#: (those with a registered ``VariableDef`` proto function in TensorFlow).
VARIABLE_COLLECTIONS: Tuple[str, ...] = (
    GLOBAL_VARIABLES,
    TRAINABLE_VARIABLES,
    "local_variables",
    "model_variables",
    "moving_average_variables",
    "metric_variables",
    "global_step",
)

#: Values of ``build_meta_graph(variable_kind=...)``: TF1 reference variables
#: (``VariableV2``) or resource variables (``VarHandleOp``).
VARIABLE_KINDS: Tuple[str, ...] = ("ref", "resource")

# TensorFlow's node-name rule (core/framework/node_def_util.cc).
_VALID_NODE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")

_DT = DataType
# Dtypes a variable may have: every numeric type and string (not resource, variant
# or reference types).
_VARIABLE_DTYPES: Set[int] = {
    v.number for v in _DT.DESCRIPTOR.values
    if 0 < v.number < 100 and v.number not in (_DT.DT_RESOURCE, _DT.DT_VARIANT)
}

# Dtypes TensorFlow (2.21) has reference-variable kernels for: the CPU kernels of
# ``Assign`` (the initializer and the restore op of a ``VariableV2``). A variable of
# another dtype (the float8, 4-bit and 2-bit types, qint16) could be built but
# neither initialized nor restored, so ``variable_kind="ref"`` builds it as a
# resource variable instead.
_REF_VARIABLE_DTYPES: Set[int] = {
    _DT.DT_FLOAT, _DT.DT_DOUBLE, _DT.DT_HALF, _DT.DT_BFLOAT16, _DT.DT_INT8, _DT.DT_INT16,
    _DT.DT_INT32, _DT.DT_INT64, _DT.DT_UINT8, _DT.DT_UINT16, _DT.DT_UINT32, _DT.DT_UINT64,
    _DT.DT_BOOL, _DT.DT_STRING, _DT.DT_COMPLEX64, _DT.DT_COMPLEX128, _DT.DT_QINT8,
    _DT.DT_QUINT8, _DT.DT_QINT32, _DT.DT_QUINT16,
}

_CPU0 = "/device:CPU:0"
_CPU_ANY = "/device:CPU:*"


@dataclass(frozen=True)
class VariableSpec:
    """One variable of the graph.

    Attributes:
        name: Graph name of the variable (its ``VariableV2`` or ``VarHandleOp``
            node), e.g. ``"dense/kernel"``; also the checkpoint key unless
            ``checkpoint_key`` is given. TensorFlow's node-name rules apply (no
            ``:``; no leading ``_``, ``/`` or ``-``).
        dtype: TensorFlow ``DataType`` number (``fastckpt.proto.DataType.DT_FLOAT``
            == 1, ...; :func:`fastckpt.format.dtypes.from_numpy_dtype` maps numpy
            dtypes). Any numeric type or ``DT_STRING``.
        shape: Fully defined shape; ``()`` for a scalar.
        trainable: Whether the variable is trainable (``VariableDef.trainable``, and
            membership of ``"trainable_variables"``).
        collections: Graph collections holding the variable; ``None`` means
            ``("variables",)``. As in TensorFlow, ``"trainable_variables"`` is
            added when ``trainable`` is true. Must be names from
            :data:`VARIABLE_COLLECTIONS`.
        checkpoint_key: Name of the variable's tensor in the checkpoint (the
            ``var_list`` dict key of a TF ``Saver``); ``None`` means ``name``.
    """

    name: str
    dtype: int
    shape: Tuple[int, ...] = ()
    trainable: bool = True
    collections: Optional[Tuple[str, ...]] = None
    checkpoint_key: Optional[str] = None

    @property
    def key(self) -> str:
        """The checkpoint key: ``checkpoint_key`` or else ``name``."""
        return self.checkpoint_key if self.checkpoint_key is not None else self.name

    def resolved_collections(self) -> Tuple[str, ...]:
        """The collections the variable is put in, ``"trainable_variables"`` included."""
        cols = list(self.collections) if self.collections is not None else [GLOBAL_VARIABLES]
        if self.trainable and TRAINABLE_VARIABLES not in cols:
            cols.append(TRAINABLE_VARIABLES)
        return tuple(dict.fromkeys(cols))  # first occurrences, in order


# --------------------------------------------------------------------------------------
# OpDefs of every op the builder uses, as in TensorFlow 2.21's op registry with the
# documentation stripped (what TensorFlow itself puts into stripped_op_list).
# TensorFlow's importer validates each node against its *own* registry; this list is
# only what the producer (us) knew, used by older consumers to drop unknown attrs
# that hold their default value.

_OP_DEFS_TEXT: Dict[str, str] = {
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
        if name not in _OP_DEFS_TEXT:
            raise KeyError(f"fastckpt has no OpDef for op {name!r}")
        _OP_DEFS_CACHE[name] = text_format.Parse(_OP_DEFS_TEXT[name], OpDef()).SerializeToString()
    return OpDef.FromString(_OP_DEFS_CACHE[name])


# --------------------------------------------------------------------------------------
# Small proto helpers.

def _shape_proto(shape: Optional[Sequence[int]]) -> TensorShapeProto:
    """``None`` gives an unknown-rank shape."""
    if shape is None:
        return TensorShapeProto(unknown_rank=True)
    return TensorShapeProto(dim=[TensorShapeProto.Dim(size=int(d)) for d in shape])


def _attr_type(dtype: int) -> AttrValue:
    return AttrValue(type=dtype)


def _attr_shape(shape: Sequence[int]) -> AttrValue:
    return AttrValue(shape=_shape_proto(shape))


def _attr_output_shapes(*shapes: Optional[Sequence[int]]) -> AttrValue:
    return AttrValue(list=AttrValue.ListValue(shape=[_shape_proto(s) for s in shapes]))


def _attr_class(*nodes: str) -> AttrValue:
    return AttrValue(list=AttrValue.ListValue(s=[b"loc:@" + n.encode() for n in nodes]))


def _num_elements(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _zeros_tensor(dtype: int, shape: Sequence[int]) -> TensorProto:
    """A TensorProto of ``shape`` filled with zeros: one zero value that TensorFlow
    repeats over the whole tensor (the form ``tf.zeros_initializer`` produces)."""
    t = TensorProto(dtype=dtype, tensor_shape=_shape_proto(shape))
    if _num_elements(shape) == 0:
        return t  # no values for an empty tensor
    if dtype == _DT.DT_FLOAT:
        t.float_val.append(0.0)
    elif dtype == _DT.DT_DOUBLE:
        t.double_val.append(0.0)
    elif dtype == _DT.DT_INT64:
        t.int64_val.append(0)
    elif dtype == _DT.DT_BOOL:
        t.bool_val.append(False)
    elif dtype == _DT.DT_STRING:
        t.string_val.append(b"")
    elif dtype == _DT.DT_COMPLEX64:
        t.scomplex_val.extend((0.0, 0.0))
    elif dtype == _DT.DT_COMPLEX128:
        t.dcomplex_val.extend((0.0, 0.0))
    elif dtype in (_DT.DT_HALF, _DT.DT_BFLOAT16):
        t.half_val.append(0)
    elif dtype == _DT.DT_UINT32:
        t.uint32_val.append(0)
    elif dtype == _DT.DT_UINT64:
        t.uint64_val.append(0)
    elif dtype in (_DT.DT_FLOAT8_E5M2, _DT.DT_FLOAT8_E4M3FN, _DT.DT_FLOAT8_E4M3FNUZ,
                   _DT.DT_FLOAT8_E4M3B11FNUZ, _DT.DT_FLOAT8_E5M2FNUZ):
        t.float8_val = b"\x00"
    elif dtype == _DT.DT_FLOAT4_E2M1FN:
        pass  # no value field of its own in TensorFlow 2.21: no values means zeros
    else:  # int32, int16, int8, uint8, uint16, quantized and sub-byte integers
        t.int_val.append(0)
    return t


def _string_tensor(values: Sequence[Union[str, bytes]], shape: Sequence[int]) -> TensorProto:
    return TensorProto(
        dtype=_DT.DT_STRING, tensor_shape=_shape_proto(shape),
        string_val=[v.encode() if isinstance(v, str) else bytes(v) for v in values])


class _GraphBuilder:
    """Appends NodeDefs to a GraphDef, tracking names and the ops used."""

    def __init__(self, meta: MetaGraphDef, add_shapes: bool):
        self.graph = meta.graph_def
        self.add_shapes = add_shapes
        self.names: Set[str] = set()
        self.ops_used: Set[str] = set()

    def node(self, name: str, op: str, inputs: Iterable[str] = (), *, device: str = "",
             attrs: Optional[Dict[str, AttrValue]] = None,
             output_shapes: Optional[Sequence[Optional[Sequence[int]]]] = None,
             colocate_with: Optional[str] = None) -> str:
        if name in self.names:
            raise InvalidArgumentError(
                f"graph node name {name!r} is used twice (a variable name clashes with "
                f"another variable's helper nodes)")
        self.names.add(name)
        self.ops_used.add(op)
        # TensorFlow's Graph::ToGraphDef writes the data inputs in order, then the control
        # inputs sorted by name (so "^save/Assign_10" comes before "^save/Assign_2").
        inputs = list(inputs)
        data = [i for i in inputs if not i.startswith("^")]
        control = sorted(i for i in inputs if i.startswith("^"))
        n = self.graph.node.add(name=name, op=op, input=data + control, device=device)
        for k, v in (attrs or {}).items():
            n.attr[k].CopyFrom(v)
        if self.add_shapes and output_shapes is not None:
            n.attr["_output_shapes"].CopyFrom(_attr_output_shapes(*output_shapes))
        if colocate_with is not None:
            n.attr["_class"].CopyFrom(_attr_class(colocate_with))
        return name

    def const(self, name: str, tensor: TensorProto, *, device: str = "") -> str:
        shape = [d.size for d in tensor.tensor_shape.dim]
        return self.node(name, "Const", device=device,
                         attrs={"value": AttrValue(tensor=tensor),
                                "dtype": _attr_type(tensor.dtype)},
                         output_shapes=[shape])


class _UniqueNames:
    """TensorFlow's ``Graph.unique_name`` within one name scope: ``X``, ``X_1``, ..."""

    def __init__(self, scope: str):
        self.scope = scope
        self.counts: Dict[str, int] = {}

    def __call__(self, base: str) -> str:
        k = self.counts.get(base, 0)
        self.counts[base] = k + 1
        return f"{self.scope}/{base}" if k == 0 else f"{self.scope}/{base}_{k}"


def _output(node: str, index: int) -> str:
    return node if index == 0 else f"{node}:{index}"


def _validate(variables: Sequence[VariableSpec]) -> None:
    names: Set[str] = set()
    keys: Set[str] = set()
    for v in variables:
        if not isinstance(v, VariableSpec):
            raise InvalidArgumentError(f"expected VariableSpec, got {type(v).__name__}")
        if (not isinstance(v.name, str) or not _VALID_NODE_NAME.match(v.name)
                or v.name.endswith("/")):
            raise InvalidArgumentError(f"invalid variable name {v.name!r}: TensorFlow node "
                                       f"names match {_VALID_NODE_NAME.pattern}")
        if v.name in names:
            raise InvalidArgumentError(f"duplicate variable name {v.name!r}")
        names.add(v.name)
        if not isinstance(v.key, str) or not v.key:
            raise InvalidArgumentError(f"variable {v.name!r}: empty checkpoint key")
        if v.key in keys:
            raise InvalidArgumentError(f"duplicate checkpoint key {v.key!r}")
        keys.add(v.key)
        if isinstance(v.dtype, bool) or not isinstance(v.dtype, int) or \
                int(v.dtype) not in _VARIABLE_DTYPES:
            raise UnsupportedDtypeError(
                f"variable {v.name!r}: dtype {v.dtype!r} is not a numeric or string "
                f"TensorFlow DataType number")
        try:
            shape = tuple(v.shape)
        except TypeError:
            raise InvalidArgumentError(f"variable {v.name!r}: shape must be a tuple of ints")
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise InvalidArgumentError(f"variable {v.name!r}: shape {shape!r} must be "
                                           f"fully defined non-negative ints")
        for c in v.resolved_collections():
            if c not in VARIABLE_COLLECTIONS:
                raise InvalidArgumentError(
                    f"variable {v.name!r}: collection {c!r} is not one of "
                    f"{', '.join(VARIABLE_COLLECTIONS)}")


def _pick_scope(base: str, taken: Set[str]) -> str:
    """TensorFlow's ``name_scope(None, base)``: ``base``, else ``base_1``, ``base_2``..."""
    def used(s: str) -> bool:
        return s in taken or any(n.startswith(s + "/") for n in taken)
    if not used(base):
        return base
    k = 1
    while used(f"{base}_{k}"):
        k += 1
    return f"{base}_{k}"


def build_meta_graph(
    variables: Sequence[VariableSpec],
    *,
    filename: str = "model",
    max_to_keep: Optional[int] = 5,
    keep_checkpoint_every_n_hours: float = 10000.0,
    sharded: bool = False,
    name: str = "save",
    allow_empty: bool = False,
    add_shapes: bool = True,
    producer: int = DEFAULT_PRODUCER,
    variable_kind: str = "ref",
) -> MetaGraphDef:
    """Build the ``MetaGraphDef`` TensorFlow's ``Saver`` would write for ``variables``.

    For each variable, in the given order, the nodes that graph-mode
    ``tf.compat.v1.get_variable(name, shape, dtype, initializer=zeros,
    use_resource=...)`` creates:

    * ``variable_kind="ref"``: ``NAME/Initializer/zeros`` (``Const``), ``NAME``
      (``VariableV2``), ``NAME/Assign`` (``Assign``, the initializer) and
      ``NAME/read`` (``Identity``, the snapshot); ``NAME:0`` is the value.
    * ``variable_kind="resource"``: ``NAME/Initializer/zeros`` (``Const``),
      ``NAME`` (``VarHandleOp``, shared name ``NAME``),
      ``NAME/IsInitialized/VarIsInitializedOp``, ``NAME/Assign``
      (``AssignVariableOp``, the initializer) and ``NAME/Read/ReadVariableOp``;
      ``NAME:0`` is the resource handle.

    Then the saver subgraph of ``tf.compat.v1.train.Saver(...)`` under the name
    scope ``name`` (``"save"``; ``"save_1"``... if a variable already uses that
    scope), over the variables sorted by checkpoint key, as TensorFlow sorts them.
    ``SaveV2`` reads a reference variable's tensor (``NAME``) and a resource
    variable's ``NAME/Read/ReadVariableOp``; the restore assigns a reference
    variable with ``save/Assign[_k]`` (``Assign``) and a resource variable with
    ``save/Identity[_k]`` + ``save/AssignVariableOp[_k]``:

    * non-sharded: ``save/filename/input``, ``save/filename``, ``save/Const``,
      ``save/SaveV2/tensor_names``, ``save/SaveV2/shape_and_slices``, ``save/SaveV2``,
      ``save/control_dependency``, ``save/RestoreV2/tensor_names``,
      ``save/RestoreV2/shape_and_slices``, ``save/RestoreV2``, the per-variable
      restore ops, ``save/restore_all``;
    * sharded (one shard, as TF builds on a single device): additionally the
      ``_temp/part`` prefix logic, ``ShardedFilename``, ``MergeV2Checkpoints`` and
      ``save/restore_shard``; the save tensor is ``save/Identity:0``.

    ``saver_def`` names ``save/Const:0`` (filename), the save tensor and
    ``save/restore_all``, with ``max_to_keep``, ``keep_checkpoint_every_n_hours``,
    ``sharded`` and format version V2. ``collection_def`` holds, for each collection
    used (``"variables"``, ``"trainable_variables"``, ...), a ``bytes_list`` of
    serialized ``VariableDef``. ``meta_info_def.stripped_op_list`` holds the OpDef
    of every op used, sorted by name.

    Args:
        variables: The variables. Names and checkpoint keys must be unique.
        filename: Default checkpoint prefix of the saver (``save/filename/input``).
        max_to_keep: ``SaverDef.max_to_keep`` (``None`` means 0: keep all).
        keep_checkpoint_every_n_hours: ``SaverDef.keep_checkpoint_every_n_hours``.
        sharded: Build TensorFlow's sharded save subgraph (one shard).
        name: Name scope of the saver subgraph.
        allow_empty: With no variables, return a graph without saver (no
            ``saver_def``; ``import_meta_graph`` then returns ``None``) instead of
            raising.
        add_shapes: Add ``_output_shapes`` attributes, as ``Saver.save`` does.
        producer: ``graph_def.versions.producer``; see :data:`DEFAULT_PRODUCER`.
        variable_kind: ``"ref"`` (TF1 reference variables, ``VariableV2``; the
            default) or ``"resource"`` (``VarHandleOp``). With ``"ref"``, a
            variable whose dtype has no reference-variable kernels in TensorFlow
            (float8, 4-bit and 2-bit types, qint16) is built as a resource
            variable, so the graph still initializes and restores.

    Returns:
        A :class:`fastckpt.proto.MetaGraphDef`.

    Raises:
        InvalidArgumentError: bad or duplicate names, shapes or collections, no
            variables without ``allow_empty``, an unknown ``variable_kind``.
        UnsupportedDtypeError: a dtype that is not numeric or string.
    """
    variables = list(variables)
    _validate(variables)
    if not isinstance(name, str) or not name or not _VALID_NODE_NAME.match(name):
        raise InvalidArgumentError(f"invalid saver name scope {name!r}")
    if variable_kind not in VARIABLE_KINDS:
        raise InvalidArgumentError(
            f"variable_kind must be one of {', '.join(map(repr, VARIABLE_KINDS))}, "
            f"not {variable_kind!r}")
    if not variables and not allow_empty:
        raise InvalidArgumentError("no variables to save (pass allow_empty=True)")
    max_to_keep = 0 if max_to_keep is None else int(max_to_keep)

    ref_names = {v.name for v in variables
                 if variable_kind == "ref" and int(v.dtype) in _REF_VARIABLE_DTYPES}

    meta = MetaGraphDef()
    g = _GraphBuilder(meta, add_shapes)
    var_defs: Dict[str, bytes] = {}

    # --- the variables -------------------------------------------------------------
    for v in variables:
        shape = tuple(int(d) for d in v.shape)
        dtype = int(v.dtype)
        init_value = g.node(f"{v.name}/Initializer/zeros", "Const",
                            attrs={"value": AttrValue(tensor=_zeros_tensor(dtype, shape)),
                                   "dtype": _attr_type(dtype)},
                            output_shapes=[shape], colocate_with=v.name)
        if v.name in ref_names:
            # variables.py RefVariable._init_from_args: VariableV2 (state_ops.variable_op_v2,
            # container and shared_name written as ""), its Assign initializer and the
            # Identity snapshot "NAME/read", all colocated with the variable.
            var = g.node(v.name, "VariableV2",
                         attrs={"shape": _attr_shape(shape), "dtype": _attr_type(dtype),
                                "container": AttrValue(s=b""), "shared_name": AttrValue(s=b"")},
                         output_shapes=[shape], colocate_with=v.name)
            assign = g.node(f"{v.name}/Assign", "Assign", [var, init_value],
                            attrs=_assign_attrs(dtype), output_shapes=[shape],
                            colocate_with=v.name)
            read = g.node(f"{v.name}/read", "Identity", [var],
                          attrs={"T": _attr_type(dtype)}, output_shapes=[shape],
                          colocate_with=v.name)
            is_resource = False
        else:
            var = g.node(v.name, "VarHandleOp",
                         attrs={"shared_name": AttrValue(s=v.name.encode()),
                                "shape": _attr_shape(shape),
                                "dtype": _attr_type(dtype)},
                         output_shapes=[()], colocate_with=v.name)
            g.node(f"{v.name}/IsInitialized/VarIsInitializedOp", "VarIsInitializedOp", [var],
                   output_shapes=[()])
            assign = g.node(f"{v.name}/Assign", "AssignVariableOp", [var, init_value],
                            attrs={"dtype": _attr_type(dtype)})
            read = g.node(f"{v.name}/Read/ReadVariableOp", "ReadVariableOp", [var],
                          attrs={"dtype": _attr_type(dtype)}, output_shapes=[shape])
            is_resource = True
        var_defs[v.name] = VariableDef(
            variable_name=var + ":0",
            initial_value_name=init_value + ":0",
            initializer_name=assign,
            snapshot_name=read + ":0",
            is_resource=is_resource,
            trainable=bool(v.trainable),
        ).SerializeToString(deterministic=True)

    # --- the saver -----------------------------------------------------------------
    if variables:
        scope = _pick_scope(name, g.names)
        meta.saver_def.CopyFrom(_build_saver(
            g, scope, sorted(variables, key=lambda s: s.key), filename=filename,
            sharded=sharded, ref_names=ref_names))
        meta.saver_def.max_to_keep = max_to_keep
        meta.saver_def.keep_checkpoint_every_n_hours = float(keep_checkpoint_every_n_hours)
        meta.saver_def.sharded = bool(sharded)
        meta.saver_def.version = SaverDef.V2

    # --- collections ---------------------------------------------------------------
    collections: Dict[str, List[bytes]] = {}
    for v in variables:
        for c in v.resolved_collections():
            collections.setdefault(c, []).append(var_defs[v.name])
    for c, values in collections.items():
        meta.collection_def[c].CopyFrom(
            CollectionDef(bytes_list=CollectionDef.BytesList(value=values)))

    # --- versions and op list --------------------------------------------------------
    meta.graph_def.versions.producer = int(producer)
    info = meta.meta_info_def
    info.stripped_op_list.SetInParent()
    for op in sorted(g.ops_used):
        info.stripped_op_list.op.add().CopyFrom(op_def(op))
    info.stripped_default_attrs = True
    return meta


def _assign_attrs(dtype: int) -> Dict[str, AttrValue]:
    """Attributes of an ``Assign`` node as graph-mode TensorFlow writes them (both
    bool attributes explicitly, at their default ``true``)."""
    return {"T": _attr_type(dtype), "validate_shape": AttrValue(b=True),
            "use_locking": AttrValue(b=True)}


def _build_saver(g: _GraphBuilder, scope: str, variables: Sequence[VariableSpec], *,
                 filename: str, sharded: bool, ref_names: Set[str]) -> SaverDef:
    """Add the saver subgraph under ``scope``; return the SaverDef naming it.

    ``ref_names``: the variables that are ``VariableV2`` nodes. ``SaveV2`` reads
    their tensors directly and the restore assigns them with ``Assign``
    (``save/Assign``, ``save/Assign_1``...); the other (resource) variables are
    read through their ``ReadVariableOp`` and restored by ``Identity`` +
    ``AssignVariableOp``."""
    uniq = _UniqueNames(scope)
    string_scalar = {"dtype": _attr_type(_DT.DT_STRING), "shape": _attr_shape(())}
    n = len(variables)
    keys = [v.key for v in variables]
    dtypes = [int(v.dtype) for v in variables]
    dtypes_attr = AttrValue(list=AttrValue.ListValue(type=dtypes))

    fn_input = g.const(uniq("filename/input"), _string_tensor([filename or "model"], ()))
    fn = g.node(uniq("filename"), "PlaceholderWithDefault", [fn_input],
                attrs=string_scalar, output_shapes=[()])
    prefix = g.node(uniq("Const"), "PlaceholderWithDefault", [fn],
                    attrs=string_scalar, output_shapes=[()])

    def save_ops(file_tensor: str, device: str) -> str:
        names = g.const(uniq("SaveV2/tensor_names"), _string_tensor(keys, (n,)), device=device)
        slices = g.const(uniq("SaveV2/shape_and_slices"), _string_tensor([""] * n, (n,)),
                         device=device)
        save = g.node(uniq("SaveV2"), "SaveV2",
                      [file_tensor, names, slices] + [
                          v.name if v.name in ref_names else f"{v.name}/Read/ReadVariableOp"
                          for v in variables],
                      device=device, attrs={"dtypes": dtypes_attr})
        return g.node(uniq("control_dependency"), "Identity", [file_tensor, "^" + save],
                      device=device, attrs={"T": _attr_type(_DT.DT_STRING)},
                      output_shapes=[()], colocate_with=file_tensor)

    if not sharded:
        save_tensor = save_ops(prefix, "")
    else:
        # saver.py _AddShardedSaveOpsForV2 with one device.
        match = g.node(uniq("StaticRegexFullMatch"), "StaticRegexFullMatch", [prefix],
                       device=_CPU_ANY, attrs={"pattern": AttrValue(s=b"^s3://.*")},
                       output_shapes=[()])
        part_s3 = g.const(uniq("Const"), _string_tensor([".part"], ()), device=_CPU_ANY)
        part_tmp = g.const(uniq("Const"), _string_tensor(["_temp/part"], ()), device=_CPU_ANY)
        suffix = g.node(uniq("Select"), "Select", [match, part_s3, part_tmp], device=_CPU_ANY,
                        attrs={"T": _attr_type(_DT.DT_STRING)}, output_shapes=[()])
        tmp_prefix = g.node(uniq("StringJoin"), "StringJoin", [prefix, suffix],
                            device=_CPU_ANY, attrs={"N": AttrValue(i=2)}, output_shapes=[()])
        num_shards = g.const(uniq("num_shards"), TensorProto(
            dtype=_DT.DT_INT32, tensor_shape=_shape_proto(()), int_val=[1]))
        shard = g.const(uniq("ShardedFilename/shard"), TensorProto(
            dtype=_DT.DT_INT32, tensor_shape=_shape_proto(()), int_val=[0]), device=_CPU0)
        shard_file = g.node(uniq("ShardedFilename"), "ShardedFilename",
                            [tmp_prefix, shard, num_shards], device=_CPU0, output_shapes=[()])
        dep = save_ops(shard_file, _CPU0)
        packed = g.node(uniq("MergeV2Checkpoints/checkpoint_prefixes"), "Pack",
                        [shard_file, "^" + dep], device=_CPU0,
                        attrs={"N": AttrValue(i=1), "T": _attr_type(_DT.DT_STRING)},
                        output_shapes=[(1,)])
        merge = g.node(uniq("MergeV2Checkpoints"), "MergeV2Checkpoints", [packed, prefix],
                       device=_CPU0, attrs={"delete_old_dirs": AttrValue(b=True)})
        save_tensor = g.node(uniq("Identity"), "Identity",
                             [prefix, "^" + merge, "^" + dep], device=_CPU0,
                             attrs={"T": _attr_type(_DT.DT_STRING)}, output_shapes=[()])

    # Restore: saver.py _AddRestoreOps / BulkSaverBuilder.bulk_restore (on CPU:0).
    r_names = g.const(uniq("RestoreV2/tensor_names"), _string_tensor(keys, (n,)), device=_CPU0)
    r_slices = g.const(uniq("RestoreV2/shape_and_slices"), _string_tensor([""] * n, (n,)),
                       device=_CPU0)
    restore = g.node(uniq("RestoreV2"), "RestoreV2", [prefix, r_names, r_slices],
                     device=_CPU0, attrs={"dtypes": dtypes_attr},
                     output_shapes=[None] * n)
    assigns = []
    for i, v in enumerate(variables):
        if v.name in ref_names:
            # saveable_object_util.ReferenceVariableSaveable.restore: state_ops.assign
            assigns.append(g.node(uniq("Assign"), "Assign", [v.name, _output(restore, i)],
                                  attrs=_assign_attrs(int(v.dtype)),
                                  output_shapes=[tuple(int(d) for d in v.shape)],
                                  colocate_with=v.name))
            continue
        ident = g.node(uniq("Identity"), "Identity", [_output(restore, i)],
                       attrs={"T": _attr_type(int(v.dtype))}, output_shapes=[None])
        assigns.append(g.node(uniq("AssignVariableOp"), "AssignVariableOp", [v.name, ident],
                              attrs={"dtype": _attr_type(int(v.dtype))}))
    control = ["^" + a for a in assigns]
    if sharded:
        shard_restore = g.node(uniq("restore_shard"), "NoOp", control)
        control = ["^" + shard_restore]
    restore_all = g.node(uniq("restore_all"), "NoOp", control)

    return SaverDef(filename_tensor_name=prefix + ":0",
                    save_tensor_name=save_tensor + ":0",
                    restore_op_name=restore_all)


# --------------------------------------------------------------------------------------
# Files.

def write_meta_graph(meta: MetaGraphDef, path: Union[str, "os.PathLike[str]"],
                     as_text: bool = False, *, fsync: bool = False) -> str:
    """Write ``meta`` to ``path`` atomically; return the path.

    The bytes go to a locked temporary file ``path + ".tempstate-fastckpt-<16 hex>"``
    first, which is then renamed over ``path``, as TensorFlow's
    ``atomic_write_string_to_file`` does with its own temporary name, so readers never
    see a partial file; a killed process's leftover is removed by the next save into
    the directory. Binary output is the deterministic
    serialization (map entries sorted by key), as TensorFlow writes it; ``as_text``
    writes protobuf text format instead (TensorFlow reads both).

    Args:
        meta: A :class:`fastckpt.proto.MetaGraphDef` (any message with the same
            wire format works, e.g. TensorFlow's own ``MetaGraphDef``).
        path: Destination, usually ``PREFIX + ".meta"``. Its directory must exist.
        as_text: Write text format instead of binary.
        fsync: Flush the file to stable storage before the rename, and the directory
            after it.

    Raises:
        CheckpointIOError: an OS error, naming ``path`` (CheckpointNotFoundError if
            the directory is missing); no temporary file is left behind.
    """
    path = os.fspath(path)
    if as_text:
        data = text_format.MessageToString(meta).encode("utf-8")
    else:
        data = meta.SerializeToString(deterministic=True)
    atomic_write(path, data, durable=fsync, what="meta graph")
    return path


def read_meta_graph(path: Union[str, "os.PathLike[str]"]) -> MetaGraphDef:
    """Read a ``.meta`` file written by TensorFlow or :func:`write_meta_graph`.

    Like TensorFlow's ``read_meta_graph_file``: the content is parsed as binary
    first and, if that fails, as protobuf text format.

    Raises:
        CheckpointNotFoundError (or another CheckpointIOError): the file
            cannot be read.
        DataLossError: the content is neither a binary nor a text ``MetaGraphDef``.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise from_os_error(e, f"cannot read meta graph '{path}'", path) from None
    meta = MetaGraphDef()
    try:
        meta.ParseFromString(data)
        return meta
    except _message.DecodeError:
        pass
    meta = MetaGraphDef()
    try:
        text_format.Merge(data.decode("utf-8"), meta)
    except (UnicodeDecodeError, text_format.ParseError) as e:
        raise DataLossError(f"cannot parse {path} as a MetaGraphDef "
                            f"(neither binary nor text format): {e}") from None
    return meta
