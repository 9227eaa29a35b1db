// DLPack consumer: fastckpt._native.dlpack_export() and DLPackTensor.
//
// Any array that implements the DLPack protocol (numpy, torch, JAX, CuPy, ...
// on any device) is described natively without importing its framework: the
// producer's __dlpack__() hands over a capsule holding a managed tensor, this
// file consumes the capsule and keeps the managed tensor alive in a
// DLPackTensor until release() or until that object is garbage collected.
//
// Ownership: once dlpack_export() has renamed the capsule to its "used_" name
// the capsule no longer frees the tensor; the DLPackTensor owns it and calls
// the producer's deleter exactly once (release(), __exit__, its destructor,
// or the unwinding of a failed export, whichever comes first).
//
// Thread-safety: every entry point runs with the GIL held (pybind11's
// default), and the deleter is always called with the GIL held. A
// DLPackTensor has no lock of its own: the GIL serialises its users, and
// release() detaches the tensor before calling the deleter, so a deleter that
// runs Python code (and may let other threads in) cannot cause a second call.
#include <Python.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bindings/errors.h"
#include "bindings/registry.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {
namespace {

// ---------------------------------------------------------------------------
// The DLPack ABI (dlpack.h, version 1.x), declared here so that no header of
// any framework is needed. Field order and types are the public ABI.
namespace dl {

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

}  // namespace dl

// The layout every DLPack producer uses on the 64-bit platforms we build for.
static_assert(sizeof(void*) != 8 || sizeof(dl::Tensor) == 48, "DLTensor layout");
static_assert(sizeof(void*) != 8 || offsetof(dl::ManagedTensorVersioned, dl_tensor) == 32,
              "DLManagedTensorVersioned layout");
static_assert(sizeof(void*) != 8 || sizeof(dl::ManagedTensor) == 64, "DLManagedTensor layout");

// ---------------------------------------------------------------------------
// Data types.

// Name of a DataTypeCode, or nullptr for a code this file does not know.
const char* CodeName(int64_t code) {
  switch (code) {
    case dl::kInt: return "int";
    case dl::kUInt: return "uint";
    case dl::kFloat: return "float";
    case dl::kOpaqueHandle: return "opaque_handle";
    case dl::kBfloat: return "bfloat";
    case dl::kComplex: return "complex";
    case dl::kBool: return "bool";
    case dl::kFloat8_e3m4: return "float8_e3m4";
    case dl::kFloat8_e4m3: return "float8_e4m3";
    case dl::kFloat8_e4m3b11fnuz: return "float8_e4m3b11fnuz";
    case dl::kFloat8_e4m3fn: return "float8_e4m3fn";
    case dl::kFloat8_e4m3fnuz: return "float8_e4m3fnuz";
    case dl::kFloat8_e5m2: return "float8_e5m2";
    case dl::kFloat8_e5m2fnuz: return "float8_e5m2fnuz";
    case dl::kFloat8_e8m0fnu: return "float8_e8m0fnu";
    case dl::kFloat6_e2m3fn: return "float6_e2m3fn";
    case dl::kFloat6_e3m2fn: return "float6_e3m2fn";
    case dl::kFloat4_e2m1fn: return "float4_e2m1fn";
    default: return nullptr;
  }
}

// "DLPack dtype float (code=2, bits=32, lanes=4)", for error messages.
std::string DescribeDtype(int64_t code, int64_t bits, int64_t lanes) {
  const char* name = CodeName(code);
  return std::string("DLPack dtype ") + (name != nullptr ? name : "<unknown code>") +
         " (code=" + std::to_string(code) + ", bits=" + std::to_string(bits) +
         ", lanes=" + std::to_string(lanes) + ")";
}

// The numpy dtype name (ml_dtypes names for bfloat16 and float8) of a scalar
// DLPack dtype whose elements are whole bytes, or nullptr when there is none.
const char* NumpyName(int64_t code, int64_t bits) {
  switch (code) {
    case dl::kInt:
      switch (bits) {
        case 8: return "int8";
        case 16: return "int16";
        case 32: return "int32";
        case 64: return "int64";
      }
      return nullptr;
    case dl::kUInt:
      switch (bits) {
        case 8: return "uint8";
        case 16: return "uint16";
        case 32: return "uint32";
        case 64: return "uint64";
      }
      return nullptr;
    case dl::kFloat:
      switch (bits) {
        case 16: return "float16";
        case 32: return "float32";
        case 64: return "float64";
      }
      return nullptr;
    case dl::kBfloat: return bits == 16 ? "bfloat16" : nullptr;
    case dl::kComplex:
      switch (bits) {
        case 64: return "complex64";
        case 128: return "complex128";
      }
      return nullptr;
    case dl::kBool: return bits == 8 ? "bool" : nullptr;
    case dl::kFloat8_e3m4:
    case dl::kFloat8_e4m3:
    case dl::kFloat8_e4m3b11fnuz:
    case dl::kFloat8_e4m3fn:
    case dl::kFloat8_e4m3fnuz:
    case dl::kFloat8_e5m2:
    case dl::kFloat8_e5m2fnuz:
    case dl::kFloat8_e8m0fnu:
      return bits == 8 ? CodeName(code) : nullptr;
    // kOpaqueHandle has no numpy equivalent. The float6/float4 codes are
    // packed sub-byte types by default, while the numpy (ml_dtypes) types of
    // the same names take one byte per element: no name is given for them.
    default: return nullptr;
  }
}

std::string NumpyDtypeName(int64_t code, int64_t bits, int64_t lanes) {
  if (lanes != 1) {
    ThrowStatus(InvalidArgument(DescribeDtype(code, bits, lanes) +
                          " has no numpy dtype: vector types (lanes != 1) are not supported"));
  }
  const char* name = NumpyName(code, bits);
  if (name == nullptr) {
    ThrowStatus(InvalidArgument(DescribeDtype(code, bits, lanes) + " has no numpy dtype"));
  }
  return name;
}

// ---------------------------------------------------------------------------
// The owner.

// Owns one managed tensor taken from a consumed DLPack capsule, plus a copy
// of its description made at export time. Requires the GIL for every member
// function; the destructor acquires it itself. Not copyable or movable: the
// Python object owns it through pybind11's unique_ptr holder.
class DLPackTensor {
 public:
  DLPackTensor() = default;
  DLPackTensor(const DLPackTensor&) = delete;
  DLPackTensor& operator=(const DLPackTensor&) = delete;
  ~DLPackTensor() { Release(); }

