// write_bundle() and encode_strings(): the writing side of the native core.
//
// Argument conversion runs with the GIL held; the whole write (checksums,
// I/O, fsync, renames) runs with it released. Source buffers are held through
// the buffer protocol for the duration of the call.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

#include "bindings/buffer.h"
#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/bundle_writer.h"
#include "fastckpt/save_job.h"
#include "fastckpt/staging_pool.h"
#include "fastckpt/string_tensor.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

namespace {

[[noreturn]] void BadItem(size_t i, const char* what) {
  throw py::type_error("write_bundle: item " + std::to_string(i) + ": " + what);
}

std::vector<TensorSlice> ToSlices(py::handle obj) {
  std::vector<TensorSlice> out;
  for (py::handle s : obj) {
    TensorSlice slice;
    for (py::handle ext : s) {
      auto t = ext.cast<std::pair<int64_t, int64_t>>();
      slice.push_back(SliceExtent{t.first, t.second});
    }
    out.push_back(std::move(slice));
  }
  return out;
}

// Converts the Python item list into native items. Buffers of host items
// are acquired into *views, which must outlive every use of the items.
//
// items: list of (key: bytes, dtype: int, shape: tuple[int], data, crc: int | None,
//                 slices: list[list[(start, length)]] | None)
// where data is None, an object exporting a C-contiguous buffer (host
// memory), or a tuple (device_ptr, nbytes, device, stream) describing device
// memory that the caller keeps alive.
void ParseItems(py::list items, std::vector<WriteItem>* out, std::vector<BufferView>* views) {
  const size_t n = items.size();
  std::vector<WriteItem>& native = *out;
  native.resize(n);
  views->reserve(n);
  for (size_t i = 0; i < n; ++i) {
    PyObject* tup = PyList_GET_ITEM(items.ptr(), i);
    if (!PyTuple_Check(tup) || PyTuple_GET_SIZE(tup) != 6) BadItem(i, "expected a 6-tuple");
    WriteItem& w = native[i];
    char* key;
    Py_ssize_t key_len;
    if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(tup, 0), &key, &key_len) != 0) throw py::error_already_set();
    w.key.assign(key, static_cast<size_t>(key_len));
    w.dtype = static_cast<int32_t>(PyLong_AsLong(PyTuple_GET_ITEM(tup, 1)));
    if (PyErr_Occurred()) throw py::error_already_set();
    PyObject* shape = PyTuple_GET_ITEM(tup, 2);
    if (!PyTuple_Check(shape)) BadItem(i, "shape must be a tuple");
    w.shape.resize(static_cast<size_t>(PyTuple_GET_SIZE(shape)));
    for (size_t d = 0; d < w.shape.size(); ++d) {
      w.shape[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
      if (PyErr_Occurred()) throw py::error_already_set();
    }
    PyObject* data = PyTuple_GET_ITEM(tup, 3);
    if (PyTuple_Check(data)) {
      auto dev = py::reinterpret_borrow<py::tuple>(data).cast<std::tuple<uint64_t, uint64_t, int, uint64_t>>();
      w.device_ptr = std::get<0>(dev);
      w.nbytes = std::get<1>(dev);
      w.device = std::get<2>(dev);
      w.stream = std::get<3>(dev);
      if (w.device < 0) BadItem(i, "device ordinal must be >= 0");
    } else if (data != Py_None) {
      views->emplace_back();
      if (!views->back().Acquire(data, /*writable=*/false)) throw py::error_already_set();
      w.data = views->back().data();
      w.nbytes = views->back().size();
      if (w.nbytes == 0) w.data = nullptr;
    }
    PyObject* crc = PyTuple_GET_ITEM(tup, 4);
    if (crc != Py_None) {
      w.has_crc = true;
      w.crc = static_cast<uint32_t>(PyLong_AsUnsignedLong(crc));
      if (PyErr_Occurred()) throw py::error_already_set();
    }
    PyObject* slices = PyTuple_GET_ITEM(tup, 5);
    if (slices != Py_None) w.slices = ToSlices(slices);
  }
}

