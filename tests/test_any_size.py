"""Models that accept the sizes their users feed them (issue 12): one build, many input sizes.

A spec with ``size: [null, ...]`` is built once per framework; the weights are moved from
torch to Keras; then at several input sizes (odd and even, smaller and larger than the
reference) every spec layer's output is compared: PyTorch against Keras, and both shapes
against the plan resolved at that size (``resolve(spec, input_size=...)``).  Keras' own
``padding="same"`` (TensorFlow's SAME_UPPER) is the reference the runtime padding of the
torch helpers must meet at every size.

Covered: every registry example opened (single layers, odd and even sizes), cases aimed at
each size-dependent emission (strided 'same' in every window layer, unequal strides, ceil
mode, explicit padding equal to SAME at one size only, transposed 'same', crops, adaptive
pools, resize by scale), the example specs that can be size-agnostic, an open MobileNetV2
(keras.applications' parameter count) and ResNet-50 (bench/resnet50.yaml, and its 'same'
variant).  Negative controls: a fixed-size model refuses another size naming both shapes,
and the old emission (padding frozen at the planning size) is caught at an odd size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from any_size_models import mobilenet_v2, opened, resnet50  # noqa: E402
from spec_strategies import valid_specs  # noqa: E402
from test_codegen_ast import check_generated_module  # noqa: E402

import cnnspec  # noqa: E402
from cnnspec.engine.plan import LayerPlan, planned_size_after  # noqa: E402
from cnnspec.errors import SpecError  # noqa: E402
from cnnspec.layers import REGISTRY  # noqa: E402
from cnnspec.targets.build import build  # noqa: E402
from cnnspec.weights.transfer import flat_permutation, randomize, transfer_weights  # noqa: E402

pytestmark = pytest.mark.frameworks

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RTOL = 1e-4
OPEN_FLAT = "depends on the input size"


class Built:
    """A spec built once: the open plan, the torch model, the Keras model and a Keras probe of every layer."""

    def __init__(self, document: dict, seed: int = 1):
        self.document = document
        self.plan = cnnspec.resolve(document)
        self.torch = build(self.plan, "torch")
        self.keras = build(self.plan, "keras")
        outputs = [self.keras.get_layer(layer.name).output for layer in self.plan.layers]
        self.probe = keras.Model(self.keras.input, outputs)
        randomize(self.torch, seed=seed)
        transfer_weights(self.torch, self.keras, self.plan)

    def compare(self, size: tuple[int, ...], batch: int = 2, atol: float = 2e-5) -> None:
        """Every layer at input ``size``: torch and Keras shapes equal the plan's there, values agree."""
        at_size = cnnspec.resolve(self.document, input_size=size)
        rng = np.random.default_rng(sum(size))
        x = rng.normal(size=(batch, *at_size.input_shape)).astype(np.float32)
        with torch.no_grad():
            torch_layers = self.torch.forward_layers(torch.from_numpy(x))
            final = self.torch(torch.from_numpy(x)).numpy()
        values = self.probe(np.ascontiguousarray(np.moveaxis(x, 1, -1)), training=False)
        if len(self.plan.layers) == 1:
            values = [values]
        for layer, keras_value in zip(at_size.layers, values):
            expected = (batch, *layer.output_shape)
            got_torch = torch_layers[layer.name].numpy()
            got_keras = _channels_first(layer, keras.ops.convert_to_numpy(keras_value))
            where = f"layer '{layer.name}' ({layer.type}) at input size {size}"
            assert got_torch.shape == expected, f"{where}: torch {got_torch.shape}, plan {expected}"
            assert got_keras.shape == expected, f"{where}: keras {got_keras.shape}, plan {expected}"
            scale = max(1.0, float(np.abs(got_torch).max(initial=0.0)))
            np.testing.assert_allclose(
                got_keras, got_torch, rtol=RTOL, atol=atol * scale, err_msg=where
            )
        np.testing.assert_array_equal(final, torch_layers[at_size.layers[-1].name].numpy())


def _channels_first(layer: LayerPlan, value: np.ndarray) -> np.ndarray:
    if len(layer.output_shape) > 1:
        return np.moveaxis(value, -1, 1)
    if layer.flat_segments is not None:  # a flat vector in Keras' order -> PyTorch's
        return value[:, np.argsort(flat_permutation(layer.flat_segments))]
    return value


