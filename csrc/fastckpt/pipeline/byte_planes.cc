// Byte-plane split and merge (see byte_planes.h).
#include "fastckpt/pipeline/byte_planes.h"

#include <cstring>

namespace fastckpt {
namespace {

// Elements are processed in blocks that fit in L1 together with their
// planes' slices, so each plane's output stays in cache while it is filled.
constexpr size_t kBlock = 2048;

template <int K>
void SplitFixed(const uint8_t* __restrict src, size_t n, uint8_t* __restrict dst) {
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t e = b + kBlock < n ? b + kBlock : n;
    for (int j = 0; j < K; ++j) {
      uint8_t* __restrict out = dst + static_cast<size_t>(j) * n;
      for (size_t i = b; i < e; ++i) out[i] = src[i * K + j];
    }
  }
}

template <int K>
void MergeFixed(const uint8_t* const* plane, size_t n, uint8_t* __restrict dst) {
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t e = b + kBlock < n ? b + kBlock : n;
    for (int j = 0; j < K; ++j) {
      const uint8_t* __restrict in = plane[j];
      for (size_t i = b; i < e; ++i) dst[i * K + j] = in[i];
    }
  }
}

// Little-endian hosts: each element assembled as one word from its bytes
// (zero-extend, shift, or), which compilers vectorise; stores of single
// bytes at a stride of K do not. Word type W has K bytes.
template <typename W, int K>
void MergeWords(const uint8_t* const* plane, size_t n, uint8_t* dst) {
  const uint8_t* __restrict in[K];
  for (int j = 0; j < K; ++j) in[j] = plane[j];
  for (size_t i = 0; i < n; ++i) {
    W w = 0;
    for (int j = 0; j < K; ++j) w |= static_cast<W>(in[j][i]) << (8 * j);
    std::memcpy(dst + i * K, &w, K);
  }
}

constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;

}  // namespace

void SplitBytePlanes(const uint8_t* elements, size_t n, int k, uint8_t* planes) {
  switch (k) {
    case 1: std::memcpy(planes, elements, n); return;
    case 2: return SplitFixed<2>(elements, n, planes);
    case 4: return SplitFixed<4>(elements, n, planes);
    case 8: return SplitFixed<8>(elements, n, planes);
    default:
      for (int j = 0; j < k; ++j) {
        uint8_t* out = planes + static_cast<size_t>(j) * n;
        for (size_t i = 0; i < n; ++i) out[i] = elements[i * static_cast<size_t>(k) + static_cast<size_t>(j)];
      }
  }
}

void MergeBytePlanes(const uint8_t* const* plane, size_t n, int k, uint8_t* elements) {
  switch (k) {
    case 1: std::memcpy(elements, plane[0], n); return;
    case 2: return kLittleEndian ? MergeWords<uint16_t, 2>(plane, n, elements) : MergeFixed<2>(plane, n, elements);
    case 4: return kLittleEndian ? MergeWords<uint32_t, 4>(plane, n, elements) : MergeFixed<4>(plane, n, elements);
    case 8: return kLittleEndian ? MergeWords<uint64_t, 8>(plane, n, elements) : MergeFixed<8>(plane, n, elements);
    default:
      for (int j = 0; j < k; ++j) {
        const uint8_t* in = plane[j];
        for (size_t i = 0; i < n; ++i) elements[i * static_cast<size_t>(k) + static_cast<size_t>(j)] = in[i];
      }
  }
}

}  // namespace fastckpt