  // Takes ownership of a managed tensor whose capsule has been renamed.
  // Cannot fail, so nothing can come between the rename and the adoption.
  void Adopt(dl::ManagedTensorVersioned* t) noexcept { versioned_ = t; }
  void Adopt(dl::ManagedTensor* t) noexcept { legacy_ = t; }

  // Validates the adopted tensor and copies its description. Throws
  // ValueError for a malformed tensor; the caller then destroys this object,
  // which calls the deleter.
  void Describe();

  // Calls the producer's deleter if this object still owns a tensor.
  // Idempotent and noexcept; acquires the GIL. The tensor is detached before
  // the deleter runs, so a re-entrant or concurrent call finds nothing left.
  // A Python error left by the deleter is reported as unraisable, and an
  // error that was pending before the call is preserved.
  void Release() noexcept {
    PyGILState_STATE gil = PyGILState_Ensure();
    dl::ManagedTensorVersioned* versioned = std::exchange(versioned_, nullptr);
    dl::ManagedTensor* legacy = std::exchange(legacy_, nullptr);
    if (versioned != nullptr || legacy != nullptr) {
      py::error_scope saved;
      if (versioned != nullptr && versioned->deleter != nullptr) versioned->deleter(versioned);
      if (legacy != nullptr && legacy->deleter != nullptr) legacy->deleter(legacy);
      if (PyErr_Occurred() != nullptr) PyErr_WriteUnraisable(nullptr);
    }
    PyGILState_Release(gil);
  }

