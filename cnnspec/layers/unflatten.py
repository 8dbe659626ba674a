"""unflatten: a flat vector laid out as a feature map (an autoencoder's decoder: ``Linear`` then
``x.view(N, C, H, W)`` in PyTorch, ``Dense`` then ``Reshape((H, W, C))`` in Keras).

The two frameworks read the vector in different orders: PyTorch's view fills C, then H, then W
(the last fastest), Keras' Reshape to (H, W, C) fills H, W, then C.  The same Linear weights
make different maps, so the spec says which order the model reads (``order``), and each target
reads the vector in that order: one more transpose where its own order is the other one.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, fmt_count
from cnnspec.engine.sizes import Size
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, Positive
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T

ORDER_DESCRIPTION = (
    "The order the flat vector is read in: channels_first is PyTorch's x.view(N, C, H, W) and "
    "nn.Unflatten (C, then the spatial dims, the last fastest); channels_last is Keras' "
    "Reshape((H, W, C)) (the spatial dims, then C)."
)


class Unflatten(LayerBase):
    """A flat vector laid out as a feature map of ``shape`` (channels first, as every spec shape)."""

    type: Literal["unflatten"]
    shape: Annotated[list[Positive], Field(min_length=2, max_length=4)] = Field(
        description="The map's shape without the batch, channels first: [C, L], [C, H, W] or [C, D, H, W]."
    )
    order: Literal["channels_first", "channels_last"] = Field(
        default="channels_first", description=ORDER_DESCRIPTION
    )


@register
class UnflattenDefinition(LayerDefinition):
    """unflatten: nn.Unflatten in PyTorch, Reshape in Keras, Reshape in ONNX; a transpose after it
    where the target's own order is not the spec's."""

    model = Unflatten
    family = "unflatten"
    words = {"reshape": "unflatten", "view": "unflatten", "unflatten2d": "unflatten"}
    hint_text = (
        "unflatten order: PyTorch's view(N, C, H, W) reads the vector C first, Keras' "
        "Reshape((H, W, C)) reads it H first; the same dense weights then make different maps."
    )
    examples = (
        example(
            {"type": "flatten"},
            {"type": "dense", "units": 24},
            {"type": "unflatten", "shape": [6, 2, 2]},
        ),
        example(
            {"type": "global_avg_pool"},
            {"type": "dense", "units": 12},
            {"type": "unflatten", "shape": [2, 3, 2], "order": "channels_last"},
        ),
        example(
            {"type": "global_avg_pool"},
            {"type": "dense", "units": 10},
            {"type": "unflatten", "shape": [2, 5], "order": "channels_last"},
            size=(6,),
        ),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        if len(shape) != 1:
            ctx.fail(
                index,
                f"unflatten needs a flat input (a dense layer's output), got the map {list(shape)}",
                hint="put it after a dense layer; a map already has its shape",
            )
        source = ctx.current_inputs[0]
        if any(math.prod(segment[1:]) > 1 for segment in ctx.segments_of.get(source, ())):
            ctx.fail(
                index,
                "unflatten of a flattened feature map: PyTorch flattened it C,H,W and Keras H,W,C, "
                "so one order cannot give both frameworks the map back",
                hint="use the map itself, or a dense layer between the flatten and the unflatten",
            )
        if source in ctx.open_flat:
            ctx.fail(
                index,
                f"unflatten of '{source}', a flat vector whose length follows the open input size",
                hint="fix input.size, or pool to a fixed size before the flatten",
            )
        target = tuple(layer.shape)
        if math.prod(target) != shape[0]:
            ctx.fail(
                index,
                f"shape {list(target)} holds {fmt_count(math.prod(target))} values but the input "
                f"has {fmt_count(shape[0])}",
                "shape",
                hint=f"the shape's product must be {fmt_count(shape[0])}",
            )
        order = "C" + "".join(f"·{n}" for n in target[1:])
        return dict(
            output_shape=target,
            size_formulas=(f"{fmt_count(shape[0])} = {order.replace('C', str(target[0]), 1)}",),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(Size.fixed(n) for n in layer.output_shape[1:])

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        shape = tuple(layer.spec.shape)
        if layer.spec.order == "channels_first":
            return T.single_module(layer, inputs, f"nn.Unflatten(1, {_tuple(shape)})")
        name = T.attr(layer.name)
        rank = len(shape) - 1
        moved = ", ".join(["0", str(rank + 1), *(str(axis) for axis in range(1, rank + 1))])
        return T.LayerCode(
            modules=[(name, f"nn.Unflatten(1, {_tuple((*shape[1:], shape[0]))})")],
            expression=f"self.{name}({inputs[0]}).permute({moved})",
            note="Keras' order: the vector fills the spatial dims, then the channels",
        )

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        shape = tuple(layer.spec.shape)
        if layer.spec.order == "channels_last":
            target = _tuple((*shape[1:], shape[0]))
            return K.single_layer(
                layer, ctx, P.call("layers.Reshape", target, name=K.quoted(layer.name))
            )
        helper = ctx.use("Unflatten")
        return K.single_layer(layer, ctx, P.call(helper, _tuple(shape), name=K.quoted(layer.name)))


def _tuple(values: tuple[int, ...]) -> str:
    return (
        "("
        + ", ".join(T.int_text(int(n)) for n in values)
        + ("," if len(values) == 1 else "")
        + ")"
    )


@REGISTRY.attach("onnx", "unflatten")
def unflatten_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Reshape to (N, *shape), or to (N, *spatial, C) then a Transpose (channels_last order)."""
    shape = list(layer.spec.shape)
    if layer.spec.order == "channels_first":
        target = b.constant(b.temp(layer, "shape"), [0, *shape], "int64")
        return b.node("Reshape", [inputs[0], target], layer.name)
    target = b.constant(b.temp(layer, "shape"), [0, *shape[1:], shape[0]], "int64")
    last = b.node("Reshape", [inputs[0], target], b.temp(layer, "channels_last"))
    rank = len(shape) - 1
    return b.node("Transpose", [last], layer.name, perm=[0, rank + 1, *range(1, rank + 1)])


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "Unflatten", by="unflatten")
def read_keras_unflatten(ctx, layer, cfg, inputs, shapes):
    """cnnspec's helper: PyTorch's order."""
    ctx.add(layer, "unflatten", inputs, shape=[int(n) for n in cfg["shape"]])


