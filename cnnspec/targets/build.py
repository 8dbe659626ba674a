"""Source -> live model.  The generated source is the only code path to a model.

``cnnspec build`` writes :func:`emit_source`'s text; :func:`build` compiles that very
text into a fresh module and instantiates the model from it, so the model the user
takes home is exactly the model that is tested and verified.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from cnnspec.errors import BackendUnavailable, CnnspecError
from cnnspec.targets.naming import class_name, function_name

TARGETS = ("torch", "keras")

_BACKEND_MODULES = {"torch": "cnnspec.targets.torch.emit", "keras": "cnnspec.targets.keras.emit"}
_BACKEND_REQUIREMENTS = {"torch": "torch", "keras": "keras (with tensorflow)"}


def emitter(target: str):
    """The emitter module of ``target`` (``emit_torch`` or ``emit_keras``)."""
    if target not in TARGETS:
        raise CnnspecError(f"unknown target '{target}': expected one of {', '.join(TARGETS)}")
    return importlib.import_module(_BACKEND_MODULES[target])


def emit_source(spec, target: str) -> str:
    """Generate the stand-alone Python source of the ``target`` model for ``spec``.

    Args:
        spec: a ModelSpec, a Plan, or anything :func:`cnnspec.load_spec` accepts.
        target: ``"torch"`` or ``"keras"``.

    Returns:
        Python source text that imports only its framework.
    """
    from cnnspec.engine.plan import Plan, resolve

    plan = spec if isinstance(spec, Plan) else resolve(spec)
    return emitter(target).emit_source(plan)


def load_source(source: str, target: str, model_name: str) -> types.ModuleType:
    """Compile generated source into a fresh module object (not registered in sys.modules)."""
    _require(target)
    module = types.ModuleType(f"cnnspec_generated_{target}_{model_name}")
    module.__file__ = f"<cnnspec-{target}:{model_name}>"
    code = compile(source, module.__file__, "exec")
    exec(code, module.__dict__)  # noqa: S102 - the source is generated from validated values only
    return module


def instantiate(module: types.ModuleType, target: str, model_name: str) -> Any:
    """Create the model object defined by a generated module."""
    if target == "torch":
        model = getattr(module, class_name(model_name))()
        model.eval()
        return model
    return getattr(module, function_name(model_name))()


def build(spec, target: str, *, return_source: bool = False):
    """Build the in-memory ``target`` model of ``spec`` from its generated source.

    Args:
        spec: a ModelSpec, a Plan, or anything :func:`cnnspec.load_spec` accepts.
        target: ``"torch"`` (an ``nn.Module`` in eval mode, NCHW input) or ``"keras"``
            (a functional ``keras.Model``, NHWC input).
        return_source: also return the source text the model was built from.

    Returns:
        The model, or ``(model, source)`` when ``return_source`` is true.
    """
    from cnnspec.engine.plan import Plan, resolve

    plan = spec if isinstance(spec, Plan) else resolve(spec)
    source = emitter(target).emit_source(plan)
    module = load_source(source, target, plan.name)
    model = instantiate(module, target, plan.name)
    return (model, source) if return_source else model


def _require(target: str) -> None:
    name = "torch" if target == "torch" else "keras"
    if name in sys.modules:
        return
    try:
        if target == "keras":
            import os

            os.environ.setdefault("KERAS_BACKEND", "tensorflow")
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        importlib.import_module(name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"the {target} target needs {_BACKEND_REQUIREMENTS[target]}, which is not installed ({exc}); "
            f"install it with: pip install 'cnnspec[{target}]'"
        ) from None
