"""Activations as layers: relu, relu6, sigmoid, tanh, softmax, silu, hard_swish, hard_sigmoid,
mish, softplus, selu, leaky_relu, elu, gelu, clip, prelu."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import Flag, LayerBase
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class SimpleActivation(LayerBase):
    """A parameter-free activation as a layer of its own (softmax acts on channels)."""

    type: Literal[
        "relu",
        "relu6",
        "sigmoid",
        "tanh",
        "softmax",
        "log_softmax",
        "silu",
        "hard_swish",
        "hard_sigmoid",
        "mish",
        "softplus",
        "selu",
    ]


class LeakyReLU(LayerBase):
    """max(x, 0) + negative_slope * min(x, 0)."""

    type: Literal["leaky_relu"]
    negative_slope: Annotated[float, Field(ge=0.0)] = Field(
        default=0.01, description="PyTorch's default 0.01 (Keras' is 0.3)."
    )


class ELU(LayerBase):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    type: Literal["elu"]
    alpha: Annotated[float, Field(gt=0.0)] = 1.0


class GELU(LayerBase):
    """Gaussian error linear unit."""

    type: Literal["gelu"]
    approximate: Literal["none", "tanh"] = Field(
        default="none", description="'none': exact erf form; 'tanh': the tanh approximation."
    )


Bound = Annotated[float, Field(allow_inf_nan=False)]


class Clip(LayerBase):
    """min(max(x, min), max): PyTorch's Hardtanh and clamp with both bounds, ONNX Clip."""

    type: Literal["clip"]
    min: Bound = Field(default=-1.0, description="The lower bound (PyTorch Hardtanh's default -1).")
    max: Bound = Field(
        default=1.0, description="The upper bound, above min (Hardtanh's default 1)."
    )


class PReLU(LayerBase):
    """Leaky ReLU with a learned slope (initial value 0.25)."""

    type: Literal["prelu"]
    per_channel: Flag = Field(
        default=True, description="One slope per channel (true) or one slope shared by all (false)."
    )


_HINT = (
    "activation definition: hard_sigmoid is clip(x/6 + 1/2) (old Keras used 0.2x + 0.5), GELU exact vs tanh, "
    "LeakyReLU slope (PyTorch 0.01, Keras 0.3 default), ELU alpha, softmax axis (channels)."
)

_NO_PARAMETERS = {"param_formula": "no parameters"}

#: SELU's fixed constants (Klambauer et al. 2017), as PyTorch, TensorFlow and ONNX use them.
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


class _Activation(LayerDefinition):
    family = "activation"
    hint_text = _HINT

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        return dict(output_shape=in_shapes[0], **_NO_PARAMETERS)

    def _torch_module(self, layer: LayerPlan) -> str:
        raise NotImplementedError

    def _keras_layer(self, layer: LayerPlan, ctx: K.EmitContext) -> str:
        raise NotImplementedError

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.single_module(layer, inputs, self._torch_module(layer))

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return K.single_layer(layer, ctx, self._keras_layer(layer, ctx))


# The parameter-free activations: torch module, Keras layer (``{name}`` is the quoted layer name).
_SIMPLE = {
    "relu": ("nn.ReLU()", "layers.ReLU(name={name})"),
    "relu6": ("nn.ReLU6()", "layers.ReLU(max_value=6.0, name={name})"),
    "sigmoid": ("nn.Sigmoid()", 'layers.Activation("sigmoid", name={name})'),
    "tanh": ("nn.Tanh()", 'layers.Activation("tanh", name={name})'),
    "softmax": ("nn.Softmax(dim=1)", "layers.Softmax(name={name})"),
    "log_softmax": ("nn.LogSoftmax(dim=1)", 'layers.Activation("log_softmax", name={name})'),
    "silu": ("nn.SiLU()", 'layers.Activation("silu", name={name})'),
    "hard_swish": ("nn.Hardswish()", 'layers.Activation("hard_silu", name={name})'),
    "hard_sigmoid": ("nn.Hardsigmoid()", 'layers.Activation("hard_sigmoid", name={name})'),
    "mish": ("nn.Mish()", 'layers.Activation("mish", name={name})'),
    "softplus": ("nn.Softplus()", 'layers.Activation("softplus", name={name})'),
    "selu": ("nn.SELU()", 'layers.Activation("selu", name={name})'),
}


@register
class SimpleActivationDefinition(_Activation):
    """relu, relu6, sigmoid, tanh, softmax and log_softmax (over channels), silu, hard_swish,
    hard_sigmoid, mish (x·tanh(softplus(x))), softplus (log(1 + eˣ)) and selu (with its fixed
    α and λ)."""

    model = SimpleActivation
    words = {"hardswish": "hard_swish", "hardsigmoid": "hard_sigmoid", "swish": "silu"}
    examples = tuple(example({"type": kind}) for kind in _SIMPLE)

    def _torch_module(self, layer: LayerPlan) -> str:
        return _SIMPLE[layer.type][0]

    def _keras_layer(self, layer: LayerPlan, ctx: K.EmitContext) -> str:
        return _SIMPLE[layer.type][1].format(name=K.quoted(layer.name))


