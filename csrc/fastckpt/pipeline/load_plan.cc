// The plan of a whole-checkpoint load. See load_plan.h.
#include "fastckpt/pipeline/load_plan.h"

#include <algorithm>

#include "fastckpt/format/dtypes.h"
#include "fastckpt/format/slice_key.h"
#include "fastckpt/pipeline/bundle_reader.h"

namespace fastckpt {

std::vector<uint64_t> LayoutSlabs(const std::vector<uint64_t>& sizes, uint64_t pack_below, uint64_t slab_bytes,
                                  uint64_t align, std::vector<SlabSlot>* slots) {
  std::vector<uint64_t> slabs;
  slots->assign(sizes.size(), SlabSlot{});
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] >= pack_below || sizes[i] == 0) continue;
    uint64_t need = (sizes[i] + align - 1) / align * align;
    if (slabs.empty() || slabs.back() + need > slab_bytes) slabs.push_back(0);
    (*slots)[i] = SlabSlot{slabs.size() - 1, slabs.back()};
    slabs.back() += need;
  }
  return slabs;
}

LoadPlan PlanLoad(const BundleReader& reader, uint64_t pack_below, uint64_t slab_bytes) {
  LoadPlan plan;
  const auto& keys = reader.keys();
  const auto& entries = reader.entries();
  for (size_t i = 0; i < keys.size(); ++i) {
    if (IsSliceKey(keys[i])) continue;
    const BundleEntry& e = entries[i];
    if (!e.slices.empty() || e.dtype == kDtString || !reader.StoredAsIs(i)) {
      plan.left.push_back(i);
    } else {
      plan.read.push_back(i);
    }
  }
  std::vector<uint64_t> sizes(plan.read.size());
  for (size_t k = 0; k < plan.read.size(); ++k) sizes[k] = static_cast<uint64_t>(entries[plan.read[k]].size);
  plan.slab_sizes = LayoutSlabs(sizes, pack_below, std::max<uint64_t>(slab_bytes, 1), kArrayAlign, &plan.slots);
  return plan;
}

}  // namespace fastckpt
