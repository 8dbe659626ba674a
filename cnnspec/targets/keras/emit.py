"""Plan -> stand-alone Keras 3 source (functional API, channels last, TensorFlow backend).

The generated module imports only ``keras`` (and ``numpy`` when a helper needs it) and
defines one function ``build_<name>()`` returning a ``keras.Model`` whose input is
channels-last.  Every spec layer's output is the output of the Keras layer named exactly
like the spec layer; layers added only to reproduce the plan's semantics are called
``<name>_<role>`` (``conv1_pad``).

Only the resolved plan is read (per-side padding, ``ceil_extra``, transposed-conv crops);
nothing is recomputed here.  Native Keras arguments are used where they are exact:

* ``padding="same"`` for convolutions and pools whose plan mode is ``same`` (TensorFlow's
  SAME is SAME_UPPER, and its pools never count or pick padded cells);
* otherwise a ``ZeroPadding*D`` (convolutions, counted average pools) or ``-inf`` padding
  (max pools) followed by ``padding="valid"``.

Small helper ``Layer`` subclasses (serializable through ``get_config``; never ``Lambda``),
written once in ``targets/keras/helpers.py`` and copied into a module only when its model
needs them:

* ``PortableConv`` (any rank): grouped convolution computed group by group (Keras' native
  grouped convolution runs through XLA on CPU and does not export to ONNX) and strides
  together with dilation (Keras refuses ``strides > 1`` with ``dilation_rate > 1``),
  computed at stride 1 and subsampled -- exact.
* ``CroppedConvTranspose`` (any rank): the full transposed convolution, extended with
  bias-only cells and cropped per side, as the plan says; dilation is done with an
  explicitly dilated kernel, so any stride works.
* ``ConstantPadding``: ``-inf`` padding so padded cells never win a max.
* ``SamePadding`` / ``CeilModePadding``: 'same' padding (where ``padding="same"`` is not used) and
  ceil-mode overhang worked out from each input's size, for open input sizes (``Input`` has
  ``None`` on those axes).
* ``CountedAveragePooling``: zero-padded sum pooling divided by the number of counted
  cells (``count_include_pad: false``, or ceil-mode overhang, which is never counted).
* ``gelu_erf`` / ``gelu_tanh``: registered activation functions (Keras' own ``"gelu"`` lowers
  to ``Erfc`` on TensorFlow, which has no ONNX operator), used inline or in ``Activation``.
"""

from __future__ import annotations

import re
from pathlib import Path

from cnnspec.engine.plan import Plan
from cnnspec.errors import CnnspecError
from cnnspec.layers import REGISTRY
from cnnspec.targets import pysource as P
from cnnspec.targets.helper_text import definition_names, definition_text
from cnnspec.targets.keras.code import (  # noqa: F401  (KERAS_ACTIVATIONS: re-exported)
    INPUT_VARIABLE,
    KERAS_ACTIVATIONS,
    RANK_SUFFIX,
    EmitContext,
    identifier,
    quoted,
)
from cnnspec.targets.naming import function_name

_RANK_SUFFIX = RANK_SUFFIX

# --------------------------------------------------------------------------------------------
# Helper layers (real code in targets/keras/helpers.py; its text is copied, never imported)
# --------------------------------------------------------------------------------------------

HELPERS_FILE = str(Path(__file__).with_name("helpers.py"))
_NEEDS_NUMPY = {"CountedAveragePooling"}


def helper_texts() -> dict[str, str]:
    """Every helper a generated Keras module can include: name -> its source text."""
    return {name: definition_text(HELPERS_FILE, name) for name in definition_names(HELPERS_FILE)}


def helper_source(names) -> str:
    """The source of the named helper layers/functions, in the given order, as the generated module includes them."""
    return "\n".join("\n\n" + definition_text(HELPERS_FILE, name).rstrip("\n") for name in names)


#: One emitter per spec layer type, from the layer registry: ``EMITTERS[type](layer_plan, ctx) -> source lines``.
EMITTERS = {layer_type: REGISTRY.definition(layer_type).keras for layer_type in REGISTRY.types()}


# --------------------------------------------------------------------------------------------
# Module assembly
# --------------------------------------------------------------------------------------------


