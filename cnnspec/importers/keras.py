"""``from_keras``: a functional or Sequential Keras 3 model (or a .keras / .h5 file) -> ModelSpec.

The functional graph is walked layer by layer (each layer called once, channels last); every
Keras layer class the catalog covers has one entry in :data:`KERAS_LAYERS`, which turns its
config into spec fields.  Keras layer names are kept (a name that is not a valid spec name is
made valid and the original recorded in ``source``).  Exact rewrites, each listed in
``ImportResult.rewrites``:

* ``Reshape((1, 1, C))`` right after a global pooling -> the pooling with ``keepdims: true``
  (named after the Reshape, whose output it is);
* ``Dense`` on a channels-last feature map -> a 1x1 convolution (Keras' Dense contracts the last
  axis, which is the channel axis there);
* ``Activation('linear')`` -> ``identity`` (or nothing, where the catalog has no identity);
* a ``<name>_pad`` ``ZeroPadding`` feeding only a ``valid`` convolution ``<name>`` (cnnspec's own
  generated helper) -> the convolution's explicit padding.

Anything else -- ``Lambda``, custom layers, shared layers, nested models, channels-first data --
is refused with the layer's name and what is supported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnspec.importers.common import (
    ImportResult,
    SpecBuilder,
    compact,
    compact_padding,
    refuse,
)

FRAMEWORK = "keras layer"

# Keras activation names -> spec activation types (parameter-free, exact).
ACTIVATIONS = {
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "hard_silu": "hard_swish",
    "hard_swish": "hard_swish",
    "hard_sigmoid": "hard_sigmoid",
    "elu": "elu",
    "leaky_relu": "leaky_relu",
}
INLINE = {
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "softmax",
    "silu",
    "gelu",
    "hard_swish",
    "hard_sigmoid",
}


class _Context:
    """State of one import: the builder, tensor -> spec name, consumers of each tensor."""

    def __init__(self, model):
        self.builder = SpecBuilder("keras")
        self.names: dict[int, str] = {}
        self.shapes: dict[str, tuple] = {}
        self.consumers: dict[int, int] = {}
        self.model = model
        self.node = None

    def add(
        self,
        layer,
        layer_type: str,
        inputs: list[str],
        *,
        source: str | None = None,
        name: str | None = None,
        **fields,
    ) -> str:
        return self.builder.add(name or layer.name, layer_type, inputs, source=source, **fields)


def _where(layer) -> str:
    return f"'{layer.name}' ({type(layer).__name__})"


# cnnspec's own registered activation functions (generated Keras code): config name -> spec activation.
_REGISTERED = {"cnnspec>gelu_erf": "gelu", "cnnspec>gelu_tanh": "gelu_tanh"}


def _registered(value):
    if isinstance(value, dict) and value.get("config") in _REGISTERED:
        return _REGISTERED[value["config"]]
    return value


def _activation(layer, value, what: str = "activation") -> str | None:
    value = _registered(value)
    if value in (None, "linear"):
        return None
    if not isinstance(value, str) or ACTIVATIONS.get(value) not in INLINE:
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"{what} {value!r} is not a parameter-free activation cnnspec knows",
            "inline activations: " + ", ".join(sorted(INLINE)),
        )
    return ACTIVATIONS[value]


def _channels_last(layer, cfg) -> None:
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise refuse(
            FRAMEWORK,
            _where(layer),
            "data_format='channels_first' is not supported",
            "cnnspec imports channels-last Keras models (the Keras default)",
        )


def _padding(layer, value: str) -> str:
    if value not in ("valid", "same"):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"padding={value!r} is not supported",
            "use 'valid', 'same' or ZeroPadding",
        )
    return value


def _fields(**values) -> dict[str, Any]:
    """Drop the spec defaults so the spec reads like one written by hand."""
    defaults = {
        "stride": 1,
        "dilation": 1,
        "padding": "valid",
        "groups": 1,
        "bias": True,
        "activation": None,
        "depth_multiplier": 1,
        "keepdims": False,
    }
    return {
        key: value for key, value in values.items() if key not in defaults or defaults[key] != value
    }


def _conv(ctx, layer, cfg, inputs, shapes):
    _channels_last(layer, cfg)
    rank = len(cfg["kernel_size"])
    subsample = cfg.get(
        "subsample", (1,) * rank
    )  # cnnspec's PortableConv: computed at stride 1, then subsampled
    strides = [s * t for s, t in zip(cfg["strides"], subsample)]
    ctx.add(
        layer,
        f"conv{rank}d",
        inputs,
        **_fields(
            filters=cfg["filters"],
            kernel_size=compact(cfg["kernel_size"]),
            stride=compact(strides),
            padding=_padding(layer, cfg["padding"]),
            dilation=compact(cfg["dilation_rate"]),
            groups=cfg.get("groups", 1),
            bias=cfg["use_bias"],
            activation=_activation(layer, cfg["activation"]),
        ),
    )


def _conv_transpose(ctx, layer, cfg, inputs, shapes):
    _channels_last(layer, cfg)
    rank = len(cfg["kernel_size"])
    extra = (
        {}
        if cfg.get("output_padding") is None
        else {"output_padding": compact(cfg["output_padding"])}
    )
    ctx.add(
        layer,
        f"conv_transpose{rank}d",
        inputs,
        **_fields(
            filters=cfg["filters"],
            kernel_size=compact(cfg["kernel_size"]),
            stride=compact(cfg["strides"]),
            padding=_padding(layer, cfg["padding"]),
            dilation=compact(cfg["dilation_rate"]),
            bias=cfg["use_bias"],
            activation=_activation(layer, cfg["activation"]),
            **extra,
        ),
    )


def _cropped_conv_transpose(ctx, layer, cfg, inputs, shapes):
    """cnnspec's generated CroppedConv{N}DTranspose: the full transposed conv, extended, then cropped.

    The crop (before, after) with ``extend`` cells is PyTorch's padding p = before and
    output_padding = before - after + extend, when that is a legal output padding."""
    rank = len(cfg["kernel_size"])
    spread = tuple(
        cfg.get("spread") or (1,) * rank
    )  # with dilation the stride is applied as `spread`
    strides = tuple(s * t for s, t in zip(cfg["strides"], spread))
    paddings, output_paddings = [], []
    for (before, after), extend, stride, dilation in zip(
        cfg["crop"], cfg["extend"], strides, cfg["dilation_rate"]
    ):
        output_padding = before - after + extend
        if not 0 <= output_padding < max(stride, dilation):
            raise refuse(
                FRAMEWORK, _where(layer), f"crop {cfg['crop']} has no numeric padding equivalent"
            )
        paddings.append(before)
        output_paddings.append(output_padding)
    extra = {"output_padding": compact(output_paddings)} if any(output_paddings) else {}
    ctx.add(
        layer,
        f"conv_transpose{rank}d",
        inputs,
        **_fields(
            filters=cfg["filters"],
            kernel_size=compact(cfg["kernel_size"]),
            stride=compact(strides),
            padding=compact(paddings),
            dilation=compact(cfg["dilation_rate"]),
            bias=cfg["use_bias"],
            activation=_activation(layer, cfg["activation"]),
            **extra,
        ),
    )


def _depthwise(ctx, layer, cfg, inputs, shapes, *, layer_type: str = "depthwise_conv2d", **more):
    _channels_last(layer, cfg)
    ctx.add(
        layer,
        layer_type,
        inputs,
        **more,
        **_fields(
            kernel_size=compact(cfg["kernel_size"]),
            depth_multiplier=cfg["depth_multiplier"],
            stride=compact(cfg["strides"]),
            padding=_padding(layer, cfg["padding"]),
            dilation=compact(cfg["dilation_rate"]),
            bias=cfg["use_bias"],
            activation=_activation(layer, cfg["activation"]),
        ),
    )


def _separable(ctx, layer, cfg, inputs, shapes):
    _depthwise(
        ctx, layer, cfg, inputs, shapes, layer_type="separable_conv2d", filters=cfg["filters"]
    )


def _pool(kind: str):
    def handler(ctx, layer, cfg, inputs, shapes):
        _channels_last(layer, cfg)
        size = cfg["pool_size"]
        size = (size,) if isinstance(size, int) else tuple(size)
        strides = cfg.get("strides") or size
        strides = (strides,) if isinstance(strides, int) else tuple(strides)
        fields = _fields(pool_size=compact(size), padding=_padding(layer, cfg["padding"]))
        if tuple(strides) != tuple(size):  # a pool's stride defaults to its size, not to 1
            fields["stride"] = compact(strides)
        ctx.add(layer, f"{kind}_pool{len(size)}d", inputs, **fields)

    return handler


def _global_pool(kind: str):
    def handler(ctx, layer, cfg, inputs, shapes):
        _channels_last(layer, cfg)
        ctx.add(
            layer,
            f"global_{kind}_pool",
            inputs,
            **_fields(keepdims=bool(cfg.get("keepdims", False))),
        )

    return handler


def _batch_norm(ctx, layer, cfg, inputs, shapes):
    axis = (
        cfg["axis"][0]
        if isinstance(cfg["axis"], (list, tuple)) and len(cfg["axis"]) == 1
        else cfg["axis"]
    )
    if axis not in (-1, len(shapes[0]) - 1):
        raise refuse(
            FRAMEWORK, _where(layer), f"normalises axis {cfg['axis']}, not the channel (last) axis"
        )
    if cfg.get("renorm"):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            "renorm is not supported",
            "cnnspec's batch_norm is the plain one",
        )
    fields: dict[str, Any] = {key: False for key in ("center", "scale") if not cfg.get(key, True)}
    if round(cfg["epsilon"], 12) != 1e-5:
        fields["epsilon"] = float(cfg["epsilon"])
    momentum = round(1.0 - cfg["momentum"], 12)
    if momentum != 0.1:
        fields["momentum"] = momentum
    ctx.add(layer, "batch_norm", inputs, **fields)


def _dropout(ctx, layer, cfg, inputs, shapes):
    kind = "spatial_dropout" if type(layer).__name__.startswith("SpatialDropout") else "dropout"
    noise = cfg.get("noise_shape")
    if noise is not None:
        noise = list(noise)[1:]
        if all(
            d == 1 for d in noise
        ):  # one draw per sample drops the whole branch: EfficientNet's stochastic depth
            kind = "stochastic_depth"
        elif len(noise) >= 2 and all(d == 1 for d in noise[:-1]):  # one draw per channel
            kind = "spatial_dropout"
        else:
            raise refuse(
                FRAMEWORK,
                _where(layer),
                f"noise_shape {cfg['noise_shape']} is not supported",
                "(None, 1, ..., 1) is stochastic depth, (None, 1, ..., C) spatial dropout",
            )
    ctx.add(layer, kind, inputs, rate=float(cfg["rate"]))


def _flatten(ctx, layer, cfg, inputs, shapes):
    _channels_last(layer, cfg)
    ctx.add(layer, "flatten", inputs)


def _dense(ctx, layer, cfg, inputs, shapes):
    activation = _activation(layer, cfg["activation"])
    rank = len(shapes[0]) - 2
    if (
        rank >= 1
    ):  # Dense on a channels-last map contracts the channel axis: exactly a 1x1 convolution
        ctx.builder.rewrite(
            layer.name, "Dense on a channels-last feature map", f"conv{rank}d with kernel_size 1"
        )
        ctx.add(
            layer,
            f"conv{rank}d",
            inputs,
            source=layer.name,
            **_fields(
                filters=cfg["units"], kernel_size=1, bias=cfg["use_bias"], activation=activation
            ),
        )
        return
    ctx.add(
        layer,
        "dense",
        inputs,
        **_fields(units=cfg["units"], bias=cfg["use_bias"], activation=activation),
    )


def _activation_layer(ctx, layer, cfg, inputs, shapes):
    value = _registered(cfg["activation"])
    if value == "gelu_tanh":
        ctx.add(layer, "gelu", inputs, approximate="tanh")
        return
    if value == "linear":
        _identity(ctx, layer, cfg, inputs, shapes, "Activation('linear')")
        return
    if not isinstance(value, str) or value not in ACTIVATIONS:
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"activation {value!r} is not supported",
            "supported: " + ", ".join(sorted(ACTIVATIONS)) + ", linear",
        )
    kind = ACTIVATIONS[value]
    fields = (
        {"negative_slope": 0.2} if kind == "leaky_relu" else {}
    )  # keras.activations.leaky_relu's default
    ctx.add(layer, kind, inputs, **fields)


def _identity(ctx, layer, cfg, inputs, shapes, what: str = "Identity"):
    from cnnspec.spec.models import layer_types

    if "identity" in layer_types():
        ctx.add(layer, "identity", inputs)
        return
    ctx.builder.rewrite(layer.name, what, "removed (it computes nothing)")
    ctx.names[id(layer.output)] = inputs[0]


def _relu(ctx, layer, cfg, inputs, shapes):
    max_value, slope, threshold = (
        cfg.get("max_value"),
        cfg.get("negative_slope", 0.0),
        cfg.get("threshold", 0.0),
    )
    if threshold:
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"threshold={threshold} is not supported",
            "relu, relu6, leaky_relu",
        )
    if max_value is None and not slope:
        ctx.add(layer, "relu", inputs)
    elif max_value is not None and float(max_value) == 6.0 and not slope:
        ctx.add(layer, "relu6", inputs)
    elif max_value is None:
        ctx.add(layer, "leaky_relu", inputs, negative_slope=float(slope))
    else:
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"ReLU(max_value={max_value}, negative_slope={slope}) is not supported",
            "relu, relu6 (max_value=6) and leaky_relu are",
        )


def _leaky_relu(ctx, layer, cfg, inputs, shapes):
    slope = cfg.get("negative_slope", cfg.get("alpha"))
    fields = {} if slope == 0.01 else {"negative_slope": float(slope)}
    ctx.add(layer, "leaky_relu", inputs, **fields)


def _elu(ctx, layer, cfg, inputs, shapes):
    fields = {} if cfg.get("alpha", 1.0) == 1.0 else {"alpha": float(cfg["alpha"])}
    ctx.add(layer, "elu", inputs, **fields)


def _prelu(ctx, layer, cfg, inputs, shapes):
    spatial = list(range(1, len(shapes[0]) - 1))
    shared = sorted(cfg.get("shared_axes") or [])
    if shared == spatial:
        ctx.add(layer, "prelu", inputs)
    elif shared == list(range(1, len(shapes[0]))):
        ctx.add(layer, "prelu", inputs, per_channel=False)
    else:
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"shared_axes={cfg.get('shared_axes')} (one slope per element)",
            f"cnnspec's prelu has one slope per channel (shared_axes={spatial}) or one in all",
        )


def _softmax(ctx, layer, cfg, inputs, shapes):
    axis = cfg.get("axis", -1)
    if axis not in (-1, len(shapes[0]) - 1, [-1]):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"softmax over axis {axis}",
            "cnnspec's softmax acts on the channel axis",
        )
    ctx.add(layer, "softmax", inputs)


def _upsample(ctx, layer, cfg, inputs, shapes):
    _channels_last(layer, cfg)
    size = cfg["size"]
    size = (size,) if isinstance(size, int) else tuple(size)
    mode = cfg.get("interpolation", "nearest")
    if mode not in ("nearest", "bilinear"):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"interpolation {mode!r}",
            "nearest and bilinear are supported",
        )
    fields = {"mode": mode} if mode != "nearest" else {}
    ctx.add(layer, "upsample", inputs, scale_factor=compact(size), **fields)


def _zero_pad(ctx, layer, cfg, inputs, shapes):
    _channels_last(layer, cfg)
    padding = cfg["padding"]
    rank = len(shapes[0]) - 2
    if rank == 1:
        padding = [padding] if isinstance(padding[0], int) else padding
    ctx.add(layer, f"zero_pad{rank}d", inputs, padding=compact_padding(padding))


def _merge(kind: str):
    def handler(ctx, layer, cfg, inputs, shapes):
        if kind == "concat" and cfg.get("axis", -1) not in (-1, len(shapes[0]) - 1):
            raise refuse(
                FRAMEWORK,
                _where(layer),
                f"concatenates along axis {cfg['axis']}",
                "cnnspec's concat joins channels (the last axis)",
            )
        ctx.add(layer, kind, inputs)

    return handler


def _reshape(ctx, layer, cfg, inputs, shapes):
    target = tuple(cfg["target_shape"])
    incoming = tuple(shapes[0][1:])
    if len(incoming) >= 2 and all(d == 1 for d in incoming[:-1]) and target == (incoming[-1],):
        # (1, ..., 1, C) -> (C,): both flatten orders agree when every spatial dim is 1
        ctx.builder.rewrite(layer.name, f"Reshape({target}) of a {incoming} map", "flatten")
        ctx.add(layer, "flatten", inputs, source=layer.name)
        return
    source_layer = ctx.builder.layers[-1] if ctx.builder.layers else None
    if (
        source_layer is not None
        and source_layer["name"] == inputs[0]
        and source_layer["type"].startswith("global_")
        and not source_layer.get("keepdims")
        and ctx.consumers.get(id(ctx.node.input_tensors[0])) == 1
    ):
        previous = ctx.builder.layers[-2]["name"] if len(ctx.builder.layers) > 1 else "input"
        pooled = ctx.shapes[source_layer.get("inputs", [previous])[0]]
        exact = (
            len(target) == len(pooled)
            and all(d == 1 for d in target[:-1])
            and target[-1] == pooled[-1]
        )
    else:
        exact = False
    if exact:
        ctx.builder.rewrite(
            layer.name,
            f"{source_layer.get('source', source_layer['name'])} + Reshape({target})",
            f"{source_layer['type']} with keepdims: true",
        )
        ctx.builder.layers.pop()
        ctx.builder._names.discard(source_layer["name"])
        fields = {k: v for k, v in source_layer.items() if k not in ("name", "type", "source")}
        fields["keepdims"] = True
        previous = ctx.builder.layers[-1]["name"] if ctx.builder.layers else "input"
        pool_inputs = fields.pop("inputs", [previous])
        ctx.add(
            layer,
            source_layer["type"],
            pool_inputs,
            source=f"{source_layer.get('source', source_layer['name'])}+{layer.name}",
            **fields,
        )
        return
    raise refuse(
        FRAMEWORK,
        _where(layer),
        f"Reshape{target} is not supported here",
        "cnnspec rewrites Reshape((1, 1, C)) right after a global pooling into keepdims; "
        "for other reshapes use Flatten or a global pooling",
    )


_ISSUE_10 = {  # layer types being added to the catalog (issue 10): emitted with their spec fields
    "Multiply": "multiply",
    "Subtract": "subtract",
    "Maximum": "maximum",
    "Minimum": "minimum",
    "Average": "average",
}


def _broadcast_merge(kind: str):
    def handler(ctx, layer, cfg, inputs, shapes):
        ctx.add(layer, kind, inputs)

    return handler


def _rescaling(ctx, layer, cfg, inputs, shapes):
    offset = cfg.get("offset", 0.0)
    ctx.add(layer, "rescale", inputs, scale=cfg["scale"], **({"offset": offset} if offset else {}))


def _normalization(ctx, layer, cfg, inputs, shapes):
    """Keras Normalization: constants given in the config become fields; adapted statistics are weights."""
    import numpy as np

    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis not in (-1, len(shapes[0]) - 1) or cfg.get("invert"):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"axis={axis}, invert={cfg.get('invert')}",
            "per-channel normalize",
        )
    if cfg.get("mean") is None:
        ctx.add(layer, "normalize", inputs)
        return
    channels = shapes[0][-1]
    mean, variance = (
        np.broadcast_to(np.asarray(cfg[k], dtype=float).reshape(-1), (channels,))
        for k in ("mean", "variance")
    )
    ctx.add(layer, "normalize", inputs, mean=mean.tolist(), variance=variance.tolist())


def _layer_norm(ctx, layer, cfg, inputs, shapes):
    axis = cfg.get("axis", -1)
    if axis not in (-1, [-1], len(shapes[0]) - 1, [len(shapes[0]) - 1]):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"normalises axes {axis}",
            "layer_norm normalises the channel axis",
        )
    fields: dict[str, Any] = (
        {} if round(cfg["epsilon"], 12) == 1e-5 else {"epsilon": float(cfg["epsilon"])}
    )
    fields.update({key: False for key in ("center", "scale") if not cfg[key]})
    ctx.add(layer, "layer_norm", inputs, **fields)


def _group_norm(ctx, layer, cfg, inputs, shapes):
    """GroupNormalization; one group per channel (Keras' groups=-1) is instance_norm."""
    axis = cfg.get("axis", -1)
    if axis not in (-1, len(shapes[0]) - 1):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"normalises axis {axis}",
            "group_norm groups the channel (last) axis",
        )
    if bool(cfg["center"]) != bool(cfg["scale"]):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            "center and scale differ",
            "group_norm's affine learns both or neither",
        )
    channels = shapes[0][-1]
    groups = channels if cfg["groups"] == -1 else cfg["groups"]
    fields: dict[str, Any] = (
        {} if round(cfg["epsilon"], 12) == 1e-5 else {"epsilon": float(cfg["epsilon"])}
    )
    if (
        groups == channels
    ):  # instance_norm learns nothing by default (PyTorch's InstanceNorm), group_norm does
        ctx.add(
            layer, "instance_norm", inputs, **fields, **({"affine": True} if cfg["center"] else {})
        )
        return
    if not cfg["center"]:
        fields["affine"] = False
    ctx.add(layer, "group_norm", inputs, groups=groups, **fields)


