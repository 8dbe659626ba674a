"""What every importer shares: the spec being assembled, layer naming, located refusals.

An importer walks the original model's graph and calls :meth:`SpecBuilder.add` once per spec
layer, in topological order.  The builder picks valid unique names, records the original's
identifier in ``source`` when the name alone does not say it, keeps the list of exact
rewrites it made, and finally validates the spec and resolves it (so an importer can never
return a spec that does not build).
"""

from __future__ import annotations

import functools
import keyword
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnspec.errors import CnnspecError, SpecError

MAX_NAME_LENGTH = 64


class UnsupportedModel(CnnspecError):
    """The original model uses something no cnnspec layer type expresses exactly.

    The message names the op, where it is in the original (Keras layer name, torch module path
    or graph node with its source line, ONNX node name) and what is supported instead.
    """


def refuse(
    framework: str, where: str, what: str, suggestion: str | None = None
) -> UnsupportedModel:
    """A located refusal: ``<framework> <where>: <what>`` plus an optional ``hint:`` line."""
    text = f"{framework} {where}: {what}"
    if suggestion:
        text += f"\n    hint: {suggestion}"
    return UnsupportedModel(text)


def _reserved(name: str) -> bool:
    import builtins

    from cnnspec.spec.models import RESERVED_NAMES

    return (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or name.startswith("__")
        or name in RESERVED_NAMES
        or hasattr(builtins, name)
        or name in _helper_names()
    )


@functools.cache
def _helper_names() -> frozenset[str]:
    """The classes and functions generated modules may define (torch.onnx names a node 'Clip',
    'Resize' or 'Padding' like the Keras helper it would collide with)."""
    from cnnspec.targets.helper_text import definition_names

    targets = Path(__file__).resolve().parent.parent / "targets"
    return frozenset(
        name
        for framework in ("keras", "torch")
        for name in definition_names(str(targets / framework / "helpers.py"))
    )


def spec_name(original: str) -> str:
    """A valid spec layer name for an original identifier: ``layer1.0.conv1`` -> ``layer1_0_conv1``."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", original).strip("_") or "layer"
    name = re.sub(r"__+", "_", name)
    if name[0].isdigit():
        name = "l" + name
    if _reserved(name):
        name += "_layer"
    return name[:MAX_NAME_LENGTH]


def _model_name(original: str | None) -> str:
    """A valid model name (a plain identifier; unlike layer names it may be 'model' or 'input')."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", original or "")
    if not name or name.startswith("__") or keyword.iskeyword(name):
        return "model"
    return ("m" + name if name[0].isdigit() else name)[:MAX_NAME_LENGTH]


@dataclass
class Rewrite:
    """An exact rewrite the importer made, as it appears in the report."""

    where: str
    original: str
    became: str

    def to_dict(self) -> dict[str, str]:
        return {"where": self.where, "original": self.original, "became": self.became}


def flatten_orders_differ(shape) -> bool:
    """Whether flattening a channels-last ``shape`` (no batch) channels first or channels last
    gives different vectors: more than one channel and more than one position."""
    if not shape or len(shape) < 2 or None in shape:
        return False
    return shape[-1] > 1 and math.prod(shape[:-1]) > 1


def feature_wise_types() -> frozenset[str]:
    """The spec layer types that act on each feature of a flat vector alone, without weights:
    a vector passes through them in the order it came in (activations, dropout, identity, scale)."""
    from cnnspec.layers import REGISTRY

    families = {"activation", "dropout", "identity", "scale"}
    return frozenset(
        kind
        for definition in REGISTRY.definitions()
        if definition.family in families
        for kind in definition.types
    )


