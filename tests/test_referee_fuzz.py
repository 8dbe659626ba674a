"""Property: on any valid spec the referee (the spec's own ONNX graph) agrees with both frameworks, and verify passes.

Hypothesis draws random valid specs across the whole layer catalog (``spec_strategies``, the
same strategy as test_equivalence_fuzz.py).  For each, the generated torch model gets seeded
weights (Keras gets them by transfer); the spec's ONNX graph, given the weights read from one
of the models, must reproduce every layer of torch's and Keras' own forward passes.  A smaller
run puts drawn specs through the whole of ``cnnspec.verify``: it must pass with the referee
agreeing with both sides, so the referee changes no verdict of a right model.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")

from spec_strategies import valid_specs

import cnnspec
from cnnspec.targets.build import build
from cnnspec.targets.onnx.emit import OnnxUnsupported, emit_graph, unsupported_types
from cnnspec.targets.onnx.weights import from_keras_model, from_torch_model
from cnnspec.verifier.compare import to_channels_first
from cnnspec.verifier.onnx_export import run_onnx
from cnnspec.weights.transfer import randomize, transfer_weights

pytestmark = [pytest.mark.frameworks, pytest.mark.onnx]

BATCH = 2
ATOL = RTOL = 1e-4  # ATOL scaled by the layer's largest reference magnitude (at least 1), as in the equivalence fuzz
SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large]
# The full-size run is derandomized (the same 150-200 specs every time, so CI cannot turn red by chance);
# CNNSPEC_FUZZ_CAMPAIGN=1 draws new ones for a bug hunt.
CAMPAIGN = os.environ.get("CNNSPEC_FUZZ_CAMPAIGN") == "1"


def _close(reference: np.ndarray, actual: np.ndarray) -> bool:
    if reference.shape != actual.shape:
        return False
    if not (np.isfinite(reference).all() and np.isfinite(actual).all()):
        return np.array_equal(reference, actual, equal_nan=True)
    scale = max(1.0, float(np.abs(reference).max(initial=0.0)))
    return bool(np.all(np.abs(reference.astype(np.float64) - actual) <= ATOL * scale + RTOL * np.abs(reference)))


def check_referee(spec: dict, seed: int, input_offset: float, weights_from: str) -> None:
    keras.backend.clear_session()
    plan = cnnspec.resolve(spec)
    if unsupported_types(plan):  # no referee for these (pinned in test_layer_onnx_contract.WITHOUT_ONNX)
        return
    torch_model, keras_model = build(plan, "torch"), build(plan, "keras")
    randomize(torch_model, seed)
    transfer_weights(torch_model, keras_model, plan)
    x = (np.random.default_rng(seed).normal(size=(BATCH, *plan.input_shape)) + input_offset).astype(np.float32)
    weights = from_torch_model(plan, torch_model) if weights_from == "torch" else from_keras_model(plan, keras_model)
    try:
        graph = emit_graph(plan)
    except OnnxUnsupported:  # a layer whose fields have no ONNX form (a 3-D bicubic resize): no referee
        return
    referee = dict(zip(graph.layer_names, run_onnx(graph.proto, x, weights)))
    with torch.no_grad():
        torch_values = {k: v.numpy() for k, v in torch_model.forward_layers(torch.from_numpy(x)).items()}
    probe = keras.Model(keras_model.input, [keras_model.get_layer(layer.name).output for layer in plan.layers])
    outputs = probe(np.ascontiguousarray(np.moveaxis(x, 1, -1)), training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]  # a one-output probe returns the tensor
    for layer, keras_value in zip(plan.layers, outputs):
        keras_value = to_channels_first(keras.ops.convert_to_numpy(keras_value), layer)
        for side, value in (("torch", torch_values[layer.name]), ("keras", keras_value)):
            assert _close(value, referee[layer.name]), (
                f"referee departs from {side} at '{layer.name}' (weights from {weights_from})\nspec: {json.dumps(spec)}")


@settings(derandomize=True, max_examples=25, deadline=None, suppress_health_check=SUPPRESSED)
@given(spec=valid_specs(max_layers=5), data=st.data())
def test_referee_agrees_with_both_frameworks_on_random_specs(spec, data):
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    offset = data.draw(st.sampled_from([0.0, 0.0, -3.0]), label="input_offset")
    check_referee(spec, seed, offset, data.draw(st.sampled_from(["torch", "keras"]), label="weights_from"))


@settings(derandomize=True, max_examples=5, deadline=None, suppress_health_check=SUPPRESSED)
@given(spec=valid_specs(max_layers=5))
def test_verify_passes_random_specs_with_the_referee_agreeing(spec):
    keras.backend.clear_session()
    report = cnnspec.verify(spec)
    assert report.ok, report.render(use_rich=False) + "\nspec: " + json.dumps(spec)
    missing = unsupported_types(cnnspec.resolve(spec))
    if missing:
        assert report.referee is None and report.referee_note.startswith("no referee: no ONNX emission")
        return
    assert report.referee.verdict == "torch and keras both agree with the spec's ONNX reference"


@pytest.mark.slow
@settings(derandomize=not CAMPAIGN, max_examples=150, deadline=None, suppress_health_check=SUPPRESSED, print_blob=True)
@given(spec=valid_specs(max_layers=8), data=st.data())
def test_referee_agrees_with_both_frameworks_on_random_specs_slow(spec, data):
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    offset = data.draw(st.sampled_from([0.0, 0.0, -3.0]), label="input_offset")
    check_referee(spec, seed, offset, data.draw(st.sampled_from(["torch", "keras"]), label="weights_from"))