def _counted_average_pooling(ctx, layer, cfg, inputs, shapes):
    """cnnspec's generated CountedAveragePooling helper, read back as the avg pool it implements."""
    size, strides = tuple(cfg["pool_size"]), tuple(cfg["strides"])
    fields = _fields(
        pool_size=compact(size),
        padding=compact_padding(cfg["padding"]),
        ceil_mode=any(cfg["ceil_extra"]),
    )
    if strides != size:
        fields["stride"] = compact(strides)
    if not cfg["count_include_pad"] and any(any(pair) for pair in cfg["padding"]):
        fields["count_include_pad"] = False
    ctx.add(layer, f"avg_pool{len(size)}d", inputs, **fields)


def _cropping(ctx, layer, cfg, inputs, shapes):
    rank = len(shapes[0]) - 2
    cropping = cfg["cropping"]
    if rank == 1:
        cropping = [cropping]
    ctx.add(layer, f"crop{rank}d", inputs, cropping=compact_padding(cropping))


def _layer_scale(ctx, layer, cfg, inputs, shapes):
    """cnnspec's LayerScale helper (init_value) and keras.applications ConvNeXt's (init_values)."""
    value = float(cfg["init_value"] if "init_value" in cfg else cfg["init_values"])
    ctx.add(layer, "layer_scale", inputs, **({} if value == 1e-6 else {"init_value": value}))


