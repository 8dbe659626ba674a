"""The ``cnnspec verify`` sub-command: arguments, progress display, parallel runs, output, exit code.

Exit codes: 0 every spec verified, 1 a mismatch in at least one spec, 2 invalid input or usage (a
located message, never a traceback); with several specs the worst code wins.  The reports it
writes (``--json``, ``--junit-xml``, ``--keep-onnx``) are regenerated outputs: a rerun replaces them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cnnspec.errors import CnnspecError, SpecError
from cnnspec.verifier.tolerances import DEFAULT_ATOL, DEFAULT_RTOL

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 70


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``verify`` arguments to its sub-parser."""
    parser.description = (
        "Exit codes: 0 every spec's models agree, 1 at least one mismatch, 2 bad input or usage (an invalid "
        "spec, a missing file); with several specs the worst code wins. Reports (--json, --junit-xml, "
        "--keep-onnx) are regenerated outputs: a rerun replaces them, creating missing folders."
    )
    parser.add_argument("specs", nargs="+", metavar="SPEC", help="spec files (YAML or JSON)")
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="write the reports as one JSON document {ok, exit_code, reports: [...]} to PATH "
        "('-' for stdout, which then carries only the JSON)",
    )
    parser.add_argument(
        "--junit-xml",
        metavar="PATH",
        default=None,
        help="write a JUnit XML report to PATH: one test case per spec, a failure naming the "
        "first divergent layer and its numbers",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only one verdict line per spec (errors still go to stderr)",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        metavar="A",
        help=f"absolute tolerance per element (default {DEFAULT_ATOL:g})",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=DEFAULT_RTOL,
        metavar="R",
        help=f"relative tolerance per element: |keras - torch| <= atol + rtol*|torch| (default {DEFAULT_RTOL:g})",
    )
    parser.add_argument(
        "--batch", type=_positive_int, default=2, metavar="N", help="input batch size (default 2)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of the random weights and input (default 0)",
    )
    parser.add_argument(
        "--opset", type=int, default=18, metavar="K", help="ONNX opset of both exports (default 18)"
    )
    parser.add_argument(
        "-j",
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="JOBS",
        help="verify several specs in parallel processes (default 1). It pays only with idle "
        "cores to spare: every process imports the frameworks again (about 5 s of CPU), the "
        "frameworks already run several threads each, and the largest spec bounds the run. On "
        "2 cores -j 2 is not faster than -j 1 (36.3 s and 36.6 s on the 10 examples; slower on a "
        "busy machine; bench/README.md)",
    )
    parser.add_argument(
        "--keep-onnx",
        metavar="DIR",
        default=None,
        help="keep the two graphs as DIR/torch.onnx and DIR/keras.onnx (DIR/<model>/... for several specs, DIR/<model>_<N>/... when two share a model name)",
    )
    parser.add_argument(
        "--input-size",
        dest="input_sizes",
        action="append",
        type=parse_input_size,
        default=None,
        metavar="H,W",
        help="verify at this spatial input size (one number for every axis, or one per axis); "
        "repeat it to check a spec with open sizes (size: [null, null]) at several sizes in one "
        "run: both models are built and exported once, with dynamic axes, and compared at each. "
        "Default: the spec's size; for an open spec its reference_size (else 224) and that plus one, or "
        "plus the period of a join that agrees only at multiples (a U-Net skip). "
        "A size the spec refuses (a fixed axis, a collapse, a join that disagrees) is exit 2",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    parser.add_argument(
        "--force",
        action="store_true",
        help="accepted for compatibility; verify always replaces its reports",
    )
    add_model_arguments(parser)


def parse_input_size(text: str) -> int | tuple[int, ...]:
    """``224`` (every axis) or ``224,225`` (one per spatial axis; ``x`` separates too)."""
    parts = [part.strip() for part in text.replace("x", ",").replace("×", ",").split(",")]
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes like 224 or 224,224, got '{text}'"
        ) from None
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got '{text}'")
    return values[0] if len(values) == 1 else tuple(values)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# --------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------


