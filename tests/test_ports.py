"""Hand-written ports verify right (issue 8, section 3).

The ports are written with torch.nn / keras.layers as a person would write them, not generated
by cnnspec: the verifier is tested against framework behaviour.  Each mistake gets the hint that
names it, and a different mistake at the same layer does not (negative controls).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

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
from cnnspec.weights.matching import AmbiguousMatch, NameMapError  # noqa: E402
from cnnspec.weights.transfer import randomize, transfer_weights  # noqa: E402

pytestmark = [pytest.mark.frameworks, pytest.mark.onnx]

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "examples" / "pytorch_cnn.yaml"
SAME_STRIDE2 = ROOT / "examples" / "same_stride2.yaml"


def _port(file_name: str) -> nn.Module:
    path = ROOT / "examples" / "ports" / file_name
    spec = importlib.util.spec_from_file_location(f"port_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    return module.Net().eval()


# --------------------------------------------------------------------------------------
# Readings with and without the spec's inline activation
# --------------------------------------------------------------------------------------


def test_the_tutorial_cnn_written_by_hand_verifies():
    """`x = F.relu(self.fc1(x))`: the sub-module 'fc1' ends before the relu the spec puts inline."""
    report = cnnspec.verify(TUTORIAL, torch_model=_port("tutorial_cnn.py"))
    assert report.ok, report.render(use_rich=False)
    fc1 = next(layer for layer in report.layers if layer.name == "fc1")
    assert fc1.ok and "+ relu" in fc1.reading
    assert report.output_max_abs_diff < 1e-5


def test_a_correct_port_padding_with_f_pad_in_forward_verifies():
    report = cnnspec.verify(SAME_STRIDE2, torch_model=_port("same_stride2_fpad.py"))
    assert report.ok, report.render(use_rich=False)
    assert report.output_max_abs_diff < 1e-6
    stem = report.layers[0]
    assert stem.ok and "+ relu" in stem.reading


def test_padding_1_where_the_spec_says_same_stride_2_fails_at_the_first_conv_with_the_shift_hint():
    report = cnnspec.verify(SAME_STRIDE2, torch_model=_port("same_stride2_padding1.py"))
    assert not report.ok
    assert report.first_divergent_layer == "stem"
    assert report.divergence.max_abs_diff > 0.1
    [evidence] = report.divergence.evidence
    assert evidence.name == "one_cell_shift" and evidence.holds
    assert "consistent with symmetric padding=1 where the spec says same" in report.divergence.hint
    assert "one-pixel shift" in report.divergence.hint


class _ForwardAfterSubmodule(nn.Module):
    """Reads 'fc' through a sub-module that is not the spec layer: a scaled copy of its input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(64, 5)
        self.flat = nn.Identity()  # named like a spec layer, but it is read before the flatten

    def forward(self, x):
        x = self.conv(x)
        return self.fc(self.flat(x * 1.0).flatten(1))


def test_an_inner_reading_that_disagrees_while_the_output_agrees_is_misaligned_not_wrong():
    spec = dict(FLAT_SPEC, layers=[dict(layer) for layer in FLAT_SPEC["layers"]])
    # the spec layer 'flat' is a flatten (N, 64); the module 'flat' outputs (N, 4, 4, 4): a misaligned reading
    model = _ForwardAfterSubmodule().eval()
    report = cnnspec.verify(spec, torch_model=model)
    assert report.ok, report.render(use_rich=False)
    flat = report.layers[1]
    assert flat.misaligned and not flat.ok
    assert any("misaligned" in note for note in report.notes)
    assert "misaligned" in report.render(use_rich=False)


# --------------------------------------------------------------------------------------
# Hints tested on the data, with negative controls
# --------------------------------------------------------------------------------------

