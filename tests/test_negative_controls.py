"""Deliberately wrong models must FAIL, at the right layer; a right hand-written port must pass.

Each wrong model is a real, common porting mistake, written with the frameworks' own layers
(torch.nn, keras.layers), so the verifier is tested against framework behaviour rather than
against cnnspec's generated code.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
keras = pytest.importorskip("keras")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import cnnspec  # noqa: E402
from cnnspec.targets.build import build  # noqa: E402
from cnnspec.testing import assert_equivalent  # noqa: E402
from cnnspec.weights.transfer import randomize, transfer_weights  # noqa: E402

pytestmark = [pytest.mark.frameworks, pytest.mark.onnx]

# 16x16 input (even), 'same' at stride 2: TF/ONNX pad 0 before and 1 after.
SPEC = {
    "cnnspec": 1,
    "name": "port_check",
    "input": {"channels": 3, "size": [16, 16]},
    "layers": [
        {"name": "stem", "type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"name": "down", "type": "conv2d", "filters": 8, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"name": "bn", "type": "batch_norm"},
        {"name": "act", "type": "relu"},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "dense", "units": 5},
    ],
}


class SameUpperConv2d(nn.Conv2d):
    """A stride-2 'same' convolution done right in PyTorch: pad (0, 1) per axis, then a valid conv."""

    def forward(self, x):
        return super().forward(F.pad(x, (0, 1, 0, 1)))


class HandPort(nn.Module):
    """A hand-written PyTorch port of SPEC; sub-modules are named like the spec layers."""

    def __init__(self, symmetric_padding: bool):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        # The classic mistake: padding=1 (symmetric) for Keras' padding="same" at stride 2.
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1) if symmetric_padding else SameUpperConv2d(4, 8, 3, stride=2)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(self.flat(self.act(self.bn(self.down(self.stem(x))))))


def _port(symmetric_padding: bool) -> HandPort:
    model = HandPort(symmetric_padding).eval()
    randomize(model, 7)  # non-trivial BatchNorm statistics too
    return model


def _synced_pair(spec=SPEC, seed: int = 3):
    plan = cnnspec.resolve(spec)
    torch_model = build(plan, "torch")
    randomize(torch_model, seed)
    keras_model = build(plan, "keras")
    transfer_weights(torch_model, keras_model, plan)
    return plan, torch_model, keras_model


def test_positive_control_right_hand_port_verifies():
    report = cnnspec.verify(SPEC, torch_model=_port(symmetric_padding=False))
    assert report.ok, report.render(use_rich=False)
    assert report.observation["torch"] == "hooks"
    assert all(layer.ok for layer in report.layers)  # every spec layer was observed through its sub-module


def test_a_symmetric_padding_for_same_stride_2_fails_at_that_conv():
    report = cnnspec.verify(SPEC, torch_model=_port(symmetric_padding=True))
    assert not report.ok
    assert report.first_divergent_layer == "down"
    assert [layer.ok for layer in report.layers][:2] == [True, False]  # stem still agrees
    assert report.layers[1].shape_ok  # same shape (8x8): only the values betray it
    assert report.divergence.max_abs_diff > 1e-2
    assert "SAME_UPPER" in report.divergence.hint
    with pytest.raises(AssertionError, match=r"first divergent layer: 'down' \(conv2d\), max abs diff"):
        assert_equivalent(SPEC, torch_model=_port(symmetric_padding=True))


def test_b_one_perturbed_keras_weight_fails_at_that_layer():
    plan, torch_model, keras_model = _synced_pair()
    assert cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False).ok
    kernel = keras_model.get_layer("down").kernel
    values = kernel.numpy()
    values[1, 2, 3, 4] += 0.05  # one element of one kernel
    kernel.assign(values)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert not report.ok and report.first_divergent_layer == "down"
    assert report.layers[0].ok  # 'stem' before it agrees
    # with sync_weights=True the torch weights are copied again and the models agree
    assert cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=True).ok


def test_c_batchnorm_epsilon_fails_at_the_batchnorm_layer():
    plan, torch_model, keras_model = _synced_pair()
    with torch.no_grad():
        torch_model.bn.running_var.mul_(0.01)  # small variances: epsilon matters
    transfer_weights(torch_model, keras_model, plan)
    assert cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False).ok
    keras_model.get_layer("bn").epsilon = 1e-3  # Keras' default instead of the spec's (PyTorch's) 1e-5
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert not report.ok and report.first_divergent_layer == "bn"
    assert [layer.ok for layer in report.layers][:2] == [True, True]
    assert "epsilon" in report.divergence.hint


def _scaled_pair(factor: float):
    """Every weight of the synced pair times ``factor``: the signal grows (or shrinks) with each layer."""
    plan, torch_model, keras_model = _synced_pair()
    with torch.no_grad():
        for parameter in torch_model.parameters():
            parameter.mul_(factor)
        torch_model.bn.running_mean.mul_(factor**2)
        torch_model.bn.running_var.mul_(factor**4)
    transfer_weights(torch_model, keras_model, plan)
    return plan, torch_model, keras_model


def test_b_a_perturbed_weight_fails_where_the_values_are_huge():
    """Where values reach 1e8 the tolerance follows their scale; 1 % of a kernel still fails, there."""
    plan, torch_model, keras_model = _scaled_pair(1e4)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.ok, report.render(use_rich=False)
    assert max(layer.scale for layer in report.layers) > 1e6
    kernel = keras_model.get_layer("down").kernel
    values = kernel.numpy()
    values[1, 2, 3, 4] *= 1.01
    kernel.assign(values)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert not report.ok and report.first_divergent_layer == "down"


def test_outputs_below_the_tolerance_are_reported_as_unable_to_fail():
    plan, torch_model, keras_model = _synced_pair()
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.ok and not any("smaller than the tolerance" in note for note in report.notes)
    plan, torch_model, keras_model = _scaled_pair(1e-3)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.ok
    note = next(note for note in report.notes if "smaller than the tolerance" in note)
    assert "the first 'down'" in note and "could not fail" in note
    assert not any("likely a real difference" in note for note in report.notes)
    # a mistake there passes the tolerance but not the note: Keras' BatchNorm epsilon (1e-3) for
    # the spec's 1e-5; float32 rounding stays below 1e-5 of a layer's root mean square
    keras_model.get_layer("bn").epsilon = 1e-3
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.ok
    hidden = next(note for note in report.notes if "likely a real difference" in note)
    assert hidden.startswith("'bn' passes the tolerance but differs by")
    tighter = cnnspec.verify(
        plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False, atol=1e-12
    )
    assert not tighter.ok and tighter.first_divergent_layer == "bn"
    plan, torch_model, keras_model = _synced_pair()
    with torch.no_grad():  # a BatchNorm that starts at 0 (zero_init_last): it and what follows are 0
        torch_model.bn.weight.zero_()
        torch_model.bn.bias.zero_()
    transfer_weights(torch_model, keras_model, plan)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert any(note.startswith("3 of the 6 layers' outputs are exactly 0, the first 'bn'") for note in report.notes)


FLAT_SPEC = {
    "cnnspec": 1,
    "name": "flatten_order",
    "input": {"channels": 3, "size": [6, 6]},
    "layers": [
        {"name": "conv", "type": "conv2d", "filters": 4, "kernel_size": 3},  # 4x4x4: a real spatial map
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "dense", "units": 5},
    ],
}


def _keras_port(channels_first_flatten: bool):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    if channels_first_flatten:
        x = keras.layers.Permute((3, 1, 2), name="to_channels_first")(x)  # flattens C,H,W like PyTorch
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="fc")(x))


def test_d_flatten_in_the_other_order_fails_at_the_flatten_layer():
    """The flatten layer itself is the first divergent layer.

    Its Keras output is the right set of numbers in the wrong order: compared after the
    native H,W,C -> C,H,W permutation it differs, while the conv before it agrees.  The
    dense layer after it diverges too, but it is not the first.
    """
    plan = cnnspec.resolve(FLAT_SPEC)
    torch_model = build(plan, "torch")
    randomize(torch_model, 0)
    native = _keras_port(channels_first_flatten=False)
    transfer_weights(torch_model, native, plan)  # rows permuted for Keras' native H,W,C order
    assert cnnspec.verify(plan, torch_model=torch_model, keras_model=native, sync_weights=False).ok

    wrong = _keras_port(channels_first_flatten=True)
    transfer_weights(torch_model, wrong, plan)  # still permuted as for the native order
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=wrong, sync_weights=False)
    assert not report.ok
    assert report.first_divergent_layer == "flat"
    assert [layer.ok for layer in report.layers] == [True, False, False]
    assert report.layers[1].shape_ok  # same length, different order
    assert "flatten order" in report.divergence.hint


PIXEL_SPEC = {
    "cnnspec": 1,
    "name": "sub_pixel",
    "input": {"channels": 3, "size": [6, 6]},
    "layers": [
        {"name": "conv", "type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1},
        {"name": "shuffle", "type": "pixel_shuffle", "factor": 2},
        {"name": "head", "type": "conv2d", "filters": 2, "kernel_size": 1},
    ],
}


class TensorFlowDepthToSpace(keras.layers.Layer):
    """What a Keras port of nn.PixelShuffle usually writes: TensorFlow's depth_to_space."""

    def call(self, x):
        import tensorflow as tf

        return tf.nn.depth_to_space(x, 2)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height * 2, width * 2, channels // 4)


