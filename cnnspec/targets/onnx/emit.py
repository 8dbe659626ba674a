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

Only ``onnx`` and ``numpy`` are imported: neither torch nor TensorFlow is needed.  The layer
emitters are grouped by family in :data:`EMITTERS`, one function each, reading only the plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from cnnspec.engine.plan import LayerPlan, Plan
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
    """

    proto: object
    weight_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    layer_names: list[str] = field(default_factory=list)


class _Builder:
    """Collects nodes, constants and weight inputs while the layers are emitted."""

    def __init__(self):
        from onnx import helper

        self.helper = helper
        self.nodes: list = []
        self.constants: list = []
        self.weights: dict[str, tuple[int, ...]] = {}
        self._count = 0

    def node(self, op: str, inputs: Sequence[str], output: str, **attributes) -> str:
        self._count += 1
        self.nodes.append(self.helper.make_node(op, list(inputs), [output], name=f"{op}_{self._count}", **attributes))
        return output

    def temp(self, layer: LayerPlan, role: str) -> str:
        return f"{layer.name}/{role}"

    def weight(self, layer: LayerPlan, tensor: str) -> str:
        for param in layer.params:
            if param.name == tensor:
                name = f"{layer.name}.{tensor}"
                self.weights[name] = tuple(param.shape)
                return name
        raise CnnspecError(f"layer '{layer.name}': the plan has no tensor '{tensor}'")

    def constant(self, name: str, values, dtype) -> str:
        from onnx import numpy_helper

        self.constants.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------


def _activation(b: _Builder, layer: LayerPlan, kind: str, source: str, output: str) -> str:
    """A parameter-free activation ``kind`` of ``source`` (softmax over the channel axis)."""
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "hard_swish": "HardSwish"}
    if kind in simple:
        return b.node(simple[kind], [source], output)
    if kind == "relu6":
        low = b.constant(b.temp(layer, "relu6_min"), 0.0, np.float32)
        high = b.constant(b.temp(layer, "relu6_max"), 6.0, np.float32)
        return b.node("Clip", [source, low, high], output)
    if kind == "softmax":
        return b.node("Softmax", [source], output, axis=1)
    if kind == "silu":
        gate = b.node("Sigmoid", [source], b.temp(layer, "silu_gate"))
        return b.node("Mul", [source, gate], output)
    if kind == "hard_sigmoid":
        return b.node("HardSigmoid", [source], output, alpha=1.0 / 6.0, beta=0.5)
    if kind == "gelu":
        approximate = getattr(layer.spec, "approximate", "none") if layer.family == "activation" else "none"
        return _gelu(b, layer, source, output, approximate)
    raise CnnspecError(f"layer '{layer.name}': no ONNX mapping for activation '{kind}'")


def _gelu(b: _Builder, layer: LayerPlan, source: str, output: str, approximate: str) -> str:
    """x·Φ(x): exact 0.5·x·(1 + erf(x/√2)), or the tanh form (Gelu is an op only from opset 20)."""
    half = b.constant(b.temp(layer, "gelu_half"), 0.5, np.float32)
    one = b.constant(b.temp(layer, "gelu_one"), 1.0, np.float32)
    if approximate == "tanh":
        square = b.node("Mul", [source, source], b.temp(layer, "gelu_x2"))
        cube = b.node("Mul", [source, square], b.temp(layer, "gelu_x3"))
        coefficient = b.constant(b.temp(layer, "gelu_c"), 0.044715, np.float32)
        scaled_cube = b.node("Mul", [cube, coefficient], b.temp(layer, "gelu_cx3"))
        inner = b.node("Add", [source, scaled_cube], b.temp(layer, "gelu_in"))
        scale = b.constant(b.temp(layer, "gelu_scale"), math.sqrt(2.0 / math.pi), np.float32)
        core = b.node("Tanh", [b.node("Mul", [inner, scale], b.temp(layer, "gelu_scaled"))], b.temp(layer, "gelu_core"))
    else:
        root2 = b.constant(b.temp(layer, "gelu_sqrt2"), math.sqrt(2.0), np.float32)
        core = b.node("Erf", [b.node("Div", [source, root2], b.temp(layer, "gelu_scaled"))], b.temp(layer, "gelu_core"))
    gate = b.node("Mul", [b.node("Add", [core, one], b.temp(layer, "gelu_1p")), half], b.temp(layer, "gelu_gate"))
    return b.node("Mul", [source, gate], output)


def _with_activation(b: _Builder, layer: LayerPlan, value: str) -> str:
    """Apply the layer's inline activation, the result named like the layer."""
    if layer.activation is None:
        return b.node("Identity", [value], layer.name)
    return _activation(b, layer, layer.activation, value, layer.name)


