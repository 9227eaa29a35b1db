// Reads a checkpoint bundle written by TensorFlow or fastckpt.
//
// Open() reads the whole .index (its size comes from fstat, never from file
// contents), verifies every block CRC, decodes and validates every entry,
// and opens the data shards the entries refer to. A data shard that cannot
// be opened (missing, a directory, not a regular file) does not fail Open():
// the checkpoint can still be listed and the tensors of the other shards
// read; reading a tensor of that shard returns the error, and Verify()
// returns it for every such shard. Read() fills caller buffers in parallel,
// checksumming each chunk right after it is read (no second pass) and
// joining chunk CRCs with crc32c::Combine. Memory use is the caller's
// buffers plus nothing proportional to the data.
//
// Partitioned tensors: Partition() validates a tensor's stored slices once
// (slice_set.h: in bounds, pairwise disjoint, whether they cover it) and
// caches the result; PlanSliceRead() and Verify() build on it, so every
// reader agrees on what is readable.
//
// Partial reads (box_read.cc): ReadBox() reads any box of a tensor, only
// the stored bytes overlapping it, verified; SetChunkCrcs() registers the
// per-chunk CRCs that let it verify part of an entry (chunk_table.h).
//
// Thread-safety: after Open(), every const method may be called
// concurrently (the partition cache is guarded by a mutex), and so may
// SetChunkCrcs (the chunk tables are guarded by their own mutex; a read
// uses the tables registered when it starts). The GIL must not be held by
// their callers (no Python here).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/device/copy_engine.h"
#include "fastckpt/format/bundle_proto.h"
#include "fastckpt/io/file_io.h"
#include "fastckpt/pipeline/chunk_table.h"

namespace fastckpt {

// One tensor that failed BundleReader::Verify().
struct VerifyProblem {
  // The tensor's name as stored; for a slice of a partitioned tensor, the
  // partitioned tensor's name (never the raw slice key), with the slice
  // named in `reason` ("slice '0,4:-': ..."). A slice entry that no tensor
  // lists is reported under the name its key encodes, or its escaped key
  // when the key is malformed, with `listed` false: its bytes belong to no
  // tensor a reader returns.
  std::string key;
  bool listed = true;
  // The data file holding the bad bytes, or the .index file when the defect
  // is in the index's description of a partitioned tensor.
  std::string file;
  std::string reason;
};

// What BundleReader::Verify() checked and what it found.
struct VerifyReport {
  uint64_t tensors = 0;   // tensors as list_variables shows them (a partitioned one counts once)
  uint64_t entries = 0;   // data entries checked (each stored slice counts)
  uint64_t bytes = 0;     // data bytes read and checksummed
  uint64_t files = 0;     // data files the entries refer to
  // The largest string/variant tensor, which must be held in memory whole
  // to be decoded; every other tensor streams through bounded buffers.
  uint64_t largest_whole_read = 0;
  double seconds = 0;
  std::vector<VerifyProblem> bad;  // sorted by key; empty when all is well
};

// What Partition() found about a partitioned tensor's stored slices.
struct PartitionInfo {
  // OK, or why the slices are unusable (CheckSliceSet's error: kDataLoss
  // for slices out of bounds or overlapping, kUnimplemented for a layout too
  // irregular to check). The message does not name the tensor or the index
  // file; callers add them.
  Status status;
  uint64_t held = 0;                  // elements the slices hold together
  bool covers = false;                // that is every element of the tensor
  std::vector<int64_t> slice_entry;   // per stored slice: its entry, or -1 if missing
};

// One stored slice a region read needs (PlanSliceRead).
struct SlicePart {
  size_t slice;           // index into the partitioned entry's slices
  size_t entry;           // the slice's data entry
  TensorSlice overlap;    // the part of the region it holds: explicit (start, length) per dimension
};

class BundleReader {
 public:
  static Status Open(const std::string& prefix, std::unique_ptr<BundleReader>* out);

  const std::string& prefix() const { return prefix_; }
  const BundleHeader& header() const { return header_; }
  // Entries sorted by key; the header entry is not included.
  const std::vector<std::string>& keys() const { return keys_; }
  const std::vector<BundleEntry>& entries() const { return entries_; }
  // Index of `key` in keys(), or -1.
  int64_t Find(const std::string& key) const;

  struct ReadRequest {
    size_t entry;      // index into entries()
    uint8_t* dest;     // caller-owned, entries()[entry].size bytes, writable
    uint64_t dest_size;
  };
  // Reads fixed-size (non-string, non-partitioned) entries and verifies
  // their CRCs. REQUIRES: dest_size == entry size.
  Status Read(const std::vector<ReadRequest>& requests, int threads, uint64_t task_bytes) const;

