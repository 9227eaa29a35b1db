// The copy engine over the CUDA driver API (see copy_engine.h for the model).
//
// Contexts: the engine works in each device's primary context, the one the
// CUDA runtime (and so PyTorch, JAX, CuPy...) uses, so device pointers handed
// to us by those frameworks are valid in it and its legacy default stream is
// theirs. A primary context is retained once per device per process, on
// first use, and never released: release at exit could run after the driver
// has been torn down, and the retain is what keeps the context (and so our
// streams and pinned buffers) alive if a framework releases its own.
//
// Threads: pipeline threads are plain std::threads with no current context,
// while the Python thread may have a framework's context current. So every
// entry point makes the right context current for the duration of the call
// and then restores whatever was current before (ScopedContext); nothing is
// left changed on the caller's thread.
//
// Errors: driver failures become Status values (kUnavailable, with the
// CUresult's name and description); nothing here throws.
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <utility>
#include <vector>

#include "fastckpt/device/copy_engine.h"
#include "fastckpt/device/cuda_driver.h"

namespace fastckpt {

namespace {

using cuda::CUcontext;
using cuda::CudaError;
using cuda::CUdevice;
using cuda::CUevent;
using cuda::CUresult;
using cuda::CUstream;
using cuda::DriverApi;

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

// The primary contexts of this process, retained on first use and never
// released (see the file comment). One instance per process, never destroyed.
// Thread-safety: all members are safe to call concurrently.
class PrimaryContexts {
 public:
  static PrimaryContexts& Instance(const DriverApi* api) {
    // Leaked on purpose: engines may outlive static destruction order.
    static PrimaryContexts* instance = new PrimaryContexts(api);
    return *instance;
  }

  // The primary context of `device`. REQUIRES: 0 <= device < device_count.
  Status Get(int device, CUcontext* out) {
    std::lock_guard<std::mutex> lock(mu_);
    return GetLocked(device, out);
  }

 private:
  explicit PrimaryContexts(const DriverApi* api) : api_(api), ctx_(static_cast<size_t>(api->device_count), nullptr) {}

  Status GetLocked(int device, CUcontext* out) {
    CUcontext& slot = ctx_[static_cast<size_t>(device)];
    if (slot == nullptr) {
      // A failure is not cached: the next call tries again.
      CUdevice dev = 0;
      CUresult rc = api_->cuDeviceGet(&dev, device);
      if (rc != cuda::CUDA_SUCCESS) {
        return CudaError(api_, "cuDeviceGet", rc, "device " + std::to_string(device));
      }
      CUcontext ctx = nullptr;
      rc = api_->cuDevicePrimaryCtxRetain(&ctx, dev);
      if (rc != cuda::CUDA_SUCCESS) {
        return CudaError(api_, "cuDevicePrimaryCtxRetain", rc, "device " + std::to_string(device));
      }
      slot = ctx;
    }
    *out = slot;
    return Status::Ok();
  }

  const DriverApi* const api_;
  std::mutex mu_;
  std::vector<CUcontext> ctx_;  // per device ordinal; nullptr until retained
};

// Makes `ctx` current on the calling thread for the lifetime of the object
// and restores the previous current context (possibly none) afterwards, so
// that a framework's notion of "the current device" on the caller's thread
// is left untouched. Cheap when `ctx` is already current (one query).
// Not copyable; use on one thread, as a local.
class ScopedContext {
 public:
  ScopedContext(const DriverApi* api, CUcontext ctx) : api_(api) {
    CUresult rc = api_->cuCtxGetCurrent(&previous_);
    if (rc != cuda::CUDA_SUCCESS) {
      status_ = CudaError(api_, "cuCtxGetCurrent", rc);
      return;
    }
    if (previous_ == ctx) return;
    rc = api_->cuCtxSetCurrent(ctx);
    if (rc != cuda::CUDA_SUCCESS) {
      status_ = CudaError(api_, "cuCtxSetCurrent", rc);
      return;
    }
    switched_ = true;
  }
  ~ScopedContext() {
    // A failure to restore cannot be reported from here and does not affect
    // the work already done in our context; the caller's next driver call in
    // its own context will surface any real problem.
    if (switched_) api_->cuCtxSetCurrent(previous_);
  }
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;

  const Status& status() const { return status_; }

