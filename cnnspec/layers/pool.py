"""Max and average pooling: max_pool1d/2d/3d, avg_pool1d/2d/3d."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from cnnspec.engine import shapes as S
from cnnspec.engine.plan import AXIS_NAMES, LayerPlan
from cnnspec.engine.sizes import Size, ceil_pool_size, window_size
from cnnspec.importers import keras as KI
from cnnspec.importers import onnx as OI
from cnnspec.importers import torch as TI
from cnnspec.importers.common import compact, compact_padding, drop_defaults, refuse
from cnnspec.layers.registry import REGISTRY, LayerDefinition, example, register
from cnnspec.spec.fields import PADDING_DESCRIPTION, Flag, LayerBase, PaddingSpec, PositiveOrTuple
from cnnspec.targets import pysource as P
from cnnspec.targets.keras import code as K
from cnnspec.targets.onnx import graph as O
from cnnspec.targets.torch import code as T


class Pool(LayerBase):
    """Max or average pooling over windows of pool_size."""

    type: Literal[
        "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d"
    ]
    pool_size: PositiveOrTuple
    stride: PositiveOrTuple | None = Field(
        default=None, description="Default (null): equal to pool_size."
    )
    padding: PaddingSpec = Field(
        default="valid",
        description=PADDING_DESCRIPTION
        + " Padded cells never win a max and are never counted by 'same' average pooling.",
    )
    ceil_mode: Flag = Field(
        default=False,
        description=(
            "Round the output size up instead of down (PyTorch's rule: a window may not start in the right padding). "
            "The cells past the input and its padding are never counted."
        ),
    )
    count_include_pad: Flag | None = Field(
        default=None,
        description=(
            "Average pooling only: whether explicit numeric padding cells count in the divisor. "
            "Default (null): true for numeric padding (PyTorch's default); 'same' never counts padding."
        ),
    )


def _torch_pool_padding(layer: LayerPlan) -> tuple[int, ...] | None:
    """The symmetric padding PyTorch's own pools accept (at most half the window), or None."""
    if not T.is_symmetric(layer.padding or ()):
        return None
    pads = tuple(before for before, _ in layer.padding or ())
    if any(2 * p > k for p, k in zip(pads, layer.kernel_size or ())):
        return None
    return pads


