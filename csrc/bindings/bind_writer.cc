// write_bundle(), SaveJob, commit_bundle() and encode_strings(): the writing
// side of the native core.
//
// Argument conversion runs with the GIL held; the whole write (checksums,
// I/O, fsync, renames) and every commit run with it released. Source buffers
// are held through the buffer protocol for the duration of the call.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include "bindings/buffer.h"
#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/format/string_tensor.h"
#include "fastckpt/io/bundle_commit.h"
#include "fastckpt/pipeline/helper_threads.h"
#include "fastckpt/pipeline/save_job.h"
#include "fastckpt/pipeline/staging_pool.h"
#include "fastckpt/pipeline/write_bundle.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

namespace {

// Raises InvalidArgumentError naming the item. REQUIRES: the GIL.
[[noreturn]] void BadItem(size_t i, const std::string& what) {
  ThrowStatus(InvalidArgument("write_bundle: item " + std::to_string(i) + ": " + what));  // Check(), noreturn
}

// BadItem with the text of the Python error that is pending (cleared here),
// e.g. a conversion that failed inside the C API. REQUIRES: the GIL.
[[noreturn]] void BadItemFromPyError(size_t i, const std::string& what) {
  py::error_already_set pending;  // fetches and clears the error
  BadItem(i, what + " (" + pending.what() + ")");
}

std::vector<TensorSlice> ToSlices(size_t i, py::handle obj) {
  std::vector<TensorSlice> out;
  try {
    for (py::handle s : obj) {
      TensorSlice slice;
      for (py::handle ext : s) {
        auto t = ext.cast<std::pair<int64_t, int64_t>>();
        slice.push_back(SliceExtent{t.first, t.second});
      }
      out.push_back(std::move(slice));
    }
  } catch (const py::error_already_set& e) {
    BadItem(i, std::string("slices must be a list of lists of (start, length) pairs (") + e.what() + ")");
  } catch (const py::cast_error& e) {
    BadItem(i, std::string("slices must be a list of lists of (start, length) pairs (") + e.what() + ")");
  }
  return out;
}

// Converts the Python item list into native items. Buffers of host items
// are acquired into *views, which must outlive every use of the items.
// A malformed item raises InvalidArgumentError naming it.
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
    if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(tup, 0), &key, &key_len) != 0) {
      BadItemFromPyError(i, "the key must be bytes");
    }
    w.key.assign(key, static_cast<size_t>(key_len));
    w.dtype = static_cast<int32_t>(PyLong_AsLong(PyTuple_GET_ITEM(tup, 1)));
    if (PyErr_Occurred()) BadItemFromPyError(i, "the dtype must be an int");
    PyObject* shape = PyTuple_GET_ITEM(tup, 2);
    if (!PyTuple_Check(shape)) BadItem(i, "shape must be a tuple");
    w.shape.resize(static_cast<size_t>(PyTuple_GET_SIZE(shape)));
    for (size_t d = 0; d < w.shape.size(); ++d) {
      w.shape[d] = PyLong_AsLongLong(PyTuple_GET_ITEM(shape, d));
      if (PyErr_Occurred()) BadItemFromPyError(i, "dimension " + std::to_string(d) + " of the shape must be an int");
    }
    PyObject* data = PyTuple_GET_ITEM(tup, 3);
    if (PyTuple_Check(data)) {
      if (PyTuple_GET_SIZE(data) != 4) BadItem(i, "device data must be (ptr, nbytes, device, stream)");
      try {
        auto dev = py::reinterpret_borrow<py::tuple>(data).cast<std::tuple<uint64_t, uint64_t, int, uint64_t>>();
        w.device_ptr = std::get<0>(dev);
        w.nbytes = std::get<1>(dev);
        w.device = std::get<2>(dev);
        w.stream = std::get<3>(dev);
      } catch (const py::cast_error&) {
        BadItem(i, "device data must be (ptr, nbytes, device, stream) of non-negative ints");
      }
      if (w.device < 0) BadItem(i, "device ordinal must be >= 0");
    } else if (data != Py_None) {
      views->emplace_back();
      if (!views->back().Acquire(data, /*writable=*/false)) {
        views->pop_back();
        BadItemFromPyError(i, "data must export a C-contiguous buffer");
      }
      w.data = views->back().data();
      w.nbytes = views->back().size();
      if (w.nbytes == 0) w.data = nullptr;
    }
    PyObject* crc = PyTuple_GET_ITEM(tup, 4);
    if (crc != Py_None) {
      w.has_crc = true;
      w.crc = static_cast<uint32_t>(PyLong_AsUnsignedLong(crc));
      if (PyErr_Occurred()) BadItemFromPyError(i, "crc must be None or an unsigned 32-bit int");
    }
    PyObject* slices = PyTuple_GET_ITEM(tup, 5);
    if (slices != Py_None) w.slices = ToSlices(i, slices);
  }
}

