#include "fastckpt/pipeline/save_job.h"

#include <sys/uio.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstring>
#include <map>
#include <new>
#include <set>
#include <stdexcept>

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/io/fault_injection.h"
#include "fastckpt/pipeline/chunk_crcs.h"
#include "fastckpt/pipeline/helper_threads.h"

namespace fastckpt {

namespace {

// Bytes checksummed and then written while still in cache.
constexpr uint64_t kInterleaveBytes = 1ull << 20;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Status SaveJob::Create(const std::string& prefix, std::vector<WriteItem> items, const WriteOptions& options,
                       const StagingOptions& staging, std::unique_ptr<SaveJob>* out) {
  if (prefix.empty()) return InvalidArgument("checkpoint prefix must not be empty");
  std::unique_ptr<SaveJob> job(new SaveJob());
  job->prefix_ = prefix;
  job->items_ = std::move(items);
  job->options_ = options;
  job->staging_ = staging;
  job->threads_ = options.threads > 0 ? options.threads : DefaultThreads();
  // A save that commits writes every shard of its checkpoint: with
  // total_shards given and no shard count, that count.
  if (options.commit && options.total_shards > 0 && options.num_shards == 0 && options.shard_base >= 0 &&
      options.shard_base < options.total_shards) {
    job->options_.num_shards = options.total_shards - options.shard_base;
  }
  const std::vector<WriteItem>& its = job->items_;

  bool any_device = false;
  for (const WriteItem& it : its) {
    if (!it.on_device()) continue;
    if (!any_device) job->home_device_ = it.device;
    any_device = true;
    if (it.nbytes > 0 && it.device_ptr == 0) {
      return InvalidArgument("tensor " + QuotedKey(it.key) + " has a null device pointer");
    }
  }
  if (any_device) FASTCKPT_RETURN_IF_ERROR(GetCopyEngine(&job->engine_));
  const bool staging_used = any_device || staging.snapshot_host;
  StagingPool& pool = StagingPool::Instance();
  // A staged task must fit one staging buffer.
  const uint64_t task_bytes = staging_used ? pool.buffer_bytes() : options.task_bytes;
  FASTCKPT_RETURN_IF_ERROR(PlanBundle(its, job->options_, job->threads_, task_bytes, &job->plan_));

  const BundlePlan& plan = job->plan_;
  if (options.commit && (plan.shard_base != 0 || plan.num_shards != plan.total_shards)) {
    return InvalidArgument("a save that commits must write all " + std::to_string(plan.total_shards) +
                           " shards of its checkpoint, not shards " + std::to_string(plan.shard_base) + " to " +
                           std::to_string(plan.shard_base + plan.num_shards - 1) +
                           " (a part of a checkpoint is written without committing, then committed with the "
                           "other parts)");
  }
  job->staged_.assign(plan.tasks.size(), 0);
  job->buffers_.resize(plan.tasks.size());
  for (size_t t = 0; t < plan.tasks.size(); ++t) {
    bool staged = staging.snapshot_host;
    for (size_t p = plan.tasks[t].first; p < plan.tasks[t].end && !staged; ++p) {
      staged = its[plan.pieces[p].item].on_device();
    }
    job->staged_[t] = staged;
    if (staged) {
      job->staged_list_.push_back(t);
    } else {
      job->ready_.push_back(t);
    }
  }
  // Nothing to stage: the snapshot has nothing to do, and Finish() need
  // not wait for one.
  if (job->staged_list_.empty()) job->snapshot_state_ = SnapshotState::kDone;
  job->quota_.max_buffers = staging.max_buffers > 0 ? staging.max_buffers : 3 * job->threads_;
  job->piece_crc_.assign(plan.pieces.size(), 0);
  if (options.chunk_bytes > 0) {
    const uint64_t chunk = static_cast<uint64_t>(options.chunk_bytes);
    job->shift_.reset(new crc32c::FixedShift(chunk));
    job->segment_first_.resize(plan.pieces.size());
    size_t segments = 0;
    for (size_t p = 0; p < plan.pieces.size(); ++p) {
      job->segment_first_[p] = segments;
      segments += SegmentCount(chunk, plan.pieces[p].offset, plan.pieces[p].length);
    }
    job->segment_crc_.assign(segments, 0);
  }
  FASTCKPT_RETURN_IF_ERROR(job->files_.Create(prefix, plan.shard_base, plan.num_shards, plan.total_shards));
  *out = std::move(job);
  return Status::Ok();
}

SaveJob::~SaveJob() {
  Abort(FailedPrecondition("the save was abandoned before it finished"));
  // Only the outcome matters here: the job is being destroyed unfinished.
  WaitForSnapshot().IgnoreError();
  if (writers_) writers_->Join();
  ReleaseBuffers();
  // files_'s destructor closes and removes the temporary files.
}

Status SaveJob::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void SaveJob::Abort(const Status& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_.Update(why);
    failed_.store(true);
    quota_.cancelled.store(true);
  }
  cv_.notify_all();
  StagingPool::Instance().Wake();
}

void SaveJob::Record(char kind, size_t t, int64_t begin) {
  if (!staging_.trace) return;
  std::lock_guard<std::mutex> lock(mu_);
  trace_.push_back({kind, static_cast<uint32_t>(t), begin, NowNs()});
}

std::vector<TraceEvent> SaveJob::trace() const {
  std::lock_guard<std::mutex> lock(mu_);
  return trace_;
}

SaveProgress SaveJob::progress() const {
  SaveProgress p;
  p.total_bytes = plan_.total_bytes;
  p.staged_bytes = staged_bytes_.load();
  p.written_bytes = written_bytes_.load();
  p.tasks = static_cast<int>(plan_.tasks.size());
  p.staged_tasks = static_cast<int>(staged_list_.size());
  return p;
}

int SaveJob::TaskDevice(size_t t) const {
  const PlannedTask& task = plan_.tasks[t];
  for (size_t p = task.first; p < task.end; ++p) {
    const WriteItem& it = items_[plan_.pieces[p].item];
    if (it.on_device()) return it.device;
  }
  return home_device_;
}

std::string SaveJob::DescribeTask(size_t t) const {
  const PlannedTask& task = plan_.tasks[t];
  const std::string first = QuotedKey(items_[plan_.pieces[task.first].item].key);
  std::set<uint32_t> distinct;
  for (size_t p = task.first; p < task.end; ++p) distinct.insert(plan_.pieces[p].item);
  if (distinct.size() == 1) return "tensor " + first;
  return "tensor " + first + " and " + std::to_string(distinct.size() - 1) + " more";
}

void SaveJob::PushReady(size_t t) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ready_.push_back(t);
    ready_count_.store(ready_.size());
  }
  cv_.notify_all();
  // A filler waiting for a staging buffer writes ready tasks instead.
  StagingPool::Instance().Wake();
}