@dataclass
class SpecBuilder:
    """Collects spec layers (as dicts) while an importer walks a graph."""

    framework: str
    layers: list[dict[str, Any]] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)

    def unique_name(self, original: str) -> str:
        """A valid name not used yet, derived from ``original``."""
        base = spec_name(original)
        name, counter = base, 1
        while name in self._names:
            suffix = f"_{counter}"
            name = base[: MAX_NAME_LENGTH - len(suffix)] + suffix
            counter += 1
        return name

    def add(
        self,
        original: str,
        layer_type: str,
        inputs: list[str],
        *,
        source: str | None = None,
        **fields: Any,
    ) -> str:
        """Append a layer; returns its spec name.

        Args:
            original: the original's identifier (Keras layer name, torch path, ONNX node name).
            layer_type: the spec ``type``.
            inputs: spec names (or ``input``) the layer reads.
            source: provenance to record even when the name equals ``original`` (a rewrite).
            fields: the layer's fields; pass only those that differ from the defaults.
        """
        name = self.unique_name(original)
        self._names.add(name)
        layer: dict[str, Any] = {"type": layer_type, "name": name}
        previous = self.layers[-1]["name"] if self.layers else "input"
        if list(inputs) != [previous] or layer_type in ("add", "concat"):
            layer["inputs"] = list(inputs)
        layer.update(fields)
        if source is not None or name != original:
            layer["source"] = source or original
        self.layers.append(layer)
        return name

    def drop_last(self) -> dict[str, Any]:
        """Remove the last layer (a rewrite takes it into the one it reads into); frees its name."""
        layer = self.layers.pop()
        self._names.discard(layer["name"])
        return layer

    def inputs_of(self, layer: dict[str, Any]) -> list[str]:
        """The names a layer dict reads: its ``inputs``, else the layer before it (or ``input``)."""
        if "inputs" in layer:
            return list(layer["inputs"])
        index = self.layers.index(layer)
        return [self.layers[index - 1]["name"] if index else "input"]

    def rename_last(self, original: str) -> str:
        """Give the last layer a new name derived from ``original``, keeping its ``source``; frees
        its old name (for the layer that takes over its place in the original)."""
        layer = self.layers[-1]
        self._names.discard(layer["name"])
        layer.setdefault("source", layer["name"])
        layer["name"] = self.unique_name(original)
        self._names.add(layer["name"])
        return layer["name"]

    def rewrite(self, where: str, original: str, became: str) -> None:
        """Record an exact rewrite (listed in the convert report)."""
        self.rewrites.append(Rewrite(where, original, became))

    def keep_flatten_order(self, flattens: dict[str, bool]) -> None:
        """In a channels-last model (Keras), a flatten whose vector no dense layer takes in -- it
        is the model's output, or an unflatten reads it back, through layers that keep each
        feature where it is -- is ``order: channels_last``: the converted model then gives the
        original's vector, and the unflatten gets its map back.  ``flattens`` maps each flatten of
        a map to whether the two orders differ there (more than one channel and one position);
        where they do not, an output keeps the default order."""
        index_of = {layer["name"]: index for index, layer in enumerate(self.layers)}
        readers: dict[str, list[dict]] = {}
        for layer in self.layers:
            for source in self.inputs_of(layer):
                readers.setdefault(source, []).append(layer)
        feature_wise = feature_wise_types()
        for name, differ in flattens.items():
            layer = self.layers[index_of[name]]
            if "+" in layer.get("source", ""):  # a Permute to channels first made it PyTorch's
                continue
            current = name
            while True:
                after = readers.get(current, [])
                if not after:
                    reaches = differ  # the model's output
                    break
                if len(after) != 1:
                    reaches = False
                    break
                if after[0]["type"] == "unflatten":
                    reaches = True
                    break
                if after[0]["type"] not in feature_wise:
                    reaches = False
                    break
                current = after[0]["name"]
            if reaches:
                layer["order"] = "channels_last"

    def finish(
        self,
        model_name: str,
        channels: int,
        size: list[int | None],
        reference_size: list[int] | None = None,
    ):
        """Validate and resolve the spec; returns the ModelSpec.

        ``size`` entries are None where the model takes any size (then ``reference_size``, when
        known, is the size the spec's numbers are shown at).  A layer type that this cnnspec's
        catalog does not have yet is refused with its name.
        """
        from cnnspec.engine.plan import resolve
        from cnnspec.spec.models import ModelSpec, layer_types

        known = set(layer_types())
        for layer in self.layers:
            if layer["type"] not in known:
                where = layer.get("source", layer["name"])
                raise refuse(
                    self.framework,
                    f"'{where}'",
                    f"needs the layer type '{layer['type']}', which this cnnspec's catalog does not have",
                    "supported types: " + ", ".join(sorted(known)),
                )
        document = {
            "cnnspec": 1,
            "name": _model_name(model_name),
            "input": {
                "channels": int(channels),
                "size": [None if s is None else int(s) for s in size],
                **({"reference_size": [int(s) for s in reference_size]} if reference_size else {}),
            },
            "layers": self.layers,
        }
        try:
            spec = ModelSpec.model_validate(document)
            resolve(spec)
        except SpecError as error:
            raise UnsupportedModel(
                f"the imported {self.framework} model does not make a valid spec:\n{error.render()}"
            ) from None
        except ValueError as error:  # pydantic ValidationError
            raise UnsupportedModel(
                f"the imported {self.framework} model does not make a valid spec: {error}"
            ) from None
        return spec


@dataclass
class ImportResult:
    """A spec plus what the importer learned on the way (rewrites, provenance)."""

    spec: Any
    rewrites: list[Rewrite] = field(default_factory=list)
    framework: str = ""
    details: dict[str, Any] = field(
        default_factory=dict
    )  # importer-specific: the loaded model, the traced graph


def inline_activations() -> frozenset[str]:
    """The spec types an ``activation`` field may hold (parameter-free; ``linear`` is none)."""
    from typing import get_args

    from cnnspec.spec.fields import InlineActivation

    return frozenset(get_args(InlineActivation)) - {"linear"}


def activation_hosts() -> frozenset[str]:
    """The layer types with an ``activation`` field (convolutions, dense), from the registry."""
    from cnnspec.layers import REGISTRY

    return frozenset(
        t for d in REGISTRY.definitions() for t in d.types if "activation" in d.model.model_fields
    )


#: The spec's defaults of the fields importers write: a reader leaves them out, so an imported
#: spec reads like one written by hand.
_SPEC_DEFAULTS = {
    "stride": 1,
    "dilation": 1,
    "padding": "valid",
    "groups": 1,
    "bias": True,
    "activation": None,
    "depth_multiplier": 1,
    "keepdims": False,
    "ceil_mode": False,
    "count_include_pad": None,
}


def drop_defaults(**values) -> dict[str, Any]:
    """``values`` without the fields equal to the spec's default."""
    return {
        key: value
        for key, value in values.items()
        if key not in _SPEC_DEFAULTS or _SPEC_DEFAULTS[key] != value
    }


def pairs(values) -> list[list[int]]:
    """((1, 1), (0, 2)) or [[1, 1], [0, 2]] -> [[1, 1], [0, 2]] as plain ints."""
    return [[int(before), int(after)] for before, after in values]


def compact(values) -> int | list[int]:
    """One int when every dim has the same value (the spec's short form), else a list."""
    values = [int(values)] if isinstance(values, (int, float)) else [int(v) for v in values]
    return values[0] if len(set(values)) == 1 else values


def compact_padding(pads) -> int | list[int] | list[list[int]]:
    """Per-dim (before, after) pairs in the spec's shortest exact form."""
    pads = pairs(pads)
    if all(before == after for before, after in pads):
        return compact([before for before, _ in pads])
    return pads