class Progress:
    """A one-line progress display on stderr (a rich spinner when available); silent when disabled."""

    def __init__(self, enabled: bool, prefix: str = ""):
        self.enabled = enabled
        self.prefix = prefix
        self._status = None
        self._plain = False
        if not enabled:
            return
        try:
            from rich.console import Console

            self._status = Console(stderr=True).status("", spinner="dots")
            self._started = False
        except ImportError:
            self._plain = True

    def __call__(self, label: str) -> None:
        if not self.enabled:
            return
        text = f"{self.prefix}{label}…"
        if self._status is not None:
            self._status.update(text)
            if not self._started:
                self._status.start()
                self._started = True
        elif self._plain:
            sys.stderr.write(f"\r\033[K{text}")
            sys.stderr.flush()

    def close(self) -> None:
        """Remove the progress line."""
        if self._status is not None and self._started:
            self._status.stop()
            self._started = False
        elif self._plain:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


# --------------------------------------------------------------------------------------
# One spec
# --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What verifying one spec produced."""

    source: str
    code: int
    report: dict | None = None
    text: str = ""
    error: str | None = None
    summary: str = ""
    seconds: float = 0.0


def _options(args) -> dict:
    options = dict(
        atol=args.atol, rtol=args.rtol, batch=args.batch, seed=args.seed, opset=args.opset
    )
    if getattr(args, "input_sizes", None):
        options["input_sizes"] = list(args.input_sizes)
    return options


def verify_one(
    source: str,
    options: dict,
    keep_onnx: str | None,
    show_progress: bool,
    color: bool,
    prefix: str = "",
) -> Outcome:
    """Verify one spec file; never raises for bad input (the outcome carries the code and message).

    Runs in the CLI's process or in a worker process (a top-level function, so it pickles).
    """
    from cnnspec.verifier.run import verify

    progress = Progress(show_progress, prefix)
    started = time.perf_counter()
    try:
        report = verify(source, keep_onnx=keep_onnx, progress=progress, **options)
    except SpecError as error:
        return Outcome(
            source,
            error.exit_code,
            error=error.render(),
            summary=f"INVALID   {source}",
            seconds=time.perf_counter() - started,
        )
    except CnnspecError as error:
        return Outcome(
            source,
            error.exit_code,
            error=f"{source}: {error}",
            summary=f"ERROR     {source}: {error}",
            seconds=time.perf_counter() - started,
        )
    finally:
        progress.close()
    code = EXIT_OK if report.ok else EXIT_MISMATCH
    return Outcome(
        source,
        code,
        report=report.to_dict(),
        text=report.render(color=color),
        summary=report.summary_line(),
        seconds=time.perf_counter() - started,
    )


def _verify_in_worker(source: str, options: dict, keep_onnx: str | None) -> Outcome:
    from cnnspec.verifier.torch_worker import IN_PROCESS_ENV

    os.environ[IN_PROCESS_ENV] = "1"  # -j: the processes already share the cores
    try:
        return verify_one(source, options, keep_onnx, show_progress=False, color=False)
    except Exception as error:  # noqa: BLE001 - reported per spec, the other specs still run
        return Outcome(
            source,
            EXIT_INTERNAL,
            error=f"{source}: internal error: {type(error).__name__}: {error}",
            summary=f"ERROR     {source}: internal error",
        )


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def run(args, check_limits: Callable | None = None) -> int:
    """Run ``cnnspec verify`` with parsed arguments; returns the exit code.

    Args:
        args: the parsed ``verify`` arguments.
        check_limits: called with each spec's plan before any framework is imported
            (raises a CnnspecError when the spec is too big).
    """
    from cnnspec.engine.plan import resolve
    from cnnspec.verifier.run import size_plans

    _check_report_paths(args)
    json_to_stdout = args.json == "-"
    show_progress = not args.no_progress and not args.quiet and sys.stderr.isatty()
    color = sys.stdout.isatty() and not json_to_stdout and "NO_COLOR" not in os.environ
    several = len(args.specs) > 1
    options = _options(args)
    options.update(user_model_options(args))

    outcomes: dict[int, Outcome] = {}
    pending: list[tuple[int, str, str | None]] = []
    sizes: dict[int, int] = {}
    kept_dirs: set[str] = set()
    for position, source in enumerate(args.specs):
        try:
            plan = resolve(source)
            for size_plan in size_plans(plan, options.get("input_sizes")):
                if check_limits is not None:
                    check_limits(size_plan)
        except SpecError as error:
            outcomes[position] = Outcome(
                source, error.exit_code, error=error.render(), summary=f"INVALID   {source}"
            )
            continue
        except CnnspecError as error:
            outcomes[position] = Outcome(
                source,
                error.exit_code,
                error=f"{source}: {error}",
                summary=f"REFUSED   {source}: {error}",
            )
            continue
        keep = None
        if args.keep_onnx:
            keep = args.keep_onnx
            if several:  # one folder per spec; two specs with the same model name must not overwrite each other
                folder = plan.name if plan.name not in kept_dirs else f"{plan.name}_{position}"
                kept_dirs.add(folder)
                keep = str(Path(args.keep_onnx) / folder)
        pending.append((position, source, keep))
        sizes[position] = plan.total_params

    if len(pending) > 1 and args.jobs > 1:
        # Largest first: the biggest spec bounds a parallel run, so it must not start last.
        largest_first = sorted(pending, key=lambda item: -sizes[item[0]])
        outcomes.update(_run_parallel(largest_first, options, args.jobs, show_progress))
    else:
        for position, source, keep in pending:
            prefix = f"[{source}] " if several else ""
            outcomes[position] = verify_one(source, options, keep, show_progress, color, prefix)

    ordered = [outcomes[i] for i in sorted(outcomes)]
    _print(ordered, args, json_to_stdout, several)
    return max(outcome.code for outcome in ordered)