def _stochastic_depth(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "stochastic_depth", inputs, rate=float(cfg["rate"]))


def _channel_shuffle(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "channel_shuffle", inputs, groups=int(cfg["groups"]))


def _channel_slice(ctx, layer, cfg, inputs, shapes):
    ctx.add(layer, "channel_slice", inputs, start=int(cfg["start"]), stop=int(cfg["stop"]))


def _padding_helper(ctx, layer, cfg, inputs, shapes):
    """cnnspec's Padding (constant / reflect / replicate) and ConstantPadding helpers: a pad layer."""
    import math

    value, mode = float(cfg.get("value", 0.0)), cfg.get("mode", "constant")
    if not math.isfinite(value):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"pads with {value}",
            "-inf padding is read only before a max pool",
        )
    rank = len(shapes[0]) - 2
    padding = [list(pair) for pair in cfg["padding"]]
    if mode == "constant" and value == 0.0:
        ctx.add(layer, f"zero_pad{rank}d", inputs, padding=compact_padding(padding))
        return
    fields: dict[str, Any] = {"mode": mode} if mode != "constant" else {"value": value}
    ctx.add(layer, f"pad{rank}d", inputs, padding=compact_padding(padding), **fields)


def _adaptive_pooling(ctx, layer, cfg, inputs, shapes):
    kind = (
        "adaptive_avg_pool" if cfg.get("reduction", "average") == "average" else "adaptive_max_pool"
    )
    ctx.add(layer, kind, inputs, output_size=compact(cfg["output_size"]))


