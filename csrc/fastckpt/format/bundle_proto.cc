#include "fastckpt/format/bundle_proto.h"

#include "fastckpt/format/coding.h"

namespace fastckpt {

namespace {

// Wire types.
constexpr int kVarint = 0;
constexpr int kFixed64 = 1;
constexpr int kLengthDelimited = 2;
constexpr int kFixed32 = 5;

void PutTag(std::string* out, int field, int wire_type) {
  PutVarint32(out, static_cast<uint32_t>(field << 3 | wire_type));
}

// int32/int64/enum fields are varint-encoded as 64-bit two's complement.
void PutIntField(std::string* out, int field, int64_t v) {
  if (v == 0) return;
  PutTag(out, field, kVarint);
  PutVarint64(out, static_cast<uint64_t>(v));
}

void PutMessageField(std::string* out, int field, const std::string& body) {
  PutTag(out, field, kLengthDelimited);
  PutVarint64(out, body.size());
  out->append(body);
}

void EncodeShape(const std::vector<int64_t>& shape, std::string* out) {
  for (int64_t d : shape) {
    std::string dim;
    PutIntField(&dim, 1, d);  // Dim.size; a zero dimension is an empty Dim
    PutMessageField(out, 2, dim);
  }
}

void EncodeSlice(const TensorSlice& slice, std::string* out) {
  for (const SliceExtent& e : slice) {
    std::string ext;
    if (e.length >= 0) {
      PutIntField(&ext, 1, e.start);
      // `length` lives in a oneof, so protobuf writes it even when zero.
      PutTag(&ext, 2, kVarint);
      PutVarint64(&ext, static_cast<uint64_t>(e.length));
    }
    PutMessageField(out, 1, ext);
  }
}

// A bounded cursor over one serialized message.
class Parser {
 public:
  Parser(const char* p, size_t n) : p_(p), limit_(p + n) {}
  bool done() const { return p_ >= limit_; }

  // Reads the next tag. Returns false on malformed input.
  bool Next(int* field, int* wire_type) {
    uint64_t tag;
    const char* q = GetVarint64(p_, limit_, &tag);
    if (q == nullptr || (tag >> 3) == 0 || (tag >> 3) > (1u << 29)) return false;
    p_ = q;
    *field = static_cast<int>(tag >> 3);
    *wire_type = static_cast<int>(tag & 7);
    return true;
  }
  bool Varint(uint64_t* v) {
    const char* q = GetVarint64(p_, limit_, v);
    if (q == nullptr) return false;
    p_ = q;
    return true;
  }
  bool Fixed32(uint32_t* v) {
    if (limit_ - p_ < 4) return false;
    *v = DecodeFixed32(p_);
    p_ += 4;
    return true;
  }
  bool Bytes(const char** data, size_t* n) {
    uint64_t len;
    if (!Varint(&len) || len > static_cast<uint64_t>(limit_ - p_)) return false;
    *data = p_;
    *n = static_cast<size_t>(len);
    p_ += len;
    return true;
  }
  bool Skip(int wire_type) {
    uint64_t v;
    const char* d;
    size_t n;
    switch (wire_type) {
      case kVarint: return Varint(&v);
      case kFixed64:
        if (limit_ - p_ < 8) return false;
        p_ += 8;
        return true;
      case kLengthDelimited: return Bytes(&d, &n);
      case kFixed32:
        if (limit_ - p_ < 4) return false;
        p_ += 4;
        return true;
      default: return false;  // groups are not used by these messages
    }
  }

