"""Open input sizes in the verifier, the ONNX target and the importers (issue 12).

* The spec's ONNX graph of every registered example, opened (``size: [null, ...]``), takes
  any size: emitted once with symbolic dimensions it gives at each size exactly what the
  graph emitted from the plan at that size gives (those graphs are the referee that the
  other tests compare with PyTorch and Keras).  onnxruntime's rules the open emissions lean
  on are measured against the plan's rule and against PyTorch.
* ``verify`` builds and exports both models once, with dynamic axes, and compares them at
  several sizes; a hand port whose padding is fixed fails at the first size where fixed
  and 'same' padding differ, at the right layer; exit codes and the JSON report.
* The importers keep unknown sizes unknown.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from cnnspec.engine import shapes as S
from cnnspec.engine.plan import planned_size_after, resolve
from cnnspec.errors import CnnspecError, SpecError
from cnnspec.layers import REGISTRY

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

OPEN_SPEC = """\
cnnspec: 1
name: open_net
input: {channels: 3, size: [null, null], reference_size: [20, 20]}
layers:
  - {type: conv2d, name: c1, filters: 6, kernel_size: 3, padding: same, activation: relu}
  - {type: conv2d, name: c2, filters: 6, kernel_size: 3, padding: valid}
  - {type: batch_norm, name: bn}
  - {type: max_pool2d, name: p1, pool_size: 2}
  - {type: conv2d, name: c3, filters: 8, kernel_size: 3, padding: [1, 1]}
  - {type: global_avg_pool, name: gap}
  - {type: dense, name: fc, units: 4}
"""

STRIDED_SPEC = """\
cnnspec: 1
name: strided
input: {channels: 3, size: [null, null], reference_size: [16, 16]}
layers:
  - {type: conv2d, name: stem, filters: 4, kernel_size: 3, stride: 2, padding: same}
  - {type: global_avg_pool, name: gap}
  - {type: dense, name: fc, units: 3}
"""

# A hand port of STRIDED_SPEC that pads like 'same' only at even sizes: (0, 1) is 'same' for a
# 3x3 stride-2 window when the size is even, (1, 1) when it is odd.
STATIC_PORT = """\
import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = self.stem(F.pad(x, (0, 1, 0, 1)))
        return self.fc(x.mean(dim=(2, 3)))
