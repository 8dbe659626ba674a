"""Import and convert, end to end: what ``cnnspec import`` and ``cnnspec convert`` run.

``convert_model`` imports the original (Keras file or model, torch module, ONNX file), builds the
other framework's model from the spec, copies the original's weights into it, writes the spec,
the generated source and the weights, and proves the result against the ORIGINAL layer by
layer with :func:`cnnspec.verifier.run.verify` (both models exported to ONNX and run in
onnxruntime), returning the verification report plus the conversion's own record.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnspec.errors import CnnspecError
from cnnspec.importers.common import ImportResult

MODEL_FILE_SUFFIXES = {".keras": "keras", ".h5": "keras", ".onnx": "onnx"}


# ----------------------------------------------------------------------------------------------
# MODEL references
# ----------------------------------------------------------------------------------------------


def framework_of(obj: Any) -> str:
    """``keras``, ``torch`` or ``onnx`` for a loaded model object."""
    if "torch" in sys.modules and isinstance(obj, sys.modules["torch"].nn.Module):
        return "torch"
    if "keras" in sys.modules and isinstance(obj, sys.modules["keras"].Model):
        return "keras"
    if type(obj).__name__ == "ModelProto":
        return "onnx"
    raise CnnspecError(
        f"the model is a {type(obj).__name__}, not a keras.Model, torch.nn.Module or ONNX model"
    )


def load_reference(reference: str, kwargs: dict | None = None) -> tuple[str, Any]:
    """Resolve a MODEL argument: a .keras/.h5/.onnx file, or ``package.module:attr`` / ``file.py:attr``.

    A Python reference is imported (this runs that module's code, as importing it always does);
    ``attr`` may be a model, or a class or factory called with ``kwargs`` (none by default).

    Returns:
        ``(framework, model)``; file references are returned as their path (importers load them).
    """
    path = Path(reference)
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix in MODEL_FILE_SUFFIXES:
        if not path.is_file():
            raise CnnspecError(f"{reference}: no such file")
        if kwargs:
            raise CnnspecError(
                "--kwargs applies to Python references (module:attr), not to model files"
            )
        return MODEL_FILE_SUFFIXES[suffix], path
    if ":" not in reference:
        raise CnnspecError(
            f"{reference}: not a model file (.keras, .h5, .onnx) or a Python reference "
            "'package.module:attr' / 'file.py:attr'"
        )
    module_part, _, attr = reference.rpartition(":")
    if not attr.isidentifier() or not module_part:
        raise CnnspecError(f"{reference}: expected 'module:attr' with attr a Python name")
    module = _import_module(reference, module_part)
    if not hasattr(module, attr):
        raise CnnspecError(f"{reference}: module '{module_part}' has no attribute '{attr}'")
    target = getattr(module, attr)
    if _is_model(target):
        if kwargs:
            raise CnnspecError(
                f"{reference} is a model object; --kwargs applies to a class or factory"
            )
        return framework_of(target), target
    if not callable(target):
        raise CnnspecError(
            f"{reference} is a {type(target).__name__}, not a model, class or factory"
        )
    try:
        model = target(**(kwargs or {}))
    except TypeError as error:
        raise CnnspecError(
            f"{reference}: calling it with {kwargs or 'no arguments'} failed: {error} (pass --kwargs JSON)"
        ) from None
    except Exception as error:  # noqa: BLE001 - the model's own code failed, not cnnspec
        raise CnnspecError(
            f"{reference}: calling it with {kwargs or 'no arguments'} raised "
            f"{type(error).__name__}: {error}"
        ) from None
    if not _is_model(model):
        raise CnnspecError(
            f"{reference}() returned a {type(model).__name__}, not a keras.Model or torch.nn.Module"
        )
    return framework_of(model), model


def _is_model(obj: Any) -> bool:
    try:
        framework_of(obj)
    except CnnspecError:
        return False
    return not isinstance(obj, type)


def _import_module(reference: str, module_part: str):
    if module_part.endswith(".py"):
        file = Path(module_part)
        if not file.is_file():
            raise CnnspecError(f"{reference}: no such file {module_part}")
        spec = importlib.util.spec_from_file_location(file.stem, file)
        if spec is None or spec.loader is None:
            raise CnnspecError(f"{reference}: cannot import {module_part}")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(file.resolve().parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.pop(0)
        return module
    try:
        return importlib.import_module(module_part)
    except ImportError as error:
        raise CnnspecError(f"{reference}: cannot import module '{module_part}': {error}") from None


def parse_input_shape(text: str | None) -> tuple[int | None, ...] | None:
    """``"3,224,224"`` -> (3, 224, 224); ``"3,None,None"`` (or ``3,?,?``) -> (3, None, None)."""
    if text is None:
        return None
    parts = [part.strip() for part in text.replace("x", ",").split(",") if part.strip()]
    try:
        shape = tuple(None if part in ("None", "none", "?") else int(part) for part in parts)
    except ValueError:
        raise CnnspecError(
            f"--input-shape {text!r}: expected channels-first integers such as 3,224,224 "
            "(None for a size the model takes at any value)"
        ) from None
    known = [d for d in shape if d is not None]
    if len(shape) not in (2, 3, 4) or shape[0] is None or min(known) < 1:
        raise CnnspecError(
            f"--input-shape {text!r}: expected C,L or C,H,W or C,D,H,W (positive, no batch; "
            "None for an open spatial size)"
        )
    return shape


def import_any(framework: str, model, input_shape=None, reference_size=None) -> ImportResult:
    """Run the importer of ``framework`` on ``model`` (an object or a file path).

    ``reference_size``: where a torch ``input_shape`` has None sizes, the size to trace at.
    """
    if framework == "keras":
        from cnnspec.importers.keras import import_keras

        if input_shape is not None:
            raise CnnspecError(
                "--input-shape is for torch models; a Keras model has its own input shape"
            )
        return import_keras(model)
    if framework == "torch":
        from cnnspec.importers.torch import import_torch

        if input_shape is None:
            raise CnnspecError("a torch model needs --input-shape C,H,W (channels first, no batch)")
        return import_torch(model, input_shape, reference_size)
    from cnnspec.importers.onnx import import_onnx

    return import_onnx(model)


# ----------------------------------------------------------------------------------------------
# Spec text
# ----------------------------------------------------------------------------------------------


def spec_document(spec) -> dict:
    """The spec as a plain dict without defaults (what a person would write)."""
    document = spec.model_dump(mode="json", exclude_defaults=True)
    document = {"cnnspec": 1, **document}
    return document


def spec_yaml(spec, origin: str | None = None) -> str:
    """The spec as YAML: one flow mapping per layer, as the examples are written."""
    import yaml

    document = spec_document(spec)
    lines = [f"# imported by cnnspec from {origin}"] if origin else []
    lines.append("cnnspec: 1")
    if "name" in document:
        lines.append(f"name: {document['name']}")
    lines.append("input: " + _flow(document["input"], yaml))
    lines.append("layers:")
    for layer in document["layers"]:
        ordered = {
            "type": layer["type"],
            **{k: v for k, v in layer.items() if k not in ("type", "source")},
        }
        if "source" in layer:
            ordered["source"] = layer["source"]
        lines.append("  - " + _flow(ordered, yaml))
    return "\n".join(lines) + "\n"


def _flow(value: dict, yaml) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**9).strip()


# ----------------------------------------------------------------------------------------------
# Observing a torch original layer by layer
# ----------------------------------------------------------------------------------------------


def observed_torch(original, result: ImportResult):
    """Wrap a torch original so the verifier sees every spec layer's output (``forward_layers``).

    The fx graph the importer traced is copied with one output per spec layer; the wrapper's
    ``forward`` is the original's, untouched.
    """
    import torch
    import torch.fx

    gm, producers = result.details["graph_module"], result.details["producers"]
    names = [layer.name for layer in result.spec.layers if layer.name in producers]
    graph = torch.fx.Graph()
    mapping: dict = {}
    graph.graph_copy(gm.graph, mapping)
    by_name = {node.name: node for node in gm.graph.nodes}
    channels_last = result.details.get("channels_last", set())

    def tapped(name: str):
        node = mapping[by_name[producers[name]]]
        if producers[name] not in channels_last:
            return node
        rank = len(node.meta["tensor_meta"].shape) - 1
        return graph.call_method("permute", (node, 0, rank, *range(1, rank)))

    graph.output({name: tapped(name) for name in names})
    tap = torch.fx.GraphModule(_out_of_place(gm, graph), graph)

    in_use = {id(tensor) for tensor in (*tap.parameters(), *tap.buffers())}

    class Observed(torch.nn.Module):
        """The original model, plus ``forward_layers`` for the verifier."""

        def __init__(self):
            super().__init__()
            self.original = original
            self.tap = tap
            self.observed_layers = frozenset(names)
            # What the verifier counts: a module the traced forward never calls (GoogLeNet's
            # training-only auxiliary heads) is not part of the model converted.
            self.tensors_in_use = frozenset(in_use)
            self.uncalled_modules = _uncalled_modules(original, in_use)

        def forward(self, x):
            return self.original(x)

        def forward_layers(self, x):
            return self.tap(x)

    return Observed().eval()


def _uncalled_modules(original, in_use: set[int]) -> list[str]:
    """The outermost modules of ``original`` that hold tensors, none of which the traced forward uses."""
    found: list[str] = []
    for path, module in original.named_modules():
        if any(path.startswith(outer + ".") for outer in found):
            continue
        tensors = [*module.parameters(), *module.buffers()]
        if path and tensors and not any(id(tensor) in in_use for tensor in tensors):
            found.append(path)
    return found


def _original_paths(plan, observed) -> dict[str, str]:
    """Spec layer -> the original's module path inside ``observed`` (``original.layer1.0.conv1``).

    The wrapper also holds the traced copy of each module, and a model may call its modules in an
    order other than the one it registers them in (a residual's shortcut first), so the verifier is
    told each module by its path instead of pairing them by order.
    """
    paths = {name for name, _ in observed.named_modules()}
    found = {}
    for layer in plan.layers:
        path = "original." + (layer.spec.source or layer.name)
        if layer.params and path in paths:
            found[layer.name] = path
    return found


_IN_PLACE_OPERATORS = {"iadd": "add", "imul": "mul", "isub": "sub"}


def _out_of_place(gm, graph) -> dict:
    """Make every op of ``graph`` out of place (its intermediate values are outputs now); returns the
    modules it calls, with copies (``inplace=False``) of in-place modules -- the original is untouched."""
    import copy
    import operator

    from cnnspec.importers.torch import attribute_at

    modules: dict = {}
    for node in graph.nodes:
        if node.op == "call_module":
            module = gm.get_submodule(node.target)
            if getattr(module, "inplace", False):
                module = copy.copy(module)
                module.inplace = False
            modules[node.target] = module
        elif node.op == "get_attr":
            modules[node.target] = attribute_at(gm, node.target)
        elif node.op == "call_function":
            name = getattr(node.target, "__name__", "")
            if node.target in (getattr(operator, n) for n in _IN_PLACE_OPERATORS):
                node.target = getattr(operator, _IN_PLACE_OPERATORS[name])
            if node.kwargs.get("inplace"):
                node.kwargs = {**node.kwargs, "inplace": False}
        elif (
            node.op == "call_method"
            and node.target.endswith("_")
            and not node.target.startswith("_")
        ):
            node.target = node.target[:-1]
    return modules


# ----------------------------------------------------------------------------------------------
# Convert
# ----------------------------------------------------------------------------------------------


@dataclass
class Conversion:
    """What ``convert_model`` did: files written, rewrites, timings, and the verification."""

    source: str
    framework: str
    target: str
    spec_name: str = ""
    files: dict[str, str] = field(default_factory=dict)
    rewrites: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    verification: Any = None
    parameters: int = 0

    @property
    def ok(self) -> bool:
        return self.verification is not None and self.verification.ok

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "source": self.source,
            "framework": self.framework,
            "target": self.target,
            "spec": self.spec_name,
            "parameters": self.parameters,
            "files": self.files,
            "rewrites": self.rewrites,
            "timings": self.timings,
            "verification": None if self.verification is None else self.verification.to_dict(),
        }


OUTPUT_FILES = {"spec": "spec.yaml", "report": "report.json"}


def output_paths(directory: Path, target: str, model_name: str) -> dict[str, Path]:
    """The files ``convert`` writes into ``directory``."""
    weights = f"{model_name}.safetensors" if target == "torch" else f"{model_name}.weights.h5"
    return {
        "spec": directory / OUTPUT_FILES["spec"],
        "source": directory / f"{model_name}.py",
        "weights": directory / weights,
        "report": directory / OUTPUT_FILES["report"],
    }


def convert_model(
    reference: str,
    target: str,
    directory,
    *,
    input_shape=None,
    kwargs: dict | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    input_sizes=None,
    weights=None,
) -> Conversion:
    """Import ``reference``, build it in ``target``, copy the weights, write the files, verify per layer.

    ``weights`` (a torch state_dict or checkpoint, or a Keras ``.weights.h5``) are loaded into
    the model a Python reference names before anything else (see
    :func:`cnnspec.weights.files.load_weights_file`); a model file holds its own.

    A model that takes any input size (``(None, None, 3)``, symbolic ONNX dims) becomes a spec
    with open sizes and is verified at ``input_sizes`` (default: see
    :func:`cnnspec.verifier.run.default_sizes`: an even and an odd size, unless a join needs
    multiples); a torch model
    given ``input_shape=(C, None, None)`` is traced at the first of them (default 224).

    Raises:
        CnnspecError: bad input (unreadable model, unsupported layer, existing files without overwrite).
    """
    from cnnspec.atomic import atomic_path, atomic_write
    from cnnspec.engine.plan import resolve
    from cnnspec.errors import OutputExistsError
    from cnnspec.targets.build import build, emit_source
    from cnnspec.verifier.onnx_export import import_frameworks

    note = progress or (lambda label: None)
    timings: dict[str, float] = {}
    directory = Path(directory)

    def step(name: str, label: str):
        note(label)
        timings[name] = time.perf_counter()

    def done(name: str) -> None:
        timings[name] = round(time.perf_counter() - timings[name], 4)

    if directory.exists() and not directory.is_dir():
        raise CnnspecError(f"{directory} exists and is not a directory")
    step("import_frameworks", "importing torch, tensorflow/keras, onnx, onnxruntime")
    import_frameworks()
    done("import_frameworks")
    step("load", f"loading {reference}")
    framework, model = load_reference(reference, kwargs)
    weight_notes = [] if weights is None else _load_weights(reference, framework, model, weights)
    done("load")
    if framework == target:
        raise CnnspecError(
            f"{reference} is already a {target} model; convert --to the other framework"
        )
    step("import", f"importing the {framework} model as a spec")
    trace_size = None  # a torch model of open size is traced at the first size verified
    if input_sizes and not isinstance(input_sizes[0], int):
        trace_size = tuple(input_sizes[0])
    elif input_sizes and input_shape is not None:
        trace_size = (input_sizes[0],) * (len(input_shape) - 1)
    result = import_any(framework, model, input_shape, trace_size)
    done("import")
    spec = result.spec
    plan = resolve(spec)
    paths = output_paths(directory, target, plan.name)
    for path in paths.values():
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path} exists; pass --force to overwrite it")

    step("build", f"building the {target} model from the generated source")
    source = emit_source(plan, target)
    converted = build(plan, target)
    done("build")
    step("weights", "copying the original's weights")
    original = result.details.get("model", model)  # a file is loaded by its importer
    from cnnspec.importers.origin import copy_original

    copy_original(original, converted, plan)
    done("weights")

    step("write", f"writing {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(paths["spec"], spec_yaml(spec, origin=reference), overwrite=overwrite)
    atomic_write(paths["source"], source, overwrite=overwrite)
    _save_weights(converted, target, paths["weights"], overwrite, atomic_path)
    done("write")

    conversion = Conversion(
        source=reference,
        framework=framework,
        target=target,
        spec_name=plan.name,
        rewrites=[r.to_dict() for r in result.rewrites],
        parameters=plan.total_params,
        files={key: str(path) for key, path in paths.items()},
    )
    step("verify", "verifying the converted model against the original, layer by layer")
    conversion.verification = _verify(
        plan, framework, original, converted, result, note, atol, rtol, input_sizes
    )
    conversion.verification.notes.extend(weight_notes)
    done("verify")
    conversion.timings = timings
    atomic_write(
        paths["report"], json.dumps(conversion.to_dict(), indent=2) + "\n", overwrite=overwrite
    )
    return conversion


def _save_weights(model, target: str, path: Path, overwrite: bool, atomic_path) -> None:
    if target == "torch":
        from safetensors.torch import save_file

        state = {
            key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()
        }
        with atomic_path(path, overwrite=overwrite) as temp:
            save_file(state, str(temp))
    else:
        from cnnspec.weights.files import save_weights_file

        save_weights_file(model, path, overwrite=overwrite)


# The proof keeps every layer's output of three graphs (the original's, the converted model's and
# the referee's) and a channels-first copy: measured peaks are about five times the outputs of one
# graph, plus the frameworks (EfficientNetV2-L at 480x480: 2.2 GB of outputs per sample, 21 GB peak
# at batch 2).
PEAK_PER_OUTPUT_BYTE = 5
FRAMEWORKS_BYTES = 2 * 1024**3


def proof_batch(plan, available: int | None = None) -> tuple[int, str | None]:
    """The batch the proof runs at: 2, or 1 when every layer's output at 2 would not fit in memory
    (with the note saying so)."""
    outputs = sum(math.prod(layer.output_shape) for layer in plan.layers) * 4
    if available is None:
        available = _available_memory()
    if available is None or PEAK_PER_OUTPUT_BYTE * 2 * outputs + FRAMEWORKS_BYTES <= available:
        return 2, None
    return 1, (
        f"verified at batch 1: the layer outputs at batch 2 ({2 * outputs / 1024**3:.1f} GB per graph) "
        f"would not fit in the {available / 1024**3:.0f} GB of memory available"
    )


def _load_weights(reference: str, framework: str, model, weights) -> list[str]:
    """Load ``weights`` into the model a Python reference named; the notes on what was unwrapped."""
    from cnnspec.weights.files import load_weights_file

    if isinstance(model, Path):
        raise CnnspecError(
            f"--weights: {reference} is a model file, which holds its own weights; --weights loads "
            "weights into the model a Python reference (module:attr) names"
        )
    try:
        notes = load_weights_file(model, weights)
    except CnnspecError as error:
        raise CnnspecError(f"--weights {weights}: {error}") from None
    if framework == "torch":
        model.eval()
    return [f"weights from {weights}: {text}" for text in notes]


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _verify(plan, framework, original, converted, result, progress, atol, rtol, input_sizes=None):
    options: dict[str, Any] = {"sync_weights": False, "progress": progress}
    if input_sizes is not None:
        options["input_sizes"] = input_sizes
    if atol is not None:
        options["atol"] = atol
    if rtol is not None:
        options["rtol"] = rtol
    if framework == "onnx":
        from cnnspec.importers.onnx import verify_against_onnx

        return verify_against_onnx(plan, result, converted, **options)
    from cnnspec.verifier.run import verify

    batch, batch_note = proof_batch(plan)
    if framework == "keras":
        from cnnspec.importers.keras import original_layout

        report = verify(
            original_layout(original, plan),
            torch_model=converted,
            keras_model=original,
            batch=batch,
            **options,
        )
    else:
        observed = observed_torch(original, result)
        report = verify(
            plan,
            torch_model=observed,
            keras_model=converted,
            name_map={"torch": _original_paths(plan, observed)},
            batch=batch,
            **options,
        )
    if batch_note:
        report.notes.append(batch_note)
    return report
