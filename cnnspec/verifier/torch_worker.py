"""The PyTorch side of ``cnnspec verify SPEC`` in a second process, beside the Keras side.

When verify builds both models from the spec itself, the two sides only meet at the weights
(seeded in torch, written into Keras) and at the comparison.  On two cores the PyTorch side
(import torch, build, seed, export, run at each size, the referee) runs in a process forked
at the start, before TensorFlow is imported, while this process imports TensorFlow, builds
the Keras model and exports it.  The worker hands back, in this order:

1. ``weights``: torch's version and the plan's tensors in the neutral (torch) layout;
2. ``graph``: the torch graph's layer names, observation, parameter counts and op counts,
   the kept file (``--keep-onnx``), whether the referee has torch's weights (or why not);
3. one ``size`` message per input size: the torch graph's outputs (or the failure), whether
   it was traced again there, the referee's outputs and where torch departs from them;

then answers ``part`` requests (the divergent layer's kernel, for the evidence) until told
to stop.  Large arrays travel through one memory-mapped file per message in a temporary
directory (``/dev/shm`` where there is room, else on disk), not through the pipe.

An exception in the worker is sent back and raised here at the point where the in-process
verification would raise it (a torch failure before a Keras one when both sides fail); a
worker that dies is reported as :class:`WorkerFailed`, never waited for forever.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cnnspec.errors import CnnspecError

IN_PROCESS_ENV = "CNNSPEC_VERIFY_IN_PROCESS"
# Longest wait for one message of a live worker (a torch export of a very large model).
MESSAGE_TIMEOUT = 1800.0


class WorkerFailed(CnnspecError):
    """The PyTorch worker process died or stopped answering (not a problem of the spec)."""

    exit_code = 70


class _RemoteError(Exception):
    """An exception of the worker that could not be sent as itself."""


@dataclass
class TorchPart:
    """What the evidence of a divergent layer needs of its torch module."""

    kind: str  # "conv" or "dense"
    weight: np.ndarray
    bias: np.ndarray | None
    groups: int = 1


@dataclass
class SizeResult:
    """The torch side at one input size."""

    values: list[np.ndarray] | None = None
    failures: list[str] = field(default_factory=list)
    layer_names: list[str] = field(default_factory=list)
    observation: str = ""
    retraced: bool = False
    error: BaseException | None = None  # raised where the in-process run would raise it
    referee: dict[str, np.ndarray] | None = None
    referee_note: str | None = None
    referee_error: BaseException | None = None
    departure: Any = None  # torch's side of the referee's judgement


def available() -> bool:
    """Whether the PyTorch side runs in a forked process here.

    Only in a process that has not loaded torch or TensorFlow yet (a fork must not copy
    their thread pools) and runs one Python thread, on a system with ``fork``, with torch
    installed; and only with two or more usable cores that are not all busy already (load
    average below their number: on busy cores the two processes only take turns, and the
    worker costs about a CPU second more in all).  ``CNNSPEC_VERIFY_IN_PROCESS=1`` verifies
    in one process; ``=0`` uses the worker whatever the cores and the load.
    """
    import importlib.util
    import multiprocessing
    import sys

    setting = os.environ.get(IN_PROCESS_ENV, "")
    if setting not in ("", "0"):
        return False
    if any(name in sys.modules for name in ("torch", "tensorflow", "keras")):
        return False
    if threading.active_count() > 1:  # a lock another thread holds would stay held in the fork
        return False
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    return setting == "0" or _spare_cores()


def _spare_cores() -> bool:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not cores or cores < 2:
        return False
    try:
        return os.getloadavg()[0] < cores
    except OSError:  # no load average here
        return True


# --------------------------------------------------------------------------------------
# Arrays through memory-mapped files
# --------------------------------------------------------------------------------------


def _shared_directories() -> tuple[str, ...]:
    """A directory in memory (``/dev/shm``) where there is one, then one on disk for what does
    not fit there (a small ``/dev/shm``, as in many containers)."""
    directories = []
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        directories.append(tempfile.mkdtemp(prefix="cnnspec-verify-", dir=shm))
    directories.append(tempfile.mkdtemp(prefix="cnnspec-verify-"))
    return tuple(directories)


def _put_arrays(directories: tuple[str, ...], name: str, arrays: list[np.ndarray]) -> tuple:
    """Write arrays into one file; returns what :func:`_get_arrays` needs to map them."""
    layout = []
    size = 0
    for array in arrays:
        array = np.asarray(array)
        layout.append((size, array.shape, array.dtype.str))
        size += -(-array.nbytes // 64) * 64  # 64-byte aligned
    if size == 0:
        return "", layout, 0
    path = _reserved_file(directories, name, size)
    mapped = np.memmap(path, dtype=np.uint8, mode="r+", shape=(size,))
    for (start, shape, dtype), array in zip(layout, arrays):
        count = int(np.prod(shape))
        view = mapped[start : start + count * np.dtype(dtype).itemsize].view(dtype)
        view[...] = np.asarray(array).reshape(-1)
    del mapped
    return path, layout, size


def _reserved_file(directories: tuple[str, ...], name: str, size: int) -> str:
    """A file of ``size`` bytes whose space is reserved, in the first directory with room:
    writing into a memory map past the free space of its file system kills the process (SIGBUS)
    instead of failing."""
    *first, last = directories
    for directory in first:
        try:
            return _reserve(os.path.join(directory, name), size)
        except OSError:
            continue
    return _reserve(os.path.join(last, name), size)


def _reserve(path: str, size: int) -> str:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.posix_fallocate(descriptor, 0, size)
    except OSError:
        os.unlink(path)
        raise
    finally:
        os.close(descriptor)
    return path


def _get_arrays(packed: tuple) -> list[np.ndarray]:
    """The arrays of one file, copy-on-write mapped; the file is removed (the mapping stays)."""
    path, layout, size = packed
    if size == 0:
        return [np.zeros(shape, dtype) for _, shape, dtype in layout]
    mapped = np.memmap(path, dtype=np.uint8, mode="c", shape=(size,))
    os.unlink(path)
    arrays = []
    for start, shape, dtype in layout:
        count = int(np.prod(shape))
        raw = mapped[start : start + count * np.dtype(dtype).itemsize]
        arrays.append(np.ndarray(shape, dtype=dtype, buffer=raw))
    return arrays


def _pack_error(error: BaseException) -> Any:
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any exception that does not round-trip is sent as text
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return _RemoteError(text)


# --------------------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------------------


@dataclass
class _Job:
    plan: Any
    plans: list
    batch: int
    seed: int
    opset: int
    atol: float
    rtol: float
    open_axes: tuple
    keep_onnx: str | None
    directories: tuple[str, ...]
    from_main_thread: bool


def _die_with_parent() -> None:
    """Linux: the worker gets SIGTERM when the verifying process ends, however it ends."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _serve(connection, other_end, job: _Job) -> None:
    """The worker's main function (in the forked process)."""
    other_end.close()  # the verifying process's end: closing it there must end the pipe
    if job.from_main_thread:  # the signal follows the forking thread, not the process
        _die_with_parent()
    timings: dict[str, float] = {}
    current = ["import"]

    @contextlib.contextmanager
    def step(name: str):
        current[0] = name
        start = time.perf_counter()
        try:
            yield
        finally:
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - start, 4)

    try:
        _work(connection, job, step, timings)
    except (EOFError, BrokenPipeError):
        return
    except BaseException as error:  # noqa: BLE001 - every failure goes back to the verifying process
        with contextlib.suppress(OSError, ValueError):
            connection.send(("error", _pack_error(error), timings, current[0]))
        _answer_requests(connection, None)


