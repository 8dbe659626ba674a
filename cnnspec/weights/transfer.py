"""Weights: move them between the PyTorch and Keras models of one spec (files: :mod:`cnnspec.weights.files`).

Both models are generated from the same :class:`~cnnspec.engine.plan.Plan`, so every layer with
weights has the same spec name in both: the torch attribute ``model.<name>`` (a separable
conv is ``<name>_depthwise`` + ``<name>_pointwise``) and the Keras layer ``<name>``.  The
transfer walks the plan, reads each tensor from the source model, changes its layout and
writes it into the destination model.  Nothing is matched by position, and every shape is
checked: a mismatch raises :class:`WeightMismatch` naming the layer, the tensor and both
shapes.

Layouts (torch <-> keras)::

    conv            (O, I/g, *k)          <-> (*k, I/g, O)
    conv transpose  (I, O, *k)            <-> (*k, O, I)
    depthwise       (C*m, 1, kh, kw)      <-> (kh, kw, C, m)     torch channel c*m + j == keras (c, j)
    pointwise       (F, C*m, 1, 1)        <-> (1, 1, C*m, F)
    dense           (out, in)             <-> (in, out)          rows permuted, see flat_permutation
    batch norm      weight/bias/running_mean/running_var <-> gamma/beta/moving_mean/moving_variance
    prelu           (C,) or (1,)          <-> (1, ..., 1, C) or (1, ..., 1, 1)

Neither torch nor keras is imported by this module at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cnnspec.errors import CnnspecError

KERAS_WEIGHTS_SUFFIX = ".weights.h5"


class WeightMismatch(CnnspecError):
    """A tensor cannot be copied: missing, or its shape does not fit the other model or the spec."""


# --------------------------------------------------------------------------------------
# Flat feature order
# --------------------------------------------------------------------------------------


def flat_permutation(segments) -> np.ndarray:
    """Index map from Keras' flat feature order to PyTorch's.

    A flattened feature map ``(C, *S)`` is laid out C-major by PyTorch and spatial-major
    (channels last) by Keras; ``(F,)`` segments are already flat and keep their order.
    Concatenated segments are permuted piece by piece.

    Args:
        segments: a ``LayerPlan.flat_segments`` tuple.

    Returns:
        ``perm`` with ``keras_vector == torch_vector[perm]`` (and
        ``torch_vector == keras_vector[np.argsort(perm)]``).
    """
    pieces = []
    offset = 0
    for segment in segments:
        count = int(np.prod(segment))
        index = np.arange(count)
        if len(segment) > 1:
            index = np.moveaxis(index.reshape(segment), 0, -1).reshape(-1)
        pieces.append(index + offset)
        offset += count
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


@dataclass
class _Slot:
    """One tensor of one layer: where it lives in each model and how its layout changes."""

    layer: str
    tensor: str  # the plan's neutral name (kernel, bias, gamma, ...)
    torch_owner: Any  # torch module
    torch_attr: str  # attribute on torch_owner (weight, bias, running_mean, ...)
    keras_var: Any  # keras Variable
    to_keras: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]
    expected_torch_shape: tuple[int, ...] | None = None  # from the plan
    reshape: bool = False  # reshape to the destination's own shape (slopes)

    @property
    def torch_tensor(self):
        return getattr(self.torch_owner, self.torch_attr)


# --------------------------------------------------------------------------------------
# Framework detection and access
# --------------------------------------------------------------------------------------


def _framework_of(obj: Any, role: str) -> str:
    from cnnspec.targets.base import target_of

    return target_of(obj, role).name


def _plan_of(spec):
    from cnnspec.engine.plan import Plan, resolve

    return spec if isinstance(spec, Plan) else resolve(spec)


def _keras_numpy(variable) -> np.ndarray:
    import keras

    return np.array(keras.ops.convert_to_numpy(variable.value))


def _torch_numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def _torch_module(modules: dict, name: str, spec_name: str, layer_type: str):
    module = modules.get(name)
    if module is None:
        raise WeightMismatch(
            f"layer '{spec_name}' ({layer_type}): the torch model has no submodule named '{name}' "
            "(was it built from this spec?)"
        )
    return module


def _torch_attr(module, attr: str, spec_name: str, tensor: str, torch_name: str):
    value = getattr(module, attr, None)
    if value is None:
        raise WeightMismatch(
            f"layer '{spec_name}': tensor '{tensor}': the torch module '{torch_name}' ({type(module).__name__}) "
            f"has no '{attr}'"
        )
    return value


def _keras_layer(layers_by_name: dict, name: str, spec_names: set, layer_type: str):
    """The Keras layer holding a spec layer's weights: the layer named ``name``, or its one weighted helper."""
    layer = layers_by_name.get(name)
    if layer is not None and layer.weights:
        return layer
    helpers = [
        candidate
        for candidate_name, candidate in layers_by_name.items()
        if candidate_name.startswith(name + "_")
        and candidate_name not in spec_names
        and candidate.weights
    ]
    if len(helpers) == 1:
        return helpers[0]
    if layer is None and not helpers:
        raise WeightMismatch(
            f"layer '{name}' ({layer_type}): the keras model has no layer named '{name}' (was it built from this spec?)"
        )
    found = ", ".join(h.name for h in helpers) or "none"
    raise WeightMismatch(
        f"layer '{name}' ({layer_type}): cannot find the keras layer holding its weights "
        f"(layer '{name}' has none; weighted helper layers: {found})"
    )


