"""The ``MetaGraphDef`` TensorFlow's ``Saver`` writes: :func:`build_meta_graph` puts
together the variables, the saver's save/restore subgraph, the collections and
the op list."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Set

from ..errors import InvalidArgumentError
from ..proto import AttrValue, CollectionDef, DataType, MetaGraphDef, SaverDef, TensorProto
from .nodes import (
    CPU0,
    CPU_ANY,
    GraphBuilder,
    UniqueNames,
    attr_shape,
    attr_type,
    output,
    pick_scope,
    shape_proto,
    string_tensor,
)
from .ops import op_def
from .variables import (
    REF_VARIABLE_DTYPES,
    VALID_NODE_NAME,
    VARIABLE_KINDS,
    VariableSpec,
    add_variable,
    assign_attrs,
    validate,
)

__all__ = ["build_meta_graph", "DEFAULT_PRODUCER"]

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

_DT = DataType


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
    validate(variables)
    if not isinstance(name, str) or not name or not VALID_NODE_NAME.match(name):
        raise InvalidArgumentError(f"invalid saver name scope {name!r}")
    if variable_kind not in VARIABLE_KINDS:
        raise InvalidArgumentError(
            f"variable_kind must be one of {', '.join(map(repr, VARIABLE_KINDS))}, not {variable_kind!r}"
        )
    if not variables and not allow_empty:
        raise InvalidArgumentError("no variables to save (pass allow_empty=True)")
    max_to_keep = 0 if max_to_keep is None else int(max_to_keep)

    ref_names = {v.name for v in variables if variable_kind == "ref" and int(v.dtype) in REF_VARIABLE_DTYPES}

    meta = MetaGraphDef()
    g = GraphBuilder(meta, add_shapes)
    var_defs: Dict[str, bytes] = {}

    # --- the variables -------------------------------------------------------------
    for v in variables:
        var_defs[v.name] = add_variable(g, v, ref=v.name in ref_names)

    # --- the saver -----------------------------------------------------------------
    if variables:
        scope = pick_scope(name, g.names)
        meta.saver_def.CopyFrom(
            _build_saver(
                g,
                scope,
                sorted(variables, key=lambda s: s.key),
                filename=filename,
                sharded=sharded,
                ref_names=ref_names,
            )
        )
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
        meta.collection_def[c].CopyFrom(CollectionDef(bytes_list=CollectionDef.BytesList(value=values)))

    # --- versions and op list --------------------------------------------------------
    meta.graph_def.versions.producer = int(producer)
    info = meta.meta_info_def
    info.stripped_op_list.SetInParent()
    for op in sorted(g.ops_used):
        info.stripped_op_list.op.add().CopyFrom(op_def(op))
    info.stripped_default_attrs = True
    return meta


def _build_saver(
    g: GraphBuilder, scope: str, variables: Sequence[VariableSpec], *, filename: str, sharded: bool, ref_names: Set[str]
) -> SaverDef:
    """Add the saver subgraph under ``scope``; return the SaverDef naming it.

    ``ref_names``: the variables that are ``VariableV2`` nodes. ``SaveV2`` reads
    their tensors directly and the restore assigns them with ``Assign``
    (``save/Assign``, ``save/Assign_1``...); the other (resource) variables are
    read through their ``ReadVariableOp`` and restored by ``Identity`` +
    ``AssignVariableOp``."""
    uniq = UniqueNames(scope)
    string_scalar = {"dtype": attr_type(_DT.DT_STRING), "shape": attr_shape(())}
    n = len(variables)
    keys = [v.key for v in variables]
    dtypes = [int(v.dtype) for v in variables]
    dtypes_attr = AttrValue(list=AttrValue.ListValue(type=dtypes))

    fn_input = g.const(uniq("filename/input"), string_tensor([filename or "model"], ()))
    fn = g.node(uniq("filename"), "PlaceholderWithDefault", [fn_input], attrs=string_scalar, output_shapes=[()])
    prefix = g.node(uniq("Const"), "PlaceholderWithDefault", [fn], attrs=string_scalar, output_shapes=[()])

    def save_ops(file_tensor: str, device: str) -> str:
        names = g.const(uniq("SaveV2/tensor_names"), string_tensor(keys, (n,)), device=device)
        slices = g.const(uniq("SaveV2/shape_and_slices"), string_tensor([""] * n, (n,)), device=device)
        save = g.node(
            uniq("SaveV2"),
            "SaveV2",
            [file_tensor, names, slices]
            + [v.name if v.name in ref_names else f"{v.name}/Read/ReadVariableOp" for v in variables],
            device=device,
            attrs={"dtypes": dtypes_attr},
        )
        return g.node(
            uniq("control_dependency"),
            "Identity",
            [file_tensor, "^" + save],
            device=device,
            attrs={"T": attr_type(_DT.DT_STRING)},
            output_shapes=[()],
            colocate_with=file_tensor,
        )

    if not sharded:
        save_tensor = save_ops(prefix, "")
    else:
        # saver.py _AddShardedSaveOpsForV2 with one device.
        match = g.node(
            uniq("StaticRegexFullMatch"),
            "StaticRegexFullMatch",
            [prefix],
            device=CPU_ANY,
            attrs={"pattern": AttrValue(s=b"^s3://.*")},
            output_shapes=[()],
        )
        part_s3 = g.const(uniq("Const"), string_tensor([".part"], ()), device=CPU_ANY)
        part_tmp = g.const(uniq("Const"), string_tensor(["_temp/part"], ()), device=CPU_ANY)
        suffix = g.node(
            uniq("Select"),
            "Select",
            [match, part_s3, part_tmp],
            device=CPU_ANY,
            attrs={"T": attr_type(_DT.DT_STRING)},
            output_shapes=[()],
        )
        tmp_prefix = g.node(
            uniq("StringJoin"),
            "StringJoin",
            [prefix, suffix],
            device=CPU_ANY,
            attrs={"N": AttrValue(i=2)},
            output_shapes=[()],
        )
        num_shards = g.const(
            uniq("num_shards"), TensorProto(dtype=_DT.DT_INT32, tensor_shape=shape_proto(()), int_val=[1])
        )
        shard = g.const(
            uniq("ShardedFilename/shard"),
            TensorProto(dtype=_DT.DT_INT32, tensor_shape=shape_proto(()), int_val=[0]),
            device=CPU0,
        )
        shard_file = g.node(
            uniq("ShardedFilename"), "ShardedFilename", [tmp_prefix, shard, num_shards], device=CPU0, output_shapes=[()]
        )
        dep = save_ops(shard_file, CPU0)
        packed = g.node(
            uniq("MergeV2Checkpoints/checkpoint_prefixes"),
            "Pack",
            [shard_file, "^" + dep],
            device=CPU0,
            attrs={"N": AttrValue(i=1), "T": attr_type(_DT.DT_STRING)},
            output_shapes=[(1,)],
        )
        merge = g.node(
            uniq("MergeV2Checkpoints"),
            "MergeV2Checkpoints",
            [packed, prefix],
            device=CPU0,
            attrs={"delete_old_dirs": AttrValue(b=True)},
        )
        save_tensor = g.node(
            uniq("Identity"),
            "Identity",
            [prefix, "^" + merge, "^" + dep],
            device=CPU0,
            attrs={"T": attr_type(_DT.DT_STRING)},
            output_shapes=[()],
        )

    # Restore: saver.py _AddRestoreOps / BulkSaverBuilder.bulk_restore (on CPU:0).
    r_names = g.const(uniq("RestoreV2/tensor_names"), string_tensor(keys, (n,)), device=CPU0)
    r_slices = g.const(uniq("RestoreV2/shape_and_slices"), string_tensor([""] * n, (n,)), device=CPU0)
    restore = g.node(
        uniq("RestoreV2"),
        "RestoreV2",
        [prefix, r_names, r_slices],
        device=CPU0,
        attrs={"dtypes": dtypes_attr},
        output_shapes=[None] * n,
    )
    assigns = []
    for i, v in enumerate(variables):
        if v.name in ref_names:
            # saveable_object_util.ReferenceVariableSaveable.restore: state_ops.assign
            assigns.append(
                g.node(
                    uniq("Assign"),
                    "Assign",
                    [v.name, output(restore, i)],
                    attrs=assign_attrs(int(v.dtype)),
                    output_shapes=[tuple(int(d) for d in v.shape)],
                    colocate_with=v.name,
                )
            )
            continue
        ident = g.node(
            uniq("Identity"),
            "Identity",
            [output(restore, i)],
            attrs={"T": attr_type(int(v.dtype))},
            output_shapes=[None],
        )
        assigns.append(
            g.node(
                uniq("AssignVariableOp"), "AssignVariableOp", [v.name, ident], attrs={"dtype": attr_type(int(v.dtype))}
            )
        )
    control = ["^" + a for a in assigns]
    if sharded:
        shard_restore = g.node(uniq("restore_shard"), "NoOp", control)
        control = ["^" + shard_restore]
    restore_all = g.node(uniq("restore_all"), "NoOp", control)

    return SaverDef(
        filename_tensor_name=prefix + ":0", save_tensor_name=save_tensor + ":0", restore_op_name=restore_all
    )
