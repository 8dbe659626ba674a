"""concat: join two or more earlier layers along channels (element-wise merges are in elementwise.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import NAME_PATTERN, LayerBase
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Merge(LayerBase):
    """Channel concatenation of two or more earlier layers."""

    type: Literal["concat"]
    inputs: list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]] = Field(
        min_length=2, description="Two or more earlier layer names (or 'input')."
    )


_BRANCHES = (
    {
        "type": "conv2d",
        "name": "left",
        "filters": 4,
        "kernel_size": 3,
        "padding": "same",
        "inputs": ["input"],
    },
    {"type": "conv2d", "name": "right", "filters": 4, "kernel_size": 1, "inputs": ["input"]},
)


def _merge_keras(layer: LayerPlan, ctx: K.EmitContext, expression: str) -> list[str]:
    sources = "[" + ", ".join(ctx.variable(name) for name in layer.inputs) + "]"
    return [K.call(expression, ctx.variable(layer.name), sources)]


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
        example(
            {"type": "flatten", "name": "flat"},
            {"type": "dense", "name": "a", "units": 3, "inputs": ["flat"]},
            {"type": "concat", "inputs": ["flat", "a"]},
            size=(3, 2),
        ),
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
        return dict(
            output_shape=(channels, *first[1:]),
            size_formulas=(formula,),
            param_formula="no parameters",
        )

    def flat_segments(
        self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any
    ) -> Any:
        return tuple(segment for name in inputs for segment in ctx.segments_of[name])

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.LayerCode(expression="torch.cat([" + ", ".join(inputs) + "], dim=1)")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return _merge_keras(layer, ctx, f"layers.Concatenate(name={K.quoted(layer.name)})")


@REGISTRY.attach("onnx", "concat")
def concat_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Concat along the channel axis."""
    return b.node("Concat", inputs, layer.name, axis=1)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "Concatenate", by="concat")
def read_keras_concat(ctx, layer, cfg, inputs, shapes):
    if cfg.get("axis", -1) not in (-1, len(shapes[0]) - 1):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"concatenates along axis {cfg['axis']}",
            "cnnspec's concat joins channels (the last axis)",
        )
    ctx.add(layer, "concat", inputs)


@REGISTRY.reads("keras_op", "Concatenate", by="concat")
def read_keras_concat_op(ctx, op, node, inputs):
    """``keras.ops.concatenate([a, b], axis=-1)`` in a functional graph."""
    rank = len(node.input_tensors[0].shape)
    if op.axis % rank != rank - 1:
        raise refuse(
            KI.FRAMEWORK,
            f"'{op.name}' (Concatenate op)",
            f"concatenates along axis {op.axis}",
            "cnnspec's concat joins channels (axis=-1)",
        )
    ctx.builder.add(op.name, "concat", inputs)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_cat(ctx, node):
    tensors = TI.arg(node, 0, "tensors")
    dim = TI.arg(node, 1, "dim", 0)
    if len(tensors) == 1:
        ctx.builder.rewrite(node.name, "torch.cat of one tensor", "nothing (it is that tensor)")
        ctx.alias(node, tensors[0])
        return
    rank = len(ctx.shape(tensors[0])) + 1
    if dim not in (1, 1 - rank):
        raise TI.refusal(ctx, node, f"torch.cat along dim {dim}", "concat joins channels (dim=1)")
    ctx.add(node, list(tensors), layer_type="concat")


REGISTRY.reads("torch_function", "torch.cat", "torch.concat", by="concat")(_torch_cat)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_concat(ctx, node, attrs):
    if len(node.input) == 1:
        ctx.builder.rewrite(
            OI.readable(node), "Concat of one tensor", "nothing (it is that tensor)"
        )
        ctx.alias(node, node.input[0])
        return
    layouts = {ctx.value(name).layout for name in node.input}
    rank = len(ctx.shapes.get(node.input[0]) or (0, 0))
    layout = layouts.pop() if len(layouts) == 1 else None
    channel_axis = 1 if layout in (OI.FIRST, OI.FLAT) else rank - 1
    if layout is None or attrs.get("axis", 0) % rank != channel_axis:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"Concat along axis {attrs.get('axis')}",
            "concat joins channels",
        )
    ctx.add(node, "concat", list(node.input), layout)


REGISTRY.reads("onnx", "Concat", by="concat")(_onnx_concat)
