"""A deployable ONNX model of a spec: the emitted graph with its weights as initializers."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from cnnspec.engine.plan import Plan
from cnnspec.errors import BackendUnavailable, CnnspecError


def require_onnx() -> None:
    """Raise :class:`BackendUnavailable` (with the pip extra) when the onnx package is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError as error:
        raise BackendUnavailable(
            f"the onnx target needs the onnx package ({error}); "
            "install it with: pip install 'cnnspec[onnx]'"
        ) from None


def build_onnx(plan: Plan, weights: dict[str, np.ndarray] | None = None, *, seed: int = 0):
    """The spec as an ONNX model (opset 18, channels-first) whose output is the last spec layer.

    Args:
        plan: the resolved spec.
        weights: the plan's tensors by ``<layer>.<tensor>`` name, channels-first (see
            :mod:`cnnspec.targets.onnx.weights`); default seeded weights initialised as a
            fresh PyTorch model's are (:func:`~cnnspec.targets.onnx.emit.initial_weights`).
        seed: the seed of the initial weights.

    Returns:
        The ``onnx.ModelProto``; its graph passes ``onnx.checker`` with strict full shape
        inference.  A spec with open sizes gets symbolic dimensions (``H``, ``W``) where its
        graph takes any size (:func:`open_graph`).
    """
    from cnnspec.targets.onnx.emit import attach_weights, initial_weights

    require_onnx()
    graph = open_graph(plan)
    # The structure is checked while the weights are still inputs of the same shapes: the checker
    # then need not copy hundreds of megabytes of initializers.
    check_strict(graph.proto)
    return attach_weights(graph, initial_weights(graph, seed) if weights is None else weights)


def open_graph(plan: Plan):
    """The model's graph (only its output exposed); with symbolic spatial dimensions when the
    spec leaves its size open and every layer computes its sizes at run time, else fixed at
    the planning size (:func:`fixed_size_reason` says why)."""
    from cnnspec.targets.onnx.emit import emit_graph

    return emit_graph(plan, every_layer=False, open_size=fixed_size_reason(plan) is None)


def fixed_size_reason(plan: Plan) -> str | None:
    """Why the ONNX graph of an open-size spec is fixed at its planning size, or None."""
    from cnnspec.targets.onnx.emit import size_dependent_layer

    layer = size_dependent_layer(plan)
    if layer is None:
        return None
    return (
        f"layer '{layer}' ({plan.layer(layer).type}) has no ONNX form that follows the input size: "
        f"the graph takes {'×'.join(map(str, plan.input_shape[1:]))} only"
    )


def check_strict(model) -> None:
    """``onnx.checker`` with full, strict shape inference.

    Raises:
        CnnspecError: the checker or the shape inference rejects the model.
    """
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise CnnspecError(f"the emitted ONNX graph is invalid: {error}") from None


def save_onnx(
    model,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    weights_file: str | os.PathLike | None = None,
) -> Path:
    """Write an ONNX model atomically; with ``weights_file``, its weights go there as ONNX external data.

    Args:
        model: the ``onnx.ModelProto``.
        path: the .onnx file.
        overwrite: replace existing files (otherwise :class:`OutputExistsError`).
        weights_file: a file in the same directory as ``path`` for the initializers; the
            model refers to it by name.
    """
    import onnx

    from cnnspec.atomic import atomic_path

    path = Path(path)
    if (
        weights_file is None
        and sum(len(t.raw_data) for t in model.graph.initializer) > 1_800_000_000
    ):
        raise CnnspecError(
            f"{path}: the model's weights pass protobuf's 2 GB limit; "
            "give --save-weights FILE to store them beside it"
        )
    (path.parent if str(path.parent) else Path(".")).mkdir(parents=True, exist_ok=True)
    if weights_file is None:
        data = model.SerializeToString()  # raises past protobuf's 2 GB: then use weights_file
        with atomic_path(path, overwrite=overwrite) as temp:
            Path(temp).write_bytes(data)
        return path
    weights_file = Path(weights_file)
    if weights_file.resolve().parent != path.resolve().parent:
        raise CnnspecError(
            f"--save-weights {weights_file}: ONNX external weights must be in the directory of {path}"
        )
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    with atomic_path(weights_file, overwrite=overwrite) as temp_weights:
        with open(temp_weights, "wb") as handle:
            for tensor in copy.graph.initializer:
                if "/" in tensor.name:  # the graph's own constants (``<layer>/<role>``) stay inline
                    continue
                offset = handle.tell()
                handle.write(tensor.raw_data)
                _set_external(tensor, weights_file.name, offset, len(tensor.raw_data))
        with atomic_path(path, overwrite=overwrite) as temp:
            with open(temp, "wb") as handle:
                handle.write(copy.SerializeToString())
    return path


def _set_external(tensor, location: str, offset: int, length: int) -> None:
    from onnx import TensorProto

    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = TensorProto.EXTERNAL
    tensor.ClearField("raw_data")


def write_onnx(
    plan: Plan,
    path: str | os.PathLike,
    weights: dict[str, np.ndarray] | None = None,
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the spec's ONNX model (what :func:`build_onnx` returns) to ``path``, streaming the weights.

    The weights go from their arrays straight into the file: no protobuf message holding them
    is built or serialised (for ResNet-50 that is two 100 MB copies saved).  The file is the
    same protobuf encoding ``onnx.save`` would write, field order aside.

    Raises:
        OutputExistsError: ``path`` exists and ``overwrite`` is false.
        CnnspecError: a weight is missing or has the wrong shape.
    """
    from cnnspec.atomic import atomic_path
    from cnnspec.targets.onnx.emit import check_weights, initial_tensors

    require_onnx()
    graph = open_graph(plan)
    check_strict(graph.proto)
    if weights is None:
        arrays = (values for _, values in initial_tensors(graph, seed))
    else:
        check_weights(graph, weights)
        arrays = (weights[name] for name in graph.weight_shapes)
    path = Path(path)
    (path.parent if str(path.parent) else Path(".")).mkdir(parents=True, exist_ok=True)
    with atomic_path(path, overwrite=overwrite) as temp, open(temp, "wb") as handle:
        _stream_model(graph, arrays, handle)
    return path


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


# Protobuf keys (field number << 3 | wire type 2, length-delimited) of the fields written by hand.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = b"\x3a", b"\x2a", b"\x4a"


def _stream_model(graph, arrays: Iterable[np.ndarray], handle) -> None:
    """ModelProto bytes: the model and graph without the weights, then one initializer per weight.

    ``arrays`` are the weights in ``graph.weight_shapes`` order, each taken only when its bytes
    are written.
    """
    from onnx import ModelProto, TensorProto

    model = ModelProto()
    model.CopyFrom(graph.proto)
    kept = [value for value in model.graph.input if value.name not in graph.weight_shapes]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    graph_head = model.graph.SerializeToString()
    model.ClearField("graph")
    heads = []
    for name, shape in graph.weight_shapes.items():
        nbytes = 4 * math.prod(shape)
        head = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape).SerializeToString()
        head += _TENSOR_RAW_DATA + _varint(nbytes)
        heads.append(_GRAPH_INITIALIZER + _varint(len(head) + nbytes) + head)
    graph_length = len(graph_head) + sum(
        len(head) + 4 * math.prod(shape) for head, shape in zip(heads, graph.weight_shapes.values())
    )
    handle.write(model.SerializeToString() + _MODEL_GRAPH + _varint(graph_length) + graph_head)
    for head, values in zip(heads, arrays, strict=True):
        handle.write(head)
        handle.write(np.ascontiguousarray(values, dtype="<f4").data.cast("B"))
