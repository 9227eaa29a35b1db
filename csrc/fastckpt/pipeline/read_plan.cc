#include "fastckpt/pipeline/read_plan.h"

#include <algorithm>

namespace fastckpt {

ReadPlan PlanReads(const std::vector<const BundleEntry*>& entries, uint64_t max_task_bytes, size_t max_pieces) {
  max_task_bytes = std::max<uint64_t>(max_task_bytes, 1);
  ReadPlan plan;
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const BundleEntry& x = *entries[a];
    const BundleEntry& y = *entries[b];
    return x.shard_id != y.shard_id ? x.shard_id < y.shard_id : x.offset < y.offset;
  });
  plan.first_piece.assign(entries.size(), 0);
  plan.num_pieces.assign(entries.size(), 0);
  std::vector<ReadPiece>& pieces = plan.pieces;
  size_t batch_first = 0;
  uint64_t batch_bytes = 0;
  int32_t batch_shard = -1;
  uint64_t batch_end = 0;  // file offset just past the batch
  auto flush = [&]() {
    if (pieces.size() > batch_first) plan.tasks.push_back({batch_first, pieces.size(), batch_bytes});
    batch_first = pieces.size();
    batch_bytes = 0;
    batch_shard = -1;
  };
  for (size_t ri : order) {
    const BundleEntry& e = *entries[ri];
    const uint64_t size = static_cast<uint64_t>(e.size);
    plan.first_piece[ri] = pieces.size();
    if (size > max_task_bytes) {
      flush();
      for (uint64_t off = 0; off < size; off += max_task_bytes) {
        pieces.push_back({ri, off, std::min(max_task_bytes, size - off)});
        batch_bytes = pieces.back().length;
        flush();
      }
    } else if (size > 0) {
      bool adjacent = batch_shard == e.shard_id && batch_end == static_cast<uint64_t>(e.offset);
      if (!adjacent || batch_bytes + size > max_task_bytes || pieces.size() - batch_first >= max_pieces) {
        flush();
      }
      pieces.push_back({ri, 0, size});
      batch_shard = e.shard_id;
      batch_end = static_cast<uint64_t>(e.offset) + size;
      batch_bytes += size;
    }
    plan.num_pieces[ri] = pieces.size() - plan.first_piece[ri];
  }
  flush();
  return plan;
}

}  // namespace fastckpt
