"""Keras helper layers that generated models embed (their source text, via ``inspect.getsource``).

Each class is self-contained: it uses only ``keras``, ``layers``, ``ops``, ``np`` and ``math``,
which every generated module imports, and never cnnspec.  Inputs are channels-last.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

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
        self.windows: list[list[tuple[int, int]]] = []

    def build(self, input_shape):
        self.windows = [
            [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]
            for n, out in zip(input_shape[1:-1], self.output_size)
        ]

    def _average_matrix(self, axis: int, length: int) -> np.ndarray:
        matrix = np.zeros((length, len(self.windows[axis])), dtype="float32")
        for i, (start, end) in enumerate(self.windows[axis]):
            matrix[start:end, i] = 1.0 / (end - start)
        return matrix

    def call(self, inputs):
        outputs = inputs
        for axis, windows in enumerate(self.windows):
            position = axis + 1
            if self.reduction == "average":
                matrix = ops.convert_to_tensor(self._average_matrix(axis, outputs.shape[position]), inputs.dtype)
                outputs = ops.moveaxis(ops.matmul(ops.moveaxis(outputs, position, -1), matrix), -1, position)
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
        return {**super().get_config(), "output_size": self.output_size, "reduction": self.reduction}


@keras.saving.register_keras_serializable(package="cnnspec")
class Resize(layers.Layer):
    """Resize the spatial dims to `size`, one axis at a time, as a product with interpolation matrices.

    Per axis (input n cells, output m), r = n/m, or (n-1)/(m-1) with `align_corners`:
    "nearest" reads cell floor(i*r) (PyTorch nearest), "nearest_exact" floor((i+0.5)*r) (PyTorch
    nearest-exact, TensorFlow nearest); "linear" and "cubic" sample x = (i+0.5)*r - 0.5 (i*r with
    align_corners), linear clamping x at 0, cubic with Keys' kernel of coefficient
    `cubic_coefficient` (PyTorch -0.75, TensorFlow -0.5) over cells floor(x)-1 .. floor(x)+2;
    taps outside the input read the edge cell, or with `exclude_outside` get weight 0 and the
    rest is renormalised (TensorFlow).
    """

    def __init__(self, size: tuple[int, ...], mode: str = "linear", align_corners: bool = False,
                 cubic_coefficient: float = -0.75, exclude_outside: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(n) for n in size)
        self.mode = mode
        self.align_corners = bool(align_corners)
        self.cubic_coefficient = float(cubic_coefficient)
        self.exclude_outside = bool(exclude_outside)
        self.matrices: list[np.ndarray] = []

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
            taps = [(low + k, self._keys(x - low - k, self.cubic_coefficient)) for k in (-1, 0, 1, 2)]
            if self.exclude_outside:
                taps = [(j, w) for j, w in taps if 0 <= j < n]
                total = sum(w for _, w in taps)
                taps = [(j, w / total) for j, w in taps]
            for j, w in taps:
                matrix[min(max(j, 0), n - 1), i] += w
        return matrix.astype("float32")

    def build(self, input_shape):
        self.matrices = [self._matrix(n, m) for n, m in zip(input_shape[1:-1], self.size)]

    def call(self, inputs):
        outputs = inputs
        for axis, matrix in enumerate(self.matrices):
            position = axis + 1
            weights = ops.convert_to_tensor(matrix, inputs.dtype)
            outputs = ops.moveaxis(ops.matmul(ops.moveaxis(outputs, position, -1), weights), -1, position)
        return outputs

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self):
        return {
            **super().get_config(), "size": self.size, "mode": self.mode, "align_corners": self.align_corners,
            "cubic_coefficient": self.cubic_coefficient, "exclude_outside": self.exclude_outside,
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

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


@keras.saving.register_keras_serializable(package="cnnspec")
class ChannelSlice(layers.Layer):
    """Channels [start, stop) of the input (Keras has no split layer; PyTorch's chunk is a slice)."""

    def __init__(self, start: int, stop: int, **kwargs):
        super().__init__(**kwargs)
        self.start = int(start)
        self.stop = int(stop)

    def call(self, inputs):
        return inputs[..., self.start:self.stop]

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

    def __init__(self, padding: tuple[tuple[int, int], ...], mode: str = "constant", value: float = 0.0, **kwargs):
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
        spatial = [None if n is None else n + b + a for n, (b, a) in zip(input_shape[1:-1], self.padding)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "mode": self.mode, "value": self.value}


@keras.saving.register_keras_serializable(package="cnnspec")
class LayerScale(layers.Layer):
    """Per-channel trainable scale gamma * x, gamma of shape (C,) initialised to `init_value` (ConvNeXt)."""

    def __init__(self, init_value: float, **kwargs):
        super().__init__(**kwargs)
        self.init_value = float(init_value)

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma", shape=(input_shape[-1],), initializer=keras.initializers.Constant(self.init_value)
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
