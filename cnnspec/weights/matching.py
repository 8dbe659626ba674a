"""Which part of a user's model is which spec layer: names, a ``name_map``, or order and type.

A model generated from a spec names every part like the spec layer (torch attribute
``model.<name>``, Keras layer ``<name>``).  A hand-written port often does not:
``nn.Sequential`` ports have ``features.0``, torchvision-style models ``layer1.0.conv1``,
Keras applications ``block_1_expand`` or ``mobilenetv2_1.00_224``.  The match of each spec layer
is found, in this order:

1. ``name_map``: ``{spec layer: torch module path (dots allowed) or Keras layer name}``, or
   ``{"torch": {...}, "keras": {...}}`` to give one map per framework;
2. the spec layer's own name;
3. order and type: the spec layers with weights that are still unmatched, in spec order, are
   paired with the model's still unmatched modules/layers with weights, in the model's order,
   when both lists have the same kinds in the same order (conv, dense, batch norm, ...).
   Otherwise the match is ambiguous and :class:`AmbiguousMatch` lists the candidates.

Parameter-free layers (pooling, activations, flatten) are matched by name or ``name_map`` only:
they are often not modules at all (``F.relu`` in ``forward``).

Neither torch nor keras is imported by this module at import time.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnspec.errors import CnnspecError
from cnnspec.weights.transfer import WeightMismatch

FRAMEWORKS = ("torch", "keras")


class AmbiguousMatch(WeightMismatch):
    """The spec layers cannot be matched to the model's parts without a ``name_map``."""


class NameMapError(CnnspecError):
    """A ``name_map`` that names an unknown spec layer or a part the model does not have."""


@dataclass
class MatchRow:
    """One spec layer (or one part of it) and where it lives in a model."""

    spec_layer: str
    key: str  # the spec name of the part: the layer, or <layer>_depthwise / <layer>_pointwise
    target: str  # torch module path or keras layer name
    how: str  # "name", "name_map", "source" or "order"
    kind: str

    def to_dict(self) -> dict:
        return {
            "spec_layer": self.spec_layer,
            "part": self.key,
            "target": self.target,
            "how": self.how,
            "kind": self.kind,
        }


@dataclass
class Matching:
    """Spec parts matched to one model's modules (torch) or layers (keras)."""

    framework: str
    rows: list[MatchRow] = field(default_factory=list)
    objects: dict[str, Any] = field(default_factory=dict)  # part key -> module / layer

    def target_of(self, key: str) -> str | None:
        """The model's name for a spec part, or None when it is not matched."""
        for row in self.rows:
            if row.key == key:
                return row.target
        return None

    def by_target(self) -> dict[str, str]:
        """Spec part -> model path, for every matched part."""
        return {row.key: row.target for row in self.rows}


# --------------------------------------------------------------------------------------
# name_map input
# --------------------------------------------------------------------------------------


