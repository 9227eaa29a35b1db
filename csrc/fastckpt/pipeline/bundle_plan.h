// The layout of one bundle before anything is written: which shard holds
// each tensor, at which offset, and how the bytes are cut into units of
// parallel work (tasks). Pure computation; no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/pipeline/task_plan.h"
#include "fastckpt/pipeline/write_bundle.h"

namespace fastckpt {

// The work list (TaskPlan, task_plan.h): items are WriteItems; a task's
// pieces are one shard's (PlannedTask::shard is local), tasks of different
// shards interleaved (see PlanBundle), each at most task_bytes (a single
// piece is never larger).
struct BundlePlan : TaskPlan {
  std::vector<uint32_t> order;        // items sorted by key (index order)
  int num_shards = 1;                 // this job's data files (shard_of is local: 0 .. num_shards - 1)
  int shard_base = 0;                 // global number of local shard 0
  int total_shards = 1;               // data files of the whole checkpoint (names, index header)
  uint64_t total_bytes = 0;           // data bytes over all shards
  std::vector<int32_t> shard_of;      // per item
  std::vector<uint64_t> offset_of;    // per item, within its shard
};

// Validates the items (names, dtypes, shapes, sizes) and the options
// (shard_base, total_shards, chunk_bytes), and lays the items out.
// `threads` bounds the automatic shard count; tasks hold at most task_bytes.
// With options.chunk_bytes > 0, an item cut into several pieces is cut at
// chunk boundaries where a chunk fits a task, so that a chunk is checksummed
// by one thread (chunk_crcs.h).
Status PlanBundle(const std::vector<WriteItem>& items, const WriteOptions& options, int threads, uint64_t task_bytes,
                  BundlePlan* plan);

// The index entry of item i of a written plan: its global shard id, offset,
// size and masked CRC (piece_crc holds the unmasked CRC of every piece's
// bytes), or a partitioned tensor's data-less entry.
void MakeEntry(const std::vector<WriteItem>& items, const BundlePlan& plan, const std::vector<uint32_t>& piece_crc,
               uint32_t i, BundleEntry* entry);

// The .index contents for a written plan (bundle_index.h), its header
// counting plan.total_shards data files.
Status BuildIndex(const std::vector<WriteItem>& items, const BundlePlan& plan, const std::vector<uint32_t>& piece_crc,
                  std::string* index);

// "'name'" with unprintable bytes escaped, for messages.
std::string QuotedKey(const std::string& key);

}  // namespace fastckpt
