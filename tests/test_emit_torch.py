"""The PyTorch emitter: every layer type, every shape, and values against the frameworks' own ops.

References are TensorFlow's ``tf.nn`` ops (SAME padding, pooling, depthwise/separable),
``keras.layers.Conv2DTranspose`` itself (weights copied), PyTorch's own functional ops
where PyTorch supports the case natively, and a brute-force NumPy pool written from the
spec's text for the cases neither framework has.  Each trap has a negative control: the
naive PyTorch mapping is shown to DIFFER from the reference, so these tests can fail.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import itertools
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import torch.nn.functional as F  # noqa: E402

import cnnspec  # noqa: E402
from cnnspec.targets.build import build, class_name  # noqa: E402
from cnnspec.targets.torch.emit import emit_source  # noqa: E402
from cnnspec.errors import CnnspecError  # noqa: E402
from cnnspec.spec.models import layer_types  # noqa: E402
from cnnspec.layers import CATALOG_ORDER, REGISTRY  # noqa: E402

from equivalence_cases import CASES  # noqa: E402

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
ATOL = 1e-5


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def make_spec(channels: int, size: list[int], layers: list[dict], name: str = "probe") -> dict:
    return {"cnnspec": 1, "name": name, "input": {"channels": channels, "size": list(size)}, "layers": layers}


def run_layer(channels: int, size: list[int], layer: dict, x: np.ndarray | None = None, seed: int = 0):
    """Build a one-layer model; return (model, input array, output array)."""
    layer = {"name": "probe_layer", **layer}
    model = build(make_spec(channels, size, [layer]), "torch")
    rng = np.random.default_rng(seed)
    if x is None:
        x = rng.normal(size=(2, channels, *size)).astype(np.float32)
    with torch.no_grad():
        for parameter in model.parameters():  # non-trivial, seeded weights and biases
            parameter.copy_(torch.from_numpy(rng.normal(0.0, 0.5, size=parameter.shape).astype(np.float32)))
        out = model(torch.from_numpy(x)).numpy()
    return model, x, out


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def nchw(a) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(np.asarray(a), -1, 1))


def tiny_spec(layer_type: str) -> dict:
    """A minimal spec whose last (output) layer has ``layer_type``."""
    definition = REGISTRY.definition(layer_type)
    if type(definition).__module__.rsplit(".", 1)[-1] not in CATALOG_ORDER:
        # a type added after the original catalog: its definition's own first example
        examples = definition.examples
        return next(ex for ex in examples if ex.layers[-1]["type"] == layer_type).spec()
    rank = int(layer_type[-2]) if layer_type[-2:] in ("1d", "2d", "3d") else 2
    size = {1: [9], 2: [7, 6], 3: [5, 6, 4]}[rank]
    layer: dict = {"type": layer_type, "name": "probe_layer"}
    before: list[dict] = []
    if layer_type.startswith(("conv", "separable")):
        layer.update(filters=3, kernel_size=2, stride=2, padding="same")
    elif layer_type == "depthwise_conv2d":
        layer.update(kernel_size=3, depth_multiplier=2, stride=2, padding="same")
    elif "pool" in layer_type and not layer_type.startswith("global"):
        layer.update(pool_size=3, stride=2, padding="same")
    elif layer_type in ("dropout", "spatial_dropout"):
        layer.update(rate=0.5)
    elif layer_type == "dense":
        before = [{"type": "flatten", "name": "flat"}]
        layer.update(units=4)
    elif layer_type == "upsample":
        layer.update(scale_factor=2, mode="bilinear")
    elif layer_type.startswith("zero_pad"):
        layer.update(padding=[[1, 2]] * rank)
    elif layer_type in ("add", "concat"):
        before = [{"type": "relu", "name": "branch"}]
        layer.update(inputs=["input", "branch"])
    return make_spec(2, size, before + [layer])


def forward_layers_shapes(model, plan, batch: int = 2) -> dict[str, tuple]:
    with torch.no_grad():
        outputs = model.forward_layers(torch.randn(batch, *plan.input_shape))
    return {name: tuple(value.shape) for name, value in outputs.items()}


# --------------------------------------------------------------------------------------------
# completeness and contracts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer_type", layer_types())
def test_every_layer_type_has_an_emitter_and_builds(layer_type):
    plan = cnnspec.resolve(tiny_spec(layer_type))
    model = build(plan, "torch")
    with torch.no_grad():
        out = model(torch.randn(2, *plan.input_shape))
    assert tuple(out.shape) == (2,) + plan.output_shape


SHAPE_TABLE: list[tuple[str, dict]] = [(case_id, spec) for case_id, spec in CASES]
SHAPE_TABLE += [(f"example_{path.stem}", cnnspec.load_spec(path)) for path in EXAMPLES]
for _size, _k, _s, _pad in itertools.product([7, 8], [2, 3, 4], [1, 2, 3], ["same", "valid", 1, [[0, 2], [1, 0]]]):
    SHAPE_TABLE.append((f"conv_n{_size}_k{_k}_s{_s}_p{_pad}", make_spec(2, [_size, _size + 1], [
        {"type": "conv2d", "name": "conv", "filters": 2, "kernel_size": _k, "stride": _s, "padding": _pad},
        {"type": "conv2d", "name": "dilated", "filters": 2, "kernel_size": 2, "dilation": 2, "padding": "same", "stride": _s},
    ])))
for _size, _k, _s, _pad, _ceil in itertools.product([7, 8], [2, 3], [1, 2, 3], [0, 1, [[0, 1], [1, 0]]], [False, True]):
    SHAPE_TABLE.append((f"pool_n{_size}_k{_k}_s{_s}_p{_pad}_c{_ceil}", make_spec(2, [_size, _size + 3], [
        {"type": "max_pool2d", "name": "maxp", "pool_size": _k, "stride": _s, "padding": _pad, "ceil_mode": _ceil},
        {"type": "avg_pool2d", "name": "avgp", "inputs": ["input"], "pool_size": _k, "stride": _s, "padding": _pad, "ceil_mode": _ceil},
        {"type": "global_avg_pool", "name": "gm", "inputs": ["maxp"]},
        {"type": "global_avg_pool", "name": "ga", "inputs": ["avgp"]},
        {"type": "add", "name": "total", "inputs": ["gm", "ga"]},
    ])))
for _size, _k, _s, _pad in itertools.product([3, 4], [1, 2, 3, 4], [1, 2, 3], ["same", "valid", 1]):
    if _pad == 1 and _k < 2:
        continue
    SHAPE_TABLE.append((f"convT_n{_size}_k{_k}_s{_s}_p{_pad}", make_spec(2, [_size, _size + 1], [
        {"type": "conv_transpose2d", "name": "up", "filters": 2, "kernel_size": _k, "stride": _s, "padding": _pad},
    ])))
SHAPE_TABLE += [
    ("rank1_mix", make_spec(2, [11], [
        {"type": "conv1d", "name": "c", "filters": 3, "kernel_size": 4, "stride": 3, "padding": "same"},
        {"type": "max_pool1d", "name": "m", "pool_size": 3, "stride": 2, "padding": [[0, 2]], "ceil_mode": True},
        {"type": "avg_pool1d", "name": "a", "pool_size": 3, "stride": 2, "padding": "same"},
        {"type": "conv_transpose1d", "name": "t", "filters": 2, "kernel_size": 4, "stride": 3, "padding": "same"},
        {"type": "batch_norm", "name": "bn"},
        {"type": "spatial_dropout", "name": "sd", "rate": 0.2},
        {"type": "upsample", "name": "u", "scale_factor": 3},
    ])),
    ("rank3_mix", make_spec(1, [5, 4, 6], [
        {"type": "conv3d", "name": "c", "filters": 2, "kernel_size": [2, 3, 2], "stride": [1, 2, 3], "dilation": [2, 1, 1], "padding": "same"},
        {"type": "max_pool3d", "name": "m", "pool_size": 2, "stride": 1, "padding": "same"},
        {"type": "avg_pool3d", "name": "a", "pool_size": 2, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
        {"type": "conv_transpose3d", "name": "t", "filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"type": "zero_pad3d", "name": "z", "padding": [[0, 1], [2, 0], [1, 1]]},
        {"type": "global_max_pool", "name": "g", "keepdims": True},
    ])),
    ("flat_batchnorm", make_spec(2, [4, 4], [
        {"type": "flatten", "name": "flat"},
        {"type": "batch_norm", "name": "bn"},
        {"type": "dense", "name": "fc", "units": 3, "activation": "softmax"},
    ])),
]


@pytest.mark.parametrize("case_id,spec", SHAPE_TABLE, ids=[case_id for case_id, _ in SHAPE_TABLE])
def test_every_forward_layers_shape_matches_the_plan(case_id, spec):
    plan = cnnspec.resolve(spec)
    model = build(plan, "torch")
    shapes = forward_layers_shapes(model, plan)
    assert list(shapes) == [layer.name for layer in plan.layers]
    for layer in plan.layers:
        assert shapes[layer.name] == (2,) + layer.output_shape, layer.name


def test_module_attributes_follow_the_naming_contract():
    spec = make_spec(3, [8, 8], [
        {"type": "conv2d", "name": "conv1", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"type": "separable_conv2d", "name": "sep", "filters": 5, "kernel_size": 3, "padding": "same", "stride": 2},
        {"type": "batch_norm", "name": "bn"},
        {"type": "prelu", "name": "act"},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "fc", "units": 3},
    ])
    model, source = build(spec, "torch", return_source=True)
    keys = set(model.state_dict())
    assert {"conv1.weight", "conv1.bias", "sep_depthwise.weight", "sep_pointwise.weight", "sep_pointwise.bias",
            "bn.weight", "bn.running_mean", "act.weight", "fc.weight", "fc.bias"} <= keys
    assert "sep_depthwise.bias" not in keys
    assert isinstance(model.conv1_pad, torch.nn.ZeroPad2d)  # asymmetric 'same' padding is a helper
    assert model.conv1.padding == (0, 0)
    assert type(model).__name__ == class_name("probe")
    assert 'padding="same"' not in source and "padding='same'" not in source
    assert "generated by cnnspec from spec 'probe'" in source and "NCHW" in source


def test_symmetric_padding_stays_inside_the_conv():
    model = build(make_spec(2, [8, 8], [{"type": "conv2d", "name": "c", "filters": 2, "kernel_size": 3, "padding": "same"}]), "torch")
    assert model.c.padding == (1, 1)
    assert not hasattr(model, "c_pad")


def test_generated_source_runs_standalone(tmp_path):
    """Every equivalence case: the written file, imported on its own, equals the in-memory model."""
    for case_id, spec in CASES:
        plan = cnnspec.resolve(spec)
        model, source = build(plan, "torch", return_source=True)
        imports = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imports.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imports.add(node.module.split(".")[0])
        assert imports <= {"torch", "math", "numpy"}, case_id  # numpy: the Resize helper's matrices
        path = tmp_path / f"{case_id}_model.py"
        path.write_text(source)
        module_spec = importlib.util.spec_from_file_location(f"standalone_{case_id}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        assert module.CNNSPEC_LAYER_NAMES == [layer.name for layer in plan.layers]
        fresh = getattr(module, class_name(plan.name))()
        fresh.load_state_dict(model.state_dict())
        fresh.eval()
        x = torch.randn(2, *plan.input_shape)
        with torch.no_grad():
            expected = model.forward_layers(x)
            got = fresh.forward_layers(x)
            final = fresh(x)
        assert list(got) == list(expected)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=f"{case_id}:{name}")
        torch.testing.assert_close(final, expected[plan.layers[-1].name], rtol=0, atol=0)


@pytest.mark.parametrize("case_id,spec", CASES, ids=[case_id for case_id, _ in CASES])
def test_onnx_legacy_export_matches(case_id, spec):
    onnxruntime = pytest.importorskip("onnxruntime")
    plan = cnnspec.resolve(spec)
    model = build(plan, "torch")
    x = torch.randn(2, *plan.input_shape)
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False, input_names=["x"])
    options = onnxruntime.SessionOptions()
    # onnxruntime's PadFusion folds a zero Pad into a following MaxPool (wrong on negative inputs).
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(buffer.getvalue(), options)
    got = session.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("bad_layers,fragment", [
    ([{"type": "conv2d", "name": "c", "filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"},
      {"type": "relu", "name": "c_pad"}], "two modules named 'c_pad'"),
    # nn.Module members are refused earlier, by validation (spec.RESERVED_NAMES)
    ([{"type": "relu", "name": "bfloat16"}], "'bfloat16' is reserved"),
    ([{"type": "relu", "name": "forward_layers"}], "'forward_layers' is reserved"),
])
def test_clashing_names_are_refused(bad_layers, fragment):
    with pytest.raises(CnnspecError, match=fragment):
        emit_source(cnnspec.resolve(make_spec(2, [8, 8], bad_layers)))


# --------------------------------------------------------------------------------------------
# convolutions vs tf.nn
# --------------------------------------------------------------------------------------------


def tf_conv_reference(x: np.ndarray, model, stride, padding, dilation=1) -> np.ndarray:
    w = model.probe_layer.weight.detach().numpy()  # (O, I, kh, kw) -> (kh, kw, I, O)
    out = tf.nn.conv2d(nhwc(x), np.transpose(w, (2, 3, 1, 0)), strides=stride, padding=padding, dilations=dilation)
    return nchw(out) + model.probe_layer.bias.detach().numpy()[None, :, None, None]


@pytest.mark.parametrize("size,kernel,stride,padding", [
    (size, kernel, stride, padding)
    for size, kernel, stride, padding in itertools.product([(8, 8), (7, 8), (9, 7)], [2, 3, 4], [1, 2, 3], ["SAME", "VALID"])
])
def test_conv2d_matches_tf(size, kernel, stride, padding):
    model, x, out = run_layer(3, list(size), {"type": "conv2d", "filters": 4, "kernel_size": kernel, "stride": stride, "padding": padding.lower()})
    np.testing.assert_allclose(out, tf_conv_reference(x, model, stride, padding), atol=ATOL)


@pytest.mark.parametrize("size,kernel,dilation", [((9, 8), 3, 2), ((8, 8), 2, 3), ((10, 7), [3, 2], [2, 3])])
def test_dilated_same_conv2d_matches_tf(size, kernel, dilation):
    model, x, out = run_layer(2, list(size), {"type": "conv2d", "filters": 3, "kernel_size": kernel, "dilation": dilation, "padding": "same"})
    np.testing.assert_allclose(out, tf_conv_reference(x, model, 1, "SAME", dilation), atol=ATOL)


def test_strided_dilated_grouped_conv_matches_torch_functional():
    layer = {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "dilation": 2, "groups": 2, "padding": [[1, 2], [0, 3]]}
    model, x, out = run_layer(4, [9, 8], layer)
    padded = F.pad(torch.from_numpy(x), (0, 3, 1, 2))
    ref = F.conv2d(padded, model.probe_layer.weight, model.probe_layer.bias, stride=2, dilation=2, groups=2)
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=ATOL)


def test_conv1d_and_conv3d_same_stride2_match_tf():
    model, x, out = run_layer(2, [10], {"type": "conv1d", "filters": 3, "kernel_size": 4, "stride": 2, "padding": "same"})
    w = model.probe_layer.weight.detach().numpy()
    ref = nchw(tf.nn.conv1d(nhwc(x), np.transpose(w, (2, 1, 0)), stride=2, padding="SAME")) + model.probe_layer.bias.detach().numpy()[None, :, None]
    np.testing.assert_allclose(out, ref, atol=ATOL)
    model, x, out = run_layer(2, [4, 6, 5], {"type": "conv3d", "filters": 3, "kernel_size": 3, "stride": 2, "padding": "same"})
    w = model.probe_layer.weight.detach().numpy()
    ref = nchw(tf.nn.conv3d(nhwc(x), np.transpose(w, (2, 3, 4, 1, 0)), strides=[1, 2, 2, 2, 1], padding="SAME"))
    np.testing.assert_allclose(out, ref + model.probe_layer.bias.detach().numpy()[None, :, None, None, None], atol=ATOL)


def test_negative_control_naive_symmetric_padding_differs_from_tf_same():
    model, x, out = run_layer(3, [8, 8], {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"})
    reference = tf_conv_reference(x, model, 2, "SAME")
    naive = F.conv2d(torch.from_numpy(x), model.probe_layer.weight, model.probe_layer.bias, stride=2, padding=1).detach().numpy()
    assert naive.shape == reference.shape
    assert np.abs(naive - reference).max() > 1e-2
    np.testing.assert_allclose(out, reference, atol=ATOL)


def test_depthwise_same_stride2_matches_tf():
    model, x, out = run_layer(3, [8, 8], {"type": "depthwise_conv2d", "kernel_size": 3, "depth_multiplier": 2, "stride": 2, "padding": "same"})
    w = model.probe_layer.weight.detach().numpy()  # (C*m, 1, kh, kw), channel c*m + j
    tf_filter = np.transpose(w.reshape(3, 2, 3, 3), (2, 3, 0, 1))
    ref = nchw(tf.nn.depthwise_conv2d(nhwc(x), tf_filter, strides=[1, 2, 2, 1], padding="SAME"))
    np.testing.assert_allclose(out, ref + model.probe_layer.bias.detach().numpy()[None, :, None, None], atol=ATOL)


def test_separable_same_stride2_matches_tf():
    model, x, out = run_layer(3, [8, 9], {"type": "separable_conv2d", "filters": 4, "kernel_size": 3, "depth_multiplier": 2, "stride": 2, "padding": "same", "activation": "relu"})
    depthwise = model.probe_layer_depthwise.weight.detach().numpy()
    pointwise = model.probe_layer_pointwise.weight.detach().numpy()  # (F, C*m, 1, 1)
    ref = tf.nn.separable_conv2d(
        nhwc(x), np.transpose(depthwise.reshape(3, 2, 3, 3), (2, 3, 0, 1)), np.transpose(pointwise, (2, 3, 1, 0)),
        strides=[1, 2, 2, 1], padding="SAME",
    )
    ref = np.maximum(nchw(ref) + model.probe_layer_pointwise.bias.detach().numpy()[None, :, None, None], 0)
    assert model.probe_layer_depthwise.bias is None
    np.testing.assert_allclose(out, ref, atol=ATOL)


# --------------------------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------------------------


def brute_force_pool(x: np.ndarray, kind: str, window, stride, pads, ceil_mode=False, count_pad=False) -> np.ndarray:
    """Pooling written from the spec's text: padded cells never win a max; average pools divide by the
    real cells plus (count_pad) the declared padding; ceil_mode (PyTorch's rule: a window may not start
    in the right padding) adds windows whose overhang never counts."""
    spatial = x.shape[2:]
    outs = []
    for n, k, s, (b, a) in zip(spatial, window, stride, pads):
        span = n + b + a - k
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= n + b:
            out -= 1
        outs.append(out)
    result = np.zeros(x.shape[:2] + tuple(outs), dtype=np.float64)
    for index in itertools.product(*(range(o) for o in outs)):
        real, counted = [], 1
        for o, n, k, s, (b, a) in zip(index, spatial, window, stride, pads):
            start = o * s - b
            cells = range(start, start + k)
            real.append(slice(max(start, 0), min(start + k, n)))
            counted *= sum(1 for c in cells if 0 <= c < n or (count_pad and -b <= c < n + a))
        block = x[(slice(None), slice(None)) + tuple(real)].reshape(x.shape[0], x.shape[1], -1)
        target = (slice(None), slice(None)) + index
        result[target] = block.max(axis=-1) if kind == "max" else block.sum(axis=-1) / counted
    return result.astype(np.float32)


MAX_POOL_SAME_CASES = list(itertools.product([(8, 8), (7, 9)], [2, 3], [1, 2, 3]))


@pytest.mark.parametrize("size,pool,stride", MAX_POOL_SAME_CASES)
def test_max_pool_same_on_negative_input_matches_tf(size, pool, stride):
    x = -np.abs(np.random.default_rng(1).normal(size=(2, 2, *size))).astype(np.float32) - 1.0
    _, _, out = run_layer(2, list(size), {"type": "max_pool2d", "pool_size": pool, "stride": stride, "padding": "same"}, x=x)
    ref = nchw(tf.nn.max_pool2d(nhwc(x), pool, stride, "SAME"))
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("size,pool,stride,padding,ceil", [
    ((7, 8), 3, 2, 1, False), ((7, 8), 3, 2, 1, True), ((8, 7), 2, 2, 1, True), ((8, 8), 3, 3, 0, True), ((9, 6), 4, 2, 2, True),
])
def test_max_pool_symmetric_matches_torch(size, pool, stride, padding, ceil):
    x = np.random.default_rng(2).normal(size=(2, 2, *size)).astype(np.float32) - 3.0
    _, _, out = run_layer(2, list(size), {"type": "max_pool2d", "pool_size": pool, "stride": stride, "padding": padding, "ceil_mode": ceil}, x=x)
    ref = F.max_pool2d(torch.from_numpy(x), pool, stride, padding, ceil_mode=ceil).numpy()
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("size,pool,stride,pads,ceil", [
    ((7, 8), 3, 2, [[0, 2], [2, 1]], False), ((7, 8), 3, 2, [[0, 2], [2, 1]], True), ((8, 9), 3, 1, [2, 2], False),
    ((6, 7), [2, 3], [2, 1], [[1, 0], [0, 2]], True),
])
def test_max_pool_asymmetric_or_wide_padding_never_picks_padding(size, pool, stride, pads, ceil):
    x = np.random.default_rng(3).normal(size=(2, 2, *size)).astype(np.float32) - 4.0
    layer = {"type": "max_pool2d", "pool_size": pool, "stride": stride, "padding": pads, "ceil_mode": ceil}
    _, _, out = run_layer(2, list(size), layer, x=x)
    plan = cnnspec.resolve(make_spec(2, list(size), [layer]))
    probe = plan.layers[0]
    np.testing.assert_array_equal(out, brute_force_pool(x, "max", probe.kernel_size, probe.stride, probe.padding, ceil))
    assert out.max() < 0  # all-negative input: a zero pad would have won somewhere


def test_negative_control_zero_padding_wins_a_max_on_negative_input():
    x = -np.abs(np.random.default_rng(4).normal(size=(1, 2, 8, 8))).astype(np.float32) - 1.0
    _, _, out = run_layer(2, [8, 8], {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": "same"}, x=x)
    reference = nchw(tf.nn.max_pool2d(nhwc(x), 3, 2, "SAME"))
    naive = F.max_pool2d(F.pad(torch.from_numpy(x), (0, 1, 0, 1)), 3, 2).numpy()  # zero padding
    assert naive.shape == reference.shape and not np.array_equal(naive, reference)
    np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize("size,pool,stride", list(itertools.product([(8, 8), (7, 9)], [2, 3], [1, 2, 3])))
def test_avg_pool_same_matches_tf(size, pool, stride):
    _, x, out = run_layer(2, list(size), {"type": "avg_pool2d", "pool_size": pool, "stride": stride, "padding": "same"})
    np.testing.assert_allclose(out, nchw(tf.nn.avg_pool2d(nhwc(x), pool, stride, "SAME")), atol=ATOL)


@pytest.mark.parametrize("size,pool,stride,padding,ceil,count", [
    (size, pool, stride, padding, ceil, count)
    for size, (pool, stride, padding), ceil, count in itertools.product(
        [(7, 8), (8, 7)], [(3, 2, 1), (2, 2, 1), (3, 3, 1), (2, 1, 0), (4, 3, 2)], [False, True], [True, False]
    )
])
def test_avg_pool_numeric_matches_torch(size, pool, stride, padding, ceil, count):
    layer = {"type": "avg_pool2d", "pool_size": pool, "stride": stride, "padding": padding, "ceil_mode": ceil, "count_include_pad": count}
    _, x, out = run_layer(2, list(size), layer)
    ref = F.avg_pool2d(torch.from_numpy(x), pool, stride, padding, ceil_mode=ceil, count_include_pad=count).numpy()
    np.testing.assert_allclose(out, ref, atol=ATOL)


@pytest.mark.parametrize("size,pool,stride,pads,ceil,count", [
    ((7, 8), 3, 1, [[0, 2], [1, 0]], False, True),
    ((7, 8), 3, 2, [[0, 2], [1, 0]], True, True),
    ((7, 8), 2, 1, [[1, 0], [0, 1]], False, False),
    ((8, 9), 3, 2, [[2, 1], [0, 2]], True, False),
    ((8, 9), 3, 1, [2, 2], False, True),
])
def test_avg_pool_asymmetric_matches_brute_force(size, pool, stride, pads, ceil, count):
    layer = {"type": "avg_pool2d", "pool_size": pool, "stride": stride, "padding": pads, "ceil_mode": ceil, "count_include_pad": count}
    _, x, out = run_layer(2, list(size), layer)
    probe = cnnspec.resolve(make_spec(2, list(size), [layer])).layers[0]
    np.testing.assert_allclose(out, brute_force_pool(x, "avg", probe.kernel_size, probe.stride, probe.padding, ceil, count), atol=ATOL)
    if count and not ceil:  # the zero-padded average is torch's own op here
        ref = F.avg_pool2d(F.pad(torch.from_numpy(x), (pads[1][0], pads[1][1], pads[0][0], pads[0][1]) if isinstance(pads[0], list) else (2, 2, 2, 2)), pool, stride)
        np.testing.assert_allclose(out, ref.numpy(), atol=ATOL)


def test_brute_force_pool_agrees_with_torch_where_torch_applies():
    """The NumPy reference itself, checked against PyTorch (ceil and count_include_pad included)."""
    x = np.random.default_rng(5).normal(size=(2, 2, 7, 8)).astype(np.float32)
    for ceil, count in itertools.product([False, True], [False, True]):
        ref = F.avg_pool2d(torch.from_numpy(x), 3, 2, 1, ceil_mode=ceil, count_include_pad=count).numpy()
        np.testing.assert_allclose(brute_force_pool(x, "avg", (3, 3), (2, 2), ((1, 1), (1, 1)), ceil, count), ref, atol=ATOL)
        ref = F.max_pool2d(torch.from_numpy(x), 3, 2, 1, ceil_mode=ceil).numpy()
        np.testing.assert_array_equal(brute_force_pool(x, "max", (3, 3), (2, 2), ((1, 1), (1, 1)), ceil), ref)


def test_negative_control_counting_padding_differs_from_tf_same_average():
    _, x, out = run_layer(2, [8, 8], {"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": "same"})
    reference = nchw(tf.nn.avg_pool2d(nhwc(x), 3, 2, "SAME"))
    naive = F.avg_pool2d(F.pad(torch.from_numpy(x), (0, 1, 0, 1)), 3, 2).numpy()  # divides by 9 everywhere
    assert naive.shape == reference.shape and np.abs(naive - reference).max() > 1e-3
    np.testing.assert_allclose(out, reference, atol=ATOL)


def test_rank1_and_rank3_pools_same_match_tf():
    x = np.random.default_rng(6).normal(size=(2, 2, 10)).astype(np.float32) - 3
    _, _, out = run_layer(2, [10], {"type": "max_pool1d", "pool_size": 3, "stride": 2, "padding": "same"}, x=x)
    np.testing.assert_array_equal(out, nchw(tf.nn.max_pool1d(nhwc(x), 3, 2, "SAME")))
    _, _, out = run_layer(2, [10], {"type": "avg_pool1d", "pool_size": 4, "stride": 3, "padding": "same"}, x=x)
    np.testing.assert_allclose(out, nchw(tf.nn.avg_pool1d(nhwc(x), 4, 3, "SAME")), atol=ATOL)
    x = np.random.default_rng(7).normal(size=(2, 2, 4, 6, 5)).astype(np.float32)
    _, _, out = run_layer(2, [4, 6, 5], {"type": "avg_pool3d", "pool_size": 2, "stride": 2, "padding": "same"}, x=x)
    np.testing.assert_allclose(out, nchw(tf.nn.avg_pool3d(nhwc(x), 2, 2, "SAME")), atol=ATOL)


# --------------------------------------------------------------------------------------------
# transposed convolution vs keras.layers.Conv2DTranspose
# --------------------------------------------------------------------------------------------


def keras_conv_transpose(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, kernel, stride, padding, output_padding=None):
    layer = keras.layers.Conv2DTranspose(weight.shape[1], kernel, strides=stride, padding=padding, output_padding=output_padding)
    layer.build((None, *x.shape[2:], x.shape[1]))
    layer.set_weights([np.transpose(weight, (2, 3, 1, 0)), bias])  # (in, out, kh, kw) -> (kh, kw, out, in)
    return nchw(keras.ops.convert_to_numpy(layer(nhwc(x))))


@pytest.mark.parametrize("size,kernel,stride,padding", [
    (size, kernel, stride, padding)
    for size, kernel, stride, padding in itertools.product([(4, 5)], [1, 2, 3, 4, 5], [1, 2, 3], ["same", "valid"])
])
def test_conv_transpose_matches_keras(size, kernel, stride, padding):
    model, x, out = run_layer(3, list(size), {"type": "conv_transpose2d", "filters": 2, "kernel_size": kernel, "stride": stride, "padding": padding})
    ref = keras_conv_transpose(x, model.probe_layer.weight.detach().numpy(), model.probe_layer.bias.detach().numpy(), kernel, stride, padding)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=ATOL)


def test_conv_transpose_valid_with_output_padding_matches_keras():
    layer = {"type": "conv_transpose2d", "filters": 2, "kernel_size": 3, "stride": 2, "output_padding": 1}
    model, x, out = run_layer(3, [4, 4], layer)
    ref = keras_conv_transpose(x, model.probe_layer.weight.detach().numpy(), model.probe_layer.bias.detach().numpy(), 3, 2, "valid", 1)
    np.testing.assert_allclose(out, ref, atol=ATOL)


@pytest.mark.parametrize("kernel,stride,padding,output_padding,dilation", [(3, 2, 1, 1, 1), (4, 2, 1, 0, 1), (3, 3, 2, 2, 1), (2, 2, 1, 0, 2), (3, 1, 1, 0, 2)])
def test_conv_transpose_numeric_matches_torch(kernel, stride, padding, output_padding, dilation):
    layer = {"type": "conv_transpose2d", "filters": 2, "kernel_size": kernel, "stride": stride, "padding": padding, "output_padding": output_padding, "dilation": dilation}
    model, x, out = run_layer(3, [4, 5], layer)
    ref = F.conv_transpose2d(torch.from_numpy(x), model.probe_layer.weight, model.probe_layer.bias, stride=stride,
                             padding=padding, output_padding=output_padding, dilation=dilation)
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=ATOL)


def test_negative_control_torch_output_padding_is_off_by_one_from_keras_same():
    model, x, out = run_layer(3, [4, 5], {"type": "conv_transpose2d", "filters": 2, "kernel_size": 4, "stride": 3, "padding": "same"})
    weight, bias = model.probe_layer.weight, model.probe_layer.bias
    reference = keras_conv_transpose(x, weight.detach().numpy(), bias.detach().numpy(), 4, 3, "same")
    # full = (n-1)*3 + 4 = 3n + 1, crop 1 cell: torch can only crop symmetrically -> padding=1, output_padding=1
    naive = F.conv_transpose2d(torch.from_numpy(x), weight, bias, stride=3, padding=1, output_padding=1).detach().numpy()
    assert naive.shape == reference.shape and np.abs(naive - reference).max() > 1e-2
    np.testing.assert_allclose(out, reference, atol=ATOL)


# --------------------------------------------------------------------------------------------
# upsampling, padding, normalisation, activations, merges
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 3, [2, 3]])
def test_bilinear_upsample_matches_tf_half_pixel_and_torch(factor):
    _, x, out = run_layer(2, [3, 4], {"type": "upsample", "scale_factor": factor, "mode": "bilinear"})
    fh, fw = (factor, factor) if isinstance(factor, int) else factor
    ref = nchw(tf.image.resize(nhwc(x), (3 * fh, 4 * fw), method="bilinear"))
    np.testing.assert_allclose(out, ref, atol=ATOL)
    torch_ref = F.interpolate(torch.from_numpy(x), size=(3 * fh, 4 * fw), mode="bilinear", align_corners=False).numpy()
    np.testing.assert_allclose(out, torch_ref, atol=ATOL)


def test_negative_control_align_corners_differs_from_tf_bilinear():
    _, x, out = run_layer(2, [3, 4], {"type": "upsample", "scale_factor": 2, "mode": "bilinear"})
    reference = nchw(tf.image.resize(nhwc(x), (6, 8), method="bilinear"))
    naive = F.interpolate(torch.from_numpy(x), scale_factor=2, mode="bilinear", align_corners=True).numpy()
    assert np.abs(naive - reference).max() > 1e-2
    np.testing.assert_allclose(out, reference, atol=ATOL)


def test_nearest_upsample_repeats_cells():
    _, x, out = run_layer(2, [3, 4, 2], {"type": "upsample", "scale_factor": [1, 2, 3]})
    np.testing.assert_array_equal(out, x.repeat(2, axis=3).repeat(3, axis=4))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_zero_pad_puts_each_side_on_its_own_axis(rank):
    size = [5, 4, 3][:rank]
    pads = [[1, 2], [0, 3], [2, 0]][:rank]
    _, x, out = run_layer(2, size, {"type": f"zero_pad{rank}d", "padding": pads})
    np.testing.assert_array_equal(out, np.pad(x, [(0, 0), (0, 0)] + [tuple(p) for p in pads]))


def test_batch_norm_uses_spec_epsilon_and_momentum():
    model, x, out = run_layer(3, [4, 4], {"type": "batch_norm", "epsilon": 0.001, "momentum": 0.2})
    bn = model.probe_layer
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.eps == 0.001 and bn.momentum == 0.2
    ref = F.batch_norm(torch.from_numpy(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, 0.001)
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=ATOL)
    flat = build(make_spec(2, [3, 3], [{"type": "flatten", "name": "f"}, {"type": "batch_norm", "name": "bn"}]), "torch")
    assert isinstance(flat.bn, torch.nn.BatchNorm1d) and flat.bn.num_features == 18


ACTIVATION_REFERENCES = {
    "relu": lambda t: np.maximum(t, 0),
    "relu6": lambda t: np.clip(t, 0, 6),
    "sigmoid": lambda t: 1 / (1 + np.exp(-t)),
    "tanh": np.tanh,
    "softmax": lambda t: np.exp(t) / np.exp(t).sum(axis=1, keepdims=True),
    "silu": lambda t: t / (1 + np.exp(-t)),
    "hard_sigmoid": lambda t: np.clip(t / 6 + 0.5, 0, 1),
    "hard_swish": lambda t: t * np.clip(t / 6 + 0.5, 0, 1),
    "gelu": lambda t: keras.ops.convert_to_numpy(tf.nn.gelu(t, approximate=False)),
}


@pytest.mark.parametrize("activation", sorted(ACTIVATION_REFERENCES))
def test_activation_layers_and_inline_activations(activation):
    x = (np.random.default_rng(8).normal(size=(2, 3, 4, 4)) * 5).astype(np.float32)
    _, _, out = run_layer(3, [4, 4], {"type": activation}, x=x)
    np.testing.assert_allclose(out, ACTIVATION_REFERENCES[activation](x.astype(np.float64)), atol=1e-5, rtol=1e-5)
    model, _, inline = run_layer(3, [4, 4], {"type": "conv2d", "filters": 3, "kernel_size": 1, "activation": activation}, x=x)
    with torch.no_grad():
        linear = model.probe_layer(torch.from_numpy(x)).numpy().astype(np.float64)
    np.testing.assert_allclose(inline, ACTIVATION_REFERENCES[activation](linear), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer,reference", [
    ({"type": "leaky_relu"}, lambda t: np.where(t > 0, t, 0.01 * t)),
    ({"type": "leaky_relu", "negative_slope": 0.3}, lambda t: np.where(t > 0, t, 0.3 * t)),
    ({"type": "elu", "alpha": 0.7}, lambda t: np.where(t > 0, t, 0.7 * (np.exp(t) - 1))),
    ({"type": "gelu", "approximate": "tanh"}, lambda t: keras.ops.convert_to_numpy(tf.nn.gelu(t, approximate=True))),
    ({"type": "prelu"}, lambda t: np.where(t > 0, t, 0.25 * t)),
    ({"type": "prelu", "per_channel": False}, lambda t: np.where(t > 0, t, 0.25 * t)),
    ({"type": "dropout", "rate": 0.5}, lambda t: t),
    ({"type": "spatial_dropout", "rate": 0.5}, lambda t: t),
    ({"type": "global_avg_pool", "keepdims": True}, lambda t: t.mean(axis=(2, 3), keepdims=True)),
    ({"type": "global_max_pool"}, lambda t: t.max(axis=(2, 3))),
    ({"type": "flatten"}, lambda t: t.reshape(t.shape[0], -1)),
])
def test_parametrised_layers_match_their_definition(layer, reference):
    x = (np.random.default_rng(9).normal(size=(2, 3, 4, 5)) * 3).astype(np.float32)
    model = build(make_spec(3, [4, 5], [{"name": "probe_layer", **layer}]), "torch")
    with torch.no_grad():
        out = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, reference(x.astype(np.float64)), atol=1e-5, rtol=1e-5)
    if layer["type"] == "prelu":
        assert model.probe_layer.weight.numel() == (3 if layer.get("per_channel", True) else 1)


def test_merges_and_dense():
    spec = make_spec(2, [3, 3], [
        {"type": "relu", "name": "r"},
        {"type": "tanh", "name": "t", "inputs": ["input"]},
        {"type": "add", "name": "s", "inputs": ["r", "t", "input"]},
        {"type": "concat", "name": "c", "inputs": ["s", "input"]},
        {"type": "flatten", "name": "f"},
        {"type": "dense", "name": "d", "units": 3, "activation": "softmax"},
    ])
    model = build(spec, "torch")
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        outputs = model.forward_layers(x)
        total = torch.relu(x) + torch.tanh(x) + x
        torch.testing.assert_close(outputs["s"], total)
        torch.testing.assert_close(outputs["c"], torch.cat([total, x], dim=1))
        expected = torch.softmax(torch.cat([total, x], dim=1).flatten(1) @ model.d.weight.T + model.d.bias, dim=1)
        torch.testing.assert_close(outputs["d"], expected)
        torch.testing.assert_close(model(x), expected)


def test_forward_reuses_x_only_when_nothing_reads_the_value_later():
    spec = make_spec(2, [4, 4], [
        {"type": "conv2d", "name": "stem", "filters": 2, "kernel_size": 3, "padding": 1},
        {"type": "relu", "name": "a"},
        {"type": "sigmoid", "name": "b"},
        {"type": "add", "name": "joined", "inputs": ["a", "b", "stem"]},
    ])
    model = build(spec, "torch")
    x = torch.randn(1, 2, 4, 4)
    with torch.no_grad():
        stem = model.stem(x)
        expected = torch.relu(stem) + torch.sigmoid(torch.relu(stem)) + stem
        torch.testing.assert_close(model(x), expected)
        torch.testing.assert_close(model.forward_layers(x)["joined"], expected)
