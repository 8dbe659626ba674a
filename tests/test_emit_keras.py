"""The Keras 3 emitter against the frameworks' own behaviour.

Every value test runs a model built from cnnspec's generated source (cnnspec.build.build) and
compares a spec layer's output with PyTorch (torch.nn.functional / nn layers, NCHW, transposed
to NHWC) or TensorFlow/Keras built-ins (tf.nn pools and convolutions with SAME, Keras'
Conv2DTranspose same/valid).  Each trap has a negative control showing that the naive mapping
gives a different answer, so the tests can fail.
"""

from __future__ import annotations

import ast
import importlib.util
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import torch.nn.functional as F  # noqa: E402

from cnnspec.targets.build import build, emit_source, function_name  # noqa: E402
from cnnspec.errors import CnnspecError  # noqa: E402
from cnnspec.engine.plan import resolve  # noqa: E402
from cnnspec.spec.models import layer_types  # noqa: E402
from cnnspec.layers import CATALOG_ORDER, REGISTRY  # noqa: E402

pytestmark = pytest.mark.frameworks

RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def make_spec(channels, size, *layers, name="t"):
    return {"cnnspec": 1, "name": name, "input": {"channels": channels, "size": list(size)}, "layers": list(layers)}


def random_input(spec, batch=2, negative=False):
    shape = (batch, *spec["input"]["size"], spec["input"]["channels"])
    x = RNG.standard_normal(shape).astype("float32")
    return -np.abs(x) - 0.5 if negative else x


def layer_output(model, name, x):
    """Run the model up to the layer called ``name`` (the verifier's access path)."""
    sub = keras.Model(model.input, model.get_layer(name).output)
    return np.asarray(sub(x))


def to_first(x):
    """NHWC (any rank) -> torch NCHW tensor."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def to_last(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def torch_kernel(kernel):
    """Keras conv kernel (*k, in, out) -> torch (out, in, *k); transposed conv (*k, out, in) -> (in, out, *k)."""
    kernel = np.asarray(kernel)
    rank = kernel.ndim - 2
    return torch.from_numpy(np.ascontiguousarray(np.transpose(kernel, (rank + 1, rank, *range(rank)))))


def torch_pad_arg(pads):
    """[(before, after)] per spatial dim -> F.pad's last-dim-first flat tuple."""
    flat = []
    for before, after in reversed(pads):
        flat += [before, after]
    return tuple(flat)


