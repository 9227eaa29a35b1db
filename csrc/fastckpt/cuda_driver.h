// Run-time discovery of the CUDA driver (libcuda.so.1), so that one build
// works with a GPU, without one, and without CUDA installed. Nothing links
// against CUDA; the library is dlopen()ed on first use.
//
// Thread-safety: all functions are safe to call from any thread; the probe
// runs once.
#pragma once

#include <string>

namespace fastckpt {
namespace cuda {

struct DriverInfo {
  bool library_found = false;  // libcuda.so.1 could be loaded
  bool initialized = false;    // cuInit(0) succeeded
  int device_count = 0;
  int driver_version = 0;      // e.g. 12040 for 12.4
  std::string error;           // why the driver is unusable, if it is
};

const DriverInfo& Probe();

}  // namespace cuda
}  // namespace fastckpt
