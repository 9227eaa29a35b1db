// Each bind_*.cc file registers one concern on the extension module.
// module.cc calls them in order. All Register* functions require the GIL.
#pragma once

#include <pybind11/pybind11.h>

namespace fastckpt {
namespace bindings {

void RegisterInfo(pybind11::module_& m);
void RegisterCrc32c(pybind11::module_& m);
// Byte-plane split and merge of compressed frames.
void RegisterPlanes(pybind11::module_& m);
void RegisterWriter(pybind11::module_& m);
void RegisterReader(pybind11::module_& m);
// Small files written atomically, cleanup of crashed writers' temporary files.
void RegisterFiles(pybind11::module_& m);
void RegisterDevice(pybind11::module_& m);
// DLPack consumer: dlpack_export(), DLPackTensor, dlpack_numpy_dtype().
void RegisterDlpack(pybind11::module_& m);

}  // namespace bindings
}  // namespace fastckpt
