"""The variables of a ``.meta`` graph: :class:`VariableSpec`, the collections and
dtypes a variable may have, their validation, and the nodes that graph-mode
TensorFlow creates for one variable (a TF1 reference variable, ``VariableV2``,
or a resource variable, ``VarHandleOp``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Set, Tuple

from ..errors import InvalidArgumentError, UnsupportedDtypeError
from ..proto import AttrValue, DataType, VariableDef
from .nodes import GraphBuilder, attr_shape, attr_type, zeros_tensor

__all__ = [
    "VariableSpec",
    "VARIABLE_COLLECTIONS",
    "VARIABLE_KINDS",
    "GLOBAL_VARIABLES",
    "TRAINABLE_VARIABLES",
    "VARIABLE_DTYPES",
    "REF_VARIABLE_DTYPES",
    "VALID_NODE_NAME",
    "validate",
    "assign_attrs",
    "add_variable",
]

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
VALID_NODE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")

_DT = DataType
# Dtypes a variable may have: every numeric type and string (not resource, variant
# or reference types).
VARIABLE_DTYPES: Set[int] = {
    v.number for v in _DT.DESCRIPTOR.values if 0 < v.number < 100 and v.number not in (_DT.DT_RESOURCE, _DT.DT_VARIANT)
}

# Dtypes TensorFlow (2.21) has reference-variable kernels for: the CPU kernels of
# ``Assign`` (the initializer and the restore op of a ``VariableV2``). A variable of
# another dtype (the float8, 4-bit and 2-bit types, qint16) could be built but
# neither initialized nor restored, so ``variable_kind="ref"`` builds it as a
# resource variable instead.
REF_VARIABLE_DTYPES: Set[int] = {
    _DT.DT_FLOAT,
    _DT.DT_DOUBLE,
    _DT.DT_HALF,
    _DT.DT_BFLOAT16,
    _DT.DT_INT8,
    _DT.DT_INT16,
    _DT.DT_INT32,
    _DT.DT_INT64,
    _DT.DT_UINT8,
    _DT.DT_UINT16,
    _DT.DT_UINT32,
    _DT.DT_UINT64,
    _DT.DT_BOOL,
    _DT.DT_STRING,
    _DT.DT_COMPLEX64,
    _DT.DT_COMPLEX128,
    _DT.DT_QINT8,
    _DT.DT_QUINT8,
    _DT.DT_QINT32,
    _DT.DT_QUINT16,
}


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


def validate(variables: Sequence[VariableSpec]) -> None:
    names: Set[str] = set()
    keys: Set[str] = set()
    for v in variables:
        if not isinstance(v, VariableSpec):
            raise InvalidArgumentError(f"expected VariableSpec, got {type(v).__name__}")
        if not isinstance(v.name, str) or not VALID_NODE_NAME.match(v.name) or v.name.endswith("/"):
            raise InvalidArgumentError(
                f"invalid variable name {v.name!r}: TensorFlow node names match {VALID_NODE_NAME.pattern}"
            )
        if v.name in names:
            raise InvalidArgumentError(f"duplicate variable name {v.name!r}")
        names.add(v.name)
        if not isinstance(v.key, str) or not v.key:
            raise InvalidArgumentError(f"variable {v.name!r}: empty checkpoint key")
        if v.key in keys:
            raise InvalidArgumentError(f"duplicate checkpoint key {v.key!r}")
        keys.add(v.key)
        if isinstance(v.dtype, bool) or not isinstance(v.dtype, int) or int(v.dtype) not in VARIABLE_DTYPES:
            raise UnsupportedDtypeError(
                f"variable {v.name!r}: dtype {v.dtype!r} is not a numeric or string TensorFlow DataType number"
            )
        try:
            shape = tuple(v.shape)
        except TypeError:
            raise InvalidArgumentError(f"variable {v.name!r}: shape must be a tuple of ints") from None
        for d in shape:
            if isinstance(d, bool) or not isinstance(d, int) or d < 0:
                raise InvalidArgumentError(
                    f"variable {v.name!r}: shape {shape!r} must be fully defined non-negative ints"
                )
        for c in v.resolved_collections():
            if c not in VARIABLE_COLLECTIONS:
                raise InvalidArgumentError(
                    f"variable {v.name!r}: collection {c!r} is not one of {', '.join(VARIABLE_COLLECTIONS)}"
                )


def assign_attrs(dtype: int) -> Dict[str, AttrValue]:
    """Attributes of an ``Assign`` node as graph-mode TensorFlow writes them (both
    bool attributes explicitly, at their default ``true``)."""
    return {"T": attr_type(dtype), "validate_shape": AttrValue(b=True), "use_locking": AttrValue(b=True)}


def add_variable(g: GraphBuilder, v: VariableSpec, *, ref: bool) -> bytes:
    """Adds the nodes graph-mode ``tf.compat.v1.get_variable(v.name, ..., initializer=zeros)``
    creates (see :func:`~fastckpt.metagraph.build_meta_graph`): a reference variable
    (``VariableV2``) when ``ref``, else a resource variable (``VarHandleOp``).
    Returns the variable's serialized ``VariableDef`` (for the collections)."""
    shape = tuple(int(d) for d in v.shape)
    dtype = int(v.dtype)
    init_value = g.node(
        f"{v.name}/Initializer/zeros",
        "Const",
        attrs={"value": AttrValue(tensor=zeros_tensor(dtype, shape)), "dtype": attr_type(dtype)},
        output_shapes=[shape],
        colocate_with=v.name,
    )
    if ref:
        # variables.py RefVariable._init_from_args: VariableV2 (state_ops.variable_op_v2,
        # container and shared_name written as ""), its Assign initializer and the
        # Identity snapshot "NAME/read", all colocated with the variable.
        var = g.node(
            v.name,
            "VariableV2",
            attrs={
                "shape": attr_shape(shape),
                "dtype": attr_type(dtype),
                "container": AttrValue(s=b""),
                "shared_name": AttrValue(s=b""),
            },
            output_shapes=[shape],
            colocate_with=v.name,
        )
        assign = g.node(
            f"{v.name}/Assign",
            "Assign",
            [var, init_value],
            attrs=assign_attrs(dtype),
            output_shapes=[shape],
            colocate_with=v.name,
        )
        read = g.node(
            f"{v.name}/read",
            "Identity",
            [var],
            attrs={"T": attr_type(dtype)},
            output_shapes=[shape],
            colocate_with=v.name,
        )
        is_resource = False
    else:
        var = g.node(
            v.name,
            "VarHandleOp",
            attrs={"shared_name": AttrValue(s=v.name.encode()), "shape": attr_shape(shape), "dtype": attr_type(dtype)},
            output_shapes=[()],
            colocate_with=v.name,
        )
        g.node(f"{v.name}/IsInitialized/VarIsInitializedOp", "VarIsInitializedOp", [var], output_shapes=[()])
        assign = g.node(f"{v.name}/Assign", "AssignVariableOp", [var, init_value], attrs={"dtype": attr_type(dtype)})
        read = g.node(
            f"{v.name}/Read/ReadVariableOp",
            "ReadVariableOp",
            [var],
            attrs={"dtype": attr_type(dtype)},
            output_shapes=[shape],
        )
        is_resource = True
    return VariableDef(
        variable_name=var + ":0",
        initial_value_name=init_value + ":0",
        initializer_name=assign,
        snapshot_name=read + ":0",
        is_resource=is_resource,
        trainable=bool(v.trainable),
    ).SerializeToString(deterministic=True)
