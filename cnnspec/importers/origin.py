"""Weights of the ORIGINAL model a spec was imported from.

``transfer_weights(original, built, spec)`` reaches :func:`transfer_from_original` first.  When
``original`` is the model the importer read (a Keras model whose layers carry ``source``
provenance in the spec, a torch module with dotted module paths, an ONNX model), its tensors
are read here by each spec layer's ``source`` (or name), converted to one neutral layout --
PyTorch's, the shapes the plan's ``ParamTensor`` s give -- and written into the built model
(through a torch model built from the spec when the destination is Keras).  Models built from
the spec itself go on to the ordinary name-by-name transfer.

Neutral tensors per spec layer family::

    conv, conv_transpose, dense   kernel, bias                  (torch layout, flatten order C-major)
    depthwise_conv                depthwise_kernel, bias        (C*m, 1, kh, kw)
    separable_conv                depthwise_kernel, pointwise_kernel, bias
    batch_norm                    gamma, beta, moving_mean, moving_variance
    prelu                         alpha
    channel_conv                  kernel (1, 1, k), bias
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from cnnspec.errors import CnnspecError

WEIGHTED_FAMILIES = (
    "conv",
    "conv_transpose",
    "depthwise_conv",
    "separable_conv",
    "dense",
    "batch_norm",
    "prelu",
    "layer_norm",
    "group_norm",
    "layer_scale",
    "normalize",
    "channel_conv",
)

# Neutral tensor -> (torch attribute suffix, parameter) in a model built from the spec.
TORCH_SLOTS = {
    "kernel": ("", "weight"),
    "depthwise_kernel": ("", "weight"),
    "bias": ("", "bias"),
    "gamma": ("", "weight"),
    "beta": ("", "bias"),
    "moving_mean": ("", "running_mean"),
    "moving_variance": ("", "running_var"),
    "alpha": ("", "weight"),
    "mean": ("", "mean"),
    "variance": ("", "variance"),
    "count": ("", "count"),
}
LAYER_SCALE_SLOTS = {"gamma": ("", "gamma")}
SEPARABLE_SLOTS = {
    "depthwise_kernel": ("_depthwise", "weight"),
    "pointwise_kernel": ("_pointwise", "weight"),
    "bias": ("_pointwise", "bias"),
}

Tensors = dict[str, dict[str, np.ndarray]]


class OriginalWeightError(CnnspecError):
    """The original model's tensors do not fit the spec it was imported into."""


def _weighted(plan):
    unread = [
        layer for layer in plan.layers if layer.params and layer.family not in WEIGHTED_FAMILIES
    ]
    if unread:  # never leave a layer's weights at their initial values without a word
        raise CnnspecError(
            f"layer '{unread[0].name}' ({unread[0].type}): cnnspec cannot read this family's "
            "weights from an original model"
        )
    return [layer for layer in plan.layers if layer.family in WEIGHTED_FAMILIES]


def _has_provenance(plan) -> bool:
    return any(layer.spec.source is not None for layer in _weighted(plan))


def is_onnx_model(obj: Any) -> bool:
    """An ``onnx.ModelProto`` or a path to an .onnx file."""
    if isinstance(obj, (str, Path)):
        return str(obj).endswith(".onnx")
    return type(obj).__name__ == "ModelProto"


def _kind(obj: Any) -> str | None:
    if is_onnx_model(obj):
        return "onnx"
    if "torch" in sys.modules and isinstance(obj, sys.modules["torch"].nn.Module):
        return "torch"
    if "keras" in sys.modules and isinstance(obj, sys.modules["keras"].Model):
        return "keras"
    return None


def original_kind(src: Any, plan) -> str | None:
    """``keras`` / ``torch`` / ``onnx`` when ``src`` is an original to read through provenance, else None."""
    kind = _kind(src)
    if kind == "onnx":
        return kind
    if kind == "torch" and callable(getattr(src, "forward_layers", None)):
        return None  # built by cnnspec from the spec
    if kind == "keras":
        return kind if _is_keras_original(src, plan) else None
    if kind == "torch" and _has_provenance(plan):
        return kind
    return None


def _is_keras_original(model, plan) -> bool:
    """Whether a Keras model is the one ``plan`` was imported from, not one built from it: a
    layer the spec's provenance names (a renamed layer, the Permute a flatten took in, the
    layers a rewrite merged) is in it.  A model built from a spec imported from PyTorch has none
    of the module paths its provenance names."""
    from cnnspec.importers.keras import layers_by_name

    sources = {
        part for layer in plan.layers if layer.spec.source for part in layer.spec.source.split("+")
    }
    return bool(sources & set(layers_by_name(model)))


def original_weights(src: Any, plan) -> Tensors:
    """Every weighted spec layer's tensors read from the original model, in the neutral layout."""
    kind = original_kind(src, plan) or _kind(src)
    if kind == "keras":
        from cnnspec.importers.keras import keras_tensors

        return keras_tensors(src, plan)
    if kind == "torch":
        return _torch_tensors(src, plan)
    if kind == "onnx":
        from cnnspec.importers.onnx import onnx_tensors

        return onnx_tensors(src, plan)
    raise CnnspecError(f"cannot read weights from a {type(src).__name__}")


