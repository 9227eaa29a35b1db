// Temporary files of in-progress saves, and cleanup after crashed ones.
//
// A save writes every file under "<final>.tempstate<random>" and holds an
// exclusive flock() on it until the file is renamed into place or removed.
// The kernel drops the lock when the process dies, so a temporary file whose
// lock can be taken belongs to no live save: it is debris from a crash, and
// the next save into the same directory removes it. A file of a live save
// (another thread or process) is never touched.
#pragma once

#include <string>

#include "fastckpt/file_io.h"
#include "fastckpt/status.h"

namespace fastckpt {

// Creates `path` exclusively and takes the writer's lock on it.
Status CreateLockedTempFile(const std::string& path, File* out);

// Removes the temporary files in `dir` that no live save holds and that are
// at least `min_age_seconds` old (the age covers the instant between a
// writer's create and its lock). Best effort: returns how many were removed;
// errors on individual files are ignored.
int RemoveStaleTempFiles(const std::string& dir, double min_age_seconds = 2.0);

}  // namespace fastckpt