_RESIZE_MODES = {
    "nearest": "nearest",
    "nearest_exact": "nearest_exact",
    "linear": "bilinear",
    "cubic": "bicubic",
}


def _resize_helper(ctx, layer, cfg, inputs, shapes):
    """cnnspec's Resize helper (the engine's mode names: linear / cubic for every rank)."""
    mode = _RESIZE_MODES[cfg.get("mode", "linear")]
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


def _resizing(ctx, layer, cfg, inputs, shapes):
    """Keras Resizing: half-pixel bilinear, or nearest reading floor((i + 0.5) * r) (PyTorch's nearest-exact)."""
    _channels_last(layer, cfg)
    interpolation = cfg.get("interpolation", "bilinear")
    modes = {"bilinear": "bilinear", "nearest": "nearest_exact"}
    if (
        interpolation not in modes
        or cfg.get("crop_to_aspect_ratio")
        or cfg.get("pad_to_aspect_ratio")
    ):
        raise refuse(
            FRAMEWORK,
            _where(layer),
            f"Resizing(interpolation={interpolation!r}) with aspect-ratio cropping or padding is not supported",
            "bilinear and nearest resizing to a fixed size are",
        )
    mode = modes[interpolation]
    fields = {"mode": mode} if mode != "nearest" else {}
    ctx.add(layer, "resize", inputs, size=compact([cfg["height"], cfg["width"]]), **fields)


