"""The JSON Schema of the spec format, generated from the pydantic models.

``schemas/cnnspec.schema.json`` is this function's output, committed; a test fails
when it is stale.  Editors pick it up from a first line such as
``# yaml-language-server: $schema=../schemas/cnnspec.schema.json``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import create_model

from cnnspec.spec.models import Layer, ModelSpec


def json_schema() -> dict[str, Any]:
    """The spec's JSON Schema (draft 2020-12) as a dict."""
    # ModelSpec validates each layer by its own type (cnnspec.spec.models); what it accepts
    # is the discriminated union of the layer types, which is what an editor should see.
    layers = (list[Layer], ModelSpec.model_fields["layers"])  # type: ignore[valid-type]
    documented = create_model(
        ModelSpec.__name__, __base__=ModelSpec, __doc__=ModelSpec.__doc__, layers=layers
    )
    schema = documented.model_json_schema(mode="validation")
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
    return schema


def json_schema_text() -> str:
    """The schema as stable, pretty-printed JSON text (ends with a newline)."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