def _flat_pads(pads) -> list[int]:
    """(before, after) per dim -> ONNX's [x1_begin, x2_begin, ..., x1_end, x2_end]."""
    return [int(before) for before, _ in pads] + [int(after) for _, after in pads]


# --------------------------------------------------------------------------------------
# Layer families
# --------------------------------------------------------------------------------------


def emit_conv(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """conv1d/2d/3d: Conv with per-side pads (asymmetric 'same' included), dilation and groups."""
    weights = [b.weight(layer, "kernel")] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    value = b.node("Conv", [inputs[0], *weights], b.temp(layer, "conv"), kernel_shape=list(layer.kernel_size),
                   strides=list(layer.stride), dilations=list(layer.dilation), pads=_flat_pads(layer.padding),
                   group=layer.spec.groups)
    return _with_activation(b, layer, value)


def emit_depthwise_conv(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """depthwise_conv2d: Conv with one group per input channel."""
    weights = [b.weight(layer, "depthwise_kernel")] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    value = b.node("Conv", [inputs[0], *weights], b.temp(layer, "conv"), kernel_shape=list(layer.kernel_size),
                   strides=list(layer.stride), dilations=list(layer.dilation), pads=_flat_pads(layer.padding),
                   group=layer.input_shape[0])
    return _with_activation(b, layer, value)


def emit_separable_conv(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """separable_conv2d: the depthwise Conv (no bias), then a 1x1 Conv with the bias."""
    depthwise = b.node("Conv", [inputs[0], b.weight(layer, "depthwise_kernel")], b.temp(layer, "depthwise"),
                       kernel_shape=list(layer.kernel_size), strides=list(layer.stride), dilations=list(layer.dilation),
                       pads=_flat_pads(layer.padding), group=layer.input_shape[0])
    weights = [b.weight(layer, "pointwise_kernel")] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    value = b.node("Conv", [depthwise, *weights], b.temp(layer, "pointwise"), kernel_shape=[1, 1])
    return _with_activation(b, layer, value)


def emit_conv_transpose(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """conv_transpose1d/2d/3d: the plan's crop of the full output as pads; extra end cells as output_padding."""
    begins = [before for before, _ in layer.padding]
    ends = [max(after, 0) for _, after in layer.padding]
    extra = [max(-after, 0) for _, after in layer.padding]
    weights = [b.weight(layer, "kernel")] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    value = b.node("ConvTranspose", [inputs[0], *weights], b.temp(layer, "conv_transpose"),
                   kernel_shape=list(layer.kernel_size), strides=list(layer.stride), dilations=list(layer.dilation),
                   pads=begins + ends, output_padding=extra)
    return _with_activation(b, layer, value)


def emit_pool(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """max/avg pools.

    The ceil-mode overhang (``ceil_extra``) becomes more end padding with floor rounding: a
    MaxPool's padding never wins and an AveragePool with ``count_include_pad=0`` never counts
    it.  Padding that an average counts is real zeros from a Pad node in front.
    """
    extra = layer.ceil_extra or (0,) * len(layer.padding)
    source = inputs[0]
    padding = list(layer.padding)
    if layer.type.startswith("max"):
        op = "MaxPool"
        attributes = {}
    else:
        op = "AveragePool"
        attributes = {"count_include_pad": 0}
        if layer.count_include_pad and any(before or after for before, after in padding):
            amounts = [0, 0] + [p for p, _ in padding] + [0, 0] + [p for _, p in padding]
            pads = b.constant(b.temp(layer, "pad_amounts"), amounts, np.int64)
            source = b.node("Pad", [source, pads], b.temp(layer, "padded"), mode="constant")
            padding = [(0, 0)] * len(padding)
    pads = [(before, after + more) for (before, after), more in zip(padding, extra)]
    return b.node(op, [source], layer.name, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  pads=_flat_pads(pads), **attributes)


def emit_global_pool(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """global_avg_pool / global_max_pool; without keepdims the (N, C, 1, ...) result is flattened."""
    op = "GlobalAveragePool" if layer.type == "global_avg_pool" else "GlobalMaxPool"
    if layer.spec.keepdims:
        return b.node(op, [inputs[0]], layer.name)
    pooled = b.node(op, [inputs[0]], b.temp(layer, "pooled"))
    return b.node("Flatten", [pooled], layer.name, axis=1)


def emit_batch_norm(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """batch_norm with the moving statistics (inference); (N, F) inputs too."""
    weights = [b.weight(layer, tensor) for tensor in ("gamma", "beta", "moving_mean", "moving_variance")]
    return b.node("BatchNormalization", [inputs[0], *weights], layer.name, epsilon=float(layer.spec.epsilon))


def emit_dropout(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """dropout / spatial_dropout: the identity at inference."""
    return b.node("Identity", [inputs[0]], layer.name)


def emit_flatten(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """flatten in channels-first order (C, then the spatial dims)."""
    return b.node("Flatten", [inputs[0]], layer.name, axis=1)


def emit_dense(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """dense: Gemm with the (out, in) kernel transposed."""
    weights = [b.weight(layer, "kernel")] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    value = b.node("Gemm", [inputs[0], *weights], b.temp(layer, "gemm"), transB=1)
    return _with_activation(b, layer, value)


def emit_activation(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """Activation layers, leaky_relu and elu with their parameter."""
    if layer.type == "leaky_relu":
        return b.node("LeakyRelu", [inputs[0]], layer.name, alpha=float(layer.spec.negative_slope))
    if layer.type == "elu":
        return b.node("Elu", [inputs[0]], layer.name, alpha=float(layer.spec.alpha))
    return _activation(b, layer, layer.type, inputs[0], layer.name)


def emit_prelu(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """prelu: the (C,) or (1,) slope reshaped to (C, 1, ...) so that it broadcasts over the spatial dims."""
    slope = b.weight(layer, "alpha")
    spatial = len(layer.input_shape) - 1
    if spatial:
        shape = b.constant(b.temp(layer, "slope_shape"), [-1] + [1] * spatial, np.int64)
        slope = b.node("Reshape", [slope, shape], b.temp(layer, "slope"))
    return b.node("PRelu", [inputs[0], slope], layer.name)


def emit_upsample(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """upsample: nearest (each cell repeated) or bilinear with half-pixel centres."""
    scales = b.constant(b.temp(layer, "scales"), [1.0, 1.0, *layer.kernel_size], np.float32)
    if layer.spec.mode == "bilinear":
        attributes = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    else:
        attributes = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    return b.node("Resize", [inputs[0], "", scales], layer.name, **attributes)


def emit_zero_pad(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """zero_pad1d/2d/3d: a constant Pad of the spatial dims."""
    pads = b.constant(b.temp(layer, "pad_amounts"), [0, 0] + [p for p, _ in layer.padding] + [0, 0]
                      + [p for _, p in layer.padding], np.int64)
    return b.node("Pad", [inputs[0], pads], layer.name, mode="constant")


def emit_merge(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """add (left to right, as ``a + b + c``) or concat along the channel axis."""
    if layer.type == "concat":
        return b.node("Concat", inputs, layer.name, axis=1)
    total = inputs[0]
    for position, other in enumerate(inputs[1:], start=1):
        output = layer.name if position == len(inputs) - 1 else b.temp(layer, f"sum{position}")
        total = b.node("Add", [total, other], output)
    return total


def emit_elementwise(b: _Builder, layer: LayerPlan, inputs: list[str]) -> str:
    """add / multiply / subtract / maximum / minimum / average, left to right; inputs of the output's rank
    (a (C, 1, 1) gate broadcasts as in numpy). A flat (C) input needs an unsqueeze: not emitted yet."""
    if any(len(shape) != len(layer.output_shape) for shape in layer.input_shapes):
        raise CnnspecError(f"layer '{layer.name}': no ONNX emission yet for a flat input broadcast over a map")
    if layer.type in ("maximum", "minimum", "average"):
        return b.node({"maximum": "Max", "minimum": "Min", "average": "Mean"}[layer.type], inputs, layer.name)
    operator = {"add": "Add", "multiply": "Mul", "subtract": "Sub"}[layer.type]
    total = inputs[0]
    for position, other in enumerate(inputs[1:], start=1):
        output = layer.name if position == len(inputs) - 1 else b.temp(layer, f"step{position}")
        total = b.node(operator, [total, other], output)
    return total


Emitter = Callable[[_Builder, LayerPlan, list], str]

EMITTERS: dict[str, Emitter] = {
    "conv": emit_conv,
    "conv_transpose": emit_conv_transpose,
    "depthwise_conv": emit_depthwise_conv,
    "separable_conv": emit_separable_conv,
    "pool": emit_pool,
    "global_pool": emit_global_pool,
    "batch_norm": emit_batch_norm,
    "dropout": emit_dropout,
    "flatten": emit_flatten,
    "dense": emit_dense,
    "activation": emit_activation,
    "prelu": emit_prelu,
    "upsample": emit_upsample,
    "zero_pad": emit_zero_pad,
    "merge": emit_merge,
    "elementwise": emit_elementwise,
}


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------


def emit_graph(plan: Plan, *, every_layer: bool = True, batch: int | None = None) -> OnnxGraph:
    """The plan as an ONNX model whose weights are graph inputs.

    Args:
        plan: the resolved spec.
        every_layer: expose every spec layer's output as a graph output (in spec order);
            otherwise only the model's output (the last layer).
        batch: a fixed batch size; default a symbolic ``batch`` dimension.

    Returns:
        The :class:`OnnxGraph`.
    """
    from onnx import TensorProto, helper

    builder = _Builder()
    for layer in plan.layers:
        emit = EMITTERS.get(layer.family)
        if emit is None:
            raise CnnspecError(f"layer '{layer.name}': no ONNX emission for family '{layer.family}'")
        emit(builder, layer, list(layer.inputs))
    batch_dim = BATCH_DIM if batch is None else batch
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch_dim, *plan.input_shape])]
    inputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
               for name, shape in builder.weights.items()]
    exposed = list(plan.layers) if every_layer else [plan.layers[-1]]
    outputs = [helper.make_tensor_value_info(layer.name, TensorProto.FLOAT, [batch_dim, *layer.output_shape])
               for layer in exposed]
    graph = helper.make_graph(builder.nodes, plan.name, inputs, outputs, initializer=builder.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cnnspec")
    model.ir_version = 8  # opset 18's IR; readable by every onnxruntime that runs opset 18
    return OnnxGraph(proto=model, weight_shapes=dict(builder.weights), layer_names=[layer.name for layer in exposed])


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
    for name, shape in graph.weight_shapes.items():  # filled in place: no intermediate TensorProto copies
        tensor = model.graph.initializer.add()
        tensor.name = name
        tensor.data_type = TensorProto.FLOAT
        tensor.dims.extend(shape)
        tensor.raw_data = np.ascontiguousarray(weights[name], dtype="<f4").tobytes()
    return model


def check_weights(graph: OnnxGraph, weights: dict[str, np.ndarray]) -> None:
    """Every weight input has a value of its planned shape (extra names are refused too)."""
    unknown = sorted(set(weights) - set(graph.weight_shapes))
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
    rng = np.random.default_rng(seed)
    constant = {"gamma": 1.0, "beta": 0.0, "moving_mean": 0.0, "moving_variance": 1.0, "alpha": 0.25}
    weights = {}
    fan_in = 1
    for name, shape in graph.weight_shapes.items():
        tensor = name.rpartition(".")[2]
        if tensor in constant:
            weights[name] = np.full(shape, constant[tensor], dtype=np.float32)
            continue
        if tensor.endswith("kernel"):
            fan_in = int(np.prod(shape[1:]))  # conv (O, I/g, *k): I/g·k; transposed (I, O, *k): O·k, as PyTorch
        bound = np.float32(1.0 / np.sqrt(max(fan_in, 1)))  # a bias takes its layer's kernel fan-in
        values = rng.random(shape, dtype=np.float32)
        values *= 2 * bound
        values -= bound
        weights[name] = values
    return weights
