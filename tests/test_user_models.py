"""Models as people write them, read by the importers (issue 14's third-party cases): each is
imported, built in the other framework with the original's weights, and compared with what the
original framework itself computes; what has no spec layer is refused where it is.

PyTorch: normalisation buffers in ``forward``, ``padding_mode='reflect'`` convolutions,
``x.view(b, c, -1).mean(-1)``, and a Keras port's ``x.permute(0, 2, 3, 1).flatten(1)``.
Keras: ``keras.ops`` in a functional graph, ``Reshape((-1,))``, ``CenterCrop`` and a PyTorch
port's ``Permute((3, 1, 2))`` + ``Flatten``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

from keras import layers as L  # noqa: E402
from keras import ops  # noqa: E402
from test_import_keras import check_against_keras, torch_output  # noqa: E402
from test_import_torch import check_against_torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import cnnspec  # noqa: E402
from cnnspec.importers.common import UnsupportedModel  # noqa: E402
from cnnspec.importers.keras import import_keras  # noqa: E402
from cnnspec.importers.torch import import_torch  # noqa: E402
from cnnspec.weights.transfer import randomize, transfer_weights  # noqa: E402

pytestmark = pytest.mark.frameworks


def layers_of(result, layer_type: str) -> list:
    return [layer for layer in result.spec.layers if layer.type == layer_type]


# -- PyTorch ---------------------------------------------------------------------------------


class Normalised(nn.Module):
    """ImageNet normalisation inside the model, with buffers (and a per-channel buffer factor)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.register_buffer("gain", torch.linspace(0.5, 1.5, 8).view(8, 1, 1))
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.conv((x - self.mean) / self.std)
        x = self.gain * x
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class PerWidthConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("offset", torch.rand(8))
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return self.conv(x - self.offset)


def test_normalisation_buffers_become_one_rescale_per_step():
    result = check_against_torch(Normalised(), (3, 10, 9))
    first, second = layers_of(result, "rescale")
    # (x - mean) / std is x * (1 / std) - mean / std, in float32, written as short as it reads back
    assert first.scale == [float(str(np.float32(1) / np.float32(s))) for s in (0.229, 0.224, 0.225)]
    assert first.offset[0] == float(str(np.float32(-0.485) / np.float32(0.229)))
    assert second.scale[0] == 0.5 and second.scale[-1] == 1.5 and second.offset == 0.0
    # negative control: a constant along the width is no per-channel rescale
    with pytest.raises(UnsupportedModel, match=r"tensor constant of shape \[8\]"):
        import_torch(PerWidthConstant().eval(), (3, 8, 8))


class PaddedConvs(nn.Module):
    def __init__(self, last_mode: str = "reflect"):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1, padding_mode="reflect")
        self.b = nn.Conv2d(8, 8, (3, 5), padding=(1, 2), stride=2, padding_mode="replicate")
        self.d = nn.Conv2d(8, 8, 3, padding=1, groups=8, padding_mode="reflect")
        self.e = nn.Conv2d(8, 4, 4, padding="same", padding_mode=last_mode)

    def forward(self, x):
        return self.e(self.d(self.b(self.a(x))))


def test_reflect_and_replicate_padded_convolutions_are_a_pad_then_the_convolution():
    result = check_against_torch(PaddedConvs(), (3, 12, 11))
    pads = layers_of(result, "pad2d")
    assert [(pad.mode, pad.source) for pad in pads] == [
        ("reflect", "a"),
        ("replicate", "b"),
        ("reflect", "d"),
        ("reflect", "e"),
    ]
    # 'same' with an even kernel: PyTorch pads 1 before and 2 after
    assert pads[-1].padding == [[1, 2], [1, 2]]
    assert all(layer.padding == 0 for layer in result.spec.layers if layer.type.endswith("conv2d"))
    with pytest.raises(UnsupportedModel, match="circular"):
        import_torch(PaddedConvs("circular").eval(), (3, 12, 11))
    # with no padding the mode changes nothing: a plain convolution, circular or not
    unpadded = nn.Sequential(nn.Conv2d(3, 4, 3, padding_mode="circular")).eval()
    assert [layer.type for layer in import_torch(unpadded, (3, 6, 6)).spec.layers] == ["conv2d"]


