"""The import contract: base < capture < learn < memory < orchestrators (pyproject.toml,
[tool.importlinter]). Run with the real import-linter over the real package, and once over
a copy of the package with one upward import added inside a function, to show the
contract catches the lazy imports that once hid learn -> memory -> learn cycles."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(package_parent: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(package_parent))
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command;"
                           " lint_imports_command()", "--config", str(ROOT / "pyproject.toml"),
                           "--no-cache"],
                          cwd=package_parent, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_its_layers():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_a_lazy_upward_import_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "wm", tmp_path / "wm", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "wm" / "learn" / "metrics.py"
    target.write_text(target.read_text() + "\n\ndef _sneaky():\n    from wm.memory import search\n"
                      "    return search\n")
    r = lint_imports(tmp_path)
    assert r.returncode != 0
    assert "BROKEN" in r.stdout and "wm.learn.metrics -> wm.memory.search" in r.stdout
