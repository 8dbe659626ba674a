"""Source text of the helper classes in ``targets/{torch,keras}/helpers.py``, read without importing them.

Generated modules embed a helper's source; reading it with ``ast`` keeps source generation free of
torch and keras imports (``inspect.getsource`` would import the framework).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

from cnnspec.errors import CnnspecError


@cache
def _classes(path: str) -> dict[str, str]:
    text = Path(path).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    found: dict[str, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            first = min([node.lineno] + [decorator.lineno for decorator in node.decorator_list])
            found[node.name] = "".join(lines[first - 1 : node.end_lineno])
    return found


def class_source(helpers_file: str | Path, name: str) -> str:
    """The source of class (or function) ``name`` in ``helpers_file``, decorators included."""
    classes = _classes(str(helpers_file))
    if name not in classes:
        raise CnnspecError(f"no helper '{name}' in {Path(helpers_file).name}")
    return classes[name]
