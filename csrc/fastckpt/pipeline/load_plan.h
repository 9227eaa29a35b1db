// The plan of a whole-checkpoint load (the reader's read_all): which entries
// are read into new arrays and which are left to the caller, and where each
// array goes. Pure computation on a parsed index; no I/O, no allocation of
// the arrays themselves (the caller allocates them, e.g. as numpy arrays).
//
// Small tensors are packed into shared slabs: 100,000 separate small
// allocations cost more than reading their bytes, in allocator calls and in
// page faults on 4 KiB pages, while a slab is large enough for the allocator
// to back it with huge pages.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fastckpt {

class BundleReader;

// Every array a load makes starts at a multiple of this (TensorFlow takes a
// fed array without a copy only at this alignment).
constexpr uint64_t kArrayAlign = 64;

// Where one tensor goes: slab `slab`, byte `offset` into it; slab ==
// kOwnAllocation for a tensor allocated on its own.
struct SlabSlot {
  static constexpr size_t kOwnAllocation = SIZE_MAX;
  size_t slab = kOwnAllocation;
  uint64_t offset = 0;
};

// Packs tensors (by byte size, in order) into slabs of at most `slab_bytes`,
// each tensor at a multiple of `align`. A tensor of size >= `pack_below`, or
// of size 0, gets no slot (kOwnAllocation) and is allocated on its own; a
// tensor larger than slab_bytes but below pack_below gets a slab of its own.
// Returns the slab sizes; fills one slot per size.
// REQUIRES: align >= 1.
std::vector<uint64_t> LayoutSlabs(const std::vector<uint64_t>& sizes, uint64_t pack_below, uint64_t slab_bytes,
                                  uint64_t align, std::vector<SlabSlot>* slots);

struct LoadPlan {
  // Fixed-size, unpartitioned entries stored as is, read into new arrays,
  // in key order.
  std::vector<size_t> read;
  // Listed tensors left to the caller, in key order: DT_STRING tensors,
  // partitioned tensors, compressed entries (BundleReader::StoredAsIs).
  std::vector<size_t> left;
  // One per entry of `read`, and the slab sizes (LayoutSlabs with align
  // kArrayAlign).
  std::vector<SlabSlot> slots;
  std::vector<uint64_t> slab_sizes;
};

// Plans the load of every listed tensor of `reader`. Nothing is checked
// against the data files here: the caller bounds-checks every entry of
// `read` (BundleReader::CheckBounds) before allocating anything, so a lying
// index cannot cause a huge allocation. pack_below = 0 disables packing;
// slab_bytes 0 counts as 1.
LoadPlan PlanLoad(const BundleReader& reader, uint64_t pack_below, uint64_t slab_bytes);

// Bytes to skip from `address` to the next multiple of kArrayAlign. A
// buffer allocated kArrayAlign bytes longer than needed always has room.
inline uint64_t AlignmentShift(uintptr_t address) { return (kArrayAlign - address % kArrayAlign) % kArrayAlign; }

}  // namespace fastckpt
