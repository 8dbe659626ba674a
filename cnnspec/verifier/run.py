"""``cnnspec.verify``: prove that the PyTorch and Keras models of a spec are the same network.

The steps (each timed in the report):

1. ``import``: torch, keras (TensorFlow), onnx, onnxruntime, tf2onnx.
2. ``build``: both models from the generated source (unless given).
3. ``transfer``: seeded, non-degenerate torch weights (BatchNorm statistics too), copied
   into the Keras model.
4. ``export_torch`` / ``export_keras``: ONNX graphs with every spec layer's output as a
   graph output and the weights as graph inputs, checked with ``onnx.checker``.
5. ``run_torch`` / ``run_keras``: onnxruntime on one seeded input (NCHW for torch, the same
   values channels-last for Keras), the weights fed beside it.
6. ``referee``: the spec's own ONNX graph, emitted from the plan, run with the same weights.
7. ``compare``: every layer's shape against the plan, every layer's values across layouts,
   each model against the referee, and the parameter counts of spec, torch, Keras and both graphs.

ONNX is the proof: both models are compared as exported graphs, run by the same runtime.

When both models are built from the spec, the PyTorch side runs in a second process beside the
Keras side (:mod:`cnnspec.verifier.torch_worker`), with the same report.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

import numpy as np

from cnnspec.errors import CnnspecError, SpecError
from cnnspec.verifier import compare as C
from cnnspec.verifier.compare import DEFAULT_ATOL, DEFAULT_RTOL
from cnnspec.verifier.onnx_export import ONNX_FILES
from cnnspec.verifier.report import (
    TIMING_STEPS,
    Divergence,
    LayerReport,
    ParamReport,
    SizeReport,
    VerifyReport,
)
from cnnspec.verifier.report import Evidence as EvidenceReport

ProgressCallback = Callable[[str], None]

STEP_LABELS = {
    "import": "importing torch, tensorflow/keras, onnx, onnxruntime",
    "build": "building both models from the generated source",
    "transfer": "seeding torch weights and copying them to Keras",
    "export_torch": "exporting PyTorch to ONNX (per-layer outputs)",
    "export_keras": "converting Keras to ONNX (tf2onnx, per-layer outputs)",
    "run_torch": "running the PyTorch graph in onnxruntime",
    "run_keras": "running the Keras graph in onnxruntime",
    "referee": "running the spec's own ONNX graph (the referee)",
    "compare": "comparing shapes, parameters and outputs",
}


class _Steps:
    """Times named steps and announces them to an optional progress callback."""

    def __init__(self, progress: ProgressCallback | None):
        self.progress = progress
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(STEP_LABELS.get(name, name))
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)


Params = ParamSpec("Params")
Result = TypeVar("Result")

# Whether the verification running here froze objects, and so unfreezes them when it ends.
_FREEZING: ContextVar[bool] = ContextVar("cnnspec_verify_freezing", default=False)


def _collector_spared(function: Callable[Params, Result]) -> Callable[Params, Result]:
    """Run ``function`` with what it loaded and built left out of the garbage collector's passes.

    TensorFlow, Keras and torch leave ~300,000 long-lived objects, and every full collection
    walked them all: 0.17-0.24 s of collections in ResNet-50's Keras export, which took
    1.37 s instead of 2.05 s with them frozen (the caches are spared too).
    The import and build steps freeze what is alive then (:func:`freeze_loaded`); this
    unfreezes it when ``function`` returns.  When the caller has frozen objects of its own,
    nothing is frozen or unfrozen.
    """

    @functools.wraps(function)
    def spared(*args: Params.args, **kwargs: Params.kwargs) -> Result:
        token = _FREEZING.set(gc.get_freeze_count() == 0)
        try:
            return function(*args, **kwargs)
        finally:
            if _FREEZING.get():
                gc.unfreeze()
            _FREEZING.reset(token)

    return spared


def freeze_loaded() -> None:
    """Leave every object alive now out of later garbage collections (see :func:`_collector_spared`)."""
    if _FREEZING.get():
        gc.freeze()


def make_input(plan, batch: int, seed: int) -> np.ndarray:
    """The seeded channels-first input batch, standard normal (negative values included)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *plan.input_shape)).astype(np.float32)


