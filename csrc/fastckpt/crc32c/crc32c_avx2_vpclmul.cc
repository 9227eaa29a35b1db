// x86-64 CRC-32C with CRC32 instruction streams and 256-bit carry-less
// folding (AVX2 + VPCLMULQDQ) running side by side.
//
// Why a hybrid. The CRC32 instruction digests 8 bytes per cycle at best (one
// per cycle, on an integer port), which is what the SSE4.2 kernel reaches. A
// VPCLMULQDQ on YMM registers does two 64 x 64-bit carry-less multiplies on a
// vector port; folding 32 bytes takes two of them, so carry-less folding alone
// also tops out around 8 bytes per cycle on CPUs that issue one VPCLMULQDQ
// every two cycles (AMD Zen 3). The two use different execution ports, so a
// loop that feeds both at once can approach the sum of the two rates. On a
// Zen 3 EPYC, a register-only mix of the two peaks near 13 bytes per cycle
// (they still share the front end and schedulers), and this kernel checksums
// ~40 GB/s from L1/L2 against ~25 GB/s for the SSE4.2 kernel.
//
// Layout. A block of N iterations is cut into contiguous regions
//
//     [ vector: 128 N bytes ][ stream 0 ][ stream 1 ] ... [ stream S-1 ]
//
// each stream being kStreamStep * N bytes. Every iteration folds the next 128
// bytes of the vector region into four YMM accumulators and feeds the next
// kStreamStep bytes of every stream through its own CRC32 chain. Every region
// starts from a zero register, so blocks do not depend on one another except
// through the merge (see below), which runs in the shadow of the next block.
//
// Representation (see crc32c_internal.h). Bytes are polynomials in reflected
// bit order: in a 16-byte lane loaded from memory, register bit i is the
// coefficient of x^(127 - i), so the lane's low quadword ("lead", the first 8
// bytes) holds the high-degree half. A lane A = lead * x^64 + trail is worth
// A * x^(8 d) once d more bytes have followed it, and only its value mod P
// matters for the final CRC.
//
// Folding. PCLMULQDQ of two reflected operands returns their product times x
// (the 127-bit product sits one bit higher in the 128-bit reflected result).
// With a 32-bit reflected constant k in the low half of a quadword (worth
// k * x^32 as a 64-bit operand), clmul(q, k) = q * k * x^33. Hence, to carry a
// lane d bytes forward,
//
//     lead  * x^(64 + 8 d)  =  clmul(lead,  x^(8 d + 31) mod P)   (mod P)
//     trail * x^(8 d)       =  clmul(trail, x^(8 d - 33) mod P)   (mod P)
//
// and their XOR (degree < 127, so it fits a lane) replaces A: it is congruent
// to A * x^(8 d) mod P. XORing the lane found d bytes later completes a fold.
//
// Finishing the vector region. The eight lanes are folded into the last one
// (distances 64, 32 and 16 bytes), leaving 16 bytes congruent, as message
// bytes, to the whole region. The CRC32 instruction run over those 16 bytes
// from a zero register gives the region's CRC (M * x^32 mod P).
//
// Merge. As in crc32c_sse42.cc, the register after a block of L bytes is
//
//     state * x^(8 L) + v * x^(8 S Ls) + s_0 * x^(8 (S-1) Ls) + ... + s_(S-1)
//
// (v the vector region's CRC, s_j the streams', Ls the stream length); each
// product is one PCLMULQDQ by x^(8 m - 33) mod P, the products are XORed and
// reduced by one CRC32 instruction. The constants depend on N, so they come
// from a table built at compile time (and one set for the longest blocks).
//
// Short inputs (below kMinBytes) and the tail after the last block go to the
// SSE4.2 + PCLMULQDQ kernel.
//
// setup.py compiles this file for baseline x86-64; the functions that use the
// newer instructions carry target attributes and are reached only through
// ExtendAvx2Vpclmul(), which the dispatcher calls only after
// cpu::CanUseVpclmul().
#include <cstring>

