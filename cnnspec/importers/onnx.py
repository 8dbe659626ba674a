"""``from_onnx``: an ONNX model (a file or ``onnx.ModelProto``) -> ModelSpec, weights from its initializers.

Graphs as torch.onnx writes them (NCHW) and as tf2onnx writes them (NHWC, with ``Transpose`` nodes
around the channels-first ops) are read.  Every tensor's layout is tracked -- channels first,
channels last, or flat (remembering whether it was flattened channels-last) -- so a ``Transpose``
pair is an alias, an element-wise op works in either layout, and a dense layer after a
channels-last flatten gets its rows put in the spec's channels-first order.  Every ONNX op type
a layer type reads is claimed by its definition (``REGISTRY.reads("onnx", ...)`` in
``cnnspec/layers/<type>.py``) with a reader ``(ctx, node, attrs)``; this module holds the walk,
the layout tracking (``Transpose``, and the ``Unsqueeze`` / ``Squeeze`` that run a 1-D map in 2-D,
are plumbing, not layers) and the helpers readers share.  Node names become layer names
(``/layer1/layer1.0/conv1/Conv`` -> ``layer1_0_conv1``, the node name kept in ``source``).

Before the claimed readers, patterns the exporters write as several nodes are tried, each checked
on data rather than on node names: point-wise functions (GELU, SiLU, hard swish, ``x * a + b`` ...,
:func:`_pointwise_function`), normalisations written with their mean and variance
(:func:`_moments`) and nearest upsampling written as data movement (:func:`_repeat_upsample`) are
evaluated with onnx's reference evaluator on probe inputs and compared with each candidate layer.
Structural patterns that start at a claimed op (torch's GroupNorm and channel-shuffle chains after a
``Reshape``, Keras' Dense on a map) are tried by that op's reader in its layer module.  Shapes
torch.onnx computes from ``Shape`` nodes are inferred with the batch fixed
(:meth:`_Context._infer_through_shapes`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnnspec.importers.common import (
    ImportResult,
    SpecBuilder,
    compact,
    compact_padding,
    refuse,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

FRAMEWORK = "onnx node"
FIRST, LAST, FLAT = "channels_first", "channels_last", "flat"


#: Layer types whose output has their (first) input's shape.
SHAPE_KEEPING = {
    "add", "multiply", "subtract", "maximum", "minimum", "average", "relu", "relu6", "sigmoid",
    "tanh", "silu", "hard_swish", "hard_sigmoid", "leaky_relu", "elu", "gelu", "prelu", "softmax",
    "batch_norm", "layer_norm", "group_norm", "instance_norm", "layer_scale", "scale", "rescale",
    "channel_shuffle", "identity",
}  # fmt: skip


#: A flat (N, C) vector reshaped to (N, C, 1, ...) or (N, 1, ..., C) so that it broadcasts over a feature
#: map (an SE gate after a Keras Reshape((1, 1, C))): the spec keeps it flat; only element-wise layers read it.
EXPANDED = "expanded"


class _Tensor:
    """A graph value that is a spec layer's output: its spec name, layout, for flat values the
    channels-last shape it was flattened from (None when flattened channels-first), and for a 1-D
    feature map given a singleton axis (tf2onnx runs Keras' 1-D layers as 2-D ones) that axis."""

    def __init__(
        self,
        name: str,
        layout: str,
        flattened_last: tuple | None = None,
        lifted: int | None = None,
    ):
        self.name = name
        self.layout = layout
        self.flattened_last = flattened_last
        self.lifted = lifted


class _Context:
    def __init__(self, proto):

        from onnx import TensorProto, numpy_helper, shape_inference

        self.proto = proto
        try:
            inferred = shape_inference.infer_shapes(proto)
        except Exception:  # noqa: BLE001 - inference is a help, not a requirement
            inferred = proto
        graph = inferred.graph
        self.constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        self.initializers = set(self.constants)
        self.shapes: dict[str, tuple] = {}
        self.integers: set[str] = set()  # integer tensors: sizes and shapes, never a layer's data
        for value in list(graph.input) + list(graph.value_info) + list(graph.output):
            dims = value.type.tensor_type.shape.dim
            self.shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in dims
            )
            if value.type.tensor_type.elem_type in (TensorProto.INT64, TensorProto.INT32):
                self.integers.add(value.name)
        self.values: dict[str, _Tensor] = {}
        self.builder = SpecBuilder("onnx")
        self.tensors: dict[str, dict[str, np.ndarray]] = {}
        self.consumers: dict[str, int] = {}
        self.users: dict[str, list] = {}
        self.producers: dict[str, Any] = {}
        for node in proto.graph.node:  # the walked graph's own node objects
            self.producers.update((name, node) for name in node.output)
            for name in node.input:
                self.consumers[name] = self.consumers.get(name, 0) + 1
                self.users.setdefault(name, []).append(node)
            if node.op_type == "Constant":
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        self.outputs = {value.name for value in graph.output}
        self.position = {node.output[0]: i for i, node in enumerate(proto.graph.node)}
        self.padded: dict[str, tuple[str, list]] = {}  # Pad(-inf) output -> (its input, pads)
        self.padded_layout: dict[str, str] = {}  # ... and the layout the pool reads it in
        self.consumed: set[str] = set()  # first outputs of nodes a pattern already read
        self.produced: dict[str, tuple[str, str]] = {}  # spec layer -> (ONNX value, its layout)
        self.node = None
        self.input_rank = 0
        self.input_layout = FIRST
        self._infer_through_shapes()

    def _read_shapes(self, graph) -> None:
        for value in list(graph.input) + list(graph.value_info) + list(graph.output):
            dims = value.type.tensor_type.shape.dim
            self.shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else None for d in dims
            )

    def _infer_with_batch(self, proto) -> None:
        """Shapes inferred with the batch fixed at 1 (data propagated through Shape nodes), read back
        with the graph's own batch on every float tensor."""
        from onnx import ModelProto, TensorProto, shape_inference

        copy = ModelProto()
        copy.CopyFrom(proto)
        inputs = [value for value in copy.graph.input if value.name not in self.initializers]
        batch = None
        for value in inputs:
            dims = value.type.tensor_type.shape.dim
            if dims and not dims[0].HasField("dim_value"):
                dims[0].dim_value = 1
            elif dims:
                batch = dims[0].dim_value
        try:
            graph = shape_inference.infer_shapes(copy, data_prop=True).graph
        except Exception:  # noqa: BLE001 - inference is a help, not a requirement
            return
        for value in list(graph.value_info) + list(graph.output) + list(graph.input):
            tensor = value.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
            if tensor.elem_type == TensorProto.FLOAT and len(dims) >= 2:
                dims = (batch, *dims[1:])
            known = self.shapes.get(value.name)
            if known is None or sum(d is None for d in dims) < sum(d is None for d in known):
                self.shapes[value.name] = dims

    def _infer_through_shapes(self) -> None:
        """Values computed from constants only (a Pad's pads) and bounds and sizes torch.onnx computes
        from Shape nodes (x.chunk, x.view(n, c // 2, ...)) that do not depend on the batch become
        constants, and shapes are inferred again.  A Reshape target that mixes the batch with
        sizes shape inference cannot propagate (torchvision's channel shuffle exported with a
        dynamic batch: ``C // groups`` as Shape -> Gather -> Div -> Cast) is evaluated at batch 1
        for that inference, which runs at batch 1, and kept out of the constants."""
        import numpy as np
        from onnx import ModelProto, numpy_helper

        self._infer_with_batch(self.proto)
        found: dict[str, np.ndarray] = {}
        at_batch_one: dict[str, np.ndarray] = {}
        for _ in range(64):  # each round may open the next: ShuffleNet's units resolve one by one
            before = len(found) + len(at_batch_one)
            for node in self.proto.graph.node:
                if node.op_type == "Constant" or node.output[0] in self.constants:
                    continue
                if _fold_constant(self, node):
                    found.update((name, self.constants[name]) for name in node.output)
                elif node.op_type in SHAPE_INPUTS:
                    for name in node.input[1:]:
                        if not name or name in self.constants or name in at_batch_one:
                            continue
                        value = static_ints(self, name)
                        if value is not None:
                            self.constants[name] = found[name] = np.asarray(value, np.int64)
                        elif (
                            node.op_type == "Reshape"
                            and None in self.shapes.get(node.output[0], (None, None))[1:]
                        ):
                            value = shape_value(self, name, batch=1)
                            if value is not None:
                                at_batch_one[name] = np.asarray(value, np.int64)
            if len(found) + len(at_batch_one) == before:
                return
            fed = {**at_batch_one, **found}
            copy = ModelProto()
            copy.CopyFrom(self.proto)
            for node in copy.graph.node:
                for index, name in enumerate(node.input):
                    if name in fed:
                        node.input[index] = name + "__cnnspec_static"
            for name, array in fed.items():
                copy.graph.initializer.append(
                    numpy_helper.from_array(np.asarray(array), name + "__cnnspec_static")
                )
            self._infer_with_batch(copy)

    def value(self, name: str) -> _Tensor:
        if name not in self.values:
            raise refuse(
                FRAMEWORK,
                where(self.node),
                f"reads '{name}', which is neither a layer output nor supported here",
            )
        return self.values[name]

    def constant(self, name: str, what: str):
        if name not in self.constants:
            raise refuse(
                FRAMEWORK,
                where(self.node),
                f"its {what} '{name}' is computed, not a constant initializer",
                "cnnspec reads weights from initializers",
            )
        return self.constants[name]

    def add(
        self,
        node,
        layer_type: str,
        inputs: list[str],
        layout: str,
        tensors: dict | None = None,
        flattened_last: tuple | None = None,
        output: str | None = None,
        lifted: int | None = None,
        **fields,
    ) -> str:
        original = readable(node)
        name = self.builder.add(
            original,
            layer_type,
            [self.value(i).name for i in inputs],
            source=node.name or None,
            **fields,
        )
        output = output or node.output[0]
        self._fill_shape(layer_type, inputs, output, layout, fields)
        if lifted is None and layer_type in SHAPE_KEEPING:
            lifts = {self.values[i].lifted for i in inputs if i in self.values}
            lifted = lifts.pop() if len(lifts) == 1 else None
        self.values[output] = _Tensor(name, layout, flattened_last, lifted)
        self.produced[name] = (output, layout)
        if tensors:
            self.tensors[name] = tensors
        return name

    def _fill_shape(
        self, layer_type: str, inputs: list[str], output: str, layout: str, fields
    ) -> None:
        """Shapes inference left open (Slice bounds computed from Shape nodes), worked out here."""
        known = self.shapes.get(output)
        if known and None not in known[1:]:
            return
        shapes = [self.shapes.get(name) or () for name in inputs]
        if not shapes or any(not shape or None in shape[1:] for shape in shapes):
            return
        first = list(shapes[0])
        channel = len(first) - 1 if layout == LAST else 1
        if layer_type == "concat":
            first[channel] = sum(shape[channel] for shape in shapes)
        elif layer_type == "channel_slice":
            first[channel] = fields["stop"] - fields["start"]
        elif layer_type not in SHAPE_KEEPING:
            return
        self.shapes[output] = tuple(first)

    def only_user(self, name: str):
        """The one node reading ``name`` (None if several read it, or it is a graph output)."""
        users = self.users.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def alias(
        self, node, source: str, layout: str | None = None, flattened_last: tuple | None = None
    ) -> None:
        value = self.value(source)
        alias = _Tensor(
            value.name,
            layout or value.layout,
            flattened_last if layout else value.flattened_last,
            value.lifted,
        )
        self.values[node.output[0]] = alias
        if value.name in self.produced and alias.layout != EXPANDED:
            self.produced[value.name] = (node.output[0], alias.layout)


