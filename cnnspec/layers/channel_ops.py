"""Channel rearrangement: channel_shuffle (ShuffleNet) and channel_slice (one half of x.chunk(2, dim=1))."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.channels import channel_shuffle_permutation
from cnnspec.engine.plan import LayerPlan
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import compact_padding, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, NonNegative, Positive
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T

#: What a slice of the spatial axes is read as: a crop, and for a step a 1-wide strided max pool.
CROPS_AND_STRIDES = ("crop1d", "crop2d", "crop3d", "max_pool1d", "max_pool2d", "max_pool3d")


class ChannelShuffle(LayerBase):
    """Permute the channels: read them as a (groups, C/groups) matrix row by row, write them column by column."""

    type: Literal["channel_shuffle"]
    groups: Positive = Field(
        description="Number of groups; must divide the channels. Output k*groups + g is input g*(C/groups) + k."
    )


class ChannelSlice(LayerBase):
    """Channels [start, stop) of the input."""

    type: Literal["channel_slice"]
    start: NonNegative = Field(description="First channel taken (from 0).")
    stop: Positive = Field(description="One past the last channel taken.")


@register
class ChannelShuffleDefinition(LayerDefinition):
    """channel_shuffle: the reshape/transpose written for each layout (nn.ChannelShuffle does not export to ONNX)."""

    model = ChannelShuffle
    family = "channel_shuffle"
    words = {"channelshuffle": "channel_shuffle", "shuffle": "channel_shuffle"}
    hint_text = (
        "channel_shuffle: PyTorch's view(N, g, C/g, H, W)/transpose/view copied onto an NHWC tensor mixes pixels; "
        "in channels-last only the last axis is reshaped to (g, C/g)."
    )
    examples = (
        example(
            {"type": "conv2d", "filters": 8, "kernel_size": 3},
            {"type": "channel_shuffle", "groups": 2},
        ),
        example({"type": "channel_shuffle", "groups": 3}, channels=6, size=(5,)),
        example({"type": "channel_shuffle", "groups": 2}, channels=4, size=(2, 3, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        ctx.require_spatial(index, layer.type, shape)
        try:
            permutation = channel_shuffle_permutation(shape[0], layer.groups)
        except ValueError as error:
            ctx.fail(index, str(error), "groups", hint=f"pick a divisor of {shape[0]}")
        shown = ", ".join(map(str, permutation[:12])) + (", …" if len(permutation) > 12 else "")
        return dict(
            output_shape=shape,
            size_formulas=(f"channels read in the order [{shown}]",),
            param_formula="no parameters",
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        code = T.single_module(layer, inputs, f"ChannelShuffle({T.int_text(layer.spec.groups)})")
        code.helpers.add("ChannelShuffle")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use("ChannelShuffle")
        return K.single_layer(
            layer, ctx, f"{helper}({int(layer.spec.groups)}, name={K.quoted(layer.name)})"
        )


@register
class ChannelSliceDefinition(LayerDefinition):
    """channel_slice: x[:, start:stop] in PyTorch, the ChannelSlice helper in Keras (it has no split layer)."""

    model = ChannelSlice
    family = "channel_slice"
    words = {"chunk": "channel_slice", "split": "channel_slice", "slice": "channel_slice"}
    hint_text = (
        "channel_slice: [start, stop) of the channel axis (PyTorch dim 1, Keras the last axis)."
    )
    examples = (
        example({"type": "channel_slice", "start": 1, "stop": 3}),
        example(
            {"type": "conv1d", "filters": 6, "kernel_size": 2},
            {"type": "channel_slice", "start": 3, "stop": 6},
            size=(7,),
        ),
        example({"type": "channel_slice", "start": 0, "stop": 1}, channels=2, size=(3, 2, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        ctx.require_spatial(index, layer.type, shape)
        if not layer.start < layer.stop <= shape[0]:
            ctx.fail(
                index,
                f"channels [{layer.start}, {layer.stop}) are not a non-empty range of the {shape[0]} input channels",
                "stop",
                hint=f"need start < stop <= {shape[0]}",
            )
        count = layer.stop - layer.start
        return dict(
            output_shape=(count, *shape[1:]),
            size_formulas=(f"{layer.stop} − {layer.start} = {count} channels",),
            param_formula="no parameters",
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        return T.LayerCode(
            expression=f"{inputs[0]}[:, {T.int_text(spec.start)}:{T.int_text(spec.stop)}]"
        )

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use("ChannelSlice")
        spec = layer.spec
        return K.single_layer(
            layer,
            ctx,
            f"{helper}({int(spec.start)}, {int(spec.stop)}, name={K.quoted(layer.name)})",
        )


@REGISTRY.attach("onnx", "channel_slice")
def channel_slice_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Slice of the channel axis."""
    bounds = [
        b.constant(b.temp(layer, role), [value], "int64")
        for role, value in (("start", layer.spec.start), ("stop", layer.spec.stop), ("axis", 1))
    ]
    return b.node("Slice", [inputs[0], *bounds], layer.name)