bool SaveJob::TakeReady(size_t* t) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_.load() || ready_.empty()) return false;
  *t = ready_.front();
  ready_.pop_front();
  ready_count_.store(ready_.size());
  ++taken_;
  return true;
}

void SaveJob::ReleaseBuffers() {
  for (StagingBuffer& b : buffers_) StagingPool::Instance().Release(&b, &quota_);
}

// ---------------------------------------------------------------------------
// Snapshot: fill staging buffers.

Status SaveJob::Snapshot() {
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (snapshot_state_ != SnapshotState::kNotStarted) {
      cv_.wait(lock, [&] { return snapshot_state_ == SnapshotState::kDone; });
      return snapshot_status_;
    }
    if (failed_.load()) {
      // The job failed first: the snapshot never starts, and the arrays are
      // never read.
      snapshot_state_ = SnapshotState::kDone;
      snapshot_status_ = status_;
      return snapshot_status_;
    }
    snapshot_state_ = SnapshotState::kRunning;
  }
  Status st = RunSnapshot();
  // Failed first, then done: whoever waits for the snapshot sees the failure.
  if (!st.ok()) Abort(st);
  {
    std::lock_guard<std::mutex> lock(mu_);
    snapshot_state_ = SnapshotState::kDone;
    snapshot_status_ = st;
  }
  cv_.notify_all();
  return st;
}