@_collector_spared
def verify(
    spec,
    *,
    torch_model=None,
    keras_model=None,
    sync_weights: bool = True,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    batch: int = 2,
    seed: int = 0,
    opset: int = 18,
    keep_onnx: str | os.PathLike | None = None,
    progress: ProgressCallback | None = None,
    name_map=None,
    input_sizes=None,
) -> VerifyReport:
    """Verify that a PyTorch and a Keras model compute the network a spec describes, identically.

    Both models are exported to ONNX with every spec layer's output exposed, run in
    onnxruntime on the same seeded input, and compared layer by layer; a mismatch names
    the first divergent layer in spec order.

    With neither model passed, in a process that has not imported torch or TensorFlow yet,
    on a machine with a spare core, the PyTorch side runs in a forked process beside the
    Keras side (the same report; ``CNNSPEC_VERIFY_IN_PROCESS=1`` verifies in one process,
    ``=0`` uses the worker whatever the load; see :mod:`cnnspec.verifier.torch_worker`).

    Args:
        spec: a path, YAML/JSON text, dict, ModelSpec or Plan.
        torch_model: verify this ``nn.Module`` instead of the generated one (e.g. a hand
            port; its ``forward`` must be traceable by ``torch.onnx.export`` for one tensor
            input). Its spec layers are observed through ``forward_layers`` or, failing that,
            through the sub-modules matched to the spec layers (by ``name_map``, by name, or by
            order and type), each read both as it is and with the spec's inline activation
            applied after it (``F.relu(self.fc1(x))``); the report says which reading agrees.
            When the model's output agrees but an inner reading does not, that reading is
            reported as misaligned and the verdict stands.
        keras_model: verify this functional or Sequential ``keras.Model`` instead of the
            generated one; spec layers are observed as the outputs of the matched layers.
        name_map: ``{spec layer: torch module path (dots allowed) or Keras layer name}``, or
            ``{"torch": {...}, "keras": {...}}``, for models you pass whose parts are not named
            like the spec layers (see :mod:`cnnspec.weights.matching`).
        sync_weights: make the weights equal before comparing.  The source of the weights is
            the model you passed (torch if you passed both; Keras if you passed only Keras),
            or a seeded random init of the generated torch model (BatchNorm statistics too);
            it is copied into the other model.  With False, the weights of models you passed
            are used as they are; a model cnnspec builds still receives the other's weights.
        atol: absolute tolerance per element.
        rtol: relative tolerance per element (``|k − t| <= atol + rtol·|t|``).
        batch: the input batch size.
        seed: seed of the random weights and of the input.
        opset: the ONNX opset of both exports.
        keep_onnx: a directory to keep ``torch.onnx`` and ``keras.onnx`` in (atomically written).
        progress: called with a short label as each step starts.
        input_sizes: the spatial input sizes to verify at, e.g. ``[(224, 224), (225, 225)]``
            (an int stands for that size on every axis).  Both models are built and exported
            once, with the spec's open axes dynamic, and run and compared at each size against
            the plan at that size.  Default: a fixed spec's size; for an open spec its planning
            size (``reference_size``, else 224) and the next size it accepts
            (:func:`default_sizes`).

    Returns:
        The :class:`~cnnspec.verifier.report.VerifyReport`; ``report.ok`` is the verdict (at
        every size); ``report.sizes`` holds the verdict per size, the layer rows are those of
        ``report.input_size`` (the first size that fails, else the first size).

    Raises:
        SpecError: the spec is invalid, or refuses one of the sizes (a fixed axis given
            another number, a collapse, a join that disagrees there): located message.
        BackendUnavailable: a framework or exporter is not installed.
        WeightMismatch: the weights cannot be transferred (a model does not fit the spec).
    """
    from cnnspec.engine.plan import Plan, channels_last, resolve

    plan = spec if isinstance(spec, Plan) else resolve(spec)
    plans = size_plans(plan, input_sizes)
    source = (
        str(spec)
        if isinstance(spec, (str, os.PathLike))
        and Path(str(spec)).suffix in (".yaml", ".yml", ".json")
        else None
    )
    if batch < 1:
        raise CnnspecError(f"batch must be >= 1, got {batch}")
    if torch_model is None and keras_model is None and name_map is None:
        from cnnspec.verifier.torch_worker import TorchWorker, available

        worker = None
        if available():
            worker = TorchWorker.start(
                plan,
                plans,
                batch=batch,
                seed=seed,
                opset=opset,
                atol=atol,
                rtol=rtol,
                open_axes=plan.open_axes if plan.is_open else (),
                keep_onnx=keep_onnx,
            )
        if worker is not None:
            try:
                report = _verify_beside_worker(
                    worker,
                    plan,
                    plans,
                    atol=atol,
                    rtol=rtol,
                    batch=batch,
                    seed=seed,
                    opset=opset,
                    keep_onnx=keep_onnx,
                    progress=progress,
                )
            finally:
                worker.close()
            report.source = source
            return report
    steps = _Steps(progress)

    with steps("import"):
        from cnnspec.verifier.onnx_export import import_frameworks

        versions = import_frameworks()
        freeze_loaded()
    from cnnspec.verifier import onnx_export as X
    from cnnspec.weights.transfer import randomize, transfer_weights

    with steps("build"):
        from cnnspec.targets.build import build

        user_torch, user_keras = torch_model is not None, keras_model is not None
        _check_supported(torch_model, keras_model)
        if torch_model is None:
            torch_model = build(plan, "torch")
        if keras_model is None:
            # Both built here: every Keras variable receives torch's weights (checked after).
            start = _keras_variables_start_at() if not user_torch else contextlib.nullcontext()
            with start:
                keras_model = build(plan, "keras")
        torch_model.eval()
        freeze_loaded()  # the models live as long as the verification
        user_map = _user_name_map(name_map, user_torch, user_keras)
        matchings = _match_user_models(
            plan,
            torch_model if user_torch else None,
            keras_model if user_keras else None,
            user_map,
            strict=sync_weights,
        )

    with steps("transfer"):
        if (
            not user_torch and not user_keras
        ):  # otherwise a model you passed is the source of the weights
            randomize(torch_model, seed)
        if sync_weights:
            if user_keras and not user_torch:
                _transfer(transfer_weights, keras_model, torch_model, plan, user_map)
            else:
                _transfer(transfer_weights, torch_model, keras_model, plan, user_map)
        elif not user_keras:
            _transfer(transfer_weights, torch_model, keras_model, plan, user_map)
        elif not user_torch:
            _transfer(transfer_weights, keras_model, torch_model, plan, user_map)
        if not user_torch and not user_keras and _unwritten(keras_model, plan):
            keras_model = build(plan, "keras")  # its initial values as in any build
            _transfer(transfer_weights, torch_model, keras_model, plan, user_map)

    names = [layer.name for layer in plan.layers]
    # An open spec's graphs are exported once with its open axes dynamic and run at every size.
    open_axes = plan.open_axes if plan.is_open else ()
    input_last: tuple[int | None, ...] = channels_last(plan.input_shape)
    if open_axes:
        input_last = (
            tuple(None if open_axis else n for open_axis, n in zip(open_axes, input_last))
            + input_last[-1:]
        )
    onnx_files: dict[str, str] = {}

    def export_torch(example, open_axes=()):
        with _user_model_errors("torch", user_torch):
            graph = X.export_torch(
                torch_model,
                names,
                example,
                opset=opset,
                module_paths=_observed_parts(matchings.get("torch")),
                open_axes=open_axes,
            )
        X.check_graph(graph, ONNX_FILES["torch"])
        return graph

    torch_per_size = False
    with steps("export_torch"):
        try:
            torch_graph = export_torch(make_input(plan, batch, seed), open_axes)
        except Exception:
            if not open_axes:
                raise
            # torch.onnx cannot export some ops with unknown sizes (an original's
            # AdaptiveAvgPool2d((6, 6)): "input size not accessible"): one export per size.
            torch_per_size = True
            torch_graph = export_torch(make_input(plans[0], batch, seed))

    def export_keras(shape):
        with _user_model_errors("keras", user_keras):
            graph = X.export_keras(
                keras_model,
                names,
                shape,
                opset=opset,
                layer_map=_observed_parts(matchings.get("keras")),
            )
        if user_keras:
            _refuse_foreign_ops(graph, "keras")
        X.check_graph(graph, ONNX_FILES["keras"])
        return graph

    keras_per_size = False
    with steps("export_keras"):
        try:
            keras_graph = export_keras(input_last)
        except Exception:
            if not open_axes:
                raise
            # A helper that reads the input's static shape (Resize, AdaptivePooling) cannot be
            # exported with unknown sizes: export the Keras model at each size instead.
            keras_per_size = True
            keras_graph = export_keras(channels_last(plans[0].input_shape))
    if keep_onnx is not None:
        for framework, graph in (("torch", torch_graph), ("keras", keras_graph)):
            onnx_files[framework] = str(X.save_graph(graph, keep_onnx, ONNX_FILES[framework]))
    with steps("referee"):
        weights_source = "keras" if user_keras and not user_torch else "torch"
        referee_weights, referee_source, referee_note = _referee_weights(
            plan, torch_model, keras_model, weights_source
        )
        referee_graph = _open_referee(plan) if len(plans) > 1 and referee_weights else None
    params = _params(plan, torch_model, keras_model, torch_graph, keras_graph)

    reports = []
    retraced: list[str] = []
    for size_plan in plans:
        x = make_input(size_plan, batch, seed)
        x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        failures: list[str] = []
        size_graph = torch_graph
        with steps("run_torch"):
            torch_values = (
                None
                if torch_per_size and size_plan is not plans[0]
                else _run_at_size(X, torch_graph, x, "torch", size_plan, [])
            )
        if open_axes and not _traced_faithfully(torch_model, torch_values, x, atol, rtol):
            # A trace records Python arithmetic on sizes as constants: trace again at this size.
            with steps("export_torch"):
                try:
                    size_graph = export_torch(x)
                except Exception as error:  # noqa: BLE001 - the model cannot take this size
                    failures.append(_cannot_run("torch", size_plan, error))
            if not failures:
                with steps("run_torch"):
                    torch_values = _run_at_size(X, size_graph, x, "torch", size_plan, failures)
                if not torch_per_size:
                    retraced.append(size_text(size_plan))
        size_keras_graph, keras_values = _keras_at_size(
            steps,
            export_keras,
            keras_graph,
            keras_per_size and size_plan is not plans[0],
            size_plan,
            x_last,
            failures,
        )
        if failures:
            reports.append(
                _unrunnable(
                    size_plan,
                    failures,
                    params,
                    atol=atol,
                    rtol=rtol,
                    batch=batch,
                    seed=seed,
                    opset=opset,
                )
            )
            continue
        with steps("referee"):
            referee_values, size_note = _run_referee(size_plan, referee_weights, x, referee_graph)
        with steps("compare"):
            report, diffs = _compare(
                size_plan,
                torch_model,
                keras_model,
                size_graph,
                size_keras_graph,
                torch_values,
                keras_values,
                atol=atol,
                rtol=rtol,
                batch=batch,
                seed=seed,
                opset=opset,
                readings=_ReadingContext(
                    user_torch and torch_graph.observation == "hooks", user_keras, matchings, x
                ),
                params=params,
            )
            _add_referee(
                report,
                size_plan,
                diffs,
                size_graph,
                size_keras_graph,
                torch_values,
                keras_values,
                referee_values,
                referee_source,
                referee_note or size_note,
            )
        reports.append(report)
    report = _sizes_combined(reports, plans, open_axes, keras_per_size, retraced)
    if torch_per_size:
        report.notes.append(
            "torch.onnx cannot export the PyTorch model with open axes (an op that needs the "
            "input's size, such as an adaptive pool to a fixed size): it was exported at each size"
        )
    report.source = source
    report.timings = steps.timings
    report.versions = versions
    report.onnx_files = onnx_files
    return report