SHIFT_SPEC = {
    "cnnspec": 1,
    "name": "shift_check",
    "input": {"channels": 3, "size": [16, 16]},
    "layers": [
        {"name": "stem", "type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"name": "down", "type": "conv2d", "filters": 8, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "dense", "units": 5},
    ],
}


def _synced_pair(spec, seed: int = 3):
    plan = cnnspec.resolve(spec)
    torch_model = build(plan, "torch")
    randomize(torch_model, seed)
    keras_model = build(plan, "keras")
    transfer_weights(torch_model, keras_model, plan)
    return plan, torch_model, keras_model


def test_negative_control_a_perturbed_weight_at_a_same_stride_2_conv_gets_no_shift_hint():
    plan, torch_model, keras_model = _synced_pair(SHIFT_SPEC)
    kernel = keras_model.get_layer("down").kernel
    values = kernel.numpy()
    values[1, 2, 3, 4] += 0.05
    kernel.assign(values)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.first_divergent_layer == "down"
    [evidence] = report.divergence.evidence
    assert evidence.name == "one_cell_shift" and not evidence.holds
    assert "consistent with symmetric padding" not in report.divergence.hint
    assert "not a one-cell shift" in report.divergence.hint


FLAT_SPEC = {
    "cnnspec": 1,
    "name": "flatten_order",
    "input": {"channels": 3, "size": [6, 6]},
    "layers": [
        {"name": "conv", "type": "conv2d", "filters": 4, "kernel_size": 3},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "dense", "units": 5},
    ],
}


class _ChannelsLastFlatten(nn.Module):
    """A port that flattens H,W,C (as Keras does) and reads 'fc' through its sub-module."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        return self.fc(self.conv(x).permute(0, 2, 3, 1).flatten(1))


def test_a_dense_after_flatten_in_the_other_order_gets_the_permutation_hint():
    torch.manual_seed(0)
    report = cnnspec.verify(FLAT_SPEC, torch_model=_ChannelsLastFlatten().eval())
    assert report.first_divergent_layer == "fc"
    [evidence] = report.divergence.evidence
    assert evidence.name == "flatten_permutation" and evidence.holds
    assert "must be permuted" in report.divergence.hint


def test_negative_control_a_perturbed_dense_weight_gets_no_permutation_hint():
    plan, torch_model, keras_model = _synced_pair(FLAT_SPEC)
    kernel = keras_model.get_layer("fc").kernel
    values = kernel.numpy()
    values[7, 2] += 0.05
    kernel.assign(values)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, sync_weights=False)
    assert report.first_divergent_layer == "fc"
    [evidence] = report.divergence.evidence
    assert evidence.name == "flatten_permutation" and not evidence.holds
    assert "must be permuted" not in report.divergence.hint


def test_negative_control_the_shift_mistake_gets_no_permutation_claim_and_vice_versa():
    shifted = cnnspec.verify(SAME_STRIDE2, torch_model=_port("same_stride2_padding1.py"))
    assert "permuted" not in shifted.divergence.hint
    torch.manual_seed(0)
    permuted = cnnspec.verify(FLAT_SPEC, torch_model=_ChannelsLastFlatten().eval())
    assert "padding" not in permuted.divergence.hint and "shift" not in permuted.divergence.hint


# --------------------------------------------------------------------------------------
# Matching: name_map, order and type
# --------------------------------------------------------------------------------------


class _SequentialTutorial(nn.Module):
    """The tutorial CNN as nn.Sequential blocks: features.0, features.4, classifier.0, classifier.2."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.5),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout2d(0.5),
        )
        self.classifier = nn.Sequential(nn.Linear(3136, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def test_an_nn_sequential_port_is_matched_by_order_and_type_and_the_table_is_reported():
    torch.manual_seed(0)
    report = cnnspec.verify(TUTORIAL, torch_model=_SequentialTutorial().eval())
    assert report.ok, report.render(use_rich=False)
    table = {row.part: (row.target, row.how) for row in report.matching["torch"]}
    assert table == {"conv1": ("features.0", "order"), "conv2": ("features.4", "order"),
                     "fc1": ("classifier.0", "order"), "fc2": ("classifier.2", "order")}
    assert "features.4" in report.render(use_rich=False)
    assert report.to_dict()["matching"]["torch"][0] == {
        "spec_layer": "conv1", "part": "conv1", "target": "features.0", "how": "order", "kind": "conv"}
    fc1 = next(layer for layer in report.layers if layer.name == "fc1")
    assert fc1.ok and "classifier.0" in fc1.reading and "+ relu" in fc1.reading


def test_a_name_map_gives_dotted_torch_paths_in_verify_transfer_and_assert_equivalent():
    torch.manual_seed(0)
    port = _SequentialTutorial().eval()
    name_map = {"conv1": "features.0", "conv2": "features.4", "fc1": "classifier.0", "fc2": "classifier.2",
                "drop1": "features.3"}
    report = assert_equivalent(TUTORIAL, torch_model=port, name_map=name_map)
    hows = {row.part: row.how for row in report.matching["torch"]}
    assert hows["conv2"] == "name_map" and hows["drop1"] == "name_map"
    plan = cnnspec.resolve(TUTORIAL)
    keras_model = build(plan, "keras")
    transfer_weights(port, keras_model, plan, name_map=name_map)
    np.testing.assert_array_equal(keras_model.get_layer("conv2").kernel.numpy(),
                                  port.features[4].weight.detach().numpy().transpose(2, 3, 1, 0))


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)


class _TorchvisionStyle(nn.Module):
    """Dotted paths as torchvision names them: layer1.0.conv1, with an extra unused conv (ambiguous)."""

    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(_Block())
        self.fc = nn.Linear(4 * 2 * 2, 5)

    def forward(self, x):
        x = self.layer1[0].conv1(x)
        return self.fc(F.max_pool2d(x, 2).flatten(1))


TV_SPEC = {
    "cnnspec": 1, "name": "tv", "input": {"channels": 3, "size": [6, 6]},
    "layers": [
        {"name": "stem", "type": "conv2d", "filters": 4, "kernel_size": 3},
        {"name": "pool", "type": "max_pool2d", "pool_size": 2},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "dense", "units": 5},
    ],
}