def _run_parallel(pending, options: dict, jobs: int, show_progress: bool) -> dict[int, Outcome]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: dict[int, Outcome] = {}
    progress = Progress(show_progress)
    context = multiprocessing.get_context("spawn")
    done = 0
    try:
        with ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=context) as pool:
            futures = {
                pool.submit(_verify_in_worker, source, options, keep): (position, source)
                for position, source, keep in pending
            }
            progress(
                f"verifying {len(pending)} specs in {min(jobs, len(pending))} processes (0 done)"
            )
            for future in as_completed(futures):
                position, source = futures[future]
                try:
                    results[position] = future.result()
                except Exception as error:  # noqa: BLE001 - a worker died (e.g. out of memory)
                    results[position] = Outcome(
                        source,
                        EXIT_INTERNAL,
                        error=f"{source}: worker failed: {error}",
                        summary=f"ERROR     {source}: worker failed",
                    )
                done += 1
                progress(
                    f"verifying {len(pending)} specs in {min(jobs, len(pending))} processes ({done} done)"
                )
    finally:
        progress.close()
    return results


def _json_document(outcomes: list[Outcome]) -> dict:
    """One shape whatever the number of specs: ``ok``, ``exit_code`` and ``reports`` (one per spec, in order)."""

    def entry(outcome: Outcome) -> dict:
        if outcome.report is not None:
            return outcome.report
        return {
            "ok": False,
            "source": outcome.source,
            "exit_code": outcome.code,
            "error": outcome.error,
        }

    return {
        "ok": all(o.code == EXIT_OK for o in outcomes),
        "exit_code": max(o.code for o in outcomes),
        "reports": [entry(o) for o in outcomes],
    }


def _print(outcomes: list[Outcome], args, json_to_stdout: bool, several: bool) -> None:
    for outcome in outcomes:
        if outcome.error:
            print(outcome.error, file=sys.stderr)
    if args.json:
        text = json.dumps(_json_document(outcomes), indent=2, ensure_ascii=False) + "\n"
        if json_to_stdout:
            sys.stdout.write(text)
        else:
            _write_text(args.json, text)
    if args.junit_xml:
        _write_text(args.junit_xml, junit_xml(outcomes))
    if args.quiet:
        stream = sys.stderr if json_to_stdout else sys.stdout
        for outcome in outcomes:
            print(outcome.summary, file=stream)
        return
    if json_to_stdout:
        if several:
            for outcome in outcomes:
                print(outcome.summary, file=sys.stderr)
        return
    for outcome in outcomes:
        if outcome.text:
            sys.stdout.write(outcome.text)
            if several:
                sys.stdout.write("\n")
    if several:
        print("Summary")
        for outcome in outcomes:
            print(f"  {outcome.summary}")
        counts = {
            "ok": sum(o.code == EXIT_OK for o in outcomes),
            "mismatched": sum(o.code == EXIT_MISMATCH for o in outcomes),
            "invalid or failed": sum(o.code not in (EXIT_OK, EXIT_MISMATCH) for o in outcomes),
        }
        print(
            f"  {len(outcomes)} specs: " + ", ".join(f"{n} {label}" for label, n in counts.items())
        )