#include "fastckpt/crc32c/crc32c_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fastckpt {
namespace crc32c {
namespace internal {

#if defined(__x86_64__)

#define FASTCKPT_TARGET_VPCLMUL __attribute__((target("sse4.2,pclmul,avx2,vpclmulqdq")))
#define FASTCKPT_INLINE_VPCLMUL FASTCKPT_TARGET_VPCLMUL __attribute__((always_inline)) inline

namespace {

// Bytes of the vector region per iteration: four 32-byte accumulators. Two
// would already cover the VPCLMULQDQ latency (~4 cycles, plus the XORs);
// four keep the chains short enough never to be the bottleneck.
constexpr size_t kVecStep = 128;
// CRC32 streams and their bytes per iteration. Three chains cover the
// instruction's 3-cycle latency; the fourth gives the scheduler slack. With
// 4 x 32 bytes per 128 vector bytes, the vector side issues one VPCLMULQDQ
// per two CRC32s, matching their throughputs on Zen 3.
constexpr size_t kStreams = 4;
constexpr size_t kStreamStep = 32;
constexpr size_t kStep = kVecStep + kStreams * kStreamStep;  // bytes per iteration
// Block lengths, in iterations. Long inputs go in blocks of kBigIters
// (256 KiB): besides amortising the merge, long blocks keep the five regions
// far apart, so the hardware prefetchers see five long sequential streams;
// with 64 KiB blocks instead, 64 MiB buffers checksum ~20% slower. Shorter
// inputs and the rest use one block of any length up to kTableIters (32 KiB),
// whose merge constants come from a table.
constexpr size_t kBigIters = 1024;
constexpr size_t kTableIters = 128;
// In the long blocks, software prefetches run this many bytes ahead in each
// stream (and four times as far in the vector region, which advances four
// times as fast): about 32 iterations, a few hundred nanoseconds. Buffers
// that come from L3 or DRAM checksum 10-30% faster with them; in short blocks,
// whose data is usually in L1 or L2 already, they would only take load slots.
constexpr size_t kPrefetchAhead = 1024;
// Below this many bytes the SSE4.2 kernel is used: a block's fixed cost (the
// vector reduction and the merge) is then a large share of the work, and on
// Zen 3 the hybrid wins or loses by up to ~15% between 256 and 511 bytes,
// depending on length and alignment. From 512 bytes on it wins throughout.
constexpr size_t kMinBytes = 512;

// --- Fold constants ----------------------------------------------------------

// Both halves of a lane, for a fold over d bytes (d >= 5, so 8d - 33 > 0).
// _mm256_set_epi64x lists quadwords from the highest: each 128-bit lane gets
// the lead multiplier in its low quadword and the trail multiplier in its high
// one, so that imm8 0x00 pairs lead with lead and 0x11 trail with trail.
struct FoldPair {
  uint64_t lead;   // x^(8 d + 31) mod P
  uint64_t trail;  // x^(8 d - 33) mod P
};
constexpr FoldPair MakeFoldPair(size_t d) { return {XPowModP(8 * d + 31), XPowModP(8 * d - 33)}; }

constexpr FoldPair kFold128 = MakeFoldPair(128);  // the loop: one iteration ahead
constexpr FoldPair kFold64 = MakeFoldPair(64);    // reduction, step 1
constexpr FoldPair kFold32 = MakeFoldPair(32);    // reduction, step 2
constexpr FoldPair kFold16 = MakeFoldPair(16);    // reduction, step 3

// --- Merge constants -----------------------------------------------------------

// For a block of n iterations: x^(8 m - 33) mod P for m = the block length
// (to move the incoming state past it), and for the distances from the end of
// the vector region and of streams 0 .. S-2 to the end of the block. The last
// stream ends the block and needs no shift.
struct MergeConstants {
  uint32_t state;
  uint32_t vec;
  uint32_t stream[kStreams - 1];
};
constexpr MergeConstants MakeMergeConstants(size_t iters) {
  const uint64_t stream_len = kStreamStep * iters;
  MergeConstants c{};
  c.state = XPowModP(8 * kStep * iters - 33);
  c.vec = XPowModP(8 * kStreams * stream_len - 33);
  for (size_t j = 0; j + 1 < kStreams; ++j) {
    c.stream[j] = XPowModP(8 * (kStreams - 1 - j) * stream_len - 33);
  }
  return c;
}
struct MergeTable {
  MergeConstants by_iters[kTableIters + 1];  // index 0 unused
};
constexpr MergeTable MakeMergeTable() {
  MergeTable t{};
  for (size_t n = 1; n <= kTableIters; ++n) t.by_iters[n] = MakeMergeConstants(n);
  return t;
}
// Built by the compiler (128 entries of 20 bytes).
constexpr MergeTable kMergeTable = MakeMergeTable();
constexpr MergeConstants kMergeBig = MakeMergeConstants(kBigIters);

// --- Helpers --------------------------------------------------------------------

FASTCKPT_INLINE_VPCLMUL __m256i FoldConstant256(const FoldPair& k) {
  return _mm256_set_epi64x(static_cast<long long>(k.trail), static_cast<long long>(k.lead),
                           static_cast<long long>(k.trail), static_cast<long long>(k.lead));
}
FASTCKPT_INLINE_VPCLMUL __m128i FoldConstant128(const FoldPair& k) {
  return _mm_set_epi64x(static_cast<long long>(k.trail), static_cast<long long>(k.lead));
}

// Each lane of acc carried forward by the distance k was made for (mod P).
FASTCKPT_INLINE_VPCLMUL __m256i Fold256(__m256i acc, __m256i k) {
  return _mm256_xor_si256(_mm256_clmulepi64_epi128(acc, k, 0x00), _mm256_clmulepi64_epi128(acc, k, 0x11));
}
FASTCKPT_INLINE_VPCLMUL __m128i Fold128(__m128i acc, __m128i k) {
  return _mm_xor_si128(_mm_clmulepi64_si128(acc, k, 0x00), _mm_clmulepi64_si128(acc, k, 0x11));
}

FASTCKPT_INLINE_VPCLMUL __m256i Load256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// A prefetch `ahead` bytes past p. The address is formed as an integer: it
// may lie beyond the buffer (a prefetch never faults), where a pointer may not.
FASTCKPT_INLINE_VPCLMUL void PrefetchAhead(const uint8_t* p, size_t ahead) {
  _mm_prefetch(reinterpret_cast<const char*>(reinterpret_cast<uintptr_t>(p) + ahead), _MM_HINT_T0);
}

FASTCKPT_INLINE_VPCLMUL uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// a * x^(8 m) mod P as an unreduced 64-bit value, for k = x^(8 m - 33) mod P:
// CRC32 of it from a zero register is the reduced product (see the header).
FASTCKPT_INLINE_VPCLMUL __m128i ClmulBy(uint32_t a, uint32_t k) {
  return _mm_clmulepi64_si128(_mm_cvtsi32_si128(static_cast<int>(a)), _mm_cvtsi32_si128(static_cast<int>(k)), 0x00);
}

// --- The block kernel -------------------------------------------------------------

// Checksums one block of `iters` iterations (iters >= 1) at p and merges it
// into `state`; c = MakeMergeConstants(iters).
template <bool kPrefetch>
FASTCKPT_INLINE_VPCLMUL uint32_t Block(uint32_t state, const uint8_t* p, size_t iters, const MergeConstants& c) {
  const size_t stream_len = kStreamStep * iters;
  const uint8_t* v = p;
  // Stream j starts at base[j]; all advance together by `off`. One register
  // per base keeps every load a single base + index + displacement address.
  const uint8_t* base[kStreams];
  for (size_t j = 0; j < kStreams; ++j) base[j] = p + kVecStep * iters + j * stream_len;

  uint64_t crc[kStreams] = {};
  __m256i a0 = Load256(v);
  __m256i a1 = Load256(v + 32);
  __m256i a2 = Load256(v + 64);
  __m256i a3 = Load256(v + 96);
  const __m256i k128 = FoldConstant256(kFold128);

  for (size_t off = 0;;) {
#pragma GCC unroll 16
    for (size_t w = 0; w < kStreamStep; w += 8) {
#pragma GCC unroll 4
      for (size_t j = 0; j < kStreams; ++j) {
        crc[j] = _mm_crc32_u64(crc[j], Load64(base[j] + off + w));
      }
    }
    off += kStreamStep;
    if (kPrefetch) {
      for (size_t j = 0; j < kStreams; ++j) PrefetchAhead(base[j] + off, kPrefetchAhead);
      // The vector region moves 128 bytes, two cache lines, per iteration.
      PrefetchAhead(v, 4 * kPrefetchAhead);
      PrefetchAhead(v, 4 * kPrefetchAhead + 64);
    }
    if (off == stream_len) break;
    v += kVecStep;
    a0 = _mm256_xor_si256(Fold256(a0, k128), Load256(v));
    a1 = _mm256_xor_si256(Fold256(a1, k128), Load256(v + 32));
    a2 = _mm256_xor_si256(Fold256(a2, k128), Load256(v + 64));
    a3 = _mm256_xor_si256(Fold256(a3, k128), Load256(v + 96));
  }

  // Eight lanes, in memory order a0.lo, a0.hi, a1.lo, ..., a3.hi, into one.
  const __m256i k64 = FoldConstant256(kFold64);
  a2 = _mm256_xor_si256(a2, Fold256(a0, k64));
  a3 = _mm256_xor_si256(a3, Fold256(a1, k64));
  a3 = _mm256_xor_si256(a3, Fold256(a2, FoldConstant256(kFold32)));
  const __m128i last =
      _mm_xor_si128(_mm256_extracti128_si256(a3, 1), Fold128(_mm256_castsi256_si128(a3), FoldConstant128(kFold16)));
  const uint32_t vec_crc =
      static_cast<uint32_t>(_mm_crc32_u64(_mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(last))),
                                          static_cast<uint64_t>(_mm_extract_epi64(last, 1))));

