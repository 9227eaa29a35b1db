// TensorFlow DataType numbers (tensorflow/core/framework/types.proto) and
// the byte size of one element in a checkpoint's data file.
//
// Also the DLPack type of each, so that a device array received through
// DLPack (device/dlpack.h) is named from this same table.
#pragma once

#include <cstdint>

namespace fastckpt {

constexpr int kDtString = 7;
constexpr int kDtResource = 20;
constexpr int kDtVariant = 21;

// The `dtype` of an element type no DataType names (DLPack-only rows).
constexpr int kNoDtype = -1;
// The `dlpack_code` of a DataType DLPack has no scalar whole-byte type for
// (strings, quantized types; the sub-byte types, which DLPack packs while a
// checkpoint stores one element per byte).
constexpr uint8_t kNoDlpack = 0xff;

// One element type. `name` is its name in fastckpt/format/dtypes.py
// ("float16" for DT_HALF), which for every type with a DLPack code is also
// its numpy (or ml_dtypes) name; `element_size` is the bytes per element in a data file: 0 for
// DT_STRING / DT_VARIANT (variable-length). Sub-byte types (int4, float4...)
// are stored one element per byte.
struct DtypeInfo {
  int dtype;            // TensorFlow DataType number, or kNoDtype
  const char* name;
  int element_size;
  uint8_t dlpack_code;  // DLPack DataTypeCode of the same type, or kNoDlpack
  uint8_t dlpack_bits;  // its bits per element (lanes == 1)
};

// The one C++ table of element types: every DataType a checkpoint can record
// (tests/test_native_dtypes.py checks it against fastckpt/format/dtypes.py),
// then the DLPack types a device array may have but no DataType names (they
// get a numpy dtype, and a checkpoint refuses them).
inline constexpr DtypeInfo kDtypes[] = {
    {1, "float32", 4, 2, 32},
    {2, "float64", 8, 2, 64},
    {3, "int32", 4, 0, 32},
    {4, "uint8", 1, 1, 8},
    {5, "int16", 2, 0, 16},
    {6, "int8", 1, 0, 8},
    {7, "string", 0, kNoDlpack, 0},
    {8, "complex64", 8, 5, 64},
    {9, "int64", 8, 0, 64},
    {10, "bool", 1, 6, 8},
    {11, "qint8", 1, kNoDlpack, 0},
    {12, "quint8", 1, kNoDlpack, 0},
    {13, "qint32", 4, kNoDlpack, 0},
    {14, "bfloat16", 2, 4, 16},
    {15, "qint16", 2, kNoDlpack, 0},
    {16, "quint16", 2, kNoDlpack, 0},
    {17, "uint16", 2, 1, 16},
    {18, "complex128", 16, 5, 128},
    {19, "float16", 2, 2, 16},
    {21, "variant", 0, kNoDlpack, 0},
    {22, "uint32", 4, 1, 32},
    {23, "uint64", 8, 1, 64},
    {24, "float8_e5m2", 1, 12, 8},
    {25, "float8_e4m3fn", 1, 10, 8},
    {26, "float8_e4m3fnuz", 1, 11, 8},
    {27, "float8_e4m3b11fnuz", 1, 9, 8},
    {28, "float8_e5m2fnuz", 1, 13, 8},
    {29, "int4", 1, kNoDlpack, 0},
    {30, "uint4", 1, kNoDlpack, 0},
    {31, "int2", 1, kNoDlpack, 0},
    {32, "uint2", 1, kNoDlpack, 0},
    {33, "float4_e2m1fn", 1, kNoDlpack, 0},
    {kNoDtype, "float8_e3m4", 1, 7, 8},
    {kNoDtype, "float8_e4m3", 1, 8, 8},
    {kNoDtype, "float8_e8m0fnu", 1, 14, 8},
};

// The row of DataType `dtype`, or nullptr for an unknown or unsavable one.
inline const DtypeInfo* FindDtype(int dtype) {
  if (dtype < 0) return nullptr;
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return &d;
  }
  return nullptr;
}

// The row of scalar DLPack type (code, bits), or nullptr.
inline const DtypeInfo* FindDlpackDtype(int64_t code, int64_t bits) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dlpack_code != kNoDlpack && d.dlpack_code == code && d.dlpack_bits == bits) return &d;
  }
  return nullptr;
}

// Bytes per element for dtypes stored as a flat memcpy of the tensor buffer;
// 0 for DT_STRING / DT_VARIANT (variable-length) and -1 for unknown or
// unsavable types.
inline int DtypeElementSize(int dtype) {
  const DtypeInfo* d = FindDtype(dtype);
  return d != nullptr ? d->element_size : -1;
}

}  // namespace fastckpt
