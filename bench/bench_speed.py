"""Benchmark (issue 14): `cnnspec verify` against what a user does without cnnspec, and `build --target onnx`.

Method (fresh processes, one warm-up of each, then floor and verify interleaved so that the
noise of the shared machine hits both alike; medians; peak memory = the child's ru_maxrss):

* floor: a plain script doing what a user does without cnnspec to compare the two models of a
  spec: import torch, keras/TensorFlow, onnx, onnxruntime and tf2onnx, build both models (the
  generated source), ``torch.onnx.export`` (legacy exporter, its defaults),
  ``tf2onnx.convert.from_keras`` (its default optimizers), one onnxruntime run of each file
  (default session), the final outputs compared.  No weight transfer, no per-layer outputs.
* verify: ``python -m cnnspec verify SPEC --json FILE --no-progress``: seeded weights and
  transfer, both exports with every layer's output, the spec's own ONNX graph as referee,
  per-layer comparison, parameter reconciliation.  Its ``--json`` timings give the Keras export.
* build: ``python -m cnnspec build bench/resnet50.yaml --target onnx -o FILE --force``, whole
  process, beside ``python -c pass``, ``cnnspec explain`` and a floor in the same loop: a script
  that only imports the libraries the command needs (numpy, onnx, pydantic, PyYAML) and draws,
  writes and fsyncs as many float32 weights, on two threads, as ResNet-50 has -- what any
  implementation on those libraries pays before it reads a spec.  A separate run checks that
  neither torch nor TensorFlow was imported.

Usage: python bench/bench_speed.py [--runs N] [--specs alexnet resnet50] [--build-runs N] [--baseline DIR]
(--runs 0: build only; --baseline: also time verify from another source tree, e.g.
``git archive COMMIT | tar -x -C DIR``, interleaved with the others)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = {"resnet50": ROOT / "bench" / "resnet50.yaml", "alexnet": ROOT / "examples" / "alexnet.yaml"}
GOALS = {"resnet50": 0.35, "alexnet": 0.25}
KERAS_EXPORT_GOALS = {"resnet50": 1.5, "alexnet": 2.0}

FLOOR_SCRIPT = r'''
import os, sys, time, json, warnings, logging
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
warnings.filterwarnings("ignore")
T = {}
start = time.perf_counter()
import numpy as np, torch, tensorflow as tf, keras, onnx, onnxruntime as ort, tf2onnx
logging.getLogger("torch.onnx").setLevel(logging.ERROR); logging.getLogger("tf2onnx").setLevel(logging.ERROR)
from cnnspec.targets.build import build
from cnnspec.engine.plan import resolve
T["import"] = time.perf_counter() - start
plan = resolve(sys.argv[1]); out = sys.argv[2]
t = time.perf_counter(); tm = build(plan, "torch").eval(); km = build(plan, "keras"); T["build"] = time.perf_counter() - t
x = np.random.default_rng(0).standard_normal((2, *plan.input_shape)).astype(np.float32)
t = time.perf_counter()
with torch.no_grad():
    torch.onnx.export(tm, (torch.from_numpy(x),), out + "/t.onnx", dynamo=False, input_names=["input"])
T["export_torch"] = time.perf_counter() - t
t = time.perf_counter()
sig = (tf.TensorSpec((None, *plan.input_shape[1:], plan.input_shape[0]), tf.float32, name="input"),)
tf2onnx.convert.from_keras(km, input_signature=sig, opset=18, output_path=out + "/k.onnx")
T["export_keras"] = time.perf_counter() - t
t = time.perf_counter()
a = ort.InferenceSession(out + "/t.onnx", providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
T["run_torch"] = time.perf_counter() - t
t = time.perf_counter()
b = ort.InferenceSession(out + "/k.onnx", providers=["CPUExecutionProvider"]).run(None, {"input": np.moveaxis(x, 1, -1).copy()})[0]
T["run_keras"] = time.perf_counter() - t
T["final_max_abs_diff"] = float(np.abs(a - b.reshape(a.shape) if b.ndim == 2 else a - np.moveaxis(b, -1, 1)).max())
print("JSON" + json.dumps(T))
'''

# The floor of `build --target onnx`: the libraries it needs, and the weights drawn and written.
BUILD_FLOOR = r'''
import os, sys
from concurrent.futures import ThreadPoolExecutor
import numpy as np, onnx, yaml
from pydantic import BaseModel  # pydantic imports its machinery on first use
count, path = int(sys.argv[1]), sys.argv[2]
chunks = [min(1 << 20, count - start) for start in range(0, count, 1 << 20)]
def draw(position):
    return np.random.default_rng([0, position]).random(chunks[position], dtype=np.float32)
with open(path, "wb") as handle, ThreadPoolExecutor(2) as drawers:
    for values in drawers.map(draw, range(len(chunks))):
        handle.write(values)
    handle.flush()
    os.fsync(handle.fileno())
'''

IMPORT_CHECK = r'''
import sys
from cnnspec.cli.main import main
code = main(sys.argv[1:])
print("HEAVY", sorted({m.split(".")[0] for m in sys.modules} & {"torch", "tensorflow", "keras", "tf2onnx"}))
sys.exit(code)
'''


def run_measured(args: list[str], source: Path = ROOT) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB (the child's own ru_maxrss, via os.wait4) and stdout.

    The child's CPU seconds (user + system, all its threads) are kept in ``LAST_CPU[0]``.
    """
    env = {**os.environ, "PYTHONPATH": str(source)}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        # cwd = the source tree: `python -m` puts the working directory first on sys.path
        process = subprocess.Popen(args, cwd=source, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"command failed ({process.returncode}): {' '.join(map(str, args))}\n{stderr[-3000:]}")
    LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    return elapsed, usage.ru_maxrss / 1024.0, stdout


