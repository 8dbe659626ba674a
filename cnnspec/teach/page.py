"""The self-contained explain page: one HTML file with inline CSS, SVG and a little JS (no network)."""

from __future__ import annotations

from html import escape
from typing import Any

from cnnspec.engine import shapes as S
from cnnspec.engine.plan import LayerPlan, Plan
from cnnspec.teach import pictures as P
from cnnspec.teach.formulas import FORMULA, axis_names, num, pads_of, window
from cnnspec.teach.i18n import text
from cnnspec.teach.source_lines import generated_sources, layer_lines

CSS = """
:root { --ink: #1d232b; --muted: #5b6573; --line: #d5dbe3; --card: #ffffff; --bg: #f5f7fa; --accent: #1f6fd1; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans KR", "Apple SD Gothic Neo",
       "Malgun Gothic", "NanumGothic", sans-serif;
       color: var(--ink); background: var(--bg); }
a { color: var(--accent); }
html:lang(ko) { word-break: keep-all; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; }
header, main, footer { max-width: 1180px; margin: 0 auto; padding: 12px 20px; }
h1 { font-size: 1.5rem; margin: 8px 0; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 0 0 8px; overflow-wrap: anywhere; }
h3 { font-size: .95rem; margin: 12px 0 4px; color: var(--muted); text-transform: uppercase; letter-spacing: .03em; }
.summary { display: flex; flex-wrap: wrap; gap: 8px 24px; }
.summary div { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 6px 12px; }
nav.toc ol { display: flex; flex-wrap: wrap; gap: 4px 8px; list-style: none; padding: 0; margin: 8px 0; }
nav.toc a { display: inline-block; padding: 2px 8px; border: 1px solid var(--line); border-radius: 12px;
            background: var(--card); text-decoration: none; font-size: .9rem; }
.layer, .graph-section, .input-card, .notes { background: var(--card); border: 1px solid var(--line);
  border-radius: 10px; padding: 14px 18px;
         margin: 14px 0; scroll-margin-top: 12px; }
.layer:focus { outline: 3px solid var(--accent); outline-offset: 2px; }
.kind { color: var(--muted); font-weight: normal; }
.shapes { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 8px 24px; }
.shape-row .numbers { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
svg { max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #1d232b; }
svg .dim-letter { font-weight: 700; } svg .dim-size { font: 13px ui-monospace, Menlo, Consolas, monospace; }
svg .axis-label { font-weight: 700; } svg .gap { font-size: 12px; } svg .cell-text { font-size: 10px; }
.pictures { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; max-width: 100%; }
figcaption { font-size: .85rem; color: var(--muted); }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: .85rem; color: var(--muted); margin: 4px 0; }
.legend span::before { content: ""; display: inline-block; width: 12px; height: 12px; margin-right: 4px;
                       vertical-align: -1px; border: 1px solid #888; background: var(--swatch); }
.formula .side { white-space: nowrap; }
.formula { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; overflow-wrap: anywhere; }
ul.formulas { margin: 0; padding-left: 18px; }
.code { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.code pre { margin: 0; background: #f3f5f8; border: 1px solid var(--line); border-radius: 6px; padding: 8px;
            font-size: .8rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.code h4 { margin: 0 0 4px; font-size: .85rem; }
.notes li { margin: 6px 0; }
table.totals { border-collapse: collapse; } table.totals td { padding: 2px 12px 2px 0; }
@media (max-width: 640px) {
  body { font-size: 15px; } header, main, footer { padding: 8px 10px; }
  .layer, .graph-section, .input-card, .notes { padding: 10px 10px; } .code { grid-template-columns: 1fr; }
}
@media print {
  body { background: #fff; font-size: 11pt; } nav.toc, .keys, .skip { display: none; }
  svg, .legend span::before { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  .layer, .input-card { break-inside: avoid; border-color: #999; box-shadow: none; }
  a { color: inherit; text-decoration: none; } .code pre { white-space: pre-wrap; }
}
"""

