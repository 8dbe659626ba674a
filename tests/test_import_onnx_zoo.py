"""from_onnx on the model-zoo layers, as the frameworks themselves export them.

torch.onnx (legacy exporter, opset 18) of hand-written torchvision-style modules and tf2onnx of
Keras models built from Keras' own layers: ConvNeXt blocks (permute -> LayerNorm -> Linear ->
GELU -> Linear -> layer scale), EfficientNet MBConv (SiLU, squeeze-excite, stochastic depth as the
identity at inference), MobileNetV3 (hardswish, hardsigmoid gates), ShuffleNetV2 (chunk, channel
shuffle), GroupNorm / InstanceNorm, input normalisation, padding, cropping and resizing.  The
reference is onnxruntime running the ORIGINAL file; the model built from the imported spec, given
the file's initializers through ``transfer_weights``, must compute the same.  The spec's layer
types are asserted too, so a test cannot pass by a lucky rewrite into something else.

Negative controls: an op no type covers is a located error naming the node and the op (exit 2 in
the CLI), and a function that is almost GELU is not read as GELU.
"""

from __future__ import annotations

import io
import os
from functools import partial

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import cnnspec  # noqa: E402
from cnnspec.importers.common import UnsupportedModel  # noqa: E402
from cnnspec.importers.onnx import import_onnx  # noqa: E402
from cnnspec.verifier.onnx_export import import_frameworks, quiet_warnings  # noqa: E402
from cnnspec.weights.transfer import randomize  # noqa: E402

nn = torch.nn
F = torch.nn.functional

pytestmark = [pytest.mark.frameworks, pytest.mark.onnx]


def torch_onnx(module, shape, dynamic_batch: bool = False) -> onnx.ModelProto:
    module.eval()
    randomize(module, 0)
    buffer = io.BytesIO()
    with quiet_warnings(), torch.no_grad():
        torch.onnx.export(
            module,
            (torch.zeros(2, *shape),),
            buffer,
            dynamo=False,
            opset_version=18,
            input_names=["input"],
            dynamic_axes={"input": {0: "batch"}} if dynamic_batch else None,
        )
    return onnx.load_from_string(buffer.getvalue())


def keras_onnx(model, shape_last) -> onnx.ModelProto:
    import tensorflow as tf
    import tf2onnx

    randomize(model, 0)
    signature = (tf.TensorSpec((None, *shape_last), tf.float32, name="input"),)
    with quiet_warnings():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=18)
    return proto


