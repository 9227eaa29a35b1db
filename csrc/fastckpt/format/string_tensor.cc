#include "fastckpt/format/string_tensor.h"

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/coding.h"

namespace fastckpt {

namespace {

// Extends `crc` with a length as TensorFlow hashes it.
uint32_t ExtendLength(uint32_t crc, uint64_t len) {
  std::string buf;
  if (len <= 0xffffffffull) {
    PutFixed32(&buf, static_cast<uint32_t>(len));
  } else {
    PutFixed64(&buf, len);
  }
  return crc32c::Extend(crc, buf.data(), buf.size());
}

}  // namespace

uint32_t EncodeStringTensor(const std::vector<StringPiece>& elems, std::string* out) {
  size_t total = 0;
  for (const auto& e : elems) total += e.size;
  out->clear();
  out->reserve(elems.size() * 2 + 4 + total);
  uint32_t length_crc = 0;
  for (const auto& e : elems) {
    PutVarint64(out, e.size);
    length_crc = ExtendLength(length_crc, e.size);
  }
  std::string checksum;
  PutFixed32(&checksum, crc32c::Mask(length_crc));
  out->append(checksum);
  uint32_t crc = crc32c::Extend(length_crc, checksum.data(), 4);
  for (const auto& e : elems) {
    out->append(e.data, e.size);
    crc = crc32c::Extend(crc, e.data, e.size);
  }
  return crc;
}

Status DecodeStringTensor(const char* buf, size_t size, uint64_t num_elements, uint32_t masked_crc,
                          const std::string& what, std::vector<std::pair<size_t, size_t>>* spans) {
  // Each element needs at least one varint byte, plus the 4-byte checksum:
  // this bounds the allocation below by the bytes actually read.
  if (num_elements > size || size - num_elements < 4) {
    return DataLoss(what + ": string tensor of " + std::to_string(num_elements) + " elements cannot fit in " +
                    std::to_string(size) + " bytes");
  }
  spans->clear();
  spans->reserve(num_elements);
  const char* p = buf;
  const char* limit = buf + size;
  uint32_t length_crc = 0;
  uint64_t total = 0;
  std::vector<uint64_t> lens;
  lens.reserve(num_elements);
  for (uint64_t i = 0; i < num_elements; ++i) {
    uint64_t len;
    p = GetVarint64(p, limit, &len);
    if (p == nullptr) return DataLoss(what + ": malformed string lengths");
    if (len > size) return DataLoss(what + ": string length exceeds the tensor's size");
    length_crc = ExtendLength(length_crc, len);
    total += len;
    lens.push_back(len);
  }
  if (limit - p < 4) return DataLoss(what + ": string tensor truncated");
  uint32_t stored_length_crc = DecodeFixed32(p);
  if (crc32c::Unmask(stored_length_crc) != length_crc) {
    return DataLoss(what + ": checksum mismatch in string lengths");
  }
  uint32_t crc = crc32c::Extend(length_crc, p, 4);
  p += 4;
  if (total != static_cast<uint64_t>(limit - p)) {
    return DataLoss(what + ": string bytes (" + std::to_string(total) + ") do not match the entry size");
  }
  crc = crc32c::Extend(crc, p, total);
  if (crc != crc32c::Unmask(masked_crc)) {
    return DataLoss(what + ": data checksum mismatch (the file is corrupt)");
  }
  size_t off = static_cast<size_t>(p - buf);
  for (uint64_t len : lens) {
    spans->emplace_back(off, static_cast<size_t>(len));
    off += len;
  }
  return Status::Ok();
}

}  // namespace fastckpt
