"""fastckpt: fast, TensorFlow-compatible checkpoints.

Writes and reads TensorFlow's V2 checkpoint layout (``PREFIX.index`` and
``PREFIX.data-NNNNN-of-MMMMM``) byte for byte, with a native core that writes
shards in parallel, checksums with hardware CRC32C and verifies every read.

The public names are resolved on first use (PEP 562): importing the package,
or a pure-Python part of it such as :mod:`fastckpt.format`, does not load the
native extension ``fastckpt._native``; the first use of a name that needs it
does. The errors (:mod:`fastckpt.errors`) are plain Python and bound at once.
"""

import importlib as _importlib
import os as _os
import sys as _sys
import types as _types
import typing as _typing

# Imported at once: no native code. _background registers its exit and fork
# hooks on import, and does so before any module that registers its own
# (distributed.comm), as it always has: exit hooks run in reverse order.
from . import _background as _background
from . import errors as _errors
from ._background import AsyncSave, wait_for_pending_saves
from .errors import *  # noqa: F403 -- the exception classes (errors.__all__)

if _typing.TYPE_CHECKING:
    # What the lazy names below resolve to, for type checkers (mypy reads these;
    # at run time __getattr__ imports them on first use).
    from ._progress import Progress, ProgressCallback
    from .checkpoint_management import (
        checkpoint_exists,
        get_checkpoint_mtimes,
        get_checkpoint_state,
        latest_checkpoint,
        remove_checkpoint,
        update_checkpoint_state,
    )
    from .convert import ConvertReport, convert
    from .diff import DiffResult, TensorChange, TensorDiff, diff
    from .distributed.leaves import PerRank, Shard
    from .reader import CheckpointReader, RestoreReport, list_variables, load, load_checkpoint, load_into, load_variable
    from .saver import Saver, export_meta_graph, import_meta_graph
    from .verification import VerifyReport, latest_valid_checkpoint, verify
    from .writer import SaveResult, save

    __version__: str

# Public name -> the module that defines it, imported on first use.
_LAZY: _typing.Dict[str, str] = {
    **dict.fromkeys(
        [
            "checkpoint_exists",
            "get_checkpoint_mtimes",
            "get_checkpoint_state",
            "latest_checkpoint",
            "remove_checkpoint",
            "update_checkpoint_state",
        ],
        "checkpoint_management",
    ),
    **dict.fromkeys(
        [
            "CheckpointReader",
            "RestoreReport",
            "list_variables",
            "load",
            "load_checkpoint",
            "load_into",
            "load_variable",
        ],
        "reader",
    ),
    **dict.fromkeys(["Saver", "export_meta_graph", "import_meta_graph"], "saver"),
    **dict.fromkeys(["VerifyReport", "latest_valid_checkpoint", "verify"], "verification"),
    **dict.fromkeys(["SaveResult", "save"], "writer"),
    **dict.fromkeys(["Progress", "ProgressCallback"], "_progress"),
    **dict.fromkeys(["PerRank", "Shard"], "distributed.leaves"),
    **dict.fromkeys(["ConvertReport", "convert"], "convert"),
    **dict.fromkeys(["DiffResult", "TensorChange", "TensorDiff", "diff"], "diff"),
}

# Submodules that were attributes of the package as soon as it was imported
# (the package imported them all); ``fastckpt.writer`` and the like still
# work after a plain ``import fastckpt``.
_SUBMODULES = frozenset(
    {
        "_arrays",
        "_atomic_io",
        "_bundle_stream",
        "_device",
        "_gc",
        "_native",
        "_progress",
        "_tf_errors",
        "checkpoint_management",
        "compression",
        "config",
        "distributed",
        "format",
        "metagraph",
        "proto",
        "reader",
        "saver",
        "structure",
        "verification",
        "writer",
    }
)

# Functions that shadow their own module's name: ``fastckpt.convert`` and
# ``fastckpt.diff`` are the functions, whatever has imported the modules.
_SHADOWED = frozenset({"convert", "diff"})

