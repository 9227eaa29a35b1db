// Copying the elements of a box (a sub-array given by a start and a length
// per dimension) from one row-major array into another: the N-d strided copy
// under every partial read of a tensor (box_read.cc).
//
// The source is seen through a window: a caller that holds only elements
// [begin, end) of the source (in row-major element order; a part of a
// stored tensor just read from its file) copies exactly the box's elements
// that lie in it, so a stored piece can be streamed through a small buffer
// and each window's share of the box copied out as it arrives.
//
// Runs: trailing dimensions that the box spans whole in both arrays are
// merged, so the copy is one memcpy per run of elements contiguous in both
// (a box of whole rows is one memcpy; a column of a matrix is one memcpy per
// element). Finding the first run of a window costs O(rank), so a window
// costs O(rank + runs in it) whatever its position.
//
// Thread-safety: BoxCopier is immutable after construction; Copy() may be
// called concurrently with distinct (non-overlapping) destination elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastckpt {

// Where a box lies in a source and a destination array, both row-major.
// REQUIRES (BoxCopier's constructor): all vectors of one rank (0 allowed:
// a scalar), extent[d] >= 1, start[d] + extent[d] <= shape[d] on both
// sides, elem >= 1, and each array's bytes fit in 64 bits.
struct BoxLayout {
  std::vector<uint64_t> src_shape;
  std::vector<uint64_t> src_start;  // the box's first element in the source
  std::vector<uint64_t> dst_shape;
  std::vector<uint64_t> dst_start;  // ... and in the destination
  std::vector<uint64_t> extent;     // the box's length per dimension
  uint64_t elem = 1;                // bytes per element
};

class BoxCopier {
 public:
  explicit BoxCopier(const BoxLayout& layout);

  // Source element indices of the box's first and last element: the box's
  // elements lie in [src_first(), src_last()] and include both.
  uint64_t src_first() const { return src_first_; }
  uint64_t src_last() const { return src_last_; }
  // Destination element index of the box's first element.
  uint64_t dst_first() const { return dst_first_; }
  // True when the box is one contiguous run in both arrays: source elements
  // [src_first, src_last] are then destination elements starting at
  // dst_first, in order, and may be read straight into the destination.
  bool contiguous() const { return contiguous_; }

  // Copies every element of the box whose source index lies in [begin,
  // end) from `window` (which holds source elements [begin, end): element
  // i at window + (i - begin) * elem) to its place in `dst` (the whole
  // destination array). Elements of the box outside [begin, end) and
  // elements of `dst` outside the box are left as they are.
  void Copy(const uint8_t* window, uint64_t begin, uint64_t end, uint8_t* dst) const;

 private:
  // One dimension after merging: sizes in the source and the destination,
  // the box's start in each, its extent, and the element strides.
  struct Dim {
    uint64_t src_start, dst_start, extent, src_stride, dst_stride, src_size;
  };
  std::vector<Dim> dims_;  // outermost first; the last one holds the runs
  uint64_t elem_;
  uint64_t src_first_ = 0, src_last_ = 0, dst_first_ = 0;
  bool contiguous_ = false;
};

}  // namespace fastckpt
