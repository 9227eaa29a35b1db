#include "fastckpt/core/status.h"

#include <cerrno>
#include <cstring>

namespace fastckpt {

Status IoError(const std::string& what, const std::string& path, int err) {
  std::string msg = what + " '" + path + "': " + std::strerror(err);
  StatusCode code = err == ENOENT ? StatusCode::kNotFound : StatusCode::kIOError;
  return Status::OsError(code, std::move(msg), err, path);
}

std::string PrintableKey(const std::string& key) {
  std::string out;
  out.reserve(key.size());
  for (unsigned char c : key) {
    if (c < 0x20 || c == 0x7f) {
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out;
}

}  // namespace fastckpt
