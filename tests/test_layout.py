"""The source tree and what describes it agree: every package of ``fastckpt/``
is in pyproject.toml's package list (or the wheel would lack it), and the
README's "Layout" section names every module, so that a reader finds where a
behaviour lives."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fastckpt"


def _packages():
    return sorted(".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py"))


def test_every_package_is_in_the_pyproject_package_list():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    listed = re.search(r"^packages = \[(.*)\]$", text, re.M)
    assert listed is not None
    assert sorted(re.findall(r'"([^"]+)"', listed.group(1))) == _packages()


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([\w./]+)`", layout))
    missing = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name.endswith("_pb2.py"):
            continue  # generated: proto/ is named
        if path.parent != PACKAGE and f"{path.parent.name}/" not in named:
            missing.add(f"{path.parent.name}/")  # a subpackage, by its directory
        if path.name != "__init__.py" or path.parent == PACKAGE:
            if path.name not in named:
                missing.add(str(path.relative_to(PACKAGE)))
    assert sorted(missing) == []
