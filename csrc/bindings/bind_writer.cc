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

// items: list of (key: bytes, dtype: int, shape: tuple[int], data: buffer | None,
//                 crc: int | None, slices: list[list[(start, length)]] | None)
py::dict WriteBundlePy(const std::string& prefix, py::list items, int num_shards, int threads,
                       bool durable, uint64_t task_bytes, bool sort_data) {
  const size_t n = items.size();
  std::vector<WriteItem> native(n);
  std::vector<BufferView> views;
  views.reserve(n);
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
    if (data != Py_None) {
      views.emplace_back();
      if (!views.back().Acquire(data, /*writable=*/false)) throw py::error_already_set();
      w.data = views.back().data();
      w.nbytes = views.back().size();
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
  WriteOptions opts;
  opts.num_shards = num_shards;
  opts.threads = threads;
  opts.durable = durable;
  if (task_bytes > 0) opts.task_bytes = task_bytes;
  opts.sort_data = sort_data;
  WriteResult result;
  Status st;
  {
    py::gil_scoped_release release;
    st = WriteBundle(prefix, native, opts, &result);
  }
  Check(st);
  py::dict out;
  out["num_shards"] = result.num_shards;
  out["data_bytes"] = result.data_bytes;
  out["files"] = result.files;
  return out;
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
  m.def("encode_strings", &EncodeStringsPy, py::arg("elements"),
        "Serializes bytes objects as a DT_STRING tensor; returns (bytes, crc).");
}

}  // namespace bindings
}  // namespace fastckpt
