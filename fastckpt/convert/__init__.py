"""``fastckpt.convert``: copy a checkpoint from one format to another,
tensor by tensor, with memory bounded whatever its size.

Formats (``src_format`` / ``dst_format``, or inferred from the path):

========================  ===============  ===========================================
format                    name             path
========================  ===============  ===========================================
TensorFlow bundle         ``tf``           a prefix (``PREFIX.index`` exists), one of
                                           its files, or a directory with a
                                           ``checkpoint`` state file or one checkpoint
safetensors               ``safetensors``  ``*.safetensors``; sharded: the
                                           ``*.safetensors.index.json`` weight map or
                                           its directory
torch state-dict file     ``torch``        ``*.pt``, ``*.pth``, ``*.bin``
numpy archive             ``npz``          ``*.npz``
torch.distributed.ckpt    ``dcp``          a directory holding ``.metadata``
========================  ===============  ===========================================

**Names** are kept exactly as they are: a torch/safetensors name such as
``encoder.layer.0.weight`` stays ``encoder.layer.0.weight`` in a TensorFlow
bundle (whose names are usually ``/``-separated), and back, so every round
trip gives back the same names. Nested torch files are flattened as
:func:`fastckpt.save` flattens a nested state: keys joined with ``/``
(``{"model": {"fc.weight": w}}`` gives ``model/fc.weight``). A bundle
written by ``fastckpt.save`` from a nested state already holds such names;
its structure entry (``_FASTCKPT_STRUCTURE``) is fastckpt's own and is only
copied to another bundle (it is skipped, and reported, for other formats).

**Memory.** Tensors are read one at a time; one larger than
``max_piece_bytes`` is read in pieces (ranges of rows) of at most that size.
Formats whose writer needs a tensor whole (a bundle entry has one CRC; torch
and DCP files are written by torch) assemble it in anonymous scratch space
on the destination's disk and map it, so the process's own memory stays
within a few times ``max_piece_bytes``. Exceptions: a DCP chunk (what one
rank wrote of a tensor) and a legacy-format torch file are read whole, as
those formats cannot be read in part.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .. import structure
from .._progress import ProgressCallback, tracker_for
from ..errors import (
    CheckpointExistsError,
    CheckpointNotFoundError,
    InvalidArgumentError,
    UnsupportedDtypeError,
)
from ._base import DEFAULT_PIECE_BYTES, Sink, Source, TensorInfo, iterate

__all__ = ["FORMATS", "ConvertReport", "convert", "detect_format", "open_source"]

PathLike = Union[str, "os.PathLike[str]"]

#: Format names, and the aliases accepted for them.
FORMATS = ("tf", "safetensors", "torch", "npz", "dcp")
_ALIASES = {
    "tf": "tf",
    "tensorflow": "tf",
    "bundle": "tf",
    "safetensors": "safetensors",
    "torch": "torch",
    "pt": "torch",
    "pytorch": "torch",
    "npz": "npz",
    "numpy": "npz",
    "dcp": "dcp",
}
_TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert` did: the resolved source and destination and their
    formats, the tensors and bytes copied, the files written, the tensors
    skipped (name, reason) and the wall time."""

    src: str
    dst: str
    src_format: str
    dst_format: str
    tensors: int = 0
    nbytes: int = 0
    files: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def _normalize_format(fmt: Optional[str], what: str) -> Optional[str]:
    if fmt is None:
        return None
    name = _ALIASES.get(str(fmt).lower())
    if name is None:
        raise InvalidArgumentError(f"unknown {what} format {fmt!r}; formats: {', '.join(FORMATS)}")
    return name


def detect_format(path: str, *, for_output: bool = False) -> str:
    """The format of `path`, from its name and what is on disk.

    Raises:
        CheckpointNotFoundError: an input path where nothing is.
        InvalidArgumentError: a path whose format cannot be told (pass it).
    """
    from . import dcp, safetensors_io

    lower = path.lower()
    if lower.endswith((".safetensors", safetensors_io.INDEX_SUFFIX)):
        return "safetensors"
    if lower.endswith(_TORCH_SUFFIXES):
        return "torch"
    if lower.endswith(".npz"):
        return "npz"
    if os.path.exists(path + ".index") or lower.endswith(".index") or ".data-" in os.path.basename(lower):
        return "tf"
    if os.path.isdir(path):
        if dcp.is_dcp(path):
            return "dcp"
        if safetensors_io.index_path_of(path) is not None:
            return "safetensors"
        if os.path.exists(os.path.join(path, "checkpoint")) or any(n.endswith(".index") for n in os.listdir(path)):
            return "tf"
        if for_output and not os.listdir(path):
            raise InvalidArgumentError(
                f"cannot tell the format to write into directory '{path}'; pass one ({', '.join(FORMATS)})"
            )
        if not for_output:
            raise InvalidArgumentError(
                f"directory '{path}' holds no checkpoint fastckpt recognises "
                "(a TensorFlow bundle, sharded safetensors or a DCP checkpoint)"
            )
    if for_output:
        return "tf"  # a bundle prefix: any other name (model.ckpt, step-100)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(
            2,
            "No such file or directory",
            path,
            message=f"no checkpoint at '{path}' (no file, directory or '{path}.index')",
        )
    raise InvalidArgumentError(f"cannot tell the format of '{path}'; pass one ({', '.join(FORMATS)})")


