// fastckpt._native_testing: the test hooks, a separate extension so that the
// module users import (fastckpt._native) carries no test-only code. Both link
// the one core library (libfastckpt_core.so), so the hooks act on the same
// process-wide state (fault injection, the installed copy engine, the
// staging pool) the package uses. Never imported by the package itself.
#include <pybind11/pybind11.h>

#include "testing/registry.h"

PYBIND11_MODULE(_native_testing, m) {
  m.doc() = "fastckpt test hooks (fault injection, simulated device, core units); not a public API";
  fastckpt::bindings::RegisterTesting(m);
  fastckpt::bindings::RegisterCudaTesting(m);
  fastckpt::bindings::RegisterUnits(m);
}