  struct DeviceReadRequest {
    size_t entry;       // index into entries()
    DevicePtr dest;     // device memory of entries()[entry].size bytes
    int device;         // its device ordinal
  };
  // Reads fixed-size entries into device memory (bundle_reader_device.cc):
  // file -> staging buffer (pread, CRC32C) -> asynchronous host-to-device
  // copy, with the copy of one buffer overlapping the read of the next.
  // Returns once every copy has completed and every CRC is verified (on a
  // mismatch the device memory holds the bad bytes and kDataLoss names the
  // tensor). Staging buffers come from the StagingPool, at most
  // `max_buffers` at once.
  Status ReadToDevice(const std::vector<DeviceReadRequest>& requests, CopyEngine* engine,
                      const std::shared_ptr<CopyEngine>& engine_ref, int threads, int max_buffers) const;

  // Reads an entry's raw bytes (string tensors) without CRC verification;
  // the caller verifies them (the string CRC is not over the file bytes).
  Status ReadRaw(size_t entry, std::string* out) const;

  // Checks every tensor without keeping its data (implemented in
  // bundle_verify.cc): each data entry's bounds and CRC32C (string and
  // variant tensors decoded and both of their CRCs checked), and that every
  // partitioned tensor's slices exist, match their shapes and dtype and
  // cover it. Every bad tensor is recorded in *report; a bad tensor is not
  // an error. Returns non-OK only when checking itself fails (an OS read
  // error such as EIO), in which case *report is incomplete.
  //
  // Work runs on `threads` threads (< 1: DefaultThreads()) in units of
  // `chunk_bytes` (0: 8 MiB): a large tensor is split into chunks whose
  // CRCs are joined with crc32c::Combine; runs of small adjacent tensors
  // share a chunk. Each thread reads through one scratch buffer of at most
  // min(chunk_bytes, 1 MiB), so memory does not grow with tensor size;
  // only string and variant tensors are read whole (see
  // VerifyReport::largest_whole_read), at most ~1 GiB of them at a time
  // unless a single one is larger.
  Status Verify(int threads, uint64_t chunk_bytes, VerifyReport* report) const;

  // Bytes of data this reader has read and checked so far, over all calls:
  // Read, ReadBox and Verify add each step's bytes as it completes (a
  // failed call's bytes included). A caller polls it from another thread to
  // show progress; the count orders nothing (relaxed atomics).
  uint64_t bytes_processed() const { return bytes_processed_.load(std::memory_order_relaxed); }

  // "tensor 'name' in 'PREFIX.data-00000-of-00001'" (for a slice entry,
  // "slice '0,4:-' of tensor 'name' in ..."), for messages.
  std::string Describe(size_t entry) const;

  // OK when the entry's bytes can be read: its data file is open (else the
  // error opening it, e.g. kNotFound naming the missing file), its bytes lie
  // inside that file, and for a zero-byte tensor, whose checksum needs no
  // read, the stored CRC is that of no bytes (kDataLoss otherwise). Callers
  // check this before allocating a destination sized by the (untrusted)
  // index, so a lying index cannot cause a huge allocation.
  Status CheckBounds(size_t entry) const;

  // The validated slice layout of partitioned entry `entry` (one with
  // slices), computed on first use and cached for the reader's lifetime.
  // REQUIRES: entry < entries().size() and entries()[entry].slices non-empty.
  const PartitionInfo& Partition(size_t entry) const;

  // What reading `region` (explicit or whole extents, one per dimension) of
  // partitioned entry `entry` takes: the stored slices it intersects and
  // their overlaps, in stored order. Checks, in order: the region lies in
  // the tensor (kInvalidArgument); the slices are valid (Partition); they
  // cover the region ("does not have sufficient slices", kDataLoss); every
  // needed slice has an entry of the slice's shape and the tensor's dtype,
  // that is not itself partitioned, whose bytes CheckBounds() accepts, and
  // for strings that is large enough for its element count (kDataLoss).
  // Given success, the overlaps are disjoint and tile the region, so a
  // caller may fill an output of the region's shape from them in parallel.
  Status PlanSliceRead(size_t entry, const TensorSlice& region, std::vector<SlicePart>* parts) const;