WriteOptions MakeOptions(int num_shards, int threads, bool durable, uint64_t task_bytes, bool sort_data) {
  WriteOptions opts;
  opts.num_shards = num_shards;
  opts.threads = threads;
  opts.durable = durable;
  if (task_bytes > 0) opts.task_bytes = task_bytes;
  opts.sort_data = sort_data;
  return opts;
}

py::dict ResultDict(const WriteResult& result) {
  py::dict out;
  out["num_shards"] = result.num_shards;
  out["data_bytes"] = result.data_bytes;
  out["files"] = result.files;
  return out;
}

py::dict WriteBundlePy(const std::string& prefix, py::list items, int num_shards, int threads,
                       bool durable, uint64_t task_bytes, bool sort_data) {
  std::vector<WriteItem> native;
  std::vector<BufferView> views;
  ParseItems(items, &native, &views);
  WriteOptions opts = MakeOptions(num_shards, threads, durable, task_bytes, sort_data);
  WriteResult result;
  Status st;
  {
    py::gil_scoped_release release;
    st = WriteBundle(prefix, std::move(native), opts, &result);
  }
  Check(st);
  return ResultDict(result);
}

// A save in phases (save_job.h). Holds the host buffers it reads until it is
// destroyed; the caller keeps device arrays alive until finish() returns.
// Every blocking method releases the GIL. Destruction joins the job's
// threads (after aborting an unfinished job).
class PySaveJob {
 public:
  PySaveJob(const std::string& prefix, py::list items, int num_shards, int threads, bool durable,
            uint64_t task_bytes, bool sort_data, bool snapshot_host, int max_buffers, bool trace,
            int fill_threads) {
    std::vector<WriteItem> native;
    ParseItems(items, &native, &views_);
    StagingOptions staging;
    staging.snapshot_host = snapshot_host;
    staging.max_buffers = max_buffers;
    staging.trace = trace;
    staging.fill_threads = fill_threads;
    WriteOptions opts = MakeOptions(num_shards, threads, durable, task_bytes, sort_data);
    Status st;
    {
      py::gil_scoped_release release;
      st = SaveJob::Create(prefix, std::move(native), opts, staging, &job_);
    }
    Check(st);
  }
  ~PySaveJob() {
    py::gil_scoped_release release;  // joining threads must not hold the GIL
    job_.reset();
  }

  void Snapshot() {
    Status st;
    {
      py::gil_scoped_release release;
      st = job_->Snapshot();
    }
    Check(st);
  }
  void StartWriting() {
    py::gil_scoped_release release;
    job_->StartWriting();
  }
  py::dict Finish() {
    WriteResult result;
    Status st;
    {
      py::gil_scoped_release release;
      st = job_->Finish(&result);
    }
    Check(st);
    return ResultDict(result);
  }
  void Abort(const std::string& why) { job_->Abort(FailedPrecondition(why)); }
  py::dict Progress() const {
    SaveProgress p = job_->progress();
    py::dict d;
    d["total_bytes"] = p.total_bytes;
    d["staged_bytes"] = p.staged_bytes;
    d["written_bytes"] = p.written_bytes;
    d["tasks"] = p.tasks;
    d["staged_tasks"] = p.staged_tasks;
    return d;
  }
  py::list Trace() const {
    py::list out;
    for (const TraceEvent& e : job_->trace()) {
      out.append(py::make_tuple(std::string(1, e.kind), e.task, e.begin_ns, e.end_ns));
    }
    return out;
  }

 private:
  std::vector<BufferView> views_;  // destroyed after job_ (declared first)
  std::unique_ptr<SaveJob> job_;
};