Handler = Callable[..., None]

# Keras layer class -> handler: the one place a Keras layer's meaning in the spec is decided.
KERAS_LAYERS: dict[str, Handler] = {
    **{f"Conv{r}D": _conv for r in (1, 2, 3)},
    **{f"Conv{r}DTranspose": _conv_transpose for r in (1, 2, 3)},
    "DepthwiseConv2D": _depthwise,
    "SeparableConv2D": _separable,
    **{f"MaxPooling{r}D": _pool("max") for r in (1, 2, 3)},
    **{f"AveragePooling{r}D": _pool("avg") for r in (1, 2, 3)},
    **{f"GlobalAveragePooling{r}D": _global_pool("avg") for r in (1, 2, 3)},
    **{f"GlobalMaxPooling{r}D": _global_pool("max") for r in (1, 2, 3)},
    "BatchNormalization": _batch_norm,
    "Dropout": _dropout,
    **{f"SpatialDropout{r}D": _dropout for r in (1, 2, 3)},
    "Flatten": _flatten,
    "Dense": _dense,
    "Activation": _activation_layer,
    "ReLU": _relu,
    "LeakyReLU": _leaky_relu,
    "ELU": _elu,
    "PReLU": _prelu,
    "Softmax": _softmax,
    "Identity": _identity,
    **{f"UpSampling{r}D": _upsample for r in (1, 2, 3)},
    **{f"ZeroPadding{r}D": _zero_pad for r in (1, 2, 3)},
    "Add": _merge("add"),
    "Concatenate": _merge("concat"),
    **{cls: _broadcast_merge(kind) for cls, kind in _ISSUE_10.items()},
    "Reshape": _reshape,
    "Rescaling": _rescaling,
    "Normalization": _normalization,
    "LayerNormalization": _layer_norm,
    "GroupNormalization": _group_norm,
    **{f"Cropping{r}D": _cropping for r in (1, 2, 3)},
    "CountedAveragePooling": _counted_average_pooling,
    "CroppedConvTranspose": _cropped_conv_transpose,
    "PortableConv": _conv,
    "LayerScale": _layer_scale,
    "StochasticDepth": _stochastic_depth,
    "ChannelShuffle": _channel_shuffle,
    "ChannelSlice": _channel_slice,
    "Padding": _padding_helper,
    "ConstantPadding": _padding_helper,
    "AdaptivePooling": _adaptive_pooling,
    "Resize": _resize_helper,
    "Resizing": _resizing,
}

# cnnspec's own generated helper layers that stand for a Keras layer class (for the pad absorption).
_HELPER_BASES = {"PortableConv": "Conv2D"}


