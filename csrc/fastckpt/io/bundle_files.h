// The data files of one bundle (or of one rank's part of it) being written.
//
// Every file is written under a temporary name (temp_files.h), locked
// against stale-file cleanup by other saves, and kept open until it has been
// renamed into place or released. Commit() writes the index and commits
// (the protocol is bundle_commit.h's, shared with multi-rank commits): the
// checkpoint is visible once it returns. A job that does not commit itself
// (a rank of a multi-rank save) reports names() to the committing process
// and later calls Close() (committed, or left for cleanup) or Abandon()
// (failed). Until Commit() or Close() succeeds, the destructor removes every
// temporary file. Errors name final file names, never temporary ones.
//
// Thread-safety: data(s) may be written concurrently (pwrite); Create,
// SyncData, Commit, Close and Abandon are called by one thread.
#pragma once

#include <string>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/io/file_io.h"
#include "fastckpt/pipeline/write_bundle.h"

namespace fastckpt {

class BundleFiles {
 public:
  BundleFiles() = default;
  BundleFiles(const BundleFiles&) = delete;
  BundleFiles& operator=(const BundleFiles&) = delete;
  ~BundleFiles() { Abandon(); }

  // Removes what crashed writers left in the directory (temp_files.h), then
  // creates the temporary data files: local shard s is shard shard_base + s
  // of total_shards (the final names carry that numbering).
  Status Create(const std::string& prefix, int shard_base, int num_shards, int total_shards);
  const File& data(int shard) const { return files_[static_cast<size_t>(shard)]; }
  Status SyncData(int threads) const;
  // The temporary and final name of each data file, in local shard order.
  const std::vector<DataFileNames>& names() const { return names_; }

  // Writes `index` (fsynced when durable) and commits. On success `final_files`
  // holds the data files then the index. On failure every file is removed
  // (Abandon).
  Status Commit(const std::string& index, bool durable, std::vector<std::string>* final_files);

  // Closes the data files and removes nothing: they were renamed into place
  // by another process's commit, or are left under their temporary names,
  // unlocked, for stale-file cleanup. Returns the first close() error (a
  // deferred write error). REQUIRES: no thread is writing to data(s).
  Status Close();

  // Removes the temporary files and closes their descriptors (no-op after a
  // successful Commit or a Close). REQUIRES: no thread is writing to data(s).
  void Abandon();

 private:
  std::string prefix_;
  int total_shards_ = 0;
  std::vector<DataFileNames> names_;
  std::vector<File> files_;
  bool done_ = false;  // committed or closed: nothing left to remove
};

}  // namespace fastckpt
