"""from_torch against PyTorch itself: torchvision-style modules (tests/torch_zoo.py) import with readable
names and their module paths kept, parameter counts equal PyTorch's, and the Keras model built from the
spec, given the ORIGINAL module's weights through ``transfer_weights``, computes what the module computes.
Untraceable and unsupported code is refused with the module path / node and its source line."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

import shape_code_models as S
import torch_zoo as Z
from torchvision_layouts import CNBlock, LayerNorm2d
from torch import nn
from torch.nn import functional as F

import cnnspec
from cnnspec.importers.common import UnsupportedModel
from cnnspec.importers.torch import import_torch
from cnnspec.weights.transfer import randomize


def torch_count(module) -> int:
    buffers = sum(b.numel() for name, b in module.named_buffers() if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in module.parameters()) + buffers


def check_against_torch(module, input_shape, seed=0, atol=1e-4):
    module.eval()
    randomize(module, seed)
    result = import_torch(module, input_shape)
    spec = result.spec
    assert cnnspec.resolve(spec).total_params == torch_count(module)
    keras_model = cnnspec.build(spec, "keras")
    cnnspec.transfer_weights(module, keras_model, spec)
    x = np.random.default_rng(seed).standard_normal((2, *input_shape)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    got = np.asarray(keras_model(np.ascontiguousarray(np.moveaxis(x, 1, -1)), training=False))
    if got.ndim > 2:
        got = np.moveaxis(got, -1, 1)
    scale = max(1.0, float(np.abs(expected).max()))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= atol * scale
    return result


ZOO = [
    ("resnet18", lambda: Z.ResNet(width=16), (3, 64, 64)),
    ("resnet_bottleneck_shared_relu", Z.ResNetShared, (3, 32, 32)),
    ("mobilenet_v2", Z.MobileNetV2, (3, 32, 32)),
    ("densenet", Z.DenseNet, (3, 16, 16)),
    ("squeezenet_ceil_pools", Z.SqueezeNet, (3, 33, 33)),
    ("vgg_adaptive_7x7", Z.VGG, (3, 28, 28)),
]


@pytest.mark.frameworks
@pytest.mark.parametrize("label,factory,shape", ZOO, ids=[z[0] for z in ZOO])
def test_torchvision_style_modules_convert_to_keras(label, factory, shape):
    check_against_torch(factory(), shape)


@pytest.mark.frameworks
def test_module_paths_become_names_and_stay_in_source():
    spec = check_against_torch(Z.ResNet(width=8), (3, 32, 32)).spec
    layers = {layer.name: layer for layer in spec.layers}
    assert layers["layer1_0_conv1"].source == "layer1.0.conv1"
    assert layers["layer2_0_downsample_0"].source == "layer2.0.downsample.0"
    assert layers["conv1"].source is None  # the path is the name
    assert layers["fc"].type == "dense" and layers["avgpool"].keepdims


@pytest.mark.frameworks
def test_rewrites_are_exact_and_listed():
    result = check_against_torch(Z.VGG(), (3, 28, 28))
    assert [r.where for r in result.rewrites] == ["avgpool"]
    assert "identity" in result.rewrites[0].became


@pytest.mark.frameworks
def test_functional_calls_are_recognised():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(16 * 4 * 4, 5)

        def forward(self, x):
            y = F.relu(self.a(x)) + torch.sigmoid(self.b(x))
            y = torch.cat([y, F.hardswish(y)], dim=1)
            y = F.max_pool2d(y, 2)
            y = F.avg_pool2d(y, 2, ceil_mode=True)
            return F.softmax(self.fc(y.view(y.size(0), -1)), dim=1)

    F = torch.nn.functional
    result = check_against_torch(Functional(), (3, 16, 16))
    types = [layer.type for layer in result.spec.layers]
    assert types == [
        "conv2d",
        "relu",
        "conv2d",
        "sigmoid",
        "add",
        "hard_swish",
        "concat",
        "max_pool2d",
        "avg_pool2d",
        "flatten",
        "dense",
        "softmax",
    ]


def refused(module, shape=(3, 16, 16)) -> str:
    with pytest.raises(UnsupportedModel) as caught:
        import_torch(module, shape)
    return str(caught.value)


@pytest.mark.frameworks
def test_data_dependent_control_flow_is_refused():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            if x.sum() > 0:
                return self.conv(x)
            return -self.conv(x)

    message = refused(Branchy())
    assert "torch.fx" in message and "control flow" in message
    assert "test_import_torch.py:" in message and "(if x.sum() > 0:)" in message  # the model's own line


@pytest.mark.frameworks
def test_unsupported_function_names_node_and_line():
    class Sorter(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return torch.cumsum(self.conv(x), dim=1)

    message = refused(Sorter())
    assert "cumsum" in message and "test_import_torch.py:" in message and "supported functions" in message


class CifarTail(nn.Module):
    """The widespread CIFAR ResNet ending: a pool whose window is the map's size, read at run time."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.linear = nn.Linear(8, 5)

    def forward(self, x):
        out = F.relu(self.conv(x))
        out = F.avg_pool2d(out, out.size()[3])
        out = F.max_pool2d(out, kernel_size=(out.shape[2] // 1, out.size(-1)))
        return self.linear(out.view(out.size(0), -1))


@pytest.mark.frameworks
def test_numbers_computed_from_sizes_are_read_at_the_traced_size():
    result = check_against_torch(CifarTail(), (3, 16, 16))
    pool = next(layer for layer in result.spec.layers if layer.type == "avg_pool2d")
    assert pool.pool_size in (8, (8, 8), [8, 8])
    assert any("traced input size" in rewrite.became for rewrite in result.rewrites)
    with pytest.raises(UnsupportedModel, match="traced differently"):
        import_torch(CifarTail(), (3, None, None))  # the window follows the size: no open spec


@pytest.mark.frameworks
@pytest.mark.parametrize(
    "factory,shape",
    [(S.TutorialNet, (1, 28, 28)), (S.TfSameNet, (3, 33, 33))],
    ids=["loop_over_size", "timm_conv2d_same"],
)
def test_python_code_that_reads_sizes_is_traced_at_the_input_size(factory, shape):
    module = factory()
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(module)  # what stopped the importer before
    result = check_against_torch(module, shape)
    size_reads = [r for r in result.rewrites if "reads a tensor's size" in r.original]
    assert len(size_reads) == 1
    assert "shape_code_models.py:" in size_reads[0].original  # the model's own line
    assert f"(N, {', '.join(map(str, shape))})" in size_reads[0].became


@pytest.mark.frameworks
def test_sizes_read_in_python_still_refuse_an_open_size_where_they_change_the_numbers():
    # timm's same padding of a stride-2 conv is 1 on even sizes and 2 on odd ones
    with pytest.raises(UnsupportedModel, match="traced differently"):
        import_torch(S.TfSameNet(), (3, None, None))
    # ... and a branch on values is still refused, at that branch (not at the loop before it)
    class Branchy(nn.Module):
        def forward(self, x):
            count = 1
            for size in x.shape[1:]:
                count *= size
            return x.view(-1, count) if x.sum() > 0 else -x

    message = refused(Branchy())
    assert "(return x.view(-1, count) if x.sum() > 0 else -x)" in message
    assert "control flow" in message


@pytest.mark.frameworks
def test_a_unet_step_that_pads_the_skip_difference_converts():
    check_against_torch(S.UNetStep(), (3, 30, 30))


@pytest.mark.frameworks
@pytest.mark.parametrize("factory", [S.SENet, S.UnsqueezeGate], ids=["view_expand_as", "unsqueeze"])
def test_a_flat_gate_made_broadcastable_by_hand_is_the_merge_gate(factory):
    result = check_against_torch(factory(), (3, 12, 12))
    multiply = next(layer for layer in result.spec.layers if layer.type == "multiply")
    gate = next(layer for layer in result.spec.layers if layer.name == multiply.inputs[1])
    assert gate.type == "sigmoid"  # the gate itself: the view and expand compute nothing
    # viewed as (16, 1, 1) for a convolution it is no gate: it is the map a decoder makes
    into_conv = check_against_torch(S.GateIntoConv(), (3, 12, 12))
    assert [layer.type for layer in into_conv.spec.layers][-2:] == ["unflatten", "conv2d"]


@pytest.mark.frameworks
@pytest.mark.slow
def test_a_converted_squeeze_excite_reads_every_layer_at_its_own_output(tmp_path):
    from cnnspec.importers.pipeline import convert_model

    source = os.path.join(os.path.dirname(__file__), "shape_code_models.py")
    conversion = convert_model(
        f"{source}:SENet", "keras", tmp_path / "out", input_shape=(3, 12, 12)
    )
    layers = conversion.verification.layers
    assert conversion.ok and all(layer.ok and not layer.misaligned for layer in layers)
    # the sigmoid is read at its (N, 16) output, not at the (N, 16, 12, 12) expand of it
    assert any(layer.name == "se_fc_3" and layer.shape_ok for layer in layers)


@pytest.mark.frameworks
@pytest.mark.slow
def test_modules_the_forward_does_not_call_are_named_not_counted(tmp_path):
    """GoogLeNet's auxiliary heads run only in training: the converted model has none, and the
    parameter reconciliation counts what the traced forward uses, naming what it left out."""
    from cnnspec.importers.pipeline import convert_model

    source = os.path.join(os.path.dirname(__file__), "shape_code_models.py")
    conversion = convert_model(f"{source}:AuxHeadNet", "keras", tmp_path / "out", input_shape=(3, 8, 8))
    report = conversion.verification
    assert conversion.ok, report.render(use_rich=False)
    torch_count = report.params["torch"]
    module = S.AuxHeadNet()
    aux = sum(p.numel() for p in module.aux.parameters()) + 2 * 4  # + its BatchNorm's statistics
    assert torch_count.total == sum(p.numel() for p in module.parameters()) + 2 * 8 + 2 * 4 - aux
    assert f"{aux:,} elements in modules the traced forward does not call, not counted: aux" in torch_count.notes


@pytest.mark.frameworks
def test_timm_conv2d_same_padding_by_the_weights_shape_converts():
    """tf_efficientnet's Conv2dSame reads ``weight.shape[-2:]`` for its padding: a size, not a use."""
    result = check_against_torch(S.TfEfficientStem(), (3, 15, 12))
    assert [layer.type for layer in result.spec.layers] == [
        "zero_pad2d", "conv2d", "batch_norm", "silu", "zero_pad2d", "depthwise_conv2d"
    ]


@pytest.mark.frameworks
def test_a_sum_started_from_zero_and_numbers_on_the_left_convert():
    result = check_against_torch(S.BranchSum(), (4, 6, 5))
    rescales = [(layer.scale, layer.offset) for layer in result.spec.layers if layer.type == "rescale"]
    assert sorted(rescales) == [(-1.0, 1.0), (1.0, 3.0)]
    sums = [layer for layer in result.spec.layers if layer.type == "add"]
    assert sums[0].inputs == ["branches_0", "branches_1"]  # 0 + a computes nothing


@pytest.mark.frameworks
def test_views_and_permutes_that_rearrange_a_map_are_read_by_numbered_cells():
    """TResNet's SpaceToDepth (TensorFlow's order: an unshuffle, then a channel shuffle) and a
    pixel shuffle written with reshape and permute."""
    result = check_against_torch(S.HandShuffleNet(), (3, 8, 6))
    layers = result.spec.layers
    assert [layer.type for layer in layers] == ["pixel_unshuffle", "channel_shuffle", "conv2d", "pixel_shuffle"]
    assert (layers[0].factor, layers[1].groups, layers[3].factor) == (2, 3, 2)
    assert any("numbered cells" in rewrite.became for rewrite in result.rewrites)
    # negative control: a permute that is no rearrangement the spec has is refused
    class Scramble(nn.Module):
        def forward(self, x):
            n, c, h, w = x.shape
            return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 4, 3, 2, 5).reshape(n, c * 4, h // 2, w // 2)

    assert "reshape [3, 8, 6] -> [3, 4, 2, 3, 2]" in refused(Scramble(), (3, 8, 6))


@pytest.mark.frameworks
def test_densenet_memory_efficient_checkpointing_is_read_as_the_inference_path():
    """torchvision's DenseNet(memory_efficient=True) asks ``tensor.requires_grad`` to choose
    checkpointing, which computes the same values: it is False for the model converted."""
    import torchvision_layouts as L

    result = check_against_torch(L.DenseNet(block_config=(2, 2), num_classes=10, memory_efficient=True), (3, 32, 32))
    assert any("requires_grad" in rewrite.original for rewrite in result.rewrites)


@pytest.mark.frameworks
@pytest.mark.slow
def test_an_adaptive_pool_that_is_the_identity_at_the_traced_size_is_kept_when_sizes_are_open(tmp_path):
    """AlexNet's AdaptiveAvgPool2d((6, 6)) meets a 6×6 map at 224: at a fixed size it computes
    nothing, at any size it makes the Linear's input fixed.  torch.onnx cannot export it with
    open axes, so the original is exported at each size of the proof."""
    from cnnspec.importers.pipeline import convert_model

    fixed = import_torch(S.FixedPoolHead(), (3, 12, 12)).spec
    assert "adaptive_avg_pool" not in [layer.type for layer in fixed.layers]
    source = os.path.join(os.path.dirname(__file__), "shape_code_models.py")
    conversion = convert_model(
        f"{source}:FixedPoolHead", "keras", tmp_path / "out", input_shape=(3, None, None), input_sizes=[(12, 12), (22, 22)]
    )
    report = conversion.verification
    assert conversion.ok, report.render(use_rich=False)
    assert "{type: adaptive_avg_pool, name: avgpool, output_size: 10}" in (tmp_path / "out" / "spec.yaml").read_text()
    assert [entry.input_size for entry in report.sizes] == [[12, 12], [22, 22]]
    assert any("exported at each size" in note and "PyTorch" in note for note in report.notes)


@pytest.mark.frameworks
def test_pixel_shuffle_module_and_function_convert():
    result = check_against_torch(S.ESPCN(3), (1, 7, 5))
    shuffles = [layer for layer in result.spec.layers if layer.type == "pixel_shuffle"]
    assert [layer.factor for layer in shuffles] == [3, 3]


@pytest.mark.frameworks
def test_pixel_unshuffle_module_and_function_convert():
    result = check_against_torch(S.RealESRGANStem(), (3, 8, 6))
    unshuffles = [layer for layer in result.spec.layers if layer.type == "pixel_unshuffle"]
    assert [layer.factor for layer in unshuffles] == [2, 2]


@pytest.mark.frameworks
def test_yolov5_focus_strided_slices_are_crops_and_strides():
    result = check_against_torch(S.Focus(), (3, 12, 8))
    types = [layer.type for layer in result.spec.layers]
    assert types[:7] == ["max_pool2d", "crop2d", "max_pool2d", "crop2d", "max_pool2d", "crop2d", "max_pool2d"]
    assert {(layer.pool_size, layer.stride) for layer in result.spec.layers if layer.type == "max_pool2d"} == {(1, 2)}
    assert [rewrite.original for rewrite in result.rewrites][:2] == ["x[:, :, ::2, ::2]", "x[:, :, 1::2, ::2]"]
    # negative control: the strides without the offsets' crops read the same cells four times
    document = result.spec.model_dump(mode="json", exclude_none=True)
    for layer in document["layers"]:
        if layer["type"] == "crop2d":
            layer["cropping"] = 0
    module = S.Focus().eval()
    randomize(module, 0)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 8)).astype(np.float32)
    wrong = cnnspec.build(document, "torch").eval()
    cnnspec.transfer_weights(module, wrong, document)
    with torch.no_grad():
        assert (wrong(torch.from_numpy(x)) - module(torch.from_numpy(x))).abs().max() > 0.1


