// BundleReader::ReadToDevice: restore into device memory through staging
// buffers. Kept apart from bundle_reader.cc, which reads into host memory.
#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "fastckpt/bundle_reader.h"
#include "fastckpt/crc32c.h"
#include "fastckpt/dtypes.h"
#include "fastckpt/staging_pool.h"

namespace fastckpt {

namespace {

// Bytes read and then checksummed while still in cache.
constexpr uint64_t kReadStep = 1ull << 20;
constexpr size_t kMaxPiecesPerTask = 4096;

struct DevicePiece {
  size_t req;
  uint64_t offset;  // within the tensor
  uint64_t length;
};

// Pieces [first, end): back to back in one data file, together at most one
// staging buffer.
struct DeviceTask {
  size_t first;
  size_t end;
  uint64_t bytes;
};

}  // namespace

Status BundleReader::ReadToDevice(const std::vector<DeviceReadRequest>& requests, CopyEngine* engine,
                                  const std::shared_ptr<CopyEngine>& engine_ref, int threads,
                                  int max_buffers) const {
  for (const DeviceReadRequest& r : requests) {
    if (r.entry >= entries_.size()) return InvalidArgument("no such entry");
    const BundleEntry& e = entries_[r.entry];
    if (DtypeElementSize(e.dtype) <= 0) {
      return InvalidArgument(Describe(r.entry) + " does not have a fixed-size dtype");
    }
    FASTCKPT_RETURN_IF_ERROR(CheckBounds(r.entry));
    if (e.size > 0 && r.dest == 0) return InvalidArgument(Describe(r.entry) + ": null device destination");
  }
  StagingPool& pool = StagingPool::Instance();
  const uint64_t buffer_bytes = pool.buffer_bytes();

  // Work list in file order, as in Read().
  std::vector<size_t> order(requests.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const BundleEntry& x = entries_[requests[a].entry];
    const BundleEntry& y = entries_[requests[b].entry];
    return x.shard_id != y.shard_id ? x.shard_id < y.shard_id : x.offset < y.offset;
  });
  std::vector<DevicePiece> pieces;
  std::vector<DeviceTask> tasks;
  std::vector<size_t> first_piece(requests.size(), 0), num_pieces(requests.size(), 0);
  {
    size_t batch_first = 0;
    uint64_t batch_bytes = 0;
    int32_t batch_shard = -1;
    uint64_t batch_end = 0;
    auto flush = [&]() {
      if (pieces.size() > batch_first) tasks.push_back({batch_first, pieces.size(), batch_bytes});
      batch_first = pieces.size();
      batch_bytes = 0;
      batch_shard = -1;
    };
    for (size_t ri : order) {
      const BundleEntry& e = entries_[requests[ri].entry];
      uint64_t size = static_cast<uint64_t>(e.size);
      first_piece[ri] = pieces.size();
      if (size > buffer_bytes) {
        flush();
        for (uint64_t off = 0; off < size; off += buffer_bytes) {
          pieces.push_back({ri, off, std::min(buffer_bytes, size - off)});
          batch_bytes = pieces.back().length;
          flush();
        }
      } else if (size > 0) {
        bool adjacent = batch_shard == e.shard_id && batch_end == static_cast<uint64_t>(e.offset);
        if (!adjacent || batch_bytes + size > buffer_bytes || pieces.size() - batch_first >= kMaxPiecesPerTask) {
          flush();
        }
        pieces.push_back({ri, 0, size});
        batch_shard = e.shard_id;
        batch_end = static_cast<uint64_t>(e.offset) + size;
        batch_bytes += size;
      }
      num_pieces[ri] = pieces.size() - first_piece[ri];
    }
    flush();
  }

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
          const DevicePiece& pc = pieces[tasks[f.task].first];
          st = Status(s.code(), "copying " + Describe(requests[pc.req].entry) + " to device " +
                                    std::to_string(requests[pc.req].device) + " failed: " + s.message());
        }
      }
      pool.Release(&f.buf, &quota);
      return st;
    };
    Status st;
    while (st.ok() && !quota.cancelled.load()) {
      size_t t = next.fetch_add(1);
      if (t >= tasks.size()) break;
      const DeviceTask& task = tasks[t];
      InFlight f{StagingBuffer(), {}, t};
      st = pool.Acquire(engine_ref, &quota, &f.buf);
      if (!st.ok()) break;
      // Read the task's bytes (contiguous in one file) in cache-sized steps,
      // checksumming each step's pieces while hot.
      const DevicePiece& p0 = pieces[task.first];
      const BundleEntry& e0 = entries_[requests[p0.req].entry];
      const File& file = shards_[e0.shard_id];
      const uint64_t file_off = static_cast<uint64_t>(e0.offset) + p0.offset;
      size_t p = task.first;
      uint64_t piece_begin = 0, covered = 0;
      for (uint64_t off = 0; off < task.bytes && st.ok();) {
        uint64_t n = std::min(kReadStep, task.bytes - off);
        st = file.PreadAll(f.buf.data + off, n, file_off + off);
        if (!st.ok()) break;
        off += n;
        while (covered < off) {
          uint64_t piece_end = piece_begin + pieces[p].length;
          uint64_t upto = std::min(piece_end, off);
          piece_crc[p] = crc32c::Extend(piece_crc[p], f.buf.data + covered, upto - covered);
          covered = upto;
          if (covered == piece_end) {
            ++p;
            piece_begin = piece_end;
          }
        }
      }
      // Queue the host-to-device copies of the task's pieces.
      std::map<int, bool> used;
      uint64_t off = 0;
      for (size_t i = task.first; i < task.end && st.ok(); ++i) {
        const DeviceReadRequest& r = requests[pieces[i].req];
        std::unique_ptr<CopyStream>& s = streams[r.device];
        if (!s) st = engine->NewStream(r.device, &s);
        if (st.ok()) st = s->CopyToDevice(r.dest + pieces[i].offset, f.buf.data + off, pieces[i].length);
        if (!st.ok()) {
          st = Status(st.code(), "copying " + Describe(r.entry) + " to device " + std::to_string(r.device) +
                                     " failed: " + st.message());
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
        if (s.second->Mark(&m).ok()) s.second->WaitMark(m);
      }
    }
    while (!inflight.empty()) {
      Status s = retire(inflight.front());
      if (st.ok()) st = s;
      inflight.pop_front();
    }
    if (!st.ok()) fail(st);
  };

  size_t n = std::min<size_t>(static_cast<size_t>(std::max(threads, 1)), std::max<size_t>(tasks.size(), 1));
  std::vector<std::thread> helpers;
  for (size_t i = 1; i < n; ++i) helpers.emplace_back(worker);
  worker();
  for (std::thread& h : helpers) h.join();
  FASTCKPT_RETURN_IF_ERROR(first_error);

  for (size_t ri = 0; ri < requests.size(); ++ri) {
    uint32_t crc = 0;
    if (num_pieces[ri] > 0) {
      crc = piece_crc[first_piece[ri]];
      for (size_t p = first_piece[ri] + 1; p < first_piece[ri] + num_pieces[ri]; ++p) {
        crc = crc32c::Combine(crc, piece_crc[p], pieces[p].length);
      }
    }
    const BundleEntry& e = entries_[requests[ri].entry];
    if (crc != crc32c::Unmask(e.masked_crc32c)) {
      return DataLoss(Describe(requests[ri].entry) + ": data checksum mismatch (the file is corrupt)");
    }
  }
  return Status::Ok();
}

}  // namespace fastckpt
