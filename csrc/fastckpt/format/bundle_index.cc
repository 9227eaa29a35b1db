#include "fastckpt/format/bundle_index.h"

#include <algorithm>

namespace fastckpt {

IndexBuilder::IndexBuilder(int32_t num_shards, std::string* out, int32_t min_consumer) : table_(out) {
  BundleHeader header;
  header.num_shards = num_shards;
  header.min_consumer = min_consumer;
  EncodeBundleHeader(header, &value_);
  header_ = table_.Add("", value_);
}

Status IndexBuilder::Add(const std::string& key, const BundleEntry& entry) {
  FASTCKPT_RETURN_IF_ERROR(header_);
  if (key.empty()) return InvalidArgument("tensor names must not be empty");
  value_.clear();
  EncodeBundleEntry(entry, &value_);
  return table_.Add(key, value_);
}

void IndexBuilder::Finish() { table_.Finish(); }

Status BuildIndex(int32_t num_shards, std::vector<IndexEntry>* entries, std::string* index, int32_t min_consumer) {
  std::vector<IndexEntry>& e = *entries;
  std::sort(e.begin(), e.end(), [](const IndexEntry& a, const IndexEntry& b) { return a.key < b.key; });
  for (size_t i = 1; i < e.size(); ++i) {
    if (e[i - 1].key == e[i].key) return InvalidArgument("duplicate tensor name '" + PrintableKey(e[i].key) + "'");
  }
  index->clear();
  IndexBuilder builder(num_shards, index, min_consumer);
  for (const IndexEntry& entry : e) FASTCKPT_RETURN_IF_ERROR(builder.Add(entry.key, entry.entry));
  builder.Finish();
  return Status::Ok();
}

}  // namespace fastckpt