def _keras_var(layer, candidates: tuple[str, ...], spec_name: str, tensor: str):
    by_name = {variable.name: variable for variable in layer.weights}
    for candidate in candidates:
        if candidate in by_name:
            return by_name[candidate]
    have = ", ".join(f"{v.name} {tuple(v.shape)}" for v in layer.weights) or "none"
    raise WeightMismatch(
        f"layer '{spec_name}': tensor '{tensor}': the keras layer '{layer.name}' ({type(layer).__name__}) "
        f"has no variable {' or '.join(candidates)} (it has: {have})"
    )


# --------------------------------------------------------------------------------------
# The slot table
# --------------------------------------------------------------------------------------


def definition_slots(layer_plan, plan) -> list:
    """The :class:`~cnnspec.layers.WeightSlot` list of one layer, from its definition in the layer registry."""
    from cnnspec.layers import REGISTRY

    flat_order = None
    if len(layer_plan.input_shape) == 1:
        source = layer_plan.inputs[0]
        segments = (
            plan.layer(source).flat_segments if source != "input" else (layer_plan.input_shape,)
        )
        flat_order = flat_permutation(segments)
    return REGISTRY.definition(layer_plan.type).weights(layer_plan, flat_order)


def _weighted_layers(plan):
    from cnnspec.layers import REGISTRY

    return [layer for layer in plan.layers if REGISTRY.definition(layer.type).weighted]


def bound_torch_tensors(torch_model, plan) -> dict:
    """(layer, tensor) -> the torch parameter or buffer holding it (neutral layout)."""
    modules = dict(torch_model.named_modules())
    bound = {}
    for layer_plan in _weighted_layers(plan):
        for slot in definition_slots(layer_plan, plan):
            torch_name = layer_plan.name + slot.torch_module
            module = _torch_module(modules, torch_name, layer_plan.name, layer_plan.type)
            bound[(layer_plan.name, slot.tensor)] = _torch_attr(
                module, slot.torch_attr, layer_plan.name, slot.tensor, torch_name
            )
    return bound


def keras_layers_by_name(model) -> dict:
    """Every layer of a Keras model by name, those of nested models too (an outer name wins)."""
    found: dict = {}
    for layer in model.layers:
        found.setdefault(layer.name, layer)
    for layer in model.layers:
        if hasattr(layer, "layers") and layer is not model:
            for name, inner in keras_layers_by_name(layer).items():
                found.setdefault(name, inner)
    return found