def _check_report_paths(args) -> None:
    """Refuse report paths that cannot be right, before any slow work starts (exit 2).

    A report path that is a folder, or one of the specs being verified (a rerun replaces reports,
    so a mistyped ``--json examples/x.yaml`` would destroy the spec), is a usage error.
    """
    specs = set()
    for spec in args.specs:
        try:
            specs.add(Path(spec).resolve())
        except (OSError, ValueError):  # an unusable spec path is reported with the spec
            continue
    for option, path in (
        ("--json", args.json),
        ("--junit-xml", args.junit_xml),
        ("--keep-onnx", args.keep_onnx),
    ):
        if not path or path == "-":
            continue
        target = Path(path)
        if option != "--keep-onnx" and target.is_dir():
            raise CnnspecError(f"{option} {path}: is a folder; name the report file to write")
        if option == "--keep-onnx" and target.exists() and not target.is_dir():
            raise CnnspecError(f"--keep-onnx {path}: is a file; name a folder for the graphs")
        if target.resolve() in specs:
            raise CnnspecError(
                f"{option} {path}: is one of the specs being verified; reports replace their file"
            )


def _write_text(path: str, text: str) -> None:
    """Write a report file atomically (never half a file), replacing an earlier report."""
    from cnnspec.atomic import atomic_write

    atomic_write(path, text, overwrite=True)


# --------------------------------------------------------------------------------------
# JUnit XML
# --------------------------------------------------------------------------------------


def _failure_message(report: dict) -> str:
    """The first divergent layer and its numbers, or the first problem."""
    divergence = report.get("divergence")
    if divergence:
        numbers = []
        if divergence.get("max_abs_diff") is not None:
            numbers.append(f"max abs diff {divergence['max_abs_diff']:.3g}")
        if divergence.get("max_rel_diff") is not None:
            numbers.append(f"max rel diff {divergence['max_rel_diff']:.3g}")
        numbers.append(f"atol {report['atol']:g}, rtol {report['rtol']:g}")
        at = f" at {'×'.join(map(str, report['input_size']))}" if report.get("sizes") else ""
        return (
            f"first divergent layer '{divergence['name']}' ({divergence['type']}){at}: "
            + ", ".join(numbers)
        )
    problems = report.get("problems") or ["the models do not agree"]
    return problems[0]


def junit_xml(outcomes: list[Outcome]) -> str:
    """A JUnit XML document: one ``testcase`` per spec; a mismatch is a ``failure``, bad input an ``error``."""
    import socket
    import xml.etree.ElementTree as ET
    from datetime import datetime, timezone

    failures = sum(o.code == EXIT_MISMATCH for o in outcomes)
    errors = sum(o.code not in (EXIT_OK, EXIT_MISMATCH) for o in outcomes)
    total_time = f"{sum(o.seconds for o in outcomes):.3f}"
    counts = {"tests": str(len(outcomes)), "failures": str(failures), "errors": str(errors)}
    root = ET.Element("testsuites", {"name": "cnnspec verify", **counts, "time": total_time})
    suite = ET.SubElement(
        root,
        "testsuite",
        {
            "name": "cnnspec verify",
            **counts,
            "skipped": "0",
            "time": total_time,
            "timestamp": datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None).isoformat(),
            "hostname": socket.gethostname(),
        },
    )
    for outcome in outcomes:
        model = (outcome.report or {}).get("spec")
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": f"cnnspec.verify.{model}" if model else "cnnspec.verify",
                "name": outcome.source,
                "time": f"{outcome.seconds:.3f}",
            },
        )
        if outcome.code == EXIT_MISMATCH and outcome.report is not None:
            failure = ET.SubElement(
                case, "failure", {"message": _failure_message(outcome.report), "type": "mismatch"}
            )
            failure.text = outcome.text or "\n".join(outcome.report.get("problems") or [])
        elif outcome.code != EXIT_OK:
            kind = "invalid_input" if outcome.code == EXIT_BAD_INPUT else "internal_error"
            message = (
                (outcome.error or outcome.summary).splitlines()[0]
                if (outcome.error or outcome.summary)
                else kind
            )
            error = ET.SubElement(case, "error", {"message": message, "type": kind})
            error.text = outcome.error or outcome.summary
        elif outcome.report is not None:
            ET.SubElement(case, "system-out").text = outcome.summary
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --------------------------------------------------------------------------------------
# Your own models: --torch-model, --torch-weights, --keras-model, --keras-weights, --name-map
# --------------------------------------------------------------------------------------


