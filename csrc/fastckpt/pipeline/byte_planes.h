// Byte planes: the transposition compression applies to tensors before
// entropy coding (fastckpt/compression.py). Plane j of n elements of k bytes
// each holds byte j of every element, in element order:
//
//   planes[j * n + i] = elements[i * k + j]      0 <= i < n, 0 <= j < k
//
// Split and merge are exact inverses. They run at memory speed (the plain
// strided loops below are what numpy does per plane, one pass each; here
// one pass reads every byte once and writes it once, with the inner loops
// specialised for k = 2, 4 and 8 so the compiler keeps them in registers).
//
// Thread-safety: pure functions of their arguments; the caller owns the
// buffers, which must not overlap.
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastckpt {

// REQUIRES: elements holds n * k bytes, planes n * k; k >= 1.
void SplitBytePlanes(const uint8_t* elements, size_t n, int k, uint8_t* planes);

// REQUIRES: plane[j] holds n bytes for 0 <= j < k; elements n * k bytes.
void MergeBytePlanes(const uint8_t* const* plane, size_t n, int k, uint8_t* elements);

}  // namespace fastckpt
