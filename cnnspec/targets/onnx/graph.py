"""Building blocks of the spec's ONNX graph, for the layer definitions' ``onnx`` hooks.

Each layer definition in :mod:`cnnspec.layers` emits its layer as a few ONNX nodes through a
:class:`GraphBuilder` (attached as the layer type's ``onnx`` hook)::

    @REGISTRY.attach("onnx", "identity")
    def identity_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
        return b.node("Identity", [inputs[0]], layer.name)

The hook returns the name of the layer's output, which must be ``layer.name``.  Weights are
graph inputs named ``<layer>.<tensor>`` with the plan's channels-first shapes
(:meth:`GraphBuilder.weight`); fixed values are initializers named ``<layer>/<role>``
(:meth:`GraphBuilder.constant`).  Nothing heavy is imported here (``validate`` loads the layer
modules): numpy and ``onnx`` only when a graph is built.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from cnnspec.engine.plan import LayerPlan
from cnnspec.errors import CnnspecError

_Planned = TypeVar("_Planned")
_PAST_THE_END = 2**63 - 1  # a Slice end past any axis


class GraphBuilder:
    """Collects nodes, constants and weight inputs while the layers are emitted."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list = []
        self.constants: list = []
        self.weights: dict[str, tuple[int, ...]] = {}
        self._count = 0

    def node(self, op: str, inputs: Sequence[str], output: str, **attributes: Any) -> str:
        """Add node ``op`` and return its output's name."""
        self._count += 1
        self.nodes.append(
            self.helper.make_node(
                op, list(inputs), [output], name=f"{op}_{self._count}", **attributes
            )
        )
        return output

    def temp(self, layer: LayerPlan, role: str) -> str:
        """The name of an intermediate value of ``layer``."""
        return f"{layer.name}/{role}"

    def weight(self, layer: LayerPlan, tensor: str) -> str:
        """The graph input holding the plan tensor ``tensor`` of ``layer``."""
        for param in layer.params:
            if param.name == tensor:
                name = f"{layer.name}.{tensor}"
                self.weights[name] = tuple(param.shape)
                return name
        raise CnnspecError(f"layer '{layer.name}': the plan has no tensor '{tensor}'")

    def constant(self, name: str, values: Any, dtype: Any) -> str:
        """An initializer ``name`` holding ``values``."""
        import numpy as np
        from onnx import numpy_helper

        self.constants.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name


def activation(b: GraphBuilder, layer: LayerPlan, kind: str, source: str, output: str) -> str:
    """A parameter-free activation ``kind`` of ``source`` ((log-)softmax over the channel axis)."""
    simple = {
        "relu": "Relu",
        "sigmoid": "Sigmoid",
        "tanh": "Tanh",
        "hard_swish": "HardSwish",
        "mish": "Mish",
        "softplus": "Softplus",
        "selu": "Selu",
    }
    if kind in simple:
        return b.node(simple[kind], [source], output)
    if kind == "relu6":
        low = b.constant(b.temp(layer, "relu6_min"), 0.0, "float32")
        high = b.constant(b.temp(layer, "relu6_max"), 6.0, "float32")
        return b.node("Clip", [source, low, high], output)
    if kind == "softmax":
        return b.node("Softmax", [source], output, axis=1)
    if kind == "log_softmax":
        return b.node("LogSoftmax", [source], output, axis=1)
    if kind == "silu":
        gate = b.node("Sigmoid", [source], b.temp(layer, "silu_gate"))
        return b.node("Mul", [source, gate], output)
    if kind == "hard_sigmoid":
        return b.node("HardSigmoid", [source], output, alpha=1.0 / 6.0, beta=0.5)
    if kind == "gelu":
        approximate = (
            getattr(layer.spec, "approximate", "none") if layer.family == "activation" else "none"
        )
        return gelu(b, layer, source, output, approximate)
    raise CnnspecError(f"layer '{layer.name}': no ONNX mapping for activation '{kind}'")


