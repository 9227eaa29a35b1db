"""Checking checkpoints without loading them: ``verify`` and ``latest_valid_checkpoint``.

:func:`verify` reads every byte of a checkpoint in parallel in the native
core and checks what :func:`fastckpt.load` would check -- each tensor's
bounds and CRC32C, string tensors' two checksums, partitioned tensors'
slices -- but keeps nothing: memory stays at one small buffer per thread
whatever the checkpoint's size. Unlike a load, it does not stop at the
first bad tensor: the :class:`VerifyReport` (and the
:class:`~fastckpt.DataLossError` raised for a damaged checkpoint) names
every one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Union

import numpy as np

from . import _native, config
from ._progress import ProgressCallback, Tracker, check_callback
from .checkpoint_management import get_checkpoint_state
from .errors import DataLossError, FastCkptError
from .reader import _decode_key, _resolve_prefix

__all__ = ["BadTensor", "VerifyReport", "verify", "latest_valid_checkpoint"]

PathLike = Union[str, "os.PathLike[str]"]

logger = logging.getLogger(__name__)


class BadTensor(NamedTuple):
    """One tensor that failed verification."""

    #: the tensor's name; for a slice of a partitioned tensor, the partitioned
    #: tensor's name, the slice being named in `reason` (``slice '0,4:-': ...``)
    name: str
    file: str  #: the data file holding the bad bytes (the ``.index`` for a slice problem)
    reason: str  #: what is wrong, e.g. ``data checksum mismatch (...)``
    #: False for a damaged slice entry that no tensor lists (readers never use
    #: it); `name` is then the tensor its key names
    listed: bool = True

    def describe(self) -> str:
        """``tensor 'NAME' in 'FILE': REASON``, undecodable name bytes as ``\\xNN``."""
        return f"tensor '{_printable(self.name)}' in '{_printable(self.file)}': {self.reason}"


def _printable(text: str) -> str:
    """`text` (a name or path; undecodable bytes kept as surrogates) fit for a message."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass
