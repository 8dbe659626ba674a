"""Errors for people: every problem carries where it is and what was expected.

A :class:`SpecError` holds one or more :class:`Problem` records.  Each names the
file, the line and column (when the spec came from text), the field path inside
the spec (``layers[2].kernel_size``), what is wrong, and optionally a hint.  The
CLI prints them and exits with code 2; nothing above this module ever shows a
traceback for bad input.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathItem = str | int


def format_path(path: Sequence[PathItem]) -> str:
    """Render a field path the way a user would write it: ``layers[2].kernel_size``."""
    text = ""
    for item in path:
        if isinstance(item, int):
            text += f"[{item}]"
        else:
            text += f".{item}" if text else str(item)
    return text or "<root>"


@dataclass
class Problem:
    """One located problem in a spec."""

    message: str
    path: tuple[PathItem, ...] = ()
    hint: str | None = None
    file: str | None = None
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def location(self) -> str:
        """``file:line:col`` (the parts that are known), or an empty string."""
        parts = [self.file or "<spec>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        """The problem as one or two lines of text."""
        where = self.location()
        field_path = format_path(self.path) if self.path else None
        head = f"{where}: " + (f"{field_path}: " if field_path else "") + self.message
        if self.hint:
            head += f"\n    hint: {self.hint}"
        return head

    def to_dict(self) -> dict:
        """A JSON-friendly view of the problem."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": format_path(self.path) if self.path else None,
            "message": self.message,
            "hint": self.hint,
        }


class CnnspecError(Exception):
    """Base class of every error cnnspec raises on purpose."""

    exit_code = 2


class SpecError(CnnspecError):
    """A spec (or a file that should hold one) is not acceptable.

    Attributes:
        problems: every problem found, in document order where known.
    """

    def __init__(self, problems: Problem | Iterable[Problem]):
        if isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        """All problems, one block each."""
        return "\n".join(p.render() for p in self.problems)

    def with_source(self, file: str | None, locate) -> SpecError:
        """Fill in file, line and column from a source map (used by the loader)."""
        for problem in self.problems:
            if problem.file is None:
                problem.file = file
            if problem.line is None and locate is not None:
                position = locate(problem.path)
                if position is not None:
                    problem.line, problem.column = position
        return SpecError(self.problems)


class BackendUnavailable(CnnspecError):
    """A framework needed for this command is not installed."""


class OutputExistsError(CnnspecError):
    """Refusing to overwrite an existing file without ``--force``."""
