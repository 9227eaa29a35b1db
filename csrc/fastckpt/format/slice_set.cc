#include "fastckpt/format/slice_set.h"

#include <algorithm>
#include <limits>
#include <string>

#include "fastckpt/format/slice_key.h"

namespace fastckpt {

namespace {

using u128 = unsigned __int128;
constexpr u128 kU128Max = ~static_cast<u128>(0);

u128 SatMul(u128 a, u128 b) { return (b != 0 && a > kU128Max / b) ? kU128Max : a * b; }
u128 SatAdd(u128 a, u128 b) { return a > kU128Max - b ? kU128Max : a + b; }

// The slices as half-open boxes [lo, hi) per dimension, row-major n x k.
struct Boxes {
  size_t k = 0;
  std::vector<int64_t> lo, hi;
  int64_t Lo(size_t i, size_t d) const { return lo[i * k + d]; }
  int64_t Hi(size_t i, size_t d) const { return hi[i * k + d]; }
  bool Intersect(size_t i, size_t j) const {
    for (size_t d = 0; d < k; ++d) {
      if (std::max(Lo(i, d), Lo(j, d)) >= std::min(Hi(i, d), Hi(j, d))) return false;
    }
    return true;
  }
};

Status Overlap(const std::vector<TensorSlice>& slices, size_t i, size_t j) {
  if (i > j) std::swap(i, j);
  return DataLoss("stored slices '" + FormatSliceSpec(slices[i]) + "' and '" + FormatSliceSpec(slices[j]) +
                  "' overlap");
}

// If any bit of [from, to) is set, returns the first one; otherwise sets
// them all and returns -1. Word-at-a-time.
int64_t TestAndSetRange(std::vector<uint64_t>* bits, uint64_t from, uint64_t to) {
  auto word_mask = [](uint64_t w, uint64_t from_bit, uint64_t to_bit) {
    const uint64_t lo = std::max(from_bit, w * 64), hi = std::min(to_bit, w * 64 + 64);
    const uint64_t n = hi - lo;
    const uint64_t ones = n == 64 ? ~0ull : ((1ull << n) - 1);
    return ones << (lo - w * 64);
  };
  const uint64_t first = from / 64, last = (to - 1) / 64;
  for (uint64_t w = first; w <= last; ++w) {
    const uint64_t hit = (*bits)[w] & word_mask(w, from, to);
    if (hit != 0) return static_cast<int64_t>(w * 64 + static_cast<uint64_t>(__builtin_ctzll(hit)));
  }
  for (uint64_t w = first; w <= last; ++w) (*bits)[w] |= word_mask(w, from, to);
  return -1;
}

// Step 3: marks each live slice's cells of the compressed grid.
// REQUIRES: dims non-empty, the product of their cell counts <= kMaxGridCells.
Status MarkGrid(const Boxes& b, const std::vector<size_t>& live, const std::vector<size_t>& dims,
                const std::vector<std::vector<int64_t>>& cuts, uint64_t cells, const std::vector<TensorSlice>& slices) {
  const size_t m = dims.size();
  std::vector<uint64_t> extent(m), stride(m);
  for (size_t t = 0; t < m; ++t) extent[t] = cuts[dims[t]].size() - 1;
  stride[m - 1] = 1;
  for (size_t t = m - 1; t-- > 0;) stride[t] = stride[t + 1] * extent[t + 1];
  // Each live slice as a box of cell indices [a, e) per kept dimension.
  std::vector<uint64_t> a(live.size() * m), e(live.size() * m);
  for (size_t li = 0; li < live.size(); ++li) {
    for (size_t t = 0; t < m; ++t) {
      const std::vector<int64_t>& c = cuts[dims[t]];
      a[li * m + t] = std::lower_bound(c.begin(), c.end(), b.Lo(live[li], dims[t])) - c.begin();
      e[li * m + t] = std::lower_bound(c.begin(), c.end(), b.Hi(live[li], dims[t])) - c.begin();
    }
  }
  std::vector<uint64_t> bits((cells + 63) / 64, 0);
  std::vector<uint64_t> idx(m);
  for (size_t li = 0; li < live.size(); ++li) {
    const uint64_t* lo = &a[li * m];
    const uint64_t* hi = &e[li * m];
    for (size_t t = 0; t < m; ++t) idx[t] = lo[t];
    for (;;) {
      // One run of cells along the last kept dimension.
      uint64_t base = 0;
      for (size_t t = 0; t + 1 < m; ++t) base += idx[t] * stride[t];
      const int64_t hit = TestAndSetRange(&bits, base + lo[m - 1], base + hi[m - 1]);
      if (hit >= 0) {
        // An earlier slice marked this cell: find it (once, O(n m)).
        for (size_t lj = 0; lj < li; ++lj) {
          bool contains = true;
          for (size_t t = 0; t < m && contains; ++t) {
            const uint64_t c = (static_cast<uint64_t>(hit) / stride[t]) % extent[t];
            contains = a[lj * m + t] <= c && c < e[lj * m + t];
          }
          if (contains) return Overlap(slices, live[lj], live[li]);
        }
        return Internal("slice grid: a marked cell has no owner");
      }
      // Next run: an odometer over the other kept dimensions.
      size_t t = m - 1;
      while (t > 0) {
        --t;
        if (++idx[t] < hi[t]) break;
        idx[t] = lo[t];
        if (t == 0) {
          t = m;  // every run done
          break;
        }
      }
      if (t == m || m == 1) break;
    }
  }
  return Status::Ok();
}

// Step 4: a sweep along the dimension that minimises the comparisons.
Status Sweep(const Boxes& b, const std::vector<size_t>& live, const std::vector<size_t>& dims,
             uint64_t cells_lower_bound, const std::vector<TensorSlice>& slices) {
  // For each candidate dimension, the comparisons the sweep would make: for
  // each slice, the slices open at its start (start <= its start < end).
  size_t best = dims[0];
  u128 best_cost = kU128Max;
  std::vector<int64_t> starts(live.size()), ends(live.size());
  for (size_t d : dims) {
    for (size_t li = 0; li < live.size(); ++li) {
      starts[li] = b.Lo(live[li], d);
      ends[li] = b.Hi(live[li], d);
    }
    std::sort(starts.begin(), starts.end());
    std::sort(ends.begin(), ends.end());
    u128 cost = 0;
    for (int64_t s : starts) {
      const size_t started = std::upper_bound(starts.begin(), starts.end(), s) - starts.begin();
      const size_t ended = std::upper_bound(ends.begin(), ends.end(), s) - ends.begin();
      cost += started - ended - 1;  // the slice itself has started and not ended
    }
    if (cost < best_cost) {
      best_cost = cost;
      best = d;
    }
  }
  std::vector<size_t> order(live);
  std::sort(order.begin(), order.end(),
            [&](size_t i, size_t j) { return b.Lo(i, best) != b.Lo(j, best) ? b.Lo(i, best) < b.Lo(j, best) : i < j; });
  std::vector<size_t> open;
  uint64_t checks = 0;
  for (size_t i : order) {
    const int64_t start = b.Lo(i, best);
    open.erase(std::remove_if(open.begin(), open.end(), [&](size_t j) { return b.Hi(j, best) <= start; }), open.end());
    for (size_t j : open) {
      if (++checks > kMaxSweepChecks) {
        return Unimplemented("its " + std::to_string(slices.size()) +
                             " stored slices are laid out too irregularly to be checked for overlaps "
                             "(more than " +
                             std::to_string(cells_lower_bound) + " grid cells and more than " +
                             std::to_string(kMaxSweepChecks) +
                             " slice comparisons; TensorFlow's partitioners write grids)");
      }
      if (b.Intersect(i, j)) return Overlap(slices, j, i);
    }
    open.push_back(i);
  }
  return Status::Ok();
}

// Steps 2-4 over the live slices.
Status CheckDisjoint(const Boxes& b, const std::vector<size_t>& live, const std::vector<TensorSlice>& slices) {
  if (live.size() < 2) return Status::Ok();
  std::vector<std::vector<int64_t>> cuts(b.k);
  std::vector<size_t> dims;  // dimensions in which some two live slices differ
  for (size_t d = 0; d < b.k; ++d) {
    std::vector<int64_t>& c = cuts[d];
    c.reserve(2 * live.size());
    for (size_t i : live) {
      c.push_back(b.Lo(i, d));
      c.push_back(b.Hi(i, d));
    }
    std::sort(c.begin(), c.end());
    c.erase(std::unique(c.begin(), c.end()), c.end());
    // Two boundaries: every live slice spans exactly [c0, c1) here.
    if (c.size() > 2) dims.push_back(d);
  }
  // Identical boxes, all of them.
  if (dims.empty()) return Overlap(slices, live[0], live[1]);
  u128 cells = 1;
  for (size_t d : dims) cells = SatMul(cells, cuts[d].size() - 1);
  if (cells <= kMaxGridCells) return MarkGrid(b, live, dims, cuts, static_cast<uint64_t>(cells), slices);
  return Sweep(b, live, dims, kMaxGridCells, slices);
}

}  // namespace

Status CheckSliceSet(const std::vector<int64_t>& shape, const std::vector<TensorSlice>& slices, uint64_t* held,
                     bool* covers) {
  const size_t k = shape.size(), n = slices.size();
  Boxes b;
  b.k = k;
  b.lo.resize(n * k);
  b.hi.resize(n * k);
  u128 total = 1, sum = 0;
  for (int64_t dim : shape) total = SatMul(total, static_cast<uint64_t>(std::max<int64_t>(dim, 0)));
  std::vector<size_t> live;
  for (size_t i = 0; i < n; ++i) {
    const TensorSlice& s = slices[i];
    if (s.size() != k) {
      return DataLoss("stored slice '" + FormatSliceSpec(s) + "' has rank " + std::to_string(s.size()) +
                      ", the tensor has rank " + std::to_string(k));
    }
    u128 volume = 1;
    for (size_t d = 0; d < k; ++d) {
      const int64_t start = s[d].length < 0 ? 0 : s[d].start;
      const int64_t length = s[d].length < 0 ? shape[d] : s[d].length;
      if (start < 0 || start > shape[d] || length > shape[d] - start) {
        return DataLoss("stored slice '" + FormatSliceSpec(s) + "' lies outside the tensor's shape " +
                        FormatShape(shape));
      }
      b.lo[i * k + d] = start;
      b.hi[i * k + d] = start + length;
      volume = SatMul(volume, static_cast<uint64_t>(length));
    }
    sum = SatAdd(sum, volume);
    if (volume > 0) live.push_back(i);
  }
  FASTCKPT_RETURN_IF_ERROR(CheckDisjoint(b, live, slices));
  // Disjoint boxes inside the tensor: they cover it iff their volumes add up.
  *held = static_cast<uint64_t>(std::min<u128>(sum, std::numeric_limits<uint64_t>::max()));
  *covers = sum == total;
  return Status::Ok();
}

std::string FormatShape(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t d = 0; d < shape.size(); ++d) {
    if (d > 0) out += ", ";
    out += std::to_string(shape[d]);
  }
  return out + "]";
}

}  // namespace fastckpt
