"""Element-wise merges with channel broadcasting: add, multiply, subtract, maximum, minimum, average.

One broadcasting rule for all of them (``cnnspec.engine.channels.broadcast_shapes``): a flat
(C) input counts as (C, 1, ..., 1), then NumPy broadcasting on the channels-first shapes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.channels import broadcast_shapes
from cnnspec.engine.plan import LayerPlan
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import NAME_PATTERN, LayerBase
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class ElementwiseMerge(LayerBase):
    """Element-wise operation on two or more earlier layers, with channel broadcasting."""

    type: Literal["add", "multiply", "subtract", "maximum", "minimum", "average"]
    inputs: list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]] = Field(
        min_length=2,
        description=(
            "Two or more earlier layer names (or 'input'); subtract takes exactly two (first - second). "
            "Shapes broadcast: a flat (C) input counts as (C, 1, ..., 1), then along every axis the sizes "
            "are equal or 1 (a (C, 1, 1) gate scales a (C, H, W) map)."
        ),
    )


_KERAS_LAYERS = {
    "add": "Add",
    "multiply": "Multiply",
    "subtract": "Subtract",
    "maximum": "Maximum",
    "minimum": "Minimum",
    "average": "Average",
}
_WORDS = {
    "sum": "add",
    "mul": "multiply",
    "product": "multiply",
    "sub": "subtract",
    "difference": "subtract",
    "max": "maximum",
    "min": "minimum",
    "mean": "average",
    "avg": "average",
}

# A squeeze-excite gate: global pool with keepdims -> 1x1 conv -> sigmoid, multiplied onto the map.
_GATE = (
    {"type": "conv2d", "name": "features", "filters": 4, "kernel_size": 3, "padding": "same"},
    {"type": "global_avg_pool", "name": "squeeze", "keepdims": True},
    {"type": "conv2d", "name": "gate", "filters": 4, "kernel_size": 1, "activation": "sigmoid"},
)
_FLAT_GATE = (
    {"type": "conv2d", "name": "features", "filters": 4, "kernel_size": 3, "padding": "same"},
    {"type": "global_avg_pool", "name": "squeeze"},
    {"type": "dense", "name": "gate", "units": 4, "activation": "sigmoid"},
)
_SPATIAL_GATE = (
    {"type": "conv2d", "name": "features", "filters": 4, "kernel_size": 3, "padding": "same"},
    {
        "type": "conv2d",
        "name": "gate",
        "filters": 1,
        "kernel_size": 1,
        "activation": "sigmoid",
        "inputs": ["input"],
    },
)
_BRANCHES = (
    {"type": "conv2d", "name": "left", "filters": 3, "kernel_size": 3, "padding": "same"},
    {"type": "conv2d", "name": "right", "filters": 3, "kernel_size": 1, "inputs": ["input"]},
)
_DENSE_PAIR = (
    {"type": "flatten", "name": "flat"},
    {"type": "dense", "name": "a", "units": 3, "inputs": ["flat"]},
    {"type": "dense", "name": "b", "units": 3, "inputs": ["flat"]},
)


def _examples(layer_type: str) -> tuple:
    two = ["left", "right"]
    many = two if layer_type == "subtract" else ["left", "right", "input"]
    return (
        example(*_BRANCHES, {"type": layer_type, "inputs": many}),
        example(*_GATE, {"type": layer_type, "inputs": ["features", "gate"]}),
        example(*_FLAT_GATE, {"type": layer_type, "inputs": ["gate", "features"]}, size=(6, 5)),
        example(*_SPATIAL_GATE, {"type": layer_type, "inputs": ["features", "gate"]}),
        example(*_DENSE_PAIR, {"type": layer_type, "inputs": ["a", "b"]}),
        example(
            {"type": "conv1d", "name": "left", "filters": 3, "kernel_size": 3, "padding": "same"},
            {"type": "global_max_pool", "name": "right", "keepdims": True},
            {"type": layer_type, "inputs": ["left", "right"]},
            size=(8,),
        ),
        example(
            {"type": "conv3d", "name": "left", "filters": 2, "kernel_size": 1},
            {"type": layer_type, "inputs": ["left", "input"]},
            channels=2,
            size=(3, 4, 3),
        ),
    )


class _Elementwise(LayerDefinition):
    """Shared planner and emission of the element-wise merges."""

    model = ElementwiseMerge
    family = "elementwise"
    arity = "many"

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        if layer.type == "subtract" and len(in_shapes) != 2:
            ctx.fail(
                index,
                f"subtract takes exactly two inputs (first - second), got {len(in_shapes)}",
                "inputs",
            )
        try:
            out = broadcast_shapes(list(in_shapes), list(layer.inputs))
        except ValueError as error:
            ctx.fail(
                index,
                f"{layer.type}: {error}",
                "inputs",
                hint="shapes must be equal, or 1 along the axes that broadcast (a (C, 1, 1) gate, or a flat (C))",
            )
        broadcast = [
            name for name, shape in zip(layer.inputs, in_shapes) if tuple(shape) != tuple(out)
        ]
        formula = (f"{', '.join(broadcast)} broadcast to {list(out)}",) if broadcast else ()
        return dict(output_shape=out, param_formula="no parameters", size_formulas=formula)

    def flat_segments(
        self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any
    ) -> Any:
        pieces = [
            ctx.segments_of[name]
            for name, shape in zip(inputs, in_shapes)
            if shape == tuple(output_shape)
        ]
        if any(piece != pieces[0] for piece in pieces[1:]):
            ctx.fail(
                index,
                f"{ctx.spec.layers[index].type} of flat features laid out differently (a flattened feature map and dense "
                "features): PyTorch flattens C,H,W and Keras H,W,C, so the result would differ between the frameworks",
                "inputs",
                hint="merge the feature maps before flatten, or merge two dense outputs",
            )
        return pieces[0]

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spatial = len(layer.output_shape) - 1
        # PyTorch broadcasting aligns a flat (N, C) with the last axis: give it the spatial axes first.
        operands = [
            f"{name}[:, :{', None' * spatial}]" if len(shape) == 1 and spatial else name
            for name, shape in zip(inputs, layer.input_shapes)
        ]
        if layer.type == "add":
            expression = " + ".join(operands)
        elif layer.type == "multiply":
            expression = " * ".join(operands)
        elif layer.type == "subtract":
            expression = f"{operands[0]} - {operands[1]}"
        elif layer.type == "average":
            expression = f"({' + '.join(operands)}) / {len(operands)}"
        else:
            function = "torch.maximum" if layer.type == "maximum" else "torch.minimum"
            expression = operands[0]
            for operand in operands[1:]:
                expression = f"{function}({expression}, {operand})"
        return T.LayerCode(expression=expression)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        # Keras' merge layers broadcast, and expand a lower-rank input after the batch axis: (N, C) -> (N, 1, 1, C).
        sources = "[" + ", ".join(ctx.variable(name) for name in layer.inputs) + "]"
        expression = f"layers.{_KERAS_LAYERS[layer.type]}(name={K.quoted(layer.name)})"
        return [K.call(expression, ctx.variable(layer.name), sources)]


def _definition(layer_type: str, hint: str) -> type[_Elementwise]:
    words = {word: target for word, target in _WORDS.items() if target == layer_type}

    class Definition(_Elementwise):
        __doc__ = f"{layer_type}: element-wise, with channel broadcasting."
        types = (layer_type,)
        hint_text = hint

    Definition.words = words
    Definition.examples = _examples(layer_type)
    Definition.__name__ = Definition.__qualname__ = f"{layer_type.capitalize()}Definition"
    register(Definition)
    return Definition


_BROADCAST_HINT = " A flat (C) or (C, 1, 1) input must broadcast over the channels (PyTorch: x[:, :, None, None])."
AddDefinition = _definition(
    "add", "add: inputs in the spec's order and equal layouts in both frameworks." + _BROADCAST_HINT
)
MultiplyDefinition = _definition(
    "multiply", "multiply: a squeeze-excite gate must scale channels." + _BROADCAST_HINT
)
SubtractDefinition = _definition(
    "subtract", "subtract: first input minus second, in the spec's order." + _BROADCAST_HINT
)
MaximumDefinition = _definition(
    "maximum", "maximum: element-wise over the inputs." + _BROADCAST_HINT
)
MinimumDefinition = _definition(
    "minimum", "minimum: element-wise over the inputs." + _BROADCAST_HINT
)
AverageDefinition = _definition(
    "average", "average: the mean of the inputs (sum / count), not a pooling." + _BROADCAST_HINT
)


_ONNX_OPS = {
    "add": "Add",
    "multiply": "Mul",
    "subtract": "Sub",
    "maximum": "Max",
    "minimum": "Min",
    "average": "Add",
}


@REGISTRY.attach("onnx", *_KERAS_LAYERS)
def elementwise_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Add/Mul/Sub/Max/Min left to right with broadcasting; a flat (N, C) operand gets (N, C, 1, ...)."""
    spatial = len(layer.output_shape) - 1
    operands = []
    for position, (name, shape) in enumerate(zip(inputs, layer.input_shapes)):
        if len(shape) == 1 and spatial:
            axes = b.constant(
                b.temp(layer, f"axes{position}"), list(range(2, 2 + spatial)), "int64"
            )
            name = b.node("Unsqueeze", [name, axes], b.temp(layer, f"operand{position}"))
        operands.append(name)
    op = _ONNX_OPS[layer.type]
    total = operands[0]
    for position, other in enumerate(operands[1:], start=1):
        last = position == len(operands) - 1 and layer.type != "average"
        total = b.node(op, [total, other], layer.name if last else b.temp(layer, f"step{position}"))
    if layer.type == "average":
        count = b.constant(b.temp(layer, "count"), float(len(operands)), "float32")
        total = b.node("Div", [total, count], layer.name)
    return total
