// The one place where a core Status becomes a Python exception.
// The exception classes live in fastckpt/errors.py.
#pragma once

#include <pybind11/pybind11.h>

#include "fastckpt/core/status.h"

namespace fastckpt {
namespace bindings {

// Raises the Python exception for `status`. REQUIRES: the GIL is held and
// !status.ok().
[[noreturn]] void ThrowStatus(const Status& status);

// Requires the GIL.
inline void Check(const Status& status) {
  if (!status.ok()) ThrowStatus(status);
}

}  // namespace bindings
}  // namespace fastckpt
