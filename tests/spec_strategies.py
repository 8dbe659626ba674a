"""Hypothesis strategies that draw random *valid* cnnspec specs across the whole layer catalog.

``valid_specs()`` builds a spec block by block.  A block is one layer, or a small DAG (two
branches joined by ``add`` / ``concat``).  Every block's parameters are drawn from the
current shape, so almost every proposal resolves; each proposal is still checked with
:func:`cnnspec.resolve` on the partial spec (and against a size cap), and a rejected
proposal is replaced by a fresh one.  ``PROPOSAL_STATS`` counts proposals, ``resolve``
rejections and size-cap rejections, so a test can check the strategy stays efficient.

No framework is imported here: the module is safe to import from any test.
"""

from __future__ import annotations

import math

from collections import Counter
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st

import cnnspec
from cnnspec.errors import SpecError

# Size caps (batch excluded): one layer's output, and every output plus the input.
MAX_LAYER_ELEMENTS = 6_000
MAX_ACTIVATION_ELEMENTS = 60_000
MAX_PARAMS = 60_000

INLINE_ACTIVATIONS = [
    None,
    None,
    None,
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "softmax",
    "silu",
    "gelu",
    "hard_swish",
    "hard_sigmoid",
]
SIMPLE_ACTIVATIONS = [
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "softmax",
    "silu",
    "hard_swish",
    "hard_sigmoid",
]
NAME_PREFIXES = [
    "",
    "",
    "blk",
    "Feat",
    "s",
    "layer_",
    "x_",
]  # "" = leave the layer unnamed (default name)
MODEL_NAMES = ["model", "fuzz_net", "Net2", "a", "_private_model", "deep__net"]

# Counts of proposals (every block drawn), "invalid" (resolve refused it), "too_big" (size cap).
PROPOSAL_STATS: Counter = Counter()

SPATIAL_KINDS = [
    "conv",
    "conv",
    "conv_transpose",
    "depthwise",
    "depthwise",
    "separable",
    "separable",
    "max_pool",
    "avg_pool",
    "global_pool",
    "batch_norm",
    "dropout",
    "spatial_dropout",
    "activation",
    "param_activation",
    "prelu",
    "upsample",
    "zero_pad",
    "flatten",
    "add",
    "concat",
    # the model-zoo catalog
    "rescale",
    "scale",
    "normalize",
    "layer_norm",
    "group_norm",
    "instance_norm",
    "channel_shuffle",
    "channel_slice",
    "pixel_shuffle",
    "pixel_unshuffle",
    "channel_pad",
    "channel_conv",
    "crop",
    "pad",
    "layer_scale",
    "stochastic_depth",
    "adaptive_pool",
    "resize",
    "identity",
    "gate",
    "elementwise",
]
FLAT_KINDS = [
    "dense",
    "dense",
    "batch_norm",
    "dropout",
    "activation",
    "param_activation",
    "prelu",
    "add",
    "concat",
    "rescale",
    "scale",
    "normalize",
    "layer_norm",
    "layer_scale",
    "stochastic_depth",
    "identity",
    "elementwise",
    "unflatten",  # drawn more often: a flat state is rare, and it makes the map again
    "unflatten",
    "unflatten",
]
ELEMENTWISE_MERGES = ["multiply", "subtract", "maximum", "minimum", "average"]

# The types the strategies above draw with their own field ranges; any other registered type is drawn from the
# one-layer examples of its definition (the "registry" kind), so a new type is fuzzed by registering.
HANDWRITTEN_TYPES = frozenset(
    "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d depthwise_conv2d separable_conv2d "
    "max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d global_avg_pool global_max_pool batch_norm "
    "dropout spatial_dropout flatten dense relu relu6 sigmoid tanh softmax silu hard_swish hard_sigmoid leaky_relu "
    "elu gelu prelu upsample zero_pad1d zero_pad2d zero_pad3d add concat "
    # the model-zoo catalog (CATALOG_SINGLES, _gate_block and the element-wise merge blocks)
    "rescale scale normalize layer_norm group_norm instance_norm channel_shuffle channel_slice pixel_shuffle "
    "pixel_unshuffle channel_pad channel_conv unflatten "
    "crop1d crop2d crop3d "
    "pad1d pad2d pad3d layer_scale stochastic_depth adaptive_avg_pool adaptive_max_pool resize identity multiply "
    "subtract maximum minimum average".split()
)


def _registry_layers() -> list[tuple[int, dict]]:
    """(spatial rank of the example, its one layer) for the types drawn from their examples."""
    from cnnspec.layers import REGISTRY

    return [
        (len(example.size), dict(example.layers[0]))
        for definition in REGISTRY.definitions()
        for example in definition.examples
        if len(example.layers) == 1 and example.layers[0]["type"] not in HANDWRITTEN_TYPES
    ]


