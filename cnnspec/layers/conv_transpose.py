"""Transposed convolutions: conv_transpose1d/2d/3d."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from cnnspec.engine import shapes as S
from cnnspec.engine.plan import AXIS_NAMES, LayerPlan, ParamTensor, fmt_count
from cnnspec.engine.sizes import Size
from cnnspec.errors import CnnspecError
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import compact, compact_padding, drop_defaults, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import (
    ACTIVATION_DESCRIPTION,
    Flag,
    InlineActivation,
    LayerBase,
    NonNegative,
    Positive,
    PositiveOrTuple,
)
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class ConvTranspose(LayerBase):
    """N-d transposed convolution (the gradient of a convolution)."""

    type: Literal["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]
    filters: Positive = Field(description="Output channels.")
    kernel_size: PositiveOrTuple
    stride: PositiveOrTuple = 1
    padding: Union[
        Literal["valid", "same"],
        NonNegative,
        Annotated[list[NonNegative], Field(min_length=1, max_length=3)],
    ] = Field(
        default="valid",
        description=(
            "'same': output = in*stride (Keras/TF; the crop's odd cell is taken at the end). "
            "'valid': output = (in-1)*stride + max(dk, stride), dk = dilation*(k-1)+1 (Keras/TF). "
            "An int p or one int per dim: PyTorch's formula, output = (in-1)*stride - 2p + dk + output_padding."
        ),
    )
    output_padding: (
        Union[NonNegative, Annotated[list[NonNegative], Field(min_length=1, max_length=3)]] | None
    ) = Field(
        default=None,
        description=(
            "Extra cells added at the end of each spatial dim; must be < max(stride, dilation). "
            "Default (null): 0 for numeric padding; for 'valid' max(stride - dk, 0) (Keras' rule). "
            "With 'valid' an explicit value gives output = (in-1)*stride + dk + output_padding. Not allowed with 'same'."
        ),
    )
    dilation: PositiveOrTuple = 1
    bias: Flag = True
    activation: InlineActivation | None = Field(default=None, description=ACTIVATION_DESCRIPTION)


def _transpose_mapping(layer: LayerPlan) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    """Per dim: PyTorch ``padding``, ``output_padding`` and the remaining (start, stop-from-end) slice.

    PyTorch's ConvTranspose with padding p and output_padding op crops p cells at the start
    and p - op at the end of the full output (negative: bias-only cells appended).  The
    plan's crop (before, after) is met natively when after <= before and before - after
    is a legal output_padding; otherwise the symmetric part stays in the op and the rest
    is sliced off.
    """
    paddings, output_paddings, slices = [], [], []
    for (before, after), stride, dilation in zip(
        layer.padding or (), layer.stride or (), layer.dilation or ()
    ):
        if after >= before:  # e.g. TF 'same' with an odd total crop: the odd cell goes at the end
            paddings.append(before)
            output_paddings.append(0)
            slices.append((0, after - before))
        elif before - after < stride:
            paddings.append(before)
            output_paddings.append(before - after)
            slices.append((0, 0))
        elif after >= 0:
            paddings.append(after)
            output_paddings.append(0)
            slices.append((before - after, 0))
        else:
            raise CnnspecError(
                f"layer '{layer.name}': a transposed-conv crop of ({before}, {after}) cannot be expressed in PyTorch "
                f"(output_padding {before - after} is not below the stride {stride})"
            )
    return paddings, output_paddings, slices


@register
class ConvTransposeDefinition(LayerDefinition):
    """conv_transpose1d/2d/3d as PyTorch padding/output_padding plus an explicit crop where needed."""

    model = ConvTranspose
    family = "conv_transpose"
    words = {
        "conv2dtranspose": "conv_transpose2d",
        "convtranspose2d": "conv_transpose2d",
        "conv1dtranspose": "conv_transpose1d",
        "convtranspose1d": "conv_transpose1d",
        "conv3dtranspose": "conv_transpose3d",
        "convtranspose3d": "conv_transpose3d",
        "deconv2d": "conv_transpose2d",
    }
    hint_text = (
        "transposed conv: the crop of the full output ((in−1)·stride + k), output_padding at the end, and the kernel "
        "layout (PyTorch IOHW vs Keras HWOI, spatially not flipped)."
    )
    examples = (
        example(
            {
                "type": "conv_transpose1d",
                "filters": 3,
                "kernel_size": 3,
                "stride": 2,
                "padding": "same",
            },
            size=(5,),
        ),
        example(
            {
                "type": "conv_transpose2d",
                "filters": 4,
                "kernel_size": 3,
                "stride": 2,
                "padding": "same",
            }
        ),
        example(
            {
                "type": "conv_transpose2d",
                "filters": 2,
                "kernel_size": [3, 2],
                "stride": 2,
                "padding": 1,
                "output_padding": 1,
                "bias": False,
            }
        ),
        example(
            {
                "type": "conv_transpose2d",
                "filters": 2,
                "kernel_size": 2,
                "stride": 3,
                "dilation": 2,
                "activation": "tanh",
            }
        ),
        example(
            {"type": "conv_transpose3d", "filters": 2, "kernel_size": 2, "stride": 2},
            channels=2,
            size=(3, 4, 3),
        ),
    )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        # the full output (n − 1)·s + dk, less the crop (a negative crop_after is output_padding)
        return tuple(
            n.affine(s, S.effective_kernel(k, d) - s - before - after)
            for n, k, s, d, (before, after) in zip(
                in_sizes[0],
                layer.kernel_size or (),
                layer.stride or (),
                layer.dilation or (),
                layer.padding or (),
            )
        )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        ctx.require_spatial(index, layer.type, shape, rank)
        kernel = ctx.per_dim(index, layer.kernel_size, "kernel_size", rank)
        stride = ctx.per_dim(index, layer.stride, "stride", rank)
        dilation = ctx.per_dim(index, layer.dilation, "dilation", rank)
        if isinstance(layer.padding, str):
            paddings: tuple = (layer.padding,) * rank
            mode = layer.padding
        else:
            paddings = ctx.per_dim(index, layer.padding, "padding", rank)
            mode = "explicit"
        if layer.output_padding is not None and mode == "same":
            ctx.fail(
                index,
                "output_padding cannot be combined with padding 'same' (the output is in·stride)",
                "output_padding",
                hint="use 'valid' or numeric padding with output_padding",
            )
        out_pads = (
            None
            if layer.output_padding is None
            else ctx.per_dim(index, layer.output_padding, "output_padding", rank)
        )
        axes = []
        for axis in range(rank):
            op = None if out_pads is None else out_pads[axis]
            if op is not None and op >= stride[axis]:
                ctx.fail(
                    index,
                    f"output_padding {op} on axis {AXIS_NAMES[rank][axis]} must be smaller than the "
                    f"stride {stride[axis]}",
                    "output_padding",
                    hint="ONNX and Keras require it (PyTorch also takes values below the dilation, "
                    "cells no kernel tap reaches)",
                )
            axes.append(
                S.transpose_axis(
                    shape[axis + 1], kernel[axis], stride[axis], dilation[axis], paddings[axis], op
                )
            )
        formulas = []
        for n, k, s, d, ax in zip(shape[1:], kernel, stride, dilation, axes):
            dk = S.effective_kernel(k, d)
            if mode == "same":
                formulas.append(f"{n}·{s} = {ax.out}")
            else:
                text = f"({n} − 1)·{s} + {dk}"
                if ax.crop_before:
                    text += f" − {ax.crop_before}"
                if ax.crop_after > 0:
                    text += f" − {ax.crop_after}"
                if ax.output_padding:
                    text += f" + {ax.output_padding}"
                formulas.append(f"{text} = {ax.out}")
        ctx.check_positive(index, layer.type, [ax.out for ax in axes], formulas)
        params = [ParamTensor("kernel", (shape[0], layer.filters, *kernel))]
        if layer.bias:
            params.append(ParamTensor("bias", (layer.filters,)))
        formula = (
            "·".join(str(k) for k in kernel)
            + f"·{shape[0]}·{layer.filters}"
            + (f" + {layer.filters}" if layer.bias else "")
        )
        formula += f" = {fmt_count(sum(p.size for p in params))}"
        return dict(
            output_shape=(layer.filters, *[ax.out for ax in axes]),
            kernel_size=kernel,
            stride=stride,
            dilation=dilation,
            padding=tuple((ax.crop_before, ax.crop_after) for ax in axes),
            padding_mode=mode,
            output_padding=tuple(ax.output_padding for ax in axes),
            params=tuple(params),
            size_formulas=tuple(formulas),
            param_formula=formula,
        )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """conv_transpose1d/2d/3d as PyTorch padding/output_padding plus an explicit crop where needed."""
        spec = layer.spec
        rank = T.spatial_rank(layer)
        paddings, output_paddings, slices = _transpose_mapping(layer)
        name = T.attr(layer.name)
        module = P.call(
            f"nn.ConvTranspose{rank}d",
            T.int_text(layer.input_shape[0]),
            T.int_text(spec.filters),
            kernel_size=P.int_or_ints(layer.kernel_size or ()),
            stride=T.option(layer.stride),
            padding=T.option(paddings, 0),
            output_padding=T.option(output_paddings, 0),
            dilation=T.option(layer.dilation),
            bias=None if spec.bias else "False",
        )
        code = T.LayerCode(modules=[(name, module)])
        expression = f"self.{name}({inputs[0]})"
        if any(start or end for start, end in slices):
            # The plan's output sizes are the slice bounds: start cells dropped at the front, the rest at the end.
            parts = []
            for (start, end), size, is_open in zip(slices, layer.output_shape[1:], layer.open_axes):
                stop = (
                    T.int_text(start + size) if not is_open else (T.int_text(-end) if end else "")
                )
                bounds = f"{T.int_text(start) if start else ''}:{stop}"
                parts.append(":" if not (start or end) else bounds)
            expression += "[:, :, " + ", ".join(parts) + "]"
            code.note += f"; crop (before, after) {T.pairs_text(layer.padding or ())} of the full output sliced off"
        code.expression = T.with_activation(layer, expression)
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        pads = layer.padding or ()
        stride, dilation = layer.stride or (), layer.dilation or ()
        crop = tuple((int(b), max(int(a), 0)) for b, a in pads)
        extend = tuple(max(-int(a), 0) for _, a in pads)
        common = dict(
            use_bias=None if spec.bias else "False",
            activation=K.activation_value(layer, ctx),
            name=K.quoted(layer.name),
        )
        # A dilated one goes through the helper: Keras refuses strides > 1 with dilation > 1, and
        # TensorFlow's CPU kernel runs a dilated transposed conv only with oneDNN on.  So do cells
        # past the full output (output_padding, or 'same' with a kernel shorter than the stride):
        # tf2onnx writes them as negative pads, which onnxruntime refuses.
        if max(dilation) == 1 and not any(extend):
            native: dict[str, str | None] | None = None
            if layer.padding_mode == "same":
                native = dict(padding=P.string("same"))
            elif layer.padding_mode == "valid":
                native = {}
            if native is not None:
                expression = P.call(
                    f"layers.Conv{K.RANK_SUFFIX[layer.spatial_rank]}Transpose",
                    str(int(spec.filters)),
                    P.int_or_ints(layer.kernel_size or ()),
                    strides=K.option(stride),
                    **native,
                    dilation_rate=K.option(dilation),
                    **common,
                )
                return K.single_layer(layer, ctx, expression)
        expression = P.call(
            ctx.use("CroppedConvTranspose"),
            str(int(spec.filters)),
            K.ints_text(layer.kernel_size or ()),
            strides=K.ints_text(stride) if max(stride) > 1 else None,
            dilation_rate=K.ints_text(dilation) if max(dilation) > 1 else None,
            crop=K.pairs_text(crop) if any(b or a for b, a in crop) else None,
            extend=K.ints_text(extend) if any(extend) else None,
            **common,
        )
        return K.single_layer(layer, ctx, expression)

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        from cnnspec.weights import layouts as L

        slots = [
            WeightSlot(
                "kernel",
                "weight",
                ("kernel",),
                to_keras=L.kernel_to_keras,
                to_torch=L.kernel_to_torch,
            )
        ]
        return slots + ([WeightSlot("bias", "bias", ("bias",))] if layer.spec.bias else [])


@REGISTRY.attach("onnx", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d")
def conv_transpose_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """ConvTranspose: the plan's crop of the full output as pads, extra end cells as output_padding."""
    padding = O.planned(layer, layer.padding, "padding")
    begins = [before for before, _ in padding]
    ends = [max(after, 0) for _, after in padding]
    extra = [max(-after, 0) for _, after in padding]
    weights = [b.weight(layer, "kernel")] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    value = b.node(
        "ConvTranspose",
        [inputs[0], *weights],
        b.temp(layer, "conv_transpose"),
        kernel_shape=list(O.planned(layer, layer.kernel_size, "kernel_size")),
        strides=list(O.planned(layer, layer.stride, "stride")),
        dilations=list(O.planned(layer, layer.dilation, "dilation")),
        pads=begins + ends,
        output_padding=extra,
    )
    return O.with_activation(b, layer, value)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads(
    "keras", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", by="conv_transpose2d"
)
def read_keras_conv_transpose(ctx, layer, cfg, inputs, shapes):
    KI.channels_last(layer, cfg)
    rank = len(cfg["kernel_size"])
    padding: Any = KI.same_or_valid(layer, cfg["padding"])
    extra = (
        {}
        if cfg.get("output_padding") is None
        else {"output_padding": compact(cfg["output_padding"])}
    )
    if padding == "same" and extra:
        padding = _keras_same_with_output_padding(layer, cfg)
        extra = {}
    ctx.add(
        layer,
        f"conv_transpose{rank}d",
        inputs,
        **drop_defaults(
            filters=cfg["filters"],
            kernel_size=compact(cfg["kernel_size"]),
            stride=compact(cfg["strides"]),
            padding=padding,
            dilation=compact(cfg["dilation_rate"]),
            bias=cfg["use_bias"],
            activation=KI.inline_activation(ctx, layer, cfg["activation"]),
            **extra,
        ),
    )


