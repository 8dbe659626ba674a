"""Element-wise merges with channel broadcasting: add, multiply, subtract, maximum, minimum, average.

One broadcasting rule for all of them (``cnnspec.engine.channels.broadcast_shapes``): a flat
(C) input counts as (C, 1, ..., 1), then NumPy broadcasting on the channels-first shapes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.channels import broadcast_shapes
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
#: The Keras classes of the element-wise merges.
KERAS_MERGES = frozenset(_KERAS_LAYERS.values())
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


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


def _read_keras_merge(kind: str):
    def read_keras_merge(ctx, layer, cfg, inputs, shapes):
        ctx.add(layer, kind, inputs)

    return read_keras_merge


for _type, _class in _KERAS_LAYERS.items():
    REGISTRY.reads("keras", _class, by=_type)(_read_keras_merge(_type))

# The raw ops Keras 3 records in a functional graph (x + y, x * 0.5) -> their element-wise type.
_KERAS_OPS = {
    "Add": "add",
    "Multiply": "multiply",
    "Subtract": "subtract",
    "Maximum": "maximum",
    "Minimum": "minimum",
}


def _read_keras_op(kind: str):
    def read_keras_op(ctx, op, node, inputs) -> None:
        """A raw Keras op in the graph (``x + 3.0``, ``x * (1 / 6)``, ``a * b``: Keras 3 MobileNetV3's
        hard sigmoid and squeeze-excite): two tensors are an element-wise layer, a tensor and a
        number a scale or offset."""
        arguments = list(getattr(node, "arguments").args) if hasattr(node, "arguments") else []
        constants = [
            a for a in arguments if isinstance(a, (int, float)) and not isinstance(a, bool)
        ]
        where = f"'{op.name}' ({type(op).__name__} op)"
        if len(arguments) != 2:
            raise refuse(
                KI.FRAMEWORK,
                where,
                "is a raw op cnnspec does not read",
                "+, -, * on tensors or by a number",
            )
        if not constants:
            ctx.builder.add(op.name, kind, inputs)
        elif kind == "multiply":
            ctx.builder.add(op.name, "scale", inputs, factor=float(constants[0]))
        elif kind == "add" or (kind == "subtract" and isinstance(arguments[1], (int, float))):
            offset = float(constants[0]) if kind == "add" else -float(constants[0])
            ctx.builder.add(op.name, "rescale", inputs, scale=1.0, offset=offset)
        elif kind == "subtract":  # 1.0 - x
            ctx.builder.add(op.name, "rescale", inputs, scale=-1.0, offset=float(constants[0]))
        else:
            raise refuse(
                KI.FRAMEWORK, where, f"{kind} with a constant", "x * c, x + c and x - c are read"
            )

    return read_keras_op


@REGISTRY.reads("keras_op", "TrueDivide", "Divide", by="multiply", produces=("scale",))
def read_keras_divide_op(ctx, op, node, inputs) -> None:
    """``x / 255.0`` in a functional graph: a scale by the reciprocal."""
    arguments = list(node.arguments.args)
    divisor = arguments[1] if len(arguments) == 2 else None
    if not isinstance(divisor, (int, float)) or isinstance(divisor, bool) or not divisor:
        raise refuse(
            KI.FRAMEWORK,
            f"'{op.name}' ({type(op).__name__} op)",
            "a division by a tensor (or of a number by a tensor)",
            "x / c by a nonzero number is read",
        )
    ctx.builder.add(op.name, "scale", inputs, factor=1.0 / float(divisor))


@REGISTRY.reads("keras_op", "Negative", by="multiply", produces=("scale",))
def read_keras_negative_op(ctx, op, node, inputs) -> None:
    """``-x`` in a functional graph."""
    ctx.builder.add(op.name, "scale", inputs, factor=-1.0)


for _class, _type in _KERAS_OPS.items():
    REGISTRY.reads("keras_op", _class, by=_type, produces=(_type, "scale", "rescale"))(
        _read_keras_op(_type)
    )


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_constant_operand(ctx, node, left, right, kind: str) -> bool:
    """An operation of a tensor and a tensor constant of one value per channel (or one in all),
    ``(x - self.mean) / self.std`` with normalisation buffers: a rescale; one just made from the
    same tensor, read only here, takes this one in (two steps, one layer)."""
    import numpy as np

    if (left in ctx.constants) == (right in ctx.constants):
        return False
    constant, tensor = (left, right) if left in ctx.constants else (right, left)
    if not TI.is_tensor(ctx, tensor):
        return False
    where = "a tensor constant"
    if tensor in ctx.channels_last:
        raise TI.refusal(
            ctx, node, f"{kind} of {where} on a channels-last tensor", "read it channels-first"
        )
    shape = ctx.shape(tensor)
    values = ctx.constants[constant].numpy().astype(np.float32)
    rank = len(shape) + 1
    dims = (1,) * (rank - values.ndim) + tuple(values.shape)
    per_channel = (
        values.ndim <= rank
        and dims[0] == 1
        and dims[1] in (1, shape[0])
        and all(n == 1 for n in dims[2:])
    )
    if not per_channel:
        raise TI.refusal(
            ctx,
            node,
            f"{kind} of {where} of shape {list(values.shape)} and a {list(shape)} tensor",
            "a constant of one value per channel (shape (1, C, 1, 1)) or one in all is a rescale",
        )
    values = values.reshape(-1)
    if kind == "divide" and (constant is left or not np.all(values)):
        raise TI.refusal(
            ctx,
            node,
            f"a division by {where} with a zero"
            if constant is right
            else f"{where} divided by a tensor",
            "x / c with c nonzero is read",
        )
    one = np.ones(1, dtype=np.float32)
    scale, offset = one, np.zeros(1, dtype=np.float32)
    if kind == "add":
        offset = values
    elif kind == "subtract":
        scale, offset = (one, -values) if constant is right else (-one, values)
    elif kind == "multiply":
        scale = values
    else:
        scale = one / values
    previous = _just_made(ctx, tensor, ("rescale",))
    if previous is not None and node.name not in ctx.dict_names:
        scale, offset = (
            np.asarray(previous.get("scale", 1.0), dtype=np.float32) * scale,
            np.asarray(previous.get("offset", 0.0), dtype=np.float32) * scale + offset,
        )
        ctx.builder.drop_last()
        tensor = next(arg for arg in tensor.args if TI.is_tensor(ctx, arg))
    ctx.add(
        node,
        [tensor],
        layer_type="rescale",
        scale=_one_or_per_channel(scale),
        offset=_one_or_per_channel(offset),
    )
    return True


def _one_or_per_channel(values) -> float | list[float]:
    """One number where every channel has the same, else one per channel; each written with the
    fewest digits that give the same float32 (the buffer's 0.229, not 0.22900000214576721)."""
    flat = [float(str(v)) for v in values.reshape(-1)]
    return flat[0] if len(set(flat)) == 1 else flat


def _torch_binary(kind: str):
    def reader(ctx, node):
        left, right = node.args[0], node.args[1]
        if kind in ("add", "subtract", "multiply") and _torch_constant_operand(
            ctx, node, left, right, kind
        ):
            return
        if kind == "multiply" and (left in ctx.parameters) != (right in ctx.parameters):
            tensor, parameter = (right, left) if left in ctx.parameters else (left, right)
            if TI.is_tensor(ctx, tensor):
                from cnnspec.layers.layer_scale import torch_parameter_scale

                torch_parameter_scale(ctx, node, tensor, parameter)
                return
        if kind == "multiply" and isinstance(left, (int, float)) != isinstance(right, (int, float)):
            tensor, factor = (right, left) if isinstance(left, (int, float)) else (left, right)
            if TI.is_tensor(
                ctx, tensor
            ):  # x * 0.17: a constant factor (InceptionResNet's residual scaling)
                ctx.add(node, [tensor], layer_type="scale", factor=float(factor))
                return
        if kind in ("add", "subtract") and _torch_number_operand(ctx, node, left, right, kind):
            return
        if not (TI.is_tensor(ctx, left) and TI.is_tensor(ctx, right)):
            raise TI.refusal(
                ctx,
                node,
                f"{kind} with a constant operand",
                "element-wise layers join two layer outputs; a constant factor is the 'scale' type",
            )
        if kind in ("add", "multiply", "maximum", "minimum") and _torch_extend_sum(
            ctx, node, left, right, kind
        ):
            return
        ctx.add(node, [left, right], layer_type=kind)

    return reader


# What a flat gate made to broadcast may feed: a merge, or the next step of the same broadcast.
_MERGE_TYPES = frozenset(_KERAS_LAYERS)
_GATE_STEPS = frozenset({"view", "reshape", "unsqueeze", "expand", "expand_as"})


def torch_broadcast_gate(ctx, node) -> bool:
    """A flat (N, C) gate made (N, C, 1, ..., 1), or either expanded to a map's shape, for an element-wise
    merge to broadcast it (``y.view(b, c, 1, 1)``, ``y.unsqueeze(-1)``, ``y.expand_as(x)``): the
    merges broadcast the flat gate itself, so the view computes nothing.  Anything but a merge
    reading it is left to the caller's refusal."""
    source = node.args[0]
    value = ctx.values.get(source) if TI.is_tensor(ctx, source) else None
    out = ctx.shape(node)
    if value is None or not value.shape or any(d != 1 for d in value.shape[1:]):
        return False
    if not out or len(out) < 2 or (len(value.shape) > 1 and len(out) != len(value.shape)):
        return False
    expanded = node.target in ("expand", "expand_as")
    if out[0] != value.shape[0] or (not expanded and any(d != 1 for d in out[1:])):
        return False
    if not torch_gate_users_only(ctx, node):
        return False
    ctx.alias(node, source)
    return True


def torch_gate_users_only(ctx, node) -> bool:
    """Every reader of ``node`` is an element-wise merge or a further step making it broadcast."""
    import torch

    merges = {
        function
        for function, claim in ctx.function_claims.items()
        if claim.owner.types[0] in _MERGE_TYPES
    }
    for user in node.users:
        step = user.op == "call_method" and user.target in _GATE_STEPS
        step = step or (user.op == "call_function" and user.target is torch.unsqueeze)
        merge = user.op == "call_function" and user.target in merges
        merge = merge or (user.op == "call_method" and user.target in ("add", "mul", "sub"))
        if not (step or merge):
            return False
    return True


def _torch_gate_step(ctx, node):
    from cnnspec.layers.channel_conv import torch_channel_view

    if not torch_broadcast_gate(ctx, node) and not torch_channel_view(ctx, node):
        raise TI.refusal(
            ctx,
            node,
            f"{node.target if isinstance(node.target, str) else 'unsqueeze'} of a "
            f"{list(ctx.shape(node.args[0]) or [])} tensor to {list(ctx.shape(node) or [])}",
            "cnnspec reads these as a flat (C) gate made (C, 1, 1) for an element-wise merge to "
            "broadcast over a feature map (squeeze-excite)",
        )


def _torch_number_operand(ctx, node, left, right, kind: str) -> bool:
    """``x + c``, ``c + x``, ``x - c`` and ``c - x``: a rescale; adding 0 computes nothing (MobileOne
    and FastViT sum their branches into ``out = 0``)."""
    numbers = [
        isinstance(side, (int, float)) and not isinstance(side, bool) for side in (left, right)
    ]
    if numbers.count(True) != 1:
        return False
    tensor, number = (right, float(left)) if numbers[0] else (left, float(right))
    if not TI.is_tensor(ctx, tensor):
        return False
    if number == 0.0 and (kind == "add" or tensor is left) and node.name not in ctx.dict_names:
        ctx.alias(node, tensor)
    elif tensor is left or kind == "add":
        _torch_offset(ctx, node, tensor, number if kind == "add" else -number)
    else:  # c - x
        ctx.add(node, [tensor], layer_type="rescale", scale=-1.0, offset=number)
    return True


def _just_made(ctx, tensor, types: tuple[str, ...]) -> dict | None:
    """The last spec layer, if it is of one of ``types``, was made from ``tensor`` and nothing else
    reads it (nor names it, in a model cnnspec generated): an operation on it may take it in."""
    previous = ctx.builder.layers[-1] if ctx.builder.layers else None
    value = ctx.values.get(tensor)
    if (
        previous is None
        or previous["type"] not in types
        or value is None
        or value.name != previous["name"]
        or len(tensor.users) != 1
        or tensor.name in ctx.dict_names
    ):
        return None
    return previous


def _torch_offset(ctx, node, tensor, offset: float) -> None:
    """``x * s + c`` (a scale just made from ``x * s``, read only here) is rescale(s, c); ``x + c`` rescale(1, c)."""
    previous = _just_made(ctx, tensor, ("scale",))
    if previous is not None:
        source = next(arg for arg in tensor.args if TI.is_tensor(ctx, arg))
        ctx.builder.drop_last()
        ctx.add(node, [source], layer_type="rescale", scale=previous["factor"], offset=offset)
        return
    ctx.add(node, [tensor], layer_type="rescale", scale=1.0, offset=offset)


def _torch_extend_sum(ctx, node, left, right, kind: str = "add") -> bool:
    """``a + b + c`` (and ``a * b * c``, nested maximum / minimum) whose inner result is read only by the
    outer op and names no spec layer is one layer of three inputs (how cnnspec writes them)."""
    previous = _just_made(ctx, left, (kind,))
    if previous is None:
        return False
    previous["inputs"].append(ctx.input_name(right))
    ctx.absorb(node)
    return True


def _torch_divide(ctx, node):
    """``(a + b) / 2`` (the sum just made, read only here, divided by its input count) is average."""
    left, right = node.args[0], node.args[1]
    if _torch_constant_operand(ctx, node, left, right, "divide"):
        return
    summed = _just_made(ctx, left, ("add",)) if TI.is_tensor(ctx, left) else None
    if summed is not None and isinstance(right, (int, float)) and right == len(summed["inputs"]):
        summed["type"] = "average"
        ctx.absorb(node)
        return
    if (
        isinstance(right, (int, float))
        and not isinstance(right, bool)
        and right != 0
        and TI.is_tensor(ctx, left)
    ):
        _torch_divide_by_number(ctx, node, left, float(right))
        return
    raise TI.refusal(
        ctx,
        node,
        "a division",
        "(a + b) / 2 is average, x / c a scale by 1 / c; a division by a tensor is not supported",
    )


def _torch_divide_by_number(ctx, node, tensor, divisor: float) -> None:
    """``x / c`` is a scale by 1 / c; ``(x + a) / c`` (a rescale or scale just made from ``x``,
    read only here) is one rescale whose factor and offset are divided by c."""
    ctx.builder.rewrite(
        TI.original_path(node),
        f"division by {divisor:g}",
        f"multiplication by 1 / {divisor:g} (the same to within one rounding; exact for a power of 2)",
    )
    previous = _just_made(ctx, tensor, ("scale", "rescale"))
    if (
        previous is not None
        and node.name not in ctx.dict_names
        and all(
            isinstance(previous.get(key, 0.0), (int, float))
            for key in ("factor", "scale", "offset")
        )
    ):
        if previous["type"] == "scale":
            previous["factor"] = previous["factor"] / divisor
        else:
            previous["scale"] = previous.get("scale", 1.0) / divisor
            previous["offset"] = previous.get("offset", 0.0) / divisor
        ctx.absorb(node)
        return
    ctx.add(node, [tensor], layer_type="scale", factor=1.0 / divisor)


REGISTRY.reads(
    "torch_function",
    "operator.add",
    "operator.iadd",
    "torch.add",
    by="add",
    produces=("add", "rescale"),
)(_torch_binary("add"))
REGISTRY.reads(
    "torch_function",
    "operator.mul",
    "operator.imul",
    "torch.mul",
    by="multiply",
    produces=("multiply", "scale", "layer_scale", "rescale"),
)(_torch_binary("multiply"))
REGISTRY.reads(
    "torch_function", "operator.sub", "torch.sub", by="subtract", produces=("subtract", "rescale")
)(_torch_binary("subtract"))
REGISTRY.reads("torch_function", "torch.maximum", by="maximum")(_torch_binary("maximum"))
REGISTRY.reads("torch_function", "torch.minimum", by="minimum")(_torch_binary("minimum"))
REGISTRY.reads(
    "torch_function",
    "operator.truediv",
    "torch.div",
    by="average",
    produces=("average", "scale", "rescale"),
)(_torch_divide)
REGISTRY.reads("torch_method", "div", by="average", produces=("average", "scale", "rescale"))(
    _torch_divide
)
REGISTRY.reads("torch_method", "add", by="add", produces=("add", "rescale"))(_torch_binary("add"))
REGISTRY.reads(
    "torch_method", "mul", by="multiply", produces=("multiply", "scale", "layer_scale", "rescale")
)(_torch_binary("multiply"))
REGISTRY.reads("torch_method", "sub", by="subtract", produces=("subtract", "rescale"))(
    _torch_binary("subtract")
)

REGISTRY.reads("torch_method", "unsqueeze", "expand", "expand_as", by="multiply", produces=())(
    _torch_gate_step
)
REGISTRY.reads("torch_function", "torch.unsqueeze", by="multiply", produces=())(_torch_gate_step)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


#: Node chains the ONNX Mul / Add readers take as ``x * s (+ b)`` with one constant per channel
#: (batch_norm or layer_scale, weights kept), not the importer's point-wise functions (rescale).
ONNX_AFFINE_CHAINS = (("Mul",), ("Mul", "Add"), ("Add",))


def _onnx_binary(kind: str):
    def handler(ctx, node, attrs):
        constant = [name for name in node.input if name in ctx.constants]
        if kind == "add" and constant and _onnx_fold_bias(ctx, node, constant[0]):
            return
        from cnnspec.layers.layer_scale import onnx_layer_scale

        if kind == "multiply" and constant and onnx_layer_scale(ctx, node, constant[0]):
            return
        if kind in ("add", "multiply") and constant and _onnx_affine(ctx, node, kind, constant[0]):
            return
        if constant:
            raise refuse(
                OI.FRAMEWORK,
                OI.where(node),
                f"{node.op_type} with a constant operand '{constant[0]}'",
                "element-wise layers join two layer outputs",
            )
        layouts = {ctx.value(name).layout for name in node.input}
        if OI.EXPANDED in layouts and len(layouts) == 2 and layouts & {OI.FIRST, OI.LAST}:
            layouts.discard(OI.EXPANDED)  # a flat gate broadcast over a feature map
        if len(layouts) != 1 or layouts == {OI.EXPANDED}:
            raise refuse(
                OI.FRAMEWORK,
                OI.where(node),
                f"{node.op_type} of tensors in different layouts {sorted(layouts)}",
            )
        ctx.add(node, kind, list(node.input), layouts.pop())

    return handler


_ONNX_AFFINE_EPSILON = 1e-5


def _onnx_affine(ctx, node, kind: str, constant: str) -> bool:
    """x * s (+ b) with one constant per channel -- how tf2onnx writes an inference BatchNorm -- is a
    batch_norm with moving mean 0, moving variance 1 and gamma = s * sqrt(1 + epsilon) (exact to float rounding)."""
    import numpy as np

    other = [name for name in node.input if name != constant][0]
    value = ctx.values.get(other)
    if value is None:
        return False
    shape = ctx.shapes.get(other)
    channels = (shape[1] if value.layout in (OI.FIRST, OI.FLAT) else shape[-1]) if shape else None
    array = np.asarray(ctx.constants[constant], dtype=np.float64)
    if channels is None or array.size != channels or value.layout == OI.EXPANDED:
        return False
    if (
        value.layout == OI.FIRST
        and array.ndim > 1
        and array.shape[0] != channels
        and array.shape[-1] == channels
    ):
        return False  # a channels-last constant on a channels-first tensor: not per-channel
    vector = array.reshape(-1)
    layer = ctx.builder.layers[-1] if ctx.builder.layers else None
    if (
        kind == "add"
        and layer is not None
        and layer["name"] == value.name
        and layer.get("source", "").endswith("*")
    ):
        beta = OI.flat_order(ctx, other, {"beta": vector.astype(np.float32)})["beta"]
        ctx.tensors[layer["name"]]["beta"] = beta  # completes x * s + b
        layer["source"] = layer["source"][:-1] + f" + {node.name}"
        ctx.alias(node, other)
        return True
    zeros = np.zeros(channels)
    tensors = OI.affine_tensors(
        vector if kind == "multiply" else np.ones(channels),
        zeros if kind == "multiply" else vector,
    )
    tensors = OI.flat_order(ctx, other, tensors)
    ctx.builder.rewrite(
        OI.readable(node),
        f"{node.op_type} by a per-channel constant",
        "batch_norm with moving mean 0 and variance 1",
    )
    ctx.add(node, "batch_norm", [other], value.layout, tensors, flattened_last=value.flattened_last)
    if kind == "multiply":
        ctx.builder.layers[-1]["source"] = (node.name or OI.readable(node)) + " *"
    return True


def _onnx_fold_bias(ctx, node, constant: str) -> bool:
    """MatMul then Add(bias): one dense layer (tf2onnx and some exporters split Gemm this way)."""
    import numpy as np

    other = [name for name in node.input if name != constant][0]
    value = ctx.values.get(other)
    layer = ctx.builder.layers[-1] if ctx.builder.layers else None
    hosts = ("dense", "conv1d", "conv2d", "conv3d", "depthwise_conv2d")
    if value is None or layer is None or layer["name"] != value.name or layer["type"] not in hosts:
        return False
    if layer.get("bias", True) or ctx.consumers.get(other, 0) != 1:
        return False
    bias = np.asarray(ctx.constants[constant]).reshape(-1)
    channels = ctx.shapes.get(other)
    channels = (
        None
        if not channels
        else (channels[1] if value.layout in (OI.FIRST, OI.FLAT) else channels[-1])
    )
    if bias.size != channels:
        return False
    layer.pop("bias")
    ctx.tensors[layer["name"]]["bias"] = bias
    ctx.alias(node, other)
    return True


def _onnx_expand(ctx, node, attrs):
    """A gate expanded to the shape of the map it is merged with (torch's ``y.expand_as(x)``):
    the merges broadcast the gate itself."""
    shape, out = ctx.shapes.get(node.input[0]), ctx.shapes.get(node.output[0])
    users = ctx.users.get(node.output[0], [])
    if (
        shape
        and out
        and len(shape) == len(out)
        and all(d in (1, n) for d, n in zip(shape[1:], out[1:]))
        and users
        and node.output[0] not in ctx.outputs
        and all(user.op_type in _ONNX_MERGES for user in users)
    ):
        ctx.alias(node, node.input[0])
        return
    raise refuse(
        OI.FRAMEWORK,
        OI.where(node),
        f"Expand of a {list(shape or [])} tensor to {list(out or [])}",
        "cnnspec reads an Expand of a gate that element-wise merges (Mul, Add) then read",
    )


_ONNX_MERGES = ("Add", "Sum", "Mul", "Sub", "Max", "Min")
REGISTRY.reads("onnx", "Expand", by="multiply", produces=())(_onnx_expand)
REGISTRY.reads("onnx", "Add", "Sum", by="add", produces=("add", "batch_norm"))(_onnx_binary("add"))
REGISTRY.reads("onnx", "Mul", by="multiply", produces=("multiply", "batch_norm", "layer_scale"))(
    _onnx_binary("multiply")
)
REGISTRY.reads("onnx", "Sub", by="subtract")(_onnx_binary("subtract"))
REGISTRY.reads("onnx", "Max", by="maximum")(_onnx_binary("maximum"))
REGISTRY.reads("onnx", "Min", by="minimum")(_onnx_binary("minimum"))
