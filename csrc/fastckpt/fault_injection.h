// Fault injection for the file I/O layer (tests only).
//
// Tests must prove that a save which fails at any OS call, for any reason,
// leaves no partial files and harms no earlier checkpoint. Real faults
// (ENOSPC on a tiny tmpfs, EACCES as another user) reach only some calls and
// need root; this hook fails exactly the N-th call at one point instead.
//
// file_io.cc asks Inject(point) before each hooked system call. While
// nothing is armed that costs one relaxed atomic load and a predictable
// branch, so production builds carry the hook at no measurable cost.
//
// Thread-safety: every function may be called from any thread. Arm/Disarm
// are meant to be called while no save is running (a save in flight may see
// either configuration for any given call, never a torn one).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace fastckpt {
namespace fault {

// The hooked calls in file_io.cc.
enum class Point : int {
  kCreate = 0,  // File::CreateExclusive (open O_CREAT|O_EXCL)
  kWrite,       // File::PwriteAll / File::PwritevAll, once per pwrite/pwritev
  kSync,        // File::Sync (fsync of a file)
  kRename,      // RenameFile
  kClose,       // File::Close (not the destructor's silent close)
  kSyncDir,     // SyncDirectory (fsync of a directory)
};

// What a hooked call must do instead of (or before) its system call.
struct Injected {
  // Nonzero: fail the call with this errno, without making the system call.
  int err = 0;
  // kWrite only: transfer only part of the bytes asked for (a short write).
  bool short_write = false;
};

// Arms `point`: the (skip_calls + 1)-th call at `point` from now fails with
// `err`. Calls at other points are untouched. One-shot: later calls succeed.
//
// With short_write (kWrite only) the chosen call is a short write instead,
// and the next write call made by the same thread (PwriteAll's retry of the
// rest) fails with `err`; with err == 0 that retry succeeds, which must
// yield a correct file because the write helpers loop over short transfers.
// Re-arming replaces the previous configuration and resets the hit count.
void Arm(Point point, int64_t skip_calls, int err, bool short_write);
// Stops injecting. The hit count stays readable until the next Arm.
void Disarm();
// Calls seen at the armed point since the last Arm (including the failed
// one); with a huge skip_calls this counts the calls a save makes.
int64_t Hits();

// "create", "write", "sync", "rename", "close", "sync_dir" -> Point.
bool ParsePoint(const std::string& name, Point* point);

// Bytes a short write transfers out of `n` (about half, at least one).
inline size_t ShortLength(size_t n) { return n > 1 ? n / 2 : n; }

namespace internal {
extern std::atomic<bool> g_armed;
Injected InjectSlow(Point point);
}  // namespace internal

// Called by file_io.cc before each hooked system call.
inline Injected Inject(Point point) {
  if (__builtin_expect(!internal::g_armed.load(std::memory_order_relaxed), 1)) return Injected();
  return internal::InjectSlow(point);
}

}  // namespace fault
}  // namespace fastckpt
