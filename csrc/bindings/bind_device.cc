// Device copies requested from Python outside a save or a restore plan:
// copy_to_device() uploads one host buffer (e.g. a partitioned tensor that
// was reassembled on the host) through the active copy engine.
#include <pybind11/pybind11.h>

#include <memory>

#include "bindings/buffer.h"
#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/device/copy_engine.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

namespace {

void CopyToDevicePy(py::object buffer, uint64_t device_ptr, int device) {
  BufferView view;
  if (!view.Acquire(buffer.ptr(), /*writable=*/false)) throw py::error_already_set();
  if (device < 0) ThrowStatus(InvalidArgument("copy_to_device: device ordinal must be >= 0"));
  Status st;
  {
    py::gil_scoped_release release;
    std::shared_ptr<CopyEngine> engine;
    st = GetCopyEngine(&engine);
    std::unique_ptr<CopyStream> stream;
    if (st.ok()) st = engine->NewStream(device, &stream);
    // Pageable source memory: the engine copies synchronously enough for
    // WaitMark to cover it.
    if (st.ok() && view.size() > 0) st = stream->CopyToDevice(device_ptr, view.data(), view.size());
    uint64_t mark = 0;
    if (st.ok()) st = stream->Mark(&mark);
    if (st.ok()) st = stream->WaitMark(mark);
  }
  Check(st);
}

}  // namespace

void RegisterDevice(py::module_& m) {
  m.def("copy_to_device", &CopyToDevicePy, py::arg("buffer"), py::arg("device_ptr"), py::arg("device"),
        "Copies a host buffer into device memory and waits for the copy. Releases the GIL.");
}

}  // namespace bindings
}  // namespace fastckpt
