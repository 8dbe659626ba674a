"""The plan as an ONNX graph, channels-first, with standard opset-18 ops only.

Every spec layer becomes a few ONNX nodes whose last output is named like the layer, so the
graph can expose every layer's output.  The weights are named ``<layer>.<tensor>`` after the
plan's :class:`~cnnspec.engine.plan.ParamTensor` names (``conv1.kernel``, ``bn.moving_mean``)
and have the plan's channels-first shapes, which are also ONNX's layouts::

    conv, pointwise   (O, I/g, *k)   Conv W
    conv transpose    (I, O, *k)     ConvTranspose W
    depthwise         (C*m, 1, *k)   Conv W with group = C
    dense             (out, in)      Gemm B with transB = 1
    batch norm        (C,) each      BatchNormalization scale, B, input_mean, input_var
    prelu             (C,) or (1,)   PRelu slope (reshaped to broadcast over the spatial dims)

:func:`emit_graph` makes the graph with the weights as graph inputs (what the verifier feeds
at run time); :func:`attach_weights` turns them into initializers for a deployable file.

Only ``onnx`` and ``numpy`` are imported: neither torch nor TensorFlow is needed.  Each layer
type's nodes come from its definition in :mod:`cnnspec.layers` (its ``onnx`` hook, built with
:class:`cnnspec.targets.onnx.graph.GraphBuilder`, reading only the plan); a type without one
is refused as a whole, naming the types (:class:`OnnxUnsupported`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from cnnspec.engine.plan import Plan
from cnnspec.errors import CnnspecError

OPSET = 18
INPUT_NAME = "input"
BATCH_DIM = "batch"


@dataclass
class OnnxGraph:
    """An emitted ONNX model.

    Attributes:
        proto: the ``onnx.ModelProto``; the weights are graph inputs after ``input``.
        weight_shapes: every weight input's shape by name, in graph order.
        layer_names: the spec layers exposed as graph outputs, in spec order.
        unread: plan tensors the graph does not read (a Keras adapt count); accepted and ignored.
    """

    proto: object
    weight_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    layer_names: list[str] = field(default_factory=list)
    unread: frozenset[str] = frozenset()


class OnnxUnsupported(CnnspecError):
    """The spec has layer types without an ONNX emission (the message names them)."""


def _emission(layer_type: str) -> Callable[..., str] | None:
    from cnnspec.layers import REGISTRY

    return REGISTRY.hook("onnx", layer_type)


def unsupported_types(plan: Plan) -> list[str]:
    """The spec's layer types that have no ONNX emission (``onnx`` hook), in spec order."""
    missing: dict[str, None] = {}
    for layer in plan.layers:
        if _emission(layer.type) is None:
            missing.setdefault(layer.type, None)
    return list(missing)


def require_emission(plan: Plan) -> None:
    """Raise :class:`OnnxUnsupported` naming the spec's types that have no ONNX emission."""
    missing = unsupported_types(plan)
    if missing:
        raise OnnxUnsupported(f"no ONNX emission for type(s) {', '.join(missing)}")


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