  __m128i sum = _mm_xor_si128(ClmulBy(state, c.state), ClmulBy(vec_crc, c.vec));
#pragma GCC unroll 4
  for (size_t j = 0; j + 1 < kStreams; ++j) {
    sum = _mm_xor_si128(sum, ClmulBy(static_cast<uint32_t>(crc[j]), c.stream[j]));
  }
  return static_cast<uint32_t>(_mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(sum)))) ^
         static_cast<uint32_t>(crc[kStreams - 1]);
}

FASTCKPT_TARGET_VPCLMUL uint32_t ExtendBlocks(uint32_t state, const uint8_t* p, size_t n) {
  // 8-byte alignment for the CRC32 loads (the streams start at multiples of
  // 32 bytes from here, so all their loads are aligned).
  while ((reinterpret_cast<uintptr_t>(p) & 7) != 0) {
    state = _mm_crc32_u8(state, *p);
    ++p;
    --n;
  }
  while (n >= kBigIters * kStep) {
    state = Block<true>(state, p, kBigIters, kMergeBig);
    p += kBigIters * kStep;
    n -= kBigIters * kStep;
  }
  while (n >= kStep) {
    const size_t iters = n / kStep < kTableIters ? n / kStep : kTableIters;
    state = Block<false>(state, p, iters, kMergeTable.by_iters[iters]);
    p += iters * kStep;
    n -= iters * kStep;
  }
  return ExtendSse42Clmul(state, p, n);
}

}  // namespace

uint32_t ExtendAvx2Vpclmul(uint32_t state, const uint8_t* data, size_t n) {
  if (n < kMinBytes) return ExtendSse42Clmul(state, data, n);
  return ExtendBlocks(state, data, n);
}

#undef FASTCKPT_TARGET_VPCLMUL
#undef FASTCKPT_INLINE_VPCLMUL

#else  // !defined(__x86_64__)

// Never selected off x86-64 (cpu::CanUseVpclmul() is false there).
uint32_t ExtendAvx2Vpclmul(uint32_t state, const uint8_t* data, size_t n) { return ExtendPortable(state, data, n); }

#endif  // defined(__x86_64__)

}  // namespace internal
}  // namespace crc32c
}  // namespace fastckpt