@register
class LeakyReLUDefinition(_Activation):
    """leaky_relu with the spec's slope (PyTorch's default 0.01 written out: Keras' is 0.3)."""

    model = LeakyReLU
    words = {"leakyrelu": "leaky_relu"}
    examples = (example({"type": "leaky_relu", "negative_slope": 0.2}),)

    def _torch_module(self, layer: LayerPlan) -> str:
        slope = layer.spec.negative_slope
        return P.call("nn.LeakyReLU", *([] if slope == 0.01 else [P.number(slope)]))

    def _keras_layer(self, layer: LayerPlan, ctx: K.EmitContext) -> str:
        slope = layer.spec.negative_slope
        return P.call(
            "layers.LeakyReLU",
            negative_slope=None if slope == 0.3 else P.number(slope),
            name=K.quoted(layer.name),
        )


@register
class ELUDefinition(_Activation):
    """elu."""

    model = ELU
    examples = (example({"type": "elu", "alpha": 0.5}),)

    def _torch_module(self, layer: LayerPlan) -> str:
        return P.call(
            "nn.ELU", alpha=None if layer.spec.alpha == 1.0 else P.number(layer.spec.alpha)
        )

    def _keras_layer(self, layer: LayerPlan, ctx: K.EmitContext) -> str:
        alpha = None if layer.spec.alpha == 1.0 else P.number(layer.spec.alpha)
        return P.call("layers.ELU", alpha=alpha, name=K.quoted(layer.name))


@register
class GELUDefinition(_Activation):
    """gelu, exact (erf) or tanh approximation; Keras gets a registered function (its own lowers to Erfc)."""

    model = GELU
    examples = (example({"type": "gelu"}), example({"type": "gelu", "approximate": "tanh"}))

    def _torch_module(self, layer: LayerPlan) -> str:
        tanh = layer.spec.approximate == "tanh"
        return P.call("nn.GELU", approximate=P.string("tanh") if tanh else None)

    def _keras_layer(self, layer: LayerPlan, ctx: K.EmitContext) -> str:
        function = ctx.use("gelu_tanh" if layer.spec.approximate == "tanh" else "gelu_erf")
        return f"layers.Activation({function}, name={K.quoted(layer.name)})"