@pytest.mark.frameworks
def test_yolov5_focus_converts_at_any_size_verified_at_sizes_it_takes(tmp_path):
    """The skip joins ⌈H/2⌉ with 2·⌈H/4⌉: equal when H is a multiple of 4 (or 3 more), with no
    period, so the probes and the proof look for the next size the spec takes."""
    import os

    from cnnspec.importers.pipeline import convert_model

    source = os.path.join(os.path.dirname(__file__), "shape_code_models.py")
    conversion = convert_model(f"{source}:Focus", "keras", tmp_path / "out", input_shape=(3, None, None))
    assert conversion.ok
    assert [entry.input_size for entry in conversion.verification.sizes] == [[224, 224], [228, 228]]


@pytest.mark.frameworks
def test_cifar_resnet_option_a_shortcut_is_a_stride_and_a_channel_pad():
    result = check_against_torch(S.CifarResNet(), (3, 16, 16))
    pads = [layer for layer in result.spec.layers if layer.type == "channel_pad"]
    assert [(layer.before, layer.after) for layer in pads] == [(4, 4)]
    # F.pad lists the last dim first: the channels' amounts are the last pair
    result = check_against_torch(S.UnevenChannelPad(), (3, 5, 4))
    pad = next(layer for layer in result.spec.layers if layer.type == "channel_pad")
    assert (pad.before, pad.after) == (1, 3)
    document = result.spec.model_dump(mode="json", exclude_none=True)
    for layer in document["layers"]:
        if layer["type"] == "channel_pad":
            layer["before"], layer["after"] = 3, 1
    right = cnnspec.build(result.spec, "torch").eval()  # proven equal to the module above
    randomize(right, 0)
    wrong = cnnspec.build(document, "torch").eval()
    wrong.load_state_dict(right.state_dict())
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 5, 4)).astype(np.float32))
    with torch.no_grad():
        assert (wrong(x) - right(x)).abs().max() > 0.1