Status SaveJob::WaitForSnapshot() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] {
    return snapshot_state_ == SnapshotState::kDone || (snapshot_state_ == SnapshotState::kNotStarted && failed_.load());
  });
  if (snapshot_state_ == SnapshotState::kNotStarted) {
    // Claimed: a later Snapshot() returns this without reading anything.
    snapshot_state_ = SnapshotState::kDone;
    snapshot_status_ = status_;
    lock.unlock();
    cv_.notify_all();
    lock.lock();
  }
  return snapshot_status_;
}

Status SaveJob::RunSnapshot() {
  if (staged_list_.empty()) return Status::Ok();
  // Device copies are only enqueued by the filler, so one thread keeps the
  // copy engine busy; host snapshots are memcpy and use every thread.
  const int fill_threads = staging_.fill_threads > 0 ? staging_.fill_threads : threads_;
  size_t fillers = staging_.snapshot_host ? static_cast<size_t>(fill_threads) : 1;
  fillers = std::min(fillers, staged_list_.size());
  // Every filler's streams are created and ordered after the callers'
  // streams here, on the calling thread: a per-thread default stream means
  // the calling thread's, and the order must be taken when save() is called.
  std::vector<StreamMap> streams(fillers);
  if (engine_) {
    std::map<int, std::set<uint64_t>> caller_streams;
    for (const WriteItem& it : items_) {
      if (it.on_device()) caller_streams[it.device].insert(it.stream);
    }
    for (StreamMap& mine : streams) {
      for (const auto& dev : caller_streams) {
        std::unique_ptr<CopyStream>& s = mine[dev.first];
        FASTCKPT_RETURN_IF_ERROR(engine_->NewStream(dev.first, &s));
        for (uint64_t caller : dev.second) FASTCKPT_RETURN_IF_ERROR(s->OrderAfter(caller));
      }
    }
  }
  std::atomic<size_t> next{0};
  std::atomic<size_t> slots{0};
  std::vector<Status> results(fillers);
  // Run by this thread and by each helper that starts: each takes the next
  // filler slot (its own streams) and fills tasks until none is left.
  auto fill = [&]() {
    const size_t f = slots.fetch_add(1);
    if (f >= fillers) return;
    try {
      results[f] = FillTasks(&next, &streams[f]);
    } catch (const std::exception& e) {
      results[f] = Internal(std::string("the snapshot failed: ") + e.what());
      Abort(results[f]);
    }
  };
  {
    HelperGroup helpers(fill);
    helpers.Request(static_cast<int>(fillers) - 1);
    fill();
    helpers.Join();
  }
  // A failure elsewhere (a write) stops the fillers early, some of them with
  // "cancelled": the job's first error is the one to report.
  Status st = status();
  for (const Status& r : results) st.Update(r);
  return st;
}

struct SaveJob::Pending {
  size_t task;
  std::vector<std::pair<CopyStream*, uint64_t>> marks;
  int64_t begin;
};

Status SaveJob::CompleteFill(const Pending& p) {
  for (const auto& m : p.marks) {
    Status s = m.first->WaitMark(m.second);
    if (!s.ok()) return s.Annotate("copying " + DescribeTask(p.task) + " from the device failed: ");
  }
  staged_bytes_.fetch_add(plan_.tasks[p.task].bytes);
  Record('f', p.task, p.begin);
  PushReady(p.task);
  return Status::Ok();
}

Status SaveJob::CompletePending(std::deque<Pending>* pending) {
  Status st;
  for (; !pending->empty(); pending->pop_front()) {
    // After an error the rest are dropped: their buffers go back when the
    // job ends, once the streams have been drained (FillTasks).
    if (st.ok()) st = CompleteFill(pending->front());
  }
  return st;
}

