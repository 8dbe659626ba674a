"""channel_conv: one filter slid along the channels, the same at every position (ECA-Net's
efficient channel attention: ``nn.Conv1d(1, 1, k, padding=k // 2)`` over a pooled (C, 1, 1) map)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import Flag, LayerBase, Positive
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class ChannelConv(LayerBase):
    """A 1-D convolution along the channel axis with one filter, zero-padded to keep C channels."""

    type: Literal["channel_conv"]
    kernel_size: Positive = Field(
        description="Channels the filter spans (odd: the output keeps the input's channels)."
    )
    bias: Flag = Field(default=False, description="Add one learned bias (ECA-Net has none).")


@register
class ChannelConvDefinition(LayerDefinition):
    """channel_conv: the ChannelConv helper in both frameworks (the filter of nn.Conv1d(1, 1, k)
    over each position's channels in PyTorch; a Conv1D kernel (k, 1, 1) in Keras); in ONNX a Conv whose
    kernel spans the channels only, on the map with an axis of one channel inserted."""

    model = ChannelConv
    family = "channel_conv"
    words = {"eca": "channel_conv", "channelconv": "channel_conv"}
    hint_text = (
        "channel_conv: the filter slides along the channels (ECA-Net); a Keras Conv1D over a "
        "(C, 1) reshape and PyTorch's Conv1d over (1, C) are the same filter, the kernel read "
        "in the same order; an even kernel pads one side more in Keras ('same') than PyTorch."
    )
    examples = (
        example(
            {"type": "conv2d", "filters": 6, "kernel_size": 3},
            {"type": "global_avg_pool", "keepdims": True},
            {"type": "channel_conv", "kernel_size": 3},
        ),
        example({"type": "channel_conv", "kernel_size": 5, "bias": True}, channels=7, size=(4,)),
        example({"type": "channel_conv", "kernel_size": 3}, channels=4, size=(2, 3, 2)),
        example(
            {"type": "global_avg_pool"}, {"type": "channel_conv", "kernel_size": 3}, size=(2, 2)
        ),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        k = layer.kernel_size
        if k % 2 == 0:
            ctx.fail(
                index,
                f"kernel_size {k} is even: PyTorch pads {k // 2 - 1} + 1 channels where Keras' "
                f"'same' pads {k // 2 - 1} and {k // 2}, and the output loses a channel",
                "kernel_size",
                hint=f"use an odd kernel_size ({k - 1} or {k + 1}); ECA-Net rounds k up to odd",
            )
        params = [ParamTensor("kernel", (1, 1, k))]
        if layer.bias:
            params.append(ParamTensor("bias", (1,)))
        count = k + int(layer.bias)
        return dict(
            output_shape=shape,
            params=tuple(params),
            size_formulas=(f"channels {shape[0]} + 2·{k // 2} − {k} + 1 = {shape[0]}",),
            param_formula=f"{k}{' + 1' if layer.bias else ''} (one filter) = {fmt_count(count)}",
        )

    def flat_segments(
        self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any
    ) -> Any:
        segments = ctx.segments_of[inputs[0]]
        if any(math.prod(segment[1:]) > 1 for segment in segments):
            ctx.fail(
                index,
                "channel_conv of a flattened feature map: PyTorch flattens C,H,W and Keras H,W,C, "
                "so the filter would slide over different neighbours in each",
                hint="apply channel_conv to the map itself (it slides along the channels at every "
                "position), or pool the map to (C, 1, 1) first",
            )
        return segments

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        arguments = T.int_text(layer.spec.kernel_size) + (", bias=True" if layer.spec.bias else "")
        code = T.single_module(layer, inputs, f"ChannelConv({arguments})")
        code.helpers.add("ChannelConv")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use("ChannelConv")
        bias = ", use_bias=True" if layer.spec.bias else ""
        return K.single_layer(
            layer,
            ctx,
            f"{helper}({int(layer.spec.kernel_size)}{bias}, name={K.quoted(layer.name)})",
        )

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        # (1, 1, k) in PyTorch and (k, 1, 1) in Keras hold the k taps in the same order
        slots = [WeightSlot("kernel", "weight", ("kernel",), reshape=True)]
        if layer.spec.bias:
            slots.append(WeightSlot("bias", "bias", ("bias",)))
        return slots


@REGISTRY.attach("onnx", "channel_conv")
def channel_conv_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Unsqueeze an axis of one channel, a Conv whose kernel (1, 1, k, 1, ...) spans the old
    channel axis only, Squeeze the axis again."""
    rank = len(layer.input_shape)
    k = layer.spec.kernel_size
    axis = b.constant(b.temp(layer, "axis"), [1], "int64")
    rows = b.node("Unsqueeze", [inputs[0], axis], b.temp(layer, "one_channel"))
    kernel_shape = b.constant(b.temp(layer, "kernel_shape"), [1, 1, k, *[1] * (rank - 1)], "int64")
    kernel = b.node("Reshape", [b.weight(layer, "kernel"), kernel_shape], b.temp(layer, "kernel"))
    operands = [rows, kernel] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    pads = [k // 2, *[0] * (rank - 1)] * 2
    slid = b.node("Conv", operands, b.temp(layer, "conv"), pads=pads)
    return b.node("Squeeze", [slid, axis], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------

#: Tensor methods and functions that only change how a channel vector's C values are shaped.
_TORCH_VIEWS = frozenset(
    {"view", "reshape", "squeeze", "unsqueeze", "transpose", "permute", "contiguous", "flatten"}
)


def _channel_count(shape) -> int | None:
    """C when ``shape`` holds C values on one axis and ones elsewhere ((C,), (C, 1, 1), (1, C))."""
    if not shape:
        return None
    longest = max(shape)
    return longest if longest > 1 and math.prod(shape) == longest else None


def vector_channels(builder, name: str, shape) -> int | None:
    """C when the spec value ``name`` (of framework shape ``shape``) is a channel vector: shaped
    (C,) or (C, 1, ..., 1), or a channel_conv's output (or an activation of one) still shaped as
    the one-channel sequence the frameworks' Conv1d reads."""
    if shape and shape[0] > 1 and all(d == 1 for d in shape[1:]):
        return shape[0]
    index = {layer["name"]: number for number, layer in enumerate(builder.layers)}
    while name in index:
        number = index[name]
        layer = builder.layers[number]
        if layer["type"] == "channel_conv":
            return _channel_count(tuple(shape))
        if REGISTRY.family_of(layer["type"]) != "activation":
            return None
        previous = builder.layers[number - 1]["name"] if number else "input"
        name = layer.get("inputs", [previous])[0]
    return None


def _torch_reads_rows(ctx, user) -> bool:
    """``user`` takes a channel vector shaped as a one-channel sequence (1, C) the way ECA-Net
    does: a view of it, an element-wise activation, or the Conv1d(1, 1, k) itself."""
    import torch

    if user.op == "call_method":
        return user.target in _TORCH_VIEWS or user.target in ("sigmoid", "relu", "tanh")
    if user.op == "call_module":
        module = ctx.modules[user.target]
        if isinstance(module, torch.nn.Conv1d):
            return module.in_channels == module.out_channels == 1
        claim = REGISTRY.claims("torch_module").get(type(module).__name__)
        return claim is not None and REGISTRY.family_of(claim.owner.types[0]) == "activation"
    if user.op == "call_function":
        claim = ctx.function_claims.get(user.target)
        if getattr(user.target, "__name__", "") in _TORCH_VIEWS:
            return True
        return claim is not None and REGISTRY.family_of(claim.owner.types[0]) == "activation"
    return False


def torch_channel_view(ctx, node) -> bool:
    """A squeeze, view, transpose or permute of a channel vector (a pooled (C, 1, 1) map or a
    flat (C)) to another shape that holds its C values on one axis: no layer, the value is its
    input's.  ECA-Net reads the vector as a one-channel sequence of length C,
    ``y.squeeze(-1).transpose(-1, -2)`` or ``y.view(n, 1, -1)``, for its Conv1d and makes it
    (C, 1, 1) again; only those steps, activations and that Conv1d may read the reshaped value."""
    from cnnspec.importers import torch as TI

    source = node.args[0] if node.args else None
    value = ctx.values.get(source) if TI.is_tensor(ctx, source) else None
    out = ctx.shape(node)
    if value is None or out is None or value.shape is None:
        return False
    channels = vector_channels(ctx.builder, value.name, value.shape)
    if channels is None or _channel_count(tuple(out)) != channels:
        return False
    from cnnspec.layers.elementwise import torch_gate_users_only

    out = tuple(out)
    if len(out) == 2:  # (1, C) or (C, 1): the sequence form, for the Conv1d and activations only
        if not all(_torch_reads_rows(ctx, user) for user in node.users):
            return False
        ctx.values[node] = TI.Node(value.name, value.shape)
    elif out == tuple(value.shape):  # back to the value's own form: anything reads it
        ctx.alias(node, source)
    elif node.users and torch_gate_users_only(
        ctx, node
    ):  # shaped for merges to broadcast (they read it as is)
        ctx.values[node] = TI.Node(value.name, out)
    else:
        return False
    return True


def torch_conv1d_rows(ctx, node, module) -> bool:
    """ECA-Net's ``nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)`` on a channel vector
    shaped (1, C): channel_conv (the filter slides along the channels)."""
    from cnnspec.importers import torch as TI

    source = node.args[0]
    value = ctx.values.get(source) if TI.is_tensor(ctx, source) else None
    shape = ctx.shape(source)
    if value is None or value.shape is None or shape is None or len(shape) != 2 or shape[0] != 1:
        return False
    channels = vector_channels(ctx.builder, value.name, value.shape)
    if channels is None or shape[1] != channels:
        return False
    (k,) = module.kernel_size
    if (
        module.in_channels != 1
        or module.out_channels != 1
        or module.padding_mode != "zeros"
        or tuple(module.stride) != (1,)
        or tuple(module.dilation) != (1,)
        or module.padding != (k // 2,)
        or k % 2 == 0
    ):
        raise TI.refusal(
            ctx,
            node,
            f"Conv1d({module.in_channels}, {module.out_channels}, {k}, padding={module.padding}, "
            f"stride={module.stride}, "
            f"dilation={module.dilation}) over a channel vector",
            "a Conv1d over the channels is read as channel_conv: one filter of odd size k, "
            "padding k // 2, stride 1 (ECA-Net's)",
        )
    fields = {"bias": True} if module.bias is not None else {}
    ctx.add(node, [source], layer_type="channel_conv", kernel_size=k, **fields)
    ctx.values[node] = TI.Node(ctx.values[node].name, value.shape)  # the vector's own shape
    return True


def _torch_channel_conv(ctx, node, module) -> None:
    """cnnspec's own ChannelConv helper."""
    fields = {"bias": True} if module.bias is not None else {}
    kernel_size = module.weight.shape[-1]
    ctx.add(node, node.args[:1], layer_type="channel_conv", kernel_size=kernel_size, **fields)


def _torch_transpose(ctx, node) -> None:
    from cnnspec.importers import torch as TI

    if not torch_channel_view(ctx, node):
        raise TI.refusal(
            ctx,
            node,
            f"transpose of a {list(ctx.shape(node.args[0]) or [])} tensor",
            "cnnspec reads a transpose only of a channel vector made a one-channel sequence "
            "for a Conv1d over the channels (ECA-Net), and in a channel shuffle",
        )


REGISTRY.reads("torch_module", "ChannelConv", by="channel_conv")(_torch_channel_conv)
REGISTRY.reads("torch_method", "transpose", by="channel_conv", produces=())(_torch_transpose)
REGISTRY.reads("torch_function", "torch.transpose", by="channel_conv", produces=())(
    _torch_transpose
)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "ChannelConv", by="channel_conv")
def read_keras_channel_conv(ctx, layer, cfg, inputs, shapes):
    """cnnspec's own ChannelConv helper."""
    fields = {"bias": True} if cfg.get("use_bias") else {}
    ctx.add(layer, "channel_conv", inputs, kernel_size=int(cfg["kernel_size"]), **fields)


def keras_conv1d_rows(ctx, layer, cfg, inputs, shapes) -> bool:
    """``Conv1D(1, k, padding="same", use_bias=False)`` over a channel vector reshaped to a
    sequence (C, 1) (ECA-Net in Keras): channel_conv."""
    from cnnspec.importers import keras as KI
    from cnnspec.importers.common import refuse

    shape = tuple(shapes[0][1:])
    if len(shape) != 2 or shape[1] != 1 or type(layer).__name__ != "Conv1D":
        return False
    channels = vector_channels(ctx.builder, inputs[0], ctx.shapes.get(inputs[0]))
    if channels is None or channels != shape[0]:
        return False
    (k,) = cfg["kernel_size"]
    if (
        cfg["filters"] != 1
        or cfg["padding"] != "same"
        or tuple(cfg["strides"]) != (1,)
        or tuple(cfg["dilation_rate"]) != (1,)
        or cfg.get("groups", 1) != 1
        or k % 2 == 0
    ):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"Conv1D({cfg['filters']}, {k}, padding={cfg['padding']!r}, strides={cfg['strides']}) "
            "over a channel vector",
            "a Conv1D over the channels is read as channel_conv: one filter of odd size, "
            "padding 'same', stride 1 (ECA-Net's)",
        )
    fields = {"bias": True} if cfg.get("use_bias") else {}
    ctx.add(layer, "channel_conv", inputs, kernel_size=k, **fields)
    if KI.registered_activation(cfg.get("activation")) not in (None, "linear"):
        ctx.activation_after = cfg["activation"]  # the walk adds it as a layer after this one
    return True


#: Keras activation layers that may read a channel vector shaped as a sequence.
_KERAS_ACTIVATIONS = frozenset({"ReLU", "LeakyReLU", "ELU", "Softmax"})


def keras_channel_view(ctx, layer, inputs, shapes) -> bool:
    """A Reshape of a channel vector to another shape holding its C values on one axis
    (ECA-Net's ``Reshape((-1, 1))`` before its Conv1D, ``Reshape((1, 1, -1))`` after it): no
    layer, the value is its input's."""
    from cnnspec.importers import keras as KI
    from cnnspec.layers.elementwise import KERAS_MERGES

    incoming = tuple(shapes[0][1:])
    out = tuple(KI._tensor_shape(ctx.output(layer))[1:])
    channels = vector_channels(ctx.builder, inputs[0], ctx.shapes.get(inputs[0], incoming))
    if channels is None or _channel_count(out) != channels:
        return False
    output = ctx.output(layer)
    users = [
        type(call.operation).__name__
        for call in ctx.nodes.values()
        if any(tensor is output for tensor in call.input_tensors)
    ]
    if out == (channels, 1):  # the sequence a Conv1D of one filter reads
        readers = {"Conv1D", "Activation", "Reshape", *_KERAS_ACTIVATIONS}
    elif incoming != (channels, 1):
        return False  # a flat vector made a map is not a channel vector any more
    elif out == (channels,):
        readers = set(users)  # back to a flat vector: anything reads it
    else:  # back, for a gate: the merges broadcast the flat vector the same way
        readers = set(KERAS_MERGES)
    if not users or not set(users) <= readers:
        return False
    ctx.builder.rewrite(
        layer.name,
        f"Reshape{out} of a vector of {channels} channels",
        "nothing: the same values in the same order",
    )
    ctx.names[id(ctx.output(layer))] = inputs[0]
    return True
