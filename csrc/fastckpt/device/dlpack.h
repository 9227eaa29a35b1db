// The DLPack ABI (dlpack.h, version 1.x) and the validation of a tensor
// received through it: shape, strides, size in bytes, dtype. Declared here so
// that no header of any framework is needed. Python-free: the capsule
// protocol and the ownership of the managed tensor live in
// csrc/bindings/bind_dlpack.cc.
//
// Thread-safety: every function is pure (reads only its arguments).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fastckpt/core/status.h"

namespace fastckpt {
namespace dlpack {

struct Device {
  int32_t device_type;  // DeviceType code: 1 CPU, 2 CUDA, 3 CUDA host, ...
  int32_t device_id;
};

struct DataType {
  uint8_t code;  // DataTypeCode
  uint8_t bits;
  uint16_t lanes;
};

struct Tensor {
  void* data;
  Device device;
  int32_t ndim;
  DataType dtype;
  int64_t* shape;    // ndim entries; may be NULL when ndim == 0
  int64_t* strides;  // ndim element strides; NULL means C-contiguous (before DLPack 1.2)
  uint64_t byte_offset;
};

// Legacy (unversioned) managed tensor, capsule name "dltensor".
struct ManagedTensor {
  Tensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);  // may be NULL; frees `self` too
};

struct PackVersion {
  uint32_t major;
  uint32_t minor;
};

// Versioned managed tensor (DLPack >= 1.0), capsule name "dltensor_versioned".
// Future major versions keep everything up to and including `flags` stable,
// so the deleter may be called even when the major version is unknown.
struct ManagedTensorVersioned {
  PackVersion version;
  void* manager_ctx;
  void (*deleter)(ManagedTensorVersioned* self);  // may be NULL; frees `self` too
  uint64_t flags;
  Tensor dl_tensor;
};

constexpr uint32_t kMajorVersion = 1;

// Flag bits of ManagedTensorVersioned::flags (bit 1, "is copied", needs no
// handling here: the deleter frees a copy like any other tensor).
constexpr uint64_t kFlagReadOnly = uint64_t{1} << 0;
constexpr uint64_t kFlagSubbytePadded = uint64_t{1} << 2;

// DataTypeCode.
enum : uint8_t {
  kInt = 0,
  kUInt = 1,
  kFloat = 2,
  kOpaqueHandle = 3,
  kBfloat = 4,
  kComplex = 5,
  kBool = 6,
  kFloat8_e3m4 = 7,
  kFloat8_e4m3 = 8,
  kFloat8_e4m3b11fnuz = 9,
  kFloat8_e4m3fn = 10,
  kFloat8_e4m3fnuz = 11,
  kFloat8_e5m2 = 12,
  kFloat8_e5m2fnuz = 13,
  kFloat8_e8m0fnu = 14,
  kFloat6_e2m3fn = 15,
  kFloat6_e3m2fn = 16,
  kFloat4_e2m1fn = 17,
};

constexpr const char kVersionedName[] = "dltensor_versioned";
constexpr const char kLegacyName[] = "dltensor";
// The renamed capsules must point at storage that outlives them: these are
// string literals with static storage duration.
constexpr const char kUsedVersionedName[] = "used_dltensor_versioned";
constexpr const char kUsedLegacyName[] = "used_dltensor";

// The layout every DLPack producer uses on the 64-bit platforms we build for.
static_assert(sizeof(void*) != 8 || sizeof(Tensor) == 48, "DLTensor layout");
static_assert(sizeof(void*) != 8 || offsetof(ManagedTensorVersioned, dl_tensor) == 32,
              "DLManagedTensorVersioned layout");
static_assert(sizeof(void*) != 8 || sizeof(ManagedTensor) == 64, "DLManagedTensor layout");

// What a consumer keeps of a tensor: a copy of its description.
struct Description {
  uintptr_t data = 0;  // data pointer + byte_offset
  int32_t device_type = 0;
  int32_t device_id = 0;
  DataType dtype{};
  uint64_t flags = 0;  // of a versioned tensor; 0 for a legacy one
  uint64_t nbytes = 0;
  bool c_contiguous = true;
  std::vector<int64_t> shape;
  std::optional<std::vector<int64_t>> strides;  // nullopt: the producer gave NULL
};

// kInvalidArgument unless a versioned tensor's major version is ours
// (nothing past `flags` may then be read; the deleter is still safe to call).
Status CheckVersion(const PackVersion& version);

// Validates `t` (with the flags of its versioned capsule, 0 for a legacy
// one) and copies its description: kInvalidArgument ("malformed DLPack
// tensor: ...") for a negative ndim or dimension, a NULL shape, a zero-width
// dtype, a size in bytes beyond int64, or a data pointer that overflows.
Status Describe(const Tensor& t, uint64_t flags, Description* out);

// Whether `ndim` dimensions with `strides` (NULL: none given) lay their
// elements out row-major without gaps. Strides are counted in units of
// `unit` (1 for DLPack's element strides, the item size for byte strides):
// true for NULL strides or an empty shape, else the strides must equal the
// row-major ones on every dimension longer than 1 (a dimension of length 1
// is never stepped over, so its stride does not matter).
// REQUIRES: every shape[i] >= 0, unit >= 1.
bool IsCContiguous(const int64_t* shape, const int64_t* strides, size_t ndim, int64_t unit);

// "DLPack dtype float (code=2, bits=32, lanes=4)", for error messages.
std::string DescribeDtype(int64_t code, int64_t bits, int64_t lanes);

// The numpy dtype name (ml_dtypes names for bfloat16 and float8) of a DLPack
// dtype, from the element-type table (format/dtypes.h). kInvalidArgument
// naming the dtype for vector types (lanes != 1) and for types with no numpy
// equivalent: kOpaqueHandle, the packed sub-byte float6/float4 codes (the
// numpy types of those names take one byte per element), unknown codes.
Status NumpyDtypeName(int64_t code, int64_t bits, int64_t lanes, std::string* name);

}  // namespace dlpack
}  // namespace fastckpt
