"""Export the PyTorch and Keras models of a spec to ONNX, with every spec layer's output as a graph output.

Both exports put one graph output per observable spec layer, named by the spec layer name
and in spec order, so the two ONNX graphs can be run in onnxruntime and compared layer by
layer.  The weights are *graph inputs*, not constants: the exporters only trace the
structure, and the weight values are fed to onnxruntime at run time.  That keeps the export
time independent of the weights' size (freezing 244 MB of AlexNet weights into a TensorFlow
graph took 27 s; tracing the structure takes well under a second).  A deployable file with
the weights as initializers is made only when one is asked for (:func:`with_initializers`).

* PyTorch: a wrapper module whose ``forward`` returns a tuple with one tensor per spec layer
  is exported with the TorchScript-based exporter (``dynamo=False``: 2-50x faster than the
  dynamo exporter).  The model's floating-point parameters and buffers are swapped for the
  traced inputs during the trace.  The tensors come from the generated model's
  ``forward_layers``; for a hand-written model without it, from forward hooks on the
  sub-modules named like spec layers; else only the model's output is observable.
* Keras: a "tap" model whose outputs are ``model.get_layer(name).output`` for each spec layer
  is called through ``stateless_call`` inside a ``tf.function`` whose signature holds the
  input and every variable, and converted by tf2onnx without its optimizer passes (they
  change no number).  The ONNX input is named ``input``.

Both graphs run in onnxruntime with its graph optimisations on, except ``Pad_Fusion``: it
folds a zero Pad into a following MaxPool, which lets the padding win the max on negative
inputs (tests/test_verify.py keeps it excluded).

Framework log noise (TF C++ banners, absl, the legacy-exporter deprecation warning) is
silenced here; exceptions are never swallowed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnspec.errors import BackendUnavailable, CnnspecError

ONNX_FILES = {"torch": "torch.onnx", "keras": "keras.onnx"}
INPUT_NAME = "input"

# Warnings that the exporters emit on every run and that say nothing about the model.
_NOISY_WARNINGS = (
    r"You are using the legacy TorchScript-based ONNX export",
    r"The feature will be removed",
    r".*LeafSpec.*",
    r".*TracerWarning.*",
    r"Constant folding - Only steps=1",
    r"The structure of `?inputs`? doesn't match the expected structure",
)


class ExportError(CnnspecError):
    """An exporter failed, or its graph does not pass ``onnx.checker``."""


# onnxruntime rewrites that change the numbers of a graph cnnspec runs (see the module docstring).
WRONG_REWRITES = ("Pad_Fusion",)


@dataclass
class ExportedGraph:
    """One ONNX graph with per-layer outputs and its weights as graph inputs.

    Attributes:
        proto: the ``onnx.ModelProto``; its first input is the data, the others are weights.
        layer_names: the spec layers observable in the graph, in spec order; the i-th graph
            output holds the i-th of them.
        observation: how the layer outputs were obtained (``forward_layers``, ``hooks``,
            ``get_layer``, ``output only`` or ``spec``).
        output_names: the graph's own output names (same order as ``layer_names``).
        weights: the value of every weight input, by input name (fed at run time).
        path: the deployable file, when the export was asked to write one.
    """

    proto: Any
    layer_names: list[str]
    observation: str
    output_names: list[str] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None
    runner: Any = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------------------
# Quiet imports
# --------------------------------------------------------------------------------------


def _prepare_environment() -> None:
    """Environment for TensorFlow; effective only before TensorFlow is imported."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # Also removes the oneDNN banner; oneDNN's re-ordered float sums are not wanted in a verifier.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _silence_loggers() -> None:
    # torch._logging resets levels on import, so this must run after `import torch`.
    for name in ("torch.onnx", "tf2onnx", "tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "absl.logging" in sys.modules:
        sys.modules["absl.logging"].set_verbosity("error")


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Hide the exporters' routine warnings (deprecations, tracer notes) inside the block."""
    with warnings.catch_warnings():
        for pattern in _NOISY_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


FRAMEWORKS = ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "tf2onnx")


