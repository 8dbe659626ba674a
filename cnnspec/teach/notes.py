"""Notes for one model, chosen from its actual layers, rank and numbers."""

from __future__ import annotations

import math
from typing import Any

from cnnspec.engine import shapes as S
from cnnspec.engine.plan import LayerPlan, MultipleNote, Plan
from cnnspec.teach.formulas import axis_names, num, window
from cnnspec.teach.i18n import text

_LAYOUT_LETTERS = {
    1: ("(N, C, L)", "(N, L, C)"),
    2: ("(N, C, H, W)", "(N, H, W, C)"),
    3: ("(N, C, D, H, W)", "(N, D, H, W, C)"),
}


def _note(key: str, layer: str | None, lang: str, **fields) -> dict[str, Any]:
    return {
        "id": key.removeprefix("note_"),
        "layer": layer,
        "text": text(key, lang, layer=layer, **fields),
    }


def model_notes(plan: Plan, records: list[dict[str, Any]], lang: str) -> list[dict[str, Any]]:
    """The notes that apply to ``plan``, each naming its layer and using its numbers."""
    notes = [_layout_note(plan, lang)]
    for finder in (_conv_note, _same_note, _transpose_note, _flatten_note, _global_pool_note):
        note = finder(plan, records, lang)
        if note:
            notes.append(note)
    notes.extend(_pool_notes(plan, lang))
    notes.extend(_open_size_notes(plan, lang))
    if any(layer.family == "batch_norm" for layer in plan.layers):
        notes.append(_note("note_batch_norm", None, lang))
    if any(layer.family == "dropout" for layer in plan.layers):
        notes.append(_note("note_dropout", None, lang))
    dense = sum(layer.total_params for layer in plan.layers if layer.family == "dense")
    if (
        plan.total_params
        and dense * 2 > plan.total_params
        and any(layer.family == "flatten" and len(layer.input_shape) > 1 for layer in plan.layers)
    ):
        share = f"{100 * dense / plan.total_params:.1f}"
        notes.append(
            _note("note_downsample", None, lang, dense_share=share, total=num(plan.total_params))
        )
    return notes


def _layout_note(plan: Plan, lang: str) -> dict[str, Any]:
    torch, keras = _LAYOUT_LETTERS[plan.rank]
    extra = {1: text("note_layout_1d", lang), 3: text("note_layout_3d", lang)}.get(plan.rank, "")
    return _note("note_layout", None, lang, torch=torch, keras=keras, extra=extra)


def _first(plan: Plan, predicate) -> LayerPlan | None:
    return next((layer for layer in plan.layers if predicate(layer)), None)


def _conv_note(plan: Plan, records, lang: str):
    layer = _first(
        plan, lambda conv: conv.family == "conv" and getattr(conv.spec, "groups", 1) == 1
    )
    if layer is None:
        return None
    kernel = "×".join(map(str, window(layer).kernel))
    return _note(
        "note_conv",
        layer.name,
        lang,
        count=layer.output_shape[0],
        kernel=kernel,
        depth=layer.input_shape[0],
    )


def _same_note(plan: Plan, records, lang: str):
    """The first 'same' window whose padding is uneven: where the odd cell goes, and what padding=p would do."""
    for layer in plan.layers:
        if layer.padding_mode != "same" or layer.family not in (
            "conv",
            "depthwise_conv",
            "separable_conv",
            "pool",
        ):
            continue
        names = axis_names(layer.spatial_rank)
        kernel, stride, dilation, pads = window(layer)
        for axis, (n, k, s, d, (b, a), out) in enumerate(
            zip(layer.input_shape[1:], kernel, stride, dilation, pads, layer.output_shape[1:])
        ):
            if b == a:
                continue
            dk = S.effective_kernel(k, d)
            p = a  # the symmetric padding a PyTorch user would reach for
            torch_out = S.conv_output_length(n, k, s, d, p, p)
            if torch_out == out:
                consequence = text("same_shift", lang, out=out)
            else:
                formula = f"⌊({n} + {2 * p} − {dk}) / {s}⌋ + 1 = {torch_out}"
                consequence = text("same_resize", lang, formula=formula, out=out)
            return _note(
                "note_same",
                layer.name,
                lang,
                stride=s,
                axis=names[axis],
                size=n,
                total=a + b,
                split=text("pad_split", lang, before=b, after=a),
                p=p,
                consequence=consequence,
                before=b,
                after=a,
            )
    return None


