#include "fastckpt/io/fault_injection.h"

#include <pthread.h>

#include <chrono>
#include <mutex>
#include <new>
#include <thread>

namespace fastckpt {
namespace fault {

namespace internal {
// Read without the lock on every hooked call; written under it.
std::atomic<bool> g_armed{false};
std::atomic<bool> g_fill_armed{false};
std::atomic<bool> g_thread_armed{false};
}  // namespace internal

namespace {

// The configuration and counters. Only the slow path touches them, so a
// plain mutex is enough; it also keeps "count the call, decide whether it
// fails" atomic when several writer threads race for the N-th call.
struct State {
  std::mutex mu;
  Point point = Point::kCreate;
  int64_t skip_calls = 0;
  int err = 0;
  bool short_write = false;
  int64_t hits = 0;
  bool fired = false;
  // After a short write, the same thread's next write (the helper retrying
  // the rest) gets `err`; other threads' writes are not retries of it.
  bool retry_pending = false;
  std::thread::id short_thread;

  // ArmFillDelay.
  int64_t fill_skip = 0;
  int64_t fill_wait_ms = 0;
  int64_t fill_delay_ms = 0;
  bool fill_fired = false;
  FillDelayState fill;

  // ArmThreadFailures.
  int64_t thread_skip = 0;
  int64_t thread_count = 0;  // -1: unlimited
  int64_t thread_failures = 0;
};

State* NewState();

State& GetState() {
  // Never destroyed: writer threads may still consult it at exit.
  static State* state = NewState();
  return *state;
}

// fork() in one thread while another holds the mutex would leave it locked
// forever in the child: hold it across fork, release it on both sides.
void LockForFork() { GetState().mu.lock(); }
void UnlockAfterFork() { GetState().mu.unlock(); }

State* NewState() {
  State* s = new State;
  pthread_atfork(LockForFork, UnlockAfterFork, UnlockAfterFork);
  return s;
}

}  // namespace

void Arm(Point point, int64_t skip_calls, int err, bool short_write) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  s.point = point;
  s.skip_calls = skip_calls < 0 ? 0 : skip_calls;
  s.err = err;
  s.short_write = short_write && point == Point::kWrite;
  s.hits = 0;
  s.fired = false;
  s.retry_pending = false;
  internal::g_armed.store(true, std::memory_order_relaxed);
}

void Disarm() {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  s.retry_pending = false;
  internal::g_armed.store(false, std::memory_order_relaxed);
  internal::g_fill_armed.store(false, std::memory_order_relaxed);
  internal::g_thread_armed.store(false, std::memory_order_relaxed);
}

void ArmFillDelay(int64_t skip_fills, int64_t wait_ms, int64_t delay_ms) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  s.fill_skip = skip_fills < 0 ? 0 : skip_fills;
  s.fill_wait_ms = wait_ms < 0 ? 0 : wait_ms;
  s.fill_delay_ms = delay_ms < 0 ? 0 : delay_ms;
  s.fill_fired = false;
  s.fill = FillDelayState();
  internal::g_fill_armed.store(true, std::memory_order_relaxed);
}

FillDelayState GetFillDelayState() {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.fill;
}

void ArmThreadFailures(int64_t skip, int64_t count) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  s.thread_skip = skip < 0 ? 0 : skip;
  s.thread_count = count < 0 ? -1 : count;
  s.thread_failures = 0;
  internal::g_thread_armed.store(true, std::memory_order_relaxed);
}

int64_t ThreadFailures() {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.thread_failures;
}

int64_t Hits() {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.hits;
}

bool ParsePoint(const std::string& name, Point* point) {
  static const struct {
    const char* name;
    Point point;
  } kNames[] = {{"create", Point::kCreate}, {"write", Point::kWrite}, {"sync", Point::kSync},
                {"rename", Point::kRename}, {"close", Point::kClose}, {"sync_dir", Point::kSyncDir}};
  for (const auto& n : kNames) {
    if (name == n.name) {
      *point = n.point;
      return true;
    }
  }
  return false;
}

namespace internal {

Injected InjectSlow(Point point) {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  // Disarm may have run between the caller's unlocked check and this lock.
  if (!g_armed.load(std::memory_order_relaxed) || point != s.point) return Injected();
  ++s.hits;
  Injected out;
  if (s.retry_pending && s.short_thread == std::this_thread::get_id()) {
    s.retry_pending = false;
    out.err = s.err;
    return out;
  }
  if (s.fired || s.hits != s.skip_calls + 1) return out;
  s.fired = true;
  if (s.short_write) {
    s.retry_pending = true;
    s.short_thread = std::this_thread::get_id();
    out.short_write = true;
  } else {
    out.err = s.err;
  }
  return out;
}

void FillSlow(const std::function<bool()>& failed) {
  State& s = GetState();
  int64_t wait_ms, delay_ms;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!g_fill_armed.load(std::memory_order_relaxed)) return;
    ++s.fill.fills;
    if (s.fill_fired || s.fill.fills != s.fill_skip + 1) return;
    s.fill_fired = true;
    s.fill.started = true;
    wait_ms = s.fill_wait_ms;
    delay_ms = s.fill_delay_ms;
  }
  // Polls without the lock: other fills, hooked calls and the test's
  // queries go on meanwhile.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  bool saw = failed();
  while (!saw && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    saw = failed();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  std::lock_guard<std::mutex> lock(s.mu);
  s.fill.saw_failure = saw;
  s.fill.finished = true;
}

bool ThreadSlow() {
  State& s = GetState();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!g_thread_armed.load(std::memory_order_relaxed)) return false;
  if (s.thread_skip > 0) {
    --s.thread_skip;
    return false;
  }
  if (s.thread_count == 0) return false;
  if (s.thread_count > 0) --s.thread_count;
  ++s.thread_failures;
  return true;
}

}  // namespace internal

}  // namespace fault
}  // namespace fastckpt