def run_original(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def close(got, expected) -> float:
    assert got.shape == expected.shape
    diff = float(np.abs(got - expected).max())
    assert diff <= 1e-4 * max(1.0, float(np.abs(expected).max())), diff
    return diff


def check(proto, x_first, channels_last=False, keras_too=False):
    """The spec's torch (and Keras) model with the file's weights computes what onnxruntime computes."""
    spec = import_onnx(proto).spec
    feed = np.ascontiguousarray(np.moveaxis(x_first, 1, -1)) if channels_last else x_first
    expected = run_original(proto, feed)
    torch_model = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(proto, torch_model, spec)
    with torch.no_grad():
        got = torch_model(torch.from_numpy(x_first)).numpy()
    if channels_last and got.ndim > 2:
        got = np.moveaxis(got, 1, -1)
    close(got, expected)
    if keras_too:
        import_frameworks()
        keras_model = cnnspec.build(spec, "keras")
        cnnspec.transfer_weights(proto, keras_model, spec)
        got = np.asarray(keras_model(np.ascontiguousarray(np.moveaxis(x_first, 1, -1))))
        if not channels_last and got.ndim > 2:
            got = np.moveaxis(got, -1, 1)
        close(got, expected)
    return spec


def types_of(spec) -> list[str]:
    return [layer.type for layer in spec.layers]


def sample(shape, seed=1):
    return np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# torch.onnx
# ------------------------------------------------------------------------------------------------


class ConvNeXtBlock(nn.Module):
    """torchvision's block: depthwise 7x7, permute, LayerNorm, Linear, GELU, Linear, permute, scale."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.full((dim, 1, 1), 1e-6))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class ConvNeXtTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 4, stride=4)
        self.stem_norm = nn.GroupNorm(2, 8)
        self.block = ConvNeXtBlock(8)
        self.head_norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.block(self.stem_norm(self.stem(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(self.head_norm(x))


def test_convnext_block_imports():
    spec = check(torch_onnx(ConvNeXtTiny(), (3, 16, 16)), sample((3, 16, 16)), keras_too=True)
    types = types_of(spec)
    assert {"group_norm", "layer_norm", "gelu", "layer_scale", "depthwise_conv2d"} <= set(types)
    assert types.count("conv2d") == 3  # the stem and the two Linear layers on the channels-last map


class StochasticDepth(nn.Module):
    def __init__(self, rate):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        if not self.training or self.rate == 0:
            return x
        keep = torch.rand(x.shape[0], 1, 1, 1) >= self.rate
        return x * keep / (1 - self.rate)


class MBConv(nn.Module):
    """EfficientNet's block: expand, SiLU, depthwise, squeeze-excite, project, stochastic depth."""

    def __init__(self, channels, expanded):
        super().__init__()
        self.expand = nn.Sequential(
            nn.Conv2d(channels, expanded, 1, bias=False), nn.BatchNorm2d(expanded), nn.SiLU()
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(expanded, expanded, 3, padding=1, groups=expanded, bias=False),
            nn.BatchNorm2d(expanded),
            nn.SiLU(),
        )
        self.reduce = nn.Conv2d(expanded, 4, 1)
        self.restore = nn.Conv2d(4, expanded, 1)
        self.project = nn.Sequential(
            nn.Conv2d(expanded, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )
        self.drop = StochasticDepth(0.2)

    def forward(self, x):
        y = self.depthwise(self.expand(x))
        gate = torch.sigmoid(self.restore(F.silu(self.reduce(F.adaptive_avg_pool2d(y, 1)))))
        return x + self.drop(self.project(y * gate))


class EfficientNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = MBConv(8, 16)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = self.block(F.silu(self.stem((x - self.mean) / self.std)))
        return self.fc(self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


def test_efficientnet_block_imports():
    spec = check(torch_onnx(EfficientNetLike(), (3, 16, 16)), sample((3, 16, 16)))
    types = types_of(spec)
    assert types[0] == "rescale"  # (x - mean) / std, per channel
    assert types.count("silu") == 4 and "multiply" in types and "sigmoid" in types


class MobileNetV3Like(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.act = nn.Hardswish()
        self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.gate = nn.Hardsigmoid()
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = self.act(self.stem(x))
        y = self.dw(x)
        y = y * self.gate(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(y, 1)))))
        x = F.leaky_relu(x + y, 0.2)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.head(F.elu(x, 0.5))


def test_mobilenet_v3_patterns_import():
    spec = check(torch_onnx(MobileNetV3Like(), (3, 16, 16)), sample((3, 16, 16)))
    assert {"hard_swish", "hard_sigmoid", "leaky_relu", "elu"} <= set(types_of(spec))


class ShuffleUnit(nn.Module):
    def __init__(self):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(4, 4, 1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Conv2d(4, 4, 3, padding=1, groups=4),
        )

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, self.branch(b)], dim=1)
        n, c, h, w = x.shape
        return x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class ShuffleNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.unit = ShuffleUnit()

    def forward(self, x):
        return self.unit(self.pool(F.relu(self.stem(x))))


def test_shufflenet_unit_imports():
    spec = check(torch_onnx(ShuffleNetLike(), (3, 12, 12)), sample((3, 12, 12)), keras_too=True)
    types = types_of(spec)
    assert types.count("channel_slice") == 2 and "channel_shuffle" in types and "concat" in types


def test_shufflenet_units_exported_with_a_dynamic_batch_import():
    """With a dynamic batch torch.onnx computes ``c // 2`` of each shuffle's view as Shape ->
    Gather -> Div -> Cast, which ONNX shape inference does not carry through: each unit's view is
    read once the one before it is (torchvision's ShuffleNetV2 has 16 of them)."""
    model = nn.Sequential(ShuffleNetLike(), ShuffleUnit(), ShuffleUnit())
    spec = check(torch_onnx(model, (3, 12, 12), dynamic_batch=True), sample((3, 12, 12)))
    assert types_of(spec).count("channel_shuffle") == 3