@REGISTRY.reads(
    "keras",
    "Permute",
    by="unflatten",
    produces=("unflatten", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle"),
)
def read_keras_permute(ctx, layer, cfg, inputs, shapes):
    """``Reshape((C, H, W))`` then ``Permute((2, 3, 1))`` of a flat vector: a hand port of
    PyTorch's ``view(N, C, H, W)`` (the vector read in PyTorch's order); any other Permute is read
    by what it does to numbered cells, or refused."""
    from cnnspec.layers.pixel_shuffle import keras_rearrangement

    previous = ctx.builder.layers[-1] if ctx.builder.layers else None
    dims = tuple(int(d) for d in cfg["dims"])
    if (
        previous is not None
        and previous["name"] == inputs[0]
        and previous["type"] == "unflatten"
        and previous.get("order") == "channels_last"
        and dims == (*range(2, len(dims) + 1), 1)
        and ctx.consumers.get(id(ctx.node.input_tensors[0])) == 1
    ):
        read = previous["shape"]  # the Reshape's target (C, H, W) taken as channels-last
        target = [*read[1:], read[0]]
        previous["shape"] = target
        del previous["order"]
        name = ctx.builder.rename_last(layer.name)
        ctx.shapes[name] = (*target[1:], target[0])
        ctx.builder.rewrite(
            layer.name,
            f"Reshape({tuple(target)}) + Permute({dims}) of a flat vector",
            "unflatten in PyTorch's order",
        )
        return
    if _keras_channels_first_flatten(ctx, layer, inputs, dims):
        return
    if not keras_rearrangement(ctx, layer, inputs, shapes):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"Permute({dims}) of a {list(shapes[0][1:])} tensor",
            "read: Permute((3, 1, 2)) then Flatten (PyTorch's flatten order), Reshape((C, H, W)) "
            "then Permute((2, 3, 1)) of a flat vector, and permutes that rearrange a map as a "
            "pixel (un)shuffle does",
        )


def _keras_channels_first_flatten(ctx, layer, inputs, dims) -> bool:
    """``Permute((3, 1, 2))`` read by a Flatten alone: the flatten lays the map out in PyTorch's
    order (a hand port of ``torch.flatten``); the Permute makes no layer of its own."""
    output = ctx.output(layer)
    readers = ctx.readers(output)
    if dims != (len(dims), *range(1, len(dims))) or len(dims) < 2:
        return False
    if len(readers) != 1 or type(readers[0]).__name__ != "Flatten":
        return False
    ctx.names[id(output)] = inputs[0]
    ctx.channels_first[id(output)] = layer.name
    return True


def keras_unflatten(ctx, layer, cfg, inputs, shapes) -> bool:
    """``Reshape((H, W, C))`` of a flat vector (a decoder's Dense then Reshape): Keras' order."""
    target = [int(n) for n in cfg["target_shape"] if n is not None]
    if len(shapes[0]) != 2 or len(target) < 2 or len(target) != len(cfg["target_shape"]):
        return False
    if -1 in target:
        return False
    ctx.add(layer, "unflatten", inputs, shape=[target[-1], *target[:-1]], order="channels_last")
    return True


