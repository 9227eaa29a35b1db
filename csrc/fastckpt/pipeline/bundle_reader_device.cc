// BundleReader::ReadToDevice: restore into device memory through staging
// buffers. Kept apart from bundle_reader.cc, which reads into host memory.
//
// Threads: the calling thread and up to threads - 1 pool helpers
// (helper_threads.h) each take tasks until none is left; each owns its streams
// and its buffers in flight. A worker short of staging memory retires its
// own buffer in flight before it waits, so waiting workers hold nothing and
// one of them always gets a buffer (staging_pool.h): no worker waits for a
// buffer that only a waiting worker could release.
#include <algorithm>
#include <atomic>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <string>

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/dtypes.h"
#include "fastckpt/pipeline/bundle_reader.h"
#include "fastckpt/pipeline/helper_threads.h"
#include "fastckpt/pipeline/staging_pool.h"
#include "fastckpt/pipeline/task_plan.h"

namespace fastckpt {

namespace {

// Bytes read and then checksummed while still in cache.
constexpr uint64_t kReadStep = 1ull << 20;
constexpr size_t kMaxPiecesPerTask = 4096;

}  // namespace

Status BundleReader::ReadToDevice(const std::vector<DeviceReadRequest>& requests, CopyEngine* engine,
                                  const std::shared_ptr<CopyEngine>& engine_ref, int threads, int max_buffers) const {
  for (const DeviceReadRequest& r : requests) {
    if (r.entry >= entries_.size()) return InvalidArgument("no such entry");
    const BundleEntry& e = entries_[r.entry];
    if (DtypeElementSize(e.dtype) <= 0) {
      return InvalidArgument(Describe(r.entry) + " does not have a fixed-size dtype");
    }
    FASTCKPT_RETURN_IF_ERROR(CheckStoredAsIs(r.entry));
    FASTCKPT_RETURN_IF_ERROR(CheckBounds(r.entry));
    if (e.size > 0 && r.dest == 0) return InvalidArgument(Describe(r.entry) + ": null device destination");
  }
  StagingPool& pool = StagingPool::Instance();
  const uint64_t buffer_bytes = pool.buffer_bytes();

  // Work list in file order, as in Read(); a task fits one staging buffer.
  std::vector<const BundleEntry*> req_entries(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) req_entries[i] = &entries_[requests[i].entry];
  const TaskPlan plan = PlanReads(req_entries, buffer_bytes, kMaxPiecesPerTask);
  const std::vector<PlannedPiece>& pieces = plan.pieces;
  const std::vector<PlannedTask>& tasks = plan.tasks;

  std::vector<uint32_t> piece_crc(pieces.size(), 0);
  StagingQuota quota;
  quota.max_buffers = std::max(max_buffers, 1);
  std::atomic<size_t> next{0};
  std::mutex mu;
  Status first_error;
  auto fail = [&](const Status& s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      first_error.Update(s);
    }
    quota.cancelled.store(true);
    pool.Wake();
  };

