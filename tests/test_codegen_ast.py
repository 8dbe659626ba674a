"""The generated source is plain, inert Python: fuzz names and numbers through both emitters and read the AST.

Hypothesis draws layer / model names that pass validation and numbers across their valid
ranges (tiny and huge floats such as 1e-7, 0.3, ints up to 2**31 - 1) and random specs of
the whole catalog.  Both emitters' modules are parsed (never executed here) and must contain
only:

* a module docstring, the expected imports, ``CNNSPEC_LAYER_NAMES = [<the spec names>]``;
* helper classes / functions that are *verbatim* copies of the emitter's own templates (their
  names and text are read from the emitter modules, not listed here);
* the model class (torch) or builder function (keras), whose body holds nothing but
  assignments, calls, attribute access, subscripts / slices, returns, literals, names and
  arithmetic: no ``exec`` / ``eval`` / ``__import__`` / ``open`` / ``getattr``, no dunder
  attributes besides ``__init__``, no name that shadows an import, and no string constant
  other than a layer name, a known argument value or a docstring.

The numbers are checked too: every float and int written for a layer is exactly the spec's.
Negative tests: names with quotes, newlines, dunders or unicode lookalikes never reach an
emitter -- :func:`cnnspec.load_spec` raises :class:`SpecError`.
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import keyword
import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import cnnspec
from cnnspec.targets.keras import emit as emit_keras
from cnnspec.targets.torch import emit as emit_torch
from cnnspec.targets.build import class_name, emit_source, function_name
from cnnspec.errors import CnnspecError, SpecError
from cnnspec.spec.models import RESERVED_NAMES

from spec_strategies import valid_specs

SETTINGS = settings(derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

ALLOWED_IMPORTS = {
    "torch": {("import", "math", None), ("import", "numpy", "np"), ("import", "torch", None), ("import", "torch.nn.functional", "F"),
              ("from torch", "nn", None)},
    "keras": {("import", "math", None), ("import", "keras", None), ("import", "numpy", "np"), ("from keras", "layers", None),
              ("from keras", "ops", None)},
}
# Builtins the generated model code may call (and so no layer may shadow).
ALLOWED_BUILTINS = {"super", "float", "dict", "str"}
# String values the emitters write besides names: modes, paddings, activation names.
KNOWN_STRING_VALUES = {"same", "valid", "bilinear", "nearest", "none", "tanh", "-inf", "input",
                       # resize, adaptive pooling and padding modes of the model-zoo catalog
                       "linear", "trilinear", "bicubic", "cubic", "nearest_exact", "max", "reflect", "replicate",
                       # channel pooling's reduction
                       "mean"} | set(
    emit_keras.KERAS_ACTIVATIONS.values()
)
FORBIDDEN_CALLS = {"exec", "eval", "compile", "__import__", "open", "getattr", "setattr", "delattr", "globals", "locals", "vars", "breakpoint", "input"}

ALLOWED_MODEL_NODES = (
    ast.ClassDef, ast.FunctionDef, ast.arguments, ast.arg, ast.Expr, ast.Assign, ast.Return, ast.Call, ast.keyword,
    ast.Attribute, ast.Name, ast.Load, ast.Store, ast.Subscript, ast.Slice, ast.Tuple, ast.List, ast.Dict,
    ast.Constant, ast.BinOp, ast.UnaryOp, ast.Compare, ast.operator, ast.unaryop, ast.cmpop,
)


# --------------------------------------------------------------------------------------------
# The emitters' own helper templates (derived from the emitter modules)
# --------------------------------------------------------------------------------------------


def _definitions(source: str) -> dict[str, str]:
    """Top-level class / function name -> ast.dump of a source text."""
    tree = ast.parse(source)
    return {node.name: ast.dump(node) for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))}


def known_helpers(target: str) -> dict[str, str]:
    """Every helper class / function an emitter can write: name -> ast.dump of its text in the helpers module."""
    helpers: dict[str, str] = {}
    emitter = emit_torch if target == "torch" else emit_keras
    for text in emitter.helper_texts().values():
        helpers.update(_definitions(text))
    return helpers


HELPERS = {target: known_helpers(target) for target in ("torch", "keras")}


def test_helper_templates_were_found():
    assert {"CountedAvgPool"} <= set(HELPERS["torch"])
    assert {"PortableConv", "CroppedConvTranspose", "ConstantPadding", "CountedAveragePooling", "gelu_erf",
            "gelu_tanh"} <= set(HELPERS["keras"])


# --------------------------------------------------------------------------------------------
# The AST check
# --------------------------------------------------------------------------------------------


def _import_rows(node) -> set[tuple]:
    if isinstance(node, ast.Import):
        return {("import", alias.name, alias.asname) for alias in node.names}
    assert node.level == 0, ast.dump(node)
    return {(f"from {node.module}", alias.name, alias.asname) for alias in node.names}


def _docstring_nodes(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                ids.add(id(first.value))
    return ids


def check_generated_module(source: str, plan, target: str) -> None:
    """Assert the module's AST is only what the contract allows (see the module docstring)."""
    tree = ast.parse(source)
    spec_names = [layer.name for layer in plan.layers]
    helpers = HELPERS[target]
    entry_name = class_name(plan.name) if target == "torch" else function_name(plan.name)
    body = list(tree.body)

    first = body.pop(0)
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    imported: set[str] = set()
    layer_names_assigned = 0
    entries = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            rows = _import_rows(node)
            assert rows <= ALLOWED_IMPORTS[target], f"unexpected import {ast.unparse(node)}"
            imported |= {asname or name.split(".")[0] for _, name, asname in rows}
        elif isinstance(node, ast.Assign):
            assert [ast.unparse(t) for t in node.targets] == ["CNNSPEC_LAYER_NAMES"], ast.unparse(node)
            assert isinstance(node.value, ast.List)
            assert all(isinstance(e, ast.Constant) and type(e.value) is str for e in node.value.elts)
            assert [e.value for e in node.value.elts] == spec_names
            layer_names_assigned += 1
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            if node.name in helpers:
                assert ast.dump(node) == helpers[node.name], f"helper {node.name} differs from the emitter's template"
            else:
                assert node.name == entry_name, f"unexpected definition {node.name}"
                entries.append(node)
        else:
            raise AssertionError(f"unexpected module-level statement: {ast.unparse(node)[:200]}")
    assert layer_names_assigned == 1 and len(entries) == 1
    assert entry_name not in imported and not keyword.iskeyword(entry_name), f"{entry_name} shadows an import"
    if target == "torch":
        assert isinstance(entries[0], ast.ClassDef) and [ast.unparse(b) for b in entries[0].bases] == ["nn.Module"]
    else:
        assert isinstance(entries[0], ast.FunctionDef) and not entries[0].args.args

    defined_globals = imported | set(helpers) | ALLOWED_BUILTINS
    _check_model_entry(entries[0], tree, plan, defined_globals, imported | set(helpers))


