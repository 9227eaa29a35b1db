"""``fastckpt.diff``: compare two checkpoints, of any formats
:func:`fastckpt.convert.convert` reads, tensor by tensor.

Categories (every tensor name of either side lands in exactly one):

* ``only_in_a`` / ``only_in_b``: names one side lacks;
* ``changed``: present in both with a different dtype or shape (their
  values are not compared);
* ``identical``: the same dtype, shape and stored bytes;
* ``differing``: the same dtype and shape, different bytes. With
  ``values=True`` each carries the largest absolute and relative difference
  and whether every element is within tolerance.

When both sides are TensorFlow bundles, a tensor stored as one entry on each
side is decided from the two indexes alone, without reading data: equal
sizes and CRC32Cs mean identical bytes (the CRC is a 32-bit checksum: two
different values have a 2^-32 chance of being taken as identical), and,
where the stored bytes are the values' own, different ones mean different
bytes. Everything else is read, in pieces of at most ``max_piece_bytes``
(and only the differing tensors are read at all, when ``values=True``,
beyond those the indexes decide).

Tolerance follows ``numpy.isclose(a, b, rtol, atol, equal_nan=True)``:
element-wise ``|a - b| <= atol + rtol * |b|``, with B as the reference, and
NaN equal to NaN. Differences are computed in float64 (complex128 for
complex tensors; bools as 0 and 1). The relative difference is
``|a - b| / |b|`` over elements where ``b != 0``; a NaN on one side only, or
an infinity against a different value, makes both differences infinite.
String tensors are compared by bytes only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ._arrays import raw_bytes
from ._progress import ProgressCallback, tracker_for
from .convert import open_source
from .convert._base import DEFAULT_PIECE_BYTES, Source, TensorInfo, pieces
from .convert.tf_bundle import BundleSource

__all__ = ["DiffResult", "TensorChange", "TensorDiff", "diff"]

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class TensorChange:
    """A tensor whose dtype or shape differs between the two sides."""

    name: str
    a_dtype: str
    b_dtype: str
    a_shape: List[int]
    b_shape: List[int]


@dataclass(frozen=True)
class TensorDiff:
    """A tensor of equal dtype and shape whose bytes differ. The numbers are
    None unless values were compared (and for string tensors)."""

    name: str
    max_abs_diff: Optional[float] = None
    max_rel_diff: Optional[float] = None
    within_tolerance: Optional[bool] = None


@dataclass(frozen=True)
class DiffResult:
    """The comparison of checkpoints `a` and `b` (see the module docstring).

    ``by_index`` lists the tensors decided from the bundle indexes without
    reading their data.
    """

    a: str
    b: str
    a_format: str
    b_format: str
    values: bool
    rtol: float
    atol: float
    only_in_a: List[str] = field(default_factory=list)
    only_in_b: List[str] = field(default_factory=list)
    changed: List[TensorChange] = field(default_factory=list)
    identical: List[str] = field(default_factory=list)
    differing: List[TensorDiff] = field(default_factory=list)
    by_index: List[str] = field(default_factory=list)

    @property
    def within_tolerance(self) -> bool:
        """Whether every differing tensor is within tolerance (False when
        values were not compared and some tensor differs)."""
        return all(d.within_tolerance for d in self.differing)

    @property
    def same(self) -> bool:
        """The two checkpoints have the same names, dtypes and shapes, and
        every tensor is identical, or, with ``values=True``, within
        tolerance. ``fastckpt diff`` exits 0 exactly when this holds."""
        return not (self.only_in_a or self.only_in_b or self.changed) and self.within_tolerance

    def to_json(self) -> Dict[str, Any]:
        """A JSON-ready dict (non-finite numbers as the strings "inf", "nan")."""

        def num(x: Optional[float]) -> Any:
            if x is None or math.isfinite(x):
                return x
            return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")

        return {
            "a": self.a,
            "b": self.b,
            "a_format": self.a_format,
            "b_format": self.b_format,
            "same": self.same,
            "values": self.values,
            "rtol": self.rtol,
            "atol": self.atol,
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
            "changed": [
                {"name": c.name, "a_dtype": c.a_dtype, "b_dtype": c.b_dtype, "a_shape": c.a_shape, "b_shape": c.b_shape}
                for c in self.changed
            ],
            "identical": list(self.identical),
            "differing": [
                {
                    "name": d.name,
                    "max_abs_diff": num(d.max_abs_diff),
                    "max_rel_diff": num(d.max_rel_diff),
                    "within_tolerance": d.within_tolerance,
                }
                for d in self.differing
            ],
            "by_index": list(self.by_index),
        }


class _Stats:
    """Running maxima of one tensor's differences, piece by piece."""

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol
        self.max_abs = 0.0
        self.max_rel = 0.0
        self.within = True

    def update(self, a: np.ndarray, b: np.ndarray) -> None:
        kind = np.complex128 if (a.dtype.kind == "c" or b.dtype.kind == "c") else np.float64
        x, y = a.astype(kind).reshape(-1), b.astype(kind).reshape(-1)
        if x.size == 0:
            return
        both_nan = np.isnan(x) & np.isnan(y)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            d = np.abs(x - y)
            d[both_nan] = 0.0
            d[x == y] = 0.0  # equal infinities
            d[np.isnan(d)] = np.inf  # NaN against a number, or inf - (-inf)
            self.max_abs = max(self.max_abs, float(d.max()))
            ref = np.abs(y)
            nz = ref != 0
            if nz.any():
                self.max_rel = max(self.max_rel, float(np.max(d[nz] / ref[nz])))
            if self.within:
                close = np.isclose(x, y, rtol=self.rtol, atol=self.atol, equal_nan=True)
                self.within = bool(close.all())


