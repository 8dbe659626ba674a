"""Upsampling by integer factors: upsample (nearest or bilinear)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan
from cnnspec.engine.sizes import Size
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import compact, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import LayerBase, PositiveOrTuple
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Upsample(LayerBase):
    """Upsampling by an integer factor."""

    type: Literal["upsample"]
    scale_factor: PositiveOrTuple = Field(description="Integer factor per spatial dim.")
    mode: Literal["nearest", "bilinear"] = Field(
        default="nearest",
        description="'bilinear' (2-D only): half-pixel centres, PyTorch align_corners=False, TF half_pixel_centers=True.",
    )


@register
class UpsampleDefinition(LayerDefinition):
    """upsample: nearest (repeat) or bilinear with half-pixel centres (align_corners=False)."""

    model = Upsample
    family = "upsample"
    words = {
        "upsampling2d": "upsample",
        "upsampling1d": "upsample",
        "upsampling3d": "upsample",
        "interpolate": "upsample",
    }
    hint_text = "upsampling: bilinear needs half-pixel centres (PyTorch align_corners=False); nearest vs bilinear."
    examples = (
        example({"type": "upsample", "scale_factor": 2}),
        example({"type": "upsample", "scale_factor": [2, 3], "mode": "bilinear"}),
        example({"type": "upsample", "scale_factor": 3}, size=(4,)),
        example({"type": "upsample", "scale_factor": [1, 2, 2]}, channels=2, size=(2, 3, 2)),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        spatial = ctx.require_spatial(index, layer.type, shape)
        factors = ctx.per_dim(index, layer.scale_factor, "scale_factor", spatial)
        if layer.mode == "bilinear" and spatial != 2:
            ctx.fail(
                index,
                f"mode 'bilinear' needs a 2-D input, this one has {spatial} spatial dim(s)",
                "mode",
                hint="use mode: nearest",
            )
        outs = [n * f for n, f in zip(shape[1:], factors)]
        return dict(
            output_shape=(shape[0], *outs),
            size_formulas=tuple(f"{n}·{f} = {o}" for n, f, o in zip(shape[1:], factors, outs)),
            param_formula="no parameters",
            kernel_size=factors,
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(n.affine(factor) for n, factor in zip(in_sizes[0], layer.kernel_size or ()))

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """upsample: nearest (repeat) or bilinear with half-pixel centres (align_corners=False)."""
        factors = [P.number(f) for f in layer.kernel_size or ()]
        scale = factors[0] if len(set(factors)) == 1 else "(" + ", ".join(factors) + ")"
        if layer.spec.mode == "bilinear":
            module = P.call(
                "nn.Upsample", scale_factor=scale, mode=P.string("bilinear"), align_corners="False"
            )
        else:
            module = P.call("nn.Upsample", scale_factor=scale)
        return T.single_module(layer, inputs, module)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        size = P.int_or_ints(layer.kernel_size or ())
        if layer.spec.mode == "bilinear":
            # Keras resizes with half-pixel centres, PyTorch's align_corners=False (checked in the tests).
            expression = P.call(
                "layers.UpSampling2D",
                size=size,
                interpolation=P.string("bilinear"),
                name=K.quoted(layer.name),
            )
        else:
            expression = P.call(
                f"layers.UpSampling{K.RANK_SUFFIX[layer.spatial_rank]}",
                size=size,
                name=K.quoted(layer.name),
            )
        return K.single_layer(layer, ctx, expression)


@REGISTRY.attach("onnx", "upsample")
def upsample_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Resize: nearest (each cell repeated) or bilinear with half-pixel centres."""
    factors = O.planned(layer, layer.kernel_size, "kernel_size")
    scales = b.constant(b.temp(layer, "scales"), [1.0, 1.0, *factors], "float32")
    if layer.spec.mode == "bilinear":
        attributes = dict(mode="linear", coordinate_transformation_mode="half_pixel")
    else:
        attributes = dict(
            mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"
        )
    return b.node("Resize", [inputs[0], "", scales], layer.name, **attributes)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "UpSampling1D", "UpSampling2D", "UpSampling3D", by="upsample")
