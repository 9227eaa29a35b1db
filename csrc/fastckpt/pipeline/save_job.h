// One save, split into the two phases an asynchronous save needs:
//
//   Snapshot()  copies every staged byte out of the caller's arrays into
//               host staging buffers: device arrays by asynchronous
//               device-to-host copies through the copy engine, host arrays
//               (only when StagingOptions::snapshot_host) by memcpy on
//               several threads. When it returns, the caller's arrays are no
//               longer read and may change.
//   Finish()    waits until every byte is checksummed and written, writes
//               the index and commits (bundle_commit.h). A job created with
//               WriteOptions::commit false (one rank's part of a multi-rank
//               checkpoint) writes its data files, fsyncs them when durable,
//               and reports its entries and files instead; its files stay
//               open and locked (so that no stale-file cleanup removes them)
//               until Release() says how the save ended.
//
// The phases overlap: writers consume staged buffers while the snapshot
// fills others, so device-to-host copy of chunk k+1, the CRC32C of chunk k
// and its pwrite run at the same time. Buffers come from the process-wide
// StagingPool and are returned as soon as they are written; when the pool
// (the host-memory budget) or this save's quota is exhausted, the snapshot
// applies backpressure: it completes its own copies in flight, then writes
// ready tasks itself, and waits only when there is nothing left to write
// (every buffer it could get is being filled or written by a running
// thread). So a snapshot finishes even when no writer runs at all (e.g. the
// background thread that will call Finish() is busy with an earlier save).
//
// Threads: the thread calling Snapshot() fills, helped by up to
// fill_threads - 1 pool helpers; the thread calling Finish() writes, helped
// by up to threads - 1 pool helpers (helper_threads.h; StartWriting() asks for
// them early). Helpers only speed things up: every phase completes on its
// caller's thread alone.
//
// Failure: once a step fails (a write, a copy, Abort()), every thread stops
// taking new work. Finish() then waits for a snapshot that has started to
// stop (it may be copying into a staging buffer) and, if the snapshot has not
// started, claims it so that it never starts (a later Snapshot() returns the
// failure without reading the arrays). Only then are the staging buffers
// released, and every temporary file is closed and removed before Finish()
// returns, so a failed save holds no disk space, descriptor or lock.
//
// Host items that are not snapshotted are written straight from the
// caller's memory (no copy), as before; they must stay unchanged until
// Finish() returns. No thread of the job reads the caller's memory after
// Finish() has returned (success or failure), nor after the destructor.
//
// Thread-safety: Snapshot(), StartWriting(), Finish() and Abort() may be
// called from different threads (e.g. Snapshot on the caller's thread and
// Finish on a background one); each runs at most once, and a second caller of
// Snapshot() waits for the first and gets its result. Snapshot() must be
// called on the thread that owns the arrays' streams (a per-thread default
// stream is the calling thread's) and before or while Finish() runs: Finish()
// waits for it unless the job has failed. No Python is touched.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fastckpt/crc32c/crc32c_shift.h"
#include "fastckpt/device/copy_engine.h"
#include "fastckpt/io/bundle_files.h"
#include "fastckpt/pipeline/bundle_plan.h"
#include "fastckpt/pipeline/chunk_crcs.h"
#include "fastckpt/pipeline/helper_threads.h"
#include "fastckpt/pipeline/staging_pool.h"
#include "fastckpt/pipeline/write_bundle.h"

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
  static Status Create(const std::string& prefix, std::vector<WriteItem> items, const WriteOptions& options,
                       const StagingOptions& staging, std::unique_ptr<SaveJob>* out);
  // Aborts an unfinished job, waits for a running snapshot and the writers
  // to stop, releases the staging buffers and removes the temporary files.
  ~SaveJob();

  Status Snapshot();
  // Asks the pool for writer helpers now (idempotent); Finish() does it too.
  void StartWriting();
  // Writes (on this thread and helpers), then commits (or, without commit,
  // fills result->entries and result->data_files). With chunk_bytes, fills
  // result->chunk_crcs. On failure nothing is committed and the job holds no
  // file, descriptor or staging buffer.
  Status Finish(WriteResult* result);
  // After Finish() of a job that does not commit: `committed` closes the
  // data files and removes nothing (another process renamed them into
  // place; or, if it did not, they are left unlocked under their temporary
  // names for stale-file cleanup); otherwise every temporary file is removed,
  // then closed (what a failed save does). Returns a close() error (a
  // deferred write error) of a committed release. Runs once: a second call,
  // a call before Finish() has returned, or on a job that commits is
  // kFailedPrecondition. After a failed Finish() it has nothing to do. A job
  // destroyed without it releases as failed.
  Status Release(bool committed);
  // Fails the job: threads stop, Finish() returns `why`, nothing is committed.
  void Abort(const Status& why);

  SaveProgress progress() const;
  std::vector<TraceEvent> trace() const;

 private:
  SaveJob() = default;
  using StreamMap = std::map<int, std::unique_ptr<CopyStream>>;  // by device ordinal
  enum class SnapshotState { kNotStarted, kRunning, kDone };
  struct Pending;

  Status RunSnapshot();
  Status FillTasks(std::atomic<size_t>* next, StreamMap* streams);
  // Gets task t's staging buffer; short of one, completes `pending` and
  // writes ready tasks instead of waiting (see the class comment).
  Status AcquireForFill(size_t t, std::deque<Pending>* pending);
  // Waits for a fill's copies, then hands its task to the writers.
  Status CompleteFill(const Pending& p);
  // CompleteFill for each of `pending`, in order; empties it.
  Status CompletePending(std::deque<Pending>* pending);
  // Waits until the snapshot is over, or claims it if the job has failed
  // before it started. Returns its status.
  Status WaitForSnapshot();
  void WriterLoop();
  // Takes a ready task without waiting; false if there is none (or failed).
  bool TakeReady(size_t* t);
  // Writes task t, releases its buffer, starts writeback.
  Status WriteTask(size_t t);
  Status WriteDirect(size_t t);
  Status WriteStaged(size_t t);
  void ReleaseBuffers();
  std::string DescribeTask(size_t t) const;
  // The device whose context a new staging buffer of task t is allocated in:
  // the device of its first device piece, else home_device_.
  int TaskDevice(size_t t) const;
  void PushReady(size_t t);
  // The checksum of piece p (its chunk segments too when chunk_bytes > 0).
  PieceChecksum Checksum(size_t p);
  // Every data item's chunk CRCs, in key order. REQUIRES: every task written.
  void CollectChunkCrcs(WriteResult* result) const;
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
  // Per staged task, while it is in flight: touched only by the thread that
  // fills the task, then by the one that writes it (handed over through
  // ready_ under mu_), and by ReleaseBuffers once no other thread runs.
  std::vector<StagingBuffer> buffers_;
  std::vector<uint32_t> piece_crc_;
  // chunk_bytes > 0: moves a CRC past one chunk; per piece, the index of its
  // first segment in segment_crc_; the segments' CRCs (chunk_crcs.h),
  // written by the thread writing the piece, read after every write.
  std::unique_ptr<crc32c::FixedShift> shift_;
  std::vector<size_t> segment_first_;
  std::vector<uint32_t> segment_crc_;
  StagingQuota quota_;

  // The ready queue: tasks writers may take (direct ones from the start,
  // staged ones once filled).
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> ready_;           // guarded by mu_
  std::atomic<size_t> ready_count_{0};  // ready_.size(), for waits outside mu_
  size_t taken_ = 0;                   // tasks handed to writers; guarded by mu_
  Status status_;                      // first error; guarded by mu_
  SnapshotState snapshot_state_ = SnapshotState::kNotStarted;  // guarded by mu_
  Status snapshot_status_;             // guarded by mu_
  bool finish_called_ = false;         // guarded by mu_
  bool finish_done_ = false;           // Finish() has returned; guarded by mu_
  bool released_ = false;              // guarded by mu_
  std::vector<TraceEvent> trace_;      // guarded by mu_
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> staged_bytes_{0};
  std::atomic<uint64_t> written_bytes_{0};
  std::unique_ptr<HelperGroup> writers_;  // made once, by StartWriting
  std::once_flag writers_once_;
};

}  // namespace fastckpt
