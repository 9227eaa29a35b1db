// BundleReader's partial reads: ReadBox() and the chunk CRC tables it
// verifies with (SetChunkCrcs).
//
// A box read is planned in three steps:
//  1. Pieces. The stored pieces the box overlaps: the tensor itself, or the
//     stored slices PlanSliceRead() picks (validated once per reader; they
//     tile the box). For each, the part of the box it holds (its sub-box)
//     and a BoxCopier placing that sub-box in the destination.
//  2. Byte ranges. A sub-box's elements lie between its first and last
//     element in the piece's row-major order: one contiguous range of the
//     entry's bytes, [need_begin, need_end). With chunk CRCs the read covers
//     that range widened to whole chunks; without, the whole entry, which
//     is the only way to check its CRC.
//  3. Tasks. Each read range is cut into tasks of about task_bytes, on chunk
//     boundaries when chunks are no larger than a task, run by ParallelFor.
//     A task reads in steps of at most kStepBytes through a scratch buffer
//     and copies the sub-box's elements of each step out of it; when the
//     sub-box is contiguous both in the piece and in the destination, the
//     needed bytes are read straight into the destination and only the
//     bytes around them (chunk edges, or the rest of an unchunked piece) go
//     through scratch, to be checksummed.
//
// Verification units are the chunks (with a table) or the whole entry
// (without). A task checks every unit that lies wholly inside it as soon as
// its last byte is read; a unit spanning tasks (a whole entry larger than a
// task, or a chunk larger than a task) leaves per-task partial CRCs, which
// are joined with crc32c::Combine and checked once every task is done.
// Either way the bytes have been copied into the destination before their
// unit is checked: on error the destination holds unspecified bytes, and
// nothing is returned to the caller.
//
// Memory: per running task one scratch buffer of at most kStepBytes; the
// plan is O(pieces + tasks + rank). Nothing grows with the tensor's size.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/dtypes.h"
#include "fastckpt/format/naming.h"
#include "fastckpt/format/slice_key.h"
#include "fastckpt/format/slice_set.h"
#include "fastckpt/pipeline/box_copy.h"
#include "fastckpt/pipeline/bundle_reader.h"
#include "fastckpt/pipeline/helper_threads.h"
#include "fastckpt/pipeline/task_plan.h"

namespace fastckpt {

namespace {

using u128 = unsigned __int128;

// Read, checksum and copy out in L2-sized steps (as BundleReader::Read).
constexpr uint64_t kStepBytes = 256ull << 10;

// One stored piece the box overlaps (step 1 and 2 above).
struct Piece {
  size_t entry;                             // its data entry
  std::shared_ptr<const ChunkCrcs> chunks;  // null: verify the whole entry
  BoxCopier copier;                         // its sub-box: source = the piece, destination = the box
  uint64_t size;                            // the entry's bytes
  uint64_t need_begin, need_end;            // entry bytes from the sub-box's first to last element
  uint64_t read_begin, read_end;            // entry bytes read
  bool direct;                              // [need_begin, need_end) lands contiguously in dest
  uint64_t dest_offset;                     // ... at this byte of dest

  // The verification unit holding entry byte `pos` (< size) and its range.
  uint64_t Unit(uint64_t pos) const { return chunks ? pos / chunks->chunk_bytes : 0; }
  void UnitRange(uint64_t unit, uint64_t* begin, uint64_t* end) const {
    if (chunks) {
      chunks->Range(unit, size, begin, end);
    } else {
      *begin = 0;
      *end = size;
    }
  }
};

struct Task {
  size_t piece;
  uint64_t begin, end;  // entry bytes
};

// The CRC of part of a unit that spans tasks.
struct Partial {
  size_t piece;
  uint64_t unit;
  uint64_t begin;  // entry bytes [begin, begin + length) of the unit
  uint64_t length;
  uint32_t crc;
};

// Scratch buffers of one read, reused across its tasks: at most one per
// thread running a task. Thread-safe.
class ScratchPool {
 public:
  explicit ScratchPool(uint64_t bytes) : bytes_(bytes) {}
  std::unique_ptr<uint8_t[]> Take() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        std::unique_ptr<uint8_t[]> b = std::move(free_.back());
        free_.pop_back();
        return b;
      }
    }
    return std::unique_ptr<uint8_t[]>(new uint8_t[bytes_]);  // uninitialised: always written by a read first
  }
  void Give(std::unique_ptr<uint8_t[]> b) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(b));
  }

 private:
  const uint64_t bytes_;
  std::mutex mu_;
  std::vector<std::unique_ptr<uint8_t[]>> free_;
};

}  // namespace