def import_frameworks(names: Sequence[str] = FRAMEWORKS) -> dict[str, str]:
    """Import torch, keras (TensorFlow backend), onnx, onnxruntime and tf2onnx, quietly.

    Args:
        names: the ones to import (in this order), default all.

    Returns:
        Their versions by name.

    Raises:
        BackendUnavailable: one of them is not installed (with the pip extra to install).
    """
    _prepare_environment()
    versions: dict[str, str] = {}
    extras = {
        "torch": "torch",
        "tensorflow": "keras",
        "keras": "keras",
        "onnx": "verify",
        "onnxruntime": "verify",
        "tf2onnx": "verify",
    }
    with quiet_warnings():
        for name in names:
            try:
                module = __import__(name)
            except ImportError as exc:
                raise BackendUnavailable(
                    f"cnnspec verify needs {name}, which is not installed ({exc}); "
                    f"install it with: pip install 'cnnspec[{extras[name]},verify]'"
                ) from None
            versions[name] = getattr(module, "__version__", "?")
    _silence_loggers()
    if "tf2onnx" not in names:
        return versions
    try:  # tf2onnx predates numpy 2; Keras ships the small compatibility patch it uses itself.
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        with quiet_warnings():
            patch_tf2onnx()
    except Exception:  # noqa: BLE001 - optional: older/newer keras without the patch
        pass
    return versions


# --------------------------------------------------------------------------------------
# File handling
# --------------------------------------------------------------------------------------


