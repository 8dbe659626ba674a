"""Flatten: a feature map laid out as a vector, channels first (C, then spatial dims)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, fmt_count
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import flatten_orders_differ, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T

ORDER_DESCRIPTION = (
    "The order the map is laid out in: channels_first is PyTorch's torch.flatten(x, 1) (C, then "
    "the spatial dims, the last fastest); channels_last is Keras' Flatten and PyTorch's "
    "x.permute(0, 2, 3, 1).flatten(1) (the spatial dims, then C). The dense layer after it is the "
    "same either way, its rows permuted; a model ported with its weights keeps its original's order."
)


class Flatten(LayerBase):
    """Lay the feature map out as a vector, in channels-first order (C, then spatial dims) unless
    ``order`` says channels_last."""

    type: Literal["flatten"]
    order: Literal["channels_first", "channels_last"] = Field(
        default="channels_first", description=ORDER_DESCRIPTION
    )


@register
class FlattenDefinition(LayerDefinition):
    """flatten: PyTorch's native C, H, W order; Keras' H, W, C (the weight transfer permutes)."""

    model = Flatten
    family = "flatten"
    hint_text = (
        "flatten order: PyTorch flattens C,H,W and Keras H,W,C; a Permute/transpose before Flatten, or dense rows not "
        "permuted by flat_segments, breaks it."
    )
    examples = (
        example({"type": "flatten"}),
        example({"type": "flatten"}, channels=2, size=(3, 2, 3)),
        example({"type": "flatten", "order": "channels_last"}, size=(3, 2)),
        example({"type": "flatten", "order": "channels_last"}, channels=2, size=(5,)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        total = math.prod(shape)
        if layer.order == "channels_last" and len(shape) > 1:
            shape = (*shape[1:], shape[0])
        formula = "·".join(map(str, shape)) + f" = {fmt_count(total)}"
        if layer.order == "channels_last" and len(in_shapes[0]) > 1:
            formula += " (channels last)"
        return dict(output_shape=(total,), size_formulas=(formula,), param_formula="no parameters")

    def flat_segments(
        self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any
    ) -> Any:
        if len(in_shapes[0]) == 1:
            return ctx.segments_of[inputs[0]]
        if ctx.spec.layers[index].order == "channels_last":  # Keras' own order: nothing to permute
            return ((math.prod(in_shapes[0]),),)
        return (in_shapes[0],)

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """flatten: PyTorch's native C, H, W order; channels last after a permute."""
        name = T.attr(layer.name)
        source = inputs[0]
        if _channels_last(layer):
            rank = len(layer.input_shape) - 1
            source += f".permute(0, {', '.join(map(str, range(2, rank + 2)))}, 1)"
        return T.LayerCode(modules=[(name, "nn.Flatten()")], expression=f"self.{name}({source})")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        # Keras flattens channels-last (H, W, C order); weight transfer permutes by flat_segments.
        return K.single_layer(layer, ctx, P.call("layers.Flatten", name=K.quoted(layer.name)))


def _channels_last(layer: LayerPlan) -> bool:
    """Whether the layer lays a map out channels last (on a flat input both orders are the same)."""
    return layer.spec.order == "channels_last" and len(layer.input_shape) > 1


@REGISTRY.attach("onnx", "flatten")
def flatten_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Flatten in channels-first order (C, then the spatial dims), after a Transpose to channels
    last for that order."""
    source = inputs[0]
    if _channels_last(layer):
        rank = len(layer.input_shape) - 1
        source = b.node(
            "Transpose", [source], b.temp(layer, "channels_last"), perm=[0, *range(2, rank + 2), 1]
        )
    return b.node("Flatten", [source], layer.name, axis=1)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "Flatten", by="flatten")
def read_keras_flatten(ctx, layer, cfg, inputs, shapes):
    """Flatten: the spec's flatten, the next layer's rows in PyTorch's order when weights are read;
    after ``Permute((3, 1, 2))`` already in that order (the weights are read as they are)."""
    KI.channels_last(layer, cfg)
    permute = ctx.channels_first.get(id(ctx.node.input_tensors[0]))
    if permute is None:
        ctx.add(layer, "flatten", inputs)
        return
    ctx.builder.rewrite(
        layer.name, f"{permute} (Permute to channels first) + Flatten", "flatten in PyTorch's order"
    )
    ctx.add(layer, "flatten", inputs, source=f"{permute}+{layer.name}")


def keras_channels_first_flattens(by_name: dict, plan) -> set[str]:
    """The spec's flatten layers read from a ``Permute`` to channels first + ``Flatten`` of the
    Keras model whose layers are ``by_name``: their values are in PyTorch's order there."""
    return {
        layer.name
        for layer in plan.layers
        if layer.type == "flatten"
        and "+" in (layer.spec.source or "")
        and type(by_name.get(layer.spec.source.split("+")[0])).__name__ == "Permute"
    }


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_flatten_module(ctx, node, module):
    if module.start_dim != 1 or module.end_dim != -1:
        raise TI.refusal(
            ctx,
            node,
            f"Flatten(start_dim={module.start_dim}, end_dim={module.end_dim})",
            "flatten keeps the batch dim and flattens all others: Flatten(1, -1)",
        )
    _torch_flatten(ctx, node)