def _keras_pixel_port(tensorflow_order: bool):
    from cnnspec.targets.keras.helpers import PixelShuffle

    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv")(inputs)
    shuffle = TensorFlowDepthToSpace if tensorflow_order else PixelShuffle
    x = shuffle(**({} if tensorflow_order else {"factor": 2}), name="shuffle")(x)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, name="head")(x))


def test_e_pixel_shuffle_as_tensorflow_depth_to_space_fails_at_the_shuffle():
    plan = cnnspec.resolve(PIXEL_SPEC)
    torch_model = build(plan, "torch")
    randomize(torch_model, 0)
    right = _keras_pixel_port(tensorflow_order=False)
    transfer_weights(torch_model, right, plan)
    assert cnnspec.verify(plan, torch_model=torch_model, keras_model=right, sync_weights=False).ok

    wrong = _keras_pixel_port(tensorflow_order=True)
    transfer_weights(torch_model, wrong, plan)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=wrong, sync_weights=False)
    assert report.first_divergent_layer == "shuffle"
    assert [layer.ok for layer in report.layers] == [True, False, False]
    assert report.layers[1].shape_ok
    assert "depth_to_space" in report.divergence.hint
    assert report.referee.verdict == "torch agrees with the spec; keras departs at `shuffle`"


UNSHUFFLE_SPEC = {
    "cnnspec": 1,
    "name": "real_esrgan_x2_stem",
    "input": {"channels": 3, "size": [6, 8]},
    "layers": [
        {"name": "unshuffle", "type": "pixel_unshuffle", "factor": 2},
        {"name": "conv_first", "type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1},
    ],
}


class TensorFlowSpaceToDepth(keras.layers.Layer):
    """What a Keras port of F.pixel_unshuffle usually writes: TensorFlow's space_to_depth."""

    def call(self, x):
        import tensorflow as tf

        return tf.nn.space_to_depth(x, 2)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, height // 2, width // 2, channels * 4)


def _keras_unshuffle_port(tensorflow_order: bool):
    from cnnspec.targets.keras.helpers import PixelUnshuffle

    inputs = keras.Input((6, 8, 3))
    unshuffle = TensorFlowSpaceToDepth if tensorflow_order else PixelUnshuffle
    x = unshuffle(**({} if tensorflow_order else {"factor": 2}), name="unshuffle")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same", name="conv_first")(x))


def test_e_pixel_unshuffle_as_tensorflow_space_to_depth_fails_at_the_unshuffle():
    plan = cnnspec.resolve(UNSHUFFLE_SPEC)
    torch_model = build(plan, "torch")
    randomize(torch_model, 0)
    right = _keras_unshuffle_port(tensorflow_order=False)
    transfer_weights(torch_model, right, plan)
    assert cnnspec.verify(plan, torch_model=torch_model, keras_model=right, sync_weights=False).ok

    wrong = _keras_unshuffle_port(tensorflow_order=True)
    transfer_weights(torch_model, wrong, plan)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=wrong, sync_weights=False)
    assert report.first_divergent_layer == "unshuffle"
    assert [layer.ok for layer in report.layers] == [False, False]
    assert report.layers[0].shape_ok
    assert "space_to_depth" in report.divergence.hint
    assert report.referee.verdict == "torch agrees with the spec; keras departs at `unshuffle`"


