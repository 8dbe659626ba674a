"""The engine's shapes and parameter counts against the frameworks' own layers.

Each case builds the *framework's* layer by hand (not through cnnspec's emitters) and
compares what the framework computes with what ``cnnspec.resolve`` predicted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import cnnspec  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def plan_of(size, layer, channels=3):
    return cnnspec.resolve({"cnnspec": 1, "input": {"channels": channels, "size": list(size)}, "layers": [layer]})


CONV_CASES = [
    # size, kernel, stride, padding (int), dilation
    ((227, 227), 11, 4, 0, 1), ((64, 64), 7, 2, 0, 1), ((32, 32), 5, 1, 2, 1), ((32, 64), 5, 1, 0, 1),
    ((64, 32), 3, 1, 1, 1), ((295, 295), 3, 1, 1, 1), ((17, 9), 3, 2, 1, 1), ((16, 15), 4, 3, 2, 2),
    ((10, 11), 3, 1, 0, 3), ((9, 9), (3, 1), (2, 1), (1, 0), (1, 2)),
]


def _pair(v):
    return tuple(v) if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("size,kernel,stride,padding,dilation", CONV_CASES)
def test_conv_numeric_padding_matches_torch(size, kernel, stride, padding, dilation):
    layer = {"type": "conv2d", "filters": 4, "kernel_size": list(_pair(kernel)), "stride": list(_pair(stride)),
             "padding": list(_pair(padding)), "dilation": list(_pair(dilation))}
    plan = plan_of(size, layer)
    conv = torch.nn.Conv2d(3, 4, _pair(kernel), _pair(stride), _pair(padding), _pair(dilation))
    with torch.no_grad():
        out = conv(torch.zeros(1, 3, *size))
    assert tuple(out.shape[1:]) == plan.output_shape
    assert sum(p.numel() for p in conv.parameters()) == plan.total_params


SAME_VALID = [(size, k, s, d, mode) for size in [(20, 10), (7, 8), (32, 33)] for k in (1, 3, 4) for s in (1, 2, 3, 4)
              for d in (1,) for mode in ("same", "valid")] + [((21, 20), 3, 1, 2, "same"), ((21, 20), 3, 1, 3, "valid")]


@pytest.mark.parametrize("size,kernel,stride,dilation,mode", SAME_VALID)
def test_conv_same_valid_matches_keras(size, kernel, stride, dilation, mode):
    plan = plan_of(size, {"type": "conv2d", "filters": 2, "kernel_size": kernel, "stride": stride,
                          "padding": mode, "dilation": dilation})
    layer = keras.layers.Conv2D(2, kernel, strides=stride, padding=mode, dilation_rate=dilation)
    assert tuple(layer.compute_output_shape((None, *size, 3))[1:]) == plan.layers[0].output_shape_last


@pytest.mark.parametrize("size,kernel,stride,mode", [((20, 10), 4, s, m) for s in (1, 2, 3, 4) for m in ("same", "valid")]
                         + [((7, 6), 3, 2, "same"), ((5, 5), 2, 3, "valid")])
def test_pool_same_valid_matches_keras(size, kernel, stride, mode):
    plan = plan_of(size, {"type": "max_pool2d", "pool_size": kernel, "stride": stride, "padding": mode})
    layer = keras.layers.MaxPooling2D(kernel, strides=stride, padding=mode)
    assert tuple(layer.compute_output_shape((None, *size, 3))[1:]) == plan.layers[0].output_shape_last


POOL_CASES = [
    # size, window, stride, padding, ceil_mode
    (5, 2, 2, 0, True), (6, 3, 2, 1, True), (4, 2, 2, 1, True), (5, 3, 3, 1, True), (7, 3, 2, 1, False),
    (10, 4, 3, 2, True), (11, 3, 3, 0, True), (13, 5, 4, 2, True), (8, 2, 1, 1, False),
]


@pytest.mark.parametrize("size,window,stride,padding,ceil_mode", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_ceil_mode_matches_torch(size, window, stride, padding, ceil_mode, kind):
    spec_layer = {"type": f"{kind}_pool1d", "pool_size": window, "stride": stride, "padding": padding, "ceil_mode": ceil_mode}
    plan = plan_of((size,), spec_layer)
    pool_class = torch.nn.MaxPool1d if kind == "max" else torch.nn.AvgPool1d
    pool = pool_class(window, stride, padding, ceil_mode=ceil_mode)
    assert tuple(pool(torch.zeros(1, 3, size)).shape[1:]) == plan.output_shape


TRANSPOSE_KERAS = [(7, k, s, m) for k in (1, 2, 3, 4, 5) for s in (1, 2, 3) for m in ("same", "valid")]


@pytest.mark.parametrize("size,kernel,stride,mode", TRANSPOSE_KERAS)
def test_conv_transpose_same_valid_matches_keras(size, kernel, stride, mode):
    plan = plan_of((size, size + 1), {"type": "conv_transpose2d", "filters": 2, "kernel_size": kernel, "stride": stride, "padding": mode})
    layer = keras.layers.Conv2DTranspose(2, kernel, strides=stride, padding=mode)
    out = layer(keras.ops.zeros((1, size, size + 1, 3)))
    assert tuple(out.shape[1:]) == plan.layers[0].output_shape_last
    assert layer.count_params() == plan.total_params


TRANSPOSE_TORCH = [(7, 3, 2, 1, 1, 1), (7, 4, 2, 1, 0, 1), (6, 3, 3, 0, 2, 1), (5, 3, 1, 2, 0, 2), (5, 2, 2, 0, 1, 2)]


@pytest.mark.parametrize("size,kernel,stride,padding,output_padding,dilation", TRANSPOSE_TORCH)
def test_conv_transpose_numeric_matches_torch(size, kernel, stride, padding, output_padding, dilation):
    plan = plan_of((size,), {"type": "conv_transpose1d", "filters": 2, "kernel_size": kernel, "stride": stride,
                             "padding": padding, "output_padding": output_padding, "dilation": dilation})
    layer = torch.nn.ConvTranspose1d(3, 2, kernel, stride, padding, output_padding, dilation=dilation)
    assert tuple(layer(torch.zeros(1, 3, size)).shape[1:]) == plan.output_shape
    assert sum(p.numel() for p in layer.parameters()) == plan.total_params


def test_keras_mnist_convnet_parameter_count():
    """The material's Keras model, written by hand in Keras: count_params() vs the engine."""
    layers = keras.layers
    model = keras.Sequential([
        keras.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), layers.Conv2D(128, 3, activation="relu"),
        layers.Flatten(), layers.Dense(10, activation="softmax"),
    ])
    plan = cnnspec.resolve(EXAMPLES / "mnist_convnet.yaml")
    assert model.count_params() == plan.total_params == 104_202
    assert [tuple(layer.output.shape[1:]) for layer in model.layers] == [layer.output_shape_last for layer in plan.layers]


