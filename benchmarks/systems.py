"""One adapter per system compared: how it saves a workload, restores it, and what it wrote.

Every adapter writes into its own empty directory (``prefix`` is ``DIR/ckpt``), so the harness
can find every file a system wrote by listing that directory, and fsync them all the same way.

  fastckpt       fastckpt.save(durable=...) / fastckpt.load
  raw-N, raw-1   os.pwrite of the same bytes from N threads (one file per thread) or one thread,
                 no format and no checksum: the hardware limit; read back with os.preadv into
                 freshly allocated arrays
  raw-N1         the same N threads writing (reading) disjoint ranges of one file: the limit for
                 a format that keeps a tensor in one file (ext4 serializes buffered writes to one
                 file)
  tf-saver       tf.compat.v1.train.Saver in graph mode: variables built and filled once
                 (untimed), then saver.save / saver.restore (restores into the variables)
  fastckpt-saver fastckpt.Saver on the same graph-mode variables (the drop-in path)
  tf-checkpoint  tf.train.Checkpoint(vars=...).write / .read on eager tf.Variables
  torch          torch.save of a dict of CPU tensors (shared with the numpy arrays) /
                 torch.load(weights_only=True) (fully read, no mmap)
  safetensors    safetensors.numpy.save_file / load_file
  numpy          numpy.savez (an uncompressed .npz) / numpy.load, every member read

Lifecycle: ``unavailable()`` (import check, class level), ``skip_reason(workload)``,
``prepare(workload)`` (untimed), then any number of ``save(prefix, durable)`` and
``restore(prefix)`` (timed), ``values(restored)`` (untimed: numpy arrays for the check),
``close()``.

A restore must leave every value in memory: nothing lazy or memory-mapped is returned (the
restored values are checksummed after the timing, but a lazy restore would shift the reading
into that check, so adapters that could return mmap-backed arrays copy them inside the timing).
"""

from __future__ import annotations

import math
import mmap
import os
from typing import Dict, List, Mapping, Optional, Sequence, Type

import numpy as np

from . import _common as C
from .workloads import Workload

ORDER = (
    "fastckpt",
    "raw-N",
    "raw-N1",
    "raw-1",
    "tf-saver",
    "fastckpt-saver",
    "tf-checkpoint",
    "torch",
    "safetensors",
    "numpy",
)
ALIASES = {"raw": ("raw-N", "raw-N1", "raw-1"), "tf": ("tf-saver", "tf-checkpoint")}


class Options:
    def __init__(self, threads: Optional[int] = None, tf_max_tensors: int = 10_000):
        self.threads = threads  # None: each system's default
        self.raw_threads = threads or C.num_cores()
        self.tf_max_tensors = tf_max_tensors


def _is_bf16(dtype: np.dtype) -> bool:
    return dtype.name == "bfloat16"


def _mapped(a: np.ndarray) -> bool:
    """True if ``a``'s memory comes from a memory-mapped file (reads would happen lazily)."""
    seen = 0
    obj = a
    while obj is not None and seen < 32:
        if isinstance(obj, (mmap.mmap, np.memmap)):
            return True
        if isinstance(obj, memoryview):
            obj = obj.obj
        else:
            obj = getattr(obj, "base", None)
        seen += 1
    return False


def _in_memory(a: np.ndarray) -> np.ndarray:
    return np.array(a, copy=True) if _mapped(a) else a


def _shard_paths(prefix: str, n: int, ext: str) -> List[str]:
    if n <= 1:
        return [prefix + ext]
    return [f"{prefix}-{i + 1:05d}-of-{n:05d}{ext}" for i in range(n)]


class System:
    name = ""
    label = ""
    files_note = ""

    def __init__(self, opts: Options):
        self.opts = opts

    @classmethod
    def unavailable(cls) -> Optional[str]:
        return None

    def version(self) -> str:
        return ""

    def skip_reason(self, w: Workload) -> Optional[str]:
        return None

    def prepare(self, w: Workload) -> None:
        self.w = w

    def save(self, prefix: str, durable: bool) -> None:
        raise NotImplementedError

    def restore(self, prefix: str):
        raise NotImplementedError

    def values(self, restored) -> Mapping[str, np.ndarray]:
        return restored

    def close(self) -> None:
        pass


class Fastckpt(System):
    name = "fastckpt"
    label = "fastckpt.save / fastckpt.load (every CRC verified)"

    @classmethod
    def unavailable(cls):
        try:
            import fastckpt  # noqa: F401
        except Exception as e:  # noqa: BLE001 - reported as a note
            return f"fastckpt not importable ({type(e).__name__}: {e})"
        return None

    def version(self):
        import fastckpt

        return fastckpt.__version__

    def prepare(self, w):
        import fastckpt

        self.fc = fastckpt
        self.w = w
        self.num_shards = w.shards if w.shards > 1 else None

    def save(self, prefix, durable):
        self.fc.save(self.w.tensors, prefix, threads=self.opts.threads, num_shards=self.num_shards, durable=durable)

    def restore(self, prefix):
        return self.fc.load(prefix, threads=self.opts.threads)


