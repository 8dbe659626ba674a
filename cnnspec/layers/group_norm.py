"""group_norm and instance_norm (= group_norm with one group per channel)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
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


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads(
    "keras", "GroupNormalization", by="group_norm", produces=("group_norm", "instance_norm")
)
def read_keras_group_norm(ctx, layer, cfg, inputs, shapes):
    """GroupNormalization; one group per channel (Keras' groups=-1) is instance_norm."""
    axis = cfg.get("axis", -1)
    if axis not in (-1, len(shapes[0]) - 1):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"normalises axis {axis}",
            "group_norm groups the channel (last) axis",
        )
    if bool(cfg["center"]) != bool(cfg["scale"]):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            "center and scale differ",
            "group_norm's affine learns both or neither",
        )
    channels = shapes[0][-1]
    groups = channels if cfg["groups"] == -1 else cfg["groups"]
    fields: dict[str, Any] = (
        {} if round(cfg["epsilon"], 12) == 1e-5 else {"epsilon": float(cfg["epsilon"])}
    )
    single_cell = all(n == 1 for n in shapes[0][1:-1])  # instance_norm refuses it, group_norm not
    if (
        groups == channels and not single_cell
    ):  # instance_norm learns nothing by default (PyTorch's InstanceNorm), group_norm does
        ctx.add(
            layer, "instance_norm", inputs, **fields, **({"affine": True} if cfg["center"] else {})
        )
        return
    if not cfg["center"]:
        fields["affine"] = False
    ctx.add(layer, "group_norm", inputs, groups=groups, **fields)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_group_norm(ctx, node, module):
    fields: dict[str, Any] = {} if module.eps == 1e-5 else {"epsilon": float(module.eps)}
    if not module.affine:
        fields["affine"] = False
    ctx.add(node, node.args[:1], layer_type="group_norm", groups=int(module.num_groups), **fields)


def _torch_instance_norm(ctx, node, module):
    if module.track_running_stats:
        raise TI.refusal(
            ctx,
            node,
            "InstanceNorm with track_running_stats",
            "instance_norm uses each sample's statistics",
        )
    fields: dict[str, Any] = {} if module.eps == 1e-5 else {"epsilon": float(module.eps)}
    if module.affine:
        fields["affine"] = True
    ctx.add(node, node.args[:1], layer_type="instance_norm", **fields)


REGISTRY.reads("torch_module", "GroupNorm", by="group_norm")(_torch_group_norm)
REGISTRY.reads(
    "torch_module", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", by="instance_norm"
)(_torch_instance_norm)


def _onnx_instance_norm(ctx, node, attrs):
    OI.require(ctx, node.input[0], OI.FIRST, "InstanceNormalization")
    scale, bias = (ctx.constant(node.input[i], what) for i, what in ((1, "scale"), (2, "bias")))
    fixed = OI.is_fixed(ctx, node.input[1], 1.0) and OI.is_fixed(ctx, node.input[2], 0.0)
    tensors = None if fixed else {"gamma": scale.reshape(-1), "beta": bias.reshape(-1)}
    ctx.add(
        node,
        "instance_norm",
        [node.input[0]],
        OI.FIRST,
        tensors,
        **OI.epsilon_field(attrs),
        **({} if fixed else {"affine": True}),
    )


def onnx_group_norm_chain(ctx, node) -> bool:
    """torch's GroupNorm: Reshape (N, G, -1) -> InstanceNormalization (scale 1, bias 0) -> Reshape to
    the input's shape -> Mul gamma -> Add beta (the last two when affine)."""
    import numpy as np

    source = node.input[0]
    value = ctx.values.get(source)
    shape = ctx.shapes.get(source)
    target = ctx.constants.get(node.input[1])
    norm = ctx.only_user(node.output[0])
    if value is None or value.layout != OI.FIRST or not shape or target is None or norm is None:
        return False
    if (
        norm.op_type != "InstanceNormalization"
        or len(target) != 3
        or target[0] not in (0, shape[0])
    ):
        return False
    groups = int(target[1])
    if not (
        OI.is_fixed(ctx, norm.input[1], 1.0) or np.all(ctx.constants.get(norm.input[1], 0) == 1)
    ):
        return False
    if not np.all(ctx.constants.get(norm.input[2], 1) == 0):
        return False
    back = ctx.only_user(norm.output[0])
    if back is None or back.op_type != "Reshape" or not OI.same_shape(ctx, back, source):
        return False
    nodes, last, tensors = [node, norm, back], back, None
    channels = shape[1]
    scale, shift = ctx.only_user(back.output[0]), None
    gamma = OI.per_channel_constant(ctx, scale, "Mul", channels)
    if gamma is not None:
        shift = ctx.only_user(scale.output[0])
        beta = OI.per_channel_constant(ctx, shift, "Add", channels)
        if beta is not None:
            nodes, last = nodes + [scale, shift], shift
            tensors = {"gamma": gamma, "beta": beta}
    elif scale is not None and scale.op_type == "Mul" and OI.fixed_operand(ctx, scale, 1.0):
        shift = ctx.only_user(scale.output[0])  # affine=False: torch still writes * 1 + 0
        if shift is not None and shift.op_type == "Add" and OI.fixed_operand(ctx, shift, 0.0):
            nodes, last = nodes + [scale, shift], shift
    fields = {} if tensors else {"affine": False}
    layer_type = "group_norm"
    ctx.add(
        last,
        layer_type,
        [source],
        OI.FIRST,
        tensors,
        groups=groups,
        **fields,
        **OI.epsilon_field(OI.attributes(norm)),
    )
    ctx.shapes[last.output[0]] = shape
    ctx.consumed.update(n.output[0] for n in nodes)
    return True


REGISTRY.reads("onnx", "InstanceNormalization", by="instance_norm")(_onnx_instance_norm)


@REGISTRY.attach("onnx_moments", "group_norm")
def _onnx_group_norm_moments(groups, channels, gamma, beta, fields):
    """ONNX nodes normalising groups of channels over every position by their mean and variance:
    group_norm, or instance_norm with one channel per group; affine when either vector is there."""
    import numpy as np

    affine = gamma is not None or beta is not None
    tensors = {}
    if affine:
        tensors = {
            "gamma": gamma if gamma is not None else np.ones(channels, np.float32),
            "beta": beta if beta is not None else np.zeros(channels, np.float32),
        }
    if groups == channels:
        return "instance_norm", {**fields, **({"affine": True} if affine else {})}, tensors
    return (
        "group_norm",
        {"groups": groups, **fields, **({} if affine else {"affine": False})},
        tensors,
    )