def emit_graph(
    plan: Plan, *, every_layer: bool = True, batch: int | None = None, open_size: bool = False
) -> OnnxGraph:
    """The plan as an ONNX model whose weights are graph inputs.

    Args:
        plan: the resolved spec.
        every_layer: expose every spec layer's output as a graph output (in spec order);
            otherwise only the model's output (the last layer).
        batch: a fixed batch size; default a symbolic ``batch`` dimension.
        open_size: give the spec's open axes symbolic dimensions (``H``, ``W``; a layer's
            output its size formula, ``⌈H / 2⌉``) instead of the plan's numbers.  Layers of
            open size compute their padding and windows from the run-time size either way;
            :func:`size_dependent_layer` says whether the whole graph does.

    Returns:
        The :class:`OnnxGraph`.
    """
    from onnx import TensorProto, helper

    from cnnspec.targets.onnx.graph import GraphBuilder

    require_emission(plan)
    builder = GraphBuilder()
    for layer in plan.layers:
        emission = _emission(layer.type)
        assert emission is not None, (
            "require_emission refuses a plan with a type that has no emission"
        )
        output = emission(builder, layer, list(layer.inputs))
        if output != layer.name:
            raise CnnspecError(
                f"layer '{layer.name}': its ONNX emission returned '{output}', not the layer's name"
            )
    batch_dim = BATCH_DIM if batch is None else batch
    open_size = open_size and plan.is_open
    input_dims: list[int | str] = [*plan.input_shape]
    if open_size:
        input_dims[1:] = [
            size.text() if not size.is_fixed else n
            for size, n in zip(plan.input_sizes, plan.input_shape[1:])
        ]
    inputs = [
        helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch_dim, *input_dims])
    ]
    inputs += [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
        for name, shape in builder.weights.items()
    ]
    exposed = list(plan.layers) if every_layer else [plan.layers[-1]]
    outputs = [
        helper.make_tensor_value_info(
            layer.name,
            TensorProto.FLOAT,
            [batch_dim, *(_open_dims(layer) if open_size else layer.output_shape)],
        )
        for layer in exposed
    ]
    graph = helper.make_graph(
        builder.nodes, plan.name, inputs, outputs, initializer=builder.constants
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cnnspec"
    )
    model.ir_version = 8  # opset 18's IR; readable by every onnxruntime that runs opset 18
    tensors = {f"{layer.name}.{param.name}" for layer in plan.layers for param in layer.params}
    return OnnxGraph(
        proto=model,
        weight_shapes=dict(builder.weights),
        layer_names=[layer.name for layer in exposed],
        unread=frozenset(tensors - set(builder.weights)),
    )


def _open_dims(layer) -> list[int | str | None]:
    """A layer's output dimensions when the input size is open: formulas where the size varies."""
    shape = list(layer.output_shape)
    if len(shape) == 1:
        return [None] if layer.is_open and layer.holds_flattened_map else shape
    return [
        shape[0],
        *(n if size.is_fixed else size.text() for size, n in zip(layer.sizes, shape[1:])),
    ]


#: How far from the planning size :func:`size_dependent_layer` looks (odd, even, past strides of 32).
_PROBE_STEPS = (1, 2, 3, 5, 8, 13, 33, 70)


def size_dependent_layer(plan: Plan) -> str | None:
    """The first layer whose ONNX nodes change with the input size, or None.

    The graph is emitted at the planning size and at sizes around it on the open axes; where
    every emission has the same nodes and constants, the graph computes every size from the
    tensor at run time and can take any input size.  Always None for a fixed-size spec.
    """
    from cnnspec.engine.plan import resolve
    from cnnspec.errors import SpecError

    if not plan.is_open:
        return None
    reference = emit_graph(plan)
    base = tuple(plan.input_shape[1:])
    # a different step per axis too, so that no two axes move together
    probes = [
        tuple(
            n + step + (axis if step < 8 else 0) if is_open else n
            for axis, (n, is_open) in enumerate(zip(base, plan.open_axes))
        )
        for step in _PROBE_STEPS
    ]
    for size in probes:
        try:
            other = resolve(plan.spec, input_size=size)
        except SpecError:  # a size the spec does not take says nothing about the graph
            continue
        differing = _first_difference(reference, emit_graph(other))
        if differing is not None:
            return differing
    return None


def _first_difference(first: OnnxGraph, second: OnnxGraph) -> str | None:
    """The layer of the first node or constant that differs between two emissions of one spec."""
    first_nodes = first.proto.graph.node  # type: ignore[attr-defined]
    second_nodes = second.proto.graph.node  # type: ignore[attr-defined]
    for one, other in zip(first_nodes, second_nodes):
        if _node_bytes(one) != _node_bytes(other):
            return one.output[0].split("/")[0]
    if len(first_nodes) != len(second_nodes):
        longer = max(first_nodes, second_nodes, key=len)
        return longer[min(len(first_nodes), len(second_nodes))].output[0].split("/")[0]
    first_constants = first.proto.graph.initializer  # type: ignore[attr-defined]
    constants = {tensor.name: tensor.SerializeToString() for tensor in first_constants}
    for tensor in second.proto.graph.initializer:  # type: ignore[attr-defined]
        if constants.get(tensor.name) != tensor.SerializeToString():
            return tensor.name.split("/")[0]
    return None


