"""The checkpoints every system saves and restores.

Each workload is a name -> numpy array mapping of random (incompressible) values, built once
per run and shared by every system:

  transformer-fp32  a GPT-style model (token/position embeddings; per layer attention q/k/v/o
                    and MLP kernels with biases, two layer norms; a final norm), float32
  transformer-bf16  the same architecture in bfloat16 (ml_dtypes), so twice the parameters
  small             --small-count tensors (default 100,000) of equal size, 1-D float32
  large             one 2-D float32 tensor
  sharded           transformer-fp32 written as --shards files by every system

All have the same total size (--size); the transformer workloads come within a few percent of it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _common as C

ALL = ("transformer-fp32", "transformer-bf16", "small", "large", "sharded")

TITLES = {
    "transformer-fp32": "transformer, float32",
    "transformer-bf16": "transformer, bfloat16",
    "small": "small tensors",
    "large": "one large tensor",
    "sharded": "sharded transformer, float32",
}


@dataclass
class Workload:
    name: str
    title: str
    tensors: Dict[str, np.ndarray]
    shards: int = 1  # > 1: every system writes this many files
    info: Dict[str, object] = field(default_factory=dict)
    _digest: Optional[Dict[str, Tuple[str, Tuple[int, ...], int]]] = None

    @property
    def nbytes(self) -> int:
        return C.total_nbytes(self.tensors)

    @property
    def count(self) -> int:
        return len(self.tensors)

    @property
    def dtypes(self) -> List[str]:
        return sorted({str(a.dtype) for a in self.tensors.values()})

    def groups(self, n: Optional[int] = None) -> List[Dict[str, np.ndarray]]:
        """The tensors cut into ``n`` (default: self.shards) groups of consecutive names with
        about equal bytes, as sharded checkpoints of the Hugging Face kind split a model."""
        return split_groups(self.tensors, n or self.shards)

    def digest(self) -> Dict[str, Tuple[str, Tuple[int, ...], int]]:
        """name -> (dtype, shape, CRC32C of the bytes) of the saved values."""
        if self._digest is None:
            self._digest = digest(self.tensors)
        return self._digest

    def describe(self) -> Dict[str, object]:
        return dict(
            self.info,
            name=self.name,
            title=self.title,
            tensors=self.count,
            nbytes=self.nbytes,
            shards=self.shards,
            dtypes=self.dtypes,
        )


def split_groups(tensors: Mapping[str, np.ndarray], n: int) -> List[Dict[str, np.ndarray]]:
    names = list(tensors)
    n = max(1, min(n, len(names)))
    total = sum(int(tensors[k].nbytes) for k in names)
    groups: List[Dict[str, np.ndarray]] = [{} for _ in range(n)]
    acc = 0
    g = 0
    for i, name in enumerate(names):
        left_names = len(names) - i
        left_groups = n - g
        # Move to the next group once this one holds its share, keeping one name per group left.
        full = acc >= total * (g + 1) / n
        if groups[g] and g < n - 1 and (full or left_names <= left_groups - 1):
            g += 1
        groups[g][name] = tensors[name]
        acc += int(tensors[name].nbytes)
    return [grp for grp in groups if grp]


def crc32c(buf) -> int:
    from fastckpt import _native  # the suite requires fastckpt; its CRC is checked separately

    return int(_native.crc32c(buf))


def digest(tensors: Mapping[str, object]) -> Dict[str, Tuple[str, Tuple[int, ...], int]]:
    out = {}
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        out[name] = (str(a.dtype), tuple(int(d) for d in a.shape), crc32c(a.view(np.uint8)))
    return out


def check(workload: Workload, restored: Mapping[str, np.ndarray]) -> Optional[str]:
    """None if ``restored`` holds exactly the saved names, dtypes, shapes and bytes, else why
    not."""
    want = workload.digest()
    if set(restored) != set(want):
        missing = sorted(set(want) - set(restored))[:3]
        extra = sorted(set(restored) - set(want))[:3]
        return f"names differ (missing {missing}, unexpected {extra})"
    got = digest(restored)
    for name, w in want.items():
        if got[name] != w:
            return (
                f"{name}: expected {w[0]}{list(w[1])} crc {w[2]:08x}, got "
                f"{got[name][0]}{list(got[name][1])} crc {got[name][2]:08x}"
            )
    return None


def checksum(workload: Workload) -> str:
    """One 32-bit value for the whole workload (names, dtypes, shapes and per-tensor CRCs)."""
    acc = 0
    for name, (dt, shape, crc) in sorted(workload.digest().items()):
        acc = zlib.crc32(f"{name}|{dt}|{shape}|{crc:08x}\n".encode("utf-8", "surrogateescape"), acc)
    return f"{acc:08x}"


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def _random(rng: np.random.Generator, shape: Sequence[int], dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype in (np.float32, np.float64):
        return rng.random(shape, dtype=dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _transformer(size: int, dtype, seed: int) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
    dtype = np.dtype(dtype)
    shapes, model = C.transformer_shapes(size, itemsize=dtype.itemsize)
    rng = np.random.default_rng(seed)
    return {n: _random(rng, s, dtype) for n, s in shapes.items()}, model


def bfloat16():
    import ml_dtypes

    return np.dtype(ml_dtypes.bfloat16)


def build(name: str, size: int, *, small_count: int = 100_000, shards: int = 8, seed: int = 0) -> Workload:
    if name == "transformer-fp32":
        tensors, info = _transformer(size, np.float32, seed)
        return Workload(name, TITLES[name], tensors, info=info)
    if name == "transformer-bf16":
        tensors, info = _transformer(size, bfloat16(), seed + 1)
        return Workload(name, TITLES[name], tensors, info=info)
    if name == "small":
        count = max(1, small_count)
        elems = max(1, size // (4 * count))
        rng = np.random.default_rng(seed + 2)
        block = rng.random(count * elems, dtype=np.float32)
        width = len(str(count - 1))
        # One copy per tensor: each owns its memory, as separately allocated parameters do.
        tensors = {f"params/{i:0{width}d}": block[i * elems : (i + 1) * elems].copy() for i in range(count)}
        del block
        return Workload(name, f"{count:,} small tensors", tensors, info={"elements_per_tensor": elems})
    if name == "large":
        cols = 4096
        rows = max(1, size // (4 * cols))
        rng = np.random.default_rng(seed + 3)
        return Workload(
            name, TITLES[name], {"large/tensor": rng.random((rows, cols), np.float32)}, info={"shape": [rows, cols]}
        )
    if name == "sharded":
        tensors, info = _transformer(size, np.float32, seed + 4)
        return Workload(name, f"transformer float32 in {shards} files", tensors, shards=max(1, shards), info=info)
    raise ValueError(f"unknown workload {name!r} (known: {', '.join(ALL)})")
