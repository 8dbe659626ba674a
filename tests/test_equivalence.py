"""The generated PyTorch and Keras models compute the same numbers, layer by layer.

For every case of ``equivalence_cases.CASES`` both models are built from the spec, the
torch model gets seeded random weights, the weights are transferred to Keras, and every
spec layer's output is compared (torch ``forward_layers`` against the outputs of the Keras
layers with the same names; flat outputs after reordering by ``flat_segments``).  Then
the other way round: random Keras weights are transferred to torch and compared again.
The references are the frameworks themselves, so a wrong layout, padding or
activation in an emitter or in the transfer fails here.
"""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import cnnspec  # noqa: E402
from cnnspec.targets.build import build  # noqa: E402
from cnnspec.spec.models import layer_types  # noqa: E402
from cnnspec.weights.transfer import flat_permutation, randomize, transfer_weights  # noqa: E402

from equivalence_cases import CASE_IDS, CASES_BY_ID, INPUT_OFFSETS, INPUT_SCALES, covered_layer_types  # noqa: E402

# As the layer contract's: a normalisation over a few nearly equal values (layer_norm over 2 channels
# at 0.774 and 0.783) loses ~1e-5 to float32 cancellation in x - mean in either framework.
ATOL = 2e-5
RTOL = 1e-5
BATCH = 2


@functools.lru_cache(maxsize=None)
def models_of(case_id: str):
    """(plan, torch model, keras model, keras probe returning every spec layer's output), built once per case."""
    plan = cnnspec.resolve(CASES_BY_ID[case_id])
    torch_model = build(plan, "torch")
    keras_model = build(plan, "keras")
    probe = keras.Model(keras_model.input, [keras_model.get_layer(layer.name).output for layer in plan.layers])
    return plan, torch_model, keras_model, probe


def input_of(case_id: str, plan, seed: int = 0) -> np.ndarray:
    """A seeded channels-first input with negative values (shifted / scaled for some cases)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, *plan.input_shape)).astype(np.float32)
    return (x * INPUT_SCALES.get(case_id, 1.0) + INPUT_OFFSETS.get(case_id, 0.0)).astype(np.float32)


def to_channels_last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, 1, -1))


def torch_outputs(torch_model, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outputs = torch_model.forward_layers(torch.from_numpy(x))
        final = torch_model(torch.from_numpy(x))
    result = {name: value.numpy() for name, value in outputs.items()}
    result["__final__"] = final.numpy()
    return result


def keras_outputs(plan, keras_model, probe, x: np.ndarray) -> dict[str, np.ndarray]:
    x_last = to_channels_last(x)
    values = probe(x_last, training=False)
    if len(plan.layers) == 1:  # a one-output Keras model returns the tensor, not a list
        values = [values]
    result = {layer.name: keras.ops.convert_to_numpy(v) for layer, v in zip(plan.layers, values)}
    result["__final__"] = keras.ops.convert_to_numpy(keras_model(x_last, training=False))
    return result


def as_keras_layout(layer_plan, torch_value: np.ndarray) -> np.ndarray:
    """A torch layer output in Keras' layout: channels last, or flat features reordered."""
    if layer_plan.flat_segments is not None:
        return torch_value[:, flat_permutation(layer_plan.flat_segments)]
    return to_channels_last(torch_value)


def layer_differences(plan, torch_values, keras_values) -> list[tuple[str, float, bool]]:
    """Per spec layer (in spec order) and for the final output: (name, max abs diff, within tolerance)."""
    rows = []
    for layer in plan.layers + (None,):
        name = "__final__" if layer is None else layer.name
        reference = as_keras_layout(layer or plan.layers[-1], torch_values[name])
        actual = keras_values[name]
        if reference.shape != actual.shape:
            rows.append((f"{name} (shape torch->{reference.shape} vs keras {actual.shape})", float("inf"), False))
            continue
        diff = np.abs(reference.astype(np.float64) - actual.astype(np.float64))
        ok = bool(np.all(diff <= ATOL + RTOL * np.abs(reference)))
        rows.append((name, float(diff.max()) if diff.size else 0.0, ok))
    return rows


def compare_models(case_id: str, seed: int = 0):
    plan, torch_model, keras_model, probe = models_of(case_id)
    x = input_of(case_id, plan, seed)
    return layer_differences(plan, torch_outputs(torch_model, x), keras_outputs(plan, keras_model, probe, x))


def first_divergent(rows) -> str | None:
    for name, _, ok in rows:
        if not ok:
            return name
    return None


def assert_all_equal(rows, what: str) -> float:
    bad = [(name, diff) for name, diff, ok in rows if not ok]
    worst = max(diff for _, diff, _ in rows)
    assert not bad, (
        f"{what}: first divergent layer '{bad[0][0]}' (max abs diff {bad[0][1]:.3g}); all failing: "
        + ", ".join(f"{name} {diff:.3g}" for name, diff in bad)
        + f"; tolerance atol={ATOL} rtol={RTOL}"
    )
    return worst