"""


def _opened(document: dict) -> dict:
    return dict(
        document, input=dict(document["input"], size=[None] * len(document["input"]["size"]))
    )


# --------------------------------------------------------------------------------------
# The spec's ONNX graph at any size (onnx and onnxruntime only)
# --------------------------------------------------------------------------------------


def _examples():
    for definition in REGISTRY.definitions():
        for number, example in enumerate(definition.examples):
            yield pytest.param(example, id=f"{definition.types[0]}-{number}")


def _check_open_graph(document: dict, base: tuple[int, ...]) -> None:
    try:
        resolve(document, input_size=base)
    except SpecError:
        pytest.skip("a flat vector whose length follows the size feeds parameters: refused")
    # the base, then sizes one and three steps past it (one more on the second axis) that the
    # spec plans at: a pixel unshuffle takes only multiples of its factor
    sizes = [base] + [
        planned_size_after(document, base, [step + axis for axis in range(len(base))])
        for step in (1, 3)
    ]
    compared = _compare_open_graph(document, base, sizes)
    if compared is None:
        pytest.skip("no ONNX emission")
    assert compared >= 2


def _compare_open_graph(document: dict, base: tuple[int, ...], sizes) -> int | None:
    """Run the open graph planned at ``base`` and the graph planned at each size; the sizes compared
    (None: a layer type has no ONNX emission)."""
    from cnnspec.targets.onnx.emit import (
        emit_graph,
        initial_weights,
        size_dependent_layer,
        unsupported_types,
    )
    from cnnspec.targets.onnx.model import check_strict
    from cnnspec.verifier.onnx_export import run_onnx

    plan = resolve(document, input_size=base)
    if unsupported_types(plan):
        return None
    try:
        graph = emit_graph(plan, open_size=True)
    except CnnspecError:  # an emission that refuses this case (a bicubic resize of a volume)
        return None
    assert size_dependent_layer(plan) is None
    check_strict(graph.proto)
    weights = initial_weights(graph, seed=1)
    compared = 0
    for step, size in enumerate(sizes):
        try:
            at_size = resolve(document, input_size=size)
        except SpecError:
            continue
        x = (
            np.random.default_rng(step)
            .standard_normal((2, *at_size.input_shape))
            .astype(np.float32)
        )
        expected = run_onnx(emit_graph(at_size).proto, x, weights)
        for layer, got, want in zip(at_size.layers, run_onnx(graph.proto, x, weights), expected):
            assert got.shape == want.shape, f"{layer.name} at {size}"
            np.testing.assert_allclose(
                got, want, rtol=1e-5, atol=1e-6, err_msg=f"{layer.name} at {size}"
            )
        compared += 1
    return compared


@pytest.mark.parametrize("example", list(_examples()))
def test_open_graph_of_every_example_equals_the_graph_planned_at_each_size(example):
    _check_open_graph(_opened(example.spec()), tuple(example.size))


@pytest.mark.parametrize(
    "pool",
    [
        {"type": "avg_pool2d", "pool_size": 1, "stride": 2, "padding": "same"},
        {"type": "avg_pool2d", "pool_size": [2, 3], "stride": 3, "padding": "same"},
        {"type": "max_pool2d", "pool_size": 2, "stride": 3, "padding": "same"},
        {"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": "same"},
        {"type": "conv2d", "filters": 2, "kernel_size": 3, "dilation": 2, "padding": "same"},
        {
            "type": "conv2d",
            "filters": 2,
            "kernel_size": [1, 3],
            "stride": [3, 2],
            "padding": "same",
        },
        {"type": "conv2d", "filters": 2, "kernel_size": 1, "stride": 4, "padding": "same"},
    ],
)
def test_open_graph_of_same_windows_with_any_kernel_stride_and_dilation(pool):
    """Windows smaller than their stride and dilated ones too, where onnxruntime's auto_pad
    refuses to run: those pad from the run-time size in the graph."""
    document = {
        "cnnspec": 1,
        "name": "pools",
        "input": {"channels": 2, "size": [None, None]},
        "layers": [pool],
    }
    _check_open_graph(document, (7, 8))


def test_a_static_emission_of_an_open_layer_is_found(monkeypatch):
    """Negative control: a conv whose 'same' padding is written as the plan's numbers."""
    from cnnspec.targets.onnx import graph as O
    from cnnspec.targets.onnx.emit import size_dependent_layer

    plan = resolve(STRIDED_SPEC)
    assert size_dependent_layer(plan) is None
    monkeypatch.setattr(O, "conv_window", lambda b, layer, source: (source, O.window(layer)))
    assert size_dependent_layer(plan) == "stem"


def _run_1d(node, x, initializers=()):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.reshape(1, 1, -1)})[0][0, 0]


def test_onnxruntime_same_upper_is_the_plans_same_rule_where_the_emission_uses_it():
    """Open 'same' layers emit auto_pad=SAME_UPPER where the window is at least its stride (and a
    convolution is not dilated); an average counts the real cells only."""
    from onnx import helper, numpy_helper

    cases = [
        (op, k, s)
        for op in ("Conv", "MaxPool", "AveragePool")
        for k in (1, 2, 3, 4, 5)
        for s in range(1, k + 1)
    ]
    for op, kernel, stride in cases:
        extra = {"count_include_pad": 0} if op == "AveragePool" else {}
        inputs = ["x", "w"] if op == "Conv" else ["x"]
        node = helper.make_node(
            op,
            inputs,
            ["y"],
            kernel_shape=[kernel],
            strides=[stride],
            auto_pad="SAME_UPPER",
            **extra,
        )
        weight = numpy_helper.from_array(
            np.arange(1, kernel + 1, dtype=np.float32).reshape(1, 1, -1), "w"
        )
        for n in range(1, 20):
            x = (np.arange(1, n + 1) * (-1.0) ** np.arange(n)).astype(np.float32)
            before, _ = S.same_padding(n, kernel, stride, 1)
            expected = []
            for i in range(S.ceil_div(n, stride)):
                window = range(i * stride - before, i * stride - before + kernel)
                if op == "Conv":
                    expected.append(sum(x[t] * (j + 1) for j, t in enumerate(window) if 0 <= t < n))
                    continue
                cells = [x[t] for t in window if 0 <= t < n]
                expected.append(max(cells) if op == "MaxPool" else sum(cells) / len(cells))
            got = _run_1d(node, x, [weight] if op == "Conv" else [])
            np.testing.assert_allclose(
                got, expected, rtol=1e-6, err_msg=f"{op} {kernel} {stride} {n}"
            )


