// DT_STRING tensors in a data file (TensorFlow's WriteStringTensor):
//
//   varint64 len[0] ... len[N-1] | uint32 LE masked crc32c(L) | bytes[0] ... bytes[N-1]
//
// where L is every length as a 4-byte little-endian uint32 (8-byte uint64 for
// lengths >= 2^32). The entry's CRC is not the CRC of the file bytes: it is
// crc32c(L || the 4 checksum bytes || all string bytes).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fastckpt/core/status.h"

namespace fastckpt {

struct StringPiece {
  const char* data;
  size_t size;
};

// Serializes `elems` into *out and returns the entry's (unmasked) CRC.
uint32_t EncodeStringTensor(const std::vector<StringPiece>& elems, std::string* out);

// Parses `num_elements` strings from buf[0..size) and verifies both CRCs.
// On success, spans[i] = (offset, length) of element i inside buf.
// `what` names the tensor and file for error messages.
Status DecodeStringTensor(const char* buf, size_t size, uint64_t num_elements, uint32_t masked_crc,
                          const std::string& what, std::vector<std::pair<size_t, size_t>>* spans);

}  // namespace fastckpt
