"""The contract every registered layer type meets, checked over the registry.

For every example of every definition, at its own size and one cell larger on every axis
(odd and even sizes): both targets build it; the parameter counts equal the frameworks'
own counts; random torch weights moved to Keras give the same output, and random Keras
weights moved to torch too; weights survive torch -> keras -> torch exactly; the
targets' neutral weight reading agrees; the verifier's divergence hint for the layer is
the definition's own.  A new type gets all of this by registering, and a deliberately
wrong definition fails it (the tests at the end).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from cnnspec.engine.plan import resolve  # noqa: E402
from cnnspec.layers import REGISTRY, LayerDefinition, example  # noqa: E402
from cnnspec.targets.base import TARGET_CLASSES, get_target  # noqa: E402
from cnnspec.weights.transfer import WeightMismatch, flat_permutation, randomize, transfer_weights  # noqa: E402

ATOL = 2e-5
RTOL = 1e-4

CASES = [
    pytest.param(definition, number, id=f"{definition.types[0]}-{number}")
    for definition in REGISTRY.definitions()
    for number in range(len(definition.examples))
]


def _torch_output(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _keras_output_channels_first(model, plan, x: np.ndarray) -> np.ndarray:
    y = np.asarray(model(np.ascontiguousarray(np.moveaxis(x, 1, -1)), training=False))
    last = plan.layers[-1]
    if len(last.output_shape) > 1:
        return np.moveaxis(y, -1, 1)
    if last.flat_segments is not None:  # a flat vector in Keras' order -> PyTorch's
        return y[:, np.argsort(flat_permutation(last.flat_segments))]
    return y


def check_contract(definition: LayerDefinition, number: int) -> None:
    """Run one example of ``definition`` through the whole contract; raises AssertionError on a breach."""
    ex = definition.examples[number]
    for size in ex.sizes():
        plan = resolve(ex.spec(size))
        layer = plan.layers[-1]
        assert layer.type in definition.types, f"the example's last layer is {layer.type}, not {definition.types}"
        models = {name: get_target(name).build(plan)[0] for name in TARGET_CLASSES}
        torch_model, keras_model = models["torch"], models["keras"]

        # The frameworks' own parameter counts.
        assert sum(p.numel() for p in torch_model.parameters()) == plan.trainable_params
        assert keras_model.count_params() == plan.total_params

        rng = np.random.default_rng(number)
        x = (rng.normal(size=(2, *plan.input_shape)) * 2).astype(np.float32)
        # torch -> keras
        randomize(torch_model, seed=1)
        transfer_weights(torch_model, keras_model, plan)
        expected = _torch_output(torch_model, x)
        got = _keras_output_channels_first(keras_model, plan, x)
        assert got.shape == expected.shape == (2, *layer.output_shape)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"torch -> keras, size {size}")
        # the neutral weights each target reads agree, and cover exactly the plan's tensors
        neutral_torch = get_target("torch").read_weights(torch_model, plan)
        neutral_keras = get_target("keras").read_weights(keras_model, plan)
        planned = {(lp.name, p.name) for lp in plan.layers for p in lp.params}
        assert set(neutral_torch) == set(neutral_keras) == planned
        for key, value in neutral_torch.items():
            np.testing.assert_array_equal(neutral_keras[key], value, err_msg=str(key))
        # keras -> torch
        randomize(keras_model, seed=2)
        transfer_weights(keras_model, torch_model, plan)
        expected = _keras_output_channels_first(keras_model, plan, x)
        np.testing.assert_allclose(
            _torch_output(torch_model, x), expected, rtol=RTOL, atol=ATOL, err_msg=f"keras -> torch, size {size}"
        )
        # round trip torch -> keras -> torch, bit for bit
        fresh = get_target("torch").build(plan)[0]
        transfer_weights(keras_model, fresh, plan)
        for (name, before), after in zip(torch_model.state_dict().items(), fresh.state_dict().values()):
            assert torch.equal(before, after), name

    # The verifier's hint for this layer is the definition's own.
    from types import SimpleNamespace

    from cnnspec.verifier.compare import divergence_hint

    hint = divergence_hint(SimpleNamespace(shape_ok=True, border_only=False), layer, plan)
    assert hint and hint == definition.hint(layer, "", plan)
    assert hint != "compare this layer's definition in both models."


@pytest.mark.frameworks
@pytest.mark.parametrize("definition, number", CASES)
def test_contract(definition, number):
    check_contract(definition, number)


def test_every_type_has_an_example_run_by_the_contract():
    covered = {d.examples[n].layers[-1]["type"] for d, n in (case.values for case in CASES)}
    assert covered == set(REGISTRY.types())


# ------------------------------------------------------------------------------------
# A deliberately wrong definition fails the contract
# ------------------------------------------------------------------------------------


def _swap(monkeypatch, layer_type: str, broken: LayerDefinition) -> None:
    broken.types = REGISTRY.definition(layer_type).types  # type: ignore[misc]
    for t in broken.types:
        monkeypatch.setitem(REGISTRY._by_type, t, broken)


def test_a_keras_emission_that_drops_a_field_fails_the_contract(monkeypatch):
    """leaky_relu emitted without its slope: Keras' default 0.3 is not the spec's 0.2."""
    original = type(REGISTRY.definition("leaky_relu"))

    class DropsSlope(original):  # type: ignore[valid-type, misc]
        def _keras_layer(self, layer, ctx):
            return f"layers.LeakyReLU(name={layer.name!r})"

    _swap(monkeypatch, "leaky_relu", DropsSlope())
    with pytest.raises(AssertionError, match="torch -> keras"):
        check_contract(REGISTRY.definition("leaky_relu"), 0)


def test_a_definition_that_forgets_a_weight_fails_the_contract(monkeypatch):
    """conv weights without the bias slot: the transfer refuses the unmatched bias."""
    original = type(REGISTRY.definition("conv2d"))

    class ForgetsBias(original):  # type: ignore[valid-type, misc]
        def weights(self, layer, flat_order):
            return [slot for slot in super().weights(layer, flat_order) if slot.tensor != "bias"]

    _swap(monkeypatch, "conv2d", ForgetsBias())
    with pytest.raises(WeightMismatch, match="has a bias"):
        check_contract(REGISTRY.definition("conv2d"), 1)


def test_a_planner_that_miscounts_fails_the_contract(monkeypatch):
    """A planner whose parameter count is not the frameworks' own."""
    original = type(REGISTRY.definition("dense"))

    class NoBiasCounted(original):  # type: ignore[valid-type, misc]
        def plan(self, ctx, index, layer, in_shapes):
            fields = super().plan(ctx, index, layer, in_shapes)
            return dict(fields, params=fields["params"][:1])

    _swap(monkeypatch, "dense", NoBiasCounted())
    with pytest.raises(AssertionError):
        check_contract(REGISTRY.definition("dense"), 0)


def test_a_new_example_is_enough_to_be_checked():
    """The contract runs from the registry: an example added to a definition is run without listing it."""
    definition = REGISTRY.definition("relu")
    assert any(case.values[0] is definition for case in CASES)
    assert example({"type": "relu"}).spec()["layers"] == [{"type": "relu"}]


def test_randomize_gives_every_normalisation_a_scale_around_one():
    """A normalisation's scale drawn near 0 would hide a wrong mapping; GroupNorm/LayerNorm/InstanceNorm too."""
    model = torch.nn.Sequential(
        torch.nn.GroupNorm(2, 8), torch.nn.LayerNorm(8), torch.nn.InstanceNorm2d(8, affine=True), torch.nn.BatchNorm2d(8)
    )
    randomize(model, seed=0)
    for module in model:
        assert 0.5 < float(module.weight.mean()) < 1.5, type(module).__name__