REGISTRY_LAYERS = _registry_layers()
if REGISTRY_LAYERS:
    SPATIAL_KINDS.append("registry")
    FLAT_KINDS.append("registry")


def _per_dim(draw, values: list, rank: int):
    """An int (all dims equal, sometimes) or a list with one value per dim (``rank`` of them)."""
    assert len(values) == rank
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return list(values)


class _Builder:
    """The spec so far: layers, their names and the shape (channels-first) of the last one."""

    def __init__(self, rank: int, channels: int, size: list[int], model_name: str):
        self.rank = rank
        self.base = {
            "cnnspec": 1,
            "name": model_name,
            "input": {"channels": channels, "size": size},
        }
        self.layers: list[dict] = []
        self.last = "input"
        self.shape: tuple[int, ...] = (channels, *size)

    def name_for(self, draw, layer_type: str, offset: int = 0) -> tuple[str | None, str]:
        """(name to write or None, the layer's effective name) for the layer at len(layers) + offset."""
        index = len(self.layers) + offset
        prefix = draw(st.sampled_from(NAME_PREFIXES))
        if not prefix:
            return None, f"{layer_type}_{index}"
        name = f"{prefix}{index}"
        return name, name

    def spec_with(self, block: list[dict]) -> dict:
        return {**self.base, "layers": self.layers + block}

    def try_add(self, block: list[dict]) -> bool:
        """Resolve the spec extended by ``block``; keep it when valid and small enough."""
        PROPOSAL_STATS["proposals"] += 1
        try:
            plan = cnnspec.resolve(self.spec_with(block))
        except SpecError:
            PROPOSAL_STATS["invalid"] += 1
            return False
        if (
            plan.activation_elements() > MAX_ACTIVATION_ELEMENTS
            or max(_prod(layer.output_shape) for layer in plan.layers) > MAX_LAYER_ELEMENTS
            or plan.total_params > MAX_PARAMS
        ):
            PROPOSAL_STATS["too_big"] += 1
            return False
        self.layers.extend(block)
        self.last = plan.layers[-1].name
        self.shape = plan.layers[-1].output_shape
        return True


def _prod(values) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def _named(layer: dict, name: str | None) -> dict:
    return {"name": name, **layer} if name else layer


# --------------------------------------------------------------------------------------------
# Window layers: parameters drawn so the output does not collapse
# --------------------------------------------------------------------------------------------


def _padding(draw, rank: int, limit: int, allow_same: bool = True, allow_pairs: bool = True):
    """A padding spec and its per-dim (before, after) numbers (None for 'same'); pads <= limit."""
    modes = (
        (["same", "same"] if allow_same else [])
        + ["valid", "valid", "int", "per_dim"]
        + (["pairs"] if allow_pairs else [])
    )
    mode = draw(st.sampled_from(modes))
    if mode == "same":
        return "same", None
    if mode == "valid":
        return "valid", [(0, 0)] * rank
    if mode == "int":
        p = draw(st.integers(0, limit))
        return p, [(p, p)] * rank
    if mode == "per_dim":
        ps = [draw(st.integers(0, limit)) for _ in range(rank)]
        return ps, [(p, p) for p in ps]
    pairs = [[draw(st.integers(0, limit)), draw(st.integers(0, limit))] for _ in range(rank)]
    return pairs, [tuple(p) for p in pairs]


