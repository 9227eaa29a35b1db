"""What every format module shares: the tensor description, the source and
sink protocols, the plan of bounded pieces, scratch space for tensors that
must be whole, atomic files, and optional imports.

**Pieces.** A tensor larger than the piece bound is read and written as
consecutive *pieces*: boxes of the form ``(i0:i0+1, ..., ik:ik+1, a:b, :,
..., :)``, i.e. a range along one dimension after fixed leading indices.
Such a box is contiguous in the tensor's C order, so the pieces, in order,
are the tensor's bytes from first to last: a sink can append them, a source
can serve them from a file offset, a slice read, or an mmap.
"""

from __future__ import annotations

import errno
import fcntl
import importlib
import itertools
import math
import os
import secrets
import tempfile
from typing import Any, Callable, Iterable, Iterator, List, NamedTuple, Optional, Protocol, Tuple

import numpy as np

from .._arrays import raw_bytes
from ..errors import MissingDependencyError, UnsupportedDtypeError, from_os_error

#: Default bound on the bytes of one piece (and one group of whole tensors).
DEFAULT_PIECE_BYTES = 64 << 20

Index = Tuple[slice, ...]


class TensorInfo(NamedTuple):
    """One tensor of a source: its name, numpy dtype (``object`` for string
    tensors) and shape."""

    name: str
    dtype: np.dtype
    shape: Tuple[int, ...]

    @property
    def size(self) -> int:
        """The number of elements."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the values (0 for a string tensor, whose size is unknown until read)."""
        return 0 if self.dtype == object else self.size * self.dtype.itemsize


class Source(Protocol):
    """A checkpoint being read. Not thread-safe: one caller at a time."""

    path: str
    format: str

    def tensors(self) -> List[TensorInfo]:
        """Every tensor, in the order the format stores or lists them."""

    def read(self, info: TensorInfo, index: Optional[Index] = None) -> np.ndarray:
        """Tensor `info` whole (``index`` None), or the piece ``index`` (a box
        from :func:`pieces`), as a C-contiguous array of the box's shape."""

    def close(self) -> None:
        """Releases the files."""


class Sink(Protocol):
    """A checkpoint being written. Created with the full list of tensors it
    will receive (formats with a header or a group plan need it first), then
    given each tensor once, in that order, then committed or aborted. Nothing
    is visible under the destination until :meth:`commit` returns."""

    def add(self, info: TensorInfo, pieces: Iterable[np.ndarray]) -> None:
        """Writes tensor `info` from its pieces (in order; one piece when the
        tensor is read whole)."""

    def commit(self) -> List[str]:
        """Publishes the output atomically; returns the files written."""

    def abort(self) -> None:
        """Removes everything written so far; the destination is untouched."""