@pytest.mark.parametrize("channels", [3, 1], ids=["rgb", "grayscale"])
def test_a_keras_classifier_through_tf2onnx_converts_with_its_flatten_compared_in_order(tmp_path, channels):
    """tf2onnx's Keras Flatten is in H, W, C order: the proof compares it with the converted
    model's C, H, W flatten after putting it in that order (it reported a difference of 3 there
    while the outputs agreed).  With one channel tf2onnx moves the input to NCHW by a Reshape."""
    import keras

    from cnnspec.importers.pipeline import convert_model

    inputs = keras.Input((12, 12, channels))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inputs)
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(x))
    path = tmp_path / "classifier.onnx"
    path.write_bytes(keras_onnx(keras.Model(inputs, outputs), (12, 12, channels)).SerializeToString())
    conversion = convert_model(str(path), "torch", tmp_path / "out")
    assert conversion.ok, conversion.verification.render(use_rich=False)
    flatten = next(layer for layer in conversion.verification.layers if layer.type == "flatten")
    assert flatten.ok and flatten.max_abs_diff < 1e-5


class Segmenter(nn.Module):
    """Padding, norms, cropping and an FCN head resized to a size."""

    def __init__(self):
        super().__init__()
        self.reflect = nn.ReflectionPad2d((1, 2, 1, 0))
        self.replicate = nn.ReplicationPad2d(1)
        self.conv = nn.Conv2d(3, 6, 3)
        self.inorm = nn.InstanceNorm2d(6, affine=True)
        self.gnorm = nn.GroupNorm(3, 6, affine=False)
        self.zero = nn.ZeroPad2d((0, 1, 1, 0))
        self.classifier = nn.Conv2d(6, 4, 1)

    def forward(self, x):
        x = self.conv(self.replicate(self.reflect(x)))
        x = self.gnorm(self.inorm(x))
        x = self.zero(x)[:, :, 1:-1, 2:]
        x = F.gelu(x, approximate="tanh") * 0.5
        x = F.interpolate(self.classifier(x), size=(15, 13), mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2, mode="nearest")


def test_padding_norms_crop_and_resize_import():
    spec = check(torch_onnx(Segmenter(), (3, 9, 8)), sample((3, 9, 8)))
    layers = {layer.type: layer for layer in spec.layers}
    assert {
        "pad2d",
        "instance_norm",
        "group_norm",
        "zero_pad2d",
        "crop2d",
        "gelu",
        "scale",
        "resize",
        "upsample",
    } <= set(layers)
    assert layers["gelu"].approximate == "tanh" and layers["group_norm"].affine is False
    assert [layer.mode for layer in spec.layers if layer.type == "pad2d"] == [
        "reflect",
        "replicate",
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "factory,shape",
    [
        (ConvNeXtTiny, (3, 16, 16)),
        (EfficientNetLike, (3, 16, 16)),
        (MobileNetV3Like, (3, 16, 16)),
        (ShuffleNetLike, (3, 12, 12)),
        (Segmenter, (3, 9, 8)),
    ],
)
def test_dynamo_exports_import(factory, shape):
    """torch.onnx's dynamo exporter spells the same blocks with other nodes (no node names, its own
    decompositions); they import to the same layer types."""
    module = factory().eval()
    randomize(module, 0)
    with quiet_warnings(), torch.no_grad():
        program = torch.onnx.export(
            module, (torch.zeros(2, *shape),), dynamo=True, opset_version=18, input_names=["input"]
        )
    legacy = types_of(import_onnx(torch_onnx(factory(), shape)).spec)
    assert types_of(check(program.model_proto, sample(shape))) == legacy


# ------------------------------------------------------------------------------------------------
# tf2onnx
# ------------------------------------------------------------------------------------------------