class _Raw(System):
    nthreads = 1
    one_file = False

    def prepare(self, w):
        self.w = w
        self.names = list(w.tensors)
        self.arrays = [w.tensors[n] for n in self.names]
        self.specs = [(a.shape, a.dtype) for a in self.arrays]

    def save(self, prefix, durable):
        C.raw_write(self.arrays, prefix, self.nthreads, durable, one_file=self.one_file)

    def restore(self, prefix):
        return dict(zip(self.names, C.raw_read(self.specs, prefix, self.nthreads, one_file=self.one_file)))


class RawN(_Raw):
    name = "raw-N"

    def __init__(self, opts):
        super().__init__(opts)
        self.nthreads = opts.raw_threads
        self.label = f"os.pwrite / os.preadv of the same bytes, {self.nthreads} threads, one file each"


class RawN1(RawN):
    name = "raw-N1"
    one_file = True

    def __init__(self, opts):
        super().__init__(opts)
        self.label = f"os.pwrite / os.preadv of the same bytes, {self.nthreads} threads into one file"


class Raw1(_Raw):
    name = "raw-1"
    label = "os.pwrite / os.preadv of the same bytes, 1 thread"


def _import_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


class _TF(System):
    @classmethod
    def unavailable(cls):
        try:
            _import_tf()
        except Exception as e:  # noqa: BLE001 - ImportError, or a broken install
            return f"tensorflow not importable ({type(e).__name__}: {e})"
        return None

    def version(self):
        return _import_tf().__version__

    def skip_reason(self, w):
        if w.count > self.opts.tf_max_tensors:
            return (
                f"{w.count:,} tensors > --tf-max-tensors {self.opts.tf_max_tensors:,}: "
                "TensorFlow's per-variable Python overhead makes this workload take many "
                "minutes per round"
            )
        return None


class TFSaver(_TF):
    name = "tf-saver"
    label = "tf.compat.v1.train.Saver (graph mode; sharded=True over virtual CPU devices)"

    def prepare(self, w):
        tf = _import_tf()
        self.tf = tf
        self.w = w
        groups = w.groups() if w.shards > 1 else [w.tensors]
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.variables = {}
            assigns, feeds = [], {}
            for g, group in enumerate(groups):
                with tf.device(f"/cpu:{g}"):
                    for name, a in group.items():
                        dt = tf.as_dtype(a.dtype)
                        v = tf.compat.v1.get_variable(
                            name,
                            shape=a.shape,
                            dtype=dt,
                            initializer=tf.compat.v1.zeros_initializer(),
                            use_resource=True,
                        )
                        ph = tf.compat.v1.placeholder(dt, shape=a.shape)
                        assigns.append(v.assign(ph, read_value=False))
                        feeds[ph] = a
                        self.variables[name] = v
            self.saver = tf.compat.v1.train.Saver(var_list=self.variables, sharded=len(groups) > 1, max_to_keep=None)
            config = tf.compat.v1.ConfigProto(device_count={"CPU": len(groups)})
            self.sess = tf.compat.v1.Session(graph=self.graph, config=config)
            self.sess.run(tf.compat.v1.global_variables_initializer())
            self.sess.run(assigns, feed_dict=feeds)  # values in place once, untimed
            self.graph.finalize()

    def save(self, prefix, durable):
        with self.graph.as_default():  # Saver.save must not run eagerly
            self.saver.save(self.sess, prefix, write_meta_graph=False, write_state=False)

    def restore(self, prefix):
        with self.graph.as_default():
            self.saver.restore(self.sess, prefix)
        return None  # the values are in the session's variables

    def values(self, restored):
        return self.sess.run(self.variables)

    def close(self):
        self.sess.close()


class FastckptSaver(TFSaver):
    """fastckpt.Saver on the very variables, graph and session tf-saver uses: the
    drop-in path (values read in place through the Saver's op, restored
    through the graph's restore ops)."""

    name = "fastckpt-saver"
    label = "fastckpt.Saver as a drop-in for tf.compat.v1.train.Saver (graph mode, same variables)"

    def prepare(self, w):
        import fastckpt

        super().prepare(w)
        with self.graph.as_default():
            # fastckpt's Saver builds TensorFlow's save/restore subgraph and its
            # in-place read op here, as a program would before finalizing.
            self.graph._unsafe_unfinalize()  # noqa: SLF001 - benchmark setup only
            self.saver = fastckpt.Saver(
                var_list=self.variables,
                sharded=self.saver._sharded,  # noqa: SLF001
                max_to_keep=None,
                threads=self.opts.threads,
            )
            self.graph.finalize()

    def save(self, prefix, durable):
        with self.graph.as_default():
            self.saver._durable = durable  # noqa: SLF001 - one Saver, both modes
            self.saver.save(self.sess, prefix, write_meta_graph=False, write_state=False)


