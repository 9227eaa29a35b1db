// write_file_atomically() and remove_stale_temp_files(): small files (the
// `checkpoint` state file, `.meta`) go through the same temporary-file
// mechanism as data and index files (csrc/fastckpt/io/temp_files.h), so that
// a crash leaves only names the next save recognises and removes.
//
// Arguments are converted with the GIL held; the I/O runs with it released.
// Paths are bytes (os.fsencode) or str.
#include <pybind11/pybind11.h>

#include <string>

#include "bindings/errors.h"
#include "bindings/registry.h"
#include "fastckpt/io/temp_files.h"

namespace py = pybind11;

namespace fastckpt {
namespace bindings {

void RegisterFiles(py::module_& m) {
  m.def(
      "write_file_atomically",
      [](const std::string& path, const py::bytes& data, bool durable, const std::string& what) {
        // bytes are immutable and `data` is referenced by the caller's frame
        // for the whole call, so the pointer stays valid without the GIL.
        const char* bytes = PyBytes_AS_STRING(data.ptr());
        const size_t n = static_cast<size_t>(PyBytes_GET_SIZE(data.ptr()));
        Status st;
        {
          py::gil_scoped_release release;
          st = WriteFileAtomically(path, bytes, n, durable);
        }
        if (!st.ok()) ThrowStatus(st.Annotate("cannot write " + what + ": "));
      },
      py::arg("path"), py::arg("data"), py::arg("durable"), py::arg("what"),
      "Replaces the file `path` with `data` atomically through a locked temporary\n"
      "file (fsync of the file and its directory when `durable`). `what` names the\n"
      "file in errors (\"checkpoint state file\"). Raises CheckpointIOError (its\n"
      "subclass for the errno) with `filename` = `path`.");
  m.def(
      "remove_stale_temp_files",
      [](const std::string& directory, double min_age_seconds) {
        py::gil_scoped_release release;
        return RemoveStaleTempFiles(directory, min_age_seconds);
      },
      py::arg("directory"), py::arg("min_age_seconds") = 2.0,
      "Removes fastckpt's temporary files in `directory` that no live writer holds\n"
      "(unlocked) and that are at least `min_age_seconds` old; returns how many.");
}

}  // namespace bindings
}  // namespace fastckpt
