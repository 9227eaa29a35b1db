"""The contract between :class:`fastckpt.Saver` and its variables.

The Saver owns what every checkpoint shares: paths, the commit protocol
(bundle, ``.meta``, state file, rollback), retention and background saves. A
backend owns the variables: how their values are read for a save, how a
checkpoint's values are put back, and the graph the ``.meta`` describes.
Two implement it: :class:`fastckpt._tf_backend.TFBackend` (TensorFlow
variables, graph or eager mode) and :class:`fastckpt._array_backend.ArrayBackend`
(a dict of arrays, no TensorFlow). Methods are called on the saving thread.
"""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Dict, Iterator, List, Optional, Protocol, Tuple

from .reader import CheckpointReader

__all__ = ["SaverBackend", "Items"]

#: Native writer items and the objects that keep their memory alive.
Items = Tuple[List[Any], List[Any]]


class SaverBackend(Protocol):
    """What a Saver needs of its variables."""

    #: The variables as given (a list, a dict, or None for the graph's).
    var_list: Any
    #: No variables at all (an empty saver with ``allow_empty=True``).
    is_empty: bool
    #: Whether data files hold tensors sorted by name (else in save order).
    sort_data: bool

    @property
    def saver_def(self) -> Any:
        """The SaverDef of the built saver (None where there is none)."""

    def to_proto(self, export_scope: Optional[str]) -> Any:
        """The SaverDef, as ``Saver.to_proto``."""

    def native_io(self) -> bool:
        """Whether the native core writes and reads every tensor (false: the
        backend's :meth:`tf_saver` does, for variant tensors)."""

    def check_built(self) -> None:
        """Raises if a save cannot run now (a deferred build, a trace)."""

    def build(self) -> None:
        """Builds what a deferred Saver defers."""

    def retention(self) -> Optional[Tuple[int, float]]:
        """(max_to_keep, keep_checkpoint_every_n_hours) of the built SaverDef,
        or None where the constructor's arguments stand."""

    def check_session(self, sess: Any) -> None:
        """Raises for a `sess` the backend cannot use."""

    def global_step_value(self, sess: Any, global_step: Any) -> int:
        """The step number a ``global_step`` argument stands for."""

    def default_shards(self) -> Optional[int]:
        """Data files per checkpoint when the caller gives no ``num_shards``
        (None: the writer decides by size)."""

    def collect(self, sess: Any) -> Items:
        """The values as writer items, held by the returned owners."""

    def values(self, sess: Any) -> ContextManager[Items]:
        """The values as writer items, valid inside the block (a backend may
        lend memory it owns only for that long)."""

    def fetch_in_groups(self, sess: Any, group_bytes: int) -> Optional[Tuple[int, Iterator[Items]]]:
        """``(n, groups)`` where a save is better fetched and written in
        groups of about `group_bytes`, else None."""

    def capture_meta_graph(
        self, sess: Any, *, strip_default_attrs: bool, save_debug_info: bool
    ) -> Callable[[str, bool], None]:
        """The graph as it is now, as ``write(path, durable)``."""

    def export_meta_graph(self, filename: Any, *, durable: bool, **kwargs: Any) -> Any:
        """``Saver.export_meta_graph``."""

    def restore(self, sess: Any, reader: CheckpointReader) -> Optional[Dict[str, Any]]:
        """Puts the checkpoint's values back; returns replaced arrays, if any."""
