"""from_onnx against onnxruntime: graphs written by torch.onnx (NCHW) and by tf2onnx (NHWC with Transpose
pairs, with and without its optimizers) import, and the model built from the spec, given the ORIGINAL
graph's initializers through ``transfer_weights``, computes what onnxruntime computes on the original."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import shape_code_models as S
import torch_zoo as Z

import cnnspec
from cnnspec.importers.common import UnsupportedModel
from cnnspec.importers.onnx import import_onnx
from cnnspec.verifier.onnx_export import import_frameworks, quiet_warnings
from cnnspec.weights.transfer import randomize


def torch_onnx(module, shape):
    module.eval()
    randomize(module, 0)
    buffer = io.BytesIO()
    with quiet_warnings():
        torch.onnx.export(
            module, (torch.zeros(2, *shape),), buffer, dynamo=False, opset_version=18, input_names=["input"]
        )
    return onnx.load_from_string(buffer.getvalue())


def run_original(proto, x):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def check(proto, x_first, channels_last_input=False):
    spec = import_onnx(proto).spec
    feed = np.ascontiguousarray(np.moveaxis(x_first, 1, -1)) if channels_last_input else x_first
    expected = run_original(proto, feed)
    torch_model = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(proto, torch_model, spec)
    with torch.no_grad():
        got = torch_model(torch.from_numpy(x_first)).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    return spec


@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize(
    "factory,shape",
    [
        (Z.ResNetShared, (3, 32, 32)),
        (Z.MobileNetV2, (3, 32, 32)),
        (Z.DenseNet, (3, 16, 16)),
        (Z.SqueezeNet, (3, 33, 33)),
    ],
)
def test_torch_onnx_exports_import(factory, shape):
    proto = torch_onnx(factory(), shape)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype(np.float32)
    spec = check(proto, x)
    assert all(layer.source for layer in spec.layers)  # every layer says which node it came from


def _without(spec, layer_type):
    """The spec with its layers of ``layer_type`` left out: the mapping that ignores them."""
    document = spec.model_dump(mode="json", exclude_none=True)
    kept = [layer for layer in document["layers"] if layer["type"] != layer_type]
    for before, after in zip(document["layers"], document["layers"][1:]):
        if before["type"] == layer_type and "inputs" in after:
            after["inputs"] = [before.get("inputs", [None])[0] if i == before["name"] else i for i in after["inputs"]]
    return cnnspec.load_spec({**document, "layers": kept})


def _output(spec, proto, x):
    model = cnnspec.build(spec, "torch").eval()
    cnnspec.transfer_weights(proto, model, spec)
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.frameworks
@pytest.mark.onnx
def test_depth_to_space_imports_in_crd_mode_and_in_tensorflow_s_dcr_mode():
    proto = torch_onnx(S.ESPCN(2), (1, 6, 5))
    assert {node.op_type for node in proto.graph.node} >= {"DepthToSpace"}
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 5)).astype(np.float32)
    spec = check(proto, x)
    assert [layer.type for layer in spec.layers].count("pixel_shuffle") == 2

    for node in proto.graph.node:
        if node.op_type == "DepthToSpace":
            for attribute in node.attribute:
                if attribute.name == "mode":
                    attribute.s = b"DCR"  # TensorFlow's order: other values, same shapes
    spec = check(proto, x)  # against onnxruntime's DCR
    types = [layer.type for layer in spec.layers]
    assert types.count("channel_shuffle") == 2 and types.count("pixel_shuffle") == 2
    # negative control: DCR read as PyTorch's shuffle alone computes other values
    wrong = _output(_without(spec, "channel_shuffle"), proto, x)
    assert np.abs(wrong - run_original(proto, x)).max() > 0.1


def _space_to_depth_graph(ir_version=10):
    from onnx import TensorProto, helper, numpy_helper

    kernel = np.random.default_rng(0).standard_normal((5, 12, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("SpaceToDepth", ["x"], ["blocks"], blocksize=2), helper.make_node("Conv", ["blocks", "w"], ["y"])],
        "space_to_depth",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(kernel, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=ir_version)


@pytest.mark.frameworks
@pytest.mark.onnx
def test_space_to_depth_imports_as_the_unshuffle_and_tensorflow_s_channel_order():
    proto = _space_to_depth_graph()
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 6)).astype(np.float32)
    spec = check(proto, x)
    assert [layer.type for layer in spec.layers] == ["pixel_unshuffle", "channel_shuffle", "conv2d"]
    assert spec.layers[1].groups == 3  # channel c·4 + i·2 + j moves to (i·2 + j)·3 + c
    wrong = _output(_without(spec, "channel_shuffle"), proto, x)
    assert np.abs(wrong - run_original(proto, x)).max() > 0.1


@pytest.mark.frameworks
@pytest.mark.onnx
def test_convert_runs_a_file_written_in_an_ir_version_onnxruntime_cannot_read_yet(tmp_path):
    """onnx's helpers write their newest IR version (14 with onnx 1.23), onnxruntime 1.31 reads
    up to 13: the proof runs the original at the IR version its opsets need."""
    from cnnspec.importers.pipeline import convert_model

    proto = _space_to_depth_graph(ir_version=onnx.IR_VERSION)
    path = tmp_path / "newest_ir.onnx"
    onnx.save(proto, str(path))
    conversion = convert_model(str(path), "torch", tmp_path / "out")
    assert conversion.ok
    layers = conversion.verification.layers
    # the unshuffle is the first of the two layers SpaceToDepth is read as: no value of its own
    assert [layer.name for layer in layers if layer.ok is None] == ["spacetodepth_blocks"]
    assert all(layer.ok for layer in layers[1:])


@pytest.mark.frameworks
@pytest.mark.onnx
def test_convert_of_an_onnx_file_says_where_outputs_are_below_the_tolerance(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from cnnspec.importers.pipeline import convert_model

    rng = np.random.default_rng(0)
    weights = [rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((4, 4, 1, 1)) * 1e-7]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w1"], ["a"], name="loud"), helper.make_node("Conv", ["a", "w2"], ["y"], name="faint")],
        "faint",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w.astype(np.float32), f"w{i + 1}") for i, w in enumerate(weights)],
    )
    path = tmp_path / "faint.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10), str(path))
    conversion = convert_model(str(path), "torch", tmp_path / "out")
    assert conversion.ok
    (note,) = conversion.verification.notes
    assert note.startswith("1 of the 2 layers' outputs are smaller than the tolerance, the first 'faint'")


@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_torch_export_of_pixel_unshuffle_imports(dynamo):
    module = S.RealESRGANStem().eval()
    randomize(module, 0)
    buffer = io.BytesIO()
    with quiet_warnings():
        torch.onnx.export(module, (torch.zeros(2, 3, 8, 6),), buffer, dynamo=dynamo, input_names=["input"])
    proto = onnx.load_from_string(buffer.getvalue())
    assert "SpaceToDepth" not in {node.op_type for node in proto.graph.node}  # a 6-D Reshape/Transpose
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 6)).astype(np.float32)
    spec = check(proto, x)
    assert "pixel_unshuffle" in [layer.type for layer in spec.layers]  # the two of x, merged by the exporter


@pytest.mark.frameworks
@pytest.mark.onnx
def test_cnnspec_s_own_onnx_graph_of_shuffles_imports(tmp_path):
    """The onnx target writes the unshuffle as SpaceToDepth and a channel shuffle (Reshape to
    (N, g, C/g, -1), Transpose, Reshape to the input's Shape): both read back as one layer."""
    from cnnspec.targets.onnx.model import write_onnx

    document = {
        "cnnspec": 1,
        "name": "shuffles",
        "input": {"channels": 3, "size": [8, 6]},
        "layers": [
            {"type": "conv2d", "filters": 4, "kernel_size": 3, "padding": 1},
            {"type": "channel_shuffle", "groups": 2},
            {"type": "pixel_unshuffle", "factor": 2},
            {"type": "conv2d", "filters": 2, "kernel_size": 1},
        ],
    }
    path = write_onnx(cnnspec.resolve(document), tmp_path / "shuffles.onnx")
    proto = onnx.load(str(path))
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 6)).astype(np.float32)
    spec = check(proto, x)
    assert [layer.type for layer in spec.layers] == [layer["type"] for layer in document["layers"]]


