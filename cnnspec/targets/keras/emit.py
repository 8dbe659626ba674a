"""Plan -> stand-alone Keras 3 source (functional API, channels last, TensorFlow backend).

The generated module imports only ``keras`` (and ``numpy`` when a helper needs it) and
defines one function ``build_<name>()`` returning a ``keras.Model`` whose input is
channels-last.  Every spec layer's output is the output of the Keras layer named exactly
like the spec layer; layers added only to reproduce the plan's semantics are called
``<name>_<role>`` (``conv1_pad``).

Only the resolved plan is read (per-side padding, ``ceil_extra``, transposed-conv crops);
nothing is recomputed here.  Native Keras arguments are used where they are exact:

* ``padding="same"`` for convolutions and pools whose plan mode is ``same`` (TensorFlow's
  SAME is SAME_UPPER, and its pools never count or pick padded cells);
* otherwise a ``ZeroPadding*D`` (convolutions, counted average pools) or ``-inf`` padding
  (max pools) followed by ``padding="valid"``.

Small helper ``Layer`` subclasses (serializable through ``get_config``; never ``Lambda``)
are emitted only when a model needs them:

* ``PortableConv{1,2,3}D``: grouped convolution computed group by group (Keras' native
  grouped convolution runs through XLA on CPU and does not export to ONNX) and strides
  together with dilation (Keras refuses ``strides > 1`` with ``dilation_rate > 1``),
  computed at stride 1 and subsampled -- exact.
* ``CroppedConv{1,2,3}DTranspose``: the full transposed convolution, extended with
  bias-only cells and cropped per side, as the plan says; dilation with stride is done
  with an explicitly dilated kernel.
* ``ConstantPadding``: ``-inf`` padding so padded cells never win a max.
* ``CountedAveragePooling``: zero-padded sum pooling divided by the number of counted
  cells (``count_include_pad: false``, or ceil-mode overhang, which is never counted).
* ``gelu_erf`` / ``gelu_tanh``: registered activation functions (Keras' own ``"gelu"`` lowers
  to ``Erfc`` on TensorFlow, which has no ONNX operator), used inline or in ``Activation``.
"""

from __future__ import annotations

from typing import Callable

from cnnspec.targets.build import function_name
from cnnspec.errors import CnnspecError
from cnnspec.engine.plan import LayerPlan, Plan

INPUT_VARIABLE = "inputs"

# Spec activation -> Keras 3 activation name; each checked numerically against the spec's definition
# (hard_sigmoid = clip(x/6 + 1/2, 0, 1) and hard_silu = x * hard_sigmoid(x) in Keras 3).  GELU is emitted as a
# small registered function instead: Keras' "gelu" lowers to Erfc, which tf2onnx cannot export.
KERAS_ACTIVATIONS = {
    "relu": "relu", "relu6": "relu6", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
    "silu": "silu", "hard_swish": "hard_silu", "hard_sigmoid": "hard_sigmoid",
}

_RANK_SUFFIX = {1: "1D", 2: "2D", 3: "3D"}


# --------------------------------------------------------------------------------------------
# Helper layer sources (emitted only when used)
# --------------------------------------------------------------------------------------------

_DECORATOR = '@keras.saving.register_keras_serializable(package="cnnspec")'