class VerifyReport:
    """What :func:`verify` checked and what it found.

    Attributes:
        prefix: the checkpoint prefix (a directory argument resolved).
        tensors: tensors as :func:`fastckpt.list_variables` lists them (a
            partitioned tensor counts once).
        bytes: bytes of tensor data read and checksummed.
        files: data files the checkpoint's tensors live in.
        seconds: wall-clock time of the check.
        bad: every tensor that failed, sorted by name; empty if all is well.
        largest_whole_read: bytes of the largest string or variant tensor.
            Those are decoded whole, so verifying needs that much memory (at
            most about 1 GiB of them at once, or the one larger tensor);
            every other tensor streams through a 1 MiB buffer per thread.
    """

    prefix: str
    tensors: int
    bytes: int
    files: int
    seconds: float
    bad: List[BadTensor] = field(default_factory=list)
    largest_whole_read: int = 0

    @property
    def ok(self) -> bool:
        """True when no tensor is bad."""
        return not self.bad

    @property
    def damaged_tensors(self) -> int:
        """How many listed tensors failed (a tensor with several problems counts once)."""
        return len({b.name for b in self.bad if b.listed})

    @property
    def unlisted_entries(self) -> int:
        """How many damaged slice entries no tensor lists (a part of :attr:`bad`)."""
        return sum(1 for b in self.bad if not b.listed)

    def verdict(self) -> str:
        """``"N problem(s) in M of T tensors"`` (and the damaged unlisted entries)."""
        text = f"{len(self.bad)} problem(s) in {self.damaged_tensors} of {self.tensors} tensors"
        unlisted = self.unlisted_entries
        if unlisted:
            text += f" and {unlisted} slice entr{'y' if unlisted == 1 else 'ies'} no tensor lists"
        return text

    @property
    def gbps(self) -> float:
        """Throughput in GB/s (10^9 bytes per second)."""
        return self.bytes / self.seconds / 1e9 if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: tensors, bytes, files, time and throughput."""
        return (
            f"{self.tensors} tensors, {self.bytes} bytes in {self.files} files, "
            f"{self.seconds:.3f} s ({self.gbps:.2f} GB/s)"
        )


def _damage_message(report: VerifyReport) -> str:
    lines = [f"checkpoint '{_printable(report.prefix)}' is damaged: {report.verdict()}:"]
    lines.extend("  " + bad.describe() for bad in report.bad)
    return "\n".join(lines)


def verify(
    prefix: PathLike,
    *,
    threads: Optional[int] = None,
    chunk_bytes: Optional[int] = None,
    progress: Optional[ProgressCallback] = None,
) -> VerifyReport:
    """Checks every tensor of a checkpoint without loading it.

    Args:
        prefix: the checkpoint prefix, or a directory whose ``checkpoint``
            state file names one (as :func:`fastckpt.load_checkpoint`).
        threads: I/O threads (default: ``FASTCKPT_THREADS`` or the core count).
        chunk_bytes: unit of parallel work (default 8 MiB): larger tensors
            are checked in chunks of this size on several threads.
        progress: a callable taking a :class:`fastckpt.Progress` (bytes
            checked, bytes total, tensors done, tensors total), called on
            this thread at most ten times a second, and once at the end
            (also when damage is found).

    Returns:
        The :class:`VerifyReport` of an intact checkpoint.

    Raises:
        DataLossError: a tensor is damaged (a CRC mismatch, bytes past the end
            of a truncated file, a malformed string tensor, partitioned
            tensor slices that are missing, mismatched, overlapping or not
            covering it). The message names every bad tensor and its file;
            the full report is the exception's ``report`` attribute. Also
            raised, without ``report``, when the index itself is garbled.
            Whatever verify accepts, every reader loads.
        CheckpointNotFoundError: the index or a data file is missing (the
            message names every missing data file).
        CheckpointIOError: the operating system failed a read (e.g. EIO).
        InvalidArgumentError: `threads` or `chunk_bytes` is not a positive integer.
    """
    config.check_positive(threads=threads, chunk_bytes=chunk_bytes)
    resolved = _resolve_prefix(prefix)
    check_callback(progress)
    reader = _native.Reader(resolved)
    try:

        def check() -> Dict[str, Any]:
            return reader.verify(threads or config.default_threads(), chunk_bytes or 0)

        if progress is None:
            raw = check()
        else:
            placed = sorted(
                (shard, offset, size) for _k, _d, _s, shard, offset, size, _c, _sl in reader.entries() if size
            )
            tracker = Tracker(progress, [size for _, _, size in placed])
            raw = tracker.run(check, reader.bytes_processed)
            tracker.report(tracker.total, final=True)
        bad = [BadTensor(_decode_key(name), file, reason, listed) for name, file, reason, listed in raw["bad"]]
        if not bad:
            bad = _chunk_table_problems(reader, resolved)
        if not bad and reader.compressed:
            bad = _frame_table_problems(reader, resolved)
        from .format.frames import FRAMES_KEY

        # The frame table of a compressed checkpoint is checked, not counted as a tensor.
        hidden = 1 if reader.compressed and reader.find(FRAMES_KEY.encode()) >= 0 else 0
    finally:
        reader.close()
    report = VerifyReport(
        prefix=resolved,
        tensors=raw["tensors"] - hidden,
        bytes=raw["bytes"],
        files=raw["files"],
        seconds=raw["seconds"],
        bad=bad,
        largest_whole_read=raw["largest_whole_read"],
    )
    if report.bad:
        error = DataLossError(_damage_message(report))
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def _chunk_table_problems(reader: "_native.Reader", prefix: str) -> List[BadTensor]:
    """A multi-rank checkpoint's chunk-CRC table must agree with the entries
    (every table combines to its entry's CRC), or a partial read could be
    refused later: checked once the data itself verified."""
    from .format import chunks, dtypes

    index = reader.find(chunks.CHUNKS_KEY.encode())
    if index < 0:
        return []
    problems = []
    table_file = reader.describe(index).split("' in '")[-1].rstrip("'")
    try:
        _, shape, size, _ = reader.entry(index)
        buf = np.empty(size, dtype=np.uint8)
        reader.read([(index, buf)], 1)  # bounds and CRC checked (verify already read it)
        chunk_bytes, table = chunks.decode(buf, prefix)
    except DataLossError as e:
        return [BadTensor(chunks.CHUNKS_KEY, table_file, str(e))]
    for key, crcs in table.items():
        entry = reader.find(key)
        name = _decode_key(key)
        if entry < 0:
            problems.append(BadTensor(name, table_file, "the chunk table lists an entry the index lacks"))
            continue
        if reader.entry(entry)[0] == dtypes.DT_STRING:
            continue  # string tensors are read whole
        try:
            reader.set_chunk_crcs(entry, chunk_bytes, crcs)
        except DataLossError as e:
            problems.append(BadTensor(name, table_file, f"chunk table: {e}"))
    return problems


def _frame_table_problems(reader: "_native.Reader", prefix: str) -> List[BadTensor]:
    """A compressed checkpoint's frame table must agree with the index (the
    stored bytes themselves were checked against their CRCs without
    decompressing). Checks the table's layout and every entry's sizes."""
    from .compression import CompressedEntries
    from .format.frames import FRAMES_KEY

    try:
        CompressedEntries(reader, prefix).close()
    except DataLossError as e:
        index = reader.find(FRAMES_KEY.encode())
        where = reader.describe(index).split("' in '")[-1].rstrip("'") if index >= 0 else prefix + ".index"
        return [BadTensor(FRAMES_KEY, where, str(e))]
    return []


def _candidates(checkpoint_dir: str, latest_filename: Optional[str]) -> List[str]:
    """Checkpoint prefixes in ``checkpoint_dir``, newest first, without duplicates.

    First those the state file lists (``all_model_checkpoint_paths`` is
    oldest first; its ``model_checkpoint_path`` is the newest), then any
    other ``*.index`` prefix in the directory, newest modification first.
    """
    ordered: List[str] = []
    try:
        state = get_checkpoint_state(checkpoint_dir, latest_filename)
    except ValueError as e:  # UnicodeDecodeError included: a damaged state file
        logger.warning("ignoring checkpoint state file in '%s': %s", checkpoint_dir, e)
        state = None
    if state is not None:
        ordered.append(state.model_checkpoint_path)
        ordered.extend(reversed(state.all_model_checkpoint_paths))
    try:
        names = os.listdir(checkpoint_dir)
    except OSError as e:
        logger.warning("cannot list '%s': %s", checkpoint_dir, e)
        names = []
    found = []
    for name in names:
        if not name.endswith(".index"):
            continue
        index = os.path.join(checkpoint_dir, name)
        try:
            mtime = os.stat(index).st_mtime_ns
        except OSError:
            continue  # removed meanwhile
        found.append((mtime, name, index[: -len(".index")]))
    found.sort(reverse=True)
    ordered.extend(p for _, _, p in found)

    seen = set()
    unique = []
    for p in ordered:
        key = os.path.normpath(os.path.abspath(p))
        if p and key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def latest_valid_checkpoint(checkpoint_dir: PathLike, latest_filename: Optional[str] = None) -> Optional[str]:
    """The newest checkpoint in ``checkpoint_dir`` that passes :func:`verify`.

    Like :func:`fastckpt.latest_checkpoint`, but a checkpoint is only returned
    once every byte of it has been read and checked, so training can resume
    from the last good checkpoint after a crash or a damaged disk. Candidates
    are tried newest first: the state file's checkpoints
    (``model_checkpoint_path``, then ``all_model_checkpoint_paths`` from the
    newest), then any other ``PREFIX.index`` in the directory by modification
    time. Each rejected candidate is logged as a warning. Verifying reads the
    whole checkpoint; stopping at the first good one keeps that to one
    checkpoint when the newest is intact.

    Args:
        checkpoint_dir: the directory holding the checkpoints.
        latest_filename: name of the state file (default ``checkpoint``).

    Returns:
        The prefix of the newest intact checkpoint, or None if there is none.
    """
    checkpoint_dir = os.fspath(checkpoint_dir)
    for prefix in _candidates(checkpoint_dir, latest_filename):
        try:
            verify(prefix)
        except FastCkptError as e:
            logger.warning("skipping checkpoint '%s': %s", prefix, e)
            continue
        return prefix
    return None