@pytest.mark.frameworks
def test_means_in_steps_are_the_global_pooling():
    result = check_against_torch(S.MeansInSteps(), (3, 9, 7))
    assert [layer.type for layer in result.spec.layers][-2:] == ["global_avg_pool", "dense"]


class Divisions(nn.Module):
    """Pixel scaling in forward, SRGAN's output (tanh + 1) / 2, and a method-style division."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x / 255.0)
        return (torch.tanh(y) + 1) / 2 + y.div(3)


@pytest.mark.frameworks
def test_division_by_a_number_is_a_scale_and_folds_into_the_rescale_before_it():
    result = check_against_torch(Divisions(), (3, 8, 8))
    layers = {layer.name: layer for layer in result.spec.layers}
    assert layers["truediv"].type == "scale" and layers["truediv"].factor == pytest.approx(1 / 255)
    rescale = next(layer for layer in result.spec.layers if layer.type == "rescale")
    assert (rescale.scale, rescale.offset) == (0.5, 0.5)
    assert layers["div"].type == "scale" and layers["div"].factor == pytest.approx(1 / 3)

    class ByTensor(nn.Module):
        def forward(self, x):
            return x / (torch.sigmoid(x) + 1)

    assert "a division" in refused(ByTensor())


class SmoothActivations(nn.Module):
    """YOLOv4's Mish, a softplus head, a self-normalising SELU layer, as modules and functions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.mish = nn.Mish()
        self.selu = nn.SELU()
        self.softplus = nn.Softplus()

    def forward(self, x):
        x = self.selu(self.mish(self.conv(x)))
        return self.softplus(F.mish(x)) + F.softplus(F.selu(x))


