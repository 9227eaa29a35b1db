"""The collectives a multi-rank save or load needs, over the engine the job
already runs: torch.distributed, MPI (mpi4py), or a world of one.

fastckpt never runs its collectives on the caller's own group: for torch it
derives a gloo group from the caller's (once per group, cached), so that its
object collectives never interleave with the training job's NCCL
collectives and can run from a background thread (asynchronous saves); for
MPI it duplicates the communicator. Every collective is bounded in time: a
dead peer is reported as soon as the engine notices (gloo reports a closed
connection within seconds), and a peer that does not answer within the
timeout is reported then. Either way the call raises
:class:`CollectiveError`, never hangs.

Thread-safety: a Communicator is used by one thread at a time (the caller's,
or the background save thread; saves run one after another).
"""

from __future__ import annotations

import atexit
import datetime
import pickle
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from ..errors import FastCkptError, InvalidArgumentError, MissingDependencyError

__all__ = ["Communicator", "CollectiveError", "communicator", "DEFAULT_TIMEOUT"]

#: Seconds a collective waits for the slowest peer before the save or load fails.
DEFAULT_TIMEOUT = 600.0


class CollectiveError(FastCkptError, RuntimeError):
    """A collective of a multi-rank save or load failed: a peer died or did
    not answer in time. ``ranks`` lists the peers at fault when the engine
    says (else it is empty)."""

    def __init__(self, message: str, ranks: Optional[List[int]] = None) -> None:
        super().__init__(message)
        self.ranks = list(ranks or [])

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.ranks))


