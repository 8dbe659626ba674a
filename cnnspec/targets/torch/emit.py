"""Plan -> stand-alone PyTorch source (one ``nn.Module``, channels first).

The generated module imports only ``torch`` (and ``math`` when a max pool pads with
``-inf``) and defines one ``nn.Module`` subclass named ``class_name(plan.name)``:

* ``__init__(self)`` creates one attribute per spec layer that maps onto a module, named
  exactly like the spec layer (``self.conv1 = nn.Conv2d(1, 32, kernel_size=(3, 3), ...)``,
  every argument written out).  Modules that exist only to reproduce the plan's semantics
  are called ``<name>_<role>`` (``conv1_pad``); a separable convolution is
  ``<name>_depthwise`` + ``<name>_pointwise``.
* ``forward(self, x)`` is the straight-line computation a person would write (the running
  value is ``x``; a layer output read again later keeps its own name).
* ``forward_layers(self, x)`` is the same computation with every spec layer's output kept
  under its spec name and returned as a dict, in spec order.

Only the resolved plan is read (per-side padding, ``ceil_extra``, ``count_include_pad``,
transposed-conv crops); no padding is recomputed here.  The mapping:

* Convolutions keep symmetric padding inside the conv; asymmetric padding (``same`` with
  stride > 1 on even sizes, or explicit pairs) becomes a ``nn.ZeroPad*d`` helper in front
  of a ``padding=0`` conv.  ``padding="same"`` is never used (PyTorch refuses it with
  stride > 1).
* Transposed convolutions: ``padding`` + ``output_padding`` where PyTorch's symmetric crop
  fits the plan's crop, plus a slice for the rest (TF's odd cell cropped at the end).
* Max pools use PyTorch's own ``-inf`` padding when it is symmetric and at most half the
  window, else a ``nn.ConstantPad*d(-inf)`` helper (covering the ceil-mode overhang too).
* Average pools use ``nn.AvgPool*d`` wherever PyTorch's divisor rule is the plan's; else
  the ``CountedAvgPool*d`` helper divides the zero-padded window mean by the fraction of
  counted cells (the same pool over a one-channel mask).
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field
from typing import Callable

from cnnspec.targets.build import class_name
from cnnspec.errors import CnnspecError
from cnnspec.engine.plan import LayerPlan, Plan

INPUT_VARIABLE = "x"

# Inline ``activation:`` of conv/dense -> a function applied to the layer expression.
INLINE_ACTIVATIONS = {
    "relu": "F.relu({})",
    "relu6": "F.relu6({})",
    "sigmoid": "torch.sigmoid({})",
    "tanh": "torch.tanh({})",
    "softmax": "F.softmax({}, dim=1)",
    "silu": "F.silu({})",
    "gelu": "F.gelu({})",
    "hard_swish": "F.hardswish({})",
    "hard_sigmoid": "F.hardsigmoid({})",
}

# Parameter-free activation layers -> their nn module.
ACTIVATION_MODULES = {
    "relu": "nn.ReLU()",
    "relu6": "nn.ReLU6()",
    "sigmoid": "nn.Sigmoid()",
    "tanh": "nn.Tanh()",
    "softmax": "nn.Softmax(dim=1)",
    "silu": "nn.SiLU()",
    "hard_swish": "nn.Hardswish()",
    "hard_sigmoid": "nn.Hardsigmoid()",
}

_LAYOUTS = {0: "NF", 1: "NCL", 2: "NCHW", 3: "NCDHW"}

# Helper module classes, emitted only when a model uses them; ``{rank}`` is the spatial rank.
_COUNTED_AVG_POOL = '''
class CountedAvgPool{rank}d(nn.Module):
    """Average pooling that divides each window sum by the number of *counted* cells.

    The input is zero-padded by ``padding`` ((before, after) per spatial dim) and by
    ``overhang`` more cells at the end (ceil-mode windows running past the padding).
    Real cells always count; the declared padding counts only when ``count_padding`` is
    true; the overhang never counts.  The counted fraction of each window is the same
    average pool applied to a one-channel mask (1 = counted), so no state is kept.
    """

    def __init__(self, kernel_size, stride, padding, overhang, count_padding):
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        # F.pad takes (before, after) pairs starting from the LAST dim.
        self.declared = tuple(v for before, after in reversed(padding) for v in (before, after))
        self.overhang = tuple(v for extra in reversed(overhang) for v in (0, extra))
        self.padding_value = 1.0 if count_padding else 0.0

    def forward(self, x):
        window_mean = F.avg_pool{rank}d(F.pad(F.pad(x, self.declared), self.overhang), self.kernel_size, self.stride)
        mask = F.pad(torch.ones_like(x[:1, :1]), self.declared, value=self.padding_value)
        counted_fraction = F.avg_pool{rank}d(F.pad(mask, self.overhang), self.kernel_size, self.stride)
        return window_mean / counted_fraction
'''

HELPER_SOURCES: dict[str, str] = {f"CountedAvgPool{rank}d": _COUNTED_AVG_POOL.replace("{rank}", str(rank)) for rank in (1, 2, 3)}


@dataclass
class LayerCode:
    """What one spec layer contributes to the generated class.

    Attributes:
        modules: ``(attribute name, constructor expression)`` pairs for ``__init__``, in order.
        expression: the Python expression computing the layer's output from its inputs.
        helpers: names of helper classes (keys of ``HELPER_SOURCES``) the modules use.
        needs_math: the constructors use ``math`` (``-math.inf``).
        note: a short comment written above the layer's modules in ``__init__``.
    """

    modules: list[tuple[str, str]] = field(default_factory=list)
    expression: str = ""
    helpers: set[str] = field(default_factory=set)
    needs_math: bool = False
    note: str = ""


Emitter = Callable[[LayerPlan, "list[str]"], LayerCode]


# --------------------------------------------------------------------------------------------
# Formatting: only checked identifiers and numbers reach the source
# --------------------------------------------------------------------------------------------


def _identifier(name: str) -> str:
    """``name`` if it is a plain, non-keyword Python identifier; raise otherwise."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
        raise CnnspecError(f"'{name!s}' cannot be written into generated source: it is not a plain Python identifier")
    return name


