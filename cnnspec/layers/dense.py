"""Fully connected: dense."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import drop_defaults, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import ACTIVATION_DESCRIPTION, Flag, InlineActivation, LayerBase, Positive
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Dense(LayerBase):
    """Fully connected layer on flat features."""

    type: Literal["dense"]
    units: Positive
    bias: Flag = True
    activation: InlineActivation | None = Field(default=None, description=ACTIVATION_DESCRIPTION)


@register
class DenseDefinition(LayerDefinition):
    """dense: nn.Linear on flat features; its kernel rows follow each framework's flat order."""

    model = Dense
    family = "dense"
    words = {"linear": "dense", "fc": "dense", "fully_connected": "dense"}
    examples = (
        example(
            {"type": "flatten"},
            {"type": "dense", "units": 5, "activation": "softmax"},
            channels=2,
            size=(3, 4),
        ),
        example({"type": "global_avg_pool"}, {"type": "dense", "units": 4, "bias": False}),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        if len(shape) != 1:
            ctx.fail(
                index,
                f"dense needs flat features but its input is a feature map {list(shape)}",
                hint="add a flatten or global_avg_pool layer before it (frameworks disagree on dense over a feature map)",
            )
        features = shape[0]
        params = [ParamTensor("kernel", (layer.units, features))]
        if layer.bias:
            params.append(ParamTensor("bias", (layer.units,)))
        formula = (
            f"{fmt_count(features)}·{layer.units}"
            + (f" + {layer.units}" if layer.bias else "")
            + f" = {fmt_count(sum(p.size for p in params))}"
        )
        return dict(output_shape=(layer.units,), params=tuple(params), param_formula=formula)

    def flat_segments(
        self, ctx: Any, index: int, inputs: Any, in_shapes: Any, output_shape: Any
    ) -> Any:
        return (output_shape,)

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """dense: nn.Linear on flat features."""
        spec = layer.spec
        module = P.call(
            "nn.Linear",
            T.int_text(layer.input_shape[0]),
            T.int_text(spec.units),
            bias=None if spec.bias else "False",
        )
        code = T.single_module(layer, inputs, module)
        code.expression = T.with_activation(layer, code.expression)
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        return K.single_layer(
            layer,
            ctx,
            P.call(
                "layers.Dense",
                str(int(spec.units)),
                use_bias=None if spec.bias else "False",
                activation=K.activation_value(layer, ctx),
                name=K.quoted(layer.name),
            ),
        )

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        import numpy as np

        order = flat_order if flat_order is not None else np.arange(layer.input_shape[0])
        inverse = np.argsort(order)

        def to_keras(t: Any) -> Any:
            if t.ndim != 2 or t.shape[1] != len(order):
                raise ValueError("dense weight does not have the spec's input features")
            return np.ascontiguousarray(t.T[order])

        def to_torch(k: Any) -> Any:
            if k.ndim != 2 or k.shape[0] != len(order):
                raise ValueError("dense kernel does not have the spec's input features")
            return np.ascontiguousarray(k[inverse].T)

        slots = [WeightSlot("kernel", "weight", ("kernel",), to_keras=to_keras, to_torch=to_torch)]
        return slots + ([WeightSlot("bias", "bias", ("bias",))] if layer.spec.bias else [])

    def hint(self, layer: LayerPlan, border: str, plan: Any) -> str:
        source = (
            plan.layer(layer.inputs[0]) if plan is not None and layer.inputs[0] != "input" else None
        )
        if (
            source is not None
            and source.flat_segments
            and any(len(s) > 1 for s in source.flat_segments)
        ):
            return "dense after a flattened feature map: the kernel rows must be permuted from C,H,W to H,W,C order."
        return "dense: kernel (out, in) in PyTorch vs (in, out) in Keras, the bias, or the inline activation."


@REGISTRY.attach("onnx", "dense")
def dense_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Gemm with the (out, in) kernel transposed."""
    weights = [b.weight(layer, "kernel")] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    value = b.node("Gemm", [inputs[0], *weights], b.temp(layer, "gemm"), transB=1)
    return O.with_activation(b, layer, value)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "Dense", by="dense", produces=("dense", "conv1d", "conv2d", "conv3d"))
def read_keras_dense(ctx, layer, cfg, inputs, shapes):
    activation = KI.inline_activation(ctx, layer, cfg["activation"])
    rank = len(shapes[0]) - 2
    if (
        rank >= 1
    ):  # Dense on a channels-last map contracts the channel axis: exactly a 1x1 convolution
        ctx.builder.rewrite(
            layer.name, "Dense on a channels-last feature map", f"conv{rank}d with kernel_size 1"
        )
        ctx.add(
            layer,
            f"conv{rank}d",
            inputs,
            source=layer.name,
            **drop_defaults(
                filters=cfg["units"], kernel_size=1, bias=cfg["use_bias"], activation=activation
            ),
        )
        return
    ctx.add(
        layer,
        "dense",
        inputs,
        **drop_defaults(units=cfg["units"], bias=cfg["use_bias"], activation=activation),
    )


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_linear(ctx, node, module):
    """nn.Linear on flat features; on a map permuted to channels-last (ConvNeXt's MLP) it
    contracts the channels at each position: exactly a 1x1 convolution."""
    shape = ctx.shape(node.args[0])
    if node.args[0] in ctx.channels_last:
        rank = len(shape) - 1
        ctx.per_position.add(node)
        ctx.builder.rewrite(
            node.target,
            "nn.Linear on a channels-last feature map",
            f"conv{rank}d with kernel_size 1",
        )
        ctx.add(
            node,
            node.args[:1],
            layer_type=f"conv{rank}d",
            source=node.target,
            **drop_defaults(
                filters=module.out_features, kernel_size=1, bias=module.bias is not None
            ),
        )
        return
    if len(shape) != 1:
        raise TI.refusal(
            ctx,
            node,
            "nn.Linear on a feature map (it contracts the last axis, the width)",
            "flatten or pool first; a Linear over channels is a 1x1 nn.Conv",
        )
    ctx.add(
        node,
        node.args[:1],
        layer_type="dense",
        **drop_defaults(units=module.out_features, bias=module.bias is not None),
    )


REGISTRY.reads(
    "torch_module", "Linear", by="dense", produces=("dense", "conv1d", "conv2d", "conv3d")
)(_torch_linear)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_gemm(ctx, node, attrs):
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        raise refuse(
            OI.FRAMEWORK, OI.where(node), "Gemm with transA, alpha or beta", "a plain dense layer"
        )
    weight = ctx.constant(node.input[1], "weight")
    weight = weight if attrs.get("transB", 0) else weight.T
    bias = ctx.constant(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    _onnx_dense(ctx, node, weight, bias)


def _onnx_pointwise_conv(ctx, node, source: str, weight, rank: int) -> None:
    """A (C_in, C_out) matrix applied to a channels-last map: a 1x1 convolution without bias."""
    import numpy as np

    kernel = np.ascontiguousarray(weight.T).reshape(weight.shape[1], weight.shape[0], *[1] * rank)
    ctx.add(
        node,
        f"conv{rank}d",
        [source],
        OI.LAST,
        {"kernel": kernel},
        filters=int(weight.shape[1]),
        kernel_size=1,
        bias=False,
    )


def _onnx_matmul(ctx, node, attrs):

    weight = ctx.constant(node.input[1], "weight")
    value = ctx.value(node.input[0])
    rank = len(ctx.shapes.get(node.input[0]) or ())
    if weight.ndim == 2 and value.layout == OI.LAST and rank > 2:
        # a Linear / Dense on a channels-last feature map (ConvNeXt): exactly a 1x1 convolution
        ctx.builder.rewrite(
            OI.readable(node), "MatMul on a channels-last feature map", f"conv{rank - 2}d, kernel 1"
        )
        _onnx_pointwise_conv(ctx, node, node.input[0], weight, rank - 2)
        return
    if weight.ndim != 2 or value.layout != OI.FLAT:
        raise refuse(
            OI.FRAMEWORK, OI.where(node), "MatMul that is not a dense layer on flat features"
        )
    _onnx_dense(ctx, node, weight.T, None)


def _onnx_dense(ctx, node, weight, bias):
    import numpy as np

    if ctx.value(node.input[0]).layout != OI.FLAT:
        raise refuse(
            OI.FRAMEWORK, OI.where(node), "a dense layer on a feature map", "flatten or pool first"
        )
    tensors = OI.flat_order(ctx, node.input[0], {"kernel": np.ascontiguousarray(weight)})
    if bias is not None:
        tensors["bias"] = np.asarray(bias).reshape(-1)
    ctx.add(
        node,
        "dense",
        [node.input[0]],
        OI.FLAT,
        tensors,
        **drop_defaults(units=int(weight.shape[0]), bias=bias is not None),
    )


def onnx_tensordot(ctx, node) -> bool:
    """Keras' Dense on a channels-last map as tf2onnx writes it: Reshape (-1, C) -> MatMul ->
    Reshape back to (N, ..., units): a 1x1 convolution."""

    value = ctx.values.get(node.input[0])
    shape = ctx.shapes.get(node.input[0])
    target = ctx.constants.get(node.input[1])
    if value is None or value.layout != OI.LAST or not shape or None in shape[1:] or target is None:
        return False
    if list(target) != [-1, shape[-1]]:
        return False
    matmul = ctx.only_user(node.output[0])
    if matmul is None or matmul.op_type != "MatMul" or matmul.input[1] not in ctx.constants:
        return False
    weight = ctx.constants[matmul.input[1]]
    back = ctx.only_user(matmul.output[0])
    if weight.ndim != 2 or back is None or back.op_type != "Reshape":
        return False
    size = OI.shape_value(ctx, back.input[1], batch=shape[0] or 3)
    if size is None or size[1:] != [*shape[1:-1], weight.shape[1]]:
        return False
    rank = len(shape) - 2
    ctx.builder.rewrite(
        OI.readable(back), "Dense on a channels-last feature map", f"conv{rank}d, kernel 1"
    )
    _onnx_pointwise_conv(ctx, back, node.input[0], weight, rank)
    ctx.shapes[back.output[0]] = (*shape[:-1], int(weight.shape[1]))
    ctx.consumed.update((matmul.output[0], back.output[0]))
    return True


REGISTRY.reads("onnx", "Gemm", by="dense")(_onnx_gemm)
REGISTRY.reads("onnx", "MatMul", by="dense", produces=("dense", "conv1d", "conv2d", "conv3d"))(
    _onnx_matmul
)