class _PoolDefinition(LayerDefinition):
    """The planner and Keras emission both pools share."""

    family = "pool"
    hint_text = (
        "pooling: ceil_mode, count_include_pad, and padded cells — they must never win a max nor count in an average "
        "unless count_include_pad."
    )
    model = Pool

    def plan(self, ctx: Any, index: int, layer: Any, in_shapes: Any) -> dict[str, Any]:
        shape = in_shapes[0]
        rank = int(layer.type[-2])
        ctx.require_spatial(index, layer.type, shape, rank)
        window = ctx.per_dim(index, layer.pool_size, "pool_size", rank)
        stride = (
            window if layer.stride is None else ctx.per_dim(index, layer.stride, "stride", rank)
        )
        is_avg = layer.type.startswith("avg")
        if layer.count_include_pad is not None and not is_avg:
            ctx.fail(
                index, "count_include_pad applies to average pooling only", "count_include_pad"
            )
        ones = (1,) * rank
        pads, mode = ctx.window_padding(index, layer, shape, window, stride, ones)
        if mode == "same" and layer.count_include_pad:
            ctx.fail(
                index,
                "count_include_pad: true contradicts padding 'same', which never counts padded cells",
                "count_include_pad",
                hint="use numeric padding to count padded cells",
            )
        if mode == "same" and layer.ceil_mode:
            ctx.fail(
                index,
                "ceil_mode has no effect with padding 'same' (its output is already ⌈in / stride⌉)",
                "ceil_mode",
            )
        for axis, ((b, a), k) in enumerate(zip(pads, window)):
            if b >= k or a >= k:
                ctx.fail(
                    index,
                    f"padding ({b}, {a}) on axis {AXIS_NAMES[rank][axis]} must be smaller than the pool size {k}, or some window would hold only padding",
                    "padding",
                )
        axes = [
            S.pool_axis(n, k, s, b, a, layer.ceil_mode)
            for n, k, s, (b, a) in zip(shape[1:], window, stride, pads)
        ]
        formulas = []
        for n, k, s, (b, a), ax in zip(shape[1:], window, stride, pads, axes):
            if mode == "same":
                formulas.append(f"⌈{n} / {s}⌉ = {ax.out}")
            elif layer.ceil_mode:
                formulas.append(
                    f"⌈({n} + {b + a} − {k}) / {s}⌉ + 1 = {ax.out}"
                    + (
                        "  (last window may not start in the padding)"
                        if ax.out != S.ceil_div(max(n + b + a - k, 0), s) + 1
                        else ""
                    )
                )
            else:
                formulas.append(f"⌊({n} + {b + a} − {k}) / {s}⌋ + 1 = {ax.out}")
        ctx.check_positive(index, layer.type, [ax.out for ax in axes], formulas)
        count_include_pad = None
        if is_avg:
            count_include_pad = (
                False
                if mode == "same"
                else (True if layer.count_include_pad is None else layer.count_include_pad)
            )
        return dict(
            output_shape=(shape[0], *[ax.out for ax in axes]),
            kernel_size=window,
            stride=stride,
            dilation=ones,
            padding=pads,
            padding_mode=mode,
            ceil_extra=tuple(ax.ceil_extra for ax in axes),
            count_include_pad=count_include_pad,
            size_formulas=tuple(formulas),
            param_formula="no parameters",
        )

    def output_sizes(self, layer: LayerPlan, in_sizes: Any) -> tuple[Size, ...]:
        sizes = []
        for n, k, s, pads in zip(
            in_sizes[0], layer.kernel_size or (), layer.stride or (), layer.padding or ()
        ):
            if layer.spec.ceil_mode:
                sizes.append(ceil_pool_size(n, k, s, pads))
            else:
                sizes.append(window_size(n, k, s, 1, pads, layer.padding_mode or "valid"))
        return tuple(sizes)

    def keras(self, layer: LayerPlan, ctx: K.EmitContext) -> list[str]:
        rank = layer.spatial_rank
        source = K.single_input(layer, ctx)
        target = ctx.variable(layer.name)
        is_max = layer.type.startswith("max")
        pads = tuple((int(b), int(a)) for b, a in layer.padding or ())
        extra = tuple(int(e) for e in (layer.ceil_extra or (0,) * rank))
        padded = any(b or a for b, a in pads)
        overhang = any(extra) or layer.overhang_varies
        # Keras' SAME never counts or picks padded cells: exact wherever the plan pads like SAME and does not count.
        same = K.is_keras_same(layer) and not overhang and (is_max or not layer.count_include_pad)
        lines: list[str] = []
        if same or not (padded or overhang or layer.padding_varies):
            pass
        elif layer.padding_varies and is_max:
            lines, source = K.same_padding_lines(layer, ctx, source, 'float("-inf")')
        elif layer.padding_varies or (layer.overhang_varies and not is_max):
            # 'same' or ceil-mode windows that follow the input size: worked out per input
            expression = P.call(
                ctx.use("CountedAveragePooling"),
                K.ints_text(layer.kernel_size or ()),
                K.ints_text(layer.stride or ()),
                padding=P.string("same") if layer.padding_varies else K.pairs_text(pads),
                count_include_pad=str(bool(layer.count_include_pad))
                if layer.count_include_pad
                else None,
                ceil_mode=None if layer.padding_varies else "True",
                name=K.quoted(layer.name),
            )
            return [K.call(expression, target, source)]
        elif layer.overhang_varies:
            pad_name = ctx.helper_name(layer, "pad")
            expression = P.call(
                ctx.use("CeilModePadding"),
                K.ints_text(layer.kernel_size or ()),
                K.ints_text(layer.stride or ()),
                K.pairs_text(pads),
                value='float("-inf")',
                name=K.quoted(pad_name),
            )
            lines.append(K.call(expression, pad_name, source))
            source = pad_name
        elif is_max:
            pad_name = ctx.helper_name(layer, "pad")
            total = tuple((b, a + e) for (b, a), e in zip(pads, extra))
            expression = P.call(
                ctx.use("ConstantPadding"),
                K.pairs_text(total),
                value='float("-inf")',
                name=K.quoted(pad_name),
            )
            lines.append(K.call(expression, pad_name, source))
            source = pad_name
        elif overhang or not layer.count_include_pad:
            expression = P.call(
                ctx.use("CountedAveragePooling"),
                K.ints_text(layer.kernel_size or ()),
                K.ints_text(layer.stride or ()),
                padding=K.pairs_text(pads),
                ceil_extra=K.ints_text(extra),
                count_include_pad=str(bool(layer.count_include_pad)),
                name=K.quoted(layer.name),
            )
            return [K.call(expression, target, source)]
        else:
            lines, source = K.zero_padding_lines(layer, ctx, source)
        kind = "MaxPooling" if is_max else "AveragePooling"
        expression = P.call(
            f"layers.{kind}{K.RANK_SUFFIX[rank]}",
            P.int_or_ints(layer.kernel_size or ()),
            strides=None
            if layer.stride == layer.kernel_size
            else P.int_or_ints(layer.stride or ()),
            padding=P.string("same") if same else None,
            name=K.quoted(layer.name),
        )
        lines.append(K.call(expression, target, source))
        return lines


