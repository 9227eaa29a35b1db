"""Checkpoint-state management without TensorFlow.

The module functions of TensorFlow's ``checkpoint_management.py`` (exported
as ``tf.train.latest_checkpoint``, ``tf.train.get_checkpoint_state``,
``tf.compat.v1.train.update_checkpoint_state`` and friends), reimplemented
with the same signatures and the same behaviour, so that the ``checkpoint``
state file written here is byte-identical to TensorFlow's and both libraries
read each other's files:

* the state file is a text-format ``CheckpointState`` proto, written with
  ``text_format.MessageToString`` and read with the lenient
  ``text_format.Merge``, exactly as TensorFlow does;
* paths are rewritten as TensorFlow rewrites them: a relative ``save_dir``
  makes every relative path relative to it; an absolute ``save_dir`` keeps
  paths as given unless ``save_relative_paths`` is set;
* "does this checkpoint exist" is answered with TensorFlow's glob
  (``tf.io.gfile.glob``) semantics on ``PREFIX.index``, falling back to the
  V1 layout (the file ``PREFIX`` itself): ``*?[\\`` in a prefix are pattern
  characters, a ``*`` never crosses a ``/`` but does match a leading ``.``;
* the state file is replaced atomically (locked temporary file, optional
  fsync, rename, optional fsync of the directory), so a crash never leaves a
  truncated state file.

Deliberate differences from TensorFlow (all supersets of its behaviour):

* ``os.PathLike`` arguments are accepted everywhere;
* the caller's ``all_model_checkpoint_paths`` list is never modified
  (TensorFlow appends to it and rewrites it in place), and any sequence works;
* ``update_checkpoint_state(..., save_relative_paths=True)`` accepts
  ``all_model_checkpoint_paths=None`` (TensorFlow raises ``TypeError``);
* operating-system errors raise :class:`fastckpt.CheckpointIOError` (an
  ``OSError`` with ``errno``) where TensorFlow raises its ``OpError``
  classes (``tf.errors.NotFoundError``...);
* only local paths are supported (no ``gs://``, ``s3://`` file systems).
"""

from __future__ import annotations

import logging
import os
import re
from typing import Iterable, List, Optional, Sequence

from google.protobuf import text_format

from ._atomic_io import atomic_write, io_error

# Paths and the glob, with TensorFlow's rules (get_matching_files is public here too).
from ._tf_glob import PathLike, get_matching_files
from ._tf_glob import file_exists as _file_exists
from ._tf_glob import fspath as _fspath
from ._tf_glob import os_path as _os_path
from .errors import FailedPreconditionError, InvalidArgumentError

# The ``CheckpointState`` message class (fields ``model_checkpoint_path``,
# ``all_model_checkpoint_paths``, ``all_model_checkpoint_timestamps``,
# ``last_preserved_timestamp``).
from .proto.checkpoint_state_pb2 import CheckpointState as CheckpointState

__all__ = [
    "CheckpointState",
    "latest_checkpoint",
    "get_checkpoint_state",
    "update_checkpoint_state",
    "update_checkpoint_state_internal",
    "generate_checkpoint_state_proto",
    "checkpoint_exists",
    "checkpoint_exists_internal",
    "get_checkpoint_mtimes",
    "remove_checkpoint",
    "meta_graph_filename",
    "get_matching_files",
    "V1",
    "V2",
]

logger = logging.getLogger(__name__)

#: ``SaverDef.CheckpointFormatVersion`` values (``saver.proto``).
V1 = 1
V2 = 2

_DEFAULT_STATE_FILENAME = "checkpoint"


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _relpath(path: str, start: str) -> str:
    """``os.path.relpath``, raising InvalidArgumentError (a ValueError, as
    TensorFlow's call raises) for an empty path."""
    try:
        return os.path.relpath(path, start)
    except ValueError as e:
        raise InvalidArgumentError(f"{e} (checkpoint path {path!r} relative to {start!r})") from None


