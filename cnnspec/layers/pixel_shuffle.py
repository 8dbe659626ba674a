"""pixel_shuffle: channels moved into r×r blocks of space (ESPCN's sub-pixel convolution).

PyTorch's order, which the spec keeps: output channel c at offset (i, j) of each block is input
channel c·r² + i·r + j ("CRD": channels, then rows, then columns).  TensorFlow's
``depth_to_space`` and ONNX's ``DepthToSpace`` by default read input channel (i·r + j)·C + c
("DCR") instead: the same shapes, other values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, Positive
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class PixelShuffle(LayerBase):
    """Rearrange (C·r², H, W) into (C, H·r, W·r), in PyTorch's channel order."""

    type: Literal["pixel_shuffle"]
    factor: Positive = Field(
        description=(
            "The upscale factor r; r² must divide the channels. Output channel c at offset (i, j) "
            "of each r×r block is input channel c·r² + i·r + j (PyTorch's PixelShuffle; not "
            "TensorFlow's depth_to_space, which reads (i·r + j)·C + c)."
        )
    )


@register
class PixelShuffleDefinition(LayerDefinition):
    """pixel_shuffle: nn.PixelShuffle in PyTorch, the PixelShuffle helper in Keras, DepthToSpace
    in CRD mode in ONNX."""

    model = PixelShuffle
    family = "pixel_shuffle"
    words = {
        "pixelshuffle": "pixel_shuffle",
        "depthtospace": "pixel_shuffle",
        "depth_to_space": "pixel_shuffle",
        "subpixel": "pixel_shuffle",
    }
    hint_text = (
        "pixel_shuffle: PyTorch reads channel c·r² + i·r + j into block offset (i, j); TensorFlow's "
        "depth_to_space and ONNX DepthToSpace's default DCR mode read (i·r + j)·C + c."
    )
    examples = (
        example(
            {"type": "conv2d", "filters": 8, "kernel_size": 3, "padding": 1},
            {"type": "pixel_shuffle", "factor": 2},
        ),
        example({"type": "pixel_shuffle", "factor": 3}, channels=18, size=(3, 4)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        if ctx.require_spatial(index, layer.type, shape) != 2:
            ctx.fail(
                index,
                f"pixel_shuffle needs a 2-D feature map (C, H, W), got {list(shape)}",
                "type",
            )
        r = layer.factor
        if shape[0] % (r * r):
            ctx.fail(
                index,
                f"factor {r}: r² = {r * r} does not divide the {shape[0]} input channels",
                "factor",
                hint="the channels before a pixel shuffle are C·r² (a convolution with C·r² filters)",
            )
        channels = shape[0] // (r * r)
        outs = [n * r for n in shape[1:]]
        return dict(
            output_shape=(channels, *outs),
            size_formulas=(
                f"channels {shape[0]} / {r}² = {channels}",
                *(f"{n}·{r} = {o}" for n, o in zip(shape[1:], outs)),
            ),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(n.affine(layer.spec.factor) for n in in_sizes[0])

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.single_module(layer, inputs, f"nn.PixelShuffle({T.int_text(layer.spec.factor)})")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use("PixelShuffle")
        return K.single_layer(
            layer, ctx, f"{helper}({int(layer.spec.factor)}, name={K.quoted(layer.name)})"
        )


@REGISTRY.attach("onnx", "pixel_shuffle")
def pixel_shuffle_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """DepthToSpace in CRD mode (PyTorch's order; the op's default DCR is TensorFlow's)."""
    return b.node("DepthToSpace", [inputs[0]], layer.name, blocksize=layer.spec.factor, mode="CRD")


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "PixelShuffle", by="pixel_shuffle")
def read_keras_pixel_shuffle(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "pixel_shuffle", inputs, factor=int(cfg["factor"]))


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_pixel_shuffle_module(ctx, node, module):
    ctx.add(node, node.args[:1], layer_type="pixel_shuffle", factor=int(module.upscale_factor))


def _torch_pixel_shuffle(ctx, node):
    factor = TI.arg(node, 1, "upscale_factor")
    ctx.add(node, node.args[:1], layer_type="pixel_shuffle", factor=int(factor))


REGISTRY.reads("torch_module", "PixelShuffle", by="pixel_shuffle")(_torch_pixel_shuffle_module)
REGISTRY.reads(
    "torch_function", "torch.nn.functional.pixel_shuffle", "torch.pixel_shuffle", by="pixel_shuffle"
)(_torch_pixel_shuffle)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


@REGISTRY.reads("onnx", "DepthToSpace", by="pixel_shuffle")
def _onnx_depth_to_space(ctx, node, attrs):
    value = ctx.value(node.input[0])
    mode = attrs.get("mode", "DCR")
    if isinstance(mode, bytes):
        mode = mode.decode()
    if value.layout != OI.FIRST or mode != "CRD":
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"DepthToSpace in {mode} mode"
            + ("" if value.layout == OI.FIRST else " on a channels-last tensor"),
            "the spec's pixel_shuffle is PyTorch's order, DepthToSpace mode CRD; DCR "
            "(TensorFlow's depth_to_space) reads the channels in another order",
        )
    ctx.add(node, "pixel_shuffle", [node.input[0]], value.layout, factor=int(attrs["blocksize"]))
