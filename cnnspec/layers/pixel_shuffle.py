"""pixel_shuffle and pixel_unshuffle: channels moved into r×r blocks of space (ESPCN's sub-pixel
convolution) and back (Real-ESRGAN's ×2 and ×1 models start with an unshuffle).

PyTorch's order, which the spec keeps: output channel c at offset (i, j) of each block is input
channel c·r² + i·r + j ("CRD": channels, then rows, then columns), and the unshuffle is its
inverse.  TensorFlow's ``depth_to_space``/``space_to_depth`` and ONNX's ``DepthToSpace`` (by
default) and ``SpaceToDepth`` use channel (i·r + j)·C + c ("DCR") instead: the same shapes, other
values.  The two orders differ by a channel shuffle, which is how the importers read DCR.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from cnnspec.engine.channels import channel_shuffle_permutation
from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
from cnnspec.layers.channel_ops import shuffle_channels_onnx
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, Positive
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class PixelShuffle(LayerBase):
    """Rearrange (C·r², H, W) into (C, H·r, W·r), in PyTorch's channel order."""

    type: Literal["pixel_shuffle"]
    factor: Positive = Field(
        description=(
            "The upscale factor r; r² must divide the channels. Output channel c at offset (i, j) "
            "of each r×r block is input channel c·r² + i·r + j (PyTorch's PixelShuffle; not "
            "TensorFlow's depth_to_space, which reads (i·r + j)·C + c)."
        )
    )


class PixelUnshuffle(LayerBase):
    """Rearrange (C, H, W) into (C·r², H / r, W / r), in PyTorch's channel order."""

    type: Literal["pixel_unshuffle"]
    factor: Positive = Field(
        description=(
            "The downscale factor r; it must divide the height and the width. Output channel "
            "c·r² + i·r + j is input channel c at offset (i, j) of each r×r block (PyTorch's "
            "PixelUnshuffle; not TensorFlow's space_to_depth, which writes (i·r + j)·C + c)."
        )
    )


class _BlockDefinition(LayerDefinition):
    """What the shuffle and the unshuffle share: 2-D maps, a factor, PyTorch's module and the
    Keras helper of the same name (``module``)."""

    family = "pixel_shuffle"
    module: ClassVar[str]

    def require_map(self, ctx: Any, index: int, layer: Any, shape: Any) -> None:
        if ctx.require_spatial(index, layer.type, shape) != 2:
            ctx.fail(
                index, f"{layer.type} needs a 2-D feature map (C, H, W), got {list(shape)}", "type"
            )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.single_module(layer, inputs, f"nn.{self.module}({T.int_text(layer.spec.factor)})")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use(self.module)
        return K.single_layer(
            layer, ctx, f"{helper}({int(layer.spec.factor)}, name={K.quoted(layer.name)})"
        )