def _node_bytes(node) -> bytes:
    from onnx import NodeProto

    copy = NodeProto()
    copy.CopyFrom(node)
    copy.ClearField("name")
    return copy.SerializeToString()


def attach_weights(graph: OnnxGraph, weights: dict[str, np.ndarray]):
    """A copy of the model with the weights as initializers instead of graph inputs.

    Args:
        graph: from :func:`emit_graph`.
        weights: every weight input's value by name, in the plan's channels-first layout.

    Raises:
        CnnspecError: a weight is missing or has the wrong shape.
    """
    import onnx
    from onnx import TensorProto

    check_weights(graph, weights)
    model = onnx.ModelProto()
    model.CopyFrom(graph.proto)
    kept = [value for value in model.graph.input if value.name not in graph.weight_shapes]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    for (
        name,
        shape,
    ) in graph.weight_shapes.items():  # filled in place: no intermediate TensorProto copies
        tensor = model.graph.initializer.add()
        tensor.name = name
        tensor.data_type = TensorProto.FLOAT
        tensor.dims.extend(shape)
        tensor.raw_data = np.ascontiguousarray(weights[name], dtype="<f4").tobytes()
    return model


def check_weights(graph: OnnxGraph, weights: dict[str, np.ndarray]) -> None:
    """Every weight input has a value of its planned shape (extra names are refused too)."""
    unknown = sorted(set(weights) - set(graph.weight_shapes) - graph.unread)
    if unknown:
        raise CnnspecError(f"weights for tensors the spec does not have: {', '.join(unknown)}")
    for name, shape in graph.weight_shapes.items():
        if name not in weights:
            raise CnnspecError(f"no value for weight '{name}' {list(shape)}")
        if tuple(np.shape(weights[name])) != shape:
            actual = list(np.shape(weights[name]))
            raise CnnspecError(f"weight '{name}' has shape {actual}, the spec says {list(shape)}")


def initial_weights(graph: OnnxGraph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded initial weights with PyTorch's default initialisation of a fresh model.

    Kernels and biases ~ U(-b, b) with b = 1/sqrt(fan_in) (PyTorch's bound for conv and linear
    layers), BatchNorm gamma 1, beta 0, moving mean 0, moving variance 1, PReLU slopes 0.25.
    """
    return dict(initial_tensors(graph, seed))


def initial_tensors(graph: OnnxGraph, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """:func:`initial_weights` one ``(name, values)`` at a time, in ``graph.weight_shapes`` order.

    Each tensor is drawn from its own stream, numbered by its place in the graph, so two
    threads draw them (numpy releases the GIL) while the caller consumes them in order, and
    the values do not depend on which thread drew what.
    """
    from concurrent.futures import ThreadPoolExecutor

    constant = {
        "gamma": 1.0,
        "beta": 0.0,
        "moving_mean": 0.0,
        "moving_variance": 1.0,
        "alpha": 0.25,
        "mean": 0.0,
        "variance": 1.0,
        "count": 0.0,
    }
    # Per tensor: (shape, constant value, uniform bound or None for a constant).
    fills: list[tuple[tuple[int, ...], float, float | None]] = []
    fan_in = 1
    for name, shape in graph.weight_shapes.items():
        tensor = name.rpartition(".")[2]
        if tensor in constant:
            fills.append((shape, constant[tensor], None))
            continue
        if tensor.endswith("kernel"):
            # conv (O, I/g, *k): I/g·k; transposed (I, O, *k): O·k, as PyTorch
            fan_in = math.prod(shape[1:])
        # a bias takes its layer's kernel fan-in
        fills.append((shape, 0.0, 1.0 / math.sqrt(max(fan_in, 1))))

    def draw(position: int) -> np.ndarray:
        shape, value, bound = fills[position]
        if bound is None:
            return np.full(shape, value, dtype=np.float32)
        values = np.random.default_rng([seed, position]).random(shape, dtype=np.float32)
        values *= np.float32(2 * bound)
        values -= np.float32(bound)
        return values

    with ThreadPoolExecutor(2) as drawers:
        yield from zip(graph.weight_shapes, drawers.map(draw, range(len(fills))))
