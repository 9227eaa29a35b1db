// BundleReader::Verify(): checks a whole checkpoint without keeping its data.
//
// Verification is a separate concern from reading (Read() fills caller
// buffers and stops at the first bad tensor; Verify() owns its buffers,
// keeps going and reports every bad tensor), so it lives in its own file.
//
// Plan: every data entry becomes one or more segments (file ranges whose
// CRC32C is computed); segments are grouped into tasks of at most
// chunk_bytes of one file (task_plan.h), which ParallelFor runs. A task streams its range
// through a small per-thread scratch buffer, extending each segment's CRC
// as its bytes pass; a tensor split over several tasks gets its CRC joined
// with crc32c::Combine afterwards, as Read() does. String and variant
// tensors cannot be checked in pieces with the decoders we share with the
// reader, so they are read whole under a byte budget.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <limits>
#include <memory>
#include <mutex>
#include <new>

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/coding.h"
#include "fastckpt/format/dtypes.h"
#include "fastckpt/format/naming.h"
#include "fastckpt/format/slice_key.h"
#include "fastckpt/format/string_tensor.h"
#include "fastckpt/pipeline/bundle_reader.h"
#include "fastckpt/pipeline/helper_threads.h"
#include "fastckpt/pipeline/task_plan.h"

namespace fastckpt {

namespace {

constexpr uint64_t kDefaultChunkBytes = 8ull << 20;
constexpr uint64_t kMinChunkBytes = 4096;
// Reads are issued in steps of this size so that each step is checksummed
// while it is still in L2 cache (the same reasoning as Read()'s interleave).
constexpr uint64_t kStepBytes = 1ull << 20;
// Small tensors separated by at most this many unreferenced bytes (e.g.
// TensorFlow's data_alignment padding) share one read; a larger gap is
// cheaper to skip than to read.
constexpr uint64_t kMaxGapBytes = 64ull << 10;
// String/variant tensors read whole at the same time share this budget, so
// that many threads decoding big string tensors cannot multiply memory use.
// A single larger tensor still runs (alone).
constexpr uint64_t kWholeReadBudget = 1ull << 30;

constexpr size_t kNoOwner = std::numeric_limits<size_t>::max();

unsigned __int128 NumElements(const std::vector<int64_t>& shape) {
  unsigned __int128 n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);  // bounded by Open's validation
  return n;
}

std::string CrcMismatch(uint32_t stored, uint32_t computed) {
  char buf[96];
  std::snprintf(buf, sizeof(buf), "data checksum mismatch (stored CRC32C %08x, computed %08x)", stored, computed);
  return buf;
}

// TensorFlow's WriteVariantTensor layout: per element, a varint64 length,
// the serialized VariantTensorDataProto and the masked running CRC so far.
// The running CRC covers each length as a little-endian uint64 (not its
// varint bytes), the element bytes and each stored checksum; its final
// value is the entry's CRC. Returns "" when the tensor is intact.
std::string CheckVariantTensor(const char* buf, size_t size, uint64_t num_elements, uint32_t masked_crc) {
  const char* p = buf;
  const char* limit = buf + size;
  uint32_t crc = 0;
  for (uint64_t i = 0; i < num_elements; ++i) {
    const std::string element = "variant element " + std::to_string(i);
    uint64_t len;
    p = GetVarint64(p, limit, &len);
    if (p == nullptr) return element + ": malformed length";
    if (len > static_cast<uint64_t>(limit - p) || static_cast<uint64_t>(limit - p) - len < 4) {
      return element + ": truncated";
    }
    std::string len64;
    PutFixed64(&len64, len);
    crc = crc32c::Extend(crc, len64.data(), len64.size());
    crc = crc32c::Extend(crc, p, len);
    p += len;
    if (crc32c::Unmask(DecodeFixed32(p)) != crc) return element + ": checksum mismatch";
    crc = crc32c::Extend(crc, p, 4);
    p += 4;
  }
  if (p != limit) return std::to_string(limit - p) + " bytes follow the last variant element";
  if (crc != crc32c::Unmask(masked_crc)) return CrcMismatch(crc32c::Unmask(masked_crc), crc);
  return "";
}

// Blocks Acquire() callers while the bytes in use would exceed the limit;
// one caller may always proceed when nothing is in use, so a request larger
// than the limit runs alone instead of deadlocking.
class ByteBudget {
 public:
  explicit ByteBudget(uint64_t limit) : limit_(limit) {}

