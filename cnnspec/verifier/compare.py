"""Compare the two models' layer outputs and parameter counts (numpy only, no framework import).

Layer outputs arrive as onnxruntime produced them: PyTorch's channels-first, Keras'
channels-last.  Each Keras output is brought into the channels-first layout before the
comparison: feature maps by moving the channel axis, flat vectors by the inverse of
:func:`cnnspec.weights.flat_permutation` over the layer's ``flat_segments`` (PyTorch
flattens C,H,W, Keras H,W,C).

The pass criterion of one element is NumPy's ``allclose``:
``|keras - torch| <= atol + rtol * |torch|``, with NaN equal only to NaN at the same place --
except that on a layer whose values are large (root mean square ``s`` above 1) ``atol`` is taken
relative to them, ``atol * s``: float32 rounding grows with the values (an untrained
Inception v3 reaches 1e11, where an element that cancels to 1e9 legitimately differs by 1e5).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from cnnspec.engine.plan import LayerPlan, Plan
from cnnspec.verifier.report import DEFAULT_ATOL, DEFAULT_RTOL  # noqa: F401 - re-exported: the defaults live with the report

Item = TypeVar("Item")
Result = TypeVar("Result")


def each_layer(work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """``[work(item) for item in items]``, run on the machine's cores (at most four threads).

    NumPy releases the GIL inside its array operations, so layers are compared side by side;
    the results keep the items' order.
    """
    items = list(items)
    threads = min(
        4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    if threads < 2 or len(items) < 2:
        return [work(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(work, items))


@dataclass
class LayerDiff:
    """The comparison of one spec layer's output in the two graphs."""

    name: str
    type: str
    family: str
    expected_shape: tuple[int, ...]
    expected_shape_last: tuple[int, ...]
    torch_shape: tuple[int, ...] | None
    keras_shape: tuple[int, ...] | None
    shape_ok: bool | None
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    max_rel_diff: float | None = None
    worst_index: tuple[int, ...] | None = None
    border_only: bool | None = None
    ok: bool | None = None
    note: str | None = None
    # The root mean square of torch's output: the scale of the values the differences are set against.
    scale: float | None = None
    # Which reading of a hand-written model agreed best: "output" (the part's output as it is) or
    # "activated" (the spec's inline activation applied after it); None for a model built from the spec.
    torch_reading: str | None = None
    keras_reading: str | None = None
    misaligned: bool = False
    # The channels-first arrays that were compared (for the hypothesis checks of a divergent layer).
    torch_value: np.ndarray | None = field(default=None, repr=False)
    keras_value: np.ndarray | None = field(default=None, repr=False)


def to_channels_first(keras_output: np.ndarray, layer: LayerPlan) -> np.ndarray:
    """A Keras layer output (batch first, channels last) in PyTorch's layout and order (a contiguous copy
    for feature maps and permuted flat vectors)."""
    array = np.asarray(keras_output)
    if len(layer.output_shape) > 1:
        return channels_last_to_first(array)
    if layer.flat_segments and any(len(segment) > 1 for segment in layer.flat_segments):
        from cnnspec.weights.transfer import flat_permutation

        perm = flat_permutation(layer.flat_segments)
        return array[..., np.argsort(perm)]
    return array


# Elements per tile of the transposition below: the tile and its copy stay in the CPU's cache.
_TILE_ELEMENTS = 1 << 14


