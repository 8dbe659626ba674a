"""layer_scale: a trainable per-channel factor gamma * x (ConvNeXt)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.layers.layer_norm import feature_order
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import LayerBase
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class LayerScale(LayerBase):
    """gamma * x with a trainable gamma per channel."""

    type: Literal["layer_scale"]
    init_value: Annotated[float, Field(allow_inf_nan=False)] = Field(
        default=1e-6, description="Initial value of every gamma (ConvNeXt: 1e-6)."
    )


@register
class LayerScaleDefinition(LayerDefinition):
    """layer_scale: the LayerScale helper in both frameworks; gamma is (C, 1, ..., 1) in PyTorch, (C) in Keras."""

    model = LayerScale
    family = "layer_scale"
    words = {"layerscale": "layer_scale"}
    hint_text = (
        "layer_scale: gamma is stored (C, 1, 1) in PyTorch (torchvision ConvNeXt) and (C) in Keras."
    )
    examples = (
        example(
            {"type": "conv2d", "filters": 4, "kernel_size": 1},
            {"type": "layer_scale", "init_value": 0.1},
        ),
        example({"type": "layer_scale"}, channels=2, size=(5,)),
        example({"type": "layer_scale"}, channels=2, size=(2, 3, 2)),
        example({"type": "flatten"}, {"type": "layer_scale"}, channels=2, size=(2, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        channels = shape[0]
        return dict(
            output_shape=shape,
            params=(ParamTensor("gamma", (channels,) + (1,) * (len(shape) - 1)),),
            param_formula=f"{channels} (γ per channel) = {fmt_count(channels)}",
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        rank = T.spatial_rank(layer)
        arguments = f"{T.int_text(layer.input_shape[0])}, {T.float_text(layer.spec.init_value)}"
        if rank != 2:
            arguments += f", spatial_dims={rank}"
        code = T.single_module(layer, inputs, f"LayerScale({arguments})")
        code.helpers.add("LayerScale")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use("LayerScale")
        return K.single_layer(
            layer,
            ctx,
            f"{helper}({K.float_text(layer.spec.init_value)}, name={K.quoted(layer.name)})",
        )

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        to_keras, to_torch = feature_order(flat_order)
        return [
            WeightSlot(
                "gamma",
                "gamma",
                ("gamma",),
                to_keras=lambda a: to_keras(a.reshape(-1)),
                to_torch=to_torch,
                reshape=True,
            )
        ]


@REGISTRY.attach("onnx", "layer_scale")
def layer_scale_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Mul by the per-channel gamma (planned (C, 1, ...), so it broadcasts over the spatial dims)."""
    return b.node("Mul", [inputs[0], b.weight(layer, "gamma")], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "LayerScale", by="layer_scale")
def read_keras_layer_scale(ctx, layer, cfg, inputs, shapes):
    """cnnspec's LayerScale helper (init_value) and keras.applications ConvNeXt's (init_values)."""
    value = float(cfg["init_value"] if "init_value" in cfg else cfg["init_values"])
    ctx.add(layer, "layer_scale", inputs, **({} if value == 1e-6 else {"init_value": value}))


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_init_value(values) -> dict[str, Any]:
    """``init_value`` where every gamma has one value (as a fresh layer's have); else none."""
    values = values.detach().reshape(-1)
    if bool((values == values[0]).all()):
        return {"init_value": TI.float32_text(values[0].item())}
    return {}


def _torch_layer_scale(ctx, node, module):
    ctx.add(node, node.args[:1], layer_type="layer_scale", **_torch_init_value(module.gamma))


def torch_parameter_scale(ctx, node, tensor, parameter) -> None:
    """``x * self.gamma`` with one parameter value per channel, shaped to broadcast over the
    channels ((C, 1, 1) on a channels-first map, (C,) on a channels-last one: ConvNeXt's layer
    scale): layer_scale, its gamma read from the parameter."""
    path = ctx.parameters[parameter]
    values = TI.attribute_at(ctx.gm, path).detach().reshape(-1)
    channels = ctx.shape(tensor)[0]
    factor = TI.traced_tensor_shape(parameter) or ()
    rank = len(ctx.shape(tensor))
    per_channel = (channels,) if tensor in ctx.channels_last else (channels, *(1,) * (rank - 1))
    if (
        values.numel() != channels
        or tuple(factor[-len(per_channel) :]) != per_channel
        or any(n != 1 for n in factor[: -len(per_channel)])
    ):
        raise TI.refusal(
            ctx,
            node,
            f"x * the parameter '{path}' of shape {list(factor)} on {list(ctx.shape(tensor))}",
            "a parameter factor is read as layer_scale: one value per channel, shaped "
            "(C, 1, 1) on a channels-first map or (C,) on a channels-last one",
        )
    ctx.add(
        node,
        [tensor],
        layer_type="layer_scale",
        original=path,
        source=path,
        **_torch_init_value(values),
    )


REGISTRY.reads("torch_module", "LayerScale", by="layer_scale")(_torch_layer_scale)


def onnx_layer_scale(ctx, node, constant: str) -> bool:
    """x * gamma with one trained value per channel and no per-channel offset after it: layer_scale
    (ConvNeXt's; x * s + b stays a batch_norm, see ``_onnx_affine`` in elementwise.py)."""
    import numpy as np

    other = [name for name in node.input if name != constant][0]
    value = ctx.values.get(other)
    shape = ctx.shapes.get(other)
    if (
        value is None
        or value.layout == OI.EXPANDED
        or not shape
        or constant not in ctx.initializers
    ):
        return False
    channels = shape[1] if value.layout in (OI.FIRST, OI.FLAT) else shape[-1]
    array = np.asarray(ctx.constants[constant])
    dims = [d for d in array.shape]
    while dims and dims[0] == 1 and array.size > 1:
        dims.pop(0)
    expected = [channels] + [1] * (len(shape) - 2) if value.layout == OI.FIRST else [channels]
    if array.size != channels or channels == 1 or dims not in (expected, [channels]):
        return False
    after = ctx.only_user(node.output[0])
    if after is not None and after.op_type == "Add":
        offset = [name for name in after.input if name in ctx.constants]
        if offset and np.asarray(ctx.constants[offset[0]]).size == channels:
            return False  # x * s + b: an inference batch_norm
    gamma = OI.flat_order(ctx, other, {"gamma": array.reshape(-1).astype(np.float32)})
    ctx.add(node, "layer_scale", [other], value.layout, gamma, flattened_last=value.flattened_last)
    return True
