"""explain: every printed formula evaluates to its printed result; notes fit the model; en/ko; --json; the API."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from spec_strategies import valid_specs

import cnnspec
from cnnspec.teach.explain import display_width, explain
from cnnspec.teach.formulas import eval_formula
from cnnspec.teach.i18n import CATALOG, LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))

# A formula is numbers joined by operators; the chain must hold at least one '='.
_NUMBER = r"[⌊⌈(]*−?\d+(?:,\d{3})*(?:\.\d+)?[⌋⌉)]*"
_FORMULA = re.compile(rf"{_NUMBER}(?:\s*(?:[·+−/=])\s*{_NUMBER})+")


def formulas_in(text: str) -> list[str]:
    """Every arithmetic chain with an '=' in ``text``."""
    return [m.group(0) for m in _FORMULA.finditer(text) if "=" in m.group(0)]


def assert_formulas_hold(text: str) -> int:
    """Evaluate every side of every chain in ``text``; returns how many chains were checked."""
    found = formulas_in(text)
    for formula in found:
        sides = [side.strip() for side in formula.split("=")]
        values = [eval_formula(side) for side in sides]
        assert len(set(values)) == 1, f"{formula!r} evaluates to {values}"
    return len(found)


def json_strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in json_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in json_strings(v)]
    return []


def test_the_formula_checker_catches_a_wrong_formula():
    """Negative control: the dec2 line as the old explain printed it must fail the check."""
    with pytest.raises(AssertionError):
        assert_formulas_hold("dec2  (14 − 1)·2 + 3 − 1 + 1 = 28")
    with pytest.raises(AssertionError):
        assert_formulas_hold("3·3·128·64 + 64 = 73,728 + 64 = 73,728")
    assert assert_formulas_hold("⌊(28 + 0 − 3) / 1⌋ + 1 = 26 and ⌈32 / 2⌉ = 16") == 2
    assert assert_formulas_hold("⌊3·0.5⌋ = 1") == 1  # a decimal scale factor is read whole
    with pytest.raises(AssertionError):
        assert_formulas_hold("⌊3·0.5⌋ = 2")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_formula_of_every_example_evaluates(example):
    for lang in LANGUAGES:
        explanation = explain(example, lang=lang)
        data = explanation.to_dict()
        checked = assert_formulas_hold(explanation.text())
        assert_formulas_hold(explanation.text(wide=True))
        assert_formulas_hold("\n".join(json_strings(data)))
        shown = sum(1 for layer in data["layers"] for group in layer["size"] if "=" in group["text"])
        assert checked >= shown


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=valid_specs())
def test_every_formula_of_fuzzed_specs_evaluates(spec):
    explanation = explain(spec)
    text = explanation.text()
    assert_formulas_hold(text)
    assert_formulas_hold(explanation.text(wide=True))
    assert_formulas_hold("\n".join(json_strings(explanation.to_dict())))
    for line in text.splitlines():
        assert display_width(line) <= 100, line
    assert_formulas_hold(explain(spec, lang="ko").text())


def test_dec2_crop_is_padding_on_both_sides_then_output_padding():
    text = explain(ROOT / "examples" / "autoencoder.yaml").text()
    assert "(14 − 1)·2 + 3 − 2·1 + 1 = 28" in text
    assert "full output (14 − 1)·2 + 3 = 29" in text
    assert "padding=1 crops 1 at each side" in text and "output_padding=1 adds 1 at the end" in text
    assert "crop 1+0" not in text


def test_same_shows_the_total_and_its_split():
    text = explain(ROOT / "examples" / "same_stride2.yaml").text()
    assert "total (16 − 1)·2 + 3 − 32 = 1 → 0 before, 1 after" in text
    assert "total (8 − 1)·2 + 4 − 16 = 2 → 1 before, 1 after" in text  # 4×4 kernel: even total, symmetric


def test_transposed_conv_note_compares_keras_same_with_pytorch():
    notes = " ".join(n["text"] for n in explain(ROOT / "examples" / "autoencoder.yaml").to_dict()["notes"])
    assert "Keras 'same' crops it to 7·2 = 14" in notes
    assert "padding=1, output_padding=0, which crops the same cells" in notes  # k 4, s 2: equivalent
    odd = {"cnnspec": 1, "input": {"channels": 2, "size": [7, 7]},
           "layers": [{"type": "conv_transpose2d", "filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"}]}
    notes = " ".join(n["text"] for n in explain(odd).to_dict()["notes"])
    assert "padding=1, output_padding=1" in notes and "shifted by one cell" in notes  # k 3, s 2: not equivalent


def _notes(spec) -> str:
    return " ".join(n["text"] for n in explain(spec).to_dict()["notes"])


def test_notes_follow_the_rank():
    text = " ".join(explain(ROOT / "examples" / "volume_3d.yaml").text().split())
    assert "C,H,W" not in text and "(N, C, H, W)" not in text
    assert "C,D,H,W" in text and "(N, C, D, H, W)" in text and "(batch, d1, d2, d3, channels)" in text
    assert "D: 0 before, 1 after" in text  # the 3-D pool's padding names its axes
    one = " ".join(explain(ROOT / "examples" / "signal_1d.yaml").text().split())
    assert "(N, C, L)" in one and "(batch, steps, features)" in one and "H, W" not in one
    assert "L: ⌈100 / 2⌉ = 50" in one


def test_no_max_note_for_average_only_models():
    notes = _notes(ROOT / "examples" / "volume_3d.yaml")
    assert "max" not in notes
    assert "average" in notes
    assert "never win a max" in _notes(ROOT / "examples" / "same_stride2.yaml")


def test_same_note_says_what_padding_p_would_do_from_the_numbers():
    # k 4, stride 1, 'same' on 10: total 3 = 1 + 2; PyTorch padding=2 would give 11, not shift.
    spec = {"cnnspec": 1, "input": {"channels": 1, "size": [10]},
            "layers": [{"type": "conv1d", "filters": 2, "kernel_size": 4, "padding": "same"}]}
    notes = _notes(spec)
    assert "⌊(10 + 4 − 4) / 1⌋ + 1 = 11 instead of 10" in notes
    assert "shift" not in notes
    # stride 2 on 32 (the tutorial case): same size, windows shifted.
    notes = _notes(ROOT / "examples" / "same_stride2.yaml")
    assert "padding=1" in notes and "every window starts one cell earlier" in notes


def test_no_same_note_when_same_is_symmetric():
    spec = {"cnnspec": 1, "input": {"channels": 1, "size": [9, 9]},
            "layers": [{"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": "same"}]}
    assert "SAME_UPPER" not in _notes(spec)


def test_inputs_column_only_for_graphs():
    graph = explain(ROOT / "examples" / "mobile_block.yaml").text()
    header = next(line for line in graph.splitlines() if line.startswith("layer "))
    assert "inputs" in header
    assert re.search(r"^residual\s+add\s+stem_act, project\s", graph, re.MULTILINE)
    chain = explain(ROOT / "examples" / "mnist_convnet.yaml").text()
    assert "inputs" not in next(line for line in chain.splitlines() if line.startswith("layer "))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_table_fits_100_columns(example):
    for lang in LANGUAGES:
        for line in explain(example, lang=lang).text().splitlines():
            assert display_width(line) <= 100, line


def test_wide_form_keeps_each_layer_on_one_line():
    text = explain(ROOT / "examples" / "autoencoder.yaml").text(wide=True)
    dec2 = next(line for line in text.splitlines() if line.startswith("dec2 "))
    assert "(14 − 1)·2 + 3 − 2·1 + 1 = 28" in dec2 and "3·3·8·4 + 4 = 288 + 4 = 292" in dec2


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_json_carries_everything_the_table_shows(example):
    explanation = explain(example)
    data = explanation.to_dict()
    strings = set(json_strings(data))
    wide = explanation.text(wide=True)
    for layer in data["layers"]:
        for group in layer["size"] + layer["padding_text"]:
            assert group["text"] in wide
            assert group["text"] in strings
        if layer["param_formula"]:
            assert layer["param_formula"] in wide
    for note in data["notes"]:
        assert " ".join(note["text"].split()) in " ".join(explanation.text(wide=True).split())
    flatten = [layer for layer in data["layers"]
               if layer["type"] == "flatten" and len(layer["input_shapes"][0]["NCHW"]) > 1]
    for layer in flatten:
        expected = {"torch_order", "keras_order", "torch_index", "keras_index", "torch_formula", "keras_formula"}
        assert expected <= set(layer["flatten_order"])


def test_flatten_order_worked_cell_matches_a_real_reshape():
    """The two index formulas agree with C-order ravel of (C, H, W) and of (H, W, C)."""
    shape = (128, 3, 3)
    order = explain(ROOT / "examples" / "mnist_convnet.yaml").to_dict()["layers"][5]["flatten_order"]
    c, h, w = order["cell"]["c"], order["cell"]["h"], order["cell"]["w"]
    assert order["torch_position"] == (c * shape[1] + h) * shape[2] + w
    assert order["keras_position"] == (h * shape[2] + w) * shape[0] + c
    assert order["torch_index"] == "c·H·W + h·W + w" and order["keras_index"] == "(h·W + w)·C + c"
    assert order["torch_formula"] == "1·3·3 + 1·3 + 1 = 13"
    assert order["keras_formula"] == "(1·3 + 1)·128 + 1 = 513"


def test_python_api_returns_what_the_cli_prints():
    path = ROOT / "examples" / "mobile_block.yaml"
    result = subprocess.run([sys.executable, "-m", "cnnspec", "explain", "--json", str(path)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert cnnspec.explain(path).to_dict() == json.loads(result.stdout)
    table = subprocess.run([sys.executable, "-m", "cnnspec", "explain", "--lang", "ko", str(path)],
                           capture_output=True, text=True, cwd=ROOT, timeout=120).stdout
    assert table == str(cnnspec.explain(path, lang="ko"))


def test_notebook_rendering_is_a_table():
    rendered = cnnspec.explain(ROOT / "examples" / "mnist_convnet.yaml")._repr_html_()
    assert rendered.count("<tr>") == 1 + 7 and "<table>" in rendered
    assert "104,202" in rendered and "3·3·64·128 + 128 = 73,728 + 128 = 73,856" in rendered


def test_no_submodule_called_explain():
    assert importlib.util.find_spec("cnnspec.explain") is None
    import cnnspec.teach.explain

    assert callable(cnnspec.explain) and cnnspec.explain.__module__ == "cnnspec.teach.explain"
    assert "explain" in cnnspec.__all__


def test_korean_labels_and_notes_with_the_same_formulas():
    path = ROOT / "examples" / "same_stride2.yaml"
    english, korean = explain(path).text(), explain(path, lang="ko").text()
    assert "레이어" in korean and "참고:" in korean and "전체 파라미터: 9,002" in korean
    assert "앞 0, 뒤 1" in korean
    assert sorted(formulas_in(english)) == sorted(formulas_in(korean))
    assert explain(path, lang="ko").to_dict()["notes"][0]["text"].startswith("레이아웃")


def test_catalog_is_complete_in_every_language():
    for key, entry in CATALOG.items():
        assert set(entry) == set(LANGUAGES), key
        fields_en = set(re.findall(r"{(\w+)}", entry["en"]))
        assert fields_en == set(re.findall(r"{(\w+)}", entry["ko"])), key


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="unknown language"):
        explain(ROOT / "examples" / "mnist_convnet.yaml", lang="fr")
    result = subprocess.run([sys.executable, "-m", "cnnspec", "explain", "--lang", "fr",
                             str(ROOT / "examples" / "mnist_convnet.yaml")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_layer_norm_is_not_suggested_as_batch_norm(tmp_path):
    spec = tmp_path / "ln.yaml"
    spec.write_text("cnnspec: 1\ninput: {channels: 1, size: [8, 8]}\nlayers:\n  - {type: layernorm_x}\n"
                    "  - {type: layer_norm}\n")
    from cnnspec.load.loader import suggest_type

    assert suggest_type("layer_norm") != "batch_norm"
    assert suggest_type("group_norm") != "batch_norm"
    assert suggest_type("batch_nrom") == "batch_norm"  # a real misspelling still gets its suggestion
    assert suggest_type("max_pol2d") == "max_pool2d"


def test_a_type_word_without_its_rank_is_completed_with_the_specs_rank():
    """'maxpool' in a 2-D spec is max_pool2d (difflib alone offered max_pool3d), in a 1-D spec
    max_pool1d; a word that names its rank keeps it."""
    from cnnspec.errors import SpecError
    from cnnspec.load.loader import validate_data

    def hints(size, *types):
        document = {"cnnspec": 1, "input": {"channels": 1, "size": size},
                    "layers": [{"type": t} for t in types]}
        with pytest.raises(SpecError) as caught:
            validate_data(document)
        return [problem.hint for problem in caught.value.problems]

    assert hints([8, 8], "maxpool", "avgpool", "conv") == [
        "did you mean 'max_pool2d'?", "did you mean 'avg_pool2d'?", "did you mean 'conv2d'?"]
    assert hints([8], "maxpool", "conv", "Conv2D") == [
        "did you mean 'max_pool1d'?", "did you mean 'conv1d'?", "did you mean 'conv2d'?"]
    assert hints([4, 4, 4], "maxpool", "batchnorm") == [
        "did you mean 'max_pool3d'?", "did you mean 'batch_norm'?"]


def test_shape_errors_name_the_axis(tmp_path):
    spec = {"cnnspec": 1, "input": {"channels": 1, "size": [9, 4, 16]},
            "layers": [{"type": "conv3d", "filters": 2, "kernel_size": [3, 5, 3]}]}
    with pytest.raises(cnnspec.SpecError, match=r"collapses to 0 on axis H: ⌊\(4 \+ 0 − 5\) / 1⌋ \+ 1 = 0"):
        cnnspec.resolve(spec)
    spec = {"cnnspec": 1, "input": {"channels": 1, "size": [9]},
            "layers": [{"type": "conv1d", "filters": 2, "kernel_size": [3, 3]}]}
    with pytest.raises(cnnspec.SpecError, match=r"1 spatial dim\(s\) \(L\)"):
        cnnspec.resolve(spec)


def test_cli_html_writes_atomically_and_refuses_bad_input(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "cnnspec", "explain", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    out = tmp_path / "page.html"
    spec = str(ROOT / "examples" / "mnist_convnet.yaml")
    assert run(spec, "--html", str(out)).returncode == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    again = run(spec, "--html", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    assert run(spec, "--html", str(out), "--force", "--lang", "ko").returncode == 0
    assert '<html lang="ko">' in out.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("cnnspec: 1\ninput: {channels: 1, size: [4, 4]}\n"
                   "layers:\n  - {type: conv2d, filters: 2, kernel_size: 5}\n")
    failed = run(str(bad), "--html", str(tmp_path / "bad.html"))
    assert failed.returncode == 2 and "on axis H" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "bad.html").exists()
    missing = run(spec, "--html", str(tmp_path / "no" / "such" / "page.html"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "page.html"]  # no temporary left behind


def test_explain_html_imports_no_framework(tmp_path):
    code = (
        "import sys\nfrom cnnspec.cli.main import main\n"
        f"rc = main(['explain', {str(ROOT / 'examples' / 'mobile_block.yaml')!r}, '--html', "
        f"{str(tmp_path / 'p.html')!r}])\n"
        "import cnnspec\nx = cnnspec.explain({!r})._repr_html_()\n".format(str(ROOT / "examples" / "autoencoder.yaml"))
        + "print(rc, sorted(m for m in ('torch', 'tensorflow', 'keras', 'onnx', 'numpy') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "0 []", result.stdout + result.stderr


def test_dense_after_flatten_names_its_weight_order():
    layers = {layer["name"]: layer for layer in explain(ROOT / "examples" / "alexnet.yaml").to_dict()["layers"]}
    assert layers["fc6"]["kernel_rows"]["feature_maps"] == [[256, 6, 6]]  # through the dropout after flatten
    assert layers["fc6"]["kernel_rows"]["orders"] == [{"torch_index": "c·H·W + h·W + w",
                                                       "keras_index": "(h·W + w)·C + c"}]
    assert "kernel_rows" not in layers["fc7"]
    pooled = {layer["name"]: layer for layer in explain(ROOT / "examples" / "mobile_block.yaml").to_dict()["layers"]}
    assert "kernel_rows" not in pooled["classifier"]  # global pooling: the same vector in both frameworks
