// CRC-32C (Castagnoli), as TensorFlow checkpoints use it.
//
// Extend() dispatches once to the fastest implementation the CPU supports
// (x86 AVX2 + VPCLMULQDQ, x86 SSE4.2, ARMv8 CRC, or a portable table
// fallback); tests and the FASTCKPT_CRC32C setting can force one. All functions are thread-safe; the
// active implementation is chosen before any worker thread starts and only
// changed by SetImpl(), which callers must not race with checksumming.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fastckpt {
namespace crc32c {

enum class Impl { kPortable = 0, kSse42 = 1, kArm64 = 2, kAvx2Vpclmul = 3 };

// Returns the CRC-32C of (previous data || data[0..n)), where `crc` is the
// CRC of the previous data (0 for none). Plain, unmasked values.
uint32_t Extend(uint32_t crc, const void* data, size_t n);
inline uint32_t Value(const void* data, size_t n) { return Extend(0, data, n); }

// Same, with an explicit implementation. REQUIRES: IsAvailable(impl).
uint32_t ExtendWith(Impl impl, uint32_t crc, const void* data, size_t n);

// crc(A || B) from crc(A), crc(B) and len(B), in O(log len_b). Lets one large
// tensor be checksummed in parallel pieces.
uint32_t Combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

// TensorFlow stores every CRC masked, so that a CRC of data that itself holds
// CRCs does not degenerate.
constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline uint32_t Mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline uint32_t Unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

const char* ImplName(Impl impl);
bool ImplFromName(const std::string& name, Impl* out);
bool IsAvailable(Impl impl);
std::vector<Impl> AvailableImpls();   // portable first, fastest last
Impl BestImpl();
Impl ActiveImpl();
// Returns false (and changes nothing) when the CPU lacks `impl`.
bool SetImpl(Impl impl);

}  // namespace crc32c
}  // namespace fastckpt
