"""pad1d/2d/3d: constant (any value), reflect or replicate padding of the spatial dims."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.channels import padded_length
from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, NonNegative, PadPair
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Pad(LayerBase):
    """Pad the spatial dims with a constant, by reflection, or by repeating the edge cell."""

    type: Literal["pad1d", "pad2d", "pad3d"]
    padding: (
        NonNegative
        | Annotated[list[NonNegative], Field(min_length=1, max_length=3)]
        | Annotated[list[PadPair], Field(min_length=1, max_length=3)]
    ) = Field(
        description="An int, one int per spatial dim, or one [before, after] pair per spatial dim."
    )
    mode: Literal["constant", "reflect", "replicate"] = Field(
        default="constant",
        description=(
            "'constant': cells hold 'value'. 'reflect': mirror about the edge cell without repeating it "
            "([1, 2, 3] padded by 2: [3, 2, 1, 2, 3, 2, 1]; each side must be smaller than the input). "
            "'replicate': repeat the edge cell."
        ),
    )
    value: Annotated[float, Field(allow_inf_nan=False)] = Field(
        default=0.0, description="The constant for mode 'constant'."
    )


_TORCH_MODULES = {
    "constant": "ConstantPad",
    "reflect": "ReflectionPad",
    "replicate": "ReplicationPad",
}


def _sides(layer: LayerPlan) -> tuple[tuple[int, int], ...]:
    """The planned (before, after) padding per spatial dim."""
    assert layer.padding is not None, "planned by plan()"
    return layer.padding


@register
class PadDefinition(LayerDefinition):
    """pad1d/2d/3d: nn.ConstantPad/ReflectionPad/ReplicationPad*d; Keras ZeroPadding*D or the Padding helper."""

    model = Pad
    family = "pad"
    words = {
        "reflectionpad2d": "pad2d",
        "replicationpad2d": "pad2d",
        "constantpad2d": "pad2d",
        "reflectionpad1d": "pad1d",
        "replicationpad1d": "pad1d",
        "constantpad1d": "pad1d",
        "reflectionpad3d": "pad3d",
        "replicationpad3d": "pad3d",
        "constantpad3d": "pad3d",
    }
    hint_text = (
        "pad: reflect does not repeat the edge cell (TF's SYMMETRIC does); replicate repeats it; the (before, after) "
        "order per spatial axis."
    )
    examples = (
        example({"type": "pad2d", "padding": [[1, 2], [2, 0]], "mode": "reflect"}, size=(5, 4)),
        example({"type": "pad2d", "padding": 2, "mode": "replicate"}),
        example({"type": "pad2d", "padding": [1, 0], "value": -1.5}),
        example({"type": "pad1d", "padding": [[2, 1]], "mode": "reflect"}, size=(5,)),
        example({"type": "pad1d", "padding": 1}, size=(4,)),
        example(
            {"type": "pad3d", "padding": [[1, 0], [0, 1], [1, 1]], "mode": "replicate"},
            channels=2,
            size=(2, 3, 3),
        ),
        example({"type": "pad3d", "padding": 1, "mode": "reflect"}, channels=2, size=(2, 3, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        ctx.require_spatial(index, layer.type, shape, rank)
        pads = ctx.explicit_pads(index, layer.padding, rank)
        outs = []
        for n, (before, after) in zip(shape[1:], pads):
            try:
                outs.append(padded_length(n, before, after, layer.mode))
            except ValueError as error:
                ctx.fail(
                    index, str(error), "padding", hint="use mode: replicate, or pad in two steps"
                )
        return dict(
            output_shape=(shape[0], *outs),
            padding=pads,
            padding_mode=layer.mode,
            size_formulas=tuple(
                f"{n} + {b} + {a} = {o}" for n, (b, a), o in zip(shape[1:], pads, outs)
            ),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(
            n.plus(before + after) for n, (before, after) in zip(in_sizes[0], layer.padding or ())
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        value = f", {T.float_text(spec.value)}" if spec.mode == "constant" else ""
        module = f"nn.{_TORCH_MODULES[spec.mode]}{T.spatial_rank(layer)}d({T.torch_pad_order(_sides(layer))}{value})"
        return T.single_module(layer, inputs, module)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        pads = _sides(layer)
        rank = len(pads)
        if spec.mode == "constant" and spec.value == 0.0:
            argument = (
                f"({int(pads[0][0])}, {int(pads[0][1])})" if rank == 1 else K.pairs_text(pads)
            )
            return K.single_layer(
                layer,
                ctx,
                f"layers.ZeroPadding{K.RANK_SUFFIX[rank]}({argument}, name={K.quoted(layer.name)})",
            )
        helper = ctx.use("Padding")
        options = (
            f", mode={P.string(spec.mode)}"
            if spec.mode != "constant"
            else f", value={K.float_text(spec.value)}"
        )
        return K.single_layer(
            layer, ctx, f"{helper}({K.pairs_text(pads)}{options}, name={K.quoted(layer.name)})"
        )


_ONNX_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}


@REGISTRY.attach("onnx", "pad1d", "pad2d", "pad3d")
def pad_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Pad of the spatial dims: constant (with its value), reflect, or edge for 'replicate'."""
    amounts = b.constant(b.temp(layer, "pad_amounts"), O.spatial_pads(_sides(layer)), "int64")
    operands = [inputs[0], amounts]
    if layer.spec.mode == "constant" and layer.spec.value:
        operands.append(b.constant(b.temp(layer, "pad_value"), float(layer.spec.value), "float32"))
    return b.node("Pad", operands, layer.name, mode=_ONNX_PAD_MODES[layer.spec.mode])
