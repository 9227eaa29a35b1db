// AArch64 CRC-32C with the ARMv8 CRC32 extension (CRC32CB / CRC32CX).
//
// Same structure as the x86 kernel (crc32c_sse42.cc): blocks of 3 * B bytes
// are split into three streams checksummed from a zero register, so that the
// CRC32CX latency (2-3 cycles on current cores) is hidden, and merged as
//
//     state' = state * x^(8*3B) + s0 * x^(8*2B) + s1 * x^(8*B) + s2   (mod P)
//
// with table-driven multiplications (MultiplyTable), which need no crypto
// extension. Baseline ARMv8.0 does not guarantee the CRC instructions, so the
// kernel carries a target attribute and the dispatcher calls it only after
// cpu::CanUseArm64Crc32() (getauxval(AT_HWCAP) & HWCAP_CRC32). On every other
// architecture this file compiles to a stub.
#include <cstring>

#include "fastckpt/crc32c/crc32c_internal.h"

#if defined(__aarch64__)
#include <arm_acle.h>
#endif

namespace fastckpt {
namespace crc32c {
namespace internal {

#if defined(__aarch64__)

// GCC spells the extension "+crc", Clang "crc".
#if defined(__clang__)
#define FASTCKPT_TARGET_CRC __attribute__((target("crc")))
#else
#define FASTCKPT_TARGET_CRC __attribute__((target("+crc")))
#endif
#define FASTCKPT_INLINE_CRC FASTCKPT_TARGET_CRC __attribute__((always_inline)) inline

namespace {

constexpr size_t kLong = kThreeStreamLong;
constexpr size_t kShort = kThreeStreamShort;

FASTCKPT_INLINE_CRC uint32_t Crc8Bytes(uint32_t state, const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
#if defined(__AARCH64EB__)
  v = __builtin_bswap64(v);  // CRC32CX takes the first message byte in bits 0..7
#endif
  return __crc32cd(state, v);
}

template <size_t B>
FASTCKPT_INLINE_CRC void ThreeStreams(const uint8_t* p, uint32_t* s0, uint32_t* s1, uint32_t* s2) {
  uint32_t a = 0, b = 0, c = 0;
  for (size_t i = 0; i < B; i += 8) {
    a = Crc8Bytes(a, p + i);
    b = Crc8Bytes(b, p + B + i);
    c = Crc8Bytes(c, p + 2 * B + i);
  }
  *s0 = a;
  *s1 = b;
  *s2 = c;
}

template <size_t B>
FASTCKPT_INLINE_CRC uint32_t Blocks(const TableTier& t, uint32_t state, const uint8_t** p, size_t* n) {
  while (*n >= 3 * B) {
    uint32_t s0, s1, s2;
    ThreeStreams<B>(*p, &s0, &s1, &s2);
    state = t.by3(state) ^ t.by2(s0) ^ t.by1(s1) ^ s2;
    *p += 3 * B;
    *n -= 3 * B;
  }
  return state;
}

FASTCKPT_TARGET_CRC uint32_t ExtendCrc(uint32_t state, const uint8_t* p, size_t n) {
  // Byte steps to 8-byte alignment, so word loads never straddle a line.
  while (n > 0 && (reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    state = __crc32cb(state, *p++);
    --n;
  }
  if (n >= 3 * kShort) {
    const ShiftTables& tables = GetShiftTables();
    state = Blocks<kLong>(tables.long_tier, state, &p, &n);
    state = Blocks<kShort>(tables.short_tier, state, &p, &n);
  }
  for (; n >= 8; p += 8, n -= 8) state = Crc8Bytes(state, p);
  for (; n > 0; ++p, --n) state = __crc32cb(state, *p);
  return state;
}

}  // namespace

uint32_t ExtendArm64(uint32_t state, const uint8_t* data, size_t n) { return ExtendCrc(state, data, n); }

#undef FASTCKPT_INLINE_CRC
#undef FASTCKPT_TARGET_CRC

#else  // !defined(__aarch64__)

// Never selected off AArch64 (cpu::CanUseArm64Crc32() is false there); defined
// so the dispatcher needs no per-architecture conditionals.
uint32_t ExtendArm64(uint32_t state, const uint8_t* data, size_t n) { return ExtendPortable(state, data, n); }

#endif  // defined(__aarch64__)

}  // namespace internal
}  // namespace crc32c
}  // namespace fastckpt
