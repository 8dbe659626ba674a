"""cnnspec: one spec, an equivalent PyTorch (NCHW) and Keras (NHWC) model, and proof that they agree.

The core (``load_spec``, ``resolve``, ``explain``, the JSON schema) imports neither torch nor
tensorflow; the backends are imported lazily, only by the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cnnspec.engine.plan import LayerPlan, Plan, resolve
from cnnspec.errors import CnnspecError, Problem, SpecError
from cnnspec.load.loader import load_spec
from cnnspec.spec.models import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "CnnspecError",
    "Problem",
    "SpecError",
    "ModelSpec",
    "Plan",
    "LayerPlan",
    "load_spec",
    "resolve",
    "explain",
    "build",
    "emit_source",
    "transfer_weights",
    "verify",
    "from_keras",
    "from_torch",
    "from_onnx",
    "__version__",
]

# name -> (module, attribute): imported on first use, so that `import cnnspec` stays framework-free
# and a command loads only the parts it runs.
_LAZY = {
    "build": ("cnnspec.targets.build", "build"),
    "emit_source": ("cnnspec.targets.build", "emit_source"),
    "explain": ("cnnspec.teach.explain", "explain"),
    "transfer_weights": ("cnnspec.weights.transfer", "transfer_weights"),
    "verify": ("cnnspec.verifier.run", "verify"),
    "VerifyReport": ("cnnspec.verifier.report", "VerifyReport"),
    "from_keras": ("cnnspec.importers.keras", "from_keras"),
    "from_torch": ("cnnspec.importers.torch", "from_torch"),
    "from_onnx": ("cnnspec.importers.onnx", "from_onnx"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module_name), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnspec' has no attribute '{name}'")


if TYPE_CHECKING:  # pragma: no cover
    from cnnspec.importers.keras import from_keras
    from cnnspec.importers.onnx import from_onnx
    from cnnspec.importers.torch import from_torch
    from cnnspec.targets.build import build, emit_source
    from cnnspec.teach.explain import explain
    from cnnspec.verifier.run import verify
    from cnnspec.weights.transfer import transfer_weights