def _allowed_strings(plan) -> set[str]:
    return set(KNOWN_STRING_VALUES) | {plan.name} | {layer.name for layer in plan.layers}


def _is_helper_layer_name(text: str, plan) -> bool:
    """``<spec name>_<role>`` or ``<spec name>_<role><n>`` (helper modules / layers)."""
    return any(re.fullmatch(re.escape(layer.name) + r"_[a-z]+[0-9]*", text) for layer in plan.layers)


def _check_model_entry(entry, tree, plan, defined_globals: set[str], protected: set[str]) -> None:
    docstrings = _docstring_nodes(tree)
    strings = _allowed_strings(plan)
    local_names = {"self", "x", "inputs"} | {layer.name for layer in plan.layers}
    for node in ast.walk(entry):
        assert isinstance(node, ALLOWED_MODEL_NODES), f"{type(node).__name__} in the model: {ast.unparse(node)[:200]}"
        if isinstance(node, ast.FunctionDef):
            assert not node.decorator_list and not node.args.vararg and not node.args.kwarg
        if isinstance(node, ast.ClassDef):
            assert node is entry and not node.decorator_list and not node.keywords
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("_") or node.attr == "__init__" or node.attr in local_names or (
                _is_helper_layer_name(node.attr, plan)
            ), f"private attribute .{node.attr}"
        if isinstance(node, ast.Name):
            assert node.id not in FORBIDDEN_CALLS, node.id
            if isinstance(node.ctx, ast.Store):
                assert node.id not in protected and node.id not in dir(builtins), f"assignment shadows {node.id}"
            else:
                assert (
                    node.id in defined_globals or node.id in local_names or _is_helper_layer_name(node.id, plan)
                ), f"unknown name {node.id}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id in defined_globals, f"call of {node.func.id}"
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and id(node) not in docstrings:
            assert isinstance(node.value, str), repr(node.value)
            assert node.value in strings or _is_helper_layer_name(node.value, plan), f"unexpected string constant {node.value!r}"
        if isinstance(node, ast.Constant):
            assert node.value is None or type(node.value) in (str, int, float, bool), repr(node.value)
        if isinstance(node, ast.arg):
            assert node.arg in ("self", "x"), node.arg


