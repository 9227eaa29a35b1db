"""The core's element-type table (csrc/fastckpt/format/dtypes.h) agrees with
fastckpt/format/dtypes.py: the same DataType numbers, names and bytes per
element, and the DLPack types map to the numpy types of the same names."""

import ml_dtypes
import numpy as np

from fastckpt import _native
from fastckpt._native import testing as native_testing
from fastckpt.format import dtypes

NO_DTYPE = -1
NO_DLPACK = 255


def _rows():
    return native_testing.dtype_table()


def test_every_python_dtype_has_the_same_row_in_the_core():
    core = {dt: (name, size) for dt, name, size, _, _ in _rows() if dt != NO_DTYPE}
    python = {dt: (name, size) for dt, name, size, _ in dtypes._TABLE}
    assert {dt: core[dt] for dt in python} == python
    # The core also knows DT_VARIANT (variable-length, never savable), which
    # the Python table lists only by name.
    assert set(core) - set(python) == {dtypes.DT_VARIANT}
    assert core[dtypes.DT_VARIANT] == ("variant", 0)


def test_sizes_agree_through_element_size():
    for dt, _, size, _, _ in _rows():
        if dt in (NO_DTYPE, dtypes.DT_VARIANT):
            continue
        assert dtypes.element_size(dt) == size, dt


def test_core_rows_are_unique():
    rows = _rows()
    numbered = [dt for dt, *_ in rows if dt != NO_DTYPE]
    assert len(numbered) == len(set(numbered)) == 32
    dlpack = [(code, bits) for _, _, _, code, bits in rows if code != NO_DLPACK]
    assert len(dlpack) == len(set(dlpack)) == 23


def test_dlpack_rows_name_numpy_types_of_their_width():
    for dt, name, size, code, bits in _rows():
        if code == NO_DLPACK:
            continue
        assert _native.dlpack_numpy_dtype(code, bits, 1) == name
        np_type = np.dtype(getattr(ml_dtypes, name)) if hasattr(ml_dtypes, name) else np.dtype(name)
        assert np_type.itemsize * 8 == bits == size * 8, name
        if dt != NO_DTYPE:
            assert dtypes.to_numpy_dtype(dt) == np_type, name


def test_dlpack_only_rows():
    only = sorted((name, code) for dt, name, _, code, _ in _rows() if dt == NO_DTYPE)
    assert only == [("float8_e3m4", 7), ("float8_e4m3", 8), ("float8_e8m0fnu", 14)]
