"""Dropout: dropout, spatial_dropout (identity at inference)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.importers import keras as KI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, Rate
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Dropout(LayerBase):
    """Dropout; identity at inference."""

    type: Literal["dropout", "spatial_dropout"]
    rate: Rate = Field(
        description="Fraction of units (dropout) or whole channels (spatial_dropout) zeroed in training."
    )


@register
class DropoutDefinition(LayerDefinition):
    """dropout (elements) and spatial_dropout (whole channels: Dropout1d/2d/3d); identity in eval()."""

    model = Dropout
    family = "dropout"
    words = {
        "dropout2d": "spatial_dropout",
        "spatialdropout2d": "spatial_dropout",
        "spatialdropout1d": "spatial_dropout",
        "dropout1d": "spatial_dropout",
        "dropout3d": "spatial_dropout",
        "spatialdropout3d": "spatial_dropout",
    }
    hint_text = "dropout must be the identity at inference (PyTorch eval(), Keras training=False)."
    examples = (
        example({"type": "dropout", "rate": 0.5}),
        example({"type": "spatial_dropout", "rate": 0.3}),
        example({"type": "spatial_dropout", "rate": 0.3}, size=(5,)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        if layer.type == "spatial_dropout":
            ctx.require_spatial(index, layer.type, shape)
        return dict(output_shape=shape, param_formula="no parameters")

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """dropout (elements) and spatial_dropout (whole channels: Dropout1d/2d/3d); identity in eval()."""
        cls = (
            f"nn.Dropout{T.spatial_rank(layer)}d"
            if layer.type == "spatial_dropout"
            else "nn.Dropout"
        )
        rate = layer.spec.rate
        return T.single_module(
            layer, inputs, P.call(cls, *([] if rate == 0.5 else [P.number(rate)]))
        )

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        if layer.type == "spatial_dropout":
            cls = f"layers.SpatialDropout{K.RANK_SUFFIX[layer.spatial_rank]}"
        else:
            cls = "layers.Dropout"
        return K.single_layer(
            layer, ctx, P.call(cls, P.number(layer.spec.rate), name=K.quoted(layer.name))
        )


@REGISTRY.attach("onnx", "dropout", "spatial_dropout")
def dropout_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """The identity at inference."""
    return b.node("Identity", [inputs[0]], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads(
    "keras",
    "Dropout",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
    by="dropout",
    produces=("dropout", "spatial_dropout", "stochastic_depth"),
)
def read_keras_dropout(ctx, layer, cfg, inputs, shapes):
    kind = "spatial_dropout" if type(layer).__name__.startswith("SpatialDropout") else "dropout"
    noise = cfg.get("noise_shape")
    if noise is not None:
        noise = list(noise)[1:]
        if all(
            d == 1 for d in noise
        ):  # one draw per sample drops the whole branch: EfficientNet's stochastic depth
            kind = "stochastic_depth"
        elif len(noise) >= 2 and all(d == 1 for d in noise[:-1]):  # one draw per channel
            kind = "spatial_dropout"
        else:
            raise refuse(
                KI.FRAMEWORK,
                KI.where(layer),
                f"noise_shape {cfg['noise_shape']} is not supported",
                "(None, 1, ..., 1) is stochastic depth, (None, 1, ..., C) spatial dropout",
            )
    ctx.add(layer, kind, inputs, rate=float(cfg["rate"]))


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_dropout(ctx, node, module):
    kind = "dropout" if type(module).__name__ == "Dropout" else "spatial_dropout"
    ctx.add(node, node.args[:1], layer_type=kind, rate=float(module.p))


def _torch_f_dropout(ctx, node):
    ctx.add(node, node.args[:1], layer_type="dropout", rate=float(TI.arg(node, 1, "p", 0.5)))


REGISTRY.reads("torch_module", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", by="dropout")(
    _torch_dropout
)
REGISTRY.reads("torch_function", "torch.nn.functional.dropout", by="dropout")(_torch_f_dropout)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_dropout(ctx, node, attrs):
    """An ONNX Dropout is the identity at inference: no layer, its output is its input."""
    ctx.alias(node, node.input[0])


REGISTRY.reads("onnx", "Dropout", by="dropout", produces=())(_onnx_dropout)
