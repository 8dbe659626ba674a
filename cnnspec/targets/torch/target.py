"""The PyTorch target: channels-first ``nn.Module`` source, its weights and its ONNX export."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterable
from typing import Any

from cnnspec.targets.base import Target
from cnnspec.targets.naming import class_name


class TorchTarget(Target):
    """PyTorch (NCHW): one ``nn.Module`` class per model."""

    name = "torch"
    framework = "torch"
    requirement = "torch"
    channels_last = False

    def is_model(self, obj: Any) -> bool:
        if "torch" not in sys.modules:
            return False
        import torch

        return isinstance(obj, torch.nn.Module)

    def emit_source(self, plan: Any) -> str:
        from cnnspec.targets.torch.emit import emit_source

        return emit_source(plan)

    def helper_source(self, names: Iterable[str]) -> str:
        from cnnspec.targets.torch.emit import helper_source

        return helper_source(names)

    def instantiate(self, module: types.ModuleType, model_name: str) -> Any:
        model = getattr(module, class_name(model_name))()
        model.eval()
        return model

    def read_weights(self, model: Any, plan: Any) -> dict[tuple[str, str], Any]:
        from cnnspec.weights.transfer import bound_torch_tensors

        return {
            key: tensor.detach().cpu().numpy().copy()
            for key, tensor in bound_torch_tensors(model, plan).items()
        }

    def write_weights(self, model: Any, plan: Any, values: dict[tuple[str, str], Any]) -> None:
        import numpy as np
        import torch

        from cnnspec.weights.transfer import WeightMismatch, bound_torch_tensors

        tensors = bound_torch_tensors(model, plan)
        with torch.no_grad():
            for key, tensor in tensors.items():
                value = np.asarray(values[key])
                if tuple(value.shape) != tuple(tensor.shape):
                    raise WeightMismatch(
                        f"layer '{key[0]}': tensor '{key[1]}': {value.shape} does not fit {tuple(tensor.shape)}"
                    )
                tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(dtype=tensor.dtype))

    def export_onnx(
        self, model: Any, plan: Any, example: Any, path: Any, *, opset: int = 18
    ) -> Any:
        from cnnspec.verifier.onnx_export import export_torch

        return export_torch(
            model, [layer.name for layer in plan.layers], example, path, opset=opset
        )