def _verify_beside_worker(
    worker, plan, plans, *, atol, rtol, batch, seed, opset, keep_onnx, progress
) -> VerifyReport:
    """:func:`verify` of two models built from the spec, with the PyTorch side in ``worker``
    (:mod:`cnnspec.verifier.torch_worker`) and the Keras side here; the same report.

    Where both sides fail, the error raised is the one the one-process verification raises
    (the PyTorch side's when its step comes first).
    """
    from types import SimpleNamespace

    from cnnspec.engine.plan import channels_last
    from cnnspec.verifier.onnx_export import FRAMEWORKS
    from cnnspec.verifier.torch_worker import arrays

    steps = _Steps(progress)
    with steps("import"):
        from cnnspec.verifier.onnx_export import import_frameworks

        try:
            versions = import_frameworks(tuple(name for name in FRAMEWORKS if name != "torch"))
        except Exception:
            worker.raise_earlier("weights", ("import",))
            raise
        freeze_loaded()
    from cnnspec.verifier import onnx_export as X
    from cnnspec.weights.transfer import keras_values, write_keras_weights

    with steps("transfer"):
        # The worker's weights are ready by now (its torch imports faster than TensorFlow):
        # the Keras variables are created with them instead of being written after the build.
        torch_version, keys, packed = worker.receive("weights")
        tensors = dict(zip(keys, arrays(packed)))
        converted = keras_values(plan, tensors)
    with steps("build"):
        from cnnspec.targets.build import build

        with _keras_variables_start_at(converted) as started:
            keras_model = build(plan, "keras")
        freeze_loaded()  # the model lives as long as the verification
    with steps("transfer"):
        written = write_keras_weights(
            keras_model, plan, tensors, converted=converted, started=started
        )
        if _unwritten(keras_model, plan, written):  # its initial values as in any build
            keras_model = build(plan, "keras")
            write_keras_weights(keras_model, plan, tensors, converted=converted)
    versions = {"torch": torch_version, **versions}

    names = [layer.name for layer in plan.layers]
    open_axes = plan.open_axes if plan.is_open else ()
    input_last: tuple[int | None, ...] = channels_last(plan.input_shape)
    if open_axes:
        input_last = (
            tuple(None if open_axis else n for open_axis, n in zip(open_axes, input_last))
            + input_last[-1:]
        )

    def export_keras(shape):
        graph = X.export_keras(keras_model, names, shape, opset=opset, layer_map=None)
        X.check_graph(graph, ONNX_FILES["keras"])
        return graph

    keras_per_size = False
    with steps("export_keras"):
        try:
            try:
                keras_graph = export_keras(input_last)
            except Exception:
                if not open_axes:
                    raise
                keras_per_size = True
                keras_graph = export_keras(channels_last(plans[0].input_shape))
        except Exception:
            worker.raise_earlier("graph", ("export_torch",))
            raise
    (meta,) = worker.receive("graph")
    onnx_files: dict[str, str] = {}
    if keep_onnx is not None:
        onnx_files["torch"] = meta["kept"]
        onnx_files["keras"] = str(X.save_graph(keras_graph, keep_onnx, ONNX_FILES["keras"]))
    with steps("referee"):
        referee_source, referee_note, keras_referee = _referee_beside_worker(
            plan, meta, keras_model
        )
        keras_referee_graph = _open_referee(plan) if len(plans) > 1 and keras_referee else None
    params = parameter_reports(
        plan,
        counts={"torch": meta["counts"], "keras": C.keras_counts(keras_model)},
        graphs={
            "torch_onnx": (meta["elements"], meta["ops"]),
            "keras_onnx": (X.parameter_counts(keras_graph), X.op_counts(keras_graph.proto)),
        },
    )

    reports = []
    retraced: list[str] = []
    for size_plan in plans:
        x = make_input(size_plan, batch, seed)
        x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
        with steps("run_torch"):
            result, value_file, referee_file = worker.receive("size")
            if result.error is not None:
                raise result.error
        failures = list(result.failures)
        torch_values = None if value_file is None else arrays(value_file)
        size_graph = SimpleNamespace(layer_names=result.layer_names, observation=result.observation)
        if result.retraced:
            retraced.append(size_text(size_plan))
        size_keras_graph, keras_values = _keras_at_size(
            steps,
            export_keras,
            keras_graph,
            keras_per_size and size_plan is not plans[0],
            size_plan,
            x_last,
            failures,
        )
        if failures:
            reports.append(
                _unrunnable(
                    size_plan,
                    failures,
                    params,
                    atol=atol,
                    rtol=rtol,
                    batch=batch,
                    seed=seed,
                    opset=opset,
                )
            )
            continue
        with steps("referee"):
            if result.referee_error is not None:
                raise result.referee_error
            if keras_referee is not None:
                referee_values, size_note = _run_referee(
                    size_plan, keras_referee, x, keras_referee_graph
                )
            else:
                referee_names, referee_packed = referee_file or ((), None)
                referee_values = (
                    None
                    if referee_packed is None
                    else dict(zip(referee_names, arrays(referee_packed)))
                )
                size_note = result.referee_note
        with steps("compare"):
            report, diffs = _compare(
                size_plan,
                None,
                keras_model,
                size_graph,
                size_keras_graph,
                torch_values,
                keras_values,
                atol=atol,
                rtol=rtol,
                batch=batch,
                seed=seed,
                opset=opset,
                params=params,
                torch_part=worker.part,
            )
            _add_referee(
                report,
                size_plan,
                diffs,
                size_graph,
                size_keras_graph,
                torch_values,
                keras_values,
                referee_values,
                referee_source,
                referee_note or size_note,
                torch_departure=None if keras_referee is not None else result.departure,
            )
        reports.append(report)
    report = _sizes_combined(reports, plans, open_axes, keras_per_size, retraced)
    # The PyTorch export's own seconds, in parallel with the steps here.
    timings = {**steps.timings, "export_torch": worker.timings.get("export_torch", 0.0)}
    report.timings = {name: timings[name] for name in TIMING_STEPS if name in timings}
    report.versions = versions
    report.onnx_files = onnx_files
    return report


