"""The arithmetic ``explain`` prints, built from a LayerPlan's numbers.

Every formula is a chain ``expression = value`` (or ``a = b = c``) using · for ×, − for minus,
⌊ ⌋ / ⌈ ⌉ for floor / ceiling and thousands commas; each one evaluates to its printed result
(tests parse and evaluate them).  Words never appear inside a formula.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import NamedTuple

from cnnspec.engine import shapes as S
from cnnspec.engine.plan import AXIS_NAMES, LayerPlan, Pads

# A printed formula: numbers (with brackets) joined by operators, e.g. ⌊(28 + 0 − 3) / 1⌋ + 1 = 26.
_NUMBER = r"[⌊⌈(]*−?\d+(?:,\d{3})*(?:\.\d+)?[⌋⌉)]*"  # a scale factor may be a decimal (⌊3·0.5⌋ = 1)
FORMULA = re.compile(rf"{_NUMBER}(?:[ ]*[·+−/=][ ]*{_NUMBER})+")


def axis_names(spatial_rank: int) -> tuple[str, ...]:
    """Names of the spatial axes: L; H, W; D, H, W."""
    return AXIS_NAMES.get(spatial_rank, tuple(f"S{i}" for i in range(spatial_rank)))


def num(value: int) -> str:
    """An int with thousands commas and a real minus sign."""
    return f"{value:,}".replace("-", "−")


class Window(NamedTuple):
    """The per-axis numbers of a sliding-window layer, none of them missing."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Pads


def window(layer: LayerPlan) -> Window:
    """Kernel, stride, dilation (1 where the plan has none) and padding of a conv, pool or transposed conv."""
    if layer.kernel_size is None or layer.stride is None or layer.padding is None:
        raise ValueError(f"layer {layer.name!r} ({layer.type}) has no sliding window")
    dilation = layer.dilation or (1,) * len(layer.kernel_size)
    return Window(layer.kernel_size, layer.stride, dilation, layer.padding)


def pads_of(layer: LayerPlan) -> Pads:
    """Per-axis (before, after) padding of a layer that pads (zero_pad, windowed layers)."""
    if layer.padding is None:
        raise ValueError(f"layer {layer.name!r} ({layer.type}) has no padding")
    return layer.padding


@dataclass(frozen=True)
class AxisDetail:
    """One spatial axis of a windowed layer: the size formula and how its padding came about."""

    axis: str
    size: str  # the output-size formula, e.g. "⌈32 / 2⌉ = 16"
    before: int = 0
    after: int = 0
    same_total: str | None = None  # 'same': "(16 − 1)·2 + 3 − 32 = 1"
    same_total_value: int = 0
    dilation: str | None = None  # "2·(3 − 1) + 1 = 5"
    ceil_dropped: bool = False
    ceil_extra: int = 0
    full: str | None = None  # transposed: "(14 − 1)·2 + 3 = 29"
    full_value: int = 0
    crop_formula: str | None = None  # transposed 'same': "16 − 14 = 2"
    extend: int = 0  # transposed: cells added at the end (output_padding or stride > kernel)


def _dilation(k: int, d: int) -> str | None:
    return None if d == 1 else f"{d}·({k} − 1) + 1 = {S.effective_kernel(k, d)}"


