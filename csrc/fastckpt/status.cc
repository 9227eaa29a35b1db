#include "fastckpt/status.h"

#include <cerrno>
#include <cstring>

namespace fastckpt {

Status IoError(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " '" + path + "': " + std::strerror(err);
  StatusCode code = err == ENOENT ? StatusCode::kNotFound : StatusCode::kIOError;
  return Status(code, std::move(msg), err);
}

}  // namespace fastckpt
