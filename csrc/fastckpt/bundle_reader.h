// Reads a checkpoint bundle written by TensorFlow or fastckpt.
//
// Open() reads the whole .index (its size comes from fstat, never from file
// contents), verifies every block CRC, decodes and validates every entry,
// and opens the data shards the entries refer to. Read() then fills caller
// buffers in parallel, checksumming each chunk right after it is read (no
// second pass) and joining chunk CRCs with crc32c::Combine. Memory use is
// the caller's buffers plus nothing proportional to the data.
//
// Thread-safety: after Open(), Read()/ReadRaw()/Verify() may be called
// concurrently. The GIL must not be held by their callers (no Python here).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastckpt/bundle_proto.h"
#include "fastckpt/copy_engine.h"
#include "fastckpt/file_io.h"
#include "fastckpt/status.h"

namespace fastckpt {

// One tensor that failed BundleReader::Verify().
struct VerifyProblem {
  // The tensor's name as stored; for a slice of a partitioned tensor, the
  // partitioned tensor's name (the raw slice key is unreadable), with the
  // slice named in `reason`.
  std::string key;
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

  // "'name' in 'PREFIX.data-00000-of-00001'", for messages.
  std::string Describe(size_t entry) const;

  // kDataLoss unless the entry's bytes lie inside its data file. Callers
  // check this before allocating a destination sized by the (untrusted)
  // index, so a lying index cannot cause a huge allocation.
  Status CheckBounds(size_t entry) const;

 private:
  BundleReader() = default;

  std::string prefix_;
  BundleHeader header_;
  std::vector<std::string> keys_;
  std::vector<BundleEntry> entries_;
  std::vector<File> shards_;             // opened only if referenced
  std::vector<uint64_t> shard_sizes_;
};

}  // namespace fastckpt