JS = """
(function () {
  var cards = Array.prototype.slice.call(document.querySelectorAll('section.layer'));
  function go(i) { if (i >= 0 && i < cards.length) { cards[i].focus(); cards[i].scrollIntoView({block: 'start'}); } }
  document.addEventListener('keydown', function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    var i = cards.indexOf(document.activeElement);
    var onCard = i >= 0;
    if (e.key === 'j' || (onCard && e.key === 'ArrowDown')) { go(onCard ? i + 1 : 0); e.preventDefault(); }
    else if (e.key === 'k' || (onCard && e.key === 'ArrowUp')) { go(onCard ? i - 1 : 0); e.preventDefault(); }
    else if (onCard && e.key === 'Home') { go(0); e.preventDefault(); }
    else if (onCard && e.key === 'End') { go(cards.length - 1); e.preventDefault(); }
  });
  document.querySelectorAll('nav.toc a').forEach(function (a) {
    a.addEventListener('click', function () {
      var target = document.getElementById(a.getAttribute('href').slice(1)); if (target) { target.focus(); }
    });
  });
})();
"""


def _letters(rank: int, shape: list[int], channels_first: bool) -> list[str]:
    if len(shape) == 1:
        return ["N", "F"]
    spatial = {1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}[len(shape) - 1]
    return ["N", "C", *spatial] if channels_first else ["N", *spatial, "C"]


def _shape_rows(
    record_shape: dict[str, list[int]], layouts: dict[str, str], lang: str, heading: str
) -> str:
    rows = []
    for key, channels_first, label_key in (
        ("NCHW", True, "torch_layout"),
        ("NHWC", False, "keras_layout"),
    ):
        shape = record_shape[key]
        letters = _letters(len(shape) - 1, shape, channels_first)
        label = text(label_key, lang, layout=layouts[key])
        numbers = "×".join(map(str, shape))
        rows.append(
            f'<div class="shape-row"><div>{escape(label)}: <span class="numbers" data-layout="{key}">{numbers}</span>'
            f"</div>{P.layout_blocks(letters, ['·', *shape], f'{heading} {label} {numbers}')}</div>"
        )
    return f'<h3>{escape(heading)}</h3><div class="shapes">{"".join(rows)}</div>'


def _legend(lang: str, keys: tuple[str, ...]) -> str:
    swatches = {
        "legend_input": P.COLORS["input"],
        "legend_pad": P.COLORS["pad"],
        "legend_first": P.COLORS["first"],
        "legend_last": P.COLORS["last"],
        "legend_crop": P.COLORS["crop"],
        "legend_beyond": "#ffffff",
    }
    return (
        '<div class="legend">'
        + "".join(
            f'<span style="--swatch:{swatches[k]}">{escape(text(k, lang))}</span>' for k in keys
        )
        + "</div>"
    )


def _window_axes(layer: LayerPlan, symmetric: int | None = None) -> list[dict[str, Any]]:
    axes = []
    kernel, stride, dilation, pads = window(layer)
    extras = layer.ceil_extra or (0,) * len(kernel)
    for i, (n, k, s, d, (b, a), out) in enumerate(
        zip(layer.input_shape[1:], kernel, stride, dilation, pads, layer.output_shape[1:])
    ):
        dk = S.effective_kernel(k, d)
        if symmetric is not None:
            p = pads[i][1]
            b = a = p
            out = S.conv_output_length(n, k, s, d, p, p)
        axes.append(P.window_axis(n, b, a, dk, s, out, extras[i]))
    return axes


def _window_pictures(
    layer: LayerPlan, axes: list[dict[str, Any]], names: tuple[str, ...], label: str
) -> str:
    if len(axes) == 2:
        return P.padding_grid(axes[0], axes[1], names[0], names[1], label)
    return "".join(
        P.padding_strip(axis, name, f"{label} {name}") for axis, name in zip(axes, names)
    )


