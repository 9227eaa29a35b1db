"""Writing one bundle in groups, so that producing the next group's arrays
overlaps writing the previous one and only two groups are held at a time.

A save normally hands the native writer every array at once. Two callers
cannot: the drop-in Saver, whose arrays come out of ``sess.run`` (a copy per
fetch, so fetching everything first doubles the memory and serialises the
fetch before the write), and ``convert``, whose source may be larger than
memory. Both know every tensor's size up front, so they plan groups first
(:func:`plan_groups`), then write each group as one data file of the bundle:
group ``i`` is the partial save job of shard ``i`` of ``len(groups)``
(the same native jobs a multi-rank save uses), written on a background
thread while the caller produces group ``i + 1``. :meth:`commit` writes the
one index over every group's entries and publishes the files with the
bundle's commit protocol (``_native.commit_bundle``): until then nothing
under the prefix changes, and a failure or :meth:`abort` removes every
temporary file.

The resulting bundle is an ordinary TensorFlow bundle with ``len(groups)``
data files; entries are sorted by name in the index as always.

Thread-safety: one writer is used by one thread. Its background writes run
on a private thread, which releases the GIL inside the native writer.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from . import _native, config
from . import compression as _compression
from ._progress import logger
from .errors import FastCkptError, InvalidArgumentError
from .writer import prepare_items, start_job

#: Bytes per group when the caller does not say: large enough that each data
#: file is written at full speed by every writer thread, small enough that two
#: groups in memory are a small fraction of a large checkpoint.
DEFAULT_GROUP_BYTES = 128 << 20

#: TensorFlow's data file names have five digits of shard count.
MAX_GROUPS = 99999


def plan_groups(sizes: Sequence[Tuple[str, int]], group_bytes: int = DEFAULT_GROUP_BYTES) -> List[List[str]]:
    """Splits ``(name, nbytes)`` pairs, in the order given, into consecutive
    groups of about `group_bytes` each (a tensor larger than that is a group
    of its own). Returns at least one group (empty when `sizes` is empty) and
    at most :data:`MAX_GROUPS`: with more tensors than that, the groups grow.
    """
    if not isinstance(group_bytes, int) or group_bytes < 1:
        raise InvalidArgumentError(f"group_bytes must be a positive number of bytes, not {group_bytes!r}")
    total = sum(n for _, n in sizes)
    group_bytes = max(group_bytes, -(-total // MAX_GROUPS))
    groups: List[List[str]] = [[]]
    filled = 0
    for name, n in sizes:
        if groups[-1] and filled + n > group_bytes:
            groups.append([])
            filled = 0
        groups[-1].append(name)
        filled += n
    return groups


class BundleStreamWriter:
    """Writes the bundle `prefix` as `num_groups` data files, one group of
    tensors at a time; see the module docstring.

    Call :meth:`write_group` exactly `num_groups` times, then :meth:`commit`.
    As a context manager, leaving the block without a commit aborts.
    """

    def __init__(
        self,
        prefix: str,
        num_groups: int,
        *,
        durable: bool = True,
        threads: Optional[int] = None,
        sort_data: bool = True,
        compression: Optional[str] = None,
        compression_level: Optional[int] = None,
        files_per_group: int = 1,
    ) -> None:
        if not isinstance(num_groups, int) or not 1 <= num_groups <= MAX_GROUPS:
            raise InvalidArgumentError(f"a bundle written in groups has 1..{MAX_GROUPS} groups, not {num_groups!r}")
        config.check_positive(threads=threads, files_per_group=files_per_group)
        if num_groups * files_per_group > MAX_GROUPS:
            raise InvalidArgumentError(
                f"{num_groups} groups of {files_per_group} data files are more "
                f"than the {MAX_GROUPS} data files a bundle can name"
            )
        # Files written at once: ext4 (and most file systems) serialise
        # writes to one file, so a group written by several threads needs
        # as many files to write in parallel.
        self.files_per_group = files_per_group
        self.prefix = os.fspath(prefix)
        self.num_groups = num_groups
        self.durable = bool(durable)
        self.threads = threads
        self.sort_data = sort_data
        self.data_bytes = 0
        self._jobs: List[Any] = []
        self._entries: List[Any] = []
        self._data_files: List[Any] = []
        self._pending: Optional[threading.Thread] = None
        self._pending_result: Dict[str, Any] = {}
        self._pending_keep: List[Any] = []
        self._closed = False
        # Compression (fastckpt.compression): each group's tensors are
        # compressed before its job starts; the frame table of every group
        # goes into the last group's data file, and the commit puts the
        # logical dtypes and shapes back into the index.
        self._codec = _compression.check_options(compression, compression_level)
        self._tables: Dict[bytes, Any] = {}
        self._logical: Dict[bytes, Tuple[int, Tuple[int, ...]]] = {}

    def __enter__(self) -> "BundleStreamWriter":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if not self._closed:
            self.abort()

    def _check_open(self) -> None:
        """Raises unless another group may be written."""
        if self._closed:
            raise InvalidArgumentError(f"the bundle '{self.prefix}' was already committed or aborted")
        if len(self._jobs) >= self.num_groups:
            raise InvalidArgumentError(
                f"the bundle '{self.prefix}' was planned with {self.num_groups} groups; "
                "write_group was called once more"
            )

    def write_group(self, tensors: Mapping[str, Any]) -> None:
        """Starts writing one group (name -> array; the arrays must stay
        unchanged until the next call or :meth:`commit` returns). Waits for the
        previous group's write first, and raises its error if it failed."""
        self._check_open()
        items, keep = prepare_items(tensors)
        self.write_items(items, [tensors, keep], tensors)

    def write_items(self, items: List[Any], keep: Any, named: Optional[Mapping[str, Any]] = None) -> None:
        """:meth:`write_group` for items already prepared by
        :func:`fastckpt.writer.prepare_items` (or ``prepare_item``); `keep`
        holds what they reference until the group is written. With
        compression, `named` maps names to the values the items were made
        from (device arrays are copied to the host through it)."""
        self._check_open()
        self._wait()
        shard = len(self._jobs)
        if self._codec is not None:
            items, tables, logical = _compression.compress_items(
                items, named or {}, level=self._codec[1], threads=self.threads
            )
            self._tables.update(tables)
            self._logical.update(logical)
            keep = [keep, items]  # the compressed bytes, until written
            if shard == self.num_groups - 1 and self._tables:
                items = items + [_compression.frames_item(self._tables)]
        job = start_job(
            items,
            self.prefix,
            num_shards=self.files_per_group,
            threads=self.threads,
            durable=self.durable,
            sort_data=self.sort_data,
            shard_base=shard * self.files_per_group,
            total_shards=self.num_groups * self.files_per_group,
            commit=False,
        )
        self._jobs.append(job)
        self._pending_keep = [keep]
        self._pending_result = {}
        thread = threading.Thread(
            target=self._finish, args=(job, self._pending_result), name="fastckpt-bundle-group", daemon=True
        )
        self._pending = thread
        thread.start()

    @staticmethod
    def _finish(job: Any, out: Dict[str, Any]) -> None:
        try:
            out["result"] = job.finish()  # releases the GIL while writing
        except BaseException as e:  # noqa: BLE001 - re-raised on the caller's thread
            out["error"] = e

    def wait(self) -> None:
        """Waits until the groups started so far are written; raises the
        error of one that failed."""
        if self._closed:
            raise InvalidArgumentError(f"the bundle '{self.prefix}' was already committed or aborted")
        self._wait()

    def _wait(self) -> None:
        thread, self._pending = self._pending, None
        if thread is None:
            return
        thread.join()
        self._pending_keep = []
        out = self._pending_result
        if "error" in out:
            raise out["error"]
        result = out["result"]
        self._entries.extend(result["entries"])
        self._data_files.extend(result["data_files"])
        self.data_bytes += int(result.get("data_bytes", 0))

    def commit(self) -> List[str]:
        """Waits for the last group, writes the index and publishes every file
        (the checkpoint appears at once). Returns the final file names, data
        files first. On failure nothing new is left under the prefix."""
        if self._closed:
            raise InvalidArgumentError(f"the bundle '{self.prefix}' was already committed or aborted")
        try:
            self._wait()
            if len(self._jobs) != self.num_groups:
                raise InvalidArgumentError(
                    f"the bundle '{self.prefix}' was planned with {self.num_groups} groups but "
                    f"{len(self._jobs)} were written"
                )
            logger.debug("committing %s: %d data files written in groups", self.prefix, self.num_groups)
            entries = self._entries
            if self._logical:
                entries = _compression.rewrite_entries(entries, self._logical)
            files = _native.commit_bundle(
                self.prefix,
                entries,
                self._data_files,
                self.num_groups * self.files_per_group,
                durable=self.durable,
                min_consumer=_native.COMPRESSED_MIN_CONSUMER if self._tables else 0,
            )
        except BaseException:
            self.abort()
            raise
        self._release(True)
        return files

    def abort(self) -> None:
        """Stops and removes every temporary file; the prefix is untouched."""
        if self._closed:
            return
        try:
            if self._pending is not None and self._jobs:
                self._jobs[-1].abort("the save was aborted")
            try:
                self._wait()
            except BaseException:  # noqa: BLE001 - the abort itself, or the error being handled
                pass
        finally:
            self._release(False)

    def _release(self, committed: bool) -> None:
        self._closed = True
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            try:
                job.release(committed)
            except FastCkptError:
                pass  # cleanup is best effort; the outcome is already decided
