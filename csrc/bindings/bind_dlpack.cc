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
//
// The ABI, the validation of a tensor and the dtype names are the core's
// (fastckpt/device/dlpack.h); this file holds the capsule protocol and the
// ownership of the managed tensor.
#include <Python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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
#include "fastckpt/device/dlpack.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {
namespace {

namespace dl = ::fastckpt::dlpack;

// dlpack_numpy_dtype(): the name from the element-type table, or
// InvalidArgumentError naming the dtype.
std::string NumpyDtypeName(int64_t code, int64_t bits, int64_t lanes) {
  std::string name;
  Check(dl::NumpyDtypeName(code, bits, lanes, &name));
  return name;
}

// is_c_contiguous(): the core's rule on Python sequences.
bool IsCContiguous(const std::vector<int64_t>& shape, const std::optional<std::vector<int64_t>>& strides,
                   int64_t unit) {
  for (int64_t d : shape) {
    if (d < 0) Check(InvalidArgument("is_c_contiguous: negative dimension " + std::to_string(d)));
  }
  if (strides && strides->size() != shape.size()) {
    Check(InvalidArgument("is_c_contiguous: " + std::to_string(strides->size()) + " strides for " +
                          std::to_string(shape.size()) + " dimensions"));
  }
  if (unit < 1) Check(InvalidArgument("is_c_contiguous: unit must be >= 1, not " + std::to_string(unit)));
  return dl::IsCContiguous(shape.data(), strides ? strides->data() : nullptr, shape.size(), unit);
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
  uintptr_t data() const { return Live().desc_.data; }
  int32_t device_type() const { return Live().desc_.device_type; }
  int32_t device_id() const { return Live().desc_.device_id; }
  uint8_t dtype_code() const { return Live().desc_.dtype.code; }
  uint8_t dtype_bits() const { return Live().desc_.dtype.bits; }
  uint16_t dtype_lanes() const { return Live().desc_.dtype.lanes; }
  bool readonly() const { return (Live().desc_.flags & dl::kFlagReadOnly) != 0; }
  uint64_t flags() const { return Live().desc_.flags; }
  bool versioned() const { return Live().versioned_ != nullptr; }
  uint64_t nbytes() const { return Live().desc_.nbytes; }
  bool c_contiguous() const { return Live().desc_.c_contiguous; }

  py::tuple shape() const { return ToTuple(Live().desc_.shape); }
  py::object strides() const {
    const DLPackTensor& self = Live();
    if (!self.desc_.strides.has_value()) return py::none();
    return ToTuple(*self.desc_.strides);
  }

  std::string Repr() const {
    if (released()) return "<DLPackTensor (released)>";
    const dl::Description& d = desc_;
    std::string s =
        "<DLPackTensor device=(" + std::to_string(d.device_type) + ", " + std::to_string(d.device_id) + ") shape=(";
    for (size_t i = 0; i < d.shape.size(); ++i) {
      s += std::to_string(d.shape[i]);
      if (d.shape.size() == 1 || i + 1 < d.shape.size()) s += ",";
      if (i + 1 < d.shape.size()) s += " ";
    }
    s += ") dtype=(" + std::to_string(d.dtype.code) + ", " + std::to_string(d.dtype.bits) + ", " +
         std::to_string(d.dtype.lanes) + ")";
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

  dl::Description desc_;  // copied by Describe()
};

void DLPackTensor::Describe() {
  if (versioned_ != nullptr) {
    Check(dl::CheckVersion(versioned_->version));
    Check(dl::Describe(versioned_->dl_tensor, versioned_->flags, &desc_));
  } else {
    Check(dl::Describe(legacy_->dl_tensor, /*flags=*/0, &desc_));
  }
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
    ThrowStatus(
        InvalidArgument("dlpack_export() expects an object implementing the DLPack protocol "
                        "(__dlpack__), got " +
                        TypeName(obj)));
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
    ThrowStatus(InvalidArgument("__dlpack__() returned " + TypeName(capsule) + ", not a DLPack capsule"));
  }
  const char* name = PyCapsule_GetName(cap);
  if (name == nullptr && PyErr_Occurred() != nullptr) throw py::error_already_set();
  const std::string got = name != nullptr ? name : "";
  const bool versioned = got == dl::kVersionedName;
  if (!versioned && got != dl::kLegacyName) {
    if (got == dl::kUsedVersionedName || got == dl::kUsedLegacyName) {
      ThrowStatus(InvalidArgument("__dlpack__() returned a DLPack capsule that was already consumed ('" + got + "')"));
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
  py::class_<DLPackTensor>(m, "DLPackTensor",
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
      .def_property_readonly("dtype_lanes", &DLPackTensor::dtype_lanes, "Lanes per element (1 for scalar types).")
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
      .def_property_readonly("released", &DLPackTensor::released, "Whether release() has been called.")
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
  m.def("dlpack_numpy_dtype", &NumpyDtypeName, py::arg("code"), py::arg("bits"), py::arg("lanes"),
        "numpy dtype name of a DLPack dtype ('float32', 'bool', 'complex64', and the\n"
        "ml_dtypes names 'bfloat16', 'float8_e4m3fn', ...). ValueError naming the dtype\n"
        "for vector types (lanes != 1), packed sub-byte types and unknown codes.");
  m.def("is_c_contiguous", &IsCContiguous, py::arg("shape"), py::arg("strides"), py::arg("unit"),
        "Whether an array of `shape` with `strides` (None: C-contiguous by definition) counted in\n"
        "units of `unit` (1 for element strides, the item size for byte strides) lays its elements\n"
        "out row-major without gaps; the stride of a dimension of length 1 does not matter, and\n"
        "an empty array is contiguous. The rule DLPackTensor.c_contiguous uses.");
}

}  // namespace bindings
}  // namespace fastckpt