_PORTABLE_CONV = '''
{decorator}
class PortableConv{suffix}(layers.Conv{suffix}):
    """Conv{suffix} computed group by group, and at stride 1 then subsampled when dilated.

    Keras' grouped convolution does not export to ONNX on TensorFlow, and Keras refuses
    strides > 1 with dilation_rate > 1; both are computed exactly here.  The kernel keeps
    the Conv{suffix} layout (*kernel_size, in_channels / groups, filters).
    """

    def __init__(self, *args, subsample={ones}, **kwargs):
        super().__init__(*args, **kwargs)
        self.subsample = tuple(int(s) for s in subsample)

    def call(self, inputs):
        group_in = self.kernel.shape[-2]
        group_out = self.filters // self.groups
        pieces = []
        for group in range(self.groups):
            pieces.append(
                ops.conv(
                    inputs[..., group * group_in:(group + 1) * group_in],
                    self.kernel[..., group * group_out:(group + 1) * group_out],
                    strides=self.strides,
                    padding=self.padding,
                    dilation_rate=self.dilation_rate,
                    data_format="channels_last",
                )
            )
        outputs = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=-1)
        outputs = outputs[(slice(None),) + tuple(slice(None, None, s) for s in self.subsample)]
        if self.use_bias:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        shape = list(super().compute_output_shape(input_shape))
        for axis, step in enumerate(self.subsample, start=1):
            if shape[axis] is not None:
                shape[axis] = -(-shape[axis] // step)
        return tuple(shape)

    def get_config(self):
        return {{**super().get_config(), "subsample": self.subsample}}
'''

_CROPPED_CONV_TRANSPOSE = '''
{decorator}
class CroppedConv{suffix}Transpose(layers.Conv{suffix}Transpose):
    """Conv{suffix}Transpose as a crop of its full output.

    The full output has (in - 1) * stride + dilation * (k - 1) + 1 cells per axis; `extend`
    cells are appended at the end of each axis (they hold only the bias), then `crop`
    (before, after) cells are removed.  With dilation > 1 the kernel is dilated explicitly
    (zeros between taps) so any stride works; `spread` holds the stride in that case.
    """

    def __init__(self, *args, crop, extend, spread={ones}, **kwargs):
        super().__init__(*args, **kwargs)
        self.crop = tuple((int(before), int(after)) for before, after in crop)
        self.extend = tuple(int(e) for e in extend)
        self.spread = tuple(int(s) for s in spread)

    def _dilated_kernel(self, kernel):
        for axis, rate in enumerate(self.dilation_rate):
            if rate > 1:
                taps = kernel.shape[axis]
                zeros = [ops.zeros_like(kernel)] * (rate - 1)
                stacked = ops.stack([kernel] + zeros, axis=axis + 1)
                shape = list(kernel.shape)
                shape[axis] = taps * rate
                kernel = ops.reshape(stacked, shape)
                start = [0] * len(shape)
                shape[axis] = rate * (taps - 1) + 1
                kernel = ops.slice(kernel, start, shape)
        return kernel

    def call(self, inputs):
        dilated = max(self.dilation_rate) > 1
        strides = tuple(s * t for s, t in zip(self.strides, self.spread))
        outputs = ops.conv_transpose(
            inputs,
            self._dilated_kernel(self.kernel) if dilated else self.kernel,
            strides=strides,
            padding="valid",
            output_padding=0,
            dilation_rate=1 if dilated else self.dilation_rate,
            data_format="channels_last",
        )
        if any(self.extend):
            outputs = ops.pad(outputs, ((0, 0),) + tuple((0, e) for e in self.extend) + ((0, 0),))
        index = [slice(None)]
        for (before, after), size in zip(self.crop, outputs.shape[1:-1]):
            index.append(slice(before, size - after))
        outputs = outputs[tuple(index) + (slice(None),)]
        if self.use_bias:
            outputs = outputs + self.bias  # the bias also fills the extended cells
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        shape = [input_shape[0]]
        for axis, size in enumerate(input_shape[1:-1]):
            stride = self.strides[axis] * self.spread[axis]
            span = self.dilation_rate[axis] * (self.kernel_size[axis] - 1) + 1
            if size is None:
                shape.append(None)
            else:
                full = (size - 1) * stride + span + self.extend[axis]
                shape.append(full - self.crop[axis][0] - self.crop[axis][1])
        return tuple(shape) + (self.filters,)

    def get_config(self):
        return {{**super().get_config(), "crop": self.crop, "extend": self.extend, "spread": self.spread}}
'''

