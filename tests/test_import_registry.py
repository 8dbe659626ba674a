"""What the importers recognise is claimed by the layer definitions, one place per layer type.

Every Keras layer class, torch module / function / tensor method and ONNX op type an importer
reads is claimed with ``REGISTRY.reads`` from the module that defines the layer type; the
importers only look names up.  These checks are derived from the registry: they hold for any
type added later, and a deliberately broken registration shows what they catch.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Literal

import pytest

import cnnspec.importers
from cnnspec.layers import REGISTRY, LayerDefinition, RegistrationError, Registry, example
from cnnspec.layers.registry import IMPORT_SOURCES
from cnnspec.spec.fields import LayerBase

FRAMEWORKS = {
    "keras": ("keras", "keras_activation", "keras_op"),
    "torch": ("torch_module", "torch_function", "torch_method"),
    "onnx": ("onnx",),
}

# Types the ONNX importer does not read yet (it was written for what torch.onnx and tf2onnx
# emit for the original catalog).  A type added to the catalog without an ONNX claim must be
# added here knowingly; one that gains a claim must be taken out.
ONNX_UNREAD = {
    "separable_conv2d",
    "dropout",
    "spatial_dropout",
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "average",
    "identity",
    "normalize",
    "stochastic_depth",
}

# Names an importer module may still spell although a definition claims them: plumbing, not recognition.
PLUMBING = {
    ("onnx.py", "Reshape"): "a Reshape's shape input is not data (_shape_only_nodes)",
    ("onnx.py", "Squeeze"): "ONNX's Squeeze, a move the walk dispatches (_PLUMBING); Keras' op of "
    "that name is claimed by channel_conv",
    **{
        (
            "torch.py",
            f"operator.{op}",
        ): "integer arithmetic on sizes for a view is skipped, not read"
        for op in ("add", "sub", "mul", "truediv", "getitem")
    },
}


# Tables of the ONNX operator set the importer's generic machinery works with (which ops act on
# each value alone, move data, take shapes, read NCHW by the ONNX standard): op semantics, not
# recognition; the layer types those ops become are decided by the claimed readers.
VOCABULARY = {
    ("onnx.py", "POINTWISE_OPS"): "ops a point-wise function's nodes may be (_pointwise_function)",
    ("onnx.py", "MOMENT_OPS"): "ops between a normalisation's moments (_moments)",
    ("onnx.py", "MOVE_OPS"): "ops that only move data (_repeat_upsample)",
    ("onnx.py", "SHAPE_INPUTS"): "ops whose inputs after the first are shapes (_shape_only_nodes)",
    ("onnx.py", "CHANNELS_FIRST_OPS"): "ops the ONNX standard defines on NCHW (_input_layout)",
    ("onnx.py", "MEAN"): "a normalisation's moments start at a mean (_moments)",
}


def _vocabulary_constants(path: Path, tree) -> set[int]:
    """ids of the constants inside the module's VOCABULARY tables."""
    inside: set[int] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        names = {getattr(target, "id", None) for target in targets}
        if any((path.name, name) in VOCABULARY for name in names):
            inside.update(id(sub) for sub in ast.walk(node) if isinstance(sub, ast.Constant))
    return inside


def _claims(framework: str):
    return [claim for source in FRAMEWORKS[framework] for claim in REGISTRY.claims(source).values()]


def test_every_source_is_one_framework():
    assert sorted(s for sources in FRAMEWORKS.values() for s in sources) == sorted(IMPORT_SOURCES)


def test_every_claim_is_made_by_a_registered_definition_in_its_own_module():
    definitions = {id(d) for d in REGISTRY.definitions()}
    for source in IMPORT_SOURCES:
        for name, claim in REGISTRY.claims(source).items():
            assert id(claim.owner) in definitions, (source, name)
            assert claim.reader.__module__ == type(claim.owner).__module__, (source, name)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_every_type_an_importer_produces_is_claimed_by_exactly_one_definition(framework):
    """A produced type is registered, and its own definition (exactly one, by the registry)
    claims at least one framework name as that type: a type reachable only through another
    type's rewrite would have no home."""
    every_claim = [claim for f in FRAMEWORKS for claim in _claims(f)]
    owners = {t: {id(c.owner) for c in every_claim if t in c.owner.types} for t in REGISTRY.types()}
    produced = {t for claim in _claims(framework) for t in claim.produces}
    assert produced <= set(REGISTRY.types())
    homeless = sorted(t for t in produced if len(owners[t]) != 1)
    assert not homeless, (
        f"{framework}: produced but claimed by no definition of their own: {homeless}"
    )


