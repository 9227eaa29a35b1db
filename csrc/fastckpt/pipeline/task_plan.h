// How work on stored byte ranges is cut into units of parallel work
// (tasks): the one planner of the writer (bundle_plan.cc), the host and
// device readers (bundle_reader.cc, bundle_reader_device.cc) and Verify()
// (bundle_verify.cc).
//
// Ranges are taken in the order given (the caller orders them by file and
// offset). A range larger than the task size is cut into pieces, one task
// each; runs of smaller ranges that lie together in one data file are
// batched into one task (one preadv or pwritev, one staging buffer, one
// streamed read), up to the task size and a piece count. Pure computation;
// no I/O. Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/format/bundle_proto.h"

namespace fastckpt {

// The default size of one unit of parallel work: the one definition, exposed
// to Python as _native.DEFAULT_TASK_BYTES (fastckpt/config.py's default).
constexpr uint64_t kDefaultTaskBytes = 16ull << 20;

// One stored range to plan: `size` bytes of item `item` at `file_offset` in
// data file `shard`.
struct Extent {
  size_t item;
  int32_t shard;
  uint64_t file_offset;
  uint64_t size;
};

// max_gap value: a range joins a batch only if it starts exactly where the
// batch ends (a scatter read or gather write needs back-to-back ranges).
constexpr uint64_t kAdjacentOnly = UINT64_MAX;

struct TaskLimits {
  // A range larger than this is cut into pieces of its own tasks; a batch
  // spans at most this many file bytes. Values below 1 count as 1.
  uint64_t task_bytes = kDefaultTaskBytes;
  // The length of those pieces (the last may be shorter); 0: task_bytes.
  // REQUIRES: piece_bytes <= task_bytes.
  uint64_t piece_bytes = 0;
  // The most pieces one batch holds.
  size_t max_pieces = SIZE_MAX;
  // kAdjacentOnly, or: a range joins a batch when it starts at most this
  // many bytes past the batch's end (or inside it: the bytes between are
  // read and skipped).
  uint64_t max_gap = kAdjacentOnly;
};

// A contiguous range of one item's bytes: bytes [offset, offset + length)
// of item `item`, at file_offset in its data file.
struct PlannedPiece {
  size_t item;
  uint64_t offset;
  uint64_t length;
  uint64_t file_offset;
};

// Pieces [first, end) of one data file, in file order; `bytes` is their
// total length, [file_begin, file_end) the file range they span.
struct PlannedTask {
  int32_t shard;
  size_t first;
  size_t end;
  uint64_t bytes;
  uint64_t file_begin;
  uint64_t file_end;
};

struct TaskPlan {
  std::vector<PlannedPiece> pieces;
  std::vector<PlannedTask> tasks;
  std::vector<size_t> first_piece;  // per item
  std::vector<size_t> num_pieces;   // per item (0 for an empty or unplanned item)
};

// Plans `extents` (in that order); items are numbered 0 .. num_items - 1.
// REQUIRES: every extent's item < num_items, each item at most once.
void PlanTasks(const std::vector<Extent>& extents, size_t num_items, const TaskLimits& limits, TaskPlan* plan);

// A read of many entries: entries[i] is the index entry request i reads;
// entries in file order, pieces of at most max_task_bytes, back-to-back
// small ones batched up to max_task_bytes and max_pieces.
TaskPlan PlanReads(const std::vector<const BundleEntry*>& entries, uint64_t max_task_bytes, size_t max_pieces);

// The unmasked CRC of item `item` from the CRCs of its pieces (0 for an item
// without pieces), joined with crc32c::Combine.
uint32_t JoinPieceCrcs(const TaskPlan& plan, const std::vector<uint32_t>& piece_crc, size_t item);

// Where a walk over the pieces of one task, packed back to back in one
// buffer in plan order (a staging buffer), has got to.
struct PackedPieceCursor {
  explicit PackedPieceCursor(size_t first_piece) : piece(first_piece) {}
  size_t piece;              // the piece being walked
  uint64_t piece_begin = 0;  // its offset in the buffer
  uint64_t covered = 0;      // buffer bytes walked so far
};

// The one walk that checksums a staged task (the writer's WriteStaged, the
// device reader): buffer bytes [cursor->covered, upto) have become ready;
// calls fn(piece, data, n, piece_done) for each part of a piece among them,
// in order, piece_done once the piece's last byte has been passed.
// REQUIRES: upto <= the task's bytes; pieces have length > 0.
template <typename Fn>
void WalkPackedPieces(const std::vector<PlannedPiece>& pieces, const uint8_t* buf, uint64_t upto,
                      PackedPieceCursor* cursor, Fn fn) {
  PackedPieceCursor& c = *cursor;
  while (c.covered < upto) {
    const uint64_t piece_end = c.piece_begin + pieces[c.piece].length;
    const uint64_t until = piece_end < upto ? piece_end : upto;
    fn(c.piece, buf + c.covered, until - c.covered, until == piece_end);
    c.covered = until;
    if (until == piece_end) {
      ++c.piece;
      c.piece_begin = piece_end;
    }
  }
}

// Compares each request's joined piece CRCs with its entry's; the first
// mismatch is kDataLoss naming the tensor via describe(request).
template <typename Describe>
Status CheckReadCrcs(const TaskPlan& plan, const std::vector<const BundleEntry*>& entries,
                     const std::vector<uint32_t>& piece_crc, Describe describe);

}  // namespace fastckpt

#include "fastckpt/crc32c/crc32c.h"

namespace fastckpt {

template <typename Describe>
Status CheckReadCrcs(const TaskPlan& plan, const std::vector<const BundleEntry*>& entries,
                     const std::vector<uint32_t>& piece_crc, Describe describe) {
  for (size_t ri = 0; ri < entries.size(); ++ri) {
    if (JoinPieceCrcs(plan, piece_crc, ri) != crc32c::Unmask(entries[ri]->masked_crc32c)) {
      return DataLoss(describe(ri) + ": data checksum mismatch (the file is corrupt)");
    }
  }
  return Status::Ok();
}

}  // namespace fastckpt
