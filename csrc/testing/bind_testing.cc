// fastckpt._native_testing: hooks for tests, never used by the package.
//
// Fault injection (csrc/fastckpt/io/fault_injection.h) lets the test suite fail
// the N-th create/write/fsync/rename/close of a save with a chosen errno and
// check that nothing partial is left behind, hold a snapshot's fill until the
// save has failed (the failure racing a snapshot), and make thread creation
// fail. Bad arguments raise InvalidArgumentError through Check().
//
// The simulated device (csrc/testing/simulated_copy_engine.h) replaces the
// CUDA copy engine so that the staging pipeline runs in CPU-only tests.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>

#include "bindings/errors.h"
#include "fastckpt/format/dtypes.h"
#include "fastckpt/io/fault_injection.h"
#include "testing/registry.h"
#include "testing/simulated_copy_engine.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

void RegisterTesting(py::module_& t) {
  t.def(
      "arm_fault",
      [](const std::string& point, int64_t skip, int err, bool short_write) {
        fault::Point p;
        if (!fault::ParsePoint(point, &p)) {
          Check(InvalidArgument("arm_fault: unknown fault point '" + point +
                                "' (expected create, write, sync, rename, close or sync_dir)"));
        }
        if (skip < 0) Check(InvalidArgument("arm_fault: skip must be >= 0, not " + std::to_string(skip)));
        if (err < 0) Check(InvalidArgument("arm_fault: errno must be >= 0, not " + std::to_string(err)));
        if (short_write && p != fault::Point::kWrite) {
          Check(InvalidArgument("arm_fault: short_write applies only to the 'write' point, not '" + point + "'"));
        }
        fault::Arm(p, skip, err, short_write);
      },
      py::arg("point"), py::arg("skip"), py::arg("errno"), py::arg("short_write") = false,
      "Fails call number skip+1 at `point` with `errno` (0: only count calls). With\n"
      "short_write ('write' only), that call writes part of its bytes and the same\n"
      "thread's retry fails with `errno` (0: the retry succeeds). One-shot.");
  t.def("disarm_faults", &fault::Disarm,
        "Stops injecting faults, fill delays and thread failures (the hit count stays readable).");
  t.def("fault_hits", &fault::Hits, "Calls seen at the armed point since the last arm_fault.");
  t.def(
      "arm_fill_delay",
      [](int64_t skip, double wait_s, double delay_s) {
        if (skip < 0) Check(InvalidArgument("arm_fill_delay: skip must be >= 0, not " + std::to_string(skip)));
        if (!(wait_s >= 0) || !(delay_s >= 0) || wait_s > 3600 || delay_s > 3600) {
          Check(InvalidArgument("arm_fill_delay: wait_s and delay_s must be between 0 and 3600 seconds"));
        }
        fault::ArmFillDelay(skip, static_cast<int64_t>(wait_s * 1000), static_cast<int64_t>(delay_s * 1000));
      },
      py::arg("skip"), py::arg("wait_s"), py::arg("delay_s"),
      "The snapshot's fill number skip+1, holding its staging buffer and before copying\n"
      "into it, waits until the save has failed (at most wait_s), then delay_s more. One-shot.");
  t.def(
      "fill_delay_state",
      []() {
        fault::FillDelayState s = fault::GetFillDelayState();
        py::dict d;
        d["fills"] = s.fills;
        d["started"] = s.started;
        d["saw_failure"] = s.saw_failure;
        d["finished"] = s.finished;
        return d;
      },
      "{fills, started, saw_failure, finished} of the fill delay armed last.");
  t.def(
      "arm_thread_failures",
      [](int64_t skip, int64_t count) {
        if (skip < 0) Check(InvalidArgument("arm_thread_failures: skip must be >= 0, not " + std::to_string(skip)));
        if (count < -1) {
          Check(InvalidArgument("arm_thread_failures: count must be >= -1, not " + std::to_string(count)));
        }
        fault::ArmThreadFailures(skip, count);
      },
      py::arg("skip") = 0, py::arg("count") = -1,
      "After `skip` thread creations succeed, the next `count` (-1: all until\n"
      "disarm_faults) fail with EAGAIN.");
  t.def("thread_failures", &fault::ThreadFailures, "Thread creations the hook refused since arm_thread_failures.");

  py::class_<SimulatedCopyEngine, std::shared_ptr<SimulatedCopyEngine>>(
      t, "SimulatedDevice", "A CPU stand-in for the CUDA copy engine: device pointers are host addresses.")
      .def("stats",
           [](const SimulatedCopyEngine& e) {
             SimulatedCopyEngine::Stats s = e.stats();
             py::dict d;
             d["copies_to_host"] = s.copies_to_host;
             d["copies_to_device"] = s.copies_to_device;
             d["bytes_to_host"] = s.bytes_to_host;
             d["bytes_to_device"] = s.bytes_to_device;
             d["host_allocs"] = s.host_allocs;
             d["host_frees"] = s.host_frees;
             d["streams"] = s.streams;
             d["order_after_calls"] = s.order_after_calls;
             d["marks_waited"] = s.marks_waited;
             return d;
           })
      .def(
          "copies",
          [](const SimulatedCopyEngine& e) {
            py::list out;
            for (const SimulatedCopyRecord& r : e.copies()) {
              out.append(py::make_tuple(r.seq, r.to_host, r.bytes, r.begin_ns, r.end_ns));
            }
            return out;
          },
          "[(seq, to_host, bytes, begin_ns, end_ns)] in completion order.")
      .def("caller_work", &SimulatedCopyEngine::EnqueueCallerWork, py::arg("stream"), py::arg("delay_us"),
           py::arg("dst"), py::arg("src"), py::arg("nbytes"),
           "Queues work on a caller stream: after delay_us, copy nbytes from src to dst.");
  t.def(
      "install_simulated_device",
      [](double latency_us, double bandwidth_gbps, int64_t fail_copy, bool fail_at_enqueue) {
        SimulatedEngineOptions o;
        o.latency_us = latency_us;
        o.bandwidth_gbps = bandwidth_gbps;
        o.fail_copy = fail_copy;
        o.fail_at_enqueue = fail_at_enqueue;
        auto engine = std::make_shared<SimulatedCopyEngine>(o);
        InstallCopyEngine(engine);
        return engine;
      },
      py::arg("latency_us") = 0.0, py::arg("bandwidth_gbps") = 0.0, py::arg("fail_copy") = -1,
      py::arg("fail_at_enqueue") = false, "Routes device copies through a new simulated device and returns it.");
  t.def(
      "dtype_table",
      []() {
        py::list out;
        for (const DtypeInfo& d : kDtypes) {
          out.append(py::make_tuple(d.dtype, d.name, d.element_size, d.dlpack_code, d.dlpack_bits));
        }
        return out;
      },
      "The core's element-type table (format/dtypes.h): [(DataType or -1, name, bytes per\n"
      "element, DLPack code or 255, DLPack bits)].");
  t.def(
      "uninstall_device", []() { InstallCopyEngine(nullptr); }, "Restores the default copy engine (CUDA when usable).");
}

}  // namespace bindings
}  // namespace fastckpt
