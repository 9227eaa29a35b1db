"""safetensors: one ``.safetensors`` file, or Hugging Face's sharded layout (a
``NAME.safetensors.index.json`` weight map naming ``NAME-0000i-of-0000n.safetensors``
shards in the same directory).

Reading goes through the ``safetensors`` library's ``safe_open``, which maps
the file and serves one tensor, or one slice of it, at a time. The float8
dtypes are read through its torch framework (its numpy framework has no
float8) and bit-cast to ml_dtypes.

Writing is done here: the library's writers (``save_file``) take every
tensor at once, in memory, which would make memory grow with the checkpoint.
The format is an 8-byte little-endian header length, a JSON header giving
each tensor's dtype, shape and byte range, then the bytes in that order;
since the source lists every tensor before any is read, the header is
written first and the bytes are streamed after it, piece by piece.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from ..errors import (
    CheckpointNotFoundError,
    DataLossError,
    InternalError,
    InvalidArgumentError,
    UnsupportedDtypeError,
    os_error,
)
from ._base import AtomicFile, Index, TensorInfo, make_parent, refusal, require, sync_dir, unsupported, write_pieces

FORMAT = "safetensors"
INDEX_SUFFIX = ".safetensors.index.json"

# numpy (ml_dtypes) dtype name -> safetensors dtype; every dtype both sides know.
_TO_ST = {
    "float64": "F64",
    "float32": "F32",
    "float16": "F16",
    "bfloat16": "BF16",
    "int64": "I64",
    "uint64": "U64",
    "int32": "I32",
    "uint32": "U32",
    "int16": "I16",
    "uint16": "U16",
    "int8": "I8",
    "uint8": "U8",
    "bool": "BOOL",
    "complex64": "C64",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
}
_FROM_ST = {v: k for k, v in _TO_ST.items()}
# Read through the torch framework: safetensors' numpy framework lacks them.
_TORCH_ONLY = {"F8_E4M3", "F8_E5M2"}


def _numpy_dtype(st_dtype: str, name: str, path: str) -> np.dtype:
    import ml_dtypes

    np_name = _FROM_ST.get(st_dtype)
    if np_name is None:
        raise UnsupportedDtypeError(
            f"tensor '{name}' in '{path}' has safetensors dtype {st_dtype}, which fastckpt does not convert"
        )
    return np.dtype(
        getattr(ml_dtypes, np_name)
        if hasattr(ml_dtypes, np_name) and np_name in ("bfloat16", "float8_e4m3fn", "float8_e5m2")
        else np_name
    )


def _safe_open(path: str, framework: str) -> Any:
    st = require("safetensors", "convert", "reading safetensors")
    try:
        return st.safe_open(path, framework=framework)
    except FileNotFoundError:
        raise CheckpointNotFoundError(
            2, "No such file or directory", path, message=f"safetensors file '{path}' not found"
        ) from None
    except OSError as e:
        raise os_error(e.errno or 5, f"cannot open safetensors file '{path}': {e}", path) from None
    except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError
        raise DataLossError(f"'{path}' is not a valid safetensors file: {e}") from None


def index_path_of(path: str) -> Optional[str]:
    """The weight map of a sharded safetensors checkpoint `path` names (the
    ``*.safetensors.index.json`` itself, or a directory holding exactly one),
    or None."""
    if path.endswith(INDEX_SUFFIX):
        return path
    if os.path.isdir(path):
        found = sorted(n for n in os.listdir(path) if n.endswith(INDEX_SUFFIX))
        if len(found) == 1:
            return os.path.join(path, found[0])
        if len(found) > 1:
            raise InvalidArgumentError(
                f"directory '{path}' holds several safetensors weight maps ({', '.join(found)}); name one of them"
            )
    return None


class SafetensorsSource:
    """A ``.safetensors`` file, or a sharded layout (its ``.index.json`` or
    its directory)."""

    format = FORMAT

    def __init__(self, path: str) -> None:
        self.path = path
        index = index_path_of(path)
        self._files: Dict[str, str] = {}  # tensor name -> shard file
        if index is not None:
            try:
                with open(index, "rb") as f:
                    weight_map = json.load(f)["weight_map"]
            except FileNotFoundError:
                raise CheckpointNotFoundError(
                    2, "No such file or directory", index, message=f"safetensors weight map '{index}' not found"
                ) from None
            except (ValueError, KeyError, TypeError) as e:
                raise DataLossError(f"'{index}' is not a safetensors weight map: {e}") from None
            directory = os.path.dirname(index)
            if not isinstance(weight_map, dict):
                raise DataLossError(f"'{index}': 'weight_map' is not an object")
            shards = sorted(set(weight_map.values()))
            for shard in shards:
                if not isinstance(shard, str) or os.path.basename(shard) != shard:
                    raise DataLossError(f"'{index}': shard {shard!r} is not a file name in its directory")
        else:
            directory, shards, weight_map = "", [path], None
        self._handles: Dict[Tuple[str, str], Any] = {}
        self._infos: List[TensorInfo] = []
        self._st_dtype: Dict[str, str] = {}
        for shard in shards:
            file = os.path.join(directory, shard)
            handle = self._handle(file, "numpy")
            for name in handle.keys():  # noqa: SIM118 - a safe_open handle, not a dict
                if weight_map is not None and weight_map.get(name) != shard:
                    continue  # listed under another shard: that one is read
                view = handle.get_slice(name)
                st_dtype = view.get_dtype()
                self._st_dtype[name] = st_dtype
                self._files[name] = file
                self._infos.append(
                    TensorInfo(name, _numpy_dtype(st_dtype, name, file), tuple(int(d) for d in view.get_shape()))
                )
        if weight_map is not None:
            missing = sorted(set(weight_map) - set(self._files))
            if missing:
                raise DataLossError(
                    f"'{index}' maps {len(missing)} tensor(s) to shards that lack them: {', '.join(missing[:5])}"
                )
        self._infos.sort(key=lambda t: t.name)

    def _handle(self, file: str, framework: str) -> Any:
        key = (file, framework)
        handle = self._handles.get(key)
        if handle is None:
            handle = self._handles[key] = _safe_open(file, framework)
        return handle

    def tensors(self) -> List[TensorInfo]:
        return list(self._infos)

    def read(self, info: TensorInfo, index: Optional[Index] = None) -> np.ndarray:
        file = self._files[info.name]
        torch_only = self._st_dtype[info.name] in _TORCH_ONLY
        if torch_only:
            require("torch", "torch", f"reading float8 tensor '{info.name}' from safetensors")
        handle = self._handle(file, "pt" if torch_only else "numpy")
        try:
            value = handle.get_tensor(info.name) if index is None else handle.get_slice(info.name)[index]
        except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError
            raise DataLossError(f"cannot read tensor '{info.name}' from '{file}': {e}") from None
        if torch_only:
            from .._arrays import to_host_array

            value = to_host_array(value)
        return np.ascontiguousarray(value).reshape(info.shape if index is None else value.shape)

    def close(self) -> None:
        self._handles.clear()  # safe_open handles unmap when collected


def _check(info: TensorInfo) -> str:
    if info.dtype == object:
        raise unsupported(info, FORMAT, "safetensors holds numbers only")
    st = _TO_ST.get(info.dtype.name)
    if st is None:
        raise unsupported(info, FORMAT, f"safetensors has no {info.dtype.name} dtype")
    return st


def can_hold(info: TensorInfo) -> Optional[str]:
    """None if safetensors can hold `info`, else why not."""
    return refusal(_check, info)


class _FileWriter:
    """One safetensors file: header first, then each tensor's bytes in order."""

    def __init__(self, final: str, tensors: List[TensorInfo], durable: bool) -> None:
        header: Dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset = 0
        self.expected: Dict[str, int] = {}
        for t in tensors:
            header[t.name] = {"dtype": _check(t), "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
            self.expected[t.name] = t.nbytes
            offset += t.nbytes
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as the library writes it
        self.nbytes = offset
        self.file = AtomicFile(final, durable=durable)
        self.file.write(struct.pack("<Q", len(raw)) + raw)

    def add(self, info: TensorInfo, pieces: Iterable[np.ndarray]) -> None:
        written = write_pieces(self.file.write, pieces)
        if written != self.expected[info.name]:
            raise InternalError(f"tensor '{info.name}': {written} bytes read, {self.expected[info.name]} expected")


def plan_shards(tensors: List[TensorInfo], max_shard_size: int) -> List[List[TensorInfo]]:
    """Consecutive groups of at most `max_shard_size` bytes of values (a
    larger tensor makes a shard of its own), as Hugging Face shards."""
    shards: List[List[TensorInfo]] = [[]]
    filled = 0
    for t in tensors:
        if shards[-1] and filled + t.nbytes > max_shard_size:
            shards.append([])
            filled = 0
        shards[-1].append(t)
        filled += t.nbytes
    return shards


def sharded_layout(dst: str) -> Tuple[str, str]:
    """(directory, stem) of a sharded output at `dst`: ``DIR/NAME.safetensors.index.json``,
    ``DIR/NAME.safetensors`` (with a shard size) or a directory (stem ``model``)."""
    if dst.endswith(INDEX_SUFFIX):
        return os.path.dirname(dst), os.path.basename(dst)[: -len(INDEX_SUFFIX)]
    if dst.endswith(".safetensors"):
        return os.path.dirname(dst), os.path.basename(dst)[: -len(".safetensors")]
    return dst, "model"


def output_files(dst: str, tensors: List[TensorInfo], max_shard_size: Optional[int]) -> List[str]:
    """Every file a write to `dst` would create (the index last)."""
    if not _is_sharded_output(dst, max_shard_size):
        return [dst]
    directory, stem = sharded_layout(dst)
    n = len(plan_shards(tensors, max_shard_size or (1 << 62)))
    return [os.path.join(directory, f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors") for i in range(n)] + [
        os.path.join(directory, stem + INDEX_SUFFIX)
    ]


def _is_sharded_output(dst: str, max_shard_size: Optional[int]) -> bool:
    return max_shard_size is not None or dst.endswith((INDEX_SUFFIX, os.sep)) or os.path.isdir(dst)


class SafetensorsSink:
    """Writes one ``.safetensors`` file, or the sharded layout when
    `max_shard_size` is given or `dst` is a weight-map path or a directory.
    Shards are written under temporary names and renamed once all are
    complete; the weight map is written last (it is what makes the sharded
    checkpoint visible), and an old one at `dst` is removed first, so it is
    never paired with new shards."""

    format = FORMAT

    def __init__(self, dst: str, tensors: List[TensorInfo], *, max_shard_size: Optional[int], durable: bool) -> None:
        for t in tensors:
            _check(t)
        if max_shard_size is not None and (not isinstance(max_shard_size, int) or max_shard_size < 1):
            raise InvalidArgumentError(f"max_shard_size must be a positive number of bytes, not {max_shard_size!r}")
        self.durable = durable
        self.sharded = _is_sharded_output(dst, max_shard_size)
        if self.sharded:
            self.directory = sharded_layout(dst)[0]
            os.makedirs(self.directory or ".", exist_ok=True)
            groups = plan_shards(tensors, max_shard_size or (1 << 62))
            names = output_files(dst, tensors, max_shard_size)
            self.index_path = names[-1]
            self._plan = list(zip(names[:-1], groups))
        else:
            make_parent(dst)
            self.directory = os.path.dirname(dst)
            self.index_path = ""
            self._plan = [(dst, tensors)]
        self._writers: List[_FileWriter] = []
        self._shard_of: Dict[str, int] = {t.name: i for i, (_, g) in enumerate(self._plan) for t in g}
        self._total = sum(t.nbytes for t in tensors)
        self._visible = False

    def add(self, info: TensorInfo, pieces: Iterable[np.ndarray]) -> None:
        i = self._shard_of[info.name]
        while len(self._writers) <= i:
            if self._writers:
                self._writers[-1].file.finish()
            final, group = self._plan[len(self._writers)]
            self._writers.append(_FileWriter(final, group, self.durable))
        self._writers[i].add(info, pieces)

    def commit(self) -> List[str]:
        try:
            while len(self._writers) < len(self._plan):  # shards with no tensors (an empty source)
                final, group = self._plan[len(self._writers)]
                self._writers.append(_FileWriter(final, group, self.durable))
            for w in self._writers:
                w.file.finish()
            if self.sharded and os.path.exists(self.index_path):
                os.unlink(self.index_path)  # the old weight map must never name new shards
            for w in self._writers:
                w.file.publish()
            files = [w.file.final for w in self._writers]
            if self.sharded:
                weight_map = {name: os.path.basename(self._plan[i][0]) for name, i in sorted(self._shard_of.items())}
                body = (
                    json.dumps(
                        {"metadata": {"total_size": self._total}, "weight_map": weight_map},
                        indent=2,
                        ensure_ascii=False,
                    ).encode("utf-8")
                    + b"\n"
                )
                index = AtomicFile(self.index_path, durable=self.durable)
                try:
                    index.write(body)
                    index.finish()
                    index.publish()
                except BaseException:
                    index.discard()
                    raise
                files.append(self.index_path)
            self._visible = True
            if self.durable:
                sync_dir(self.directory)
            return files
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._visible:
            return  # the output is complete and named; only the directory sync failed
        for w in self._writers:
            if w.file.published and self.sharded:
                # A published shard with no weight map naming it yet: remove it.
                try:
                    os.unlink(w.file.final)
                except FileNotFoundError:
                    pass
            w.file.discard()
        self._writers.clear()


def exists(dst: str, tensors: List[TensorInfo], max_shard_size: Optional[int]) -> List[str]:
    """The files a write to `dst` would replace."""
    return [f for f in output_files(dst, tensors, max_shard_size) if os.path.exists(f)]
