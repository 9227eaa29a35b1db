"""Build script for fastckpt's native core (fastckpt._native).

All metadata lives in pyproject.toml; this file only describes the C++ extension.
Build switches are environment variables because they pass through `pip install .`:

  FASTCKPT_DEBUG=1                -O0 -g, assertions on
  FASTCKPT_SANITIZE=1             AddressSanitizer + UndefinedBehaviorSanitizer (implies debug);
                                  "address" is the same
  FASTCKPT_SANITIZE=thread        ThreadSanitizer (-O1 -g, assertions on)
  FASTCKPT_WARNINGS_AS_ERRORS=1   -Werror
  FASTCKPT_BUILD_JOBS=N           parallel compilation of the C++ sources
"""
import glob
import os
import re

from pybind11.setup_helpers import Pybind11Extension, ParallelCompile, build_ext
from setuptools import setup


def _version() -> str:
    # One version source: pyproject.toml. It is passed to C++ as a macro and
    # asserted against fastckpt.__version__ by a test.
    with open(os.path.join(os.path.dirname(__file__), "pyproject.toml"), encoding="utf-8") as f:
        return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0", "false", "no")


def _sanitizer() -> str:
    """"" (none), "address" (ASan + UBSan) or "thread" (TSan), from FASTCKPT_SANITIZE."""
    value = os.environ.get("FASTCKPT_SANITIZE", "0").strip().lower()
    if value in ("", "0", "false", "no"):
        return ""
    if value in ("1", "true", "yes", "address"):
        return "address"
    if value == "thread":
        return "thread"
    raise SystemExit(f"FASTCKPT_SANITIZE={value!r}: expected 1 (or address) for ASan + UBSan, "
                     "or thread for TSan")


sanitizer = _sanitizer()
debug = _flag("FASTCKPT_DEBUG") or sanitizer != ""
compile_args = ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"]
link_args = []
if sanitizer == "thread":
    # -O1: TSan at -O0 is several times slower again, and reports the same races.
    compile_args += ["-O1", "-g", "-UNDEBUG"]
elif debug:
    compile_args += ["-O0", "-g", "-UNDEBUG"]
else:
    compile_args += ["-O3"]
if sanitizer == "address":
    san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=undefined"]
    compile_args += san
    link_args += san
elif sanitizer == "thread":
    san = ["-fsanitize=thread", "-fno-omit-frame-pointer"]
    compile_args += san
    link_args += san
if _flag("FASTCKPT_WARNINGS_AS_ERRORS"):
    compile_args.append("-Werror")

# Sorted for reproducible builds.
sources = sorted(glob.glob("csrc/fastckpt/**/*.cc", recursive=True)) + sorted(glob.glob("csrc/bindings/*.cc"))

ParallelCompile("FASTCKPT_BUILD_JOBS", default=os.cpu_count() or 1).install()

setup(
    ext_modules=[
        Pybind11Extension(
            "fastckpt._native",
            sources,
            include_dirs=["csrc"],
            cxx_std=17,
            define_macros=[("FASTCKPT_VERSION", f'"{_version()}"')],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            libraries=["dl", "pthread"],
        )
    ],
    cmdclass={"build_ext": build_ext},
)
