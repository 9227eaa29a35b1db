// Reader: the reading side of the native core.
//
// The native BundleReader is held by shared_ptr so that close() while
// another thread is inside read() (with the GIL released) cannot free it
// under that thread. Only set_chunk_crcs() changes it (under its own lock,
// BundleReader::SetChunkCrcs); every other method uses it as const.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "bindings/buffer.h"
#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/format/dtypes.h"
#include "fastckpt/format/slice_key.h"
#include "fastckpt/format/slice_set.h"
#include "fastckpt/format/string_tensor.h"
#include "fastckpt/pipeline/box_copy.h"
#include "fastckpt/pipeline/bundle_reader.h"
#include "fastckpt/pipeline/load_plan.h"
#include "fastckpt/pipeline/task_plan.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

namespace {

// A stored key as Python text: UTF-8, undecodable bytes kept as surrogates
// (as os.fsdecode does), so every key round-trips. Requires the GIL.
py::str DecodeKey(const std::string& key) {
  PyObject* s = PyUnicode_DecodeUTF8(key.data(), static_cast<Py_ssize_t>(key.size()), "surrogateescape");
  if (s == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

// An entry's shape as a tuple of ints. Requires the GIL.
py::tuple ShapeTuple(const BundleEntry& e) {
  py::tuple shape(e.shape.size());
  for (size_t d = 0; d < e.shape.size(); ++d) shape[d] = py::int_(e.shape[d]);
  return shape;
}

// A partitioned entry's stored slices as [[(start, length), ...], ...], or
// None. Requires the GIL.
py::object SlicesOrNone(const BundleEntry& e) {
  if (e.slices.empty()) return py::none();
  py::list sl;
  for (const TensorSlice& s : e.slices) {
    py::list exts;
    for (const SliceExtent& x : s) exts.append(py::make_tuple(x.start, x.length));
    sl.append(exts);
  }
  return std::move(sl);
}

// Raises InvalidArgumentError unless `i` names an entry of `r`.
void CheckEntry(const BundleReader& r, size_t i) {
  if (i >= r.entries().size()) {
    Check(InvalidArgument("no entry " + std::to_string(i) + " in checkpoint '" + r.prefix() + "' (it has " +
                          std::to_string(r.entries().size()) + ")"));
  }
}

// Extents [(start, length)] (length -1: the whole dimension) as a slice;
// InvalidArgumentError for anything else. Requires the GIL.
TensorSlice ToSlice(const py::handle& extents) {
  TensorSlice out;
  for (py::handle h : extents) {
    py::tuple pair;
    if (!py::isinstance<py::tuple>(h) || (pair = h.cast<py::tuple>()).size() != 2 ||
        !py::isinstance<py::int_>(pair[0]) || !py::isinstance<py::int_>(pair[1])) {
      Check(InvalidArgument("slice extents must be (start, length) pairs of ints"));
    }
    int overflow = 0;
    const long long start = PyLong_AsLongLongAndOverflow(pair[0].ptr(), &overflow);
    const long long length = overflow ? 0 : PyLong_AsLongLongAndOverflow(pair[1].ptr(), &overflow);
    if (overflow || PyErr_Occurred()) {
      PyErr_Clear();
      Check(InvalidArgument("slice extent out of int64 range"));
    }
    out.push_back(SliceExtent{start, length < 0 ? -1 : length});
    if (length < -1) Check(InvalidArgument("slice extent length " + std::to_string(length) + " is negative"));
  }
  return out;
}

// A slice as [(start, length)], length -1 for a whole dimension. Requires the GIL.
py::list FromSlice(const TensorSlice& s) {
  py::list out;
  for (const SliceExtent& x : s) out.append(py::make_tuple(x.start, x.length < 0 ? -1 : x.length));
  return out;
}

// A box [(start, length)] (pairs as tuples or lists of ints; numpy
// integers pass, bools do not) as a slice, lengths as given
// (BundleReader::ReadBox refuses negative ones, naming the tensor).
// InvalidArgumentError naming `what` for anything else. Requires the GIL.
TensorSlice ToBox(const py::handle& box, const std::string& what) {
  auto bad = [&](const std::string& why) { Check(InvalidArgument(what + ": " + why)); };
  if (!py::isinstance<py::tuple>(box) && !py::isinstance<py::list>(box)) {
    bad("a box is a list of (start, length) pairs, not " + std::string(Py_TYPE(box.ptr())->tp_name));
  }
  auto is_int = [](PyObject* o) { return PyIndex_Check(o) && !PyBool_Check(o); };
  TensorSlice out;
  for (py::handle h : box) {
    const std::string item = "box item " + std::to_string(out.size());
    if ((!PyTuple_Check(h.ptr()) && !PyList_Check(h.ptr())) || PySequence_Size(h.ptr()) != 2) {
      bad(item + " is not a (start, length) pair of ints");
    }
    py::sequence pair = h.cast<py::sequence>();
    if (!is_int(pair[0].ptr()) || !is_int(pair[1].ptr())) bad(item + " is not a (start, length) pair of ints");
    long long v[2];
    for (int i = 0; i < 2; ++i) {
      py::object n = py::reinterpret_steal<py::object>(PyNumber_Index(pair[i].ptr()));
      int overflow = 0;
      v[i] = n ? PyLong_AsLongLongAndOverflow(n.ptr(), &overflow) : 0;
      if (!n || overflow || PyErr_Occurred()) {
        PyErr_Clear();
        bad(item + " is out of int64 range");
      }
    }
    out.push_back(SliceExtent{v[0], v[1]});
  }
  return out;
}

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
    reader_ = std::shared_ptr<BundleReader>(std::move(r));
  }

  std::shared_ptr<const BundleReader> Get() const { return GetMutable(); }
  std::shared_ptr<BundleReader> GetMutable() const {
    if (!reader_) Check(FailedPrecondition("the checkpoint reader is closed"));
    return reader_;
  }

  void Close() { reader_.reset(); }
  bool closed() const { return !reader_; }

  int num_shards() const { return Get()->header().num_shards; }
  bool compressed() const { return Get()->compressed(); }
  bool stored_as_is(size_t i) const {
    auto r = Get();
    CheckEntry(*r, i);
    return r->StoredAsIs(i);
  }

  // [(key, dtype, shape, shard_id, offset, size, masked_crc, slices | None)]
  py::list Entries() const {
    auto r = Get();
    py::list out(r->keys().size());
    for (size_t i = 0; i < r->keys().size(); ++i) {
      const BundleEntry& e = r->entries()[i];
      out[i] = py::make_tuple(py::bytes(r->keys()[i]), e.dtype, ShapeTuple(e), e.shard_id, e.offset, e.size,
                              e.masked_crc32c, SlicesOrNone(e));
    }
    return out;
  }

  // {name: entry index} for every listed tensor (slice entries excluded).
  py::dict Names() const {
    auto r = Get();
    py::dict out;
    for (size_t i = 0; i < r->keys().size(); ++i) {
      if (IsSliceKey(r->keys()[i])) continue;
      out[DecodeKey(r->keys()[i])] = py::int_(i);
    }
    return out;
  }

  // (dtype, shape, size, slices | None) of entry `i`.
  py::tuple Entry(size_t i) const {
    auto r = Get();
    CheckEntry(*r, i);
    const BundleEntry& e = r->entries()[i];
    return py::make_tuple(e.dtype, ShapeTuple(e), e.size, SlicesOrNone(e));
  }

  // What reading `region` of partitioned entry `entry` takes
  // (BundleReader::PlanSliceRead): [(slice entry, stored extents, overlap
  // extents)], the overlaps explicit and tiling the region. Raises
  // DataLossError when the slices cannot provide it.
  py::list PlanRegion(size_t entry, py::object region) const {
    auto r = Get();
    CheckEntry(*r, entry);
    const TensorSlice want = ToSlice(region);
    std::vector<SlicePart> parts;
    Status st;
    {
      py::gil_scoped_release release;
      st = r->PlanSliceRead(entry, want, &parts);
    }
    Check(st);
    const BundleEntry& e = r->entries()[entry];
    py::list out;
    for (const SlicePart& p : parts) {
      out.append(py::make_tuple(p.entry, FromSlice(e.slices[p.slice]), FromSlice(p.overlap)));
    }
    return out;
  }

  // Index of the entry stored under `key` (raw bytes), or -1.
  int64_t Find(const py::bytes& key) const { return Get()->Find(std::string(key)); }

  // Reads every listed fixed-size, unpartitioned tensor into new numpy
  // arrays with one parallel read. Returns ({name: array}, [names left to
  // the caller]): string and partitioned tensors, and compressed entries
  // (BundleReader::StoredAsIs), are left.
  //
  // `dtype_of(dtype number)` gives the numpy dtype (it raises for dtypes
  // numpy cannot hold); it is called once per distinct dtype. Every entry is
  // bounds-checked against its data file before anything is allocated, so a
  // lying index cannot cause a huge allocation.
  //
  // Tensors smaller than `pack_below` bytes are views into shared slabs of at
  // most `slab_bytes` (each slab one numpy allocation, the views' base):
  // 100,000 separate small allocations cost more than reading their bytes,
  // in allocator calls and in page faults on 4 KiB pages, while a slab is
  // large enough for the allocator to back it with huge pages. A small
  // tensor kept alive keeps its slab alive. pack_below = 0 disables packing.
  py::tuple ReadAll(py::object dtype_of, int threads, uint64_t task_bytes, uint64_t pack_below,
                    uint64_t slab_bytes) const {
    auto r = Get();
    const auto& keys = r->keys();
    const auto& entries = r->entries();
    const LoadPlan plan = PlanLoad(*r, pack_below, slab_bytes);
    py::list left;
    for (size_t i : plan.left) left.append(DecodeKey(keys[i]));
    std::map<int, py::dtype> dtypes;
    for (size_t i : plan.read) {
      const BundleEntry& e = entries[i];
      auto it = dtypes.find(e.dtype);
      if (it == dtypes.end()) {
        py::dtype dt = py::dtype::from_args(dtype_of(e.dtype));
        if (dt.itemsize() != DtypeElementSize(e.dtype)) {
          Check(DataLoss(r->Describe(i) + " has dtype " + std::to_string(e.dtype) + ", which numpy holds in " +
                         std::to_string(dt.itemsize()) + " bytes, not " + std::to_string(DtypeElementSize(e.dtype))));
        }
        it = dtypes.emplace(e.dtype, dt).first;
      }
      Check(r->CheckBounds(i));
    }

    // Every array is allocated kArrayAlign bytes longer than it needs, so
    // that it can start at that alignment whatever the allocator gives.
    auto allocate = [](uint64_t n) {
      return py::array(py::dtype::of<uint8_t>(), std::vector<py::ssize_t>{static_cast<py::ssize_t>(n + kArrayAlign)});
    };
    auto aligned = [](py::array& raw) {
      uint8_t* p = static_cast<uint8_t*>(raw.mutable_data());
      return p + AlignmentShift(reinterpret_cast<uintptr_t>(p));
    };
    std::vector<py::array> slabs;
    std::vector<uint8_t*> slab_data;
    slabs.reserve(plan.slab_sizes.size());
    for (uint64_t n : plan.slab_sizes) {
      slabs.push_back(allocate(n));
      slab_data.push_back(aligned(slabs.back()));
    }

    py::dict out;
    std::vector<BundleReader::ReadRequest> reqs;
    reqs.reserve(plan.read.size());
    for (size_t k = 0; k < plan.read.size(); ++k) {
      const size_t i = plan.read[k];
      const BundleEntry& e = entries[i];
      std::vector<py::ssize_t> shape(e.shape.begin(), e.shape.end());
      const py::dtype& dt = dtypes.at(e.dtype);
      py::array arr;
      const SlabSlot& slot = plan.slots[k];
      if (slot.slab != SlabSlot::kOwnAllocation) {
        arr = py::array(dt, shape, std::vector<py::ssize_t>{}, slab_data[slot.slab] + slot.offset, slabs[slot.slab]);
      } else {
        // Its own allocation: a view into a byte buffer, which owns the memory.
        py::array raw = allocate(static_cast<uint64_t>(e.size));
        arr = py::array(dt, shape, std::vector<py::ssize_t>{}, aligned(raw), raw);
      }
      if (e.size > 0) {
        reqs.push_back({i, static_cast<uint8_t*>(arr.mutable_data()), static_cast<uint64_t>(arr.nbytes())});
      }
      out[DecodeKey(keys[i])] = arr;
    }
    Status st;
    {
      py::gil_scoped_release release;
      st = r->Read(reqs, threads, task_bytes == 0 ? kDefaultTaskBytes : task_bytes);
    }
    Check(st);
    return py::make_tuple(out, left);
  }

  // requests: [(entry index, writable C-contiguous buffer)]
  void Read(py::list requests, int threads, uint64_t task_bytes) const {
    auto r = Get();
    std::vector<BundleReader::ReadRequest> reqs(requests.size());
    std::vector<BufferView> views(requests.size());
    for (size_t i = 0; i < reqs.size(); ++i) {
      PyObject* tup = PyList_GET_ITEM(requests.ptr(), i);
      if (!PyTuple_Check(tup) || PyTuple_GET_SIZE(tup) != 2) {
        Check(InvalidArgument("read: each request must be an (entry, buffer) tuple"));
      }
      reqs[i].entry = PyLong_AsSize_t(PyTuple_GET_ITEM(tup, 0));
      if (PyErr_Occurred()) throw py::error_already_set();
      if (!views[i].Acquire(PyTuple_GET_ITEM(tup, 1), /*writable=*/true)) throw py::error_already_set();
      reqs[i].dest = views[i].data();
      reqs[i].dest_size = views[i].size();
    }
    Status st;
    {
      py::gil_scoped_release release;
      st = r->Read(reqs, threads, task_bytes == 0 ? kDefaultTaskBytes : task_bytes);
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
      if (reqs[i].device < 0) {
        Check(InvalidArgument("read_to_device: device ordinal must be >= 0, not " + std::to_string(reqs[i].device)));
      }
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
    CheckEntry(*r, entry);
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
  //  "bad": [(name bytes, file, reason, listed)]}
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
      py::object file = py::reinterpret_steal<py::object>(
          PyUnicode_DecodeUTF8(p.file.data(), static_cast<Py_ssize_t>(p.file.size()), "surrogateescape"));
      if (!file) throw py::error_already_set();
      py::object reason = py::reinterpret_steal<py::object>(
          PyUnicode_DecodeUTF8(p.reason.data(), static_cast<Py_ssize_t>(p.reason.size()), "backslashreplace"));
      if (!reason) throw py::error_already_set();
      bad.append(py::make_tuple(py::bytes(p.key), file, reason, p.listed));
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
      CheckEntry(*r, entry);
      Check(r->CheckBounds(entry));
    }
  }

  std::string Describe(size_t entry) const {
    auto r = Get();
    CheckEntry(*r, entry);
    return r->Describe(entry);
  }

  // Registers the chunk CRCs of data entry `entry` (BundleReader::
  // SetChunkCrcs): `crcs` is a bytes-like object of little-endian uint32s.
  void SetChunkCrcs(size_t entry, int64_t chunk_bytes, py::object crcs) {
    auto r = GetMutable();
    CheckEntry(*r, entry);
    BufferView view;
    if (!view.Acquire(crcs.ptr(), /*writable=*/false)) {
      PyErr_Clear();
      Check(InvalidArgument(r->DescribeTensor(entry) + ": chunk CRCs must be a bytes-like object, not " +
                            std::string(Py_TYPE(crcs.ptr())->tp_name)));
    }
    Status st;
    {
      py::gil_scoped_release release;
      st = r->SetChunkCrcs(entry, chunk_bytes, view.data(), static_cast<size_t>(view.size()));
    }
    Check(st);
  }

  // Reads box `box` of tensor `entry` into `dest` (BundleReader::ReadBox)
  // with the GIL released; returns the bytes read from the data files.
  uint64_t ReadBox(size_t entry, py::object box, py::object dest, int threads, uint64_t task_bytes) const {
    auto r = Get();
    CheckEntry(*r, entry);
    const std::string what = r->DescribeTensor(entry);
    const TensorSlice want = ToBox(box, what);
    BufferView view;
    if (!view.Acquire(dest.ptr(), /*writable=*/true)) {
      PyErr_Clear();
      Check(InvalidArgument(what + ": the destination must be a writable C-contiguous buffer; a " +
                            std::string(Py_TYPE(dest.ptr())->tp_name) + " is not"));
    }
    const int elem = DtypeElementSize(r->entries()[entry].dtype);
    if (elem > 0 && view.itemsize() != static_cast<uint64_t>(elem)) {
      Check(InvalidArgument(what + ": the destination's items are " + std::to_string(view.itemsize()) +
                            " bytes each, the tensor's elements " + std::to_string(elem)));
    }
    uint64_t bytes = 0;
    Status st;
    {
      py::gil_scoped_release release;
      st = r->ReadBox(entry, want, view.data(), view.size(), threads, task_bytes, &bytes);
    }
    Check(st);
    return bytes;
  }

 private:
  std::shared_ptr<BundleReader> reader_;
};

// CheckSliceSet on a shape and a list of slices (each a list of (start,
// length), length -1 for a whole dimension): (elements held, covers), or
// DataLossError / UnimplementedError. For tests and measurements of the
// validation every reader runs.
py::tuple CheckSlices(py::object shape_obj, py::object slices_obj) {
  std::vector<int64_t> shape;
  for (py::handle h : shape_obj) {
    const int64_t d = h.cast<int64_t>();
    if (d < 0) Check(InvalidArgument("check_slice_set: negative dimension " + std::to_string(d)));
    shape.push_back(d);
  }
  std::vector<TensorSlice> slices;
  for (py::handle s : slices_obj) slices.push_back(ToSlice(s));
  uint64_t held = 0;
  bool covers = false;
  Status st;
  {
    py::gil_scoped_release release;
    st = CheckSliceSet(shape, slices, &held, &covers);
  }
  Check(st);
  return py::make_tuple(held, covers);
}

// Non-negative ints as uint64s; InvalidArgumentError naming `what`
// otherwise. Requires the GIL.
std::vector<uint64_t> ToDims(const py::handle& seq, const char* what) {
  std::vector<uint64_t> out;
  for (py::handle h : seq) {
    const int64_t v = h.cast<int64_t>();
    if (v < 0) Check(InvalidArgument(std::string("copy_box: ") + what + " has a negative value"));
    out.push_back(static_cast<uint64_t>(v));
  }
  return out;
}

// BoxCopier::Copy on whole arrays, for tests of the strided copy: copies
// the box's elements whose source element index lies in [begin, end) from
// `src` (the whole source array) into `dst`. The arguments are checked
// against BoxLayout's requirements (InvalidArgumentError).
void CopyBox(py::object src, py::object src_shape, py::object src_start, py::object dst, py::object dst_shape,
             py::object dst_start, py::object extent, uint64_t elem, uint64_t begin, uint64_t end) {
  BoxLayout l;
  l.src_shape = ToDims(src_shape, "src_shape");
  l.src_start = ToDims(src_start, "src_start");
  l.dst_shape = ToDims(dst_shape, "dst_shape");
  l.dst_start = ToDims(dst_start, "dst_start");
  l.extent = ToDims(extent, "extent");
  l.elem = elem;
  const size_t k = l.extent.size();
  if (l.src_shape.size() != k || l.src_start.size() != k || l.dst_shape.size() != k || l.dst_start.size() != k ||
      elem == 0) {
    Check(InvalidArgument("copy_box: ranks differ, or elem is 0"));
  }
  unsigned __int128 src_n = elem, dst_n = elem;
  for (size_t d = 0; d < k; ++d) {
    if (l.extent[d] == 0 || l.src_start[d] + l.extent[d] > l.src_shape[d] ||
        l.dst_start[d] + l.extent[d] > l.dst_shape[d] || l.src_shape[d] > (1ull << 40) ||
        l.dst_shape[d] > (1ull << 40)) {
      Check(InvalidArgument("copy_box: the box must be non-empty and lie in both arrays"));
    }
    src_n *= l.src_shape[d];
    dst_n *= l.dst_shape[d];
  }
  BufferView s, t;
  if (!s.Acquire(src.ptr(), false) || !t.Acquire(dst.ptr(), true)) throw py::error_already_set();
  if (src_n != s.size() || dst_n != t.size() || begin > end || end * elem > s.size()) {
    Check(InvalidArgument("copy_box: buffer sizes do not match the shapes, or [begin, end) is outside the source"));
  }
  BoxCopier copier(l);
  py::gil_scoped_release release;
  copier.Copy(s.data() + begin * elem, begin, end, t.data());
}

}  // namespace