def _load(model_or_path):
    import keras

    if isinstance(model_or_path, keras.Model):
        return model_or_path
    path = Path(model_or_path)
    if not path.is_file():
        raise refuse("keras", f"file {path}", "not found")
    if path.suffix not in (".keras", ".h5"):
        raise refuse("keras", f"file {path}", "is not a .keras or .h5 model file")
    try:  # safe_mode refuses Lambda layers' pickled code
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as error:  # noqa: BLE001 - keras raises many types for unreadable files
        raise refuse(
            "keras", f"file {path}", f"cannot be loaded safely: {type(error).__name__}: {error}"
        ) from None


def _tensor_shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _check_graph(model) -> None:
    import keras

    if not getattr(model, "inputs", None) and not model.built:
        raise refuse(
            "keras",
            f"model '{model.name}'",
            "has no known input shape",
            "build it with keras.Input(shape=...) first",
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise refuse(
            "keras",
            f"model '{model.name}'",
            f"has {len(model.inputs)} inputs and {len(model.outputs)} outputs; cnnspec imports one of each",
        )
    for layer in model.layers:
        if isinstance(layer, keras.Model) and not (
            isinstance(layer, keras.Sequential) and len(layer._inbound_nodes) == 1
        ):
            raise refuse(
                FRAMEWORK,
                _where(layer),
                "is a nested model",
                "rebuild the outer model on the nested model's layers (functional API), then import",
            )


def import_keras(model_or_path) -> ImportResult:
    """Import a Keras model; returns the spec and the rewrites made (see :func:`from_keras`)."""
    from cnnspec.verifier.onnx_export import _prepare_environment

    _prepare_environment()
    import keras

    model = _load(model_or_path)
    _check_graph(model)
    ctx = _Context(model)
    input_tensor = model.inputs[0]
    input_shape = _tensor_shape(input_tensor)[1:]
    if input_shape[-1:] == (None,) or len(input_shape) not in (2, 3, 4):
        raise refuse(
            "keras",
            f"model '{model.name}'",
            f"input shape {input_shape} (batch excluded)",
            "cnnspec needs a channels-last input with known channels: (L, C), (H, W, C) or "
            "(D, H, W, C); spatial sizes may be None (any size)",
        )
    ctx.names[id(input_tensor)] = "input"
    ctx.shapes["input"] = input_shape

    # operations: the layers and the raw ops (x + 3.0, a * b) Keras 3 records in a functional graph
    layers = [
        layer
        for layer in getattr(model, "operations", model.layers)
        if type(layer).__name__ != "InputLayer"
    ]
    aliases: dict[
        int, Any
    ] = {}  # a nested Sequential's inner input / outer output tensor -> the tensor it is
    layers = _inline_sequentials(layers, aliases)
    nodes = {}
    for layer in layers:
        if len(layer._inbound_nodes) != 1:
            raise refuse(
                FRAMEWORK,
                _where(layer),
                f"is called {len(layer._inbound_nodes)} times (a shared layer)",
                "cnnspec layers have one output each; give each call its own layer",
            )
        nodes[id(layer)] = layer._inbound_nodes[0]
        for tensor in nodes[id(layer)].input_tensors:
            ctx.consumers[id(tensor)] = ctx.consumers.get(id(tensor), 0) + 1
    pending_pads: dict[str, Any] = {}
    for layer in layers:
        node = nodes[id(layer)]
        class_name = type(layer).__name__
        class_name = _HELPER_BASES.get(class_name, class_name)
        try:
            inputs = [ctx.names[id(aliases.get(id(t), t))] for t in node.input_tensors]
        except KeyError:
            raise refuse(
                FRAMEWORK,
                _where(layer),
                "reads a tensor that is not the output of a layer (e.g. a raw TensorFlow op or a constant)",
                "build the model from Keras layers only",
            ) from None
        shapes = [_tensor_shape(t) for t in node.input_tensors]
        if not isinstance(layer, keras.layers.Layer):
            _operation(ctx, layer, node, inputs)
            ctx.shapes[ctx.builder.layers[-1]["name"]] = _tensor_shape(layer.output)[1:]
            continue
        cfg = layer.get_config()
        inputs = _absorb_helper_pad(ctx, layer, class_name, cfg, inputs, pending_pads)
        if inputs is None:
            continue
        handler = KERAS_LAYERS.get(class_name)
        if handler is None:
            raise _unsupported(layer)
        count = len(ctx.builder.layers)
        ctx.node = node
        handler(ctx, layer, cfg, inputs, shapes)
        if id(layer.output) not in ctx.names:
            ctx.names[id(layer.output)] = ctx.builder.layers[-1]["name"]
        if len(ctx.builder.layers) > count:
            ctx.shapes[ctx.builder.layers[-1]["name"]] = _tensor_shape(layer.output)[1:]
        if layer.name in pending_pads:
            ctx.builder.layers[-1]["padding"] = pending_pads.pop(layer.name)
    channels, size = input_shape[-1], list(input_shape[:-1])
    spec = ctx.builder.finish(model.name, channels, size)
    return ImportResult(
        spec=spec, rewrites=ctx.builder.rewrites, framework="keras", details={"model": model}
    )


_PAD_TARGETS = (
    "PortableConv",
    "Conv1D",
    "Conv2D",
    "Conv3D",
    "DepthwiseConv2D",
    "SeparableConv2D",
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
)  # zeros counted: count_include_pad
_INF_PAD_TARGETS = ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D")


def _absorb_helper_pad(ctx, layer, class_name, cfg, inputs, pending):
    """cnnspec's generated ``<name>_pad`` helper before the valid layer ``<name>`` it serves (ZeroPadding
    before a conv, ConstantPadding(-inf) before a max pool) becomes that layer's padding."""
    import math

    if (
        class_name == "ConstantPadding"
        and cfg.get("value") == -math.inf
        and layer.name.endswith("_pad")
    ):
        targets, padding = _INF_PAD_TARGETS, [list(pair) for pair in cfg["padding"]]
    elif class_name.startswith("ZeroPadding") and layer.name.endswith("_pad"):
        targets, padding = _PAD_TARGETS, None
    else:
        return inputs
    target = layer.name[: -len("_pad")]
    try:
        consumer = ctx.model.get_layer(target)
    except ValueError:
        return inputs
    if (
        _HELPER_BASES.get(type(consumer).__name__, type(consumer).__name__) in targets
        and consumer.get_config()["padding"] == "valid"
        and not _is_same(layer, consumer, padding or cfg["padding"])
        and consumer._inbound_nodes
        and consumer._inbound_nodes[0].input_tensors[0] is layer.output
    ):
        if padding is None:
            padding = cfg["padding"]
            padding = [padding] if isinstance(padding[0], int) else padding
        pending[target] = compact_padding(padding)
        ctx.names[id(layer.output)] = inputs[0]
        return None
    return inputs


def _is_same(pad_layer, consumer, padding) -> bool:
    """Whether ``padding`` is what Keras' padding="same" applies for ``consumer``: cnnspec never writes a pad
    helper then (it writes padding="same"), so such a ``<name>_pad`` is a layer of the model (Keras'
    MobileNetV3 and EfficientNet name theirs that way too)."""
    from cnnspec.engine.shapes import same_padding

    cfg = consumer.get_config()
    if (
        "kernel_size" not in cfg or type(consumer).__name__ == "PortableConv"
    ):  # PortableConv never pads "same"
        return False
    sizes = _tensor_shape(pad_layer.input)[1:-1]
    if None in sizes:  # fixed amounts are 'same' at some sizes only: they stay what they are
        return False
    rank = len(sizes)
    pairs = (
        [padding] if isinstance(padding[0], int) and len(padding) == 2 and rank == 1 else padding
    )
    pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in pairs]
    if len(pairs) != rank:
        return False
    strides = [s * t for s, t in zip(cfg["strides"], cfg.get("subsample") or (1,) * rank)]
    if (
        max(strides) > 1 and max(cfg["dilation_rate"]) > 1
    ):  # cnnspec pads explicitly then (Keras refuses same)
        return False
    if len(set(strides)) > 1:  # and with unequal strides (see targets.keras.code.is_keras_same)
        return False
    same = [
        same_padding(n, k, s, d)
        for n, k, s, d in zip(sizes, cfg["kernel_size"], strides, cfg["dilation_rate"])
    ]
    return [tuple(p) for p in pairs] == [tuple(p) for p in same]