def _state_filename(save_dir: str, latest_filename: Optional[str]) -> str:
    """Path of the state file: ``join(save_dir, latest_filename or "checkpoint")``."""
    if latest_filename is None:
        latest_filename = _DEFAULT_STATE_FILENAME
    return os.path.join(save_dir, _fspath(latest_filename))


def _prefix_to_checkpoint_path(prefix: str, format_version: int) -> str:
    """The file that identifies a checkpoint: ``PREFIX.index`` (V2) or ``PREFIX`` (V1)."""
    if format_version == V2:
        return prefix + ".index"
    return prefix


# --------------------------------------------------------------------------------------
# The state file
# --------------------------------------------------------------------------------------


def generate_checkpoint_state_proto(
    save_dir: PathLike,
    model_checkpoint_path: PathLike,
    all_model_checkpoint_paths: Optional[Sequence[PathLike]] = None,
    all_model_checkpoint_timestamps: Optional[Sequence[float]] = None,
    last_preserved_timestamp: Optional[float] = None,
) -> CheckpointState:
    """Builds a ``CheckpointState`` (``tf.compat.v1.train.generate_checkpoint_state_proto``).

    Args:
      save_dir: directory of the checkpoints.
      model_checkpoint_path: the newest checkpoint prefix.
      all_model_checkpoint_paths: prefixes of all kept checkpoints, oldest
        first; ``model_checkpoint_path`` is appended if it is not the last one.
        The argument itself is left unchanged.
      all_model_checkpoint_timestamps: seconds since the Epoch, one per path.
      last_preserved_timestamp: seconds since the Epoch of the last checkpoint
        kept for good (``keep_checkpoint_every_n_hours``).

    Returns:
      The message. If ``save_dir`` is relative, every relative path is made
      relative to it (``os.path.relpath``); absolute paths are left as they are.

    Raises:
      ValueError: timestamps were given but their number differs from the
        number of paths (after the append).
    """
    save_dir = _fspath(save_dir)
    model_checkpoint_path = _fspath(model_checkpoint_path)
    paths = [_fspath(p) for p in (all_model_checkpoint_paths or ())]

    if not paths or paths[-1] != model_checkpoint_path:
        logger.debug("%s is not in all_model_checkpoint_paths. Manually adding it.", model_checkpoint_path)
        paths.append(model_checkpoint_path)

    if all_model_checkpoint_timestamps and len(all_model_checkpoint_timestamps) != len(paths):
        raise InvalidArgumentError(
            "Checkpoint timestamps, if provided, must match checkpoint paths (got paths "
            f"{paths} and timestamps {list(all_model_checkpoint_timestamps)})"
        )

    if not os.path.isabs(save_dir):
        if not os.path.isabs(model_checkpoint_path):
            model_checkpoint_path = _relpath(model_checkpoint_path, save_dir)
        paths = [p if os.path.isabs(p) else _relpath(p, save_dir) for p in paths]

    return CheckpointState(
        model_checkpoint_path=model_checkpoint_path,
        all_model_checkpoint_paths=paths,
        all_model_checkpoint_timestamps=all_model_checkpoint_timestamps,
        last_preserved_timestamp=last_preserved_timestamp,
    )


