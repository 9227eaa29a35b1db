// x86-64 CRC-32C with the SSE4.2 CRC32 instruction.
//
// One CRC32 instruction folds 8 bytes into the register, but it has a latency
// of about 3 cycles and a throughput of 1 per cycle, so a single dependent
// chain runs at a third of the possible speed (~8 GB/s). The kernel therefore
// splits each block of 3 * B bytes into three streams that are checksummed
// independently from a zero register, and merges them afterwards:
//
//     state' = state * x^(8*3B) + s0 * x^(8*2B) + s1 * x^(8*B) + s2   (mod P)
//
// The multiplications by fixed powers of x use PCLMULQDQ when the CPU has it,
// or four table lookups (MultiplyTable) when it does not. Because every
// stream starts from zero, the merge of block i only feeds the merge of block
// i + 1, never the CRC32 chains, so it runs in the shadow of the next block.
//
// setup.py compiles this file for baseline x86-64, so every function that uses
// SSE4.2 or PCLMULQDQ carries a target attribute and is reached only through
// ExtendSse42(), which the dispatcher calls only after cpu::CanUseSse42().
#include <cstring>

#include "fastckpt/crc32c/cpu_features.h"
#include "fastckpt/crc32c/crc32c_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fastckpt {
namespace crc32c {
namespace internal {

#if defined(__x86_64__)

#define FASTCKPT_TARGET_SSE42 __attribute__((target("sse4.2")))
#define FASTCKPT_TARGET_CLMUL __attribute__((target("sse4.2,pclmul")))
// Helpers shared by both kernels. always_inline makes them part of the
// caller, so they inherit its (superset) target instead of forcing a call.
#define FASTCKPT_INLINE_SSE42 __attribute__((target("sse4.2"), always_inline)) inline

namespace {

// Per-stream block lengths, largest first. The long tier amortises the merge
// over 24 KiB while three streams still fit in L1; the short and tiny tiers
// keep buffers of a few hundred bytes to a few KiB on three streams as well.
constexpr size_t kLong = kThreeStreamLong;
constexpr size_t kShort = kThreeStreamShort;
constexpr size_t kTiny = 32;

FASTCKPT_INLINE_SSE42 uint32_t Crc8Bytes(uint32_t state, const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return static_cast<uint32_t>(_mm_crc32_u64(state, v));
}

// Byte steps until p is 8-aligned (or the data ends), so that the 8-byte loads
// of the streams never straddle a cache line.
FASTCKPT_INLINE_SSE42 uint32_t AlignHead(uint32_t state, const uint8_t** p, size_t* n) {
  while (*n > 0 && (reinterpret_cast<uintptr_t>(*p) & 7) != 0) {
    state = _mm_crc32_u8(state, **p);
    ++*p;
    --*n;
  }
  return state;
}

// Fewer bytes than the smallest tier: one chain, 8 bytes then 1 byte at a time.
FASTCKPT_INLINE_SSE42 uint32_t Tail(uint32_t state, const uint8_t* p, size_t n) {
  for (; n >= 8; p += 8, n -= 8) state = Crc8Bytes(state, p);
  for (; n > 0; ++p, --n) state = _mm_crc32_u8(state, *p);
  return state;
}

// CRCs (from a zero register) of p[0, B), p[B, 2B) and p[2B, 3B), interleaved
// so the three dependency chains overlap in the pipeline. The registers stay
// 64-bit (as _mm_crc32_u64 takes and returns them) to avoid a zero-extending
// move per step.
template <size_t B>
FASTCKPT_INLINE_SSE42 void ThreeStreams(const uint8_t* p, uint32_t* s0, uint32_t* s1, uint32_t* s2) {
  uint64_t a = 0, b = 0, c = 0;
#pragma GCC unroll 4
  for (size_t i = 0; i < B; i += 8) {
    uint64_t va, vb, vc;
    std::memcpy(&va, p + i, 8);
    std::memcpy(&vb, p + B + i, 8);
    std::memcpy(&vc, p + 2 * B + i, 8);
    a = _mm_crc32_u64(a, va);
    b = _mm_crc32_u64(b, vb);
    c = _mm_crc32_u64(c, vc);
  }
  *s0 = static_cast<uint32_t>(a);
  *s1 = static_cast<uint32_t>(b);
  *s2 = static_cast<uint32_t>(c);
}

// --- Merging with PCLMULQDQ ------------------------------------------------
//
// For reflected 32-bit a and k, the 64-bit carry-less product read as CRC32
// input data equals a * k * x^33 (one x from the product landing in bits
// 0..62 rather than 1..63, x^32 from how CRC32 treats its input), and
// CRC32(0, data) reduces it mod P. So with k = x^(8m - 33) mod P,
// CRC32(0, clmul(a, k)) = a * x^(8m) mod P, and the three products of a merge
// can be XORed before a single reduction because everything is linear.
struct ClmulConstants {
  uint32_t k1, k2, k3;  // x^(8 * j * B - 33) mod P for j = 1, 2, 3
};
constexpr ClmulConstants MakeClmulConstants(size_t block) {
  return {XPowModP(8 * block - 33), XPowModP(16 * block - 33), XPowModP(24 * block - 33)};
}
constexpr ClmulConstants kLongClmul = MakeClmulConstants(kLong);
constexpr ClmulConstants kShortClmul = MakeClmulConstants(kShort);
constexpr ClmulConstants kTinyClmul = MakeClmulConstants(kTiny);

FASTCKPT_TARGET_CLMUL __attribute__((always_inline)) inline __m128i ClmulBy(uint32_t a, uint32_t k) {
  return _mm_clmulepi64_si128(_mm_cvtsi32_si128(static_cast<int>(a)), _mm_cvtsi32_si128(static_cast<int>(k)), 0x00);
}

// Checksums whole 3*B blocks while n allows, merging each into `state`.
template <size_t B>
FASTCKPT_TARGET_CLMUL __attribute__((always_inline)) inline uint32_t BlocksClmul(const ClmulConstants& k,
                                                                                 uint32_t state, const uint8_t** p,
                                                                                 size_t* n) {
  while (*n >= 3 * B) {
    uint32_t s0, s1, s2;
    ThreeStreams<B>(*p, &s0, &s1, &s2);
    const __m128i sum = _mm_xor_si128(_mm_xor_si128(ClmulBy(state, k.k3), ClmulBy(s0, k.k2)), ClmulBy(s1, k.k1));
    state = static_cast<uint32_t>(_mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(sum)))) ^ s2;
    *p += 3 * B;
    *n -= 3 * B;
  }
  return state;
}

FASTCKPT_TARGET_CLMUL uint32_t ExtendClmul(uint32_t state, const uint8_t* p, size_t n) {
  state = AlignHead(state, &p, &n);
  state = BlocksClmul<kLong>(kLongClmul, state, &p, &n);
  state = BlocksClmul<kShort>(kShortClmul, state, &p, &n);
  state = BlocksClmul<kTiny>(kTinyClmul, state, &p, &n);
  return Tail(state, p, n);
}

// --- Merging with tables (CPUs with SSE4.2 but no PCLMULQDQ) ----------------
//
// Here the multiplications by x^(8jB) use MultiplyTable: 4 KiB per constant,
// so only two tiers (24 KiB of tables, built on first use).
template <size_t B>
FASTCKPT_INLINE_SSE42 uint32_t BlocksTable(const TableTier& t, uint32_t state, const uint8_t** p, size_t* n) {
  while (*n >= 3 * B) {
    uint32_t s0, s1, s2;
    ThreeStreams<B>(*p, &s0, &s1, &s2);
    state = t.by3(state) ^ t.by2(s0) ^ t.by1(s1) ^ s2;
    *p += 3 * B;
    *n -= 3 * B;
  }
  return state;
}

FASTCKPT_TARGET_SSE42 uint32_t ExtendTables(uint32_t state, const uint8_t* p, size_t n) {
  state = AlignHead(state, &p, &n);
  if (n >= 3 * kShort) {
    const ShiftTables& tables = GetShiftTables();
    state = BlocksTable<kLong>(tables.long_tier, state, &p, &n);
    state = BlocksTable<kShort>(tables.short_tier, state, &p, &n);
  }
  return Tail(state, p, n);
}

}  // namespace

uint32_t ExtendSse42(uint32_t state, const uint8_t* data, size_t n) {
  // Decided once; CanUsePclmul() itself is cached, this saves the call.
  static const bool use_clmul = cpu::CanUsePclmul();
  return use_clmul ? ExtendClmul(state, data, n) : ExtendTables(state, data, n);
}

uint32_t ExtendSse42Clmul(uint32_t state, const uint8_t* data, size_t n) { return ExtendClmul(state, data, n); }

#undef FASTCKPT_TARGET_SSE42
#undef FASTCKPT_TARGET_CLMUL
#undef FASTCKPT_INLINE_SSE42

#else  // !defined(__x86_64__)

// Never selected off x86-64 (cpu::CanUseSse42() is false there); defined so
// the dispatcher needs no per-architecture conditionals.
uint32_t ExtendSse42(uint32_t state, const uint8_t* data, size_t n) { return ExtendPortable(state, data, n); }
uint32_t ExtendSse42Clmul(uint32_t state, const uint8_t* data, size_t n) { return ExtendPortable(state, data, n); }

#endif  // defined(__x86_64__)

}  // namespace internal
}  // namespace crc32c
}  // namespace fastckpt
