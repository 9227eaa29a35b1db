"""Which framework a Saver's variables belong to, told without importing one.

TensorFlow is never imported here: a Saver uses it only when it is loaded
already and handed TensorFlow's objects (decided by class, so user-defined
``Trackable`` and ``SaveableObject`` subclasses count), or when a path is one
of TensorFlow's filesystem URLs.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Mapping, Optional, Tuple

__all__ = ["tf_loaded", "tf_graph_mode", "is_tf_object", "uses_tensorflow", "url_scheme"]


def tf_loaded() -> bool:
    return "tensorflow" in sys.modules


def tf_graph_mode() -> bool:
    """True when TensorFlow is loaded and building a graph (not eager)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and not tf.executing_eagerly()


def _tf_classes() -> Tuple[type, ...]:
    """TensorFlow's classes of things a Saver saves (empty without TensorFlow)."""
    if not tf_loaded():
        return ()
    import tensorflow as tf
    from tensorflow.python.ops.variables import PartitionedVariable
    from tensorflow.python.trackable.base import Trackable
    from tensorflow.python.training.saving.saveable_object import SaveableObject

    # Trackable covers variables (TensorFlow's and Keras's), tables, iterators
    # and user-defined Trackables with their own save spec.
    return (Trackable, SaveableObject, PartitionedVariable, tf.Tensor, tf.Operation)


def is_tf_object(value: Any) -> bool:
    """Whether `value` is TensorFlow's (decided by its class, whatever module
    defines it: a user's Trackable or SaveableObject subclass counts)."""
    classes = _tf_classes()
    if not classes:
        return False
    if isinstance(value, (list, tuple)):  # a partitioned variable's parts
        return bool(value) and all(isinstance(v, classes) for v in value)
    return isinstance(value, classes)


def uses_tensorflow(var_list: Any) -> bool:
    # Arrays come as a dict; None and lists (even empty ones) are TensorFlow's.
    if var_list is None or not isinstance(var_list, Mapping):
        return True
    return any(is_tf_object(v) for v in var_list.values())


_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def url_scheme(path: Any) -> Optional[str]:
    """The scheme of a TensorFlow filesystem URL (``file``, ``ram``, ``gs``...), or None."""
    if isinstance(path, bytes):
        path = path.decode("utf-8", "surrogateescape")
    m = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    return m.group(1) if m else None