 private:
  const DriverApi* const api_;
  CUcontext previous_ = nullptr;
  bool switched_ = false;
  Status status_;
};

// One non-blocking CUstream of one device, with the events behind its
// markers. Thread-safety: none; per copy_engine.h a stream is used by one
// thread at a time (the pipeline thread that owns it).
class CudaCopyStream final : public CopyStream {
 public:
  // Markers not yet waited for, at most. Beyond that, Mark() re-records the
  // event of the oldest pending marker, and waiting for that marker then
  // waits for the next one instead (later, never earlier: still correct).
  // This bounds the events of a stream whatever the caller does.
  static constexpr size_t kMaxPendingMarks = 1024;

  // Takes ownership of `stream`, created in `ctx` (the primary context of
  // `device`).
  CudaCopyStream(const DriverApi* api, int device, CUcontext ctx, CUstream stream)
      : api_(api), device_(device), ctx_(ctx), stream_(stream) {}

  // Waits for every copy still enqueued, so that the caller may free the host
  // buffers as soon as the stream is gone (even on an error path that never
  // called WaitMark, or after an error), then destroys the events and the
  // stream. Errors are ignored: there is nobody to report them to.
  ~CudaCopyStream() override {
    ScopedContext scope(api_, ctx_);
    if (!scope.status().ok()) return;  // the driver is gone; leak rather than crash
    if (copied_since_mark_ || reached_ < last_mark_) {
      // A fresh event: the sticky error_ must not stop this wait.
      CUevent drain = nullptr;
      if (api_->cuEventCreate(&drain, cuda::CU_EVENT_DISABLE_TIMING) == cuda::CUDA_SUCCESS) {
        if (api_->cuEventRecord(drain, stream_) == cuda::CUDA_SUCCESS) {
          api_->cuEventSynchronize(drain);
        }
        api_->cuEventDestroy(drain);
      }
    }
    for (auto& p : pending_) api_->cuEventDestroy(p.second);
    for (CUevent e : free_) api_->cuEventDestroy(e);
    if (order_event_ != nullptr) api_->cuEventDestroy(order_event_);
    // Returns at once; the driver releases the stream after its work is done.
    api_->cuStreamDestroy(stream_);
  }

  Status OrderAfter(uint64_t caller_stream) override {
    if (!error_.ok()) return error_;
    if (caller_stream == kNoStream) return Status::Ok();
    // kPerThreadDefaultStream names the per-thread default stream of the
    // *calling* thread: callers passing it must call OrderAfter on the thread
    // that queued the work (the thread that handed over the array).
    CUstream caller = reinterpret_cast<CUstream>(static_cast<uintptr_t>(caller_stream));
    if (caller_stream == kLegacyDefaultStream) caller = cuda::StreamLegacy();
    if (caller_stream == kPerThreadDefaultStream) caller = cuda::StreamPerThread();
    ScopedContext scope(api_, ctx_);
    if (!scope.status().ok()) return Fail(scope.status());
    if (order_event_ == nullptr) {
      CUresult rc = api_->cuEventCreate(&order_event_, cuda::CU_EVENT_DISABLE_TIMING);
      if (rc != cuda::CUDA_SUCCESS) {
        order_event_ = nullptr;
        return Fail(CudaError(api_, "cuEventCreate", rc, Where()));
      }
    }
    // cuStreamWaitEvent captures the event's state when it is called, so one
    // event can be re-recorded for every OrderAfter.
    CUresult rc = api_->cuEventRecord(order_event_, caller);
    if (rc != cuda::CUDA_SUCCESS) {
      return Fail(
          CudaError(api_, "cuEventRecord", rc, "on the caller's stream " + Hex(caller_stream) + " (" + Where() + ")"));
    }
    rc = api_->cuStreamWaitEvent(stream_, order_event_, 0);
    if (rc != cuda::CUDA_SUCCESS) return Fail(CudaError(api_, "cuStreamWaitEvent", rc, Where()));
    return Status::Ok();
  }

