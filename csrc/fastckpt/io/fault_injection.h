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
#include <functional>
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
// Stops injecting (the fill delay and thread failures below too). The hit
// count stays readable until the next Arm.
void Disarm();
// Calls seen at the armed point since the last Arm (including the failed
// one); with a huge skip_calls this counts the calls a save makes.
int64_t Hits();

// "create", "write", "sync", "rename", "close", "sync_dir" -> Point.
bool ParsePoint(const std::string& name, Point* point);

// Bytes a short write transfers out of `n` (about half, at least one).
inline size_t ShortLength(size_t n) { return n > 1 ? n / 2 : n; }

// -- The snapshot's fills (save_job.cc) ---------------------------------------
//
// A failure racing a snapshot (a write fails while the snapshot is still
// copying into a staging buffer) is a window of microseconds in a real save.
// This hook makes it deterministic: the (skip_fills + 1)-th fill of a
// staging buffer, after the buffer was acquired and before any byte is
// copied into it, waits until the save has failed (for at most `wait_ms`),
// then sleeps `delay_ms` more and goes on copying. Meanwhile the rest of the
// job runs its failure path with this fill still in progress. One-shot;
// Disarm() disarms it too.
void ArmFillDelay(int64_t skip_fills, int64_t wait_ms, int64_t delay_ms);

struct FillDelayState {
  int64_t fills = 0;      // fills seen since ArmFillDelay
  bool started = false;   // the chosen fill has begun waiting
  bool saw_failure = false;  // ... and the save had failed when it stopped waiting
  bool finished = false;  // ... and has returned to its copy
};
FillDelayState GetFillDelayState();

// -- Thread creation (helper_threads.cc, simulated_copy_engine.cc) -------------
//
// After `skip` more thread creations succeed, the next `count` (-1: every
// one until Disarm) fail with EAGAIN, as pthread_create fails when the
// process is out of threads or memory.
void ArmThreadFailures(int64_t skip, int64_t count);
// Thread creations refused by the hook since ArmThreadFailures.
int64_t ThreadFailures();

namespace internal {
extern std::atomic<bool> g_armed;
extern std::atomic<bool> g_fill_armed;
extern std::atomic<bool> g_thread_armed;
Injected InjectSlow(Point point);
void FillSlow(const std::function<bool()>& failed);
bool ThreadSlow();
}  // namespace internal

// Called by file_io.cc before each hooked system call.
inline Injected Inject(Point point) {
  if (__builtin_expect(!internal::g_armed.load(std::memory_order_relaxed), 1)) return Injected();
  return internal::InjectSlow(point);
}

// Called by the snapshot after it acquired a fill's staging buffer, before
// copying into it; failed() says whether the save has failed. (A template,
// so that a disarmed hook builds no std::function.)
template <typename Failed>
inline void OnFill(const Failed& failed) {
  if (__builtin_expect(!internal::g_fill_armed.load(std::memory_order_relaxed), 1)) return;
  internal::FillSlow(std::function<bool()>(failed));
}

// Called before each thread creation: true means "fail it with EAGAIN".
inline bool InjectThreadFailure() {
  if (__builtin_expect(!internal::g_thread_armed.load(std::memory_order_relaxed), 1)) return false;
  return internal::ThreadSlow();
}

}  // namespace fault
}  // namespace fastckpt
