"""`cnnspec build` through the real command line: source files, weight conversion, refusals."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "pytorch_cnn_bn.yaml"


def run(*args):
    return subprocess.run([sys.executable, "-m", "cnnspec", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def import_file(path: Path, name: str):
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_build_writes_standalone_sources(tmp_path):
    torch_file, keras_file = tmp_path / "model_torch.py", tmp_path / "model_keras.py"
    assert run("build", SPEC, "--target", "torch", "-o", torch_file).returncode == 0
    assert run("build", SPEC, "--target", "keras", "-o", keras_file).returncode == 0
    torch_model = import_file(torch_file, "gen_torch").PytorchCnnBn().eval()
    keras_model = import_file(keras_file, "gen_keras").build_pytorch_cnn_bn()
    assert sum(p.numel() for p in torch_model.parameters()) == 119_722
    assert keras_model.count_params() == 119_722 + 192
    assert "cnnspec" not in torch_file.read_text().split('"""', 2)[2]  # no cnnspec import at run time


def test_build_refuses_to_overwrite_without_force(tmp_path):
    target = tmp_path / "model.py"
    target.write_text("precious\n")
    result = run("build", SPEC, "--target", "torch", "-o", target)
    assert result.returncode == 2
    assert "--force" in result.stderr and "Traceback" not in result.stderr
    assert target.read_text() == "precious\n"
    assert run("build", SPEC, "--target", "torch", "-o", target, "--force").returncode == 0
    assert "class PytorchCnnBn" in target.read_text()


def test_weights_from_torch_state_dict_to_keras_file(tmp_path):
    """A model trained in torch, used in keras: the converted weights give the same outputs."""
    import cnnspec
    from cnnspec.weights.transfer import randomize

    trained = cnnspec.build(SPEC, "torch")
    randomize(trained, seed=3)
    state_file = tmp_path / "trained.pt"
    torch.save(trained.state_dict(), state_file)
    keras_weights = tmp_path / "trained.weights.h5"
    result = run("build", SPEC, "--target", "keras", "-o", tmp_path / "model_keras.py",
                 "--weights-from", state_file, "--save-weights", keras_weights)
    assert result.returncode == 0, result.stderr
    keras_model = import_file(tmp_path / "model_keras.py", "gen_keras_w").build_pytorch_cnn_bn()
    keras_model.load_weights(keras_weights)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype("float32")
    with torch.no_grad():
        expected = trained(torch.from_numpy(x)).numpy()
    got = keras_model(np.transpose(x, (0, 2, 3, 1)), training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_weights_from_keras_file_to_torch_state_dict(tmp_path):
    import cnnspec
    from cnnspec.weights.transfer import randomize

    keras_model = cnnspec.build(SPEC, "keras")
    randomize(keras_model, seed=4)
    keras_file = tmp_path / "k.weights.h5"
    keras_model.save_weights(keras_file)
    state_file = tmp_path / "converted.pt"
    result = run("build", SPEC, "--target", "torch", "-o", tmp_path / "m.py", "--weights-from", keras_file, "--save-weights", state_file)
    assert result.returncode == 0, result.stderr
    torch_model = cnnspec.build(SPEC, "torch")
    torch_model.load_state_dict(torch.load(state_file, weights_only=True))
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype("float32")
    with torch.no_grad():
        got = torch_model(torch.from_numpy(x)).numpy()
    expected = keras_model(np.transpose(x, (0, 2, 3, 1)), training=False).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_weights_for_another_spec_are_refused_with_the_layer_named(tmp_path):
    import cnnspec

    other = cnnspec.build(ROOT / "examples" / "pytorch_cnn.yaml", "torch")  # no BatchNorm layers
    state_file = tmp_path / "other.pt"
    torch.save(other.state_dict(), state_file)
    out = tmp_path / "w.weights.h5"
    result = run("build", SPEC, "--target", "keras", "--weights-from", state_file, "--save-weights", out, "-o", tmp_path / "m.py")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bn1" in result.stderr
    assert not out.exists() and not (tmp_path / "m.py").exists()


def test_pickle_weight_file_is_refused(tmp_path):
    """A state_dict file that would run code when unpickled unsafely is refused, and the code does not run."""
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"conv1.weight": Exploit()}, evil)
    result = run("build", SPEC, "--target", "keras", "--weights-from", evil, "--save-weights", tmp_path / "x.weights.h5")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert not marker.exists()