  void Acquire(uint64_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return in_use_ == 0 || in_use_ + n <= limit_; });
    in_use_ += n;
  }

  void Release(uint64_t n) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      in_use_ -= n;
    }
    cv_.notify_all();
  }

 private:
  const uint64_t limit_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t in_use_ = 0;
};

// Scratch buffers handed to tasks: at most one per concurrently running
// task (so per thread), reused across tasks. ParallelFor has no thread ids,
// and thread_local buffers would outlive the call on the caller's thread.
class ScratchPool {
 public:
  explicit ScratchPool(size_t size) : size_(size) {}

  std::unique_ptr<char[]> Take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        std::unique_ptr<char[]> b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
    }
    return std::unique_ptr<char[]>(new (std::nothrow) char[size_]);
  }

  void Give(std::unique_ptr<char[]> b) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(b));
  }

 private:
  const size_t size_;
  std::mutex mu_;
  std::vector<std::unique_ptr<char[]>> free_;
};

Status OutOfMemory(uint64_t bytes, const std::string& what) {
  return Status::OsError(StatusCode::kIOError, "cannot allocate " + std::to_string(bytes) + " bytes to verify " + what,
                         ENOMEM, "");
}

// One unit of parallel work: a task of the plan (pieces read as its file
// range), or (whole) one string/variant entry.
struct Task {
  bool whole = false;
  size_t entry = 0;    // whole tasks
  size_t planned = 0;  // the others: index into TaskPlan::tasks
};

}  // namespace