@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize(
    "factory,shape",
    [
        (S.SENet, (3, 12, 12)),
        (S.UnsqueezeGate, (3, 12, 12)),
        (S.TfSameNet, (3, 33, 33)),
        (S.CBAMNet, (3, 9, 7)),
    ],
    ids=["se_expand_as", "se_unsqueeze", "timm_same_pads_from_shapes", "cbam_channel_pooling"],
)
def test_gates_and_pads_computed_from_shapes_import(factory, shape, dynamo):
    """Expand of a gate (expand_as), and pads torch.onnx computes with Shape -> Gather -> Sub ->
    Div -> Cast -> Concat chains that read a size twice (timm's Conv2dSame)."""
    module = factory().eval()
    randomize(module, 0)
    buffer = io.BytesIO()
    with quiet_warnings():
        torch.onnx.export(module, (torch.zeros(1, *shape),), buffer, dynamo=dynamo)
    proto = onnx.load_from_string(buffer.getvalue())
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    check(proto, x)


@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_onnx_gelu_imports_with_its_approximation(approximate):
    """Opset 20's Gelu op (torch.onnx writes nn.GELU as one from opset 20): erf or tanh, read back exactly."""
    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.GELU(approximate=approximate), torch.nn.Flatten(), torch.nn.Linear(100, 3)
    ).eval()
    randomize(module, 0)
    buffer = io.BytesIO()
    with quiet_warnings():
        torch.onnx.export(module, (torch.zeros(2, 3, 7, 7),), buffer, dynamo=False, opset_version=20)
    proto = onnx.load_from_string(buffer.getvalue())
    assert "Gelu" in [node.op_type for node in proto.graph.node]
    x = 3 * np.random.default_rng(1).standard_normal((2, 3, 7, 7)).astype(np.float32)
    spec = check(proto, x)
    assert [layer.type for layer in spec.layers] == ["conv2d", "gelu", "flatten", "dense"]
    assert spec.layers[1].approximate == approximate