@register
class ClipDefinition(_Activation):
    """clip: nn.Hardtanh(min, max) in PyTorch; Keras' ReLU(max_value) from 0, else the Clip helper."""

    model = Clip
    words = {"hardtanh": "clip", "clamp": "clip", "clip_by_value": "clip"}
    examples = (
        example({"type": "clip"}),
        example({"type": "clip", "min": 0.0, "max": 1.5}),
        example({"type": "clip", "min": -0.5, "max": 2.0}, size=(5,)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        if layer.min >= layer.max:
            ctx.fail(
                index,
                f"clip's min {layer.min:g} is not below its max {layer.max:g}",
                "max",
                hint="min < max (a constant output is no activation)",
            )
        return super().plan(ctx, index, layer, in_shapes)

    def _torch_module(self, layer: LayerPlan) -> str:
        bounds = (layer.spec.min, layer.spec.max)
        if bounds == (-1.0, 1.0):
            return "nn.Hardtanh()"
        return P.call("nn.Hardtanh", P.number(bounds[0]), P.number(bounds[1]))

    def _keras_layer(self, layer: LayerPlan, ctx: K.EmitContext) -> str:
        if layer.spec.min == 0.0:  # Keras' ReLU clips from 0 exactly
            return P.call(
                "layers.ReLU", max_value=P.number(layer.spec.max), name=K.quoted(layer.name)
            )
        helper = ctx.use("Clip")
        return P.call(
            helper, P.number(layer.spec.min), P.number(layer.spec.max), name=K.quoted(layer.name)
        )


def _clip_fields(low: float, high: float) -> dict[str, float]:
    """A clip's fields for these bounds (none for Hardtanh's default -1, 1)."""
    return {} if (low, high) == (-1.0, 1.0) else {"min": float(low), "max": float(high)}


@REGISTRY.attach("onnx", "clip")
def clip_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Clip with the bounds as scalar inputs."""
    low = b.constant(b.temp(layer, "min"), layer.spec.min, "float32")
    high = b.constant(b.temp(layer, "max"), layer.spec.max, "float32")
    return b.node("Clip", [inputs[0], low, high], layer.name)


@register
class PReLUDefinition(LayerDefinition):
    """prelu: one slope per channel (or feature) or one shared, initial value 0.25."""

    model = PReLU
    family = "prelu"
    hint_text = "PReLU: per-channel vs one shared slope, and the slopes transferred."
    examples = (
        example({"type": "prelu"}),
        example({"type": "prelu", "per_channel": False}, size=(5,)),
        example({"type": "flatten"}, {"type": "prelu"}, channels=2, size=(2, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        count = shape[0] if layer.per_channel else 1
        params = (ParamTensor("alpha", (count,)),)
        return dict(output_shape=shape, params=params, param_formula=f"{count} slope(s) = {count}")

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        count = layer.input_shape[0] if layer.spec.per_channel else 1
        return T.single_module(
            layer, inputs, P.call("nn.PReLU", *([] if count == 1 else [T.int_text(count)]))
        )

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        rank = len(layer.input_shape) - 1  # 0 for flat features
        if layer.spec.per_channel:
            shared = tuple(range(1, rank + 1))  # one slope per channel (per feature when flat)
        else:
            shared = tuple(range(1, rank + 2))  # one slope for everything
        expression = P.call(
            "layers.PReLU",
            alpha_initializer="keras.initializers.Constant(0.25)",
            shared_axes=repr(list(shared)) if shared else None,
            name=K.quoted(layer.name),
        )
        return K.single_layer(layer, ctx, expression)

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        from cnnspec.layers.batch_norm import _feature_order

        order = flat_order if layer.spec.per_channel else None
        to_keras, to_torch = _feature_order(order)
        return [
            WeightSlot(
                "alpha",
                "weight",
                ("alpha",),
                reshape=True,
                to_keras=lambda a: to_keras(a.reshape(-1)),
                to_torch=lambda k: to_torch(k.reshape(-1)),
            )
        ]


@REGISTRY.attach("onnx", *REGISTRY.definition("relu").types, "gelu")
def activation_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """The standard op of the activation (gelu as its formula: Gelu is an op only from opset 20)."""
    return O.activation(b, layer, layer.type, inputs[0], layer.name)


@REGISTRY.attach("onnx", "leaky_relu")
def leaky_relu_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """LeakyRelu with the spec's slope."""
    return b.node("LeakyRelu", [inputs[0]], layer.name, alpha=float(layer.spec.negative_slope))


@REGISTRY.attach("onnx", "elu")
def elu_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Elu with the spec's alpha."""
    return b.node("Elu", [inputs[0]], layer.name, alpha=float(layer.spec.alpha))


@REGISTRY.attach("onnx", "prelu")
def prelu_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """PRelu with the (C,) or (1,) slope reshaped to (C, 1, ...) to broadcast over the spatial dims."""
    slope = b.weight(layer, "alpha")
    spatial = len(layer.input_shape) - 1
    if spatial:
        shape = b.constant(b.temp(layer, "slope_shape"), [-1] + [1] * spatial, "int64")
        slope = b.node("Reshape", [slope, shape], b.temp(layer, "slope"))
    return b.node("PRelu", [inputs[0], slope], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------

# Keras activation names (``activation="swish"``, ``Activation("hard_silu")``) -> spec type.
_KERAS_ACTIVATIONS = {
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "hard_silu": "hard_swish",
    "hard_swish": "hard_swish",
    "hard_sigmoid": "hard_sigmoid",
    "elu": "elu",
    "leaky_relu": "leaky_relu",
    "mish": "mish",
    "softplus": "softplus",
    "selu": "selu",
}


def _keras_activation_name(kind: str):
    def read_keras_activation_name(name: str) -> dict[str, Any]:
        """The spec layer a Keras activation name is: its type and the fields Keras' defaults set."""
        if kind == "leaky_relu":
            return {"type": kind, "negative_slope": 0.2}  # keras.activations.leaky_relu's default
        return {"type": kind}

    return read_keras_activation_name


for _name, _kind in _KERAS_ACTIVATIONS.items():
    REGISTRY.reads("keras_activation", _name, by=_kind, produces=(_kind,))(
        _keras_activation_name(_kind)
    )


@REGISTRY.reads(
    "keras", "Activation", by="relu", produces=(*_SIMPLE, "leaky_relu", "elu", "gelu", "identity")
)
def read_keras_activation(ctx, layer, cfg, inputs, shapes):
    value = KI.registered_activation(cfg["activation"])
    if value == "gelu_tanh":
        ctx.add(layer, "gelu", inputs, approximate="tanh")
        return
    if value == "linear":
        KI.pass_through(ctx, layer, cfg, inputs, shapes, "Activation('linear')")
        return
    if not isinstance(value, str) or value not in _KERAS_ACTIVATIONS:
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"activation {value!r} is not supported",
            "supported: " + ", ".join(sorted(_KERAS_ACTIVATIONS)) + ", linear",
        )
    fields = KI.activation_layer(value)
    ctx.add(layer, fields.pop("type"), inputs, **fields)


# The ops keras.ops and keras.activations record when called on a functional model's tensors.
_KERAS_ACTIVATION_OPS = {
    "Relu": "relu",
    "Relu6": "relu6",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Silu": "silu",
    "HardSigmoid": "hard_sigmoid",
    "HardSilu": "hard_swish",
    "Selu": "selu",
    "Softplus": "softplus",
    "Elu": "elu",
    "LeakyRelu": "leaky_relu",
    "Gelu": "gelu",
    "Softmax": "softmax",
    "LogSoftmax": "log_softmax",
}


def _read_keras_activation_op(kind: str):
    def read_keras_activation_op(ctx, op, node, inputs) -> None:
        """``keras.ops.relu(x)``, ``keras.activations.gelu(x)``: the activation, with the op's own
        arguments (ops.gelu is the tanh form unless ``approximate=False``; ops.leaky_relu's slope
        is 0.2)."""
        fields: dict[str, Any] = {}
        if kind == "elu" and float(op.alpha) != 1.0:
            fields["alpha"] = float(op.alpha)
        elif kind == "leaky_relu":
            fields["negative_slope"] = float(op.negative_slope)
        elif kind == "gelu" and op.approximate:
            fields["approximate"] = "tanh"
        elif kind in ("softmax", "log_softmax"):
            rank = len(node.input_tensors[0].shape)
            axes = [op.axis] if isinstance(op.axis, int) else list(op.axis)
            if [axis % rank for axis in axes] != [rank - 1]:
                raise refuse(
                    KI.FRAMEWORK,
                    f"'{op.name}' ({type(op).__name__} op)",
                    f"{kind} over axis {op.axis}",
                    f"cnnspec's {kind} acts on the channel axis (axis=-1)",
                )
        ctx.builder.add(op.name, kind, inputs, **fields)

    return read_keras_activation_op


for _class, _kind in _KERAS_ACTIVATION_OPS.items():
    REGISTRY.reads("keras_op", _class, by=_kind, produces=(_kind,))(
        _read_keras_activation_op(_kind)
    )


@REGISTRY.reads("keras", "ReLU", by="relu", produces=("relu", "relu6", "leaky_relu", "clip"))
def read_keras_relu(ctx, layer, cfg, inputs, shapes):
    max_value, slope, threshold = (
        cfg.get("max_value"),
        cfg.get("negative_slope", 0.0),
        cfg.get("threshold", 0.0),
    )
    if threshold:
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"threshold={threshold} is not supported",
            "relu, relu6, leaky_relu",
        )
    if max_value is None and not slope:
        ctx.add(layer, "relu", inputs)
    elif max_value is not None and float(max_value) == 6.0 and not slope:
        ctx.add(layer, "relu6", inputs)
    elif max_value is None:
        ctx.add(layer, "leaky_relu", inputs, negative_slope=float(slope))
    elif not slope and float(max_value) > 0:
        ctx.add(layer, "clip", inputs, min=0.0, max=float(max_value))
    else:
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"ReLU(max_value={max_value}, negative_slope={slope}) is not supported",
            "relu, relu6 (max_value=6), clip (max_value without a slope) and leaky_relu are",
        )