def test_keras_zoo_layers_import_from_tf2onnx():
    import_frameworks()
    import keras

    layers = keras.layers
    inputs = keras.Input((12, 12, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(inputs)
    x = layers.Normalization(mean=[0.1, 0.2, 0.3], variance=[1.5, 2.0, 0.5], name="norm")(x)
    x = layers.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)
    x = layers.Conv2D(8, 3, name="conv")(x)
    x = layers.GroupNormalization(4, name="gn")(x)
    x = layers.Activation("hard_swish", name="hswish")(x)
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = layers.LayerNormalization(epsilon=1e-6, name="ln")(y)
    # Dense on a feature map: a 1x1 conv.  (TensorFlow's exact GELU uses Erfc, which tf2onnx cannot
    # convert: the tanh form is the one a tf2onnx file can hold.)
    y = layers.Dense(16, activation=partial(keras.activations.gelu, approximate=True), name="pw1")(
        y
    )
    y = layers.Dense(8, name="pw2")(y)
    x = layers.Add(name="residual")([x, y])
    gate = layers.GlobalAveragePooling2D(name="squeeze")(x)
    gate = layers.Dense(8, activation="sigmoid", name="excite")(gate)
    gate = layers.Reshape((1, 1, 8), name="gate")(gate)
    x = layers.Multiply(name="scaled")([x, gate])
    x = layers.Activation("swish", name="swish")(x)
    x = layers.Cropping2D(((1, 1), (0, 2)), name="crop")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool")(x)
    x = layers.UpSampling2D(2, name="up")(x)
    x = layers.Resizing(7, 9, interpolation="bilinear", name="resize")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.BatchNormalization(name="head_bn")(x)
    outputs = layers.Dense(5, activation="softmax", name="head")(x)
    model = keras.Model(inputs, outputs)
    spec = check(keras_onnx(model, (12, 12, 3)), sample((3, 12, 12)), channels_last=True)
    names = {layer.name: layer.type for layer in spec.layers}
    # tf2onnx's optimiser renames the convolutions it rewrites (Conv__127): their weights' names say
    # which Keras layer they are
    expected = {
        "conv": "conv2d",
        "dw": "depthwise_conv2d",
        "norm": "rescale",  # Normalization with given mean and variance: constants, per channel
        "gn": "group_norm",
        "ln": "layer_norm",
        "hswish": "hard_swish",
        "swish": "silu",
        "crop": "crop2d",
        "scaled": "multiply",
        "head_bn": "batch_norm",
    }
    assert all(names.get(name) == kind for name, kind in expected.items()), list(names.items())
    assert {"gelu", "upsample", "resize"} <= set(names.values())
    assert [kind for name, kind in names.items() if name.startswith("pw")].count("conv2d") == 2


def test_keras_flatten_then_dense_and_norm_keep_their_order():
    """Per-feature layers after a channels-last flatten read their vectors in the spec's order."""
    import_frameworks()
    import keras

    layers = keras.layers
    inputs = keras.Input((4, 4, 3))
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    x = layers.Flatten(name="flat")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.LayerNormalization(name="ln")(x)
    outputs = layers.Dense(3, name="fc")(x)
    spec = check(
        keras_onnx(keras.Model(inputs, outputs), (4, 4, 3)), sample((3, 4, 4)), channels_last=True
    )
    assert types_of(spec) == ["conv2d", "flatten", "batch_norm", "layer_norm", "dense"]


def test_keras_1d_layers_and_same_transposed_conv_import_from_tf2onnx():
    """tf2onnx runs Keras' 1-D layers as 2-D ones on a map with an added axis (ExpandDims ... Squeeze),
    and writes a 'same' transposed convolution with pads that differ per side."""
    import_frameworks()
    import keras

    layers = keras.layers
    inputs = keras.Input((20, 3))
    x = layers.Conv1D(4, 3, padding="same", activation="relu", name="c1")(inputs)
    x = layers.MaxPooling1D(2, name="mp")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.Conv1D(5, 3, strides=2, name="c2")(x)
    x = layers.AveragePooling1D(2, name="ap")(x)
    x = layers.UpSampling1D(2, name="up")(x)
    outputs = layers.GlobalAveragePooling1D(name="gap")(x)
    spec = check(
        keras_onnx(keras.Model(inputs, outputs), (20, 3)), sample((3, 20)), channels_last=True
    )
    names = {layer.name: layer.type for layer in spec.layers}
    expected = {
        "c1": "conv1d",
        "mp": "max_pool1d",
        "c2": "conv1d",
        "ap": "avg_pool1d",
        "up": "upsample",
    }
    assert all(names.get(name) == kind for name, kind in expected.items()), list(names.items())

    inputs = keras.Input((6, 6, 3))
    x = layers.Conv2DTranspose(4, 3, strides=2, padding="same", name="up")(inputs)
    spec = check(
        keras_onnx(keras.Model(inputs, x), (6, 6, 3)), sample((3, 6, 6)), channels_last=True
    )
    assert types_of(spec) == ["conv_transpose2d", "crop2d"]


def test_keras_squeeze_excite_with_convolutions_imports():
    """EfficientNet's squeeze-excite: global pool, Reshape((1, 1, C)), 1x1 convolutions, multiply --
    the Reshape is the pool's keepdims (an exact rewrite, listed)."""
    import_frameworks()
    import keras

    layers = keras.layers
    inputs = keras.Input((8, 8, 6))
    x = layers.Conv2D(6, 3, padding="same", activation="swish", name="conv")(inputs)
    gate = layers.GlobalAveragePooling2D(name="se_squeeze")(x)
    gate = layers.Reshape((1, 1, 6), name="se_reshape")(gate)
    gate = layers.Conv2D(2, 1, activation="swish", name="se_reduce")(gate)
    gate = layers.Conv2D(6, 1, activation="sigmoid", name="se_expand")(gate)
    outputs = layers.Multiply(name="se_excite")([x, gate])
    proto = keras_onnx(keras.Model(inputs, outputs), (8, 8, 6))
    spec = check(proto, sample((6, 8, 8)), channels_last=True)
    squeeze = next(layer for layer in spec.layers if layer.name == "se_squeeze")
    assert squeeze.keepdims is True
    assert any("keepdims" in rewrite.became for rewrite in import_onnx(proto).rewrites)


def test_tf2onnx_graph_with_a_channels_first_input_imports():
    """tf2onnx's inputs_as_nchw gives the graph an NCHW input (its Transpose optimised into the first
    convolution); the input's layout is read from the op that reads it, not from the exporter."""
    import_frameworks()
    import keras
    import tensorflow as tf
    import tf2onnx

    layers = keras.layers
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(4, 3, name="conv")(inputs)
    x = layers.Flatten(name="flat")(layers.ReLU(name="relu")(x))
    model = keras.Model(inputs, layers.Dense(3, name="fc")(x))
    randomize(model, 0)
    signature = (tf.TensorSpec((None, 8, 8, 3), tf.float32, name="input"),)
    with quiet_warnings():
        proto, _ = tf2onnx.convert.from_keras(
            model, input_signature=signature, opset=18, inputs_as_nchw=["input"]
        )
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 8, 8]
    spec = check(proto, sample((3, 8, 8)))
    assert types_of(spec) == ["conv2d", "relu", "flatten", "dense"]