def channels_last_to_first(array: np.ndarray) -> np.ndarray:
    """``(N, *spatial, C)`` -> a contiguous ``(N, C, *spatial)`` copy, an exact move of every element.

    NumPy copies a transposed view element by element across the whole array (5-8 ns per element
    for a ResNet feature map); copying it tile by tile keeps each tile in cache (1-2 ns).
    """
    array = np.asarray(array)
    if array.ndim < 3:
        return np.ascontiguousarray(np.moveaxis(array, -1, 1)) if array.ndim == 2 else array
    batch, channels = array.shape[0], array.shape[-1]
    spatial = array.shape[1:-1]
    if array.size < 4 * _TILE_ELEMENTS or channels == 1:
        return np.ascontiguousarray(np.moveaxis(array, -1, 1))
    positions = array.size // (batch * channels)
    source = array.reshape(batch, positions, channels)
    result = np.empty((batch, channels, positions), dtype=array.dtype)
    step = max(8, _TILE_ELEMENTS // channels)
    for sample in range(batch):
        for start in range(0, positions, step):
            result[sample, :, start : start + step] = source[sample, start : start + step].T
    return result.reshape(batch, channels, *spatial)


def _shape_of(array: np.ndarray | None) -> tuple[int, ...] | None:
    return None if array is None else tuple(int(d) for d in array.shape[1:])


def compare_arrays(
    torch_array: np.ndarray,
    keras_array: np.ndarray,
    atol: float,
    rtol: float,
    *,
    scaled: bool = True,
) -> dict:
    """Differences between two same-shaped arrays (keras already in torch's layout).

    Returns:
        ``max_abs_diff``, ``mean_abs_diff``, ``max_rel_diff`` (over elements with
        ``|torch| >= atol``, where a relative error means something), ``worst_index``,
        ``scale`` (the root mean square of torch's finite values) and ``ok`` (the ``allclose``
        criterion, ``atol`` multiplied by the scale where that exceeds 1, unless not
        ``scaled``: the caller's tolerance already follows the values).
    """
    # float32 is what both graphs computed in; the rounding of |t - k| itself is ~1e-7 relative.
    t = np.asarray(torch_array, dtype=np.float32)
    k = np.asarray(keras_array, dtype=np.float32)
    if t.size == 0:
        return dict(
            max_abs_diff=0.0,
            mean_abs_diff=0.0,
            max_rel_diff=0.0,
            worst_index=None,
            ok=True,
            border_only=None,
            scale=0.0,
        )
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.subtract(t, k)
    np.abs(diff, out=diff)
    flat_worst = int(np.argmax(diff))
    max_abs = float(diff.reshape(-1)[flat_worst])
    if not np.isfinite(max_abs):  # NaN or infinity somewhere: the general path
        return _compare_with_specials(t, k, diff, atol, rtol, scaled)
    # Every difference is finite, so are both arrays (inf - x and NaN - x are not finite).
    scale = _root_mean_square(t)
    atol = _scaled_atol(atol, scale) if scaled else atol
    magnitude = np.abs(t)
    # The relative error over elements with |t| >= atol (and > 0): the others divide by infinity.
    meaningful = magnitude >= atol if atol > 0 else magnitude > 0
    relative = np.where(meaningful, magnitude, np.float32(np.inf))
    with np.errstate(over="ignore"):
        max_rel = float(np.max(np.divide(diff, relative, out=relative)))
    bound = np.multiply(magnitude, rtol, out=magnitude)
    bound += atol  # atol + rtol * |t|, in float32 as allclose computes it for float32 arrays
    within = diff <= bound
    return _stats(diff, within, flat_worst, max_abs, max_rel, scale)


def _scaled_atol(atol: float, scale: float) -> float:
    """``atol`` times the layer's scale where that exceeds 1 (within float32's range)."""
    return min(atol * max(1.0, scale), float(np.finfo(np.float32).max))


def _root_mean_square(values: np.ndarray) -> float:
    """sqrt(mean(values²)), summed in float64 (float32 squares overflow above 1.8e19) a slice at a time."""
    flat = values.reshape(-1)
    total = 0.0
    for start in range(0, flat.size, 1 << 20):
        piece = flat[start : start + (1 << 20)].astype(np.float64)
        total += float(np.dot(piece, piece))
    return float(np.sqrt(total / flat.size)) if flat.size else 0.0


def _compare_with_specials(
    t: np.ndarray, k: np.ndarray, diff: np.ndarray, atol: float, rtol: float, scaled: bool
) -> dict:
    """:func:`compare_arrays` where NaN or infinities occur: NaN equals NaN at the same place."""
    undefined = np.isnan(diff)
    if undefined.any():
        same = (np.isnan(t) & np.isnan(k)) | (t == k)  # NaN at the same place, or the same infinity
        diff[undefined & same] = 0.0
        diff[undefined & ~same] = np.inf  # NaN on one side only
    finite = t[np.isfinite(t)]
    scale = _root_mean_square(finite)
    atol = _scaled_atol(atol, scale) if scaled else atol
    flat_worst = int(np.argmax(diff))
    max_abs = float(diff.reshape(-1)[flat_worst])
    magnitude = np.abs(t)
    meaningful = (magnitude >= atol) & (magnitude > 0) & np.isfinite(magnitude)
    with np.errstate(over="ignore"):
        max_rel = (
            float(np.max(diff[meaningful] / magnitude[meaningful])) if meaningful.any() else 0.0
        )
    within = np.isfinite(diff) & (
        diff <= atol + rtol * np.where(np.isfinite(magnitude), magnitude, 0.0)
    )
    return _stats(diff, within, flat_worst, max_abs, max_rel, scale)


def _stats(
    diff: np.ndarray,
    within: np.ndarray,
    flat_worst: int,
    max_abs: float,
    max_rel: float,
    scale: float,
) -> dict:
    ok = bool(np.all(within))
    border_only = None
    if diff.ndim > 2 and not ok:
        failing = ~within
        interior = failing[(slice(None), slice(None)) + tuple(slice(1, -1) for _ in diff.shape[2:])]
        border_only = not interior.any()
    return dict(
        border_only=border_only,
        max_abs_diff=max_abs,
        mean_abs_diff=float(np.mean(diff, dtype=np.float64))
        if np.isfinite(max_abs)
        else float("inf"),
        max_rel_diff=max_rel,
        worst_index=tuple(int(i) for i in np.unravel_index(flat_worst, diff.shape)),
        ok=ok,
        scale=scale,
    )


def compare_layers(
    plan: Plan,
    torch_outputs: dict[str, np.ndarray],
    keras_outputs: dict[str, np.ndarray],
    *,
    atol: float,
    rtol: float,
    torch_readings: bool = False,
    keras_readings: bool = False,
) -> list[LayerDiff]:
    """Compare every spec layer's output (spec order).

    Args:
        plan: the resolved spec.
        torch_outputs: channels-first arrays by spec layer name (missing = not observable).
        keras_outputs: channels-last arrays by spec layer name (missing = not observable).
        atol: absolute tolerance.
        rtol: relative tolerance.
        torch_readings: the torch outputs are read through a hand-written model's parts, which
            may end before the spec's inline activation: compare both readings (see
            :func:`readings`) and keep the one that agrees (or differs least).  The last spec
            layer is always the model's own output and read as it is.
        keras_readings: the same for the Keras outputs.

    Returns:
        One :class:`LayerDiff` per spec layer.  ``ok`` is None when a layer could not be
        observed in both graphs; ``shape_ok`` checks each observed side against the plan.
    """

    def compare_layer(layer: LayerPlan) -> LayerDiff:
        torch_array = torch_outputs.get(layer.name)
        keras_array = keras_outputs.get(layer.name)
        torch_shape, keras_shape = _shape_of(torch_array), _shape_of(keras_array)
        expected, expected_last = tuple(layer.output_shape), tuple(layer.output_shape_last)
        checks = []
        if torch_shape is not None:
            checks.append(torch_shape == expected)
        if keras_shape is not None:
            checks.append(keras_shape == expected_last)
        shape_ok = all(checks) if checks else None
        diff = LayerDiff(
            name=layer.name,
            type=layer.type,
            family=layer.family,
            expected_shape=expected,
            expected_shape_last=expected_last,
            torch_shape=torch_shape,
            keras_shape=keras_shape,
            shape_ok=shape_ok,
        )
        if torch_array is None or keras_array is None:
            missing = [
                side for side, a in (("torch", torch_array), ("keras", keras_array)) if a is None
            ]
            diff.note = f"not observable in the {' and '.join(missing)} graph"
            if shape_ok is False:
                diff.ok = False
        elif not shape_ok or torch_array.shape[0] != keras_array.shape[0]:
            diff.ok = False
            diff.note = "output shape differs from the plan"
        else:
            keras_first = to_channels_first(keras_array, layer)
            torch_read = (
                torch_readings and layer is not plan.layers[-1]
            )  # the last is the model's own output
            keras_read = keras_readings and layer is not plan.layers[-1]
            torch_options = (
                readings(torch_array, layer) if torch_read else [("output", torch_array)]
            )
            keras_options = (
                readings(keras_first, layer) if keras_read else [("output", keras_first)]
            )
            candidates = []
            for torch_label, torch_value in torch_options:
                for keras_label, keras_value in keras_options:
                    stats = compare_arrays(torch_value, keras_value, atol, rtol)
                    candidates.append(
                        (
                            not stats["ok"],
                            stats["max_abs_diff"],
                            torch_label,
                            keras_label,
                            stats,
                            torch_value,
                            keras_value,
                        )
                    )
            _, _, torch_label, keras_label, stats, diff.torch_value, diff.keras_value = min(
                candidates, key=lambda c: (c[0], c[1])
            )
            diff.torch_reading = torch_label if torch_read else None
            diff.keras_reading = keras_label if keras_read else None
            diff.max_abs_diff = stats["max_abs_diff"]
            diff.mean_abs_diff = stats["mean_abs_diff"]
            diff.max_rel_diff = stats["max_rel_diff"]
            diff.worst_index = stats["worst_index"]
            diff.ok = stats["ok"]
            diff.border_only = stats["border_only"]
            diff.scale = stats["scale"]
        return diff

    return each_layer(compare_layer, plan.layers)


def first_divergent(diffs: Sequence[LayerDiff]) -> LayerDiff | None:
    """The first layer in spec order whose outputs (or shapes) disagree (misaligned readings excepted)."""
    for diff in diffs:
        if diff.ok is False and not diff.misaligned:
            return diff
    return None


# --------------------------------------------------------------------------------------
# Readings of a hand-written model
# --------------------------------------------------------------------------------------


def _erf(x: np.ndarray) -> np.ndarray:
    import math

    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - np.max(x, axis=1, keepdims=True))
    return shifted / np.sum(shifted, axis=1, keepdims=True)


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


