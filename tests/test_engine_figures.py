"""The engine against published figures (the teaching material and its errata).

These numbers come from the material cnnspec grew from (shared/seed-figures.md) and from
the frameworks' documentation; none is computed by cnnspec itself.  The framework-checked
versions of the same tables live in test_engine_vs_frameworks.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cnnspec
from cnnspec.engine import shapes as S

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def one_layer(size, layer, channels=1):
    return {"cnnspec": 1, "name": "t", "input": {"channels": channels, "size": list(size)}, "layers": [layer]}


# (input size, layer, expected output spatial size) -- textbook exercises, floor when it does not divide.
OUTPUT_SIZE_EXERCISES = [
    ((227, 227), {"type": "conv2d", "filters": 96, "kernel_size": 11, "stride": 4}, (55, 55)),
    ((64, 64), {"type": "conv2d", "filters": 4, "kernel_size": 7, "stride": 2}, (29, 29)),
    ((32, 32), {"type": "conv2d", "filters": 4, "kernel_size": 5, "padding": 2}, (32, 32)),
    ((32, 64), {"type": "conv2d", "filters": 4, "kernel_size": 5}, (28, 60)),
    ((64, 32), {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1}, (64, 32)),
    ((28, 28), {"type": "conv2d", "filters": 5, "kernel_size": 5}, (24, 24)),
    ((24, 24), {"type": "max_pool2d", "pool_size": 2}, (12, 12)),
    # the material's errata: 295, not 291; then 147
    ((295, 295), {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": 1}, (295, 295)),
    ((295, 295), {"type": "max_pool2d", "pool_size": 2, "stride": 2}, (147, 147)),
    ((28, 28), {"type": "conv2d", "filters": 20, "kernel_size": 5, "stride": 1, "padding": 1}, (26, 26)),
]


@pytest.mark.parametrize("size,layer,expected", OUTPUT_SIZE_EXERCISES, ids=lambda v: str(v))
def test_output_size_exercises(size, layer, expected):
    plan = cnnspec.resolve(one_layer(size, layer))
    assert plan.output_shape[1:] == expected


# Keras same/valid on a 20x10 input with a 4x4 kernel (the material's table).
SAME_TABLE = [(1, (20, 10)), (2, (10, 5)), (3, (7, 4)), (4, (5, 3))]
VALID_TABLE = [(1, (17, 7)), (2, (9, 4)), (3, (6, 3)), (4, (5, 2)), (5, (4, 2))]


@pytest.mark.parametrize("stride,expected", SAME_TABLE)
def test_same_padding_table(stride, expected):
    layer = {"type": "conv2d", "filters": 2, "kernel_size": 4, "stride": stride, "padding": "same"}
    assert cnnspec.resolve(one_layer((20, 10), layer)).output_shape[1:] == expected


@pytest.mark.parametrize("stride,expected", VALID_TABLE)
def test_valid_padding_table(stride, expected):
    layer = {"type": "conv2d", "filters": 2, "kernel_size": 4, "stride": stride, "padding": "valid"}
    assert cnnspec.resolve(one_layer((20, 10), layer)).output_shape[1:] == expected


@pytest.mark.parametrize("pool_stride", [1, 2, 3])
def test_same_pool_after_same_conv_follows_the_same_rule(pool_stride):
    spec = {
        "cnnspec": 1, "input": {"channels": 1, "size": [20, 10]},
        "layers": [
            {"type": "conv2d", "filters": 2, "kernel_size": 4, "stride": 2, "padding": "same"},
            {"type": "max_pool2d", "pool_size": 4, "stride": pool_stride, "padding": "same"},
        ],
    }
    plan = cnnspec.resolve(spec)
    assert plan.layers[0].output_shape[1:] == (10, 5)
    assert plan.output_shape[1:] == tuple(-(-n // pool_stride) for n in (10, 5))


# SAME_UPPER: (size, kernel, stride, dilation) -> (before, after); TensorFlow's documented rule.
SAME_PADS = [
    ((32, 3, 2, 1), (0, 1)),   # the trap: total 1 goes at the end
    ((33, 3, 2, 1), (1, 1)),
    ((28, 3, 1, 1), (1, 1)),
    ((28, 4, 1, 1), (1, 2)),
    ((20, 4, 3, 1), (1, 1)),   # out 7: (7-1)*3 + 4 - 20 = 2
    ((10, 3, 1, 2), (2, 2)),
    ((5, 1, 2, 1), (0, 0)),
    ((7, 2, 3, 1), (0, 1)),    # total max(2*3+2-7, 0) = 1
]


@pytest.mark.parametrize("args,expected", SAME_PADS)
def test_same_padding_is_same_upper(args, expected):
    assert S.same_padding(*args) == expected


# Parameter totals of the material's models.
PARAM_TOTALS = [
    ("mnist_convnet.yaml", 104_202, 0),
    ("mnist_convnet_no_pool.yaml", 712_202, 0),
    ("pytorch_cnn.yaml", 119_530, 0),
    ("pytorch_cnn_bn.yaml", 119_530 + 2 * 32 + 2 * 64, 2 * 32 + 2 * 64),
    ("alexnet.yaml", 61_100_840, 0),
]


@pytest.mark.parametrize("example,trainable,non_trainable", PARAM_TOTALS)
def test_parameter_totals(example, trainable, non_trainable):
    plan = cnnspec.resolve(EXAMPLES / example)
    assert plan.trainable_params == trainable
    assert plan.non_trainable_params == non_trainable


def test_mnist_convnet_layer_by_layer():
    plan = cnnspec.resolve(EXAMPLES / "mnist_convnet.yaml")
    shapes = [layer.output_shape_last for layer in plan.layers]
    params = [layer.total_params for layer in plan.layers]
    assert shapes == [(26, 26, 32), (13, 13, 32), (11, 11, 64), (5, 5, 64), (3, 3, 128), (1152,), (10,)]
    assert params == [320, 0, 18_496, 0, 73_856, 0, 11_530]


def test_mnist_no_pool_layer_by_layer():
    plan = cnnspec.resolve(EXAMPLES / "mnist_convnet_no_pool.yaml")
    assert [layer.output_shape_last for layer in plan.layers] == [(26, 26, 32), (24, 24, 64), (22, 22, 128), (61_952,), (10,)]
    assert plan.layers[-1].total_params == 619_530


def test_pytorch_cnn_parameter_shapes():
    plan = cnnspec.resolve(EXAMPLES / "pytorch_cnn.yaml")
    shapes = [p.shape for layer in plan.layers for p in layer.params]
    assert shapes == [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (32, 3136), (32,), (10, 32), (10,)]


def test_3x3_conv_128_to_64_weights():
    plan = cnnspec.resolve(one_layer((8, 8), {"type": "conv2d", "filters": 64, "kernel_size": 3}, channels=128))
    kernel, bias = plan.layers[0].params
    assert kernel.size == 73_728 and bias.size == 64


def test_explain_shows_the_arithmetic():
    from cnnspec.teach.explain import explain_text

    text = explain_text(cnnspec.resolve(EXAMPLES / "mnist_convnet.yaml"))
    assert "⌊(28 + 0 − 3) / 1⌋ + 1 = 26" in text
    assert "3·3·1·32 + 32 = 288 + 32 = 320" in text
    assert "total params: 104,202" in text


def test_explain_errata_295():
    from cnnspec.teach.explain import explain_text

    text = explain_text(cnnspec.resolve(EXAMPLES / "exercises" / "errata_295.yaml"))
    assert "⌊(295 + 2 − 3) / 1⌋ + 1 = 295" in text
    assert "⌊(295 + 0 − 2) / 2⌋ + 1 = 147" in text


# Transposed convolution output sizes, from Keras' and PyTorch's documented formulas.
TRANSPOSE_SIZES = [
    # (size, kernel, stride, padding, output_padding, expected)
    (7, 3, 2, "same", None, 14),
    (7, 4, 2, "same", None, 14),
    (7, 1, 3, "same", None, 21),     # kernel smaller than stride: extra cells at the end
    (7, 3, 2, "valid", None, 15),    # (7-1)*2 + max(3, 2)
    (7, 1, 3, "valid", None, 21),    # (7-1)*3 + max(1, 3)
    (7, 3, 2, 1, 1, 14),             # PyTorch: (7-1)*2 - 2 + 3 + 1
    (7, 3, 2, 1, None, 13),
    (5, 4, 1, 0, None, 8),
]


@pytest.mark.parametrize("size,kernel,stride,padding,output_padding,expected", TRANSPOSE_SIZES)
def test_transpose_output_sizes(size, kernel, stride, padding, output_padding, expected):
    layer = {"type": "conv_transpose1d", "filters": 2, "kernel_size": kernel, "stride": stride, "padding": padding}
    if output_padding is not None:
        layer["output_padding"] = output_padding
    assert cnnspec.resolve(one_layer((size,), layer)).output_shape == (2, expected)


# PyTorch's ceil_mode rule: the last window may not start in the right padding.
CEIL_MODE = [
    # (size, window, stride, padding, expected)  from torch's documented formula
    (5, 2, 2, 0, 3),
    (6, 3, 2, 1, 4),   # ceil((6+2-3)/2)+1 = 4; window 3 starts at 6 < 6+1 -> kept
    (4, 2, 2, 1, 3),   # ceil((4+2-2)/2)+1 = 3; start 4 < 5 -> kept
    (5, 3, 3, 1, 2),   # ceil((5+2-3)/3)+1 = 3, but the third window would start at 6 >= 5+1: dropped
]


@pytest.mark.parametrize("size,window,stride,padding,expected", CEIL_MODE)
def test_ceil_mode(size, window, stride, padding, expected):
    layer = {"type": "max_pool1d", "pool_size": window, "stride": stride, "padding": padding, "ceil_mode": True}
    assert cnnspec.resolve(one_layer((size,), layer)).output_shape == (1, expected)


def test_resnet50_matches_torchvision_published_count():
    """torchvision documents 25,557,032 parameters for ResNet-50; BatchNorm statistics are extra."""
    plan = cnnspec.resolve(Path(__file__).resolve().parent.parent / "bench" / "resnet50.yaml")
    assert plan.trainable_params == 25_557_032
    assert plan.non_trainable_params == 2 * 26_560  # moving mean + variance of 26,560 BatchNorm channels
    assert plan.output_shape == (1000,)
