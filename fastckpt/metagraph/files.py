"""``.meta`` files: :func:`write_meta_graph` (atomic, binary or text) and
:func:`read_meta_graph` (binary, else text, as TensorFlow reads them)."""

from __future__ import annotations

import os
from typing import Union

from google.protobuf import message as _message
from google.protobuf import text_format

from .._atomic_io import atomic_write
from ..errors import DataLossError, from_os_error
from ..proto import MetaGraphDef

__all__ = ["write_meta_graph", "read_meta_graph"]


def write_meta_graph(
    meta: MetaGraphDef, path: Union[str, "os.PathLike[str]"], as_text: bool = False, *, fsync: bool = False
) -> str:
    """Write ``meta`` to ``path`` atomically; return the path.

    The bytes go to a locked temporary file ``path + ".tempstate-fastckpt-<16 hex>"``
    first, which is then renamed over ``path``, as TensorFlow's
    ``atomic_write_string_to_file`` does with its own temporary name, so readers never
    see a partial file; a killed process's leftover is removed by the next save into
    the directory. Binary output is the deterministic
    serialization (map entries sorted by key), as TensorFlow writes it; ``as_text``
    writes protobuf text format instead (TensorFlow reads both).

    Args:
        meta: A :class:`fastckpt.proto.MetaGraphDef` (any message with the same
            wire format works, e.g. TensorFlow's own ``MetaGraphDef``).
        path: Destination, usually ``PREFIX + ".meta"``. Its directory must exist.
        as_text: Write text format instead of binary.
        fsync: Flush the file to stable storage before the rename, and the directory
            after it.

    Raises:
        CheckpointIOError: an OS error, naming ``path`` (CheckpointNotFoundError if
            the directory is missing); no temporary file is left behind.
    """
    path = os.fspath(path)
    if as_text:
        data = text_format.MessageToString(meta).encode("utf-8")
    else:
        data = meta.SerializeToString(deterministic=True)
    atomic_write(path, data, durable=fsync, what="meta graph")
    return path


def read_meta_graph(path: Union[str, "os.PathLike[str]"]) -> MetaGraphDef:
    """Read a ``.meta`` file written by TensorFlow or :func:`write_meta_graph`.

    Like TensorFlow's ``read_meta_graph_file``: the content is parsed as binary
    first and, if that fails, as protobuf text format.

    Raises:
        CheckpointNotFoundError (or another CheckpointIOError): the file
            cannot be read.
        DataLossError: the content is neither a binary nor a text ``MetaGraphDef``.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise from_os_error(e, f"cannot read meta graph '{path}'", path) from None
    meta = MetaGraphDef()
    try:
        meta.ParseFromString(data)
        return meta
    except _message.DecodeError:
        pass
    meta = MetaGraphDef()
    try:
        text_format.Merge(data.decode("utf-8"), meta)
    except (UnicodeDecodeError, text_format.ParseError) as e:
        raise DataLossError(f"cannot parse {path} as a MetaGraphDef (neither binary nor text format): {e}") from None
    return meta
