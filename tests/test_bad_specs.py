"""Every bad spec gets a clear, located error: the exact text a user sees, for a corpus of bad inputs.

Each file under ``tests/bad_specs/`` is one bad spec; ``EXPECTED`` holds the exact message
(``file:line:col: field.path: message`` plus the hint line) that ``cnnspec validate`` prints for it.
The corpus and the table must stay in step: a file without an expectation fails the suite.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import cnnspec
from cnnspec.load import loader
from cnnspec.errors import CnnspecError, SpecError
from cnnspec.spec.models import layer_types

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "bad_specs"

EXPECTED = {
    'activation_unknown.yaml': (
        "tests/bad_specs/activation_unknown.yaml:4:60: layers[0].activation: unknown activation 'leaky_relu': expected one of relu, relu6, sigmoid, tanh, softmax, log_softmax, silu, gelu, hard_swish, hard_sigmoid, linear or null\n"
        '    hint: leaky_relu takes parameters; add it as a layer of its own after this one: {type: leaky_relu}'
    ),
    'add_mismatch.yaml': (
        "tests/bad_specs/add_mismatch.yaml:6:25: layers[2].inputs: add: inputs 'a' [8, 30, 30], 'b' [16, 28, 28] cannot "
        "broadcast along channels: sizes [8, 16] (each axis must be equal or 1)\n"
        "    hint: shapes must be equal, or 1 along the axes that broadcast (a (C, 1, 1) gate, or a flat (C))"
    ),
    'bias_string.yaml': "tests/bad_specs/bias_string.yaml:4:54: layers[0].bias: expected true or false, got 'maybe' (a string)",
    'billion_laughs.yaml': 'tests/bad_specs/billion_laughs.yaml:7:4: this value expands to 597,871 values through YAML aliases (an alias bomb?); refused, the limit is 100,000',
    'binary.bin': 'tests/bad_specs/binary.bin: looks like a binary file (it contains NUL bytes), not a YAML/JSON spec',
    'comments_only.yaml': (
        'tests/bad_specs/comments_only.yaml: the spec is empty\n'
        "    hint: a spec starts with 'cnnspec: 1'; see examples/"
    ),
    'concat_mismatch.yaml': "tests/bad_specs/concat_mismatch.yaml:6:28: layers[2].inputs: concat joins along channels, so all other dims must match: 'a' is [8, 30, 30] but 'b' is [8, 28, 28] (channels-first)",
    'control_char.yaml': 'tests/bad_specs/control_char.yaml:2:8: not valid YAML/JSON: control characters are not allowed: character U+0007',
    'conv2d_in_1d_model.yaml': (
        'tests/bad_specs/conv2d_in_1d_model.yaml:4:12: layers[0].type: conv2d is a 2-D layer but its input has 1 spatial dim(s) [4, 100] (the model is 1-D)\n'
        '    hint: use the 1d variant of this layer'
    ),
    'dead_branch.yaml': (
        "tests/bad_specs/dead_branch.yaml:4:5: layers[0]: the output of 'side' is never used: the model's output is the last layer ('main') and nothing after 'side' reads it\n"
        "    hint: connect it with 'inputs:' of a later layer, or remove it"
    ),
    'deep_nesting.yaml': 'tests/bad_specs/deep_nesting.yaml:4:85: nesting deeper than 64 levels; refused',
    'dense_on_feature_map.yaml': (
        'tests/bad_specs/dense_on_feature_map.yaml:5:5: layers[1]: dense needs flat features but its input is a feature map [8, 30, 30]\n'
        '    hint: add a flatten or global_avg_pool layer before it (frameworks disagree on dense over a feature map)'
    ),
    'duplicate_keys.json': (
        "tests/bad_specs/duplicate_keys.json:3:2: input: duplicate key 'input' (a YAML or JSON reader would silently keep only the last value)\n"
        "    hint: keep one 'input'; the first is at line 2, column 2"
    ),
    'duplicate_keys.yaml': (
        "tests/bad_specs/duplicate_keys.yaml:4:48: layers[0].filters: duplicate key 'filters' (a YAML or JSON reader would silently keep only the last value)\n"
        "    hint: keep one 'filters'; the first is at line 4, column 20"
    ),
    'duplicate_names.yaml': (
        "tests/bad_specs/duplicate_names.yaml:5:12: layers[1].name: duplicate layer name 'conv' (also layers[0])\n"
        '    hint: layer names must be unique; unnamed layers are called <type>_<index>'
    ),
    'empty.yaml': (
        'tests/bad_specs/empty.yaml: the spec is empty\n'
        "    hint: a spec starts with 'cnnspec: 1'; see examples/"
    ),
    'empty_layers.yaml': 'tests/bad_specs/empty_layers.yaml:3:9: layers: the model has no layers: expected a non-empty list of layers',
    'field_dilation_rate.yaml': (
        "tests/bad_specs/field_dilation_rate.yaml:4:48: layers[0].dilation_rate: unknown field 'dilation_rate' for a conv2d layer\n"
        "    hint: cnnspec calls this 'dilation' (framework spelling 'dilation_rate')"
    ),
    'field_eps.yaml': (
        "tests/bad_specs/field_eps.yaml:4:24: layers[0].eps: unknown field 'eps' for a batch_norm layer\n"
        "    hint: cnnspec calls this 'epsilon' (framework spelling 'eps')"
    ),
    'field_in_channels.yaml': (
        "tests/bad_specs/field_in_channels.yaml:4:20: layers[0].in_channels: unknown field 'in_channels' for a conv2d layer\n"
        "    hint: 'in_channels' is inferred from the previous layer's shape; remove it"
    ),
    'field_kernel.yaml': (
        "tests/bad_specs/field_kernel.yaml:4:32: layers[0].kernel: unknown field 'kernel' for a conv2d layer\n"
        "    hint: cnnspec calls this 'kernel_size' (framework spelling 'kernel')"
    ),
    'field_out_channels.yaml': (
        "tests/bad_specs/field_out_channels.yaml:4:20: layers[0].out_channels: unknown field 'out_channels' for a conv2d layer\n"
        "    hint: cnnspec calls this 'filters' (framework spelling 'out_channels')"
    ),
    'field_out_features.yaml': (
        "tests/bad_specs/field_out_features.yaml:5:19: layers[1].out_features: unknown field 'out_features' for a dense layer\n"
        "    hint: cnnspec calls this 'units' (framework spelling 'out_features')"
    ),
    'field_strides.yaml': (
        "tests/bad_specs/field_strides.yaml:4:48: layers[0].strides: unknown field 'strides' for a conv2d layer\n"
        "    hint: cnnspec calls this 'stride' (framework spelling 'strides')"
    ),
    'field_top_level_typo.yaml': (
        "tests/bad_specs/field_top_level_typo.yaml:3:1: inputs: unknown field 'inputs'\n"
        "    hint: did you mean 'input'?"
    ),
    'field_typo.yaml': (
        "tests/bad_specs/field_typo.yaml:4:32: layers[0].kernal_size: unknown field 'kernal_size' for a conv2d layer\n"
        "    hint: did you mean 'kernel_size'?"
    ),
    'field_use_bias.yaml': (
        "tests/bad_specs/field_use_bias.yaml:4:48: layers[0].use_bias: unknown field 'use_bias' for a conv2d layer\n"
        "    hint: cnnspec calls this 'bias' (framework spelling 'use_bias')"
    ),
    'filters_bool.yaml': 'tests/bad_specs/filters_bool.yaml:4:29: layers[0].filters: expected an integer >= 1, got true (a boolean)',
    'filters_float.yaml': 'tests/bad_specs/filters_float.yaml:4:29: layers[0].filters: expected an integer >= 1, got 10.5',
    'filters_integral_float.yaml': (
        'tests/bad_specs/filters_integral_float.yaml:4:29: layers[0].filters: expected an integer >= 1, got 8.0 (a float)\n'
        '    hint: write 8'
    ),
    'filters_zero.yaml': 'tests/bad_specs/filters_zero.yaml:4:29: layers[0].filters: expected an integer >= 1, got 0',
    'future_version.yaml': (
        'tests/bad_specs/future_version.yaml:1:10: cnnspec: format version 2 is newer than this cnnspec understands (it reads version 1)\n'
        '    hint: upgrade cnnspec, or write the spec in version 1'
    ),
    'groups_not_dividing.yaml': 'tests/bad_specs/groups_not_dividing.yaml:4:56: layers[0].groups: input channels 3 are not divisible by groups 2 (3 mod 2 = 1)',
    'input_rank4.yaml': 'tests/bad_specs/input_rank4.yaml:2:28: input.size: expected a list of 1-3 integers >= 1 (or null for any size): [L], [H, W] or [D, H, W], got [8, 8, 8, 8] (4 items)',
    'reference_size_mismatch.yaml': (
        'tests/bad_specs/reference_size_mismatch.yaml:2:56: input.reference_size: reference_size[1] is 224 but size[1] is fixed at 64\n'
        '    hint: reference_size gives a number for every axis, equal to size where size is not null'
    ),
    'input_zero_channels.yaml': 'tests/bad_specs/input_zero_channels.yaml:2:19: input.channels: expected an integer >= 1, got 0',
    'inputs_later.yaml': "tests/bad_specs/inputs_later.yaml:4:70: layers[0].inputs[0]: inputs[0] refers to 'act' (layers[1]), which comes later; inputs must be earlier layers (no cycles)",
    'inputs_not_list.yaml': "tests/bad_specs/inputs_not_list.yaml:5:26: layers[1].inputs: expected a list with one earlier layer name (or 'input'), got 'a' (a string)",
    'inputs_self.yaml': "tests/bad_specs/inputs_self.yaml:5:38: layers[1].inputs[0]: inputs[0] refers to 'act', which is this layer itself",
    'inputs_two_for_conv.yaml': (
        'tests/bad_specs/inputs_two_for_conv.yaml:5:65: layers[1].inputs: a conv2d layer reads exactly one input, got 2\n'
        '    hint: use add or concat to merge several'
    ),
    'inputs_unknown.yaml': (
        "tests/bad_specs/inputs_unknown.yaml:5:38: layers[1].inputs[0]: inputs[0] refers to unknown layer 'cnv1'\n"
        "    hint: did you mean 'conv1'?"
    ),
    'json_single_quotes.json': (
        'tests/bad_specs/json_single_quotes.json:2:3: not valid JSON: Expecting property name enclosed in double quotes\n'
        '    hint: JSON strings use double quotes'
    ),
    'kernel_list_zero.yaml': 'tests/bad_specs/kernel_list_zero.yaml:4:49: layers[0].kernel_size[1]: expected an integer >= 1, got 0',
    'kernel_negative.yaml': 'tests/bad_specs/kernel_negative.yaml:4:45: layers[0].kernel_size: expected an integer >= 1, or a list with one such integer per spatial dim, got -3',
    'kernel_string.yaml': "tests/bad_specs/kernel_string.yaml:4:45: layers[0].kernel_size: expected an integer >= 1, or a list with one such integer per spatial dim, got '3x3' (a string)",
    'kernel_wrong_rank.yaml': (
        "tests/bad_specs/kernel_wrong_rank.yaml:4:45: layers[0].kernel_size: kernel_size has 3 values [3, 3, 3] but this layer's input has 2 spatial dim(s) (H, W)\n"
        '    hint: give one int, or exactly 2 (one per spatial dim)'
    ),
    'latin1.yaml': (
        'tests/bad_specs/latin1.yaml:2:8: not UTF-8 text: byte 0xe9 cannot be decoded\n'
        '    hint: re-save the file as UTF-8'
    ),
    'layer_no_type.yaml': (
        "tests/bad_specs/layer_no_type.yaml:4:5: layers[0]: a layer needs a 'type'\n"
        "    hint: e.g. 'type: conv2d'; known types: " + ", ".join(layer_types())
    ),
    'layer_not_mapping.yaml': "tests/bad_specs/layer_not_mapping.yaml:4:5: layers[0]: expected a layer mapping such as {type: conv2d, filters: 8, kernel_size: 3}, got 'conv2d' (a string)",
    'layers_not_list.yaml': "tests/bad_specs/layers_not_list.yaml:3:9: layers: expected a non-empty list of layers, got a mapping {'type': 'relu'}",
    'list_root.yaml': (
        'tests/bad_specs/list_root.yaml:1:1: a spec must be a mapping (cnnspec:, input:, layers:), not a list\n'
        "    hint: start the file with 'cnnspec: 1'"
    ),
    'merge_key.yaml': (
        "tests/bad_specs/merge_key.yaml:5:6: layers[0]: YAML merge keys ('<<') are not supported in specs\n"
        '    hint: write the fields out in full'
    ),
    'model_name_bad.yaml': (
        "tests/bad_specs/model_name_bad.yaml:2:7: name: 'my-model' is not a valid name: it contains '-'\n"
        "    hint: names are Python identifiers: ASCII letters, digits and '_', not starting with a digit"
    ),
    'name_builtin_print.yaml': "tests/bad_specs/name_builtin_print.yaml:4:12: layers[0].name: 'print' is reserved (the generated code uses this name); pick another",
    'name_code_injection.yaml': (
        'tests/bad_specs/name_code_injection.yaml:4:12: layers[0].name: "a\'); import os #" is not a valid name: it contains "\'"\n'
        "    hint: names are Python identifiers: ASCII letters, digits and '_', not starting with a digit"
    ),
    'name_dunder_import.yaml': "tests/bad_specs/name_dunder_import.yaml:4:12: layers[0].name: '__import__' starts with '__'; dunder names are reserved",
    'name_keyword_class.yaml': "tests/bad_specs/name_keyword_class.yaml:4:12: layers[0].name: 'class' is a Python keyword and cannot name a layer",
    'name_newline.yaml': (
        "tests/bad_specs/name_newline.yaml:4:12: layers[0].name: 'x\\nimport os' is not a valid name: it contains a line break\n"
        "    hint: names are Python identifiers: ASCII letters, digits and '_', not starting with a digit"
    ),
    'name_reserved_forward.yaml': "tests/bad_specs/name_reserved_forward.yaml:4:12: layers[0].name: 'forward' is reserved (the generated code uses this name); pick another",
    'name_starts_with_digit.yaml': (
        "tests/bad_specs/name_starts_with_digit.yaml:4:12: layers[0].name: '1conv' is not a valid name: it starts with a digit\n"
        "    hint: names are Python identifiers: ASCII letters, digits and '_', not starting with a digit"
    ),
    'name_unicode_lookalike.yaml': (
        "tests/bad_specs/name_unicode_lookalike.yaml:4:12: layers[0].name: 'cоnv1' is not a valid name: it contains 'о' (U+043E CYRILLIC SMALL LETTER O)\n"
        "    hint: names are Python identifiers: ASCII letters, digits and '_', not starting with a digit"
    ),
    'no_layers.yaml': "tests/bad_specs/no_layers.yaml:1:1: layers: missing required field 'layers'",
    'no_version.yaml': (
        "tests/bad_specs/no_version.yaml:1:1: missing the format version 'cnnspec'\n"
        "    hint: add 'cnnspec: 1' as the first line"
    ),
    'non_string_key.yaml': 'tests/bad_specs/non_string_key.yaml:4:18: layers[0]: mapping key 1 must be a string (field names are words)',
    'not_json.json': (
        'tests/bad_specs/not_json.json:6:3: not valid JSON: Expecting value\n'
        '    hint: JSON allows no comma after the last item of a list or object'
    ),
    'not_yaml.yaml': (
        "tests/bad_specs/not_yaml.yaml:3:1: not valid YAML/JSON: did not find expected ',' or '}'\n"
        '    hint: check the flow mapping that starts at line 2, column 8: a missing comma, quote or closing bracket?'
    ),
    'padding_full.yaml': (
        "tests/bad_specs/padding_full.yaml:4:57: layers[0].padding: invalid padding 'full': expected 'valid', 'same', an integer >= 0, one integer per spatial dim, or one [before, after] pair per spatial dim\n"
        "    hint: cnnspec has no 'full' padding; write it as one [before, after] pair per dim: [[k - 1, k - 1], ...]"
    ),
    'padding_uppercase_same.yaml': (
        "tests/bad_specs/padding_uppercase_same.yaml:4:57: layers[0].padding: invalid padding 'SAME': expected 'valid', 'same', an integer >= 0, one integer per spatial dim, or one [before, after] pair per spatial dim\n"
        "    hint: write 'same' in lower case"
    ),
    'padding_flat_four.yaml': (
        "tests/bad_specs/padding_flat_four.yaml:4:57: layers[0].padding: invalid padding [1, 1, 0, 1]: expected 'valid', 'same', an integer >= 0, one integer per spatial dim, or one [before, after] pair per spatial dim\n"
        "    hint: a flat list of per-side numbers (F.pad's last-dim-first order) is ambiguous; write one [before, after] pair per spatial dim, e.g. [[1, 1], [0, 1]]"
    ),
    'pool_after_flatten.yaml': (
        'tests/bad_specs/pool_after_flatten.yaml:5:5: layers[1]: max_pool2d needs a spatial input (C, *spatial) but its input is flat [3072]\n'
        '    hint: a flatten or dense layer before it removed the spatial dims; move it after the spatial layers'
    ),
    'pool_collapse.yaml': (
        'tests/bad_specs/pool_collapse.yaml:4:5: layers[0]: output size collapses to 0 on axis H: ⌊(32 + 0 − 64) / 64⌋ + 1 = 0\n'
        '    hint: use a smaller kernel/stride, padding, or a larger input'
    ),
    'rate_too_big.yaml': 'tests/bad_specs/rate_too_big.yaml:4:27: layers[0].rate: expected a number >= 0 and < 1, got 1.5',
    'recursive_alias.yaml': 'tests/bad_specs/recursive_alias.yaml:2:8: a YAML alias refers to the value that contains it (an endless value); refused',
    'scalar_root.yaml': (
        'tests/bad_specs/scalar_root.yaml:1:1: a spec must be a mapping (cnnspec:, input:, layers:), not a string\n'
        "    hint: start the file with 'cnnspec: 1'"
    ),
    'shape_collapse.yaml': (
        'tests/bad_specs/shape_collapse.yaml:6:5: layers[2]: output size collapses to -1 on axis H: ⌊(5 + 0 − 7) / 1⌋ + 1 = -1\n'
        '    hint: use a smaller kernel/stride, padding, or a larger input'
    ),
    'stride_bool.yaml': 'tests/bad_specs/stride_bool.yaml:4:46: layers[0].stride: expected an integer >= 1, or a list with one such integer per spatial dim, got true (a boolean)',
    'tab_indent.yaml': (
        'tests/bad_specs/tab_indent.yaml:3:1: not valid YAML/JSON: found character that cannot start any token\n'
        '    hint: YAML indentation must use spaces, not tabs'
    ),
    'two_documents.yaml': (
        'tests/bad_specs/two_documents.yaml:5:1: not valid YAML/JSON: a second document starts here\n'
        "    hint: a spec file holds one YAML document; remove the second '---'"
    ),
    'type_Conv2D.yaml': (
        "tests/bad_specs/type_Conv2D.yaml:4:12: layers[0].type: unknown layer type 'Conv2D'\n"
        "    hint: did you mean 'conv2d'?"
    ),
    'type_Linear.yaml': (
        "tests/bad_specs/type_Linear.yaml:5:12: layers[1].type: unknown layer type 'Linear'\n"
        "    hint: did you mean 'dense'?"
    ),
    'type_MaxPooling2D.yaml': (
        "tests/bad_specs/type_MaxPooling2D.yaml:5:12: layers[1].type: unknown layer type 'MaxPooling2D'\n"
        "    hint: did you mean 'max_pool2d'?"
    ),
    'type_conv2.yaml': (
        "tests/bad_specs/type_conv2.yaml:4:12: layers[0].type: unknown layer type 'conv2'\n"
        "    hint: did you mean 'conv2d'?"
    ),
    'units_string.yaml': "tests/bad_specs/units_string.yaml:5:26: layers[1].units: expected an integer >= 1, got 'ten' (a string)",
    'utf16.yaml': (
        'tests/bad_specs/utf16.yaml: is UTF-16 text; specs must be UTF-8\n'
        '    hint: re-save the file as UTF-8'
    ),
    'version_string.yaml': (
        "tests/bad_specs/version_string.yaml:1:10: cnnspec: format version must be an integer, got '1.0'\n"
        "    hint: write 'cnnspec: 1'"
    ),
    'version_zero.yaml': (
        'tests/bad_specs/version_zero.yaml:1:10: cnnspec: unknown format version 0\n'
        "    hint: write 'cnnspec: 1'"
    ),
    'wrong_type_json.json': (
        "tests/bad_specs/wrong_type_json.json:5:35: layers[0].filters: expected an integer >= 1, got '8' (a string)\n"
        '    hint: write the number without quotes'
    ),
    'yaml_custom_tag.yaml': (
        "tests/bad_specs/yaml_custom_tag.yaml:2:8: input: YAML tag '!include' is not allowed; specs hold plain values only\n"
        '    hint: cnnspec never constructs objects from YAML tags; remove the tag'
    ),
    'yaml_python_tag.yaml': (
        "tests/bad_specs/yaml_python_tag.yaml:2:7: name: YAML tag '!!python/object/apply:os.system' is not allowed; specs hold plain values only\n"
        '    hint: cnnspec never constructs objects from YAML tags; remove the tag'
    ),
}

# Cases that need no file of their own.
NO_FILE_EXPECTED = {
    "tests/bad_specs/no_such_spec.yaml": (
        "tests/bad_specs/no_such_spec.yaml: no such file\n"
        "    hint: check the path; specs are .yaml, .yml or .json files"
    ),
    "tests/bad_specs": (
        "tests/bad_specs: is a directory, not a spec file\n"
        "    hint: name one .yaml, .yml or .json file"
    ),
}


def _relative(text: str) -> str:
    return text.replace(str(ROOT) + os.sep, "")


def _error_for(path: Path | str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        cnnspec.resolve(cnnspec.load_spec(str(path)))
    return caught.value


def test_corpus_and_table_agree():
    files = {p.name for p in CORPUS.iterdir() if p.is_file()}
    assert files == set(EXPECTED), f"missing expectations: {files - set(EXPECTED)}; stale: {set(EXPECTED) - files}"
    assert len(files) >= 45


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_spec_message_is_exact(name):
    error = _error_for(CORPUS / name)
    assert _relative(error.render()) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_spec_problems_are_located(name):
    """Every problem names its file; every problem inside the document has a line and column."""
    error = _error_for(CORPUS / name)
    for problem in error.problems:
        assert problem.file and problem.file.endswith(name)
        assert problem.message and "Value error" not in problem.message and "Input should" not in problem.message
        if problem.path:
            assert problem.line is not None and problem.column is not None


@pytest.mark.parametrize("relative", sorted(NO_FILE_EXPECTED))
def test_no_file_cases(relative):
    error = _error_for(ROOT / relative)
    assert _relative(error.render()) == NO_FILE_EXPECTED[relative]


def test_huge_file_is_refused_before_reading(tmp_path):
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as handle:
        handle.write(b"cnnspec: 1\n# ")
        handle.truncate(loader.MAX_FILE_BYTES + 1)
    error = _error_for(huge)
    assert error.render() == (
        f"{huge}: file is {loader.MAX_FILE_BYTES + 1:,} bytes; specs are limited to {loader.MAX_FILE_BYTES:,} bytes (4 MiB)\n"
        "    hint: a spec lists layers, not weights; is this the right file?"
    )


def test_huge_text_is_refused():
    with pytest.raises(SpecError, match="the limit is"):
        cnnspec.load_spec("cnnspec: 1\n" + "#" * loader.MAX_FILE_BYTES)


def test_many_values_are_refused_without_building_a_tree():
    text = "cnnspec: 1\nx: [" + ",".join(["1"] * (loader.MAX_NODES + 10)) + "]\n"
    with pytest.raises(SpecError, match=r"more than 100,000 values; refused"):
        cnnspec.load_spec(text)


def test_deep_nesting_far_beyond_the_recursion_limit():
    for text in ("x: " + "[" * 100_000, "x: " + "{a: " * 50_000):
        with pytest.raises(SpecError, match="nesting deeper than 64 levels"):
            cnnspec.load_spec(text + "\n")


def test_deep_json_nesting(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecError, match="nesting deeper than 64 levels"):
        cnnspec.load_spec(deep)


def test_billion_laughs_is_refused_quickly_in_bounded_memory():
    """The alias bomb expands to 9**10 values; refusal must stay far below that in memory."""
    tracemalloc.start()
    try:
        started = time.perf_counter()
        error = _error_for(CORPUS / "billion_laughs.yaml")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "alias bomb" in error.render()
    assert peak < 16 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"
    print(f"billion laughs refused in {elapsed * 1000:.0f} ms, peak {peak / 2**20:.1f} MiB (traced)")


def test_json_numbers_follow_json_rules(tmp_path):
    """YAML 1.1 reads 1e-3 as a string; a .json file must get JSON's number."""
    spec = tmp_path / "eps.json"
    spec.write_text(
        '{"cnnspec": 1, "input": {"channels": 3, "size": [8, 8]},\n'
        ' "layers": [{"type": "batch_norm", "epsilon": 1e-3}]}\n'
    )
    assert cnnspec.load_spec(spec).layers[0].epsilon == pytest.approx(1e-3)


