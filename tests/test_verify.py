"""``cnnspec verify``: every example verifies, the report's fields, exit codes, -j, --keep-onnx, parameter counts.

The verifier's own correctness (it fails at the right layer) is in test_negative_controls.py.
Parameter counts are checked against hand-computed totals and against torch's and Keras'
own counting of independently built models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

import cnnspec  # noqa: E402
from cnnspec.cli import main as cli  # noqa: E402
from cnnspec.targets.build import build  # noqa: E402
from cnnspec.verifier.report import TIMING_STEPS, VerifyReport  # noqa: E402

pytestmark = [pytest.mark.frameworks, pytest.mark.onnx]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
SLOW_EXAMPLES = {"alexnet.yaml"}  # 61M parameters: about 50 s on 2 cores (tf2onnx serialises 244 MB)


def _example_params():
    for path in EXAMPLES:
        marks = [pytest.mark.slow] if path.name in SLOW_EXAMPLES else []
        yield pytest.param(path, id=str(path.relative_to(ROOT / "examples")), marks=marks)


@pytest.mark.parametrize("path", list(_example_params()))
def test_every_example_verifies(path):
    report = cnnspec.verify(path)
    plan = cnnspec.resolve(path)
    assert report.ok, report.render(use_rich=False)
    assert report.first_divergent_layer is None
    assert [layer.name for layer in report.layers] == [layer.name for layer in plan.layers]
    assert all(layer.ok and layer.shape_ok for layer in report.layers)
    # every layer was observed in both graphs, in both layouts, with the plan's shapes
    for layer, planned in zip(report.layers, plan.layers):
        assert tuple(layer.torch_shape) == planned.output_shape
        assert tuple(layer.keras_shape) == planned.output_shape_last
    assert report.max_abs_diff <= report.atol
    # the spec's own ONNX graph, with the same weights, agrees with both models on every layer
    from cnnspec.targets.onnx.emit import unsupported_types

    missing = unsupported_types(plan)
    if missing:  # no referee, said so; the torch<->keras verdict stands
        assert report.referee is None
        assert report.referee_note == f"no referee: no ONNX emission for type(s) {', '.join(missing)}"
        return
    assert report.referee.verdict == "torch and keras both agree with the spec's ONNX reference"
    assert report.referee.torch_layers_compared == report.referee.keras_layers_compared == len(plan.layers)


def test_a_type_without_onnx_emission_leaves_the_torch_keras_verdict(monkeypatch):
    from cnnspec.targets.onnx import emit

    monkeypatch.setattr(emit, "unsupported_types", lambda plan: ["relu", "flatten"])
    report = cnnspec.verify(ROOT / "examples" / "mnist_convnet.yaml")
    assert report.ok, report.render(use_rich=False)
    assert report.referee is None
    assert report.referee_note == "no referee: no ONNX emission for type(s) relu, flatten"
    assert "no ONNX emission for type(s) relu, flatten" in report.render(use_rich=False)


def test_a_referee_that_cannot_be_emitted_leaves_the_torch_keras_verdict(monkeypatch):
    from cnnspec.errors import CnnspecError
    from cnnspec.verifier import referee

    def broken(plan, weights, x):
        raise CnnspecError("layer 'bn': the plan has no tensor 'gamma'")

    monkeypatch.setattr(referee, "run_referee", broken)
    report = cnnspec.verify(ROOT / "examples" / "mnist_convnet.yaml")
    assert report.ok and report.referee is None
    assert report.referee_note == ("no referee: the spec's ONNX graph could not be emitted "
                                   "(layer 'bn': the plan has no tensor 'gamma')")


def test_report_fields_and_json_round_trip():
    report = cnnspec.verify(ROOT / "examples" / "pytorch_cnn_bn.yaml", batch=3, seed=5)
    data = json.loads(report.to_json())
    for key in ("ok", "spec", "max_abs_diff", "max_rel_diff", "first_divergent_layer", "params", "layers", "timings"):
        assert key in data
    assert data["spec"] == "pytorch_cnn_bn" and data["batch"] == 3 and data["seed"] == 5 and data["opset"] == 18
    assert set(data["params"]) == {"spec", "torch", "keras", "torch_onnx", "keras_onnx"}
    for entry in data["params"].values():
        assert {"trainable", "non_trainable", "notes"} <= set(entry)
    assert set(TIMING_STEPS) == set(data["timings"])
    assert all(value >= 0 for value in data["timings"].values())
    layer = data["layers"][0]
    for key in ("name", "type", "shape_ok", "torch_shape", "keras_shape", "expected_shape", "max_abs_diff", "ok"):
        assert key in layer
    assert VerifyReport.model_validate_json(report.to_json()) == report
    assert "VERDICT: OK" in report.render(use_rich=False)
    assert "VERDICT: OK" in report.render(use_rich=True)


def _hand_counts(plan_name: str):
    """Hand-computed (trainable, non_trainable) totals, layer by layer (see the example files)."""
    if plan_name == "mobile_block":
        stem = 3 * 3 * 3 * 16                       # no bias
        stem_bn = 2 * 16                            # gamma, beta (+ 2*16 moving stats)
        dw = 3 * 3 * 16 * 2                         # depthwise, multiplier 2, no bias
        dw_bn = 2 * 32
        project = 32 * 16 + 16
        sep = 3 * 3 * 16 + 16 * 24 + 24             # depthwise + pointwise + bias
        sep_act = 24                                # PReLU per channel
        branch = 3 * 3 * (16 // 8) * 8 + 8          # groups 8
        classifier = 32 * 5 + 5
        return stem + stem_bn + dw + dw_bn + project + sep + sep_act + branch + classifier, 2 * 16 + 2 * 32
    if plan_name == "autoencoder":
        enc1 = 3 * 3 * 1 * 8 + 8
        enc2 = 3 * 3 * 8 * 16 + 16
        dec1 = 4 * 4 * 16 * 8 + 8                   # transposed: in 16 -> out 8
        dec2 = 3 * 3 * 8 * 4 + 4
        out = 3 * 3 * 4 * 1 + 1
        return enc1 + enc2 + dec1 + dec2 + out, 0
    raise KeyError(plan_name)


@pytest.mark.parametrize("name", ["mobile_block", "autoencoder"])
def test_parameter_reconciliation(name):
    path = ROOT / "examples" / f"{name}.yaml"
    trainable, non_trainable = _hand_counts(name)
    assert (trainable, non_trainable) == ((2237, 96) if name == "mobile_block" else (3633, 0))
    report = cnnspec.verify(path)
    assert report.ok and report.params_ok
    for source in ("spec", "torch", "keras"):
        count = report.params[source]
        assert (count.trainable, count.non_trainable, count.ok) == (trainable, non_trainable, True), source
    # the frameworks' own counting, on models built independently of the verifier
    torch_model, keras_model = build(path, "torch"), build(path, "keras")
    torch_params = sum(p.numel() for p in torch_model.parameters())
    torch_stats = sum(b.numel() for n, b in torch_model.named_buffers() if n.endswith(("running_mean", "running_var")))
    assert (torch_params, torch_stats) == (trainable, non_trainable)
    assert keras_model.count_params() == trainable + non_trainable
    # ONNX: both graphs take the weights as inputs, so they count the models' own parameters exactly
    for source in ("torch_onnx", "keras_onnx"):
        count = report.params[source]
        assert (count.trainable, count.non_trainable, count.ok) == (trainable, non_trainable, True), source
        assert count.notes[0] == f"{trainable + non_trainable:,} float weight-input elements = spec total exactly"


def test_input_shape_in_both_graphs(tmp_path):
    report = cnnspec.verify(ROOT / "examples" / "signal_1d.yaml", keep_onnx=tmp_path, batch=1)
    assert report.ok
    torch_graph, keras_graph = onnx.load(str(tmp_path / "torch.onnx")), onnx.load(str(tmp_path / "keras.onnx"))
    plan = cnnspec.resolve(ROOT / "examples" / "signal_1d.yaml")
    dims = lambda graph: [d.dim_value or d.dim_param for d in graph.graph.input[0].type.tensor_type.shape.dim]  # noqa: E731
    assert dims(torch_graph)[1:] == list(plan.input_shape)            # NCL
    assert dims(keras_graph)[1:] == list(plan.input_shape[1:]) + [plan.input_shape[0]]  # NLC
    assert [o.name for o in torch_graph.graph.output] == [layer.name for layer in plan.layers]


# --------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "cnnspec", "verify", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_exit_0_json_to_stdout(capsys):
    code = cli.main(["verify", str(ROOT / "examples" / "mnist_convnet.yaml"), "--json", "-", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    data = json.loads(out)  # stdout carries only the JSON: {ok, exit_code, reports} even for one spec
    assert data["ok"] is True and data["exit_code"] == 0 and len(data["reports"]) == 1
    assert data["reports"][0]["spec"] == "mnist_convnet"
    assert data["reports"][0]["params"]["spec"]["trainable"] == 104_202


def test_cli_exit_1_on_mismatch_names_the_layer(capsys, monkeypatch):
    import cnnspec.weights.transfer as weights

    real_transfer = weights.transfer_weights

    def transfer_then_break_conv2(src, dst, spec):
        real_transfer(src, dst, spec)
        kernel = dst.get_layer("conv2d_2").kernel  # the second conv of mnist_convnet (unnamed: <type>_<index>)
        kernel.assign(kernel.numpy() * 1.01)

    monkeypatch.setattr(weights, "transfer_weights", transfer_then_break_conv2)
    code = cli.main(["verify", str(ROOT / "examples" / "mnist_convnet.yaml"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 1
    assert "MISMATCH" in out and "First divergent layer: conv2d_2 (conv2d)" in out


def test_cli_exit_1_when_tolerance_is_tighter_than_float32(capsys):
    # BatchNorm is computed in a different order in the two graphs: ~1e-6 apart, not bit-identical.
    code = cli.main(["verify", str(ROOT / "examples" / "pytorch_cnn_bn.yaml"), "--atol", "0", "--rtol", "0", "--no-progress"])
    assert code == 1
    assert "First divergent layer" in capsys.readouterr().out


def test_cli_exit_2_invalid_spec_located_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cnnspec: 1\nname: bad\ninput: {channels: 1, size: [4, 4]}\nlayers:\n  - {type: conv2d, filters: 2, kernel_size: 5}\n")
    result = run_cli(bad, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{bad}:5:" in result.stderr
    assert "torch" not in result.stdout


def test_cli_parallel_two_specs_keep_onnx_and_json(tmp_path):
    report_path = tmp_path / "report.json"
    keep = tmp_path / "graphs"
    specs = [ROOT / "examples" / "same_stride2.yaml", ROOT / "examples" / "autoencoder.yaml"]
    result = run_cli(*specs, "-j", "2", "--json", report_path, "--keep-onnx", keep, "--no-progress")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert "2 specs: 2 ok" in result.stdout
    data = json.loads(report_path.read_text())
    assert data["ok"] is True and [r["spec"] for r in data["reports"]] == ["same_stride2", "autoencoder"]
    for name in ("same_stride2", "autoencoder"):
        plan = cnnspec.resolve(ROOT / "examples" / f"{name}.yaml")
        files = sorted(p.name for p in (keep / name).iterdir())
        assert files == ["keras.onnx", "torch.onnx"]
        for file_name in files:
            onnx.checker.check_model(str(keep / name / file_name))
            graph = onnx.load(str(keep / name / file_name))
            assert len(graph.graph.output) == len(plan.layers)
        assert [o.name for o in onnx.load(str(keep / name / "torch.onnx")).graph.output] == [l.name for l in plan.layers]


def test_cli_several_specs_worst_exit_code_wins(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cnnspec: 1\nname: bad\ninput: {channels: 1, size: [8, 8]}\nlayers:\n  - {type: conv2d, filter: 2, kernel_size: 3}\n")
    code = cli.main(["verify", str(ROOT / "examples" / "exercises" / "k5_p2_32.yaml"), str(bad), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    assert "INVALID" in captured.out and "1 ok" in captured.out
    assert f"{bad}:5:" in captured.err


def test_keep_onnx_single_spec_numbers_match_frameworks(tmp_path):
    """The kept graphs run in onnxruntime and reproduce each framework's own forward pass."""
    import onnxruntime as ort

    from cnnspec.weights.transfer import randomize, transfer_weights

    path = ROOT / "examples" / "pytorch_cnn_bn.yaml"
    plan = cnnspec.resolve(path)
    torch_model = build(plan, "torch")
    randomize(torch_model, 0)
    keras_model = build(plan, "keras")
    transfer_weights(torch_model, keras_model, plan)
    report = cnnspec.verify(plan, torch_model=torch_model, keras_model=keras_model, keep_onnx=tmp_path)
    assert report.ok
    x = np.random.default_rng(1).standard_normal((2, *plan.input_shape)).astype(np.float32)
    torch_session = ort.InferenceSession(str(tmp_path / "torch.onnx"), providers=["CPUExecutionProvider"])
    keras_session = ort.InferenceSession(str(tmp_path / "keras.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected_torch = torch_model(torch.from_numpy(x)).numpy()
    expected_keras = keras_model(np.moveaxis(x, 1, -1), training=False)
    got_torch = torch_session.run(None, {"input": x})[-1]
    got_keras = keras_session.run(None, {"input": np.ascontiguousarray(np.moveaxis(x, 1, -1))})[-1]
    np.testing.assert_allclose(got_torch, expected_torch, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got_keras, np.asarray(expected_keras), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------
# The comparison itself (numpy's allclose as the reference)
# --------------------------------------------------------------------------------------


def test_compare_arrays_follows_allclose_including_nan_and_inf():
    from cnnspec.verifier.compare import compare_arrays

    rng = np.random.default_rng(0)
    torch_values = rng.standard_normal((2, 3, 4, 4)).astype(np.float32) * 10
    for scale in (1e-6, 1e-5, 1e-4, 1e-3):
        keras_values = (torch_values + rng.standard_normal(torch_values.shape).astype(np.float32) * scale).astype(np.float32)
        stats = compare_arrays(torch_values, keras_values, 1e-4, 1e-4)
        assert stats["ok"] == np.allclose(keras_values, torch_values, atol=1e-4, rtol=1e-4)
        assert stats["max_abs_diff"] == pytest.approx(float(np.max(np.abs(keras_values - torch_values))))
    special = np.array([[1.0, np.nan, np.inf, -np.inf]], dtype=np.float32)
    assert compare_arrays(special, special.copy(), 1e-4, 1e-4)["ok"]
    for position, value in ((1, 0.0), (2, -np.inf), (3, 1e30)):
        other = special.copy()
        other[0, position] = value
        assert not compare_arrays(special, other, 1e-4, 1e-4)["ok"]
        assert not np.allclose(other, special, atol=1e-4, rtol=1e-4, equal_nan=True)


def test_to_channels_first_undoes_keras_layouts():
    from cnnspec.verifier.compare import to_channels_first

    plan = cnnspec.resolve({"cnnspec": 1, "name": "layouts", "input": {"channels": 3, "size": [4, 5]}, "layers": [
        {"name": "conv", "type": "conv2d", "filters": 2, "kernel_size": 1},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "dense", "units": 2}]})
    feature_map = np.arange(2 * 2 * 4 * 5, dtype=np.float32).reshape(2, 2, 4, 5)  # N, C, H, W
    keras_map = np.transpose(feature_map, (0, 2, 3, 1))
    np.testing.assert_array_equal(to_channels_first(keras_map, plan.layer("conv")), feature_map)
    torch_flat = torch.flatten(torch.from_numpy(feature_map), 1).numpy()                 # C,H,W order
    keras_flat = keras.ops.convert_to_numpy(keras.layers.Flatten()(keras_map))          # H,W,C order
    np.testing.assert_array_equal(to_channels_first(keras_flat, plan.layer("flat")), torch_flat)


def test_run_onnx_runs_the_graph_as_written_zero_pad_then_max_pool(tmp_path):
    """onnxruntime's Pad_Fusion folds Pad(0) into MaxPool: wrong on negative inputs.

    The verifier runs graphs with every other optimisation on and this rewrite excluded; this
    is the regression test (the reference is torch).
    """
    import onnxruntime as ort
    import torch

    from cnnspec.verifier.onnx_export import WRONG_REWRITES, run_onnx

    model = torch.nn.Sequential(torch.nn.ZeroPad2d(1), torch.nn.MaxPool2d(2)).eval()
    x = -torch.rand(1, 2, 6, 6) - 1.0  # all negative: a padded zero would win every border max
    path = tmp_path / "padpool.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"])
    with torch.no_grad():
        expected = model(x).numpy()
    # the rewrite is real: onnxruntime's default session gets the border cells wrong ...
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    default = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert abs(default.run(None, {"input": x.numpy()})[0] - expected).max() > 0.5
    # ... and the verifier's sessions exclude exactly it
    assert WRONG_REWRITES == ("Pad_Fusion",)
    got = run_onnx(path, x.numpy())[0]
    assert abs(got - expected).max() == 0.0