def pieces(info: TensorInfo, bound: int) -> List[Optional[Index]]:
    """The pieces in which to read tensor `info` so that none exceeds `bound`
    bytes (one element always makes a piece): ``[None]`` when it is read
    whole (it fits, is a scalar, empty, or a string tensor)."""
    shape, rank = info.shape, len(info.shape)
    if info.dtype == object or rank == 0 or info.nbytes <= bound or info.size == 0:
        return [None]
    itemsize = info.dtype.itemsize
    # The outermost dimension k one index of which (with everything inside
    # it) fits the bound; pieces are ranges along k after fixed indices before it.
    k = 0
    while k < rank - 1 and math.prod(shape[k + 1 :]) * itemsize > bound:
        k += 1
    inner = math.prod(shape[k + 1 :]) * itemsize
    step = max(1, bound // max(inner, 1))
    out: List[Optional[Index]] = []
    whole = (slice(None),) * (rank - k - 1)
    for lead in itertools.product(*(range(n) for n in shape[:k])):
        fixed = tuple(slice(i, i + 1) for i in lead)
        for start in range(0, shape[k], step):
            out.append(fixed + (slice(start, min(start + step, shape[k])),) + whole)
    return out


def box_shape(shape: Tuple[int, ...], index: Optional[Index]) -> Tuple[int, ...]:
    """The shape of piece `index` of a tensor of `shape`."""
    if index is None:
        return tuple(shape)
    return tuple(len(range(*s.indices(n))) for s, n in zip(index, shape))


def flat_start(shape: Tuple[int, ...], index: Optional[Index]) -> int:
    """The C-order element offset of piece `index`'s first element."""
    if index is None or not shape:
        return 0
    starts = [s.indices(n)[0] for s, n in zip(index, shape)]
    offset = 0
    for start, n in zip(starts, shape):
        offset = offset * n + start
    return offset


def require(module: str, extra: str, what: str) -> Any:
    """Imports optional `module` for `what`, or raises MissingDependencyError
    naming the pip extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs the '{module.split('.')[0]}' package: pip install 'fastckpt[{extra}]'",
            name=module.split(".")[0],
        ) from None


def unsupported(info: TensorInfo, fmt: str, why: str) -> UnsupportedDtypeError:
    """The error for a tensor a format cannot hold."""
    what = "a string tensor" if info.dtype == object else f"dtype {info.dtype.name}"
    return UnsupportedDtypeError(
        f"tensor '{info.name}' ({what}, shape {list(info.shape)}) cannot be written to {fmt}: {why}"
    )


# -- scratch space -------------------------------------------------------------------


class Spool:
    """Anonymous scratch space on disk for tensors a sink needs whole but
    that arrive in pieces: an unlinked file in `directory` (it never outlives
    the process, and uses the destination's disk), appended to piece by
    piece and mapped back as arrays. Memory stays bounded: the mapped pages
    are the page cache's, not the process's own.

    Owned by one sink; not thread-safe.
    """

    ALIGN = 64

    def __init__(self, directory: str) -> None:
        try:
            self._file = tempfile.TemporaryFile(dir=directory or ".")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise from_os_error(e, f"cannot create scratch space in '{directory or '.'}'") from None
        self._size = 0
        self._maps: List[np.memmap] = []

    def append(self, pieces: Iterable[np.ndarray]) -> Tuple[int, int]:
        """Writes the pieces one after another; returns (offset, nbytes)."""
        pad = -self._size % self.ALIGN
        offset = self._size + pad
        self._file.seek(offset)
        written = write_pieces(self._file.write, pieces)
        self._size = offset + written
        return offset, written

    def array(self, offset: int, info: TensorInfo) -> np.ndarray:
        """The tensor written at `offset`, mapped (writable: torch wants it)."""
        if info.nbytes == 0:
            return np.zeros(info.shape, info.dtype)
        self._file.flush()
        m = np.memmap(self._file, dtype=info.dtype, mode="r+", offset=offset, shape=info.shape)
        self._maps.append(m)
        return m

    def close(self) -> None:
        self._maps.clear()
        self._file.close()


# -- atomic files -----------------------------------------------------------------

TEMP_MARKER = ".tempstate-fastckpt-"


class AtomicFile:
    """A file written under a temporary name that fastckpt's commit protocol
    recognises (``<final>.tempstate-fastckpt-<16 hex>``), held under an
    exclusive ``flock`` as the native writer holds its own (so a concurrent
    save's cleanup never removes it, and a crashed run's is removed by the
    next save), then fsynced (when durable) and renamed onto `final`."""

    def __init__(self, final: str, *, durable: bool) -> None:
        self.final = final
        self.durable = durable
        self.temp = f"{final}{TEMP_MARKER}{secrets.token_hex(8)}"
        try:
            fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise from_os_error(e, f"cannot create '{final}'", final) from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.file = os.fdopen(fd, "wb", buffering=1 << 20)
        self._done = False
        self.published = False

    def write(self, data: Any) -> None:
        try:
            self.file.write(data)
        except OSError as e:
            raise from_os_error(e, f"cannot write '{self.final}'", self.final) from None

    def finish(self) -> None:
        """Flushes and fsyncs (durable) the temporary file; still unpublished."""
        try:
            self.file.flush()
            if self.durable:
                os.fsync(self.file.fileno())
        except OSError as e:
            raise from_os_error(e, f"cannot write '{self.final}'", self.final) from None

    def publish(self) -> None:
        """Renames the temporary file onto the final name (after :meth:`finish`)."""
        try:
            os.rename(self.temp, self.final)
        except OSError as e:
            raise from_os_error(e, f"cannot rename into '{self.final}'", self.final) from None
        self._done = self.published = True
        self.file.close()  # releases the lock, after the rename

    def discard(self) -> None:
        """Removes the temporary file (no-op once published)."""
        if self._done:
            return
        self._done = True
        try:
            os.unlink(self.temp)
        except FileNotFoundError:
            pass
        finally:
            self.file.close()


def sync_dir(directory: str) -> None:
    """fsyncs a directory so that renames into it survive a power loss."""
    fd = os.open(directory or ".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_parent(path: str) -> None:
    """Creates the parent directories of `path`, as save does."""
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        if os.path.exists(parent):
            raise from_os_error(
                OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR)),
                f"cannot write '{path}': its parent '{parent}' is not a directory",
                parent,
            )
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise from_os_error(e, f"cannot create directory '{parent}'", parent) from None


def iterate(source: Source, info: TensorInfo, bound: int) -> Iterator[np.ndarray]:
    """Tensor `info`'s pieces read from `source`, one at a time."""
    for index in pieces(info, bound):
        yield source.read(info, index)


def write_pieces(write: Callable[[Any], Any], pieces: Iterable[np.ndarray]) -> int:
    """Passes each piece's bytes (C order) to `write` (a file's write); returns
    how many bytes that was in all."""
    written = 0
    for piece in pieces:
        data = raw_bytes(piece)
        write(data.data)
        written += data.nbytes
    return written


def refusal(check: Callable[[TensorInfo], Any], info: TensorInfo) -> Optional[str]:
    """None if ``check(info)`` passes, else the message of the
    UnsupportedDtypeError it raises: a format's can_hold()."""
    try:
        check(info)
    except UnsupportedDtypeError as e:
        return str(e)
    return None
