"""numpy ``.npz`` archives: a zip file of ``NAME.npy`` members.

Read member by member with :mod:`zipfile` and numpy's ``.npy`` header
functions (:mod:`numpy.lib.format`): a piece is a byte range of the member,
so a large array is never read whole. Written the same way: each member's
header, then its bytes piece by piece (``np.savez`` would need every array
in memory at once). Members are stored uncompressed, as ``np.savez`` does.

``.npy`` describes numpy's own dtypes only: bfloat16, float8 and int4 (from
ml_dtypes) and string tensors are refused rather than written as raw void
bytes or pickles.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..errors import (
    CheckpointNotFoundError,
    DataLossError,
    InternalError,
    UnsupportedDtypeError,
    from_os_error,
)
from ._base import AtomicFile, Index, TensorInfo, box_shape, flat_start, make_parent, refusal, unsupported, write_pieces

FORMAT = "npz"
_npy = np.lib.format


def _read_header(f: Any, member: str, path: str) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    try:
        version = _npy.read_magic(f)
        if version == (1, 0):
            return _npy.read_array_header_1_0(f)
        return _npy.read_array_header_2_0(f)
    except ValueError as e:
        raise DataLossError(f"member '{member}' of '{path}' is not a .npy array: {e}") from None


class NpzSource:
    """An ``.npz`` archive; each ``NAME.npy`` member is tensor ``NAME``."""

    format = FORMAT

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._zip = zipfile.ZipFile(path)
        except FileNotFoundError:
            raise CheckpointNotFoundError(
                2, "No such file or directory", path, message=f"npz file '{path}' not found"
            ) from None
        except OSError as e:
            raise from_os_error(e, f"cannot open npz file '{path}'", path) from None
        except zipfile.BadZipFile as e:
            raise DataLossError(f"'{path}' is not an npz archive: {e}") from None
        # name -> (member, data offset, Fortran order, stored dtype)
        self._members: Dict[str, Tuple[str, int, bool, np.dtype]] = {}
        self._infos: List[TensorInfo] = []
        for member in self._zip.namelist():
            if not member.endswith(".npy"):
                continue
            name = member[: -len(".npy")]
            with self._zip.open(member) as f:
                shape, fortran, dtype = _read_header(f, member, path)
                offset = f.tell()
            if dtype.hasobject:
                raise UnsupportedDtypeError(
                    f"tensor '{name}' in '{path}' is a pickled object array, "
                    "which fastckpt does not read (it would run code from the file)"
                )
            self._members[name] = (member, offset, fortran, dtype)
            self._infos.append(TensorInfo(name, dtype.newbyteorder("="), tuple(shape)))
        self._open: Optional[Tuple[str, Any]] = None  # the member being read, kept for sequential pieces

    def tensors(self) -> List[TensorInfo]:
        return list(self._infos)

    def read(self, info: TensorInfo, index: Optional[Index] = None) -> np.ndarray:
        member, offset, fortran, stored = self._members[info.name]
        if fortran:
            # A Fortran-ordered member's C-order pieces are not byte ranges: read it whole.
            with self._zip.open(member) as f:
                whole = _npy.read_array(f)
            value = np.ascontiguousarray(whole if index is None else whole[index])
            return value.astype(info.dtype, copy=False)
        shape = box_shape(info.shape, index)
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        start = offset + flat_start(info.shape, index) * stored.itemsize
        if self._open is None or self._open[0] != member:
            self._close_member()
            self._open = (member, self._zip.open(member))
        f = self._open[1]
        f.seek(start)  # forward seeks within the member are cheap; pieces come in order
        data = f.read(count * stored.itemsize)
        if len(data) != count * stored.itemsize:
            raise DataLossError(f"member '{member}' of '{self.path}' is truncated")
        # A read-only view of the bytes just read (no second copy).
        value = np.frombuffer(data, dtype=stored).reshape(shape)
        return value.astype(info.dtype) if stored != info.dtype else value

    def _close_member(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def close(self) -> None:
        self._close_member()
        self._zip.close()


def _check(info: TensorInfo) -> None:
    if info.dtype == object:
        raise unsupported(info, FORMAT, ".npy would store a pickle")
    if info.dtype.kind not in "biufc":  # ml_dtypes (bfloat16, float8, int4) are void to .npy
        raise unsupported(info, FORMAT, f".npy has no {info.dtype.name} dtype")


def can_hold(info: TensorInfo) -> Optional[str]:
    """None if an npz archive can hold `info`, else why not."""
    return refusal(_check, info)


class NpzSink:
    """Writes an ``.npz`` archive member by member into a temporary file
    renamed onto `dst` at :meth:`commit`."""

    format = FORMAT

    def __init__(self, dst: str, tensors: List[TensorInfo], *, durable: bool) -> None:
        for t in tensors:
            _check(t)
        make_parent(dst)
        self.dst = dst
        self._file = AtomicFile(dst, durable=durable)
        self._zip = zipfile.ZipFile(self._file.file, "w", compression=zipfile.ZIP_STORED, allowZip64=True)

    def add(self, info: TensorInfo, pieces: Iterable[np.ndarray]) -> None:
        header = {"descr": _npy.dtype_to_descr(info.dtype), "fortran_order": False, "shape": info.shape}
        with self._zip.open(info.name + ".npy", "w", force_zip64=True) as f:
            _npy.write_array_header_2_0(f, header) if _needs_v2(header) else _npy.write_array_header_1_0(f, header)
            written = write_pieces(f.write, pieces)
        if written != info.nbytes:
            raise InternalError(f"tensor '{info.name}': {written} bytes read, {info.nbytes} expected")

    def commit(self) -> List[str]:
        try:
            self._zip.close()
            self._file.finish()
            self._file.publish()
        except BaseException:
            self.abort()
            raise
        return [self.dst]

    def abort(self) -> None:
        try:
            self._zip.close()
        except Exception:  # noqa: BLE001, S110 - the archive is being discarded anyway
            pass
        self._file.discard()


def _needs_v2(header: Dict[str, Any]) -> bool:
    # Version 1.0 headers hold at most 65535 bytes (many dimensions would need more).
    return len(repr(header)) > 65000


def exists(dst: str) -> bool:
    return os.path.exists(dst)
