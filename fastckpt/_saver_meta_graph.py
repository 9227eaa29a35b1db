"""The module functions ``fastckpt.import_meta_graph`` and
``fastckpt.export_meta_graph``, as TensorFlow's (and, without TensorFlow,
importing a ``.meta`` into a Saver of zero-filled arrays)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

import numpy as np

from . import metagraph as mg
from ._framework import tf_graph_mode, tf_loaded
from .errors import InvalidArgumentError
from .format import dtypes

if TYPE_CHECKING:
    from .saver import Saver

__all__ = ["import_meta_graph", "export_meta_graph"]

PathLike = Union[str, "os.PathLike[str]"]


def import_meta_graph(
    meta_graph_or_file: Any,
    clear_devices: bool = False,
    import_scope: Optional[str] = None,
    *,
    use_tensorflow: Optional[bool] = None,
    **kwargs: Any,
) -> Optional["Saver"]:
    """Imports a ``.meta`` and returns a :class:`Saver` bound to it.

    When TensorFlow is loaded and in graph mode (``use_tensorflow=None``, the
    default, decides so; True or False forces a choice), the graph is imported
    into the default graph as ``tf.compat.v1.train.import_meta_graph`` does and
    the returned Saver drives its variables. Otherwise the returned Saver holds
    one zero-filled numpy array per variable of the graph (``saver.var_list``),
    which ``saver.restore(None, prefix)`` fills; TensorFlow is not needed.
    """
    from .saver import Saver

    if use_tensorflow is None:
        use_tensorflow = tf_graph_mode()
    if use_tensorflow:
        from ._tf_backend import import_meta_graph_tf

        return import_meta_graph_tf(
            meta_graph_or_file, clear_devices=clear_devices, import_scope=import_scope, **kwargs
        )
    meta = meta_graph_or_file
    if not hasattr(meta, "graph_def"):
        meta = mg.read_meta_graph(meta_graph_or_file)
    arrays = _variables_of(meta)
    if not arrays:
        return None
    sd = meta.saver_def
    return Saver(
        arrays,
        max_to_keep=sd.max_to_keep if meta.HasField("saver_def") else 5,
        keep_checkpoint_every_n_hours=(sd.keep_checkpoint_every_n_hours if meta.HasField("saver_def") else 10000.0),
    )


def _variables_of(meta: Any) -> Dict[str, np.ndarray]:
    """Zero-filled arrays for the saveable variables of a MetaGraphDef, keyed by
    checkpoint name (partitioned variables as one full-size array)."""
    from .proto import VariableDef

    nodes = {n.name: n for n in meta.graph_def.node}
    arrays: Dict[str, np.ndarray] = {}
    if "variables" not in meta.collection_def:
        return arrays
    for raw in meta.collection_def["variables"].bytes_list.value:
        vdef = VariableDef.FromString(raw)
        op_name = vdef.variable_name.split(":")[0]
        node = nodes.get(op_name)
        if node is None or "dtype" not in node.attr:
            raise InvalidArgumentError(f"meta graph names variable '{op_name}' but has no such node")
        dt = node.attr["dtype"].type
        if vdef.HasField("save_slice_info_def"):
            info = vdef.save_slice_info_def
            key, shape = info.full_name, tuple(info.full_shape)
        else:
            key, shape = op_name, tuple(d.size for d in node.attr["shape"].shape.dim)
        if key not in arrays:
            arrays[key] = np.zeros(shape, dtype=dtypes.to_numpy_dtype(dt))
    return arrays


def export_meta_graph(
    filename: Optional[PathLike] = None,
    meta_info_def: Any = None,
    graph_def: Any = None,
    saver_def: Any = None,
    collection_list: Any = None,
    as_text: bool = False,
    graph: Any = None,
    export_scope: Optional[str] = None,
    clear_devices: bool = False,
    clear_extraneous_savers: bool = False,
    strip_default_attrs: bool = False,
    save_debug_info: bool = False,
    **kwargs: Any,
) -> Any:
    """``tf.compat.v1.train.export_meta_graph``; requires TensorFlow (it exports a TF graph).

    Without TensorFlow use :meth:`Saver.export_meta_graph`, which exports the
    graph of an array saver.
    """
    if not tf_loaded():
        raise InvalidArgumentError(
            "fastckpt.export_meta_graph exports a TensorFlow graph; without TensorFlow use Saver.export_meta_graph()"
        )
    import tensorflow as tf

    return tf.compat.v1.train.export_meta_graph(
        filename=filename,
        meta_info_def=meta_info_def,
        graph_def=graph_def,
        saver_def=saver_def,
        collection_list=collection_list,
        as_text=as_text,
        graph=graph,
        export_scope=export_scope,
        clear_devices=clear_devices,
        clear_extraneous_savers=clear_extraneous_savers,
        strip_default_attrs=strip_default_attrs,
        save_debug_info=save_debug_info,
        **kwargs,
    )