def emit_source(plan: Plan) -> str:
    """Generate the stand-alone Keras 3 module for ``plan``.

    Args:
        plan: a resolved :class:`~cnnspec.engine.plan.Plan`.

    Returns:
        Python source importing only keras (and numpy when a helper layer needs it), defining
        ``CNNSPEC_LAYER_NAMES``, the helper layers the model uses and ``build_<name>()``.

    Raises:
        CnnspecError: a layer type has no emitter, or a name is not a Python identifier or
            collides with a helper class name the module defines.
    """
    ctx = EmitContext(plan)
    body: list[str] = []
    for layer in plan.layers:
        body.extend(REGISTRY.definition(layer.type).keras(layer, ctx))

    for helper in ctx.helpers:
        if helper in ctx.taken:
            raise CnnspecError(
                f"layer name '{helper}' collides with the helper layer class '{helper}' the Keras module defines; "
                "rename that layer"
            )

    func = identifier(function_name(plan.name))
    in_shape = _input_shape_text(plan)
    out_shape = _output_shape_text(plan)
    layout = plan.layouts[1]
    helper_code = "".join(definition_text(HELPERS_FILE, helper) for helper in ctx.helpers)
    needs_numpy = any(h in _NEEDS_NUMPY for h in ctx.helpers) or _uses("np", helper_code)
    needs_math = _uses("math", helper_code)
    statements: list[str] = []
    for line in body:
        target, _, expression = line.partition(" = ")
        statements += P.statement("    ", target, expression)
    uses_layers = bool(ctx.helpers) or any("layers." in line for line in body)
    from_keras = ", ".join(
        n for n, used in (("layers", uses_layers), ("ops", _uses("ops", helper_code))) if used
    )

    lines = [
        '"""Keras 3 model '
        + repr(identifier(plan.name))
        + ", generated by cnnspec from spec "
        + repr(plan.name)
        + ".",
        "",
        f"Layout {layout} (channels last). Input shape {in_shape}, output shape {out_shape} (batch excluded).",
        f"Layers: {len(plan.layers)}; parameters: {plan.total_params:,} ({plan.trainable_params:,} trainable).",
        "Every spec layer is the Keras layer of the same name; helper layers are called <name>_<role>.",
        '"""',
        "",
        *(["import math", ""] if needs_math else []),
        "import keras",
    ]
    if needs_numpy:
        lines.append("import numpy as np")
    if from_keras:
        lines.append(f"from keras import {from_keras}")
    lines += [
        "",
        "CNNSPEC_LAYER_NAMES = [",
        *[f"    {quoted(layer.name)}," for layer in plan.layers],
        "]",
    ]
    for helper in ctx.helpers:
        lines += ["", ""]
        lines.extend(definition_text(HELPERS_FILE, helper).rstrip("\n").split("\n"))
    lines += [
        "",
        "",
        f"def {func}():",
        f'    """Build the functional keras.Model {plan.name!r}: input {in_shape} {layout}, output {out_shape}."""',
        f"    {INPUT_VARIABLE} = keras.Input(shape={in_shape}, name={P.string('input')})",
        *statements,
        *P.fit(
            "    ",
            "return ",
            P.call(
                "keras.Model",
                inputs=INPUT_VARIABLE,
                outputs=ctx.variable(plan.layers[-1].name),
                name=quoted(plan.name),
            ),
        ),
        "",
    ]
    return "\n".join(lines)


def _channels_last(shape) -> tuple[int, ...]:
    return tuple(shape[1:]) + (shape[0],) if len(shape) > 1 else tuple(shape)


def _shape_text(shape) -> str:
    return repr(tuple(int(v) for v in shape))


def _output_shape_text(plan: Plan) -> str:
    """The channels-last output shape, None where it follows an open input size."""
    last = plan.layers[-1]
    if len(last.output_shape) == 1 or not last.sizes:
        return _shape_text(last.output_shape_last)
    spatial = [size.constant if size.is_fixed else None for size in last.sizes]
    return repr((*spatial, int(last.output_shape[0])))


def _input_shape_text(plan: Plan) -> str:
    """The channels-last input shape, None on the open axes (any size)."""
    spatial = [
        None if is_open else int(n) for is_open, n in zip(plan.open_axes, plan.input_shape[1:])
    ]
    return repr((*spatial, int(plan.input_shape[0])))


def _uses(module: str, code: str) -> bool:
    """Whether ``code`` refers to ``module.<name>`` (decides the generated module's imports)."""
    return re.search(rf"\b{module}\.", code) is not None
