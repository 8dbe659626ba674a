"""Keras helper layers and functions that generated models include where no Keras layer is exact.

Each helper is written once here, rank-generic, and copied verbatim into a generated module
that uses it (:func:`cnnspec.targets.helper_text.definition_text` reads this file without
importing it).  So these definitions may use only what a generated module
imports: ``keras``, ``layers`` and ``ops`` from keras, and ``np`` (numpy); never cnnspec.
Each is serializable (``get_config``; registered under the package ``cnnspec``), never a
``Lambda``.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

# The names a generated module imports for each helper (``np`` only for those listed).
NEEDS_NUMPY = frozenset({"CountedAveragePooling", "AdaptivePooling", "Resize", "Padding"})
# ``math`` only for those listed.
NEEDS_MATH = frozenset({"Resize"})


@keras.saving.register_keras_serializable(package="cnnspec")
class PortableConv(layers.Layer):
    """N-d convolution computed group by group, and at stride 1 then subsampled when strided and dilated.

    Keras' grouped convolution does not export to ONNX on TensorFlow, and Keras refuses
    strides > 1 with dilation_rate > 1; both are computed exactly here.  The rank is that of
    ``kernel_size`` (a tuple); the kernel keeps Keras' Conv layout
    (*kernel_size, in_channels / groups, filters) and is called ``kernel``, the bias ``bias``.
    ``subsample`` keeps every s-th output cell per axis (the stride, when computed at stride 1).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=None,
        padding="valid",
        dilation_rate=None,
        groups=1,
        use_bias=True,
        activation=None,
        subsample=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        ones = (1,) * len(self.kernel_size)
        self.strides = tuple(int(s) for s in strides or ones)
        self.padding = padding
        self.dilation_rate = tuple(int(d) for d in dilation_rate or ones)
        self.groups = int(groups)
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)
        self.subsample = tuple(int(s) for s in subsample or ones)

    def build(self, input_shape):
        group_in = input_shape[-1] // self.groups
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, group_in, self.filters)
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )

    def call(self, inputs):
        group_in = self.kernel.shape[-2]
        group_out = self.filters // self.groups
        pieces = []
        for group in range(self.groups):
            pieces.append(
                ops.conv(
                    inputs[..., group * group_in : (group + 1) * group_in],
                    self.kernel[..., group * group_out : (group + 1) * group_out],
                    strides=self.strides,
                    padding=self.padding,
                    dilation_rate=self.dilation_rate,
                    data_format="channels_last",
                )
            )
        outputs = pieces[0] if len(pieces) == 1 else ops.concatenate(pieces, axis=-1)
        outputs = outputs[(slice(None),) + tuple(slice(None, None, s) for s in self.subsample)]
        if self.bias is not None:
            outputs = outputs + self.bias
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        shape = [input_shape[0]]
        for size, k, s, d, step in zip(
            input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate, self.subsample
        ):
            span = d * (k - 1) + 1
            if size is None:
                shape.append(None)
            else:
                out = -(-size // s) if self.padding == "same" else (size - span) // s + 1
                shape.append(-(-out // step))
        return (*shape, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "groups": self.groups,
            "use_bias": self.use_bias,
            "activation": keras.activations.serialize(self.activation),
            "subsample": self.subsample,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class CroppedConvTranspose(layers.Layer):
    """N-d transposed convolution as a crop of its full output.

    The full output has (in - 1) * stride + dilation * (k - 1) + 1 cells per axis; ``extend``
    cells are appended at the end of each axis (they hold only the bias), then ``crop``
    (before, after) cells are removed.  With dilation > 1 the kernel is dilated explicitly
    (zeros between taps) so any stride works.  The rank is that of ``kernel_size``; the kernel
    keeps Keras' ConvTranspose layout (*kernel_size, filters, in_channels).
    """

    def __init__(
        self,
        filters,
        kernel_size,
        strides=None,
        dilation_rate=None,
        crop=None,
        extend=None,
        use_bias=True,
        activation=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        rank = len(self.kernel_size)
        self.strides = tuple(int(s) for s in strides or (1,) * rank)
        self.dilation_rate = tuple(int(d) for d in dilation_rate or (1,) * rank)
        self.crop = tuple((int(before), int(after)) for before, after in crop or ((0, 0),) * rank)
        self.extend = tuple(int(e) for e in extend or (0,) * rank)
        self.use_bias = bool(use_bias)
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel", shape=(*self.kernel_size, self.filters, input_shape[-1])
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )

    def _dilated_kernel(self):
        kernel = self.kernel
        for axis, rate in enumerate(self.dilation_rate):
            if rate > 1:
                taps = kernel.shape[axis]
                stacked = ops.stack([kernel] + [ops.zeros_like(kernel)] * (rate - 1), axis=axis + 1)
                shape = list(kernel.shape)
                shape[axis] = taps * rate
                kernel = ops.reshape(stacked, shape)
                shape[axis] = rate * (taps - 1) + 1
                kernel = ops.slice(kernel, [0] * len(shape), shape)
        return kernel

    def call(self, inputs):
        outputs = ops.conv_transpose(
            inputs,
            self._dilated_kernel(),
            strides=self.strides,
            padding="valid",
            output_padding=0,
            data_format="channels_last",
        )
        if any(self.extend):
            outputs = ops.pad(outputs, ((0, 0), *((0, e) for e in self.extend), (0, 0)))
        index = [slice(None)]
        for before, after in self.crop:
            index.append(slice(before, -after if after else None))
        outputs = outputs[tuple(index) + (slice(None),)]
        if self.bias is not None:
            outputs = outputs + self.bias  # the bias also fills the extended cells
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        shape = [input_shape[0]]
        for axis, size in enumerate(input_shape[1:-1]):
            span = self.dilation_rate[axis] * (self.kernel_size[axis] - 1) + 1
            if size is None:
                shape.append(None)
            else:
                full = (size - 1) * self.strides[axis] + span + self.extend[axis]
                shape.append(full - self.crop[axis][0] - self.crop[axis][1])
        return (*shape, self.filters)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "dilation_rate": self.dilation_rate,
            "crop": self.crop,
            "extend": self.extend,
            "use_bias": self.use_bias,
            "activation": keras.activations.serialize(self.activation),
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class ConstantPadding(layers.Layer):
    """Pads the spatial dims (before, after) with a constant; -inf before a max pool never wins."""

    def __init__(self, padding, value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = tuple((int(before), int(after)) for before, after in padding)
        self.value = float(value)

    def call(self, inputs):
        return ops.pad(inputs, ((0, 0), *self.padding, (0, 0)), constant_values=self.value)

    def compute_output_shape(self, input_shape):
        spatial = [
            None if n is None else n + b + a for n, (b, a) in zip(input_shape[1:-1], self.padding)
        ]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


@keras.saving.register_keras_serializable(package="cnnspec")
class SamePadding(layers.Layer):
    """TensorFlow's SAME padding (SAME_UPPER), worked out from each input's size (channels last).

    Per spatial axis of length n the windows need total = max((ceil(n / stride) - 1) * stride
    + dilation * (kernel - 1) + 1 - n, 0) padded cells: total // 2 before, the rest after.  With
    a stride > 1 the split depends on n.  Used where Keras' padding="same" is not available
    (strides that differ per axis, grouped or strided dilated convolutions); ``value`` fills
    the cells (-inf before a max pool).  The sizes are read with ops.shape, so unknown
    spatial sizes are fine.
    """

    def __init__(self, kernel_size, strides, dilation_rate=None, value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.strides = tuple(int(s) for s in strides)
        self.dilation_rate = tuple(int(d) for d in dilation_rate or (1,) * len(self.kernel_size))
        self.value = float(value)

    def call(self, inputs):
        shape = ops.shape(inputs)
        pads = [(0, 0)]
        for axis, (k, s, d) in enumerate(zip(self.kernel_size, self.strides, self.dilation_rate)):
            n = shape[axis + 1]
            total = ops.maximum(((n + s - 1) // s - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        return ops.pad(inputs, (*pads, (0, 0)), constant_values=self.value)

    def compute_output_shape(self, input_shape):
        spatial = []
        for n, k, s, d in zip(
            input_shape[1:-1], self.kernel_size, self.strides, self.dilation_rate
        ):
            spatial.append(
                None if n is None else n + max(((n + s - 1) // s - 1) * s + d * (k - 1) + 1 - n, 0)
            )
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "dilation_rate": self.dilation_rate,
            "value": self.value,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class CeilModePadding(layers.Layer):
    """A pool's declared padding plus PyTorch's ceil-mode overhang, worked out from each input's size.

    ``padding`` is (before, after) per spatial dim.  With ceil_mode the output has
    ceil((n + before + after - pool) / stride) + 1 cells, one fewer when the last window would
    start in the right padding; the cells that window covers past the padding are padded
    with ``value`` too (-inf before a max pool).  The sizes are read with ops.shape.
    """

    def __init__(self, pool_size, strides, padding, value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(k) for k in pool_size)
        self.strides = tuple(int(s) for s in strides)
        self.padding = tuple((int(before), int(after)) for before, after in padding)
        self.value = float(value)

    @staticmethod
    def overhang(n, k, s, before, after):
        """Cells past the padding that the last ceil-mode window covers (ints or tensors)."""
        out = (n + before + after - k + s - 1) // s + 1
        out = out - ops.cast(ops.greater_equal((out - 1) * s, n + before), "int32")
        return ops.maximum((out - 1) * s + k - (n + before + after), 0)

    def call(self, inputs):
        shape = ops.shape(inputs)
        pads = [(0, 0)]
        for axis, (k, s, (before, after)) in enumerate(
            zip(self.pool_size, self.strides, self.padding)
        ):
            pads.append((before, after + self.overhang(shape[axis + 1], k, s, before, after)))
        return ops.pad(inputs, (*pads, (0, 0)), constant_values=self.value)

    def compute_output_shape(self, input_shape):
        spatial = []
        for n, k, s, (before, after) in zip(
            input_shape[1:-1], self.pool_size, self.strides, self.padding
        ):
            if n is None:
                spatial.append(None)
                continue
            out = (n + before + after - k + s - 1) // s + 1
            out -= (out - 1) * s >= n + before
            spatial.append(max((out - 1) * s + k, n + before + after))
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": self.padding,
            "value": self.value,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class CountedAveragePooling(layers.Layer):
    """Average pooling over zero-padded windows, each divided by the cells it counts.

    ``padding`` is the declared padding per spatial dim; it counts in the divisor only when
    ``count_include_pad`` is true.  ``ceil_extra`` cells (ceil mode's overhang past the
    padding) are covered by the last window but never counted (PyTorch's rules).  Where
    these depend on the input's size they are worked out per input: ``padding="same"`` is
    TensorFlow's SAME padding (never counted), and ``ceil_mode`` gives PyTorch's ceil-mode
    overhang (``ceil_extra`` is not used then); the divisor is then the same pool over a
    one-channel mask of the counted cells.
    """

    def __init__(
        self,
        pool_size,
        strides,
        padding,
        ceil_extra=None,
        count_include_pad=False,
        ceil_mode=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(k) for k in pool_size)
        self.strides = tuple(int(s) for s in strides)
        self.same = padding == "same"
        rank = len(self.pool_size)
        self.padding = (
            ((0, 0),) * rank if self.same else tuple((int(b), int(a)) for b, a in padding)
        )
        self.ceil_extra = tuple(int(e) for e in ceil_extra or (0,) * rank)
        self.count_include_pad = bool(count_include_pad)
        self.ceil_mode = bool(ceil_mode)

    def _divisor(self, spatial):
        divisor = np.ones((), dtype="float32")
        for size, window, stride, (before, after), extra in zip(
            spatial, self.pool_size, self.strides, self.padding, self.ceil_extra
        ):
            out = (size + before + after + extra - window) // stride + 1
            low, high = (
                (0, size + before + after) if self.count_include_pad else (before, before + size)
            )
            starts = np.arange(out) * stride
            counts = np.minimum(starts + window, high) - np.maximum(starts, low)
            divisor = np.multiply.outer(divisor, counts.astype("float32"))
        return divisor.reshape((1, *divisor.shape, 1))

    def _pool(self, values, pads):
        return ops.average_pool(
            ops.pad(values, pads),
            self.pool_size,
            strides=self.strides,
            padding="valid",
            data_format="channels_last",
        )

    def _runtime_pads(self, inputs):
        """(declared, overhang) pads per axis for this input's size (SAME or ceil mode)."""
        shape = ops.shape(inputs)
        declared, overhang = [], []
        for axis, (k, s, (before, after)) in enumerate(
            zip(self.pool_size, self.strides, self.padding)
        ):
            n = shape[axis + 1]
            extra = 0
            if self.same:
                total = ops.maximum(((n + s - 1) // s - 1) * s + k - n, 0)
                before, after = total // 2, total - total // 2
            else:
                out = (n + before + after - k + s - 1) // s + 1
                out = out - ops.cast(ops.greater_equal((out - 1) * s, n + before), "int32")
                extra = ops.maximum((out - 1) * s + k - (n + before + after), 0)
            declared.append((before, after))
            overhang.append((0, extra))
        return declared, overhang

    def call(self, inputs):
        if self.same or self.ceil_mode:
            declared, overhang = self._runtime_pads(inputs)
            total = [(b, a + e) for (b, a), (_, e) in zip(declared, overhang)]
            mean = self._pool(inputs, ((0, 0), *total, (0, 0)))
            mask = ops.pad(
                ops.ones_like(inputs[..., :1]),
                ((0, 0), *declared, (0, 0)),
                constant_values=1.0 if self.count_include_pad else 0.0,
            )
            return mean / self._pool(mask, ((0, 0), *overhang, (0, 0)))
        pads = ((0, 0), *((b, a + e) for (b, a), e in zip(self.padding, self.ceil_extra)), (0, 0))
        mean = self._pool(inputs, pads)
        window = float(np.prod(self.pool_size))
        return mean * window / ops.convert_to_tensor(self._divisor(inputs.shape[1:-1]))

    def compute_output_shape(self, input_shape):
        spatial = []
        for size, window, stride, (before, after), extra in zip(
            input_shape[1:-1], self.pool_size, self.strides, self.padding, self.ceil_extra
        ):
            if size is None:
                spatial.append(None)
            elif self.same:
                spatial.append(-(-size // stride))
            elif self.ceil_mode:
                out = -(-(size + before + after - window) // stride) + 1
                spatial.append(out - ((out - 1) * stride >= size + before))
            else:
                spatial.append((size + before + after + extra - window) // stride + 1)
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "strides": self.strides,
            "padding": "same" if self.same else self.padding,
            "ceil_extra": self.ceil_extra,
            "count_include_pad": self.count_include_pad,
            "ceil_mode": self.ceil_mode,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
def gelu_erf(x):
    """GELU, exact form: x * Phi(x) = x/2 * (1 + erf(x / sqrt(2))).

    Keras' built-in "gelu" lowers to Erfc on TensorFlow, which ONNX has no operator for.
    """
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


@keras.saving.register_keras_serializable(package="cnnspec")
def gelu_tanh(x):
    """GELU, tanh approximation: x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))."""
    return 0.5 * x * (1.0 + ops.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


# ----------------------------------------------------------------------------------------------
# Model-zoo catalog helpers (issue 10): adaptive pooling, resize, channel shuffle/slice, padding
# modes, layer scale, stochastic depth.
# ----------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="cnnspec")
class AdaptivePooling(layers.Layer):
    """PyTorch's adaptive average or max pooling, channels last, any number of spatial dims.

    Output cell i of an axis of length n pools input cells [floor(i*n/out), ceil((i+1)*n/out)),
    so windows overlap and differ in length when out does not divide n (10 -> 7: (0, 2), (1, 3),
    (2, 5), ...).  Both reductions are separable: one axis at a time.  The average is a matrix
    product with the per-axis averaging matrix; the max is a max over each window's slice.
    """

    def __init__(self, output_size: tuple[int, ...], reduction: str = "average", **kwargs):
        super().__init__(**kwargs)
        self.output_size = tuple(int(n) for n in output_size)
        self.reduction = reduction

    @staticmethod
    def windows(n: int, out: int) -> list[tuple[int, int]]:
        return [((i * n) // out, ((i + 1) * n + out - 1) // out) for i in range(out)]

    @staticmethod
    def _average_matrix(windows: list[tuple[int, int]], length: int) -> np.ndarray:
        matrix = np.zeros((length, len(windows)), dtype="float32")
        for i, (start, end) in enumerate(windows):
            matrix[start:end, i] = 1.0 / (end - start)
        return matrix

    def call(self, inputs):
        # the windows follow each input's size
        outputs = inputs
        for axis, out in enumerate(self.output_size):
            position = axis + 1
            length = inputs.shape[position]
            windows = self.windows(length, out)
            if self.reduction == "average":
                matrix = ops.convert_to_tensor(self._average_matrix(windows, length), inputs.dtype)
                outputs = ops.moveaxis(
                    ops.matmul(ops.moveaxis(outputs, position, -1), matrix), -1, position
                )
            else:
                index = [slice(None)] * len(outputs.shape)
                pieces = []
                for start, end in windows:
                    index[position] = slice(start, end)
                    pieces.append(ops.max(outputs[tuple(index)], axis=position, keepdims=True))
                outputs = ops.concatenate(pieces, axis=position)
        return outputs

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.output_size, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "output_size": self.output_size,
            "reduction": self.reduction,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class Resize(layers.Layer):
    """Resize the spatial dims to `size`, one axis at a time, as a product with interpolation matrices.

    Per axis (input n cells, output m), r = n/m, or (n-1)/(m-1) with `align_corners`:
    "nearest" reads cell floor(i*r) (PyTorch nearest), "nearest_exact" floor((i+0.5)*r) (PyTorch
    nearest-exact, TensorFlow nearest); "linear" and "cubic" sample x = (i+0.5)*r - 0.5 (i*r with
    align_corners), linear clamping x at 0, cubic with Keys' kernel of coefficient
    `cubic_coefficient` (PyTorch -0.75, TensorFlow -0.5) over cells floor(x)-1 .. floor(x)+2;
    taps outside the input read the edge cell, or with `exclude_outside` get weight 0 and the
    rest is renormalised (TensorFlow).  With `scale` instead of `size`, each input's axes of
    length n become floor(n * scale) cells.
    """

    def __init__(
        self,
        size: tuple[int, ...] | None = None,
        mode: str = "linear",
        align_corners: bool = False,
        cubic_coefficient: float = -0.75,
        exclude_outside: bool = False,
        scale: tuple[float, ...] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.size = None if size is None else tuple(int(n) for n in size)
        self.scale = None if scale is None else tuple(float(f) for f in scale)
        self.mode = mode
        self.align_corners = bool(align_corners)
        self.cubic_coefficient = float(cubic_coefficient)
        self.exclude_outside = bool(exclude_outside)

    @staticmethod
    def _keys(distance: float, a: float) -> float:
        d = abs(distance)
        if d <= 1.0:
            return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
        if d < 2.0:
            return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
        return 0.0

    def _matrix(self, n: int, m: int) -> np.ndarray:
        """(n, m) matrix: column i holds the weights output cell i gives the input cells."""
        if self.align_corners:
            ratio = (n - 1) / (m - 1) if m > 1 else 0.0
        else:
            ratio = n / m
        matrix = np.zeros((n, m), dtype="float64")
        for i in range(m):
            if self.mode in ("nearest", "nearest_exact"):
                centre = np.float32(i + 0.5 if self.mode == "nearest_exact" else i)
                matrix[min(math.floor(centre * np.float32(ratio)), n - 1), i] = 1.0
                continue
            x = i * ratio if self.align_corners else (i + 0.5) * ratio - 0.5
            if self.mode == "linear":
                x = max(x, 0.0)
                low = min(math.floor(x), n - 1)
                matrix[low, i] += 1.0 - (x - low)
                matrix[min(low + 1, n - 1), i] += x - low
                continue
            low = math.floor(x)
            taps = [
                (low + k, self._keys(x - low - k, self.cubic_coefficient)) for k in (-1, 0, 1, 2)
            ]
            if self.exclude_outside:
                taps = [(j, w) for j, w in taps if 0 <= j < n]
                total = sum(w for _, w in taps)
                taps = [(j, w / total) for j, w in taps]
            for j, w in taps:
                matrix[min(max(j, 0), n - 1), i] += w
        return matrix.astype("float32")

    def _outputs(self, lengths):
        if self.size is not None:
            return self.size
        return tuple(None if n is None else math.floor(n * f) for n, f in zip(lengths, self.scale))

    def call(self, inputs):
        # the interpolation matrices follow each input's size
        lengths = tuple(inputs.shape[1:-1])
        outputs = inputs
        for axis, (n, m) in enumerate(zip(lengths, self._outputs(lengths))):
            position = axis + 1
            weights = ops.convert_to_tensor(self._matrix(n, m), inputs.dtype)
            outputs = ops.moveaxis(
                ops.matmul(ops.moveaxis(outputs, position, -1), weights), -1, position
            )
        return outputs

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._outputs(input_shape[1:-1]), input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "scale": self.scale,
            "mode": self.mode,
            "align_corners": self.align_corners,
            "cubic_coefficient": self.cubic_coefficient,
            "exclude_outside": self.exclude_outside,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class ChannelShuffle(layers.Layer):
    """ShuffleNet's channel shuffle on channels-last tensors.

    The channels are a (groups, C/groups) matrix read out column by column: output k*groups + g
    is input g*(C/groups) + k (8 channels, 2 groups: [0, 4, 1, 5, 2, 6, 3, 7]).  Only the last
    axis is reshaped; PyTorch's view(N, g, C/g, H, W) written on an NHWC tensor would mix pixels.
    """

    def __init__(self, groups: int, **kwargs):
        super().__init__(**kwargs)
        self.groups = int(groups)

    def call(self, inputs):
        channels = inputs.shape[-1]
        spatial = tuple(inputs.shape[1:-1])
        grid = ops.reshape(inputs, (-1, *spatial, self.groups, channels // self.groups))
        rank = len(grid.shape)
        order = (*range(rank - 2), rank - 1, rank - 2)
        return ops.reshape(ops.transpose(grid, order), (-1, *spatial, channels))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="cnnspec")
class PixelShuffle(layers.Layer):
    """PyTorch's pixel shuffle on channels-last tensors: (H, W, C·r²) -> (H·r, W·r, C).

    Output channel c at offset (i, j) of each r×r block is input channel c·r² + i·r + j, so the
    channels are split as (C, r, r); TensorFlow's depth_to_space splits them as (r, r, C).
    """

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        r = self.factor
        shape = ops.shape(inputs)
        height, width, channels = shape[1], shape[2], inputs.shape[-1] // (r * r)
        blocks = ops.reshape(inputs, (-1, height, width, channels, r, r))
        blocks = ops.transpose(blocks, (0, 1, 4, 2, 5, 3))
        return ops.reshape(blocks, (-1, height * r, width * r, channels))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        r = self.factor
        scaled = [None if n is None else n * r for n in (height, width)]
        return (batch, *scaled, channels // (r * r))

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="cnnspec")
class PixelUnshuffle(layers.Layer):
    """PyTorch's pixel unshuffle on channels-last tensors: (H, W, C) -> (H / r, W / r, C·r²).

    Channel c at offset (i, j) of each r×r block goes to channel c·r² + i·r + j, so the output
    channels are ordered (C, r, r); TensorFlow's space_to_depth orders them (r, r, C).
    """

    def __init__(self, factor: int, **kwargs):
        super().__init__(**kwargs)
        self.factor = int(factor)

    def call(self, inputs):
        r = self.factor
        shape = ops.shape(inputs)
        height, width, channels = shape[1] // r, shape[2] // r, inputs.shape[-1]
        blocks = ops.reshape(inputs, (-1, height, r, width, r, channels))
        blocks = ops.transpose(blocks, (0, 1, 3, 5, 2, 4))
        return ops.reshape(blocks, (-1, height, width, channels * r * r))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        r = self.factor
        reduced = [None if n is None else n // r for n in (height, width)]
        return (batch, *reduced, channels * r * r)

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


@keras.saving.register_keras_serializable(package="cnnspec")
class Clip(layers.Layer):
    """min(max(x, lower), upper), PyTorch's Hardtanh: Keras' ReLU clips only from 0."""

    def __init__(self, lower, upper, **kwargs):
        super().__init__(**kwargs)
        self.lower = float(lower)
        self.upper = float(upper)

    def call(self, inputs):
        return ops.clip(inputs, self.lower, self.upper)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "lower": self.lower, "upper": self.upper}


@keras.saving.register_keras_serializable(package="cnnspec")
class Unflatten(layers.Layer):
    """A flat vector read in PyTorch's order (C, then the spatial dims) into a channels-last map:
    Keras' Reshape reads it spatial dims first."""

    def __init__(self, shape, **kwargs):
        super().__init__(**kwargs)
        self.shape = tuple(int(n) for n in shape)

    def call(self, inputs):
        channels_first = ops.reshape(inputs, (-1, *self.shape))
        rank = len(self.shape) - 1
        return ops.transpose(channels_first, (0, *range(2, rank + 2), 1))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.shape[1:], self.shape[0])

    def get_config(self):
        return {**super().get_config(), "shape": list(self.shape)}


@keras.saving.register_keras_serializable(package="cnnspec")
class ChannelPadding(layers.Layer):
    """Zero channels added before and after the input's (Keras' padding layers pad space only)."""

    def __init__(self, before: int, after: int, **kwargs):
        super().__init__(**kwargs)
        self.before = int(before)
        self.after = int(after)

    def call(self, inputs):
        spatial = [[0, 0]] * (len(inputs.shape) - 1)
        return ops.pad(inputs, [*spatial, [self.before, self.after]])

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] + self.before + self.after)

    def get_config(self):
        return {**super().get_config(), "before": self.before, "after": self.after}


@keras.saving.register_keras_serializable(package="cnnspec")
class ChannelConv(layers.Layer):
    """One filter slid along the channels, the same at every position (ECA-Net's attention):
    each position's channels are a sequence for a Conv1D kernel of shape (kernel_size, 1, 1)."""

    def __init__(self, kernel_size: int, use_bias: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = int(kernel_size)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(self.kernel_size, 1, 1))
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(1,), initializer="zeros")

    def call(self, inputs):
        rows = ops.reshape(inputs, (-1, inputs.shape[-1], 1))
        outputs = ops.conv(rows, self.kernel, padding="same")
        if self.use_bias:
            outputs = outputs + self.bias
        return ops.reshape(outputs, ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kernel_size": self.kernel_size, "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="cnnspec")
class ChannelReduce(layers.Layer):
    """The mean or the maximum over the channels at each position, the axis kept with size 1
    (PyTorch's ``x.mean(1, keepdim=True)`` / ``x.amax(1, keepdim=True)``)."""

    def __init__(self, reduction: str, **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction

    def call(self, inputs):
        reduce = ops.mean if self.reduction == "mean" else ops.max
        return reduce(inputs, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], 1)

    def get_config(self):
        return {**super().get_config(), "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="cnnspec")
class ChannelSlice(layers.Layer):
    """Channels [start, stop) of the input (Keras has no split layer; PyTorch's chunk is a slice)."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start = int(start)
        self.stop = int(stop)

    def call(self, inputs):
        return inputs[..., self.start : self.stop]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.stop - self.start)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package="cnnspec")
class Padding(layers.Layer):
    """Pad the spatial dims by (before, after) per dim: constant `value`, "reflect" or "replicate".

    reflect mirrors about the edge cell without repeating it (PyTorch ReflectionPad; each side
    must be smaller than the input); replicate repeats the edge cell (PyTorch ReplicationPad).
    Replicate is a gather with clamped indices: TensorFlow's pad has no edge mode.
    """

    def __init__(
        self,
        padding: tuple[tuple[int, int], ...],
        mode: str = "constant",
        value: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.padding = tuple((int(before), int(after)) for before, after in padding)
        self.mode = mode
        self.value = float(value)

    def call(self, inputs):
        if self.mode != "replicate":
            pads = ((0, 0), *self.padding, (0, 0))
            if self.mode == "reflect":
                return ops.pad(inputs, pads, mode="reflect")
            return ops.pad(inputs, pads, constant_values=self.value)
        outputs = inputs
        for axis, (before, after) in enumerate(self.padding):
            if before or after:
                length = outputs.shape[axis + 1]
                indices = np.clip(np.arange(-before, length + after), 0, length - 1).astype("int32")
                outputs = ops.take(outputs, indices, axis=axis + 1)
        return outputs

    def compute_output_shape(self, input_shape):
        spatial = [
            None if n is None else n + b + a for n, (b, a) in zip(input_shape[1:-1], self.padding)
        ]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(),
            "padding": self.padding,
            "mode": self.mode,
            "value": self.value,
        }


@keras.saving.register_keras_serializable(package="cnnspec")
class LayerScale(layers.Layer):
    """Per-channel trainable scale gamma * x, gamma of shape (C,) initialised to `init_value` (ConvNeXt)."""

    def __init__(self, init_value: float, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_value),
        )

    def call(self, inputs):
        return inputs * self.gamma

    def get_config(self):
        return {**super().get_config(), "init_value": self.init_value}


@keras.saving.register_keras_serializable(package="cnnspec")
class StochasticDepth(layers.Layer):
    """Drops the whole residual branch per sample with probability `rate` in training (scaling the
    kept ones by 1 / (1 - rate)); the identity at inference."""

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)
        self.seed_generator = keras.random.SeedGenerator()

    def call(self, inputs, training=False):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator))
        return inputs * mask / keep

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}