def readable(node) -> str:
    """``/layer1/layer1.0/conv1/Conv`` -> ``layer1.0.conv1``; other names are kept as they are."""
    name = node.name or f"{node.op_type.lower()}_{node.output[0]}"
    if name.startswith(f"{node.op_type}__") and name[len(node.op_type) + 2 :].isdigit():
        # tf2onnx's optimiser renamed the node (Conv__17); its weights keep the Keras layer's scope
        for weight in node.input[1:]:
            keras_name = _keras_scope(weight)
            if keras_name:
                return keras_name
    return _keras_scope(name) or _torch_path(node, name)


def _keras_scope(name: str) -> str | None:
    """``model_1/layer_1/op`` -> ``layer`` (tf2onnx; Keras 3 names each call's scope with a _1)."""
    parts = [part for part in name.strip("/").split("/") if part]
    if len(parts) >= 3 and (
        parts[0].startswith(("functional", "model", "sequential")) or parts[0].endswith("_1")
    ):
        return parts[1].removesuffix("_1")
    return None


def _torch_path(node, name: str) -> str:
    parts = [part for part in name.strip("/").split("/") if part]
    if len(parts) > 1 and parts[-1].split("_")[0] == node.op_type:
        parts = parts[:-1]
    path = parts[0] if parts else node.op_type.lower()
    for part in parts[1:]:
        head, _, last = path.rpartition(".")
        if part.startswith(path + "."):  # torch scopes repeat the parent: layer1 / layer1.0
            path = part
        elif part.split(".")[0] == last and "." in part:  # conv / conv.0 -> ... .conv.0
            path = f"{head}.{part}" if head else part
        else:
            path = f"{path}.{part}"
    return path


def where(node) -> str:
    if node is None:
        return "graph"
    return f"'{node.name or node.output[0]}' ({node.op_type})"


def attributes(node) -> dict[str, Any]:
    from onnx import helper

    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def decode(value):
    return value.decode() if isinstance(value, bytes) else value


def require(ctx, name: str, layout: str, what: str) -> None:
    if ctx.value(name).layout != layout:
        raise refuse(
            FRAMEWORK,
            where(ctx.node),
            f"{what} on a {ctx.value(name).layout} tensor",
            "channels-last graphs must wrap these ops in Transpose nodes, as tf2onnx does",
        )


def padding_of(attrs, rank: int, node, key: str = "pads"):
    auto = decode(attrs.get("auto_pad", "NOTSET"))
    if auto in ("SAME_UPPER",):
        return "same"
    if auto == "VALID":
        return "valid"
    if auto == "SAME_LOWER":
        raise refuse(
            FRAMEWORK,
            where(node),
            "auto_pad SAME_LOWER (the odd cell first)",
            "SAME_UPPER is spec padding 'same'",
        )
    pads = list(attrs.get(key, [0] * (2 * rank)))
    pairs = [(pads[i], pads[i + rank]) for i in range(rank)]
    return "valid" if not any(any(pair) for pair in pairs) else compact_padding(pairs)


# ----------------------------------------------------------------------------------------------
# Layout plumbing and the helpers the readers in cnnspec/layers share
# ----------------------------------------------------------------------------------------------


def flat_order(ctx, source: str, tensors: dict) -> dict:
    """Per-feature vectors read on a channels-last flatten, put in the spec's channels-first order."""
    import numpy as np

    value = ctx.values.get(source)
    if value is None or value.flattened_last is None:
        return tensors
    index = np.moveaxis(
        np.arange(int(np.prod(value.flattened_last))).reshape(value.flattened_last), -1, 0
    ).reshape(-1)
    return {
        key: array[index] if array.ndim == 1 else array[:, index] for key, array in tensors.items()
    }


def _transpose(ctx, node, attrs):
    perm = list(attrs.get("perm", []))
    if ctx.padded_layout.get(node.input[0]) == FIRST:  # Pad(-inf) in NHWC, then NCHW MaxPool
        ctx.padded[node.output[0]] = ctx.padded[node.input[0]]
        return
    rank = len(perm)
    to_first = [0, rank - 1, *range(1, rank - 1)]
    to_last = [0, *range(2, rank), 1]
    value = ctx.value(node.input[0])
    if perm == to_first and value.layout == LAST:
        ctx.alias(node, node.input[0], FIRST)
    elif perm == to_last and value.layout == FIRST:
        ctx.alias(node, node.input[0], LAST)
    else:
        from cnnspec.layers.channel_conv import onnx_channel_conv

        if onnx_channel_conv(ctx, node):
            return
        raise refuse(
            FRAMEWORK,
            where(node),
            f"Transpose {perm} of a {value.layout} tensor",
            "only the layout changes NHWC <-> NCHW that tf2onnx inserts are supported",
        )
    if value.lifted is not None:  # the added axis of a 1-D map moves with the others
        ctx.values[node.output[0]].lifted = perm.index(value.lifted)