def with_initializers(graph: ExportedGraph):
    """A deployable copy of the graph: its weight inputs become initializers holding their values."""
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(graph.proto)
    kept = [value for value in model.graph.input if value.name not in graph.weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.graph.initializer.extend(
        numpy_helper.from_array(np.ascontiguousarray(value), name)
        for name, value in graph.weights.items()
    )
    return model


def save_graph(graph: ExportedGraph, directory: str | os.PathLike, file_name: str) -> Path:
    """Write the deployable graph to ``directory/file_name`` atomically (a temp file beside it, then a rename).

    Graphs past protobuf's 2 GB limit keep their weights in one external data file beside it.
    """
    import onnx

    from cnnspec.atomic import atomic_path

    target_dir = Path(directory)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / file_name
    model = with_initializers(graph)
    weight_bytes = sum(value.nbytes for value in graph.weights.values())
    with atomic_path(target, overwrite=True) as temp_path:
        if weight_bytes < 1_800_000_000:
            onnx.save(model, str(temp_path))
        else:
            onnx.save(
                model, str(temp_path), save_as_external_data=True, location=file_name + ".data"
            )
    return target


# --------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------


def torch_observable_layers(
    model, layer_names: Sequence[str], module_paths: Mapping[str, str] | None = None
) -> tuple[list[str], str]:
    """Which spec layers a torch model exposes, and how.

    Returns:
        ``(names, observation)``: with ``forward_layers`` all spec layers, or those of them in
        the model's ``observed_layers`` when it has one (an imported original: a layer that is
        one step of what one node computed has no value there); with ``hooks`` the
        spec layers that have a sub-module of that name (plus the last spec layer, taken from
        the model's output); with ``output only`` just the last spec layer.  ``module_paths``
        maps spec layers to the sub-modules that read them (default: the sub-module of that name).
    """
    names = list(layer_names)
    if callable(getattr(model, "forward_layers", None)):
        observed = getattr(model, "observed_layers", None)
        if observed is not None:
            names = [name for name in names if name in observed]
        return names, "forward_layers"
    modules = dict(model.named_modules())
    paths = module_paths or {}
    hooked = [
        name
        for name in names[:-1]
        if paths.get(name, name) in modules and paths.get(name, name) != ""
    ]
    if hooked:
        if names[-1] not in hooked:
            hooked.append(names[-1])
        return hooked, "hooks"
    return [names[-1]], "output only"


def dynamic_dims(open_axes: Sequence[bool]) -> dict[int, str]:
    """The dynamic dimensions of a channels-first input: the batch and the open spatial axes, by name."""
    from cnnspec.engine.plan import AXIS_NAMES

    names = AXIS_NAMES[len(open_axes)]
    dims = {0: "batch"}
    dims.update({2 + axis: names[axis] for axis, open_axis in enumerate(open_axes) if open_axis})
    return dims


def _torch_weights(model) -> dict[str, Any]:
    """The model's floating-point parameters and buffers by qualified name (shared tensors once)."""
    weights: dict[str, Any] = {}
    seen: set[int] = set()
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and id(tensor) not in seen:
            seen.add(id(tensor))
            weights[name] = tensor
    return weights


def _torch_wrapper(
    model,
    names: list[str],
    observation: str,
    weight_names: Sequence[str] = (),
    module_paths: Mapping[str, str] | None = None,
):
    """An nn.Module whose ``forward(x, *weights)`` returns the tuple of the observed layers' outputs.

    The tensors passed after ``x`` stand in for the model's tensors called ``weight_names``
    during the call, so that a trace sees them as graph inputs rather than constants.
    """
    import torch

    last = names[-1]
    slots = []
    for qualified in weight_names:
        owner_name, _, attr = qualified.rpartition(".")
        owner = model.get_submodule(owner_name)
        slots.append((owner._parameters if attr in owner._parameters else owner._buffers, attr))

    class LayerOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self._hooked: list[str] = []
            self._handles: list = []
            self._sink: list[dict | None] = [
                None
            ]  # a list, not a tensor attribute: keeps tracing clean
            if observation == "hooks":
                modules = dict(model.named_modules())
                paths = module_paths or {}
                for name in names[
                    :-1
                ]:  # the last spec layer is the model's output, whatever follows its part
                    if paths.get(name, name) in modules:
                        module = modules[paths.get(name, name)]
                        self._handles.append(module.register_forward_hook(self._store(name)))
                        self._hooked.append(name)

        def remove_hooks(self) -> None:
            """Leave the user's model as it was."""
            for handle in self._handles:
                handle.remove()
            self._handles.clear()

        def _store(self, name: str):
            def hook(module, inputs, output):
                if self._sink[0] is not None:
                    # a copy: an in-place op after the part (nn.ReLU(inplace=True)) must not change what was read
                    self._sink[0][name] = output.clone() if hasattr(output, "clone") else output

            return hook

        def forward(self, x, *weights):
            originals = [store[attr] for store, attr in slots]
            for (store, attr), value in zip(slots, weights):
                store[attr] = value
            try:
                return self._outputs(x)
            finally:
                for (store, attr), value in zip(slots, originals):
                    store[attr] = value

        def _outputs(self, x):
            if observation == "forward_layers":
                outputs = self.model.forward_layers(x)
                return tuple(outputs[name] for name in names)
            collected: dict = {}
            self._sink[0] = collected
            try:
                result = self.model(x)
            finally:
                self._sink[0] = None
            if last not in self._hooked:
                collected[last] = result
            return tuple(collected[name] for name in names)

    wrapper = LayerOutputs()
    wrapper.eval()
    return wrapper


@contextlib.contextmanager
def _flooring_floor_divide(opset: int) -> Iterator[None]:
    """The TorchScript exporter's ``//`` with Python's rounding.

    It writes ``aten::floor_divide`` as a truncating division ("deprecated behavior"), so a
    size worked out at run time as ``-(-n // s)`` (a ceiling) comes out one short in the graph
    although the model computes it right: during the export its flooring form is registered.
    """
    import torch
    from torch.onnx._internal.torchscript_exporter import symbolic_opset9

    names = ("aten::floor_divide", "aten::floordiv")
    for name in names:
        torch.onnx.register_custom_op_symbolic(name, symbolic_opset9._floor_divide, opset)
    try:
        yield
    finally:
        for name in names:
            torch.onnx.unregister_custom_op_symbolic(name, opset)


def export_torch(
    model,
    layer_names: Sequence[str],
    example: np.ndarray,
    path: str | os.PathLike | None = None,
    *,
    opset: int = 18,
    dynamo: bool = False,
    module_paths: Mapping[str, str] | None = None,
    open_axes: Sequence[bool] = (),
) -> ExportedGraph:
    """Export a torch model with one graph output per observable spec layer and its weights as inputs.

    Args:
        model: the ``nn.Module`` (put into eval mode).
        layer_names: the spec layer names in spec order.
        example: a channels-first float32 input batch (fixes the traced shapes).
        path: also write the deployable file (weights as initializers) there.
        opset: the ONNX opset.
        dynamo: use the dynamo exporter instead of the TorchScript one, with the weights as
            initializers (for benchmarks).
        module_paths: spec layer -> the sub-module whose output reads it (a hand-written model).
        open_axes: per spatial axis, whether the graph takes any size there (a dynamic
            axis named ``H``, ``W``...); the batch is dynamic whenever one is.

    Returns:
        The exported graph and which layers it exposes.
    """
    import onnx
    import torch

    model.eval()
    names, observation = torch_observable_layers(model, layer_names, module_paths)
    tensors = {} if dynamo else _torch_weights(model)
    wrapper = _torch_wrapper(model, names, observation, list(tensors), module_paths)
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    weights = {name: tensor.detach().cpu().numpy() for name, tensor in tensors.items()}
    kwargs: dict[str, Any] = dict(
        input_names=[INPUT_NAME, *weights], output_names=names, opset_version=opset, dynamo=dynamo
    )
    if dynamo:
        kwargs.update(verbose=False, external_data=False)
    if any(open_axes):
        kwargs["dynamic_axes"] = {INPUT_NAME: dynamic_dims(open_axes)}
    buffer = io.BytesIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet_warnings())
        stack.enter_context(torch.no_grad())
        if not dynamo:
            stack.enter_context(_flooring_floor_divide(opset))
        if dynamo:  # the dynamo exporter prints progress lines on stdout
            stack.enter_context(
                contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w")))
            )
        try:
            # torch annotates f as a path, but both exporters also write to a binary buffer
            torch.onnx.export(wrapper, (x, *tensors.values()), buffer, **kwargs)  # type: ignore[arg-type]
        finally:
            wrapper.remove_hooks()
    _silence_loggers()
    proto = onnx.load_from_string(buffer.getvalue())
    present = {value.name for value in proto.graph.input}
    weights = {name: value for name, value in weights.items() if name in present}
    graph = ExportedGraph(
        proto=proto,
        layer_names=names,
        observation=observation,
        output_names=list(names),
        weights=weights,
    )
    return _written(graph, path)