def test_assert_equivalent_passes_silently_and_returns_the_report():
    report = assert_equivalent(SPEC, torch_model=_port(symmetric_padding=False))
    assert report.ok


# --------------------------------------------------------------------------------------
# The referee (the spec's own ONNX graph) names the side that departs from the spec
# --------------------------------------------------------------------------------------


def test_referee_names_torch_for_symmetric_padding():
    report = cnnspec.verify(SPEC, torch_model=_port(symmetric_padding=True))
    assert report.referee.verdict == "keras agrees with the spec; torch departs at `down`"
    assert (report.referee.torch_departs_at, report.referee.keras_departs_at) == ("down", None)
    assert "Referee (the spec's own ONNX graph): keras agrees with the spec; torch departs at `down`." in report.render(
        use_rich=False)


def test_referee_names_keras_for_a_perturbed_keras_weight():
    plan, torch_model, keras_model = _synced_pair()
    kernel = keras_model.get_layer("down").kernel
    values = kernel.numpy()
    values[1, 2, 3, 4] += 0.05
    kernel.assign(values)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.referee.weights_from == "torch"
    assert report.referee.verdict == "torch agrees with the spec; keras departs at `down`"


def test_referee_names_keras_for_the_batchnorm_epsilon():
    plan, torch_model, keras_model = _synced_pair()
    with torch.no_grad():
        torch_model.bn.running_var.mul_(0.01)
    transfer_weights(torch_model, keras_model, plan)
    keras_model.get_layer("bn").epsilon = 1e-3
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.referee.verdict == "torch agrees with the spec; keras departs at `bn`"


