"""Inline SVG pictures for the explain page: layout blocks, padding grids, flatten order, model graph.

Every function returns an ``<svg>`` string sized by its viewBox (it scales to the page width).
"""

from __future__ import annotations

from html import escape
from typing import Any

CELL = 14
COLORS = {
    "input": "#dbe7f6",
    "pad": "#f6d8a8",
    "crop": "#e5e5e5",
    "first": "#1f6fd1",
    "last": "#c2410c",
    "channel": "#f4b183",
    "spatial": "#9dc3e6",
    "batch": "#d9d9d9",
    "flat": "#c5e0b4",
}


def layout_blocks(letters: list[str], sizes: list[int | str], title: str) -> str:
    """A row of labelled boxes, one per dimension (N first): the channel box is coloured apart."""
    width, gap = 72, 6
    parts = []
    for i, (letter, size) in enumerate(zip(letters, sizes)):
        x = i * (width + gap)
        kind = (
            "batch"
            if letter == "N"
            else "channel"
            if letter == "C"
            else "flat"
            if letter == "F"
            else "spatial"
        )
        parts.append(
            f'<g><rect x="{x}" y="0" width="{width}" height="44" rx="6" fill="{COLORS[kind]}" stroke="#555"/>'
            f'<text x="{x + width / 2}" y="17" text-anchor="middle" class="dim-letter">{escape(letter)}</text>'
            f'<text x="{x + width / 2}" y="36" text-anchor="middle" class="dim-size">{escape(str(size))}</text></g>'
        )
    total = len(letters) * (width + gap) - gap
    return (
        f'<svg class="blocks" viewBox="-1 -1 {total + 2} 46" width="{total + 2}" height="46" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{"".join(parts)}</svg>'
    )


def _visible_positions(low: int, high: int, keep_start: int, keep_end: int) -> list[int | None]:
    """Positions low..high-1, with the middle elided (None) when there are too many to draw."""
    count = high - low
    if count <= 20 or keep_start + keep_end + 1 >= count:
        return list(range(low, high))
    return list(range(low, low + keep_start)) + [None] + list(range(high - keep_end, high))


def _index_of(positions: list[int | None], position: int) -> int:
    return positions.index(position)


def window_axis(
    n: int, before: int, after: int, span: int, stride: int, out: int, extra: int = 0
) -> dict[str, Any]:
    """One axis of a sliding window: the drawn positions, padded cells and the first / last window."""
    last_start = (out - 1) * stride - before
    high = max(n + after, last_start + span)
    keep = max(span + stride + 1, 4)
    positions = _visible_positions(-before, high, keep, keep)
    return {
        "positions": positions,
        "n": n,
        "first": (-before, -before + span - 1),
        "last": (last_start, last_start + span - 1),
        "ceil_beyond": n + after,
    }


def _cell_kind(position: int | None, axis: dict[str, Any]) -> str:
    if position is None:
        return "gap"
    if position < 0 or position >= axis["n"]:
        return "beyond" if position >= axis["ceil_beyond"] else "pad"
    return "input"


def _rect(x: float, y: float, kind: str, title: str) -> str:
    if kind == "gap":
        return (
            f'<text x="{x + CELL / 2}" y="{y + CELL - 3}" text-anchor="middle" class="gap">…</text>'
        )
    fill = {
        "input": COLORS["input"],
        "pad": COLORS["pad"],
        "beyond": "#ffffff",
        "crop": COLORS["crop"],
    }[kind]
    dash = ' stroke-dasharray="2 2"' if kind in ("beyond", "crop") else ""
    tip = f"<title>{escape(title)}</title>" if kind != "input" else ""
    return (
        f'<rect x="{x}" y="{y}" width="{CELL - 1}" height="{CELL - 1}" fill="{fill}" stroke="#888"{dash} '
        f'class="cell {kind}">{tip}</rect>'
    )


def padding_grid(
    rows: dict[str, Any], cols: dict[str, Any], row_name: str, col_name: str, label: str
) -> str:
    """A 2-D grid of the padded input with the first and last window outlined."""
    parts = []
    offset = 18
    for r, row_position in enumerate(rows["positions"]):
        for c, col_position in enumerate(cols["positions"]):
            x, y = offset + c * CELL, offset + r * CELL
            if row_position is None or col_position is None:
                if (row_position is None) != (col_position is None):
                    parts.append(_rect(x, y, "gap", ""))
                continue
            kinds = {_cell_kind(row_position, rows), _cell_kind(col_position, cols)}
            kind = "beyond" if "beyond" in kinds else "pad" if "pad" in kinds else "input"
            parts.append(
                _rect(x, y, kind, f"{row_name}={row_position}, {col_name}={col_position} ({kind})")
            )
    for key, color in (("first", COLORS["first"]), ("last", COLORS["last"])):
        if rows.get(key) is None or cols.get(key) is None:
            continue
        r0, r1 = (_index_of(rows["positions"], p) for p in rows[key])
        c0, c1 = (_index_of(cols["positions"], p) for p in cols[key])
        parts.append(
            f'<rect x="{offset + c0 * CELL - 1.5}" y="{offset + r0 * CELL - 1.5}" width="{(c1 - c0 + 1) * CELL + 2}" '
            f'height="{(r1 - r0 + 1) * CELL + 2}" fill="none" stroke="{color}" stroke-width="2.5" '
            f'class="window {key}"/>'
        )
    parts.append(f'<text x="{offset}" y="11" class="axis-label">{escape(col_name)} →</text>')
    parts.append(f'<text x="0" y="{offset + 11}" class="axis-label">{escape(row_name)}</text>')
    parts.append(f'<text x="2" y="{offset + 25}" class="axis-label">↓</text>')
    width = offset + len(cols["positions"]) * CELL + 4
    height = offset + len(rows["positions"]) * CELL + 4
    return (
        f'<svg class="grid" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>{"".join(parts)}</svg>'
    )