def open_source(path: PathLike, fmt: Optional[str] = None, *, piece_bytes: int = DEFAULT_PIECE_BYTES) -> Source:
    """Opens checkpoint `path` for reading, in format `fmt` (inferred when
    None). `piece_bytes`: the memory bound of the caller's pieces (a DCP
    chunk larger than that is mapped from scratch space, not read)."""
    path = os.fspath(path)
    fmt = _normalize_format(fmt, "source") or detect_format(path)
    if fmt == "tf":
        from .tf_bundle import BundleSource

        return BundleSource(path)
    if fmt == "safetensors":
        from .safetensors_io import SafetensorsSource

        return SafetensorsSource(path)
    if fmt == "torch":
        from .torch_file import TorchSource

        return TorchSource(path)
    if fmt == "npz":
        from .npz import NpzSource

        return NpzSource(path)
    from .dcp import DcpSource

    return DcpSource(path, map_above=piece_bytes)


def _existing_outputs(dst: str, fmt: str, tensors: List[TensorInfo], max_shard_size: Optional[int]) -> List[str]:
    if fmt == "tf":
        return [dst + ".index"] if os.path.exists(dst + ".index") else []
    if fmt == "safetensors":
        from . import safetensors_io

        return safetensors_io.exists(dst, tensors, max_shard_size)
    if fmt == "dcp":
        return [dst] if os.path.lexists(dst) else []
    return [dst] if os.path.lexists(dst) else []


def _can_hold(fmt: str) -> Callable[[TensorInfo], Optional[str]]:
    if fmt == "tf":
        return lambda info: None
    if fmt == "safetensors":
        from .safetensors_io import can_hold as st

        return st
    if fmt == "npz":
        from .npz import can_hold as npz

        return npz
    if fmt == "torch":
        from .torch_file import can_hold as pt

        return pt
    from .dcp import can_hold as dc

    return dc


def _open_sink(
    dst: str,
    fmt: str,
    tensors: List[TensorInfo],
    *,
    piece_bytes: int,
    durable: bool,
    compression: Optional[str],
    max_shard_size: Optional[int],
) -> Sink:
    if max_shard_size is not None and fmt != "safetensors":
        raise InvalidArgumentError(f"max_shard_size applies to safetensors output, not {fmt}")
    if compression not in (None, "none") and fmt != "tf":
        raise InvalidArgumentError(f"compression applies to TensorFlow bundle output, not {fmt}")
    if fmt == "tf":
        from .tf_bundle import BundleSink

        return BundleSink(dst, tensors, group_bytes=piece_bytes, durable=durable, compression=compression)
    if fmt == "safetensors":
        from .safetensors_io import SafetensorsSink

        return SafetensorsSink(dst, tensors, max_shard_size=max_shard_size, durable=durable)
    if fmt == "torch":
        from .torch_file import TorchSink

        return TorchSink(dst, tensors, durable=durable)
    if fmt == "npz":
        from .npz import NpzSink

        return NpzSink(dst, tensors, durable=durable)
    from .dcp import DcpSink

    return DcpSink(dst, tensors, durable=durable)


def _same_checkpoint(src: Source, dst: str, dst_format: str) -> bool:
    """Whether writing `dst` would overwrite the files being read."""

    def real(p: str) -> str:
        return os.path.realpath(p)

    if src.format == "tf" and dst_format == "tf":
        return real(src.path) == real(dst)
    return real(src.path) == real(dst) or (dst_format == "tf" and real(src.path) == real(dst + ".index"))


