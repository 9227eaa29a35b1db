"""The ``fastckpt`` command: ``fastckpt verify PREFIX``, ``fastckpt ls PREFIX``,
``fastckpt convert SRC DST`` and ``fastckpt diff A B``.

Installed as the ``fastckpt`` console script and runnable as
``python -m fastckpt``. PREFIX is a checkpoint prefix (``PREFIX.index``
must exist), one of its files (``PREFIX.index``, ``PREFIX.data-...``), or a
directory: the checkpoint its ``checkpoint`` state file names, or its only
checkpoint.

Exit status: 0 the checkpoint is intact (``verify``) or was listed (``ls``);
1 it is damaged (bad tensor data, or a garbled index); 2 it cannot be
checked (missing index or data file, an operating-system error, bad
arguments). ``convert``: 0 converted, 1 damaged source, 2 anything else
that stopped it. ``diff``: 0 the same, 1 different, 2 an unusable input.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

import numpy as np

from . import _native
from ._cli_progress import terminal_progress
from .convert._base import DEFAULT_PIECE_BYTES
from .errors import CheckpointNotFoundError, DataLossError, FastCkptError
from .format import dtypes
from .format import slices as slicing
from .format.frames import FRAMES_KEY
from .reader import _decode_key, _resolve_prefix
from .verification import VerifyReport, verify

__all__ = ["main"]

EXIT_OK = 0
EXIT_DAMAGED = 1
EXIT_UNUSABLE = 2

_PROG = "fastckpt"
# String/variant tensors are decoded whole; above this size the memory is worth a mention.
_NOTE_WHOLE_READ_BYTES = 1 << 30


def _display(text: str) -> str:
    """`text` printable on any terminal: undecodable name bytes become \\xNN."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{n} B" if unit == "B" else f"{value:.2f} {unit}"
        value /= 1000
    return f"{n} B"  # unreachable


# ---------------------------------------------------------------------------
# verify


def _report_json(report: VerifyReport) -> Dict[str, Any]:
    return {
        "prefix": _display(report.prefix),
        "ok": report.ok,
        "tensors": report.tensors,
        "bytes": report.bytes,
        "files": report.files,
        "seconds": report.seconds,
        "gbps": report.gbps,
        "largest_whole_read": report.largest_whole_read,
        "bad": [
            {"name": _display(b.name), "file": _display(b.file), "reason": b.reason, "listed": b.listed}
            for b in report.bad
        ],
    }


def _print_report(report: VerifyReport, out: TextIO) -> None:
    out.write(f"checkpoint: {_display(report.prefix)}\n")
    out.write(f"tensors:    {report.tensors}\n")
    out.write(f"bytes:      {report.bytes} ({_human_bytes(report.bytes)})\n")
    out.write(f"files:      {report.files}\n")
    out.write(f"time:       {report.seconds:.3f} s ({report.gbps:.2f} GB/s)\n")
    if report.largest_whole_read > _NOTE_WHOLE_READ_BYTES:
        out.write(
            f"note:       a string/variant tensor of {_human_bytes(report.largest_whole_read)} "
            "had to be held in memory whole to be checked\n"
        )
    if report.ok:
        out.write("OK: every tensor verified\n")
        return
    unlisted = report.unlisted_entries
    also = f" and {unlisted} slice entr{'y' if unlisted == 1 else 'ies'} no tensor lists" if unlisted else ""
    out.write(
        f"DAMAGED: {report.damaged_tensors} of {report.tensors} tensors{also} failed "
        f"verification ({len(report.bad)} problem(s))\n"
    )
    for b in report.bad:
        out.write(f"  {_display(b.name)}\n    file:   {_display(b.file)}\n    reason: {b.reason}\n")


def _cmd_verify(args: argparse.Namespace) -> int:
    bar = terminal_progress("verify")
    try:
        with bar or contextlib.nullcontext():
            report = verify(args.prefix, threads=args.threads, progress=bar)
    except DataLossError as e:
        attached: Optional[VerifyReport] = getattr(e, "report", None)
        if attached is None:
            # The index itself is garbled: damaged, but no per-tensor report.
            return _fail(args, e, EXIT_DAMAGED)
        report = attached
    if args.json:
        _emit_json(_report_json(report))
    else:
        _print_report(report, sys.stdout)
    return EXIT_OK if report.ok else EXIT_DAMAGED


# ---------------------------------------------------------------------------
# ls


