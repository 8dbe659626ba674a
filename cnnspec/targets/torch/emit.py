"""Plan -> stand-alone PyTorch source (one ``nn.Module``, channels first).

The generated module imports only ``torch`` (``F`` and ``math`` only when used) and defines one ``nn.Module`` subclass named ``class_name(plan.name)``:

* ``__init__(self)`` creates one attribute per spec layer that maps onto a module, named
  exactly like the spec layer (``self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)``,
  framework defaults left out).  Modules that exist only to reproduce the plan's semantics
  are called ``<name>_<role>`` (``conv1_pad``); a separable convolution is
  ``<name>_depthwise`` + ``<name>_pointwise``.
* ``forward(self, x)`` is the straight-line computation a person would write (the running
  value is ``x``; a layer output read again later keeps its own name).
* ``forward_layers(self, x)`` is the same computation with every spec layer's output kept
  under its spec name and returned as a dict, in spec order.

Only the resolved plan is read (per-side padding, ``ceil_extra``, ``count_include_pad``,
transposed-conv crops); no padding is recomputed here.  The mapping:

* Convolutions keep symmetric padding inside the conv; asymmetric padding (``same`` with
  stride > 1 on even sizes, or explicit pairs) becomes a ``nn.ZeroPad*d`` helper in front
  of an unpadded conv.  ``padding="same"`` is never used (PyTorch refuses it with
  stride > 1).
* Transposed convolutions: ``padding`` + ``output_padding`` where PyTorch's symmetric crop
  fits the plan's crop, plus a slice for the rest (TF's odd cell cropped at the end).
* Max pools use PyTorch's own ``-inf`` padding when it is symmetric and at most half the
  window, else a ``nn.ConstantPad*d(-inf)`` helper (covering the ceil-mode overhang too).
* Average pools use ``nn.AvgPool*d`` wherever PyTorch's divisor rule is the plan's; else
  the ``CountedAvgPool`` helper (``targets/torch/helpers.py``) divides the zero-padded window mean by the fraction of
  counted cells (the same pool over a one-channel mask).
* Open input sizes (``size: [null, ...]``): where padding depends on the size ('same' with a
  stride on an open axis, ceil-mode overhang) it is worked out per input by ``SamePad`` /
  ``CeilModePad`` / ``CountedAvgPool(padding="same" or ceil_mode=True)``; slices count from the
  end.  ``forward`` starts with ``check_input_shape``: a fixed-size model refuses other sizes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cnnspec.engine.plan import LayerPlan, Plan
from cnnspec.errors import CnnspecError
from cnnspec.layers import REGISTRY
from cnnspec.targets import pysource as P
from cnnspec.targets.helper_text import definition_names, definition_text
from cnnspec.targets.naming import class_name
from cnnspec.targets.torch.code import LayerCode, identifier

INPUT_VARIABLE = "x"
_BODY = " " * 8  # statements inside the generated methods

_LAYOUTS = {0: "NF", 1: "NCL", 2: "NCHW", 3: "NCDHW"}

# Helper modules: real code in targets/torch/helpers.py, copied (never imported) into the modules that use them.
HELPERS_FILE = str(Path(__file__).with_name("helpers.py"))


def helper_texts() -> dict[str, str]:
    """Every helper a generated torch module can include: name -> its source text."""
    return {name: definition_text(HELPERS_FILE, name) for name in definition_names(HELPERS_FILE)}


def helper_source(names) -> str:
    """The source of the named helper classes, in name order, as the generated module includes them."""
    return "\n\n".join(definition_text(HELPERS_FILE, name) for name in sorted(names))


Emitter = Callable[[LayerPlan, "list[str]"], LayerCode]

#: One emitter per spec layer type, from the layer registry.
EMITTERS: dict[str, Emitter] = {
    layer_type: REGISTRY.definition(layer_type).torch for layer_type in REGISTRY.types()
}


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------


def _forward_variables(plan: Plan) -> dict[str, str]:
    """Variable of each layer output in ``forward``: the running ``x`` unless read again later.

    A layer's output lives in ``x`` when only the next layer reads it and the value ``x``
    held before is dead by then; otherwise it keeps its spec name.
    """
    readers: dict[str, list[int]] = {"input": []}
    for layer in plan.layers:
        readers[layer.name] = []
    for layer in plan.layers:
        for source in layer.inputs:
            readers[source].append(layer.index)
    variables = {"input": INPUT_VARIABLE}
    held_by_x = "input"
    for layer in plan.layers:
        only_next = all(reader == layer.index + 1 for reader in readers[layer.name])
        x_dead = all(reader <= layer.index for reader in readers[held_by_x])
        if only_next and x_dead:
            variables[layer.name] = INPUT_VARIABLE
            held_by_x = layer.name
        else:
            variables[layer.name] = identifier(layer.name)
    return variables


def _shape_text(shape) -> str:
    return "(N, " + ", ".join(str(int(d)) for d in shape) + ")"


def _output_text(layer: LayerPlan) -> str:
    """A layer's output shape; on open axes the size as a formula of the input size (``⌈H / 2⌉``)."""
    if len(layer.output_shape) == 1 or not layer.sizes:
        return _shape_text(layer.output_shape)
    sizes = [size.text() for size in layer.sizes]
    return f"(N, {int(layer.output_shape[0])}, " + ", ".join(sizes) + ")"


