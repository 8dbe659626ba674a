"""The ``cnnspec`` command: validate, explain, schema, build, verify, import, convert.

Exit codes: 0 success, 1 a verification found a mismatch, 2 bad input (a located
message, never a traceback), 130 interrupted.  ``validate``, ``explain`` and
``schema`` never import a framework.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cnnspec import __version__
from cnnspec.cli.verify import parse_input_size
from cnnspec.errors import CnnspecError, SpecError

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 70, 130


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line message (its default, made explicit)."""

    def error(self, message: str):  # pragma: no cover - exercised through main()
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _add_limits(parser: argparse.ArgumentParser, applied_by_default: bool = True) -> None:
    default = (
        "a quarter of this machine's memory"
        if applied_by_default
        else "not checked (a verdict that does not depend on the machine)"
    )
    parser.add_argument(
        "--max-params",
        type=int,
        default=None,
        metavar="N",
        help="refuse specs with more parameters than N (checked before any framework allocates)",
    )
    parser.add_argument(
        "--max-memory",
        default=None,
        metavar="SIZE",
        help=f"refuse specs whose parameters + activations need more than SIZE (e.g. 4GiB); default: {default}",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cnnspec`` command."""
    parser = _ArgumentParser(
        prog="cnnspec",
        description="One CNN spec -> equivalent PyTorch (NCHW) and Keras (NHWC) models, proven equal through ONNX.",
    )
    parser.add_argument("--version", action="version", version=f"cnnspec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_ArgumentParser)
    sub.required = True

    p = sub.add_parser(
        "validate", help="check specs; exit 0 if valid, 2 with a located message otherwise"
    )
    p.add_argument("specs", nargs="+", metavar="SPEC")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    _add_limits(p, applied_by_default=False)

    p = sub.add_parser(
        "explain", help="shapes in both layouts, padding, output-size and parameter arithmetic"
    )
    p.add_argument("spec", metavar="SPEC")
    form = p.add_mutually_exclusive_group()
    form.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of the table (notes included)",
    )
    form.add_argument(
        "--wide",
        action="store_true",
        help="one line per layer, however long (default: fits 100 columns)",
    )
    form.add_argument(
        "--html",
        metavar="OUT.html",
        help="write a self-contained page (pictures of shapes, padding, code) to OUT.html, atomically",
    )
    p.add_argument(
        "--lang",
        choices=("en", "ko"),
        default="en",
        help="language of labels and notes (default: en)",
    )
    p.add_argument("--force", action="store_true", help="overwrite OUT.html if it exists")
    p.add_argument(
        "--input-size",
        type=parse_input_size,
        metavar="H,W",
        help="the spatial input size to show the numbers at (an open spec shows formulas of H, W "
        "and, by default, the numbers at its reference_size)",
    )

    p = sub.add_parser("schema", help="print the JSON Schema of the spec format")
    p.add_argument(
        "-o", "--output", metavar="FILE", help="write it to FILE (atomically) instead of stdout"
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")

    p = sub.add_parser(
        "build",
        help="write the generated PyTorch or Keras source, or an ONNX model (and convert weights)",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument(
        "--target",
        "-t",
        choices=("torch", "keras", "onnx"),
        required=True,
        help="onnx: an .onnx model straight from the spec (needs only the onnx package); -o is required",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the source to FILE (atomically) instead of stdout",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument(
        "--weights-from",
        metavar="FILE",
        help="weights to convert: a torch state_dict or checkpoint (.pt/.pth/.ckpt, loaded with "
        "weights_only=True; 'state_dict'/'model' entries and 'module.'/'model.' key prefixes are "
        "unwrapped, with a note), .safetensors, or a Keras .weights.h5; needs --save-weights",
    )
    p.add_argument(
        "--save-weights",
        metavar="FILE",
        help="write the target model's weights (converted from --weights-from) to FILE; with --target onnx, "
        "the model's weights as ONNX external data in FILE beside the .onnx",
    )
    _add_limits(p)

    p = sub.add_parser(
        "verify",
        help="export both models to ONNX, run them, compare shapes, params and outputs per layer",
    )
    try:
        from cnnspec.cli.verify import add_arguments
    except ImportError:  # pragma: no cover - only while the verifier is absent
        p.add_argument("specs", nargs="+", metavar="SPEC")
    else:
        add_arguments(p)
        _add_limits(p)

    from cnnspec.cli.convert import add_convert_arguments, add_import_arguments

    p = sub.add_parser("import", help="import a Keras, PyTorch or ONNX model as a spec")
    add_import_arguments(p)
    p = sub.add_parser(
        "convert",
        help="convert a model to the other framework: spec, source, weights, per-layer proof",
    )
    add_convert_arguments(p)
    return parser


def _write_output(path: str, text: str, force: bool) -> None:
    from cnnspec.atomic import atomic_write

    atomic_write(path, text, overwrite=force)


def cmd_validate(args) -> int:
    from cnnspec.engine.plan import resolve
    from cnnspec.load.loader import load_spec

    problems: list[str] = []
    for spec_path in args.specs:
        try:
            plan = resolve(load_spec(spec_path))
            if args.max_params is not None or args.max_memory is not None:
                _check_limits(plan, args)
        except SpecError as error:
            problems.append(error.render())
            continue
        if not args.quiet:
            print(
                f"{spec_path}: ok — {plan.name}, {len(plan.layers)} layers, {plan.total_params:,} parameters"
            )
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    return EXIT_OK


def cmd_explain(args) -> int:
    from cnnspec.teach.explain import explain

    explanation = explain(args.spec, lang=args.lang, input_size=args.input_size)
    if args.html:
        target = Path(args.html)
        if not (target.parent if str(target.parent) else Path(".")).is_dir():
            raise CnnspecError(f"{args.html}: the folder {target.parent} does not exist")
        explanation.save_page(target, overwrite=args.force)
        print(f"wrote {args.html} ({explanation.plan.name}, {args.lang})", file=sys.stderr)
    elif args.json:
        sys.stdout.write(explanation.to_json())
    else:
        sys.stdout.write(explanation.text(wide=args.wide))
    return EXIT_OK


def cmd_schema(args) -> int:
    from cnnspec.spec.schema import json_schema_text

    text = json_schema_text()
    if args.output:
        _write_output(args.output, text, args.force)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _check_limits(plan, args) -> None:
    from cnnspec.engine.limits import check_limits, parse_size

    max_memory = parse_size(args.max_memory) if args.max_memory else None
    check_limits(
        plan,
        max_params=args.max_params,
        max_memory=max_memory,
        batch=getattr(args, "batch", None) or 1,
    )


def _weights_framework(path: str) -> str:
    lowered = path.lower()
    if lowered.endswith(".weights.h5") or lowered.endswith(".h5") or lowered.endswith(".keras"):
        return "keras"
    if lowered.endswith((".pt", ".pth", ".bin", ".ckpt", ".safetensors")):
        return "torch"
    raise CnnspecError(
        f"{path}: cannot tell the framework of this weight file; use .pt/.pth/.ckpt/.safetensors (torch) "
        "or .weights.h5 (Keras)"
    )


def cmd_build(args) -> int:
    from cnnspec.engine.plan import resolve
    from cnnspec.targets.build import emit_source

    plan = resolve(args.spec)
    _check_limits(plan, args)
    # Refuse existing outputs before doing any slow work.
    for path in filter(None, (args.output, args.save_weights)):
        if Path(path).exists() and not args.force:
            from cnnspec.errors import OutputExistsError

            raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    if args.save_weights and not args.weights_from:
        raise CnnspecError("--save-weights needs --weights-from (the weights to convert)")
    if (
        args.weights_from and not args.save_weights and args.target != "onnx"
    ):  # the .onnx holds them
        raise CnnspecError(
            "--weights-from needs --save-weights FILE: the converted weights go only there "
            "(without it they would be thrown away)"
        )
    if args.weights_from and not Path(args.weights_from).is_file():
        raise CnnspecError(f"{args.weights_from}: no such weight file")
    if args.target == "onnx":
        return _build_onnx(plan, args)
    source = emit_source(plan, args.target)
    if args.weights_from:
        _convert_weights(plan, args)
    if args.output:
        _write_output(args.output, source, args.force)
        print(f"wrote {args.output} ({args.target}, {plan.name})", file=sys.stderr)
    else:
        sys.stdout.write(source)
    return EXIT_OK


def _build_onnx(plan, args) -> int:
    from cnnspec.targets.onnx.emit import require_emission
    from cnnspec.targets.onnx.model import build_onnx, require_onnx, save_onnx, write_onnx

    if not args.output:
        raise CnnspecError("--target onnx writes a binary model: give the file with -o FILE.onnx")
    require_onnx()
    require_emission(plan)  # before any weights are read or any file is written
    weights = None
    if args.weights_from:
        from cnnspec.targets.onnx.weights import weights_from_file

        _weights_framework(args.weights_from)
        weights = weights_from_file(plan, args.weights_from)
    if args.save_weights:
        save_onnx(
            build_onnx(plan, weights),
            args.output,
            overwrite=args.force,
            weights_file=args.save_weights,
        )
    else:
        write_onnx(plan, args.output, weights, overwrite=args.force)
    origin = f"weights from {args.weights_from}" if args.weights_from else "seeded random weights"
    print(f"wrote {args.output} (onnx, {plan.name}, {origin})", file=sys.stderr)
    if plan.is_open:
        from cnnspec.targets.onnx.model import fixed_size_reason

        reason = fixed_size_reason(plan)
        print(
            f"note: {reason}" if reason else "any input size: its spatial axes are symbolic",
            file=sys.stderr,
        )
    if args.save_weights:
        print(f"wrote {args.save_weights} (its weights, ONNX external data)", file=sys.stderr)
    return EXIT_OK


def _convert_weights(plan, args) -> None:
    from cnnspec.targets.build import build
    from cnnspec.weights.files import load_weights_file, save_weights_file
    from cnnspec.weights.transfer import transfer_weights

    source_framework = _weights_framework(args.weights_from)
    source_model = build(plan, source_framework)
    for note in load_weights_file(source_model, args.weights_from, plan):
        print(f"cnnspec: note: {note}", file=sys.stderr)
    target_model = source_model
    if args.target != source_framework:
        target_model = build(plan, args.target)
        transfer_weights(source_model, target_model, plan)
    save_weights_file(target_model, args.save_weights, overwrite=args.force)
    print(
        f"wrote {args.save_weights} ({args.target} weights from {args.weights_from})",
        file=sys.stderr,
    )


def cmd_verify(args) -> int:
    from cnnspec.cli.verify import run

    return run(args, check_limits=lambda plan: _check_limits(plan, args))


def cmd_import(args) -> int:
    from cnnspec.cli.convert import cmd_import as run

    return run(args)


def cmd_convert(args) -> int:
    from cnnspec.cli.convert import cmd_convert as run

    return run(args)


COMMANDS = {
    "validate": cmd_validate,
    "explain": cmd_explain,
    "schema": cmd_schema,
    "build": cmd_build,
    "verify": cmd_verify,
    "import": cmd_import,
    "convert": cmd_convert,
}


def main(argv: list[str] | None = None) -> int:
    """Run the ``cnnspec`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except SpecError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    except CnnspecError as error:
        print(f"cnnspec: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("cnnspec: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `cnnspec schema | head`
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - last resort: a bug, reported without a wall of traceback
        if os.environ.get("CNNSPEC_DEBUG"):
            raise
        print(
            f"cnnspec: internal error: {type(error).__name__}: {error}\n"
            "  this is a bug in cnnspec; rerun with CNNSPEC_DEBUG=1 for the traceback",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


# Frameworks whose interpreter teardown (module and C++ destructors) takes about a second.
_SLOW_TO_UNLOAD = ("torch", "tensorflow")


def entry() -> None:
    """The console script: run :func:`main` and exit with its code.

    Once a command has imported torch or TensorFlow, its work is done and written when ``main``
    returns (reports are written atomically; nothing runs at exit), so the process ends without
    the interpreter's teardown of those frameworks, which takes about a second.
    """
    code = main()
    if any(name in sys.modules for name in _SLOW_TO_UNLOAD):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more can be said
                pass
        os._exit(code)
    raise SystemExit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