def test_yaml_python_tag_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    spec = tmp_path / "tag.yaml"
    spec.write_text(f'cnnspec: 1\nname: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(SpecError, match="is not allowed"):
        cnnspec.load_spec(spec)
    assert not marker.exists()


def test_name_hint_only_for_malformed_names():
    for name, hinted in (("class", False), ("print", False), ("__import__", False), ("forward", False), ("my-conv", True)):
        text = f"cnnspec: 1\ninput: {{channels: 1, size: [8, 8]}}\nlayers:\n  - {{type: relu, name: '{name}'}}\n"
        with pytest.raises(SpecError) as caught:
            cnnspec.load_spec(text)
        assert (caught.value.problems[0].hint is not None) == hinted, name


def test_unreadable_path_characters():
    with pytest.raises(SpecError, match="NUL character"):
        cnnspec.load_spec("spec\x00.yaml")
    with pytest.raises(SpecError, match="cannot read the file|no such file"):
        cnnspec.load_spec("x" * 5000 + ".yaml")


# -- the real command line -----------------------------------------------------------------------------

CLI_CASES = [
    "not_json.json", "type_MaxPooling2D.yaml", "field_out_channels.yaml", "shape_collapse.yaml",
    "name_code_injection.yaml", "billion_laughs.yaml", "binary.bin", "yaml_python_tag.yaml",
]


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_validate_prints_the_message_and_exits_2(name):
    result = _cli("validate", f"tests/bad_specs/{name}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip("\n") == EXPECTED[name]


def test_cli_validate_missing_file_and_directory():
    for relative, expected in NO_FILE_EXPECTED.items():
        result = _cli("validate", relative)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert result.stderr.rstrip("\n") == expected
