// Little-endian fixed-width integers and LEB128 varints, as used by the
// LevelDB table format and the protobuf wire format.
//
// Decoders take an explicit [p, limit) range and never read past `limit`;
// they return nullptr on truncated or overlong input, so that a garbled file
// can never cause an out-of-bounds read.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace fastckpt {

inline void PutFixed32(std::string* dst, uint32_t v) {
  char buf[4];
  for (int i = 0; i < 4; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  dst->append(buf, 4);
}

inline void PutFixed64(std::string* dst, uint64_t v) {
  char buf[8];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  dst->append(buf, 8);
}

inline uint32_t DecodeFixed32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint32_t>(u[0]) | (static_cast<uint32_t>(u[1]) << 8) | (static_cast<uint32_t>(u[2]) << 16) |
         (static_cast<uint32_t>(u[3]) << 24);
}

inline uint64_t DecodeFixed64(const char* p) {
  return static_cast<uint64_t>(DecodeFixed32(p)) | (static_cast<uint64_t>(DecodeFixed32(p + 4)) << 32);
}

inline void PutVarint64(std::string* dst, uint64_t v) {
  char buf[10];
  int n = 0;
  while (v >= 0x80) {
    buf[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  buf[n++] = static_cast<char>(v);
  dst->append(buf, n);
}

inline void PutVarint32(std::string* dst, uint32_t v) { PutVarint64(dst, v); }

inline const char* GetVarint64(const char* p, const char* limit, uint64_t* value) {
  uint64_t result = 0;
  for (uint32_t shift = 0; shift <= 63 && p < limit; shift += 7) {
    uint64_t byte = static_cast<unsigned char>(*p++);
    result |= (byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return p;
    }
  }
  return nullptr;
}

inline const char* GetVarint32(const char* p, const char* limit, uint32_t* value) {
  uint64_t v;
  p = GetVarint64(p, limit, &v);
  if (p == nullptr || v > 0xffffffffu) return nullptr;
  *value = static_cast<uint32_t>(v);
  return p;
}

}  // namespace fastckpt