def _sizes_combined(reports, plans, open_axes, keras_per_size: bool, retraced: list[str]):
    """The size reports as one (:func:`combine_sizes`), with a note on each graph that had to be
    exported again per size: the Keras one (``keras_per_size``), the PyTorch one at ``retraced``."""
    report = combine_sizes(reports, plans, open_axes)
    if keras_per_size:
        report.notes.append(
            "the Keras model reads its input's static size in a layer (a resize or adaptive-pool "
            "helper), so it cannot be exported with open axes: it was exported at each size"
        )
    if retraced:
        report.notes.append(
            "the PyTorch graph exported with dynamic axes computes other numbers than the model at "
            f"{', '.join(retraced)} (the trace keeps Python arithmetic on sizes as constants): "
            "the model was traced again at each of those sizes"
        )
    return report


def _unwritten(keras_model, plan, written=None) -> bool:
    """Whether a float variable of a Keras model built from the spec is not one the weight
    transfer writes (``written``: the variables written, default those bound to the spec)."""
    if written is None:
        from cnnspec.weights.transfer import bound_keras_variables

        written = [variable for variable, _, _ in bound_keras_variables(keras_model, plan).values()]
    ids = {id(variable) for variable in written}
    return any(
        id(variable) not in ids and "float" in str(variable.dtype)
        for variable in keras_model.weights
    )


@contextlib.contextmanager
def _keras_variables_start_at(values: dict | None = None) -> Iterator[dict]:
    """Keras float variables created inside start at their final values instead of their
    initializers' random draws, which take a third of building ResNet-50 (0.3-0.5 CPU s).

    ``values`` is :func:`~cnnspec.weights.transfer.keras_values` of the weights to come: a
    variable ``<layer>/<name>`` that a slot of spec layer ``<layer>`` names is created with
    that slot's value, any other float variable with zeros.  Yields id(variable) -> the
    (layer, tensor) it was created with; the caller writes every variable the transfer binds
    (:func:`~cnnspec.weights.transfer.write_keras_weights` skips those created with their own
    value) and checks that none is left (:func:`_unwritten`).
    """
    started: dict[int, tuple[str, str]] = {}
    try:
        from keras.src.backend.tensorflow.core import Variable
    except ImportError:  # another backend or Keras version: the initializers it is
        yield started
        return
    draw = getattr(Variable, "_initialize_with_initializer", None)
    if draw is None:
        yield started
        return
    import tensorflow as tf

    named = {
        (key[0], keras_name): key
        for key, (slot, _) in (values or {}).items()
        for keras_name in slot.keras_names
    }

    def start_at_value(variable, initializer):
        if "float" not in str(variable._dtype):
            draw(variable, initializer)
            return
        key = named.get((variable.path.partition("/")[0], variable.name))
        if key is not None:
            slot, value = values[key]  # type: ignore[index]
            shape = tuple(variable._shape)
            if slot.reshape and value.size == math.prod(shape):
                value = value.reshape(shape)
            if tuple(value.shape) == shape:
                variable._initialize(np.array(value, dtype=variable._dtype, order="C"))
                started[id(variable)] = key
                return
        variable._initialize(lambda: tf.zeros(variable._shape, dtype=variable._dtype))

    Variable._initialize_with_initializer = start_at_value
    try:
        yield started
    finally:
        Variable._initialize_with_initializer = draw


def _referee_beside_worker(plan, meta: dict, keras_model):
    """Where the referee's weights come from (torch in the worker, else Keras here), why there is
    no referee if so, and the Keras weights when the referee runs here."""
    from cnnspec.targets.onnx.emit import unsupported_types
    from cnnspec.targets.onnx.weights import from_keras_model

    missing = unsupported_types(plan)
    if missing:
        return None, f"no referee: no ONNX emission for type(s) {', '.join(missing)}", None
    if meta["referee_source"] is not None:
        return meta["referee_source"], None, None
    try:
        return "keras", None, from_keras_model(plan, keras_model)
    except (CnnspecError, ValueError, KeyError, AttributeError) as error:
        reasons = f"{meta['referee_reason']}; keras: {error}"
        return (
            None,
            f"no referee: the spec's tensors cannot be read from either model ({reasons})",
            None,
        )


def _keras_at_size(steps, export_keras, keras_graph, export_again, size_plan, x_last, failures):
    """The Keras graph at this size (exported again when the model reads static sizes) and its
    layer outputs; None after a failure, which is recorded in ``failures``."""
    from cnnspec.engine.plan import channels_last
    from cnnspec.verifier import onnx_export as X

    graph, values = keras_graph, None
    if export_again:
        with steps("export_keras"):
            try:
                graph = export_keras(channels_last(size_plan.input_shape))
            except Exception as error:  # noqa: BLE001 - the model cannot take this size
                failures.append(_cannot_run("keras", size_plan, error))
    with steps("run_keras"):
        if not failures:
            values = _run_at_size(X, graph, x_last, "keras", size_plan, failures)
    return graph, values


def default_sizes(plan) -> list[tuple[int, ...]]:
    """The sizes an open spec is verified at when none is given: its planning size (the
    ``reference_size``, else 224) and the next size it plans at on every open axis -- one more,
    so that an even and an odd size are checked, unless a join or a layer takes only multiples
    of a period (a U-Net skip: the next multiple) or only some sizes (the next one it takes;
    :func:`~cnnspec.engine.plan.planned_size_after`); a fixed spec's own size."""
    from cnnspec.engine.plan import planned_size_after

    size = tuple(plan.input_shape[1:])
    if not plan.is_open:
        return [size]
    try:
        other = planned_size_after(plan.spec, size, [int(axis) for axis in plan.open_axes])
    except SpecError:  # verifying the first candidate names the layer that refuses it
        other = tuple(
            n + step if open_axis else n
            for n, open_axis, step in zip(size, plan.open_axes, plan.size_steps)
        )
    return [size, other]


