"""The cnnspec spec format: pydantic models, their defaults and their exact meaning.

These models are the public contract.  Their field names, defaults and the
semantics written in their descriptions are what ``schemas/cnnspec.schema.json``
publishes; ``cnnspec schema`` regenerates that file from here.

Only *local* facts are checked here (types, ranges, tuple lengths that do not
depend on the model's rank).  Everything that needs the rest of the model --
shapes, ranks, ``inputs`` references, groups dividing channels -- is checked by
:func:`cnnspec.engine.plan.resolve`, which reports the arithmetic.
"""

from __future__ import annotations

import builtins
import keyword
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

FORMAT_VERSION = 1

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"

# Public members of torch.nn.Module (torch 2.13), which a layer attribute would shadow.
_TORCH_MODULE_MEMBERS = (
    "T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda double "
    "dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half ipu "
    "load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters "
    "register_backward_hook register_buffer register_forward_hook register_forward_pre_hook "
    "register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook "
    "register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook "
    "register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to "
    "to_empty train type xpu zero_grad training"
    # Attributes every nn.Module instance sets in __init__ (vars(nn.Module())): assigning a layer to one breaks the module.
    " _backward_hooks _backward_pre_hooks _buffers _forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs"
    " _forward_pre_hooks _forward_pre_hooks_with_kwargs _is_full_backward_hook _load_state_dict_post_hooks"
    " _load_state_dict_pre_hooks _modules _non_persistent_buffers_set _parameters _state_dict_hooks _state_dict_pre_hooks"
).split()

# Names a spec layer may not take: they would shadow Python keywords, builtins, nn.Module members or
# identifiers the generated source relies on (module attributes, locals, imports).
RESERVED_NAMES = frozenset(
    {
        "input", "inputs", "output", "outputs", "x", "y", "self", "model", "training", "forward_layers",
        "torch", "nn", "F", "keras", "layers", "ops", "np", "numpy", "math",
        "build", "call", "weights", "trainable_weights", "non_trainable_weights", "variables", "summary",
        "fit", "predict", "evaluate", "save", "export", "get_layer", "name", "dtype", "get_config",
        "from_config", "built", "trainable", "losses", "metrics", "CNNSPEC_LAYER_NAMES",
        *_TORCH_MODULE_MEMBERS,
    }
)

_BUILTIN_NAMES = frozenset(dir(builtins))

INT32_MAX = 2**31 - 1  # frameworks index tensors with int32 in places; larger sizes are never meaningful

Positive = Annotated[int, Field(strict=True, ge=1, le=INT32_MAX)]
NonNegative = Annotated[int, Field(strict=True, ge=0, le=INT32_MAX)]
Flag = Annotated[bool, Field(strict=True)]  # 'no' (a string) is not false
PositiveOrTuple = Union[Positive, Annotated[list[Positive], Field(min_length=1, max_length=3)]]
PadPair = Annotated[list[NonNegative], Field(min_length=2, max_length=2)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]

PADDING_DESCRIPTION = (
    'How the input is padded. "valid": no padding. "same": TensorFlow/ONNX SAME_UPPER for every '
    "stride: out = ceil(in / stride); total = max((out - 1)*stride + dilation*(k - 1) + 1 - in, 0); "
    "before = total // 2, after = total - before (the odd pixel goes at the end). "
    "An int pads every spatial side by that many cells; a list of ints gives one symmetric amount per "
    "spatial dim; a list of [before, after] pairs (one per spatial dim) pads asymmetrically."
)
PaddingSpec = Union[
    Literal["valid", "same"],
    NonNegative,
    Annotated[list[NonNegative], Field(min_length=1, max_length=3)],
    Annotated[list[PadPair], Field(min_length=1, max_length=3)],
]

# Activations that need no parameter: allowed inline as ``activation:`` on conv/dense.
InlineActivation = Literal[
    "relu", "relu6", "sigmoid", "tanh", "softmax", "silu", "gelu", "hard_swish", "hard_sigmoid", "linear"
]