# --------------------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------------------


def keras_observable_layers(
    model, layer_names: Sequence[str], layer_map: Mapping[str, str] | None = None
) -> tuple[list[str], list[Any], str]:
    """The spec layers a Keras model exposes (layers named like them, or as ``layer_map`` says)
    and their symbolic outputs."""
    from cnnspec.importers.keras import operations_of, single_calls

    # the raw ops (x + y) too: the importer reads them as layers
    by_name = {operation.name: operation for operation in operations_of(model)}
    # A layer keeps its calls in other graphs too (a Sequential read from a file): read the model's.
    called_once = single_calls(model)
    names, tensors = [], []
    for name in layer_names[
        :-1
    ]:  # the last spec layer is the model's output, whatever follows its layer
        layer = by_name.get((layer_map or {}).get(name, name))
        if layer is None or id(layer) not in called_once:  # a shared layer has no single output
            continue
        names.append(name)
        tensors.append(called_once[id(layer)].output_tensors[0])
    observation = "get_layer"
    if not names or names[-1] != layer_names[-1]:
        outputs = model.outputs
        if len(outputs) != 1:
            raise ExportError(
                f"the Keras model has {len(outputs)} outputs; cnnspec verifies single-output models"
            )
        names.append(layer_names[-1])
        tensors.append(outputs[0])
        if len(names) == 1:
            observation = "output only"
    return names, tensors, observation


def _keras_input_names(variables) -> list[str]:
    """Graph input names for Keras variables: their paths, or numbered names if paths repeat."""
    paths = [variable.path.replace(":", "_") for variable in variables]
    if len(set(paths)) == len(paths) and INPUT_NAME not in paths:
        return paths
    return [f"weight_{index}" for index in range(len(variables))]


@contextlib.contextmanager
def _one_walk_subgraph_extraction() -> Iterator[None]:
    """tf2onnx's ``Graph.extract_sub_graph_nodes`` with one shared walk instead of one walk per output.

    tf2onnx walks the whole graph back from every output separately, several times per
    conversion: with one output per layer that is quadratic in the layer count (ResNet-50:
    ~440 walks of ~1,500 nodes, 6 times).  The set of nodes it returns is the union of the
    walks, which one walk with a shared visited set gives identically.
    """
    from tf2onnx.graph import Graph

    original = Graph.extract_sub_graph_nodes

    def extract_sub_graph_nodes(self, outputs_name, input_checker=None, remove_unused_inputs=True):
        wanted = list(outputs_name)
        if not remove_unused_inputs:
            wanted += [value.output[0] for value in self.inputs]
        found: set = set()
        pending = []
        for output in wanted:
            node = self.get_node_by_output(output, search_in_parent_graphs=False)
            if node and node not in found and not (input_checker and input_checker(node) is False):
                found.add(node)
                pending.append(node)
        while pending:
            node = pending.pop()
            for name in node.input + list(node.get_implicit_inputs()):
                source = self.get_node_by_output(name, search_in_parent_graphs=False)
                if (
                    source
                    and source not in found
                    and not (input_checker and input_checker(source) is False)
                ):
                    found.add(source)
                    pending.append(source)
        return list(found)

    Graph.extract_sub_graph_nodes = extract_sub_graph_nodes
    try:
        yield
    finally:
        Graph.extract_sub_graph_nodes = original


