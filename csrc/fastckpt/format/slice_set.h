// Validation of a partitioned tensor's stored slices: each lies inside the
// tensor's shape, no two share an element, and whether together they cover
// the tensor. One check, used by every reader of partitioned tensors
// (BundleReader::Partition, hence get_tensor, get_slice and Verify).
//
// Algorithm (n slices of rank k; "live" slices are those holding at least
// one element -- a slice with a zero-length extent holds none and overlaps
// nothing, as in TensorFlow's TensorSlice::Intersect):
//
//  1. Bounds and volumes, O(n k). Once the slices are known to be pairwise
//     disjoint and in bounds, they cover the tensor iff their volumes sum to
//     the tensor's element count.
//  2. Coordinate compression, O(n k log n): per dimension, the sorted
//     distinct slice boundaries cut the tensor into a grid of T cells
//     (dimensions where every live slice has the same extent are dropped:
//     they cannot separate two slices). Every slice is exactly a box of
//     cells.
//  3. If T <= kMaxGridCells, every live slice marks its cells in a bitmap of
//     T bits, a word at a time along the last dimension; a cell found marked
//     is an overlap. Each cell is marked at most once before the first
//     overlap ends the walk, so this costs O(T) at most, and O(n) for the
//     usual partitions: TensorFlow's partitioners (and multi-rank sharding)
//     produce grids, where T == n.
//  4. Otherwise (many distinct boundaries in several dimensions: no grid) a
//     sweep along the dimension that minimises the work: slices sorted by
//     their start in that dimension, each compared with the slices still
//     open there. The work is counted and bounded by kMaxSweepChecks pair
//     comparisons.
//
// Bound: O(n k log n + min(T, 2^26) + 2^26 k) whatever the input; memory
// O(n k) plus at most 8 MiB of bitmap. Only a layout needing both more than
// 2^26 grid cells and more than 2^26 sweep comparisons -- tens of thousands
// of slices in an irregular, non-grid arrangement, which no TensorFlow
// partitioner writes -- is refused (kUnimplemented) instead of checked.
//
// Thread-safety: a pure function.
#pragma once

#include <cstdint>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/format/bundle_proto.h"

namespace fastckpt {

// The work bounds above, exposed for tests and documentation.
constexpr uint64_t kMaxGridCells = 1ull << 26;
constexpr uint64_t kMaxSweepChecks = 1ull << 26;

// Checks `slices` (extents with length < 0 meaning a whole dimension) of a
// tensor of shape `shape`. On success *held is the number of elements the
// slices hold together (at most the tensor's) and *covers says whether that
// is every element of the tensor.
// REQUIRES: the tensor has fewer than 2^64 elements (BundleReader::Open
// bounds it below 2^62). Errors (kDataLoss unless said otherwise),
// without the tensor's name, which the caller adds:
//   "stored slice 'SPEC' has rank R, the tensor has rank K"
//   "stored slice 'SPEC' lies outside the tensor's shape [..]"
//   "stored slices 'A' and 'B' overlap"
//   kUnimplemented: the layout is too irregular to check within the bound.
Status CheckSliceSet(const std::vector<int64_t>& shape, const std::vector<TensorSlice>& slices, uint64_t* held,
                     bool* covers);

// "[2, 3]": a shape for messages.
std::string FormatShape(const std::vector<int64_t>& shape);

}  // namespace fastckpt