def gelu(b: GraphBuilder, layer: LayerPlan, source: str, output: str, approximate: str) -> str:
    """x·Φ(x): exact 0.5·x·(1 + erf(x/√2)), or the tanh form (Gelu is an op only from opset 20)."""
    half = b.constant(b.temp(layer, "gelu_half"), 0.5, "float32")
    one = b.constant(b.temp(layer, "gelu_one"), 1.0, "float32")
    if approximate == "tanh":
        square = b.node("Mul", [source, source], b.temp(layer, "gelu_x2"))
        cube = b.node("Mul", [source, square], b.temp(layer, "gelu_x3"))
        coefficient = b.constant(b.temp(layer, "gelu_c"), 0.044715, "float32")
        scaled_cube = b.node("Mul", [cube, coefficient], b.temp(layer, "gelu_cx3"))
        inner = b.node("Add", [source, scaled_cube], b.temp(layer, "gelu_in"))
        scale = b.constant(b.temp(layer, "gelu_scale"), math.sqrt(2.0 / math.pi), "float32")
        core = b.node(
            "Tanh",
            [b.node("Mul", [inner, scale], b.temp(layer, "gelu_scaled"))],
            b.temp(layer, "gelu_core"),
        )
    else:
        root2 = b.constant(b.temp(layer, "gelu_sqrt2"), math.sqrt(2.0), "float32")
        core = b.node(
            "Erf",
            [b.node("Div", [source, root2], b.temp(layer, "gelu_scaled"))],
            b.temp(layer, "gelu_core"),
        )
    gate = b.node(
        "Mul",
        [b.node("Add", [core, one], b.temp(layer, "gelu_1p")), half],
        b.temp(layer, "gelu_gate"),
    )
    return b.node("Mul", [source, gate], output)


def with_activation(b: GraphBuilder, layer: LayerPlan, value: str) -> str:
    """Apply the layer's inline activation, the result named like the layer."""
    if layer.activation is None:
        return b.node("Identity", [value], layer.name)
    return activation(b, layer, layer.activation, value, layer.name)


def planned(layer: LayerPlan, value: _Planned | None, field: str) -> _Planned:
    """``value``, the plan's ``field`` of ``layer``, which the layer's type always sets."""
    if value is None:
        raise CnnspecError(f"layer '{layer.name}': the plan has no {field}")
    return value


def window(layer: LayerPlan) -> dict[str, list[int]]:
    """A convolution's kernel_shape, strides, dilations and per-side pads, as ONNX attributes."""
    return {
        "kernel_shape": list(planned(layer, layer.kernel_size, "kernel_size")),
        "strides": list(planned(layer, layer.stride, "stride")),
        "dilations": list(planned(layer, layer.dilation, "dilation")),
        "pads": flat_pads(planned(layer, layer.padding, "padding")),
    }


def flat_pads(pads: Sequence[tuple[int, int]]) -> list[int]:
    """(before, after) per dim -> ONNX's [x1_begin, x2_begin, ..., x1_end, x2_end]."""
    return [int(before) for before, _ in pads] + [int(after) for _, after in pads]


def spatial_pads(pads: Sequence[tuple[int, int]]) -> list[int]:
    """A Pad node's amounts for (N, C, *spatial): nothing on N and C, (before, after) per spatial dim."""
    return [0, 0] + [int(before) for before, _ in pads] + [0, 0] + [int(after) for _, after in pads]


def per_channel(b: GraphBuilder, layer: LayerPlan, value: str, role: str) -> str:
    """A (C,) tensor reshaped to (C, 1, ...) so that it broadcasts over the layer's spatial dims."""
    spatial = len(layer.input_shape) - 1
    if not spatial:
        return value
    shape = b.constant(b.temp(layer, f"{role}_shape"), [-1] + [1] * spatial, "int64")
    return b.node("Reshape", [value, shape], b.temp(layer, role))


def normalized(
    b: GraphBuilder, layer: LayerPlan, source: str, axes: list[int], epsilon: float
) -> str:
    """(x - mean) / sqrt(var + eps) over ``axes`` (biased variance, as every framework at inference)."""
    axes_name = b.constant(b.temp(layer, "norm_axes"), axes, "int64")
    mean = b.node("ReduceMean", [source, axes_name], b.temp(layer, "mean"), keepdims=1)
    centred = b.node("Sub", [source, mean], b.temp(layer, "centred"))
    square = b.node("Mul", [centred, centred], b.temp(layer, "square"))
    variance = b.node("ReduceMean", [square, axes_name], b.temp(layer, "variance"), keepdims=1)
    eps = b.constant(b.temp(layer, "epsilon"), float(epsilon), "float32")
    spread = b.node(
        "Sqrt",
        [b.node("Add", [variance, eps], b.temp(layer, "variance_eps"))],
        b.temp(layer, "std"),
    )
    return b.node("Div", [centred, spread], b.temp(layer, "normalized"))


def affine(b: GraphBuilder, layer: LayerPlan, value: str, gamma: bool, beta: bool) -> str:
    """value * gamma + beta with the layer's per-channel weights (those it has), named like the layer."""
    if gamma:
        scale = per_channel(b, layer, b.weight(layer, "gamma"), "gamma")
        value = b.node("Mul", [value, scale], layer.name if not beta else b.temp(layer, "scaled"))
    if beta:
        value = b.node(
            "Add", [value, per_channel(b, layer, b.weight(layer, "beta"), "beta")], layer.name
        )
    if not (gamma or beta):
        value = b.node("Identity", [value], layer.name)
    return value


