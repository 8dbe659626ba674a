"""The verification report: a pydantic model (JSON for machines) and a table (for people).

``VerifyReport.to_json()`` is what ``cnnspec verify --json`` writes; ``render()`` is the
table printed otherwise (with rich when it is installed, plain text when not).
"""

from __future__ import annotations

import io
import json
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, Field

from cnnspec.verifier.tolerances import DEFAULT_ATOL, DEFAULT_RTOL  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from rich.console import JustifyMethod


PARAM_SOURCES = ("spec", "onnx_original", "torch", "keras", "torch_onnx", "keras_onnx")
TIMING_STEPS = (
    "import",
    "build",
    "transfer",
    "export_torch",
    "export_keras",
    "run_torch",
    "run_keras",
    "referee",
    "compare",
)


class ParamReport(BaseModel):
    """Parameter elements counted by one source."""

    trainable: Optional[int] = None
    non_trainable: Optional[int] = None
    total: Optional[int] = None
    ok: Optional[bool] = Field(
        None, description="agrees with the spec; None = informational (ONNX)"
    )
    notes: list[str] = Field(default_factory=list)


class LayerReport(BaseModel):
    """One spec layer's output in the two ONNX graphs."""

    name: str
    type: str
    shape_ok: Optional[bool] = None
    torch_shape: Optional[list[int]] = Field(None, description="channels-first, batch excluded")
    keras_shape: Optional[list[int]] = Field(None, description="channels-last, batch excluded")
    expected_shape: list[int] = Field(description="the plan's channels-first output shape")
    expected_shape_last: list[int] = Field(
        default_factory=list, description="the plan's channels-last output shape"
    )
    max_abs_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    max_rel_diff: Optional[float] = None
    worst_index: Optional[list[int]] = Field(
        None, description="(batch, C, *spatial) index of the largest difference"
    )
    scale: Optional[float] = Field(
        None,
        description="root mean square of torch's output; above 1, atol is taken relative to it",
    )
    ok: Optional[bool] = Field(
        None, description="None when the layer is not observable in both graphs"
    )
    note: Optional[str] = None
    reading: Optional[str] = Field(
        None, description="how a hand-written model's output of this layer was read"
    )
    misaligned: bool = Field(
        False,
        description="this reading disagrees although the model's output agrees: "
        "the part read is not the spec layer, the model is not wrong",
    )

    @classmethod
    def from_diff(cls, d: Any, **extra: Any) -> LayerReport:
        """The report row of one compared layer (a :class:`cnnspec.verifier.compare.LayerDiff`)."""
        return cls(
            name=d.name,
            type=d.type,
            shape_ok=d.shape_ok,
            torch_shape=None if d.torch_shape is None else list(d.torch_shape),
            keras_shape=None if d.keras_shape is None else list(d.keras_shape),
            expected_shape=list(d.expected_shape),
            expected_shape_last=list(d.expected_shape_last),
            max_abs_diff=d.max_abs_diff,
            mean_abs_diff=d.mean_abs_diff,
            max_rel_diff=d.max_rel_diff,
            worst_index=None if d.worst_index is None else list(d.worst_index),
            scale=d.scale,
            ok=d.ok,
            note=d.note,
            **extra,
        )


class Evidence(BaseModel):
    """A hypothesis about the divergence, tested on the numbers."""

    name: str = Field(description="one_cell_shift or flatten_permutation")
    holds: bool
    detail: str


class MatchRow(BaseModel):
    """Where one spec layer (or a part of it) lives in a hand-written model."""

    spec_layer: str
    part: str = Field(
        description="the spec part: the layer, or <layer>_depthwise / <layer>_pointwise"
    )
    target: str = Field(description="torch module path or Keras layer name")
    how: str = Field(description="name, name_map or order (order and type)")
    kind: str


class Divergence(BaseModel):
    """The first layer (spec order) whose outputs disagree."""

    name: str
    type: str
    max_abs_diff: Optional[float] = None
    max_rel_diff: Optional[float] = None
    hint: str = ""
    evidence: list[Evidence] = Field(
        default_factory=list, description="hypotheses checked on the numbers"
    )


