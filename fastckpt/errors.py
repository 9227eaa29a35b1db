"""Exceptions raised by fastckpt.

Every exception derives from :class:`FastCkptError`, and also from the
built-in class a caller would naturally catch (``FileNotFoundError``,
``ValueError``, ``OSError``...), so existing ``except`` clauses keep working.
The native core maps its status codes onto these classes in exactly one
place (``csrc/bindings/errors.cc``).
"""
from __future__ import annotations

__all__ = [
    "FastCkptError",
    "CheckpointNotFoundError",
    "TensorNotFoundError",
    "DataLossError",
    "InvalidArgumentError",
    "UnsupportedDtypeError",
    "CheckpointIOError",
    "UnimplementedError",
    "FailedPreconditionError",
    "CudaUnavailableError",
    "InternalError",
]


class FastCkptError(Exception):
    """Base class of every error fastckpt raises."""


class CheckpointNotFoundError(FastCkptError, FileNotFoundError):
    """A file of the checkpoint (index or data shard) does not exist."""


class TensorNotFoundError(FastCkptError, KeyError):
    """The checkpoint has no tensor of the requested name."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataLossError(FastCkptError):
    """Checkpoint bytes are damaged: CRC mismatch, truncated file, garbled index."""


class InvalidArgumentError(FastCkptError, ValueError):
    """Bad input: an empty or duplicate tensor name, a bad shape, a bad option."""


class UnsupportedDtypeError(FastCkptError, TypeError):
    """A dtype that a TensorFlow checkpoint cannot hold (or fastckpt cannot read)."""


class CheckpointIOError(FastCkptError, OSError):
    """An operating-system error (ENOSPC, EACCES, EIO...); ``errno`` is set."""


class UnimplementedError(FastCkptError, NotImplementedError):
    """Valid input that this version of fastckpt does not support."""


class FailedPreconditionError(FastCkptError, RuntimeError):
    """An operation was called in a state that does not allow it."""


class CudaUnavailableError(FastCkptError, RuntimeError):
    """A CUDA operation was requested but no usable driver or device exists."""


class InternalError(FastCkptError, RuntimeError):
    """A bug in fastckpt; please report it with the message."""
