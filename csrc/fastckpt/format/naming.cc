#include "fastckpt/format/naming.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <random>

namespace fastckpt {

namespace {
constexpr const char kTempMarker[] = ".tempstate-fastckpt-";
constexpr size_t kTempMarkerLen = sizeof(kTempMarker) - 1;
constexpr size_t kTempHexDigits = 16;

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// Reads a run of at least 5 decimal digits at name[*pos], as DataFilename
// writes them (%05d); advances *pos past it.
bool ParseShardNumber(const std::string& name, size_t* pos, long* out) {
  size_t p = *pos;
  long value = 0;
  while (p < name.size() && name[p] >= '0' && name[p] <= '9') {
    if (value > 100000000) return false;  // no checkpoint has that many shards
    value = value * 10 + (name[p] - '0');
    ++p;
  }
  if (p - *pos < 5) return false;
  *pos = p;
  *out = value;
  return true;
}
}  // namespace

std::string IndexFilename(const std::string& prefix) { return prefix + ".index"; }

std::string DataFilename(const std::string& prefix, int shard, int num_shards) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), ".data-%05d-of-%05d", shard, num_shards);
  return prefix + buf;
}

std::string TempFilename(const std::string& final_name) {
  // Reseeded when the process id changes: a child forked by a thread that
  // had already drawn names would otherwise draw the same ones. (Creation is
  // O_EXCL and retried, so a repeat would only cost a retry.)
  thread_local std::mt19937_64 rng;
  thread_local pid_t seeded_for = 0;
  const pid_t pid = ::getpid();
  if (seeded_for != pid) {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), static_cast<unsigned>(pid)};
    rng.seed(seq);
    seeded_for = pid;
  }
  char hex[kTempHexDigits + 1];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(rng()));
  return final_name + kTempMarker + hex;
}

bool IsTempFilename(const std::string& name) {
  if (name.size() <= kTempMarkerLen + kTempHexDigits) return false;  // a final name must precede
  const size_t marker = name.size() - kTempHexDigits - kTempMarkerLen;
  if (name.compare(marker, kTempMarkerLen, kTempMarker) != 0) return false;
  for (size_t i = marker + kTempMarkerLen; i < name.size(); ++i) {
    if (!IsLowerHex(name[i])) return false;
  }
  return true;
}

bool ParseDataFilename(const std::string& name, const std::string& base, long* shard, long* num_shards) {
  static constexpr char kData[] = ".data-";
  static constexpr char kOf[] = "-of-";
  if (name.compare(0, base.size(), base) != 0) return false;
  size_t pos = base.size();
  if (name.compare(pos, sizeof(kData) - 1, kData) != 0) return false;
  pos += sizeof(kData) - 1;
  if (!ParseShardNumber(name, &pos, shard)) return false;
  if (name.compare(pos, sizeof(kOf) - 1, kOf) != 0) return false;
  pos += sizeof(kOf) - 1;
  if (!ParseShardNumber(name, &pos, num_shards)) return false;
  return pos == name.size();
}

}  // namespace fastckpt
