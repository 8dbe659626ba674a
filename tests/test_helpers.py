"""The helper layers generated models include, tested as code against the frameworks' own ops.

Each helper is checked at ranks 1, 2 and 3 against a reference the framework computes
itself (torch's grouped / transposed convolutions and pools, numpy padding), and the text
a generated module includes is exactly the helper's definition in its module.
"""

from __future__ import annotations

import ast
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import torch.nn.functional as F  # noqa: E402

from cnnspec.targets.keras import emit as emit_keras  # noqa: E402
from cnnspec.targets.keras import helpers as KH  # noqa: E402
from cnnspec.targets.torch import emit as emit_torch  # noqa: E402
from cnnspec.targets.torch import helpers as TH  # noqa: E402

RANKS = (1, 2, 3)
SIZES = {1: (11,), 2: (9, 8), 3: (6, 5, 7)}
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
TORCH_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def _first(y) -> np.ndarray:
    return np.moveaxis(np.asarray(y), -1, 1)


def _input(rank: int, channels: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, channels, *SIZES[rank])).astype(np.float32)


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("groups, stride, dilation", [(1, 1, 1), (3, 1, 2), (1, 2, 2), (3, 2, 1)])
def test_portable_conv_is_torch_conv(rank, groups, stride, dilation):
    x = _input(rank, 6)
    layer = KH.PortableConv(
        9, (2,) * rank, strides=(1,) * rank if dilation > 1 else (stride,) * rank, dilation_rate=(dilation,) * rank,
        groups=groups, subsample=(stride,) * rank if dilation > 1 else None, activation="relu",
    )
    y = _first(layer(_last(x)))
    kernel = np.asarray(layer.kernel)  # (*k, in/g, out)
    weight = torch.from_numpy(np.transpose(kernel, (rank + 1, rank, *range(rank))).copy())
    expected = F.relu(TORCH_CONV[rank](torch.from_numpy(x), weight, torch.from_numpy(np.asarray(layer.bias)),
                                       stride=stride, dilation=dilation, groups=groups)).numpy()
    assert y.shape == expected.shape
    assert layer.compute_output_shape((None, *_last(x).shape[1:]))[1:] == _last(expected).shape[1:]
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("stride, dilation, crop, extend", [(2, 1, 0, 0), (2, 2, 1, 0), (3, 2, 0, 1), (1, 1, 1, 0)])
def test_cropped_conv_transpose_is_torch_conv_transpose(rank, stride, dilation, crop, extend):
    x = _input(rank, 3)
    layer = KH.CroppedConvTranspose(
        4, (3,) * rank, strides=(stride,) * rank, dilation_rate=(dilation,) * rank,
        crop=((crop, crop),) * rank, extend=(extend,) * rank,
    )
    y = _first(layer(_last(x)))
    kernel = np.asarray(layer.kernel)  # (*k, out, in)
    weight = torch.from_numpy(np.transpose(kernel, (rank + 1, rank, *range(rank))).copy())
    # PyTorch: padding p crops p cells at both ends; output_padding appends (bias-only) cells at the end.
    expected = TORCH_CONV_T[rank](torch.from_numpy(x), weight, torch.from_numpy(np.asarray(layer.bias)), stride=stride,
                                  padding=crop, output_padding=extend, dilation=dilation).numpy()
    assert y.shape == expected.shape
    assert layer.compute_output_shape((None, *_last(x).shape[1:]))[1:] == _last(expected).shape[1:]
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("rank", RANKS)
def test_constant_padding_is_numpy_pad(rank):
    x = _last(_input(rank, 2))
    pads = tuple((i % 2, 2 - i % 2) for i in range(rank))
    y = np.asarray(KH.ConstantPadding(pads, value=-np.inf)(x))
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-np.inf))


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_counted_average_pooling_is_torch_avg_pool(rank, count_include_pad):
    """Symmetric padding with ceil mode: torch's own rule is the reference."""
    x = _input(rank, 2)
    kwargs = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=count_include_pad)
    expected = TORCH_AVG[rank](torch.from_numpy(x), **kwargs).numpy()
    # the overhang the plan would give: cells the last window covers past the padding
    overhang = tuple(max((o - 1) * 2 + 3 - (n + 2), 0) for o, n in zip(expected.shape[2:], x.shape[2:]))
    keras_layer = KH.CountedAveragePooling((3,) * rank, (2,) * rank, ((1, 1),) * rank, overhang, count_include_pad)
    np.testing.assert_allclose(_first(keras_layer(_last(x))), expected, atol=1e-6)
    torch_module = TH.CountedAvgPool((3,) * rank, (2,) * rank, ((1, 1),) * rank, overhang, count_include_pad)
    np.testing.assert_allclose(torch_module(torch.from_numpy(x)).numpy(), expected, atol=1e-6)


def test_gelu_functions_are_torch_gelu():
    x = np.linspace(-6, 6, 101, dtype=np.float32)
    for function, approximate in ((KH.gelu_erf, "none"), (KH.gelu_tanh, "tanh")):
        expected = F.gelu(torch.from_numpy(x), approximate=approximate).numpy()
        np.testing.assert_allclose(np.asarray(function(x)), expected, atol=1e-6)


@pytest.mark.parametrize("helper", [KH.PortableConv, KH.CroppedConvTranspose])
def test_helper_layers_survive_their_config(helper):
    layer = helper(2, (3, 3), strides=(2, 2), activation=KH.gelu_erf, name="probe")
    clone = helper.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_generated_modules_include_the_helpers_text_verbatim():
    for emitter, module in ((emit_keras, KH), (emit_torch, TH)):
        texts = emitter.helper_texts()
        source = open(module.__file__, encoding="utf-8").read()
        tree = ast.parse(source)
        defined = [node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))]
        assert list(texts) == defined
        for text in texts.values():
            assert text in source and "cnnspec" not in text.replace('package="cnnspec"', "")