def _list(prefix: str) -> Tuple[List[Dict[str, Any]], List[str]]:
    """One row per tensor (slice entries folded into their partitioned tensor), and
    the names of the data files that are missing (``missing`` marks their tensors)."""
    reader = _native.Reader(prefix)
    try:
        entries = reader.entries()
        num_shards = reader.num_shards
    finally:
        reader.close()
    base = os.path.basename(prefix)
    directory = os.path.dirname(prefix)
    file_of = {
        shard: f"{base}.data-{shard:05d}-of-{num_shards:05d}" for shard in {e[3] for e in entries if e[7] is None}
    }
    missing = {shard for shard, name in file_of.items() if not os.path.exists(os.path.join(directory, name))}
    # slice key -> (bytes, shard) of each stored slice
    slice_data: Dict[bytes, Any] = {e[0]: (e[5], e[3]) for e in entries if e[0][:1] == b"\0" and e[7] is None}
    rows = []
    for key, dt, shape, shard, _offset, size, _crc, slices in entries:
        if key[:1] == b"\0":
            continue  # listed through its partitioned tensor, as list_variables does
        if key == FRAMES_KEY.encode():
            continue  # a compressed checkpoint's frame table: no tensor of it
        row: Dict[str, Any] = {
            "name": _decode_key(key),
            "dtype": dtypes.dtype_name(dt),
            "shape": list(shape),
        }
        if slices is not None:
            stored, lost = 0, False
            for s in slices:
                try:
                    slice_key = slicing.encode_slice_key(key, s)
                    nbytes, slice_shard = slice_data.get(slice_key, (0, None))
                except FastCkptError:
                    continue  # an odd extent; verify reports the slice
                stored += nbytes
                lost = lost or slice_shard in missing
            row.update(bytes=stored, stored_bytes=stored, shard=None, file=None, slices=len(slices), missing=lost)
        else:
            # A compressed tensor stores fewer bytes than it holds: `bytes` is
            # what it holds (as for every fixed-size tensor), `stored_bytes`
            # what its data file holds.
            width = dtypes.element_size(dt) if dt != dtypes.DT_STRING else 0
            held = int(np.prod(shape, dtype=np.int64)) * width if width > 0 else size
            row.update(
                bytes=held, stored_bytes=size, shard=shard, file=file_of[shard], slices=None, missing=shard in missing
            )
        rows.append(row)
    rows.sort(key=lambda r: r["name"])
    return rows, sorted(file_of[s] for s in missing)


