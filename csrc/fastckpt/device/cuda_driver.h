// Run-time discovery of the CUDA driver (libcuda.so.1), so that one build
// works with a GPU, without one, and without CUDA installed. Nothing links
// against CUDA; the library is dlopen()ed on first use, and the driver API is
// reached through a table of function pointers resolved with dlsym().
//
// The types and constants below are declared by hand with the values and
// ABI of cuda.h (the driver API has kept them stable since CUDA 4); no CUDA
// header is needed at build time.
//
// Thread-safety: all functions are safe to call from any thread; the library
// is loaded and cuInit() runs exactly once per process. The table is
// immutable once loaded and is never freed (the driver stays resident until
// the process exits: teardown order at exit is unknowable, so nothing here
// unloads it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "fastckpt/core/status.h"

namespace fastckpt {
namespace cuda {

// ---- Driver API types (ABI of cuda.h on 64-bit Linux) ----------------------

using CUresult = int;                  // an enum in cuda.h; int-sized
using CUdevice = int;
using CUdeviceptr = unsigned long long;  // the _v2 (64-bit) CUdeviceptr
struct CUctx_st;
struct CUstream_st;
struct CUevent_st;
using CUcontext = CUctx_st*;
using CUstream = CUstream_st*;
using CUevent = CUevent_st*;

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_INVALID_VALUE = 1;
constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
constexpr CUresult CUDA_ERROR_NOT_INITIALIZED = 3;
constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
constexpr CUresult CUDA_ERROR_INVALID_CONTEXT = 201;
constexpr CUresult CUDA_ERROR_ILLEGAL_ADDRESS = 700;

constexpr unsigned int CU_MEMHOSTALLOC_PORTABLE = 0x01;
constexpr unsigned int CU_STREAM_NON_BLOCKING = 0x1;
constexpr unsigned int CU_EVENT_DISABLE_TIMING = 0x2;

// The special stream handles of cuda.h. They are valid with every driver
// entry point that takes a stream. Note that CU_STREAM_PER_THREAD names the
// per-thread default stream *of the calling thread* (in its current context).
inline CUstream StreamLegacy() { return reinterpret_cast<CUstream>(uintptr_t{0x1}); }
inline CUstream StreamPerThread() { return reinterpret_cast<CUstream>(uintptr_t{0x2}); }

// ---- The driver API table ---------------------------------------------------

// Entry points used by the copy engine. Each member holds the symbol named
// in the comment: where cuda.h maps an API name onto a versioned symbol
// (cuStreamDestroy -> cuStreamDestroy_v2 ...), the versioned one is resolved,
// since that is what a program compiled against cuda.h calls.
struct DriverApi {
  CUresult (*cuInit)(unsigned int flags);
  CUresult (*cuDriverGetVersion)(int* version);
  CUresult (*cuDeviceGetCount)(int* count);
  CUresult (*cuDeviceGet)(CUdevice* device, int ordinal);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext* ctx, CUdevice device);
  CUresult (*cuCtxSetCurrent)(CUcontext ctx);
  CUresult (*cuCtxGetCurrent)(CUcontext* ctx);
  CUresult (*cuMemHostAlloc)(void** p, size_t bytes, unsigned int flags);
  CUresult (*cuMemFreeHost)(void* p);
  CUresult (*cuStreamCreate)(CUstream* stream, unsigned int flags);
  CUresult (*cuStreamDestroy)(CUstream stream);  // cuStreamDestroy_v2
  CUresult (*cuMemcpyDtoHAsync)(void* dst, CUdeviceptr src, size_t bytes,
                                CUstream stream);  // cuMemcpyDtoHAsync_v2
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr dst, const void* src, size_t bytes,
                                CUstream stream);  // cuMemcpyHtoDAsync_v2
  CUresult (*cuEventCreate)(CUevent* event, unsigned int flags);
  CUresult (*cuEventDestroy)(CUevent event);  // cuEventDestroy_v2
  CUresult (*cuEventRecord)(CUevent event, CUstream stream);
  CUresult (*cuStreamWaitEvent)(CUstream stream, CUevent event, unsigned int flags);
  CUresult (*cuEventSynchronize)(CUevent event);
  CUresult (*cuGetErrorString)(CUresult error, const char** str);
  CUresult (*cuGetErrorName)(CUresult error, const char** str);

  int device_count = 0;    // devices visible to this process (> 0 once loaded)
  int driver_version = 0;  // e.g. 12040 for 12.4
};

// The loaded driver with cuInit(0) done and at least one device, or
// kUnavailable saying why not (library missing, an entry point missing,
// cuInit failed, no device). The result, success or failure, is computed
// once and cached for the life of the process. On success *out points to a
// table that lives until exit.
Status LoadDriver(const DriverApi** out);

// "CUDA_ERROR_ILLEGAL_ADDRESS (an illegal memory access was encountered)",
// or "CUresult 123" when the driver cannot name the code.
// REQUIRES: api != nullptr (a table from LoadDriver).
std::string DescribeError(const DriverApi* api, CUresult rc);
// "CUDA_ERROR_ILLEGAL_ADDRESS", or "" when the driver cannot name the code.
std::string ErrorName(const DriverApi* api, CUresult rc);

// The Status for a failed driver call: kDeviceError carrying the CUresult
// and its name, with the message "CUDA <call> failed: <DescribeError(rc)>"
// plus ", <context>" when context is not empty. Not kUnavailable: a driver
// that is present but fails a call (out of memory, an illegal address) is a
// real GPU error that "no GPU, fall back to the host" code must not swallow.
Status CudaError(const DriverApi* api, const char* call, CUresult rc, const std::string& context = std::string());

// ---- Probe (build_info) -----------------------------------------------------

struct DriverInfo {
  bool library_found = false;  // libcuda.so.1 could be loaded
  bool initialized = false;    // cuInit(0) succeeded
  int device_count = 0;
  int driver_version = 0;      // e.g. 12040 for 12.4
  std::string error;           // why the driver is unusable, if it is
};

// What the driver looks like to this process. Needs only cuInit,
// cuDriverGetVersion and cuDeviceGetCount, so it also describes drivers too
// old (or too partial) for the copy engine; LoadDriver's status says whether
// the engine can run.
const DriverInfo& Probe();

}  // namespace cuda
}  // namespace fastckpt
