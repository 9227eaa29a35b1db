#include "fastckpt/device/cuda_driver.h"

#include <dlfcn.h>

#include <vector>

namespace fastckpt {
namespace cuda {

namespace {

// Everything learned about the driver, computed once (C++11 guarantees a
// thread-safe initialisation of the function-local static below).
struct LoadedDriver {
  DriverInfo info;        // for Probe()
  DriverApi api{};        // complete only when `status` is ok
  Status status;          // why the engine cannot use the driver, if it cannot
};

// Resolves `name` into `*slot`; records the name when it is missing.
template <typename Fn>
void Resolve(void* lib, const char* name, Fn* slot, std::vector<std::string>* missing) {
  void* sym = dlsym(lib, name);
  if (sym == nullptr) missing->push_back(name);
  // dlsym returns data pointers; POSIX guarantees the round trip to function
  // pointers, which is how every dlopen user calls into a library.
  *slot = reinterpret_cast<Fn>(sym);
}

LoadedDriver* DoLoad() {
  auto* d = new LoadedDriver();  // never freed: see the header
  // A plain dlopen (not RTLD_NOLOAD) so that a driver nobody has loaded yet is
  // found. RTLD_LOCAL keeps its symbols out of the global namespace. The
  // handle is never closed: the driver stays resident for the process.
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    d->info.error = err ? err : "libcuda.so.1 not found";
    d->status = Unavailable("CUDA driver not available: " + d->info.error);
    return d;
  }
  d->info.library_found = true;

  std::vector<std::string> missing;
  DriverApi& a = d->api;
  Resolve(lib, "cuInit", &a.cuInit, &missing);
  Resolve(lib, "cuDriverGetVersion", &a.cuDriverGetVersion, &missing);
  Resolve(lib, "cuDeviceGetCount", &a.cuDeviceGetCount, &missing);
  const bool probe_usable = missing.empty();
  Resolve(lib, "cuDeviceGet", &a.cuDeviceGet, &missing);
  Resolve(lib, "cuDevicePrimaryCtxRetain", &a.cuDevicePrimaryCtxRetain, &missing);
  Resolve(lib, "cuCtxSetCurrent", &a.cuCtxSetCurrent, &missing);
  Resolve(lib, "cuCtxGetCurrent", &a.cuCtxGetCurrent, &missing);
  Resolve(lib, "cuMemHostAlloc", &a.cuMemHostAlloc, &missing);
  Resolve(lib, "cuMemFreeHost", &a.cuMemFreeHost, &missing);
  Resolve(lib, "cuStreamCreate", &a.cuStreamCreate, &missing);
  Resolve(lib, "cuStreamDestroy_v2", &a.cuStreamDestroy, &missing);
  Resolve(lib, "cuMemcpyDtoHAsync_v2", &a.cuMemcpyDtoHAsync, &missing);
  Resolve(lib, "cuMemcpyHtoDAsync_v2", &a.cuMemcpyHtoDAsync, &missing);
  Resolve(lib, "cuEventCreate", &a.cuEventCreate, &missing);
  Resolve(lib, "cuEventDestroy_v2", &a.cuEventDestroy, &missing);
  Resolve(lib, "cuEventRecord", &a.cuEventRecord, &missing);
  Resolve(lib, "cuStreamWaitEvent", &a.cuStreamWaitEvent, &missing);
  Resolve(lib, "cuEventSynchronize", &a.cuEventSynchronize, &missing);
  Resolve(lib, "cuGetErrorString", &a.cuGetErrorString, &missing);
  Resolve(lib, "cuGetErrorName", &a.cuGetErrorName, &missing);

  if (!probe_usable) {
    d->info.error = "libcuda.so.1 lacks the driver API entry points";
    d->status = Unavailable("CUDA driver not usable: " + d->info.error);
    return d;
  }

  a.cuDriverGetVersion(&d->info.driver_version);
  CUresult rc = a.cuInit(0);
  if (rc != CUDA_SUCCESS) {
    // cuGetErrorName works before (and without) a successful cuInit.
    const bool can_name = a.cuGetErrorName != nullptr && a.cuGetErrorString != nullptr;
    d->info.error = "cuInit failed: " + (can_name ? DescribeError(&a, rc) : "CUresult " + std::to_string(rc));
    d->status = Unavailable("CUDA driver not usable: " + d->info.error);
    return d;
  }
  d->info.initialized = true;
  if (a.cuDeviceGetCount(&d->info.device_count) != CUDA_SUCCESS) d->info.device_count = 0;
  a.device_count = d->info.device_count;
  a.driver_version = d->info.driver_version;

  if (!missing.empty()) {
    std::string names;
    for (const std::string& n : missing) names += (names.empty() ? "" : ", ") + n;
    // Probe() still describes this driver; only the engine cannot use it.
    d->status = Unavailable("CUDA driver (version " + std::to_string(d->info.driver_version) +
                            ") lacks entry points the copy engine needs: " + names);
    return d;
  }
  if (d->info.device_count <= 0) {
    d->status = Unavailable(
        "CUDA driver loaded but no CUDA device is visible to this process "
        "(check CUDA_VISIBLE_DEVICES)");
    return d;
  }
  return d;
}

const LoadedDriver& Loaded() {
  static const LoadedDriver* d = DoLoad();
  return *d;
}

}  // namespace

Status LoadDriver(const DriverApi** out) {
  const LoadedDriver& d = Loaded();
  if (!d.status.ok()) {
    *out = nullptr;
    return d.status;
  }
  *out = &d.api;
  return Status::Ok();
}

std::string DescribeError(const DriverApi* api, CUresult rc) {
  const char* name = nullptr;
  const char* text = nullptr;
  // Both calls leave the pointer NULL (and return CUDA_ERROR_INVALID_VALUE)
  // for a code the driver does not know.
  if (api->cuGetErrorName(rc, &name) != CUDA_SUCCESS) name = nullptr;
  if (api->cuGetErrorString(rc, &text) != CUDA_SUCCESS) text = nullptr;
  std::string s = name != nullptr ? name : "CUresult " + std::to_string(rc);
  if (text != nullptr) {
    s += " (";
    s += text;
    s += ")";
  }
  return s;
}

std::string ErrorName(const DriverApi* api, CUresult rc) {
  const char* name = nullptr;
  if (api->cuGetErrorName(rc, &name) != CUDA_SUCCESS || name == nullptr) return std::string();
  return name;
}

Status CudaError(const DriverApi* api, const char* call, CUresult rc, const std::string& context) {
  std::string m = std::string("CUDA ") + call + " failed: " + DescribeError(api, rc);
  if (!context.empty()) m += ", " + context;
  return Status::Device(std::move(m), rc, ErrorName(api, rc));
}

const DriverInfo& Probe() { return Loaded().info; }

}  // namespace cuda
}  // namespace fastckpt
