#include "fastckpt/crc32c/crc32c_shift.h"

#include "fastckpt/crc32c/crc32c_internal.h"

namespace fastckpt {
namespace crc32c {

const internal::ShiftTables& internal::GetShiftTables() {
  // Trivially destructible, so a function-local static is safe at exit.
  static const ShiftTables tables;
  return tables;
}

}  // namespace crc32c
}  // namespace fastckpt