# --------------------------------------------------------------------------------------------
# Reading constructor arguments back from the AST
# --------------------------------------------------------------------------------------------


def layer_arguments(source: str, target: str, layer_name: str) -> dict:
    """The literal keyword (and positional, as '#0', '#1', ...) arguments of the layer's constructor."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target_text = ast.unparse(node.targets[0])
        if target == "torch" and target_text == f"self.{layer_name}":
            call = node.value
        elif target == "keras" and target_text == layer_name and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Call):
            call = node.value.func
        else:
            continue
        values = {f"#{i}": _literal(a) for i, a in enumerate(call.args)}
        values.update({k.arg: _literal(k.value) for k in call.keywords})
        return values
    raise AssertionError(f"no constructor for layer {layer_name}")


def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


# --------------------------------------------------------------------------------------------
# Strategies: names and numbers
# --------------------------------------------------------------------------------------------


def _name_accepted(name: str) -> bool:
    try:
        cnnspec.load_spec({"cnnspec": 1, "name": name, "input": {"channels": 1, "size": [4]}, "layers": [{"type": "relu", "name": name}]})
    except SpecError:
        return False
    return True


identifiers = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,24}\Z").filter(_name_accepted)
positive_floats = st.sampled_from([1e-7, 0.3, 1e-5, 1e-3, 1.0, 5e-324, 1e300, 0.1 + 0.2]) | st.floats(
    min_value=0.0, exclude_min=True, allow_nan=False, allow_infinity=False
)
unit_interval = st.sampled_from([0.3, 1e-7, 0.5, 0.99, 0.1]) | st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True)
rates = st.sampled_from([0.0, 0.3, 0.999999]) | st.floats(min_value=0.0, max_value=1.0, exclude_max=True)
big_ints = st.sampled_from([1, 2**31 - 1]) | st.integers(1, 2**31 - 1)


@st.composite
def named_number_specs(draw):
    """A fixed layer sequence (conv with helper padding, pools, every number-bearing field) with drawn names and numbers."""
    names = draw(st.lists(identifiers, min_size=11, max_size=11, unique=True))
    # A layer name that extends another one by '_<role>' could clash with a helper module name
    # (the torch emitter refuses that cleanly; tested below), so keep the drawn names apart.
    assume(not any(a != b and b.startswith(a + "_") for a in names for b in names))
    numbers = {
        "epsilon": draw(positive_floats), "momentum": draw(unit_interval), "rate": draw(rates),
        "spatial_rate": draw(rates), "negative_slope": draw(st.sampled_from([0.0]) | positive_floats),
        "alpha": draw(positive_floats), "units": draw(big_ints), "filters": draw(st.integers(1, 9)),
    }
    layers = [
        {"type": "conv2d", "filters": numbers["filters"], "kernel_size": 3, "stride": 2, "padding": "same"},
        {"type": "max_pool2d", "pool_size": 3, "padding": [[0, 2], [1, 0]]},
        {"type": "avg_pool2d", "pool_size": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
        {"type": "batch_norm", "epsilon": numbers["epsilon"], "momentum": numbers["momentum"]},
        {"type": "leaky_relu", "negative_slope": numbers["negative_slope"]},
        {"type": "elu", "alpha": numbers["alpha"]},
        {"type": "gelu", "approximate": draw(st.sampled_from(["none", "tanh"]))},
        {"type": "spatial_dropout", "rate": numbers["spatial_rate"]},
        {"type": "flatten"},
        {"type": "dropout", "rate": numbers["rate"]},
        {"type": "dense", "units": numbers["units"], "activation": draw(st.sampled_from(["gelu", "softmax", "hard_swish", None]))},
    ]
    for layer, name in zip(layers, names):
        layer["name"] = name
    spec = {"cnnspec": 1, "name": draw(identifiers), "input": {"channels": 2, "size": [9, 8]}, "layers": layers}
    return spec, names, numbers


@st.composite
def renamed_catalog_specs(draw):
    """A random catalog spec (spec_strategies) with every layer renamed to a drawn identifier."""
    spec = draw(valid_specs(max_layers=6))
    plan = cnnspec.resolve(spec)
    names = draw(st.lists(identifiers, min_size=len(plan.layers), max_size=len(plan.layers), unique=True))
    assume(not any(a != b and b.startswith(a + "_") for a in names for b in names))
    mapping = {"input": "input", **{layer.name: new for layer, new in zip(plan.layers, names)}}
    layers = []
    for layer, new in zip(spec["layers"], names):
        renamed = {**layer, "name": new}
        if "inputs" in layer:
            renamed["inputs"] = [mapping[ref] for ref in layer["inputs"]]
        layers.append(renamed)
    return {**spec, "name": draw(identifiers), "layers": layers}


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------


@SETTINGS
@given(case=named_number_specs())
def test_fuzzed_names_and_numbers_give_inert_source_with_exact_numbers(case):
    spec, names, numbers = case
    plan = cnnspec.resolve(spec)
    torch_source = emit_source(plan, "torch")
    keras_source = emit_source(plan, "keras")
    check_generated_module(torch_source, plan, "torch")
    check_generated_module(keras_source, plan, "keras")

    conv, _, _, bn, leaky, elu, _, sdrop, _, drop, dense = names

    def argument(source, target, layer, keyword, position, default):
        """A constructor argument by keyword or position; absent = the framework's default (left out)."""
        arguments = layer_arguments(source, target, layer)
        return arguments.get(keyword, arguments.get(f"#{position}", default))

    assert argument(torch_source, "torch", bn, "eps", 1, 1e-5) == numbers["epsilon"]
    assert argument(torch_source, "torch", bn, "momentum", 2, 0.1) == numbers["momentum"]
    assert argument(keras_source, "keras", bn, "epsilon", None, 1e-3) == numbers["epsilon"]
    assert argument(keras_source, "keras", bn, "momentum", None, 0.99) == 1.0 - numbers["momentum"]
    assert argument(torch_source, "torch", leaky, "negative_slope", 0, 0.01) == numbers["negative_slope"]
    assert argument(keras_source, "keras", leaky, "negative_slope", None, 0.3) == numbers["negative_slope"]
    assert argument(torch_source, "torch", elu, "alpha", 0, 1.0) == numbers["alpha"]
    assert argument(keras_source, "keras", elu, "alpha", None, 1.0) == numbers["alpha"]
    assert argument(torch_source, "torch", drop, "p", 0, 0.5) == numbers["rate"]
    assert layer_arguments(keras_source, "keras", drop)["#0"] == numbers["rate"]
    assert argument(torch_source, "torch", sdrop, "p", 0, 0.5) == numbers["spatial_rate"]
    assert layer_arguments(keras_source, "keras", sdrop)["#0"] == numbers["spatial_rate"]
    assert layer_arguments(torch_source, "torch", dense)["#1"] == numbers["units"]
    assert layer_arguments(keras_source, "keras", dense)["#0"] == numbers["units"]
    assert layer_arguments(torch_source, "torch", conv)["#1"] == numbers["filters"]
    assert layer_arguments(keras_source, "keras", conv)["#0"] == numbers["filters"]


