"""Explain a plan to a person (a table with the arithmetic, or a page) or to a program (JSON).

:func:`explain` builds one :class:`Explanation`; the terminal table, ``--json``, the notebook
table and the HTML page are all renderings of its :meth:`~Explanation.to_dict`.  Nothing here
imports a framework; it only reads the :class:`~cnnspec.engine.plan.Plan`.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from typing import Any

from cnnspec.engine.plan import LayerPlan, Plan, channels_last
from cnnspec.teach import formulas as F
from cnnspec.teach.i18n import check_language, text
from cnnspec.teach.notes import model_notes

WINDOWED = ("conv", "depthwise_conv", "separable_conv", "pool")
KNOWN_FAMILIES = frozenset(
    {
        *WINDOWED,
        "conv_transpose",
        "upsample",
        "zero_pad",
        "global_pool",
        "flatten",
        "merge",
        "dense",
        "batch_norm",
        "dropout",
        "activation",
        "prelu",
    }
)


def explain(spec, lang: str = "en", input_size=None) -> Explanation:
    """Explain a spec: shapes in both layouts, padding, output-size and parameter arithmetic, notes.

    Args:
        spec: a Plan, a ModelSpec, or anything :func:`cnnspec.load_spec` accepts (path, YAML/JSON text, dict).
        lang: ``"en"`` or ``"ko"`` for the labels and notes (numbers and formulas are the same).
        input_size: the spatial size to compute the numbers at, e.g. ``(225, 225)``.  A spec
            with open (null) sizes shows every size as a formula of them, and the numbers at
            this size or its ``reference_size``.

    Returns:
        An :class:`Explanation`: ``str()`` is the terminal table, ``to_dict()`` the ``--json`` object,
        ``page()`` the self-contained HTML page; in a notebook it displays as a table.
    """
    from cnnspec.engine.plan import resolve

    plan = spec if isinstance(spec, Plan) else resolve(spec, input_size)
    return Explanation(plan, check_language(lang))


class Explanation:
    """Everything ``explain`` shows about one model, in one language."""

    def __init__(self, plan: Plan, lang: str = "en"):
        self.plan = plan
        self.lang = check_language(lang)
        self._data = _model_record(plan, self.lang)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready object ``cnnspec explain --json`` prints."""
        return json.loads(json.dumps(self._data))

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON text."""
        return json.dumps(self._data, indent=2, ensure_ascii=False) + "\n"

    def text(self, wide: bool = False, width: int = 100) -> str:
        """The terminal table: one row per layer with its arithmetic below it (``wide``: all on one line)."""
        return _render_text(self._data, self.lang, wide=wide, width=width)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<Explanation of {self.plan.name!r}: {self.plan.total_params:,} parameters>"

    def _repr_html_(self) -> str:
        return _render_html_table(self._data, self.lang)

    def page(self) -> str:
        """The self-contained HTML page (inline CSS, SVG and JS; no network)."""
        from cnnspec.teach.page import render_page

        return render_page(self.plan, self._data, self.lang)

    def save_page(self, path, overwrite: bool = False) -> None:
        """Write :meth:`page` to ``path`` atomically."""
        from cnnspec.atomic import atomic_write

        atomic_write(path, self.page(), overwrite=overwrite)


# -- building the record ---------------------------------------------------------------------------


def shape_text(shape) -> str:
    """``(32, 26, 26)`` -> ``32×26×26``."""
    return "×".join(str(d) for d in shape)


def _group(items: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """[(axis, text)] -> [{"axes": [...], "text": ...}], axes with equal text together, first-seen order."""
    groups: dict[str, list[str]] = {}
    for axis, value in items:
        groups.setdefault(value, []).append(axis)
    return [{"axes": axes, "text": value} for value, axes in groups.items()]


def _segments(groups: list[dict[str, Any]]) -> list[str]:
    return [f"{', '.join(g['axes'])}: {g['text']}" if g["axes"] else g["text"] for g in groups]


def _split(lang: str, before: int, after: int) -> str:
    return text("pad_split", lang, before=before, after=after)


def _padding_texts(
    layer: LayerPlan, details: list[F.AxisDetail], lang: str
) -> list[dict[str, Any]]:
    if layer.padding is None:
        return []
    if layer.family == "conv_transpose":
        items = []
        for d in details:
            parts = [text("tr_full", lang, formula=d.full)]
            if layer.padding_mode == "same":
                if d.crop_formula:
                    split = _split(lang, d.before, d.after)
                    parts.append(text("tr_same_crop", lang, formula=d.crop_formula, split=split))
                if d.extend:
                    parts.append(text("tr_same_extend", lang, extra=d.extend))
            elif layer.padding_mode == "explicit":
                parts.append(text("tr_explicit_crop", lang, p=d.before))
                if d.extend:
                    parts.append(text("tr_output_padding", lang, op=d.extend))
            else:
                parts.append(
                    text("tr_valid_extend", lang, extra=d.extend)
                    if d.extend
                    else text("tr_valid", lang)
                )
            items.append((d.axis, ", ".join(parts)))
        return [{"mode": layer.padding_mode, **g} for g in _group(items)]
    if (
        layer.padding_mode == "valid"
        and all(b == 0 and a == 0 for b, a in layer.padding)
        and not any(d.ceil_extra for d in details)
    ):
        return [{"mode": "valid", "axes": [], "text": "valid"}]
    items = []
    for d in details:
        if layer.padding_mode == "same":
            if d.same_total_value < 0:
                value = text("same_total_negative", lang, formula=d.same_total)
            else:
                value = text(
                    "same_total", lang, formula=d.same_total, split=_split(lang, d.before, d.after)
                )
        else:
            value = _split(lang, d.before, d.after)
        if d.ceil_extra:
            value += "; " + text("ceil_extra", lang, extra=d.ceil_extra)
        items.append((d.axis, value))
    return [{"mode": layer.padding_mode, **g} for g in _group(items)]


def _axis_details(layer: LayerPlan) -> list[F.AxisDetail]:
    if layer.family in WINDOWED and layer.kernel_size is not None and layer.padding is not None:
        return F.window_axes(layer)
    if layer.family == "conv_transpose":
        return F.transpose_axes(layer)
    if layer.family in ("upsample", "zero_pad"):
        return F.simple_axes(layer)
    return []


def _size_groups(layer: LayerPlan, details: list[F.AxisDetail], lang: str) -> list[dict[str, Any]]:
    if details:
        items = []
        for d in details:
            value = d.size
            if d.dilation:
                value += "; " + text("dilated", lang, formula=d.dilation)
            if d.ceil_dropped:
                value += " (" + text("ceil_dropped", lang) + ")"
            items.append((d.axis, value))
        return _group(items)
    family, shape = layer.family, layer.input_shape
    if family == "global_pool":
        axes = "×".join(F.axis_names(len(shape) - 1))
        keepdims = len(layer.output_shape) > 1
        result = (
            text("per_channel", lang, ones="×".join("1" * (len(shape) - 1)))
            if keepdims
            else text("features", lang, count=shape[0])
        )
        key = "reduce_mean" if layer.type == "global_avg_pool" else "reduce_max"
        return [
            {
                "axes": [],
                "text": text(key, lang, axes=axes, window=shape_text(shape[1:]), result=result),
            }
        ]
    if family == "flatten" and len(shape) > 1:
        letters, sizes = ["C", *F.axis_names(len(shape) - 1)], list(shape)
        if layer.spec.order == "channels_last":
            letters, sizes = [*letters[1:], letters[0]], [*sizes[1:], sizes[0]]
        formula = "·".join(map(str, sizes)) + f" = {F.num(layer.output_shape[0])}"
        return [{"axes": [], "text": f"{'·'.join(letters)} {formula}"}]
    if family == "merge" and layer.type == "concat":
        formula = " + ".join(str(s[0]) for s in layer.input_shapes) + f" = {layer.output_shape[0]}"
        return [{"axes": [], "text": text("channels_sum", lang, formula=formula)}]
    if family in KNOWN_FAMILIES:
        return []
    # A layer type explain does not know yet: show the engine's own arithmetic.
    return [{"axes": [], "text": formula} for formula in dict.fromkeys(layer.size_formulas)]


def _params_record(layer: LayerPlan, lang: str) -> dict[str, Any]:
    terms = F.param_terms(layer)
    chain = F.param_chain(terms)
    remark = ""
    if layer.family == "batch_norm":
        remark = text("params_bn", lang)
    elif layer.family == "prelu":
        remark = text("params_prelu" if layer.total_params > 1 else "params_prelu_shared", lang)
    return {
        "formula": chain,
        "remark": remark,
        "terms": [
            {"formula": t.formula, "value": t.value, "tensor": t.what, "trainable": t.trainable}
            for t in terms
        ],
        "tensors": [
            {"name": p.name, "shape": list(p.shape), "trainable": p.trainable} for p in layer.params
        ],
    }


def _telling_cell(shape: tuple[int, ...]) -> list[int]:
    """A cell of indices 0 and 1 whose PyTorch and Keras flatten positions differ (all ones first;
    on a cube such as 8×8×8 they coincide there), or all ones where none differs."""
    import itertools

    def positions(cell: tuple[int, ...]) -> tuple[int, int]:
        torch_position = keras_position = 0
        for index, size in zip(cell, shape):
            torch_position = torch_position * size + index
        for index, size in zip((*cell[1:], cell[0]), (*shape[1:], shape[0])):
            keras_position = keras_position * size + index
        return torch_position, keras_position

    ones = [min(1, n - 1) for n in shape]
    cells = sorted(
        itertools.product(*[range(top + 1) for top in ones]), key=lambda cell: -sum(cell)
    )
    telling = (cell for cell in cells if len(set(positions(cell))) == 2)
    return list(next(telling, ones))


def flatten_order(shape: tuple[int, ...]) -> dict[str, Any]:
    """How PyTorch and Keras number the cells of a flattened (C, *spatial) map, with one worked cell."""
    spatial = shape[1:]
    axes = F.axis_names(len(spatial))
    lower = [a.lower() for a in axes]
    channels = shape[0]
    cell = _telling_cell(shape)
    # PyTorch: c·H·W + h·W + w
    letters_torch, numbers_torch = [], []
    names = ["c", *lower]
    sizes = list(shape)
    for i, (letter, index) in enumerate(zip(names, cell)):
        later, later_letters = sizes[i + 1 :], list(axes[i:])  # sizes after this axis
        if later:
            letters_torch.append("·".join([letter, *later_letters]))
            numbers_torch.append("·".join(str(v) for v in [index, *later]))
        else:
            letters_torch.append(letter)
            numbers_torch.append(str(index))
    torch_value = 0
    for index, size in zip(cell, sizes):
        torch_value = torch_value * size + index
    # Keras: (h·W + w)·C + c  (spatial Horner, then channels last)
    letters_keras, numbers_keras = lower[0], str(cell[1])
    for letter, upper, index, size in zip(lower[1:], axes[1:], cell[2:], spatial[1:]):
        letters_keras = f"{letters_keras}·{upper} + {letter}"
        numbers_keras = f"{numbers_keras}·{size} + {index}"
        letters_keras, numbers_keras = f"({letters_keras})", f"({numbers_keras})"
    letters_keras = f"{letters_keras}·C + c"
    numbers_keras = f"{numbers_keras}·{channels} + {cell[0]}"
    keras_value = 0
    for index, size in zip(cell[1:], spatial):
        keras_value = keras_value * size + index
    keras_value = keras_value * channels + cell[0]
    return {
        "torch_order": ",".join(("C", *axes)),
        "keras_order": ",".join((*axes, "C")),
        "torch_index": " + ".join(letters_torch),
        "keras_index": letters_keras,
        "cell": dict(zip(["c", *lower], cell)),
        "torch_formula": f"{' + '.join(numbers_torch)} = {torch_value}",
        "keras_formula": f"{numbers_keras} = {keras_value}",
        "torch_position": torch_value,
        "keras_position": keras_value,
    }


def _layer_record(
    plan: Plan, layer: LayerPlan, lang: str, default_inputs: tuple[str, ...]
) -> dict[str, Any]:
    details = _axis_details(layer)
    axes = list(F.axis_names(layer.spatial_rank)) if layer.spatial_rank > 0 else []
    record: dict[str, Any] = {
        "index": layer.index,
        "name": layer.name,
        "type": layer.type,
        "family": layer.family,
        "activation": layer.activation,
        "label": layer.type + (f"+{layer.activation}" if layer.activation else ""),
        "inputs": list(layer.inputs),
        "default_inputs": tuple(layer.inputs) == default_inputs,
        "axes": axes,
        "input_shapes": [
            {"NCHW": list(s), "NHWC": list(channels_last(s))} for s in layer.input_shapes
        ],
        "output_shape": {"NCHW": list(layer.output_shape), "NHWC": list(layer.output_shape_last)},
        "params": layer.total_params,
        "trainable_params": layer.trainable_params,
        "non_trainable_params": layer.non_trainable_params,
    }
    for field in ("kernel_size", "stride", "dilation", "output_padding"):
        value = getattr(layer, field, None)
        if value is not None:
            record[field] = list(value)
    if layer.padding is not None:
        record["padding"] = [list(p) for p in layer.padding]
        record["padding_mode"] = layer.padding_mode
        record["padding_axes"] = [
            {
                "axis": d.axis,
                "before": d.before,
                "after": d.after,
                **(
                    {"same_total": d.same_total, "same_total_value": d.same_total_value}
                    if d.same_total
                    else {}
                ),
                **({"full": d.full, "extend": d.extend} if d.full else {}),
                **({"crop": d.crop_formula} if d.crop_formula else {}),
                **({"ceil_extra": d.ceil_extra} if d.ceil_extra else {}),
            }
            for d in details
        ]
    record["padding_text"] = _padding_texts(layer, details, lang)
    record["size"] = _size_groups(layer, details, lang)
    if plan.is_open:
        record["output_formula"] = _shape_formulas(layer.output_shape, layer.sizes, layer)
        if layer.sizes and layer.sizes != layer.input_sizes:
            # the layer changes the size: its rule as a formula of the model's input comes first
            rule = ", ".join(f"{axis}′ = {size.text()}" for axis, size in zip(axes, layer.sizes))
            record["size"].insert(0, {"axes": [], "text": rule})
    record["size_formulas"] = [d.size for d in details]
    record["param_arithmetic"] = _params_record(layer, lang)
    record["param_formula"] = record["param_arithmetic"]["formula"]
    if layer.family == "flatten" and len(layer.input_shape) > 1:
        if layer.spec.order == "channels_last":
            record["flatten_channels_last"] = True
        else:
            record["flatten_order"] = flatten_order(layer.input_shape)
    if layer.family == "dense":
        source = plan.layer(layer.inputs[0]) if layer.inputs[0] != "input" else None
        maps = [list(s) for s in (source.flat_segments or ()) if len(s) > 1] if source else []
        if maps:
            record["kernel_rows"] = {
                "feature_maps": maps,
                "orders": [
                    {
                        "torch_index": flatten_order(tuple(m))["torch_index"],
                        "keras_index": flatten_order(tuple(m))["keras_index"],
                    }
                    for m in maps
                ],
            }
    return record


def _factor(formula: str) -> str:
    """A formula as one factor of ``C×H×W``: bracketed when a sum shows at its top level."""
    depth = 0
    for position, char in enumerate(formula):
        depth += char in "(⌊⌈"
        depth -= char in ")⌋⌉"
        if depth == 0 and char in "+−" and formula[position - 1 : position] == " ":
            return f"({formula})"
    return formula


def _shape_formulas(shape, sizes, layer: LayerPlan | None = None) -> dict[str, list[str]]:
    """A shape with formulas of the input size on its spatial axes, in both layouts."""
    if len(shape) == 1:
        if layer is not None and layer.is_open and layer.flat_segments:
            pieces = [
                "·".join([str(segment[0]), *(size.text() for size in layer.input_sizes)])
                if len(segment) > 1
                else str(segment[0])
                for segment in layer.flat_segments
            ]
            return {"NCHW": [" + ".join(pieces)], "NHWC": [" + ".join(pieces)]}
        return {"NCHW": [str(shape[0])], "NHWC": [str(shape[0])]}
    spatial = [_factor(size.text().replace(" / ", "/")) for size in sizes]
    return {"NCHW": [str(shape[0]), *spatial], "NHWC": [*spatial, str(shape[0])]}


def _model_record(plan: Plan, lang: str) -> dict[str, Any]:
    first, last = plan.layouts
    layers = []
    previous = "input"
    for layer in plan.layers:
        layers.append(_layer_record(plan, layer, lang, (previous,)))
        previous = layer.name
    is_graph = any(not r["default_inputs"] for r in layers)
    return {
        "name": plan.name,
        "lang": lang,
        "rank": plan.rank,
        "axes": list(F.axis_names(plan.rank)),
        "layouts": {"NCHW": first, "NHWC": last},
        "input_shape": {
            "NCHW": list(plan.input_shape),
            "NHWC": list(channels_last(plan.input_shape)),
        },
        "output_shape": {
            "NCHW": list(plan.output_shape),
            "NHWC": list(channels_last(plan.output_shape)),
        },
        "total_params": plan.total_params,
        "trainable_params": plan.trainable_params,
        "non_trainable_params": plan.non_trainable_params,
        "is_graph": is_graph,
        "open_axes": list(plan.open_axes),
        "size_source": plan.size_source,
        **(
            {"input_formula": _shape_formulas(plan.input_shape, plan.input_sizes)}
            if plan.is_open
            else {}
        ),
        "layers": layers,
        "notes": model_notes(plan, layers, lang),
    }


# -- the terminal table ----------------------------------------------------------------------------


def display_width(value: str) -> int:
    """Terminal columns of ``value`` (Hangul and other wide characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in value)


