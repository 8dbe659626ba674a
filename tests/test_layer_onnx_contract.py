"""The ``onnx`` hook of every registered layer type, checked over the registry against PyTorch.

For every example of every definition whose types have an ONNX emission, at its own size and
one cell larger on every axis: the spec's ONNX graph passes ``onnx.checker`` with strict full
shape inference, uses standard opset-18 ops only, and, given the weights of a randomised torch
model (read through the torch target's ``read_weights``), computes every layer's output as
that torch model does.  The reference is PyTorch, never cnnspec.

``REGISTRY.missing("onnx")`` lists the types without an emission; the pinned list below may
only shrink.  A deliberately wrong emission fails the contract (negative control).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from cnnspec.engine.plan import resolve  # noqa: E402
from cnnspec.layers import REGISTRY, LayerDefinition  # noqa: E402
from cnnspec.targets.onnx.emit import emit_graph, unsupported_types  # noqa: E402
from cnnspec.targets.onnx.model import check_strict  # noqa: E402
from cnnspec.targets.onnx.weights import from_torch_model  # noqa: E402
from cnnspec.verifier.onnx_export import run_onnx  # noqa: E402
from cnnspec.weights.transfer import randomize  # noqa: E402

ATOL = 2e-5
RTOL = 1e-4

#: The types without an ONNX emission today.  It may only shrink: remove a type when it gets one.
WITHOUT_ONNX: set[str] = set()

CASES = [
    pytest.param(definition, number, id=f"{definition.examples[number].layers[-1]['type']}-{number}")
    for definition in REGISTRY.definitions()
    for number in range(len(definition.examples))
]


def check_onnx_contract(definition: LayerDefinition, number: int) -> None:
    """One example of ``definition``: strict checker, opset-18 ops, every layer as torch computes it."""
    ex = definition.examples[number]
    for size in ex.sizes():
        plan = resolve(ex.spec(size))
        missing = unsupported_types(plan)
        if missing:
            pytest.skip(f"no ONNX emission for {', '.join(missing)} (pinned in WITHOUT_ONNX)")
        from cnnspec.targets.base import get_target

        torch_model = get_target("torch").build(plan)[0]
        randomize(torch_model, seed=1)
        x = (np.random.default_rng(number).normal(size=(2, *plan.input_shape)) * 2).astype(np.float32)
        with torch.no_grad():
            expected = {name: value.numpy() for name, value in torch_model.forward_layers(torch.from_numpy(x)).items()}
        graph = emit_graph(plan)
        check_strict(graph.proto)
        for node in graph.proto.graph.node:
            assert node.domain == "" and onnx.defs.has(node.op_type, ""), node.op_type
        values = dict(zip(graph.layer_names, run_onnx(graph.proto, x, from_torch_model(plan, torch_model))))
        for layer in plan.layers:
            assert values[layer.name].shape == (2, *layer.output_shape), (layer.name, size)
            np.testing.assert_allclose(values[layer.name], expected[layer.name], rtol=RTOL, atol=ATOL,
                                       err_msg=f"{layer.name} ({layer.type}) vs torch, size {size}")


@pytest.mark.frameworks
@pytest.mark.parametrize(("definition", "number"), CASES)
def test_onnx_contract(definition, number):
    check_onnx_contract(definition, number)


def test_the_types_without_onnx_emission_only_shrink():
    missing = set(REGISTRY.missing("onnx"))
    assert missing <= WITHOUT_ONNX, f"types lost their ONNX emission: {sorted(missing - WITHOUT_ONNX)}"
    assert missing == WITHOUT_ONNX, f"these types gained an emission, drop them from WITHOUT_ONNX: " \
                                    f"{sorted(WITHOUT_ONNX - missing)}"


@pytest.mark.frameworks
def test_a_wrong_onnx_emission_fails_the_contract(monkeypatch):
    hooks = dict(REGISTRY._hooks["onnx"])
    hooks["relu"] = lambda b, layer, inputs: b.node("Sigmoid", [inputs[0]], layer.name)
    monkeypatch.setitem(REGISTRY._hooks, "onnx", hooks)
    with pytest.raises(AssertionError, match="relu"):
        check_onnx_contract(REGISTRY.definition("relu"), 0)


def test_an_emission_that_forgets_its_name_is_refused(monkeypatch):
    from cnnspec.errors import CnnspecError

    hooks = dict(REGISTRY._hooks["onnx"])
    hooks["flatten"] = lambda b, layer, inputs: b.node("Flatten", [inputs[0]], b.temp(layer, "flat"), axis=1)
    monkeypatch.setitem(REGISTRY._hooks, "onnx", hooks)
    definition = REGISTRY.definition("flatten")
    with pytest.raises(CnnspecError, match="not the layer's name"):
        emit_graph(resolve(definition.examples[0].spec()))