def _padding_section(layer: LayerPlan, lang: str) -> str:
    if layer.spatial_rank == 0:
        return ""
    names = axis_names(layer.spatial_rank)
    heading = text("padding_picture", lang)
    figures = []
    if (
        layer.family in ("conv", "depthwise_conv", "separable_conv", "pool")
        and layer.padding is not None
    ):
        sizes = "×".join(map(str, layer.input_shape[1:]))
        caption = text(
            "grid_caption",
            lang,
            rows=sizes.split("×")[0],
            cols=sizes.split("×")[-1],
            axes=", ".join(names),
        )
        if layer.spatial_rank != 2:
            caption = ", ".join(
                text("cell_strip", lang, axis=a, n=n) for a, n in zip(names, layer.input_shape[1:])
            )
        figures.append(
            f"<figure>{_window_pictures(layer, _window_axes(layer), names, caption)}"
            f"<figcaption>{escape(layer.padding_mode or '')}: {escape(caption)}</figcaption></figure>"
        )
        if layer.padding_mode == "same" and not layer.is_symmetric_padding:
            p = max(a for _, a in layer.padding)
            alt = text("alt_padding", lang, p=p)
            figures.append(
                f'<figure class="alternative">{_window_pictures(layer, _window_axes(layer, p), names, alt)}'
                f"<figcaption>{escape(alt)}</figcaption></figure>"
            )
        keys = ("legend_input", "legend_pad", "legend_first", "legend_last")
        legend = _legend(lang, keys + (("legend_beyond",) if any(layer.ceil_extra or ()) else ()))
    elif layer.family == "conv_transpose":
        strips = []
        kernel, stride, dilation, pads = window(layer)
        for name, n, k, s, d, (b, a), out in zip(
            names, layer.input_shape[1:], kernel, stride, dilation, pads, layer.output_shape[1:]
        ):
            dk = S.effective_kernel(k, d)
            full = (n - 1) * s + dk
            length = max(full, b + out)
            keep = max(dk + s + 1, 4)
            axis = {
                "positions": P._visible_positions(0, length, keep, keep),
                "n": full,
                "ceil_beyond": 10**9,
                "first": (0, dk - 1),
                "last": ((n - 1) * s, (n - 1) * s + dk - 1),
            }
            strips.append(
                P.padding_strip(axis, name, f"{text('tr_picture', lang)} {name}", crop=(b, b + out))
            )
        figures.append(
            f"<figure>{''.join(strips)}<figcaption>{escape(text('tr_picture', lang))}</figcaption></figure>"
        )
        legend = _legend(
            lang, ("legend_input", "legend_pad", "legend_crop", "legend_first", "legend_last")
        )
    elif layer.family == "zero_pad":
        axes = [
            {
                "positions": P._visible_positions(-b, n + a, b + 3, a + 3),
                "n": n,
                "ceil_beyond": 10**9,
                "first": None,
                "last": None,
            }
            for n, (b, a) in zip(layer.input_shape[1:], pads_of(layer))
        ]
        figures.append("<figure>" + _window_pictures(layer, axes, names, heading) + "</figure>")
        legend = _legend(lang, ("legend_input", "legend_pad"))
    else:
        return ""
    return f'<h3>{escape(heading)}</h3>{legend}<div class="pictures">{"".join(figures)}</div>'


def _formula_html(value: str) -> str:
    """Escaped text in which each side of a formula stays on one line (lines break only at ' = ')."""
    parts, last = [], 0
    for match in FORMULA.finditer(value):
        parts.append(escape(value[last : match.start()]))
        sides = match.group(0).split(" = ")
        parts.append(" = ".join(f'<span class="side">{escape(side)}</span>' for side in sides))
        last = match.end()
    parts.append(escape(value[last:]))
    return "".join(parts)


def _formulas_section(record: dict[str, Any], lang: str) -> str:
    items = []
    for group in record["padding_text"]:
        label = text("padding", lang) + (f" ({', '.join(group['axes'])})" if group["axes"] else "")
        items.append(
            f'<li>{escape(label)}: <span class="formula" data-kind="padding">{_formula_html(group["text"])}'
            "</span></li>"
        )
    for group in record["size"]:
        label = text("size", lang) + (f" ({', '.join(group['axes'])})" if group["axes"] else "")
        items.append(
            f'<li>{escape(label)}: <span class="formula" data-kind="size">{_formula_html(group["text"])}'
            "</span></li>"
        )
    arithmetic = record["param_arithmetic"]
    if arithmetic["formula"]:
        remark = f" ({escape(arithmetic['remark'])})" if arithmetic["remark"] else ""
        items.append(
            f'<li>{escape(text("params_heading", lang))}: <span class="formula" data-kind="params">'
            f"{_formula_html(arithmetic['formula'])}</span>{remark}</li>"
        )
    if not items:
        return ""
    return f'<h3>{escape(text("formula_heading", lang))}</h3><ul class="formulas">{"".join(items)}</ul>'


