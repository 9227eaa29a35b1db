// The .index file of a bundle, the one builder every save uses (a single
// process's, from its plan; a multi-rank save's, from the merged entries of
// every rank): a LevelDB table (table_builder.h) whose first entry, under
// the empty key, is the BundleHeaderProto, followed by one BundleEntryProto
// per tensor key in bytewise key order (bundle_proto.h). TensorFlow's
// BundleWriter and MergeBundles write exactly this for the same entries,
// which is what makes fastckpt's index files byte-identical to TensorFlow's.
//
// Thread-safety: an IndexBuilder is used by one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastckpt/core/status.h"
#include "fastckpt/format/bundle_proto.h"
#include "fastckpt/format/table_builder.h"

namespace fastckpt {

// One entry of an index: a tensor name (or an encoded slice key) and its
// BundleEntryProto.
struct IndexEntry {
  std::string key;
  BundleEntry entry;
};

class IndexBuilder {
 public:
  // Appends into *out, which the caller owns and keeps alive; the header
  // (num_shards data files; version min_consumer, 0 as TensorFlow writes it
  // or kCompressedMinConsumer) is added here.
  IndexBuilder(int32_t num_shards, std::string* out, int32_t min_consumer = 0);
  // REQUIRES: key > every key added before (bytewise) and non-empty;
  // kInvalidArgument otherwise.
  Status Add(const std::string& key, const BundleEntry& entry);
  // Writes the remaining blocks and the footer.
  void Finish();

 private:
  TableBuilder table_;
  std::string value_;  // reused encoding buffer
  Status header_;      // the header's Add (cannot fail on an empty table)
};

// The index of `entries`, given in any order (sorted here, in place), for a
// bundle of num_shards data files. A key given twice is kInvalidArgument
// "duplicate tensor name '<key>'". `min_consumer` as for IndexBuilder.
Status BuildIndex(int32_t num_shards, std::vector<IndexEntry>* entries, std::string* index, int32_t min_consumer = 0);

}  // namespace fastckpt