def _pointwise_hooks(layer_type: str) -> list:
    hooks = (REGISTRY.hook(name, layer_type) for name in ("onnx_function", "onnx_fit"))
    return [hook for hook in hooks if hook is not None]


def test_the_pointwise_hooks_live_in_their_types_modules():
    """What a chain of ONNX point-wise nodes is, is decided by the type's own module."""
    hooked = [t for t in REGISTRY.types() if _pointwise_hooks(t)]
    assert {"gelu", "silu", "relu", "elu", "leaky_relu", "prelu", "scale", "rescale"} <= set(hooked)
    for layer_type in hooked:
        module = type(REGISTRY.definition(layer_type)).__module__
        assert all(hook.__module__ == module for hook in _pointwise_hooks(layer_type)), layer_type


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_every_registered_type_is_read_by_every_importer_or_known_not_to_be(framework):
    produced = {t for claim in _claims(framework) for t in claim.produces}
    if (
        framework == "onnx"
    ):  # point-wise node chains, recognised by the type's hooks on probe values
        produced |= {t for t in REGISTRY.types() if _pointwise_hooks(t)}
    unread = {t for t in REGISTRY.types() if t not in produced}
    expected = ONNX_UNREAD if framework == "onnx" else set()
    assert unread == expected, (
        f"{framework}: types no claim produces changed: new {sorted(unread - expected)}, "
        f"now read {sorted(expected - unread)}; claim them with REGISTRY.reads in the type's module"
    )


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append({"F": "torch.nn.functional", "nn": "torch.nn"}.get(node.id, node.id))
    return ".".join(reversed(parts))


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_the_importers_spell_no_claimed_framework_name(framework):
    """No per-framework table is left in importers/: a claimed class or op name appears there
    neither as a string nor (torch functions) as an attribute like ``F.relu`` / ``torch.cat``.
    Torch method and Keras activation names are ordinary words (``add``, ``relu``) and skipped."""
    strings = {
        c.name for c in _claims(framework) if c.source not in ("torch_method", "keras_activation")
    }
    functions = {c.name for c in _claims(framework) if c.source == "torch_function"}
    folder = Path(cnnspec.importers.__file__).parent
    found = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        vocabulary = _vocabulary_constants(path, tree)
        for node in ast.walk(tree):
            if id(node) in vocabulary:
                continue
            if isinstance(node, ast.Constant) and node.value in strings:
                spelled = node.value
            elif isinstance(node, ast.Attribute) and _dotted(node) in functions:
                spelled = _dotted(node)
            else:
                continue
            if (path.name, spelled) not in PLUMBING:
                found.append(f"{path.name}:{node.lineno} {spelled!r}")
    assert not found, "framework names spelled in the importers: " + ", ".join(found)


def test_a_vocabulary_table_exempts_only_its_own_constants():
    """A claimed name in one of onnx.py's operator tables passes; the same name in code, or in a
    table of that name in another importer, is still found."""
    source = 'POINTWISE_OPS = {"Relu"}\n\n\ndef read(node):\n    return node.op_type == "Relu"\n'
    for name, expected in (("onnx.py", [True, False]), ("keras.py", [False, False])):
        tree = ast.parse(source)
        exempt = _vocabulary_constants(Path(name), tree)
        relus = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value == "Relu"]
        assert [id(n) in exempt for n in relus] == expected, name


def test_the_claimed_torch_functions_resolve_to_distinct_callables():
    pytest.importorskip("torch")
    import importlib

    seen: dict[int, str] = {}
    for path, claim in REGISTRY.claims("torch_function").items():
        module, _, name = path.rpartition(".")
        function = getattr(importlib.import_module(module), name)
        assert callable(function), path
        other = seen.setdefault(id(function), path)
        same_reader = REGISTRY.claims("torch_function")[other].reader is claim.reader
        assert other == path or same_reader, f"{path} and {other} are one function read two ways"


