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

from pathlib import Path

from cnnspec.engine.plan import Plan
from cnnspec.errors import CnnspecError
from cnnspec.layers import REGISTRY
from cnnspec.targets.helper_source import class_source
from cnnspec.targets.keras.code import (  # noqa: F401  (KERAS_ACTIVATIONS: re-exported)
    INPUT_VARIABLE,
    KERAS_ACTIVATIONS,
    RANK_SUFFIX,
    EmitContext,
    identifier,
    quoted,
)
from cnnspec.targets.naming import function_name

_RANK_SUFFIX = RANK_SUFFIX

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

_HELPERS_FILE = Path(__file__).with_name("helpers.py")


def _helper_source(key: str) -> tuple[str, str]:
    """(class name, source) of helper ``key`` (e.g. ``PortableConv2D``)."""
    for rank, suffix in _RANK_SUFFIX.items():
        ones = repr((1,) * rank)
        if key == f"PortableConv{suffix}":
            return key, _PORTABLE_CONV.format(decorator=_DECORATOR, suffix=suffix, ones=ones)
        if key == f"CroppedConv{suffix}Transpose":
            return key, _CROPPED_CONV_TRANSPOSE.format(decorator=_DECORATOR, suffix=suffix, ones=ones)
    simple = {"ConstantPadding": _CONSTANT_PADDING, "CountedAveragePooling": _COUNTED_AVERAGE_POOLING, **_GELU_FUNCTIONS}
    if key in simple:
        return key, simple[key].format(decorator=_DECORATOR)
    return key, class_source(_HELPERS_FILE, key)


_NEEDS_NUMPY = {"CountedAveragePooling"}


#: One emitter per spec layer type, from the layer registry: ``EMITTERS[type](layer_plan, ctx) -> source lines``.
EMITTERS = {layer_type: REGISTRY.definition(layer_type).keras for layer_type in REGISTRY.types()}


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

    func = identifier(function_name(plan.name))
    in_shape = _shape_text(_channels_last(plan.input_shape))
    out_shape = _shape_text(plan.layers[-1].output_shape_last)
    layout = plan.layouts[1]
    helper_texts = [_helper_source(helper)[1] for helper in ctx.helpers]
    needs_numpy = any(h in _NEEDS_NUMPY for h in ctx.helpers) or any("np." in text for text in helper_texts)
    needs_math = any("math." in text for text in helper_texts)

    lines = [
        '"""Keras 3 model ' + repr(identifier(plan.name)) + ", generated by cnnspec from spec " + repr(plan.name) + ".",
        "",
        f"Layout {layout} (channels last). Input shape {in_shape}, output shape {out_shape} (batch excluded).",
        f"Layers: {len(plan.layers)}; parameters: {plan.total_params:,} ({plan.trainable_params:,} trainable).",
        "Every spec layer is the Keras layer of the same name; helper layers are called <name>_<role>.",
        '"""',
        "",
    ]
    if needs_math:
        lines += ["import math", ""]
    lines.append("import keras")
    if needs_numpy:
        lines.append("import numpy as np")
    lines += [
        "from keras import layers, ops",
        "",
        "CNNSPEC_LAYER_NAMES = [",
        *[f"    {quoted(layer.name)}," for layer in plan.layers],
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
        f"    return keras.Model(inputs={INPUT_VARIABLE}, outputs={ctx.variable(plan.layers[-1].name)}, name={quoted(plan.name)})",
        "",
    ]
    return "\n".join(lines)


def _channels_last(shape) -> tuple[int, ...]:
    return tuple(shape[1:]) + (shape[0],) if len(shape) > 1 else tuple(shape)


def _shape_text(shape) -> str:
    return repr(tuple(int(v) for v in shape))
