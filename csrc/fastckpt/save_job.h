// One save, split into the two phases an asynchronous save needs:
//
//   Snapshot()  copies every staged byte out of the caller's arrays into
//               host staging buffers: device arrays by asynchronous
//               device-to-host copies through the copy engine, host arrays
//               (only when StagingOptions::snapshot_host) by memcpy on
//               several threads. When it returns, the caller's arrays are no
//               longer read and may change.
//   Finish()    waits until every byte is checksummed and written, writes
//               the index and commits (bundle_files.h), on writer threads.
//
// The phases overlap: writer threads (StartWriting) consume staged buffers
// while the snapshot fills others, so device-to-host copy of chunk k+1, the
// CRC32C of chunk k and its pwrite run at the same time. Buffers come from
// the process-wide StagingPool and are returned as soon as they are written;
// when the pool (the host-memory budget) or this save's quota is exhausted,
// Snapshot() waits for writes to free a buffer: backpressure.
//
// Host items that are not snapshotted are written straight from the
// caller's memory (no copy), as before; they must stay unchanged until
// Finish() returns.
//
// Thread-safety: Snapshot(), StartWriting(), Finish() and Abort() may be
// called from different threads (e.g. Snapshot on the caller's thread and
// Finish on a background one); each runs at most once, and a second caller of
// Snapshot() waits for the first and gets its result. Snapshot() must be
// called on the thread that owns the arrays' streams (a per-thread default
// stream is the calling thread's) and before or while Finish() runs: Finish()
// waits for it. No Python is touched.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fastckpt/bundle_files.h"
#include "fastckpt/bundle_plan.h"
#include "fastckpt/bundle_writer.h"
#include "fastckpt/copy_engine.h"
#include "fastckpt/staging_pool.h"

namespace fastckpt {

struct StagingOptions {
  // Copy host items into staging buffers during Snapshot() (asynchronous
  // saves) instead of writing them from the caller's memory.
  bool snapshot_host = false;
  // Most staging buffers this save holds at once (0: 3 per writer thread).
  int max_buffers = 0;
  // Threads copying host arrays during Snapshot() (0: the writer threads'
  // count). An asynchronous save snapshots with every core (the caller is
  // waiting) and then writes with fewer, leaving a core to the caller.
  int fill_threads = 0;
  // Record a timeline of fills and writes (tests of the pipeline's overlap).
  bool trace = false;
};

struct SaveProgress {
  uint64_t total_bytes = 0;
  uint64_t staged_bytes = 0;   // copied into staging buffers
  uint64_t written_bytes = 0;  // written to the data files
  int tasks = 0;
  int staged_tasks = 0;
};

// One step of the pipeline, for StagingOptions::trace.
struct TraceEvent {
  char kind;      // 'f': a task's buffer filled (copies done); 'w': a task written
  uint32_t task;
  int64_t begin_ns;
  int64_t end_ns;
};

class SaveJob {
 public:
  // Plans the bundle and creates its temporary files. Items are copied; the
  // memory they point to must outlive the job (see the class comment for
  // when it may change). Device items need a copy engine (GetCopyEngine).
  static Status Create(const std::string& prefix, std::vector<WriteItem> items,
                       const WriteOptions& options, const StagingOptions& staging,
                       std::unique_ptr<SaveJob>* out);
  ~SaveJob();  // aborts an unfinished job and joins its threads

  Status Snapshot();
  void StartWriting();
  Status Finish(WriteResult* result);
  // Fails the job: threads stop, Finish() returns `why`, nothing is committed.
  void Abort(const Status& why);

  SaveProgress progress() const;
  std::vector<TraceEvent> trace() const;

 private:
  SaveJob() = default;
  using StreamMap = std::map<int, std::unique_ptr<CopyStream>>;  // by device ordinal
  Status RunSnapshot();
  Status FillTasks(std::atomic<size_t>* next, StreamMap* streams);
  void WriterLoop();
  Status WriteDirect(size_t t);
  Status WriteStaged(size_t t);
  std::string DescribeTask(size_t t) const;
  // The device whose context a new staging buffer of task t is allocated in:
  // the device of its first device piece, else home_device_.
  int TaskDevice(size_t t) const;
  void PushReady(size_t t);
  void Record(char kind, size_t t, int64_t begin);
  Status status() const;

  std::string prefix_;
  std::vector<WriteItem> items_;
  WriteOptions options_;
  StagingOptions staging_;
  int threads_ = 1;
  BundlePlan plan_;
  BundleFiles files_;
  std::shared_ptr<CopyEngine> engine_;  // null when no item is on a device
  int home_device_ = 0;                 // device of the first device item
  std::vector<uint8_t> staged_;         // per task: goes through a staging buffer
  std::vector<size_t> staged_list_;     // staged tasks, in plan order
  std::vector<StagingBuffer> buffers_;  // per staged task, while it is in flight
  std::vector<uint32_t> piece_crc_;
  StagingQuota quota_;

  // The ready queue: tasks writers may take (direct ones from the start,
  // staged ones once filled).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> ready_;           // guarded by mu_
  size_t taken_ = 0;                   // tasks handed to writers; guarded by mu_
  Status status_;                      // first error; guarded by mu_
  bool snapshot_started_ = false;      // guarded by mu_
  bool snapshot_done_ = false;         // guarded by mu_
  Status snapshot_status_;             // guarded by mu_
  std::vector<TraceEvent> trace_;      // guarded by mu_
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> staged_bytes_{0};
  std::atomic<uint64_t> written_bytes_{0};
  std::vector<std::thread> writers_;   // started once, by StartWriting
  std::once_flag writers_once_;
  bool finished_ = false;
};

}  // namespace fastckpt
