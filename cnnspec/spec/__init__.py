"""The spec: pydantic models of a cnnspec file and the JSON Schema derived from them."""