def read_keras_upsample(ctx, layer, cfg, inputs, shapes):
    KI.channels_last(layer, cfg)
    size = cfg["size"]
    size = (size,) if isinstance(size, int) else tuple(size)
    mode = cfg.get("interpolation", "nearest")
    if mode not in ("nearest", "bilinear"):
        raise refuse(
            KI.FRAMEWORK,
            KI.where(layer),
            f"interpolation {mode!r}",
            "nearest and bilinear are supported",
        )
    fields = {"mode": mode} if mode != "nearest" else {}
    ctx.add(layer, "upsample", inputs, scale_factor=compact(size), **fields)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_upsample_module(ctx, node, module):
    _torch_resize(
        ctx,
        node,
        module.size,
        module.scale_factor,
        module.mode,
        module.align_corners,
        getattr(module, "recompute_scale_factor", None),
    )


# PyTorch's interpolation modes -> the spec's (linear interpolation per axis is 'bilinear' at every rank).
_TORCH_MODES = {
    "nearest": "nearest",
    "nearest-exact": "nearest_exact",
    "linear": "bilinear",
    "bilinear": "bilinear",
    "trilinear": "bilinear",
    "bicubic": "bicubic",
}


def _torch_resize(ctx, node, size, scale, mode, align_corners, recompute=None):
    shape = ctx.shape(node.args[0])
    rank = len(shape) - 1
    if mode not in _TORCH_MODES:
        raise TI.refusal(
            ctx,
            node,
            f"interpolation mode {mode!r}",
            "resize reads " + ", ".join(repr(name) for name in _TORCH_MODES),
        )
    mode = _TORCH_MODES[mode]
    if size is None and scale is not None:
        factors = (scale,) * rank if isinstance(scale, (int, float)) else tuple(scale)
        if (
            all(float(f).is_integer() for f in factors)
            and (mode == "nearest" or (mode == "bilinear" and rank == 2))
            and not align_corners
        ):
            fields = {"mode": "bilinear"} if mode == "bilinear" else {}
            ctx.add(
                node,
                node.args[:1],
                layer_type="upsample",
                scale_factor=compact(int(f) for f in factors),
                **fields,
            )
            return
    if size is None and not recompute:
        # PyTorch samples at (i + 0.5) / s - 0.5: the sizes' ratio only where n·s is whole.
        factors = (scale,) * rank if isinstance(scale, (int, float)) else tuple(scale)
        uneven = [(n, f) for n, f in zip(shape[1:], factors) if not float(n * f).is_integer()]
        if uneven:
            n, f = uneven[0]
            raise TI.refusal(
                ctx,
                node,
                f"scale_factor={f} on an axis of {n} cells samples by 1/{f}, not by the ratio of "
                f"the sizes {n} -> {int(n * f)} that cnnspec's resize uses",
                "pass size=... or recompute_scale_factor=True (what ONNX and Keras compute)",
            )
    fields: dict[str, Any] = {"mode": mode}
    if size is not None:
        fields["size"] = compact((size,) * rank if isinstance(size, int) else size)
    else:
        fields["scale"] = scale if isinstance(scale, (int, float)) else list(scale)
    if align_corners:
        fields["align_corners"] = True
    ctx.add(node, node.args[:1], layer_type="resize", **fields)


def _torch_interpolate(ctx, node):
    _torch_resize(
        ctx,
        node,
        node.kwargs.get("size", TI.arg(node, 1, "size")),
        node.kwargs.get("scale_factor", TI.arg(node, 2, "scale_factor")),
        node.kwargs.get("mode", TI.arg(node, 3, "mode", "nearest")),
        node.kwargs.get("align_corners", TI.arg(node, 4, "align_corners")),
        node.kwargs.get("recompute_scale_factor", TI.arg(node, 5, "recompute_scale_factor")),
    )


