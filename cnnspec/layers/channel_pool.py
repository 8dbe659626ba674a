"""channel_mean and channel_max: the mean or the maximum over the channels at each position, a
(1, *spatial) map (CBAM's spatial attention pools a map this way before its 7x7 convolution)."""

from __future__ import annotations

from typing import Any, Literal

from cnnspec.engine.plan import LayerPlan
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class ChannelPool(LayerBase):
    """The mean (channel_mean) or maximum (channel_max) over the channels at each position."""

    type: Literal["channel_mean", "channel_max"]


# Per type: the torch method, the Keras helper's reduction, the ONNX op.
_REDUCTIONS = {
    "channel_mean": ("mean", "mean", "ReduceMean"),
    "channel_max": ("amax", "max", "ReduceMax"),
}


@register
class ChannelPoolDefinition(LayerDefinition):
    """channel_mean / channel_max: a reduction over PyTorch's dim 1, Keras' last axis, keeping it."""

    model = ChannelPool
    family = "channel_pool"
    words = {"channelmean": "channel_mean", "channelmax": "channel_max"}
    hint_text = (
        "channel pooling: the reduction is over the channels (PyTorch dim 1, Keras' last axis), "
        "keeping that axis with size 1."
    )
    examples = (
        example(
            {"type": "conv2d", "name": "features", "filters": 4, "kernel_size": 3},
            {"type": "channel_mean"},
        ),
        example({"type": "channel_max"}, channels=5),
        example({"type": "channel_mean"}, size=(6,)),
        example({"type": "channel_max"}, channels=2, size=(3, 2, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        ctx.require_spatial(index, layer.type, shape)
        return dict(
            output_shape=(1, *shape[1:]),
            size_formulas=(f"{shape[0]} channels -> 1",),
            param_formula="no parameters",
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        method = _REDUCTIONS[layer.type][0]
        return T.LayerCode(expression=f"{inputs[0]}.{method}(1, keepdim=True)")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use("ChannelReduce")
        reduction = P.string(_REDUCTIONS[layer.type][1])
        return K.single_layer(layer, ctx, f"{helper}({reduction}, name={K.quoted(layer.name)})")


@REGISTRY.attach("onnx", "channel_mean", "channel_max")
def channel_pool_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """ReduceMean / ReduceMax over axis 1, keeping it."""
    axes = b.constant(b.temp(layer, "axes"), [1], "int64")
    return b.node(_REDUCTIONS[layer.type][2], [inputs[0], axes], layer.name, keepdims=1)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads(
    "keras", "ChannelReduce", by="channel_mean", produces=("channel_mean", "channel_max")
)
def read_keras_channel_reduce(ctx, layer, cfg, inputs, shapes):
    kind = {"mean": "channel_mean", "max": "channel_max"}[cfg["reduction"]]
    ctx.add(layer, kind, inputs)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def torch_reduces_channels(ctx, node, dims) -> bool:
    """Whether a reduction over ``dims`` of ``node``'s input is over its channels (dim 1) alone."""
    rank = len(ctx.shape(node.args[0])) + 1
    return rank > 2 and [d % rank for d in dims] == [1]


def torch_channel_pool(ctx, node, kind: str, keepdim: bool) -> None:
    """``x.mean(1, keepdim=True)`` and the like (the global-pool readers call this for dim 1);
    without keepdim, the channel axis must be restored at once (``x.mean(1).unsqueeze(1)``)."""
    if keepdim:
        ctx.add(node, node.args[:1], layer_type=kind)
        return
    _read_with_restored_axis(ctx, node, node, kind)


def _read_with_restored_axis(ctx, node, reduced, kind: str) -> None:
    """The layer at ``node`` when ``reduced`` (its output, or the values taken from it) lost the
    channel axis and every reader of it puts the axis back with ``unsqueeze(1)``."""
    from cnnspec.layers.channel_ops import _restores_channel_axis

    restoring = list(reduced.users)
    if not restoring or not all(_restores_channel_axis(user, reduced) for user in restoring):
        raise TI.refusal(
            ctx,
            node,
            f"{kind.replace('_', ' ')} that drops the channel axis",
            "keep it (keepdim=True) or restore it with unsqueeze(1): channel pooling makes a "
            "(1, H, W) map",
        )
    name = ctx.add(node, node.args[:1], layer_type=kind)
    shape = ctx.shape(restoring[0])
    for step in (node, reduced, *restoring):
        ctx.values[step] = TI.Node(name, shape)
    ctx.skip.update({reduced, *restoring} - {node})


def _torch_max(ctx, node):
    """``torch.max(x, dim=1, keepdim=True)`` (values and indices; its ``[0]`` or ``.values`` is
    read as the values) is channel_max; ``torch.max(a, b)`` is maximum."""
    import operator

    dim = TI.arg(node, 1, "dim", None)
    if dim is None:
        raise TI.refusal(ctx, node, "max over every element", "a max over the channels: dim=1")
    if not isinstance(dim, int) or isinstance(dim, bool):
        from cnnspec.layers.elementwise import _torch_binary

        _torch_binary("maximum")(ctx, node)
        return
    users = [user for user in node.users if user.users]  # `_` of `values, _ = ...` is unread
    values = [
        user
        for user in users
        if (user.target is operator.getitem and user.args[1] == 0)
        or (user.target is getattr and user.args[1] == "values")
    ]
    if not torch_reduces_channels(ctx, node, [dim]) or not users or values != users:
        raise TI.refusal(
            ctx,
            node,
            f"max over dim {dim}" + ("" if values == users else " with its indices"),
            "torch.max(x, dim=1, keepdim=True)[0] is channel_max; the indices are not a layer",
        )
    if not TI.arg(node, 2, "keepdim", False):
        if len(values) != 1:
            raise TI.refusal(ctx, node, "the values of a max over the channels read twice")
        _read_with_restored_axis(ctx, node, values[0], "channel_max")
        return
    name = ctx.add(node, node.args[:1], layer_type="channel_max")
    shape = ctx.shape(users[0])
    ctx.values[node] = TI.Node(name, shape)
    for user in users:  # the values are the layer's output (read there: the node is a pair)
        ctx.values[user] = TI.Node(name, shape)
        ctx.skip.add(user)


REGISTRY.reads(
    "torch_function", "torch.max", by="channel_max", produces=("channel_max", "maximum")
)(_torch_max)
REGISTRY.reads("torch_method", "max", by="channel_max", produces=("channel_max", "maximum"))(
    _torch_max
)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def onnx_reduces_channels(ctx, node, axes) -> bool:
    """Whether an ONNX reduction over ``axes`` is over the channels alone, keeping them."""
    value = ctx.value(node.input[0])
    rank = len(ctx.shapes[node.input[0]])
    channel = 1 if value.layout == OI.FIRST else rank - 1
    return (
        rank > 2
        and value.layout in (OI.FIRST, OI.LAST)
        and [a % rank for a in axes or []] == [channel]
    )


def onnx_channel_pool(ctx, node, kind: str, attrs) -> None:
    """A ReduceMean / ReduceMax over the channels (the global-pool readers call this)."""
    from cnnspec.importers.common import refuse

    value = ctx.value(node.input[0])
    if not attrs.get("keepdims", 1):
        # torch.max(x, 1)[0].unsqueeze(1): the axis put back at once
        user = ctx.only_user(node.output[0])
        if user is not None and user.op_type == "Unsqueeze" and value.layout == OI.FIRST:
            axes = OI.attributes(user).get("axes")
            if axes is None and len(user.input) > 1:
                axes = ctx.constant(user.input[1], "axes").tolist()
            if list(axes or []) == [1]:
                ctx.add(user, kind, [node.input[0]], value.layout)
                ctx.consumed.add(user.output[0])
                return
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"{node.op_type} over the channels without keepdims",
            "the spec's channel pooling keeps the channel axis",
        )
    ctx.add(node, kind, [node.input[0]], value.layout)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras' raw ops) -----


def _read_keras_reduce_op(kind: str):
    def read_keras_reduce_op(ctx, op, node, inputs) -> None:
        """``keras.ops.mean(x, axis=-1, keepdims=True)`` (``ops.max``) in a functional graph, or
        ``keras.ops.mean(x, axis=(1, 2))``: a global pooling."""
        from cnnspec.importers import keras as KI
        from cnnspec.importers.common import refuse

        rank = len(node.input_tensors[0].shape)
        axes = sorted(a % rank for a in ([op.axis] if isinstance(op.axis, int) else op.axis or []))
        if rank > 2 and axes == [rank - 1] and op.keepdims:
            ctx.builder.add(op.name, kind, inputs)
            return
        if rank > 2 and axes == list(range(1, rank - 1)):  # keras.ops.mean(x, axis=(1, 2))
            pool = "global_avg_pool" if kind == "channel_mean" else "global_max_pool"
            ctx.builder.add(op.name, pool, inputs, **({"keepdims": True} if op.keepdims else {}))
            return
        raise refuse(
            KI.FRAMEWORK,
            f"'{op.name}' ({type(op).__name__} op)",
            f"a reduction over axes {op.axis} (keepdims={op.keepdims})",
            "over the channels with keepdims=True (axis=-1) it is channel pooling, over every "
            "spatial axis (axis=(1, 2)) global pooling",
        )

    return read_keras_reduce_op


REGISTRY.reads("keras_op", "Mean", by="channel_mean", produces=("channel_mean", "global_avg_pool"))(
    _read_keras_reduce_op("channel_mean")
)
REGISTRY.reads("keras_op", "Max", by="channel_max", produces=("channel_max", "global_max_pool"))(
    _read_keras_reduce_op("channel_max")
)
