"""Framework-free definitions of the model-zoo catalog: broadcasting, shuffle, pad/crop, resize taps.

References are NumPy's own functions (broadcasting, np.pad), not cnnspec's output.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnnspec.engine import resample
from cnnspec.engine.channels import (
    broadcast_shapes,
    channel_shuffle_permutation,
    cropped_length,
    pad_source_index,
    padded_length,
)
from cnnspec.engine.plan import resolve
from cnnspec.errors import SpecError


@pytest.mark.parametrize(
    "shapes",
    [
        [(4, 5, 6), (4, 5, 6)],
        [(4, 5, 6), (4, 1, 1)],
        [(4, 1, 1), (4, 5, 6)],
        [(4, 5, 6), (1, 5, 6)],
        [(4, 1, 1), (1, 5, 6)],
        [(4, 7), (4, 1), (4, 7)],
        [(3, 2, 2, 2), (3, 1, 1, 1)],
        [(8,), (8,)],
        [(8,), (1,)],
    ],
)
def test_broadcast_is_numpy_broadcasting(shapes):
    assert broadcast_shapes(shapes) == np.broadcast_shapes(*shapes)


def test_flat_channel_vector_gates_a_feature_map():
    assert broadcast_shapes([(16, 7, 7), (16,)]) == (16, 7, 7)
    assert broadcast_shapes([(16,), (16, 3)]) == (16, 3)
    # NumPy would align (16,) with the last axis (width); the spec aligns it with channels.
    with pytest.raises(ValueError):
        np.broadcast_shapes((16, 7, 7), (16,))


@pytest.mark.parametrize(
    "shapes,word",
    [
        ([(4, 5, 6), (3, 5, 6)], "channels"),
        ([(4, 5, 6), (4, 4, 6)], "spatial axis 1"),
        ([(4, 5, 6), (4, 5)], "ranks"),
        ([(16, 7, 7), (8,)], "channels"),
    ],
)
def test_broadcast_errors_name_the_axis(shapes, word):
    with pytest.raises(ValueError, match=word):
        broadcast_shapes(shapes)


def test_broadcast_holds_after_moving_channels_last():
    """Deciding broadcasting channels-first is the same as channels-last: axes are only permuted."""
    for shapes in ([(4, 5, 6), (4, 1, 1)], [(4, 1, 6), (1, 5, 1)], [(2, 3, 1, 5), (1, 1, 4, 5)]):
        first = broadcast_shapes(shapes)
        last = np.broadcast_shapes(*[shape[1:] + shape[:1] for shape in shapes])
        assert last == first[1:] + first[:1]


def test_channel_shuffle_permutation_is_a_permutation():
    for channels, groups in [(8, 2), (24, 3), (7, 7), (5, 1)]:
        permutation = channel_shuffle_permutation(channels, groups)
        assert sorted(permutation) == list(range(channels))
        grid = np.arange(channels).reshape(groups, channels // groups)
        assert permutation == grid.T.reshape(-1).tolist()
    with pytest.raises(ValueError, match="divisible"):
        channel_shuffle_permutation(8, 3)


@pytest.mark.parametrize(
    "mode,numpy_mode", [("reflect", "reflect"), ("replicate", "edge"), ("constant", "constant")]
)
def test_pad_indices_are_numpy_pad(mode, numpy_mode):
    for size, before, after in [(5, 2, 3), (3, 2, 0), (1, 0, 0), (4, 3, 3)]:
        if mode == "reflect" and max(before, after) >= size:
            with pytest.raises(ValueError, match="smaller than the input"):
                padded_length(size, before, after, mode)
            continue
        row = np.arange(1.0, size + 1.0)
        reference = np.pad(row, (before, after), mode=numpy_mode)
        assert padded_length(size, before, after, mode) == len(reference)
        ours = [
            0.0 if (j := pad_source_index(k, size, mode)) is None else row[j]
            for k in range(-before, size + after)
        ]
        assert ours == reference.tolist()


def test_crop_leaves_something():
    assert cropped_length(10, 1, 0) == 9
    with pytest.raises(ValueError, match="leaves nothing"):
        cropped_length(4, 2, 2)


def test_resize_taps_sum_to_one_and_stay_inside():
    for size, out in [(5, 7), (7, 5), (1, 4), (33, 65), (4, 1)]:
        for mode in resample.RESIZE_MODES:
            for align_corners in (False, True):
                if mode.startswith("nearest") and align_corners:
                    continue
                for exclude_outside in (False, True):
                    taps = resample.interpolation_taps(
                        size, out, mode, align_corners, exclude_outside=exclude_outside
                    )
                    assert len(taps) == out
                    for cell in taps:
                        assert abs(sum(w for _, w in cell) - 1.0) < 1e-12
                        assert all(0 <= j < size for j, _ in cell)


def test_resize_published_figures():
    # LR-ASPP's 33 -> 65 bilinear (half-pixel): output 0 reads cell 0 only, output 1 reads 0 and 1.
    taps = resample.interpolation_taps(33, 65, "linear")
    assert taps[0] == [(0, 1.0), (1, 0.0)]  # x = 0.5·33/65 − 0.5 < 0 is clamped to 0
    assert [j for j, _ in taps[1]] == [0, 1]
    assert resample.scaled_size(7, 1.5) == 10 and resample.scaled_size(33, 8) == 264
    # Keys' kernel: W(0) = 1, W(1) = W(2) = 0; at 1/2 it is (a + 2)/8 - (a + 3)/4 + 1.
    for a in (resample.TORCH_CUBIC_COEFFICIENT, resample.TF_CUBIC_COEFFICIENT):
        assert resample.keys_cubic_weight(0, a) == 1 and resample.keys_cubic_weight(1, a) == 0
        assert resample.keys_cubic_weight(2, a) == 0
        assert resample.keys_cubic_weight(0.5, a) == pytest.approx((a + 2) / 8 - (a + 3) / 4 + 1)


def test_instance_norm_over_a_single_cell_is_refused_where_torch_refuses_it():
    """PyTorch raises on instance norm over one cell at run time; the planner refuses it first, at the layer."""
    spec = {
        "cnnspec": 1,
        "input": {"channels": 2, "size": [3, 3]},
        "layers": [{"type": "max_pool2d", "pool_size": 3}, {"type": "instance_norm", "name": "norm"}],
    }
    with pytest.raises(SpecError) as error:
        resolve(spec)
    assert error.value.problems[0].path[:2] == ("layers", 1) and "single cell" in str(error.value)
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        torch.nn.functional.instance_norm(torch.zeros(1, 2, 1, 1))
    assert torch.nn.functional.instance_norm(torch.ones(1, 2, 1, 2)).shape == (1, 2, 1, 2)
