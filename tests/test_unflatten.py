"""unflatten: a flat vector laid out as a map, in the order the model reads it (issue 14's
third-party models: autoencoders' decoders).  PyTorch's view(N, C, H, W) reads C first, Keras'
Reshape((H, W, C)) H first; each direction converts and verifies, and the wrong order fails at
the unflatten layer."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")

import shape_code_models as S  # noqa: E402

import cnnspec  # noqa: E402
from cnnspec.errors import SpecError  # noqa: E402
from cnnspec.importers.torch import import_torch  # noqa: E402
from cnnspec.weights.transfer import randomize, transfer_weights  # noqa: E402

pytestmark = [pytest.mark.frameworks, pytest.mark.onnx]

HERE = os.path.dirname(__file__)


def _keras_autoencoder():
    from keras import layers

    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.Dense(6)(layers.Flatten()(x))
    x = layers.Dense(4 * 4 * 8, activation="relu")(x)
    x = layers.Reshape((4, 4, 8))(x)
    outputs = layers.Conv2DTranspose(1, 4, strides=2, padding="same", activation="sigmoid")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("factory,order", [("AutoEncoder", "channels_first"), ("KerasOrderDecoder", "channels_last")])
def test_a_torch_decoder_converts_to_keras_in_its_order(tmp_path, factory, order):
    from cnnspec.importers.pipeline import convert_model

    conversion = convert_model(f"{os.path.join(HERE, 'shape_code_models.py')}:{factory}", "keras", tmp_path / "out", input_shape=(1, 8, 8))
    assert conversion.ok, conversion.verification.render(use_rich=False)
    spec = (tmp_path / "out" / "spec.yaml").read_text()
    assert "type: unflatten" in spec and "shape: [8, 4, 4]" in spec
    assert ("order: channels_last" in spec) == (order == "channels_last")


def test_a_keras_decoder_converts_to_torch_in_keras_order(tmp_path):
    from cnnspec.importers.pipeline import convert_model

    path = tmp_path / "autoencoder.keras"
    _keras_autoencoder().save(path)
    conversion = convert_model(str(path), "torch", tmp_path / "out")
    assert conversion.ok, conversion.verification.render(use_rich=False)
    assert "{type: unflatten, name: reshape, shape: [8, 4, 4], order: channels_last}" in (tmp_path / "out" / "spec.yaml").read_text()


def test_a_keras_port_of_a_pytorch_view_with_reshape_and_permute_is_one_unflatten(tmp_path):
    """Reshape((C, H, W)) then Permute((2, 3, 1)): PyTorch's order, written with Keras layers."""
    from keras import layers

    from cnnspec.importers.keras import import_keras
    from cnnspec.importers.pipeline import convert_model

    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.Dense(8 * 4 * 4, activation="relu")(layers.Flatten()(x))
    x = layers.Permute((2, 3, 1), name="to_channels_last")(layers.Reshape((8, 4, 4), name="to_map")(x))
    model = keras.Model(inputs, layers.Conv2DTranspose(1, 4, strides=2, padding="same")(x))
    path = tmp_path / "port.keras"
    model.save(path)
    conversion = convert_model(str(path), "torch", tmp_path / "out")
    assert conversion.ok, conversion.verification.render(use_rich=False)
    assert "{type: unflatten, name: to_channels_last, shape: [8, 4, 4], source: to_map}" in (
        tmp_path / "out" / "spec.yaml"
    ).read_text()
    # negative control: a Permute of a map that only swaps the spatial axes is no spec layer
    inputs = keras.Input((6, 4, 2))
    swapped = layers.Permute((2, 1, 3), name="swap")(layers.Conv2D(3, 1)(inputs))
    with pytest.raises(Exception, match=r"'swap' \(Permute\)"):
        import_keras(keras.Model(inputs, layers.Flatten()(swapped)))


def test_the_other_order_fails_at_the_unflatten_layer():
    """Negative control: a PyTorch model reading the vector in the order the original does not
    use departs at the unflatten; the layers before it agree."""
    module = S.AutoEncoder().eval()
    randomize(module, 0)
    right = import_torch(module, (1, 8, 8)).spec
    keras_model = cnnspec.build(right, "keras")
    transfer_weights(module, keras_model, right)
    document = right.model_dump(mode="json", exclude_none=True)
    for layer in document["layers"]:
        if layer["type"] == "unflatten":
            layer["order"] = "channels_last"
    wrong = cnnspec.build(document, "torch")
    transfer_weights(module, wrong, document)
    right_torch = cnnspec.build(right, "torch")
    transfer_weights(module, right_torch, right)
    assert cnnspec.verify(right, torch_model=right_torch, keras_model=keras_model, sync_weights=False).ok
    report = cnnspec.verify(right, torch_model=wrong, keras_model=keras_model, sync_weights=False)
    assert not report.ok and report.first_divergent_layer == "view"
    names = [layer.name for layer in report.layers]
    assert all(layer.ok for layer in report.layers[: names.index("view")])
    assert "unflatten order" in report.divergence.hint


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_torch_onnx_exports_of_a_decoder_import(tmp_path, dynamo):
    import io

    import onnx

    from cnnspec.verifier.onnx_export import quiet_warnings

    results = []
    for factory in (S.AutoEncoder, S.KerasOrderDecoder):
        module = factory().eval()
        randomize(module, 0)
        buffer = io.BytesIO()
        with quiet_warnings(), torch.no_grad():
            torch.onnx.export(module, (torch.zeros(2, 1, 8, 8),), buffer, dynamo=dynamo, opset_version=18, input_names=["input"])
        path = tmp_path / f"{factory.__name__}.onnx"
        path.write_bytes(buffer.getvalue())
        spec = cnnspec.from_onnx(str(path))
        unflatten = next(layer for layer in spec.layers if layer.type == "unflatten")
        results.append(unflatten.order)
        x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
        torch_model = cnnspec.build(spec, "torch").eval()
        cnnspec.transfer_weights(onnx.load(str(path)), torch_model, spec)
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
            got = torch_model(torch.from_numpy(x)).numpy()
        assert np.abs(got - expected).max() < 1e-5
    assert results == ["channels_first", "channels_last"]


def _spec(*layers):
    return {"cnnspec": 1, "name": "u", "input": {"channels": 2, "size": [4, 4]}, "layers": list(layers)}


def test_the_planner_refuses_what_has_no_single_order():
    with pytest.raises(SpecError, match=r"unflatten needs a flat input"):
        cnnspec.resolve(_spec({"type": "unflatten", "shape": [2, 4, 4]}))
    with pytest.raises(SpecError, match=r"shape \[3, 4, 4\] holds 48 values but the input has 32"):
        cnnspec.resolve(_spec({"type": "global_avg_pool"}, {"type": "dense", "units": 32}, {"type": "unflatten", "shape": [3, 4, 4]}))
    with pytest.raises(SpecError, match=r"unflatten of a flattened feature map"):
        cnnspec.resolve(_spec({"type": "flatten"}, {"type": "unflatten", "shape": [2, 4, 4]}))
    plan = cnnspec.resolve(_spec({"type": "flatten"}, {"type": "dense", "units": 32}, {"type": "unflatten", "shape": [2, 4, 4]}))
    assert plan.layers[-1].output_shape == (2, 4, 4)
