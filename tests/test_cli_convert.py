"""`cnnspec import` and `cnnspec convert` through the real command line: files written, per-layer proof
against the original, exit codes 0 / 1 / 2, nothing written on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

ROOT = Path(__file__).resolve().parent.parent

TORCH_MODELS = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, channels=8):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        out += x
        return self.relu(out)


class Net(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.layer1 = nn.Sequential(Block(), Block())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layer1(self.stem(x))), 1))


def seeded():
    torch.manual_seed(0)
    model = Net()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model.eval()


def offline():
    raise OSError("URL fetch failure: no network")
"""


def run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cnnspec", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        check=False,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    from cnnspec.weights.transfer import randomize

    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Add(name="residual")([x, y])
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(3, name="head")(x)
    model = keras.Model(inputs, x, name="tiny")
    randomize(model, 3)
    path = tmp_path_factory.mktemp("keras") / "tiny.keras"
    model.save(path)
    return path


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.onnx
def test_convert_keras_file_to_torch(keras_file, tmp_path):
    out = tmp_path / "out"
    result = run("convert", keras_file, "--to", "torch", "-o", out)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "VERDICT: OK" in result.stdout and "CONVERTED" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["report.json", "spec.yaml", "tiny.py", "tiny.safetensors"]
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and report["verification"]["ok"] and report["framework"] == "keras"
    compared = [layer["name"] for layer in report["verification"]["layers"] if layer["ok"]]
    assert compared == ["stem", "stem_bn", "stem_relu", "dw", "residual", "pool", "head"]  # every layer, by Keras name

    from safetensors.torch import load_file

    import cnnspec

    spec = cnnspec.load_spec(out / "spec.yaml")
    model = cnnspec.build(spec, "torch")
    model.load_state_dict(load_file(out / "tiny.safetensors"), strict=True)

    again = run("convert", keras_file, "--to", "torch", "-o", out)
    assert again.returncode == 2 and "exists" in again.stderr and "--force" in again.stderr


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.onnx
def test_convert_torch_reference_to_keras(tmp_path):
    (tmp_path / "models.py").write_text(TORCH_MODELS)
    out = tmp_path / "keras_out"
    result = run("convert", "models.py:seeded", "--to", "keras", "--input-shape", "3,16,16", "-o", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    names = [layer["name"] for layer in report["verification"]["layers"]]
    assert "layer1_0_conv1" in names and "layer1_1_add" in names
    assert all(layer["ok"] for layer in report["verification"]["layers"])
    assert (out / "net.weights.h5").is_file() and (out / "net.py").is_file()
    spec_text = (out / "spec.yaml").read_text()
    assert "source: layer1.0.conv1" in spec_text


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.onnx
def test_convert_with_trained_weights_from_a_checkpoint(tmp_path):
    """--weights loads a training checkpoint (DataParallel 'module.' keys inside 'model_state_dict')
    into the class MODEL names: the written Keras weights compute what the checkpoint's model
    computes, and the report says what was unwrapped."""
    (tmp_path / "models.py").write_text(TORCH_MODELS)
    import importlib.util

    module_spec = importlib.util.spec_from_file_location("checkpoint_models", tmp_path / "models.py")
    models = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(models)
    trained = models.seeded()
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.mul_(3.0).add_(0.1)  # not what the class builds
    state = {f"module.{key}": value for key, value in trained.state_dict().items()}
    torch.save({"epoch": 7, "model_state_dict": state}, tmp_path / "trained.ckpt")

    out = tmp_path / "out"
    result = run("convert", "models.py:Net", "--input-shape", "3,16,16", "--weights", "trained.ckpt",
                 "--to", "keras", "-o", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    notes = json.loads((out / "report.json").read_text())["verification"]["notes"]
    assert any("model_state_dict" in note for note in notes) and any("'module.'" in note for note in notes)

    import cnnspec

    spec = cnnspec.load_spec(out / "spec.yaml")
    converted = cnnspec.build(spec, "keras")
    converted.load_weights(out / "net.weights.h5")
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 3)).astype(np.float32)
    with torch.no_grad():
        expected = trained.eval()(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
        untrained = models.Net().eval()(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    got = np.asarray(converted(x))
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
    assert np.abs(got - untrained).max() > 1e-2  # the control: the class's own weights differ


@pytest.mark.frameworks
def test_import_writes_a_valid_spec(tmp_path):
    (tmp_path / "models.py").write_text(TORCH_MODELS)
    result = run(
        "import",
        "models.py:Net",
        "--kwargs",
        '{"classes": 7}',
        "--input-shape",
        "3,16,16",
        "-o",
        "net.yaml",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    import cnnspec

    spec = cnnspec.load_spec(tmp_path / "net.yaml")
    assert spec.layers[-1].units == 7


@pytest.mark.frameworks
@pytest.mark.parametrize(
    "args,expected",
    [
        (("missing.keras", "--to", "torch"), "no such file"),
        (("models.py:Nope", "--to", "keras", "--input-shape", "3,16,16"), "has no attribute 'Nope'"),
        (("models.py:Net", "--to", "keras"), "--input-shape"),
        (("models.py:Net", "--to", "keras", "--input-shape", "3,x"), "--input-shape"),
        (("models.py:Net", "--to", "keras", "--input-shape", "3,16,16", "--kwargs", "[1]"), "JSON object"),
        (("models.py:Net", "--to", "torch", "--input-shape", "3,16,16"), "already a torch model"),
        (("notamodel.txt", "--to", "torch"), "not a model file"),
        (("models.py:offline", "--to", "keras"), "raised OSError: URL fetch failure"),
        (("models.py:Net", "--to", "keras", "--input-shape", "3,16,16", "--weights", "none.pt"),
         "--weights none.pt: weights file not found"),
        (("tiny.keras", "--to", "torch", "--weights", "models.py"), "holds its own weights"),
    ],
)
def test_bad_input_exits_2_without_writing(tmp_path, monkeypatch, capsys, args, expected):
    from cnnspec.cli.main import main

    (tmp_path / "models.py").write_text(TORCH_MODELS)
    (tmp_path / "tiny.keras").write_bytes(b"")  # only its suffix is read before the refusal
    monkeypatch.chdir(tmp_path)
    code = main(["convert", *args, "-o", "out", "--no-progress"])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert expected in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.frameworks
def test_unsupported_layer_exits_2_naming_it(tmp_path):
    (tmp_path / "odd.py").write_text(
        "import torch\nfrom torch import nn\n\n\nclass Odd(nn.Module):\n    def __init__(self):\n"
        "        super().__init__()\n        self.conv = nn.Conv2d(3, 4, 3)\n\n    def forward(self, x):\n"
        "        return torch.cumsum(self.conv(x), 1)\n"
    )
    result = run("import", "odd.py:Odd", "--input-shape", "3,8,8", cwd=tmp_path)
    assert result.returncode == 2
    assert "cumsum" in result.stderr and "odd.py:11" in result.stderr



def test_grouped_conv_and_exact_gelu_original_converts(tmp_path):
    """Keras runs a grouped Conv2D through an XLA-compiled function and TensorFlow's exact GELU
    through Erfc; tf2onnx reads neither as they are (Keras ConvNeXt has both).  The original is
    exported and verified layer by layer, and the PyTorch model it becomes computes what Keras
    itself computes."""
    (tmp_path / "grouped.py").write_text(
        "import keras\n\ninputs = keras.Input((8, 8, 4))\n"
        "x = keras.layers.Conv2D(6, 3, groups=2, padding='same', name='grouped')(inputs)\n"
        "x = keras.layers.Activation('gelu', name='gelu')(x)\n"
        "x = keras.layers.Conv2D(6, 3, groups=6, name='depthwise')(x)\n"
        "model = keras.Model(inputs, x)\n"
    )
    result = run("convert", "grouped.py:model", "--to", "torch", "-o", "out", "--no-progress", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    compared = [row["name"] for row in report["verification"]["layers"] if row["max_abs_diff"] is not None]
    assert {"grouped", "gelu", "depthwise"} <= set(compared)

    import numpy as np

    import cnnspec

    namespace: dict = {}
    exec((tmp_path / "grouped.py").read_text(), namespace)
    original = namespace["model"]
    spec = cnnspec.from_keras(original)
    converted = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(original, converted, spec)
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 4)).astype("float32")
    expected = np.asarray(original(x))  # Keras itself (its XLA-compiled grouped convolution)
    with torch.no_grad():
        got = converted(torch.from_numpy(np.moveaxis(x, -1, 1))).numpy()
    np.testing.assert_allclose(np.moveaxis(got, 1, -1), expected, atol=1e-5)


def test_foreign_ops_in_an_original_graph_are_refused_by_name():
    """A graph the exporter left with ops ONNX does not define is refused naming the ops and the first node."""
    import onnx
    from onnx import helper

    from cnnspec.verifier.onnx_export import ExportedGraph
    from cnnspec.verifier.run import UnsupportedModel, _refuse_foreign_ops

    nodes = [
        helper.make_node("Relu", ["input"], ["a"], name="act"),
        helper.make_node("PartitionedCall", ["a"], ["b"], name="block_1/PartitionedCall"),
        helper.make_node("Erfc", ["b"], ["c"], name="gelu/Erfc"),
    ]
    value = helper.make_tensor_value_info
    proto = helper.make_model(
        helper.make_graph(
            nodes, "g", [value("input", onnx.TensorProto.FLOAT, [1])], [value("c", onnx.TensorProto.FLOAT, [1])]
        )
    )
    graph = ExportedGraph(proto=proto, layer_names=["c"], observation="get_layer", output_names=["c"])
    with pytest.raises(UnsupportedModel, match=r"PartitionedCall ×1, Erfc ×1; first at node 'block_1/PartitionedCall'"):
        _refuse_foreign_ops(graph, "keras")


SHORTCUT_FIRST = """
import torch
from torch import nn


class Down(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.downsample = nn.Sequential(nn.Conv2d(4, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))

    def forward(self, x):
        identity = self.downsample(x)  # called before conv1, registered after it
        return torch.relu(self.bn1(self.conv1(x)) + identity)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = Down()

    def forward(self, x):
        return self.block(self.stem(x))
"""


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.onnx
def test_convert_torch_module_calling_its_shortcut_first(tmp_path):
    """The proof reads each original module by its path: a model that calls its modules in another
    order than it registers them (a shortcut first) is not paired by order (which found a 1x1 conv
    where a 3x3 one was and gave up with exit 2)."""
    (tmp_path / "models.py").write_text(SHORTCUT_FIRST)
    out = tmp_path / "keras_out"
    result = run("convert", "models.py:Net", "--to", "keras", "--input-shape", "3,8,8", "-o", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads((out / "report.json").read_text())
    layers = {layer["name"]: layer for layer in report["verification"]["layers"]}
    assert layers["block_downsample_0"]["ok"] and layers["block_conv1"]["ok"]


def test_the_proof_drops_to_batch_1_when_the_outputs_would_not_fit():
    import cnnspec
    from cnnspec.importers.pipeline import proof_batch

    plan = cnnspec.resolve(
        {"cnnspec": 1, "name": "big", "input": {"channels": 3, "size": [64, 64]},
         "layers": [{"type": "conv2d", "name": "c", "filters": 64, "kernel_size": 3, "padding": "same"}]}
    )
    outputs = 64 * 64 * 64 * 4  # bytes per sample of the one layer output
    assert proof_batch(plan, available=32 * 1024**3) == (2, None)
    batch, note = proof_batch(plan, available=2 * 1024**3 + 5 * 2 * outputs - 1)
    assert batch == 1 and "verified at batch 1" in note
