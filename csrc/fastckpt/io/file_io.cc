#include "fastckpt/io/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

#include "fastckpt/io/fault_injection.h"

namespace fastckpt {

namespace {
// Linux transfers at most 0x7ffff000 bytes per call; ask for no more.
constexpr size_t kMaxIo = 1ull << 30;
}  // namespace

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

Status File::CreateExclusive(const std::string& path, File* out, const std::string& name) {
  const std::string& reported = name.empty() ? path : name;
  // Test hook: an injected error stands for open()'s, and no file is made.
  const int injected = fault::Inject(fault::Point::kCreate).err;
  // 0666 less the umask, as TensorFlow (fopen) and Python's open() create files.
  int fd = injected != 0 ? (errno = injected, -1) : ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) return IoError("cannot create", reported, errno);
  *out = File(fd, reported);
  return Status::Ok();
}

namespace {

// What a non-regular file is, for messages; nullptr for a regular file.
const char* SpecialKind(mode_t mode) {
  if (S_ISREG(mode)) return nullptr;
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "not a regular file";
}

// The error for a checkpoint file that is not a regular file: EISDIR for a
// directory (IsADirectoryError), EINVAL otherwise. Opening, let alone
// reading, a FIFO or a device could block forever or have side effects.
Status NotRegular(const std::string& path, mode_t mode) {
  const char* kind = SpecialKind(mode);
  const int err = S_ISDIR(mode) ? EISDIR : EINVAL;
  const std::string what = S_ISDIR(mode) ? std::string("is a directory") : std::string("is ") + kind;
  return Status::OsError(StatusCode::kIOError, "cannot read '" + path + "': it " + what + ", not a regular file", err,
                         path);
}

}  // namespace

Status File::OpenForRead(const std::string& path, File* out) {
  // stat() first: open() itself blocks on a FIFO with no writer, and may
  // act on a device. O_NONBLOCK covers a file swapped in between the two
  // calls (it changes nothing for regular files); fstat() then confirms.
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return IoError("cannot open", path, errno);
  if (!S_ISREG(st.st_mode)) return NotRegular(path, st.st_mode);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return IoError("cannot open", path, errno);
  File f(fd, path);
  if (::fstat(fd, &st) != 0) return IoError("cannot stat", path, errno);
  if (!S_ISREG(st.st_mode)) return NotRegular(path, st.st_mode);
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return IoError("cannot set the flags of", path, errno);
  }
  *out = std::move(f);
  return Status::Ok();
}

namespace {

// After a vectored transfer of n bytes: skips the vectors it completed and
// trims the one it completed in part. The one short-transfer trimmer of
// PwritevAll and PreadvAll (fault injection's short writes exercise it).
void ConsumeIov(size_t n, struct iovec** iov, int* iovcnt) {
  while (*iovcnt > 0 && n >= (*iov)->iov_len) {
    n -= (*iov)->iov_len;
    ++*iov;
    --*iovcnt;
  }
  if (*iovcnt > 0 && n > 0) {
    (*iov)->iov_base = static_cast<char*>((*iov)->iov_base) + n;
    (*iov)->iov_len -= n;
  }
}

}  // namespace

Status File::PwriteAll(const void* data, size_t n, uint64_t offset) const {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    size_t want = n < kMaxIo ? n : kMaxIo;
    // Test hook: an injected error takes the path a failed pwrite() takes
    // (EINTR retries); a short write exercises the loop below.
    const fault::Injected injected = fault::Inject(fault::Point::kWrite);
    if (injected.short_write) want = fault::ShortLength(want);
    ssize_t w = injected.err != 0 ? (errno = injected.err, -1) : ::pwrite(fd_, p, want, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return IoError("write failed on", path_, errno);
    }
    if (w == 0) return IoError("write made no progress on", path_, EIO);
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return Status::Ok();
}