def bound_keras_variables(keras_model, plan) -> dict:
    """(layer, tensor) -> (keras variable, its WeightSlot, the neutral shape)."""
    layers_by_name = keras_layers_by_name(keras_model)
    spec_names = {layer.name for layer in plan.layers}
    bound = {}
    for layer_plan in _weighted_layers(plan):
        slots = definition_slots(layer_plan, plan)
        if not slots:  # e.g. normalize with constant mean/variance, group_norm without affine
            continue
        keras_layer = _keras_layer(layers_by_name, layer_plan.name, spec_names, layer_plan.type)
        expected = {p.name: tuple(p.shape) for p in layer_plan.params}
        for slot in slots:
            variable = _keras_var(keras_layer, slot.keras_names, layer_plan.name, slot.tensor)
            bound[(layer_plan.name, slot.tensor)] = (variable, slot, expected.get(slot.tensor))
    return bound


def _slots_for_layer(
    layer_plan, plan, torch_modules: dict, keras_layers: dict, spec_names: set
) -> list[_Slot]:
    """The layer's weight slots (from its definition in the layer registry), bound to both models."""
    name, layer_type = layer_plan.name, layer_plan.type
    expected = {p.name: tuple(p.shape) for p in layer_plan.params}
    weight_slots = definition_slots(layer_plan, plan)
    if not weight_slots:  # e.g. normalize with constant mean/variance, group_norm without affine
        return []
    keras_layer = _keras_layer(keras_layers, name, spec_names, layer_type)
    slots: list[_Slot] = []
    biased: dict[str, bool] = {}
    for slot in weight_slots:
        torch_name = name + slot.torch_module
        module = _torch_module(torch_modules, torch_name, name, layer_type)
        if slot.bias_forbidden and getattr(module, "bias", None) is not None:
            raise WeightMismatch(
                f"layer '{name}': the torch module '{torch_name}' has a bias; {slot.bias_forbidden}"
            )
        _torch_attr(module, slot.torch_attr, name, slot.tensor, torch_name)
        biased[torch_name] = biased.get(torch_name, False) or slot.torch_attr == "bias"
        slots.append(
            _Slot(
                layer=name,
                tensor=slot.tensor,
                torch_owner=module,
                torch_attr=slot.torch_attr,
                keras_var=_keras_var(keras_layer, slot.keras_names, name, slot.tensor),
                to_keras=slot.to_keras,
                to_torch=slot.to_torch,
                expected_torch_shape=expected.get(slot.tensor),
                reshape=slot.reshape,
            )
        )
    for torch_name, has_bias_slot in biased.items():
        if not has_bias_slot and getattr(torch_modules[torch_name], "bias", None) is not None:
            raise WeightMismatch(
                f"layer '{name}': the spec has bias: false but the torch module '{torch_name}' has a bias"
            )
    return slots


def _all_slots(torch_model, keras_model, plan, name_map=None) -> list[_Slot]:
    from cnnspec.weights.matching import transfer_lookups

    torch_modules, keras_layers = transfer_lookups(torch_model, keras_model, plan, name_map)
    spec_names = {layer.name for layer in plan.layers}
    slots: list[_Slot] = []
    for layer_plan in _weighted_layers(plan):
        slots.extend(_slots_for_layer(layer_plan, plan, torch_modules, keras_layers, spec_names))
    return slots


def _mismatch(slot: _Slot, torch_shape, keras_shape, detail: str = "") -> WeightMismatch:
    text = (
        f"layer '{slot.layer}': tensor '{slot.tensor}': torch shape {tuple(torch_shape)} does not fit "
        f"keras shape {tuple(keras_shape)}"
    )
    return WeightMismatch(text + (f" ({detail})" if detail else ""))


def _check_torch_shape(slot: _Slot, torch_shape, keras_shape) -> None:
    if slot.expected_torch_shape is not None and tuple(torch_shape) != slot.expected_torch_shape:
        raise _mismatch(
            slot, torch_shape, keras_shape, f"the spec says torch shape {slot.expected_torch_shape}"
        )


