#include "fastckpt/format/table_builder.h"

#include <algorithm>

#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/format/coding.h"

namespace fastckpt {

namespace {
constexpr uint64_t kTableMagic = 0xdb4775248b80fb57ull;
constexpr size_t kFooterSize = 48;

void PutHandle(std::string* dst, uint64_t offset, uint64_t size) {
  PutVarint64(dst, offset);
  PutVarint64(dst, size);
}
}  // namespace

std::string ShortestSeparator(const std::string& start, const std::string& limit) {
  size_t min_len = std::min(start.size(), limit.size());
  size_t i = 0;
  while (i < min_len && start[i] == limit[i]) ++i;
  if (i >= min_len) return start;  // one is a prefix of the other
  auto b = static_cast<uint8_t>(start[i]);
  if (b < 0xff && b + 1 < static_cast<uint8_t>(limit[i])) {
    std::string r = start.substr(0, i + 1);
    r[i] = static_cast<char>(b + 1);
    return r;
  }
  return start;
}

std::string ShortSuccessor(const std::string& key) {
  for (size_t i = 0; i < key.size(); ++i) {
    auto b = static_cast<uint8_t>(key[i]);
    if (b != 0xff) {
      std::string r = key.substr(0, i + 1);
      r[i] = static_cast<char>(b + 1);
      return r;
    }
  }
  return key;
}

void TableBuilder::Block::Reset() {
  buf_.clear();
  restarts_.assign(1, 0);
  counter_ = 0;
  last_key_.clear();
}

void TableBuilder::Block::Add(const std::string& key, const std::string& value) {
  size_t shared = 0;
  if (counter_ < restart_interval_) {
    size_t min_len = std::min(last_key_.size(), key.size());
    while (shared < min_len && last_key_[shared] == key[shared]) ++shared;
  } else {
    restarts_.push_back(static_cast<uint32_t>(buf_.size()));
    counter_ = 0;
  }
  size_t non_shared = key.size() - shared;
  PutVarint32(&buf_, static_cast<uint32_t>(shared));
  PutVarint32(&buf_, static_cast<uint32_t>(non_shared));
  PutVarint32(&buf_, static_cast<uint32_t>(value.size()));
  buf_.append(key.data() + shared, non_shared);
  buf_.append(value);
  last_key_ = key;
  ++counter_;
}

const std::string& TableBuilder::Block::Finish() {
  for (uint32_t r : restarts_) PutFixed32(&buf_, r);
  PutFixed32(&buf_, static_cast<uint32_t>(restarts_.size()));
  return buf_;
}

void TableBuilder::WriteBlock(const std::string& contents, uint64_t* offset, uint64_t* size) {
  *offset = out_->size();
  *size = contents.size();
  out_->append(contents);
  const char type = 0;  // kNoCompression
  uint32_t crc = crc32c::Extend(crc32c::Value(contents.data(), contents.size()), &type, 1);
  out_->push_back(type);
  PutFixed32(out_, crc32c::Mask(crc));
}

void TableBuilder::FlushDataBlock() {
  if (data_.empty()) return;
  WriteBlock(data_.Finish(), &pending_offset_, &pending_size_);
  data_.Reset();
  pending_index_entry_ = true;
}

Status TableBuilder::Add(const std::string& key, const std::string& value) {
  if (has_last_key_ && !(last_key_ < key)) {
    return InvalidArgument(key == last_key_ ? "duplicate key in index: '" + key + "'"
                                            : "index keys added out of order");
  }
  // TensorFlow's addition to LevelDB: a huge entry starts a fresh block.
  if (has_last_key_ && key.size() + value.size() >= 2 * kBlockSize) FlushDataBlock();
  if (pending_index_entry_) {
    std::string handle;
    PutHandle(&handle, pending_offset_, pending_size_);
    index_.Add(ShortestSeparator(last_key_, key), handle);
    pending_index_entry_ = false;
  }
  data_.Add(key, value);
  last_key_ = key;
  has_last_key_ = true;
  if (data_.SizeEstimate() >= kBlockSize) FlushDataBlock();
  return Status::Ok();
}

void TableBuilder::Finish() {
  FlushDataBlock();
  uint64_t meta_offset, meta_size;
  Block meta(kRestartInterval);
  WriteBlock(meta.Finish(), &meta_offset, &meta_size);
  if (pending_index_entry_) {
    std::string handle;
    PutHandle(&handle, pending_offset_, pending_size_);
    index_.Add(ShortSuccessor(last_key_), handle);
    pending_index_entry_ = false;
  }
  uint64_t index_offset, index_size;
  WriteBlock(index_.Finish(), &index_offset, &index_size);
  std::string footer;
  PutHandle(&footer, meta_offset, meta_size);
  PutHandle(&footer, index_offset, index_size);
  footer.resize(kFooterSize - 8, '\0');
  PutFixed32(&footer, static_cast<uint32_t>(kTableMagic & 0xffffffffu));
  PutFixed32(&footer, static_cast<uint32_t>(kTableMagic >> 32));
  out_->append(footer);
}

}  // namespace fastckpt