def _pad(value: str, width: int, right: bool = False) -> str:
    fill = " " * max(width - display_width(value), 0)
    return fill + value if right else value + fill


def _wrap(segments: list[str], first_prefix: str, indent: int, width: int) -> list[str]:
    """Join segments with '; ', breaking lines between segments or at ', ' inside a long one.

    Formulas never contain ', ' or '; ' (thousands commas have no space), so no formula is ever broken.
    """
    pieces: list[tuple[str, str]] = []  # (separator before it, text)
    for number, segment in enumerate(segments):
        parts = re.split(r"(, |; )", segment)
        pieces.append(("; " if number else "", parts[0]))
        pieces.extend(zip(parts[1::2], parts[2::2]))
    lines, current = [], first_prefix
    for separator, part in pieces:
        if (
            separator and display_width(current + separator + part) + 1 > width
        ):  # room for a trailing ";"
            lines.append(current + separator.rstrip())
            current = " " * indent + part
        else:
            current += separator + part
    lines.append(current)
    return lines


def _detail_rows(record: dict[str, Any], lang: str) -> list[tuple[str, list[str]]]:
    rows = []
    if record["padding_text"]:
        rows.append(
            (
                text("padding", lang),
                [
                    f"{g['mode']}: " + s if i == 0 and g["axes"] else s
                    for i, (g, s) in enumerate(
                        zip(record["padding_text"], _segments(record["padding_text"]))
                    )
                ],
            )
        )
    if record["size"]:
        rows.append((text("size", lang), _segments(record["size"])))
    arithmetic = record["param_arithmetic"]
    if (
        arithmetic["formula"]
        and arithmetic["formula"] != F.num(record["params"])
        or arithmetic["remark"]
    ):
        segments = [arithmetic["formula"]] + (
            [f"({arithmetic['remark']})"] if arithmetic["remark"] else []
        )
        rows.append((text("arithmetic", lang), [" ".join(segments)]))
    return rows