@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize("optimized", [False, True], ids=["raw", "optimized"])
def test_tf2onnx_channels_last_graph_imports(optimized):
    import_frameworks()
    import tensorflow as tf
    import tf2onnx

    layers = keras.layers
    inputs = keras.Input((12, 12, 3))
    x = layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="r")(x)
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = layers.Add(name="add")([x, y])
    x = layers.MaxPooling2D(2, name="mp")(x)
    x = layers.Concatenate(name="cat")([x, layers.Conv2D(4, 1, name="c2")(x)])
    x = layers.Flatten(name="flat")(x)  # channels-last flatten: the dense rows must be reordered
    x = layers.Dense(5, name="fc")(x)
    model = keras.Model(inputs, x)
    randomize(model, 0)
    signature = (tf.TensorSpec((None, 12, 12, 3), tf.float32, name="input"),)
    with quiet_warnings():
        proto, _ = tf2onnx.convert.from_keras(
            model, input_signature=signature, opset=18, **({} if optimized else {"optimizers": {}})
        )
    x_first = np.random.default_rng(1).standard_normal((2, 3, 12, 12)).astype(np.float32)
    spec = check(proto, x_first, channels_last_input=True)
    names = [layer.name for layer in spec.layers]
    assert names[0] == "c1" and names[-2:] == ["flat", "fc"]


@pytest.mark.frameworks
@pytest.mark.onnx
def test_unsupported_op_names_the_node():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.cumsum(self.conv(x), 1)

    with pytest.raises(UnsupportedModel) as caught:
        import_onnx(torch_onnx(Odd(), (3, 8, 8)))
    assert "CumSum" in str(caught.value) and "supported ops" in str(caught.value)