@register
class MaxPoolDefinition(_PoolDefinition):
    """max_pool1d/2d/3d: padded cells (declared and ceil overhang) never win."""

    types = ("max_pool1d", "max_pool2d", "max_pool3d")
    words = {
        "maxpooling2d": "max_pool2d",
        "maxpool2d": "max_pool2d",
        "maxpooling1d": "max_pool1d",
        "maxpool1d": "max_pool1d",
        "maxpooling3d": "max_pool3d",
        "maxpool3d": "max_pool3d",
    }
    examples = (
        example({"type": "max_pool1d", "pool_size": 3, "stride": 2, "padding": "same"}, size=(9,)),
        example(
            {"type": "max_pool2d", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}
        ),
        example({"type": "max_pool2d", "pool_size": 2, "padding": [[1, 0], [0, 1]]}),
        example({"type": "max_pool3d", "pool_size": 2, "stride": 1}, channels=2, size=(3, 4, 3)),
    )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """max_pool1d/2d/3d: padded cells (declared and ceil overhang) never win."""
        rank = T.spatial_rank(layer)
        name = T.attr(layer.name)
        code = T.LayerCode()
        extra = layer.ceil_extra or (0,) * rank
        native = _torch_pool_padding(layer)
        source = inputs[0]
        window = P.int_or_ints(layer.kernel_size or ())
        stride = None if layer.stride == layer.kernel_size else P.int_or_ints(layer.stride or ())
        if layer.padding_varies:
            pad = T.attr(layer.name, "pad")
            code.modules.append((pad, T.same_pad_module(code, layer, "-math.inf")))
            code.needs_math = True
            code.note += f"; 'same' padding worked out per input size with -inf by {pad}"
            source = f"self.{pad}({source})"
            module = P.call(f"nn.MaxPool{rank}d", window, stride=stride)
        elif native is not None:
            # PyTorch pads with -inf internally; its ceil_mode rule is the plan's for symmetric padding.
            module = P.call(
                f"nn.MaxPool{rank}d",
                window,
                stride=stride,
                padding=T.option(native, 0),
                ceil_mode="True" if any(extra) or layer.overhang_varies else None,
            )
        elif layer.overhang_varies:
            pad = T.attr(layer.name, "pad")
            constructor = P.call(
                T.use_helper(code, "CeilModePad"),
                T.ints_text(layer.kernel_size or ()),
                T.ints_text(layer.stride or ()),
                T.pairs_text(layer.padding or ()),
                value="-math.inf",
            )
            code.modules.append((pad, constructor))
            code.needs_math = True
            code.note += (
                f"; padding and ceil overhang (worked out per input size) with -inf by {pad}"
            )
            source = f"self.{pad}({source})"
            module = P.call(f"nn.MaxPool{rank}d", window, stride=stride)
        else:
            pad = T.attr(layer.name, "pad")
            code.modules.append((pad, T.pad_module(rank, layer.padding or (), extra, "-math.inf")))
            code.needs_math = True
            overhang = f" + ceil overhang {T.ints_text(extra)}" if any(extra) else ""
            code.note += (
                f"; padding {T.pairs_text(layer.padding or ())}{overhang} with -inf by {pad}"
            )
            source = f"self.{pad}({source})"
            module = P.call(f"nn.MaxPool{rank}d", window, stride=stride)
        code.modules.append((name, module))
        code.expression = f"self.{name}({source})"
        return code


