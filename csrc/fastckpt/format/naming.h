// File names of a checkpoint with prefix P (tensorflow/core/util/tensor_bundle/naming.cc):
//   P.index                     the table of entries
//   P.data-SSSSS-of-NNNNN       shard S of N, zero-padded to 5 digits
// and the temporary names fastckpt writes files under before renaming them.
//
// Temporary names are fastckpt's own, "<final>.tempstate-fastckpt-<16 hex>",
// deliberately unlike TensorFlow's ("<final>.tempstate<decimal>" from its
// bundle writer, "<final>.tmp<32 hex>" from its Python atomic writes): the
// cleanup of crashed saves (temp_files.h) removes only names that fastckpt
// itself created, never a TensorFlow writer's files in a shared directory.
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <string>

namespace fastckpt {

std::string IndexFilename(const std::string& prefix);
std::string DataFilename(const std::string& prefix, int shard, int num_shards);

// A temporary name for `final_name` in the same directory:
// "<final_name>.tempstate-fastckpt-<16 lowercase hex digits>", random per call
// (a fresh random stream per process, so a forked child does not repeat its
// parent's names).
std::string TempFilename(const std::string& final_name);

// Whether `name` (a directory entry, without its directory) has the form
// TempFilename gives. TensorFlow's temporary names never do.
bool IsTempFilename(const std::string& name);

// Parses `name` (a directory entry) as a data file of the checkpoint whose
// prefix has the last component `base`: "<base>.data-<shard>-of-<count>",
// each number at least 5 decimal digits (DataFilename's form). Returns false
// for anything else, e.g. another prefix's files ("<base>-1.data-...",
// "<base>_x.data-...") or temporary names.
bool ParseDataFilename(const std::string& name, const std::string& base, long* shard, long* num_shards);

}  // namespace fastckpt