def update_checkpoint_state(
    save_dir: PathLike,
    model_checkpoint_path: PathLike,
    all_model_checkpoint_paths: Optional[Sequence[PathLike]] = None,
    latest_filename: Optional[str] = None,
    all_model_checkpoint_timestamps: Optional[Sequence[float]] = None,
    last_preserved_timestamp: Optional[float] = None,
    save_relative_paths: bool = False,
    *,
    durable: bool = True,
) -> None:
    """Writes the state file ``save_dir/latest_filename`` (default ``checkpoint``).

    ``tf.compat.v1.train.update_checkpoint_state``, plus TensorFlow's internal
    ``save_relative_paths`` option (used by ``Saver(save_relative_paths=True)``
    and ``tf.train.CheckpointManager``). The file is a text-format
    ``CheckpointState``, byte-identical to TensorFlow's for the same arguments.

    Path rules: with ``save_relative_paths`` every absolute path is first made
    relative to ``save_dir``; then, if ``save_dir`` is relative, every relative
    path is made relative to ``save_dir`` (see
    :func:`generate_checkpoint_state_proto`). So a relative ``save_dir`` gives
    relative paths, an absolute one gives the paths as passed (absolute, for a
    Saver) unless ``save_relative_paths``.

    The file is replaced atomically: the text goes to a temporary file,
    ``<state file>.tempstate-fastckpt-<16 hex>``, locked by the writer, which
    is renamed over the state file; a reader sees the old or the new file,
    never a partial one. TensorFlow names its temporary file
    ``<state file>.tmp<uuid4 hex>``; fastckpt's own name lets the next save
    into the directory remove what a killed writer left, and nothing else.

    Args:
      save_dir: directory of the checkpoints; the state file is written there.
      model_checkpoint_path: the newest checkpoint prefix.
      all_model_checkpoint_paths: prefixes of all kept checkpoints, oldest first.
      latest_filename: name of the state file in ``save_dir``.
      all_model_checkpoint_timestamps: creation times, one per path.
      last_preserved_timestamp: time of the last checkpoint kept for good.
      save_relative_paths: write absolute paths relative to ``save_dir``.
      durable: fsync the new file before the rename and the directory after it,
        so the update survives a power loss (keyword only; fastckpt's addition).

    Raises:
      ValueError: timestamps do not match the paths in number.
      RuntimeError: the state file would be the checkpoint prefix itself.
      CheckpointIOError: the file could not be written (an ``OSError``).
    """
    update_checkpoint_state_internal(
        save_dir,
        model_checkpoint_path,
        all_model_checkpoint_paths=all_model_checkpoint_paths,
        latest_filename=latest_filename,
        save_relative_paths=save_relative_paths,
        all_model_checkpoint_timestamps=all_model_checkpoint_timestamps,
        last_preserved_timestamp=last_preserved_timestamp,
        durable=durable,
    )


def update_checkpoint_state_internal(
    save_dir: PathLike,
    model_checkpoint_path: PathLike,
    all_model_checkpoint_paths: Optional[Sequence[PathLike]] = None,
    latest_filename: Optional[str] = None,
    save_relative_paths: bool = False,
    all_model_checkpoint_timestamps: Optional[Sequence[float]] = None,
    last_preserved_timestamp: Optional[float] = None,
    *,
    durable: bool = True,
) -> None:
    """:func:`update_checkpoint_state` with TensorFlow's internal argument order.

    Same as ``tf.__internal__.train.update_checkpoint_state`` (what ``Saver`` and
    ``CheckpointManager`` call): ``save_relative_paths`` comes fifth.
    """
    save_dir = _fspath(save_dir)
    model_checkpoint_path = _fspath(model_checkpoint_path)
    state_file = _state_filename(save_dir, latest_filename)
    paths = [_fspath(p) for p in (all_model_checkpoint_paths or ())]
    if save_relative_paths:
        if os.path.isabs(model_checkpoint_path):
            model_checkpoint_path = _relpath(model_checkpoint_path, save_dir)
        paths = [_relpath(p, save_dir) if os.path.isabs(p) else p for p in paths]
    ckpt = generate_checkpoint_state_proto(
        save_dir,
        model_checkpoint_path,
        all_model_checkpoint_paths=paths,
        all_model_checkpoint_timestamps=all_model_checkpoint_timestamps,
        last_preserved_timestamp=last_preserved_timestamp,
    )

    if state_file == ckpt.model_checkpoint_path:
        raise FailedPreconditionError(
            f"Save path '{model_checkpoint_path}' conflicts with path used for checkpoint "
            f"state '{state_file}'. Please use a different save path."
        )

    _atomic_write(state_file, text_format.MessageToString(ckpt).encode("utf-8"), durable)


