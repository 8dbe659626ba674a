"""Source -> live model.  The generated source is the only code path to a model.

``cnnspec build`` writes :func:`emit_source`'s text; :func:`build` compiles that very
text into a fresh module and instantiates the model from it, so the model the user
takes home is exactly the model that is tested and verified.
"""

from __future__ import annotations

import types
from typing import Any

from cnnspec.targets.base import TARGET_CLASSES, Target, get_target
from cnnspec.targets.naming import class_name, function_name

__all__ = [
    "TARGETS",
    "build",
    "class_name",
    "emit_source",
    "emitter",
    "function_name",
    "instantiate",
    "load_source",
]

TARGETS = tuple(TARGET_CLASSES)


def emitter(target: str) -> Target:
    """The :class:`~cnnspec.targets.base.Target` called ``target`` (its framework is not imported)."""
    return get_target(target)


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
    return get_target(target).emit_source(plan)


def load_source(source: str, target: str, model_name: str) -> types.ModuleType:
    """Compile generated source into a fresh module object (not registered in sys.modules)."""
    return get_target(target).load_source(source, model_name)


def instantiate(module: types.ModuleType, target: str, model_name: str) -> Any:
    """Create the model object defined by a generated module."""
    return get_target(target).instantiate(module, model_name)


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

    backend = get_target(target)  # an unknown target is refused before the spec is resolved
    plan = spec if isinstance(spec, Plan) else resolve(spec)
    model, source = backend.build(plan)
    return (model, source) if return_source else model