def convert(
    src: PathLike,
    dst: PathLike,
    *,
    src_format: Optional[str] = None,
    dst_format: Optional[str] = None,
    overwrite: bool = False,
    compression: Optional[str] = None,
    max_shard_size: Optional[int] = None,
    max_piece_bytes: int = DEFAULT_PIECE_BYTES,
    skip_unsupported: bool = False,
    durable: bool = True,
    progress: Optional[ProgressCallback] = None,
) -> ConvertReport:
    """Converts checkpoint `src` into `dst`, in another (or the same) format.

    See the module docstring for the formats, the name rule and the memory
    bound. The output commits atomically like every save: it is written
    under temporary names and appears only once complete; a failure leaves
    nothing that looks like a checkpoint, and never touches an existing one
    unless `overwrite` (which then replaces it the way ``fastckpt.save``
    replaces a prefix: the old checkpoint stays whole until the new one is
    complete).

    Args:
        src: the checkpoint to read.
        dst: where to write: a bundle prefix, a ``.safetensors`` file (or a
            ``.safetensors.index.json`` weight map or a directory for the
            sharded layout), a ``.pt``/``.pth``/``.bin`` file, an ``.npz``
            file, or a directory for DCP.
        src_format, dst_format: ``"tf"``, ``"safetensors"``, ``"torch"``,
            ``"npz"``, ``"dcp"``; None infers it from the path.
        overwrite: replace an existing checkpoint at `dst` (default: refuse).
        compression: ``"none"`` (or None) or ``"zstd"``, for bundle output.
        max_shard_size: bytes of values per safetensors shard: writes the
            sharded layout (a larger tensor gets a shard of its own).
        max_piece_bytes: the bound on one piece read (and one group of a
            bundle written); larger tensors are copied in pieces.
        skip_unsupported: skip (and report) tensors the destination format
            cannot hold instead of refusing the conversion.
        durable: fsync the output before it becomes visible.
        progress: a callable taking a :class:`fastckpt.Progress` (bytes
            copied, bytes total, tensors done, tensors total), called on this
            thread at most ten times a second, and once at the end.

    Returns:
        A :class:`ConvertReport`.

    Raises:
        CheckpointNotFoundError: no checkpoint at `src`.
        CheckpointExistsError: `dst` exists and `overwrite` is False, or `dst`
            is `src`.
        UnsupportedDtypeError: a tensor the destination format cannot hold
            (string tensors into safetensors, bfloat16 into npz...), named.
        InvalidArgumentError: an unknown format, or an option that does not
            apply to the destination format.
        MissingDependencyError: the format needs a package that is not
            installed (the message names the pip extra).
        DataLossError: the source is damaged.
    """
    start = time.perf_counter()
    src, dst = os.fspath(src), os.fspath(dst)
    if not isinstance(max_piece_bytes, int) or max_piece_bytes < 1:
        raise InvalidArgumentError(f"max_piece_bytes must be a positive number of bytes, not {max_piece_bytes!r}")
    if compression not in (None, "none", "zstd"):
        raise InvalidArgumentError(f"unknown compression {compression!r}; use 'none' or 'zstd'")
    out_format = _normalize_format(dst_format, "destination") or detect_format(dst, for_output=True)
    source = open_source(src, src_format, piece_bytes=max_piece_bytes)
    try:
        if _same_checkpoint(source, dst, out_format):
            raise CheckpointExistsError(17, "File exists", dst, message=f"cannot convert '{src}' onto itself")
        holds = _can_hold(out_format)
        tensors: List[TensorInfo] = []
        skipped: List[Tuple[str, str]] = []
        for info in source.tensors():
            if info.name == structure.STRUCTURE_KEY and out_format != "tf":
                skipped.append((info.name, "fastckpt's structure entry (the names carry the paths)"))
                continue
            reason = holds(info)
            if reason is not None:
                if not skip_unsupported:
                    raise UnsupportedDtypeError(f"converting '{src}' to {out_format}: {reason}")
                skipped.append((info.name, reason))
                continue
            tensors.append(info)
        if out_format == "tf" and os.path.isdir(dst):
            raise InvalidArgumentError(
                f"'{dst}' is a directory; a TensorFlow bundle is written at a prefix, e.g. "
                f"'{os.path.join(dst, 'model')}'"
            )
        existing = _existing_outputs(dst, out_format, tensors, max_shard_size)
        if existing and not overwrite:
            raise CheckpointExistsError(
                17,
                "File exists",
                existing[0],
                message=f"'{dst}' already holds a checkpoint ({existing[0]}); "
                "pass overwrite=True (--overwrite) to replace it",
            )
        sink = _open_sink(
            dst,
            out_format,
            tensors,
            piece_bytes=max_piece_bytes,
            durable=durable,
            compression=compression,
            max_shard_size=max_shard_size,
        )
        nbytes = 0
        tracker = tracker_for(progress, [t.nbytes for t in tensors])

        def counted(info: TensorInfo) -> Iterator[np.ndarray]:
            done = nbytes
            for piece in iterate(source, info, max_piece_bytes):
                yield piece
                done += piece.nbytes
                if tracker is not None:
                    tracker.tick(done)

        try:
            # The one loop over tensors (and, inside iterate, over their pieces).
            for info in tensors:
                sink.add(info, counted(info))
                nbytes += info.nbytes
            files = sink.commit()
            if tracker is not None:
                tracker.report(tracker.total, final=True)
        except BaseException:
            sink.abort()
            raise
    finally:
        source.close()
    resolved_src = source.path
    return ConvertReport(
        src=resolved_src,
        dst=dst,
        src_format=source.format,
        dst_format=out_format,
        tensors=len(tensors),
        nbytes=nbytes,
        files=list(files),
        skipped=skipped,
        seconds=time.perf_counter() - start,
    )