def _check_complete(torch_model, keras_model, slots: list[_Slot]) -> None:
    """Every trainable tensor of both models must belong to some spec layer: no silent leftovers."""
    torch_done = {id(slot.torch_tensor) for slot in slots}
    for param_name, param in torch_model.named_parameters():
        if id(param) not in torch_done:
            raise WeightMismatch(
                f"torch parameter '{param_name}' {tuple(param.shape)} belongs to no spec layer with weights"
            )
    keras_done = {id(slot.keras_var) for slot in slots}
    for variable in keras_model.trainable_weights:
        if id(variable) not in keras_done:
            raise WeightMismatch(
                f"keras variable '{variable.path}' {tuple(variable.shape)} belongs to no spec layer with weights"
            )


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def transfer_weights(src_model, dst_model, spec, name_map=None) -> None:
    """Copy every weight of ``src_model`` into ``dst_model`` (torch -> keras or keras -> torch).

    The direction is detected from the objects.  Weights are matched by spec layer name
    and converted between the layouts listed in the module docstring; dense rows (and
    BatchNorm / PReLU parameters on flat features) are permuted by the input layer's
    ``flat_segments``.

    Args:
        src_model: a ``torch.nn.Module`` or ``keras.Model`` built from ``spec``, or the original
            model ``spec`` was imported from (Keras, torch or ONNX; read through each layer's ``source``).
        dst_model: the model of the other framework built from ``spec``.
        spec: a ModelSpec, Plan, path, YAML/JSON text or dict.
        name_map: for hand-written models whose parts are not named like the spec layers:
            ``{spec layer: torch module path or keras layer name}`` (or one such map per
            framework under ``"torch"`` / ``"keras"``); without it, unmatched layers are
            matched by order and type when that is unambiguous (see
            :mod:`cnnspec.weights.matching`).

    Raises:
        WeightMismatch: a layer is missing in a model, or a tensor's shape does not fit
            (the message names the layer, the tensor and both shapes).
        AmbiguousMatch: spec layers cannot be matched to the model's parts without a name map.
        CnnspecError: the models are not one torch and one keras model.
    """
    plan = _plan_of(spec)
    from cnnspec.importers.origin import transfer_from_original

    if transfer_from_original(src_model, dst_model, plan):  # the model the spec was imported from
        return
    src_kind = _framework_of(src_model, "source")
    dst_kind = _framework_of(dst_model, "destination")
    if src_kind == dst_kind:
        raise CnnspecError(
            f"transfer_weights copies between torch and keras; both models are {src_kind} models"
        )
    torch_model, keras_model = (
        (src_model, dst_model) if src_kind == "torch" else (dst_model, src_model)
    )
    slots = _all_slots(torch_model, keras_model, plan, name_map)
    _check_complete(torch_model, keras_model, slots)

    # Convert everything first, write afterwards: a mismatch leaves the destination untouched.
    converted = []
    for slot in slots:
        torch_shape = tuple(slot.torch_tensor.shape)
        keras_shape = tuple(slot.keras_var.shape)
        _check_torch_shape(slot, torch_shape, keras_shape)
        try:
            if src_kind == "torch":
                value = slot.to_keras(_torch_numpy(slot.torch_tensor))
                if slot.reshape:
                    value = value.reshape(keras_shape)  # size mismatch -> ValueError below
                target_shape = keras_shape
            else:
                value = slot.to_torch(_keras_numpy(slot.keras_var))
                if slot.reshape:
                    value = value.reshape(torch_shape)
                target_shape = torch_shape
        except ValueError as error:
            raise _mismatch(slot, torch_shape, keras_shape, str(error)) from None
        if tuple(value.shape) != target_shape:
            raise _mismatch(slot, torch_shape, keras_shape)
        converted.append((slot, value))

    if dst_kind == "keras":
        for slot, value in converted:
            slot.keras_var.assign(
                np.array(value, dtype=slot.keras_var.dtype, order="C")
            )  # keeps 0-d (a count)
        # Keras Normalization divides by a copy of its mean/variance made in finalize_state(), not by the variables.
        for layer in keras_model.layers:
            if isinstance(layer, keras_normalization_class()):
                layer.finalize_state()
    else:
        import torch

        with torch.no_grad():
            for slot, value in converted:
                target = slot.torch_tensor
                target.copy_(
                    torch.from_numpy(np.array(value, order="C")).to(
                        dtype=target.dtype, device=target.device
                    )
                )