def _keras_same_with_output_padding(layer, cfg) -> Any:
    """Keras' ``padding="same"`` with an ``output_padding`` op: the output is (in - 1)·s + dk % 2 + op
    long, and TensorFlow crops the full (in - 1)·s + dk cells ``total // 2`` at the start and the
    rest at the end (total = dk - dk % 2 - op).  That is the spec's 'same' where dk % 2 + op = s
    (the usual k=3, s=2, op=1), a numeric padding total / 2 where total is even."""
    sides = []
    for kernel, stride, dilation, extra in zip(
        cfg["kernel_size"], cfg["strides"], cfg["dilation_rate"], cfg["output_padding"], strict=True
    ):
        dk = dilation * (kernel - 1) + 1
        sides.append((dk % 2 + extra == stride, dk - dk % 2 - extra))
    if all(same for same, _ in sides):
        return "same"
    if all(total >= 0 and total % 2 == 0 for _, total in sides):
        return compact([total // 2 for _, total in sides])
    raise refuse(
        KI.FRAMEWORK,
        KI.where(layer),
        f"padding='same' with output_padding={tuple(cfg['output_padding'])}",
        "TensorFlow crops one cell more at the end than at the start there, which neither 'same' "
        "(output = in·stride) nor a numeric padding writes; use padding='valid' with the "
        "output_padding, or 'same' without it",
    )


@REGISTRY.reads("keras", "CroppedConvTranspose", by="conv_transpose2d")
def read_keras_cropped_conv_transpose(ctx, layer, cfg, inputs, shapes):
    """cnnspec's generated CroppedConv{N}DTranspose: the full transposed conv, extended, then cropped.

    The crop (before, after) with ``extend`` cells is PyTorch's padding p = before and
    output_padding = before - after + extend, when that is a legal output padding."""
    rank = len(cfg["kernel_size"])
    spread = tuple(
        cfg.get("spread") or (1,) * rank
    )  # with dilation the stride is applied as `spread`
    strides = tuple(s * t for s, t in zip(cfg["strides"], spread))
    crops = [tuple(pair) for pair in cfg["crop"]]
    paddings: Any = []
    output_paddings = []
    for (before, after), extend, stride in zip(crops, cfg["extend"], strides):
        output_padding = before - after + extend
        paddings.append(before)
        output_paddings.append(output_padding)
    if not all(0 <= op < stride for op, stride in zip(output_paddings, strides)):
        # TF's 'same' crops its odd cell at the end, which no numeric padding does
        sizes = shapes[0][1:-1]
        same = [
            S.transpose_axis(n, k, s, d, "same", None) if n is not None else None
            for n, k, s, d in zip(sizes, cfg["kernel_size"], strides, cfg["dilation_rate"])
        ]
        if any(axis is None for axis in same) or [
            ((axis.crop_before, max(axis.crop_after, 0)), max(-axis.crop_after, 0)) for axis in same
        ] != list(zip(crops, cfg["extend"])):
            raise refuse(
                KI.FRAMEWORK,
                KI.where(layer),
                f"crop {cfg['crop']} has no numeric padding equivalent",
            )
        paddings, output_paddings = "same", []
    extra = {"output_padding": compact(output_paddings)} if any(output_paddings) else {}
    ctx.add(
        layer,
        f"conv_transpose{rank}d",
        inputs,
        **drop_defaults(
            filters=cfg["filters"],
            kernel_size=compact(cfg["kernel_size"]),
            stride=compact(strides),
            padding=paddings if paddings == "same" else compact(paddings),
            dilation=compact(cfg["dilation_rate"]),
            bias=cfg["use_bias"],
            activation=KI.inline_activation(ctx, layer, cfg["activation"]),
            **extra,
        ),
    )


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_conv_transpose(ctx, node, module):
    rank = len(module.kernel_size)
    if module.groups != 1 or module.padding_mode != "zeros":
        raise TI.refusal(
            ctx,
            node,
            "grouped or non-zero-padded transposed convolution",
            "conv_transpose supports groups=1 with zero padding",
        )
    output_padding = compact(module.output_padding)
    ctx.add(
        node,
        node.args[:1],
        layer_type=f"conv_transpose{rank}d",
        **drop_defaults(
            filters=module.out_channels,
            kernel_size=compact(module.kernel_size),
            stride=compact(module.stride),
            padding=compact(module.padding),
            dilation=compact(module.dilation),
            bias=module.bias is not None,
            **({"output_padding": output_padding} if output_padding else {}),
        ),
    )


def torch_same_crop(ctx, node, source, crops) -> bool:
    """``self.up(x)[:, :, a:b, ...]`` right after a transposed convolution (the last layer, read
    only here), whose crop of the full output then is TF's 'same' (the odd cell at the end, which
    PyTorch's padding cannot crop): that layer with ``padding: same`` (the crop readers call this)."""
    previous = ctx.builder.layers[-1] if ctx.builder.layers else None
    if (
        previous is None
        or not previous["type"].startswith("conv_transpose")
        or ctx.values.get(source) is None
        or ctx.values[source].name != previous["name"]
        or len(source.users) != 1
        or source.op != "call_module"
        or source.name in ctx.dict_names
    ):
        return False
    module = ctx.modules[source.target]
    sizes = ctx.shape(source.args[0])[1:]
    same = [
        S.transpose_axis(n, k, s, d, "same", None)
        for n, k, s, d in zip(sizes, module.kernel_size, module.stride, module.dilation)
    ]
    taken = [
        (p + start, p - op + end)
        for p, op, (start, end) in zip(module.padding, module.output_padding, crops)
    ]
    if taken != [(axis.crop_before, axis.crop_after) for axis in same]:
        return False
    previous["padding"] = "same"
    previous.pop("output_padding", None)
    ctx.absorb(node)
    ctx.values[source] = ctx.values[node]
    return True


REGISTRY.reads(
    "torch_module", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", by="conv_transpose2d"
)(_torch_conv_transpose)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_conv_transpose(ctx, node, attrs):
    OI.require(ctx, node.input[0], OI.FIRST, "ConvTranspose")
    weight = ctx.constant(node.input[1], "weight")
    bias = ctx.constant(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    rank = weight.ndim - 2
    if (
        attrs.get("group", 1) != 1
        or attrs.get("output_shape")
        or OI.decode(attrs.get("auto_pad", "NOTSET")) != "NOTSET"
    ):
        raise refuse(
            OI.FRAMEWORK,
            OI.where(node),
            "grouped transposed conv, output_shape or auto_pad",
            "conv_transpose with explicit symmetric pads",
        )
    pads = list(attrs.get("pads", [0] * (2 * rank)))
    symmetric = [min(before, after) for before, after in zip(pads[:rank], pads[rank:])]
    extra = [(b - m, a - m) for b, a, m in zip(pads[:rank], pads[rank:], symmetric)]
    output_padding = compact(attrs.get("output_padding", [0] * rank))
    tensors = {"kernel": weight, **({"bias": bias} if bias is not None else {})}
    full = node.output[0] + "__uncropped" if any(any(pair) for pair in extra) else None
    ctx.add(
        node,
        f"conv_transpose{rank}d",
        [node.input[0]],
        OI.FIRST,
        tensors,
        output=full,
        **drop_defaults(
            filters=weight.shape[1],
            kernel_size=compact(weight.shape[2:]),
            stride=compact(attrs.get("strides", [1] * rank)),
            padding=compact(symmetric),
            dilation=compact(attrs.get("dilations", [1] * rank)),
            bias=bias is not None,
            **({"output_padding": output_padding} if output_padding else {}),
        ),
    )
    if full is not None:  # pads that differ per side (tf2onnx's 'same'): the rest is a crop
        ctx.builder.rewrite(
            OI.readable(node), f"ConvTranspose pads {pads}", f"padding {symmetric}, then a crop"
        )
        ctx.add(node, f"crop{rank}d", [full], OI.FIRST, cropping=compact_padding(extra))


REGISTRY.reads(
    "onnx",
    "ConvTranspose",
    by="conv_transpose2d",
    produces=(
        "conv_transpose1d",
        "conv_transpose2d",
        "conv_transpose3d",
        "crop1d",
        "crop2d",
        "crop3d",
    ),
)(_onnx_conv_transpose)
