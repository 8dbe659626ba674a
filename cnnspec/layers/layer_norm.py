"""layer_norm: normalisation over the channels at each position (Keras LayerNormalization(axis=-1))."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import Flag, LayerBase
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class LayerNorm(LayerBase):
    """Normalise over the channels at each position: (x - mean_C) / sqrt(var_C + epsilon) * gamma + beta."""

    type: Literal["layer_norm"]
    epsilon: Annotated[float, Field(gt=0.0)] = Field(
        default=1e-5,
        description="Added to the variance (PyTorch's default 1e-5; Keras' is 1e-3; ConvNeXt uses 1e-6).",
    )
    center: Flag = Field(default=True, description="Learn an offset beta per channel.")
    scale: Flag = Field(default=True, description="Learn a factor gamma per channel.")


def feature_order(flat_order: Any) -> tuple[Any, Any]:
    """Layout changes of a per-feature vector on flat inputs (identity for feature maps)."""
    if flat_order is None:
        return (lambda a: a), (lambda a: a)
    import numpy as np

    inverse = np.argsort(flat_order)
    return (lambda a: a[flat_order]), (lambda a: a[inverse])


@register
class LayerNormDefinition(LayerDefinition):
    """layer_norm: PyTorch nn.LayerNorm(C) on flat features, the ChannelLayerNorm helper on feature maps."""

    model = LayerNorm
    family = "layer_norm"
    words = {
        "layernormalization": "layer_norm",
        "layernorm": "layer_norm",
        "layernorm2d": "layer_norm",
    }
    hint_text = (
        "layer_norm: normalise over the channels at each position -- PyTorch's nn.LayerNorm(C) on NCHW normalises "
        "the width; epsilon defaults differ (PyTorch 1e-5, Keras 1e-3)."
    )
    examples = (
        example({"type": "layer_norm", "epsilon": 1e-6}),
        example({"type": "layer_norm", "center": False}, channels=4, size=(6,)),
        example(
            {"type": "conv1d", "filters": 4, "kernel_size": 3},
            {"type": "layer_norm"},
            size=(9,),
        ),
        example({"type": "layer_norm", "scale": False}, channels=2, size=(3, 2, 3)),
        example({"type": "flatten"}, {"type": "layer_norm"}, size=(2, 3)),
        example({"type": "global_avg_pool"}, {"type": "layer_norm", "epsilon": 1e-6}, channels=5),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        channels = shape[0]
        params = ([ParamTensor("gamma", (channels,))] if layer.scale else []) + (
            [ParamTensor("beta", (channels,))] if layer.center else []
        )
        names = " + ".join(n for n, on in (("γ", layer.scale), ("β", layer.center)) if on)
        formula = (
            f"{len(params)}·{channels} ({names}) = {fmt_count(len(params) * channels)}"
            if params
            else "no parameters"
        )
        return dict(output_shape=shape, params=tuple(params), param_formula=formula)

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        channels = T.int_text(layer.input_shape[0])
        eps = None if spec.epsilon == 1e-5 else P.number(spec.epsilon)
        if T.spatial_rank(layer) == 0 and spec.center == spec.scale:
            affine = None if spec.scale else "False"
            return T.single_module(
                layer, inputs, P.call("nn.LayerNorm", channels, eps=eps, elementwise_affine=affine)
            )
        options = dict(
            center=None if spec.center else "False", scale=None if spec.scale else "False"
        )
        code = T.single_module(
            layer, inputs, P.call("ChannelLayerNorm", channels, eps=eps, **options)
        )
        code.helpers.add("ChannelLayerNorm")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        expression = P.call(
            "layers.LayerNormalization",
            epsilon=None if spec.epsilon == 1e-3 else P.number(spec.epsilon),
            center=None if spec.center else "False",
            scale=None if spec.scale else "False",
            name=K.quoted(layer.name),
        )
        return K.single_layer(layer, ctx, expression)

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        to_keras, to_torch = feature_order(flat_order)
        slots = []
        if layer.spec.scale:
            slots.append(
                WeightSlot("gamma", "weight", ("gamma",), to_keras=to_keras, to_torch=to_torch)
            )
        if layer.spec.center:
            slots.append(
                WeightSlot("beta", "bias", ("beta",), to_keras=to_keras, to_torch=to_torch)
            )
        return slots


@REGISTRY.attach("onnx", "layer_norm")
def layer_norm_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """The explicit formula over the channel axis, then the per-channel gamma and beta it has."""
    value = O.normalized(b, layer, inputs[0], [1], layer.spec.epsilon)
    return O.affine(b, layer, value, layer.spec.scale, layer.spec.center)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "LayerNormalization", by="layer_norm")
def read_keras_layer_norm(ctx, layer, cfg, inputs, shapes):
    axis = cfg.get("axis", -1)
    if axis not in (-1, [-1], len(shapes[0]) - 1, [len(shapes[0]) - 1]):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"normalises axes {axis}",
            "layer_norm normalises the channel axis",
        )
    fields: dict[str, Any] = (
        {} if round(cfg["epsilon"], 12) == 1e-5 else {"epsilon": float(cfg["epsilon"])}
    )
    fields.update({key: False for key in ("center", "scale") if not cfg[key]})
    ctx.add(layer, "layer_norm", inputs, **fields)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_layer_norm_fields(eps, weight, bias) -> dict[str, Any]:
    fields: dict[str, Any] = {} if eps == 1e-5 else {"epsilon": float(eps)}
    if bias is None:
        fields["center"] = False
    if weight is None:
        fields["scale"] = False
    return fields


def _torch_channel_layer_norm(ctx, node, module):
    """cnnspec's ChannelLayerNorm, and torchvision's and timm's LayerNorm2d (an nn.LayerNorm whose
    forward permutes to channels-last and back): the channels at each position of a
    channels-first map."""
    shape = ctx.shape(node.args[0])
    if tuple(getattr(module, "normalized_shape", shape[:1])) != shape[:1]:
        raise TI.refusal(
            ctx,
            node,
            f"{type(module).__name__}{tuple(module.normalized_shape)} on {list(shape)}",
            "LayerNorm2d(C) normalises the channels of a channels-first map",
        )
    ctx.add(
        node,
        node.args[:1],
        layer_type="layer_norm",
        **_torch_layer_norm_fields(module.eps, module.weight, module.bias),
    )


def _torch_layer_norm(ctx, node, module):
    """nn.LayerNorm(C) on flat features, or on a map permuted to channels-last (ConvNeXt's
    permute(0, 2, 3, 1) -> LayerNorm(C) -> ... -> permute(0, 3, 1, 2)): the channels at each
    position.  On a channels-first map it would normalise the last spatial axis: refused."""
    source = node.args[0]
    shape = ctx.shape(source)
    channels_last = source in ctx.channels_last
    fields = _torch_layer_norm_fields(module.eps, module.weight, module.bias)
    if module.weight is not None and module.bias is not None and not module.elementwise_affine:
        fields = {}
    channels = shape[0] if channels_last else shape[-1]
    if len(module.normalized_shape) != 1 or module.normalized_shape[0] != channels:
        raise TI.refusal(
            ctx, node, f"LayerNorm{tuple(module.normalized_shape)} on {list(shape)}", "LayerNorm(C)"
        )
    if len(shape) == 1 or channels_last:
        ctx.add(node, node.args[:1], layer_type="layer_norm", **fields)
        return
    raise TI.refusal(
        ctx,
        node,
        f"LayerNorm({shape[-1]}) on a channels-first map normalises its last spatial axis",
        "permute(0, 2, 3, 1) -> LayerNorm(C) -> permute(0, 3, 1, 2) normalises the channels",
    )


REGISTRY.reads("torch_module", "LayerNorm", by="layer_norm")(_torch_layer_norm)
REGISTRY.reads("torch_module", "ChannelLayerNorm", "LayerNorm2d", by="layer_norm")(
    _torch_channel_layer_norm
)


def _onnx_layer_norm(ctx, node, attrs):
    value = ctx.value(node.input[0])
    rank = len(ctx.shapes.get(node.input[0]) or ())
    axis = attrs.get("axis", -1) % max(rank, 1)
    if value.layout not in (OI.LAST, OI.FLAT) or axis != rank - 1:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"LayerNormalization over axes {axis}..{rank - 1} of a {value.layout} tensor",
            "layer_norm normalises the channels at each position (channels-last, axis -1)",
        )
    tensors, fields = {}, OI.epsilon_field(attrs)
    if OI.is_fixed(ctx, node.input[1], 1.0):
        fields["scale"] = False
    else:
        tensors["gamma"] = ctx.constant(node.input[1], "scale").reshape(-1)
    if len(node.input) > 2 and node.input[2] and not OI.is_fixed(ctx, node.input[2], 0.0):
        tensors["beta"] = ctx.constant(node.input[2], "bias").reshape(-1)
    else:
        fields["center"] = False
    tensors = OI.flat_order(ctx, node.input[0], tensors)
    ctx.add(
        node,
        "layer_norm",
        [node.input[0]],
        value.layout,
        tensors or None,
        flattened_last=value.flattened_last,
        **fields,
    )


REGISTRY.reads("onnx", "LayerNormalization", by="layer_norm")(_onnx_layer_norm)


@REGISTRY.attach("onnx_moments", "layer_norm")
def _onnx_layer_norm_moments(groups, channels, gamma, beta, fields):
    """ONNX nodes normalising each position's channels by their mean and variance (tf2onnx's
    LayerNormalization): the layer_norm, with gamma / beta None where the graph has none."""
    tensors = {key: value for key, value in (("gamma", gamma), ("beta", beta)) if value is not None}
    flags = {key: False for key, value in (("scale", gamma), ("center", beta)) if value is None}
    return "layer_norm", {**fields, **flags}, tensors
