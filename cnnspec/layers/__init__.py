"""Every layer type cnnspec knows, one definition module per type or family.

Importing this package imports every definition module in it (the catalog order below
first, then any other module, by name) and checks the catalog is complete.  See
``docs/ARCHITECTURE.md`` ("Adding a layer type") and :mod:`cnnspec.layers.registry`.
"""

from __future__ import annotations

import importlib
import pkgutil

from cnnspec.layers.registry import (
    REGISTRY,
    Example,
    LayerDefinition,
    RegistrationError,
    Registry,
    WeightSlot,
    example,
    register,
)

__all__ = [
    "REGISTRY",
    "Example",
    "LayerDefinition",
    "RegistrationError",
    "Registry",
    "WeightSlot",
    "example",
    "register",
]

# The order of the catalog (and of the spec's JSON Schema union); modules not listed follow, by name.
CATALOG_ORDER = (
    "conv",
    "conv_transpose",
    "depthwise",
    "pool",
    "global_pool",
    "batch_norm",
    "dropout",
    "flatten",
    "dense",
    "activation",
    "upsample",
    "zero_pad",
    "merge",
)


def _definition_modules() -> list[str]:
    found = sorted(
        info.name
        for info in pkgutil.iter_modules(__path__)
        if info.name != "registry" and not info.name.startswith("_")
    )
    unlisted = [name for name in found if name not in CATALOG_ORDER]
    return [name for name in CATALOG_ORDER if name in found] + unlisted


for _module in _definition_modules():
    importlib.import_module(f"{__name__}.{_module}")

REGISTRY.check_complete()
