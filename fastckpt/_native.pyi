"""Type stub of ``fastckpt._native``, the pybind11 extension module (the
native core: CRC32C, the bundle writer and save jobs, the verified reader,
device copies, DLPack export, and the ``testing`` hooks).

Not a public API: the package's Python modules are. Every call that can fail
raises a :class:`fastckpt.FastCkptError` subclass (``csrc/bindings/errors.cc``).
"""

from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, SupportsIndex, Tuple, Type, Union

import numpy as np

__version__: str
DEFAULT_TASK_BYTES: int

# A writer item: (key, DataType, shape, data, crc32c or None, stored slices
# or None). `data` is a buffer (host), a (device_ptr, nbytes, device, stream)
# tuple (device), encoded string bytes, or None (no data).
_Item = Tuple[Any, ...]
# (start, length) per dimension.
_Extents = List[Tuple[int, int]]

# -- build and machine -----------------------------------------------------------

def build_info(probe_cuda: bool = True) -> Dict[str, Any]: ...
def default_io_threads() -> int: ...
def device_path() -> str: ...
def require_device_path() -> str: ...

# -- files -------------------------------------------------------------------------

def write_file_atomically(path: Union[str, bytes], data: bytes, durable: bool, what: str) -> None: ...
def remove_stale_temp_files(directory: Union[str, bytes], min_age_seconds: float = 2.0) -> int: ...

# -- CRC32C ------------------------------------------------------------------------

def crc32c(data: Any, crc: SupportsIndex = 0, impl: Optional[str] = None) -> int: ...
def crc32c_combine(crc_a: SupportsIndex, crc_b: SupportsIndex, len_b: SupportsIndex) -> int: ...
def crc32c_mask(crc: SupportsIndex) -> int: ...
def crc32c_unmask(masked: SupportsIndex) -> int: ...
def crc32c_impls() -> List[str]: ...
def crc32c_impl() -> str: ...
def crc32c_set_impl(name: str) -> None: ...
def crc32c_mask_cpu_features(names: Sequence[str]) -> None: ...

# -- writing -------------------------------------------------------------------------

# An index entry, as Reader.entries() and an uncommitted SaveJob.finish() give it:
# (key, dtype, shape, shard, offset, size, masked crc32c, slices | None).
_Entry = Tuple[bytes, int, Tuple[int, ...], int, int, int, int, Optional[List[_Extents]]]

def write_bundle(
    prefix: str,
    items: List[_Item],
    num_shards: SupportsIndex = 0,
    threads: SupportsIndex = 0,
    durable: bool = True,
    task_bytes: SupportsIndex = 0,
    sort_data: bool = True,
    shard_base: SupportsIndex = 0,
    total_shards: SupportsIndex = 0,
    chunk_bytes: SupportsIndex = 0,
) -> Dict[str, Any]:
    """Writes and commits a bundle; returns {"num_shards", "data_bytes", "files"}, and
    "chunk_crcs" ({key: packed little-endian uint32 CRCs}) when chunk_bytes > 0."""

#: The header min_consumer of a checkpoint with compressed entries (TensorFlow refuses it).
COMPRESSED_MIN_CONSUMER: int

def commit_bundle(
    prefix: str,
    entries: List[_Entry],
    data_files: List[Tuple[str, str]],
    total_shards: SupportsIndex,
    durable: bool = True,
    min_consumer: SupportsIndex = 0,
) -> List[str]:
    """Writes PREFIX.index for every rank's entries and commits every rank's
    (temp_path, final_path) data files; returns the final data files, then the index.
    min_consumer: 0, or COMPRESSED_MIN_CONSUMER for an index with compressed entries."""

def split_byte_planes(elements: Any, k: SupportsIndex, planes: Any) -> None:
    """Writes the k byte planes of `elements` (n elements of k bytes) into `planes` (k * n bytes)."""

def merge_byte_planes(planes: Sequence[Any], elements: Any) -> None:
    """Inverse of split_byte_planes: k buffers of n bytes into `elements` (k * n bytes)."""

def encode_strings(elements: Sequence[bytes]) -> Tuple[bytes, int]:
    """Serializes a DT_STRING tensor; returns (bytes, crc)."""

class SaveJob:
    """A save in phases: snapshot() then finish()."""

    def __init__(
        self,
        prefix: str,
        items: List[_Item],
        num_shards: SupportsIndex = 0,
        threads: SupportsIndex = 0,
        durable: bool = True,
        task_bytes: SupportsIndex = 0,
        sort_data: bool = True,
        snapshot_host: bool = False,
        max_buffers: SupportsIndex = 0,
        trace: bool = False,
        fill_threads: SupportsIndex = 0,
        shard_base: SupportsIndex = 0,
        total_shards: SupportsIndex = 0,
        commit: bool = True,
        chunk_bytes: SupportsIndex = 0,
    ) -> None: ...
    def snapshot(self) -> None: ...
    def start_writing(self) -> None: ...
    def finish(self) -> Dict[str, Any]:
        """Writes and commits; returns {"num_shards", "data_bytes", "files"} (and "chunk_crcs"
        when chunk_bytes > 0). With commit=False: writes the data files only and returns
        {"num_shards", "data_bytes", "entries", "data_files", "chunk_crcs"}."""
    def release(self, committed: bool) -> None:
        """After an uncommitted finish(): True closes the data files, False removes them."""
    def abort(self, reason: str) -> None: ...
    def progress(self) -> Dict[str, int]: ...
    def trace(self) -> List[Tuple[str, int, int, int]]: ...
    def held_buffers(self) -> int:
        """Caller buffers (arrays) the job still references: 0 once finish() returned."""

