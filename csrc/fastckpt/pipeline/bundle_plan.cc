#include "fastckpt/pipeline/bundle_plan.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/bundle_index.h"
#include "fastckpt/format/dtypes.h"
#include "fastckpt/pipeline/chunk_crcs.h"

namespace fastckpt {

namespace {

// When the caller does not choose, a shard is added per this many bytes, up
// to one per thread: buffered writes to one file are serialized by the
// kernel (ext4 and xfs hold the inode lock across the copy into the page
// cache), so parallel copying needs separate files.
constexpr uint64_t kAutoShardBytes = 32ull << 20;
// Small tensors batched into one task are capped by count as well as bytes.
constexpr size_t kMaxPiecesPerTask = 4096;

Status ValidateItem(const WriteItem& it) {
  // Built only for a message: validation runs once per tensor.
  auto name = [&]() { return QuotedKey(it.key); };
  if (it.key.empty()) return InvalidArgument("tensor names must not be empty");
  int elem = DtypeElementSize(it.dtype);
  if (elem < 0 || it.dtype == kDtVariant) {
    return InvalidArgument("tensor " + name() + " has dtype " + std::to_string(it.dtype) +
                           ", which a checkpoint cannot hold");
  }
  if (it.nbytes > 0 && it.data == nullptr && !it.on_device()) {
    return InvalidArgument("tensor " + name() + " has no data buffer");
  }
  if (it.on_device() && it.dtype == kDtString) {
    return InvalidArgument("string tensor " + name() + " cannot live in device memory");
  }
  if (!it.slices.empty()) {
    if (it.nbytes != 0) return InvalidArgument("partitioned tensor " + name() + " must not carry data");
    return Status::Ok();
  }
  // Element count, with overflow checks: a shape can come from anywhere.
  unsigned __int128 numel = 1;
  for (int64_t d : it.shape) {
    if (d < 0) return InvalidArgument("tensor " + name() + " has a negative dimension");
    numel *= static_cast<uint64_t>(d);
    if (numel > (static_cast<unsigned __int128>(1) << 62)) {
      return InvalidArgument("tensor " + name() + " has too many elements");
    }
  }
  if (it.dtype == kDtString) {
    if (!it.has_crc) return InvalidArgument("string tensor " + name() + " lacks its CRC");
    return Status::Ok();
  }
  if (numel * static_cast<unsigned>(elem) != it.nbytes) {
    return InvalidArgument("tensor " + name() + ": " + std::to_string(it.nbytes) +
                           " bytes do not match its shape and dtype");
  }
  return Status::Ok();
}

}  // namespace

std::string QuotedKey(const std::string& key) { return "'" + PrintableKey(key) + "'"; }

Status PlanBundle(const std::vector<WriteItem>& items, const WriteOptions& options, int threads, uint64_t task_bytes,
                  BundlePlan* plan) {
  if (items.size() >= (1ull << 31)) return InvalidArgument("too many tensors");
  task_bytes = std::max<uint64_t>(task_bytes, 4096);
  FASTCKPT_RETURN_IF_ERROR(CheckChunkBytes(options.chunk_bytes));
  const int base = options.shard_base;
  const int all_shards = options.total_shards;
  if (all_shards < 0 || all_shards > 99999) {
    return InvalidArgument("total_shards must be between 0 and 99999, not " + std::to_string(all_shards));
  }
  if (base < 0) return InvalidArgument("shard_base must be >= 0, not " + std::to_string(base));
  if (all_shards == 0 && base != 0) {
    return InvalidArgument("shard_base " + std::to_string(base) +
                           " needs total_shards (the number of data files of the whole checkpoint)");
  }
  if (all_shards > 0 && base >= all_shards) {
    return InvalidArgument("shard_base " + std::to_string(base) + " is not below total_shards " +
                           std::to_string(all_shards));
  }

  // 1. Validate, and order the entries as the index needs them.
  for (const WriteItem& it : items) FASTCKPT_RETURN_IF_ERROR(ValidateItem(it));
  {
    // Sorted as a compact array of (key, index): comparing through the
    // items themselves (large structs) misses the cache on every step, which
    // dominated saves of many small tensors.
    std::vector<std::pair<std::string_view, uint32_t>> keys(items.size());
    for (uint32_t i = 0; i < items.size(); ++i) keys[i] = {items[i].key, i};
    if (!std::is_sorted(keys.begin(), keys.end())) std::sort(keys.begin(), keys.end());
    plan->order.resize(items.size());
    for (size_t i = 0; i < keys.size(); ++i) {
      if (i > 0 && keys[i - 1].first == keys[i].first) {
        return InvalidArgument("duplicate tensor name " + QuotedKey(items[keys[i].second].key));
      }
      plan->order[i] = keys[i].second;
    }
  }

  // 2. Shards: balance bytes greedily (largest first onto the lightest shard).
  std::vector<uint32_t> data_items;  // in data file order
  uint64_t total = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    uint32_t i = options.sort_data ? plan->order[k] : static_cast<uint32_t>(k);
    if (items[i].slices.empty()) {
      data_items.push_back(i);
      total += items[i].nbytes;
    }
  }
  int num_shards = options.num_shards;
  if (num_shards <= 0) {
    uint64_t by_size = (total + kAutoShardBytes - 1) / kAutoShardBytes;
    num_shards = static_cast<int>(std::clamp<uint64_t>(by_size, 1, static_cast<uint64_t>(threads)));
    num_shards = std::min<int>(num_shards, static_cast<int>(std::max<size_t>(data_items.size(), 1)));
    if (all_shards > 0) num_shards = std::min(num_shards, all_shards - base);
  }
  if (num_shards > 99999) return InvalidArgument("num_shards must be at most 99999");
  if (all_shards > 0 && num_shards > all_shards - base) {
    return InvalidArgument("shard_base (" + std::to_string(base) + ") + num_shards (" + std::to_string(num_shards) +
                           ") must be at most total_shards (" + std::to_string(all_shards) + ")");
  }
  plan->num_shards = num_shards;
  plan->shard_base = base;
  plan->total_shards = all_shards > 0 ? all_shards : num_shards;
  plan->total_bytes = total;
  plan->shard_of.assign(items.size(), 0);
  if (num_shards > 1) {
    std::vector<uint32_t> by_size = data_items;
    std::stable_sort(by_size.begin(), by_size.end(),
                     [&](uint32_t a, uint32_t b) { return items[a].nbytes > items[b].nbytes; });
    std::vector<uint64_t> load(num_shards, 0);
    for (uint32_t i : by_size) {
      int s = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      plan->shard_of[i] = s;
      load[s] += items[i].nbytes;
    }
  }