 private:
  const char* p_;
  const char* limit_;
};

#define FC_PARSE(cond, what)                                          \
  do {                                                                \
    if (!(cond)) return DataLoss(std::string("malformed ") + (what)); \
  } while (0)

Status DecodeShape(const char* data, size_t n, std::vector<int64_t>* shape) {
  Parser p(data, n);
  while (!p.done()) {
    int field, wt;
    FC_PARSE(p.Next(&field, &wt), "TensorShapeProto");
    if (field == 2 && wt == kLengthDelimited) {
      const char* d;
      size_t dn;
      FC_PARSE(p.Bytes(&d, &dn), "TensorShapeProto.dim");
      Parser dp(d, dn);
      int64_t size = 0;
      while (!dp.done()) {
        int f, w;
        FC_PARSE(dp.Next(&f, &w), "TensorShapeProto.Dim");
        if (f == 1 && w == kVarint) {
          uint64_t v;
          FC_PARSE(dp.Varint(&v), "TensorShapeProto.Dim.size");
          size = static_cast<int64_t>(v);
        } else {
          FC_PARSE(dp.Skip(w), "TensorShapeProto.Dim");
        }
      }
      if (size < 0) return DataLoss("negative dimension " + std::to_string(size) + " in shape");
      if (shape->size() >= 64) return DataLoss("shape has more than 64 dimensions");
      shape->push_back(size);
    } else if (field == 3 && wt == kVarint) {
      uint64_t v;
      FC_PARSE(p.Varint(&v), "TensorShapeProto.unknown_rank");
      if (v != 0) return DataLoss("shape of unknown rank in a checkpoint entry");
    } else {
      FC_PARSE(p.Skip(wt), "TensorShapeProto");
    }
  }
  return Status::Ok();
}

Status DecodeSlice(const char* data, size_t n, TensorSlice* slice) {
  Parser p(data, n);
  while (!p.done()) {
    int field, wt;
    FC_PARSE(p.Next(&field, &wt), "TensorSliceProto");
    if (field == 1 && wt == kLengthDelimited) {
      const char* d;
      size_t dn;
      FC_PARSE(p.Bytes(&d, &dn), "TensorSliceProto.extent");
      Parser ep(d, dn);
      SliceExtent ext;
      bool has_length = false;
      while (!ep.done()) {
        int f, w;
        FC_PARSE(ep.Next(&f, &w), "TensorSliceProto.Extent");
        uint64_t v;
        if (f == 1 && w == kVarint) {
          FC_PARSE(ep.Varint(&v), "Extent.start");
          ext.start = static_cast<int64_t>(v);
        } else if (f == 2 && w == kVarint) {
          FC_PARSE(ep.Varint(&v), "Extent.length");
          ext.length = static_cast<int64_t>(v);
          has_length = true;
        } else {
          FC_PARSE(ep.Skip(w), "TensorSliceProto.Extent");
        }
      }
      if (!has_length) ext = SliceExtent{0, -1};
      if (ext.start < 0) return DataLoss("negative slice start");
      if (slice->size() >= 64) return DataLoss("slice has more than 64 dimensions");
      slice->push_back(ext);
    } else {
      FC_PARSE(p.Skip(wt), "TensorSliceProto");
    }
  }
  return Status::Ok();
}

}  // namespace

void EncodeBundleHeader(const BundleHeader& h, std::string* out) {
  PutIntField(out, 1, h.num_shards);
  PutIntField(out, 2, h.endianness);
  std::string version;
  PutIntField(&version, 1, h.producer);
  PutIntField(&version, 2, h.min_consumer);
  for (int32_t b : h.bad_consumers) {
    PutTag(&version, 3, kVarint);
    PutVarint64(&version, static_cast<uint64_t>(static_cast<int64_t>(b)));
  }
  PutMessageField(out, 3, version);
}

void EncodeBundleEntry(const BundleEntry& e, std::string* out) {
  PutIntField(out, 1, e.dtype);
  std::string shape;
  EncodeShape(e.shape, &shape);
  PutMessageField(out, 2, shape);
  PutIntField(out, 3, e.shard_id);
  PutIntField(out, 4, e.offset);
  PutIntField(out, 5, e.size);
  if (e.masked_crc32c != 0) {
    PutTag(out, 6, kFixed32);
    PutFixed32(out, e.masked_crc32c);
  }
  for (const TensorSlice& s : e.slices) {
    std::string body;
    EncodeSlice(s, &body);
    PutMessageField(out, 7, body);
  }
}

Status DecodeBundleHeader(const char* data, size_t n, BundleHeader* h) {
  *h = BundleHeader();
  h->num_shards = 0;
  h->producer = 0;
  Parser p(data, n);
  while (!p.done()) {
    int field, wt;
    FC_PARSE(p.Next(&field, &wt), "BundleHeaderProto");
    uint64_t v;
    if (field == 1 && wt == kVarint) {
      FC_PARSE(p.Varint(&v), "BundleHeaderProto.num_shards");
      h->num_shards = static_cast<int32_t>(v);
    } else if (field == 2 && wt == kVarint) {
      FC_PARSE(p.Varint(&v), "BundleHeaderProto.endianness");
      h->endianness = static_cast<int32_t>(v);
    } else if (field == 3 && wt == kLengthDelimited) {
      const char* d;
      size_t dn;
      FC_PARSE(p.Bytes(&d, &dn), "VersionDef");
      Parser vp(d, dn);
      while (!vp.done()) {
        int f, w;
        FC_PARSE(vp.Next(&f, &w), "VersionDef");
        if (w == kVarint && f >= 1 && f <= 3) {
          FC_PARSE(vp.Varint(&v), "VersionDef");
          int32_t x = static_cast<int32_t>(v);
          if (f == 1)
            h->producer = x;
          else if (f == 2)
            h->min_consumer = x;
          else if (h->bad_consumers.size() < 1024)
            h->bad_consumers.push_back(x);
        } else if (f == 3 && w == kLengthDelimited) {  // packed bad_consumers
          const char* pd;
          size_t pn;
          FC_PARSE(vp.Bytes(&pd, &pn), "VersionDef.bad_consumers");
          Parser pp(pd, pn);
          while (!pp.done()) {
            FC_PARSE(pp.Varint(&v), "VersionDef.bad_consumers");
            if (h->bad_consumers.size() < 1024) h->bad_consumers.push_back(static_cast<int32_t>(v));
          }
        } else {
          FC_PARSE(vp.Skip(w), "VersionDef");
        }
      }
    } else {
      FC_PARSE(p.Skip(wt), "BundleHeaderProto");
    }
  }
  return Status::Ok();
}

Status DecodeBundleEntry(const char* data, size_t n, BundleEntry* e) {
  *e = BundleEntry();
  Parser p(data, n);
  while (!p.done()) {
    int field, wt;
    FC_PARSE(p.Next(&field, &wt), "BundleEntryProto");
    uint64_t v;
    const char* d;
    size_t dn;
    if (field == 1 && wt == kVarint) {
      FC_PARSE(p.Varint(&v), "BundleEntryProto.dtype");
      e->dtype = static_cast<int32_t>(v);
    } else if (field == 2 && wt == kLengthDelimited) {
      FC_PARSE(p.Bytes(&d, &dn), "BundleEntryProto.shape");
      e->shape.clear();
      FASTCKPT_RETURN_IF_ERROR(DecodeShape(d, dn, &e->shape));
    } else if (field == 3 && wt == kVarint) {
      FC_PARSE(p.Varint(&v), "BundleEntryProto.shard_id");
      e->shard_id = static_cast<int32_t>(v);
    } else if (field == 4 && wt == kVarint) {
      FC_PARSE(p.Varint(&v), "BundleEntryProto.offset");
      e->offset = static_cast<int64_t>(v);
    } else if (field == 5 && wt == kVarint) {
      FC_PARSE(p.Varint(&v), "BundleEntryProto.size");
      e->size = static_cast<int64_t>(v);
    } else if (field == 6 && wt == kFixed32) {
      uint32_t c;
      FC_PARSE(p.Fixed32(&c), "BundleEntryProto.crc32c");
      e->masked_crc32c = c;
    } else if (field == 7 && wt == kLengthDelimited) {
      FC_PARSE(p.Bytes(&d, &dn), "BundleEntryProto.slices");
      TensorSlice s;
      FASTCKPT_RETURN_IF_ERROR(DecodeSlice(d, dn, &s));
      e->slices.push_back(std::move(s));
    } else {
      FC_PARSE(p.Skip(wt), "BundleEntryProto");
    }
  }
  return Status::Ok();
}

#undef FC_PARSE

}  // namespace fastckpt
