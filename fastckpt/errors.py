"""Exceptions raised by fastckpt.

Every exception fastckpt raises derives from :class:`FastCkptError`, and also
from the built-in class a caller would naturally catch (``FileNotFoundError``,
``PermissionError``, ``ValueError``, ``TypeError``...), so existing ``except``
clauses keep working. The native core maps its status codes onto these
classes in exactly one place (``csrc/bindings/errors.cc``); operating-system
errors, wherever they arise, get their class from :func:`os_error`.
"""

from __future__ import annotations

import concurrent.futures as _futures
import errno as _errno
import os
import sys
from typing import Any, Dict, Optional, Type

# The exception classes: what ``fastckpt`` re-exports (its ``__all__`` extends
# this one). os_error and from_os_error below are helpers for fastckpt's own
# modules, importable by name but not part of the public API.
__all__ = [
    "FastCkptError",
    "CheckpointIOError",
    "CheckpointNotFoundError",
    "CheckpointPermissionError",
    "CheckpointExistsError",
    "CheckpointIsADirectoryError",
    "CheckpointNotADirectoryError",
    "TensorNotFoundError",
    "DataLossError",
    "InvalidArgumentError",
    "UnsupportedDtypeError",
    "ArgumentTypeError",
    "UnimplementedError",
    "FailedPreconditionError",
    "CancelledError",
    "DeadlineExceededError",
    "CudaError",
    "CudaUnavailableError",
    "MissingDependencyError",
    "DistributedError",
    "DistributedSaveError",
    "DistributedLoadError",
    "InternalError",
]


class FastCkptError(Exception):
    """Base class of every error fastckpt raises."""


# -- operating-system errors ---------------------------------------------------


class CheckpointIOError(FastCkptError, OSError):
    """An operating-system error (ENOSPC, EIO, EACCES...).

    ``errno`` is the OS error number, ``strerror`` the OS's text for it alone
    (``"No space left on device"``), and ``filename`` the checkpoint file the
    call was about as the caller knows it (never a temporary name), or None.
    ``str()`` is fastckpt's message, which says what was being done. Errors
    whose errno has a built-in subclass of ``OSError`` are raised as the
    matching subclass below (see :func:`os_error`).
    """

    def __init__(self, *args: Any, message: Optional[str] = None) -> None:
        super().__init__(*args)
        self._message = message

    def __str__(self) -> str:
        if self._message is not None:
            return self._message
        return OSError.__str__(self)

    def __reduce__(self) -> Any:
        return (_rebuild_os_error, (type(self), self.errno, self.strerror, self.filename, self._message))


def _rebuild_os_error(
    cls: Type[CheckpointIOError],
    err: Optional[int],
    strerror: Optional[str],
    filename: Optional[str],
    message: Optional[str],
) -> CheckpointIOError:
    if err is None:
        return cls(message=message)
    return cls(err, strerror, filename, message=message)


class CheckpointNotFoundError(CheckpointIOError, FileNotFoundError):
    """A file of the checkpoint (index, data shard, state file) does not exist,
    or a directory holds no checkpoint (ENOENT)."""


class CheckpointPermissionError(CheckpointIOError, PermissionError):
    """The operating system refused access to a checkpoint file (EACCES, EPERM)."""


class CheckpointExistsError(CheckpointIOError, FileExistsError):
    """A file that must be created already exists (EEXIST)."""


class CheckpointIsADirectoryError(CheckpointIOError, IsADirectoryError):
    """A directory stands where a checkpoint file must be (EISDIR)."""


class CheckpointNotADirectoryError(CheckpointIOError, NotADirectoryError):
    """A regular file stands where a directory must be, e.g. in a save's
    parent path (ENOTDIR)."""


_OS_ERROR_CLASSES = {
    _errno.ENOENT: CheckpointNotFoundError,
    _errno.EACCES: CheckpointPermissionError,
    _errno.EPERM: CheckpointPermissionError,
    _errno.EEXIST: CheckpointExistsError,
    _errno.EISDIR: CheckpointIsADirectoryError,
    _errno.ENOTDIR: CheckpointNotADirectoryError,
}


def os_error(err: int, message: str, filename: Optional[str] = None) -> CheckpointIOError:
    """The exception for OS error `err`: the :class:`CheckpointIOError`
    subclass matching the built-in ``OSError`` subclass Python itself would
    pick for `err`, with ``errno``, ``strerror`` (the OS text only) and
    ``filename`` set, and `message` as its text."""
    cls = _OS_ERROR_CLASSES.get(err, CheckpointIOError)
    return cls(err, os.strerror(err), filename, message=message)