  // 3. File layout (data file order within each shard, no padding, as
  //    TensorFlow) and the work list. A large item is cut into pieces of at
  //    most task_bytes, at chunk boundaries when a chunk fits (the layout in
  //    the file is the same either way).
  const uint64_t chunk = static_cast<uint64_t>(options.chunk_bytes);
  const uint64_t cut = chunk > 0 && chunk <= task_bytes ? task_bytes / chunk * chunk : task_bytes;
  plan->offset_of.assign(items.size(), 0);
  std::vector<std::vector<uint32_t>> per_shard(num_shards);
  for (uint32_t i : data_items) per_shard[plan->shard_of[i]].push_back(i);
  std::vector<Extent> extents;
  extents.reserve(data_items.size());
  for (int s = 0; s < num_shards; ++s) {
    uint64_t pos = 0;
    for (uint32_t i : per_shard[s]) {
      plan->offset_of[i] = pos;
      extents.push_back({i, s, pos, items[i].nbytes});
      pos += items[i].nbytes;
    }
  }
  TaskLimits limits;
  limits.task_bytes = task_bytes;
  limits.piece_bytes = cut;
  limits.max_pieces = kMaxPiecesPerTask;
  PlanTasks(extents, items.size(), limits, plan);
  // Interleave the shards' tasks so that threads working at the same time
  // write different files (writes to one file are serialized by the kernel).
  std::vector<std::vector<PlannedTask>> shard_tasks(num_shards);
  for (const PlannedTask& t : plan->tasks) shard_tasks[t.shard].push_back(t);
  plan->tasks.clear();
  for (size_t round = 0, left = 1; left > 0; ++round) {
    left = 0;
    for (auto& st : shard_tasks) {
      if (round < st.size()) plan->tasks.push_back(st[round]);
      if (round + 1 < st.size()) ++left;
    }
  }
  return Status::Ok();
}

void MakeEntry(const std::vector<WriteItem>& items, const BundlePlan& plan, const std::vector<uint32_t>& piece_crc,
               uint32_t i, BundleEntry* entry) {
  const WriteItem& it = items[i];
  BundleEntry& e = *entry;
  e = BundleEntry();
  e.dtype = it.dtype;
  e.shape = it.shape;
  if (!it.slices.empty()) {
    e.slices = it.slices;  // no data: shard 0, offset 0, size 0, no CRC, as TensorFlow writes it
    return;
  }
  const uint32_t crc = it.has_crc ? it.crc : JoinPieceCrcs(plan, piece_crc, i);
  e.shard_id = plan.shard_base + plan.shard_of[i];
  e.offset = static_cast<int64_t>(plan.offset_of[i]);
  e.size = static_cast<int64_t>(it.nbytes);
  e.masked_crc32c = crc32c::Mask(crc);
}

Status BuildIndex(const std::vector<WriteItem>& items, const BundlePlan& plan, const std::vector<uint32_t>& piece_crc,
                  std::string* index) {
  index->clear();
  IndexBuilder builder(plan.total_shards, index);
  BundleEntry e;
  for (uint32_t i : plan.order) {
    MakeEntry(items, plan, piece_crc, i, &e);
    FASTCKPT_RETURN_IF_ERROR(builder.Add(items[i].key, e));
  }
  builder.Finish();
  return Status::Ok();
}

}  // namespace fastckpt
