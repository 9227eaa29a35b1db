// The files of one bundle being written, and the commit protocol.
//
// Every file is written under a temporary name (temp_files.h), locked
// against stale-file cleanup by other saves, and kept open until it has been
// renamed into place. Commit() writes the index and makes the checkpoint
// visible: when the new data files would replace an existing checkpoint's
// (same prefix, same shard count) its old index goes first (so a reader never
// pairs an old index with new data), then the data files are renamed, then
// the index, which is what makes the checkpoint visible. Once committed, data
// files of the same prefix with another shard count (an earlier checkpoint's,
// now referenced by no index) are removed; before that, an old checkpoint
// with another shard count is left whole. A failure anywhere removes what
// was already renamed: data files without their index are debris, and a save
// that reports an error must not leave a checkpoint that looks valid. Until
// Commit() succeeds, the destructor removes every temporary file. Errors name
// final file names, never temporary ones.
//
// Thread-safety: data(s) may be written concurrently (pwrite); Create,
// SyncData and Commit are called by one thread.
#pragma once

#include <string>
#include <vector>

#include "fastckpt/file_io.h"
#include "fastckpt/status.h"

namespace fastckpt {

class BundleFiles {
 public:
  BundleFiles() = default;
  BundleFiles(const BundleFiles&) = delete;
  BundleFiles& operator=(const BundleFiles&) = delete;
  ~BundleFiles() { Abandon(); }

  // Removes what crashed writers left in the directory (temp_files.h), then
  // creates the temporary data files.
  Status Create(const std::string& prefix, int num_shards);
  const File& data(int shard) const { return files_[static_cast<size_t>(shard)]; }
  Status SyncData(int threads) const;

  // Writes `index` (fsynced when durable) and commits. On success `final_files`
  // holds the data files then the index.
  Status Commit(const std::string& index, bool durable, std::vector<std::string>* final_files);

  // Removes the temporary files and closes their descriptors (no-op after a
  // successful Commit). REQUIRES: no thread is writing to data(s).
  void Abandon();

 private:
  std::string prefix_;
  std::vector<std::string> final_data_, temp_data_;
  std::vector<File> files_;
  std::vector<std::string> temps_;  // to remove unless committed
  bool committed_ = false;
};

}  // namespace fastckpt
