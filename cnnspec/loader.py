"""Read a spec from a file, a string or a dict, safely, and remember where every value was.

YAML (and JSON, which the YAML parser also reads) is *composed* into nodes with
PyYAML's safe machinery, then turned into plain Python values here, so that:

* only the standard YAML scalar tags are accepted -- nothing can construct an object;
* aliases are counted while expanding, so a "billion laughs" file is refused quickly
  and in bounded memory;
* duplicate mapping keys are an error instead of silently losing the first value;
* every value's line and column is known, so validation errors point into the file.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from .errors import Problem, SpecError, format_path
from .spec import FORMAT_VERSION, ModelSpec, layer_types

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 200_000
MAX_DEPTH = 64

# A framework's word for a cnnspec field, and what to write instead.
FIELD_HINTS = {
    "out_channels": "filters",
    "in_channels": None,
    "out_features": "units",
    "in_features": None,
    "strides": "stride",
    "kernel": "kernel_size",
    "kernel_shape": "kernel_size",
    "pool": "pool_size",
    "dilation_rate": "dilation",
    "use_bias": "bias",
    "eps": "epsilon",
    "p": "rate",
    "pads": "padding",
    "scale": "scale_factor",
    "size": "scale_factor",
    "interpolation": "mode",
    "num_parameters": "per_channel",
    "alpha": "negative_slope",
    "approximate": "approximate",
    "data_format": None,
    "input_shape": None,
}

TYPE_HINTS = {
    "conv": "conv2d", "convolution": "conv2d", "convolution2d": "conv2d",
    "conv2dtranspose": "conv_transpose2d", "convtranspose2d": "conv_transpose2d",
    "conv1dtranspose": "conv_transpose1d", "convtranspose1d": "conv_transpose1d",
    "conv3dtranspose": "conv_transpose3d", "convtranspose3d": "conv_transpose3d",
    "deconv2d": "conv_transpose2d",
    "maxpooling2d": "max_pool2d", "maxpool2d": "max_pool2d", "maxpooling1d": "max_pool1d", "maxpool1d": "max_pool1d",
    "maxpooling3d": "max_pool3d", "maxpool3d": "max_pool3d",
    "averagepooling2d": "avg_pool2d", "avgpool2d": "avg_pool2d", "averagepooling1d": "avg_pool1d",
    "avgpool1d": "avg_pool1d", "averagepooling3d": "avg_pool3d", "avgpool3d": "avg_pool3d",
    "globalaveragepooling2d": "global_avg_pool", "adaptiveavgpool2d": "global_avg_pool",
    "globalmaxpooling2d": "global_max_pool", "adaptivemaxpool2d": "global_max_pool",
    "batchnormalization": "batch_norm", "batchnorm2d": "batch_norm", "batchnorm1d": "batch_norm",
    "batchnorm3d": "batch_norm", "batchnorm": "batch_norm",
    "linear": "dense", "fc": "dense", "fully_connected": "dense",
    "dropout2d": "spatial_dropout", "spatialdropout2d": "spatial_dropout", "spatialdropout1d": "spatial_dropout",
    "dropout1d": "spatial_dropout", "dropout3d": "spatial_dropout", "spatialdropout3d": "spatial_dropout",
    "depthwiseconv2d": "depthwise_conv2d", "separableconv2d": "separable_conv2d",
    "upsampling2d": "upsample", "upsampling1d": "upsample", "upsampling3d": "upsample", "interpolate": "upsample",
    "zeropadding2d": "zero_pad2d", "zeropad2d": "zero_pad2d", "zeropadding1d": "zero_pad1d",
    "zeropadding3d": "zero_pad3d", "leakyrelu": "leaky_relu", "hardswish": "hard_swish",
    "hardsigmoid": "hard_sigmoid", "swish": "silu", "concatenate": "concat", "cat": "concat", "sum": "add",
}


class SourceMap:
    """Where each value of a loaded document sits: field path -> (line, column), 1-based."""

    def __init__(self, file: str | None):
        self.file = file
        self._positions: dict[tuple, tuple[int, int]] = {}
        self._key_positions: dict[tuple, tuple[int, int]] = {}

    def record(self, path: tuple, node, key_node=None) -> None:
        self._positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if key_node is not None:
            self._key_positions[path] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)

    def locate(self, path) -> tuple[int, int] | None:
        """The position of ``path``, or of its nearest recorded ancestor."""
        path = tuple(path)
        while True:
            if path in self._positions:
                return self._positions[path]
            if not path:
                return None
            path = path[:-1]

    def locate_key(self, path) -> tuple[int, int] | None:
        """The position of a mapping key (for unknown-field errors), else the value's."""
        return self._key_positions.get(tuple(path)) or self.locate(path)


