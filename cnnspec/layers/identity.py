"""identity: the output is the input (Keras ``Identity`` / ``Activation('linear')``, torch ``nn.Identity``)."""

from __future__ import annotations

from typing import Any, Literal

from cnnspec.engine.plan import LayerPlan
from cnnspec.importers import keras as KI
from cnnspec.importers import torch as TI
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Identity(LayerBase):
    """Passes its input through unchanged (a named point in the model, or a placeholder)."""

    type: Literal["identity"]


@register
class IdentityDefinition(LayerDefinition):
    """identity: no computation, no parameters, any input."""

    model = Identity
    family = "identity"
    words = {"noop": "identity", "passthrough": "identity"}
    hint_text = "identity changes nothing: compare the layer that feeds it."
    examples = (
        example({"type": "identity"}),
        example({"type": "identity"}, size=(6,)),
        example({"type": "global_avg_pool"}, {"type": "identity"}, channels=2, size=(3, 4, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        return dict(output_shape=in_shapes[0], param_formula="no parameters")

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        return T.single_module(layer, inputs, "nn.Identity()")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return K.single_layer(layer, ctx, f"layers.Identity(name={K.quoted(layer.name)})")


@REGISTRY.attach("onnx", "identity")
def identity_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Identity."""
    return b.node("Identity", [inputs[0]], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "Identity", by="identity")
def read_keras_identity(ctx, layer, cfg, inputs, shapes):
    KI.pass_through(ctx, layer, cfg, inputs, shapes)


# Keras layers that act only in training (augmentation, noise, activity regularisation): at
# inference each returns its input (tests/test_import_keras.py checks every one against Keras).
# RandomCrop is not here: its graph has the cropped shape, the inference call does not.
KERAS_TRAINING_ONLY = (
    "ActivityRegularization",
    "AlphaDropout",
    "AugMix",
    "GaussianDropout",
    "GaussianNoise",
    "RandAugment",
    "RandomBrightness",
    "RandomColorDegeneration",
    "RandomColorJitter",
    "RandomContrast",
    "RandomElasticTransform",
    "RandomErasing",
    "RandomFlip",
    "RandomGaussianBlur",
    "RandomGrayscale",
    "RandomHue",
    "RandomInvert",
    "RandomPerspective",
    "RandomPosterization",
    "RandomRotation",
    "RandomSaturation",
    "RandomSharpness",
    "RandomShear",
    "RandomTranslation",
    "RandomZoom",
)


@REGISTRY.reads("keras", *KERAS_TRAINING_ONLY, by="identity")
def read_keras_training_only(ctx, layer, cfg, inputs, shapes):
    ctx.builder.rewrite(
        layer.name,
        type(layer).__name__,
        "identity: it acts only in training, so the converted model does not augment or add noise",
    )
    KI.pass_through(ctx, layer, cfg, inputs, shapes)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_identity(ctx, node, module):
    TI.pass_through(ctx, node, module)


REGISTRY.reads("torch_module", "Identity", by="identity")(_torch_identity)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_identity(ctx, node, attrs):
    """ONNX Identity (exporters write them for renamed outputs): no layer, its output is its input."""
    ctx.alias(node, node.input[0])


REGISTRY.reads("onnx", "Identity", by="identity", produces=())(_onnx_identity)
