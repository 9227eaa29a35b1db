"""The error model: every exported exception is a FastCkptError and also the
built-in class a caller would catch; OS errors carry errno, the OS text and
the checkpoint file; GPU failures are CudaError with the driver's code, never
"unavailable"; exceptions survive pickling (multi-process launchers send them
between processes)."""

from __future__ import annotations

import concurrent.futures
import errno
import inspect
import os
import pickle

import numpy as np
import pytest

import fastckpt
from fastckpt import errors

# Every exception fastckpt exports, with the built-in classes it also is.
EXPECTED = {
    "FastCkptError": (Exception,),
    "CheckpointIOError": (OSError,),
    "CheckpointNotFoundError": (FileNotFoundError, OSError),
    "CheckpointPermissionError": (PermissionError, OSError),
    "CheckpointExistsError": (FileExistsError, OSError),
    "CheckpointIsADirectoryError": (IsADirectoryError, OSError),
    "CheckpointNotADirectoryError": (NotADirectoryError, OSError),
    "TensorNotFoundError": (KeyError,),
    "DataLossError": (),
    "InvalidArgumentError": (ValueError,),
    "UnsupportedDtypeError": (TypeError,),
    "ArgumentTypeError": (TypeError,),
    "UnimplementedError": (NotImplementedError,),
    "FailedPreconditionError": (RuntimeError,),
    "CudaError": (RuntimeError,),
    "CudaUnavailableError": (RuntimeError,),
    "MissingDependencyError": (ModuleNotFoundError, ImportError),
    "CancelledError": (concurrent.futures.CancelledError,),
    "DeadlineExceededError": (TimeoutError, concurrent.futures.TimeoutError),
    "DistributedError": (RuntimeError,),
    "DistributedSaveError": (RuntimeError,),
    "DistributedLoadError": (RuntimeError,),
    "InternalError": (RuntimeError,),
}


def test_every_exported_exception_is_listed_and_has_its_builtin_bases():
    exported = {
        n
        for n in fastckpt.__all__
        if inspect.isclass(getattr(fastckpt, n)) and issubclass(getattr(fastckpt, n), BaseException)
    }
    assert exported == set(EXPECTED)
    for name, builtins in EXPECTED.items():
        cls = getattr(fastckpt, name)
        assert cls is getattr(errors, name)
        assert issubclass(cls, fastckpt.FastCkptError), name
        for b in builtins:
            assert issubclass(cls, b), (name, b)
    for name in EXPECTED:
        if name.startswith("Checkpoint"):
            assert issubclass(getattr(fastckpt, name), fastckpt.CheckpointIOError), name
    assert issubclass(fastckpt.CudaUnavailableError, fastckpt.CudaError)
    # A GPU failure is not caught by "no GPU, fall back" code.
    assert not issubclass(fastckpt.CudaError, fastckpt.CudaUnavailableError)


@pytest.mark.parametrize(
    "err,cls,builtin",
    [
        (errno.ENOENT, fastckpt.CheckpointNotFoundError, FileNotFoundError),
        (errno.EACCES, fastckpt.CheckpointPermissionError, PermissionError),
        (errno.EPERM, fastckpt.CheckpointPermissionError, PermissionError),
        (errno.EEXIST, fastckpt.CheckpointExistsError, FileExistsError),
        (errno.EISDIR, fastckpt.CheckpointIsADirectoryError, IsADirectoryError),
        (errno.ENOTDIR, fastckpt.CheckpointNotADirectoryError, NotADirectoryError),
        (errno.ENOSPC, fastckpt.CheckpointIOError, OSError),
        (errno.EIO, fastckpt.CheckpointIOError, OSError),
    ],
)
def test_os_errors_get_the_class_python_would_pick(err, cls, builtin):
    e = errors.os_error(err, f"write failed on '/ck/m.index': {os.strerror(err)}", "/ck/m.index")
    assert type(e) is cls and isinstance(e, builtin)
    # Python's own choice for the errno is a base of ours.
    assert isinstance(e, type(OSError(err, "x")))
    assert (e.errno, e.strerror, e.filename) == (err, os.strerror(err), "/ck/m.index")
    assert str(e) == f"write failed on '/ck/m.index': {os.strerror(err)}"
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls
    assert (back.errno, back.strerror, back.filename, str(back)) == (e.errno, e.strerror, e.filename, str(e))