# -- what the importers read (ONNX's Reshape is claimed by flatten) ---------------------------


def onnx_unflatten(ctx, node) -> bool:
    """A Reshape of a flat vector to a map: torch.onnx's ``view(N, C, H, W)`` (a Transpose to
    channels first after it: the vector read in Keras' order), or tf2onnx's Keras
    ``Reshape((H, W, C))`` (a channels-last graph: Keras' order)."""
    value = ctx.values.get(node.input[0])
    source, out = ctx.shapes.get(node.input[0]), ctx.shapes.get(node.output[0])
    if value is None or value.layout != OI.FLAT or value.flattened_last is not None:
        return False
    if not source or len(source) != 2 or source[1] is None:
        return False
    if not out or None in out[1:]:  # torch.onnx's nn.Unflatten: a target computed from Shape
        target = OI.static_ints(ctx, node.input[1])
        if target is None or -1 in target[1:] or 0 in target[1:]:
            return False
        out = (source[0], *target[1:])
    if not 3 <= len(out) <= 5 or math.prod(out[1:]) != source[1]:
        return False
    rank = len(out) - 2
    follower = ctx.only_user(node.output[0])
    perm = (
        list(OI.attributes(follower).get("perm", []))
        if follower is not None and follower.op_type == "Transpose"
        else None
    )
    channels_first = {"shape": list(out[1:])}
    channels_last = {"shape": [out[-1], *out[1:-1]], "order": "channels_last"}
    if ctx.input_layout == OI.LAST and perm == [0, *range(2, rank + 2), 1]:
        # cnnspec's Keras Unflatten helper: PyTorch's order, then to channels last
        ctx.add(
            node, "unflatten", [node.input[0]], OI.LAST, output=follower.output[0], **channels_first
        )
        ctx.consumed.add(follower.output[0])
    elif ctx.input_layout == OI.LAST:
        ctx.add(node, "unflatten", [node.input[0]], OI.LAST, **channels_last)
    elif perm == [0, rank + 1, *range(1, rank + 1)]:
        ctx.add(
            node, "unflatten", [node.input[0]], OI.FIRST, output=follower.output[0], **channels_last
        )
        ctx.consumed.add(follower.output[0])
    else:
        ctx.add(node, "unflatten", [node.input[0]], OI.FIRST, **channels_first)
    return True


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_unflatten_module(ctx, node, module):
    if module.dim not in (1, -1) or len(ctx.shape(node.args[0])) != 1:
        raise TI.refusal(
            ctx,
            node,
            f"Unflatten(dim={module.dim}) of a {list(ctx.shape(node.args[0]))} tensor",
            "nn.Unflatten(1, (C, H, W)) of a flat vector",
        )
    _torch_unflatten(ctx, node)


def torch_unflatten(ctx, node) -> bool:
    """``x.view(n, C, H, W)`` / ``x.reshape(-1, C, H, W)`` / ``x.unflatten(1, ...)`` of a flat
    vector; followed by ``permute(0, 3, 1, 2)``, the vector was read in Keras' order."""
    source, shape = ctx.shape(node.args[0]), ctx.shape(node)
    if source is None or shape is None or len(source) != 1 or not 2 <= len(shape) <= 4:
        return False
    _torch_unflatten(ctx, node)
    return True


def _torch_unflatten(ctx, node) -> None:
    shape = list(ctx.shape(node))
    rank = len(shape) - 1
    users = list(node.users)
    moved = (0, rank + 1, *range(1, rank + 1))
    if len(users) == 1 and TI.permutation(users[0]) == moved and node.name not in ctx.dict_names:
        ctx.add(
            users[0],
            node.args[:1],
            layer_type="unflatten",
            original=TI.original_path(node),
            shape=[shape[-1], *shape[:-1]],
            order="channels_last",
        )
        ctx.skip.add(users[0])
        return
    ctx.add(node, node.args[:1], layer_type="unflatten", shape=shape)


def _torch_unflatten_method(ctx, node):
    if not torch_unflatten(ctx, node):
        raise TI.refusal(
            ctx, node, "unflatten of a map", "x.unflatten(1, (C, H, W)) of a flat vector"
        )


REGISTRY.reads("torch_module", "Unflatten", by="unflatten")(_torch_unflatten_module)
REGISTRY.reads("torch_method", "unflatten", by="unflatten")(_torch_unflatten_method)
REGISTRY.reads("torch_function", "torch.unflatten", by="unflatten")(_torch_unflatten_method)