@pytest.mark.frameworks
def test_mish_softplus_and_selu_convert():
    result = check_against_torch(SmoothActivations(), (3, 6, 6))
    types = [layer.type for layer in result.spec.layers]
    assert types.count("mish") == 2 and types.count("softplus") == 2 and types.count("selu") == 2
    sharp = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Softplus(beta=2.0))
    assert "softplus(beta=2.0" in refused(sharp)


@pytest.mark.frameworks
def test_cbam_channel_pooling_converts_with_or_without_keepdim():
    result = check_against_torch(S.CBAMNet(), (3, 9, 7))
    types = [layer.type for layer in result.spec.layers]
    assert types.count("channel_max") == 3 and types.count("channel_mean") == 2

    class DropsTheAxis(nn.Module):
        def forward(self, x):
            return x.mean(1) * 2.0

    assert "drops the channel axis" in refused(DropsTheAxis())

    class UsesIndices(nn.Module):
        def forward(self, x):
            values, indices = torch.max(x, dim=1, keepdim=True)
            return values + indices

    assert "with its indices" in refused(UsesIndices())


@pytest.mark.frameworks
def test_slices_with_trailing_full_axes_or_an_ellipsis_convert():
    result = check_against_torch(S.GhostNetTiny(), (3, 8, 9))
    layers = {layer.type: layer for layer in result.spec.layers}
    assert (layers["channel_slice"].start, layers["channel_slice"].stop) == (0, 15)
    assert layers["crop2d"].cropping == [[1, 1], [2, 0]]


@pytest.mark.frameworks
@pytest.mark.parametrize("split", [False, True], ids=["chunk", "split"])
def test_yolov8_c2f_makes_a_list_of_the_pieces_and_converts(split):
    module = S.C2f(3, 8, split=split)
    with pytest.raises(torch.fx.proxy.TraceError):
        torch.fx.symbolic_trace(module)  # list(x.chunk(2, 1)) iterates a Proxy
    result = check_against_torch(module, (3, 6, 5))
    slices = [(layer.start, layer.stop) for layer in result.spec.layers if layer.type == "channel_slice"]
    assert slices == [(0, 4), (4, 8)]
    assert any("pieces of a chunk or split" in r.original for r in result.rewrites)


