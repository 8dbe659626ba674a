"""Read a spec from a file, a string or a dict, safely, and remember where every value was.

YAML (and JSON) is first *streamed* as parser events (libyaml when available), so a
document that is too deep or holds too many values is refused before any tree is built;
then it is *composed* into nodes with PyYAML's safe machinery and turned into plain
Python values here, so that:

* only the standard YAML scalar tags are accepted -- nothing can construct an object;
* the expanded size of every aliased value is computed once per node before anything is
  expanded, so a "billion laughs" file is refused quickly and in bounded memory, and a
  recursive alias is refused too;
* duplicate mapping keys are an error instead of silently losing the first value;
* every value's line and column is known, so validation errors point into the file.

A ``.json`` file is read by the JSON parser (its syntax errors and number rules apply);
YAML only supplies the positions.  pydantic's validation errors are translated into
messages that say what was expected and what was found.
"""

from __future__ import annotations

import difflib
import json
import os
import typing
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from cnnspec.errors import Problem, SpecError, format_path
from cnnspec.layers import REGISTRY
from cnnspec.spec.models import FORMAT_VERSION, InlineActivation, ModelSpec, layer_types

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 100_000
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

# Framework spellings and synonyms of layer types: each layer definition lists the words users type for it.
TYPE_HINTS = REGISTRY.words()


class SourceMap:
    """Where each value of a loaded document sits: field path -> (line, column), 1-based."""

    def __init__(self, file: str | None):
        self.file = file
        self._positions: dict[tuple, tuple[int, int]] = {}
        self._key_positions: dict[tuple, tuple[int, int]] = {}

    def record(self, path: tuple, node, key_node=None) -> None:
        self._positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if key_node is not None:
            self._key_positions[path] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )

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


def _problem(
    message: str,
    file: str | None,
    hint: str | None = None,
    line=None,
    column=None,
    path: tuple = (),
) -> SpecError:
    return SpecError(
        Problem(message, path=tuple(path), hint=hint, file=file, line=line, column=column)
    )