@register
class AvgPoolDefinition(_PoolDefinition):
    """avg_pool1d/2d/3d: divide by real cells (+ declared padding if counted); ceil overhang never counts."""

    types = ("avg_pool1d", "avg_pool2d", "avg_pool3d")
    words = {
        "averagepooling2d": "avg_pool2d",
        "avgpool2d": "avg_pool2d",
        "averagepooling1d": "avg_pool1d",
        "avgpool1d": "avg_pool1d",
        "averagepooling3d": "avg_pool3d",
        "avgpool3d": "avg_pool3d",
    }
    examples = (
        example({"type": "avg_pool1d", "pool_size": 2}, size=(9,)),
        example({"type": "avg_pool2d", "pool_size": 3, "stride": 2, "padding": "same"}),
        example(
            {
                "type": "avg_pool2d",
                "pool_size": 3,
                "stride": 2,
                "padding": 1,
                "count_include_pad": False,
                "ceil_mode": True,
            }
        ),
        example({"type": "avg_pool2d", "pool_size": 3, "padding": 1}),
        example(
            {"type": "avg_pool3d", "pool_size": 2, "padding": 1, "count_include_pad": False},
            channels=2,
            size=(3, 4, 3),
        ),
    )

    def torch(self, layer: LayerPlan, inputs: list[str]) -> T.LayerCode:
        """avg_pool1d/2d/3d: divide by real cells (+ declared padding if counted); ceil overhang never counts."""
        rank = T.spatial_rank(layer)
        name = T.attr(layer.name)
        code = T.LayerCode()
        extra = tuple(layer.ceil_extra or (0,) * rank)
        count_padding = bool(layer.count_include_pad)
        has_padding = any(b or a for b, a in layer.padding or ())
        native = _torch_pool_padding(layer)
        if rank == 3 and any(n < k for n, k in zip(layer.input_shape[1:], layer.kernel_size or ())):
            native = None  # PyTorch's avg_pool3d refuses an input (before its own padding) smaller than the window
        source = inputs[0]
        window = P.int_or_ints(layer.kernel_size or ())
        stride = None if layer.stride == layer.kernel_size else P.int_or_ints(layer.stride or ())
        if layer.padding_varies:
            # 'same' pads per input size and never counts the padding
            module = P.call(
                T.use_helper(code, "CountedAvgPool"),
                kernel_size=T.ints_text(layer.kernel_size or ()),
                stride=T.ints_text(layer.stride or ()),
                padding=P.string("same"),
            )
        elif native is not None:
            # PyTorch's divisor: real cells, plus its own padding when count_include_pad; never the ceil overhang.
            module = P.call(
                f"nn.AvgPool{rank}d",
                window,
                stride=stride,
                padding=T.option(native, 0),
                ceil_mode="True" if any(extra) or layer.overhang_varies else None,
                count_include_pad="False" if has_padding and not count_padding else None,
            )
        elif layer.overhang_varies:
            module = P.call(
                T.use_helper(code, "CountedAvgPool"),
                kernel_size=T.ints_text(layer.kernel_size or ()),
                stride=T.ints_text(layer.stride or ()),
                padding=T.pairs_text(layer.padding or ()),
                count_padding=str(count_padding),
                ceil_mode="True",
            )
        elif count_padding and not any(extra):
            # Every cell of every window counts: zero padding in front of an unpadded average.
            pad = T.attr(layer.name, "pad")
            code.modules.append((pad, T.pad_module(rank, layer.padding or ())))
            code.note += f"; counted padding {T.pairs_text(layer.padding or ())} applied by {pad}"
            source = f"self.{pad}({source})"
            module = P.call(f"nn.AvgPool{rank}d", window, stride=stride)
        else:
            module = P.call(
                T.use_helper(code, "CountedAvgPool"),
                kernel_size=T.ints_text(layer.kernel_size or ()),
                stride=T.ints_text(layer.stride or ()),
                padding=T.pairs_text(layer.padding or ()),
                overhang=T.ints_text(extra),
                count_padding=str(count_padding),
            )
        code.modules.append((name, module))
        code.expression = f"self.{name}({source})"
        return code


