"""Batch normalisation: batch_norm."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor, fmt_count
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


class BatchNorm(LayerBase):
    """Batch normalisation over the channel axis (inference uses the moving statistics)."""

    type: Literal["batch_norm"]
    epsilon: Annotated[float, Field(gt=0.0)] = Field(
        default=1e-5, description="Added to the variance (PyTorch's default 1e-5; Keras' is 1e-3)."
    )
    momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        default=0.1,
        description=(
            "Weight of the new batch statistic in the moving average: moving = (1 - momentum)*moving + momentum*batch "
            "(PyTorch's convention; Keras' momentum is 1 - this value)."
        ),
    )
    center: Flag = Field(default=True, description="Learn the offset beta (Keras center).")
    scale: Flag = Field(
        default=True,
        description="Learn the factor gamma (Keras scale; Keras InceptionV3/InceptionResNetV2 use scale: false).",
    )


@register
class BatchNormDefinition(LayerDefinition):
    """batch_norm: BatchNorm1d for flat (N, F) and (N, C, L) inputs, 2d / 3d by spatial rank."""

    model = BatchNorm
    family = "batch_norm"
    words = {
        "batchnormalization": "batch_norm",
        "batchnorm2d": "batch_norm",
        "batchnorm1d": "batch_norm",
        "batchnorm3d": "batch_norm",
        "batchnorm": "batch_norm",
    }
    hint_text = (
        "BatchNorm: epsilon (PyTorch's default 1e-5, Keras' 1e-3), the moving mean/variance transferred as "
        "non-trainable weights, gamma/beta order, or the model not in inference mode."
    )
    examples = (
        example({"type": "batch_norm", "epsilon": 0.001, "momentum": 0.01}),
        example({"type": "batch_norm"}, size=(6,)),
        example({"type": "batch_norm"}, channels=2, size=(3, 4, 3)),
        example({"type": "flatten"}, {"type": "batch_norm"}, channels=2, size=(3, 3)),
        example({"type": "batch_norm", "scale": False, "epsilon": 0.001}),
        example({"type": "batch_norm", "center": False}, channels=2, size=(5,)),
        example(
            {"type": "batch_norm", "center": False, "scale": False}, channels=2, size=(2, 3, 3)
        ),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        c = shape[0]
        learned = [
            (n, sym)
            for n, sym, on in (("gamma", "γ", layer.scale), ("beta", "β", layer.center))
            if on
        ]
        params = tuple(ParamTensor(n, (c,)) for n, _ in learned) + (
            ParamTensor("moving_mean", (c,), trainable=False),
            ParamTensor("moving_variance", (c,), trainable=False),
        )
        symbols = ", ".join(sym for _, sym in learned)
        learned_text = f"{len(learned)}·{c} ({symbols}) + " if learned else ""
        total = fmt_count((len(learned) + 2) * c)
        formula = f"{learned_text}2·{c} non-trainable (moving mean, variance) = {total}"
        return dict(output_shape=shape, params=params, param_formula=formula)

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """batch_norm: BatchNorm1d for flat (N, F) and (N, C, L) inputs, 2d / 3d by spatial rank."""
        spec = layer.spec
        options = dict(
            eps=None if spec.epsilon == 1e-5 else P.number(spec.epsilon),
            momentum=None if spec.momentum == 0.1 else P.number(spec.momentum),
        )
        if spec.center != spec.scale:  # PyTorch's affine learns both or neither
            module = P.call(
                "PartialBatchNorm",
                T.int_text(layer.input_shape[0]),
                **options,
                center=None if spec.center else "False",
                scale=None if spec.scale else "False",
            )
            code = T.single_module(layer, inputs, module)
            code.helpers.add("PartialBatchNorm")
            return code
        module = P.call(
            f"nn.BatchNorm{max(T.spatial_rank(layer), 1)}d",
            T.int_text(layer.input_shape[0]),
            **options,
            affine=None if spec.scale else "False",
        )
        return T.single_module(layer, inputs, module)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        # Spec momentum is PyTorch's (weight of the new batch); Keras keeps 1 - m of the old average.
        keras_momentum = 1.0 - float(spec.momentum)
        return K.single_layer(
            layer,
            ctx,
            P.call(
                "layers.BatchNormalization",
                epsilon=None if spec.epsilon == 1e-3 else P.number(spec.epsilon),
                momentum=None if keras_momentum == 0.99 else P.number(keras_momentum),
                center=None if spec.center else "False",
                scale=None if spec.scale else "False",
                name=K.quoted(layer.name),
            ),
        )

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        to_keras, to_torch = _feature_order(flat_order)
        spec = layer.spec
        return [
            WeightSlot(tensor, attr, (tensor,), to_keras=to_keras, to_torch=to_torch)
            for tensor, attr, present in (
                ("gamma", "weight", spec.scale),
                ("beta", "bias", spec.center),
                ("moving_mean", "running_mean", True),
                ("moving_variance", "running_var", True),
            )
            if present
        ]


def _feature_order(flat_order: Any) -> tuple[Any, Any]:
    """Per-feature vectors on flat inputs follow the flat order of each framework."""
    if flat_order is None:
        return (lambda a: a), (lambda a: a)
    import numpy as np

    inverse = np.argsort(flat_order)
    return (lambda a: a[flat_order]), (lambda a: a[inverse])


@REGISTRY.attach("onnx", "batch_norm")
def batch_norm_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """BatchNormalization with the moving statistics (inference); without scale/center, 1 and 0."""
    channels = layer.input_shape[0]
    gamma = (
        b.weight(layer, "gamma")
        if layer.spec.scale
        else b.constant(b.temp(layer, "gamma"), [1.0] * channels, "float32")
    )
    beta = (
        b.weight(layer, "beta")
        if layer.spec.center
        else b.constant(b.temp(layer, "beta"), [0.0] * channels, "float32")
    )
    statistics = [b.weight(layer, "moving_mean"), b.weight(layer, "moving_variance")]
    return b.node(
        "BatchNormalization",
        [inputs[0], gamma, beta, *statistics],
        layer.name,
        epsilon=float(layer.spec.epsilon),
    )


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "BatchNormalization", by="batch_norm")
def read_keras_batch_norm(ctx, layer, cfg, inputs, shapes):
    axis = (
        cfg["axis"][0]
        if isinstance(cfg["axis"], (list, tuple)) and len(cfg["axis"]) == 1
        else cfg["axis"]
    )
    if axis not in (-1, len(shapes[0]) - 1):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"normalises axis {cfg['axis']}, not the channel (last) axis",
        )
    if cfg.get("renorm"):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            "renorm is not supported",
            "cnnspec's batch_norm is the plain one",
        )
    fields: dict[str, Any] = {key: False for key in ("center", "scale") if not cfg.get(key, True)}
    if round(cfg["epsilon"], 12) != 1e-5:
        fields["epsilon"] = float(cfg["epsilon"])
    momentum = round(1.0 - cfg["momentum"], 12)
    if momentum != 0.1:
        fields["momentum"] = momentum
    ctx.add(layer, "batch_norm", inputs, **fields)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_batch_norm(ctx, node, module):
    """nn.BatchNorm*d (affine or not) and cnnspec's PartialBatchNorm (only one of weight and bias)."""
    if getattr(module, "running_mean", None) is None or module.momentum is None:
        raise TI.refusal(
            ctx,
            node,
            "BatchNorm without running statistics or a momentum",
            "batch_norm keeps moving statistics (track_running_stats=True, a momentum)",
        )
    fields: dict[str, Any] = {}
    if module.eps != 1e-5:
        fields["epsilon"] = float(module.eps)
    if module.momentum != 0.1:
        fields["momentum"] = float(module.momentum)
    if getattr(module, "bias", None) is None:
        fields["center"] = False
    if getattr(module, "weight", None) is None:
        fields["scale"] = False
    ctx.add(node, node.args[:1], layer_type="batch_norm", **fields)