  bool released() const { return versioned_ == nullptr && legacy_ == nullptr; }

  // Accessors: ValueError once released (like a released memoryview), since
  // the memory they describe may be gone.
  uintptr_t data() const { return Live().data_; }
  int32_t device_type() const { return Live().device_type_; }
  int32_t device_id() const { return Live().device_id_; }
  uint8_t dtype_code() const { return Live().dtype_.code; }
  uint8_t dtype_bits() const { return Live().dtype_.bits; }
  uint16_t dtype_lanes() const { return Live().dtype_.lanes; }
  bool readonly() const { return (Live().flags_ & dl::kFlagReadOnly) != 0; }
  uint64_t flags() const { return Live().flags_; }
  bool versioned() const { return Live().versioned_ != nullptr; }
  uint64_t nbytes() const { return Live().nbytes_; }
  bool c_contiguous() const { return Live().c_contiguous_; }

  py::tuple shape() const { return ToTuple(Live().shape_); }
  py::object strides() const {
    const DLPackTensor& self = Live();
    if (!self.strides_.has_value()) return py::none();
    return ToTuple(*self.strides_);
  }

  std::string Repr() const {
    if (released()) return "<DLPackTensor (released)>";
    std::string s = "<DLPackTensor device=(" + std::to_string(device_type_) + ", " +
                    std::to_string(device_id_) + ") shape=(";
    for (size_t i = 0; i < shape_.size(); ++i) {
      s += std::to_string(shape_[i]);
      if (shape_.size() == 1 || i + 1 < shape_.size()) s += ",";
      if (i + 1 < shape_.size()) s += " ";
    }
    s += ") dtype=(" + std::to_string(dtype_.code) + ", " + std::to_string(dtype_.bits) + ", " +
         std::to_string(dtype_.lanes) + ")";
    if (readonly()) s += " readonly";
    return s + ">";
  }

 private:
  const DLPackTensor& Live() const {
    if (released()) ThrowStatus(InvalidArgument("operation forbidden on a released DLPackTensor"));
    return *this;
  }

  static py::tuple ToTuple(const std::vector<int64_t>& v) {
    py::tuple t(v.size());
    for (size_t i = 0; i < v.size(); ++i) t[i] = py::int_(v[i]);
    return t;
  }

  dl::ManagedTensorVersioned* versioned_ = nullptr;  // owned; or
  dl::ManagedTensor* legacy_ = nullptr;              // owned

