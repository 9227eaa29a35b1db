// TEMPORARY portable-only CRC32C (to be replaced by the dispatched version).
#include "fastckpt/crc32c.h"

namespace fastckpt {
namespace crc32c {
namespace {
struct Table {
  uint32_t t[256];
  Table() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
  }
};
const Table& T() { static Table t; return t; }
uint32_t GfMul(uint32_t a, uint32_t b) {  // multiply mod P (reflected)
  uint32_t m = 1u << 31, p = 0;
  for (;;) {
    if (a & m) { p ^= b; if ((a & (m - 1)) == 0) break; }
    m >>= 1;
    b = (b & 1) ? (b >> 1) ^ 0x82F63B78u : b >> 1;
  }
  return p;
}
uint32_t XPow8n(uint64_t n) {  // x^(8n) mod P
  uint32_t p = 1u << 31;  // x^0
  uint32_t sq = 1u << 23;  // x^8
  while (n) { if (n & 1) p = GfMul(sq, p); sq = GfMul(sq, sq); n >>= 1; }
  return p;
}
}  // namespace
uint32_t Extend(uint32_t crc, const void* data, size_t n) { return ExtendWith(Impl::kPortable, crc, data, n); }
uint32_t ExtendWith(Impl, uint32_t crc, const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  const auto& t = T().t;
  for (size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return ~c;
}
uint32_t Combine(uint32_t a, uint32_t b, uint64_t len_b) { return GfMul(XPow8n(len_b), a) ^ b; }
const char* ImplName(Impl) { return "portable"; }
bool ImplFromName(const std::string& name, Impl* out) { if (name == "portable") { *out = Impl::kPortable; return true; } return false; }
bool IsAvailable(Impl impl) { return impl == Impl::kPortable; }
std::vector<Impl> AvailableImpls() { return {Impl::kPortable}; }
Impl BestImpl() { return Impl::kPortable; }
Impl ActiveImpl() { return Impl::kPortable; }
bool SetImpl(Impl impl) { return impl == Impl::kPortable; }
}  // namespace crc32c
}  // namespace fastckpt