@register
class PixelShuffleDefinition(_BlockDefinition):
    """pixel_shuffle: nn.PixelShuffle in PyTorch, the PixelShuffle helper in Keras, DepthToSpace
    in CRD mode in ONNX."""

    model = PixelShuffle
    module = "PixelShuffle"
    words = {
        "pixelshuffle": "pixel_shuffle",
        "depthtospace": "pixel_shuffle",
        "depth_to_space": "pixel_shuffle",
        "subpixel": "pixel_shuffle",
    }
    hint_text = (
        "pixel_shuffle: PyTorch reads channel c·r² + i·r + j into block offset (i, j); TensorFlow's "
        "depth_to_space and ONNX DepthToSpace's default DCR mode read (i·r + j)·C + c."
    )
    examples = (
        example(
            {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1},
            {"type": "pixel_shuffle", "factor": 2},
        ),
        example({"type": "pixel_shuffle", "factor": 3}, channels=18, size=(3, 4)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        self.require_map(ctx, index, layer, shape)
        r = layer.factor
        if shape[0] % (r * r):
            ctx.fail(
                index,
                f"factor {r}: r² = {r * r} does not divide the {shape[0]} input channels",
                "factor",
                hint="the channels before a pixel shuffle are C·r² (a convolution with C·r² filters)",
            )
        channels = shape[0] // (r * r)
        outs = [n * r for n in shape[1:]]
        return dict(
            output_shape=(channels, *outs),
            size_formulas=(
                f"channels {shape[0]} / {r}² = {channels}",
                *(f"{n}·{r} = {o}" for n, o in zip(shape[1:], outs)),
            ),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(n.affine(layer.spec.factor) for n in in_sizes[0])


@register
class PixelUnshuffleDefinition(_BlockDefinition):
    """pixel_unshuffle: nn.PixelUnshuffle in PyTorch, the PixelUnshuffle helper in Keras,
    SpaceToDepth and a channel shuffle in ONNX."""

    model = PixelUnshuffle
    module = "PixelUnshuffle"
    words = {
        "pixelunshuffle": "pixel_unshuffle",
        "spacetodepth": "pixel_unshuffle",
        "space_to_depth": "pixel_unshuffle",
        "focus": "pixel_unshuffle",
    }
    hint_text = (
        "pixel_unshuffle: PyTorch writes block offset (i, j) of channel c to channel c·r² + i·r + j; "
        "TensorFlow's space_to_depth and ONNX SpaceToDepth write (i·r + j)·C + c."
    )
    examples = (
        example(
            {"type": "conv2d", "filters": 2, "kernel_size": 3, "padding": 1},
            {"type": "pixel_unshuffle", "factor": 2},
            size=(6, 4),
        ),
        example({"type": "pixel_unshuffle", "factor": 3}, channels=2, size=(6, 9)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        self.require_map(ctx, index, layer, shape)
        r = layer.factor
        uneven = [n for n in shape[1:] if n % r]
        if uneven:
            ctx.fail(
                index,
                f"factor {r} does not divide the input's size {'×'.join(map(str, shape[1:]))}",
                "factor",
                hint="PyTorch's PixelUnshuffle takes only sizes that are multiples of the factor; "
                "pad or crop the input to one",
            )
        channels = shape[0] * r * r
        outs = [n // r for n in shape[1:]]
        return dict(
            output_shape=(channels, *outs),
            size_formulas=(
                f"channels {shape[0]}·{r}² = {channels}",
                *(f"{n} / {r} = {o}" for n, o in zip(shape[1:], outs)),
            ),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(n.affine(1, 0, layer.spec.factor) for n in in_sizes[0])

    def input_multiple(self, layer: LayerPlan) -> int:
        return layer.spec.factor


@REGISTRY.attach("onnx", "pixel_shuffle")
def pixel_shuffle_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """DepthToSpace in CRD mode (PyTorch's order; the op's default DCR is TensorFlow's)."""
    return b.node("DepthToSpace", [inputs[0]], layer.name, blocksize=layer.spec.factor, mode="CRD")


@REGISTRY.attach("onnx", "pixel_unshuffle")
def pixel_unshuffle_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """SpaceToDepth, whose channels come in TensorFlow's order (i·r + j)·C + c, then the channel
    shuffle with r² groups that puts them in PyTorch's, c·r² + i·r + j."""
    r = layer.spec.factor
    blocks = b.node("SpaceToDepth", [inputs[0]], b.temp(layer, "blocks"), blocksize=r)
    return shuffle_channels_onnx(b, layer, blocks, layer.output_shape[0], r * r)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "PixelShuffle", by="pixel_shuffle")
def read_keras_pixel_shuffle(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "pixel_shuffle", inputs, factor=int(cfg["factor"]))


@REGISTRY.reads("keras", "PixelUnshuffle", by="pixel_unshuffle")
def read_keras_pixel_unshuffle(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "pixel_unshuffle", inputs, factor=int(cfg["factor"]))


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_pixel_shuffle_module(ctx, node, module):
    ctx.add(node, node.args[:1], layer_type="pixel_shuffle", factor=int(module.upscale_factor))


def _torch_pixel_shuffle(ctx, node):
    factor = TI.arg(node, 1, "upscale_factor")
    ctx.add(node, node.args[:1], layer_type="pixel_shuffle", factor=int(factor))


REGISTRY.reads("torch_module", "PixelShuffle", by="pixel_shuffle")(_torch_pixel_shuffle_module)
REGISTRY.reads(
    "torch_function", "torch.nn.functional.pixel_shuffle", "torch.pixel_shuffle", by="pixel_shuffle"
)(_torch_pixel_shuffle)


def _torch_pixel_unshuffle_module(ctx, node, module):
    ctx.add(node, node.args[:1], layer_type="pixel_unshuffle", factor=int(module.downscale_factor))


def _torch_pixel_unshuffle(ctx, node):
    factor = TI.arg(node, 1, "downscale_factor")
    ctx.add(node, node.args[:1], layer_type="pixel_unshuffle", factor=int(factor))


REGISTRY.reads("torch_module", "PixelUnshuffle", by="pixel_unshuffle")(
    _torch_pixel_unshuffle_module
)
REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.pixel_unshuffle",
    "torch.pixel_unshuffle",
    by="pixel_unshuffle",
)(_torch_pixel_unshuffle)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


@REGISTRY.reads(
    "onnx", "DepthToSpace", by="pixel_shuffle", produces=("pixel_shuffle", "channel_shuffle")
)
def _onnx_depth_to_space(ctx, node, attrs):
    """CRD mode is the shuffle; DCR (the default, TensorFlow's depth_to_space) is the channel
    shuffle with r² groups that moves channel (i·r + j)·C + c to c·r² + i·r + j, then the
    shuffle."""
    source = node.input[0]
    if ctx.value(source).layout != OI.FIRST:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            "DepthToSpace on a channels-last tensor",
            "DepthToSpace on channels-first input (ONNX's own layout)",
        )
    r = int(attrs["blocksize"])
    if OI.decode(attrs.get("mode", "DCR")) == "DCR":
        pytorch_order = node.output[0] + "__pytorch_order"
        ctx.add(node, "channel_shuffle", [source], OI.FIRST, output=pytorch_order, groups=r * r)
        ctx.builder.rewrite(
            OI.readable(node),
            f"DepthToSpace(blocksize={r}, mode=DCR)",
            f"channel_shuffle with {r * r} groups (TensorFlow's channel order), then pixel_shuffle {r}",
        )
        source = pytorch_order
    ctx.add(node, "pixel_shuffle", [source], OI.FIRST, factor=r)


#: The 6-D Transpose of each spelled-out rearrangement (PyTorch's export of pixel_unshuffle,
#: tf2onnx's of the Keras helpers): the same permutation in either layout.
_BLOCK_PERMUTATIONS = {"pixel_unshuffle": [0, 1, 3, 5, 2, 4], "pixel_shuffle": [0, 1, 4, 2, 5, 3]}


def onnx_pixel_shuffle_chain(ctx, node) -> bool:
    """A shuffle or unshuffle spelled out as Reshape to 6-D, Transpose, Reshape back to 4-D.

    Unshuffle: (N, C, H, W) -> (N, C, H/r, r, W/r, r), or channels last (N, H/r, r, W/r, r, C).
    Shuffle: (N, C·r², H, W) -> (N, C, r, r, H, W), or channels last (N, H, W, C, r, r).
    """
    source = node.input[0]
    value = ctx.values.get(source)
    shape = ctx.shapes.get(source)
    blocks = ctx.shapes.get(node.output[0])
    swap = ctx.only_user(node.output[0])
    if (
        value is None
        or value.layout not in (OI.FIRST, OI.LAST)
        or not shape
        or len(shape) != 4
        or not blocks
        or len(blocks) != 6
        or swap is None
        or swap.op_type != "Transpose"
    ):
        return False
    perm = list(OI.attributes(swap).get("perm", []))
    layer_type = next((kind for kind, p in _BLOCK_PERMUTATIONS.items() if p == perm), None)
    first = value.layout == OI.FIRST
    channels = shape[1] if first else shape[3]
    if layer_type == "pixel_unshuffle":
        r, other = (blocks[3], blocks[5]) if first else (blocks[2], blocks[4])
        kept = blocks[1] if first else blocks[5]
    elif layer_type == "pixel_shuffle":
        r, other = (blocks[2], blocks[3]) if first else (blocks[4], blocks[5])
        kept = (blocks[1] if first else blocks[3]) * r * r if r and other else None
    else:
        return False
    if not r or r != other or not channels or kept != channels:
        return False
    # the blocks split each spatial axis in r (or keep it): a 6-D shape of the same size that
    # cuts the axes elsewhere is another permutation
    height, width = (shape[2], shape[3]) if first else (shape[1], shape[2])
    if layer_type == "pixel_unshuffle":
        cut = (blocks[2], blocks[4]) if first else (blocks[1], blocks[3])
        wanted = [None if n is None else n / r for n in (height, width)]
    else:
        cut = (blocks[4], blocks[5]) if first else (blocks[1], blocks[2])
        wanted = [height, width]
    if any(a is not None and b is not None and a != b for a, b in zip(cut, wanted)):
        return False
    back = ctx.only_user(swap.output[0])
    out = ctx.shapes.get(back.output[0]) if back is not None else None
    if back is None or back.op_type != "Reshape" or not out or len(out) != 4:
        return False
    out_channels = channels * r * r if layer_type == "pixel_unshuffle" else channels // (r * r)
    if (out[1] if first else out[3]) != out_channels:
        return False
    ctx.add(node, layer_type, [source], value.layout, output=back.output[0], factor=int(r))
    ctx.consumed.update(n.output[0] for n in (node, swap, back))
    return True


#: Ops that move values without computing: a chain of them between two maps is a rearrangement.
_MOVES = {"Reshape", "Transpose", "Unsqueeze", "Squeeze"}

#: A probe length every factor up to 6 divides, for an axis whose length the graph leaves open.
_PROBE_LENGTH = 60


def onnx_rearrangement(ctx, node) -> bool:
    """A chain of Reshape / Transpose / Unsqueeze / Squeeze from a channels-first map back to a
    4-D map, read by what it does to the values: it is run on a map of numbered cells and
    compared with each rearrangement the spec has (channel shuffle, pixel shuffle, unshuffle).
    Any exporter's spelling is read that way (torch.onnx's of pixel_unshuffle at any size:
    Unsqueeze, two Reshapes, Transpose, Reshape, Squeeze)."""
    import numpy as np

    source = node.input[0]
    value = ctx.values.get(source)
    shape = ctx.shapes.get(source)
    if value is None or value.layout != OI.FIRST or not shape or len(shape) != 4 or not shape[1]:
        return False
    chain: list = []
    current = node
    while current is not None and current.op_type in _MOVES and len(chain) < 8:
        chain.append(current)
        out = ctx.shapes.get(current.output[0])
        if len(chain) > 1 and out is not None and len(out) == 4:
            break
        current = ctx.only_user(current.output[0])
    out = ctx.shapes.get(chain[-1].output[0]) if chain else None
    if len(chain) < 2 or not out or len(out) != 4:
        return False
    channels, height, width = shape[1], shape[2] or _PROBE_LENGTH, shape[3] or _PROBE_LENGTH
    cells = np.arange(channels * height * width).reshape(1, channels, height, width)
    try:
        moved = _run_moves(ctx, chain, cells)
    except (ValueError, TypeError):
        return False
    for steps, expected in rearrangements(cells, moved.shape):
        if len(steps) == 1 and np.array_equal(expected, moved):
            layer_type, fields = steps[0]
            ctx.add(node, layer_type, [source], OI.FIRST, output=chain[-1].output[0], **fields)
            ctx.consumed.update(n.output[0] for n in chain)
            return True
    return False


def _run_moves(ctx, chain, values):
    """``values`` through the chain's nodes (constant shapes and axes only)."""
    import numpy as np

    for node in chain:
        attrs = OI.attributes(node)
        if node.op_type == "Transpose":
            values = values.transpose(attrs.get("perm") or range(values.ndim)[::-1])
            continue
        operand = (
            OI.static_ints(ctx, node.input[1]) if len(node.input) > 1 and node.input[1] else None
        )
        if node.op_type == "Reshape":
            if operand is None:
                raise ValueError("a shape computed at run time")
            target = [
                values.shape[i] if d == 0 and not attrs.get("allowzero") else d
                for i, d in enumerate(operand)
            ]
            values = values.reshape(target)
            continue
        axes = operand if operand is not None else attrs.get("axes")
        if node.op_type == "Unsqueeze":
            rank = values.ndim + len(axes)
            for axis in sorted(a % rank for a in axes):
                values = np.expand_dims(values, axis)
        else:
            values = (
                np.squeeze(values, axis=tuple(a % values.ndim for a in axes))
                if axes
                else np.squeeze(values)
            )
    return values


def _channels_shuffled(cells, groups: int):
    return cells[:, channel_shuffle_permutation(cells.shape[1], groups)]


def _unshuffled(cells, r: int):
    _, channels, height, width = cells.shape
    blocks = cells.reshape(1, channels, height // r, r, width // r, r).transpose(0, 1, 3, 5, 2, 4)
    return blocks.reshape(1, channels * r * r, height // r, width // r)


def _shuffled(cells, r: int):
    _, channels, height, width = cells.shape
    blocks = cells.reshape(1, channels // (r * r), r, r, height, width).transpose(0, 1, 4, 2, 5, 3)
    return blocks.reshape(1, channels // (r * r), height * r, width * r)


def rearrangements(cells, out_shape):
    """Each way the spec rearranges a (1, C, H, W) map into ``out_shape``: (its layers as
    ``(type, fields)`` pairs, what they make of ``cells``).  One layer, or two for TensorFlow's
    orders: depth_to_space is a channel shuffle with r² groups, then the shuffle;
    space_to_depth the unshuffle, then a channel shuffle with C groups."""
    _, channels, height, width = cells.shape
    _, out_channels, out_height, out_width = out_shape
    if (out_channels, out_height, out_width) == (channels, height, width):
        for groups in range(2, channels):
            if channels % groups == 0:
                yield [("channel_shuffle", {"groups": groups})], _channels_shuffled(cells, groups)
    if (
        out_height
        and height % out_height == 0
        and height // out_height == width // max(out_width, 1)
    ):
        r = height // out_height
        if r > 1 and width % r == 0:
            unshuffled = _unshuffled(cells, r)
            yield [("pixel_unshuffle", {"factor": r})], unshuffled
            yield (
                [("pixel_unshuffle", {"factor": r}), ("channel_shuffle", {"groups": channels})],
                _channels_shuffled(unshuffled, channels),
            )
    if out_height % height == 0 and out_height // height == out_width // width:
        r = out_height // height
        if r > 1 and channels % (r * r) == 0:
            yield [("pixel_shuffle", {"factor": r})], _shuffled(cells, r)
            yield (
                [("channel_shuffle", {"groups": r * r}), ("pixel_shuffle", {"factor": r})],
                _shuffled(_channels_shuffled(cells, r * r), r),
            )


_TORCH_MOVES = frozenset({"view", "reshape", "transpose", "contiguous"})


def torch_rearrangement(ctx, node) -> bool:
    """A view of a channels-first map into more axes, then permutes, transposes and views back to
    a map (TResNet's ``SpaceToDepth``, a hand-written pixel shuffle): run on a map of numbered cells
    and read as the rearrangement it matches, with a rewrite saying so."""
    import numpy as np
    import torch

    shape = ctx.shape(node.args[0])
    if shape is None or len(shape) != 3 or len(ctx.shape(node) or ()) <= 3:
        return False
    chain = [node]
    while len(chain) < 8:
        users = list(chain[-1].users)
        if len(users) != 1 or _torch_move(users[0], torch) is None:
            return False
        chain.append(users[0])
        if _torch_move(users[0], torch) == "reshape" and len(ctx.shape(users[0]) or ()) == 3:
            break
    else:
        return False
    cells = np.arange(int(np.prod(shape))).reshape(1, *shape)
    moved = cells
    for step in chain:
        move = _torch_move(step, torch)
        if move == "reshape":
            moved = moved.reshape(1, *ctx.shape(step))
        elif move == "permute":
            moved = moved.transpose(TI.permutation(step))
        elif move == "transpose":
            moved = np.swapaxes(moved, int(step.args[1]), int(step.args[2]))
    for steps, expected in rearrangements(cells, moved.shape):
        if expected.shape == moved.shape and np.array_equal(expected, moved):
            inputs = node.args[:1]
            name = chain[-1].name
            for position, (layer_type, fields) in enumerate(steps):
                last = position == len(steps) - 1
                target, original = (chain[-1], name) if last else (node, f"{name}_pytorch_order")
                ctx.add(target, inputs, layer_type=layer_type, original=original, **fields)
                inputs = (target,)
            ctx.skip.update(chain)
            ctx.builder.rewrite(
                name,
                " -> ".join(_torch_move(step, torch) or "" for step in chain),
                " then ".join(f"{t} {next(iter(f.values()))}" for t, f in steps)
                + ": what it does to numbered cells",
            )
            return True
    return False


def _torch_move(node, torch) -> str | None:
    """``reshape`` (view, reshape), ``permute``, ``transpose``, ``contiguous`` or None."""
    if TI.permutation(node) is not None:
        return "permute"
    target = node.target
    if node.op == "call_method" and target in _TORCH_MOVES:
        return "reshape" if target == "view" else target
    if node.op == "call_function":
        return {torch.reshape: "reshape", torch.transpose: "transpose"}.get(target)
    return None


def keras_rearrangement(ctx, layer, inputs, shapes) -> bool:
    """A Keras layer nothing claims (keras.io ESPCN's own ``DepthToSpace``, a ``Lambda`` of
    ``tf.nn.depth_to_space``) that has no weights and only moves values: it is run on a map of
    numbered cells and read as the rearrangement it matches, with a rewrite saying so."""
    import numpy as np

    if layer.weights or len(inputs) != 1 or len(shapes[0]) != 4 or not shapes[0][-1]:
        return False
    height, width, channels = (n or _PROBE_LENGTH for n in shapes[0][1:])
    if height * width * channels > 2**24:  # float32 numbers every cell exactly below that
        return False
    cells = np.arange(height * width * channels, dtype=np.float32).reshape(
        1, height, width, channels
    )
    try:
        moved = np.asarray(layer(cells))
    except Exception:  # noqa: BLE001 - a layer that does not run alone is not read this way
        return False
    if moved.ndim != 4:
        return False
    first, moved_first = np.moveaxis(cells, -1, 1), np.moveaxis(moved, -1, 1)
    for steps, expected in rearrangements(first, moved_first.shape):
        if expected.shape == moved_first.shape and np.array_equal(expected, moved_first):
            names = [f"{layer.name}_pytorch_order"] * (len(steps) - 1) + [layer.name]
            for name, (layer_type, fields) in zip(names, steps):
                inputs = [ctx.add(layer, layer_type, inputs, name=name, **fields)]
            ctx.builder.rewrite(
                layer.name,
                f"{type(layer).__name__} (a layer without weights cnnspec has no reader for)",
                " then ".join(f"{t} {next(iter(f.values()))}" for t, f in steps)
                + ": what it does to numbered cells",
            )
            return True
    return False


@REGISTRY.reads(
    "onnx", "SpaceToDepth", by="pixel_unshuffle", produces=("pixel_unshuffle", "channel_shuffle")
)
def _onnx_space_to_depth(ctx, node, attrs):
    """SpaceToDepth and a channel shuffle with r² groups (cnnspec's own graph) is the
    unshuffle; SpaceToDepth alone (TensorFlow's space_to_depth) is the unshuffle, then the
    shuffle with C groups that moves channel c·r² + i·r + j to (i·r + j)·C + c."""
    from cnnspec.layers.channel_ops import onnx_channel_shuffle_match

    source = node.input[0]
    if ctx.value(source).layout != OI.FIRST:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            "SpaceToDepth on a channels-last tensor",
            "SpaceToDepth on channels-first input (ONNX's own layout)",
        )
    r = int(attrs["blocksize"])
    # cnnspec's own shuffle reads the shape of its input: a Shape node beside the Reshape
    users = ctx.users.get(node.output[0], [])
    reshapes = [user for user in users if user.op_type == "Reshape"]
    shuffle = (
        onnx_channel_shuffle_match(ctx, reshapes[0], OI.FIRST)
        if len(reshapes) == 1 and all(user.op_type in ("Reshape", "Shape") for user in users)
        else None
    )
    if shuffle is not None and shuffle[0] == r * r:
        back = shuffle[1][-1]
        ctx.add(node, "pixel_unshuffle", [source], OI.FIRST, output=back.output[0], factor=r)
        ctx.consumed.update(n.output[0] for n in shuffle[1])
        return
    channels = (ctx.shapes.get(source) or (None, None))[1]
    if not channels:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            "SpaceToDepth of an input whose channel count is unknown",
            "a graph whose shapes ONNX shape inference can work out",
        )
    pytorch_order = node.output[0] + "__pytorch_order"
    ctx.add(node, "pixel_unshuffle", [source], OI.FIRST, output=pytorch_order, factor=r)
    ctx.builder.rewrite(
        OI.readable(node),
        f"SpaceToDepth(blocksize={r})",
        f"pixel_unshuffle {r}, then channel_shuffle with {channels} groups (TensorFlow's channel order)",
    )
    ctx.add(node, "channel_shuffle", [pytorch_order], OI.FIRST, groups=int(channels))