Status SaveJob::AcquireForFill(size_t t, std::deque<Pending>* pending) {
  StagingPool& pool = StagingPool::Instance();
  StagingBuffer& buf = buffers_[t];
  const int device = TaskDevice(t);
  auto dont_wait = [] { return true; };
  auto ready = [this] { return ready_count_.load() > 0; };
  for (;;) {
    FASTCKPT_RETURN_IF_ERROR(pool.Acquire(engine_, device, &quota_, &buf, dont_wait));
    if (buf.data != nullptr) return Status::Ok();
    // Short of staging memory. Copies this filler has in flight become
    // ready tasks once waited for; ready tasks are written here, which
    // frees their buffers.
    if (!pending->empty()) {
      FASTCKPT_RETURN_IF_ERROR(CompletePending(pending));
      continue;
    }
    size_t r;
    if (TakeReady(&r)) {
      Status st = WriteTask(r);
      if (!st.ok()) {
        Abort(st);
        return st;
      }
      continue;
    }
    // Nothing to do but wait: for a buffer, a ready task, or a failure.
    FASTCKPT_RETURN_IF_ERROR(pool.Acquire(engine_, device, &quota_, &buf, ready));
    if (buf.data != nullptr) return Status::Ok();
  }
}

Status SaveJob::FillTasks(std::atomic<size_t>* next, StreamMap* my_streams) {
  StreamMap& streams = *my_streams;  // one per device, already ordered after the callers' streams
  std::deque<Pending> pending;
  Status st;
  while (st.ok() && !failed_.load()) {
    size_t k = next->fetch_add(1);
    if (k >= staged_list_.size()) break;
    const size_t t = staged_list_[k];
    const PlannedTask& task = plan_.tasks[t];
    st = AcquireForFill(t, &pending);
    if (!st.ok()) break;
    Pending p{t, {}, NowNs()};
    StagingBuffer& buf = buffers_[t];
    fault::OnFill([this] { return failed_.load(); });  // test hook
    std::set<int> devices;
    uint64_t off = 0;
    for (size_t i = task.first; i < task.end && st.ok(); ++i) {
      const PlannedPiece& pc = plan_.pieces[i];
      const WriteItem& it = items_[pc.item];
      if (it.on_device()) {
        CopyStream* s = streams.at(it.device).get();
        st = s->CopyToHost(buf.data + off, it.device_ptr + pc.offset, pc.length);
        if (!st.ok()) {
          st = st.Annotate("copying tensor " + QuotedKey(it.key) + " from device " + std::to_string(it.device) +
                           " failed: ");
        }
        devices.insert(it.device);
      } else {
        std::memcpy(buf.data + off, it.data + pc.offset, pc.length);
      }
      off += pc.length;
    }
    for (int d : devices) {
      if (!st.ok()) break;
      uint64_t m = 0;
      st = streams[d]->Mark(&m);
      p.marks.emplace_back(streams[d].get(), m);
    }
    if (!st.ok()) break;
    if (p.marks.empty()) {
      st = CompleteFill(p);  // host bytes only: ready now
    } else {
      // Keep one task's copies in flight while the previous one is handed to
      // the writers: the copy of chunk k+1 overlaps the write of chunk k.
      pending.push_back(std::move(p));
      while (st.ok() && pending.size() > 1) {
        st = CompleteFill(pending.front());
        pending.pop_front();
      }
    }
  }
  if (st.ok()) {
    st = CompletePending(&pending);
  } else {
    pending.clear();  // never handed over; released when the job ends
  }
  if (!st.ok()) {
    // Nothing may still be copying into a buffer that will be released.
    for (auto& s : streams) {
      uint64_t m = 0;
      // Only draining: the stream's error, if any, was reported already.
      if (s.second->Mark(&m).ok()) s.second->WaitMark(m).IgnoreError();
    }
  }
  return st;
}

// ---------------------------------------------------------------------------
// Writing.

void SaveJob::StartWriting() {
  std::call_once(writers_once_, [&] {
    try {
      writers_.reset(new HelperGroup([this] { WriterLoop(); }));
    } catch (const std::bad_alloc&) {
      return;  // no helpers: the thread that calls Finish() writes alone
    }
    const size_t n = std::min<size_t>(static_cast<size_t>(threads_), std::max<size_t>(plan_.tasks.size(), 1));
    // The thread that calls Finish() is a writer too.
    writers_->Request(static_cast<int>(n) - 1);
  });
}

