"""The building blocks of the spec format: field types, descriptions, reserved names, ``LayerBase``.

Every layer type's pydantic model (in its definition module under :mod:`cnnspec.layers`)
is built from these; :mod:`cnnspec.spec.models` assembles the whole spec.

Only *local* facts are checked here (types, ranges, tuple lengths that do not
depend on the model's rank).  Everything that needs the rest of the model --
shapes, ranks, ``inputs`` references, groups dividing channels -- is checked by
:func:`cnnspec.engine.plan.resolve`, which reports the arithmetic.
"""

from __future__ import annotations

import builtins
import keyword
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
        "input",
        "inputs",
        "output",
        "outputs",
        "x",
        "y",
        "self",
        "model",
        "training",
        "forward_layers",
        "torch",
        "nn",
        "F",
        "keras",
        "layers",
        "ops",
        "np",
        "numpy",
        "math",
        "build",
        "call",
        "weights",
        "trainable_weights",
        "non_trainable_weights",
        "variables",
        "summary",
        "fit",
        "predict",
        "evaluate",
        "save",
        "export",
        "get_layer",
        "name",
        "dtype",
        "get_config",
        "from_config",
        "built",
        "trainable",
        "losses",
        "metrics",
        "CNNSPEC_LAYER_NAMES",
        "check_input_shape",  # the first call in a generated torch forward
        *_TORCH_MODULE_MEMBERS,
    }
)

_BUILTIN_NAMES = frozenset(dir(builtins))

INT32_MAX = (
    2**31 - 1
)  # frameworks index tensors with int32 in places; larger sizes are never meaningful

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
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "silu",
    "gelu",
    "hard_swish",
    "hard_sigmoid",
    "linear",
]

ACTIVATION_DESCRIPTION = (
    "Parameter-free activation applied to the layer's output (null or 'linear': none). "
    "softmax and log_softmax act on the channel axis. gelu is the exact (erf) form. "
    "hard_sigmoid(x) = clip(x/6 + 1/2, 0, 1) (PyTorch Hardsigmoid, Keras 3 hard_sigmoid); "
    "hard_swish(x) = x * hard_sigmoid(x)."
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, frozen=True)


class LayerBase(_Strict):
    """Fields every layer has."""

    # A layer type's validator is compiled when a spec first uses the type, not at import:
    # compiling all of them took a third of `cnnspec explain`'s time.
    model_config = ConfigDict(defer_build=True)

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
            "Provenance, written by the importers: where this layer came from in the original model "
            "when its name alone does not say it (a torch module path such as 'layer1.0.conv1', a Keras "
            "layer name that was not a valid spec name, an ONNX node name, or the original layers an "
            "exact rewrite merged). Weight transfer from the original model reads the weights there. "
            "No effect on the network."
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
            raise ValueError(
                f"'{value}' is reserved (the generated code uses this name); pick another"
            )
        return value