_OPERATIONS = {
    "Add": "add",
    "Multiply": "multiply",
    "Subtract": "subtract",
    "Maximum": "maximum",
    "Minimum": "minimum",
}


def _operation(ctx, op, node, inputs) -> None:
    """A raw Keras op in the graph (``x + 3.0``, ``x * (1 / 6)``, ``a * b``: Keras 3 MobileNetV3's hard sigmoid
    and squeeze-excite): two tensors are an element-wise layer, a tensor and a number a scale or offset."""
    kind = _OPERATIONS.get(type(op).__name__)
    arguments = list(getattr(node, "arguments").args) if hasattr(node, "arguments") else []
    constants = [a for a in arguments if isinstance(a, (int, float)) and not isinstance(a, bool)]
    where = f"'{op.name}' ({type(op).__name__} op)"
    if kind is None or len(arguments) != 2:
        raise refuse(
            FRAMEWORK,
            where,
            "is a raw op cnnspec does not read",
            "+, -, * on tensors or by a number",
        )
    if not constants:
        ctx.builder.add(op.name, kind, inputs)
    elif kind == "multiply":
        ctx.builder.add(op.name, "scale", inputs, factor=float(constants[0]))
    elif kind in ("add", "subtract") and isinstance(arguments[1], (int, float)):
        offset = float(constants[0]) if kind == "add" else -float(constants[0])
        ctx.builder.add(op.name, "rescale", inputs, scale=1.0, offset=offset)
    else:
        raise refuse(FRAMEWORK, where, f"{kind} with a constant", "x * c, x + c and x - c are read")
    ctx.names[id(op.output)] = ctx.builder.layers[-1]["name"]


def _custom_scale(ctx, layer, cfg, inputs, shapes):
    """Keras InceptionResNetV2's CustomScaleLayer: inputs[0] + inputs[1] * scale, as scale then add."""
    if len(inputs) != 2 or "scale" not in cfg:
        raise _unsupported(layer)
    scaled = ctx.builder.add(
        f"{layer.name}_scaled", "scale", [inputs[1]], factor=float(cfg["scale"])
    )
    ctx.builder.rewrite(
        layer.name, "CustomScaleLayer: x + y * scale", f"scale '{scaled}' and add '{layer.name}'"
    )
    ctx.add(layer, "add", [inputs[0], scaled])


KERAS_LAYERS["CustomScaleLayer"] = _custom_scale


def _inline_sequentials(layers, aliases) -> list:
    """A nested Sequential called once (Keras ConvNeXt's stem) is its layers in order, in the outer graph."""
    import keras

    expanded = []
    for layer in layers:
        if not isinstance(layer, keras.Sequential) or len(layer._inbound_nodes) != 1:
            expanded.append(layer)
            continue
        outer = layer._inbound_nodes[0]
        inner = [sub for sub in layer.layers if type(sub).__name__ != "InputLayer"]
        if (
            len(outer.input_tensors) != 1
            or not inner
            or any(len(sub._inbound_nodes) != 1 for sub in inner)
        ):
            expanded.append(layer)
            continue
        aliases[id(layer.inputs[0])] = outer.input_tensors[0]
        aliases[id(outer.output_tensors[0])] = inner[-1].output
        expanded.extend(_inline_sequentials(inner, aliases))
    return expanded


