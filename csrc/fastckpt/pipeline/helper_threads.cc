#include "fastckpt/pipeline/helper_threads.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <new>
#include <string>
#include <thread>

#include "fastckpt/io/fault_injection.h"

namespace fastckpt {

namespace internal {

// One HelperGroup's shared state. The pool's queue holds references, so a
// queued request never outlives what it points to. Counters are guarded by
// the pool's mutex.
struct GroupState {
  std::function<void()> fn;
  uint64_t generation = 0;  // the pool's generation when created (see fork)
  int queued = 0;           // requests in the pool's queue
  int running = 0;          // helpers running fn now
  int started = 0;          // helpers that ran fn
  bool joined = false;      // no new requests; fn is never started again
};

}  // namespace internal

namespace {

using internal::GroupState;
using Clock = std::chrono::steady_clock;

class Pool {
 public:
  static Pool& Instance() {
    // Leaked on purpose: detached pool threads use it until the process
    // exits, after static destructors have run.
    static Pool* pool = Create();
    return *pool;
  }

  void Request(const std::shared_ptr<GroupState>& g, int n) {
    std::lock_guard<std::mutex> lock(mu_);
    if (g->joined || g->generation != generation_) return;
    for (int i = 0; i < n; ++i) {
      try {
        queue_.push_back(g);
      } catch (const std::bad_alloc&) {
        break;  // fewer helpers; the caller does the rest
      }
      ++g->queued;
    }
    GrowLocked();
    work_cv_.notify_all();
  }

  void Join(const std::shared_ptr<GroupState>& g) {
    std::unique_lock<std::mutex> lock(mu_);
    g->joined = true;
    if (g->queued > 0) {
      queue_.erase(std::remove(queue_.begin(), queue_.end(), g), queue_.end());
      stats_.helpers_cancelled += g->queued;
      g->queued = 0;
    }
    // Helpers of a group made before fork() ran in the parent; none runs here.
    if (g->generation != generation_) return;
    done_cv_.wait(lock, [&] { return g->running == 0; });
  }

  std::shared_ptr<GroupState> NewGroup(std::function<void()> fn) {
    auto g = std::make_shared<GroupState>();
    g->fn = std::move(fn);
    std::lock_guard<std::mutex> lock(mu_);
    g->generation = generation_;
    return g;
  }

  int started(const GroupState& g) {
    std::lock_guard<std::mutex> lock(mu_);
    return g.started;
  }

  int limit() {
    std::lock_guard<std::mutex> lock(mu_);
    return limit_;
  }
  void set_limit(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    limit_ = std::max(n, 0);
    GrowLocked();             // a raised cap may serve queued requests
    work_cv_.notify_all();    // a lowered one: idle threads above it exit
  }
  double idle_seconds() {
    std::lock_guard<std::mutex> lock(mu_);
    return idle_seconds_;
  }
  void set_idle_seconds(double s) {
    std::lock_guard<std::mutex> lock(mu_);
    idle_seconds_ = s > 0 ? s : kDefaultIdleSeconds;
    work_cv_.notify_all();  // idle threads recompute their deadline
  }

  ThreadPoolStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    ThreadPoolStats s = stats_;
    s.limit = limit_;
    s.threads = threads_;
    s.idle = threads_ - busy_;
    s.queued = static_cast<int>(queue_.size());
    s.exceptions = exceptions_.load();
    return s;
  }

 private:
  Pool() {
    const int cores = DefaultThreads();
    limit_ = std::max(kDefaultMaxPoolThreads, cores);
  }

  static Pool* Create() {
    Pool* p = new Pool();
    // Registered once, when the pool is first used; the handlers refer to
    // the (never destroyed) instance.
    pthread_atfork(&Pool::Prepare, &Pool::Parent, &Pool::Child);
    return p;
  }

  // fork(): the lock is held across it, so that it is consistent (and
  // unlocked) on both sides. The child has only the forking thread, so its
  // pool is empty: no threads, no queued requests (their callers are parent
  // threads), condition variables with no waiters.
  static void Prepare() { Instance().mu_.lock(); }
  static void Parent() { Instance().mu_.unlock(); }
  static void Child() {
    Pool& p = Instance();
    for (auto& g : p.queue_) g->queued = 0;
    p.queue_.clear();
    p.threads_ = 0;
    p.busy_ = 0;
    ++p.generation_;
    // Waiters recorded in these belong to threads that do not exist here.
    new (&p.work_cv_) std::condition_variable();
    new (&p.done_cv_) std::condition_variable();
    p.mu_.unlock();
  }

  // Starts threads for the queued requests that the threads not running a
  // helper will not take, up to the cap. A failed creation ends the attempt:
  // the requests wait for a thread that exists, or are cancelled by Join.
  // REQUIRES: mu_ held.
  void GrowLocked() {
    while (threads_ < limit_ && static_cast<size_t>(threads_ - busy_) < queue_.size()) {
      if (!StartThreadLocked()) break;
    }
  }

