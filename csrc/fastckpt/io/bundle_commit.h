// Committing a bundle: the one commit protocol of every save, whether its
// data files were written by this process (BundleFiles::Commit) or by many
// ranks of a job and merged by one of them (CommitMergedBundle).
//
// The data files are complete (and fsynced when durable) under their
// temporary names (temp_files.h). The commit writes the index under a locked
// temporary name (fsynced when durable); when a new data file's final name
// already exists (an old checkpoint of the prefix with the same shard count)
// the old index goes first, so that a reader never pairs an old index with
// new data, then the old data files (renaming over an existing file makes
// ext4 flush the new one at the rename); then the data files are renamed
// into place, in shard order, and
// the index last: that rename makes the checkpoint visible. Then the files
// this process holds are closed (close() can report a deferred write error)
// and the directory is fsynced when durable. A failure anywhere removes what
// was already renamed (data files without their index are debris, and a save
// that reports an error must not leave a checkpoint that looks valid) and the
// index's temporary file; the data files' temporary files are their owner's
// to remove. With another shard count, the old checkpoint stays whole until
// the index rename replaces its index. Once committed, the data files of the
// prefix with another shard count belong to no index and are removed.
// Errors name final file names, never temporary ones.
//
// Renaming needs no lock: a rank's temporary files are locked by that rank
// (against stale-file cleanup, which never removes a locked file) until it
// releases them, and the committing process renames them without holding
// their locks. Once renamed, a file has a final name, which cleanup never
// touches. So a rank must keep its files locked (SaveJob: not released)
// until the commit has returned.
//
// Thread-safety: independent commits of different prefixes may run
// concurrently; one prefix must have one committer at a time.
#pragma once

#include <string>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/format/bundle_index.h"
#include "fastckpt/io/file_io.h"
#include "fastckpt/pipeline/write_bundle.h"

namespace fastckpt {

// Commits the data files `data` (in the order given) and the index contents
// `index` for `prefix`, whose data files all have the shard count
// num_shards. `close_after_rename`: descriptors of the data files this
// process holds, closed once every file is renamed (null or empty when other
// processes hold them). On success *final_files holds the data files' final
// names, then the index's.
Status CommitBundleFiles(const std::string& prefix, int num_shards, const std::vector<DataFileNames>& data,
                         const std::string& index, bool durable, std::vector<File>* close_after_rename,
                         std::vector<std::string>* final_files);

// The commit of a multi-rank save: builds the index of `entries` (every
// rank's, in any order; sorted here) for a checkpoint of total_shards data
// files and commits it with `data` (every rank's data files, in any order).
// Checked first, each failure kInvalidArgument with a message starting
// "commit_bundle: " and naming the checkpoint: total_shards in 1..99999;
// every final name a data file of `prefix` with total_shards shards, every
// shard exactly once; every temporary name fastckpt's temporary name of its
// final name; keys non-empty and unique; every entry's shard among the data
// files, its offset and size non-negative. On success *final_files holds the
// data files' final names in shard order, then the index's. `min_consumer`:
// the header's version (0, or kCompressedMinConsumer for a checkpoint with
// compressed entries; anything else is kInvalidArgument).
Status CommitMergedBundle(const std::string& prefix, std::vector<IndexEntry> entries, std::vector<DataFileNames> data,
                          int total_shards, bool durable, std::vector<std::string>* final_files,
                          int32_t min_consumer = 0);

}  // namespace fastckpt