  Status CopyToHost(void* host, DevicePtr src, size_t n) override {
    if (!error_.ok()) return error_;
    if (n == 0) return Status::Ok();
    if (host == nullptr || src == 0) return InvalidArgument("CopyToHost: null address");
    ScopedContext scope(api_, ctx_);
    if (!scope.status().ok()) return Fail(scope.status());
    CUresult rc = api_->cuMemcpyDtoHAsync(host, src, n, stream_);
    if (rc != cuda::CUDA_SUCCESS) {
      return Fail(CudaError(api_, "cuMemcpyDtoHAsync", rc,
                            "copying " + std::to_string(n) + " bytes from " + Hex(src) + " (" + Where() + ") to host"));
    }
    copied_since_mark_ = true;
    return Status::Ok();
  }

  Status CopyToDevice(DevicePtr dst, const void* host, size_t n) override {
    if (!error_.ok()) return error_;
    if (n == 0) return Status::Ok();
    if (host == nullptr || dst == 0) return InvalidArgument("CopyToDevice: null address");
    ScopedContext scope(api_, ctx_);
    if (!scope.status().ok()) return Fail(scope.status());
    CUresult rc = api_->cuMemcpyHtoDAsync(dst, host, n, stream_);
    if (rc != cuda::CUDA_SUCCESS) {
      return Fail(CudaError(api_, "cuMemcpyHtoDAsync", rc,
                            "copying " + std::to_string(n) + " bytes from host to " + Hex(dst) + " (" + Where() + ")"));
    }
    copied_since_mark_ = true;
    return Status::Ok();
  }

  Status Mark(uint64_t* mark) override {
    if (!error_.ok()) return error_;
    ScopedContext scope(api_, ctx_);
    if (!scope.status().ok()) return Fail(scope.status());
    CUevent ev = nullptr;
    if (pending_.size() >= kMaxPendingMarks) {
      // Re-recording an event that may still be pending is allowed: it
      // overwrites the captured state (see kMaxPendingMarks).
      ev = pending_.front().second;
      pending_.pop_front();
    } else if (!free_.empty()) {
      ev = free_.back();
      free_.pop_back();
    } else {
      CUresult rc = api_->cuEventCreate(&ev, cuda::CU_EVENT_DISABLE_TIMING);
      if (rc != cuda::CUDA_SUCCESS) return Fail(CudaError(api_, "cuEventCreate", rc, Where()));
    }
    CUresult rc = api_->cuEventRecord(ev, stream_);
    if (rc != cuda::CUDA_SUCCESS) {
      free_.push_back(ev);
      return Fail(CudaError(api_, "cuEventRecord", rc, Where()));
    }
    pending_.emplace_back(++last_mark_, ev);
    copied_since_mark_ = false;
    *mark = last_mark_;
    return Status::Ok();
  }

  Status WaitMark(uint64_t mark) override {
    if (!error_.ok()) return error_;
    if (mark > last_mark_) {
      return InvalidArgument("WaitMark(" + std::to_string(mark) + "): not a marker returned by Mark() on this stream");
    }
    if (mark <= reached_) return Status::Ok();
    // pending_ holds every marker in (reached_, last_mark_] except the oldest
    // ones dropped by the kMaxPendingMarks bound; it is sorted by marker.
    auto it = std::lower_bound(pending_.begin(), pending_.end(), mark,
                               [](const std::pair<uint64_t, CUevent>& p, uint64_t m) { return p.first < m; });
    ScopedContext scope(api_, ctx_);
    if (!scope.status().ok()) return Fail(scope.status());
    CUresult rc = api_->cuEventSynchronize(it->second);
    if (rc != cuda::CUDA_SUCCESS) {
      // Errors of asynchronous copies surface here, as in CUDA.
      return Fail(CudaError(api_, "cuEventSynchronize", rc, "waiting for copies on " + Where()));
    }
    // The stream runs in order: every earlier marker is reached too, and
    // their events can be reused.
    reached_ = it->first;
    while (!pending_.empty() && pending_.front().first <= reached_) {
      free_.push_back(pending_.front().second);
      pending_.pop_front();
    }
    return Status::Ok();
  }

 private:
  // Makes `s` the stream's sticky error and returns it.
  Status Fail(Status s) {
    error_ = s;
    return s;
  }

  std::string Where() const { return "device " + std::to_string(device_); }

