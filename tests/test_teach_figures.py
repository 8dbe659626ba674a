"""Every figure of the teaching material (../shared/seed-figures.md) appears, correctly, in the table and the page.

The expected numbers are the material's (and torchvision's / Keras' documented ones), written out here,
not taken from cnnspec.  The material's known errors (291×291) must not appear.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cnnspec.teach.explain import explain

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
EXERCISES = EXAMPLES / "exercises"


class _PageReader(HTMLParser):
    """Layer cards (their data-* numbers), totals and every formula's text from the explain page."""

    def __init__(self):
        super().__init__()
        self.layers: list[dict[str, str]] = []
        self.totals: dict[str, str] = {}
        self.formulas: list[str] = []
        self.text: list[str] = []
        self._in_formula = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        if tag == "section" and "layer" in classes:
            self.layers.append(attributes)
        if tag == "table" and attributes.get("id") == "totals":
            self.totals = attributes
        if "formula" in classes:
            self._in_formula = 1
            self.formulas.append("")
        elif tag == "span" and self._in_formula:
            self._in_formula += 1  # a span inside the formula

    def handle_endtag(self, tag):
        if tag == "span" and self._in_formula:
            self._in_formula -= 1

    def handle_data(self, data):
        self.text.append(data)
        if self._in_formula:
            self.formulas[-1] += data


def page_of(spec, lang="en") -> _PageReader:
    reader = _PageReader()
    reader.feed(explain(spec, lang=lang).page())
    return reader


def table_rows(text: str) -> dict[str, str]:
    """layer name -> its row of the table (the line starting with the name)."""
    rows = {}
    for line in text.splitlines():
        if line and not line.startswith(" "):
            rows[line.split()[0]] = line
    return rows


def one_layer(size, layer, channels=1):
    return {"cnnspec": 1, "name": "figure", "input": {"channels": channels, "size": list(size)}, "layers": [layer]}


def check_everywhere(spec, shapes_nhwc: list[str], params: list[str] | None = None, formulas=(), total=None):
    """The shapes (Keras order, as the material writes them), params and formulas in the table and the page."""
    for lang in ("en", "ko"):
        text = explain(spec, lang=lang).text()
        rows = [line for line in text.splitlines() if line and not line.startswith(" ")]
        for shape in shapes_nhwc:
            assert any(re.search(rf"\s{re.escape(shape)}(\s|$)", row) for row in rows), (shape, text)
        worded = [f for f in formulas if re.search("[a-z]", f)]  # English words: checked in the English table
        for formula in formulas:
            if lang == "en" or formula not in worded:
                assert formula in text, (formula, text)
        page = page_of(spec, lang)
        assert [layer["data-nhwc"] for layer in page.layers][: len(shapes_nhwc)] == shapes_nhwc
        for formula in formulas:
            if lang == "en" or formula not in worded:
                bare = re.sub(r"^[DHWL]: ", "", formula)
                assert any(bare in shown for shown in page.formulas), (bare, page.formulas)
        if params is not None:
            assert [layer["data-params"] for layer in page.layers] == [p.replace(",", "") for p in params]
            input_row = rows.index(next(r for r in rows if r.startswith(("input", "입력"))))
            for row, count in zip(rows[input_row + 1:], params):
                assert row.split()[-1] == count, (row, count)
        if total is not None:
            assert page.totals["data-total"] == str(total)
            assert f"{total:,}" in text


# -- output size ---------------------------------------------------------------------------------

OUTPUT_SIZE_EXERCISES = [
    ("alexnet_conv1_227.yaml", ["55×55×96"], ["⌊(227 + 0 − 11) / 4⌋ + 1 = 55"]),
    ("k7_s2_64.yaml", ["29×29×8"], ["⌊(64 + 0 − 7) / 2⌋ + 1 = 29"]),
    ("k5_p2_32.yaml", ["32×32×8"], ["⌊(32 + 4 − 5) / 1⌋ + 1 = 32"]),
    ("k5_32x64.yaml", ["28×60×8"], ["H: ⌊(32 + 0 − 5) / 1⌋ + 1 = 28", "W: ⌊(64 + 0 − 5) / 1⌋ + 1 = 60"]),
    ("k3_p1_64x32.yaml", ["64×32×8"], ["H: ⌊(64 + 2 − 3) / 1⌋ + 1 = 64", "W: ⌊(32 + 2 − 3) / 1⌋ + 1 = 32"]),
    ("conv_pool_28.yaml", ["24×24×5", "12×12×5"], ["⌊(28 + 0 − 5) / 1⌋ + 1 = 24", "⌊(24 + 0 − 2) / 2⌋ + 1 = 12"]),
    ("conv_k5_p1.yaml", ["26×26×20"], ["⌊(28 + 2 − 5) / 1⌋ + 1 = 26", "1 before, 1 after"]),
]


@pytest.mark.parametrize("name,shapes,formulas", OUTPUT_SIZE_EXERCISES, ids=[e[0] for e in OUTPUT_SIZE_EXERCISES])
def test_output_size_exercises(name, shapes, formulas):
    check_everywhere(EXERCISES / name, shapes, formulas=formulas)


def test_conv2d_1_5_5_then_maxpool_in_pytorch_layout():
    text = explain(EXERCISES / "conv_pool_28.yaml").text()
    rows = table_rows(text)
    assert " 5×24×24 " in rows["conv"] and " 5×12×12 " in rows["pool"]
    assert "5·5·1·5 + 5 = 125 + 5 = 130" in text


def test_errata_295_is_corrected():
    text = explain(EXERCISES / "errata_295.yaml").text()
    check_everywhere(EXERCISES / "errata_295.yaml", ["295×295×16", "147×147×16"],
                     formulas=["⌊(295 + 2 − 3) / 1⌋ + 1 = 295", "⌊(295 + 0 − 2) / 2⌋ + 1 = 147"])
    assert "291" not in text


