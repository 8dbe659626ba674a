"""``cnnspec verify SPEC`` with the PyTorch side in a forked worker gives the one-process report.

Each case runs the real command in a fresh process twice: with the worker forked before
TensorFlow is imported (``CNNSPEC_VERIFY_IN_PROCESS=0``: whatever the machine's load) and
with ``CNNSPEC_VERIFY_IN_PROCESS=1`` (everything in one process, as for models you pass).
The JSON reports must be identical in every field but the timings: every layer row, the
parameter counts, the referee.  The negative controls break one side on purpose just before
its export (torch: 0.01 added to a convolution's output; Keras: that convolution's kernel
scaled by 1.01 after the weights were shared) and must fail at that layer with the referee
naming the side, on both paths.  Errors of the PyTorch side keep their message and exit
code; a worker that dies is a clear error, not a hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("keras")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("tf2onnx")

pytestmark = [pytest.mark.frameworks, pytest.mark.onnx]

ROOT = Path(__file__).resolve().parent.parent

# Runs the CLI in this process after an optional patch; says on stderr whether torch was loaded
# here (it is not when the worker did the PyTorch side) and whether a child process is left.
DRIVER = textwrap.dedent(
    """
    import multiprocessing, os, sys
    patch = os.environ.get("CNNSPEC_TEST_PATCH", "")
    layer = os.environ.get("CNNSPEC_TEST_LAYER", "conv2d_2")
    import cnnspec.verifier.onnx_export as X

    if patch in ("torch_kernel", "keras_kernel"):
        real = X.export_torch if patch == "torch_kernel" else X.export_keras
        done = []

        def scaled(model, *args, **kwargs):
            if not done:  # the first export only: the other side keeps the shared weights
                done.append(True)
                if patch == "torch_kernel":
                    conv = getattr(model, layer)
                    forward = conv.forward
                    conv.forward = lambda x: forward(x) + 0.01  # torch computes another layer
                else:
                    kernel = model.get_layer(layer).kernel
                    kernel.assign(kernel.numpy() * 1.01)
            return real(model, *args, **kwargs)

        setattr(X, "export_torch" if patch == "torch_kernel" else "export_keras", scaled)
    elif patch == "unwritten":
        import cnnspec.targets.build as B
        import cnnspec.weights.transfer as T

        real_write, real_build, calls = T.write_keras_weights, B.build, []

        def write_but_one(model, plan, tensors, **options):
            written = real_write(model, plan, tensors, **options)
            calls.append(model)
            return written[:-1] if len(calls) == 1 else written

        def counted(plan, target, **options):
            if target == "keras":
                print("KERAS_BUILD", file=sys.stderr)
            return real_build(plan, target, **options)

        T.write_keras_weights, B.build = write_but_one, counted
    elif patch == "fork_fails":

        def no_fork():
            raise BlockingIOError(11, "Resource temporarily unavailable")

        os.fork = no_fork
    elif patch in ("torch_refuses", "torch_dies"):
        from cnnspec.errors import CnnspecError
        from cnnspec.targets.torch.target import TorchTarget

        def refuse(self, plan):
            if patch == "torch_dies":
                os._exit(9)
            raise CnnspecError("the torch target refuses this spec (a test)")

        TorchTarget.build = refuse

    from cnnspec.cli.main import main

    code = main(sys.argv[1:])
    print("TORCH_LOADED", "torch" in sys.modules, file=sys.stderr)
    import time

    deadline = time.monotonic() + 10  # a worker told to stop ends by itself, soon
    while multiprocessing.active_children() and time.monotonic() < deadline:
        time.sleep(0.05)
    print("CHILDREN", len(multiprocessing.active_children()), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
    """
)


def _verify(
    tmp_path, spec, *extra, in_process: bool, patch: str = "", name: str = "report", layer=""
):
    report = tmp_path / f"{name}_{'in' if in_process else 'worker'}.json"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["CNNSPEC_TEST_PATCH"] = patch
    env["CNNSPEC_TEST_LAYER"] = layer or "conv2d_2"
    env["CNNSPEC_VERIFY_IN_PROCESS"] = "1" if in_process else "0"  # "0": whatever the load
    args = ["verify", str(spec), "--json", str(report), "--no-progress", *map(str, extra)]
    result = subprocess.run(
        [sys.executable, str(driver), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    data = json.loads(report.read_text()) if report.exists() else None
    return result, data


def _without_timings(data: dict) -> dict:
    for report in data["reports"]:
        assert report.pop("timings")
    return data


def _both(tmp_path, spec, *extra, patch: str = "", name: str = "report", layer: str = ""):
    options = dict(patch=patch, name=name, layer=layer)
    worker, worker_data = _verify(tmp_path, spec, *extra, in_process=False, **options)
    alone, alone_data = _verify(tmp_path, spec, *extra, in_process=True, **options)
    assert "TORCH_LOADED False" in worker.stderr, worker.stderr  # the worker did the torch side
    assert "TORCH_LOADED True" in alone.stderr, alone.stderr
    assert "CHILDREN 0" in worker.stderr
    assert worker.returncode == alone.returncode
    return worker, _without_timings(worker_data), _without_timings(alone_data)


OPEN_SPEC = """\
cnnspec: 1
name: open_worker
input: {channels: 3, size: [null, null], reference_size: [20, 20]}
layers:
  - {type: conv2d, name: c1, filters: 6, kernel_size: 3, stride: 2, padding: same, activation: relu}
  - {type: batch_norm, name: bn}
  - {type: max_pool2d, name: p1, pool_size: 3, stride: 2, padding: same}
  - {type: conv2d, name: c2, filters: 8, kernel_size: 3, padding: [1, 1]}
  - {type: upsample, name: up, scale_factor: 2}
  - {type: global_avg_pool, name: gap}
  - {type: dense, name: fc, units: 4}
"""


@pytest.mark.parametrize("example", ["mnist_convnet.yaml", "pytorch_cnn_bn.yaml"])
def test_worker_report_equals_the_in_process_report(tmp_path, example):
    import onnx

    kept = tmp_path / "graphs"
    result, worker, alone = _both(tmp_path, ROOT / "examples" / example, "--keep-onnx", kept)
    assert result.returncode == 0, result.stderr
    assert worker == alone
    report = worker["reports"][0]
    assert report["ok"] and report["referee"]["torch_departs_at"] is None
    assert report["params"]["torch"]["ok"] and report["params"]["torch_onnx"]["total"]
    assert report["onnx_files"] == {
        "torch": str(kept / "torch.onnx"),
        "keras": str(kept / "keras.onnx"),
    }
    for path in report["onnx_files"].values():
        onnx.checker.check_model(onnx.load(path))


def test_worker_report_equals_the_in_process_report_at_several_open_sizes(tmp_path):
    spec = tmp_path / "open.yaml"
    spec.write_text(OPEN_SPEC)
    sizes = ["--input-size", "20", "--input-size", "21", "--input-size", "12,33"]
    result, worker, alone = _both(tmp_path, spec, *sizes)
    assert result.returncode == 0, result.stderr
    assert worker == alone
    assert [size["input_size"] for size in worker["reports"][0]["sizes"]] == [
        [20, 20],
        [21, 21],
        [12, 33],
    ]
    _, fcn, fcn_alone = _both(tmp_path, ROOT / "examples" / "fcn_any_size.yaml", name="fcn")
    assert fcn == fcn_alone and fcn["ok"]


@pytest.mark.parametrize("side", ["torch", "keras"])
def test_a_broken_side_fails_at_its_layer_on_both_paths(tmp_path, side):
    result, worker, alone = _both(
        tmp_path, ROOT / "examples" / "mnist_convnet.yaml", patch=f"{side}_kernel"
    )
    assert result.returncode == 1
    assert worker == alone
    report = worker["reports"][0]
    assert report["first_divergent_layer"] == "conv2d_2"
    assert [row["ok"] for row in report["layers"][:2]] == [True, True]
    referee = report["referee"]
    other = "keras" if side == "torch" else "torch"
    assert referee[f"{side}_departs_at"] == "conv2d_2" and referee[f"{other}_departs_at"] is None


def test_a_divergence_at_the_first_of_several_sizes_on_both_paths(tmp_path):
    # The evidence asks the worker for the layer's kernel after it sent every size.
    spec = tmp_path / "open.yaml"
    spec.write_text(OPEN_SPEC)
    result, worker, alone = _both(tmp_path, spec, patch="keras_kernel", layer="c2")
    assert result.returncode == 1
    assert worker == alone
    report = worker["reports"][0]
    assert report["first_divergent_layer"] == "c2" and report["divergence"]["evidence"]
    assert [size["ok"] for size in report["sizes"]] == [False, False]
    assert report["referee"]["keras_departs_at"] == "c2"


def test_an_error_of_the_torch_side_is_the_same_error(tmp_path):
    spec = ROOT / "examples" / "mnist_convnet.yaml"
    worker, _ = _verify(tmp_path, spec, in_process=False, patch="torch_refuses")
    alone, _ = _verify(tmp_path, spec, in_process=True, patch="torch_refuses")
    assert worker.returncode == alone.returncode == 2
    assert "the torch target refuses this spec (a test)" in worker.stderr
    assert worker.stderr.splitlines()[0] == alone.stderr.splitlines()[0]
    assert "Traceback" not in worker.stderr


def test_a_worker_that_dies_is_a_clear_error_not_a_hang(tmp_path):
    result, data = _verify(
        tmp_path, ROOT / "examples" / "mnist_convnet.yaml", in_process=False, patch="torch_dies"
    )
    assert result.returncode == 70
    assert "PyTorch worker process ended without an answer (exit code 9)" in result.stderr
    assert "CNNSPEC_VERIFY_IN_PROCESS=1" in result.stderr
    assert "Traceback" not in result.stderr
    assert "CHILDREN 0" in result.stderr


def test_a_worker_that_cannot_start_leaves_the_verification_in_one_process(tmp_path):
    spec = ROOT / "examples" / "same_stride2.yaml"
    fallback, fallback_data = _verify(tmp_path, spec, in_process=False, patch="fork_fails")
    alone, alone_data = _verify(tmp_path, spec, in_process=True)
    assert fallback.returncode == alone.returncode == 0, fallback.stderr
    assert "TORCH_LOADED True" in fallback.stderr  # verified here
    assert _without_timings(fallback_data) == _without_timings(alone_data)


def test_arrays_travel_through_a_file_and_one_that_has_no_room_is_skipped(tmp_path):
    import numpy as np

    from cnnspec.verifier import torch_worker as W

    arrays = [
        np.arange(10, dtype=np.float32).reshape(2, 5),
        np.zeros((0, 3), dtype=np.float32),
        np.array([1, -2, 3], dtype=np.int64),
        np.float32(2.5) * np.ones((3, 1, 2), dtype=np.float32),
    ]
    full, room = tmp_path / "missing", tmp_path / "room"  # no such directory: no room there
    room.mkdir()
    packed = W._put_arrays((str(full), str(room)), "x", arrays)
    assert Path(packed[0]).parent == room
    back = W._get_arrays(packed)
    assert not Path(packed[0]).exists()  # mapped, then removed
    for array, returned in zip(arrays, back):
        assert returned.dtype == array.dtype and returned.shape == array.shape
        np.testing.assert_array_equal(returned, array)
    back[0][0, 0] = 99.0  # copy-on-write: writable, never back into the file


def test_keras_variables_start_at_their_values_or_zero_only_inside():
    """The Keras build beside the worker skips the initializers' random draws: a variable the
    weights name starts at its value, any other float variable at zero."""
    import numpy as np

    from cnnspec.verifier.onnx_export import import_frameworks

    import_frameworks(("tensorflow", "keras"))
    import keras

    from cnnspec.verifier import run as R

    def small():
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(3)(inputs))

    with R._keras_variables_start_at() as started:
        inside = small()
    outside = small()
    assert not np.any(inside.layers[-1].kernel.numpy()) and not started
    assert np.any(outside.layers[-1].kernel.numpy())
    assert not np.any(small().layers[-1].bias.numpy())  # a zeros initializer stays zeros

    from cnnspec.layers import WeightSlot

    kernel_slot = WeightSlot(tensor="kernel", torch_attr="weight", keras_names=("kernel",))
    kernel = np.arange(12, dtype=np.float32).reshape(4, 3)
    with R._keras_variables_start_at({("fc", "kernel"): (kernel_slot, kernel)}) as started:
        inputs = keras.Input((4,))
        named = keras.Model(inputs, keras.layers.Dense(3, name="fc")(inputs))
    layer = named.get_layer("fc")
    np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
    assert started == {id(layer.kernel): ("fc", "kernel")}
    assert not np.any(layer.bias.numpy())


def test_a_keras_variable_the_transfer_leaves_is_drawn_by_building_again(tmp_path):
    spec = ROOT / "examples" / "pytorch_cnn_bn.yaml"
    worker, worker_data = _verify(tmp_path, spec, in_process=False, patch="unwritten")
    alone, alone_data = _verify(tmp_path, spec, in_process=True)
    assert worker.returncode == alone.returncode == 0, worker.stderr
    assert worker.stderr.count("KERAS_BUILD") == 2  # zero-started, then as in one process
    assert _without_timings(worker_data) == _without_timings(alone_data)


def test_the_worker_needs_spare_cores(monkeypatch):
    from cnnspec.verifier import torch_worker as W

    monkeypatch.delenv(W.IN_PROCESS_ENV, raising=False)
    monkeypatch.setattr(W.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(W.os, "getloadavg", lambda: (1.2, 0.0, 0.0))
    assert W._spare_cores()
    monkeypatch.setattr(W.os, "getloadavg", lambda: (2.5, 0.0, 0.0))
    assert not W._spare_cores()
    monkeypatch.setattr(W.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(W.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert not W._spare_cores()
