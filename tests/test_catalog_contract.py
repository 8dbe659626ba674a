"""The model-zoo catalog types through both targets, from their registered examples.

For every example of every type added for the model zoos, at its own size and one larger on
every axis (odd and even sizes): both targets build it, the parameter counts equal the
frameworks' own (``count_params()``, ``sum(p.numel())``), random torch weights moved to Keras
give the same output and random Keras weights moved to torch too, and weights survive
torch -> keras -> torch exactly.  (The registry's contract test runs the same checks over every
type once it is merged; this file keeps the catalog covered on its own.)
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
from cnnspec.layers import REGISTRY  # noqa: E402
from cnnspec.targets.build import build  # noqa: E402
from cnnspec.weights.transfer import flat_permutation, randomize, transfer_weights  # noqa: E402

pytestmark = pytest.mark.frameworks

CATALOG_TYPES = (
    "multiply", "subtract", "maximum", "minimum", "average", "add", "identity", "rescale", "scale", "normalize",
    "layer_norm", "group_norm", "instance_norm", "channel_shuffle", "channel_slice", "crop1d", "crop2d", "crop3d",
    "pad1d", "pad2d", "pad3d", "layer_scale", "stochastic_depth", "adaptive_avg_pool", "adaptive_max_pool", "resize",
    "batch_norm",
)
DEFINITIONS = list({id(REGISTRY.definition(t)): REGISTRY.definition(t) for t in CATALOG_TYPES}.values())
CASES = [
    pytest.param(definition, number, id=f"{definition.types[0]}-{number}")
    for definition in DEFINITIONS
    for number in range(len(definition.examples))
]
ATOL, RTOL = 2e-5, 1e-4


def _torch_output(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _keras_output(model, plan, x: np.ndarray) -> np.ndarray:
    y = np.asarray(model(np.ascontiguousarray(np.moveaxis(x, 1, -1)), training=False))
    last = plan.layers[-1]
    if len(last.output_shape) > 1:
        return np.moveaxis(y, -1, 1)
    if last.flat_segments is not None:
        return y[:, np.argsort(flat_permutation(last.flat_segments))]
    return y


@pytest.mark.parametrize("definition, number", CASES)
def test_catalog_contract(definition, number):
    ex = definition.examples[number]
    for size in (tuple(ex.size), tuple(n + 1 for n in ex.size)):
        plan = resolve(ex.spec(size))
        layer = plan.layers[-1]
        torch_model, keras_model = build(plan, "torch"), build(plan, "keras")
        assert sum(p.numel() for p in torch_model.parameters()) == plan.trainable_params
        assert keras_model.count_params() == plan.total_params

        x = (np.random.default_rng(number).normal(size=(2, *plan.input_shape)) * 2).astype(np.float32)
        randomize(torch_model, seed=1)
        transfer_weights(torch_model, keras_model, plan)
        expected = _torch_output(torch_model, x)
        got = _keras_output(keras_model, plan, x)
        assert got.shape == expected.shape == (2, *layer.output_shape)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL, err_msg=f"torch -> keras, size {size}")

        randomize(keras_model, seed=2)
        transfer_weights(keras_model, torch_model, plan)
        np.testing.assert_allclose(_torch_output(torch_model, x), _keras_output(keras_model, plan, x), rtol=RTOL, atol=ATOL,
                                   err_msg=f"keras -> torch, size {size}")

        fresh = build(plan, "torch")
        transfer_weights(keras_model, fresh, plan)
        for (name, before), after in zip(torch_model.state_dict().items(), fresh.state_dict().values()):
            assert torch.equal(before, after), name
