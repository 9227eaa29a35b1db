#include "fastckpt/bundle_writer.h"

#include <sys/uio.h>

#include <algorithm>
#include <climits>
#include <numeric>

#include "fastckpt/crc32c.h"
#include "fastckpt/dtypes.h"
#include "fastckpt/file_io.h"
#include "fastckpt/naming.h"
#include "fastckpt/table_builder.h"
#include "fastckpt/temp_files.h"
#include "fastckpt/thread_pool.h"

namespace fastckpt {

namespace {

// Bytes checksummed and then written while still in cache.
constexpr uint64_t kInterleaveBytes = 1ull << 20;
// When the caller does not choose, a shard is added per this many bytes, up
// to one per thread: buffered writes to one file are serialized by the
// kernel (ext4 and xfs hold the inode lock across the copy into the page
// cache), so parallel copying needs separate files.
constexpr uint64_t kAutoShardBytes = 32ull << 20;
// Small tensors batched into one task are capped by count as well as bytes.
constexpr size_t kMaxPiecesPerTask = 4096;

// A contiguous range of one item's bytes, written at file_offset.
struct Piece {
  uint32_t item;
  uint64_t src_offset;
  uint64_t length;
  uint64_t file_offset;
};

// Pieces [first, end) of one shard, contiguous in the file.
struct Task {
  int shard;
  size_t first;
  size_t end;
};

std::string Quoted(const std::string& key) { return "'" + PrintableKey(key) + "'"; }

Status ValidateItem(const WriteItem& it) {
  if (it.key.empty()) return InvalidArgument("tensor names must not be empty");
  int elem = DtypeElementSize(it.dtype);
  if (elem < 0 || it.dtype == kDtVariant) {
    return InvalidArgument("tensor " + Quoted(it.key) + " has dtype " + std::to_string(it.dtype) +
                           ", which a checkpoint cannot hold");
  }
  if (it.nbytes > 0 && it.data == nullptr) {
    return InvalidArgument("tensor " + Quoted(it.key) + " has no data buffer");
  }
  if (!it.slices.empty()) {
    if (it.nbytes != 0) {
      return InvalidArgument("partitioned tensor " + Quoted(it.key) + " must not carry data");
    }
    return Status::Ok();
  }
  // Element count, with overflow checks: a shape can come from anywhere.
  unsigned __int128 numel = 1;
  for (int64_t d : it.shape) {
    if (d < 0) return InvalidArgument("tensor " + Quoted(it.key) + " has a negative dimension");
    numel *= static_cast<uint64_t>(d);
    if (numel > (static_cast<unsigned __int128>(1) << 62)) {
      return InvalidArgument("tensor " + Quoted(it.key) + " has too many elements");
    }
  }
  if (it.dtype == kDtString) {
    if (!it.has_crc) return InvalidArgument("string tensor " + Quoted(it.key) + " lacks its CRC");
    return Status::Ok();
  }
  if (numel * static_cast<unsigned>(elem) != it.nbytes) {
    return InvalidArgument("tensor " + Quoted(it.key) + ": " + std::to_string(it.nbytes) +
                           " bytes do not match its shape and dtype");
  }
  return Status::Ok();
}

// Removes the temporary files unless the bundle was committed.
class TempFiles {
 public:
  ~TempFiles() {
    if (committed_) return;
    for (const auto& p : paths_) RemoveFileIfExists(p);
  }
  void Add(const std::string& p) { paths_.push_back(p); }
  void Commit() { committed_ = true; }

