#include "fastckpt/pipeline/chunk_crcs.h"

#include <algorithm>

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/coding.h"

namespace fastckpt {

Status CheckChunkBytes(int64_t chunk_bytes) {
  if (chunk_bytes < 0 || chunk_bytes % static_cast<int64_t>(kChunkAlign) != 0 ||
      chunk_bytes > static_cast<int64_t>(kMaxChunkBytes)) {
    return InvalidArgument("chunk_bytes must be 0 or a multiple of 4096 of at most 1 GiB (1073741824), not " +
                           std::to_string(chunk_bytes));
  }
  return Status::Ok();
}

uint64_t SegmentCount(uint64_t chunk_bytes, uint64_t begin, uint64_t length) {
  if (length == 0) return 0;
  return (begin + length - 1) / chunk_bytes - begin / chunk_bytes + 1;
}

void PieceChecksum::Update(const void* data, uint64_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  if (shift_ == nullptr) {
    crc_ = crc32c::Extend(crc_, p, n);
    done_ += n;
    return;
  }
  const uint64_t chunk = shift_->length();
  while (n > 0) {
    // Up to the next chunk boundary of the entry, or the end of the data.
    const uint64_t at = begin_ + done_;
    const uint64_t boundary = (at / chunk + 1) * chunk;
    const uint64_t m = std::min(n, boundary - at);
    crc_ = crc32c::Extend(crc_, p, m);
    done_ += m;
    p += m;
    n -= m;
    if (begin_ + done_ == boundary || done_ == length_) CloseSegment();
  }
}

void PieceChecksum::CloseSegment() {
  const uint64_t len = done_ - segment_start_;
  // crc(segment) = crc(before || segment) ^ crc(before) * x^(8 len).
  const uint32_t shifted =
      len == shift_->length() ? (*shift_)(segment_start_crc_) : crc32c::Combine(segment_start_crc_, 0, len);
  segments_[next_segment_++] = crc_ ^ shifted;
  segment_start_ = done_;
  segment_start_crc_ = crc_;
}

ChunkAssembler::ChunkAssembler(const crc32c::FixedShift* shift, uint64_t entry_bytes, std::string* out)
    : chunk_(shift->length()), entry_bytes_(entry_bytes), out_(out) {
  out_->reserve(out_->size() + 4 * ((entry_bytes + chunk_ - 1) / chunk_));
}

void ChunkAssembler::Add(uint64_t begin, uint64_t length, const uint32_t* segments) {
  const uint64_t end = begin + length;
  for (uint64_t at = begin; at < end; ++segments) {
    const uint64_t boundary = (at / chunk_ + 1) * chunk_;
    const uint64_t upto = std::min(boundary, end);
    // A segment that starts a chunk is its CRC so far; a later one (the
    // chunk spans pieces) is appended to it.
    current_ = at % chunk_ == 0 ? *segments : crc32c::Combine(current_, *segments, upto - at);
    if (upto == boundary || upto == entry_bytes_) PutFixed32(out_, current_);
    at = upto;
  }
}

}  // namespace fastckpt