def test_onnxruntime_ceil_mode_pools_are_pytorchs():
    """An open ceil-mode pool relies on it: the last window starts inside the input or left padding."""
    torch = pytest.importorskip("torch")
    from onnx import helper

    for op, reference in (("MaxPool", torch.nn.functional.max_pool1d), ("AveragePool", None)):
        for kernel, stride, pad in ((2, 2, 0), (3, 2, 1), (3, 3, 1), (4, 3, 2), (2, 1, 1)):
            for counted in (0, 1) if op == "AveragePool" else (0,):
                extra = {"count_include_pad": counted} if op == "AveragePool" else {}
                node = helper.make_node(
                    op,
                    ["x"],
                    ["y"],
                    kernel_shape=[kernel],
                    strides=[stride],
                    pads=[pad, pad],
                    ceil_mode=1,
                    **extra,
                )
                for n in range(max(kernel - 2 * pad, 1), 20):
                    x = (np.arange(1, n + 1) * (-1.0) ** np.arange(n)).astype(np.float32)
                    tensor = torch.from_numpy(x).reshape(1, 1, -1)
                    if reference is not None:
                        expected = reference(tensor, kernel, stride, pad, ceil_mode=True)
                    else:
                        expected = torch.nn.functional.avg_pool1d(
                            tensor,
                            kernel,
                            stride,
                            pad,
                            ceil_mode=True,
                            count_include_pad=bool(counted),
                        )
                    np.testing.assert_allclose(
                        _run_1d(node, x),
                        expected.numpy()[0, 0],
                        rtol=1e-6,
                        err_msg=f"{op} {kernel} {stride} {pad} {n}",
                    )


def test_build_onnx_of_an_open_spec_has_symbolic_axes_and_runs_at_any_size(tmp_path):
    from cnnspec.cli.main import main
    from cnnspec.targets.onnx.emit import emit_graph, initial_weights
    from cnnspec.verifier.onnx_export import run_onnx

    spec = tmp_path / "strided.yaml"
    spec.write_text(STRIDED_SPEC)
    out = tmp_path / "strided.onnx"
    assert main(["build", str(spec), "--target", "onnx", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "H", "W"]
    graph = emit_graph(resolve(STRIDED_SPEC))
    weights = initial_weights(graph)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for size in ((16, 16), (17, 17), (9, 30)):
        x = np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32)
        expected = run_onnx(emit_graph(resolve(STRIDED_SPEC, input_size=size)).proto, x, weights)[
            -1
        ]
        np.testing.assert_allclose(
            session.run(None, {"input": x})[0], expected, rtol=1e-5, atol=1e-6
        )
    # and it reads back as the open spec it came from
    import cnnspec

    imported = cnnspec.from_onnx(str(out))
    assert imported.input.size == [None, None]
    assert resolve(imported, input_size=(17, 17)).layers[0].padding_mode == "same"


# --------------------------------------------------------------------------------------
# verify at several sizes (torch, keras)
# --------------------------------------------------------------------------------------