class RefereeReport(BaseModel):
    """The spec's own ONNX graph, run with the same weights, against each model."""

    weights_from: str = Field(
        description="the model the referee's weights were read from (torch or keras)"
    )
    torch_departs_at: Optional[str] = Field(
        None, description="first spec layer where torch departs from the spec"
    )
    keras_departs_at: Optional[str] = Field(
        None, description="first spec layer where keras departs from the spec"
    )
    torch_max_abs_diff: Optional[float] = None
    keras_max_abs_diff: Optional[float] = None
    torch_layers_compared: int = 0
    keras_layers_compared: int = 0
    verdict: str = ""


class SizeReport(BaseModel):
    """The verdict at one input size of a spec verified at several."""

    input_size: list[int] = Field(description="the spatial input size (H, W...)")
    ok: bool
    first_divergent_layer: Optional[str] = None
    max_abs_diff: Optional[float] = None
    output_max_abs_diff: Optional[float] = None
    problems: list[str] = Field(default_factory=list)


class VerifyReport(BaseModel):
    """The result of verifying one spec."""

    ok: bool
    spec: str = Field(description="the spec's model name")
    source: Optional[str] = Field(
        default=None, description="the spec file, when verified from a file"
    )
    atol: float
    rtol: float
    batch: int
    seed: int
    opset: int
    max_abs_diff: Optional[float] = Field(None, description="over every compared layer")
    max_rel_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = Field(
        None, description="of the model output (last spec layer)"
    )
    output_max_abs_diff: Optional[float] = None
    first_divergent_layer: Optional[str] = None
    divergence: Optional[Divergence] = None
    params_ok: bool = True
    params: dict[str, ParamReport] = Field(default_factory=dict)
    layers: list[LayerReport] = Field(default_factory=list)
    compared: Optional[str] = Field(
        default=None,
        description="what was compared, when not the PyTorch and Keras models of the spec "
        "(the original ONNX graph and the model converted from it)",
    )
    observation: dict[str, str] = Field(
        default_factory=dict, description="how each graph exposes layer outputs"
    )
    matching: dict[str, list[MatchRow]] = Field(
        default_factory=dict, description="spec layer -> part of each hand-written model"
    )
    notes: list[str] = Field(
        default_factory=list, description="remarks that do not change the verdict"
    )
    problems: list[str] = Field(
        default_factory=list, description="every reason the verification failed"
    )
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per step")
    versions: dict[str, str] = Field(default_factory=dict)
    onnx_files: dict[str, str] = Field(
        default_factory=dict, description="kept ONNX files (--keep-onnx)"
    )
    referee: Optional[RefereeReport] = Field(
        default=None, description="each model against the spec's own ONNX graph"
    )
    referee_note: Optional[str] = Field(
        default=None, description="why there is no referee, when there is none"
    )
    input_size: list[int] = Field(
        default_factory=list, description="the spatial input size of the layer rows"
    )
    open_axes: list[str] = Field(
        default_factory=list,
        description="the axes the spec leaves open: exported as dynamic axes of both graphs",
    )
    sizes: list[SizeReport] = Field(
        default_factory=list,
        description="the verdict at each input size, when verified at several",
    )

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return self.model_dump_json(indent=indent)

    def to_dict(self) -> dict:
        """The report as a JSON-compatible dict."""
        return json.loads(self.model_dump_json())

    def summary_line(self) -> str:
        """One line: verdict, model, worst difference (and the size it is at, for several sizes)."""
        worst = "n/a" if self.max_abs_diff is None else f"{self.max_abs_diff:.2e}"
        if self.ok:
            if self.sizes:
                worst = _fmt_diff(
                    max(
                        (s.max_abs_diff for s in self.sizes if s.max_abs_diff is not None),
                        default=None,
                    )
                )
                return (
                    f"OK        {self.spec}: {len(self.layers)} layers agree at "
                    f"{_sizes_text(self.sizes)} (max abs diff {worst}, atol {self.atol:g}, rtol {self.rtol:g})"
                )
            return f"OK        {self.spec}: {len(self.layers)} layers agree (max abs diff {worst}, atol {self.atol:g}, rtol {self.rtol:g})"
        at = f" at {_size(self.input_size)}" if self.sizes else ""
        if self.first_divergent_layer:
            d = self.divergence
            diff = (
                ""
                if d is None or d.max_abs_diff is None
                else f" (max abs diff {d.max_abs_diff:.2e})"
            )
            return f"MISMATCH  {self.spec}{at}: first divergent layer '{self.first_divergent_layer}'{diff}"
        return f"MISMATCH  {self.spec}: " + ("; ".join(self.problems) or "see the report")

    def render(self, use_rich: bool | None = None, width: int = 120, color: bool = False) -> str:
        """The report as a table for people.

        Args:
            use_rich: force rich on/off; default: rich when it is importable.
            width: the text width.
            color: emit terminal colours (rich only).
        """
        if use_rich is not False:
            try:
                return _render_rich(self, width, color)
            except ImportError:
                if use_rich:
                    raise
        return _render_plain(self)


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _fmt_shape(shape: list[int] | None) -> str:
    return "—" if shape is None else "×".join(map(str, shape)) or "scalar"


