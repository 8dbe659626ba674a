"""The model-zoo example specs: parameter counts against keras.applications, and verify.

EfficientNet-B0, MobileNetV3-Small and ConvNeXt-Tiny follow keras.applications layer for layer:
their totals, non-trainable totals and the count of every weighted layer (matched by the Keras
layer name) must equal Keras' own ``count_params()`` of the real model built with
``weights=None``.  The InceptionResNet block is compared with Keras' own ``block35``.  Every
example must pass ``verify``; two deliberately wrong ports must fail at the right layer.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cnnspec  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APPLICATIONS = [
    ("efficientnet_b0", "EfficientNetB0", 5_330_571),
    ("mobilenet_v3_small", "MobileNetV3Small", 2_554_968),
    ("convnext_tiny", "ConvNeXtTiny", 28_589_128),
]

pytestmark = pytest.mark.frameworks


def _flat_layers(layers):
    """Keras layers with nested Sequential blocks (ConvNeXt's stem and downsampling) opened."""
    for layer in layers:
        if isinstance(layer, keras.Sequential):
            yield from _flat_layers(layer.layers)
        else:
            yield layer


@pytest.mark.parametrize(
    "example,application,published", APPLICATIONS, ids=[a[0] for a in APPLICATIONS]
)
def test_counts_equal_keras_applications(example, application, published):
    plan = cnnspec.resolve(EXAMPLES / f"{example}.yaml")
    keras.backend.clear_session()  # an unnamed layer (EfficientNet's Normalization) is numbered per session
    model = getattr(keras.applications, application)(weights=None)
    assert model.count_params() == published  # the figure the example's comment quotes
    assert plan.total_params == model.count_params()
    assert plan.non_trainable_params == sum(
        int(w.numpy().size) for w in model.non_trainable_weights
    )
    prefix = "convnext_tiny_"  # the spec leaves out the prefix keras.applications gives every ConvNeXt layer
    keras_counts = {
        layer.name.removeprefix(prefix): layer.count_params()
        for layer in _flat_layers(model.layers)
        if layer.count_params()
    }
    spec_counts = {layer.name: layer.total_params for layer in plan.layers if layer.total_params}
    assert spec_counts == keras_counts


def test_inception_resnet_block_counts_equal_keras_block35():
    from keras.src.applications.inception_resnet_v2 import inception_resnet_block

    inputs = keras.Input((35, 35, 320))
    block = keras.Model(
        inputs, inception_resnet_block(inputs, scale=0.17, block_type="block35", block_idx=1)
    )
    plan = cnnspec.resolve(EXAMPLES / "inception_resnet_block.yaml")
    assert plan.total_params == block.count_params() == 123_408
    assert plan.non_trainable_params == sum(
        int(w.numpy().size) for w in block.non_trainable_weights
    )


def test_generator_writes_the_committed_examples(tmp_path, monkeypatch):
    """examples/make_zoo_specs.py reproduces the YAML files in the repository."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_zoo_specs", EXAMPLES / "make_zoo_specs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "HERE", tmp_path)
    module.main()
    for written in tmp_path.iterdir():
        assert written.read_text() == (EXAMPLES / written.name).read_text(), written.name


SMALL = ["shufflenet_v2_block", "inception_resnet_block", "unet_group_norm"]


@pytest.mark.onnx
@pytest.mark.parametrize("example", SMALL)
def test_small_examples_verify(example):
    from cnnspec.testing import assert_equivalent

    assert_equivalent(EXAMPLES / f"{example}.yaml")


@pytest.mark.onnx
@pytest.mark.slow
@pytest.mark.parametrize("example", [a[0] for a in APPLICATIONS])
def test_zoo_models_verify(example):
    from cnnspec.testing import assert_equivalent

    assert_equivalent(EXAMPLES / f"{example}.yaml")


def _replace_layer(model, name: str, make):
    """A copy of a functional Keras model with layer ``name`` replaced by ``make(name)``."""

    def clone(layer):
        return (
            make(layer.name)
            if layer.name == name
            else layer.__class__.from_config(layer.get_config())
        )

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        if layer.name != name and layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return copy


@pytest.mark.onnx
def test_nchw_shuffle_recipe_on_nhwc_fails_at_the_shuffle():
    from keras import layers, ops

    from cnnspec.targets.build import build
    from cnnspec.verifier.run import verify

    class NchwRecipeShuffle(layers.Layer):
        """PyTorch's view(N, g, C/g, H, W) / transpose / view, written on an NHWC tensor (the trap)."""

        def call(self, inputs):
            height, width, channels = inputs.shape[1:]
            grid = ops.reshape(inputs, (-1, 2, channels // 2, height, width))
            return ops.reshape(ops.transpose(grid, (0, 2, 1, 3, 4)), (-1, height, width, channels))

    spec = EXAMPLES / "shufflenet_v2_block.yaml"
    wrong = _replace_layer(
        build(spec, "keras"), "unit1_shuffle", lambda name: NchwRecipeShuffle(name=name)
    )
    report = verify(spec, keras_model=wrong)
    assert not report.ok and report.divergence.name == "unit1_shuffle"


@pytest.mark.onnx
def test_resize_without_align_corners_fails_at_the_resize():
    from cnnspec.targets.build import build
    from cnnspec.verifier.run import verify

    spec = EXAMPLES / "unet_group_norm.yaml"
    wrong = _replace_layer(
        build(spec, "keras"),
        "up1",
        lambda name: keras.layers.Resizing(40, 48, interpolation="bilinear", name=name),
    )
    report = verify(spec, keras_model=wrong)
    assert not report.ok and report.divergence.name == "up1"
