"""pad1d/2d/3d: constant (any value), reflect or replicate padding of the spatial dims."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.channels import padded_length
from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import compact_padding, refuse
from cnnspec.layers.channel_pad import onnx_channel_pad, torch_channel_pad
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, NonNegative, PadPair
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Pad(LayerBase):
    """Pad the spatial dims with a constant, by reflection, or by repeating the edge cell."""

    type: Literal["pad1d", "pad2d", "pad3d"]
    padding: (
        NonNegative
        | Annotated[list[NonNegative], Field(min_length=1, max_length=3)]
        | Annotated[list[PadPair], Field(min_length=1, max_length=3)]
    ) = Field(
        description="An int, one int per spatial dim, or one [before, after] pair per spatial dim."
    )
    mode: Literal["constant", "reflect", "replicate"] = Field(
        default="constant",
        description=(
            "'constant': cells hold 'value'. 'reflect': mirror about the edge cell without repeating it "
            "([1, 2, 3] padded by 2: [3, 2, 1, 2, 3, 2, 1]; each side must be smaller than the input). "
            "'replicate': repeat the edge cell."
        ),
    )
    value: Annotated[float, Field(allow_inf_nan=False)] = Field(
        default=0.0, description="The constant for mode 'constant'."
    )


_TORCH_MODULES = {
    "constant": "ConstantPad",
    "reflect": "ReflectionPad",
    "replicate": "ReplicationPad",
}


def _sides(layer: LayerPlan) -> tuple[tuple[int, int], ...]:
    """The planned (before, after) padding per spatial dim."""
    assert layer.padding is not None, "planned by plan()"
    return layer.padding


@register
class PadDefinition(LayerDefinition):
    """pad1d/2d/3d: nn.ConstantPad/ReflectionPad/ReplicationPad*d; Keras ZeroPadding*D or the Padding helper."""

    model = Pad
    family = "pad"
    words = {
        "reflectionpad2d": "pad2d",
        "replicationpad2d": "pad2d",
        "constantpad2d": "pad2d",
        "reflectionpad1d": "pad1d",
        "replicationpad1d": "pad1d",
        "constantpad1d": "pad1d",
        "reflectionpad3d": "pad3d",
        "replicationpad3d": "pad3d",
        "constantpad3d": "pad3d",
    }
    hint_text = (
        "pad: reflect does not repeat the edge cell (TF's SYMMETRIC does); replicate repeats it; the (before, after) "
        "order per spatial axis."
    )
    examples = (
        example({"type": "pad2d", "padding": [[1, 2], [2, 0]], "mode": "reflect"}, size=(5, 4)),
        example({"type": "pad2d", "padding": 2, "mode": "replicate"}),
        example({"type": "pad2d", "padding": [1, 0], "value": -1.5}),
        example({"type": "pad1d", "padding": [[2, 1]], "mode": "reflect"}, size=(5,)),
        example({"type": "pad1d", "padding": 1}, size=(4,)),
        example(
            {"type": "pad3d", "padding": [[1, 0], [0, 1], [1, 1]], "mode": "replicate"},
            channels=2,
            size=(2, 3, 3),
        ),
        example({"type": "pad3d", "padding": 1, "mode": "reflect"}, channels=2, size=(2, 3, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        ctx.require_spatial(index, layer.type, shape, rank)
        pads = ctx.explicit_pads(index, layer.padding, rank)
        outs = []
        for n, (before, after) in zip(shape[1:], pads):
            try:
                outs.append(padded_length(n, before, after, layer.mode))
            except ValueError as error:
                ctx.fail(
                    index, str(error), "padding", hint="use mode: replicate, or pad in two steps"
                )
        return dict(
            output_shape=(shape[0], *outs),
            padding=pads,
            padding_mode=layer.mode,
            size_formulas=tuple(
                f"{n} + {b} + {a} = {o}" for n, (b, a), o in zip(shape[1:], pads, outs)
            ),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(
            n.plus(before + after) for n, (before, after) in zip(in_sizes[0], layer.padding or ())
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        value = f", {T.float_text(spec.value)}" if spec.mode == "constant" else ""
        module = f"nn.{_TORCH_MODULES[spec.mode]}{T.spatial_rank(layer)}d({T.torch_pad_order(_sides(layer))}{value})"
        return T.single_module(layer, inputs, module)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        pads = _sides(layer)
        rank = len(pads)
        if spec.mode == "constant" and spec.value == 0.0:
            argument = (
                f"({int(pads[0][0])}, {int(pads[0][1])})" if rank == 1 else K.pairs_text(pads)
            )
            return K.single_layer(
                layer,
                ctx,
                f"layers.ZeroPadding{K.RANK_SUFFIX[rank]}({argument}, name={K.quoted(layer.name)})",
            )
        helper = ctx.use("Padding")
        options = (
            f", mode={P.string(spec.mode)}"
            if spec.mode != "constant"
            else f", value={K.float_text(spec.value)}"
        )
        return K.single_layer(
            layer, ctx, f"{helper}({K.pairs_text(pads)}{options}, name={K.quoted(layer.name)})"
        )


_ONNX_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


@REGISTRY.attach("onnx", "pad1d", "pad2d", "pad3d")
def pad_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Pad of the spatial dims: constant (with its value), reflect, or edge for 'replicate'."""
    amounts = b.constant(b.temp(layer, "pad_amounts"), O.spatial_pads(_sides(layer)), "int64")
    operands = [inputs[0], amounts]
    if layer.spec.mode == "constant" and layer.spec.value:
        operands.append(b.constant(b.temp(layer, "pad_value"), float(layer.spec.value), "float32"))
    return b.node("Pad", operands, layer.name, mode=_ONNX_PAD_MODES[layer.spec.mode])


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