def test_pad_absorption_is_claimed_where_the_padded_layer_is_defined():
    """cnnspec's <name>_pad helpers fold into the conv / pool they serve: which ones is claimed."""
    keras = REGISTRY.claims("keras")
    torch = REGISTRY.claims("torch_module")
    assert keras["Conv2D"].absorbs_padding == 0.0 and keras["PortableConv"].absorbs_padding == 0.0
    assert keras["MaxPooling2D"].absorbs_padding == -math.inf
    assert (
        torch["AvgPool2d"].absorbs_padding == 0.0
        and torch["MaxPool3d"].absorbs_padding == -math.inf
    )
    assert keras["Dense"].absorbs_padding is None and torch["Linear"].absorbs_padding is None


# -- registration refuses contradictions ---------------------------------------------------


class Gate(LayerBase):
    type: Literal["gate"]


class Valve(LayerBase):
    type: Literal["valve"]


def _definition(model, family):
    def plan(self, ctx, index, layer, in_shapes):
        return dict(output_shape=in_shapes[0], param_formula="no parameters")

    def emit(self, *args):
        raise NotImplementedError

    layer_type = model.model_fields["type"].annotation.__args__[0]
    return type(
        f"{family.title()}Definition",
        (LayerDefinition,),
        {
            "model": model,
            "family": family,
            "hint_text": f"{family}: ...",
            "examples": (example({"type": layer_type}),),
            "plan": plan,
            "torch": emit,
            "keras": emit,
        },
    )


def _read_gate(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "gate", inputs)


def _read_valve(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "valve", inputs)


@pytest.fixture
def registry():
    registry = Registry()
    registry.register(_definition(Gate, "gate"))
    registry.register(_definition(Valve, "valve"))
    registry.reads("keras", "Gate", "GateV2", by="gate")(_read_gate)
    return registry


def test_a_name_claimed_by_another_definition_is_refused_and_nothing_is_recorded(registry):
    with pytest.raises(
        RegistrationError, match="keras name 'GateV2' is already claimed by GateDefinition"
    ):
        registry.reads("keras", "Valve", "GateV2", by="valve")(_read_valve)
    assert sorted(registry.claims("keras")) == ["Gate", "GateV2"]
    assert registry.claims("keras")["GateV2"].reader is _read_gate
    registry.reads("torch_module", "Gate", by="valve")(_read_valve)  # sources are separate tables
    registry.check_complete()


def test_a_second_claim_on_a_real_framework_class_is_refused():
    """The broken registration against the real catalog: dense.py claiming Keras' Conv2D."""

    def read_conv_as_dense(ctx, layer, cfg, inputs, shapes):
        raise AssertionError("never called")

    read_conv_as_dense.__module__ = type(REGISTRY.definition("dense")).__module__
    before = REGISTRY.claims("keras")["Conv2D"]
    with pytest.raises(RegistrationError, match="'Conv2D' is already claimed by ConvDefinition"):
        REGISTRY.reads("keras", "DenseOnMaps", "Conv2D", by="dense")(read_conv_as_dense)
    assert REGISTRY.claims("keras")["Conv2D"] is before
    assert "DenseOnMaps" not in REGISTRY.claims("keras")


@pytest.mark.parametrize(
    "source, by, message",
    [
        ("keras_layer", "gate", "unknown source 'keras_layer'"),
        ("keras", "gates", "'gates' is not a registered layer type"),
    ],
)
def test_a_claim_on_an_unknown_source_or_type_is_refused(registry, source, by, message):
    with pytest.raises(RegistrationError, match=message):
        registry.reads(source, "Gate3", by=by)(_read_gate)


def test_a_reader_outside_the_type_definition_module_is_refused():
    def read_elsewhere(ctx, node, module):
        raise AssertionError("never called")

    with pytest.raises(RegistrationError, match="belongs in cnnspec.layers.conv"):
        REGISTRY.reads("torch_module", "LazyConv2d", by="conv2d")(read_elsewhere)
    assert "LazyConv2d" not in REGISTRY.claims("torch_module")


def test_a_claim_producing_an_unregistered_type_is_refused_when_the_catalog_is_checked(registry):
    registry.reads("onnx", "Gate", by="gate", produces=("gate", "sluice"))(_read_gate)
    with pytest.raises(RegistrationError, match=r"produces unregistered types \['sluice'\]"):
        registry.check_complete()