# The spec's inline activations (spec/models.py InlineActivation), channels-first: softmax on axis 1.
ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "tanh": np.tanh,
    "softmax": _softmax,
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0))),
    "hard_sigmoid": _hard_sigmoid,
    "hard_swish": lambda x: x * _hard_sigmoid(x),
}


def apply_activation(array: np.ndarray, activation: str | None) -> np.ndarray:
    """A spec inline activation applied to a channels-first float32 array (computed in float64)."""
    if activation is None or activation == "linear":
        return array
    with np.errstate(over="ignore", invalid="ignore"):
        return ACTIVATIONS[activation](np.asarray(array, dtype=np.float64)).astype(np.float32)


def readings(array: np.ndarray, layer: LayerPlan) -> list[tuple[str, np.ndarray]]:
    """The ways a hand-written model's part can hold a spec layer's output.

    A port often applies the spec's inline activation in ``forward`` (``F.relu(self.fc1(x))``),
    so the sub-module's output is the layer's output *before* it.  Both readings are returned:
    ``("output", array)`` and, when the layer has an inline activation, ``("activated", act(array))``.
    Explicit padding that the spec applies before a layer (``F.pad`` in ``forward``, a separate
    pad module, or the conv's own ``padding=``) happens before the part and needs no other reading.
    """
    options = [("output", array)]
    activation = getattr(layer, "activation", None)
    if activation not in (None, "linear") and activation in ACTIVATIONS:
        options.append(("activated", apply_activation(array, activation)))
    return options


