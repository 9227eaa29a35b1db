// How a read of many tensors is cut into units of parallel work, shared by
// the host reader (bundle_reader.cc) and the device reader
// (bundle_reader_device.cc): tensors in file order; a large one split into
// pieces of at most max_task_bytes; runs of small ones that lie back to back
// in one data file batched into one task (one preadv, or one staging
// buffer), at most max_task_bytes and max_pieces per task.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "fastckpt/format/bundle_proto.h"
#include "fastckpt/core/status.h"

namespace fastckpt {

struct ReadPiece {
  size_t req;       // index of the request (tensor)
  uint64_t offset;  // within the tensor
  uint64_t length;
};

struct ReadTask {
  size_t first;  // pieces [first, end), contiguous in one data file
  size_t end;
  uint64_t bytes;
};

struct ReadPlan {
  std::vector<ReadPiece> pieces;
  std::vector<ReadTask> tasks;
  std::vector<size_t> first_piece;  // per request
  std::vector<size_t> num_pieces;   // per request
};

// entries[i]: the index entry request i reads.
ReadPlan PlanReads(const std::vector<const BundleEntry*>& entries, uint64_t max_task_bytes, size_t max_pieces);

// Joins each request's piece CRCs and compares them with its entry's; the
// first mismatch is kDataLoss naming the tensor via describe(request).
template <typename Describe>
Status CheckReadCrcs(const ReadPlan& plan, const std::vector<const BundleEntry*>& entries,
                     const std::vector<uint32_t>& piece_crc, Describe describe);

}  // namespace fastckpt

#include "fastckpt/crc32c/crc32c.h"

namespace fastckpt {

template <typename Describe>
Status CheckReadCrcs(const ReadPlan& plan, const std::vector<const BundleEntry*>& entries,
                     const std::vector<uint32_t>& piece_crc, Describe describe) {
  for (size_t ri = 0; ri < entries.size(); ++ri) {
    uint32_t crc = 0;
    if (plan.num_pieces[ri] > 0) {
      size_t first = plan.first_piece[ri];
      crc = piece_crc[first];
      for (size_t p = first + 1; p < first + plan.num_pieces[ri]; ++p) {
        crc = crc32c::Combine(crc, piece_crc[p], plan.pieces[p].length);
      }
    }
    if (crc != crc32c::Unmask(entries[ri]->masked_crc32c)) {
      return DataLoss(describe(ri) + ": data checksum mismatch (the file is corrupt)");
    }
  }
  return Status::Ok();
}

}  // namespace fastckpt