def _code_section(lines: dict[str, list[str]], sources: dict[str, Any], lang: str) -> str:
    columns = []
    for target, title in (("torch", "PyTorch"), ("keras", "Keras")):
        source = sources.get(target)
        if not isinstance(source, str):
            body = escape(text("code_unavailable", lang, reason=str(source)))
        else:
            body = escape("\n".join(lines.get(target, []))) or escape(text("no_code", lang))
        columns.append(
            f'<div><h4>{title}</h4><pre><code data-target="{target}">{body}</code></pre></div>'
        )
    return (
        f'<h3>{escape(text("code_heading", lang))}</h3><div class="code">{"".join(columns)}</div>'
    )


def _flatten_section(record: dict[str, Any], lang: str) -> str:
    order = record.get("flatten_order")
    if not order:
        return ""
    shape = record["input_shapes"][0]["NCHW"]
    count = 24
    label_torch = f"PyTorch {order['torch_order']}: {order['torch_index']}"
    label_keras = f"Keras {order['keras_order']}: {order['keras_index']}"
    cell = "(" + ", ".join(f"{k}={v}" for k, v in order["cell"].items()) + ")"
    marks = (order["torch_position"], order["keras_position"])
    return (
        f"<h3>{escape(text('flatten_heading', lang))}</h3>"
        f"<figure>{P.flatten_strips(shape, count, label_torch, label_keras, *marks)}"
        f"<figcaption>{escape(text('flatten_first_cells', lang, count=min(count, record['output_shape']['NCHW'][0])))}"
        f"</figcaption></figure>"
        f'<p>{escape(text("worked_cell", lang, cell=cell))}: PyTorch <span class="formula" data-kind="flatten-torch">'
        f'{_formula_html(order["torch_formula"])}</span> · Keras <span class="formula" data-kind="flatten-keras">'
        f"{_formula_html(order['keras_formula'])}</span></p>"
    )


def _kernel_rows_section(record: dict[str, Any], lang: str) -> str:
    rows = record.get("kernel_rows")
    if not rows:
        return ""
    items = "".join(
        f"<li>{escape('×'.join(map(str, shape)))}: PyTorch <code>weight[:, {escape(order['torch_index'])}]</code> · "
        f"Keras <code>kernel[{escape(order['keras_index'])}, :]</code></li>"
        for shape, order in zip(rows["feature_maps"], rows["orders"])
    )
    return f"<h3>{escape(text('kernel_rows_heading', lang))}</h3><p>{escape(text('kernel_rows', lang))}</p><ul>{items}</ul>"


def _layer_section(
    layer: LayerPlan, record: dict[str, Any], data: dict[str, Any], lines, sources, lang: str
) -> str:
    inputs = ", ".join(record["inputs"])
    first = "×".join(map(str, record["output_shape"]["NCHW"]))
    last = "×".join(map(str, record["output_shape"]["NHWC"]))
    heading = f'{escape(record["name"])} <span class="kind">{escape(record["label"])}</span>'
    params = f'{escape(text("params", lang))}: <b class="params">{num(record["params"])}</b>' + (
        f" ({escape(text('non_trainable', lang))} {num(record['non_trainable_params'])})"
        if record["non_trainable_params"]
        else ""
    )
    return (
        f'<section class="layer" id="layer-{record["index"]}" tabindex="0" aria-labelledby="h-{record["index"]}" '
        f'data-name="{escape(record["name"])}" data-params="{record["params"]}" '
        f'data-trainable="{record["trainable_params"]}" data-non-trainable="{record["non_trainable_params"]}" '
        f'data-nchw="{first}" data-nhwc="{last}">'
        f'<h2 id="h-{record["index"]}">{heading}</h2>'
        f"<p>{escape(text('inputs', lang))}: {escape(inputs)} · {params}</p>"
        + _open_shape_row(record, data, lang)
        + _shape_rows(record["output_shape"], data["layouts"], lang, text("output_shape", lang))
        + _padding_section(layer, lang)
        + _formulas_section(record, lang)
        + _flatten_section(record, lang)
        + _kernel_rows_section(record, lang)
        + _code_section(lines.get(record["name"], {}), sources, lang)
        + "</section>"
    )


