"""Run-time settings, read from ``FASTCKPT_*`` environment variables once, here.

=====================  =============================================================
variable               meaning
=====================  =============================================================
FASTCKPT_THREADS       default number of I/O threads (default: number of CPU cores)
FASTCKPT_CRC32C        CRC32C implementation: auto (default), portable, sse42, avx2_vpclmul, arm64
FASTCKPT_DISABLE_CPU_FEATURES
                       comma list of sse42, pclmul, avx2, vpclmul, arm64_crc32 or
                       all: CPU features hidden from the CRC32C dispatcher
                       (testing); read at import
FASTCKPT_TASK_BYTES    bytes per unit of parallel work (default 16 MiB)
FASTCKPT_STAGING_MB    size of one host staging buffer, MiB (default 64)
FASTCKPT_HOST_BUDGET_MB
                       host memory all staging may use together, MiB: the bound
                       on an asynchronous save's snapshot (default: a quarter of
                       physical memory)
FASTCKPT_MAX_THREADS   the most threads the process-wide I/O pool runs (default:
                       64, or the number of cores if more); read at import
FASTCKPT_SAVE_GROUP_MB where the drop-in Saver (graph mode) fetches the values
                       (a remote session, a finalized graph), it fetches and
                       writes a large save in groups of this many MiB, each its
                       own data file (default 128; 0: one fetch, one data file)
FASTCKPT_DEVICE        how device (GPU) arrays are copied: auto (default: the
                       native staging path when a CUDA driver works, else the
                       array's framework copies it to the host), on (the native
                       path or CudaUnavailableError), off (never load the CUDA
                       driver; frameworks copy)
=====================  =============================================================

The CUDA driver is loaded (and ``cuInit`` run) only when a device array or a
``device=`` argument reaches fastckpt, or ``build_info()`` is called: a
numpy-only process never initialises CUDA (no start-up cost, and no "CUDA
initialised before fork" hazard for data-loader workers).

The native core reads no environment variables itself; settings reach it as
arguments, so they can also be changed from Python at run time.
"""

from __future__ import annotations

import os
from typing import Optional

from . import _native
from .errors import InvalidArgumentError

__all__ = [
    "default_threads",
    "task_bytes",
    "set_crc32c_impl",
    "crc32c_impl",
    "staging_buffer_bytes",
    "host_memory_budget",
    "save_group_bytes",
    "apply_staging_settings",
    "device_policy",
    "DEVICE_POLICIES",
    "check_positive",
]

_DEFAULT_TASK_BYTES: int = _native.DEFAULT_TASK_BYTES  # defined once, in the native core


def _int_env(name: str, default: int, minimum: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise InvalidArgumentError(f"{name}={raw!r} must be at least {minimum}")
    return value


def check_positive(**options: Optional[int]) -> None:
    """Raises InvalidArgumentError unless every given option (``threads=``,
    ``num_shards=``...) is None or a positive integer (bools are not)."""
    for option, value in options.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise InvalidArgumentError(f"{option} must be a positive integer, not {value!r}")


def default_threads() -> int:
    """Number of I/O threads used when a call does not say."""
    return _int_env("FASTCKPT_THREADS", _native.default_io_threads(), 1)


DEVICE_POLICIES = ("auto", "on", "off")


def device_policy() -> str:
    """``FASTCKPT_DEVICE``: ``"auto"`` (default), ``"on"`` or ``"off"`` (see the module docstring).

    Raises:
        InvalidArgumentError: any other value.
    """
    raw = os.environ.get("FASTCKPT_DEVICE", "").strip().lower() or "auto"
    if raw not in DEVICE_POLICIES:
        raise InvalidArgumentError(
            f"FASTCKPT_DEVICE={os.environ['FASTCKPT_DEVICE']!r} must be one of {', '.join(DEVICE_POLICIES)}"
        )
    return raw


def task_bytes() -> int:
    """Size of one unit of parallel work (a chunk of a large tensor)."""
    return _int_env("FASTCKPT_TASK_BYTES", _DEFAULT_TASK_BYTES, 4096)


def save_group_bytes() -> int:
    """Bytes per fetch-and-write group of a large fetched graph-mode Saver save (0: no groups)."""
    return _int_env("FASTCKPT_SAVE_GROUP_MB", 128, 0) << 20


def staging_buffer_bytes() -> int:
    """Size of one host staging buffer (device copies and snapshots go through these)."""
    return _int_env("FASTCKPT_STAGING_MB", 64, 1) << 20


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def host_memory_budget() -> int:
    """Host memory that staging may use in all (bytes): the most an asynchronous
    save holds as its snapshot, and the pool pinned buffers are kept in."""
    default_mb = max(_physical_memory() // 4, 256 << 20) >> 20
    return _int_env("FASTCKPT_HOST_BUDGET_MB", default_mb, 1) << 20


def apply_staging_settings() -> None:
    """Hands the staging settings to the native buffer pool (buffer size, and
    the budget as both the pool's bound and what it keeps for reuse). Called
    before every staged save or restore, so environment changes take effect."""
    budget = host_memory_budget()
    _native.configure_staging(staging_buffer_bytes(), budget, budget)


def crc32c_impl() -> str:
    """Name of the CRC32C implementation in use ('avx2_vpclmul', 'sse42', 'arm64' or 'portable')."""
    return _native.crc32c_impl()


def set_crc32c_impl(name: str) -> None:
    """Force a CRC32C implementation ('auto' picks the fastest the CPU supports).

    Raises:
        ValueError: unknown name, or an implementation this CPU cannot run.
    """
    _native.crc32c_set_impl(name)


def _disabled_cpu_features() -> list[str]:
    """The names in ``FASTCKPT_DISABLE_CPU_FEATURES`` (comma-separated, spaces
    around names tolerated; unknown names are ignored by the core)."""
    raw = os.environ.get("FASTCKPT_DISABLE_CPU_FEATURES", "")
    return [name.strip(" \t") for name in raw.split(",") if name.strip(" \t")]


def _apply_environment() -> None:
    """Applies the settings that configure the native core itself (the
    package applies them at import when one is set: fastckpt._NATIVE_SETTINGS)."""
    disabled = _disabled_cpu_features()
    if disabled:
        # Before FASTCKPT_CRC32C, so that forcing a masked implementation fails.
        _native.crc32c_mask_cpu_features(disabled)
    max_threads = os.environ.get("FASTCKPT_MAX_THREADS", "").strip()
    if max_threads:
        try:
            _native.configure_threads(max_threads=_int_env("FASTCKPT_MAX_THREADS", 0, 1))
        except InvalidArgumentError as e:
            raise ImportError(f"FASTCKPT_MAX_THREADS={max_threads!r}: {e}") from None
    name = os.environ.get("FASTCKPT_CRC32C", "").strip()
    if name:
        try:
            set_crc32c_impl(name)
        except ValueError as e:
            raise ImportError(f"FASTCKPT_CRC32C={name!r}: {e}") from None