def configure_staging(
    buffer_bytes: SupportsIndex, capacity_bytes: SupportsIndex, retain_bytes: SupportsIndex
) -> None: ...
def staging_stats() -> Dict[str, int]: ...
def trim_staging() -> None: ...

# -- threads -----------------------------------------------------------------------

def configure_threads(max_threads: Optional[int] = None, idle_seconds: Optional[float] = None) -> None: ...
def thread_stats() -> Dict[str, Any]: ...

# -- reading ---------------------------------------------------------------------------

class Reader:
    """An open checkpoint bundle (index parsed, data files open)."""

    def __init__(self, prefix: str) -> None: ...
    @property
    def num_shards(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def compressed(self) -> bool:
        """Whether the header marks the checkpoint as holding compressed entries."""
    def stored_as_is(self, entry: SupportsIndex) -> bool:
        """False for a compressed entry (its stored size differs from what its dtype and shape hold)."""
    def entries(self) -> List[Tuple[bytes, int, Tuple[int, ...], int, int, int, int, Optional[List[_Extents]]]]:
        """(key, dtype, shape, shard, offset, size, masked crc32c, slices | None) per entry."""
    def names(self) -> Dict[str, int]:
        """{name: entry index} of every listed tensor (slice entries excluded)."""
    def entry(self, index: SupportsIndex) -> Tuple[int, Tuple[int, ...], int, Optional[List[_Extents]]]:
        """(dtype, shape, size, slices | None) of one entry."""
    def find(self, key: bytes) -> int: ...
    def read_all(
        self,
        dtype_of: Callable[[int], np.dtype],
        threads: SupportsIndex = 0,
        task_bytes: SupportsIndex = 0,
        pack_below: SupportsIndex = 0,
        slab_bytes: SupportsIndex = 67108864,
    ) -> Tuple[Dict[str, np.ndarray], List[str]]: ...
    def read(
        self, requests: List[Tuple[int, Any]], threads: SupportsIndex = 0, task_bytes: SupportsIndex = 0
    ) -> None: ...
    def read_to_device(
        self, requests: List[Tuple[int, int, int]], threads: SupportsIndex = 0, max_buffers: SupportsIndex = 0
    ) -> None: ...
    def read_strings(self, entry: SupportsIndex, num_elements: SupportsIndex) -> List[bytes]: ...
    def verify(self, threads: SupportsIndex = 0, chunk_bytes: SupportsIndex = 0) -> Dict[str, Any]: ...
    def bytes_processed(self) -> int:
        """Bytes read and checked so far by every call on this reader (polled for progress)."""
    def describe(self, entry: SupportsIndex) -> str: ...
    def check_bounds(self, entries: List[int]) -> None: ...
    def plan_region(self, entry: SupportsIndex, region: _Extents) -> List[Any]: ...
    def set_chunk_crcs(self, entry: SupportsIndex, chunk_bytes: SupportsIndex, crcs: Any) -> None:
        """Registers the CRC32Cs of consecutive `chunk_bytes`-sized chunks of a data
        entry's bytes (little-endian uint32s); they must combine to its stored CRC."""
    def read_box(
        self,
        entry: SupportsIndex,
        box: Sequence[Tuple[int, int]],
        dest: Any,
        threads: SupportsIndex = 0,
        task_bytes: SupportsIndex = 0,
    ) -> int:
        """Reads box [(start, length)] of a fixed-size tensor into `dest` (a writable
        C-contiguous buffer of exactly its bytes, row-major), verified; returns the
        bytes read from the data files."""
    def close(self) -> None: ...

# -- devices and DLPack --------------------------------------------------------------------

def copy_to_device(buffer: Any, device_ptr: SupportsIndex, device: SupportsIndex) -> None: ...

# -- slices ------------------------------------------------------------------------

def check_slice_set(shape: Sequence[int], slices: Sequence[_Extents]) -> Tuple[Any, ...]: ...
def copy_box(
    src: Any,
    src_shape: Sequence[int],
    src_start: Sequence[int],
    dst: Any,
    dst_shape: Sequence[int],
    dst_start: Sequence[int],
    extent: Sequence[int],
    elem: SupportsIndex,
    begin: SupportsIndex,
    end: SupportsIndex,
) -> None:
    """The strided copy under read_box (tests): the box's elements whose source
    element index is in [begin, end), from `src` into `dst`."""

class DLPackTensor:
    """A tensor exported through DLPack, held until released."""

    @property
    def data(self) -> int: ...
    @property
    def device_type(self) -> int: ...
    @property
    def device_id(self) -> int: ...
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def strides(self) -> Optional[Tuple[int, ...]]: ...
    @property
    def dtype_code(self) -> int: ...
    @property
    def dtype_bits(self) -> int: ...
    @property
    def dtype_lanes(self) -> int: ...
    @property
    def readonly(self) -> bool: ...
    @property
    def flags(self) -> int: ...
    @property
    def versioned(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def c_contiguous(self) -> bool: ...
    @property
    def released(self) -> bool: ...
    def release(self) -> None: ...
    def __enter__(self) -> "DLPackTensor": ...
    def __exit__(self, *args: Any) -> bool: ...

def dlpack_export(obj: Any, stream: Any = None) -> DLPackTensor: ...
def dlpack_numpy_dtype(code: SupportsIndex, bits: SupportsIndex, lanes: SupportsIndex) -> str: ...
def is_c_contiguous(shape: Sequence[int], strides: Optional[Sequence[int]], unit: int) -> bool: ...

# -- fastckpt._native.testing: the test hooks, never used by the package -----------------
# A separate extension at run time (fastckpt._native_testing), which `_native.testing`
# imports on first use.

class _SimulatedDevice:
    """A CPU stand-in for the CUDA copy engine: device pointers are host addresses."""

    def stats(self) -> Dict[str, int]: ...
    def copies(self) -> List[Tuple[int, bool, int, int, int]]:
        """[(seq, to_host, bytes, begin_ns, end_ns)] in completion order."""
    def caller_work(
        self, stream: SupportsIndex, delay_us: float, dst: SupportsIndex, src: SupportsIndex, nbytes: SupportsIndex
    ) -> None: ...

class _Testing(Protocol):
    """The test module ``fastckpt._native_testing`` (a module at run time)."""

    SimulatedDevice: Type[_SimulatedDevice]

    def arm_fault(self, point: str, skip: SupportsIndex, errno: SupportsIndex, short_write: bool = False) -> None:
        """Fails call number skip+1 at `point` (create, write, sync, rename, close,
        sync_dir) with `errno` (0: only count calls). One-shot."""
    def disarm_faults(self) -> None: ...
    def arm_fill_delay(self, skip: SupportsIndex, wait_s: float, delay_s: float) -> None: ...
    def fill_delay_state(self) -> Dict[str, Any]: ...
    def arm_thread_failures(self, skip: SupportsIndex = 0, count: SupportsIndex = -1) -> None: ...
    def thread_failures(self) -> int: ...
    def fault_hits(self) -> int: ...
    def install_simulated_device(
        self,
        latency_us: float = 0.0,
        bandwidth_gbps: float = 0.0,
        fail_copy: SupportsIndex = -1,
        fail_at_enqueue: bool = False,
    ) -> _SimulatedDevice: ...
    def uninstall_device(self) -> None: ...
    def cuda_engine_roundtrip(
        self,
        device_ptr: SupportsIndex,
        nbytes: SupportsIndex,
        chunk: SupportsIndex,
        device: SupportsIndex = 0,
        stream: SupportsIndex = 0,
        in_flight: SupportsIndex = 4,
        abandon: bool = False,
    ) -> bytes: ...
    def cuda_engine_upload(
        self, device_ptr: SupportsIndex, data: bytes, device: SupportsIndex = 0, stream: SupportsIndex = 0
    ) -> None: ...
    def cuda_engine_marks(self, count: SupportsIndex, wait_every: SupportsIndex, device: SupportsIndex = 0) -> int: ...
    def dtype_table(self) -> List[Tuple[int, str, int, int, int]]:
        """The core's element types: [(DataType or -1, name, bytes per element,
        DLPack code or 255, DLPack bits)]."""
    def plan_tasks(
        self,
        extents: Sequence[Tuple[int, int, int, int]],
        num_items: SupportsIndex,
        task_bytes: SupportsIndex,
        piece_bytes: SupportsIndex = 0,
        max_pieces: Optional[SupportsIndex] = None,
        max_gap: Optional[SupportsIndex] = None,
    ) -> Tuple[List[Tuple[int, int, int, int]], List[Tuple[int, int, int, int, int, int]], List[int], List[int]]: ...
    def layout_slabs(
        self, sizes: Sequence[int], pack_below: SupportsIndex, slab_bytes: SupportsIndex, align: SupportsIndex
    ) -> Tuple[List[int], List[Tuple[int, int]]]: ...
    def staging_borrow(
        self,
        count: SupportsIndex,
        max_buffers: SupportsIndex,
    ) -> Tuple[List[int], Dict[str, int], Dict[str, int]]: ...
    def build_table(self, entries: Sequence[Tuple[bytes, bytes]]) -> bytes: ...
    def read_table(self, data: bytes, name: str = "table") -> List[Tuple[bytes, bytes]]: ...

testing: _Testing
