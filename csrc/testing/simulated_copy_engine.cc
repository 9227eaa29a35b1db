#include "testing/simulated_copy_engine.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <system_error>

#include "fastckpt/io/fault_injection.h"

namespace fastckpt {

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Runs closures one after another on its own thread, like a device queue.
// Destruction drains the queue first. If the thread cannot be created (the
// process is out of threads), closures run inline on the thread that pushes
// them, in the same order: a slower queue, never a crash.
class SerialQueue {
 public:
  SerialQueue() {
    try {
      if (fault::InjectThreadFailure()) {  // test hook: as std::thread fails
        throw std::system_error(std::make_error_code(std::errc::resource_unavailable_try_again));
      }
      thread_ = std::thread([this] { Loop(); });
    } catch (const std::system_error&) {
      // thread_ stays empty: Push runs closures inline.
    }
  }
  ~SerialQueue() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void Push(std::function<void()> fn) {
    if (!thread_.joinable()) {
      fn();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_ and drained
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stop_ = false;                        // guarded by mu_
  std::thread thread_;                       // started last, once the members above exist
};

void SleepUs(double us) {
  if (us > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(static_cast<int64_t>(us * 1000)));
}

}  // namespace

// A caller's stream: work on it completes in order; `completed` counts it.
struct SimulatedCopyEngine::CallerStream {
  std::mutex mu;
  std::condition_variable cv;
  int64_t submitted = 0;  // guarded by mu
  int64_t completed = 0;  // guarded by mu
  SerialQueue queue;      // destroyed first: drains before the counters go

  void WaitFor(int64_t target) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return completed >= target; });
  }
};

namespace {

class SimulatedStream : public CopyStream {
 public:
  explicit SimulatedStream(SimulatedCopyEngine* engine) : engine_(engine) { engine_->CountStream(); }
  ~SimulatedStream() override = default;  // queue_ drains before the state it touches goes

  Status OrderAfter(uint64_t caller_stream) override {
    if (caller_stream == kNoStream) return Status::Ok();
    engine_->CountOrderAfter();
    std::shared_ptr<SimulatedCopyEngine::CallerStream> caller = engine_->Caller(caller_stream);
    int64_t target;
    {
      std::lock_guard<std::mutex> lock(caller->mu);
      target = caller->submitted;
    }
    queue_.Push([caller, target] { caller->WaitFor(target); });
    return Status::Ok();
  }

  Status CopyToHost(void* host, DevicePtr src, size_t n) override {
    return Enqueue(true, host, reinterpret_cast<const void*>(static_cast<uintptr_t>(src)), n);
  }
  Status CopyToDevice(DevicePtr dst, const void* host, size_t n) override {
    return Enqueue(false, reinterpret_cast<void*>(static_cast<uintptr_t>(dst)), host, n);
  }

  Status Mark(uint64_t* mark) override {
    uint64_t m = ++marks_issued_;
    queue_.Push([this, m] {
      std::lock_guard<std::mutex> lock(state_.mu);
      state_.reached = m;
      state_.cv.notify_all();
    });
    *mark = m;
    return Status::Ok();
  }

  Status WaitMark(uint64_t mark) override {
    std::unique_lock<std::mutex> lock(state_.mu);
    state_.cv.wait(lock, [&] { return state_.reached >= mark; });
    engine_->CountMarkWaited();
    return state_.error;
  }

 private:
  Status Enqueue(bool to_host, void* dst, const void* src, size_t n) {
    FASTCKPT_RETURN_IF_ERROR(engine_->CheckEnqueue());
    queue_.Push([this, to_host, dst, src, n] {
      {
        std::lock_guard<std::mutex> lock(state_.mu);
        if (!state_.error.ok()) return;  // a failed stream runs nothing more
      }
      Status st = engine_->RunCopy(to_host, dst, src, n);
      if (!st.ok()) {
        std::lock_guard<std::mutex> lock(state_.mu);
        state_.error.Update(st);
      }
    });
    return Status::Ok();
  }

  struct State {
    std::mutex mu;
    std::condition_variable cv;
    uint64_t reached = 0;  // guarded by mu
    Status error;          // guarded by mu; sticky
  };
  SimulatedCopyEngine* engine_;  // outlives its streams (the pipeline holds a shared_ptr)
  State state_;
  uint64_t marks_issued_ = 0;    // used by the owning thread only
  SerialQueue queue_;            // last: destroyed (drained) first
};

}  // namespace

