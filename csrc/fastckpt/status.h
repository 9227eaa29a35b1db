// Error vocabulary of the native core.
//
// The core never throws: every fallible function returns a Status (or fills
// one), because errors arise on worker threads and are collected per task.
// The only place a Status becomes a Python exception is
// csrc/bindings/errors.cc. Codes follow TensorFlow/absl naming, which also
// carries the on-disk meaning (kDataLoss = corrupt bytes).
#pragma once

#include <string>
#include <utility>

namespace fastckpt {

enum class StatusCode : int {
  kOk = 0,
  kNotFound = 1,          // a file of the checkpoint, or a tensor, is missing
  kDataLoss = 2,          // CRC mismatch, truncated file, garbled index
  kInvalidArgument = 3,   // bad caller input: names, dtypes, shapes
  kIOError = 4,           // an OS call failed; errno_ holds the cause
  kUnimplemented = 5,     // valid but unsupported input (e.g. compressed index blocks)
  kFailedPrecondition = 6,
  kUnavailable = 7,       // e.g. CUDA driver absent
  kInternal = 8,
};

// A value type: cheap to move, safe to copy across threads.
// Thread-safety: none needed (no shared state).
class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message, int err = 0)
      : code_(code), errno_(err), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return message_; }

  // Keeps the first error: later failures of a multi-step operation are
  // usually consequences of the first one.
  void Update(const Status& other) {
    if (ok() && !other.ok()) *this = other;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  int errno_ = 0;
  std::string message_;
};

inline Status NotFound(std::string m) { return Status(StatusCode::kNotFound, std::move(m)); }
inline Status DataLoss(std::string m) { return Status(StatusCode::kDataLoss, std::move(m)); }
inline Status InvalidArgument(std::string m) {
  return Status(StatusCode::kInvalidArgument, std::move(m));
}
inline Status Unimplemented(std::string m) {
  return Status(StatusCode::kUnimplemented, std::move(m));
}
inline Status Internal(std::string m) { return Status(StatusCode::kInternal, std::move(m)); }
inline Status FailedPrecondition(std::string m) {
  return Status(StatusCode::kFailedPrecondition, std::move(m));
}

// Builds an I/O error from errno: "<what> '<path>': <strerror>". ENOENT becomes
// kNotFound so that a missing file surfaces as FileNotFoundError.
Status IoError(const std::string& what, const std::string& path, int err);

// A tensor name (arbitrary bytes) fit for an error message: control bytes are
// written as \xNN; other bytes pass through (names are usually UTF-8; the
// Python boundary decodes messages with backslashreplace).
std::string PrintableKey(const std::string& key);

}  // namespace fastckpt

#define FASTCKPT_RETURN_IF_ERROR(expr)          \
  do {                                          \
    ::fastckpt::Status _fc_status = (expr);     \
    if (!_fc_status.ok()) return _fc_status;    \
  } while (0)
