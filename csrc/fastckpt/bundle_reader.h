// Reads a checkpoint bundle written by TensorFlow or fastckpt.
//
// Open() reads the whole .index (its size comes from fstat, never from file
// contents), verifies every block CRC, decodes and validates every entry,
// and opens the data shards the entries refer to. Read() then fills caller
// buffers in parallel, checksumming each chunk right after it is read (no
// second pass) and joining chunk CRCs with crc32c::Combine. Memory use is
// the caller's buffers plus nothing proportional to the data.
//
// Thread-safety: after Open(), Read()/ReadRaw() may be called concurrently.
// The GIL must not be held by callers of Read()/ReadRaw() (no Python here).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fastckpt/bundle_proto.h"
#include "fastckpt/file_io.h"
#include "fastckpt/status.h"

namespace fastckpt {

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

  // Reads an entry's raw bytes (string tensors) without CRC verification;
  // the caller verifies them (the string CRC is not over the file bytes).
  Status ReadRaw(size_t entry, std::string* out) const;

  // "'name' in 'PREFIX.data-00000-of-00001'", for messages.
  std::string Describe(size_t entry) const;

 private:
  BundleReader() = default;
  Status CheckBounds(size_t entry) const;

  std::string prefix_;
  BundleHeader header_;
  std::vector<std::string> keys_;
  std::vector<BundleEntry> entries_;
  std::vector<File> shards_;             // opened only if referenced
  std::vector<uint64_t> shard_sizes_;
};

}  // namespace fastckpt
