"""from_keras against Keras itself: keras.applications models and hand-built graphs import with their
names, their parameter counts equal ``model.count_params()``, and the PyTorch model built from the
imported spec, given the ORIGINAL's weights through ``transfer_weights``, computes what Keras computes.
Unsupported layers are refused with the layer's name; rewrites are exact and listed."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import cnnspec
from cnnspec.importers.common import UnsupportedModel
from cnnspec.importers.keras import import_keras
from cnnspec.weights.transfer import randomize

L = keras.layers


def torch_output(model, x_last):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x_last, -1, 1)))).numpy()


def check_against_keras(original, batch=2, seed=0, atol=1e-4):
    """Import, build in torch, move the original's weights, and compare with Keras' own output."""
    randomize(original, seed)
    result = import_keras(original)
    spec = result.spec
    assert cnnspec.resolve(spec).total_params == original.count_params()
    torch_model = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(original, torch_model, spec)
    x = np.random.default_rng(seed).standard_normal((batch, *original.input_shape[1:])).astype(np.float32)
    expected = np.asarray(original(x, training=False))
    got = torch_output(torch_model, x)
    scale = max(1.0, float(np.abs(expected).max()))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= atol * scale
    return result


APPLICATIONS = [
    ("VGG16", (32, 32, 3)),
    ("ResNet50", (32, 32, 3)),
    ("MobileNetV2", (32, 32, 3)),
    ("DenseNet121", (32, 32, 3)),
]


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.parametrize("name,shape", APPLICATIONS)
def test_keras_applications_import_and_run_in_torch(name, shape):
    original = getattr(keras.applications, name)(weights=None, input_shape=shape, classifier_activation=None)
    result = check_against_keras(original)
    keras_names = [layer.name for layer in original.layers if type(layer).__name__ != "InputLayer"]
    assert [layer.name for layer in result.spec.layers] == keras_names  # every name kept, in order
    assert not result.rewrites


ZOO_APPLICATIONS = [  # the zoo catalog's families: SE + raw hard-sigmoid ops, Normalization + stochastic depth,
    ("MobileNetV3Small", (32, 32, 3)),  # nested Sequential stem + LayerNorm + LayerScale + Dense as 1x1 conv
    ("EfficientNetB0", (32, 32, 3)),
    ("ConvNeXtTiny", (32, 32, 3)),
    # one of every other family (smallest input each accepts)
    ("EfficientNetV2B0", (32, 32, 3)),
    ("InceptionV3", (75, 75, 3)),
    ("InceptionResNetV2", (75, 75, 3)),
    ("MobileNet", (32, 32, 3)),
    ("NASNetMobile", (32, 32, 3)),
    ("ResNet50V2", (32, 32, 3)),
    ("Xception", (71, 71, 3)),
]


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.parametrize("name,shape", ZOO_APPLICATIONS)
def test_zoo_applications_import_and_run_in_torch(name, shape):
    original = getattr(keras.applications, name)(weights=None, input_shape=shape, classifier_activation=None)
    result = check_against_keras(original)
    kept = {layer.name for layer in result.spec.layers}
    kept |= {part for layer in result.spec.layers if layer.source for part in layer.source.split("+")}
    assert kept >= {
        layer.name for layer in original.layers if type(layer).__name__ not in ("InputLayer", "Sequential")
    }  # every Keras layer name kept, as a name or a rewrite's source


@pytest.mark.frameworks
def test_small_functional_graph_with_every_common_layer():
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(6.0, name="stem_relu")(x)
    branch = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    branch = L.Activation("hard_silu", name="dw_act")(branch)
    x = L.Add(name="sum")([x, branch])
    y = L.SeparableConv2D(6, 3, strides=2, padding="same", name="sep")(x)
    z = L.MaxPooling2D(2, name="pool")(x)
    z = L.Conv2D(4, 1, activation="relu", name="proj")(z)
    x = L.Concatenate(name="cat")([y, z])
    x = L.ZeroPadding2D(((0, 1), (1, 0)), name="pad")(x)
    x = L.AveragePooling2D(2, strides=1, name="avg")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Dense(5, activation="softmax", name="head")(x)
    result = check_against_keras(keras.Model(inputs, x, name="small"))
    assert result.spec.name == "small"
    dense = result.spec.layers[-1]
    assert (dense.type, dense.activation, dense.units) == ("dense", "softmax", 5)


@pytest.mark.frameworks
def test_exact_rewrites_are_listed_and_exact():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv.1")(inputs)  # not a spec name: renamed, source kept
    x = L.Dense(5, name="channel_mix")(x)  # Dense on a feature map: a 1x1 conv
    gate = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Reshape((1, 1, 5), name="gap_reshape")(gate)  # -> keepdims
    x = L.Flatten(name="flat")(x)
    x = L.BatchNormalization(name="flat_bn")(x)
    x = L.Dense(3, name="fc")(x)
    result = check_against_keras(keras.Model(inputs, x))
    layers = {layer.name: layer for layer in result.spec.layers}
    assert layers["conv_1"].source == "conv.1"
    assert layers["channel_mix"].type == "conv2d" and layers["channel_mix"].kernel_size == 1
    assert layers["gap_reshape"].type == "global_avg_pool" and layers["gap_reshape"].keepdims
    assert "gap" not in layers
    assert {rewrite.where for rewrite in result.rewrites} == {"channel_mix", "gap_reshape"}


@pytest.mark.frameworks
def test_flatten_order_is_handled_by_the_weights_not_by_luck():
    """Negative control: copying the Keras dense kernel without the C,H,W <-> H,W,C row permutation is wrong."""
    inputs = keras.Input((4, 4, 3))
    x = L.Conv2D(5, 3, name="conv")(inputs)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(2, name="fc")(x)
    original = keras.Model(inputs, x)
    check_against_keras(original)
    spec = cnnspec.from_keras(original)
    torch_model = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(original, torch_model, spec)
    with torch.no_grad():
        torch_model.fc.weight.copy_(torch.from_numpy(np.asarray(original.get_layer("fc").kernel).T.copy()))
    x_in = np.random.default_rng(1).standard_normal((2, 4, 4, 3)).astype(np.float32)
    assert np.abs(torch_output(torch_model, x_in) - np.asarray(original(x_in))).max() > 1e-3


def refused(model) -> str:
    with pytest.raises(UnsupportedModel) as caught:
        import_keras(model)
    return str(caught.value)


@pytest.mark.frameworks
def test_lambda_layer_is_refused_by_name():
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.Lambda(lambda t: t * 2.0, name="double_it")(x)
    message = refused(keras.Model(inputs, x))
    assert "'double_it' (Lambda)" in message and "Lambda layer" in message and "supported" in message


@pytest.mark.frameworks
def test_custom_layer_is_refused_with_the_supported_list():
    class Mystery(L.Layer):
        def call(self, x):
            return x

    inputs = keras.Input((8, 8, 3))
    x = Mystery(name="mystery")(L.Conv2D(4, 3, name="conv")(inputs))
    message = refused(keras.Model(inputs, x))
    assert "'mystery' (Mystery)" in message and "Conv2D" in message


@pytest.mark.frameworks
def test_shared_layer_and_unsupported_reshape_are_refused():
    inputs = keras.Input((8, 8, 4))
    conv = L.Conv2D(4, 3, padding="same", name="shared")
    message = refused(keras.Model(inputs, conv(conv(inputs))))
    assert "'shared'" in message and "called 2 times" in message

    inputs = keras.Input((8, 8, 4))
    x = L.Reshape((16, 16, 1), name="odd_reshape")(inputs)
    message = refused(keras.Model(inputs, x))
    assert "'odd_reshape'" in message and "Reshape" in message


TEMPORAL_MODEL = """
import keras
from keras import layers


