#!/usr/bin/env bash
# Builds the native core with a sanitizer in a scratch copy of the tree (its
# tracked files) and runs the native-heavy tests against it.
#
#   tools/run_sanitizers.sh [pytest args...]           AddressSanitizer + UBSan
#   tools/run_sanitizers.sh address [pytest args...]   the same
#   tools/run_sanitizers.sh thread [pytest args...]    ThreadSanitizer
#
# Both builds make the core library and both extensions (fastckpt._native,
# fastckpt._native_testing: setup.py), all with the sanitizer.
# The ASan run covers the I/O, format, staging and device tests and the
# direct tests of core pieces (test_native_*); the TSan run
# the multi-threaded ones: staging, asynchronous saves, failed saves, fault
# injection, the fake CUDA driver and pipeline, the thread pool, partial
# (multi-rank) save jobs and box reads. Extra
# arguments go to pytest (e.g. -k, -x, or other test files).
#
# The interpreter is not built with a sanitizer, so the runtime is preloaded
# into it (and into the child interpreters the tests start): for ASan with
# libstdc++ too, or ASan aborts on the first C++ exception. Either run fails
# on the first report. TSan reports inside the interpreter or third-party
# libraries only are suppressed by tools/tsan.supp (each entry says why).
set -euo pipefail
mode=address
if [[ $# -gt 0 && ( "$1" == address || "$1" == thread ) ]]; then
  mode=$1
  shift
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$work")
export PYTHONPATH="$work"
# The interpreter itself, not a launcher script (pyenv's shim is a shell
# script, which must not get the sanitizer runtime).
python="$(python -c 'import sys; print(sys.executable)')"
cd "$work"
if [[ $mode == thread ]]; then
  FASTCKPT_SANITIZE=thread "$python" setup.py -q build_ext --inplace >/dev/null
  # die_after_fork=0: the fork tests start threads in the child (fastckpt
  # resets its pool for that); halt_on_error: the first report fails the run.
  export TSAN_OPTIONS="halt_on_error=1:abort_on_error=1:die_after_fork=0:second_deadlock_stack=1:suppressions=$work/tools/tsan.supp"
  export LD_PRELOAD="$(gcc -print-file-name=libtsan.so)"
  exec "$python" -m pytest -q -p no:cacheprovider tests/test_staging.py tests/test_async_save.py \
    tests/test_failed_saves.py tests/test_fault_injection.py tests/test_cuda_fake_driver.py \
    tests/test_cuda_fake_pipeline.py tests/test_thread_pool.py tests/test_partial_bundles.py \
    tests/test_box_reads.py tests/test_bundle_stream.py "$@"
fi
FASTCKPT_SANITIZE=address "$python" setup.py -q build_ext --inplace >/dev/null
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
exec "$python" -m pytest -q -p no:cacheprovider tests/test_crc32c.py tests/test_roundtrip.py tests/test_errors.py \
  tests/test_properties.py tests/test_format_golden.py tests/test_os_errors.py \
  tests/test_verify.py tests/test_fault_injection.py tests/test_temp_cleanup.py \
  tests/test_staging.py tests/test_async_save.py tests/test_failed_saves.py tests/test_thread_pool.py \
  tests/test_cuda_fake_driver.py tests/test_cuda_fake_pipeline.py \
  tests/test_dlpack_native.py tests/test_load_packing.py tests/test_hostile_inputs.py \
  tests/test_partial_bundles.py tests/test_box_reads.py tests/test_distributed_single.py \
  tests/test_bundle_stream.py tests/test_compression.py tests/test_native_units.py \
  tests/test_native_modules.py tests/test_native_dtypes.py "$@"
