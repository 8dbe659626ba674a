"""``from_onnx``: an ONNX model (a file or ``onnx.ModelProto``) -> ModelSpec, weights from its initializers.

Graphs as torch.onnx writes them (NCHW) and as tf2onnx writes them (NHWC, with ``Transpose`` nodes
around the channels-first ops) are read.  Every tensor's layout is tracked -- channels first,
channels last, or flat (remembering whether it was flattened channels-last) -- so a ``Transpose``
pair is an alias, an element-wise op works in either layout, and a dense layer after a
channels-last flatten gets its rows put in the spec's channels-first order.  Every ONNX op type
a layer type reads is claimed by its definition (``REGISTRY.reads("onnx", ...)`` in
``cnnspec/layers/<type>.py``) with a reader ``(ctx, node, attrs)``; this module holds the walk,
the layout tracking (``Transpose`` is plumbing, not a layer) and the helpers readers share.
Node names become layer names (``/layer1/layer1.0/conv1/Conv`` ->
``layer1_0_conv1``, the node name kept in ``source``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnspec.importers.common import (
    ImportResult,
    SpecBuilder,
    compact_padding,
    refuse,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

FRAMEWORK = "onnx node"
FIRST, LAST, FLAT = "channels_first", "channels_last", "flat"


class _Tensor:
    """A graph value that is a spec layer's output: its spec name, layout, and for flat values the
    channels-last shape it was flattened from (None when flattened channels-first)."""

    def __init__(self, name: str, layout: str, flattened_last: tuple | None = None):
        self.name = name
        self.layout = layout
        self.flattened_last = flattened_last


class _Context:
    def __init__(self, proto):

        from onnx import numpy_helper, shape_inference

        self.proto = proto
        try:
            inferred = shape_inference.infer_shapes(proto)
        except Exception:  # noqa: BLE001 - inference is a help, not a requirement
            inferred = proto
        graph = inferred.graph
        self.constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.shapes: dict[str, tuple] = {}
        for value in list(graph.input) + list(graph.value_info) + list(graph.output):
            dims = value.type.tensor_type.shape.dim
            self.shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in dims
            )
        self.values: dict[str, _Tensor] = {}
        self.builder = SpecBuilder("onnx")
        self.tensors: dict[str, dict[str, np.ndarray]] = {}
        self.consumers: dict[str, int] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers[name] = self.consumers.get(name, 0) + 1
            if node.op_type == "Constant":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.node = None

    def value(self, name: str) -> _Tensor:
        if name not in self.values:
            raise refuse(
                FRAMEWORK,
                where(self.node),
                f"reads '{name}', which is neither a layer output nor supported here",
            )
        return self.values[name]

    def constant(self, name: str, what: str):
        if name not in self.constants:
            raise refuse(
                FRAMEWORK,
                where(self.node),
                f"its {what} '{name}' is computed, not a constant initializer",
                "cnnspec reads weights from initializers",
            )
        return self.constants[name]

    def add(
        self,
        node,
        layer_type: str,
        inputs: list[str],
        layout: str,
        tensors: dict | None = None,
        flattened_last: tuple | None = None,
        **fields,
    ) -> str:
        original = readable(node)
        name = self.builder.add(
            original,
            layer_type,
            [self.value(i).name for i in inputs],
            source=node.name or None,
            **fields,
        )
        self.values[node.output[0]] = _Tensor(name, layout, flattened_last)
        if tensors:
            self.tensors[name] = tensors
        return name

    def alias(
        self, node, source: str, layout: str | None = None, flattened_last: tuple | None = None
    ) -> None:
        value = self.value(source)
        self.values[node.output[0]] = _Tensor(
            value.name, layout or value.layout, flattened_last if layout else value.flattened_last
        )


def readable(node) -> str:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``; other names are kept as they are."""
    name = node.name or f"{node.op_type.lower()}_{node.output[0]}"
    parts = [part for part in name.strip("/").split("/") if part]
    if len(parts) >= 3 and parts[0].startswith(
        ("functional", "model", "sequential")
    ):  # tf2onnx: model/layer_1/op
        return parts[1].removesuffix("_1")
    if len(parts) > 1 and parts[-1].split("_")[0] == node.op_type:
        parts = parts[:-1]
    path = parts[0] if parts else node.op_type.lower()
    for part in parts[1:]:
        head, _, last = path.rpartition(".")
        if part.startswith(path + "."):  # torch scopes repeat the parent: layer1 / layer1.0
            path = part
        elif part.split(".")[0] == last and "." in part:  # conv / conv.0 -> ... .conv.0
            path = f"{head}.{part}" if head else part
        else:
            path = f"{path}.{part}"
    return path