def _unsupported(layer):
    name = type(layer).__name__
    if name in ("Lambda", "TFOpLambda"):
        return refuse(
            FRAMEWORK,
            _where(layer),
            "is a Lambda layer: its Python code cannot be read as a spec",
            "replace it with built-in layers; supported: " + ", ".join(sorted(KERAS_LAYERS)),
        )
    return refuse(
        FRAMEWORK,
        _where(layer),
        f"layer class {name} is not supported",
        "supported Keras layers: " + ", ".join(sorted(KERAS_LAYERS)),
    )


def from_keras(model_or_path):
    """Import a Keras 3 model as a cnnspec ModelSpec.

    Args:
        model_or_path: a functional or Sequential ``keras.Model`` with a fixed input shape, or a
            ``.keras`` / ``.h5`` file (loaded with ``safe_mode=True``).

    Returns:
        The :class:`~cnnspec.spec.models.ModelSpec`; Keras layer names are kept.

    Raises:
        UnsupportedModel: a layer no cnnspec type expresses exactly (the message names it and
            lists what is supported).
    """
    return import_keras(model_or_path).spec


# ----------------------------------------------------------------------------------------------
# Weights of the original Keras model, in the neutral (PyTorch) layout of importers.origin
# ----------------------------------------------------------------------------------------------


def _numpy(variable):
    import keras
    import numpy as np

    return np.array(keras.ops.convert_to_numpy(variable))


def _kernel_to_torch(kernel):
    """(*k, B, A) -> (A, B, *k): conv (*k, I/g, O) and transposed conv (*k, O, I) alike."""
    import numpy as np

    return np.transpose(kernel, (kernel.ndim - 1, kernel.ndim - 2) + tuple(range(kernel.ndim - 2)))


def _depthwise_to_torch(kernel):
    """(kh, kw, C, m) -> (C*m, 1, kh, kw): torch output channel c*m + j is Keras (c, j)."""
    import numpy as np

    kh, kw, channels, multiplier = kernel.shape
    return np.transpose(kernel, (2, 3, 0, 1)).reshape(channels * multiplier, 1, kh, kw)


def keras_tensors(model, plan) -> dict:
    """Every weighted spec layer's tensors read from a Keras model, converted to PyTorch's layout.

    Layers are found by ``source`` (or name).  Flat features are laid out channels-last by Keras'
    Flatten; a dense kernel's rows (and BatchNorm / PReLU vectors on flat features) are put in
    the spec's channels-first order.
    """
    import numpy as np

    from cnnspec.importers.origin import WEIGHTED_FAMILIES, OriginalWeightError
    from cnnspec.weights.transfer import flat_permutation

    by_name = {layer.name: layer for layer in _inline_sequentials(model.layers, {})}
    tensors: dict = {}
    for layer_plan in plan.layers:
        if layer_plan.family not in WEIGHTED_FAMILIES:
            continue
        key = layer_plan.spec.source or layer_plan.name
        layer = by_name.get(key)
        if layer is None:
            raise OriginalWeightError(
                f"layer '{layer_plan.name}': the keras model has no layer '{key}'"
            )
        family = layer_plan.family
        to_torch_order = None
        if len(layer_plan.input_shape) == 1:
            source = layer_plan.inputs[0]
            segments = (
                plan.layer(source).flat_segments if source != "input" else (layer_plan.input_shape,)
            )
            inverse = np.argsort(flat_permutation(segments))
            to_torch_order = lambda a, inverse=inverse: a[inverse]
        values: dict[str, np.ndarray] = {}
        bias = getattr(layer, "bias", None) if getattr(layer, "use_bias", False) else None
        kind = _HELPER_BASES.get(type(layer).__name__, type(layer).__name__)
        if family in ("conv", "conv_transpose") and kind == "Dense":  # the 1x1-conv rewrite
            kernel = _numpy(layer.kernel).T
            values["kernel"] = kernel.reshape(kernel.shape + (1,) * layer_plan.spatial_rank)
        elif family in ("conv", "conv_transpose"):
            values["kernel"] = _kernel_to_torch(_numpy(layer.kernel))
        elif family == "depthwise_conv":
            values["depthwise_kernel"] = _depthwise_to_torch(_numpy(layer.kernel))
        elif family == "separable_conv":
            values["depthwise_kernel"] = _depthwise_to_torch(_numpy(layer.depthwise_kernel))
            values["pointwise_kernel"] = _kernel_to_torch(_numpy(layer.pointwise_kernel))
        elif family == "dense":
            kernel = _numpy(layer.kernel)
            values["kernel"] = np.ascontiguousarray(
                (kernel if to_torch_order is None else to_torch_order(kernel)).T
            )
        elif family in ("batch_norm", "layer_norm", "group_norm", "layer_scale", "normalize"):
            names = {
                "batch_norm": ("gamma", "beta", "moving_mean", "moving_variance"),
                "normalize": ("mean", "variance", "count"),
            }.get(family, ("gamma", "beta"))
            for tensor in names:
                variable = (
                    getattr(layer, tensor, None)
                    if any(p.name == tensor for p in layer_plan.params)
                    else None
                )
                if variable is None or not hasattr(variable, "shape"):
                    continue
                vector = _numpy(variable)
                if family == "normalize" and tensor != "count":
                    vector = vector.reshape(-1)
                values[tensor] = (
                    vector if to_torch_order is None or vector.ndim != 1 else to_torch_order(vector)
                )
        elif family == "prelu":
            alpha = _numpy(layer.alpha).reshape(-1)
            values["alpha"] = (
                alpha if to_torch_order is None or alpha.size == 1 else to_torch_order(alpha)
            )
        if bias is not None:
            values["bias"] = _numpy(bias)
        tensors[layer_plan.name] = values
    return tensors
