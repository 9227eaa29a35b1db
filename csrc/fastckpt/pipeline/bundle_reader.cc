#include "fastckpt/pipeline/bundle_reader.h"

#include <sys/uio.h>

#include <algorithm>
#include <climits>
#include <cstdio>

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/dtypes.h"
#include "fastckpt/format/naming.h"
#include "fastckpt/format/slice_key.h"
#include "fastckpt/format/slice_set.h"
#include "fastckpt/format/table_reader.h"
#include "fastckpt/pipeline/helper_threads.h"
#include "fastckpt/pipeline/task_plan.h"

namespace fastckpt {

namespace {

// Read then checksum in L2-sized steps (256 KiB measured ~5% less CPU than 1 MiB).
constexpr uint64_t kInterleaveBytes = 256ull << 10;
constexpr size_t kMaxRequestsPerTask = 1024;

// TensorFlow's own header values (tensor_bundle.h): this reader is consumer
// version 1 and accepts producers >= 0.
constexpr int32_t kConsumerVersion = 1;

Status ValidateEntry(const std::string& key, const BundleEntry& e, int32_t num_shards, const std::string& index_name,
                     bool compressed) {
  auto bad = [&](const std::string& why) {
    return DataLoss("corrupt index file '" + index_name + "': entry '" + PrintableKey(key) + "' " + why);
  };
  // Unknown dtypes are only an error when the tensor is read, so that a
  // checkpoint holding one can still be listed.
  int elem = DtypeElementSize(e.dtype);
  // Bytes of the product of the non-zero dimensions are bounded too (below
  // 2^62): a zero-size tensor of shape [0, 2^62] is no more representable as
  // an array than a full one. String and variant elements are held as
  // 8-byte object references by any reader, so they count 8 bytes here.
  const unsigned held = (e.dtype == kDtString || e.dtype == kDtVariant) ? 8 : (elem > 1 ? elem : 1);
  unsigned __int128 numel = 1, nonzero_bytes = held;
  const unsigned __int128 limit = static_cast<unsigned __int128>(1) << 62;
  for (int64_t d : e.shape) {
    numel *= static_cast<uint64_t>(d);
    if (d > 0) nonzero_bytes *= static_cast<uint64_t>(d);
    if (numel > limit || nonzero_bytes > limit) return bad("has an impossible shape");
  }
  if (!e.slices.empty()) {
    for (const TensorSlice& s : e.slices) {
      if (s.size() != e.shape.size()) return bad("has a slice whose rank differs from its shape");
      for (size_t d = 0; d < s.size(); ++d) {
        if (s[d].length >= 0 && (s[d].start > e.shape[d] || s[d].length > e.shape[d] - s[d].start)) {
          return bad("has a slice outside its shape");
        }
      }
    }
    return Status::Ok();
  }
  if (e.shard_id < 0 || e.shard_id >= num_shards) {
    return bad("names shard " + std::to_string(e.shard_id) + " of " + std::to_string(num_shards));
  }
  if (e.offset < 0 || e.size < 0) return bad("has a negative offset or size");
  // In a compressed checkpoint an entry's stored bytes may be fewer or more
  // than its shape and dtype hold: fastckpt's Python reader checks them
  // against the frame table, and the native reads refuse such entries
  // (CheckStoredAsIs).
  if (!compressed && elem > 0 && numel * static_cast<unsigned>(elem) != static_cast<uint64_t>(e.size)) {
    return bad("has size " + std::to_string(e.size) + ", which does not match its shape and dtype");
  }
  return Status::Ok();
}

}  // namespace

Status BundleReader::Open(const std::string& prefix, std::unique_ptr<BundleReader>* out) {
  std::unique_ptr<BundleReader> r(new BundleReader());
  r->prefix_ = prefix;
  const std::string index_name = IndexFilename(prefix);
  std::string index;
  Status st = ReadWholeFile(index_name, &index);
  if (st.code() == StatusCode::kNotFound) {
    return Status::OsError(StatusCode::kNotFound, "checkpoint index not found: '" + index_name + "'", st.sys_errno(),
                           index_name);
  }
  FASTCKPT_RETURN_IF_ERROR(st);

  bool have_header = false;
  FASTCKPT_RETURN_IF_ERROR(
      ForEachTableEntry(index, index_name, [&](const std::string& key, const char* v, size_t n) -> Status {
        if (key.empty()) {
          Status hs = DecodeBundleHeader(v, n, &r->header_);
          if (!hs.ok()) return DataLoss("corrupt index file '" + index_name + "': header: " + hs.message());
          have_header = true;
          return Status::Ok();
        }
        if (!have_header) return DataLoss("corrupt index file '" + index_name + "': no header entry");
        BundleEntry e;
        Status es = DecodeBundleEntry(v, n, &e);
        if (!es.ok()) {
          return DataLoss("corrupt index file '" + index_name + "': entry '" + PrintableKey(key) +
                          "': " + es.message());
        }
        r->keys_.push_back(key);
        r->entries_.push_back(std::move(e));
        return Status::Ok();
      }));
  if (!have_header) return DataLoss("corrupt index file '" + index_name + "': no header entry");
  const BundleHeader& h = r->header_;
  r->compressed_ = h.min_consumer == kCompressedMinConsumer;
  if (h.producer < 0 || (h.min_consumer > kConsumerVersion && !r->compressed_) ||
      std::find(h.bad_consumers.begin(), h.bad_consumers.end(), kConsumerVersion) != h.bad_consumers.end()) {
    return DataLoss("checkpoint '" + index_name + "' has version producer=" + std::to_string(h.producer) +
                    " min_consumer=" + std::to_string(h.min_consumer) +
                    ", which this reader cannot read (written by a newer version?)");
  }
  if (h.endianness != 0) {
    return Unimplemented("checkpoint '" + index_name +
                         "' was written on a big-endian machine; "
                         "reading byte-swapped bundles is not supported");
  }
  if (h.num_shards <= 0) {
    return DataLoss("corrupt index file '" + index_name + "': header has num_shards=" + std::to_string(h.num_shards));
  }
  for (size_t i = 0; i < r->entries_.size(); ++i) {
    FASTCKPT_RETURN_IF_ERROR(ValidateEntry(r->keys_[i], r->entries_[i], h.num_shards, index_name, r->compressed_));
  }
  // Open only the shards that entries refer to: a lying num_shards must not
  // make us touch millions of files.
  r->shards_.resize(std::min<size_t>(h.num_shards, r->entries_.size() + 1));
  r->shard_sizes_.resize(r->shards_.size(), 0);
  std::vector<int32_t> used;
  for (const BundleEntry& e : r->entries_) {
    if (e.slices.empty()) used.push_back(e.shard_id);
  }
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  if (!used.empty() && static_cast<size_t>(used.back()) >= r->shards_.size()) {
    r->shards_.resize(used.back() + 1);
    r->shard_sizes_.resize(used.back() + 1, 0);
  }
  // A shard that cannot be opened is remembered, not fatal: listing and the
  // other shards' tensors stay readable (CheckBounds reports it per read).
  r->shard_status_.resize(r->shards_.size());
  for (int32_t s : used) {
    std::string name = DataFilename(prefix, s, h.num_shards);
    Status os = File::OpenForRead(name, &r->shards_[s]);
    if (os.code() == StatusCode::kNotFound) {
      os = Status::OsError(StatusCode::kNotFound, "checkpoint data file not found: '" + name + "'", os.sys_errno(),
                           name);
    }
    if (os.ok()) os = r->shards_[s].Size(&r->shard_sizes_[s]);
    r->shard_status_[s] = os;
  }
  *out = std::move(r);
  return Status::Ok();
}

int64_t BundleReader::Find(const std::string& key) const {
  auto it = std::lower_bound(keys_.begin(), keys_.end(), key);
  if (it == keys_.end() || *it != key) return -1;
  return it - keys_.begin();
}

std::string BundleReader::Describe(size_t entry) const {
  const BundleEntry& e = entries_[entry];
  return DescribeKey(keys_[entry]) + " in '" + DataFilename(prefix_, e.shard_id, header_.num_shards) + "'";
}

Status BundleReader::CheckBounds(size_t entry) const {
  const BundleEntry& e = entries_[entry];
  if (!e.slices.empty()) return InvalidArgument(Describe(entry) + " is partitioned; read its slices");
  FASTCKPT_RETURN_IF_ERROR(shard_status_[e.shard_id]);
  if (e.size == 0 && crc32c::Unmask(e.masked_crc32c) != 0) {
    // The CRC of no bytes is 0: a zero-size tensor's checksum is checked
    // here, where every reader passes, rather than by a read of nothing.
    char buf[128];
    std::snprintf(buf, sizeof(buf), ": data checksum mismatch (stored CRC32C %08x, a tensor of no bytes has 00000000)",
                  crc32c::Unmask(e.masked_crc32c));
    return DataLoss(Describe(entry) + buf);
  }
  uint64_t fsize = shard_sizes_[e.shard_id];
  uint64_t end = static_cast<uint64_t>(e.offset) + static_cast<uint64_t>(e.size);
  if (static_cast<uint64_t>(e.offset) > fsize || end > fsize) {
    return DataLoss(Describe(entry) + ": bytes [" + std::to_string(e.offset) + ", " + std::to_string(end) +
                    ") lie past the end of the file (" + std::to_string(fsize) + " bytes; truncated file?)");
  }
  return Status::Ok();
}

bool BundleReader::StoredAsIs(size_t entry) const {
  const BundleEntry& e = entries_[entry];
  const int elem = DtypeElementSize(e.dtype);
  if (!compressed_ || elem <= 0 || !e.slices.empty()) return true;
  unsigned __int128 bytes = static_cast<unsigned>(elem);
  for (int64_t d : e.shape) bytes *= static_cast<uint64_t>(d);  // < 2^62 * 16 (Open)
  return bytes == static_cast<uint64_t>(e.size);
}

Status BundleReader::CheckStoredAsIs(size_t entry) const {
  if (StoredAsIs(entry)) return Status::Ok();
  return InvalidArgument(Describe(entry) + " is stored compressed (" + std::to_string(entries_[entry].size) +
                         " bytes); read it through fastckpt's Python reader, which decompresses it");
}

Status BundleReader::ReadRaw(size_t entry, std::string* out) const {
  if (entry >= entries_.size()) return InvalidArgument("no such entry");
  FASTCKPT_RETURN_IF_ERROR(CheckBounds(entry));
  const BundleEntry& e = entries_[entry];
  out->resize(static_cast<size_t>(e.size));
  return shards_[e.shard_id].PreadAll(&(*out)[0], out->size(), static_cast<uint64_t>(e.offset));
}

Status BundleReader::Read(const std::vector<ReadRequest>& requests, int threads, uint64_t task_bytes) const {
  task_bytes = std::max<uint64_t>(task_bytes, 4096);
  for (const ReadRequest& r : requests) {
    if (r.entry >= entries_.size()) return InvalidArgument("no such entry");
    const BundleEntry& e = entries_[r.entry];
    int elem = DtypeElementSize(e.dtype);
    if (elem <= 0) return InvalidArgument(Describe(r.entry) + " does not have a fixed-size dtype");
    FASTCKPT_RETURN_IF_ERROR(CheckStoredAsIs(r.entry));
    FASTCKPT_RETURN_IF_ERROR(CheckBounds(r.entry));
    if (r.dest_size != static_cast<uint64_t>(e.size)) {
      return InvalidArgument(Describe(r.entry) + ": destination buffer has the wrong size");
    }
  }
  // Work list: large tensors in task_bytes pieces; runs of small tensors that
  // lie back to back in one file share a task (one preadv).
  std::vector<const BundleEntry*> req_entries(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) req_entries[i] = &entries_[requests[i].entry];
  const TaskPlan plan = PlanReads(req_entries, task_bytes, kMaxRequestsPerTask);
  const std::vector<PlannedPiece>& pieces = plan.pieces;
  std::vector<uint32_t> piece_crc(pieces.size(), 0);
  FASTCKPT_RETURN_IF_ERROR(ParallelFor(plan.tasks.size(), threads, [&](size_t t) -> Status {
    size_t first = plan.tasks[t].first, end = plan.tasks[t].end;
    const ReadRequest& r0 = requests[pieces[first].item];
    const BundleEntry& e0 = entries_[r0.entry];
    const File& file = shards_[e0.shard_id];
    uint64_t file_off = static_cast<uint64_t>(e0.offset) + pieces[first].offset;
    if (end - first == 1) {
      // One piece: read and checksum in cache-sized steps.
      const PlannedPiece& pc = pieces[first];
      uint8_t* dst = r0.dest + pc.offset;
      uint32_t crc = 0;
      for (uint64_t done = 0; done < pc.length;) {
        uint64_t n = std::min(kInterleaveBytes, pc.length - done);
        FASTCKPT_RETURN_IF_ERROR(file.PreadAll(dst + done, n, file_off + done));
        crc = crc32c::Extend(crc, dst + done, n);
        CountBytes(n);
        done += n;
      }
      piece_crc[first] = crc;
      return Status::Ok();
    }
    // Back-to-back small tensors: scatter-read them with preadv.
    std::vector<struct iovec> iov;
    size_t i = first;
    while (i < end) {
      iov.clear();
      uint64_t bytes = 0;
      size_t j = i;
      while (j < end && iov.size() < IOV_MAX && bytes < kInterleaveBytes) {
        iov.push_back({requests[pieces[j].item].dest, static_cast<size_t>(pieces[j].length)});
        bytes += pieces[j].length;
        ++j;
      }
      FASTCKPT_RETURN_IF_ERROR(file.PreadvAll(iov.data(), static_cast<int>(iov.size()), file_off));
      for (size_t p = i; p < j; ++p) {
        piece_crc[p] = crc32c::Value(requests[pieces[p].item].dest, pieces[p].length);
      }
      CountBytes(bytes);
      file_off += bytes;
      i = j;
    }
    return Status::Ok();
  }));
  // Verify every tensor's CRC from its pieces.
  return CheckReadCrcs(plan, req_entries, piece_crc, [&](size_t ri) { return Describe(requests[ri].entry); });
}

}  // namespace fastckpt
