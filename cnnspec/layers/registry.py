"""The layer registry: one definition per layer type, and everything derived from it.

A layer type is a subclass of :class:`LayerDefinition` decorated with :func:`register`.
The definition holds the pydantic model users write, the planner (shapes, padding,
parameter counts), the PyTorch and Keras emissions, the weight slots and their layout
change, the divergence hint, the words users type for it and examples for the contract
test.  The spec union, the JSON Schema, the family map, the emitter tables and the list
of weighted layers are derived from the registry; nothing else lists layer types.

A definition that lacks a required part, a ``type`` no model declares, or a type
registered twice is refused when its module is imported (:class:`RegistrationError`).

Later work attaches further per-type hooks (an ONNX emission, teaching text) either as
methods of the definition or from its own module with :meth:`Registry.attach`;
:meth:`Registry.missing` lists the types a hook does not cover.

What the importers recognise is claimed the same way, from the definition's module, with
:meth:`Registry.reads`: the framework names (a Keras layer class, a torch module class or
function, an ONNX op type) and the reader that turns one into spec layers.  The importers
only walk graphs and look names up in :meth:`Registry.claims`; a name claimed twice is
refused when the second module is imported.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from cnnspec.errors import CnnspecError

if TYPE_CHECKING:  # pragma: no cover
    from cnnspec.engine.plan import LayerPlan, Plan, Shape
    from cnnspec.engine.sizes import Size
    from cnnspec.spec.fields import LayerBase
    from cnnspec.targets.keras.code import EmitContext
    from cnnspec.targets.torch.code import LayerCode

#: The hooks every definition must implement itself.
REQUIRED_METHODS = ("plan", "torch", "keras")

#: Optional per-type hooks later work fills in (as a method, or with ``Registry.attach``).
OPTIONAL_HOOKS = ("onnx", "explain")

#: What an importer looks up, and how the claimed names are spelled in each.
IMPORT_SOURCES = {
    "keras": "Keras layer class name (Conv2D; cnnspec's own helpers: PortableConv)",
    "keras_activation": "Keras activation name (activation='swish'; the reader returns the spec layer's type and fields)",
    "keras_op": "Keras operation class name (a raw op in a functional graph: x + y is Add)",
    "torch_module": "torch.nn.Module class name (Conv2d; cnnspec's own helpers: CountedAvgPool)",
    "torch_function": "dotted path of a function fx records (torch.nn.functional.relu, operator.add)",
    "torch_method": "tensor method name (x.view(...) is view)",
    "onnx": "ONNX op type (Conv)",
}


class RegistrationError(CnnspecError):
    """A layer definition is incomplete or contradicts another one (raised at import time)."""


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class WeightSlot:
    """One tensor of a layer: where it lives in each framework and how its layout changes.

    Attributes:
        tensor: the plan's neutral name (``kernel``, ``bias``, ``gamma``, ...); matches a
            :class:`~cnnspec.engine.plan.ParamTensor` of the layer.
        torch_attr: the attribute of the torch module (``weight``, ``running_mean``, ...).
        keras_names: the Keras variable names to look for, in order.
        torch_module: suffix of the torch attribute holding the module (``""`` for the
            layer's own module, ``"_pointwise"`` for ``<name>_pointwise``).
        to_keras / to_torch: numpy layout changes (torch -> keras and back).
        reshape: the value is reshaped to the destination's own shape after conversion
            (slopes stored (C,) in torch and (1, ..., C) in Keras).
        bias_forbidden: the torch module this slot reads must have no bias at all (the
            message says why), e.g. the depthwise half of a separable convolution.
    """

    tensor: str
    torch_attr: str
    keras_names: tuple[str, ...]
    torch_module: str = ""
    to_keras: Callable[[Any], Any] = _same
    to_torch: Callable[[Any], Any] = _same
    reshape: bool = False
    bias_forbidden: str = ""


@dataclass(frozen=True)
class Example:
    """A small model exercising one definition, for the contract test.

    The layers are spec layer dicts; the *last* one must be of the definition's type
    (merge layers read earlier ones).  ``size`` is the spatial input size; the contract
    tests also run the next size its layers take on every axis (:meth:`sizes`).
    """

    layers: tuple[dict[str, Any], ...]
    channels: int = 3
    size: tuple[int, ...] = (7, 7)

    def spec(self, size: tuple[int, ...] | None = None) -> dict[str, Any]:
        """The example as a spec document (at ``size`` if given)."""
        return {
            "cnnspec": 1,
            "name": "example",
            "input": {"channels": self.channels, "size": list(size or self.size)},
            "layers": [dict(layer) for layer in self.layers],
        }

    def sizes(self) -> list[tuple[int, ...]]:
        """``size`` and the next size the layers take: one larger (odd and even sizes), or
        larger by the multiple a layer needs (a pixel unshuffle by 2: two larger)."""
        from cnnspec.engine.plan import resolve

        plan = resolve(self.spec())
        step = math.lcm(
            *(REGISTRY.definition(layer.type).input_multiple(layer) for layer in plan.layers)
        )
        return [self.size, tuple(n + step for n in self.size)]


def example(*layers: dict[str, Any], channels: int = 3, size: tuple[int, ...] = (7, 7)) -> Example:
    """An :class:`Example` from spec layer dicts."""
    return Example(layers=tuple(layers), channels=channels, size=tuple(size))


class LayerDefinition:
    """One layer type (or a family of types that share everything).

    Class attributes:
        model: the pydantic model of the spec layer (its ``type`` is a ``Literal``).
        types: the types this definition handles; default: every literal of ``model.type``.
        family: a short family name (``conv``, ``pool``...), shown by ``explain`` and reports.
        arity: ``"one"`` (reads one input) or ``"many"`` (two or more: merges).
        words: user spellings (lower case, no spaces) -> type, for the loader's hints.
        examples: :class:`Example` models for the contract test (at least one per type).
        hint_text: what typically makes this layer differ between the frameworks.

    Methods to implement: :meth:`plan`, :meth:`torch`, :meth:`keras`; :meth:`weights`
    for layers with parameters; :meth:`flat_segments` and :meth:`hint` where the
    defaults do not fit.
    """

    model: ClassVar[type[LayerBase]]
    types: ClassVar[tuple[str, ...]] = ()
    family: ClassVar[str]
    arity: ClassVar[str] = "one"
    words: ClassVar[dict[str, str]] = {}
    examples: ClassVar[tuple[Example, ...]] = ()
    hint_text: ClassVar[str] = ""

    # -- required ---------------------------------------------------------------------
    def plan(
        self, ctx: Any, index: int, layer: Any, in_shapes: tuple[Shape, ...]
    ) -> dict[str, Any]:
        """The :class:`~cnnspec.engine.plan.LayerPlan` fields of this layer.

        ``ctx`` is the resolver (``fail``, ``per_dim``, ``sliding_window``...); the dict
        holds at least ``output_shape`` and ``param_formula``.
        """
        raise NotImplementedError

    def torch(self, layer: LayerPlan, inputs: list[str]) -> LayerCode:
        """The PyTorch modules and forward expression of this layer."""
        raise NotImplementedError

    def keras(self, layer: LayerPlan, ctx: EmitContext) -> list[str]:
        """The Keras functional-API lines of this layer."""
        raise NotImplementedError

    # -- defaults ---------------------------------------------------------------------
    def weights(self, layer: LayerPlan, flat_order: Any) -> list[WeightSlot]:
        """The layer's tensors in both frameworks; ``flat_order`` permutes per-feature vectors
        on flat inputs (Keras order from PyTorch's), or is None."""
        return []

    def flat_segments(
        self,
        ctx: Any,
        index: int,
        inputs: tuple[str, ...],
        in_shapes: tuple[Shape, ...],
        output_shape: Shape,
    ) -> tuple[Shape, ...]:
        """The pieces a flat output is made of (see ``LayerPlan.flat_segments``).

        Default: an element-wise layer keeps its input's layout.
        """
        return ctx.segments_of[inputs[0]]

    def output_sizes(
        self, layer: LayerPlan, in_sizes: tuple[tuple[Size, ...], ...]
    ) -> tuple[Size, ...]:
        """The output's spatial sizes as formulas of the model's input size.

        ``in_sizes`` holds each input's sizes.  Default: a flat output has none, and an output
        whose spatial shape equals an input's keeps that input's sizes (element-wise layers,
        merges, normalisations); a definition that changes sizes overrides this.
        """
        if len(layer.output_shape) == 1:
            return ()
        for shape, sizes in zip(layer.input_shapes, in_sizes):
            if tuple(shape[1:]) == tuple(layer.output_shape[1:]):
                return sizes
        raise NotImplementedError(
            f"{type(self).__qualname__} changes the spatial size of '{layer.name}' "
            f"({list(layer.input_shape[1:])} → {list(layer.output_shape[1:])}) but has no output_sizes rule"
        )

    def input_multiple(self, layer: LayerPlan) -> int:
        """The number every spatial size of the input must be a multiple of (1: any size)."""
        return 1

    def hint(self, layer: LayerPlan, border: str, plan: Plan | None) -> str:
        """The divergence hint shown when this layer is the first to differ."""
        return self.hint_text + border

    # -- derived ----------------------------------------------------------------------
    @property
    def weighted(self) -> bool:
        """Whether layers of this type carry weights (``weights`` is implemented)."""
        return type(self).weights is not LayerDefinition.weights


@dataclass(frozen=True)
class Claim:
    """One framework name an importer reads, and who reads it.

    Attributes:
        source: where the name is looked up (a key of :data:`IMPORT_SOURCES`).
        name: the class name, op type, method name or dotted function path.
        reader: turns one occurrence into spec layers; its arguments are the importer's
            (see the importer module's docstring).
        owner: the definition that claims the name (the reader lives in its module).
        produces: the types the reader can write (rewrites may write another definition's
            type: a Keras ``Dense`` on a feature map is a 1x1 convolution).
        absorbs_padding: the pad value a layer of this class takes into its own padding when
            cnnspec's generated ``<name>_pad`` helper feeds it (0.0 before a convolution or
            an average pool, -inf before a max pool), or None.
    """

    source: str
    name: str
    reader: Callable[..., Any]
    owner: LayerDefinition
    produces: tuple[str, ...]
    absorbs_padding: float | None = None


def _literal_types(model: type) -> tuple[str, ...]:
    info = getattr(model, "model_fields", {}).get("type")
    if info is None:
        return ()
    args = typing.get_args(info.annotation)
    return tuple(a for a in args if isinstance(a, str))


def _overrides(cls: type, method: str) -> bool:
    return getattr(cls, method, None) is not getattr(LayerDefinition, method)


@dataclass
class Registry:
    """Layer definitions by type, in registration (catalog) order."""

    _by_type: dict[str, LayerDefinition] = field(default_factory=dict)
    _definitions: list[LayerDefinition] = field(default_factory=list)
    _hooks: dict[str, dict[str, Callable[..., Any]]] = field(default_factory=dict)
    _claims: dict[str, dict[str, Claim]] = field(default_factory=dict)

    def register(self, cls: type[LayerDefinition]) -> type[LayerDefinition]:
        """Class decorator: check a definition and add it (raises :class:`RegistrationError`)."""
        where = f"layer definition {cls.__module__}.{cls.__qualname__}"
        if not (isinstance(cls, type) and issubclass(cls, LayerDefinition)):
            raise RegistrationError(f"{where}: @register takes a LayerDefinition subclass")
        model = getattr(cls, "model", None)
        if model is None:
            raise RegistrationError(f"{where}: no 'model' (the pydantic model users write)")
        declared = _literal_types(model)
        if not declared:
            raise RegistrationError(
                f"{where}: model {model.__name__} has no 'type: Literal[...]' field"
            )
        types = tuple(cls.types) or declared
        strays = [t for t in types if t not in declared]
        if strays:
            raise RegistrationError(
                f"{where}: types {strays} are not literals of {model.__name__}.type {list(declared)}"
            )
        if not getattr(cls, "family", ""):
            raise RegistrationError(f"{where}: no 'family'")
        if cls.arity not in ("one", "many"):
            raise RegistrationError(f"{where}: arity must be 'one' or 'many', not {cls.arity!r}")
        missing = [m for m in REQUIRED_METHODS if not _overrides(cls, m)]
        if missing:
            raise RegistrationError(
                f"{where}: missing {', '.join(missing)} (every layer type needs all of {REQUIRED_METHODS})"
            )
        if not cls.hint_text and not _overrides(cls, "hint"):
            raise RegistrationError(f"{where}: no divergence hint ('hint_text' or 'hint')")
        covered = {ex.layers[-1].get("type") for ex in cls.examples if ex.layers}
        uncovered = [t for t in types if t not in covered]
        if uncovered:
            raise RegistrationError(
                f"{where}: no example for {uncovered} (the contract test runs every type)"
            )
        taken = [t for t in types if t in self._by_type]
        if taken:
            other = self._by_type[taken[0]]
            raise RegistrationError(
                f"{where}: type {taken[0]!r} is already registered by {type(other).__qualname__}"
            )
        for word, target in cls.words.items():
            if target not in types:
                raise RegistrationError(
                    f"{where}: word {word!r} points at {target!r}, not one of its types {list(types)}"
                )
        definition = cls()
        definition.types = types  # type: ignore[misc]
        for layer_type in types:
            self._by_type[layer_type] = definition
        self._definitions.append(definition)
        return cls

    def attach(self, hook: str, *types: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: attach ``fn`` as hook ``hook`` of ``types`` (all registered types if none)."""

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            for layer_type in types or tuple(self._by_type):
                self.definition(layer_type)  # unknown types are refused
                self._hooks.setdefault(hook, {})[layer_type] = fn
            return fn

        return decorate

    def reads(
        self,
        source: str,
        *names: str,
        by: str,
        produces: tuple[str, ...] | None = None,
        absorbs_padding: float | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: the definition of type ``by`` claims ``names`` in ``source`` with ``fn``.

        Refused (:class:`RegistrationError`, nothing recorded) when the source is unknown, ``by``
        is not registered, the reader is not defined in ``by``'s own module, or a name is
        already claimed in that source.  ``produces`` defaults to the definition's types.
        """

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            where = f"import claim {source}:{', '.join(names)} by {getattr(fn, '__qualname__', fn)}"
            if source not in IMPORT_SOURCES:
                raise RegistrationError(
                    f"{where}: unknown source {source!r}; known: {', '.join(IMPORT_SOURCES)}"
                )
            owner = self._by_type.get(by)
            if owner is None:
                raise RegistrationError(f"{where}: {by!r} is not a registered layer type")
            home = type(owner).__module__
            if getattr(fn, "__module__", None) != home:
                raise RegistrationError(
                    f"{where}: the reader of a {by!r} claim belongs in {home}, not in {fn.__module__}"
                )
            if not names:
                raise RegistrationError(f"{where}: no names to claim")
            table = self._claims.setdefault(source, {})
            for name in names:
                other = table.get(name)
                if other is not None:
                    raise RegistrationError(
                        f"{where}: {source} name {name!r} is already claimed by "
                        f"{type(other.owner).__qualname__} ({type(other.owner).__module__})"
                    )
            if len(set(names)) != len(names):
                raise RegistrationError(f"{where}: a name is listed twice")
            for name in names:
                table[name] = Claim(
                    source,
                    name,
                    fn,
                    owner,
                    owner.types if produces is None else tuple(produces),
                    absorbs_padding,
                )
            return fn

        return decorate

    def claims(self, source: str) -> dict[str, Claim]:
        """Every name claimed in ``source`` (a key of :data:`IMPORT_SOURCES`) -> its claim."""
        if source not in IMPORT_SOURCES:
            raise CnnspecError(
                f"unknown import source {source!r}; known: {', '.join(IMPORT_SOURCES)}"
            )
        return dict(self._claims.get(source, {}))

    def hook(self, hook: str, layer_type: str) -> Callable[..., Any] | None:
        """Hook ``hook`` of ``layer_type``: attached with :meth:`attach`, else the definition's own method."""
        attached = self._hooks.get(hook, {}).get(layer_type)
        if attached is not None:
            return attached
        own = getattr(self.definition(layer_type), hook, None)
        return own if callable(own) else None

    def missing(self, hook: str) -> list[str]:
        """The registered types that have no ``hook``."""
        return [t for t in self._by_type if self.hook(hook, t) is None]

    # -- lookups ----------------------------------------------------------------------
    def definition(self, layer_type: str) -> LayerDefinition:
        """The definition of ``layer_type``."""
        try:
            return self._by_type[layer_type]
        except KeyError:
            raise CnnspecError(
                f"unknown layer type {layer_type!r}; known: {', '.join(self._by_type)}"
            ) from None

    def __contains__(self, layer_type: object) -> bool:
        return layer_type in self._by_type

    def definitions(self) -> list[LayerDefinition]:
        """Every definition, in catalog order."""
        return list(self._definitions)

    def types(self) -> list[str]:
        """Every registered layer type, in catalog order."""
        return list(self._by_type)

    def models(self) -> list[type]:
        """The pydantic models, each once, in catalog order."""
        seen: dict[type, None] = {}
        for definition in self._definitions:
            seen.setdefault(definition.model, None)
        return list(seen)

    def family_of(self, layer_type: str) -> str:
        """The family name of ``layer_type``."""
        return self.definition(layer_type).family

    def weighted_types(self) -> list[str]:
        """The types whose layers carry weights."""
        return [t for t, d in self._by_type.items() if d.weighted]

    def words(self) -> dict[str, str]:
        """Every user spelling -> layer type (framework class names, synonyms)."""
        merged: dict[str, str] = {}
        for definition in self._definitions:
            merged.update(definition.words)
        return merged

    def check_complete(self) -> None:
        """Every literal of every registered model is a registered type (no half-added model)."""
        for model in self.models():
            unhandled = [t for t in _literal_types(model) if t not in self._by_type]
            if unhandled:
                raise RegistrationError(
                    f"model {model.__name__} declares types {unhandled} that no definition registers"
                )
        for table in self._claims.values():
            for claim in table.values():
                strays = [t for t in claim.produces if t not in self._by_type]
                if strays:
                    raise RegistrationError(
                        f"import claim {claim.source}:{claim.name} produces unregistered types {strays}"
                    )


#: The catalog.
REGISTRY = Registry()

#: ``@register`` on a :class:`LayerDefinition` subclass adds it to the catalog.
register = REGISTRY.register
