"""Write the model-zoo example specs: EfficientNet-B0, MobileNetV3-Small and ConvNeXt-Tiny at full size,
plus a ShuffleNetV2 block, an InceptionResNet block and a small U-Net.

The three networks follow the keras.applications architectures layer for layer (weighted layers carry
the Keras layer names, so weights can be copied by name); their parameter counts are checked against
``keras.applications.<Model>(weights=None).count_params()`` in tests/test_zoo_examples.py.

Run from the repository root:  python examples/make_zoo_specs.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = "# yaml-language-server: $schema=../schemas/cnnspec.schema.json\n"


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, float):
        text = repr(value)  # YAML 1.1 reads 1e-06 as a string: the mantissa needs a dot
        return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text
    return str(value)


def write_spec(
    file_name: str, comment: str, name: str, channels: int, size: list[int], layers: list[dict]
) -> None:
    """Write one spec, one flow-style line per layer."""
    lines = [HEADER.rstrip("\n")]
    lines += [f"# {line}" if line else "#" for line in comment.strip().splitlines()]
    lines += [
        "cnnspec: 1",
        f"name: {name}",
        f"input: {{channels: {channels}, size: {_value(size)}}}",
        "layers:",
    ]
    for layer in layers:
        fields = ", ".join(f"{key}: {_value(value)}" for key, value in layer.items())
        lines.append(f"  - {{{fields}}}")
    (HERE / file_name).write_text("\n".join(lines) + "\n")


def correct_pad(size: int, kernel: int) -> list[int]:
    """Keras applications' correct_pad for one axis: SAME_UPPER for a stride-2 window."""
    adjust = 1 - size % 2
    return [kernel // 2 - adjust, kernel // 2]


# ----------------------------------------------------------------------------------------------
# EfficientNet-B0 (keras.applications.efficientnet)
# ----------------------------------------------------------------------------------------------

EFFICIENTNET_B0_STAGES = [  # kernel, repeats, filters in, filters out, expansion, stride
    (3, 1, 32, 16, 1, 1),
    (3, 2, 16, 24, 6, 2),
    (5, 2, 24, 40, 6, 2),
    (3, 3, 40, 80, 6, 2),
    (5, 3, 80, 112, 6, 1),
    (5, 4, 112, 192, 6, 2),
    (3, 1, 192, 320, 6, 1),
]


def efficientnet_b0(size: int = 224) -> list[dict]:
    bn = {"type": "batch_norm", "epsilon": 0.001, "momentum": 0.01}
    layers: list[dict] = [
        {"name": "rescaling", "type": "rescale", "scale": 1 / 255},
        {"name": "normalization", "type": "normalize"},
        {"name": "stem_conv_pad", "type": "zero_pad2d", "padding": [correct_pad(size, 3)] * 2},
        {
            "name": "stem_conv",
            "type": "conv2d",
            "filters": 32,
            "kernel_size": 3,
            "stride": 2,
            "bias": False,
        },
        {"name": "stem_bn", **bn},
        {"name": "stem_activation", "type": "silu"},
    ]
    size = (size - 1) // 2 + 1
    total_blocks = sum(stage[1] for stage in EFFICIENTNET_B0_STAGES)
    block = 0
    previous = "stem_activation"
    for stage, (kernel, repeats, filters_in, filters_out, expansion, stride) in enumerate(
        EFFICIENTNET_B0_STAGES
    ):
        for repeat in range(repeats):
            if repeat:
                stride, filters_in = 1, filters_out
            prefix = f"block{stage + 1}{chr(97 + repeat)}_"
            drop_rate = 0.2 * block / total_blocks
            block_input = previous
            filters = filters_in * expansion
            if expansion != 1:
                layers += [
                    {
                        "name": f"{prefix}expand_conv",
                        "type": "conv2d",
                        "filters": filters,
                        "kernel_size": 1,
                        "bias": False,
                    },
                    {"name": f"{prefix}expand_bn", **bn},
                    {"name": f"{prefix}expand_activation", "type": "silu"},
                ]
            if stride == 2:
                layers.append(
                    {
                        "name": f"{prefix}dwconv_pad",
                        "type": "zero_pad2d",
                        "padding": [correct_pad(size, kernel)] * 2,
                    }
                )
                layers.append(
                    {
                        "name": f"{prefix}dwconv",
                        "type": "depthwise_conv2d",
                        "kernel_size": kernel,
                        "stride": 2,
                        "bias": False,
                    }
                )
                size = (size + sum(correct_pad(size, kernel)) - kernel) // 2 + 1
            else:
                layers.append(
                    {
                        "name": f"{prefix}dwconv",
                        "type": "depthwise_conv2d",
                        "kernel_size": kernel,
                        "padding": "same",
                        "bias": False,
                    }
                )
            layers += [
                {"name": f"{prefix}bn", **bn},
                {"name": f"{prefix}activation", "type": "silu"},
                {"name": f"{prefix}se_squeeze", "type": "global_avg_pool", "keepdims": True},
                {
                    "name": f"{prefix}se_reduce",
                    "type": "conv2d",
                    "filters": max(1, int(filters_in * 0.25)),
                    "kernel_size": 1,
                    "activation": "silu",
                },
                {
                    "name": f"{prefix}se_expand",
                    "type": "conv2d",
                    "filters": filters,
                    "kernel_size": 1,
                    "activation": "sigmoid",
                },
                {
                    "name": f"{prefix}se_excite",
                    "type": "multiply",
                    "inputs": [f"{prefix}activation", f"{prefix}se_expand"],
                },
                {
                    "name": f"{prefix}project_conv",
                    "type": "conv2d",
                    "filters": filters_out,
                    "kernel_size": 1,
                    "bias": False,
                },
                {"name": f"{prefix}project_bn", **bn},
            ]
            previous = f"{prefix}project_bn"
            if stride == 1 and filters_in == filters_out:
                if drop_rate > 0:
                    layers.append(
                        {
                            "name": f"{prefix}drop",
                            "type": "stochastic_depth",
                            "rate": round(drop_rate, 6),
                        }
                    )
                    previous = f"{prefix}drop"
                layers.append(
                    {"name": f"{prefix}add", "type": "add", "inputs": [previous, block_input]}
                )
                previous = f"{prefix}add"
            block += 1
    layers += [
        {"name": "top_conv", "type": "conv2d", "filters": 1280, "kernel_size": 1, "bias": False},
        {"name": "top_bn", **bn},
        {"name": "top_activation", "type": "silu"},
        {"name": "avg_pool", "type": "global_avg_pool"},
        {"name": "top_dropout", "type": "dropout", "rate": 0.2},
        {"name": "predictions", "type": "dense", "units": 1000, "activation": "softmax"},
    ]
    return layers


# ----------------------------------------------------------------------------------------------
# MobileNetV3-Small (keras.applications.mobilenet_v3, alpha 1.0, not minimalistic)
# ----------------------------------------------------------------------------------------------


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: to a multiple of 8, never more than 10 % below the value."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


MOBILENET_V3_SMALL_BLOCKS = [  # expansion, filters, kernel, stride, squeeze-excite, activation
    (1, 16, 3, 2, True, "relu"),
    (72 / 16, 24, 3, 2, False, "relu"),
    (88 / 24, 24, 3, 1, False, "relu"),
    (4, 40, 5, 2, True, "hard_swish"),
    (6, 40, 5, 1, True, "hard_swish"),
    (6, 40, 5, 1, True, "hard_swish"),
    (3, 48, 5, 1, True, "hard_swish"),
    (3, 48, 5, 1, True, "hard_swish"),
    (6, 96, 5, 2, True, "hard_swish"),
    (6, 96, 5, 1, True, "hard_swish"),
    (6, 96, 5, 1, True, "hard_swish"),
]


def mobilenet_v3_small(size: int = 224) -> list[dict]:
    bn = {"type": "batch_norm", "epsilon": 0.001, "momentum": 0.001}
    layers: list[dict] = [
        {"name": "rescaling", "type": "rescale", "scale": 1 / 127.5, "offset": -1.0},
        {
            "name": "conv",
            "type": "conv2d",
            "filters": 16,
            "kernel_size": 3,
            "stride": 2,
            "padding": "same",
            "bias": False,
        },
        {"name": "conv_bn", **bn},
        {"name": "conv_activation", "type": "hard_swish"},
    ]
    size = -(-size // 2)
    channels = 16
    previous = "conv_activation"
    for block_id, (expansion, filters, kernel, stride, squeeze, activation) in enumerate(
        MOBILENET_V3_SMALL_BLOCKS
    ):
        prefix = f"expanded_conv_{block_id}_" if block_id else "expanded_conv_"
        block_input = previous
        expanded = make_divisible(channels * expansion)
        if block_id:
            layers += [
                {
                    "name": f"{prefix}expand",
                    "type": "conv2d",
                    "filters": expanded,
                    "kernel_size": 1,
                    "bias": False,
                },
                {"name": f"{prefix}expand_bn", **bn},
                {"name": f"{prefix}expand_activation", "type": activation},
            ]
        if stride == 2:
            layers.append(
                {
                    "name": f"{prefix}depthwise_pad",
                    "type": "zero_pad2d",
                    "padding": [correct_pad(size, kernel)] * 2,
                }
            )
            layers.append(
                {
                    "name": f"{prefix}depthwise",
                    "type": "depthwise_conv2d",
                    "kernel_size": kernel,
                    "stride": 2,
                    "bias": False,
                }
            )
            size = (size + sum(correct_pad(size, kernel)) - kernel) // 2 + 1
        else:
            layers.append(
                {
                    "name": f"{prefix}depthwise",
                    "type": "depthwise_conv2d",
                    "kernel_size": kernel,
                    "padding": "same",
                    "bias": False,
                }
            )
        layers += [
            {"name": f"{prefix}depthwise_bn", **bn},
            {"name": f"{prefix}depthwise_activation", "type": activation},
        ]
        previous = f"{prefix}depthwise_activation"
        if squeeze:
            layers += [
                {
                    "name": f"{prefix}squeeze_excite_avg_pool",
                    "type": "global_avg_pool",
                    "keepdims": True,
                },
                {
                    "name": f"{prefix}squeeze_excite_conv",
                    "type": "conv2d",
                    "filters": make_divisible(expanded * 0.25),
                    "kernel_size": 1,
                    "activation": "relu",
                },
                {
                    "name": f"{prefix}squeeze_excite_conv_1",
                    "type": "conv2d",
                    "filters": expanded,
                    "kernel_size": 1,
                    "activation": "hard_sigmoid",
                },
                {
                    "name": f"{prefix}squeeze_excite_mul",
                    "type": "multiply",
                    "inputs": [previous, f"{prefix}squeeze_excite_conv_1"],
                },
            ]
        layers += [
            {
                "name": f"{prefix}project",
                "type": "conv2d",
                "filters": filters,
                "kernel_size": 1,
                "bias": False,
            },
            {"name": f"{prefix}project_bn", **bn},
        ]
        previous = f"{prefix}project_bn"
        if stride == 1 and channels == filters:
            layers.append(
                {"name": f"{prefix}add", "type": "add", "inputs": [block_input, previous]}
            )
            previous = f"{prefix}add"
        channels = filters
    layers += [
        {
            "name": "conv_1",
            "type": "conv2d",
            "filters": make_divisible(channels * 6),
            "kernel_size": 1,
            "bias": False,
        },
        {"name": "conv_1_bn", **bn},
        {"name": "conv_1_activation", "type": "hard_swish"},
        {"name": "global_pool", "type": "global_avg_pool", "keepdims": True},
        {
            "name": "conv_2",
            "type": "conv2d",
            "filters": 1024,
            "kernel_size": 1,
            "activation": "hard_swish",
        },
        {"name": "dropout", "type": "dropout", "rate": 0.2},
        {"name": "logits", "type": "conv2d", "filters": 1000, "kernel_size": 1},
        {"name": "flatten", "type": "flatten"},
        {"name": "predictions", "type": "softmax"},
    ]
    return layers


# ----------------------------------------------------------------------------------------------
# ConvNeXt-Tiny (keras.applications.convnext)
# ----------------------------------------------------------------------------------------------

IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_VARIANCE = [(0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2]


def convnext_tiny() -> list[dict]:
    depths, dims = [3, 3, 9, 3], [96, 192, 384, 768]
    norm = {"type": "layer_norm", "epsilon": 1e-6}
    p = ""  # keras.applications prefixes every name with "convnext_tiny_"
    layers: list[dict] = [
        {
            "name": f"{p}prestem_normalization",
            "type": "normalize",
            "mean": IMAGENET_MEAN,
            "variance": IMAGENET_VARIANCE,
        },
        {
            "name": f"{p}stem_conv",
            "type": "conv2d",
            "filters": dims[0],
            "kernel_size": 4,
            "stride": 4,
        },
        {"name": f"{p}stem_layernorm", **norm},
    ]
    previous = f"{p}stem_layernorm"
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        if stage:
            layers += [
                {"name": f"{p}downsampling_layernorm_{stage - 1}", **norm},
                {
                    "name": f"{p}downsampling_conv_{stage - 1}",
                    "type": "conv2d",
                    "filters": dim,
                    "kernel_size": 2,
                    "stride": 2,
                },
            ]
            previous = f"{p}downsampling_conv_{stage - 1}"
        for repeat in range(depth):
            prefix = f"{p}stage_{stage}_block_{repeat}_"
            layers += [
                {
                    "name": f"{prefix}depthwise_conv",
                    "type": "depthwise_conv2d",
                    "kernel_size": 7,
                    "padding": "same",
                    "inputs": [previous],
                },
                {"name": f"{prefix}layernorm", **norm},
                {
                    "name": f"{prefix}pointwise_conv_1",
                    "type": "conv2d",
                    "filters": 4 * dim,
                    "kernel_size": 1,
                },
                {"name": f"{prefix}gelu", "type": "gelu"},
                {
                    "name": f"{prefix}pointwise_conv_2",
                    "type": "conv2d",
                    "filters": dim,
                    "kernel_size": 1,
                },
                {"name": f"{prefix}layer_scale", "type": "layer_scale", "init_value": 1e-6},
                {"name": f"{prefix}identity", "type": "identity"},
                {"name": f"{prefix}add", "type": "add", "inputs": [previous, f"{prefix}identity"]},
            ]
            previous = f"{prefix}add"
    layers += [
        {"name": f"{p}head_gap", "type": "global_avg_pool"},
        {"name": f"{p}head_layernorm", **norm},
        {"name": f"{p}head_dense", "type": "dense", "units": 1000, "activation": "softmax"},
    ]
    return layers


# ----------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------


def shufflenet_v2_block() -> list[dict]:
    """torchvision ShuffleNetV2's stage 2 entry: one stride-2 unit (24 -> 116) and one stride-1 unit."""
    bn = {"type": "batch_norm"}
    return [
        # stride 2: both branches see the whole input
        {
            "name": "b1_dw",
            "type": "depthwise_conv2d",
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "bias": False,
        },
        {"name": "b1_dw_bn", **bn},
        {"name": "b1_pw", "type": "conv2d", "filters": 58, "kernel_size": 1, "bias": False},
        {"name": "b1_pw_bn", **bn},
        {"name": "b1_relu", "type": "relu"},
        {
            "name": "b2_pw1",
            "type": "conv2d",
            "filters": 58,
            "kernel_size": 1,
            "bias": False,
            "inputs": ["input"],
        },
        {"name": "b2_pw1_bn", **bn},
        {"name": "b2_relu1", "type": "relu"},
        {
            "name": "b2_dw",
            "type": "depthwise_conv2d",
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "bias": False,
        },
        {"name": "b2_dw_bn", **bn},
        {"name": "b2_pw2", "type": "conv2d", "filters": 58, "kernel_size": 1, "bias": False},
        {"name": "b2_pw2_bn", **bn},
        {"name": "b2_relu2", "type": "relu"},
        {"name": "unit1_concat", "type": "concat", "inputs": ["b1_relu", "b2_relu2"]},
        {"name": "unit1_shuffle", "type": "channel_shuffle", "groups": 2},
        # stride 1: x.chunk(2, dim=1); the first half passes through
        {
            "name": "unit2_keep",
            "type": "channel_slice",
            "start": 0,
            "stop": 58,
            "inputs": ["unit1_shuffle"],
        },
        {
            "name": "unit2_branch",
            "type": "channel_slice",
            "start": 58,
            "stop": 116,
            "inputs": ["unit1_shuffle"],
        },
        {"name": "u2_pw1", "type": "conv2d", "filters": 58, "kernel_size": 1, "bias": False},
        {"name": "u2_pw1_bn", **bn},
        {"name": "u2_relu1", "type": "relu"},
        {
            "name": "u2_dw",
            "type": "depthwise_conv2d",
            "kernel_size": 3,
            "padding": 1,
            "bias": False,
        },
        {"name": "u2_dw_bn", **bn},
        {"name": "u2_pw2", "type": "conv2d", "filters": 58, "kernel_size": 1, "bias": False},
        {"name": "u2_pw2_bn", **bn},
        {"name": "u2_relu2", "type": "relu"},
        {"name": "unit2_concat", "type": "concat", "inputs": ["unit2_keep", "u2_relu2"]},
        {"name": "unit2_shuffle", "type": "channel_shuffle", "groups": 2},
    ]


def inception_resnet_block() -> list[dict]:
    """keras.applications InceptionResNetV2's block35 (scale 0.17) on a 35x35x320 map."""

    def conv_bn(name: str, filters: int, kernel: int, source: str | None = None) -> list[dict]:
        conv = {
            "name": f"{name}_conv",
            "type": "conv2d",
            "filters": filters,
            "kernel_size": kernel,
            "padding": "same",
            "bias": False,
        }
        if source:
            conv["inputs"] = [source]
        return [
            conv,
            {
                "name": f"{name}_bn",
                "type": "batch_norm",
                "epsilon": 0.001,
                "momentum": 0.01,
                "scale": False,
            },
            {"name": f"{name}_ac", "type": "relu"},
        ]

    return [
        *conv_bn("branch0", 32, 1, "input"),
        *conv_bn("branch1_a", 32, 1, "input"),
        *conv_bn("branch1_b", 32, 3),
        *conv_bn("branch2_a", 32, 1, "input"),
        *conv_bn("branch2_b", 48, 3),
        *conv_bn("branch2_c", 64, 3),
        {
            "name": "block35_mixed",
            "type": "concat",
            "inputs": ["branch0_ac", "branch1_b_ac", "branch2_c_ac"],
        },
        {"name": "block35_conv", "type": "conv2d", "filters": 320, "kernel_size": 1},
        {"name": "block35_scaled", "type": "scale", "factor": 0.17},
        {"name": "block35_sum", "type": "add", "inputs": ["input", "block35_scaled"]},
        {"name": "block35_ac", "type": "relu"},
    ]


def unet() -> list[dict]:
    """A two-level U-Net: reflect-padded convolutions, group norm, bilinear upsampling, skip concat."""

    def conv_block(name: str, filters: int, source: str | None = None) -> list[dict]:
        pad = {"name": f"{name}_pad", "type": "pad2d", "padding": 1, "mode": "reflect"}
        if source:
            pad["inputs"] = [source]
        return [
            pad,
            {"name": f"{name}_conv", "type": "conv2d", "filters": filters, "kernel_size": 3},
            {"name": f"{name}_norm", "type": "group_norm", "groups": 4},
            {"name": f"{name}_act", "type": "silu"},
        ]

    return [
        *conv_block("enc1", 16),
        {"name": "down1", "type": "max_pool2d", "pool_size": 2},
        *conv_block("enc2", 32),
        {"name": "down2", "type": "max_pool2d", "pool_size": 2},
        *conv_block("bottleneck", 64),
        {"name": "bottleneck_inorm", "type": "instance_norm", "affine": True},
        {"name": "up2", "type": "resize", "scale": 2, "mode": "bilinear"},
        {"name": "skip2", "type": "concat", "inputs": ["up2", "enc2_act"]},
        *conv_block("dec2", 32),
        {
            "name": "up1",
            "type": "resize",
            "size": [40, 48],
            "mode": "bilinear",
            "align_corners": True,
        },
        {"name": "skip1", "type": "concat", "inputs": ["up1", "enc1_act"]},
        *conv_block("dec1", 16),
        {"name": "edge_pad", "type": "pad2d", "padding": [[0, 1], [2, 0]], "mode": "replicate"},
        {"name": "head", "type": "conv2d", "filters": 2, "kernel_size": [2, 3]},
    ]


def main() -> None:
    write_spec(
        "efficientnet_b0.yaml",
        "EfficientNet-B0 as keras.applications.EfficientNetB0(weights=None): Rescaling(1/255),\n"
        "Normalization (mean, variance, count: 7 non-trainable weights), MBConv blocks with squeeze-excite\n"
        "(global pool keepdims + multiply) and stochastic depth. 5,330,571 parameters.",
        "efficientnet_b0",
        3,
        [224, 224],
        efficientnet_b0(),
    )
    write_spec(
        "mobilenet_v3_small.yaml",
        "MobileNetV3-Small as keras.applications.MobileNetV3Small(weights=None): Rescaling(1/127.5, -1),\n"
        "hard_swish, squeeze-excite gates with hard_sigmoid, a 1x1-conv head. 2,554,968 parameters.",
        "mobilenet_v3_small",
        3,
        [224, 224],
        mobilenet_v3_small(),
    )
    write_spec(
        "convnext_tiny.yaml",
        "ConvNeXt-Tiny as keras.applications.ConvNeXtTiny(weights=None): Normalization with given\n"
        "mean/variance (constants, no weights), layer norm over channels (epsilon 1e-6), layer scale.\n"
        "The Keras blocks' Dense layers on the feature map are 1x1 convolutions here; drop_path_rate 0 makes\n"
        "the stochastic-depth slot an identity. 28,589,128 parameters. Input 64x64 keeps verify fast\n"
        "(the count does not depend on the input size).",
        "convnext_tiny",
        3,
        [64, 64],
        convnext_tiny(),
    )
    write_spec(
        "shufflenet_v2_block.yaml",
        "ShuffleNetV2 (torchvision) stage-2 entry: a stride-2 unit and a stride-1 unit with\n"
        "channel_slice (x.chunk(2, dim=1)) and channel_shuffle (groups 2).",
        "shufflenet_v2_block",
        24,
        [28, 28],
        shufflenet_v2_block(),
    )
    write_spec(
        "inception_resnet_block.yaml",
        "InceptionResNetV2's block35 (keras.applications): three branches of conv + BatchNorm\n"
        "without gamma (scale: false) + ReLU, a 1x1 projection, the residual scale 0.17, add, ReLU.",
        "inception_resnet_block",
        320,
        [35, 35],
        inception_resnet_block(),
    )
    write_spec(
        "unet_group_norm.yaml",
        "A small U-Net: reflect padding, group norm, instance norm, bilinear resize (half-pixel and\n"
        "align_corners), skip concatenations, replicate padding before the head.",
        "unet_group_norm",
        3,
        [40, 48],
        unet(),
    )


if __name__ == "__main__":
    main()