  bool StartThreadLocked() {
    int rc;
    if (fault::InjectThreadFailure()) {  // test hook: as pthread_create fails
      rc = EAGAIN;
    } else {
      // The pool threads take no signals: Python handles them on its threads,
      // and a signal delivered here would only interrupt I/O.
      sigset_t all, old;
      sigfillset(&all);
      pthread_sigmask(SIG_SETMASK, &all, &old);
      pthread_attr_t attr;
      rc = pthread_attr_init(&attr);
      if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t tid;
        rc = pthread_create(&tid, &attr, &Pool::ThreadMain, this);
        pthread_attr_destroy(&attr);
      }
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
    }
    if (rc != 0) {
      ++stats_.create_failures;
      return false;
    }
    ++threads_;
    ++stats_.threads_started;
    stats_.peak_threads = std::max(stats_.peak_threads, threads_);
    return true;
  }

  static void* ThreadMain(void* arg) {
    static_cast<Pool*>(arg)->Loop();
    return nullptr;
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    Clock::time_point idle_since = Clock::now();
    for (;;) {
      if (threads_ > limit_) break;  // the cap was lowered
      if (queue_.empty()) {
        const auto deadline =
            idle_since + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(idle_seconds_));
        if (Clock::now() >= deadline) break;  // idle long enough
        work_cv_.wait_until(lock, deadline);
        continue;
      }
      std::shared_ptr<GroupState> g = std::move(queue_.front());
      queue_.pop_front();
      --g->queued;
      ++g->running;
      ++g->started;
      ++busy_;
      ++stats_.helpers_run;
      lock.unlock();
      try {
        g->fn();
      } catch (...) {
        // Helper functions must not throw (helper_threads.h); if one does, the
        // pool thread survives and the group's caller still finishes the work.
        exceptions_.fetch_add(1);
      }
      lock.lock();
      --busy_;
      if (--g->running == 0) done_cv_.notify_all();
      g.reset();
      idle_since = Clock::now();
    }
    --threads_;
    ++stats_.threads_exited;
  }

  std::mutex mu_;
  std::condition_variable work_cv_;  // queue_ gained work, or a setting changed
  std::condition_variable done_cv_;  // a group's running count reached zero
  std::deque<std::shared_ptr<GroupState>> queue_;  // guarded by mu_; FIFO
  int threads_ = 0;                  // guarded by mu_: alive
  int busy_ = 0;                     // guarded by mu_: running a helper
  int limit_ = kDefaultMaxPoolThreads;  // guarded by mu_
  double idle_seconds_ = kDefaultIdleSeconds;  // guarded by mu_
  uint64_t generation_ = 0;          // guarded by mu_; +1 in each forked child
  ThreadPoolStats stats_;            // guarded by mu_ (counters only)
  std::atomic<int64_t> exceptions_{0};
};

}  // namespace

HelperGroup::HelperGroup(std::function<void()> fn) {
  try {
    state_ = Pool::Instance().NewGroup(std::move(fn));
  } catch (const std::bad_alloc&) {
    // No memory for the group: no helpers, the caller works alone.
  }
}

HelperGroup::~HelperGroup() { Join(); }

void HelperGroup::Request(int n) {
  if (n > 0 && state_) Pool::Instance().Request(state_, n);
}

void HelperGroup::Join() {
  if (state_) Pool::Instance().Join(state_);
}

int HelperGroup::started() const { return state_ ? Pool::Instance().started(*state_) : 0; }

int DefaultThreads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int ThreadPoolLimit() { return Pool::Instance().limit(); }
void SetThreadPoolLimit(int n) { Pool::Instance().set_limit(n); }
double ThreadPoolIdleSeconds() { return Pool::Instance().idle_seconds(); }
void SetThreadPoolIdleSeconds(double seconds) { Pool::Instance().set_idle_seconds(seconds); }
ThreadPoolStats GetThreadPoolStats() { return Pool::Instance().stats(); }

Status ParallelFor(size_t n, int threads, const std::function<Status(size_t)>& fn) {
  if (n == 0) return Status::Ok();
  size_t workers = threads < 1 ? 1 : static_cast<size_t>(threads);
  if (workers > n) workers = n;
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  Status first;
  auto record = [&](const Status& s) {
    std::lock_guard<std::mutex> lock(mu);
    first.Update(s);
    failed.store(true, std::memory_order_relaxed);
  };
  // Run by the caller and by each helper: items are taken one at a time, so
  // whoever runs does the work that is left.
  auto work = [&]() {
    for (;;) {
      if (failed.load(std::memory_order_relaxed)) return;
      size_t i = next.fetch_add(1, std::memory_order_relaxed);
      if (i >= n) return;
      Status s;
      try {
        s = fn(i);
      } catch (const std::bad_alloc&) {
        s = Internal("out of memory in a parallel task");
      } catch (const std::exception& e) {
        s = Internal(std::string("a parallel task failed: ") + e.what());
      } catch (...) {
        s = Internal("a parallel task failed with an unknown exception");
      }
      if (!s.ok()) record(s);
    }
  };
  if (workers == 1) {
    work();
    return first;
  }
  HelperGroup helpers(work);
  helpers.Request(static_cast<int>(workers - 1));
  work();
  helpers.Join();
  return first;
}

}  // namespace fastckpt
