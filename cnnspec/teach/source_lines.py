"""The lines of the generated PyTorch and Keras source that implement each layer.

The emitters only generate text.  The PyTorch emitter looks at ``torch.nn.Module`` when torch is
installed (to refuse layer names that clash with its attributes); ``explain`` must never import a
framework, so while it emits, an ``import torch`` that has not happened yet is made to fail and
the emitter falls back to its own list of reserved names.
"""

from __future__ import annotations

import contextlib
import re
import sys
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


def layer_lines(plan: Plan, sources: dict[str, str | Exception] | None = None) -> dict[str, dict[str, list[str]]]:
    """{layer name: {"torch": [lines], "keras": [lines]}} read from the generated source by layer name.

    PyTorch: the ``self.<name>`` (or ``self.<name>_<role>``) lines of ``__init__`` and the line of
    ``forward`` that the emitter marks ``# <name>:``.  Keras: the lines that create a layer called
    ``<name>`` (or ``<name>_<role>``).
    """
    sources = sources if sources is not None else generated_sources(plan)
    names = [layer.name for layer in plan.layers]
    result: dict[str, dict[str, list[str]]] = {name: {"torch": [], "keras": []} for name in names}
    torch_source = sources.get("torch")
    if isinstance(torch_source, str):
        section = ""
        for raw in torch_source.splitlines():
            line = raw.strip()
            if line.startswith("def "):
                section = line.split("(")[0][4:]
            if section == "__init__":
                match = re.match(r"self\.(\w+)\s*=", line)
                owner = _owner(match.group(1), names) if match else None
                if owner:
                    result[owner]["torch"].append(line)
            elif section == "forward":
                match = re.search(r"#\s*([^:\s]+):", line)
                if match and match.group(1) in result:
                    result[match.group(1)]["torch"].append(line)
    keras_source = sources.get("keras")
    if isinstance(keras_source, str):
        for raw in keras_source.splitlines():
            line = raw.strip()
            match = re.search(r"name='([^']+)'", line)
            if not match or line.startswith(("inputs =", "return ")):
                continue
            owner = _owner(match.group(1), names)
            if owner:
                result[owner]["keras"].append(line)
    return result