def test_torch_cnn_parameter_count_and_buffers():
    """The material's PyTorch CNN (with BatchNorm), written by hand in torch."""
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, 1, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Dropout2d(0.5),
        nn.Conv2d(32, 64, 3, 1, 1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Dropout2d(0.5),
        nn.Flatten(), nn.Linear(3136, 32), nn.ReLU(), nn.Linear(32, 10),
    )
    plan = cnnspec.resolve(EXAMPLES / "pytorch_cnn_bn.yaml")
    assert sum(p.numel() for p in model.parameters()) == plan.trainable_params
    statistics = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    assert statistics == plan.non_trainable_params


def test_keras_batchnorm_non_trainable_convention():
    layer = keras.layers.BatchNormalization()
    layer.build((None, 5, 5, 16))
    plan = plan_of((5, 5), {"type": "batch_norm"}, channels=16)
    assert sum(int(w.numpy().size) for w in layer.trainable_weights) == plan.trainable_params
    assert sum(int(w.numpy().size) for w in layer.non_trainable_weights) == plan.non_trainable_params


@pytest.mark.parametrize("multiplier", [1, 2])
def test_depthwise_and_separable_counts_match_keras(multiplier):
    dw = keras.layers.DepthwiseConv2D(3, depth_multiplier=multiplier)
    dw.build((None, 9, 9, 6))
    sep = keras.layers.SeparableConv2D(10, 3, depth_multiplier=multiplier)
    sep.build((None, 9, 9, 6))
    dw_plan = plan_of((9, 9), {"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": multiplier}, channels=6)
    sep_plan = plan_of((9, 9), {"type": "separable_conv2d", "filters": 10, "kernel_size": 3, "depth_multiplier": multiplier}, channels=6)
    assert dw.count_params() == dw_plan.total_params
    assert sep.count_params() == sep_plan.total_params


def test_grouped_conv_count_matches_torch():
    conv = torch.nn.Conv2d(8, 12, 3, groups=4)
    plan = plan_of((6, 6), {"type": "conv2d", "filters": 12, "kernel_size": 3, "groups": 4}, channels=8)
    assert sum(p.numel() for p in conv.parameters()) == plan.total_params
