"""The TensorFlow side of :class:`fastckpt.Saver`.

Imported only when a Saver is given TensorFlow variables (or none, in a
TensorFlow graph). Graph mode: an internal ``tf.compat.v1.train.Saver`` builds
TensorFlow's own save/restore subgraph, so the ``.meta`` file and the
``saver_def`` are exactly TensorFlow's, and every saveable object, partitioned
variable and device placement is handled by TensorFlow's own rules. fastckpt
then drives that subgraph without running its I/O ops:

* save: the tensors feeding each ``SaveV2`` op are read in place through an
  op the Saver adds when it is built (:mod:`fastckpt._tf_in_place`; the
  ``.meta`` leaves it out) and written by the native core while that op
  waits; a session that runs elsewhere (a remote target) fetches them with
  ``sess.run`` instead, a large save in groups;
* restore: the checkpoint is read natively (parallel, verified) and the
  values are *fed* as the outputs of each ``RestoreV2`` op while running the
  restore op, so TensorFlow's own assign/reshape logic places them and no op
  is added to the graph (it may be finalized).

Eager mode (an explicit ``var_list`` of ``tf.Variable``): the saveable
objects' tensors are read with ``.numpy()`` and restored through the
saveables' own ``restore``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import metagraph as mg
from ._bundle_stream import plan_groups
from ._tf_errors import as_tensorflow_error
from ._tf_in_place import InPlaceReader, strip_nodes
from .errors import ArgumentTypeError, FailedPreconditionError, InvalidArgumentError, TensorNotFoundError
from .format import slices as slicing
from .reader import CheckpointReader, check_restore_target
from .writer import partitioned_item, prepare_item

# (checkpoint key, shape_and_slice spec) per tensor of a SaveV2/RestoreV2 op.
_Spec = Tuple[str, str]


def _tf() -> Any:
    import tensorflow as tf

    return tf


def _const_strings(tensor: Any) -> List[str]:
    from tensorflow.python.framework import tensor_util

    value = tensor_util.constant_value(tensor)
    if value is None:
        raise FailedPreconditionError(f"fastckpt: {tensor.name} is not a constant; cannot drive this saver")
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in np.asarray(value).reshape(-1)]


def _ancestor_ops(root: Any, op_type: str) -> List[Any]:
    """Ops of `op_type` that `root` depends on (data or control), in graph order."""
    seen, stack, found = set(), [root], []
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op.type == op_type:
            found.append(op)
            continue
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return sorted(found, key=lambda o: o.name)


_Partitions = Dict[str, Tuple[int, Tuple[int, ...], List[List[Tuple[int, int]]]]]


def _items_from_values(
    specs: List[_Spec], values: List[Any], partitions: Optional[_Partitions] = None, *, last: bool = True
) -> Tuple[List[Any], List[Any]]:
    """Native writer items for TF saveable tensors (partitioned ones as slices).

    A save written in groups passes one `partitions` dict to every group and
    ``last=True`` only with the last: the data-less entries of partitioned
    variables, which list every slice, come with that group."""
    items, keep = [], []
    if partitions is None:
        partitions = {}
    for (name, spec), value in zip(specs, values):
        if not spec:
            item, owner = prepare_item(name, value)
        else:
            full_shape, extents = slicing.parse_shape_and_slice(spec)
            if slicing.is_full_slice(full_shape, extents):
                item, owner = prepare_item(name, value)
            else:
                item, owner = prepare_item(slicing.encode_slice_key(name, extents), value, slice_key=True)
                entry = partitions.setdefault(name, (item[1], tuple(full_shape), []))
                entry[2].append(extents)
        items.append(item)
        keep.append(owner)
    if last:
        for name, (dt, shape, slice_list) in partitions.items():
            items.append(partitioned_item(name, dt, shape, slice_list))
    return items, keep


def _require(reader: CheckpointReader, name: str) -> None:
    """Raises TensorFlow's message (and, through the Saver, its class) for a
    variable the checkpoint lacks."""
    if not reader.has_tensor(name):
        raise TensorNotFoundError(
            f"Key {name} not found in checkpoint '{reader.prefix}' (a variable of the graph is "
            "missing from the checkpoint)"
        )


def _read_spec(reader: CheckpointReader, name: str, spec: str) -> np.ndarray:
    _require(reader, name)
    if not spec:
        return reader.get_tensor(name)
    full_shape, extents = slicing.parse_shape_and_slice(spec)
    return reader.get_slice(name, extents)


class TFBackend:
    """Drives TensorFlow variables for :class:`fastckpt.Saver`."""

    def __init__(self, var_list: Any, *, saver_def: Any, allow_empty: bool, sharded: bool, **saver_args: Any) -> None:
        tf = _tf()
        self.var_list = var_list
        self._sharded = sharded
        self._saver_args = dict(saver_args, saver_def=saver_def, allow_empty=allow_empty, sharded=sharded)
        self._eager_tf_saver: Any = None  # eager mode: TensorFlow's Saver, made when first needed
        self._native_io: Optional[bool] = None
        self._in_place: Optional[InPlaceReader] = None  # graph mode: see _add_in_place_reader
        # Items arrive in SaveV2 order (partition slices next to their
        # variable); the data file keeps it, as TensorFlow's does.
        self.sort_data = False
        self._eager = tf.executing_eagerly()
        if self._eager:
            if var_list is None:
                raise FailedPreconditionError(
                    "When eager execution is enabled, `var_list` must specify a list or dict of variables to save"
                )
            from tensorflow.python.training.saving import saveable_object_util

            names_to_saveables = (
                var_list if isinstance(var_list, dict) else saveable_object_util.op_list_to_dict(var_list)
            )
            self._saveables = saveable_object_util.validate_and_slice_inputs(names_to_saveables)
            self.is_empty = not self._saveables
            if self.is_empty and not allow_empty:
                raise InvalidArgumentError("No variables to save")
            self._tf_saver: Any = None
            return
        self._graph = tf.compat.v1.get_default_graph()
        self._tf_saver = tf.compat.v1.train.Saver(
            var_list, saver_def=saver_def, allow_empty=allow_empty, sharded=sharded, **saver_args
        )
        self.is_empty = bool(getattr(self._tf_saver, "_is_empty", False))
        self._save_plan: Optional[Tuple[List[_Spec], List[Any]]] = None
        self._restore_plan: Optional[Tuple[List[_Spec], List[Any]]] = None
        self._num_save_ops = 1
        if self._tf_saver._is_built:  # noqa: SLF001 - else build() adds it
            self._add_in_place_reader()

    def _add_in_place_reader(self) -> None:
        """Adds the op through which saves read the variables in place, where
        the graph can still take it (a Saver made from a ``saver_def`` on a
        finalized graph fetches instead) and every tensor is an array."""
        if (
            self._in_place is not None
            or self._graph.finalized
            or self._tf_saver.saver_def is None
            or not self.native_io()
        ):
            return
        assert self._save_plan is not None
        tensors = self._save_plan[1]
        if not tensors:
            return
        save_op = self._tf_saver.saver_def.save_tensor_name.rsplit(":", 1)[0]
        scope = save_op.rsplit("/", 1)[0] + "/" if "/" in save_op else ""
        self._in_place = InPlaceReader(self._graph, scope, tensors)

    # -- plans --------------------------------------------------------------
    def _plans(self) -> None:
        if self._save_plan is not None:
            return
        sd = self._tf_saver.saver_def
        g = self._graph
        save_root = g.as_graph_element(sd.save_tensor_name).op
        specs: List[_Spec] = []
        tensors: List[Any] = []
        save_ops = _ancestor_ops(save_root, "SaveV2")
        for op in save_ops:
            names = _const_strings(op.inputs[1])
            slices = _const_strings(op.inputs[2])
            specs.extend(zip(names, slices))
            tensors.extend(op.inputs[3:])
        self._num_save_ops = max(1, len(save_ops))
        self._save_plan = (specs, tensors)
        restore_root = g.as_graph_element(sd.restore_op_name)
        rspecs: List[_Spec] = []
        outputs: List[Any] = []
        for op in _ancestor_ops(restore_root, "RestoreV2"):
            names = _const_strings(op.inputs[1])
            slices = _const_strings(op.inputs[2])
            rspecs.extend(zip(names, slices))
            outputs.extend(op.outputs)
        self._restore_plan = (rspecs, outputs)

    def tf_saver(self) -> Any:
        """TensorFlow's own Saver of the same variables (graph mode: the one
        that built the graph's save/restore ops; eager mode: made when first
        needed), for what fastckpt hands to TensorFlow: V1 files, URL paths
        and saveables with variant tensors."""
        if self._tf_saver is not None:
            return self._tf_saver
        if self._eager_tf_saver is None:
            self._eager_tf_saver = _tf().compat.v1.train.Saver(self.var_list, **self._saver_args)
        return self._eager_tf_saver

    def native_io(self) -> bool:
        """Whether every saveable tensor is an array fastckpt can fetch, write
        and feed back (false for variant tensors, e.g. tf.data iterator
        state: TensorFlow's own ops write and read those checkpoints)."""
        if self._native_io is None:
            if self._eager:
                dtypes = [spec.dtype for saveable in self._saveables for spec in saveable.specs]
            else:
                self._plans()
                assert self._save_plan is not None
                dtypes = [t.dtype for t in self._save_plan[1]]
            self._native_io = all(d.is_numpy_compatible for d in dtypes)
        return self._native_io

    def tf_write_bundle(self, sess: Any, checkpoint_file: str) -> None:
        """Writes the checkpoint's data and index with TensorFlow's save ops
        (no state file, no .meta: the caller commits)."""
        self.tf_saver().save(sess, checkpoint_file, write_meta_graph=False, write_state=False)

    # -- hooks used by Saver ----------------------------------------------
    @property
    def saver_def(self) -> Any:
        return None if self._tf_saver is None else self._tf_saver.saver_def

    def to_proto(self, export_scope: Optional[str]) -> Any:
        return None if self._tf_saver is None else self._tf_saver.to_proto(export_scope)

    def check_built(self) -> None:
        if self._eager and not _tf().executing_eagerly():
            # TensorFlow's Saver raises RuntimeError here too (its build check).
            raise as_tensorflow_error(
                FailedPreconditionError(
                    "Saver.save cannot run while a tf.function is being traced: the variables have no "
                    "values then; call it outside the tf.function (eagerly)"
                )
            )
        if self._tf_saver is not None and not self._tf_saver._is_built:  # noqa: SLF001
            raise FailedPreconditionError("`build()` should be called before save if defer_build==True")

    def build(self) -> None:
        if self._tf_saver is not None:
            self._tf_saver.build()
            self._add_in_place_reader()

    def retention(self) -> Optional[Tuple[int, float]]:
        """(max_to_keep, keep_checkpoint_every_n_hours) of the built SaverDef."""
        if self._tf_saver is None or not self._tf_saver._is_built:  # noqa: SLF001
            return None
        sd = self._tf_saver.saver_def
        if sd is None:  # an empty saver (allow_empty=True) has no SaverDef
            return None
        return sd.max_to_keep, sd.keep_checkpoint_every_n_hours

    def check_session(self, sess: Any) -> None:
        if self._eager:
            return
        from tensorflow.python.client import session

        if not isinstance(sess, session.SessionInterface):
            raise ArgumentTypeError("'sess' must be a Session; %s" % sess)

    def global_step_value(self, sess: Any, global_step: Any) -> int:
        if isinstance(global_step, (int, np.integer)):
            return int(global_step)
        from tensorflow.python.training import training_util

        return int(training_util.global_step(sess, global_step))

    def default_shards(self) -> Optional[int]:
        # TensorFlow writes one data file per device with sharded=True; keep that.
        if self._sharded and not self._eager:
            self._plans()
            return self._num_save_ops
        return None

    def collect(self, sess: Any) -> Tuple[List[Any], List[Any]]:
        if self._eager:
            specs, values, tensors = [], [], []
            for saveable in self._saveables:
                for spec in saveable.specs:
                    tensor = spec.tensor
                    if tensor is None:
                        continue  # an uninitialized variable: TF skips it too
                    specs.append((spec.name, spec.slice_spec))
                    # A host tensor's buffer as an array: ``numpy()`` would copy
                    # it. The tensor (kept alive with the items) holds the
                    # value: a variable assigned meanwhile gets a new buffer.
                    values.append(tensor._numpy() if hasattr(tensor, "_numpy") else tensor.numpy())  # noqa: SLF001
                    tensors.append(tensor)
            items, keep = _items_from_values(specs, values)
            return items, [keep, tensors]
        self._plans()
        assert self._save_plan is not None
        specs, tensors = self._save_plan
        values = sess.run(tensors) if tensors else []
        return _items_from_values(specs, values)

    @contextlib.contextmanager
    def values(self, sess: Any) -> Iterator[Tuple[List[Any], List[Any]]]:
        """The save's writer items, valid inside the block: graph mode reads
        the variables in place where the session runs in this process (no
        fetch copy; see :mod:`fastckpt._tf_in_place`), else :meth:`collect`."""
        if self._in_place is not None and self._in_place.usable_with(sess):
            assert self._save_plan is not None
            with self._in_place.values(sess) as arrays:
                yield _items_from_values(self._save_plan[0], arrays)
            return
        yield self.collect(sess)

    def fetch_in_groups(
        self, sess: Any, group_bytes: int
    ) -> Optional[Tuple[int, Iterator[Tuple[List[Any], List[Any]]]]]:
        """Graph mode: the save's tensors as `n` groups of about `group_bytes`,
        each fetched by its own ``sess.run`` when the iterator reaches it, so
        that writing one group overlaps fetching the next (a fetch is a copy:
        fetching everything first doubles the memory and puts the whole copy
        before the first write). Returns ``(n, groups)``, or None where one
        fetch is as good: eager mode, ``sharded=True`` (one data file per
        device, as TensorFlow writes), a tensor whose size the graph does not
        fix (unknown shape, strings), or less than two groups of data."""
        if self._eager or self._sharded or (self._in_place is not None and self._in_place.usable_with(sess)):
            return None
        self._plans()
        assert self._save_plan is not None
        specs, tensors = self._save_plan
        sizes: List[Tuple[str, int]] = []
        for i, t in enumerate(tensors):
            dims = t.shape.as_list() if t.shape.rank is not None else None
            if dims is None or any(d is None for d in dims) or t.dtype == _tf().string:
                return None
            sizes.append((str(i), int(np.prod(dims, dtype=np.int64)) * t.dtype.size))
        if sum(n for _, n in sizes) < 2 * group_bytes:
            return None
        plan = [[int(i) for i in group] for group in plan_groups(sizes, group_bytes)]

        def groups() -> Iterator[Tuple[List[Any], List[Any]]]:
            partitions: _Partitions = {}
            for g, indices in enumerate(plan):
                values = sess.run([tensors[i] for i in indices])
                items, keep = _items_from_values(
                    [specs[i] for i in indices], values, partitions, last=g == len(plan) - 1
                )
                yield items, [values, keep]

        return len(plan), groups()

    def restore(self, sess: Any, reader: CheckpointReader) -> None:
        if self._eager:
            tf = _tf()
            for saveable in self._saveables:
                restored = []
                for spec in saveable.specs:
                    value = _read_spec(reader, spec.name, spec.slice_spec)
                    want = getattr(spec, "dtype", None)
                    if (
                        value.dtype != object
                        and want is not None
                        and want.is_numpy_compatible
                        and np.dtype(want.as_numpy_dtype) != value.dtype
                    ):
                        # Said here, with both dtypes, rather than by the assign op.
                        # (A shape mismatch is left to the saveable, which raises
                        # TensorFlow's own ValueError for it.)
                        check_restore_target(
                            spec.name,
                            reader.prefix,
                            value.dtype,
                            value.shape,
                            np.dtype(want.as_numpy_dtype),
                            value.shape,
                        )
                    restored.append(tf.constant(value))
                saveable.restore(restored, None)
            return None
        self._plans()
        assert self._restore_plan is not None
        specs, outputs = self._restore_plan
        feed = {}
        # Whole fixed-size tensors are read in one parallel native call into
        # new 64-byte-aligned arrays, which TensorFlow takes as fed tensors
        # without a copy (a resource variable's assign then keeps the buffer
        # itself); slices and string tensors are read one by one.
        whole: Dict[str, np.ndarray] = {}
        for (name, spec), out in zip(specs, outputs):
            _require(reader, name)
            fresh = reader._new_whole_array(name) if not spec and name not in whole else None  # noqa: SLF001
            if fresh is not None:
                whole[name] = value = fresh
            else:
                value = _read_spec(reader, name, spec)
            if value.dtype != object:  # a string tensor feeds a DT_STRING output as is
                shape = out.shape.as_list() if out.shape.is_fully_defined() else list(value.shape)
                check_restore_target(
                    name, reader.prefix, value.dtype, value.shape, np.dtype(out.dtype.as_numpy_dtype), shape
                )
            feed[out] = value
        reader.read_into(whole)
        sess.run(self._tf_saver.saver_def.restore_op_name, feed_dict=feed)
        return None

    def capture_meta_graph(
        self, sess: Any, *, strip_default_attrs: bool, save_debug_info: bool
    ) -> Callable[[str, bool], None]:
        """The graph's MetaGraphDef as it is now, as ``write(path, durable)``.

        Called on the saving thread, so that an asynchronous save writes the
        graph of its call, whatever the caller adds to the graph while the
        save completes in the background.
        """
        if self._eager:
            return lambda path, durable: None  # TensorFlow writes no .meta in eager mode
        if save_debug_info:
            # The debug info goes to a file that TensorFlow's exporter names
            # after the .meta; it is exported when written.
            def export(path: str, durable: bool) -> None:
                with sess.graph.as_default():
                    meta = self._tf_saver.export_meta_graph(
                        path, strip_default_attrs=strip_default_attrs, save_debug_info=True
                    )
                if self._in_place is not None:  # rewritten without the in-place read op
                    mg.write_meta_graph(strip_nodes(meta, self._in_place.node_names, None), path, fsync=False)
                if durable:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)

            return export
        with sess.graph.as_default():
            meta = self._tf_saver.export_meta_graph(None, strip_default_attrs=strip_default_attrs)
        if self._in_place is not None:
            strip_nodes(meta, self._in_place.node_names, None)

        def write(path: str, durable: bool) -> None:
            # Deterministic serialization, written atomically: the bytes
            # TensorFlow's exporter writes.
            mg.write_meta_graph(meta, path, fsync=durable)

        return write

    def export_meta_graph(self, filename: Any, *, durable: bool, **kwargs: Any) -> Any:
        if self._tf_saver is None:
            raise FailedPreconditionError("export_meta_graph is not supported in eager mode")
        meta = self._tf_saver.export_meta_graph(filename, **kwargs)
        if self._in_place is not None:
            strip_nodes(meta, self._in_place.node_names, kwargs.get("export_scope"))
            if filename:  # rewritten without the in-place read op, as TensorFlow wrote it
                from tensorflow.python.framework import graph_io

                path = os.fspath(filename)
                graph_io.write_graph(
                    meta, os.path.dirname(path), os.path.basename(path), as_text=bool(kwargs.get("as_text"))
                )
        return meta


def import_meta_graph_tf(
    meta_graph_or_file: Any, clear_devices: bool = False, import_scope: Optional[str] = None, **kwargs: Any
) -> Any:
    """``tf.compat.v1.train.import_meta_graph``, returning a fastckpt Saver."""
    from .saver import Saver

    tf = _tf()
    tf_saver = tf.compat.v1.train.import_meta_graph(
        meta_graph_or_file, clear_devices=clear_devices, import_scope=import_scope, **kwargs
    )
    if tf_saver is None:
        return None
    sd = tf_saver.saver_def
    return Saver(
        saver_def=sd,
        max_to_keep=sd.max_to_keep,
        keep_checkpoint_every_n_hours=sd.keep_checkpoint_every_n_hours,
        sharded=sd.sharded,
    )
