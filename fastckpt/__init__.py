"""fastckpt: fast, TensorFlow-compatible checkpoints.

Writes and reads TensorFlow's V2 checkpoint layout (``PREFIX.index`` and
``PREFIX.data-NNNNN-of-MMMMM``) byte for byte, with a native core that writes
shards in parallel, checksums with hardware CRC32C and verifies every read.
"""
import typing as _typing

from . import config as _config
from ._native import __version__ as _native_version
from ._native import build_info as _native_build_info
from .errors import (ArgumentTypeError, CancelledError, CheckpointExistsError, CheckpointIOError,
                     CheckpointIsADirectoryError, CheckpointNotADirectoryError, CheckpointNotFoundError, CheckpointPermissionError,
                     CudaError, CudaUnavailableError, DataLossError, DeadlineExceededError,
                     DistributedError, DistributedLoadError, DistributedSaveError,
                     FailedPreconditionError, FastCkptError, InternalError, InvalidArgumentError,
                     MissingDependencyError, TensorNotFoundError, UnimplementedError,
                     UnsupportedDtypeError)
from .checkpoint_management import (checkpoint_exists, get_checkpoint_mtimes, get_checkpoint_state,
                                     latest_checkpoint, remove_checkpoint, update_checkpoint_state)
from ._background import AsyncSave, wait_for_pending_saves
from .reader import (CheckpointReader, RestoreReport, list_variables, load, load_checkpoint, load_into,
                     load_variable)
from .saver import Saver, export_meta_graph, import_meta_graph
from .verification import VerifyReport, latest_valid_checkpoint, verify
from .writer import SaveResult, save
from ._progress import Progress, ProgressCallback
from .distributed.leaves import PerRank, Shard
# The function shadows its package's name as an attribute of fastckpt
# (``fastckpt.convert(...)``); ``import fastckpt.convert`` still gives the package.
from .convert import ConvertReport, convert
from .diff import DiffResult, TensorChange, TensorDiff, diff

__version__: str = _native_version

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
    "FastCkptError",
    "CheckpointIOError",
    "CheckpointNotFoundError",
    "CheckpointPermissionError",
    "CheckpointExistsError",
    "CheckpointIsADirectoryError",
    "CheckpointNotADirectoryError",
    "TensorNotFoundError",
    "DataLossError",
    "InvalidArgumentError",
    "UnsupportedDtypeError",
    "ArgumentTypeError",
    "UnimplementedError",
    "FailedPreconditionError",
    "CancelledError",
    "DeadlineExceededError",
    "CudaError",
    "CudaUnavailableError",
    "MissingDependencyError",
    "DistributedError",
    "DistributedSaveError",
    "DistributedLoadError",
    "InternalError",
]


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
    policy = _config.device_policy()
    probe = policy != "off"
    info = dict(_native_build_info(probe))
    if not probe:
        info.update(cuda_driver_found=False, cuda_initialized=False, cuda_device_count=0,
                    cuda_driver_version=0, cuda_error="not probed: FASTCKPT_DEVICE=off", device_path="cpu")
    info["device_policy"] = policy
    info["io_threads"] = _config.default_threads()
    return info


def release_staging_memory() -> None:
    """Returns the idle host staging buffers (pinned memory kept for reuse by
    device and asynchronous saves) to the system."""
    from . import _native

    _native.trim_staging()


_config._apply_environment()
