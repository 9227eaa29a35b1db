#include "fastckpt/io/temp_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include "fastckpt/format/naming.h"

namespace fastckpt {

namespace {
// A name is 64 random bits, so EEXIST means a repeated random stream at worst
// (see TempFilename); a few fresh names settle it.
constexpr int kCreateAttempts = 16;
}  // namespace

Status CreateLockedTempFile(const std::string& final_name, File* out, std::string* temp_path) {
  std::string temp;
  Status created;
  for (int attempt = 0; attempt < kCreateAttempts; ++attempt) {
    temp = TempFilename(final_name);
    created = File::CreateExclusive(temp, out, final_name);
    if (created.ok() || created.sys_errno() != EEXIST) break;
  }
  FASTCKPT_RETURN_IF_ERROR(created);
  // The file is new and nobody else knows its name yet, so the lock is free;
  // until it is taken, RemoveStaleTempFiles spares the file by its age.
  if (::flock(out->fd(), LOCK_EX | LOCK_NB) != 0) {
    Status st = IoError("cannot lock the temporary file of", final_name, errno);
    *out = File();
    ::unlink(temp.c_str());
    return st;
  }
  *temp_path = std::move(temp);
  return Status::Ok();
}

Status PublishTempFile(const std::string& temp_path, const std::string& final_name) {
  Status st = RenameFile(temp_path, final_name);
  if (st.ok()) return st;
  const int err = st.sys_errno();
  return IoError("cannot rename the temporary file into place as", final_name, err);
}

Status WriteFileAtomically(const std::string& path, const void* data, size_t n, bool durable) {
  File file;
  std::string temp;
  FASTCKPT_RETURN_IF_ERROR(CreateLockedTempFile(path, &file, &temp));
  Status st = file.PwriteAll(data, n, 0);
  if (st.ok() && durable) st = file.Sync();
  if (st.ok()) st = PublishTempFile(temp, path);
  if (!st.ok()) {
    // Removed while still locked (the destructor closes after). Best effort:
    // the write's error is the one to report, and a leftover is removed by
    // the next save into the directory once it is stale.
    RemoveFileIfExists(temp).IgnoreError();
    return st;
  }
  // Renamed while locked; close() can still report a deferred write error
  // (e.g. on network file systems).
  FASTCKPT_RETURN_IF_ERROR(file.Close());
  if (durable) FASTCKPT_RETURN_IF_ERROR(SyncDirectory(DirName(path)));
  return Status::Ok();
}

int RemoveStaleTempFiles(const std::string& dir, double min_age_seconds) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return 0;
  int removed = 0;
  const time_t now = ::time(nullptr);
  while (struct dirent* e = ::readdir(d)) {
    if (!IsTempFilename(e->d_name)) continue;
    std::string path = dir + "/" + e->d_name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    struct stat st;
    bool stale = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && difftime(now, st.st_mtime) >= min_age_seconds &&
                 ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    // Unlink while holding the lock, so no writer can be mid-way through the
    // file, and only if the name still refers to the file that was checked.
    struct stat now_st;
    if (stale && ::lstat(path.c_str(), &now_st) == 0 && now_st.st_dev == st.st_dev && now_st.st_ino == st.st_ino &&
        ::unlink(path.c_str()) == 0) {
      ++removed;
    }
    ::close(fd);
  }
  ::closedir(d);
  return removed;
}

}  // namespace fastckpt
