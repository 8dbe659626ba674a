"""Depthwise and separable convolutions: depthwise_conv2d, separable_conv2d."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor
from cnnspec.importers import keras as KI
from cnnspec.importers.common import compact, drop_defaults
from cnnspec.layers.conv import ConvLike, bias_slot, conv_module, padded_conv
from cnnspec.layers.registry import REGISTRY, WeightSlot, example, register
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


class _DepthwiseFields(LayerBase):
    """Fields shared by depthwise and separable convolutions."""

    kernel_size: PositiveOrTuple
    depth_multiplier: Positive = Field(
        default=1, description="Kernels per input channel (output channels = C * depth_multiplier)."
    )
    stride: PositiveOrTuple = 1
    padding: PaddingSpec = Field(default="valid", description=PADDING_DESCRIPTION)
    dilation: PositiveOrTuple = 1
    bias: Flag = True
    activation: InlineActivation | None = Field(default=None, description=ACTIVATION_DESCRIPTION)


class DepthwiseConv2d(_DepthwiseFields):
    """Depthwise 2-D convolution: each input channel gets depth_multiplier kernels of its own."""

    type: Literal["depthwise_conv2d"]


class SeparableConv2d(_DepthwiseFields):
    """Depthwise 2-D convolution followed by a 1x1 pointwise convolution (bias only on the pointwise)."""

    type: Literal["separable_conv2d"]
    filters: Positive = Field(description="Output channels of the pointwise convolution.")


class _DepthwiseLike(ConvLike):
    def _depthwise_slot(
        self, layer: LayerPlan, module: str, keras_names: tuple[str, ...], **kw: Any
    ) -> WeightSlot:
        from cnnspec.weights import layouts as L

        channels, multiplier = layer.input_shape[0], layer.spec.depth_multiplier
        return WeightSlot(
            "depthwise_kernel",
            "weight",
            keras_names,
            torch_module=module,
            to_keras=lambda t: L.depthwise_to_keras(t, channels, multiplier),
            to_torch=L.depthwise_to_torch,
            **kw,
        )

    def _keras(self, layer: LayerPlan, ctx: K.EmitContext, cls: str, *filters: str) -> list[str]:
        spec = layer.spec
        source = K.single_input(layer, ctx)
        strided_dilation = max(layer.stride or (1,)) > 1 and max(layer.dilation or (1,)) > 1
        same = K.is_keras_same(layer) and not strided_dilation
        lines: list[str] = []
        if not same:
            lines, source = K.zero_padding_lines(layer, ctx, source)
        expression = P.call(
            cls,
            *filters,
            P.int_or_ints(layer.kernel_size or ()),
            strides=K.option(layer.stride),
            padding=P.string("same") if same else None,
            depth_multiplier=None
            if spec.depth_multiplier == 1
            else str(int(spec.depth_multiplier)),
            dilation_rate=K.option(layer.dilation),
            use_bias=None if spec.bias else "False",
            activation=K.activation_value(layer, ctx),
            name=K.quoted(layer.name),
        )
        return lines + [K.call(expression, ctx.variable(layer.name), source)]


@register
class DepthwiseConv2dDefinition(_DepthwiseLike):
    """depthwise_conv2d: a conv with groups = in_channels and in_channels * depth_multiplier outputs."""

    model = DepthwiseConv2d
    family = "depthwise_conv"
    words = {"depthwiseconv2d": "depthwise_conv2d"}
    examples = (
        example(
            {
                "type": "depthwise_conv2d",
                "kernel_size": 3,
                "depth_multiplier": 2,
                "stride": 2,
                "padding": "same",
            }
        ),
        example(
            {
                "type": "depthwise_conv2d",
                "kernel_size": [2, 3],
                "bias": False,
                "activation": "relu6",
            }
        ),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        fields, outs = ctx.sliding_window(index, layer, shape, 2)
        kernel, channels, dm = fields["kernel_size"], shape[0], layer.depth_multiplier
        params = [ParamTensor("depthwise_kernel", (channels * dm, 1, *kernel))]
        if layer.bias:
            params.append(ParamTensor("bias", (channels * dm,)))
        formula = (
            "·".join(map(str, kernel))
            + f"·{channels}·{dm}"
            + (f" + {channels}·{dm}" if layer.bias else "")
        )
        return ctx.with_params(fields, (channels * dm, *outs), params, formula)

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        code = T.LayerCode()
        source, padding = padded_conv(layer, code, inputs[0])
        channels = layer.input_shape[0]
        name = T.attr(layer.name)
        module = conv_module(
            2,
            channels,
            channels * spec.depth_multiplier,
            layer.kernel_size,
            layer.stride,
            padding,
            layer.dilation,
            channels,
            spec.bias,
        )
        code.modules.append((name, module))
        code.expression = T.with_activation(layer, f"self.{name}({source})")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return self._keras(layer, ctx, "layers.DepthwiseConv2D")

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        slots = [self._depthwise_slot(layer, "", ("depthwise_kernel", "kernel"))]
        return slots + ([bias_slot()] if layer.spec.bias else [])


@register
class SeparableConv2dDefinition(_DepthwiseLike):
    """separable_conv2d: a depthwise conv without bias, then a 1x1 pointwise conv with the spec's bias."""

    model = SeparableConv2d
    family = "separable_conv"
    words = {"separableconv2d": "separable_conv2d"}
    examples = (
        example(
            {
                "type": "separable_conv2d",
                "filters": 5,
                "kernel_size": 3,
                "depth_multiplier": 2,
                "padding": "same",
                "stride": 2,
            }
        ),
        example(
            {
                "type": "separable_conv2d",
                "filters": 4,
                "kernel_size": 2,
                "bias": False,
                "activation": "gelu",
            }
        ),
    )

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        fields, outs = ctx.sliding_window(index, layer, shape, 2)
        kernel, channels, dm, filters = (
            fields["kernel_size"],
            shape[0],
            layer.depth_multiplier,
            layer.filters,
        )
        params = [
            ParamTensor("depthwise_kernel", (channels * dm, 1, *kernel)),
            ParamTensor("pointwise_kernel", (filters, channels * dm, 1, 1)),
        ]
        if layer.bias:
            params.append(ParamTensor("bias", (filters,)))
        formula = "·".join(map(str, kernel)) + f"·{channels}·{dm} + {channels}·{dm}·{filters}"
        formula += f" + {filters}" if layer.bias else ""
        return ctx.with_params(fields, (filters, *outs), params, formula)

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        spec = layer.spec
        code = T.LayerCode()
        source, padding = padded_conv(layer, code, inputs[0])
        channels = layer.input_shape[0]
        middle = channels * spec.depth_multiplier
        depthwise, pointwise = T.attr(layer.name, "depthwise"), T.attr(layer.name, "pointwise")
        code.modules.append(
            (
                depthwise,
                conv_module(
                    2,
                    channels,
                    middle,
                    layer.kernel_size,
                    layer.stride,
                    padding,
                    layer.dilation,
                    channels,
                    False,
                ),
            )
        )
        code.modules.append(
            (
                pointwise,
                conv_module(2, middle, spec.filters, (1, 1), (1, 1), (0, 0), (1, 1), 1, spec.bias),
            )
        )
        code.expression = T.with_activation(layer, f"self.{pointwise}(self.{depthwise}({source}))")
        return code

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        return self._keras(layer, ctx, "layers.SeparableConv2D", str(int(layer.spec.filters)))

    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        from cnnspec.weights import layouts as L

        slots = [
            self._depthwise_slot(
                layer,
                "_depthwise",
                ("depthwise_kernel",),
                bias_forbidden="a separable conv has its bias on the pointwise part only "
                "(Keras SeparableConv2D has no depthwise bias)",
            ),
            WeightSlot(
                "pointwise_kernel",
                "weight",
                ("pointwise_kernel",),
                torch_module="_pointwise",
                to_keras=L.kernel_to_keras,
                to_torch=L.kernel_to_torch,
            ),
        ]
        return slots + ([bias_slot("_pointwise")] if layer.spec.bias else [])


