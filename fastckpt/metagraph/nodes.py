"""Graph-building primitives: proto helpers (shapes, attributes, constant
tensors) and the GraphDef builder with TensorFlow's naming rules
(``Graph.unique_name``, ``name_scope``)."""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Set, Union

from ..errors import InvalidArgumentError
from ..proto import AttrValue, DataType, MetaGraphDef, TensorProto, TensorShapeProto

__all__ = [
    "shape_proto",
    "attr_type",
    "attr_shape",
    "attr_output_shapes",
    "attr_class",
    "zeros_tensor",
    "string_tensor",
    "GraphBuilder",
    "UniqueNames",
    "output",
    "pick_scope",
    "CPU0",
    "CPU_ANY",
]

_DT = DataType

CPU0 = "/device:CPU:0"
CPU_ANY = "/device:CPU:*"


def shape_proto(shape: Optional[Sequence[int]]) -> TensorShapeProto:
    """``None`` gives an unknown-rank shape."""
    if shape is None:
        return TensorShapeProto(unknown_rank=True)
    return TensorShapeProto(dim=[TensorShapeProto.Dim(size=int(d)) for d in shape])


def attr_type(dtype: int) -> AttrValue:
    return AttrValue(type=dtype)


def attr_shape(shape: Sequence[int]) -> AttrValue:
    return AttrValue(shape=shape_proto(shape))


def attr_output_shapes(*shapes: Optional[Sequence[int]]) -> AttrValue:
    return AttrValue(list=AttrValue.ListValue(shape=[shape_proto(s) for s in shapes]))


def attr_class(*nodes: str) -> AttrValue:
    return AttrValue(list=AttrValue.ListValue(s=[b"loc:@" + n.encode() for n in nodes]))


def _num_elements(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def zeros_tensor(dtype: int, shape: Sequence[int]) -> TensorProto:
    """A TensorProto of ``shape`` filled with zeros: one zero value that TensorFlow
    repeats over the whole tensor (the form ``tf.zeros_initializer`` produces)."""
    t = TensorProto(dtype=dtype, tensor_shape=shape_proto(shape))
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
    elif dtype in (
        _DT.DT_FLOAT8_E5M2,
        _DT.DT_FLOAT8_E4M3FN,
        _DT.DT_FLOAT8_E4M3FNUZ,
        _DT.DT_FLOAT8_E4M3B11FNUZ,
        _DT.DT_FLOAT8_E5M2FNUZ,
    ):
        t.float8_val = b"\x00"
    elif dtype == _DT.DT_FLOAT4_E2M1FN:
        pass  # no value field of its own in TensorFlow 2.21: no values means zeros
    else:  # int32, int16, int8, uint8, uint16, quantized and sub-byte integers
        t.int_val.append(0)
    return t


def string_tensor(values: Sequence[Union[str, bytes]], shape: Sequence[int]) -> TensorProto:
    return TensorProto(
        dtype=_DT.DT_STRING,
        tensor_shape=shape_proto(shape),
        string_val=[v.encode() if isinstance(v, str) else bytes(v) for v in values],
    )


class GraphBuilder:
    """Appends NodeDefs to a GraphDef, tracking names and the ops used."""

    def __init__(self, meta: MetaGraphDef, add_shapes: bool):
        self.graph = meta.graph_def
        self.add_shapes = add_shapes
        self.names: Set[str] = set()
        self.ops_used: Set[str] = set()

    def node(
        self,
        name: str,
        op: str,
        inputs: Iterable[str] = (),
        *,
        device: str = "",
        attrs: Optional[Dict[str, AttrValue]] = None,
        output_shapes: Optional[Sequence[Optional[Sequence[int]]]] = None,
        colocate_with: Optional[str] = None,
    ) -> str:
        if name in self.names:
            raise InvalidArgumentError(
                f"graph node name {name!r} is used twice (a variable name clashes with another variable's helper nodes)"
            )
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
            n.attr["_output_shapes"].CopyFrom(attr_output_shapes(*output_shapes))
        if colocate_with is not None:
            n.attr["_class"].CopyFrom(attr_class(colocate_with))
        return name

    def const(self, name: str, tensor: TensorProto, *, device: str = "") -> str:
        shape = [d.size for d in tensor.tensor_shape.dim]
        return self.node(
            name,
            "Const",
            device=device,
            attrs={"value": AttrValue(tensor=tensor), "dtype": attr_type(tensor.dtype)},
            output_shapes=[shape],
        )


class UniqueNames:
    """TensorFlow's ``Graph.unique_name`` within one name scope: ``X``, ``X_1``, ..."""

    def __init__(self, scope: str):
        self.scope = scope
        self.counts: Dict[str, int] = {}

    def __call__(self, base: str) -> str:
        k = self.counts.get(base, 0)
        self.counts[base] = k + 1
        return f"{self.scope}/{base}" if k == 0 else f"{self.scope}/{base}_{k}"


def output(node: str, index: int) -> str:
    return node if index == 0 else f"{node}:{index}"


def pick_scope(base: str, taken: Set[str]) -> str:
    """TensorFlow's ``name_scope(None, base)``: ``base``, else ``base_1``, ``base_2``..."""

    def used(s: str) -> bool:
        return s in taken or any(n.startswith(s + "/") for n in taken)

    if not used(base):
        return base
    k = 1
    while used(f"{base}_{k}"):
        k += 1
    return f"{base}_{k}"
