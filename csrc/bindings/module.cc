// fastckpt._native: the pybind11 module. Only wiring lives here; each
// concern registers itself from its own bind_*.cc file.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/registry.h"

PYBIND11_MODULE(_native, m) {
  m.doc() = "fastckpt native core: CRC32C, parallel bundle writer, verified reader";
  fastckpt::bindings::RegisterInfo(m);
  fastckpt::bindings::RegisterCrc32c(m);
  fastckpt::bindings::RegisterPlanes(m);
  fastckpt::bindings::RegisterWriter(m);
  fastckpt::bindings::RegisterReader(m);
  fastckpt::bindings::RegisterFiles(m);
  fastckpt::bindings::RegisterDevice(m);
  fastckpt::bindings::RegisterDlpack(m);
  // The test hooks are a separate extension, fastckpt._native_testing
  // (csrc/testing/), that links the same core library. `_native.testing`
  // still names it, imported on first use (PEP 562), so that nothing of it
  // is loaded unless a test asks for it.
  m.def("__getattr__", [](const std::string& name) -> pybind11::object {
    if (name == "testing") return pybind11::module_::import("fastckpt._native_testing");
    throw pybind11::attribute_error("module 'fastckpt._native' has no attribute '" + name + "'");
  });
}
