"""The Keras 3 target: channels-last functional-model source, its weights and its ONNX export."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterable
from typing import Any

from cnnspec.targets.base import Target
from cnnspec.targets.naming import function_name


class KerasTarget(Target):
    """Keras 3 on TensorFlow (NHWC): one ``build_<name>()`` function per model."""

    name = "keras"
    framework = "keras"
    requirement = "keras (with tensorflow)"
    channels_last = True

    def prepare_environment(self) -> None:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    def is_model(self, obj: Any) -> bool:
        if "keras" not in sys.modules:
            return False
        import keras

        return isinstance(obj, keras.Model)

    def emit_source(self, plan: Any) -> str:
        from cnnspec.targets.keras.emit import emit_source

        return emit_source(plan)

    def helper_source(self, names: Iterable[str]) -> str:
        from cnnspec.targets.keras.emit import helper_source

        return helper_source(names)

    def instantiate(self, module: types.ModuleType, model_name: str) -> Any:
        return getattr(module, function_name(model_name))()

    def read_weights(self, model: Any, plan: Any) -> dict[tuple[str, str], Any]:
        import keras
        import numpy as np

        from cnnspec.weights.transfer import bound_keras_variables

        values = {}
        for key, (variable, slot, expected) in bound_keras_variables(model, plan).items():
            value = slot.to_torch(np.array(keras.ops.convert_to_numpy(variable.value)))
            values[key] = value.reshape(expected) if slot.reshape else value
        return values

    def write_weights(self, model: Any, plan: Any, values: dict[tuple[str, str], Any]) -> None:
        import numpy as np

        from cnnspec.weights.transfer import WeightMismatch, bound_keras_variables

        for key, (variable, slot, _) in bound_keras_variables(model, plan).items():
            value = slot.to_keras(np.asarray(values[key]))
            if slot.reshape:
                value = value.reshape(tuple(variable.shape))
            if tuple(value.shape) != tuple(variable.shape):
                raise WeightMismatch(
                    f"layer '{key[0]}': tensor '{key[1]}': {value.shape} does not fit {tuple(variable.shape)}"
                )
            variable.assign(np.ascontiguousarray(value, dtype=variable.dtype))

    def export_onnx(
        self, model: Any, plan: Any, example: Any, path: Any, *, opset: int = 18
    ) -> Any:
        from cnnspec.engine.plan import channels_last
        from cnnspec.verifier.onnx_export import export_keras

        names = [layer.name for layer in plan.layers]
        return export_keras(model, names, channels_last(plan.input_shape), path, opset=opset)
