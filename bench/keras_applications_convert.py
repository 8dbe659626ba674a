"""Every keras.applications model through the whole ``cnnspec convert --to torch``, proof included.

One fresh process per model (``weights=None``, its default input size): import, build, weights,
then the per-layer proof against the Keras original through ONNX and onnxruntime.  Records the
exit code, wall seconds, peak memory (the process's ru_maxrss), parameters, layers compared, the
largest difference over all layers and at the output, or the first line of the error.
ConvNeXtXLarge, NASNetLarge and EfficientNetB7 are
left out unless named with --only or --all (too large for this machine's routine runs).  Keras'
initialisers are seeded (``keras.utils.set_random_seed(--seed)``) so that a row can be repeated:
the untrained weights decide how large the activations grow.

    python bench/keras_applications_convert.py [--only ResNet50,VGG16 | --all] [--seed 0]
        [--json bench/keras_applications_convert.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LARGE = ("ConvNeXtXLarge", "NASNetLarge", "EfficientNetB7")


def application_names() -> list[str]:
    """The model constructors of keras.applications (asked in a child process: no TF here)."""
    code = (
        "import inspect, os; os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3'); import keras; "
        "print(' '.join(sorted(n for n in dir(keras.applications) if n[0].isupper() "
        "and callable(getattr(keras.applications, n)) and not inspect.ismodule(getattr(keras.applications, n)))))"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def convert(name: str, folder: Path, seed: int) -> dict:
    """Run one conversion; the row of the table."""
    out = folder / name
    arguments = [
        "convert", f"keras.applications:{name}",
        "--kwargs", '{"weights": null}', "--to", "torch", "-o", str(out), "--no-progress",
    ]
    seeded = (
        "import sys, keras; keras.utils.set_random_seed(int(sys.argv[1])); "
        "from cnnspec.cli.main import main; sys.exit(main(sys.argv[2:]))"
    )
    command = [sys.executable, "-c", seeded, str(seed), *arguments]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        done = subprocess.CompletedProcess(command, process.returncode, stdout.read(), stderr.read())
    row: dict = {
        "model": name,
        "seed": seed,
        "exit": done.returncode,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_mb": round(usage.ru_maxrss / 1024),
    }
    report = out / "report.json"
    if report.exists():
        data = json.loads(report.read_text())
        check = data.get("verification") or {}
        row.update(
            parameters=data.get("parameters"),
            layers=len(check.get("layers") or []),
            max_abs_diff=check.get("max_abs_diff"),
            output_max_abs_diff=check.get("output_max_abs_diff"),
            first_divergent_layer=check.get("first_divergent_layer"),
        )
    if done.returncode not in (0,):
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        row["error"] = lines[-1][:300] if lines else ""
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated model names")
    parser.add_argument("--all", action="store_true", help="the large models too")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    names = args.only.split(",") if args.only else [n for n in application_names() if args.all or n not in LARGE]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in names:
            row = convert(name, Path(folder), args.seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
    passed = sum(row["exit"] == 0 for row in rows)
    print(f"{passed}/{len(rows)} converted and verified")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if passed == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
