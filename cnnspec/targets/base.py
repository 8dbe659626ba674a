"""The backend interface: what cnnspec needs from each framework it emits for.

A :class:`Target` turns a :class:`~cnnspec.engine.plan.Plan` into stand-alone source, names
the helper code that source may include, builds a live model from the source, reads and
writes weights in the plan's neutral layout (channels-first, PyTorch-like shapes, one array
per :class:`~cnnspec.engine.plan.ParamTensor`) and exports a model to ONNX.  Its framework is
imported only when a method needs it (:meth:`Target.require`), so importing a target costs
nothing -- in the spirit of einops' backends.

``torch`` and ``keras`` are the two implementations today (``targets/torch/target.py``,
``targets/keras/target.py``); an ONNX target and the importers are further ones.
:func:`get_target` finds a target by name; :data:`TARGET_CLASSES` lists where they live.
"""

from __future__ import annotations

import importlib
import sys
import types
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from cnnspec.errors import BackendUnavailable, CnnspecError

if TYPE_CHECKING:  # pragma: no cover
    from cnnspec.engine.plan import Plan

#: name -> "module:Class" of each target (imported on first use).
TARGET_CLASSES = {
    "torch": "cnnspec.targets.torch.target:TorchTarget",
    "keras": "cnnspec.targets.keras.target:KerasTarget",
}

_INSTANCES: dict[str, Target] = {}


class Target(ABC):
    """One framework cnnspec emits for.

    Class attributes:
        name: the target's name (``"torch"``).
        framework: the module :meth:`require` imports (``"torch"``, ``"keras"``).
        requirement: what to install, for the error message (``"torch"``).
        channels_last: the layout of the model's input and feature maps.
    """

    name: ClassVar[str]
    framework: ClassVar[str]
    requirement: ClassVar[str]
    channels_last: ClassVar[bool]

    # -- the framework, imported lazily ---------------------------------------------
    def prepare_environment(self) -> None:
        """Set what the framework reads at import time (environment variables); default nothing."""

    def require(self) -> types.ModuleType:
        """Import the framework (once) or raise :class:`BackendUnavailable` saying what to install."""
        if self.framework in sys.modules:
            return sys.modules[self.framework]
        self.prepare_environment()
        try:
            return importlib.import_module(self.framework)
        except ImportError as exc:
            raise BackendUnavailable(
                f"the {self.name} target needs {self.requirement}, which is not installed ({exc}); "
                f"install it with: pip install 'cnnspec[{self.name}]'"
            ) from None

    def is_model(self, obj: Any) -> bool:
        """Whether ``obj`` is a model of this framework (never imports it)."""
        return False

    # -- source ---------------------------------------------------------------------
    @abstractmethod
    def emit_source(self, plan: Plan) -> str:
        """Stand-alone source of the model: imports only its framework (numpy allowed), never cnnspec."""

    @abstractmethod
    def helper_source(self, names: Iterable[str]) -> str:
        """The source text of the named helper classes/functions, as the generated module includes it."""

    def load_source(self, source: str, model_name: str) -> types.ModuleType:
        """Compile generated source into a fresh module object (not registered in sys.modules)."""
        self.require()
        module = types.ModuleType(f"cnnspec_generated_{self.name}_{model_name}")
        module.__file__ = f"<cnnspec-{self.name}:{model_name}>"
        code = compile(source, module.__file__, "exec")
        exec(code, module.__dict__)  # noqa: S102 - the source is generated from validated values only
        return module

    @abstractmethod
    def instantiate(self, module: types.ModuleType, model_name: str) -> Any:
        """The model object a generated module defines (inference mode)."""

    def build(self, plan: Plan) -> tuple[Any, str]:
        """The live model of ``plan`` and the source it was built from."""
        source = self.emit_source(plan)
        return self.instantiate(self.load_source(source, plan.name), plan.name), source

    # -- weights --------------------------------------------------------------------
    @abstractmethod
    def read_weights(self, model: Any, plan: Plan) -> dict[tuple[str, str], Any]:
        """Every weight of ``model`` as numpy, in the plan's neutral layout, by (layer, tensor)."""

    @abstractmethod
    def write_weights(self, model: Any, plan: Plan, values: dict[tuple[str, str], Any]) -> None:
        """Set ``model``'s weights from neutral-layout arrays (as :meth:`read_weights` returns them)."""

    # -- ONNX -----------------------------------------------------------------------
    @abstractmethod
    def export_onnx(
        self, model: Any, plan: Plan, example: Any, path: Any, *, opset: int = 18
    ) -> Any:
        """Export ``model`` to ONNX with one output per observable spec layer.

        ``example`` is a channels-first float32 batch; the target transposes it if needed.
        Returns a :class:`cnnspec.verifier.onnx_export.ExportedGraph`.
        """


def get_target(name: str) -> Target:
    """The target called ``name`` (``"torch"``, ``"keras"``); its framework is not imported."""
    target = _INSTANCES.get(name)
    if target is not None:
        return target
    if name not in TARGET_CLASSES:
        raise CnnspecError(f"unknown target '{name}': expected one of {', '.join(TARGET_CLASSES)}")
    module_name, class_name = TARGET_CLASSES[name].split(":")
    target = getattr(importlib.import_module(module_name), class_name)()
    _INSTANCES[name] = target
    return target


def target_of(model: Any, role: str = "given") -> Target:
    """The target whose framework made ``model``."""
    for name in TARGET_CLASSES:
        target = get_target(name)
        if target.is_model(model):
            return target
    kinds = " nor a ".join(("torch.nn.Module", "keras.Model"))
    raise CnnspecError(f"the {role} model is neither a {kinds} (got {type(model).__name__})")
