"""``cnnspec import`` and ``cnnspec convert``: from the model you have to a spec, and to the other framework.

Exit codes: ``import`` 0 or 2; ``convert`` 0 (converted and verified per layer against the
original), 1 (converted, but the verification found a mismatch), 2 (bad input: an unreadable
model, an unsupported layer -- named with where it is -- or existing output files).
"""

from __future__ import annotations

import argparse
import json
import sys

from cnnspec.cli.verify import parse_input_size
from cnnspec.errors import CnnspecError

EXIT_OK, EXIT_MISMATCH = 0, 1


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a .keras/.h5/.onnx file, or a Python reference package.module:attr or file.py:attr "
        "(a model, or a class/factory called with --kwargs)",
    )
    parser.add_argument(
        "--input-shape",
        metavar="C,H,W",
        default=None,
        help="channels-first input shape without the batch (torch models)",
    )
    parser.add_argument(
        "--kwargs",
        metavar="JSON",
        default=None,
        help="keyword arguments (a JSON object) for the class or factory MODEL names",
    )


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cnnspec import``."""
    _model_arguments(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="SPEC",
        default=None,
        help="write the spec to SPEC instead of stdout",
    )
    parser.add_argument("--force", action="store_true", help="overwrite SPEC if it exists")


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cnnspec convert``."""
    _model_arguments(parser)
    parser.add_argument(
        "--to", choices=("torch", "keras"), required=True, help="the framework to convert to"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        default=None,
        help="directory for spec.yaml, the source, the weights and report.json (default: <model name>_<to>)",
    )
    parser.add_argument(
        "--atol",
        type=float,
        default=None,
        metavar="A",
        help="absolute tolerance of the verification",
    )
    parser.add_argument(
        "--rtol",
        type=float,
        default=None,
        metavar="R",
        help="relative tolerance of the verification",
    )
    parser.add_argument(
        "--input-size",
        dest="input_sizes",
        action="append",
        type=parse_input_size,
        default=None,
        metavar="H,W",
        help="verify the conversion of a model that takes any input size at this size (repeatable; "
        "default an even and an odd size, or the next size a U-Net-like join accepts); a torch model "
        "with --input-shape C,None,None is traced "
        "at the first",
    )
    parser.add_argument(
        "--weights",
        metavar="FILE",
        default=None,
        help="load these weights into the model MODEL names before converting (a Python reference): "
        "a torch state_dict or checkpoint (.pt/.pth/.ckpt/.safetensors), or a Keras .weights.h5",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display on stderr")
    parser.add_argument("--force", action="store_true", help="overwrite existing files in DIR")


def _kwargs(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CnnspecError(
            f"--kwargs: not valid JSON ({error.msg} at column {error.colno})"
        ) from None
    if not isinstance(value, dict):
        raise CnnspecError(
            f"--kwargs: expected a JSON object such as '{{\"num_classes\": 10}}', got {type(value).__name__}"
        )
    return value


def cmd_import(args) -> int:
    """``cnnspec import MODEL [-o SPEC]``."""
    from cnnspec.atomic import atomic_write
    from cnnspec.importers.pipeline import (
        import_any,
        load_reference,
        parse_input_shape,
        spec_yaml,
    )

    input_shape = parse_input_shape(args.input_shape)
    kwargs = _kwargs(args.kwargs)
    if args.output and not args.force:
        from pathlib import Path

        from cnnspec.errors import OutputExistsError

        if Path(args.output).exists():
            raise OutputExistsError(f"{args.output} exists; pass --force to overwrite it")
    from cnnspec.verifier.onnx_export import _prepare_environment, quiet_warnings

    _prepare_environment()
    with quiet_warnings():
        framework, model = load_reference(args.model, kwargs)
        result = import_any(framework, model, input_shape)
    text = spec_yaml(result.spec, origin=args.model)
    for rewrite in result.rewrites:
        print(
            f"rewrite at '{rewrite.where}': {rewrite.original} -> {rewrite.became}", file=sys.stderr
        )
    if args.output:
        atomic_write(args.output, text, overwrite=args.force)
        print(
            f"wrote {args.output} ({framework} model, {len(result.spec.layers)} layers)",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_convert(args) -> int:
    """``cnnspec convert MODEL --to torch|keras [-o DIR]``."""
    from pathlib import Path

    from cnnspec.cli.verify import Progress
    from cnnspec.importers.pipeline import convert_model, parse_input_shape

    input_shape = parse_input_shape(args.input_shape)
    kwargs = _kwargs(args.kwargs)
    directory = Path(args.output) if args.output else Path(f"{_stem(args.model)}_{args.to}")
    progress = Progress(enabled=not args.no_progress and sys.stderr.isatty())
    from cnnspec.verifier.onnx_export import quiet_warnings

    try:
        with quiet_warnings():
            conversion = convert_model(
                args.model,
                args.to,
                directory,
                input_shape=input_shape,
                kwargs=kwargs,
                overwrite=args.force,
                progress=progress,
                atol=args.atol,
                rtol=args.rtol,
                input_sizes=args.input_sizes,
                weights=args.weights,
            )
    finally:
        progress.close()
    report = conversion.verification
    for rewrite in conversion.rewrites:
        print(f"rewrite at '{rewrite['where']}': {rewrite['original']} -> {rewrite['became']}")
    print(report.render(use_rich=False))
    print(f"wrote {', '.join(conversion.files.values())}")
    total = sum(conversion.timings.values())
    print(
        f"{'CONVERTED' if report.ok else 'CONVERTED, BUT NOT EQUIVALENT'}: {args.model} -> {args.to} "
        f"({conversion.parameters:,} parameters, {total:.1f} s)"
    )
    return EXIT_OK if report.ok else EXIT_MISMATCH


def _stem(reference: str) -> str:
    from pathlib import Path

    from cnnspec.importers.common import spec_name

    text = (
        reference.rpartition(":")[2]
        if ":" in reference and not Path(reference).exists()
        else Path(reference).name
    )
    return spec_name(text.split(".")[0] or "model")