def padding_strip(
    axis: dict[str, Any], name: str, label: str, crop: tuple[int, int] | None = None
) -> str:
    """One axis as a row of cells (padded cells marked, first / last window bracketed)."""
    offset, top = 22, 8
    parts = [f'<text x="0" y="{top + 11}" class="axis-label">{escape(name)}</text>']
    for i, position in enumerate(axis["positions"]):
        kind = _cell_kind(position, axis)
        if crop and position is not None and (position < crop[0] or position >= crop[1]):
            kind = "crop"
        parts.append(_rect(offset + i * CELL, top, kind, f"{name}={position} ({kind})"))
    for row, (key, color) in enumerate((("first", COLORS["first"]), ("last", COLORS["last"]))):
        if axis.get(key) is None:
            continue
        start, end = (_index_of(axis["positions"], p) for p in axis[key])
        y = top + CELL + 4 + row * 6
        parts.append(
            f'<line x1="{offset + start * CELL}" y1="{y}" x2="{offset + (end + 1) * CELL - 1}" y2="{y}" '
            f'stroke="{color}" stroke-width="3" class="window {key}"/>'
        )
    width = offset + len(axis["positions"]) * CELL + 4
    height = top + CELL + 18
    return (
        f'<svg class="strip" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>{"".join(parts)}</svg>'
    )


def flatten_strips(
    shape: list[int],
    count: int,
    label_torch: str,
    label_keras: str,
    mark_torch: int = -1,
    mark_keras: int = -1,
) -> str:
    """The first ``count`` positions of the flattened vector in both orders, coloured by channel.

    The worked cell's position is outlined in each row where it falls among the drawn positions.
    """
    channels, spatial = shape[0], shape[1:]
    per_channel = 1
    for s in spatial:
        per_channel *= s
    total = channels * per_channel
    count = min(count, total)

    def unravel(index: int, sizes: list[int]) -> list[int]:
        out = []
        for size in reversed(sizes):
            out.append(index % size)
            index //= size
        return list(reversed(out))

    rows = []
    for row, (label, order) in enumerate(((label_torch, "torch"), (label_keras, "keras"))):
        y = 18 + row * 46
        rows.append(f'<text x="0" y="{y - 4}" class="axis-label">{escape(label)}</text>')
        for i in range(count):
            if order == "torch":
                c, *rest = unravel(i, shape)
            else:
                *rest, c = unravel(i, [*spatial, channels])
            hue = (c * 67) % 360
            marked = i == (mark_torch if order == "torch" else mark_keras)
            stroke = ' stroke="#1d232b" stroke-width="3"' if marked else ' stroke="#777"'
            title = f"position {i}: c={c}, " + ", ".join(str(v) for v in rest)
            rows.append(
                f'<rect x="{i * 22}" y="{y}" width="21" height="21" fill="hsl({hue} 70% 80%)"{stroke}>'
                f"<title>{escape(title)}</title></rect>"
                f'<text x="{i * 22 + 10.5}" y="{y + 15}" text-anchor="middle" class="cell-text">{c}</text>'
            )
    width = count * 22
    return (
        f'<svg class="flat" viewBox="0 0 {width} 110" width="{width}" height="110" role="img" '
        f'aria-label="{escape(label_torch)} / {escape(label_keras)}">{"".join(rows)}</svg>'
    )


def model_graph(layers: list[dict[str, Any]], label: str) -> str:
    """Nodes top to bottom in spec order; an edge from each input (skips curve round the right side)."""
    node_w, node_h, gap = 230, 26, 14
    names = ["input"] + [layer["name"] for layer in layers]
    y_of = {name: 4 + i * (node_h + gap) for i, name in enumerate(names)}
    parts = []
    for i, name in enumerate(names):
        kind = "input" if i == 0 else layers[i - 1]["label"]
        y = y_of[name]
        parts.append(
            f'<g class="node"><rect x="4" y="{y}" width="{node_w}" height="{node_h}" rx="5" fill="#eef3fb" '
            f'stroke="#4a6fa5"/><text x="12" y="{y + 17}" class="node-text">{escape(name)} · '
            f"{escape(kind)}</text></g>"
        )
    skips = 0
    for i, layer in enumerate(layers, start=1):
        for source in layer["inputs"]:
            y0, y1 = y_of[source] + node_h, y_of[layer["name"]]
            if names.index(source) == i - 1:
                parts.append(
                    f'<line x1="{4 + node_w / 2}" y1="{y0}" x2="{4 + node_w / 2}" y2="{y1}" '
                    f'stroke="#4a6fa5" marker-end="url(#arrow)"/>'
                )
            else:
                skips += 1
                x = 4 + node_w + 14 + 16 * (skips % 6)
                ys, ye = y0 - node_h / 2, y1 + node_h / 2
                parts.append(
                    f'<path d="M {4 + node_w} {ys} C {x} {ys}, {x} {ye}, {4 + node_w + 2} {ye}" fill="none" '
                    f'stroke="#c2410c" stroke-width="1.5" marker-end="url(#arrow)" class="skip"/>'
                )
    height = 8 + len(names) * (node_h + gap)
    width = node_w + 4 + 14 + 16 * 7
    defs = (
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#4a6fa5"/></marker></defs>'
    )
    return (
        f'<svg class="graph" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>{defs}{"".join(parts)}</svg>'
    )
