"""The source text of helper classes, read from their modules without importing them.

Generated modules include the helpers they use verbatim (they never import cnnspec).  The
helpers live in real modules (``targets/torch/helpers.py``, ``targets/keras/helpers.py``) that
import their framework, so their text is read from the file with :mod:`ast` instead of
``inspect.getsource``: emitting source never imports torch or tensorflow.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from cnnspec.errors import CnnspecError


@functools.cache
def _definitions(path: str) -> dict[str, str]:
    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines()
    found: dict[str, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            found[node.name] = "\n".join(lines[first - 1 : node.end_lineno]) + "\n"
    return found


def definition_text(module_file: str, name: str) -> str:
    """The text of top-level class or function ``name`` (decorators included) in ``module_file``."""
    definitions = _definitions(str(module_file))
    if name not in definitions:
        raise CnnspecError(f"no helper '{name}' in {module_file}")
    return definitions[name]


def definition_names(module_file: str) -> list[str]:
    """Every top-level class and function defined in ``module_file``, in file order."""
    return list(_definitions(str(module_file)))
