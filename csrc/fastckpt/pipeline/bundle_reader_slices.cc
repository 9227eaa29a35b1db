// BundleReader's partitioned tensors: the cached validation of a tensor's
// stored slices (Partition) and the plan of a region read (PlanSliceRead).
//
// TensorFlow's BundleReader::GetSliceValue is the model: the stored slices
// must lie in the tensor and not overlap (TensorSliceSet::Register), the
// ones intersecting the request must cover it ("Does not have sufficient
// slices"), and each is fetched by its encoded key. Here the geometry is
// checked once per tensor (slice_set.h, O(n log n) for grids where
// TensorFlow's check is quadratic) and every reader -- get_tensor,
// get_slice, Verify -- goes through it.
#include <algorithm>

#include "fastckpt/format/dtypes.h"
#include "fastckpt/format/naming.h"
#include "fastckpt/format/slice_key.h"
#include "fastckpt/format/slice_set.h"
#include "fastckpt/pipeline/bundle_reader.h"

namespace fastckpt {

namespace {

using u128 = unsigned __int128;

// The shape of stored slice `s` of a tensor of shape `shape`.
// REQUIRES: s lies inside shape (Open() checked every listed slice).
std::vector<int64_t> SliceShape(const std::vector<int64_t>& shape, const TensorSlice& s) {
  std::vector<int64_t> out(s.size());
  for (size_t d = 0; d < s.size(); ++d) out[d] = s[d].length < 0 ? shape[d] : s[d].length;
  return out;
}

std::string DescribeDtype(int dtype) { return "DataType " + std::to_string(dtype); }

}  // namespace

const PartitionInfo& BundleReader::Partition(size_t entry) const {
  // Computed under the lock: concurrent first readers of one tensor wait for
  // one computation instead of repeating it (it is bounded; slice_set.h).
  std::lock_guard<std::mutex> lock(partitions_mu_);
  std::unique_ptr<PartitionInfo>& slot = partitions_[entry];
  if (slot) return *slot;
  auto info = std::make_unique<PartitionInfo>();
  const BundleEntry& e = entries_[entry];
  info->status = CheckSliceSet(e.shape, e.slices, &info->held, &info->covers);
  info->slice_entry.resize(e.slices.size());
  for (size_t i = 0; i < e.slices.size(); ++i) {
    info->slice_entry[i] = Find(EncodeSliceKey(keys_[entry], e.slices[i]));
  }
  slot = std::move(info);
  return *slot;
}

Status BundleReader::CheckSliceEntry(size_t entry, size_t slice) const {
  const BundleEntry& e = entries_[entry];
  const TensorSlice& s = e.slices[slice];
  const std::string what = "slice '" + FormatSliceSpec(s) + "'";
  const int64_t j = Partition(entry).slice_entry[slice];
  if (j < 0) return DataLoss(what + " has no entry in the index");
  const BundleEntry& se = entries_[static_cast<size_t>(j)];
  if (!se.slices.empty()) return DataLoss(what + ": its entry is itself partitioned");
  if (se.dtype != e.dtype) {
    return DataLoss(what + " has dtype " + DescribeDtype(se.dtype) + ", the tensor " + DescribeDtype(e.dtype));
  }
  const std::vector<int64_t> shape = SliceShape(e.shape, s);
  if (se.shape != shape) {
    return DataLoss(what + " has shape " + FormatShape(se.shape) + ", expected " + FormatShape(shape));
  }
  return Status::Ok();
}

Status BundleReader::PlanSliceRead(size_t entry, const TensorSlice& region, std::vector<SlicePart>* parts) const {
  parts->clear();
  if (entry >= entries_.size() || entries_[entry].slices.empty()) {
    return InvalidArgument("PlanSliceRead: entry " + std::to_string(entry) + " is not a partitioned tensor");
  }
  const BundleEntry& e = entries_[entry];
  const size_t k = e.shape.size();
  const std::string tensor = "tensor '" + PrintableKey(keys_[entry]) + "'";
  if (region.size() != k) {
    return InvalidArgument("slice '" + FormatSliceSpec(region) + "' has rank " + std::to_string(region.size()) + ", " +
                           tensor + " has rank " + std::to_string(k));
  }
  std::vector<int64_t> lo(k), hi(k);
  u128 volume = 1;
  for (size_t d = 0; d < k; ++d) {
    const SliceExtent& x = region[d];
    const bool whole = x.length < 0;
    if ((whole && x.start != 0) || x.start < 0 || (!whole && x.start > e.shape[d]) ||
        (!whole && x.length > e.shape[d] - x.start)) {
      return InvalidArgument("slice '" + FormatSliceSpec(region) + "' lies outside " + tensor + " of shape " +
                             FormatShape(e.shape));
    }
    lo[d] = whole ? 0 : x.start;
    hi[d] = whole ? e.shape[d] : x.start + x.length;
    volume *= static_cast<uint64_t>(hi[d] - lo[d]);  // <= the tensor's elements (< 2^62, Open)
  }
  const std::string corrupt = "corrupt index file '" + IndexFilename(prefix_) + "': " + tensor + ": ";
  const PartitionInfo& info = Partition(entry);
  if (!info.status.ok()) return info.status.Annotate(corrupt);
  // The slices are disjoint, so they cover the region iff their overlaps
  // with it add up to its volume. Checked before any slice entry is looked
  // at, as TensorFlow does.
  u128 covered = 0;
  for (size_t i = 0; i < e.slices.size(); ++i) {
    const TensorSlice& s = e.slices[i];
    SlicePart part{i, 0, TensorSlice(k)};
    u128 n = 1;
    for (size_t d = 0; d < k && n != 0; ++d) {
      const int64_t slo = s[d].length < 0 ? 0 : s[d].start;
      const int64_t shi = s[d].length < 0 ? e.shape[d] : s[d].start + s[d].length;
      const int64_t a = std::max(slo, lo[d]), b = std::min(shi, hi[d]);
      if (a >= b)
        n = 0;
      else {
        part.overlap[d] = SliceExtent{a, b - a};
        n *= static_cast<uint64_t>(b - a);
      }
    }
    if (n == 0) continue;
    covered += n;
    parts->push_back(std::move(part));
  }
  if (covered != volume) {
    parts->clear();
    return DataLoss("checkpoint '" + IndexFilename(prefix_) + "' does not have sufficient slices for " + tensor +
                    " region '" + FormatSliceSpec(region) + "' (its " + std::to_string(e.slices.size()) +
                    " stored slices hold " + std::to_string(static_cast<uint64_t>(covered)) + " of its " +
                    std::to_string(static_cast<uint64_t>(volume)) + " elements)");
  }
  for (SlicePart& part : *parts) {
    Status st = CheckSliceEntry(entry, part.slice);
    if (!st.ok()) st = st.Annotate(corrupt);
    if (st.ok()) {
      part.entry = static_cast<size_t>(info.slice_entry[part.slice]);
      st = CheckBounds(part.entry);
    }
    if (st.ok() && entries_[part.entry].dtype == kDtString) {
      // A string tensor takes at least a length byte per element and a
      // 4-byte checksum: a lying shape cannot make the caller allocate
      // more than the data file could hold.
      const BundleEntry& se = entries_[part.entry];
      u128 numel = 1;
      for (int64_t d : se.shape) numel *= static_cast<uint64_t>(d);
      if (static_cast<u128>(static_cast<uint64_t>(se.size)) < numel + 4) {
        st = DataLoss(Describe(part.entry) + ": a string tensor of " + std::to_string(static_cast<uint64_t>(numel)) +
                      " elements cannot fit in " + std::to_string(se.size) + " bytes");
      }
    }
    if (!st.ok()) {
      parts->clear();
      return st;
    }
  }
  return Status::Ok();
}

Status BundleReader::ShardOpenErrors() const {
  std::vector<bool> used(shards_.size(), false);
  for (const BundleEntry& e : entries_) {
    if (e.slices.empty()) used[e.shard_id] = true;
  }
  std::string missing;
  Status first_missing, first_other;
  size_t num_missing = 0;
  for (size_t s = 0; s < shards_.size(); ++s) {
    if (!used[s] || shard_status_[s].ok()) continue;
    const Status& st = shard_status_[s];
    if (st.code() == StatusCode::kNotFound) {
      if (num_missing++ == 0) first_missing = st;
      missing +=
          (missing.empty() ? "'" : ", '") + DataFilename(prefix_, static_cast<int32_t>(s), header_.num_shards) + "'";
    } else {
      first_other.Update(st);
    }
  }
  if (num_missing == 1) return first_missing;
  if (num_missing > 1) {
    return Status::OsError(StatusCode::kNotFound,
                           std::to_string(num_missing) + " checkpoint data files not found: " + missing,
                           first_missing.sys_errno(), first_missing.path());
  }
  return first_other;
}

}  // namespace fastckpt
