// Validation of tensors received through DLPack. See dlpack.h.
#include "fastckpt/device/dlpack.h"

#include <limits>
#include <utility>

#include "fastckpt/format/dtypes.h"

namespace fastckpt {
namespace dlpack {
namespace {

// Name of a DataTypeCode, or nullptr for a code this file does not know.
const char* CodeName(int64_t code) {
  switch (code) {
    case kInt: return "int";
    case kUInt: return "uint";
    case kFloat: return "float";
    case kOpaqueHandle: return "opaque_handle";
    case kBfloat: return "bfloat";
    case kComplex: return "complex";
    case kBool: return "bool";
    case kFloat8_e3m4: return "float8_e3m4";
    case kFloat8_e4m3: return "float8_e4m3";
    case kFloat8_e4m3b11fnuz: return "float8_e4m3b11fnuz";
    case kFloat8_e4m3fn: return "float8_e4m3fn";
    case kFloat8_e4m3fnuz: return "float8_e4m3fnuz";
    case kFloat8_e5m2: return "float8_e5m2";
    case kFloat8_e5m2fnuz: return "float8_e5m2fnuz";
    case kFloat8_e8m0fnu: return "float8_e8m0fnu";
    case kFloat6_e2m3fn: return "float6_e2m3fn";
    case kFloat6_e3m2fn: return "float6_e3m2fn";
    case kFloat4_e2m1fn: return "float4_e2m1fn";
    default: return nullptr;
  }
}

}  // namespace

std::string DescribeDtype(int64_t code, int64_t bits, int64_t lanes) {
  const char* name = CodeName(code);
  return std::string("DLPack dtype ") + (name != nullptr ? name : "<unknown code>") + " (code=" + std::to_string(code) +
         ", bits=" + std::to_string(bits) + ", lanes=" + std::to_string(lanes) + ")";
}

Status NumpyDtypeName(int64_t code, int64_t bits, int64_t lanes, std::string* name) {
  if (lanes != 1) {
    return InvalidArgument(DescribeDtype(code, bits, lanes) +
                           " has no numpy dtype: vector types (lanes != 1) are not supported");
  }
  const DtypeInfo* d = FindDlpackDtype(code, bits);
  if (d == nullptr) return InvalidArgument(DescribeDtype(code, bits, lanes) + " has no numpy dtype");
  *name = d->name;
  return Status::Ok();
}

Status CheckVersion(const PackVersion& v) {
  if (v.major == kMajorVersion) return Status::Ok();
  return InvalidArgument("unsupported DLPack version " + std::to_string(v.major) + "." + std::to_string(v.minor) +
                         " (fastckpt reads major version " + std::to_string(kMajorVersion) + ")");
}

bool IsCContiguous(const int64_t* shape, const int64_t* strides, size_t ndim, int64_t unit) {
  if (strides == nullptr) return true;
  for (size_t i = 0; i < ndim; ++i) {
    if (shape[i] == 0) return true;  // no element is ever reached
  }
  // The row-major stride of dimension i, in units; beyond int64 (a bogus
  // shape) no stride can equal it, which a later dimension longer than 1
  // then reports.
  __int128 expected = unit;
  constexpr __int128 kMax = std::numeric_limits<int64_t>::max();
  for (size_t i = ndim; i-- > 0;) {
    if (shape[i] != 1 && (expected > kMax || strides[i] != static_cast<int64_t>(expected))) return false;
    if (expected <= kMax) expected *= shape[i];
  }
  return true;
}

Status Describe(const Tensor& t, uint64_t flags, Description* out) {
  if (t.ndim < 0) return InvalidArgument("malformed DLPack tensor: ndim is " + std::to_string(t.ndim));
  if (t.ndim > 0 && t.shape == nullptr) {
    return InvalidArgument("malformed DLPack tensor: shape is NULL with ndim " + std::to_string(t.ndim));
  }
  if (t.dtype.bits == 0 || t.dtype.lanes == 0) {
    return InvalidArgument("malformed DLPack tensor: " + DescribeDtype(t.dtype.code, t.dtype.bits, t.dtype.lanes));
  }
  const size_t ndim = static_cast<size_t>(t.ndim);
  std::vector<int64_t> shape(t.shape, t.shape + ndim);

  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  const std::string overflow = "malformed DLPack tensor: its size in bytes overflows 64 bits";
  bool empty = false;
  for (size_t i = 0; i < ndim; ++i) {
    if (shape[i] < 0) {
      return InvalidArgument("malformed DLPack tensor: shape[" + std::to_string(i) + "] is " +
                             std::to_string(shape[i]));
    }
    empty = empty || shape[i] == 0;
  }
  // A zero anywhere makes the tensor empty, however large the other dimensions.
  uint64_t numel = empty ? 0 : 1;
  for (size_t i = 0; i < ndim && !empty; ++i) {
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(shape[i]), &numel) || numel > kMax) {
      return InvalidArgument(overflow);
    }
  }
  // Whole-byte elements take bits*lanes/8 bytes each; sub-byte elements are
  // packed unless the producer flags them as padded to one byte each.
  const uint64_t elem_bits = uint64_t{t.dtype.bits} * t.dtype.lanes;  // < 2^24
  uint64_t nbytes = 0;
  if (elem_bits % 8 == 0 || (flags & kFlagSubbytePadded) != 0) {
    if (__builtin_mul_overflow(numel, (elem_bits + 7) / 8, &nbytes)) return InvalidArgument(overflow);
  } else {
    uint64_t total_bits = 0;
    if (__builtin_mul_overflow(numel, elem_bits, &total_bits)) return InvalidArgument(overflow);
    nbytes = total_bits / 8 + (total_bits % 8 != 0 ? 1 : 0);
  }
  if (nbytes > kMax) return InvalidArgument(overflow);

  const uintptr_t base = reinterpret_cast<uintptr_t>(t.data);
  if (t.byte_offset > std::numeric_limits<uintptr_t>::max() - base) {
    return InvalidArgument("malformed DLPack tensor: data pointer + byte_offset overflows");
  }

  std::optional<std::vector<int64_t>> strides;
  if (t.strides != nullptr) strides.emplace(t.strides, t.strides + ndim);

  out->data = base + static_cast<uintptr_t>(t.byte_offset);
  out->device_type = t.device.device_type;
  out->device_id = t.device.device_id;
  out->dtype = t.dtype;
  out->flags = flags;
  out->nbytes = nbytes;
  out->c_contiguous = IsCContiguous(shape.data(), strides ? strides->data() : nullptr, ndim, /*unit=*/1);
  out->shape = std::move(shape);
  out->strides = std::move(strides);
  return Status::Ok();
}

}  // namespace dlpack
}  // namespace fastckpt