def load_name_map(path: str | Path) -> dict:
    """Read a name map from a JSON or YAML file (``{spec layer: target}`` or per framework)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise NameMapError(f"{path}: cannot read the name map: {error.strerror or error}") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise NameMapError(
                f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}"
            ) from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
            raise NameMapError(
                f"{where}: not valid YAML: {getattr(error, 'problem', None) or error}"
            ) from None
    try:
        return normalize_name_map(data)
    except NameMapError as error:
        raise NameMapError(f"{path}: {error}") from None


def normalize_name_map(name_map: Mapping | None) -> dict[str, dict[str, str]]:
    """``{"torch": {...}, "keras": {...}, "any": {...}}`` from either accepted form.

    A flat map (``{spec layer: target}``) goes to ``any``: it applies to whichever model has
    the target.
    """
    if name_map is None:
        return {"torch": {}, "keras": {}, "any": {}}
    if not isinstance(name_map, Mapping):
        raise NameMapError(
            f"a name map is a mapping of spec layer -> model name, not a {type(name_map).__name__}"
        )
    per_framework = (
        bool(name_map)
        and set(name_map) <= {*FRAMEWORKS, "any"}
        and all(isinstance(value, Mapping) for value in name_map.values())
    )
    result: dict[str, dict[str, str]] = {"torch": {}, "keras": {}, "any": {}}
    sections = name_map.items() if per_framework else [("any", name_map)]
    for section, entries in sections:
        for spec_layer, target in entries.items():
            if not isinstance(spec_layer, str) or not isinstance(target, str) or not target:
                raise NameMapError(
                    f"name map entry {spec_layer!r}: {target!r}: both must be non-empty names (text)"
                )
            result[section][spec_layer] = target
    return result


# --------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------

# The spec families with weights and the kind of model part each one needs, per framework.
# Torch depthwise convolutions are Conv modules with groups; a separable conv is two of them.
_TORCH_PARTS = {
    "conv": [("", "conv")],
    "depthwise_conv": [("", "conv")],
    "conv_transpose": [("", "conv_transpose")],
    "separable_conv": [("_depthwise", "conv"), ("_pointwise", "conv")],
    "dense": [("", "dense")],
    "batch_norm": [("", "batch_norm")],
    "prelu": [("", "prelu")],
}
_KERAS_PARTS = {
    "conv": [("", "conv")],
    "depthwise_conv": [("", "depthwise_conv")],
    "conv_transpose": [("", "conv_transpose")],
    "separable_conv": [("", "separable_conv")],
    "dense": [("", "dense")],
    "batch_norm": [("", "batch_norm")],
    "prelu": [("", "prelu")],
}


def _torch_kind(module) -> str | None:
    from torch import nn

    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return "conv_transpose"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "dense"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batch_norm"
    if isinstance(module, nn.PReLU):
        return "prelu"
    if any(True for _ in module.parameters(recurse=False)):
        return type(
            module
        ).__name__  # weights of a kind the spec cannot have: never matched by order
    return None


def _keras_kind(layer) -> str | None:
    import keras

    layers = keras.layers
    for kind, classes in (
        ("separable_conv", ("SeparableConv1D", "SeparableConv2D")),
        ("depthwise_conv", ("DepthwiseConv1D", "DepthwiseConv2D")),
        ("conv_transpose", ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")),
        ("conv", ("Conv1D", "Conv2D", "Conv3D")),
        ("dense", ("Dense",)),
        ("batch_norm", ("BatchNormalization",)),
        ("prelu", ("PReLU",)),
    ):
        if isinstance(
            layer, tuple(getattr(layers, name) for name in classes if hasattr(layers, name))
        ):
            return kind
    if getattr(layer, "weights", None) and not isinstance(layer, keras.Model):
        return type(layer).__name__
    return None


def torch_parts(model) -> dict[str, Any]:
    """Every sub-module of a torch model by its dotted path (the model itself excluded)."""
    return {name: module for name, module in model.named_modules() if name}


def keras_parts(model) -> dict[str, Any]:
    """Every layer of a Keras model by name, nested models' layers included (outer names win)."""
    parts: dict[str, Any] = {}

    def visit(container) -> None:
        for layer in getattr(container, "layers", []):
            parts.setdefault(layer.name, layer)
        for layer in getattr(container, "layers", []):
            if hasattr(layer, "layers") and layer is not container:
                visit(layer)

    visit(model)
    return parts


# --------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------


def match_torch(model, plan, name_map: Mapping | None = None, *, strict: bool = True) -> Matching:
    """Match the spec's layers to a torch model's sub-modules.

    Args:
        model: the ``nn.Module``.
        plan: the resolved spec.
        name_map: spec layer -> module path (dots allowed), flat or per framework.
        strict: raise :class:`AmbiguousMatch` when weighted spec layers stay unmatched;
            otherwise leave them out.
    """
    parts = torch_parts(model)
    kinds = {path: _torch_kind(module) for path, module in parts.items()}
    # Only leaf-level holders of weights are matched by order (a Sequential holding a conv is not one).
    weighted = [path for path, kind in kinds.items() if kind is not None]
    return _match("torch", plan, parts, kinds, weighted, _TORCH_PARTS, name_map, strict)


def match_keras(model, plan, name_map: Mapping | None = None, *, strict: bool = True) -> Matching:
    """Match the spec's layers to a Keras model's layers (names with dots are fine)."""
    parts = keras_parts(model)
    kinds = {name: _keras_kind(layer) for name, layer in parts.items()}
    weighted = [name for name, kind in kinds.items() if kind is not None]
    return _match("keras", plan, parts, kinds, weighted, _KERAS_PARTS, name_map, strict)


def _spec_parts(plan, layout: dict) -> list[tuple[str, str, str]]:
    """(spec layer, part key, kind) for every layer, in spec order; parameter-free layers have kind ''."""
    result = []
    for layer in plan.layers:
        for suffix, kind in layout.get(layer.family, [("", "")]):
            result.append((layer.name, layer.name + suffix, kind))
    return result