def _int(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CnnspecError(f"expected an int from the plan, got {value!r}")
    return repr(int(value))


def _float(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CnnspecError(f"expected a number from the plan, got {value!r}")
    return repr(float(value))


def _bool(value) -> str:
    return "True" if bool(value) else "False"


def _ints(values) -> str:
    """A tuple literal of ints: ``(3, 3)`` / ``(3,)``."""
    items = [_int(v) for v in values]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _pairs(pads) -> str:
    """Per-dim ``(before, after)`` pairs as a nested tuple literal."""
    return "(" + ", ".join(_ints(pair) for pair in pads) + ("," if len(pads) == 1 else "") + ")"


def _torch_pad_order(pads, extra=None) -> str:
    """(before, after) per dim, first dim first -> the flat, last-dim-first tuple nn.*Pad*d / F.pad take."""
    extra = extra or (0,) * len(pads)
    flat: list[int] = []
    for (before, after), more in reversed(list(zip(pads, extra))):
        flat.extend((before, after + more))
    return _ints(flat)


def _spatial_rank(layer: LayerPlan) -> int:
    return len(layer.input_shape) - 1


def _is_symmetric(pads) -> bool:
    return all(before == after for before, after in pads)


def _with_activation(layer: LayerPlan, expression: str) -> str:
    activation = layer.activation
    if activation is None:
        return expression
    if activation not in INLINE_ACTIVATIONS:
        raise CnnspecError(f"layer '{layer.name}': no PyTorch mapping for inline activation '{activation}'")
    return INLINE_ACTIVATIONS[activation].format(expression)


def _attr(name: str, role: str | None = None) -> str:
    return _identifier(name if role is None else f"{name}_{role}")


# --------------------------------------------------------------------------------------------
# Emitters, one per layer family
# --------------------------------------------------------------------------------------------


def _conv_module(rank: int, in_channels: int, out_channels: int, kernel, stride, padding, dilation, groups: int, bias: bool) -> str:
    return (
        f"nn.Conv{rank}d({_int(in_channels)}, {_int(out_channels)}, kernel_size={_ints(kernel)}, stride={_ints(stride)}, "
        f"padding={_ints(padding)}, dilation={_ints(dilation)}, groups={_int(groups)}, bias={_bool(bias)})"
    )


def _padded_conv(layer: LayerPlan, code: LayerCode, source: str) -> tuple[str, tuple[int, ...]]:
    """Symmetric padding stays in the conv; asymmetric padding gets a ``<name>_pad`` helper.

    Returns:
        The (possibly padded) input expression and the conv's own ``padding`` argument.
    """
    rank = _spatial_rank(layer)
    if _is_symmetric(layer.padding):
        return source, tuple(before for before, _ in layer.padding)
    pad = _attr(layer.name, "pad")
    code.modules.append((pad, f"nn.ZeroPad{rank}d({_torch_pad_order(layer.padding)})"))
    code.note += f"; asymmetric padding {_pairs(layer.padding)} applied by {pad}"
    return f"self.{pad}({source})", (0,) * rank


def emit_conv(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """conv1d / conv2d / conv3d (groups, dilation, any padding)."""
    spec = layer.spec
    code = LayerCode()
    source, padding = _padded_conv(layer, code, inputs[0])
    name = _attr(layer.name)
    module = _conv_module(
        _spatial_rank(layer), layer.input_shape[0], spec.filters, layer.kernel_size, layer.stride, padding,
        layer.dilation, spec.groups, spec.bias,
    )
    code.modules.append((name, module))
    code.expression = _with_activation(layer, f"self.{name}({source})")
    return code


def emit_depthwise_conv(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """depthwise_conv2d: a conv with groups = in_channels and in_channels * depth_multiplier outputs."""
    spec = layer.spec
    code = LayerCode()
    source, padding = _padded_conv(layer, code, inputs[0])
    channels = layer.input_shape[0]
    name = _attr(layer.name)
    module = _conv_module(
        2, channels, channels * spec.depth_multiplier, layer.kernel_size, layer.stride, padding, layer.dilation,
        channels, spec.bias,
    )
    code.modules.append((name, module))
    code.expression = _with_activation(layer, f"self.{name}({source})")
    return code


def emit_separable_conv(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """separable_conv2d: a depthwise conv without bias, then a 1x1 pointwise conv with the spec's bias."""
    spec = layer.spec
    code = LayerCode()
    source, padding = _padded_conv(layer, code, inputs[0])
    channels = layer.input_shape[0]
    middle = channels * spec.depth_multiplier
    depthwise, pointwise = _attr(layer.name, "depthwise"), _attr(layer.name, "pointwise")
    code.modules.append((depthwise, _conv_module(2, channels, middle, layer.kernel_size, layer.stride, padding, layer.dilation, channels, False)))
    code.modules.append((pointwise, _conv_module(2, middle, spec.filters, (1, 1), (1, 1), (0, 0), (1, 1), 1, spec.bias)))
    code.expression = _with_activation(layer, f"self.{pointwise}(self.{depthwise}({source}))")
    return code


def _transpose_mapping(layer: LayerPlan) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Per dim: PyTorch ``padding``, ``output_padding`` and the remaining (start, stop-from-end) slice.

    PyTorch's ConvTranspose with padding p and output_padding op crops p cells at the start
    and p - op at the end of the full output (negative: bias-only cells appended).  The
    plan's crop (before, after) is met natively when after <= before and before - after
    is a legal output_padding; otherwise the symmetric part stays in the op and the rest
    is sliced off.
    """
    paddings, output_paddings, slices = [], [], []
    for (before, after), stride, dilation in zip(layer.padding, layer.stride, layer.dilation):
        if after >= before:  # e.g. TF 'same' with an odd total crop: the odd cell goes at the end
            paddings.append(before)
            output_paddings.append(0)
            slices.append((0, after - before))
        elif before - after < max(stride, dilation):
            paddings.append(before)
            output_paddings.append(before - after)
            slices.append((0, 0))
        elif after >= 0:
            paddings.append(after)
            output_paddings.append(0)
            slices.append((before - after, 0))
        else:
            raise CnnspecError(
                f"layer '{layer.name}': a transposed-conv crop of ({before}, {after}) cannot be expressed in PyTorch "
                f"(output_padding {before - after} is not below max(stride, dilation) = {max(stride, dilation)})"
            )
    return paddings, output_paddings, slices


def emit_conv_transpose(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """conv_transpose1d/2d/3d as PyTorch padding/output_padding plus an explicit crop where needed."""
    spec = layer.spec
    rank = _spatial_rank(layer)
    paddings, output_paddings, slices = _transpose_mapping(layer)
    name = _attr(layer.name)
    module = (
        f"nn.ConvTranspose{rank}d({_int(layer.input_shape[0])}, {_int(spec.filters)}, kernel_size={_ints(layer.kernel_size)}, "
        f"stride={_ints(layer.stride)}, padding={_ints(paddings)}, output_padding={_ints(output_paddings)}, "
        f"dilation={_ints(layer.dilation)}, bias={_bool(spec.bias)})"
    )
    code = LayerCode(modules=[(name, module)])
    expression = f"self.{name}({inputs[0]})"
    if any(start or end for start, end in slices):
        # The plan's output sizes are the slice bounds: start cells dropped at the front, the rest at the end.
        parts = []
        for (start, end), size in zip(slices, layer.output_shape[1:]):
            parts.append(":" if not (start or end) else f"{_int(start) if start else ''}:{_int(start + size)}")
        expression += "[:, :, " + ", ".join(parts) + "]"
        code.note += f"; crop (before, after) {_pairs(layer.padding)} of the full output: the rest of it sliced off"
    code.expression = _with_activation(layer, expression)
    return code


def _torch_pool_padding(layer: LayerPlan) -> tuple[int, ...] | None:
    """The symmetric padding PyTorch's own pools accept (at most half the window), or None."""
    if not _is_symmetric(layer.padding):
        return None
    pads = tuple(before for before, _ in layer.padding)
    if any(2 * p > k for p, k in zip(pads, layer.kernel_size)):
        return None
    return pads


def emit_max_pool(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """max_pool1d/2d/3d: padded cells (declared and ceil overhang) never win."""
    rank = _spatial_rank(layer)
    name = _attr(layer.name)
    code = LayerCode()
    extra = layer.ceil_extra or (0,) * rank
    native = _torch_pool_padding(layer)
    source = inputs[0]
    if native is not None:
        # PyTorch pads with -inf internally; its ceil_mode rule is the plan's for symmetric padding.
        module = (
            f"nn.MaxPool{rank}d(kernel_size={_ints(layer.kernel_size)}, stride={_ints(layer.stride)}, "
            f"padding={_ints(native)}, ceil_mode={_bool(any(extra))})"
        )
    else:
        pad = _attr(layer.name, "pad")
        code.modules.append((pad, f"nn.ConstantPad{rank}d({_torch_pad_order(layer.padding, extra)}, value=-math.inf)"))
        code.needs_math = True
        overhang = f" + ceil overhang {_ints(extra)}" if any(extra) else ""
        code.note += f"; padding {_pairs(layer.padding)}{overhang} with -inf by {pad}"
        source = f"self.{pad}({source})"
        module = f"nn.MaxPool{rank}d(kernel_size={_ints(layer.kernel_size)}, stride={_ints(layer.stride)}, padding=0)"
    code.modules.append((name, module))
    code.expression = f"self.{name}({source})"
    return code


def emit_avg_pool(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """avg_pool1d/2d/3d: divide by real cells (+ declared padding if counted); ceil overhang never counts."""
    rank = _spatial_rank(layer)
    name = _attr(layer.name)
    code = LayerCode()
    extra = tuple(layer.ceil_extra or (0,) * rank)
    count_padding = bool(layer.count_include_pad)
    has_padding = any(b or a for b, a in layer.padding)
    native = _torch_pool_padding(layer)
    if rank == 3 and any(n < k for n, k in zip(layer.input_shape[1:], layer.kernel_size)):
        native = None  # PyTorch's avg_pool3d refuses an input (before its own padding) smaller than the window
    source = inputs[0]
    if native is not None:
        # PyTorch's divisor: real cells, plus its own padding when count_include_pad; never the ceil overhang.
        module = (
            f"nn.AvgPool{rank}d(kernel_size={_ints(layer.kernel_size)}, stride={_ints(layer.stride)}, "
            f"padding={_ints(native)}, ceil_mode={_bool(any(extra))}, count_include_pad={_bool(count_padding and has_padding)})"
        )
    elif count_padding and not any(extra):
        # Every cell of every window counts: zero padding in front of an unpadded average.
        pad = _attr(layer.name, "pad")
        code.modules.append((pad, f"nn.ZeroPad{rank}d({_torch_pad_order(layer.padding)})"))
        code.note += f"; counted padding {_pairs(layer.padding)} applied by {pad}"
        source = f"self.{pad}({source})"
        module = f"nn.AvgPool{rank}d(kernel_size={_ints(layer.kernel_size)}, stride={_ints(layer.stride)}, padding=0)"
    else:
        helper = f"CountedAvgPool{rank}d"
        code.helpers.add(helper)
        module = (
            f"{helper}(kernel_size={_ints(layer.kernel_size)}, "
            f"stride={_ints(layer.stride)}, padding={_pairs(layer.padding)}, overhang={_ints(extra)}, "
            f"count_padding={_bool(count_padding)})"
        )
    code.modules.append((name, module))
    code.expression = f"self.{name}({source})"
    return code


def emit_global_pool(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """global_avg_pool / global_max_pool over every spatial dim."""
    dims = _ints(range(2, 2 + _spatial_rank(layer)))
    keepdim = _bool(layer.spec.keepdims)
    function = "torch.mean" if layer.type == "global_avg_pool" else "torch.amax"
    return LayerCode(expression=f"{function}({inputs[0]}, dim={dims}, keepdim={keepdim})")


def emit_batch_norm(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """batch_norm: BatchNorm1d for flat (N, F) and (N, C, L) inputs, 2d / 3d by spatial rank."""
    rank = max(_spatial_rank(layer), 1)
    name = _attr(layer.name)
    spec = layer.spec
    module = f"nn.BatchNorm{rank}d({_int(layer.input_shape[0])}, eps={_float(spec.epsilon)}, momentum={_float(spec.momentum)})"
    return LayerCode(modules=[(name, module)], expression=f"self.{name}({inputs[0]})")


def emit_dropout(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """dropout (elements) and spatial_dropout (whole channels: Dropout1d/2d/3d); identity in eval()."""
    name = _attr(layer.name)
    if layer.type == "spatial_dropout":
        module = f"nn.Dropout{_spatial_rank(layer)}d(p={_float(layer.spec.rate)})"
    else:
        module = f"nn.Dropout(p={_float(layer.spec.rate)})"
    return LayerCode(modules=[(name, module)], expression=f"self.{name}({inputs[0]})")


def emit_flatten(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """flatten: PyTorch's native C, H, W order."""
    name = _attr(layer.name)
    return LayerCode(modules=[(name, "nn.Flatten()")], expression=f"self.{name}({inputs[0]})")


def emit_dense(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """dense: nn.Linear on flat features."""
    name = _attr(layer.name)
    spec = layer.spec
    module = f"nn.Linear({_int(layer.input_shape[0])}, {_int(spec.units)}, bias={_bool(spec.bias)})"
    return LayerCode(modules=[(name, module)], expression=_with_activation(layer, f"self.{name}({inputs[0]})"))


def emit_activation(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """Activation layers (softmax over channels, dim 1)."""
    spec = layer.spec
    if layer.type in ACTIVATION_MODULES:
        module = ACTIVATION_MODULES[layer.type]
    elif layer.type == "leaky_relu":
        module = f"nn.LeakyReLU(negative_slope={_float(spec.negative_slope)})"
    elif layer.type == "elu":
        module = f"nn.ELU(alpha={_float(spec.alpha)})"
    elif layer.type == "gelu":
        if spec.approximate not in ("none", "tanh"):
            raise CnnspecError(f"layer '{layer.name}': unknown GELU approximation {spec.approximate!r}")
        module = f"nn.GELU(approximate={spec.approximate!r})"
    else:
        raise CnnspecError(f"layer '{layer.name}': no PyTorch activation for type '{layer.type}'")
    name = _attr(layer.name)
    return LayerCode(modules=[(name, module)], expression=f"self.{name}({inputs[0]})")


def emit_prelu(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """prelu: one slope per channel (or feature) or one shared, initial value 0.25."""
    count = layer.input_shape[0] if layer.spec.per_channel else 1
    name = _attr(layer.name)
    return LayerCode(modules=[(name, f"nn.PReLU(num_parameters={_int(count)}, init=0.25)")], expression=f"self.{name}({inputs[0]})")


def emit_upsample(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """upsample: nearest (repeat) or bilinear with half-pixel centres (align_corners=False)."""
    factors = "(" + ", ".join(_float(f) for f in layer.kernel_size) + ("," if len(layer.kernel_size) == 1 else "") + ")"
    name = _attr(layer.name)
    if layer.spec.mode == "bilinear":
        module = f"nn.Upsample(scale_factor={factors}, mode='bilinear', align_corners=False)"
    elif layer.spec.mode == "nearest":
        module = f"nn.Upsample(scale_factor={factors}, mode='nearest')"
    else:
        raise CnnspecError(f"layer '{layer.name}': unknown upsample mode {layer.spec.mode!r}")
    return LayerCode(modules=[(name, module)], expression=f"self.{name}({inputs[0]})")


def emit_zero_pad(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """zero_pad1d/2d/3d (nn.ZeroPad*d takes the last dim first)."""
    name = _attr(layer.name)
    module = f"nn.ZeroPad{_spatial_rank(layer)}d({_torch_pad_order(layer.padding)})"
    return LayerCode(modules=[(name, module)], expression=f"self.{name}({inputs[0]})", note=f"; padding {_pairs(layer.padding)}")


def emit_add(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """add: element-wise sum of the inputs."""
    return LayerCode(expression=" + ".join(inputs))


def emit_concat(layer: LayerPlan, inputs: list[str]) -> LayerCode:
    """concat: join along channels (dim 1)."""
    return LayerCode(expression="torch.cat([" + ", ".join(inputs) + "], dim=1)")


_EMITTER_BY_TYPE_PREFIX: dict[str, Emitter] = {
    "conv_transpose": emit_conv_transpose,
    "conv": emit_conv,
    "depthwise_conv2d": emit_depthwise_conv,
    "separable_conv2d": emit_separable_conv,
    "max_pool": emit_max_pool,
    "avg_pool": emit_avg_pool,
    "global_": emit_global_pool,
    "batch_norm": emit_batch_norm,
    "dropout": emit_dropout,
    "spatial_dropout": emit_dropout,
    "flatten": emit_flatten,
    "dense": emit_dense,
    "prelu": emit_prelu,
    "upsample": emit_upsample,
    "zero_pad": emit_zero_pad,
    "add": emit_add,
    "concat": emit_concat,
}


def _registry() -> dict[str, Emitter]:
    from cnnspec.spec.models import layer_types

    registry: dict[str, Emitter] = {}
    for layer_type in layer_types():
        for prefix, emitter in _EMITTER_BY_TYPE_PREFIX.items():
            if layer_type.startswith(prefix):
                registry[layer_type] = emitter
                break
        else:
            registry[layer_type] = emit_activation
    return registry


EMITTERS: dict[str, Emitter] = _registry()


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


def _forward_variables(plan: Plan) -> dict[str, str]:
    """Variable of each layer output in ``forward``: the running ``x`` unless read again later.

    A layer's output lives in ``x`` when only the next layer reads it and the value ``x``
    held before is dead by then; otherwise it keeps its spec name.
    """
    readers: dict[str, list[int]] = {"input": []}
    for layer in plan.layers:
        readers[layer.name] = []
    for layer in plan.layers:
        for source in layer.inputs:
            readers[source].append(layer.index)
    variables = {"input": INPUT_VARIABLE}
    held_by_x = "input"
    for layer in plan.layers:
        only_next = all(reader == layer.index + 1 for reader in readers[layer.name])
        x_dead = all(reader <= layer.index for reader in readers[held_by_x])
        if only_next and x_dead:
            variables[layer.name] = INPUT_VARIABLE
            held_by_x = layer.name
        else:
            variables[layer.name] = _identifier(layer.name)
    return variables


def _shape_text(shape) -> str:
    return "(N, " + ", ".join(str(int(d)) for d in shape) + ")"


def _check_names(plan: Plan, attributes: list[str], model_class: str, helpers: set[str]) -> None:
    seen: dict[str, str] = {}
    for attribute in attributes:
        if attribute in seen:
            raise CnnspecError(
                f"the generated torch model would have two modules named '{attribute}'; a helper module of one "
                "layer clashes with another layer's name: rename that layer"
            )
        seen[attribute] = attribute
    for attribute in attributes:
        if attribute in _module_member_names():
            raise CnnspecError(
                f"layer name '{attribute}' clashes with an attribute the generated nn.Module already has "
                f"(model.{attribute} would not be the layer); rename the layer"
            )
    if model_class in helpers:
        raise CnnspecError(f"model name '{plan.name}' gives the class name '{model_class}', which a helper class uses; rename the model")


# Private members of torch.nn.Module (torch 2.13) that a layer named with a leading '_' would shadow; the
# public ones are reserved by the spec itself. Written out so that writing source imports no framework
# (tests compare both lists with the installed torch).
_NN_MODULE_PRIVATE_MEMBERS = frozenset(
    "_apply _call_impl _compiled_call_impl _get_backward_hooks _get_backward_pre_hooks _get_name "
    "_load_from_state_dict _maybe_warn_non_full_backward_hook _named_members _register_load_state_dict_pre_hook "
    "_register_state_dict_hook _replicate_for_data_parallel _save_to_state_dict _slow_forward _version "
    "_wrapped_call_impl".split()
)


def _module_member_names() -> frozenset[str]:
    """Names the generated class already defines (an attribute of that name would be shadowed by them)."""
    from cnnspec.spec.models import _TORCH_MODULE_MEMBERS

    return frozenset({"forward", "forward_layers"}) | frozenset(_TORCH_MODULE_MEMBERS) | _NN_MODULE_PRIVATE_MEMBERS


def emit_source(plan: Plan) -> str:
    """Generate the stand-alone PyTorch module for ``plan``.

    Args:
        plan: a resolved :class:`~cnnspec.engine.plan.Plan`.

    Returns:
        Python source that imports only ``torch`` (and ``math`` when needed) and defines
        ``CNNSPEC_LAYER_NAMES`` and the model class ``class_name(plan.name)``.

    Raises:
        CnnspecError: a layer type has no emitter, or generated names would clash.
    """
    model_class = _identifier(class_name(_identifier(plan.name)))
    forward_vars = _forward_variables(plan)
    layer_vars = {"input": INPUT_VARIABLE, **{layer.name: _identifier(layer.name) for layer in plan.layers}}

    init_lines: list[str] = []
    forward_lines: list[str] = []
    layers_lines: list[str] = []
    attributes: list[str] = []
    helpers: set[str] = set()
    needs_math = False
    for layer in plan.layers:
        emitter = EMITTERS.get(layer.type)
        if emitter is None:
            raise CnnspecError(f"layer '{layer.name}': no PyTorch emitter for type '{layer.type}'")
        code = emitter(layer, [forward_vars[name] for name in layer.inputs])
        code_named = emitter(layer, [layer_vars[name] for name in layer.inputs])
        helpers |= code.helpers
        needs_math |= code.needs_math
        if code.modules:
            init_lines.append(f"        # {layer.name}: {layer.type} -> {_shape_text(layer.output_shape)}{code.note}")
            for attribute, constructor in code.modules:
                attributes.append(attribute)
                init_lines.append(f"        self.{_identifier(attribute)} = {constructor}")
        forward_lines.append(f"        {forward_vars[layer.name]} = {code.expression}  # {layer.name}: {_shape_text(layer.output_shape)}")
        layers_lines.append(f"        {layer_vars[layer.name]} = {code_named.expression}")
    _check_names(plan, attributes, model_class, helpers)

    last = plan.layers[-1].name
    forward_lines.append(f"        return {forward_vars[last]}")
    layers_lines.append("        return {")
    layers_lines.extend(f"            {layer.name!r}: {layer_vars[layer.name]}," for layer in plan.layers)
    layers_lines.append("        }")

    layout = _LAYOUTS[plan.rank]
    width = max(len(layer.name) for layer in plan.layers)
    shape_table = "\n".join(
        f"    {layer.name.ljust(width)}  {layer.type:<18} {_shape_text(layer.output_shape)}" for layer in plan.layers
    )
    names_literal = "[\n" + "".join(f"    {layer.name!r},\n" for layer in plan.layers) + "]"

    parts = [
        f'"""PyTorch model {model_class}: generated by cnnspec from spec {plan.name!r}.\n\n'
        f"Input layout {layout}: {_shape_text(plan.input_shape)}; output {_shape_text(plan.output_shape)}.\n"
        f"Parameters: {plan.trainable_params:,} trainable, {plan.non_trainable_params:,} non-trainable.\n\n"
        f"Layer outputs (batch N first):\n{shape_table}\n"
        '"""\n',
        ("import math\n\n" if needs_math else "") + "import torch\nimport torch.nn.functional as F\nfrom torch import nn\n",
        f"CNNSPEC_LAYER_NAMES = {names_literal}\n",
    ]
    parts.extend(HELPER_SOURCES[name].strip("\n") + "\n" for name in sorted(helpers))
    body = [
        f"class {model_class}(nn.Module):",
        f'    """{plan.name}: input {_shape_text(plan.input_shape)} ({layout}), output {_shape_text(plan.output_shape)}."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
        *init_lines,
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        *forward_lines,
        "",
        "    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:",
        '        """The same computation as forward, returning every spec layer\'s output by name, in spec order."""',
        *layers_lines,
    ]
    parts.append("\n".join(body) + "\n")
    return "\n\n".join(parts)