def _problem(message: str, file: str | None, hint: str | None = None, line=None, column=None) -> SpecError:
    return SpecError(Problem(message, hint=hint, file=file, line=line, column=column))


def _read_text(path: Path) -> str:
    shown = str(path)
    if not path.exists():
        raise _problem("no such file", shown, hint="check the path; specs are .yaml, .yml or .json files")
    if path.is_dir():
        raise _problem("is a directory, not a spec file", shown)
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise _problem(f"file is {size:,} bytes; specs are limited to {MAX_FILE_BYTES:,} bytes", shown)
    data = path.read_bytes()
    if b"\x00" in data:
        raise _problem("looks like a binary file (it contains NUL bytes), not a YAML/JSON spec", shown)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _problem(f"not UTF-8 text (byte {exc.start} cannot be decoded)", shown) from None


def _compose(text: str, file: str | None):
    import yaml

    if len(text) > MAX_FILE_BYTES:
        raise _problem(f"spec text is {len(text):,} characters; the limit is {MAX_FILE_BYTES:,}", file)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"not valid YAML/JSON: {exc.problem or exc.context}"
        if mark is not None:
            raise _problem(message, file, line=mark.line + 1, column=mark.column + 1) from None
        raise _problem(message, file) from None
    except yaml.YAMLError as exc:
        raise _problem(f"not valid YAML/JSON: {exc}", file) from None
    finally:
        loader.dispose()
    return node