REGISTRY.reads(
    "torch_module", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "PartialBatchNorm", by="batch_norm"
)(_torch_batch_norm)


def _torch_batch_norm_act(ctx, node, module):
    """timm's BatchNormAct2d: a BatchNorm2d, then its own dropout (the identity at inference) and
    its activation module ``act``, which becomes a layer of its own (CSPDarkNet's LeakyReLU too)."""
    from cnnspec.layers.activation import torch_activation_layer

    act = getattr(module, "act", None)
    plain = act is None or type(act).__name__ == "Identity"
    activation = None if plain else torch_activation_layer(act)
    if not plain and activation is None:
        raise TI.refusal(
            ctx,
            node,
            f"{type(module).__name__} with the activation {type(act).__name__}",
            "its activation must be one with a spec layer (ReLU, SiLU, LeakyReLU, ELU, GELU, ...)",
        )
    _torch_batch_norm(ctx, node, module)
    if activation is not None:
        kind, fields = activation
        name = ctx.builder.add(f"{node.target}.act", kind, [ctx.values[node].name], **fields)
        ctx.values[node] = TI.Node(name, ctx.shape(node))


REGISTRY.reads(
    "torch_module",
    "BatchNormAct2d",
    by="batch_norm",
    produces=(
        "batch_norm",
        "relu",
        "relu6",
        "sigmoid",
        "tanh",
        "silu",
        "hard_swish",
        "hard_sigmoid",
        "mish",
        "selu",
        "leaky_relu",
        "elu",
        "gelu",
    ),
)(_torch_batch_norm_act)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_batch_norm(ctx, node, attrs):
    layout = ctx.value(node.input[0]).layout
    if layout == OI.LAST:
        raise refuse(OI.FRAMEWORK, OI.where(node), "BatchNormalization on a channels-last tensor")
    names = ("gamma", "beta", "moving_mean", "moving_variance")
    tensors = {key: ctx.constant(name, key) for key, name in zip(names, node.input[1:5])}
    fields = {}
    epsilon = float(attrs.get("epsilon", 1e-5))
    if abs(epsilon - 1e-5) > 1e-12:
        fields["epsilon"] = round(epsilon, 12)
    momentum = round(1.0 - float(attrs.get("momentum", 0.9)), 6)
    if momentum != 0.1:
        fields["momentum"] = momentum
    tensors = OI.flat_order(ctx, node.input[0], tensors)
    ctx.add(
        node,
        "batch_norm",
        [node.input[0]],
        layout,
        tensors,
        flattened_last=ctx.value(node.input[0]).flattened_last,
        **fields,
    )


REGISTRY.reads("onnx", "BatchNormalization", by="batch_norm")(_onnx_batch_norm)
