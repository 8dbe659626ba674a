"""Convolutions: conv1d/2d/3d, depthwise_conv2d, separable_conv2d."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor
from cnnspec.engine.sizes import Size, window_size
from cnnspec.layers.registry import REGISTRY, LayerDefinition, WeightSlot, example, register
from cnnspec.spec.fields import (
    ACTIVATION_DESCRIPTION,
    PADDING_DESCRIPTION,
    Flag,
    InlineActivation,
    LayerBase,
    PaddingSpec,
    Positive,
    PositiveOrTuple,
)
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Conv(LayerBase):
    """N-d convolution (cross-correlation: the kernel is not flipped)."""

    type: Literal["conv1d", "conv2d", "conv3d"]
    filters: Positive = Field(description="Number of kernels = output channels.")
    kernel_size: PositiveOrTuple = Field(
        description="Kernel extent: one int for every spatial dim, or one per dim."
    )
    stride: PositiveOrTuple = Field(default=1, description="Step between windows, per spatial dim.")
    padding: PaddingSpec = Field(default="valid", description=PADDING_DESCRIPTION)
    dilation: PositiveOrTuple = Field(
        default=1, description="Spacing between kernel taps; effective kernel = dilation*(k-1)+1."
    )
    groups: Positive = Field(
        default=1,
        description="Channel groups; input channels and filters must both be divisible by it.",
    )
    bias: Flag = Field(default=True, description="Add a learned bias per output channel.")
    activation: InlineActivation | None = Field(default=None, description=ACTIVATION_DESCRIPTION)


_LAYOUT = (
    "kernel layout (PyTorch OIHW vs Keras HWIO; depthwise (C·m,1,kh,kw) vs (kh,kw,C,m)), the weights "
    "themselves, groups, dilation, bias, or the inline activation"
)


class ConvLike(LayerDefinition):
    """The divergence hint and padding handling shared by every sliding-window convolution."""

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        return tuple(
            window_size(n, k, s, d, pads, layer.padding_mode or "valid")
            for n, k, s, d, pads in zip(
                in_sizes[0],
                layer.kernel_size or (),
                layer.stride or (),
                layer.dilation or (),
                layer.padding or (),
            )
        )

    def hint(self, layer: LayerPlan, border: str, plan: Any) -> str:
        strided = layer.stride is not None and any(s > 1 for s in layer.stride)
        if layer.padding_mode == "same" and strided:
            pads = ", ".join(f"{b}/{a}" for b, a in layer.padding or ())
            return (
                "typical causes: (1) padding 'same' with stride > 1 pads asymmetrically (TF/ONNX SAME_UPPER puts the "
                f"extra cell at the end, here {pads} before/after), so a symmetric PyTorch padding=k//2 shifts every "
                f"window by one cell; (2) {_LAYOUT}." + border
            )
        if not layer.is_symmetric_padding:
            return (
                "typical causes: (1) asymmetric padding must be explicit zero padding before a 'valid' convolution; "
                f"(2) {_LAYOUT}." + border
            )
        return f"typical causes: {_LAYOUT}." + border


def conv_module(
    rank: int,
    in_channels: int,
    out_channels: int,
    kernel: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    bias: bool,
) -> str:
    """An ``nn.Conv{rank}d`` constructor, framework defaults left out."""
    return P.call(
        f"nn.Conv{rank}d",
        T.int_text(in_channels),
        T.int_text(out_channels),
        kernel_size=P.int_or_ints(kernel),
        stride=T.option(stride),
        padding=T.option(padding, 0),
        dilation=T.option(dilation),
        groups=None if groups == 1 else T.int_text(groups),
        bias=None if bias else "False",
    )


def padded_conv(layer: LayerPlan, code: T.LayerCode, source: str) -> tuple[str, tuple[int, ...]]:
    """Symmetric padding stays in the conv; asymmetric padding gets a ``<name>_pad`` helper.

    Returns:
        The (possibly padded) input expression and the conv's own ``padding`` argument.
    """
    rank = T.spatial_rank(layer)
    pads = layer.padding or ()
    if T.is_symmetric(pads):
        return source, tuple(before for before, _ in pads)
    pad = T.attr(layer.name, "pad")
    code.modules.append((pad, T.pad_module(rank, pads)))
    code.note += f"; asymmetric padding {T.pairs_text(pads)} applied by {pad}"
    return f"self.{pad}({source})", (0,) * rank


def bias_slot(module: str = "") -> WeightSlot:
    return WeightSlot("bias", "bias", ("bias",), torch_module=module)


@register
class ConvDefinition(ConvLike):
    """conv1d / conv2d / conv3d (groups, dilation, any padding)."""

    model = Conv
    family = "conv"
    words = {
        "conv": "conv2d",
        "convolution": "conv2d",
        "convolution2d": "conv2d",
    }
    examples = (
        example(
            {"type": "conv1d", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"},
            size=(9,),
        ),
        example(
            {
                "type": "conv2d",
                "filters": 4,
                "kernel_size": 3,
                "stride": 2,
                "padding": "same",
                "activation": "relu",
            }
        ),
        example(
            {
                "type": "conv2d",
                "filters": 6,
                "kernel_size": [3, 2],
                "groups": 3,
                "dilation": 2,
                "padding": 1,
                "bias": False,
            },
            channels=6,
        ),
        example(
            {"type": "conv3d", "filters": 2, "kernel_size": 2, "padding": [[1, 0], [0, 1], [1, 1]]},
            channels=2,
            size=(4, 5, 4),
        ),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        channels, groups = shape[0], layer.groups
        fields, outs = ctx.sliding_window(index, layer, shape, int(layer.type[-2]))
        if channels % groups:
            ctx.fail(
                index,
                f"input channels {channels} are not divisible by groups {groups} "
                f"({channels} mod {groups} = {channels % groups})",
                "groups",
            )
        if layer.filters % groups:
            ctx.fail(
                index,
                f"filters {layer.filters} are not divisible by groups {groups} "
                f"({layer.filters} mod {groups} = {layer.filters % groups})",
                "groups",
            )
        kernel = fields["kernel_size"]
        params = [ParamTensor("kernel", (layer.filters, channels // groups, *kernel))]
        if layer.bias:
            params.append(ParamTensor("bias", (layer.filters,)))
        cin_text = str(channels) if groups == 1 else f"({channels}/{groups})"
        formula = "·".join(map(str, kernel)) + f"·{cin_text}·{layer.filters}"
        formula += f" + {layer.filters}" if layer.bias else ""
        return ctx.with_params(fields, (layer.filters, *outs), params, formula)

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        code = T.LayerCode()
        source, padding = padded_conv(layer, code, inputs[0])
        name = T.attr(layer.name)
        module = conv_module(
            T.spatial_rank(layer),
            layer.input_shape[0],
            spec.filters,
            layer.kernel_size,
            layer.stride,
            padding,
            layer.dilation,
            spec.groups,
            spec.bias,
        )
        code.modules.append((name, module))
        code.expression = T.with_activation(layer, f"self.{name}({source})")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        spec = layer.spec
        source = K.single_input(layer, ctx)
        groups = int(spec.groups)
        strided_dilation = max(layer.stride or (1,)) > 1 and max(layer.dilation or (1,)) > 1
        lines: list[str] = []
        if groups > 1 or strided_dilation:
            # Keras' grouped conv does not export to ONNX, and it refuses strides with dilation: a helper layer.
            lines, source = K.zero_padding_lines(layer, ctx, source)
            expression = P.call(
                ctx.use("PortableConv"),
                str(int(spec.filters)),
                K.ints_text(layer.kernel_size or ()),
                strides=None
                if strided_dilation or max(layer.stride or (1,)) == 1
                else K.ints_text(layer.stride or ()),
                dilation_rate=None
                if max(layer.dilation or (1,)) == 1
                else K.ints_text(layer.dilation or ()),
                groups=None if groups == 1 else str(groups),
                use_bias=None if spec.bias else "False",
                activation=K.activation_value(layer, ctx),
                subsample=K.ints_text(layer.stride or ()) if strided_dilation else None,
                name=K.quoted(layer.name),
            )
            return lines + [K.call(expression, ctx.variable(layer.name), source)]
        same = K.is_keras_same(layer)
        if not same:
            lines, source = K.zero_padding_lines(layer, ctx, source)
        expression = P.call(
            f"layers.Conv{K.RANK_SUFFIX[layer.spatial_rank]}",
            str(int(spec.filters)),
            P.int_or_ints(layer.kernel_size or ()),
            strides=K.option(layer.stride),
            padding=P.string("same") if same else None,
            dilation_rate=K.option(layer.dilation),
            use_bias=None if spec.bias else "False",
            activation=K.activation_value(layer, ctx),
            name=K.quoted(layer.name),
        )
        return lines + [K.call(expression, ctx.variable(layer.name), source)]

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
        return slots + ([bias_slot()] if layer.spec.bias else [])


@REGISTRY.attach("onnx", "conv1d", "conv2d", "conv3d")
def conv_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Conv with per-side pads (asymmetric 'same' included), dilation and groups; kernel (O, I/g, *k)."""
    weights = [b.weight(layer, "kernel")] + ([b.weight(layer, "bias")] if layer.spec.bias else [])
    source, window = O.conv_window(b, layer, inputs[0])
    value = b.node(
        "Conv", [source, *weights], b.temp(layer, "conv"), **window, group=layer.spec.groups
    )
    return O.with_activation(b, layer, value)