def _atomic_write(path: str, data: bytes, durable: bool) -> None:
    """Replaces the state file ``path`` with ``data`` atomically."""
    atomic_write(_os_path(path), data, durable=durable, what="checkpoint state file")


def get_checkpoint_state(checkpoint_dir: PathLike, latest_filename: Optional[str] = None) -> Optional[CheckpointState]:
    """Reads the state file ``checkpoint_dir/latest_filename`` (``tf.train.get_checkpoint_state``).

    Relative paths in the file are joined onto ``checkpoint_dir``
    (``os.path.join``); absolute ones are returned as they are.

    Returns:
      The ``CheckpointState``, or None if the file does not exist, cannot be
      read (a directory, no permission...) or is not a valid text proto.

    Raises:
      ValueError: the file has no ``model_checkpoint_path`` (an empty file
        included), or (``UnicodeDecodeError``) it is not UTF-8 text.
    """
    checkpoint_dir = _fspath(checkpoint_dir)
    state_file = _state_filename(checkpoint_dir, latest_filename)
    if not _file_exists(state_file):
        return None
    try:
        with open(_os_path(state_file), "rb") as f:
            content = f.read()
    except OSError as e:
        logger.warning("%s: %s", type(e).__name__, e)
        logger.warning("%s: Checkpoint ignored", state_file)
        return None
    text = content.decode("utf-8")  # TensorFlow reads text mode: UnicodeDecodeError propagates
    ckpt = CheckpointState()
    try:
        text_format.Merge(text, ckpt)
    except text_format.ParseError as e:
        logger.warning("%s: %s", type(e).__name__, e)
        logger.warning("%s: Checkpoint ignored", state_file)
        return None
    if not ckpt.model_checkpoint_path:
        raise InvalidArgumentError(
            f"Invalid checkpoint state loaded from {checkpoint_dir}: '{state_file}' has no model_checkpoint_path"
        )
    if not os.path.isabs(ckpt.model_checkpoint_path):
        ckpt.model_checkpoint_path = os.path.join(checkpoint_dir, ckpt.model_checkpoint_path)
    for i, p in enumerate(ckpt.all_model_checkpoint_paths):
        if not os.path.isabs(p):
            ckpt.all_model_checkpoint_paths[i] = os.path.join(checkpoint_dir, p)
    return ckpt


def latest_checkpoint(checkpoint_dir: PathLike, latest_filename: Optional[str] = None) -> Optional[str]:
    """Prefix of the newest checkpoint in ``checkpoint_dir`` (``tf.train.latest_checkpoint``).

    Reads the state file (:func:`get_checkpoint_state`) and returns its
    ``model_checkpoint_path`` if that checkpoint exists: ``PREFIX.index``
    (V2) or the file ``PREFIX`` (V1) matches (glob semantics, see
    :func:`get_matching_files`).

    Returns:
      The prefix, or None if there is no state file or its checkpoint is gone.

    Raises:
      ValueError: as :func:`get_checkpoint_state`.
    """
    ckpt = get_checkpoint_state(checkpoint_dir, latest_filename)
    if ckpt is not None and ckpt.model_checkpoint_path:
        prefix = ckpt.model_checkpoint_path
        if get_matching_files(_prefix_to_checkpoint_path(prefix, V2)) or get_matching_files(
            _prefix_to_checkpoint_path(prefix, V1)
        ):
            return prefix
        logger.error("Couldn't match files for checkpoint %s", prefix)
    return None


# --------------------------------------------------------------------------------------
# Checkpoint files
# --------------------------------------------------------------------------------------


def checkpoint_exists_internal(checkpoint_prefix: PathLike) -> bool:
    """True if ``PREFIX.index`` (V2) or ``PREFIX`` (V1) matches (glob semantics)."""
    prefix = _fspath(checkpoint_prefix)
    return bool(get_matching_files(_prefix_to_checkpoint_path(prefix, V2)) or get_matching_files(prefix))