def test_keep_onnx_two_specs_with_the_same_model_name_do_not_overwrite(tmp_path):
    spec = ROOT / "examples" / "exercises" / "conv_pool_28.yaml"
    copy = tmp_path / "copy.yaml"
    copy.write_text(spec.read_text())
    keep = tmp_path / "onnx"
    result = run_cli(spec, copy, "--keep-onnx", keep, "--no-progress")
    assert result.returncode == 0, result.stderr
    folders = sorted(p.name for p in keep.iterdir())
    assert folders == ["exercise_conv_pool_28", "exercise_conv_pool_28_1"]
    for folder in folders:
        assert {p.name for p in (keep / folder).iterdir()} == {"torch.onnx", "keras.onnx"}


def test_rerun_replaces_the_json_report_and_kept_graphs(tmp_path):
    """Reports are regenerated outputs: a CI rerun replaces them and exits 0 (2 means bad input only)."""
    report = tmp_path / "report.json"
    report.write_text("stale\n")
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "torch.onnx").write_text("stale\n")
    spec = ROOT / "examples" / "exercises" / "conv_pool_28.yaml"
    result = run_cli(spec, "--json", report, "--keep-onnx", tmp_path / "graphs", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["ok"] is True
    onnx.checker.check_model(str(tmp_path / "graphs" / "torch.onnx"))

def test_cli_process_exit_code_and_complete_output_after_the_frameworks(tmp_path):
    # The command ends without the frameworks' interpreter teardown: its exit code, its stdout
    # and its report must still be complete (a mismatch: --atol 0 --rtol 0 against float32 noise).
    report_path = tmp_path / "report.json"
    result = run_cli(ROOT / "examples" / "pytorch_cnn_bn.yaml", "--atol", "0", "--rtol", "0",
                     "--json", report_path, "--no-progress")
    assert result.returncode == 1, result.stderr
    assert "MISMATCH" in result.stdout and "First divergent layer" in result.stdout
    assert "Timings (s):" in result.stdout  # the report's last lines were flushed
    assert json.loads(report_path.read_text())["exit_code"] == 1


def _canonical_graph(proto) -> tuple:
    """The graph without its generated names or its node order: each tensor is known by what
    computes it (its producer's op, attributes and inputs, recursively; a graph input by its
    name, a constant by its values), and the nodes form a sorted list.  tf2onnx numbers generated names with a process-wide
    counter and orders equal-rank nodes by those names, so two conversions of one model share
    neither -- but equal graphs give equal lists, and a node more or less, or other wiring, not."""
    import hashlib

    graph = proto.graph
    known: dict[str, str] = {value.name: f"input:{value.name}" for value in graph.input}
    for tensor in graph.initializer:  # constants are named by the counter too: known by their values
        values = onnx.numpy_helper.to_array(tensor)
        digest = hashlib.sha256(repr((values.dtype.str, values.shape)).encode() + values.tobytes()).hexdigest()
        known[tensor.name] = f"constant:{digest}"
    nodes = list(graph.node)
    rows = []
    while nodes:
        waiting = []
        for node in nodes:
            if not all(name in known or name == "" for name in node.input):
                waiting.append(node)
                continue
            attributes = repr(sorted((a.name, onnx.helper.get_attribute_value(a)) for a in node.attribute))
            inputs = [known.get(name, "") for name in node.input]
            signature = hashlib.sha256(repr((node.op_type, attributes, inputs)).encode()).hexdigest()
            for index, name in enumerate(node.output):
                known[name] = f"{signature}:{index}"
            rows.append((node.op_type, attributes, inputs, signature))
        assert len(waiting) < len(nodes), "the graph has a cycle or an undefined input"
        nodes = waiting
    return sorted(rows), [known[value.name] for value in graph.output]


# cnnspec's speed-ups of tf2onnx's Python (onnx_export.py), each a context manager.
_TF2ONNX_SPEED_UPS = (
    "_bulk_output_renaming",
    "_input_check_by_identity",
    "_rewriters_with_something_to_rewrite",
)


@pytest.mark.parametrize("spec", ["inception_resnet_block", "mnist_convnet", "unet_group_norm"])
def test_keras_export_speed_ups_of_tf2onnx_leave_the_graph_identical(monkeypatch, spec):
    """Negative control, tried: skipping tf2onnx's rewrite_biasadd_with_conv2d fails all three."""
    import contextlib

    from cnnspec.engine.plan import channels_last
    from cnnspec.verifier import onnx_export as X

    plan = cnnspec.resolve(ROOT / "examples" / f"{spec}.yaml")
    model = build(plan, "keras")
    names = [layer.name for layer in plan.layers]
    fast = X.export_keras(model, names, channels_last(plan.input_shape))
    for speed_up in _TF2ONNX_SPEED_UPS:
        monkeypatch.setattr(X, speed_up, contextlib.nullcontext)
    plain = X.export_keras(model, names, channels_last(plan.input_shape))
    assert len(plain.proto.graph.output) == len(names)
    assert _canonical_graph(fast.proto) == _canonical_graph(plain.proto)
    assert fast.weights.keys() == plain.weights.keys()
    for name, values in fast.weights.items():
        np.testing.assert_array_equal(values, plain.weights[name])


def test_rewriter_skipping_knows_the_rewriters_tf2onnx_runs():
    """A renamed or removed tf2onnx rewriter would leave a stale entry (and one skipped under a
    wrong name would run): every name in the table is one that tf2onnx's pass calls."""
    import inspect

    from tf2onnx import tfonnx

    from cnnspec.verifier import onnx_export as X

    called = inspect.getsource(tfonnx.process_parsed_graph)
    for name in X._REWRITER_NEEDS:
        assert f"{name}," in called or f"{name}\n" in called, name


def test_exported_keras_weights_keep_their_values_when_the_model_changes():
    """The exported graph's weights are the Keras variables' buffers, not copies: TensorFlow must
    copy a buffer on write, or a later assignment would change the weights the graph runs with."""
    from cnnspec.engine.plan import channels_last
    from cnnspec.verifier import onnx_export as X

    plan = cnnspec.resolve(ROOT / "examples" / "mnist_convnet.yaml")
    model = build(plan, "keras")
    graph = X.export_keras(model, [layer.name for layer in plan.layers], channels_last(plan.input_shape))
    before = {name: values.copy() for name, values in graph.weights.items()}
    for variable in model.variables:
        variable.assign(np.full(variable.shape, 7.0, dtype="float32"))
    assert before.keys() == graph.weights.keys()
    for name, values in graph.weights.items():
        np.testing.assert_array_equal(values, before[name])


def test_verify_unfreezes_the_objects_its_imports_froze():
    """verify takes what the frameworks loaded out of the garbage collector's passes while it
    runs (onnx_export's speed), and gives the process back as it found it."""
    import gc

    assert gc.get_freeze_count() == 0
    report = cnnspec.verify(ROOT / "examples" / "mnist_convnet.yaml")
    assert report.ok
    assert gc.get_freeze_count() == 0


def test_verify_leaves_objects_the_caller_froze_frozen():
    import gc

    from cnnspec.verifier.run import _collector_spared, freeze_loaded

    @_collector_spared
    def frozen_inside() -> int:
        freeze_loaded()
        return gc.get_freeze_count()

    assert frozen_inside() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()
    try:
        count = gc.get_freeze_count()
        # (frozen objects that die leave the count: it can only fall)
        assert frozen_inside() <= count  # nothing more frozen inside
        assert gc.get_freeze_count() > 0  # and nothing unfrozen after
    finally:
        gc.unfreeze()


def test_frozen_torch_parameters_still_count_as_trainable():
    """A fine-tuned port with a frozen backbone (requires_grad=False) has the spec's parameters:
    the count agrees, with a note, instead of a parameter 'mismatch'."""
    import cnnspec

    spec = cnnspec.load_spec(ROOT / "examples" / "mnist_convnet.yaml")
    port = cnnspec.build(spec, "torch")
    frozen = 0
    for parameter in list(port.parameters())[:2]:
        parameter.requires_grad_(False)
        frozen += parameter.numel()
    report = cnnspec.verify(spec, torch_model=port)
    assert report.ok and report.params["torch"].ok
    assert f"{frozen:,} of the trainable are frozen" in " ".join(report.params["torch"].notes)