def keras_values(plan, tensors: dict) -> dict:
    """``tensors`` (torch's values by (layer, tensor), as the torch target's ``read_weights``
    gives them) in Keras' layouts: (layer, tensor) -> (its WeightSlot, the value).

    A slot with ``reshape`` still has torch's shape here; it takes the variable's on writing.
    """
    values = {}
    for layer_plan in _weighted_layers(plan):
        for slot in definition_slots(layer_plan, plan):
            key = (layer_plan.name, slot.tensor)
            if key in tensors:
                values[key] = (slot, slot.to_keras(np.asarray(tensors[key])))
    return values


def write_keras_weights(keras_model, plan, tensors: dict, *, converted=None, started=None) -> list:
    """Write neutral-layout tensors into a Keras model built from the spec, without torch.

    The values and conversions of :func:`transfer_weights` from a torch model built from the
    same spec: ``tensors`` holds each torch tensor by (layer, tensor), as the torch target's
    ``read_weights`` gives them.

    Args:
        converted: :func:`keras_values` of ``tensors``, when it was made already.
        started: id(variable) -> the (layer, tensor) whose value the variable was created
            with; such a variable is not written again if that is the tensor bound to it.

    Returns:
        The Keras variables written (or created with their value).
    """
    values = keras_values(plan, tensors) if converted is None else converted
    writes = []
    for key, (variable, slot, _) in bound_keras_variables(keras_model, plan).items():
        if key not in values:
            raise WeightMismatch(f"layer '{key[0]}': no value for tensor '{key[1]}'")
        value = values[key][1]
        if slot.reshape:
            value = value.reshape(tuple(variable.shape))
        if tuple(value.shape) != tuple(variable.shape):
            raise WeightMismatch(
                f"layer '{key[0]}': tensor '{key[1]}': {tuple(value.shape)} does not fit "
                f"{tuple(variable.shape)}"
            )
        writes.append((variable, value, (started or {}).get(id(variable)) == key))
    for variable, value, created_with_it in writes:
        if not created_with_it:
            variable.assign(np.array(value, dtype=variable.dtype, order="C"))  # keeps 0-d (a count)
    for layer in keras_model.layers:
        if isinstance(layer, keras_normalization_class()):
            layer.finalize_state()
    return [variable for variable, _, _ in writes]


def keras_normalization_class():
    """keras.layers.Normalization (imported on use)."""
    import keras

    return keras.layers.Normalization


def randomize(model, seed: int) -> None:
    """Give a model seeded, non-degenerate weights, so comparisons test meaningful numbers.

    Kernels ~ N(0, 1/fan_in), biases ~ N(0, 0.1²), BatchNorm gamma ~ N(1, 0.3²) and beta ~
    N(0, 0.3²), moving mean ~ N(0, 0.5²), moving variance ~ U(0.5, 2), PReLU slopes ~
    U(0.05, 0.6) (all different from the 0.25 default).

    Args:
        model: a ``torch.nn.Module`` (the usual case) or a ``keras.Model``.
        seed: the random seed; the same seed gives the same weights.
    """
    rng = np.random.default_rng(seed)
    if _framework_of(model, "given") == "torch":
        _randomize_torch(model, rng)
    else:
        _randomize_keras(model, rng)