SimulatedCopyEngine::~SimulatedCopyEngine() {
  std::map<uint64_t, std::shared_ptr<CallerStream>> callers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    callers.swap(callers_);
  }
  callers.clear();  // drains their queues
}

Status SimulatedCopyEngine::AllocHost(int /*device*/, size_t n, void** out) {
  void* p = std::aligned_alloc(4096, (n + 4095) / 4096 * 4096);
  if (p == nullptr) {
    return Status::Device("simulated device: cannot allocate " + std::to_string(n) +
                              " bytes of page-locked host memory: CUDA_ERROR_OUT_OF_MEMORY (out of memory)",
                          2, "CUDA_ERROR_OUT_OF_MEMORY");
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.host_allocs;
  *out = p;
  return Status::Ok();
}

void SimulatedCopyEngine::FreeHost(int /*device*/, void* p, size_t /*n*/) {
  std::free(p);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.host_frees;
}

Status SimulatedCopyEngine::NewStream(int device, std::unique_ptr<CopyStream>* out) {
  if (device < 0) return InvalidArgument("simulated device: bad device ordinal " + std::to_string(device));
  out->reset(new SimulatedStream(this));
  return Status::Ok();
}

std::shared_ptr<SimulatedCopyEngine::CallerStream> SimulatedCopyEngine::Caller(uint64_t handle) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = callers_[handle];
  if (!slot) slot = std::make_shared<CallerStream>();
  return slot;
}

void SimulatedCopyEngine::EnqueueCallerWork(uint64_t caller_stream, double delay_us, uint64_t dst, uint64_t src,
                                            size_t n) {
  std::shared_ptr<CallerStream> caller = Caller(caller_stream);
  {
    std::lock_guard<std::mutex> lock(caller->mu);
    ++caller->submitted;
  }
  CallerStream* c = caller.get();  // the engine's map keeps it alive until the queue drains
  c->queue.Push([c, delay_us, dst, src, n] {
    SleepUs(delay_us);
    std::memmove(reinterpret_cast<void*>(static_cast<uintptr_t>(dst)),
                 reinterpret_cast<const void*>(static_cast<uintptr_t>(src)), n);
    std::lock_guard<std::mutex> lock(c->mu);
    ++c->completed;
    c->cv.notify_all();
  });
}

Status SimulatedCopyEngine::CheckEnqueue() {
  int64_t seq = enqueued_.fetch_add(1);
  if (options_.fail_at_enqueue && seq == options_.fail_copy) {
    // What the driver returns for a copy it refuses to enqueue.
    return Status::Device(
        "simulated device: copy #" + std::to_string(seq) + " was refused: CUDA_ERROR_INVALID_VALUE (invalid argument)",
        1, "CUDA_ERROR_INVALID_VALUE");
  }
  return Status::Ok();
}

Status SimulatedCopyEngine::RunCopy(bool to_host, void* dst, const void* src, size_t n) {
  int64_t seq = next_seq_.fetch_add(1);
  int64_t begin = NowNs();
  double us = options_.latency_us;
  if (options_.bandwidth_gbps > 0) us += static_cast<double>(n) / (options_.bandwidth_gbps * 1e3);
  SleepUs(us);
  if (!options_.fail_at_enqueue && seq == options_.fail_copy) {
    // What an asynchronous copy from a bad address reports at synchronisation.
    return Status::Device("simulated device: copy #" + std::to_string(seq) +
                              " failed: CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)",
                          700, "CUDA_ERROR_ILLEGAL_ADDRESS");
  }
  if (n > 0) std::memcpy(dst, src, n);
  std::lock_guard<std::mutex> lock(mu_);
  if (to_host) {
    ++stats_.copies_to_host;
    stats_.bytes_to_host += n;
  } else {
    ++stats_.copies_to_device;
    stats_.bytes_to_device += n;
  }
  log_.push_back({seq, to_host, n, begin, NowNs()});
  return Status::Ok();
}

void SimulatedCopyEngine::CountStream() {
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.streams;
}
void SimulatedCopyEngine::CountOrderAfter() {
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.order_after_calls;
}
void SimulatedCopyEngine::CountMarkWaited() {
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.marks_waited;
}

SimulatedCopyEngine::Stats SimulatedCopyEngine::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::vector<SimulatedCopyRecord> SimulatedCopyEngine::copies() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_;
}

}  // namespace fastckpt
