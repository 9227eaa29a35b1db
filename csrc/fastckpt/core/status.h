// Error vocabulary of the native core.
//
// The core never throws: every fallible function returns a Status (or fills
// one), because errors arise on worker threads and are collected per task.
// The only place a Status becomes a Python exception is
// csrc/bindings/errors.cc. Codes follow TensorFlow/absl naming, which also
// carries the on-disk meaning (kDataLoss = corrupt bytes).
//
// Status is [[nodiscard]]: a status that is dropped on purpose is passed to
// IgnoreError() with a comment saying why.
#pragma once

#include <string>
#include <utility>

namespace fastckpt {

enum class StatusCode : int {
  kOk = 0,
  kNotFound = 1,          // a file of the checkpoint is missing (errno ENOENT)
  kDataLoss = 2,          // CRC mismatch, truncated file, garbled index
  kInvalidArgument = 3,   // bad caller input: names, dtypes, shapes
  kIOError = 4,           // an OS call failed; sys_errno() holds the cause
  kUnimplemented = 5,     // valid but unsupported input (e.g. compressed index blocks)
  kFailedPrecondition = 6,
  kUnavailable = 7,       // no usable CUDA driver or device
  kInternal = 8,
  kDeviceError = 9,       // a CUDA driver call failed; device_error() is the CUresult
};

// A value type: cheap to move, safe to copy across threads.
// Thread-safety: none needed (no shared state).
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // kIOError / kNotFound from an OS call: the errno (0 otherwise).
  int sys_errno() const { return code_ == StatusCode::kDeviceError ? 0 : detail_; }
  // kDeviceError: the CUresult of the failed driver call, and its name
  // ("CUDA_ERROR_ILLEGAL_ADDRESS"); 0 and "" otherwise.
  int device_error() const { return code_ == StatusCode::kDeviceError ? detail_ : 0; }
  const std::string& error_name() const { return error_name_; }
  // The file an OS error is about, as the user knows it: a checkpoint file's
  // final name, never the temporary name it is written under. May be empty.
  const std::string& path() const { return path_; }

  // The same error with `prefix` in front of its message (code, errno, path
  // and device error kept), for callers that add what they were doing.
  Status Annotate(const std::string& prefix) const {
    Status s = *this;
    s.message_ = prefix + message_;
    return s;
  }

  // Keeps the first error: later failures of a multi-step operation are
  // usually consequences of the first one.
  void Update(const Status& other) {
    if (ok() && !other.ok()) *this = other;
  }

  // Drops the status deliberately (best-effort cleanup whose failure has
  // nobody to be reported to). Say why at the call site.
  void IgnoreError() const {}

  // Builders for the errors that carry more than a message.
  static Status OsError(StatusCode code, std::string message, int err, std::string path) {
    Status s(code, std::move(message));
    s.detail_ = err;
    s.path_ = std::move(path);
    return s;
  }
  static Status Device(std::string message, int cuda_result, std::string error_name) {
    Status s(StatusCode::kDeviceError, std::move(message));
    s.detail_ = cuda_result;
    s.error_name_ = std::move(error_name);
    return s;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  int detail_ = 0;  // errno, or the CUresult of kDeviceError
  std::string message_;
  std::string path_;
  std::string error_name_;
};

inline Status NotFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status DataLoss(std::string m) { return Status(StatusCode::kDataLoss, std::move(m)); }
inline Status InvalidArgument(std::string m) { return Status(StatusCode::kInvalidArgument, std::move(m)); }
inline Status Unimplemented(std::string m) { return Status(StatusCode::kUnimplemented, std::move(m)); }
inline Status Internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }
inline Status FailedPrecondition(std::string m) { return Status(StatusCode::kFailedPrecondition, std::move(m)); }
inline Status Unavailable(std::string m) { return Status(StatusCode::kUnavailable, std::move(m)); }

// Builds an I/O error from errno: "<what> '<path>': <strerror>", with the
// errno and `path` attached. ENOENT becomes kNotFound so that a missing file
// surfaces as FileNotFoundError.
Status IoError(const std::string& what, const std::string& path, int err);

// A tensor name (arbitrary bytes) fit for an error message: control bytes are
// written as \xNN; other bytes pass through (names are usually UTF-8; the
// Python boundary decodes messages with backslashreplace).
std::string PrintableKey(const std::string& key);

}  // namespace fastckpt

#define FASTCKPT_RETURN_IF_ERROR(expr)       \
  do {                                       \
    ::fastckpt::Status _fc_status = (expr);  \
    if (!_fc_status.ok()) return _fc_status; \
  } while (0)
