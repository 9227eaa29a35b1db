// Runs independent tasks on a bounded number of threads.
#pragma once

#include <cstddef>
#include <functional>

#include "fastckpt/status.h"

namespace fastckpt {

// Calls fn(i) for i in [0, n) on up to `threads` threads (the caller's
// thread is one of them) and returns the first error. After an error, tasks
// not yet started are skipped. fn must be safe to call concurrently for
// distinct i. Blocks until every started task has finished.
Status ParallelFor(size_t n, int threads, const std::function<Status(size_t)>& fn);

// The default number of I/O threads: the hardware concurrency.
int DefaultThreads();

}  // namespace fastckpt