@REGISTRY.attach(
    "onnx", *REGISTRY.definition("max_pool2d").types, *REGISTRY.definition("avg_pool2d").types
)
def pool_onnx(b: O.GraphBuilder, layer: LayerPlan, inputs: list[str]) -> str:
    """MaxPool / AveragePool.

    The ceil-mode overhang (``ceil_extra``) becomes more end padding with floor rounding: a
    MaxPool's padding never wins and an AveragePool with ``count_include_pad=0`` never counts
    it.  Padding that an average counts is real zeros from a Pad node in front.
    """
    padding = list(O.planned(layer, layer.padding, "padding"))
    extra = layer.ceil_extra or (0,) * len(padding)
    source = inputs[0]
    attributes: dict[str, int] = {}
    op = "MaxPool" if layer.type.startswith("max") else "AveragePool"
    if layer.is_open and layer.padding_mode == "same":
        return _open_same_pool(b, layer, source, op)
    if layer.is_open and layer.spec.ceil_mode:
        # onnxruntime's ceil mode is PyTorch's at every size (the last window starts inside the
        # input or the left padding; the divisor as count_include_pad says), measured in
        # tests/test_verify_sizes.py; the overhang then follows the run-time size
        if op == "AveragePool":
            attributes["count_include_pad"] = int(bool(layer.count_include_pad))
        return b.node(
            op,
            [source],
            layer.name,
            kernel_shape=list(O.planned(layer, layer.kernel_size, "kernel_size")),
            strides=list(O.planned(layer, layer.stride, "stride")),
            pads=O.flat_pads(padding),
            ceil_mode=1,
            **attributes,
        )
    if op == "AveragePool":
        attributes["count_include_pad"] = 0
        if layer.count_include_pad and any(before or after for before, after in padding):
            amounts = b.constant(b.temp(layer, "pad_amounts"), O.spatial_pads(padding), "int64")
            source = b.node("Pad", [source, amounts], b.temp(layer, "padded"), mode="constant")
            padding = [(0, 0)] * len(padding)
    pads = [(before, after + more) for (before, after), more in zip(padding, extra)]
    return b.node(
        op,
        [source],
        layer.name,
        kernel_shape=list(O.planned(layer, layer.kernel_size, "kernel_size")),
        strides=list(O.planned(layer, layer.stride, "stride")),
        pads=O.flat_pads(pads),
        **attributes,
    )


def _open_same_pool(b: O.GraphBuilder, layer: LayerPlan, source: str, op: str) -> str:
    """A 'same' pool whose input size is open: the padding follows the run-time size.

    Where every window is at least its stride, ``auto_pad=SAME_UPPER`` (onnxruntime's rule then
    equals the plan's: measured in tests/test_verify_sizes.py; it refuses the negative padding of
    a smaller window).  Otherwise a Pad node from the run-time size: −inf before a max pool (the
    padding never wins); an average of real cells only divides the sum over the padded input by
    the count of real cells.  An average that counts the padding averages real zeros.
    """
    kernel = list(O.planned(layer, layer.kernel_size, "kernel_size"))
    strides = list(O.planned(layer, layer.stride, "stride"))
    window = dict(kernel_shape=kernel, strides=strides)
    if layer.count_include_pad and op == "AveragePool":
        return b.node(op, [O.same_pad(b, layer, source)], layer.name, **window)
    if all(k >= s for k, s in zip(kernel, strides)):
        counting = {"count_include_pad": 0} if op == "AveragePool" else {}
        return b.node(op, [source], layer.name, auto_pad="SAME_UPPER", **counting, **window)
    if op == "MaxPool":
        padded = O.same_pad(b, layer, source, float("-inf"))
        return b.node(op, [padded], layer.name, **window)
    import numpy as np
    from onnx import numpy_helper

    mean = b.node(op, [O.same_pad(b, layer, source)], b.temp(layer, "padded_mean"), **window)
    ones = b.node(
        "ConstantOfShape",
        [b.node("Shape", [source], b.temp(layer, "shape"))],
        b.temp(layer, "ones"),
        value=numpy_helper.from_array(np.ones(1, dtype=np.float32)),
    )
    counted = b.node(
        op, [O.same_pad(b, layer, ones, role="mask")], b.temp(layer, "counted"), **window
    )
    return b.node("Div", [mean, counted], layer.name)


