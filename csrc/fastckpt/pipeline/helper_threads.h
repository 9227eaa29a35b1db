// The process-wide pool of I/O helper threads, and ParallelFor on top of it.
//
// Model. Work always belongs to a caller: the thread that called save, load,
// verify... A caller that wants help wraps its work loop in a HelperGroup
// and asks for up to k helpers; each helper is one run of the same loop on a
// pool thread, taking items from the same shared work. The caller runs the
// loop itself too, so its work completes even when no helper ever runs (the
// pool at its cap, thread creation failing, a forked child). Join() cancels
// the helpers that have not started and waits for those that have. Helpers
// only speed the work up; nothing depends on them.
//
// Bound. The pool starts at most ThreadPoolLimit() threads in the process,
// whatever the number of concurrent calls and their `threads` arguments
// (kDefaultMaxPoolThreads, or the number of cores if larger; settable with
// SetThreadPoolLimit). Threads are started on demand, reused across calls,
// and exit after being idle for ThreadPoolIdleSeconds() (default
// kDefaultIdleSeconds). A request that finds no idle thread and the pool at
// its cap waits in a FIFO queue until a thread is free or its caller joins.
//
// Failures. Creating a thread can fail (EAGAIN: the process or the system is
// out of threads or memory). The pool then stays smaller and the request
// waits for an existing thread, or is cancelled when its caller finishes the
// work alone: a failure to create a thread is never an error and never a
// crash. Nothing here throws; a helper function that throws anyway is caught
// (and counted) so the pool thread survives.
//
// Why this cannot deadlock, however many saves, loads and verifies run at
// once and however small the cap:
//   1. A caller never waits for a helper that has not started: Join()
//      removes its queued requests, then waits only for running helpers.
//   2. A running helper runs its caller's work loop, which ends when the
//      caller's work is done or has failed. A helper may block only on
//      progress that its caller (or another thread outside the pool, or the
//      device) makes without any pool thread: e.g. a save's writer waiting
//      for the snapshot, which runs on the caller's thread and which, short
//      of staging buffers, writes ready tasks itself (save_job.h); a verify
//      task waiting for bytes that tasks already running will release. A
//      helper never waits for a queued request.
//   3. Pool threads never wait for one another and hold no lock while
//      running a helper.
// So every wait of a caller ends by (1) and (2), and a request that never
// gets a thread costs speed, not progress.
//
// fork(). The pool's lock is held across fork() (pthread_atfork), so a
// child never inherits it locked. The child has none of the parent's
// threads: its pool starts empty, with no queued requests, and a group
// created before the fork does not wait for helpers that were running in the
// parent (they do not exist in the child).
//
// Thread-safety: every function may be called from any thread, including
// from a helper (nested groups are allowed: the helper is their caller).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "fastckpt/core/status.h"

namespace fastckpt {

// The documented cap on pool threads: this, or the number of cores if that
// is larger. I/O threads beyond this do not add throughput on any storage
// fastckpt targets; the cap bounds what many concurrent calls can start.
constexpr int kDefaultMaxPoolThreads = 64;
// An idle pool thread exits after this many seconds.
constexpr double kDefaultIdleSeconds = 10.0;

namespace internal {
struct GroupState;
}  // namespace internal

// Up to k helpers running one function on pool threads, for one caller.
// Not copyable or movable; used by the thread that created it (Request and
// Join are called by that thread, while helpers run concurrently).
class HelperGroup {
 public:
  // `fn` is run once by each helper that starts. It must return when there is
  // no work left for it (see rule 2 above on what it may wait for) and must
  // not throw. It must stay callable until Join() returns.
  explicit HelperGroup(std::function<void()> fn);
  ~HelperGroup();  // Join()
  HelperGroup(const HelperGroup&) = delete;
  HelperGroup& operator=(const HelperGroup&) = delete;

  // Asks for up to n more helpers. Never blocks or fails: what the pool
  // cannot provide simply does not run. No-op after Join().
  void Request(int n);
  // Cancels the helpers that have not started, then waits for the running
  // ones to return. Afterwards fn is never called again. Idempotent.
  void Join();
  // Helpers that started (for tests and statistics).
  int started() const;

 private:
  std::shared_ptr<internal::GroupState> state_;
};

// Calls fn(i) for every i in [0, n) on up to `threads` threads: the caller's
// and up to threads - 1 pool helpers. Returns the first error; after an
// error, items not yet started are skipped. fn must be safe to call
// concurrently for distinct i; an exception escaping fn becomes kInternal.
// Blocks until every started item has finished.
Status ParallelFor(size_t n, int threads, const std::function<Status(size_t)>& fn);

// The default number of I/O threads: the hardware concurrency.
int DefaultThreads();

// The cap on pool threads. SetThreadPoolLimit(n) takes effect at once for new
// threads; threads above a lowered cap exit when they next become idle.
// n == 0 means no pool threads (every caller works alone). REQUIRES: n >= 0.
int ThreadPoolLimit();
void SetThreadPoolLimit(int n);
double ThreadPoolIdleSeconds();
// REQUIRES: seconds > 0.
void SetThreadPoolIdleSeconds(double seconds);

struct ThreadPoolStats {
  int limit = 0;
  int threads = 0;              // pool threads alive now
  int idle = 0;                 // ... of which waiting for work
  int queued = 0;               // helper requests waiting for a thread
  int peak_threads = 0;         // most pool threads alive at once, ever
  int64_t threads_started = 0;  // pool threads ever started
  int64_t threads_exited = 0;   // ... that exited (idle, or above the cap)
  int64_t create_failures = 0;  // thread creations that failed
  int64_t helpers_run = 0;      // helper runs, all groups
  int64_t helpers_cancelled = 0;  // requests cancelled by Join before they started
  int64_t exceptions = 0;       // helper functions that threw (a bug; caught)
};
ThreadPoolStats GetThreadPoolStats();

}  // namespace fastckpt