void SaveJob::WriterLoop() {
  const size_t total = plan_.tasks.size();
  for (;;) {
    size_t t;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return failed_.load() || !ready_.empty() || taken_ == total; });
      if (failed_.load() || ready_.empty()) return;
      t = ready_.front();
      ready_.pop_front();
      ready_count_.store(ready_.size());
      ++taken_;
    }
    Status st;
    try {
      st = WriteTask(t);
    } catch (const std::exception& e) {
      st = Internal(std::string("writing ") + DescribeTask(t) + " failed: " + e.what());
    }
    if (!st.ok()) {
      Abort(st);
      return;
    }
  }
}

Status SaveJob::WriteTask(size_t t) {
  const int64_t begin = NowNs();
  FASTCKPT_RETURN_IF_ERROR(staged_[t] ? WriteStaged(t) : WriteDirect(t));
  written_bytes_.fetch_add(plan_.tasks[t].bytes);
  // Counted before its buffer goes back, so that a snapshot that got the
  // buffer sees the bytes as written.
  if (staged_[t]) StagingPool::Instance().Release(&buffers_[t], &quota_);
  Record('w', t, begin);
  if (options_.durable) {
    // Start writeback now so that the disk works while other tasks are
    // still being copied.
    const PlannedTask& task = plan_.tasks[t];
    const uint64_t first = plan_.pieces[task.first].file_offset;
    FASTCKPT_RETURN_IF_ERROR(files_.data(task.shard).StartWriteback(first, task.bytes));
  }
  return Status::Ok();
}

// A task written straight from the caller's host memory.
Status SaveJob::WriteDirect(size_t t) {
  const PlannedTask& task = plan_.tasks[t];
  const File& file = files_.data(task.shard);
  const std::vector<PlannedPiece>& pieces = plan_.pieces;
  // A single large piece: checksum and write it in cache-sized steps.
  if (task.end - task.first == 1 && pieces[task.first].length > kInterleaveBytes) {
    const PlannedPiece& pc = pieces[task.first];
    const uint8_t* src = items_[pc.item].data + pc.offset;
    PieceChecksum crc = Checksum(task.first);
    for (uint64_t done = 0; done < pc.length;) {
      uint64_t n = std::min(kInterleaveBytes, pc.length - done);
      crc.Update(src + done, n);
      FASTCKPT_RETURN_IF_ERROR(file.PwriteAll(src + done, n, pc.file_offset + done));
      done += n;
    }
    piece_crc_[task.first] = crc.crc();
    return Status::Ok();
  }
  // A run of small pieces: checksum each, write them with one pwritev per
  // cache-sized batch.
  std::vector<struct iovec> iov;
  iov.reserve(std::min<size_t>(task.end - task.first, IOV_MAX));
  uint64_t batch_offset = pieces[task.first].file_offset;
  uint64_t batch_bytes = 0;
  for (size_t i = task.first; i < task.end; ++i) {
    const PlannedPiece& pc = pieces[i];
    const uint8_t* src = items_[pc.item].data + pc.offset;
    PieceChecksum crc = Checksum(i);
    crc.Update(src, pc.length);
    piece_crc_[i] = crc.crc();
    iov.push_back({const_cast<uint8_t*>(src), static_cast<size_t>(pc.length)});
    batch_bytes += pc.length;
    if (batch_bytes >= kInterleaveBytes || iov.size() == IOV_MAX || i + 1 == task.end) {
      FASTCKPT_RETURN_IF_ERROR(file.PwritevAll(iov.data(), static_cast<int>(iov.size()), batch_offset));
      batch_offset += batch_bytes;
      batch_bytes = 0;
      iov.clear();
    }
  }
  return Status::Ok();
}

