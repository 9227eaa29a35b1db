"""TensorFlow bundles (fastckpt's own format): PREFIX.index + PREFIX.data-*.

Read with fastckpt's verified reader (every piece's CRC32C is checked as it
is read; partitioned tensors are reassembled); written with the streaming
bundle writer, one data file per group of about the piece bound, so that
memory holds at most two groups.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from .. import _native
from .._bundle_stream import MAX_GROUPS, BundleStreamWriter, plan_groups
from ..errors import InvalidArgumentError, UnsupportedDtypeError
from ..format import dtypes
from ..reader import CheckpointReader
from ._base import Index, Spool, TensorInfo, make_parent

FORMAT = "tf"


class BundleSource:
    """A TensorFlow bundle opened with :class:`fastckpt.CheckpointReader`.

    `path` is anything the reader resolves: a prefix, one of its files, or a
    directory with a ``checkpoint`` state file or a single checkpoint.
    """

    format = FORMAT

    def __init__(self, path: str) -> None:
        self.reader = CheckpointReader(path)
        self.path = self.reader.prefix
        self._infos: List[TensorInfo] = []
        for name, e in sorted(self.reader._all_entries()):
            try:
                np_dtype = dtypes.to_numpy_dtype(e.dtype)
            except UnsupportedDtypeError as err:
                raise UnsupportedDtypeError(f"tensor '{name}' in '{self.path}': {err}") from None
            self._infos.append(TensorInfo(name, np_dtype, tuple(e.shape)))
        self._digests: Optional[Dict[str, Tuple[int, int]]] = None

    def tensors(self) -> List[TensorInfo]:
        return list(self._infos)

    def read(self, info: TensorInfo, index: Optional[Index] = None) -> np.ndarray:
        if index is None:
            return self.reader.get_tensor(info.name)
        return self.reader.get_slice(info.name, index)

    def stored_digests(self) -> Dict[str, Tuple[int, int]]:
        """name -> (stored bytes, masked CRC32C of the stored bytes) of every
        tensor stored as one entry (partitioned tensors have none), from the
        index alone: no data is read."""
        if self._digests is None:
            reader = _native.Reader(self.path)
            try:
                self._digests = {
                    key.decode("utf-8", "surrogateescape"): (size, crc)
                    for key, _dt, _shape, _shard, _off, size, crc, slices in reader.entries()
                    if slices is None and key[:1] != b"\0"
                }
            finally:
                reader.close()
        return self._digests

    def stored_layout(self, name: str) -> Optional[bytes]:
        """None when tensor `name`'s stored bytes are its value's bytes (so
        two different CRCs mean two different values); for a compressed
        tensor, its frame layout (planes, frame size, plane sizes and raw
        CRCs): equal stored bytes mean equal values only under equal
        layouts, and different stored bytes decide nothing."""
        compressed = self.reader._compressed
        index = self.reader._index.get(name)
        if compressed is None or index is None or index not in compressed:
            return None
        t = compressed.tables[index]
        return repr((t.planes, t.frame_bytes, t.raw_bytes)).encode() + t.words.tobytes() + t.offsets.tobytes()

    def close(self) -> None:
        self.reader.close()


def compression_options(compression: Optional[str]) -> Dict[str, Any]:
    """The keyword arguments that ask the bundle writer for `compression`
    (the one place a compressed bundle output is requested; reading a
    compressed bundle needs nothing of convert: the reader decompresses)."""
    if compression in (None, "none"):
        return {}
    if compression == "zstd":
        return {"compression": "zstd"}
    raise InvalidArgumentError(f"unknown compression {compression!r}; use 'none' or 'zstd'")


class BundleSink:
    """Writes a bundle at `prefix` group by group (see
    :mod:`fastckpt._bundle_stream`): tensors are gathered into groups of
    about `group_bytes` and each group is written as one data file while the
    next is read. A tensor larger than that arrives in pieces and is
    assembled in scratch space on disk (the bundle stores each tensor as one
    entry with one CRC). The index is written last, at :meth:`commit`."""

    format = FORMAT

    def __init__(
        self,
        prefix: str,
        tensors: List[TensorInfo],
        *,
        group_bytes: int,
        durable: bool,
        compression: Optional[str] = None,
    ) -> None:
        self._options = compression_options(compression)
        self.prefix = prefix
        make_parent(prefix)
        sizes = [(t.name, max(t.nbytes, 1)) for t in tensors]
        self._groups = plan_groups(sizes, group_bytes)
        if len(self._groups) > MAX_GROUPS:  # plan_groups grows groups instead; kept as a guard
            raise InvalidArgumentError(f"'{prefix}': too many groups")
        self._writer = BundleStreamWriter(prefix, len(self._groups), durable=durable, **self._options)
        self._group = 0
        self._pending: Dict[str, Any] = {}
        self._spools: List[Tuple[int, Spool]] = []  # (group, scratch space of one of its tensors)
        self._directory = os.path.dirname(prefix)

    def add(self, info: TensorInfo, pieces: Iterable[np.ndarray]) -> None:
        parts = iter(pieces)
        first = next(parts)
        second = next(parts, None)
        if second is None:
            value: Any = first
        else:
            spool = Spool(self._directory)
            self._spools.append((self._group, spool))

            def chain() -> Iterable[np.ndarray]:
                yield first
                yield second
                yield from parts

            offset, _ = spool.append(chain())
            value = spool.array(offset, info)
        self._pending[info.name] = value
        if len(self._pending) == len(self._groups[self._group]):
            self._flush()

    def _flush(self) -> None:
        group, self._pending = self._pending, {}
        self._writer.write_group(group)
        # write_group returned: every earlier group is written, so their
        # scratch space is no longer referenced.
        for _, spool in [s for s in self._spools if s[0] < self._group]:
            spool.close()
        self._spools = [s for s in self._spools if s[0] >= self._group]
        self._group += 1

    def commit(self) -> List[str]:
        while self._group < len(self._groups):  # empty checkpoint: one empty group
            self._flush()
        try:
            return list(self._writer.commit())
        finally:
            self._close_spools()

    def abort(self) -> None:
        try:
            self._writer.abort()
        finally:
            self._close_spools()

    def _close_spools(self) -> None:
        for _, spool in self._spools:
            spool.close()
        self._spools.clear()


def exists(prefix: str) -> bool:
    """Whether a bundle is at `prefix`."""
    return os.path.exists(prefix + ".index")
