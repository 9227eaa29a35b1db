#!/usr/bin/env bash
# Builds the native core with AddressSanitizer + UndefinedBehaviorSanitizer in a
# scratch copy of the tree and runs the native-heavy tests against it.
#
#   tools/run_sanitizers.sh [pytest args...]
#
# The interpreter is not built with ASan, so the runtime is preloaded; libstdc++
# is preloaded too, or ASan aborts on the first C++ exception.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$root" ls-files -z | (cd "$root" && xargs -0 cp --parents -t "$work")
(cd "$work" && FASTCKPT_SANITIZE=1 python setup.py -q build_ext --inplace >/dev/null)
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1
export PYTHONPATH="$work"
cd "$work"
python -m pytest -q -p no:cacheprovider tests/test_crc32c.py tests/test_roundtrip.py tests/test_errors.py \
  tests/test_properties.py tests/test_format_golden.py tests/test_os_errors.py \
  tests/test_verify.py tests/test_fault_injection.py tests/test_temp_cleanup.py \
  tests/test_staging.py tests/test_async_save.py tests/test_cuda_fake_driver.py tests/test_cuda_fake_pipeline.py \
  tests/test_dlpack_native.py tests/test_load_packing.py tests/test_hostile_inputs.py "$@"
