"""resize: to a size or by a scale; nearest, nearest_exact, bilinear (per axis: linear) or bicubic; align_corners."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.resample import TORCH_CUBIC_COEFFICIENT, resize_ratio, scaled_size
from cnnspec.engine.sizes import Size, scale_fraction
from cnnspec.importers import keras as KI
from cnnspec.importers.common import compact, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import Flag, LayerBase, PositiveOrTuple
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T

Factor = Annotated[float, Field(gt=0.0, allow_inf_nan=False)]
_ENGINE_MODES = {
    "nearest": "nearest",
    "nearest_exact": "nearest_exact",
    "bilinear": "linear",
    "bicubic": "cubic",
}
_TORCH_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


class Resize(LayerBase):
    """Resize the spatial dims. Each axis maps output cell i to input position by r = in/out (or (in-1)/(out-1)
    with align_corners); see docs/semantics.md "Resize" for the exact definition of every mode."""

    type: Literal["resize"]
    size: PositiveOrTuple | None = Field(
        default=None, description="Output size: one int for every spatial dim, or one per dim."
    )
    scale: Factor | Annotated[list[Factor], Field(min_length=1, max_length=3)] | None = Field(
        default=None,
        description="Scale factor per spatial dim; output = floor(in * scale). Give size or scale.",
    )
    mode: Literal["nearest", "nearest_exact", "bilinear", "bicubic"] = Field(
        default="nearest",
        description=(
            "'nearest': cell floor(i*r) (PyTorch nearest). 'nearest_exact': cell floor((i+0.5)*r) (PyTorch nearest-exact, "
            "TensorFlow/Keras nearest). 'bilinear': linear per axis (linear/bilinear/trilinear) at (i+0.5)*r-0.5 clamped "
            "at 0. 'bicubic': Keys' cubic per axis at (i+0.5)*r-0.5 with cubic_coefficient."
        ),
    )
    align_corners: Flag = Field(
        default=False,
        description="Map corner cells onto corner cells: r = (in-1)/(out-1). "
        "bilinear and bicubic only.",
    )
    cubic_coefficient: Annotated[float, Field(ge=-1.0, le=0.0)] = Field(
        default=TORCH_CUBIC_COEFFICIENT,
        description="Keys' coefficient a of bicubic: PyTorch/ONNX -0.75, TensorFlow -0.5.",
    )
    exclude_outside: Flag = Field(
        default=False,
        description="bicubic: taps outside the input get weight 0 and the rest is renormalised (TensorFlow); "
        "false: they read the edge cell (PyTorch, ONNX's default).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Resize:
        if (self.size is None) == (self.scale is None):
            raise ValueError("give exactly one of size and scale")
        if self.align_corners and self.mode.startswith("nearest"):
            raise ValueError("align_corners applies to bilinear and bicubic only")
        if self.mode != "bicubic" and (
            self.exclude_outside or self.cubic_coefficient != TORCH_CUBIC_COEFFICIENT
        ):
            raise ValueError("cubic_coefficient and exclude_outside apply to mode bicubic only")
        return self


def _torch_native(layer: LayerPlan) -> str | None:
    """The F.interpolate mode that is exact and exports to ONNX, or None (the Resize helper)."""
    spec, rank = layer.spec, T.spatial_rank(layer)
    if spec.mode == "nearest":
        return "nearest"
    if spec.mode == "bilinear":
        return _TORCH_LINEAR[rank]
    if (
        spec.mode == "bicubic"
        and rank == 2
        and spec.cubic_coefficient == TORCH_CUBIC_COEFFICIENT
        and not spec.exclude_outside
    ):
        return "bicubic"
    return None


def _scales(layer: LayerPlan) -> tuple[float, ...] | None:
    """The per-axis scale where the output size follows an open input size (None: use the planned size)."""
    scale = layer.spec.scale
    if scale is None or not layer.is_open:
        return None
    return tuple(
        float(f) for f in (scale if isinstance(scale, list) else [scale] * len(layer.open_axes))
    )


def _floats_text(values: tuple[float, ...]) -> str:
    items = [T.float_text(v) for v in values]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _helper_target(layer: LayerPlan, ints_text: Any) -> str:
    """The helper's first arguments: the planned size, or the scale when the size is open."""
    scales = _scales(layer)
    if scales is None:
        return ints_text(layer.output_shape[1:])
    return f"scale={_floats_text(scales)}, mode={P.string(_ENGINE_MODES[layer.spec.mode])}"


