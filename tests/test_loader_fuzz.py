"""Fuzzing the input side: whatever arrives, load_spec/resolve raise a CnnspecError or succeed -- nothing else.

Random bytes, random text, and valid specs mutated (keys deleted, values replaced by random
JSON-like values, types swapped) go through ``load_spec`` + ``resolve``.  Any exception that is
not a :class:`cnnspec.errors.CnnspecError` (a crash, a RecursionError, a pydantic error leaking
out, a message without a location) fails the test.  Runs are derandomized so CI is reproducible.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cnnspec
from cnnspec.errors import CnnspecError, SpecError
from cnnspec.load.loader import parse_text

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_FILES = sorted((ROOT / "examples").glob("*.yaml"))

# Small valid specs of our own (the examples are read from disk too).
LOCAL_SPECS = [
    {"cnnspec": 1, "input": {"channels": 1, "size": [28, 28]}, "layers": [
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": "same", "activation": "relu"},
        {"type": "max_pool2d", "pool_size": 2, "ceil_mode": True},
        {"type": "batch_norm", "epsilon": 1e-3, "momentum": 0.01},
        {"type": "flatten"}, {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 10}]},
    {"cnnspec": 1, "name": "res", "input": {"channels": 8, "size": [16, 16]}, "layers": [
        {"name": "a", "type": "conv2d", "filters": 8, "kernel_size": [3, 1], "padding": [[1, 1], [0, 0]], "groups": 2},
        {"name": "b", "type": "add", "inputs": ["input", "a"]},
        {"name": "c", "type": "concat", "inputs": ["a", "b"]},
        {"name": "d", "type": "conv_transpose2d", "filters": 4, "kernel_size": 3, "stride": 2, "output_padding": 1, "padding": 1},
        {"name": "e", "type": "global_avg_pool", "keepdims": True}]},
    {"cnnspec": 1, "input": {"channels": 2, "size": [50]}, "layers": [
        {"type": "zero_pad1d", "padding": [[2, 1]]}, {"type": "avg_pool1d", "pool_size": 3, "stride": 1, "padding": 1, "count_include_pad": False},
        {"type": "upsample", "scale_factor": 2}, {"type": "leaky_relu", "negative_slope": 0.2}, {"type": "prelu", "per_channel": False},
        {"type": "global_max_pool"}]},
    {"cnnspec": 1, "input": {"channels": 3, "size": [8, 8, 8]}, "layers": [
        {"type": "conv3d", "filters": 2, "kernel_size": [1, 2, 3], "dilation": [1, 2, 1]},
        {"type": "elu", "alpha": 0.5}, {"type": "gelu", "approximate": "tanh"}, {"type": "spatial_dropout", "rate": 0.1}]},
    {"cnnspec": 1, "input": {"channels": 3, "size": [32, 32]}, "layers": [
        {"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": 2, "padding": "same", "stride": 2},
        {"type": "separable_conv2d", "filters": 8, "kernel_size": 3, "bias": False}, {"type": "hard_swish"},
        {"type": "upsample", "scale_factor": [2, 2], "mode": "bilinear"}, {"type": "softmax"}]},
]


def _seed_specs() -> list[dict]:
    specs = [copy.deepcopy(s) for s in LOCAL_SPECS]
    for path in EXAMPLE_FILES:
        specs.append(yaml.safe_load(path.read_text()))
    return specs


SEEDS = _seed_specs()

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["same", "valid", "conv2d", "relu", "input", "class", "__import__", "a b", "", "1e5", "yes"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def _containers(value, path=()):
    """Every (path, container) pair inside a nested dict/list value."""
    yield path, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        if isinstance(child, (dict, list)):
            yield from _containers(child, path + (key,))


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        containers = list(_containers(spec))
        _, container = draw(st.sampled_from(containers))
        keys = list(container) if isinstance(container, dict) else list(range(len(container)))
        action = draw(st.sampled_from(["delete", "replace", "swap_type", "add_key", "duplicate"]))
        if not keys:
            continue
        key = draw(st.sampled_from(keys))
        if action == "delete":
            del container[key]
        elif action == "replace":
            container[key] = draw(json_values)
        elif action == "swap_type":
            value = container[key]
            swaps = {int: lambda v: str(v), str: lambda v: [v], bool: lambda v: int(v), float: lambda v: str(v),
                     list: lambda v: v[0] if v else {}, dict: lambda v: list(v.values()), type(None): lambda v: 0}
            container[key] = swaps.get(type(value), lambda v: None)(value)
        elif action == "add_key" and isinstance(container, dict):
            container[draw(st.sampled_from(["out_channels", "strides", "kernel", "eps", "name", "type", "inputs", "x"]))] = draw(json_values)
        elif action == "duplicate" and isinstance(container, list):
            container.append(copy.deepcopy(container[key]))
    return spec


def _check(source) -> None:
    """load_spec + resolve either succeed or raise a located CnnspecError."""
    try:
        plan = cnnspec.resolve(cnnspec.load_spec(source))
    except SpecError as error:
        assert error.problems, "a SpecError without problems"
        for problem in error.problems:
            rendered = problem.render()
            assert rendered and "Traceback" not in rendered
            assert "Value error," not in problem.message
        return
    except CnnspecError:
        return
    assert plan.layers  # a success is a real plan


FAST = settings(max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
SLOW = settings(max_examples=5000, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _bytes_case(tmp_path_factory, data: bytes, suffix: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / f"spec{suffix}"
    path.write_bytes(data)
    _check(path)


@FAST
@given(data=st.binary(max_size=400), suffix=st.sampled_from([".yaml", ".json", ".bin"]))
def test_random_bytes(tmp_path_factory, data, suffix):
    _bytes_case(tmp_path_factory, data, suffix)


@FAST
@given(text=st.text(max_size=300))
def test_random_text(text):
    _check(text)  # a path when it has no newline, YAML otherwise
    _check(text + "\n")


yamlish = st.text(alphabet=st.sampled_from(list("cnspe: 1{}[],-&*!#'\"\n\t |>?<%@`abz019._\\")), max_size=200)


@FAST
@given(text=yamlish)
def test_yaml_punctuation_soup(text):
    _check(text + "\n")


@FAST
@given(spec=mutated_specs(), as_text=st.sampled_from(["dict", "yaml", "json"]))
def test_mutated_specs(spec, as_text):
    if as_text == "dict":
        _check(spec)
    elif as_text == "yaml":
        _check(yaml.safe_dump(spec, default_flow_style=None, allow_unicode=True) + "\n")
    else:
        try:
            text = json.dumps(spec, allow_nan=True)
        except ValueError:
            return
        _check(text + "\n")


@FAST
@given(spec=mutated_specs())
def test_mutated_json_files(tmp_path_factory, spec):
    path = tmp_path_factory.mktemp("fuzz") / "spec.json"
    path.write_text(json.dumps(spec, indent=1))
    _check(path)


def test_seed_specs_are_valid():
    for spec in SEEDS:
        cnnspec.resolve(cnnspec.load_spec(spec))


def test_parse_text_positions_match_yaml_for_seeds():
    for path in EXAMPLE_FILES:
        data, source = parse_text(path.read_text(), str(path))
        assert data == yaml.safe_load(path.read_text())
        assert source.locate(("layers", 0)) is not None


@pytest.mark.slow
@SLOW
@given(spec=mutated_specs(), as_text=st.sampled_from(["dict", "yaml"]))
def test_mutated_specs_slow(spec, as_text):
    _check(spec if as_text == "dict" else yaml.safe_dump(spec, default_flow_style=None) + "\n")


@pytest.mark.slow
@SLOW
@given(text=st.text(max_size=1000))
def test_random_text_slow(text):
    _check(text + "\n")


@pytest.mark.slow
@SLOW
@given(data=st.binary(max_size=2000))
def test_random_bytes_slow(tmp_path_factory, data):
    _bytes_case(tmp_path_factory, data, ".yaml")