@REGISTRY.attach("onnx", "channel_shuffle")
def channel_shuffle_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Reshape to (N, groups, C/groups, -1), swap the two channel axes, reshape back."""
    return shuffle_channels_onnx(b, layer, inputs[0], layer.input_shape[0], layer.spec.groups)


def shuffle_channels_onnx(
    b: O.GraphBuilder, layer: LayerPlan, source: str, channels: int, groups: int
) -> str:
    """The channel shuffle of ``source`` (``channels`` channels in ``groups`` groups) as
    ``layer``'s output."""
    grouped_shape = b.constant(
        b.temp(layer, "grouped_shape"), [0, groups, channels // groups, -1], "int64"
    )
    grouped = b.node("Reshape", [source, grouped_shape], b.temp(layer, "grouped"))
    swapped = b.node("Transpose", [grouped], b.temp(layer, "swapped"), perm=[0, 2, 1, 3])
    shape = b.node("Shape", [source], b.temp(layer, "shape"))
    return b.node("Reshape", [swapped, shape], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "ChannelShuffle", by="channel_shuffle")
def read_keras_channel_shuffle(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "channel_shuffle", inputs, groups=int(cfg["groups"]))


@REGISTRY.reads("keras", "ChannelSlice", by="channel_slice")
def read_keras_channel_slice(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "channel_slice", inputs, start=int(cfg["start"]), stop=int(cfg["stop"]))


def slice_sides(item, n: int | None) -> tuple[int, int, int] | None:
    """(cells cut before, cells cut after, step) of ``x[item]`` along an axis of length ``n``
    (None: any length, so the cuts must not depend on it); None where that is not a positive
    step over a non-empty range."""
    if isinstance(item, int) or not isinstance(item, slice):
        return None
    step = 1 if item.step is None else item.step
    if not isinstance(step, int) or step < 1:
        return None
    if n is None:
        start, stop = item.start or 0, item.stop
        if start < 0 or (stop is not None and stop >= 0):
            return None
        return start, 0 if stop is None else -stop, step
    first, stop, _ = item.indices(n)
    return (first, n - stop, step) if first < stop else None


@REGISTRY.reads(
    "keras_op", "GetItem", by="channel_slice", produces=("channel_slice", *CROPS_AND_STRIDES)
)
def read_keras_get_item(ctx, op, node, inputs) -> None:
    """``x[:, a:b, c:d, :]`` (a crop), ``x[:, ::2, 1::2, :]`` (a crop and every second cell:
    YOLOv5's Focus) and ``x[..., a:b]`` (channels) in a functional graph."""
    from cnnspec.importers import keras as KI

    shape = tuple(node.input_tensors[0].shape)
    key = node.arguments.args[1]
    key = key if isinstance(key, tuple) else (key,)
    full = slice(None)
    if key.count(Ellipsis) == 1:
        at = key.index(Ellipsis)
        key = key[:at] + (full,) * (len(shape) - len(key) + 1) + key[at + 1 :]
    key = key + (full,) * (len(shape) - len(key))
    found = [slice_sides(item, n) for item, n in zip(key[1:], shape[1:])]
    sides = [side for side in found if side is not None]
    if len(key) == len(shape) > 2 and key[0] == full and len(sides) == len(found):
        *spatial, channel = sides
        if all(side == (0, 0, 1) for side in spatial) and channel[2] == 1 and shape[-1]:
            before, after, _ = channel
            ctx.builder.add(op.name, "channel_slice", inputs, start=before, stop=shape[-1] - after)
            return
        layers = strided_crop_layers(spatial)
        if channel == (0, 0, 1) and layers:
            names = [f"{op.name}_crop"] * (len(layers) - 1) + [op.name]
            for name, (layer_type, fields) in zip(names, layers):
                inputs = [ctx.builder.add(name, layer_type, inputs, **fields)]
            if layers[-1][0].startswith("max_pool"):
                ctx.builder.rewrite(
                    op.name,
                    "x[" + ", ".join(_slice_text(item) for item in key) + "]",
                    strided_crop_text(layers),
                )
            return
    raise refuse(
        KI.FRAMEWORK,
        f"'{op.name}' (GetItem op)",
        "indexing or slicing a tensor",
        "crops and strides: x[:, a:b, c:d, :] or x[:, ::2, ::2, :]; channels: x[..., a:b]",
    )


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_chunk(ctx, node):
    chunks, dim = TI.arg(node, 1, "chunks"), TI.arg(node, 2, "dim", 0)
    shape = ctx.shape(node.args[0])
    if dim not in (1, -len(shape) - 1) or shape[0] % chunks:
        raise TI.refusal(
            ctx, node, f"chunk({chunks}, dim={dim})", "chunk into equal channel groups (dim=1)"
        )
    width = shape[0] // chunks
    ctx.chunks[node] = (node.args[0], [(i * width, (i + 1) * width) for i in range(chunks)])


def _torch_split(ctx, node):
    """``x.split(width, 1)`` or ``x.split([a, b], 1)``: channel slices, read where a piece is taken."""
    import itertools

    sizes, dim = TI.arg(node, 1, "split_size_or_sections"), TI.arg(node, 2, "dim", 0)
    channels = ctx.shape(node.args[0])[0]
    rank = len(ctx.shape(node.args[0])) + 1
    if isinstance(sizes, int) and sizes > 0:
        sizes = [min(sizes, channels - start) for start in range(0, channels, sizes)]
    if (
        not isinstance(dim, int)
        or dim % rank != 1
        or not isinstance(sizes, (list, tuple))
        or sum(sizes) != channels
    ):
        raise TI.refusal(
            ctx,
            node,
            f"split({sizes}, dim={dim})",
            "split the channels (dim=1) into pieces that add up to them",
        )
    stops = list(itertools.accumulate(sizes))
    ctx.chunks[node] = (node.args[0], list(zip([0, *stops[:-1]], stops)))


def _restores_channel_axis(user, node) -> bool:
    """Whether ``user`` is ``torch.unsqueeze(node, 1)`` or ``node.unsqueeze(1)``."""
    import torch

    if user.op == "call_function" and user.target is torch.unsqueeze:
        pass
    elif not (user.op == "call_method" and user.target == "unsqueeze"):
        return False
    arguments = [*user.args[1:], *user.kwargs.values()]
    return user.args[0] is node and arguments == [1]


def _torch_getitem(ctx, node):
    """A chunk's part, ``x[:, a:b]`` (channel_slice) or ``x[:, :, a:b, c:d]`` (a crop of every spatial dim)."""
    source, index = node.args
    if source in ctx.chunks:
        tensor, pieces = ctx.chunks[source]
        start, stop = pieces[index]
        ctx.add(node, [tensor], layer_type="channel_slice", start=start, stop=stop)
        return
    shape = ctx.shape(source) if TI.is_tensor(ctx, source) else None
    index = index if isinstance(index, tuple) else (index,)
    if shape is not None and None not in index:
        written, index = index, _spelled_out(index, len(shape) + 1)
        if all(item == slice(None) for item in index):
            if len(written) == len(shape) + 1 and len(shape) > 1:  # x[:, :, :, :], a crop of 0
                ctx.add(node, [source], layer_type=f"crop{len(shape) - 1}d", cropping=0)
            else:
                ctx.alias(node, source)
            return
    if (
        shape is not None
        and len(shape) > 1
        and len(index) == 2
        and index[0] == slice(None)
        and isinstance(index[1], int)
        and -shape[0] <= index[1] < shape[0]
        and node.users
        and all(_restores_channel_axis(user, node) for user in node.users)
    ):  # torch.unsqueeze(x[:, 1], 1): one channel (torchvision's transform_input)
        start = index[1] % shape[0]
        name = ctx.add(node, [source], layer_type="channel_slice", start=start, stop=start + 1)
        for user in node.users:
            ctx.skip.add(user)
            ctx.values[user] = TI.Node(name, ctx.shape(user))
        return
    if (
        shape is not None
        and len(shape) == 1
        and index[:2] == (slice(None), slice(None))
        and index[2:]
        and all(i is None for i in index[2:])
    ):  # x[:, :, None, None]: a flat (N, C) made to broadcast over channels, as the elementwise rule does
        ctx.alias(node, source)
        return
    if (
        shape is not None
        and index
        and all(isinstance(i, slice) for i in index)
        and any(i.step not in (None, 1) for i in index[2:])
        and _torch_strided_crop(ctx, node, source, index, shape)
    ):
        return
    if (
        shape is not None
        and all(isinstance(i, slice) and i.step in (None, 1) for i in index)
        and index
    ):
        ranges = [i.indices(n) for i, n in zip(index[1:], shape)]
        full = [(0, n, 1) for n in shape]
        if index[0] == slice(None) and len(index) == 2 and ranges[0][0] < ranges[0][1]:
            ctx.add(
                node, [source], layer_type="channel_slice", start=ranges[0][0], stop=ranges[0][1]
            )
            return
        if (
            index[0] == slice(None)
            and len(index) == len(shape) + 1
            and ranges[0] == full[0]
            and len(shape) > 1
            and all(start < stop for start, stop, _ in ranges[1:])
        ):
            from cnnspec.layers.conv_transpose import torch_same_crop

            crops = [(start, n - stop) for (start, stop, _), n in zip(ranges[1:], shape[1:])]
            if not torch_same_crop(ctx, node, source, crops):
                ctx.add(
                    node,
                    [source],
                    layer_type=f"crop{len(shape) - 1}d",
                    cropping=compact_padding(crops),
                )
            return
    raise TI.refusal(
        ctx,
        node,
        "indexing or slicing a tensor",
        "channel groups: torch.chunk(x, n, dim=1) or x[:, a:b]; crops: x[:, :, a:b, c:d]",
    )


def _torch_strided_crop(ctx, node, source, index: tuple, shape) -> bool:
    """``x[..., 1::2, ::2]`` (YOLOv5's Focus): a crop to [start, stop) of each spatial axis, then
    every step-th cell of what is left, which is a 1-wide max pool with that stride."""
    if len(index) != len(shape) + 1 or index[:2] != (slice(None), slice(None)) or len(shape) < 2:
        return False
    found = [slice_sides(item, n) for item, n in zip(index[2:], shape[1:])]
    sides = [side for side in found if side is not None]
    if len(sides) != len(found):
        return False
    layers = strided_crop_layers(sides)
    for layer_type, fields in layers:
        ctx.add(node, [source], layer_type=layer_type, **fields)
        source = node
    ctx.builder.rewrite(
        TI.original_path(node),
        f"x[{', '.join(_slice_text(i) for i in index)}]",
        strided_crop_text(layers),
    )
    return True


def strided_crop_layers(sides) -> list[tuple[str, dict[str, Any]]]:
    """The spec layers of a slice of the spatial axes, from each axis's (cells cut before,
    cells cut after, step) (:func:`slice_sides`): a crop where cells are cut, then, where a step
    skips cells, a max pool of one cell with that stride (a window of one cell is that cell)."""
    rank = len(sides)
    crops = [(before, after) for before, after, _ in sides]
    steps = [step for _, _, step in sides]
    layers: list[tuple[str, dict[str, Any]]] = []
    if any(any(pair) for pair in crops):
        layers.append((f"crop{rank}d", {"cropping": compact_padding(crops)}))
    if any(step > 1 for step in steps):
        stride = steps[0] if len(set(steps)) == 1 else steps
        layers.append((f"max_pool{rank}d", {"pool_size": 1, "stride": stride}))
    return layers


def strided_crop_text(layers) -> str:
    """What a strided slice became (:func:`strided_crop_layers`), for the report."""
    *crop, (pool_type, pool) = layers
    return (f"{crop[0][0]}, then " if crop else "") + (
        f"{pool_type} with pool_size 1 and stride {pool['stride']}: one cell per stride"
    )


def _slice_text(item: slice) -> str:
    parts = ["" if value is None else str(value) for value in (item.start, item.stop)]
    return ":".join(parts) + ("" if item.step in (None, 1) else f":{item.step}")


def _spelled_out(index: tuple, rank: int) -> tuple:
    """An index of a tensor of ``rank`` axes with ``...`` written as the full slices it stands
    for, and full slices after the channel axis dropped: ``x[:, :k, :, :]`` is ``x[:, :k]``
    (GhostNet), ``x[..., 1:5, 2:6]`` is ``x[:, :, 1:5, 2:6]``."""
    full = slice(None)
    if index.count(Ellipsis) == 1:
        at = index.index(Ellipsis)
        index = index[:at] + (full,) * (rank - len(index) + 1) + index[at + 1 :]
    if len(index) > 2 and all(item == full for item in index[2:]):
        index = index[:2]
    return index


def _torch_channel_shuffle(ctx, node, module):
    ctx.add(node, node.args[:1], layer_type="channel_shuffle", groups=int(module.groups))


REGISTRY.reads("torch_function", "torch.chunk", by="channel_slice")(_torch_chunk)
REGISTRY.reads("torch_method", "chunk", by="channel_slice")(_torch_chunk)
REGISTRY.reads("torch_function", "torch.split", by="channel_slice")(_torch_split)
REGISTRY.reads("torch_method", "split", by="channel_slice")(_torch_split)
REGISTRY.reads(
    "torch_function",
    "operator.getitem",
    by="channel_slice",
    produces=("channel_slice", *CROPS_AND_STRIDES),
)(_torch_getitem)
REGISTRY.reads("torch_module", "ChannelShuffle", by="channel_shuffle")(_torch_channel_shuffle)


#: An end at or past this is "to the end" (exporters write INT64_MAX, tf2onnx INT32_MAX).
_TO_THE_END = 2**31 - 1


def _onnx_slice_cuts(ctx, node) -> dict[int, tuple[int, int, int]] | None:
    """Axis -> (cells cut before, cells cut after, step) of a Slice with positive steps and
    constant bounds (None otherwise).  On an axis of unknown length the cuts must not depend on
    it: a start counted from the beginning, an end counted from the end."""
    shape = ctx.shapes.get(node.input[0])
    inputs = [OI.static_ints(ctx, name) if name else None for name in node.input[1:5]]
    if not shape or any(value is None for name, value in zip(node.input[1:], inputs) if name):
        return None
    starts, ends = inputs[0] or [], inputs[1] or []
    axes = (inputs[2] if len(inputs) > 2 else None) or list(range(len(starts)))
    steps = (inputs[3] if len(inputs) > 3 else None) or [1] * len(starts)
    cuts: dict[int, tuple[int, int, int]] = {}
    for begin, end, axis, step in zip(starts, ends, axes, steps):
        axis %= len(shape)
        if axis == 0 and begin == 0 and end >= _TO_THE_END and step == 1:
            continue  # the whole batch (tf2onnx lists every axis)
        if axis == 0:
            return None
        side = slice_sides(slice(begin, None if end >= _TO_THE_END else end, step), shape[axis])
        if side is None:
            return None
        if side != (0, 0, 1):
            cuts[axis] = side
    return cuts


def _onnx_slice(ctx, node, attrs):
    value = ctx.value(node.input[0])
    shape = ctx.shapes.get(node.input[0])
    cuts = _onnx_slice_cuts(ctx, node)
    if value.layout not in (OI.FIRST, OI.LAST) or cuts is None or not shape:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"Slice of a {value.layout} tensor (computed bounds, negative steps or the batch axis)",
            "constant bounds on the channels (step 1) or the spatial axes",
        )
    rank = len(shape)
    channel, spatial = OI.channel_and_spatial_axes(ctx, value.layout, rank)
    last = node
    while set(cuts) <= set(spatial):  # x[..., a:b, c:d] is exported as one Slice per axis
        after = ctx.only_user(last.output[0])
        more = None if after is None or after.op_type != "Slice" else _onnx_slice_cuts(ctx, after)
        if more is None or not set(more) <= set(spatial) or set(more) & set(cuts):
            break
        cuts.update(more)
        ctx.consumed.add(after.output[0])
        last = after
    if not cuts:
        ctx.alias(node, node.input[0])
    elif set(cuts) == {channel} and cuts[channel][2] == 1 and shape[channel]:
        before, after, _ = cuts[channel]
        ctx.add(
            node,
            "channel_slice",
            [node.input[0]],
            value.layout,
            start=before,
            stop=shape[channel] - after,
        )
    elif set(cuts) <= set(spatial):
        sides = [cuts.get(a, (0, 0, 1)) for a in spatial]
        layers = strided_crop_layers(sides)
        outputs = [last.output[0] + "__cropped"] * (len(layers) - 1) + [last.output[0]]
        source = node.input[0]
        for output, (layer_type, fields) in zip(outputs, layers):
            ctx.add(last, layer_type, [source], value.layout, output=output, **fields)
            source = output
        if layers[-1][0].startswith("max_pool"):
            ctx.builder.rewrite(
                OI.readable(last),
                f"Slice with steps {[step for _, _, step in sides]}",
                strided_crop_text(layers),
            )
    else:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"Slice over axes {sorted(cuts)} of a {value.layout} tensor",
            "a slice of the channels (channel_slice) or of the spatial axes (crop)",
        )