def _render_text(data: dict[str, Any], lang: str, wide: bool = False, width: int = 100) -> str:
    first, last = data["layouts"]["NCHW"], data["layouts"]["NHWC"]
    is_open = "input_formula" in data
    shown_input = data["input_formula"] if is_open else data["input_shape"]
    headline = text(
        "headline",
        lang,
        name=data["name"],
        rank=data["rank"],
        first=first,
        shape_first=shape_text(shown_input["NCHW"]),
        last=last,
        shape_last=shape_text(shown_input["NHWC"]),
    )
    out = _wrap_words(headline, 2, width if not wide else 10**6)
    out += [text("axes_line", lang, axes=", ".join(data["axes"]))]
    at_size = shape_text(data["input_shape"]["NCHW"][1:])
    shows_numbers = not is_open or data["size_source"] != "assumed"
    if is_open:
        open_axes = ", ".join(a for a, o in zip(data["axes"], data["open_axes"]) if o)
        key = "open_line" if shows_numbers else "open_line_assumed"
        out += _wrap_words(
            text(key, lang, axes=open_axes, size=at_size), 2, width if not wide else 10**6
        )
    out.append("")
    columns = (
        ["layer", "type"]
        + (["inputs"] if data["is_graph"] else [])
        + ["first", "last"]
        + (["numbers"] if is_open and shows_numbers else [])
        + ["params"]
    )
    headings = {
        "layer": text("layer", lang),
        "type": text("type", lang),
        "inputs": text("inputs", lang),
        "first": first,
        "last": last,
        "numbers": text("at_size", lang, first=first, size=at_size),
        "params": text("params", lang),
    }

    def shapes_of(record: dict[str, Any], formula_key: str, shape_key: str) -> dict[str, str]:
        shown = record[formula_key] if is_open else record[shape_key]
        return {
            "first": shape_text(shown["NCHW"]),
            "last": shape_text(shown["NHWC"]),
            "numbers": shape_text(record[shape_key]["NCHW"]),
        }

    rows = [
        {
            "layer": text("input", lang),
            "type": "",
            "inputs": "",
            **shapes_of(data, "input_formula", "input_shape"),
            "params": "",
        }
    ]
    # the lines under each row: (label, segments), one list per row
    details: list[list[tuple[str, list[str]]]] = [[]]
    for record in data["layers"]:
        rows.append(
            {
                "layer": record["name"],
                "type": record["label"],
                "inputs": ", ".join(record["inputs"]),
                **shapes_of(record, "output_formula", "output_shape"),
                "params": F.num(record["params"]),
            }
        )
        details.append(_detail_rows(record, lang))
    if wide:
        extra = [
            ("padding", text("padding", lang)),
            ("size", text("size", lang)),
            ("arithmetic", text("arithmetic", lang)),
        ]
        for row, row_details in zip(rows, details):
            found = dict(row_details)
            for key, label in extra:
                row[key] = "; ".join(found.get(label, []))
        columns += [key for key, _ in extra]
        headings.update(dict(extra))
    widths = {
        c: max(display_width(headings[c]), *(display_width(r[c]) for r in rows)) for c in columns
    }
    if not wide and "inputs" in columns and sum(widths.values()) + 2 * (len(columns) - 1) > width:
        # Too wide with the inputs in a column: give each layer an 'inputs' line under its row instead.
        columns.remove("inputs")
        for row_details, record in zip(details[1:], data["layers"]):
            row_details.insert(0, (text("inputs", lang), [", ".join(record["inputs"])]))

    def line(row: dict[str, str]) -> str:
        return "  ".join(_pad(row[c], widths[c], right=(c == "params")) for c in columns).rstrip()

    out.append(line(headings))
    out.append("  ".join("-" * widths[c] for c in columns))
    label_width = max(
        [display_width(text(k, lang)) for k in ("inputs", "padding", "size", "arithmetic")]
    )
    for row, row_details in zip(rows, details):
        out.append(line(row))
        if wide:
            continue
        for label, segments in row_details:
            prefix = "    " + _pad(label, label_width) + "  "
            out.extend(_wrap(segments, prefix, display_width(prefix), width))
    out.append("")
    out.append(
        text(
            "totals_line",
            lang,
            total=F.num(data["total_params"]),
            trainable=F.num(data["trainable_params"]),
            non_trainable=F.num(data["non_trainable_params"]),
        )
    )
    out.append(
        text(
            "output_line",
            lang,
            first=first,
            shape_first=shape_text(data["output_shape"]["NCHW"]),
            last=last,
            shape_last=shape_text(data["output_shape"]["NHWC"]),
        )
    )
    if data["notes"]:
        out.append("")
        out.append(text("notes", lang) + ":")
        for note in data["notes"]:
            out.extend(_wrap_words("- " + note["text"], 2, width if not wide else 10**6))
    return "\n".join(out) + "\n"


