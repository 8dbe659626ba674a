"""stochastic_depth: drops a residual branch per sample in training; the identity at inference."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, Rate
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class StochasticDepth(LayerBase):
    """In training, zero the whole input of a sample with probability rate (kept samples scaled by 1/(1 - rate));
    the identity at inference. Put it on a residual branch, before the add."""

    type: Literal["stochastic_depth"]
    rate: Rate = Field(description="Probability of dropping the branch for a sample, in training.")


@register
class StochasticDepthDefinition(LayerDefinition):
    """stochastic_depth: the StochasticDepth helper in both frameworks (torchvision's mode 'row')."""

    model = StochasticDepth
    family = "stochastic_depth"
    words = {"stochasticdepth": "stochastic_depth", "droppath": "stochastic_depth"}
    hint_text = (
        "stochastic_depth must be the identity at inference (PyTorch eval(), Keras training=False)."
    )
    examples = (
        example(
            {"type": "conv2d", "filters": 3, "kernel_size": 3, "padding": "same"},
            {"type": "stochastic_depth", "rate": 0.2},
        ),
        example({"type": "stochastic_depth", "rate": 0.5}, size=(6,)),
        example({"type": "stochastic_depth", "rate": 0.1}, channels=2, size=(2, 2, 3)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        return dict(
            output_shape=in_shapes[0],
            param_formula=f"no parameters (the identity at inference; drops the branch with p = {layer.rate} in training)",
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        code = T.single_module(layer, inputs, f"StochasticDepth({T.float_text(layer.spec.rate)})")
        code.helpers.add("StochasticDepth")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        helper = ctx.use("StochasticDepth")
        return K.single_layer(
            layer, ctx, f"{helper}({K.float_text(layer.spec.rate)}, name={K.quoted(layer.name)})"
        )


@REGISTRY.attach("onnx", "stochastic_depth")
def stochastic_depth_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """The identity at inference (the branch is dropped only in training)."""
    return b.node("Identity", [inputs[0]], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "StochasticDepth", by="stochastic_depth")
def read_keras_stochastic_depth(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "stochastic_depth", inputs, rate=float(cfg["rate"]))


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_stochastic_depth(ctx, node, module):
    """cnnspec's own helper (``rate``), torchvision's ``StochasticDepth(p, mode)`` and timm's
    ``DropPath(drop_prob, scale_by_keep)``.

    Where the module drops the branch in training as the spec's type does (per sample, the kept
    ones scaled by 1/(1 - rate)) it becomes that type; otherwise (torchvision's mode "batch",
    timm's ``scale_by_keep=False``) it becomes the identity, which it is at inference, and the
    report says that its training behaviour is not carried over.
    """
    from cnnspec.importers import torch as TI

    if hasattr(module, "rate"):
        rate, per_sample = module.rate, True
    elif hasattr(module, "drop_prob"):
        rate, per_sample = module.drop_prob, getattr(module, "scale_by_keep", True)
    else:
        rate, per_sample = module.p, module.mode == "row"
    if per_sample:
        ctx.add(node, node.args[:1], layer_type="stochastic_depth", rate=float(rate))
        return
    how = f"mode={module.mode!r}" if hasattr(module, "mode") else "scale_by_keep=False"
    ctx.builder.rewrite(
        TI.original_path(node),
        f"{type(module).__name__}({how})",
        "identity: it acts only in training, where it differs from the spec's stochastic_depth "
        "(per sample, kept samples scaled by 1/(1 - rate)), so the converted model does not drop "
        "the branch",
    )
    TI.pass_through(ctx, node, module)


REGISTRY.reads(
    "torch_module",
    "StochasticDepth",
    "DropPath",
    by="stochastic_depth",
    produces=("stochastic_depth", "identity"),
)(_torch_stochastic_depth)
