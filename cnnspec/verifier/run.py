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
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from cnnspec.verifier import compare as C
from cnnspec.verifier.compare import DEFAULT_ATOL, DEFAULT_RTOL
from cnnspec.errors import CnnspecError
from cnnspec.verifier.onnx_export import ONNX_FILES
from cnnspec.verifier.report import Divergence, LayerReport, ParamReport, VerifyReport

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


def make_input(plan, batch: int, seed: int) -> np.ndarray:
    """The seeded channels-first input batch, standard normal (negative values included)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *plan.input_shape)).astype(np.float32)


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
) -> VerifyReport:
    """Verify that a PyTorch and a Keras model compute the network a spec describes, identically.

    Both models are exported to ONNX with every spec layer's output exposed, run in
    onnxruntime on the same seeded input, and compared layer by layer; a mismatch names
    the first divergent layer in spec order.

    Args:
        spec: a path, YAML/JSON text, dict, ModelSpec or Plan.
        torch_model: verify this ``nn.Module`` instead of the generated one (e.g. a hand
            port). Its spec layers are observed through ``forward_layers`` or, failing that,
            through sub-modules named like the spec layers (their output must be the spec
            layer's output, inline activation included); otherwise only its output.
        keras_model: verify this functional ``keras.Model`` instead of the generated one;
            spec layers are observed as the outputs of the Keras layers with those names.
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

    Returns:
        The :class:`~cnnspec.verifier.report.VerifyReport`; ``report.ok`` is the verdict.

    Raises:
        SpecError: the spec is invalid (located message).
        BackendUnavailable: a framework or exporter is not installed.
        WeightMismatch: the weights cannot be transferred (a model does not fit the spec).
    """
    from cnnspec.engine.plan import Plan, channels_last, resolve

    plan = spec if isinstance(spec, Plan) else resolve(spec)
    source = str(spec) if isinstance(spec, (str, os.PathLike)) and Path(str(spec)).suffix in (".yaml", ".yml", ".json") else None
    if batch < 1:
        raise CnnspecError(f"batch must be >= 1, got {batch}")
    steps = _Steps(progress)

    with steps("import"):
        from cnnspec.verifier.onnx_export import import_frameworks

        versions = import_frameworks()
    from cnnspec.verifier import onnx_export as X
    from cnnspec.weights.transfer import randomize, transfer_weights

    with steps("build"):
        from cnnspec.targets.build import build

        user_torch, user_keras = torch_model is not None, keras_model is not None
        if torch_model is None:
            torch_model = build(plan, "torch")
        if keras_model is None:
            keras_model = build(plan, "keras")
        torch_model.eval()

    with steps("transfer"):
        if not user_torch and not user_keras:  # otherwise a model you passed is the source of the weights
            randomize(torch_model, seed)
        if sync_weights:
            if user_keras and not user_torch:
                transfer_weights(keras_model, torch_model, plan)
            else:
                transfer_weights(torch_model, keras_model, plan)
        elif not user_keras:
            transfer_weights(torch_model, keras_model, plan)
        elif not user_torch:
            transfer_weights(keras_model, torch_model, plan)

    names = [layer.name for layer in plan.layers]
    x = make_input(plan, batch, seed)
    x_last = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    onnx_files: dict[str, str] = {}
    with steps("export_torch"):
        torch_graph = X.export_torch(torch_model, names, x, opset=opset)
        X.check_graph(torch_graph, ONNX_FILES["torch"])
    with steps("export_keras"):
        keras_graph = X.export_keras(keras_model, names, channels_last(plan.input_shape), opset=opset)
        X.check_graph(keras_graph, ONNX_FILES["keras"])
    with steps("run_torch"):
        torch_values = X.run_graph(torch_graph, x)
    with steps("run_keras"):
        keras_values = X.run_graph(keras_graph, x_last)
    with steps("referee"):
        referee_values, referee_source, referee_note = _run_referee(plan, torch_model, keras_model, x,
                                                                    "keras" if user_keras and not user_torch else "torch")
    if keep_onnx is not None:
        for framework, graph in (("torch", torch_graph), ("keras", keras_graph)):
            onnx_files[framework] = str(X.save_graph(graph, keep_onnx, ONNX_FILES[framework]))

    with steps("compare"):
        report = _compare(plan, torch_model, keras_model, torch_graph, keras_graph, torch_values, keras_values,
                          atol=atol, rtol=rtol, batch=batch, seed=seed, opset=opset)
        _add_referee(report, plan, torch_graph, keras_graph, torch_values, keras_values, referee_values,
                     referee_source, referee_note)
    report.source = source
    report.timings = steps.timings
    report.versions = versions
    report.onnx_files = onnx_files
    return report


def _run_referee(plan, torch_model, keras_model, x, source: str):
    """The referee's layer outputs, the model its weights came from, and why there is none if so."""
    from cnnspec.verifier.referee import RefereeUnavailable, referee_weights, run_referee

    try:
        weights, source = referee_weights(plan, torch_model, keras_model, source)
    except RefereeUnavailable as error:
        return None, None, f"no referee: the spec's tensors cannot be read from either model ({error})"
    return run_referee(plan, weights, x), source, None


def _add_referee(report: VerifyReport, plan, torch_graph, keras_graph, torch_values, keras_values, referee_values,
                 referee_source, referee_note) -> None:
    """Judge each model against the referee; a model departing from the spec fails the verification."""
    from cnnspec.verifier.referee import judge

    if referee_values is None:
        report.referee_note = referee_note
        return
    report.referee = judge(plan, dict(zip(torch_graph.layer_names, torch_values)),
                           dict(zip(keras_graph.layer_names, keras_values)), referee_values,
                           weights_from=referee_source, atol=report.atol, rtol=report.rtol)
    if report.referee.torch_departs_at or report.referee.keras_departs_at:
        report.problems.append(f"referee (the spec's own ONNX graph): {report.referee.verdict}")
        report.ok = False


def _compare(plan, torch_model, keras_model, torch_graph, keras_graph, torch_values, keras_values, *,
             atol: float, rtol: float, batch: int, seed: int, opset: int) -> VerifyReport:
    problems: list[str] = []
    torch_outputs = dict(zip(torch_graph.layer_names, torch_values))
    keras_outputs = dict(zip(keras_graph.layer_names, keras_values))
    diffs = C.compare_layers(plan, torch_outputs, keras_outputs, atol=atol, rtol=rtol)

    layers = [
        LayerReport(
            name=d.name, type=d.type, shape_ok=d.shape_ok,
            torch_shape=None if d.torch_shape is None else list(d.torch_shape),
            keras_shape=None if d.keras_shape is None else list(d.keras_shape),
            expected_shape=list(d.expected_shape), expected_shape_last=list(d.expected_shape_last),
            max_abs_diff=d.max_abs_diff, mean_abs_diff=d.mean_abs_diff, max_rel_diff=d.max_rel_diff,
            worst_index=None if d.worst_index is None else list(d.worst_index), ok=d.ok, note=d.note,
        )
        for d in diffs
    ]
    for d in diffs:
        if d.shape_ok is False:
            problems.append(f"layer '{d.name}': output shape torch {list(d.torch_shape or [])} / keras "
                            f"{list(d.keras_shape or [])}, the plan says {list(d.expected_shape)} / {list(d.expected_shape_last)}")
    divergent = C.first_divergent(diffs)
    divergence = None
    if divergent is not None:
        divergence = Divergence(
            name=divergent.name, type=divergent.type, max_abs_diff=divergent.max_abs_diff,
            max_rel_diff=divergent.max_rel_diff, hint=C.divergence_hint(divergent, plan.layer(divergent.name), plan),
        )
        problems.insert(0, f"first divergent layer '{divergent.name}' ({divergent.type})"
                        + ("" if divergent.max_abs_diff is None else f": max abs diff {divergent.max_abs_diff:.3g}"))
    compared = [d for d in diffs if d.ok is not None]
    if not any(d.ok is not None for d in diffs):
        problems.append("no layer could be compared")

    params, params_ok = _params(plan, torch_model, keras_model, torch_graph, keras_graph)
    if not params_ok:
        problems.extend(
            f"parameter count of {source}: {p.trainable:,} trainable + {p.non_trainable:,} non-trainable, "
            f"the spec says {params['spec'].trainable:,} + {params['spec'].non_trainable:,}"
            for source, p in params.items() if p.ok is False
        )

    finite = [d.max_abs_diff for d in compared if d.max_abs_diff is not None]
    relative = [d.max_rel_diff for d in compared if d.max_rel_diff is not None]
    last = diffs[-1]
    ok = divergent is None and params_ok and bool(compared) and all(d.shape_ok is not False for d in diffs)
    return VerifyReport(
        ok=ok, spec=plan.name, atol=atol, rtol=rtol, batch=batch, seed=seed, opset=opset,
        max_abs_diff=max(finite) if finite else None, max_rel_diff=max(relative) if relative else None,
        mean_abs_diff=last.mean_abs_diff, output_max_abs_diff=last.max_abs_diff,
        first_divergent_layer=None if divergent is None else divergent.name, divergence=divergence,
        params_ok=params_ok, params=params, layers=layers,
        observation={"torch": torch_graph.observation, "keras": keras_graph.observation}, problems=problems,
    )


def _params(plan, torch_model, keras_model, torch_graph, keras_graph) -> tuple[dict[str, ParamReport], bool]:
    from cnnspec.verifier.onnx_export import op_counts, parameter_counts

    spec_count = C.Count(plan.trainable_params, plan.non_trainable_params,
                         ["the plan; non-trainable = BatchNorm moving mean/variance"], ok=True)
    torch_count, keras_count = C.torch_counts(torch_model), C.keras_counts(keras_model)
    params_ok = True
    for count in (torch_count, keras_count):
        count.ok = count.trainable == spec_count.trainable and count.non_trainable == spec_count.non_trainable
        params_ok &= count.ok
        if not count.ok:
            count.notes.append(f"DIFFERS from the spec by {count.trainable - spec_count.trainable:+,} trainable, "
                               f"{count.non_trainable - spec_count.non_trainable:+,} non-trainable")
    graph_counts = {}
    for source, graph in (("torch_onnx", torch_graph), ("keras_onnx", keras_graph)):
        elements = parameter_counts(graph)
        graph_counts[source] = C.reconcile_onnx(elements["elements"], op_counts(graph.proto), source, plan,
                                                weights=elements["weights"])
    torch_onnx, keras_onnx = graph_counts["torch_onnx"], graph_counts["keras_onnx"]
    counts = {"spec": spec_count, "torch": torch_count, "keras": keras_count, "torch_onnx": torch_onnx, "keras_onnx": keras_onnx}
    reports = {
        source: ParamReport(trainable=c.trainable, non_trainable=c.non_trainable, total=c.total, ok=c.ok, notes=c.notes)
        for source, c in counts.items()
    }
    return reports, bool(params_ok)