  const DriverApi* const api_;
  const int device_;
  const CUcontext ctx_;
  const CUstream stream_;
  Status error_;                  // sticky: the first failure of a driver call
  CUevent order_event_ = nullptr; // for OrderAfter, created on first use
  std::deque<std::pair<uint64_t, CUevent>> pending_;  // (marker, event), ascending
  std::vector<CUevent> free_;     // recorded events whose markers were reached
  uint64_t last_mark_ = 0;        // the last marker handed out (0: none yet)
  uint64_t reached_ = 0;          // every marker <= reached_ is complete
  bool copied_since_mark_ = false;  // a copy was enqueued after the last Mark()
};

// Thread-safety: every member may be called from any thread concurrently.
class CudaCopyEngine final : public CopyEngine {
 public:
  explicit CudaCopyEngine(const DriverApi* api) : api_(api), contexts_(PrimaryContexts::Instance(api)) {}

  std::string name() const override { return "cuda"; }

  // Allocated under the primary context of the device the memory is first
  // used with, so that a process working on device N never creates a context
  // on another device (a context costs device memory and start-up time).
  // PORTABLE: streams of every context may use the memory afterwards.
  Status AllocHost(int device, size_t n, void** out) override {
    *out = nullptr;
    if (n == 0) return InvalidArgument("AllocHost: size must be > 0");
    FASTCKPT_RETURN_IF_ERROR(CheckDevice(device));
    CUcontext ctx = nullptr;
    FASTCKPT_RETURN_IF_ERROR(contexts_.Get(device, &ctx));
    ScopedContext scope(api_, ctx);
    FASTCKPT_RETURN_IF_ERROR(scope.status());
    void* p = nullptr;
    CUresult rc = api_->cuMemHostAlloc(&p, n, cuda::CU_MEMHOSTALLOC_PORTABLE);
    if (rc != cuda::CUDA_SUCCESS) {
      return CudaError(api_, "cuMemHostAlloc", rc,
                       "allocating " + std::to_string(n) + " bytes of page-locked host memory");
    }
    *out = p;
    return Status::Ok();
  }

  // REQUIRES: `device` is the one `p` was allocated for, so its primary
  // context is already retained and this cannot fail.
  void FreeHost(int device, void* p, size_t /*n*/) override {
    if (p == nullptr) return;
    CUcontext ctx = nullptr;
    if (!contexts_.Get(device, &ctx).ok()) return;
    ScopedContext scope(api_, ctx);
    if (!scope.status().ok()) return;
    // Nothing to report a failure to (the interface returns void); a failure
    // here leaks the buffer, which beats freeing it the wrong way.
    api_->cuMemFreeHost(p);
  }

  Status NewStream(int device, std::unique_ptr<CopyStream>* out) override {
    FASTCKPT_RETURN_IF_ERROR(CheckDevice(device));
    CUcontext ctx = nullptr;
    FASTCKPT_RETURN_IF_ERROR(contexts_.Get(device, &ctx));
    ScopedContext scope(api_, ctx);
    FASTCKPT_RETURN_IF_ERROR(scope.status());
    CUstream stream = nullptr;
    // Non-blocking: our copies never serialise with the legacy default
    // stream of other code; ordering with the caller is explicit (OrderAfter).
    CUresult rc = api_->cuStreamCreate(&stream, cuda::CU_STREAM_NON_BLOCKING);
    if (rc != cuda::CUDA_SUCCESS) {
      return CudaError(api_, "cuStreamCreate", rc, "device " + std::to_string(device));
    }
    out->reset(new CudaCopyStream(api_, device, ctx, stream));
    return Status::Ok();
  }

 private:
  Status CheckDevice(int device) const {
    if (device < 0 || device >= api_->device_count) {
      return InvalidArgument("CUDA device " + std::to_string(device) + " does not exist (" +
                             std::to_string(api_->device_count) + " visible)");
    }
    return Status::Ok();
  }

  const DriverApi* const api_;
  PrimaryContexts& contexts_;
};

}  // namespace

Status NewCudaCopyEngine(std::shared_ptr<CopyEngine>* out) {
  out->reset();
  const DriverApi* api = nullptr;
  // kUnavailable (library missing, cuInit failed, no device...) with the
  // reason; the probe runs once per process.
  FASTCKPT_RETURN_IF_ERROR(cuda::LoadDriver(&api));
  *out = std::make_shared<CudaCopyEngine>(api);
  return Status::Ok();
}

}  // namespace fastckpt