def _byte_position(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte ``offset``."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    column = len(data[line_start:offset].decode("utf-8", errors="replace")) + 1
    return data.count(b"\n", 0, offset) + 1, column


def _text_position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of character ``offset``."""
    offset = max(0, min(offset, len(text)))
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _read_text(path: Path) -> str:
    shown = str(path)
    if "\x00" in shown:
        raise _problem("is not a usable file path (it contains a NUL character)", repr(shown))
    try:
        if not path.exists():
            raise _problem(
                "no such file", shown, hint="check the path; specs are .yaml, .yml or .json files"
            )
        if path.is_dir():
            raise _problem(
                "is a directory, not a spec file", shown, hint="name one .yaml, .yml or .json file"
            )
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _problem(
                f"file is {size:,} bytes; specs are limited to {MAX_FILE_BYTES:,} bytes ({MAX_FILE_BYTES // 2**20} MiB)",
                shown,
                hint="a spec lists layers, not weights; is this the right file?",
            )
        if not path.is_file():
            raise _problem(
                "is not a regular file (a device, socket or pipe?)",
                shown,
                hint="name one .yaml, .yml or .json file",
            )
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # the file may grow between stat and read
    except ValueError:  # e.g. a NUL character inside the path
        raise _problem(
            "is not a usable file path (it contains a NUL character)", repr(shown)
        ) from None
    except OSError as exc:
        raise _problem(f"cannot read the file: {exc.strerror or exc}", shown) from None
    if len(data) > MAX_FILE_BYTES:
        raise _problem(f"file is larger than the limit of {MAX_FILE_BYTES:,} bytes", shown)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise _problem(
            "is UTF-16 text; specs must be UTF-8", shown, hint="re-save the file as UTF-8"
        )
    if b"\x00" in data:
        raise _problem(
            "looks like a binary file (it contains NUL bytes), not a YAML/JSON spec", shown
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _byte_position(data, exc.start)
        raise _problem(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot be decoded",
            shown,
            hint="re-save the file as UTF-8",
            line=line,
            column=column,
        ) from None


def _yaml_loader_class():
    import yaml

    # libyaml (when PyYAML was built with it) parses large inputs ~100x faster than the pure-Python parser.
    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# The YAML parser's terser complaints, reworded.
_YAML_MESSAGES = {
    "but found another document": "a second document starts here",
    "expected a single document in the stream": "a second document starts here",
}

# Hints for the YAML parser's most common complaints.
_YAML_HINTS = {
    "found character '\\t' that cannot start any token": "YAML indentation must use spaces, not tabs",
    "found a tab character that violates indentation": "YAML indentation must use spaces, not tabs",
    "expected a single document in the stream": "a spec file holds one YAML document; remove the second '---'",
    "but found another document": "a spec file holds one YAML document; remove the second '---'",
}


def _yaml_failure(exc, text: str, file: str | None) -> SpecError:
    """A parser exception as a located problem."""
    import yaml

    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "unreadable"
        message = f"not valid YAML/JSON: {_YAML_MESSAGES.get(problem, problem)}"
        hint = _YAML_HINTS.get(problem) or _YAML_HINTS.get(exc.context or "")
        if (
            hint is None
            and mark is not None
            and "\t" in _line_at(text, mark.line)[: mark.column + 1]
        ):
            hint = "YAML indentation must use spaces, not tabs"
        context = exc.context or ""
        if hint is None and context.startswith("while parsing a ") and exc.context_mark is not None:
            what = context.removeprefix("while parsing a ")
            hint = (
                f"check the {what} that starts at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}: "
                "a missing comma, quote or closing bracket?"
            )
        if mark is not None:
            return _problem(message, file, hint=hint, line=mark.line + 1, column=mark.column + 1)
        return _problem(message, file, hint=hint)
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = (
            _text_position(text, exc.position) if isinstance(exc.position, int) else (None, None)
        )
        character = exc.character if isinstance(exc.character, int) else None
        what = f"character U+{character:04X}" if character is not None else "a character"
        return _problem(
            f"not valid YAML/JSON: {exc.reason}: {what}", file, line=line, column=column
        )
    return _problem(f"not valid YAML/JSON: {exc}", file)


def _line_at(text: str, index: int) -> str:
    lines = text.split("\n", index + 1)
    return lines[index] if index < len(lines) else ""


def _check_structure(text: str, file: str | None) -> None:
    """Refuse documents that nest too deep, hold too many values or expand too far through aliases.

    cnnspec's bounds are checked on the parser's event stream (no tree is built), so they apply
    with any YAML parser. A parser may enforce limits of its own (libyaml refuses nesting deeper
    than 1000, and reads ahead while doing so); when the parser gives up, the text before the
    point where it gave up is checked again, so a document that breaks cnnspec's bounds before
    that point gets cnnspec's message and location, whatever the parser's version.
    """
    import yaml

    try:
        _check_events(text, file)
    except yaml.YAMLError as exc:
        _check_text_before(exc, text, file)
        raise _yaml_failure(exc, text, file) from None


def _check_text_before(exc, text: str, file: str | None) -> None:
    """Apply the bounds to the text before the parser's error (raises SpecError if they break there)."""
    import yaml

    end = len(text)
    for _ in range(4):  # each parser error found in the shorter text moves the end further back
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        index = getattr(mark, "index", None)
        if not isinstance(index, int) or not 0 < index < end:
            return
        end = index
        try:
            _check_events(text[:end], file)
            return
        except yaml.YAMLError as shorter:
            exc = shorter


def _check_events(text: str, file: str | None) -> None:
    """Stream the parser's events and raise SpecError where cnnspec's bounds break."""
    import yaml

    loader = _yaml_loader_class()(text)
    values = 0
    # One entry per open collection: [start mark, values it expands to so far, anchor].
    open_collections: list[list] = []
    anchored_sizes: dict[str, int] = {}

    def refuse(message: str, mark, hint: str | None = None):
        raise _problem(message, file, hint=hint, line=mark.line + 1, column=mark.column + 1)

    def add_to_parent(size: int) -> None:
        if open_collections:
            open_collections[-1][1] += size

    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.NodeEvent):
                values += 1
                if values > MAX_NODES:
                    refuse(
                        f"document holds more than {MAX_NODES:,} values; refused",
                        event.start_mark,
                        hint="a spec lists layers, not weights; is this the right file?",
                    )
            if isinstance(event, yaml.AliasEvent):
                for mark, _, anchor in open_collections:
                    if anchor == event.anchor:
                        refuse(
                            "a YAML alias refers to the value that contains it (an endless value); refused",
                            mark,
                        )
                add_to_parent(
                    anchored_sizes.get(event.anchor, 1)
                )  # an undefined alias: the composer says so
            elif isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    anchored_sizes[event.anchor] = 1
                add_to_parent(1)
            elif isinstance(event, yaml.CollectionStartEvent):
                open_collections.append([event.start_mark, 1, event.anchor])
                if len(open_collections) > MAX_DEPTH:
                    refuse(f"nesting deeper than {MAX_DEPTH} levels; refused", event.start_mark)
            elif isinstance(event, yaml.CollectionEndEvent):
                mark, size, anchor = open_collections.pop()
                if size > MAX_NODES:
                    refuse(
                        f"this value expands to {size:,} values through YAML aliases (an alias bomb?); "
                        f"refused, the limit is {MAX_NODES:,}",
                        mark,
                    )
                if anchor is not None:
                    anchored_sizes[anchor] = size
                add_to_parent(size)
    finally:
        loader.dispose()