def model():
    inputs = keras.Input((32, 2))
    x = layers.Conv1D(8, 4, padding="causal", dilation_rate=2, activation="relu")(inputs)
    x = layers.Conv1D(8, 3, padding="causal", strides=2)(x)
    x = layers.LayerNormalization()(x)
    return keras.Model(inputs, layers.Dense(3)(layers.GlobalMaxPooling1D()(x)))
"""


@pytest.mark.frameworks
@pytest.mark.onnx
def test_causal_1d_convolutions_convert_with_the_proof(tmp_path):
    """Conv1D(padding='causal') pads the whole footprint before the sequence: (k - 1)·d, then 0."""
    import importlib.util

    from cnnspec.importers.pipeline import convert_model

    source = tmp_path / "temporal.py"
    source.write_text(TEMPORAL_MODEL)
    module_spec = importlib.util.spec_from_file_location("temporal", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    result = check_against_keras(module.model())
    convs = [layer for layer in result.spec.layers if layer.type == "conv1d"]
    assert [layer.padding for layer in convs] == [[[6, 0]], [[2, 0]]]
    # the converted PyTorch model, exported and compared with the Keras original layer by layer
    conversion = convert_model(f"{source}:model", "torch", tmp_path / "out")
    assert conversion.ok and all(layer.ok for layer in conversion.verification.layers)


@pytest.mark.frameworks
def test_mish_softplus_and_selu_activations_import():
    inputs = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", activation="mish", name="conv")(inputs)
    x = L.Activation("selu")(x)
    x = L.Dense(3, activation="softplus")(x)
    result = check_against_keras(keras.Model(inputs, L.GlobalAveragePooling2D()(x)))
    types = [layer.type for layer in result.spec.layers]
    assert types == ["conv2d", "mish", "selu", "conv2d", "softplus", "global_avg_pool"]


@pytest.mark.frameworks
def test_channel_pooling_written_with_keras_ops_imports():
    from keras import ops

    inputs = keras.Input((9, 7, 3))
    x = L.Conv2D(8, 3, padding="same")(inputs)
    pooled = L.Concatenate()([ops.mean(x, axis=-1, keepdims=True), ops.max(x, axis=-1, keepdims=True)])
    x = L.Multiply()([x, L.Conv2D(1, 7, padding="same", activation="sigmoid")(pooled)])
    result = check_against_keras(keras.Model(inputs, L.GlobalAveragePooling2D()(x)))
    types = [layer.type for layer in result.spec.layers]
    assert "channel_mean" in types and "channel_max" in types

    inputs = keras.Input((9, 7, 3))
    message = refused(keras.Model(inputs, ops.mean(inputs, axis=-1)))
    assert "keepdims=False" in message


@pytest.mark.frameworks
def test_a_dense_squeeze_excite_gate_reshaped_for_multiply_imports():
    inputs = keras.Input((12, 12, 3))
    x = L.Conv2D(16, 3, padding="same")(inputs)
    gate = L.GlobalAveragePooling2D()(x)
    gate = L.Dense(4, activation="relu")(gate)
    gate = L.Dense(16, activation="sigmoid", name="gate")(gate)
    gate = L.Reshape((1, 1, 16), name="gate_shape")(gate)
    x = L.Multiply(name="excite")([x, gate])
    outputs = L.Dense(3)(L.GlobalAveragePooling2D()(x))
    result = check_against_keras(keras.Model(inputs, outputs))
    excite = next(layer for layer in result.spec.layers if layer.name == "excite")
    assert excite.inputs[1] == "gate"
    assert any(r.where == "gate_shape" for r in result.rewrites)

    # the same Reshape feeding a convolution is not a gate: it is the map a decoder makes
    inputs = keras.Input((12, 12, 3))
    flat = L.Dense(16)(L.GlobalAveragePooling2D()(inputs))
    x = L.Conv2D(4, 1, name="mix")(L.Reshape((1, 1, 16), name="not_a_gate")(flat))
    result = check_against_keras(keras.Model(inputs, L.Flatten()(x)))
    assert [layer.type for layer in result.spec.layers][-3:] == ["unflatten", "conv2d", "flatten"]


@pytest.mark.frameworks
def test_zoo_layers_import_and_compute_what_keras_computes():
    """Squeeze-excite (keepdims Reshape rewrite and Multiply), Rescaling, Normalization, LayerNormalization,
    GroupNormalization, Cropping, stochastic depth (Dropout noise_shape) and the merges of the zoo catalog."""
    inputs = keras.Input((12, 10, 4))
    x = L.Rescaling(1.0 / 127.5, offset=-1.0, name="rescaling")(inputs)
    x = L.Normalization(mean=[0.1, 0.2, 0.3, 0.4], variance=[1.5, 2.0, 0.5, 1.0], name="normalization")(x)
    x = L.Conv2D(8, 3, padding="same", name="conv")(x)
    x = L.GroupNormalization(groups=2, name="gn")(x)
    squeeze = L.GlobalAveragePooling2D(name="squeeze")(x)
    squeeze = L.Reshape((1, 1, 8), name="squeeze_reshape")(squeeze)
    gate = L.Conv2D(8, 1, activation="sigmoid", name="gate")(squeeze)
    x = L.Multiply(name="excite")([x, gate])
    x = L.LayerNormalization(epsilon=1e-6, name="ln")(x)
    y = L.Dropout(0.2, noise_shape=(None, 1, 1, 1), name="drop")(x)
    x = L.Add(name="sum")([x, y])
    a = L.Conv2D(8, 1, name="a")(x)
    x = L.Subtract(name="diff")([x, a])
    x = L.Maximum(name="hi")([x, a])
    x = L.Minimum(name="lo")([x, a])
    x = L.Average(name="mean")([x, a])
    x = L.Cropping2D(((1, 0), (2, 1)), name="crop")(x)
    x = L.Identity(name="same")(x)
    model = keras.Model(inputs, L.GlobalMaxPooling2D(name="pool")(x), name="zoo")
    result = check_against_keras(model)
    types = {layer.name: layer.type for layer in result.spec.layers}
    assert types["drop"] == "stochastic_depth" and types["squeeze_reshape"] == "global_avg_pool"
    assert types["normalization"] == "normalize" and types["crop"] == "crop2d" and types["gn"] == "group_norm"
    assert [r for r in result.rewrites if "Reshape" in str(r)]


@pytest.mark.frameworks
def test_type_outside_this_catalog_is_named():
    inputs = keras.Input((8, 8, 4))
    x = L.Permute((2, 1, 3), name="swap")(inputs)
    message = refused(keras.Model(inputs, x))
    assert "'swap'" in message and "Permute" in message


@pytest.mark.frameworks
def test_keras_file_is_loaded_safely(tmp_path):
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, L.Conv2D(4, 3, name="conv")(inputs), name="filed")
    path = tmp_path / "filed.keras"
    model.save(path)
    spec = cnnspec.from_keras(path)
    assert spec.name == "filed" and spec.layers[0].name == "conv"
    with pytest.raises(UnsupportedModel, match="not found"):
        cnnspec.from_keras(tmp_path / "missing.keras")


@pytest.mark.frameworks
def test_nested_sequential_of_a_model_loaded_from_a_file(tmp_path):
    """Loading a .keras file rebuilds a nested Sequential, leaving an earlier call of its first layer
    beside the one in the graph (Keras ConvNeXt's stem): the import reads the calls of the
    Sequential's own graph, so the file imports as the model in memory does."""
    inputs = keras.Input((16, 16, 3))
    stem = keras.Sequential(
        [L.Conv2D(8, 4, strides=4, name="stem_conv"), L.LayerNormalization(epsilon=1e-6, name="stem_norm")],
        name="stem",
    )
    x = L.Conv2D(8, 3, padding="same", groups=8, name="dw")(stem(inputs))
    x = L.Activation("gelu", name="act")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, L.Dense(3, name="head")(x), name="nested")
    randomize(model, 1)
    path = tmp_path / "nested.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert len(loaded.get_layer("stem").layers[0]._inbound_nodes) > 1  # the stale call is there
    in_memory = import_keras(model).spec
    from_file = check_against_keras(loaded).spec
    assert from_file.model_dump(exclude={"name"}) == in_memory.model_dump(exclude={"name"})
    assert [layer.name for layer in from_file.layers][:2] == ["stem_conv", "stem_norm"]