def accepted_sizes(document: dict, candidates, wanted: int) -> list[tuple[int, ...]]:
    """The first ``wanted`` candidate sizes the open spec resolves at (too small ones are refused)."""
    sizes: list[tuple[int, ...]] = []
    for size in dict.fromkeys(tuple(size) for size in candidates):
        try:
            cnnspec.resolve(document, input_size=size)
        except SpecError:
            continue
        sizes.append(tuple(size))
        if len(sizes) == wanted:
            break
    return sizes


def open_or_skip(document: dict) -> dict:
    """``document`` opened; skipped when a layer's parameter count would follow the size (flatten -> dense)."""
    document = opened(document)
    try:
        cnnspec.resolve(document)
    except SpecError as error:
        if OPEN_FLAT in str(error):
            pytest.skip(f"cannot be size-agnostic: {error.problems[0].message[:120]}")
        raise
    return document


# ------------------------------------------------------------------------------------
# Every registry example, opened
# ------------------------------------------------------------------------------------

REGISTRY_CASES = [
    pytest.param(definition, number, id=f"{definition.types[0]}-{number}")
    for definition in REGISTRY.definitions()
    for number in range(len(definition.examples))
]


@pytest.mark.parametrize(("definition", "number"), REGISTRY_CASES)
def test_every_registry_example_opened_agrees_at_several_sizes(definition, number):
    example = definition.examples[number]
    document = open_or_skip(example.spec())
    # odd and even, smaller and larger; the axes differ from each other
    candidates = [
        tuple(n + delta + axis * (delta % 2) for axis, n in enumerate(example.size))
        for delta in (0, 1, -1, 2, 5, 8, 11)
    ]
    # and sizes a step or more past it that the spec plans at (an unshuffle takes only multiples)
    for times in (1, 2, 3):
        try:
            offsets = [times + axis for axis in range(len(example.size))]
            candidates.append(planned_size_after(document, example.size, offsets))
        except SpecError:
            pass
    sizes = accepted_sizes(document, candidates, 4)
    assert len(sizes) >= 3, f"only {sizes} resolve"
    built = Built(document, seed=number)
    for size in sizes:
        built.compare(size)


# ------------------------------------------------------------------------------------
# Each emission that depends on the size
# ------------------------------------------------------------------------------------


def _case(*layers: dict, channels: int = 3, reference=(12, 12)) -> dict:
    return {
        "cnnspec": 1,
        "name": "case",
        "input": {
            "channels": channels,
            "size": [None] * len(reference),
            "reference_size": list(reference),
        },
        "layers": list(layers),
    }


