"""Flatten: a feature map laid out as a vector, channels first (C, then spatial dims)."""

from __future__ import annotations

import math
from typing import Any, Literal

from cnnspec.engine.plan import LayerPlan, fmt_count
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Flatten(LayerBase):
    """Lay the feature map out as a vector, in channels-first order (C, then spatial dims)."""

    type: Literal["flatten"]


@register
class FlattenDefinition(LayerDefinition):
    """flatten: PyTorch's native C, H, W order; Keras' H, W, C (the weight transfer permutes)."""

    model = Flatten
    family = "flatten"
    hint_text = (
        "flatten order: PyTorch flattens C,H,W and Keras H,W,C; a Permute/transpose before Flatten, or dense rows not "
        "permuted by flat_segments, breaks it."
    )
    examples = (
        example({"type": "flatten"}),
        example({"type": "flatten"}, channels=2, size=(3, 2, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        total = math.prod(shape)
        formula = "·".join(map(str, shape)) + f" = {fmt_count(total)}"
        return dict(output_shape=(total,), size_formulas=(formula,), param_formula="no parameters")

    def flat_segments(
        self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any
    ) -> Any:
        return (in_shapes[0],) if len(in_shapes[0]) > 1 else ctx.segments_of[inputs[0]]

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """flatten: PyTorch's native C, H, W order."""
        name = T.attr(layer.name)
        return T.LayerCode(modules=[(name, "nn.Flatten()")], expression=f"self.{name}({inputs[0]})")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        # Keras flattens channels-last (H, W, C order); weight transfer permutes by flat_segments.
        return K.single_layer(layer, ctx, P.call("layers.Flatten", name=K.quoted(layer.name)))


@REGISTRY.attach("onnx", "flatten")
def flatten_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Flatten in channels-first order (C, then the spatial dims)."""
    return b.node("Flatten", [inputs[0]], layer.name, axis=1)