ACTIVATION_DESCRIPTION = (
    "Parameter-free activation applied to the layer's output (null or 'linear': none). "
    "softmax acts on the channel axis. gelu is the exact (erf) form. "
    "hard_sigmoid(x) = clip(x/6 + 1/2, 0, 1) (PyTorch Hardsigmoid, Keras 3 hard_sigmoid); "
    "hard_swish(x) = x * hard_sigmoid(x)."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


class LayerBase(_Strict):
    """Fields every layer has."""

    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)] | None = Field(
        default=None,
        description=(
            "Layer name: a Python identifier, unique in the model, not a Python keyword or a name the "
            "generated code uses. Default: '<type>_<index>' (index in the layers list, from 0)."
        ),
    )
    inputs: list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]] | None = Field(
        default=None,
        min_length=1,
        description="Names of earlier layers (or 'input') this layer reads. Default: the previous layer.",
    )
    source: Annotated[str, Field(min_length=1, max_length=400)] | None = Field(
        default=None,
        description=(
            "Provenance, written by the importers: where this layer came from in the original model when its name "
            "alone does not say it (a torch module path such as 'layer1.0.conv1', a Keras layer name that was not "
            "a valid spec name, an ONNX node name, or the original layers an exact rewrite merged). "
            "Weight transfer from the original model reads the weights there. No effect on the network."
        ),
    )

    @field_validator("name")
    @classmethod
    def _name_not_reserved(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if keyword.iskeyword(value) or keyword.issoftkeyword(value):
            raise ValueError(f"'{value}' is a Python keyword and cannot name a layer")
        if value.startswith("__"):
            raise ValueError(f"'{value}' starts with '__'; dunder names are reserved")
        if value in RESERVED_NAMES or value in _BUILTIN_NAMES:
            raise ValueError(f"'{value}' is reserved (the generated code uses this name); pick another")
        return value


class Conv(LayerBase):
    """N-d convolution (cross-correlation: the kernel is not flipped)."""

    type: Literal["conv1d", "conv2d", "conv3d"]
    filters: Positive = Field(description="Number of kernels = output channels.")
    kernel_size: PositiveOrTuple = Field(description="Kernel extent: one int for every spatial dim, or one per dim.")
    stride: PositiveOrTuple = Field(default=1, description="Step between windows, per spatial dim.")
    padding: PaddingSpec = Field(default="valid", description=PADDING_DESCRIPTION)
    dilation: PositiveOrTuple = Field(default=1, description="Spacing between kernel taps; effective kernel = dilation*(k-1)+1.")
    groups: Positive = Field(default=1, description="Channel groups; input channels and filters must both be divisible by it.")
    bias: Flag = Field(default=True, description="Add a learned bias per output channel.")
    activation: InlineActivation | None = Field(default=None, description=ACTIVATION_DESCRIPTION)


class ConvTranspose(LayerBase):
    """N-d transposed convolution (the gradient of a convolution)."""

    type: Literal["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]
    filters: Positive = Field(description="Output channels.")
    kernel_size: PositiveOrTuple
    stride: PositiveOrTuple = 1
    padding: Union[Literal["valid", "same"], NonNegative, Annotated[list[NonNegative], Field(min_length=1, max_length=3)]] = Field(
        default="valid",
        description=(
            "'same': output = in*stride (Keras/TF; the crop's odd cell is taken at the end). "
            "'valid': output = (in-1)*stride + max(dk, stride), dk = dilation*(k-1)+1 (Keras/TF). "
            "An int p or one int per dim: PyTorch's formula, output = (in-1)*stride - 2p + dk + output_padding."
        ),
    )
    output_padding: Union[NonNegative, Annotated[list[NonNegative], Field(min_length=1, max_length=3)]] | None = Field(
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


class _DepthwiseFields(LayerBase):
    """Fields shared by depthwise and separable convolutions."""

    kernel_size: PositiveOrTuple
    depth_multiplier: Positive = Field(default=1, description="Kernels per input channel (output channels = C * depth_multiplier).")
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


class Pool(LayerBase):
    """Max or average pooling over windows of pool_size."""

    type: Literal["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d"]
    pool_size: PositiveOrTuple
    stride: PositiveOrTuple | None = Field(default=None, description="Default (null): equal to pool_size.")
    padding: PaddingSpec = Field(
        default="valid",
        description=PADDING_DESCRIPTION + " Padded cells never win a max and are never counted by 'same' average pooling.",
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


class GlobalPool(LayerBase):
    """Average or max over every spatial position of each channel."""

    type: Literal["global_avg_pool", "global_max_pool"]
    keepdims: Flag = Field(default=False, description="Keep the spatial dims as size 1 instead of returning flat features.")


class BatchNorm(LayerBase):
    """Batch normalisation over the channel axis (inference uses the moving statistics)."""

    type: Literal["batch_norm"]
    epsilon: Annotated[float, Field(gt=0.0)] = Field(default=1e-5, description="Added to the variance (PyTorch's default 1e-5; Keras' is 1e-3).")
    momentum: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        default=0.1,
        description=(
            "Weight of the new batch statistic in the moving average: moving = (1 - momentum)*moving + momentum*batch "
            "(PyTorch's convention; Keras' momentum is 1 - this value)."
        ),
    )


class Dropout(LayerBase):
    """Dropout; identity at inference."""

    type: Literal["dropout", "spatial_dropout"]
    rate: Rate = Field(description="Fraction of units (dropout) or whole channels (spatial_dropout) zeroed in training.")


class Flatten(LayerBase):
    """Lay the feature map out as a vector, in channels-first order (C, then spatial dims)."""

    type: Literal["flatten"]


class Dense(LayerBase):
    """Fully connected layer on flat features."""

    type: Literal["dense"]
    units: Positive
    bias: Flag = True
    activation: InlineActivation | None = Field(default=None, description=ACTIVATION_DESCRIPTION)


class SimpleActivation(LayerBase):
    """A parameter-free activation as a layer of its own (softmax acts on channels)."""

    type: Literal["relu", "relu6", "sigmoid", "tanh", "softmax", "silu", "hard_swish", "hard_sigmoid"]


class LeakyReLU(LayerBase):
    """max(x, 0) + negative_slope * min(x, 0)."""

    type: Literal["leaky_relu"]
    negative_slope: Annotated[float, Field(ge=0.0)] = Field(default=0.01, description="PyTorch's default 0.01 (Keras' is 0.3).")


class ELU(LayerBase):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    type: Literal["elu"]
    alpha: Annotated[float, Field(gt=0.0)] = 1.0


class GELU(LayerBase):
    """Gaussian error linear unit."""

    type: Literal["gelu"]
    approximate: Literal["none", "tanh"] = Field(default="none", description="'none': exact erf form; 'tanh': the tanh approximation.")


class PReLU(LayerBase):
    """Leaky ReLU with a learned slope (initial value 0.25)."""

    type: Literal["prelu"]
    per_channel: Flag = Field(default=True, description="One slope per channel (true) or one slope shared by all (false).")


class Upsample(LayerBase):
    """Upsampling by an integer factor."""

    type: Literal["upsample"]
    scale_factor: PositiveOrTuple = Field(description="Integer factor per spatial dim.")
    mode: Literal["nearest", "bilinear"] = Field(
        default="nearest",
        description="'bilinear' (2-D only): half-pixel centres, PyTorch align_corners=False, TF half_pixel_centers=True.",
    )


class ZeroPad(LayerBase):
    """Explicit zero padding of the spatial dims."""

    type: Literal["zero_pad1d", "zero_pad2d", "zero_pad3d"]
    padding: Union[
        NonNegative,
        Annotated[list[NonNegative], Field(min_length=1, max_length=3)],
        Annotated[list[PadPair], Field(min_length=1, max_length=3)],
    ] = Field(description="An int, one int per spatial dim, or one [before, after] pair per spatial dim.")


class Merge(LayerBase):
    """Element-wise sum (add) or channel concatenation (concat) of two or more earlier layers."""

    type: Literal["add", "concat"]
    inputs: list[Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]] = Field(
        min_length=2, description="Two or more earlier layer names (or 'input')."
    )


Layer = Annotated[
    Union[
        Conv, ConvTranspose, DepthwiseConv2d, SeparableConv2d, Pool, GlobalPool, BatchNorm, Dropout,
        Flatten, Dense, SimpleActivation, LeakyReLU, ELU, GELU, PReLU, Upsample, ZeroPad, Merge,
    ],
    Field(discriminator="type"),
]


def layer_types() -> list[str]:
    """Every layer ``type`` the spec accepts, in catalog order."""
    names: list[str] = []
    for model in Layer.__origin__.__args__:  # type: ignore[attr-defined]
        names.extend(model.model_fields["type"].annotation.__args__)
    return names


class InputSpec(_Strict):
    """The model's single input (batch dimension excluded)."""

    channels: Positive = Field(description="Input channels (C).")
    size: Annotated[list[Positive], Field(min_length=1, max_length=3)] = Field(
        description="Spatial size: [L] for 1-D, [H, W] for 2-D, [D, H, W] for 3-D models."
    )


class ModelSpec(_Strict):
    """A whole model: one input, a list of layers, the output is the last layer."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="cnnspec model",
        json_schema_extra={"$comment": "Generated by `cnnspec schema`; do not edit by hand."},
    )

    cnnspec: Literal[1] = Field(description="Format version of this file; this release reads version 1.")
    name: Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)] = Field(
        default="model", description="Model name (a Python identifier); names the generated class / function."
    )
    input: InputSpec
    layers: list[Layer] = Field(min_length=1, description="Layers in order; the last one is the model's output.")

    _source: Any = PrivateAttr(default=None)

    @field_validator("name")
    @classmethod
    def _model_name_plain(cls, value: str) -> str:
        # The torch emitter writes only plain identifiers: a keyword or dunder model name would pass here and fail there.
        if keyword.iskeyword(value) or value.startswith("__"):
            raise ValueError(f"'{value}' is a Python keyword or a dunder name and cannot name a model")
        return value

    @property
    def rank(self) -> int:
        """Number of spatial dims: 1, 2 or 3."""
        return len(self.input.size)