@pytest.mark.frameworks
def test_split_by_width_and_by_sections_are_channel_slices():
    result = check_against_torch(S.UnevenSplit(), (3, 5, 4))
    slices = {(layer.start, layer.stop) for layer in result.spec.layers if layer.type == "channel_slice"}
    assert {(0, 4), (4, 8), (8, 10), (0, 7), (7, 10)} <= slices


class TutorialLeNet(nn.Module):
    """The PyTorch MNIST tutorial's network: view(-1, n), functional dropout, log_softmax, relu_."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        x = F.max_pool2d(torch.relu_(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), (2, 2))
        x = x.view(-1, 16 * 4 * 4)
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(F.relu(self.fc1(x))), dim=1)


@pytest.mark.frameworks
def test_tutorial_lenet_with_log_softmax_converts():
    result = check_against_torch(TutorialLeNet(), (1, 28, 28))
    assert result.spec.layers[-1].type == "log_softmax"
    module = nn.Sequential(nn.Conv2d(3, 4, 1), nn.LogSoftmax(dim=2))
    assert "log_softmax over dim 2" in refused(module)


@pytest.mark.frameworks
def test_a_number_that_follows_the_batch_is_refused_by_name():
    class BatchWindow(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return F.avg_pool2d(self.conv(x), x.size(0))

    message = refused(BatchWindow())
    assert "computed at run time" in message and "test_import_torch.py:" in message


@pytest.mark.frameworks
def test_unsupported_module_names_its_path():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.LocalResponseNorm(2)))
    message = refused(model)
    assert "module '1.0' (LocalResponseNorm)" in message


@pytest.mark.frameworks
def test_shared_weighted_module_is_refused():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    assert "called more than once" in refused(Twice())


@pytest.mark.frameworks
def test_linear_on_a_feature_map_is_refused():
    message = refused(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(14, 2)))
    assert "module '1' (Linear)" in message and "width" in message


@pytest.mark.frameworks
def test_zoo_patterns_convert_to_keras():
    """The torchvision patterns of the zoo catalog: squeeze-excite with x * gate and Hardsigmoid, ConvNeXt's
    permute -> LayerNorm -> permute with a layer scale, ShuffleNet's chunk + channel shuffle, GroupNorm,
    InstanceNorm, reflect padding, F.interpolate to a size, an uneven adaptive pool and x * 0.17."""
    F = torch.nn.functional

    class LayerScale(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.gamma = nn.Parameter(torch.full((channels, 1, 1), 1e-6))

        def forward(self, x):
            return x * self.gamma

    class Zoo(nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = nn.ReflectionPad2d((1, 2, 1, 0))
            self.stem = nn.Conv2d(3, 8, 3)
            self.gn = nn.GroupNorm(2, 8)
            self.fc1 = nn.Conv2d(8, 4, 1)
            self.fc2 = nn.Conv2d(4, 8, 1)
            self.gate = nn.Hardsigmoid()
            self.dw = nn.Conv2d(8, 8, 7, padding=3, groups=8)
            self.norm = nn.LayerNorm(8, eps=1e-6)
            self.act = nn.Hardswish()
            self.branch = nn.Conv2d(4, 4, 1)
            self.inorm = nn.InstanceNorm2d(8, affine=True)
            self.pool = nn.AdaptiveAvgPool2d((5, 3))

        def forward(self, x):
            x = self.gn(self.stem(self.pad(x)))
            s = F.adaptive_avg_pool2d(x, 1)
            x = x * self.gate(self.fc2(F.relu(self.fc1(s))))
            y = self.norm(self.dw(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            x = self.act(x + y * 0.17)
            a, b = x.chunk(2, dim=1)
            x = torch.cat([a, self.branch(b)], dim=1)
            n, c, h, w = x.shape
            x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
            x = F.interpolate(self.inorm(x), size=(13, 11), mode="bilinear", align_corners=False)
            return self.pool(x)

    result = check_against_torch(Zoo(), (3, 9, 8))
    types = {layer.type for layer in result.spec.layers}
    expected = {"pad2d", "group_norm", "multiply", "hard_sigmoid", "layer_norm", "scale", "channel_slice"}
    assert expected | {"channel_shuffle", "instance_norm", "resize", "adaptive_avg_pool"} <= types


@pytest.mark.frameworks
@pytest.mark.parametrize(
    "mode,factor,shape",
    [("linear", 0.5, (2, 6)), ("linear", 2, (2, 5)), ("trilinear", 1.5, (2, 4, 2, 4)), ("nearest-exact", 1.5, (2, 4, 6))],
)
def test_interpolation_modes_of_every_rank_import(mode, factor, shape):
    """PyTorch names linear interpolation by rank (linear, bilinear, trilinear): all are the spec's
    'bilinear' (the fuzzer found a 1-D 'linear' read back as an invalid mode)."""

    class Interpolate(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 2, 1) if len(shape) == 2 else nn.Conv2d(2, 2, 1) if len(shape) == 3 else nn.Conv3d(2, 2, 1)

        def forward(self, x):
            return F.interpolate(self.conv(x), scale_factor=factor, mode=mode)

    result = check_against_torch(Interpolate(), shape)
    assert result.spec.layers[-1].mode in ("bilinear", "nearest_exact")


@pytest.mark.frameworks
def test_a_scale_factor_that_does_not_divide_the_size_is_refused():
    """F.interpolate(scale_factor=1.5) on 3 cells gives 4 but samples by 1/1.5, not by 3/4."""

    class Odd(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=1.5, mode="bilinear")

    message = refused(Odd(), (2, 3, 4))
    assert "samples by 1/1.5" in message and "recompute_scale_factor=True" in message


@pytest.mark.frameworks
def test_a_model_that_does_not_run_at_the_input_shape_names_the_module(capfd):
    """A flatten size that does not fit the input (the user's model or --input-shape is wrong): one
    located line, PyTorch's own words, and no traceback printed by torch.fx or its fake tensors."""

    class WrongFlatten(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(2, 8, 5, padding="same")
            self.fc = nn.Linear(8 * 6, 3)

        def forward(self, x):
            return self.fc(torch.flatten(F.max_pool1d(self.conv(x), 2), 1))

    with pytest.raises(UnsupportedModel) as caught:
        import_torch(WrongFlatten(), (2, 16))
    message = str(caught.value)
    assert "at 'fc' (Linear)" in message and "(2x64 and 48x3)" in message
    assert "While executing" not in message and "Traceback" not in capfd.readouterr().err

    with pytest.raises(UnsupportedModel) as caught:
        import_torch(WrongFlatten(), (3, 16))  # the wrong channels: the first layer says so
    assert "at 'conv' (Conv1d)" in str(caught.value)


class OriginalConvNeXtBlock(nn.Module):
    """facebookresearch/ConvNeXt's Block: gamma (C,) multiplied while the map is channels-last."""

    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x):
        shortcut = x
        x = self.dwconv(x).permute(0, 2, 3, 1)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        x = (self.gamma * x).permute(0, 3, 1, 2)
        return shortcut + x


class TimmConvNeXtBlock(nn.Module):
    """timm's ConvNeXtBlock: an Mlp with dropout, x.mul(gamma.reshape(1, -1, 1, 1)), DropPath."""

    class DropPath(nn.Module):
        def __init__(self, drop_prob, scale_by_keep=True):
            super().__init__()
            self.drop_prob, self.scale_by_keep = drop_prob, scale_by_keep

        def forward(self, x):
            return x

    def __init__(self, dim, scale_by_keep=True):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, 3 * dim)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.1)
        self.fc2 = nn.Linear(3 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))
        self.drop_path = self.DropPath(0.1, scale_by_keep)

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x).permute(0, 2, 3, 1)
        x = self.fc2(self.drop1(self.act(self.fc1(self.norm(x))))).permute(0, 3, 1, 2)
        x = x.mul(self.gamma.reshape(1, -1, 1, 1))
        return self.drop_path(x) + shortcut