def _bytes_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and [bytes(x) for x in a.reshape(-1)] == [bytes(x) for x in b.reshape(-1)]
    return a.nbytes == b.nbytes and bool(np.array_equal(raw_bytes(a), raw_bytes(b)))


def _index_verdicts(sa: Source, sb: Source, common: List[str]) -> Dict[str, bool]:
    """name -> identical (True) or different (False) for the tensors the two
    bundle indexes decide; empty unless both sides are bundles."""
    if not (isinstance(sa, BundleSource) and isinstance(sb, BundleSource)):
        return {}
    da, db = sa.stored_digests(), sb.stored_digests()
    out: Dict[str, bool] = {}
    for name in common:
        if name not in da or name not in db:
            continue  # partitioned on a side
        la, lb = sa.stored_layout(name), sb.stored_layout(name)
        if da[name] == db[name] and la == lb:
            out[name] = True  # the same stored bytes under the same layout: the same value
        elif la is None and lb is None:
            out[name] = False  # raw bytes on both sides: different bytes, different values
    return out


def diff(
    a: PathLike,
    b: PathLike,
    *,
    values: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    a_format: Optional[str] = None,
    b_format: Optional[str] = None,
    max_piece_bytes: int = DEFAULT_PIECE_BYTES,
    progress: Optional[ProgressCallback] = None,
) -> DiffResult:
    """Compares checkpoints `a` and `b` (see the module docstring).

    Args:
        a, b: checkpoints of any format convert reads (inferred from the path
            unless `a_format`/`b_format` says).
        values: read differing tensors and report their largest absolute and
            relative difference and whether they are within tolerance.
        rtol, atol: the tolerance (``numpy.isclose`` semantics, B the reference).
        max_piece_bytes: the bound on what is read of one tensor at a time.
        progress: a callable taking a :class:`fastckpt.Progress` over the
            tensors compared (bytes of each side's tensor, tensors), called
            on this thread at most ten times a second, and once at the end.

    Returns:
        A :class:`DiffResult`; ``result.same`` is what the CLI's exit status says.

    Raises:
        CheckpointNotFoundError, DataLossError, InvalidArgumentError: an
            unusable input (as :func:`fastckpt.convert` raises them).
    """
    for label, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, (int, float)) or not tol >= 0:
            from .errors import InvalidArgumentError

            raise InvalidArgumentError(f"{label} must be a number >= 0, not {tol!r}")
    sa = open_source(a, a_format, piece_bytes=max_piece_bytes)
    try:
        sb = open_source(b, b_format, piece_bytes=max_piece_bytes)
    except BaseException:
        sa.close()
        raise
    try:
        ta: Dict[str, TensorInfo] = {t.name: t for t in sa.tensors()}
        tb: Dict[str, TensorInfo] = {t.name: t for t in sb.tensors()}
        only_a = sorted(set(ta) - set(tb))
        only_b = sorted(set(tb) - set(ta))
        changed: List[TensorChange] = []
        comparable: List[str] = []
        for name in sorted(set(ta) & set(tb)):
            x, y = ta[name], tb[name]
            if x.dtype != y.dtype or x.shape != y.shape:
                changed.append(
                    TensorChange(
                        name,
                        x.dtype.name if x.dtype != object else "string",
                        y.dtype.name if y.dtype != object else "string",
                        list(x.shape),
                        list(y.shape),
                    )
                )
            else:
                comparable.append(name)
        verdicts = _index_verdicts(sa, sb, comparable)
        identical: List[str] = []
        differing: List[TensorDiff] = []
        tracker = tracker_for(progress, [ta[n].nbytes for n in comparable])
        done = 0
        # The one loop over tensors (and, inside, over their pieces).
        for name in comparable:
            info = ta[name]
            if tracker is not None:
                tracker.tick(done)
                done += info.nbytes
            verdict = verdicts.get(name)
            if verdict is True:
                identical.append(name)
                continue
            if verdict is False and not values:
                differing.append(TensorDiff(name))
                continue
            same, stats = _compare(sa, sb, info, values, rtol, atol, max_piece_bytes)
            if same:
                identical.append(name)
            elif stats is None:
                differing.append(TensorDiff(name))
            else:
                differing.append(TensorDiff(name, stats.max_abs, stats.max_rel, stats.within))
        if tracker is not None:
            tracker.report(tracker.total, final=True)
        return DiffResult(
            a=sa.path,
            b=sb.path,
            a_format=sa.format,
            b_format=sb.format,
            values=values,
            rtol=float(rtol),
            atol=float(atol),
            only_in_a=only_a,
            only_in_b=only_b,
            changed=changed,
            identical=identical,
            differing=differing,
            by_index=sorted(verdicts),
        )
    finally:
        sa.close()
        sb.close()


def _compare(
    sa: Source, sb: Source, info: TensorInfo, values: bool, rtol: float, atol: float, bound: int
) -> Tuple[bool, Optional[_Stats]]:
    """(identical bytes, difference statistics or None), reading piece by piece."""
    same = True
    numeric = values and info.dtype != object and (info.dtype.kind in "biufc" or _castable(info.dtype))
    stats = _Stats(rtol, atol) if numeric else None
    for index in pieces(info, bound):
        x, y = sa.read(info, index), sb.read(info, index)
        if _bytes_equal(x, y):
            continue
        same = False
        if stats is None:
            return False, None  # bytes differ; nothing more to learn without values
        stats.update(x, y)
    return same, (None if same else stats)


def _castable(dtype: np.dtype) -> bool:
    """ml_dtypes floats (bfloat16, float8) convert to float64."""
    try:
        np.zeros(1, dtype).astype(np.float64)
    except (TypeError, ValueError):
        return False
    return True