class TFCheckpoint(_TF):
    name = "tf-checkpoint"
    label = "tf.train.Checkpoint.write / .read (eager; MaxShardSizePolicy when sharded)"

    def prepare(self, w):
        tf = _import_tf()
        self.w = w
        self.variables = {name: tf.Variable(a, name=name.replace("/", "_")) for name, a in w.tensors.items()}
        self.ckpt = tf.train.Checkpoint(vars=self.variables)
        self.options = None
        if w.shards > 1:
            policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=int(math.ceil(w.nbytes / w.shards)))
            self.options = tf.train.CheckpointOptions(experimental_sharding_callback=policy)

    def save(self, prefix, durable):
        self.ckpt.write(prefix, options=self.options)

    def restore(self, prefix):
        status = self.ckpt.read(prefix, options=self.options)
        status.assert_consumed()
        return None  # restored into the eager variables

    def values(self, restored):
        return {name: v.numpy() for name, v in self.variables.items()}

    def close(self):
        del self.ckpt, self.variables


class Torch(System):
    name = "torch"
    label = "torch.save / torch.load(weights_only=True) of a dict of CPU tensors"

    @classmethod
    def unavailable(cls):
        try:
            import torch  # noqa: F401
        except Exception as e:  # noqa: BLE001
            return f"torch not importable ({type(e).__name__}: {e})"
        return None

    def version(self):
        import torch

        return torch.__version__

    def prepare(self, w):
        import torch

        self.torch = torch
        self.w = w

        def to_torch(a: np.ndarray):
            if _is_bf16(a.dtype):  # torch cannot wrap ml_dtypes' bfloat16: share the bits
                return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
            return torch.from_numpy(a)

        self.groups = [{n: to_torch(a) for n, a in g.items()} for g in w.groups()]

    def save(self, prefix, durable):
        for path, group in zip(_shard_paths(prefix, len(self.groups), ".pt"), self.groups):
            self.torch.save(group, path)

    def restore(self, prefix):
        out = {}
        for path in _shard_paths(prefix, len(self.groups), ".pt"):
            out.update(self.torch.load(path, weights_only=True, mmap=False))
        return out

    def values(self, restored):
        import ml_dtypes

        out = {}
        for name, t in restored.items():
            if t.dtype == self.torch.bfloat16:
                out[name] = t.view(self.torch.int16).numpy().view(ml_dtypes.bfloat16)
            else:
                out[name] = t.numpy()
        return out


class Safetensors(System):
    name = "safetensors"
    label = "safetensors.numpy.save_file / load_file"

    @classmethod
    def unavailable(cls):
        try:
            import safetensors.numpy  # noqa: F401
        except Exception as e:  # noqa: BLE001
            return f"safetensors not importable ({type(e).__name__}: {e})"
        return None

    def version(self):
        import safetensors

        return safetensors.__version__

    def prepare(self, w):
        import safetensors.numpy as stnp

        self.st = stnp
        self.w = w
        self.groups = w.groups()

    def save(self, prefix, durable):
        for path, group in zip(_shard_paths(prefix, len(self.groups), ".safetensors"), self.groups):
            self.st.save_file(group, path)

    def restore(self, prefix):
        out = {}
        for path in _shard_paths(prefix, len(self.groups), ".safetensors"):
            out.update({k: _in_memory(v) for k, v in self.st.load_file(path).items()})
        return out


class Numpy(System):
    name = "numpy"
    label = "numpy.savez (uncompressed .npz) / numpy.load, every member read"
    files_note = "bfloat16 stored as its uint16 bits (.npy has no bfloat16)"

    @classmethod
    def unavailable(cls):
        return None

    def version(self):
        return np.__version__

    def prepare(self, w):
        self.w = w
        self.bf16 = {n for n, a in w.tensors.items() if _is_bf16(a.dtype)}
        self.groups = [{n: (a.view(np.uint16) if n in self.bf16 else a) for n, a in g.items()} for g in w.groups()]

    def save(self, prefix, durable):
        for path, group in zip(_shard_paths(prefix, len(self.groups), ".npz"), self.groups):
            np.savez(path, **group)

    def restore(self, prefix):
        out = {}
        for path in _shard_paths(prefix, len(self.groups), ".npz"):
            with np.load(path, allow_pickle=False) as z:
                for k in z.files:
                    out[k] = _in_memory(z[k])
        if self.bf16:
            bf16 = next(iter(self.w.tensors[n] for n in self.bf16)).dtype
            for n in self.bf16:
                out[n] = out[n].view(bf16)
        return out


REGISTRY: Dict[str, Type[System]] = {
    cls.name: cls
    for cls in (Fastckpt, RawN, RawN1, Raw1, TFSaver, FastckptSaver, TFCheckpoint, Torch, Safetensors, Numpy)
}


def expand(names: Sequence[str]) -> List[str]:
    """System names in the canonical order, with the aliases ``raw`` and ``tf`` expanded."""
    wanted = set()
    for n in names:
        n = n.strip()
        if not n:
            continue
        if n in ALIASES:
            wanted.update(ALIASES[n])
        elif n in REGISTRY:
            wanted.add(n)
        else:
            raise ValueError(f"unknown system {n!r} (known: {', '.join(ORDER)}, raw, tf)")
    return [n for n in ORDER if n in wanted]
