"""The loader owns its limits, whatever YAML parser reads the text.

PyYAML 6.0.4's libyaml refuses nesting deeper than 1000 on its own, and reads ahead while doing
so: before cnnspec's bound was checked independently of that, a deep document got the parser's
"exceeded maximum nesting depth" instead of cnnspec's message and location. Every case here
runs with libyaml (when PyYAML has it), with the pure-Python parser, and with a simulated
parser that reads the whole stream ahead and enforces its own, lower nesting limit.
Expected locations are worked out from how each text is built, not read from cnnspec.
"""

from __future__ import annotations

import pytest
import yaml

from cnnspec.errors import SpecError
from cnnspec.load import loader
from cnnspec.load.loader import MAX_DEPTH, MAX_NODES, parse_text

PARSER_LIMIT = 200  # the simulated parser's own nesting limit: above cnnspec's, below the documents'


class LookAheadLimitedLoader(yaml.SafeLoader):
    """A parser with a nesting limit of its own that scans the whole stream before the first event."""

    def need_more_tokens(self):
        return not self.done

    def _refuse_depth(self):
        raise yaml.scanner.ScannerError(None, None, "exceeded maximum nesting depth", self.get_mark())

    def fetch_flow_collection_start(self, TokenClass):
        if self.flow_level + len(self.indents) >= PARSER_LIMIT:
            self._refuse_depth()
        super().fetch_flow_collection_start(TokenClass)

    def add_indent(self, column):
        if len(self.indents) + self.flow_level >= PARSER_LIMIT:
            self._refuse_depth()
        return super().add_indent(column)


PARSERS = {
    "libyaml": getattr(yaml, "CSafeLoader", None),
    "pure-python": yaml.SafeLoader,
    "look-ahead-limited": LookAheadLimitedLoader,
}


@pytest.fixture(params=list(PARSERS))
def parser(request, monkeypatch):
    loader_class = PARSERS[request.param]
    if loader_class is None:
        pytest.skip("PyYAML was built without libyaml")
    monkeypatch.setattr(loader, "_yaml_loader_class", lambda: loader_class)
    return request.param


def _refusal(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        parse_text(text, "spec.yaml")
    return caught.value.render()


DEPTH_MESSAGE = f"nesting deeper than {MAX_DEPTH} levels; refused"


def test_flow_sequences_far_deeper_than_any_parser_limit(parser):
    prefix = "x: "  # the root mapping is level 1; the k-th '[' opens level k + 1
    column = len(prefix) + MAX_DEPTH  # 1-based column of the MAX_DEPTH-th '[' (level MAX_DEPTH + 1)
    assert _refusal(prefix + "[" * 100_000 + "\n") == f"spec.yaml:1:{column}: {DEPTH_MESSAGE}"


def test_flow_mappings_far_deeper_than_any_parser_limit(parser):
    prefix, opener = "x: ", "{a: "
    column = len(prefix) + len(opener) * (MAX_DEPTH - 1) + 1
    assert _refusal(prefix + opener * 50_000 + "\n") == f"spec.yaml:1:{column}: {DEPTH_MESSAGE}"


def test_block_sequences_deeper_than_the_parsers_limits(parser):
    # "- - - ... 1": the k-th '-' (column 2k - 1) opens level k.
    column = 2 * (MAX_DEPTH + 1) - 1
    assert _refusal("- " * 1500 + "1\n") == f"spec.yaml:1:{column}: {DEPTH_MESSAGE}"


def test_block_mappings_deeper_than_the_parsers_limits(parser):
    # Line k (1-based) holds 'a:' indented by k - 1 spaces and opens level k.
    text = "".join(" " * i + "a:\n" for i in range(1500)) + " " * 1500 + "1\n"
    line = MAX_DEPTH + 1
    assert _refusal(text) == f"spec.yaml:{line}:{line}: {DEPTH_MESSAGE}"


def test_deep_document_with_a_syntax_error_after_the_deep_part(parser):
    text = "x: " + "[" * 5000 + "1" + "]" * 4999 + "\n"  # one ']' short
    assert _refusal(text) == f"spec.yaml:1:{3 + MAX_DEPTH}: {DEPTH_MESSAGE}"


def test_shallow_syntax_error_keeps_the_parsers_message(parser):
    rendered = _refusal("x: [[[1]]\ny: 2\n")
    assert rendered.startswith("spec.yaml:") and "not valid YAML/JSON" in rendered
    assert "nesting" not in rendered


def test_nesting_at_the_limit_is_accepted(parser):
    text = "x: " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1) + "\n"  # root + 63 lists = 64 levels
    data, _ = parse_text(text, "spec.yaml")
    depth, value = 1, data["x"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert depth == MAX_DEPTH and value == 1


def test_billion_laughs(parser):
    rows = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for previous, name in zip("abcdefghi", "bcdefghij"):
        rows.append(f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]")
    # a = 10 values (the list and 9 strings); each next list = 1 + 9 * previous: 91, 820, 7381, 66430, 597871.
    # 'f' (line 6, its anchor at column 4) is the first to expand beyond the limit.
    expected = (
        "spec.yaml:6:4: this value expands to 597,871 values through YAML aliases (an alias bomb?); "
        f"refused, the limit is {MAX_NODES:,}"
    )
    assert _refusal("\n".join(rows) + "\n") == expected


def test_recursive_alias(parser):
    text = "cnnspec: 1\ninput: &loop {channels: 3, again: *loop}\n"
    assert _refusal(text) == (
        "spec.yaml:2:8: a YAML alias refers to the value that contains it (an endless value); refused"
    )


def test_too_many_values(parser):
    text = "x: [" + ",".join(["1"] * (MAX_NODES + 10)) + "]\n"
    # values: the root mapping, 'x', the list, then the items; item k sits at column 5 + 2(k - 1).
    first_item_beyond = MAX_NODES + 1 - 3
    column = 5 + 2 * (first_item_beyond - 1)
    assert _refusal(text) == (
        f"spec.yaml:1:{column}: document holds more than {MAX_NODES:,} values; refused\n"
        "    hint: a spec lists layers, not weights; is this the right file?"
    )


def test_the_simulated_parser_really_refuses_on_its_own():
    """The negative control: without cnnspec's re-check its error would be the one shown."""
    events = LookAheadLimitedLoader("x: " + "[" * 1000 + "\n")
    with pytest.raises(yaml.scanner.ScannerError, match="exceeded maximum nesting depth"):
        events.check_event()  # the whole stream is scanned before the first event
