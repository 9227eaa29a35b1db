"""Atomic replacement of small files (the ``checkpoint`` state file, ``.meta``).

The bytes go to ``<path>.tmp<uuid4 hex>`` (TensorFlow's temporary naming),
are fsynced when ``durable``, and the temporary file is renamed over
``path``, then the directory is fsynced: readers see the old file or the new
one, never a partial one, and with ``durable`` the new one survives a power
loss once this returns. Every OS error becomes a ``CheckpointIOError`` naming
the file.
"""
from __future__ import annotations

import errno
import os
import uuid
from typing import Optional

from .errors import from_os_error

__all__ = ["atomic_write", "fsync_directory", "io_error"]


def io_error(e: OSError, what: str, filename: Optional[str] = None) -> OSError:
    """The CheckpointIOError subclass for `e`'s errno (as the native core
    raises), with a message that starts with `what` and `filename` (default:
    `e`'s) as the file it is about."""
    return from_os_error(e, what, filename)


def fsync_directory(directory: str) -> None:
    """Makes renames into `directory` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError as e:
        raise io_error(e, f"cannot open directory '{directory}' to sync it") from None
    try:
        os.fsync(fd)
    except OSError as e:
        # Some file systems cannot sync a directory; the rename is still atomic there.
        if e.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise io_error(e, f"cannot sync directory '{directory}'") from None
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, *, durable: bool, what: str) -> None:
    """Replaces the file `path` with `data` atomically; `what` names it in errors
    (e.g. "checkpoint state file")."""
    tmp = path + ".tmp" + uuid.uuid4().hex
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o666)
    except OSError as e:
        raise io_error(e, f"cannot write {what} '{path}'", path) from None
    done = False
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            done = True
        except OSError as e:
            raise io_error(e, f"cannot write {what} '{path}'", path) from None
    finally:
        if not done:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    if durable:
        fsync_directory(os.path.dirname(path) or ".")