# ------------------------------------------------------------------------------------------------
# Negative controls
# ------------------------------------------------------------------------------------------------


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return torch.cumsum(self.conv(x), 1)


def test_unsupported_op_is_located(tmp_path):
    proto = torch_onnx(Odd(), (3, 8, 8))
    with pytest.raises(UnsupportedModel) as caught:
        import_onnx(proto)
    message = str(caught.value)
    assert "'/CumSum' (CumSum)" in message and "not supported" in message
    path = tmp_path / "odd.onnx"
    onnx.save(proto, str(path))
    from cnnspec.cli.main import main

    assert main(["import", str(path), "-o", str(tmp_path / "spec.yaml")]) == 2
    assert not (tmp_path / "spec.yaml").exists()


class AlmostGelu(nn.Module):
    def forward(self, x):
        return 0.5 * x * (1 + torch.erf(x / 1.5))  # not sqrt(2): no layer type computes this


def test_a_function_close_to_gelu_is_not_read_as_gelu():
    with pytest.raises(UnsupportedModel) as caught:
        import_onnx(torch_onnx(AlmostGelu(), (3, 5, 5)))
    assert "(Div)" in str(caught.value) or "(Erf)" in str(caught.value)


class WrongEpsilonNorm(nn.Module):
    """LayerNorm over the channels written out with an epsilon the spec would get wrong if guessed."""

    def forward(self, x):
        mean = x.mean(dim=1, keepdim=True)
        variance = ((x - mean) ** 2).mean(dim=1, keepdim=True)
        return (x - mean) / torch.sqrt(variance + 0.02)


