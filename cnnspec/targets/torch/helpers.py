"""PyTorch helper modules that generated models include where no torch module is exact.

Each helper is written once here, rank-generic, and copied verbatim into a generated module
that uses it (:func:`cnnspec.targets.helper_text.definition_text` reads this file without
importing it).  So these definitions may use only what a generated module imports:
``torch``, ``nn`` (``torch.nn``) and ``F`` (``torch.nn.functional``), plus ``np`` (numpy) and
``math`` for the helpers that use them; never cnnspec.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def check_input_shape(x: torch.Tensor, expected: tuple) -> None:
    """Refuse an input whose shape is not ``expected`` (batch first; None: any length on that axis).

    A model planned for one input size computes other numbers at another size (its padding
    and output sizes were worked out for that size), so it says so instead of running.
    """
    if torch.jit.is_tracing():
        return  # a trace records the shapes it is traced at
    if x.dim() != len(expected) or any(
        size is not None and size != actual for size, actual in zip(expected[1:], x.shape[1:])
    ):
        wanted = ", ".join("N" if size is None else str(size) for size in expected)
        raise ValueError(
            f"this model takes inputs of shape ({wanted}) (N: any), got {tuple(x.shape)}"
        )


class SamePad(nn.Module):
    """TensorFlow's SAME padding (SAME_UPPER), worked out from each input's size at run time.

    Per spatial axis of length n the output has ceil(n / stride) cells, so the windows need
    total = max((ceil(n / stride) - 1) * stride + dilation * (kernel - 1) + 1 - n, 0) padded
    cells: total // 2 before and the rest (the odd cell) after.  With a stride > 1 the split
    depends on n, so no fixed padding is right at every size.  ``value`` fills the padded
    cells (-inf before a max pool: padding never wins).  The rank is that of ``kernel_size``.
    """

    def __init__(self, kernel_size, stride, dilation=None, value=0.0):
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.dilation = tuple(dilation or (1,) * len(self.kernel_size))
        self.value = value

    def forward(self, x):
        pads = []  # F.pad takes (before, after) pairs starting from the last dim
        for n, k, s, d in zip(x.shape[2:], self.kernel_size, self.stride, self.dilation):
            total = max(((n + s - 1) // s - 1) * s + d * (k - 1) + 1 - n, 0)
            pads = [total // 2, total - total // 2] + pads
        return F.pad(x, pads, value=self.value)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, value={self.value}"


class CeilModePad(nn.Module):
    """A pool's declared padding plus its ceil-mode overhang, worked out from each input's size.

    ``padding`` is (before, after) per spatial dim.  With ceil_mode the last window may run
    past the padding (PyTorch's rule: it must start inside the input or the left padding);
    those cells are padded with ``value`` too (-inf before a max pool).  How far it runs
    depends on the input length modulo the stride, so it is computed per input.
    """

    def __init__(self, kernel_size, stride, padding, value=0.0):
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.padding = tuple(tuple(pair) for pair in padding)
        self.value = value

    def forward(self, x):
        pads = []  # F.pad takes (before, after) pairs starting from the last dim
        for n, k, s, (before, after) in zip(
            x.shape[2:], self.kernel_size, self.stride, self.padding
        ):
            out = (n + before + after - k + s - 1) // s + 1
            if (out - 1) * s >= n + before:
                out -= 1
            overhang = max((out - 1) * s + k - (n + before + after), 0)
            pads = [before, after + overhang] + pads
        return F.pad(x, pads, value=self.value)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class CountedAvgPool(nn.Module):
    """Average pooling that divides each window sum by the number of *counted* cells.

    The rank is that of ``kernel_size``.  The input is zero-padded by ``padding`` ((before,
    after) per spatial dim) and by ``overhang`` more cells at the end (ceil-mode windows
    running past the padding).  Real cells always count; the declared padding counts only
    when ``count_padding`` is true; the overhang never counts.  The counted fraction of each
    window is the same average pool applied to a one-channel mask (1 = counted), so no
    state is kept.  Where these depend on the input's size they are worked out per input:
    ``padding="same"`` is TensorFlow's SAME padding (never counted), and ``ceil_mode`` gives
    PyTorch's ceil-mode overhang (the last window starts inside the input or left padding).
    """

    def __init__(
        self, kernel_size, stride, padding, overhang=None, count_padding=False, ceil_mode=False
    ):
        super().__init__()
        self.kernel_size = tuple(kernel_size)
        self.stride = tuple(stride)
        self.same = padding == "same"
        self.padding = ((0, 0),) * len(self.kernel_size) if self.same else tuple(padding)
        self.ceil_mode = ceil_mode
        # F.pad takes (before, after) pairs starting from the LAST dim.
        self.declared = tuple(
            v for before, after in reversed(self.padding) for v in (before, after)
        )
        extra = overhang or (0,) * len(self.kernel_size)
        self.overhang = tuple(v for cells in reversed(extra) for v in (0, cells))
        self.padding_value = 1.0 if count_padding else 0.0
        self.pool = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[len(self.kernel_size) - 1]

    def _pads(self, sizes):
        """The declared padding and the overhang for an input of spatial ``sizes`` (F.pad order)."""
        if not (self.same or self.ceil_mode):
            return self.declared, self.overhang
        declared, overhang = [], []
        for n, k, s, (before, after) in zip(sizes, self.kernel_size, self.stride, self.padding):
            extra = 0
            if self.same:
                total = max(((n + s - 1) // s - 1) * s + k - n, 0)
                before, after = total // 2, total - total // 2
            else:
                out = (n + before + after - k + s - 1) // s + 1
                if (out - 1) * s >= n + before:
                    out -= 1
                extra = max((out - 1) * s + k - (n + before + after), 0)
            declared = [before, after] + declared
            overhang = [0, extra] + overhang
        return declared, overhang

    def forward(self, x):
        # the ceilings are (n + s - 1) // s: an ONNX export (Div truncates) stays exact at every size
        declared, overhang = self._pads(x.shape[2:])
        window_mean = self.pool(F.pad(F.pad(x, declared), overhang), self.kernel_size, self.stride)
        mask = F.pad(torch.ones_like(x[:1, :1]), declared, value=self.padding_value)
        counted_fraction = self.pool(F.pad(mask, overhang), self.kernel_size, self.stride)
        return window_mean / counted_fraction


# ----------------------------------------------------------------------------------------------
# Model-zoo catalog helpers (issue 10): adaptive pooling, resize, channel shuffle, channel layer
# norm, Keras Normalization, rescale, layer scale, stochastic depth.
# ----------------------------------------------------------------------------------------------


class AdaptivePool(nn.Module):
    """nn.AdaptiveAvgPool / AdaptiveMaxPool for any number of spatial dims, exportable to ONNX.

    Output cell i of an axis of length n pools input cells [floor(i*n/out), ceil((i+1)*n/out)),
    exactly PyTorch's windows; the TorchScript ONNX exporter refuses the native modules when out
    does not divide n.  Both reductions are separable: one axis at a time (the average as a
    product with the averaging matrix, the max over each window's slice).
    """

    def __init__(self, output_size: tuple[int, ...], reduction: str = "average"):
        super().__init__()
        self.output_size = tuple(int(n) for n in output_size)
        self.reduction = reduction

    @staticmethod
    def windows(n: int, out: int) -> list[tuple[int, int]]:
        return [((i * n) // out, ((i + 1) * n + out - 1) // out) for i in range(out)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for axis, out in enumerate(self.output_size):
            dim = axis + 2
            length = int(
                x.shape[dim]
            )  # a constant when traced: sizes as tensors would export floor division as Div
            windows = self.windows(length, out)
            if self.reduction == "average":
                matrix = torch.zeros(length, out, dtype=x.dtype)
                for i, (start, end) in enumerate(windows):
                    matrix[start:end, i] = 1.0 / (end - start)
                x = torch.matmul(x.movedim(dim, x.dim() - 1), matrix).movedim(x.dim() - 1, dim)
            else:
                pieces = [
                    x.narrow(dim, start, end - start).amax(dim, keepdim=True)
                    for start, end in windows
                ]
                x = torch.cat(pieces, dim)
        return x

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, reduction={self.reduction!r}"


class Resize(nn.Module):
    """Resize the spatial dims to `size` by interpolation matrices, one axis at a time.

    Used where torch's interpolate has no such mode (nearest-exact does not export to ONNX; bicubic
    exists only in 2-D and only with Keys coefficient -0.75 and edge taps).  Per axis (n -> m):
    r = n/m, or (n-1)/(m-1) with `align_corners`; "nearest" reads floor(i*r), "nearest_exact"
    floor((i+0.5)*r); "linear"/"cubic" sample x = (i+0.5)*r - 0.5 (i*r with align_corners),
    linear clamping x at 0, cubic with Keys' kernel of coefficient `cubic_coefficient` over
    floor(x)-1 .. floor(x)+2, out-of-range taps reading the edge cell, or with
    `exclude_outside` weighted 0 and the rest renormalised (TensorFlow's bicubic).  With `scale`
    instead of `size`, each input's axes of length n become floor(n * scale) cells.
    """

    def __init__(
        self,
        size: tuple[int, ...] | None = None,
        mode: str = "linear",
        align_corners: bool = False,
        cubic_coefficient: float = -0.75,
        exclude_outside: bool = False,
        scale: tuple[float, ...] | None = None,
    ):
        super().__init__()
        self.size = None if size is None else tuple(int(n) for n in size)
        self.scale = None if scale is None else tuple(float(f) for f in scale)
        self.mode = mode
        self.align_corners = align_corners
        self.cubic_coefficient = cubic_coefficient
        self.exclude_outside = exclude_outside

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lengths = [int(n) for n in x.shape[2:]]
        outs = self.size or [math.floor(n * f) for n, f in zip(lengths, self.scale or ())]
        for axis, (length, out) in enumerate(zip(lengths, outs)):
            dim = axis + 2
            matrix = torch.from_numpy(self._matrix(length, out)).to(x.dtype)
            x = torch.matmul(x.movedim(dim, x.dim() - 1), matrix).movedim(x.dim() - 1, dim)
        return x

    def extra_repr(self) -> str:
        target = f"size={self.size}" if self.size is not None else f"scale={self.scale}"
        return f"{target}, mode={self.mode!r}, align_corners={self.align_corners}"


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: output k*groups + g is input g*(C/groups) + k.

    nn.ChannelShuffle computes the same but does not export to ONNX.
    """

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels = x.shape[:2]
        spatial = x.shape[2:]
        grid = x.reshape(batch, self.groups, channels // self.groups, *spatial)
        return grid.transpose(1, 2).reshape(batch, channels, *spatial)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ChannelConv(nn.Module):
    """One filter slid along the channels, the same at every position (ECA-Net's attention):
    each position's channels are a one-channel sequence for the filter of ``nn.Conv1d(1, 1, k)``."""

    def __init__(self, kernel_size: int, bias: bool = False):
        super().__init__()
        conv = nn.Conv1d(1, 1, kernel_size, bias=bias)  # its weights, initialised as PyTorch does
        self.weight, self.bias = conv.weight, conv.bias
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = x.dim() - 1  # not -1: torch.onnx writes a negative movedim into Transpose's perm
        channels_last = x.movedim(1, last)
        rows = channels_last.reshape(-1, 1, x.shape[1])
        rows = F.conv1d(rows, self.weight, self.bias, padding=self.padding)
        return rows.reshape(channels_last.shape).movedim(last, 1)


class ChannelLayerNorm(nn.Module):
    """Layer normalisation over the channels at each position of a channels-first tensor.

    nn.LayerNorm(C) normalises the last axis, which on NCHW is the width; this moves the channels
    last, normalises them, and moves them back (Keras LayerNormalization on NHWC).
    """

    def __init__(self, channels: int, eps: float = 1e-5, center: bool = True, scale: bool = True):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if scale else None
        self.bias = nn.Parameter(torch.zeros(channels)) if center else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = (
            x.dim() - 1
        )  # a positive axis: the ONNX exporter writes movedim(1, -1) as an invalid permutation
        # the shape as a number: read from the tensor, the ONNX exporter cannot always make it constant
        normalised = F.layer_norm(
            x.movedim(1, last), (self.channels,), self.weight, self.bias, self.eps
        )
        return normalised.movedim(last, 1)

    def extra_repr(self) -> str:
        return f"eps={self.eps}"


class Normalize(nn.Module):
    """Keras Normalization: (x - mean) / max(sqrt(variance), 1e-7), per channel (channel axis 1).

    Without `mean` and `variance`, they and Keras' adapt `count` (unused at inference) are
    buffers in the state dict, as Keras keeps them as non-trainable weights; given values are
    constants (Keras' Normalization(mean=..., variance=...) has no weights either).
    Not BatchNorm: no epsilon inside the square root.
    """

    mean: torch.Tensor
    variance: torch.Tensor

    def __init__(
        self, channels: int, mean: list[float] | None = None, variance: list[float] | None = None
    ):
        super().__init__()
        stored = mean is None
        mean_values = (
            torch.zeros(channels)
            if mean is None
            else torch.tensor(mean, dtype=torch.float32).expand(channels)
        )
        variance_values = (
            torch.ones(channels)
            if variance is None
            else torch.tensor(variance, dtype=torch.float32).expand(channels)
        )
        self.register_buffer("mean", mean_values.clone(), persistent=stored)
        self.register_buffer("variance", variance_values.clone(), persistent=stored)
        if stored:
            self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        std = torch.clamp(torch.sqrt(self.variance), min=1e-7)
        return (x - self.mean.view(shape)) / std.view(shape)


class Rescale(nn.Module):
    """x * scale + offset, each one number or one per channel (Keras Rescaling); no parameters."""

    scale: torch.Tensor
    offset: torch.Tensor

    def __init__(self, scale: float | list[float], offset: float | list[float] = 0.0):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        scale = self.scale.view(shape) if self.scale.dim() else self.scale
        offset = self.offset.view(shape) if self.offset.dim() else self.offset
        return x * scale + offset


class LayerScale(nn.Module):
    """Per-channel trainable scale gamma * x; gamma has shape (C, 1, ..., 1) as in torchvision's ConvNeXt."""

    def __init__(self, channels: int, init_value: float, spatial_dims: int = 2):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels,) + (1,) * spatial_dims, float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class StochasticDepth(nn.Module):
    """Drops the whole residual branch per sample with probability `rate` in training (scaling the
    kept ones by 1 / (1 - rate)); the identity at inference (torchvision's mode "row")."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class PartialBatchNorm(nn.Module):
    """Batch normalisation learning only gamma or only beta (Keras BatchNormalization(scale=False) or
    center=False); PyTorch's affine learns both or neither.  Any rank; the channel axis is 1."""

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(
        self,
        channels: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        center: bool = True,
        scale: bool = True,
    ):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(channels)) if scale else None
        self.bias = nn.Parameter(torch.zeros(channels)) if center else None
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.training,
            self.momentum,
            self.eps,
        )