def _torch_flatten(ctx, node):
    if len(ctx.shape(node.args[0])) == 1 and node.name not in ctx.dict_names:
        ctx.builder.rewrite(
            TI.original_path(node), "flatten of flat features", "nothing (already flat)"
        )
        ctx.alias(node, node.args[0])
        return
    if node.args[0] in ctx.channels_last:  # x.permute(0, 2, 3, 1).flatten(1): Keras' order
        ctx.add(node, node.args[:1], layer_type="flatten", order="channels_last")
        ctx.channels_last.discard(node)  # a flat vector: out of the channels-last region
        return
    ctx.add(node, node.args[:1], layer_type="flatten")


def _torch_flatten_function(ctx, node):
    from cnnspec.layers.global_pool import torch_merged_spatial_reduction

    start, end = TI.arg(node, 1, "start_dim", 0), TI.arg(node, 2, "end_dim", -1)
    if start == 2 and end == -1 and torch_merged_spatial_reduction(ctx, node):
        return
    if start != 1 or end != -1:
        raise TI.refusal(
            ctx, node, f"flatten(start_dim={start}, end_dim={end})", "torch.flatten(x, 1)"
        )
    _torch_flatten(ctx, node)


def _torch_view(ctx, node):
    """``x.view(x.size(0), -1)`` / ``x.reshape(n, -1)`` is flatten; the channel-shuffle pattern is recognised."""
    shape_in = ctx.shape(node.args[0])
    shape_out = ctx.shape(node)
    if shape_out is not None and len(shape_out) == 1 and len(shape_in) >= 1:
        _torch_flatten(ctx, node)
        return
    if _torch_channel_shuffle(ctx, node, shape_in, shape_out):
        return
    from cnnspec.layers.global_pool import torch_merged_spatial_reduction

    if torch_merged_spatial_reduction(ctx, node):
        return
    from cnnspec.layers.channel_conv import torch_channel_view
    from cnnspec.layers.elementwise import torch_broadcast_gate
    from cnnspec.layers.pixel_shuffle import torch_rearrangement
    from cnnspec.layers.unflatten import torch_unflatten

    if (
        torch_broadcast_gate(ctx, node)
        or torch_channel_view(ctx, node)
        or torch_rearrangement(ctx, node)
        or torch_unflatten(ctx, node)
    ):
        return
    raise TI.refusal(
        ctx,
        node,
        f"reshape {list(shape_in)} -> {list(shape_out or [])}",
        "supported reshapes: flatten (x.view(x.size(0), -1)), the view/transpose/view channel "
        "shuffle, views and permutes that rearrange a map as a pixel (un)shuffle does, and a "
        "flat gate viewed as (C, 1, 1) for a merge to broadcast",
    )


def _torch_channel_shuffle(ctx, node, shape_in, shape_out) -> bool:
    """view(N, g, C/g, H, W) -> transpose(1, 2) [-> contiguous] -> view(N, C, H, W): a channel shuffle."""
    if (
        shape_out is None
        or len(shape_out) != len(shape_in) + 1
        or shape_out[0] * shape_out[1] != shape_in[0]
    ):
        return False
    users = list(node.users)
    if (
        len(users) != 1
        or users[0].target not in ("transpose", _torch_transpose())
        or tuple(users[0].args[1:3]) not in ((1, 2), (2, 1))
    ):
        return False
    chain = users[0]
    while len(chain.users) == 1 and list(chain.users)[0].target == "contiguous":
        chain = list(chain.users)[0]
    final = list(chain.users)
    if len(final) != 1 or final[0].target not in (
        "view",
        "reshape",
        _torch_reshape(),
        _torch_flatten_callable(),
    ):
        return False
    if ctx.shape(final[0]) != tuple(shape_in):
        return False
    groups = shape_out[0]
    ctx.add(
        final[0],
        node.args[:1],
        original=final[0].name,
        layer_type="channel_shuffle",
        groups=int(groups),
    )
    ctx.skip.update({node, users[0], chain, final[0]})
    return True


def _torch_transpose():
    import torch

    return torch.transpose


def _torch_reshape():
    import torch

    return torch.reshape


def _torch_flatten_callable():
    import torch

    return torch.flatten


