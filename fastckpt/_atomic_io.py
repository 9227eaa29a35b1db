"""Atomic replacement of small files (the ``checkpoint`` state file, ``.meta``).

The bytes go to a temporary file ``<path>.tempstate-fastckpt-<16 hex>`` that
the writer holds an exclusive ``flock`` on, are fsynced when ``durable``, and
the temporary file is renamed over ``path``, then the directory is fsynced:
readers see the old file or the new one, never a partial one, and with
``durable`` the new one survives a power loss once this returns. It is the
native core's mechanism for every file fastckpt writes (data shards and
index included), so a temporary file that a killed process leaves behind is
removed by the next save into the directory, while a live writer's (locked)
never is. Every OS error becomes a ``CheckpointIOError`` naming ``path``.
"""

from __future__ import annotations

import os
from typing import Optional

from . import _native
from .errors import from_os_error

__all__ = ["atomic_write", "io_error"]


def io_error(e: OSError, what: str, filename: Optional[str] = None) -> OSError:
    """The CheckpointIOError subclass for `e`'s errno (as the native core
    raises), with a message that starts with `what` and `filename` (default:
    `e`'s) as the file it is about."""
    return from_os_error(e, what, filename)


def atomic_write(path: str, data: bytes, *, durable: bool, what: str) -> None:
    """Replaces the file `path` with `data` atomically; `what` names it in errors
    (e.g. "checkpoint state file").

    The work (write, fsync, rename, directory fsync) runs in the native core
    without the GIL.

    Raises:
      CheckpointIOError: the subclass for the OS error (``errno``; ``strerror``
        the OS text; ``filename`` is `path`, never the temporary name, or the
        directory when its fsync failed). If it is raised before the rename,
        `path` is untouched and no temporary file is left.
    """
    _native.write_file_atomically(os.fsencode(path), bytes(data), bool(durable), what)
