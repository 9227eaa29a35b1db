"""``fastckpt.Saver``: a drop-in replacement for ``tf.compat.v1.train.Saver``.

Same constructor arguments, same methods, same files (``PREFIX.index``,
``PREFIX.data-*``, ``PREFIX.meta``, the ``checkpoint`` state file), same
retention rules; the tensor bytes are written and read by fastckpt's native
core. Two kinds of ``var_list`` are accepted:

* TensorFlow variables (graph mode, or eager with an explicit ``var_list``):
  see :mod:`fastckpt._tf_backend`. TensorFlow is imported only then.
* A dict of name -> array (numpy, CuPy, torch, JAX): no TensorFlow needed.
  ``save(None, path)`` writes the arrays; ``restore(None, path)`` fills them
  in place (immutable arrays such as JAX's are replaced, see ``restore``).

The pieces live beside it: the backends (:mod:`fastckpt._saver_backend`
states their contract), retention and the shared state file
(:mod:`fastckpt._retention`), framework detection (:mod:`fastckpt._framework`)
and the module functions ``import_meta_graph``/``export_meta_graph``
(:mod:`fastckpt._saver_meta_graph`). This module is the front end: paths, the
commit protocol and background saves.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import checkpoint_management as cm
from . import compression as _compression
from . import config
from ._array_backend import ArrayBackend
from ._bundle_stream import BundleStreamWriter
from ._framework import tf_loaded, url_scheme, uses_tensorflow
from ._progress import log_done, logger
from ._retention import CheckpointHistory, locked_directory, other_savers_entries
from ._saver_backend import SaverBackend
from ._saver_meta_graph import export_meta_graph, import_meta_graph
from ._tf_errors import as_tensorflow_error
from .errors import (
    ArgumentTypeError,
    CheckpointIOError,
    FastCkptError,
    InvalidArgumentError,
    UnimplementedError,
    from_os_error,
)
from .reader import CheckpointReader
from .writer import start_background, start_job, write_items

if TYPE_CHECKING:
    from ._tf_backend import TFBackend

__all__ = ["Saver", "import_meta_graph", "export_meta_graph"]

PathLike = Union[str, "os.PathLike[str]"]

# SaverDef.CheckpointFormatVersion
LEGACY, V1, V2 = 0, 1, 2


def _bundle_bytes(prefix: str) -> int:
    """Bytes in a committed bundle's data files (for the log line)."""
    total = 0
    for path in glob.glob(glob.escape(prefix) + ".data-[0-9]*-of-[0-9]*"):
        try:
            total += os.path.getsize(path)
        except OSError:
            pass  # removed meanwhile by another saver's retention
    return total


