#!/usr/bin/env bash
# Static checks that keep the tree as the README's Layout section describes it:
# ruff (lint and format) over the Python tree, mypy over the package, and
# clang-format over the native sources. Run from anywhere; exits non-zero on
# the first failing check. The tools come with the `test` extra (pinned).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "ruff check" && python -m ruff check .
echo "ruff format --check" && python -m ruff format --check .
echo "mypy fastckpt" && python -m mypy fastckpt
echo "clang-format --dry-run -Werror"
# The pinned wheel's entry point, through this interpreter (no PATH lookup).
git ls-files -z -- 'csrc/*.cc' 'csrc/*.h' |
    xargs -0 python -c 'import sys, clang_format; sys.exit(clang_format.clang_format())' --dry-run -Werror
echo "style checks passed"