def from_os_error(e: OSError, what: str, filename: Optional[str] = None) -> CheckpointIOError:
    """Converts a Python ``OSError`` into :func:`os_error`'s exception, with
    the message ``"<what>: <the OS text>"``; `filename` defaults to ``e``'s."""
    err = e.errno if e.errno is not None else _errno.EIO
    text = e.strerror or os.strerror(err)
    return os_error(err, f"{what}: {text}", filename if filename is not None else e.filename)


# -- everything else -------------------------------------------------------------


class TensorNotFoundError(FastCkptError, KeyError):
    """The checkpoint has no tensor of the requested name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataLossError(FastCkptError):
    """Checkpoint bytes are damaged: CRC mismatch, truncated file, garbled index."""


class InvalidArgumentError(FastCkptError, ValueError):
    """Bad input: an empty or duplicate tensor name, a bad shape, a bad option."""


class UnsupportedDtypeError(FastCkptError, TypeError):
    """A value a checkpoint cannot hold (a structured dtype, an object that is
    no array), or a dtype fastckpt cannot read."""


class ArgumentTypeError(FastCkptError, TypeError):
    """An argument of the wrong type where TensorFlow's API raises
    ``TypeError`` (``Saver.set_last_checkpoints("x")``, a session that is
    none). Values a checkpoint cannot hold are :class:`UnsupportedDtypeError`."""


class UnimplementedError(FastCkptError, NotImplementedError):
    """Valid input that this version of fastckpt does not support."""


class FailedPreconditionError(FastCkptError, RuntimeError):
    """An operation was called in a state that does not allow it."""


class CancelledError(FastCkptError, _futures.CancelledError):
    """The asynchronous save was cancelled before it started (raised by its
    handle's ``result()`` and ``exception()``)."""


if sys.version_info >= (3, 11):  # concurrent.futures.TimeoutError is TimeoutError

    class DeadlineExceededError(FastCkptError, TimeoutError):
        """A wait with a timeout ended before the operation finished (an
        asynchronous save's ``result(timeout)``)."""
else:

    class DeadlineExceededError(FastCkptError, _futures.TimeoutError, TimeoutError):
        """A wait with a timeout ended before the operation finished (an
        asynchronous save's ``result(timeout)``)."""


class CudaError(FastCkptError, RuntimeError):
    """A CUDA driver call failed on a working GPU: an illegal address, out of
    memory, an invalid value...

    ``code`` is the driver's ``CUresult`` and ``error_name`` its name (e.g.
    ``"CUDA_ERROR_ILLEGAL_ADDRESS"``). Not a reason to fall back to the host:
    many CUDA errors leave the context unusable.
    """

    def __init__(self, message: str, code: Optional[int] = None, error_name: Optional[str] = None) -> None:
        super().__init__(message, code, error_name)
        self.code = code
        self.error_name = error_name

    def __str__(self) -> str:
        return str(self.args[0])


class CudaUnavailableError(CudaError):
    """No usable CUDA driver or device: the library is missing, ``cuInit``
    failed, no device is visible, or ``FASTCKPT_DEVICE=off`` forbids it."""

    def __init__(self, message: str, code: Optional[int] = None, error_name: Optional[str] = None) -> None:
        super().__init__(message, code, error_name)


class MissingDependencyError(FastCkptError, ModuleNotFoundError):
    """An optional package the call needs is not installed (``name`` is the
    module, e.g. ``"torch"`` for ``array_type="torch"``)."""

    def __init__(self, message: str, name: Optional[str] = None) -> None:
        super().__init__(message, name=name)

    def __reduce__(self) -> Any:
        return (type(self), (self.msg, self.name))


class DistributedError(FastCkptError, RuntimeError):
    """A multi-rank operation failed on one or more ranks: every rank raises
    it, with ``failures`` mapping each rank that failed to its error
    (``"CheckpointIOError: ..."``), or to why it could not be heard from."""

    def __init__(self, message: str, failures: Optional[Dict[int, str]] = None) -> None:
        super().__init__(message)
        self.failures: Dict[int, str] = dict(failures or {})

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.failures))


class DistributedSaveError(DistributedError):
    """A multi-rank save failed (see :class:`DistributedError`). No checkpoint
    became visible, and every rank's temporary files are gone."""


class DistributedLoadError(DistributedError):
    """A multi-rank load failed on some rank (see :class:`DistributedError`);
    every rank raises it, so that no rank trains on a partial restore."""


class InternalError(FastCkptError, RuntimeError):
    """A bug in fastckpt; please report it with the message."""