def _match(
    framework: str,
    plan,
    parts: dict,
    kinds: dict,
    weighted: list[str],
    layout: dict,
    name_map: Mapping | None,
    strict: bool,
) -> Matching:
    maps = normalize_name_map(name_map)
    explicit = {**maps["any"], **maps[framework]}
    spec_parts = _spec_parts(plan, layout)
    sources = {layer.name: layer.spec.source for layer in plan.layers if layer.spec.source}
    known_keys = {key for _, key, _ in spec_parts} | {layer.name for layer in plan.layers}
    for spec_layer, mapped_to in maps[framework].items():
        _check_map_entry(framework, spec_layer, mapped_to, known_keys, parts, strict_target=True)
    for spec_layer, mapped_to in maps["any"].items():
        _check_map_entry(framework, spec_layer, mapped_to, known_keys, parts, strict_target=False)

    matching = Matching(framework)
    used: set[str] = set()
    unmatched: list[tuple[str, str, str]] = []
    for spec_layer, key, kind in spec_parts:
        target: str | None = None
        how = ""
        mapped = explicit.get(key)
        if mapped is None and key != spec_layer and spec_layer in explicit:
            # A separable conv mapped as a whole: <target>_depthwise / <target>_pointwise, or the Sequential.
            mapped = explicit[spec_layer] + key[len(spec_layer) :]
        if mapped is not None and mapped in parts:
            target, how = mapped, "name_map"
        elif key in parts and (not kind or framework == "keras" or kinds.get(key) is not None):
            # A part of that name is the one (its shapes are checked by the transfer); only a torch container
            # without weights of its own (nn.Sequential named 'fc1') leaves the layer to the order-and-type
            # matching.  A Keras layer of that name without weights keeps them in a helper layer (transfer).
            target, how = key, "name"
        elif kind and spec_layer in sources:
            # An imported layer renamed by a rewrite: its weights are in the part it came from.
            origin = sources[spec_layer] + key[len(spec_layer) :]
            if kinds.get(origin) is not None:
                target, how = origin, "source"
        if target is None:
            if kind:
                unmatched.append((spec_layer, key, kind))
            continue
        used.add(target)
        matching.rows.append(
            MatchRow(spec_layer, key, target, how, kind or _kind_name(kinds.get(target)))
        )
        matching.objects[key] = parts[target]

    if unmatched:
        free = [
            path
            for path in weighted
            if path not in used and not _inside_used(path, used, framework)
        ]
        wanted = [kind for _, _, kind in unmatched]
        have = [kinds[path] for path in free]
        if wanted == have:
            _check_sizes(framework, plan, unmatched, free, parts)
            for (spec_layer, key, kind), path in zip(unmatched, free):
                matching.rows.append(MatchRow(spec_layer, key, path, "order", kind))
                matching.objects[key] = parts[path]
        elif strict:
            raise AmbiguousMatch(_ambiguity_message(framework, unmatched, free, kinds))
    order = {key: position for position, (_, key, _) in enumerate(spec_parts)}
    matching.rows.sort(key=lambda row: order[row.key])
    return matching


def _spec_part_size(plan, spec_layer: str, key: str) -> int:
    """Elements of a spec part's tensors (BatchNorm statistics included)."""
    params = plan.layer(spec_layer).params
    if key.endswith("_depthwise") and key != spec_layer:
        params = [p for p in params if p.name == "depthwise_kernel"]
    elif key.endswith("_pointwise") and key != spec_layer:
        params = [p for p in params if p.name != "depthwise_kernel"]
    return sum(p.size for p in params)


def _model_part_size(framework: str, part) -> int:
    if framework == "keras":
        return sum(int(math.prod(variable.shape)) for variable in part.weights)
    size = sum(parameter.numel() for parameter in part.parameters(recurse=False))
    for statistic in ("running_mean", "running_var"):
        buffer = getattr(part, statistic, None)
        size += int(buffer.numel()) if buffer is not None else 0
    return size


def _check_sizes(framework: str, plan, unmatched, free: list[str], parts: dict) -> None:
    """Order and type pair the parts; their sizes must agree too, or the pairing is a guess."""
    for (spec_layer, key, kind), path in zip(unmatched, free):
        wanted, found = (
            _spec_part_size(plan, spec_layer, key),
            _model_part_size(framework, parts[path]),
        )
        if wanted != found:
            raise AmbiguousMatch(
                f"cannot match the spec's layers to the {framework} model by name; by order and type "
                f"'{key}' ({kind}, {wanted:,} weights) pairs with '{path}' ({found:,} weights): the sizes differ, "
                "so the order of the model's parts is not the spec's order. Give the match with a name map "
                f'(CLI --name-map FILE, Python name_map=), e.g. {{"{key}": "<{framework} part>"}}'
            )