def tf_same_pads(size, k, s, d=1):
    """TensorFlow's SAME padding, written out independently of cnnspec (tf.nn docs)."""
    out = -(-size // s)
    total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def spec_pads(layer, size):
    """Padding of a spec conv/pool layer as (before, after) per dim, computed from the spec itself."""
    rank = len(size)
    pad = layer.get("padding", "valid")
    k = layer.get("kernel_size", layer.get("pool_size"))
    k = (k,) * rank if isinstance(k, int) else tuple(k)
    s = layer.get("stride", k if "pool_size" in layer else 1)
    s = (s,) * rank if isinstance(s, int) else tuple(s)
    d = layer.get("dilation", 1)
    d = (d,) * rank if isinstance(d, int) else tuple(d)
    if pad == "valid":
        return [(0, 0)] * rank
    if pad == "same":
        return [tf_same_pads(n, kk, ss, dd) for n, kk, ss, dd in zip(size, k, s, d)]
    if isinstance(pad, int):
        return [(pad, pad)] * rank
    return [tuple(p) if isinstance(p, list) else (p, p) for p in pad]


def close(a, b, tol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shape {a.shape} != {b.shape}"
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------
# registry and completeness
# ------------------------------------------------------------------------------------------


def catalog_spec(layer_type):
    """A small model exercising ``layer_type``."""
    definition = REGISTRY.definition(layer_type)
    if type(definition).__module__.rsplit(".", 1)[-1] not in CATALOG_ORDER:
        # a type added after the original catalog: its definition's own first example
        examples = definition.examples
        return next(ex for ex in examples if ex.layers[-1]["type"] == layer_type).spec()
    rank = 1 if layer_type.endswith("1d") else 3 if layer_type.endswith("3d") else 2
    size = {1: [9], 2: [7, 8], 3: [4, 5, 6]}[rank]
    layer = {"type": layer_type, "name": "probe"}
    before = []
    if layer_type.startswith("conv_transpose"):
        layer.update(filters=2, kernel_size=3, stride=2)
    elif layer_type.startswith("conv"):
        layer.update(filters=4, kernel_size=3)
    elif layer_type == "depthwise_conv2d":
        layer.update(kernel_size=3, depth_multiplier=2)
    elif layer_type == "separable_conv2d":
        layer.update(filters=4, kernel_size=3)
    elif "pool" in layer_type and not layer_type.startswith("global"):
        layer.update(pool_size=2)
    elif layer_type in ("dropout", "spatial_dropout"):
        layer.update(rate=0.5)
    elif layer_type == "dense":
        layer.update(units=5)
        before = [{"type": "flatten", "name": "flat"}]
    elif layer_type == "upsample":
        layer.update(scale_factor=2)
    elif layer_type.startswith("zero_pad"):
        layer.update(padding=1)
    elif layer_type in ("add", "concat"):
        layer.update(inputs=["input", "input"])
    return make_spec(3, size, *before, layer)


@pytest.mark.parametrize("layer_type", layer_types())
def test_every_layer_type_builds_with_planned_shapes(layer_type):
    spec = catalog_spec(layer_type)
    plan = resolve(spec)
    model = build(spec, "keras")
    assert tuple(model.inputs[0].shape) == (None,) + plan.layers[0].input_shapes[0][1:] + (plan.layers[0].input_shapes[0][0],)
    for layer in plan.layers:
        assert tuple(model.get_layer(layer.name).output.shape) == (None,) + layer.output_shape_last
    x = random_input(spec)
    assert np.asarray(model(x)).shape == (2,) + plan.layers[-1].output_shape_last


# ------------------------------------------------------------------------------------------
# shapes (expected values written out by hand, channels last)
# ------------------------------------------------------------------------------------------

SHAPE_TABLE = [
    ((3, [28, 28]), {"type": "conv2d", "filters": 8, "kernel_size": 3}, (26, 26, 8)),
    ((3, [9, 8]), {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"}, (5, 4, 4)),
    ((3, [10, 11]), {"type": "conv2d", "filters": 4, "kernel_size": 4, "stride": 3, "padding": "same"}, (4, 4, 4)),
    ((3, [10, 10]), {"type": "conv2d", "filters": 4, "kernel_size": 3, "dilation": 2, "stride": 2, "padding": 1}, (4, 4, 4)),
    ((4, [9, 9]), {"type": "conv2d", "filters": 6, "kernel_size": 3, "groups": 2, "padding": [[0, 2], [1, 0]]}, (9, 8, 6)),
    ((2, [11]), {"type": "conv1d", "filters": 3, "kernel_size": 5, "stride": 2, "padding": "same"}, (6, 3)),
    ((2, [5, 6, 7]), {"type": "conv3d", "filters": 3, "kernel_size": 3, "stride": 2, "padding": "same"}, (3, 3, 4, 3)),
    ((3, [8, 8]), {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (5, 5, 3)),
    ((3, [7, 7]), {"type": "avg_pool2d", "pool_size": 2, "ceil_mode": True}, (4, 4, 3)),
    ((3, [10]), {"type": "max_pool1d", "pool_size": 3, "stride": 3, "padding": 1, "ceil_mode": True}, (4, 3)),
    ((3, [5, 5]), {"type": "conv_transpose2d", "filters": 2, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}, (10, 10, 2)),
    ((3, [5, 5]), {"type": "conv_transpose2d", "filters": 2, "kernel_size": 3, "stride": 3, "padding": "same"}, (15, 15, 2)),
    ((3, [5, 5]), {"type": "conv_transpose2d", "filters": 2, "kernel_size": 1, "stride": 2}, (10, 10, 2)),
    ((3, [4, 4, 4]), {"type": "conv_transpose3d", "filters": 2, "kernel_size": 2, "stride": 2}, (8, 8, 8, 2)),
    ((3, [6]), {"type": "conv_transpose1d", "filters": 2, "kernel_size": 4, "stride": 2, "padding": 1}, (12, 2)),
    ((3, [6, 7]), {"type": "separable_conv2d", "filters": 5, "kernel_size": 3, "stride": 2, "padding": "same", "depth_multiplier": 2}, (3, 4, 5)),
]


@pytest.mark.parametrize("input_, layer, expected", SHAPE_TABLE, ids=[f"{i}-{row[1]['type']}" for i, row in enumerate(SHAPE_TABLE)])
def test_output_shapes(input_, layer, expected):
    spec = make_spec(input_[0], input_[1], dict(layer, name="probe"))
    model = build(spec, "keras")
    assert tuple(model.get_layer("probe").output.shape) == (None,) + expected
    assert np.asarray(model(random_input(spec, batch=1))).shape == (1,) + expected


# ------------------------------------------------------------------------------------------
# convolutions vs torch (explicit padding) and tf.nn (SAME)
# ------------------------------------------------------------------------------------------

CONV_CASES = [
    ((3, [8, 9]), {"type": "conv2d", "filters": 4, "kernel_size": 3}),
    ((3, [8, 9]), {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"}),
    ((3, [10, 11]), {"type": "conv2d", "filters": 4, "kernel_size": 4, "stride": 3, "padding": "same"}),
    ((3, [9, 8]), {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": [[0, 2], [1, 0]]}),
    ((3, [11, 10]), {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "dilation": 2, "padding": 2}),
    ((4, [7, 8]), {"type": "conv2d", "filters": 6, "kernel_size": 3, "groups": 2, "padding": 1, "activation": "relu"}),
    ((4, [9, 10]), {"type": "conv2d", "filters": 4, "kernel_size": 3, "groups": 4, "stride": 2, "dilation": 2, "padding": "same"}),
    ((2, [11]), {"type": "conv1d", "filters": 3, "kernel_size": 5, "stride": 2, "padding": "same"}),
    ((2, [12]), {"type": "conv1d", "filters": 3, "kernel_size": 3, "stride": 3, "dilation": 2, "padding": [[1, 2]]}),
    ((2, [5, 6, 7]), {"type": "conv3d", "filters": 3, "kernel_size": 3, "stride": 2, "padding": "same", "bias": False}),
    ((4, [5, 5, 6]), {"type": "conv3d", "filters": 2, "kernel_size": 2, "dilation": 2, "groups": 2, "padding": 1}),
]


def torch_conv(x_first, weight, bias, layer, size):
    rank = len(size)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[rank]
    pads = spec_pads(layer, size)
    x_first = F.pad(x_first, torch_pad_arg(pads))
    return conv(x_first, weight, bias, stride=layer.get("stride", 1), dilation=layer.get("dilation", 1), groups=layer.get("groups", 1))


@pytest.mark.parametrize("input_, layer", CONV_CASES, ids=[f"{i}-{c[1]['type']}" for i, c in enumerate(CONV_CASES)])
def test_conv_values_match_torch(input_, layer):
    spec = make_spec(input_[0], input_[1], dict(layer, name="probe"))
    model = build(spec, "keras")
    x = random_input(spec)
    got = layer_output(model, "probe", x)
    keras_layer = model.get_layer("probe")
    bias = torch.from_numpy(np.asarray(keras_layer.bias)) if layer.get("bias", True) else None
    expected = torch_conv(to_first(x), torch_kernel(keras_layer.kernel), bias, layer, input_[1])
    if layer.get("activation") == "relu":
        expected = F.relu(expected)
    close(got, to_last(expected))


def test_conv_same_matches_tf_nn_same():
    layer = {"type": "conv2d", "name": "probe", "filters": 3, "kernel_size": 4, "stride": 2, "padding": "same", "bias": False}
    spec = make_spec(2, [9, 8], layer)
    model = build(spec, "keras")
    x = random_input(spec)
    expected = tf.nn.conv2d(x, model.get_layer("probe").kernel, strides=2, padding="SAME")
    close(layer_output(model, "probe", x), expected)
    # negative control: PyTorch-style symmetric padding 1 is not TF's SAME here (odd cell at the end)
    naive = F.conv2d(F.pad(to_first(x), (1, 1, 1, 1)), torch_kernel(model.get_layer("probe").kernel), stride=2)
    assert to_last(naive).shape != np.asarray(expected).shape or not np.allclose(to_last(naive), expected, atol=1e-4)


DEPTHWISE_CASES = [
    {"type": "depthwise_conv2d", "kernel_size": 3, "stride": 2, "padding": "same", "depth_multiplier": 2},
    {"type": "depthwise_conv2d", "kernel_size": 3, "stride": 2, "dilation": 2, "padding": 1},
    {"type": "separable_conv2d", "filters": 4, "kernel_size": 3, "dilation": 2, "padding": "same", "depth_multiplier": 2},
    {"type": "separable_conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": [[1, 0], [0, 1]], "activation": "sigmoid"},
    {"type": "separable_conv2d", "filters": 2, "kernel_size": 2, "stride": 2, "dilation": 2, "padding": "same"},
]


@pytest.mark.parametrize("layer", DEPTHWISE_CASES, ids=lambda c: c["type"])
def test_depthwise_and_separable_match_torch(layer):
    size, channels = [9, 10], 3
    spec = make_spec(channels, size, dict(layer, name="probe"))
    model = build(spec, "keras")
    x = random_input(spec)
    kl = model.get_layer("probe")
    dw = np.asarray(kl.kernel if layer["type"] == "depthwise_conv2d" else kl.depthwise_kernel)  # (kh, kw, C, m) -> torch (C*m, 1, kh, kw), channel c*m + j
    kh, kw, c, m = dw.shape
    dw_t = torch.from_numpy(np.ascontiguousarray(dw.reshape(kh, kw, c * m, 1).transpose(2, 3, 0, 1)))
    pads = spec_pads(layer, size)
    xt = F.pad(to_first(x), torch_pad_arg(pads))
    stride, dilation = layer.get("stride", 1), layer.get("dilation", 1)
    bias = torch.from_numpy(np.asarray(kl.bias))
    if layer["type"] == "depthwise_conv2d":
        expected = F.conv2d(xt, dw_t, bias, stride=stride, dilation=dilation, groups=c)
    else:
        mid = F.conv2d(xt, dw_t, None, stride=stride, dilation=dilation, groups=c)
        expected = F.conv2d(mid, torch_kernel(kl.pointwise_kernel), bias)
        if layer.get("activation") == "sigmoid":
            expected = torch.sigmoid(expected)
    close(layer_output(model, "probe", x), to_last(expected))


# ------------------------------------------------------------------------------------------
# transposed convolutions
# ------------------------------------------------------------------------------------------

KERAS_NATIVE_TRANSPOSE = [(k, s, mode, 1) for k in (2, 3) for s in (1, 2, 3) for mode in ("same", "valid")] + [
    (1, 2, "same", 1), (1, 3, "valid", 1), (5, 2, "same", 1), (3, 1, "same", 2), (2, 1, "valid", 3),
]


@pytest.mark.parametrize("kernel, stride, mode, dilation", KERAS_NATIVE_TRANSPOSE)
def test_conv_transpose_same_valid_match_keras_own(kernel, stride, mode, dilation):
    layer = {"type": "conv_transpose2d", "name": "probe", "filters": 2, "kernel_size": kernel, "stride": stride, "padding": mode,
             "dilation": dilation}
    spec = make_spec(3, [4, 5], layer)
    model = build(spec, "keras")
    x = random_input(spec)
    if dilation == 1:  # TensorFlow's CPU kernel runs a dilated one only with oneDNN, which the tests turn off
        reference = keras.layers.Conv2DTranspose(2, kernel, strides=stride, padding=mode, dilation_rate=dilation)
        reference.build((None, 4, 5, 3))
        reference.set_weights(model.get_layer("probe").get_weights())
        close(layer_output(model, "probe", x), reference(x))
    # and the plan's crop semantics, rebuilt from torch's full transposed convolution
    plan_layer = resolve(spec).layer("probe")
    kl = model.get_layer("probe")
    full = F.conv_transpose2d(to_first(x), torch_kernel(kl.kernel), None, stride=stride, dilation=dilation)
    extend = [max(-a, 0) for _, a in plan_layer.padding]
    full = F.pad(full, (0, extend[1], 0, extend[0]))
    (t, b), (left, r) = [(bb, max(a, 0)) for bb, a in plan_layer.padding]
    cropped = full[:, :, t:full.shape[2] - b, left:full.shape[3] - r] + torch.from_numpy(np.asarray(kl.bias)).reshape(1, -1, 1, 1)
    close(layer_output(model, "probe", x), to_last(cropped))


TORCH_TRANSPOSE = [
    # (kernel, stride, padding, output_padding, dilation)
    (3, 2, 1, 1, 1),
    (4, 2, 1, 0, 1),
    (3, 3, 0, 2, 1),
    (3, 3, 1, 2, 1),  # output_padding > padding: bias-only cells at the end
    (3, 1, 1, 0, 2),
    (3, 2, 1, 1, 2),  # stride with dilation (Keras refuses it natively)
    (2, 3, 2, 1, 1),
]


@pytest.mark.parametrize("kernel, stride, padding, output_padding, dilation", TORCH_TRANSPOSE)
def test_conv_transpose_numeric_matches_torch(kernel, stride, padding, output_padding, dilation):
    layer = {
        "type": "conv_transpose2d", "name": "probe", "filters": 2, "kernel_size": kernel, "stride": stride,
        "padding": padding, "output_padding": output_padding, "dilation": dilation, "activation": "tanh",
    }
    spec = make_spec(3, [4, 5], layer)
    model = build(spec, "keras")
    x = random_input(spec)
    kl = model.get_layer("probe")
    reference = torch.nn.ConvTranspose2d(3, 2, kernel, stride=stride, padding=padding, output_padding=output_padding, dilation=dilation)
    with torch.no_grad():
        reference.weight.copy_(torch_kernel(kl.kernel))
        reference.bias.copy_(torch.from_numpy(np.asarray(kl.bias)))
        expected = torch.tanh(reference(to_first(x)))
    close(layer_output(model, "probe", x), to_last(expected))


@pytest.mark.parametrize(
    "layer_type, size, extra",
    [
        ("conv_transpose1d", [6], {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}),
        ("conv_transpose3d", [3, 4, 3], {"kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1}),
        ("conv_transpose2d", [4, 4], {"kernel_size": 3, "stride": 2, "padding": "valid", "output_padding": 1}),
    ],
)
def test_conv_transpose_other_ranks_match_torch(layer_type, size, extra):
    rank = len(size)
    spec = make_spec(2, size, {"type": layer_type, "name": "probe", "filters": 3, **extra})
    model = build(spec, "keras")
    x = random_input(spec)
    kl = model.get_layer("probe")
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[rank]
    padding = 0 if extra["padding"] == "valid" else extra["padding"]
    expected = fn(to_first(x), torch_kernel(kl.kernel), torch.from_numpy(np.asarray(kl.bias)), stride=extra["stride"],
                  padding=padding, output_padding=extra["output_padding"])
    close(layer_output(model, "probe", x), to_last(expected))


# ------------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------------

POOL_CASES = [
    # (rank size, layer) -- inputs are all negative so a zero that wins a max is visible
    ([8, 8], {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": 1}),
    ([8, 7], {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ([7, 7], {"type": "max_pool2d", "pool_size": 2, "ceil_mode": True}),
    ([10, 9], {"type": "max_pool2d", "pool_size": 3, "stride": 3, "padding": 1, "ceil_mode": True}),
    ([10], {"type": "max_pool1d", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ([5, 5, 4], {"type": "max_pool3d", "pool_size": 2, "ceil_mode": True}),
    ([8, 7], {"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": 1}),
    ([8, 7], {"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ([8, 8], {"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}),
    ([8, 8], {"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
    ([7, 7], {"type": "avg_pool2d", "pool_size": 2, "ceil_mode": True}),
    ([9], {"type": "avg_pool1d", "pool_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}),
    ([5, 4, 5], {"type": "avg_pool3d", "pool_size": 2, "ceil_mode": True}),
]


def torch_pool(layer, x_first, rank):
    kind = "max" if layer["type"].startswith("max") else "avg"
    cls = getattr(torch.nn, f"{'MaxPool' if kind == 'max' else 'AvgPool'}{rank}d")
    kwargs = dict(kernel_size=layer["pool_size"], stride=layer.get("stride"), padding=layer.get("padding", 0),
                  ceil_mode=layer.get("ceil_mode", False))
    if kind == "avg":
        kwargs["count_include_pad"] = layer.get("count_include_pad", True)
    return cls(**kwargs)(x_first)


@pytest.mark.parametrize("size, layer", POOL_CASES, ids=[f"{i}-{c[1]['type']}" for i, c in enumerate(POOL_CASES)])
def test_pools_match_torch(size, layer):
    spec = make_spec(3, size, dict(layer, name="probe"))
    model = build(spec, "keras")
    x = random_input(spec, negative=True)
    expected = to_last(torch_pool(layer, to_first(x), len(size)))
    close(layer_output(model, "probe", x), expected)


def test_max_pool_negative_control_zero_padding_wins():
    """Zero padding before a VALID max pool lets a 0 win on an all-negative input: not PyTorch's answer."""
    spec = make_spec(3, [8, 8], {"type": "max_pool2d", "name": "probe", "pool_size": 3, "stride": 2, "padding": 1})
    x = random_input(spec, negative=True)
    naive = keras.layers.MaxPooling2D(3, 2, padding="valid")(keras.layers.ZeroPadding2D(1)(x))
    expected = to_last(torch_pool(spec["layers"][0], to_first(x), 2))
    assert np.asarray(naive).max() == 0.0 and expected.max() < 0
    close(layer_output(build(spec, "keras"), "probe", x), expected)


def test_avg_pool_negative_controls():
    """count_include_pad=False and ceil-mode overhang change the divisor; the naive mappings differ."""
    x = RNG.standard_normal((1, 8, 8, 2)).astype("float32") + 3.0
    include = to_last(torch.nn.AvgPool2d(3, 2, padding=1, count_include_pad=True)(to_first(x)))
    exclude = to_last(torch.nn.AvgPool2d(3, 2, padding=1, count_include_pad=False)(to_first(x)))
    assert not np.allclose(include, exclude, atol=1e-3)
    ceil_torch = to_last(torch.nn.AvgPool2d(3, 2, padding=1, ceil_mode=True)(to_first(x)))
    naive_ceil = keras.layers.AveragePooling2D(3, 2, padding="valid")(keras.layers.ZeroPadding2D(((1, 2), (1, 2)))(x))
    assert not np.allclose(ceil_torch, naive_ceil, atol=1e-3)
    # keras' own 'same' never counts padding: equal to the exclude-padding divisor only where the windows agree
    same = keras.layers.AveragePooling2D(3, 2, padding="same")(x)
    assert same.shape[1:3] == (4, 4) and not np.allclose(np.asarray(same), include[:, :4, :4], atol=1e-3)


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_same_pools_match_tf_nn(pool):
    layer = {"type": f"{pool}_pool2d", "name": "probe", "pool_size": 3, "stride": 2, "padding": "same"}
    spec = make_spec(3, [8, 7], layer)
    model = build(spec, "keras")
    x = random_input(spec, negative=True)
    fn = tf.nn.max_pool2d if pool == "max" else tf.nn.avg_pool2d
    close(layer_output(model, "probe", x), fn(x, 3, 2, "SAME"))


def test_asymmetric_max_pool_matches_torch_with_neg_inf_pad():
    layer = {"type": "max_pool2d", "name": "probe", "pool_size": 3, "stride": 2, "padding": [[0, 2], [1, 0]]}
    spec = make_spec(2, [7, 8], layer)
    x = random_input(spec, negative=True)
    padded = F.pad(to_first(x), (1, 0, 0, 2), value=float("-inf"))
    close(layer_output(build(spec, "keras"), "probe", x), to_last(F.max_pool2d(padded, 3, 2)))


# ------------------------------------------------------------------------------------------
# activations, normalisation, the rest
# ------------------------------------------------------------------------------------------

ACTIVATION_LAYERS = [
    ({"type": "relu"}, F.relu),
    ({"type": "relu6"}, F.relu6),
    ({"type": "sigmoid"}, torch.sigmoid),
    ({"type": "tanh"}, torch.tanh),
    ({"type": "softmax"}, lambda t: F.softmax(t, dim=1)),
    ({"type": "silu"}, F.silu),
    ({"type": "hard_swish"}, F.hardswish),
    ({"type": "hard_sigmoid"}, F.hardsigmoid),
    ({"type": "mish"}, F.mish),
    ({"type": "softplus"}, F.softplus),
    ({"type": "selu"}, F.selu),
    ({"type": "leaky_relu"}, lambda t: F.leaky_relu(t, 0.01)),
    ({"type": "leaky_relu", "negative_slope": 0.2}, lambda t: F.leaky_relu(t, 0.2)),
    ({"type": "elu", "alpha": 0.5}, lambda t: F.elu(t, 0.5)),
    ({"type": "gelu"}, lambda t: F.gelu(t)),
    ({"type": "gelu", "approximate": "tanh"}, lambda t: F.gelu(t, approximate="tanh")),
]


INLINE = ["relu", "relu6", "sigmoid", "tanh", "softmax", "silu", "gelu", "hard_swish", "hard_sigmoid", "linear"]
TORCH_INLINE = {
    "relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softmax": lambda t: F.softmax(t, dim=1),
    "silu": F.silu, "gelu": F.gelu, "hard_swish": F.hardswish, "hard_sigmoid": F.hardsigmoid, "linear": lambda t: t,
}


def activation_spec():
    """One branch per activation layer and per inline activation, all reading the input, joined."""
    branches = [dict(layer, name=f"act{i}", inputs=["input"]) for i, (layer, _) in enumerate(ACTIVATION_LAYERS)]
    branches += [
        {"type": "conv2d", "name": f"conv_{act}", "filters": 3, "kernel_size": 1, "activation": act, "inputs": ["input"]}
        for act in INLINE
    ]
    branches.append({"type": "prelu", "name": "slopes", "inputs": ["input"]})
    return make_spec(3, [5, 4], *branches, {"type": "concat", "name": "joined", "inputs": [b["name"] for b in branches]}, name="acts")


def test_activation_layers_and_inline_activations_match_torch():
    spec = activation_spec()
    model = build(spec, "keras")
    x = random_input(spec) * 4  # reach the clipping regions of relu6 / hard_sigmoid
    for i, (_, fn) in enumerate(ACTIVATION_LAYERS):
        close(layer_output(model, f"act{i}", x), to_last(fn(to_first(x))), tol=2e-5)
    for act in INLINE:  # inline activation= on a 1x1 convolution
        kl = model.get_layer(f"conv_{act}")
        pre = F.conv2d(to_first(x), torch_kernel(kl.kernel), torch.from_numpy(np.asarray(kl.bias)))
        close(layer_output(model, f"conv_{act}", x), to_last(TORCH_INLINE[act](pre)), tol=2e-5)


def test_activation_negative_controls():
    x = np.linspace(-8, 8, 33, dtype="float32").reshape(1, -1)
    xt = torch.from_numpy(x)
    assert not np.allclose(keras.layers.LeakyReLU()(x), F.leaky_relu(xt, 0.01).numpy())  # keras default slope 0.3
    assert not np.allclose(keras.activations.gelu(x, approximate=True), F.gelu(xt).numpy(), atol=1e-5)
    old_hard_sigmoid = np.clip(0.2 * x + 0.5, 0, 1)  # Keras 2 / TF's hard_sigmoid
    assert not np.allclose(old_hard_sigmoid, F.hardsigmoid(xt).numpy())



def test_batch_norm_matches_torch_inference_and_momentum():
    spec = make_spec(3, [4, 4], {"type": "batch_norm", "name": "probe", "momentum": 0.2})
    model = build(spec, "keras")
    kl = model.get_layer("probe")
    gamma, beta = RNG.standard_normal(3).astype("float32"), RNG.standard_normal(3).astype("float32")
    mean, var = RNG.standard_normal(3).astype("float32"), np.array([1e-4, 2e-3, 0.5], dtype="float32")
    kl.set_weights([gamma, beta, mean, var])
    x = random_input(spec)
    as_t = [torch.from_numpy(v) for v in (mean, var, gamma, beta)]
    expected = F.batch_norm(to_first(x), as_t[0], as_t[1], as_t[2], as_t[3], training=False, eps=1e-5)
    close(layer_output(model, "probe", x), to_last(expected), tol=1e-4)
    keras_default = F.batch_norm(to_first(x), as_t[0], as_t[1], as_t[2], as_t[3], training=False, eps=1e-3)
    assert not np.allclose(to_last(keras_default), to_last(expected), atol=1e-3)  # epsilon 1e-3 would differ
    # one training step updates the moving mean like torch with momentum 0.2
    running_mean, running_var = torch.from_numpy(mean.copy()), torch.from_numpy(var.copy())
    F.batch_norm(to_first(x), running_mean, running_var, training=True, momentum=0.2, eps=1e-5)
    kl(x, training=True)
    close(np.asarray(kl.moving_mean), running_mean.numpy(), tol=1e-5)


def test_prelu_matches_torch():
    spec = make_spec(3, [4, 5], {"type": "prelu", "name": "per_channel"}, {"type": "prelu", "name": "shared", "per_channel": False},
                     {"type": "flatten", "name": "flat"}, {"type": "prelu", "name": "per_feature"})
    model = build(spec, "keras")
    assert model.get_layer("per_channel").get_weights()[0].size == 3
    assert model.get_layer("shared").get_weights()[0].size == 1
    assert np.allclose(model.get_layer("per_channel").get_weights()[0], 0.25)
    slopes = np.array([0.1, -0.3, 0.7], dtype="float32")
    model.get_layer("per_channel").set_weights([slopes.reshape(1, 1, 3)])
    x = random_input(spec)
    expected = F.prelu(to_first(x), torch.from_numpy(slopes))
    close(layer_output(model, "per_channel", x), to_last(expected))
    shared = F.prelu(expected, torch.tensor([0.25]))
    close(layer_output(model, "shared", x), to_last(shared))
    assert model.get_layer("per_feature").get_weights()[0].shape == (60,)


@pytest.mark.parametrize("scale", [2, 3])
def test_bilinear_upsample_matches_torch_half_pixel(scale):
    spec = make_spec(2, [4, 5], {"type": "upsample", "name": "probe", "scale_factor": scale, "mode": "bilinear"})
    x = random_input(spec)
    expected = F.interpolate(to_first(x), scale_factor=scale, mode="bilinear", align_corners=False)
    close(layer_output(build(spec, "keras"), "probe", x), to_last(expected))
    corners = F.interpolate(to_first(x), scale_factor=scale, mode="bilinear", align_corners=True)
    assert not np.allclose(to_last(corners), to_last(expected), atol=1e-3)


@pytest.mark.parametrize("size, scale", [([5], 3), ([3, 4], [2, 3]), ([2, 3, 2], 2)])
def test_nearest_upsample_matches_torch(size, scale):
    spec = make_spec(2, size, {"type": "upsample", "name": "probe", "scale_factor": scale})
    x = random_input(spec)
    factor = scale if isinstance(scale, int) else tuple(scale)
    expected = F.interpolate(to_first(x), scale_factor=factor, mode="nearest")
    close(layer_output(build(spec, "keras"), "probe", x), to_last(expected))


def test_misc_layers_match_torch():
    """zero_pad, global pools, dropout (inference), flatten order, dense, add, concat in one model."""
    spec = make_spec(
        2, [3, 4],
        {"type": "zero_pad2d", "name": "padded", "padding": [[1, 0], [0, 2]]},
        {"type": "dropout", "name": "drop", "rate": 0.5},
        {"type": "spatial_dropout", "name": "sdrop", "rate": 0.5},
        {"type": "global_avg_pool", "name": "gap", "keepdims": True, "inputs": ["sdrop"]},
        {"type": "global_max_pool", "name": "gmp", "inputs": ["sdrop"]},
        {"type": "add", "name": "summed", "inputs": ["sdrop", "padded"]},
        {"type": "concat", "name": "joined", "inputs": ["summed", "padded"]},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "fc", "units": 3},
        {"type": "concat", "name": "out", "inputs": ["fc", "gmp"]},
        {"type": "add", "name": "out2", "inputs": ["out", "out"]},
        {"type": "flatten", "name": "gap_flat", "inputs": ["gap"]},
        {"type": "concat", "name": "final", "inputs": ["out2", "gap_flat"]},
    )
    model = build(spec, "keras")
    x = random_input(spec)
    xt = to_first(x)
    padded = F.pad(xt, (0, 2, 1, 0))
    close(layer_output(model, "padded", x), to_last(padded))
    close(layer_output(model, "drop", x), to_last(padded))
    close(layer_output(model, "gap", x), to_last(padded.mean(dim=(2, 3), keepdim=True)))
    close(layer_output(model, "gmp", x), padded.amax(dim=(2, 3)).numpy())
    joined = torch.cat([padded * 2, padded], dim=1)
    close(layer_output(model, "joined", x), to_last(joined))
    flat_keras = layer_output(model, "flat", x)
    flat_hwc = torch.flatten(joined.permute(0, 2, 3, 1), 1).numpy()  # keras flattens H, W, C
    close(flat_keras, flat_hwc)
    assert not np.allclose(flat_keras, torch.flatten(joined, 1).numpy())  # torch's C, H, W order differs
    kl = model.get_layer("fc")
    fc = F.linear(torch.from_numpy(flat_hwc), torch.from_numpy(np.asarray(kl.kernel).T), torch.from_numpy(np.asarray(kl.bias)))
    close(layer_output(model, "fc", x), fc.numpy(), tol=1e-4)


# ------------------------------------------------------------------------------------------
# the generated source
# ------------------------------------------------------------------------------------------

HELPER_HEAVY = make_spec(
    4, [9, 10],
    {"type": "conv2d", "name": "c1", "filters": 4, "kernel_size": 3, "stride": 2, "dilation": 2, "padding": "same", "groups": 2, "activation": "hard_swish"},
    {"type": "max_pool2d", "name": "p1", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"type": "avg_pool2d", "name": "p2", "pool_size": 2, "stride": 1, "padding": 1, "count_include_pad": False},
    {"type": "conv_transpose2d", "name": "t1", "filters": 3, "kernel_size": 3, "stride": 2, "dilation": 2, "padding": 1, "output_padding": 1},
    {"type": "gelu", "name": "g", "approximate": "tanh"},
    {"type": "batch_norm", "name": "bn"},
    {"type": "flatten", "name": "f"},
    {"type": "dense", "name": "d", "units": 3, "activation": "softmax"},
    name="helpers",
)


def test_source_is_standalone_readable_and_matches_build(tmp_path):
    model, source = build(HELPER_HEAVY, "keras", return_source=True)
    tree = ast.parse(source)
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"keras", "numpy"}
    assert "Lambda" not in source and "cnnspec" not in imported
    assert "set_image_data_format" not in source
    assert ast.get_docstring(tree).startswith("Keras 3 model 'helpers', generated by cnnspec")
    path = tmp_path / "helpers_model.py"
    path.write_text(source)
    module_spec = importlib.util.spec_from_file_location("helpers_model", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    assert module.CNNSPEC_LAYER_NAMES == [layer["name"] for layer in HELPER_HEAVY["layers"]]
    standalone = getattr(module, function_name("helpers"))()
    standalone.set_weights(model.get_weights())
    x = random_input(HELPER_HEAVY)
    close(standalone(x), model(x))
    # helper layers serialize: a saved model loads back (registered under package 'cnnspec')
    saved = tmp_path / "helpers.keras"
    model.save(saved)
    close(keras.models.load_model(saved)(x), model(x))


def test_helpers_only_when_needed():
    plain = emit_source(make_spec(1, [8, 8], {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "same"}), "keras")
    assert "class " not in plain and "import numpy" not in plain
    assert 'padding="same"' in plain


def test_helper_names_do_not_collide_and_class_names_are_guarded():
    spec = make_spec(1, [8, 8], {"type": "conv2d", "name": "conv1_pad", "filters": 2, "kernel_size": 3},
                     {"type": "conv2d", "name": "conv1", "filters": 2, "kernel_size": 3, "padding": [[1, 0], [0, 1]]})
    source = emit_source(spec, "keras")
    assert 'name="conv1_pad2"' in source
    model = build(spec, "keras")
    assert {layer.name for layer in model.layers} >= {"conv1_pad", "conv1_pad2", "conv1"}
    clash = make_spec(1, [8, 8], {"type": "max_pool2d", "name": "ConstantPadding", "pool_size": 2, "padding": 1})
    with pytest.raises(CnnspecError, match="collides"):
        emit_source(clash, "keras")


@pytest.mark.onnx
@pytest.mark.parametrize("spec", [HELPER_HEAVY, activation_spec()], ids=["helpers", "activations"])
def test_model_exports_to_onnx_and_runs(tmp_path, spec):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    model = build(spec, "keras")
    x = random_input(spec) * 4
    expected = model(x)  # Keras exports only models that have been called once
    path = tmp_path / "helpers.onnx"
    model.export(str(path), format="onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: x})
    close(result, expected)


def test_unequal_strides_pad_explicitly_and_agree_with_torch():
    """TensorFlow without oneDNN computes a "same" Conv3D with strides (1, 1, 3) wrongly; cnnspec pads
    explicitly there. Found by the equivalence fuzzer (max abs diff 3.08 before)."""
    layer = {"type": "conv3d", "name": "probe", "filters": 1, "kernel_size": 1, "stride": [1, 1, 3], "padding": "same"}
    spec = make_spec(1, [3, 3, 3], layer)
    from cnnspec import emit_source, transfer_weights

    assert 'padding="same"' not in emit_source(spec, "keras")
    torch_model, keras_model = build(spec, "torch"), build(spec, "keras")
    transfer_weights(torch_model, keras_model, spec)
    x = random_input(spec)
    with torch.no_grad():
        expected = torch_model(to_first(x)).numpy()
    close(layer_output(keras_model, "probe", x), to_last(torch.from_numpy(expected)))


@pytest.mark.parametrize(
    "layer",
    [
        {"type": "conv_transpose2d", "filters": 2, "kernel_size": 2, "stride": 2, "output_padding": 1},
        {"type": "conv_transpose2d", "filters": 1, "kernel_size": [1, 2], "stride": [1, 3], "padding": "same"},
    ],
)
def test_transposed_conv_cells_past_the_full_output_verify(layer):
    """Cells past the full transposed output (output_padding; 'same' with a kernel shorter than the
    stride) hold the bias only.  Keras' own layer computes them, but tf2onnx writes them as negative
    pads that onnxruntime refuses (verify failed with an internal error): the helper pads instead."""
    pytest.importorskip("tf2onnx")
    spec = make_spec(1, [3, 3], dict(layer, name="up"))
    assert "extend=" in emit_source(spec, "keras")  # the helper, not Keras' output_padding
    from cnnspec import verify

    report = verify(spec)
    assert report.ok, report.render(use_rich=False)


def test_output_padding_below_the_dilation_only_is_refused():
    spec = make_spec(1, [3, 3], {"type": "conv_transpose2d", "name": "up", "filters": 1, "kernel_size": 2,
                                 "dilation": 2, "output_padding": 1})
    with pytest.raises(CnnspecError, match="output_padding 1 on axis H must be smaller than the stride 1"):
        resolve(spec)
