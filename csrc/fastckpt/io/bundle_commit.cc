#include "fastckpt/io/bundle_commit.h"

#include <dirent.h>

#include <algorithm>

#include "fastckpt/format/naming.h"
#include "fastckpt/io/temp_files.h"

namespace fastckpt {

namespace {

// Whether any of `names` exists: then renaming the new data files into place
// replaces files an existing index of the prefix may refer to.
bool AnyExists(const std::vector<std::string>& names) {
  for (const auto& n : names) {
    if (FileExists(n)) return true;
  }
  return false;
}

// Removes the data files of `prefix` whose shard count is not `num_shards`:
// what an earlier checkpoint of the same prefix written with another shard
// count left behind once the new index replaced its index. Only names of
// the form "<prefix>.data-<shard>-of-<count>" are candidates, so another
// prefix's files ("<prefix>-1.data-...", "<prefix>_x.data-...") and
// temporary files are never touched. REQUIRES: the new index is committed.
void RemoveOtherShardCounts(const std::string& prefix, int num_shards) {
  const std::string dir = DirName(prefix);
  const size_t slash = prefix.rfind('/');
  const std::string base = slash == std::string::npos ? prefix : prefix.substr(slash + 1);
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;  // best effort: leftovers are harmless, the checkpoint is complete
  while (struct dirent* e = ::readdir(d)) {
    long shard, count;
    if (ParseDataFilename(e->d_name, base, &shard, &count) && count != num_shards) {
      // Best effort: the save has succeeded, and a file that cannot be
      // removed (say, no permission) is only unused disk space.
      RemoveFileIfExists(dir + "/" + e->d_name).IgnoreError();
    }
  }
  ::closedir(d);
}

// The shard number of `final_name` if it is DataFilename(prefix, shard,
// num_shards) for some shard, else -1.
long ShardOf(const std::string& final_name, const std::string& prefix, int num_shards) {
  if (final_name.size() <= prefix.size() || final_name.compare(0, prefix.size(), prefix) != 0) return -1;
  long shard, count;
  if (!ParseDataFilename(final_name.substr(prefix.size()), "", &shard, &count)) return -1;
  if (count != num_shards || shard >= num_shards) return -1;
  // Exactly the canonical name (ParseDataFilename also takes more digits).
  if (DataFilename(prefix, static_cast<int>(shard), num_shards) != final_name) return -1;
  return shard;
}

// Whether `temp` is a name TempFilename(final_name) can return.
bool IsTempNameOf(const std::string& temp, const std::string& final_name) {
  // TempFilename appends a suffix of fixed length to the final name.
  static const size_t kSuffix = TempFilename(std::string()).size();
  if (temp.size() != final_name.size() + kSuffix || temp.compare(0, final_name.size(), final_name) != 0) {
    return false;
  }
  const size_t slash = temp.rfind('/');
  return IsTempFilename(slash == std::string::npos ? temp : temp.substr(slash + 1));
}

}  // namespace

Status CommitBundleFiles(const std::string& prefix, int num_shards, const std::vector<DataFileNames>& data,
                         const std::string& index, bool durable, std::vector<File>* close_after_rename,
                         std::vector<std::string>* final_files) {
  const std::string final_index = IndexFilename(prefix);
  std::vector<std::string> final_data;
  final_data.reserve(data.size());
  for (const DataFileNames& d : data) final_data.push_back(d.final_name);
  std::string temp_index;
  File index_file;
  FASTCKPT_RETURN_IF_ERROR(CreateLockedTempFile(final_index, &index_file, &temp_index));
  // Every failure before the index is renamed removes its temporary file,
  // while it is still open and locked (index_file closes when this returns).
  // Best effort: the failure's own error is the one to report.
  auto fail = [&](const Status& st) {
    RemoveFileIfExists(temp_index).IgnoreError();
    return st;
  };
  Status st = index_file.PwriteAll(index.data(), index.size(), 0);
  if (st.ok() && durable) st = index_file.Sync();
  // An old index of the prefix goes first when the new data files are about
  // to replace its data (same shard count), so that it is never paired with
  // new data. With another shard count the names differ: the old checkpoint
  // stays whole until the index rename below replaces its index atomically.
  if (st.ok() && AnyExists(final_data)) {
    st = RemoveFileIfExists(final_index);
    // The old data files go too, before the renames: renaming over an
    // existing file makes ext4 (auto_da_alloc) flush the new file's dirty
    // pages at the rename, which cost ~0.5 s per 768 MB of page-cache data
    // here, while renaming to a free name costs nothing. Nothing is lost:
    // without its index the old checkpoint is gone already.
    for (size_t s = 0; st.ok() && s < final_data.size(); ++s) st = RemoveFileIfExists(final_data[s]);
  }
  if (!st.ok()) return fail(st);
  for (size_t s = 0; s < data.size(); ++s) {
    st = PublishTempFile(data[s].temp, data[s].final_name);
    if (!st.ok()) {
      // Undo, best effort: the rename's error is the one to report.
      for (size_t r = 0; r < s; ++r) RemoveFileIfExists(final_data[r]).IgnoreError();
      return fail(st);
    }
  }
  st = PublishTempFile(temp_index, final_index);
  if (!st.ok()) {
    for (const auto& p : final_data) RemoveFileIfExists(p).IgnoreError();  // undo, best effort
    return fail(st);
  }
  // close() can report a deferred write error (e.g. on network filesystems).
  Status done = index_file.Close();
  if (close_after_rename != nullptr) {
    for (File& f : *close_after_rename) done.Update(f.Close());
  }
  if (done.ok() && durable) done = SyncDirectory(DirName(prefix));
  if (!done.ok()) {
    // Undo, best effort; the index first, so the checkpoint disappears before its data.
    RemoveFileIfExists(final_index).IgnoreError();
    for (const auto& p : final_data) RemoveFileIfExists(p).IgnoreError();
    return done;
  }
  // Committed: data files of the prefix with another shard count belong to
  // no index any more.
  RemoveOtherShardCounts(prefix, num_shards);
  *final_files = std::move(final_data);
  final_files->push_back(final_index);
  return Status::Ok();
}

Status CommitMergedBundle(const std::string& prefix, std::vector<IndexEntry> entries, std::vector<DataFileNames> data,
                          int total_shards, bool durable, std::vector<std::string>* final_files, int32_t min_consumer) {
  const std::string where = "commit_bundle: checkpoint '" + prefix + "': ";
  auto bad = [&](const std::string& what) { return InvalidArgument(where + what); };
  if (prefix.empty()) return InvalidArgument("commit_bundle: the checkpoint prefix must not be empty");
  if (total_shards < 1 || total_shards > 99999) {
    return bad("total_shards must be between 1 and 99999, not " + std::to_string(total_shards));
  }
  if (min_consumer != 0 && min_consumer != kCompressedMinConsumer) {
    return bad("min_consumer must be 0 or " + std::to_string(kCompressedMinConsumer) + ", not " +
               std::to_string(min_consumer));
  }
  // The data files: each shard of total_shards exactly once, under a
  // temporary name of its own final name.
  std::vector<long> shard_of(data.size());
  std::vector<char> seen(static_cast<size_t>(total_shards), 0);
  for (size_t i = 0; i < data.size(); ++i) {
    const DataFileNames& d = data[i];
    const long s = ShardOf(d.final_name, prefix, total_shards);
    if (s < 0) {
      return bad("'" + d.final_name + "' is not the name of a data file of this checkpoint (" +
                 DataFilename(prefix, 0, total_shards) + " to " + DataFilename(prefix, total_shards - 1, total_shards) +
                 ")");
    }
    if (seen[static_cast<size_t>(s)]) return bad("data file '" + d.final_name + "' is listed twice");
    seen[static_cast<size_t>(s)] = 1;
    if (!IsTempNameOf(d.temp, d.final_name)) {
      return bad("'" + d.temp + "' is not a temporary file of '" + d.final_name + "'");
    }
    shard_of[i] = s;
  }
  for (int s = 0; s < total_shards; ++s) {
    if (!seen[static_cast<size_t>(s)]) {
      return bad("no data file was listed for shard " + std::to_string(s) + " ('" +
                 DataFilename(prefix, s, total_shards) + "')");
    }
  }
  // Renamed in shard order, as a single process renames its files.
  std::vector<DataFileNames> ordered(data.size());
  for (size_t i = 0; i < data.size(); ++i) ordered[static_cast<size_t>(shard_of[i])] = std::move(data[i]);

  for (const IndexEntry& e : entries) {
    if (e.key.empty()) return bad("tensor names must not be empty");
    const std::string name = "tensor '" + PrintableKey(e.key) + "'";
    if (e.entry.shard_id < 0 || e.entry.shard_id >= total_shards) {
      return bad(name + " is in shard " + std::to_string(e.entry.shard_id) + ", which none of its " +
                 std::to_string(total_shards) + " data files holds");
    }
    if (e.entry.offset < 0) return bad(name + " has a negative offset (" + std::to_string(e.entry.offset) + ")");
    if (e.entry.size < 0) return bad(name + " has a negative size (" + std::to_string(e.entry.size) + ")");
  }
  std::string index;
  Status st = BuildIndex(total_shards, &entries, &index, min_consumer);
  if (!st.ok()) return st.Annotate(where);
  return CommitBundleFiles(prefix, total_shards, ordered, index, durable, nullptr, final_files);
}

}  // namespace fastckpt
