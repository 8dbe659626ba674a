"""Activations as layers: relu, relu6, sigmoid, tanh, softmax, silu, hard_swish, hard_sigmoid,
leaky_relu, elu, gelu, prelu."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import Flag, LayerBase
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class SimpleActivation(LayerBase):
    """A parameter-free activation as a layer of its own (softmax acts on channels)."""

    type: Literal[
        "relu", "relu6", "sigmoid", "tanh", "softmax", "silu", "hard_swish", "hard_sigmoid"
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
    "silu": ("nn.SiLU()", 'layers.Activation("silu", name={name})'),
    "hard_swish": ("nn.Hardswish()", 'layers.Activation("hard_silu", name={name})'),
    "hard_sigmoid": ("nn.Hardsigmoid()", 'layers.Activation("hard_sigmoid", name={name})'),
}


@register
class SimpleActivationDefinition(_Activation):
    """relu, relu6, sigmoid, tanh, softmax (over channels), silu, hard_swish, hard_sigmoid."""

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
