"""The package passes ``ruff check``, ``ruff format --check`` and ``mypy`` as configured in pyproject.toml.

Each check runs the tool the way a developer would, from the repository root; a new lint or type
error anywhere it covers fails the test.  The negative controls run the same helpers on a copy
holding one deliberately bad module, so the checks are known to be able to fail.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The whole package passes mypy.
MYPY_CLEAN = ("cnnspec/",)

# Fails both tools: an unused import (ruff F401) and a possibly-None tuple passed to len (mypy arg-type),
# the kind of error the clean parts were freed of.
BAD_MODULE = textwrap.dedent('''
    """A module with one lint error and one type error."""

    import os


    def rank(kernel_size: tuple[int, ...] | None) -> int:
        return len(kernel_size)
''').lstrip()


def _tool(name: str) -> str:
    """The tool installed beside this interpreter (the venv), else the one on PATH; skip if neither."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return found


def _run(command: list[str], root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)


def _ruff(root: Path) -> subprocess.CompletedProcess[str]:
    return _run([_tool("ruff"), "check", "--no-fix", "cnnspec/"], root)


def _mypy(root: Path, paths: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return _run([_tool("mypy"), *paths], root)


def _copy_with_bad_module(tmp_path: Path) -> Path:
    """A copy of pyproject.toml and cnnspec/ with one bad module in a clean folder (cnnspec/teach/)."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "cnnspec", tmp_path / "cnnspec", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "cnnspec" / "teach" / "bad_module.py").write_text(BAD_MODULE)
    return tmp_path


def test_package_passes_ruff():
    result = _ruff(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_is_formatted():
    result = _run([_tool("ruff"), "format", "--check", "cnnspec/"], ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_format_check_fails_on_an_unformatted_module(tmp_path):
    root = _copy_with_bad_module(tmp_path)
    (root / "cnnspec" / "teach" / "unformatted.py").write_text("x = [1,\n  2]\n")
    result = _run([_tool("ruff"), "format", "--check", "cnnspec/"], root)
    assert result.returncode == 1 and "unformatted.py" in result.stdout, result.stdout + result.stderr


def test_clean_parts_pass_mypy():
    result = _mypy(ROOT, MYPY_CLEAN)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_fails_on_a_new_error(tmp_path):
    result = _ruff(_copy_with_bad_module(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bad_module.py" in result.stdout and "F401" in result.stdout


def test_mypy_fails_on_a_new_error(tmp_path):
    root = _copy_with_bad_module(tmp_path)
    result = _mypy(root, ("cnnspec/teach/bad_module.py",))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "bad_module.py:7: error" in result.stdout and "[arg-type]" in result.stdout
