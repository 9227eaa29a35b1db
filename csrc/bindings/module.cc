// fastckpt._native: the pybind11 module. Only wiring lives here; each
// concern registers itself from its own bind_*.cc file.
#include <pybind11/pybind11.h>

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
  fastckpt::bindings::RegisterTesting(m);
  fastckpt::bindings::RegisterCudaTesting(m);
}
