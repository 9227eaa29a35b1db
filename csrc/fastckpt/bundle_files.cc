#include "fastckpt/bundle_files.h"

#include <dirent.h>
#include <unistd.h>

#include "fastckpt/naming.h"
#include "fastckpt/temp_files.h"
#include "fastckpt/thread_pool.h"

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

}  // namespace

Status BundleFiles::Create(const std::string& prefix, int num_shards) {
  prefix_ = prefix;
  RemoveStaleTempFiles(DirName(prefix));
  final_data_.resize(num_shards);
  temp_data_.resize(num_shards);
  files_.resize(num_shards);
  for (int s = 0; s < num_shards; ++s) {
    final_data_[s] = DataFilename(prefix, s, num_shards);
    FASTCKPT_RETURN_IF_ERROR(CreateLockedTempFile(final_data_[s], &files_[s], &temp_data_[s]));
    temps_.push_back(temp_data_[s]);
  }
  return Status::Ok();
}

Status BundleFiles::SyncData(int threads) const {
  return ParallelFor(files_.size(), threads, [&](size_t s) { return files_[s].Sync(); });
}

void BundleFiles::Abandon() {
  if (committed_) return;
  // Best effort: the save has already failed with a better error. Unlinked
  // while this process still holds each file's lock, so no other save's
  // cleanup races with it; then the descriptors are closed, which is what
  // gives the space back and drops the locks.
  for (const auto& p : temps_) RemoveFileIfExists(p).IgnoreError();
  temps_.clear();
  files_.clear();  // silent close: a deferred write error changes nothing now
}

Status BundleFiles::Commit(const std::string& index, bool durable, std::vector<std::string>* final_files) {
  const std::string final_index = IndexFilename(prefix_);
  std::string temp_index;
  File index_file;
  // Every failure before the commit point leaves nothing behind when Commit
  // returns: the temporary files are removed and closed (Abandon), the
  // index's descriptor is closed by its destructor.
  auto fail = [&](const Status& st) {
    Abandon();
    return st;
  };
  Status st = CreateLockedTempFile(final_index, &index_file, &temp_index);
  if (!st.ok()) return fail(st);
  temps_.push_back(temp_index);
  st = index_file.PwriteAll(index.data(), index.size(), 0);
  if (st.ok() && durable) st = index_file.Sync();
  // An old index of the prefix goes first when the new data files are about
  // to replace its data (same shard count), so that it is never paired with
  // new data. With another shard count the names differ: the old checkpoint
  // stays whole until the index rename below replaces its index atomically.
  if (st.ok() && AnyExists(final_data_)) st = RemoveFileIfExists(final_index);
  if (!st.ok()) return fail(st);
  for (size_t s = 0; s < final_data_.size(); ++s) {
    st = PublishTempFile(temp_data_[s], final_data_[s]);
    if (!st.ok()) {
      // Undo, best effort: the rename's error is the one to report.
      for (size_t r = 0; r < s; ++r) RemoveFileIfExists(final_data_[r]).IgnoreError();
      return fail(st);
    }
  }
  st = PublishTempFile(temp_index, final_index);
  if (!st.ok()) {
    for (const auto& p : final_data_) RemoveFileIfExists(p).IgnoreError();  // undo, best effort
    return fail(st);
  }
  committed_ = true;
  // close() can report a deferred write error (e.g. on network filesystems).
  Status done = index_file.Close();
  for (File& f : files_) done.Update(f.Close());
  if (done.ok() && durable) done = SyncDirectory(DirName(prefix_));
  if (!done.ok()) {
    // Undo, best effort; the index first, so the checkpoint disappears before its data.
    RemoveFileIfExists(final_index).IgnoreError();
    for (const auto& p : final_data_) RemoveFileIfExists(p).IgnoreError();
    return done;
  }
  // Committed: data files of the prefix with another shard count belong to
  // no index any more.
  RemoveOtherShardCounts(prefix_, static_cast<int>(final_data_.size()));
  *final_files = final_data_;
  final_files->push_back(final_index);
  return Status::Ok();
}

}  // namespace fastckpt
