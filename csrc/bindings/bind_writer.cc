#include "bindings/registry.h"
namespace fastckpt { namespace bindings {
void RegisterWriter(pybind11::module_& m) {}
}}
