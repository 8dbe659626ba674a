"""channel_pad: zero channels added before and after a map's (the CIFAR ResNets' "option A"
shortcut: ``F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.importers import onnx as OI
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, NonNegative
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class ChannelPad(LayerBase):
    """Zero channels added before and after the input's."""

    type: Literal["channel_pad"]
    before: NonNegative = Field(default=0, description="Zero channels added before the input's.")
    after: NonNegative = Field(default=0, description="Zero channels added after the input's.")


@register
class ChannelPadDefinition(LayerDefinition):
    """channel_pad: F.pad of dim 1 in PyTorch, the ChannelPadding helper in Keras (its padding
    layers pad space only), Pad of axis 1 in ONNX."""

    model = ChannelPad
    family = "channel_pad"
    words = {"channelpad": "channel_pad", "padchannels": "channel_pad"}
    hint_text = (
        "channel_pad: zero channels are added on PyTorch's dim 1 and Keras' last axis; F.pad lists "
        "the last dim first, so the channels' amounts come after every spatial dim's."
    )
    examples = (
        example(
            {"type": "conv2d", "filters": 2, "kernel_size": 3, "stride": 2},
            {"type": "channel_pad", "before": 1, "after": 2},
        ),
        example({"type": "channel_pad", "after": 3}, size=(5,)),
        example({"type": "channel_pad", "before": 2}, channels=2, size=(2, 3, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        ctx.require_spatial(index, layer.type, shape)
        if not layer.before and not layer.after:
            ctx.fail(
                index,
                "channel_pad adds no channels",
                "after",
                hint="give before or after (or leave the layer out)",
            )
        channels = layer.before + shape[0] + layer.after
        return dict(
            output_shape=(channels, *shape[1:]),
            size_formulas=(f"channels {layer.before} + {shape[0]} + {layer.after} = {channels}",),
            param_formula="no parameters",
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spatial = "0, 0, " * (len(layer.input_shape) - 1)
        amounts = f"{T.int_text(layer.spec.before)}, {T.int_text(layer.spec.after)}"
        return T.LayerCode(expression=f"F.pad({inputs[0]}, ({spatial}{amounts}))")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use("ChannelPadding")
        spec = layer.spec
        return K.single_layer(
            layer,
            ctx,
            f"{helper}({int(spec.before)}, {int(spec.after)}, name={K.quoted(layer.name)})",
        )


@REGISTRY.attach("onnx", "channel_pad")
def channel_pad_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Pad of axis 1 with zeros."""
    rank = len(layer.input_shape) + 1
    begins, ends = [0] * rank, [0] * rank
    begins[1], ends[1] = layer.spec.before, layer.spec.after
    amounts = b.constant(b.temp(layer, "pad_amounts"), begins + ends, "int64")
    return b.node("Pad", [inputs[0], amounts], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "ChannelPadding", by="channel_pad")
def read_keras_channel_padding(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "channel_pad", inputs, **_sides(int(cfg["before"]), int(cfg["after"])))


def _sides(before: int, after: int) -> dict[str, int]:
    """The spec fields for these amounts, defaults left out."""
    return {key: value for key, value in (("before", before), ("after", after)) if value}


# -- what the importers read (PyTorch's F.pad and ONNX's Pad are claimed by pad2d) -----------


def torch_channel_pad(ctx, node, flat: list[int], value: float) -> bool:
    """``F.pad(x, (0, 0, ..., before, after))``: zeros on the channels only (F.pad lists the
    last dim first, so the channels' amounts come last)."""
    rank = len(ctx.shape(node.args[0])) - 1
    if len(flat) != 2 * (rank + 1) or any(flat[: 2 * rank]) or value != 0.0:
        return False
    ctx.add(node, node.args[:1], layer_type="channel_pad", **_sides(flat[-2], flat[-1]))
    return True


def onnx_channel_pad(ctx, node, pads: list[int], layout: str, value: float) -> bool:
    """A zero Pad of the channel axis only."""
    rank = len(pads) // 2
    channel = 1 if layout == OI.FIRST else rank - 1
    if layout not in (OI.FIRST, OI.LAST) or value != 0.0:
        return False
    if any(pads[axis] or pads[axis + rank] for axis in range(rank) if axis != channel):
        return False
    ctx.add(
        node,
        "channel_pad",
        [node.input[0]],
        layout,
        **_sides(pads[channel], pads[channel + rank]),
    )
    return True
