#include "fastckpt/format/table_reader.h"

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/coding.h"

namespace fastckpt {

namespace {

constexpr uint64_t kTableMagic = 0xdb4775248b80fb57ull;
constexpr size_t kFooterSize = 48;
constexpr size_t kTrailerSize = 5;
// Block types 1..7 name compressions (snappy, zlib, bzip2, lz4, lz4hc,
// xpress, zstd); anything larger is no block type at all.
constexpr int kMaxCompressionType = 7;

struct Handle {
  uint64_t offset = 0;
  uint64_t size = 0;
};

const char* DecodeHandle(const char* p, const char* limit, Handle* h) {
  p = GetVarint64(p, limit, &h->offset);
  if (p == nullptr) return nullptr;
  return GetVarint64(p, limit, &h->size);
}

// Validates a block handle and its trailer; on success *contents points at
// the block's bytes inside `file`.
Status ReadBlock(const std::string& file, const std::string& name, const Handle& h, const char** contents) {
  uint64_t file_size = file.size();
  if (h.offset > file_size || h.size > file_size || h.offset + h.size + kTrailerSize > file_size) {
    return DataLoss("corrupt index file '" + name + "': block handle points past the end of the file");
  }
  const char* data = file.data() + h.offset;
  const char* trailer = data + h.size;
  uint32_t stored = crc32c::Unmask(DecodeFixed32(trailer + 1));
  uint32_t actual = crc32c::Extend(crc32c::Value(data, h.size), trailer, 1);
  if (stored != actual) {
    return DataLoss("corrupt index file '" + name + "': block checksum mismatch at offset " + std::to_string(h.offset));
  }
  const int type = static_cast<unsigned char>(trailer[0]);
  if (type > kMaxCompressionType) {
    // Not a compression LevelDB/RocksDB knows: damage whose CRC happens to
    // match (or was recomputed), as TensorFlow's "bad block type".
    return DataLoss("corrupt index file '" + name + "': bad block type " + std::to_string(type) + " at offset " +
                    std::to_string(h.offset));
  }
  if (type != 0) {
    return Status(StatusCode::kUnimplemented, "index file '" + name + "' uses compressed blocks (type " +
                                                  std::to_string(type) +
                                                  "), which TensorFlow's checkpoint writers never produce");
  }
  *contents = data;
  return Status::Ok();
}

// Iterates one block's entries, rebuilding prefix-compressed keys.
Status ForEachBlockEntry(const char* block, size_t size, const std::string& name,
                         const std::function<Status(const std::string&, const char*, size_t)>& fn) {
  auto corrupt = [&name](const char* what) { return DataLoss("corrupt index file '" + name + "': " + what); };
  if (size < 4) return corrupt("block too small");
  uint32_t num_restarts = DecodeFixed32(block + size - 4);
  uint64_t max_restarts = (size - 4) / 4;
  if (num_restarts == 0 || num_restarts > max_restarts) return corrupt("bad restart count");
  const char* p = block;
  const char* limit = block + size - 4 - 4ull * num_restarts;
  std::string key;
  while (p < limit) {
    uint32_t shared, non_shared, value_len;
    p = GetVarint32(p, limit, &shared);
    if (p) p = GetVarint32(p, limit, &non_shared);
    if (p) p = GetVarint32(p, limit, &value_len);
    if (p == nullptr) return corrupt("truncated block entry");
    if (shared > key.size()) return corrupt("entry shares more bytes than the previous key has");
    if (non_shared > static_cast<uint64_t>(limit - p) || value_len > static_cast<uint64_t>(limit - p) - non_shared) {
      return corrupt("block entry runs past the end of its block");
    }
    key.resize(shared);
    key.append(p, non_shared);
    p += non_shared;
    FASTCKPT_RETURN_IF_ERROR(fn(key, p, value_len));
    p += value_len;
  }
  return Status::Ok();
}

}  // namespace

Status ForEachTableEntry(const std::string& file, const std::string& name,
                         const std::function<Status(const std::string&, const char*, size_t)>& fn) {
  if (file.size() < kFooterSize) {
    return DataLoss("corrupt index file '" + name + "': " + std::to_string(file.size()) +
                    " bytes is too short to be a table (truncated?)");
  }
  const char* footer = file.data() + file.size() - kFooterSize;
  uint64_t magic = DecodeFixed64(footer + kFooterSize - 8);
  if (magic != kTableMagic) {
    return DataLoss("corrupt index file '" + name + "': bad table magic number (truncated, or not a checkpoint index)");
  }
  Handle meta, index;
  const char* p = DecodeHandle(footer, footer + kFooterSize - 8, &meta);
  if (p) p = DecodeHandle(p, footer + kFooterSize - 8, &index);
  if (p == nullptr) return DataLoss("corrupt index file '" + name + "': bad footer");
  const char* index_block;
  FASTCKPT_RETURN_IF_ERROR(ReadBlock(file, name, index, &index_block));
  std::string prev_last_key;
  bool first_entry = true;
  return ForEachBlockEntry(
      index_block, index.size, name, [&](const std::string&, const char* value, size_t value_len) -> Status {
        Handle h;
        if (DecodeHandle(value, value + value_len, &h) == nullptr) {
          return DataLoss("corrupt index file '" + name + "': bad block handle in index block");
        }
        const char* block;
        FASTCKPT_RETURN_IF_ERROR(ReadBlock(file, name, h, &block));
        return ForEachBlockEntry(block, h.size, name, [&](const std::string& key, const char* v, size_t vn) -> Status {
              // Keys must strictly increase across the whole table.
          if (!first_entry && !(prev_last_key < key)) {
            return DataLoss("corrupt index file '" + name + "': keys are not sorted");
          }
          first_entry = false;
          prev_last_key = key;
          return fn(key, v, vn);
        });
      });
}

}  // namespace fastckpt
