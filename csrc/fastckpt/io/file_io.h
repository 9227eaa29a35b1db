// POSIX file helpers: an RAII descriptor, positional reads and writes that
// loop over EINTR and short transfers, fsync, rename. Every failure becomes
// a Status naming the file and carrying errno.
//
// Thread-safety: a File may be used by several threads at once for
// pread/pwrite at disjoint offsets (POSIX positional I/O has no shared
// cursor); Close() must not race with them.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <string>

#include "fastckpt/core/status.h"

namespace fastckpt {

class File {
 public:
  File() = default;
  // Takes ownership of `fd`. `name` is the file errors name: the path it was
  // opened with, or for a temporary file the final name the user knows.
  File(int fd, std::string name) : fd_(fd), path_(std::move(name)) {}
  File(File&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  File& operator=(File&& o) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();

  // Creates the file `path`; fails if it exists (O_EXCL: temporary names
  // are unique). Errors, here and from every later call on *out, name
  // `name` (default: `path`); a temporary file passes its final name, so
  // that no error reports a name the user never chose (temp_files.h).
  static Status CreateExclusive(const std::string& path, File* out, const std::string& name = std::string());
  // Opens a regular file for reading. Anything else is refused without
  // being opened (a FIFO would block, a device could be acted on): a
  // directory with EISDIR, a FIFO, socket or device node with EINVAL, both
  // kIOError naming the file.
  static Status OpenForRead(const std::string& path, File* out);

  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // The name errors report (see the constructor), not necessarily the
  // file's current name on disk.
  const std::string& path() const { return path_; }

  Status PwriteAll(const void* data, size_t n, uint64_t offset) const;
  // Writes iov[0..iovcnt) contiguously at `offset`. May modify `iov`.
  Status PwritevAll(struct iovec* iov, int iovcnt, uint64_t offset) const;
  // Reads exactly n bytes; a short file is kDataLoss ("truncated").
  Status PreadAll(void* data, size_t n, uint64_t offset) const;
  // Fills iov[0..iovcnt) from contiguous bytes at `offset`, as PreadAll.
  // May modify `iov`.
  Status PreadvAll(struct iovec* iov, int iovcnt, uint64_t offset) const;
  Status Size(uint64_t* size) const;
  Status Sync() const;
  // Starts (does not wait for) writeback of [offset, offset + n) to the
  // device, so that a later Sync() has little left to do and the disk works
  // while the CPU keeps copying. Best effort: a no-op where unsupported.
  Status StartWriteback(uint64_t offset, uint64_t n) const;
  Status Close();

 private:
  int fd_ = -1;
  std::string path_;  // the name errors report
};

// Reads a whole regular file into *out (used for .index files, whose size
// is known from fstat, never from file contents); refuses what
// File::OpenForRead refuses.
Status ReadWholeFile(const std::string& path, std::string* out);

Status RenameFile(const std::string& from, const std::string& to);
// Removes `path`; a missing file is not an error.
Status RemoveFileIfExists(const std::string& path);
bool FileExists(const std::string& path);
// fsyncs a directory so that renames into it are durable.
Status SyncDirectory(const std::string& dir);
std::string DirName(const std::string& path);

}  // namespace fastckpt
