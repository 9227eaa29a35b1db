// Private declarations shared by the CRC-32C implementation files
// (crc32c*.cc): GF(2) polynomial arithmetic modulo the Castagnoli polynomial,
// used to combine CRCs and to stitch parallel streams together, and the
// per-CPU kernels the dispatcher in crc32c.cc chooses from.
//
// Representation. Every 32-bit value here is a polynomial over GF(2) of degree
// < 32 in the *reflected* bit order that CRC-32C uses on the wire: bit 31 holds
// the coefficient of x^0 and bit 0 that of x^31. In that order the CRC register
// after processing a message M from the initial state S is
//     S * x^(8 |M|)  +  M(x) * x^32      (mod P),
// which is what makes Combine() and the multi-stream kernels possible: moving
// a register past n zero bytes is a multiplication by x^(8n) mod P.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastckpt {
namespace crc32c {
namespace internal {

// P = x^32 + 0x1EDC6F41 (Castagnoli), reflected, without the x^32 term.
constexpr uint32_t kPoly = 0x82F63B78u;
// The polynomial 1 (= x^0) in reflected order.
constexpr uint32_t kOne = 0x80000000u;

// a * b mod P. 32 shift-and-add steps: slow compared with the kernels, but it
// only runs a handful of times per Combine() and to build constant tables.
constexpr uint32_t MultiplyModP(uint32_t a, uint32_t b) {
  uint32_t product = 0;
  // Walk a's coefficients from x^0 upward while b runs through b * x^i.
  for (int i = 0; i < 32; ++i) {
    if (a & (kOne >> i)) product ^= b;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;
  }
  return product;
}

// x^(2^k) mod P for k in [0, kNumPow2). 67 entries cover every exponent of the
// form 8 * n for a 64-bit byte count n (8 * n < 2^67).
constexpr int kNumPow2 = 67;
struct Pow2Table {
  uint32_t v[kNumPow2];
};
constexpr Pow2Table MakePow2Table() {
  Pow2Table t{};
  t.v[0] = kOne >> 1;  // x^1
  for (int k = 1; k < kNumPow2; ++k) t.v[k] = MultiplyModP(t.v[k - 1], t.v[k - 1]);
  return t;
}
inline constexpr Pow2Table kPow2 = MakePow2Table();

// x^(n * 2^shift) mod P, by square-and-multiply over the bits of n using the
// precomputed squares: at most 64 multiplications, whatever n is.
constexpr uint32_t XPowModP(uint64_t n, int shift = 0) {
  uint32_t result = kOne;
  for (int k = shift; n != 0; ++k, n >>= 1) {
    if (n & 1) result = MultiplyModP(result, kPow2.v[k]);
  }
  return result;
}

// x^(8 n) mod P: the factor that moves a CRC register past n zero bytes.
// Exact for every 64-bit n (8 n is never formed, so it cannot overflow).
constexpr uint32_t XPow8NModP(uint64_t n) { return XPowModP(n, 3); }

// Multiplication by one fixed polynomial K, mod P, through four 256-entry
// tables (one per byte of the operand). Multiplication is GF(2)-linear in the
// operand, so the product is the XOR of the products of its four bytes. This
// is the "shift a CRC past a fixed block length" step of the multi-stream
// kernels on CPUs without a carry-less multiply instruction.
class MultiplyTable {
 public:
  explicit MultiplyTable(uint32_t k) {
    for (int byte = 0; byte < 4; ++byte) {
      for (uint32_t b = 0; b < 256; ++b) {
        table_[byte][b] = MultiplyModP(b << (8 * byte), k);
      }
    }
  }
  uint32_t operator()(uint32_t a) const {
    return table_[0][a & 0xff] ^ table_[1][(a >> 8) & 0xff] ^ table_[2][(a >> 16) & 0xff] ^ table_[3][a >> 24];
  }

 private:
  uint32_t table_[4][256];
};

// Per-stream block lengths of the three-stream kernels, largest first
// (crc32c_sse42.cc says why these).
constexpr size_t kThreeStreamLong = 8192;
constexpr size_t kThreeStreamShort = 256;

// The merge constants of the three-stream kernels on CPUs with a CRC
// instruction but no carry-less multiply (SSE4.2 without PCLMULQDQ, and
// AArch64): multiplication by x^(8jB), j = 1..3, for block lengths B of the
// long and short tiers, as tables (4 KiB each).
struct TableTier {
  explicit TableTier(size_t block) : by1(XPow8NModP(block)), by2(XPow8NModP(2 * block)), by3(XPow8NModP(3 * block)) {}
  MultiplyTable by1, by2, by3;
};
struct ShiftTables {
  TableTier long_tier{kThreeStreamLong};
  TableTier short_tier{kThreeStreamShort};
};
// Built on first use (24 KiB); immutable, shared by every thread.
const ShiftTables& GetShiftTables();

// The kernels. Each takes and returns the raw CRC register (the public CRC
// XOR 0xffffffff), so that Extend() inverts once, not once per kernel call.
uint32_t ExtendPortable(uint32_t state, const uint8_t* data, size_t n);
// REQUIRES: cpu::CanUseSse42(). Uses PCLMULQDQ too when cpu::CanUsePclmul().
// On non-x86-64 builds this falls back to ExtendPortable (and is never chosen).
uint32_t ExtendSse42(uint32_t state, const uint8_t* data, size_t n);
// The PCLMULQDQ-merged variant of ExtendSse42, without the run-time choice.
// REQUIRES: cpu::CanUsePclmul(). Portable fallback off x86-64, as above.
uint32_t ExtendSse42Clmul(uint32_t state, const uint8_t* data, size_t n);
// REQUIRES: cpu::CanUseVpclmul(). CRC32 instruction streams and 256-bit
// carry-less folding side by side (crc32c_avx2_vpclmul.cc). Portable
// fallback off x86-64, as above.
uint32_t ExtendAvx2Vpclmul(uint32_t state, const uint8_t* data, size_t n);
// REQUIRES: cpu::CanUseArm64Crc32(). On non-AArch64 builds this falls back to
// ExtendPortable (and is never chosen).
uint32_t ExtendArm64(uint32_t state, const uint8_t* data, size_t n);

}  // namespace internal
}  // namespace crc32c
}  // namespace fastckpt