class ViewMeanExcite(nn.Module):
    """A squeeze-excite block as often written: the squeeze is view(b, c, -1).mean(dim=2)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.reduce = nn.Linear(8, 2)
        self.expand = nn.Linear(2, 8)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = self.conv(x)
        b, c, _, _ = x.size()
        gate = torch.sigmoid(self.expand(F.relu(self.reduce(x.view(b, c, -1).mean(dim=2)))))
        x = x * gate.view(b, c, 1, 1)
        merged = x.flatten(2)
        return self.head(torch.cat([merged.mean(-1), torch.amax(merged, dim=2)], 1))


def test_a_mean_over_the_merged_spatial_dims_is_a_global_pooling():
    result = check_against_torch(ViewMeanExcite(), (3, 9, 7))
    assert len(layers_of(result, "global_avg_pool")) == 2
    assert len(layers_of(result, "global_max_pool")) == 1


@pytest.mark.onnx
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_a_mean_over_the_merged_spatial_dims_converts_from_torch_onnx(tmp_path, dynamo):
    pytest.importorskip("onnxruntime")
    from cnnspec.importers.pipeline import convert_model

    module = ViewMeanExcite().eval()
    path = tmp_path / "excite.onnx"
    torch.onnx.export(
        module, (torch.randn(1, 3, 9, 7),), str(path), dynamo=dynamo, input_names=["input"]
    )
    conversion = convert_model(str(path), "keras", tmp_path / "out")
    assert conversion.ok, conversion.verification.render(use_rich=False)
    spec = (tmp_path / "out" / "spec.yaml").read_text()
    assert spec.count("type: global_avg_pool") == 2 and spec.count("type: global_max_pool") == 1


class KerasOrderHead(nn.Module):
    """A port of a Keras classifier that keeps its dense weights: flatten in H, W, C order."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4 * 5 * 4, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc(x.permute(0, 2, 3, 1).contiguous().view(x.size(0), -1))


def test_a_flatten_after_permute_to_channels_last_is_flatten_in_keras_order():
    module = KerasOrderHead()
    result = check_against_torch(module, (3, 7, 6))
    (flatten,) = layers_of(result, "flatten")
    assert flatten.order == "channels_last"
    # negative control: the same weights under PyTorch's own flatten order compute another function
    document = result.spec.model_dump(mode="json", exclude_none=True)
    del next(layer for layer in document["layers"] if layer["type"] == "flatten")["order"]
    wrong = cnnspec.build(document, "keras")
    transfer_weights(module, wrong, document)
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = np.asarray(wrong(np.moveaxis(x, 1, -1)))
    assert np.abs(got - expected).max() > 1e-3


def test_the_other_flatten_order_fails_at_the_flatten_layer():
    """Negative control for the spec's own order: a PyTorch model flattening C, H, W where the
    spec says channels last departs at the flatten; the layers before it agree."""
    pytest.importorskip("onnxruntime")
    spec = {
        "cnnspec": 1,
        "name": "keras_order",
        "input": {"channels": 3, "size": [7, 6]},
        "layers": [
            {"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": 3},
            {"type": "flatten", "name": "flat", "order": "channels_last"},
            {"type": "dense", "name": "fc", "units": 3},
        ],
    }
    keras_model = cnnspec.build(spec, "keras")
    randomize(keras_model, 0)
    right, wrong = (
        cnnspec.build(spec, "torch"),
        cnnspec.build(
            {
                **spec,
                "layers": [
                    spec["layers"][0],
                    {"type": "flatten", "name": "flat"},
                    spec["layers"][2],
                ],
            },
            "torch",
        ),
    )
    for model in (right, wrong):
        transfer_weights(keras_model, model, spec)
    assert cnnspec.verify(spec, torch_model=right, keras_model=keras_model, sync_weights=False).ok
    report = cnnspec.verify(spec, torch_model=wrong, keras_model=keras_model, sync_weights=False)
    assert not report.ok and report.first_divergent_layer == "flat"
    assert report.layers[0].ok
    assert "flatten order" in report.divergence.hint


