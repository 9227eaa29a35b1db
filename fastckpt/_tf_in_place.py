"""Reading graph-mode TensorFlow variables in place, without the fetch copy.

``Session.run`` copies every fetched tensor into a new numpy array (one
thread, a few GB/s): a variable's buffer is shared with the variable, so
TensorFlow cannot hand it over. The inputs of a ``numpy_function`` op, by
contrast, reach Python as arrays over TensorFlow's own buffers. A Saver
therefore adds one such op to the graph when it is built (``save/
fastckpt_values``, fed a token that names the waiting save), and a save runs
it on a helper thread: the op hands the arrays over and blocks until the
save is done with them, while the saving thread writes them. The fetch copy
is gone, and the values stay those of one ``Session.run``: a resource
variable that is assigned meanwhile gets a new buffer (TensorFlow copies on
write while a read holds the old one); a legacy reference variable is read in
place, as TensorFlow's own ``SaveV2`` reads it.

Thread safety: any number of saves may run at once (each has its token);
the registry is a dict touched under the GIL.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Sequence

import numpy as np

from .errors import FailedPreconditionError

#: Name of the op (under the Saver's name scope) and of its token placeholder.
OP_NAME = "fastckpt_values"
TOKEN_NAME = "fastckpt_values_token"


class _Handoff:
    """One save's meeting point with its op: the op's thread gives the
    arrays and waits; the saving thread takes them and releases them."""

    def __init__(self) -> None:
        self.values: Optional[List[np.ndarray]] = None
        self.error: Optional[BaseException] = None
        self.ready = threading.Event()  # values (or error) are there
        self.done = threading.Event()  # the save no longer reads the values

    def give(self, values: Sequence[np.ndarray]) -> None:
        self.values = list(values)
        self.ready.set()
        self.done.wait()


# token -> the save waiting for that op run.
_waiting: Dict[int, _Handoff] = {}
_tokens = itertools.count(1)


def _hand_over(token: Any, *values: np.ndarray) -> np.int64:
    """The op's body, run by TensorFlow on one of its threads with the GIL:
    gives the arrays (views of TensorFlow's buffers, valid only until this
    returns) to the save that fed `token`, and returns once it is done."""
    handoff = _waiting.get(int(token))
    if handoff is None:  # run by something other than a save: nothing to give
        raise FailedPreconditionError("fastckpt: the in-place read op runs only inside Saver.save")
    handoff.give(values)
    return np.int64(0)


class InPlaceReader:
    """The op added to a graph, and the reads through it."""

    def __init__(self, graph: Any, scope: str, tensors: Sequence[Any]) -> None:
        """Adds the op to `graph` (which must not be finalized) under name
        scope `scope` (ending in ``/``), reading `tensors`."""
        import tensorflow as tf

        self.graph = graph
        # Outside any device, colocation, control-dependency or name scope of
        # the caller: the op has only a CPU kernel and must depend on nothing.
        with (
            graph.as_default(),
            graph.device(None),
            graph.colocate_with(None, ignore_existing=True),
            graph.control_dependencies(None),
            graph.name_scope(scope),
        ):
            self._token = tf.compat.v1.placeholder(tf.int64, [], name=TOKEN_NAME)
            self._op = tf.numpy_function(_hand_over, [self._token, *tensors], tf.int64, stateful=True, name=OP_NAME)
        self.node_names = frozenset((self._token.op.name, self._op.op.name))

    def usable_with(self, sess: Any) -> bool:
        """Whether `sess` runs the op in this process, on this graph (a
        remote session would run it in another one)."""
        return getattr(sess, "graph", None) is self.graph and not getattr(sess, "sess_str", b"")

    @contextlib.contextmanager
    def values(self, sess: Any) -> Iterator[List[np.ndarray]]:
        """The tensors' values, as arrays over TensorFlow's buffers, valid
        inside the block; an error of the run (an uninitialized variable) is
        raised here as TensorFlow raised it."""
        token = next(_tokens)
        handoff = _Handoff()
        _waiting[token] = handoff

        def run() -> None:
            try:
                sess.run(self._op, feed_dict={self._token: token})
            except BaseException as e:  # noqa: BLE001 - re-raised on the saving thread
                handoff.error = e
            finally:
                handoff.ready.set()

        thread = threading.Thread(target=run, name="fastckpt-in-place-read", daemon=True)
        thread.start()
        try:
            handoff.ready.wait()
            if handoff.values is None:
                assert handoff.error is not None
                raise handoff.error
            yield handoff.values
        finally:
            handoff.values = None
            handoff.done.set()
            thread.join()
            del _waiting[token]
        if handoff.error is not None:  # the run failed after the op (not expected)
            raise handoff.error


def strip_nodes(meta_graph: Any, names: FrozenSet[str], export_scope: Optional[str]) -> Any:
    """Removes the in-place read op's nodes from an exported MetaGraphDef
    (in place; returned), and their op definitions from the stripped op list
    where no other node uses them: the ``.meta`` holds what TensorFlow's Saver
    writes."""
    prefix = f"{export_scope}/" if export_scope else ""
    own = {n[len(prefix) :] for n in names if n.startswith(prefix)}
    graph = meta_graph.graph_def
    removed = {n.op for n in graph.node if n.name in own}
    if not removed:
        return meta_graph
    keep = [n for n in graph.node if n.name not in own]
    del graph.node[:]
    graph.node.extend(keep)
    used = {n.op for n in graph.node}
    used.update(n.op for f in graph.library.function for n in f.node_def)
    ops = meta_graph.meta_info_def.stripped_op_list.op
    keep_ops = [op for op in ops if op.name not in removed or op.name in used]
    if len(keep_ops) != len(ops):
        del ops[:]
        ops.extend(keep_ops)
    return meta_graph