def test_verify_at_four_sizes_of_an_open_spec_agrees():
    pytest.importorskip("torch")
    pytest.importorskip("tf2onnx")
    from cnnspec.verifier.run import verify

    report = verify(OPEN_SPEC, input_sizes=[(20, 20), (21, 21), (12, 33), (40, 9)])
    assert report.ok, report.problems
    assert [size.input_size for size in report.sizes] == [[20, 20], [21, 21], [12, 33], [40, 9]]
    assert all(size.ok and size.max_abs_diff is not None for size in report.sizes)
    assert report.open_axes == ["H", "W"]
    assert report.referee is not None and not report.referee.torch_departs_at
    # the layer rows are those of the first size, with its shapes
    assert report.layers[1].expected_shape == [6, 18, 18]


def test_verify_default_sizes_of_an_open_spec_are_its_reference_and_one_more():
    from cnnspec.verifier.run import default_sizes, size_plans

    plan = resolve(OPEN_SPEC)
    assert default_sizes(plan) == [(20, 20), (21, 21)]
    assert [p.input_shape for p in size_plans(plan, [9, (10, 11)])] == [(3, 9, 9), (3, 10, 11)]
    with pytest.raises(SpecError, match=r"collapses.*\(at the input size 2×2\)"):
        size_plans(plan, [2])
    with pytest.raises(SpecError, match="fixed at 32×32"):
        size_plans(resolve("examples/same_stride2.yaml"), [(32, 32), (33, 33)])


UNET_SPEC = """\
cnnspec: 1
name: small_unet
input: {channels: 1, size: [null, null], reference_size: [16, 20]}
layers:
  - {type: conv2d, name: down, filters: 4, kernel_size: 3, padding: same, activation: relu}
  - {type: max_pool2d, name: pool, pool_size: 2}
  - {type: conv2d, name: deep, filters: 4, kernel_size: 3, padding: same}
  - {type: max_pool2d, name: pool2, pool_size: 2}
  - {type: upsample, name: up2, scale_factor: 2}
  - {type: upsample, name: up, scale_factor: 2}
  - {type: concat, name: skip, inputs: [up, down]}
  - {type: conv2d, name: out, filters: 2, kernel_size: 1}
"""


def test_verify_default_sizes_of_a_unet_keep_its_joins_rule():
    """A skip after two poolings joins only at multiples of 4: the second default size is the next
    multiple on each axis, not one more (where planning fails at the join, as it must)."""
    from cnnspec.verifier.run import default_sizes

    plan = resolve(UNET_SPEC)
    assert plan.size_steps == (4, 4)
    assert default_sizes(plan) == [(16, 20), (20, 24)]
    with pytest.raises(SpecError, match=r"layers\[6\].*'up' is \[4, 16, 20\] but 'down' is \[4, 17, 21\]"):
        resolve(UNET_SPEC, input_size=(17, 21))  # the size one more would have picked
    report = pytest.importorskip("cnnspec.verifier.run").verify(plan)
    assert report.ok and [size.input_size for size in report.sizes] == [[16, 20], [20, 24]]