__all__ = [
    "__version__",
    "build_info",
    "save",
    "SaveResult",
    "AsyncSave",
    "wait_for_pending_saves",
    "release_staging_memory",
    "load",
    "load_into",
    "RestoreReport",
    "Shard",
    "PerRank",
    "load_checkpoint",
    "load_variable",
    "list_variables",
    "CheckpointReader",
    "Saver",
    "import_meta_graph",
    "export_meta_graph",
    "latest_checkpoint",
    "get_checkpoint_state",
    "update_checkpoint_state",
    "checkpoint_exists",
    "get_checkpoint_mtimes",
    "remove_checkpoint",
    "verify",
    "VerifyReport",
    "Progress",
    "ProgressCallback",
    "latest_valid_checkpoint",
    "convert",
    "ConvertReport",
    "diff",
    "DiffResult",
    "TensorChange",
    "TensorDiff",
]
# Then every exception class.
__all__ += _errors.__all__


def build_info() -> _typing.Dict[str, _typing.Any]:
    """Facts about this build and machine.

    Keys: ``version``, ``crc32c_impl`` (the CRC32C implementation in use),
    ``crc32c_impls`` (those this CPU can run), ``io_threads`` (the default
    number of I/O threads), ``device_policy`` (``FASTCKPT_DEVICE``: ``"auto"``,
    ``"on"`` or ``"off"``), ``cuda_driver_found``, ``cuda_initialized``,
    ``cuda_device_count``, ``cuda_driver_version``, ``cuda_error``,
    ``device_path`` (the path device arrays take: ``"cuda"``, or ``"cpu"``
    where there is none), ``arch``, ``compiler``.

    This call loads and initialises the CUDA driver to describe it (nothing
    else does unless a device array is involved), except under
    ``FASTCKPT_DEVICE=off``, where the driver is never touched and the CUDA
    keys say so.
    """
    from . import _native, config

    policy = config.device_policy()
    probe = policy != "off"
    info = dict(_native.build_info(probe))
    if not probe:
        info.update(
            cuda_driver_found=False,
            cuda_initialized=False,
            cuda_device_count=0,
            cuda_driver_version=0,
            cuda_error="not probed: FASTCKPT_DEVICE=off",
            device_path="cpu",
        )
    info["device_policy"] = policy
    info["io_threads"] = config.default_threads()
    return info


def release_staging_memory() -> None:
    """Returns the idle host staging buffers (pinned memory kept for reuse by
    device and asynchronous saves) to the system."""
    from . import _native

    _native.trim_staging()


def __getattr__(name: str) -> _typing.Any:
    """Resolves a public name, or a submodule, on first use (PEP 562)."""
    if name == "__version__":
        from . import _native

        value: _typing.Any = _native.__version__
    elif name in _LAZY:
        value = getattr(_importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    elif name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> _typing.List[str]:
    return sorted(set(globals()) | set(__all__) | _SUBMODULES)


class _Package(_types.ModuleType):
    """The package's module type: keeps the functions that shadow their own
    module's name (see _SHADOWED) when the import system binds the module."""

    def __setattr__(self, name: str, value: _typing.Any) -> None:
        if name in _SHADOWED and isinstance(value, _types.ModuleType):
            return  # the module stays in sys.modules (``import fastckpt.convert`` finds it there)
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package

# These settings configure the native core (fastckpt.config applies them); when
# one is set it is applied (and a bad value refused) at import, before anything
# can use the core, which loads the extension. Otherwise nothing loads.
_NATIVE_SETTINGS = ("FASTCKPT_DISABLE_CPU_FEATURES", "FASTCKPT_MAX_THREADS", "FASTCKPT_CRC32C")
if any(_os.environ.get(name, "").strip() for name in _NATIVE_SETTINGS):
    from . import config as _config

    _config._apply_environment()
