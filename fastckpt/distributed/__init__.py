"""Multi-rank checkpoints: every rank of a job writes its part of one
checkpoint in TensorFlow's layout, and any number of ranks restores it.

* :func:`save`: a collective; sharded tensors (torch ``DTensor``,
  :class:`Shard`, sharded JAX arrays) become TensorFlow slices of the global
  tensor, replicated values are written once, :class:`PerRank` values once
  per rank; each rank writes its own data files, rank 0 commits the one
  index after every rank's files are complete.
* :func:`load`: each rank passes the structure and sharding it wants and
  reads only the bytes of its pieces, checksum-verified.

Coordination runs over torch.distributed (on a gloo group fastckpt derives
from the caller's), over MPI (mpi4py), or in a world of one; see
:mod:`fastckpt.distributed.comm`.
"""

from ..errors import DistributedError, DistributedLoadError, DistributedSaveError
from .comm import DEFAULT_TIMEOUT, CollectiveError
from .leaves import PerRank, Shard
from .load import PER_RANK_POLICIES, LoadReport, load
from .save import DistributedSaveResult, save

__all__ = [
    "save",
    "load",
    "Shard",
    "PerRank",
    "DistributedSaveResult",
    "LoadReport",
    "DistributedError",
    "DistributedSaveError",
    "DistributedLoadError",
    "CollectiveError",
    "DEFAULT_TIMEOUT",
    "PER_RANK_POLICIES",
]