def checkpoint_exists(checkpoint_prefix: PathLike) -> bool:
    """Whether a V2 or V1 checkpoint exists (``tf.compat.v1.train.checkpoint_exists``).

    ``checkpoint_prefix`` is a glob pattern, as in TensorFlow: a V2 checkpoint
    exists if ``PREFIX.index`` matches a path, a V1 one if ``PREFIX`` does.
    """
    return checkpoint_exists_internal(checkpoint_prefix)


def get_checkpoint_mtimes(checkpoint_prefixes: Iterable[PathLike]) -> List[float]:
    """Modification times of checkpoints (``tf.compat.v1.train.get_checkpoint_mtimes``).

    For each prefix, the mtime of the first path matching ``PREFIX.index``, or
    else ``PREFIX`` (V1); prefixes with no match are skipped, so the result may
    be shorter than the input. As in TensorFlow the values are seconds since
    the Epoch, truncated to whole seconds (TensorFlow's ``Stat`` drops the
    sub-second part), as floats.

    Raises:
      CheckpointIOError: a matching path cannot be ``stat``-ed.
    """
    mtimes: List[float] = []
    for prefix in checkpoint_prefixes:
        prefix = _fspath(prefix)
        for pathname in (_prefix_to_checkpoint_path(prefix, V2), prefix):
            names = get_matching_files(pathname)
            if names:
                try:
                    st = os.stat(_os_path(names[0]))
                except OSError as e:
                    raise io_error(e, f"cannot stat checkpoint file '{names[0]}'") from None
                mtimes.append(float(st.st_mtime_ns // 1_000_000_000))
                break
    return mtimes


def _delete_matching_files(pattern: str) -> None:
    """Deletes every path matching ``pattern``; one already gone is only logged."""
    for pathname in get_matching_files(pattern):
        try:
            os.unlink(_os_path(pathname))
        except FileNotFoundError:
            logger.warning(
                "Hit NotFoundError when deleting '%s', possibly because another "
                "process/thread is also deleting/moving the same file",
                pathname,
            )
        except OSError as e:
            raise io_error(e, f"cannot delete checkpoint file '{pathname}'") from None


def remove_checkpoint(
    checkpoint_prefix: PathLike, checkpoint_format_version: int = V2, meta_graph_suffix: str = "meta"
) -> None:
    """Deletes a checkpoint's files (``tf.compat.v1.train.remove_checkpoint``).

    Deletes what matches ``meta_graph_filename(prefix, meta_graph_suffix)``
    and, for V2, ``PREFIX.index`` and ``PREFIX.data-?????-of-?????``; for any
    other version, the file ``PREFIX``. All are glob patterns. Files already
    gone are ignored.

    Raises:
      CheckpointIOError: a matching path could not be deleted (a directory, no
        permission...).
    """
    prefix = _fspath(checkpoint_prefix)
    _delete_matching_files(meta_graph_filename(prefix, meta_graph_suffix))
    if checkpoint_format_version == V2:
        _delete_matching_files(prefix + ".index")
        _delete_matching_files(prefix + ".data-?????-of-?????")
    else:
        _delete_matching_files(prefix)


_SHARD_SUFFIX = re.compile(r"-[\d\?]+-of-\d+$")


def meta_graph_filename(checkpoint_filename: PathLike, meta_graph_suffix: str = "meta") -> str:
    """The ``.meta`` file of a checkpoint: ``PREFIX.meta``.

    A sharded V1 name's ``-NNNNN-of-MMMMM`` (or ``-?????-of-MMMMM``) suffix
    is dropped first: ``model.ckpt-7-00001-of-00002`` -> ``model.ckpt-7.meta``.
    """
    basename = _SHARD_SUFFIX.sub("", _fspath(checkpoint_filename))
    return basename + "." + meta_graph_suffix
