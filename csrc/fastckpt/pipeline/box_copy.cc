#include "fastckpt/pipeline/box_copy.h"

#include <algorithm>
#include <cstring>

namespace fastckpt {

namespace {

// Steps `o` (outer coordinates, o[j] in [0, extent of dims[j])) to the next
// run in row-major order, counting from position `from` - 1 outward (the
// coordinates at `from` and after are reset to 0 first). Returns false
// when there is none.
template <typename Dims>
bool Advance(std::vector<uint64_t>* o, size_t from, const Dims& dims) {
  for (size_t j = from; j < o->size(); ++j) (*o)[j] = 0;
  for (size_t j = from; j-- > 0;) {
    if (++(*o)[j] < dims[j].extent) return true;
    (*o)[j] = 0;
  }
  return false;
}

}  // namespace

BoxCopier::BoxCopier(const BoxLayout& in) : elem_(in.elem) {
  // A scalar is a box of one element in arrays of one element.
  const size_t k = in.extent.size();
  auto at = [&](const std::vector<uint64_t>& v, size_t d) { return k == 0 ? (v.empty() ? 1 : v[d]) : v[d]; };
  auto start = [&](const std::vector<uint64_t>& v, size_t d) -> uint64_t { return k == 0 ? 0 : v[d]; };
  const size_t rank = k == 0 ? 1 : k;

  // Merge, innermost first: dimension d joins the one inside it when that
  // one is spanned whole in both arrays (then so are its starts: 0).
  struct Raw {
    uint64_t src_size, dst_size, src_start, dst_start, extent;
  };
  std::vector<Raw> merged;
  Raw cur{at(in.src_shape, rank - 1), at(in.dst_shape, rank - 1), start(in.src_start, rank - 1),
          start(in.dst_start, rank - 1), at(in.extent, rank - 1)};
  for (size_t d = rank - 1; d-- > 0;) {
    if (cur.extent == cur.src_size && cur.extent == cur.dst_size) {
      cur = Raw{in.src_shape[d] * cur.src_size, in.dst_shape[d] * cur.dst_size, in.src_start[d] * cur.src_size,
                in.dst_start[d] * cur.dst_size, in.extent[d] * cur.extent};
    } else {
      merged.push_back(cur);
      cur = Raw{in.src_shape[d], in.dst_shape[d], in.src_start[d], in.dst_start[d], in.extent[d]};
    }
  }
  merged.push_back(cur);
  std::reverse(merged.begin(), merged.end());

  dims_.resize(merged.size());
  uint64_t src_stride = 1, dst_stride = 1, volume = 1;
  for (size_t i = merged.size(); i-- > 0;) {
    const Raw& m = merged[i];
    dims_[i] = Dim{m.src_start, m.dst_start, m.extent, src_stride, dst_stride, m.src_size};
    src_stride *= m.src_size;
    dst_stride *= m.dst_size;
    volume *= m.extent;
  }
  for (const Dim& d : dims_) {
    src_first_ += d.src_start * d.src_stride;
    src_last_ += (d.src_start + d.extent - 1) * d.src_stride;
    dst_first_ += d.dst_start * d.dst_stride;
  }
  uint64_t dst_last = 0;
  for (const Dim& d : dims_) dst_last += (d.dst_start + d.extent - 1) * d.dst_stride;
  contiguous_ = src_last_ - src_first_ + 1 == volume && dst_last - dst_first_ + 1 == volume;
}

void BoxCopier::Copy(const uint8_t* window, uint64_t begin, uint64_t end, uint8_t* dst) const {
  if (begin >= end || end <= src_first_ || begin > src_last_) return;
  const size_t outer = dims_.size() - 1;  // the last dimension holds the runs (stride 1 on both sides)
  const Dim& last = dims_[outer];
  std::vector<uint64_t> o(outer, 0);

  // The first run that ends after `begin`: walk begin's coordinates from
  // the outermost dimension; before the box in a dimension, the box's first
  // run at that prefix is it; past the box, the next prefix's first run.
  bool placed = false;
  for (size_t i = 0; i < outer && !placed; ++i) {
    const Dim& d = dims_[i];
    const uint64_t c = (begin / d.src_stride) % d.src_size;
    if (c < d.src_start) {
      placed = true;
    } else if (c >= d.src_start + d.extent) {
      if (!Advance(&o, i, dims_)) return;
      placed = true;
    } else {
      o[i] = c - d.src_start;
    }
  }
  if (!placed && begin % last.src_size >= last.src_start + last.extent) {
    if (!Advance(&o, outer, dims_)) return;
  }

  for (;;) {
    uint64_t s = last.src_start, t = last.dst_start;
    for (size_t j = 0; j < outer; ++j) {
      s += (dims_[j].src_start + o[j]) * dims_[j].src_stride;
      t += (dims_[j].dst_start + o[j]) * dims_[j].dst_stride;
    }
    if (s >= end) return;
    const uint64_t lo = std::max(s, begin), hi = std::min(s + last.extent, end);
    if (lo < hi) std::memcpy(dst + (t + (lo - s)) * elem_, window + (lo - begin) * elem_, (hi - lo) * elem_);
    if (!Advance(&o, outer, dims_)) return;
  }
}

}  // namespace fastckpt