def _work(connection, job: _Job, step, timings) -> None:
    from cnnspec.verifier import run as R
    from cnnspec.verifier.onnx_export import ONNX_FILES, import_frameworks

    plan = job.plan
    with step("import"):
        versions = import_frameworks(("torch", "onnx", "onnxruntime"))
        gc.freeze()  # as verify does (run._collector_spared); this process ends with the work
    from cnnspec.targets.base import get_target
    from cnnspec.targets.build import build
    from cnnspec.verifier import onnx_export as X
    from cnnspec.verifier.compare import torch_counts
    from cnnspec.verifier.referee import departure
    from cnnspec.weights.transfer import randomize

    with step("build"):
        torch_model = build(plan, "torch")
        torch_model.eval()
    with step("transfer"):
        randomize(torch_model, job.seed)
        tensors = get_target("torch").read_weights(torch_model, plan)
    keys = list(tensors)
    packed = _put_arrays(job.directories, "weights", [tensors[key] for key in keys])
    connection.send(("weights", str(versions["torch"]), keys, packed))  # not a TorchVersion
    del tensors

    names = [layer.name for layer in plan.layers]

    def export(example, open_axes=()):
        graph = X.export_torch(torch_model, names, example, opset=job.opset, open_axes=open_axes)
        X.check_graph(graph, ONNX_FILES["torch"])
        return graph

    with step("export_torch"):
        torch_graph = export(R.make_input(plan, job.batch, job.seed), job.open_axes)
    kept = None
    if job.keep_onnx is not None:
        with step("keep_onnx"):
            kept = str(X.save_graph(torch_graph, job.keep_onnx, ONNX_FILES["torch"]))
    with step("referee"):
        referee_weights, referee_reason = _referee_weights(plan, torch_model)
        referee_graph = R._open_referee(plan) if len(job.plans) > 1 and referee_weights else None
    with step("params"):
        counts = torch_counts(torch_model)
    elements = X.parameter_counts(torch_graph)
    ops = X.op_counts(torch_graph.proto)
    connection.send(
        (
            "graph",
            dict(
                layer_names=torch_graph.layer_names,
                observation=torch_graph.observation,
                counts=counts,
                elements=elements,
                ops=ops,
                kept=kept,
                referee_reason=referee_reason,
                referee_source="torch" if referee_weights is not None else None,
            ),
        )
    )

    for index, size_plan in enumerate(job.plans):
        result = _at_size(job, size_plan, torch_model, torch_graph, export, step)
        if result.values is not None and result.error is None and not result.failures:
            with step("referee"):
                try:
                    result.referee, result.referee_note = R._run_referee(
                        size_plan,
                        referee_weights,
                        R.make_input(size_plan, job.batch, job.seed),
                        referee_graph,
                    )
                except Exception as error:  # noqa: BLE001 - raised where the in-process run would
                    result.referee_error = _pack_error(error)
            if result.referee is not None:
                with step("compare"):
                    result.departure = departure(
                        size_plan,
                        dict(zip(result.layer_names, result.values)),
                        result.referee,
                        atol=job.atol,
                        rtol=job.rtol,
                    )
        values, referee = result.values, result.referee
        result.values = result.referee = None
        value_file = (
            None if values is None else _put_arrays(job.directories, f"torch{index}", values)
        )
        referee_file = None
        if referee is not None:
            referee_file = (
                list(referee),
                _put_arrays(job.directories, f"referee{index}", list(referee.values())),
            )
        connection.send(("size", result, value_file, referee_file, dict(timings)))
        if result.error is not None:
            break
    _answer_requests(connection, torch_model)