def _transpose_note(plan: Plan, records, lang: str):
    layer = _first(plan, lambda transposed: transposed.family == "conv_transpose")
    if layer is None:
        return None
    names = axis_names(layer.spatial_rank)
    kernel, stride, dilation, pads = window(layer)
    n, k, s, d = layer.input_shape[1], kernel[0], stride[0], dilation[0]
    dk = S.effective_kernel(k, d)
    full_value = (n - 1) * s + dk
    full = f"({n} − 1)·{s} + {dk} = {num(full_value)}"
    out = layer.output_shape[1]
    before, after = pads[0]
    if layer.padding_mode == "same":
        if dk < s:
            return None
        overlap = dk - s
        p = math.ceil(overlap / 2)
        op = 2 * p - overlap
        split = text("pad_split", lang, before=before, after=after)
        if p == before:
            consequence = text("tr_same_equal", lang)
        else:
            consequence = text(
                "tr_same_shift",
                lang,
                p=p,
                op=op,
                split=text("pad_split", lang, before=p, after=p - op),
            )
        return _note(
            "note_transpose_same",
            layer.name,
            lang,
            stride=s,
            axis=names[0],
            full=full,
            n=n,
            out=out,
            split=split,
            p=p,
            op=op,
            consequence=consequence,
        )
    if layer.padding_mode == "explicit":
        op = (layer.output_padding or (0,))[0]
        formula = f"({n} − 1)·{s} + {dk} − 2·{before}" + (f" + {op}" if op else "") + f" = {out}"
        return _note(
            "note_transpose_explicit",
            layer.name,
            lang,
            p=before,
            full=full,
            op=op,
            formula=formula,
            before=before,
            after=before - op,
        )
    extend = max(-after, 0)
    formula = f"({n} − 1)·{s} + {dk}" + (f" + {extend}" if extend else "") + f" = {out}"
    return _note("note_transpose_valid", layer.name, lang, formula=formula)


def _flatten_note(plan: Plan, records, lang: str):
    record = next((r for r in records if "flatten_order" in r), None)
    if record is None:
        last = next((r for r in records if r.get("flatten_channels_last")), None)
        if last is None:
            return None
        shape = "×".join(map(str, last["input_shapes"][0]["NCHW"]))
        return _note("note_flatten_last", last["name"], lang, shape=shape)
    order = record["flatten_order"]
    cell = "(" + ", ".join(f"{k}={v}" for k, v in order["cell"].items()) + ")"
    shape = "×".join(map(str, record["input_shapes"][0]["NCHW"]))
    return _note(
        "note_flatten",
        record["name"],
        lang,
        shape=shape,
        torch_order=order["torch_order"],
        keras_order=order["keras_order"],
        torch_index=order["torch_index"],
        keras_index=order["keras_index"],
        cell=cell,
        torch_value=order["torch_formula"],
        keras_value=order["keras_formula"],
    )


def _global_pool_note(plan: Plan, records, lang: str):
    for index, layer in enumerate(plan.layers[:-1]):
        flat = layer.family == "global_pool" and len(layer.output_shape) == 1
        if flat and any(later.family == "dense" for later in plan.layers[index + 1 :]):
            axes = ", ".join(axis_names(layer.spatial_rank))
            return _note("note_global_pool", layer.name, lang, axes=axes)
    return None


def _pool_notes(plan: Plan, lang: str) -> list[dict[str, Any]]:
    pools = [layer for layer in plan.layers if layer.family == "pool"]
    if not pools:
        return []
    kinds = []
    if any(layer.type.startswith("max") for layer in pools):
        kinds.append(text("kind_max", lang))
    if any(layer.type.startswith("avg") for layer in pools):
        kinds.append(text("kind_avg", lang))
    notes = [_note("note_pool", None, lang, kinds=text("kind_or", lang).join(kinds))]
    padded = [layer for layer in pools if layer.padding and any(b or a for b, a in layer.padding)]
    max_pool = next((layer for layer in padded if layer.type.startswith("max")), None)
    if max_pool is not None:
        notes.append(_note("note_max_pad", max_pool.name, lang))
    for layer in padded:
        if layer.type.startswith("avg"):
            key = "note_avg_pad_included" if layer.count_include_pad else "note_avg_pad_excluded"
            notes.append(_note(key, layer.name, lang))
            break
    return notes


def _open_size_notes(plan: Plan, lang: str) -> list[dict[str, Any]]:
    """Open input sizes: the first 'same' window whose padding follows the size, and joins that need some sizes."""
    notes = []
    for layer in plan.layers:
        if layer.padding_mode != "same" or not layer.is_open or layer.stride is None:
            continue
        names = axis_names(layer.spatial_rank)
        kernel, stride, dilation, _ = window(layer)
        axis = next(
            (i for i, (is_open, s) in enumerate(zip(layer.open_axes, stride)) if is_open and s > 1),
            None,
        )
        if axis is None:
            continue
        dk = S.effective_kernel(kernel[axis], dilation[axis])
        notes.append(
            _note(
                "note_open_same",
                layer.name,
                lang,
                stride=stride[axis],
                axis=names[axis],
                total_even=max(dk - stride[axis], 0),
                kernel=dk,
                n=layer.input_shape[axis + 1],
            )
        )
        break
    for join in plan.size_notes:
        rule = (
            text("join_rule_period", lang, axis=join.axis, period=join.period)
            if join.period
            else text("join_rule_some", lang)
        )
        if isinstance(join, MultipleNote):
            notes.append(
                _note(
                    "note_open_multiple",
                    join.layer,
                    lang,
                    multiple=join.multiple,
                    axis=join.axis,
                    size=join.size,
                    rule=rule,
                    example=join.example,
                    value=join.value,
                )
            )
            continue
        notes.append(
            _note(
                "note_open_join",
                join.layer,
                lang,
                first=join.first,
                first_size=join.first_size,
                other=join.other,
                other_size=join.other_size,
                axis=join.axis,
                rule=rule,
                example=join.example,
                value_first=join.values[0],
                value_other=join.values[1],
            )
        )
    return notes
