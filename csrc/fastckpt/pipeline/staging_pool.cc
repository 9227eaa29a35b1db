#include "fastckpt/pipeline/staging_pool.h"

#include <pthread.h>

#include <cstdlib>
#include <new>

namespace fastckpt {

StagingPool& StagingPool::Instance() {
  // Leaked on purpose: buffers may be in use by background saves while
  // static destructors run at exit.
  static StagingPool* pool = Create();
  return *pool;
}

StagingPool* StagingPool::Create() {
  StagingPool* pool = new StagingPool();
  pthread_atfork(&StagingPool::LockForFork, &StagingPool::UnlockAfterFork, &StagingPool::ResetInChild);
  return pool;
}

void StagingPool::LockForFork() { Instance().mu_.lock(); }
void StagingPool::UnlockAfterFork() { Instance().mu_.unlock(); }
void StagingPool::ResetInChild() {
  StagingPool& p = Instance();
  // Its waiters were threads of the parent.
  new (&p.cv_) std::condition_variable();
  p.mu_.unlock();
}

void StagingPool::Configure(size_t buffer_bytes, size_t capacity_bytes, size_t retain_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  buffer_bytes_ = std::max<size_t>(buffer_bytes, 4096);
  capacity_bytes_ = capacity_bytes;
  retain_bytes_ = retain_bytes;
  std::vector<StagingBuffer> keep;
  for (StagingBuffer& b : free_) {
    if (b.size == buffer_bytes_) {
      keep.push_back(std::move(b));
    } else {
      FreeLocked(&b);
    }
  }
  free_.swap(keep);
  cv_.notify_all();
}

size_t StagingPool::buffer_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return buffer_bytes_;
}

void StagingPool::FreeLocked(StagingBuffer* b) {
  if (b->engine) {
    b->engine->FreeHost(b->device, b->data, b->size);
  } else {
    std::free(b->data);
  }
  stats_.allocated_bytes -= b->size;
  b->data = nullptr;
  b->engine.reset();
}

Status StagingPool::Acquire(const std::shared_ptr<CopyEngine>& engine, int device, StagingQuota* quota,
                            StagingBuffer* out, const std::function<bool()>& stop_waiting) {
  std::unique_lock<std::mutex> lock(mu_);
  bool waited = false;
  for (;;) {
    if (quota->cancelled.load()) {
      return FailedPrecondition("staging was cancelled");
    }
    if (quota->held.load() < quota->max_buffers) {
      // A free buffer from the same allocator (pinned memory also serves
      // plain host copies; plain memory cannot serve a device copy).
      for (size_t i = free_.size(); i-- > 0;) {
        if (free_[i].engine == engine || (!engine && free_[i].size == buffer_bytes_)) {
          *out = std::move(free_[i]);
          free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(i));
          break;
        }
      }
      if (out->data == nullptr) {
        // Room for a new one? Free buffers of the wrong kind make room.
        while (stats_.allocated_bytes + buffer_bytes_ > capacity_bytes_ && !free_.empty()) {
          FreeLocked(&free_.back());
          free_.pop_back();
        }
        // A borrower holding nothing may exceed the capacity (see "Progress").
        if (stats_.allocated_bytes + buffer_bytes_ <= capacity_bytes_ || stats_.allocated_bytes == 0 ||
            quota->held.load() == 0) {
          size_t n = buffer_bytes_;
          void* p = nullptr;
          Status st;
          if (engine) {
            st = engine->AllocHost(device, n, &p);
          } else {
            p = std::aligned_alloc(4096, (n + 4095) / 4096 * 4096);
            if (p == nullptr) st = Internal("cannot allocate a " + std::to_string(n) + "-byte staging buffer");
          }
          FASTCKPT_RETURN_IF_ERROR(st);
          out->data = static_cast<uint8_t*>(p);
          out->size = n;
          out->engine = engine;
          out->device = device;
          stats_.allocated_bytes += n;
          stats_.peak_allocated_bytes = std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
          ++stats_.allocations;
        }
      }
      if (out->data != nullptr) {
        quota->held.fetch_add(1);
        ++stats_.acquisitions;
        ++stats_.lent;
        if (waited) ++stats_.waits;
        return Status::Ok();
      }
    }
    if (stop_waiting && stop_waiting()) return Status::Ok();
    waited = true;
    cv_.wait(lock);
  }
}

void StagingPool::Release(StagingBuffer* buf, StagingQuota* quota) {
  if (buf->data == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    size_t free_bytes = 0;
    for (const StagingBuffer& b : free_) free_bytes += b.size;
    if (buf->size == buffer_bytes_ && free_bytes + buf->size <= retain_bytes_ &&
        stats_.allocated_bytes <= capacity_bytes_) {
      free_.push_back(std::move(*buf));
    } else {
      FreeLocked(buf);
    }
    buf->data = nullptr;
    buf->engine.reset();
    quota->held.fetch_sub(1);
    --stats_.lent;
  }
  cv_.notify_all();
}

void StagingPool::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
  }
  cv_.notify_all();
}

void StagingPool::Trim() {
  std::lock_guard<std::mutex> lock(mu_);
  for (StagingBuffer& b : free_) FreeLocked(&b);
  free_.clear();
}

StagingPoolStats StagingPool::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  StagingPoolStats s = stats_;
  s.capacity_bytes = capacity_bytes_;
  s.buffer_bytes = buffer_bytes_;
  return s;
}

}  // namespace fastckpt
