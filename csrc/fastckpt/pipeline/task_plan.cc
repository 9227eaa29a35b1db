#include "fastckpt/pipeline/task_plan.h"

#include <algorithm>

namespace fastckpt {

void PlanTasks(const std::vector<Extent>& extents, size_t num_items, const TaskLimits& limits, TaskPlan* plan) {
  const uint64_t task_bytes = std::max<uint64_t>(limits.task_bytes, 1);
  const uint64_t cut = limits.piece_bytes > 0 ? std::min(limits.piece_bytes, task_bytes) : task_bytes;
  plan->pieces.clear();
  plan->tasks.clear();
  plan->first_piece.assign(num_items, 0);
  plan->num_pieces.assign(num_items, 0);
  std::vector<PlannedPiece>& pieces = plan->pieces;
  PlannedTask batch{};
  bool open = false;
  auto flush = [&]() {
    if (open && pieces.size() > batch.first) {
      batch.end = pieces.size();
      plan->tasks.push_back(batch);
    }
    open = false;
  };
  for (const Extent& x : extents) {
    plan->first_piece[x.item] = pieces.size();
    if (x.size > task_bytes) {
      flush();
      for (uint64_t off = 0; off < x.size; off += cut) {
        const uint64_t len = std::min(cut, x.size - off);
        pieces.push_back({x.item, off, len, x.file_offset + off});
        plan->tasks.push_back(
            {x.shard, pieces.size() - 1, pieces.size(), len, x.file_offset + off, x.file_offset + off + len});
      }
    } else if (x.size > 0) {
      const uint64_t end = x.file_offset + x.size;
      bool joins = open && batch.shard == x.shard && pieces.size() - batch.first < limits.max_pieces;
      if (joins) {
        joins = limits.max_gap == kAdjacentOnly ? x.file_offset == batch.file_end
                                                : x.file_offset <= batch.file_end + limits.max_gap;
      }
      joins = joins && std::max(batch.file_end, end) - batch.file_begin <= task_bytes;
      if (!joins) {
        flush();
        batch = PlannedTask{x.shard, pieces.size(), pieces.size(), 0, x.file_offset, x.file_offset};
        open = true;
      }
      pieces.push_back({x.item, 0, x.size, x.file_offset});
      batch.bytes += x.size;
      batch.file_end = std::max(batch.file_end, end);
    }
    plan->num_pieces[x.item] = pieces.size() - plan->first_piece[x.item];
  }
  flush();
}

TaskPlan PlanReads(const std::vector<const BundleEntry*>& entries, uint64_t max_task_bytes, size_t max_pieces) {
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const BundleEntry& x = *entries[a];
    const BundleEntry& y = *entries[b];
    return x.shard_id != y.shard_id ? x.shard_id < y.shard_id : x.offset < y.offset;
  });
  std::vector<Extent> extents;
  extents.reserve(order.size());
  for (size_t ri : order) {
    const BundleEntry& e = *entries[ri];
    extents.push_back({ri, e.shard_id, static_cast<uint64_t>(e.offset), static_cast<uint64_t>(e.size)});
  }
  TaskLimits limits;
  limits.task_bytes = max_task_bytes;
  limits.max_pieces = max_pieces;
  TaskPlan plan;
  PlanTasks(extents, entries.size(), limits, &plan);
  return plan;
}

uint32_t JoinPieceCrcs(const TaskPlan& plan, const std::vector<uint32_t>& piece_crc, size_t item) {
  const size_t n = plan.num_pieces[item];
  if (n == 0) return 0;
  const size_t first = plan.first_piece[item];
  uint32_t crc = piece_crc[first];
  for (size_t p = first + 1; p < first + n; ++p) crc = crc32c::Combine(crc, piece_crc[p], plan.pieces[p].length);
  return crc;
}

}  // namespace fastckpt
