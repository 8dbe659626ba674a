"""resolve(spec) -> Plan: every shape, padding and parameter count, decided once.

The plan is framework-free.  Both emitters, the weight transfer and the verifier
*read* it; none of them re-derives padding or shapes.  Shapes exclude the batch
dimension and are stored channels-first: ``(C, *spatial)`` for feature maps and
``(F,)`` for flat features; :func:`channels_last` gives the other layout.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Iterable

from cnnspec.engine import shapes as S
from cnnspec.errors import Problem, SpecError
from cnnspec.spec.models import (
    ELU, GELU, BatchNorm, Conv, ConvTranspose, Dense, DepthwiseConv2d, Dropout, Flatten, GlobalPool,
    LeakyReLU, Merge, ModelSpec, Pool, PReLU, SeparableConv2d, SimpleActivation, Upsample, ZeroPad,
)

Shape = tuple[int, ...]
Pads = tuple[tuple[int, int], ...]

# Layer families: what each emitter dispatches on.
FAMILY_BY_MODEL = {
    Conv: "conv", ConvTranspose: "conv_transpose", DepthwiseConv2d: "depthwise_conv", SeparableConv2d: "separable_conv",
    Pool: "pool", GlobalPool: "global_pool", BatchNorm: "batch_norm", Dropout: "dropout", Flatten: "flatten",
    Dense: "dense", SimpleActivation: "activation", LeakyReLU: "activation", ELU: "activation", GELU: "activation",
    PReLU: "prelu", Upsample: "upsample", ZeroPad: "zero_pad", Merge: "merge",
}

LAYOUT_NAMES = {1: ("NCL", "NLC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
AXIS_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}  # spatial axes, in the order every per-axis value uses


def channels_last(shape: Shape) -> Shape:
    """(C, *spatial) -> (*spatial, C); flat shapes are unchanged."""
    if len(shape) <= 1:
        return tuple(shape)
    return tuple(shape[1:]) + (shape[0],)


@dataclass(frozen=True)
class ParamTensor:
    """One learned (or tracked) tensor of a layer, in a neutral description.

    ``shape`` is given channels-first / PyTorch-like (out, in, *kernel) for kernels;
    the emitters and the weight transfer own the framework layouts.
    """

    name: str
    shape: Shape
    trainable: bool = True

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass(frozen=True)
class LayerPlan:
    """A layer with everything resolved.

    Attributes:
        index: position in ``spec.layers``.
        name: the unique layer name (spec name or ``<type>_<index>``).
        type: the spec ``type``.
        family: the emitter family (``conv``, ``pool``, ...).
        spec: the validated pydantic layer.
        inputs: names of the layers (or ``input``) it reads.
        input_shapes: their shapes, channels-first, batch excluded.
        output_shape: channels-first, batch excluded.
        kernel_size, stride, dilation: per spatial dim (None where meaningless).
        padding: per spatial dim ``(before, after)`` actually applied by the op
            (conv / pool / zero_pad); for transposed convolutions the crop of the full
            output (``after`` negative = extra cells at the end).
        padding_mode: ``valid`` / ``same`` / ``explicit`` as written in the spec.
        ceil_extra: pools with ceil_mode: cells past the right padding that the last
            window covers (never counted, never a max).
        count_include_pad: average pools: whether explicit padding counts in the divisor.
        output_padding: transposed convolutions: extra cells at the end per dim.
        params: the layer's tensors (trainable and non-trainable).
        size_formulas: per spatial dim, the output-size arithmetic as text.
        param_formula: the parameter count as text.
        flat_segments: for flat outputs, the pieces the vector is made of, in order:
            ``(C, *spatial)`` for a flattened feature map (PyTorch lays it out C-major,
            Keras spatial-major: the two vectors are a permutation of each other) or
            ``(F,)`` for features already flat (same order in both). None for feature maps.
    """

    index: int
    name: str
    type: str
    family: str
    spec: Any
    inputs: tuple[str, ...]
    input_shapes: tuple[Shape, ...]
    output_shape: Shape
    kernel_size: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    padding: Pads | None = None
    padding_mode: str | None = None
    ceil_extra: tuple[int, ...] | None = None
    count_include_pad: bool | None = None
    output_padding: tuple[int, ...] | None = None
    params: tuple[ParamTensor, ...] = ()
    size_formulas: tuple[str, ...] = ()
    param_formula: str = ""
    flat_segments: tuple[Shape, ...] | None = None

    @property
    def input_shape(self) -> Shape:
        return self.input_shapes[0]

    @property
    def output_shape_last(self) -> Shape:
        return channels_last(self.output_shape)

    @property
    def trainable_params(self) -> int:
        return sum(p.size for p in self.params if p.trainable)

    @property
    def non_trainable_params(self) -> int:
        return sum(p.size for p in self.params if not p.trainable)

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    @property
    def spatial_rank(self) -> int:
        return len(self.input_shape) - 1

    @property
    def is_symmetric_padding(self) -> bool:
        return self.padding is None or all(b == a for b, a in self.padding)

    @property
    def activation(self) -> str | None:
        """The inline activation (None for none / 'linear')."""
        act = getattr(self.spec, "activation", None)
        return None if act in (None, "linear") else act


@dataclass(frozen=True)
class Plan:
    """The resolved model."""

    spec: ModelSpec
    name: str
    rank: int
    input_shape: Shape
    layers: tuple[LayerPlan, ...]
    _by_name: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self._by_name.update({layer.name: layer for layer in self.layers})

    def layer(self, name: str) -> LayerPlan:
        """The layer called ``name``."""
        return self._by_name[name]

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].output_shape

    @property
    def layouts(self) -> tuple[str, str]:
        """Names of the channels-first and channels-last layouts for this rank (e.g. NCHW, NHWC)."""
        return LAYOUT_NAMES[self.rank]

    @property
    def trainable_params(self) -> int:
        return sum(layer.trainable_params for layer in self.layers)

    @property
    def non_trainable_params(self) -> int:
        return sum(layer.non_trainable_params for layer in self.layers)

    @property
    def total_params(self) -> int:
        return self.trainable_params + self.non_trainable_params

    def activation_elements(self, batch: int = 1) -> int:
        """Elements of every layer output plus the input, for one batch (memory estimates)."""
        total = _prod(self.input_shape)
        for layer in self.layers:
            total += _prod(layer.output_shape)
        return total * batch


def _prod(values: Iterable[int]) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def _fmt(n: int) -> str:
    return f"{n:,}"


class _Resolver:
    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.rank = spec.rank
        self.problems: list[Problem] = []
        self._segments_of: dict[str, tuple[Shape, ...]] = {}

    # -- errors -----------------------------------------------------------
    def fail(self, index: int, message: str, field_name: str | None = None, hint: str | None = None) -> None:
        path: tuple = ("layers", index) + ((field_name,) if field_name else ())
        raise _LayerFailure(Problem(message, path, hint))

    # -- helpers ----------------------------------------------------------
    def per_dim(self, index: int, value, field_name: str, rank: int) -> tuple[int, ...]:
        if isinstance(value, int):
            return (value,) * rank
        if len(value) != rank:
            self.fail(
                index,
                f"{field_name} has {len(value)} values {list(value)} but this layer's input has {rank} spatial dim(s) ({', '.join(AXIS_NAMES[rank])})",
                field_name,
                hint=f"give one int, or exactly {rank} (one per spatial dim)",
            )
        return tuple(value)

    def explicit_pads(self, index: int, value, rank: int, field_name: str = "padding") -> Pads:
        if isinstance(value, int):
            return ((value, value),) * rank
        if len(value) != rank:
            self.fail(
                index,
                f"{field_name} has {len(value)} entries {value} but this layer's input has {rank} spatial dim(s) ({', '.join(AXIS_NAMES[rank])})",
                field_name,
                hint=f"give one int, {rank} ints (symmetric), or {rank} [before, after] pairs",
            )
        if all(isinstance(v, int) for v in value):
            return tuple((v, v) for v in value)
        return tuple((int(b), int(a)) for b, a in value)

    def require_spatial(self, index: int, layer_type: str, shape: Shape, rank: int | None = None) -> int:
        spatial = len(shape) - 1
        if spatial == 0:
            self.fail(
                index,
                f"{layer_type} needs a spatial input (C, *spatial) but its input is flat {list(shape)}",
                hint="a flatten or dense layer before it removed the spatial dims; move it after the spatial layers",
            )
        if rank is not None and spatial != rank:
            self.fail(
                index,
                f"{layer_type} is a {rank}-D layer but its input has {spatial} spatial dim(s) {list(shape)} (the model is {self.rank}-D)",
                "type",
                hint=f"use the {spatial}d variant of this layer",
            )
        return spatial

    def check_positive(self, index: int, name: str, out: Iterable[int], formulas: Iterable[str]) -> None:
        out = list(out)
        for axis, (size, formula) in enumerate(zip(out, formulas)):
            if size <= 0:
                self.fail(index, f"output size collapses to {size} on axis {AXIS_NAMES[len(out)][axis]}: {formula}", hint="use a smaller kernel/stride, padding, or a larger input")

    # -- the walk ---------------------------------------------------------
    def run(self) -> Plan:
        spec = self.spec
        input_shape: Shape = (spec.input.channels, *spec.input.size)
        names = self._names()
        shapes: dict[str, Shape] = {"input": input_shape}
        order: dict[str, int] = {"input": -1}
        layers: list[LayerPlan] = []
        for index, (layer, name) in enumerate(zip(spec.layers, names)):
            try:
                inputs = self._inputs(index, layer, names, order, layers)
                in_shapes = tuple(shapes[n] for n in inputs)
                planned = self._layer(index, name, layer, inputs, in_shapes)
            except _LayerFailure as failure:
                self.problems.append(failure.problem)
                break
            layers.append(planned)
            if planned.flat_segments is not None:
                self._segments_of[name] = planned.flat_segments
            shapes[name] = planned.output_shape
            order[name] = index
        if not self.problems:
            self._check_all_used(layers)
        if self.problems:
            raise SpecError(self.problems)
        return Plan(spec=spec, name=spec.name, rank=self.rank, input_shape=input_shape, layers=tuple(layers))

    def _check_all_used(self, layers: list[LayerPlan]) -> None:
        """Every layer must feed the output (the last layer); a dead branch is almost always a wiring mistake."""
        used = {layers[-1].name}
        for layer in reversed(layers):
            if layer.name in used:
                used.update(layer.inputs)
        for layer in layers:
            if layer.name not in used:
                self.problems.append(
                    Problem(
                        f"the output of '{layer.name}' is never used: the model's output is the last layer "
                        f"('{layers[-1].name}') and nothing after '{layer.name}' reads it",
                        ("layers", layer.index),
                        "connect it with 'inputs:' of a later layer, or remove it",
                    )
                )
                return

    def _names(self) -> list[str]:
        names: list[str] = []
        seen: dict[str, int] = {}
        for index, layer in enumerate(self.spec.layers):
            name = layer.name or f"{layer.type}_{index}"
            if name in seen:
                self.problems.append(
                    Problem(
                        f"duplicate layer name '{name}' (also layers[{seen[name]}])",
                        ("layers", index, "name"),
                        "layer names must be unique; unnamed layers are called <type>_<index>",
                    )
                )
            seen.setdefault(name, index)
            names.append(name)
        if self.problems:
            raise SpecError(self.problems)
        return names

    def _inputs(self, index: int, layer, names: list[str], order: dict[str, int], built: list[LayerPlan]) -> tuple[str, ...]:
        if layer.inputs is None:
            return ("input",) if index == 0 else (names[index - 1],)
        for position, ref in enumerate(layer.inputs):
            if ref in order:
                continue
            path_field = "inputs"
            if ref in names:
                later = names.index(ref)
                message = (
                    f"inputs[{position}] refers to '{ref}', which is this layer itself"
                    if later == index
                    else f"inputs[{position}] refers to '{ref}' (layers[{later}]), which comes later; inputs must be earlier layers (no cycles)"
                )
                raise _LayerFailure(Problem(message, ("layers", index, path_field, position)))
            close = difflib.get_close_matches(ref, list(order), n=1)
            raise _LayerFailure(
                Problem(
                    f"inputs[{position}] refers to unknown layer '{ref}'",
                    ("layers", index, path_field, position),
                    f"did you mean '{close[0]}'?" if close else "known so far: " + ", ".join(order),
                )
            )
        if layer.type not in ("add", "concat") and len(layer.inputs) != 1:
            raise _LayerFailure(
                Problem(f"a {layer.type} layer reads exactly one input, got {len(layer.inputs)}", ("layers", index, "inputs"), "use add or concat to merge several")
            )
        return tuple(layer.inputs)

    def _layer(self, index: int, name: str, layer, inputs: tuple[str, ...], in_shapes: tuple[Shape, ...]) -> LayerPlan:
        family = FAMILY_BY_MODEL[type(layer)]
        method = getattr(self, f"_plan_{family}")
        fields = method(index, layer, in_shapes)
        if len(fields["output_shape"]) == 1:
            fields["flat_segments"] = self._flat_segments(index, family, inputs, in_shapes, fields["output_shape"])
        return LayerPlan(index=index, name=name, type=layer.type, family=family, spec=layer, inputs=inputs, input_shapes=in_shapes, **fields)

    def _flat_segments(self, index: int, family: str, inputs, in_shapes, out_shape) -> tuple[Shape, ...]:
        if family == "flatten":
            return (in_shapes[0],) if len(in_shapes[0]) > 1 else self._segments_of[inputs[0]]
        if family in ("dense", "global_pool"):
            return (out_shape,)
        if family == "merge":
            pieces = [self._segments_of[name] for name in inputs]
            if self.spec.layers[index].type == "concat":
                return tuple(seg for piece in pieces for seg in piece)
            if any(piece != pieces[0] for piece in pieces[1:]):
                self.fail(
                    index,
                    "add of flat features laid out differently (a flattened feature map and dense features): "
                    "PyTorch flattens C,H,W and Keras H,W,C, so the sum would differ between the frameworks",
                    "inputs",
                    hint="add the feature maps before flatten, or add two dense outputs",
                )
            return pieces[0]
        return self._segments_of[inputs[0]]  # element-wise layers keep their input's layout

    # -- families ---------------------------------------------------------
    def _window_padding(self, index: int, layer, shape: Shape, kernel, stride, dilation) -> tuple[Pads, str]:
        rank = len(kernel)
        padding = layer.padding
        if padding == "valid":
            return ((0, 0),) * rank, "valid"
        if padding == "same":
            return tuple(S.same_padding(n, k, s, d) for n, k, s, d in zip(shape[1:], kernel, stride, dilation)), "same"
        return self.explicit_pads(index, padding, rank), "explicit"

    def _conv_formulas(self, shape: Shape, kernel, stride, dilation, pads: Pads, mode: str) -> tuple[list[int], list[str]]:
        outs, formulas = [], []
        for n, k, s, d, (b, a) in zip(shape[1:], kernel, stride, dilation, pads):
            dk = S.effective_kernel(k, d)
            if mode == "same":
                out = S.ceil_div(n, s)
                formula = f"⌈{n} / {s}⌉ = {out}"
            else:
                out = S.conv_output_length(n, k, s, d, b, a)  # <= 0 is reported by check_positive
                formula = f"⌊({n} + {b + a} − {dk}) / {s}⌋ + 1 = {out}"
            if d != 1:
                formula += f"   (dilated kernel {d}·({k}−1)+1 = {dk})"
            outs.append(out)
            formulas.append(formula)
        return outs, formulas

    def _sliding_window(self, index: int, layer, shape: Shape, rank: int):
        """Kernel, stride, dilation, per-side padding and output sizes of a conv-like layer."""
        self.require_spatial(index, layer.type, shape, rank)
        kernel = self.per_dim(index, layer.kernel_size, "kernel_size", rank)
        stride = self.per_dim(index, layer.stride, "stride", rank)
        dilation = self.per_dim(index, layer.dilation, "dilation", rank)
        pads, mode = self._window_padding(index, layer, shape, kernel, stride, dilation)
        outs, formulas = self._conv_formulas(shape, kernel, stride, dilation, pads, mode)
        self.check_positive(index, layer.type, outs, formulas)
        return dict(kernel_size=kernel, stride=stride, dilation=dilation, padding=pads, padding_mode=mode,
                    size_formulas=tuple(formulas)), outs

    @staticmethod
    def _with_params(fields: dict, output_shape: Shape, params: list[ParamTensor], formula: str) -> dict:
        formula += f" = {_fmt(sum(p.size for p in params))}"
        return dict(fields, output_shape=output_shape, params=tuple(params), param_formula=formula)

    def _plan_conv(self, index: int, layer: Conv, in_shapes):
        shape = in_shapes[0]
        channels, groups = shape[0], layer.groups
        fields, outs = self._sliding_window(index, layer, shape, int(layer.type[-2]))
        if channels % groups:
            self.fail(index, f"input channels {channels} are not divisible by groups {groups} ({channels} mod {groups} = {channels % groups})", "groups")
        if layer.filters % groups:
            self.fail(index, f"filters {layer.filters} are not divisible by groups {groups} ({layer.filters} mod {groups} = {layer.filters % groups})", "groups")
        kernel = fields["kernel_size"]
        params = [ParamTensor("kernel", (layer.filters, channels // groups, *kernel))]
        if layer.bias:
            params.append(ParamTensor("bias", (layer.filters,)))
        cin_text = str(channels) if groups == 1 else f"({channels}/{groups})"
        formula = "·".join(map(str, kernel)) + f"·{cin_text}·{layer.filters}" + (f" + {layer.filters}" if layer.bias else "")
        return self._with_params(fields, (layer.filters, *outs), params, formula)

    def _plan_conv_transpose(self, index: int, layer: ConvTranspose, in_shapes):
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        self.require_spatial(index, layer.type, shape, rank)
        kernel = self.per_dim(index, layer.kernel_size, "kernel_size", rank)
        stride = self.per_dim(index, layer.stride, "stride", rank)
        dilation = self.per_dim(index, layer.dilation, "dilation", rank)
        if isinstance(layer.padding, str):
            paddings: tuple = (layer.padding,) * rank
            mode = layer.padding
        else:
            paddings = self.per_dim(index, layer.padding, "padding", rank)
            mode = "explicit"
        if layer.output_padding is not None and mode == "same":
            self.fail(index, "output_padding cannot be combined with padding 'same' (the output is in·stride)", "output_padding", hint="use 'valid' or numeric padding with output_padding")
        out_pads = None if layer.output_padding is None else self.per_dim(index, layer.output_padding, "output_padding", rank)
        axes = []
        for axis in range(rank):
            op = None if out_pads is None else out_pads[axis]
            if op is not None and op >= max(stride[axis], dilation[axis]):
                self.fail(index, f"output_padding {op} on axis {AXIS_NAMES[rank][axis]} must be smaller than max(stride, dilation) = {max(stride[axis], dilation[axis])}", "output_padding")
            axes.append(S.transpose_axis(shape[axis + 1], kernel[axis], stride[axis], dilation[axis], paddings[axis], op))
        formulas = []
        for n, k, s, d, ax in zip(shape[1:], kernel, stride, dilation, axes):
            dk = S.effective_kernel(k, d)
            if mode == "same":
                formulas.append(f"{n}·{s} = {ax.out}")
            else:
                text = f"({n} − 1)·{s} + {dk}"
                if ax.crop_before:
                    text += f" − {ax.crop_before}"
                if ax.crop_after > 0:
                    text += f" − {ax.crop_after}"
                if ax.output_padding:
                    text += f" + {ax.output_padding}"
                formulas.append(f"{text} = {ax.out}")
        self.check_positive(index, layer.type, [ax.out for ax in axes], formulas)
        params = [ParamTensor("kernel", (shape[0], layer.filters, *kernel))]
        if layer.bias:
            params.append(ParamTensor("bias", (layer.filters,)))
        formula = "·".join(str(k) for k in kernel) + f"·{shape[0]}·{layer.filters}" + (f" + {layer.filters}" if layer.bias else "")
        formula += f" = {_fmt(sum(p.size for p in params))}"
        return dict(
            output_shape=(layer.filters, *[ax.out for ax in axes]), kernel_size=kernel, stride=stride, dilation=dilation,
            padding=tuple((ax.crop_before, ax.crop_after) for ax in axes), padding_mode=mode,
            output_padding=tuple(ax.output_padding for ax in axes), params=tuple(params), size_formulas=tuple(formulas),
            param_formula=formula,
        )

    def _plan_depthwise_conv(self, index: int, layer: DepthwiseConv2d, in_shapes):
        shape = in_shapes[0]
        fields, outs = self._sliding_window(index, layer, shape, 2)
        kernel, channels, dm = fields["kernel_size"], shape[0], layer.depth_multiplier
        params = [ParamTensor("depthwise_kernel", (channels * dm, 1, *kernel))]
        if layer.bias:
            params.append(ParamTensor("bias", (channels * dm,)))
        formula = "·".join(map(str, kernel)) + f"·{channels}·{dm}" + (f" + {channels}·{dm}" if layer.bias else "")
        return self._with_params(fields, (channels * dm, *outs), params, formula)

    def _plan_separable_conv(self, index: int, layer: SeparableConv2d, in_shapes):
        shape = in_shapes[0]
        fields, outs = self._sliding_window(index, layer, shape, 2)
        kernel, channels, dm, filters = fields["kernel_size"], shape[0], layer.depth_multiplier, layer.filters
        params = [
            ParamTensor("depthwise_kernel", (channels * dm, 1, *kernel)),
            ParamTensor("pointwise_kernel", (filters, channels * dm, 1, 1)),
        ]
        if layer.bias:
            params.append(ParamTensor("bias", (filters,)))
        formula = "·".join(map(str, kernel)) + f"·{channels}·{dm} + {channels}·{dm}·{filters}" + (f" + {filters}" if layer.bias else "")
        return self._with_params(fields, (filters, *outs), params, formula)

    def _plan_pool(self, index: int, layer: Pool, in_shapes):
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        self.require_spatial(index, layer.type, shape, rank)
        window = self.per_dim(index, layer.pool_size, "pool_size", rank)
        stride = window if layer.stride is None else self.per_dim(index, layer.stride, "stride", rank)
        is_avg = layer.type.startswith("avg")
        if layer.count_include_pad is not None and not is_avg:
            self.fail(index, "count_include_pad applies to average pooling only", "count_include_pad")
        ones = (1,) * rank
        pads, mode = self._window_padding(index, layer, shape, window, stride, ones)
        if mode == "same" and layer.count_include_pad:
            self.fail(index, "count_include_pad: true contradicts padding 'same', which never counts padded cells", "count_include_pad", hint="use numeric padding to count padded cells")
        if mode == "same" and layer.ceil_mode:
            self.fail(index, "ceil_mode has no effect with padding 'same' (its output is already ⌈in / stride⌉)", "ceil_mode")
        for axis, ((b, a), k) in enumerate(zip(pads, window)):
            if b >= k or a >= k:
                self.fail(
                    index,
                    f"padding ({b}, {a}) on axis {AXIS_NAMES[rank][axis]} must be smaller than the pool size {k}, or some window would hold only padding",
                    "padding",
                )
        axes = [S.pool_axis(n, k, s, b, a, layer.ceil_mode) for n, k, s, (b, a) in zip(shape[1:], window, stride, pads)]
        formulas = []
        for n, k, s, (b, a), ax in zip(shape[1:], window, stride, pads, axes):
            if mode == "same":
                formulas.append(f"⌈{n} / {s}⌉ = {ax.out}")
            elif layer.ceil_mode:
                formulas.append(f"⌈({n} + {b + a} − {k}) / {s}⌉ + 1 = {ax.out}" + ("  (last window may not start in the padding)" if ax.out != S.ceil_div(max(n + b + a - k, 0), s) + 1 else ""))
            else:
                formulas.append(f"⌊({n} + {b + a} − {k}) / {s}⌋ + 1 = {ax.out}")
        self.check_positive(index, layer.type, [ax.out for ax in axes], formulas)
        count_include_pad = None
        if is_avg:
            count_include_pad = False if mode == "same" else (True if layer.count_include_pad is None else layer.count_include_pad)
        return dict(
            output_shape=(shape[0], *[ax.out for ax in axes]), kernel_size=window, stride=stride, dilation=ones,
            padding=pads, padding_mode=mode, ceil_extra=tuple(ax.ceil_extra for ax in axes), count_include_pad=count_include_pad,
            size_formulas=tuple(formulas), param_formula="no parameters",
        )

    def _plan_global_pool(self, index: int, layer: GlobalPool, in_shapes):
        shape = in_shapes[0]
        spatial = self.require_spatial(index, layer.type, shape)
        out = (shape[0],) + ((1,) * spatial if layer.keepdims else ())
        reduce = "mean" if layer.type == "global_avg_pool" else "max"
        window = "×".join(map(str, shape[1:]))
        formula = f"{reduce} over {window} → " + ("×".join(["1"] * spatial) + " per channel" if layer.keepdims else f"{shape[0]} features")
        return dict(output_shape=out, size_formulas=(formula,), param_formula="no parameters")

    def _plan_batch_norm(self, index: int, layer: BatchNorm, in_shapes):
        shape = in_shapes[0]
        c = shape[0]
        params = (
            ParamTensor("gamma", (c,)), ParamTensor("beta", (c,)),
            ParamTensor("moving_mean", (c,), trainable=False), ParamTensor("moving_variance", (c,), trainable=False),
        )
        formula = f"2·{c} (γ, β) + 2·{c} non-trainable (moving mean, variance) = {_fmt(4 * c)}"
        return dict(output_shape=shape, params=params, param_formula=formula)

    def _plan_dropout(self, index: int, layer: Dropout, in_shapes):
        shape = in_shapes[0]
        if layer.type == "spatial_dropout":
            self.require_spatial(index, layer.type, shape)
        return dict(output_shape=shape, param_formula="no parameters")

    def _plan_flatten(self, index: int, layer: Flatten, in_shapes):
        shape = in_shapes[0]
        total = _prod(shape)
        formula = "·".join(map(str, shape)) + f" = {_fmt(total)}"
        return dict(output_shape=(total,), size_formulas=(formula,), param_formula="no parameters")

    def _plan_dense(self, index: int, layer: Dense, in_shapes):
        shape = in_shapes[0]
        if len(shape) != 1:
            self.fail(
                index,
                f"dense needs flat features but its input is a feature map {list(shape)}",
                hint="add a flatten or global_avg_pool layer before it (frameworks disagree on dense over a feature map)",
            )
        features = shape[0]
        params = [ParamTensor("kernel", (layer.units, features))]
        if layer.bias:
            params.append(ParamTensor("bias", (layer.units,)))
        formula = f"{_fmt(features)}·{layer.units}" + (f" + {layer.units}" if layer.bias else "") + f" = {_fmt(sum(p.size for p in params))}"
        return dict(output_shape=(layer.units,), params=tuple(params), param_formula=formula)

    def _plan_activation(self, index: int, layer, in_shapes):
        return dict(output_shape=in_shapes[0], param_formula="no parameters")

    def _plan_prelu(self, index: int, layer: PReLU, in_shapes):
        shape = in_shapes[0]
        count = shape[0] if layer.per_channel else 1
        return dict(output_shape=shape, params=(ParamTensor("alpha", (count,)),), param_formula=f"{count} slope(s) = {count}")

    def _plan_upsample(self, index: int, layer: Upsample, in_shapes):
        shape = in_shapes[0]
        spatial = self.require_spatial(index, layer.type, shape)
        factors = self.per_dim(index, layer.scale_factor, "scale_factor", spatial)
        if layer.mode == "bilinear" and spatial != 2:
            self.fail(index, f"mode 'bilinear' needs a 2-D input, this one has {spatial} spatial dim(s)", "mode", hint="use mode: nearest")
        outs = [n * f for n, f in zip(shape[1:], factors)]
        return dict(output_shape=(shape[0], *outs), size_formulas=tuple(f"{n}·{f} = {o}" for n, f, o in zip(shape[1:], factors, outs)), param_formula="no parameters", kernel_size=factors)

    def _plan_zero_pad(self, index: int, layer: ZeroPad, in_shapes):
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        self.require_spatial(index, layer.type, shape, rank)
        pads = self.explicit_pads(index, layer.padding, rank)
        outs = [n + b + a for n, (b, a) in zip(shape[1:], pads)]
        return dict(
            output_shape=(shape[0], *outs), padding=pads, padding_mode="explicit",
            size_formulas=tuple(f"{n} + {b} + {a} = {o}" for n, (b, a), o in zip(shape[1:], pads, outs)), param_formula="no parameters",
        )

    def _plan_merge(self, index: int, layer: Merge, in_shapes):
        first = in_shapes[0]
        names = layer.inputs
        if layer.type == "add":
            for name, shape in zip(names[1:], in_shapes[1:]):
                if shape != first:
                    self.fail(index, f"add needs equal shapes: '{names[0]}' is {list(first)} but '{name}' is {list(shape)} (channels-first)", "inputs")
            return dict(output_shape=first, param_formula="no parameters", size_formulas=())
        for name, shape in zip(names[1:], in_shapes[1:]):
            if len(shape) != len(first) or shape[1:] != first[1:]:
                self.fail(
                    index,
                    f"concat joins along channels, so all other dims must match: '{names[0]}' is {list(first)} but '{name}' is {list(shape)} (channels-first)",
                    "inputs",
                )
        channels = sum(s[0] for s in in_shapes)
        formula = " + ".join(str(s[0]) for s in in_shapes) + f" = {channels} channels"
        return dict(output_shape=(channels, *first[1:]), size_formulas=(formula,), param_formula="no parameters")


class _LayerFailure(Exception):
    def __init__(self, problem: Problem):
        self.problem = problem


def resolve(spec) -> Plan:
    """Resolve a spec into a :class:`Plan`.

    Args:
        spec: a :class:`~cnnspec.spec.ModelSpec`, or anything :func:`cnnspec.load_spec` accepts.

    Returns:
        The plan: per layer its shapes (both layouts), per-side padding and parameters.

    Raises:
        SpecError: a shape collapses, ranks or channels do not fit, inputs are wrong --
            located at the layer, with the arithmetic.
    """
    from cnnspec.load.loader import load_spec, source_map_of

    spec = load_spec(spec)
    try:
        return _Resolver(spec).run()
    except SpecError as error:
        source = source_map_of(spec)
        raise error.with_source(source.file if source else None, source.locate if source else None) from None
