"""Small specs that cover every layer type and the places where PyTorch and Keras disagree.

``CASES`` is a list of ``(case_id, spec_dict)``.  It imports no framework, so any test
module (cross-framework equivalence, ONNX verification, CLI smoke tests) can import it.
``INPUT_OFFSETS`` / ``INPUT_SCALES`` shift or scale a case's random input (e.g. all
negative values for max pooling with padding, large values for relu6's clip).
"""

from __future__ import annotations


def spec(name: str, channels: int, size: list[int], layers: list[dict]) -> tuple[str, dict]:
    """One case: its id and a complete spec dict (the id is also the model name)."""
    return name, {"cnnspec": 1, "name": name, "input": {"channels": channels, "size": list(size)}, "layers": layers}


CASES: list[tuple[str, dict]] = [
    # --- convolutions: 'same' with stride 2 on even and odd sizes (asymmetric SAME_UPPER padding) ---
    spec("conv_same_s2_even", 3, [8, 8], [
        {"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same", "activation": "relu"},
        {"type": "conv2d", "name": "conv_k4", "filters": 3, "kernel_size": 4, "stride": 2, "padding": "same"},
    ]),
    spec("conv_same_s2_odd", 3, [9, 7], [
        {"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same", "activation": "tanh"},
        {"type": "conv2d", "name": "conv_k4", "filters": 3, "kernel_size": [4, 2], "stride": [2, 3], "padding": "same"},
    ]),
    spec("conv_same_s1_even_kernel", 2, [7, 6], [
        {"type": "conv2d", "name": "conv", "filters": 3, "kernel_size": 4, "padding": "same", "activation": "sigmoid"},
        {"type": "conv2d", "name": "conv_s3", "filters": 2, "kernel_size": 2, "stride": 3, "padding": "same"},
    ]),
    spec("conv_explicit_asym", 3, [7, 8], [
        {"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": [3, 2], "padding": [[1, 2], [0, 1]], "bias": False},
        {"type": "conv2d", "name": "conv_sym", "filters": 2, "kernel_size": 3, "stride": 2, "padding": [2, 1], "activation": "silu"},
    ]),
    spec("conv_grouped", 4, [6, 6], [
        {"type": "conv2d", "name": "grouped", "filters": 6, "kernel_size": 3, "groups": 2, "padding": 1},
        {"type": "conv2d", "name": "grouped3", "filters": 3, "kernel_size": 1, "groups": 3, "activation": "hard_swish"},
    ]),
    spec("conv_dilation", 2, [11, 10], [
        {"type": "conv2d", "name": "dilated_same", "filters": 3, "kernel_size": 3, "dilation": 2, "padding": "same"},
        {"type": "conv2d", "name": "dilated_valid", "filters": 3, "kernel_size": [2, 3], "dilation": [3, 2], "activation": "hard_sigmoid"},
    ]),
    spec("depthwise_multiplier", 3, [8, 7], [
        {"type": "depthwise_conv2d", "name": "dw", "kernel_size": 3, "depth_multiplier": 2, "stride": 2, "padding": "same"},
        {"type": "depthwise_conv2d", "name": "dw_valid", "kernel_size": [2, 3], "bias": False, "activation": "relu6"},
    ]),
    spec("separable", 3, [9, 8], [
        {"type": "separable_conv2d", "name": "sep", "filters": 5, "kernel_size": 3, "depth_multiplier": 2, "padding": "same", "stride": 2},
        {"type": "separable_conv2d", "name": "sep_nobias", "filters": 4, "kernel_size": 2, "bias": False, "activation": "gelu"},
    ]),
    # --- pooling ---
    spec("maxpool_pad_negative", 2, [7, 8], [
        {"type": "max_pool2d", "name": "pool", "pool_size": 3, "stride": 2, "padding": 1},
        {"type": "max_pool2d", "name": "pool_same", "pool_size": 2, "stride": 2, "padding": "same"},
    ]),
    spec("maxpool_same_even_odd", 2, [8, 9], [
        {"type": "max_pool2d", "name": "pool", "pool_size": 3, "stride": 2, "padding": "same"},
        {"type": "max_pool2d", "name": "pool_asym", "pool_size": [2, 3], "stride": 1, "padding": [[0, 1], [1, 2]]},
    ]),
    spec("maxpool_ceil", 2, [8, 7], [
        {"type": "max_pool2d", "name": "pool", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
        {"type": "max_pool2d", "name": "pool_nopad", "pool_size": 2, "ceil_mode": True},
    ]),
    spec("avgpool_same", 2, [8, 9], [
        {"type": "avg_pool2d", "name": "pool", "pool_size": 3, "stride": 2, "padding": "same"},
        {"type": "avg_pool2d", "name": "pool_s1", "pool_size": 2, "stride": 1, "padding": "same"},
    ]),
    spec("avgpool_count_pad_true", 2, [7, 8], [
        {"type": "avg_pool2d", "name": "pool", "pool_size": 3, "stride": 2, "padding": 1, "count_include_pad": True},
        {"type": "avg_pool2d", "name": "pool_asym", "pool_size": 3, "stride": 1, "padding": [[0, 2], [1, 0]]},
    ]),
    spec("avgpool_count_pad_false", 2, [7, 8], [
        {"type": "avg_pool2d", "name": "pool", "pool_size": 3, "stride": 2, "padding": 1, "count_include_pad": False},
        {"type": "avg_pool2d", "name": "pool_asym", "pool_size": 2, "stride": 1, "padding": [[1, 0], [0, 1]], "count_include_pad": False},
    ]),
    spec("avgpool_ceil", 2, [8, 7], [
        {"type": "avg_pool2d", "name": "pool", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
        {"type": "avg_pool2d", "name": "pool_nocount", "pool_size": 2, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False},
        {"type": "avg_pool2d", "name": "pool_nopad", "pool_size": 2, "ceil_mode": True},
    ]),
    # --- transposed convolutions ---
    spec("convT_same", 3, [4, 5], [
        {"type": "conv_transpose2d", "name": "t_k3_s2", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"type": "conv_transpose2d", "name": "t_k4_s2", "filters": 3, "kernel_size": 4, "stride": 2, "padding": "same"},
        {"type": "conv_transpose2d", "name": "t_k2_s3", "filters": 2, "kernel_size": 2, "stride": 3, "padding": "same", "activation": "relu"},
    ]),
    spec("convT_same_s1", 3, [5, 4], [
        {"type": "conv_transpose2d", "name": "t_k2_s1", "filters": 3, "kernel_size": 2, "padding": "same"},
        {"type": "conv_transpose2d", "name": "t_k3_s1", "filters": 2, "kernel_size": [3, 4], "padding": "same", "bias": False},
    ]),
    spec("convT_valid", 3, [4, 4], [
        {"type": "conv_transpose2d", "name": "t_k3_s2", "filters": 4, "kernel_size": 3, "stride": 2},
        {"type": "conv_transpose2d", "name": "t_k2_s3", "filters": 3, "kernel_size": 2, "stride": 3},
        {"type": "conv_transpose2d", "name": "t_k3_s2_op", "filters": 2, "kernel_size": 3, "stride": 2, "output_padding": 1},
    ]),
    spec("convT_numeric", 3, [4, 5], [
        {"type": "conv_transpose2d", "name": "t_p1_op1", "filters": 4, "kernel_size": 3, "stride": 2, "padding": 1, "output_padding": 1},
        {"type": "conv_transpose2d", "name": "t_k4_p1", "filters": 3, "kernel_size": 4, "stride": 2, "padding": 1},
        {"type": "conv_transpose2d", "name": "t_k3_s3_p2_op2", "filters": 2, "kernel_size": 3, "stride": 3, "padding": [2, 1], "output_padding": [2, 1]},
    ]),
    spec("convT_dilation", 2, [4, 4], [
        {"type": "conv_transpose2d", "name": "t_dil", "filters": 3, "kernel_size": 3, "dilation": 2},
        {"type": "conv_transpose2d", "name": "t_dil_s2", "filters": 2, "kernel_size": 2, "stride": 2, "dilation": 2, "padding": 1},
    ]),
    # --- normalisation, flat features and the flatten permutation ---
    spec("batchnorm_eps", 3, [6, 5], [
        {"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": 3, "bias": False},
        {"type": "batch_norm", "name": "bn", "epsilon": 0.001},
        {"type": "batch_norm", "name": "bn_default"},
        {"type": "relu", "name": "act"},
    ]),
    spec("flatten_dense", 3, [5, 4], [
        {"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": 2},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "fc", "units": 6, "activation": "relu"},
        {"type": "dense", "name": "head", "units": 5, "activation": "softmax"},
    ]),
    spec("flatten_bn_dense", 3, [4, 5], [
        {"type": "conv2d", "name": "conv", "filters": 3, "kernel_size": 2},
        {"type": "flatten", "name": "flat"},
        {"type": "batch_norm", "name": "bn_flat"},
        {"type": "prelu", "name": "prelu_flat"},
        {"type": "dense", "name": "fc", "units": 4, "bias": False},
    ]),
    spec("concat_flat_dense", 3, [6, 6], [
        {"type": "conv2d", "name": "conv_a", "filters": 2, "kernel_size": 3},
        {"type": "flatten", "name": "flat_a"},
        {"type": "conv2d", "name": "conv_b", "inputs": ["input"], "filters": 3, "kernel_size": 2, "stride": 2},
        {"type": "flatten", "name": "flat_b"},
        {"type": "global_avg_pool", "name": "gap", "inputs": ["conv_b"]},
        {"type": "concat", "name": "joined", "inputs": ["flat_a", "flat_b", "gap"]},
        {"type": "dense", "name": "fc", "units": 5},
    ]),
    # --- activations ---
    spec("activations", 3, [5, 5], [
        {"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"type": "relu", "name": "a_relu", "inputs": ["conv"]},
        {"type": "relu6", "name": "a_relu6", "inputs": ["conv"]},
        {"type": "sigmoid", "name": "a_sigmoid", "inputs": ["conv"]},
        {"type": "tanh", "name": "a_tanh", "inputs": ["conv"]},
        {"type": "softmax", "name": "a_softmax", "inputs": ["conv"]},
        {"type": "silu", "name": "a_silu", "inputs": ["conv"]},
        {"type": "hard_swish", "name": "a_hard_swish", "inputs": ["conv"]},
        {"type": "hard_sigmoid", "name": "a_hard_sigmoid", "inputs": ["conv"]},
        {"type": "leaky_relu", "name": "a_leaky", "inputs": ["conv"], "negative_slope": 0.2},
        {"type": "leaky_relu", "name": "a_leaky_default", "inputs": ["conv"]},
        {"type": "elu", "name": "a_elu", "inputs": ["conv"], "alpha": 0.7},
        {"type": "gelu", "name": "a_gelu", "inputs": ["conv"]},
        {"type": "gelu", "name": "a_gelu_tanh", "inputs": ["conv"], "approximate": "tanh"},
        {"type": "prelu", "name": "a_prelu", "inputs": ["conv"]},
        {"type": "prelu", "name": "a_prelu_shared", "inputs": ["conv"], "per_channel": False},
        {"type": "add", "name": "total", "inputs": [
            "a_relu", "a_relu6", "a_sigmoid", "a_tanh", "a_softmax", "a_silu", "a_hard_swish", "a_hard_sigmoid",
            "a_leaky", "a_leaky_default", "a_elu", "a_gelu", "a_gelu_tanh", "a_prelu", "a_prelu_shared"]},
    ]),
    spec("activations_large", 2, [4, 4], [
        {"type": "relu6", "name": "a_relu6"},
        {"type": "hard_swish", "name": "a_hard_swish", "inputs": ["input"]},
        {"type": "hard_sigmoid", "name": "a_hard_sigmoid", "inputs": ["input"]},
        {"type": "softmax", "name": "a_softmax", "inputs": ["input"]},
        {"type": "concat", "name": "joined", "inputs": ["a_relu6", "a_hard_swish", "a_hard_sigmoid", "a_softmax"]},
    ]),
    spec("dense_inline_activations", 2, [3, 3], [
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "d_gelu", "units": 6, "activation": "gelu"},
        {"type": "dense", "name": "d_hswish", "units": 6, "activation": "hard_swish"},
        {"type": "dropout", "name": "drop", "rate": 0.5},
        {"type": "dense", "name": "d_hsig", "units": 5, "activation": "hard_sigmoid"},
        {"type": "elu", "name": "flat_elu"},
        {"type": "prelu", "name": "flat_prelu_shared", "per_channel": False},
        {"type": "dense", "name": "d_silu", "units": 4, "activation": "silu", "bias": False},
        {"type": "softmax", "name": "probs"},
    ]),
    # --- resampling and padding ---
    spec("upsample", 2, [3, 4], [
        {"type": "upsample", "name": "up_nearest2", "scale_factor": 2},
        {"type": "upsample", "name": "up_nearest3", "inputs": ["input"], "scale_factor": [3, 2]},
        {"type": "upsample", "name": "up_bilinear2", "inputs": ["input"], "scale_factor": 2, "mode": "bilinear"},
        {"type": "upsample", "name": "up_bilinear3", "inputs": ["input"], "scale_factor": 3, "mode": "bilinear"},
        {"type": "upsample", "name": "up_bilinear23", "inputs": ["input"], "scale_factor": [2, 3], "mode": "bilinear"},
        {"type": "global_max_pool", "name": "g2", "inputs": ["up_nearest2"]},
        {"type": "global_max_pool", "name": "g3", "inputs": ["up_nearest3"]},
        {"type": "global_avg_pool", "name": "gb2", "inputs": ["up_bilinear2"]},
        {"type": "global_avg_pool", "name": "gb3", "inputs": ["up_bilinear3"]},
        {"type": "global_avg_pool", "name": "gb23", "inputs": ["up_bilinear23"]},
        {"type": "concat", "name": "joined", "inputs": ["g2", "g3", "gb2", "gb3", "gb23"]},
    ]),
    spec("zero_pad_asym", 2, [4, 5], [
        {"type": "zero_pad2d", "name": "pad", "padding": [[1, 2], [0, 3]]},
        {"type": "conv2d", "name": "conv", "filters": 3, "kernel_size": 3},
        {"type": "zero_pad2d", "name": "pad_sym", "padding": 1},
        {"type": "zero_pad2d", "name": "pad_per_dim", "padding": [2, 0]},
    ]),
    # --- DAGs ---
    spec("residual_add", 3, [6, 6], [
        {"type": "conv2d", "name": "stem", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"type": "batch_norm", "name": "stem_bn"},
        {"type": "relu", "name": "stem_relu"},
        {"type": "conv2d", "name": "branch", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"type": "spatial_dropout", "name": "branch_drop", "rate": 0.3},
        {"type": "add", "name": "residual", "inputs": ["stem_relu", "branch_drop"]},
        {"type": "max_pool2d", "name": "pool", "pool_size": 2},
        {"type": "global_avg_pool", "name": "gap"},
        {"type": "dense", "name": "head", "units": 3},
    ]),
    spec("inception_concat", 3, [7, 7], [
        {"type": "conv2d", "name": "b1", "filters": 2, "kernel_size": 1},
        {"type": "conv2d", "name": "b3", "inputs": ["input"], "filters": 3, "kernel_size": 3, "padding": "same"},
        {"type": "max_pool2d", "name": "bp", "inputs": ["input"], "pool_size": 3, "stride": 1, "padding": "same"},
        {"type": "concat", "name": "mixed", "inputs": ["b1", "b3", "bp"]},
        {"type": "conv2d", "name": "reduce", "filters": 4, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"type": "global_avg_pool", "name": "gap_keep", "keepdims": True},
        {"type": "conv2d", "name": "squeeze", "filters": 4, "kernel_size": 1, "activation": "sigmoid"},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "head", "units": 3},
    ]),
    # --- 1-D and 3-D models ---
    spec("model_1d", 2, [17], [
        {"type": "conv1d", "name": "conv", "filters": 4, "kernel_size": 4, "stride": 2, "padding": "same"},
        {"type": "batch_norm", "name": "bn"},
        {"type": "prelu", "name": "act"},
        {"type": "max_pool1d", "name": "maxp", "pool_size": 3, "stride": 2, "padding": 1, "ceil_mode": True},
        {"type": "avg_pool1d", "name": "avgp", "pool_size": 2, "stride": 1, "padding": "same"},
        {"type": "zero_pad1d", "name": "pad", "padding": [[1, 2]]},
        {"type": "conv_transpose1d", "name": "up", "filters": 3, "kernel_size": 3, "stride": 2, "padding": "same"},
        {"type": "upsample", "name": "up2", "scale_factor": 2},
        {"type": "conv1d", "name": "grouped", "filters": 3, "kernel_size": 3, "groups": 3, "dilation": 2},
        {"type": "avg_pool1d", "name": "avgp_pad", "pool_size": 3, "padding": 1, "count_include_pad": False},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "head", "units": 3},
    ]),
    spec("model_3d", 2, [5, 6, 4], [
        {"type": "conv3d", "name": "conv", "filters": 3, "kernel_size": 3, "stride": [2, 1, 2], "padding": "same"},
        {"type": "zero_pad3d", "name": "pad", "padding": [[0, 1], [1, 0], [1, 1]]},
        {"type": "max_pool3d", "name": "maxp", "pool_size": 2, "stride": 1},
        {"type": "avg_pool3d", "name": "avgp", "pool_size": [1, 2, 2], "stride": 1, "padding": "same"},
        {"type": "conv_transpose3d", "name": "up", "filters": 2, "kernel_size": 2, "stride": 2},
        {"type": "upsample", "name": "up2", "scale_factor": [1, 2, 1]},
        {"type": "avg_pool3d", "name": "avgp_pad", "pool_size": 2, "stride": 2, "padding": 1},
        {"type": "global_max_pool", "name": "gmax", "keepdims": True},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "head", "units": 2},
    ]),
    spec("global_pools", 3, [5, 4], [
        {"type": "conv2d", "name": "conv", "filters": 4, "kernel_size": 2},
        {"type": "global_avg_pool", "name": "gap"},
        {"type": "global_max_pool", "name": "gmp", "inputs": ["conv"]},
        {"type": "global_avg_pool", "name": "gap_keep", "inputs": ["conv"], "keepdims": True},
        {"type": "global_max_pool", "name": "gmp_keep", "inputs": ["conv"], "keepdims": True},
        {"type": "add", "name": "keep_sum", "inputs": ["gap_keep", "gmp_keep"]},
        {"type": "flatten", "name": "keep_flat"},
        {"type": "concat", "name": "joined", "inputs": ["gap", "gmp", "keep_flat"]},
        {"type": "batch_norm", "name": "bn"},
        {"type": "dense", "name": "head", "units": 3},
    ]),
]



def _registry_cases() -> list[tuple[str, dict]]:
    """Every example of a layer type no hand-written case above uses: a new type is compared by registering."""
    from cnnspec.layers import REGISTRY

    written = {layer["type"] for _, case in CASES for layer in case["layers"]}
    cases = []
    for definition in REGISTRY.definitions():
        for number, example in enumerate(definition.examples):
            if example.layers[-1]["type"] not in written:
                cases.append((f"example_{example.layers[-1]['type']}_{number}", example.spec()))
    return cases


CASES += _registry_cases()

# Cases whose random input is shifted (all values negative: padded cells must never win a max)
# or scaled (large values reach relu6's and hard_sigmoid's clips).
INPUT_OFFSETS: dict[str, float] = {"maxpool_pad_negative": -4.0, "maxpool_same_even_odd": -2.0, "maxpool_ceil": -4.0}
INPUT_SCALES: dict[str, float] = {"activations_large": 8.0}

CASE_IDS = [case_id for case_id, _ in CASES]
CASES_BY_ID = dict(CASES)


def covered_layer_types() -> set[str]:
    """Every layer ``type`` used by some case."""
    return {layer["type"] for _, case in CASES for layer in case["layers"]}