def _at_size(job: _Job, size_plan, torch_model, torch_graph, export, step) -> SizeResult:
    """The torch half of one size of the verification loop in :func:`cnnspec.verifier.run.verify`."""
    from cnnspec.verifier import onnx_export as X
    from cnnspec.verifier import run as R

    x = R.make_input(size_plan, job.batch, job.seed)
    result = SizeResult(layer_names=torch_graph.layer_names, observation=torch_graph.observation)
    try:
        with step("run_torch"):
            values = R._run_at_size(X, torch_graph, x, "torch", size_plan, [])
    except Exception as error:  # noqa: BLE001 - a fixed size that does not run: raised there
        result.error = _pack_error(error)
        return result
    if job.open_axes and not R._traced_faithfully(torch_model, values, x, job.atol, job.rtol):
        size_graph = None
        with step("export_torch"):
            try:
                size_graph = export(x)
            except Exception as error:  # noqa: BLE001 - the model cannot take this size
                result.failures.append(R._cannot_run("torch", size_plan, error))
        if size_graph is not None:
            with step("run_torch"):
                values = R._run_at_size(X, size_graph, x, "torch", size_plan, result.failures)
            result.retraced = True
            result.layer_names = size_graph.layer_names
            result.observation = size_graph.observation
    result.values = values
    return result