_PAD_TYPES = ("pad1d", "pad2d", "pad3d", "zero_pad1d", "zero_pad2d", "zero_pad3d", "channel_pad")


@REGISTRY.reads("keras", "ConstantPadding", by="pad2d", produces=_PAD_TYPES)
def read_keras_constant_padding(ctx, layer, cfg, inputs, shapes):
    """cnnspec's ConstantPadding helper: -inf before the max pool it serves is that pool's padding."""
    pairs = [list(pair) for pair in cfg["padding"]]
    if cfg.get("value") == -math.inf and KI.absorb_helper_pad(ctx, layer, pairs, -math.inf, inputs):
        return
    read_keras_padding(ctx, layer, cfg, inputs, shapes)


@REGISTRY.reads("keras", "Padding", by="pad2d", produces=_PAD_TYPES)
def read_keras_padding(ctx, layer, cfg, inputs, shapes):
    """cnnspec's Padding (constant / reflect / replicate) and ConstantPadding helpers: a pad layer."""
    value, mode = float(cfg.get("value", 0.0)), cfg.get("mode", "constant")
    if not math.isfinite(value):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"pads with {value}",
            "-inf padding is read only before a max pool",
        )
    rank = len(shapes[0]) - 2
    padding = [list(pair) for pair in cfg["padding"]]
    if mode == "constant" and value == 0.0:
        ctx.add(layer, f"zero_pad{rank}d", inputs, padding=compact_padding(padding))
        return
    fields: dict[str, Any] = {"mode": mode} if mode != "constant" else {"value": value}
    ctx.add(layer, f"pad{rank}d", inputs, padding=compact_padding(padding), **fields)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_mode_pad(mode: str):
    def reader(ctx, node, module):
        rank = int(type(module).__name__[-2])
        flat = list(module.padding)
        pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(rank)][
            ::-1
        ]  # torch lists the last dim first
        ctx.add(
            node, node.args[:1], layer_type=f"pad{rank}d", padding=compact_padding(pairs), mode=mode
        )

    return reader