def size_plans(plan, input_sizes=None) -> list:
    """The plan at each size to verify (:func:`default_sizes` when ``input_sizes`` is None).

    An entry may be one int for every spatial axis.  A size the spec refuses (a fixed axis
    given another number, a layer whose output collapses, a join that does not agree at that
    size) raises the planner's located :class:`~cnnspec.errors.SpecError`.
    """
    from cnnspec.engine.plan import resolve

    if input_sizes is None:
        wanted = default_sizes(plan)
    else:
        wanted = []
        for entry in input_sizes:
            size = (int(entry),) * plan.rank if isinstance(entry, int) else tuple(entry)
            if size not in wanted:
                wanted.append(size)
        if not wanted:
            raise CnnspecError("input_sizes is empty: give at least one input size")
    plans = []
    for size in wanted:
        same = size == tuple(plan.input_shape[1:]) and plan.size_source in ("fixed", "given")
        plans.append(plan if same else resolve(plan.spec, input_size=size))
    return plans


def size_text(plan) -> str:
    """The spatial input size of a plan as ``H×W``."""
    return "×".join(map(str, plan.input_shape[1:]))


def _run_at_size(X, graph, inputs, framework: str, plan, failures: list[str]):
    """Run one graph; a graph that cannot run at this size is a finding, not a crash."""
    try:
        return X.run_graph(graph, inputs)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own exception types
        if not plan.is_open:
            raise
        failures.append(_cannot_run(framework, plan, error))
        return None