@pytest.mark.frameworks
@pytest.mark.onnx
def test_verify_against_an_onnx_original_counts_parameters_on_every_side():
    """The proof of a conversion from ONNX reports the original's initializers, the converted model
    and its graph against the spec, and says what it compared; a converted model whose count
    differs from the spec fails it."""
    from cnnspec.importers.onnx import verify_against_onnx

    module = Z.ResNetShared()
    proto = torch_onnx(module, (3, 16, 16))
    result = import_onnx(proto)
    # torch.onnx folds each BatchNorm into its convolution: the file's weights are the reference
    expected = sum(
        int(np.prod(init.dims)) for init in proto.graph.initializer if init.data_type == onnx.TensorProto.FLOAT
    )
    converted = cnnspec.build(result.spec, "keras")
    cnnspec.transfer_weights(proto, converted, result.spec)
    import_frameworks()
    report = verify_against_onnx(cnnspec.resolve(result.spec), result, converted)
    assert report.ok, report.problems
    assert report.params["keras"].total == report.params["spec"].total == expected
    assert report.params["onnx_original"].ok and report.params["keras_onnx"].ok
    assert "the original ONNX graph and the Keras model" in report.render(use_rich=False)

    document = result.spec.model_dump(by_alias=True, exclude_none=True)
    document["layers"][-1]["units"] += 1  # the converted model no longer has the original's parameters
    wrong = cnnspec.build(document, "keras")
    report = verify_against_onnx(cnnspec.resolve(result.spec), result, wrong)
    assert not report.ok and report.params["keras"].ok is False


@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_strided_slices_of_yolov5_focus_import(dynamo):
    module = S.Focus().eval()
    randomize(module, 0)
    buffer = io.BytesIO()
    with quiet_warnings():
        torch.onnx.export(module, (torch.zeros(2, 3, 12, 8),), buffer, dynamo=dynamo, input_names=["input"])
    proto = onnx.load_from_string(buffer.getvalue())
    x = np.random.default_rng(4).standard_normal((2, 3, 12, 8)).astype(np.float32)
    spec = check(proto, x)
    pools = [layer for layer in spec.layers if layer.type == "max_pool2d"]
    assert pools and all(layer.pool_size == 1 for layer in pools)
    assert {str(layer.stride) for layer in pools} <= {"2", "[2, 1]", "[1, 2]"}


@pytest.mark.frameworks
@pytest.mark.onnx
def test_a_graph_of_any_size_with_strided_slices_and_an_upsample_imports(tmp_path):
    """Slices counted from the start or the end and a Resize by whole scales do not depend on
    the size: the graph imports open, and its proof runs at sizes the skip join takes."""
    from cnnspec.importers.pipeline import convert_model

    module = S.Focus().eval()
    randomize(module, 0)
    path = tmp_path / "focus.onnx"
    with quiet_warnings():
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, 32, 32),),
            str(path),
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}},
        )
    spec = import_onnx(str(path)).spec
    assert spec.input.size == [None, None]
    assert "upsample" in [layer.type for layer in spec.layers]
    conversion = convert_model(str(path), "torch", tmp_path / "out")
    assert conversion.ok
    assert [entry.input_size for entry in conversion.verification.sizes] == [[224, 224], [228, 228]]