def _fmt_diff(value: float | None) -> str:
    return "—" if value is None else f"{value:.2e}"


def _size(size: list[int]) -> str:
    return "×".join(map(str, size))


def _sizes_text(sizes: list[SizeReport]) -> str:
    return ", ".join(_size(s.input_size) for s in sizes)


def _title(report: VerifyReport) -> str:
    title = f"cnnspec verify: {report.spec}" + (f" ({report.source})" if report.source else "")
    if report.sizes:
        title += f" — layers at {_size(report.input_size)} (of {_sizes_text(report.sizes)})"
    elif report.open_axes:
        title += f" — at {_size(report.input_size)}"
    return title


def _size_lines(report: VerifyReport) -> list[str]:
    """One line per input size, when the spec was verified at several."""
    lines = []
    for size in report.sizes:
        if size.ok:
            verdict = f"OK (max abs diff {_fmt_diff(size.max_abs_diff)})"
        elif size.first_divergent_layer:
            verdict = f"MISMATCH, first divergent layer '{size.first_divergent_layer}'"
        else:
            verdict = "MISMATCH: " + ("; ".join(size.problems[:1]) or "see the problems")
        lines.append(f"  {_size(size.input_size):>11}  {verdict}")
    if lines:
        axes = ", ".join(report.open_axes) or "none"
        lines.insert(0, f"Input sizes (one export, dynamic axes: {axes}):")
    return lines


def _status(layer: LayerReport) -> str:
    if layer.misaligned:
        return "misaligned"
    if layer.ok is None:
        return "n/a"
    return "ok" if layer.ok else "DIFF"


def _shape_cell(layer: LayerReport) -> str:
    text = _fmt_shape(layer.expected_shape)
    if layer.shape_ok is False:
        text += f" (torch {_fmt_shape(layer.torch_shape)}, keras {_fmt_shape(layer.keras_shape)})"
    return text


def _part_name(row: MatchRow) -> str:
    return row.part if row.part == row.spec_layer else f"{row.spec_layer} ({row.part})"


def _param_rows(report: VerifyReport) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for source in PARAM_SOURCES:
        count = report.params.get(source)
        if count is None:
            continue
        status = "info" if count.ok is None else ("ok" if count.ok else "DIFF")
        rows.append(
            (
                source,
                "—" if count.trainable is None else f"{count.trainable:,}",
                "—" if count.non_trainable is None else f"{count.non_trainable:,}",
                status,
                "; ".join(count.notes),
            )
        )
    return rows