def _read_bytes_or_none(path: str) -> Optional[bytes]:
    """The file's bytes, or None when it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


@dataclasses.dataclass(frozen=True)
class _CommitTarget:
    """What one save commits, and where (see :meth:`Saver._commit`)."""

    checkpoint_file: str  # the new checkpoint's prefix
    meta_file: str
    save_path: str  # the prefix as given (without the step)
    save_path_parent: str  # the directory of the state file
    latest_filename: str  # the state file's name
    meta_graph_suffix: str
    write_meta: Optional[Callable[[], None]]  # None: no .meta
    write_state: bool


class Saver:
    """Saves and restores variables, as ``tf.compat.v1.train.Saver`` does.

    Args:
        var_list: ``None`` (all saveable TensorFlow variables of the default
            graph), a list of TensorFlow variables, or a dict name -> variable or
            name -> array (numpy, CuPy, torch, JAX; no TensorFlow needed).
        reshape, sharded, max_to_keep, keep_checkpoint_every_n_hours, name,
        restore_sequentially, saver_def, builder, defer_build, allow_empty,
        write_version, pad_step_number, save_relative_paths, filename:
            as in TensorFlow. With arrays, ``reshape``, ``restore_sequentially``
            and ``builder`` have no effect (there is no graph to build);
            ``sharded=True`` writes one data shard per thread; ``write_version``
            must be V2 (fastckpt writes only the V2 format).
        threads: I/O threads of the native core (default: cores).
        num_shards: data files per checkpoint (default: by size and threads;
            with ``sharded=True`` and TensorFlow variables, one per device as TF).
        durable: fsync data, index, ``.meta`` and state file before each becomes
            visible (default True; TensorFlow's Saver does not fsync).
        compression, compression_level: as for :func:`fastckpt.save`; set
            once for every checkpoint this Saver writes (``save`` keeps
            TensorFlow's signature). ``"zstd"`` checkpoints restore with any
            fastckpt Saver or reader; TensorFlow's own Saver refuses them
            (``fastckpt convert SRC DST --compression none`` makes a copy it
            restores). Saves that TensorFlow's own ops write (V1, URLs,
            variant saveables) are never compressed.
    """

    def __init__(
        self,
        var_list: Any = None,
        reshape: bool = False,
        sharded: bool = False,
        max_to_keep: Optional[int] = 5,
        keep_checkpoint_every_n_hours: float = 10000.0,
        name: Optional[str] = None,
        restore_sequentially: bool = False,
        saver_def: Any = None,
        builder: Any = None,
        defer_build: bool = False,
        allow_empty: bool = False,
        write_version: int = V2,
        pad_step_number: bool = False,
        save_relative_paths: bool = False,
        filename: Optional[str] = None,
        *,
        threads: Optional[int] = None,
        num_shards: Optional[int] = None,
        durable: bool = True,
        compression: Optional[str] = None,
        compression_level: Optional[int] = None,
    ) -> None:
        if write_version not in (V1, V2):
            raise InvalidArgumentError(f"write_version must be V1 (1) or V2 (2), not {write_version!r}")
        if defer_build and var_list:
            raise InvalidArgumentError(
                "If `var_list` is provided then build cannot be deferred. Either set defer_build=False "
                "or var_list=None."
            )
        self._history = CheckpointHistory(max_to_keep, keep_checkpoint_every_n_hours)
        self._pending: List[Any] = []  # this saver's unfinished background saves, in order
        self._pad_step_number = pad_step_number
        self._save_relative_paths = save_relative_paths
        self._sharded = sharded
        self._threads = threads
        self._num_shards = num_shards
        self._durable = durable
        self._compression = _compression.check_options(compression, compression_level)
        self._backend: SaverBackend
        self._tensorflow = uses_tensorflow(var_list)
        # V1 (deprecated in TensorFlow) is TensorFlow's own writer's: a V1
        # Saver hands every save, and its retention, to TensorFlow's Saver.
        self._v1 = write_version == V1
        self._handed_to_tf = self._v1  # whether TensorFlow's Saver keeps the retention list
        if self._v1 and not self._tensorflow:
            raise InvalidArgumentError(
                "write_version=V1 is TensorFlow's deprecated format, written by TensorFlow's own Saver: "
                "it needs TensorFlow variables (fastckpt writes V2 for arrays)"
            )
        if self._tensorflow:
            if var_list is None and saver_def is None and not tf_loaded():
                raise InvalidArgumentError("var_list is required without TensorFlow: pass a dict of name -> array")
            from ._tf_backend import TFBackend

            self._backend = TFBackend(
                var_list,
                reshape=reshape,
                sharded=sharded,
                max_to_keep=max_to_keep,
                keep_checkpoint_every_n_hours=keep_checkpoint_every_n_hours,
                name=name,
                restore_sequentially=restore_sequentially,
                saver_def=saver_def,
                builder=builder,
                defer_build=defer_build,
                allow_empty=allow_empty,
                pad_step_number=pad_step_number,
                save_relative_paths=save_relative_paths,
                filename=filename,
                write_version=write_version,
            )
        else:
            self._backend = ArrayBackend(
                var_list,
                sharded=sharded,
                max_to_keep=max_to_keep,
                keep_checkpoint_every_n_hours=keep_checkpoint_every_n_hours,
                name=name,
                allow_empty=allow_empty,
                filename=filename,
            )
        if not defer_build:
            self._on_built()

    # -- TensorFlow-compatible surface ------------------------------------
    @property
    def saver_def(self) -> Any:
        """The SaverDef (TensorFlow's, or fastckpt's own proto without TensorFlow)."""
        return self._backend.saver_def

    def as_saver_def(self) -> Any:
        return self._backend.saver_def

    def build(self) -> None:
        """Builds the save/restore ops (TensorFlow graphs with ``defer_build=True``)."""
        self._backend.build()
        self._on_built()

    def _on_built(self) -> None:
        # As in TensorFlow: the retention settings are the SaverDef's (which a
        # saver_def argument supplies), and the keep-every-N-hours clock starts
        # when the saver is built.
        retention = self._backend.retention()
        max_to_keep, keep_hours = (
            retention if retention is not None else (self._history.max_to_keep, self._history.keep_hours)
        )
        self._history.start_clock(max_to_keep, keep_hours)

    def _tf(self) -> "TFBackend":
        """The TensorFlow backend (precondition: ``self._tensorflow``)."""
        assert self._tensorflow
        return self._backend  # type: ignore[return-value]

    @property
    def last_checkpoints(self) -> List[str]:
        """Prefixes of the checkpoints still managed, oldest first."""
        if self._handed_to_tf:
            return list(self._tf().tf_saver().last_checkpoints)
        return self._history.paths()

    def set_last_checkpoints(self, last_checkpoints: Sequence[str]) -> None:
        """DEPRECATED in TensorFlow: sets the list with timestamps of +inf (never deleted)."""
        if not isinstance(last_checkpoints, list):
            raise ArgumentTypeError("last_checkpoints must be a list")
        if self._handed_to_tf:
            self._tf().tf_saver().set_last_checkpoints(last_checkpoints)
        self._history.set([(s, float("inf")) for s in last_checkpoints])

    def set_last_checkpoints_with_time(self, last_checkpoints_with_time: Sequence[Tuple[str, float]]) -> None:
        """Sets the managed checkpoints as ``[(prefix, timestamp)]``."""
        if not isinstance(last_checkpoints_with_time, list):
            raise ArgumentTypeError("last_checkpoints_with_time must be a list")
        if self._handed_to_tf:
            self._tf().tf_saver().set_last_checkpoints_with_time(last_checkpoints_with_time)
        self._history.set(last_checkpoints_with_time)

    def recover_last_checkpoints(self, checkpoint_paths: Sequence[str]) -> None:
        """Resumes management of existing checkpoints (timestamps = file mtimes)."""
        checkpoints_with_mtimes = []
        for path in checkpoint_paths:
            try:
                mtime = cm.get_checkpoint_mtimes([path])
            except Exception:  # noqa: BLE001 - TensorFlow skips unreadable paths too
                continue
            if mtime:
                checkpoints_with_mtimes.append((path, mtime[0]))
        self.set_last_checkpoints_with_time(checkpoints_with_mtimes)

    def save(
        self,
        sess: Any,
        save_path: PathLike,
        global_step: Any = None,
        latest_filename: Optional[str] = None,
        meta_graph_suffix: str = "meta",
        write_meta_graph: bool = True,
        write_state: bool = True,
        strip_default_attrs: bool = False,
        save_debug_info: bool = False,
        blocking: bool = True,
    ) -> Any:
        """Saves the variables; returns the checkpoint prefix (None for an empty saver).

        With ``blocking=False`` (a fastckpt extension) the call returns once a
        consistent snapshot of the values is taken, with an :class:`AsyncSave`
        whose ``result()`` is the checkpoint prefix. The data, ``.meta``, state
        file and retention follow in the background, in the order of the
        calls; the state file names the checkpoint only once it is complete. A
        blocking save waits for this saver's pending background saves first.

        ``sess`` is a ``tf.compat.v1.Session`` for graph-mode TensorFlow variables,
        and is ignored (pass None) for arrays and in eager mode.

        Raises:
            ValueError: ``latest_filename`` has path parts or collides with
                ``save_path``, or the parent directory of ``save_path`` is missing.
            RuntimeError: ``build()`` was deferred and not called.
            CheckpointIOError: an OS error (``errno`` set) writing the data, index,
                ``.meta`` or state file. The new checkpoint's files are removed
                again and the state file and earlier checkpoints are left as they
                were, except that a re-saved prefix keeps its new, complete files
                if only the ``.meta`` or state file failed.
        """
        backend = self._backend
        backend.check_built()
        url = url_scheme(save_path)
        if url and not self._tensorflow:
            raise InvalidArgumentError(
                f"'{os.fspath(save_path)}': {url}:// paths are TensorFlow filesystems, written through "
                "TensorFlow: they need a Saver of TensorFlow variables"
            )
        if self._v1 or url:
            # TensorFlow's own Saver writes V1 files, and writes through its
            # filesystems (file://, ram://, gs://...); fastckpt's native core
            # writes local paths.
            if not blocking:
                raise UnimplementedError(
                    "blocking=False needs write_version=V2 and a local path "
                    "(V1 and URL paths are written by TensorFlow's Saver)"
                )
            if not self._handed_to_tf:
                self._tf().tf_saver().set_last_checkpoints_with_time(list(self._history.last))
                self._handed_to_tf = True
            return (
                self._tf()
                .tf_saver()
                .save(
                    sess,
                    save_path,
                    global_step=global_step,
                    latest_filename=latest_filename,
                    meta_graph_suffix=meta_graph_suffix,
                    write_meta_graph=write_meta_graph,
                    write_state=write_state,
                    strip_default_attrs=strip_default_attrs,
                    save_debug_info=save_debug_info,
                )
            )
        if latest_filename is None:
            latest_filename = "checkpoint"
        if os.path.split(latest_filename)[0]:
            raise InvalidArgumentError("'latest_filename' must not contain path components")
        save_path = os.fspath(save_path)
        if isinstance(save_path, bytes):
            save_path = save_path.decode("utf-8")
        if global_step is not None:
            step = backend.global_step_value(sess, global_step)
            checkpoint_file = f"{save_path}-{step:08d}" if self._pad_step_number else f"{save_path}-{step}"
        else:
            checkpoint_file = save_path
            if os.path.basename(save_path) == latest_filename and not self._sharded:
                raise InvalidArgumentError(
                    f"'latest_filename' collides with 'save_path': '{latest_filename}' and '{save_path}'"
                )
        backend.check_session(sess)
        save_path_parent = os.path.dirname(save_path)
        if not os.path.isdir(save_path_parent or "."):
            # TensorFlow's bundle writer creates the last directory level
            # (non-recursively); a sharded save's merge step cannot.
            grandparent = os.path.dirname(save_path_parent)
            if (
                self._sharded
                or backend.is_empty
                or not os.path.isdir(grandparent or ".")
                or os.path.lexists(save_path_parent)
            ):  # a file (or a dangling link) is in the way
                raise InvalidArgumentError(f"Parent directory of {save_path} doesn't exist, can't save.")
            os.makedirs(save_path_parent, exist_ok=True)
        meta_file = cm.meta_graph_filename(checkpoint_file, meta_graph_suffix=meta_graph_suffix)

        # Captured now, on the caller's thread: an asynchronous save writes
        # the graph (or variable list) of its call, not of its commit.
        write_meta_graph_file = (
            backend.capture_meta_graph(sess, strip_default_attrs=strip_default_attrs, save_debug_info=save_debug_info)
            if write_meta_graph
            else None
        )

        def write_meta() -> None:
            assert write_meta_graph_file is not None  # called only with write_meta_graph
            try:
                write_meta_graph_file(meta_file, self._durable)
            except OSError as e:
                if isinstance(e, CheckpointIOError):
                    raise
                # Every OS error of a save is a CheckpointIOError naming the file.
                raise from_os_error(e, f"cannot write meta graph '{meta_file}'", meta_file) from e

        if backend.is_empty:
            if write_meta_graph:
                write_meta()
            return None
        target = _CommitTarget(
            checkpoint_file,
            meta_file,
            save_path,
            save_path_parent,
            latest_filename,
            meta_graph_suffix,
            write_meta if write_meta_graph else None,
            write_state,
        )
        if not backend.native_io():
            # Saveables whose tensors cannot be fetched into arrays (variant
            # tensors: tf.data iterator state) are written by TensorFlow's own
            # save ops; fastckpt's commit protocol (state file, .meta,
            # retention, cleanup on failure) still applies.
            if not blocking:
                raise UnimplementedError(
                    "blocking=False cannot snapshot saveables whose tensors are not arrays (variant "
                    "tensors, such as tf.data iterator state): save them with blocking=True"
                )
            self._wait_pending()
            tf_backend = self._tf()
            self._commit(lambda: tf_backend.tf_write_bundle(sess, checkpoint_file), target)
            return checkpoint_file
        # A large graph-mode save fetches and writes in groups (each its own
        # data file), so the fetch overlaps the write and only two groups of
        # copies are held at once (see TFBackend.fetch_in_groups).
        group_bytes = config.save_group_bytes()
        grouped = (
            backend.fetch_in_groups(sess, group_bytes) if blocking and group_bytes and not self._num_shards else None
        )
        if grouped is not None:
            self._wait_pending()
            num_groups, groups = grouped

            def write_groups() -> None:
                codec = self._compression or (None, None)
                # A data file per writer thread in each group (one per 32 MiB at most):
                # threads writing one file wait for each other.
                files = max(1, min(self._threads or config.default_threads(), group_bytes // (32 << 20)))
                with BundleStreamWriter(
                    checkpoint_file,
                    num_groups,
                    durable=self._durable,
                    threads=self._threads,
                    sort_data=backend.sort_data,
                    compression=codec[0],
                    compression_level=codec[1],
                    files_per_group=files,
                ) as out:
                    for items, keep in groups:
                        out.write_items(items, keep)
                    out.commit()

            self._commit(write_groups, target)
            return checkpoint_file
        if blocking:
            # A blocking save commits after this saver's background saves, so
            # that the state file and retention see the checkpoints in call
            # order; it waits before the values are taken, not while holding them.
            self._wait_pending()
        with backend.values(sess) as (items, keep):
            # Graph mode reads the variables in place: the values are valid
            # only inside this block, which the blocking save's write and the
            # asynchronous save's snapshot finish in.
            return self._write(items, keep, backend, blocking, target)

    def _write(self, items: Any, keep: Any, backend: SaverBackend, blocking: bool, target: _CommitTarget) -> Any:
        """:meth:`save`'s native path once the items are prepared: writes (or,
        with ``blocking=False``, snapshots and queues) and commits them."""
        checkpoint_file = target.checkpoint_file
        if self._compression is not None:
            return self._save_compressed(items, keep, backend, blocking, target)
        if not blocking:
            job = start_job(
                items,
                checkpoint_file,
                num_shards=self._num_shards or backend.default_shards(),
                threads=self._threads,
                durable=self._durable,
                sort_data=backend.sort_data,
                snapshot_host=True,
            )
            del keep  # the snapshot holds the values once _queue returns
            return self._queue(job, target)

        def write_bundle() -> None:
            write_items(
                items,
                checkpoint_file,
                num_shards=self._num_shards or backend.default_shards(),
                threads=self._threads,
                durable=self._durable,
                sort_data=backend.sort_data,
            )

        self._commit(write_bundle, target)
        del keep
        return checkpoint_file

    def _save_compressed(
        self, items: Any, keep: Any, backend: SaverBackend, blocking: bool, target: _CommitTarget
    ) -> Any:
        """:meth:`save`'s native path with compression (fastckpt.compression):
        the same commit protocol, the bundle written by a CompressedJob."""
        checkpoint_file = target.checkpoint_file
        assert self._compression is not None
        # Arrays by name, through which device arrays are copied to the host
        # to be compressed (TensorFlow's values are fetched to the host already).
        named = getattr(backend, "var_list", None)
        job = _compression.CompressedJob(
            items,
            named if isinstance(named, dict) else {},
            checkpoint_file,
            level=self._compression[1],
            num_shards=self._num_shards or backend.default_shards(),
            threads=self._threads,
            durable=self._durable,
            sort_data=backend.sort_data,
            snapshot_host=not blocking,
        )
        if not blocking:
            del keep  # the snapshot holds the values once _queue returns
            return self._queue(job, target)
        self._commit(lambda: _compression.run_blocking(job), target)
        del keep
        return checkpoint_file

    def _queue(self, job: Any, target: _CommitTarget) -> Any:
        """Takes `job`'s snapshot on this thread and queues its write and the
        commit on the background thread; returns the :class:`AsyncSave`."""

        def finish() -> str:
            self._commit(job.finish, target)
            return target.checkpoint_file

        handle = start_background(job, target.checkpoint_file, finish)
        self._track_pending(handle)
        return handle

    def _wait_pending(self) -> None:
        """Waits for this saver's background saves: a blocking save commits
        after them, so that the state file and retention see the checkpoints
        in call order."""
        for pending in self._pending:
            pending.wait()
        self._pending = []

    def _track_pending(self, handle: Any) -> None:
        """Remembers a background save (and forgets finished ones)."""
        self._pending = [h for h in self._pending if not h.done()] + [handle]

    def _commit(self, write_bundle: Callable[[], Any], target: _CommitTarget) -> None:
        """Writes the bundle, then the .meta and the state file, then applies
        retention; on failure, leaves no new checkpoint and the state file as
        it was."""
        checkpoint_file, meta_file, save_path = target.checkpoint_file, target.meta_file, target.save_path
        save_path_parent, latest_filename = target.save_path_parent, target.latest_filename
        meta_graph_suffix, write_meta, write_state = target.meta_graph_suffix, target.write_meta, target.write_state
        # A failed save leaves no new checkpoint and the state file as it was.
        # The state file is the commit point: the .meta is written before it
        # (TensorFlow writes it after), old checkpoints are deleted only after
        # it, and on any failure up to it the new files are removed again.
        # Re-saving a prefix whose index already existed is the exception: the
        # bundle writer has replaced the old checkpoint by the time it returns,
        # so a later failure keeps the new one (complete and valid) rather than
        # leave nothing under a name the state file may hold.
        index_existed = os.path.exists(checkpoint_file + ".index")
        meta_existed = os.path.exists(meta_file)
        state_file = os.path.join(save_path_parent, latest_filename)
        state_before = _read_bytes_or_none(state_file) if write_state else None
        history_before = self._history.snapshot()
        meta_written = False
        start = time.perf_counter()
        try:
            write_bundle()
            logger.debug("wrote the bundle %s", checkpoint_file)
            if write_meta is not None:
                write_meta()
                meta_written = True
                logger.debug("wrote %s", meta_file)
            if write_state:
                self._history.record(checkpoint_file)
                # Read-modify-write under a lock on the directory, so that
                # savers of other prefixes in other processes lose no entry.
                with locked_directory(save_path_parent):
                    others = other_savers_entries(save_path_parent, latest_filename, save_path, self._history.managed)
                    cm.update_checkpoint_state_internal(
                        save_dir=save_path_parent,
                        model_checkpoint_path=checkpoint_file,
                        all_model_checkpoint_paths=others + self.last_checkpoints,
                        latest_filename=latest_filename,
                        save_relative_paths=self._save_relative_paths,
                        durable=self._durable,
                    )
                logger.debug("committed: the state file %s names %s", state_file, checkpoint_file)
        except BaseException:
            self._history.rollback(history_before)
            # Best effort: the caller needs the original error, not a cleanup one.
            try:
                if write_state and _read_bytes_or_none(state_file) != state_before:
                    # The new state file was renamed into place but its
                    # directory fsync failed: put the old bytes back.
                    if state_before is None:
                        os.unlink(state_file)
                    else:
                        cm._atomic_write(state_file, state_before, self._durable)
                if not (index_existed and os.path.exists(checkpoint_file + ".index")):
                    # Exact names (not remove_checkpoint's glob patterns), the
                    # index first so the checkpoint disappears before its data.
                    doomed = [checkpoint_file + ".index"] + glob.glob(
                        glob.escape(checkpoint_file) + ".data-[0-9][0-9][0-9][0-9][0-9]-of-[0-9][0-9][0-9][0-9][0-9]"
                    )
                    if meta_written or not meta_existed:
                        doomed.append(meta_file)  # never a .meta this save did not write
                    for path in doomed:
                        try:
                            os.unlink(path)
                        except FileNotFoundError:
                            pass
            except OSError:
                pass
            raise
        if write_state:
            self._history.delete_due(meta_graph_suffix)
        if logger.isEnabledFor(logging.INFO):  # the size costs a directory listing
            log_done("saved", checkpoint_file, _bundle_bytes(checkpoint_file), time.perf_counter() - start)

    def restore(self, sess: Any, save_path: Optional[PathLike]) -> Optional[Dict[str, Any]]:
        """Restores the variables from checkpoint ``save_path``.

        Every tensor is read by the native core in parallel and CRC-verified.
        With arrays, mutable ones (numpy, torch, CuPy) are filled in place;
        immutable ones (JAX) are replaced by new arrays, which are also returned as
        a dict name -> array (None when everything was filled in place).

        Raises:
            ValueError: ``save_path`` is None or not a checkpoint.
            DataLossError: damaged checkpoint bytes.
        """
        if self._backend.is_empty:
            return None
        if save_path is None:
            raise InvalidArgumentError("Can't load save_path when it is None.")
        prefix = os.fspath(save_path)
        if isinstance(prefix, bytes):
            prefix = prefix.decode("utf-8")
        if self._tensorflow and url_scheme(prefix):
            self._tf().tf_saver().restore(sess, prefix)  # through TensorFlow's filesystem
            return None
        if not cm.checkpoint_exists_internal(prefix):
            raise InvalidArgumentError("The passed save_path is not a valid checkpoint: " + prefix)
        if self._tensorflow and not os.path.exists(prefix + ".index"):
            # A V1 checkpoint (a file named by the prefix, no index): TensorFlow's reader.
            self._tf().tf_saver().restore(sess, prefix)
            return None
        try:
            if not self._backend.native_io():
                self._tf().tf_saver().restore(sess, prefix)  # variant tensors: TensorFlow's reader
                return None
            start = time.perf_counter()
            with CheckpointReader(prefix, threads=self._threads) as reader:
                restored = self._backend.restore(sess, reader)
                log_done("restored", prefix, reader._native.bytes_processed(), time.perf_counter() - start)
                return restored
        except FastCkptError as e:
            if not self._tensorflow:
                raise
            # A TensorFlow program catches tf.errors.* here: raise an error
            # that is both TensorFlow's class and fastckpt's.
            raise as_tensorflow_error(e) from e.__cause__

    def export_meta_graph(
        self,
        filename: Optional[PathLike] = None,
        collection_list: Any = None,
        as_text: bool = False,
        export_scope: Optional[str] = None,
        clear_devices: bool = False,
        clear_extraneous_savers: bool = False,
        strip_default_attrs: bool = False,
        save_debug_info: bool = False,
    ) -> Any:
        """Returns (and writes, when ``filename`` is given) the MetaGraphDef."""
        return self._backend.export_meta_graph(
            filename,
            collection_list=collection_list,
            as_text=as_text,
            export_scope=export_scope,
            clear_devices=clear_devices,
            clear_extraneous_savers=clear_extraneous_savers,
            strip_default_attrs=strip_default_attrs,
            save_debug_info=save_debug_info,
            durable=self._durable,
        )

    def to_proto(self, export_scope: Optional[str] = None) -> Any:
        return self._backend.to_proto(export_scope)

    @property
    def var_list(self) -> Any:
        """The variables (or the name -> array dict) this saver manages."""
        return self._backend.var_list
