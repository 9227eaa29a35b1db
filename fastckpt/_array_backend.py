"""The array side of :class:`fastckpt.Saver`: variables are the caller's
arrays (numpy, CuPy, torch, JAX) in a dict; TensorFlow is not involved.

The ``.meta`` it writes is built from fastckpt's own protobuf definitions
(:mod:`fastckpt.metagraph`); restores fill mutable arrays in place and
replace immutable ones (JAX), keeping their placement.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, ContextManager, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from . import config
from . import metagraph as mg
from ._arrays import to_host_array
from .errors import ArgumentTypeError, InvalidArgumentError
from .format import dtypes
from .reader import CheckpointReader, check_restore_target, target_shape_and_dtype
from .writer import prepare_items

__all__ = ["ArrayBackend"]

PathLike = Union[str, "os.PathLike[str]"]


class ArrayBackend:
    """Variables are caller arrays in a dict; no TensorFlow involved."""

    def __init__(
        self,
        var_list: Mapping[str, Any],
        *,
        sharded: bool,
        max_to_keep: Optional[int],
        keep_checkpoint_every_n_hours: float,
        name: Optional[str],
        allow_empty: bool,
        filename: Optional[str],
    ) -> None:
        if not isinstance(var_list, Mapping):
            raise ArgumentTypeError("without TensorFlow, var_list must be a dict of name -> array")
        for key in var_list:
            if not isinstance(key, str) or not key:
                raise InvalidArgumentError(f"variable names must be non-empty strings, not {key!r}")
        self.var_list: Dict[str, Any] = dict(var_list)
        self.is_empty = not self.var_list
        if self.is_empty and not allow_empty:
            raise InvalidArgumentError("No variables to save")
        self._sharded = sharded
        self._meta_args: Dict[str, Any] = dict(
            filename=filename or "model",
            max_to_keep=max_to_keep,
            keep_checkpoint_every_n_hours=keep_checkpoint_every_n_hours,
            sharded=sharded,
            name=name or "save",
            allow_empty=allow_empty,
        )
        self._meta_cache: Optional[Tuple[Tuple[Any, ...], Any]] = None
        self.sort_data = True

    # Hooks used by Saver ---------------------------------------------------
    def native_io(self) -> bool:
        return True  # arrays: always written and read by the native core

    def check_built(self) -> None:
        pass

    def build(self) -> None:
        pass

    def retention(self) -> None:
        return None  # the constructor's arguments stand

    def check_session(self, sess: Any) -> None:
        pass  # no session: arrays are read directly

    def global_step_value(self, sess: Any, global_step: Any) -> int:
        value = to_host_array(global_step)
        if value.size != 1 or value.dtype.kind not in "iu":
            raise ArgumentTypeError(f"global_step must be an integer, not {global_step!r}")
        return int(value.reshape(()))

    def default_shards(self) -> Optional[int]:
        if self._sharded:
            return config.default_threads()
        return None

    def collect(self, sess: Any) -> Tuple[List[Any], List[Any]]:
        return prepare_items(self.var_list)

    def fetch_in_groups(self, sess: Any, group_bytes: int) -> None:
        return None  # arrays need no fetch: one native write takes them all

    def values(self, sess: Any) -> ContextManager[Tuple[List[Any], List[Any]]]:
        return contextlib.nullcontext(self.collect(sess))

    def _specs(self) -> List[mg.VariableSpec]:
        specs = []
        for name, value in sorted(self.var_list.items()):
            try:  # numpy, CuPy and JAX arrays say their dtype without a copy
                dtype, shape = np.dtype(value.dtype), tuple(value.shape)
            except (AttributeError, TypeError):
                if (type(value).__module__ or "").startswith("torch"):
                    from ._arrays import torch_numpy_dtype

                    dtype, shape = torch_numpy_dtype(value.dtype), tuple(value.shape)
                else:
                    arr = to_host_array(value)
                    dtype, shape = arr.dtype, tuple(arr.shape)
            specs.append(mg.VariableSpec(name=name, dtype=dtypes.from_numpy_dtype(dtype), shape=shape))
        return specs

    def _meta_graph(self) -> Any:
        specs = tuple(self._specs())
        if self._meta_cache is None or self._meta_cache[0] != specs:
            self._meta_cache = (specs, mg.build_meta_graph(specs, **self._meta_args))
        return self._meta_cache[1]

    @property
    def saver_def(self) -> Any:
        return self._meta_graph().saver_def

    def to_proto(self, export_scope: Optional[str]) -> Any:
        return self.saver_def

    def capture_meta_graph(
        self, sess: Any, *, strip_default_attrs: bool, save_debug_info: bool
    ) -> Callable[[str, bool], None]:
        """The MetaGraphDef of the variables as they are now, as ``write(path, durable)``."""
        meta = self._meta_graph()

        def write(path: str, durable: bool) -> None:
            mg.write_meta_graph(meta, path, fsync=durable)

        return write

    def export_meta_graph(
        self, filename: Optional[PathLike], *, durable: bool, as_text: bool = False, **unused: Any
    ) -> Any:
        meta = self._meta_graph()
        if filename is not None:
            mg.write_meta_graph(meta, filename, as_text=as_text, fsync=durable)
        return meta

    def restore(self, sess: Any, reader: CheckpointReader) -> Optional[Dict[str, Any]]:
        """Fills the arrays in place (one path for numpy, torch and CuPy, on
        the host or a device: :meth:`CheckpointReader.read_into`); immutable
        ones (JAX arrays, read-only numpy arrays, scalars) are replaced by new
        arrays, which are returned. Dtypes and shapes must match the
        checkpoint exactly (InvalidArgumentError otherwise)."""
        immutable = {name for name, target in self.var_list.items() if not _writable_in_place(target)}
        reader.read_into({n: t for n, t in self.var_list.items() if n not in immutable})
        replaced: Dict[str, Any] = {}
        for name in sorted(immutable):
            target = self.var_list[name]
            value = reader.get_tensor(name)
            shape, dtype = target_shape_and_dtype(target)
            check_restore_target(name, reader.prefix, value.dtype, value.shape, dtype, shape)
            replaced[name] = self.var_list[name] = _replacement(target, value)
        return replaced or None


def _writable_in_place(target: Any) -> bool:
    """Whether a Saver variable is restored in place (else it is replaced)."""
    if isinstance(target, np.ndarray):
        return bool(target.flags.writeable)
    module = type(target).__module__ or ""
    if module.startswith(("jax", "jaxlib")):
        return False  # JAX arrays are immutable
    return (
        module.startswith("torch")
        or hasattr(target, "__cuda_array_interface__")
        or (hasattr(target, "__setitem__") and hasattr(target, "shape"))
    )


def _replacement(target: Any, value: np.ndarray) -> Any:
    """A new array holding `value` where `target` cannot be written: a JAX
    array placed as `target` was (its sharding), or the numpy array itself."""
    module = type(target).__module__ or ""
    if module.startswith(("jax", "jaxlib")):
        import jax

        return jax.device_put(value, getattr(target, "sharding", None))
    return value