def where(node) -> str:
    """How a refusal names a node: ``'name' (OpType)``."""
    if node is None:
        return "graph"
    return f"'{node.name or node.output[0]}' ({node.op_type})"


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def decode(value):
    """An ONNX string attribute as str."""
    return value.decode() if isinstance(value, bytes) else value


def _spatial_rank(ctx, name) -> int:
    shape = ctx.shapes.get(name)
    if shape is None:
        raise refuse(
            FRAMEWORK,
            where(ctx.node),
            f"the shape of '{name}' is unknown",
            "export with fixed input shapes",
        )
    return len(shape) - 2


def require(ctx, name: str, layout: str, what: str) -> None:
    """Refuse an op that needs ``layout`` (a channels-first op on a channels-last tensor, say)."""
    if ctx.value(name).layout != layout:
        raise refuse(
            FRAMEWORK,
            where(ctx.node),
            f"{what} on a {ctx.value(name).layout} tensor",
            "channels-last graphs must wrap these ops in Transpose nodes, as tf2onnx does",
        )


def padding_of(attrs, rank: int, node, key: str = "pads"):
    """ONNX ``auto_pad`` / ``pads`` as the spec's padding ('same', 'valid' or pairs)."""
    auto = decode(attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER",):
        return "same"
    if auto == "VALID":
        return "valid"
    if auto == "SAME_LOWER":
        raise refuse(
            FRAMEWORK,
            where(node),
            "auto_pad SAME_LOWER (the odd cell first)",
            "SAME_UPPER is spec padding 'same'",
        )
    pads = list(attrs.get(key, [0] * (2 * rank)))
    pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    return "valid" if not any(any(pair) for pair in pairs) else compact_padding(pairs)


def drop_defaults(**values) -> dict[str, Any]:
    """Drop the spec defaults so the spec reads like one written by hand."""
    defaults = {
        "stride": 1,
        "dilation": 1,
        "padding": "valid",
        "groups": 1,
        "bias": True,
        "depth_multiplier": 1,
    }
    return {
        key: value for key, value in values.items() if key not in defaults or defaults[key] != value
    }


# ----------------------------------------------------------------------------------------------
# Layout plumbing (the readers of layer types are in cnnspec/layers)
# ----------------------------------------------------------------------------------------------


def flat_order(ctx, source: str, tensors: dict) -> dict:
    """Per-feature vectors read on a channels-last flatten, put in the spec's channels-first order."""
    import numpy as np

    value = ctx.values.get(source)
    if value is None or value.flattened_last is None:
        return tensors
    index = np.moveaxis(
        np.arange(int(np.prod(value.flattened_last))).reshape(value.flattened_last), -1, 0
    ).reshape(-1)
    return {
        key: array[index] if array.ndim == 1 else array[:, index] for key, array in tensors.items()
    }


def _transpose(ctx, node, attrs):
    perm = list(attrs.get("perm", []))
    rank = len(perm)
    to_first = [0, rank - 1, *range(1, rank - 1)]
    to_last = [0, *range(2, rank), 1]
    value = ctx.value(node.input[0])
    if perm == to_first and value.layout == LAST:
        ctx.alias(node, node.input[0], FIRST)
    elif perm == to_last and value.layout == FIRST:
        ctx.alias(node, node.input[0], LAST)
    else:
        raise refuse(
            FRAMEWORK,
            where(node),
            f"Transpose {perm} of a {value.layout} tensor",
            "only the layout changes NHWC <-> NCHW that tf2onnx inserts are supported",
        )


def _readers() -> dict[str, Callable[..., None]]:
    """ONNX op type -> reader: what the layer definitions claim, and the layout plumbing."""
    from cnnspec.layers import REGISTRY

    readers = {op: claim.reader for op, claim in REGISTRY.claims("onnx").items()}
    readers[_LAYOUT_CHANGE] = _transpose
    return readers


# tf2onnx wraps channels-first ops in these: a layout change of the same values, never a layer.
_LAYOUT_CHANGE = "Transpose"


def _load(path_or_model):
    import onnx

    if isinstance(path_or_model, (str, Path)):
        path = Path(path_or_model)
        if not path.is_file():
            raise refuse("onnx", f"file {path}", "not found")
        try:
            return onnx.load(str(path))
        except Exception as error:  # noqa: BLE001 - protobuf decode errors have many types
            raise refuse("onnx", f"file {path}", f"is not a readable ONNX model: {error}") from None
    if type(path_or_model).__name__ != "ModelProto":
        raise refuse(
            "onnx",
            "model",
            f"is a {type(path_or_model).__name__}, not an onnx.ModelProto or .onnx file",
        )
    return path_or_model


def import_onnx(path_or_model) -> ImportResult:
    """Import an ONNX model; returns the spec, rewrites and its weights (see :func:`from_onnx`)."""
    proto = _load(path_or_model)
    ctx = _Context(proto)
    graph = proto.graph
    inputs = [value for value in graph.input if value.name not in ctx.constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise refuse(
            "onnx",
            f"graph '{graph.name}'",
            f"has {len(inputs)} inputs and {len(graph.output)} outputs; cnnspec imports one of each",
        )
    input_name = inputs[0].name
    shape = ctx.shapes.get(input_name) or ()
    layout = _input_layout(graph, input_name)
    channels = (shape[1] if layout == FIRST else shape[-1]) if len(shape) in (3, 4, 5) else None
    if channels is None:
        raise refuse(
            "onnx",
            f"input '{input_name}'",
            f"has shape {shape}",
            "export with a known number of channels (the spatial sizes may be symbolic)",
        )
    ctx.values[input_name] = _Tensor("input", layout)
    # a symbolic spatial dimension (dim_param, or none) is an open size of the spec
    size = list(shape[2:]) if layout == FIRST else list(shape[1:-1])
    shape_only = _shape_only_nodes(graph)
    readers = _readers()
    for node in graph.node:
        if node.op_type == "Constant" or node.output[0] in shape_only or _fold_constant(ctx, node):
            continue
        ctx.node = node
        handler = readers.get(node.op_type)
        if handler is None:
            raise refuse(
                FRAMEWORK,
                where(node),
                f"op {node.op_type} is not supported",
                "supported ops: " + ", ".join(sorted(readers)),
            )
        handler(ctx, node, _attrs(node))
    output = ctx.values.get(graph.output[0].name)
    if output is None or not ctx.builder.layers or output.name != ctx.builder.layers[-1]["name"]:
        raise refuse("onnx", f"graph '{graph.name}'", "its output is not the last layer computed")
    name = (
        graph.name
        if graph.name and graph.name not in ("main_graph", "torch_jit", "tf2onnx")
        else "model"
    )
    spec = ctx.builder.finish(name, channels, size)
    return ImportResult(
        spec=spec,
        rewrites=ctx.builder.rewrites,
        framework="onnx",
        details={"model": proto, "tensors": ctx.tensors, "input_layout": layout},
    )


def _shape_only_nodes(graph) -> set[str]:
    """Nodes that only compute a Reshape's target shape (Shape -> Gather -> Concat ...): not layers."""
    shape_values = {
        node.input[1] for node in graph.node if node.op_type == "Reshape" and len(node.input) > 1
    }
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    skipped: set[str] = set()  # by first output name: protobuf wrappers have no stable id()
    for node in reversed(list(graph.node)):
        if node.output and all(out in shape_values for out in node.output):
            skipped.add(node.output[0])
            if node.op_type != "Shape":  # a Shape node reads a data tensor; that tensor stays data
                shape_values.update(name for name in node.input if name)
    for name in list(shape_values):  # a value also used as data is not shape-only
        for user in consumers.get(name, []):
            if user.output[0] not in skipped and not (
                user.op_type == "Reshape" and list(user.input).index(name) == 1
            ):
                shape_values.discard(name)
    return skipped


def _fold_constant(ctx, node) -> bool:
    """A node whose inputs are all constants (a kernel reshaped by tf2onnx) is computed once here."""
    import numpy as np

    inputs = [name for name in node.input if name]
    if not inputs or not all(name in ctx.constants for name in inputs):
        return False
    from onnx.reference import ReferenceEvaluator

    results = ReferenceEvaluator(node).run(None, {name: ctx.constants[name] for name in inputs})
    for name, value in zip(node.output, results):
        ctx.constants[name] = np.asarray(value)
    return True


def _input_layout(graph, input_name) -> str:
    """Channels last when the input's only consumers are NHWC -> NCHW Transposes (tf2onnx's pattern)."""
    from onnx import helper

    consumers = [node for node in graph.node if input_name in node.input]
    for node in consumers:
        if node.op_type != _LAYOUT_CHANGE:
            return FIRST
        perm = list(
            next((helper.get_attribute_value(a) for a in node.attribute if a.name == "perm"), [])
        )
        rank = len(perm)
        if perm != [0, rank - 1, *range(1, rank - 1)]:
            return FIRST
    return LAST if consumers else FIRST


def onnx_tensors(path_or_model, plan) -> dict:
    """The weights of an ONNX original by spec layer (neutral PyTorch layout), for ``transfer_weights``."""
    from cnnspec.importers.origin import OriginalWeightError

    tensors = import_onnx(path_or_model).details["tensors"]
    missing = [layer.name for layer in plan.layers if layer.params and layer.name not in tensors]
    if missing:
        raise OriginalWeightError(
            f"the ONNX model has no weights for spec layer(s) {', '.join(missing)}"
        )
    return tensors


def verify_against_onnx(
    plan,
    result,
    converted,
    *,
    progress=None,
    atol=None,
    rtol=None,
    sync_weights=False,
    input_sizes=None,
):
    """Per-layer comparison of the converted model with the ORIGINAL ONNX graph, both run in onnxruntime.

    A spec with open sizes is compared at each of ``input_sizes`` (default
    :func:`cnnspec.verifier.run.default_sizes`): the converted model is exported once with
    dynamic axes, both graphs run at every size.
    """
    return _verify_onnx_original(plan, result, converted, progress, atol, rtol, input_sizes)


def _verify_onnx_original(plan, result, converted, progress, atol, rtol, input_sizes=None):
    import tempfile

    import numpy as np
    import onnx

    from cnnspec.verifier import onnx_export as X
    from cnnspec.verifier.compare import DEFAULT_ATOL, DEFAULT_RTOL
    from cnnspec.verifier.run import combine_sizes, make_input, size_plans

    atol = DEFAULT_ATOL if atol is None else atol
    rtol = DEFAULT_RTOL if rtol is None else rtol
    plans = size_plans(plan, input_sizes)
    proto = onnx.ModelProto()
    proto.CopyFrom(result.details["model"])
    layout = result.details["input_layout"]
    # Expose every spec layer's ONNX value as a graph output (its last producer, in graph order).
    ctx_values = _values_by_layer(result.details["model"])
    known = {output.name for output in proto.graph.output}
    for name, (value, value_layout) in ctx_values.items():
        if value not in known:
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(value))
            known.add(value)
    batch = _fixed_batch(proto) or 2
    open_axes = plan.open_axes if plan.is_open else ()
    names = [layer.name for layer in plan.layers]
    if progress:
        progress("running the original ONNX graph and the converted model")
    reports = []
    with tempfile.TemporaryDirectory(prefix="cnnspec-convert-") as workdir:
        original_path = Path(workdir) / "original.onnx"
        onnx.save(proto, str(original_path))
        x = make_input(plan, batch, 0)
        if _is_torch(converted):
            graph = X.export_torch(
                converted, names, x, Path(workdir) / "torch.onnx", open_axes=open_axes
            )
        else:
            shape_last = list(np.moveaxis(x, 1, -1).shape[1:])
            for axis, is_open in enumerate(open_axes):
                if is_open:
                    shape_last[axis] = None
            graph = X.export_keras(
                converted, names, tuple(shape_last), Path(workdir) / "keras.onnx"
            )
        for size_plan in plans:
            reports.append(
                _compare_with_original(
                    size_plan,
                    original_path,
                    proto,
                    ctx_values,
                    graph,
                    converted,
                    layout,
                    batch=batch,
                    atol=atol,
                    rtol=rtol,
                )
            )
    return combine_sizes(reports, plans, open_axes)


def _compare_with_original(
    plan, original_path, proto, ctx_values, graph, converted, layout, *, batch, atol, rtol
):
    """The converted model against the original ONNX graph at the plan's input size."""
    from cnnspec.verifier import compare as C
    from cnnspec.verifier import onnx_export as X
    from cnnspec.verifier.report import LayerReport, VerifyReport
    from cnnspec.verifier.run import make_input

    x = make_input(plan, batch, 0)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    values = X.run_onnx(original_path, x if layout == FIRST else x_last)
    by_name = dict(zip([output.name for output in proto.graph.output], values))
    original_first = {}
    for name, (value, value_layout) in ctx_values.items():
        array = by_name[value]
        if value_layout == LAST and array.ndim > 2:
            array = np.moveaxis(array, -1, 1)
        original_first[name] = array
    if _is_torch(converted):
        converted_values = dict(zip(graph.layer_names, X.run_graph(graph, x)))
        torch_side, keras_side = converted_values, _to_last(plan, original_first)
    else:
        converted_values = dict(zip(graph.layer_names, X.run_graph(graph, x_last)))
        torch_side, keras_side = original_first, converted_values
    diffs = C.compare_layers(plan, torch_side, keras_side, atol=atol, rtol=rtol)
    layers = [LayerReport.from_diff(d) for d in diffs]
    divergent = C.first_divergent(diffs)
    compared = [d for d in diffs if d.ok is not None]
    finite = [d.max_abs_diff for d in compared if d.max_abs_diff is not None]
    ok = divergent is None and bool(compared)
    problems = (
        []
        if divergent is None
        else [f"first divergent layer '{divergent.name}' ({divergent.type})"]
    )
    return VerifyReport(
        ok=ok,
        spec=plan.name,
        atol=atol,
        rtol=rtol,
        batch=batch,
        seed=0,
        opset=18,
        max_abs_diff=max(finite) if finite else None,
        max_rel_diff=None,
        mean_abs_diff=diffs[-1].mean_abs_diff,
        output_max_abs_diff=diffs[-1].max_abs_diff,
        first_divergent_layer=None if divergent is None else divergent.name,
        divergence=None,
        params_ok=True,
        params={},
        layers=layers,
        observation={"original": "onnx graph outputs", "converted": graph.observation},
        problems=problems,
        input_size=list(plan.input_shape[1:]),
    )


def _fixed_batch(proto) -> int | None:
    initializers = {init.name for init in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name not in initializers:
            dims = value.type.tensor_type.shape.dim
            return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    return None


def _values_by_layer(proto) -> dict[str, tuple[str, str]]:
    """Spec layer name -> (the ONNX value holding its output, that value's layout)."""
    ctx = _Context(proto)
    graph = proto.graph
    input_name = [v.name for v in graph.input if v.name not in ctx.constants][0]
    ctx.values[input_name] = _Tensor("input", _input_layout(graph, input_name))
    found: dict[str, tuple[str, str]] = {}
    shape_only = _shape_only_nodes(graph)
    readers = _readers()
    for node in graph.node:
        if node.op_type == "Constant" or node.output[0] in shape_only or _fold_constant(ctx, node):
            continue
        ctx.node = node
        before = len(ctx.builder.layers)
        readers[node.op_type](ctx, node, _attrs(node))
        value = ctx.values.get(node.output[0])
        if value is not None and (len(ctx.builder.layers) > before or value.name in found):
            found[value.name] = (node.output[0], value.layout)
    return found


def _to_last(plan, arrays: dict) -> dict:
    """Channels-first arrays -> the channels-last layout compare_layers expects on its Keras side."""
    import numpy as np

    from cnnspec.weights.transfer import flat_permutation

    out = {}
    for layer in plan.layers:
        array = arrays.get(layer.name)
        if array is None:
            continue
        if array.ndim > 2:
            out[layer.name] = np.moveaxis(array, 1, -1)
        elif layer.flat_segments is not None:
            out[layer.name] = array[:, flat_permutation(layer.flat_segments)]
        else:
            out[layer.name] = array
    return out


def _is_torch(model) -> bool:
    import sys

    return "torch" in sys.modules and isinstance(model, sys.modules["torch"].nn.Module)


def from_onnx(path_or_model):
    """Import an ONNX model as a cnnspec ModelSpec.

    Args:
        path_or_model: an ``.onnx`` file or an ``onnx.ModelProto`` with one input of fixed size,
            NCHW (torch.onnx) or NHWC with tf2onnx's Transpose pairs; weights are initializers.

    Returns:
        The :class:`~cnnspec.spec.models.ModelSpec`; node names become layer names, each node name
        kept in ``source``.

    Raises:
        UnsupportedModel: an op no cnnspec type expresses exactly (named with the ONNX node).
    """
    return import_onnx(path_or_model).spec