def _axes_input(ctx, node, attrs) -> list[int] | None:
    import numpy as np

    if "axes" in attrs:
        return list(attrs["axes"])
    if len(node.input) > 1 and node.input[1] in ctx.constants:
        return [int(a) for a in np.asarray(ctx.constants[node.input[1]]).reshape(-1)]
    return None


def _lift(ctx, node, attrs) -> bool:
    """A 1-D feature map given a singleton spatial axis (tf2onnx's ExpandDims before a 2-D op)."""
    value = ctx.values.get(node.input[0])
    shape = ctx.shapes.get(node.input[0])
    axes = _axes_input(ctx, node, attrs)
    if value is None or value.layout not in (FIRST, LAST) or value.lifted is not None:
        return False
    if not shape or len(shape) != 3 or axes is None or len(axes) != 1:
        return False
    axis = axes[0] % 4
    if axis not in ((2, 3) if value.layout == FIRST else (1, 2)):
        return False  # the channels must stay where the layout has them
    ctx.alias(node, node.input[0])
    ctx.values[node.output[0]].lifted = axis
    return True


def _squeeze(ctx, node, attrs):
    from cnnspec.layers.channel_conv import onnx_channel_conv

    value = ctx.value(node.input[0])
    axes = _axes_input(ctx, node, attrs)
    rank = len(ctx.shapes.get(node.input[0]) or ())
    if value.lifted is None or axes is None or [a % max(rank, 1) for a in axes] != [value.lifted]:
        if onnx_channel_conv(ctx, node):
            return
        raise refuse(
            FRAMEWORK,
            where(node),
            f"Squeeze of axes {axes}",
            "only the singleton axis a 1-D layer was run with in 2-D",
        )
    ctx.alias(node, node.input[0])
    ctx.values[node.output[0]].lifted = None


def unlifted(ctx, node, attrs: dict, source: str) -> tuple[dict, int | None]:
    """The attributes of a 2-D op run on a lifted 1-D map, without the singleton axis."""
    value = ctx.values.get(source)
    lift = None if value is None else value.lifted
    if lift is None:
        return attrs, None
    if value is None or value.layout != FIRST:
        raise refuse(FRAMEWORK, where(node), f"{node.op_type} of a lifted channels-last map")
    axis, attrs = lift - 2, dict(attrs)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attrs:
            values = list(attrs[key])
            if values[axis] != 1:
                raise refuse(
                    FRAMEWORK, where(node), f"{key} {values} along the 1-D map's added axis"
                )
            attrs[key] = values[:axis] + values[axis + 1 :]
    if "pads" in attrs:
        pads, half = list(attrs["pads"]), len(attrs["pads"]) // 2
        if pads[axis] or pads[axis + half]:
            raise refuse(FRAMEWORK, where(node), f"pads {pads} along the 1-D map's added axis")
        attrs["pads"] = [p for i, p in enumerate(pads) if i not in (axis, axis + half)]
    return attrs, lift


def _unsqueeze(ctx, node, attrs):
    from cnnspec.layers.channel_conv import onnx_channel_conv
    from cnnspec.layers.pixel_shuffle import onnx_rearrangement

    if (
        not onnx_channel_conv(ctx, node)
        and not expand_gate(ctx, node)
        and not _lift(ctx, node, attrs)
        and not onnx_rearrangement(ctx, node)
    ):
        raise refuse(
            FRAMEWORK,
            where(node),
            f"{node.op_type} of a {ctx.value(node.input[0]).layout} tensor",
            "only a flat (N, C) vector made (N, C, 1, 1) to scale a feature map is supported",
        )


def expand_gate(ctx, node) -> bool:
    """A flat (N, C) vector made (N, C, 1, ...) or (N, 1, ..., C): an SE gate about to be broadcast."""
    value = ctx.values.get(node.input[0])
    shape, out = ctx.shapes.get(node.input[0]), ctx.shapes.get(node.output[0])
    if (
        value is None
        or value.layout not in (FLAT, EXPANDED)
        or not shape
        or not out
        or len(out) < 3
    ):
        return False
    channels = [d for d in shape[1:] if d != 1] or [1]
    if len(channels) != 1 or [d for d in out[1:] if d != 1] not in (channels, []):
        return False
    if channels != [1] and channels[0] not in (out[1], out[-1]):
        return False
    layer = ctx.builder.layers[-1] if ctx.builder.layers else None
    if (
        value.layout == FLAT
        and layer is not None
        and layer["name"] == value.name
        and layer["type"] in ("global_avg_pool", "global_max_pool")
        and ctx.consumers.get(node.input[0], 0) == 1
        and len(out) == ctx.input_rank
    ):
        # Keras' Reshape((1, 1, C)) after a global pool (EfficientNet's squeeze-excite): keepdims
        layer["keepdims"] = True
        ctx.builder.rewrite(readable(node), "Reshape to (1, 1, C) after a global pool", "keepdims")
        ctx.alias(node, node.input[0], FIRST if out[1] == channels[0] else LAST)
        return True
    ctx.alias(node, node.input[0], EXPANDED)
    return True


AFFINE_EPSILON = 1e-5


def affine_tensors(scale, offset) -> dict[str, np.ndarray]:
    """The batch_norm tensors of x * scale + offset (moving mean 0, variance 1)."""
    import numpy as np

    channels = len(scale)
    return {
        "gamma": (np.asarray(scale, np.float64) * np.sqrt(1.0 + AFFINE_EPSILON)).astype(np.float32),
        "beta": np.asarray(offset, np.float32),
        "moving_mean": np.zeros(channels, np.float32),
        "moving_variance": np.ones(channels, np.float32),
    }


def number(value) -> float:
    """A float32 value as the shortest decimal that reads back as the same float32."""
    import numpy as np

    value = float(np.float32(value))
    for digits in range(1, 10):
        text = float(f"{value:.{digits}g}")
        if np.float32(text) == np.float32(value):
            return text
    return value


def close(got, want) -> bool:
    import numpy as np

    return bool(np.all(np.abs(got - want) <= 1e-5 + 1e-5 * np.abs(want)))


def channel_and_spatial_axes(ctx, layout: str, rank: int) -> tuple[int, list[int]]:
    """The channel axis and the spatial axes of a feature map in ``layout``."""
    if layout == FIRST:
        return 1, list(range(2, rank))
    return rank - 1, list(range(1, rank - 1))


def epsilon_field(attrs, default: float = 1e-5) -> dict[str, float]:
    import numpy as np

    epsilon = float(np.float32(attrs.get("epsilon", default)))
    return {} if abs(epsilon - default) <= 1e-6 * default else {"epsilon": number(epsilon)}


def is_fixed(ctx, name: str, fill: float) -> bool:
    """A constant (not a trained initializer) holding only ``fill``."""
    import numpy as np

    return (
        name in ctx.constants
        and name not in ctx.initializers
        and bool(np.all(ctx.constants[name] == fill))
    )


def fixed_operand(ctx, node, fill: float) -> bool:
    return any(is_fixed(ctx, name, fill) for name in node.input)


def same_shape(ctx, reshape, source: str) -> bool:
    """Whether ``reshape`` gives back the shape of ``source`` (its target is Shape(source) or equal)."""
    maker = ctx.producers.get(reshape.input[1])
    if maker is not None and maker.op_type == "Shape" and list(maker.input) == [source]:
        return not attributes(maker).get("start") and attributes(maker).get("end") is None
    if list(ctx.shapes.get(reshape.output[0]) or ()) == list(ctx.shapes.get(source) or [None]):
        return True
    shape = ctx.shapes.get(source)
    target = shape_value(ctx, reshape.input[1], batch=3)
    if target is None or not shape or None in shape[1:]:
        return False
    wanted = [shape[0] or 3, *shape[1:]]
    if len(target) != len(wanted):
        return False
    target = [w if t == 0 else t for t, w in zip(target, wanted)]  # 0 keeps the input's dim
    known = [t for t in target if t != -1]
    return (
        target.count(-1) <= 1 and all(t in (-1, w) for t, w in zip(target, wanted)) and bool(known)
    )