 private:
  std::vector<std::string> paths_;
  bool committed_ = false;
};

Status WriteTask(const Task& t, const std::vector<Piece>& pieces, const std::vector<WriteItem>& items,
                 const File& file, std::vector<uint32_t>* piece_crc);

// Writes one task's pieces; with `durable`, also starts their writeback so
// that the disk works while other tasks are still being copied.
Status RunTask(const Task& t, const std::vector<Piece>& pieces, const std::vector<WriteItem>& items,
               const File& file, bool durable, std::vector<uint32_t>* piece_crc) {
  FASTCKPT_RETURN_IF_ERROR(WriteTask(t, pieces, items, file, piece_crc));
  if (!durable) return Status::Ok();
  const Piece& last = pieces[t.end - 1];
  uint64_t begin = pieces[t.first].file_offset;
  return file.StartWriteback(begin, last.file_offset + last.length - begin);
}

Status WriteTask(const Task& t, const std::vector<Piece>& pieces, const std::vector<WriteItem>& items,
                 const File& file, std::vector<uint32_t>* piece_crc) {
  // A single large piece: checksum and write it in cache-sized steps.
  if (t.end - t.first == 1 && pieces[t.first].length > kInterleaveBytes) {
    const Piece& pc = pieces[t.first];
    const uint8_t* src = items[pc.item].data + pc.src_offset;
    uint32_t crc = 0;
    for (uint64_t done = 0; done < pc.length;) {
      uint64_t n = std::min(kInterleaveBytes, pc.length - done);
      crc = crc32c::Extend(crc, src + done, n);
      FASTCKPT_RETURN_IF_ERROR(file.PwriteAll(src + done, n, pc.file_offset + done));
      done += n;
    }
    (*piece_crc)[t.first] = crc;
    return Status::Ok();
  }
  // A run of small pieces: checksum each, write them with one pwritev per
  // cache-sized batch.
  std::vector<struct iovec> iov;
  iov.reserve(std::min<size_t>(t.end - t.first, IOV_MAX));
  uint64_t batch_offset = pieces[t.first].file_offset;
  uint64_t batch_bytes = 0;
  for (size_t i = t.first; i < t.end; ++i) {
    const Piece& pc = pieces[i];
    const uint8_t* src = items[pc.item].data + pc.src_offset;
    (*piece_crc)[i] = crc32c::Value(src, pc.length);
    iov.push_back({const_cast<uint8_t*>(src), static_cast<size_t>(pc.length)});
    batch_bytes += pc.length;
    if (batch_bytes >= kInterleaveBytes || iov.size() == IOV_MAX || i + 1 == t.end) {
      FASTCKPT_RETURN_IF_ERROR(file.PwritevAll(iov.data(), static_cast<int>(iov.size()), batch_offset));
      batch_offset += batch_bytes;
      batch_bytes = 0;
      iov.clear();
    }
  }
  return Status::Ok();
}

}  // namespace

Status WriteBundle(const std::string& prefix, const std::vector<WriteItem>& items,
                   const WriteOptions& options, WriteResult* result) {
  if (prefix.empty()) return InvalidArgument("checkpoint prefix must not be empty");
  if (items.size() >= (1ull << 31)) return InvalidArgument("too many tensors");
  const int threads = options.threads > 0 ? options.threads : DefaultThreads();
  const uint64_t task_bytes = std::max<uint64_t>(options.task_bytes, 4096);

  // 1. Validate, and order the entries as the index needs them.
  std::vector<uint32_t> order(items.size());
  std::iota(order.begin(), order.end(), 0u);
  for (const WriteItem& it : items) FASTCKPT_RETURN_IF_ERROR(ValidateItem(it));
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return items[a].key < items[b].key; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (items[order[i - 1]].key == items[order[i]].key) {
      return InvalidArgument("duplicate tensor name " + Quoted(items[order[i]].key));
    }
  }

