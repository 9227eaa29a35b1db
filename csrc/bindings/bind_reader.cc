// Reader: the reading side of the native core.
//
// The native BundleReader is held by shared_ptr so that close() while
// another thread is inside read() (with the GIL released) cannot free it
// under that thread.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <vector>

#include "bindings/buffer.h"
#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/bundle_reader.h"
#include "fastckpt/string_tensor.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

namespace {

class PyReader {
 public:
  explicit PyReader(const std::string& prefix) {
    std::unique_ptr<BundleReader> r;
    Status st;
    {
      py::gil_scoped_release release;
      st = BundleReader::Open(prefix, &r);
    }
    Check(st);
    reader_ = std::shared_ptr<const BundleReader>(std::move(r));
  }

  std::shared_ptr<const BundleReader> Get() const {
    if (!reader_) Check(FailedPrecondition("the checkpoint reader is closed"));
    return reader_;
  }

  void Close() { reader_.reset(); }
  bool closed() const { return !reader_; }

  int num_shards() const { return Get()->header().num_shards; }

  // [(key, dtype, shape, shard_id, offset, size, masked_crc, slices | None)]
  py::list Entries() const {
    auto r = Get();
    py::list out(r->keys().size());
    for (size_t i = 0; i < r->keys().size(); ++i) {
      const BundleEntry& e = r->entries()[i];
      py::tuple shape(e.shape.size());
      for (size_t d = 0; d < e.shape.size(); ++d) shape[d] = py::int_(e.shape[d]);
      py::object slices = py::none();
      if (!e.slices.empty()) {
        py::list sl;
        for (const TensorSlice& s : e.slices) {
          py::list exts;
          for (const SliceExtent& x : s) exts.append(py::make_tuple(x.start, x.length));
          sl.append(exts);
        }
        slices = sl;
      }
      out[i] = py::make_tuple(py::bytes(r->keys()[i]), e.dtype, shape, e.shard_id, e.offset, e.size,
                              e.masked_crc32c, slices);
    }
    return out;
  }

  // requests: [(entry index, writable C-contiguous buffer)]
  void Read(py::list requests, int threads, uint64_t task_bytes) const {
    auto r = Get();
    std::vector<BundleReader::ReadRequest> reqs(requests.size());
    std::vector<BufferView> views(requests.size());
    for (size_t i = 0; i < reqs.size(); ++i) {
      PyObject* tup = PyList_GET_ITEM(requests.ptr(), i);
      if (!PyTuple_Check(tup) || PyTuple_GET_SIZE(tup) != 2) throw py::type_error("read: expected (entry, buffer)");
      reqs[i].entry = PyLong_AsSize_t(PyTuple_GET_ITEM(tup, 0));
      if (PyErr_Occurred()) throw py::error_already_set();
      if (!views[i].Acquire(PyTuple_GET_ITEM(tup, 1), /*writable=*/true)) throw py::error_already_set();
      reqs[i].dest = views[i].data();
      reqs[i].dest_size = views[i].size();
    }
    Status st;
    {
      py::gil_scoped_release release;
      st = r->Read(reqs, threads, task_bytes == 0 ? (16ull << 20) : task_bytes);
    }
    Check(st);
  }

  // requests: [(entry, device_ptr, device)]; the caller keeps the device
  // memory alive and sized entries()[entry].size.
  void ReadToDevice(py::list requests, int threads, int max_buffers) const {
    auto r = Get();
    std::vector<BundleReader::DeviceReadRequest> reqs(requests.size());
    for (size_t i = 0; i < reqs.size(); ++i) {
      auto t = requests[i].cast<std::tuple<size_t, uint64_t, int>>();
      reqs[i] = {std::get<0>(t), std::get<1>(t), std::get<2>(t)};
      if (reqs[i].device < 0) throw py::value_error("read_to_device: device ordinal must be >= 0");
    }
    Status st;
    {
      py::gil_scoped_release release;
      std::shared_ptr<CopyEngine> engine;
      st = GetCopyEngine(&engine);
      if (st.ok()) st = r->ReadToDevice(reqs, engine.get(), engine, threads, max_buffers);
    }
    Check(st);
  }