def static_ints(ctx, name: str) -> list[int] | None:
    """Integers that are constant, or computed from shapes that do not involve the batch size."""
    first, second = shape_value(ctx, name, batch=3), shape_value(ctx, name, batch=5)
    return first if first is not None and first == second else None


def shape_value(ctx, name: str, batch: int):
    """A shape computed from Shape nodes (tf2onnx's Shape -> Slice -> Concat), evaluated for a batch."""
    import numpy as np
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    if name in ctx.constants:
        return [int(v) for v in np.asarray(ctx.constants[name]).reshape(-1)]
    chosen: list[Any] = []
    feeds: dict[str, np.ndarray] = {}
    stack = [name]
    while stack:
        maker = ctx.producers.get(stack.pop())
        if maker is None or len(chosen) > 256:
            return None
        if maker in chosen:  # a size read twice (pad // 2 and pad - pad // 2)
            continue
        if maker.op_type == "Shape":
            dims = ctx.shapes.get(maker.input[0])
            if not dims or None in dims[1:]:
                return None
            feeds[maker.output[0]] = np.asarray([dims[0] or batch, *dims[1:]], np.int64)
            continue
        chosen.append(maker)
        stack.extend(i for i in maker.input if i and i not in ctx.constants and i not in feeds)
    if name in feeds:
        return [int(v) for v in feeds[name]]
    order = sorted(chosen, key=lambda n: ctx.position.get(n.output[0], 0))
    constants = {i: ctx.constants[i] for n in order for i in n.input if i in ctx.constants}
    try:
        graph = helper.make_graph(
            order,
            "shape",
            [
                helper.make_tensor_value_info(k, TensorProto.INT64, v.shape)
                for k, v in feeds.items()
            ],
            [helper.make_tensor_value_info(name, TensorProto.INT64, None)],
            [
                helper.make_tensor(k, _onnx_type(v), v.shape, v.flatten().tolist())
                for k, v in constants.items()
            ],
        )
        model = helper.make_model(graph, opset_imports=list(ctx.proto.opset_import))
        (value,) = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # noqa: BLE001 - a shape that does not evaluate here is not known
        return None
    value = np.asarray(value)
    return [int(v) for v in value.reshape(-1)] if value.dtype.kind in "iu" else None


def per_channel_constant(ctx, node, op_type: str, channels: int):
    """The (C,) vector ``node`` (an ``op_type`` with one constant operand) applies per channel, or None."""
    import numpy as np

    if node is None or node.op_type != op_type:
        return None
    constant = [name for name in node.input if name in ctx.constants]
    if len(constant) != 1:
        return None
    array = np.asarray(ctx.constants[constant[0]])
    dims = list(array.shape)
    while dims and dims[0] == 1 and array.size > 1:
        dims.pop(0)
    if array.size != channels or (dims and dims[0] != channels):
        return (
            None  # (C,), (C, 1, 1) or (1, C, 1, 1): one value per channel of a channels-first map
        )
    return array.reshape(-1).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Point-wise functions written as several nodes (GELU, SiLU, hard swish, x * a + b, ...)
# ----------------------------------------------------------------------------------------------


#: Ops that act on each value on its own (with constants broadcast per channel at most).
POINTWISE_OPS = {
    "Abs", "Add", "Cast", "Clip", "Div", "Elu", "Erf", "Exp", "Greater", "HardSigmoid",
    "HardSwish", "LeakyRelu", "Less", "Max", "Min", "Mul", "Neg", "Pow", "Relu", "Sigmoid",
    "Sqrt", "Sub", "Tanh", "Where", "Not", "Equal", "Reciprocal", "Softplus", "Floor", "Ceil",
}  # fmt: skip


@functools.cache
def _points() -> np.ndarray:
    """Test points: every branch of the candidate functions, well past their bends."""
    import numpy as np

    return np.concatenate([np.linspace(-8, 8, 321), [-40.0, -20.0, 20.0, 40.0, 1e-3, -1e-3]])


#: How far after its first node a point-wise function's nodes are looked for.
REGION_REACH = 64


def _region(ctx, start, source: str) -> list:
    """``start`` and the point-wise nodes shortly after it that read only ``source``, constants and
    the region's own values, in graph order."""
    region, values = [start], set(start.output)
    nodes = ctx.proto.graph.node
    first = ctx.position[start.output[0]] + 1
    for node in nodes[first : first + REGION_REACH]:
        if node.op_type not in POINTWISE_OPS or node.output[0] in ctx.consumed:
            continue
        reads = [name for name in node.input if name and name not in ctx.constants]
        if reads and set(reads) <= values | {source}:
            region.append(node)
            values.update(node.output)
    return region


def _ancestry(region: list, end) -> list:
    """The nodes of ``region`` that ``end`` reads, directly or not, and ``end``; in graph order."""
    makers = {out: node for node in region for out in node.output}
    wanted, stack = {end.output[0]}, [end]
    while stack:
        for name in stack.pop().input:
            maker = makers.get(name)
            if maker is not None and maker.output[0] not in wanted:
                wanted.add(maker.output[0])
                stack.append(maker)
    return [node for node in region if node.output[0] in wanted]


def _evaluate(ctx, nodes, source: str, layout: str):
    """The nodes' last output for test points along a batch axis, per channel: (points, channels)."""
    import numpy as np

    shape = ctx.shapes.get(source)
    if not shape or shape[1 if layout in (FIRST, FLAT) else -1] is None:
        return None
    rank, channels = len(shape), shape[1 if layout in (FIRST, FLAT) else -1]
    probe = [1] * rank
    probe[0], probe[1 if layout in (FIRST, FLAT) else -1] = len(_points()), channels
    x = np.broadcast_to(
        _points().astype(np.float32).reshape((-1,) + (1,) * (rank - 1)), probe
    ).copy()
    y = _run_nodes(ctx, nodes, source, x)
    if y is None:  # a region that does not evaluate on the probe is not a function
        return None
    try:
        y = np.broadcast_to(y, probe)
    except ValueError:
        return None
    return y.reshape(len(_points()), channels)


def _onnx_type(value) -> int:
    import numpy as np
    from onnx import helper

    return helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)


def probe_index(t, value: float) -> int:
    """The row of the probe points ``t`` nearest ``value`` (0, 1 and -1 are among them)."""
    import numpy as np

    return int(np.argmin(np.abs(t[:, 0] - value)))


def _recognise(y) -> tuple[str, dict[str, Any]] | None:
    """The layer a (points, channels) table of values computes, if one computes it exactly: each
    definition's ``onnx_function`` hook (an exact function), then its ``onnx_fit`` hook (parameters
    fitted to the values), in the registry's order."""
    import numpy as np

    from cnnspec.layers import REGISTRY

    t = _points().astype(np.float32).astype(np.float64)[:, None]
    for hook in ("onnx_function", "onnx_fit"):
        for layer_type in REGISTRY.types():
            read = REGISTRY.hook(hook, layer_type)
            fields = None if read is None else read(t, y)
            if fields is not None:
                return layer_type, fields
    return None


