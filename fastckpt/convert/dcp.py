"""torch.distributed.checkpoint (DCP) directories: a ``.metadata`` file (a
pickle of DCP's ``Metadata``: every tensor's dtype, size and chunks) and
``__R_I.distcp`` data files.

Read without a process group, chunk by chunk: each chunk is what one rank
wrote of a tensor, serialized by DCP with ``torch.save``, so one chunk is
the unit read (it is loaded with ``torch.load(weights_only=True)``, as DCP's
own reader loads it); pieces are copied out of the chunks they overlap. A
chunk larger than the caller's piece bound is not read into memory: its
byte range is copied (in the kernel, ``copy_file_range``) into a scratch
file next to nothing else, which ``torch.load(mmap=True)`` maps, and the
file is unlinked at once (the mapping keeps it until the chunk is dropped):
its pages are file-backed page cache, which the kernel reclaims, not
process memory.
Non-tensor entries (numbers, strings DCP stored as bytes) become 0-d tensors
as :mod:`fastckpt.structure` makes them. Note that the ``.metadata`` file is
a pickle that DCP's reader unpickles as such: read DCP checkpoints you trust.

Written with ``torch.distributed.checkpoint.save`` (``no_dist=True``: one
process, no process group) into a temporary directory renamed onto the
destination. DCP takes every tensor at once, so, as for torch files, the
tensors are assembled in scratch space on disk first and handed over as
tensors mapping it.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import warnings
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from .. import structure
from ..errors import (
    CheckpointNotFoundError,
    DataLossError,
    InvalidArgumentError,
    UnimplementedError,
    from_os_error,
)
from ._base import Index, TensorInfo, box_shape, refusal, require, sync_dir
from .torch_file import SpooledTensors, check_torch_dtype, host_piece, tensor_info

FORMAT = "dcp"
METADATA = ".metadata"


def is_dcp(path: str) -> bool:
    """Whether `path` is a DCP checkpoint directory."""
    return os.path.isfile(os.path.join(path, METADATA))


class DcpSource:
    """A DCP checkpoint directory."""

    format = FORMAT

    def __init__(self, path: str, *, map_above: int = 64 << 20) -> None:
        require("torch", "torch", "reading torch.distributed.checkpoint directories")
        self._map_above = map_above
        self._scratch: Optional[str] = None  # a private directory for mapped chunks
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import (
            BytesStorageMetadata,
            TensorStorageMetadata,
        )

        self.path = path
        if not os.path.isdir(path):
            raise CheckpointNotFoundError(
                2, "No such file or directory", path, message=f"DCP checkpoint directory '{path}' not found"
            )
        if not is_dcp(path):
            raise CheckpointNotFoundError(
                2,
                "No such file or directory",
                os.path.join(path, METADATA),
                message=f"'{path}' is not a DCP checkpoint: no '{METADATA}' file",
            )
        try:
            metadata = FileSystemReader(path).read_metadata()
        except OSError as e:
            raise from_os_error(e, f"cannot read '{os.path.join(path, METADATA)}'") from None
        except Exception as e:  # noqa: BLE001 - a damaged pickle raises anything
            raise DataLossError(f"'{os.path.join(path, METADATA)}' is not DCP metadata: {e}") from None
        storage = metadata.storage_data or {}
        self._where: Dict[Tuple[str, Optional[Tuple[int, ...]]], Any] = {}
        for md_index, info in storage.items():
            offset = tuple(md_index.offset) if md_index.offset is not None else None
            self._where[(md_index.fqn, offset)] = info
        self._chunks: Dict[str, List[Tuple[Tuple[int, ...], Tuple[int, ...]]]] = {}
        self._small: Dict[str, Any] = {}  # values of non-tensor entries, flattened
        self._infos: List[TensorInfo] = []
        from .._arrays import torch_numpy_dtype

        for fqn, md in sorted(metadata.state_dict_metadata.items()):
            if isinstance(md, TensorStorageMetadata):
                self._chunks[fqn] = [(tuple(c.offsets), tuple(c.sizes)) for c in md.chunks]
                self._infos.append(
                    TensorInfo(fqn, torch_numpy_dtype(md.properties.dtype), tuple(int(d) for d in md.size))
                )
            elif isinstance(md, BytesStorageMetadata):
                obj = self._load(fqn, None, what="entry")
                try:
                    flat = structure.flatten({fqn: obj}).tensors
                except Exception as e:  # noqa: BLE001 - flatten's refusal, reworded
                    raise UnimplementedError(
                        f"entry '{fqn}' of DCP checkpoint '{path}' is a "
                        f"{type(obj).__name__}, which convert cannot hold: {e}"
                    ) from None
                for name, value in flat.items():
                    self._small[name] = value
                    self._infos.append(tensor_info(name, value))
        self._cached: Optional[Tuple[Tuple[str, Tuple[int, ...]], np.ndarray]] = None

    def _load(self, fqn: str, offset: Optional[Tuple[int, ...]], *, what: str) -> Any:
        import torch

        info = self._where.get((fqn, offset))
        if info is None:
            raise DataLossError(
                f"DCP checkpoint '{self.path}' has no stored data for {what} '{fqn}'"
                + (f" at offset {list(offset)}" if offset is not None else "")
            )
        if getattr(info, "transform_descriptors", None):
            raise UnimplementedError(
                f"{what} '{fqn}' of DCP checkpoint '{self.path}' is stored with "
                f"transforms {info.transform_descriptors}, which convert does not read"
            )
        file = os.path.join(self.path, info.relative_path)
        if info.length > self._map_above:
            return self._load_mapped(file, info, fqn, what)
        try:
            with open(file, "rb") as f:
                f.seek(info.offset)
                data = f.read(info.length)
        except OSError as e:
            raise from_os_error(e, f"cannot read {what} '{fqn}' from '{file}'", file) from None
        if len(data) != info.length:
            raise DataLossError(f"'{file}' is truncated: {what} '{fqn}' lies beyond its end")
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch.load raises many kinds on damaged bytes
            raise DataLossError(f"cannot decode {what} '{fqn}' from '{file}': {e}") from None

    def _load_mapped(self, file: str, info: Any, fqn: str, what: str) -> Any:
        """A large chunk, mapped from a scratch copy of its bytes (see the module docstring)."""
        import tempfile

        import torch

        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="fastckpt-dcp-")
        scratch = os.path.join(self._scratch, "chunk.pt")
        try:
            with open(file, "rb") as src, open(scratch, "wb") as dst:
                done = 0
                while done < info.length:
                    try:
                        n = os.copy_file_range(src.fileno(), dst.fileno(), info.length - done, info.offset + done)
                    except OSError:  # not across these file systems: copy through a bounded buffer
                        src.seek(info.offset + done)
                        block = src.read(min(8 << 20, info.length - done))
                        n = len(block)
                        dst.write(block)
                    if n == 0:
                        raise DataLossError(f"'{file}' is truncated: {what} '{fqn}' lies beyond its end")
                    done += n
        except OSError as e:
            raise from_os_error(e, f"cannot read {what} '{fqn}' from '{file}'", file) from None
        try:
            return torch.load(scratch, mmap=True, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch.load raises many kinds on damaged bytes
            raise DataLossError(f"cannot decode {what} '{fqn}' from '{file}': {e}") from None
        finally:
            try:
                os.unlink(scratch)  # a mapping keeps the data until the chunk is dropped
            except OSError:
                pass

    def _chunk(self, info: TensorInfo, offsets: Tuple[int, ...]) -> np.ndarray:
        key = (info.name, offsets)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        self._cached = None  # drop the previous chunk before loading the next
        value = self._load(info.name, offsets, what="tensor")
        arr = host_piece(value, info, None)
        self._cached = (key, arr)
        return arr

    def tensors(self) -> List[TensorInfo]:
        return list(self._infos)

    def read(self, info: TensorInfo, index: Optional[Index] = None) -> np.ndarray:
        if info.name in self._small:
            return host_piece(self._small[info.name], info, index)
        shape = box_shape(info.shape, index)
        lo = [0] * len(shape) if index is None else [s.indices(n)[0] for s, n in zip(index, info.shape)]
        hi = [a + n for a, n in zip(lo, shape)]
        out = np.empty(shape, info.dtype)
        covered = 0
        for offsets, sizes in self._chunks[info.name]:
            a = [max(x, o) for x, o in zip(lo, offsets)]
            b = [min(y, o + s) for y, o, s in zip(hi, offsets, sizes)]
            if any(x >= y for x, y in zip(a, b)) and len(shape):
                continue
            chunk = self._chunk(info, offsets)
            src = tuple(slice(x - o, y - o) for x, y, o in zip(a, b, offsets))
            dst = tuple(slice(x - lo_, y - lo_) for x, y, lo_ in zip(a, b, lo))
            out[dst] = chunk[src]
            covered += int(np.prod([y - x for x, y in zip(a, b)], dtype=np.int64))
        if covered != out.size:
            raise DataLossError(f"tensor '{info.name}' of DCP checkpoint '{self.path}': its chunks do not cover it")
        return out

    def close(self) -> None:
        self._cached = None
        self._small = {}
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None


def can_hold(info: TensorInfo) -> Optional[str]:
    """None if a DCP checkpoint written here can hold `info`, else why not."""
    return refusal(lambda i: check_torch_dtype(i, FORMAT), info)


class DcpSink:
    """Writes a DCP checkpoint directory at `dst` (see the module docstring)."""

    format = FORMAT

    def __init__(self, dst: str, tensors: List[TensorInfo], *, durable: bool) -> None:
        require("torch", "torch", "writing torch.distributed.checkpoint directories")
        for t in tensors:
            check_torch_dtype(t, FORMAT)
        dst = os.path.normpath(dst)
        parent = os.path.dirname(dst)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.dst = dst
        self.durable = durable
        self.temp = f"{dst}.tempdir-fastckpt-{secrets.token_hex(8)}"
        os.mkdir(self.temp)
        self._tensors = SpooledTensors(parent)

    def add(self, info: TensorInfo, pieces: Iterable[np.ndarray]) -> None:
        self._tensors.add(info, pieces)

    def commit(self) -> List[str]:
        from torch.distributed.checkpoint import FileSystemWriter, save

        try:
            state = self._tensors.state_dict()
            with warnings.catch_warnings():
                # DCP warns that it assumes one process; one process is what no_dist=True asks for.
                warnings.filterwarnings("ignore", message=".*assuming the intent is to save in a single process")
                save(state, storage_writer=FileSystemWriter(self.temp, sync_files=self.durable), no_dist=True)
            del state
            files = sorted(os.listdir(self.temp))
            replace_directory(self.temp, self.dst, durable=self.durable)
        except BaseException:
            self.abort()
            raise
        finally:
            self._tensors.close()
        return [os.path.join(self.dst, f) for f in files]

    def abort(self) -> None:
        self._tensors.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def replace_directory(temp: str, dst: str, *, durable: bool) -> None:
    """Renames the complete directory `temp` onto `dst`. An existing `dst`
    (the caller allowed overwriting) is first renamed aside and removed once
    the new one is in place: a crash between the two renames leaves it whole
    under ``DST.old-fastckpt-<hex>``."""
    if durable:
        sync_dir(temp)
    parent = os.path.dirname(dst)
    old = None
    if os.path.lexists(dst):
        if not os.path.isdir(dst) or os.path.islink(dst):
            raise InvalidArgumentError(f"'{dst}' exists and is not a directory; a DCP checkpoint is one")
        old = f"{dst}.old-fastckpt-{secrets.token_hex(8)}"
        os.rename(dst, old)
    try:
        os.rename(temp, dst)
    except OSError as e:
        if old is not None:
            os.rename(old, dst)
        raise from_os_error(e, f"cannot rename into '{dst}'", dst) from None
    if durable:
        sync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def exists(dst: str) -> bool:
    return os.path.lexists(dst)