def _verdict_lines(report: VerifyReport) -> list[str]:
    lines = _size_lines(report)
    if report.ok:
        where = f" at {_sizes_text(report.sizes)}" if report.sizes else ""
        worst = report.max_abs_diff
        if report.sizes:
            worst = max(
                (s.max_abs_diff for s in report.sizes if s.max_abs_diff is not None), default=None
            )
        read = sum(1 for layer in report.layers if layer.ok is not None)
        scope = (
            "every layer"
            if read == len(report.layers)
            else f"the {read} of {len(report.layers)} layers both graphs expose"
        )
        lines.append(
            f"VERDICT: OK — {report.compared or f'PyTorch and Keras models of {report.spec!r}'} "
            f"agree on {scope}{where} "
            f"(max abs diff {_fmt_diff(worst)}; atol {report.atol:g}, rtol {report.rtol:g})."
        )
    else:
        lines.append(f"VERDICT: MISMATCH — '{report.spec}'.")
        if report.divergence is not None:
            d = report.divergence
            at = f" at {_size(report.input_size)}" if report.sizes else ""
            lines.append(
                f"First divergent layer{at}: {d.name} ({d.type}), max abs diff {_fmt_diff(d.max_abs_diff)}, "
                f"max rel diff {_fmt_diff(d.max_rel_diff)}."
            )
            lines.append(f"Hint: {d.hint}")
        if report.referee is not None:
            lines.append(f"Referee (the spec's own ONNX graph): {report.referee.verdict}.")
        for problem in report.problems:
            lines.append(f"- {problem}")
    if report.referee is None and report.referee_note:
        lines.append(f"{report.referee_note[:1].upper()}{report.referee_note[1:]}.")
    for note in report.notes:
        lines.append(f"Note: {note}")
    if report.timings:
        lines.append("Timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items()))
    return lines


def _render_plain(report: VerifyReport) -> str:
    out = io.StringIO()
    out.write(_title(report) + "\n\n")
    header: tuple[str, ...] = ("layer", "type", "shape (C-first)", "max abs diff", "status")
    rows: list[tuple[str, ...]] = [
        (layer.name, layer.type, _shape_cell(layer), _fmt_diff(layer.max_abs_diff), _status(layer))
        for layer in report.layers
    ]
    if any(layer.reading for layer in report.layers):
        header += ("read as",)
        rows = [(*row, layer.reading or "") for row, layer in zip(rows, report.layers)]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        out.write("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    for framework, matches in report.matching.items():
        out.write(f"\nMatching: spec layer -> {framework} model\n")
        table = [("spec layer", f"{framework} part", "how", "kind")]
        table += [(_part_name(match), match.target, match.how, match.kind) for match in matches]
        widths = [max(len(r[i]) for r in table) for i in range(4)]
        for row in table:
            out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
    out.write("\nParameters\n")
    param_header = ("source", "trainable", "non-trainable", "status", "notes")
    param_rows = _param_rows(report)
    widths = [max(len(str(r[i])) for r in [param_header, *param_rows]) for i in range(4)]
    for row in [param_header, *param_rows]:
        out.write(
            "  ".join(str(cell).ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] + "\n"
        )
    out.write("\n" + "\n".join(_verdict_lines(report)) + "\n")
    return out.getvalue()


def _render_rich(report: VerifyReport, width: int, color: bool) -> str:
    from rich.console import Console
    from rich.table import Table

    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=color,
        color_system="auto" if color else None,
        no_color=not color,
        highlight=False,
    )
    table = Table(title=_title(report), title_justify="left")
    layer_columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("layer", "left"),
        ("type", "left"),
        ("shape (C-first)", "left"),
        ("max abs diff", "right"),
        ("status", "left"),
    )
    for column, justify in layer_columns:
        table.add_column(column, justify=justify)
    readings = any(layer.reading for layer in report.layers)
    if readings:
        table.add_column("read as", overflow="fold")
    for layer in report.layers:
        status = _status(layer)
        style = {"ok": "green", "DIFF": "bold red", "misaligned": "yellow"}.get(status, "dim")
        cells = [
            layer.name,
            layer.type,
            _shape_cell(layer),
            _fmt_diff(layer.max_abs_diff),
            f"[{style}]{status}[/]",
        ]
        table.add_row(*cells, *([layer.reading or ""] if readings else []))
    console.print(table)
    for framework, rows in report.matching.items():
        matching = Table(title=f"Matching: spec layer -> {framework} model", title_justify="left")
        for column in ("spec layer", f"{framework} part", "how", "kind"):
            matching.add_column(column, overflow="fold")
        for row in rows:
            matching.add_row(_part_name(row), row.target, row.how, row.kind)
        console.print(matching)
    params = Table(title="Parameters", title_justify="left")
    param_columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("source", "left"),
        ("trainable", "right"),
        ("non-trainable", "right"),
        ("status", "left"),
        ("notes", "left"),
    )
    for column, justify in param_columns:
        params.add_column(column, justify=justify, overflow="fold")
    for param_row in _param_rows(report):
        params.add_row(*param_row)
    console.print(params)
    for line in _verdict_lines(report):
        style = (
            "bold green"
            if line.startswith("VERDICT: OK")
            else ("bold red" if line.startswith("VERDICT") else "")
        )
        console.print(f"[{style}]{line}[/]" if style else line, markup=bool(style), soft_wrap=False)
    return buffer.getvalue()