def window_axes(layer: LayerPlan) -> list[AxisDetail]:
    """Per-axis arithmetic of a convolution or pooling layer (forward sliding window)."""
    names = axis_names(layer.spatial_rank)
    details = []
    kernel, stride, dilation, pads = window(layer)
    is_pool = layer.family == "pool"
    ceil_mode = bool(is_pool and getattr(layer.spec, "ceil_mode", False))
    for i, (n, k, s, d, (b, a), out) in enumerate(
        zip(layer.input_shape[1:], kernel, stride, dilation, pads, layer.output_shape[1:])
    ):
        dk = S.effective_kernel(k, d)
        extra = (layer.ceil_extra or (0,) * len(names))[i] if is_pool else 0
        if layer.padding_mode == "same":
            raw = (out - 1) * s + dk - n
            details.append(
                AxisDetail(
                    names[i],
                    f"⌈{n} / {s}⌉ = {out}",
                    b,
                    a,
                    f"({out} − 1)·{s} + {dk} − {n} = {num(raw)}",
                    raw,
                    _dilation(k, d),
                )
            )
            continue
        if ceil_mode:
            rounded = S.ceil_div(n + b + a - dk, s) + 1
            size = (
                f"⌈({n} + {b + a} − {dk}) / {s}⌉ + 1"
                + (" − 1" if rounded != out else "")
                + f" = {out}"
            )
            details.append(
                AxisDetail(
                    names[i],
                    size,
                    b,
                    a,
                    dilation=_dilation(k, d),
                    ceil_dropped=rounded != out,
                    ceil_extra=extra,
                )
            )
        else:
            size = f"⌊({n} + {b + a} − {dk}) / {s}⌋ + 1 = {num(out)}"
            details.append(AxisDetail(names[i], size, b, a, dilation=_dilation(k, d)))
    return details


def transpose_axes(layer: LayerPlan) -> list[AxisDetail]:
    """Per-axis arithmetic of a transposed convolution: the full footprint, then crop / extend."""
    names = axis_names(layer.spatial_rank)
    details = []
    kernel, stride, dilation, pads = window(layer)
    output_padding = layer.output_padding or (0,) * len(names)
    for i, (n, k, s, d, (b, a), op, out) in enumerate(
        zip(
            layer.input_shape[1:],
            kernel,
            stride,
            dilation,
            pads,
            output_padding,
            layer.output_shape[1:],
        )
    ):
        dk = S.effective_kernel(k, d)
        full_value = (n - 1) * s + dk
        full = f"({n} − 1)·{s} + {dk} = {num(full_value)}"
        extend = max(-a, 0) if layer.padding_mode != "explicit" else op
        if layer.padding_mode == "same":
            size = f"{n}·{s} = {num(out)}"
            crop = (
                f"{num(full_value)} − {num(out)} = {num(full_value - out)}"
                if full_value >= out
                else None
            )
            details.append(
                AxisDetail(
                    names[i],
                    size,
                    b,
                    max(a, 0),
                    dilation=_dilation(k, d),
                    full=full,
                    full_value=full_value,
                    crop_formula=crop,
                    extend=extend,
                )
            )
        elif layer.padding_mode == "valid":
            size = f"({n} − 1)·{s} + {dk}" + (f" + {extend}" if extend else "") + f" = {num(out)}"
            details.append(
                AxisDetail(
                    names[i],
                    size,
                    0,
                    0,
                    dilation=_dilation(k, d),
                    full=full,
                    full_value=full_value,
                    extend=extend,
                )
            )
        else:
            p = b
            size = f"({n} − 1)·{s} + {dk} − 2·{p}" + (f" + {op}" if op else "") + f" = {num(out)}"
            details.append(
                AxisDetail(
                    names[i],
                    size,
                    p,
                    p,
                    dilation=_dilation(k, d),
                    full=full,
                    full_value=full_value,
                    extend=op,
                )
            )
    return details


def simple_axes(layer: LayerPlan) -> list[AxisDetail]:
    """Per-axis arithmetic of upsample and zero_pad."""
    names = axis_names(layer.spatial_rank)
    details = []
    if layer.family == "upsample":
        factors = layer.kernel_size or (1,) * len(names)
        for name, n, f, out in zip(names, layer.input_shape[1:], factors, layer.output_shape[1:]):
            details.append(AxisDetail(name, f"{n}·{f} = {num(out)}"))
    else:
        for name, n, (b, a), out in zip(
            names, layer.input_shape[1:], pads_of(layer), layer.output_shape[1:]
        ):
            details.append(AxisDetail(name, f"{n} + {b} + {a} = {num(out)}", b, a))
    return details


@dataclass(frozen=True)
class ParamTerm:
    """One addend of the parameter count: its arithmetic, value and what it counts."""

    formula: str
    value: int
    what: str
    trainable: bool


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def _term(factors: list[int | str], what: str, trainable: bool = True) -> ParamTerm:
    parts = [num(f) if isinstance(f, int) else f for f in factors]
    value = 1
    for f in factors:
        value *= f if isinstance(f, int) else eval_formula(f)
    return ParamTerm("·".join(parts), int(value), what, trainable)


