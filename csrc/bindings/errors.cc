#include "bindings/errors.h"

#include <cerrno>

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

namespace {

// The exception class of each code; OS errors (kNotFound, kIOError) are
// built by fastckpt.errors.os_error, which picks the subclass matching the
// errno (PermissionError, IsADirectoryError...).
const char* ClassName(StatusCode code) {
  switch (code) {
    case StatusCode::kDataLoss: return "DataLossError";
    case StatusCode::kInvalidArgument: return "InvalidArgumentError";
    case StatusCode::kUnimplemented: return "UnimplementedError";
    case StatusCode::kFailedPrecondition: return "FailedPreconditionError";
    case StatusCode::kUnavailable: return "CudaUnavailableError";
    case StatusCode::kDeviceError: return "CudaError";
    case StatusCode::kNotFound:
    case StatusCode::kIOError: return "CheckpointIOError";
    case StatusCode::kOk:
    case StatusCode::kInternal: break;
  }
  return "InternalError";
}

// Text from the core (file and tensor names are arbitrary bytes): never
// fails to decode. Requires the GIL.
py::object Text(const std::string& s) {
  py::object out = py::reinterpret_steal<py::object>(
      PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "backslashreplace"));
  if (!out) throw py::error_already_set();
  return out;
}

}  // namespace

void ThrowStatus(const Status& status) {
  py::module_ errors = py::module_::import("fastckpt.errors");
  py::object message = Text(status.message());
  py::object exc;
  switch (status.code()) {
    case StatusCode::kNotFound:
    case StatusCode::kIOError: {
      int err = status.sys_errno();
      if (err == 0) err = status.code() == StatusCode::kNotFound ? ENOENT : EIO;
      // Paths keep undecodable bytes as surrogates, as os.fsdecode does.
      py::object filename = py::none();
      if (!status.path().empty()) {
        filename = py::reinterpret_steal<py::object>(
            PyUnicode_DecodeFSDefaultAndSize(status.path().data(), static_cast<Py_ssize_t>(status.path().size())));
        if (!filename) throw py::error_already_set();
      }
      exc = errors.attr("os_error")(err, message, filename);
      break;
    }
    case StatusCode::kDeviceError:
      exc = errors.attr("CudaError")(
          message, status.device_error(),
          status.error_name().empty() ? py::object(py::none()) : py::object(Text(status.error_name())));
      break;
    default: exc = errors.attr(ClassName(status.code()))(message); break;
  }
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
  throw py::error_already_set();
}

}  // namespace bindings
}  // namespace fastckpt
