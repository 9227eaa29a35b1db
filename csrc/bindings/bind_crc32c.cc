// TEMPORARY minimal binding (to be replaced).
#include <pybind11/pybind11.h>
#include "bindings/registry.h"
#include "fastckpt/crc32c.h"
namespace py = pybind11;
namespace fastckpt { namespace bindings {
void RegisterCrc32c(py::module_& m) {
  m.def("crc32c_impl", [] { return std::string(crc32c::ImplName(crc32c::ActiveImpl())); });
}
}}