def _tree(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Nests the rows by the ``/``-separated parts of their names (the paths
    of a nested state, or TensorFlow's scopes): every node has its bytes and
    tensor count summed over its subtree, children sorted by name."""
    root: Dict[str, Any] = {"name": "", "bytes": 0, "tensors": 0, "children": {}}
    for r in rows:
        node = root
        parts = r["name"].split("/")
        for depth, part in enumerate(parts):
            node["bytes"] += r["bytes"]
            node["tensors"] += 1
            leaf = depth == len(parts) - 1
            key = (part, leaf)  # a tensor and a scope may share a name ("a" and "a/b")
            child = node["children"].get(key)
            if child is None:
                child = node["children"][key] = {"name": part, "bytes": 0, "tensors": 0, "children": {}}
                if leaf:
                    child.update(dtype=r["dtype"], shape=r["shape"])
            node = child
        node["bytes"] += r["bytes"]
        node["tensors"] += 1

    def finish(node: Dict[str, Any]) -> Dict[str, Any]:
        kids = [finish(node["children"][k]) for k in sorted(node["children"])]
        out = {k: v for k, v in node.items() if k != "children"}
        if kids or "dtype" not in node:
            out["children"] = kids
        return out

    return finish(root)


def _print_tree(node: Dict[str, Any], out: TextIO, depth: Optional[int], indent: str = "") -> None:
    for child in node["children"]:
        is_scope = "children" in child
        name = _display(child["name"]) + ("/" if is_scope else "")
        if is_scope:
            what = f"{child['tensors']} tensor{'s' if child['tensors'] != 1 else ''}"
        else:
            what = child["dtype"] + " [" + ", ".join(str(d) for d in child["shape"]) + "]"
        out.write(f"{indent}{name}  {_human_bytes(child['bytes'])}  {what}\n")
        if is_scope and (depth is None or depth > 1):
            _print_tree(child, out, None if depth is None else depth - 1, indent + "  ")


def _cmd_ls(args: argparse.Namespace) -> int:
    prefix = _resolve_prefix(args.prefix)
    rows, missing = _list(prefix)
    if args.tree:
        tree = _tree(rows)
        if args.json:
            _emit_json({"prefix": _display(prefix), "tree": tree, "missing_files": [_display(f) for f in missing]})
            return EXIT_OK
        _print_tree(tree, sys.stdout, args.depth)
        sys.stdout.write(f"{tree['tensors']} tensors, {tree['bytes']} bytes ({_human_bytes(tree['bytes'])})\n")
        return EXIT_OK
    if args.json:
        _emit_json(
            {
                "prefix": _display(prefix),
                "tensors": [dict(r, name=_display(r["name"])) for r in rows],
                "missing_files": [_display(f) for f in missing],
            }
        )
        return EXIT_OK
    table = [("name", "dtype", "shape", "bytes", "shard")]
    for r in rows:
        shard = f"partitioned ({r['slices']} slices)" if r["slices"] is not None else r["file"]
        shard += " (missing)" if r["missing"] else ""
        shape = "[" + ", ".join(str(d) for d in r["shape"]) + "]"
        table.append((_display(r["name"]), r["dtype"], shape, str(r["bytes"]), shard))
    widths = [max(len(row[c]) for row in table) for c in range(4)]
    out = sys.stdout
    for row in table:
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].ljust(widths[2]),
            row[3].rjust(widths[3]),
            row[4],
        ]
        out.write("  ".join(cells).rstrip() + "\n")
    total = sum(r["bytes"] for r in rows)
    stored = sum(r["stored_bytes"] for r in rows)
    compressed = f"; {stored} bytes stored, compressed ({total / max(stored, 1):.2f}x)" if stored != total else ""
    out.write(f"{len(rows)} tensors, {total} bytes ({_human_bytes(total)}){compressed}\n")
    if missing:
        out.write(f"missing data files: {', '.join(_display(f) for f in missing)} (their tensors cannot be read)\n")
    return EXIT_OK


# ---------------------------------------------------------------------------
# convert


def _size(text: str) -> int:
    """A byte count: an integer, or with a unit (KB, MB, GB: powers of 1000;
    KiB, MiB, GiB: powers of 1024), as Hugging Face writes shard sizes ("5GB")."""
    units = {
        "": 1,
        "B": 1,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "TB": 10**12,
        "KIB": 1 << 10,
        "MIB": 1 << 20,
        "GIB": 1 << 30,
        "TIB": 1 << 40,
    }
    stripped = text.strip().upper()
    number = stripped.rstrip("KMGTIB")
    unit = stripped[len(number) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 500MB, 2GiB, 1000000)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return int(value)


def _cmd_convert(args: argparse.Namespace) -> int:
    from .convert import convert

    bar = terminal_progress("convert")
    try:
        with bar or contextlib.nullcontext():
            report = convert(
                args.src,
                args.dst,
                src_format=args.src_format,
                dst_format=args.dst_format,
                overwrite=args.overwrite,
                compression=args.compression,
                max_shard_size=args.max_shard_size,
                skip_unsupported=args.skip_unsupported,
                max_piece_bytes=args.max_piece_bytes,
                progress=bar,
            )
    except DataLossError as e:
        return _fail(args, e, EXIT_DAMAGED)
    except (FastCkptError, OSError, ValueError) as e:
        return _fail(args, e, EXIT_UNUSABLE)
    if args.json:
        _emit_json(
            {
                "src": _display(report.src),
                "dst": _display(report.dst),
                "src_format": report.src_format,
                "dst_format": report.dst_format,
                "tensors": report.tensors,
                "bytes": report.nbytes,
                "seconds": report.seconds,
                "files": [_display(f) for f in report.files],
                "skipped": [{"name": _display(n), "reason": r} for n, r in report.skipped],
            }
        )
        return EXIT_OK
    out = sys.stdout
    out.write(
        f"converted {_display(report.src)} ({report.src_format}) -> {_display(report.dst)} ({report.dst_format})\n"
    )
    out.write(f"tensors:    {report.tensors}\n")
    out.write(f"bytes:      {report.nbytes} ({_human_bytes(report.nbytes)})\n")
    out.write(f"time:       {report.seconds:.3f} s\n")
    for f in report.files:
        out.write(f"wrote:      {_display(f)}\n")
    for name, reason in report.skipped:
        out.write(f"skipped:    {_display(name)}: {reason}\n")
    return EXIT_OK


# ---------------------------------------------------------------------------
# diff

EXIT_DIFFERENT = 1


def _cmd_diff(args: argparse.Namespace) -> int:
    from .diff import diff

    bar = terminal_progress("diff")
    try:
        with bar or contextlib.nullcontext():
            result = diff(
                args.a,
                args.b,
                values=args.values,
                rtol=args.rtol,
                atol=args.atol,
                a_format=args.a_format,
                b_format=args.b_format,
                progress=bar,
            )
    except (FastCkptError, OSError, ValueError) as e:
        # A damaged input is unusable here: exit 1 means "different".
        return _fail(args, e, EXIT_UNUSABLE)
    if args.json:
        _emit_json(result.to_json())
        return EXIT_OK if result.same else EXIT_DIFFERENT
    out = sys.stdout
    out.write(f"a: {_display(result.a)} ({result.a_format})\nb: {_display(result.b)} ({result.b_format})\n")
    for name in result.only_in_a:
        out.write(f"only in a:  {_display(name)}\n")
    for name in result.only_in_b:
        out.write(f"only in b:  {_display(name)}\n")
    for c in result.changed:
        out.write(f"changed:    {_display(c.name)}: {c.a_dtype} {c.a_shape} -> {c.b_dtype} {c.b_shape}\n")
    for d in result.differing:
        line = f"differs:    {_display(d.name)}"
        if d.max_abs_diff is not None:
            verdict = "within tolerance" if d.within_tolerance else "NOT within tolerance"
            line += f": max abs {d.max_abs_diff:.6g}, max rel {d.max_rel_diff:.6g} ({verdict})"
        out.write(line + "\n")
    total = (
        len(result.identical)
        + len(result.differing)
        + len(result.changed)
        + len(result.only_in_a)
        + len(result.only_in_b)
    )
    out.write(
        f"{len(result.identical)} identical, {len(result.differing)} differing, "
        f"{len(result.changed)} changed dtype/shape, {len(result.only_in_a)} only in a, "
        f"{len(result.only_in_b)} only in b ({total} names)\n"
    )
    out.write("SAME\n" if result.same else "DIFFERENT\n")
    return EXIT_OK if result.same else EXIT_DIFFERENT


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


# ---------------------------------------------------------------------------
# plumbing


def _emit_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _fail(args: argparse.Namespace, error: BaseException, code: int) -> int:
    """One line on stderr (and, with --json, the error as JSON, with the
    prefix for the commands that take one); returns `code`."""
    message = str(error)  # fastckpt's messages name the file and say what failed
    sys.stderr.write(f"{_PROG} {args.command}: error: {message}\n")
    if getattr(args, "json", False):
        where = {"prefix": _display(os.fspath(args.prefix))} if hasattr(args, "prefix") else {}
        _emit_json({**where, "ok": False, "error": message, "error_type": type(error).__name__})
    return code


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Inspect, verify, convert and compare TensorFlow V2 checkpoints (PREFIX.index + "
        "PREFIX.data-*) and other checkpoint formats.",
        epilog="Exit status: 0 OK, 1 damaged checkpoint (diff: the checkpoints differ), 2 missing "
        "files or unusable input.",
    )
    parser.add_argument("--version", action="version", version=f"{_PROG} {_native.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    prefix_help = (
        "checkpoint prefix (PREFIX.index must exist), one of its files "
        "(PREFIX.index, PREFIX.data-*), or a directory: the checkpoint its "
        "'checkpoint' state file names, or its only checkpoint"
    )
    p = sub.add_parser(
        "verify",
        help="check every tensor's bytes and checksum",
        description="Reads every byte of the checkpoint in parallel and checks each tensor's "
        "bounds and CRC32C (string tensors' checksums, partitioned tensors' slices) "
        "without loading it. Every bad tensor is listed with its file and reason.",
        epilog="Exit status: 0 intact, 1 damaged, 2 missing files or unusable input.",
    )
    p.add_argument("prefix", metavar="PREFIX", help=prefix_help)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--threads",
        type=_threads,
        default=None,
        metavar="N",
        help="I/O threads (default: FASTCKPT_THREADS or the number of cores)",
    )
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser(
        "ls",
        help="list the tensors: name, dtype, shape, bytes, shard file",
        description="One row per tensor: name, dtype (TensorFlow's name), shape, bytes and the "
        "data file holding it. A partitioned tensor is listed once.",
        epilog="Exit status: 0 listed, 1 garbled index, 2 missing files or unusable input.",
    )
    p.add_argument("prefix", metavar="PREFIX", help=prefix_help)
    p.add_argument("--json", action="store_true", help="print the listing as JSON")
    p.add_argument(
        "--tree",
        action="store_true",
        help="show the tensors as a tree of their '/'-separated names (a nested state's "
        "paths, TensorFlow's scopes) with bytes and tensors per subtree",
    )
    p.add_argument(
        "--depth", type=_threads, default=None, metavar="N", help="with --tree: show N levels (default: all)"
    )
    p.set_defaults(func=_cmd_ls)

    formats = "tf, safetensors, torch, npz, dcp"
    p = sub.add_parser(
        "convert",
        help="convert a checkpoint to another format (tf, safetensors, torch, npz, dcp)",
        description="Copies every tensor of SRC into DST in another format, one tensor (or one piece "
        "of a large tensor) at a time, so memory stays bounded. Formats are inferred from "
        "the paths: PREFIX (a TensorFlow bundle, also its files or a directory), "
        "*.safetensors, *.safetensors.index.json or a directory holding one (sharded "
        "safetensors), *.pt/*.pth/*.bin (torch state dict), *.npz, a directory holding "
        ".metadata (torch.distributed.checkpoint); any other DST is a bundle prefix. "
        "Names are kept exactly as they are. The output appears only once complete.",
        epilog="Exit status: 0 converted, 1 damaged source, 2 missing or unusable input, a "
        "destination that exists (without --overwrite), or a tensor DST's format cannot hold.",
    )
    p.add_argument("src", metavar="SRC", help="the checkpoint to read")
    p.add_argument("dst", metavar="DST", help="where to write the converted checkpoint")
    p.add_argument(
        "--from", dest="src_format", metavar="FMT", default=None, help=f"SRC's format ({formats}; default: inferred)"
    )
    p.add_argument(
        "--to",
        dest="dst_format",
        metavar="FMT",
        default=None,
        help=f"DST's format ({formats}; default: inferred, else tf)",
    )
    p.add_argument(
        "--compression",
        choices=("none", "zstd"),
        default=None,
        help="compression of a TensorFlow bundle output (default: none)",
    )
    p.add_argument(
        "--max-shard-size",
        type=_size,
        default=None,
        metavar="SIZE",
        help="write sharded safetensors with shards of at most SIZE bytes of values (e.g. 5GB, 500MiB)",
    )
    p.add_argument(
        "--max-piece-bytes",
        type=_size,
        default=DEFAULT_PIECE_BYTES,
        metavar="SIZE",
        help="read tensors larger than SIZE in pieces of at most SIZE (default: 64MiB)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already at DST (default: refuse)")
    p.add_argument(
        "--skip-unsupported",
        action="store_true",
        help="skip (and list) tensors DST's format cannot hold instead of failing",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "diff",
        help="compare two checkpoints (any formats convert reads)",
        description="Lists the tensors only in A, only in B, with a changed dtype or shape, "
        "identical (same stored bytes) and differing. Two TensorFlow bundles are "
        "compared from their indexes' CRC32Cs where possible, without reading data. "
        "--values reads the differing tensors and reports each one's largest absolute "
        "and relative difference and whether it is within tolerance "
        "(numpy.isclose: |a - b| <= atol + rtol * |b|, NaN equal to NaN).",
        epilog="Exit status: 0 the same (with --values: every difference within tolerance), "
        "1 different, 2 missing or unusable input.",
    )
    p.add_argument("a", metavar="A", help="the first checkpoint")
    p.add_argument("b", metavar="B", help="the second checkpoint (the reference for --rtol)")
    p.add_argument(
        "--values",
        action="store_true",
        help="compare values: max abs/rel difference and tolerance per differing tensor",
    )
    p.add_argument("--rtol", type=_non_negative, default=1e-5, metavar="R", help="relative tolerance (default: 1e-05)")
    p.add_argument("--atol", type=_non_negative, default=1e-8, metavar="A", help="absolute tolerance (default: 1e-08)")
    p.add_argument(
        "--from-a", dest="a_format", metavar="FMT", default=None, help=f"A's format ({formats}; default: inferred)"
    )
    p.add_argument(
        "--from-b", dest="b_format", metavar="FMT", default=None, help=f"B's format ({formats}; default: inferred)"
    )
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=_cmd_diff)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs the command line; returns the exit status."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError):
            pass  # not a TextIOWrapper (e.g. replaced by a test harness)
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # `fastckpt ls ... | head`: the reader left. Point stdout at /dev/null
        # so the interpreter's final flush does not fail again, and exit quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except CheckpointNotFoundError as e:
        return _fail(args, e, EXIT_UNUSABLE)
    except DataLossError as e:
        return _fail(args, e, EXIT_DAMAGED)
    except (FastCkptError, OSError, ValueError) as e:
        # ValueError: e.g. a directory's state file names no checkpoint.
        return _fail(args, e, EXIT_UNUSABLE)
    except KeyboardInterrupt:
        return 130
