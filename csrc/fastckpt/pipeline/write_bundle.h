// Writes one checkpoint bundle: PREFIX.data-SSSSS-of-NNNNN shards and the
// PREFIX.index table, in TensorFlow's V2 format.
//
// Pipeline, per chunk of tensor bytes:   source -> CRC32C -> pwrite
// (device arrays and snapshots add a staging step: save_job.h).
// Host tensors are read in place: bytes go from the caller's buffer to the
// file with no intermediate copy. Chunks run on a thread pool; a large
// tensor is split into chunks whose CRCs are joined with crc32c::Combine,
// and runs of small tensors are batched into one pwritev. Within a chunk,
// bytes are checksummed and written in cache-sized pieces so that each byte
// is pulled from memory once.
//
// Commit protocol: every file is written under a temporary name
// (<final>.tempstate-fastckpt-<random>), fsynced when `durable`, then the data files
// are renamed into place and the index last, so a half-written checkpoint
// never looks valid. An existing index of the same prefix is removed before
// the new data files replace its data, so a reader never pairs an old index
// with new data. On any failure the temporary files are removed.
//
// Multi-rank saves: a job with total_shards > 0 writes shards
// [shard_base, shard_base + num_shards) of a checkpoint of total_shards data
// files (the file names and the entries' shard ids carry that numbering).
// With commit == false (SaveJob only) it writes and fsyncs its data files
// but neither writes an index nor renames anything: it reports its entries
// and temporary files, and one process commits every rank's files with one
// index (bundle_commit.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/device/copy_engine.h"
#include "fastckpt/format/bundle_index.h"
#include "fastckpt/format/bundle_proto.h"
#include "fastckpt/pipeline/task_plan.h"

namespace fastckpt {

// One index entry to write. The caller owns `data` and keeps it alive and
// unchanged until WriteBundle returns.
struct WriteItem {
  std::string key;                 // tensor name, or an encoded slice key
  int32_t dtype = 0;               // TensorFlow DataType number
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;   // host bytes (C order); null iff nbytes == 0
  uint64_t nbytes = 0;
  // For string tensors, whose entry CRC is not the CRC of the file bytes:
  // the precomputed (unmasked) CRC.
  bool has_crc = false;
  uint32_t crc = 0;
  // Non-empty: the metadata-only entry of a partitioned tensor (no data).
  std::vector<TensorSlice> slices;
  // Device memory instead of `data` when device >= 0: nbytes at device_ptr
  // on that device, ready once the work queued so far on the caller's
  // `stream` is done. Such items are staged through host buffers by the copy
  // engine (see save_job.h).
  int device = -1;
  DevicePtr device_ptr = 0;
  uint64_t stream = kNoStream;
  bool on_device() const { return device >= 0; }
};

struct WriteOptions {
  int num_shards = 0;                // 0: one per 32 MiB, at most one per thread
  int threads = 0;                   // 0: DefaultThreads()
  bool durable = true;               // fsync files and directory before commit
  uint64_t task_bytes = kDefaultTaskBytes;  // granularity of parallel work
  // Data file order: by key (as TensorFlow's Saver, whose tensors arrive
  // sorted) or as given (as a SaveV2 op given tensors in another order).
  bool sort_data = true;
  // > 0: this job writes shards shard_base .. shard_base + num_shards - 1 of
  // a checkpoint of total_shards data files. An automatic num_shards is at
  // most total_shards - shard_base. 0: the job's files are the whole
  // checkpoint (shard_base must be 0).
  int shard_base = 0;
  int total_shards = 0;
  // > 0: the result carries the CRC of every chunk_bytes-sized chunk of each
  // data entry (chunk_crcs.h). A multiple of 4096, at most 1 GiB.
  int64_t chunk_bytes = 0;
  // false (SaveJob only): Finish() writes the data files (fsynced when
  // durable) and reports them and the entries; no index, no rename, and the
  // files stay open and locked until SaveJob::Release(). A save that commits
  // must write every shard of its checkpoint.
  bool commit = true;
};

// A data file written under a temporary name, and the name it commits to.
struct DataFileNames {
  std::string temp;
  std::string final_name;
};

struct WriteResult {
  int num_shards = 0;                // this job's data files
  uint64_t data_bytes = 0;
  std::vector<std::string> files;    // committed: final paths, data files then index
  // Not committed (WriteOptions::commit false): the index entry of every
  // item, in key order, with global shard ids (a partitioned tensor's
  // data-less entry: its slices, shard 0, offset 0, size 0, crc 0, as
  // TensorFlow writes it), and the job's data files in shard order.
  std::vector<IndexEntry> entries;
  std::vector<DataFileNames> data_files;
  // chunk_bytes > 0: (key, packed little-endian uint32 chunk CRCs) of every
  // data entry, in key order (chunk_crcs.h); empty for a zero-size entry.
  std::vector<std::pair<std::string, std::string>> chunk_crcs;
};

// Writes host items synchronously (a SaveJob without staging); always
// commits (options.commit is ignored).
// REQUIRES: keys are non-empty and unique (checked: kInvalidArgument).
// Thread-safety: independent calls may run concurrently for different
// prefixes. The GIL must NOT be held (no Python objects are touched).
Status WriteBundle(const std::string& prefix, std::vector<WriteItem> items, const WriteOptions& options,
                   WriteResult* result);

}  // namespace fastckpt