@contextlib.contextmanager
def _flooring_integer_division() -> Iterator[None]:
    """tf2onnx's ``FloorDiv`` with Python's rounding for integers too.

    tf2onnx converts an integer ``FloorDiv`` to ONNX ``Div``, which truncates: ``-7 // 2`` becomes
    -3, not -4.  A layer computing sizes at run time (``-(-n // s)``, a ceiling) then gets other
    sizes in the graph than in Keras.  Here ``x // y = (x − x mod y) / y``: ONNX ``Mod`` with
    ``fmod=0`` takes the divisor's sign, as Python's ``%`` does, so the division is exact.
    """
    from onnx import TensorProto
    from tf2onnx import constants
    from tf2onnx.handler import tf_op

    opsets = tf_op.get_opsets()[constants.ONNX_DOMAIN]
    version = max(v for v, table in enumerate(opsets) if "FloorDiv" in table)
    original, kwargs = opsets[version]["FloorDiv"]
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)

    def floor_div(ctx, node, **options):
        dtype = ctx.get_dtype(node.input[0])
        if dtype in floats:
            return original(ctx, node, **options)
        x, y = node.input[0], node.input[1]
        remainder = ctx.make_node("Mod", [x, y], attr={"fmod": 0}, dtypes=[dtype])
        exact = ctx.make_node("Sub", [x, remainder.output[0]], dtypes=[dtype])
        node.type = "Div"
        ctx.replace_inputs(node, [exact.output[0], y])
        return None

    opsets[version]["FloorDiv"] = (floor_div, kwargs)
    try:
        yield
    finally:
        opsets[version]["FloorDiv"] = (original, kwargs)


@contextlib.contextmanager
def _complementary_error_function() -> Iterator[None]:
    """tf2onnx reads TensorFlow's ``Erfc`` as ``1 − Erf``.

    TensorFlow's exact GELU is ``0.5·x·erfc(−x/√2)`` (Keras ConvNeXt's activation), and
    tf2onnx 1.17 has no handler for ``Erfc``; ONNX has ``Erf`` only.
    """
    from tf2onnx import constants, utils
    from tf2onnx.handler import tf_op

    opsets = tf_op.get_opsets()[constants.ONNX_DOMAIN]
    version = min(v for v, table in enumerate(opsets) if "Erf" in table)

    def erfc(ctx, node, **options):
        dtype = ctx.get_dtype(node.input[0])
        erf = ctx.make_node("Erf", [node.input[0]], dtypes=[dtype])
        one = ctx.make_const(
            utils.make_name(f"{node.name}_one"),
            np.array(1, dtype=utils.map_onnx_to_numpy_type(dtype)),
        )
        node.type = "Sub"
        ctx.replace_inputs(node, [one.output[0], erf.output[0]])

    had = "Erfc" in opsets[version]
    previous = opsets[version].get("Erfc")
    opsets[version]["Erfc"] = (erfc, {})
    try:
        yield
    finally:
        if had:
            opsets[version]["Erfc"] = previous
        else:
            del opsets[version]["Erfc"]


def _compiled_calls_inlined(graph_def):
    """The graph with the XLA-compiled function calls made ordinary, so that grappler inlines them.

    Keras runs a grouped convolution through ``tf.function(jit_compile=True)`` (TensorFlow's CPU
    kernel for it is broken); the traced graph keeps it as a ``PartitionedCall`` marked
    ``_XlaMustCompile`` and ``_noinline``, which grappler leaves alone and tf2onnx cannot read.  Unmarked, it is
    inlined into the plain ``Conv2D`` it wraps, which tf2onnx converts to a grouped ``Conv``.
    Nothing runs in TensorFlow here, so its CPU kernel is never used.
    """
    # (A protobuf map's [] inserts a missing key: look with `in` first.)
    compiled = set()
    for function in graph_def.library.function:
        if "_XlaMustCompile" in function.attr and function.attr["_XlaMustCompile"].b:
            compiled.add(function.signature.name)
            for key in ("_XlaMustCompile", "_noinline"):
                if key in function.attr:
                    del function.attr[key]
    for node in graph_def.node:
        if "f" in node.attr and node.attr["f"].func.name in compiled:
            if "_XlaMustCompile" in node.attr:
                del node.attr["_XlaMustCompile"]
    return graph_def


