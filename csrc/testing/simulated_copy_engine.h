// A device copy engine simulated on the CPU, for tests of the staging
// pipeline on machines without a GPU. "Device memory" is host memory: a
// DevicePtr is a host address. Copies run asynchronously on one worker
// thread per stream, in order, like a CUDA stream, so a pipeline that
// forgets to wait for a copy reads stale bytes here too. (Where that thread
// cannot be created, the stream runs its copies inline, in order.)
//
// It can also be slowed down (latency and bandwidth per copy), made to fail
// the N-th copy, and asked to run "caller work" on caller streams (a delayed
// write into device memory, standing in for a kernel still running when
// save() is called), which checks that copies are ordered after it.
//
// Thread-safety: all members may be called from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "fastckpt/device/copy_engine.h"

namespace fastckpt {

struct SimulatedEngineOptions {
  double latency_us = 0;      // added to every copy
  double bandwidth_gbps = 0;  // 0: as fast as memcpy
  // The copy with this sequence number (0-based, over all streams and both
  // directions) fails; -1: none. The failure is reported by WaitMark, as an
  // asynchronous CUDA error would be, or at enqueue with fail_at_enqueue.
  int64_t fail_copy = -1;
  bool fail_at_enqueue = false;
};

// One copy as it ran, for ordering and overlap checks (steady-clock ns).
struct SimulatedCopyRecord {
  int64_t seq;
  bool to_host;
  uint64_t bytes;
  int64_t begin_ns;
  int64_t end_ns;
};

class SimulatedCopyEngine : public CopyEngine {
 public:
  explicit SimulatedCopyEngine(SimulatedEngineOptions options) : options_(options) {}
  ~SimulatedCopyEngine() override;

  std::string name() const override { return "simulated"; }
  Status AllocHost(int device, size_t n, void** out) override;
  void FreeHost(int device, void* p, size_t n) override;
  Status NewStream(int device, std::unique_ptr<CopyStream>* out) override;

  // Caller work on `caller_stream`: after `delay_us`, copy n bytes from src
  // to dst (both "device" addresses). Work on one caller stream runs in order.
  void EnqueueCallerWork(uint64_t caller_stream, double delay_us, uint64_t dst, uint64_t src, size_t n);

  struct Stats {
    int64_t copies_to_host = 0;
    int64_t copies_to_device = 0;
    uint64_t bytes_to_host = 0;
    uint64_t bytes_to_device = 0;
    int64_t host_allocs = 0;
    int64_t host_frees = 0;
    int64_t streams = 0;
    int64_t order_after_calls = 0;  // with a real (non-kNoStream) caller stream
    int64_t marks_waited = 0;
  };
  Stats stats() const;
  std::vector<SimulatedCopyRecord> copies() const;

  // Used by the streams (simulated_copy_engine.cc).
  struct CallerStream;
  std::shared_ptr<CallerStream> Caller(uint64_t handle);
  // Runs one copy: timing, failure injection, memcpy. Returns its status.
  Status RunCopy(bool to_host, void* dst, const void* src, size_t n);
  Status CheckEnqueue();
  void CountStream();
  void CountOrderAfter();
  void CountMarkWaited();

 private:
  const SimulatedEngineOptions options_;
  mutable std::mutex mu_;
  Stats stats_;                                              // guarded by mu_
  std::vector<SimulatedCopyRecord> log_;                     // guarded by mu_
  std::map<uint64_t, std::shared_ptr<CallerStream>> callers_;  // guarded by mu_
  std::atomic<int64_t> next_seq_{0};
  std::atomic<int64_t> enqueued_{0};
};

}  // namespace fastckpt
