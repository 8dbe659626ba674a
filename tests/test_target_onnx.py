"""The ONNX target: the graph emitted straight from the plan computes what PyTorch and Keras compute.

For every case of ``equivalence_cases.CASES`` (every layer type and every place the frameworks
differ), the generated torch model gets seeded weights, Keras gets them by transfer, and the
spec's own ONNX graph is run in onnxruntime once with the weights read from the torch model and
once with the weights read from the Keras model.  Every layer's output is compared with the
frameworks' own forward passes, so the references are torch and Keras, not cnnspec.

``cnnspec build --target onnx`` is run as a process: it must not import torch or TensorFlow,
its model passes ``onnx.checker`` with strict shape inference, and weights moved from a torch
or Keras file give the frameworks' numbers.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from equivalence_cases import (
    CASE_IDS,
    CASES_BY_ID,
    INPUT_OFFSETS,
    INPUT_SCALES,
    covered_layer_types,
)

import cnnspec
from cnnspec.targets.onnx.emit import OnnxUnsupported, attach_weights, emit_graph, unsupported_types
from cnnspec.targets.onnx.model import build_onnx, check_strict
from cnnspec.verifier.onnx_export import run_onnx

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
ATOL = RTOL = 1e-5


def _input(case_id: str, plan) -> np.ndarray:
    x = np.random.default_rng(0).normal(size=(2, *plan.input_shape)).astype(np.float32)
    return (x * INPUT_SCALES.get(case_id, 1.0) + INPUT_OFFSETS.get(case_id, 0.0)).astype(np.float32)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_passes_the_strict_checker(path):
    plan = cnnspec.resolve(path)
    missing = unsupported_types(plan)
    if missing:  # refused as a whole, naming the types
        with pytest.raises(OnnxUnsupported, match=f"no ONNX emission for type\\(s\\) {', '.join(missing)}$"):
            build_onnx(plan)
        return
    model = build_onnx(plan)
    check_strict(model)
    onnx.checker.check_model(model, full_check=True)


def test_the_streamed_file_is_the_model_build_onnx_returns(tmp_path):
    from cnnspec.targets.onnx.model import write_onnx

    plan = cnnspec.resolve(ROOT / "examples" / "mobile_block.yaml")
    write_onnx(plan, tmp_path / "m.onnx", seed=3)
    assert onnx.load(str(tmp_path / "m.onnx")) == build_onnx(plan, seed=3)


def test_the_emitted_ops_are_standard_opset_18():
    ops = set()
    for case_id in CASE_IDS:
        plan = cnnspec.resolve(CASES_BY_ID[case_id])
        if unsupported_types(plan):
            continue  # pinned in test_layer_onnx_contract.WITHOUT_ONNX
        proto = emit_graph(plan).proto
        assert [opset.domain for opset in proto.opset_import] == [""] and proto.opset_import[0].version == 18
        ops |= {node.op_type for node in proto.graph.node}
        assert all(node.domain == "" for node in proto.graph.node)
    for op in ops:
        assert onnx.defs.has(op, ""), op


# --------------------------------------------------------------------------------------
# Against the frameworks
# --------------------------------------------------------------------------------------


@functools.cache
def _framework_pair(case_id: str):
    torch = pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    keras = pytest.importorskip("keras")
    from cnnspec.targets.build import build
    from cnnspec.weights.transfer import randomize, transfer_weights

    plan = cnnspec.resolve(CASES_BY_ID[case_id])
    torch_model = build(plan, "torch")
    randomize(torch_model, 1)
    keras_model = build(plan, "keras")
    transfer_weights(torch_model, keras_model, plan)
    x = _input(case_id, plan)
    with torch.no_grad():
        expected = {name: value.numpy() for name, value in torch_model.forward_layers(torch.from_numpy(x)).items()}
    probe = keras.Model(keras_model.input, [keras_model.get_layer(layer.name).output for layer in plan.layers])
    try:
        values = probe(np.ascontiguousarray(np.moveaxis(x, 1, -1)), training=False)
    except Exception as error:  # noqa: BLE001 - TF's own CPU kernel, not cnnspec
        # Without oneDNN (TF_ENABLE_ONEDNN_OPTS=0, set by the verifier's tests when they import TF first),
        # TensorFlow's CPU kernel cannot run a dilated transposed convolution eagerly; torch stays the reference.
        if "dilation rates larger than 1" not in str(error):
            raise
        return plan, torch_model, keras_model, x, expected, None
    values = values if isinstance(values, (list, tuple)) else [values]
    keras_values = {layer.name: keras.ops.convert_to_numpy(v) for layer, v in zip(plan.layers, values)}
    return plan, torch_model, keras_model, x, expected, keras_values


def _channels_first(plan, name: str, keras_value: np.ndarray) -> np.ndarray:
    from cnnspec.verifier.compare import to_channels_first

    return to_channels_first(keras_value, plan.layer(name))


@pytest.mark.frameworks
@pytest.mark.parametrize("source", ["torch", "keras"])
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_every_layer_matches_torch_and_keras(case_id, source):
    from cnnspec.targets.onnx.weights import from_keras_model, from_torch_model

    missing = unsupported_types(cnnspec.resolve(CASES_BY_ID[case_id]))
    if missing:
        pytest.skip(f"no ONNX emission for {', '.join(missing)} (pinned in test_layer_onnx_contract.WITHOUT_ONNX)")
    plan, torch_model, keras_model, x, torch_values, keras_values = _framework_pair(case_id)
    weights = from_torch_model(plan, torch_model) if source == "torch" else from_keras_model(plan, keras_model)
    graph = emit_graph(plan)
    values = dict(zip(graph.layer_names, run_onnx(graph.proto, x, weights)))
    assert list(values) == [layer.name for layer in plan.layers]
    for layer in plan.layers:
        got = values[layer.name]
        assert got.shape[1:] == layer.output_shape, layer.name
        np.testing.assert_allclose(got, torch_values[layer.name], atol=ATOL, rtol=RTOL, err_msg=f"{layer.name} vs torch")
        if keras_values is not None:
            np.testing.assert_allclose(got, _channels_first(plan, layer.name, keras_values[layer.name]), atol=ATOL,
                                       rtol=RTOL, err_msg=f"{layer.name} vs keras")
    # the deployable model (weights as initializers) gives the same output (onnxruntime may pre-pack
    # constant kernels and sum in another order: float32 rounding only)
    deployable = attach_weights(emit_graph(plan, every_layer=False), weights)
    np.testing.assert_allclose(run_onnx(deployable, x)[0], values[plan.layers[-1].name], atol=1e-6, rtol=1e-6)


def test_the_cases_cover_every_layer_type():
    from cnnspec.spec.models import layer_types

    assert set(layer_types()) == covered_layer_types()


@pytest.mark.frameworks
def test_a_wrong_mapping_fails_symmetric_padding_for_same_stride_2():
    """Negative control: the ONNX graph of a conv with symmetric padding differs from torch's 'same' model."""
    plan, torch_model, _, x, torch_values, _ = _framework_pair("conv_same_s2_even")
    from cnnspec.targets.onnx.weights import from_torch_model

    graph = emit_graph(plan)
    conv = next(node for node in graph.proto.graph.node if node.op_type == "Conv")
    pads = next(attribute for attribute in conv.attribute if attribute.name == "pads")
    assert list(pads.ints) == [0, 0, 1, 1]  # SAME_UPPER: the odd cell at the end
    pads.ints[:] = [1, 1, 0, 0]  # the wrong, symmetric-looking choice (the cell at the start)
    got = run_onnx(graph.proto, x, from_torch_model(plan, torch_model))[0]
    assert np.abs(got - torch_values["conv"]).max() > 1e-2


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------