def param_terms(layer: LayerPlan) -> list[ParamTerm]:
    """The layer's parameters as addends, in the order the material writes them (k·k·in·out + out)."""
    terms: list[ParamTerm] = []
    family = layer.family
    channels = layer.input_shape[0]
    for tensor in layer.params:
        shape = tensor.shape
        if len(shape) <= 1:  # a vector, or a scalar such as Keras' normalization count
            size = math.prod(shape)
            terms.append(ParamTerm(num(size), size, tensor.name, tensor.trainable))
            continue
        out, inner, kernel = shape[0], shape[1], list(shape[2:])
        if family == "conv_transpose":
            terms.append(_term([*kernel, out, inner], tensor.name, tensor.trainable))
        elif tensor.name == "depthwise_kernel":
            multiplier = out // channels if channels else 1
            terms.append(_term([*kernel, channels, multiplier], tensor.name, tensor.trainable))
        elif tensor.name == "pointwise_kernel":
            terms.append(_term([inner, out], tensor.name, tensor.trainable))
        elif family == "conv" and getattr(layer.spec, "groups", 1) > 1:
            groups = layer.spec.groups
            terms.append(
                _term([*kernel, f"({channels}/{groups})", out], tensor.name, tensor.trainable)
            )
        else:
            terms.append(_term([*kernel, inner, out], tensor.name, tensor.trainable))
    return _merge_equal_vectors(terms)


def _merge_equal_vectors(terms: list[ParamTerm]) -> list[ParamTerm]:
    """γ, β of size c become one addend 2·c (and the two moving statistics another); biases stay apart."""
    groups: list[list[ParamTerm]] = []
    for term in terms:
        vector = term.formula == num(term.value) and term.what != "bias"
        last = groups[-1] if groups else None
        if (
            vector
            and last
            and last[0].formula == term.formula
            and last[0].trainable == term.trainable
            and last[0].what != "bias"
            and last[0].formula == num(last[0].value)
        ):
            last.append(term)
        else:
            groups.append([term])
    merged = []
    for group in groups:
        if len(group) == 1:
            merged.append(group[0])
        else:
            merged.append(
                ParamTerm(
                    f"{len(group)}·{group[0].formula}",
                    sum(t.value for t in group),
                    ", ".join(t.what for t in group),
                    group[0].trainable,
                )
            )
    return merged


def param_chain(terms: list[ParamTerm]) -> str:
    """``3·3·128·64 + 64 = 73,728 + 64 = 73,792``; a single factor-free term is just its value."""
    if not terms:
        return ""
    total = sum(t.value for t in terms)
    left = " + ".join(t.formula for t in terms)
    values = " + ".join(num(t.value) for t in terms)
    if len(terms) == 1:
        return left if left == num(total) else f"{left} = {num(total)}"
    if values == left:
        return f"{left} = {num(total)}"
    return f"{left} = {values} = {num(total)}"


def eval_formula(expression: str):
    """Evaluate one side of a printed formula exactly (fractions), e.g. ``⌊(28 + 0 − 3) / 1⌋ + 1``."""
    import re
    from fractions import Fraction

    text = re.sub(r"(?<=\d),(?=\d{3})", "", expression)
    text = text.replace("·", "*").replace("×", "*").replace("−", "-")
    text = text.replace("⌊", "_floor(").replace("⌋", ")").replace("⌈", "_ceil(").replace("⌉", ")")

    def exact(match: re.Match[str]) -> str:
        value = Fraction(match.group(0))
        return f"_F({value.numerator},{value.denominator})"

    text = re.sub(r"\d+(?:\.\d+)?", exact, text)
    if re.search(r"[^0-9_a-zA-Z()+\-*/ .,]", text) or re.search(
        r"[a-zA-Z]", re.sub(r"_(F|floor|ceil)\(", "(", text)
    ):
        raise ValueError(f"not a formula: {expression!r}")
    import math

    namespace = {"_F": Fraction, "_floor": math.floor, "_ceil": math.ceil, "__builtins__": {}}
    return eval(text, namespace)