# -- Keras -----------------------------------------------------------------------------------


def test_keras_ops_in_a_functional_graph_import_as_layers():
    inputs = keras.Input((10, 9, 3))
    x = 1.0 - (-(inputs / 255.0))
    x = L.Conv2D(6, 3, padding="same")(x)
    branches = [
        ops.relu(x),
        ops.relu6(x),
        ops.gelu(x),  # the tanh form: ops.gelu's default
        ops.gelu(L.Conv2D(6, 1)(x), approximate=False),
        ops.leaky_relu(x),
        ops.elu(x, alpha=0.5),
        ops.hard_silu(x),
        ops.sigmoid(x) * ops.tanh(x),
        ops.silu(x),
        ops.softplus(x),
        ops.softmax(x),
    ]
    x = ops.concatenate(branches, axis=-1)
    pooled = ops.concatenate(
        [ops.mean(x, axis=(1, 2)), L.Flatten()(ops.max(x, axis=[1, 2], keepdims=True))], axis=-1
    )
    outputs = ops.log_softmax(L.Dense(4)(pooled))
    result = check_against_keras(keras.Model(inputs, outputs))
    types = [layer.type for layer in result.spec.layers]
    assert types[:3] == ["scale", "scale", "rescale"]
    for expected in (
        "relu6",
        "leaky_relu",
        "elu",
        "hard_swish",
        "softplus",
        "softmax",
        "log_softmax",
    ):
        assert expected in types
    gelus = {layer.approximate for layer in layers_of(result, "gelu")}
    assert gelus == {"tanh", "none"}
    assert layers_of(result, "leaky_relu")[0].negative_slope == 0.2
    assert layers_of(result, "global_max_pool")[0].keepdims
    # negative control: a division by a tensor has no spec layer
    inputs = keras.Input((4, 4, 2))
    with pytest.raises(UnsupportedModel, match="division by a tensor"):
        import_keras(keras.Model(inputs, L.Conv2D(2, 1)(inputs) / L.Conv2D(2, 1)(inputs)))


def test_reshape_to_a_vector_is_flatten_and_center_crop_is_a_crop():
    inputs = keras.Input((11, 10, 3))
    x = L.CenterCrop(6, 7)(inputs)  # 11 - 6 = 5 rows: 2 at the top, 3 at the bottom
    x = L.Conv2D(4, 3)(x)
    outputs = L.Dense(3)(L.Reshape((-1,))(x))
    result = check_against_keras(keras.Model(inputs, outputs))
    assert [layer.type for layer in result.spec.layers] == ["crop2d", "conv2d", "flatten", "dense"]
    assert result.spec.layers[0].cropping == [[2, 3], [1, 2]]
    inputs = keras.Input((5, 5, 3))
    with pytest.raises(UnsupportedModel, match="CenterCrop"):
        import_keras(keras.Model(inputs, L.CenterCrop(8, 8)(inputs)))


def test_a_keras_model_ending_in_flatten_gives_its_vector_in_its_own_order():
    """The converted PyTorch model returns the vector Keras returns (H, W, C), not the same
    numbers in C, H, W order: the output flatten is read as `order: channels_last`."""
    inputs = keras.Input((5, 4, 3))
    x = L.Conv2D(6, 3, padding="same")(inputs)
    result = check_against_keras(keras.Model(inputs, L.Activation("relu")(L.Flatten()(x))))
    assert layers_of(result, "flatten")[0].order == "channels_last"
    # a 1 x 1 map flattens the same in both orders: nothing to say
    inputs = keras.Input((1, 1, 3))
    result = check_against_keras(keras.Model(inputs, L.Flatten()(L.Conv2D(6, 1)(inputs))))
    assert layers_of(result, "flatten")[0].order == "channels_first"


