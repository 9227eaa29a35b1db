#include "fastckpt/fault_injection.h"

#include <mutex>
#include <thread>

namespace fastckpt {
namespace fault {

namespace internal {
// Read without the lock on every hooked call; written under it.
std::atomic<bool> g_armed{false};
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
};

State& GetState() {
  // Never destroyed: writer threads may still consult it at exit.
  static State* state = new State;
  return *state;
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
  } kNames[] = {{"create", Point::kCreate}, {"write", Point::kWrite},
                {"sync", Point::kSync},     {"rename", Point::kRename},
                {"close", Point::kClose},   {"sync_dir", Point::kSyncDir}};
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

}  // namespace internal

}  // namespace fault
}  // namespace fastckpt