@contextlib.contextmanager
def _bulk_output_renaming() -> Iterator[None]:
    """tf2onnx's ``Graph.replace_all_inputs`` over an explicit node list, without a call per node.

    When tf2onnx builds a graph it renames every graph output through this method with the list
    of *all* nodes, registering each node as a consumer of the new name one call at a time:
    with one output per layer that is quadratic (ResNet-50: 281 outputs x ~1,000 nodes).  The
    replacement registers the same node names in one set update and rewrites the inputs of the
    same nodes, so the graph's state afterwards is identical.  Subgraphs (a parent graph, or an
    input used by a subgraph) keep the original code.
    """
    from tf2onnx.graph import Graph

    original = Graph.replace_all_inputs

    def replace_all_inputs(self, old_input, new_input, ops=None):
        if ops is None or self.parent_graph is not None or old_input in self._input_to_graph:
            return original(self, old_input, new_input, ops=ops)
        if old_input == new_input:
            return None
        nodes = list(ops)
        if ops is self._nodes and len(nodes) == len(self._nodes_by_name):
            names = self._nodes_by_name.keys()  # the same names, without a Python call per node
        else:
            names = {node.name for node in nodes}
        self._output_to_consumers.setdefault(new_input, set()).update(names)
        for node in nodes:
            if old_input not in node.input:
                continue
            if new_input in node.output:
                raise RuntimeError("creating a circle in the graph is not allowed: " + node.name)
            for index, input_name in enumerate(node.input):
                if input_name == old_input:
                    self.replace_input(node, node.input[index], new_input, index)
        return None

    Graph.replace_all_inputs = replace_all_inputs
    try:
        yield
    finally:
        Graph.replace_all_inputs = original


@contextlib.contextmanager
def _input_check_by_identity() -> Iterator[None]:
    """tf2onnx's ``Graph.reset_nodes``, with its last check (is every graph input still a node?)
    made on a set of node identities instead of one list scan per input.

    The method runs after every rewriter, and with the weights as graph inputs the scans were
    quadratic (ResNet-50: 268 inputs x ~1,500 nodes, 40 times; 0.06 s of the export).  Where
    the check would fail, the original runs as it is, to fail the same way.
    """
    from tf2onnx.graph import Graph

    original = Graph.reset_nodes

    def reset_nodes(self, ops):
        present = {id(node) for node in ops}
        if not all(id(node) in present for node in self.inputs):
            return original(self, ops)
        inputs, self.inputs = self.inputs, []
        try:
            return original(self, ops)
        finally:
            self.inputs = inputs

    Graph.reset_nodes = reset_nodes
    try:
        yield
    finally:
        Graph.reset_nodes = original


# tf2onnx 1.17's rewriters that have nothing to rewrite in a graph without one of these ops:
# every pattern of theirs, or the loop they start from, has one.  The four loop rewriters also drop
# the nodes no graph output needs (``LoopCond`` below).
_REWRITER_NEEDS = {
    "rewrite_random_uniform": {"RandomUniform"},
    "rewrite_random_uniform_fold_const": {"RandomUniform"},
    "rewrite_random_normal": {"RandomStandardNormal"},
    "rewrite_dropout": {"RandomUniform", "RandomUniformLike"},
    "rewrite_eye": {"MatrixDiag", "MatrixSetDiag"},
    "rewriter_lstm_tf2": {"TensorListGetItem"},
    "rewrite_gru_tf2": {"TensorListGetItem"},
    "rewrite_single_direction_lstm": {"LoopCond"},
    "rewrite_bi_direction_lstm": {"LSTM"},
    "rewrite_single_direction_gru": {"LoopCond"},
    "rewrite_bi_direction_gru": {"GRU"},
    "rewrite_custom_rnn_cell": {"LoopCond"},
    "rewrite_generic_loop": {"LoopCond"},
    "rewrite_ragged_variant_shape": {"RaggedTensorToVariant"},
}


@contextlib.contextmanager
def _rewriters_with_something_to_rewrite() -> Iterator[None]:
    """tf2onnx's rewriter pass without the rewriters that would find nothing (:data:`_REWRITER_NEEDS`).

    Each rewriter walks the whole graph and re-indexes it after; the recurrent, loop, random and
    eye ones took ~0.08 s of the ResNet-50 export and never match a graph without their ops.  A
    loop rewriter skipped still drops the nodes no output needs, as it would have; a graph with
    subgraphs gets every rewriter.
    """
    from tf2onnx import tfonnx

    original = tfonnx.run_rewriters

    def run_rewriters(g, funcs, continue_on_error):
        if g.contained_graphs:
            return original(g, funcs, continue_on_error)
        present: set[str] | None = None
        for func in funcs:
            needs = _REWRITER_NEEDS.get(func.__name__)
            if needs is not None:
                if present is None:
                    present = {node.type for node in g.get_nodes()}
                if not needs & present:
                    if "LoopCond" in needs:
                        g.delete_unused_nodes(g.outputs)
                    continue
            original(g, [func], continue_on_error)
            present = None
        return None

    tfonnx.run_rewriters = run_rewriters
    try:
        yield
    finally:
        tfonnx.run_rewriters = original