class Communicator:
    """The collectives fastckpt uses. ``rank``/``size`` are this process's
    place in the group; ``collectives`` counts the collectives run (the
    per-save count is reported in results)."""

    rank: int = 0
    size: int = 1
    engine: str = "single"

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.collectives = 0

    def allgather(self, obj: Any) -> List[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        self._count()
        return self._allgather(obj)

    def gather(self, obj: Any, root: int = 0) -> Optional[List[Any]]:
        """Every rank's `obj` on `root` (in rank order); None elsewhere."""
        self._count()
        return self._gather(obj, root)

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        """`root`'s `obj`, on every rank."""
        self._count()
        return self._broadcast(obj, root)

    def _count(self) -> None:
        if self.size > 1:  # a world of one exchanges nothing
            self.collectives += 1

    # Implemented by each engine.
    def _allgather(self, obj: Any) -> List[Any]:
        return [obj]

    def _gather(self, obj: Any, root: int) -> Optional[List[Any]]:
        return [obj]

    def _broadcast(self, obj: Any, root: int) -> Any:
        return obj


class _TorchCommunicator(Communicator):
    engine = "torch"

    def __init__(self, group: Any, timeout: float) -> None:
        super().__init__(timeout)
        import torch.distributed as dist

        self._dist = dist
        self._group = _gloo_group(group, timeout)
        self.rank = dist.get_rank(self._group)
        self.size = dist.get_world_size(self._group)

    def _run(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except FastCkptError:
            raise
        except Exception as e:  # noqa: BLE001 - gloo reports dead peers and timeouts as RuntimeError
            raise CollectiveError(
                f"rank {self.rank}: the {what} among {self.size} ranks failed: a peer died or did not "
                f"answer within {self.timeout:g} s ({type(e).__name__}: {_first_line(e)})"
            ) from None

    def _allgather(self, obj: Any) -> List[Any]:
        out: List[Any] = [None] * self.size
        self._run("allgather", lambda: self._dist.all_gather_object(out, obj, group=self._group))
        return out

    def _gather(self, obj: Any, root: int) -> Optional[List[Any]]:
        out: Optional[List[Any]] = [None] * self.size if self.rank == root else None
        self._run("gather", lambda: self._dist.gather_object(obj, out, group=self._group, group_dst=root))
        return out

    def _broadcast(self, obj: Any, root: int) -> Any:
        box = [obj]
        self._run("broadcast", lambda: self._dist.broadcast_object_list(box, group=self._group, group_src=root))
        return box[0]


# One gloo group per caller group, created on first use by every member
# (new_group with use_local_synchronization: only the members take part).
# Keyed by the members and by the default group they belong to, so that a job
# that destroys its process groups and initialises new ones gets new gloo
# groups, never a destroyed one.
_groups: Dict[Tuple[Any, ...], Any] = {}
_groups_lock = threading.Lock()


def _gloo_group(group: Any, timeout: float) -> Any:
    import torch.distributed as dist

    ranks = tuple(dist.get_process_group_ranks(group if group is not None else dist.group.WORLD))
    key = (id(dist.group.WORLD), ranks)
    with _groups_lock:
        g = _groups.get(key)
        if g is not None and not _alive(dist, g):
            del _groups[key]
            g = None
        if g is None:
            g = dist.new_group(
                ranks=list(ranks),
                backend="gloo",
                timeout=datetime.timedelta(seconds=timeout),
                use_local_synchronization=True,
            )
            _groups[key] = g
        return g


def _alive(dist: Any, g: Any) -> bool:
    """Whether torch.distributed still knows group `g` (destroy_process_group
    forgets every group it destroys)."""
    world = getattr(getattr(dist, "distributed_c10d", None), "_world", None)
    pg_map = getattr(world, "pg_map", None)
    return pg_map is None or g in pg_map


@atexit.register
def _forget_groups() -> None:
    # Our references must not be the last ones to gloo groups at interpreter
    # teardown, when their destructors can no longer run cleanly.
    with _groups_lock:
        _groups.clear()


class _MpiCommunicator(Communicator):
    """Object collectives over point-to-point messages of a duplicated
    communicator, polled against a deadline: MPI's own collectives cannot be
    bounded in time."""

    engine = "mpi"
    _TAG = 0x6663  # "fc"

    def __init__(self, comm: Any, timeout: float) -> None:
        super().__init__(timeout)
        self._comm = _mpi_dup(comm)
        self.rank = self._comm.Get_rank()
        self.size = self._comm.Get_size()

    def _send_all(self, obj: Any, dests: List[int], what: str) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        requests = [self._comm.Isend(data, dest=d, tag=self._TAG) for d in dests]
        self._wait(lambda: all(r.Test() for r in requests), what, dests)

    def _recv_from(self, source: int, what: str) -> Any:
        from mpi4py import MPI

        status = MPI.Status()
        self._wait(lambda: self._comm.Iprobe(source=source, tag=self._TAG, status=status), what, [source])
        buf = bytearray(status.Get_count(MPI.BYTE))
        self._comm.Recv(buf, source=source, tag=self._TAG)
        return pickle.loads(buf)

    def _wait(self, done: Any, what: str, peers: List[int]) -> None:
        deadline = time.monotonic() + self.timeout
        pause = 1e-5
        while not done():
            if time.monotonic() > deadline:
                raise CollectiveError(
                    f"rank {self.rank}: the {what} among {self.size} ranks failed: rank(s) "
                    f"{', '.join(map(str, peers))} did not answer within {self.timeout:g} s",
                    peers,
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.01)

    def _gather(self, obj: Any, root: int) -> Optional[List[Any]]:
        if self.rank != root:
            self._send_all(obj, [root], "gather")
            return None
        out = [None] * self.size
        out[root] = obj
        for r in range(self.size):
            if r != root:
                out[r] = self._recv_from(r, "gather")
        return out

    def _broadcast(self, obj: Any, root: int) -> Any:
        if self.rank == root:
            self._send_all(obj, [r for r in range(self.size) if r != root], "broadcast")
            return obj
        return self._recv_from(root, "broadcast")

    def _allgather(self, obj: Any) -> List[Any]:
        gathered = self._gather(obj, 0)
        return self._broadcast(gathered, 0)


_dups: Dict[int, Any] = {}


def _mpi_dup(comm: Any) -> Any:
    key = id(comm)
    d = _dups.get(key)
    if d is None:
        d = _dups[key] = comm.Dup()
    return d


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def communicator(group: Any = None, *, timeout: float = DEFAULT_TIMEOUT) -> Communicator:
    """The Communicator for `group`: a torch.distributed ProcessGroup, an
    mpi4py communicator, or None (torch.distributed's default group when it
    is initialised; else ``MPI.COMM_WORLD`` when mpi4py has been imported;
    else a world of one).

    Raises:
        InvalidArgumentError: `group` is of another kind, or `timeout` is not
            a positive number.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise InvalidArgumentError(f"timeout must be a positive number of seconds, not {timeout!r}")
    module = type(group).__module__ or ""
    if group is None:
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            return _TorchCommunicator(None, timeout)
        mpi = sys.modules.get("mpi4py.MPI")
        if mpi is not None:
            return _MpiCommunicator(mpi.COMM_WORLD, timeout)
        return Communicator(timeout)
    if module.startswith("torch"):
        return _TorchCommunicator(group, timeout)
    if module.startswith("mpi4py"):
        try:
            import mpi4py.MPI  # noqa: F401  (the caller handed us one of its communicators)
        except ImportError as e:  # pragma: no cover - the object came from it
            raise MissingDependencyError(f"an MPI communicator needs mpi4py: {e}", name="mpi4py") from None
        return _MpiCommunicator(group, timeout)
    raise InvalidArgumentError(
        f"group must be a torch.distributed ProcessGroup, an mpi4py communicator or None, not {type(group).__name__}"
    )