  // 2. Shards: balance bytes greedily (largest first onto the lightest shard).
  std::vector<uint32_t> data_items;  // in data file order
  uint64_t total = 0;
  for (size_t k = 0; k < items.size(); ++k) {
    uint32_t i = options.sort_data ? order[k] : static_cast<uint32_t>(k);
    if (items[i].slices.empty()) {
      data_items.push_back(i);
      total += items[i].nbytes;
    }
  }
  int num_shards = options.num_shards;
  if (num_shards <= 0) {
    uint64_t by_size = (total + kAutoShardBytes - 1) / kAutoShardBytes;
    num_shards = static_cast<int>(std::clamp<uint64_t>(by_size, 1, static_cast<uint64_t>(threads)));
    num_shards = std::min<int>(num_shards, std::max<size_t>(data_items.size(), 1));
  }
  if (num_shards > 99999) return InvalidArgument("num_shards must be at most 99999");
  std::vector<int32_t> shard_of(items.size(), 0);
  if (num_shards > 1) {
    std::vector<uint32_t> by_size = data_items;
    std::stable_sort(by_size.begin(), by_size.end(),
                     [&](uint32_t a, uint32_t b) { return items[a].nbytes > items[b].nbytes; });
    std::vector<uint64_t> load(num_shards, 0);
    for (uint32_t i : by_size) {
      int s = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
      shard_of[i] = s;
      load[s] += items[i].nbytes;
    }
  }

  // 3. File layout (data file order within each shard, no padding, as TensorFlow)
  //    and the work list.
  std::vector<uint64_t> shard_size(num_shards, 0);
  std::vector<uint64_t> offset_of(items.size(), 0);
  std::vector<size_t> first_piece(items.size(), 0), num_pieces(items.size(), 0);
  std::vector<Piece> pieces;
  std::vector<Task> tasks;
  std::vector<std::vector<Task>> shard_tasks(num_shards);
  {
    std::vector<std::vector<uint32_t>> per_shard(num_shards);
    for (uint32_t i : data_items) per_shard[shard_of[i]].push_back(i);
    for (int s = 0; s < num_shards; ++s) {
      uint64_t pos = 0;
      size_t batch_first = pieces.size();
      uint64_t batch_bytes = 0;
      auto flush = [&]() {
        if (pieces.size() > batch_first) shard_tasks[s].push_back({s, batch_first, pieces.size()});
        batch_first = pieces.size();
        batch_bytes = 0;
      };
      for (uint32_t i : per_shard[s]) {
        const WriteItem& it = items[i];
        offset_of[i] = pos;
        first_piece[i] = pieces.size();
        if (it.nbytes > task_bytes) {
          flush();
          for (uint64_t off = 0; off < it.nbytes; off += task_bytes) {
            pieces.push_back({i, off, std::min(task_bytes, it.nbytes - off), pos + off});
            flush();
          }
        } else if (it.nbytes > 0) {
          pieces.push_back({i, 0, it.nbytes, pos});
          batch_bytes += it.nbytes;
          if (batch_bytes >= task_bytes || pieces.size() - batch_first >= kMaxPiecesPerTask) flush();
        }
        num_pieces[i] = pieces.size() - first_piece[i];
        pos += it.nbytes;
      }
      flush();
      shard_size[s] = pos;
    }
  }

  // Interleave the shards' tasks so that threads working at the same time
  // write different files (writes to one file are serialized by the kernel).
  for (size_t round = 0, left = 1; left > 0; ++round) {
    left = 0;
    for (auto& st : shard_tasks) {
      if (round < st.size()) tasks.push_back(st[round]);
      if (round + 1 < st.size()) ++left;
    }
  }

  // 4. Write the data shards under temporary names, after removing what
  //    crashed saves left in this directory.
  RemoveStaleTempFiles(DirName(prefix));
  TempFiles temps;
  std::vector<std::string> final_data(num_shards), temp_data(num_shards);
  std::vector<File> files(num_shards);
  for (int s = 0; s < num_shards; ++s) {
    final_data[s] = DataFilename(prefix, s, num_shards);
    temp_data[s] = TempFilename(final_data[s]);
    FASTCKPT_RETURN_IF_ERROR(CreateLockedTempFile(temp_data[s], &files[s]));
    temps.Add(temp_data[s]);
  }
  std::vector<uint32_t> piece_crc(pieces.size(), 0);
  FASTCKPT_RETURN_IF_ERROR(ParallelFor(tasks.size(), threads, [&](size_t t) {
    return RunTask(tasks[t], pieces, items, files[tasks[t].shard], options.durable, &piece_crc);
  }));
  if (options.durable) {
    FASTCKPT_RETURN_IF_ERROR(ParallelFor(files.size(), threads, [&](size_t s) { return files[s].Sync(); }));
  }
  // The files stay open, and so locked against stale-file cleanup by other
  // saves, until they have been renamed into place (step 6).