void RegisterReader(py::module_& m) {
  m.def("copy_box", &CopyBox, py::arg("src"), py::arg("src_shape"), py::arg("src_start"), py::arg("dst"),
        py::arg("dst_shape"), py::arg("dst_start"), py::arg("extent"), py::arg("elem"), py::arg("begin"),
        py::arg("end"),
        "The strided box copy under read_box, for tests: copies the elements of the box whose source "
        "element index is in [begin, end) from src into dst (both whole row-major arrays).");
  m.def("check_slice_set", &CheckSlices, py::arg("shape"), py::arg("slices"),
        "Validates a partitioned tensor's stored slices as every reader does: (elements held, "
        "covers the tensor), or DataLossError (out of bounds, overlapping) / UnimplementedError "
        "(too irregular to check within the work bound).");
  py::class_<PyReader>(m, "Reader", "An open checkpoint bundle (index parsed, data files open).")
      .def(py::init<const std::string&>(), py::arg("prefix"))
      .def_property_readonly("num_shards", &PyReader::num_shards)
      .def_property_readonly("compressed", &PyReader::compressed,
                             "Whether the header marks the checkpoint as holding compressed entries.")
      .def("stored_as_is", &PyReader::stored_as_is, py::arg("entry"),
           "False for a compressed entry (its stored size differs from what its dtype and shape hold).")
      .def_property_readonly("closed", &PyReader::closed)
      .def("entries", &PyReader::Entries)
      .def("names", &PyReader::Names, "{name: entry index} of every listed tensor (slice entries excluded).")
      .def("entry", &PyReader::Entry, py::arg("index"), "(dtype, shape, size, slices | None) of one entry.")
      .def("find", &PyReader::Find, py::arg("key"), "The entry index of a raw key, or -1.")
      .def("read_all", &PyReader::ReadAll, py::arg("dtype_of"), py::arg("threads") = 0, py::arg("task_bytes") = 0,
           py::arg("pack_below") = 0, py::arg("slab_bytes") = 64ull << 20,
           "Reads every fixed-size unpartitioned tensor into new numpy arrays; returns "
           "({name: array}, [names of string and partitioned tensors, not read]).")
      .def("read", &PyReader::Read, py::arg("requests"), py::arg("threads") = 0, py::arg("task_bytes") = 0)
      .def("read_to_device", &PyReader::ReadToDevice, py::arg("requests"), py::arg("threads") = 0,
           py::arg("max_buffers") = 0,
           "Reads fixed-size entries into device memory through pinned staging buffers; "
           "requests are (entry, device_ptr, device).")
      .def("read_strings", &PyReader::ReadStrings, py::arg("entry"), py::arg("num_elements"))
      .def("plan_region", &PyReader::PlanRegion, py::arg("entry"), py::arg("region"),
           "The stored slices a region of a partitioned tensor needs: [(slice entry, stored extents, "
           "overlap extents)]; raises DataLossError when they cannot provide it.")
      .def("verify", &PyReader::Verify, py::arg("threads") = 0, py::arg("chunk_bytes") = 0,
           "Checks every tensor's bounds and CRC32C without keeping the data; returns a dict "
           "(tensors, entries, bytes, files, seconds, largest_whole_read, bad=[(name, file, reason, listed)]).")
      .def("set_chunk_crcs", &PyReader::SetChunkCrcs, py::arg("entry"), py::arg("chunk_bytes"), py::arg("crcs"),
           "Registers the CRC32Cs of consecutive chunk_bytes-sized chunks of a data entry's bytes (packed "
           "little-endian uint32s); they must combine to the entry's stored CRC (DataLossError otherwise).")
      .def("read_box", &PyReader::ReadBox, py::arg("entry"), py::arg("box"), py::arg("dest"), py::arg("threads") = 0,
           py::arg("task_bytes") = 0,
           "Reads a box [(start, length)] of a fixed-size tensor into dest (a writable C-contiguous buffer of "
           "exactly its bytes, row-major), reading and verifying only the stored bytes overlapping it; "
           "returns the bytes read from the data files.")
      .def("describe", &PyReader::Describe, py::arg("entry"))
      .def(
          "bytes_processed", [](const PyReader& r) { return r.Get()->bytes_processed(); },
          "Bytes read and checked so far by every call on this reader (polled for progress).")
      .def("check_bounds", &PyReader::CheckBounds, py::arg("entries"))
      .def("close", &PyReader::Close);
}

}  // namespace bindings
}  // namespace fastckpt