def _cannot_run(framework: str, plan, error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"the {framework} model cannot run at {size_text(plan)}, a size the spec accepts: " + (
        lines[0] if lines else type(error).__name__
    )


def _traced_faithfully(torch_model, values, x, atol: float, rtol: float) -> bool:
    """Whether the graph's output at this size is the model's own (run eagerly on ``x``)."""
    import torch

    if values is None:
        return False
    try:
        with torch.no_grad():
            eager = torch_model(torch.from_numpy(x))
    except Exception:  # noqa: BLE001 - the trace at this size reports the model's own error
        return False
    if not isinstance(eager, torch.Tensor):
        return True  # not a single tensor: the verification itself says what is wrong
    expected = eager.detach().cpu().numpy()
    actual = values[-1]
    return actual.shape == expected.shape and bool(
        np.allclose(actual, expected, atol=atol, rtol=rtol)
    )


def _unrunnable(plan, failures, params, **settings) -> VerifyReport:
    params_reports, params_ok = params
    return VerifyReport(
        ok=False,
        spec=plan.name,
        params_ok=params_ok,
        params=params_reports,
        problems=list(failures),
        input_size=list(plan.input_shape[1:]),
        **settings,
    )


def combine_sizes(reports: list[VerifyReport], plans, open_axes) -> VerifyReport:
    """One report for every size: the rows of the first size that fails (else the first size),
    a verdict per size in ``sizes``, and every size's problems."""
    from cnnspec.engine.plan import AXIS_NAMES

    shown = next((report for report in reports if not report.ok), reports[0])
    shown.open_axes = [
        name for name, open_axis in zip(AXIS_NAMES[plans[0].rank], open_axes) if open_axis
    ]
    if len(reports) == 1:
        return shown
    shown.sizes = [
        SizeReport(
            input_size=list(plan.input_shape[1:]),
            ok=report.ok,
            first_divergent_layer=report.first_divergent_layer,
            max_abs_diff=report.max_abs_diff,
            output_max_abs_diff=report.output_max_abs_diff,
            problems=report.problems,
        )
        for plan, report in zip(plans, reports)
    ]
    shown.ok = all(report.ok for report in reports)
    shown.problems = [
        f"at {size_text(plan)}: {problem}"
        for plan, report in zip(plans, reports)
        for problem in report.problems
    ]
    return shown


def _referee_weights(plan, torch_model, keras_model, source: str):
    """The referee's weights, the model they came from, and why there is no referee if so."""
    from cnnspec.targets.onnx.emit import unsupported_types
    from cnnspec.verifier.referee import RefereeUnavailable, referee_weights

    missing = unsupported_types(plan)
    if missing:
        return None, None, f"no referee: no ONNX emission for type(s) {', '.join(missing)}"
    try:
        weights, source = referee_weights(plan, torch_model, keras_model, source)
    except RefereeUnavailable as error:
        return (
            None,
            None,
            f"no referee: the spec's tensors cannot be read from either model ({error})",
        )
    return weights, source, None


def _open_referee(plan):
    """The spec's ONNX graph emitted once for every size, or None where a layer's nodes follow the
    size (the referee is then emitted at each size)."""
    from cnnspec.targets.onnx.emit import emit_graph, size_dependent_layer

    try:
        if not plan.is_open or size_dependent_layer(plan) is not None:
            return None
        return emit_graph(plan, open_size=True)
    except CnnspecError:  # no graph at all: each size's referee says why
        return None


def _run_referee(plan, weights, x, graph=None):
    """The referee's layer outputs at the plan's size, or None and why."""
    from cnnspec.verifier.referee import run_referee

    if weights is None:
        return None, None
    try:
        values = (
            run_referee(plan, weights, x) if graph is None else run_referee(plan, weights, x, graph)
        )
        return values, None
    except (
        CnnspecError
    ) as error:  # the referee is a second opinion: it never stops the verification
        return None, f"no referee: the spec's ONNX graph could not be emitted ({error})"


def _add_referee(
    report: VerifyReport,
    plan,
    diffs,
    torch_graph,
    keras_graph,
    torch_values,
    keras_values,
    referee_values,
    referee_source,
    referee_note,
    torch_departure=None,
) -> None:
    """Judge each model against the referee; a model departing from the spec fails the verification.

    ``torch_departure``: torch's side of the judgement, found by the process that ran its graph
    (used when every torch layer is read as it is)."""
    from cnnspec.verifier.referee import judge

    if referee_values is None:
        report.referee_note = referee_note
        return
    # A hand-written model's part read with the spec's activation applied after it, or a misaligned
    # reading, is not that spec layer's output as such: the referee judges the layers read as they are.
    read_otherwise = {
        layer.name for layer in report.layers if layer.misaligned or "+" in (layer.reading or "")
    }
    torch_outputs = {
        n: v for n, v in zip(torch_graph.layer_names, torch_values) if n not in read_otherwise
    }
    # The Keras outputs channels-first where the comparison with torch already converted them.
    converted = {
        d.name: d.keras_value
        for d in diffs
        if d.keras_reading in (None, "output") and d.keras_value is not None
    }
    keras_outputs = {
        n: converted.get(n, v)
        for n, v in zip(keras_graph.layer_names, keras_values)
        if n not in read_otherwise
    }
    report.referee = judge(
        plan,
        torch_outputs,
        keras_outputs,
        referee_values,
        weights_from=referee_source,
        atol=report.atol,
        rtol=report.rtol,
        keras_channels_first=converted.keys(),
        torch_departure=None if read_otherwise else torch_departure,
    )
    if report.referee.torch_departs_at or report.referee.keras_departs_at:
        rounding = _shared_rounding(report, referee_values)
        if rounding is not None:
            report.notes.append(rounding)
            return
        report.problems.append(f"referee (the spec's own ONNX graph): {report.referee.verdict}")
        report.ok = False


# A departure from the referee that both frameworks share, while they agree with each other on
# every layer, within this share of the layer's scale is float32 rounding: see docs/semantics.md.
SHARED_ROUNDING = 1e-2


def _shared_rounding(report: VerifyReport, referee_values) -> str | None:
    """The note for a referee departure that is float32 rounding, or None if it fails the verdict.

    The referee computes the spec in other ops than the frameworks; through a deep network with
    large untrained activations its rounding can exceed the tolerance at a layer where PyTorch
    and Keras agree to the last bit (Keras' EfficientNetV2-M: 5.5e-4 on logits of scale ~4
    after a squeeze of values ~1e3).  A mistake both frameworks share moves that layer by a
    share of its scale; this is the same small difference on both sides, the sides agreeing.
    """
    referee = report.referee
    if referee is None:
        return None
    layer = referee.torch_departs_at
    if (
        layer is None
        or layer != referee.keras_departs_at
        or report.first_divergent_layer is not None
        or not report.ok
    ):
        return None
    worst = max(referee.torch_max_abs_diff or 0.0, referee.keras_max_abs_diff or 0.0)
    magnitude = np.abs(np.asarray(referee_values[layer], dtype=np.float32))
    scale = max(1.0, float(magnitude.max(initial=0.0, where=np.isfinite(magnitude))))
    if not worst <= SHARED_ROUNDING * scale:
        return None
    referee.verdict = (
        f"torch and keras agree with each other; both differ from the spec's ONNX graph from "
        f"`{layer}` on, by {worst:.2e} there ({worst / scale:.1e} of the layer's scale): float32 "
        "rounding of its other ops, amplified by the network"
    )
    return f"referee: {referee.verdict}"


def _compare(
    plan,
    torch_model,
    keras_model,
    torch_graph,
    keras_graph,
    torch_values,
    keras_values,
    *,
    atol: float,
    rtol: float,
    batch: int,
    seed: int,
    opset: int,
    readings: _ReadingContext | None = None,
    params: tuple[dict[str, ParamReport], bool] | None = None,
    torch_part: Callable | None = None,
) -> tuple[VerifyReport, list[C.LayerDiff]]:
    """The report of the torch/keras comparison, and the per-layer comparisons it was made from."""
    readings = readings or _ReadingContext()
    problems: list[str] = []
    torch_outputs = dict(zip(torch_graph.layer_names, torch_values))
    keras_outputs = dict(zip(keras_graph.layer_names, keras_values))
    diffs = C.compare_layers(
        plan,
        torch_outputs,
        keras_outputs,
        atol=atol,
        rtol=rtol,
        torch_readings=readings.torch,
        keras_readings=readings.keras,
    )
    notes = _mark_misaligned(diffs, readings) + signal_notes(diffs, atol)

    layers = [
        LayerReport.from_diff(d, reading=_reading_text(d, readings, plan), misaligned=d.misaligned)
        for d in diffs
    ]
    for d in diffs:
        if d.shape_ok is False and not d.misaligned:
            problems.append(
                f"layer '{d.name}': output shape torch {list(d.torch_shape or [])} / keras "
                f"{list(d.keras_shape or [])}, the plan says {list(d.expected_shape)} / {list(d.expected_shape_last)}"
            )
    divergent = C.first_divergent(diffs)
    divergence = None
    if divergent is not None:
        evidence = _evidence(
            plan,
            divergent,
            diffs,
            torch_model,
            torch_outputs,
            keras_outputs,
            readings,
            atol=atol,
            rtol=rtol,
            torch_part=torch_part,
        )
        divergence = Divergence(
            name=divergent.name,
            type=divergent.type,
            max_abs_diff=divergent.max_abs_diff,
            max_rel_diff=divergent.max_rel_diff,
            hint=C.divergence_hint(divergent, plan.layer(divergent.name), plan, evidence),
            evidence=[]
            if evidence is None
            else [EvidenceReport(name=evidence.name, holds=evidence.holds, detail=evidence.detail)],
        )
        problems.insert(
            0,
            f"first divergent layer '{divergent.name}' ({divergent.type})"
            + (
                ""
                if divergent.max_abs_diff is None
                else f": max abs diff {divergent.max_abs_diff:.3g}"
            ),
        )
    compared = [d for d in diffs if d.ok is not None]
    if not any(d.ok is not None for d in diffs):
        problems.append("no layer could be compared")

    counted = params or _params(plan, torch_model, keras_model, torch_graph, keras_graph)
    params_by_source, params_ok = counted
    if not params_ok:
        problems.extend(
            f"parameter count of {source}: {p.trainable:,} trainable + {p.non_trainable:,} non-trainable, "
            f"the spec says {params_by_source['spec'].trainable:,} + {params_by_source['spec'].non_trainable:,}"
            for source, p in params_by_source.items()
            if p.ok is False
        )

    finite = [d.max_abs_diff for d in compared if d.max_abs_diff is not None]
    relative = [d.max_rel_diff for d in compared if d.max_rel_diff is not None]
    last = diffs[-1]
    ok = (
        divergent is None
        and params_ok
        and bool(compared)
        and all(d.shape_ok is not False for d in diffs if not d.misaligned)
    )
    report = VerifyReport(
        ok=ok,
        spec=plan.name,
        atol=atol,
        rtol=rtol,
        batch=batch,
        seed=seed,
        opset=opset,
        max_abs_diff=max(finite) if finite else None,
        max_rel_diff=max(relative) if relative else None,
        mean_abs_diff=last.mean_abs_diff,
        output_max_abs_diff=last.max_abs_diff,
        first_divergent_layer=None if divergent is None else divergent.name,
        divergence=divergence,
        params_ok=params_ok,
        params=params_by_source,
        layers=layers,
        observation={"torch": torch_graph.observation, "keras": keras_graph.observation},
        problems=problems,
        matching={
            framework: [row.to_dict() for row in matching.rows]
            for framework, matching in readings.matchings.items()
        },
        notes=notes,
        input_size=list(plan.input_shape[1:]),
    )
    return report, diffs


def _difference(count: int | None, spec: int | None) -> str:
    """``count - spec`` signed with thousands separators, ``?`` when either is unknown."""
    return "?" if count is None or spec is None else f"{count - spec:+,}"


def _params(
    plan, torch_model, keras_model, torch_graph, keras_graph
) -> tuple[dict[str, ParamReport], bool]:
    from cnnspec.verifier.onnx_export import op_counts, parameter_counts

    graphs = {}
    for source, graph in (("torch_onnx", torch_graph), ("keras_onnx", keras_graph)):
        graphs[source] = (parameter_counts(graph), op_counts(graph.proto))
    return parameter_reports(
        plan,
        counts={"torch": C.torch_counts(torch_model), "keras": C.keras_counts(keras_model)},
        graphs=graphs,
    )


def parameter_reports(
    plan, *, counts: dict, graphs: dict, original_onnx=None
) -> tuple[dict[str, ParamReport], bool]:
    """Parameter reports: the spec's count, each model's (``torch`` / ``keras``: a
    :class:`~cnnspec.verifier.compare.Count`, which must equal the spec's), each exported graph's
    (``torch_onnx`` / ``keras_onnx``: its element and op counts, explained against the spec) and an
    ONNX original's initializers as ``onnx_original`` (informational).

    Returns:
        The reports by source and whether every model's count equals the spec's.
    """
    from cnnspec.verifier.onnx_export import initializer_counts, op_counts

    spec_count = C.Count(
        plan.trainable_params,
        plan.non_trainable_params,
        ["the plan; non-trainable = BatchNorm moving mean/variance"],
        ok=True,
    )
    all_counts = {"spec": spec_count}
    params_ok = True
    for source, count in counts.items():
        all_counts[source] = count
        count.ok = (
            count.trainable == spec_count.trainable
            and count.non_trainable == spec_count.non_trainable
        )
        params_ok &= count.ok
        if not count.ok:
            count.notes.append(
                f"DIFFERS from the spec by {_difference(count.trainable, spec_count.trainable)} trainable, "
                f"{_difference(count.non_trainable, spec_count.non_trainable)} non-trainable"
            )
    for source, (elements, ops) in graphs.items():
        all_counts[source] = C.reconcile_onnx(
            elements["elements"], ops, source, plan, weights=elements["weights"]
        )
    if original_onnx is not None:
        all_counts["onnx_original"] = C.reconcile_onnx(
            initializer_counts(original_onnx)["elements"],
            op_counts(original_onnx),
            "onnx_original",
            plan,
        )
    reports = {
        source: ParamReport(
            trainable=c.trainable,
            non_trainable=c.non_trainable,
            total=c.total,
            ok=c.ok,
            notes=c.notes,
        )
        for source, c in all_counts.items()
    }
    return reports, bool(params_ok)


# --------------------------------------------------------------------------------------
# Models you pass: what is supported, how their parts are matched and read
# --------------------------------------------------------------------------------------

SUPPORTED = {
    "torch": (
        "cnnspec verifies a torch.nn.Module whose forward takes one tensor (N, C, *spatial) and returns one "
        "tensor, traceable by torch.onnx.export (no data-dependent Python control flow)"
    ),
    "keras": (
        "cnnspec verifies a functional keras.Model or a Sequential model built with a keras.Input "
        "(symbolic inputs and outputs, one of each); a subclassed keras.Model has none - rebuild it "
        "functionally: inputs = keras.Input(shape); model = keras.Model(inputs, outputs)"
    ),
}


class UnsupportedModel(CnnspecError):
    """A model you passed is of a kind the verifier cannot read."""


def _transfer(transfer_weights, source, destination, plan, name_map) -> None:
    if name_map is None:
        transfer_weights(source, destination, plan)
    else:
        transfer_weights(source, destination, plan, name_map=name_map)


def _check_supported(torch_model, keras_model) -> None:
    if torch_model is not None:
        import torch

        if not isinstance(torch_model, torch.nn.Module):
            raise UnsupportedModel(
                f"torch_model is a {type(torch_model).__name__}, not a torch.nn.Module; "
                + SUPPORTED["torch"]
            )
    if keras_model is not None:
        import keras

        if not isinstance(keras_model, keras.Model):
            raise UnsupportedModel(
                f"keras_model is a {type(keras_model).__name__}, not a keras.Model; "
                + SUPPORTED["keras"]
            )
        try:
            inputs, outputs = keras_model.inputs, keras_model.outputs
        except (AttributeError, ValueError):
            inputs = outputs = None
        if not inputs or not outputs:
            raise UnsupportedModel(
                f"the Keras model '{keras_model.name}' ({type(keras_model).__name__}) has no "
                "symbolic inputs and outputs; " + SUPPORTED["keras"]
            )
        if len(inputs) != 1 or len(outputs) != 1:
            raise UnsupportedModel(
                f"the Keras model '{keras_model.name}' has {len(inputs)} inputs and "
                f"{len(outputs)} outputs; " + SUPPORTED["keras"]
            )


@contextlib.contextmanager
def _user_model_errors(framework: str, user_model: bool) -> Iterator[None]:
    """A model you passed that its exporter cannot handle is bad input (exit 2), not a crash."""
    try:
        yield
    except CnnspecError:
        raise
    except Exception as error:  # noqa: BLE001 - the exporters raise many types; re-raised for generated models
        if not user_model:
            raise
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
        raise UnsupportedModel(
            f"the {framework} model you passed could not be exported to ONNX ({reason}); "
            + SUPPORTED[framework]
        ) from None


def _refuse_foreign_ops(graph, framework: str) -> None:
    """An exporter that leaves ops ONNX does not define (a TensorFlow kernel tf2onnx has no
    handler for, kept as it is) makes a graph no runtime can run: say which ops and where,
    instead of the checker's first complaint."""
    import collections

    import onnx

    foreign = [
        node
        for node in graph.proto.graph.node
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)
    ]
    if not foreign:
        return
    counts = collections.Counter(node.op_type for node in foreign)
    listed = ", ".join(f"{op} ×{count}" for op, count in counts.most_common())
    raise UnsupportedModel(
        f"the {framework} model you passed could not be exported to ONNX: the exporter left ops "
        f"ONNX does not define ({listed}; first at node '{foreign[0].name}'), so its layers cannot "
        "be run and compared (tf2onnx has no handler for these TensorFlow kernels)"
    )


