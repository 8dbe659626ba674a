"""group_norm and instance_norm (= group_norm with one group per channel)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import Flag, LayerBase, Positive
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T

Epsilon = Annotated[float, Field(gt=0.0)]
EPSILON_DESCRIPTION = (
    "Added to the variance (PyTorch's default 1e-5; Keras GroupNormalization's is 1e-3)."
)


class GroupNorm(LayerBase):
    """Normalise each group of C/groups consecutive channels over all positions of a sample."""

    type: Literal["group_norm"]
    groups: Positive = Field(description="Number of channel groups; must divide the channels.")
    epsilon: Epsilon = Field(default=1e-5, description=EPSILON_DESCRIPTION)
    affine: Flag = Field(default=True, description="Learn gamma and beta per channel.")


class InstanceNorm(LayerBase):
    """Normalise each channel over all positions of a sample (group_norm with groups = C); always the sample's own
    statistics, also at inference."""

    type: Literal["instance_norm"]
    epsilon: Epsilon = Field(default=1e-5, description=EPSILON_DESCRIPTION)
    affine: Flag = Field(
        default=False, description="Learn gamma and beta per channel (PyTorch's default: false)."
    )


def _groups_of(layer: Any, channels: int) -> int:
    """The number of channel groups: one per channel for instance norm."""
    return channels if layer.type == "instance_norm" else layer.groups


class _GroupNormFamily(LayerDefinition):
    family = "group_norm"
    hint_text = (
        "group/instance norm: groups are consecutive channels; epsilon defaults differ (PyTorch 1e-5, Keras 1e-3); "
        "instance norm uses each sample's own statistics at inference too."
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        ctx.require_spatial(index, layer.type, shape)
        channels = shape[0]
        groups = _groups_of(layer, channels)
        if channels % groups:
            ctx.fail(
                index,
                f"groups {groups} must divide the {channels} input channels",
                "groups",
                hint="pick a divisor of " + str(channels),
            )
        if layer.type == "instance_norm" and math.prod(shape[1:]) == 1:
            ctx.fail(
                index,
                f"instance_norm over a single cell ({'×'.join(map(str, shape[1:]))}): each value would be its "
                "own mean, so every output is beta; PyTorch refuses it at run time",
                hint="normalise before the map shrinks to one cell, or use layer_norm / batch_norm",
            )
        positions = "×".join(map(str, shape[1:]))
        per_group = f"{channels // groups}×{positions}" if channels // groups > 1 else positions
        formula = (f"{groups} group(s), statistics over {per_group} values each",)
        if not layer.affine:
            return dict(
                output_shape=shape,
                size_formulas=formula,
                param_formula="no parameters (affine: false)",
            )
        params = (ParamTensor("gamma", (channels,)), ParamTensor("beta", (channels,)))
        return dict(
            output_shape=shape,
            params=params,
            size_formulas=formula,
            param_formula=f"2·{channels} (γ, β) = {fmt_count(2 * channels)}",
        )

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        expression = P.call(
            "layers.GroupNormalization",
            groups=str(_groups_of(spec, layer.input_shape[0])),
            epsilon=None if spec.epsilon == 1e-3 else P.number(spec.epsilon),
            center=None if spec.affine else "False",
            scale=None if spec.affine else "False",
            name=K.quoted(layer.name),
        )
        return K.single_layer(layer, ctx, expression)

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        if not layer.spec.affine:
            return []
        return [WeightSlot("gamma", "weight", ("gamma",)), WeightSlot("beta", "bias", ("beta",))]


@register
class GroupNormDefinition(_GroupNormFamily):
    """group_norm: nn.GroupNorm / layers.GroupNormalization."""

    model = GroupNorm
    words = {"groupnormalization": "group_norm", "groupnorm": "group_norm"}
    examples = (
        example(
            {"type": "conv2d", "filters": 6, "kernel_size": 3}, {"type": "group_norm", "groups": 3}
        ),
        example({"type": "group_norm", "groups": 2, "epsilon": 0.001}, channels=4, size=(7,)),
        example({"type": "group_norm", "groups": 1, "affine": False}, channels=2, size=(3, 2, 4)),
    )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        constructor = P.call(
            "nn.GroupNorm",
            T.int_text(spec.groups),
            T.int_text(layer.input_shape[0]),
            eps=None if spec.epsilon == 1e-5 else P.number(spec.epsilon),
            affine=None if spec.affine else "False",
        )
        return T.single_module(layer, inputs, constructor)


@register
class InstanceNormDefinition(_GroupNormFamily):
    """instance_norm: nn.InstanceNorm{1,2,3}d / layers.GroupNormalization(groups=C)."""

    model = InstanceNorm
    words = {
        "instancenorm2d": "instance_norm",
        "instancenorm1d": "instance_norm",
        "instancenorm3d": "instance_norm",
        "instancenormalization": "instance_norm",
    }
    examples = (
        example({"type": "instance_norm", "affine": True}),
        example({"type": "instance_norm"}, channels=2, size=(6,)),
        example(
            {"type": "instance_norm", "affine": True, "epsilon": 0.001}, channels=2, size=(3, 3, 2)
        ),
    )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        constructor = P.call(
            f"nn.InstanceNorm{T.spatial_rank(layer)}d",
            T.int_text(layer.input_shape[0]),
            eps=None if spec.epsilon == 1e-5 else P.number(spec.epsilon),
            affine="True" if spec.affine else None,
        )
        return T.single_module(layer, inputs, constructor)


@REGISTRY.attach("onnx", "group_norm", "instance_norm")
def group_norm_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """(N, G, -1) statistics by the explicit formula (opset 18's GroupNormalization scales per group,
    not per channel), reshaped back, then the per-channel gamma and beta if affine."""
    channels = layer.input_shape[0]
    groups = _groups_of(layer.spec, channels)
    grouped_shape = b.constant(b.temp(layer, "grouped_shape"), [0, groups, -1], "int64")
    grouped = b.node("Reshape", [inputs[0], grouped_shape], b.temp(layer, "grouped"))
    value = O.normalized(b, layer, grouped, [2], layer.spec.epsilon)
    shape = b.node("Shape", [inputs[0]], b.temp(layer, "shape"))
    value = b.node("Reshape", [value, shape], b.temp(layer, "ungrouped"))
    return O.affine(b, layer, value, layer.spec.affine, layer.spec.affine)
