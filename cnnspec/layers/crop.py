"""crop1d/2d/3d: remove cells at both ends of each spatial dim (Keras Cropping*D; PyTorch slices)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from cnnspec.engine.channels import cropped_length
from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.importers import keras as KI
from cnnspec.importers.common import compact_padding, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, NonNegative, PadPair
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Crop(LayerBase):
    """Remove cells at the start and end of each spatial dim."""

    type: Literal["crop1d", "crop2d", "crop3d"]
    cropping: (
        NonNegative
        | Annotated[list[NonNegative], Field(min_length=1, max_length=3)]
        | Annotated[list[PadPair], Field(min_length=1, max_length=3)]
    ) = Field(
        description="An int, one int per spatial dim, or one [before, after] pair per spatial dim (like padding)."
    )


def _sides(layer: LayerPlan) -> tuple[tuple[int, int], ...]:
    """The planned (before, after) cropping per spatial dim."""
    assert layer.padding is not None, "planned by plan()"
    return layer.padding


@register
class CropDefinition(LayerDefinition):
    """crop1d/2d/3d: layers.Cropping*D; PyTorch x[..., before:n - after] with the stop written out."""

    model = Crop
    family = "crop"
    words = {"cropping1d": "crop1d", "cropping2d": "crop2d", "cropping3d": "crop3d"}
    hint_text = "crop: the (before, after) order per spatial axis."
    examples = (
        example({"type": "crop2d", "cropping": [[1, 0], [1, 0]]}),
        example({"type": "crop1d", "cropping": [[0, 2]]}, size=(6,)),
        example({"type": "crop3d", "cropping": 1}, channels=2, size=(3, 4, 5)),
        example({"type": "crop2d", "cropping": [2, 0]}, size=(8, 5)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        ctx.require_spatial(index, layer.type, shape, rank)
        crops = ctx.explicit_pads(index, layer.cropping, rank, "cropping")
        outs = []
        for n, (before, after) in zip(shape[1:], crops):
            try:
                outs.append(cropped_length(n, before, after))
            except ValueError as error:
                ctx.fail(index, str(error), "cropping")
        return dict(
            output_shape=(shape[0], *outs),
            padding=crops,
            padding_mode="crop",
            size_formulas=tuple(
                f"{n} − {b} − {a} = {o}" for n, (b, a), o in zip(shape[1:], crops, outs)
            ),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(
            n.plus(-before - after) for n, (before, after) in zip(in_sizes[0], layer.padding or ())
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        ranges = []
        for n, (before, after), is_open in zip(
            layer.input_shape[1:], _sides(layer), layer.open_axes
        ):
            start = T.int_text(before) if before else ""
            # the stop counted from the end where the length is open; no stop when nothing is cropped
            # there ('-0' would be empty)
            stop = (T.int_text(-after) if is_open else T.int_text(n - after)) if after else ""
            ranges.append(f"{start}:{stop}")
        return T.LayerCode(expression=f"{inputs[0]}[:, :, {', '.join(ranges)}]")

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        crops = _sides(layer)
        rank = len(crops)
        argument = f"({int(crops[0][0])}, {int(crops[0][1])})" if rank == 1 else K.pairs_text(crops)
        return K.single_layer(
            layer,
            ctx,
            f"layers.Cropping{K.RANK_SUFFIX[rank]}({argument}, name={K.quoted(layer.name)})",
        )


@REGISTRY.attach("onnx", "crop1d", "crop2d", "crop3d")
def crop_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Slice of the spatial dims."""
    return O.spatial_slice(b, layer, inputs[0], _sides(layer))


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "CenterCrop", by="crop2d")
def read_keras_center_crop(ctx, layer, cfg, inputs, shapes):
    """CenterCrop(h, w) of a larger map: a crop of (H - h) // 2 rows at the top, the rest at the
    bottom (columns alike), as Keras computes it; it resizes a smaller one instead."""
    KI.channels_last(layer, cfg)
    size, target = shapes[0][1:3], (int(cfg["height"]), int(cfg["width"]))
    if None in size or any(n < t for n, t in zip(size, target, strict=True)):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"CenterCrop{target} of a {tuple(size)} map",
            "a center crop of a fixed size at least as large is a crop; build the model on a "
            "fixed input size (keras.Input((H, W, C)))",
        )
    cropping = [[(n - t) // 2, n - t - (n - t) // 2] for n, t in zip(size, target, strict=True)]
    ctx.add(layer, "crop2d", inputs, cropping=compact_padding(cropping))


@REGISTRY.reads("keras", "Cropping1D", "Cropping2D", "Cropping3D", by="crop2d")
def read_keras_cropping(ctx, layer, cfg, inputs, shapes):
    rank = len(shapes[0]) - 2
    cropping = cfg["cropping"]
    if rank == 1:
        cropping = [cropping]
    ctx.add(layer, f"crop{rank}d", inputs, cropping=compact_padding(cropping))