@SETTINGS
@given(spec=renamed_catalog_specs())
def test_random_catalog_specs_give_inert_source(spec):
    plan = cnnspec.resolve(spec)
    for target in ("torch", "keras"):
        check_generated_module(emit_source(plan, target), plan, target)


def test_checker_rejects_smuggled_code():
    """Negative control: the AST check fails on code the emitters must never write."""
    spec = {"cnnspec": 1, "name": "net", "input": {"channels": 1, "size": [5]}, "layers": [{"type": "relu", "name": "act"}]}
    plan = cnnspec.resolve(spec)
    torch_source = emit_source(plan, "torch")
    keras_source = emit_source(plan, "keras")
    check_generated_module(torch_source, plan, "torch")
    check_generated_module(keras_source, plan, "keras")
    smuggled = [
        ("torch", torch_source.replace("super().__init__()", "super().__init__(); __import__('os')")),
        ("torch", torch_source.replace("import torch\n", "import torch\nimport os\n")),
        ("torch", torch_source.replace("self.act = nn.ReLU()", "self.act = eval('nn.ReLU()')")),
        ("torch", torch_source.replace("self.act = nn.ReLU()", "self.act = getattr(nn, 'ReLU')()")),
        ("torch", torch_source + "\nprint('side effect')\n"),
        ("keras", keras_source.replace('name="act"', "name='act', extra=open('x')")),
        ("keras", keras_source.replace('name="act"', "name='rm -rf'")),
        ("keras", keras_source.replace("    return keras.Model", "    keras = None\n    return keras.Model")),
        ("keras", keras_source.replace("    return keras.Model", "    [exec(s) for s in ()]\n    return keras.Model")),
        ("keras", keras_source.replace("CNNSPEC_LAYER_NAMES = [", "CNNSPEC_LAYER_NAMES = ['evil', ")),
    ]
    for target, source in smuggled:
        with pytest.raises(AssertionError):
            check_generated_module(source, plan, target)


