"""The spec's own ONNX graph as a referee beside the two exports.

The referee is emitted straight from the plan (:mod:`cnnspec.targets.onnx.emit`), given the
same weights as the models (read from the model the weights came from) and run by the same
onnxruntime on the same input.  Each model's layer outputs are compared with the referee's:
when PyTorch and Keras disagree, the side that departs from the spec's reference is the one
to fix, and the first layer where it departs is named ("keras agrees with the spec; torch
departs at `down`").
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from cnnspec.engine.plan import LayerPlan, Plan
from cnnspec.verifier.compare import compare_arrays, each_layer, to_channels_first
from cnnspec.verifier.report import RefereeReport


class RefereeUnavailable(Exception):
    """The referee cannot be given the models' weights (a model's tensors are not named like the spec's)."""


def referee_weights(
    plan: Plan, torch_model, keras_model, source: str
) -> tuple[dict[str, np.ndarray], str]:
    """The plan's tensors read from the model the weights came from (``torch`` or ``keras``), else the other.

    Returns:
        The weights by ``<layer>.<tensor>`` name and the framework they were read from.
    """
    from cnnspec.errors import CnnspecError
    from cnnspec.targets.onnx.weights import from_keras_model, from_torch_model

    readers = {
        "torch": lambda: from_torch_model(plan, torch_model),
        "keras": lambda: from_keras_model(plan, keras_model),
    }
    order = [source] + [other for other in readers if other != source]
    reasons = []
    for framework in order:
        try:
            return readers[framework](), framework
        except (CnnspecError, ValueError, KeyError, AttributeError) as error:
            reasons.append(f"{framework}: {error}")
    raise RefereeUnavailable("; ".join(reasons))


def run_referee(
    plan: Plan, weights: dict[str, np.ndarray], x: np.ndarray, graph=None
) -> dict[str, np.ndarray]:
    """Every spec layer's output (channels-first) of the spec's ONNX graph on ``x``.

    ``graph``: an emitted graph that takes ``x``'s size (one graph of open size serves every
    size); default the plan's own.
    """
    from cnnspec.targets.onnx.emit import emit_graph
    from cnnspec.verifier.onnx_export import run_onnx

    graph = graph if graph is not None else emit_graph(plan)
    return dict(zip(graph.layer_names, run_onnx(graph.proto, x, weights)))


@dataclass
class Departure:
    """Where one model's outputs first depart from the reference."""

    layer: str | None = None
    max_abs_diff: float | None = None
    compared: int = 0


def departure(
    plan: Plan,
    outputs: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    *,
    atol: float,
    rtol: float,
) -> Departure:
    """Where channels-first ``outputs`` first depart from the referee's (one side of :func:`judge`)."""
    return _departures(plan, {"side": outputs}, reference, channels_last={}, atol=atol, rtol=rtol)[
        "side"
    ]


def _departures(
    plan: Plan,
    sides: dict[str, dict[str, np.ndarray]],
    reference: dict[str, np.ndarray],
    *,
    channels_last: dict[str, Collection[str]],
    atol: float,
    rtol: float,
) -> dict[str, Departure]:
    """The first layer (spec order) where each side departs from the reference.

    ``sides`` maps a side's name to its outputs, channels-first except for the layers
    ``channels_last`` names for that side (converted as they are reached).  A side departs at a
    layer where it differs from the reference by more than ``atol + rtol·scale``, the scale
    being the layer's largest finite ``|reference|``.

    The referee computes the same float32 numbers in other ops (a BatchNorm as Mul and Add, say),
    so its rounding differs from the frameworks'; deep untrained networks amplify that layer by
    layer, and an element near zero then carries the error of the layer's large values.  Relative
    to the layer's scale, that noise stays within the tolerance (EfficientNetV2-L: activations up
    to ~1e8), while a mistake shared by both frameworks moves values by a share of the scale.
    """

    def departs(layer: LayerPlan) -> dict[str, tuple[bool, float | None]]:
        """Per side holding this layer: whether it departs here, and by how much."""
        present = [side for side, outputs in sides.items() if layer.name in outputs]
        if not present:
            return {}
        expected = reference[layer.name]
        tolerance = None
        verdicts: dict[str, tuple[bool, float | None]] = {}
        for side in present:
            value = sides[side][layer.name]
            if layer.name in channels_last.get(side, ()):
                value = to_channels_first(value, layer)
            if value.shape != expected.shape:
                verdicts[side] = (True, None)
                continue
            if tolerance is None:
                tolerance = _tolerance(expected, atol, rtol)
            if _clearly_close(expected, value, tolerance):
                verdicts[side] = (False, None)
                continue
            # the exact criterion, NaN and infinities included
            stats = compare_arrays(expected, value, tolerance, 0.0, scaled=False)
            verdicts[side] = (not stats["ok"], stats["max_abs_diff"])
        return verdicts

    found = {side: Departure() for side in sides}
    # Every layer is judged (side by side on the cores); each side's first departure counts.
    for layer, verdicts in zip(plan.layers, each_layer(departs, plan.layers)):
        for side, (departed, max_abs_diff) in verdicts.items():
            departure = found[side]
            if departure.layer is not None:
                continue
            departure.compared += 1
            if departed:
                departure.layer, departure.max_abs_diff = layer.name, max_abs_diff
    return found


