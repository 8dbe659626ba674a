"""channel_conv: one filter slid along the channels, the same at every position (ECA-Net's
efficient channel attention: ``nn.Conv1d(1, 1, k, padding=k // 2)`` over a pooled (C, 1, 1) map)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
from cnnspec.importers import onnx as OI
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
                f"kernel_size {k} is even: PyTorch's padding (k - 1) // 2 pads {(k - 1) // 2} + "
                f"{(k - 1) // 2} channels and loses one, Keras' 'same' pads {(k - 1) // 2} and "
                f"{k // 2}",
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


def vector_channels(builder, name: str, shape, channels_last: bool = False) -> int | None:
    """C when the spec value ``name`` (of framework shape ``shape``) is a channel vector: shaped
    (C,) or (C, 1, ..., 1) ((1, ..., 1, C) in Keras), or a channel_conv's output (or an
    activation of one) still shaped as the one-channel sequence the frameworks' Conv1d reads."""
    if shape:
        channels, others = (shape[-1], shape[:-1]) if channels_last else (shape[0], shape[1:])
        if channels > 1 and all(d == 1 for d in others):
            return channels
    _, passed_channel_conv = _vector_origin(builder, name)
    return _channel_count(tuple(shape)) if passed_channel_conv else None


def _vector_origin(builder, name: str) -> tuple[str, bool]:
    """Back from the spec value ``name`` through channel_conv layers and activations: the first
    value that is neither (where the channel vector started), and whether a channel_conv was
    passed on the way."""
    index = {layer["name"]: number for number, layer in enumerate(builder.layers)}
    passed_channel_conv = False
    while name in index:
        number = index[name]
        layer = builder.layers[number]
        if layer["type"] == "channel_conv":
            passed_channel_conv = True
        elif REGISTRY.family_of(layer["type"]) != "activation":
            break
        previous = builder.layers[number - 1]["name"] if number else "input"
        name = layer.get("inputs", [previous])[0]
    return name, passed_channel_conv


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
    elif node.users and torch_gate_users_only(ctx, node):
        ctx.values[node] = TI.Node(value.name, out)  # shaped for merges, which read it as is
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
    channels = vector_channels(ctx.builder, inputs[0], ctx.shapes.get(inputs[0]), True)
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


def keras_channel_view(ctx, layer, inputs, shapes, what: str = "Reshape") -> bool:
    """A Reshape (or ``ops.expand_dims`` / ``ops.squeeze``) of a channel vector to another
    shape holding its C values on one axis (ECA-Net's ``Reshape((-1, 1))`` before its Conv1D,
    ``Reshape((1, 1, -1))`` after it; a squeeze-excite gate made (1, 1, C) with
    ``ops.expand_dims`` for a Multiply): no layer, the value is its input's."""
    from cnnspec.importers import keras as KI
    from cnnspec.layers.elementwise import KERAS_MERGES

    incoming = tuple(shapes[0][1:])
    out = tuple(KI._tensor_shape(ctx.output(layer))[1:])
    channels = vector_channels(ctx.builder, inputs[0], ctx.shapes.get(inputs[0], incoming), True)
    if channels is None or _channel_count(out) != channels:
        return False
    users = [type(operation).__name__ for operation in ctx.readers(ctx.output(layer))]
    steps = {"Reshape", "ExpandDims", "Squeeze", "Activation", *_KERAS_ACTIVATIONS}
    if out == (channels, 1):  # the sequence a Conv1D of one filter reads
        readers = {"Conv1D", *steps}
    elif out == _keras_vector_form(ctx, inputs[0]):  # the vector's own shape again
        readers = set(users)
    else:  # shaped for a gate: merges broadcast the vector as it is
        readers = {*KERAS_MERGES, *steps}  # (a flat vector made a map for a conv is refused)
    if not users or not set(users) <= readers:
        return False
    ctx.builder.rewrite(
        layer.name,
        f"{what}{out} of a vector of {channels} channels",
        "nothing: the same values in the same order",
    )
    ctx.names[id(ctx.output(layer))] = inputs[0]
    return True


def _keras_vector_form(ctx, name: str) -> tuple | None:
    """The Keras shape of the channel vector a channel_conv (and activations after it) started
    from: (C,) or (1, ..., 1, C)."""
    return ctx.shapes.get(_vector_origin(ctx.builder, name)[0])


