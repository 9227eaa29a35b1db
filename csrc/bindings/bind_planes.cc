// Python bindings for the byte-plane transposition of compressed frames
// (fastckpt._native.split_byte_planes / merge_byte_planes): argument
// checks, buffer pinning and the GIL; the work is byte_planes.cc's.
#include <Python.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/pipeline/byte_planes.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {
namespace {

// A pinned C-contiguous byte view of a buffer (writable when asked). The
// view keeps the exporter's memory in place until released, which is what
// makes dropping the GIL while using it safe.
class Pinned {
 public:
  Pinned(py::handle obj, bool writable, const char* what) {
    const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
      PyErr_Clear();
      ThrowStatus(
          InvalidArgument(std::string(what) + " must be a C-contiguous" + (writable ? ", writable" : "") + " buffer"));
    }
  }
  ~Pinned() { PyBuffer_Release(&view_); }
  Pinned(const Pinned&) = delete;
  Pinned& operator=(const Pinned&) = delete;

  uint8_t* data() const { return static_cast<uint8_t*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_;
};

void CheckK(int k) {
  if (k < 1 || k > 16) ThrowStatus(InvalidArgument("element size must be 1..16 bytes, not " + std::to_string(k)));
}

void Split(py::handle elements, int k, py::handle planes) {
  CheckK(k);
  Pinned src(elements, false, "elements");
  Pinned dst(planes, true, "planes");
  if (src.size() != dst.size() || src.size() % static_cast<size_t>(k) != 0) {
    ThrowStatus(InvalidArgument("split_byte_planes: " + std::to_string(src.size()) + " bytes of elements of " +
                                std::to_string(k) + " bytes into " + std::to_string(dst.size()) + " bytes of planes"));
  }
  py::gil_scoped_release nogil;
  SplitBytePlanes(src.data(), src.size() / static_cast<size_t>(k), k, dst.data());
}

void Merge(const py::sequence& planes, py::handle elements) {
  const size_t k = planes.size();
  CheckK(static_cast<int>(k));
  Pinned dst(elements, true, "elements");
  std::vector<std::unique_ptr<Pinned>> pinned;
  std::vector<const uint8_t*> ptrs;
  const size_t n = dst.size() / k;
  for (size_t j = 0; j < k; ++j) {
    pinned.push_back(std::make_unique<Pinned>(planes[j], false, "a plane"));
    if (pinned.back()->size() != n || n * k != dst.size()) {
      ThrowStatus(InvalidArgument("merge_byte_planes: plane " + std::to_string(j) + " holds " +
                                  std::to_string(pinned.back()->size()) + " bytes; " + std::to_string(k) +
                                  " planes of " + std::to_string(n) + " make " + std::to_string(dst.size())));
    }
    ptrs.push_back(pinned.back()->data());
  }
  py::gil_scoped_release nogil;
  MergeBytePlanes(ptrs.data(), n, static_cast<int>(k), dst.data());
}

}  // namespace

void RegisterPlanes(py::module_& m) {
  m.def("split_byte_planes", &Split, py::arg("elements"), py::arg("k"), py::arg("planes"),
        "Writes the k byte planes of `elements` (n elements of k bytes) into `planes`\n"
        "(k * n bytes, plane j = byte j of every element). Releases the GIL.");
  m.def("merge_byte_planes", &Merge, py::arg("planes"), py::arg("elements"),
        "Inverse of split_byte_planes: k buffers of n bytes into `elements` (k * n bytes).\n"
        "Releases the GIL.");
}

}  // namespace bindings
}  // namespace fastckpt
