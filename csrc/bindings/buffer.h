// RAII ownership of a Py_buffer view (buffer protocol).
#pragma once

#include <Python.h>

#include <string>

namespace fastckpt {
namespace bindings {

// Holds a C-contiguous view of a Python object's memory. Constructing and
// destroying it requires the GIL; the memory it points to may be used
// without the GIL while the view is held, which keeps the exporter alive and
// its buffer fixed.
class BufferView {
 public:
  BufferView() { view_.obj = nullptr; }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  BufferView(BufferView&& o) noexcept : view_(o.view_) { o.view_.obj = nullptr; }
  ~BufferView() {
    if (view_.obj != nullptr) PyBuffer_Release(&view_);
  }

  // Returns false with a Python error set when `obj` exports no suitable buffer.
  bool Acquire(PyObject* obj, bool writable) {
    int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
    return PyObject_GetBuffer(obj, &view_, flags) == 0;
  }
  uint8_t* data() const { return static_cast<uint8_t*>(view_.buf); }
  uint64_t size() const { return static_cast<uint64_t>(view_.len); }
  // Bytes per item of the exporter's format (1 for bytes-like objects).
  uint64_t itemsize() const { return static_cast<uint64_t>(view_.itemsize); }

 private:
  Py_buffer view_;
};

}  // namespace bindings
}  // namespace fastckpt