  // 5. The index: header under "", then one entry per key.
  std::string index;
  {
    TableBuilder table(&index);
    BundleHeader header;
    header.num_shards = num_shards;
    std::string value;
    EncodeBundleHeader(header, &value);
    FASTCKPT_RETURN_IF_ERROR(table.Add("", value));
    for (uint32_t i : order) {
      const WriteItem& it = items[i];
      BundleEntry e;
      e.dtype = it.dtype;
      e.shape = it.shape;
      if (it.slices.empty()) {
        uint32_t crc = 0;
        if (it.has_crc) {
          crc = it.crc;
        } else if (num_pieces[i] > 0) {
          crc = piece_crc[first_piece[i]];
          for (size_t p = first_piece[i] + 1; p < first_piece[i] + num_pieces[i]; ++p) {
            crc = crc32c::Combine(crc, piece_crc[p], pieces[p].length);
          }
        }
        e.shard_id = shard_of[i];
        e.offset = static_cast<int64_t>(offset_of[i]);
        e.size = static_cast<int64_t>(it.nbytes);
        e.masked_crc32c = crc32c::Mask(crc);
      } else {
        e.slices = it.slices;
      }
      value.clear();
      EncodeBundleEntry(e, &value);
      FASTCKPT_RETURN_IF_ERROR(table.Add(it.key, value));
    }
    table.Finish();
  }
  const std::string final_index = IndexFilename(prefix);
  const std::string temp_index = TempFilename(final_index);
  File index_file;
  FASTCKPT_RETURN_IF_ERROR(CreateLockedTempFile(temp_index, &index_file));
  temps.Add(temp_index);
  FASTCKPT_RETURN_IF_ERROR(index_file.PwriteAll(index.data(), index.size(), 0));
  if (options.durable) FASTCKPT_RETURN_IF_ERROR(index_file.Sync());

  // 6. Commit: an old index of this prefix goes first, then data, then the
  //    new index, which is what makes the checkpoint visible.
  //    A failure anywhere here removes what was already renamed into place:
  //    data files without their index are debris, and a save that reports an
  //    error must not leave a checkpoint that looks valid.
  FASTCKPT_RETURN_IF_ERROR(RemoveFileIfExists(final_index));
  for (int s = 0; s < num_shards; ++s) {
    Status st = RenameFile(temp_data[s], final_data[s]);
    if (!st.ok()) {
      for (int r = 0; r < s; ++r) RemoveFileIfExists(final_data[r]);
      return st;
    }
  }
  Status st = RenameFile(temp_index, final_index);
  if (!st.ok()) {
    for (const auto& p : final_data) RemoveFileIfExists(p);
    return st;
  }
  temps.Commit();
  // close() can report a deferred write error (e.g. on network filesystems).
  Status done = index_file.Close();
  for (File& f : files) done.Update(f.Close());
  if (done.ok() && options.durable) done = SyncDirectory(DirName(prefix));
  if (!done.ok()) {
    RemoveFileIfExists(final_index);  // first: the checkpoint disappears before its data
    for (const auto& p : final_data) RemoveFileIfExists(p);
    return done;
  }

  result->num_shards = num_shards;
  result->data_bytes = total;
  result->files = final_data;
  result->files.push_back(final_index);
  return Status::Ok();
}

}  // namespace fastckpt