def _helper_options(spec: Any, keyword_mode: bool = False) -> str:
    options = "" if keyword_mode else f", {P.string(_ENGINE_MODES[spec.mode])}"
    if spec.align_corners:
        options += ", align_corners=True"
    if spec.mode == "bicubic" and spec.cubic_coefficient != TORCH_CUBIC_COEFFICIENT:
        options += f", cubic_coefficient={float(spec.cubic_coefficient)!r}"
    if spec.exclude_outside:
        options += ", exclude_outside=True"
    return options


@register
class ResizeDefinition(LayerDefinition):
    """resize: F.interpolate where exact and exportable, else the Resize helper (always in Keras but for 2-D
    half-pixel bilinear and nearest_exact, which layers.Resizing computes)."""

    model = Resize
    family = "resize"
    words = {"resizing": "resize", "interpolate": "resize", "upsamplingbilinear2d": "resize"}
    hint_text = (
        "resize: half-pixel centres vs align_corners; PyTorch's nearest is floor(i*r), TensorFlow's floor((i+0.5)*r); "
        "bicubic is a=-0.75 with edge taps in PyTorch, a=-0.5 with outside taps excluded in TensorFlow; "
        "F.interpolate(scale_factor=s) maps by 1/s unless recompute_scale_factor=True."
    )
    examples = (
        example({"type": "resize", "size": [9, 5], "mode": "bilinear"}),
        example({"type": "resize", "scale": 1.5, "mode": "bilinear", "align_corners": True}),
        example({"type": "resize", "size": [5, 11], "mode": "nearest"}),
        example({"type": "resize", "scale": [2, 0.5], "mode": "nearest_exact"}, size=(4, 8)),
        example({"type": "resize", "size": 9, "mode": "bicubic"}, size=(6, 5)),
        example(
            {"type": "resize", "size": [4, 9], "mode": "bicubic", "align_corners": True},
            size=(6, 5),
        ),
        example(
            {
                "type": "resize",
                "size": 10,
                "mode": "bicubic",
                "cubic_coefficient": -0.5,
                "exclude_outside": True,
            }
        ),
        example({"type": "resize", "scale": 2.5, "mode": "bilinear"}, size=(5,)),
        example({"type": "resize", "size": 7, "mode": "bicubic"}, size=(4,)),
        example(
            {"type": "resize", "size": [3, 5, 4], "mode": "bilinear"}, channels=2, size=(2, 3, 3)
        ),
        example({"type": "resize", "scale": 2, "mode": "nearest"}, channels=2, size=(2, 3, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = ctx.require_spatial(index, layer.type, shape)
        if layer.size is not None:
            outs = list(ctx.per_dim(index, layer.size, "size", rank))
            formulas = [
                f"{n} → {out} (r = {resize_ratio(n, out, layer.align_corners):.4g})"
                for n, out in zip(shape[1:], outs)
            ]
        else:
            scales = [layer.scale] * rank if not isinstance(layer.scale, list) else layer.scale
            if len(scales) != rank:
                ctx.fail(
                    index,
                    f"scale has {len(scales)} values but the input has {rank} spatial dim(s)",
                    "scale",
                )
            outs = [scaled_size(n, s) for n, s in zip(shape[1:], scales)]
            formulas = [f"⌊{n}·{s:g}⌋ = {out}" for n, s, out in zip(shape[1:], scales, outs)]
            ctx.check_positive(index, layer.type, outs, formulas)
        return dict(
            output_shape=(shape[0], *outs),
            size_formulas=tuple(formulas),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        if layer.spec.size is not None:
            return tuple(Size.fixed(n) for n in layer.output_shape[1:])
        scale = layer.spec.scale
        scales = scale if isinstance(scale, list) else [scale] * len(in_sizes[0])
        return tuple(n.scaled(scale_fraction(s)) for n, s in zip(in_sizes[0], scales))

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        outs = layer.output_shape[1:]
        mode = _torch_native(layer)
        scales = _scales(layer)
        if mode is None:
            target = _helper_target(layer, T.ints_text)
            options = _helper_options(spec, keyword_mode=scales is not None)
            code = T.single_module(layer, inputs, f"Resize({target}{options})")
            code.helpers.add("Resize")
            return code
        corners = (
            ", align_corners=True"
            if spec.align_corners
            else (", align_corners=False" if mode != "nearest" else "")
        )
        if scales is not None:
            # An open size: floor(n * scale) per input, and recompute_scale_factor maps coordinates by
            # in/out like size= does (plain scale_factor= would map them by 1/scale, see docs/semantics.md).
            factor = T.float_text(scales[0]) if len(set(scales)) == 1 else _floats_text(scales)
            return T.LayerCode(
                expression=f"F.interpolate({inputs[0]}, scale_factor={factor}, mode={P.string(mode)}{corners}, "
                "recompute_scale_factor=True)"
            )
        # The resolved size: scale_factor= would map coordinates by 1/scale (see docs/semantics.md).
        return T.LayerCode(
            expression=f"F.interpolate({inputs[0]}, size={T.ints_text(outs)}, mode={P.string(mode)}{corners})"
        )

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        outs = layer.output_shape[1:]
        scales = _scales(layer)
        if (
            layer.spatial_rank == 2
            and scales is None
            and not spec.align_corners
            and spec.mode in ("bilinear", "nearest_exact")
        ):
            interpolation = "bilinear" if spec.mode == "bilinear" else "nearest"
            expression = f"layers.Resizing({int(outs[0])}, {int(outs[1])}, interpolation={P.string(interpolation)}, name={K.quoted(layer.name)})"
            return K.single_layer(layer, ctx, expression)
        helper = ctx.use("Resize")
        target = _helper_target(layer, K.ints_text)
        options = _helper_options(spec, keyword_mode=scales is not None)
        return K.single_layer(
            layer, ctx, f"{helper}({target}{options}, name={K.quoted(layer.name)})"
        )


@REGISTRY.attach("onnx", "resize")
def resize_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Resize to the planned size (coordinates mapped by in/out, as PyTorch given size=).

    nearest: asymmetric + floor; nearest_exact: half_pixel + round_prefer_ceil (floor((i + 0.5)·in/out));
    bilinear and bicubic: half_pixel or align_corners, bicubic with the spec's coefficient (PyTorch -0.75).
    """
    spec = layer.spec
    outs = list(layer.output_shape[1:])
    if layer.is_open and spec.scale is not None:
        sizes = _scaled_sizes(b, layer, inputs[0])
    else:
        sizes = b.constant(b.temp(layer, "sizes"), outs, "int64")
    axes = list(range(2, 2 + len(outs)))
    transform = "align_corners" if spec.align_corners else "half_pixel"
    if spec.mode == "nearest":
        attributes: dict[str, Any] = dict(
            mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"
        )
    elif spec.mode == "nearest_exact":
        attributes = dict(
            mode="nearest",
            coordinate_transformation_mode="half_pixel",
            nearest_mode="round_prefer_ceil",
        )
    elif spec.mode == "bilinear":
        attributes = dict(mode="linear", coordinate_transformation_mode=transform)
    else:
        attributes = dict(
            mode="cubic",
            coordinate_transformation_mode=transform,
            cubic_coeff_a=float(spec.cubic_coefficient),
            exclude_outside=int(spec.exclude_outside),
        )
    if spec.mode != "bicubic" or len(outs) == 2:
        return b.node("Resize", [inputs[0], "", "", sizes], layer.name, axes=axes, **attributes)
    if len(outs) != 1:  # onnxruntime's cubic Resize takes 2-D images only
        from cnnspec.targets.onnx.emit import OnnxUnsupported

        raise OnnxUnsupported(
            f"layer '{layer.name}': no ONNX emission for a bicubic resize of {len(outs)} spatial dims"
        )
    # A 1-D signal as a (1, L) image: the added axis keeps its single row exactly.
    axis = b.constant(b.temp(layer, "row_axis"), [2], "int64")
    image = b.node("Unsqueeze", [inputs[0], axis], b.temp(layer, "image"))
    if layer.is_open and spec.scale is not None:
        row = b.constant(b.temp(layer, "one_row"), [1], "int64")
        image_sizes = b.node("Concat", [row, sizes], b.temp(layer, "image_sizes"), axis=0)
    else:
        image_sizes = b.constant(b.temp(layer, "image_sizes"), [1, *outs], "int64")
    resized = b.node(
        "Resize", [image, "", "", image_sizes], b.temp(layer, "resized"), axes=[2, 3], **attributes
    )
    return b.node("Squeeze", [resized, axis], layer.name)


def _scaled_sizes(b: O.GraphBuilder, layer: LayerPlan, source: str) -> str:
    """⌊n·scale⌋ per axis from the run-time sizes n, in double precision as the plan computes it."""
    from onnx import TensorProto

    rank = len(layer.output_shape) - 1
    scale = layer.spec.scale
    scales = [float(s) for s in (scale if isinstance(scale, list) else [scale] * rank)]
    lengths = b.node(
        "Cast", [O.spatial_sizes(b, layer, source)], b.temp(layer, "lengths"), to=TensorProto.DOUBLE
    )
    factors = b.constant(b.temp(layer, "scales"), scales, "float64")
    scaled = b.node("Mul", [lengths, factors], b.temp(layer, "scaled"))
    floored = b.node("Floor", [scaled], b.temp(layer, "floored"))
    return b.node("Cast", [floored], b.temp(layer, "sizes"), to=TensorProto.INT64)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


_KERAS_RESIZE_MODES = {
    "nearest": "nearest",
    "nearest_exact": "nearest_exact",
    "linear": "bilinear",
    "cubic": "bicubic",
}


@REGISTRY.reads("keras", "Resize", by="resize")
def read_keras_resize(ctx, layer, cfg, inputs, shapes):
    """cnnspec's Resize helper (the engine's mode names: linear / cubic for every rank)."""
    mode = _KERAS_RESIZE_MODES[cfg.get("mode", "linear")]
    fields: dict[str, Any] = {"size": compact(cfg["size"])}
    if mode != "nearest":
        fields["mode"] = mode
    if cfg.get("align_corners"):
        fields["align_corners"] = True
    if mode == "bicubic" and float(cfg.get("cubic_coefficient", -0.75)) != -0.75:
        fields["cubic_coefficient"] = float(cfg["cubic_coefficient"])
    if cfg.get("exclude_outside"):
        fields["exclude_outside"] = True
    ctx.add(layer, "resize", inputs, **fields)


@REGISTRY.reads("keras", "Resizing", by="resize")
def read_keras_resizing(ctx, layer, cfg, inputs, shapes):
    """Keras Resizing: half-pixel bilinear, or nearest reading floor((i + 0.5) * r) (PyTorch's nearest-exact)."""
    KI.channels_last(layer, cfg)
    interpolation = cfg.get("interpolation", "bilinear")
    modes = {"bilinear": "bilinear", "nearest": "nearest_exact"}
    if (
        interpolation not in modes
        or cfg.get("crop_to_aspect_ratio")
        or cfg.get("pad_to_aspect_ratio")
    ):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"Resizing(interpolation={interpolation!r}) with aspect-ratio cropping or padding is not supported",
            "bilinear and nearest resizing to a fixed size are",
        )
    mode = modes[interpolation]
    fields = {"mode": mode} if mode != "nearest" else {}
    ctx.add(layer, "resize", inputs, size=compact([cfg["height"], cfg["width"]]), **fields)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


_TORCH_RESIZE_MODES = {
    "nearest": "nearest",
    "nearest_exact": "nearest_exact",
    "linear": "bilinear",
    "cubic": "bicubic",
}


def _torch_resize_helper(ctx, node, module):
    mode = _TORCH_RESIZE_MODES[module.mode]
    fields: dict[str, Any] = {"size": compact(module.size)}
    if mode != "nearest":
        fields["mode"] = mode
    if module.align_corners:
        fields["align_corners"] = True
    if mode == "bicubic" and float(module.cubic_coefficient) != -0.75:
        fields["cubic_coefficient"] = float(module.cubic_coefficient)
    if module.exclude_outside:
        fields["exclude_outside"] = True
    ctx.add(node, node.args[:1], layer_type="resize", **fields)


REGISTRY.reads("torch_module", "Resize", by="resize")(_torch_resize_helper)