HEAVY = ("torch", "tensorflow", "keras", "tf2onnx")

RUN_BUILD = """
import sys
from cnnspec.cli.main import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})
print('HEAVY', heavy)
sys.exit(code)
"""


def _build(*args):
    script = RUN_BUILD.format(heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", script, "build", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_builds_an_onnx_model_without_torch_or_tensorflow(tmp_path):
    out = tmp_path / "resnet50.onnx"
    result = _build(ROOT / "bench" / "resnet50.yaml", "--target", "onnx", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    plan = cnnspec.resolve(ROOT / "bench" / "resnet50.yaml")
    elements = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.name.count("."))
    assert elements == plan.total_params == 25_557_032 + 53_120
    assert [o.name for o in model.graph.output] == [plan.layers[-1].name]
    assert _build(ROOT / "bench" / "resnet50.yaml", "--target", "onnx", "-o", out).returncode == 2  # exists


def test_cli_refuses_a_binary_model_on_stdout():
    result = _build(ROOT / "examples" / "mnist_convnet.yaml", "--target", "onnx")
    assert result.returncode == 2
    assert "-o" in result.stderr and "Traceback" not in result.stderr


UNSUPPORTED_BUILD = """
import sys
from cnnspec.targets.onnx import emit
emit.unsupported_types = lambda plan: ['relu', 'flatten']
from cnnspec.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_cli_refuses_types_without_onnx_emission_naming_them(tmp_path):
    out = tmp_path / "m.onnx"
    result = subprocess.run([sys.executable, "-c", UNSUPPORTED_BUILD, "build", ROOT / "examples" / "mnist_convnet.yaml",
                             "--target", "onnx", "-o", out], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    assert "no ONNX emission for type(s) relu, flatten" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.frameworks
def test_cli_weights_from_torch_and_keras_files(tmp_path):
    torch = pytest.importorskip("torch")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    pytest.importorskip("keras")
    from cnnspec.targets.build import build
    from cnnspec.weights.files import save_weights_file
    from cnnspec.weights.transfer import randomize, transfer_weights

    spec = ROOT / "examples" / "mobile_block.yaml"
    plan = cnnspec.resolve(spec)
    torch_model = build(plan, "torch")
    randomize(torch_model, 4)
    keras_model = build(plan, "keras")
    transfer_weights(torch_model, keras_model, plan)
    save_weights_file(torch_model, tmp_path / "w.pt")
    save_weights_file(keras_model, tmp_path / "w.weights.h5")
    x = np.random.default_rng(2).normal(size=(3, *plan.input_shape)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()

    result = _build(spec, "--target", "onnx", "-o", tmp_path / "a.onnx", "--weights-from", tmp_path / "w.pt")
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout  # the torch file is read without torch
    np.testing.assert_allclose(run_onnx(tmp_path / "a.onnx", x)[0], expected, atol=1e-5, rtol=1e-5)

    result = _build(spec, "--target", "onnx", "-o", tmp_path / "b.onnx", "--weights-from", tmp_path / "w.weights.h5",
                    "--save-weights", tmp_path / "b.weights")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "b.weights").stat().st_size == 4 * plan.total_params
    assert (tmp_path / "b.onnx").stat().st_size < 100_000  # the weights are beside it
    np.testing.assert_allclose(run_onnx(tmp_path / "b.onnx", x)[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.frameworks
def test_cli_refuses_a_torch_file_with_code_in_it(tmp_path):
    torch = pytest.importorskip("torch")
    import collections

    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "extra": collections.Counter(a=1)}, path)
    result = _build(ROOT / "examples" / "mnist_convnet.yaml", "--target", "onnx", "-o", tmp_path / "m.onnx",
                    "--weights-from", path)
    assert result.returncode == 2
    assert "refusing to load" in result.stderr and "collections.Counter" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "m.onnx").exists()