Status BundleReader::Verify(int threads, uint64_t chunk_bytes, VerifyReport* report) const {
  const auto start_time = std::chrono::steady_clock::now();
  *report = VerifyReport();
  if (threads < 1) threads = DefaultThreads();
  if (chunk_bytes == 0) chunk_bytes = kDefaultChunkBytes;
  chunk_bytes = std::max(chunk_bytes, kMinChunkBytes);
  const uint64_t step_bytes = std::min(chunk_bytes, kStepBytes);
  const std::string index_name = IndexFilename(prefix_);
  const size_t n = entries_.size();

  // Per entry: why it is bad ("" = good so far). Workers write under mu.
  std::vector<std::string> reason(n);
  std::mutex mu;
  auto mark_bad = [&](size_t i, const std::string& why) {
    std::lock_guard<std::mutex> lock(mu);
    if (reason[i].empty()) reason[i] = why;
  };
  // Slice entries are reported under their partitioned tensor's name.
  std::vector<size_t> owner(n, kNoOwner);
  std::vector<std::string> slice_label(n);
  std::vector<VerifyProblem> index_problems;

  // 0. Data files that could not be opened: nothing to check them against.
  FASTCKPT_RETURN_IF_ERROR(ShardOpenErrors());

  // 1. Partitioned tensors, through the same checks get_tensor makes
  // (Partition, CheckSliceEntry): the slices lie in the tensor, do not
  // overlap and cover it, and each has an entry of the slice's shape and the
  // tensor's dtype.
  for (size_t i = 0; i < n; ++i) {
    const BundleEntry& e = entries_[i];
    if (IsSliceKey(keys_[i])) continue;  // a slice entry with slices is its owner's problem (below)
    ++report->tensors;
    if (e.slices.empty()) continue;
    auto problem = [&](const std::string& why) { index_problems.push_back({keys_[i], true, index_name, why}); };
    const PartitionInfo& info = Partition(i);
    if (!info.status.ok()) {
      problem(info.status.message());
    } else if (!info.covers) {
      problem("its " + std::to_string(e.slices.size()) + " slices hold " + std::to_string(info.held) +
              " elements, the tensor has " + std::to_string(static_cast<uint64_t>(NumElements(e.shape))));
    }
    for (size_t k = 0; k < e.slices.size(); ++k) {
      Status st = CheckSliceEntry(i, k);
      if (!st.ok()) problem(st.message());
      const int64_t j = info.slice_entry[k];
      if (j >= 0 && owner[j] == kNoOwner) {
        owner[j] = i;
        slice_label[j] = "slice '" + FormatSliceSpec(e.slices[k]) + "'";
      }
    }
  }

  // 2. Data entries: bounds now; plan the reads.
  std::vector<size_t> whole;  // string/variant entries, decoded whole
  std::vector<size_t> flat;   // every other entry: CRC over its file bytes
  std::vector<bool> shard_used(shards_.size(), false);
  for (size_t i = 0; i < n; ++i) {
    const BundleEntry& e = entries_[i];
    if (!e.slices.empty()) continue;
    ++report->entries;
    shard_used[e.shard_id] = true;
    const uint64_t offset = static_cast<uint64_t>(e.offset), size = static_cast<uint64_t>(e.size);
    const uint64_t fsize = shard_sizes_[e.shard_id];
    if (offset > fsize || offset + size > fsize) {
      reason[i] = "bytes [" + std::to_string(offset) + ", " + std::to_string(offset + size) +
                  ") lie past the end of the file (" + std::to_string(fsize) + " bytes; truncated file?)";
      continue;
    }
    if (DtypeElementSize(e.dtype) < 0) {
      // No reader can interpret its bytes (Read() refuses it): not read.
      reason[i] = "has DataType " + std::to_string(e.dtype) + ", which no checkpoint tensor can have";
      continue;
    }
    report->bytes += size;
    if (e.dtype == kDtString || e.dtype == kDtVariant) {
      whole.push_back(i);
      report->largest_whole_read = std::max(report->largest_whole_read, size);
    } else {
      // Unknown dtypes are checked too: TensorFlow checksums the raw bytes
      // of every type other than string and variant.
      flat.push_back(i);
    }
  }
  report->files = static_cast<uint64_t>(std::count(shard_used.begin(), shard_used.end(), true));

  std::vector<Task> tasks;
  // Biggest whole reads first: they are the long poles.
  std::sort(whole.begin(), whole.end(), [&](size_t a, size_t b) {
    return entries_[a].size != entries_[b].size ? entries_[a].size > entries_[b].size : a < b;
  });
  for (size_t i : whole) {
    Task t;
    t.whole = true;
    t.entry = i;
    tasks.push_back(t);
  }
  std::sort(flat.begin(), flat.end(), [&](size_t a, size_t b) {
    const BundleEntry& x = entries_[a];
    const BundleEntry& y = entries_[b];
    if (x.shard_id != y.shard_id) return x.shard_id < y.shard_id;
    return x.offset != y.offset ? x.offset < y.offset : a < b;
  });
  // Pieces are the file ranges whose CRC32C is computed: all of a small
  // tensor, or one chunk of a large one (one task each, CRCs combined
  // afterwards). Small tensors separated by small gaps share a task.
  std::vector<Extent> extents;
  extents.reserve(flat.size());
  for (size_t i : flat) {
    const BundleEntry& e = entries_[i];
    extents.push_back({i, e.shard_id, static_cast<uint64_t>(e.offset), static_cast<uint64_t>(e.size)});
  }
  TaskLimits limits;
  limits.task_bytes = chunk_bytes;
  limits.max_gap = kMaxGapBytes;
  TaskPlan plan;
  PlanTasks(extents, n, limits, &plan);
  const std::vector<PlannedPiece>& segments = plan.pieces;
  for (size_t k = 0; k < plan.tasks.size(); ++k) {
    Task t;
    t.planned = k;
    tasks.push_back(t);
  }

  // 3. Read and checksum.
  std::vector<uint32_t> segment_crc(segments.size(), 0);
  ScratchPool scratch(static_cast<size_t>(step_bytes));
  ByteBudget budget(kWholeReadBudget);
  // A short read means the file shrank after Open(): that is damage to the
  // tensors being read, not a reason to stop checking the others.
  auto read_failed = [&](const Status& s, size_t first_entry_segment, size_t last_segment) {
    for (size_t k = first_entry_segment; k < last_segment; ++k) {
      mark_bad(segments[k].item, "read failed: " + s.message());
    }
  };

  auto segment_end = [&](size_t k) { return segments[k].file_offset + segments[k].length; };

  Status status = ParallelFor(tasks.size(), threads, [&](size_t ti) -> Status {
    const Task& t = tasks[ti];
    if (t.whole) {
      const BundleEntry& e = entries_[t.entry];
      const uint64_t size = static_cast<uint64_t>(e.size);
      budget.Acquire(size);
      struct Release {
        ByteBudget* b;
        uint64_t n;
        ~Release() { b->Release(n); }
      } release{&budget, size};
      std::unique_ptr<char[]> buf(new (std::nothrow) char[size == 0 ? 1 : size]);
      if (!buf) return OutOfMemory(size, Describe(t.entry));
      Status rs = shards_[e.shard_id].PreadAll(buf.get(), size, static_cast<uint64_t>(e.offset));
      CountBytes(size);
      if (rs.code() == StatusCode::kDataLoss) {
        mark_bad(t.entry, "read failed: " + rs.message());
        return Status::Ok();
      }
      FASTCKPT_RETURN_IF_ERROR(rs);
      const uint64_t num_elements = static_cast<uint64_t>(NumElements(e.shape));
      if (e.dtype == kDtString) {
        std::vector<std::pair<size_t, size_t>> spans;
        Status ds = DecodeStringTensor(buf.get(), size, num_elements, e.masked_crc32c, "", &spans);
        if (!ds.ok()) {
          // The decoder prefixes its message with the (here empty) description.
          std::string why = ds.message();
          if (why.compare(0, 2, ": ") == 0) why.erase(0, 2);
          mark_bad(t.entry, why);
        }
      } else {
        std::string why = CheckVariantTensor(buf.get(), size, num_elements, e.masked_crc32c);
        if (!why.empty()) mark_bad(t.entry, why);
      }
      return Status::Ok();
    }

    const PlannedTask& pt = plan.tasks[t.planned];
    std::unique_ptr<char[]> buf = scratch.Take();
    if (!buf) return OutOfMemory(step_bytes, "'" + shards_[pt.shard].path() + "'");
    const File& file = shards_[pt.shard];
    size_t active = pt.first;  // segments before this one are finished
    for (uint64_t pos = pt.file_begin; pos < pt.file_end;) {
      const uint64_t len = std::min(step_bytes, pt.file_end - pos);
      const uint64_t step_end = pos + len;
      Status rs = file.PreadAll(buf.get(), len, pos);
      if (!rs.ok()) {
        scratch.Give(std::move(buf));
        if (rs.code() != StatusCode::kDataLoss) return rs;
        read_failed(rs, active, pt.end);
        return Status::Ok();
      }
      // Segments are sorted by start; an overlapping (corrupt) index only
      // means some segments are visited without contributing bytes.
      for (size_t k = active; k < pt.end && segments[k].file_offset < step_end; ++k) {
        const uint64_t lo = std::max(segments[k].file_offset, pos);
        const uint64_t hi = std::min(segment_end(k), step_end);
        if (lo < hi) segment_crc[k] = crc32c::Extend(segment_crc[k], buf.get() + (lo - pos), hi - lo);
      }
      while (active < pt.end && segment_end(active) <= step_end) ++active;
      CountBytes(len);
      pos = step_end;
    }
    scratch.Give(std::move(buf));
    return Status::Ok();
  });

  // 4. Join chunk CRCs and compare.
  for (size_t i : flat) {
    if (!reason[i].empty()) continue;
    const uint32_t crc = JoinPieceCrcs(plan, segment_crc, i);
    const uint32_t stored = crc32c::Unmask(entries_[i].masked_crc32c);
    if (crc != stored) reason[i] = CrcMismatch(stored, crc);
  }

  for (size_t i = 0; i < n; ++i) {
    if (reason[i].empty()) continue;
    const BundleEntry& e = entries_[i];
    VerifyProblem p;
    p.file = DataFilename(prefix_, e.shard_id, header_.num_shards);
    if (owner[i] != kNoOwner) {
      p.key = keys_[owner[i]];
      p.reason = slice_label[i] + ": " + reason[i];
    } else if (IsSliceKey(keys_[i])) {
      // A slice entry no tensor lists: readers never use it, but its bytes
      // are damaged. Named by the tensor and slice its key encodes; it is
      // no part of that tensor's data, so not counted as a damaged tensor.
      std::string name;
      TensorSlice slice;
      p.listed = false;
      if (DecodeSliceKey(keys_[i], &name, &slice)) {
        p.key = name;
        p.reason = "slice '" + FormatSliceSpec(slice) + "' (an entry the tensor does not list): " + reason[i];
      } else {
        p.key = PrintableKey(keys_[i]);
        p.reason = "malformed slice key: " + reason[i];
      }
    } else {
      p.key = keys_[i];
      p.reason = reason[i];
    }
    report->bad.push_back(std::move(p));
  }
  for (VerifyProblem& p : index_problems) report->bad.push_back(std::move(p));
  std::stable_sort(report->bad.begin(), report->bad.end(),
                   [](const VerifyProblem& a, const VerifyProblem& b) { return a.key < b.key; });
  report->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
  return status;
}

}  // namespace fastckpt
