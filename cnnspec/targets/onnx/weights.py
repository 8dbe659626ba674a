"""Weights for the spec's ONNX graph, from a torch or Keras model or weight file.

The graph's weights are the plan's tensors in their channels-first layout (see
:mod:`cnnspec.targets.onnx.emit`): what each target's ``read_weights`` returns by (layer,
tensor).  A torch ``state_dict`` file maps onto them through the layer definitions' weight
slots (module and attribute of each tensor), without torch.

A torch weight file is read here without torch: it is a zip archive holding a pickle of the
``state_dict`` and one raw file per storage.  The pickle is read by an unpickler that knows
only the few names a plain ``state_dict`` of tensors uses and refuses every other one, so
no code from the file ever runs.
"""

from __future__ import annotations

import math
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from cnnspec.engine.plan import Plan
from cnnspec.errors import CnnspecError
from cnnspec.layers import REGISTRY
from cnnspec.weights.transfer import WeightMismatch, definition_slots

# Torch storage classes a state_dict of float tensors may use, by their dtype.
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def weight_names(plan: Plan) -> list[tuple[Any, Any]]:
    """(layer, ParamTensor) for every tensor of the plan, in plan order."""
    return [(layer, param) for layer in plan.layers for param in layer.params]


def _neutral(plan: Plan, values: dict[tuple[str, str], Any]) -> dict[str, np.ndarray]:
    """Neutral-layout arrays by (layer, tensor) -> the graph's weights by ``<layer>.<tensor>``, in the plan's shapes."""
    weights = {}
    for layer, param in weight_names(plan):
        value = values.get((layer.name, param.name))
        if value is None:
            continue  # a tensor the graph does not read (a Keras adapt count, say)
        value = np.asarray(value)
        if tuple(value.shape) != tuple(param.shape) and value.size == math.prod(param.shape):
            value = value.reshape(param.shape)  # slopes (C,) vs (C, 1, 1): the same values
        if tuple(value.shape) != tuple(param.shape):
            raise WeightMismatch(
                f"layer '{layer.name}': tensor '{param.name}' has shape {list(value.shape)}, "
                f"the spec says {list(param.shape)}"
            )
        weights[f"{layer.name}.{param.name}"] = np.ascontiguousarray(value, dtype=np.float32)
    return weights


def from_torch_state(
    plan: Plan, state: dict[str, np.ndarray], *, strict: bool = True
) -> dict[str, np.ndarray]:
    """The graph's weights from a torch ``state_dict`` (arrays by key), read through the layers' weight slots.

    Args:
        plan: the resolved spec.
        state: tensors by ``state_dict`` key (numpy arrays).
        strict: refuse float tensors that belong to no spec tensor (``num_batches_tracked`` is fine).

    Raises:
        WeightMismatch: a tensor is missing or has another shape than the spec's.
    """
    values = {}
    used = set()
    for layer in plan.layers:
        if not REGISTRY.definition(layer.type).weighted:
            continue
        for slot in definition_slots(layer, plan):
            key = f"{layer.name}{slot.torch_module}.{slot.torch_attr}"
            if key not in state:
                raise WeightMismatch(
                    f"layer '{layer.name}': tensor '{slot.tensor}': the torch weights have no '{key}'"
                )
            values[(layer.name, slot.tensor)] = state[key]
            used.add(key)
    if strict:
        extra = [
            key
            for key, value in state.items()
            if key not in used and np.issubdtype(np.asarray(value).dtype, np.floating)
        ]
        if extra:
            raise WeightMismatch(
                f"the torch weights hold tensors that belong to no spec layer: {', '.join(extra[:5])}"
            )
    return _neutral(plan, values)


def from_torch_model(plan: Plan, model) -> dict[str, np.ndarray]:
    """The graph's weights from a torch model whose sub-modules are named like the spec layers."""
    from cnnspec.targets.base import get_target

    return _neutral(plan, get_target("torch").read_weights(model, plan))


def from_keras_model(plan: Plan, model) -> dict[str, np.ndarray]:
    """The graph's weights from a Keras model with layers named like the spec layers (layouts converted)."""
    from cnnspec.targets.base import get_target

    return _neutral(plan, get_target("keras").read_weights(model, plan))


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a torch ``state_dict`` of tensors into numpy arrays, and nothing else."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self.archive = archive
        self.prefix = prefix
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda tensor, requires_grad, hooks, *rest: tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"a plain state_dict does not contain {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, count = pid
        if (
            kind != "storage"
            or storage_type not in _STORAGE_DTYPES
            or _STORAGE_DTYPES[storage_type] is None
        ):
            raise pickle.UnpicklingError(f"unsupported storage {storage_type!r}")
        if key not in self.storages:
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            self.storages[key] = np.frombuffer(
                raw, dtype=_STORAGE_DTYPES[storage_type], count=count
            )
        return self.storages[key]


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, *_rest) -> np.ndarray:
    itemsize = storage.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    ).copy()


def read_torch_weights(path: str | Path) -> dict[str, np.ndarray]:
    """A torch ``state_dict`` file (``torch.save`` zip format) as numpy arrays, without torch.

    Raises:
        CnnspecError: not a zip-format torch file, or it holds more than a dict of tensors.
    """
    path = Path(path)
    if sys.byteorder != "little":  # pragma: no cover - torch writes little-endian storages
        raise CnnspecError("reading torch weight files needs a little-endian machine")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise CnnspecError(f"{path}: not a torch weights file (no data.pkl in the archive)")
            prefix = pickles[0][: -len("/data.pkl")]
            with archive.open(pickles[0]) as handle:
                state = _StateDictUnpickler(handle, archive, prefix).load()
    except zipfile.BadZipFile:
        raise CnnspecError(
            f"{path}: not a torch weights file in the zip format of torch.save "
            "(re-save it with a recent torch)"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError) as error:
        raise CnnspecError(
            f"refusing to load {path}: not a plain torch state_dict of tensors ({error})"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise CnnspecError(f"{path} does not hold a state_dict (a dict of tensors)")
    return dict(state)


def weights_from_file(plan: Plan, path: str | Path) -> dict[str, np.ndarray]:
    """The graph's weights from a torch ``.pt``/``.pth`` file (read without torch) or a Keras ``.weights.h5``.

    A Keras file is loaded into the Keras model built from the spec, so it needs keras.
    """
    from cnnspec.weights.files import KERAS_WEIGHTS_SUFFIX, load_weights_file

    path = Path(path)
    if not path.is_file():
        raise CnnspecError(f"weights file not found: {path}")
    if path.name.endswith(KERAS_WEIGHTS_SUFFIX):
        from cnnspec.targets.build import build

        model = build(plan, "keras")
        load_weights_file(model, path, plan)
        return from_keras_model(plan, model)
    return from_torch_state(plan, read_torch_weights(path))