def test_referee_names_torch_for_the_batchnorm_epsilon_on_the_torch_side():
    plan, torch_model, keras_model = _synced_pair()
    with torch.no_grad():
        torch_model.bn.running_var.mul_(0.01)
    transfer_weights(torch_model, keras_model, plan)
    torch_model.bn.eps = 1e-3
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.referee.verdict == "keras agrees with the spec; torch departs at `bn`"


def test_referee_names_keras_for_the_flatten_order():
    plan = cnnspec.resolve(FLAT_SPEC)
    torch_model = build(plan, "torch")
    randomize(torch_model, 0)
    wrong = _keras_port(channels_first_flatten=True)
    transfer_weights(torch_model, wrong, plan)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=wrong, sync_weights=False)
    assert report.referee.verdict == "torch agrees with the spec; keras departs at `flat`"


def test_referee_agrees_with_both_on_a_right_port():
    report = cnnspec.verify(SPEC, torch_model=_port(symmetric_padding=False))
    assert report.ok and report.referee.verdict == "torch and keras both agree with the spec's ONNX reference"
    assert report.referee.torch_layers_compared == report.referee.keras_layers_compared == len(SPEC["layers"])


ECA_SPEC = {
    "cnnspec": 1,
    "name": "eca",
    "input": {"channels": 3, "size": [6, 5]},
    "layers": [
        {"type": "conv2d", "name": "conv", "filters": 8, "kernel_size": 3},
        {"type": "global_avg_pool", "name": "pool", "keepdims": True},
        {"type": "channel_conv", "name": "eca", "kernel_size": 5},
        {"type": "sigmoid", "name": "gate"},
    ],
}


def test_e_channel_conv_with_its_taps_reversed_fails_at_the_channel_conv():
    """A port that reads the filter's taps back to front (a true convolution where both
    frameworks correlate, or a kernel copied reversed) differs at the channel_conv layer."""
    plan = cnnspec.resolve(ECA_SPEC)
    torch_model = build(plan, "torch")
    randomize(torch_model, 0)
    keras_model = build(plan, "keras")
    transfer_weights(torch_model, keras_model, plan)
    assert cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False).ok

    kernel = keras_model.get_layer("eca").kernel
    kernel.assign(np.asarray(kernel)[::-1])
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.first_divergent_layer == "eca"
    assert [layer.ok for layer in report.layers] == [True, True, False, False]
    assert report.referee.verdict == "torch agrees with the spec; keras departs at `eca`"


def test_channel_conv_of_an_even_kernel_is_refused_with_both_paddings_named():
    spec = {**ECA_SPEC, "layers": [*ECA_SPEC["layers"][:2], {"type": "channel_conv", "kernel_size": 4}]}
    with pytest.raises(cnnspec.SpecError, match="even.*pads 1 \\+ 1 channels and loses one, Keras' 'same' pads 1 and 2"):
        cnnspec.resolve(spec)