// A task whose bytes lie in its staging buffer, packed in file order. The
// caller releases the buffer.
Status SaveJob::WriteStaged(size_t t) {
  const PlannedTask& task = plan_.tasks[t];
  const File& file = files_.data(task.shard);
  const std::vector<PlannedPiece>& pieces = plan_.pieces;
  StagingBuffer& buf = buffers_[t];
  const uint64_t file_offset = pieces[task.first].file_offset;
  // Walk the buffer in cache-sized steps: checksum the parts of the pieces
  // in the step, then write the step while it is hot.
  PackedPieceCursor cursor(task.first);
  PieceChecksum crc = Checksum(task.first);
  for (uint64_t off = 0; off < task.bytes;) {
    uint64_t n = std::min(kInterleaveBytes, task.bytes - off);
    WalkPackedPieces(pieces, buf.data, off + n, &cursor, [&](size_t p, const uint8_t* data, uint64_t len, bool done) {
      crc.Update(data, len);
      if (done) {
        piece_crc_[p] = crc.crc();
        if (p + 1 < task.end) crc = Checksum(p + 1);
      }
    });
    FASTCKPT_RETURN_IF_ERROR(file.PwriteAll(buf.data + off, n, file_offset + off));
    off += n;
  }
  return Status::Ok();
}

Status SaveJob::Finish(WriteResult* result) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finish_called_) return FailedPrecondition("the save was already finished");
    finish_called_ = true;
  }
  StartWriting();
  // This thread writes too, until every task is taken or the job failed.
  WriterLoop();
  // Then nothing of the job may still run: the snapshot (which may be
  // copying into a staging buffer, or writing a ready task) and the helpers.
  Status st = WaitForSnapshot();
  if (writers_) writers_->Join();
  ReleaseBuffers();
  st.Update(status());
  if (st.ok() && options_.durable) st = files_.SyncData(threads_);
  if (st.ok() && shift_) CollectChunkCrcs(result);
  if (st.ok() && options_.commit) {
    std::string index;
    st = BuildIndex(items_, plan_, piece_crc_, &index);
    if (st.ok()) st = files_.Commit(index, options_.durable, &result->files);
  } else if (st.ok()) {
    // A part of a multi-rank checkpoint: its entries and files go to the
    // committing process; the files stay open and locked until Release().
    result->entries.resize(plan_.order.size());
    for (size_t k = 0; k < plan_.order.size(); ++k) {
      const uint32_t i = plan_.order[k];
      result->entries[k].key = items_[i].key;
      MakeEntry(items_, plan_, piece_crc_, i, &result->entries[k].entry);
    }
    result->data_files = files_.names();
  }
  if (!st.ok()) {
    Abort(st);
    // Closes and removes every temporary file now, not when the job is
    // destroyed: a failed save holds no disk space, descriptor or lock.
    files_.Abandon();
    {
      std::lock_guard<std::mutex> lock(mu_);
      finish_done_ = true;
    }
    return st;
  }
  result->num_shards = plan_.num_shards;
  result->data_bytes = plan_.total_bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    finish_done_ = true;
  }
  return Status::Ok();
}

PieceChecksum SaveJob::Checksum(size_t p) {
  const PlannedPiece& pc = plan_.pieces[p];
  return PieceChecksum(shift_.get(), pc.offset, pc.length, shift_ ? &segment_crc_[segment_first_[p]] : nullptr);
}

void SaveJob::CollectChunkCrcs(WriteResult* result) const {
  for (uint32_t i : plan_.order) {
    const WriteItem& it = items_[i];
    if (!it.slices.empty()) continue;  // a partitioned tensor's entry has no bytes
    result->chunk_crcs.emplace_back(it.key, std::string());
    ChunkAssembler chunks(shift_.get(), it.nbytes, &result->chunk_crcs.back().second);
    for (size_t p = plan_.first_piece[i]; p < plan_.first_piece[i] + plan_.num_pieces[i]; ++p) {
      const PlannedPiece& pc = plan_.pieces[p];
      chunks.Add(pc.offset, pc.length, &segment_crc_[segment_first_[p]]);
    }
  }
}

Status SaveJob::Release(bool committed) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (options_.commit) {
      return FailedPrecondition("release() applies only to a save that does not commit (commit=False)");
    }
    if (!finish_done_) return FailedPrecondition("release() comes after finish() has returned");
    if (released_) return FailedPrecondition("the save was already released");
    released_ = true;
  }
  // After a failed Finish() the files are gone already, and both are no-ops.
  if (committed) return files_.Close();
  files_.Abandon();
  return Status::Ok();
}

}  // namespace fastckpt
