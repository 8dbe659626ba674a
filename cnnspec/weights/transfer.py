"""Weights: move them between the PyTorch and Keras models of one spec, and to and from files.

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

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cnnspec.atomic import atomic_path
from cnnspec.errors import CnnspecError

KERAS_WEIGHTS_SUFFIX = ".weights.h5"

# Spec families whose layers carry weights.
WEIGHTED_FAMILIES = ("conv", "conv_transpose", "depthwise_conv", "separable_conv", "dense", "batch_norm", "prelu")


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


# --------------------------------------------------------------------------------------
# Layout conversions (numpy, both directions)
# --------------------------------------------------------------------------------------


def _kernel_to_keras(t: np.ndarray) -> np.ndarray:
    """(A, B, *k) -> (*k, B, A): conv (O, I/g, *k), transposed conv (I, O, *k), pointwise."""
    return np.transpose(t, tuple(range(2, t.ndim)) + (1, 0))


def _kernel_to_torch(k: np.ndarray) -> np.ndarray:
    """(*k, B, A) -> (A, B, *k): the inverse of :func:`_kernel_to_keras`."""
    return np.transpose(k, (k.ndim - 1, k.ndim - 2) + tuple(range(k.ndim - 2)))


def _depthwise_to_keras(t: np.ndarray, channels: int, multiplier: int) -> np.ndarray:
    """(C*m, 1, kh, kw) -> (kh, kw, C, m); torch output channel c*m + j is keras (c, j)."""
    if t.shape[:2] != (channels * multiplier, 1):
        raise ValueError("depthwise kernel does not have C*m output and 1 input channel per group")
    return np.transpose(t.reshape(channels, multiplier, *t.shape[2:]), (2, 3, 0, 1))


def _depthwise_to_torch(k: np.ndarray) -> np.ndarray:
    """(kh, kw, C, m) -> (C*m, 1, kh, kw)."""
    kh, kw, channels, multiplier = k.shape
    return np.transpose(k, (2, 3, 0, 1)).reshape(channels * multiplier, 1, kh, kw)


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

    @property
    def torch_tensor(self):
        return getattr(self.torch_owner, self.torch_attr)


# --------------------------------------------------------------------------------------
# Framework detection and access
# --------------------------------------------------------------------------------------


def _is_torch_model(obj: Any) -> bool:
    if "torch" not in sys.modules:
        return False
    import torch

    return isinstance(obj, torch.nn.Module)


def _is_keras_model(obj: Any) -> bool:
    if "keras" not in sys.modules:
        return False
    import keras

    return isinstance(obj, keras.Model)


def _framework_of(obj: Any, role: str) -> str:
    if _is_torch_model(obj):
        return "torch"
    if _is_keras_model(obj):
        return "keras"
    raise CnnspecError(f"the {role} model is neither a torch.nn.Module nor a keras.Model (got {type(obj).__name__})")


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
        if candidate_name.startswith(name + "_") and candidate_name not in spec_names and candidate.weights
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


def _slots_for_layer(layer_plan, plan, torch_modules: dict, keras_layers: dict, spec_names: set) -> list[_Slot]:
    name, family, layer_type = layer_plan.name, layer_plan.family, layer_plan.type
    expected = {p.name: tuple(p.shape) for p in layer_plan.params}
    slots: list[_Slot] = []

    def torch_module(suffix: str = ""):
        return _torch_module(torch_modules, name + suffix, name, layer_type)

    def add(tensor, module, attr, torch_name, keras_layer, keras_names, to_keras, to_torch):
        _torch_attr(module, attr, name, tensor, torch_name)
        slots.append(
            _Slot(
                layer=name, tensor=tensor, torch_owner=module, torch_attr=attr,
                keras_var=_keras_var(keras_layer, keras_names, name, tensor),
                to_keras=to_keras, to_torch=to_torch, expected_torch_shape=expected.get(tensor),
            )
        )

    def check_no_bias(module, torch_name):
        if "bias" not in expected and getattr(module, "bias", None) is not None:
            raise WeightMismatch(f"layer '{name}': the spec has bias: false but the torch module '{torch_name}' has a bias")

    identity = lambda a: a  # noqa: E731
    keras_layer = _keras_layer(keras_layers, name, spec_names, layer_type)
    flat_perm = None
    per_feature = family in ("dense", "batch_norm") or (family == "prelu" and layer_plan.spec.per_channel)
    if len(layer_plan.input_shape) == 1 and per_feature:
        source = layer_plan.inputs[0]
        segments = plan.layer(source).flat_segments if source != "input" else (layer_plan.input_shape,)
        flat_perm = flat_permutation(segments)

    def features_to_keras(a):  # per-feature vectors (BatchNorm, PReLU on flat features)
        return a if flat_perm is None else a[flat_perm]

    def features_to_torch(a):
        return a if flat_perm is None else a[np.argsort(flat_perm)]

    if family in ("conv", "conv_transpose"):
        module = torch_module()
        add("kernel", module, "weight", name, keras_layer, ("kernel",), _kernel_to_keras, _kernel_to_torch)
        if "bias" in expected:
            add("bias", module, "bias", name, keras_layer, ("bias",), identity, identity)
        check_no_bias(module, name)
    elif family == "depthwise_conv":
        channels, multiplier = layer_plan.input_shape[0], layer_plan.spec.depth_multiplier
        module = torch_module()
        add(
            "depthwise_kernel", module, "weight", name, keras_layer, ("depthwise_kernel", "kernel"),
            lambda t: _depthwise_to_keras(t, channels, multiplier), _depthwise_to_torch,
        )
        if "bias" in expected:
            add("bias", module, "bias", name, keras_layer, ("bias",), identity, identity)
        check_no_bias(module, name)
    elif family == "separable_conv":
        channels, multiplier = layer_plan.input_shape[0], layer_plan.spec.depth_multiplier
        depthwise, pointwise = torch_module("_depthwise"), torch_module("_pointwise")
        if getattr(depthwise, "bias", None) is not None:
            raise WeightMismatch(
                f"layer '{name}': the torch module '{name}_depthwise' has a bias; a separable conv has its bias "
                "on the pointwise part only (Keras SeparableConv2D has no depthwise bias)"
            )
        add(
            "depthwise_kernel", depthwise, "weight", name + "_depthwise", keras_layer, ("depthwise_kernel",),
            lambda t: _depthwise_to_keras(t, channels, multiplier), _depthwise_to_torch,
        )
        add("pointwise_kernel", pointwise, "weight", name + "_pointwise", keras_layer, ("pointwise_kernel",),
            _kernel_to_keras, _kernel_to_torch)
        if "bias" in expected:
            add("bias", pointwise, "bias", name + "_pointwise", keras_layer, ("bias",), identity, identity)
        check_no_bias(pointwise, name + "_pointwise")
    elif family == "dense":
        module = torch_module()
        perm = flat_perm if flat_perm is not None else np.arange(layer_plan.input_shape[0])
        inverse = np.argsort(perm)

        def dense_to_keras(t):
            if t.ndim != 2 or t.shape[1] != len(perm):
                raise ValueError("dense weight does not have the spec's input features")
            return np.ascontiguousarray(t.T[perm])

        def dense_to_torch(k):
            if k.ndim != 2 or k.shape[0] != len(perm):
                raise ValueError("dense kernel does not have the spec's input features")
            return np.ascontiguousarray(k[inverse].T)

        add("kernel", module, "weight", name, keras_layer, ("kernel",), dense_to_keras, dense_to_torch)
        if "bias" in expected:
            add("bias", module, "bias", name, keras_layer, ("bias",), identity, identity)
        check_no_bias(module, name)
    elif family == "batch_norm":
        module = torch_module()
        for tensor, attr in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")):
            add(tensor, module, attr, name, keras_layer, (tensor,), features_to_keras, features_to_torch)
    elif family == "prelu":
        module = torch_module()
        add("alpha", module, "weight", name, keras_layer, ("alpha",),
            lambda a: features_to_keras(a.reshape(-1)), lambda k: features_to_torch(k.reshape(-1)))
    else:  # pragma: no cover - WEIGHTED_FAMILIES and this switch are kept in step
        raise CnnspecError(f"layer '{name}': no weight layout known for family '{family}'")
    return slots


def _all_slots(torch_model, keras_model, plan) -> list[_Slot]:
    torch_modules = dict(torch_model.named_modules())
    keras_layers = {layer.name: layer for layer in keras_model.layers}
    spec_names = {layer.name for layer in plan.layers}
    slots: list[_Slot] = []
    for layer_plan in plan.layers:
        if layer_plan.family in WEIGHTED_FAMILIES:
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
        raise _mismatch(slot, torch_shape, keras_shape, f"the spec says torch shape {slot.expected_torch_shape}")


def _check_complete(torch_model, keras_model, slots: list[_Slot]) -> None:
    """Every trainable tensor of both models must belong to some spec layer: no silent leftovers."""
    torch_done = {id(slot.torch_tensor) for slot in slots}
    for param_name, param in torch_model.named_parameters():
        if id(param) not in torch_done:
            raise WeightMismatch(f"torch parameter '{param_name}' {tuple(param.shape)} belongs to no spec layer with weights")
    keras_done = {id(slot.keras_var) for slot in slots}
    for variable in keras_model.trainable_weights:
        if id(variable) not in keras_done:
            raise WeightMismatch(f"keras variable '{variable.path}' {tuple(variable.shape)} belongs to no spec layer with weights")


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def transfer_weights(src_model, dst_model, spec) -> None:
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

    Raises:
        WeightMismatch: a layer is missing in a model, or a tensor's shape does not fit
            (the message names the layer, the tensor and both shapes).
        CnnspecError: the models are not one torch and one keras model.
    """
    plan = _plan_of(spec)
    from cnnspec.importers.origin import transfer_from_original

    if transfer_from_original(src_model, dst_model, plan):  # the model the spec was imported from
        return
    src_kind = _framework_of(src_model, "source")
    dst_kind = _framework_of(dst_model, "destination")
    if src_kind == dst_kind:
        raise CnnspecError(f"transfer_weights copies between torch and keras; both models are {src_kind} models")
    torch_model, keras_model = (src_model, dst_model) if src_kind == "torch" else (dst_model, src_model)
    slots = _all_slots(torch_model, keras_model, plan)
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
                if slot.tensor == "alpha":
                    value = value.reshape(keras_shape)  # size mismatch -> ValueError below
                target_shape = keras_shape
            else:
                value = slot.to_torch(_keras_numpy(slot.keras_var))
                if slot.tensor == "alpha":
                    value = value.reshape(torch_shape)
                target_shape = torch_shape
        except ValueError as error:
            raise _mismatch(slot, torch_shape, keras_shape, str(error)) from None
        if tuple(value.shape) != target_shape:
            raise _mismatch(slot, torch_shape, keras_shape)
        converted.append((slot, value))

    if dst_kind == "keras":
        for slot, value in converted:
            slot.keras_var.assign(np.ascontiguousarray(value, dtype=slot.keras_var.dtype))
    else:
        import torch

        with torch.no_grad():
            for slot, value in converted:
                target = slot.torch_tensor
                target.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(dtype=target.dtype, device=target.device))


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