class ConvNeXtPorts(nn.Module):
    def __init__(self, scale_by_keep=True, mode="row"):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 2, 2), LayerNorm2d(8, eps=1e-6))
        self.torchvision = CNBlock(8, 1e-6, 0.1)  # torchvision's block, its StochasticDepth(p, mode)
        self.torchvision.stochastic_depth.mode = mode
        self.original = OriginalConvNeXtBlock(8)
        self.timm = TimmConvNeXtBlock(8, scale_by_keep)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        x = self.timm(self.original(self.torchvision(self.stem(x))))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.frameworks
def test_convnext_blocks_of_torchvision_the_original_and_timm_convert_to_keras():
    """Linear layers between permute(0, 2, 3, 1) and permute(0, 3, 1, 2) are 1x1 convolutions,
    x * a per-channel parameter ((C, 1, 1) channels-first, (C,) channels-last, or reshaped) is
    layer_scale with that parameter's values, LayerNorm2d normalises the channels, and
    torchvision's StochasticDepth and timm's DropPath are stochastic_depth; the Keras model with
    the original's (random) weights computes what PyTorch computes."""
    result = check_against_torch(ConvNeXtPorts(), (3, 12, 10))
    layers = {layer.name: layer for layer in result.spec.layers}
    scales = [layer for layer in result.spec.layers if layer.type == "layer_scale"]
    assert [layer.source for layer in scales] == ["torchvision.layer_scale", "original.gamma", "timm.gamma"]
    assert layers["torchvision_block_3"].type == "conv2d" and layers["torchvision_block_3"].kernel_size == 1
    assert layers["stem_1"].type == "layer_norm"
    depths = [layer for layer in result.spec.layers if layer.type == "stochastic_depth"]
    assert [layer.rate for layer in depths] == [0.1, 0.1]
    linear = [r for r in result.rewrites if r.original == "nn.Linear on a channels-last feature map"]
    assert len(linear) == 6


@pytest.mark.frameworks
def test_a_per_channel_parameter_in_the_wrong_channel_order_fails():
    """Negative control for the test above: the same conversion with one layer_scale's values
    reversed in the Keras model no longer computes what PyTorch computes."""
    module = ConvNeXtPorts().eval()
    randomize(module, 0)
    spec = import_torch(module, (3, 12, 10)).spec
    keras_model = cnnspec.build(spec, "keras")
    cnnspec.transfer_weights(module, keras_model, spec)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 10)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    gamma = keras_model.get_layer("timm_gamma").weights[0]
    gamma.assign(np.asarray(gamma)[::-1].copy())
    got = np.asarray(keras_model(np.moveaxis(x, 1, -1), training=False))
    assert np.abs(got - expected).max() > 1e-3


