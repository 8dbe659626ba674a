"""The explain page without a browser: structure, numbers and code lines, for examples and fuzzed specs."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from spec_strategies import valid_specs

from cnnspec.teach.explain import explain
from cnnspec.teach.source_lines import layer_lines

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


class _Cards(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cards: list[dict[str, str]] = []
        self.code: list[tuple[str, str]] = []
        self.external: list[str] = []
        self._code_target = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "section" and "layer" in (attributes.get("class") or "").split():
            self.cards.append(attributes)
        if tag == "code" and "data-target" in attributes:
            self._code_target = attributes["data-target"]
            self.code.append((self._code_target, ""))
        for name in ("src", "href"):
            value = attributes.get(name)
            if value and not value.startswith("#"):
                self.external.append(value)
        if tag == "link":
            self.external.append(str(attributes))

    def handle_endtag(self, tag):
        if tag == "code":
            self._code_target = None

    def handle_data(self, data):
        if self._code_target:
            target, text = self.code[-1]
            self.code[-1] = (target, text + data)


def read(page: str) -> _Cards:
    cards = _Cards()
    cards.feed(page)
    return cards


def check_page(spec):
    explanation = explain(spec)
    data = explanation.to_dict()
    page = explanation.page()
    cards = read(page)
    assert cards.external == []  # nothing loaded from anywhere
    assert not re.search(r"https?://", page)
    assert [c["data-name"] for c in cards.cards] == [layer["name"] for layer in data["layers"]]
    for card, layer in zip(cards.cards, data["layers"]):
        assert int(card["data-params"]) == layer["params"]
        assert card["data-nchw"] == "×".join(map(str, layer["output_shape"]["NCHW"]))
    return cards


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_pages(example):
    check_page(example)


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=valid_specs(max_layers=5))
def test_fuzzed_pages(spec):
    check_page(spec)


def test_code_lines_are_the_layers_own():
    cards = read(explain(ROOT / "examples" / "mobile_block.yaml").page())
    by_card = [cards.code[i:i + 2] for i in range(0, len(cards.code), 2)]
    names = [c["data-name"] for c in cards.cards]
    sep = dict(by_card[names.index("sep")])
    assert "self.sep_depthwise = nn.Conv2d(\n    16, 16, kernel_size=3" in sep["torch"] and "self.sep_pointwise" in sep["torch"]
    assert "layers.SeparableConv2D(24, 3," in sep["keras"] and 'name="sep"' in sep["keras"]
    branch = dict(by_card[names.index("branch")])
    assert "branch_pad = layers.ZeroPadding2D" in branch["keras"] and "groups=8" in branch["torch"]
    residual = dict(by_card[names.index("residual")])
    assert "residual = stem_act + x" in residual["torch"] and 'layers.Add(name="residual")' in residual["keras"]


def test_a_layer_name_that_is_a_prefix_of_another_keeps_its_own_lines():
    spec = {"cnnspec": 1, "name": "prefix", "input": {"channels": 1, "size": [8, 8]}, "layers": [
        {"name": "conv", "type": "conv2d", "filters": 2, "kernel_size": 3},
        {"name": "conv_pad", "type": "conv2d", "filters": 2, "kernel_size": 3, "padding": 1},
    ]}
    lines = layer_lines(explain(spec).plan)
    assert all("conv_pad" not in line for line in lines["conv"]["torch"] + lines["conv"]["keras"])
    assert any("self.conv_pad = nn.Conv2d" in line for line in lines["conv_pad"]["torch"])


def test_page_survives_a_target_that_refuses_the_spec(monkeypatch):
    """When one emitter refuses the plan, the page says so for that target and keeps the other's lines."""
    import cnnspec.teach.page as page_module
    from cnnspec.errors import CnnspecError

    real = page_module.generated_sources

    def torch_refuses(plan):
        sources = real(plan)
        sources["torch"] = CnnspecError("layer name 'x' clashes")
        return sources

    monkeypatch.setattr(page_module, "generated_sources", torch_refuses)
    page = explain(ROOT / "examples" / "mnist_convnet.yaml").page()
    assert "source not available: layer name &#x27;x&#x27; clashes" in page
    assert "layers.Conv2D(32, 3," in page
