"""Nested training state as named tensors, and back.

A state such as ``{"model": model.state_dict(), "optim":
optimizer.state_dict(), "step": 1000, "rng": torch.get_rng_state()}`` is
flattened into TensorFlow-style variable names plus a description of its
structure; the description is stored in the checkpoint itself, as one string
tensor under :data:`STRUCTURE_KEY` (the way TensorFlow stores its object
graph under ``_CHECKPOINTABLE_OBJECT_GRAPH``), so TensorFlow still reads every
tensor by name and fastckpt rebuilds exactly what was saved.

**Names.** A leaf's name is its path: the keys and indices from the root,
joined with ``/`` (``optim/state/0/exp_avg``, ``optim/param_groups/0/lr``).
Keys are written as they are, ``/`` included (``{"dense/kernel": w}`` and
``{"dense": {"kernel": w}}`` both name the tensor ``dense/kernel``, which is
what TensorFlow users expect); two paths that would share a name are
refused (:class:`~fastckpt.InvalidArgumentError` naming both), as are empty
keys. Integer keys and list/tuple indices are written in decimal; the
structure records which keys were integers.

**Leaves.** Arrays of every supported kind (numpy, torch, JAX, CuPy, buffer
protocol) are tensors of their own shape and dtype. Python ``bool``,
``int`` (64-bit; a larger one is stored as its decimal digits), ``float``,
``complex``, ``str`` and ``bytes`` and numpy scalars are 0-d tensors, and come
back as the same Python or numpy type (nan and inf included). ``None`` has no
tensor. Containers: ``dict`` (``str`` or ``int`` keys; an ``OrderedDict``
stays one, with torch's ``_metadata``), ``list`` and ``tuple``. Anything
else is refused with :class:`~fastckpt.UnsupportedDtypeError` naming its path
(``optim/state/0/foo: a MyClass``), unless the caller opts in to pickling
(``allow_pickle=True`` on save, and again on load).

**Flat mappings.** A ``dict`` of names to arrays (the form fastckpt has always
saved; numpy scalars count as 0-d arrays there, and names may be ``bytes``)
gets no structure entry: its
keys are the tensor names, and loading gives the same flat ``dict`` of
arrays, as before (a numpy scalar comes back as a 0-d array, as TensorFlow's
reader returns it).
"""

from __future__ import annotations

import collections
import json
import pickle
from typing import Any, Callable, Dict, Iterator, Mapping, NamedTuple, Optional, Tuple

import numpy as np

from .errors import InvalidArgumentError, UnsupportedDtypeError

__all__ = [
    "STRUCTURE_KEY",
    "Flattened",
    "flatten",
    "unflatten",
    "leaf_paths",
    "array_leaves",
    "is_array",
    "is_scalar",
    "decode_structure",
]

#: The reserved tensor name of a checkpoint's structure description.
STRUCTURE_KEY = "_FASTCKPT_STRUCTURE"
_FORMAT = 1

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


class Flattened(NamedTuple):
    """A flattened state: ``tensors`` (name -> value, in path order; values
    are the caller's arrays, or 0-d numpy arrays made for scalars) and the
    structure description (None for a flat mapping of arrays)."""

    tensors: Dict[str, Any]
    structure: Optional[Dict[str, Any]]

    def encoded_structure(self) -> Optional[bytes]:
        """The structure description as stored (UTF-8 JSON), or None."""
        if self.structure is None:
            return None
        return json.dumps(self.structure, separators=(",", ":"), allow_nan=False).encode("utf-8")


def is_array(value: Any) -> bool:
    """Whether `value` is an array of a kind fastckpt saves as a tensor
    (numpy, torch, JAX, CuPy, or anything exporting ``__array_interface__``,
    ``__cuda_array_interface__``, DLPack or the buffer protocol)."""
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, (str, bytes, bytearray, Mapping, list, tuple, np.generic)) or value is None:
        return False  # numpy scalars are scalars (immutable), not arrays
    if isinstance(value, memoryview):
        return True
    module = type(value).__module__ or ""
    if module.startswith(("torch", "jax", "jaxlib", "cupy")) and hasattr(value, "shape"):
        return True
    return any(
        hasattr(value, a) for a in ("__array_interface__", "__cuda_array_interface__", "__array__", "__dlpack__")
    )