def random_tensor(rng, role: str, shape, fan_in: int) -> np.ndarray:
    """One seeded float32 tensor drawn as :func:`randomize` describes for its ``role``.

    Drawn in float32 directly: for a 61 M-parameter model, float64 draws and a conversion
    take twice as long.
    """
    shape = tuple(shape)
    if role == "moving_variance":
        return (rng.random(shape, dtype=np.float32) * np.float32(1.5) + np.float32(0.5)).astype(
            np.float32, copy=False
        )
    if role == "alpha":
        return (rng.random(shape, dtype=np.float32) * np.float32(0.55) + np.float32(0.05)).astype(
            np.float32, copy=False
        )
    mean, deviation = {
        "kernel": (0.0, 1.0 / np.sqrt(max(fan_in, 1))),
        "bias": (0.0, 0.1),
        "gamma": (1.0, 0.3),
        "beta": (0.0, 0.3),
        "moving_mean": (0.0, 0.5),
    }.get(role, (0.0, 0.1))
    values = rng.standard_normal(shape, dtype=np.float32)
    values *= np.float32(deviation)
    if mean:
        values += np.float32(mean)
    return values


# What a module's tensors are, by the family of the layer definition that claims its class (for the
# importers; cnnspec's own helpers included): per-channel vectors get their own distributions, and
# the statistics buffers listed are weights too.  Other tensors: kernels by rank, biases, "other".
_TORCH_ROLES = {
    "batch_norm": {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_variance",
    },
    "group_norm": {"weight": "gamma", "bias": "beta"},
    "layer_norm": {"weight": "gamma", "bias": "beta"},
    "normalize": {"mean": "moving_mean", "variance": "moving_variance"},
    "prelu": {"weight": "alpha"},
}


def _torch_family(module) -> str | None:
    from cnnspec.layers import REGISTRY

    claim = REGISTRY.claims("torch_module").get(type(module).__name__)
    return None if claim is None else claim.owner.family


def _randomize_torch(model, rng) -> None:
    import torch

    with torch.no_grad():
        for module in model.modules():
            family = _torch_family(module)
            roles = _TORCH_ROLES.get(family or "", {})
            tensors = list(module.named_parameters(recurse=False))
            # Saved statistics are weights; other buffers (a pooling layer's divisors) are the model's.
            buffers = dict(module.named_buffers(recurse=False))
            saved = [
                a for a in roles if a in buffers and a not in module._non_persistent_buffers_set
            ]
            tensors += [(attr, buffers[attr]) for attr in saved]
            fan_in_override = None
            if family == "conv_transpose":  # fan-in of a transposed conv: I * k / stride
                weight = module.weight
                fan_in_override = (
                    weight.shape[0] * int(np.prod(weight.shape[2:])) // int(np.prod(module.stride))
                )
            for attr, tensor in tensors:
                if tensor is None or not tensor.is_floating_point():
                    continue
                if attr in roles:
                    role = roles[attr]
                elif attr == "bias":
                    role = "bias"
                elif attr == "weight" and tensor.ndim >= 2:
                    role = "kernel"
                else:
                    role = "other"
                fan_in = (fan_in_override if role == "kernel" else None) or (
                    int(np.prod(tensor.shape[1:])) if tensor.ndim >= 2 else 1
                )
                tensor.copy_(
                    torch.from_numpy(random_tensor(rng, role, tuple(tensor.shape), fan_in)).to(
                        tensor.dtype
                    )
                )


def _randomize_keras(model, rng) -> None:
    import keras

    seen: set[int] = set()
    for layer in model.layers:
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        for variable in layer.weights:
            if id(variable) in seen or "float" not in str(variable.dtype):
                continue
            seen.add(id(variable))
            role, shape, fan_in = variable.name, tuple(variable.shape), 1
            if isinstance(layer, keras.layers.Normalization):
                role = {"mean": "moving_mean", "variance": "moving_variance"}.get(role, role)
            if role in ("kernel", "depthwise_kernel", "pointwise_kernel") and len(shape) >= 2:
                # keras kernels end in (..., in, out); a depthwise kernel's window is all of its fan-in.
                fan_in = int(
                    np.prod(shape[:-2] if depthwise or role == "depthwise_kernel" else shape[:-1])
                )
                role = "kernel"
            elif (
                role not in ("bias", "gamma", "beta", "moving_mean", "moving_variance", "alpha")
                and not variable.trainable
            ):
                continue  # e.g. a seed generator's state
            variable.assign(random_tensor(rng, role, shape, fan_in))
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()
