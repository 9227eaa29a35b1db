// Portable CRC-32C: slicing-by-8 table lookup, for CPUs without a CRC
// instruction (and as the reference the accelerated kernels are tested
// against). About 1-2 GB/s on a modern core.
#include <cstring>

#include "fastckpt/crc32c/crc32c_internal.h"

namespace fastckpt {
namespace crc32c {
namespace internal {
namespace {

// kTables.t[k][b] is the register contribution of byte b followed by k zero
// bytes, so eight bytes can be folded in with eight independent lookups
// instead of a dependent chain of eight.
struct SlicingTables {
  uint32_t t[8][256];
};

constexpr SlicingTables MakeSlicingTables() {
  SlicingTables s{};
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t c = b;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
    s.t[0][b] = c;
  }
  for (int k = 1; k < 8; ++k) {
    for (uint32_t b = 0; b < 256; ++b) {
      const uint32_t prev = s.t[k - 1][b];
      s.t[k][b] = (prev >> 8) ^ s.t[0][prev & 0xff];
    }
  }
  return s;
}

// Built by the compiler: no start-up cost and no initialisation race.
constexpr SlicingTables kTables = MakeSlicingTables();

// Loads 8 bytes as a little-endian integer (byte 0 lowest), whatever the host
// byte order, without alignment requirements.
inline uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

inline uint32_t ExtendByte(uint32_t state, uint8_t b) { return kTables.t[0][(state ^ b) & 0xff] ^ (state >> 8); }

}  // namespace

uint32_t ExtendPortable(uint32_t state, const uint8_t* p, size_t n) {
  const auto& t = kTables.t;
  // Byte steps until p is 8-aligned, so the word loads below never straddle
  // a cache line.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    state = ExtendByte(state, *p++);
    --n;
  }
  while (n >= 8) {
    // The register overlaps the first four message bytes; the first byte is
    // followed by seven more, hence table 7.
    const uint64_t w = LoadLe64(p) ^ state;
    state = t[7][w & 0xff] ^ t[6][(w >> 8) & 0xff] ^ t[5][(w >> 16) & 0xff] ^ t[4][(w >> 24) & 0xff] ^
            t[3][(w >> 32) & 0xff] ^ t[2][(w >> 40) & 0xff] ^ t[1][(w >> 48) & 0xff] ^ t[0][w >> 56];
    p += 8;
    n -= 8;
  }
  while (n > 0) {
    state = ExtendByte(state, *p++);
    --n;
  }
  return state;
}

}  // namespace internal
}  // namespace crc32c
}  // namespace fastckpt