def _user_name_map(name_map, user_torch: bool, user_keras: bool):
    """The name map, reduced to the models you passed (a flat map goes to each of them)."""
    if name_map is None:
        return None
    from cnnspec.weights.matching import NameMapError, normalize_name_map

    maps = normalize_name_map(name_map)
    if not user_torch and not user_keras:
        raise NameMapError(
            "a name map matches the parts of models you pass (torch_model, keras_model); "
            "none was passed"
        )
    if user_torch and user_keras:
        return maps  # flat entries apply to whichever model has the part
    result: dict[str, dict[str, str]] = {"torch": {}, "keras": {}, "any": {}}
    for framework, user in (("torch", user_torch), ("keras", user_keras)):
        if user:
            result[framework] = {**maps["any"], **maps[framework]}
        elif maps[framework]:
            raise NameMapError(
                f"the name map has a '{framework}' section but no {framework} model was passed"
            )
    return result


def _match_user_models(plan, torch_model, keras_model, name_map, *, strict: bool) -> dict:
    from cnnspec.weights.matching import match_keras, match_torch

    matchings = {}
    if torch_model is not None:
        matchings["torch"] = match_torch(torch_model, plan, name_map, strict=strict)
    if keras_model is not None:
        matchings["keras"] = match_keras(keras_model, plan, name_map, strict=strict)
    return matchings


def _observed_parts(matching) -> dict[str, str] | None:
    """Spec layer -> the model part whose output reads it.

    A layer matched through its ``source`` is not read where another spec layer has the part's
    name: the part's output is that layer's (a Keras activation split off by the import).
    """
    if matching is None:
        return None
    named = {row.target for row in matching.rows if row.how == "name"}
    return {
        row.spec_layer: row.target
        for row in matching.rows
        if row.key == row.spec_layer and not (row.how == "source" and row.target in named)
    }