def test_from_os_error_keeps_errno_and_names_the_file():
    try:
        open("/nonexistent-dir/x", "rb")  # noqa: SIM115 - it fails to open
    except OSError as raw:
        e = errors.from_os_error(raw, "cannot read '/nonexistent-dir/x'")
    assert type(e) is fastckpt.CheckpointNotFoundError
    assert (e.errno, e.strerror, e.filename) == (errno.ENOENT, "No such file or directory", "/nonexistent-dir/x")
    assert str(e) == "cannot read '/nonexistent-dir/x': No such file or directory"


def test_cuda_errors_carry_the_driver_code_and_pickle():
    e = fastckpt.CudaError(
        "CUDA cuMemcpyDtoHAsync failed: CUDA_ERROR_ILLEGAL_ADDRESS (...)", 700, "CUDA_ERROR_ILLEGAL_ADDRESS"
    )
    assert (e.code, e.error_name) == (700, "CUDA_ERROR_ILLEGAL_ADDRESS")
    assert str(e) == "CUDA cuMemcpyDtoHAsync failed: CUDA_ERROR_ILLEGAL_ADDRESS (...)"
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), back.code, back.error_name, str(back)) == (
        fastckpt.CudaError,
        700,
        "CUDA_ERROR_ILLEGAL_ADDRESS",
        str(e),
    )
    u = pickle.loads(pickle.dumps(fastckpt.CudaUnavailableError("no driver")))
    assert type(u) is fastckpt.CudaUnavailableError and str(u) == "no driver" and u.code is None


def test_missing_dependency_error_names_the_module_and_pickles():
    e = fastckpt.MissingDependencyError("array_type='torch' needs PyTorch: pip install torch", name="torch")
    assert e.name == "torch" and str(e) == "array_type='torch' needs PyTorch: pip install torch"
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), back.name, str(back)) == (fastckpt.MissingDependencyError, "torch", str(e))


@pytest.mark.parametrize(
    "cls",
    [
        fastckpt.DataLossError,
        fastckpt.InvalidArgumentError,
        fastckpt.TensorNotFoundError,
        fastckpt.UnsupportedDtypeError,
    ],
)
def test_plain_errors_pickle(cls):
    e = cls("tensor 'w' in '/ck/m.data-00000-of-00001': something")
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is cls and str(back) == str(e)


def test_native_os_error_is_the_matching_subclass_with_the_file(tmp_path):
    # EACCES from the core: a PermissionError naming the file, errno and OS text set.
    prefix = str(tmp_path / "m")
    fastckpt.save({"w": np.ones(4, np.float32)}, prefix)
    index = prefix + ".index"
    if os.geteuid() == 0:
        # root ignores file modes; an EACCES is injected where the core opens files instead.
        os.chmod(index, 0)
        from fastckpt import _native

        _native.testing.arm_fault("create", 0, errno.EACCES)
        try:
            with pytest.raises(fastckpt.CheckpointPermissionError) as info:
                fastckpt.save({"w": np.ones(4, np.float32)}, str(tmp_path / "other"))
        finally:
            _native.testing.disarm_faults()
        e = info.value
        assert e.errno == errno.EACCES and e.strerror == "Permission denied"
        assert e.filename == str(tmp_path / "other") + ".data-00000-of-00001"  # never the temporary name
        assert str(e).endswith(": Permission denied") and "None" not in str(e)
    else:
        os.chmod(index, 0)
        with pytest.raises(fastckpt.CheckpointPermissionError) as info:
            fastckpt.load(prefix)
        assert (info.value.errno, info.value.filename) == (errno.EACCES, index)


def test_missing_checkpoint_is_file_not_found_with_the_index_name(tmp_path):
    prefix = str(tmp_path / "nothing")
    with pytest.raises(fastckpt.CheckpointNotFoundError) as info:
        fastckpt.load(prefix)
    e = info.value
    assert isinstance(e, FileNotFoundError)
    assert (e.errno, e.strerror, e.filename) == (errno.ENOENT, "No such file or directory", prefix + ".index")
    assert str(e) == f"checkpoint index not found: '{prefix}.index'"
