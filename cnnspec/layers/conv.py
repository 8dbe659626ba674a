"""Convolutions: conv1d/2d/3d, depthwise_conv2d, separable_conv2d."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from cnnspec.engine.plan import LayerPlan, ParamTensor
from cnnspec.engine.sizes import Size, window_size
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import compact, compact_padding, drop_defaults, refuse
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

    'same' padding with a stride on an open axis depends on the input size: a ``SamePad``
    helper works it out per input.

    Returns:
        The (possibly padded) input expression and the conv's own ``padding`` argument.
    """
    rank = T.spatial_rank(layer)
    pads = layer.padding or ()
    if layer.padding_varies:
        pad = T.attr(layer.name, "pad")
        code.modules.append((pad, T.same_pad_module(code, layer)))
        code.note += f"; 'same' padding worked out per input size by {pad}"
        return f"self.{pad}({source})", (0,) * rank
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


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


@REGISTRY.reads(
    "keras", "Conv1D", "Conv2D", "Conv3D", "PortableConv", by="conv2d", absorbs_padding=0.0
)
def read_keras_conv(ctx, layer, cfg, inputs, shapes):
    from cnnspec.layers.channel_conv import keras_conv1d_rows

    KI.channels_last(layer, cfg)
    if keras_conv1d_rows(ctx, layer, cfg, inputs, shapes):
        return
    rank = len(cfg["kernel_size"])
    subsample = cfg.get(
        "subsample", (1,) * rank
    )  # cnnspec's PortableConv: computed at stride 1, then subsampled
    strides = [s * t for s, t in zip(cfg["strides"], subsample)]
    padding: Any
    if cfg["padding"] == "causal":
        # Conv1D's causal padding: the whole footprint before the sequence, nothing after it
        padding = [[cfg["dilation_rate"][0] * (cfg["kernel_size"][0] - 1), 0]]
        ctx.builder.rewrite(layer.name, "padding='causal'", f"padding {padding}")
    else:
        padding = KI.same_or_valid(layer, cfg["padding"])
    ctx.add(
        layer,
        f"conv{rank}d",
        inputs,
        **drop_defaults(
            filters=cfg["filters"],
            kernel_size=compact(cfg["kernel_size"]),
            stride=compact(strides),
            padding=padding,
            dilation=compact(cfg["dilation_rate"]),
            groups=cfg.get("groups", 1),
            bias=cfg["use_bias"],
            activation=KI.inline_activation(ctx, layer, cfg["activation"]),
        ),
    )


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_conv(ctx, node, module, source: str | None = None):
    from cnnspec.layers.channel_conv import torch_conv1d_rows

    rank = len(module.kernel_size)
    if rank == 1 and source is None and torch_conv1d_rows(ctx, node, module):
        return
    # (with no padding the mode changes nothing)
    padded = module.padding_mode != "zeros" and any(module._reversed_padding_repeated_twice)
    if padded:
        _torch_conv_pad(ctx, node, module, rank)
    fields = dict(
        kernel_size=compact(module.kernel_size),
        stride=compact(module.stride),
        padding=0 if padded else TI.conv_padding(module.padding),
        dilation=compact(module.dilation),
        bias=module.bias is not None,
    )
    channels = module.in_channels
    if not padded and _torch_fuse_separable(ctx, node, module, fields):
        return
    if (
        rank == 2
        and module.groups == channels
        and channels > 1
        and module.out_channels % channels == 0
    ):
        ctx.add(
            node,
            node.args[:1],
            layer_type="depthwise_conv2d",
            source=source,
            **drop_defaults(depth_multiplier=module.out_channels // channels, **fields),
        )
        if padded:
            ctx.builder.layers[-1].pop("inputs")  # it reads the pad just made
        return
    ctx.add(
        node,
        node.args[:1],
        layer_type=f"conv{rank}d",
        source=source,
        **drop_defaults(filters=module.out_channels, groups=module.groups, **fields),
    )
    if padded:
        ctx.builder.layers[-1].pop("inputs")  # it reads the pad just made


def _torch_conv_pad(ctx, node, module, rank: int) -> None:
    """``Conv2d(padding_mode='reflect')`` (or 'replicate'): that pad as a layer of its own, the
    convolution then unpadded -- what PyTorch computes (``F.pad``, then ``F.conv2d``)."""
    mode = module.padding_mode
    if mode not in ("reflect", "replicate"):
        raise TI.refusal(
            ctx,
            node,
            f"padding_mode={mode!r}",
            "zero, reflect and replicate padding are read ('circular' wraps around; no spec layer)",
        )
    flat = list(module._reversed_padding_repeated_twice)  # what forward hands F.pad
    pairs = [(flat[2 * i], flat[2 * i + 1]) for i in range(rank)][::-1]
    ctx.builder.add(
        f"{node.target}_pad",
        f"pad{rank}d",
        [ctx.input_name(node.args[0])],
        padding=compact_padding(pairs),
        mode=mode,
        source=node.target,
    )
    ctx.builder.rewrite(
        node.target,
        f"Conv{rank}d(padding_mode={mode!r})",
        f"a {mode} pad{rank}d, then the convolution without padding",
    )


def _torch_fuse_separable(ctx, node, module, fields) -> bool:
    """cnnspec's generated ``<name>_depthwise`` + ``<name>_pointwise`` pair is one separable_conv2d."""
    source = node.args[0]
    users = list(node.users)
    named = node.name in ctx.dict_names or (
        len(users) == 1 and users[0].name in ctx.dict_names
    )  # inline activation
    if not (
        named
        and node.target.endswith("_pointwise")
        and source.op == "call_module"
        and source.target == node.target[: -len("_pointwise")] + "_depthwise"
        and source.name not in ctx.dict_names
    ):
        return False
    depthwise = ctx.builder.layers[-1] if ctx.builder.layers else None
    if depthwise is None or ctx.values[source].name != depthwise["name"]:
        return False
    first = ctx.modules[source.target]
    if depthwise["type"] not in ("depthwise_conv2d", "conv2d") or first.groups != first.in_channels:
        return False  # (one input channel: groups 1 is depthwise too, imported as conv2d)
    ctx.builder.drop_last()
    dropped = ("type", "name", "source", "inputs", "bias", "filters", "groups")
    merged = {k: v for k, v in depthwise.items() if k not in dropped}
    if first.out_channels != first.in_channels:
        merged["depth_multiplier"] = first.out_channels // first.in_channels
    previous = ctx.builder.layers[-1]["name"] if ctx.builder.layers else "input"
    inputs = depthwise.get("inputs", [previous])
    original = ctx.dict_names.get(node.name, node.target[: -len("_pointwise")])
    ctx.builder._names.discard(original)
    name = ctx.builder.add(
        original,
        "separable_conv2d",
        inputs,
        filters=module.out_channels,
        **merged,
        **({} if fields["bias"] else {"bias": False}),
    )
    ctx.values[node] = TI.Node(name, ctx.shape(node))
    return True


REGISTRY.reads(
    "torch_module",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    by="conv2d",
    absorbs_padding=0.0,
    produces=(
        "conv1d",
        "conv2d",
        "conv3d",
        "depthwise_conv2d",
        "separable_conv2d",
        "pad1d",
        "pad2d",
        "pad3d",
    ),
)(_torch_conv)


def _torch_functional_conv(ctx, node):
    """``F.conv2d(x, self.weight, self.bias, stride, padding, dilation, groups)`` in the forward of
    a module that holds those two parameters (a conv subclass with its own forward): the
    convolution, its weights read from that module."""
    import types

    weight, bias = node.args[1], TI.arg(node, 2, "bias", None)
    path = ctx.parameters.get(weight, "")
    owner = path.rpartition(".")[0]
    if (
        weight.op != "get_attr"  # the parameter itself, not a view of it
        or not path.endswith(".weight")
        or owner not in ctx.modules
        or (
            bias is not None
            and (bias.op, ctx.parameters.get(bias)) != ("get_attr", f"{owner}.bias")
        )
    ):
        raise TI.refusal(
            ctx,
            node,
            "a functional convolution whose weights are not one module's weight and bias",
            "F.conv2d(x, self.weight, self.bias, ...) in a module's forward, or an nn.Conv2d",
        )
    shape = tuple(TI.attribute_at(ctx.gm, path).shape)
    rank = len(shape) - 2
    groups = int(TI.arg(node, 6, "groups", 1))

    def per_axis(value) -> tuple:
        return tuple(value) if isinstance(value, (tuple, list)) else (value,) * rank

    padding = TI.arg(node, 4, "padding", 0)
    conv = types.SimpleNamespace(
        kernel_size=shape[2:],
        stride=per_axis(TI.arg(node, 3, "stride", 1)),
        padding=padding if isinstance(padding, str) else per_axis(padding),
        dilation=per_axis(TI.arg(node, 5, "dilation", 1)),
        groups=groups,
        in_channels=shape[1] * groups,
        out_channels=shape[0],
        bias=bias,
        padding_mode="zeros",
    )
    _torch_conv(ctx, node, conv, source=owner)


REGISTRY.reads(
    "torch_function",
    "torch.nn.functional.conv1d",
    "torch.nn.functional.conv2d",
    "torch.nn.functional.conv3d",
    by="conv2d",
    produces=("conv1d", "conv2d", "conv3d", "depthwise_conv2d"),
)(_torch_functional_conv)


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_conv(ctx, node, attrs):
    import numpy as np

    OI.require(ctx, node.input[0], OI.FIRST, "Conv")
    weight = ctx.constant(node.input[1], "weight")
    attrs, lift = OI.unlifted(ctx, node, attrs, node.input[0])
    if lift is not None:
        if weight.shape[lift] != 1:
            raise refuse(
                OI.FRAMEWORK, OI.where(node), "a kernel longer than 1 along the added axis"
            )
        weight = np.squeeze(weight, axis=lift)
    bias = ctx.constant(node.input[2], "bias") if len(node.input) > 2 and node.input[2] else None
    rank = weight.ndim - 2
    group = attrs.get("group", 1)
    channels = weight.shape[1] * group
    common = dict(
        kernel_size=compact(weight.shape[2:]),
        stride=compact(attrs.get("strides", [1] * rank)),
        padding=OI.padding_of(attrs, rank, node),
        dilation=compact(attrs.get("dilations", [1] * rank)),
        bias=bias is not None,
    )
    tensors = {"bias": bias} if bias is not None else {}
    if rank == 2 and group == channels and channels > 1:
        tensors["depthwise_kernel"] = weight
        ctx.add(
            node,
            "depthwise_conv2d",
            [node.input[0]],
            OI.FIRST,
            tensors,
            **drop_defaults(depth_multiplier=weight.shape[0] // channels, **common),
        )
        return
    tensors["kernel"] = weight
    ctx.add(
        node,
        f"conv{rank}d",
        [node.input[0]],
        OI.FIRST,
        tensors,
        lifted=lift,
        **drop_defaults(filters=weight.shape[0], groups=group, **common),
    )


REGISTRY.reads(
    "onnx", "Conv", by="conv2d", produces=("conv1d", "conv2d", "conv3d", "depthwise_conv2d")
)(_onnx_conv)