Status File::PwritevAll(struct iovec* iov, int iovcnt, uint64_t offset) const {
  while (iovcnt > 0) {
    int cnt = iovcnt < IOV_MAX ? iovcnt : IOV_MAX;
    // Test hook, as in PwriteAll. A short write transfers part of the first
    // vector only, so that the trimming below is exercised.
    const fault::Injected injected = fault::Inject(fault::Point::kWrite);
    ssize_t w;
    if (injected.err != 0) {
      errno = injected.err;
      w = -1;
    } else if (injected.short_write && iov[0].iov_len > 0) {
      struct iovec part = {iov[0].iov_base, fault::ShortLength(iov[0].iov_len)};
      w = ::pwritev(fd_, &part, 1, static_cast<off_t>(offset));
    } else {
      w = ::pwritev(fd_, iov, cnt, static_cast<off_t>(offset));
    }
    if (w < 0) {
      if (errno == EINTR) continue;
      return IoError("write failed on", path_, errno);
    }
    if (w == 0) return IoError("write made no progress on", path_, EIO);
    offset += static_cast<uint64_t>(w);
    ConsumeIov(static_cast<size_t>(w), &iov, &iovcnt);
  }
  return Status::Ok();
}

Status File::PreadvAll(struct iovec* iov, int iovcnt, uint64_t offset) const {
  while (iovcnt > 0) {
    const int cnt = iovcnt < IOV_MAX ? iovcnt : IOV_MAX;
    const ssize_t r = ::preadv(fd_, iov, cnt, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return IoError("read failed on", path_, errno);
    }
    if (r == 0) return DataLoss("unexpected end of file in '" + path_ + "' (truncated file?)");
    offset += static_cast<uint64_t>(r);
    ConsumeIov(static_cast<size_t>(r), &iov, &iovcnt);
  }
  return Status::Ok();
}

Status File::PreadAll(void* data, size_t n, uint64_t offset) const {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::pread(fd_, p, n < kMaxIo ? n : kMaxIo, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return IoError("read failed on", path_, errno);
    }
    if (r == 0) {
      return DataLoss("unexpected end of file in '" + path_ + "' at offset " + std::to_string(offset) +
                      " (truncated file?)");
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

Status File::Size(uint64_t* size) const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return IoError("cannot stat", path_, errno);
  *size = static_cast<uint64_t>(st.st_size);
  return Status::Ok();
}

Status File::Sync() const {
  const int injected = fault::Inject(fault::Point::kSync).err;  // test hook
  int rc = injected != 0 ? (errno = injected, -1) : ::fsync(fd_);
  if (rc != 0) return IoError("fsync failed on", path_, errno);
  return Status::Ok();
}

Status File::StartWriteback(uint64_t offset, uint64_t n) const {
#if defined(__linux__)
  if (::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(n), SYNC_FILE_RANGE_WRITE) != 0) {
    // Filesystems without support (ENOSYS, EINVAL, ESPIPE) just get the final fsync.
    if (errno == EIO || errno == ENOSPC) return IoError("writeback failed on", path_, errno);
  }
#else
  (void)offset;
  (void)n;
#endif
  return Status::Ok();
}

Status File::Close() {
  if (fd_ < 0) return Status::Ok();
  int fd = fd_;
  fd_ = -1;
  // Test hook: the descriptor is released even when close() fails (Linux),
  // so an injected error is reported after a real close.
  const int injected = fault::Inject(fault::Point::kClose).err;
  int rc = ::close(fd);
  if (rc == 0 && injected != 0) {
    errno = injected;
    rc = -1;
  }
  // close() can report a deferred write error (e.g. on NFS); don't drop it.
  if (rc != 0 && errno != EINTR) return IoError("close failed on", path_, errno);
  return Status::Ok();
}

Status ReadWholeFile(const std::string& path, std::string* out) {
  File f;
  FASTCKPT_RETURN_IF_ERROR(File::OpenForRead(path, &f));
  uint64_t size;
  FASTCKPT_RETURN_IF_ERROR(f.Size(&size));
  out->resize(size);
  return f.PreadAll(&(*out)[0], size, 0);
}

Status RenameFile(const std::string& from, const std::string& to) {
  const int injected = fault::Inject(fault::Point::kRename).err;  // test hook
  int rc = injected != 0 ? (errno = injected, -1) : ::rename(from.c_str(), to.c_str());
  if (rc != 0) return IoError("cannot rename to '" + to + "' from", from, errno);
  return Status::Ok();
}

Status RemoveFileIfExists(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return IoError("cannot remove", path, errno);
  return Status::Ok();
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return IoError("cannot open directory", dir, errno);
  const int injected = fault::Inject(fault::Point::kSyncDir).err;  // test hook
  int rc = injected != 0 ? (errno = injected, -1) : ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some filesystems cannot fsync directories; that is not a data error.
  if (rc != 0 && err != EINVAL && err != ENOTSUP) return IoError("fsync failed on directory", dir, err);
  return Status::Ok();
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace fastckpt