KERAS_SAME = [(1, "20×10×1"), (2, "10×5×1"), (3, "7×4×1"), (4, "5×3×1")]
KERAS_VALID = [(1, "17×7×1"), (2, "9×4×1"), (3, "6×3×1"), (4, "5×2×1"), (5, "4×2×1")]


@pytest.mark.parametrize("padding,stride,shape", [("same", s, x) for s, x in KERAS_SAME]
                         + [("valid", s, x) for s, x in KERAS_VALID])
def test_keras_same_and_valid_on_20x10_with_a_4x4_kernel(padding, stride, shape):
    spec = one_layer((20, 10), {"type": "conv2d", "filters": 1, "kernel_size": 4, "stride": stride, "padding": padding})
    check_everywhere(spec, [shape])
    if padding == "same":
        text = explain(spec).text()
        assert f"⌈20 / {stride}⌉ = {shape.split('×')[0]}" in text and f"⌈10 / {stride}⌉ = {shape.split('×')[1]}" in text


def test_same_pool_after_same_conv_follows_the_same_rule():
    spec = {"cnnspec": 1, "name": "figure", "input": {"channels": 1, "size": [20, 10]}, "layers": [
        {"type": "conv2d", "filters": 2, "kernel_size": 4, "stride": 2, "padding": "same"},
        {"type": "max_pool2d", "pool_size": 2, "padding": "same"}]}
    check_everywhere(spec, ["10×5×2", "5×3×2"], formulas=["⌈10 / 2⌉ = 5", "⌈5 / 2⌉ = 3",
                                                         "total (3 − 1)·2 + 2 − 5 = 1 → 0 before, 1 after"])


# -- parameter counts ------------------------------------------------------------------------------

def test_keras_mnist_convnet():
    check_everywhere(
        EXAMPLES / "mnist_convnet.yaml",
        ["26×26×32", "13×13×32", "11×11×64", "5×5×64", "3×3×128", "1152", "10"],
        ["320", "0", "18,496", "0", "73,856", "0", "11,530"],
        formulas=["1,152·10 + 10 = 11,520 + 10 = 11,530"], total=104_202,
    )


def test_mnist_convnet_without_pooling():
    check_everywhere(
        EXAMPLES / "mnist_convnet_no_pool.yaml",
        ["26×26×32", "24×24×64", "22×22×128", "61952", "10"],
        ["320", "18,496", "73,856", "0", "619,530"], total=712_202,
    )
    notes = " ".join(n["text"] for n in explain(EXAMPLES / "mnist_convnet_no_pool.yaml").to_dict()["notes"])
    assert "down-sampling" in notes and "712,202" in notes


def test_pytorch_cnn_class():
    path = EXAMPLES / "pytorch_cnn.yaml"
    check_everywhere(path, ["28×28×32"], total=119_530)
    tensors = [tuple(t["shape"]) for layer in explain(path).to_dict()["layers"]
               for t in layer["param_arithmetic"]["tensors"]]
    assert tensors == [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (32, 3136), (32,), (10, 32), (10,)]
    assert "3,136·32 + 32 = 100,352 + 32 = 100,384" in explain(path).text()
    bn = explain(EXAMPLES / "pytorch_cnn_bn.yaml").to_dict()
    assert (bn["trainable_params"], bn["non_trainable_params"]) == (119_722, 192)


def test_3x3_conv_from_128_to_64_channels():
    spec = one_layer((8, 8), {"type": "conv2d", "filters": 64, "kernel_size": 3}, channels=128)
    check_everywhere(spec, ["6×6×64"], ["73,792"], formulas=["3·3·128·64 + 64 = 73,728 + 64 = 73,792"])


def test_alexnet_total():
    check_everywhere(EXAMPLES / "alexnet.yaml", ["55×55×64", "27×27×64"], total=61_100_840)


# -- concepts --------------------------------------------------------------------------------------

def _all_notes(*paths) -> str:
    return " ".join(n["text"] for p in paths for n in explain(p).to_dict()["notes"])


def test_concepts_appear_in_the_notes():
    notes = _all_notes(*(EXAMPLES / f"{n}.yaml" for n in (
        "mnist_convnet", "signal_1d", "volume_3d", "autoencoder", "same_stride2", "pytorch_cnn_bn")))
    for phrase in (
        "cross-correlation (the kernel is not flipped)",
        "a kernel is as deep as the input has channels",
        "the number of kernels is the number of output channels",
        "PyTorch stores a batch as (N, C, H, W) and Keras as (N, H, W, C)",
        "(batch, steps, features)", "(batch, d1, d2, d3, channels)",
        "pooling has no trainable parameters", "maximum or average",
        "flatten lays the", "spaces the kernel's footprints 2 apart and sums the overlaps",
        "Keras 'same' crops it to 7·2 = 14", "keeps the whole footprint",
        "batch statistics in training and with the moving ones in evaluation",
        "dropout: active in training only",
    ):
        assert phrase in notes, phrase


def test_concepts_on_the_page_in_korean():
    page = "".join(page_of(EXAMPLES / "mnist_convnet.yaml", "ko").text)
    assert "교차상관" in page and "레이아웃" in page and "104,202" in page


def test_the_figure_check_fails_on_the_materials_wrong_figure():
    """Negative control: the erratum's 291×291 (and a wrong total) must not pass the check."""
    with pytest.raises(AssertionError):
        check_everywhere(EXERCISES / "errata_295.yaml", ["291×291×16"])
    with pytest.raises(AssertionError):
        check_everywhere(EXAMPLES / "mnist_convnet.yaml", ["26×26×32"], total=104_201)