@dataclass
class _ReadingContext:
    """How the layer outputs of the models you passed are read."""

    torch: bool = False  # torch outputs come from sub-modules of a hand-written model
    keras: bool = False  # keras outputs come from layers of a model you passed
    matchings: dict = field(default_factory=dict)
    x: np.ndarray | None = None


def signal_notes(diffs, atol: float) -> list[str]:
    """Notes on what the tolerance cannot see: layers whose outputs are smaller than it (a
    difference there cannot fail), and layers that pass it while differing by far more than float32
    rounding relative to their own values."""
    compared = [d for d in diffs if d.ok is not None and d.scale is not None]
    zero = [d for d in compared if d.scale == 0.0]
    small = [d for d in compared if 0.0 < d.scale < atol]
    notes = []
    if zero:
        notes.append(
            f"{len(zero)} of the {len(diffs)} layers' outputs are exactly 0, the first '{zero[0].name}' "
            "(a BatchNorm whose scale starts at 0, as timm's and torchvision's zero_init options set "
            "it, or a ReLU of negative values): their comparison shows nothing"
        )
    if small:
        notes.append(
            f"{len(small)} of the {len(diffs)} layers' outputs are smaller than the tolerance, the "
            f"first '{small[0].name}' (root mean square {small[0].scale:.1e} < atol {atol:g}): a "
            "difference there could not fail the comparison. These weights shrink the signal (an "
            "untrained model's initialisation can); verify with trained weights or a smaller --atol"
        )
    # Measured float32 rounding stays below 1e-5 of a layer's root mean square (bench/README.md):
    # a layer that passes while differing by far more than that hides a real difference.
    hidden = [
        d
        for d in compared
        if d.ok and d.scale > 0.0 and (d.max_abs_diff or 0.0) > _HIDDEN_DIFFERENCE * d.scale
    ]
    if hidden:
        first = hidden[0]
        notes.append(
            f"'{first.name}' passes the tolerance but differs by {first.max_abs_diff / first.scale:.1e} "
            "of its root mean square, far above float32 rounding (≤ 1e-5 of it on every model "
            "measured): likely a real difference the tolerance cannot see at these values; run again "
            f"with --atol {_HIDDEN_DIFFERENCE * 0.1 * first.scale:.0e} to judge it"
        )
    return notes


_HIDDEN_DIFFERENCE = 1e-3


def _mark_misaligned(diffs, readings: _ReadingContext) -> list[str]:
    """Inner readings that disagree while the model's output agrees are misaligned readings, not errors."""
    if not (readings.torch or readings.keras) or not diffs or diffs[-1].ok is not True:
        return []
    misaligned = [d for d in diffs[:-1] if d.ok is False]
    for d in misaligned:
        d.misaligned = True
        d.note = "misaligned reading: the part read is not this spec layer's output; the model's output agrees"
    if not misaligned:
        return []
    names = ", ".join(f"'{d.name}'" for d in misaligned)
    return [
        f"the reading of {names} disagrees with the spec layer while the model's output agrees: the part "
        "read is not exactly that spec layer (a misaligned reading), the model is not wrong; a name map "
        "(--name-map / name_map=) can point at the right part"
    ]


def _reading_text(diff, readings: _ReadingContext, plan) -> str | None:
    texts = []
    for framework, label in (("torch", diff.torch_reading), ("keras", diff.keras_reading)):
        if label is None:
            continue
        matching = readings.matchings.get(framework)
        target = matching.target_of(diff.name) if matching is not None else None
        text = f"{framework} " + (f"'{target}'" if target else "output")
        if label == "activated":  # the spec's inline activation, applied after the part
            text += f" + {plan.layer(diff.name).activation}"
        texts.append(text)
    return "; ".join(texts) or None


def _torch_part(torch_model, readings: _ReadingContext, name: str):
    matching = readings.matchings.get("torch")
    if matching is not None:
        return matching.objects.get(name)
    return dict(torch_model.named_modules()).get(name)


def _layer_input(plan, layer, diffs, torch_outputs, keras_outputs, readings: _ReadingContext):
    """The divergent layer's input, channels-first, as the models agree on it (None when unknown)."""
    source = layer.inputs[0]
    if source == "input":
        return readings.x
    previous = next((d for d in diffs if d.name == source), None)
    if previous is not None and previous.ok and previous.torch_value is not None:
        return previous.torch_value
    if source in keras_outputs and not readings.keras:
        return C.to_channels_first(keras_outputs[source], plan.layer(source))
    if source in torch_outputs and not readings.torch:
        return torch_outputs[source]
    return None


def _evidence(
    plan,
    divergent,
    diffs,
    torch_model,
    torch_outputs,
    keras_outputs,
    readings: _ReadingContext,
    *,
    atol: float,
    rtol: float,
    torch_part: Callable | None = None,
):
    """Test the hypothesis the divergent layer's type suggests (one-cell shift, flatten order) on the data.

    ``torch_part``: the divergent layer's torch kernel, when it is not read from ``torch_model``
    here (the PyTorch side ran in another process)."""
    layer = plan.layer(divergent.name)
    if (
        len(layer.inputs) != 1
        or divergent.shape_ok is False
        or divergent.name not in torch_outputs
        or divergent.name not in keras_outputs
    ):
        return None
    if layer.family not in ("conv", "depthwise_conv", "dense"):
        return None
    if torch_part is None:
        from cnnspec.verifier.torch_worker import torch_part as read_part

        part = read_part(_torch_part(torch_model, readings, layer.name))
    else:
        part = torch_part(layer.name)
    if layer.family in ("conv", "depthwise_conv"):
        if part is None or part.kind != "conv":
            return None
    else:
        source = layer.inputs[0]
        segments = plan.layer(source).flat_segments if source != "input" else None
        if part is None or part.kind != "dense" or not segments:
            return None
    layer_input = _layer_input(plan, layer, diffs, torch_outputs, keras_outputs, readings)
    if layer_input is None:
        return None
    weight, bias = part.weight, part.bias
    torch_raw, keras_first = (
        torch_outputs[layer.name],
        C.to_channels_first(keras_outputs[layer.name], layer),
    )
    inner = layer is not plan.layers[-1]
    torch_options = (
        C.readings(torch_raw, layer) if readings.torch and inner else [("output", torch_raw)]
    )
    keras_options = (
        C.readings(keras_first, layer) if readings.keras and inner else [("output", keras_first)]
    )
    result = None
    for _, torch_value in torch_options:
        for _, keras_value in keras_options:
            if layer.family == "dense":
                evidence = C.check_flatten_permutation(
                    layer,
                    layer_input,
                    segments,
                    weight,
                    bias,
                    torch_value,
                    keras_value,
                    atol=atol,
                    rtol=rtol,
                )
            else:
                evidence = C.check_one_cell_shift(
                    layer,
                    layer_input,
                    weight,
                    bias,
                    part.groups,
                    torch_value,
                    keras_value,
                    atol=atol,
                    rtol=rtol,
                )
            if evidence is None or evidence.holds:
                return evidence
            result = evidence
    return result