def test_written_out_normalisation_keeps_its_epsilon():
    spec = check(torch_onnx(WrongEpsilonNorm(), (4, 5, 5)), sample((4, 5, 5)) * 0.1)
    (layer,) = spec.layers
    assert layer.type == "layer_norm" and layer.epsilon == pytest.approx(0.02)
    assert layer.scale is False and layer.center is False


class TransformInputLayerNormHead(nn.Module):
    """torchvision GoogLeNet / Inception v3's transform_input, a ConvNeXt block's channels-last
    stretch and ConvNeXt's head (a global pool, then LayerNorm2d: permute, layer_norm, permute of a
    (N, C, 1, 1) map)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.block = nn.Sequential(nn.LayerNorm(8, eps=1e-6), nn.Linear(8, 8))
        self.gamma = nn.Parameter(torch.full((8, 1, 1), 0.5))
        self.norm = nn.LayerNorm(8, eps=1e-6)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        x = self.conv(torch.cat((x_ch0, x_ch1, x_ch2), 1))
        y = self.gamma * self.block(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # channels-last
        y += x  # in place on a permuted tensor: the pooled map keeps odd strides
        x = F.adaptive_avg_pool2d(y, 1).permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)
        return self.fc(torch.flatten(x.permute(0, 3, 1, 2), 1))


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_one_channel_gathers_and_the_dynamo_strided_permute_import(dynamo):
    """Both exporters write x[:, i] as Gather(axis=1) + Unsqueeze (channel_slice i:i+1); the dynamo
    exporter writes the permute of a (1, C, 1, 1) map as Reshape([-1]) + Gather of every element,
    which keeps the values (exported at batch 1, as a user does)."""
    module = TransformInputLayerNormHead().eval()
    randomize(module, 0)
    buffer = io.BytesIO()
    with quiet_warnings(), torch.no_grad():
        if dynamo:
            proto = torch.onnx.export(module, (torch.zeros(1, 3, 8, 8),), dynamo=True).model_proto
        else:
            torch.onnx.export(module, (torch.zeros(1, 3, 8, 8),), buffer, dynamo=False, opset_version=18)
            proto = onnx.load_from_string(buffer.getvalue())
    assert "Gather" in {node.op_type for node in proto.graph.node}
    spec = import_onnx(proto).spec
    x = sample((3, 8, 8))[:1]
    torch_model = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(proto, torch_model, spec)
    with torch.no_grad():
        close(torch_model(torch.from_numpy(x)).numpy(), run_original(proto, x))
    slices = [(layer.start, layer.stop) for layer in spec.layers if layer.type == "channel_slice"]
    assert slices == [(0, 1), (1, 2), (2, 3)]
    if dynamo:  # negative control: the same Gather with its indices reversed moves the channels
        producers = {output: node for node in proto.graph.node for output in node.output}
        gather = next(
            node
            for node in proto.graph.node
            if node.op_type == "Gather"
            and getattr(producers.get(node.input[0]), "op_type", None) == "Reshape"
        )
        reversed_indices = {
            tensor.name: tensor for tensor in proto.graph.initializer if tensor.name == gather.input[1]
        } or {
            node.output[0]: node.attribute[0].t for node in proto.graph.node if node.output[0] == gather.input[1]
        }
        tensor = reversed_indices[gather.input[1]]
        values = onnx.numpy_helper.to_array(tensor)
        tensor.CopyFrom(onnx.numpy_helper.from_array(values.reshape(-1)[::-1].reshape(values.shape).copy(), tensor.name))
        with pytest.raises(UnsupportedModel, match="Reshape to"):
            import_onnx(proto)
