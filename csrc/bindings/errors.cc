#include "bindings/errors.h"

#include <cerrno>

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

namespace {

const char* ClassName(StatusCode code) {
  switch (code) {
    case StatusCode::kNotFound: return "CheckpointNotFoundError";
    case StatusCode::kDataLoss: return "DataLossError";
    case StatusCode::kInvalidArgument: return "InvalidArgumentError";
    case StatusCode::kIOError: return "CheckpointIOError";
    case StatusCode::kUnimplemented: return "UnimplementedError";
    case StatusCode::kFailedPrecondition: return "FailedPreconditionError";
    case StatusCode::kUnavailable: return "CudaUnavailableError";
    case StatusCode::kOk:
    case StatusCode::kInternal: break;
  }
  return "InternalError";
}

}  // namespace

void ThrowStatus(const Status& status) {
  py::module_ errors = py::module_::import("fastckpt.errors");
  py::object cls = errors.attr(ClassName(status.code()));
  // Messages carry file and tensor names, which are bytes; never fail on them.
  const std::string& m = status.message();
  py::object message = py::reinterpret_steal<py::object>(
      PyUnicode_DecodeUTF8(m.data(), static_cast<Py_ssize_t>(m.size()), "backslashreplace"));
  if (!message) throw py::error_already_set();
  py::object exc;
  if (status.code() == StatusCode::kIOError ||
      (status.code() == StatusCode::kNotFound && status.sys_errno() != 0)) {
    // OSError subclasses: (errno, message) fills .errno and .strerror.
    exc = cls(status.sys_errno() ? status.sys_errno() : EIO, message);
  } else {
    exc = cls(message);
  }
  PyErr_SetObject(cls.ptr(), exc.ptr());
  throw py::error_already_set();
}

}  // namespace bindings
}  // namespace fastckpt
