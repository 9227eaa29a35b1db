#include "fastckpt/io/bundle_files.h"

#include "fastckpt/format/naming.h"
#include "fastckpt/io/bundle_commit.h"
#include "fastckpt/io/temp_files.h"
#include "fastckpt/pipeline/helper_threads.h"

namespace fastckpt {

Status BundleFiles::Create(const std::string& prefix, int shard_base, int num_shards, int total_shards) {
  prefix_ = prefix;
  total_shards_ = total_shards;
  RemoveStaleTempFiles(DirName(prefix));
  names_.reserve(static_cast<size_t>(num_shards));
  files_.reserve(static_cast<size_t>(num_shards));
  for (int s = 0; s < num_shards; ++s) {
    DataFileNames n;
    n.final_name = DataFilename(prefix, shard_base + s, total_shards);
    File f;
    FASTCKPT_RETURN_IF_ERROR(CreateLockedTempFile(n.final_name, &f, &n.temp));
    names_.push_back(std::move(n));
    files_.push_back(std::move(f));
  }
  return Status::Ok();
}

Status BundleFiles::SyncData(int threads) const {
  return ParallelFor(files_.size(), threads, [&](size_t s) { return files_[s].Sync(); });
}

void BundleFiles::Abandon() {
  if (done_) return;
  // Best effort: the save has already failed with a better error. Unlinked
  // while this process still holds each file's lock, so no other save's
  // cleanup races with it; then the descriptors are closed, which is what
  // gives the space back and drops the locks.
  for (const auto& n : names_) RemoveFileIfExists(n.temp).IgnoreError();
  names_.clear();
  files_.clear();  // silent close: a deferred write error changes nothing now
}

Status BundleFiles::Close() {
  done_ = true;
  Status st;
  for (File& f : files_) st.Update(f.Close());
  files_.clear();
  return st;
}

Status BundleFiles::Commit(const std::string& index, bool durable, std::vector<std::string>* final_files) {
  Status st = CommitBundleFiles(prefix_, total_shards_, names_, index, durable, &files_, final_files);
  if (!st.ok()) {
    // The commit removed what it had renamed and the index's temporary
    // file; the data files' temporary files are this job's.
    Abandon();
    return st;
  }
  done_ = true;
  files_.clear();  // closed by the commit
  return Status::Ok();
}

}  // namespace fastckpt
