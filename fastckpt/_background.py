"""Asynchronous saves: the handle returned by ``save(..., blocking=False)``
and the one background thread that finishes saves in the order they were
started.

A save's snapshot is taken on the caller's thread (native code, GIL
released); its write, commit and any follow-up (the Saver's ``.meta``, state
file and retention) run here, one save after another, so that a second save
queues behind the first and state files name checkpoints in call order.

The handle is a :class:`concurrent.futures.Future`. A save still queued
behind another can be cancelled: nothing of it is written and its temporary
files are removed. Once the background thread has started it, ``cancel()``
returns False.

Nothing here keeps a finished save's memory alive: the closure that finishes
a save (and the native job, its buffers and open temporary files that it
holds) is dropped as soon as it has run or been cancelled, and a failure is
stored without its traceback (whose frames would keep the caller's arrays and
the job alive). For the report at exit only text is kept.

At interpreter exit, pending saves are waited for (an ``atexit`` hook); a
save that failed in the background and whose result nobody asked for is
reported on stderr, as is an exit that was interrupted before every save
finished (whose checkpoint was then never committed: no partial checkpoint
is ever visible).
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import os
import sys
import threading
import time
from typing import Any, Callable, Deque, List, Optional, TypeVar

from .errors import CancelledError, DeadlineExceededError, FailedPreconditionError, InvalidArgumentError

__all__ = ["AsyncSave", "submit", "ready", "mark_observed", "wait_for_pending_saves", "pending_saves"]

T = TypeVar("T")


class _FailureReport:
    """What is kept of a failed save for the report at exit: text only."""

    __slots__ = ("prefix", "text", "observed")

    def __init__(self, prefix: str, text: str, observed: bool) -> None:
        self.prefix = prefix
        self.text = text
        self.observed = observed  # the error was handed to someone


class AsyncSave(concurrent.futures.Future[T]):
    """A save running in the background: a :class:`concurrent.futures.Future`.

    ``result(timeout)`` returns what the blocking call would have returned, or
    raises the exception the background write raised; ``exception(timeout)``,
    ``done()``, ``running()``, ``add_done_callback``,
    ``concurrent.futures.wait`` and ``as_completed`` work as for any future.
    ``wait(timeout)`` blocks until the save has finished (True) or the timeout
    passed (False). ``snapshot_seconds`` is how long the call that started the
    save blocked; ``prefix`` is the checkpoint it writes.

    ``cancel()`` cancels a save still queued behind another one: nothing of it
    is written, its temporary files are removed, and ``result()`` raises
    :class:`~fastckpt.CancelledError`. A save the background thread has
    started cannot be cancelled (``cancel()`` returns False).

    Done callbacks run on the background thread before the save counts as
    finished for :func:`wait_for_pending_saves` (or at once, on the calling
    thread, if the save has already finished; on the cancelling thread for a
    cancelled save). Saves run one at a time on that thread, so a callback
    cannot wait for another save: such a wait raises FailedPreconditionError.
    """

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.snapshot_seconds: float = 0.0
        self._fn: Optional[Callable[[], Any]] = None  # finishes the save; dropped once run
        self._on_cancel: Optional[Callable[[], None]] = None  # drops the queued save; ditto
        self._cancellable = False  # set once the snapshot is taken (see ready())
        self._cancelling = False
        self._defer_callbacks = False
        self._observed = False  # the error was handed to the caller at the call itself
        self._report: Optional[_FailureReport] = None

    # -- waiting ------------------------------------------------------------
    def wait(self, timeout: Optional[float] = None) -> bool:
        """Blocks until the save has finished (or was cancelled) or `timeout`
        seconds passed. Returns whether it has finished. Never raises the
        save's error.

        Raises:
            FailedPreconditionError: called in a done callback, on the
                background thread, for a save that has not finished.
        """
        check_timeout(timeout)
        if (timeout is None or timeout > 0) and not self.done() and threading.current_thread() is _worker:
            raise FailedPreconditionError(
                f"cannot wait for the save of '{self.prefix}' on the background thread (in a done "
                "callback): saves run one at a time on that thread, so it would never finish"
            )
        done, _ = concurrent.futures.wait([self], timeout)
        return bool(done)

    def result(self, timeout: Optional[float] = None) -> T:
        """The save's result, once finished.

        Args:
            timeout: seconds to wait at most; None waits as long as it takes.

        Returns:
            What the blocking call returns (a :class:`~fastckpt.SaveResult` for
            ``fastckpt.save``, the checkpoint prefix for ``Saver.save``).

        Raises:
            DeadlineExceededError: not finished within `timeout` seconds (a
                ``TimeoutError`` and ``concurrent.futures.TimeoutError``).
            CancelledError: the save was cancelled (a
                ``concurrent.futures.CancelledError``).
            Exception: whatever the background save raised (CheckpointIOError,
                DataLossError...), re-raised here.
        """
        error = self.exception(timeout)
        if error is not None:
            # A fresh traceback each time: one raise's frames never pile onto
            # the next, and the stored error holds none once handled.
            raise error.with_traceback(None)
        return super().result(0)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        """The save's exception, or None if it succeeded (waits like
        :meth:`result`, and raises DeadlineExceededError and CancelledError as
        it does). The exception carries no traceback."""
        if not self.wait(timeout):
            raise DeadlineExceededError(f"the save of '{self.prefix}' did not finish within {timeout} s")
        if self.cancelled():
            raise CancelledError(
                f"the save of '{self.prefix}' was cancelled before it started; nothing of it was written"
            )
        error = super().exception(0)
        if error is not None:
            mark_observed(self)
        return error

    # -- cancelling ---------------------------------------------------------
    def cancel(self) -> bool:
        """Cancels the save if it is still queued behind another one.

        Returns:
            True if the save is cancelled (nothing of it was written, its
            temporary files are removed); False if the background thread has
            started it or it has finished.
        """
        with _lock:
            if self._cancelling:
                return True
            if not self._cancellable or self not in _queue:
                return self.cancelled()
            self._cancelling = True
            on_cancel = _dequeue(self)
        try:
            if on_cancel is not None:
                on_cancel()
        finally:
            del on_cancel
            # The callbacks run last, once the save is off the pending list: a
            # callback may then call wait_for_pending_saves() on this thread.
            self._defer_callbacks = True
            super().cancel()  # wakes result() and wait()
            self.set_running_or_notify_cancel()  # and concurrent.futures.wait / as_completed
            _retire(self)
            self._defer_callbacks = False
            super()._invoke_callbacks()  # type: ignore[misc]
        return True

    # -- internals ----------------------------------------------------------
    def _invoke_callbacks(self) -> None:
        # Deferred by cancel() until the save is off the pending list.
        if not self._defer_callbacks:
            super()._invoke_callbacks()  # type: ignore[misc]

    def __repr__(self) -> str:
        if self.cancelled():
            state = "cancelled"
        elif self.running():
            state = "running"
        elif not self.done():
            state = "pending"
        else:
            state = "failed" if super().exception(0) is not None else "done"
        return f"<fastckpt.AsyncSave '{self.prefix}' {state}>"


_lock = threading.Lock()
_queue: Deque[AsyncSave[Any]] = collections.deque()
_wakeup = threading.Condition(_lock)
_worker: Optional[threading.Thread] = None
_pending: List[AsyncSave[Any]] = []  # submitted and not finished; guarded by _lock
_failed: List[_FailureReport] = []  # failures nobody has seen yet; guarded by _lock


def _strip_tracebacks(error: BaseException) -> BaseException:
    """Drops the traceback of `error` and of every exception chained to it:
    their frames would keep the caller's arrays and the native job alive."""
    seen = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        e.__traceback__ = None
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return error