std::string BundleReader::DescribeTensor(size_t entry) const {
  if (entries_[entry].slices.empty()) return Describe(entry);
  return DescribeKey(keys_[entry]) + " in '" + IndexFilename(prefix_) + "'";
}

Status BundleReader::SetChunkCrcs(size_t entry, int64_t chunk_bytes, const uint8_t* le_crcs, size_t nbytes) {
  if (entry >= entries_.size()) {
    return InvalidArgument("no entry " + std::to_string(entry) + " in checkpoint '" + prefix_ + "' (it has " +
                           std::to_string(entries_.size()) + ")");
  }
  const BundleEntry& e = entries_[entry];
  if (!e.slices.empty()) {
    return InvalidArgument(DescribeTensor(entry) +
                           " is partitioned: it holds no bytes; register the chunk CRCs of its slices' entries");
  }
  if (DtypeElementSize(e.dtype) <= 0) {
    return InvalidArgument(Describe(entry) + " has DataType " + std::to_string(e.dtype) +
                           ", not a fixed-size dtype: chunk CRCs are for tensors read in part, and these are "
                           "read whole");
  }
  auto table = std::make_shared<ChunkCrcs>();
  FASTCKPT_RETURN_IF_ERROR(MakeChunkCrcs(chunk_bytes, le_crcs, nbytes, static_cast<uint64_t>(e.size), e.masked_crc32c,
                                         Describe(entry), table.get()));
  std::lock_guard<std::mutex> lock(chunk_mu_);
  chunk_crcs_[entry] = std::move(table);
  return Status::Ok();
}

std::shared_ptr<const ChunkCrcs> BundleReader::GetChunkCrcs(size_t entry) const {
  std::lock_guard<std::mutex> lock(chunk_mu_);
  auto it = chunk_crcs_.find(entry);
  return it == chunk_crcs_.end() ? nullptr : it->second;
}