@REGISTRY.reads("keras", "LeakyReLU", by="leaky_relu")
def read_keras_leaky_relu(ctx, layer, cfg, inputs, shapes):
    slope = cfg.get("negative_slope", cfg.get("alpha"))
    fields = {} if slope == 0.01 else {"negative_slope": float(slope)}
    ctx.add(layer, "leaky_relu", inputs, **fields)


@REGISTRY.reads("keras", "ELU", by="elu")
def read_keras_elu(ctx, layer, cfg, inputs, shapes):
    fields = {} if cfg.get("alpha", 1.0) == 1.0 else {"alpha": float(cfg["alpha"])}
    ctx.add(layer, "elu", inputs, **fields)


@REGISTRY.reads("keras", "PReLU", by="prelu")
def read_keras_prelu(ctx, layer, cfg, inputs, shapes):
    spatial = list(range(1, len(shapes[0]) - 1))
    shared = sorted(cfg.get("shared_axes") or [])
    if shared == spatial:
        ctx.add(layer, "prelu", inputs)
    elif shared == list(range(1, len(shapes[0]))):
        ctx.add(layer, "prelu", inputs, per_channel=False)
    else:
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"shared_axes={cfg.get('shared_axes')} (one slope per element)",
            f"cnnspec's prelu has one slope per channel (shared_axes={spatial}) or one in all",
        )


@REGISTRY.reads("keras", "Softmax", by="softmax", produces=("softmax",))
def read_keras_softmax(ctx, layer, cfg, inputs, shapes):
    axis = cfg.get("axis", -1)
    if axis not in (-1, len(shapes[0]) - 1, [-1]):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"softmax over axis {axis}",
            "cnnspec's softmax acts on the channel axis",
        )
    ctx.add(layer, "softmax", inputs)


@REGISTRY.reads("keras", "Clip", by="clip")
def read_keras_clip(ctx, layer, cfg, inputs, shapes):
    """cnnspec's Clip helper."""
    ctx.add(layer, "clip", inputs, min=float(cfg["lower"]), max=float(cfg["upper"]))


@REGISTRY.reads("keras_op", "Clip", by="clip")
def read_keras_clip_op(ctx, op, node, inputs) -> None:
    """``keras.ops.clip(x, a, b)`` in a functional graph."""
    low, high = op.x_min, op.x_max
    if not all(isinstance(b, (int, float)) for b in (low, high)) or not low < high:
        raise refuse(
            KI.FRAMEWORK,
            f"'{op.name}' (Clip op)",
            f"clip({low}, {high})",
            "ops.clip(x, a, b) with numbers a < b is read",
        )
    ctx.builder.add(op.name, "clip", inputs, min=float(low), max=float(high))


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


_TORCH_ACTIVATION_MODULES = {
    "ReLU": "relu",
    "ReLU6": "relu6",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "SiLU": "silu",
    "Hardswish": "hard_swish",
    "Hardsigmoid": "hard_sigmoid",
    "Mish": "mish",
    "SELU": "selu",
}


def torch_module_activation(module) -> str | None:
    """The spec's parameter-free activation a torch activation module is, if it is one."""
    return _TORCH_ACTIVATION_MODULES.get(type(module).__name__)


def torch_activation_layer(module) -> tuple[str, dict[str, Any]] | None:
    """The spec layer (type and fields) a torch activation module is, if it has one: the
    parameter-free ones, and LeakyReLU, ELU and GELU with their constants."""
    kind = torch_module_activation(module)
    if kind is not None:
        return kind, {}
    name = type(module).__name__
    if name == "LeakyReLU":
        slope = float(module.negative_slope)
        return "leaky_relu", {} if slope == 0.01 else {"negative_slope": slope}
    if name == "ELU":
        return "elu", {} if module.alpha == 1.0 else {"alpha": float(module.alpha)}
    if name == "GELU":
        approximate = getattr(module, "approximate", "none")
        return "gelu", {} if approximate == "none" else {"approximate": approximate}
    return None


