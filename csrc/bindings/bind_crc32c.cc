// Python bindings for CRC-32C (fastckpt._native.crc32c*): checksums of any
// C-contiguous buffer, CRC combination and masking, and control over which
// CPU implementation is used (for tests, benchmarks and FASTCKPT_CRC32C).
#include <Python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/crc32c/cpu_features.h"
#include "fastckpt/crc32c/crc32c.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {
namespace {

// Below this size the GIL round trip costs more than it lets other threads
// gain; above it, checksumming takes long enough (>= ~3 us) to be worth it.
constexpr size_t kReleaseGilBytes = 64 * 1024;

// RAII holder of a PyBUF_SIMPLE (C-contiguous, byte-addressed) buffer view.
// The view keeps the exporter's memory pinned (e.g. a bytearray cannot be
// resized) until it is released, which is what makes dropping the GIL while
// reading it safe.
class SimpleBuffer {
 public:
  explicit SimpleBuffer(py::handle obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_SIMPLE) != 0) throw py::error_already_set();
  }
  ~SimpleBuffer() { PyBuffer_Release(&view_); }
  SimpleBuffer(const SimpleBuffer&) = delete;
  SimpleBuffer& operator=(const SimpleBuffer&) = delete;

  const void* data() const { return view_.buf; }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_;
};

// "'portable', 'sse42'" for the implementations usable on this CPU.
std::string QuotedAvailableNames() {
  std::string out;
  for (crc32c::Impl impl : crc32c::AvailableImpls()) {
    if (!out.empty()) out += ", ";
    out += "'";
    out += crc32c::ImplName(impl);
    out += "'";
  }
  return out;
}

// Parses an implementation name; ValueError (listing the valid names, plus
// `extra` when given) if it is unknown or not usable on this CPU. The message
// is only built on failure: this runs on every crc32c(..., impl=...) call.
crc32c::Impl ParseImpl(const std::string& name, const char* extra = nullptr) {
  crc32c::Impl impl;
  const bool known = crc32c::ImplFromName(name, &impl);
  if (known && crc32c::IsAvailable(impl)) return impl;
  std::string valid = QuotedAvailableNames();
  if (extra != nullptr) valid = "'" + std::string(extra) + "', " + valid;
  if (!known) {
    ThrowStatus(InvalidArgument("unknown CRC32C implementation '" + name + "'; valid: " + valid));
  }
  ThrowStatus(InvalidArgument("CRC32C implementation '" + name + "' is not available on this CPU; valid: " + valid));
}

uint32_t Crc32c(py::handle data, uint32_t crc, const std::optional<std::string>& impl_name) {
  // Resolve the name before pinning the buffer: errors then need no cleanup.
  std::optional<crc32c::Impl> impl;
  if (impl_name.has_value()) impl = ParseImpl(*impl_name);
  SimpleBuffer buffer(data);
  auto run = [&]() {
    return impl.has_value() ? crc32c::ExtendWith(*impl, crc, buffer.data(), buffer.size())
                            : crc32c::Extend(crc, buffer.data(), buffer.size());
  };
  if (buffer.size() < kReleaseGilBytes) return run();
  {
    py::gil_scoped_release release;
    crc = run();
  }
  return crc;
}

}  // namespace

void RegisterCrc32c(py::module_& m) {
  m.def("crc32c", &Crc32c, py::arg("data"), py::arg("crc") = 0, py::arg("impl") = py::none(),
        "CRC-32C (Castagnoli) of a C-contiguous buffer (bytes, bytearray, memoryview,\n"
        "numpy array, ...), continuing from `crc` (the CRC of preceding data; 0 to start).\n"
        "Returns the plain (unmasked) CRC. `impl` forces an implementation by name\n"
        "(see crc32c_impls()); by default the active one is used. The GIL is released\n"
        "for buffers of 64 KiB or more.");
  m.def("crc32c_combine", &crc32c::Combine, py::arg("crc_a"), py::arg("crc_b"), py::arg("len_b"),
        "crc32c(A + B) from crc32c(A), crc32c(B) and len(B), in O(log len_b).");
  m.def("crc32c_mask", &crc32c::Mask, py::arg("crc"),
        "Masks a CRC the way TensorFlow stores it (rotate right 15, add 0xa282ead8).");
  m.def("crc32c_unmask", &crc32c::Unmask, py::arg("masked"), "Inverse of crc32c_mask().");
  m.def(
      "crc32c_impls",
      []() {
        std::vector<std::string> names;
        for (crc32c::Impl impl : crc32c::AvailableImpls()) {
          names.emplace_back(crc32c::ImplName(impl));
        }
        return names;
      },
      "Names of the CRC32C implementations usable on this CPU, slowest first.");
  m.def(
      "crc32c_impl", []() { return std::string(crc32c::ImplName(crc32c::ActiveImpl())); },
      "Name of the active CRC32C implementation.");
  m.def(
      "crc32c_set_impl",
      [](const std::string& name) {
        const crc32c::Impl impl = name == "auto" ? crc32c::BestImpl() : ParseImpl(name, "auto");
        // Cannot fail: ParseImpl() checked availability and BestImpl() is available.
        crc32c::SetImpl(impl);
      },
      py::arg("name"),
      "Selects the CRC32C implementation by name, or 'auto' for the fastest one.\n"
      "Checksums already running in other threads may finish with the previous one\n"
      "(every implementation gives the same results).");
  m.def(
      "crc32c_mask_cpu_features",
      [](const std::vector<std::string>& names) {
        cpu::MaskFeatures(names);
        crc32c::SetImpl(crc32c::BestImpl());  // always available
      },
      py::arg("names"),
      "Hides CPU features from the CRC32C dispatcher (sse42, pclmul, avx2, vpclmul,\n"
      "arm64_crc32, or 'all'; other names are ignored), replacing the previous mask,\n"
      "and selects the fastest implementation left. fastckpt.config applies\n"
      "FASTCKPT_DISABLE_CPU_FEATURES with it at import.");
}

}  // namespace bindings
}  // namespace fastckpt