SIZE_CASES = {
    "conv_same_stride2": _case(
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"}
    ),
    "conv_same_k4_s3_dilated": _case(
        {
            "type": "conv2d",
            "filters": 4,
            "kernel_size": [4, 2],
            "stride": 3,
            "dilation": [1, 2],
            "padding": "same",
        }
    ),
    "conv_same_unequal_strides": _case(
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": [2, 3], "padding": "same"}
    ),
    "grouped_conv_same_stride2": _case(
        {
            "type": "conv2d",
            "filters": 4,
            "kernel_size": 3,
            "stride": 2,
            "groups": 2,
            "padding": "same",
        },
        channels=4,
    ),
    "explicit_padding_equal_to_same_at_12": _case(
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": [[0, 1], [0, 1]]}
    ),
    "depthwise_same_stride2": _case(
        {
            "type": "depthwise_conv2d",
            "kernel_size": 3,
            "stride": 2,
            "padding": "same",
            "depth_multiplier": 2,
        }
    ),
    "separable_same_stride2": _case(
        {"type": "separable_conv2d", "filters": 5, "kernel_size": 5, "stride": 2, "padding": "same"}
    ),
    "conv1d_same_stride3": _case(
        {"type": "conv1d", "filters": 2, "kernel_size": 4, "stride": 3, "padding": "same"},
        reference=(13,),
    ),
    "conv3d_same_stride2": _case(
        {"type": "conv3d", "filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"},
        channels=2,
        reference=(6, 5, 4),
    ),
    "max_pool_same_stride2": _case(
        {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": "same"}
    ),
    "max_pool_same_unequal_strides": _case(
        {"type": "max_pool2d", "pool_size": 3, "stride": [1, 2], "padding": "same"}
    ),
    "avg_pool_same_stride2": _case(
        {"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": "same"}
    ),
    "avg_pool_same_unequal_strides": _case(
        {"type": "avg_pool2d", "pool_size": [2, 3], "stride": [2, 3], "padding": "same"}
    ),
    "max_pool_ceil_symmetric": _case(
        {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    ),
    "max_pool_ceil_asymmetric": _case(
        {
            "type": "max_pool2d",
            "pool_size": 3,
            "stride": 2,
            "padding": [[1, 0], [0, 1]],
            "ceil_mode": True,
        }
    ),
    "avg_pool_ceil_counted": _case(
        {"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    ),
    "avg_pool_ceil_asymmetric_uncounted": _case(
        {
            "type": "avg_pool2d",
            "pool_size": 3,
            "stride": 3,
            "padding": [[2, 0], [0, 1]],
            "ceil_mode": True,
            "count_include_pad": False,
        }
    ),
    "avg_pool_ceil_wide_padding_counted": _case(
        {
            "type": "avg_pool2d",
            "pool_size": 2,
            "stride": 2,
            "padding": [[1, 1], [0, 1]],
            "ceil_mode": True,
        }
    ),
    "max_pool1d_ceil_no_padding": _case(
        {"type": "max_pool1d", "pool_size": 3, "stride": 2, "ceil_mode": True}, reference=(11,)
    ),
    "conv_transpose_same_k3_s2": _case(
        {"type": "conv_transpose2d", "filters": 2, "kernel_size": 3, "stride": 2, "padding": "same"}
    ),
    "conv_transpose_same_k2_s3": _case(
        {"type": "conv_transpose2d", "filters": 2, "kernel_size": 2, "stride": 3, "padding": "same"}
    ),
    "conv_transpose_padding_output_padding": _case(
        {
            "type": "conv_transpose2d",
            "filters": 2,
            "kernel_size": 4,
            "stride": 3,
            "padding": 2,
            "output_padding": 2,
        }
    ),
    "conv_transpose_same_dilated": _case(
        {
            "type": "conv_transpose2d",
            "filters": 2,
            "kernel_size": 3,
            "stride": 2,
            "dilation": 2,
            "padding": "same",
        }
    ),
    "crop_open": _case({"type": "crop2d", "cropping": [[1, 2], [0, 3]]}),
    "adaptive_avg_pool_open": _case({"type": "adaptive_avg_pool", "output_size": [4, 3]}),
    "adaptive_max_pool_open": _case({"type": "adaptive_max_pool", "output_size": 3}),
    "resize_scale_bilinear": _case({"type": "resize", "scale": 1.5, "mode": "bilinear"}),
    "resize_scale_nearest_half": _case({"type": "resize", "scale": [0.5, 2], "mode": "nearest"}),
    "resize_scale_nearest_exact": _case({"type": "resize", "scale": 1.5, "mode": "nearest_exact"}),
    "resize_scale_bicubic_corners": _case(
        {"type": "resize", "scale": 1.75, "mode": "bicubic", "align_corners": True}
    ),
    "resize_size_bilinear": _case({"type": "resize", "size": [9, 7], "mode": "bilinear"}),
    "upsample_bilinear": _case({"type": "upsample", "scale_factor": [2, 3], "mode": "bilinear"}),
    "same_chain": _case(
        {
            "name": "a",
            "type": "conv2d",
            "filters": 4,
            "kernel_size": 3,
            "stride": 2,
            "padding": "same",
        },
        {"name": "b", "type": "max_pool2d", "pool_size": 2, "stride": 2, "padding": "same"},
        {
            "name": "up",
            "type": "conv_transpose2d",
            "filters": 4,
            "kernel_size": 3,
            "stride": 2,
            "padding": "same",
        },
        {"name": "shrink", "type": "resize", "scale": 0.5, "mode": "nearest"},
        {"name": "pooled", "type": "global_avg_pool"},
    ),
}


def _width_open(document: dict) -> dict:
    """``document`` with only its last axis open (the first fixed at its reference length)."""
    reference = document["input"]["reference_size"]
    size = [*reference[:-1], None]
    return {**document, "input": {**document["input"], "size": size}}


SIZE_CASES["width_only_open_conv_and_ceil_pool"] = _width_open(
    _case(
        {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"},
        {
            "type": "avg_pool2d",
            "pool_size": 3,
            "stride": 2,
            "padding": [[1, 0], [1, 0]],
            "ceil_mode": True,
        },
    )
)


@pytest.mark.parametrize("name", list(SIZE_CASES))
def test_size_dependent_emissions_agree_at_odd_and_even_sizes(name):
    document = SIZE_CASES[name]
    reference = document["input"]["reference_size"]
    fixed = list(document["input"]["size"])
    candidates = [
        tuple(n + delta + axis if fixed[axis] is None else n for axis, n in enumerate(reference))
        for delta in (0, 1, 2, 3, -3, -4, 9)
    ]
    sizes = accepted_sizes(document, candidates, 6)
    assert len(sizes) >= 5, sizes
    built = Built(document)
    for size in sizes:
        built.compare(size)


def test_runtime_padding_is_used_only_where_the_size_changes_it():
    """A fixed spec keeps the static form (no runtime helper); the same spec opened works the padding out."""
    layer = {"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"}
    fixed = {
        "cnnspec": 1,
        "name": "m",
        "input": {"channels": 3, "size": [12, 12]},
        "layers": [layer],
    }
    torch_fixed = cnnspec.emit_source(fixed, "torch")
    torch_open = cnnspec.emit_source(opened(fixed), "torch")
    assert "SamePad" not in torch_fixed and "nn.ZeroPad2d((0, 1, 0, 1))" in torch_fixed
    assert "self.conv2d_0_pad = SamePad((3, 3), (2, 2))" in torch_open
    assert "check_input_shape(x, (None, 3, 12, 12))" in torch_fixed
    assert "check_input_shape(x, (None, 3, None, None))" in torch_open
    assert "keras.Input(shape=(12, 12, 3)" in cnnspec.emit_source(fixed, "keras")
    assert "keras.Input(shape=(None, None, 3)" in cnnspec.emit_source(opened(fixed), "keras")
    # stride 1: 'same' pads dk - 1 cells at every size, so the static form stays
    stride1 = opened({**fixed, "layers": [dict(layer, stride=1, kernel_size=4)]})
    assert "SamePad" not in cnnspec.emit_source(stride1, "torch")


# ------------------------------------------------------------------------------------
# Example specs and real networks
# ------------------------------------------------------------------------------------

EXAMPLE_FILES = sorted(path.name for path in EXAMPLES.glob("*.yaml"))
HEAVY_EXAMPLES = {"efficientnet_b0.yaml", "mobilenet_v3_small.yaml", "convnext_tiny.yaml"}


def _around(reference: list[int]) -> list[tuple[int, ...]]:
    """Candidate sizes around the reference: itself, odd and even, smaller and larger, then every
    size up to 16 cells either side (for models whose joins take only some sizes)."""
    sizes = [tuple(reference), tuple(n + 1 for n in reference)]
    sizes += [
        tuple(max(1, round(n * f)) + axis for axis, n in enumerate(reference))
        for f in (0.75, 1.25, 0.5, 1.5)
    ]
    sizes += [tuple(n + delta for n in reference) for delta in range(-16, 17)]
    return sizes


@pytest.mark.parametrize(
    "file",
    [pytest.param(f, marks=pytest.mark.slow) if f in HEAVY_EXAMPLES else f for f in EXAMPLE_FILES],
)
def test_example_specs_opened_agree_at_four_sizes(file):
    document = open_or_skip(yaml.safe_load((EXAMPLES / file).read_text()))
    sizes = accepted_sizes(document, _around(document["input"]["reference_size"]), 4)
    # a resize to a fixed size joined with an open branch takes one size only (unet_group_norm)
    if len(sizes) == 1:
        pytest.skip(f"accepts its reference size {sizes[0]} only")
    assert len(sizes) == 4, sizes
    reference = cnnspec.resolve(document)
    # joins that agree at some sizes only may rule out odd sizes
    if not reference.size_notes:
        assert {n % 2 for size in sizes for n in size} == {0, 1}
    assert min(sizes) < tuple(reference.input_shape[1:]) < max(sizes)
    built = Built(document)
    for size in sizes:
        built.compare(size, batch=1, atol=1e-4)


NETWORK_SIZES = [(224, 224), (225, 225), (256, 256), (97, 97)]


@pytest.mark.slow
@pytest.mark.parametrize("network", ["mobilenet_v2", "resnet50", "resnet50_same"])
def test_real_networks_built_once_agree_at_224_225_256_and_97(network):
    document = {
        "mobilenet_v2": mobilenet_v2,
        "resnet50": resnet50,
        "resnet50_same": lambda: resnet50(same=True),
    }[network]()
    built = Built(document)
    for size in NETWORK_SIZES:
        built.compare(size, batch=1, atol=1e-4)


def test_open_mobilenet_v2_counts_like_keras_applications():
    """The open MobileNetV2 spec is keras.applications' MobileNetV2 (3,538,984 parameters, Sandler et al.)."""
    plan = cnnspec.resolve(mobilenet_v2())
    assert plan.total_params == 3_538_984
    assert plan.is_open and plan.size_source == "reference"
    strided = [layer.name for layer in plan.layers if layer.padding_varies]
    assert strided == ["stem", "block1_dw", "block3_dw", "block6_dw", "block13_dw"]


def test_a_small_open_mobilenet_v2_agrees_at_odd_and_even_sizes():
    """The default run's stand-in for the slow full-size check: width 0.35, 10 classes."""
    built = Built(mobilenet_v2(alpha=0.35, classes=10))
    for size in [(64, 64), (65, 65), (97, 96), (33, 47)]:
        built.compare(size, batch=1, atol=1e-4)


# ------------------------------------------------------------------------------------
# Negative controls
# ------------------------------------------------------------------------------------

FIXED = {
    "cnnspec": 1,
    "name": "fixed",
    "input": {"channels": 3, "size": [32, 32]},
    "layers": [{"type": "conv2d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"}],
}


def test_a_fixed_size_torch_model_refuses_another_size_naming_both_shapes():
    model = build(FIXED, "torch")
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 4, 16, 16)
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\).*got \(1, 3, 33, 33\)"):
        model(torch.zeros(1, 3, 33, 33))
    with pytest.raises(ValueError, match=r"got \(1, 32, 32, 3\)"):
        model(torch.zeros(1, 32, 32, 3))  # channels last by mistake
    with pytest.raises(ValueError, match=r"got \(3, 32, 32\)"):
        model(torch.zeros(3, 32, 32))  # no batch axis


def test_a_fixed_size_keras_model_refuses_another_size_naming_both_shapes():
    model = build(FIXED, "keras")
    with pytest.raises(
        ValueError, match=r"expected shape=\(None, 32, 32, 3\), found shape=\(1, 33, 33, 3\)"
    ):
        model(np.zeros((1, 33, 33, 3), dtype=np.float32))


def test_an_open_model_still_checks_its_channels():
    model = build(opened(FIXED), "torch")
    assert model(torch.zeros(1, 3, 33, 35)).shape == (1, 4, 17, 18)
    with pytest.raises(ValueError, match=r"\(N, 3, N, N\).*got \(1, 4, 33, 35\)"):
        model(torch.zeros(1, 4, 33, 35))
    width_open = build(SIZE_CASES["width_only_open_conv_and_ceil_pool"], "torch")
    assert width_open(torch.zeros(1, 3, 12, 29)).shape == (1, 4, 3, 8)
    with pytest.raises(ValueError, match=r"\(N, 3, 12, N\).*got \(1, 3, 13, 29\)"):
        width_open(torch.zeros(1, 3, 13, 29))


def test_the_static_padding_emission_is_caught_at_an_odd_size(monkeypatch):
    """The old emission: 'same' padding frozen at the planning size (32: 0 before, 1 after).

    At 32 it is right; at 33 SAME pads 1 and 1, the frozen model pads 0 and 1: every window
    is shifted by one cell, and the comparison with Keras' own SAME names the layer.
    """
    document = opened(yaml.safe_load((EXAMPLES / "same_stride2.yaml").read_text()))
    monkeypatch.setattr(LayerPlan, "padding_varies", property(lambda layer: False))
    built = Built(document)
    assert "SamePad" not in cnnspec.emit_source(built.plan, "torch")
    built.compare((32, 32))
    with pytest.raises(AssertionError, match=r"layer 'stem' \(conv2d\) at input size \(33, 33\)"):
        built.compare((33, 33))


def test_a_frozen_ceil_mode_overhang_is_caught_at_another_size(monkeypatch):
    """A ceil-mode pool whose overhang is frozen at the planning size loses or gains a window elsewhere."""
    document = SIZE_CASES["max_pool_ceil_asymmetric"]
    monkeypatch.setattr(LayerPlan, "overhang_varies", property(lambda layer: False))
    built = Built(document)
    built.compare((12, 12))
    with pytest.raises(AssertionError, match="max_pool2d_0"):
        for size in [(13, 14), (14, 15), (15, 16)]:
            built.compare(size)


def test_generated_torch_model_exports_to_onnx_right_at_every_size(tmp_path):
    """A user's plain torch.onnx export of an open model must keep the run-time padding exact.

    The exporters write Python's floor division of negative numbers as a truncation, so the
    generated helpers compute ceilings as (n + s - 1) // s (numerators never negative).
    """
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from cnnspec.targets.build import build

    spec = {
        "cnnspec": 1,
        "input": {"channels": 2, "size": [None, None], "reference_size": [32, 32]},
        "layers": [
            {"type": "conv2d", "filters": 3, "kernel_size": 3, "stride": 2, "padding": "same"},
            {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": "same"},
            {
                "type": "avg_pool2d",
                "pool_size": 3,
                "stride": 2,
                "padding": 1,
                "ceil_mode": True,
                "count_include_pad": False,
            },
        ],
    }
    model = build(cnnspec.resolve(spec), "torch").eval()
    path = tmp_path / "open.onnx"
    x = torch.randn(1, 2, 32, 32)
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        input_names=["x"],
        dynamic_axes={"x": {2: "H", 3: "W"}},
    )
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in ((33, 33), (31, 40), (97, 64)):
        x = torch.randn(1, 2, *size)
        with torch.no_grad():
            expected = model(x).numpy()
        (actual,) = session.run(None, {"x": x.numpy()})
        assert (
            actual.shape
            == expected.shape
            == (1, 3, *cnnspec.resolve(spec, input_size=size).output_shape[1:])
        )
        np.testing.assert_allclose(actual, expected, atol=1e-5)


OPEN_MIX = {
    "cnnspec": 1,
    "name": "open_mix",
    "input": {"channels": 3, "size": [None, None], "reference_size": [33, 33]},
    "layers": [
        {
            "name": "stem",
            "type": "conv2d",
            "filters": 8,
            "kernel_size": 3,
            "stride": 2,
            "padding": "same",
            "activation": "relu",
        },
        {"name": "pool", "type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": "same"},
        {
            "name": "avg",
            "type": "avg_pool2d",
            "pool_size": 3,
            "stride": 2,
            "padding": [[1, 0], [0, 1]],
            "ceil_mode": True,
            "count_include_pad": False,
        },
        {
            "name": "wide",
            "type": "conv2d",
            "filters": 4,
            "kernel_size": 3,
            "stride": [1, 2],
            "padding": "same",
        },
        {
            "name": "up",
            "type": "conv_transpose2d",
            "filters": 4,
            "kernel_size": 3,
            "stride": 2,
            "padding": "same",
        },
        {"name": "crop", "type": "crop2d", "cropping": [[1, 0], [0, 1]]},
        {"name": "scaled", "type": "resize", "scale": 1.5, "mode": "bilinear"},
        {"name": "pooled", "type": "global_avg_pool"},
    ],
}


@pytest.mark.parametrize("size", [(33, 33), (37, 42)])
def test_verify_passes_an_open_spec_through_both_onnx_exports(size):
    """The runtime padding survives the ONNX exports at the size they trace (sizes are ints there:
    a traced floor division of a size exports as a truncating Div, 33 -> 16 instead of 17)."""
    report = cnnspec.verify(cnnspec.resolve(OPEN_MIX, input_size=size))
    assert report.ok, report.problems


@pytest.mark.slow
@settings(
    derandomize=True,
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(spec=valid_specs(max_layers=5, open_sizes=True))
def test_fuzzed_open_specs_agree_at_several_sizes(spec):
    """Random catalog specs with null sizes: inert source; torch = keras = plan at three sizes."""
    assume(cnnspec.resolve(spec).is_open)
    plan = cnnspec.resolve(spec)
    for target in ("torch", "keras"):
        check_generated_module(cnnspec.emit_source(plan, target), plan, target)
    reference = spec["input"]["reference_size"]
    candidates = [tuple(n + delta for n in reference) for delta in (0, 1, 2, 3, 5, -1, 8)]
    sizes = accepted_sizes(spec, candidates, 3)
    assume(len(sizes) == 3)
    built = Built(spec)
    for size in sizes:
        built.compare(size, atol=1e-4)


def test_open_size_sources_are_ruff_clean_and_inert(tmp_path):
    """The runtime-padding emissions read as hand-written: ruff finds nothing, the AST is inert."""
    from test_generated_style import RUFF, _assert_clean, _write_sources

    if not Path(RUFF).exists():
        pytest.skip("ruff is not installed")
    specs = [*SIZE_CASES.values(), OPEN_MIX, mobilenet_v2(alpha=0.35, classes=10)]
    for target in ("torch", "keras"):
        for spec in specs:
            plan = cnnspec.resolve(spec)
            check_generated_module(cnnspec.emit_source(plan, target), plan, target)
    _write_sources(specs, tmp_path)
    _assert_clean(tmp_path)