_CONSTANT_PADDING = '''
{decorator}
class ConstantPadding(layers.Layer):
    """Pads the spatial dims (before, after) with a constant; -inf before a max pool never wins."""

    def __init__(self, padding, value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple((int(before), int(after)) for before, after in padding)
        self.value = float(value)

    def call(self, inputs):
        return ops.pad(inputs, ((0, 0),) + self.padding + ((0, 0),), constant_values=self.value)

    def compute_output_shape(self, input_shape):
        spatial = [None if n is None else n + b + a for n, (b, a) in zip(input_shape[1:-1], self.padding)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {{**super().get_config(), "padding": self.padding, "value": self.value}}
'''

_COUNTED_AVERAGE_POOLING = '''
{decorator}
class CountedAveragePooling(layers.Layer):
    """Average pooling over zero-padded windows, each divided by the cells it counts.

    `padding` is the declared padding per spatial dim; it counts in the divisor only when
    `count_include_pad` is true.  `ceil_extra` cells (ceil mode's overhang past the padding)
    are covered by the last window but never counted (PyTorch's rules).
    """

    def __init__(self, pool_size, strides, padding, ceil_extra, count_include_pad, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(k) for k in pool_size)
        self.strides = tuple(int(s) for s in strides)
        self.padding = tuple((int(before), int(after)) for before, after in padding)
        self.ceil_extra = tuple(int(e) for e in ceil_extra)
        self.count_include_pad = bool(count_include_pad)

    def _divisor(self, spatial):
        divisor = np.ones((), dtype="float32")
        for size, window, stride, (before, after), extra in zip(
            spatial, self.pool_size, self.strides, self.padding, self.ceil_extra
        ):
            out = (size + before + after + extra - window) // stride + 1
            low, high = (0, size + before + after) if self.count_include_pad else (before, before + size)
            starts = np.arange(out) * stride
            counts = np.minimum(starts + window, high) - np.maximum(starts, low)
            divisor = np.multiply.outer(divisor, counts.astype("float32"))
        return divisor.reshape((1,) + divisor.shape + (1,))

    def call(self, inputs):
        pads = ((0, 0),) + tuple((b, a + e) for (b, a), e in zip(self.padding, self.ceil_extra)) + ((0, 0),)
        padded = ops.pad(inputs, pads)
        mean = ops.average_pool(padded, self.pool_size, strides=self.strides, padding="valid", data_format="channels_last")
        window = float(np.prod(self.pool_size))
        return mean * window / ops.convert_to_tensor(self._divisor(inputs.shape[1:-1]))

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, window, stride, (before, after), extra in zip(
            input_shape[1:-1], self.pool_size, self.strides, self.padding, self.ceil_extra
        ):
            spatial.append(None if size is None else (size + before + after + extra - window) // stride + 1)
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {{
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "ceil_extra": self.ceil_extra,
            "count_include_pad": self.count_include_pad,
        }}
'''

_GELU_FUNCTIONS = {
    "gelu_erf": '''
{decorator}
def gelu_erf(x):
    """GELU, exact form: x * Phi(x) = x/2 * (1 + erf(x / sqrt(2))).

    Keras' built-in "gelu" lowers to Erfc on TensorFlow, which ONNX has no operator for.
    """
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))
''',
    "gelu_tanh": '''
{decorator}
def gelu_tanh(x):
    """GELU, tanh approximation: x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + ops.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
''',
}


def _helper_source(key: str) -> tuple[str, str]:
    """(class name, source) of helper ``key`` (e.g. ``PortableConv2D``)."""
    for rank, suffix in _RANK_SUFFIX.items():
        ones = repr((1,) * rank)
        if key == f"PortableConv{suffix}":
            return key, _PORTABLE_CONV.format(decorator=_DECORATOR, suffix=suffix, ones=ones)
        if key == f"CroppedConv{suffix}Transpose":
            return key, _CROPPED_CONV_TRANSPOSE.format(decorator=_DECORATOR, suffix=suffix, ones=ones)
    simple = {"ConstantPadding": _CONSTANT_PADDING, "CountedAveragePooling": _COUNTED_AVERAGE_POOLING, **_GELU_FUNCTIONS}
    return key, simple[key].format(decorator=_DECORATOR)