def test_an_ambiguous_match_is_a_clear_error_listing_the_candidates():
    with pytest.raises(AmbiguousMatch, match=r"candidates for 'stem': layer1\.0\.conv1, layer1\.0\.conv2") as error:
        cnnspec.verify(TV_SPEC, torch_model=_TorchvisionStyle().eval())
    assert "name map" in str(error.value)


def test_a_torchvision_style_dotted_path_in_a_name_map():
    model = _TorchvisionStyle().eval()
    del model.layer1[0].conv2  # the model now holds exactly the spec's weights
    report = cnnspec.verify(TV_SPEC, torch_model=model, name_map={"stem": "layer1.0.conv1"})
    assert report.ok, report.render(use_rich=False)
    assert report.matching["torch"][0].target == "layer1.0.conv1"


def test_a_name_map_naming_an_unknown_part_is_a_clear_error():
    with pytest.raises(NameMapError, match=r"no sub-module 'features\.9'"):
        cnnspec.verify(TUTORIAL, torch_model=_SequentialTutorial(), name_map={"conv1": "features.9"})
    with pytest.raises(NameMapError, match=r"'conv7' is not a layer of the spec"):
        cnnspec.verify(TUTORIAL, torch_model=_SequentialTutorial(), name_map={"conv7": "features.0"})


def _keras_port_with_dotted_names():
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, name="mobilenetv2_1.00_224")(inputs)
    x = keras.layers.Flatten(name="flatten.0")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="head.fc")(x))


def test_keras_layer_names_with_dots_by_name_map_and_by_order():
    keras.utils.set_random_seed(0)
    port = _keras_port_with_dotted_names()
    by_map = cnnspec.verify(FLAT_SPEC, keras_model=port,
                            name_map={"conv": "mobilenetv2_1.00_224", "flat": "flatten.0", "fc": "head.fc"})
    assert by_map.ok, by_map.render(use_rich=False)
    assert [layer.ok for layer in by_map.layers] == [True, True, True]  # each read through its Keras layer
    by_order = cnnspec.verify(FLAT_SPEC, keras_model=port)
    assert by_order.ok
    assert {row.part: row.target for row in by_order.matching["keras"]} == {
        "conv": "mobilenetv2_1.00_224", "fc": "head.fc"}


def test_a_subclassed_keras_model_is_a_clear_error_saying_what_is_supported():
    from cnnspec.verifier.run import UnsupportedModel

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(5)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(UnsupportedModel, match="functional keras.Model or a Sequential"):
        cnnspec.verify(FLAT_SPEC, keras_model=Sub())


