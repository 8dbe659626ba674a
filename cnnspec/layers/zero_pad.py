"""Explicit zero padding: zero_pad1d/2d/3d."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.importers import keras as KI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import compact_padding, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, NonNegative, PadPair
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class ZeroPad(LayerBase):
    """Explicit zero padding of the spatial dims."""

    type: Literal["zero_pad1d", "zero_pad2d", "zero_pad3d"]
    padding: Union[
        NonNegative,
        Annotated[list[NonNegative], Field(min_length=1, max_length=3)],
        Annotated[list[PadPair], Field(min_length=1, max_length=3)],
    ] = Field(
        description="An int, one int per spatial dim, or one [before, after] pair per spatial dim."
    )


@register
class ZeroPadDefinition(LayerDefinition):
    """zero_pad1d/2d/3d (nn.ZeroPad*d takes the last dim first)."""

    model = ZeroPad
    family = "zero_pad"
    words = {
        "zeropadding2d": "zero_pad2d",
        "zeropad2d": "zero_pad2d",
        "zeropadding1d": "zero_pad1d",
        "zeropadding3d": "zero_pad3d",
    }
    hint_text = "zero padding: the (before, after) order per spatial axis."
    examples = (
        example({"type": "zero_pad1d", "padding": [[2, 1]]}, size=(5,)),
        example({"type": "zero_pad2d", "padding": [[1, 0], [0, 2]]}),
        example({"type": "zero_pad3d", "padding": 1}, channels=2, size=(2, 3, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        ctx.require_spatial(index, layer.type, shape, rank)
        pads = ctx.explicit_pads(index, layer.padding, rank)
        outs = [n + b + a for n, (b, a) in zip(shape[1:], pads)]
        return dict(
            output_shape=(shape[0], *outs),
            padding=pads,
            padding_mode="explicit",
            size_formulas=tuple(
                f"{n} + {b} + {a} = {o}" for n, (b, a), o in zip(shape[1:], pads, outs)
            ),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(
            n.plus(before + after) for n, (before, after) in zip(in_sizes[0], layer.padding or ())
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """zero_pad1d/2d/3d (nn.ZeroPad*d takes the last dim first)."""
        pads = layer.padding or ()
        module = T.pad_module(T.spatial_rank(layer), pads)
        return T.single_module(layer, inputs, module, note=f"; padding {T.pairs_text(pads)}")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        expression = P.call(
            f"layers.ZeroPadding{K.RANK_SUFFIX[layer.spatial_rank]}",
            K.padding_value(layer.padding or ()),
            name=K.quoted(layer.name),
        )
        return K.single_layer(layer, ctx, expression)


@REGISTRY.attach("onnx", "zero_pad1d", "zero_pad2d", "zero_pad3d")
def zero_pad_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """A constant Pad of the spatial dims."""
    pads = b.constant(
        b.temp(layer, "pad_amounts"),
        O.spatial_pads(O.planned(layer, layer.padding, "padding")),
        "int64",
    )
    return b.node("Pad", [inputs[0], pads], layer.name, mode="constant")


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", by="zero_pad2d")
def read_keras_zero_pad(ctx, layer, cfg, inputs, shapes):
    KI.channels_last(layer, cfg)
    if KI.absorb_helper_pad(ctx, layer, cfg["padding"], 0.0, inputs):
        return
    padding = cfg["padding"]
    rank = len(shapes[0]) - 2
    if rank == 1:
        padding = [padding] if isinstance(padding[0], int) else padding
    ctx.add(layer, f"zero_pad{rank}d", inputs, padding=compact_padding(padding))


@REGISTRY.reads("keras", "SamePadding", "CeilModePadding", by="zero_pad2d", produces=())
def read_keras_runtime_padding(ctx, layer, cfg, inputs, shapes):
    """cnnspec's run-time padding helpers (open input sizes) before the layer they serve.

    ``SamePadding`` is that layer's 'same' padding; ``CeilModePadding`` its declared padding
    plus the ceil-mode overhang.  Anywhere else the padding depends on the size: no spec layer
    means it.
    """
    value = float(cfg.get("value", 0.0))
    if type(layer).__name__ == "SamePadding":
        absorbed = KI.absorb_helper_pad(ctx, layer, "same", value, inputs)
    else:
        pairs = [list(pair) for pair in cfg["padding"]]
        absorbed = KI.absorb_helper_pad(ctx, layer, pairs, value, inputs, ceil_mode=True)
    if not absorbed:
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"{type(layer).__name__} pads by the input size and serves no layer after it",
            "cnnspec reads it only in front of the conv or pool it was generated for",
        )


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_zero_pad(ctx, node, module):
    value = getattr(module, "value", 0.0)
    rank = int(type(module).__name__[-2])
    flat = list(module.padding)
    pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(rank)][
        ::-1
    ]  # torch lists the last dim first
    TI.pad_layer(ctx, node, rank, pairs, value)


def _torch_runtime_pad(ctx, node, module):
    """cnnspec's run-time padding helpers (open input sizes) before the layer they serve.

    ``SamePad`` is that layer's 'same' padding; ``CeilModePad`` its declared padding plus the
    ceil-mode overhang.  Anywhere else the padding depends on the size: no spec layer means it.
    """
    if type(module).__name__ == "SamePad":
        folded = TI.fold_helper_padding(ctx, node, "same", module.value)
    else:
        folded = TI.fold_helper_padding(ctx, node, module.padding, module.value, ceil_mode=True)
    if not folded:
        raise TI.refusal(
            ctx,
            node,
            f"{type(module).__name__} pads by the input size and serves no layer after it",
            "cnnspec reads it only in front of the conv or pool it was generated for",
        )


REGISTRY.reads("torch_module", "SamePad", "CeilModePad", by="zero_pad2d", produces=())(
    _torch_runtime_pad
)


REGISTRY.reads(
    "torch_module",
    "ZeroPad1d",
    "ZeroPad2d",
    "ZeroPad3d",
    "ConstantPad1d",
    "ConstantPad2d",
    "ConstantPad3d",
    by="zero_pad2d",
    produces=("zero_pad1d", "zero_pad2d", "zero_pad3d", "pad1d", "pad2d", "pad3d"),
)(_torch_zero_pad)