def _input_text(plan: Plan) -> str:
    return (
        "(N, "
        + ", ".join([str(plan.input_shape[0]), *(size.text() for size in plan.input_sizes)])
        + ")"
    )


def _open_note(plan: Plan) -> str:
    if not plan.is_open:
        return f"The input size is fixed: forward refuses any other ({_LAYOUTS[plan.rank]} {_input_text(plan)}).\n"
    axes = ", ".join(
        name for name, is_open in zip(_LAYOUTS[plan.rank][2:], plan.open_axes) if is_open
    )
    return f"Any {axes} is accepted; padding that depends on the size is worked out per input.\n"


def input_check(plan: Plan) -> str:
    """The shape ``check_input_shape`` expects: batch and open axes None, the rest the plan's numbers."""
    fixed = [
        None if is_open else int(n) for is_open, n in zip(plan.open_axes, plan.input_shape[1:])
    ]
    return repr((None, int(plan.input_shape[0]), *fixed))


def _check_names(plan: Plan, attributes: list[str], model_class: str, helpers: set[str]) -> None:
    seen: dict[str, str] = {}
    for attribute in attributes:
        if attribute in seen:
            raise CnnspecError(
                f"the generated torch model would have two modules named '{attribute}'; a helper module of one "
                "layer clashes with another layer's name: rename that layer"
            )
        seen[attribute] = attribute
    for attribute in attributes:
        if attribute in _module_member_names():
            raise CnnspecError(
                f"layer name '{attribute}' clashes with an attribute the generated nn.Module already has "
                f"(model.{attribute} would not be the layer); rename the layer"
            )
    if model_class in helpers:
        raise CnnspecError(
            f"model name '{plan.name}' gives the class name '{model_class}', which a helper class uses; rename the model"
        )


# Private members of torch.nn.Module (torch 2.13) that a layer named with a leading '_' would shadow; the
# public ones are reserved by the spec itself. Written out so that writing source imports no framework
# (tests compare both lists with the installed torch).
_NN_MODULE_PRIVATE_MEMBERS = frozenset(
    "_apply _call_impl _compiled_call_impl _get_backward_hooks _get_backward_pre_hooks _get_name "
    "_load_from_state_dict _maybe_warn_non_full_backward_hook _named_members _register_load_state_dict_pre_hook "
    "_register_state_dict_hook _replicate_for_data_parallel _save_to_state_dict _slow_forward _version "
    "_wrapped_call_impl".split()
)


def _module_member_names() -> frozenset[str]:
    """Names the generated class already defines (an attribute of that name would be shadowed by them)."""
    from cnnspec.spec.fields import _TORCH_MODULE_MEMBERS

    return (
        frozenset({"forward", "forward_layers"})
        | frozenset(_TORCH_MODULE_MEMBERS)
        | _NN_MODULE_PRIVATE_MEMBERS
    )