def _torch_tensors(module, plan) -> Tensors:
    modules = dict(module.named_modules())
    tensors: Tensors = {}
    for layer in _weighted(plan):
        path = layer.spec.source or layer.name
        owner = modules.get(path)
        if owner is None and layer.family == "layer_scale":  # x * self.gamma in forward
            owner = _parameter_holder(module, path)
        if owner is None:
            raise OriginalWeightError(
                f"layer '{layer.name}': the torch model has no module '{path}'"
            )
        if layer.family == "batch_norm":
            values = {
                "gamma": owner.weight,
                "beta": owner.bias,
                "moving_mean": owner.running_mean,
                "moving_variance": owner.running_var,
            }
        elif layer.family == "prelu":
            values = {"alpha": owner.weight}
        elif layer.family in ("layer_norm", "group_norm"):
            values = {"gamma": owner.weight, "beta": owner.bias}
        elif layer.family == "layer_scale":
            values = {"gamma": getattr(owner, "gamma", None)}
        elif layer.family == "normalize":
            values = {name: getattr(owner, name, None) for name in ("mean", "variance", "count")}
        else:
            key = "depthwise_kernel" if layer.family == "depthwise_conv" else "kernel"
            values = {key: owner.weight, "bias": owner.bias}
        shapes = {param.name: tuple(param.shape) for param in layer.params}
        tensors[layer.name] = {
            name: _with_unit_axes(value.detach().cpu().numpy(), shapes[name])
            for name, value in values.items()
            if value is not None and name in shapes
        }
    return tensors


def _with_unit_axes(value: np.ndarray, shape: tuple) -> np.ndarray:
    """A copy of ``value`` in ``shape`` where the two differ only by axes of size 1 (an
    nn.Linear read as a 1x1 conv, a gamma of (C,) read as (C, 1, 1)); otherwise as it is, for
    the shape check to report."""
    unit_free = [n for n in value.shape if n != 1] == [n for n in shape if n != 1]
    if value.ndim != len(shape) and unit_free:
        return value.reshape(shape).copy()
    return value.copy()


def _parameter_holder(module, path: str):
    """An object whose ``gamma`` is the parameter at ``path`` (``features.1.0.layer_scale``)."""
    import types

    try:
        return types.SimpleNamespace(gamma=module.get_parameter(path))
    except AttributeError:
        return None


def write_torch(model, plan, tensors: Tensors) -> None:
    """Write neutral tensors into a torch model built from the spec; every shape is checked first."""
    import torch

    modules = dict(model.named_modules())
    writes = []
    for layer in _weighted(plan):
        given = tensors.get(layer.name, {})
        expected = {p.name: tuple(p.shape) for p in layer.params}
        missing = sorted(set(expected) - set(given))
        if missing:
            raise OriginalWeightError(
                f"layer '{layer.name}': the original model has no {', '.join(missing)}"
            )
        extra = sorted(set(given) - set(expected))
        if extra:
            raise OriginalWeightError(
                f"layer '{layer.name}': the original model has {', '.join(extra)}, the spec does not"
            )
        slots = {"separable_conv": SEPARABLE_SLOTS, "layer_scale": LAYER_SCALE_SLOTS}.get(
            layer.family, TORCH_SLOTS
        )
        for tensor, shape in expected.items():
            value = np.array(given[tensor])  # a writable copy
            if layer.family in ("prelu", "layer_scale") and value.size == int(np.prod(shape)):
                value = value.reshape(shape)  # PReLU's slopes, LayerScale's gamma (C) or (C, 1, 1)
            if tuple(value.shape) != shape:
                raise OriginalWeightError(
                    f"layer '{layer.name}': tensor '{tensor}' of the original has shape {tuple(value.shape)}, "
                    f"the spec says {shape}"
                )
            suffix, attribute = slots[tensor]
            target = getattr(modules[layer.name + suffix], attribute)
            writes.append((target, value))
    with torch.no_grad():
        for target, value in writes:
            # (np.ascontiguousarray makes a 0-d value, Normalization's count, 1-d)
            contiguous = np.ascontiguousarray(value).reshape(value.shape)
            target.copy_(torch.from_numpy(contiguous).to(dtype=target.dtype))


def transfer_from_original(src, dst, plan) -> bool:
    """The ``transfer_weights`` hook: copy an original model's weights; False if ``src`` is not one."""
    if original_kind(src, plan) is None:
        return False
    copy_original(src, dst, plan)
    return True


def copy_original(src, dst, plan) -> None:
    """Copy the weights of ``src``, the model ``plan`` was imported from, into ``dst`` (built from it).

    Each weighted layer is read where its ``source`` (or name) points; what else ``src`` holds
    (GoogLeNet's training-only auxiliary heads) is not part of the spec and is left alone.
    """
    tensors = original_weights(src, plan)
    dst_kind = _kind(dst)
    if dst_kind == "torch":
        write_torch(dst, plan, tensors)
        return
    if dst_kind == "keras":
        from cnnspec.targets.build import build
        from cnnspec.weights.transfer import transfer_weights

        carrier = build(plan, "torch")
        write_torch(carrier, plan, tensors)
        transfer_weights(carrier, dst, plan)
        return
    raise CnnspecError(
        f"the destination model is neither a torch.nn.Module nor a keras.Model (got {type(dst).__name__})"
    )