@pytest.mark.frameworks
def test_sequential_loaded_from_a_file_imports_and_verifies_layer_by_layer(tmp_path):
    """A Sequential read from a .keras file holds up to four calls of its layers (Keras calls them
    while rebuilding it), one of them in the model's graph: the import and verify's per-layer taps
    read that one. Before, the file was refused as 'a shared layer'."""
    model = keras.Sequential(
        [
            keras.Input((12, 12, 2)),
            L.Conv2D(6, 3, activation="relu", name="conv"),
            L.MaxPooling2D(name="pool"),
            L.Flatten(name="flat"),
            L.Dense(5, name="head"),
        ],
        name="filed_sequential",
    )
    randomize(model, 2)
    path = tmp_path / "sequential.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert len(loaded.get_layer("conv")._inbound_nodes) > 1  # the calls outside its graph are there
    spec = check_against_keras(loaded).spec
    assert [layer.name for layer in spec.layers] == ["conv", "pool", "flat", "head"]

    torch_model = cnnspec.build(spec, "torch")
    cnnspec.transfer_weights(loaded, torch_model, spec)
    report = cnnspec.verify(spec, torch_model=torch_model, keras_model=loaded)
    assert report.ok and [layer.name for layer in report.layers] == ["conv", "pool", "flat", "head"]


