// Temporary files: the one mechanism by which fastckpt creates every file it
// publishes (data shards, the index, the `checkpoint` state file, `.meta`),
// and the cleanup of what crashed writers left behind.
//
// A file is written under "<final>.tempstate-fastckpt-<16 hex>" (naming.h),
// a name only fastckpt creates, and its writer holds an exclusive flock() on
// it from creation until it has been renamed into place or removed. The
// kernel drops the lock when the process dies, so a temporary file whose lock
// can be taken belongs to no live writer: it is debris from a crash, and the
// next save into the same directory removes it. A file of a live writer
// (another thread or process) is never touched, and neither is any file
// fastckpt did not name, such as TensorFlow's "<final>.tempstate<digits>" or
// "<final>.tmp<hex>" temporary files.
//
// Errors about a temporary file name the final file: the user never chose
// the temporary name, and it is gone by the time the error is read.
//
// Thread-safety: every function may be called from any thread and from
// several processes at once; names are random per call and created O_EXCL.
#pragma once

#include <cstddef>
#include <string>

#include "fastckpt/core/status.h"
#include "fastckpt/io/file_io.h"

namespace fastckpt {

// Creates a new temporary file for `final_name` in the same directory,
// exclusively, and takes the writer's lock on it. On success *temp_path is
// its name and *out owns the descriptor (the lock lasts until it is closed);
// errors, here and from later calls on *out, name `final_name`. On failure
// no file is left behind.
Status CreateLockedTempFile(const std::string& final_name, File* out, std::string* temp_path);

// Renames the temporary file `temp_path` over `final_name` (atomic on POSIX
// file systems). Call it while the temporary file is still open, so that
// its lock protects it until it has its final name. An error names
// `final_name`.
Status PublishTempFile(const std::string& temp_path, const std::string& final_name);

// Replaces the file `path` with the n bytes at `data` atomically, through a
// locked temporary file: write, fsync (if durable), rename over `path`,
// close, then fsync the directory (if durable). Readers see the old file or
// the new one, never a partial one; with `durable`, the new one survives a
// power loss once this returns. If it fails before the rename, `path` is
// untouched and the temporary file removed; after the rename (a failed close
// or directory fsync), `path` already holds the new bytes. Errors name
// `path`, or its directory for the directory fsync. Concurrent writers of
// the same `path` do not interfere; the last rename wins.
Status WriteFileAtomically(const std::string& path, const void* data, size_t n, bool durable);

// Removes the temporary files in `dir` that fastckpt named, that no live
// writer holds, and that are at least `min_age_seconds` old (the age covers
// the instant between a writer's create and its lock). Best effort: returns
// how many were removed; errors on individual files are ignored.
int RemoveStaleTempFiles(const std::string& dir, double min_age_seconds = 2.0);

}  // namespace fastckpt
