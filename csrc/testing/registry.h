// Each bind_*.cc file of csrc/testing/ registers its hooks on the test
// module fastckpt._native_testing; module.cc calls them in order. All
// Register* functions require the GIL.
#pragma once

#include <pybind11/pybind11.h>

namespace fastckpt {
namespace bindings {

// Fault injection, the simulated device, the element-type table.
void RegisterTesting(pybind11::module_& m);
// The CUDA copy engine, driven directly.
void RegisterCudaTesting(pybind11::module_& m);
// Direct entry points into core pieces reached only end to end otherwise:
// the task planner, the load plan's slab layout, the staging pool, the
// index table builder and reader.
void RegisterUnits(pybind11::module_& m);

}  // namespace bindings
}  // namespace fastckpt
