"""Build script for fastckpt's native code.

All metadata lives in pyproject.toml; this file only describes the C++ parts:

  fastckpt/libfastckpt_core.so  the native core (csrc/fastckpt/), compiled once,
                                Python-free; a shared library, so that both
                                extensions below use one copy of its
                                process-wide state (thread pool, staging pool,
                                installed copy engine, fault injection)
  fastckpt._native              the bindings users import (csrc/bindings/)
  fastckpt._native_testing      the test hooks (csrc/testing/): fault injection,
                                the simulated device, direct entry points into
                                core pieces; imported by the tests only

Both extensions find the core next to them (rpath $ORIGIN).
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

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import Extension, setup


def _version() -> str:
    # One version source: pyproject.toml. It is passed to C++ as a macro and
    # asserted against fastckpt.__version__ by a test.
    with open(os.path.join(os.path.dirname(__file__), "pyproject.toml"), encoding="utf-8") as f:
        return re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M).group(1)


def _flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0", "false", "no")


def _sanitizer() -> str:
    """ "" (none), "address" (ASan + UBSan) or "thread" (TSan), from FASTCKPT_SANITIZE."""
    value = os.environ.get("FASTCKPT_SANITIZE", "0").strip().lower()
    if value in ("", "0", "false", "no"):
        return ""
    if value in ("1", "true", "yes", "address"):
        return "address"
    if value == "thread":
        return "thread"
    raise SystemExit(f"FASTCKPT_SANITIZE={value!r}: expected 1 (or address) for ASan + UBSan, or thread for TSan")


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
core_sources = sorted(glob.glob("csrc/fastckpt/**/*.cc", recursive=True))
binding_sources = sorted(glob.glob("csrc/bindings/*.cc"))
# errors.cc (Status -> exception) is the one binding file both modules need.
testing_sources = sorted(glob.glob("csrc/testing/*.cc")) + ["csrc/bindings/errors.cc"]
# Every header: a change to one rebuilds what may include it.
headers = sorted(glob.glob("csrc/**/*.h", recursive=True))

CORE = "fastckpt.libfastckpt_core"
CORE_FILE = "libfastckpt_core.so"


class BuildExt(build_ext):
    """Builds the core as a plain shared library (not a Python module: no
    Python ABI tag in its name) before the extensions, and links them to it."""

    def get_ext_filename(self, fullname):
        # Called with the full name or (building) with its last part alone.
        if fullname in (CORE, CORE.rpartition(".")[2]):
            return os.path.join(*fullname.split(".")[:-1], CORE_FILE)
        return super().get_ext_filename(fullname)

    def build_extension(self, ext):
        if ext.name != CORE:
            ext.extra_objects = [self.get_ext_fullpath(CORE)]
            ext.extra_link_args = ext.extra_link_args + ["-Wl,-rpath,$ORIGIN"]
            ext.depends = ext.depends + [self.get_ext_fullpath(CORE)]
        super().build_extension(ext)


ParallelCompile("FASTCKPT_BUILD_JOBS", default=os.cpu_count() or 1).install()


def _extension(name, sources):
    return Pybind11Extension(
        name,
        sources,
        include_dirs=["csrc"],
        cxx_std=17,
        define_macros=[("FASTCKPT_VERSION", f'"{_version()}"')],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        depends=headers,
    )


setup(
    ext_modules=[
        # The core's symbols stay visible: the extensions link against them.
        Extension(
            CORE,
            core_sources,
            include_dirs=["csrc"],
            language="c++",
            # -g0 as Pybind11Extension adds it (a debug build's -g comes later and wins).
            extra_compile_args=["-std=c++17", "-g0"] + [a for a in compile_args if a != "-fvisibility=hidden"],
            extra_link_args=link_args + [f"-Wl,-soname,{CORE_FILE}"],
            libraries=["dl", "pthread"],
            depends=headers,
        ),
        _extension("fastckpt._native", binding_sources),
        _extension("fastckpt._native_testing", testing_sources),
    ],
    cmdclass={"build_ext": BuildExt},
)