@pytest.mark.frameworks
@pytest.mark.onnx
def test_a_rearrangement_in_any_exporter_s_spelling_is_read_by_what_it_does(tmp_path):
    """torch.onnx writes pixel_unshuffle of a map of any size as Unsqueeze, two Reshapes, a
    Transpose, a Reshape and a Squeeze: the chain is run on numbered cells and read as the
    unshuffle; a chain that swaps height and width is no spec layer and is refused."""
    from cnnspec.importers.pipeline import convert_model

    module = S.RealESRGANStem().eval()
    randomize(module, 0)
    path = tmp_path / "esrgan.onnx"
    with quiet_warnings():
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, 16, 16),),
            str(path),
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "N", 2: "H", 3: "W"}},
        )
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert "Unsqueeze" in ops and "Squeeze" in ops and "SpaceToDepth" not in ops
    spec = import_onnx(str(path)).spec
    assert spec.input.size == [None, None] and spec.layers[0].type == "pixel_unshuffle"
    conversion = convert_model(str(path), "torch", tmp_path / "out")
    assert conversion.ok
    assert [entry.input_size for entry in conversion.verification.sizes] == [[224, 224], [226, 226]]

    from onnx import TensorProto, helper

    swapped = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "split"], ["cells"]),
            helper.make_node("Transpose", ["cells"], ["swapped"], perm=[0, 1, 3, 2, 4]),
            helper.make_node("Reshape", ["swapped", "back"], ["y"]),
        ],
        "height_and_width_swapped",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 4])],
        [
            helper.make_tensor("split", TensorProto.INT64, [5], [2, 3, 4, 4, 1]),
            helper.make_tensor("back", TensorProto.INT64, [4], [2, 3, 4, 4]),
        ],
    )
    proto = helper.make_model(swapped, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    with pytest.raises(UnsupportedModel, match="Reshape"):
        import_onnx(proto)


@pytest.mark.frameworks
@pytest.mark.onnx
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_a_channel_pad_and_means_in_steps_import(dynamo):
    for factory, shape in ((S.CifarResNet, (3, 16, 16)), (S.MeansInSteps, (3, 9, 7))):
        module = factory().eval()
        randomize(module, 0)
        buffer = io.BytesIO()
        with quiet_warnings():
            torch.onnx.export(module, (torch.zeros(2, *shape),), buffer, dynamo=dynamo, input_names=["input"])
        proto = onnx.load_from_string(buffer.getvalue())
        spec = check(proto, np.random.default_rng(5).standard_normal((2, *shape)).astype(np.float32))
        types = {layer.type for layer in spec.layers}
        assert ("channel_pad" in types) if factory is S.CifarResNet else ("global_avg_pool" in types)


@pytest.mark.onnx
def test_a_6d_reshape_that_cuts_the_axes_elsewhere_is_not_an_unshuffle():
    """(1, 2, 4, 16) as (1, 2, 4, 2, 4, 2), Transpose (0, 1, 3, 5, 2, 4): the permutation of an
    unshuffle, but the height is cut in 4 × 2 … of the wrong sizes; no spec layer does this."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "blocks_shape"], ["blocks"]),
            helper.make_node("Transpose", ["blocks"], ["moved"], perm=[0, 1, 3, 5, 2, 4]),
            helper.make_node("Reshape", ["moved", "back"], ["y"]),
        ],
        "cut_elsewhere",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])],
        [
            helper.make_tensor("blocks_shape", TensorProto.INT64, [6], [1, 2, 4, 2, 4, 2]),
            helper.make_tensor("back", TensorProto.INT64, [4], [1, 8, 4, 4]),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    with pytest.raises(UnsupportedModel, match="Reshape"):
        import_onnx(proto)


@pytest.mark.onnx
@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize("factory", [S.EcaLayer, S.TimmEca, S.PermuteEca], ids=["eca_layer", "timm", "permute"])
def test_eca_exports_import_as_channel_conv(factory, dynamo):
    """torch.onnx's export of ECA-Net's Conv1d over the pooled channels (Squeeze, Transpose,
    Conv, Transpose, Unsqueeze; or Reshape, Conv, Sigmoid, Reshape): channel_conv, compared with
    onnxruntime on the file."""
    module = factory().eval()
    randomize(module, 0)
    buffer = io.BytesIO()
    with quiet_warnings():
        torch.onnx.export(module, (torch.zeros(2, 3, 9, 7),), buffer, dynamo=dynamo, input_names=["input"])
    proto = onnx.load_from_string(buffer.getvalue())
    spec = check(proto, np.random.default_rng(6).standard_normal((2, 3, 9, 7)).astype(np.float32))
    assert [layer.type for layer in spec.layers].count("channel_conv") == 1


@pytest.mark.onnx
def test_a_conv_over_lines_that_are_not_one_positions_channels_is_not_a_channel_conv():
    """Reshape (N, C, H, W) to (N, 1, C·H·W) cuts lines across positions: a Conv of one filter
    along it is not channel_conv (refused, never misread)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "line_shape"], ["line"]),
            helper.make_node("Conv", ["line", "w"], ["slid"], pads=[1, 1]),
            helper.make_node("Reshape", ["slid", "map_shape"], ["y"]),
        ],
        "lines",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])],
        [
            numpy_helper.from_array(np.array([1, 1, 36], np.int64), "line_shape"),
            numpy_helper.from_array(np.array([1, 4, 3, 3], np.int64), "map_shape"),
            numpy_helper.from_array(np.ones((1, 1, 3), np.float32), "w"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    with pytest.raises(UnsupportedModel):
        import_onnx(proto)