  // Description copied by Describe().
  uintptr_t data_ = 0;
  int32_t device_type_ = 0;
  int32_t device_id_ = 0;
  dl::DataType dtype_{};
  uint64_t flags_ = 0;
  uint64_t nbytes_ = 0;
  bool c_contiguous_ = true;
  std::vector<int64_t> shape_;
  std::optional<std::vector<int64_t>> strides_;  // nullopt: the producer gave NULL
};

void DLPackTensor::Describe() {
  const dl::Tensor* t = nullptr;
  if (versioned_ != nullptr) {
    const dl::PackVersion v = versioned_->version;
    if (v.major != dl::kMajorVersion) {
      // Nothing past `flags` may be read; the deleter is still safe to call.
      ThrowStatus(InvalidArgument("unsupported DLPack version " + std::to_string(v.major) + "." +
                            std::to_string(v.minor) + " (fastckpt reads major version " +
                            std::to_string(dl::kMajorVersion) + ")"));
    }
    flags_ = versioned_->flags;
    t = &versioned_->dl_tensor;
  } else {
    t = &legacy_->dl_tensor;
  }

  if (t->ndim < 0) {
    ThrowStatus(InvalidArgument("malformed DLPack tensor: ndim is " + std::to_string(t->ndim)));
  }
  if (t->ndim > 0 && t->shape == nullptr) {
    ThrowStatus(InvalidArgument("malformed DLPack tensor: shape is NULL with ndim " +
                          std::to_string(t->ndim)));
  }
  if (t->dtype.bits == 0 || t->dtype.lanes == 0) {
    ThrowStatus(InvalidArgument("malformed DLPack tensor: " +
                          DescribeDtype(t->dtype.code, t->dtype.bits, t->dtype.lanes)));
  }
  const size_t ndim = static_cast<size_t>(t->ndim);
  std::vector<int64_t> shape(t->shape, t->shape + ndim);

  constexpr uint64_t kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  const std::string overflow = "malformed DLPack tensor: its size in bytes overflows 64 bits";
  bool empty = false;
  for (size_t i = 0; i < ndim; ++i) {
    if (shape[i] < 0) {
      ThrowStatus(InvalidArgument("malformed DLPack tensor: shape[" + std::to_string(i) + "] is " +
                            std::to_string(shape[i])));
    }
    empty = empty || shape[i] == 0;
  }
  // A zero anywhere makes the tensor empty, however large the other dimensions.
  uint64_t numel = empty ? 0 : 1;
  for (size_t i = 0; i < ndim && !empty; ++i) {
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(shape[i]), &numel) || numel > kMax) {
      ThrowStatus(InvalidArgument(overflow));
    }
  }
  // Whole-byte elements take bits*lanes/8 bytes each; sub-byte elements are
  // packed unless the producer flags them as padded to one byte each.
  const uint64_t elem_bits = uint64_t{t->dtype.bits} * t->dtype.lanes;  // < 2^24
  uint64_t nbytes = 0;
  if (elem_bits % 8 == 0 || (flags_ & dl::kFlagSubbytePadded) != 0) {
    if (__builtin_mul_overflow(numel, (elem_bits + 7) / 8, &nbytes)) {
      ThrowStatus(InvalidArgument(overflow));
    }
  } else {
    uint64_t total_bits = 0;
    if (__builtin_mul_overflow(numel, elem_bits, &total_bits)) ThrowStatus(InvalidArgument(overflow));
    nbytes = total_bits / 8 + (total_bits % 8 != 0 ? 1 : 0);
  }
  if (nbytes > kMax) ThrowStatus(InvalidArgument(overflow));

  const uintptr_t base = reinterpret_cast<uintptr_t>(t->data);
  if (t->byte_offset > std::numeric_limits<uintptr_t>::max() - base) {
    ThrowStatus(InvalidArgument("malformed DLPack tensor: data pointer + byte_offset overflows"));
  }

  // C-contiguous: NULL strides, an empty tensor, or element strides equal to
  // the row-major ones on every dimension longer than 1 (a dimension of
  // length 1 is never stepped over, so its stride does not matter).
  bool contiguous = true;
  std::optional<std::vector<int64_t>> strides;
  if (t->strides != nullptr) {
    strides.emplace(t->strides, t->strides + ndim);
    if (numel != 0) {
      int64_t expected = 1;  // <= numel <= INT64_MAX: cannot overflow
      for (size_t i = ndim; i-- > 0;) {
        if (shape[i] != 1 && (*strides)[i] != expected) {
          contiguous = false;
          break;
        }
        expected *= shape[i];
      }
    }
  }

  data_ = base + static_cast<uintptr_t>(t->byte_offset);
  device_type_ = t->device.device_type;
  device_id_ = t->device.device_id;
  dtype_ = t->dtype;
  nbytes_ = nbytes;
  c_contiguous_ = contiguous;
  shape_ = std::move(shape);
  strides_ = std::move(strides);
}

// ---------------------------------------------------------------------------
// Export.

std::string TypeName(py::handle obj) {
  return py::str(py::type::handle_of(obj).attr("__qualname__")).cast<std::string>();
}

