"""What a layer definition writes into the generated Keras module, and the formatting it uses.

A definition's ``keras`` hook returns functional-API lines (``y = layers.X(...)(x)``);
:class:`EmitContext` hands out variable and helper-layer names and records the helper
classes (``targets/keras/helpers.py``) the module must include.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from cnnspec.engine import shapes as S
from cnnspec.errors import CnnspecError
from cnnspec.targets import pysource as P

if TYPE_CHECKING:  # pragma: no cover
    from cnnspec.engine.plan import LayerPlan, Plan

INPUT_VARIABLE = "inputs"

# Spec activation -> Keras 3 activation name; each checked numerically against the spec's definition
# (hard_sigmoid = clip(x/6 + 1/2, 0, 1) and hard_silu = x * hard_sigmoid(x) in Keras 3).  GELU is emitted as a
# small registered function instead: Keras' "gelu" lowers to Erfc, which tf2onnx cannot export.
KERAS_ACTIVATIONS = {
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "silu": "silu",
    "hard_swish": "hard_silu",
    "hard_sigmoid": "hard_sigmoid",
    "mish": "mish",
    "softplus": "softplus",
    "selu": "selu",
}

RANK_SUFFIX = {1: "1D", 2: "2D", 3: "3D"}


class EmitContext:
    """What the layer emitters share: variable names, helper-layer names, helper classes used."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.taken: set[str] = {layer.name for layer in plan.layers} | {INPUT_VARIABLE, "input"}
        self.helpers: list[str] = []

    def variable(self, name: str) -> str:
        """The Python variable holding the output of layer (or model input) ``name``."""
        return INPUT_VARIABLE if name == "input" else identifier(name)

    def helper_name(self, layer: LayerPlan, role: str) -> str:
        """A fresh ``<name>_<role>`` layer name (numbered if a spec layer already uses it)."""
        candidate = f"{layer.name}_{role}"
        number = 1
        while candidate in self.taken:
            number += 1
            candidate = f"{layer.name}_{role}{number}"
        self.taken.add(candidate)
        return identifier(candidate)

    def use(self, helper: str) -> str:
        """Record that the module needs helper class ``helper``; returns its name."""
        if helper not in self.helpers:
            self.helpers.append(helper)
        return helper


def identifier(name: str) -> str:
    """``name`` if it is a Python identifier; raise otherwise."""
    if not isinstance(name, str) or not name.isidentifier():
        raise CnnspecError(
            f"refusing to write {name!r} into generated source: not a Python identifier"
        )
    return name


def quoted(name: str) -> str:
    """A checked identifier as a (double-quoted) Python string literal."""
    return P.string(identifier(name))


def option(values: Iterable[int] | None, default: int = 1) -> str | None:
    """A per-dim argument as an int when uniform, or None when every value is the framework's ``default``."""
    items = tuple(int(v) for v in values or ())
    if all(v == default for v in items):
        return None
    return P.int_or_ints(items)


def is_keras_same(layer: LayerPlan) -> bool:
    """Whether the plan's padding is exactly what Keras' padding="same" (TF SAME_UPPER) applies.

    Never with unequal strides: without oneDNN, TensorFlow's CPU kernels compute a "same"
    convolution with strides (1, 1, 3) wrongly (silently), so those pad explicitly.
    """
    if layer.stride is not None and len(set(layer.stride)) > 1:
        return False
    if layer.padding_mode == "same":
        return True
    if layer.padding is None or layer.kernel_size is None or layer.stride is None:
        return False
    if any(layer.strided_open_axes):
        return False  # explicit padding that is SAME's at the planning size only
    dilation = layer.dilation or (1,) * len(layer.kernel_size)
    same = tuple(
        S.same_padding(n, k, s, d)
        for n, k, s, d in zip(layer.input_shape[1:], layer.kernel_size, layer.stride, dilation)
    )
    return tuple(tuple(p) for p in layer.padding) == same and any(b or a for b, a in layer.padding)