@REGISTRY.attach("onnx", "depthwise_conv2d")
def depthwise_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """Conv with one group per input channel; kernel (C*m, 1, *k)."""
    weights = [b.weight(layer, "depthwise_kernel")] + (
        [b.weight(layer, "bias")] if layer.spec.bias else []
    )
    source, window = O.conv_window(b, layer, inputs[0])
    value = b.node(
        "Conv", [source, *weights], b.temp(layer, "conv"), **window, group=layer.input_shape[0]
    )
    return O.with_activation(b, layer, value)


@REGISTRY.attach("onnx", "separable_conv2d")
def separable_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """The depthwise Conv (no bias), then a 1x1 Conv with the bias."""
    source, window = O.conv_window(b, layer, inputs[0])
    depthwise = b.node(
        "Conv",
        [source, b.weight(layer, "depthwise_kernel")],
        b.temp(layer, "depthwise"),
        **window,
        group=layer.input_shape[0],
    )
    weights = [b.weight(layer, "pointwise_kernel")] + (
        [b.weight(layer, "bias")] if layer.spec.bias else []
    )
    value = b.node("Conv", [depthwise, *weights], b.temp(layer, "pointwise"), kernel_shape=[1, 1])
    return O.with_activation(b, layer, value)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads("keras", "DepthwiseConv2D", by="depthwise_conv2d", absorbs_padding=0.0)
def read_keras_depthwise(
    ctx, layer, cfg, inputs, shapes, *, layer_type: str = "depthwise_conv2d", **more
):
    KI.channels_last(layer, cfg)
    ctx.add(
        layer,
        layer_type,
        inputs,
        **more,
        **drop_defaults(
            kernel_size=compact(cfg["kernel_size"]),
            depth_multiplier=cfg["depth_multiplier"],
            stride=compact(cfg["strides"]),
            padding=KI.same_or_valid(layer, cfg["padding"]),
            dilation=compact(cfg["dilation_rate"]),
            bias=cfg["use_bias"],
            activation=KI.inline_activation(ctx, layer, cfg["activation"]),
        ),
    )


@REGISTRY.reads("keras", "SeparableConv2D", by="separable_conv2d", absorbs_padding=0.0)
def read_keras_separable(ctx, layer, cfg, inputs, shapes):
    read_keras_depthwise(
        ctx, layer, cfg, inputs, shapes, layer_type="separable_conv2d", filters=cfg["filters"]
    )