@pytest.mark.frameworks
def test_a_layer_called_outside_the_model_is_not_shared_in_it():
    """A layer tried on another input first has two calls, one in the model: it imports, and verify
    taps the model's call (the other call's output has another shape).  Called twice inside the
    model it is still refused, with the count in the model."""
    conv = L.Conv2D(4, 3, name="tried_first")
    conv(keras.Input((10, 10, 3)))
    inputs = keras.Input((12, 12, 3))
    model = keras.Model(inputs, L.Dense(3, name="head")(L.Flatten(name="flat")(conv(inputs))))
    spec = check_against_keras(model).spec
    assert spec.layers[0].name == "tried_first"
    torch_model = cnnspec.build(spec, "torch")
    cnnspec.transfer_weights(model, torch_model, spec)
    report = cnnspec.verify(spec, torch_model=torch_model, keras_model=model)
    assert report.ok and [layer.name for layer in report.layers] == ["tried_first", "flat", "head"]

    inputs = keras.Input((8, 8, 4))
    conv = L.Conv2D(4, 3, padding="same", name="shared")
    conv(keras.Input((9, 9, 4)))
    message = refused(keras.Model(inputs, conv(conv(inputs))))
    assert "'shared'" in message and "called 2 times in the model" in message


# Constructor arguments that make each training-only layer act strongly when it does act.
TRAINING_ONLY_ARGUMENTS = {
    "ActivityRegularization": {"l1": 0.5, "l2": 0.5},
    "AlphaDropout": {"rate": 0.5},
    "AugMix": {},
    "GaussianDropout": {"rate": 0.5},
    "GaussianNoise": {"stddev": 1.0},
    "RandAugment": {"value_range": (0, 255), "num_ops": 3, "factor": 0.9},
    "RandomBrightness": {"factor": 0.9},
    "RandomColorDegeneration": {"factor": 0.9},
    "RandomColorJitter": {"brightness_factor": 0.9, "contrast_factor": 0.9},
    "RandomContrast": {"factor": 0.9},
    "RandomElasticTransform": {"factor": 1.0, "scale": 1.0},
    "RandomErasing": {"factor": 1.0, "scale": (0.3, 0.6)},
    "RandomFlip": {},
    "RandomGaussianBlur": {"factor": 1.0},
    "RandomGrayscale": {"factor": 1.0},
    "RandomHue": {"factor": 0.9},
    "RandomInvert": {"factor": 1.0},
    "RandomPerspective": {"factor": 1.0, "scale": 0.5},
    "RandomPosterization": {"factor": (1, 2)},
    "RandomRotation": {"factor": 0.4},
    "RandomSaturation": {"factor": 0.9},
    "RandomSharpness": {"factor": 0.9},
    "RandomShear": {"x_factor": 0.5, "y_factor": 0.5},
    "RandomTranslation": {"height_factor": 0.4, "width_factor": 0.4},
    "RandomZoom": {"height_factor": 0.5},
}


