#include "fastckpt/crc32c/crc32c_shift.h"

#include "fastckpt/crc32c/crc32c_internal.h"

namespace fastckpt {
namespace crc32c {

FixedShift::FixedShift(uint64_t n) : n_(n) {
  // Multiplication by K is GF(2)-linear in the operand: the product is the
  // XOR of the products of its four bytes, each looked up in its own table.
  const uint32_t k = internal::XPow8NModP(n);
  for (int byte = 0; byte < 4; ++byte) {
    for (uint32_t b = 0; b < 256; ++b) table_[byte][b] = internal::MultiplyModP(b << (8 * byte), k);
  }
}

}  // namespace crc32c
}  // namespace fastckpt
