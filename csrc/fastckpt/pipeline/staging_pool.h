// The process-wide pool of host staging buffers.
//
// Staged saves (device arrays, and snapshots for asynchronous saves) copy
// tensor bytes into these buffers before they are checksummed and written;
// staged restores to a device read into them before the host-to-device
// copy. The pool bounds the host memory all staging uses together (the
// host-memory budget): when it is exhausted, Acquire blocks until a buffer
// is released, which is how a checkpoint larger than the budget applies
// backpressure to the caller.
//
// Progress: a borrower that holds no buffer always gets one, even beyond
// the capacity. Without that, a borrower could wait forever for buffers
// that another borrower holds and only releases after the first one
// finishes (an asynchronous save's filled buffers are written by a
// background thread that may be busy with an earlier save). A borrower that
// holds buffers must release one itself (by writing or retiring it) rather
// than wait, or wait only while its buffers are in use by running threads;
// Acquire's stop_waiting lets it do that work instead of sleeping. So
// staging memory is bounded by the capacity plus one buffer per concurrent
// borrower (save, or restore to a device) that holds nothing else.
//
// Buffers come from the copy engine's AllocHost (page-locked, for true
// asynchronous device copies) when an engine is given, else from ordinary
// page-aligned memory. Buffers are reused across saves; free buffers beyond
// `retain_bytes` are returned to the system when released.
//
// fork(): the pool's lock is held across fork() so that a child never
// inherits it locked; buffers lent to the parent's saves stay lent (and
// unused) in the child.
//
// Thread-safety: all members may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/device/copy_engine.h"

namespace fastckpt {

// One buffer lent by the pool. Owned by the borrower until Release().
struct StagingBuffer {
  uint8_t* data = nullptr;
  size_t size = 0;
  std::shared_ptr<CopyEngine> engine;  // allocator (null: ordinary memory)
  int device = 0;                      // the device it was allocated for (engine only)
};

// A borrower's limit on buffers held at once (e.g. one save's share), and
// its cancellation flag; Acquire gives up when `cancelled` becomes true.
struct StagingQuota {
  int max_buffers = 1;
  std::atomic<int> held{0};
  std::atomic<bool> cancelled{false};
};

struct StagingPoolStats {
  uint64_t capacity_bytes = 0;
  uint64_t buffer_bytes = 0;
  uint64_t allocated_bytes = 0;       // lent + free, now
  int64_t lent = 0;                   // buffers borrowed and not yet released
  uint64_t peak_allocated_bytes = 0;
  int64_t allocations = 0;            // buffers ever allocated
  int64_t acquisitions = 0;
  int64_t waits = 0;                  // acquisitions that had to wait
};

class StagingPool {
 public:
  static StagingPool& Instance();

  // Applies to buffers allocated from now on; free buffers of another size
  // are released. capacity_bytes bounds all buffers together; at least one
  // buffer can always be allocated.
  void Configure(size_t buffer_bytes, size_t capacity_bytes, size_t retain_bytes);
  size_t buffer_bytes() const;

  // Lends a buffer of buffer_bytes() bytes, allocated by `engine` (null:
  // ordinary memory); a new one is allocated for `device` (the device the
  // caller copies with; see CopyEngine::AllocHost), a free one of the same
  // engine is reused whatever its device. Blocks while the pool or the quota
  // is exhausted (never when the quota holds no buffer; see "Progress");
  // returns kFailedPrecondition once quota->cancelled is set (then Wake()).
  // If `stop_waiting` is given and returns true when Acquire would block
  // (checked then and after every Wake() or Release()), Acquire returns Ok
  // with out->data == nullptr instead: the caller has other work to do.
  // stop_waiting runs under the pool's lock and must not call the pool.
  // REQUIRES: out->data == nullptr.
  Status Acquire(const std::shared_ptr<CopyEngine>& engine, int device, StagingQuota* quota, StagingBuffer* out,
                 const std::function<bool()>& stop_waiting = nullptr);
  void Release(StagingBuffer* buf, StagingQuota* quota);
  // Wakes every waiting Acquire, e.g. after setting a quota's cancelled flag.
  void Wake();

  // Frees every free buffer (tests; or to return memory after a burst).
  void Trim();
  StagingPoolStats stats() const;

 private:
  StagingPool() = default;
  static StagingPool* Create();
  void FreeLocked(StagingBuffer* b);
  static void LockForFork();
  static void UnlockAfterFork();
  static void ResetInChild();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  size_t buffer_bytes_ = 64u << 20;        // guarded by mu_
  size_t capacity_bytes_ = 1024ull << 20;  // guarded by mu_
  size_t retain_bytes_ = 512ull << 20;     // guarded by mu_
  std::vector<StagingBuffer> free_;        // guarded by mu_
  StagingPoolStats stats_;                 // guarded by mu_
};

}  // namespace fastckpt
