"""Compare the two models' layer outputs and parameter counts (numpy only, no framework import).

Layer outputs arrive as onnxruntime produced them: PyTorch's channels-first, Keras'
channels-last.  Each Keras output is brought into the channels-first layout before the
comparison: feature maps by moving the channel axis, flat vectors by the inverse of
:func:`cnnspec.weights.flat_permutation` over the layer's ``flat_segments`` (PyTorch
flattens C,H,W, Keras H,W,C).

The pass criterion of one element is NumPy's ``allclose``:
``|keras - torch| <= atol + rtol * |torch|``, with NaN equal only to NaN at the same place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from cnnspec.engine.plan import LayerPlan, Plan

from cnnspec.verifier.report import DEFAULT_ATOL, DEFAULT_RTOL  # noqa: F401 - re-exported: the defaults live with the report


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


def to_channels_first(keras_output: np.ndarray, layer: LayerPlan) -> np.ndarray:
    """A Keras layer output (batch first, channels last) in PyTorch's layout and order."""
    array = np.asarray(keras_output)
    if len(layer.output_shape) > 1:
        return np.moveaxis(array, -1, 1)
    if layer.flat_segments and any(len(segment) > 1 for segment in layer.flat_segments):
        from cnnspec.weights.transfer import flat_permutation

        perm = flat_permutation(layer.flat_segments)
        return array[..., np.argsort(perm)]
    return array


def _shape_of(array: np.ndarray | None) -> tuple[int, ...] | None:
    return None if array is None else tuple(int(d) for d in array.shape[1:])


def compare_arrays(torch_array: np.ndarray, keras_array: np.ndarray, atol: float, rtol: float) -> dict:
    """Differences between two same-shaped arrays (keras already in torch's layout).

    Returns:
        ``max_abs_diff``, ``mean_abs_diff``, ``max_rel_diff`` (over elements with
        ``|torch| >= atol``, where a relative error means something), ``worst_index`` and
        ``ok`` (the ``allclose`` criterion).
    """
    # float32 is what both graphs computed in; the rounding of |t - k| itself is ~1e-7 relative.
    t = np.asarray(torch_array, dtype=np.float32)
    k = np.asarray(keras_array, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(t - k)
    undefined = np.isnan(diff)
    if undefined.any():
        same = (np.isnan(t) & np.isnan(k)) | (t == k)  # NaN at the same place, or the same infinity
        diff[undefined & same] = 0.0
        diff[undefined & ~same] = np.inf  # NaN on one side only
    size = diff.size
    if size == 0:
        return dict(max_abs_diff=0.0, mean_abs_diff=0.0, max_rel_diff=0.0, worst_index=None, ok=True, border_only=None)
    flat_worst = int(np.argmax(diff))
    max_abs = float(diff.reshape(-1)[flat_worst])
    magnitude = np.abs(t)
    meaningful = (magnitude >= atol) & (magnitude > 0) & np.isfinite(magnitude)
    max_rel = float(np.max(diff[meaningful] / magnitude[meaningful])) if meaningful.any() else 0.0
    within = np.isfinite(diff) & (diff <= atol + rtol * np.where(np.isfinite(magnitude), magnitude, 0.0))
    border_only = None
    if diff.ndim > 2 and not within.all():
        failing = ~within
        interior = failing[(slice(None), slice(None)) + tuple(slice(1, -1) for _ in diff.shape[2:])]
        border_only = not interior.any()
    return dict(
        border_only=border_only,
        max_abs_diff=max_abs,
        mean_abs_diff=float(np.mean(diff, dtype=np.float64)) if np.isfinite(max_abs) else float("inf"),
        max_rel_diff=max_rel,
        worst_index=tuple(int(i) for i in np.unravel_index(flat_worst, diff.shape)),
        ok=bool(np.all(within)),
    )


def compare_layers(plan: Plan, torch_outputs: dict[str, np.ndarray], keras_outputs: dict[str, np.ndarray], *,
                   atol: float, rtol: float) -> list[LayerDiff]:
    """Compare every spec layer's output (spec order).

    Args:
        plan: the resolved spec.
        torch_outputs: channels-first arrays by spec layer name (missing = not observable).
        keras_outputs: channels-last arrays by spec layer name (missing = not observable).
        atol: absolute tolerance.
        rtol: relative tolerance.

    Returns:
        One :class:`LayerDiff` per spec layer.  ``ok`` is None when a layer could not be
        observed in both graphs; ``shape_ok`` checks each observed side against the plan.
    """
    results = []
    for layer in plan.layers:
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
            name=layer.name, type=layer.type, family=layer.family, expected_shape=expected, expected_shape_last=expected_last,
            torch_shape=torch_shape, keras_shape=keras_shape, shape_ok=shape_ok,
        )
        if torch_array is None or keras_array is None:
            missing = [side for side, a in (("torch", torch_array), ("keras", keras_array)) if a is None]
            diff.note = f"not observable in the {' and '.join(missing)} graph"
            if shape_ok is False:
                diff.ok = False
        elif not shape_ok or torch_array.shape[0] != keras_array.shape[0]:
            diff.ok = False
            diff.note = "output shape differs from the plan"
        else:
            stats = compare_arrays(torch_array, to_channels_first(keras_array, layer), atol, rtol)
            diff.max_abs_diff = stats["max_abs_diff"]
            diff.mean_abs_diff = stats["mean_abs_diff"]
            diff.max_rel_diff = stats["max_rel_diff"]
            diff.worst_index = stats["worst_index"]
            diff.ok = stats["ok"]
            diff.border_only = stats["border_only"]
        results.append(diff)
    return results


