// File names of a checkpoint with prefix P (tensorflow/core/util/tensor_bundle/naming.cc):
//   P.index                     the table of entries
//   P.data-SSSSS-of-NNNNN       shard S of N, zero-padded to 5 digits
// and the temporary names files are written under before being renamed.
#pragma once

#include <string>

namespace fastckpt {

std::string IndexFilename(const std::string& prefix);
std::string DataFilename(const std::string& prefix, int shard, int num_shards);
// "<final>.tempstate<random>": unique per call; same pattern as TensorFlow.
std::string TempFilename(const std::string& final_name);

}  // namespace fastckpt
