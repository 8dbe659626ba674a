"""Export the PyTorch and Keras models of a spec to ONNX, with every spec layer's output as a graph output.

Both exports put one graph output per observable spec layer, named by the spec layer name
and in spec order, so the two ONNX graphs can be run in onnxruntime and compared layer by
layer:

* PyTorch: a wrapper module whose ``forward`` returns a tuple with one tensor per spec layer
  is exported with the TorchScript-based exporter (``dynamo=False``: 2-50x faster than the
  dynamo exporter and one self-contained file).  The tensors come from the generated
  model's ``forward_layers``; for a hand-written model without it, from forward hooks on the
  sub-modules named like spec layers; else only the model's output is observable.  Because
  every layer's output is a graph output, the exporter cannot fold BatchNorm into the
  convolution before it, so each layer keeps its exact semantics.
* Keras: a "tap" model whose outputs are ``model.get_layer(name).output`` for each spec layer
  is converted with ``tf2onnx.convert.from_keras(..., optimizers={})`` (the optimizer passes
  take 3-4x longer and change no number).  The ONNX input is named ``input``.

Framework log noise (TF C++ banners, absl, the legacy-exporter deprecation warning) is
silenced here; exceptions are never swallowed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

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


@dataclass
class ExportedGraph:
    """One ONNX file with per-layer outputs.

    Attributes:
        path: the .onnx file.
        layer_names: the spec layers observable in the graph, in spec order; the i-th graph
            output holds the i-th of them.
        observation: how the layer outputs were obtained (``forward_layers``, ``hooks``,
            ``get_layer`` or ``output only``).
        output_names: the graph's own output names (same order as ``layer_names``).
    """

    path: Path
    layer_names: list[str]
    observation: str
    output_names: list[str] = field(default_factory=list)


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


def import_frameworks() -> dict[str, str]:
    """Import torch, keras (TensorFlow backend), onnx, onnxruntime and tf2onnx, quietly.

    Returns:
        Their versions by name.

    Raises:
        BackendUnavailable: one of them is not installed (with the pip extra to install).
    """
    _prepare_environment()
    versions: dict[str, str] = {}
    extras = {"torch": "torch", "tensorflow": "keras", "keras": "keras", "onnx": "verify", "onnxruntime": "verify", "tf2onnx": "verify"}
    with quiet_warnings():
        for name in ("torch", "tensorflow", "keras", "onnx", "onnxruntime", "tf2onnx"):
            try:
                module = __import__(name)
            except ImportError as exc:
                raise BackendUnavailable(
                    f"cnnspec verify needs {name}, which is not installed ({exc}); "
                    f"install it with: pip install 'cnnspec[{extras[name]},verify]'"
                ) from None
            versions[name] = getattr(module, "__version__", "?")
    _silence_loggers()
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


def keep_file(source: Path, directory: str | os.PathLike, file_name: str) -> Path:
    """Copy ``source`` to ``directory/file_name`` atomically (a temp file beside it, then a rename)."""
    from cnnspec.atomic import atomic_path

    target_dir = Path(directory)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / file_name
    with atomic_path(target, overwrite=True) as temp_path:
        shutil.copyfile(source, temp_path)
    return target


# --------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------


def torch_observable_layers(model, layer_names: Sequence[str],
                            module_paths: Mapping[str, str] | None = None) -> tuple[list[str], str]:
    """Which spec layers a torch model exposes, and how.

    Returns:
        ``(names, observation)``: all spec layers with ``forward_layers``; with ``hooks`` the
        spec layers that have a sub-module of that name (plus the last spec layer, taken from
        the model's output); with ``output only`` just the last spec layer.  ``module_paths``
        maps spec layers to the sub-modules that read them (default: the sub-module of that name).
    """
    names = list(layer_names)
    if callable(getattr(model, "forward_layers", None)):
        return names, "forward_layers"
    modules = dict(model.named_modules())
    paths = module_paths or {}
    hooked = [name for name in names[:-1] if paths.get(name, name) in modules and paths.get(name, name) != ""]
    if hooked:
        if names[-1] not in hooked:
            hooked.append(names[-1])
        return hooked, "hooks"
    return [names[-1]], "output only"


def _torch_wrapper(model, names: list[str], observation: str, module_paths: Mapping[str, str] | None = None):
    """An nn.Module whose forward returns the tuple of the observed layers' outputs."""
    import torch

    last = names[-1]

    class LayerOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self._hooked: list[str] = []
            self._handles: list = []
            self._sink: list[dict | None] = [None]  # a list, not a tensor attribute: keeps tracing clean
            if observation == "hooks":
                modules = dict(model.named_modules())
                paths = module_paths or {}
                for name in names[:-1]:  # the last spec layer is the model's output, whatever follows its part
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

        def forward(self, x):
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


def export_torch(model, layer_names: Sequence[str], example: np.ndarray, path: str | os.PathLike, *, opset: int = 18,
                 dynamo: bool = False, module_paths: Mapping[str, str] | None = None) -> ExportedGraph:
    """Export a torch model with one graph output per observable spec layer.

    Args:
        model: the ``nn.Module`` (put into eval mode).
        layer_names: the spec layer names in spec order.
        example: a channels-first float32 input batch (fixes the traced shapes).
        path: the .onnx file to write.
        opset: the ONNX opset.
        dynamo: use the dynamo exporter instead of the TorchScript one (for benchmarks).
        module_paths: spec layer -> the sub-module whose output reads it (a hand-written model).

    Returns:
        The exported graph and which layers it exposes.
    """
    import torch

    model.eval()
    names, observation = torch_observable_layers(model, layer_names, module_paths)
    wrapper = _torch_wrapper(model, names, observation, module_paths)
    x = torch.from_numpy(np.ascontiguousarray(example, dtype=np.float32))
    path = Path(path)
    kwargs: dict[str, Any] = dict(input_names=[INPUT_NAME], output_names=names, opset_version=opset, dynamo=dynamo)
    if dynamo:
        kwargs.update(verbose=False, external_data=False)
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet_warnings())
        stack.enter_context(torch.no_grad())
        if dynamo:  # the dynamo exporter prints progress lines on stdout
            stack.enter_context(contextlib.redirect_stdout(stack.enter_context(open(os.devnull, "w"))))
        try:
            torch.onnx.export(wrapper, (x,), str(path), **kwargs)
        finally:
            wrapper.remove_hooks()
    _silence_loggers()
    return ExportedGraph(path=path, layer_names=names, observation=observation, output_names=list(names))


