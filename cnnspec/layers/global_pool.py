"""Global pooling: global_avg_pool, global_max_pool."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
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