def _referee_weights(plan, torch_model):
    """The referee's weights read from torch, or None and why (the Keras side may still have them)."""
    from cnnspec.targets.onnx.emit import unsupported_types
    from cnnspec.targets.onnx.weights import from_torch_model

    if unsupported_types(plan):
        return None, None
    try:
        return from_torch_model(plan, torch_model), None
    except (CnnspecError, ValueError, KeyError, AttributeError) as error:
        return None, f"torch: {error}"


def _answer_requests(connection, torch_model) -> None:
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request[0] != "part" or torch_model is None:
            return
        try:
            module = dict(torch_model.named_modules()).get(request[1])
            connection.send(("part", torch_part(module)))
        except (BrokenPipeError, OSError):
            return


def torch_part(module) -> TorchPart | None:
    """The kernel of a spec layer's torch module when it is a plain convolution or a Linear."""
    import torch

    if isinstance(module, torch.nn.modules.conv._ConvNd) and not getattr(
        module, "transposed", False
    ):
        kind = "conv"
    elif isinstance(module, torch.nn.Linear):
        kind = "dense"
    else:
        return None
    return TorchPart(
        kind=kind,
        weight=module.weight.detach().cpu().numpy(),
        bias=None if module.bias is None else module.bias.detach().cpu().numpy(),
        groups=getattr(module, "groups", 1),
    )


# --------------------------------------------------------------------------------------
# The verifying process's handle
# --------------------------------------------------------------------------------------