@pytest.mark.frameworks
def test_training_behaviour_the_spec_does_not_have_becomes_an_identity_with_a_rewrite():
    """torchvision's StochasticDepth(mode="batch") and timm's DropPath(scale_by_keep=False) drop
    differently from stochastic_depth in training: identity, listed."""
    result = check_against_torch(ConvNeXtPorts(scale_by_keep=False, mode="batch"), (3, 12, 10))
    assert [layer.type for layer in result.spec.layers if "drop_path" in layer.name or "stochastic" in layer.name] == [
        "identity",
        "identity",
    ]
    became = [r.original for r in result.rewrites if r.became.startswith("identity")]
    assert became == ["StochasticDepth(mode='batch')", "DropPath(scale_by_keep=False)"]


@pytest.mark.frameworks
def test_what_does_not_act_per_position_on_a_channels_last_map_is_refused():
    class Stem(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3)
            self.norm = nn.LayerNorm(8)
            self.prelu = nn.PReLU(8)
            self.fc = nn.Linear(8, 8)

    class ChannelsLastOutput(Stem):
        def forward(self, x):
            return self.norm(self.conv(x).permute(0, 2, 3, 1))

    class PerChannelSlopes(Stem):  # PReLU(C) acts on dim 1: the height here
        def forward(self, x):
            return self.prelu(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    class Mixed(Stem):
        def forward(self, x):
            y = self.conv(x)
            return (self.fc(y.permute(0, 2, 3, 1)) + y.permute(0, 2, 3, 1).permute(0, 3, 1, 2)).permute(0, 3, 1, 2)

    class OtherPermute(Stem):
        def forward(self, x):
            return self.conv(x).permute(0, 3, 2, 1)

    assert "the model's output is channels-last" in refused(ChannelsLastOutput())
    assert "prelu on a channels-last tensor" in refused(PerChannelSlopes(), (3, 10, 12))
    assert "joins a channels-last tensor with a channels-first one" in refused(Mixed(), (3, 10, 10))
    assert "permute(0, 3, 2, 1)" in refused(OtherPermute())


@pytest.mark.frameworks
def test_torchvision_transform_input_one_channel_at_a_time_converts():
    """torchvision's GoogLeNet / Inception v3 with transform_input=True (their pretrained weights
    set it): torch.unsqueeze(x[:, i], 1) * a + b per channel, then torch.cat.  Each channel is a
    channel_slice, each affine map a rescale; a channel taken without its axis restored is refused."""

    class TransformInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x):
            x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
            x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
            x_ch2 = x[:, -1].unsqueeze(1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
            return self.conv(torch.cat((x_ch0, x_ch1, x_ch2), 1))

    class ChannelDropped(nn.Module):
        def forward(self, x):
            return x[:, 0] * 2.0

    result = check_against_torch(TransformInput(), (3, 9, 8))
    slices = [(layer.start, layer.stop) for layer in result.spec.layers if layer.type == "channel_slice"]
    assert slices == [(0, 1), (1, 2), (2, 3)]
    assert [layer.type for layer in result.spec.layers].count("rescale") == 3
    assert "indexing or slicing a tensor" in refused(ChannelDropped())


@pytest.mark.frameworks
def test_clamp_and_squeeze_after_a_global_pool_convert():
    """User code's clamp(x, 0, 6) / x.clamp(min=0) (relu6 / relu) and the squeezes after a
    global pooling (flatten); squeeze() without a dim (it drops a batch of 1 too) and a clamp
    with one bound other than 0 are refused by name."""

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.conv2 = nn.Conv2d(8, 8, 1)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            x = torch.clamp(self.conv(x), 0, 6)
            x = self.conv2(x).clamp(min=0.0)
            a = self.pool(x).squeeze(-1).squeeze(-1)
            b = torch.squeeze(F.adaptive_max_pool2d(x, 1), (2, 3))
            return self.fc(a + b)

    class SqueezeAll(Head):
        def forward(self, x):
            return self.fc(self.pool(self.conv(x)).squeeze())

    class OneBound(Head):
        def forward(self, x):
            return self.conv(x).clamp(-1)

    result = check_against_torch(Head(), (3, 7, 6))
    types = [layer.type for layer in result.spec.layers]
    activations = types + [getattr(layer, "activation", None) for layer in result.spec.layers]
    assert types.count("flatten") == 2 and "relu6" in activations and "relu" in activations
    assert "squeeze() without a dim" in refused(SqueezeAll())
    assert "clamp(min=-1, max=None)" in refused(OneBound())  # (two bounds are a clip)


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's BatchNormAct2d: F.batch_norm, then its own dropout and activation modules."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, apply_act=True, act_layer=nn.ReLU, drop_layer=None):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.drop = drop_layer() if drop_layer is not None else nn.Identity()
        self.act = act_layer(inplace=True) if apply_act and act_layer is not nn.PReLU else (
            act_layer() if apply_act else nn.Identity()
        )

    def forward(self, x):
        x = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return self.act(self.drop(x))


@pytest.mark.frameworks
def test_timm_batch_norm_with_its_activation_converts():
    """BatchNormAct2d (timm's EfficientNet / MobileNet norm layer) is batch_norm then its activation;
    an activation with parameters inside it is refused by name."""

    class Stem(nn.Module):
        def __init__(self, act_layer=nn.SiLU):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, bias=False)
            self.bn1 = BatchNormAct2d(8, eps=1e-3, act_layer=act_layer)
            self.conv2 = nn.Conv2d(8, 8, 1, bias=False)
            self.bn2 = BatchNormAct2d(8, apply_act=False)

        def forward(self, x):
            return self.bn2(self.conv2(self.bn1(self.conv(x))))

    result = check_against_torch(Stem(), (3, 7, 6))
    assert [layer.type for layer in result.spec.layers] == ["conv2d", "batch_norm", "silu", "conv2d", "batch_norm"]
    assert [layer.name for layer in result.spec.layers[1:3]] == ["bn1", "bn1_act"] and result.spec.layers[1].epsilon == 1e-3
    # CSPDarkNet's: LeakyReLU(0.1), a constant the layer after the BatchNorm keeps
    result = check_against_torch(Stem(functools.partial(nn.LeakyReLU, 0.1)), (3, 7, 6))
    assert [(layer.type, getattr(layer, "negative_slope", None)) for layer in result.spec.layers[1:3]] == [
        ("batch_norm", None),
        ("leaky_relu", 0.1),
    ]
    assert "BatchNormAct2d with the activation PReLU" in refused(Stem(nn.PReLU))


