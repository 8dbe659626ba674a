"""`cnnspec verify SPEC --torch-model ...`: the README's "Verify your own port" commands, run exactly
as written, and every unusable input as exit 2 with a located one-line message (no traceback)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

from cnnspec.cli.main import main  # noqa: E402

pytestmark = [pytest.mark.frameworks, pytest.mark.onnx]

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[tuple[str, int]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Verify your own port", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            match = re.match(r"(cnnspec verify .*?)\s+# exit (\d)$", line.strip())
            if match:
                commands.append((match.group(1), int(match.group(2))))
    return commands


README_COMMANDS = _readme_commands()


def test_the_readme_section_has_the_correct_port_and_the_padding_mistake():
    ports = [command for command, _ in README_COMMANDS]
    assert any("tutorial_cnn.py:Net" in command for command in ports)
    assert any("same_stride2_padding1.py:Net" in command for command in ports)


@pytest.mark.parametrize("command, expected", README_COMMANDS, ids=[c.split()[4] for c, _ in README_COMMANDS])
def test_readme_command(command: str, expected: int):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="200")
    argv = shlex.split(command)
    result = subprocess.run([sys.executable, "-m", "cnnspec", *argv[1:]], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == expected, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    if expected == 1:
        assert "First divergent layer: stem (conv2d)" in result.stdout
        assert "consistent with symmetric padding=1 where the spec says same" in " ".join(result.stdout.split())
    else:
        assert "VERDICT: OK" in result.stdout


def test_json_report_carries_the_matching_table(tmp_path, capsys):
    code = main(["verify", "examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/tutorial_sequential.py:Net",
                 "--json", "-", "--no-progress"])
    report = json.loads(capsys.readouterr().out)["reports"][0]
    assert code == 0 and report["ok"]
    assert {row["part"]: row["target"] for row in report["matching"]["torch"]} == {
        "conv1": "features.0", "conv2": "features.4", "fc1": "classifier.1", "fc2": "classifier.3"}


@pytest.fixture
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def _fails_cleanly(argv, capsys, *patterns):
    code = main(["verify", *argv, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and "internal error" not in err
    for pattern in patterns:
        assert re.search(pattern, err), err
    return err


def test_a_missing_port_file_or_attribute(in_root, capsys):
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/nope.py:Net"], capsys,
                   r"--torch-model examples/ports/nope\.py:Net: file not found")
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/tutorial_cnn.py:Nett"], capsys,
                   r"has no attribute 'Nett' \(it has: .*Net")
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/tutorial_cnn.py"], capsys,
                   r"expected module:attr or path/file\.py:attr")


def test_a_constructor_that_raises_is_located(tmp_path, in_root, capsys):
    port = tmp_path / "broken.py"
    port.write_text("from torch import nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
                    "        super().__init__()\n        self.fc = nn.Linear(3, 4, biass=True)\n")
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--torch-model", f"{port}:Net"], capsys,
                   re.escape(str(port)) + r":7: calling Net\(\) failed: TypeError")


def test_a_module_attr_reference_and_a_factory(tmp_path, monkeypatch, capsys):
    (tmp_path / "myports.py").write_text(
        (ROOT / "examples" / "ports" / "tutorial_cnn.py").read_text() + "\n\ndef make():\n    return Net()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = str(ROOT / "examples" / "pytorch_cnn.yaml")
    assert main(["verify", spec, "--torch-model", "myports:make", "--no-progress"]) == 0
    capsys.readouterr()


def test_torch_weights_are_loaded_safely(tmp_path, in_root, capsys):
    import torch

    class Payload:
        def __reduce__(self):
            return (print, ("code ran",))

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"conv1.weight": Payload()}, unsafe)
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/tutorial_cnn.py:Net",
                    "--torch-weights", str(unsafe)], capsys, r"--torch-weights .*refusing to load")


def test_torch_weights_are_loaded_into_the_port(tmp_path, in_root, capsys):
    """A state_dict of the port passes; one of another model is exit 2, not a crash."""
    import importlib.util

    import torch

    def net(file_name):
        spec = importlib.util.spec_from_file_location(file_name[:-3], ROOT / "examples" / "ports" / file_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.Net()

    good, other = tmp_path / "port.pt", tmp_path / "other.pt"
    torch.save(net("tutorial_cnn.py").state_dict(), good)
    torch.save(net("tutorial_sequential.py").state_dict(), other)
    assert main(["verify", "examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/tutorial_cnn.py:Net",
                 "--torch-weights", str(good), "--no-progress"]) == 0
    capsys.readouterr()
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/tutorial_cnn.py:Net",
                    "--torch-weights", str(other)], capsys, r"--torch-weights .*do not fit the model")


def test_a_subclassed_keras_model_from_the_command_line(tmp_path, in_root, capsys):
    port = tmp_path / "sub.py"
    port.write_text("import keras\n\n\nclass Sub(keras.Model):\n    def __init__(self):\n        super().__init__()\n"
                    "        self.dense = keras.layers.Dense(10)\n\n    def call(self, x):\n"
                    "        return self.dense(x)\n")
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--keras-model", f"{port}:Sub"], capsys,
                   r"no symbolic inputs and outputs; cnnspec verifies a functional keras\.Model or a Sequential")


def test_a_bad_name_map(tmp_path, in_root, capsys):
    names = tmp_path / "names.json"
    names.write_text('{"conv1": "features.0",\n "fc9": "classifier.1"}')
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/tutorial_sequential.py:Net",
                    "--name-map", str(names)], capsys,
                   r"names\.json: name map: 'fc9' is not a layer of the spec.*'fc1'")
    names.write_text('{"conv1": "features.0",\n "fc1" "classifier.1"}')
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--torch-model", "examples/ports/tutorial_sequential.py:Net",
                    "--name-map", str(names)], capsys, re.escape(str(names)) + r":2:\d+: not valid JSON")
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--name-map", str(names)], capsys, r"--name-map matches the parts")


def test_model_options_take_one_spec(in_root, capsys):
    _fails_cleanly(["examples/pytorch_cnn.yaml", "examples/same_stride2.yaml", "--torch-model",
                    "examples/ports/tutorial_cnn.py:Net"], capsys, r"one spec at a time")


def test_a_keras_file_and_its_weights_from_the_command_line(tmp_path, in_root, capsys):
    """--keras-model FILE.keras (safe_mode) verifies; --keras-weights of another model is exit 2."""
    import keras

    from cnnspec.targets.build import build

    model = build("examples/pytorch_cnn.yaml", "keras")
    path = tmp_path / "port.keras"
    model.save(path)
    assert main(["verify", "examples/pytorch_cnn.yaml", "--keras-model", str(path), "--no-progress"]) == 0
    capsys.readouterr()
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    weights = tmp_path / "other.weights.h5"
    other.save_weights(weights)
    _fails_cleanly(["examples/pytorch_cnn.yaml", "--keras-model", str(path), "--keras-weights", str(weights)],
                   capsys, r"--keras-weights .*do not fit the model")