def test_modified_helper_template_is_rejected():
    spec = {"cnnspec": 1, "input": {"channels": 1, "size": [6]}, "layers": [
        {"type": "avg_pool1d", "name": "pool", "pool_size": 2, "padding": 1, "count_include_pad": False}]}
    plan = cnnspec.resolve(spec)
    source = emit_source(plan, "keras")
    check_generated_module(source, plan, "keras")
    assert "class CountedAveragePooling" in source
    tampered = source.replace("self.count_include_pad = bool(count_include_pad)", "self.count_include_pad = True")
    assert tampered != source
    with pytest.raises(AssertionError, match="differs from the emitter's template"):
        check_generated_module(tampered, plan, "keras")


@pytest.mark.parametrize("model_name", ["f", "F", "_f_", "none", "true", "model", "counted"])
def test_model_class_never_shadows_an_import_or_is_a_keyword(model_name):
    """Regression: model 'f' gave ``class F`` after ``import torch.nn.functional as F`` (F.relu then failed)."""
    spec = {"cnnspec": 1, "name": model_name, "input": {"channels": 1, "size": [6]}, "layers": [
        {"type": "conv1d", "name": "conv", "filters": 2, "kernel_size": 3, "activation": "relu"}]}
    plan = cnnspec.resolve(spec)
    for target in ("torch", "keras"):
        check_generated_module(emit_source(plan, target), plan, target)


def test_helper_name_clash_is_refused_cleanly():
    """A layer named like another layer's helper module: the torch emitter refuses with a CnnspecError."""
    spec = {"cnnspec": 1, "input": {"channels": 1, "size": [6, 6]}, "layers": [
        {"type": "conv2d", "name": "a", "filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"type": "conv2d", "name": "a_pad", "filters": 2, "kernel_size": 2, "padding": [[0, 1], [1, 0]]},
    ]}
    plan = cnnspec.resolve(spec)
    with pytest.raises(CnnspecError):
        emit_source(plan, "torch")
    check_generated_module(emit_source(plan, "keras"), plan, "keras")


# --------------------------------------------------------------------------------------------
# Negative tests: hostile names never reach an emitter
# --------------------------------------------------------------------------------------------

# Not plain ASCII identifiers (or keywords / dunders): refused for layer names, model names and inputs alike.
HOSTILE_NAMES = [
    'a"b', "a'b", "a'); import os; ('", 'x"""', "a\nb", "ab\n", "\nab", "a\rb", "a\\b", "a b", "a;b", "a.b", "a(b)",
    "", "1a", "__import__", "__init__", "__class__", "__builtins__", "class", "import", "None", "lambda",
    "\u0430",  # Cyrillic a
    "p\u0430d",  # Latin p, Cyrillic a, Latin d
    "\uff41",  # fullwidth a
    "\ufb01x",  # the 'fi' ligature, NFKC-normalised to 'fix' by the Python parser
    "\u2170",  # small roman numeral one (NFKC 'i')
    "caf\u00e9", "a\u200bb",  # zero-width space
    "a\x00b", "\u212a",  # Kelvin sign (NFKC 'K')
    "a" * 65,
]
# Plain identifiers a *layer* may not take: the generated code uses them (model names may).
RESERVED_LAYER_NAMES = [
    "exec", "eval", "open", "getattr", "compile", "super", "float", "self", "torch", "nn", "F", "math", "keras", "layers",
    "ops", "np", "x", "inputs", "input", "forward", "training", "match", "_", "CNNSPEC_LAYER_NAMES",
    "_modules", "_parameters", "_buffers",  # nn.Module instance attributes: a layer there breaks the torch model
]


def _spec_with_layer_name(name: str) -> dict:
    return {"cnnspec": 1, "input": {"channels": 1, "size": [4]}, "layers": [{"type": "relu", "name": name}]}


@pytest.mark.parametrize("name", HOSTILE_NAMES + RESERVED_LAYER_NAMES, ids=[repr(n)[:24] for n in HOSTILE_NAMES + RESERVED_LAYER_NAMES])
def test_hostile_layer_names_are_rejected(name):
    with pytest.raises(SpecError):
        cnnspec.load_spec(_spec_with_layer_name(name))


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:24] for n in HOSTILE_NAMES])
def test_hostile_model_names_and_inputs_are_rejected(name):
    with pytest.raises(SpecError):
        cnnspec.load_spec({"cnnspec": 1, "name": name, "input": {"channels": 1, "size": [4]}, "layers": [{"type": "relu"}]})
    with pytest.raises(SpecError):  # an `inputs` entry must also name an earlier layer (checked by resolve)
        cnnspec.resolve({"cnnspec": 1, "input": {"channels": 1, "size": [4]}, "layers": [
            {"type": "relu", "name": "a"}, {"type": "add", "inputs": ["a", name]}]})