def _random_vector(rng, role: str, shape, fan_in: int) -> np.ndarray:
    if role == "kernel":
        values = rng.normal(0.0, 1.0 / np.sqrt(max(fan_in, 1)), size=shape)
    elif role == "bias":
        values = rng.normal(0.0, 0.1, size=shape)
    elif role == "gamma":
        values = rng.normal(1.0, 0.3, size=shape)
    elif role == "beta":
        values = rng.normal(0.0, 0.3, size=shape)
    elif role == "moving_mean":
        values = rng.normal(0.0, 0.5, size=shape)
    elif role == "moving_variance":
        values = rng.uniform(0.5, 2.0, size=shape)
    elif role == "alpha":
        values = rng.uniform(0.05, 0.6, size=shape)
    else:
        values = rng.normal(0.0, 0.1, size=shape)
    return values.astype(np.float32)


def _randomize_torch(model, rng) -> None:
    import torch

    batch_norm_types = (torch.nn.modules.batchnorm._BatchNorm,)
    roles = {}
    for module in model.modules():
        if isinstance(module, batch_norm_types):
            roles.update({id(module.weight): "gamma", id(module.bias): "beta"})
            roles.update({id(module.running_mean): "moving_mean", id(module.running_var): "moving_variance"})
        elif isinstance(module, torch.nn.PReLU):
            roles[id(module.weight)] = "alpha"
        elif isinstance(module, torch.nn.modules.conv._ConvTransposeNd):
            roles[id(module.weight)] = "kernel"  # fan-in of a transposed conv: I * k / stride
            module._cnnspec_fan_in = module.weight.shape[0] * int(np.prod(module.weight.shape[2:])) // int(np.prod(module.stride))
        elif getattr(module, "weight", None) is not None and module.weight.ndim >= 2:
            roles[id(module.weight)] = "kernel"
    with torch.no_grad():
        for module in model.modules():
            tensors = list(module.named_parameters(recurse=False))
            if isinstance(module, batch_norm_types):
                tensors += [("running_mean", module.running_mean), ("running_var", module.running_var)]
            # Other buffers (e.g. a pooling layer's precomputed divisors) are part of the model, not weights.
            for attr, tensor in tensors:
                if tensor is None or not tensor.is_floating_point():
                    continue
                role = roles.get(id(tensor), "bias" if attr == "bias" else "other")
                fan_in = getattr(module, "_cnnspec_fan_in", None) or (int(np.prod(tensor.shape[1:])) if tensor.ndim >= 2 else 1)
                tensor.copy_(torch.from_numpy(_random_vector(rng, role, tuple(tensor.shape), fan_in)).to(tensor.dtype))
        for module in model.modules():
            if hasattr(module, "_cnnspec_fan_in"):
                del module._cnnspec_fan_in


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
            if role in ("kernel", "depthwise_kernel", "pointwise_kernel") and len(shape) >= 2:
                # keras kernels end in (..., in, out); a depthwise kernel's window is all of its fan-in.
                fan_in = int(np.prod(shape[:-2] if depthwise or role == "depthwise_kernel" else shape[:-1]))
                role = "kernel"
            elif role not in ("bias", "gamma", "beta", "moving_mean", "moving_variance", "alpha") and not variable.trainable:
                continue  # e.g. a seed generator's state
            variable.assign(_random_vector(rng, role, shape, fan_in))


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def _is_keras_file(path: Path) -> bool:
    return path.name.endswith(KERAS_WEIGHTS_SUFFIX)


