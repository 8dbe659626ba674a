"""Dropout: dropout, spatial_dropout (identity at inference)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, Rate
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Dropout(LayerBase):
    """Dropout; identity at inference."""

    type: Literal["dropout", "spatial_dropout"]
    rate: Rate = Field(
        description="Fraction of units (dropout) or whole channels (spatial_dropout) zeroed in training."
    )


@register
class DropoutDefinition(LayerDefinition):
    """dropout (elements) and spatial_dropout (whole channels: Dropout1d/2d/3d); identity in eval()."""

    model = Dropout
    family = "dropout"
    words = {
        "dropout2d": "spatial_dropout",
        "spatialdropout2d": "spatial_dropout",
        "spatialdropout1d": "spatial_dropout",
        "dropout1d": "spatial_dropout",
        "dropout3d": "spatial_dropout",
        "spatialdropout3d": "spatial_dropout",
    }
    hint_text = "dropout must be the identity at inference (PyTorch eval(), Keras training=False)."
    examples = (
        example({"type": "dropout", "rate": 0.5}),
        example({"type": "spatial_dropout", "rate": 0.3}),
        example({"type": "spatial_dropout", "rate": 0.3}, size=(5,)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        if layer.type == "spatial_dropout":
            ctx.require_spatial(index, layer.type, shape)
        return dict(output_shape=shape, param_formula="no parameters")

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """dropout (elements) and spatial_dropout (whole channels: Dropout1d/2d/3d); identity in eval()."""
        cls = (
            f"nn.Dropout{T.spatial_rank(layer)}d"
            if layer.type == "spatial_dropout"
            else "nn.Dropout"
        )
        rate = layer.spec.rate
        return T.single_module(
            layer, inputs, P.call(cls, *([] if rate == 0.5 else [P.number(rate)]))
        )

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        if layer.type == "spatial_dropout":
            cls = f"layers.SpatialDropout{K.RANK_SUFFIX[layer.spatial_rank]}"
        else:
            cls = "layers.Dropout"
        return K.single_layer(
            layer, ctx, P.call(cls, P.number(layer.spec.rate), name=K.quoted(layer.name))
        )


@REGISTRY.attach("onnx", "dropout", "spatial_dropout")
def dropout_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """The identity at inference."""
    return b.node("Identity", [inputs[0]], layer.name)