def padding_value(pads: Sequence[tuple[int, int]]) -> str:
    """A ZeroPadding*D ``padding`` argument: an int, one int per dim, or (before, after) pairs."""
    if len({v for pair in pads for v in pair}) == 1:
        return str(int(pads[0][0]))
    if len(pads) == 1:
        return f"({int(pads[0][0])}, {int(pads[0][1])})"
    if all(b == a for b, a in pads):
        return "(" + ", ".join(str(int(b)) for b, _ in pads) + ")"
    return pairs_text(pads)


def ints_text(values: Iterable[int]) -> str:
    """A tuple of ints as source text."""
    return repr(tuple(int(v) for v in values))


def pairs_text(pads: Sequence[tuple[int, int]]) -> str:
    """Per-dim (before, after) pairs as source text."""
    return repr(tuple((int(b), int(a)) for b, a in pads))


def float_text(value: Any) -> str:
    """A number as a float literal."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CnnspecError(f"expected a number from the plan, got {value!r}")
    return repr(float(value))


def call(layer_expr: str, target: str, source: str) -> str:
    """``target = layer_expr(source)``."""
    return f"{target} = {layer_expr}({source})"


def activation_value(layer: LayerPlan, ctx: EmitContext) -> str | None:
    """The ``activation=`` value for the layer's inline activation (None if none)."""
    act = layer.activation
    if act is None:
        return None
    if act == "gelu":
        return ctx.use("gelu_erf")
    if act not in KERAS_ACTIVATIONS:
        raise CnnspecError(f"layer '{layer.name}': no Keras mapping for activation '{act}'")
    return P.string(KERAS_ACTIVATIONS[act])


def activation_arg(layer: LayerPlan, ctx: EmitContext) -> str:
    """``, activation=...`` for the layer's inline activation (empty if none)."""
    value = activation_value(layer, ctx)
    return "" if value is None else f", activation={value}"


def same_padding_lines(
    layer: LayerPlan, ctx: EmitContext, source: str, value: str | None = None
) -> tuple[list[str], str]:
    """A ``SamePadding`` helper <name>_pad: 'same' padding worked out per input (it depends on the size)."""
    pad_name = ctx.helper_name(layer, "pad")
    dilation = layer.dilation or ()
    expression = P.call(
        ctx.use("SamePadding"),
        ints_text(layer.kernel_size or ()),
        ints_text(layer.stride or ()),
        dilation_rate=ints_text(dilation) if any(d != 1 for d in dilation) else None,
        value=value,
        name=quoted(pad_name),
    )
    return [call(expression, pad_name, source)], pad_name


def zero_padding_lines(layer: LayerPlan, ctx: EmitContext, source: str) -> tuple[list[str], str]:
    """ZeroPadding{N}D <name>_pad when the plan pads; returns (lines, variable to read next).

    'same' padding that depends on the input size is a ``SamePadding`` helper instead.
    """
    if layer.padding_varies:
        return same_padding_lines(layer, ctx, source)
    pads = layer.padding or ()
    if not any(b or a for b, a in pads):
        return [], source
    rank = len(pads)
    pad_name = ctx.helper_name(layer, "pad")
    line = call(
        f"layers.ZeroPadding{RANK_SUFFIX[rank]}({padding_value(pads)}, name={quoted(pad_name)})",
        pad_name,
        source,
    )
    return [line], pad_name


def single_input(layer: LayerPlan, ctx: EmitContext) -> str:
    """The variable of the layer's one input."""
    return ctx.variable(layer.inputs[0])


def single_layer(layer: LayerPlan, ctx: EmitContext, expression: str) -> list[str]:
    """``<name> = <expression>(<input>)``: a layer that is one Keras layer on one input."""
    return [call(expression, ctx.variable(layer.name), single_input(layer, ctx))]
