// Builds a checkpoint's .index file: a LevelDB-format sorted string table.
//
// On-disk layout (tensorflow/core/lib/io/table_format.txt, without filters):
//   [data block][trailer] ... [metaindex block][trailer] [index block][trailer] [footer]
//   block   := entries, then uint32 restart offsets, then uint32 restart count
//   entry   := varint32 shared | varint32 non_shared | varint32 value_len |
//              key bytes [shared:] | value
//   trailer := uint8 compression type (always 0) | uint32 masked crc32c(block || type)
//   footer  := metaindex handle | index handle (varint64 offset, size each),
//              zero-padded to 40 bytes | magic 0xdb4775248b80fb57 (LE)
//
// Parameters match TensorFlow's BundleWriter so the output is byte-identical:
// 256 KiB blocks, a restart point every 16 entries in data blocks and every
// entry in the index block, no compression, an empty metaindex block, and
// LevelDB's shortest-separator index keys.
//
// Not thread-safe; one builder per file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastckpt/core/status.h"

namespace fastckpt {

class TableBuilder {
 public:
  static constexpr size_t kBlockSize = 256 * 1024;
  static constexpr int kRestartInterval = 16;

  // Appends into *out, which the caller owns and must keep alive.
  explicit TableBuilder(std::string* out) : out_(out) {}

  // REQUIRES: key > every previously added key (bytewise), and !finished.
  // Returns kInvalidArgument for out-of-order or duplicate keys.
  Status Add(const std::string& key, const std::string& value);

  // Writes the remaining blocks and the footer.
  void Finish();

 private:
  class Block {
   public:
    explicit Block(int restart_interval) : restart_interval_(restart_interval) { Reset(); }
    void Reset();
    void Add(const std::string& key, const std::string& value);
    // Appends restarts; returns the finished block contents.
    const std::string& Finish();
    size_t SizeEstimate() const { return buf_.size() + 4 * restarts_.size() + 4; }
    bool empty() const { return buf_.empty(); }

   private:
    int restart_interval_;
    std::string buf_;
    std::vector<uint32_t> restarts_;
    int counter_ = 0;
    std::string last_key_;
  };

  void FlushDataBlock();
  // Writes block + trailer; returns (offset, size) of the contents.
  void WriteBlock(const std::string& contents, uint64_t* offset, uint64_t* size);

  std::string* out_;
  Block data_{kRestartInterval};
  Block index_{1};
  std::string last_key_;
  bool has_last_key_ = false;
  bool pending_index_entry_ = false;
  uint64_t pending_offset_ = 0, pending_size_ = 0;
};

// LevelDB's key shortening for index entries (exposed for tests).
std::string ShortestSeparator(const std::string& start, const std::string& limit);
std::string ShortSuccessor(const std::string& key);

}  // namespace fastckpt