LAST_CPU = [0.0]


def json_line(stdout: str) -> dict:
    return json.loads(next(line[4:] for line in stdout.splitlines() if line.startswith("JSON")))


def bench_verify(name: str, spec: Path, runs: int, workdir: Path, baseline: Path | None = None) -> dict:
    python = sys.executable
    report = workdir / f"{name}.json"
    verify = [python, "-m", "cnnspec", "verify", str(spec), "--json", str(report), "--no-progress", "--force"]
    floor = [python, "-c", FLOOR_SCRIPT, str(spec), str(workdir)]
    run_measured(floor), run_measured(verify)  # warm-up (file cache)
    if baseline:
        run_measured(verify, baseline)
    rows = {"verify": [], "floor": [], "verify_mb": [], "floor_mb": [], "timings": [], "floor_steps": [],
            "verify_cpu": [], "floor_cpu": [], "baseline": [], "baseline_cpu": [], "baseline_timings": []}
    for index in range(runs):
        seconds, megabytes, stdout = run_measured(floor)
        rows["floor"].append(seconds)
        rows["floor_cpu"].append(LAST_CPU[0])
        rows["floor_mb"].append(megabytes)
        rows["floor_steps"].append(json_line(stdout))
        seconds, megabytes, _ = run_measured(verify)
        rows["verify_cpu"].append(LAST_CPU[0])
        data = json.loads(report.read_text())["reports"][0]
        assert data["ok"] and data["referee"]["torch_departs_at"] is None and data["referee"]["keras_departs_at"] is None
        rows["verify"].append(seconds)
        rows["verify_mb"].append(megabytes)
        rows["timings"].append(data["timings"])
        if baseline:  # the same command from another source tree (e.g. the code before a change)
            seconds_before, _, _ = run_measured(verify, baseline)
            rows["baseline"].append(seconds_before)
            rows["baseline_cpu"].append(LAST_CPU[0])
            rows["baseline_timings"].append(json.loads(report.read_text())["reports"][0]["timings"])
            print(f"{name} run {index + 1}: baseline verify {seconds_before:.2f} s (CPU {LAST_CPU[0]:.2f})")
        print(f"{name} run {index + 1}: floor {rows['floor'][-1]:.2f} s (CPU {rows['floor_cpu'][-1]:.2f}) "
              f"{rows['floor_mb'][-1]:.0f} MB, verify {seconds:.2f} s (CPU {rows['verify_cpu'][-1]:.2f}) "
              f"{megabytes:.0f} MB (export_keras {data['timings']['export_keras']:.2f} s); load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
    return rows


def _resnet50_weights() -> int:
    from cnnspec.engine.plan import resolve

    return resolve(SPECS["resnet50"]).total_params


def bench_build(runs: int, workdir: Path) -> dict:
    python = sys.executable
    spec = SPECS["resnet50"]
    target = workdir / "resnet50.onnx"
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "cnnspec explain resnet50.yaml": [python, "-m", "cnnspec", "explain", str(spec)],
        "cnnspec build resnet50.yaml --target onnx": [python, "-m", "cnnspec", "build", str(spec), "--target", "onnx",
                                                       "-o", str(target), "--force"],
        "floor: import numpy, onnx, PyYAML, pydantic.BaseModel; draw, write, fsync the weights": [
            python, "-c", BUILD_FLOOR, str(_resnet50_weights()), str(workdir / "floor.bin")],
    }
    for command in commands.values():
        run_measured(command)  # warm-up
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(runs):
        for label, command in commands.items():
            times[label].append(run_measured(command)[0])
    _, _, stdout = run_measured([python, "-c", IMPORT_CHECK, "build", str(spec), "--target", "onnx", "-o", str(target),
                                 "--force"])
    heavy = next(line for line in stdout.splitlines() if line.startswith("HEAVY"))
    return {"times": times, "heavy": heavy, "bytes": target.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--build-runs", type=int, default=9)
    parser.add_argument("--specs", nargs="+", default=["resnet50", "alexnet"], choices=sorted(SPECS))
    parser.add_argument("--baseline", type=Path, help="also time verify from this source tree (e.g. `git archive` "
                        "of an earlier commit), interleaved with the others")
    args = parser.parse_args()
    median = statistics.median
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as directory:
        workdir = Path(directory)
        results = {name: bench_verify(name, SPECS[name], args.runs, workdir, args.baseline)
                   for name in args.specs if args.runs}
        build = bench_build(args.build_runs, workdir) if args.build_runs else None
    if results:
        print_verify(results)
    if build:
        print(f"\nbuild --target onnx of ResNet-50 ({build['bytes'] / 1e6:.1f} MB written); {build['heavy']}")
        print("| command | median s | min s |\n|---|---|---|")
        for label, values in build["times"].items():
            print(f"| `{label}` | {median(values):.3f} | {min(values):.3f} |")


def print_verify(results: dict) -> None:
    median = statistics.median
    print("\n| spec | floor s (median) | verify s (median) | ratio | goal | floor CPU s | verify CPU s | CPU ratio "
          "| floor peak MB | verify peak MB | ratio | Keras export s (goal) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        floor, verify = median(rows["floor"]), median(rows["verify"])
        floor_cpu, verify_cpu = median(rows["floor_cpu"]), median(rows["verify_cpu"])
        floor_mb, verify_mb = median(rows["floor_mb"]), median(rows["verify_mb"])
        keras_export = median(t["export_keras"] for t in rows["timings"])
        print(f"| {name} | {floor:.2f} | {verify:.2f} | **{verify / floor:.2f}×** | ≤ {GOALS[name]}× | "
              f"{floor_cpu:.2f} | "
              f"{verify_cpu:.2f} | {verify_cpu / floor_cpu:.2f}× | {floor_mb:.0f} | "
              f"{verify_mb:.0f} | {verify_mb / floor_mb:.2f}× | {keras_export:.2f} (≤ {KERAS_EXPORT_GOALS[name]}) |")
    for name, rows in results.items():
        print(f"\n{name}: runs floor {[round(t, 2) for t in rows['floor']]}, verify {[round(t, 2) for t in rows['verify']]}")
        print(f"{name}: CPU floor {[round(t, 2) for t in rows['floor_cpu']]}, "
              f"verify {[round(t, 2) for t in rows['verify_cpu']]}")
        if rows["baseline"]:
            before, before_cpu = median(rows["baseline"]), median(rows["baseline_cpu"])
            print(f"{name}: baseline verify {[round(t, 2) for t in rows['baseline']]} (CPU "
                  f"{[round(t, 2) for t in rows['baseline_cpu']]}): median {before:.2f} s = "
                  f"{before / median(rows['floor']):.2f}× the floor, CPU {before_cpu:.2f} s = "
                  f"{before_cpu / median(rows['floor_cpu']):.2f}×")
        steps = {key: median(t[key] for t in rows["timings"]) for key in rows["timings"][0]}
        before_steps = ({key: median(t[key] for t in rows["baseline_timings"]) for key in rows["baseline_timings"][0]}
                        if rows["baseline_timings"] else {})
        floor_steps = {key: median(s[key] for s in rows["floor_steps"]) for key in rows["floor_steps"][0]}
        print("| step | verify | baseline verify | floor |\n|---|---|---|---|")
        for key in dict.fromkeys([*steps, *floor_steps]):
            if key == "final_max_abs_diff":
                continue
            cells = [steps.get(key), before_steps.get(key), floor_steps.get(key)]
            print(f"| {key} | " + " | ".join("—" if c is None else f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