def spatial_slice(
    b: GraphBuilder, layer: LayerPlan, source: str, sides: Sequence[tuple[int, int]]
) -> str:
    """Slice off (before, after) cells of every spatial dim."""
    sizes = layer.input_shape[1:]
    starts = b.constant(b.temp(layer, "starts"), [before for before, _ in sides], "int64")
    if layer.is_open:  # counted from the end: the same cells at every size
        last = [-after if after else _PAST_THE_END for _, after in sides]
    else:
        last = [size - after for size, (_, after) in zip(sizes, sides)]
    ends = b.constant(b.temp(layer, "ends"), last, "int64")
    axes = b.constant(b.temp(layer, "axes"), list(range(2, 2 + len(sides))), "int64")
    return b.node("Slice", [source, starts, ends, axes], layer.name)


# -- layers whose input size is open: sizes read from the tensor at run time -------------


def spatial_sizes(
    b: GraphBuilder, layer: LayerPlan, source: str, role: str = "spatial_sizes"
) -> str:
    """The spatial sizes of ``source`` at run time, an int64 vector (for layers of open size)."""
    return b.node("Shape", [source], b.temp(layer, role), start=2)


def same_pad(
    b: GraphBuilder, layer: LayerPlan, source: str, value: float | None = None, role: str = "same"
) -> str:
    """A Pad node giving ``source`` the 'same' padding of ``layer`` computed from its run-time size.

    Per axis of length n: total = max((⌈n / s⌉ − 1)·s + d·(k − 1) + 1 − n, 0), the smaller half
    before and the rest after (TensorFlow's 'same', the plan's rule).  ``value`` fills the padding
    (default zero; −inf in front of a max pool, where padding must never win).
    """
    kernel = planned(layer, layer.kernel_size, "kernel_size")
    stride = planned(layer, layer.stride, "stride")
    dilation = layer.dilation or (1,) * len(kernel)
    reach = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]

    def const(name: str, values: Sequence[int]) -> str:
        return b.constant(b.temp(layer, name), list(values), "int64")

    def op(kind: str, operands: Sequence[str], name: str) -> str:
        return b.node(kind, list(operands), b.temp(layer, name))

    n = spatial_sizes(b, layer, source, f"{role}_sizes")
    strides = const(f"{role}_strides", stride)
    out = op(
        "Div",
        [
            op("Add", [n, const(f"{role}_round_up", [s - 1 for s in stride])], f"{role}_n_up"),
            strides,
        ],
        f"{role}_out",
    )
    span = op(
        "Add",
        [
            op(
                "Mul",
                [op("Sub", [out, const(f"{role}_one", [1])], f"{role}_out_less_one"), strides],
                f"{role}_starts",
            ),
            const(f"{role}_reach", reach),
        ],
        f"{role}_span",
    )
    total = op(
        "Max", [op("Sub", [span, n], f"{role}_excess"), const(f"{role}_zero", [0])], f"{role}_total"
    )
    before = op("Div", [total, const(f"{role}_two", [2])], f"{role}_before")
    after = op("Sub", [total, before], f"{role}_after")
    nothing = const(f"{role}_nothing", [0, 0])
    amounts = b.node(
        "Concat", [nothing, before, nothing, after], b.temp(layer, f"{role}_pads"), axis=0
    )
    operands = [source, amounts]
    if value is not None:
        operands.append(b.constant(b.temp(layer, f"{role}_pad_value"), value, "float32"))
    return b.node("Pad", operands, b.temp(layer, f"{role}_padded"), mode="constant")


def conv_window(b: GraphBuilder, layer: LayerPlan, source: str) -> tuple[str, dict[str, Any]]:
    """A convolution's input and window attributes; an open-size 'same' layer pads at run time:
    ``auto_pad=SAME_UPPER`` where onnxruntime's rule is the plan's (no dilation, no kernel under its
    stride: measured in tests/test_verify_sizes.py; it refuses dilations and takes a negative
    padding for a smaller kernel), else a Pad node from the run-time size."""
    attributes: dict[str, Any] = dict(window(layer))
    if layer.is_open and layer.padding_mode == "same":
        del attributes["pads"]
        kernel, strides = attributes["kernel_shape"], attributes["strides"]
        if all(d == 1 for d in attributes["dilations"]) and all(
            k >= s for k, s in zip(kernel, strides)
        ):
            attributes["auto_pad"] = "SAME_UPPER"
        else:
            source = same_pad(b, layer, source)
    return source, attributes
