"""Weight layouts and weight files.

The layout tests build each layer *by hand* with the frameworks' own classes (not through
cnnspec's emitters), transfer random weights with :func:`cnnspec.weights.transfer_weights`
and check that the two frameworks then compute the same output, and that torch -> keras ->
torch gives back exactly the same tensors.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

import cnnspec  # noqa: E402
from cnnspec.targets.build import build  # noqa: E402  (the function; `cnnspec.build` is also the submodule's name)
from cnnspec.errors import CnnspecError, OutputExistsError  # noqa: E402
from cnnspec.weights.files import load_weights_file, save_weights_file  # noqa: E402
from cnnspec.weights.transfer import WeightMismatch, flat_permutation, randomize, transfer_weights  # noqa: E402

L = keras.layers
nn = torch.nn


class HandModel(nn.Module):
    """A torch model whose attributes follow the emitter contract, applied in order."""

    def __init__(self, modules):
        super().__init__()
        self.order = []
        for name, module in modules:
            self.add_module(name, module)
            self.order.append(name)

    def forward(self, x):
        for name in self.order:
            x = getattr(self, name)(x)
        return x


def hand_keras(input_shape_last, layers):
    inputs = keras.Input(input_shape_last)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def spec_of(channels, size, layers):
    return {"cnnspec": 1, "name": "hand", "input": {"channels": channels, "size": list(size)}, "layers": layers}


# (id, channels, size, spec layers, torch modules factory, keras layers factory)
LAYOUT_CASES = [
    ("conv1d", 2, [9], [{"type": "conv1d", "name": "conv", "filters": 4, "kernel_size": 3}],
     lambda: [("conv", nn.Conv1d(2, 4, 3))], lambda: [L.Conv1D(4, 3, name="conv")]),
    ("conv2d_grouped", 4, [6, 5], [{"type": "conv2d", "name": "conv", "filters": 6, "kernel_size": [3, 2], "groups": 2}],
     lambda: [("conv", nn.Conv2d(4, 6, (3, 2), groups=2))], lambda: [L.Conv2D(6, (3, 2), groups=2, name="conv")]),
    ("conv3d_nobias", 2, [4, 5, 3], [{"type": "conv3d", "name": "conv", "filters": 3, "kernel_size": 2, "bias": False}],
     lambda: [("conv", nn.Conv3d(2, 3, 2, bias=False))], lambda: [L.Conv3D(3, 2, use_bias=False, name="conv")]),
    ("conv_transpose2d", 3, [4, 5], [{"type": "conv_transpose2d", "name": "up", "filters": 4, "kernel_size": [3, 2], "stride": 2}],
     lambda: [("up", nn.ConvTranspose2d(3, 4, (3, 2), stride=2))], lambda: [L.Conv2DTranspose(4, (3, 2), strides=2, name="up")]),
    ("conv_transpose1d", 2, [6], [{"type": "conv_transpose1d", "name": "up", "filters": 3, "kernel_size": 4, "stride": 2}],
     lambda: [("up", nn.ConvTranspose1d(2, 3, 4, stride=2))], lambda: [L.Conv1DTranspose(3, 4, strides=2, name="up")]),
    ("conv_transpose3d", 2, [3, 2, 3], [{"type": "conv_transpose3d", "name": "up", "filters": 3, "kernel_size": 2, "stride": 2}],
     lambda: [("up", nn.ConvTranspose3d(2, 3, 2, stride=2))], lambda: [L.Conv3DTranspose(3, 2, strides=2, name="up")]),
    ("depthwise_m2", 3, [6, 7], [{"type": "depthwise_conv2d", "name": "dw", "kernel_size": 3, "depth_multiplier": 2}],
     lambda: [("dw", nn.Conv2d(3, 6, 3, groups=3))], lambda: [L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")]),
    ("separable_m2", 3, [6, 6], [{"type": "separable_conv2d", "name": "sep", "filters": 5, "kernel_size": 3, "depth_multiplier": 2}],
     lambda: [("sep_depthwise", nn.Conv2d(3, 6, 3, groups=3, bias=False)), ("sep_pointwise", nn.Conv2d(6, 5, 1))],
     lambda: [L.SeparableConv2D(5, 3, depth_multiplier=2, name="sep")]),
    ("flatten_dense", 3, [4, 5], [{"type": "flatten", "name": "flat"}, {"type": "dense", "name": "fc", "units": 6}],
     lambda: [("flat", nn.Flatten()), ("fc", nn.Linear(60, 6))], lambda: [L.Flatten(name="flat"), L.Dense(6, name="fc")]),
    ("batch_norm2d", 3, [4, 4], [{"type": "batch_norm", "name": "bn", "epsilon": 1e-3}],
     lambda: [("bn", nn.BatchNorm2d(3, eps=1e-3))], lambda: [L.BatchNormalization(epsilon=1e-3, name="bn")]),
    ("flatten_batch_norm", 3, [3, 4], [{"type": "flatten", "name": "flat"}, {"type": "batch_norm", "name": "bn"}],
     lambda: [("flat", nn.Flatten()), ("bn", nn.BatchNorm1d(36))],
     lambda: [L.Flatten(name="flat"), L.BatchNormalization(epsilon=1e-5, name="bn")]),
    ("prelu_channels", 3, [4, 4], [{"type": "prelu", "name": "act"}],
     lambda: [("act", nn.PReLU(3))], lambda: [L.PReLU(shared_axes=[1, 2], name="act")]),
    ("prelu_shared", 3, [4, 4], [{"type": "prelu", "name": "act", "per_channel": False}],
     lambda: [("act", nn.PReLU(1))], lambda: [L.PReLU(shared_axes=[1, 2, 3], name="act")]),
    ("flatten_prelu", 2, [3, 3], [{"type": "flatten", "name": "flat"}, {"type": "prelu", "name": "act"}],
     lambda: [("flat", nn.Flatten()), ("act", nn.PReLU(18))], lambda: [L.Flatten(name="flat"), L.PReLU(name="act")]),
]


def _case(case_id):
    return next(c for c in LAYOUT_CASES if c[0] == case_id)


def _hand_models(case):
    _, channels, size, layers, torch_factory, keras_factory = case
    plan = cnnspec.resolve(spec_of(channels, size, layers))
    torch_model = HandModel(torch_factory()).eval()
    keras_model = hand_keras((*size, channels), keras_factory())
    return plan, torch_model, keras_model


def _run_both(plan, torch_model, keras_model, seed=0):
    x = np.random.default_rng(seed).normal(size=(2, *plan.input_shape)).astype(np.float32)
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    actual = keras.ops.convert_to_numpy(keras_model(np.moveaxis(x, 1, -1), training=False))
    last = plan.layers[-1]
    expected = expected[:, flat_permutation(last.flat_segments)] if last.flat_segments else np.moveaxis(expected, 1, -1)
    return expected, actual


@pytest.mark.parametrize("case", LAYOUT_CASES, ids=[c[0] for c in LAYOUT_CASES])
def test_layout_matches_framework_layers_and_round_trips_exactly(case):
    plan, torch_model, keras_model = _hand_models(case)
    randomize(torch_model, seed=11)
    original = {k: v.clone() for k, v in torch_model.state_dict().items()}

    transfer_weights(torch_model, keras_model, plan)
    expected, actual = _run_both(plan, torch_model, keras_model)
    assert expected.shape == actual.shape
    assert np.allclose(expected, actual, atol=1e-5, rtol=1e-5), np.abs(expected - actual).max()

    fresh = HandModel(case[4]()).eval()
    transfer_weights(keras_model, fresh, plan)
    for key, value in fresh.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, original[key]), key


def test_depthwise_channel_order_is_c_times_m_plus_j():
    """Torch output channel c*m + j must be Keras depthwise_kernel[:, :, c, j]: check one kernel at a time."""
    plan, torch_model, keras_model = _hand_models(_case("depthwise_m2"))
    with torch.no_grad():
        torch_model.dw.weight.zero_()
        torch_model.dw.bias.zero_()
        torch_model.dw.weight[3, 0, 1, 1] = 1.0  # channel 3 = input channel 1, multiplier index 1 (m = 2)
    transfer_weights(torch_model, keras_model, plan)
    kernel = keras.ops.convert_to_numpy(keras_model.get_layer("dw").kernel)
    assert kernel[1, 1, 1, 1] == 1.0 and np.count_nonzero(kernel) == 1
    expected, actual = _run_both(plan, torch_model, keras_model)
    assert np.allclose(expected, actual, atol=1e-6)


def test_flat_permutation_is_piecewise():
    perm = flat_permutation(((2, 1, 3), (4,), (1, 2, 2)))
    # (2,1,3): torch c*3+w, keras w*2+c ; then 4 plain features ; then (1,2,2) keeps order (one channel).
    assert perm.tolist() == [0, 3, 1, 4, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    torch_vector = np.arange(14) * 10
    assert np.array_equal(torch_vector[perm][np.argsort(perm)], torch_vector)


def test_transfer_keras_to_torch_direction_detected():
    plan, torch_model, keras_model = _hand_models(_case("flatten_dense"))
    randomize(keras_model, seed=12)
    transfer_weights(keras_model, torch_model, plan)
    expected, actual = _run_both(plan, torch_model, keras_model)
    assert np.allclose(expected, actual, atol=1e-5, rtol=1e-5)


# --- errors ---------------------------------------------------------------------------------------


def test_shape_mismatch_names_layer_tensor_and_both_shapes():
    plan, torch_model, _ = _hand_models(_case("conv2d_grouped"))
    wrong_keras = hand_keras((6, 5, 4), [L.Conv2D(6, (3, 2), groups=1, name="conv")])  # (3,2,4,6) instead of (3,2,2,6)
    with pytest.raises(WeightMismatch) as info:
        transfer_weights(torch_model, wrong_keras, plan)
    message = str(info.value)
    assert "'conv'" in message and "kernel" in message
    assert "(6, 2, 3, 2)" in message and "(3, 2, 4, 6)" in message


def test_torch_model_that_disagrees_with_the_spec_is_reported():
    plan, _, keras_model = _hand_models(_case("flatten_dense"))
    wrong_torch = HandModel([("flat", nn.Flatten()), ("fc", nn.Linear(60, 7))])
    with pytest.raises(WeightMismatch) as info:
        transfer_weights(wrong_torch, keras_model, plan)
    assert "'fc'" in str(info.value) and "(7, 60)" in str(info.value) and "(60, 6)" in str(info.value)


def test_missing_layer_is_named():
    # A part named otherwise but of the right type is matched by order and type (weights/matching.py);
    # a model without a part of that type names the spec layer and the candidates.
    plan, torch_model, _ = _hand_models(_case("conv1d"))
    transfer_weights(torch_model, hand_keras((9, 2), [L.Conv1D(4, 3, name="other")]), plan)
    wrong_type = hand_keras((9, 2), [L.Dense(4, name="other")])
    with pytest.raises(WeightMismatch, match=r"conv \(conv\)[\s\S]*candidates for 'conv': none"):
        transfer_weights(torch_model, wrong_type, plan)
    _, _, keras_model = _hand_models(_case("conv1d"))
    with pytest.raises(WeightMismatch, match=r"candidates for 'conv': none"):
        transfer_weights(HandModel([("other", nn.Linear(9, 4))]), keras_model, plan)


def test_two_models_of_one_framework_are_refused():
    plan, torch_model, _ = _hand_models(_case("conv1d"))
    with pytest.raises(CnnspecError, match="both models are torch"):
        transfer_weights(torch_model, torch_model, plan)


def test_failed_transfer_leaves_destination_untouched():
    spec = spec_of(3, [4, 4], [{"type": "conv2d", "name": "a", "filters": 2, "kernel_size": 1},
                               {"type": "conv2d", "name": "b", "filters": 2, "kernel_size": 1}])
    plan = cnnspec.resolve(spec)
    torch_model = HandModel([("a", nn.Conv2d(3, 2, 1)), ("b", nn.Conv2d(2, 2, 1))])
    keras_model = hand_keras((4, 4, 3), [L.Conv2D(2, 1, name="a"), L.Conv2D(3, 1, name="b")])
    before = [keras.ops.convert_to_numpy(v).copy() for v in keras_model.weights]
    with pytest.raises(WeightMismatch, match="'b'"):
        transfer_weights(torch_model, keras_model, plan)
    after = [keras.ops.convert_to_numpy(v) for v in keras_model.weights]
    assert all(np.array_equal(x, y) for x, y in zip(before, after))


# --- weight files ---------------------------------------------------------------------------------


def test_torch_state_dict_file_round_trip(tmp_path):
    case = _case("flatten_batch_norm")
    _, torch_model, _ = _hand_models(case)
    randomize(torch_model, seed=13)
    path = save_weights_file(torch_model, tmp_path / "model.pt")
    fresh = HandModel(case[4]()).eval()
    load_weights_file(fresh, path)
    for key, value in torch_model.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    assert sorted(os.listdir(tmp_path)) == ["model.pt"]


def test_keras_weights_file_round_trip(tmp_path):
    case = _case("separable_m2")
    _, _, keras_model = _hand_models(case)
    randomize(keras_model, seed=14)
    path = save_weights_file(keras_model, tmp_path / "model.weights.h5")
    _, _, fresh = _hand_models(case)
    load_weights_file(fresh, path)
    for a, b in zip(keras_model.weights, fresh.weights):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path
    assert sorted(os.listdir(tmp_path)) == ["model.weights.h5"]


def test_keras_weights_need_the_keras_suffix(tmp_path):
    _, _, keras_model = _hand_models(_case("conv1d"))
    with pytest.raises(CnnspecError, match=r"\.weights\.h5"):
        save_weights_file(keras_model, tmp_path / "model.h5")
    assert not os.listdir(tmp_path)


def test_torch_file_loads_into_keras_model_through_the_spec(tmp_path):
    spec = {"cnnspec": 1, "name": "small", "input": {"channels": 2, "size": [5, 5]}, "layers": [
        {"type": "conv2d", "name": "conv", "filters": 3, "kernel_size": 2},
        {"type": "flatten", "name": "flat"}, {"type": "dense", "name": "fc", "units": 4}]}
    torch_model = build(spec, "torch")
    randomize(torch_model, seed=15)
    path = save_weights_file(torch_model, tmp_path / "small.pth")
    keras_model = build(spec, "keras")
    load_weights_file(keras_model, path, spec)
    plan = cnnspec.resolve(spec)
    expected, actual = _run_both(plan, torch_model, keras_model)
    assert np.allclose(expected, actual, atol=1e-5, rtol=1e-5)
    with pytest.raises(CnnspecError, match="pass the spec"):
        load_weights_file(keras_model, path)

    # And back: a Keras weights file into a fresh torch model.
    randomize(keras_model, seed=16)
    keras_path = save_weights_file(keras_model, tmp_path / "small.weights.h5")
    torch_again = build(spec, "torch")
    load_weights_file(torch_again, keras_path, plan)
    expected, actual = _run_both(plan, torch_again, keras_model)
    assert np.allclose(expected, actual, atol=1e-5, rtol=1e-5)


def test_weights_that_do_not_fit_are_reported(tmp_path):
    _, torch_model, _ = _hand_models(_case("conv1d"))
    path = save_weights_file(torch_model, tmp_path / "conv.pt")
    other = HandModel([("conv", nn.Conv1d(2, 5, 3))])
    with pytest.raises(WeightMismatch, match="conv.weight"):
        load_weights_file(other, path)


@pytest.mark.parametrize("kind", ["torch", "keras"])
def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch, kind):
    _, torch_model, keras_model = _hand_models(_case("conv1d"))
    model = torch_model if kind == "torch" else keras_model
    target = tmp_path / ("w.pt" if kind == "torch" else "w.weights.h5")

    def half_write(_obj, file, *args, **kwargs):
        Path(file).write_bytes(b"PK\x03\x04 half a file")
        raise OSError("disk full")

    if kind == "torch":
        monkeypatch.setattr(torch, "save", half_write)
    else:
        monkeypatch.setattr(type(keras_model), "save_weights", lambda self, file, **kw: half_write(self, file))
    with pytest.raises(OSError, match="disk full"):
        save_weights_file(model, target)
    assert os.listdir(tmp_path) == []

    # Also when replacing an existing file: the old content survives.
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"):
        save_weights_file(model, target, overwrite=True)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == [target.name]


def test_refuses_to_overwrite_without_permission(tmp_path):
    _, torch_model, _ = _hand_models(_case("conv1d"))
    target = tmp_path / "w.pt"
    target.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        save_weights_file(torch_model, target)
    assert target.read_bytes() == b"precious"
    save_weights_file(torch_model, target, overwrite=True)
    fresh = HandModel([("conv", nn.Conv1d(2, 4, 3))])
    load_weights_file(fresh, target)
    assert torch.equal(fresh.conv.weight, torch_model.conv.weight)
    assert sorted(os.listdir(tmp_path)) == ["w.pt"]


class _Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pt"
    payload = {"conv.weight": _Payload(marker)}
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        with open(evil, "wb") as handle:
            pickle.dump(payload, handle)
    _, torch_model, _ = _hand_models(_case("conv1d"))
    with pytest.raises(CnnspecError, match="refusing to load"):
        load_weights_file(torch_model, evil)
    assert not marker.exists()
    # Control: the file really is dangerous under an unsafe load.
    if writer == "torch.save":
        torch.load(evil, weights_only=False)
    else:
        with open(evil, "rb") as handle:
            pickle.load(handle)  # noqa: S301 - the point of the control
    assert marker.read_text() == "code ran"


def test_lazy_top_level_name():
    assert cnnspec.transfer_weights is transfer_weights
