"""The model-zoo helpers and definitions, checked directly against the frameworks' own layers.

Each helper class in ``cnnspec/targets/{torch,keras}/helpers.py`` is compared with the framework
operation it stands in for (PyTorch's adaptive pools, F.interpolate, F.pad, nn.ChannelShuffle;
TensorFlow's resize and Keras' own layers), and every trap written in docs/semantics.md has its
wrong mapping shown to differ.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
keras = pytest.importorskip("keras")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from cnnspec.engine import resample  # noqa: E402
from cnnspec.engine.channels import channel_shuffle_permutation, pad_source_index  # noqa: E402
from cnnspec.targets.keras import helpers as kh  # noqa: E402
from cnnspec.targets.torch import helpers as th  # noqa: E402

pytestmark = pytest.mark.frameworks

TOL = 2e-5


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _nchw(shape, seed: int = 0) -> np.ndarray:
    """Random input with negative values (max pooling and padding must not rely on positivity)."""
    return _rng(seed).standard_normal(shape).astype("float32") * 3.0 - 1.0


def _last(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def _first(x) -> np.ndarray:
    return np.moveaxis(np.asarray(x), -1, 1)


def _torch(module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


def _keras(layer, x: np.ndarray) -> np.ndarray:
    """Run a Keras layer on the channels-last version of ``x``; the result comes back channels-first."""
    return _first(layer(_last(x)))


# ------------------------------------------------------------------------------------------
# Adaptive pooling
# ------------------------------------------------------------------------------------------

ADAPTIVE_CASES = [
    ((10,), (7,)),
    ((9,), (4,)),
    ((10, 7), (7, 3)),
    ((8, 8), (4, 4)),
    ((5, 6), (5, 6)),
    ((7, 10), (3, 7)),
    ((5, 6, 7), (2, 4, 3)),
    ((3, 3), (5, 4)),
]
TORCH_ADAPTIVE = {
    1: (F.adaptive_avg_pool1d, F.adaptive_max_pool1d),
    2: (F.adaptive_avg_pool2d, F.adaptive_max_pool2d),
    3: (F.adaptive_avg_pool3d, F.adaptive_max_pool3d),
}


def test_adaptive_windows_are_pytorch_windows():
    assert resample.adaptive_windows(10, 7) == [
        (0, 2),
        (1, 3),
        (2, 5),
        (4, 6),
        (5, 8),
        (7, 9),
        (8, 10),
    ]
    # Probe PyTorch's windows with one-hot inputs: output i reads exactly the window's cells.
    for size, out in [(10, 7), (7, 3), (9, 4), (3, 5), (13, 13)]:
        eye = torch.eye(size).reshape(size, 1, size)
        read = F.adaptive_max_pool1d(eye, out).reshape(size, out).numpy()
        windows = [
            (int(np.flatnonzero(read[:, i])[0]), int(np.flatnonzero(read[:, i])[-1]) + 1)
            for i in range(out)
        ]
        assert windows == resample.adaptive_windows(size, out)


@pytest.mark.parametrize("size,out", ADAPTIVE_CASES)
@pytest.mark.parametrize("reduction", ["average", "max"])
def test_adaptive_pool_helpers_match_pytorch(size, out, reduction):
    x = _nchw((2, 3, *size))
    native_avg, native_max = TORCH_ADAPTIVE[len(size)]
    reference = (native_avg if reduction == "average" else native_max)(
        torch.from_numpy(x), out
    ).numpy()
    np.testing.assert_allclose(_torch(th.AdaptivePool(out, reduction), x), reference, atol=TOL)
    np.testing.assert_allclose(_keras(kh.AdaptivePooling(out, reduction), x), reference, atol=TOL)


def test_adaptive_pool_is_not_a_fixed_pool():
    """The wrong mapping: one fixed pool (kernel = stride = n // out) cannot give PyTorch's windows."""
    x = _nchw((1, 2, 10, 10))
    reference = F.adaptive_avg_pool2d(torch.from_numpy(x), 7).numpy()
    fixed = F.avg_pool2d(torch.from_numpy(x), kernel_size=4, stride=1)[..., :7, :7].numpy()
    assert np.abs(fixed - reference).max() > 0.1


# ------------------------------------------------------------------------------------------
# Resize
# ------------------------------------------------------------------------------------------

TORCH_MODES = {
    "nearest": "nearest",
    "nearest_exact": "nearest-exact",
    "linear": {1: "linear", 2: "bilinear", 3: "trilinear"},
    "cubic": {2: "bicubic"},
}


def _torch_interpolate(x: np.ndarray, size, mode: str, align_corners: bool) -> np.ndarray:
    name = TORCH_MODES[mode]
    name = name[len(size)] if isinstance(name, dict) else name
    kwargs = {"align_corners": align_corners} if mode in ("linear", "cubic") else {}
    return F.interpolate(torch.from_numpy(x), size=tuple(size), mode=name, **kwargs).numpy()


def _taps_resize(x: np.ndarray, size, **options) -> np.ndarray:
    """Apply the engine's definition (interpolation_taps) axis by axis, in float64."""
    out = x.astype("float64")
    for axis, m in enumerate(size):
        dim = axis + 2
        n = out.shape[dim]
        matrix = np.zeros((n, m))
        for i, taps in enumerate(resample.interpolation_taps(n, m, **options)):
            for j, w in taps:
                matrix[j, i] += w
        out = np.moveaxis(np.moveaxis(out, dim, -1) @ matrix, -1, dim)
    return out


RESIZE_CASES = [
    ((7,), (10,)),
    ((10,), (7,)),
    ((5, 5), (7, 9)),
    ((8, 6), (4, 3)),
    ((33, 33), (65, 65)),
    ((6, 7), (12, 14)),
    ((4, 5, 6), (7, 3, 12)),
    ((1, 4), (3, 8)),
    ((9, 9), (1, 1)),
]


@pytest.mark.parametrize("size,out", RESIZE_CASES)
@pytest.mark.parametrize(
    "mode,align_corners",
    [
        ("nearest", False),
        ("nearest_exact", False),
        ("linear", False),
        ("linear", True),
        ("cubic", False),
        ("cubic", True),
    ],
)
def test_resize_matches_pytorch_interpolate(size, out, mode, align_corners):
    if mode == "cubic" and len(size) != 2:
        pytest.skip("PyTorch has bicubic only in 2-D (the helpers extend the same definition)")
    x = _nchw((2, 3, *size))
    reference = _torch_interpolate(x, out, mode, align_corners)
    options = {"mode": mode, "align_corners": align_corners}
    np.testing.assert_allclose(_taps_resize(x, out, **options), reference, atol=1e-4)
    np.testing.assert_allclose(_torch(th.Resize(out, **options), x), reference, atol=1e-4)
    np.testing.assert_allclose(_keras(kh.Resize(out, **options), x), reference, atol=1e-4)


@pytest.mark.parametrize(
    "size,out", [((5, 5), (7, 9)), ((8, 6), (4, 3)), ((6, 7), (12, 14)), ((33, 33), (65, 65))]
)
@pytest.mark.parametrize("method", ["bicubic", "nearest", "bilinear"])
def test_resize_matches_tensorflow(size, out, method):
    """TensorFlow's resize (what Keras Resizing runs): bicubic is Keys a=-0.5 with outside taps excluded."""
    import tensorflow as tf

    x = _nchw((2, 3, *size))
    reference = _first(tf.image.resize(_last(x), out, method=method).numpy())
    options = {
        "bicubic": {
            "mode": "cubic",
            "cubic_coefficient": resample.TF_CUBIC_COEFFICIENT,
            "exclude_outside": True,
        },
        "nearest": {"mode": "nearest_exact"},
        "bilinear": {"mode": "linear"},
    }[method]
    # TensorFlow looks the cubic weights up in a table of 1024 steps (resize_bicubic_op.cc): its
    # fraction t is rounded to a multiple of 1/1024, which moves values by up to 0.01 here (inputs of range ~20).
    tolerance = 2e-2 if method == "bicubic" else 1e-4
    np.testing.assert_allclose(_keras(kh.Resize(out, **options), x), reference, atol=tolerance)
    np.testing.assert_allclose(_torch(th.Resize(out, **options), x), reference, atol=tolerance)
    np.testing.assert_allclose(_taps_resize(x, out, **options), reference, atol=tolerance)
    if method == "bicubic":
        np.testing.assert_allclose(_tf_table_bicubic(x, out), reference, atol=1e-5)


def _tf_table_bicubic(x: np.ndarray, size) -> np.ndarray:
    """The spec's TF-style cubic with t rounded to 1/1024, which reproduces TensorFlow to float32."""
    out = x.astype("float64")
    for axis, m in enumerate(size):
        dim = axis + 2
        n = out.shape[dim]
        matrix = np.zeros((n, m))
        for i in range(m):
            position = (i + 0.5) * n / m - 0.5
            low = int(np.floor(position))
            t = np.rint((position - low) * 1024) / 1024
            taps = [
                (low + k, resample.keys_cubic_weight(t - k, -0.5))
                for k in (-1, 0, 1, 2)
                if 0 <= low + k < n
            ]
            total = sum(w for _, w in taps)
            for j, w in taps:
                matrix[j, i] += w / total
        out = np.moveaxis(np.moveaxis(out, dim, -1) @ matrix, -1, dim)
    return out


def test_tensorflow_bicubic_is_not_pytorch_bicubic():
    """The trap: the two frameworks' 'bicubic' differ (coefficient and edge taps)."""
    import tensorflow as tf

    x = _nchw((1, 2, 6, 7))
    tf_out = _first(tf.image.resize(_last(x), (11, 13), method="bicubic").numpy())
    torch_out = _torch_interpolate(x, (11, 13), "cubic", False)
    assert np.abs(tf_out - torch_out).max() > 0.05


def test_pytorch_nearest_is_not_tensorflow_nearest():
    import tensorflow as tf

    x = _nchw((1, 2, 5, 5))
    tf_out = _first(tf.image.resize(_last(x), (7, 7), method="nearest").numpy())
    assert np.abs(tf_out - _torch_interpolate(x, (7, 7), "nearest", False)).max() > 0.1
    np.testing.assert_allclose(
        tf_out, _torch_interpolate(x, (7, 7), "nearest_exact", False), atol=0
    )


def test_align_corners_changes_bilinear():
    x = _nchw((1, 2, 5, 5))
    assert (
        np.abs(
            _torch_interpolate(x, (9, 9), "linear", True)
            - _torch_interpolate(x, (9, 9), "linear", False)
        ).max()
        > 0.1
    )


def test_scale_factor_without_recompute_is_not_a_resize_to_size():
    """The spec's scale gives size floor(n*scale) and maps by n/size; PyTorch's scale_factor maps by
    1/scale unless recompute_scale_factor=True, which differs when n*scale is not an integer."""
    x = torch.from_numpy(_nchw((1, 2, 7, 7)))
    size = resample.scaled_size(7, 1.5)
    by_size = F.interpolate(x, size=(size, size), mode="bilinear")
    by_factor = F.interpolate(x, scale_factor=1.5, mode="bilinear")
    recomputed = F.interpolate(x, scale_factor=1.5, mode="bilinear", recompute_scale_factor=True)
    assert by_factor.shape == by_size.shape
    assert (by_factor - by_size).abs().max() > 0.05
    torch.testing.assert_close(recomputed, by_size)


# ------------------------------------------------------------------------------------------
# Channel shuffle and slice
# ------------------------------------------------------------------------------------------


def test_channel_shuffle_permutation():
    assert channel_shuffle_permutation(8, 2) == [0, 4, 1, 5, 2, 6, 3, 7]
    assert channel_shuffle_permutation(6, 3) == [0, 2, 4, 1, 3, 5]
    probe = torch.arange(12.0).reshape(1, 12, 1, 1)
    assert nn.ChannelShuffle(3)(probe).flatten().tolist() == channel_shuffle_permutation(12, 3)


@pytest.mark.parametrize(
    "shape,groups", [((2, 8, 5, 6), 2), ((2, 12, 3), 3), ((1, 6, 2, 3, 4), 2), ((2, 8, 4, 4), 4)]
)
def test_channel_shuffle_helpers(shape, groups):
    x = _nchw(shape)
    reference = x[:, channel_shuffle_permutation(shape[1], groups)]
    np.testing.assert_array_equal(_torch(nn.ChannelShuffle(groups), x), reference)
    np.testing.assert_array_equal(_torch(th.ChannelShuffle(groups), x), reference)
    np.testing.assert_array_equal(_keras(kh.ChannelShuffle(groups), x), reference)


@pytest.mark.parametrize("shape,factor", [((2, 8, 5, 6), 2), ((1, 18, 3, 4), 3), ((2, 3, 4, 2), 1)])
def test_pixel_shuffle_helper_is_pytorchs(shape, factor):
    x = _nchw(shape)
    reference = _torch(nn.PixelShuffle(factor), x)
    np.testing.assert_array_equal(_keras(kh.PixelShuffle(factor), x), reference)
    # the definition, written out: output channel c at block offset (i, j) is input c·r² + i·r + j
    c, i, j = shape[1] // factor**2 - 1, factor - 1, 0
    np.testing.assert_array_equal(
        reference[:, c, i::factor, j::factor], x[:, c * factor**2 + i * factor + j]
    )


def test_pixel_shuffle_as_tensorflow_depth_to_space_is_wrong():
    """The trap: tf.nn.depth_to_space (ONNX DepthToSpace's DCR mode) reads (i·r + j)·C + c."""
    import tensorflow as tf

    x = _nchw((1, 8, 4, 4))
    reference = _torch(nn.PixelShuffle(2), x)
    tensorflow_order = _first(tf.nn.depth_to_space(_last(x), 2).numpy())
    assert tensorflow_order.shape == reference.shape
    assert np.abs(tensorflow_order - reference).max() > 1.0


def test_channel_shuffle_nchw_recipe_on_nhwc_is_wrong():
    """The trap: PyTorch's view(N, g, C/g, H, W) / transpose / view copied onto an NHWC tensor."""
    x = _nchw((1, 8, 4, 4))
    n, c, h, w = x.shape
    nhwc = _last(x)
    wrong = nhwc.reshape(n, 2, c // 2, h, w).transpose(0, 2, 1, 3, 4).reshape(n, h, w, c)
    assert np.abs(_first(wrong) - x[:, channel_shuffle_permutation(8, 2)]).max() > 1.0


def test_channel_slice_is_torch_chunk():
    x = _nchw((2, 10, 3, 4))
    first, second = torch.from_numpy(x).chunk(2, dim=1)
    np.testing.assert_array_equal(_keras(kh.ChannelSlice(0, 5), x), first.numpy())
    np.testing.assert_array_equal(_keras(kh.ChannelSlice(5, 10), x), second.numpy())


# ------------------------------------------------------------------------------------------
# Padding modes
# ------------------------------------------------------------------------------------------

PAD_CASES = [
    ((7,), ((2, 3),)),
    ((5, 6), ((1, 2), (3, 0))),
    ((4, 5, 6), ((1, 1), (0, 2), (3, 1))),
    ((2, 2), ((1, 1), (1, 1))),
]


@pytest.mark.parametrize("size,padding", PAD_CASES)
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_padding_helper_matches_torch_pad(size, padding, mode):
    x = _nchw((2, 3, *size))
    flat = [amount for pair in reversed(padding) for amount in pair]  # F.pad: last dim first
    kwargs = {"value": 1.5} if mode == "constant" else {}
    reference = F.pad(torch.from_numpy(x), flat, mode=mode, **kwargs).numpy()
    np.testing.assert_array_equal(_keras(kh.Padding(padding, mode, **kwargs), x), reference)
    # The engine's index definition, on the first axis.
    n, (before, after) = size[0], padding[0]
    for k in range(-before, n + after):
        source = pad_source_index(k, n, mode)
        expected = reference[0, 0, k + before] if len(size) == 1 else None
        if expected is not None:
            assert expected == (1.5 if source is None else x[0, 0, source])


def test_reflect_is_not_symmetric():
    """reflect does not repeat the edge cell; NumPy/TF 'symmetric' does (a plausible wrong mapping)."""
    row = np.array([1.0, 2.0, 3.0])
    assert np.pad(row, 2, mode="reflect").tolist() == [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    reference = F.pad(torch.tensor(row).reshape(1, 1, 3), (2, 2), mode="reflect").flatten().tolist()
    assert reference == np.pad(row, 2, mode="reflect").tolist()
    assert reference != np.pad(row, 2, mode="symmetric").tolist()


# ------------------------------------------------------------------------------------------
# Normalisations
# ------------------------------------------------------------------------------------------


def test_channel_layer_norm_matches_keras_layer_normalization():
    x = _nchw((2, 6, 5, 7))
    torch_layer = th.ChannelLayerNorm(6, eps=1e-6)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.linspace(0.5, 2.0, 6))
        torch_layer.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    keras_layer = keras.layers.LayerNormalization(epsilon=1e-6)
    keras_layer.build((None, 5, 7, 6))
    keras_layer.set_weights([np.linspace(0.5, 2.0, 6), np.linspace(-1.0, 1.0, 6)])
    np.testing.assert_allclose(_torch(torch_layer, x), _keras(keras_layer, x), atol=TOL)


def test_torch_layer_norm_on_nchw_normalises_the_width():
    """The trap: nn.LayerNorm(C) on NCHW normalises the last axis (width), not the channels."""
    x = _nchw((2, 6, 5, 6))  # W == C, so the wrong module even runs
    wrong = _torch(nn.LayerNorm(6), x)
    assert np.abs(wrong - _torch(th.ChannelLayerNorm(6), x)).max() > 0.5


def test_layer_norm_over_all_axes_is_group_norm_with_one_group():
    x = _nchw((2, 6, 5, 7))
    over_chw = _torch(nn.LayerNorm((6, 5, 7), elementwise_affine=False), x)
    np.testing.assert_allclose(over_chw, _torch(nn.GroupNorm(1, 6, affine=False), x), atol=TOL)
    assert (
        np.abs(over_chw - _torch(th.ChannelLayerNorm(6, center=False, scale=False), x)).max() > 0.1
    )


@pytest.mark.parametrize(
    "shape,groups", [((2, 8, 5, 6), 4), ((2, 6, 7), 3), ((1, 4, 3, 4, 5), 2), ((2, 6, 4, 4), 6)]
)
def test_group_norm_matches_keras(shape, groups):
    x = _nchw(shape)
    channels = shape[1]
    gamma, beta = np.linspace(0.5, 2.0, channels), np.linspace(-1.0, 1.0, channels)
    torch_layer = nn.GroupNorm(groups, channels, eps=1e-5)
    with torch.no_grad():
        torch_layer.weight.copy_(torch.tensor(gamma))
        torch_layer.bias.copy_(torch.tensor(beta))
    keras_layer = keras.layers.GroupNormalization(groups=groups, epsilon=1e-5)
    keras_layer.build((None, *shape[2:], channels))
    keras_layer.set_weights([gamma, beta])
    np.testing.assert_allclose(_torch(torch_layer, x), _keras(keras_layer, x), atol=TOL)
    if groups == channels:  # instance_norm
        instance = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[
            len(shape) - 2
        ](channels, affine=True)
        with torch.no_grad():
            instance.weight.copy_(torch.tensor(gamma))
            instance.bias.copy_(torch.tensor(beta))
        np.testing.assert_allclose(_torch(instance, x), _keras(keras_layer, x), atol=TOL)


def test_norm_epsilon_defaults_differ():
    """The trap: Keras' default epsilon is 1e-3 for LayerNormalization and GroupNormalization, PyTorch's 1e-5."""
    x = _nchw((1, 4, 3, 3)) * 0.01  # small variance makes epsilon visible
    torch_out = _torch(nn.GroupNorm(2, 4), x)
    keras_out = _keras(keras.layers.GroupNormalization(groups=2), x)
    assert np.abs(torch_out - keras_out).max() > 0.1
    assert keras.layers.LayerNormalization().epsilon == 1e-3 and nn.LayerNorm(4).eps == 1e-5


def _keras_normalization(mean: np.ndarray, variance: np.ndarray, spatial: tuple[int, ...]):
    layer = keras.layers.Normalization(axis=-1)
    layer.build((None, *spatial, len(mean)))
    layer.set_weights([mean, variance, np.array(7)])
    layer.finalize_state()
    return layer


def test_normalize_matches_keras_normalization_and_counts():
    x = _nchw((2, 3, 5, 4))
    mean, variance = (
        np.array([0.485, 0.456, 0.406]),
        np.array([0.229, 0.224, 0.0]) ** 2,
    )  # one zero variance
    keras_layer = _keras_normalization(mean, variance, (5, 4))
    assert keras_layer.count_params() == 2 * 3 + 1
    assert len(keras_layer.non_trainable_weights) == 3 and not keras_layer.trainable_weights
    torch_layer = th.Normalize(3)
    torch_layer.load_state_dict(
        {"mean": torch.tensor(mean), "variance": torch.tensor(variance), "count": torch.tensor(7)}
    )
    np.testing.assert_allclose(_torch(torch_layer, x), _keras(keras_layer, x), rtol=1e-5, atol=1e-3)
    # BatchNorm's sqrt(var + eps) is a different function (the trap).
    bn = nn.BatchNorm2d(3, eps=1e-3).eval()
    bn.running_mean.copy_(torch.tensor(mean))
    bn.running_var.copy_(torch.tensor(variance))
    assert np.abs(_torch(bn, x) - _keras(keras_layer, x)).max() > 1.0


def test_keras_normalization_set_weights_needs_finalize_state():
    """The trap for weight transfer: set_weights alone leaves Keras' cached mean/variance untouched."""
    x = _nchw((1, 2, 3, 3))
    layer = keras.layers.Normalization(axis=-1)
    layer.build((None, 3, 3, 2))
    layer.set_weights([np.array([1.0, 2.0]), np.array([4.0, 9.0]), np.array(1)])
    stale = _keras(layer, x)
    np.testing.assert_allclose(stale, x, atol=1e-6)  # still mean 0, variance 1
    layer.finalize_state()
    expected = (x - np.array([1.0, 2.0]).reshape(1, 2, 1, 1)) / np.array([2.0, 3.0]).reshape(
        1, 2, 1, 1
    )
    np.testing.assert_allclose(_keras(layer, x), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------
# Rescale, scale, layer scale, stochastic depth
# ------------------------------------------------------------------------------------------


def test_rescale_matches_keras_rescaling():
    x = _nchw((2, 3, 4, 5)) * 100
    for scale, offset in [(1 / 255, 0.0), (1 / 127.5, -1.0), ([0.5, 2.0, -1.0], [0.1, 0.2, 0.3])]:
        reference = _keras(keras.layers.Rescaling(scale=scale, offset=offset), x)
        np.testing.assert_allclose(
            _torch(th.Rescale(scale, offset), x), reference, rtol=1e-6, atol=1e-5
        )


def test_layer_scale_layouts():
    x = _nchw((2, 4, 3, 5))
    torch_layer = th.LayerScale(4, 1e-6, spatial_dims=2)
    assert tuple(torch_layer.gamma.shape) == (4, 1, 1)
    gamma = np.array([0.5, -1.0, 2.0, 3.0], dtype="float32")
    with torch.no_grad():
        torch_layer.gamma.copy_(torch.from_numpy(gamma).reshape(4, 1, 1))
    keras_layer = kh.LayerScale(1e-6)
    keras_layer.build((None, 3, 5, 4))
    assert tuple(keras_layer.gamma.shape) == (4,)
    keras_layer.set_weights([gamma])
    np.testing.assert_allclose(_torch(torch_layer, x), _keras(keras_layer, x), atol=1e-6)
    # keras.applications' own ConvNeXt LayerScale holds the same (C,) weight.
    from keras.src.applications.convnext import LayerScale as ApplicationsLayerScale

    reference = ApplicationsLayerScale(1e-6, 4)
    reference.build((None, 3, 5, 4))
    reference.set_weights([gamma])
    np.testing.assert_allclose(_keras(reference, x), _keras(keras_layer, x), atol=0)


def test_stochastic_depth_identity_at_inference_and_per_sample_in_training():
    x = np.ones((64, 2, 3, 3), dtype="float32")
    torch_layer = th.StochasticDepth(0.5).eval()
    np.testing.assert_array_equal(_torch(torch_layer, x), x)
    np.testing.assert_array_equal(_keras(kh.StochasticDepth(0.5), x), x)
    torch_layer.train()
    dropped = _torch(torch_layer, x)
    per_sample = dropped.reshape(64, -1)
    assert set(np.unique(per_sample)) <= {0.0, 2.0}
    assert all(len(set(row)) == 1 for row in per_sample.tolist())  # whole samples kept or dropped
    trained = np.asarray(kh.StochasticDepth(0.5)(_last(x), training=True)).reshape(64, -1)
    assert set(np.unique(trained)) <= {0.0, 2.0} and all(
        len(set(row)) == 1 for row in trained.tolist()
    )
    assert 0 < (trained[:, 0] == 0).sum() < 64


# ------------------------------------------------------------------------------------------
# Activations the zoos use
# ------------------------------------------------------------------------------------------


def test_zoo_activation_mappings():
    x = np.linspace(-8, 8, 401, dtype="float32")
    np.testing.assert_allclose(
        np.asarray(keras.activations.hard_silu(x)), _torch(nn.Hardswish(), x), atol=1e-6
    )
    np.testing.assert_allclose(
        np.asarray(keras.activations.hard_sigmoid(x)), _torch(nn.Hardsigmoid(), x), atol=1e-6
    )
    # Keras 3 MobileNetV3's own hard_sigmoid: ReLU6(x + 3) / 6.
    from keras.src.applications import mobilenet_v3

    inputs = keras.Input((401,))
    pattern = keras.Model(inputs, mobilenet_v3.hard_sigmoid(inputs))
    np.testing.assert_allclose(pattern(x[None])[0], _torch(nn.Hardsigmoid(), x), atol=1e-6)
    keras2_form = np.clip(0.2 * x + 0.5, 0, 1)
    assert np.abs(keras2_form - _torch(nn.Hardsigmoid(), x)).max() > 0.05  # 0.083 at x = ±2.5


# ------------------------------------------------------------------------------------------
# The helpers survive ONNX export (the verifier's path): TorchScript exporter and tf2onnx
# ------------------------------------------------------------------------------------------

EXPORT_CASES = [
    ("adaptive_avg", lambda: th.AdaptivePool((7, 4)), lambda: kh.AdaptivePooling((7, 4))),
    (
        "adaptive_max",
        lambda: th.AdaptivePool((7, 4), "max"),
        lambda: kh.AdaptivePooling((7, 4), "max"),
    ),
    (
        "resize_cubic",
        lambda: th.Resize((13, 7), "cubic", True),
        lambda: kh.Resize((13, 7), "cubic", True),
    ),
    (
        "resize_nearest_exact",
        lambda: th.Resize((13, 7), "nearest_exact"),
        lambda: kh.Resize((13, 7), "nearest_exact"),
    ),
    ("shuffle", lambda: th.ChannelShuffle(2), lambda: kh.ChannelShuffle(2)),
    ("pixel_shuffle", lambda: nn.PixelShuffle(2), lambda: kh.PixelShuffle(2)),
    ("replicate", None, lambda: kh.Padding(((1, 2), (3, 0)), "replicate")),
    ("reflect", None, lambda: kh.Padding(((1, 2), (3, 0)), "reflect")),
    ("channel_layer_norm", lambda: th.ChannelLayerNorm(8), None),
    ("normalize", lambda: th.Normalize(8), None),
    ("rescale", lambda: th.Rescale([float(c) for c in range(8)], 0.5), None),
    ("layer_scale", lambda: th.LayerScale(8, 0.1), lambda: kh.LayerScale(0.1)),
    ("slice", None, lambda: kh.ChannelSlice(2, 5)),
    ("stochastic_depth", lambda: th.StochasticDepth(0.2).eval(), lambda: kh.StochasticDepth(0.2)),
]


@pytest.mark.onnx
@pytest.mark.parametrize(
    "name,make_torch,make_keras", EXPORT_CASES, ids=[case[0] for case in EXPORT_CASES]
)
def test_helpers_export_to_onnx(name, make_torch, make_keras):
    import io
    import warnings

    ort = pytest.importorskip("onnxruntime")
    tf2onnx = pytest.importorskip("tf2onnx")
    import tensorflow as tf

    x = _nchw((2, 8, 10, 9))
    if make_torch is not None:
        module = make_torch()
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                torch.from_numpy(x),
                buffer,
                opset_version=18,
                dynamo=False,
                input_names=["input"],
            )
        exported = ort.InferenceSession(buffer.getvalue()).run(None, {"input": x})[0]
        np.testing.assert_allclose(exported, _torch(module, x), atol=1e-5)
    if make_keras is not None:
        channels_last = _last(x)
        inputs = keras.Input(channels_last.shape[1:])
        model = keras.Model(inputs, make_keras()(inputs))
        signature = [tf.TensorSpec((None, *channels_last.shape[1:]), tf.float32, name="input")]
        proto, _ = tf2onnx.convert.from_keras(
            model, input_signature=signature, opset=18, optimizers={}
        )
        exported = ort.InferenceSession(proto.SerializeToString()).run(
            None, {"input": channels_last}
        )[0]
        np.testing.assert_allclose(exported, np.asarray(model(channels_last)), atol=1e-5)
