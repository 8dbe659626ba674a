"""validate / explain / schema through the real command line, and the framework-free core."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def run(*args, cwd=ROOT, input=None):
    return subprocess.run([sys.executable, "-m", "cnnspec", *args], cwd=cwd, capture_output=True, text=True, input=input, timeout=120)


def test_validate_every_example():
    result = run("validate", *map(str, EXAMPLES))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok") == len(EXAMPLES)


def test_validate_bad_spec_is_located_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cnnspec: 1\ninput: {channels: 1, size: [28, 28]}\nlayers:\n  - {type: conv2d, out_channels: 8, kernel_size: 3}\n")
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad}:4:" in result.stderr
    assert "layers[0].out_channels: unknown field 'out_channels'" in result.stderr
    assert "'filters'" in result.stderr


def test_validate_shape_error_shows_the_arithmetic(tmp_path):
    bad = tmp_path / "collapse.yaml"
    bad.write_text("cnnspec: 1\ninput: {channels: 1, size: [4, 4]}\nlayers:\n  - {type: conv2d, filters: 2, kernel_size: 5}\n")
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert f"{bad}:4:5: layers[0]: output size collapses to 0 on axis H: ⌊(4 + 0 − 5) / 1⌋ + 1 = 0" in result.stderr


def test_explain_json_contract():
    result = run("explain", "--json", str(ROOT / "examples" / "mnist_convnet.yaml"))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["total_params"] == 104_202
    assert data["trainable_params"] == 104_202 and data["non_trainable_params"] == 0
    assert data["output_shape"] == {"NCHW": [10], "NHWC": [10]}
    first = data["layers"][0]
    assert first["name"] == "conv2d_0" and first["type"] == "conv2d"
    assert first["output_shape"] == {"NCHW": [32, 26, 26], "NHWC": [26, 26, 32]}
    assert first["params"] == 320


def test_explain_json_1d_and_3d_layout_names():
    one = json.loads(run("explain", "--json", str(ROOT / "examples" / "signal_1d.yaml")).stdout)
    three = json.loads(run("explain", "--json", str(ROOT / "examples" / "volume_3d.yaml")).stdout)
    assert one["layouts"] == {"NCHW": "NCL", "NHWC": "NLC"}
    assert one["layers"][0]["output_shape"] == {"NCHW": [16, 50], "NHWC": [50, 16]}
    assert three["layouts"] == {"NCHW": "NCDHW", "NHWC": "NDHWC"}
    assert three["layers"][0]["output_shape"] == {"NCHW": [8, 9, 16, 16], "NHWC": [9, 16, 16, 8]}


def test_explain_table_has_both_layouts_and_formulas():
    result = run("explain", str(ROOT / "examples" / "same_stride2.yaml"))
    assert result.returncode == 0
    assert "NCHW" in result.stdout and "NHWC" in result.stdout
    assert "same: H, W: total (16 − 1)·2 + 3 − 32 = 1 → 0 before, 1 after" in result.stdout
    assert "⌈32 / 2⌉ = 16" in result.stdout


def test_schema_file_is_current():
    committed = (ROOT / "schemas" / "cnnspec.schema.json").read_text()
    assert run("schema").stdout == committed, "schemas/cnnspec.schema.json is stale: run `cnnspec schema -o schemas/cnnspec.schema.json --force`"


def test_examples_validate_against_the_committed_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads((ROOT / "schemas" / "cnnspec.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for example in EXAMPLES:
        errors = list(validator.iter_errors(yaml.safe_load(example.read_text())))
        assert not errors, f"{example}: {errors[0].message}"
    bad = {"cnnspec": 1, "input": {"channels": 1, "size": [4]}, "layers": [{"type": "conv1d", "filters": 2, "kernel": 3}]}
    assert list(validator.iter_errors(bad)), "the schema must reject unknown fields"


def test_examples_announce_the_schema_to_editors():
    for example in EXAMPLES:
        first = example.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), example
        target = (example.parent / first.split("=", 1)[1]).resolve()
        assert target == (ROOT / "schemas" / "cnnspec.schema.json").resolve(), example


CORE_COMMANDS = [
    ("validate", str(ROOT / "examples" / "mobile_block.yaml")),
    ("explain", str(ROOT / "examples" / "mobile_block.yaml")),
    ("explain", "--json", str(ROOT / "examples" / "autoencoder.yaml")),
    ("schema",),
]


@pytest.mark.parametrize("args", CORE_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_core_commands_import_no_framework(args):
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['cnnspec', *{list(args)!r}]\n"
        "from cnnspec.cli.main import main\n"
        "import io, contextlib\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    rc = main()\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'keras', 'onnx', 'onnxruntime', 'numpy') if m in sys.modules)\n"
        "print(rc, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.stdout.strip() == "0 []", result.stdout + result.stderr


def test_python_api_load_spec_accepts_path_text_and_dict():
    import cnnspec

    path = ROOT / "examples" / "mnist_convnet.yaml"
    from_path = cnnspec.load_spec(path)
    from_text = cnnspec.load_spec(path.read_text())
    import yaml

    from_dict = cnnspec.load_spec(yaml.safe_load(path.read_text()))
    assert from_path == from_text == from_dict
    assert cnnspec.resolve(from_dict).total_params == 104_202


def test_unknown_command_exits_2():
    result = run("frobnicate")
    assert result.returncode == 2


def test_validate_applies_limits_only_when_asked(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("cnnspec: 1\ninput: {channels: 3, size: [256, 256]}\nlayers:\n"
                   "  - {type: flatten}\n  - {type: dense, units: 100000}\n")
    assert run("validate", str(big)).returncode == 0  # 19.7 billion parameters, but validate's verdict is machine-free
    result = run("validate", str(big), "--max-params", "1000000")
    assert result.returncode == 2
    assert f"{big}:5:5: layers[1]: the model needs 19,660,900,000 parameters" in result.stderr