def is_scalar(value: Any) -> bool:
    """Whether `value` is a leaf saved as a 0-d tensor or as nothing (None,
    bool, int, float, complex, str, bytes, a numpy scalar)."""
    return value is None or isinstance(value, (bool, int, float, complex, str, bytes, bytearray, np.generic))


def _describe(value: Any) -> str:
    name = type(value).__qualname__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name}"


def _join(path: str, key: str) -> str:
    return f"{path}/{key}" if path else key


def _key_text(path: str, key: Any) -> str:
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise UnsupportedDtypeError(f"{path or '<root>'}: dict keys must be str or int, not {_describe(key)} ({key!r})")
    text = str(key)
    if not text:
        where = f"under '{path}'" if path else "at the top level"
        raise InvalidArgumentError(f"tensor names must not be empty: a key {where} is ''")
    return text


class _Flattener:
    def __init__(self, allow_pickle: bool, special: Optional[Callable[[Any, str], Optional[Dict[str, Any]]]]) -> None:
        self.allow_pickle = allow_pickle
        self.special = special
        self.tensors: Dict[str, Any] = {}
        self.paths: Dict[str, str] = {}  # name -> the path that took it, for collision messages

    def add(self, name: str, value: Any) -> None:
        if name == STRUCTURE_KEY:
            raise InvalidArgumentError(f"'{STRUCTURE_KEY}' is reserved for fastckpt's structure entry")
        if name in self.tensors:
            raise InvalidArgumentError(
                f"two leaves of the state would both be named '{name}' (keys are joined with '/' "
                "as they are: rename one)"
            )
        self.tensors[name] = value

    def node(self, value: Any, path: str) -> Dict[str, Any]:
        if self.special is not None and path:
            handled = self.special(value, path)
            if handled is not None:
                return handled
        if isinstance(value, Mapping):
            # Other Mapping types come back as dicts.
            kind = "odict" if isinstance(value, collections.OrderedDict) else "dict"
            keys, children = [], []
            for k, v in value.items():
                text = _key_text(path, k)
                keys.append(k)
                children.append(self.node(v, _join(path, text)))
            out: Dict[str, Any] = {"t": kind, "k": keys, "c": children}
            meta = getattr(value, "_metadata", None)
            if kind == "odict" and meta is not None:
                out["m"] = _plain(meta, _join(path, "_metadata"))
            return out
        if type(value) in (list, tuple):
            return {"t": type(value).__name__, "c": [self.node(v, _join(path, str(i))) for i, v in enumerate(value)]}
        return self.leaf(value, path)

    def leaf(self, value: Any, path: str) -> Dict[str, Any]:
        if not path:
            raise InvalidArgumentError(f"a state must be a mapping, list or tuple of values, not {_describe(value)}")
        if value is None:
            return {"t": "none"}
        if isinstance(value, bool):
            self.add(path, np.array(value))
            return {"t": "bool"}
        if isinstance(value, int):
            if _INT64_MIN <= value <= _INT64_MAX:
                self.add(path, np.array(value, dtype=np.int64))
                return {"t": "int"}
            self.add(path, np.array(str(value).encode("ascii"), dtype=object))
            return {"t": "bigint"}
        if isinstance(value, float):
            self.add(path, np.array(value, dtype=np.float64))
            return {"t": "float"}
        if isinstance(value, complex):
            self.add(path, np.array(value, dtype=np.complex128))
            return {"t": "complex"}
        if isinstance(value, str):
            self.add(path, np.array(value.encode("utf-8"), dtype=object))
            return {"t": "str"}
        if isinstance(value, (bytes, bytearray)):
            self.add(path, np.array(bytes(value), dtype=object))
            return {"t": "bytes"}
        if isinstance(value, np.generic):
            arr = np.asarray(value)
            if arr.dtype.kind in "SUO":
                raise UnsupportedDtypeError(f"{path}: {_describe(value)} (use str or bytes)")
            self.add(path, arr)
            return {"t": "np"}
        if is_array(value):
            self.add(path, value)
            return {"t": "tensor"}
        if self.allow_pickle:
            try:
                blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # noqa: BLE001 - any pickling failure names the leaf
                raise UnsupportedDtypeError(f"{path}: {_describe(value)} cannot be pickled: {e}") from None
            self.add(path, np.array(blob, dtype=object))
            return {"t": "pickle"}
        raise UnsupportedDtypeError(
            f"{path}: {_describe(value)}, which a checkpoint cannot hold (leaves are arrays, "
            "numbers, bool, None, str and bytes; pass allow_pickle=True to pickle other objects)"
        )