@pytest.mark.frameworks
def test_layers_read_as_identity_are_the_identity_at_inference_in_keras():
    """Every Keras class the identity type claims as training-only returns its input, shape and
    values, when the model runs for inference -- and changes it in training (so the check has
    teeth: the arguments make each one act)."""
    from cnnspec.layers.identity import KERAS_TRAINING_ONLY

    assert set(KERAS_TRAINING_ONLY) == set(TRAINING_ONLY_ARGUMENTS)
    x = np.random.default_rng(3).uniform(0, 255, (4, 24, 24, 3)).astype(np.float32)
    changed_in_training = []
    for name in KERAS_TRAINING_ONLY:
        inputs = keras.Input((24, 24, 3))
        layer = getattr(L, name)(**TRAINING_ONLY_ARGUMENTS[name])
        model = keras.Model(inputs, layer(inputs))
        assert model.output_shape == (None, 24, 24, 3), name
        assert np.array_equal(np.asarray(model(x, training=False)), x), name
        trained = [np.asarray(model(x, training=True)) for _ in range(3)]  # random: three draws
        changed_in_training.append(any(not np.array_equal(t, x) for t in trained))
    # ActivityRegularization only adds a loss; every other one changes the images in training
    assert sum(changed_in_training) >= len(KERAS_TRAINING_ONLY) - 1


@pytest.mark.frameworks
def test_augmentation_and_activations_with_a_parameter_import_exactly():
    """Augmentation layers read as identity (a rewrite each); Conv2D(activation='leaky_relu') and
    Dense(activation='elu') become the layer without activation, then the activation as a layer
    that takes the Keras layer's name, with Keras' own default slope (0.2, not PyTorch's 0.01)."""
    inputs = keras.Input((16, 16, 3))
    x = L.RandomFlip(name="flip")(inputs)
    x = L.RandomRotation(0.3, name="rotate")(x)
    x = L.GaussianNoise(0.5, name="noise")(x)
    x = L.Conv2D(6, 3, activation="leaky_relu", name="conv")(x)
    x = L.DepthwiseConv2D(3, activation="elu", name="depthwise")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(5, activation="elu", name="head")(x)
    model = keras.Model(inputs, x, name="augmented")
    result = check_against_keras(model)
    layers = {layer.name: layer for layer in result.spec.layers}
    assert [layer.type for layer in result.spec.layers] == [
        "identity", "identity", "identity", "conv2d", "leaky_relu", "depthwise_conv2d", "elu",
        "flatten", "dense", "elu",
    ]  # fmt: skip
    assert layers["conv"].type == "leaky_relu" and layers["conv"].negative_slope == 0.2
    assert layers["conv_linear"].source == "conv" and layers["conv_linear"].activation is None
    assert layers["head"].type == "elu" and layers["head_linear"].source == "head"
    assert {rewrite.where for rewrite in result.rewrites} == {"flip", "rotate", "noise", "conv", "depthwise", "head"}

    torch_model = cnnspec.build(result.spec, "torch")
    cnnspec.transfer_weights(model, torch_model, result.spec)
    report = cnnspec.verify(result.spec, torch_model=torch_model, keras_model=model)
    compared = [layer.name for layer in report.layers if layer.max_abs_diff is not None]
    assert report.ok and "conv" in compared and "head" in compared
    assert "conv_linear" not in compared  # Keras has no tensor before the activation

    # negative control: PyTorch's default slope is not Keras'
    wrong = result.spec.model_copy(
        update={
            "layers": [
                layer.model_copy(update={"negative_slope": 0.01}) if layer.name == "conv" else layer
                for layer in result.spec.layers
            ]
        }
    )
    torch_model = cnnspec.build(wrong, "torch")
    cnnspec.transfer_weights(model, torch_model, wrong)
    report = cnnspec.verify(wrong, torch_model=torch_model, keras_model=model)
    assert not report.ok and report.first_divergent_layer == "conv"