def _onnx_split(ctx, node, attrs):
    value = ctx.value(node.input[0])
    shape = ctx.shapes.get(node.input[0])
    rank = len(shape or ())
    channel = (
        OI.channel_and_spatial_axes(ctx, value.layout, rank)[0]
        if value.layout in (OI.FIRST, OI.LAST)
        else 1
    )
    if value.layout == OI.EXPANDED or not shape or attrs.get("axis", 0) % rank != channel:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"Split along axis {attrs.get('axis', 0)}",
            "a split of the channels",
        )
    if len(node.input) > 1 and node.input[1]:
        sizes = [int(v) for v in ctx.constant(node.input[1], "split")]
    else:
        count = len(node.output)
        sizes = [-(-shape[channel] // count)] * count
        sizes[-1] = shape[channel] - sum(sizes[:-1])
    start = 0
    for output, size in zip(node.output, sizes):
        ctx.add(
            node,
            "channel_slice",
            [node.input[0]],
            value.layout,
            output=output,
            start=start,
            stop=start + size,
        )
        start += size


def onnx_channel_shuffle_chain(ctx, node) -> bool:
    """Reshape the channels to (g, C/g), swap those two axes, Reshape back: a channel shuffle."""
    found = onnx_channel_shuffle_match(ctx, node)
    if found is None:
        return False
    groups, nodes = found
    ctx.add(
        nodes[-1],
        "channel_shuffle",
        [node.input[0]],
        ctx.value(node.input[0]).layout,
        groups=groups,
    )
    ctx.consumed.update(n.output[0] for n in nodes)
    return True


def onnx_channel_shuffle_match(ctx, node, layout: str | None = None) -> tuple[int, tuple] | None:
    """The groups and the three nodes (Reshape, Transpose, Reshape) of a channel shuffle that
    starts at ``node``, or None.  Channels first, the spatial axes may be kept or flattened
    into one (cnnspec's own graph: (N, g, C/g, -1)).  ``layout``: the input's, when the
    caller has not read it yet."""
    source = node.input[0]
    value = ctx.values.get(source)
    layout = layout or (value.layout if value is not None else None)
    shape = ctx.shapes.get(source)
    split = ctx.shapes.get(node.output[0])
    swap = ctx.only_user(node.output[0])
    if layout not in (OI.FIRST, OI.LAST) or not shape or not split or swap is None:
        return None
    rank = len(shape)
    channel = 1 if layout == OI.FIRST else rank - 1
    expected = list(shape[:channel]) + [None, None] + list(shape[channel + 1 :])
    if layout == OI.FIRST and len(split) == 4 and rank > 3:
        spatial = shape[2:]
        expected = [shape[0], None, None, None if None in spatial else math.prod(spatial)]
    elif len(split) != rank + 1:
        return None
    if any(e is not None and s is not None and e != s for e, s in zip(expected[1:], split[1:])):
        return None
    groups, per_group = split[channel], split[channel + 1]
    if not groups or not per_group or groups * per_group != shape[channel]:
        return None
    perm = list(range(len(split)))
    perm[channel], perm[channel + 1] = channel + 1, channel
    if swap.op_type != "Transpose" or list(OI.attributes(swap).get("perm", [])) != perm:
        return None
    back = ctx.only_user(swap.output[0])
    if (
        back is None
        or back.op_type != "Reshape"
        or list(ctx.shapes.get(back.output[0]) or [])[1:] != list(shape[1:])
    ):
        return None
    return int(groups), (node, swap, back)


REGISTRY.reads(
    "onnx",
    "Slice",
    by="channel_slice",
    produces=("channel_slice", *CROPS_AND_STRIDES),
)(_onnx_slice)
REGISTRY.reads("onnx", "Split", by="channel_slice")(_onnx_split)


def _onnx_one_channel(ctx, node, attrs):
    """``x[:, i]`` then Unsqueeze of that axis (both torch exporters' ``torch.unsqueeze(x[:, i],
    1)``, torchvision's transform_input): channel_slice i:i+1."""
    import numpy as np

    value = ctx.value(node.input[0])
    shape = ctx.shapes.get(node.input[0])
    index = ctx.constants.get(node.input[1])
    after = ctx.only_user(node.output[0])
    if value.layout in (OI.FIRST, OI.LAST) and shape and index is not None and after is not None:
        channel, _ = OI.channel_and_spatial_axes(ctx, value.layout, len(shape))
        axes = OI.attributes(after).get("axes") or (
            OI.static_ints(ctx, after.input[1]) if len(after.input) > 1 else None
        )
        index = np.asarray(index)
        if (
            attrs.get("axis", 0) % len(shape) == channel
            and index.ndim == 0
            and after.op_type == "Unsqueeze"
            and axes is not None
            and [a % len(shape) for a in axes] == [channel]
        ):
            start = int(index) % shape[channel]
            ctx.add(
                after, "channel_slice", [node.input[0]], value.layout, start=start, stop=start + 1
            )
            ctx.consumed.add(after.output[0])
            return
    raise refuse(
        OI.FRAMEWORK,
        OI.where(node),
        f"Gather of a {value.layout} tensor",
        "one channel taken and its axis restored (Gather then Unsqueeze): channel_slice",
    )


REGISTRY.reads("onnx", "Gather", by="channel_slice")(_onnx_one_channel)