def _pointwise_function(ctx, node) -> bool:
    """Several point-wise nodes (or one with constants) that together compute one layer type."""
    import numpy as np

    from cnnspec.layers.elementwise import ONNX_AFFINE_CHAINS

    if node.op_type not in POINTWISE_OPS:
        return False
    reads = {name for name in node.input if name and name not in ctx.constants}
    if len(reads) != 1:
        return False
    source = reads.pop()
    value = ctx.values.get(source)
    if value is None or value.layout == EXPANDED:
        return False
    region = _region(ctx, node, source)
    for end in reversed(region):
        nodes = _ancestry(region, end)
        if nodes[0] is not node:
            continue  # a sibling's function: read when the walk reaches it
        constants = [name for n in nodes for name in n.input if name in ctx.constants]
        if len(nodes) == 1 and not constants:
            continue  # a single op reads as itself
        per_channel = [name for name in constants if np.asarray(ctx.constants[name]).size > 1]
        if per_channel and tuple(n.op_type for n in nodes) in ONNX_AFFINE_CHAINS:
            continue  # x * s (+ b) per channel: read with its weights by the Mul / Add readers
        made = {n.output[0] for n in nodes}
        leaving = {
            out
            for n in nodes
            for out in n.output
            if out in ctx.outputs
            or any(user.output[0] not in made for user in ctx.users.get(out, []))
        }
        if leaving != {nodes[-1].output[0]}:
            continue
        y = _evaluate(ctx, nodes, source, value.layout)
        found = None if y is None else _recognise(y)
        if found is None:
            continue
        layer_type, fields = found
        weights = {key: fields.pop(key) for key, v in list(fields.items()) if hasattr(v, "shape")}
        tensors = flat_order(ctx, source, weights) if weights else None
        if layer_type == "rescale" and value.layout == FLAT and isinstance(fields["scale"], list):
            # per-feature constants on flat features: the spec writes them as an inference batch_norm
            channels = len(fields["scale"])
            offset = np.broadcast_to(np.asarray(fields.get("offset", 0.0), np.float64), (channels,))
            tensors = flat_order(ctx, source, affine_tensors(np.asarray(fields["scale"]), offset))
            layer_type, fields = "batch_norm", {}
        last = nodes[-1]
        ctx.add(
            last,
            layer_type,
            [source],
            value.layout,
            tensors,
            flattened_last=value.flattened_last,
            **fields,
        )
        if len(nodes) > 1 or constants:
            ctx.builder.rewrite(
                readable(last),
                " -> ".join(n.op_type for n in nodes) + " (point-wise)",
                layer_type + ("" if not fields else f" {fields}"),
            )
        ctx.consumed.update(n.output[0] for n in nodes)
        return True
    return False


# ----------------------------------------------------------------------------------------------
# Normalisations written with their moments (tf2onnx's LayerNormalization and GroupNormalization)
# ----------------------------------------------------------------------------------------------


#: Besides point-wise ops: reductions, and the layout moves tf2onnx's optimizer leaves among them.
MEAN = "ReduceMean"
MOMENT_OPS = {MEAN, "Reshape", "Transpose", "Unsqueeze", "Squeeze"}


#: Sample scales of the probe: one small enough that the epsilon added to the variance shows.
_PROBE_SCALES = (1.0, 0.03, 0.003, 25.0)


_EPSILONS = (1e-5, 1e-3, 1e-6)


def _moments(ctx, node) -> bool:
    """ReduceMean -> ... (mean, variance, epsilon, scale, offset) over the channels of each position
    (layer_norm), or over groups of channels and every position after a Reshape that splits the
    channels into groups (group_norm / instance_norm); recognised by evaluating the nodes."""
    if node.op_type == "Reshape":
        if node.input[1] not in ctx.constants:
            return False
    elif node.op_type != MEAN:
        return False
    if _moments_from(ctx, node, node.input[0], None):
        return True
    # tf2onnx's transpose optimiser can leave a layer's value on both sides of a Transpose, the
    # means reading one side and the rest the other: read the moments from the Transpose's input.
    producer = ctx.producers.get(node.input[0])
    return (
        node.op_type == MEAN
        and producer is not None
        and producer.op_type == "Transpose"
        and producer.input[0] in ctx.values
        and _moments_from(ctx, node, producer.input[0], producer)
    )


def _moments_from(ctx, node, source: str, transpose) -> bool:
    """:func:`_moments` with ``source`` as the normalised value (``transpose``, if given, is the
    Transpose from ``source`` to what ``node`` reads, and part of the region)."""
    import numpy as np

    value = ctx.values.get(source)
    shape = ctx.shapes.get(source)
    if value is None or value.layout not in (FIRST, LAST, FLAT) or not shape or None in shape[1:]:
        return False
    split = node.output[0] if node.op_type == "Reshape" else source
    region = [node] if node.op_type == "Reshape" else []
    if transpose is not None:
        region = [transpose]
    head = region[0] if region else node
    values = {split, *(out for n in region for out in n.output)}
    nodes = ctx.proto.graph.node
    first = ctx.position[node.output[0]]
    for candidate in nodes[first : first + REGION_REACH]:
        if candidate.op_type not in POINTWISE_OPS | MOMENT_OPS:
            continue
        reads = [name for name in candidate.input if name and name not in ctx.constants]
        if reads and set(reads) <= values and candidate.output[0] not in ctx.consumed:
            region.append(candidate)
            values.update(candidate.output)
    if sum(n.op_type == MEAN for n in region) < 2:
        return False
    channel = 1 if value.layout in (FIRST, FLAT) else len(shape) - 1
    for end in reversed(region):
        chosen = _ancestry(region, end)
        if chosen[0] is not head or node not in chosen:
            continue
        back = None
        if node.op_type == "Reshape":
            back = ctx.only_user(end.output[0])
            if back is None or back.op_type != "Reshape" or not same_shape(ctx, back, source):
                continue
        made = {n.output[0] for n in chosen}
        leaving = {
            out
            for n in chosen
            for out in n.output
            if out in ctx.outputs or any(u.output[0] not in made for u in ctx.users.get(out, []))
        }
        if leaving != {end.output[0]}:
            continue
        x = _probe_input(shape)
        y = _run_nodes(ctx, chosen, source, x)
        if y is None or y.size != x.size:
            continue
        layout, out_shape = value.layout, shape
        if transpose is not None and y.shape != x.shape:
            # the region ends on the transposed side: compare on the source's side
            perm = list(attributes(transpose)["perm"])
            if y.shape != tuple(x.shape[axis] for axis in perm):
                continue
            y = np.transpose(y, np.argsort(perm))
            layout = ctx.value(transpose.output[0]).layout
            out_shape = tuple(shape[axis] for axis in perm)
        y = y.reshape(x.shape)
        constants = [
            ctx.constants[name] for n in chosen for name in n.input if name in ctx.constants
        ]
        found = _normalisation(x, y, channel, constants, node.op_type == "Reshape")
        if found is None:
            continue
        layer_type, fields, tensors = found
        last = back or end
        tensors = flat_order(ctx, source, tensors) if tensors else None
        ctx.add(
            last,
            layer_type,
            [source],
            layout,
            tensors,
            flattened_last=value.flattened_last,
            **fields,
        )
        ctx.shapes[last.output[0]] = out_shape  # a computed Reshape's shape is not inferred
        ctx.builder.rewrite(readable(last), "mean / variance nodes", layer_type)
        ctx.consumed.update(n.output[0] for n in chosen + ([back] if back is not None else []))
        return True
    return False


def _probe_input(shape) -> np.ndarray:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((len(_PROBE_SCALES), *shape[1:]))
    scales = np.asarray(_PROBE_SCALES).reshape((-1,) + (1,) * (len(shape) - 1))
    return ((x + rng.standard_normal(scales.shape)) * scales).astype(np.float32)


