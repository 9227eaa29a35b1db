#include "fastckpt/cuda_driver.h"

#include <dlfcn.h>

namespace fastckpt {
namespace cuda {

namespace {

// Driver API prototypes, declared by hand so that no CUDA header is needed
// at build time. CUresult is an int-sized enum; 0 is CUDA_SUCCESS.
using CuInitFn = int (*)(unsigned int);
using CuDeviceGetCountFn = int (*)(int*);
using CuDriverGetVersionFn = int (*)(int*);

DriverInfo DoProbe() {
  DriverInfo info;
  // RTLD_NOLOAD first would miss a not-yet-loaded driver; a plain dlopen is
  // what we want. The handle is intentionally never closed: the driver stays
  // resident for the life of the process.
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = dlerror();
    info.error = err ? err : "libcuda.so.1 not found";
    return info;
  }
  info.library_found = true;
  auto cu_init = reinterpret_cast<CuInitFn>(dlsym(lib, "cuInit"));
  auto cu_count = reinterpret_cast<CuDeviceGetCountFn>(dlsym(lib, "cuDeviceGetCount"));
  auto cu_version = reinterpret_cast<CuDriverGetVersionFn>(dlsym(lib, "cuDriverGetVersion"));
  if (!cu_init || !cu_count || !cu_version) {
    info.error = "libcuda.so.1 lacks the driver API entry points";
    return info;
  }
  cu_version(&info.driver_version);
  int rc = cu_init(0);
  if (rc != 0) {
    info.error = "cuInit failed with CUresult " + std::to_string(rc);
    return info;
  }
  info.initialized = true;
  if (cu_count(&info.device_count) != 0) info.device_count = 0;
  return info;
}

}  // namespace

const DriverInfo& Probe() {
  static const DriverInfo info = DoProbe();
  return info;
}

}  // namespace cuda
}  // namespace fastckpt
