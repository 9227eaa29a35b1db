#include "fastckpt/temp_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

namespace fastckpt {

namespace {
constexpr const char kTempMarker[] = ".tempstate";

bool IsTempName(const char* name) {
  const char* p = std::strstr(name, kTempMarker);
  if (p == nullptr) return false;
  p += sizeof(kTempMarker) - 1;
  if (*p == '\0') return false;
  for (; *p; ++p) {
    if (*p < '0' || *p > '9') return false;
  }
  return true;
}
}  // namespace

Status CreateLockedTempFile(const std::string& path, File* out) {
  FASTCKPT_RETURN_IF_ERROR(File::CreateExclusive(path, out));
  if (::flock(out->fd(), LOCK_EX | LOCK_NB) != 0) {
    Status st = IoError("cannot lock temporary file", path, errno);
    ::unlink(path.c_str());
    return st;
  }
  return Status::Ok();
}

int RemoveStaleTempFiles(const std::string& dir, double min_age_seconds) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  int removed = 0;
  const time_t now = ::time(nullptr);
  while (struct dirent* e = ::readdir(d)) {
    if (!IsTempName(e->d_name)) continue;
    std::string path = dir + "/" + e->d_name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    struct stat st;
    bool stale = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                 difftime(now, st.st_mtime) >= min_age_seconds &&
                 ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    // Unlink while holding the lock, so no writer can be mid-way through it.
    if (stale && ::unlink(path.c_str()) == 0) ++removed;
    ::close(fd);
  }
  ::closedir(d);
  return removed;
}

}  // namespace fastckpt