def _wrap_words(value: str, indent: int, width: int) -> list[str]:
    """Wrap prose at spaces, never inside a formula (its spaces are held together while wrapping)."""
    glued = F.FORMULA.sub(lambda m: m.group(0).replace(" ", "\x00"), value)
    lines, current = [], ""
    for word in glued.split(" "):
        candidate = f"{current} {word}" if current else word
        if current and display_width(candidate) > width:
            lines.append(current)
            current = " " * indent + word
        else:
            current = candidate
    lines.append(current)
    return [line.replace("\x00", " ") for line in lines]


# -- the notebook table ----------------------------------------------------------------------------


def _render_html_table(data: dict[str, Any], lang: str) -> str:
    esc = html.escape
    first, last = data["layouts"]["NCHW"], data["layouts"]["NHWC"]
    head = [text("layer", lang), text("type", lang)] + (
        [text("inputs", lang)] if data["is_graph"] else []
    )
    head += [
        first,
        last,
        text("params", lang),
        text("padding", lang),
        text("size", lang),
        text("arithmetic", lang),
    ]
    rows = []
    for record in data["layers"]:
        details = {
            label: "<br>".join(esc(s) for s in segments)
            for label, segments in _detail_rows(record, lang)
        }
        cells = [f"<code>{esc(record['name'])}</code>", esc(record["label"])]
        if data["is_graph"]:
            cells.append(esc(", ".join(record["inputs"])))
        cells += [
            shape_text(record["output_shape"]["NCHW"]),
            shape_text(record["output_shape"]["NHWC"]),
            F.num(record["params"]),
        ]
        cells += [details.get(text(k, lang), "") for k in ("padding", "size", "arithmetic")]
        rows.append(
            "<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in cells) + "</tr>"
        )
    notes = "".join(f"<li>{esc(n['text'])}</li>" for n in data["notes"])
    title = esc(
        text(
            "headline",
            lang,
            name=data["name"],
            rank=data["rank"],
            first=first,
            shape_first=shape_text(data["input_shape"]["NCHW"]),
            last=last,
            shape_last=shape_text(data["input_shape"]["NHWC"]),
        )
    )
    totals = esc(
        text(
            "totals_line",
            lang,
            total=F.num(data["total_params"]),
            trainable=F.num(data["trainable_params"]),
            non_trainable=F.num(data["non_trainable_params"]),
        )
    )
    return (
        f"<div class='cnnspec-explain'><p><b>{title}</b></p><table><thead><tr>"
        + "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + f"</tbody></table><p>{totals}</p>"
        + (f"<ul>{notes}</ul>" if notes else "")
        + "</div>"
    )


# -- kept for callers of the earlier API --------------------------------------------------------------


def explain_text(plan: Plan, lang: str = "en", wide: bool = False) -> str:
    """The learner's table (see :meth:`Explanation.text`)."""
    return Explanation(plan, lang).text(wide=wide)


def explain_json(plan: Plan, lang: str = "en") -> dict[str, Any]:
    """The ``--json`` object (see :meth:`Explanation.to_dict`)."""
    return Explanation(plan, lang).to_dict()
