// Moving a CRC-32C past a fixed number of bytes with four table lookups.
//
// crc(A || B) = crc(A) * x^(8 |B|) + crc(B) (mod P) (crc32c_internal.h), so
// for every B of one fixed length n the first term is a fixed linear map of
// crc(A). crc32c::Combine computes x^(8 n) and multiplies bit by bit on every
// call (tens of nanoseconds); where many chunks of one length are combined or
// split apart (the chunk CRCs of a save, chunk_crcs.h), this map is built
// once and then costs four table lookups per use.
//
// Thread-safety: immutable after construction; operator() may be called from
// any number of threads.
#pragma once

#include <cstdint>

#include "fastckpt/crc32c/crc32c_internal.h"

namespace fastckpt {
namespace crc32c {

class FixedShift {
 public:
  // Builds the tables for moving past `n` bytes (about a thousand
  // multiplications: build one per save, not per chunk).
  explicit FixedShift(uint64_t n) : n_(n), table_(internal::XPow8NModP(n)) {}

  uint64_t length() const { return n_; }
  // crc * x^(8 n) mod P: for any B of length n, crc(A || B) = (*this)(crc(A)) ^ crc(B).
  uint32_t operator()(uint32_t crc) const { return table_(crc); }

 private:
  uint64_t n_;
  internal::MultiplyTable table_;
};

}  // namespace crc32c
}  // namespace fastckpt
