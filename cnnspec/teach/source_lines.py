"""The lines of the generated PyTorch and Keras source that implement each layer.

The emitters only generate text.  The PyTorch emitter looks at ``torch.nn.Module`` when torch is
installed (to refuse layer names that clash with its attributes); ``explain`` must never import a
framework, so while it emits, an ``import torch`` that has not happened yet is made to fail and
the emitter falls back to its own list of reserved names.
"""

from __future__ import annotations

import ast
import contextlib
import re
import sys
import textwrap
from collections.abc import Iterator

from cnnspec.engine.plan import Plan
from cnnspec.errors import CnnspecError

_FRAMEWORKS = ("torch", "tensorflow", "keras")


@contextlib.contextmanager
def _frameworks_blocked() -> Iterator[None]:
    blocked = [name for name in _FRAMEWORKS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def generated_sources(plan: Plan) -> dict[str, str | Exception]:
    """{"torch": source, "keras": source}; a target whose emitter refuses the plan maps to the error."""
    from cnnspec.targets.build import emit_source

    sources: dict[str, str | Exception] = {}
    with _frameworks_blocked():
        for target in ("torch", "keras"):
            try:
                sources[target] = emit_source(plan, target)
            except CnnspecError as error:
                sources[target] = error
    return sources


def _owner(candidate: str, names: list[str]) -> str | None:
    """The layer an attribute or Keras layer name belongs to: itself, or the longest ``<name>_<role>`` prefix."""
    if candidate in names:
        return candidate
    owners = [name for name in names if candidate.startswith(name + "_")]
    return max(owners, key=len) if owners else None


def _statements(source: str) -> Iterator[tuple[str, ast.stmt, str]]:
    """(enclosing function name, statement, its source text dedented) for every simple statement.

    Generated statements may span several lines (the emitters lay code out as ruff format does),
    so a layer's code is taken statement by statement, never line by line.
    """
    lines = source.splitlines()

    def walk(body: list[ast.stmt], function: str) -> Iterator[tuple[str, ast.stmt, str]]:
        for statement in body:
            if isinstance(statement, (ast.FunctionDef, ast.ClassDef)):
                yield from walk(
                    statement.body,
                    statement.name if isinstance(statement, ast.FunctionDef) else function,
                )
                continue
            end = statement.end_lineno or statement.lineno
            text = textwrap.dedent("\n".join(lines[statement.lineno - 1 : end]))
            yield function, statement, text

    yield from walk(ast.parse(source).body, "")


def layer_lines(
    plan: Plan, sources: dict[str, str | Exception] | None = None
) -> dict[str, dict[str, list[str]]]:
    """{layer name: {"torch": [statements], "keras": [statements]}} read from the generated source by layer name.

    PyTorch: the ``self.<name>`` (or ``self.<name>_<role>``) assignments of ``__init__`` and the
    statement of ``forward`` that the emitter marks ``# <name>:``.  Keras: the statements that create
    a layer called ``<name>`` (or ``<name>_<role>``).  A statement that spans several lines is kept whole.
    """
    sources = sources if sources is not None else generated_sources(plan)
    names = [layer.name for layer in plan.layers]
    result: dict[str, dict[str, list[str]]] = {name: {"torch": [], "keras": []} for name in names}
    torch_source = sources.get("torch")
    if isinstance(torch_source, str):
        for function, statement, text in _statements(torch_source):
            if function == "__init__":
                match = re.match(r"self\.(\w+)\s*=", text)
                owner = _owner(match.group(1), names) if match else None
                if owner:
                    result[owner]["torch"].append(text)
            elif function == "forward":
                match = re.search(r"#\s*([^:\s]+):", text)
                if match and match.group(1) in result:
                    result[match.group(1)]["torch"].append(text)
    keras_source = sources.get("keras")
    if isinstance(keras_source, str):
        for _, statement, text in _statements(keras_source):
            match = re.search(r"""name=["']([^"']+)["']""", text)
            if not match or isinstance(statement, ast.Return) or text.startswith("inputs ="):
                continue
            owner = _owner(match.group(1), names)
            if owner:
                result[owner]["keras"].append(text)
    return result