  // A DT_STRING entry as a list of bytes, both CRCs verified.
  py::list ReadStrings(size_t entry, uint64_t num_elements) const {
    auto r = Get();
    if (entry >= r->entries().size()) throw py::index_error("no such entry");
    std::string raw;
    std::vector<std::pair<size_t, size_t>> spans;
    Status st;
    {
      py::gil_scoped_release release;
      st = r->ReadRaw(entry, &raw);
      if (st.ok()) {
        st = DecodeStringTensor(raw.data(), raw.size(), num_elements, r->entries()[entry].masked_crc32c,
                                r->Describe(entry), &spans);
      }
    }
    Check(st);
    py::list out(spans.size());
    for (size_t i = 0; i < spans.size(); ++i) {
      out[i] = py::bytes(raw.data() + spans[i].first, spans[i].second);
    }
    return out;
  }

  // Checks every tensor (BundleReader::Verify) with the GIL released.
  // {"tensors", "entries", "bytes", "files", "seconds", "largest_whole_read",
  //  "bad": [(name bytes, file, reason)]}
  py::dict Verify(int threads, uint64_t chunk_bytes) const {
    auto r = Get();
    VerifyReport report;
    Status st;
    {
      py::gil_scoped_release release;
      st = r->Verify(threads, chunk_bytes, &report);
    }
    Check(st);
    py::list bad;
    for (const VerifyProblem& p : report.bad) {
      // Paths keep undecodable bytes as surrogates, as os.fsdecode would;
      // reasons are our own text and never fail to decode.
      py::object file = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
          p.file.data(), static_cast<Py_ssize_t>(p.file.size()), "surrogateescape"));
      if (!file) throw py::error_already_set();
      py::object reason = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(
          p.reason.data(), static_cast<Py_ssize_t>(p.reason.size()), "backslashreplace"));
      if (!reason) throw py::error_already_set();
      bad.append(py::make_tuple(py::bytes(p.key), file, reason));
    }
    py::dict out;
    out["tensors"] = report.tensors;
    out["entries"] = report.entries;
    out["bytes"] = report.bytes;
    out["files"] = report.files;
    out["seconds"] = report.seconds;
    out["largest_whole_read"] = report.largest_whole_read;
    out["bad"] = bad;
    return out;
  }

  // Raises DataLossError unless every listed entry lies inside its data file.
  void CheckBounds(py::list entries) const {
    auto r = Get();
    for (py::handle h : entries) {
      size_t entry = h.cast<size_t>();
      if (entry >= r->entries().size()) throw py::index_error("no such entry");
      Check(r->CheckBounds(entry));
    }
  }

  std::string Describe(size_t entry) const {
    auto r = Get();
    if (entry >= r->entries().size()) throw py::index_error("no such entry");
    return r->Describe(entry);
  }

 private:
  std::shared_ptr<const BundleReader> reader_;
};

}  // namespace

void RegisterReader(py::module_& m) {
  py::class_<PyReader>(m, "Reader", "An open checkpoint bundle (index parsed, data files open).")
      .def(py::init<const std::string&>(), py::arg("prefix"))
      .def_property_readonly("num_shards", &PyReader::num_shards)
      .def_property_readonly("closed", &PyReader::closed)
      .def("entries", &PyReader::Entries)
      .def("read", &PyReader::Read, py::arg("requests"), py::arg("threads") = 0, py::arg("task_bytes") = 0)
      .def("read_to_device", &PyReader::ReadToDevice, py::arg("requests"), py::arg("threads") = 0,
           py::arg("max_buffers") = 0,
           "Reads fixed-size entries into device memory through pinned staging buffers; "
           "requests are (entry, device_ptr, device).")
      .def("read_strings", &PyReader::ReadStrings, py::arg("entry"), py::arg("num_elements"))
      .def("verify", &PyReader::Verify, py::arg("threads") = 0, py::arg("chunk_bytes") = 0,
           "Checks every tensor's bounds and CRC32C without keeping the data; returns a dict "
           "(tensors, entries, bytes, files, seconds, largest_whole_read, bad=[(name, file, reason)]).")
      .def("describe", &PyReader::Describe, py::arg("entry"))
      .def("check_bounds", &PyReader::CheckBounds, py::arg("entries"))
      .def("close", &PyReader::Close);
}

}  // namespace bindings
}  // namespace fastckpt