# --------------------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------------------


def keras_observable_layers(model, layer_names: Sequence[str],
                            layer_map: Mapping[str, str] | None = None) -> tuple[list[str], list[Any], str]:
    """The spec layers a Keras model exposes (layers named like them, or as ``layer_map`` says)
    and their symbolic outputs."""
    by_name = {layer.name: layer for layer in model.layers}
    names, tensors = [], []
    for name in layer_names[:-1]:  # the last spec layer is the model's output, whatever follows its layer
        layer = by_name.get((layer_map or {}).get(name, name))
        if layer is None:
            continue
        try:
            tensor = layer.output
        except (AttributeError, ValueError):  # a layer called several times has no single output
            continue
        names.append(name)
        tensors.append(tensor)
    observation = "get_layer"
    if not names or names[-1] != layer_names[-1]:
        outputs = model.outputs
        if len(outputs) != 1:
            raise ExportError(f"the Keras model has {len(outputs)} outputs; cnnspec verifies single-output models")
        names.append(layer_names[-1])
        tensors.append(outputs[0])
        if len(names) == 1:
            observation = "output only"
    return names, tensors, observation


def export_keras(model, layer_names: Sequence[str], input_shape_last: Sequence[int], path: str | os.PathLike, *,
                 opset: int = 18, layer_map: Mapping[str, str] | None = None) -> ExportedGraph:
    """Convert a Keras model to ONNX with one graph output per observable spec layer.

    Args:
        model: a functional ``keras.Model``.
        layer_names: the spec layer names in spec order.
        input_shape_last: the channels-last input shape without the batch dimension.
        path: the .onnx file to write.
        opset: the ONNX opset.
        layer_map: spec layer -> the Keras layer whose output reads it (a hand-written model).

    Returns:
        The exported graph; its input is named ``input`` with a dynamic batch dimension.
    """
    import keras
    import tensorflow as tf
    import tf2onnx

    names, tensors, observation = keras_observable_layers(model, layer_names, layer_map)
    tap = keras.Model(model.inputs, tensors, name=f"{model.name}_layer_outputs")
    signature = (tf.TensorSpec((None, *input_shape_last), tf.float32, name=INPUT_NAME),)
    path = Path(path)
    with quiet_warnings():
        proto, _ = tf2onnx.convert.from_keras(tap, input_signature=signature, opset=opset, optimizers={}, output_path=str(path))
    _silence_loggers()
    output_names = [output.name for output in proto.graph.output]
    if len(output_names) != len(names):
        raise ExportError(f"tf2onnx produced {len(output_names)} outputs for {len(names)} layer outputs")
    return ExportedGraph(path=path, layer_names=names, observation=observation, output_names=output_names)


# --------------------------------------------------------------------------------------
# Checking, counting, running
# --------------------------------------------------------------------------------------


def load_and_check(path: str | os.PathLike):
    """Load an ONNX file and run ``onnx.checker.check_model`` on it.

    Raises:
        ExportError: the checker rejects the graph.
    """
    import onnx

    path = Path(path)
    proto = onnx.load(str(path))
    try:
        if path.stat().st_size < 1_800_000_000:
            onnx.checker.check_model(proto)
        else:  # the proto cannot be serialised in memory past 2 GB; let the checker read the file
            onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as error:
        raise ExportError(f"{path.name}: onnx.checker rejected the graph: {error}") from None
    return proto


def initializer_counts(proto) -> dict[str, int]:
    """Element counts of an ONNX graph's floating-point tensors of rank >= 1.

    Initializers and ``Constant`` nodes both count (exporters use either); integer tensors
    (shapes, indices) and scalars do not.

    Returns:
        ``{"elements": ..., "tensors": ...}``.
    """
    from onnx import TensorProto

    float_types = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    elements = tensors = 0

    def add(tensor) -> None:
        nonlocal elements, tensors
        if tensor.data_type in float_types and len(tensor.dims) >= 1:
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


def run_onnx(path: str | os.PathLike, inputs: np.ndarray) -> list[np.ndarray]:
    """Run an ONNX file in onnxruntime (CPU) and return every graph output, in graph order."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # onnxruntime's graph optimisations fold a zero Pad into a following MaxPool, which lets the
    # padding win the max on negative inputs (wrong numbers); the proof must run the graph as written.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(inputs, dtype=np.float32)}
    return [np.asarray(value) for value in session.run(None, feed)]
