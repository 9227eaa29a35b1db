"""A Saver's list of its checkpoints and the state file they share.

:class:`CheckpointHistory` holds TensorFlow's retention rules: the last
``max_to_keep`` checkpoints are kept, the oldest is deleted when a new one
commits, and one per ``keep_checkpoint_every_n_hours`` is kept forever. It
also remembers every prefix the saver has managed, so that the state file's
entries of *other* savers (other prefixes, other processes) are carried over
and its own evicted ones never are. Not thread-safe: the Saver commits one
checkpoint at a time.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from typing import Any, Iterable, List, Optional, Sequence, Set, Tuple

from . import checkpoint_management as cm
from ._progress import logger

__all__ = ["CheckpointHistory", "locked_directory", "other_savers_entries"]

# SaverDef.CheckpointFormatVersion.V2
_V2 = 2

_STEP_SUFFIX = re.compile(r"-\d+$")


class CheckpointHistory:
    """The checkpoints one Saver manages, oldest first, with their times."""

    def __init__(self, max_to_keep: Optional[int], keep_checkpoint_every_n_hours: float) -> None:
        self.max_to_keep = max_to_keep
        self.keep_hours = keep_checkpoint_every_n_hours
        self.last: List[Tuple[str, float]] = []
        # Every prefix this saver has managed: its entries in the state file
        # are this saver's to keep or drop (never carried over as another
        # saver's, even while an evicted one still awaits deletion).
        self.managed: Set[str] = set()
        self._to_be_deleted: List[Tuple[str, float]] = []
        self._next_keep_time = 0.0

    def start_clock(self, max_to_keep: Optional[int], keep_hours: float) -> None:
        """Applies the built SaverDef's settings; the keep-every-N-hours clock
        starts now (as TensorFlow's starts when its Saver is built)."""
        self.max_to_keep, self.keep_hours = max_to_keep, keep_hours
        self._next_keep_time = time.time() + keep_hours * 3600

    def paths(self) -> List[str]:
        return [p for p, _ in self.last]

    def set(self, checkpoints_with_time: Sequence[Tuple[str, float]]) -> None:
        self.last = list(checkpoints_with_time)
        self.managed.update(p for p, _ in self.last)

    def snapshot(self) -> Any:
        """The state to put back with :meth:`rollback` if a commit fails."""
        return list(self.last), list(self._to_be_deleted), set(self.managed)

    def rollback(self, snapshot: Any) -> None:
        self.last, self._to_be_deleted, self.managed = snapshot

    def record(self, path: str) -> None:
        """Adds a newly committed checkpoint (moved to the end if listed); the
        oldest beyond ``max_to_keep`` becomes due for deletion."""
        if not self.max_to_keep:
            return
        self.managed.add(path)
        self.last = [p for p in self.last if p[0] != path]
        self.last.append((path, time.time()))
        if len(self.last) > self.max_to_keep:
            self._to_be_deleted.append(self.last.pop(0))

    def delete_due(self, meta_graph_suffix: str) -> None:
        """Deletes the oldest checkpoint due for deletion, unless it is the one
        kept for its keep-every-N-hours period. Errors are warnings, as
        TensorFlow ignores them."""
        if not self._to_be_deleted:
            return
        path, stamp = self._to_be_deleted.pop(0)
        if stamp > self._next_keep_time:
            self._next_keep_time += self.keep_hours * 3600
            return
        try:
            cm.remove_checkpoint(path, _V2, meta_graph_suffix)
            logger.debug("removed old checkpoint %s (max_to_keep)", path)
        except Exception as e:  # noqa: BLE001 - deletion errors are ignored, as in TF
            warnings.warn(f"fastckpt: could not delete old checkpoint {path}: {e}", RuntimeWarning, stacklevel=3)


class locked_directory:
    """An exclusive flock() on a directory for the duration of a with-block.

    Savers in several processes update one state file; the lock serializes
    their read-modify-write. Where directories cannot be locked, it is a no-op.
    """

    def __init__(self, path: str) -> None:
        self._path = path or "."
        self._fd: Optional[int] = None

    def __enter__(self) -> "locked_directory":
        import fcntl

        try:
            self._fd = os.open(self._path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock


def other_savers_entries(save_dir: str, latest_filename: str, save_path: str, own: Iterable[str]) -> List[str]:
    """Entries of the state file written by savers of *other* prefixes (another
    process saving into the same directory) whose checkpoints still exist.

    TensorFlow's Saver rewrites the state file from its own list only, so two
    savers sharing a directory drop each other's entries; fastckpt keeps them.
    Entries of this saver's own prefix (``save_path`` with or without a step)
    and every prefix it has managed (`own`, including those it has evicted)
    are this saver's to manage and are not carried over.
    """
    try:
        state = cm.get_checkpoint_state(save_dir or ".", latest_filename)
    except Exception:  # noqa: BLE001 - an unreadable state file is simply replaced
        return []
    if state is None:
        return []
    mine = os.path.abspath(save_path)
    own_abs = {os.path.abspath(p) for p in own}
    out = []
    for path in state.all_model_checkpoint_paths:
        full = os.path.abspath(path)
        if full in own_abs or full == mine or _STEP_SUFFIX.sub("", full) == mine:
            continue
        if cm.checkpoint_exists_internal(path):
            out.append(path)
    return out