def _run_nodes(ctx, nodes, source: str, x: np.ndarray):
    """The nodes' last output for ``x`` fed as ``source`` (onnx's reference evaluator, float64),
    or None where they do not run on it."""
    import numpy as np
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    constants = {
        name: ctx.constants[name] for n in nodes for name in n.input if name in ctx.constants
    }
    graph = helper.make_graph(
        list(nodes),
        "probe",
        [helper.make_tensor_value_info(source, TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [
            helper.make_tensor(name, _onnx_type(v), v.shape, v.flatten().tolist())
            for name, v in constants.items()
        ],
    )
    try:
        model = helper.make_model(graph, opset_imports=list(ctx.proto.opset_import))
        (y,) = ReferenceEvaluator(model).run(None, {source: x})
        return np.asarray(y, dtype=np.float64)
    except Exception:  # noqa: BLE001 - nodes that do not run on the probe are not what is sought
        return None


def _normalisation(x, y, channel: int, constants, grouped: bool):
    """(type, fields, tensors) of the normalisation that maps x to y exactly, or None."""
    import numpy as np

    x = np.moveaxis(x.astype(np.float64), channel, -1)
    y = np.moveaxis(y, channel, -1)
    samples, channels = x.shape[0], x.shape[-1]
    scalars = [float(np.asarray(c).reshape(-1)[0]) for c in constants if np.asarray(c).size == 1]
    epsilons = [value for value in scalars if 0 < value < 0.1]
    candidates: list[tuple[str, int | None]] = []
    if not grouped:
        candidates.append(("layer_norm", None))
    if x.ndim > 2:
        candidates += [("group_norm", g) for g in range(1, channels + 1) if channels % g == 0]
    for layer_type, groups in candidates:
        if layer_type == "layer_norm":
            axes: tuple[int, ...] = (-1,)
            grouped_x = x
        else:
            grouped_x = x.reshape(samples, -1, groups, channels // groups)
            axes = tuple(a for a in range(1, grouped_x.ndim) if a != grouped_x.ndim - 2)
        mean = grouped_x.mean(axis=axes, keepdims=True)
        variance = ((grouped_x - mean) ** 2).mean(axis=axes, keepdims=True)
        for epsilon in epsilons + list(_EPSILONS):
            normal = ((grouped_x - mean) / np.sqrt(variance + epsilon)).reshape(x.shape)
            fit = _per_channel_fit(normal, y)
            if fit is None:
                continue
            gamma, beta = fit
            return _normalisation_layer(
                layer_type, groups, channels, epsilon, gamma, beta, constants
            )
    return None


def _per_channel_fit(normal, y):
    """gamma, beta with y = gamma * normal + beta per channel (last axis), if that holds exactly."""
    import numpy as np

    n, t = normal.reshape(-1, normal.shape[-1]), y.reshape(-1, y.shape[-1])
    n_mean, t_mean = n.mean(axis=0), t.mean(axis=0)
    spread = ((n - n_mean) ** 2).sum(axis=0)
    if np.any(spread == 0):
        return None
    gamma = ((n - n_mean) * (t - t_mean)).sum(axis=0) / spread
    beta = t_mean - gamma * n_mean
    if np.abs(t - (gamma * n + beta)).max() > 1e-4 * max(1.0, float(np.abs(t).max())):
        return None  # float32 moments of the probe agree to ~1e-6; a wrong epsilon misses by >1e-3
    return gamma, beta


def _normalisation_layer(layer_type, groups, channels, epsilon, gamma, beta, constants):
    """The spec layer, its fields and tensors; gamma and beta read from the graph's own constants
    (None where they are the fill a layer without them has), written by the type's
    ``onnx_moments`` hook."""
    import numpy as np

    from cnnspec.layers import REGISTRY

    vectors = [
        np.asarray(c, np.float32).reshape(-1) for c in constants if np.asarray(c).size == channels
    ]

    def exact(fitted, fill):
        for vector in vectors:
            if close(fitted, vector.astype(np.float64)):
                return vector
        if close(fitted, np.full(channels, fill)):
            return None
        return fitted.astype(np.float32)

    scale, offset = exact(gamma, 1.0), exact(beta, 0.0)
    fields: dict[str, Any] = {}
    default = 1e-5
    if abs(epsilon - default) > 1e-6 * default:
        fields["epsilon"] = number(epsilon)
    written = REGISTRY.hook("onnx_moments", layer_type)
    assert written is not None, layer_type  # the candidates are types with the hook
    return written(groups, channels, scale, offset, fields)


# ----------------------------------------------------------------------------------------------
# Nearest upsampling written as data movement (tf2onnx's UpSampling: Unsqueeze -> Tile -> Reshape)
# ----------------------------------------------------------------------------------------------


#: Ops that only move or copy values.
MOVE_OPS = {"Unsqueeze", "Squeeze", "Tile", "Expand", "Reshape", "Transpose", "Concat", "Gather"}


def _full_ancestry(ctx, end, source: str, limit: int = 48) -> list | None:
    """Every node ``end`` depends on back to ``source`` and constants (None if it reads anything else)."""
    chosen: dict[str, Any] = {}
    stack = [end]
    while stack:
        current = stack.pop()
        if current.output[0] in chosen:
            continue
        chosen[current.output[0]] = current
        if len(chosen) > limit:
            return None
        for name in current.input:
            if not name or name == source or name in ctx.constants:
                continue
            maker = ctx.producers.get(name)
            if maker is None:
                return None
            stack.append(maker)
    return sorted(chosen.values(), key=lambda n: ctx.position.get(n.output[0], 0))


def _repeat_upsample(ctx, node) -> bool:
    """Nodes that repeat every cell of a feature map s times per spatial axis: upsample (nearest)."""
    if node.op_type not in MOVE_OPS:
        return False
    reads = [name for name in node.input if name and name not in ctx.constants]
    value = ctx.values.get(reads[0]) if reads else None
    if value is None or value.layout not in (FIRST, LAST):
        return False
    source = reads[0]
    shape = ctx.shapes.get(source)
    if not shape or None in shape[1:]:
        return False
    channel, spatial = channel_and_spatial_axes(ctx, value.layout, len(shape))
    first = ctx.position[node.output[0]]
    for end in reversed(ctx.proto.graph.node[first : first + REGION_REACH]):
        out = ctx.shapes.get(end.output[0])
        if not out or len(out) != len(shape) or None in out[1:]:
            continue
        for layout in (value.layout, LAST if value.layout == FIRST else FIRST):
            out_channel, out_spatial = channel_and_spatial_axes(ctx, layout, len(shape))
            sizes = [out[a] for a in out_spatial]
            if out[out_channel] != shape[channel] or any(
                n % shape[a] for n, a in zip(sizes, spatial)
            ):
                continue
            factors = [n // shape[a] for n, a in zip(sizes, spatial)]
            if max(factors) >= 2 and _repeats(
                ctx, node, end, source, shape, factors, spatial, channel, out_channel
            ):
                ctx.add(end, "upsample", [source], layout, scale_factor=compact(factors))
                ctx.builder.rewrite(
                    readable(end), "cells repeated by data movement", "upsample (nearest)"
                )
                return True
    return False


def _repeats(ctx, node, end, source, shape, factors, spatial, channel, out_channel) -> bool:
    """Whether the nodes from ``node`` to ``end`` repeat each cell ``factors`` times (checked on data)."""
    import numpy as np

    chosen = _full_ancestry(ctx, end, source)
    if chosen is None or all(n is not node for n in chosen):
        return False
    made = {n.output[0] for n in chosen}
    if any(
        user.output[0] not in made
        for n in chosen
        if n is not end
        for user in ctx.users.get(n.output[0], [])
    ):
        return False
    x = np.random.default_rng(0).standard_normal((shape[0] or 2, *shape[1:])).astype(np.float32)
    y = _run_nodes(ctx, chosen, source, x)
    expected = x
    for axis, factor in zip(spatial, factors):
        expected = np.repeat(expected, factor, axis=axis)
    expected = np.moveaxis(expected, channel, out_channel)
    if y is None or y.shape != expected.shape or not np.array_equal(y, expected):
        return False
    ctx.consumed.update(made)
    return True


# ----------------------------------------------------------------------------------------------
# The walk
# ----------------------------------------------------------------------------------------------


def _readers() -> dict[str, Callable[..., None]]:
    """ONNX op type -> reader: what the layer definitions claim, and the layout plumbing."""
    from cnnspec.layers import REGISTRY

    readers = {op: claim.reader for op, claim in REGISTRY.claims("onnx").items()}
    readers.update(_PLUMBING)
    return readers


# Layout changes of the same values, never layers: tf2onnx's NHWC <-> NCHW Transposes and the
# singleton axis a 1-D map is given to run through a 2-D op.
_PLUMBING: dict[str, Callable[..., None]] = {
    "Transpose": _transpose,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
}


def _load(path_or_model):
    import onnx

    if isinstance(path_or_model, (str, Path)):
        path = Path(path_or_model)
        if not path.is_file():
            raise refuse("onnx", f"file {path}", "not found")
        try:
            return onnx.load(str(path))
        except Exception as error:  # noqa: BLE001 - protobuf decode errors have many types
            raise refuse("onnx", f"file {path}", f"is not a readable ONNX model: {error}") from None
    if type(path_or_model).__name__ != "ModelProto":
        raise refuse(
            "onnx",
            "model",
            f"is a {type(path_or_model).__name__}, not an onnx.ModelProto or .onnx file",
        )
    return path_or_model


def import_onnx(path_or_model) -> ImportResult:
    """Import an ONNX model; returns the spec, rewrites and its weights (see :func:`from_onnx`)."""
    proto = _load(path_or_model)
    ctx, layout, channels, size = _walk(proto)
    graph = proto.graph
    name = (
        graph.name
        if graph.name and graph.name not in ("main_graph", "torch_jit", "tf2onnx")
        else "model"
    )
    spec = ctx.builder.finish(name, channels, size)
    return ImportResult(
        spec=spec,
        rewrites=ctx.builder.rewrites,
        framework="onnx",
        details={"model": proto, "tensors": ctx.tensors, "input_layout": layout},
    )


def _walk(proto):
    """Read every node of the graph into a spec builder; returns (context, input layout, channels, size)."""
    ctx = _Context(proto)
    graph = proto.graph
    inputs = [value for value in graph.input if value.name not in ctx.constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise refuse(
            "onnx",
            f"graph '{graph.name}'",
            f"has {len(inputs)} inputs and {len(graph.output)} outputs; cnnspec imports one of each",
        )
    input_name = inputs[0].name
    shape = ctx.shapes.get(input_name) or ()
    layout = _input_layout(proto, input_name)
    channels = (shape[1] if layout == FIRST else shape[-1]) if len(shape) in (3, 4, 5) else None
    if channels is None:
        raise refuse(
            "onnx",
            f"input '{input_name}'",
            f"has shape {shape}",
            "export with a known number of channels (the spatial sizes may be symbolic)",
        )
    ctx.values[input_name] = _Tensor("input", layout)
    ctx.input_rank = len(shape)
    ctx.input_layout = layout
    # a symbolic spatial dimension (dim_param, or none) is an open size of the spec
    size = list(shape[2:]) if layout == FIRST else list(shape[1:-1])
    readers = _readers()
    shape_only = _shape_only_nodes(graph, ctx.integers)
    folded = {
        node.output[0]
        for node in graph.node
        if node.op_type != "Constant"
        and node.output[0] not in shape_only
        and _fold_constant(ctx, node)
    }  # first, so that a pattern sees every constant it reads
    for node in graph.node:
        if (
            node.op_type == "Constant"
            or node.output[0] in shape_only
            or node.output[0] in ctx.consumed
            or node.output[0] in folded
        ):
            continue
        ctx.node = node
        if _moments(ctx, node) or _pointwise_function(ctx, node) or _repeat_upsample(ctx, node):
            continue
        handler = readers.get(node.op_type)
        if handler is None:
            raise refuse(
                FRAMEWORK,
                where(node),
                f"op {node.op_type} is not supported",
                "supported ops: " + ", ".join(sorted(readers)),
            )
        handler(ctx, node, attributes(node))
    output_name = graph.output[0].name
    output = ctx.values.get(output_name)
    if output is None or output.layout == EXPANDED:
        raise refuse("onnx", f"graph '{graph.name}'", "its output is not a layer's output")
    if not ctx.builder.layers or output.name != ctx.builder.layers[-1]["name"]:
        # The graph ends in what the exporter dropped (Dropout, Identity, a layer read earlier).
        name = ctx.builder.add(
            output_name if output.name == "input" else f"{output.name}_output",
            "identity",
            [output.name],
            source=output_name,
        )
        ctx.produced[name] = (output_name, output.layout)
    return ctx, layout, channels, size


#: Ops whose inputs after the first are shapes, sizes, bounds or pads (computed from Shape nodes
#: by torch.onnx: a view, a size-dependent "same" pad, an expand_as).
SHAPE_INPUTS = ("Reshape", "Resize", "Slice", "Pad", "Expand")


def _shape_only_nodes(graph, integers: set[str]) -> set[str]:
    """Nodes that only compute a Reshape's target shape (Shape -> Gather -> Concat ...): not layers.
    ``integers`` are the integer tensors (a Shape of one is shape arithmetic too)."""
    shape_values = {
        node.input[1] for node in graph.node if node.op_type == "Reshape" and len(node.input) > 1
    } | {
        name
        for node in graph.node
        if node.op_type in SHAPE_INPUTS
        for name in node.input[1:]
        if name
    }
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    skipped: set[str] = set()  # by first output name: protobuf wrappers have no stable id()
    for node in reversed(list(graph.node)):
        if node.output and all(out in shape_values for out in node.output):
            skipped.add(node.output[0])
            # a Shape node reads a data tensor, which stays data, unless it is itself a shape
            if node.op_type != "Shape" or node.input[0] in integers:
                shape_values.update(name for name in node.input if name)
    for name in list(shape_values):  # a value also used as data is not shape-only
        for user in consumers.get(name, []):
            if user.output[0] not in skipped and not (
                user.op_type in SHAPE_INPUTS and list(user.input).index(name) >= 1
            ):
                shape_values.discard(name)
    return skipped


def _fold_constant(ctx, node) -> bool:
    """A node whose inputs are all constants (a kernel reshaped by tf2onnx) is computed once here."""
    import numpy as np

    inputs = [name for name in node.input if name]
    if not inputs or not all(name in ctx.constants for name in inputs):
        return False
    from onnx.reference import ReferenceEvaluator

    results = ReferenceEvaluator(node).run(None, {name: ctx.constants[name] for name in inputs})
    for name, value in zip(node.output, results):
        ctx.constants[name] = np.asarray(value)
    return True


#: ONNX ops that read their input as channels first.
CHANNELS_FIRST_OPS = {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "BatchNormalization", "InstanceNormalization",
}  # fmt: skip


def _input_layout(proto, input_name) -> str:
    """The input's layout: channels first when a channels-first op reads it; what its consumers
    convert it to when they are all layout Transposes (NHWC -> NCHW: channels last; NCHW -> NHWC,
    tf2onnx's ``inputs_as_nchw``: channels first); else the exporter's own (tf2onnx: Keras'
    channels last; torch.onnx and others: channels first)."""
    from onnx import helper

    consumers = [node for node in proto.graph.node if input_name in node.input]
    perms = [
        list(next((helper.get_attribute_value(a) for a in node.attribute if a.name == "perm"), []))
        if node.op_type == "Transpose"
        else None
        for node in consumers
    ]
    if any(node.op_type in CHANNELS_FIRST_OPS for node in consumers):
        return FIRST  # e.g. tf2onnx with inputs_as_nchw, its input's Transpose optimised away
    rank = len(perms[0]) if perms and perms[0] else 0
    if consumers and rank > 3:  # (0, 2, 1) reads both ways: a 1-D input's layout is the exporter's
        if all(perm == [0, rank - 1, *range(1, rank - 1)] for perm in perms):
            return LAST
        if all(perm == [0, *range(2, rank), 1] for perm in perms):
            return FIRST
    return LAST if proto.producer_name.startswith("tf2onnx") else FIRST


def onnx_tensors(path_or_model, plan) -> dict:
    """The weights of an ONNX original by spec layer (neutral PyTorch layout), for ``transfer_weights``."""
    from cnnspec.importers.origin import OriginalWeightError

    tensors = import_onnx(path_or_model).details["tensors"]
    missing = [layer.name for layer in plan.layers if layer.params and layer.name not in tensors]
    if missing:
        raise OriginalWeightError(
            f"the ONNX model has no weights for spec layer(s) {', '.join(missing)}"
        )
    return tensors


def verify_against_onnx(
    plan,
    result,
    converted,
    *,
    progress=None,
    atol=None,
    rtol=None,
    sync_weights=False,
    input_sizes=None,
):
    """Per-layer comparison of the converted model with the ORIGINAL ONNX graph, both run in onnxruntime.

    A spec with open sizes is compared at each of ``input_sizes`` (default
    :func:`cnnspec.verifier.run.default_sizes`): the converted model is exported once with
    dynamic axes, both graphs run at every size.
    """
    return _verify_onnx_original(plan, result, converted, progress, atol, rtol, input_sizes)


def _verify_onnx_original(plan, result, converted, progress, atol, rtol, input_sizes=None):
    import tempfile

    import numpy as np
    import onnx

    from cnnspec.verifier import compare as C
    from cnnspec.verifier import onnx_export as X
    from cnnspec.verifier.compare import DEFAULT_ATOL, DEFAULT_RTOL
    from cnnspec.verifier.run import combine_sizes, make_input, parameter_reports, size_plans

    atol = DEFAULT_ATOL if atol is None else atol
    rtol = DEFAULT_RTOL if rtol is None else rtol
    plans = size_plans(plan, input_sizes)
    proto = onnx.ModelProto()
    proto.CopyFrom(result.details["model"])
    # onnx writes its newest IR version, which onnxruntime may not read yet: the run takes the
    # one the model's opsets need, and no lower than 10 (whose types onnxruntime has read since 1.16)
    needed = onnx.helper.find_min_ir_version_for(list(proto.opset_import), ignore_unknown=True)
    proto.ir_version = min(proto.ir_version, max(needed, 10))
    layout = result.details["input_layout"]
    # Expose every spec layer's ONNX value as a graph output (its last producer, in graph order).
    ctx_values = _values_by_layer(result.details["model"])
    known = {output.name for output in proto.graph.output}
    for name, (value, value_layout) in ctx_values.items():
        if value not in known:
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(value))
            known.add(value)
    batch = _fixed_batch(proto) or 2
    open_axes = plan.open_axes if plan.is_open else ()
    names = [layer.name for layer in plan.layers]
    if progress:
        progress("running the original ONNX graph and the converted model")
    reports = []
    with tempfile.TemporaryDirectory(prefix="cnnspec-convert-") as workdir:
        original_path = Path(workdir) / "original.onnx"
        onnx.save(proto, str(original_path))
        x = make_input(plan, batch, 0)
        if _is_torch(converted):
            graph = X.export_torch(
                converted, names, x, Path(workdir) / "torch.onnx", open_axes=open_axes
            )
        else:
            shape_last = list(np.moveaxis(x, 1, -1).shape[1:])
            for axis, is_open in enumerate(open_axes):
                if is_open:
                    shape_last[axis] = None
            graph = X.export_keras(
                converted, names, tuple(shape_last), Path(workdir) / "keras.onnx"
            )
        side = "torch" if _is_torch(converted) else "keras"
        counter = C.torch_counts if side == "torch" else C.keras_counts
        params = parameter_reports(
            plan,
            counts={side: counter(converted)},
            graphs={f"{side}_onnx": (X.parameter_counts(graph), X.op_counts(graph.proto))},
            original_onnx=result.details["model"],
        )
        for size_plan in plans:
            reports.append(
                _compare_with_original(
                    size_plan,
                    original_path,
                    proto,
                    ctx_values,
                    graph,
                    converted,
                    layout,
                    batch=batch,
                    atol=atol,
                    rtol=rtol,
                    params=params,
                )
            )
    report = combine_sizes(reports, plans, open_axes)
    framework = "PyTorch" if side == "torch" else "Keras"
    report.compared = (
        f"the original ONNX graph and the {framework} model '{plan.name}' converted from it"
    )
    return report


def _compare_with_original(
    plan, original_path, proto, ctx_values, graph, converted, layout, *, batch, atol, rtol, params
):
    """The converted model against the original ONNX graph at the plan's input size."""
    import numpy as np

    from cnnspec.verifier import compare as C
    from cnnspec.verifier import onnx_export as X
    from cnnspec.verifier.report import LayerReport, VerifyReport
    from cnnspec.verifier.run import make_input, signal_notes

    x = make_input(plan, batch, 0)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    values = X.run_onnx(original_path, x if layout == FIRST else x_last)
    by_name = dict(zip([output.name for output in proto.graph.output], values))
    original_first = {}
    shapes = {layer.name: layer.output_shape for layer in plan.layers}
    for name, (value, value_layout) in ctx_values.items():
        array = by_name[value]
        if name in shapes and array.ndim != len(shapes[name]) + 1:
            array = array.reshape(array.shape[0], *shapes[name])  # a 1-D map run in 2-D
        if value_layout == LAST and array.ndim > 2:
            array = np.moveaxis(array, -1, 1)
        elif value_layout == LAST and name in shapes:  # flattened H, W, C -> C, H, W
            array = C.to_channels_first(array, plan.layer(name))
        original_first[name] = array
    if _is_torch(converted):
        converted_values = dict(zip(graph.layer_names, X.run_graph(graph, x)))
        torch_side, keras_side = converted_values, _to_last(plan, original_first)
    else:
        converted_values = dict(zip(graph.layer_names, X.run_graph(graph, x_last)))
        torch_side, keras_side = original_first, converted_values
    diffs = C.compare_layers(plan, torch_side, keras_side, atol=atol, rtol=rtol)
    layers = [LayerReport.from_diff(d) for d in diffs]
    divergent = C.first_divergent(diffs)
    compared = [d for d in diffs if d.ok is not None]
    finite = [d.max_abs_diff for d in compared if d.max_abs_diff is not None]
    params_by_source, params_ok = params
    ok = divergent is None and bool(compared) and params_ok
    problems = (
        []
        if divergent is None
        else [f"first divergent layer '{divergent.name}' ({divergent.type})"]
    )
    problems += [
        f"parameter count of {source}: {count.trainable:,} trainable + {count.non_trainable:,} "
        f"non-trainable, the spec says {params_by_source['spec'].trainable:,} + "
        f"{params_by_source['spec'].non_trainable:,}"
        for source, count in params_by_source.items()
        if count.ok is False
    ]
    return VerifyReport(
        ok=ok,
        spec=plan.name,
        atol=atol,
        rtol=rtol,
        batch=batch,
        seed=0,
        opset=18,
        max_abs_diff=max(finite) if finite else None,
        max_rel_diff=None,
        mean_abs_diff=diffs[-1].mean_abs_diff,
        output_max_abs_diff=diffs[-1].max_abs_diff,
        first_divergent_layer=None if divergent is None else divergent.name,
        divergence=None,
        params_ok=params_ok,
        params=params_by_source,
        layers=layers,
        observation={"original": "onnx graph outputs", "converted": graph.observation},
        notes=signal_notes(diffs, atol),
        problems=problems,
        input_size=list(plan.input_shape[1:]),
    )


def _fixed_batch(proto) -> int | None:
    initializers = {init.name for init in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name not in initializers:
            dims = value.type.tensor_type.shape.dim
            return dims[0].dim_value if dims and dims[0].HasField("dim_value") else None
    return None


def _values_by_layer(proto) -> dict[str, tuple[str, str]]:
    """Spec layer name -> (the ONNX value holding its output, that value's layout); a layer
    that is one step of a node read as two (a ConvTranspose with uneven pads, then its crop)
    has no value of its own and is left out.  A flat value flattened from a channels-last map
    (tf2onnx's Keras Flatten: H, W, C order) has the layout LAST."""
    values = {output for node in proto.graph.node for output in node.output}
    values.update(value.name for value in proto.graph.input)
    ctx = _walk(proto)[0]

    def layout_of(value: str, layout: str) -> str:
        flat = ctx.values.get(value)
        return LAST if flat is not None and flat.flattened_last is not None else layout

    return {
        layer: (value, layout_of(value, layout))
        for layer, (value, layout) in ctx.produced.items()
        if value in values
    }


def _to_last(plan, arrays: dict) -> dict:
    """Channels-first arrays -> the channels-last layout compare_layers expects on its Keras side."""
    import numpy as np

    from cnnspec.weights.transfer import flat_permutation

    out = {}
    for layer in plan.layers:
        array = arrays.get(layer.name)
        if array is None:
            continue
        if array.ndim > 2:
            out[layer.name] = np.moveaxis(array, 1, -1)
        elif layer.flat_segments is not None:
            out[layer.name] = array[:, flat_permutation(layer.flat_segments)]
        else:
            out[layer.name] = array
    return out


def _is_torch(model) -> bool:
    import sys

    return "torch" in sys.modules and isinstance(model, sys.modules["torch"].nn.Module)


def from_onnx(path_or_model):
    """Import an ONNX model as a cnnspec ModelSpec.

    Args:
        path_or_model: an ``.onnx`` file or an ``onnx.ModelProto`` with one input of fixed size,
            NCHW (torch.onnx) or NHWC with tf2onnx's Transpose pairs; weights are initializers.

    Returns:
        The :class:`~cnnspec.spec.models.ModelSpec`; node names become layer names, each node name
        kept in ``source``.

    Raises:
        UnsupportedModel: an op no cnnspec type expresses exactly (named with the ONNX node).
    """
    return import_onnx(path_or_model).spec