def mark_observed(handle: AsyncSave[Any]) -> None:
    """Records that `handle`'s error reached someone: it is not reported at exit."""
    with _lock:
        handle._observed = True
        if handle._report is not None:
            handle._report.observed = True


def _retire(handle: AsyncSave[Any]) -> None:
    """Takes a finished or cancelled save off the pending list."""
    with _lock:
        _pending.remove(handle)
        _wakeup.notify_all()


def _run() -> None:
    while True:
        with _lock:
            while not _queue:
                _wakeup.wait()
            handle = _queue.popleft()
            fn, handle._fn, handle._on_cancel = handle._fn, None, None
        handle.set_running_or_notify_cancel()  # cancel() only takes saves still in the queue
        value: Any = None
        error: Optional[BaseException] = None
        try:
            assert fn is not None
            value = fn()
        except BaseException as e:  # handed to the caller through the handle
            error = _strip_tracebacks(e)
        del fn  # the closure and the native job it holds go now, success or failure
        # Done callbacks run here, before the save leaves the pending list:
        # wait_for_pending_saves() (and interpreter exit) waits for them too.
        if error is None:
            handle.set_result(value)
        else:
            text = f"{type(error).__name__}: {error}"
            with _lock:
                handle._report = _FailureReport(handle.prefix, text, handle._observed)
                _failed[:] = [r for r in _failed if not r.observed]
                _failed.append(handle._report)
            handle.set_exception(error)
        del value, error
        _retire(handle)
        del handle