# --------------------------------------------------------------------------------------
# Hypotheses about a divergent layer, tested on the data
# --------------------------------------------------------------------------------------


@dataclass
class Evidence:
    """One hypothesis about a divergence, and whether the numbers support it."""

    name: str  # "one_cell_shift" or "flatten_permutation"
    holds: bool
    detail: str


def conv_forward(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    stride: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    pads: Sequence[tuple[int, int]],
) -> np.ndarray | None:
    """A convolution in numpy (float64), channels-first, PyTorch's weight layout (O, I/g, *k).

    ``pads`` are (before, after) per spatial axis; negative values crop.  Returns None when
    the computation would be too large to be worth it (the check is then not made).
    """
    from numpy.lib.stride_tricks import sliding_window_view

    x = np.asarray(x, dtype=np.float64)
    weight = np.asarray(weight, dtype=np.float64)
    spatial = x.ndim - 2
    x = np.pad(x, [(0, 0), (0, 0)] + [(max(b, 0), max(a, 0)) for b, a in pads])
    x = x[
        (slice(None), slice(None))
        + tuple(slice(max(-b, 0), x.shape[2 + i] - max(-a, 0)) for i, (b, a) in enumerate(pads))
    ]
    kernel = weight.shape[2:]
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation)]
    if any(size < extent for size, extent in zip(x.shape[2:], span)):
        return None
    windows = sliding_window_view(x, span, axis=tuple(range(2, 2 + spatial)))
    windows = windows[
        (slice(None), slice(None))
        + tuple(slice(None, None, s) for s in stride)
        + tuple(slice(None, None, d) for d in dilation)
    ]
    if windows.size * max(weight.shape[0] // groups, 1) > 2e8:
        return None
    batch, channels = x.shape[:2]
    outputs = weight.shape[0]
    per_group_in, per_group_out = channels // groups, outputs // groups
    out_spatial = windows.shape[2 : 2 + spatial]
    result = np.empty((batch, outputs, *out_spatial))
    window_axes = [1] + list(range(2 + spatial, 2 + 2 * spatial))
    kernel_axes = [1] + list(range(2, 2 + spatial))
    for g in range(groups):
        part = windows[:, g * per_group_in : (g + 1) * per_group_in]
        kernel_part = weight[g * per_group_out : (g + 1) * per_group_out]
        # tensordot -> (N, *out, O/g)
        result[:, g * per_group_out : (g + 1) * per_group_out] = np.moveaxis(
            np.tensordot(part, kernel_part, axes=(window_axes, kernel_axes)), -1, 1
        )
    if bias is not None:
        result += np.asarray(bias, dtype=np.float64).reshape((1, -1) + (1,) * spatial)
    return result


def _close(a: np.ndarray | None, b: np.ndarray | None, atol: float, rtol: float) -> bool:
    if a is None or b is None or tuple(a.shape) != tuple(b.shape):
        return False
    return bool(
        np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), atol=atol, rtol=rtol)
    )