def test_a_port_with_fixed_padding_fails_at_the_odd_size_at_its_layer(tmp_path, monkeypatch):
    """Negative control: (0, 1) padding is 'same' at 16 and not at 17; the stem is named, at 17."""
    pytest.importorskip("torch")
    pytest.importorskip("tf2onnx")
    from cnnspec.verifier.run import verify

    (tmp_path / "static_port.py").write_text(STATIC_PORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    from static_port import Net

    report = verify(STRIDED_SPEC, torch_model=Net(), input_sizes=[16, 17, 24])
    assert not report.ok
    assert [(size.input_size, size.ok) for size in report.sizes] == [
        ([16, 16], True),
        ([17, 17], False),
        ([24, 24], True),
    ]
    assert report.sizes[1].first_divergent_layer == "stem"
    assert report.input_size == [17, 17] and report.first_divergent_layer == "stem"
    assert report.referee is not None and report.referee.torch_departs_at == "stem"
    assert not report.referee.keras_departs_at
    assert report.problems[0].startswith("at 17×17: ")


def test_cli_verify_input_sizes_exit_codes_and_json(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("tf2onnx")
    from cnnspec.cli.main import main

    spec = tmp_path / "strided.yaml"
    spec.write_text(STRIDED_SPEC)
    port = tmp_path / "static_port.py"
    port.write_text(STATIC_PORT)
    out = tmp_path / "report.json"
    code = main(
        [
            "verify",
            str(spec),
            "--input-size",
            "16",
            "--input-size",
            "17,17",
            "--json",
            str(out),
            "--torch-model",
            f"{port}:Net",
            "--no-progress",
        ]
    )
    assert code == 1
    document = json.loads(out.read_text())
    report = document["reports"][0]
    assert document["exit_code"] == 1 and report["ok"] is False
    assert report["open_axes"] == ["H", "W"] and report["input_size"] == [17, 17]
    assert [(s["input_size"], s["ok"], s["first_divergent_layer"]) for s in report["sizes"]] == [
        ([16, 16], True, None),
        ([17, 17], False, "stem"),
    ]
    text = capsys.readouterr().out
    assert "17×17  MISMATCH, first divergent layer 'stem'" in text

    # sizes the spec refuses: located, exit 2, before any framework runs
    assert main(["verify", "examples/same_stride2.yaml", "--input-size", "33"]) == 2
    assert "fixed at 32×32: H = 33 is not accepted" in capsys.readouterr().err
    open_spec = tmp_path / "open.yaml"
    open_spec.write_text(OPEN_SPEC)
    assert main(["verify", str(open_spec), "--input-size", "20", "--input-size", "2,2"]) == 2
    assert "layers[1]: output size collapses to 0 on axis H" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["verify", str(spec), "--input-size", "a,b"])
    assert exit_info.value.code == 2


# --------------------------------------------------------------------------------------
# importers
# --------------------------------------------------------------------------------------


def test_from_keras_of_a_model_of_any_size_gives_an_open_spec():
    pytest.importorskip("tf2onnx")
    from cnnspec.verifier.onnx_export import import_frameworks

    import_frameworks()
    import keras

    import cnnspec

    inputs = keras.Input((None, None, 3))
    x = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="stem_pad")(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, name="stem")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x))
    spec = cnnspec.from_keras(model)
    assert spec.input.size == [None, None] and spec.input.reference_size is None
    # the fixed (0, 1) padding is what the model does at every size: it stays explicit, not 'same'
    plan = resolve(spec, input_size=(17, 17))
    assert plan.layer("stem").padding == ((0, 1), (0, 1))
    assert plan.layer("stem").output_shape == (4, 8, 8)


def test_from_torch_with_open_axes_traces_at_the_reference_size():
    torch = pytest.importorskip("torch")
    import cnnspec

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    )
    spec = cnnspec.from_torch(model, (3, None, None), reference_size=(40, 30))
    assert spec.input.size == [None, None] and spec.input.reference_size == [40, 30]
    assert resolve(spec).layers[0].output_shape == (4, 20, 15)
    fixed = cnnspec.from_torch(model, (3, 40, 30))
    assert fixed.input.size == [40, 30] and fixed.layers == spec.layers