@pytest.mark.frameworks
def test_a_subclassed_model_is_refused_with_the_functional_way():
    """A subclassed keras.Model, even built, has no layer graph: a located refusal, not an
    AttributeError (was: 'internal error: ... has no attribute inputs')."""

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.conv = L.Conv2D(4, 3)

        def call(self, x):
            return self.conv(x)

    model = Subclassed()
    model(np.zeros((1, 8, 8, 3), np.float32))
    message = refused(model)
    assert "'subclassed' (Subclassed)" in message and "keras.Input(shape)" in message


@pytest.mark.frameworks
def test_a_frozen_functional_base_under_a_new_head_imports_and_verifies_layer_by_layer():
    """Keras' transfer-learning pattern: a functional base model, frozen, called once inside a new
    model. It imports as its layers; verify reads every inner layer (the base is flattened into
    one graph with the same layers); the frozen weights count as trainable, as the spec counts
    them, with a note; and a weight changed inside the base is found at its layer."""
    base_input = keras.Input((12, 12, 3))
    x = L.Conv2D(6, 3, padding="same", name="base_conv")(base_input)
    x = L.BatchNormalization(name="base_bn")(x)
    skip = L.ReLU(name="base_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="base_dw")(skip)
    base = keras.Model(base_input, L.Add(name="base_add")([x, skip]), name="base")
    base.trainable = False
    inputs = keras.Input((12, 12, 3))
    x = L.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    x = base(x, training=False)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, L.Dense(4, name="head")(x), name="fine_tuned")

    spec = check_against_keras(model).spec
    assert [layer.name for layer in spec.layers] == [
        "scale", "base_conv", "base_bn", "base_relu", "base_dw", "base_add", "pool", "head"]
    torch_model = cnnspec.build(spec, "torch")
    cnnspec.transfer_weights(model, torch_model, spec)
    report = cnnspec.verify(spec, torch_model=torch_model, keras_model=model, sync_weights=False)
    assert report.ok and all(layer.ok for layer in report.layers)
    assert report.params["keras"].ok and "frozen" in " ".join(report.params["keras"].notes)

    kernel = model.get_layer("base").get_layer("base_dw").kernel
    kernel.assign(np.asarray(kernel) + 0.5)  # negative control: a weight of the base changed
    report = cnnspec.verify(spec, torch_model=torch_model, keras_model=model, sync_weights=False)
    assert not report.ok and report.first_divergent_layer == "base_dw"


@pytest.mark.frameworks
def test_a_reshape_of_the_input_is_refused_with_the_model_to_build_instead():
    """The MNIST-tutorial input: (784,) or (28, 28) data reshaped to (28, 28, 1) by the first layer.
    The spec's input is the feature map, so the refusal names the Input to build and the reshape
    of the data that replaces the layer."""

    def model(shape):
        inputs = keras.Input(shape)
        x = keras.layers.Reshape((28, 28, 1))(inputs)
        x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
        return keras.Model(inputs, keras.layers.Dense(3)(x))

    flat = refused(model((784,)))
    assert "is a flat vector, not a feature map, reshaped to (28, 28, 1) by its first layer" in flat
    assert "keras.Input((28, 28, 1))" in flat and "x.reshape(-1, 28, 28, 1)" in flat
    channel_less = refused(model((28, 28)))
    assert "Reshape(28, 28, 1) of the model's input (28, 28)" in channel_less
    assert "x.reshape(-1, 28, 28, 1)" in channel_less


