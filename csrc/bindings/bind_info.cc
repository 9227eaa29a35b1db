// build_info(): what this build of the native core is and can do.
#include <pybind11/pybind11.h>

#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/crc32c/crc32c.h"
#include "fastckpt/device/copy_engine.h"
#include "fastckpt/device/cuda_driver.h"
#include "fastckpt/pipeline/helper_threads.h"
#include "fastckpt/pipeline/task_plan.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

void RegisterInfo(py::module_& m) {
  m.attr("__version__") = FASTCKPT_VERSION;
  // The default unit of parallel work (fastckpt/config.py reads it from here).
  m.attr("DEFAULT_TASK_BYTES") = py::int_(kDefaultTaskBytes);
  m.def(
      "build_info",
      [](bool probe_cuda) {
        py::dict d;
        d["version"] = FASTCKPT_VERSION;
        d["crc32c_impl"] = crc32c::ImplName(crc32c::ActiveImpl());
        py::list impls;
        for (crc32c::Impl i : crc32c::AvailableImpls()) impls.append(crc32c::ImplName(i));
        d["crc32c_impls"] = impls;
        d["default_io_threads"] = DefaultThreads();
        if (probe_cuda) {
          // Loads the driver and runs cuInit (once per process).
          const cuda::DriverInfo& cu = cuda::Probe();
          d["cuda_driver_found"] = cu.library_found;
          d["cuda_initialized"] = cu.initialized;
          d["cuda_device_count"] = cu.device_count;
          d["cuda_driver_version"] = cu.driver_version;
          d["cuda_error"] = cu.error;
          // The path device arrays take: "cuda", "cpu" (none), or "simulated" in tests.
          d["device_path"] = ActiveDevicePath();
        }
#if defined(__x86_64__)
        d["arch"] = "x86_64";
#elif defined(__aarch64__)
        d["arch"] = "aarch64";
#else
        d["arch"] = "other";
#endif
        d["compiler"] = __VERSION__;
        return d;
      },
      py::arg("probe_cuda") = true,
      "Facts about this build: version, CRC32C implementation, threads, and (with probe_cuda,\n"
      "which loads and initialises the CUDA driver) the driver and the device path.");
  m.def("default_io_threads", &DefaultThreads,
        "The default number of I/O threads (the hardware concurrency); touches no driver.");
  m.def(
      "require_device_path",
      []() {
        std::shared_ptr<CopyEngine> engine;
        Status st;
        {
          py::gil_scoped_release release;  // the first call loads the driver
          st = GetCopyEngine(&engine);
        }
        Check(st);
        return engine->name();
      },
      "The device path's name ('cuda' or 'simulated'); raises CudaUnavailableError saying why\n"
      "there is none.");
  m.def("device_path", &ActiveDevicePath,
        "The path device arrays take now: 'cuda', 'simulated' (tests) or 'cpu' (no device path).");
}

}  // namespace bindings
}  // namespace fastckpt
