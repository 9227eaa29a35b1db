// Chunk CRCs of stored entries: the unmasked CRC-32C of every consecutive
// chunk_bytes-sized chunk of an entry's bytes as stored in its data file (the
// last chunk may be shorter; an empty entry has none), packed as
// little-endian uint32. A restore that reads part of a stored tensor (onto
// another number of ranks) verifies exactly the chunks it read; the entry's
// own CRC covers only the whole entry.
//
// The writer computes them in the pass that computes the entry's CRC: each
// piece of an entry (bundle_plan.h) is fed, in order, to a PieceChecksum,
// which extends the piece's running CRC exactly as before (so the entry's
// CRC, TensorFlow's, does not change) and, at every chunk boundary of the
// entry, derives the CRC of the bytes since the previous boundary (a
// "segment") from the running value:
//     crc(B) = crc(A || B) ^ crc(A) * x^(8 |B|).
// For a whole chunk that is one FixedShift lookup (crc32c_shift.h). The plan
// cuts large entries at chunk boundaries, so a segment is usually a whole
// chunk; when a chunk spans pieces (a chunk larger than a staging buffer),
// ChunkAssembler combines its segments.
//
// Thread-safety: a PieceChecksum or ChunkAssembler is used by one thread;
// different pieces may be checksummed concurrently (their segments are
// disjoint).
#pragma once

#include <cstdint>
#include <string>

#include "fastckpt/core/status.h"
#include "fastckpt/crc32c/crc32c_shift.h"

namespace fastckpt {

constexpr uint64_t kChunkAlign = 4096;
constexpr uint64_t kMaxChunkBytes = 1ull << 30;

// chunk_bytes must be 0 (no chunk CRCs) or a multiple of 4096 of at most
// 1 GiB: kInvalidArgument otherwise.
Status CheckChunkBytes(int64_t chunk_bytes);

// The segments of the piece [begin, begin + length) of an entry: the chunks
// it touches. REQUIRES: chunk_bytes > 0.
uint64_t SegmentCount(uint64_t chunk_bytes, uint64_t begin, uint64_t length);

// Checksums one piece of an entry, its bytes fed in order by Update().
class PieceChecksum {
 public:
  // Without chunk CRCs: pass shift == nullptr and segments == nullptr. With
  // them: `shift` moves past exactly one chunk (shift->length() is the chunk
  // size), `begin` is the piece's offset in its entry, and `segments` has
  // room for SegmentCount(chunk, begin, length) CRCs, which are stored there
  // as each segment closes. The caller owns both and keeps them alive.
  PieceChecksum(const crc32c::FixedShift* shift, uint64_t begin, uint64_t length, uint32_t* segments)
      : shift_(shift), begin_(begin), length_(length), segments_(segments) {}

  // REQUIRES: the bytes fed so far plus n do not exceed the piece's length.
  void Update(const void* data, uint64_t n);
  // The CRC of the bytes fed so far (of the whole piece once all are fed).
  uint32_t crc() const { return crc_; }

 private:
  void CloseSegment();

  const crc32c::FixedShift* shift_;
  uint64_t begin_;
  uint64_t length_;
  uint32_t* segments_;
  uint32_t crc_ = 0;
  uint64_t done_ = 0;           // bytes fed
  uint64_t segment_start_ = 0;  // bytes fed when the open segment began
  uint32_t segment_start_crc_ = 0;
  uint64_t next_segment_ = 0;
};

// Turns an entry's segments into its chunk CRCs, appended to *out (which the
// caller owns) as little-endian uint32.
class ChunkAssembler {
 public:
  ChunkAssembler(const crc32c::FixedShift* shift, uint64_t entry_bytes, std::string* out);
  // The segments of the entry's next piece, [begin, begin + length).
  // REQUIRES: pieces are added in order and together cover the entry.
  void Add(uint64_t begin, uint64_t length, const uint32_t* segments);

 private:
  uint64_t chunk_;
  uint64_t entry_bytes_;
  std::string* out_;
  uint32_t current_ = 0;  // CRC of the open chunk's bytes so far
};

}  // namespace fastckpt
