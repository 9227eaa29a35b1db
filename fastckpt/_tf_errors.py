"""fastckpt errors that are also TensorFlow's, for the Saver's TensorFlow users.

A TensorFlow program catches ``tf.errors.NotFoundError`` around
``saver.restore``; with :class:`fastckpt.Saver` in its place, the error must
still be caught there. :func:`as_tensorflow_error` turns a fastckpt error into
an instance of a class deriving from both the fastckpt class and the matching
``tf.errors`` class (so ``except fastckpt.TensorNotFoundError`` and ``except
tf.errors.NotFoundError`` both catch it), with the same message and
attributes. Used only where TensorFlow is already loaded (a Saver of
TensorFlow variables); this module imports nothing from TensorFlow itself.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, Dict, Optional, Tuple, Type

from . import errors as E

# fastckpt class -> name of the tf.errors class a TensorFlow program expects
# for the same failure (checked most-derived first: the first match wins).
_TF_CLASS_OF: Tuple[Tuple[Type[E.FastCkptError], str], ...] = (
    (E.TensorNotFoundError, "NotFoundError"),
    (E.CheckpointNotFoundError, "NotFoundError"),
    (E.CheckpointPermissionError, "PermissionDeniedError"),
    (E.DataLossError, "DataLossError"),
    (E.InvalidArgumentError, "InvalidArgumentError"),
    (E.UnsupportedDtypeError, "InvalidArgumentError"),
    (E.UnimplementedError, "UnimplementedError"),
    (E.FailedPreconditionError, "FailedPreconditionError"),
    (E.CancelledError, "CancelledError"),
    (E.DeadlineExceededError, "DeadlineExceededError"),
    (E.CheckpointIOError, "UnknownError"),
    (E.InternalError, "InternalError"),
)

_classes: Dict[Tuple[type, type], type] = {}
_lock = threading.Lock()


def _tf_errors() -> Optional[Any]:
    """``tensorflow.python.framework.errors_impl`` if TensorFlow is loaded."""
    return sys.modules.get("tensorflow.python.framework.errors_impl")


def _both(ours: type, theirs: Any) -> type:
    """The class deriving from `ours` and `theirs` (made once, cached)."""
    with _lock:
        cls = _classes.get((ours, theirs))
        if cls is None:
            # TensorFlow's signature (autograph re-raises an OpError from a
            # tf.function with these arguments), or the message alone.
            def __init__(
                self: Any,
                node_def: Any,
                op: Any = None,
                message: Any = None,  # noqa: N807
                *args: Any,
            ) -> None:
                if op is None and message is None:
                    node_def, message = None, node_def
                theirs.__init__(self, node_def, op, message, *args)
                self.args = (message,)

            def __str__(self: Any) -> str:  # noqa: N807 - fastckpt's message, whole
                return self.message

            def __reduce__(self: Any) -> Any:  # noqa: N807 - pickles as fastckpt's class
                return (ours, (self.message,))

            cls = type(
                ours.__name__,
                (ours, theirs),
                {
                    "__init__": __init__,
                    "__str__": __str__,
                    "__reduce__": __reduce__,
                    "__module__": ours.__module__,
                    "__qualname__": ours.__qualname__,
                    "__doc__": f"{ours.__doc__}\n\nAlso TensorFlow's ``{theirs.__name__}``.",
                },
            )
            _classes[(ours, theirs)] = cls
        return cls


def as_tensorflow_error(error: BaseException) -> BaseException:
    """`error` as an instance of both its class and the matching
    ``tf.errors`` class; `error` itself when it is no fastckpt error, has no
    TensorFlow counterpart, or TensorFlow is not loaded."""
    tf_errors = _tf_errors()
    if tf_errors is None or not isinstance(error, E.FastCkptError) or isinstance(error, tf_errors.OpError):
        return error
    for ours, name in _TF_CLASS_OF:
        if isinstance(error, ours):
            theirs = getattr(tf_errors, name)
            break
    else:
        return error
    try:
        both = _both(type(error), theirs)
        out = both(str(error))
    except TypeError:  # layouts that cannot be combined: keep fastckpt's error
        return error
    for key, value in vars(error).items():  # errno, filename, failures...
        if key not in vars(out):
            setattr(out, key, value)
    if isinstance(error, OSError):
        out.errno, out.strerror, out.filename = error.errno, error.strerror, error.filename
    out.__cause__, out.__context__ = error.__cause__, error.__context__
    out.__traceback__ = error.__traceback__
    return out