def _torch_activation_module(ctx, node, module):
    TI.activation(ctx, node, _TORCH_ACTIVATION_MODULES[type(module).__name__])


def _torch_activation_with_constant(ctx, node, module):
    """LeakyReLU and ELU: the layer with the module's constant (see torch_activation_layer)."""
    kind, fields = torch_activation_layer(module)
    ctx.add(node, node.args[:1], layer_type=kind, **fields)


def _torch_gelu(ctx, node, module):
    approximate = getattr(module, "approximate", "none")
    _torch_gelu_layer(ctx, node, approximate)


def _torch_gelu_layer(ctx, node, approximate):
    if TI.fuse_inline(ctx, node, "gelu") if approximate == "none" else False:
        return
    ctx.add(
        node,
        node.args[:1],
        layer_type="gelu",
        **({} if approximate == "none" else {"approximate": approximate}),
    )


def _torch_softmax_module(ctx, node, module):
    kind = "log_softmax" if type(module).__name__ == "LogSoftmax" else "softmax"
    _torch_softmax(ctx, node, module.dim, kind)


def _torch_softmax(ctx, node, dim, kind="softmax"):
    rank = len(ctx.shape(node.args[0]))
    if dim not in (1, 1 - rank - 1) and not (rank == 1 and dim == -1):
        raise TI.refusal(
            ctx, node, f"{kind} over dim {dim}", f"{kind} acts on the channel dim (dim=1)"
        )
    TI.activation(ctx, node, kind)


def _torch_hardtanh(ctx, node, module):
    _torch_clip_layer(ctx, node, float(module.min_val), float(module.max_val))


def _torch_clip_layer(ctx, node, low: float, high: float) -> None:
    """relu6 for (0, 6), else a clip with those bounds."""
    if (low, high) == (0.0, 6.0):
        TI.activation(ctx, node, "relu6")
        return
    ctx.add(node, node.args[:1], layer_type="clip", **_clip_fields(low, high))


def _torch_prelu(ctx, node, module):
    channels = ctx.shape(node.args[0])[0]
    if module.num_parameters == channels:
        ctx.add(node, node.args[:1], layer_type="prelu")
    elif module.num_parameters == 1:
        ctx.add(node, node.args[:1], layer_type="prelu", per_channel=False)
    else:
        raise TI.refusal(
            ctx, node, f"PReLU with {module.num_parameters} slopes on {channels} channels"
        )


def _torch_softplus(ctx, node, module):
    _torch_softplus_layer(ctx, node, module.beta, module.threshold)


def _torch_f_softplus(ctx, node):
    _torch_softplus_layer(
        ctx, node, TI.arg(node, 1, "beta", 1.0), TI.arg(node, 2, "threshold", 20.0)
    )


def _torch_softplus_layer(ctx, node, beta, threshold):
    # PyTorch returns x itself above the threshold: log(1 + eˣ) differs from x by e⁻²⁰ there
    if beta != 1 or threshold < 20:
        raise TI.refusal(
            ctx,
            node,
            f"softplus(beta={beta}, threshold={threshold})",
            "the spec's softplus is log(1 + eˣ): beta 1, threshold 20 or more",
        )
    TI.activation(ctx, node, "softplus")


def _torch_function_activation(kind: str):
    def reader(ctx, node):
        TI.activation(ctx, node, kind)

    return reader


def _torch_f_leaky_relu(ctx, node):
    slope = TI.arg(node, 1, "negative_slope", 0.01)
    ctx.add(
        node,
        node.args[:1],
        layer_type="leaky_relu",
        **({} if slope == 0.01 else {"negative_slope": float(slope)}),
    )


def _torch_f_elu(ctx, node):
    alpha = TI.arg(node, 1, "alpha", 1.0)
    ctx.add(
        node, node.args[:1], layer_type="elu", **({} if alpha == 1.0 else {"alpha": float(alpha)})
    )


def _torch_f_gelu(ctx, node):
    _torch_gelu_layer(ctx, node, node.kwargs.get("approximate", "none"))


def _torch_f_softmax(ctx, node):
    _torch_softmax(ctx, node, TI.arg(node, 1, "dim"))


def _torch_f_log_softmax(ctx, node):
    _torch_softmax(ctx, node, TI.arg(node, 1, "dim"), "log_softmax")


def _torch_f_hardtanh(ctx, node):
    low, high = TI.arg(node, 1, "min_val", -1.0), TI.arg(node, 2, "max_val", 1.0)
    _torch_clip_layer(ctx, node, float(low), float(high))


def _torch_clamp(ctx, node):
    """``torch.clamp(x, 0)`` / ``x.clamp(min=0)`` is relu, ``clamp(x, 0, 6)`` relu6, any other
    two bounds a clip."""
    bounds = (TI.arg(node, 1, "min", None), TI.arg(node, 2, "max", None))
    numbers = all(b is None or isinstance(b, (int, float)) for b in bounds)
    if numbers and bounds == (0, None):
        TI.activation(ctx, node, "relu")
        return
    if numbers and None not in bounds and bounds[0] < bounds[1]:
        _torch_clip_layer(ctx, node, float(bounds[0]), float(bounds[1]))
        return
    raise TI.refusal(
        ctx,
        node,
        f"clamp(min={bounds[0]}, max={bounds[1]})",
        "clamp(x, min=0) is relu and clamp(x, a, b) with a < b a clip; one other bound has no "
        "spec layer",
    )


