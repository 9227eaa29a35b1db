// Chunk CRCs of a data entry: the CRC32C of each consecutive fixed-size
// chunk of the entry's bytes as stored, so that a part of a tensor can be
// read and verified without reading the whole entry (box_read.cc).
//
// A table belongs to one data entry (a tensor, or one stored slice of a
// partitioned tensor). Chunk i covers the entry's bytes [i * chunk_bytes,
// min((i + 1) * chunk_bytes, size)); the last chunk may be shorter. CRCs
// are plain (unmasked) CRC32C values. A table is accepted only if its CRCs
// combine (crc32c::Combine) to the entry's own stored CRC, so a damaged
// table can never vouch for damaged data: to pass, a chunk's bytes must
// match both the table and, through the combination, the index.
//
// Thread-safety: ChunkCrcs is immutable once built; MakeChunkCrcs is a pure
// function.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/pipeline/chunk_crcs.h"

namespace fastckpt {

struct ChunkCrcs {
  uint64_t chunk_bytes = 0;
  std::vector<uint32_t> crcs;  // unmasked, one per chunk

  // The byte range [*begin, *end) of chunk `i` in an entry of `size` bytes.
  // REQUIRES: i < crcs.size().
  void Range(uint64_t i, uint64_t size, uint64_t* begin, uint64_t* end) const {
    *begin = i * chunk_bytes;
    *end = size - *begin < chunk_bytes ? size : *begin + chunk_bytes;
  }
};

// Builds the table of an entry of `size` bytes whose stored CRC is
// `masked_crc` (masked, as in the index) from `nbytes` bytes at `le_crcs`:
// one little-endian uint32 per chunk. `what` names the tensor and its file
// for messages ("tensor 'w' in 'PREFIX.data-00000-of-00001'").
// Errors (nothing is allocated before the length is checked):
// kInvalidArgument for a chunk size that is not a positive multiple of
// kChunkAlign; kDataLoss for a table that does not hold one CRC per chunk,
// or whose CRCs do not combine to the entry's CRC.
Status MakeChunkCrcs(int64_t chunk_bytes, const uint8_t* le_crcs, size_t nbytes, uint64_t size, uint32_t masked_crc,
                     const std::string& what, ChunkCrcs* out);

}  // namespace fastckpt