def _captures_as_constants(function, explicit: int, graph_def):
    """The graph with the tensors the traced function captured (a layer's constant mean, say) as Const nodes.

    The function's inputs after the ``explicit`` ones are placeholders for captured eager tensors;
    left as placeholders they would become graph inputs nobody feeds.
    """
    import tensorflow as tf

    values = {
        placeholder.op.name: captured
        for placeholder, captured in zip(function.inputs[explicit:], function.captured_inputs)
    }
    for node in graph_def.node:
        captured = values.get(node.name)
        if captured is None or node.op != "Placeholder" or captured.dtype == tf.resource:
            continue
        constant = tf.make_tensor_proto(captured.numpy())
        node.op = "Const"
        for key in list(node.attr):
            if key not in ("_output_shapes",):
                del node.attr[key]
        node.attr["dtype"].type = constant.dtype
        node.attr["value"].tensor.CopyFrom(constant)
    return graph_def


def export_keras(
    model,
    layer_names: Sequence[str],
    input_shape_last: Sequence[int | None],
    path: str | os.PathLike | None = None,
    *,
    opset: int = 18,
    layer_map: Mapping[str, str] | None = None,
) -> ExportedGraph:
    """Convert a Keras model to ONNX with one graph output per observable spec layer and its weights as inputs.

    Args:
        model: a functional ``keras.Model``.
        layer_names: the spec layer names in spec order.
        input_shape_last: the channels-last input shape without the batch dimension; None
            for an axis the graph takes at any size.
        path: also write the deployable file (weights as initializers) there.
        opset: the ONNX opset.
        layer_map: spec layer -> the Keras layer whose output reads it (a hand-written model).

    Returns:
        The exported graph; its input is named ``input`` with a dynamic batch dimension.
    """
    import keras
    import tensorflow as tf
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common, tensor_names_from_structed

    from cnnspec.importers.keras import flat_model

    model = flat_model(model)  # a nested model's layers read like the others
    names, tensors, observation = keras_observable_layers(model, layer_names, layer_map)
    tap = keras.Model(model.inputs, tensors, name=f"{model.name}_layer_outputs")
    trainable, non_trainable = list(tap.trainable_variables), list(tap.non_trainable_variables)
    variables = trainable + non_trainable
    input_names = _keras_input_names(variables)
    signature = [tf.TensorSpec((None, *input_shape_last), tf.float32, name=INPUT_NAME)]
    signature += [
        tf.TensorSpec(v.shape, v.dtype, name=name) for v, name in zip(variables, input_names)
    ]
    split = len(trainable)

    # No autograph, as in Keras' own export: Keras layers need none, and converting this
    # function's source took 0.1-0.5 s of the first export in a process.
    @tf.function(autograph=False)
    def layer_outputs(x, *values):
        outputs, _ = tap.stateless_call(
            list(values[:split]), list(values[split:]), x, training=False
        )
        return outputs if isinstance(outputs, (list, tuple)) else [outputs]

    with (
        quiet_warnings(),
        tf.device("/cpu:0"),
        _one_walk_subgraph_extraction(),
        _flooring_integer_division(),
        _complementary_error_function(),
        _bulk_output_renaming(),
        _input_check_by_identity(),
        _rewriters_with_something_to_rewrite(),
    ):
        function = layer_outputs.get_concrete_function(*signature)
        graph_inputs = [tensor.name for tensor in function.inputs[: len(signature)]]
        graph_outputs = [tensor.name for tensor in function.outputs]
        # Nothing to freeze (every variable is an input): the traced graph goes straight to grappler.
        graph_def = _captures_as_constants(
            function, len(signature), function.graph.as_graph_def(add_shapes=True)
        )
        graph_def = _compiled_calls_inlined(tf_loader.fix_freezing_errors_part2(graph_def))
        with tf.Graph().as_default():  # grappler runs on a graph, not eagerly
            frozen = tf_loader.tf_optimize(graph_inputs, graph_outputs, graph_def)
        proto, _ = _convert_common(
            frozen,
            name=tap.name,
            continue_on_error=True,
            opset=opset,
            optimizers={},
            input_names=graph_inputs,
            output_names=graph_outputs,
            tensors_to_rename=tensor_names_from_structed(function, graph_inputs, graph_outputs),
        )
    _silence_loggers()
    output_names = [output.name for output in proto.graph.output]
    if len(output_names) != len(names):
        raise ExportError(
            f"tf2onnx produced {len(output_names)} outputs for {len(names)} layer outputs"
        )
    present = {value.name for value in proto.graph.input}
    weights = {
        # the variable's own buffer, not a copy (100 MB for ResNet-50): TensorFlow copies on write
        name: np.asarray(variable.value.read_value())
        for name, variable in zip(input_names, variables)
        if name in present
    }
    graph = ExportedGraph(
        proto=proto,
        layer_names=names,
        observation=observation,
        output_names=output_names,
        weights=weights,
    )
    return _written(graph, path)