_NEEDS_NUMPY = {"CountedAveragePooling"}


# --------------------------------------------------------------------------------------------
# Emission context
# --------------------------------------------------------------------------------------------


class EmitContext:
    """What the layer emitters share: variable names, helper-layer names, helper classes used."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.taken: set[str] = {layer.name for layer in plan.layers} | {INPUT_VARIABLE, "input"}
        self.helpers: list[str] = []

    def variable(self, name: str) -> str:
        """The Python variable holding the output of layer (or model input) ``name``."""
        return INPUT_VARIABLE if name == "input" else _identifier(name)

    def helper_name(self, layer: LayerPlan, role: str) -> str:
        """A fresh ``<name>_<role>`` layer name (numbered if a spec layer already uses it)."""
        candidate = f"{layer.name}_{role}"
        number = 1
        while candidate in self.taken:
            number += 1
            candidate = f"{layer.name}_{role}{number}"
        self.taken.add(candidate)
        return _identifier(candidate)

    def use(self, helper: str) -> str:
        """Record that the module needs helper class ``helper``; returns its name."""
        if helper not in self.helpers:
            self.helpers.append(helper)
        return helper


def _identifier(name: str) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise CnnspecError(f"refusing to write {name!r} into generated source: not a Python identifier")
    return name


def _q(name: str) -> str:
    """A checked identifier as a Python string literal."""
    return repr(_identifier(name))


def _ints(values) -> str:
    """A tuple of ints as source text."""
    return repr(tuple(int(v) for v in values))


def _pairs(pads) -> str:
    return repr(tuple((int(b), int(a)) for b, a in pads))


def _float(value: float) -> str:
    return repr(float(value))


def _call(layer_expr: str, target: str, source: str) -> str:
    return f"{target} = {layer_expr}({source})"


def _activation_arg(layer: LayerPlan, ctx: EmitContext) -> str:
    act = layer.activation
    if act is None:
        return ""
    if act == "gelu":
        return f", activation={ctx.use('gelu_erf')}"
    if act not in KERAS_ACTIVATIONS:
        raise CnnspecError(f"layer '{layer.name}': no Keras mapping for activation '{act}'")
    return f", activation={KERAS_ACTIVATIONS[act]!r}"


def _zero_padding_lines(layer: LayerPlan, ctx: EmitContext, source: str) -> tuple[list[str], str]:
    """ZeroPadding{N}D <name>_pad when the plan pads; returns (lines, variable to read next)."""
    pads = layer.padding or ()
    if not any(b or a for b, a in pads):
        return [], source
    rank = len(pads)
    pad_name = ctx.helper_name(layer, "pad")
    arg = f"({int(pads[0][0])}, {int(pads[0][1])})" if rank == 1 else _pairs(pads)
    line = _call(f"layers.ZeroPadding{_RANK_SUFFIX[rank]}(padding={arg}, name={_q(pad_name)})", pad_name, source)
    return [line], pad_name


def _single_input(layer: LayerPlan, ctx: EmitContext) -> str:
    return ctx.variable(layer.inputs[0])


# --------------------------------------------------------------------------------------------
# Layer emitters: (layer, ctx) -> source lines
# --------------------------------------------------------------------------------------------


def _emit_conv(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    rank = layer.spatial_rank
    suffix = _RANK_SUFFIX[rank]
    spec = layer.spec
    source = _single_input(layer, ctx)
    target = ctx.variable(layer.name)
    groups = int(spec.groups)
    strided_dilation = max(layer.stride) > 1 and max(layer.dilation) > 1
    needs_helper = groups > 1 or strided_dilation
    lines: list[str] = []
    if layer.padding_mode == "same" and not needs_helper:
        padding = "same"
    else:
        lines, source = _zero_padding_lines(layer, ctx, source)
        padding = "valid"
    strides = (1,) * rank if strided_dilation else layer.stride
    args = (
        f"{int(spec.filters)}, {_ints(layer.kernel_size)}, strides={_ints(strides)}, padding={padding!r}, "
        f"dilation_rate={_ints(layer.dilation)}"
    )
    if groups > 1:
        args += f", groups={groups}"
    args += f", use_bias={bool(spec.bias)!r}{_activation_arg(layer, ctx)}"
    if needs_helper:
        cls = ctx.use(f"PortableConv{suffix}")
        if strided_dilation:
            args += f", subsample={_ints(layer.stride)}"
    else:
        cls = f"layers.Conv{suffix}"
    lines.append(_call(f"{cls}({args}, name={_q(layer.name)})", target, source))
    return lines


def _emit_conv_transpose(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    rank = layer.spatial_rank
    suffix = _RANK_SUFFIX[rank]
    spec = layer.spec
    source = _single_input(layer, ctx)
    target = ctx.variable(layer.name)
    crop = tuple((int(b), max(int(a), 0)) for b, a in layer.padding)
    extend = tuple(max(-int(a), 0) for _, a in layer.padding)
    strided_dilation = max(layer.stride) > 1 and max(layer.dilation) > 1
    common = f"{int(spec.filters)}, {_ints(layer.kernel_size)}"
    tail = f"dilation_rate={_ints(layer.dilation)}, use_bias={bool(spec.bias)!r}{_activation_arg(layer, ctx)}, name={_q(layer.name)}"
    if not strided_dilation:
        native = None
        if layer.padding_mode == "same":
            native = "padding='same'"
        elif layer.padding_mode == "valid" and spec.output_padding is None:
            native = "padding='valid'"
        elif not any(b or a for b, a in crop) and all(e < s for e, s in zip(extend, layer.stride)):
            native = f"padding='valid', output_padding={_ints(extend)}"
        if native is not None:
            expr = f"layers.Conv{suffix}Transpose({common}, strides={_ints(layer.stride)}, {native}, {tail})"
            return [_call(expr, target, source)]
    cls = ctx.use(f"CroppedConv{suffix}Transpose")
    strides, spread = ((1,) * rank, layer.stride) if strided_dilation else (layer.stride, (1,) * rank)
    expr = (
        f"{cls}({common}, strides={_ints(strides)}, padding='valid', crop={_pairs(crop)}, extend={_ints(extend)}, "
        f"spread={_ints(spread)}, {tail})"
    )
    return [_call(expr, target, source)]


def _depthwise_like(layer: LayerPlan, ctx: EmitContext, cls: str, extra_args: str) -> list[str]:
    spec = layer.spec
    source = _single_input(layer, ctx)
    strided_dilation = max(layer.stride) > 1 and max(layer.dilation) > 1
    lines: list[str] = []
    if layer.padding_mode == "same" and not strided_dilation:
        padding = "same"
    else:
        lines, source = _zero_padding_lines(layer, ctx, source)
        padding = "valid"
    args = (
        f"{extra_args}{_ints(layer.kernel_size)}, strides={_ints(layer.stride)}, padding={padding!r}, "
        f"depth_multiplier={int(spec.depth_multiplier)}, dilation_rate={_ints(layer.dilation)}, "
        f"use_bias={bool(spec.bias)!r}{_activation_arg(layer, ctx)}, name={_q(layer.name)}"
    )
    lines.append(_call(f"{cls}({args})", ctx.variable(layer.name), source))
    return lines


def _emit_depthwise(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    return _depthwise_like(layer, ctx, "layers.DepthwiseConv2D", "")


def _emit_separable(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    return _depthwise_like(layer, ctx, "layers.SeparableConv2D", f"{int(layer.spec.filters)}, ")


def _emit_pool(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    rank = layer.spatial_rank
    suffix = _RANK_SUFFIX[rank]
    source = _single_input(layer, ctx)
    target = ctx.variable(layer.name)
    is_max = layer.type.startswith("max")
    kind = "MaxPooling" if is_max else "AveragePooling"
    window = f"pool_size={_ints(layer.kernel_size)}, strides={_ints(layer.stride)}"
    pads = tuple((int(b), int(a)) for b, a in layer.padding)
    extra = tuple(int(e) for e in (layer.ceil_extra or (0,) * rank))
    if layer.padding_mode == "same":
        return [_call(f"layers.{kind}{suffix}({window}, padding='same', name={_q(layer.name)})", target, source)]
    padded = any(b or a for b, a in pads)
    overhang = any(extra)
    lines: list[str] = []
    if is_max:
        if padded or overhang:
            cls = ctx.use("ConstantPadding")
            pad_name = ctx.helper_name(layer, "pad")
            total = tuple((b, a + e) for (b, a), e in zip(pads, extra))
            lines.append(_call(f"{cls}({_pairs(total)}, value=float('-inf'), name={_q(pad_name)})", pad_name, source))
            source = pad_name
    elif overhang or (padded and not layer.count_include_pad):
        cls = ctx.use("CountedAveragePooling")
        expr = (
            f"{cls}({_ints(layer.kernel_size)}, {_ints(layer.stride)}, padding={_pairs(pads)}, "
            f"ceil_extra={_ints(extra)}, count_include_pad={bool(layer.count_include_pad)!r}, name={_q(layer.name)})"
        )
        return [_call(expr, target, source)]
    else:
        lines, source = _zero_padding_lines(layer, ctx, source)
    lines.append(_call(f"layers.{kind}{suffix}({window}, padding='valid', name={_q(layer.name)})", target, source))
    return lines


def _emit_global_pool(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    suffix = _RANK_SUFFIX[layer.spatial_rank]
    kind = "Average" if layer.type == "global_avg_pool" else "Max"
    expr = f"layers.Global{kind}Pooling{suffix}(keepdims={bool(layer.spec.keepdims)!r}, name={_q(layer.name)})"
    return [_call(expr, ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_batch_norm(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    spec = layer.spec
    # Spec momentum is PyTorch's (weight of the new batch); Keras keeps 1 - m of the old average.
    keras_momentum = 1.0 - float(spec.momentum)
    expr = (
        f"layers.BatchNormalization(axis=-1, epsilon={_float(spec.epsilon)}, momentum={_float(keras_momentum)}, "
        f"name={_q(layer.name)})"
    )
    return [_call(expr, ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_dropout(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    if layer.type == "spatial_dropout":
        cls = f"layers.SpatialDropout{_RANK_SUFFIX[layer.spatial_rank]}"
    else:
        cls = "layers.Dropout"
    expr = f"{cls}({_float(layer.spec.rate)}, name={_q(layer.name)})"
    return [_call(expr, ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_flatten(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    # Keras flattens channels-last (H, W, C order); weight transfer permutes by flat_segments.
    return [_call(f"layers.Flatten(name={_q(layer.name)})", ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_dense(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    spec = layer.spec
    expr = f"layers.Dense({int(spec.units)}, use_bias={bool(spec.bias)!r}{_activation_arg(layer, ctx)}, name={_q(layer.name)})"
    return [_call(expr, ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_activation(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    spec = layer.spec
    name = _q(layer.name)
    kind = layer.type
    if kind == "relu":
        expr = f"layers.ReLU(name={name})"
    elif kind == "relu6":
        expr = f"layers.ReLU(max_value=6.0, name={name})"
    elif kind == "leaky_relu":
        expr = f"layers.LeakyReLU(negative_slope={_float(spec.negative_slope)}, name={name})"
    elif kind == "elu":
        expr = f"layers.ELU(alpha={_float(spec.alpha)}, name={name})"
    elif kind == "softmax":
        expr = f"layers.Softmax(axis=-1, name={name})"
    elif kind == "gelu":
        function = ctx.use("gelu_tanh" if spec.approximate == "tanh" else "gelu_erf")
        expr = f"layers.Activation({function}, name={name})"
    elif kind in KERAS_ACTIVATIONS:
        expr = f"layers.Activation({KERAS_ACTIVATIONS[kind]!r}, name={name})"
    else:
        raise CnnspecError(f"layer '{layer.name}': no Keras emitter for activation type '{kind}'")
    return [_call(expr, ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_prelu(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    rank = len(layer.input_shape) - 1  # 0 for flat features
    if layer.spec.per_channel:
        shared = tuple(range(1, rank + 1))  # one slope per channel (per feature when flat)
    else:
        shared = tuple(range(1, rank + 2))  # one slope for everything
    shared_arg = "None" if not shared else repr(list(shared))
    expr = (
        f"layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes={shared_arg}, "
        f"name={_q(layer.name)})"
    )
    return [_call(expr, ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_upsample(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    rank = layer.spatial_rank
    factors = layer.kernel_size
    size = str(int(factors[0])) if rank == 1 else _ints(factors)
    if layer.spec.mode == "bilinear":
        # Keras resizes with half-pixel centres, PyTorch's align_corners=False (checked in the tests).
        expr = f"layers.UpSampling2D(size={size}, interpolation='bilinear', name={_q(layer.name)})"
    else:
        expr = f"layers.UpSampling{_RANK_SUFFIX[rank]}(size={size}, name={_q(layer.name)})"
    return [_call(expr, ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_zero_pad(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    rank = layer.spatial_rank
    pads = layer.padding
    arg = f"({int(pads[0][0])}, {int(pads[0][1])})" if rank == 1 else _pairs(pads)
    expr = f"layers.ZeroPadding{_RANK_SUFFIX[rank]}(padding={arg}, name={_q(layer.name)})"
    return [_call(expr, ctx.variable(layer.name), _single_input(layer, ctx))]


def _emit_merge(layer: LayerPlan, ctx: EmitContext) -> list[str]:
    sources = "[" + ", ".join(ctx.variable(name) for name in layer.inputs) + "]"
    if layer.type == "add":
        expr = f"layers.Add(name={_q(layer.name)})"
    else:
        expr = f"layers.Concatenate(axis=-1, name={_q(layer.name)})"
    return [_call(expr, ctx.variable(layer.name), sources)]


_BY_FAMILY: dict[str, Callable[[LayerPlan, EmitContext], list[str]]] = {
    "conv": _emit_conv, "conv_transpose": _emit_conv_transpose, "depthwise_conv": _emit_depthwise,
    "separable_conv": _emit_separable, "pool": _emit_pool, "global_pool": _emit_global_pool,
    "batch_norm": _emit_batch_norm, "dropout": _emit_dropout, "flatten": _emit_flatten, "dense": _emit_dense,
    "activation": _emit_activation, "prelu": _emit_prelu, "upsample": _emit_upsample, "zero_pad": _emit_zero_pad,
    "merge": _emit_merge,
}

_FAMILY_OF_TYPE = {
    **{t: "conv" for t in ("conv1d", "conv2d", "conv3d")},
    **{t: "conv_transpose" for t in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d")},
    "depthwise_conv2d": "depthwise_conv", "separable_conv2d": "separable_conv",
    **{f"{k}_pool{r}d": "pool" for k in ("max", "avg") for r in (1, 2, 3)},
    "global_avg_pool": "global_pool", "global_max_pool": "global_pool", "batch_norm": "batch_norm",
    "dropout": "dropout", "spatial_dropout": "dropout", "flatten": "flatten", "dense": "dense",
    **{t: "activation" for t in (
        "relu", "relu6", "sigmoid", "tanh", "softmax", "silu", "hard_swish", "hard_sigmoid", "leaky_relu", "elu", "gelu"
    )},
    "prelu": "prelu", "upsample": "upsample", **{f"zero_pad{r}d": "zero_pad" for r in (1, 2, 3)},
    "add": "merge", "concat": "merge",
}

#: One emitter per spec layer type: ``EMITTERS[type](layer_plan, ctx) -> list of source lines``.
EMITTERS: dict[str, Callable[[LayerPlan, EmitContext], list[str]]] = {
    layer_type: _BY_FAMILY[family] for layer_type, family in _FAMILY_OF_TYPE.items()
}


# --------------------------------------------------------------------------------------------
# Module assembly
# --------------------------------------------------------------------------------------------


def emit_source(plan: Plan) -> str:
    """Generate the stand-alone Keras 3 module for ``plan``.

    Args:
        plan: a resolved :class:`~cnnspec.engine.plan.Plan`.

    Returns:
        Python source importing only keras (and numpy when a helper layer needs it), defining
        ``CNNSPEC_LAYER_NAMES``, the helper layers the model uses and ``build_<name>()``.

    Raises:
        CnnspecError: a layer type has no emitter, or a name is not a Python identifier or
            collides with a helper class name the module defines.
    """
    ctx = EmitContext(plan)
    body: list[str] = []
    for layer in plan.layers:
        emit = EMITTERS.get(layer.type)
        if emit is None:
            raise CnnspecError(f"layer '{layer.name}': the Keras emitter has no entry for type '{layer.type}'")
        body.extend(emit(layer, ctx))

    for helper in ctx.helpers:
        if helper in ctx.taken:
            raise CnnspecError(
                f"layer name '{helper}' collides with the helper layer class '{helper}' the Keras module defines; "
                "rename that layer"
            )

    func = _identifier(function_name(plan.name))
    in_shape = _shape_text(_channels_last(plan.input_shape))
    out_shape = _shape_text(plan.layers[-1].output_shape_last)
    layout = plan.layouts[1]
    needs_numpy = any(h in _NEEDS_NUMPY for h in ctx.helpers)

    lines = [
        '"""Keras 3 model ' + repr(_identifier(plan.name)) + ", generated by cnnspec from spec " + repr(plan.name) + ".",
        "",
        f"Layout {layout} (channels last). Input shape {in_shape}, output shape {out_shape} (batch excluded).",
        f"Layers: {len(plan.layers)}; parameters: {plan.total_params:,} ({plan.trainable_params:,} trainable).",
        "Every spec layer is the Keras layer of the same name; helper layers are called <name>_<role>.",
        '"""',
        "",
        "import keras",
    ]
    if needs_numpy:
        lines.append("import numpy as np")
    lines += [
        "from keras import layers, ops",
        "",
        "CNNSPEC_LAYER_NAMES = [",
        *[f"    {_q(layer.name)}," for layer in plan.layers],
        "]",
    ]
    for helper in ctx.helpers:
        _, text = _helper_source(helper)
        lines.append("")
        lines.extend(text.rstrip("\n").split("\n"))
    lines += [
        "",
        "",
        f"def {func}():",
        f'    """Build the functional keras.Model {plan.name!r}: input {in_shape} {layout}, output {out_shape}."""',
        f"    {INPUT_VARIABLE} = keras.Input(shape={in_shape}, name='input')",
        *[f"    {line}" for line in body],
        f"    return keras.Model(inputs={INPUT_VARIABLE}, outputs={ctx.variable(plan.layers[-1].name)}, name={_q(plan.name)})",
        "",
    ]
    return "\n".join(lines)


def _channels_last(shape) -> tuple[int, ...]:
    return tuple(shape[1:]) + (shape[0],) if len(shape) > 1 else tuple(shape)


def _shape_text(shape) -> str:
    return repr(tuple(int(v) for v in shape))