def _pytorch_order_port():
    inputs = keras.Input((7, 6, 3))
    x = L.Conv2D(4, 3, activation="relu")(inputs)
    x = L.Flatten(name="flat")(L.Permute((3, 1, 2), name="to_channels_first")(x))
    return keras.Model(inputs, L.Dense(3, name="fc")(L.Dropout(0.2)(x)))


def test_a_permute_to_channels_first_then_flatten_reads_the_dense_rows_as_they_are(tmp_path):
    original = _pytorch_order_port()
    result = check_against_keras(original)
    (flatten,) = layers_of(result, "flatten")
    assert flatten.order == "channels_first" and flatten.source == "to_channels_first+flat"
    # negative control: read as a plain Flatten, the dense rows are permuted H, W, C -> C, H, W
    document = result.spec.model_dump(mode="json", exclude_none=True)
    document["layers"][1].pop("source")
    torch_model = cnnspec.build(document, "torch").eval()
    transfer_weights(original, torch_model, document)
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 3)).astype(np.float32)
    assert np.abs(torch_output(torch_model, x) - np.asarray(original(x))).max() > 1e-3


@pytest.mark.onnx
def test_a_permute_to_channels_first_then_flatten_converts_with_every_layer_proved(tmp_path):
    pytest.importorskip("tf2onnx")
    from cnnspec.importers.pipeline import convert_model

    path = tmp_path / "port.keras"
    _pytorch_order_port().save(path)
    conversion = convert_model(str(path), "torch", tmp_path / "out")
    report = conversion.verification
    assert conversion.ok, report.render(use_rich=False)
    compared = {layer.name for layer in report.layers}
    assert {"flat", "fc"} <= compared and all(layer.ok for layer in report.layers)


def test_a_keras_model_built_from_a_spec_imported_from_pytorch_gives_its_weights_back():
    """The spec's provenance names PyTorch module paths ('features.0'), which a Keras model built
    from it does not have: it is not the original, its weights move name by name (this was an
    OriginalWeightError)."""
    module = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 4, 3)
    ).eval()
    spec = import_torch(module, (3, 7, 6)).spec
    assert spec.layers[0].source == "0"
    keras_model = cnnspec.build(spec, "keras")
    randomize(keras_model, 0)
    torch_model = cnnspec.build(spec, "torch").eval()
    transfer_weights(keras_model, torch_model, spec)
    x = np.random.default_rng(0).standard_normal((2, 7, 6, 3)).astype(np.float32)
    assert np.abs(torch_output(torch_model, x) - np.asarray(keras_model(x))).max() < 1e-5


