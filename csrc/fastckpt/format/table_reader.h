// Reads every (key, value) pair of a LevelDB-format table held in memory
// (the whole .index file). See table_builder.h for the layout.
//
// Every block's trailer CRC is verified, every offset and length is checked
// against the buffer before use, and allocation is bounded by the file's
// actual size, so a garbled or hostile index gives kDataLoss, never a crash.
#pragma once

#include <functional>
#include <string>

#include "fastckpt/core/status.h"

namespace fastckpt {

// Calls `fn(key, value)` for each entry in key order. Stops and returns the
// first non-OK status from `fn`. `name` (the file path) is used in messages.
// REQUIRES: `file` holds the complete file contents.
Status ForEachTableEntry(const std::string& file, const std::string& name,
                         const std::function<Status(const std::string& key, const char* value, size_t value_len)>& fn);

}  // namespace fastckpt
