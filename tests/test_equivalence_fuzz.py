"""Property: for any valid spec, the generated PyTorch and Keras models agree layer by layer.

Hypothesis draws random valid specs across the whole layer catalog (``spec_strategies``).
For each: both models are built from their generated source, the torch model gets seeded
random weights, they are transferred to Keras, and a seeded input with negative values runs
through both.  Every spec layer's output shape must be the plan's (channels-first in torch,
channels-last in Keras) and every layer's output must agree (flat outputs reordered by
``flat_segments``).  On some draws the weights also go the other way (random Keras weights
-> torch).  The frameworks themselves are the reference: a wrong padding, layout or
activation in an emitter, the plan or the transfer fails here, naming the layer.

``REGRESSION_SPECS`` holds minimal specs of bugs this fuzzer found; they run every time.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import cnnspec  # noqa: E402
from cnnspec.targets.build import build  # noqa: E402
from cnnspec.weights.transfer import flat_permutation, randomize, transfer_weights  # noqa: E402

from spec_strategies import valid_specs  # noqa: E402

BATCH = 2
ATOL = 1e-4  # scaled by the layer's largest reference magnitude (at least 1)
RTOL = 1e-4
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]
# The full-size run is derandomized (the same 150-200 specs every time, so CI cannot turn red by chance);
# CNNSPEC_FUZZ_CAMPAIGN=1 draws new ones for a bug hunt.
CAMPAIGN = os.environ.get("CNNSPEC_FUZZ_CAMPAIGN") == "1"


def _spec_text(spec: dict) -> str:
    return json.dumps(spec, sort_keys=False)


def _torch_layer_outputs(torch_model, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    with torch.no_grad():
        outputs = torch_model.forward_layers(torch.from_numpy(x))
        final = torch_model(torch.from_numpy(x))
    return {name: value.numpy() for name, value in outputs.items()}, final.numpy()


def _keras_layer_outputs(plan, probe, keras_model, x: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    values = probe(x_last, training=False)
    if not isinstance(values, (list, tuple)):
        values = [values]
    outputs = {layer.name: keras.ops.convert_to_numpy(v) for layer, v in zip(plan.layers, values)}
    return outputs, keras.ops.convert_to_numpy(keras_model(x_last, training=False))


def _in_keras_layout(layer_plan, torch_value: np.ndarray) -> np.ndarray:
    if layer_plan.flat_segments is not None:
        return torch_value[:, flat_permutation(layer_plan.flat_segments)]
    return np.ascontiguousarray(np.moveaxis(torch_value, 1, -1)) if torch_value.ndim > 2 else torch_value


def _layer_problems(plan, torch_values, torch_final, keras_values, keras_final) -> list[str]:
    """Every disagreement (shape or value), in spec order; empty when the models agree."""
    problems = []
    if list(torch_values) != [layer.name for layer in plan.layers]:
        problems.append(f"torch forward_layers keys {list(torch_values)} are not the spec names in order")
        return problems
    rows = [(layer, torch_values[layer.name], keras_values[layer.name]) for layer in plan.layers]
    rows.append((plan.layers[-1], torch_final, keras_final))
    for position, (layer, torch_value, keras_value) in enumerate(rows):
        label = "final output" if position == len(plan.layers) else f"layer '{layer.name}' ({layer.type})"
        if torch_value.shape != (BATCH, *layer.output_shape):
            problems.append(f"{label}: torch shape {torch_value.shape[1:]} != plan {layer.output_shape}")
            continue
        if keras_value.shape != (BATCH, *layer.output_shape_last):
            problems.append(f"{label}: keras shape {keras_value.shape[1:]} != plan {layer.output_shape_last}")
            continue
        reference = _in_keras_layout(layer, torch_value).astype(np.float64)
        actual = keras_value.astype(np.float64)
        if not (np.isfinite(reference).all() and np.isfinite(actual).all()):
            if not np.array_equal(reference, actual, equal_nan=True):
                problems.append(f"{label}: non-finite values differ")
            continue
        diff = np.abs(reference - actual)
        scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
        if not np.all(diff <= ATOL * scale + RTOL * np.abs(reference)):
            problems.append(f"{label}: max abs diff {diff.max():.3g} (output scale {scale:.3g})")
    return problems


def _declared_shape(layer_plan, open_output: bool) -> tuple:
    """The Keras symbolic shape the plan predicts: None on the axes that follow an open input size."""
    if len(layer_plan.output_shape) == 1:
        return (None,) if open_output else layer_plan.output_shape_last
    spatial = tuple(None if not size.is_fixed else size.constant for size in layer_plan.sizes)
    return (*spatial, layer_plan.output_shape[0])


def _other_sizes(spec: dict, plan) -> list:
    """For an open spec, the plans at a few other sizes the model accepts (odd and even, smaller and larger)."""
    if not plan.is_open:
        return []
    plans = []
    for delta in (1, -1, 4):
        size = tuple(max(n + delta, 1) if is_open else n for n, is_open in zip(plan.input_shape[1:], plan.open_axes))
        try:
            plans.append(cnnspec.resolve(spec, input_size=size))
        except cnnspec.SpecError:
            continue  # a size this model cannot take (a collapse, a join that needs other sizes)
    return plans


def _normalises_single_values(plan) -> bool:
    """Whether a normalisation of ``plan`` normalises groups of one value (a group_norm of one
    channel per group on a 1x1x1 map, found by this fuzzer at an open spec's smaller size).  Its
    output is then beta exactly, plus each framework's rounding noise amplified by 1/sqrt(eps)
    (Keras computes x*s - mean*s): there is nothing to compare."""
    for layer in plan.layers:
        shape = layer.input_shape
        positions = math.prod(shape[1:])
        if layer.type == "group_norm":
            count = shape[0] // layer.spec.groups * positions
        elif layer.type == "instance_norm":
            count = positions
        elif layer.type == "layer_norm":
            count = shape[0]
        else:
            continue
        if count == 1:
            return True
    return False


def check_equivalence(spec: dict, seed: int, *, input_offset: float = 0.0, keras_to_torch: bool = True) -> None:
    """Build both models of ``spec``, move random weights across and compare every layer; assert on failure.

    An open-size spec is built once and compared at its reference size and at the other sizes it accepts.
    """
    keras.backend.clear_session()
    plan = cnnspec.resolve(spec)
    torch_model = build(plan, "torch")
    keras_model = build(plan, "keras")
    open_flat: set[str] = set()
    for layer in plan.layers:
        symbolic = tuple(keras_model.get_layer(layer.name).output.shape[1:])
        is_open_flat = len(layer.output_shape) == 1 and symbolic == (None,)
        if is_open_flat:
            open_flat.add(layer.name)
        expected = _declared_shape(layer, is_open_flat) if plan.is_open else layer.output_shape_last
        assert symbolic == expected, (
            f"keras layer '{layer.name}' declares shape {symbolic}, plan says {expected}\nspec: {_spec_text(spec)}"
        )
    probe = keras.Model(keras_model.input, [keras_model.get_layer(layer.name).output for layer in plan.layers])

    rng = np.random.default_rng(seed)
    directions = [("torch->keras", torch_model, keras_model)]
    if keras_to_torch:
        directions.append(("keras->torch", keras_model, torch_model))
    for step, (direction, source, destination) in enumerate(directions):
        randomize(source, seed=seed + step)
        transfer_weights(source, destination, plan)
        for sized_plan in [plan, *_other_sizes(spec, plan)]:
            if _normalises_single_values(sized_plan):
                continue
            x = (rng.normal(size=(BATCH, *sized_plan.input_shape)) + input_offset).astype(np.float32)
            if not (x < 0).any():  # a tiny input (2 x 1 x 3 values) can draw no negative value; always exercise one
                x.flat[0] = -1.0 - abs(x.flat[0])
            torch_values, torch_final = _torch_layer_outputs(torch_model, x)
            keras_values, keras_final = _keras_layer_outputs(sized_plan, probe, keras_model, x)
            problems = _layer_problems(sized_plan, torch_values, torch_final, keras_values, keras_final)
            at = f" at input size {sized_plan.input_shape[1:]}" if plan.is_open else ""
            assert not problems, (
                f"{direction}{at}: first divergent: {problems[0]}\nall: {problems}\nspec: {_spec_text(spec)}"
            )


def _run_drawn(spec: dict, data) -> None:
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    offset = data.draw(st.sampled_from([0.0, 0.0, 0.0, -3.0]), label="input_offset")  # all-negative inputs sometimes
    both_ways = data.draw(st.integers(0, 2), label="direction") == 0
    check_equivalence(spec, seed, input_offset=offset, keras_to_torch=both_ways)


@settings(derandomize=True, max_examples=25, deadline=None, suppress_health_check=SUPPRESSED)
@given(spec=valid_specs(max_layers=5, open_sizes=True), data=st.data())
def test_random_specs_agree(spec, data):
    _run_drawn(spec, data)


@pytest.mark.slow
@settings(derandomize=not CAMPAIGN, max_examples=200, deadline=None, suppress_health_check=SUPPRESSED, print_blob=True)
@given(spec=valid_specs(max_layers=8, open_sizes=True), data=st.data())
def test_random_specs_agree_slow(spec, data):
    _run_drawn(spec, data)


# --- regressions: minimal specs of bugs found by this fuzzer ---------------------------------------

REGRESSION_SPECS: list[tuple[str, dict]] = [
    # Model 'f' gave the torch class name 'F', which shadowed `import torch.nn.functional as F`: every F.* call
    # (inline activations, the CountedAvgPool helper) failed.  Fixed in build.class_name ('ModelF').
    ("model_named_f", {"cnnspec": 1, "name": "f", "input": {"channels": 2, "size": [7]}, "layers": [
        {"type": "conv1d", "name": "conv", "filters": 3, "kernel_size": 3, "activation": "relu"},
        {"type": "avg_pool1d", "name": "pool", "pool_size": 2, "padding": 1, "count_include_pad": False}]}),
    # PyTorch's avg_pool3d refuses an input smaller than the window *before* its own padding ("input image
    # (T: 2 H: 2 W: 2) smaller than kernel size"), though the padded input fits.  Fixed in emit_torch.emit_avg_pool
    # (explicit padding instead of the native one for such 3-D inputs).
    ("avg_pool3d_window_larger_than_input", {"cnnspec": 1, "input": {"channels": 1, "size": [2, 2, 2]}, "layers": [
        {"type": "avg_pool3d", "name": "pool", "pool_size": 3, "stride": 1, "padding": "same"}]}),
    ("avg_pool3d_window_larger_than_input_counted", {"cnnspec": 1, "input": {"channels": 2, "size": [2, 3, 2]}, "layers": [
        {"type": "avg_pool3d", "name": "pool", "pool_size": 3, "stride": [1, 2, 1], "padding": 1},
        {"type": "avg_pool3d", "name": "pool_ceil", "inputs": ["input"], "pool_size": 3, "stride": 2, "padding": 1,
         "ceil_mode": True},
        {"type": "concat", "name": "joined", "inputs": ["pool", "pool_ceil"]}]}),
]


@pytest.mark.parametrize("spec", [s for _, s in REGRESSION_SPECS], ids=[i for i, _ in REGRESSION_SPECS])
def test_regressions(spec):
    check_equivalence(spec, seed=0, input_offset=-1.0)


@pytest.mark.parametrize("name", sorted(vars(torch.nn.Module())))
def test_module_instance_attributes_cannot_name_layers(name):
    """Regression: a layer named '_modules' / '_parameters' / ... passed validation, then broke the torch model
    (``self._modules = nn.Conv1d(...)`` replaces nn.Module's own bookkeeping).  Now validation refuses it."""
    spec = {"cnnspec": 1, "input": {"channels": 2, "size": [4]}, "layers": [
        {"type": "conv1d", "name": name, "filters": 2, "kernel_size": 1}, {"type": "relu", "name": "act"}]}
    with pytest.raises(cnnspec.SpecError):
        cnnspec.load_spec(spec)


def test_checker_notices_a_wrong_weight():
    """Negative control: the comparison must fail when one transferred weight is off."""
    spec = {"cnnspec": 1, "input": {"channels": 2, "size": [6, 5]}, "layers": [
        {"type": "conv2d", "name": "conv", "filters": 3, "kernel_size": 3, "padding": "same", "stride": 2},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "fc", "units": 4},
    ]}
    plan = cnnspec.resolve(spec)
    torch_model, keras_model = build(plan, "torch"), build(plan, "keras")
    randomize(torch_model, seed=3)
    transfer_weights(torch_model, keras_model, plan)
    probe = keras.Model(keras_model.input, [keras_model.get_layer(layer.name).output for layer in plan.layers])
    x = np.random.default_rng(4).normal(size=(BATCH, *plan.input_shape)).astype(np.float32)
    assert _layer_problems(plan, *_torch_layer_outputs(torch_model, x), *_keras_layer_outputs(plan, probe, keras_model, x)) == []
    kernel = keras_model.get_layer("fc").kernel
    values = keras.ops.convert_to_numpy(kernel.value).copy()
    values[0, 0] += 0.5
    kernel.assign(values)
    problems = _layer_problems(plan, *_torch_layer_outputs(torch_model, x), *_keras_layer_outputs(plan, probe, keras_model, x))
    assert problems and problems[0].startswith("layer 'fc'")