# -- what the importers read as this type (claimed with REGISTRY.reads: Keras) --------------


def _read_keras_pool(kind: str):
    def read_keras_pool(ctx, layer, cfg, inputs, shapes):
        KI.channels_last(layer, cfg)
        size = cfg["pool_size"]
        size = (size,) if isinstance(size, int) else tuple(size)
        strides = cfg.get("strides") or size
        strides = (strides,) if isinstance(strides, int) else tuple(strides)
        fields = drop_defaults(
            pool_size=compact(size), padding=KI.same_or_valid(layer, cfg["padding"])
        )
        if tuple(strides) != tuple(size):  # a pool's stride defaults to its size, not to 1
            fields["stride"] = compact(strides)
        ctx.add(layer, f"{kind}_pool{len(size)}d", inputs, **fields)

    return read_keras_pool


REGISTRY.reads(
    "keras",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
    by="max_pool2d",
    absorbs_padding=-math.inf,
)(_read_keras_pool("max"))
REGISTRY.reads(
    "keras",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    by="avg_pool2d",
    absorbs_padding=0.0,
)(_read_keras_pool("avg"))


@REGISTRY.reads("keras", "CountedAveragePooling", by="avg_pool2d")
def read_keras_counted_average_pooling(ctx, layer, cfg, inputs, shapes):
    """cnnspec's generated CountedAveragePooling helper, read back as the avg pool it implements."""
    size, strides = tuple(cfg["pool_size"]), tuple(cfg["strides"])
    fields = drop_defaults(
        pool_size=compact(size),
        padding=compact_padding(cfg["padding"]),
        ceil_mode=any(cfg["ceil_extra"]),
    )
    if strides != size:
        fields["stride"] = compact(strides)
    if not cfg["count_include_pad"] and any(any(pair) for pair in cfg["padding"]):
        fields["count_include_pad"] = False
    ctx.add(layer, f"avg_pool{len(size)}d", inputs, **fields)


# -- what the importers read as this type (claimed with REGISTRY.reads: PyTorch) ------------


def _torch_pool(kind: str):
    def reader(ctx, node, module):
        kernel = module.kernel_size
        rank = int(type(module).__name__[-2])
        kernel = (kernel,) * rank if isinstance(kernel, int) else tuple(kernel)
        stride = module.stride if module.stride is not None else kernel
        stride = (stride,) * rank if isinstance(stride, int) else tuple(stride)
        padding = module.padding
        padding = (padding,) * rank if isinstance(padding, int) else tuple(padding)
        if kind == "max" and (
            getattr(module, "return_indices", False) or compact(module.dilation) != 1
        ):
            raise TI.refusal(
                ctx, node, "max pooling with dilation or return_indices", "max_pool without them"
            )
        if kind == "avg" and getattr(module, "divisor_override", None):
            raise TI.refusal(
                ctx, node, "divisor_override", "avg_pool counts cells as count_include_pad says"
            )
        fields = dict(
            pool_size=compact(kernel),
            padding=TI.conv_padding(padding) if any(padding) else "valid",
            ceil_mode=bool(module.ceil_mode),
        )
        if stride != kernel:
            fields["stride"] = compact(stride)
        if kind == "avg" and any(padding) and not module.count_include_pad:
            fields["count_include_pad"] = False
        _torch_pool_layer(ctx, node, kind, rank, fields)

    return reader


def _torch_pool_layer(ctx, node, kind, rank, fields):
    stride = fields.pop("stride", None)  # a pool's stride defaults to its size, not to 1
    fields = drop_defaults(**fields)
    if stride is not None:
        fields["stride"] = stride
    ctx.add(node, node.args[:1], layer_type=f"{kind}_pool{rank}d", **fields)


