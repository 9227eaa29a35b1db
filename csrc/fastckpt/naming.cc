#include "fastckpt/naming.h"

#include <cstdio>
#include <random>

namespace fastckpt {

std::string IndexFilename(const std::string& prefix) { return prefix + ".index"; }

std::string DataFilename(const std::string& prefix, int shard, int num_shards) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), ".data-%05d-of-%05d", shard, num_shards);
  return prefix + buf;
}

std::string TempFilename(const std::string& final_name) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return final_name + ".tempstate" + std::to_string(rng());
}

}  // namespace fastckpt
