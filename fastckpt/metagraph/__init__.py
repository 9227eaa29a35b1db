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

Modules: :mod:`~fastckpt.metagraph.variables` (:class:`VariableSpec`, collections,
the nodes of one variable), :mod:`~fastckpt.metagraph.graph` (:func:`build_meta_graph`,
the saver subgraph), :mod:`~fastckpt.metagraph.ops` (the OpDefs, as data),
:mod:`~fastckpt.metagraph.nodes` (proto and graph-building helpers) and
:mod:`~fastckpt.metagraph.files` (reading and writing ``.meta`` files).
"""

from __future__ import annotations

from .files import read_meta_graph, write_meta_graph
from .graph import DEFAULT_PRODUCER, build_meta_graph
from .ops import op_def
from .variables import GLOBAL_VARIABLES, TRAINABLE_VARIABLES, VARIABLE_COLLECTIONS, VARIABLE_KINDS, VariableSpec

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