def check_one_cell_shift(
    layer: LayerPlan,
    layer_input: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None,
    groups: int,
    torch_value: np.ndarray,
    keras_value: np.ndarray,
    *,
    atol: float,
    rtol: float,
) -> Evidence | None:
    """Does one model compute this conv on windows shifted by one cell, and the other as the spec says?

    The spec's convolution is recomputed (numpy) from the layer's input and weights, once with the
    spec's padding and once with every window moved one cell towards the start (or the end), which
    is what a symmetric ``padding=k//2`` does where 'same' at stride 2 pads only at the end.

    Returns:
        The evidence, or None when the check cannot be made (no weights, too large).
    """
    if layer.padding is None or layer.stride is None or layer.dilation is None:
        return None
    pads = [tuple(pair) for pair in layer.padding]
    tolerance = dict(atol=10 * atol, rtol=10 * rtol)

    def computed(padding):
        output = conv_forward(
            layer_input, weight, bias, layer.stride, layer.dilation, groups, padding
        )
        return (
            None
            if output is None
            else apply_activation(output.astype(np.float32), layer.activation)
        )

    expected = computed(pads)
    if expected is None:
        return None
    spec_side = [
        side
        for side, value in (("torch", torch_value), ("keras", keras_value))
        if _close(value, expected, **tolerance)
    ]
    for direction, word in ((1, "start"), (-1, "end")):
        shifted_pads = [(b + direction, a - direction) for b, a in pads]
        shifted = computed(shifted_pads)
        for side, value in (("torch", torch_value), ("keras", keras_value)):
            if shifted is None or not _close(value, shifted, **tolerance):
                continue
            other = "keras" if side == "torch" else "torch"
            if other not in spec_side:
                continue
            pads_text = " × ".join(f"({b}, {a})" for b, a in pads)
            shifted_text = " × ".join(f"({b}, {a})" for b, a in shifted_pads)
            detail = (
                f"{side}'s output equals the spec's layer with every window shifted by one cell "
                f"(a one-pixel shift) towards the {word} (padding {shifted_text} instead of {pads_text}), "
                "checked on the data"
            )
            if layer.padding_mode == "same" and direction == 1:
                symmetric_pads = [(b + 1, b + 1) for b, _ in pads]
                if _close(value, computed(symmetric_pads), **tolerance):
                    amounts = sorted({b for b, _ in symmetric_pads})
                    amount = (
                        amounts[0] if len(amounts) == 1 else tuple(b for b, _ in symmetric_pads)
                    )
                    detail += (
                        f": consistent with symmetric padding={amount} where the spec says same "
                        f"(TF/ONNX SAME_UPPER pads {pads_text}, the extra cell at the end)"
                    )
            return Evidence("one_cell_shift", True, detail)
    if len(spec_side) == 1:
        other = "keras" if spec_side[0] == "torch" else "torch"
        checked = (
            f"{spec_side[0]} matches the spec's layer, {other} matches neither it nor a shifted one"
        )
    else:
        checked = "neither model matches the layer recomputed from its input"
    return Evidence(
        "one_cell_shift",
        False,
        f"not a one-cell shift of the windows (checked on the data: {checked})",
    )


