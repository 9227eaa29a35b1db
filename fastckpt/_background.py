"""Asynchronous saves: the handle returned by ``save(..., blocking=False)``
and the one background thread that finishes saves in the order they were
started.

A save's snapshot is taken on the caller's thread (native code, GIL
released); its write, commit and any follow-up (the Saver's ``.meta``, state
file and retention) run here, one save after another, so that a second save
queues behind the first and state files name checkpoints in call order.

At interpreter exit, pending saves are waited for (an ``atexit`` hook); a
save that failed in the background and whose result nobody asked for is
reported on stderr, as is an exit that was interrupted before every save
finished (whose checkpoint was then never committed: no partial checkpoint
is ever visible).
"""
from __future__ import annotations

import atexit
import collections
import sys
import threading
import time
from typing import Any, Callable, Deque, Generic, Optional, Tuple, TypeVar

__all__ = ["AsyncSave", "submit", "wait_for_pending_saves", "pending_saves"]

T = TypeVar("T")


class AsyncSave(Generic[T]):
    """A save running in the background.

    ``wait(timeout)`` blocks until it has finished (True) or the timeout passed
    (False); ``done()`` says whether it has finished; ``result(timeout)``
    returns what the blocking call would have returned, or raises the
    exception the background write raised. ``snapshot_seconds`` is how long
    the call that started the save blocked.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.snapshot_seconds: float = 0.0
        self._event = threading.Event()
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._observed = False  # an error was handed to someone (result() or the caller)

    def done(self) -> bool:
        """True once the save has committed or failed."""
        return self._event.is_set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the save has finished or `timeout` seconds passed.
        Returns whether it has finished. Never raises the save's error."""
        return self._event.wait(timeout)

    def result(self, timeout: Optional[float] = None) -> T:
        """The save's result, once finished.

        Raises:
            TimeoutError: not finished within `timeout` seconds.
            Exception: whatever the background save raised (CheckpointIOError,
                DataLossError...), re-raised here.
        """
        if not self._event.wait(timeout):
            raise TimeoutError(f"the save of '{self.prefix}' did not finish within {timeout} s")
        if self._error is not None:
            self._observed = True
            raise self._error
        return self._value

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The save's exception, or None if it succeeded (waits like result())."""
        if not self._event.wait(timeout):
            raise TimeoutError(f"the save of '{self.prefix}' did not finish within {timeout} s")
        self._observed = True
        return self._error

    def _finish(self, value: Any, error: Optional[BaseException]) -> None:
        self._value, self._error = value, error
        self._event.set()

    def __repr__(self) -> str:
        state = "pending" if not self.done() else ("failed" if self._error else "done")
        return f"<fastckpt.AsyncSave '{self.prefix}' {state}>"


_lock = threading.Lock()
_queue: Deque[Tuple[AsyncSave, Callable[[], Any]]] = collections.deque()
_wakeup = threading.Condition(_lock)
_worker: Optional[threading.Thread] = None
_pending: "list[AsyncSave]" = []  # submitted and not finished; guarded by _lock
_failed: "list[AsyncSave]" = []   # finished with an error; guarded by _lock


def _run() -> None:
    while True:
        with _lock:
            while not _queue:
                _wakeup.wait()
            handle, fn = _queue.popleft()
        try:
            value, error = fn(), None
        except BaseException as e:  # handed to the caller through the handle
            value, error = None, e
        handle._finish(value, error)
        with _lock:
            _pending.remove(handle)
            if error is not None:
                _failed.append(handle)
            _wakeup.notify_all()


def submit(handle: AsyncSave, fn: Callable[[], Any]) -> None:
    """Queues `fn` (which finishes the save of `handle`) behind earlier saves."""
    global _worker
    with _lock:
        if _worker is None or not _worker.is_alive():
            # A daemon thread, so that a hung device or disk cannot keep the
            # process alive forever; the atexit hook waits for the queue.
            _worker = threading.Thread(target=_run, name="fastckpt-background-save", daemon=True)
            _worker.start()
        _pending.append(handle)
        _queue.append((handle, fn))
        _wakeup.notify_all()


def pending_saves() -> "list[AsyncSave]":
    """Saves started with ``blocking=False`` that have not finished yet."""
    with _lock:
        return list(_pending)


def wait_for_pending_saves(timeout: Optional[float] = None) -> bool:
    """Blocks until every asynchronous save has finished (committed or failed).
    Returns False if `timeout` seconds passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with _lock:
        while _pending:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            _wakeup.wait(left)
    return True


def _drain_at_exit() -> None:
    pending = pending_saves()
    if pending:
        try:
            wait_for_pending_saves()
        except BaseException:  # e.g. a second Ctrl-C while waiting
            left = [h.prefix for h in pending_saves()]
            print(f"fastckpt: exiting before {len(left)} background save(s) finished; "
                  f"not committed: {', '.join(left)}", file=sys.stderr)
            return
    with _lock:
        failed = list(_failed)
    for h in failed:
        if not h._observed:
            print(f"fastckpt: background save of '{h.prefix}' failed: "
                  f"{type(h._error).__name__}: {h._error}", file=sys.stderr)


atexit.register(_drain_at_exit)
