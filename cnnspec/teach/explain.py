"""Explain a plan to a person (a table with the arithmetic) or to a program (JSON).

Nothing here imports a framework; it only reads the :class:`~cnnspec.engine.plan.Plan`.
"""

from __future__ import annotations

from typing import Any

from cnnspec.engine.plan import LayerPlan, Plan, channels_last


def _shape_text(shape) -> str:
    return "×".join(str(d) for d in shape)


def _padding_text(layer: LayerPlan) -> str:
    if layer.padding is None:
        return ""
    if layer.family == "conv_transpose":
        parts = []
        for before, after in layer.padding:
            text = f"crop {before}+{max(after, 0)}"
            if after < 0:
                text = f"crop {before}, +{-after} at end"
            parts.append(text)
        return f"{layer.padding_mode}: " + ", ".join(parts)
    pads = ", ".join(f"{b}+{a}" for b, a in layer.padding)
    if all(b == 0 and a == 0 for b, a in layer.padding):
        return layer.padding_mode or "valid"
    note = "" if layer.is_symmetric_padding else " (asymmetric)"
    extra = ""
    if layer.ceil_extra and any(layer.ceil_extra):
        extra = " ceil+" + ",".join(str(e) for e in layer.ceil_extra)
    return f"{layer.padding_mode}: {pads}{note}{extra}"


def explain_rows(plan: Plan) -> list[dict[str, str]]:
    """One row of display strings per layer (plus the input row)."""
    first, last = plan.layouts
    rows = [
        {
            "layer": "input",
            "type": "input",
            first: _shape_text(plan.input_shape),
            last: _shape_text(channels_last(plan.input_shape)),
            "padding": "",
            "output size": "",
            "params": "",
            "parameter arithmetic": "",
        }
    ]
    for layer in plan.layers:
        rows.append(
            {
                "layer": layer.name,
                "type": layer.type + (f"+{layer.activation}" if layer.activation else ""),
                first: _shape_text(layer.output_shape),
                last: _shape_text(layer.output_shape_last),
                "padding": _padding_text(layer),
                "output size": "; ".join(dict.fromkeys(layer.size_formulas)),
                "params": f"{layer.total_params:,}" if layer.total_params else "0",
                "parameter arithmetic": layer.param_formula if layer.params else "",
            }
        )
    return rows


def explain_text(plan: Plan) -> str:
    """The learner's table: shapes in both layouts, padding, output-size and parameter arithmetic."""
    rows = explain_rows(plan)
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    numeric = {"params"}

    def line(row: dict[str, str]) -> str:
        cells = [row[c].rjust(widths[c]) if c in numeric else row[c].ljust(widths[c]) for c in columns]
        return "  ".join(cells).rstrip()

    first, last = plan.layouts
    out = [f"model {plan.name}: {plan.rank}-D, input {first} {_shape_text(plan.input_shape)} "
           f"(PyTorch) = {last} {_shape_text(channels_last(plan.input_shape))} (Keras); batch dimension omitted"]
    out.append("")
    out.append(line({c: c for c in columns}))
    out.append("  ".join("-" * widths[c] for c in columns))
    out.extend(line(r) for r in rows)
    out.append("")
    out.append(f"total params: {plan.total_params:,} (trainable {plan.trainable_params:,}, non-trainable {plan.non_trainable_params:,})")
    out.append(f"output: {first} {_shape_text(plan.output_shape)} · {last} {_shape_text(channels_last(plan.output_shape))}")
    notes = _notes(plan)
    if notes:
        out.append("")
        out.extend(f"note: {n}" for n in notes)
    return "\n".join(out) + "\n"


def _notes(plan: Plan) -> list[str]:
    notes: list[str] = []
    if any(layer.family in ("conv", "depthwise_conv", "separable_conv", "pool") and layer.padding_mode == "same"
           and not layer.is_symmetric_padding for layer in plan.layers):
        notes.append(
            "'same' pads the odd cell at the end (TF/ONNX SAME_UPPER); PyTorch's numeric padding is symmetric, "
            "so the torch model pads explicitly there (padding=1 would shift every output by one pixel)."
        )
    if any(layer.family == "flatten" and len(layer.input_shape) > 1 for layer in plan.layers):
        notes.append(
            "flatten: PyTorch lays the feature map out C,H,W and Keras H,W,C; the next dense layer's rows are "
            "permuted when weights move between the frameworks."
        )
    if any(layer.family == "batch_norm" for layer in plan.layers):
        notes.append(
            "batch_norm: moving mean and variance are counted as non-trainable (Keras' convention); PyTorch keeps "
            "them as buffers (running_mean, running_var) plus num_batches_tracked, which is not a parameter."
        )
    if any(layer.family == "pool" for layer in plan.layers):
        notes.append("pooling has no trainable parameters; padded cells never win a max.")
    return notes


def explain_json(plan: Plan) -> dict[str, Any]:
    """A JSON-ready dict: totals, output shape in both layouts, and per-layer details.

    For 1-D and 3-D models the keys ``NCHW``/``NHWC`` still mean channels-first and
    channels-last (NCL/NLC, NCDHW/NDHWC); ``layouts`` names them exactly.
    """
    first, last = plan.layouts
    layers = []
    for layer in plan.layers:
        entry: dict[str, Any] = {
            "name": layer.name,
            "type": layer.type,
            "inputs": list(layer.inputs),
            "output_shape": {"NCHW": list(layer.output_shape), "NHWC": list(layer.output_shape_last)},
            "params": layer.total_params,
            "trainable_params": layer.trainable_params,
            "non_trainable_params": layer.non_trainable_params,
            "param_formula": layer.param_formula,
            "size_formulas": list(layer.size_formulas),
        }
        if layer.padding is not None:
            entry["padding"] = [list(p) for p in layer.padding]
            entry["padding_mode"] = layer.padding_mode
        if layer.kernel_size is not None:
            entry["kernel_size"] = list(layer.kernel_size)
        if layer.stride is not None:
            entry["stride"] = list(layer.stride)
        layers.append(entry)
    return {
        "name": plan.name,
        "rank": plan.rank,
        "layouts": {"NCHW": first, "NHWC": last},
        "input_shape": {"NCHW": list(plan.input_shape), "NHWC": list(channels_last(plan.input_shape))},
        "output_shape": {"NCHW": list(plan.output_shape), "NHWC": list(channels_last(plan.output_shape))},
        "total_params": plan.total_params,
        "trainable_params": plan.trainable_params,
        "non_trainable_params": plan.non_trainable_params,
        "layers": layers,
    }
