#include "fastckpt/format/slice_key.h"

#include <cstdint>

#include "fastckpt/core/status.h"

namespace fastckpt {

namespace {

using u128 = unsigned __int128;

void AppendNumIncreasing(uint64_t v, std::string* out) {
  int n = 0;
  for (uint64_t x = v; x != 0; x >>= 8) ++n;
  out->push_back(static_cast<char>(n));
  for (int i = n - 1; i >= 0; --i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void AppendOrderedString(const std::string& s, std::string* out) {
  for (char c : s) {
    if (c == '\0') {
      out->append("\x00\xff", 2);
    } else if (c == '\xff') {
      out->append("\xff\x00", 2);
    } else {
      out->push_back(c);
    }
  }
  out->append("\x00\x01", 2);
}

// Bytes SignedNumIncreasing needs for v: n bytes hold n header bits and a
// 7n-bit two's complement value.
int SignedNumLength(int64_t v) {
  uint64_t magnitude = v < 0 ? ~static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  int bit_length = magnitude == 0 ? 0 : 64 - __builtin_clzll(magnitude);
  return bit_length / 7 + 1;  // 1..10 bytes
}

// The header bits (ones for >= 0, zeros for < 0) make the byte order sort
// like the integers.
void AppendSignedNumIncreasing(int64_t v, std::string* out) {
  const int n = SignedNumLength(v);
  const int bits = 8 * n;
  u128 value = static_cast<u128>(static_cast<__int128>(v));  // sign-extended
  u128 mask = (static_cast<u128>(1) << bits) - 1;
  u128 header = ((static_cast<u128>(1) << n) - 1) << (bits - n);
  u128 encoded = (value & mask) ^ header;
  for (int i = n - 1; i >= 0; --i) out->push_back(static_cast<char>((encoded >> (8 * i)) & 0xff));
}

// A bounded cursor over a key being decoded; every Read* returns false on
// malformed or truncated input and never reads past the end.
class KeyReader {
 public:
  explicit KeyReader(const std::string& key) : p_(key.data()), end_(key.data() + key.size()) {}
  bool done() const { return p_ == end_; }

  bool ReadNumIncreasing(uint64_t* v) {
    if (p_ == end_) return false;
    const int n = static_cast<unsigned char>(*p_++);
    if (n > 8 || end_ - p_ < n) return false;
    if (n > 0 && *p_ == '\0') return false;  // not the shortest form, which TensorFlow always writes
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) x = x << 8 | static_cast<unsigned char>(*p_++);
    *v = x;
    return true;
  }

  bool ReadOrderedString(std::string* s) {
    s->clear();
    while (end_ - p_ >= 2) {
      const char c = *p_++;
      if (c == '\0') {
        const char next = *p_++;
        if (next == '\x01') return true;
        if (next != '\xff') return false;
        s->push_back('\0');
      } else if (c == '\xff') {
        if (*p_++ != '\0') return false;
        s->push_back('\xff');
      } else {
        s->push_back(c);
      }
    }
    return false;  // no terminator
  }

  bool ReadSignedNumIncreasing(int64_t* v) {
    if (p_ == end_) return false;
    // Negative numbers have their header bits inverted; un-invert so that
    // the length is the count of leading one bits of the first two bytes.
    const unsigned flip = (static_cast<unsigned char>(p_[0]) & 0x80) ? 0x00 : 0xff;
    unsigned top = (static_cast<unsigned char>(p_[0]) ^ flip) << 8;
    if (end_ - p_ >= 2) top |= static_cast<unsigned char>(p_[1]) ^ flip;
    int n = 0;
    while (n < 16 && (top & (0x8000u >> n)) != 0) ++n;
    if (n < 1 || n > 10 || end_ - p_ < n) return false;
    const int bits = 8 * n;
    u128 raw = 0;
    for (int i = 0; i < n; ++i) raw = raw << 8 | static_cast<unsigned char>(p_[i]);
    raw ^= ((static_cast<u128>(1) << n) - 1) << (bits - n);
    // Sign-extend the bits-wide two's complement value.
    const bool negative = (raw >> (bits - 1)) & 1;
    __int128 value =
        negative ? static_cast<__int128>(raw) - (static_cast<__int128>(1) << bits) : static_cast<__int128>(raw);
    if (value < INT64_MIN || value > INT64_MAX) return false;
    if (SignedNumLength(static_cast<int64_t>(value)) != n) return false;  // not the shortest form
    *v = static_cast<int64_t>(value);
    p_ += n;
    return true;
  }

 private:
  const char* p_;
  const char* end_;
};

}  // namespace

std::string EncodeSliceKey(const std::string& name, const TensorSlice& slice) {
  std::string key;
  AppendNumIncreasing(0, &key);
  AppendOrderedString(name, &key);
  AppendNumIncreasing(slice.size(), &key);
  for (const SliceExtent& x : slice) {
    // A whole dimension is stored as (0, -1) in the key, whatever the proto said.
    AppendSignedNumIncreasing(x.length < 0 ? 0 : x.start, &key);
    AppendSignedNumIncreasing(x.length < 0 ? -1 : x.length, &key);
  }
  return key;
}

bool DecodeSliceKey(const std::string& key, std::string* name, TensorSlice* slice) {
  KeyReader r(key);
  uint64_t lead, rank;
  if (!r.ReadNumIncreasing(&lead) || lead != 0) return false;
  if (!r.ReadOrderedString(name)) return false;
  if (!r.ReadNumIncreasing(&rank) || rank == 0) return false;
  // Each dimension takes at least two bytes: a corrupt rank cannot drive a
  // long loop or a large allocation.
  if (rank > key.size()) return false;
  slice->clear();
  for (uint64_t d = 0; d < rank; ++d) {
    int64_t start, length;
    if (!r.ReadSignedNumIncreasing(&start) || !r.ReadSignedNumIncreasing(&length)) return false;
    if (length < 0) {
      slice->push_back(SliceExtent{0, -1});
      continue;
    }
    if (start < 0 || length > INT64_MAX - start) return false;
    slice->push_back(SliceExtent{start, length});
  }
  return r.done();
}

std::string FormatSliceSpec(const TensorSlice& slice) {
  std::string out;
  for (size_t d = 0; d < slice.size(); ++d) {
    if (d > 0) out += ':';
    if (slice[d].length < 0) {
      out += '-';
    } else {
      out += std::to_string(slice[d].start) + "," + std::to_string(slice[d].length);
    }
  }
  return out;
}

std::string DescribeKey(const std::string& key) {
  if (!IsSliceKey(key)) return "tensor '" + PrintableKey(key) + "'";
  std::string name;
  TensorSlice slice;
  if (!DecodeSliceKey(key, &name, &slice)) return "malformed slice key '" + PrintableKey(key) + "'";
  return "slice '" + FormatSliceSpec(slice) + "' of tensor '" + PrintableKey(name) + "'";
}

}  // namespace fastckpt