class UserModelError(CnnspecError):
    """A model, weights file or name map given on the command line cannot be used."""


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that verify your own port instead of a generated model."""
    group = parser.add_argument_group(
        "your own models",
        "verify a hand-written port against the spec (one SPEC); the other framework's "
        "model is generated from the spec and receives your model's weights",
    )
    group.add_argument(
        "--torch-model",
        metavar="MODULE:ATTR",
        default=None,
        help="an nn.Module to verify: module:attr or path/file.py:attr, where attr is an nn.Module "
        "instance, a class or a factory called without arguments",
    )
    group.add_argument(
        "--torch-weights",
        metavar="FILE",
        default=None,
        help="a state_dict for --torch-model, loaded with torch.load(weights_only=True)",
    )
    group.add_argument(
        "--keras-model",
        metavar="FILE.keras|MODULE:ATTR",
        default=None,
        help="a functional or Sequential keras.Model to verify: a .keras file (loaded with "
        "safe_mode) or module:attr / path/file.py:attr",
    )
    group.add_argument(
        "--keras-weights",
        metavar="FILE.weights.h5",
        default=None,
        help="weights for --keras-model, loaded with keras' load_weights",
    )
    group.add_argument(
        "--name-map",
        metavar="FILE",
        default=None,
        help="JSON or YAML mapping of spec layer -> torch module path or Keras layer name (or "
        "{torch: {...}, keras: {...}}) for models whose parts are not named like the spec layers",
    )


def user_model_options(args) -> dict:
    """Load the models, weights and name map given on the command line, as ``verify`` keyword arguments.

    Raises:
        UserModelError: a located, one-line reason (exit code 2).
    """
    torch_ref, keras_ref = getattr(args, "torch_model", None), getattr(args, "keras_model", None)
    if getattr(args, "torch_weights", None) and not torch_ref:
        raise UserModelError("--torch-weights needs --torch-model (the model to load them into)")
    if getattr(args, "keras_weights", None) and not keras_ref:
        raise UserModelError("--keras-weights needs --keras-model (the model to load them into)")
    if getattr(args, "name_map", None) and not (torch_ref or keras_ref):
        raise UserModelError(
            "--name-map matches the parts of --torch-model / --keras-model; neither was given"
        )
    if not (torch_ref or keras_ref):
        return {}
    if len(args.specs) > 1:
        raise UserModelError(
            "--torch-model / --keras-model verify one spec at a time; "
            f"{len(args.specs)} specs were given"
        )
    from cnnspec.verifier.onnx_export import import_frameworks

    import_frameworks()  # quiet framework imports before any user code runs
    options: dict = {}
    if args.name_map:
        from cnnspec.weights.matching import load_name_map

        options["name_map"] = load_name_map(args.name_map)
        _check_name_map_keys(options["name_map"], args.specs[0], args.name_map)
    if torch_ref:
        options["torch_model"] = _load_torch_model(torch_ref, args.torch_weights, args.seed)
    if keras_ref:
        options["keras_model"] = _load_keras_model(keras_ref, args.keras_weights, args.seed)
    return options


def _check_name_map_keys(name_map: dict, source: str, path: str) -> None:
    from cnnspec.engine.plan import resolve
    from cnnspec.weights.matching import NameMapError, check_spec_layers

    try:
        check_spec_layers(name_map, resolve(source))
    except NameMapError as error:
        raise UserModelError(f"{path}: {error} (spec {source})") from None


def _load_torch_model(reference: str, weights: str | None, seed: int):
    import torch

    torch.manual_seed(
        seed
    )  # a model without --torch-weights gets the same initial weights on every run
    model = _instantiate(
        _import_attribute(reference, "--torch-model"),
        reference,
        "--torch-model",
        torch.nn.Module,
        "an nn.Module",
    )
    if weights:
        from cnnspec.weights.files import load_weights_file

        try:
            notes = load_weights_file(model, weights)
        except CnnspecError as error:
            raise UserModelError(f"--torch-weights {weights}: {error}") from None
        for note in notes:
            print(f"note: --torch-weights {weights}: {note}", file=sys.stderr)
    return model.eval()


def _load_keras_model(reference: str, weights: str | None, seed: int):
    import keras

    keras.utils.set_random_seed(seed)
    if reference.endswith(".keras"):
        path = Path(reference)
        if not path.is_file():
            raise UserModelError(f"--keras-model {reference}: file not found")
        try:
            model = keras.saving.load_model(str(path), safe_mode=True)
        except Exception as error:  # noqa: BLE001 - keras raises many types for a bad file
            raise UserModelError(
                f"--keras-model {reference}: cannot load it: {_first_line(error)}"
            ) from None
    else:
        model = _instantiate(
            _import_attribute(reference, "--keras-model"),
            reference,
            "--keras-model",
            keras.Model,
            "a keras.Model",
        )
    if weights:
        if not weights.endswith(".weights.h5"):
            raise UserModelError(
                f"--keras-weights {weights}: Keras weights files end in .weights.h5"
            )
        if not Path(weights).is_file():
            raise UserModelError(f"--keras-weights {weights}: file not found")
        try:
            model.load_weights(weights)
        except Exception as error:  # noqa: BLE001
            raise UserModelError(
                f"--keras-weights {weights}: do not fit the model: {_first_line(error)}"
            ) from None
    return model


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _where(error: BaseException, path: Path | None = None) -> str:
    """``file:line`` of the deepest frame of the user's code in a traceback ('' when unknown)."""
    import traceback

    if isinstance(error, SyntaxError) and error.filename:
        return f"{error.filename}:{error.lineno}: "
    frames = traceback.extract_tb(error.__traceback__)
    inside = [
        f for f in frames if path is not None and Path(f.filename).resolve() == path.resolve()
    ]
    user = inside or [
        f for f in frames if "importlib" not in f.filename and "/cnnspec/" not in f.filename
    ]
    return f"{user[-1].filename}:{user[-1].lineno}: " if user else ""