// Calls obj.__dlpack__(), asking for a versioned capsule; falls back to the
// legacy call for producers whose __dlpack__ has no max_version (TypeError).
py::object CallDlpack(py::handle obj, const py::object& stream) {
  PyObject* attr = PyObject_GetAttrString(obj.ptr(), "__dlpack__");
  if (attr == nullptr) {
    // Errors other than a missing attribute (a failing property) propagate.
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) throw py::error_already_set();
    PyErr_Clear();
    ThrowStatus(InvalidArgument("dlpack_export() expects an object implementing the DLPack protocol "
                         "(__dlpack__), got " + TypeName(obj)));
  }
  py::object method = py::reinterpret_steal<py::object>(attr);
  auto call = [&](bool with_max_version) {
    py::dict kwargs;
    if (with_max_version) kwargs["max_version"] = py::make_tuple(dl::kMajorVersion, 0);
    if (!stream.is_none()) kwargs["stream"] = stream;
    return method(**kwargs);
  };
  try {
    return call(true);
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;
  }
  return call(false);
}

// Consumes `capsule` (a DLPack capsule from __dlpack__) into a new owner.
std::unique_ptr<DLPackTensor> Consume(const py::object& capsule) {
  PyObject* cap = capsule.ptr();
  if (!PyCapsule_CheckExact(cap)) {
    ThrowStatus(InvalidArgument("__dlpack__() returned " + TypeName(capsule) +
                         ", not a DLPack capsule"));
  }
  const char* name = PyCapsule_GetName(cap);
  if (name == nullptr && PyErr_Occurred() != nullptr) throw py::error_already_set();
  const std::string got = name != nullptr ? name : "";
  const bool versioned = got == dl::kVersionedName;
  if (!versioned && got != dl::kLegacyName) {
    if (got == dl::kUsedVersionedName || got == dl::kUsedLegacyName) {
      ThrowStatus(InvalidArgument("__dlpack__() returned a DLPack capsule that was already consumed ('" +
                           got + "')"));
    }
    ThrowStatus(InvalidArgument("__dlpack__() returned a capsule named " +
                         (name != nullptr ? "'" + got + "'" : std::string("NULL")) +
                         ", expected 'dltensor_versioned' or 'dltensor'"));
  }
  void* ptr = PyCapsule_GetPointer(cap, name);
  if (ptr == nullptr) throw py::error_already_set();

  // Allocate the owner while the capsule still owns the tensor: if this
  // throws, the capsule's destructor frees it as usual.
  auto owner = std::make_unique<DLPackTensor>();
  if (PyCapsule_SetName(cap, versioned ? dl::kUsedVersionedName : dl::kUsedLegacyName) != 0) {
    throw py::error_already_set();
  }
  // From here on `owner` is responsible for the deleter, also if Describe()
  // or the caller throws.
  if (versioned) {
    owner->Adopt(static_cast<dl::ManagedTensorVersioned*>(ptr));
  } else {
    owner->Adopt(static_cast<dl::ManagedTensor*>(ptr));
  }
  owner->Describe();
  return owner;
}

std::unique_ptr<DLPackTensor> DlpackExport(py::handle obj, const py::object& stream) {
  py::object capsule = CallDlpack(obj, stream);
  return Consume(capsule);
}

}  // namespace

