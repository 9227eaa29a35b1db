// fastckpt._native.testing: hooks for tests, never used by the package.
//
// Fault injection (csrc/fastckpt/fault_injection.h) lets the test suite fail
// the N-th create/write/fsync/rename/close of a save with a chosen errno and
// check that nothing partial is left behind.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/registry.h"
#include "fastckpt/fault_injection.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

void RegisterTesting(py::module_& m) {
  py::module_ t = m.def_submodule("testing", "Test hooks (fault injection); not a public API.");
  t.def(
      "arm_fault",
      [](const std::string& point, int64_t skip, int err, bool short_write) {
        fault::Point p;
        if (!fault::ParsePoint(point, &p)) {
          throw py::value_error("unknown fault point '" + point +
                                "' (expected create, write, sync, rename, close or sync_dir)");
        }
        if (skip < 0) throw py::value_error("skip must be >= 0");
        if (err < 0) throw py::value_error("errno must be >= 0");
        if (short_write && p != fault::Point::kWrite) {
          throw py::value_error("short_write applies only to the 'write' point");
        }
        fault::Arm(p, skip, err, short_write);
      },
      py::arg("point"), py::arg("skip"), py::arg("errno"), py::arg("short_write") = false,
      "Fails call number skip+1 at `point` with `errno` (0: only count calls). With\n"
      "short_write ('write' only), that call writes part of its bytes and the same\n"
      "thread's retry fails with `errno` (0: the retry succeeds). One-shot.");
  t.def("disarm_faults", &fault::Disarm, "Stops injecting faults (the hit count stays readable).");
  t.def("fault_hits", &fault::Hits, "Calls seen at the armed point since the last arm_fault.");
}

}  // namespace bindings
}  // namespace fastckpt