def test_from_torch_of_a_unet_of_any_size_probes_sizes_its_skip_accepts():
    """A U-Net runs only at multiples of 2 (its skip joins there): the probes that check the
    trace does not follow the size are taken at such sizes, so it imports open."""
    torch = pytest.importorskip("torch")
    import cnnspec

    class UNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.down = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.up = torch.nn.ConvTranspose2d(4, 4, 2, stride=2)
            self.out = torch.nn.Conv2d(8, 2, 1)

        def forward(self, x):
            skip = torch.relu(self.down(x))
            x = self.up(torch.nn.functional.max_pool2d(skip, 2))
            return self.out(torch.cat([x, skip], dim=1))

    spec = cnnspec.from_torch(UNet(), (1, None, None), reference_size=(24, 32))
    assert spec.input.size == [None, None] and resolve(spec).size_steps == (2, 2)
    with pytest.raises(CnnspecError, match=r"at cat\(\).*Sizes of tensors must match"):
        cnnspec.from_torch(UNet(), (1, 25, 32))  # where it does not run, the join is named

    from cnnspec.importers.torch import import_torch

    assert not any(r.where == "input" for r in import_torch(UNet(), (1, None, None), (24, 32)).rewrites)

    class PaddedUNet(UNet):
        """Pads the upsampled map to the skip's size (milesial's Pytorch-UNet): runs at odd sizes too."""

        def forward(self, x):
            skip = torch.relu(self.down(x))
            x = self.up(torch.nn.functional.max_pool2d(skip, 2))
            dy, dx = skip.size()[2] - x.size()[2], skip.size()[3] - x.size()[3]
            x = torch.nn.functional.pad(x, [dx // 2, dx - dx // 2, dy // 2, dy - dy // 2])
            return self.out(torch.cat([x, skip], dim=1))

    result = import_torch(PaddedUNet(), (1, None, None), (24, 32))
    narrowed = [r for r in result.rewrites if r.where == "input"]
    assert resolve(result.spec).size_steps == (2, 2)  # the pad is 0 at the traced size
    assert len(narrowed) == 1 and "25×34" in narrowed[0].original
    assert "H a multiple of 2 and W a multiple of 2" in narrowed[0].became


def test_from_torch_refuses_open_axes_when_the_trace_follows_the_size(monkeypatch):
    """A model traced to other layers at another size (here: another padding) is refused, named."""
    torch = pytest.importorskip("torch")
    import cnnspec
    from cnnspec.importers import torch as importer
    from cnnspec.importers.common import UnsupportedModel

    def net(padding):
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2, padding=padding))

    at_reference, elsewhere = net(1), net(0)
    traced = importer.import_torch

    def import_torch(module, input_shape, reference_size=None, **options):
        if None in input_shape[1:]:
            return traced(module, input_shape, reference_size, **options)
        return traced(at_reference if input_shape[1] == 32 else elsewhere, input_shape, **options)

    monkeypatch.setattr(importer, "import_torch", import_torch)
    with pytest.raises(
        UnsupportedModel, match=r"'0'.*traced differently at 32×32 and 33×34 \(padding"
    ):
        cnnspec.from_torch(at_reference, (3, None, None), reference_size=(32, 32))


def test_from_onnx_of_symbolic_spatial_dims_gives_an_open_spec(tmp_path):
    torch = pytest.importorskip("torch")
    import cnnspec

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, ceil_mode=True),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, 2),
    ).eval()
    path = tmp_path / "dynamic.onnx"
    torch.onnx.export(
        model,
        torch.zeros(1, 3, 32, 32),
        str(path),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}},
    )
    spec = cnnspec.from_onnx(str(path))
    assert spec.input.size == [None, None]
    assert resolve(spec, input_size=(33, 33)).layer(spec.layers[2].name).output_shape == (4, 17, 17)


@pytest.mark.slow
def test_convert_of_a_torch_model_of_any_size_verifies_at_each_size(tmp_path, monkeypatch):
    pytest.importorskip("tf2onnx")
    from cnnspec.cli.main import main

    (tmp_path / "nets.py").write_text(
        textwrap.dedent("""\
        import torch.nn as nn

        def small():
            return nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, padding=1),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5),
            ).eval()
        """)
    )
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "convert",
            "nets.py:small",
            "--input-shape",
            "3,None,None",
            "--to",
            "keras",
            "-o",
            "out",
            "--input-size",
            "24",
            "--input-size",
            "25,19",
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())["verification"]
    assert [s["input_size"] for s in report["sizes"]] == [[24, 24], [25, 19]]
    assert all(s["ok"] for s in report["sizes"])
    assert (
        "size: [null, null], reference_size: [24, 24]"
        in (tmp_path / "out" / "spec.yaml").read_text()
    )


@pytest.mark.slow
def test_from_keras_mobilenet_v3_small_of_any_size():
    pytest.importorskip("tf2onnx")
    from cnnspec.verifier.onnx_export import import_frameworks

    import_frameworks()
    import keras

    import cnnspec

    model = keras.applications.MobileNetV3Small(weights=None, include_top=True)
    assert tuple(model.inputs[0].shape[1:3]) == (None, None)
    spec = cnnspec.from_keras(model)
    assert spec.input.size == [None, None]
    for size in (224, 225, 97):
        assert resolve(spec, input_size=(size, size)).output_shape == (1000,)