def submit(
    handle: AsyncSave[T],
    fn: Callable[[], T],
    *,
    on_cancel: Optional[Callable[[], None]] = None,
    cancellable: bool = True,
) -> None:
    """Queues `fn` (which finishes the save of `handle`) behind earlier saves.

    `on_cancel` is called instead of `fn` if the save is cancelled while it
    waits in the queue (it must release what `fn` would have). With
    ``cancellable=False`` the save cannot be cancelled until :func:`ready`.
    """
    global _worker
    with _lock:
        if _worker is None or not _worker.is_alive():
            # A daemon thread, so that a hung device or disk cannot keep the
            # process alive forever; the atexit hook waits for the queue.
            _worker = threading.Thread(target=_run, name="fastckpt-background-save", daemon=True)
            _worker.start()
        handle._fn = fn
        handle._on_cancel = on_cancel
        handle._cancellable = cancellable
        _pending.append(handle)
        _queue.append(handle)
        _wakeup.notify_all()


def _dequeue(handle: AsyncSave[Any]) -> Optional[Callable[[], None]]:
    """Takes `handle` out of the queue (REQUIRES: _lock held, handle queued)
    and returns what releases its save instead of finishing it (its
    `on_cancel`); the finishing closure is dropped."""
    _queue.remove(handle)
    on_cancel, handle._on_cancel, handle._fn = handle._on_cancel, None, None
    return on_cancel


def withdraw(handle: AsyncSave[Any], error: BaseException) -> None:
    """The snapshot of `handle` failed on the caller's thread, which raises
    `error`: if the save still waits in the queue, it is taken out and its
    `on_cancel` runs here and now (its temporary files and buffers go at
    once, not when the background thread reaches it); otherwise the
    background thread is already finishing it and reports the failure."""
    mark_observed(handle)  # raised to the caller
    with _lock:
        if handle not in _queue:
            return
        on_cancel = _dequeue(handle)
    try:
        if on_cancel is not None:
            on_cancel()
    finally:
        del on_cancel
        handle.set_running_or_notify_cancel()
        handle.set_exception(_strip_tracebacks(error))
        _retire(handle)


def ready(handle: AsyncSave[Any]) -> None:
    """Marks `handle`'s snapshot as taken: from now on a queued save may be cancelled."""
    with _lock:
        handle._cancellable = True


def pending_saves() -> List[AsyncSave[Any]]:
    """Saves started with ``blocking=False`` that have not finished yet."""
    with _lock:
        return list(_pending)


def check_timeout(timeout: Optional[float]) -> None:
    """Raises InvalidArgumentError unless `timeout` is None or a number of seconds >= 0."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0):
        raise InvalidArgumentError(f"timeout must be None or a number of seconds >= 0, not {timeout!r}")


def wait_for_pending_saves(timeout: Optional[float] = None) -> bool:
    """Blocks until every asynchronous save has finished (committed, failed
    or cancelled).

    Args:
        timeout: seconds to wait at most; None waits as long as it takes.

    Returns:
        False if `timeout` seconds passed first, else True.

    Raises:
        FailedPreconditionError: called on the background thread (in a done
            callback) while saves are pending: they could never finish.
    """
    check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    if threading.current_thread() is _worker and pending_saves():
        raise FailedPreconditionError(
            "cannot wait for pending saves on the background thread (in a done callback): saves "
            "run one at a time on that thread, so they would never finish"
        )
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
            print(
                f"fastckpt: exiting before {len(left)} background save(s) finished; not committed: {', '.join(left)}",
                file=sys.stderr,
            )
            return
    with _lock:
        failed = list(_failed)
    for report in failed:
        if not report.observed:
            print(f"fastckpt: background save of '{report.prefix}' failed: {report.text}", file=sys.stderr)


atexit.register(_drain_at_exit)


# fork(): the child has no background thread, and must not inherit a lock
# that the parent's thread held, nor the parent's queue (those saves are the
# parent's to finish: the child would wait for them forever at exit). The lock
# is held across the fork so that the module's state is copied consistent.
def _before_fork() -> None:
    _lock.acquire()


def _after_fork_in_parent() -> None:
    _lock.release()


def _after_fork_in_child() -> None:
    global _lock, _wakeup, _queue, _worker, _pending, _failed
    _lock = threading.Lock()
    _wakeup = threading.Condition(_lock)
    _queue = collections.deque()
    _worker = None
    _pending = []
    _failed = []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
