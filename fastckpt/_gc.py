"""Pausing the cyclic garbage collector around loops that allocate one small
object per tensor (100,000 tensors trigger dozens of full collections that
find nothing: these objects hold no cycles)."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Disables the cyclic collector for the block; re-enables it only if it
    was enabled (the setting is process-wide: a concurrent block in another
    thread at worst re-enables it early, which is harmless)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