REGISTRY.reads("torch_module", *_TORCH_ACTIVATION_MODULES, by="relu")(_torch_activation_module)
REGISTRY.reads(
    "torch_function", "torch.clamp", "torch.clip", by="relu", produces=("relu", "relu6", "clip")
)(_torch_clamp)
REGISTRY.reads("torch_method", "clamp", "clip", by="relu", produces=("relu", "relu6", "clip"))(
    _torch_clamp
)
REGISTRY.reads("torch_module", "LeakyReLU", by="leaky_relu")(_torch_activation_with_constant)
REGISTRY.reads("torch_module", "ELU", by="elu")(_torch_activation_with_constant)
REGISTRY.reads("torch_module", "GELU", by="gelu")(_torch_gelu)
REGISTRY.reads(
    "torch_module", "Softmax", "LogSoftmax", by="softmax", produces=("softmax", "log_softmax")
)(_torch_softmax_module)
REGISTRY.reads("torch_module", "Hardtanh", by="relu6", produces=("relu6", "clip"))(_torch_hardtanh)
REGISTRY.reads("torch_module", "PReLU", by="prelu")(_torch_prelu)
REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.relu",
    "torch.relu",
    "torch.nn.functional.relu_",
    "torch.relu_",
    by="relu",
    produces=("relu",),
)(_torch_function_activation("relu"))
REGISTRY.reads("torch_function", "torch.nn.functional.relu6", by="relu6", produces=("relu6",))(
    _torch_function_activation("relu6")
)
REGISTRY.reads(
    "torch_function",
    "torch.sigmoid",
    "torch.nn.functional.sigmoid",
    by="sigmoid",
    produces=("sigmoid",),
)(_torch_function_activation("sigmoid"))
REGISTRY.reads(
    "torch_function", "torch.tanh", "torch.nn.functional.tanh", by="tanh", produces=("tanh",)
)(_torch_function_activation("tanh"))
REGISTRY.reads("torch_function", "torch.nn.functional.silu", by="silu", produces=("silu",))(
    _torch_function_activation("silu")
)
REGISTRY.reads(
    "torch_function", "torch.nn.functional.hardswish", by="hard_swish", produces=("hard_swish",)
)(_torch_function_activation("hard_swish"))
REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.hardsigmoid",
    by="hard_sigmoid",
    produces=("hard_sigmoid",),
)(_torch_function_activation("hard_sigmoid"))
REGISTRY.reads("torch_function", "torch.nn.functional.leaky_relu", by="leaky_relu")(
    _torch_f_leaky_relu
)
REGISTRY.reads("torch_function", "torch.nn.functional.elu", by="elu")(_torch_f_elu)
REGISTRY.reads("torch_function", "torch.nn.functional.gelu", by="gelu")(_torch_f_gelu)
REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.softmax",
    "torch.softmax",
    by="softmax",
    produces=("softmax",),
)(_torch_f_softmax)
REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.log_softmax",
    "torch.log_softmax",
    by="log_softmax",
    produces=("log_softmax",),
)(_torch_f_log_softmax)
REGISTRY.reads(
    "torch_function", "torch.nn.functional.hardtanh", by="relu6", produces=("relu6", "clip")
)(_torch_f_hardtanh)
REGISTRY.reads("torch_module", "Softplus", by="softplus", produces=("softplus",))(_torch_softplus)
REGISTRY.reads(
    "torch_function", "torch.nn.functional.softplus", by="softplus", produces=("softplus",)
)(_torch_f_softplus)
REGISTRY.reads("torch_function", "torch.nn.functional.mish", by="mish", produces=("mish",))(
    _torch_function_activation("mish")
)
REGISTRY.reads(
    "torch_function", "torch.nn.functional.selu", "torch.selu", by="selu", produces=("selu",)
)(_torch_function_activation("selu"))
REGISTRY.reads("torch_method", "relu", "relu_", by="relu", produces=("relu",))(
    _torch_function_activation("relu")
)
REGISTRY.reads("torch_method", "sigmoid", by="sigmoid", produces=("sigmoid",))(
    _torch_function_activation("sigmoid")
)
REGISTRY.reads("torch_method", "tanh", by="tanh", produces=("tanh",))(
    _torch_function_activation("tanh")
)
REGISTRY.reads("torch_method", "softmax", by="softmax", produces=("softmax",))(_torch_f_softmax)
REGISTRY.reads("torch_method", "log_softmax", by="log_softmax", produces=("log_softmax",))(
    _torch_f_log_softmax
)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_activation(kind: str):
    def reader(ctx, node, attrs):
        value = ctx.value(node.input[0])
        ctx.add(node, kind, [node.input[0]], value.layout, flattened_last=value.flattened_last)

    return reader


def _onnx_leaky_relu(ctx, node, attrs):
    alpha = round(float(attrs.get("alpha", 0.01)), 7)
    value = ctx.value(node.input[0])
    ctx.add(
        node,
        "leaky_relu",
        [node.input[0]],
        value.layout,
        flattened_last=value.flattened_last,
        **({} if alpha == 0.01 else {"negative_slope": alpha}),
    )