def _torch_counted_avg_pool(ctx, node, module):
    """cnnspec's generated CountedAvgPool helper, read back as the avg pool it implements."""
    rank = len(module.kernel_size)
    declared = list(module.declared)
    pairs = [(declared[2 * i], declared[2 * i + 1]) for i in range(rank)][::-1]
    kernel, stride = tuple(module.kernel_size), tuple(module.stride)
    fields = dict(
        pool_size=compact(kernel), padding=compact_padding(pairs), ceil_mode=any(module.overhang)
    )
    if stride != kernel:
        fields["stride"] = compact(stride)
    if module.padding_value != 1.0:
        fields["count_include_pad"] = False
    _torch_pool_layer(ctx, node, "avg", rank, fields)


def _torch_f_pool(kind: str, rank: int):
    def reader(ctx, node):
        kernel = TI.arg(node, 1, "kernel_size")
        kernel = (kernel,) * rank if isinstance(kernel, int) else tuple(kernel)
        stride = TI.arg(node, 2, "stride") or kernel
        stride = (stride,) * rank if isinstance(stride, int) else tuple(stride)
        padding = TI.arg(node, 3, "padding", 0)
        padding = (padding,) * rank if isinstance(padding, int) else tuple(padding)
        ceil_mode = bool(
            node.kwargs.get(
                "ceil_mode", TI.arg(node, 5 if kind == "max" else 4, "ceil_mode", False)
            )
        )
        fields = dict(
            pool_size=compact(kernel),
            padding=TI.conv_padding(padding) if any(padding) else "valid",
            ceil_mode=ceil_mode,
        )
        if stride != kernel:
            fields["stride"] = compact(stride)
        if (
            kind == "avg"
            and any(padding)
            and not node.kwargs.get("count_include_pad", TI.arg(node, 5, "count_include_pad", True))
        ):
            fields["count_include_pad"] = False
        _torch_pool_layer(ctx, node, kind, rank, fields)

    return reader


REGISTRY.reads(
    "torch_module",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    by="max_pool2d",
    absorbs_padding=-math.inf,
)(_torch_pool("max"))
REGISTRY.reads(
    "torch_module", "AvgPool1d", "AvgPool2d", "AvgPool3d", by="avg_pool2d", absorbs_padding=0.0
)(_torch_pool("avg"))
REGISTRY.reads("torch_module", "CountedAvgPool", by="avg_pool2d")(_torch_counted_avg_pool)
for _kind in ("max", "avg"):
    for _rank in (1, 2, 3):
        REGISTRY.reads(
            "torch_function", f"torch.nn.functional.{_kind}_pool{_rank}d", by=f"{_kind}_pool2d"
        )(_torch_f_pool(_kind, _rank))


# -- what the importers read as this type (claimed with REGISTRY.reads: ONNX) ---------------


def _onnx_pool(kind: str):
    def handler(ctx, node, attrs):
        source, padding = node.input[0], None
        if (
            source in ctx.padded
            and OI.padding_of(attrs, len(attrs["kernel_shape"]), node) == "valid"
        ):
            source, pairs = ctx.padded[source]  # Pad(-inf) -> MaxPool: the pool's own padding
            padding = compact_padding(pairs)
        else:
            OI.require(ctx, source, OI.FIRST, node.op_type)
        attrs, lift = OI.unlifted(ctx, node, attrs, source)
        kernel = list(attrs["kernel_shape"])
        rank = len(kernel)
        if any(d != 1 for d in attrs.get("dilations", [1] * rank)):
            raise refuse(OI.FRAMEWORK, OI.where(node), "dilated pooling")
        strides = list(
            attrs.get("strides", [1] * rank)
        )  # ONNX's default stride is 1, not the window
        padding = padding or OI.padding_of(attrs, rank, node)
        fields = drop_defaults(pool_size=compact(kernel), padding=padding)
        if strides != kernel:
            fields["stride"] = compact(strides)
        if attrs.get("ceil_mode"):
            fields["ceil_mode"] = True
        if (
            kind == "avg"
            and padding not in ("valid", "same")
            and not attrs.get("count_include_pad", 0)
        ):
            fields["count_include_pad"] = False
        ctx.add(node, f"{kind}_pool{rank}d", [source], OI.FIRST, lifted=lift, **fields)

    return handler


REGISTRY.reads("onnx", "MaxPool", by="max_pool2d")(_onnx_pool("max"))
REGISTRY.reads("onnx", "AveragePool", by="avg_pool2d")(_onnx_pool("avg"))
