// fastckpt._native_testing.cuda_*: drives the CUDA copy engine directly, so
// that tests can check it (against a real driver, or against the fake driver
// of tests/fake_cuda/) without going through the save pipeline. Never used by
// the package.
//
// Every function creates the engine with NewCudaCopyEngine (not the installed
// engine of GetCopyEngine), so it always tests the CUDA path; a missing driver
// raises CudaUnavailableError. The GIL is released around all engine calls.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <string>

#include "bindings/errors.h"
#include "fastckpt/device/copy_engine.h"
#include "testing/registry.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

namespace {

// Page-locked memory from an engine, freed on scope exit. Declare it before
// the streams that copy into it: a stream's destructor waits for its copies,
// so the buffer is freed only after they are done.
class PinnedBuffer {
 public:
  PinnedBuffer(CopyEngine* engine, int device) : engine_(engine), device_(device) {}
  ~PinnedBuffer() {
    if (p_ != nullptr) engine_->FreeHost(device_, p_, n_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;

  Status Alloc(size_t n) {
    n_ = n;
    return engine_->AllocHost(device_, n, &p_);
  }
  char* data() const { return static_cast<char*>(p_); }

 private:
  CopyEngine* engine_;
  int device_;
  void* p_ = nullptr;
  size_t n_ = 0;
};

struct EngineRun {
  std::shared_ptr<CopyEngine> engine;
  // Members are destroyed in reverse order: `stream` first (its destructor
  // waits for its copies), then the buffer those copies used.
  std::unique_ptr<PinnedBuffer> buffer;
  std::unique_ptr<CopyStream> stream;

  Status Open(int device, uint64_t caller_stream, size_t staging_bytes) {
    FASTCKPT_RETURN_IF_ERROR(NewCudaCopyEngine(&engine));
    if (engine->name() != "cuda") return Internal("NewCudaCopyEngine returned " + engine->name());
    FASTCKPT_RETURN_IF_ERROR(engine->NewStream(device, &stream));
    FASTCKPT_RETURN_IF_ERROR(stream->OrderAfter(caller_stream));
    buffer.reset(new PinnedBuffer(engine.get(), device));
    if (staging_bytes > 0) FASTCKPT_RETURN_IF_ERROR(buffer->Alloc(staging_bytes));
    return Status::Ok();
  }
};

// Device -> pinned staging in `chunk`-byte copies, each followed by a Mark;
// at most `in_flight` marks are outstanding (the oldest is waited for first),
// as the save pipeline does. Then a copy into `out`.
Status Roundtrip(DevicePtr src, size_t n, size_t chunk, int device, uint64_t caller_stream, size_t in_flight,
                 bool abandon, std::string* out) {
  EngineRun s;
  FASTCKPT_RETURN_IF_ERROR(s.Open(device, caller_stream, n));
  std::deque<uint64_t> marks;
  for (size_t off = 0; off < n; off += chunk) {
    size_t len = std::min(chunk, n - off);
    FASTCKPT_RETURN_IF_ERROR(s.stream->CopyToHost(s.buffer->data() + off, src + off, len));
    uint64_t m = 0;
    FASTCKPT_RETURN_IF_ERROR(s.stream->Mark(&m));
    marks.push_back(m);
    while (!abandon && marks.size() > in_flight) {
      FASTCKPT_RETURN_IF_ERROR(s.stream->WaitMark(marks.front()));
      marks.pop_front();
    }
  }
  // Abandoning (as an error path would) leaves the copies to the stream's
  // destructor, which must wait for them before the buffer is freed.
  if (abandon) return Status::Ok();
  if (!marks.empty()) FASTCKPT_RETURN_IF_ERROR(s.stream->WaitMark(marks.back()));
  out->assign(s.buffer->data() == nullptr ? "" : s.buffer->data(), n);
  return Status::Ok();
}

Status Upload(DevicePtr dst, const char* data, size_t n, int device, uint64_t caller_stream) {
  EngineRun s;
  FASTCKPT_RETURN_IF_ERROR(s.Open(device, caller_stream, n));
  if (n == 0) return Status::Ok();
  std::memcpy(s.buffer->data(), data, n);
  FASTCKPT_RETURN_IF_ERROR(s.stream->CopyToDevice(dst, s.buffer->data(), n));
  uint64_t m = 0;
  FASTCKPT_RETURN_IF_ERROR(s.stream->Mark(&m));
  return s.stream->WaitMark(m);
}

// `count` marks on an idle stream, waiting for every `wait_every`-th (0: only
// for the last), to check that the engine's events stay bounded.
Status Marks(uint64_t count, uint64_t wait_every, int device, uint64_t* last) {
  EngineRun s;
  FASTCKPT_RETURN_IF_ERROR(s.Open(device, kNoStream, 0));
  uint64_t m = 0;
  for (uint64_t i = 1; i <= count; ++i) {
    FASTCKPT_RETURN_IF_ERROR(s.stream->Mark(&m));
    if (wait_every != 0 && i % wait_every == 0) FASTCKPT_RETURN_IF_ERROR(s.stream->WaitMark(m));
  }
  if (m != 0) FASTCKPT_RETURN_IF_ERROR(s.stream->WaitMark(m));
  // Markers already reached wait for nothing; the first one must be reached.
  if (m != 0) FASTCKPT_RETURN_IF_ERROR(s.stream->WaitMark(1));
  *last = m;
  return Status::Ok();
}

}  // namespace

void RegisterCudaTesting(py::module_& t) {
  t.def(
      "cuda_engine_roundtrip",
      [](uint64_t device_ptr, int64_t nbytes, int64_t chunk, int device, uint64_t stream, int64_t in_flight,
         bool abandon) {
        if (nbytes < 0) ThrowStatus(InvalidArgument("nbytes must be >= 0"));
        if (chunk <= 0) ThrowStatus(InvalidArgument("chunk must be > 0"));
        if (in_flight <= 0) ThrowStatus(InvalidArgument("in_flight must be > 0"));
        std::string out;
        Status s;
        {
          py::gil_scoped_release release;
          s = Roundtrip(device_ptr, static_cast<size_t>(nbytes), static_cast<size_t>(chunk), device, stream,
                        static_cast<size_t>(in_flight), abandon, &out);
        }
        Check(s);
        return py::bytes(out);
      },
      py::arg("device_ptr"), py::arg("nbytes"), py::arg("chunk"), py::arg("device") = 0, py::arg("stream") = 0,
      py::arg("in_flight") = 4, py::arg("abandon") = false,
      "Copies nbytes at device_ptr to pinned memory with the CUDA copy engine, in\n"
      "`chunk`-byte copies with a Mark after each (at most `in_flight` waited for\n"
      "lazily), after OrderAfter(stream), and returns them. With abandon, waits for\n"
      "nothing, drops stream and buffer at once and returns b''.");
  t.def(
      "cuda_engine_upload",
      [](uint64_t device_ptr, const py::bytes& data, int device, uint64_t stream) {
        char* p = nullptr;
        Py_ssize_t n = 0;
        if (PyBytes_AsStringAndSize(data.ptr(), &p, &n) != 0) throw py::error_already_set();
        Status s;
        {
          // `data` stays referenced by the caller, and bytes are immutable.
          py::gil_scoped_release release;
          s = Upload(device_ptr, p, static_cast<size_t>(n), device, stream);
        }
        Check(s);
      },
      py::arg("device_ptr"), py::arg("data"), py::arg("device") = 0, py::arg("stream") = 0,
      "Copies `data` to device_ptr through pinned memory with the CUDA copy engine,\n"
      "after OrderAfter(stream), and waits for the copy.");
  t.def(
      "cuda_engine_marks",
      [](int64_t count, int64_t wait_every, int device) {
        if (count < 0 || wait_every < 0) ThrowStatus(InvalidArgument("count and wait_every must be >= 0"));
        uint64_t last = 0;
        Status s;
        {
          py::gil_scoped_release release;
          s = Marks(static_cast<uint64_t>(count), static_cast<uint64_t>(wait_every), device, &last);
        }
        Check(s);
        return last;
      },
      py::arg("count"), py::arg("wait_every"), py::arg("device") = 0,
      "Takes `count` markers on a new CUDA copy stream, waiting for every\n"
      "`wait_every`-th (0: only the last); returns the last marker.");
}

}  // namespace bindings
}  // namespace fastckpt