def _onnx_elu(ctx, node, attrs):
    alpha = float(attrs.get("alpha", 1.0))
    value = ctx.value(node.input[0])
    ctx.add(
        node, "elu", [node.input[0]], value.layout, **({} if alpha == 1.0 else {"alpha": alpha})
    )


def _onnx_hard_sigmoid(ctx, node, attrs):
    alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if abs(alpha - 1 / 6) > 1e-6 or abs(beta - 0.5) > 1e-6:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"HardSigmoid(alpha={alpha:g}, beta={beta:g})",
            "hard_sigmoid is clip(x/6 + 1/2, 0, 1): alpha 1/6, beta 0.5 (the old Keras 2 form 0.2x+0.5 differs)",
        )
    _onnx_activation("hard_sigmoid")(ctx, node, attrs)


def _onnx_clip(ctx, node, attrs):
    low = attrs.get("min")
    high = attrs.get("max")
    if len(node.input) > 1 and node.input[1]:
        low = float(ctx.constant(node.input[1], "min"))
    if len(node.input) > 2 and node.input[2]:
        high = float(ctx.constant(node.input[2], "max"))
    if low == 0 and high == 6:
        _onnx_activation("relu6")(ctx, node, attrs)
    elif low == 0 and high is None:
        _onnx_activation("relu")(ctx, node, attrs)
    elif low is not None and high is not None and low < high:
        value = ctx.value(node.input[0])
        ctx.add(
            node,
            "clip",
            [node.input[0]],
            value.layout,
            flattened_last=value.flattened_last,
            **_clip_fields(low, high),
        )
    else:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"Clip({low}, {high})",
            "Clip(0, 6) is relu6, Clip(0) relu, Clip(a, b) with a < b clip",
        )


def _onnx_softmax(ctx, node, attrs):
    kind = "log_softmax" if node.op_type == "LogSoftmax" else "softmax"
    value = ctx.value(node.input[0])
    rank = len(ctx.shapes.get(node.input[0]) or (0, 0))
    axis = attrs.get("axis", -1) % rank
    channel_axis = 1 if value.layout in (OI.FIRST, OI.FLAT) else rank - 1
    if axis != channel_axis:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"{node.op_type} over axis {attrs.get('axis', -1)}",
            f"{kind} acts on the channels",
        )
    _onnx_activation(kind)(ctx, node, attrs)


def _onnx_prelu(ctx, node, attrs):
    slope = ctx.constant(node.input[1], "slope").reshape(-1)
    fields = {} if slope.size > 1 else {"per_channel": False}
    value = ctx.value(node.input[0])
    tensors = (
        OI.flat_order(ctx, node.input[0], {"alpha": slope}) if slope.size > 1 else {"alpha": slope}
    )
    ctx.add(
        node,
        "prelu",
        [node.input[0]],
        value.layout,
        tensors,
        flattened_last=value.flattened_last,
        **fields,
    )


REGISTRY.reads("onnx", "Relu", by="relu", produces=("relu",))(_onnx_activation("relu"))
REGISTRY.reads("onnx", "Sigmoid", by="sigmoid", produces=("sigmoid",))(_onnx_activation("sigmoid"))
REGISTRY.reads("onnx", "Tanh", by="tanh", produces=("tanh",))(_onnx_activation("tanh"))
REGISTRY.reads("onnx", "HardSwish", by="hard_swish", produces=("hard_swish",))(
    _onnx_activation("hard_swish")
)
REGISTRY.reads("onnx", "HardSigmoid", by="hard_sigmoid", produces=("hard_sigmoid",))(
    _onnx_hard_sigmoid
)
REGISTRY.reads("onnx", "Mish", by="mish", produces=("mish",))(_onnx_activation("mish"))
REGISTRY.reads("onnx", "Softplus", by="softplus", produces=("softplus",))(
    _onnx_activation("softplus")
)


@REGISTRY.reads("onnx", "Selu", by="selu", produces=("selu",))
def _onnx_selu(ctx, node, attrs):
    alpha, gamma = float(attrs.get("alpha", SELU_ALPHA)), float(attrs.get("gamma", SELU_SCALE))
    if abs(alpha - SELU_ALPHA) > 1e-6 or abs(gamma - SELU_SCALE) > 1e-6:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"Selu(alpha={alpha:g}, gamma={gamma:g})",
            f"selu has the fixed alpha {SELU_ALPHA:.6f} and scale {SELU_SCALE:.6f}",
        )
    _onnx_activation("selu")(ctx, node, attrs)


REGISTRY.reads("onnx", "LeakyRelu", by="leaky_relu")(_onnx_leaky_relu)
REGISTRY.reads("onnx", "Elu", by="elu")(_onnx_elu)
REGISTRY.reads("onnx", "Clip", by="relu6", produces=("relu6", "relu", "clip"))(_onnx_clip)
REGISTRY.reads("onnx", "Softmax", "LogSoftmax", by="softmax", produces=("softmax", "log_softmax"))(
    _onnx_softmax
)
REGISTRY.reads("onnx", "PRelu", by="prelu")(_onnx_prelu)