def _written(graph: ExportedGraph, path: str | os.PathLike | None) -> ExportedGraph:
    if path is not None:
        path = Path(path)
        graph.path = save_graph(graph, path.parent, path.name)
    return graph


# --------------------------------------------------------------------------------------
# Checking, counting, running
# --------------------------------------------------------------------------------------


def check_graph(graph: ExportedGraph, name: str) -> None:
    """Run ``onnx.checker.check_model`` on a graph (its structure: the weights are inputs).

    Raises:
        ExportError: the checker rejects the graph.
    """
    import onnx

    try:
        onnx.checker.check_model(graph.proto)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"{name}: onnx.checker rejected the graph: {error}") from None


_FLOAT_TYPES = (1, 11, 10, 16)  # onnx.TensorProto FLOAT, DOUBLE, FLOAT16, BFLOAT16


def parameter_counts(graph: ExportedGraph) -> dict[str, int]:
    """Element counts of a graph's floating-point tensors of rank >= 1.

    Weight inputs, initializers and ``Constant`` nodes all count (exporters store constants
    such as resize scales as either); integer tensors (shapes, indices) and scalars do not.

    Returns:
        ``{"elements": ..., "weights": ..., "constants": ...}``: all, fed weight inputs, constants.
    """
    weights = sum(
        int(value.size)
        for value in graph.weights.values()
        if value.ndim >= 1 and np.issubdtype(value.dtype, np.floating)
    )
    constants = initializer_counts(graph.proto)["elements"]
    return {"elements": weights + constants, "weights": weights, "constants": constants}


def initializer_counts(proto) -> dict[str, int]:
    """Element counts of an ONNX graph's floating-point initializers and ``Constant`` tensors of rank >= 1.

    Returns:
        ``{"elements": ..., "tensors": ...}``.
    """
    elements = tensors = 0

    def add(tensor) -> None:
        nonlocal elements, tensors
        if tensor.data_type in _FLOAT_TYPES and len(tensor.dims) >= 1:
            elements += int(np.prod(tensor.dims))
            tensors += 1

    for tensor in proto.graph.initializer:
        add(tensor)
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.HasField("t"):
                    add(attribute.t)
    return {"elements": elements, "tensors": tensors}


def op_counts(proto) -> dict[str, int]:
    """How many nodes of each op type an ONNX graph has."""
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def session(model) -> Any:
    """An onnxruntime CPU session with graph optimisations on, except the rewrites in :data:`WRONG_REWRITES`.

    Args:
        model: a path, serialised bytes or an ``onnx.ModelProto``.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif not isinstance(model, bytes):
        model = str(model)
    return ort.InferenceSession(
        model,
        sess_options=options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(WRONG_REWRITES),
    )


def run_graph(graph: ExportedGraph, inputs: np.ndarray) -> list[np.ndarray]:
    """Run a graph in onnxruntime with its weights fed as inputs; every graph output, in graph order.

    The session is made once per graph (a graph of open size runs at several sizes).
    """
    if graph.runner is None:
        graph.runner = session(graph.proto)
    return _run_session(graph.runner, inputs, graph.weights)


def run_onnx(
    model, inputs: np.ndarray, weights: dict[str, np.ndarray] | None = None
) -> list[np.ndarray]:
    """Run an ONNX model (path, bytes or proto) in onnxruntime (CPU) and return every graph output, in order.

    Args:
        model: the graph.
        inputs: the data, fed to the first graph input.
        weights: values of the other graph inputs, by name.
    """
    return _run_session(session(model), inputs, weights)


def _run_session(runner, inputs: np.ndarray, weights: dict[str, np.ndarray] | None):
    data_input = runner.get_inputs()[0].name
    feed = {data_input: np.ascontiguousarray(inputs, dtype=np.float32)}
    for value in runner.get_inputs()[1:]:
        feed[value.name] = np.ascontiguousarray((weights or {})[value.name])
    return [np.asarray(value) for value in runner.run(None, feed)]