def _plain(value: Any, path: str) -> Any:
    """`value` (torch's ``_metadata``: dicts of str -> int) as JSON data."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v, _join(path, str(k))) for k, v in value.items()}
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise UnsupportedDtypeError(f"{path}: {_describe(value)} in a state dict's _metadata")


def _is_flat(value: Any) -> bool:
    """A dict of names to arrays (numpy scalars count as 0-d arrays): saved
    as it is, with no structure entry, as fastckpt always saved mappings."""
    return (
        type(value) is dict
        and all(type(k) in (str, bytes) for k in value)
        and all(is_array(v) or isinstance(v, np.generic) for v in value.values())
    )


def flatten(
    state: Any, *, allow_pickle: bool = False, special: Optional[Callable[[Any, str], Optional[Dict[str, Any]]]] = None
) -> Flattened:
    """Names every leaf of `state` (see the module docstring).

    `special(value, path)` may claim a value before the rules above apply
    (the multi-rank save claims sharded tensors and per-rank values): it
    returns the structure node to record, and adds no tensor here; None lets
    the rules apply.

    Raises:
        InvalidArgumentError: empty keys, two leaves of one name, the reserved
            name, or a `state` that is a single value.
        UnsupportedDtypeError: a leaf of no supported kind (its path named),
            or a dict key that is neither str nor int.
    """
    if special is None and _is_flat(state):
        if STRUCTURE_KEY in state:
            raise InvalidArgumentError(f"'{STRUCTURE_KEY}' is reserved for fastckpt's structure entry")
        return Flattened(dict(state), None)
    f = _Flattener(allow_pickle, special)
    root = f.node(state, "")
    return Flattened(f.tensors, {"format": _FORMAT, "root": root})


# -- loading -----------------------------------------------------------------------


def decode_structure(raw: Any, prefix: str) -> Dict[str, Any]:
    """The structure description read from a checkpoint's :data:`STRUCTURE_KEY` tensor.

    Raises:
        DataLossError: it is not a structure description fastckpt can read.
    """
    from .errors import DataLossError

    try:
        text = (raw.item() if isinstance(raw, np.ndarray) else raw).decode("utf-8")
        spec = json.loads(text)
        if not isinstance(spec, dict) or "root" not in spec:
            raise ValueError("no root")
    except (AttributeError, UnicodeDecodeError, ValueError) as e:
        raise DataLossError(f"checkpoint '{prefix}': its structure entry '{STRUCTURE_KEY}' is damaged ({e})") from None
    if spec.get("format") != _FORMAT:
        from .errors import UnimplementedError

        raise UnimplementedError(
            f"checkpoint '{prefix}' describes its structure in format {spec.get('format')!r}; "
            f"this version of fastckpt reads format {_FORMAT} (written by a newer version?)"
        )
    return spec


def unflatten(
    structure: Dict[str, Any],
    tensors: Mapping[str, Any],
    *,
    prefix: str,
    allow_pickle: bool = False,
    convert: Optional[Callable[[Any], Any]] = None,
) -> Any:
    """Rebuilds the state `structure` describes from `tensors` (name ->
    array as read). `convert` maps each array leaf (not scalars) to the
    caller's array type.

    Raises:
        DataLossError: the structure names a tensor the checkpoint lacks, or
            is malformed.
        UnsupportedDtypeError: a pickled leaf and `allow_pickle` is false.
    """
    from .errors import DataLossError

    def fail(path: str, why: str) -> DataLossError:
        return DataLossError(f"checkpoint '{prefix}': its structure entry is damaged at '{path or '<root>'}': {why}")

    def tensor(path: str) -> Any:
        try:
            return tensors[path]
        except KeyError:
            raise fail(path, "no tensor of that name") from None

    def scalar(path: str, kind: str) -> Any:
        arr = np.asarray(tensor(path))
        if arr.shape != ():
            raise fail(path, f"a {kind} must be a scalar, the tensor has shape {list(arr.shape)}")
        return arr[()]

    def build(node: Any, path: str) -> Any:
        if not isinstance(node, dict) or "t" not in node:
            raise fail(path, "not a node")
        t = node["t"]
        if t in ("dict", "odict"):
            keys, children = node.get("k"), node.get("c")
            if not isinstance(keys, list) or not isinstance(children, list) or len(keys) != len(children):
                raise fail(path, "keys and children do not match")
            out: Dict[Any, Any] = collections.OrderedDict() if t == "odict" else {}
            for k, c in zip(keys, children):
                if isinstance(k, bool) or not isinstance(k, (str, int)):
                    raise fail(path, f"key {k!r} is neither str nor int")
                out[k] = build(c, _join(path, str(k)))
            if t == "odict" and "m" in node:
                out._metadata = node["m"]  # type: ignore[attr-defined]
            return out
        if t in ("list", "tuple"):
            children = node.get("c")
            if not isinstance(children, list):
                raise fail(path, "no children")
            items = [build(c, _join(path, str(i))) for i, c in enumerate(children)]
            return items if t == "list" else tuple(items)
        if t == "per_rank":
            # A value saved per rank by a multi-rank save: in one process,
            # the list of every rank's value (fastckpt.distributed.load gives
            # each rank its own).
            children = node.get("c")
            if not isinstance(children, list):
                raise fail(path, "no per-rank values")
            return [build(c, _join(path, f"__rank_{r}")) for r, c in enumerate(children)]
        if t == "none":
            return None
        if t == "tensor":
            value = tensor(path)
            return convert(value) if convert is not None else value
        if t == "np":
            return scalar(path, "numpy scalar")
        if t in ("bool", "int", "float", "complex"):
            value = scalar(path, t)
            caster = {"bool": bool, "int": int, "float": float, "complex": complex}[t]
            return caster(value)
        if t == "bigint":
            return int(scalar(path, "integer").decode("ascii"))
        if t == "str":
            return scalar(path, "str").decode("utf-8")
        if t == "bytes":
            return bytes(scalar(path, "bytes"))
        if t == "pickle":
            if not allow_pickle:
                raise UnsupportedDtypeError(
                    f"checkpoint '{prefix}': '{path}' holds a pickled object; unpickling runs code "
                    "from the file, so it happens only with load(..., allow_pickle=True) from a "
                    "checkpoint you trust"
                )
            return pickle.loads(scalar(path, "pickled object"))
        raise fail(path, f"unknown node type {t!r}")

    return build(structure.get("root"), "")


def leaf_paths(target: Any) -> Iterator[Tuple[str, Any]]:
    """(name, leaf) of every leaf of a nested state (arrays, scalars, None),
    named as :func:`flatten` names them."""
    if _is_flat(target):
        yield from target.items()
        return

    def walk(value: Any, path: str) -> Iterator[Tuple[str, Any]]:
        if isinstance(value, Mapping):
            for k, v in value.items():
                yield from walk(v, _join(path, _key_text(path, k)))
        elif type(value) in (list, tuple):
            for i, v in enumerate(value):
                yield from walk(v, _join(path, str(i)))
        else:
            yield path, value

    yield from walk(target, "")


def array_leaves(structure: Dict[str, Any]) -> Iterator[str]:
    """Names of the array leaves (not scalars) a structure description lists."""

    def walk(node: Any, path: str) -> Iterator[str]:
        if not isinstance(node, dict):
            return
        t = node.get("t")
        if t in ("dict", "odict"):
            for k, c in zip(node.get("k") or [], node.get("c") or []):
                yield from walk(c, _join(path, str(k)))
        elif t in ("list", "tuple"):
            for i, c in enumerate(node.get("c") or []):
                yield from walk(c, _join(path, str(i)))
        elif t == "tensor":
            yield path

    yield from walk(structure.get("root"), "")