class _NodeConverter:
    """Turns composed YAML nodes into Python values, with bounds and a source map."""

    def __init__(self, file: str | None, source: SourceMap):
        import yaml

        self._yaml = yaml
        self._constructor = yaml.SafeLoader("")  # a scalar constructor with the safe tag set
        self.file = file
        self.source = source
        self.count = 0

    def fail(self, node, message: str, hint: str | None = None):
        raise _problem(message, self.file, hint=hint, line=node.start_mark.line + 1, column=node.start_mark.column + 1)

    def convert(self, node, path: tuple = (), depth: int = 0, key_node=None) -> Any:
        yaml = self._yaml
        self.count += 1
        if self.count > MAX_NODES:
            self.fail(node, f"document expands to more than {MAX_NODES:,} values (alias bomb?); refused")
        if depth > MAX_DEPTH:
            self.fail(node, f"nesting deeper than {MAX_DEPTH} levels; refused")
        self.source.record(path, node, key_node)
        if isinstance(node, yaml.ScalarNode):
            if not node.tag.startswith("tag:yaml.org,2002:"):
                self.fail(node, f"YAML tag '{node.tag}' is not allowed; specs hold plain values only")
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                self.fail(node, f"cannot read this value: {getattr(exc, 'problem', exc)}")
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                self.fail(node, f"YAML tag '{node.tag}' is not allowed; specs hold plain values only")
            return [self.convert(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                self.fail(node, f"YAML tag '{node.tag}' is not allowed; specs hold plain values only")
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    self.fail(key_node, "mapping keys must be plain strings")
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.fail(key_node, "YAML merge keys ('<<') are not supported in specs")
                key = self.convert(key_node, path + ("<key>",), depth + 1)
                if not isinstance(key, str):
                    self.fail(key_node, f"mapping key {key!r} must be a string")
                if key in result:
                    self.fail(key_node, f"duplicate key '{key}' (YAML would silently keep only the last one)")
                result[key] = self.convert(value_node, path + (key,), depth + 1, key_node=key_node)
            return result
        self.fail(node, "unsupported YAML node")  # pragma: no cover


def parse_text(text: str, file: str | None = None) -> tuple[Any, SourceMap]:
    """Parse YAML or JSON text into plain values and a :class:`SourceMap`.

    Raises:
        SpecError: the text is not YAML/JSON, is empty, or breaks a safety bound.
    """
    source = SourceMap(file)
    node = _compose(text, file)
    if node is None:
        raise _problem("the spec is empty", file, hint="a spec starts with 'cnnspec: 1'; see examples/")
    data = _NodeConverter(file, source).convert(node)
    return data, source


def load_spec(source: "str | os.PathLike[str] | Mapping[str, Any] | ModelSpec") -> ModelSpec:
    """Load and validate a spec.

    Args:
        source: a path to a ``.yaml``/``.yml``/``.json`` file, YAML/JSON text (anything
            containing a newline or starting with ``{``), a dict, or a ``ModelSpec``.

    Returns:
        The validated :class:`~cnnspec.spec.ModelSpec` (shapes are checked by
        :func:`cnnspec.resolve`).

    Raises:
        SpecError: with file, line, column, field path and a hint for every problem.
    """
    if isinstance(source, ModelSpec):
        return source
    file: str | None = None
    source_map: SourceMap | None = None
    if isinstance(source, Mapping):
        data: Any = dict(source)
    else:
        text_like = isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{"))
        if text_like:
            data, source_map = parse_text(source, None)
        else:
            path = Path(source)
            file = str(source)
            data, source_map = parse_text(_read_text(path), file)
    return validate_data(data, file=file, source_map=source_map)


def validate_data(data: Any, file: str | None = None, source_map: SourceMap | None = None) -> ModelSpec:
    """Validate already-parsed data as a spec (see :func:`load_spec`)."""
    source_map = source_map or SourceMap(file)
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise _problem(
            f"a spec must be a mapping (cnnspec:, input:, layers:), not a {kind}",
            file,
            hint="start the file with 'cnnspec: 1'",
            **_pos(source_map, ()),
        )
    _check_version(data, file, source_map)
    try:
        spec = ModelSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_translate(exc, data, file, source_map)) from None
    object.__setattr__(spec, "_source", source_map)
    return spec


def _pos(source_map: SourceMap, path) -> dict:
    position = source_map.locate(path)
    return {"line": position[0], "column": position[1]} if position else {}


def _check_version(data: dict, file: str | None, source_map: SourceMap) -> None:
    if "cnnspec" not in data:
        raise _problem(
            "missing the format version 'cnnspec'",
            file,
            hint=f"add 'cnnspec: {FORMAT_VERSION}' as the first line",
            **_pos(source_map, ()),
        )
    version = data["cnnspec"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise SpecError(
            Problem(f"format version must be an integer, got {version!r}", ("cnnspec",), f"write 'cnnspec: {FORMAT_VERSION}'", file, **_pos(source_map, ("cnnspec",)))
        )
    if version > FORMAT_VERSION:
        raise SpecError(
            Problem(
                f"format version {version} is newer than this cnnspec understands (it reads version {FORMAT_VERSION})",
                ("cnnspec",),
                "upgrade cnnspec, or write the spec in version 1",
                file,
                **_pos(source_map, ("cnnspec",)),
            )
        )
    if version < 1:
        raise SpecError(Problem(f"unknown format version {version}", ("cnnspec",), f"write 'cnnspec: {FORMAT_VERSION}'", file, **_pos(source_map, ("cnnspec",))))


def _is_branch_label(item: Any) -> bool:
    """pydantic's names for union branches inside ``loc`` ('constrained-int', 'list[...]', ...)."""
    return isinstance(item, str) and (
        "[" in item or "-" in item or item in ("int", "str", "bool", "float", "list", "dict", "none")
    )


def _real_path(loc: tuple, data: Any) -> tuple:
    """Drop the discriminator tags and branch labels pydantic inserts into ``loc``."""
    real: list = []
    node = data
    for item in loc:
        if isinstance(node, dict) and item in node:
            real.append(item)
            node = node[item]
        elif isinstance(node, dict) and isinstance(item, str) and item == node.get("type"):
            continue  # the discriminator tag: layers.0.conv2d.filters
        elif isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node):
            real.append(item)
            node = node[item]
        elif _is_branch_label(item):
            continue
        else:
            real.append(item)
            node = None
    return tuple(real)


def _allowed_fields(data: Any, path: tuple) -> list[str]:
    """Field names allowed at ``path``'s parent mapping (for 'did you mean')."""
    from .spec import InputSpec

    parent = path[:-1]
    if parent == ():
        return list(ModelSpec.model_fields)
    if parent == ("input",):
        return list(InputSpec.model_fields)
    if len(parent) == 2 and parent[0] == "layers":
        layer_type = _layer_type_at(data, parent[1])
        model = _model_for_type(layer_type)
        if model is not None:
            return list(model.model_fields)
    return []


def _layer_type_at(data: Any, index: Any) -> str | None:
    try:
        return data["layers"][index].get("type")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None


def _model_for_type(layer_type: str | None):
    from .spec import Layer

    for model in Layer.__origin__.__args__:  # type: ignore[attr-defined]
        if layer_type in model.model_fields["type"].annotation.__args__:
            return model
    return None


def suggest_type(name: str) -> str | None:
    """The closest known layer type for a misspelt or framework-spelt one."""
    key = name.lower().replace(" ", "")
    if key in layer_types():
        return key
    if key in TYPE_HINTS:
        return TYPE_HINTS[key]
    snake = "".join(("_" + c.lower()) if c.isupper() else c for c in name).lstrip("_")
    if snake in layer_types():
        return snake
    match = difflib.get_close_matches(key, layer_types(), n=1, cutoff=0.6)
    return match[0] if match else None


def _field_hint(field: str, allowed: list[str]) -> str | None:
    if field in FIELD_HINTS:
        replacement = FIELD_HINTS[field]
        if replacement is None:
            if field in ("in_channels", "in_features"):
                return f"'{field}' is inferred from the previous layer's shape; remove it"
            if field == "data_format":
                return "cnnspec specs are layout-free; the torch model is channels-first and the keras model channels-last"
            return f"'{field}' is not a cnnspec field; remove it"
        if replacement in allowed:
            return f"cnnspec calls this '{replacement}' (framework spelling '{field}')"
    match = difflib.get_close_matches(field, allowed, n=1, cutoff=0.6)
    if match:
        return f"did you mean '{match[0]}'?"
    if allowed:
        return "allowed fields: " + ", ".join(allowed)
    return None


def _describe_input(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _translate(exc: ValidationError, data: Any, file: str | None, source_map: SourceMap) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple] = set()
    errors = exc.errors(include_url=False)
    # A union field fails once per branch; keep the most specific message per path.
    by_path: dict[tuple, list[dict]] = {}
    for error in errors:
        by_path.setdefault(_real_path(error["loc"], data), []).append(error)
    for path, group in by_path.items():
        if path in seen:
            continue
        # A union whose list branch failed deeper (kernel_size[1]) explains itself better there.
        if any(other != path and other[: len(path)] == path for other in by_path) and all(
            e["type"] not in ("extra_forbidden", "missing") for e in group
        ):
            continue
        seen.add(path)
        problems.append(_problem_for(path, group, data, file, source_map))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    return problems


def _problem_for(path: tuple, group: list[dict], data: Any, file: str | None, source_map: SourceMap) -> Problem:
    error = group[0]
    kind = error["type"]
    hint = None
    position = source_map.locate(path)
    if kind == "extra_forbidden":
        field = str(path[-1])
        allowed = _allowed_fields(data, path)
        message = f"unknown field '{field}'"
        if len(path) >= 2 and path[0] == "layers":
            layer_type = _layer_type_at(data, path[1])
            if layer_type:
                message += f" for a {layer_type} layer"
        hint = _field_hint(field, allowed)
        position = source_map.locate_key(path)
    elif kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag")
        suggestion = suggest_type(str(tag)) if tag is not None else None
        message = f"unknown layer type '{tag}'"
        hint = f"did you mean '{suggestion}'?" if suggestion else "known types: " + ", ".join(layer_types())
        path = path + ("type",) if path and path[-1] != "type" else path
        position = source_map.locate(path)
    elif kind == "union_tag_not_found":
        message = "a layer needs a 'type'"
        hint = "e.g. 'type: conv2d'; known types: " + ", ".join(layer_types())
    elif kind == "missing":
        message = f"missing required field '{path[-1]}'"
        if len(path) >= 2 and path[0] == "layers":
            layer_type = _layer_type_at(data, path[1])
            if layer_type:
                message += f" for a {layer_type} layer"
        position = source_map.locate(path[:-1])
    elif kind in ("literal_error",) and path == ("cnnspec",):
        message = f"unknown format version {error.get('input')!r}"
        hint = f"write 'cnnspec: {FORMAT_VERSION}'"
    else:
        message = _merge_union_messages(path, group, data)
        hint = _value_hint(path, data)
    return Problem(message, path, hint, file, *(position or (None, None)))


def _merge_union_messages(path: tuple, group: list[dict], data: Any) -> str:
    value = group[0].get("input")
    field = str(path[-1]) if path else "value"
    if field in ("padding",):
        return f"invalid padding {_describe_input(value)}: expected 'valid', 'same', an int >= 0, one int per spatial dim, or one [before, after] pair per spatial dim"
    if field in ("kernel_size", "stride", "dilation", "pool_size", "scale_factor", "output_padding"):
        minimum = 0 if field == "output_padding" else 1
        return f"invalid {field} {_describe_input(value)}: expected an int >= {minimum} or a list of 1-3 such ints (one per spatial dim)"
    if field == "activation":
        allowed = "relu, relu6, sigmoid, tanh, softmax, silu, gelu, hard_swish, hard_sigmoid, linear"
        return f"unknown activation {_describe_input(value)}: expected one of {allowed} (use a separate layer for leaky_relu, elu, prelu)"
    messages = []
    for error in group:
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "value_error":
            return message
        if message not in messages:
            messages.append(message)
    text = "; ".join(messages[:3])
    if "input" in group[0]:
        text += f" (got {_describe_input(value)})"
    return text


def _value_hint(path: tuple, data: Any) -> str | None:
    if not path:
        return None
    field = str(path[-1])
    if field == "padding":
        return "'same' means SAME_UPPER (extra pixel at the end); a number pads both sides equally"
    if field == "name" or (len(path) >= 2 and path[-2] == "inputs"):
        return "names are Python identifiers: letters, digits and '_', not starting with a digit"
    return None


def source_map_of(spec: ModelSpec) -> SourceMap | None:
    """The source map a spec was loaded with (None for specs built from dicts)."""
    return getattr(spec, "_source", None)


def to_json_text(data: Any) -> str:
    """Stable JSON text (used for schemas and reports)."""
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


__all__ = ["load_spec", "parse_text", "validate_data", "SourceMap", "suggest_type", "format_path"]