class Clipped(nn.Module):
    """Hardtanh and clamp with other bounds than relu6's."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.squash = nn.Hardtanh()
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        x = F.hardtanh(self.head(self.squash(self.conv(x))), -0.5, 2.0)
        return torch.clamp(x, -0.25, 0.5) + x.clamp(0, 1)


def test_hardtanh_and_clamp_with_any_bounds_are_clip():
    result = check_against_torch(Clipped(), (3, 8, 7))
    bounds = [(layer.min, layer.max) for layer in layers_of(result, "clip")]
    assert bounds == [(-1.0, 1.0), (-0.5, 2.0), (-0.25, 0.5), (0.0, 1.0)]
    with pytest.raises(UnsupportedModel, match="clamp"):

        class OneBound(nn.Module):
            def forward(self, x):
                return torch.clamp(x, min=-1.0)

        import_torch(OneBound().eval(), (3, 4, 4))


def test_keras_relu_with_a_max_value_and_ops_clip_are_clip():
    inputs = keras.Input((6, 5, 3))
    x = L.ReLU(max_value=1.5)(L.Conv2D(4, 3)(inputs))
    x = ops.clip(L.Conv2D(4, 1)(x), -0.5, 0.75)
    result = check_against_keras(keras.Model(inputs, L.GlobalAveragePooling2D()(x)))
    assert [(layer.min, layer.max) for layer in layers_of(result, "clip")] == [(0.0, 1.5), (-0.5, 0.75)]


def test_a_clip_ported_as_relu_with_a_max_value_fails_at_the_clip():
    """Negative control: Keras' ReLU(max_value=2) for Hardtanh(-0.5, 2) clips from 0, not from
    -0.5: the proof departs at that layer, the convolution before it agrees."""
    pytest.importorskip("onnxruntime")
    layers = [{"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": 3}]
    spec = {"cnnspec": 1, "name": "clipped", "input": {"channels": 3, "size": [6, 5]}}
    right = {**spec, "layers": [*layers, {"type": "clip", "name": "squash", "min": -0.5, "max": 2.0}]}
    ported = {**spec, "layers": [*layers, {"type": "clip", "name": "squash", "min": 0.0, "max": 2.0}]}
    torch_model = cnnspec.build(right, "torch")
    randomize(torch_model, 0)
    keras_model = cnnspec.build(ported, "keras")
    transfer_weights(torch_model, keras_model, right)
    report = cnnspec.verify(right, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert not report.ok and report.first_divergent_layer == "squash" and report.layers[0].ok


@pytest.mark.parametrize(
    "kernel,stride,extra,padding",
    [(3, 2, 1, "same"), (5, 2, 0, 2), (3, 2, 0, 1), (3, 1, 0, "same")],
    ids=["k3s2op1-same", "k5s2op0", "k3s2op0", "k3s1op0"],
)
def test_keras_transposed_same_with_an_output_padding_is_read_as_tensorflow_crops(kernel, stride, extra, padding):
    inputs = keras.Input((8, 7, 3))
    x = L.Conv2DTranspose(4, kernel, strides=stride, padding="same", output_padding=extra)(inputs)
    result = check_against_keras(keras.Model(inputs, L.Flatten()(x)))
    (layer,) = layers_of(result, "conv_transpose2d")
    assert (layer.padding, layer.output_padding) == (padding, None)


def test_keras_transposed_same_with_an_odd_crop_and_an_output_padding_is_refused():
    inputs = keras.Input((8, 7, 3))
    x = L.Conv2DTranspose(4, 4, strides=3, padding="same", output_padding=1)(inputs)
    with pytest.raises(UnsupportedModel, match="output_padding=.1, 1."):
        import_keras(keras.Model(inputs, x))


@pytest.mark.parametrize("order", ["channels_first", "channels_last"])
def test_a_flatten_of_an_open_map_feeding_a_dense_is_refused_in_either_order(order):
    """A flatten in Keras' order is one flat piece (nothing to permute), but its length follows the
    open size all the same (the random open-graph check found it let through)."""
    from cnnspec.errors import SpecError

    spec = {
        "cnnspec": 1,
        "input": {"channels": 2, "size": [None, 4]},
        "layers": [{"type": "flatten", "order": order}, {"type": "dense", "units": 1}],
    }
    with pytest.raises(SpecError, match="follows the open input size"):
        cnnspec.resolve(spec, input_size=(3, 4))


def test_an_open_flatten_in_keras_order_has_a_symbolic_length_in_the_onnx_graph():
    pytest.importorskip("onnx")
    from cnnspec.targets.onnx.model import build_onnx

    spec = {
        "cnnspec": 1,
        "input": {"channels": 2, "size": [None, 4]},
        "layers": [
            {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same"},
            {"type": "flatten", "order": "channels_last"},
        ],
    }
    (output,) = build_onnx(cnnspec.resolve(spec)).graph.output
    length = output.type.tensor_type.shape.dim[1]
    assert not length.HasField("dim_value")  # not the planning size's 2,688