@pytest.mark.frameworks
def test_slicing_a_tensor_crops_strides_and_takes_channels():
    """``x[:, ::2, 1::2, :]`` (a TF port of YOLOv5's Focus), ``x[:, 1:-1, 2:, :]`` and
    ``x[..., 2:6]`` in a functional model: crops, 1-wide strided max pools, a channel slice."""
    inputs = keras.Input((12, 10, 3))
    x = keras.layers.Concatenate()(
        [inputs[:, ::2, ::2, :], inputs[:, 1::2, ::2, :], inputs[:, ::2, 1::2, :], inputs[..., 1::2, 1::2, :]]
    )
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(x)
    original = keras.Model(inputs, keras.layers.Conv2D(4, 1, name="head")(x[:, 1:-1, 2:, :][..., 2:6]))
    randomize(original, 0)
    result = import_keras(original)
    torch_model = cnnspec.build(result.spec, "torch").eval()
    cnnspec.transfer_weights(original, torch_model, result.spec)
    x = np.random.default_rng(0).standard_normal((2, 12, 10, 3)).astype(np.float32)
    expected = np.asarray(original(x, training=False))
    got = np.moveaxis(torch_output(torch_model, x), 1, -1)
    assert got.shape == expected.shape == (2, 4, 3, 4)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    types = [layer.type for layer in result.spec.layers]
    assert types.count("max_pool2d") == 4 and types.count("crop2d") == 4 and "channel_slice" in types
    # x[:, :, :, :] of the input beside a conv of it: every channel, read from the input
    inputs = keras.Input((5, 4, 2))
    both = keras.layers.Concatenate()([keras.layers.Conv2D(2, 1, name="conv")(inputs), inputs[:, :, :, :]])
    spec = import_keras(keras.Model(inputs, both)).spec
    assert [(layer.type, layer.inputs) for layer in spec.layers][1] == ("channel_slice", ["input"])
    with pytest.raises(UnsupportedModel, match="indexing or slicing a tensor"):
        inputs = keras.Input((12, 10, 3))
        import_keras(keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs[:, ::-1, :, :])))


class KerasIoDepthToSpace(keras.layers.Layer):
    """keras.io's ESPCN example writes its own depth_to_space: TensorFlow's channel order."""

    def __init__(self, block_size, **kwargs):
        super().__init__(**kwargs)
        self.block_size = block_size

    def call(self, input):
        batch, height, width, depth = keras.ops.shape(input)
        depth = depth // (self.block_size**2)
        x = keras.ops.reshape(input, [batch, height, width, self.block_size, self.block_size, depth])
        x = keras.ops.transpose(x, [0, 1, 3, 2, 4, 5])
        return keras.ops.reshape(x, [batch, height * self.block_size, width * self.block_size, depth])


class Doubling(keras.layers.Layer):
    def call(self, x):
        return x * 2.0


@pytest.mark.frameworks
def test_weightless_layers_without_a_reader_are_read_by_what_they_do_to_numbered_cells():
    import tensorflow as tf

    inputs = keras.Input((6, 4, 2))
    x = keras.layers.Lambda(lambda t: tf.nn.space_to_depth(t, 2), name="to_depth")(inputs)
    x = keras.layers.Conv2D(12, 1, name="mix")(x)
    x = KerasIoDepthToSpace(2, name="to_space")(x)
    original = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same", name="head")(x))
    randomize(original, 0)
    result = import_keras(original)
    assert [(layer.type, layer.name) for layer in result.spec.layers] == [
        ("pixel_unshuffle", "to_depth_pytorch_order"),
        ("channel_shuffle", "to_depth"),
        ("conv2d", "mix"),
        ("channel_shuffle", "to_space_pytorch_order"),
        ("pixel_shuffle", "to_space"),
        ("conv2d", "head"),
    ]
    assert [layer.groups for layer in result.spec.layers if layer.type == "channel_shuffle"] == [2, 4]
    torch_model = cnnspec.build(result.spec, "torch").eval()
    cnnspec.transfer_weights(original, torch_model, result.spec)
    x = np.random.default_rng(0).standard_normal((2, 6, 4, 2)).astype(np.float32)
    expected = np.asarray(original(x, training=False))
    got = np.moveaxis(torch_output(torch_model, x), 1, -1)
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    # a layer without weights that computes is not a rearrangement: refused as before
    inputs = keras.Input((6, 4, 2))
    with pytest.raises(UnsupportedModel, match="layer class Doubling is not supported"):
        import_keras(keras.Model(inputs, keras.layers.Conv2D(2, 1)(Doubling()(inputs))))