def check_spec_layers(name_map: Mapping | None, plan) -> None:
    """Every key of a name map must be a spec layer (or a separable conv's ``_depthwise`` / ``_pointwise`` part)."""
    maps = normalize_name_map(name_map)
    known = {key for _, key, _ in _spec_parts(plan, _TORCH_PARTS)} | {
        layer.name for layer in plan.layers
    }
    for section in maps.values():
        for spec_layer in section:
            _check_map_entry("", spec_layer, "", known, {}, strict_target=False)


def _kind_name(kind: str | None) -> str:
    return kind or "no weights"


def _inside_used(path: str, used: set[str], framework: str) -> bool:
    """A torch sub-module inside a module already matched (e.g. the conv of a mapped Sequential)."""
    return framework == "torch" and any(path.startswith(parent + ".") for parent in used)


def _check_map_entry(
    framework: str,
    spec_layer: str,
    target: str,
    known_keys: set[str],
    parts: dict,
    strict_target: bool,
) -> None:
    if spec_layer not in known_keys:
        close = difflib.get_close_matches(spec_layer, sorted(known_keys), n=3)
        suggestion = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise NameMapError(f"name map: '{spec_layer}' is not a layer of the spec{suggestion}")
    if strict_target and target not in parts:
        raise NameMapError(_missing_target(framework, spec_layer, target, parts))


def _missing_target(framework: str, spec_layer: str, target: str, parts: dict) -> str:
    what = "sub-module" if framework == "torch" else "layer"
    close = difflib.get_close_matches(target, list(parts), n=4, cutoff=0.5)
    hint = f" (close: {', '.join(close)})" if close else ""
    return f"name map: '{spec_layer}' -> '{target}': the {framework} model has no {what} '{target}'{hint}"


def check_any_map_targets(name_map: Mapping | None, models: dict[str, dict]) -> None:
    """Every entry of a flat map must name a part of at least one of the models (parts by framework)."""
    maps = normalize_name_map(name_map)
    for spec_layer, target in maps["any"].items():
        if not any(target in parts for parts in models.values()):
            names = " or ".join(models)
            raise NameMapError(
                f"name map: '{spec_layer}' -> '{target}': the {names} model has no part "
                f"named '{target}'"
            )


def _ambiguity_message(framework: str, unmatched, free: list[str], kinds: dict) -> str:
    what = "sub-modules" if framework == "torch" else "layers"
    lines = [
        f"cannot match the spec's layers to the {framework} model's {what} by name, nor by order and type:"
    ]
    lines.append(
        "  spec layers left:  " + ", ".join(f"{key} ({kind})" for _, key, kind in unmatched)
    )
    lines.append(
        f"  model {what} left: " + (", ".join(f"{path} ({kinds[path]})" for path in free) or "none")
    )
    for spec_layer, key, kind in unmatched[:5]:
        candidates = [path for path in free if kinds[path] == kind]
        lines.append(f"  candidates for '{key}': " + (", ".join(candidates) or "none"))
    taken: set[str] = set()
    examples = []
    for _, key, kind in unmatched[:2]:
        target = next((path for path in free if kinds[path] == kind and path not in taken), "...")
        taken.add(target)
        examples.append(f'"{key}": "{target}"')
    example = ", ".join(examples)
    lines.append(
        f"give the match with a name map (CLI --name-map FILE, Python name_map=), e.g. {{{example}}}"
    )
    return "\n".join(lines)


def transfer_lookups(
    torch_model, keras_model, plan, name_map: Mapping | None = None
) -> tuple[dict, dict]:
    """The torch modules and Keras layers by name, with every matched spec part added under its spec name.

    What :func:`cnnspec.weights.transfer.transfer_weights` looks spec layers up in: a model built
    from the spec is found by its own names; a hand-written one through the matching.

    Raises:
        AmbiguousMatch: a spec layer with weights has no unambiguous match.
        NameMapError: the name map names an unknown spec layer or model part.
    """
    torch_modules = dict(torch_model.named_modules())
    from cnnspec.weights.transfer import keras_layers_by_name

    keras_layers = keras_layers_by_name(keras_model)
    torch_match = match_torch(torch_model, plan, name_map)
    keras_match = match_keras(keras_model, plan, name_map)
    check_any_map_targets(
        name_map, {"torch": torch_parts(torch_model), "keras": keras_parts(keras_model)}
    )
    for matching, lookup in ((torch_match, torch_modules), (keras_match, keras_layers)):
        for row in matching.rows:
            if row.how != "name":
                lookup[row.key] = matching.objects[row.key]
    return torch_modules, keras_layers