def _read_keras_view_op(ctx, layer, node, inputs) -> None:
    from cnnspec.importers import keras as KI
    from cnnspec.importers.common import refuse

    shapes = [KI._tensor_shape(tensor) for tensor in node.input_tensors]
    if not keras_channel_view(ctx, layer, inputs, shapes, type(layer).__name__):
        raise refuse(
            KI.FRAMEWORK,
            f"'{layer.name}' ({type(layer).__name__} op)",
            f"of a {list(shapes[0][1:])} tensor",
            "cnnspec reads ops.expand_dims / ops.squeeze only of a channel vector: made a "
            "sequence for a Conv1D over the channels (ECA-Net) and back, or made (1, 1, C) for "
            "a Multiply (a squeeze-excite gate)",
        )


REGISTRY.reads("keras_op", "ExpandDims", "Squeeze", by="channel_conv", produces=())(
    _read_keras_view_op
)


# -- what the importers read as this type (ONNX: a Conv over rows of channels) ----------------

#: The ops that only move a tensor's values.
_ONNX_MOVES = frozenset({"Reshape", "Transpose", "Unsqueeze", "Squeeze"})


def _onnx_filter(ctx, conv) -> tuple[int, Any, int | None] | None:
    """(k, bias, axis) of a Conv of one filter that slides along one spatial axis alone (the
    kernel 1 on every other), zero-padded k // 2 on both sides, stride and dilation 1; ``axis``
    is the tensor axis it slides along (None for a one-tap filter); None otherwise."""
    import numpy as np

    weight = ctx.constants.get(conv.input[1]) if len(conv.input) > 1 else None
    if weight is None or weight.ndim < 3 or weight.shape[:2] != (1, 1):
        return None
    rank = weight.ndim - 2
    long_axes = [axis for axis in range(2, weight.ndim) if weight.shape[axis] != 1]
    if len(long_axes) > 1:
        return None
    axis = long_axes[0] if long_axes else None
    k = int(weight.shape[axis]) if axis is not None else 1
    attrs = OI.attributes(conv)
    pads = list(attrs.get("pads", [0] * 2 * rank))
    wanted = [k // 2 if a + 2 == axis else 0 for a in range(rank)] * 2
    if (
        k % 2 == 0
        or attrs.get("group", 1) != 1
        or any(s != 1 for s in attrs.get("strides", [1] * rank))
        or any(d != 1 for d in attrs.get("dilations", [1] * rank))
        or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
        or pads != wanted
    ):
        return None
    bias = ctx.constants.get(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if len(conv.input) > 2 and conv.input[2] and bias is None:
        return None
    return k, None if bias is None else np.asarray(bias, np.float32).reshape(1), axis


def _run_moves(ctx, chain, values):
    """``values`` through the chain's moves; a Reshape whose target is computed at run time
    takes the shape inference found for its output (the probe's batch where that is open)."""
    from cnnspec.layers.pixel_shuffle import _run_moves as run_static

    for node in chain:
        if node.op_type == "Reshape" and OI.static_ints(ctx, node.input[1]) is None:
            out = ctx.shapes.get(node.output[0])
            if not out or None in out[1:]:
                raise ValueError("a shape computed at run time")
            values = values.reshape([-1 if d is None else d for d in out])
        else:
            values = run_static(ctx, [node], values)
    return values


def _restored_layout(moved, cells, layout: str) -> str | None:
    """The layout in which ``moved`` holds ``cells`` again: ``layout`` when it is the same
    array; for a channel vector (C values a sample) any shape with them in order on one axis
    (of the source's rank: channels first or last; of another: expanded, for element-wise
    layers and merges); None when the values are elsewhere."""
    import numpy as np

    if moved.shape == cells.shape and np.array_equal(moved, cells):
        return layout
    channels = cells.shape[-1 if layout == OI.LAST else 1]
    shape = moved.shape[1:]
    if (
        cells[0].size != channels
        or moved.shape[0] != cells.shape[0]
        or _channel_count(shape) != channels
        or not np.array_equal(moved.reshape(-1), cells.reshape(-1))
    ):
        return None
    if len(shape) != cells.ndim - 1:  # another rank: shaped for element-wise layers to read
        return OI.EXPANDED
    if len(shape) == 1:
        return OI.FLAT
    return OI.FIRST if shape[0] == channels else OI.LAST


def _lines_hold_positions(lines, cells, channel_axis: int, axis: int | None) -> bool:
    """Every line of ``lines`` along ``axis`` (the Conv's input: one channel on axis 1) holds
    one position's channels of ``cells`` in order (``axis`` None: the axis as long as them)."""
    import numpy as np

    channels = cells.shape[channel_axis]
    if axis is None:  # a one-tap filter slides along the axis as long as the channels
        axis = next((a for a in range(2, lines.ndim) if lines.shape[a] == channels), None)
    if axis is None or lines.ndim < 3 or lines.shape[1] != 1 or lines.shape[axis] != channels:
        return False
    by_position = np.moveaxis(cells, channel_axis, -1).reshape(-1, channels)
    read = np.moveaxis(lines[:, 0], axis - 1, -1).reshape(-1, channels)
    row_of = np.full(cells.size, -1)
    row_of[by_position[:, 0]] = np.arange(len(by_position))
    rows = row_of[read[:, 0]]
    return (
        len(read) == len(by_position)
        and bool((rows >= 0).all())
        and np.array_equal(read, by_position[rows])
    )


def _moves_back(ctx, conv, lines, cells, layout: str, bias_free: bool):
    """(nodes, layout, offset): the moves after the Conv (and a one-value bias added on the way
    when the Conv has none) as far as they put every value back where it came from, the
    longest such run; the layout the values are in there (None: never back); the bias added."""
    back: list = []
    moved, offset = lines, None
    found: tuple[list, str | None, Any] = ([], _restored_layout(lines, cells, layout), None)
    after = ctx.only_user(conv.output[0])
    while after is not None and len(back) < 6:
        if after.op_type in _ONNX_MOVES:
            moved = _run_moves(ctx, [after], moved)
        elif bias_free and offset is None and _onnx_one_value(ctx, after) is not None:
            offset = _onnx_one_value(ctx, after)
        else:
            break
        back.append(after)
        restored = _restored_layout(moved, cells, layout)
        if restored is not None:
            found = (list(back), restored, offset)
        after = ctx.only_user(after.output[0])
    return found


def _onnx_one_value(ctx, node):
    """The constant of ``x + b`` with one value b (a bias added after a Conv), else None."""
    import numpy as np

    if node.op_type != "Add":
        return None
    constant = [name for name in node.input if name in ctx.constants]
    if len(constant) != 1 or np.asarray(ctx.constants[constant[0]]).size != 1:
        return None
    return np.asarray(ctx.constants[constant[0]], np.float32).reshape(1)


def _moves_from(ctx, name: str) -> list:
    """The chain of value-moving nodes reading ``name``, each the only reader of the last."""
    chain: list = []
    current = ctx.only_user(name)
    while current is not None and current.op_type in _ONNX_MOVES and len(chain) < 6:
        chain.append(current)
        current = ctx.only_user(current.output[0])
    return chain


def onnx_channel_conv(ctx, node) -> bool:
    """Moves that make each position's channels a line of one channel (torch.onnx's export of
    ECA-Net's ``conv(y.squeeze(-1).transpose(-1, -2))``, of ``x.view(n, 1, -1)``, of cnnspec's own
    helper, cnnspec's own Unsqueeze), a Conv of one filter (1, 1, k) along those lines, and
    moves back: channel_conv.  The moves are read by what they do to a map of numbered cells:
    every line the Conv slides along must hold one position's channels in order, and the moves
    after it must put every value back where it came from.  A channel vector (all spatial sizes
    1, or flat) may stay in its line form for element-wise layers (the gate made broadcastable
    later)."""
    import numpy as np

    source = node.input[0]
    value = ctx.values.get(source)
    shape = ctx.shapes.get(source)
    if value is None or value.layout not in (OI.FIRST, OI.LAST, OI.FLAT) or not shape:
        return False
    if None in shape[1:] or (value.layout == OI.FLAT and value.flattened_last):
        return False
    chain = [node, *_moves_from(ctx, node.output[0])]
    conv = ctx.only_user(chain[-1].output[0])
    if conv is None or conv.op_type != "Conv":
        return False
    found = _onnx_filter(ctx, conv)
    if found is None:
        return False
    k, bias, axis = found
    channel_axis = len(shape) - 1 if value.layout == OI.LAST else 1
    probe_shape = (shape[0] or 2, *shape[1:])  # the batch matters: a line must not cross samples
    cells = np.arange(math.prod(probe_shape)).reshape(probe_shape)
    try:
        lines = _run_moves(ctx, chain, cells)
        if not _lines_hold_positions(lines, cells, channel_axis, axis):
            return False
        taken, layout, offset = _moves_back(ctx, conv, lines, cells, value.layout, bias is None)
    except (ValueError, TypeError):
        return False
    if layout is None:
        return False
    if offset is not None:
        bias = offset
    output = taken[-1].output[0] if taken else conv.output[0]
    tensors = {"kernel": np.asarray(ctx.constants[conv.input[1]], np.float32).reshape(1, 1, k)}
    fields: dict[str, Any] = {"kernel_size": k}
    if bias is not None:
        tensors["bias"], fields["bias"] = bias, True
    ctx.add(conv, "channel_conv", [source], layout, tensors, output=output, **fields)
    ctx.consumed.update(n.output[0] for n in [*chain, conv, *taken])
    return True