TORCHVISION_LAYOUTS = [
    ("alexnet", "AlexNet", (3, 64, 64)),
    ("googlenet_transform_input", "googlenet_transform", (3, 64, 64)),
    ("inception_v3_transform_input", "Inception3", (3, 80, 80)),
    ("densenet121", "DenseNet", (3, 64, 64)),
    ("shufflenet_v2", "ShuffleNetV2", (3, 64, 64)),
    ("mobilenet_v3_small", "MobileNetV3", (3, 64, 64)),
    ("efficientnet_b0", "EfficientNetB0", (3, 64, 64)),
    ("regnet_y_400mf", "RegNetY400", (3, 64, 64)),
    ("resnext_blocks", "ResNeXtSmall", (3, 64, 64)),
    ("convnext", "ConvNeXt", (3, 64, 64)),
]


@pytest.mark.slow
@pytest.mark.frameworks
@pytest.mark.parametrize("label,factory,shape", TORCHVISION_LAYOUTS, ids=[t[0] for t in TORCHVISION_LAYOUTS])
def test_torchvision_layouts_convert_to_keras(label, factory, shape):
    """The architectures in torchvision's own layouts (tests/torchvision_layouts.py), with random
    weights: the spec counts PyTorch's parameters and the Keras model computes what PyTorch computes."""
    import torchvision_layouts

    check_against_torch(getattr(torchvision_layouts, factory)(), shape)


@pytest.mark.frameworks
def test_a_conv_subclass_with_its_own_forward_converts():
    """A conv module whose forward pads and calls F.conv2d with its own weight and bias (TF-style
    'same' ports, custom conv wrappers) is that convolution, its weights read from the module; a
    functional convolution mixing two modules' parameters is refused."""

    class PaddedConv2d(nn.Conv2d):
        def forward(self, x):
            x = F.pad(x, (0, 1, 0, 1))
            return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = PaddedConv2d(3, 8, 3, stride=2)
            self.dw = PaddedConv2d(8, 8, 3, groups=8, bias=False)
            self.head = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            return self.head(F.relu(self.dw(self.stem(x))))

    class Mixed(Net):
        def __init__(self):
            super().__init__()
            self.other = nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return F.conv2d(x, self.stem.weight, self.other.bias)

    result = check_against_torch(Net(), (3, 9, 8))
    convs = [layer for layer in result.spec.layers if "conv" in layer.type]
    assert [(layer.type, layer.source) for layer in convs] == [
        ("conv2d", "stem"),
        ("depthwise_conv2d", "dw"),
        ("conv2d", None),
    ]
    assert "not one module's weight and bias" in refused(Mixed())


@pytest.mark.frameworks
@pytest.mark.parametrize(
    ("model", "kernel_size", "bias"),
    [(S.EcaLayer(), 3, False), (S.TimmEca(), 3, False), (S.PermuteEca(), 5, True)],
    ids=["eca_layer", "timm_eca_module", "permute_eca"],
)
def test_eca_conv1d_over_the_channels_is_channel_conv(model, kernel_size, bias):
    result = check_against_torch(model, (3, 9, 7))
    (layer,) = [layer for layer in result.spec.layers if layer.type == "channel_conv"]
    assert (layer.kernel_size, layer.bias) == (kernel_size, bias)
    assert "conv1d" not in {layer.type for layer in result.spec.layers}


class ChannelsAsSequence(nn.Module):
    """A Conv1d over the channels with two filters: not one filter slid along the channels."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 8, 1)
        self.conv = nn.Conv1d(1, 2, 3, padding=1)

    def forward(self, x):
        y = F.adaptive_avg_pool2d(self.conv0(x), 1).squeeze(-1).transpose(-1, -2)
        return self.conv(y)


@pytest.mark.frameworks
def test_a_conv1d_of_two_filters_over_the_channels_is_refused_where_it_is():
    with pytest.raises(UnsupportedModel, match="Conv1d"):
        import_torch(ChannelsAsSequence().eval(), (3, 5, 5))


@pytest.mark.frameworks
def test_cnnspecs_own_channel_conv_module_reads_back():
    spec = {
        "cnnspec": 1,
        "name": "eca",
        "input": {"channels": 3, "size": [6, 5]},
        "layers": [
            {"type": "conv2d", "name": "conv", "filters": 8, "kernel_size": 3},
            {"type": "channel_conv", "name": "eca", "kernel_size": 5, "bias": True},
        ],
    }
    result = check_against_torch(cnnspec.build(spec, "torch"), (3, 6, 5))
    eca = next(layer for layer in result.spec.layers if layer.type == "channel_conv")
    assert (eca.kernel_size, eca.bias) == (5, True)
