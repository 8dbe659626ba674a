"""Python source formatting shared by the emitters: literals and ruff-formatted statements.

Generated modules pass ``ruff format --check`` (line length 100) as emitted: strings are
double-quoted, and a statement that does not fit on one line is split the way the formatter
splits it (the arguments of its outermost call on one indented line, or one per line with
a trailing comma).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from cnnspec.errors import CnnspecError

LINE_LENGTH = 100


def string(text: str) -> str:
    """A double-quoted string literal of a plain word (identifiers, fixed keywords)."""
    if not isinstance(text, str) or any(c in text for c in '"\\\n'):
        raise CnnspecError(f"refusing to write {text!r} into generated source")
    return f'"{text}"'


def int_or_ints(values: Iterable[int]) -> str:
    """``3`` for a uniform (3, 3), else the tuple ``(3, 1)``; one-element tuples stay ``(3,)`` when asked."""
    items = [int(v) for v in values]
    if len(set(items)) == 1:
        return str(items[0])
    return "(" + ", ".join(map(str, items)) + ")"


def ints(values: Iterable[int]) -> str:
    """A tuple literal of ints: ``(3, 3)`` / ``(3,)``."""
    items = [str(int(v)) for v in values]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def number(value: float) -> str:
    """A float literal (``0.001``, ``1e-05``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CnnspecError(f"expected a number from the plan, got {value!r}")
    return repr(float(value))


def call(function: str, *args: str, **kwargs: str | None) -> str:
    """``function(arg, ..., key=value, ...)``; keyword arguments whose value is None are left out."""
    parts = list(args) + [f"{key}={value}" for key, value in kwargs.items() if value is not None]
    return f"{function}({', '.join(parts)})"


def statement(indent: str, target: str, expression: str, comment: str = "") -> list[str]:
    """``target = expression`` as the formatter lays it out, with an optional trailing comment.

    A comment that would push the line past the limit goes on its own line above.
    """
    line = f"{indent}{target} = {expression}"
    if len(line) <= LINE_LENGTH:
        if comment and len(line) + 4 + len(comment) <= LINE_LENGTH:
            return [f"{line}  # {comment}"]
        return ([f"{indent}# {comment}"] if comment else []) + [line]
    return ([f"{indent}# {comment}"] if comment else []) + fit(indent, f"{target} = ", expression)


def fit(indent: str, head: str, expression: str) -> list[str]:
    """``head + expression`` on one line, or split at its outermost call as the formatter does."""
    if len(indent + head + expression) <= LINE_LENGTH:
        return [indent + head + expression]
    tree = ast.parse(expression, mode="eval").body
    if isinstance(tree, ast.BinOp):
        return _split_operators(indent, head, expression, tree)
    if not isinstance(tree, ast.Call):
        return [f"{indent}{head}{expression}"]
    # The formatter splits the last call's brackets when what comes before them fits on the line
    # (``y = layers.X(...)(`` / ``    x`` / ``)``), else the call inside (``y = layers.X(`` ... ``)(x)``).
    outer_head = f"{indent}{head}{_segment(expression, tree.func)}("
    if not isinstance(tree.func, ast.Call) or len(outer_head) <= LINE_LENGTH:
        return _split_call(
            indent, f"{head}{_segment(expression, tree.func)}(", expression, tree, ")"
        )
    inner = tree.func
    tail = expression[_offset(expression, inner.end_lineno, inner.end_col_offset) - 1 :]
    return _split_call(
        indent, f"{head}{_segment(expression, inner.func)}(", expression, inner, tail
    )


_OPERATORS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _split_operators(indent: str, head: str, expression: str, node: ast.BinOp) -> list[str]:
    """A long ``a * b`` in parentheses, on one inner line or one operand a line (``+ b``), as the formatter does."""
    inner = indent + "    "
    if len(inner + expression) <= LINE_LENGTH:
        return [f"{indent}{head}(", inner + expression, f"{indent})"]
    operands: list[str] = []
    current: ast.expr = node
    while isinstance(current, ast.BinOp) and type(current.op) is type(node.op):
        operands.insert(0, f"{_OPERATORS[type(current.op)]} {_operand(expression, current.right)}")
        current = current.left
    operands.insert(0, _operand(expression, current))
    return [f"{indent}{head}(", *(inner + operand for operand in operands), f"{indent})"]


def _operand(expression: str, node: ast.expr) -> str:
    text = _segment(expression, node)
    return f"({text})" if isinstance(node, ast.BinOp) else text


def _split_call(indent: str, opening: str, expression: str, node: ast.Call, tail: str) -> list[str]:
    pieces = [_segment(expression, a) for a in node.args]
    pieces += [
        f"{k.arg}={_segment(expression, k.value)}"
        if k.arg
        else f"**{_segment(expression, k.value)}"
        for k in node.keywords
    ]
    inner = indent + "    "
    one_line = inner + ", ".join(pieces)
    if len(one_line) <= LINE_LENGTH:
        return [f"{indent}{opening}", one_line, f"{indent}{tail}"]
    values = list(node.args) + [k.value for k in node.keywords]
    lines = [f"{indent}{opening}"]
    for piece, value in zip(pieces, values):
        if len(f"{inner}{piece},") > LINE_LENGTH and isinstance(value, (ast.List, ast.Tuple)):
            # A literal too long for the line: one element a line, as the formatter lays it out.
            brackets = "[]" if isinstance(value, ast.List) else "()"
            key = piece[: len(piece) - len(_segment(expression, value))]
            lines.append(f"{inner}{key}{brackets[0]}")
            lines += [f"{inner}    {_segment(expression, element)}," for element in value.elts]
            lines.append(f"{inner}{brackets[1]},")
        else:
            lines.append(f"{inner}{piece},")
    return [*lines, f"{indent}{tail}"]


def _offset(text: str, line: int | None, column: int | None) -> int:
    lines = text.split("\n")
    return sum(len(x) + 1 for x in lines[: (line or 1) - 1]) + (column or 0)


def _segment(text: str, node: ast.AST) -> str:
    segment = ast.get_source_segment(text, node)
    if segment is None:  # pragma: no cover - every node of a parsed expression has a position
        raise CnnspecError("cannot format generated source")
    return segment