@REGISTRY.reads("onnx", "Gelu", by="gelu")  # opset 20; older exporters write the Erf formula out
def read_onnx_gelu(ctx, node, attrs):
    approximate = OI.decode(attrs.get("approximate", "none"))
    value = ctx.value(node.input[0])
    ctx.add(
        node,
        "gelu",
        [node.input[0]],
        value.layout,
        flattened_last=value.flattened_last,
        **({} if approximate == "none" else {"approximate": approximate}),
    )


# What a chain of ONNX point-wise nodes computes (the importer evaluates it on probe points ``t``,
# shape (points, 1), giving ``y``, shape (points, channels)): ``onnx_function`` hooks return the
# fields of the exact function the type computes, ``onnx_fit`` hooks (tried after every exact one)
# fit the type's parameters to ``y``; None when ``y`` is not this type.
def _onnx_exact(function, **fields):
    def read(t, y):
        return dict(fields) if OI.close(y, function(t)) else None

    return read


def _sigmoid(t):
    import numpy as np

    return 1.0 / (1.0 + np.exp(-t))


def _gelu(t):
    from math import erf

    import numpy as np

    return 0.5 * t * (1.0 + np.vectorize(erf)(t / np.sqrt(2.0)))


def _gelu_tanh(t):
    import numpy as np

    return 0.5 * t * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (t + 0.044715 * t**3)))


def _tanh(t):
    import numpy as np

    return np.tanh(t)


def _hard_sigmoid(t):
    import numpy as np

    return np.clip(t / 6.0 + 0.5, 0.0, 1.0)


def _softplus(t):
    import numpy as np

    return np.logaddexp(0.0, t)


def _selu(t):
    return SELU_SCALE * _elu(t, SELU_ALPHA)


def _elu(t, alpha=1.0):
    import numpy as np

    return np.where(t > 0, t, alpha * np.expm1(np.minimum(t, 0.0)))


@REGISTRY.attach("onnx_function", "gelu")
def _onnx_gelu_function(t, y):
    exact = _onnx_exact(_gelu)(t, y)
    return exact if exact is not None else _onnx_exact(_gelu_tanh, approximate="tanh")(t, y)


REGISTRY.attach("onnx_function", "silu")(_onnx_exact(lambda t: t * _sigmoid(t)))
REGISTRY.attach("onnx_function", "hard_swish")(_onnx_exact(lambda t: t * _hard_sigmoid(t)))
REGISTRY.attach("onnx_function", "hard_sigmoid")(_onnx_exact(_hard_sigmoid))
REGISTRY.attach("onnx_function", "relu6")(_onnx_exact(lambda t: t.clip(0.0, 6.0)))
REGISTRY.attach("onnx_function", "relu")(_onnx_exact(lambda t: t.clip(0.0, None)))
REGISTRY.attach("onnx_function", "sigmoid")(_onnx_exact(_sigmoid))
REGISTRY.attach("onnx_function", "tanh")(_onnx_exact(_tanh))
REGISTRY.attach("onnx_function", "elu")(_onnx_exact(_elu))
REGISTRY.attach("onnx_function", "softplus")(_onnx_exact(_softplus))
REGISTRY.attach("onnx_function", "mish")(_onnx_exact(lambda t: t * _tanh(_softplus(t))))
REGISTRY.attach("onnx_function", "selu")(_onnx_exact(_selu))


def _negative_slopes(t, y):
    """The slopes below 0 of max(t, 0) + a * min(t, 0) per channel, if ``y`` is that (else None)."""
    import numpy as np

    negative = -y[OI.probe_index(t, -1.0)]
    if OI.close(y, np.maximum(t, 0) + negative * np.minimum(t, 0)) and np.all(negative >= 0):
        return negative
    return None


@REGISTRY.attach("onnx_fit", "leaky_relu")
def _onnx_leaky_relu_fit(t, y):
    import numpy as np

    negative = _negative_slopes(t, y)
    if negative is None or not np.all(negative == negative[0]) or negative[0] == 1:
        return None  # a slope of 1 on both sides is no leak but x itself (a scale, fitted there)
    return {"negative_slope": OI.number(negative[0])}


@REGISTRY.attach("onnx_fit", "prelu")
def _onnx_prelu_fit(t, y):
    import numpy as np

    negative = _negative_slopes(t, y)
    if negative is None or np.all(negative == negative[0]):
        return None
    return {"alpha": negative.astype(np.float32)}  # an array: the layer's weights


@REGISTRY.attach("onnx_fit", "clip")
def _onnx_clip_fit(t, y):
    """tf2onnx's clip_by_value, Min then Max with constants: the bounds are the lowest and the
    highest value, the same in every channel, and x itself between them."""
    import numpy as np

    low, high = y.min(), y.max()
    if not (np.all(y.min(axis=0) == low) and np.all(y.max(axis=0) == high) and low < high):
        return None
    if not (t.min() < low and high < t.max()) or not OI.close(y, np.clip(t, low, high)):
        return None
    return _clip_fields(OI.number(low), OI.number(high))


@REGISTRY.attach("onnx_fit", "elu")
def _onnx_elu_fit(t, y):
    import numpy as np

    alpha = y[OI.probe_index(t, -1.0)] / np.expm1(-1.0)
    if np.all(alpha == alpha[0]) and alpha[0] > 0 and OI.close(y, _elu(t, alpha[0])):
        return {"alpha": OI.number(alpha[0])}
    return None
