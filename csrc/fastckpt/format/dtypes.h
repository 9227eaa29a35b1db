// TensorFlow DataType numbers (tensorflow/core/framework/types.proto) and
// the byte size of one element in a checkpoint's data file.
#pragma once

#include <cstdint>

namespace fastckpt {

constexpr int kDtString = 7;
constexpr int kDtResource = 20;
constexpr int kDtVariant = 21;

// Bytes per element for dtypes stored as a flat memcpy of the tensor buffer;
// 0 for DT_STRING / DT_VARIANT (variable-length) and -1 for unknown or
// unsavable types. Sub-byte types (int4, float4...) are stored one element
// per byte.
inline int DtypeElementSize(int dtype) {
  switch (dtype) {
    case 1: return 4;    // float
    case 2: return 8;    // double
    case 3: return 4;    // int32
    case 4: return 1;    // uint8
    case 5: return 2;    // int16
    case 6: return 1;    // int8
    case 7: return 0;    // string
    case 8: return 8;    // complex64
    case 9: return 8;    // int64
    case 10: return 1;   // bool
    case 11: return 1;   // qint8
    case 12: return 1;   // quint8
    case 13: return 4;   // qint32
    case 14: return 2;   // bfloat16
    case 15: return 2;   // qint16
    case 16: return 2;   // quint16
    case 17: return 2;   // uint16
    case 18: return 16;  // complex128
    case 19: return 2;   // half
    case 21: return 0;   // variant
    case 22: return 4;   // uint32
    case 23: return 8;   // uint64
    case 24: case 25: case 26: case 27: case 28:  // float8 variants
    case 29: case 30: case 31: case 32: case 33:  // int4, uint4, int2, uint2, float4_e2m1fn
      return 1;
    default: return -1;
  }
}

}  // namespace fastckpt