def _compose(text: str, file: str | None):
    import yaml

    if len(text) > MAX_FILE_BYTES:
        raise _problem(
            f"spec text is {len(text):,} characters; the limit is {MAX_FILE_BYTES:,}", file
        )
    _check_structure(text, file)
    loader = _yaml_loader_class()(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError as exc:
        raise _yaml_failure(exc, text, file) from None
    except RecursionError:  # pragma: no cover - _check_structure bounds the depth first
        raise _problem(f"nesting deeper than {MAX_DEPTH} levels; refused", file) from None
    finally:
        loader.dispose()


def _show_tag(tag: str) -> str:
    return (
        "!!" + tag.removeprefix("tag:yaml.org,2002:")
        if tag.startswith("tag:yaml.org,2002:")
        else tag
    )


class _NodeConverter:
    """Turns composed YAML nodes into Python values, with bounds and a source map."""

    def __init__(self, file: str | None, source: SourceMap):
        import yaml

        self._yaml = yaml
        self._constructor = yaml.SafeLoader("")  # a scalar constructor with the safe tag set
        self.file = file
        self.source = source
        self.count = 0

    def fail(self, node, message: str, hint: str | None = None, path: tuple = ()):
        raise _problem(
            message,
            self.file,
            hint=hint,
            line=node.start_mark.line + 1,
            column=node.start_mark.column + 1,
            path=path,
        )

    def _refuse_tag(self, node, path: tuple):
        self.fail(
            node,
            f"YAML tag '{_show_tag(node.tag)}' is not allowed; specs hold plain values only",
            hint="cnnspec never constructs objects from YAML tags; remove the tag",
            path=path,
        )

    def convert(self, node, path: tuple = (), depth: int = 0, key_node=None) -> Any:
        yaml = self._yaml
        self.count += 1
        if self.count > MAX_NODES:
            self.fail(
                node,
                f"document expands to more than {MAX_NODES:,} values (an alias bomb?); refused",
            )
        if depth > MAX_DEPTH:
            self.fail(node, f"nesting deeper than {MAX_DEPTH} levels; refused", path=path)
        self.source.record(path, node, key_node)
        if isinstance(node, yaml.ScalarNode):
            if (
                not node.tag.startswith("tag:yaml.org,2002:")
                or node.tag == "tag:yaml.org,2002:binary"
            ):
                self._refuse_tag(node, path)
            try:
                return self._constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                self.fail(
                    node,
                    f"cannot read this value: {getattr(exc, 'problem', None) or exc}",
                    path=path,
                )
            except (
                ValueError,
                OverflowError,
            ) as exc:  # e.g. an integer with more digits than Python converts
                self.fail(node, f"cannot read this value: {str(exc).split(';')[0]}", path=path)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                self._refuse_tag(node, path)
            return [self.convert(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            if node.tag != "tag:yaml.org,2002:map":
                self._refuse_tag(node, path)
            result: dict[str, Any] = {}
            key_nodes: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.fail(
                        key_node,
                        "YAML merge keys ('<<') are not supported in specs",
                        hint="write the fields out in full",
                        path=path,
                    )
                if not isinstance(key_node, yaml.ScalarNode):
                    self.fail(
                        key_node,
                        "mapping keys must be plain strings, not lists or mappings",
                        path=path,
                    )
                key = self.convert(key_node, path + ("<key>",), depth + 1)
                if not isinstance(key, str):
                    self.fail(
                        key_node,
                        f"mapping key {key!r} must be a string (field names are words)",
                        path=path,
                    )
                if key in result:
                    first = key_nodes[key].start_mark
                    self.fail(
                        key_node,
                        f"duplicate key '{key}' (a YAML or JSON reader would silently keep only the last value)",
                        hint=f"keep one '{key}'; the first is at line {first.line + 1}, column {first.column + 1}",
                        path=path + (key,),
                    )
                key_nodes[key] = key_node
                result[key] = self.convert(value_node, path + (key,), depth + 1, key_node=key_node)
            return result
        self.fail(node, "unsupported YAML node", path=path)  # pragma: no cover


def _parse_json(text: str, file: str | None) -> Any:
    """JSON's own reading of a .json file (its values and its error positions)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        before = text[: exc.pos].rstrip()
        hint = None
        if before.endswith(",") and exc.msg.startswith(
            ("Expecting value", "Expecting property name")
        ):
            hint = "JSON allows no comma after the last item of a list or object"
        elif exc.msg.startswith("Expecting property name") and text[exc.pos : exc.pos + 1] == "'":
            hint = "JSON strings use double quotes"
        raise _problem(
            f"not valid JSON: {exc.msg}", file, hint=hint, line=exc.lineno, column=exc.colno
        ) from None
    except RecursionError:
        _check_structure(text, file)  # locates the too-deep value
        raise _problem(f"nesting deeper than {MAX_DEPTH} levels; refused", file) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise _problem(f"not valid JSON: {str(exc).split(';')[0]}", file) from None


def parse_text(
    text: str, file: str | None = None, *, json_text: bool = False
) -> tuple[Any, SourceMap]:
    """Parse YAML or JSON text into plain values and a :class:`SourceMap`.

    Args:
        text: the document.
        file: the name shown in messages.
        json_text: read the text as JSON (a ``.json`` file): JSON's syntax errors and number
            rules apply; YAML only supplies the line and column of each value.

    Raises:
        SpecError: the text is not YAML/JSON, is empty, or breaks a safety bound.
    """
    source = SourceMap(file)
    if len(text) > MAX_FILE_BYTES:
        raise _problem(
            f"spec text is {len(text):,} characters; the limit is {MAX_FILE_BYTES:,}", file
        )
    if json_text:
        if not text.strip():
            raise _problem(
                "the spec is empty",
                file,
                hint="a spec starts with '{\"cnnspec\": 1, ...'; see examples/",
            )
        json_data = _parse_json(text, file)
        try:
            node = _compose(text, file)
        except SpecError:
            return json_data, SourceMap(
                file
            )  # valid JSON that YAML cannot map: values without positions
        _NodeConverter(file, source).convert(
            node
        )  # the bounds and the duplicate-key check, and the positions
        return json_data, source
    node = _compose(text, file)
    if node is None:
        raise _problem(
            "the spec is empty", file, hint="a spec starts with 'cnnspec: 1'; see examples/"
        )
    data = _NodeConverter(file, source).convert(node)
    return data, source


def load_spec(source: str | os.PathLike[str] | Mapping[str, Any] | ModelSpec) -> ModelSpec:
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
        if isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{")):
            data, source_map = parse_text(source, None)
        else:
            path = Path(source)
            file = str(source)
            data, source_map = parse_text(
                _read_text(path), file, json_text=path.suffix.lower() == ".json"
            )
    return validate_data(data, file=file, source_map=source_map)


def validate_data(
    data: Any, file: str | None = None, source_map: SourceMap | None = None
) -> ModelSpec:
    """Validate already-parsed data as a spec (see :func:`load_spec`)."""
    source_map = source_map or SourceMap(file)
    if not isinstance(data, dict):
        kind = _KIND_NAMES.get(type(data), type(data).__name__)
        raise _problem(
            f"a spec must be a mapping (cnnspec:, input:, layers:), not {kind}",
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


_KIND_NAMES = {
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    list: "a list",
}


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
            Problem(
                f"format version must be an integer, got {version!r}",
                ("cnnspec",),
                f"write 'cnnspec: {FORMAT_VERSION}'",
                file,
                **_pos(source_map, ("cnnspec",)),
            )
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
        raise SpecError(
            Problem(
                f"unknown format version {version}",
                ("cnnspec",),
                f"write 'cnnspec: {FORMAT_VERSION}'",
                file,
                **_pos(source_map, ("cnnspec",)),
            )
        )


def _is_branch_label(item: Any) -> bool:
    """pydantic's names for union branches inside ``loc`` ('constrained-int', 'list[...]', ...)."""
    return isinstance(item, str) and (
        "[" in item
        or "-" in item
        or item in ("int", "str", "bool", "float", "list", "dict", "none")
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
    from cnnspec.spec.models import InputSpec

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
    if layer_type is None or layer_type not in REGISTRY:
        return None
    return REGISTRY.definition(layer_type).model


def suggest_type(name: str, rank: int | None = None) -> str | None:
    """The closest known layer type for a misspelt or framework-spelt one.

    ``rank`` (the spec's number of spatial axes) completes a word without one ('maxpool' in a
    2-D spec: max_pool2d) and keeps the suggestions of other ranks out.
    """
    key = name.lower().replace(" ", "")
    snake = "".join(("_" + c.lower()) if c.isupper() else c for c in name).lstrip("_")
    for written in ((f"{key}{rank}d", f"{snake}{rank}d") if rank else ()) + (key, snake):
        if written in layer_types():
            return written
        if written in TYPE_HINTS:
            return TYPE_HINTS[written]
    other_ranks = {f"{n}d" for n in (1, 2, 3)} - {f"{rank}d"} if rank else set()
    candidates = [known for known in layer_types() if known[-2:] not in other_ranks]
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    return match[0] if match and _is_misspelling(key, match[0]) else None


def _spec_rank(data: Any) -> int | None:
    """The spec's number of spatial axes, when its input gives a size list."""
    try:
        size = data["input"]["size"]
    except (KeyError, TypeError, IndexError):
        return None
    return len(size) if isinstance(size, list) and 1 <= len(size) <= 3 else None


def _is_misspelling(written: str, known: str) -> bool:
    """False when a whole word differs ('layer_norm' is not a misspelt 'batch_norm': it names another layer)."""
    written_words, known_words = written.split("_"), known.split("_")
    if len(written_words) != len(known_words):
        return True
    return all(
        difflib.SequenceMatcher(None, a, b).ratio() >= 0.5
        for a, b in zip(written_words, known_words)
    )


def _field_replacement(field: str, allowed: list[str]) -> str | None:
    """The allowed field a misspelt or framework-spelt ``field`` most likely means."""
    replacement = FIELD_HINTS.get(field)
    if replacement is not None and replacement in allowed:
        return replacement
    if field in FIELD_HINTS:
        return None
    match = difflib.get_close_matches(field, allowed, n=1, cutoff=0.6)
    return match[0] if match else None


def _field_hint(field: str, allowed: list[str]) -> str | None:
    if field in FIELD_HINTS and FIELD_HINTS[field] is None:
        if field in ("in_channels", "in_features"):
            return f"'{field}' is inferred from the previous layer's shape; remove it"
        if field == "data_format":
            return "cnnspec specs are layout-free; the torch model is channels-first and the keras model channels-last"
        return f"'{field}' is not a cnnspec field; remove it"
    replacement = _field_replacement(field, allowed)
    if replacement is not None:
        if field in FIELD_HINTS:
            return f"cnnspec calls this '{replacement}' (framework spelling '{field}')"
        return f"did you mean '{replacement}'?"
    if allowed:
        return "allowed fields: " + ", ".join(allowed)
    return None


def _describe_input(value: Any) -> str:
    """A value as a user wrote it (YAML words for true/false/null), with its kind where that explains the error."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = repr(value)
        text = text if len(text) <= 60 else text[:57] + "...'"
        return f"{text} (a string)"
    if isinstance(value, float) and value.is_integer():
        return f"{value!r} (a float)"
    if isinstance(value, dict):
        text = repr(value)
        return "a mapping " + (text if len(text) <= 60 else text[:57] + "...}")
    if isinstance(value, list):
        text = repr(value)
        text = text if len(text) <= 60 else text[:57] + "...]"
        return text
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_SPATIAL_FIELDS = ("kernel_size", "stride", "dilation", "pool_size", "scale_factor")
_POSITIVE_INT_FIELDS = ("filters", "units", "groups", "depth_multiplier", "channels")
_BOOL_FIELDS = ("bias", "ceil_mode", "keepdims", "per_channel")
_NUMBER_FIELDS = {
    "rate": "a number >= 0 and < 1",
    "momentum": "a number > 0 and < 1",
    "epsilon": "a number > 0",
    "alpha": "a number > 0",
    "negative_slope": "a number >= 0",
}
_ACTIVATIONS = ", ".join(typing.get_args(InlineActivation))  # what the field accepts, in its order
_NAME_RULE = (
    "names are Python identifiers: ASCII letters, digits and '_', not starting with a digit"
)


def _field_of(path: tuple) -> tuple[str, bool]:
    """The field an error is about, and whether it is about one item of that field's list."""
    if (
        path
        and isinstance(path[-1], int)
        and len(path) >= 2
        and isinstance(path[-2], str)
        and path[-2] != "layers"
    ):
        return path[-2], True
    return (str(path[-1]) if path else ""), False


def _expected(path: tuple, data: Any) -> str | None:
    """What the field at ``path`` accepts, in words."""
    field, item = _field_of(path)
    if len(path) == 2 and path[0] == "layers" and isinstance(path[1], int):
        return "a layer mapping such as {type: conv2d, filters: 8, kernel_size: 3}"
    if field in _POSITIVE_INT_FIELDS:
        return "an integer >= 1"
    if field in _SPATIAL_FIELDS:
        return (
            "an integer >= 1"
            if item
            else "an integer >= 1, or a list with one such integer per spatial dim"
        )
    if field == "output_padding":
        return (
            "an integer >= 0"
            if item
            else "an integer >= 0, or a list with one such integer per spatial dim"
        )
    if field == "size" and path[:1] == ("input",):
        return (
            "an integer >= 1, or null for any size"
            if item
            else "a list of 1-3 integers >= 1 (or null for any size): [L], [H, W] or [D, H, W]"
        )
    if field == "reference_size" and path[:1] == ("input",):
        return "an integer >= 1" if item else "a list of 1-3 integers >= 1, one per spatial dim"
    if field in _NUMBER_FIELDS:
        return _NUMBER_FIELDS[field]
    if field in _BOOL_FIELDS:
        return "true or false"
    if field == "count_include_pad":
        return "true, false or null"
    if field == "mode":
        return "'nearest' or 'bilinear'"
    if field == "approximate":
        return "'none' or 'tanh'"
    if field == "layers" and len(path) == 1:
        return "a non-empty list of layers"
    if field == "input" and len(path) == 1:
        return "a mapping {channels: C, size: [H, W]}"
    if field == "inputs" and not item:
        merge = _reads_many(_layer_type_at(data, path[1])) if len(path) == 3 else False
        return (
            "a list of two or more earlier layer names"
            if merge
            else "a list with one earlier layer name (or 'input')"
        )
    if field == "cnnspec":
        return f"the integer {FORMAT_VERSION}"
    return None


def _name_problem(value: Any) -> str:
    """Why ``value`` is not a valid layer or model name."""
    if not isinstance(value, str):
        return f"a name must be a string, got {_describe_input(value)}"
    if not value:
        return "the name is empty"
    if len(value) > 64:
        return f"the name is {len(value)} characters long; names are at most 64"
    if value[0].isdigit():
        return f"'{value}' is not a valid name: it starts with a digit"
    for character in value:
        if character.isascii() and (character.isalnum() or character == "_"):
            continue
        if character == "\n":
            what = "a line break"
        elif character.isspace():
            what = "whitespace"
        elif not character.isascii():
            what = f"'{character}' (U+{ord(character):04X} {unicodedata.name(character, 'unnamed character')})"
        else:
            what = f"'{character}'" if character != "'" else '"\'"'
        return f"{value!r} is not a valid name: it contains {what}"
    return f"{value!r} is not a valid name"  # pragma: no cover - the pattern and this walk agree


def _translate(
    exc: ValidationError, data: Any, file: str | None, source_map: SourceMap
) -> list[Problem]:
    problems: list[Problem] = []
    errors = exc.errors(include_url=False)
    # A union field fails once per branch; keep the most specific message per path.
    by_path: dict[tuple, list[ErrorDetails]] = {}
    for error in errors:
        by_path.setdefault(_real_path(error["loc"], data), []).append(error)
    # 'out_channels: 8' is both an unknown field and a missing 'filters': report it once, as the unknown field.
    explained_missing: set[tuple] = set()
    for path, group in by_path.items():
        if path and group[0]["type"] == "extra_forbidden":
            replacement = _field_replacement(str(path[-1]), _allowed_fields(data, path))
            if replacement is not None:
                explained_missing.add(path[:-1] + (replacement,))
    for path, group in by_path.items():
        if path in explained_missing and all(e["type"] == "missing" for e in group):
            continue
        # A union whose list branch failed deeper (kernel_size[1]) explains itself better there.
        if any(other != path and other[: len(path)] == path for other in by_path) and all(
            e["type"] not in ("extra_forbidden", "missing") for e in group
        ):
            continue
        problems.append(_problem_for(path, group, data, file, source_map))
    problems.sort(key=lambda p: (p.line or 0, p.column or 0))
    return problems


def _layer_label(data: Any, path: tuple) -> str:
    """' for a conv2d layer' when ``path`` is inside a layer of a known type."""
    if len(path) >= 2 and path[0] == "layers":
        layer_type = _layer_type_at(data, path[1])
        if isinstance(layer_type, str) and layer_type in layer_types():
            return f" for a {layer_type} layer"
    return ""


def _problem_for(
    path: tuple, group: list[ErrorDetails], data: Any, file: str | None, source_map: SourceMap
) -> Problem:
    error = group[0]
    kind = error["type"]
    hint = None
    position = source_map.locate(path)
    if kind == "extra_forbidden":
        field = str(path[-1])
        message = f"unknown field '{field}'" + _layer_label(data, path)
        hint = _field_hint(field, _allowed_fields(data, path))
        position = source_map.locate_key(path)
    elif kind == "union_tag_invalid":
        tag = _layer_type_at(data, path[-1]) if len(path) == 2 else error.get("ctx", {}).get("tag")
        suggestion = suggest_type(tag, _spec_rank(data)) if isinstance(tag, str) else None
        message = (
            f"unknown layer type {tag!r}"
            if isinstance(tag, str)
            else f"a layer type is a word such as 'conv2d', got {_describe_input(tag)}"
        )
        hint = (
            f"did you mean '{suggestion}'?"
            if suggestion
            else "known types: " + ", ".join(layer_types())
        )
        path = path + ("type",) if path and path[-1] != "type" else path
        position = source_map.locate(path)
    elif kind == "union_tag_not_found":
        message = "a layer needs a 'type'"
        hint = "e.g. 'type: conv2d'; known types: " + ", ".join(layer_types())
    elif kind == "missing":
        message = f"missing required field '{path[-1]}'" + _layer_label(data, path)
        position = source_map.locate(path[:-1])
    elif kind == "value_error" and path == ("input",):
        message = str(error.get("ctx", {}).get("error", error["msg"]))
        path = ("input", "reference_size")
        position = source_map.locate(path)
        hint = "reference_size gives a number for every axis, equal to size where size is not null"
    elif kind == "literal_error" and path == ("cnnspec",):
        message = f"unknown format version {error.get('input')!r}"
        hint = f"write 'cnnspec: {FORMAT_VERSION}'"
    else:
        message, hint = _value_message(path, group, data)
    return Problem(message, path, hint, file, *(position or (None, None)))


def _padding_hint(value: Any) -> str:
    """A hint for a padding value that is none of the accepted forms."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("same", "valid"):
            return f"write '{lowered}' in lower case"
        if lowered.lstrip("-").isdigit():
            return "write the number without quotes"
        if lowered == "causal":
            return "cnnspec has no 'causal' padding; write it as a [before, after] pair: [[k - 1, 0]] (dilated: [[d*(k - 1), 0]])"
        if lowered == "full":
            return "cnnspec has no 'full' padding; write it as one [before, after] pair per dim: [[k - 1, k - 1], ...]"
    if isinstance(value, int) and not isinstance(value, bool) and value < 0:
        return "padding cannot be negative; to crop, use a transposed convolution's padding or a smaller input"
    if isinstance(value, list) and len(value) in (4, 6) and all(isinstance(v, int) for v in value):
        return (
            "a flat list of per-side numbers (F.pad's last-dim-first order) is ambiguous; write one "
            "[before, after] pair per spatial dim, e.g. [[1, 1], [0, 1]]"
        )
    return "'same' means SAME_UPPER (the odd extra cell goes at the end); a number pads both sides equally"


def _value_message(path: tuple, group: list[ErrorDetails], data: Any) -> tuple[str, str | None]:
    """The message and hint for a value of the wrong type or out of range."""
    value = group[0].get("input")
    field, item = _field_of(path)
    kinds = {e["type"] for e in group}
    if field == "padding":
        shown = repr(value) if isinstance(value, str) else _describe_input(value)
        return (
            f"invalid padding {shown}: expected 'valid', 'same', an integer >= 0, one integer per "
            "spatial dim, or one [before, after] pair per spatial dim",
            _padding_hint(value),
        )
    if field == "activation":
        shown = repr(value) if isinstance(value, str) else _describe_input(value)
        hint = None
        if isinstance(value, str) and value in layer_types():
            hint = f"{value} takes parameters; add it as a layer of its own after this one: {{type: {value}}}"
        elif isinstance(value, str):
            close = difflib.get_close_matches(value.lower(), _ACTIVATIONS.split(", "), n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
        return f"unknown activation {shown}: expected one of {_ACTIVATIONS} or null", hint
    if field == "name" or (field == "inputs" and item):
        if "value_error" in kinds:  # keyword / dunder / reserved: the message says it all
            return next(e["msg"] for e in group if e["type"] == "value_error").removeprefix(
                "Value error, "
            ), None
        return _name_problem(value), _NAME_RULE
    if "too_short" in kinds or "too_long" in kinds:
        length = len(value) if isinstance(value, (list, str, dict)) else None
        expected = _expected(path, data)
        if field == "layers" and length == 0:
            return "the model has no layers: expected a non-empty list of layers", None
        if expected is not None and length is not None:
            count = f"{length} item" + ("" if length == 1 else "s")
            return f"expected {expected}, got {_describe_input(value)} ({count})", None
    expected = _expected(path, data)
    if expected is not None:
        hint = None
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and "integer" in expected:
            hint = "write the number without quotes"
        elif isinstance(value, float) and value.is_integer() and "integer" in expected:
            hint = f"write {int(value)}"
        return f"expected {expected}, got {_describe_input(value)}", hint
    # Anything else: pydantic's own words, without its prefixes.
    messages: list[str] = []
    for error in group:
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "value_error":
            return message, None
        if message not in messages:
            messages.append(message)
    text = "; ".join(messages[:3])
    if "input" in group[0]:
        text += f" (got {_describe_input(value)})"
    return text, None


def source_map_of(spec: ModelSpec) -> SourceMap | None:
    """The source map a spec was loaded with (None for specs built from dicts)."""
    return getattr(spec, "_source", None)


__all__ = ["load_spec", "parse_text", "validate_data", "SourceMap", "suggest_type", "format_path"]


def _reads_many(layer_type: Any) -> bool:
    """Whether layers of ``layer_type`` merge two or more inputs (add, concat, multiply, ...)."""
    from cnnspec.layers import REGISTRY

    return (
        isinstance(layer_type, str)
        and layer_type in REGISTRY
        and REGISTRY.definition(layer_type).arity == "many"
    )