def _window(
    draw, spatial: tuple[int, ...], pads, max_kernel: int, dilations: list[int]
) -> list[int]:
    """Kernel sizes that fit each (padded) dim: dilation*(k-1)+1 <= n + pads."""
    kernels = []
    for n, (b, a), d in zip(spatial, pads or [(0, 0)] * len(spatial), dilations):
        if pads is None:  # 'same' fits any kernel, even one larger than the input
            top = max_kernel
        else:
            top = max(1, min(max_kernel, (n + b + a - 1) // d + 1))
        kernels.append(draw(st.integers(1, top)))
    return kernels


def _conv_like(draw, builder: _Builder, equal_strides: bool = False) -> dict:
    """Fields shared by conv / depthwise / separable: kernel, stride, dilation, padding.

    ``equal_strides``: TensorFlow's CPU depthwise kernel (DepthwiseConv2dNative, which Keras'
    DepthwiseConv2D and SeparableConv2D run on) takes only equal strides on H and W when oneDNN is
    off, as the verifier and the test session set it; unequal ones are a known gap, not drawn.
    """
    rank = builder.rank
    spatial = builder.shape[1:]
    padding, pads = _padding(draw, rank, 2)
    dilations = [draw(st.sampled_from([1, 1, 1, 2])) for _ in range(rank)]
    kernels = _window(draw, spatial, pads, 4, dilations)
    strides = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(rank)]
    if equal_strides:
        strides = [strides[0]] * rank
    fields: dict[str, Any] = {"kernel_size": _per_dim(draw, kernels, rank)}
    if any(s != 1 for s in strides) or draw(st.booleans()):
        fields["stride"] = _per_dim(draw, strides, rank)
    if any(d != 1 for d in dilations) or draw(st.booleans()):
        fields["dilation"] = _per_dim(draw, dilations, rank)
    if padding != "valid" or draw(st.booleans()):
        fields["padding"] = padding
    if draw(st.booleans()):
        fields["bias"] = draw(st.booleans())
    activation = draw(st.sampled_from(INLINE_ACTIVATIONS))
    if activation is not None:
        fields["activation"] = activation
    return fields


def _conv(draw, builder: _Builder) -> list[dict]:
    channels = builder.shape[0]
    divisors = [g for g in range(1, channels + 1) if channels % g == 0]
    groups = draw(st.sampled_from(divisors)) if draw(st.booleans()) else 1
    filters = groups * draw(st.integers(1, max(1, 6 // groups)))
    layer_type = f"conv{builder.rank}d"
    layer = {"type": layer_type, "filters": filters, **_conv_like(draw, builder)}
    if groups > 1:
        layer["groups"] = groups
    return [_named(layer, builder.name_for(draw, layer_type)[0])]


def _depthwise(draw, builder: _Builder) -> list[dict]:
    layer = {"type": "depthwise_conv2d", **_conv_like(draw, builder, equal_strides=True)}
    if builder.shape[0] <= 3 and draw(st.booleans()):
        layer["depth_multiplier"] = draw(st.integers(1, 2))
    return [_named(layer, builder.name_for(draw, "depthwise_conv2d")[0])]


def _separable(draw, builder: _Builder) -> list[dict]:
    layer = {
        "type": "separable_conv2d",
        "filters": draw(st.integers(1, 6)),
        **_conv_like(draw, builder, equal_strides=True),
    }
    if draw(st.booleans()):
        layer["depth_multiplier"] = draw(st.integers(1, 2))
    return [_named(layer, builder.name_for(draw, "separable_conv2d")[0])]


def _conv_transpose(draw, builder: _Builder) -> list[dict]:
    rank = builder.rank
    spatial = builder.shape[1:]
    kernels = [draw(st.integers(1, 3)) for _ in range(rank)]
    strides = [draw(st.sampled_from([1, 1, 2, 3])) for _ in range(rank)]
    dilations = [draw(st.sampled_from([1, 1, 1, 2])) for _ in range(rank)]
    mode = draw(st.sampled_from(["same", "valid", "numeric"]))
    layer_type = f"conv_transpose{rank}d"
    layer: dict[str, Any] = {
        "type": layer_type,
        "filters": draw(st.integers(1, 5)),
        "kernel_size": _per_dim(draw, kernels, rank),
    }
    if any(s != 1 for s in strides) or draw(st.booleans()):
        layer["stride"] = _per_dim(draw, strides, rank)
    if any(d != 1 for d in dilations) or draw(st.booleans()):
        layer["dilation"] = _per_dim(draw, dilations, rank)
    if mode == "same":
        layer["padding"] = "same"
    else:
        if mode == "numeric":
            # PyTorch's out = (n-1)*s - 2p + dk + op must stay positive.
            pads = []
            for n, k, s, d in zip(spatial, kernels, strides, dilations):
                full = (n - 1) * s + d * (k - 1) + 1
                pads.append(draw(st.integers(0, max(0, min(2, (full - 1) // 2)))))
            layer["padding"] = _per_dim(draw, pads, rank)
        elif draw(st.booleans()):
            layer["padding"] = "valid"
        if draw(st.booleans()):
            ops = [draw(st.integers(0, s - 1)) for s in strides]  # ONNX and Keras: below the stride
            layer["output_padding"] = _per_dim(draw, ops, rank)
    if draw(st.booleans()):
        layer["bias"] = draw(st.booleans())
    activation = draw(st.sampled_from(INLINE_ACTIVATIONS))
    if activation is not None:
        layer["activation"] = activation
    return [_named(layer, builder.name_for(draw, layer_type)[0])]


def _pool(draw, builder: _Builder, kind: str) -> list[dict]:
    rank = builder.rank
    spatial = builder.shape[1:]
    layer_type = f"{kind}_pool{rank}d"
    # Windows may exceed a (small) input dim when the padding makes up the difference.
    windows = [draw(st.integers(1, 3)) for _ in spatial]
    short = [
        max(k - n, 0) for k, n in zip(windows, spatial)
    ]  # padding cells each dim needs at least
    layer: dict[str, Any] = {"type": layer_type, "pool_size": _per_dim(draw, windows, rank)}
    if draw(st.booleans()):
        layer["stride"] = _per_dim(draw, [draw(st.integers(1, 3)) for _ in range(rank)], rank)
    mode = draw(st.sampled_from(["same", "valid", "valid", "int", "per_dim", "pairs"]))
    if mode == "valid" and any(short):
        mode = "pairs"
    if mode == "int" and (any(short) or min(windows) == 1):
        mode = "per_dim"
    if mode == "same":
        layer["padding"] = "same"
    elif mode == "int":
        layer["padding"] = draw(st.integers(0, min(windows) - 1))
    elif mode == "per_dim":
        # symmetric p per dim: 2p >= short and p < window
        layer["padding"] = [
            draw(st.integers(min((s + 1) // 2, w - 1), w - 1)) for w, s in zip(windows, short)
        ]
    elif mode == "pairs":
        pairs = []
        for w, s in zip(windows, short):
            before = draw(st.integers(0, w - 1))
            pairs.append([before, draw(st.integers(min(max(s - before, 0), w - 1), w - 1))])
        layer["padding"] = pairs
    elif draw(st.booleans()):
        layer["padding"] = "valid"
    if mode != "same" and draw(st.booleans()):
        layer["ceil_mode"] = draw(st.booleans())
    if kind == "avg" and draw(st.booleans()):
        layer["count_include_pad"] = False if mode == "same" else draw(st.booleans())
    return [_named(layer, builder.name_for(draw, layer_type)[0])]


# --------------------------------------------------------------------------------------------
# Shape-preserving and other single layers
# --------------------------------------------------------------------------------------------


def _activation_layer(draw, builder: _Builder, offset: int = 0) -> dict:
    layer_type = draw(st.sampled_from(SIMPLE_ACTIVATIONS))
    return _named({"type": layer_type}, builder.name_for(draw, layer_type, offset)[0])


def _param_activation_layer(draw, builder: _Builder, offset: int = 0) -> dict:
    layer_type = draw(st.sampled_from(["leaky_relu", "elu", "gelu"]))
    layer: dict[str, Any] = {"type": layer_type}
    if layer_type == "leaky_relu" and draw(st.booleans()):
        layer["negative_slope"] = draw(
            st.sampled_from([0.0, 0.01, 0.2, 0.3, 1.5]) | st.floats(0.0, 2.0, allow_subnormal=False)
        )
    elif layer_type == "elu" and draw(st.booleans()):
        layer["alpha"] = draw(st.sampled_from([0.5, 1.0, 1.7]) | st.floats(0.05, 3.0))
    elif layer_type == "gelu" and draw(st.booleans()):
        layer["approximate"] = draw(st.sampled_from(["none", "tanh"]))
    return _named(layer, builder.name_for(draw, layer_type, offset)[0])


def _batch_norm(draw, builder: _Builder) -> dict:
    layer: dict[str, Any] = {"type": "batch_norm"}
    if draw(st.booleans()):
        layer["epsilon"] = draw(st.sampled_from([1e-5, 1e-3, 0.01, 1e-7, 0.3]))
    if draw(st.booleans()):
        layer["momentum"] = draw(st.sampled_from([0.1, 0.01, 0.99, 0.5]))
    return _named(layer, builder.name_for(draw, "batch_norm")[0])


def _single(draw, builder: _Builder, kind: str) -> list[dict]:
    rank = builder.rank
    name = builder.name_for(draw, kind)[0]
    if kind == "conv":
        return _conv(draw, builder)
    if kind == "conv_transpose":
        return _conv_transpose(draw, builder)
    if kind == "depthwise":
        return _depthwise(draw, builder)
    if kind == "separable":
        return _separable(draw, builder)
    if kind in ("max_pool", "avg_pool"):
        return _pool(draw, builder, kind[:3])
    if kind == "global_pool":
        layer_type = draw(st.sampled_from(["global_avg_pool", "global_max_pool"]))
        layer: dict[str, Any] = {"type": layer_type}
        if draw(st.booleans()):
            layer["keepdims"] = draw(st.booleans())
        return [_named(layer, builder.name_for(draw, layer_type)[0])]
    if kind == "batch_norm":
        return [_batch_norm(draw, builder)]
    if kind in ("dropout", "spatial_dropout"):
        rate = draw(st.sampled_from([0.0, 0.5, 0.3]) | st.floats(0.0, 0.99))
        return [_named({"type": kind, "rate": rate}, builder.name_for(draw, kind)[0])]
    if kind == "activation":
        return [_activation_layer(draw, builder)]
    if kind == "param_activation":
        return [_param_activation_layer(draw, builder)]
    if kind == "prelu":
        layer = {"type": "prelu"}
        if draw(st.booleans()):
            layer["per_channel"] = draw(st.booleans())
        return [_named(layer, name)]
    if kind == "upsample":
        factors = [draw(st.integers(1, 3)) for _ in range(rank)]
        layer = {"type": "upsample", "scale_factor": _per_dim(draw, factors, rank)}
        if rank == 2 and draw(st.booleans()):
            layer["mode"] = "bilinear"
        elif draw(st.booleans()):
            layer["mode"] = "nearest"
        return [_named(layer, name)]
    if kind == "zero_pad":
        layer_type = f"zero_pad{rank}d"
        form = draw(st.sampled_from(["int", "per_dim", "pairs"]))
        if form == "int":
            padding: Any = draw(st.integers(0, 2))
        elif form == "per_dim":
            padding = [draw(st.integers(0, 2)) for _ in range(rank)]
        else:
            padding = [[draw(st.integers(0, 2)), draw(st.integers(0, 2))] for _ in range(rank)]
        return [
            _named({"type": layer_type, "padding": padding}, builder.name_for(draw, layer_type)[0])
        ]
    if kind == "flatten":
        order = {"order": "channels_last"} if draw(st.integers(0, 3)) == 0 else {}
        return [_named({"type": "flatten", **order}, name)]
    if kind in CATALOG_SINGLES:
        return [_named(CATALOG_SINGLES[kind](draw, builder), name)]
    if kind == "registry":
        fitting = [layer for layer_rank, layer in REGISTRY_LAYERS if layer_rank == rank] or [
            layer for _, layer in REGISTRY_LAYERS
        ]
        layer = dict(draw(st.sampled_from(fitting)))
        return [_named(layer, builder.name_for(draw, layer["type"])[0])]
    if kind == "dense":
        layer = {"type": "dense", "units": draw(st.integers(1, 8))}
        if draw(st.booleans()):
            layer["bias"] = draw(st.booleans())
        activation = draw(st.sampled_from(INLINE_ACTIVATIONS))
        if activation is not None:
            layer["activation"] = activation
        return [_named(layer, name)]
    raise AssertionError(f"unknown kind {kind}")


# --------------------------------------------------------------------------------------------
# The model-zoo catalog: one layer each, fields drawn from the current shape
# --------------------------------------------------------------------------------------------


def _per_channel_values(draw, channels: int, low: float, high: float):
    if draw(st.booleans()):
        return draw(st.floats(low, high, allow_subnormal=False))
    return [draw(st.floats(low, high, allow_subnormal=False)) for _ in range(channels)]


def _rescale(draw, builder: _Builder) -> dict:
    channels, flat = builder.shape[0], len(builder.shape) == 1
    scale = (
        draw(st.sampled_from([1 / 255, 1 / 127.5, 2.0]))
        if flat
        else _per_channel_values(draw, channels, -3.0, 3.0)
    )
    layer: dict[str, Any] = {"type": "rescale", "scale": scale}
    if draw(st.booleans()):
        layer["offset"] = (
            draw(st.floats(-2.0, 2.0)) if flat else _per_channel_values(draw, channels, -2.0, 2.0)
        )
    return layer


def _normalize(draw, builder: _Builder) -> dict:
    if len(builder.shape) == 1 or draw(st.booleans()):
        return {"type": "normalize"}
    channels = builder.shape[0]
    return {
        "type": "normalize",
        "mean": _per_channel_values(draw, channels, -1.0, 1.0),
        # a variance near 0 scales a channel by up to 1/sqrt(epsilon) and turns float32 rounding into
        # differences any tolerance would call a bug: such models are legal, but not useful draws
        "variance": _per_channel_values(draw, channels, 0.05, 4.0),
    }


def _layer_norm(draw, builder: _Builder) -> dict:
    layer: dict[str, Any] = {"type": "layer_norm"}
    for field in ("center", "scale"):
        if draw(st.booleans()):
            layer[field] = draw(st.booleans())
    if draw(st.booleans()):
        layer["epsilon"] = draw(st.sampled_from([1e-6, 1e-3, 0.1]))
    return layer


def _group_norm(draw, builder: _Builder) -> dict:
    channels = builder.shape[0]
    groups = draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0]))
    layer: dict[str, Any] = {"type": "group_norm", "groups": groups}
    if draw(st.booleans()):
        layer["affine"] = draw(st.booleans())
    if draw(st.booleans()):
        layer["epsilon"] = draw(st.sampled_from([1e-6, 1e-3, 0.1]))
    return layer


def _channel_shuffle(draw, builder: _Builder) -> dict:
    channels = builder.shape[0]
    return {
        "type": "channel_shuffle",
        "groups": draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0])),
    }


def _pixel_shuffle(draw, builder: _Builder) -> dict:
    channels = builder.shape[0]
    factors = [r for r in (1, 2, 3) if channels % (r * r) == 0]
    return {"type": "pixel_shuffle", "factor": draw(st.sampled_from(factors))}


def _pixel_unshuffle(draw, builder: _Builder) -> dict:
    spatial = builder.shape[1:]
    factors = [r for r in (1, 2, 3) if all(n % r == 0 for n in spatial)]
    return {"type": "pixel_unshuffle", "factor": draw(st.sampled_from(factors))}


def _channel_pad(draw, builder: _Builder) -> dict:
    before = draw(st.integers(0, 2))
    return {"type": "channel_pad", "before": before, "after": draw(st.integers(0 if before else 1, 2))}


def _channel_conv(draw, builder: _Builder) -> dict:
    layer = {"type": "channel_conv", "kernel_size": draw(st.sampled_from([1, 3, 5]))}
    return {**layer, "bias": True} if draw(st.booleans()) else layer


def _unflatten(draw, builder: _Builder) -> dict:
    """The flat vector as a map of the model's rank: channels a divisor of its length."""
    length = builder.shape[0]
    channels = draw(st.sampled_from([d for d in range(1, min(length, 8) + 1) if length % d == 0]))
    rest = length // channels
    spatial = [1] * builder.rank
    spatial[-1] = rest
    if builder.rank > 1:
        first = draw(st.sampled_from([d for d in range(1, rest + 1) if rest % d == 0]))
        spatial[0], spatial[-1] = first, rest // first
    layer = {"type": "unflatten", "shape": [channels, *spatial]}
    return {**layer, "order": "channels_last"} if draw(st.booleans()) else layer


def _channel_slice(draw, builder: _Builder) -> dict:
    channels = builder.shape[0]
    start = draw(st.integers(0, channels - 1))
    return {"type": "channel_slice", "start": start, "stop": draw(st.integers(start + 1, channels))}


def _sides(draw, builder: _Builder, most) -> Any:
    """A padding/cropping value: int, one int per dim or [before, after] pairs, each side <= most(n)."""
    spatial = builder.shape[1:]
    form = draw(st.sampled_from(["int", "per_dim", "pairs"]))
    if form == "int":
        return draw(st.integers(0, min(most(n) for n in spatial)))
    if form == "per_dim":
        return [draw(st.integers(0, most(n))) for n in spatial]
    return [[draw(st.integers(0, most(n))), draw(st.integers(0, most(n)))] for n in spatial]


def _crop(draw, builder: _Builder) -> dict:
    return {
        "type": f"crop{builder.rank}d",
        "cropping": _sides(draw, builder, lambda n: min(2, (n - 1) // 2)),
    }


def _pad(draw, builder: _Builder) -> dict:
    mode = draw(st.sampled_from(["constant", "reflect", "replicate"]))
    layer: dict[str, Any] = {
        "type": f"pad{builder.rank}d",
        "padding": _sides(draw, builder, lambda n: min(2, n - 1) if mode == "reflect" else 2),
    }
    if mode != "constant" or draw(st.booleans()):
        layer["mode"] = mode
    if mode == "constant" and draw(st.booleans()):
        layer["value"] = draw(st.floats(-3.0, 3.0))
    return layer


def _adaptive_pool(draw, builder: _Builder) -> dict:
    spatial = builder.shape[1:]
    layer_type = draw(st.sampled_from(["adaptive_avg_pool", "adaptive_max_pool"]))
    return {
        "type": layer_type,
        "output_size": _per_dim(draw, [draw(st.integers(1, n + 2)) for n in spatial], builder.rank),
    }


def _resize(draw, builder: _Builder) -> dict:
    rank = builder.rank
    mode = draw(st.sampled_from(["nearest", "nearest_exact", "bilinear", "bicubic"]))
    layer: dict[str, Any] = {"type": "resize", "mode": mode}
    if draw(st.booleans()):
        layer["size"] = _per_dim(
            draw, [draw(st.integers(1, 2 * n + 1)) for n in builder.shape[1:]], rank
        )
    else:
        layer["scale"] = _per_dim(
            draw, [draw(st.sampled_from([0.5, 1.5, 2, 2.5, 3])) for _ in range(rank)], rank
        )
    if mode in ("bilinear", "bicubic") and draw(st.booleans()):
        layer["align_corners"] = True
    if mode == "bicubic" and draw(st.booleans()):
        layer["cubic_coefficient"] = -0.5
        layer["exclude_outside"] = True
    return layer


CATALOG_SINGLES = {
    "rescale": _rescale,
    "scale": lambda draw, builder: {
        "type": "scale",
        "factor": draw(st.sampled_from([0.17, 0.1, -2.0])),
    },
    "normalize": _normalize,
    "layer_norm": _layer_norm,
    "group_norm": _group_norm,
    "instance_norm": lambda draw, builder: {"type": "instance_norm", "affine": draw(st.booleans())},
    "channel_shuffle": _channel_shuffle,
    "channel_slice": _channel_slice,
    "pixel_shuffle": _pixel_shuffle,
    "pixel_unshuffle": _pixel_unshuffle,
    "channel_pad": _channel_pad,
    "channel_conv": _channel_conv,
    "unflatten": _unflatten,
    "crop": _crop,
    "pad": _pad,
    "layer_scale": lambda draw, builder: {
        "type": "layer_scale",
        "init_value": draw(st.sampled_from([1e-6, 0.1, 1.0])),
    },
    "stochastic_depth": lambda draw, builder: {
        "type": "stochastic_depth",
        "rate": draw(st.sampled_from([0.0, 0.2, 0.5])),
    },
    "adaptive_pool": _adaptive_pool,
    "resize": _resize,
    "identity": lambda draw, builder: {"type": "identity"},
}


def _gate_block(draw, builder: _Builder) -> list[dict]:
    """Squeeze-excite: global pool (keepdims, or flat + dense) -> gate -> multiply (or another merge) onto the map."""
    source, start, channels = builder.last, len(builder.layers), builder.shape[0]
    keepdims = draw(st.booleans())
    pool_name = builder.name_for(draw, "global_avg_pool")[0]
    pool: dict[str, Any] = {"type": "global_avg_pool"}
    if keepdims:
        pool["keepdims"] = True
        gate: dict[str, Any] = {
            "type": f"conv{builder.rank}d",
            "filters": channels,
            "kernel_size": 1,
            "activation": "sigmoid",
        }
    else:
        gate = {"type": "dense", "units": channels, "activation": "sigmoid"}
    block = [_named(pool, pool_name), _named(gate, builder.name_for(draw, gate["type"], 1)[0])]
    names = [source, _effective_name(block[1], start + 1)]
    if draw(st.booleans()):
        names.reverse()
    merge = draw(st.sampled_from(["multiply", "multiply", "add", *ELEMENTWISE_MERGES]))
    block.append(_named({"type": merge, "inputs": names}, builder.name_for(draw, merge, 2)[0]))
    return block


# --------------------------------------------------------------------------------------------
# DAG blocks
# --------------------------------------------------------------------------------------------


def _shape_keeping_branch(
    draw, builder: _Builder, offset: int, source: str, channels: int | None
) -> dict:
    """A layer reading ``source`` whose output has the same spatial size (and ``channels`` if given)."""
    flat = len(builder.shape) == 1
    options = ["activation", "param_activation"] + (
        ["dense"] if flat and builder.shape[0] <= 64 else []
    )
    options += [] if flat else ["conv_same", "pool_same"]
    if channels is None or channels == builder.shape[0]:
        options.append("batch_norm")
    kind = draw(st.sampled_from(options))
    if kind == "activation":
        layer = _activation_layer(draw, builder, offset)
    elif kind == "param_activation":
        layer = _param_activation_layer(draw, builder, offset)
    elif kind == "batch_norm":
        layer = _named({"type": "batch_norm"}, builder.name_for(draw, "batch_norm", offset)[0])
    elif kind == "dense":
        units = channels if channels is not None else draw(st.integers(1, 6))
        layer = _named(
            {"type": "dense", "units": units}, builder.name_for(draw, "dense", offset)[0]
        )
    elif kind == "pool_same":
        if channels is not None and channels != builder.shape[0]:
            kind = "conv_same"
        else:
            layer_type = f"{draw(st.sampled_from(['max', 'avg']))}_pool{builder.rank}d"
            layer = _named(
                {
                    "type": layer_type,
                    "pool_size": draw(st.integers(1, 3)),
                    "stride": 1,
                    "padding": "same",
                },
                builder.name_for(draw, layer_type, offset)[0],
            )
    if kind == "conv_same":
        layer_type = f"conv{builder.rank}d"
        filters = channels if channels is not None else draw(st.integers(1, 5))
        layer = {
            "type": layer_type,
            "filters": filters,
            "kernel_size": draw(st.integers(1, 3)),
            "padding": "same",
        }
        if draw(st.booleans()):
            layer["dilation"] = 2
        activation = draw(st.sampled_from(INLINE_ACTIVATIONS))
        if activation is not None:
            layer["activation"] = activation
        layer = _named(layer, builder.name_for(draw, layer_type, offset)[0])
    return {**layer, "inputs": [source]} if offset > 0 or source != builder.last else layer


def _effective_name(layer: dict, index: int) -> str:
    return layer.get("name") or f"{layer['type']}_{index}"


def _merge_block(draw, builder: _Builder, kind: str) -> list[dict]:
    """Two branches from the current layer (or the current layer itself and one branch), joined."""
    source = builder.last
    start = len(builder.layers)
    channels = None if kind == "concat" else builder.shape[0]
    two_branches = draw(st.booleans())
    block = [_shape_keeping_branch(draw, builder, 0, source, channels)]
    names = [_effective_name(block[0], start)]
    if two_branches:
        second = _shape_keeping_branch(draw, builder, 1, source, channels)
        second["inputs"] = [source]
        block.append(second)
        names.append(_effective_name(second, start + 1))
    else:
        names.insert(draw(st.integers(0, 1)), source)
    if kind not in ("concat", "subtract") and draw(st.integers(0, 3)) == 0:
        names.append(source)  # sometimes three inputs
    merge_name = builder.name_for(draw, kind, len(block))[0]
    block.append(_named({"type": kind, "inputs": names}, merge_name))
    return block


# --------------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------------


def _propose(draw, builder: _Builder) -> list[dict]:
    flat = len(builder.shape) == 1
    kinds = (
        FLAT_KINDS
        if flat
        else [k for k in SPATIAL_KINDS if builder.rank == 2 or k not in ("depthwise", "separable")]
    )
    kind = draw(st.sampled_from(kinds))
    if kind == "elementwise":
        kind = draw(st.sampled_from(ELEMENTWISE_MERGES))
    if kind in ("add", "concat", *ELEMENTWISE_MERGES):
        return _merge_block(draw, builder, kind)
    if kind == "gate":
        return _gate_block(draw, builder)
    return _single(draw, builder, kind)


@st.composite
def valid_specs(
    draw, max_layers: int = 6, ranks: tuple[int, ...] = (1, 2, 3), open_sizes: bool = False
) -> dict:
    """A random spec dict that :func:`cnnspec.resolve` accepts.

    Args:
        draw: supplied by hypothesis.
        max_layers: the number of blocks drawn (a merge block adds up to three layers).
        ranks: the spatial ranks to draw from.
        open_sizes: on about a third of the draws, leave the input size open (``null``) with the
            drawn size as ``reference_size``, where the model allows it.

    Returns:
        A complete spec dict (``cnnspec: 1``, ``name``, ``input``, ``layers``).
    """
    rank = draw(st.sampled_from(ranks))
    top = {1: 17, 2: 13, 3: 7}[rank]
    size = [draw(st.integers(3, top)) for _ in range(rank)]
    channels = draw(st.integers(1, 6))
    builder = _Builder(rank, channels, size, draw(st.sampled_from(MODEL_NAMES)))
    blocks = draw(st.integers(1, max_layers))
    for _ in range(blocks):
        for _attempt in range(4):
            if builder.try_add(_propose(draw, builder)):
                break
    if not builder.layers:
        builder.try_add([{"type": draw(st.sampled_from(SIMPLE_ACTIVATIONS))}])
    spec = builder.spec_with([])
    assume(len(spec["layers"]) > 0)
    if open_sizes and draw(st.integers(0, 2)) == 0:
        spec = _opened(spec, size) or spec
    return spec


def _opened(spec: dict, size: list[int]) -> dict | None:
    """``spec`` with its input size left open (the drawn size as reference), or None if it cannot be.

    A model whose parameter count follows the input size (a dense after flattening a map) is
    refused open; it stays fixed.
    """
    opened = dict(
        spec, input=dict(spec["input"], size=[None] * len(size), reference_size=list(size))
    )
    try:
        cnnspec.resolve(opened)
    except SpecError:
        return None
    return opened


def resolve_or_reject(spec: dict):
    """The plan of ``spec``; a SpecError marks the draw invalid for hypothesis (should be rare)."""
    try:
        return cnnspec.resolve(spec)
    except SpecError:
        assume(False)