Status BundleReader::ReadBox(size_t entry, const TensorSlice& box, uint8_t* dest, uint64_t dest_size, int threads,
                             uint64_t task_bytes, uint64_t* bytes_read) const {
  *bytes_read = 0;
  if (entry >= entries_.size()) {
    return InvalidArgument("no entry " + std::to_string(entry) + " in checkpoint '" + prefix_ + "' (it has " +
                           std::to_string(entries_.size()) + ")");
  }
  const BundleEntry& e = entries_[entry];
  const std::string what = DescribeTensor(entry);
  const int elem = DtypeElementSize(e.dtype);
  if (elem <= 0) {
    return InvalidArgument(what + " has DataType " + std::to_string(e.dtype) +
                           ", not a fixed-size dtype; box reads take fixed-size tensors (read string tensors whole)");
  }
  const size_t k = e.shape.size();
  const std::string spec = "'" + FormatSliceSpec(box) + "'";
  if (box.size() != k) {
    return InvalidArgument(what + ": box " + spec + " has rank " + std::to_string(box.size()) + ", the tensor " +
                           FormatShape(e.shape) + " rank " + std::to_string(k));
  }
  u128 volume = 1;
  for (size_t d = 0; d < k; ++d) {
    const SliceExtent& x = box[d];
    if (x.length < 0) {
      return InvalidArgument(what + ": box " + spec + " has length " + std::to_string(x.length) + " in dimension " +
                             std::to_string(d) + "; give a whole dimension as (0, " + std::to_string(e.shape[d]) + ")");
    }
    if (x.start < 0 || x.start > e.shape[d] || x.length > e.shape[d] - x.start) {
      return InvalidArgument(what + ": box " + spec + " lies outside its shape " + FormatShape(e.shape));
    }
    volume *= static_cast<uint64_t>(x.length);  // <= the tensor's elements (< 2^62, Open)
  }
  const u128 want = volume * static_cast<unsigned>(elem);
  if (static_cast<u128>(dest_size) != want) {
    return InvalidArgument(what + ": the destination has " + std::to_string(dest_size) + " bytes; box " + spec +
                           " holds " + std::to_string(static_cast<uint64_t>(want)) + " (" +
                           std::to_string(static_cast<uint64_t>(volume)) + " elements of " + std::to_string(elem) +
                           " bytes)");
  }

  // Step 1: the stored pieces, as (entry, piece shape, piece origin, sub-box).
  struct Source {
    size_t entry;
    std::vector<int64_t> shape, origin;
    TensorSlice sub;
  };
  std::vector<Source> sources;
  if (e.slices.empty()) {
    FASTCKPT_RETURN_IF_ERROR(CheckStoredAsIs(entry));
    FASTCKPT_RETURN_IF_ERROR(CheckBounds(entry));
    if (volume == 0) return Status::Ok();
    sources.push_back(Source{entry, e.shape, std::vector<int64_t>(k, 0), box});
  } else {
    std::vector<SlicePart> parts;
    FASTCKPT_RETURN_IF_ERROR(PlanSliceRead(entry, box, &parts));
    if (volume == 0) return Status::Ok();
    sources.reserve(parts.size());
    for (SlicePart& part : parts) {
      FASTCKPT_RETURN_IF_ERROR(CheckStoredAsIs(part.entry));
      const TensorSlice& s = e.slices[part.slice];
      Source src{part.entry, std::vector<int64_t>(k), std::vector<int64_t>(k), std::move(part.overlap)};
      for (size_t d = 0; d < k; ++d) {
        src.origin[d] = s[d].length < 0 ? 0 : s[d].start;
        src.shape[d] = s[d].length < 0 ? e.shape[d] : s[d].length;
      }
      sources.push_back(std::move(src));
    }
  }

  // Step 2: byte ranges. Step 3: tasks.
  if (task_bytes == 0) task_bytes = kDefaultTaskBytes;
  const uint64_t base_task = std::max<uint64_t>(task_bytes / kChunkAlign * kChunkAlign, kChunkAlign);
  std::vector<Piece> pieces;
  pieces.reserve(sources.size());
  std::vector<Task> tasks;
  uint64_t total = 0, largest_task = 0;
  for (const Source& src : sources) {
    BoxLayout layout;
    layout.elem = static_cast<uint64_t>(elem);
    for (size_t d = 0; d < k; ++d) {
      layout.src_shape.push_back(static_cast<uint64_t>(src.shape[d]));
      layout.src_start.push_back(static_cast<uint64_t>(src.sub[d].start - src.origin[d]));
      layout.dst_shape.push_back(static_cast<uint64_t>(box[d].length));
      layout.dst_start.push_back(static_cast<uint64_t>(src.sub[d].start - box[d].start));
      layout.extent.push_back(static_cast<uint64_t>(src.sub[d].length));
    }
    const BundleEntry& pe = entries_[src.entry];
    Piece p{src.entry, GetChunkCrcs(src.entry), BoxCopier(layout), static_cast<uint64_t>(pe.size), 0, 0, 0, 0, false,
            0};
    p.need_begin = p.copier.src_first() * layout.elem;
    p.need_end = (p.copier.src_last() + 1) * layout.elem;
    p.direct = p.copier.contiguous();
    p.dest_offset = p.copier.dst_first() * layout.elem;
    uint64_t step = base_task;
    if (p.chunks) {
      const uint64_t c = p.chunks->chunk_bytes;
      p.read_begin = p.need_begin / c * c;
      p.read_end = std::min(p.size, (p.need_end / c + (p.need_end % c != 0 ? 1 : 0)) * c);
      if (c <= step) step = step / c * c;  // tasks hold whole chunks
    } else {
      p.read_begin = 0;
      p.read_end = p.size;
    }
    for (uint64_t off = p.read_begin; off < p.read_end; off += step) {
      const uint64_t end = p.read_end - off < step ? p.read_end : off + step;
      tasks.push_back(Task{pieces.size(), off, end});
      largest_task = std::max(largest_task, end - off);
    }
    total += p.read_end - p.read_begin;
    pieces.push_back(std::move(p));
  }

  // The first unit of piece p whose check fails, as the error to return.
  auto mismatch = [&](const Piece& p, uint64_t unit) {
    if (!p.chunks) return DataLoss(Describe(p.entry) + ": data checksum mismatch (the file is corrupt)");
    uint64_t ub, ue;
    p.UnitRange(unit, &ub, &ue);
    const uint64_t off = static_cast<uint64_t>(entries_[p.entry].offset);
    return DataLoss(Describe(p.entry) + ": data checksum mismatch in chunk " + std::to_string(unit) + ", bytes [" +
                    std::to_string(off + ub) + ", " + std::to_string(off + ue) + ") of the file (the file is corrupt)");
  };
  auto expected = [](const Piece& p, uint64_t unit, uint32_t masked) {
    return p.chunks ? p.chunks->crcs[unit] : crc32c::Unmask(masked);
  };

  const uint64_t esize = static_cast<uint64_t>(elem);
  ScratchPool scratch_pool(std::min(kStepBytes, largest_task));
  std::vector<std::vector<Partial>> partials(tasks.size());
  if (threads < 1) threads = DefaultThreads();
  FASTCKPT_RETURN_IF_ERROR(ParallelFor(tasks.size(), threads, [&](size_t t) -> Status {
    const Task& task = tasks[t];
    const Piece& p = pieces[task.piece];
    const BundleEntry& pe = entries_[p.entry];
    const File& file = shards_[pe.shard_id];
    const uint64_t file_off = static_cast<uint64_t>(pe.offset);
    const bool all_direct = p.direct && p.need_begin <= task.begin && task.end <= p.need_end;
    std::unique_ptr<uint8_t[]> scratch;
    if (!all_direct) scratch = scratch_pool.Take();
    uint8_t* buf = scratch.get();

    // The unit being checksummed: its index and range, where this task
    // started on it, and the CRC so far.
    uint64_t unit = p.Unit(task.begin), ub = 0, ue = 0, from = task.begin;
    p.UnitRange(unit, &ub, &ue);
    uint32_t crc = 0;
    std::vector<Partial>& out = partials[t];
    for (uint64_t x = task.begin; x < task.end;) {
      const uint64_t y = std::min(task.end, x + kStepBytes);
      // The step's bytes: in scratch, or (direct) the needed ones in dest.
      struct Region {
        uint64_t begin, end;
        uint8_t* mem;
      };
      Region regions[3];
      int n = 0;
      if (p.direct) {
        const uint64_t a = std::min(std::max(p.need_begin, x), y), b = std::min(std::max(p.need_end, x), y);
        if (x < a) regions[n++] = Region{x, a, buf};
        if (a < b) regions[n++] = Region{a, b, dest + p.dest_offset + (a - p.need_begin)};
        if (b < y) regions[n++] = Region{b, y, buf + (a - x)};
      } else {
        regions[n++] = Region{x, y, buf};
      }
      for (int i = 0; i < n; ++i) {
        const Region& r = regions[i];
        FASTCKPT_RETURN_IF_ERROR(file.PreadAll(r.mem, r.end - r.begin, file_off + r.begin));
        for (uint64_t pos = r.begin; pos < r.end;) {
          if (pos == ue) {  // the next unit starts here
            unit = p.Unit(pos);
            p.UnitRange(unit, &ub, &ue);
            from = pos;
            crc = 0;
          }
          const uint64_t seg_end = std::min(r.end, ue);
          crc = crc32c::Extend(crc, r.mem + (pos - r.begin), seg_end - pos);
          pos = seg_end;
          if (pos == ue) {  // the unit's last byte: check it here if this task read all of it
            if (from == ub) {
              if (crc != expected(p, unit, pe.masked_crc32c)) return mismatch(p, unit);
            } else {
              out.push_back(Partial{task.piece, unit, from, ue - from, crc});
            }
          }
        }
      }
      if (!p.direct) p.copier.Copy(buf, x / esize, y / esize, dest);
      x = y;
    }
    if (from < task.end && task.end < ue) out.push_back(Partial{task.piece, unit, from, task.end - from, crc});
    if (scratch) scratch_pool.Give(std::move(scratch));
    CountBytes(task.end - task.begin);
    return Status::Ok();
  }));

  // Units spanning tasks: join their parts in order and check them.
  bool open = false;
  Partial acc{};
  auto finish = [&]() -> Status {
    if (!open) return Status::Ok();
    open = false;
    const Piece& p = pieces[acc.piece];
    uint64_t ub, ue;
    p.UnitRange(acc.unit, &ub, &ue);
    if (acc.begin != ub || acc.length != ue - ub) {
      return Internal(Describe(p.entry) + ": box read left bytes of a checksum unit unread");
    }
    if (acc.crc != expected(p, acc.unit, entries_[p.entry].masked_crc32c)) return mismatch(p, acc.unit);
    return Status::Ok();
  };
  for (const std::vector<Partial>& list : partials) {
    for (const Partial& part : list) {
      if (open && part.piece == acc.piece && part.unit == acc.unit && part.begin == acc.begin + acc.length) {
        acc.crc = crc32c::Combine(acc.crc, part.crc, part.length);
        acc.length += part.length;
        continue;
      }
      FASTCKPT_RETURN_IF_ERROR(finish());
      acc = part;
      open = true;
    }
  }
  FASTCKPT_RETURN_IF_ERROR(finish());
  *bytes_read = total;
  return Status::Ok();
}

}  // namespace fastckpt