def _torch_squeeze(ctx, node):
    """``x.squeeze(-1).squeeze(-1)`` (or ``squeeze((2, 3))``) of a (C, 1, 1) map, after a global
    pooling: flatten, the same in both orders when every spatial size is 1.  A squeeze that
    leaves unit axes for the next squeeze computes nothing yet."""
    import torch

    source = node.args[0]
    dims = TI.arg(node, 1, "dim", None)
    if dims is None:
        raise TI.refusal(
            ctx,
            node,
            "squeeze() without a dim",
            "it also drops a batch of 1: name the dims (x.squeeze(-1).squeeze(-1)) or use "
            "torch.flatten(x, 1)",
        )
    dims = tuple(dims) if isinstance(dims, (tuple, list)) else (dims,)
    rank = len(ctx.shape(source)) + 1
    value = ctx.values[source].shape or ()
    out = ctx.shape(node)
    squeezers = {"squeeze", torch.squeeze}
    if any(d % rank == 0 for d in dims) or not value or any(d != 1 for d in value[1:]):
        raise TI.refusal(
            ctx,
            node,
            f"squeeze{dims} of a {list(ctx.shape(source))} tensor",
            "squeeze the unit spatial axes of a (C, 1, 1) map (after a global pooling): flatten",
        )
    if out == value[:1]:
        ctx.builder.rewrite(TI.original_path(node), f"squeeze of a {list(value)} map", "flatten")
        ctx.add(node, [source], layer_type="flatten")
        return
    if node.users and all(
        user.op in ("call_method", "call_function") and user.target in squeezers
        for user in node.users
    ):
        ctx.alias(node, source)
        return
    from cnnspec.layers.channel_conv import torch_channel_view

    if torch_channel_view(ctx, node):
        return
    raise TI.refusal(
        ctx,
        node,
        f"squeeze{dims} leaves a {list(out)} tensor",
        "squeeze every unit spatial axis of a (C, 1, 1) map (flatten)",
    )


REGISTRY.reads("torch_module", "Flatten", by="flatten")(_torch_flatten_module)
REGISTRY.reads("torch_function", "torch.squeeze", by="flatten")(_torch_squeeze)
REGISTRY.reads("torch_method", "squeeze", by="flatten")(_torch_squeeze)
_FLATTEN_PRODUCES = ("flatten", "global_avg_pool", "global_max_pool")
REGISTRY.reads("torch_function", "torch.flatten", by="flatten", produces=_FLATTEN_PRODUCES)(
    _torch_flatten_function
)
REGISTRY.reads("torch_method", "flatten", by="flatten", produces=_FLATTEN_PRODUCES)(
    _torch_flatten_function
)
_VIEW_PRODUCES = (
    "flatten",
    "channel_shuffle",
    "channel_conv",
    "pixel_shuffle",
    "pixel_unshuffle",
    "unflatten",
    "global_avg_pool",
    "global_max_pool",
)
REGISTRY.reads("torch_function", "torch.reshape", by="flatten", produces=_VIEW_PRODUCES)(
    _torch_view
)
REGISTRY.reads("torch_method", "view", "reshape", by="flatten", produces=_VIEW_PRODUCES)(
    _torch_view
)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_strided_permute(ctx, node) -> bool:
    """The dynamo exporter's ``as_strided`` of a map whose only axis longer than 1 is the
    channels (a permute after a global pooling, at batch 1): Reshape to [-1], then Gather of
    every element in order into the permuted shape.  The same values, channels first or last."""
    import numpy as np

    value = ctx.value(node.input[0])
    shape = ctx.shapes.get(node.input[0])
    gather = ctx.only_user(node.output[0])
    if value.layout not in (OI.FIRST, OI.LAST) or not shape or None in shape or gather is None:
        return False
    channel, _ = OI.channel_and_spatial_axes(ctx, value.layout, len(shape))
    indices = ctx.constants.get(gather.input[1]) if len(gather.input) > 1 else None
    if (
        gather.op_type != "Gather"
        or OI.attributes(gather).get("axis", 0) != 0
        or indices is None
        or any(n != 1 for axis, n in enumerate(shape) if axis != channel)
    ):
        return False
    indices = np.asarray(indices)
    channels = shape[channel]
    if indices.ndim != len(shape) or not np.array_equal(indices.reshape(-1), np.arange(channels)):
        return False
    if channels == 1 or indices.shape[1] == channels:
        layout = OI.FIRST
    elif indices.shape[-1] == channels:
        layout = OI.LAST
    else:
        return False
    ctx.alias(node, node.input[0])
    ctx.alias(gather, node.input[0], layout)
    ctx.consumed.add(gather.output[0])
    return True


