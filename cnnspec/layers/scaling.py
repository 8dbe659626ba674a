"""Parameter-free scaling: rescale (x * scale + offset, Keras Rescaling) and scale (x * factor)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T

Finite = Annotated[float, Field(allow_inf_nan=False)]
PerChannel = Finite | Annotated[list[Finite], Field(min_length=1, max_length=4096)]


class Rescale(LayerBase):
    """x * scale + offset: Keras Rescaling (EfficientNet's 1/255, MobileNetV3's 1/127.5 and -1)."""

    type: Literal["rescale"]
    scale: PerChannel = Field(description="One number, or one per channel.")
    offset: PerChannel = Field(
        default=0.0, description="Added after scaling: one number, or one per channel."
    )


class Scale(LayerBase):
    """x * factor with a constant factor (InceptionResNet's residual scaling); no parameters."""

    type: Literal["scale"]
    factor: Finite = Field(description="The constant multiplier.")


def _per_channel(ctx: Any, index: int, value: Any, channels: int, field_name: str) -> None:
    if isinstance(value, list) and len(value) not in (1, channels):
        ctx.fail(
            index,
            f"{field_name} has {len(value)} values but the input has {channels} channels",
            field_name,
            hint=f"give one number, or exactly {channels}",
        )


def _number_text(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(T.float_text(v) for v in value) + "]"
    return T.float_text(value)


@register
class RescaleDefinition(LayerDefinition):
    """rescale: layers.Rescaling; PyTorch x * scale + offset (a helper module when per channel)."""

    model = Rescale
    family = "rescale"
    words = {"rescaling": "rescale"}
    hint_text = (
        "rescale: the scale (1/255 vs 1/127.5) and offset, and per-channel values in channel order."
    )
    examples = (
        example({"type": "rescale", "scale": 0.00784313725490196, "offset": -1.0}),
        example({"type": "rescale", "scale": [0.5, 2.0, -1.5], "offset": [0.1, 0.0, -0.2]}),
        example({"type": "rescale", "scale": 2.5}, channels=2, size=(6,)),
        example(
            {"type": "flatten"}, {"type": "rescale", "scale": 0.5, "offset": [1.0]}, size=(2, 3)
        ),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        for field_name in ("scale", "offset"):
            value = getattr(layer, field_name)
            _per_channel(ctx, index, value, shape[0], field_name)
            if isinstance(value, list) and len(value) > 1 and len(shape) == 1:
                ctx.fail(
                    index,
                    f"per-channel {field_name} needs a feature map; this input is flat {list(shape)}",
                    field_name,
                )
        return dict(output_shape=shape, param_formula="no parameters (constants)")

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        scale, offset = layer.spec.scale, layer.spec.offset
        if isinstance(scale, list) or isinstance(offset, list):
            constructor = f"Rescale({_number_text(scale)}, {_number_text(offset)})"
            code = T.single_module(layer, inputs, constructor)
            code.helpers.add("Rescale")
            return code
        expression = f"{inputs[0]} * {T.float_text(scale)}"
        if offset:
            expression += f" + {T.float_text(offset)}"
        return T.LayerCode(expression=expression)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        offset = layer.spec.offset
        offset_text = f", offset={_number_text(offset)}" if offset else ""
        expression = f"layers.Rescaling({_number_text(layer.spec.scale)}{offset_text}, name={K.quoted(layer.name)})"
        return K.single_layer(layer, ctx, expression)


@register
class ScaleDefinition(LayerDefinition):
    """scale: x * factor (kept a layer: folding it into a conv would change the weights users copy)."""

    model = Scale
    family = "scale"
    words = {"customscalelayer": "scale", "multiplybyconstant": "scale"}
    hint_text = "scale: the constant factor (InceptionResNet uses 0.17, 0.1 and 0.2 in its three block types)."
    examples = (
        example({"type": "scale", "factor": 0.17}),
        example({"type": "scale", "factor": -2.0}, size=(5,)),
        example({"type": "flatten"}, {"type": "scale", "factor": 0.1}, size=(2, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        return dict(output_shape=in_shapes[0], param_formula="no parameters (a constant factor)")

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.LayerCode(expression=f"{inputs[0]} * {T.float_text(layer.spec.factor)}")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return K.single_layer(
            layer,
            ctx,
            f"layers.Rescaling({K.float_text(layer.spec.factor)}, name={K.quoted(layer.name)})",
        )


def _broadcast_constant(layer: LayerPlan, value: float | list[float]) -> Any:
    """A number, or per-channel values shaped (C, 1, ...) to broadcast over the spatial dims."""
    if not isinstance(value, list):
        return float(value)
    column: Any = [float(v) for v in value]
    for _ in layer.input_shape[1:]:
        column = [[v] for v in column]
    return column


@REGISTRY.attach("onnx", "rescale")
def rescale_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """x * scale + offset, each a constant (per channel where a list)."""
    scale = b.constant(
        b.temp(layer, "scale"), _broadcast_constant(layer, layer.spec.scale), "float32"
    )
    scaled = b.node("Mul", [inputs[0], scale], b.temp(layer, "scaled"))
    offset = b.constant(
        b.temp(layer, "offset"), _broadcast_constant(layer, layer.spec.offset), "float32"
    )
    return b.node("Add", [scaled, offset], layer.name)


@REGISTRY.attach("onnx", "scale")
def scale_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """x * factor."""
    factor = b.constant(b.temp(layer, "factor"), float(layer.spec.factor), "float32")
    return b.node("Mul", [inputs[0], factor], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "Rescaling", by="rescale")
def read_keras_rescaling(ctx, layer, cfg, inputs, shapes):
    offset = cfg.get("offset", 0.0)
    ctx.add(layer, "rescale", inputs, scale=cfg["scale"], **({"offset": offset} if offset else {}))


@REGISTRY.reads("keras", "CustomScaleLayer", by="scale", produces=("scale", "add"))
def read_keras_custom_scale(ctx, layer, cfg, inputs, shapes):
    """Keras InceptionResNetV2's CustomScaleLayer: inputs[0] + inputs[1] * scale, as scale then add."""
    if len(inputs) != 2 or "scale" not in cfg:
        raise KI.unsupported(layer)
    scaled = ctx.builder.add(
        f"{layer.name}_scaled", "scale", [inputs[1]], factor=float(cfg["scale"])
    )
    ctx.builder.rewrite(
        layer.name, "CustomScaleLayer: x + y * scale", f"scale '{scaled}' and add '{layer.name}'"
    )
    ctx.add(layer, "add", [inputs[0], scaled])


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_rescale(ctx, node, module):
    offset = TI.vector(module.offset)
    fields = {"offset": offset} if offset != 0.0 else {}
    ctx.add(node, node.args[:1], layer_type="rescale", scale=TI.vector(module.scale), **fields)


REGISTRY.reads("torch_module", "Rescale", by="rescale")(_torch_rescale)


def _linear(t, y):
    """(slope, offset) per channel when ``y`` is slope * t + offset (the ONNX importer's probe)."""
    offset = y[OI.probe_index(t, 0.0)]
    slope = y[OI.probe_index(t, 1.0)] - offset
    return (slope, offset) if OI.close(y, slope * t + offset) else (None, None)


@REGISTRY.attach("onnx_fit", "scale")
def _onnx_scale_fit(t, y):
    """ONNX point-wise nodes that multiply by one number: scale."""
    import numpy as np

    slope, offset = _linear(t, y)
    if slope is None or not np.all(offset == 0) or not np.all(slope == slope[0]):
        return None
    return {"factor": OI.number(slope[0])}


@REGISTRY.attach("onnx_fit", "rescale")
def _onnx_rescale_fit(t, y):
    """ONNX point-wise nodes computing x * a + b (per channel or not), other than a plain scale."""
    import numpy as np

    slope, offset = _linear(t, y)
    if slope is None or (np.all(offset == 0) and np.all(slope == slope[0])):
        return None
    scale = OI.number(slope[0]) if np.all(slope == slope[0]) else [OI.number(v) for v in slope]
    shift = OI.number(offset[0]) if np.all(offset == offset[0]) else [OI.number(v) for v in offset]
    return {"scale": scale, **({"offset": shift} if shift != 0 else {})}
