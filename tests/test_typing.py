"""Static typing: the package type-checks with mypy, so do the README's
examples, ``save``'s overloads give each call its precise type, and the stub
of the extension module (``fastckpt/_native.pyi``) matches the module.

mypy runs as a subprocess, bounded in time. Its strictness is ``--strict``
less ``--warn-return-any`` (values from numpy and the frameworks are Any) and
``--warn-unused-configs`` (see MYPY_FLAGS).
TensorFlow, torch, CuPy and JAX are treated as untyped (their imports are
not followed): README examples that use them are still checked.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import fastckpt
from fastckpt import _native

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastckpt"
STUB = PACKAGE / "_native.pyi"

MYPY_FLAGS = [
    "--disallow-any-generics",
    "--disallow-untyped-defs",
    "--disallow-incomplete-defs",
    "--check-untyped-defs",
    "--disallow-untyped-calls",
    "--disallow-untyped-decorators",
    "--disallow-subclassing-any",
    "--no-implicit-optional",
    "--no-implicit-reexport",
    "--strict-equality",
    "--extra-checks",
    "--warn-redundant-casts",
    "--warn-unused-ignores",
    "--show-error-codes",
    "--no-color-output",
    "--no-error-summary",
]
MYPY_TIMEOUT = 600


def _mypy_config(path: Path) -> Path:
    """A mypy configuration: frameworks untyped and not followed, generated
    protobuf modules opaque (mypy cannot see the classes they create at run
    time), the package found in this source tree."""
    generated = sorted(f"fastckpt.proto.{p.stem}" for p in (PACKAGE / "proto").glob("*_pb2.py"))
    path.write_text(
        textwrap.dedent(f"""\
        [mypy]
        mypy_path = {ROOT}
        exclude = _pb2\\.py$

        [mypy-tensorflow.*,torch.*,cupy.*,jax.*,jaxlib.*,benchmarks.*]
        ignore_missing_imports = True
        follow_imports = skip

        [mypy-google.protobuf.*,ml_dtypes.*]
        ignore_missing_imports = True

        [mypy-{",".join(generated)}]
        follow_imports = skip
        """)
    )
    return path


@pytest.fixture(scope="module")
def mypy_setup(tmp_path_factory) -> Tuple[Path, Path]:
    """(config file, cache directory), shared by this module's runs."""
    base = tmp_path_factory.mktemp("mypy")
    return _mypy_config(base / "mypy.ini"), base / "cache"


def _mypy(setup: Tuple[Path, Path], *targets: str) -> subprocess.CompletedProcess:
    config, cache = setup
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--cache-dir", str(cache), *MYPY_FLAGS, *targets],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=MYPY_TIMEOUT,
    )


def test_the_pyproject_mypy_config_has_the_same_checks():
    """``mypy fastckpt`` (configured in pyproject.toml) runs the checks of this module."""
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[tool.mypy]", 1)[1]
    config = config.split("[[tool.mypy.overrides]]", 1)[0]  # the global options
    options = {line.split("=")[0].strip() for line in config.splitlines() if line.endswith("= true")}
    flags = {f[2:].replace("-", "_") for f in MYPY_FLAGS if f not in ("--no-color-output", "--no-error-summary")}
    assert options == flags


def test_the_package_type_checks(mypy_setup):
    proc = _mypy(mypy_setup, "-p", "fastckpt")
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


def _readme_blocks() -> List[Tuple[int, str]]:
    """(line number, code) of every ```python block of README.md."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    blocks, start = [], None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = number
        elif start is not None and line.strip() == "```":
            blocks.append((start + 1, "\n".join(lines[start : number - 1]) + "\n"))
            start = None
    assert start is None, f"README.md: the ```python block of line {start} is not closed"
    return blocks


def test_the_readme_python_examples_type_check(mypy_setup, tmp_path):
    blocks = _readme_blocks()
    assert len(blocks) >= 4  # the API, the Saver, verification, GPU and asynchronous saves
    files = []
    for first_line, code in blocks:
        path = tmp_path / f"readme_line_{first_line}.py"
        path.write_text(code, encoding="utf-8")
        files.append(str(path))
    proc = _mypy(mypy_setup, *files)
    # Point each message at README.md's own line numbers.
    report = re.sub(
        r"\S*readme_line_(\d+)\.py:(\d+)", lambda m: f"README.md:{int(m.group(1)) + int(m.group(2)) - 1}", proc.stdout
    )
    assert proc.returncode == 0 and proc.stdout == "", report + proc.stderr


SAVE_TYPES = """
import concurrent.futures
from typing import Any, Dict, Union

import numpy as np
from typing_extensions import assert_type

import fastckpt

tensors: Dict[str, Any] = {"w": np.ones(3)}
result = fastckpt.save(tensors, "/tmp/ck")
assert_type(result, fastckpt.SaveResult)
gbps: float = result.gbps
handle = fastckpt.save(tensors, "/tmp/ck", blocking=False)
assert_type(handle, fastckpt.AsyncSave[fastckpt.SaveResult])
assert_type(handle.result(), fastckpt.SaveResult)
assert_type(handle.result(timeout=1.0).gbps, float)
assert_type(handle.wait(1.0), bool)
assert_type(handle.snapshot_seconds, float)
future: "concurrent.futures.Future[fastckpt.SaveResult]" = handle
explicit = fastckpt.save(tensors, "/tmp/ck", blocking=True, durable=False)
assert_type(explicit, fastckpt.SaveResult)
flag = bool(len(tensors))
either = fastckpt.save(tensors, "/tmp/ck", blocking=flag)
assert_type(either, Union[fastckpt.SaveResult, fastckpt.AsyncSave[fastckpt.SaveResult]])
fastckpt.save(tensors, "/tmp/ck").result()  # type: ignore[attr-defined]
with fastckpt.load_checkpoint("/tmp/ck") as reader:
    assert_type(reader["w"], np.ndarray)
    assert_type(reader.get_slice("w", (slice(0, 2), ...)), np.ndarray)
    assert_type(reader.get_slice("w", "0,2"), np.ndarray)
    assert_type(reader.get_slice("w", [(0, 2)]), np.ndarray)
    reader.get_slice("w", 1.5)  # type: ignore[arg-type]