def check_flatten_permutation(
    layer: LayerPlan,
    layer_input: np.ndarray,
    segments,
    weight: np.ndarray,
    bias: np.ndarray | None,
    torch_value: np.ndarray,
    keras_value: np.ndarray,
    *,
    atol: float,
    rtol: float,
) -> Evidence | None:
    """Does one model's dense layer read the flattened features in the other order (C,H,W vs H,W,C)?

    ``layer_input`` is the flat input in PyTorch's (C,H,W) order and ``weight`` the (out, in)
    PyTorch kernel; the layer is recomputed with its input as the spec orders it and permuted.
    """
    if not segments or not any(len(segment) > 1 for segment in segments):
        return None
    from cnnspec.weights.transfer import flat_permutation

    perm = flat_permutation(segments)
    if np.array_equal(perm, np.arange(perm.size)):  # 1×1 maps: both orders are the same
        return None
    x = np.asarray(layer_input, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    tolerance = dict(atol=10 * atol, rtol=10 * rtol)

    def computed(features):
        output = features @ w.T + (0.0 if bias is None else np.asarray(bias, dtype=np.float64))
        return apply_activation(output.astype(np.float32), layer.activation)

    expected = computed(x)
    spec_side = [
        side
        for side, value in (("torch", torch_value), ("keras", keras_value))
        if _close(value, expected, **tolerance)
    ]
    for order in (perm, np.argsort(perm)):
        permuted = computed(x[..., order])
        for side, value in (("torch", torch_value), ("keras", keras_value)):
            other = "keras" if side == "torch" else "torch"
            if other in spec_side and _close(value, permuted, **tolerance):
                return Evidence(
                    "flatten_permutation",
                    True,
                    f"{side}'s output equals the spec's layer fed the flattened features in the other "
                    "order (C,H,W vs H,W,C), checked on the data: the kernel rows must be permuted from "
                    "C,H,W to H,W,C order, or the feature map flattened in the spec's order",
                )
    return Evidence(
        "flatten_permutation",
        False,
        "not a flatten-order permutation (checked on the data: permuting the features does not "
        "reproduce either model)",
    )


# --------------------------------------------------------------------------------------
# Hints
# --------------------------------------------------------------------------------------


def divergence_hint(
    diff: LayerDiff, layer: LayerPlan, plan: Plan | None = None, evidence: Evidence | None = None
) -> str:
    """What makes this layer differ between PyTorch and Keras: the tested hypothesis when one was
    checked on the data (see :func:`check_one_cell_shift`, :func:`check_flatten_permutation`),
    else what typically does for this layer type."""
    if evidence is not None and evidence.holds:
        return evidence.detail + "."
    if evidence is not None and evidence.name == "one_cell_shift":
        return (
            f"{evidence.detail}; other causes: kernel layout (PyTorch OIHW vs Keras HWIO), the weights themselves, "
            "groups, dilation, bias, or the inline activation."
        )
    if evidence is not None and evidence.name == "flatten_permutation":
        return (
            f"{evidence.detail}; other causes: the weights themselves, kernel (out, in) in PyTorch vs (in, out) "
            "in Keras, the bias, or the inline activation."
        )
    if diff.shape_ok is False:
        return (
            "the output shape is not the planned one: check padding ('same' vs numbers), stride, ceil_mode, "
            "output_padding and dilation of this layer"
        )
    border = " Only border cells differ, which points at padding." if diff.border_only else ""
    from cnnspec.layers import REGISTRY

    if layer.type not in REGISTRY:
        return "compare this layer's definition in both models."
    return REGISTRY.definition(layer.type).hint(layer, border, plan)


# --------------------------------------------------------------------------------------
# Parameter counts
# --------------------------------------------------------------------------------------


@dataclass
class Count:
    """Parameter elements of one source."""

    trainable: int | None
    non_trainable: int | None
    notes: list[str] = field(default_factory=list)
    ok: bool | None = None

    @property
    def total(self) -> int | None:
        if self.trainable is None or self.non_trainable is None:
            return None
        return self.trainable + self.non_trainable


_TORCH_STAT_BUFFERS = ("running_mean", "running_var")


def torch_counts(model) -> Count:
    """PyTorch: parameters (trainable, frozen or not) and BatchNorm running mean/var buffers (non-trainable),
    plus the Normalize helper's mean/variance/count buffers (Keras Normalization's non-trainable weights).

    ``num_batches_tracked`` is a counter, not a parameter, and is excluded.  A frozen parameter
    (``requires_grad=False``, a fine-tuned model's backbone) is still a parameter: counted as
    trainable, as the spec counts it, and noted.
    """
    # An imported original (importers.pipeline.observed_torch) says which tensors its traced forward uses.
    in_use = getattr(model, "tensors_in_use", None)

    def used(tensor) -> bool:
        return in_use is None or id(tensor) in in_use

    trainable = non_trainable = frozen = uncalled = 0
    for parameter in model.parameters():
        if not used(parameter):
            uncalled += parameter.numel()
            continue
        trainable += parameter.numel()
        if not parameter.requires_grad:
            frozen += parameter.numel()
    other = 0
    for module in model.modules():
        # The Normalize helper stores Keras Normalization's mean, variance and adapt count, which Keras counts.
        stored = ("mean", "variance", "count") if type(module).__name__ == "Normalize" else ()
        for name, buffer in module.named_buffers(recurse=False):
            if not used(buffer):
                uncalled += buffer.numel() if name in _TORCH_STAT_BUFFERS else 0
                continue
            persistent = name not in module._non_persistent_buffers_set
            if name in _TORCH_STAT_BUFFERS or (name in stored and persistent):
                non_trainable += buffer.numel()
            elif buffer.is_floating_point():
                other += buffer.numel()
    notes = [
        "parameters; non-trainable = BN running_mean/var buffers (num_batches_tracked excluded)"
    ]
    if other:
        notes.append(f"{other:,} elements of other floating-point buffers not counted")
    if frozen:
        notes.append(f"{frozen:,} of the trainable are frozen (requires_grad=False)")
    if uncalled:
        notes.append(
            f"{uncalled:,} elements in modules the traced forward does not call, not counted: "
            + ", ".join(getattr(model, "uncalled_modules", []))
        )
    return Count(trainable, non_trainable, notes)


def keras_counts(model) -> Count:
    """Keras: the weights by their kind -- those a layer created trainable (BatchNorm moving
    statistics it did not).  A frozen layer's weights (``layer.trainable = False``, a fine-tuned
    model's base) are in ``non_trainable_weights`` but are still trainable by kind: counted as
    trainable, as the spec counts them, and noted."""

    def size(variables) -> int:
        return int(sum(int(np.prod(v.shape)) for v in variables))

    weights = model.weights
    # Freezing sets variable.trainable to False; the layer's own list keeps what it created trainable.
    by_kind = {id(v) for layer in model._flatten_layers() for v in layer._trainable_variables}
    trainable = [v for v in weights if id(v) in by_kind]
    frozen = size(trainable) - size(model.trainable_weights)
    notes = ["trainable_weights / non_trainable_weights"]
    if frozen:
        notes = [
            "weights by kind (as the layers created them); "
            f"{frozen:,} of the trainable are frozen (layer.trainable = False)"
        ]
    return Count(size(trainable), size(weights) - size(trainable), notes)


def reconcile_onnx(
    elements: int, op_counts: dict[str, int], source: str, plan: Plan, weights: int | None = None
) -> Count:
    """An ONNX graph's floating-point parameter elements, explained against the spec (informational).

    The verifier's graphs take the weights as graph inputs, so their count is the models'
    own; exporters may also store constants (resize scales, slopes) in the graph, fold
    BatchNorm into the convolution before it or share identical tensors, so this count is
    compared with the spec only to explain it, never to fail.

    Args:
        elements: floating-point elements of weight inputs, initializers and constants
            (see ``onnx_export.parameter_counts``).
        op_counts: how many nodes of each op type the graph has.
        source: ``torch_onnx`` or ``keras_onnx``.
        plan: the resolved spec.
        weights: the part of ``elements`` fed as weight inputs, when the graph has them.
    """
    total = plan.total_params
    count = Count(trainable=None, non_trainable=None)
    if weights is not None and weights == total:
        count.trainable, count.non_trainable = plan.trainable_params, plan.non_trainable_params
        count.notes.append(f"{weights:,} float weight-input elements = spec total exactly")
        if elements != weights:
            count.notes.append(
                f"plus {elements - weights:,} elements of graph constants (e.g. resize scales)"
            )
        count.ok = True
        return count
    if elements == total:
        count.trainable, count.non_trainable = plan.trainable_params, plan.non_trainable_params
        count.notes.append(f"{elements:,} float initializer elements = spec total exactly")
        count.ok = True
        return count
    count.notes.append(
        f"{elements:,} float initializer elements ({elements - total:+,} vs the spec's {total:,}); informational"
    )
    batch_norms = sum(layer.family == "batch_norm" for layer in plan.layers)
    folded = batch_norms - op_counts.get("BatchNormalization", 0)
    if folded > 0:
        count.notes.append(
            f"{folded} of {batch_norms} BatchNorm layers folded into the convolution before them "
            "(4·C statistics become a C bias)"
        )
    if op_counts.get("Resize", 0) or op_counts.get("Upsample", 0):
        count.notes.append("resize scales are stored as initializers")
    if not folded:
        count.notes.append(
            "exporter constants (e.g. reshape/slope/pad values) and shared identical tensors change the count"
        )
    return count