def first_divergent(diffs: Sequence[LayerDiff]) -> LayerDiff | None:
    """The first layer in spec order whose outputs (or shapes) disagree."""
    for diff in diffs:
        if diff.ok is False:
            return diff
    return None


# --------------------------------------------------------------------------------------
# Hints
# --------------------------------------------------------------------------------------


def divergence_hint(diff: LayerDiff, layer: LayerPlan, plan: Plan | None = None) -> str:
    """What typically makes this layer type differ between PyTorch and Keras."""
    family = layer.family
    if diff.shape_ok is False:
        return ("the output shape is not the planned one: check padding ('same' vs numbers), stride, ceil_mode, "
                "output_padding and dilation of this layer")
    strided = layer.stride is not None and any(s > 1 for s in layer.stride)
    border = (" Only border cells differ, which points at padding." if diff.border_only else "")
    if family in ("conv", "depthwise_conv", "separable_conv"):
        layout = ("kernel layout (PyTorch OIHW vs Keras HWIO; depthwise (C·m,1,kh,kw) vs (kh,kw,C,m)), the weights "
                  "themselves, groups, dilation, bias, or the inline activation")
        if layer.padding_mode == "same" and strided:
            pads = ", ".join(f"{b}/{a}" for b, a in layer.padding)
            return ("typical causes: (1) padding 'same' with stride > 1 pads asymmetrically (TF/ONNX SAME_UPPER puts the "
                    f"extra cell at the end, here {pads} before/after), so a symmetric PyTorch padding=k//2 shifts every "
                    f"window by one cell; (2) {layout}." + border)
        if not layer.is_symmetric_padding:
            return ("typical causes: (1) asymmetric padding must be explicit zero padding before a 'valid' convolution; "
                    f"(2) {layout}." + border)
        return f"typical causes: {layout}." + border
    if family == "conv_transpose":
        return ("transposed conv: the crop of the full output ((in−1)·stride + k), output_padding at the end, and the kernel "
                "layout (PyTorch IOHW vs Keras HWOI, spatially not flipped)." + border)
    if family == "pool":
        return ("pooling: ceil_mode, count_include_pad, and padded cells — they must never win a max nor count in an average "
                "unless count_include_pad." + border)
    if family == "global_pool":
        return "global pooling: mean vs max, and keepdims."
    if family == "batch_norm":
        return ("BatchNorm: epsilon (PyTorch's default 1e-5, Keras' 1e-3), the moving mean/variance transferred as "
                "non-trainable weights, gamma/beta order, or the model not in inference mode.")
    if family == "flatten":
        return ("flatten order: PyTorch flattens C,H,W and Keras H,W,C; a Permute/transpose before Flatten, or dense rows not "
                "permuted by flat_segments, breaks it.")
    if family == "dense":
        source = plan.layer(layer.inputs[0]) if plan is not None and layer.inputs[0] != "input" else None
        if source is not None and source.flat_segments and any(len(s) > 1 for s in source.flat_segments):
            return "dense after a flattened feature map: the kernel rows must be permuted from C,H,W to H,W,C order."
        return "dense: kernel (out, in) in PyTorch vs (in, out) in Keras, the bias, or the inline activation."
    if family == "activation":
        return ("activation definition: hard_sigmoid is clip(x/6 + 1/2) (old Keras used 0.2x + 0.5), GELU exact vs tanh, "
                "LeakyReLU slope (PyTorch 0.01, Keras 0.3 default), ELU alpha, softmax axis (channels).")
    if family == "prelu":
        return "PReLU: per-channel vs one shared slope, and the slopes transferred."
    if family == "upsample":
        return "upsampling: bilinear needs half-pixel centres (PyTorch align_corners=False); nearest vs bilinear."
    if family == "zero_pad":
        return "zero padding: the (before, after) order per spatial axis."
    if family == "merge":
        return "merge: concat must join the channel axis (PyTorch dim 1, Keras axis −1), inputs in the spec's order."
    if family == "dropout":
        return "dropout must be the identity at inference (PyTorch eval(), Keras training=False)."
    return "compare this layer's definition in both models."


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
    """PyTorch: parameters (trainable = requires_grad) and BatchNorm running mean/var buffers (non-trainable).

    ``num_batches_tracked`` is a counter, not a parameter, and is excluded.
    """
    trainable = non_trainable = 0
    for parameter in model.parameters():
        if parameter.requires_grad:
            trainable += parameter.numel()
        else:
            non_trainable += parameter.numel()
    other = 0
    for name, buffer in model.named_buffers():
        if name.rsplit(".", 1)[-1] in _TORCH_STAT_BUFFERS:
            non_trainable += buffer.numel()
        elif buffer.is_floating_point():
            other += buffer.numel()
    notes = ["parameters; non-trainable = BN running_mean/var buffers (num_batches_tracked excluded)"]
    if other:
        notes.append(f"{other:,} elements of other floating-point buffers not counted")
    return Count(trainable, non_trainable, notes)


