// Slice keys and slice specs of partitioned tensors.
//
// TensorFlow stores each slice of a partitioned tensor under a key built by
// EncodeTensorNameSlice (tensorflow/core/util/saved_tensor_slice_util.cc)
// with the order-preserving "OrderedCode" encoding:
//
//   NumIncreasing(0) ‖ String(name) ‖ NumIncreasing(rank) ‖
//   for each dimension: SignedNumIncreasing(start) ‖ SignedNumIncreasing(length)
//
// with a whole dimension written as (0, -1). The Python twin is
// fastckpt/format/slices.py; both must produce TensorFlow's exact bytes, or a
// slice entry would look missing.
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "fastckpt/format/bundle_proto.h"

namespace fastckpt {

// Slice keys start with NumIncreasing(0), a NUL byte; tensor names cannot
// (the writer refuses them), so a key is a slice key iff this holds.
inline bool IsSliceKey(const std::string& key) { return !key.empty() && key[0] == '\0'; }

// The key slice `slice` of tensor `name` is stored under.
std::string EncodeSliceKey(const std::string& name, const TensorSlice& slice);

// Splits a slice key into the tensor's name and the slice. Returns false
// when `key` is not a well-formed slice key (truncated, a bad escape, rank
// 0, a number out of int64 range, trailing bytes). A negative length means
// the whole dimension and is returned as (0, -1), as TensorFlow does.
bool DecodeSliceKey(const std::string& key, std::string* name, TensorSlice* slice);

// TensorFlow's text form of a slice: "0,3:-" (start,length per dimension,
// '-' for a whole one). Never fails: meant for messages.
std::string FormatSliceSpec(const TensorSlice& slice);

// "tensor 'NAME'" for a message, or for a slice key "slice 'SPEC' of tensor
// 'NAME'" (a malformed slice key is shown with its bytes escaped). Names go
// through PrintableKey().
std::string DescribeKey(const std::string& key);

}  // namespace fastckpt