class TorchWorker:
    """The forked PyTorch side: start it, take its messages in order, stop it."""

    def __init__(self, process, connection, directories: tuple[str, ...], sizes: int):
        self.process = process
        self.connection = connection
        self.directories = directories
        self.timings: dict[str, float] = {}
        self.failed: BaseException | None = None
        self.pending: list[tuple] = []
        self.sizes_left = sizes
        self.finished = False  # sent all it had to send: it only answers requests now

    @classmethod
    def start(cls, plan, plans, *, batch, seed, opset, atol, rtol, open_axes, keep_onnx):
        """Fork the worker; None when it cannot be started (the caller verifies in-process)."""
        import multiprocessing

        directories: tuple[str, ...] = ()
        try:
            directories = _shared_directories()
            context = multiprocessing.get_context("fork")
            parent_end, child_end = context.Pipe()
            job = _Job(
                plan,
                plans,
                batch,
                seed,
                opset,
                atol,
                rtol,
                tuple(open_axes),
                None if keep_onnx is None else str(keep_onnx),
                directories,
                threading.current_thread() is threading.main_thread(),
            )
            process = context.Process(target=_serve, args=(child_end, parent_end, job), daemon=True)
            process.start()
        except OSError:
            for directory in directories:
                shutil.rmtree(directory, ignore_errors=True)
            return None
        child_end.close()
        return cls(process, parent_end, directories, len(plans))

    def _next(self, kind: str | None = None):
        """The next message of ``kind`` or an error (any next message when None), set-aside ones
        first; a dead or silent worker is a WorkerFailed."""
        for index, message in enumerate(self.pending):
            if kind is None or message[0] in (kind, "error"):
                return self.pending.pop(index)
        while True:
            message = self._read()
            if kind is None or message[0] in (kind, "error"):
                return message
            self.pending.append(message)  # a size sent before a part was asked for

    def _read(self):
        deadline = time.monotonic() + MESSAGE_TIMEOUT
        while not self.connection.poll(0.2):  # also true when the worker's end is closed
            if not self.process.is_alive() and not self.connection.poll(0):
                raise self._ended()
            if time.monotonic() > deadline:
                raise WorkerFailed(
                    f"the PyTorch worker process gave no answer in {MESSAGE_TIMEOUT:.0f} s; "
                    f"run again with {IN_PROCESS_ENV}=1 to verify in one process"
                )
        try:
            return self.connection.recv()
        except (EOFError, OSError):
            raise self._ended() from None

    def _ended(self) -> WorkerFailed:
        self.process.join(5)
        code = self.process.exitcode
        how = "is still running" if code is None else f"exit code {code}"
        if code is not None and code < 0:
            how = f"killed by signal {-code}"
        return WorkerFailed(
            f"the PyTorch worker process ended without an answer ({how}); run again with "
            f"{IN_PROCESS_ENV}=1 to verify in one process"
        )

    def receive(self, kind: str):
        """The next message, which must be ``kind``; the worker's exception is raised here."""
        if self.failed is not None:
            raise self.failed
        try:
            message = self._next(kind)
        except WorkerFailed as error:
            self.failed = error
            raise
        if message[0] == "error":
            self.finished = True  # it answers requests and stops
            self.timings.update(message[2])
            self.failed = _raisable(message[1])
            raise self.failed
        if message[0] != kind:
            self.failed = WorkerFailed(f"the PyTorch worker sent '{message[0]}', not '{kind}'")
            raise self.failed
        if kind == "size":
            result = message[1]
            for name in ("error", "referee_error"):
                if getattr(result, name) is not None:
                    setattr(result, name, _raisable(getattr(result, name)))
            self.timings.update(message[-1])
            self.sizes_left -= 1
            self.finished = self.sizes_left == 0 or message[1].error is not None
            return message[1:-1]
        return message[1:]

    def raise_earlier(self, kind: str, steps: tuple[str, ...]) -> None:
        """After a failure here: raise the worker's own failure instead when it happened in one
        of ``steps`` (which the one-process verification runs first); ``kind`` is the message
        that says the worker got past them."""
        if self.failed is not None:
            return
        try:
            message = self._next()
        except WorkerFailed:
            return
        self.pending.insert(0, message)
        if message[0] == "error" and message[3] in steps:
            self.receive(kind)

    def part(self, name: str) -> TorchPart | None:
        """The torch module of a spec layer, for the evidence of a divergence."""
        self.connection.send(("part", name))
        (part,) = self.receive("part")
        return part

    def close(self) -> None:
        """Stop the worker and remove its files (never leaves a process behind).

        A worker that has sent everything ends by itself when told to stop; it is not waited
        for (freeing a large model's memory takes a few tenths of a second; the process is
        reaped by the next ``multiprocessing`` call or at exit).  One still working, after an
        error here, is terminated.
        """
        with contextlib.suppress(OSError, ValueError):
            self.connection.send(("stop",))
        with contextlib.suppress(OSError):
            self.connection.close()
        if not self.finished:
            self.process.terminate()
            self.process.join(5)
            if self.process.is_alive():
                self.process.kill()
                self.process.join()
        for directory in self.directories:
            shutil.rmtree(directory, ignore_errors=True)


def _raisable(error: BaseException) -> BaseException:
    if isinstance(error, _RemoteError):
        return RuntimeError(f"in the PyTorch worker process: {error}")
    return error


def arrays(packed) -> list[np.ndarray]:
    """The arrays a message points at."""
    return _get_arrays(packed)