def test_hostile_names_are_rejected_from_yaml_text():
    for name in ['a"b', "a\nb", "ab\n", "__import__", "\u0430"]:
        text = f'cnnspec: 1\ninput: {{channels: 1, size: [4]}}\nlayers:\n  - {{type: relu, name: {_yaml_quote(name)}}}\n'
        with pytest.raises(SpecError):
            cnnspec.load_spec(text)


def _yaml_quote(text: str) -> str:
    return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'


@settings(derandomize=True, max_examples=300, deadline=None)
@given(name=st.text(min_size=0, max_size=12) | st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,8}[^A-Za-z0-9_]?\Z"))
def test_any_accepted_name_is_a_plain_ascii_identifier(name):
    """Whatever text is offered as a name, only plain, unreserved ASCII identifiers get through."""
    accepted = _name_accepted(name)
    plain = (
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None and len(name) <= 64
        and not keyword.iskeyword(name) and not keyword.issoftkeyword(name) and not name.startswith("__")
        and name not in RESERVED_NAMES and name not in dir(builtins)
    )
    assert accepted == plain, (name, accepted)


@pytest.mark.parametrize("bad", ['a"b', "a\nb", "a'); import os; ('"])
@pytest.mark.parametrize("target", ["torch", "keras"])
def test_emitters_refuse_unvalidated_names(bad, target):
    """Defence in depth: a plan forged past validation still cannot inject source."""
    plan = cnnspec.resolve(_spec_with_layer_name("act"))
    forged_layer = dataclasses.replace(plan.layers[0], name=bad)
    forged = dataclasses.replace(plan, layers=(forged_layer,), _by_name={})
    with pytest.raises(CnnspecError):
        emit_source(forged, target)


# --------------------------------------------------------------------------------------------
# The strategy itself: efficient and covering the catalog
# --------------------------------------------------------------------------------------------


def test_valid_specs_strategy_is_efficient_and_covers_the_catalog():
    """> 90% of proposed blocks resolve, every draw resolves, and every layer type gets drawn."""
    import spec_strategies
    from cnnspec.spec.models import layer_types

    seen: set[str] = set()
    before = spec_strategies.PROPOSAL_STATS.copy()

    @settings(derandomize=True, max_examples=2000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(spec=valid_specs(max_layers=6))
    def draw_many(spec):
        plan = cnnspec.resolve(spec)
        assert plan.activation_elements() <= spec_strategies.MAX_ACTIVATION_ELEMENTS
        seen.update(layer.type for layer in plan.layers)

    draw_many()
    stats = spec_strategies.PROPOSAL_STATS - before
    assert stats["proposals"] > 2000
    assert stats["invalid"] / stats["proposals"] < 0.10, dict(stats)
    assert set(layer_types()) - seen == set()
