"""Helpers shared by the test modules: damaging a checkpoint's bytes on disk,
comparing two checkpoints' files, probing a writer's file lock, a TensorFlow
graph-mode session.

Imported as ``helpers`` (pytest puts ``tests/`` on ``sys.path``: the tests are
not a package). The checkpoint builders the fuzz scripts share live in
``fuzz/checkpoint_builders.py`` (also on the path, see conftest.py).
"""

from __future__ import annotations

import fcntl
import filecmp
import glob
import os
from typing import Any, Dict, Optional, Tuple, Union

import ml_dtypes
import numpy as np

from fastckpt import _native

#: The fixed-size dtypes TensorFlow and fastckpt share, bfloat16 and float8 included.
FIXED_SIZE_DTYPES = [
    np.dtype(d)
    for d in (
        np.float16,
        np.float32,
        np.float64,
        ml_dtypes.bfloat16,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.bool_,
        np.complex64,
        np.complex128,
        ml_dtypes.float8_e4m3fn,
        ml_dtypes.float8_e5m2,
    )
]

#: CPU devices a graph-mode session gets (``device_count``): sharded Savers
#: write one data file per device.
TF_CPUS = 3


def flip_byte(path: str, offset: int, mask: int = 0x40) -> None:
    """XORs the byte at `offset` of file `path` with `mask` (in place)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ mask]))


def data_entries(prefix: str) -> Dict[bytes, Tuple[str, int, int]]:
    """Key -> (data file, offset, size) of every entry that holds data (not
    the data-less entry of a partitioned tensor)."""
    reader = _native.Reader(prefix)
    try:
        n = reader.num_shards
        return {
            key: (f"{prefix}.data-{shard:05d}-of-{n:05d}", off, size)
            for key, _dt, _shape, shard, off, size, _crc, slices in reader.entries()
            if slices is None
        }
    finally:
        reader.close()


def flip_in(prefix: str, key: bytes, where: float = 0.5, mask: int = 0x40) -> str:
    """Flips one byte of entry `key`'s stored bytes, `where` of the way
    through them; returns the data file's path."""
    path, off, size = data_entries(prefix)[key]
    flip_byte(path, off + min(size - 1, int(size * where)), mask)
    return path


def same_files(a: str, b: str) -> None:
    """Asserts that checkpoints `a` and `b` (prefixes) consist of the same
    files (``PREFIX.*``) with the same bytes."""
    fa = sorted(os.path.basename(p)[len(os.path.basename(a)) :] for p in glob.glob(a + ".*"))
    fb = sorted(os.path.basename(p)[len(os.path.basename(b)) :] for p in glob.glob(b + ".*"))
    assert fa == fb and fa
    for suffix in fa:
        assert filecmp.cmp(a + suffix, b + suffix, shallow=False), suffix


def flock_held(path: Union[str, "os.PathLike[str]"]) -> bool:
    """Whether another open file description holds a ``flock`` on `path` (a
    writer's lock on its temporary file). Raises FileNotFoundError if `path`
    does not exist."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def tf_session(graph: Optional[Any] = None, cpus: int = TF_CPUS) -> Any:
    """A TensorFlow graph-mode session with `cpus` CPU devices, no soft
    placement and two threads per pool (the machines running the tests are small)."""
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(
        device_count={"CPU": cpus},
        allow_soft_placement=False,
        intra_op_parallelism_threads=2,
        inter_op_parallelism_threads=2,
    )
    return tf.compat.v1.Session(graph=graph, config=config)