def _keras_eca(activation_inline: bool):
    """ECA-Net as usually written in Keras: a flat pooled vector reshaped to a (C, 1) sequence
    for a Conv1D of one filter, reshaped to (1, 1, C) for the gate."""
    from keras import layers

    inputs = keras.Input((9, 7, 3))
    x = layers.Conv2D(12, 3, padding="same", activation="relu")(inputs)
    y = layers.GlobalAveragePooling2D()(x)
    y = layers.Reshape((-1, 1))(y)
    if activation_inline:
        y = layers.Conv1D(1, 5, padding="same", activation="sigmoid")(y)
    else:
        y = layers.Conv1D(1, 3, padding="same", use_bias=False)(y)
        y = layers.Activation("sigmoid")(y)
    y = layers.Reshape((1, 1, -1))(y)
    return keras.Model(inputs, layers.GlobalMaxPooling2D()(layers.Multiply()([x, y])))


@pytest.mark.frameworks
@pytest.mark.parametrize("activation_inline", [False, True], ids=["eca", "inline_sigmoid_bias"])
def test_keras_eca_conv1d_over_the_channels_is_channel_conv(activation_inline):
    result = check_against_keras(_keras_eca(activation_inline))
    (layer,) = [layer for layer in result.spec.layers if layer.type == "channel_conv"]
    assert (layer.kernel_size, layer.bias) == ((5, True) if activation_inline else (3, False))
    types = [layer.type for layer in result.spec.layers]
    assert types[types.index("channel_conv") :] == [
        "channel_conv",
        "sigmoid",
        "multiply",
        "global_max_pool",
    ]


@pytest.mark.frameworks
def test_a_conv1d_of_one_filter_on_a_one_channel_sequence_stays_a_conv1d():
    """A 1-D map of one channel is (L, 1) in Keras, the shape of ECA's channels made a
    sequence: without a channel vector before it, it is an ordinary conv1d (found by the fuzzer)."""
    inputs = keras.Input((3, 1))
    outputs = L.Flatten()(L.Conv1D(1, 1, padding="same")(inputs))
    result = check_against_keras(keras.Model(inputs, outputs))
    assert [layer.type for layer in result.spec.layers] == ["conv1d", "flatten"]


def _keras_eca_ops():
    """ECA with keras.ops.expand_dims / squeeze around the Conv1D."""
    inputs = keras.Input((9, 7, 3))
    x = L.Conv2D(10, 3, padding="same", activation="relu")(inputs)
    y = keras.ops.expand_dims(L.GlobalAveragePooling2D()(x), -1)
    y = keras.ops.squeeze(L.Conv1D(1, 3, padding="same", use_bias=False)(y), -1)
    y = L.Reshape((1, 1, 10))(L.Activation("sigmoid")(y))
    return keras.Model(inputs, L.GlobalMaxPooling2D()(L.Multiply()([x, y])))


def _keras_eca_keepdims():
    """ECA from a keepdims pooling, its gate activated after the Reshape back."""
    inputs = keras.Input((9, 7, 3))
    x = L.Conv2D(10, 3, padding="same", activation="relu")(inputs)
    y = L.Reshape((10, 1))(L.GlobalAveragePooling2D(keepdims=True)(x))
    y = L.Reshape((1, 1, 10))(L.Conv1D(1, 5, padding="same", use_bias=False)(y))
    y = L.Activation("hard_sigmoid")(y)
    return keras.Model(inputs, L.GlobalMaxPooling2D()(L.Multiply()([x, y])))


@pytest.mark.frameworks
@pytest.mark.parametrize("factory", [_keras_eca_ops, _keras_eca_keepdims], ids=["ops", "keepdims"])
def test_keras_eca_spellings_are_channel_conv(factory):
    result = check_against_keras(factory())
    assert [layer.type for layer in result.spec.layers].count("channel_conv") == 1
    assert not {"conv1d", "reshape"} & {layer.type for layer in result.spec.layers}


@pytest.mark.frameworks
def test_a_gate_made_broadcastable_with_ops_expand_dims_is_the_merge_gate():
    inputs = keras.Input((9, 7, 3))
    x = L.Conv2D(12, 3, padding="same", activation="relu")(inputs)
    y = L.Dense(12, activation="sigmoid")(L.Dense(4, activation="relu")(L.GlobalAveragePooling2D()(x)))
    y = keras.ops.expand_dims(keras.ops.expand_dims(y, 1), 1)
    result = check_against_keras(keras.Model(inputs, L.GlobalMaxPooling2D()(L.Multiply()([x, y]))))
    assert [layer.type for layer in result.spec.layers][-3:] == ["dense", "multiply", "global_max_pool"]

    # the same vector made (1, 1, C) for a convolution is not a gate
    inputs = keras.Input((9, 7, 3))
    y = L.Dense(12)(L.GlobalAveragePooling2D()(inputs))
    y = keras.ops.expand_dims(keras.ops.expand_dims(y, 1), 1)
    message = refused(keras.Model(inputs, L.Conv2D(4, 1)(y)))
    assert "ExpandDims op" in message and "[1, 12]" in message
