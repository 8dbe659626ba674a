"""The layer registry refuses incomplete or contradictory definitions when they are registered,
and everything that lists layer types is derived from it."""

from __future__ import annotations

from typing import Literal

import pytest

from cnnspec.layers import REGISTRY, LayerDefinition, RegistrationError, Registry, example
from cnnspec.spec.fields import LayerBase


class Gate(LayerBase):
    type: Literal["gate", "gate_twice"]


class _Complete(LayerDefinition):
    model = Gate
    family = "gate"
    hint_text = "gate: ..."
    examples = (example({"type": "gate"}), example({"type": "gate_twice"}))

    def plan(self, ctx, index, layer, in_shapes):
        return dict(output_shape=in_shapes[0], param_formula="no parameters")

    def torch(self, layer, inputs):
        raise NotImplementedError

    def keras(self, layer, ctx):
        raise NotImplementedError


def test_a_complete_definition_registers_and_is_found():
    registry = Registry()
    registry.register(_Complete)
    assert registry.types() == ["gate", "gate_twice"]
    assert registry.family_of("gate_twice") == "gate"
    registry.check_complete()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"torch": LayerDefinition.torch}, "missing torch"),
        ({"keras": LayerDefinition.keras, "plan": LayerDefinition.plan}, "missing plan, keras"),
        ({"hint_text": ""}, "no divergence hint"),
        ({"examples": (example({"type": "gate"}),)}, "no example for ['gate_twice']"),
        ({"types": ("gate", "gat")}, "types ['gat'] are not literals of Gate.type"),
        ({"words": {"gating": "relu"}}, "word 'gating' points at 'relu'"),
        ({"family": ""}, "no 'family'"),
        ({"arity": "two"}, "arity must be"),
    ],
)
def test_a_half_registered_type_is_refused(change, message):
    broken = type("Broken", (_Complete,), dict(change))
    with pytest.raises(RegistrationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Registry().register(broken)


def test_a_model_literal_without_a_definition_is_refused():
    registry = Registry()
    registry.register(type("OnlyGate", (_Complete,), {"types": ("gate",)}))
    with pytest.raises(RegistrationError, match=r"declares types \['gate_twice'\] that no definition registers"):
        registry.check_complete()


def test_a_type_cannot_be_registered_twice():
    with pytest.raises(RegistrationError, match="'relu' is already registered"):
        REGISTRY.register(type("Relu2", (_Complete,), {"model": REGISTRY.definition("relu").model,
                                                       "examples": tuple(example({"type": t}) for t in REGISTRY.definition("relu").types)}))


def test_everything_that_lists_types_comes_from_the_registry():
    from cnnspec.load.loader import TYPE_HINTS
    from cnnspec.spec.models import Layer, layer_types
    from cnnspec.targets.keras.emit import EMITTERS as KERAS
    from cnnspec.targets.torch.emit import EMITTERS as TORCH

    assert layer_types() == REGISTRY.types()
    assert set(Layer.__origin__.__args__) == set(REGISTRY.models())
    for layer_type in REGISTRY.types():
        definition = REGISTRY.definition(layer_type)
        assert TORCH[layer_type] == definition.torch
        assert KERAS[layer_type] == definition.keras
    assert TYPE_HINTS == REGISTRY.words()


def test_merge_types_each_plan_their_own_shape():
    """The old misrouting: a merge type planned as concat. Every type has its own planner now."""
    from cnnspec.engine.plan import resolve

    spec = {"cnnspec": 1, "input": {"channels": 2, "size": [4, 4]}, "layers": [
        {"type": "relu", "name": "a"}, {"type": "add", "inputs": ["input", "a"]}]}
    assert resolve(spec).output_shape == (2, 4, 4)
    spec["layers"][1]["type"] = "concat"
    assert resolve(spec).output_shape == (4, 4, 4)
    spec["layers"][1]["type"] = "multiply_not_registered"
    from cnnspec.errors import SpecError

    with pytest.raises(SpecError, match="unknown layer type 'multiply_not_registered'"):
        resolve(spec)


def test_attached_hooks_are_found_and_missing_ones_listed():
    registry = Registry()
    registry.register(_Complete)
    assert registry.missing("onnx") == ["gate", "gate_twice"]
    registry.attach("onnx", "gate")(lambda layer: "Gate")
    assert registry.missing("onnx") == ["gate_twice"]
    assert registry.hook("onnx", "gate")(None) == "Gate"


# Layers that exercise every way the union can refuse one: no tag, an unknown or non-string
# tag, not a mapping, and each kind of field error inside a known type.
_LAYER_INPUTS = [
    {"type": "conv2d", "filters": 4, "kernel_size": 3},
    {"type": "conv2d", "filters": "x", "kernel_size": 3, "bogus": 1},
    {"type": "conv2d"},
    {"type": "nonsense"},
    {"type": 3},
    {"type": None},
    {"type": ["conv2d"]},
    {"filters": 3},
    {},
    "conv2d",
    3,
    None,
    ["conv2d"],
    {"type": "relu", "name": "if"},
    {"type": "dense", "units": 0},
    {"type": "max_pool2d", "pool_size": [2, 2, 2, 2]},
    {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "sme"},
    {"type": "batch_norm", "epsilon": -1},
    {"type": "add", "inputs": "a"},
]


@pytest.mark.parametrize("layer", _LAYER_INPUTS, ids=repr)
def test_layer_by_layer_validation_gives_the_discriminated_unions_errors(layer):
    """ModelSpec validates each layer with its own type's model; pydantic's tagged union over
    every type (what the JSON Schema publishes) must accept and refuse exactly the same."""
    from pydantic import ValidationError, create_model

    from cnnspec.spec.models import Layer, ModelSpec

    union = create_model("ModelSpec", __base__=ModelSpec, layers=(list[Layer], ModelSpec.model_fields["layers"]))
    document = {"cnnspec": 1, "input": {"channels": 3, "size": [8, 8]}, "layers": [{"type": "relu"}, layer]}

    def outcome(model):
        try:
            return model.model_validate(document).model_dump()
        except ValidationError as error:
            tag = layer.get("type") if isinstance(layer, dict) else None
            return [(e["type"], tuple(part for part in e["loc"] if part != tag), e["msg"],
                     {key: str(value) for key, value in e.get("ctx", {}).items()})
                    for e in error.errors(include_url=False)]

    assert outcome(ModelSpec) == outcome(union)


def test_reading_a_spec_compiles_only_the_layer_types_it_uses():
    import json
    import subprocess
    import sys

    probe = (
        "import cnnspec\n"
        "from cnnspec.layers import REGISTRY\n"
        "cnnspec.load_spec({'cnnspec': 1, 'input': {'channels': 3, 'size': [8, 8]},"
        " 'layers': [{'type': 'relu'}, {'type': 'conv2d', 'filters': 2, 'kernel_size': 3}]})\n"
        "import json\n"
        "print(json.dumps(sorted(t for t in REGISTRY.types() if REGISTRY.definition(t).model.__pydantic_complete__)))\n"
    )
    compiled = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    relu, conv = REGISTRY.definition("relu").model, REGISTRY.definition("conv2d").model
    expected = sorted(t for t in REGISTRY.types() if REGISTRY.definition(t).model in (relu, conv))
    assert json.loads(compiled) == expected  # conv1d and conv3d share conv2d's model