  // Registers the chunk CRCs of data entry `entry` (box_read.cc): `nbytes`
  // bytes at `le_crcs`, one little-endian uint32 per `chunk_bytes`-sized
  // chunk of its bytes (MakeChunkCrcs checks them, including that they
  // combine to the entry's stored CRC). Replaces an earlier table of the
  // entry. Errors name the tensor: kInvalidArgument for an entry that does
  // not exist, is partitioned (holds no bytes) or is not of a fixed-size
  // dtype (string tensors are read whole; their stored CRC is not over the
  // file's bytes), or a bad chunk size; kDataLoss for a table that does not
  // fit the entry. Nothing is registered on error.
  Status SetChunkCrcs(size_t entry, int64_t chunk_bytes, const uint8_t* le_crcs, size_t nbytes);
  // The table registered for `entry`, or null.
  std::shared_ptr<const ChunkCrcs> GetChunkCrcs(size_t entry) const;

  // Reads box `box` ((start, length) per dimension, explicit: length >= 0)
  // of fixed-size tensor `entry` into `dest` (`dest_size` bytes: exactly
  // the box's elements, row-major). For a partitioned tensor the box is
  // assembled from the stored slices overlapping it (PlanSliceRead). Per
  // stored piece, the bytes from the first to the last element the box
  // needs are read; with chunk CRCs registered for the piece's entry,
  // widened to whole chunks and every chunk read is verified; without, the
  // whole piece is read and its entry CRC verified. Work runs on `threads`
  // threads (< 1: DefaultThreads()) in tasks of about `task_bytes` (0: 16
  // MiB) of the file, each streaming through a scratch buffer of at most
  // 256 KiB; bytes that land contiguously in `dest` are read straight into
  // it. *bytes_read: the bytes read from the data files (0 for an empty
  // box, which reads nothing). On error, `dest` holds unspecified bytes.
  // Errors name the tensor and its file: kInvalidArgument for a bad box,
  // dtype or destination size; kDataLoss for a checksum mismatch (a chunk's
  // names its byte range in the file), stored slices that do not cover the
  // box, or bytes past the end of a file; OS errors as kIOError/kNotFound.
  Status ReadBox(size_t entry, const TensorSlice& box, uint8_t* dest, uint64_t dest_size, int threads,
                 uint64_t task_bytes, uint64_t* bytes_read) const;

  // Whether the header marks the checkpoint as holding compressed entries
  // (min_consumer == kCompressedMinConsumer).
  bool compressed() const { return compressed_; }
  // False for an entry of a compressed checkpoint whose stored size differs
  // from what its fixed-size dtype and shape hold (a compressed entry); true
  // otherwise. CheckStoredAsIs: kInvalidArgument naming the tensor when
  // false. Every native read of tensor values refuses compressed entries
  // (fastckpt's writer never stores a compressed entry in exactly its raw
  // size, and its reader refuses a frame table claiming one).
  bool StoredAsIs(size_t entry) const;
  Status CheckStoredAsIs(size_t entry) const;

  // "tensor 'name' in 'FILE'", FILE being the data file of an unpartitioned
  // tensor and the index of a partitioned one (whose bytes are in its
  // slices' files), for messages about the tensor as a whole.
  std::string DescribeTensor(size_t entry) const;

 private:
  BundleReader() = default;

  // kDataLoss unless stored slice `slice` of partitioned entry `entry`
  // has a usable data entry: present, not partitioned, of the slice's shape
  // and the tensor's dtype. Messages name the slice ("slice '0,4:-' has no
  // entry in the index"); callers add the tensor and the index file.
  Status CheckSliceEntry(size_t entry, size_t slice) const;
  // The data files a checkpoint's entries use that could not be opened, as
  // one error (kNotFound naming every missing one, else the first failure).
  Status ShardOpenErrors() const;

  void CountBytes(uint64_t n) const { bytes_processed_.fetch_add(n, std::memory_order_relaxed); }

  std::string prefix_;
  BundleHeader header_;
  bool compressed_ = false;
  std::vector<std::string> keys_;
  std::vector<BundleEntry> entries_;
  std::vector<File> shards_;             // opened only if referenced
  std::vector<uint64_t> shard_sizes_;
  std::vector<Status> shard_status_;     // per shard: why it could not be opened
  mutable std::mutex partitions_mu_;     // guards partitions_
  mutable std::unordered_map<size_t, std::unique_ptr<PartitionInfo>> partitions_;
  mutable std::mutex chunk_mu_;          // guards chunk_crcs_
  std::unordered_map<size_t, std::shared_ptr<const ChunkCrcs>> chunk_crcs_;
  mutable std::atomic<uint64_t> bytes_processed_{0};  // see bytes_processed()
};

}  // namespace fastckpt
