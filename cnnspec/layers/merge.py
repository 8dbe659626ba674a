"""Merges of two or more earlier layers: add (element-wise sum), concat (along channels)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.layers.registry import LayerDefinition, example, register
from cnnspec.spec.fields import NAME_PATTERN, LayerBase
from cnnspec.targets.keras import code as K
from cnnspec.targets.torch import code as T


class Merge(LayerBase):
    """Element-wise sum (add) or channel concatenation (concat) of two or more earlier layers."""

    type: Literal["add", "concat"]
    inputs: list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]] = Field(
        min_length=2, description="Two or more earlier layer names (or 'input')."
    )


_BRANCHES = (
    {"type": "conv2d", "name": "left", "filters": 4, "kernel_size": 3, "padding": "same", "inputs": ["input"]},
    {"type": "conv2d", "name": "right", "filters": 4, "kernel_size": 1, "inputs": ["input"]},
)


def _merge_keras(layer: LayerPlan, ctx: K.EmitContext, expression: str) -> list[str]:
    sources = "[" + ", ".join(ctx.variable(name) for name in layer.inputs) + "]"
    return [K.call(expression, ctx.variable(layer.name), sources)]


@register
class AddDefinition(LayerDefinition):
    """add: element-wise sum of equal shapes."""

    model = Merge
    types = ("add",)
    family = "merge"
    arity = "many"
    words = {"sum": "add"}
    hint_text = "merge: add needs its inputs in the spec's order and equal layouts in both frameworks."
    examples = (
        example(*_BRANCHES, {"type": "add", "inputs": ["left", "right", "input"]}, channels=4),
        example({"type": "flatten", "name": "flat"}, {"type": "dense", "name": "a", "units": 3, "inputs": ["flat"]},
                {"type": "dense", "name": "b", "units": 3, "inputs": ["flat"]}, {"type": "add", "inputs": ["a", "b"]}),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        first, names = in_shapes[0], layer.inputs
        for name, shape in zip(names[1:], in_shapes[1:]):
            if shape != first:
                ctx.fail(
                    index,
                    f"add needs equal shapes: '{names[0]}' is {list(first)} but '{name}' is {list(shape)} "
                    "(channels-first)",
                    "inputs",
                )
        return dict(output_shape=first, param_formula="no parameters", size_formulas=())

    def flat_segments(self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any) -> Any:
        pieces = [ctx.segments_of[name] for name in inputs]
        if any(piece != pieces[0] for piece in pieces[1:]):
            ctx.fail(
                index,
                "add of flat features laid out differently (a flattened feature map and dense features): "
                "PyTorch flattens C,H,W and Keras H,W,C, so the sum would differ between the frameworks",
                "inputs",
                hint="add the feature maps before flatten, or add two dense outputs",
            )
        return pieces[0]

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.LayerCode(expression=" + ".join(inputs))

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return _merge_keras(layer, ctx, f"layers.Add(name={K.quoted(layer.name)})")


@register
class ConcatDefinition(LayerDefinition):
    """concat: join along channels (PyTorch dim 1, Keras axis -1)."""

    model = Merge
    types = ("concat",)
    family = "merge"
    arity = "many"
    words = {"concatenate": "concat", "cat": "concat"}
    hint_text = "merge: concat must join the channel axis (PyTorch dim 1, Keras axis −1), inputs in the spec's order."
    examples = (
        example(*_BRANCHES, {"type": "concat", "inputs": ["right", "input", "left"]}),
        example({"type": "flatten", "name": "flat"}, {"type": "dense", "name": "a", "units": 3, "inputs": ["flat"]},
                {"type": "concat", "inputs": ["flat", "a"]}, size=(3, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        first, names = in_shapes[0], layer.inputs
        for name, shape in zip(names[1:], in_shapes[1:]):
            if len(shape) != len(first) or shape[1:] != first[1:]:
                ctx.fail(
                    index,
                    f"concat joins along channels, so all other dims must match: '{names[0]}' is {list(first)} "
                    f"but '{name}' is {list(shape)} (channels-first)",
                    "inputs",
                )
        channels = sum(s[0] for s in in_shapes)
        formula = " + ".join(str(s[0]) for s in in_shapes) + f" = {channels} channels"
        return dict(output_shape=(channels, *first[1:]), size_formulas=(formula,), param_formula="no parameters")

    def flat_segments(self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any) -> Any:
        return tuple(segment for name in inputs for segment in ctx.segments_of[name])

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.LayerCode(expression="torch.cat([" + ", ".join(inputs) + "], dim=1)")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return _merge_keras(layer, ctx, f"layers.Concatenate(axis=-1, name={K.quoted(layer.name)})")
