#include "bindings/registry.h"
namespace fastckpt { namespace bindings {
void RegisterReader(pybind11::module_& m) {}
}}
