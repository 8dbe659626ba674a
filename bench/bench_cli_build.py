"""Benchmark: `cnnspec build SPEC --target torch|keras` writing source, as a whole process (issue 8).

Goal: <= 0.3 s on the ResNet-50 spec, importing no framework (writing source needs none).
Method: fresh processes, alternated (pass, torch, keras, pass, ...) so machine load hits all
alike, one warm-up round; `cnnspec explain` (0.18 s on a quiet machine, see README) runs
in the same rounds as the reference for a busy machine, then median and min of wall time; each build also reports which heavy
modules it imported (run through a wrapper that prints sys.modules at exit).

Usage: python bench/bench_cli_build.py [--runs N] [--spec bench/resnet50.yaml]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "tensorflow", "keras", "numpy", "onnx", "onnxruntime")

_WRAPPER = (
    "import atexit, json, sys\n"
    f"atexit.register(lambda: print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))),"
    " file=sys.stderr))\n"
    "from cnnspec.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _time(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)},
                            check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return elapsed, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--spec", default="bench/resnet50.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "explain (reference)": [sys.executable, "-c", _WRAPPER, "explain", args.spec],
            "build --target torch": [sys.executable, "-c", _WRAPPER, "build", args.spec, "--target", "torch",
                                     "-o", f"{folder}/model.py", "--force"],
            "build --target keras": [sys.executable, "-c", _WRAPPER, "build", args.spec, "--target", "keras",
                                     "-o", f"{folder}/model_keras.py", "--force"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        imported: dict[str, str] = {}
        for round_number in range(args.runs + 1):
            for name, command in commands.items():
                elapsed, heavy = _time(command)
                if round_number:  # round 0 warms the file cache
                    times[name].append(elapsed)
                imported[name] = heavy
    baseline = statistics.median(times["python -c pass"])
    print(f"{args.runs} runs each, alternated; spec {args.spec}")
    print("| command | median s | min s | × interpreter start-up | heavy modules imported |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        heavy = ", ".join(json.loads(imported[name])) if imported[name].startswith("[") else "-"
        print(f"| `{name}` | {median:.3f} | {min(values):.3f} | {median / baseline:.1f} | {heavy or 'none'} |")


if __name__ == "__main__":
    main()