def _unpickling_reason(error: Exception) -> str:
    """The informative line of torch's weights_only error (not its advice to load unsafely)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "unsupported GLOBAL" in line or "Unsupported" in line or "not allowed" in line.lower():
            return line
    informative = [line for line in lines if "weights_only" not in line and "Weights only load failed" not in line]
    return informative[0] if informative else type(error).__name__


def load_weights_file(model, path, spec=None) -> None:
    """Load weights from a file into ``model``.

    A Keras ``.weights.h5`` file goes into a keras model with ``model.load_weights``; any
    other file is a torch ``state_dict``, loaded with ``torch.load(weights_only=True)`` (no
    pickled code is ever executed) and ``load_state_dict(strict=True)``.  When the file's
    framework is not the model's, the matching model is built from ``spec``, loaded, and
    its weights are transferred with :func:`transfer_weights`.

    Args:
        model: a ``torch.nn.Module`` or ``keras.Model``.
        path: the weights file.
        spec: the model's spec; needed only for a file of the other framework.

    Raises:
        CnnspecError: the file is missing or unreadable, or is not a plain weights file.
        WeightMismatch: the file's tensors do not fit the model.
    """
    path = Path(path)
    if not path.is_file():
        raise CnnspecError(f"weights file not found: {path}")
    model_kind = _framework_of(model, "given")
    file_kind = "keras" if _is_keras_file(path) else "torch"
    if model_kind != file_kind:
        if spec is None:
            raise CnnspecError(f"{path} holds {file_kind} weights but the model is a {model_kind} model; pass the spec to convert")
        from cnnspec.targets.build import build

        plan = _plan_of(spec)
        carrier = build(plan, file_kind)
        load_weights_file(carrier, path)
        transfer_weights(carrier, model, plan)
        return
    if file_kind == "keras":
        try:
            model.load_weights(str(path))
        except Exception as error:  # keras raises ValueError / OSError variants
            raise WeightMismatch(f"cannot load keras weights {path}: {error}") from None
        return
    import pickle

    import torch

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        raise CnnspecError(
            f"refusing to load {path}: not a plain torch weights file (state_dict of tensors) "
            f"readable with weights_only=True: {_unpickling_reason(error)}"
        ) from None
    if not isinstance(state, dict):
        raise CnnspecError(f"{path} does not hold a state_dict (a dict of tensors) but a {type(state).__name__}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightMismatch(f"the weights in {path} do not fit the model: {error}") from None


def save_weights_file(model, path, *, overwrite: bool = False) -> Path:
    """Save a model's weights atomically.

    A torch model is saved as its ``state_dict`` (``torch.save``); a keras model with
    ``save_weights``, to a path that must end in ``.weights.h5``.  The file is written to a
    temporary name in the same directory and moved into place, so a failure never leaves
    a partial file behind.

    Args:
        model: a ``torch.nn.Module`` or ``keras.Model``.
        path: the destination file.
        overwrite: replace an existing file (otherwise :class:`OutputExistsError`).

    Returns:
        The path written.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        CnnspecError: a keras path that does not end in ``.weights.h5``.
    """
    path = Path(path)
    kind = _framework_of(model, "given")
    if kind == "keras" and not _is_keras_file(path):
        raise CnnspecError(f"keras weights files must end in '{KERAS_WEIGHTS_SUFFIX}': {path}")
    (path.parent if str(path.parent) else Path(".")).mkdir(parents=True, exist_ok=True)
    suffix = KERAS_WEIGHTS_SUFFIX if kind == "keras" else ".tmp"  # keras insists on the .weights.h5 ending
    with atomic_path(path, overwrite=overwrite, suffix=suffix) as temp:
        if kind == "torch":
            import torch

            state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
            torch.save(state, temp)
        else:
            model.save_weights(str(temp), overwrite=True)
    return path
