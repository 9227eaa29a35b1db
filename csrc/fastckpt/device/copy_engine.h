// The device copy engine: how bytes move between device (GPU) memory and
// host memory. The staging pipeline (save_job.cc, bundle_reader_device.cc)
// is written against this interface only, so the same pipeline code runs
// with the CUDA driver (cuda_copy_engine.cc) on a machine with a GPU and with
// a simulated engine (simulated_copy_engine.cc) in CPU-only tests.
//
// Model (CUDA's): copies are enqueued on a CopyStream and run asynchronously,
// in order, on that stream. Mark() returns a marker for "everything enqueued
// so far"; WaitMark() blocks the calling host thread until it is reached and
// reports any copy that failed (errors of asynchronous copies surface there,
// as CUDA reports them at synchronisation).
//
// Thread-safety: a CopyEngine may be used from any thread. A CopyStream is
// used by one thread at a time (each pipeline thread owns its streams).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fastckpt/core/status.h"

namespace fastckpt {

// An address in device memory (a CUdeviceptr for CUDA).
using DevicePtr = uint64_t;

// Caller stream handles, as __cuda_array_interface__ (v3) and DLPack name
// them. kNoStream: the caller asks for no ordering (its data is ready).
constexpr uint64_t kNoStream = 0;
constexpr uint64_t kLegacyDefaultStream = 1;
constexpr uint64_t kPerThreadDefaultStream = 2;

class CopyStream {
 public:
  virtual ~CopyStream() = default;

  // Orders every copy enqueued on this stream from now on after the work the
  // caller has queued so far on `caller_stream` (kNoStream: a no-op). Does not
  // block the host. kPerThreadDefaultStream means the calling thread's, so
  // this is called on the thread that handed over the arrays.
  virtual Status OrderAfter(uint64_t caller_stream) = 0;

  // Enqueue asynchronous copies. `host` must stay valid until a Mark() taken
  // after the call has been waited for. For device-to-host, `host` must be
  // memory from CopyEngine::AllocHost for the copy to be truly asynchronous.
  virtual Status CopyToHost(void* host, DevicePtr src, size_t n) = 0;
  virtual Status CopyToDevice(DevicePtr dst, const void* host, size_t n) = 0;

  // A marker for the completion of everything enqueued so far.
  virtual Status Mark(uint64_t* mark) = 0;
  // Blocks until `mark` is reached. Returns the error of any copy enqueued
  // before it that failed; after an error the stream stays failed.
  virtual Status WaitMark(uint64_t mark) = 0;
};

class CopyEngine {
 public:
  virtual ~CopyEngine() = default;

  // "cuda" or "simulated".
  virtual std::string name() const = 0;

  // Page-locked host memory of n bytes (n > 0), suitable for asynchronous
  // copies to and from every device, allocated in the context of `device`
  // (the device the caller is about to copy with: no other device gets a
  // context it was never asked for); freed with FreeHost(device, p, n).
  virtual Status AllocHost(int device, size_t n, void** out) = 0;
  virtual void FreeHost(int device, void* p, size_t n) = 0;

  // A new stream for copies to and from `device` (an ordinal).
  virtual Status NewStream(int device, std::unique_ptr<CopyStream>* out) = 0;
};

// The engine device arrays go through: one installed by the test suite
// (InstallCopyEngine), else the CUDA driver's when it is usable. Otherwise
// kUnavailable explaining why there is no device path.
Status GetCopyEngine(std::shared_ptr<CopyEngine>* out);

// Replaces the engine (the test suite installs the simulated one); nullptr
// restores the default. Saves already running keep the engine they started
// with.
void InstallCopyEngine(std::shared_ptr<CopyEngine> engine);

// "cuda", "simulated" or "cpu": the path device arrays take right now.
std::string ActiveDevicePath();

// Implemented in cuda_copy_engine.cc: the engine over the CUDA driver API
// (libcuda.so.1, loaded at run time). kUnavailable when the driver is
// missing or has no device.
Status NewCudaCopyEngine(std::shared_ptr<CopyEngine>* out);

}  // namespace fastckpt
