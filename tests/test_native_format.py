"""Every C++ file of csrc/ is formatted as .clang-format says (Google style,
120 columns): `clang-format --dry-run -Werror` finds nothing to change. The
clang-format wheel is pinned in the test extra, so every machine formats
alike."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = sorted(p for p in (ROOT / "csrc").rglob("*") if p.suffix in (".cc", ".h"))


def _clang_format(*args):
    # The wheel's entry point, run by this interpreter's environment.
    code = "import sys, clang_format; sys.exit(clang_format.clang_format())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)


def test_the_pinned_clang_format_runs():
    out = _clang_format("--version")
    assert out.returncode == 0, out.stderr
    assert "clang-format version 19.1.7" in out.stdout


def test_sources_are_formatted():
    assert len(SOURCES) > 80  # the whole tree, not an empty glob
    out = _clang_format("--dry-run", "-Werror", "--style=file", *[str(p.relative_to(ROOT)) for p in SOURCES])
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stderr == ""