REGISTRY.reads("torch_module", "Upsample", by="upsample", produces=("upsample", "resize"))(
    _torch_upsample_module
)
REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.interpolate",
    by="upsample",
    produces=("upsample", "resize"),
)(_torch_interpolate)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_resize(ctx, node, attrs):
    import numpy as np

    value = ctx.value(node.input[0])
    in_shape, out_shape = ctx.shapes.get(node.input[0]), ctx.shapes.get(node.output[0])
    if value.layout not in (OI.FIRST, OI.LAST) or not in_shape or in_shape[1] is None:
        raise refuse(OI.FRAMEWORK, OI.where(node), f"{node.op_type} of a {value.layout} tensor")
    rank = len(in_shape)
    channel, spatial = OI.channel_and_spatial_axes(ctx, value.layout, rank)
    mode = OI.decode(attrs.get("mode", "nearest"))
    transform = OI.decode(attrs.get("coordinate_transformation_mode", "half_pixel"))
    nearest = OI.decode(attrs.get("nearest_mode", "round_prefer_floor"))
    scales = None
    for index in (2, 1):  # opset 10's Upsample and Resize-10 keep the scales at 1
        name = node.input[index] if len(node.input) > index else ""
        if name and name in ctx.constants and ctx.constants[name].dtype.kind == "f":
            if ctx.constants[name].size:
                scales = [float(v) for v in ctx.constants[name].tolist()]
    axes = list(attrs.get("axes", range(rank)))
    if scales is not None and len(scales) == len(axes):
        full = [1.0] * rank
        for axis, factor in zip(axes, scales):
            full[axis % rank] = factor
        scales = full
    if None in in_shape[1:]:  # a graph of any input size: only whole factors are size-free
        _onnx_open_upsample(ctx, node, value.layout, spatial, scales, mode, transform, nearest)
        return
    outs = [out_shape[a] for a in spatial] if out_shape and len(out_shape) == rank else None
    if scales is not None:
        # onnxruntime sizes by in * scale, rounded when float32 scales miss an integer by rounding
        # (tf2onnx writes out/in as float32; shape inference floors that one cell short)
        products = [in_shape[a] * scales[a] for a in spatial]
        outs = [int(round(p)) if abs(p - round(p)) < 1e-4 else int(np.floor(p)) for p in products]
    elif outs is None or None in outs:
        raise refuse(
            OI.FRAMEWORK, OI.where(node), "Resize to a size the graph computes at run time"
        )
    if scales is not None and any(scales[a] != 1.0 for a in (0, channel)):
        raise refuse(OI.FRAMEWORK, OI.where(node), "Resize of the batch or channel axis")
    if (
        attrs.get("antialias")
        or OI.decode(attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch"
    ):
        raise refuse(OI.FRAMEWORK, OI.where(node), "Resize with antialias or a kept aspect ratio")
    if scales is not None and not all(
        _onnx_same_mapping(in_shape[a], out, scales[a], mode, transform, nearest)
        for a, out in zip(spatial, outs)
    ):
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"Resize by scales {[scales[a] for a in spatial]} to {outs} cells",
            "the cells are mapped by the given scales, not by in/out: export with size= or an exact factor",
        )
    factors = [out / in_shape[a] for a, out in zip(spatial, outs)]
    if _whole_factors_are_an_upsample(factors, mode, transform, nearest, rank):
        fields = {"scale_factor": compact(int(f) for f in factors)}
        ctx.add(
            node,
            "upsample",
            [node.input[0]],
            value.layout,
            **fields,
            **({"mode": "bilinear"} if mode == "linear" else {}),
        )
        return
    fields: dict[str, Any] = {"size": compact(outs)}
    if mode == "nearest" and transform == "asymmetric" and nearest == "floor":
        pass
    elif mode == "nearest" and (
        (transform == "half_pixel" and nearest == "round_prefer_ceil")
        or (transform == "tf_half_pixel_for_nn" and nearest == "floor")
    ):
        fields["mode"] = "nearest_exact"
    elif mode in ("linear", "cubic") and (
        transform in ("half_pixel", "align_corners")
        or (transform == "pytorch_half_pixel" and min(outs) > 1)
    ):
        fields["mode"] = "bilinear" if mode == "linear" else "bicubic"
        if transform == "align_corners":
            fields["align_corners"] = True
        if mode == "cubic":
            coefficient = OI.number(attrs.get("cubic_coeff_a", -0.75))
            if coefficient != -0.75:
                fields["cubic_coefficient"] = coefficient
            if attrs.get("exclude_outside"):
                fields["exclude_outside"] = True
    else:
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"Resize mode={mode} {transform} nearest_mode={nearest}",
            "nearest (asymmetric floor, or half-pixel: nearest_exact), linear or cubic with half-pixel "
            "or align_corners coordinates",
        )
    ctx.add(node, "resize", [node.input[0]], value.layout, **fields)