def _tolerance(expected: np.ndarray, atol: float, rtol: float) -> float:
    """``atol + rtol·scale``, the scale being the largest finite ``|expected|`` (infinities and
    NaN are left to the exact test: an infinite tolerance would let any value pass)."""
    magnitude = np.abs(expected, dtype=np.float32)
    scale = float(magnitude.max(initial=0.0, where=np.isfinite(magnitude)))
    return float(min(atol + rtol * scale, float(np.finfo(np.float32).max)))


def _clearly_close(expected: np.ndarray, value: np.ndarray, tolerance: float) -> bool:
    """``|value - expected| <= tolerance`` everywhere, in a few in-place passes.

    False also for NaN or infinities, which :func:`compare_arrays` then judges exactly.
    """
    difference = np.subtract(value, expected, dtype=np.float32)
    np.abs(difference, out=difference)
    return bool(np.all(difference <= tolerance))


def judge(
    plan: Plan,
    torch_outputs: dict[str, np.ndarray],
    keras_outputs: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    *,
    weights_from: str,
    atol: float,
    rtol: float,
    keras_channels_first: Collection[str] = (),
    torch_departure: Departure | None = None,
) -> RefereeReport:
    """Compare each model with the referee and say which one departs from the spec, and where.

    Args:
        plan: the resolved spec.
        torch_outputs: channels-first arrays by spec layer name (observable layers only).
        keras_outputs: channels-last arrays by spec layer name, except the layers named in
            ``keras_channels_first``, already brought into PyTorch's layout.
        reference: the referee's channels-first arrays of every spec layer.
        weights_from: the model the referee's weights were read from.
        atol: absolute tolerance.
        rtol: relative tolerance.
        torch_departure: torch's :func:`departure`, when it was found elsewhere (by the
            process that ran the PyTorch graph); ``torch_outputs`` is then not read.
    """
    sides = {"keras": keras_outputs}
    if torch_departure is None:
        sides = {"torch": torch_outputs, **sides}
    found = _departures(
        plan,
        sides,
        reference,
        channels_last={"keras": set(keras_outputs) - set(keras_channels_first)},
        atol=atol,
        rtol=rtol,
    )
    torch_side = found["torch"] if torch_departure is None else torch_departure
    keras_side = found["keras"]
    return RefereeReport(
        weights_from=weights_from,
        torch_departs_at=torch_side.layer,
        keras_departs_at=keras_side.layer,
        torch_max_abs_diff=torch_side.max_abs_diff,
        keras_max_abs_diff=keras_side.max_abs_diff,
        torch_layers_compared=torch_side.compared,
        keras_layers_compared=keras_side.compared,
        verdict=verdict_sentence(torch_side.layer, keras_side.layer),
    )


def verdict_sentence(torch_at: str | None, keras_at: str | None) -> str:
    """The referee's finding in one sentence."""
    if torch_at is None and keras_at is None:
        return "torch and keras both agree with the spec's ONNX reference"
    if torch_at is None:
        return f"torch agrees with the spec; keras departs at `{keras_at}`"
    if keras_at is None:
        return f"keras agrees with the spec; torch departs at `{torch_at}`"
    return f"both depart from the spec: torch at `{torch_at}`, keras at `{keras_at}`"


def departing_sides(report: RefereeReport) -> Sequence[str]:
    """The frameworks whose outputs depart from the spec's reference."""
    return [
        side
        for side, at in (("torch", report.torch_departs_at), ("keras", report.keras_departs_at))
        if at
    ]