def randomize_keras_with_normals(keras_model, seed: int) -> None:
    """Seeded normals for every Keras weight (variances kept positive), set with set_weights."""
    rng = np.random.default_rng(seed)
    values = []
    for variable in keras_model.weights:
        shape = tuple(variable.shape)
        if variable.name in ("moving_variance", "variance"):  # BatchNorm's and Keras Normalization's
            values.append(rng.uniform(0.5, 2.0, size=shape).astype(np.float32))
        elif "float" not in str(variable.dtype):
            values.append(keras.ops.convert_to_numpy(variable.value))
        else:
            scale = 1.0 / np.sqrt(max(int(np.prod(shape[:-1])), 1)) if len(shape) >= 2 else 0.3
            values.append(rng.normal(0.0, scale, size=shape).astype(np.float32))
    keras_model.set_weights(values)
    for layer in keras_model.layers:  # Keras Normalization divides by a copy taken in finalize_state()
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


def test_cases_cover_every_layer_type():
    assert set(layer_types()) - covered_layer_types() == set()


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_torch_and_keras_agree_on_every_layer(case_id):
    plan, torch_model, keras_model, _ = models_of(case_id)

    randomize(torch_model, seed=1)
    transfer_weights(torch_model, keras_model, plan)
    worst_forward = assert_all_equal(compare_models(case_id, seed=2), f"{case_id} torch->keras")
    with torch.no_grad():
        final = torch_model(torch.from_numpy(input_of(case_id, plan, seed=2))).numpy()
    assert np.isfinite(final).all() and np.ptp(final) > 1e-3, f"{case_id}: degenerate output, the comparison means little"

    randomize_keras_with_normals(keras_model, seed=3)
    transfer_weights(keras_model, torch_model, plan)
    worst_back = assert_all_equal(compare_models(case_id, seed=4), f"{case_id} keras->torch")
    print(f"[equivalence] {case_id}: max abs diff torch->keras {worst_forward:.3g}, keras->torch {worst_back:.3g}")


def test_randomized_weights_are_not_degenerate():
    """The comparison would be weak if randomize left defaults (gamma 1, slope 0.25, zero biases)."""
    plan, torch_model, _, _ = models_of("flatten_bn_dense")
    randomize(torch_model, seed=5)
    state = torch_model.state_dict()
    assert not torch.allclose(state["bn_flat.weight"], torch.ones_like(state["bn_flat.weight"]))
    assert state["bn_flat.running_var"].min() >= 0.5 and state["bn_flat.running_var"].max() <= 2.0
    assert state["bn_flat.running_mean"].abs().sum() > 0
    assert not torch.allclose(state["prelu_flat.weight"], torch.full_like(state["prelu_flat.weight"], 0.25))
    assert state["conv.bias"].abs().sum() > 0
    again = type(torch_model)()
    randomize(again, seed=5)
    assert all(torch.equal(state[key], value) for key, value in again.state_dict().items())


# --- negative controls: the comparison must notice a wrong transfer ---------------------------------


def test_dense_without_flatten_permutation_differs():
    plan, torch_model, keras_model, _ = models_of("flatten_dense")
    randomize(torch_model, seed=6)
    transfer_weights(torch_model, keras_model, plan)
    assert first_divergent(compare_models("flatten_dense")) is None

    # Copy fc's weight the naive way: transposed, rows still in PyTorch's C,H,W order.
    naive = torch_model.fc.weight.detach().numpy().T
    keras_model.get_layer("fc").kernel.assign(naive)
    rows = compare_models("flatten_dense")
    diffs = {name: diff for name, diff, _ in rows}
    assert first_divergent(rows) == "fc"
    assert diffs["fc"] > 1e-2 and diffs["__final__"] > 1e-3


@pytest.mark.parametrize("case_id,layer_name,variable", [
    ("residual_add", "branch", "kernel"),
    ("residual_add", "stem_bn", "moving_mean"),
    ("residual_add", "head", "kernel"),
    ("separable", "sep_nobias", "pointwise_kernel"),
    ("model_1d", "act", "alpha"),
])
def test_perturbed_weight_is_the_first_divergent_layer(case_id, layer_name, variable):
    plan, torch_model, keras_model, _ = models_of(case_id)
    randomize(torch_model, seed=7)
    transfer_weights(torch_model, keras_model, plan)
    assert first_divergent(compare_models(case_id)) is None

    target = next(v for v in keras_model.get_layer(layer_name).weights if v.name == variable)
    values = keras.ops.convert_to_numpy(target.value).copy()
    values.reshape(-1)[values.size // 2] += 0.5
    target.assign(values)
    assert first_divergent(compare_models(case_id)) == layer_name


def test_mnist_example_agrees():
    from pathlib import Path

    spec_path = Path(__file__).resolve().parent.parent / "examples" / "mnist_convnet.yaml"
    plan = cnnspec.resolve(spec_path)
    torch_model, keras_model = build(plan, "torch"), build(plan, "keras")
    assert sum(p.numel() for p in torch_model.parameters()) == keras_model.count_params() == 104202
    randomize(torch_model, seed=8)
    transfer_weights(torch_model, keras_model, spec_path)
    x = np.random.default_rng(9).normal(size=(2, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    actual = keras.ops.convert_to_numpy(keras_model(to_channels_last(x), training=False))
    assert np.abs(expected - actual).max() < 1e-5, np.abs(expected - actual).max()