  auto worker = [&]() {
    std::map<int, std::unique_ptr<CopyStream>> streams;
    struct InFlight {
      StagingBuffer buf;
      std::vector<std::pair<CopyStream*, uint64_t>> marks;
      size_t task;
    };
    std::deque<InFlight> inflight;
    auto retire = [&](InFlight& f) -> Status {
      Status st;
      for (const auto& m : f.marks) {
        Status s = m.first->WaitMark(m.second);
        if (!s.ok() && st.ok()) {
          const PlannedPiece& pc = pieces[tasks[f.task].first];
          st = s.Annotate("copying " + Describe(requests[pc.item].entry) + " to device " +
                          std::to_string(requests[pc.item].device) + " failed: ");
        }
      }
      pool.Release(&f.buf, &quota);
      return st;
    };
    Status st;
    while (st.ok() && !quota.cancelled.load()) {
      size_t t = next.fetch_add(1);
      if (t >= tasks.size()) break;
      const PlannedTask& task = tasks[t];
      InFlight f{StagingBuffer(), {}, t};
      // A new buffer is allocated in the context of the device it feeds.
      const int device = requests[pieces[task.first].item].device;
      st = pool.Acquire(engine_ref, device, &quota, &f.buf, [] { return true; });
      if (st.ok() && f.buf.data == nullptr) {
        // Short of staging memory: retire this worker's buffer in flight
        // (its copy runs on the device) instead of waiting while holding
        // it, so that every waiting worker holds nothing (staging_pool.h).
        while (st.ok() && !inflight.empty()) {
          st = retire(inflight.front());
          inflight.pop_front();
        }
        if (st.ok()) st = pool.Acquire(engine_ref, device, &quota, &f.buf);
      }
      if (!st.ok()) break;
      // Read the task's bytes (contiguous in one file) in cache-sized steps,
      // checksumming each step's pieces while hot.
      const PlannedPiece& p0 = pieces[task.first];
      const BundleEntry& e0 = entries_[requests[p0.item].entry];
      const File& file = shards_[e0.shard_id];
      const uint64_t file_off = static_cast<uint64_t>(e0.offset) + p0.offset;
      PackedPieceCursor cursor(task.first);
      for (uint64_t off = 0; off < task.bytes && st.ok();) {
        uint64_t n = std::min(kReadStep, task.bytes - off);
        st = file.PreadAll(f.buf.data + off, n, file_off + off);
        if (!st.ok()) break;
        off += n;
        WalkPackedPieces(pieces, f.buf.data, off, &cursor, [&](size_t p, const uint8_t* data, uint64_t len, bool) {
          piece_crc[p] = crc32c::Extend(piece_crc[p], data, len);
        });
      }
      // Queue the host-to-device copies of the task's pieces.
      std::map<int, bool> used;
      uint64_t off = 0;
      for (size_t i = task.first; i < task.end && st.ok(); ++i) {
        const DeviceReadRequest& r = requests[pieces[i].item];
        std::unique_ptr<CopyStream>& s = streams[r.device];
        if (!s) st = engine->NewStream(r.device, &s);
        if (st.ok()) st = s->CopyToDevice(r.dest + pieces[i].offset, f.buf.data + off, pieces[i].length);
        if (!st.ok()) {
          st = st.Annotate("copying " + Describe(r.entry) + " to device " + std::to_string(r.device) + " failed: ");
        }
        used[r.device] = true;
        off += pieces[i].length;
      }
      for (const auto& u : used) {
        uint64_t m = 0;
        if (st.ok()) st = streams[u.first]->Mark(&m);
        if (st.ok()) f.marks.emplace_back(streams[u.first].get(), m);
      }
      inflight.push_back(std::move(f));
      // Double buffering: this buffer's copy runs while the next is read.
      while (st.ok() && inflight.size() > 1) {
        st = retire(inflight.front());
        inflight.pop_front();
      }
    }
    if (!st.ok()) {
      // Nothing may still be copying out of a buffer that is released.
      for (auto& s : streams) {
        uint64_t m = 0;
        // Only draining: the stream's error, if any, was reported already.
        if (s.second->Mark(&m).ok()) s.second->WaitMark(m).IgnoreError();
      }
    }
    while (!inflight.empty()) {
      Status s = retire(inflight.front());
      if (st.ok()) st = s;
      inflight.pop_front();
    }
    if (!st.ok()) fail(st);
  };

  // Run by this thread and by each pool helper that starts (helper_threads.h):
  // whoever runs takes the tasks that are left.
  auto guarded_worker = [&]() {
    try {
      worker();
    } catch (const std::exception& e) {
      fail(Internal(std::string("reading to the device failed: ") + e.what()));
    }
  };
  size_t n = std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), std::max<size_t>(tasks.size(), 1));
  {
    HelperGroup helpers(guarded_worker);
    helpers.Request(static_cast<int>(n) - 1);
    guarded_worker();
    helpers.Join();
  }
  FASTCKPT_RETURN_IF_ERROR(first_error);

  return CheckReadCrcs(plan, req_entries, piece_crc, [&](size_t ri) { return Describe(requests[ri].entry); });
}

}  // namespace fastckpt