def _whole_factors_are_an_upsample(factors, mode: str, transform: str, nearest: str, rank: int):
    """Whether a Resize by these factors is the spec's upsample: whole factors, read the way
    upsample reads (every half-pixel nearest rule reads cell ⌊i / s⌋ at a whole factor)."""
    return all(f.is_integer() and f >= 1 for f in factors) and (
        (mode == "nearest" and transform == "asymmetric" and nearest == "floor")
        or (mode == "nearest" and "half_pixel" in transform)
        or (mode == "linear" and transform in ("half_pixel", "pytorch_half_pixel") and rank == 4)
    )


def _onnx_open_upsample(ctx, node, layout, spatial, scales, mode, transform, nearest) -> None:
    """A Resize of a map whose size the graph leaves open: an upsample by whole factors."""
    rank = len(spatial) + 2
    factors = [scales[a] for a in spatial] if scales is not None else None
    if (
        factors is None
        or any(scales[a] != 1.0 for a in range(rank) if a not in spatial)
        or not _whole_factors_are_an_upsample(factors, mode, transform, nearest, rank)
    ):
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            f"{node.op_type} of a map of any size by scales {scales} ({mode}, {transform})",
            "an upsample by whole factors (nearest or bilinear); other resizes need a fixed size",
        )
    ctx.add(
        node,
        "upsample",
        [node.input[0]],
        layout,
        scale_factor=compact(int(f) for f in factors),
        **({"mode": "bilinear"} if mode == "linear" else {}),
    )


def _onnx_same_mapping(
    size: int, out: int, scale: float, mode: str, transform: str, nearest: str
) -> bool:
    """Whether Resize's coordinates by ``scale`` are the spec's by in/out: equal ratios, or (tf2onnx
    writes out/in rounded to float32) interpolation weights within float rounding and, for nearest,
    the very same source cells."""
    import numpy as np

    if size * scale == out:
        return True
    if abs(np.float32(scale) - np.float32(out / size)) > 2e-7 * (out / size):
        return False
    if mode != "nearest":
        return True
    cells = np.arange(out, dtype=np.float64)
    exact_ratio, given = size / out, np.float64(np.float32(1.0 / np.float32(scale)))
    if transform == "asymmetric":
        return bool(np.array_equal(np.floor(cells * exact_ratio), np.floor(cells * given)))
    centres = (cells + 0.5) * exact_ratio, (cells + 0.5) * np.float64(1 / np.float32(scale))
    return bool(np.array_equal(np.floor(centres[0]), np.floor(centres[1])))


REGISTRY.reads("onnx", "Resize", "Upsample", by="upsample", produces=("upsample", "resize"))(
    _onnx_resize
)