"""


def test_save_overloads_give_each_call_its_type(mypy_setup, tmp_path):
    """A blocking save is a SaveResult (``.gbps`` type-checks); an asynchronous
    one an AsyncSave whose result() is a SaveResult. The ignore comments are
    checked too (--warn-unused-ignores): the calls they mark must be errors."""
    path = tmp_path / "save_types.py"
    path.write_text(SAVE_TYPES)
    proc = _mypy(mypy_setup, str(path))
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr


# -- the stub of the extension module ------------------------------------------------

# pybind11 classes have pybind11's metaclass, which a stub cannot name; DLPackTensor
# has no constructor (the stub inherits object's).
STUBTEST_ALLOWLIST = """\
fastckpt._native.Reader
fastckpt._native.SaveJob
fastckpt._native.DLPackTensor
fastckpt._native.DLPackTensor.__init__
"""


def test_the_native_stub_passes_stubtest(mypy_setup, tmp_path):
    """Every name of the module is in the stub and vice versa, with the right kind."""
    config, _cache = mypy_setup
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text(STUBTEST_ALLOWLIST)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "fastckpt._native",
            "--mypy-config-file",
            str(config),
            "--allowlist",
            str(allowlist),
        ],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=MYPY_TIMEOUT,
        env={**os.environ, "MYPYPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _split_top_level(text: str) -> List[str]:
    """Splits at commas outside brackets."""
    out, depth, part = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(part.strip())
            part = ""
        else:
            part += ch
    if part.strip():
        out.append(part.strip())
    return out


def _runtime_parameters(obj: object) -> List[Tuple[str, bool]]:
    """(name, has default) per parameter, from pybind11's docstring signature
    ``name(a: int, b: str = 'x') -> None`` (self excluded)."""
    first = (obj.__doc__ or "").splitlines()[0]
    match = re.match(r"^\w+\((.*)\)( -> .*)?$", first)
    assert match, f"no signature in the docstring of {obj!r}: {first!r}"
    params = []
    for p in _split_top_level(match.group(1)):
        name = p.split(":")[0].split("=")[0].strip()
        if name != "self":
            params.append((name, " = " in p))
    return params


def _stub_parameters(fn: ast.FunctionDef) -> List[Tuple[str, bool]]:
    args = fn.args
    positional = args.posonlyargs + args.args
    defaults = [False] * (len(positional) - len(args.defaults)) + [True] * len(args.defaults)
    out = [(a.arg, d) for a, d in zip(positional, defaults) if a.arg != "self"]
    out += [(a.arg, d is not None) for a, d in zip(args.kwonlyargs, args.kw_defaults)]
    if args.vararg:
        out.append(("*" + args.vararg.arg, False))
    return out


def _stub_functions() -> Dict[str, Tuple[object, ast.FunctionDef]]:
    """Runtime object and stub definition of every function and method the stub
    declares (``_Testing``'s methods are the testing module's functions)."""
    tree = ast.parse(STUB.read_text())
    runtime_of = {"_Testing": _native.testing, "_SimulatedDevice": _native.testing.SimulatedDevice}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = (getattr(_native, node.name), node)
        elif isinstance(node, ast.ClassDef):
            owner = runtime_of.get(node.name) or getattr(_native, node.name)
            for item in node.body:
                decorated = isinstance(item, ast.FunctionDef) and any(
                    isinstance(d, ast.Name) and d.id == "property" for d in item.decorator_list
                )
                if isinstance(item, ast.FunctionDef) and not decorated and item.name not in ("__enter__", "__exit__"):
                    out[f"{node.name}.{item.name}"] = (getattr(owner, item.name), item)
    return out


def test_the_native_stub_has_the_modules_parameters():
    """pybind11 functions carry no introspectable signature (stubtest cannot
    compare parameters); their docstrings do. Names, order and which have
    defaults must agree with the stub."""
    functions = _stub_functions()
    assert "Reader.read_all" in functions and "_Testing.arm_fault" in functions
    mismatches = []
    for qualname, (runtime, node) in sorted(functions.items()):
        want, got = _runtime_parameters(runtime), _stub_parameters(node)
        if want != got:
            mismatches.append(f"{qualname}: module {want}, stub {got}")
    assert not mismatches, "\n".join(mismatches)


def _declared(node: ast.ClassDef) -> set:
    names = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            names.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    return names


def test_the_native_stub_covers_the_testing_module():
    """stubtest sees ``testing`` as a variable of the protocol type: check its
    members against the submodule here."""
    classes = {node.name: node for node in ast.parse(STUB.read_text()).body if isinstance(node, ast.ClassDef)}
    runtime = {n for n in dir(_native.testing) if not n.startswith("_")}
    assert _declared(classes["_Testing"]) == runtime
    device = {n for n in vars(_native.testing.SimulatedDevice) if not n.startswith("_")}
    assert _declared(classes["_SimulatedDevice"]) == device


def test_the_stub_is_shipped():
    """pyproject's package data ships *.pyi next to py.typed."""
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'fastckpt = \[[^\]]*"\*\.pyi"', text)
    assert (PACKAGE / "py.typed").exists() and STUB.exists()
    assert fastckpt.__file__ is not None
