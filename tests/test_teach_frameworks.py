"""What explain's notes claim, checked against PyTorch and Keras themselves (not against cnnspec).

* transposed convolution: Keras 'same' crops the full output by SAME_UPPER; PyTorch's padding=p,
  output_padding=op matches it for an even total and is shifted by one cell for an odd one;
* flatten: the worked cell's index in each framework's flattened vector;
* 'same' with stride 2 on an even input: PyTorch padding=1 gives the same size but other windows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cnnspec.teach.explain import explain

pytestmark = pytest.mark.frameworks
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def frameworks():
    torch = pytest.importorskip("torch")
    np = pytest.importorskip("numpy")
    keras = pytest.importorskip("keras")
    return torch, np, keras


def _transposed(frameworks, kernel: int, size: int = 7):
    """(Keras 'same' output, PyTorch full output, PyTorch padding=p/output_padding=op output, p, op), NCHW."""
    torch, np, keras = frameworks
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, size, size, 2)).astype("float32")  # NHWC
    layer = keras.layers.Conv2DTranspose(3, kernel, strides=2, padding="same", use_bias=False)
    keras_out = np.asarray(layer(x)).transpose(0, 3, 1, 2)
    weight = torch.from_numpy(np.asarray(layer.kernel).transpose(3, 2, 0, 1).copy())  # (k, k, O, I) -> (I, O, k, k)
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    overlap = kernel - 2
    p = -(-overlap // 2)
    op = 2 * p - overlap
    with torch.no_grad():
        full = torch.nn.functional.conv_transpose2d(x_torch, weight, stride=2).numpy()
        padded = torch.nn.functional.conv_transpose2d(x_torch, weight, stride=2, padding=p, output_padding=op).numpy()
    return keras_out, full, padded, p, op


def test_transposed_same_odd_total_is_shifted_in_pytorch(frameworks):
    _, np, _ = frameworks
    keras_out, full, padded, p, op = _transposed(frameworks, kernel=3)
    assert (p, op) == (1, 1) and keras_out.shape == padded.shape == (1, 3, 14, 14)
    np.testing.assert_allclose(keras_out, full[:, :, 0:14, 0:14], atol=1e-5)  # Keras: 0 before, 1 after
    np.testing.assert_allclose(padded, full[:, :, 1:15, 1:15], atol=1e-5)    # PyTorch: 1 before, 0 after
    assert not np.allclose(keras_out, padded, atol=1e-3)
    notes = " ".join(n["text"] for n in explain(_one_transposed(3)).to_dict()["notes"])
    assert "padding=1, output_padding=1" in notes and "0 before, 1 after" in notes and "shifted by one cell" in notes


def test_transposed_same_even_total_matches_pytorch(frameworks):
    _, np, _ = frameworks
    keras_out, _, padded, p, op = _transposed(frameworks, kernel=4)
    assert (p, op) == (1, 0)
    np.testing.assert_allclose(keras_out, padded, atol=1e-5)
    notes = " ".join(n["text"] for n in explain(_one_transposed(4)).to_dict()["notes"])
    assert "padding=1, output_padding=0, which crops the same cells" in notes


def _one_transposed(kernel: int) -> dict:
    return {"cnnspec": 1, "name": "t", "input": {"channels": 2, "size": [7, 7]},
            "layers": [{"type": "conv_transpose2d", "filters": 3, "kernel_size": kernel, "stride": 2,
                        "padding": "same", "bias": False}]}


@pytest.mark.parametrize("shape", [(128, 3, 3), (8, 8, 8), (2, 2, 2), (3, 1, 1)])
def test_flatten_worked_cell_is_where_each_framework_puts_it(frameworks, shape):
    """The worked cell of the flatten note sits where each framework's Flatten puts it, and shows
    them apart -- also on a cube (8×8×8), where the all-ones cell sits at 73 in both."""
    torch, np, keras = frameworks
    spec = {"cnnspec": 1, "name": "f", "input": {"channels": shape[0], "size": list(shape[1:])},
            "layers": [{"type": "flatten"}, {"type": "dense", "units": 2}]}
    order = explain(spec).to_dict()["layers"][0]["flatten_order"]
    c, h, w = order["cell"]["c"], order["cell"]["h"], order["cell"]["w"]
    feature_map = np.arange(math.prod(shape), dtype="float32").reshape(shape) + 1000  # distinct values
    torch_vector = torch.nn.Flatten()(torch.from_numpy(feature_map[None])).numpy()[0]
    keras_vector = np.asarray(keras.layers.Flatten()(feature_map.transpose(1, 2, 0)[None]))[0]
    assert torch_vector[order["torch_position"]] == feature_map[c, h, w]
    assert keras_vector[order["keras_position"]] == feature_map[c, h, w]
    if shape[0] > 1 and math.prod(shape[1:]) > 1:  # (3, 1, 1): one order in both
        assert order["torch_position"] != order["keras_position"]


def test_same_stride2_against_pytorch_padding_1(frameworks):
    """The note: PyTorch padding=1 keeps 16×16 but every window starts one cell earlier than Keras 'same'."""
    torch, np, keras = frameworks
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 32, 32, 3)).astype("float32")
    layer = keras.layers.Conv2D(4, 3, strides=2, padding="same", use_bias=False)
    keras_out = np.asarray(layer(x)).transpose(0, 3, 1, 2)
    weight = torch.from_numpy(np.asarray(layer.kernel).transpose(3, 2, 0, 1).copy())
    x_torch = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        symmetric = torch.nn.functional.conv2d(x_torch, weight, stride=2, padding=1).numpy()
        end_padded = torch.nn.functional.pad(x_torch, (0, 1, 0, 1))  # W then H: 0 before, 1 after
        end_padded = torch.nn.functional.conv2d(end_padded, weight, stride=2).numpy()
    assert symmetric.shape == keras_out.shape == (1, 4, 16, 16)
    assert not np.allclose(symmetric, keras_out, atol=1e-3)
    np.testing.assert_allclose(end_padded, keras_out, atol=1e-5)  # 0 before, 1 after, as the table says
    table = explain(ROOT / "examples" / "same_stride2.yaml").text()
    assert "total (16 − 1)·2 + 3 − 32 = 1 → 0 before, 1 after" in table