py::dict StagingStatsPy() {
  StagingPoolStats s = StagingPool::Instance().stats();
  py::dict d;
  d["capacity_bytes"] = s.capacity_bytes;
  d["buffer_bytes"] = s.buffer_bytes;
  d["allocated_bytes"] = s.allocated_bytes;
  d["peak_allocated_bytes"] = s.peak_allocated_bytes;
  d["allocations"] = s.allocations;
  d["acquisitions"] = s.acquisitions;
  d["waits"] = s.waits;
  d["lent"] = s.lent;
  return d;
}

// Serializes a sequence of bytes objects as a DT_STRING tensor.
// Returns (encoded bytes, unmasked entry CRC).
py::tuple EncodeStringsPy(py::sequence elems) {
  std::vector<StringPiece> pieces;
  pieces.reserve(elems.size());
  std::vector<py::object> keep;  // holds the sequence's items alive
  keep.reserve(elems.size());
  for (py::handle h : elems) {
    if (!PyBytes_Check(h.ptr())) throw py::type_error("encode_strings: elements must be bytes");
    pieces.push_back({PyBytes_AS_STRING(h.ptr()), static_cast<size_t>(PyBytes_GET_SIZE(h.ptr()))});
    keep.push_back(py::reinterpret_borrow<py::object>(h));
  }
  std::string encoded;
  uint32_t crc;
  {
    py::gil_scoped_release release;
    crc = EncodeStringTensor(pieces, &encoded);
  }
  return py::make_tuple(py::bytes(encoded), crc);
}

}  // namespace

void RegisterWriter(py::module_& m) {
  m.def("write_bundle", &WriteBundlePy, py::arg("prefix"), py::arg("items"), py::arg("num_shards") = 0,
        py::arg("threads") = 0, py::arg("durable") = true, py::arg("task_bytes") = 0,
        py::arg("sort_data") = true,
        "Writes a checkpoint bundle (data shards, then index). Releases the GIL while writing.");
  py::class_<PySaveJob>(m, "SaveJob", "A save in phases: snapshot() then finish() (see save_job.h).")
      .def(py::init<const std::string&, py::list, int, int, bool, uint64_t, bool, bool, int, bool, int>(),
           py::arg("prefix"), py::arg("items"), py::arg("num_shards") = 0, py::arg("threads") = 0,
           py::arg("durable") = true, py::arg("task_bytes") = 0, py::arg("sort_data") = true,
           py::arg("snapshot_host") = false, py::arg("max_buffers") = 0, py::arg("trace") = false,
           py::arg("fill_threads") = 0)
      .def("snapshot", &PySaveJob::Snapshot,
           "Copies every staged byte into staging buffers; afterwards the source arrays may change.")
      .def("start_writing", &PySaveJob::StartWriting, "Starts the writer threads (idempotent).")
      .def("finish", &PySaveJob::Finish, "Writes, commits, and returns what was written.")
      .def("abort", &PySaveJob::Abort, py::arg("reason"), "Fails the save; nothing is committed.")
      .def("progress", &PySaveJob::Progress)
      .def("trace", &PySaveJob::Trace, "[(kind, task, begin_ns, end_ns)]: 'f' filled, 'w' written.");
  m.def(
      "configure_staging",
      [](uint64_t buffer_bytes, uint64_t capacity_bytes, uint64_t retain_bytes) {
        StagingPool::Instance().Configure(buffer_bytes, capacity_bytes, retain_bytes);
      },
      py::arg("buffer_bytes"), py::arg("capacity_bytes"), py::arg("retain_bytes"),
      "Sets the staging buffer size, the host-memory budget of all staging, and how much\n"
      "free staging memory is kept for reuse.");
  m.def("staging_stats", &StagingStatsPy, "Counters of the staging buffer pool.");
  m.def(
      "trim_staging", []() { StagingPool::Instance().Trim(); },
      "Returns every free staging buffer to the system.");
  m.def("encode_strings", &EncodeStringsPy, py::arg("elements"),
        "Serializes bytes objects as a DT_STRING tensor; returns (bytes, crc).");
}

}  // namespace bindings
}  // namespace fastckpt
