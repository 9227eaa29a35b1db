"""Coverage-guided fuzzing of checkpoint index parsing with atheris (libFuzzer).

Each input becomes ``PREFIX.index`` next to the data files of a valid
reference checkpoint; the harness then opens the checkpoint and does
everything a user can (list, read each tensor, slice, load, verify). Only
``fastckpt.FastCkptError`` subclasses are acceptable failures: any other
exception, a crash, a hang (``-timeout``) or a blow-up in memory
(``-rss_limit_mb``) is reported by libFuzzer with the input that caused it.

Input format: the first byte selects how the rest is used.

* bit 0 set: block trailer CRCs are recomputed (footer -> index block ->
  data blocks, leniently) before the bytes are written, so mutations get
  past the CRC check into the table, entry and proto parsers;
* bit 0 clear: the bytes are written as they are (the CRC check itself).

Usage (see fuzz/README.md)::

    python fuzz/fuzz_index.py [libFuzzer flags] [CORPUS_DIR ...]

Seeds (the reference index, as is and re-blocked, in both modes) are written
into the first corpus directory if it is empty. ``FASTCKPT_FUZZ_WORKDIR``
chooses where the reference checkpoint is written (default: a temporary
directory).
"""

from __future__ import annotations

import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["fastckpt"]):
    try:
        import fastckpt
    except ImportError:  # run from a source checkout that is not installed
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        import fastckpt
    # The package binds its public names on first use: resolve them all here,
    # so that every module behind them is imported, and instrumented, now.
    for _name in fastckpt.__all__:
        getattr(fastckpt, _name)
    import fastckpt.writer  # noqa: F401 - the reference checkpoint is written with it


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_builders import write_reference  # noqa: E402
from table_codec import Table, fix_crcs  # noqa: E402,F401 - fix_crcs: see README


def reblock(index: bytes, per_block: int = 3) -> bytes:
    """The same entries in small blocks (restart every 2 entries): more structure to mutate."""
    return Table.from_entries(Table.parse(index).entries(), per_block=per_block, restart_interval=2).serialize()


def exercise(prefix: str) -> None:
    def attempt(fn):
        try:
            return fn()
        except fastckpt.FastCkptError:
            return None

    def read_each():
        with fastckpt.load_checkpoint(prefix) as reader:
            reader.get_variable_to_dtype_map()
            reader.debug_string()
            shapes = reader.get_variable_to_shape_map()
            for name in reader.keys():
                value = attempt(lambda: reader.get_tensor(name))
                shape = shapes[name]
                if value is not None and shape and shape[0] > 0:
                    attempt(lambda: reader.get_slice(name, ":".join(["0,1"] + ["-"] * (len(shape) - 1))))

    attempt(read_each)
    attempt(lambda: fastckpt.load(prefix))
    attempt(lambda: fastckpt.list_variables(prefix))
    if hasattr(fastckpt, "verify"):
        attempt(lambda: fastckpt.verify(prefix))


WORKDIR = os.environ.get("FASTCKPT_FUZZ_WORKDIR") or tempfile.mkdtemp(prefix="fastckpt_fuzz_")
os.makedirs(WORKDIR, exist_ok=True)
REFERENCE = os.path.join(WORKDIR, "ref")
TARGET_DIR = os.path.join(WORKDIR, "target")
TARGET = os.path.join(TARGET_DIR, "ref")


def setup() -> bytes:
    write_reference(REFERENCE, layers=6, all_kinds=False)
    os.makedirs(TARGET_DIR, exist_ok=True)
    for name in os.listdir(WORKDIR):
        if ".data-" in name and not os.path.exists(os.path.join(TARGET_DIR, name)):
            os.symlink(os.path.join(WORKDIR, name), os.path.join(TARGET_DIR, name))
    with open(REFERENCE + ".index", "rb") as f:
        return f.read()


def write_seeds(corpus: str, index: bytes) -> None:
    os.makedirs(corpus, exist_ok=True)
    if os.listdir(corpus):
        return
    seeds = {
        "plain_fix": b"\x01" + index,
        "plain_raw": b"\x00" + index,
        "reblocked_fix": b"\x01" + reblock(index),
        "reblocked_raw": b"\x00" + reblock(index, 1),
    }
    for name, data in seeds.items():
        with open(os.path.join(corpus, "seed_" + name), "wb") as f:
            f.write(data)


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    if data[0] & 1:
        body = fix_crcs(body)
    with open(TARGET + ".index", "wb") as f:
        f.write(body)
    exercise(TARGET)


def main() -> None:
    index = setup()
    corpora = [a for a in sys.argv[1:] if not a.startswith("-")]
    if corpora:
        write_seeds(corpora[0], index)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