def test_an_untraceable_torch_model_is_a_clear_error_saying_what_is_supported():
    from cnnspec.verifier.run import UnsupportedModel

    class NoOnnxOp(_ChannelsLastFlatten):
        def forward(self, x):
            return torch.special.bessel_j0(super().forward(x))  # no ONNX mapping

    with pytest.raises(UnsupportedModel, match="traceable by torch.onnx.export"):
        cnnspec.verify(FLAT_SPEC, torch_model=NoOnnxOp().eval(), sync_weights=False)


class _SoftmaxOverTheBatch(nn.Module):
    """The last sub-module is right but forward then applies softmax over the wrong axis."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        return F.softmax(self.fc(self.conv(x).flatten(1)), dim=0)


def test_the_last_layer_is_read_from_the_models_output_not_from_its_sub_module():
    spec = dict(FLAT_SPEC, layers=[*FLAT_SPEC["layers"][:2], {**FLAT_SPEC["layers"][2], "activation": "softmax"}])
    torch.manual_seed(0)
    report = cnnspec.verify(spec, torch_model=_SoftmaxOverTheBatch().eval())
    assert not report.ok and report.first_divergent_layer == "fc"


def test_a_keras_port_with_the_activation_as_its_own_layer_is_read_both_ways():
    spec = dict(FLAT_SPEC, layers=[{**FLAT_SPEC["layers"][0], "activation": "relu"}, *FLAT_SPEC["layers"][1:]])
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.ReLU(name="conv_relu")(keras.layers.Conv2D(4, 3, name="conv")(inputs))
    port = keras.Model(inputs, keras.layers.Dense(5, name="fc")(keras.layers.Flatten(name="flat")(x)))
    report = cnnspec.verify(spec, keras_model=port)
    assert report.ok, report.render(use_rich=False)
    assert report.layers[0].ok and report.layers[0].reading == "keras 'conv' + relu"


class _RegisteredOutOfOrder(nn.Module):
    """Two convs registered in the other order than forward uses them: order and type would pair them wrongly."""

    def __init__(self):
        super().__init__()
        self.second = nn.Conv2d(4, 6, 1)
        self.first = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(self.second(self.first(x)).flatten(1))


def test_order_and_type_that_pair_parts_of_different_sizes_ask_for_a_name_map():
    spec = {"cnnspec": 1, "name": "two_convs", "input": {"channels": 3, "size": [6, 6]},
            "layers": [{"name": "a", "type": "conv2d", "filters": 4, "kernel_size": 3},
                       {"name": "b", "type": "conv2d", "filters": 6, "kernel_size": 1},
                       {"name": "flat", "type": "flatten"}, {"name": "fc", "type": "dense", "units": 5}]}
    with pytest.raises(AmbiguousMatch, match=r"'a' \(conv, 112 weights\) pairs with 'second' \(30 weights\)"):
        cnnspec.verify(spec, torch_model=_RegisteredOutOfOrder().eval())
    report = cnnspec.verify(spec, torch_model=_RegisteredOutOfOrder().eval(), name_map={"a": "first", "b": "second"})
    assert report.ok, report.render(use_rich=False)


class _InplaceRelu(nn.Module):
    """torchvision style: one nn.ReLU(inplace=True) applied right after the BatchNorm read through its hook."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(64, 5)

    def forward(self, x):
        return self.fc(self.relu(self.bn(self.conv(x))).flatten(1))


def test_an_in_place_op_after_a_part_does_not_change_its_reading():
    spec = {"cnnspec": 1, "name": "inplace", "input": {"channels": 3, "size": [6, 6]},
            "layers": [{"name": "conv", "type": "conv2d", "filters": 4, "kernel_size": 3},
                       {"name": "bn", "type": "batch_norm"}, {"name": "relu", "type": "relu"},
                       {"name": "flat", "type": "flatten"}, {"name": "fc", "type": "dense", "units": 5}]}
    model = _InplaceRelu().eval()
    randomize(model, 1)
    report = cnnspec.verify(spec, torch_model=model)
    assert report.ok and not report.notes
    assert [layer.ok for layer in report.layers] == [True, True, True, None, True]
