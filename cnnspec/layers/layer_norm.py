"""layer_norm: normalisation over the channels at each position (Keras LayerNormalization(axis=-1))."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
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