void RegisterDlpack(py::module_& m) {
  py::class_<DLPackTensor>(
      m, "DLPackTensor",
      "A tensor received through DLPack, owned until release() (or garbage collection).\n"
      "Made by dlpack_export(); not constructible from Python. Every property raises\n"
      "ValueError once the tensor has been released. Usable as a context manager that\n"
      "releases on exit.")
      .def_property_readonly("data", &DLPackTensor::data,
                             "Address of the first element (data pointer + byte_offset), an int.")
      .def_property_readonly("device_type", &DLPackTensor::device_type,
                             "DLPack device type: 1 CPU, 2 CUDA, 3 CUDA host, 4 OpenCL, 7 Vulkan,\n"
                             "8 Metal, 10 ROCm, 11 ROCm host, 13 CUDA managed, 14 oneAPI, ...")
      .def_property_readonly("device_id", &DLPackTensor::device_id, "Device ordinal.")
      .def_property_readonly("shape", &DLPackTensor::shape, "Shape, a tuple of ints.")
      .def_property_readonly("strides", &DLPackTensor::strides,
                             "Strides in elements (not bytes), a tuple of ints; None when the\n"
                             "producer gave none, which means C-contiguous.")
      .def_property_readonly("dtype_code", &DLPackTensor::dtype_code,
                             "DLPack type code (0 int, 1 uint, 2 float, 4 bfloat, 5 complex,\n"
                             "6 bool, 7-14 float8 variants, ...).")
      .def_property_readonly("dtype_bits", &DLPackTensor::dtype_bits, "Bits per lane.")
      .def_property_readonly("dtype_lanes", &DLPackTensor::dtype_lanes,
                             "Lanes per element (1 for scalar types).")
      .def_property_readonly("readonly", &DLPackTensor::readonly,
                             "Whether the producer flagged the memory read-only (always False\n"
                             "for a legacy, unversioned capsule).")
      .def_property_readonly("flags", &DLPackTensor::flags,
                             "The raw flags of a versioned capsule (bit 0 read-only, bit 1\n"
                             "is-copied, bit 2 sub-byte padded); 0 for a legacy capsule.")
      .def_property_readonly("versioned", &DLPackTensor::versioned,
                             "Whether the producer gave a versioned (DLPack >= 1.0) capsule.")
      .def_property_readonly("nbytes", &DLPackTensor::nbytes,
                             "Bytes the elements take: number of elements times element size\n"
                             "(sub-byte types packed unless flagged padded). For a strided view\n"
                             "this is not the extent of memory it spans.")
      .def_property_readonly("c_contiguous", &DLPackTensor::c_contiguous,
                             "Whether the elements are laid out row-major without gaps.")
      .def_property_readonly("released", &DLPackTensor::released,
                             "Whether release() has been called.")
      .def("release", &DLPackTensor::Release,
           "Gives the tensor back to its producer now (calls its deleter). Idempotent.")
      .def("__enter__", [](py::object self) { return self; })
      .def(
          "__exit__",
          [](DLPackTensor& self, const py::args&) {
            self.Release();
            return false;
          },
          "Releases the tensor.")
      .def("__repr__", &DLPackTensor::Repr);

  m.def("dlpack_export", &DlpackExport, py::arg("obj"), py::arg("stream") = py::none(),
        "Receives `obj` through DLPack without importing its framework: calls\n"
        "obj.__dlpack__(max_version=(1, 0)[, stream=stream]) (without max_version if the\n"
        "producer rejects it with TypeError), consumes the capsule and returns a\n"
        "DLPackTensor that owns the tensor until release(). `stream` is passed on as is\n"
        "(for CUDA producers: the consumer's stream; None for CPU arrays).\n"
        "Raises TypeError if `obj` has no __dlpack__ or returns no DLPack capsule,\n"
        "ValueError for a malformed tensor or an unsupported major version; exceptions\n"
        "raised by the producer propagate.");
  m.def("dlpack_numpy_dtype", &NumpyDtypeName, py::arg("code"), py::arg("bits"),
        py::arg("lanes"),
        "numpy dtype name of a DLPack dtype ('float32', 'bool', 'complex64', and the\n"
        "ml_dtypes names 'bfloat16', 'float8_e4m3fn', ...). ValueError naming the dtype\n"
        "for vector types (lanes != 1), packed sub-byte types and unknown codes.");
}

}  // namespace bindings
}  // namespace fastckpt