# --------------------------------------------------------------------------------------
# the exporters' integer division (a size worked out at run time as -(-n // s))
# --------------------------------------------------------------------------------------

CEIL_PAD = """\
import torch
import torch.nn.functional as F


class CeilPad(torch.nn.Module):
    def forward(self, x):
        n = x.shape[2]
        total = (-(-n // 2) - 1) * 2 + 3 - n
        return F.pad(x, [total // 2, total - total // 2])
"""


def test_torch_export_floors_integer_division(tmp_path, monkeypatch):
    """torch.onnx writes `//` as a truncating division; the verifier's export floors, as Python."""
    torch = pytest.importorskip("torch")
    import io

    from cnnspec.verifier.onnx_export import export_torch, run_graph

    (tmp_path / "ceil_pad.py").write_text(CEIL_PAD)
    monkeypatch.syspath_prepend(str(tmp_path))
    from ceil_pad import CeilPad

    x = np.zeros((1, 1, 33), dtype=np.float32)
    assert CeilPad()(torch.from_numpy(x)).shape[-1] == 35  # ⌈33 / 2⌉ = 17: 2 padded cells
    buffer = io.BytesIO()
    torch.onnx.export(CeilPad(), (torch.from_numpy(x),), buffer, dynamo=False, opset_version=18)
    plain = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    assert plain.run(None, {plain.get_inputs()[0].name: x})[0].shape[-1] == 33  # the wrong mapping
    graph = export_torch(CeilPad(), ["pad"], x, open_axes=(True,))
    for n, padded in ((33, 35), (34, 35), (9, 11)):  # total (⌈n / 2⌉ − 1)·2 + 3 − n
        assert run_graph(graph, np.zeros((1, 1, n), np.float32))[0].shape[-1] == padded


def test_keras_export_floors_integer_division(monkeypatch):
    """tf2onnx writes an integer FloorDiv as a truncating Div; the verifier's export floors."""
    pytest.importorskip("tf2onnx")
    import contextlib

    from cnnspec.verifier import onnx_export
    from cnnspec.verifier.onnx_export import export_keras, import_frameworks, run_graph

    import_frameworks()
    import keras
    from keras import ops

    class CeilPad(keras.layers.Layer):
        def call(self, x):
            n = ops.shape(x)[1]
            total = (-(-n // 2) - 1) * 2 + 3 - n
            return ops.pad(x, ((0, 0), (total // 2, total - total // 2), (0, 0)))

        def compute_output_shape(self, shape):
            return (shape[0], None, shape[2])

    inputs = keras.Input((None, 1))
    model = keras.Model(inputs, CeilPad(name="pad")(inputs))
    graph = export_keras(model, ["pad"], (None, 1))
    for n in (33, 34, 9):
        x = np.zeros((1, n, 1), np.float32)
        assert model(x).shape[1] == run_graph(graph, x)[0].shape[1]
    assert run_graph(graph, np.zeros((1, 33, 1), np.float32))[0].shape[1] == 35
    # the wrong mapping: tf2onnx's own FloorDiv
    monkeypatch.setattr(onnx_export, "_flooring_integer_division", contextlib.nullcontext)
    truncating = export_keras(model, ["pad"], (None, 1))
    assert run_graph(truncating, np.zeros((1, 33, 1), np.float32))[0].shape[1] == 33


def test_open_graph_of_random_specs_equals_the_graph_planned_at_each_size():
    """The drawn specs of the equivalence fuzz, opened: one graph at sizes around the drawn one."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from spec_strategies import valid_specs

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=valid_specs(max_layers=5), step=st.sampled_from([1, 2, 3, 5]))
    def check(spec, step):
        base = tuple(spec["input"]["size"])
        opened = _opened(spec)
        try:
            resolve(opened, input_size=base)
        except SpecError:
            return  # a dense on a flattened open map: refused, nothing to emit
        _compare_open_graph(
            opened, base, [tuple(n + step for n in base), tuple(n + step + 1 for n in base)]
        )

    check()