def _onnx_one_channel_move(ctx, node) -> bool:
    """tf2onnx writes the transpose of a one-channel map as a Reshape, (N, H, W, 1) -> (N, 1, H, W)
    (a grayscale model's first convolution): the same values in the other layout."""
    value = ctx.values.get(node.input[0])
    shape, out = ctx.shapes.get(node.input[0]), ctx.shapes.get(node.output[0])
    if value is None or not shape or not out or len(shape) != len(out) or len(shape) < 3:
        return False
    if value.layout == OI.LAST and shape[-1] == 1 and list(out[1:]) == [1, *shape[1:-1]]:
        ctx.alias(node, node.input[0], OI.FIRST)
        return True
    if value.layout == OI.FIRST and shape[1] == 1 and list(out[1:]) == [*shape[2:], 1]:
        ctx.alias(node, node.input[0], OI.LAST)
        return True
    return False


def _onnx_flatten_like(ctx, node, attrs):
    if node.op_type == "Flatten" and attrs.get("axis", 1) != 1:
        raise refuse(
            OI.FRAMEWORK, OI.where(node), f"Flatten(axis={attrs.get('axis')})", "Flatten(axis=1)"
        )
    out_shape = ctx.shapes.get(node.output[0])
    from cnnspec.layers.channel_conv import onnx_channel_conv
    from cnnspec.layers.channel_ops import onnx_channel_shuffle_chain
    from cnnspec.layers.dense import onnx_tensordot
    from cnnspec.layers.group_norm import onnx_group_norm_chain
    from cnnspec.layers.pixel_shuffle import onnx_pixel_shuffle_chain, onnx_rearrangement

    if node.op_type == "Reshape" and (
        onnx_channel_conv(ctx, node)
        or onnx_group_norm_chain(ctx, node)
        or onnx_channel_shuffle_chain(ctx, node)
        or onnx_pixel_shuffle_chain(ctx, node)
        or onnx_rearrangement(ctx, node)
        or OI.expand_gate(ctx, node)
        or onnx_tensordot(ctx, node)
    ):
        return
    if node.op_type == "Reshape":
        target = (
            ctx.constants[node.input[1]].tolist()
            if node.input[1] in ctx.constants
            else list(out_shape or [])
        )
        if len(target) != 2:
            if out_shape is not None and tuple(out_shape) == tuple(
                ctx.shapes.get(node.input[0]) or ()
            ):
                ctx.alias(node, node.input[0])
                return
            from cnnspec.layers.global_pool import onnx_merged_spatial_reduction
            from cnnspec.layers.unflatten import onnx_unflatten

            if (
                onnx_merged_spatial_reduction(ctx, node)
                or _onnx_strided_permute(ctx, node)
                or _onnx_one_channel_move(ctx, node)
                or onnx_unflatten(ctx, node)
            ):
                return
            raise refuse(
                OI.FRAMEWORK, OI.where(node), f"Reshape to {target}", "Reshape(N, -1) is flatten"
            )
    value = ctx.value(node.input[0])
    shape = ctx.shapes.get(node.input[0])
    if value.layout == OI.FLAT or (
        shape is not None and all(d == 1 for d in shape[2:]) and value.layout == OI.FIRST
    ):
        if (
            value.layout != OI.FLAT and shape is not None and len(shape) > 2
        ):  # (N, C, 1, 1) -> (N, C): keepdims pool
            ctx.add(node, "flatten", [node.input[0]], OI.FLAT)
        else:
            ctx.alias(node, node.input[0], OI.FLAT)
        return
    flattened_last = tuple(shape[1:]) if value.layout == OI.LAST else None
    if flatten_orders_differ(flattened_last) and _onnx_reaches_output(ctx, node.output[0]):
        # nothing after it takes the order in: the converted model gives the original's vector
        ctx.add(node, "flatten", [node.input[0]], OI.FLAT, order="channels_last")
        return
    ctx.add(node, "flatten", [node.input[0]], OI.FLAT, flattened_last=flattened_last)


# ONNX operators that act on each feature of a flat vector alone, without weights.
_ONNX_FEATURE_WISE = frozenset(
    {
        "Relu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Dropout", "Identity", "Elu",
        "LeakyRelu", "HardSigmoid", "HardSwish", "Selu", "Softplus",
    }
)  # fmt: skip


def _onnx_reaches_output(ctx, name: str) -> bool:
    """Whether the value ``name`` is the graph's output, through feature-wise operators only."""
    while name not in ctx.outputs:
        user = ctx.only_user(name)
        if user is None or user.op_type not in _ONNX_FEATURE_WISE:
            return False
        name = user.output[0]
    return True


REGISTRY.reads(
    "onnx",
    "Flatten",
    "Reshape",
    by="flatten",
    produces=(
        "flatten",
        "group_norm",
        "channel_shuffle",
        "channel_conv",
        "conv1d",
        "conv2d",
        "conv3d",
        "unflatten",
        "global_avg_pool",
        "global_max_pool",
    ),
)(_onnx_flatten_like)
