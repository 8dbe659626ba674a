"""Upsampling by integer factors: upsample (nearest or bilinear)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, PositiveOrTuple
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Upsample(LayerBase):
    """Upsampling by an integer factor."""

    type: Literal["upsample"]
    scale_factor: PositiveOrTuple = Field(description="Integer factor per spatial dim.")
    mode: Literal["nearest", "bilinear"] = Field(
        default="nearest",
        description="'bilinear' (2-D only): half-pixel centres, PyTorch align_corners=False, TF half_pixel_centers=True.",
    )


@register
class UpsampleDefinition(LayerDefinition):
    """upsample: nearest (repeat) or bilinear with half-pixel centres (align_corners=False)."""

    model = Upsample
    family = "upsample"
    words = {
        "upsampling2d": "upsample",
        "upsampling1d": "upsample",
        "upsampling3d": "upsample",
        "interpolate": "upsample",
    }
    hint_text = "upsampling: bilinear needs half-pixel centres (PyTorch align_corners=False); nearest vs bilinear."
    examples = (
        example({"type": "upsample", "scale_factor": 2}),
        example({"type": "upsample", "scale_factor": [2, 3], "mode": "bilinear"}),
        example({"type": "upsample", "scale_factor": 3}, size=(4,)),
        example({"type": "upsample", "scale_factor": [1, 2, 2]}, channels=2, size=(2, 3, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        spatial = ctx.require_spatial(index, layer.type, shape)
        factors = ctx.per_dim(index, layer.scale_factor, "scale_factor", spatial)
        if layer.mode == "bilinear" and spatial != 2:
            ctx.fail(
                index,
                f"mode 'bilinear' needs a 2-D input, this one has {spatial} spatial dim(s)",
                "mode",
                hint="use mode: nearest",
            )
        outs = [n * f for n, f in zip(shape[1:], factors)]
        return dict(
            output_shape=(shape[0], *outs),
            size_formulas=tuple(f"{n}·{f} = {o}" for n, f, o in zip(shape[1:], factors, outs)),
            param_formula="no parameters",
            kernel_size=factors,
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(n.affine(factor) for n, factor in zip(in_sizes[0], layer.kernel_size or ()))

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """upsample: nearest (repeat) or bilinear with half-pixel centres (align_corners=False)."""
        factors = [P.number(f) for f in layer.kernel_size or ()]
        scale = factors[0] if len(set(factors)) == 1 else "(" + ", ".join(factors) + ")"
        if layer.spec.mode == "bilinear":
            module = P.call(
                "nn.Upsample", scale_factor=scale, mode=P.string("bilinear"), align_corners="False"
            )
        else:
            module = P.call("nn.Upsample", scale_factor=scale)
        return T.single_module(layer, inputs, module)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        size = P.int_or_ints(layer.kernel_size or ())
        if layer.spec.mode == "bilinear":
            # Keras resizes with half-pixel centres, PyTorch's align_corners=False (checked in the tests).
            expression = P.call(
                "layers.UpSampling2D",
                size=size,
                interpolation=P.string("bilinear"),
                name=K.quoted(layer.name),
            )
        else:
            expression = P.call(
                f"layers.UpSampling{K.RANK_SUFFIX[layer.spatial_rank]}",
                size=size,
                name=K.quoted(layer.name),
            )
        return K.single_layer(layer, ctx, expression)


@REGISTRY.attach("onnx", "upsample")
def upsample_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Resize: nearest (each cell repeated) or bilinear with half-pixel centres."""
    factors = O.planned(layer, layer.kernel_size, "kernel_size")
    scales = b.constant(b.temp(layer, "scales"), [1.0, 1.0, *factors], "float32")
    if layer.spec.mode == "bilinear":
        attributes = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    else:
        attributes = dict(
            mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"
        )
    return b.node("Resize", [inputs[0], "", scales], layer.name, **attributes)