def _import_attribute(reference: str, flag: str):
    import importlib
    import importlib.util

    location, colon, attribute = reference.rpartition(":")
    if not colon or not location or not attribute:
        raise UserModelError(
            f"{flag} {reference}: expected module:attr or path/file.py:attr "
            "(e.g. examples/ports/tutorial_cnn.py:Net)"
        )
    path = None
    if location.endswith(".py") or "/" in location or os.sep in location:
        path = Path(location)
        if not path.is_file():
            raise UserModelError(f"{flag} {reference}: file not found: {path}")
        spec = importlib.util.spec_from_file_location(f"cnnspec_port_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise UserModelError(f"{flag} {reference}: {path} is not a Python file")
        module = importlib.util.module_from_spec(spec)
        folder = str(path.parent.resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)  # the port may import its neighbours
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # noqa: BLE001 - the user's code: any error is reported, located
            raise UserModelError(
                f"{flag} {reference}: {_where(error, path)}running {path} failed: "
                f"{_first_line(error)}"
            ) from None
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(location)
        except ModuleNotFoundError as error:
            raise UserModelError(f"{flag} {reference}: no module named '{error.name}'") from None
        except Exception as error:  # noqa: BLE001
            raise UserModelError(
                f"{flag} {reference}: {_where(error)}importing {location} failed: "
                f"{_first_line(error)}"
            ) from None
    target = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            public = sorted(name for name in vars(module) if not name.startswith("_"))[:12]
            raise UserModelError(
                f"{flag} {reference}: {location} has no attribute '{attribute}' "
                f"(it has: {', '.join(public) or 'nothing public'})"
            )
        target = getattr(target, part)
    return target, path


def _instantiate(found, reference: str, flag: str, kind: type, kind_text: str):
    """An instance as it is, or a class / factory called without arguments."""
    target, path = found
    if isinstance(target, kind):
        return target
    if not callable(target):
        raise UserModelError(
            f"{flag} {reference}: is a {type(target).__name__}, not {kind_text}, "
            "a class or a factory"
        )
    try:
        model = target()
    except Exception as error:  # noqa: BLE001 - the user's code
        raise UserModelError(
            f"{flag} {reference}: {_where(error, path)}calling {reference.rpartition(':')[2]}() "
            f"failed: {_first_line(error)} (the class or factory is called without arguments)"
        ) from None
    if not isinstance(model, kind):
        raise UserModelError(
            f"{flag} {reference}: {reference.rpartition(':')[2]}() returned a "
            f"{type(model).__name__}, not {kind_text}"
        )
    return model