WriteOptions MakeOptions(int num_shards, int threads, bool durable, uint64_t task_bytes, bool sort_data, int shard_base,
                         int total_shards, int64_t chunk_bytes, bool commit) {
  WriteOptions opts;
  opts.num_shards = num_shards;
  opts.threads = threads;
  opts.durable = durable;
  if (task_bytes > 0) opts.task_bytes = task_bytes;
  opts.sort_data = sort_data;
  opts.shard_base = shard_base;
  opts.total_shards = total_shards;
  opts.chunk_bytes = chunk_bytes;
  opts.commit = commit;
  return opts;
}

// A stored slice list as Reader.entries() gives it: [[(start, length), ...], ...]
// (length -1: the whole dimension), or None. Requires the GIL.
py::object SlicesOrNone(const std::vector<TensorSlice>& slices) {
  if (slices.empty()) return py::none();
  py::list out;
  for (const TensorSlice& s : slices) {
    py::list exts;
    for (const SliceExtent& x : s) exts.append(py::make_tuple(x.start, x.length));
    out.append(exts);
  }
  return std::move(out);
}

// One index entry in Reader.entries()'s format: (key, dtype, shape, shard,
// offset, size, masked crc32c, slices | None). Requires the GIL.
py::tuple EntryTuple(const IndexEntry& e) {
  py::tuple shape(e.entry.shape.size());
  for (size_t d = 0; d < e.entry.shape.size(); ++d) shape[d] = py::int_(e.entry.shape[d]);
  return py::make_tuple(py::bytes(e.key), e.entry.dtype, shape, e.entry.shard_id, e.entry.offset, e.entry.size,
                        e.entry.masked_crc32c, SlicesOrNone(e.entry.slices));
}

// What finish() returns: committed, {"num_shards", "data_bytes", "files"};
// not committed, {"num_shards", "data_bytes", "entries", "data_files",
// "chunk_crcs"}; a committed save with chunk_bytes > 0 adds "chunk_crcs".
py::dict ResultDict(const WriteResult& result, bool committed, bool chunks) {
  py::dict out;
  out["num_shards"] = result.num_shards;
  out["data_bytes"] = result.data_bytes;
  if (committed) {
    out["files"] = result.files;
  } else {
    py::list entries(result.entries.size());
    for (size_t i = 0; i < result.entries.size(); ++i) entries[i] = EntryTuple(result.entries[i]);
    out["entries"] = entries;
    py::list files;
    for (const DataFileNames& f : result.data_files) files.append(py::make_tuple(f.temp, f.final_name));
    out["data_files"] = files;
  }
  if (chunks || !committed) {
    py::dict crcs;
    for (const auto& c : result.chunk_crcs) crcs[py::bytes(c.first)] = py::bytes(c.second);
    out["chunk_crcs"] = crcs;
  }
  return out;
}

py::dict WriteBundlePy(const std::string& prefix, py::list items, int num_shards, int threads, bool durable,
                       uint64_t task_bytes, bool sort_data, int shard_base, int total_shards, int64_t chunk_bytes) {
  std::vector<WriteItem> native;
  std::vector<BufferView> views;
  ParseItems(items, &native, &views);
  WriteOptions opts = MakeOptions(num_shards, threads, durable, task_bytes, sort_data, shard_base, total_shards,
                                  chunk_bytes, /*commit=*/true);
  WriteResult result;
  Status st;
  {
    py::gil_scoped_release release;
    st = WriteBundle(prefix, std::move(native), opts, &result);
  }
  Check(st);
  return ResultDict(result, /*committed=*/true, chunk_bytes > 0);
}