def keras_counts(model) -> Count:
    """Keras: ``trainable_weights`` and ``non_trainable_weights`` (BatchNorm moving statistics)."""

    def size(variables) -> int:
        return int(sum(int(np.prod(v.shape)) for v in variables))

    return Count(size(model.trainable_weights), size(model.non_trainable_weights), ["trainable_weights / non_trainable_weights"])


def reconcile_onnx(elements: int, op_counts: dict[str, int], source: str, plan: Plan, weights: int | None = None) -> Count:
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
            count.notes.append(f"plus {elements - weights:,} elements of graph constants (e.g. resize scales)")
        count.ok = True
        return count
    if elements == total:
        count.trainable, count.non_trainable = plan.trainable_params, plan.non_trainable_params
        count.notes.append(f"{elements:,} float initializer elements = spec total exactly")
        count.ok = True
        return count
    count.notes.append(f"{elements:,} float initializer elements ({elements - total:+,} vs the spec's {total:,}); informational")
    batch_norms = sum(layer.family == "batch_norm" for layer in plan.layers)
    folded = batch_norms - op_counts.get("BatchNormalization", 0)
    if folded > 0:
        count.notes.append(f"{folded} of {batch_norms} BatchNorm layers folded into the convolution before them "
                           "(4·C statistics become a C bias)")
    if op_counts.get("Resize", 0) or op_counts.get("Upsample", 0):
        count.notes.append("resize scales are stored as initializers")
    if not folded:
        count.notes.append("exporter constants (e.g. reshape/slope/pad values) and shared identical tensors change the count")
    return count