def _torch_f_pad(ctx, node):
    flat = list(TI.arg(node, 1, "pad"))
    mode = node.kwargs.get("mode", TI.arg(node, 2, "mode", "constant"))
    value = node.kwargs.get("value", TI.arg(node, 3, "value", None)) or 0.0
    rank = len(ctx.shape(node.args[0])) - 1
    if mode == "constant" and torch_channel_pad(ctx, node, flat, float(value)):
        return
    if len(flat) != 2 * rank:
        raise TI.refusal(
            ctx,
            node,
            f"F.pad with {len(flat)} amounts on a {rank}-d map",
            "pad every spatial dim, or only the channels with zeros (channel_pad)",
        )
    pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(rank)][::-1]
    if mode != "constant":
        ctx.add(
            node, node.args[:1], layer_type=f"pad{rank}d", padding=compact_padding(pairs), mode=mode
        )
        return
    TI.pad_layer(ctx, node, rank, pairs, float(value))


REGISTRY.reads("torch_module", "ReflectionPad1d", "ReflectionPad2d", "ReflectionPad3d", by="pad2d")(
    _torch_mode_pad("reflect")
)
REGISTRY.reads(
    "torch_module", "ReplicationPad1d", "ReplicationPad2d", "ReplicationPad3d", by="pad2d"
)(_torch_mode_pad("replicate"))
REGISTRY.reads("torch_function", "torch.nn.functional.pad", by="pad2d", produces=_PAD_TYPES)(
    _torch_f_pad
)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_pad(ctx, node, attrs):
    import numpy as np

    mode = OI.decode(attrs.get("mode", "constant"))
    pads = attrs.get("pads")
    if pads is None:
        pads = ctx.constant(node.input[1], "pads").tolist()
    value = 0.0
    if len(node.input) > 2 and node.input[2]:
        value = float(ctx.constant(node.input[2], "value"))
    rank = len(pads) // 2
    layout = ctx.value(node.input[0]).layout
    spatial = range(2, rank) if layout == OI.FIRST else range(1, rank - 1)
    others = [axis for axis in range(rank) if axis not in spatial]
    if any(pads[axis] or pads[axis + rank] for axis in others):
        if mode == "constant" and onnx_channel_pad(ctx, node, pads, layout, value):
            return
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            "padding of the batch axis, or of the channels and the spatial axes at once",
            "zeros on the channels alone (channel_pad), or the spatial axes alone",
        )
    pairs = [(pads[axis], pads[axis + rank]) for axis in spatial]
    fields = {"padding": compact_padding(pairs)}
    pool = ctx.only_user(node.output[0])
    pool_layout = layout
    if pool is not None and pool.op_type == "Transpose" and layout == OI.LAST:
        # tf2onnx: Pad, then NCHW pooling
        pool, pool_layout = ctx.only_user(pool.output[0]), OI.FIRST
    if mode == "constant" and value == -np.inf and pool is not None and pool.op_type == "MaxPool":
        ctx.padded[node.output[0]] = (node.input[0], pairs)  # padding cells that never win a max
        ctx.padded_layout[node.output[0]] = pool_layout
        return
    if mode == "constant" and value == 0.0:
        ctx.add(node, f"zero_pad{rank - 2}d", [node.input[0]], layout, **fields)
    elif mode in _SPEC_PAD_MODES:
        extra = {"value": value} if mode == "constant" else {"mode": _SPEC_PAD_MODES[mode]}
        ctx.add(node, f"pad{rank - 2}d", [node.input[0]], layout, **extra, **fields)
    else:
        raise refuse(OI.FRAMEWORK, OI.where(node), f"Pad mode {mode} with value {value}")


#: ONNX Pad modes -> spec pad modes.
_SPEC_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


REGISTRY.reads("onnx", "Pad", by="pad2d", produces=_PAD_TYPES)(_onnx_pad)