// A save in phases (save_job.h). Holds the host buffers it reads (views_)
// until finish() returns, success or failure: from then on no thread of the
// job reads them, so the caller's arrays are released at once even while this
// object lives on (e.g. referenced from a failed save's traceback). The
// caller keeps device arrays alive until finish() returns. Every blocking
// method releases the GIL. Destruction waits for the job's threads (after
// aborting an unfinished job); a job that does not commit and was not
// released is released as failed (its temporary files removed).
class PySaveJob {
 public:
  PySaveJob(const std::string& prefix, py::list items, int num_shards, int threads, bool durable, uint64_t task_bytes,
            bool sort_data, bool snapshot_host, int max_buffers, bool trace, int fill_threads, int shard_base,
            int total_shards, bool commit, int64_t chunk_bytes)
      : commit_(commit), chunks_(chunk_bytes > 0) {
    std::vector<WriteItem> native;
    ParseItems(items, &native, &views_);
    StagingOptions staging;
    staging.snapshot_host = snapshot_host;
    staging.max_buffers = max_buffers;
    staging.trace = trace;
    staging.fill_threads = fill_threads;
    WriteOptions opts =
        MakeOptions(num_shards, threads, durable, task_bytes, sort_data, shard_base, total_shards, chunk_bytes, commit);
    Status st;
    {
      py::gil_scoped_release release;
      st = SaveJob::Create(prefix, std::move(native), opts, staging, &job_);
    }
    Check(st);
  }
  ~PySaveJob() {
    {
      py::gil_scoped_release release;  // waiting for threads must not hold the GIL
      job_.reset();
    }
    views_.clear();  // with the GIL, after every native reader is gone
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
    // Checked and set with the GIL held, so that only the call that runs
    // the job's Finish() drops the views, after it returned.
    if (finish_called_) Check(FailedPrecondition("the save was already finished"));
    finish_called_ = true;
    WriteResult result;
    Status st;
    {
      py::gil_scoped_release release;
      st = job_->Finish(&result);
    }
    // Finish() has returned: nothing reads the caller's buffers any more
    // (writers joined; the snapshot over, or claimed so that it never starts).
    views_.clear();
    Check(st);
    return ResultDict(result, commit_, chunks_);
  }
  void Release(bool committed) {
    Status st;
    {
      py::gil_scoped_release release;  // unlinks and closes
      st = job_->Release(committed);
    }
    Check(st);
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
  // Caller buffers still held (tests: 0 once finish() has returned).
  size_t HeldBuffers() const { return views_.size(); }

 private:
  std::vector<BufferView> views_;  // guarded by the GIL; cleared when Finish() returns
  std::unique_ptr<SaveJob> job_;
  bool finish_called_ = false;     // guarded by the GIL
  bool commit_;
  bool chunks_;
};

// -- commit_bundle: argument conversion (with the GIL) ----------------------

// Raises InvalidArgumentError "commit_bundle: <what>". REQUIRES: the GIL.
[[noreturn]] void BadCommitArgument(const std::string& what) { ThrowStatus(InvalidArgument("commit_bundle: " + what)); }

// An int field of entry i within [lo, hi]. REQUIRES: the GIL.
int64_t EntryInt(PyObject* o, size_t i, const char* field, int64_t lo, int64_t hi) {
  const std::string where = "entry " + std::to_string(i) + ": " + field;
  if (!PyLong_Check(o)) BadCommitArgument(where + " must be an int, not " + Py_TYPE(o)->tp_name);
  int overflow = 0;
  const long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (v == -1 && PyErr_Occurred()) PyErr_Clear();
  if (overflow != 0 || v < lo || v > hi) {
    BadCommitArgument(where + " is out of range (" + std::to_string(lo) + " to " + std::to_string(hi) + ")");
  }
  return v;
}

// A list or tuple as a fast sequence, or nullptr. REQUIRES: the GIL.
py::object AsSequence(PyObject* o) {
  if (!PyList_Check(o) && !PyTuple_Check(o)) return py::object();
  return py::reinterpret_borrow<py::object>(o);
}

// entries: [(key: bytes, dtype, shape, shard, offset, size, masked crc32c,
// slices | None)], the format of Reader.entries() and of finish() without
// commit (lists are taken for tuples, as a transport may turn them into
// lists). REQUIRES: the GIL.
std::vector<IndexEntry> ParseEntries(py::handle entries) {
  py::object seq = AsSequence(entries.ptr());
  if (!seq) BadCommitArgument(std::string("entries must be a list, not ") + Py_TYPE(entries.ptr())->tp_name);
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  std::vector<IndexEntry> out(static_cast<size_t>(n));
  constexpr int64_t kI32Max = 2147483647;
  for (Py_ssize_t k = 0; k < n; ++k) {
    const size_t i = static_cast<size_t>(k);
    py::object tuple = AsSequence(PySequence_Fast_GET_ITEM(seq.ptr(), k));
    if (!tuple || PySequence_Fast_GET_SIZE(tuple.ptr()) != 8) {
      BadCommitArgument("entry " + std::to_string(i) +
                        ": expected a tuple (key, dtype, shape, shard, offset, size, masked_crc32c, slices)");
    }
    PyObject** t = PySequence_Fast_ITEMS(tuple.ptr());
    IndexEntry& e = out[i];
    PyObject* key = t[0];
    if (!PyBytes_Check(key)) {
      BadCommitArgument("entry " + std::to_string(i) + ": the key must be bytes, not " + Py_TYPE(key)->tp_name);
    }
    e.key.assign(PyBytes_AS_STRING(key), static_cast<size_t>(PyBytes_GET_SIZE(key)));
    e.entry.dtype = static_cast<int32_t>(EntryInt(t[1], i, "dtype", 0, kI32Max));
    py::object shape = AsSequence(t[2]);
    if (!shape) BadCommitArgument("entry " + std::to_string(i) + ": shape must be a tuple of ints");
    const Py_ssize_t rank = PySequence_Fast_GET_SIZE(shape.ptr());
    if (rank > 64) BadCommitArgument("entry " + std::to_string(i) + ": shape has more than 64 dimensions");
    for (Py_ssize_t d = 0; d < rank; ++d) {
      e.entry.shape.push_back(EntryInt(PySequence_Fast_GET_ITEM(shape.ptr(), d), i, "a dimension", 0, INT64_MAX));
    }
    e.entry.shard_id = static_cast<int32_t>(EntryInt(t[3], i, "shard", -kI32Max - 1, kI32Max));
    e.entry.offset = EntryInt(t[4], i, "offset", INT64_MIN, INT64_MAX);
    e.entry.size = EntryInt(t[5], i, "size", INT64_MIN, INT64_MAX);
    e.entry.masked_crc32c = static_cast<uint32_t>(EntryInt(t[6], i, "masked_crc32c", 0, 0xffffffffll));
    PyObject* slices = t[7];
    if (slices == Py_None) continue;
    const std::string bad_slices =
        "entry " + std::to_string(i) + ": slices must be None or a list of lists of (start, length) pairs";
    py::object list = AsSequence(slices);
    if (!list) BadCommitArgument(bad_slices);
    for (Py_ssize_t s = 0; s < PySequence_Fast_GET_SIZE(list.ptr()); ++s) {
      py::object extents = AsSequence(PySequence_Fast_GET_ITEM(list.ptr(), s));
      if (!extents) BadCommitArgument(bad_slices);
      TensorSlice slice;
      for (Py_ssize_t x = 0; x < PySequence_Fast_GET_SIZE(extents.ptr()); ++x) {
        py::object pair = AsSequence(PySequence_Fast_GET_ITEM(extents.ptr(), x));
        if (!pair || PySequence_Fast_GET_SIZE(pair.ptr()) != 2) BadCommitArgument(bad_slices);
        const int64_t start = EntryInt(PySequence_Fast_GET_ITEM(pair.ptr(), 0), i, "a slice start", 0, INT64_MAX);
        const int64_t length = EntryInt(PySequence_Fast_GET_ITEM(pair.ptr(), 1), i, "a slice length", -1, INT64_MAX);
        slice.push_back(SliceExtent{start, length});
      }
      e.entry.slices.push_back(std::move(slice));
    }
    if (e.entry.slices.empty()) BadCommitArgument(bad_slices + " (an empty list is not)");
  }
  return out;
}

// data_files: [(temp_path, final_path)] of str (or lists). REQUIRES: the GIL.
std::vector<DataFileNames> ParseDataFiles(py::handle files) {
  py::object seq = AsSequence(files.ptr());
  if (!seq) BadCommitArgument(std::string("data_files must be a list, not ") + Py_TYPE(files.ptr())->tp_name);
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  std::vector<DataFileNames> out(static_cast<size_t>(n));
  for (Py_ssize_t k = 0; k < n; ++k) {
    py::object pair = AsSequence(PySequence_Fast_GET_ITEM(seq.ptr(), k));
    const std::string bad = "data file " + std::to_string(k) + ": expected a (temp_path, final_path) pair of str";
    if (!pair || PySequence_Fast_GET_SIZE(pair.ptr()) != 2) BadCommitArgument(bad);
    std::string* names[2] = {&out[static_cast<size_t>(k)].temp, &out[static_cast<size_t>(k)].final_name};
    for (Py_ssize_t j = 0; j < 2; ++j) {
      PyObject* s = PySequence_Fast_GET_ITEM(pair.ptr(), j);
      if (!PyUnicode_Check(s)) BadCommitArgument(bad);
      Py_ssize_t len = 0;
      const char* utf8 = PyUnicode_AsUTF8AndSize(s, &len);
      if (utf8 == nullptr) {
        PyErr_Clear();
        BadCommitArgument(bad + " (not encodable as UTF-8)");
      }
      names[j]->assign(utf8, static_cast<size_t>(len));
    }
  }
  return out;
}

std::vector<std::string> CommitBundlePy(const std::string& prefix, py::handle entries, py::handle data_files,
                                        int total_shards, bool durable, int min_consumer) {
  std::vector<IndexEntry> native_entries = ParseEntries(entries);
  std::vector<DataFileNames> native_files = ParseDataFiles(data_files);
  std::vector<std::string> files;
  Status st;
  {
    py::gil_scoped_release release;
    st = CommitMergedBundle(prefix, std::move(native_entries), std::move(native_files), total_shards, durable, &files,
                            min_consumer);
  }
  Check(st);
  return files;
}

py::dict ThreadStatsPy() {
  ThreadPoolStats s = GetThreadPoolStats();
  py::dict d;
  d["limit"] = s.limit;
  d["idle_seconds"] = ThreadPoolIdleSeconds();
  d["threads"] = s.threads;
  d["idle"] = s.idle;
  d["queued"] = s.queued;
  d["peak_threads"] = s.peak_threads;
  d["threads_started"] = s.threads_started;
  d["threads_exited"] = s.threads_exited;
  d["create_failures"] = s.create_failures;
  d["helpers_run"] = s.helpers_run;
  d["helpers_cancelled"] = s.helpers_cancelled;
  d["exceptions"] = s.exceptions;
  return d;
}

void ConfigureThreadsPy(py::object max_threads, py::object idle_seconds) {
  if (!max_threads.is_none()) {
    if (!PyLong_Check(max_threads.ptr())) {
      Check(InvalidArgument("configure_threads: max_threads must be an int or None, not " +
                            std::string(Py_TYPE(max_threads.ptr())->tp_name)));
    }
    const int64_t n = PyLong_AsLongLong(max_threads.ptr());
    if (PyErr_Occurred()) {
      PyErr_Clear();
      Check(InvalidArgument("configure_threads: max_threads is out of range"));
    }
    if (n < 0 || n > 65536) {
      Check(InvalidArgument("configure_threads: max_threads must be between 0 and 65536, not " + std::to_string(n)));
    }
    SetThreadPoolLimit(static_cast<int>(n));
  }
  if (!idle_seconds.is_none()) {
    if (!PyFloat_Check(idle_seconds.ptr()) && !PyLong_Check(idle_seconds.ptr())) {
      Check(InvalidArgument("configure_threads: idle_seconds must be a number or None, not " +
                            std::string(Py_TYPE(idle_seconds.ptr())->tp_name)));
    }
    const double s = PyFloat_AsDouble(idle_seconds.ptr());
    if (PyErr_Occurred()) {
      PyErr_Clear();
      Check(InvalidArgument("configure_threads: idle_seconds is out of range"));
    }
    if (!(s > 0) || s > 86400) {
      Check(InvalidArgument("configure_threads: idle_seconds must be > 0 and at most 86400, not " + std::to_string(s)));
    }
    SetThreadPoolIdleSeconds(s);
  }
}

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
  size_t i = 0;
  for (py::handle h : elems) {
    if (!PyBytes_Check(h.ptr())) {
      Check(InvalidArgument("encode_strings: element " + std::to_string(i) + " is a " + Py_TYPE(h.ptr())->tp_name +
                            ", not bytes"));
    }
    ++i;
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
        py::arg("threads") = 0, py::arg("durable") = true, py::arg("task_bytes") = 0, py::arg("sort_data") = true,
        py::arg("shard_base") = 0, py::arg("total_shards") = 0, py::arg("chunk_bytes") = 0,
        "Writes a checkpoint bundle (data shards, then index) and commits it. Releases the GIL while\n"
        "writing. shard_base/total_shards number the data files within a larger count (a save that\n"
        "commits must still write every shard); chunk_bytes > 0 adds \"chunk_crcs\" to the result.");
  py::class_<PySaveJob>(m, "SaveJob", "A save in phases: snapshot() then finish() (see save_job.h).")
      .def(py::init<const std::string&, py::list, int, int, bool, uint64_t, bool, bool, int, bool, int, int, int, bool,
                    int64_t>(),
           py::arg("prefix"), py::arg("items"), py::arg("num_shards") = 0, py::arg("threads") = 0,
           py::arg("durable") = true, py::arg("task_bytes") = 0, py::arg("sort_data") = true,
           py::arg("snapshot_host") = false, py::arg("max_buffers") = 0, py::arg("trace") = false,
           py::arg("fill_threads") = 0, py::arg("shard_base") = 0, py::arg("total_shards") = 0,
           py::arg("commit") = true, py::arg("chunk_bytes") = 0)
      .def("snapshot", &PySaveJob::Snapshot,
           "Copies every staged byte into staging buffers; afterwards the source arrays may change.")
      .def("start_writing", &PySaveJob::StartWriting,
           "Asks the I/O pool for writer helpers now, before finish() (idempotent).")
      .def("finish", &PySaveJob::Finish,
           "Writes (on this thread and pool helpers), commits, and returns what was written. On\n"
           "failure nothing is committed and no temporary file remains. Either way the caller's\n"
           "host buffers are released when it returns.")
      .def("release", &PySaveJob::Release, py::arg("committed"),
           "After finish() of a save made with commit=False: committed=True closes its data files\n"
           "(renamed by commit_bundle, or left unlocked under their temporary names for stale-file\n"
           "cleanup); committed=False removes them. Until then the temporary files stay locked, so\n"
           "no other save's cleanup removes them. Runs once; a job dropped without it releases as\n"
           "failed.")
      .def("abort", &PySaveJob::Abort, py::arg("reason"), "Fails the save; nothing is committed.")
      .def("progress", &PySaveJob::Progress)
      .def("trace", &PySaveJob::Trace, "[(kind, task, begin_ns, end_ns)]: 'f' filled, 'w' written.")
      .def("held_buffers", &PySaveJob::HeldBuffers,
           "Caller buffers the job still holds (0 once finish() has returned).");
  m.def("commit_bundle", &CommitBundlePy, py::arg("prefix"), py::arg("entries"), py::arg("data_files"),
        py::arg("total_shards"), py::arg("durable") = true, py::arg("min_consumer") = 0,
        "Writes PREFIX.index for the merged entries of every rank (any order) and commits every\n"
        "rank's data files (data_files: [(temp_path, final_path)]) as a single save commits its\n"
        "own; returns the final data files in shard order, then the index. The other ranks' files\n"
        "are renamed without holding their locks: they must not be released before this returns.\n"
        "min_consumer: the header's version, 0 (TensorFlow's) or COMPRESSED_MIN_CONSUMER (an index\n"
        "with compressed entries, which TensorFlow refuses). Releases the GIL while working.");
  m.attr("COMPRESSED_MIN_CONSUMER") = kCompressedMinConsumer;
  m.def("configure_threads", &ConfigureThreadsPy, py::arg("max_threads") = py::none(),
        py::arg("idle_seconds") = py::none(),
        "Sets the cap on the process-wide I/O thread pool (0: no helper threads) and how long\n"
        "an idle pool thread lives. None leaves a setting as it is.");
  m.def("thread_stats", &ThreadStatsPy, "Counters of the process-wide I/O thread pool.");
  m.def(
      "configure_staging",
      [](uint64_t buffer_bytes, uint64_t capacity_bytes, uint64_t retain_bytes) {
        StagingPool::Instance().Configure(buffer_bytes, capacity_bytes, retain_bytes);
      },
      py::arg("buffer_bytes"), py::arg("capacity_bytes"), py::arg("retain_bytes"),
      "Sets the staging buffer size, the host-memory budget of all staging, and how much\n"
      "free staging memory is kept for reuse.");
  m.def("staging_stats", &StagingStatsPy, "Counters of the staging buffer pool.");
  m.def("trim_staging", []() { StagingPool::Instance().Trim(); }, "Returns every free staging buffer to the system.");
  m.def("encode_strings", &EncodeStringsPy, py::arg("elements"),
        "Serializes bytes objects as a DT_STRING tensor; returns (bytes, crc).");
}

}  // namespace bindings
}  // namespace fastckpt