def emit_source(plan: Plan) -> str:
    """Generate the stand-alone PyTorch module for ``plan``.

    Args:
        plan: a resolved :class:`~cnnspec.engine.plan.Plan`.

    Returns:
        Python source that imports only ``torch`` (and ``math`` when needed) and defines
        ``CNNSPEC_LAYER_NAMES`` and the model class ``class_name(plan.name)``.

    Raises:
        CnnspecError: a layer type has no emitter, or generated names would clash.
    """
    model_class = identifier(class_name(identifier(plan.name)))
    forward_vars = _forward_variables(plan)
    layer_vars = {
        "input": INPUT_VARIABLE,
        **{layer.name: identifier(layer.name) for layer in plan.layers},
    }

    init_lines: list[str] = []
    forward_lines: list[str] = [f"        check_input_shape({INPUT_VARIABLE}, {input_check(plan)})"]
    layers_lines: list[str] = []
    attributes: list[str] = []
    helpers: set[str] = {"check_input_shape"}
    needs_math = False
    for layer in plan.layers:
        emitter = REGISTRY.definition(layer.type).torch
        code = emitter(layer, [forward_vars[name] for name in layer.inputs])
        code_named = emitter(layer, [layer_vars[name] for name in layer.inputs])
        helpers |= code.helpers
        needs_math |= code.needs_math
        if code.modules:
            init_lines.append(
                f"        # {layer.name}: {layer.type} -> {_output_text(layer)}{code.note}"
            )
            for attribute, constructor in code.modules:
                attributes.append(attribute)
                init_lines += P.statement(_BODY, f"self.{identifier(attribute)}", constructor)
        comment = f"{layer.name}: {_output_text(layer)}"
        forward_lines += P.statement(_BODY, forward_vars[layer.name], code.expression, comment)
        layers_lines += P.statement(_BODY, layer_vars[layer.name], code_named.expression)
    _check_names(plan, attributes, model_class, helpers)

    last = plan.layers[-1].name
    forward_lines.append(f"        return {forward_vars[last]}")
    layers_lines.append("        return {")
    layers_lines.extend(
        f"            {P.string(layer.name)}: {layer_vars[layer.name]}," for layer in plan.layers
    )
    layers_lines.append("        }")

    layout = _LAYOUTS[plan.rank]
    width = max(len(layer.name) for layer in plan.layers)
    shape_table = "\n".join(
        f"    {layer.name.ljust(width)}  {layer.type:<18} {_output_text(layer)}"
        for layer in plan.layers
    )
    names_literal = "[\n" + "".join(f"    {P.string(layer.name)},\n" for layer in plan.layers) + "]"
    code_text = "\n".join(init_lines + forward_lines + layers_lines)
    helper_code = "".join(definition_text(HELPERS_FILE, name) for name in helpers)
    uses_functional = "F." in code_text or _uses("F", helper_code)
    imports = ["import math", ""] if needs_math or _uses("math", helper_code) else []
    imports += (
        (["import numpy as np"] if _uses("np", helper_code) else [])
        + ["import torch"]
        + (["import torch.nn.functional as F"] if uses_functional else [])
        + ["from torch import nn"]
    )

    parts = [
        f'"""PyTorch model {model_class}: generated by cnnspec from spec {plan.name!r}.\n\n'
        f"Input layout {layout}: {_input_text(plan)}; output {_output_text(plan.layers[-1])}.\n"
        f"{_open_note(plan)}"
        f"Parameters: {plan.trainable_params:,} trainable, {plan.non_trainable_params:,} non-trainable.\n\n"
        f"Layer outputs (batch N first):\n{shape_table}\n"
        '"""\n',
        "\n".join(imports) + "\n",
        f"CNNSPEC_LAYER_NAMES = {names_literal}\n",
    ]
    parts.extend(definition_text(HELPERS_FILE, name) for name in sorted(helpers))
    body = [
        f"class {model_class}(nn.Module):",
        f'    """{plan.name}: input {_input_text(plan)} ({layout}), output {_output_text(plan.layers[-1])}."""',
        "",
        "    def __init__(self):",
        "        super().__init__()",
        *init_lines,
        "",
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:",
        *forward_lines,
        "",
        "    def forward_layers(self, x: torch.Tensor) -> dict[str, torch.Tensor]:",
        '        """The same computation as forward, returning every spec layer\'s output by name, in spec order."""',
        *layers_lines,
    ]
    parts.append("\n".join(body) + "\n")
    return parts[0] + "\n" + "\n\n".join(parts[1:])


def _uses(module: str, code: str) -> bool:
    """Whether ``code`` refers to ``module.<name>`` (decides the generated module's imports)."""
    return re.search(rf"\b{module}\.", code) is not None