def _open_shape_row(record: dict[str, Any], data: dict[str, Any], lang: str) -> str:
    """For an open input size: the shape as formulas of the input's (the rows below hold the numbers)."""
    formula = record.get("output_formula")
    if not formula:
        return ""
    first, last = data["layouts"]["NCHW"], data["layouts"]["NHWC"]
    return (
        f'<p class="formula-shape">{escape(first)} {escape("×".join(formula["NCHW"]))} · '
        f"{escape(last)} {escape('×'.join(formula['NHWC']))}</p>"
    )


def render_page(plan: Plan, data: dict[str, Any], lang: str) -> str:
    """The whole page for one model, as a string."""
    sources = generated_sources(plan)
    lines = layer_lines(plan, sources)
    first, last = data["layouts"]["NCHW"], data["layouts"]["NHWC"]
    title = text("page_title", lang, name=data["name"])
    shown_input = data.get("input_formula", data["input_shape"])
    headline = text(
        "headline",
        lang,
        name=data["name"],
        rank=data["rank"],
        first=first,
        shape_first="×".join(map(str, shown_input["NCHW"])),
        last=last,
        shape_last="×".join(map(str, shown_input["NHWC"])),
    )
    if "input_formula" in data:
        open_axes = ", ".join(a for a, o in zip(data["axes"], data["open_axes"]) if o)
        key = "open_line_assumed" if data["size_source"] == "assumed" else "open_line"
        size = "×".join(map(str, data["input_shape"]["NCHW"][1:]))
        headline += " · " + text(key, lang, axes=open_axes, size=size)
    toc = "".join(
        f'<li><a href="#layer-{r["index"]}">{escape(r["name"])}</a></li>' for r in data["layers"]
    )
    totals = (
        f'<table class="totals" id="totals" data-total="{data["total_params"]}" '
        f'data-trainable="{data["trainable_params"]}" data-non-trainable="{data["non_trainable_params"]}">'
        f"<tr><td>{escape(text('total_params', lang))}</td><td><b>{num(data['total_params'])}</b></td></tr>"
        f"<tr><td>{escape(text('trainable', lang))}</td><td>{num(data['trainable_params'])}</td></tr>"
        f"<tr><td>{escape(text('non_trainable', lang))}</td><td>{num(data['non_trainable_params'])}</td></tr>"
        f"<tr><td>{escape(text('output', lang))}</td><td>{first} {'×'.join(map(str, data['output_shape']['NCHW']))}"
        f" · {last} {'×'.join(map(str, data['output_shape']['NHWC']))}</td></tr></table>"
    )
    graph = ""
    if data["is_graph"]:
        graph = (
            f'<section class="graph-section"><h2>{escape(text("graph_heading", lang))}</h2>'
            f"{P.model_graph(data['layers'], text('graph_heading', lang))}</section>"
        )
    sections = "".join(
        _layer_section(layer, record, data, lines, sources, lang)
        for layer, record in zip(plan.layers, data["layers"])
    )
    input_section = (
        f'<section class="input-card layer-like"><h2>{escape(text("input", lang))}</h2>'
        + _shape_rows(data["input_shape"], data["layouts"], lang, text("input_shape", lang))
        + "</section>"
    )
    notes = "".join(
        f'<li data-note="{escape(n["id"])}">{escape(n["text"])}</li>' for n in data["notes"]
    )
    return (
        f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'unsafe-inline'; img-src data:\">"
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<a class="skip" href="#layers">{escape(text("skip_to_layers", lang))}</a>'
        f"<header><h1>{escape(title)}</h1><p>{escape(headline)}</p>"
        f"<p>{escape(text('axes_line', lang, axes=', '.join(data['axes'])))}</p>"
        f'<div class="summary"><div>{totals}</div></div>'
        f'<nav class="toc" aria-label="{escape(text("contents", lang))}"><h2>{escape(text("contents", lang))}</h2>'
        f'<ol>{toc}</ol></nav><p class="keys">{escape(text("keys_hint", lang))}</p></header>'
        f'<main id="layers">{graph}{input_section}{sections}'
        f'<section class="notes"><h2>{escape(text("notes_heading", lang))}</h2><ul>{notes}</ul></section></main>'
        f"<script>{JS}</script></body></html>\n"
    )
