"""Global pooling: global_avg_pool, global_max_pool."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import drop_defaults, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import Flag, LayerBase
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class GlobalPool(LayerBase):
    """Average or max over every spatial position of each channel."""

    type: Literal["global_avg_pool", "global_max_pool"]
    keepdims: Flag = Field(
        default=False,
        description="Keep the spatial dims as size 1 instead of returning flat features.",
    )


@register
class GlobalPoolDefinition(LayerDefinition):
    """global_avg_pool / global_max_pool over every spatial dim."""

    model = GlobalPool
    family = "global_pool"
    words = {
        "globalaveragepooling2d": "global_avg_pool",
        "adaptiveavgpool2d": "global_avg_pool",
        "globalmaxpooling2d": "global_max_pool",
        "adaptivemaxpool2d": "global_max_pool",
    }
    hint_text = "global pooling: mean vs max, and keepdims."
    examples = (
        example({"type": "global_avg_pool"}),
        example({"type": "global_max_pool", "keepdims": True}, size=(5,)),
        example({"type": "global_avg_pool", "keepdims": True}, channels=2, size=(3, 4, 3)),
        example({"type": "global_max_pool"}, channels=2, size=(3, 4, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        spatial = ctx.require_spatial(index, layer.type, shape)
        out = (shape[0],) + ((1,) * spatial if layer.keepdims else ())
        reduce = "mean" if layer.type == "global_avg_pool" else "max"
        window = "×".join(map(str, shape[1:]))
        formula = f"{reduce} over {window} → " + (
            "×".join(["1"] * spatial) + " per channel" if layer.keepdims else f"{shape[0]} features"
        )
        return dict(output_shape=out, size_formulas=(formula,), param_formula="no parameters")

    def flat_segments(
        self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any
    ) -> Any:
        return (output_shape,)

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(Size.fixed(n) for n in layer.output_shape[1:])

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """global_avg_pool / global_max_pool over every spatial dim."""
        function = "torch.mean" if layer.type == "global_avg_pool" else "torch.amax"
        expression = P.call(
            function,
            inputs[0],
            dim=T.ints_text(range(2, 2 + T.spatial_rank(layer))),
            keepdim="True" if layer.spec.keepdims else None,
        )
        return T.LayerCode(expression=expression)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        kind = "Average" if layer.type == "global_avg_pool" else "Max"
        return K.single_layer(
            layer,
            ctx,
            P.call(
                f"layers.Global{kind}Pooling{K.RANK_SUFFIX[layer.spatial_rank]}",
                keepdims="True" if layer.spec.keepdims else None,
                name=K.quoted(layer.name),
            ),
        )


@REGISTRY.attach("onnx", "global_avg_pool", "global_max_pool")
def global_pool_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """GlobalAveragePool / GlobalMaxPool; without keepdims the (N, C, 1, ...) result is flattened."""
    op = "GlobalAveragePool" if layer.type == "global_avg_pool" else "GlobalMaxPool"
    if layer.spec.keepdims:
        return b.node(op, [inputs[0]], layer.name)
    pooled = b.node(op, [inputs[0]], b.temp(layer, "pooled"))
    return b.node("Flatten", [pooled], layer.name, axis=1)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


def _read_keras_global_pool(kind: str):
    def reader(ctx, layer, cfg, inputs, shapes):
        KI.channels_last(layer, cfg)
        ctx.add(
            layer,
            f"global_{kind}_pool",
            inputs,
            **drop_defaults(keepdims=bool(cfg.get("keepdims", False))),
        )

    return reader


REGISTRY.reads(
    "keras",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    by="global_avg_pool",
    produces=("global_avg_pool",),
)(_read_keras_global_pool("avg"))
REGISTRY.reads(
    "keras",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    by="global_max_pool",
    produces=("global_max_pool",),
)(_read_keras_global_pool("max"))


@REGISTRY.reads(
    "keras",
    "Reshape",
    by="global_avg_pool",
    produces=("global_avg_pool", "global_max_pool", "flatten", "channel_conv", "unflatten"),
)
def read_keras_reshape(ctx, layer, cfg, inputs, shapes):
    target = tuple(cfg["target_shape"])
    incoming = tuple(shapes[0][1:])
    if len(incoming) >= 2 and all(d == 1 for d in incoming[:-1]) and target == (incoming[-1],):
        # (1, ..., 1, C) -> (C,): both flatten orders agree when every spatial dim is 1
        ctx.builder.rewrite(layer.name, f"Reshape({target}) of a {incoming} map", "flatten")
        ctx.add(layer, "flatten", inputs, source=layer.name)
        return
    if len(incoming) >= 2 and None not in incoming and target in ((-1,), (math.prod(incoming),)):
        # Reshape((-1,)) lays the map out as Flatten does (H, W, C)
        ctx.builder.rewrite(layer.name, f"Reshape({target}) of a {incoming} map", "flatten")
        ctx.add(layer, "flatten", inputs, source=layer.name)
        return
    source_layer = ctx.builder.layers[-1] if ctx.builder.layers else None
    if (
        source_layer is not None
        and source_layer["name"] == inputs[0]
        and source_layer["type"].startswith("global_")
        and not source_layer.get("keepdims")
        and ctx.consumers.get(id(ctx.node.input_tensors[0])) == 1
    ):
        pool_inputs = ctx.builder.inputs_of(source_layer)
        pooled = ctx.shapes[pool_inputs[0]]
        exact = (
            len(target) == len(pooled)
            and all(d == 1 for d in target[:-1])
            and target[-1] == pooled[-1]
        )
    else:
        exact = False
    if exact:
        ctx.builder.rewrite(
            layer.name,
            f"{source_layer.get('source', source_layer['name'])} + Reshape({target})",
            f"{source_layer['type']} with keepdims: true",
        )
        ctx.builder.drop_last()
        dropped = ("name", "type", "source", "inputs")
        fields = {k: v for k, v in source_layer.items() if k not in dropped}
        fields["keepdims"] = True
        ctx.add(
            layer,
            source_layer["type"],
            pool_inputs,
            source=f"{source_layer.get('source', source_layer['name'])}+{layer.name}",
            **fields,
        )
        return
    if _keras_broadcast_gate(ctx, layer, target, incoming):
        ctx.builder.rewrite(
            layer.name,
            f"Reshape({target}) of a flat ({incoming[0]}) gate",
            "nothing: the merges reading it broadcast the flat gate",
        )
        ctx.names[id(ctx.output(layer))] = inputs[0]
        return
    if inputs[0] == "input":  # Input((28, 28)) + Reshape((28, 28, 1)): the data's layout
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"Reshape{target} of the model's input {incoming}",
            KI.input_reshape_hint(target),
        )
    from cnnspec.layers.channel_conv import keras_channel_view
    from cnnspec.layers.unflatten import keras_unflatten

    if keras_channel_view(ctx, layer, inputs, shapes) or keras_unflatten(
        ctx, layer, cfg, inputs, shapes
    ):
        return
    raise refuse(
        KI.FRAMEWORK,
        KI.where(layer),
        f"Reshape{target} is not supported here",
        "cnnspec rewrites Reshape((1, 1, C)) right after a global pooling into keepdims, and "
        "reads one of a flat gate that only merges read (Multiply) as the gate; for other "
        "reshapes use Flatten or a global pooling",
    )


def _keras_broadcast_gate(ctx, layer, target: tuple, incoming: tuple) -> bool:
    """A flat (C) gate made (1, ..., 1, C) for merges alone to broadcast (a squeeze-excite with
    Dense layers): the merges broadcast the flat gate the same way."""
    from cnnspec.layers.elementwise import KERAS_MERGES

    if len(incoming) != 1 or not target or target[-1] != incoming[0]:
        return False
    if any(d != 1 for d in target[:-1]):
        return False
    users = ctx.readers(ctx.output(layer))
    return bool(users) and all(type(user).__name__ in KERAS_MERGES for user in users)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_reduction(word: str, pool_type: str, channel_type: str):
    """The reader of ``torch.mean`` / ``torch.amax`` (``word``: mean / max): over every spatial
    dim a global pooling, over the channels a channel pooling."""

    def reader(ctx, node):
        from cnnspec.layers.channel_pool import torch_channel_pool, torch_reduces_channels

        dims = TI.arg(node, 1, "dim")
        keepdim = bool(TI.arg(node, 2, "keepdim", False))
        rank = len(ctx.shape(node.args[0])) + 1
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if torch_reduces_channels(ctx, node, dims):
            torch_channel_pool(ctx, node, channel_type, keepdim)
            return
        reduced = sorted(d % rank for d in dims)
        if reduced != list(range(2, rank)) and _torch_reduction_in_steps(
            ctx, node, word, pool_type, reduced, keepdim
        ):
            return
        if reduced != list(range(2, rank)):
            raise TI.refusal(
                ctx,
                node,
                f"{word} over dims {dims}",
                f"a {word} over every spatial dim is {pool_type}",
            )
        ctx.add(node, node.args[:1], layer_type=pool_type, **drop_defaults(keepdims=keepdim))

    return reader


def _torch_reduction_in_steps(ctx, node, word: str, pool_type: str, reduced, keepdim) -> bool:
    """``x.mean(3).mean(2)`` (tonylins' MobileNetV2): the reduction over some spatial dims whose
    only user reduces the others the same way is the global pooling (a mean of equal-sized
    means is the mean), read at that user."""
    import torch

    rank = len(ctx.shape(node.args[0])) + 1
    if not reduced or not set(reduced) < set(range(2, rank)) or len(node.users) != 1:
        return False
    user = next(iter(node.users))
    method = "mean" if word == "mean" else "amax"
    same = (user.op == "call_method" and user.target == method) or (
        user.op == "call_function" and user.target is getattr(torch, method)
    )
    if not same or user.args[0] is not node or bool(TI.arg(user, 2, "keepdim", False)) != keepdim:
        return False
    later = TI.arg(user, 1, "dim")
    later = [later] if isinstance(later, int) else list(later or [])
    remaining = list(range(rank)) if keepdim else [a for a in range(rank) if a not in reduced]
    covered = set(reduced) | {remaining[d % len(remaining)] for d in later}
    if covered != set(range(2, rank)):
        return False
    ctx.add(user, node.args[:1], layer_type=pool_type, **drop_defaults(keepdims=keepdim))
    ctx.skip.add(user)
    return True


def torch_merged_spatial_reduction(ctx, node) -> bool:
    """``x.view(n, c, -1).mean(-1)`` (``x.flatten(2).amax(2)``): the spatial dims merged into
    one, and every user a mean or max over it, is a global pooling, read at each user."""
    import torch

    source = node.args[0]
    shape_in, shape_out = ctx.shape(source), ctx.shape(node)
    if (
        shape_out is None
        or len(shape_in) < 2
        or None in shape_in
        or tuple(shape_out) != (shape_in[0], math.prod(shape_in[1:]))
        or not node.users
    ):
        return False
    readings = []
    for user in node.users:
        word = next(
            (
                word
                for word, function in (("mean", torch.mean), ("amax", torch.amax))
                if (user.op == "call_method" and user.target == word) or user.target is function
            ),
            None,
        )
        dims = TI.arg(user, 1, "dim", None) if word else None
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        if (
            word is None
            or user.args[0] is not node
            or [d % 3 for d in dims] != [2]
            or TI.arg(user, 2, "keepdim", False)
        ):
            return False
        readings.append((user, "global_avg_pool" if word == "mean" else "global_max_pool"))
    for user, pool_type in readings:
        ctx.add(user, [source], layer_type=pool_type)
        ctx.skip.add(user)
    ctx.skip.add(node)
    return True


_torch_mean = _torch_reduction("mean", "global_avg_pool", "channel_mean")
_torch_amax = _torch_reduction("max", "global_max_pool", "channel_max")


_MEAN_TYPES = ("global_avg_pool", "channel_mean")
_MAX_TYPES = ("global_max_pool", "channel_max")
REGISTRY.reads("torch_function", "torch.mean", by="global_avg_pool", produces=_MEAN_TYPES)(
    _torch_mean
)
REGISTRY.reads("torch_method", "mean", by="global_avg_pool", produces=_MEAN_TYPES)(_torch_mean)
REGISTRY.reads("torch_function", "torch.amax", by="global_max_pool", produces=_MAX_TYPES)(
    _torch_amax
)
REGISTRY.reads("torch_method", "amax", by="global_max_pool", produces=_MAX_TYPES)(_torch_amax)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_global_pool(kind: str):
    def reader(ctx, node, attrs):
        OI.require(ctx, node.input[0], OI.FIRST, node.op_type)
        ctx.add(node, f"global_{kind}_pool", [node.input[0]], OI.FIRST, keepdims=True)

    return reader


def _onnx_reduce(kind: str):
    channel_type = "channel_mean" if kind == "avg" else "channel_max"

    def reader(ctx, node, attrs):
        from cnnspec.layers.channel_pool import onnx_channel_pool, onnx_reduces_channels

        source = node.input[0]
        value = ctx.value(source)
        rank = len(ctx.shapes[source])
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1:
            axes = ctx.constant(node.input[1], "axes").tolist()
        if onnx_reduces_channels(ctx, node, axes):
            onnx_channel_pool(ctx, node, channel_type, attrs)
            return
        spatial = list(range(2, rank)) if value.layout == OI.FIRST else list(range(1, rank - 1))
        reduced = sorted(a % rank for a in (axes or []))
        keepdims = bool(attrs.get("keepdims", 1))
        if reduced != spatial:
            last = _onnx_reduction_in_steps(ctx, node, reduced, spatial, keepdims)
            if last is not None:
                node = last
                reduced = spatial
        if reduced != spatial:
            raise refuse(
                OI.FRAMEWORK,
                OI.where(node),
                f"reduction over axes {axes}",
                "a reduction over every spatial axis",
            )
        layout = value.layout if keepdims else OI.FLAT
        fields = {"keepdims": True} if keepdims else {}
        ctx.add(node, f"global_{kind}_pool", [source], layout, **fields)

    return reader


def _onnx_reduction_in_steps(ctx, node, reduced, spatial, keepdims: bool):
    """A reduction over some spatial axes whose only user, the same op, reduces the others
    (torch.onnx's ``x.mean(3).mean(2)``): that user, consumed, or None."""
    rank = len(ctx.shapes[node.input[0]])
    user = ctx.only_user(node.output[0])
    if not reduced or not set(reduced) < set(spatial) or user is None:
        return None
    if user.op_type != node.op_type or bool(OI.attributes(user).get("keepdims", 1)) != keepdims:
        return None
    later = OI.attributes(user).get("axes")
    if later is None and len(user.input) > 1:
        later = ctx.constant(user.input[1], "axes").tolist()
    remaining = list(range(rank)) if keepdims else [a for a in range(rank) if a not in reduced]
    covered = set(reduced) | {remaining[a % len(remaining)] for a in (later or [])}
    if covered != set(spatial):
        return None
    ctx.consumed.add(user.output[0])
    return user


def onnx_merged_spatial_reduction(ctx, node) -> bool:
    """A Reshape of a channels-first map to (N, C, H·W) whose every user is a ReduceMean or
    ReduceMax over that last axis (torch.onnx's ``x.view(b, c, -1).mean(-1)``): a global
    pooling at each user."""
    value = ctx.values.get(node.input[0])
    shape, out = ctx.shapes.get(node.input[0]), ctx.shapes.get(node.output[0])
    if value is None or value.layout != OI.FIRST or not shape or not out or None in shape[1:]:
        return False
    if len(shape) < 4 or list(out[1:]) != [shape[1], math.prod(shape[2:])]:
        return False
    users = ctx.users.get(node.output[0], [])
    if not users or node.output[0] in ctx.outputs:
        return False
    for user in users:
        attrs = OI.attributes(user)
        axes = attrs.get("axes")
        if axes is None and len(user.input) > 1:
            axes = ctx.constants.get(user.input[1])
            axes = None if axes is None else [int(a) for a in axes.reshape(-1)]
        if (
            user.op_type not in ("ReduceMean", "ReduceMax")
            or [a % 3 for a in axes or []] != [2]
            or attrs.get("keepdims", 1)
        ):
            return False
    for user in users:
        kind = "avg" if user.op_type == "ReduceMean" else "max"
        ctx.add(user, f"global_{kind}_pool", [node.input[0]], OI.FLAT)
        ctx.consumed.add(user.output[0])
    ctx.alias(node, node.input[0])
    return True


REGISTRY.reads("onnx", "GlobalAveragePool", by="global_avg_pool", produces=("global_avg_pool",))(
    _onnx_global_pool("avg")
)
REGISTRY.reads("onnx", "GlobalMaxPool", by="global_max_pool", produces=("global_max_pool",))(
    _onnx_global_pool("max")
)
REGISTRY.reads("onnx", "ReduceMean", by="global_avg_pool", produces=_MEAN_TYPES)(
    _onnx_reduce("avg")
)
REGISTRY.reads("onnx", "ReduceMax", by="global_max_pool", produces=_MAX_TYPES)(_onnx_reduce("max"))
