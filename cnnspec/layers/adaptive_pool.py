"""adaptive_avg_pool / adaptive_max_pool: PyTorch's adaptive pooling to a fixed output size, uneven windows included."""

from __future__ import annotations

import itertools
from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.resample import adaptive_windows
from cnnspec.engine.sizes import Size
from cnnspec.importers import torch as TI
from cnnspec.importers.common import compact
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, PositiveOrTuple
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class AdaptivePool(LayerBase):
    """Average or max pooling to a fixed output size with PyTorch's windows: along an axis of length n, output i
    pools cells [floor(i*n/out), ceil((i+1)*n/out)) -- windows overlap and differ in length when out does not divide n."""

    type: Literal["adaptive_avg_pool", "adaptive_max_pool"]
    output_size: PositiveOrTuple = Field(
        description="Output size: one int for every spatial dim, or one per dim."
    )


def _divides(layer: LayerPlan) -> bool:
    """Whether every output length divides its input length (a fixed pool is exact), at every input size."""
    return not layer.is_open and all(
        n % out == 0 for n, out in zip(layer.input_shape[1:], layer.output_shape[1:])
    )


@register
class AdaptivePoolDefinition(LayerDefinition):
    """adaptive pools: the frameworks' fixed pools when out divides n (exact then), else the helpers."""

    model = AdaptivePool
    family = "adaptive_pool"
    words = {
        "adaptiveavgpool2d": "adaptive_avg_pool",
        "adaptiveavgpool1d": "adaptive_avg_pool",
        "adaptiveavgpool3d": "adaptive_avg_pool",
        "adaptivemaxpool2d": "adaptive_max_pool",
        "adaptivemaxpool1d": "adaptive_max_pool",
        "adaptivemaxpool3d": "adaptive_max_pool",
    }
    hint_text = (
        "adaptive pool: PyTorch's windows [floor(i*n/out), ceil((i+1)*n/out)) overlap when out does not divide n; "
        "no fixed pool reproduces them."
    )
    examples = (
        example({"type": "adaptive_avg_pool", "output_size": [4, 3]}, size=(7, 8)),
        example({"type": "adaptive_max_pool", "output_size": 3}, size=(7, 8)),
        example({"type": "adaptive_avg_pool", "output_size": 2}, size=(6, 4)),
        example({"type": "adaptive_max_pool", "output_size": [2, 4]}, size=(4, 8)),
        example({"type": "adaptive_avg_pool", "output_size": 3}, size=(10,)),
        example(
            {"type": "adaptive_max_pool", "output_size": [2, 3, 2]}, channels=2, size=(3, 4, 5)
        ),
        example({"type": "adaptive_avg_pool", "output_size": [5, 4]}, size=(3, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = ctx.require_spatial(index, layer.type, shape)
        outs = ctx.per_dim(index, layer.output_size, "output_size", rank)
        formulas = []
        for n, out in zip(shape[1:], outs):
            windows = adaptive_windows(n, out)
            lengths = sorted({end - start for start, end in windows})
            shown = ", ".join(f"[{start}, {end})" for start, end in windows[:4]) + (
                ", …" if len(windows) > 4 else ""
            )
            formulas.append(
                f"{n} → {out}: windows {shown} (length {' or '.join(map(str, lengths))})"
            )
        return dict(
            output_shape=(shape[0], *outs),
            size_formulas=tuple(formulas),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(Size.fixed(n) for n in layer.output_shape[1:])

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        rank = T.spatial_rank(layer)
        outs = layer.output_shape[1:]
        size = T.int_text(outs[0]) if len(set(outs)) == 1 else T.ints_text(outs)
        if _divides(layer):
            kind = "Avg" if layer.type == "adaptive_avg_pool" else "Max"
            return T.single_module(layer, inputs, f"nn.Adaptive{kind}Pool{rank}d({size})")
        # The TorchScript ONNX exporter refuses uneven adaptive pools: the helper computes the same windows.
        reduction = "" if layer.type == "adaptive_avg_pool" else ', "max"'
        code = T.single_module(layer, inputs, f"AdaptivePool({T.ints_text(outs)}{reduction})")
        code.helpers.add("AdaptivePool")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        rank = layer.spatial_rank
        outs = layer.output_shape[1:]
        if _divides(layer):
            kind = "Average" if layer.type == "adaptive_avg_pool" else "Max"
            windows = [n // out for n, out in zip(layer.input_shape[1:], outs)]
            window = str(windows[0]) if len(set(windows)) == 1 else K.ints_text(windows)
            return K.single_layer(
                layer,
                ctx,
                f"layers.{kind}Pooling{K.RANK_SUFFIX[rank]}({window}, name={K.quoted(layer.name)})",
            )
        helper = ctx.use("AdaptivePooling")
        reduction = "" if layer.type == "adaptive_avg_pool" else ', "max"'
        return K.single_layer(
            layer, ctx, f"{helper}({K.ints_text(outs)}{reduction}, name={K.quoted(layer.name)})"
        )


@REGISTRY.attach("onnx", "adaptive_avg_pool", "adaptive_max_pool")
def adaptive_pool_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Every window [floor(i*n/out), ceil((i+1)*n/out)) as a Slice reduced with keepdims, concatenated per axis."""
    reduce = "ReduceMean" if layer.type == "adaptive_avg_pool" else "ReduceMax"
    sizes, outs = layer.input_shape[1:], layer.output_shape[1:]
    rank = len(sizes)
    axes = b.constant(b.temp(layer, "axes"), list(range(2, 2 + rank)), "int64")

    def windows(axis: int) -> list[tuple[int, int]]:
        n, out = sizes[axis], outs[axis]
        return [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]

    lengths = O.spatial_sizes(b, layer, inputs[0]) if layer.is_open else None
    cells: dict[tuple[int, ...], str] = {}
    for index in itertools.product(*(range(out) for out in outs)):
        tag = "_".join(map(str, index))
        if lengths is not None:
            starts, ends = _open_window(b, layer, lengths, index, tag)
        else:
            bounds = [windows(axis)[i] for axis, i in enumerate(index)]
            starts = b.constant(
                b.temp(layer, f"start_{tag}"), [start for start, _ in bounds], "int64"
            )
            ends = b.constant(b.temp(layer, f"end_{tag}"), [end for _, end in bounds], "int64")
        window = b.node("Slice", [inputs[0], starts, ends, axes], b.temp(layer, f"window_{tag}"))
        cells[index] = b.node(reduce, [window, axes], b.temp(layer, f"cell_{tag}"), keepdims=1)

    def joined(prefix: tuple[int, ...]) -> str:
        axis = len(prefix)
        if axis == rank:
            return cells[prefix]
        parts = [joined((*prefix, i)) for i in range(outs[axis])]
        name = layer.name if not prefix else b.temp(layer, "row_" + "_".join(map(str, prefix)))
        if len(parts) == 1:
            return b.node("Identity", parts, name)
        return b.node("Concat", parts, name, axis=2 + axis)

    return joined(())


def _open_window(
    b: O.GraphBuilder, layer: LayerPlan, lengths: str, index: tuple[int, ...], tag: str
) -> tuple[str, str]:
    """The window ``index`` from the run-time sizes n: [⌊i·n / out⌋, ⌈(i + 1)·n / out⌉) per axis."""
    outs = list(layer.output_shape[1:])

    def const(role: str, values: list[int]) -> str:
        return b.constant(b.temp(layer, f"{role}_{tag}"), values, "int64")

    def op(kind: str, operands: list[str], role: str) -> str:
        return b.node(kind, operands, b.temp(layer, f"{role}_{tag}"))

    divisor = const("outs", outs)
    first = op("Mul", [lengths, const("i", list(index))], "i_n")
    starts = op("Div", [first, divisor], "start")
    reach = op("Mul", [lengths, const("i_plus_one", [i + 1 for i in index])], "i1_n")
    rounded = op("Add", [reach, const("round_up", [out - 1 for out in outs])], "i1_n_up")
    return starts, op("Div", [rounded, divisor], "end")


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "AdaptivePooling", by="adaptive_avg_pool")
def read_keras_adaptive_pooling(ctx, layer, cfg, inputs, shapes):
    kind = (
        "adaptive_avg_pool" if cfg.get("reduction", "average") == "average" else "adaptive_max_pool"
    )
    ctx.add(layer, kind, inputs, output_size=compact(cfg["output_size"]))


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_adaptive_pool(kind: str):
    def reader(ctx, node, module):
        _torch_adaptive(ctx, node, kind, module.output_size)

    return reader


def _torch_adaptive(ctx, node, kind, output_size):
    shape = ctx.shape(node.args[0])
    rank = len(shape) - 1
    sizes = (
        (output_size,) * rank
        if isinstance(output_size, int) or output_size is None
        else tuple(output_size)
    )
    sizes = tuple(s if s is not None else n for s, n in zip(sizes, shape[1:]))
    if node.name in ctx.dict_names:  # a spec layer of a cnnspec-generated model: its own type
        ctx.add(node, node.args[:1], layer_type=f"adaptive_{kind}_pool", output_size=compact(sizes))
    elif all(s == 1 for s in sizes):
        ctx.add(node, node.args[:1], layer_type=f"global_{kind}_pool", keepdims=True)
    elif sizes == tuple(shape[1:]) and not any(ctx.open_axes):  # at any other size it pools
        ctx.builder.rewrite(
            TI.original_path(node),
            f"adaptive {kind} pool to {list(sizes)} on a {list(shape[1:])} map",
            "identity (every window is one cell)",
        )
        TI.pass_through(ctx, node, None)
    else:
        ctx.add(node, node.args[:1], layer_type=f"adaptive_{kind}_pool", output_size=compact(sizes))


def _torch_adaptive_pool_helper(ctx, node, module):
    kind = "avg" if module.reduction == "average" else "max"
    ctx.add(
        node,
        node.args[:1],
        layer_type=f"adaptive_{kind}_pool",
        output_size=compact(module.output_size),
    )


def _torch_f_adaptive(kind: str):
    def reader(ctx, node):
        _torch_adaptive(ctx, node, kind, TI.arg(node, 1, "output_size"))

    return reader


_ADAPTIVE_READS = (
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "global_avg_pool",
    "global_max_pool",
    "identity",
)


REGISTRY.reads(
    "torch_module",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    by="adaptive_avg_pool",
    produces=_ADAPTIVE_READS,
)(_torch_adaptive_pool("avg"))
REGISTRY.reads(
    "torch_module",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    by="adaptive_max_pool",
    produces=_ADAPTIVE_READS,
)(_torch_adaptive_pool("max"))
REGISTRY.reads("torch_module", "AdaptivePool", by="adaptive_avg_pool")(_torch_adaptive_pool_helper)
REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.adaptive_avg_pool1d",
    "torch.nn.functional.adaptive_avg_pool2d",
    "torch.nn.functional.adaptive_avg_pool3d",
    by="adaptive_avg_pool",
    produces=_ADAPTIVE_READS,
)(_torch_f_adaptive("avg"))
REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.adaptive_max_pool2d",
    by="adaptive_max_pool",
    produces=_ADAPTIVE_READS,
)(_torch_f_adaptive("max"))
