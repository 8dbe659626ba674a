"""What a layer definition writes into the generated PyTorch module, and the formatting it uses.

Only checked identifiers and numbers reach the generated source: every value goes
through one of the formatters here.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cnnspec.errors import CnnspecError
from cnnspec.targets import pysource as P

if TYPE_CHECKING:  # pragma: no cover
    from cnnspec.engine.plan import LayerPlan, Pads

# Inline ``activation:`` of conv/dense -> a function applied to the layer expression.
INLINE_ACTIVATIONS = {
    "relu": "F.relu({})",
    "relu6": "F.relu6({})",
    "sigmoid": "torch.sigmoid({})",
    "tanh": "torch.tanh({})",
    "softmax": "F.softmax({}, dim=1)",
    "log_softmax": "F.log_softmax({}, dim=1)",
    "silu": "F.silu({})",
    "gelu": "F.gelu({})",
    "hard_swish": "F.hardswish({})",
    "hard_sigmoid": "F.hardsigmoid({})",
}


@dataclass
class LayerCode:
    """What one spec layer contributes to the generated class.

    Attributes:
        modules: ``(attribute name, constructor expression)`` pairs for ``__init__``, in order.
        expression: the Python expression computing the layer's output from its inputs.
        helpers: names of helper classes (see ``targets/torch/helpers.py``) the modules use.
        needs_math: the constructors use ``math`` (``-math.inf``).
        note: a short comment written above the layer's modules in ``__init__``.
    """

    modules: list[tuple[str, str]] = field(default_factory=list)
    expression: str = ""
    helpers: set[str] = field(default_factory=set)
    needs_math: bool = False
    note: str = ""


def identifier(name: str) -> str:
    """``name`` if it is a plain, non-keyword Python identifier; raise otherwise."""
    if (
        not isinstance(name, str)
        or not name.isidentifier()
        or keyword.iskeyword(name)
        or name.startswith("__")
    ):
        raise CnnspecError(
            f"'{name!s}' cannot be written into generated source: it is not a plain Python identifier"
        )
    return name


def int_text(value: Any) -> str:
    """An int from the plan as source text."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise CnnspecError(f"expected an int from the plan, got {value!r}")
    return repr(int(value))


def float_text(value: Any) -> str:
    """A number from the plan as a float literal."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CnnspecError(f"expected a number from the plan, got {value!r}")
    return repr(float(value))


def bool_text(value: Any) -> str:
    """``True`` / ``False``."""
    return "True" if bool(value) else "False"


def ints_text(values: Iterable[int]) -> str:
    """A tuple literal of ints: ``(3, 3)`` / ``(3,)``."""
    items = [int_text(v) for v in values]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def pairs_text(pads: Sequence[tuple[int, int]]) -> str:
    """Per-dim ``(before, after)`` pairs as a nested tuple literal."""
    return "(" + ", ".join(ints_text(pair) for pair in pads) + ("," if len(pads) == 1 else "") + ")"


def torch_pad_order(pads: Pads, extra: Sequence[int] | None = None) -> str:
    """(before, after) per dim, first dim first -> the flat, last-dim-first tuple nn.*Pad*d / F.pad take."""
    extra = extra or (0,) * len(pads)
    flat: list[int] = []
    for (before, after), more in reversed(list(zip(pads, extra))):
        flat.extend((before, after + more))
    return ints_text(flat)


def option(values: Iterable[int] | None, default: int = 1) -> str | None:
    """A per-dim argument as an int when uniform, or None when every value is the framework's ``default``."""
    items = tuple(int(v) for v in values or ())
    if all(v == default for v in items):
        return None
    return P.int_or_ints(items)


def pad_module(
    rank: int, pads: Pads, extra: Sequence[int] | None = None, value: str | None = None
) -> str:
    """``nn.ZeroPad{rank}d(...)`` (or ``nn.ConstantPad{rank}d(..., value)``) for (before, after) per dim."""
    order = torch_pad_order(pads, extra)
    flat = {int(v) for v in order.strip("(),").split(", ")}
    amount = str(flat.pop()) if len(flat) == 1 else order
    if value is None:
        return f"nn.ZeroPad{rank}d({amount})"
    return f"nn.ConstantPad{rank}d({amount}, {value})"


def spatial_rank(layer: LayerPlan) -> int:
    """Spatial dims of the layer's (first) input."""
    return len(layer.input_shape) - 1


def is_symmetric(pads: Pads) -> bool:
    """Whether every dim pads as much before as after."""
    return all(before == after for before, after in pads)


def with_activation(layer: LayerPlan, expression: str) -> str:
    """``expression`` wrapped in the layer's inline activation, if any."""
    activation = layer.activation
    if activation is None:
        return expression
    if activation not in INLINE_ACTIVATIONS:
        raise CnnspecError(
            f"layer '{layer.name}': no PyTorch mapping for inline activation '{activation}'"
        )
    return INLINE_ACTIVATIONS[activation].format(expression)


def attr(name: str, role: str | None = None) -> str:
    """The module attribute of a spec layer (``conv1``) or of one of its helpers (``conv1_pad``)."""
    return identifier(name if role is None else f"{name}_{role}")


def use_helper(code: LayerCode, helper: str) -> str:
    """Record that the layer uses helper class ``helper`` (targets/torch/helpers.py); returns its name."""
    code.helpers.add(helper)
    return helper


def single_module(
    layer: LayerPlan, inputs: list[str], constructor: str, note: str = ""
) -> LayerCode:
    """A layer that is one module named like the spec layer, applied to its input."""
    name = attr(layer.name)
    return LayerCode(
        modules=[(name, constructor)], expression=f"self.{name}({inputs[0]})", note=note
    )


def same_pad_module(code: LayerCode, layer: LayerPlan, value: str | None = None) -> str:
    """A ``SamePad`` helper: TF SAME padding worked out per input (the plan's pads hold at one size only)."""
    dilation = layer.dilation or ()
    return P.call(
        use_helper(code, "SamePad"),
        ints_text(layer.kernel_size or ()),
        ints_text(layer.stride or ()),
        dilation=ints_text(dilation) if any(d != 1 for d in dilation) else None,
        value=value,
    )
