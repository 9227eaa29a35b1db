// Hand-written protobuf wire encoding of the two messages stored in a
// checkpoint's .index file (tensorflow/core/protobuf/tensor_bundle.proto):
//
//   BundleHeaderProto { int32 num_shards = 1; Endianness endianness = 2;
//                       VersionDef version = 3; }
//   BundleEntryProto  { DataType dtype = 1; TensorShapeProto shape = 2;
//                       int32 shard_id = 3; int64 offset = 4; int64 size = 5;
//                       fixed32 crc32c = 6; repeated TensorSliceProto slices = 7; }
//
// The encoder reproduces protobuf C++'s output byte for byte (fields in
// number order, proto3 zero scalars omitted, `shape` always present), which
// is what makes our .index files identical to TensorFlow's. The decoder
// accepts any valid encoding, skips unknown fields, and bounds every length.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastckpt/core/status.h"

namespace fastckpt {

// One dimension of a TensorSliceProto. length < 0 means "the whole dimension"
// (TensorFlow writes an empty Extent for it).
struct SliceExtent {
  int64_t start = 0;
  int64_t length = -1;
  bool operator==(const SliceExtent& o) const { return start == o.start && length == o.length; }
};
using TensorSlice = std::vector<SliceExtent>;

// The header version of a checkpoint whose index holds compressed entries
// (fastckpt/compression.py): min_consumer above TensorFlow's tensor-bundle
// version 1, so that TensorFlow's CheckVersions refuses the checkpoint with
// its own error instead of reading compressed bytes as tensor values.
// fastckpt's reader accepts exactly this value besides TensorFlow's.
constexpr int32_t kCompressedMinConsumer = 1001;

struct BundleHeader {
  int32_t num_shards = 1;
  int32_t endianness = 0;  // 0 = little, 1 = big
  int32_t producer = 1;
  int32_t min_consumer = 0;
  std::vector<int32_t> bad_consumers;
};

struct BundleEntry {
  int32_t dtype = 0;
  std::vector<int64_t> shape;
  int32_t shard_id = 0;
  int64_t offset = 0;
  int64_t size = 0;
  uint32_t masked_crc32c = 0;  // as stored: masked
  std::vector<TensorSlice> slices;  // non-empty: a partitioned tensor's full entry
};

void EncodeBundleHeader(const BundleHeader& h, std::string* out);
void EncodeBundleEntry(const BundleEntry& e, std::string* out);

// Return kDataLoss with a description of the defect on malformed input.
Status DecodeBundleHeader(const char* data, size_t n, BundleHeader* h);
Status DecodeBundleEntry(const char* data, size_t n, BundleEntry* e);

}  // namespace fastckpt
