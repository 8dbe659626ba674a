"""identity: the input unchanged (Keras Activation('linear') / Identity, PyTorch nn.Identity)."""

from __future__ import annotations

from typing import Any, Literal

from cnnspec.engine.plan import LayerPlan
from cnnspec.layers.registry import LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase
from cnnspec.targets.keras import code as K
from cnnspec.targets.torch import code as T


class Identity(LayerBase):
    """The input unchanged: a named point in the graph (e.g. where stochastic depth is off)."""

    type: Literal["identity"]


@register
class IdentityDefinition(LayerDefinition):
    """identity: nn.Identity / layers.Identity."""

    model = Identity
    family = "identity"
    words = {"passthrough": "identity", "noop": "identity"}  # "linear" is nn.Linear (dense)
    hint_text = "identity: the output must be the input unchanged."
    examples = (
        example({"type": "conv2d", "filters": 2, "kernel_size": 3}, {"type": "identity"}),
        example({"type": "flatten"}, {"type": "identity"}, size=(3, 2)),
        example({"type": "identity"}, size=(5,)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        return dict(output_shape=in_shapes[0], param_formula="no parameters")

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.single_module(layer, inputs, "nn.Identity()")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return K.single_layer(layer, ctx, f"layers.Identity(name={K.quoted(layer.name)})")
