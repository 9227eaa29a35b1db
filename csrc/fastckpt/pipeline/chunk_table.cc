#include "fastckpt/pipeline/chunk_table.h"

#include <cstdio>

#include "fastckpt/crc32c/crc32c.h"

namespace fastckpt {

Status MakeChunkCrcs(int64_t chunk_bytes, const uint8_t* le_crcs, size_t nbytes, uint64_t size, uint32_t masked_crc,
                     const std::string& what, ChunkCrcs* out) {
  if (chunk_bytes <= 0 || static_cast<uint64_t>(chunk_bytes) % kChunkAlign != 0) {
    return InvalidArgument(what + ": chunk size " + std::to_string(chunk_bytes) + " is not a positive multiple of " +
                           std::to_string(kChunkAlign) + " bytes");
  }
  const uint64_t cb = static_cast<uint64_t>(chunk_bytes);
  const uint64_t chunks = size / cb + (size % cb != 0 ? 1 : 0);
  if (nbytes % 4 != 0 || nbytes / 4 != chunks) {
    return DataLoss(what + ": its chunk CRC table has " + std::to_string(nbytes) + " bytes; " + std::to_string(size) +
                    " bytes in chunks of " + std::to_string(chunk_bytes) + " need " + std::to_string(chunks) +
                    " CRCs (" + std::to_string(4 * chunks) + " bytes)");
  }
  ChunkCrcs t;
  t.chunk_bytes = cb;
  t.crcs.resize(chunks);
  uint32_t combined = 0;
  for (uint64_t i = 0; i < chunks; ++i) {
    const uint8_t* p = le_crcs + 4 * i;
    t.crcs[i] = static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
                static_cast<uint32_t>(p[3]) << 24;
    uint64_t begin, end;
    t.Range(i, size, &begin, &end);
    combined = i == 0 ? t.crcs[i] : crc32c::Combine(combined, t.crcs[i], end - begin);
  }
  const uint32_t stored = crc32c::Unmask(masked_crc);
  if (combined != stored) {
    char buf[160];
    std::snprintf(buf, sizeof(buf),
                  ": its chunk CRC table (%llu chunks of %llu bytes) combines to CRC32C %08x, "
                  "the index stores %08x",
                  static_cast<unsigned long long>(chunks), static_cast<unsigned long long>(chunk_bytes), combined,
                  stored);
    return DataLoss(what + buf);
  }
  *out = std::move(t);
  return Status::Ok();
}

}  // namespace fastckpt
